//! The disk fixtures read back by lvm2's own `pvck` and by e2fsprogs, and
//! `[disk-check]` (xtask/src/diskcheck.rs) shown to catch what it must on
//! a copy of the guests' disk changed by real tools.

use config::profile::{DiskCheck, Ext4Check, FileCheck, FileWant};
use disk_layout::{Extent, Volume};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use xtask::diskcheck::{self, ImageDisk};
use xtask::tools;

const GUEST_DISK: &str = "ci/disks/guest.img.gz";
const LVM_FIXTURE: &str = "components/disk-layout/tests/fixtures/lvm.img.gz";
/// What make-guest-disk.sh puts in the two filesystems.
const HELLO_A: &str = "hello from the LV web\n";
const HELLO_B: &str = "hello from the data partition\n";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("guest-disk")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fixture unpacked into `dir`.
fn unpack(fixture: &str, dir: &Path) -> PathBuf {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(root().join(fixture)).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    let path = dir.join("disk.img");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn require(binary: &str, package: &str) {
    assert!(
        tools::find(binary).is_some(),
        "{binary} is missing: apt-get install {package}"
    );
}

/// One LV segment as lvm2 wrote it: extents `start..start+count` of the LV
/// on PV extents from `first`.
#[derive(Debug)]
struct Segment {
    start: u64,
    count: u64,
    first: u64,
}

/// What `pvck --dump metadata` says: extent size and pe_start (sectors),
/// and each LV's segments.
#[derive(Debug, Default)]
struct Pvck {
    extent_size: u64,
    pe_start: u64,
    lvs: BTreeMap<String, Vec<Segment>>,
}

/// Reads lvm2's text (one `key = value` or `name {` or `}` a line, as lvm2
/// writes it) with a path of open sections; no code shared with disk-layout.
fn pvck_metadata(pv: &Path) -> Pvck {
    let out = Command::new("pvck")
        .args(["--dump", "metadata"])
        .arg(pv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pvck: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut p = Pvck::default();
    let mut path: Vec<String> = Vec::new();
    let mut stripes = false;
    let num = |v: &str| v.trim().parse::<u64>().unwrap();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_suffix(" {") {
            path.push(name.to_string());
        } else if line == "}" {
            path.pop();
        } else if line == "stripes = [" {
            stripes = true;
        } else if stripes {
            // `"pv0", 6`, then `]`
            if let Some((pv, first)) = line.split_once(", ") {
                assert_eq!(pv, "\"pv0\"");
                let lv = &path[2];
                p.lvs.get_mut(lv).unwrap().last_mut().unwrap().first = num(first);
            }
            stripes = false;
        } else if let Some((key, value)) = line.split_once(" = ") {
            let at: Vec<&str> = path.iter().map(String::as_str).collect();
            match (at.as_slice(), key) {
                ([_vg], "extent_size") => p.extent_size = num(value),
                ([_, "physical_volumes", "pv0"], "pe_start") => p.pe_start = num(value),
                ([_, "logical_volumes", lv, _seg], "start_extent") => {
                    p.lvs.entry(lv.to_string()).or_default().push(Segment {
                        start: num(value),
                        count: 0,
                        first: u64::MAX,
                    })
                }
                ([_, "logical_volumes", lv, _seg], "extent_count") => {
                    p.lvs.get_mut(*lv).unwrap().last_mut().unwrap().count = num(value)
                }
                _ => {}
            }
        }
    }
    assert!(p.extent_size > 0 && p.pe_start > 0, "{text}");
    p
}

/// `pvck` on the PV cut out of the image, and disk-layout on the image,
/// find every LV in the same place.
fn pvck_agrees(fixture: &str, lvs: &[&str]) -> BTreeMap<String, Volume> {
    require("pvck", "lvm2");
    let dir = scratch(&fixture.replace('/', "_"));
    let image = unpack(fixture, &dir);
    let mut disk = ImageDisk::open(&image).unwrap();
    let pv = disk.volume("gpt:pv").unwrap();
    let pv_start = pv.extents()[0].disk_sector;
    let pv_file = dir.join("pv.img");
    std::fs::write(&pv_file, disk.read_volume(&pv).unwrap()).unwrap();
    let lvm = pvck_metadata(&pv_file);
    assert_eq!(
        lvm.lvs.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut sorted = lvs.to_vec();
            sorted.sort_unstable();
            sorted
        },
        "{fixture}: LVs"
    );
    let mut volumes = BTreeMap::new();
    for (name, segments) in &lvm.lvs {
        let ours = disk.volume(&format!("lvm:vg0/{name}")).unwrap();
        let theirs: Vec<Extent> = segments
            .iter()
            .map(|s| Extent {
                volume_sector: s.start * lvm.extent_size,
                disk_sector: pv_start + lvm.pe_start + s.first * lvm.extent_size,
                sectors: s.count * lvm.extent_size,
            })
            .collect();
        assert_eq!(ours.extents(), theirs, "{fixture}: LV {name}");
        volumes.insert(name.clone(), ours);
    }
    volumes
}

#[test]
fn pvck_agrees_with_disk_layout_on_both_lvm_fixtures() {
    // The disk-layout fixture's committed copy wraps around its ring.
    let v = pvck_agrees(LVM_FIXTURE, &["web", "db"]);
    assert_eq!(v["web"].extents().len(), 2);
    let v = pvck_agrees(GUEST_DISK, &["web", "filler", "bench"]);
    let mib = |v: &Volume| v.sectors() / 2048;
    assert_eq!(v["web"].extents().len(), 2, "web has two segments");
    assert_eq!(mib(&v["web"]), 10);
    assert_eq!(mib(&v["bench"]), 72, "room for a 64 MiB dd");
    // The filler sits between web's two segments.
    let filler = v["filler"].extents()[0];
    let web = v["web"].extents();
    assert_eq!(web[0].disk_sector + web[0].sectors, filler.disk_sector);
    assert_eq!(filler.disk_sector + filler.sectors, web[1].disk_sector);
}

fn sha256(bytes: &[u8]) -> String {
    diskcheck::hex(&Sha256::digest(bytes))
}

#[test]
fn guest_disk_filesystems_pass_e2fsck_and_hold_their_files() {
    require("debugfs", "e2fsprogs");
    let dir = scratch("files");
    let image = unpack(GUEST_DISK, &dir);
    let mut disk = ImageDisk::open(&image).unwrap();
    assert_eq!(disk.volume("gpt:data").unwrap().sectors(), 8 * 2048);
    for (volume, file, text) in [
        ("lvm:vg0/web", "/hello-a.txt", HELLO_A),
        ("gpt:data", "/hello-b.txt", HELLO_B),
    ] {
        let v = disk.volume(volume).unwrap();
        let copy = dir.join("fs.img");
        std::fs::write(&copy, disk.read_volume(&v).unwrap()).unwrap();
        let fsck = Command::new("e2fsck")
            .arg("-fn")
            .arg(&copy)
            .output()
            .unwrap();
        assert!(fsck.status.success(), "{volume}: {fsck:?}");
        let got = diskcheck::debugfs_cat(&copy, file).unwrap();
        assert_eq!(got.as_deref(), Some(text.as_bytes()), "{volume}{file}");
        assert_eq!(diskcheck::debugfs_cat(&copy, "/nope.txt").unwrap(), None);
    }
    // The values ci/scenarios/disk-linux.toml expects the guests to print.
    assert_eq!(
        sha256(HELLO_A.as_bytes()),
        "d8240bbc3bcfc4d2a705000e40735ba2f09f94a2d78da98001a4e8c8e51c5f2c"
    );
    assert_eq!(
        sha256(HELLO_B.as_bytes()),
        "d28030f61666225f9b29e9bf01c7053e2e9f02ce60f464018e1d29cf54f12f21"
    );
}

/// Writes `bytes` over the volume, as a guest would through its disk.
fn write_volume(image: &Path, v: &Volume, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(image).unwrap();
    let mut at = 0;
    for e in v.extents() {
        let n = (e.sectors * 512) as usize;
        f.write_all_at(&bytes[at..at + n], e.disk_sector * 512)
            .unwrap();
        at += n;
    }
}

fn flip(image: &Path, byte: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .unwrap();
    let mut b = [0];
    f.read_exact_at(&mut b, byte).unwrap();
    f.write_all_at(&[b[0] ^ 1], byte).unwrap();
}

#[test]
fn disk_check_passes_a_good_write_and_names_each_bad_one() {
    require("debugfs", "e2fsprogs");
    let dir = scratch("check");
    let image = unpack(GUEST_DISK, &dir);
    let pristine = std::fs::read(&image).unwrap();
    let check = DiskCheck {
        writable: vec!["lvm:vg0/web".into()],
        ext4: vec![
            Ext4Check {
                volume: "lvm:vg0/web".into(),
                files: vec![
                    FileCheck {
                        path: "/hello-a.txt".into(),
                        want: FileWant::Sha256(sha256(HELLO_A.as_bytes())),
                    },
                    FileCheck {
                        path: "/from-a.txt".into(),
                        want: FileWant::Text("written by a\n".into()),
                    },
                ],
            },
            Ext4Check {
                volume: "gpt:data".into(),
                files: vec![FileCheck {
                    path: "/hello-b.txt".into(),
                    want: FileWant::Text(HELLO_B.into()),
                }],
            },
        ],
    };
    let base = diskcheck::before(&image, &check).unwrap();
    let work = dir.join("work");
    let run = |what: &str| {
        diskcheck::after(&image, &check, &base, &work)
            .map_err(|e| format!("{e:#}"))
            .err()
            .unwrap_or_else(|| panic!("{what}: passed"))
    };

    // Untouched: from-a.txt is missing.
    let err = run("untouched");
    assert!(
        err.contains("disk-check of ") && err.contains("disk.img"),
        "{err}"
    );
    assert!(
        err.contains("volume lvm:vg0/web: /from-a.txt: not found"),
        "{err}"
    );
    assert!(
        !err.contains("changed") && !err.contains("gpt:data"),
        "{err}"
    );

    // from-a.txt written into web by debugfs, as a guest's ext4 would.
    let mut disk = ImageDisk::open(&image).unwrap();
    let web = disk.volume("lvm:vg0/web").unwrap();
    let fs = dir.join("web.img");
    std::fs::write(&fs, disk.read_volume(&web).unwrap()).unwrap();
    let src = dir.join("from-a.txt");
    std::fs::write(&src, "written by a\n").unwrap();
    let out = Command::new("debugfs")
        .args(["-w", "-R"])
        .arg(format!("write {} from-a.txt", src.display()))
        .arg(&fs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    write_volume(&image, &web, &std::fs::read(&fs).unwrap());
    diskcheck::after(&image, &check, &base, &work).unwrap();

    // One byte in bench, in data, in the LVM metadata: each named.
    let bench = disk.volume("lvm:vg0/bench").unwrap().extents()[0];
    let data = disk.volume("gpt:data").unwrap().extents()[0];
    let pv = disk.volume("gpt:pv").unwrap().extents()[0];
    for (byte, owner) in [
        ((bench.disk_sector + 5000) * 512 + 7, "(in lvm:vg0/bench)"),
        ((pv.disk_sector + 8) * 512, "(in gpt:pv, outside its LVs"),
        // Between the GPT's entries and the first partition.
        (1500 * 512, "(in no volume"),
    ] {
        flip(&image, byte);
        let err = run(owner);
        let sector = byte / 512;
        let piece = sector - sector % 2048;
        assert!(
            err.contains(&format!("sectors {piece}..")) && err.contains(owner),
            "{owner}: {err}"
        );
        assert!(err.contains("outside the writable volumes [lvm:vg0/web]"));
        flip(&image, byte);
        diskcheck::after(&image, &check, &base, &work).unwrap();
    }
    // data's superblock (at 1024 in the partition): e2fsck and the
    // unchanged-bytes check both fail.
    flip(&image, data.disk_sector * 512 + 1024 + 0x38); // s_magic
    let err = run("data superblock");
    assert!(err.contains("(in gpt:data)"), "{err}");
    assert!(err.contains("volume gpt:data: e2fsck -fn"), "{err}");
    flip(&image, data.disk_sector * 512 + 1024 + 0x38);

    // web's content wrong: the hash check names the file.
    let mut bytes = std::fs::read(&fs).unwrap();
    let at = bytes
        .windows(HELLO_A.len())
        .position(|w| w == HELLO_A.as_bytes())
        .unwrap();
    bytes[at] = b'J';
    write_volume(&image, &web, &bytes);
    let err = run("hello-a changed");
    assert!(
        err.contains("volume lvm:vg0/web: /hello-a.txt: sha256 "),
        "{err}"
    );
    assert!(!err.contains("changed, outside"), "{err}");

    // Back as it came: only from-a.txt is missing again.
    std::fs::write(&image, &pristine).unwrap();
    assert!(run("pristine").contains("/from-a.txt: not found"));
}
