//! The SD-card image read back by outside tools (mtools, fdisk), and the
//! checks `flash` makes before writing a block device, on a fake /sys.

use std::path::{Path, PathBuf};
use std::process::Command;
use xtask::{sdcard, tools};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("sdcard")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn require(binary: &str, package: &str) {
    assert!(
        tools::find(binary).is_some(),
        "{binary} is missing: apt-get install {package}"
    );
}

fn output(program: &str, args: &[&str]) -> Vec<u8> {
    let path = tools::find(program).unwrap_or_else(|| program.into());
    let out = Command::new(path).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A fake built image directory: the card's files plus one that stays off it.
fn fake_built(dir: &Path, with_uimage: bool) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        (
            "boot.scr".to_string(),
            (0..777u32).map(|i| (i ^ 0x5a) as u8).collect(),
        ),
        (
            "boot.cmd".to_string(),
            b"bootm ${kernel_addr_r} - ${fdtcontroladdr}\n".to_vec(),
        ),
        ("tessera.itb".to_string(), vec![0xd0; 5000]),
    ];
    if with_uimage {
        files.insert(
            0,
            (
                "tessera.uimg".to_string(),
                (0..300_000u32).map(|i| (i * 31 + 7) as u8).collect(),
            ),
        );
    }
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    std::fs::write(dir.join("tessera.elf"), b"not on the card").unwrap();
    files
}

#[test]
fn outside_tools_read_the_card_back() {
    require("mdir", "mtools");
    require("mcopy", "mtools");
    require("fdisk", "fdisk");
    let dir = scratch("read-back");
    let files = fake_built(&dir, true);
    let image = dir.join("sdcard.img");
    sdcard::write_image(&image, &sdcard::card_files(&dir).unwrap()).unwrap();
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 64 << 20);

    let spec = format!("{}@@1M", image.display());
    let listing = String::from_utf8(output("mdir", &["-i", &spec, "-b", "::"])).unwrap();
    let mut names: Vec<&str> = listing
        .lines()
        .map(|l| l.trim_start_matches("::/").trim())
        .collect();
    names.sort_unstable();
    let mut want: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    want.sort_unstable();
    assert_eq!(names, want, "mdir -b listing:\n{listing}");
    let label = String::from_utf8(output("mdir", &["-i", &spec, "::"])).unwrap();
    assert!(label.contains("TESSERA"), "no volume label in:\n{label}");

    for (name, bytes) in &files {
        let back = output("mcopy", &["-n", "-i", &spec, &format!("::{name}"), "-"]);
        assert!(back == *bytes, "{name} read back differs");
    }

    let image_arg = image.to_str().unwrap();
    let fdisk = String::from_utf8(output("fdisk", &["-l", image_arg])).unwrap();
    assert!(fdisk.contains("Disklabel type: dos"), "{fdisk}");
    let parts: Vec<&str> = fdisk.lines().filter(|l| l.starts_with(image_arg)).collect();
    assert_eq!(parts.len(), 1, "{fdisk}");
    // Device Boot Start End Sectors Size Id Type
    let fields: Vec<&str> = parts[0].split_whitespace().collect();
    assert_eq!(
        &fields[1..4],
        &["*", "2048", "131071"],
        "bootable, from sector 2048 to the end:\n{fdisk}"
    );
    assert_eq!(fields[6], "c", "type c (W95 FAT32 LBA):\n{fdisk}");
}

#[test]
fn the_uimage_is_optional_and_the_rest_required() {
    let dir = scratch("optional");
    fake_built(&dir, false);
    let names: Vec<String> = sdcard::card_files(&dir)
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // No uImage for a board loaded above 4 GiB: the FIT is its image.
    assert_eq!(names, ["boot.scr", "boot.cmd", "tessera.itb"]);
    std::fs::remove_file(dir.join("boot.scr")).unwrap();
    let error = sdcard::card_files(&dir).unwrap_err().to_string();
    assert!(error.contains("boot.scr"), "{error}");
}

#[test]
fn same_inputs_give_the_same_bytes() {
    let dir = scratch("reproducible");
    fake_built(&dir, true);
    let files = sdcard::card_files(&dir).unwrap();
    let (a, b) = (dir.join("a.img"), dir.join("b.img"));
    sdcard::write_image(&a, &files).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    sdcard::write_image(&b, &files).unwrap();
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
}

#[test]
fn dos_time_of_epochs() {
    let t = sdcard::dos_time(0);
    assert_eq!((t.date.year, t.date.month, t.date.day), (1980, 1, 1));
    assert_eq!((t.time.hour, t.time.min, t.time.sec), (0, 0, 0));
    // 2024-02-29T13:45:59Z
    let t = sdcard::dos_time(1_709_214_359);
    assert_eq!((t.date.year, t.date.month, t.date.day), (2024, 2, 29));
    assert_eq!((t.time.hour, t.time.min, t.time.sec), (13, 45, 59));
}

/// A fake /sys/block with one disk `name` and its partitions.
fn fake_sys(root: &Path, name: &str, removable: &str, partitions: &[&str]) -> PathBuf {
    let sys = root.join("sys-block");
    let disk = sys.join(name);
    std::fs::create_dir_all(&disk).unwrap();
    std::fs::write(disk.join("removable"), removable).unwrap();
    std::fs::create_dir_all(disk.join("queue")).unwrap();
    for p in partitions {
        std::fs::create_dir_all(disk.join(p)).unwrap();
    }
    sys
}

const MOUNTS: &str = "\
/dev/nvme0n1p2 / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
/dev/sdb1 /media/card vfat rw 0 0
";

#[test]
fn a_removable_unmounted_card_may_be_written() {
    let root = scratch("sys-ok");
    let sys = fake_sys(&root, "mmcblk0", "1\n", &["mmcblk0p1", "mmcblk0p2"]);
    assert!(sdcard::device_problems("mmcblk0", MOUNTS, &sys).is_empty());
}

#[test]
fn a_mounted_partition_is_refused() {
    let root = scratch("sys-mounted");
    let sys = fake_sys(&root, "sdb", "1\n", &["sdb1"]);
    let problems = sdcard::device_problems("sdb", MOUNTS, &sys);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("/dev/sdb1 is mounted on /media/card"));
}

#[test]
fn a_fixed_disk_is_refused() {
    let root = scratch("sys-fixed");
    let sys = fake_sys(&root, "nvme0n1", "0\n", &["nvme0n1p1", "nvme0n1p2"]);
    let problems = sdcard::device_problems("nvme0n1", MOUNTS, &sys);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("mounted on /")));
    assert!(problems.iter().any(|p| p.contains("not removable")));
}

#[test]
fn a_partition_is_not_a_disk() {
    let root = scratch("sys-partition");
    let sys = fake_sys(&root, "sdb", "1\n", &["sdb1"]);
    let problems = sdcard::device_problems("sdb1", "", &sys);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("not a whole disk"), "{problems:?}");
}

#[test]
fn flash_writes_a_regular_file() {
    let dir = scratch("flash");
    fake_built(&dir, false);
    let image = dir.join("sdcard.img");
    sdcard::write_image(&image, &sdcard::card_files(&dir).unwrap()).unwrap();
    let target = dir.join("card.bin");
    std::fs::write(&target, vec![0xff; 100 << 20]).unwrap();
    let bytes = sdcard::flash(&image, &target, false).unwrap();
    assert_eq!(bytes, 64 << 20);
    assert!(std::fs::read(&target).unwrap() == std::fs::read(&image).unwrap());
    let error = sdcard::flash(&image, &dir, false).unwrap_err().to_string();
    assert!(error.contains("neither"), "{error}");
}
