//! Disk throughput figures (`ci/bench-disk-linux.toml`): Debian's arm64
//! Linux writes and reads its virtio-blk disk, once on a volume Tessera
//! serves and once booted straight by QEMU (no hypervisor) with the same
//! bytes as its disk, the same kernel, initramfs, bootargs and commands.
//!
//! The guest times each command with its own clock (see the scenario); under
//! icount that is instructions, the guest's and the hypervisor's, plus
//! whatever instructions ran while QEMU's disk answered in real time (Tessera's
//! polled driver spins, the directly booted kernel polls idle with `nohlt`).
//! That last part is not deterministic: the direct figures move by about 1%
//! between runs (64 requests of 1 MiB), Tessera's sequential ones by up to a
//! third on a busy host (its disk sees 4 KiB requests, each waited for), so
//! those take the fastest of five runs.

use super::{boot, ci, drive, find_last, Cpus, Then, Watch};
use crate::debian::{self, Flavour};
use crate::qemu;
use crate::scenario;
use crate::workspace::Workspace;
use anyhow::{bail, ensure, Context, Result};
use config::composition::Arch;
use config::profile::{self, Expect, Scenario};
use std::path::Path;
use std::process::Command;

pub const STEM: &str = "bench-disk-linux";
/// The sequential commands' size (`bs=1M count=64` in the scenario; a test
/// holds them together).
const SEQ_MIB: f64 = 64.0;
/// The sequential commands run this many times each (`r` in the scenario);
/// the fastest counts.
const REPEATS: u32 = 5;
const WRITE: &str = "disk-write-";
const READ: &str = "disk-read-";
const RANDOM: &str = "disk-random: ";
const RANDOM_READS: &str = "disk-random-reads: ";
/// The bare pair of clock reads, taken off every other figure.
const CLOCK: &str = "disk-clock: ";

/// `status 0 ns 45158176`: a command and the guest nanoseconds it took.
#[derive(Debug, PartialEq)]
pub struct Timed {
    pub status: u32,
    pub ns: u64,
}

/// `status <s> ns <n>`.
pub fn parse_timed(text: &str) -> Option<Timed> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words[..] {
        ["status", status, "ns", ns, ..] => Some(Timed {
            status: status.parse().ok()?,
            ns: ns.parse().ok()?,
        }),
        _ => None,
    }
}

/// `<j>: status <s> ns <n>`: the `j`th run of a repeated command.
pub fn parse_repeat(text: &str) -> Option<(u32, Timed)> {
    let (j, rest) = text.split_once(": ")?;
    Some((j.parse().ok()?, parse_timed(rest)?))
}

fn succeeded(what: &str, t: &Timed) -> Result<u64> {
    ensure!(
        t.status == 0,
        "`{what}` in the guest failed with status {} (its stderr follows that line in the log)",
        t.status
    );
    Ok(t.ns)
}

/// The fastest of the [`REPEATS`] runs of `marker`'s command, each done.
fn fastest(lines: &[String], marker: &str) -> Result<u64> {
    let what = marker.trim_end_matches('-');
    let mut runs: Vec<(u32, u64)> = Vec::new();
    for line in lines {
        let Some(at) = line.find(marker) else {
            continue;
        };
        if let Some((j, t)) = parse_repeat(&line[at + marker.len()..]) {
            runs.push((j, succeeded(&format!("{what}-{j}"), &t)?));
        }
    }
    let mut seen: Vec<u32> = runs.iter().map(|&(j, _)| j).collect();
    seen.sort_unstable();
    ensure!(
        seen == (1..=REPEATS).collect::<Vec<_>>(),
        "runs {seen:?} of `{what}` in the output, not 1 to {REPEATS}"
    );
    Ok(runs.iter().map(|&(_, ns)| ns).min().unwrap_or(0))
}

/// One run's figures, in guest nanoseconds.
#[derive(Debug, PartialEq)]
pub struct Run {
    pub clock_ns: u64,
    pub write_ns: u64,
    pub read_ns: u64,
    pub random_ns: u64,
    pub random_reads: u64,
}

impl Run {
    /// From a run's serial lines: every command done, status 0.
    pub fn from_lines(lines: &[String]) -> Result<Run> {
        let clock_ns = succeeded("clock", &find_last(lines, CLOCK, parse_timed)?)?;
        let run = Run {
            clock_ns,
            write_ns: fastest(lines, WRITE)?,
            read_ns: fastest(lines, READ)?,
            random_ns: succeeded("random", &find_last(lines, RANDOM, parse_timed)?)?,
            random_reads: find_last(lines, RANDOM_READS, |rest| {
                rest.trim().parse().ok().filter(|&n: &u64| n > 0)
            })?,
        };
        for (what, ns) in [
            ("write", run.write_ns),
            ("read", run.read_ns),
            ("random reads", run.random_ns),
        ] {
            ensure!(
                ns > clock_ns,
                "the {what} took {ns} ns, no more than the clock's own {clock_ns} ns"
            );
        }
        Ok(run)
    }

    fn secs(&self, ns: u64) -> f64 {
        (ns - self.clock_ns) as f64 / 1e9
    }

    pub fn write_mib_s(&self) -> f64 {
        SEQ_MIB / self.secs(self.write_ns)
    }

    pub fn read_mib_s(&self) -> f64 {
        SEQ_MIB / self.secs(self.read_ns)
    }

    pub fn random_per_s(&self) -> f64 {
        self.random_reads as f64 / self.secs(self.random_ns)
    }
}

/// The disk rows of the bench table on `board`.
pub fn rows(ws: &Workspace, board: &str, arch: Arch) -> Result<Vec<[String; 3]>> {
    if arch != Arch::Aarch64 {
        // The scenario boots arm64 Linux; armmp-lpae's boot is slow under
        // icount (see the Linux boot row).
        return Ok(NAMES
            .iter()
            .map(|name| {
                [
                    (*name).into(),
                    "-".into(),
                    "not measured on 32-bit hosts yet".into(),
                ]
            })
            .collect());
    }
    let direct = direct_lines(ws, board)?;
    let direct = Run::from_lines(&direct).context("the disk figures without a hypervisor")?;
    let on_tessera = boot(ws, STEM, board, Cpus::Board, Then::Stop)?;
    let tessera = Run::from_lines(&on_tessera.lines).context("Tessera's disk figures")?;
    Ok(table(&tessera, &direct, on_tessera.cpus))
}

/// Every row's name, in order.
const NAMES: [&str; 9] = [
    "disk write, 64 MiB sequential, Tessera",
    "disk write, 64 MiB sequential, direct",
    "disk write, Tessera / direct",
    "disk read, 64 MiB sequential, Tessera",
    "disk read, 64 MiB sequential, direct",
    "disk read, Tessera / direct",
    "disk 4 KiB random reads, Tessera",
    "disk 4 KiB random reads, direct",
    "disk 4 KiB random reads, Tessera / direct",
];

fn table(tessera: &Run, direct: &Run, cpus: u32) -> Vec<[String; 3]> {
    let ms = |run: &Run, ns: u64| format!("{:.2} ms", run.secs(ns) * 1e3);
    let seq = |op: &str, flag: &str, f: fn(&Run) -> f64, ns: fn(&Run) -> u64| {
        [
            (
                format!("{:.1}", f(tessera)),
                format!(
                    "MiB/s of guest time, 64 MiB in {}, best of {REPEATS} (dd bs=1M {flag}, to an LV Tessera serves; 1 vCPU, {cpus} CPUs)",
                    ms(tessera, ns(tessera))
                ),
            ),
            (
                format!("{:.1}", f(direct)),
                format!(
                    "MiB/s of guest time, 64 MiB in {}, best of {REPEATS} (the same on QEMU's virtio-blk, no hypervisor)",
                    ms(direct, ns(direct))
                ),
            ),
            (
                format!("{:.3}", f(tessera) / f(direct)),
                format!("{op} MiB/s with Tessera / without"),
            ),
        ]
    };
    let random = [
        (
            format!("{:.0}", tessera.random_per_s()),
            format!(
                "reads/s of guest time, {} in {} (one busybox dd each: fork+exec included)",
                tessera.random_reads,
                ms(tessera, tessera.random_ns)
            ),
        ),
        (
            format!("{:.0}", direct.random_per_s()),
            format!(
                "reads/s of guest time, {} in {} (the same on QEMU's virtio-blk, no hypervisor)",
                direct.random_reads,
                ms(direct, direct.random_ns)
            ),
        ),
        (
            format!("{:.3}", tessera.random_per_s() / direct.random_per_s()),
            "reads/s with Tessera / without".into(),
        ),
    ];
    seq("write", "oflag=direct", Run::write_mib_s, |r| r.write_ns)
        .into_iter()
        .chain(seq("read", "iflag=direct", Run::read_mib_s, |r| r.read_ns))
        .chain(random)
        .zip(NAMES)
        .map(|((value, unit), name)| [name.into(), value, unit])
        .collect()
}

/// Boots the scenario's Linux VM straight in QEMU: its kernel, initramfs,
/// bootargs, memory and vCPUs, with the bytes of its first disk's volume as
/// the whole disk; types the same input; its serial lines.
fn direct_lines(ws: &Workspace, board: &str) -> Result<Vec<String>> {
    let path = ci(ws, STEM);
    let scenario = profile::load_scenario(&path)?.on_board(board);
    let (profile, _) = scenario::plan(ws, &scenario)?;
    let spec = qemu::spec(&profile)?;
    let vms = &scenario
        .vms
        .as_ref()
        .context("the disk bench scenario names no VMs")?
        .vms;
    let [vm] = &vms[..] else {
        bail!("{}: the disk bench boots one VM", path.display());
    };
    let name = vm.name.get_ref();
    let kernel = vm.kernel.as_ref().map(|k| k.get_ref().as_str());
    let initrd = vm.initrd.as_ref().map(|i| i.get_ref().as_str());
    ensure!(
        kernel == Some("debian:arm64") && initrd == Some("busybox"),
        "{}: the direct run boots Debian's arm64 kernel with the busybox initramfs only",
        path.display()
    );
    let assets = debian::linux_assets(ws, Flavour::Arm64)?;
    let image = scenario::prepare_disk(ws, &scenario)?
        .with_context(|| format!("{}: no `disk`", path.display()))?;
    let source = vm
        .disks
        .as_ref()
        .and_then(|d| d.get_ref().first())
        .with_context(|| format!("{}: the VM has no `disks`", path.display()))?
        .source
        .get_ref();
    let (offset, size) = volume_bytes(&image, source)?;

    // The board's machine but at EL1 (the kernel is the only guest), and a
    // device tree without QEMU's rng-seed and kaslr-seed, as xtask writes
    // its VMs': without a seed this kernel's CRNG never gets ready, and each
    // syscall's random stack offset then draws from the slow path (1000
    // shell `read -n 1` from /dev/zero: 94 ms of guest time, 28 ms with the
    // seed or with randomize_kstack_offset=off), which would be a difference
    // in the device trees, not in the disk paths.
    let machine: Vec<&str> = spec
        .machine
        .split(',')
        .filter(|part| !part.starts_with("virtualization"))
        .chain(["dtb-randomness=off"])
        .collect();
    let mut cmd = Command::new(&spec.binary);
    cmd.args(["-M", &machine.join(","), "-cpu", &spec.cpu])
        .arg("-m")
        .arg(format!("{}M", vm.memory.get_ref().0 >> 20))
        .arg("-smp")
        .arg(vm.vcpus.get_ref().to_string())
        .args(["-nic", "none", "-kernel"])
        .arg(&assets.kernel)
        .arg("-initrd")
        .arg(&assets.initrd)
        .arg("-append")
        .arg(
            vm.bootargs
                .as_ref()
                .map_or("console=ttyAMA0", |b| b.get_ref().as_str()),
        )
        .arg("-drive")
        .arg(format!(
            "if=none,file={},format=raw,offset={offset},size={size},id=hd",
            image.display()
        ))
        .args(["-device", "virtio-blk-device,drive=hd"]);
    // Version 2, as Tessera's emulated device: the same Linux driver path.
    qemu::virtio_mmio_version(&mut cmd, 2);
    cmd.args(qemu::ICOUNT);

    let expect = direct_expect(&scenario, name);
    let watch = Watch {
        path: &path,
        expect: &expect,
        forbid: &scenario.forbid,
        input: &scenario.input,
        timeout: scenario.timeout,
        log: ws
            .scenario_logs_dir()
            .join(format!("{}-direct.log", scenario.name)),
    };
    Ok(drive(cmd, &watch, None)?.0)
}

/// The scenario's expectations without a hypervisor: its `[hv]` lines gone,
/// the VM's `[<name>] ` prefix taken off the others.
fn direct_expect(scenario: &Scenario, vm: &str) -> Vec<Expect> {
    let prefix = format!("[{vm}] ");
    let line = |l: &String| -> Option<String> {
        if l.starts_with("[hv]") {
            None
        } else {
            Some(l.strip_prefix(&prefix).unwrap_or(l).to_string())
        }
    };
    scenario
        .expect
        .iter()
        .filter_map(|e| match e {
            Expect::Line(l) => line(l).map(Expect::Line),
            Expect::AnyOrder(ls) => {
                let ls: Vec<String> = ls.iter().filter_map(line).collect();
                (!ls.is_empty()).then_some(Expect::AnyOrder(ls))
            }
        })
        .collect()
}

/// A disk image read through `std::fs::File`, for `disk_layout`.
struct ImageFile {
    file: std::fs::File,
    sectors: u64,
}

impl disk_layout::BlockRead for ImageFile {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), disk_layout::IoError> {
        use std::io::{Read, Seek, SeekFrom};
        self.file
            .seek(SeekFrom::Start(sector * disk_layout::SECTOR as u64))
            .and_then(|_| self.file.read_exact(buf))
            .map_err(|_| disk_layout::IoError)
    }

    fn sectors(&self) -> u64 {
        self.sectors
    }
}

/// Where volume `source` lies on `image`, `(offset, size)` in bytes, read
/// with the hypervisor's own layout code; one extent only (QEMU's raw
/// driver maps a single range).
pub fn volume_bytes(image: &Path, source: &str) -> Result<(u64, u64)> {
    let file =
        std::fs::File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let sectors = file.metadata()?.len() / disk_layout::SECTOR as u64;
    let mut disk = ImageFile { file, sectors };
    let parsed = disk_layout::Source::parse(source)
        .map_err(|e| anyhow::anyhow!("disk source {source:?}: {e:?}"))?;
    let volume = disk_layout::resolve(&mut disk, &parsed)
        .map_err(|e| anyhow::anyhow!("{source} on {}: {e:?}", image.display()))?;
    let [extent] = volume.extents() else {
        bail!(
            "{source} on {} has {} extents; the direct run maps one",
            image.display(),
            volume.extents().len()
        );
    };
    let sector = disk_layout::SECTOR as u64;
    Ok((extent.disk_sector * sector, extent.sectors * sector))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(prefix: &str) -> Vec<String> {
        [
            "/ # r write dd if=/dev/zero of=/dev/vda bs=1M count=64 oflag=direct",
            "disk-clock: status 0 ns 256448",
            "disk-write-1: status 0 ns 45993200",
            "disk-write-2: status 0 ns 45158176",
            "disk-write-3: status 0 ns 45324320",
            "disk-write-4: status 0 ns 46324320",
            "disk-write-5: status 0 ns 45424320",
            "disk-read-1: status 0 ns 11921536",
            "disk-read-2: status 0 ns 11941264",
            "disk-read-3: status 0 ns 12662832",
            "disk-read-4: status 0 ns 11962832",
            "disk-read-5: status 0 ns 11921537",
            "/ # t random rnd 1000; echo \"disk-random-reads: $i\"",
            "disk-random: status 0 ns 606342352",
            "disk-random-reads: 1000",
        ]
        .iter()
        .map(|l| {
            if l.starts_with("disk-") {
                format!("{prefix}{l}")
            } else {
                l.to_string()
            }
        })
        .collect()
    }

    #[test]
    fn reads_the_timed_lines() {
        assert_eq!(
            parse_timed("status 0 ns 45158176"),
            Some(Timed {
                status: 0,
                ns: 45_158_176
            })
        );
        assert_eq!(
            parse_timed("status 1 ns 7"),
            Some(Timed { status: 1, ns: 7 })
        );
        assert_eq!(parse_timed("status $s ns $((n - a))\"; }"), None);
        assert_eq!(parse_timed("status 0"), None);
        assert_eq!(parse_timed(""), None);
        assert_eq!(
            parse_repeat("2: status 0 ns 11"),
            Some((2, Timed { status: 0, ns: 11 }))
        );
        assert_eq!(parse_repeat("$j: status 0 ns 11"), None);
        assert_eq!(parse_repeat("2 status 0 ns 11"), None);
    }

    #[test]
    fn figures_with_and_without_the_vm_prefix() {
        for prefix in ["", "[linux] "] {
            let run = Run::from_lines(&lines(prefix)).unwrap();
            assert_eq!(
                run,
                Run {
                    clock_ns: 256_448,
                    write_ns: 45_158_176,
                    read_ns: 11_921_536,
                    random_ns: 606_342_352,
                    random_reads: 1000,
                }
            );
            // The fastest of each three, less the clock: 64 MiB in
            // 44.901728 ms and 11.665088 ms; 1000 reads in 606.085904 ms.
            assert!((run.write_mib_s() - 64.0 / 0.044_901_728).abs() < 1e-6);
            assert!((run.read_mib_s() - 64.0 / 0.011_665_088).abs() < 1e-6);
            assert!((run.random_per_s() - 1000.0 / 0.606_085_904).abs() < 1e-6);
        }
    }

    #[test]
    fn failed_or_missing_commands_are_errors() {
        let mut failed = lines("[linux] ");
        failed[8] = "[linux] disk-read-2: status 1 ns 500000".into();
        let error = format!("{:#}", Run::from_lines(&failed).unwrap_err());
        assert!(
            error.contains("read-2") && error.contains("status 1"),
            "{error}"
        );
        let missing = lines("")[..13].to_vec();
        assert!(Run::from_lines(&missing).is_err());
        let mut gap = lines("");
        gap.remove(4);
        let error = format!("{:#}", Run::from_lines(&gap).unwrap_err());
        assert!(error.contains("runs [1, 2, 4, 5]"), "{error}");
        let mut too_fast = lines("");
        too_fast[3] = "disk-write-2: status 0 ns 100".into();
        assert!(Run::from_lines(&too_fast).is_err());
    }

    #[test]
    fn the_table_has_every_row_and_ratios() {
        let tessera = Run::from_lines(&lines("[linux] ")).unwrap();
        let mut half = Run::from_lines(&lines("")).unwrap();
        half.write_ns = 2 * (half.write_ns - half.clock_ns) + half.clock_ns;
        let rows = table(&half, &tessera, 2);
        let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(names, NAMES);
        assert_eq!(rows[2][1], "0.500");
        assert_eq!(rows[5][1], "1.000");
        assert_eq!(rows[7][1], "1650");
    }

    #[test]
    fn direct_expectations_drop_the_hypervisor() {
        let ws = Workspace::locate().unwrap();
        let scenario = profile::load_scenario(&ci(&ws, STEM)).unwrap();
        let expect = direct_expect(&scenario, "linux");
        assert!(!expect.is_empty());
        for e in &expect {
            let Expect::Line(l) = e else { continue };
            assert!(!l.starts_with('['), "{l}");
        }
        assert!(expect.contains(&Expect::Line("disk-random-reads: 1000".into())));
    }

    /// The scenario's commands move what [`SEQ_MIB`] says, both ways, and
    /// repeat [`REPEATS`] times.
    #[test]
    fn the_scenario_moves_64_mib() {
        let ws = Workspace::locate().unwrap();
        let scenario = profile::load_scenario(&ci(&ws, STEM)).unwrap();
        let sends: Vec<&str> = scenario.input.iter().map(|i| i.send.as_str()).collect();
        let runs: Vec<String> = (1..=REPEATS).map(|j| j.to_string()).collect();
        let repeat = format!("for j in {}; do", runs.join(" "));
        assert!(sends.iter().any(|s| s.contains(&repeat)), "no {repeat:?}");
        let count = format!("bs=1M count={SEQ_MIB}");
        for op in ["r write dd", "r read dd"] {
            let send = sends
                .iter()
                .find(|s| s.starts_with(op))
                .unwrap_or_else(|| panic!("no {op:?} in the scenario"));
            assert!(send.contains(&count), "{send}");
        }
    }

    #[test]
    fn finds_a_volume_on_a_disk_image() {
        // disk-layout's LVM fixture: vg0/db is 384 KiB in one piece, vg0/web
        // in two.
        let ws = Workspace::locate().unwrap();
        let gz = ws
            .root
            .join("components/disk-layout/tests/fixtures/lvm.img.gz");
        let mut bytes = Vec::new();
        use std::io::Read;
        flate2::read::GzDecoder::new(std::fs::File::open(gz).unwrap())
            .read_to_end(&mut bytes)
            .unwrap();
        let dir = ws.target.join("test-tmp");
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join(format!("disk-bench-{}.img", std::process::id()));
        std::fs::write(&image, &bytes).unwrap();
        let (offset, size) = volume_bytes(&image, "lvm:vg0/db").unwrap();
        assert_eq!(size, 384 << 10);
        assert_eq!(offset % 512, 0);
        assert!(offset > 4096 * 512 && offset + size <= 14336 * 512);
        let (p1, p1_size) = volume_bytes(&image, "part:1").unwrap();
        assert_eq!((p1, p1_size), (2048 * 512, 512 << 10));
        let two = volume_bytes(&image, "lvm:vg0/web").unwrap_err().to_string();
        assert!(two.contains("2 extents"), "{two}");
        assert!(volume_bytes(&image, "lvm:vg0/nope").is_err());
        std::fs::remove_file(&image).unwrap();
    }
}
