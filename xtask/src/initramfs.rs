//! The initramfs of a Linux VM: a gzip'd newc cpio with busybox, `/init`,
//! `/dev/console` and kernel modules. Deterministic: every entry is owned by
//! root with mtime 0, so the same inputs give the same bytes.

use crate::workspace;
use anyhow::{Context, Result};
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `/init`. `{version}` is the kernel release, `{modules}` the modules it
/// loads. The first line it prints is what boot-time figures measure to.
/// Once virtio_net is in, it brings up each network port the composer gave
/// an address on the command line (`{net}=IF,ADDR`, one word a port, `{net}`
/// being `tessera.net`) with busybox `ip`.
pub const INIT_TEMPLATE: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "tessera-init: {version} up"
for m in {modules}; do
    insmod /lib/modules/{version}/kernel/$m || echo "tessera-init: insmod $m failed"
done
echo "tessera-init: modules $(cut -d' ' -f1 /proc/modules | sort | tr '\n' ' ')"
ip link set lo up
for word in $(cat /proc/cmdline); do
    case "$word" in
    {net}=*,*)
        port=${word#{net}=}
        dev=${port%%,*}
        addr=${port#*,}
        if ip link set "$dev" up && ip addr add "$addr" dev "$dev"; then
            echo "tessera-init: $dev $addr"
        else
            echo "tessera-init: $dev $addr failed"
        fi
        ;;
    esac
done
exec setsid cttyhack sh
"#;

/// Directories every initramfs has; busybox `--install -s` fills the bin ones.
const DIRS: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("dev", 0o755),
    ("lib", 0o755),
    ("lib/modules", 0o755),
    ("proc", 0o555),
    ("sbin", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
];

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// Bump when the layout changes, so cached initramfs files are rebuilt.
const FORMAT: &str = "tessera-initramfs 1";

/// [`INIT_TEMPLATE`] for kernel release `version`, loading `modules`
/// (paths under `/lib/modules/<version>/kernel/`) in that order, and
/// reading the command-line word the composer gives addresses in.
pub fn init_script(version: &str, modules: &[&str]) -> String {
    INIT_TEMPLATE
        .replace("{version}", version)
        .replace("{modules}", &modules.join(" "))
        .replace("{net}", config::profile::NET_CMDLINE_WORD)
}

struct Entry {
    name: String,
    mode: u32,
    rdev: (u32, u32),
    data: Vec<u8>,
}

impl Entry {
    fn dir(name: &str, perm: u32) -> Entry {
        Entry {
            name: name.into(),
            mode: S_IFDIR | perm,
            rdev: (0, 0),
            data: Vec::new(),
        }
    }

    fn file(name: &str, perm: u32, data: Vec<u8>) -> Entry {
        Entry {
            name: name.into(),
            mode: S_IFREG | perm,
            rdev: (0, 0),
            data,
        }
    }
}

/// Writes `out`: `/bin/busybox`, `/init` (`init_script`), `/dev/console`
/// (so the kernel has a console before devtmpfs), the base directories, and
/// each module (file, path in the initramfs) with its directories. Leaves
/// `out` alone if it was built from the same contents: their digest sits
/// beside it in `<out>.inputs`.
pub fn build(
    busybox: &Path,
    modules: &[(PathBuf, String)],
    init_script: &str,
    out: &Path,
) -> Result<()> {
    let mut entries: Vec<Entry> = DIRS
        .iter()
        .map(|&(name, perm)| Entry::dir(name, perm))
        .collect();
    entries.push(Entry::file("bin/busybox", 0o755, workspace::read(busybox)?));
    entries.push(Entry::file("init", 0o755, init_script.as_bytes().to_vec()));
    entries.push(Entry {
        name: "dev/console".into(),
        mode: S_IFCHR | 0o600,
        rdev: (5, 1),
        data: Vec::new(),
    });
    for (src, dest) in modules {
        let dest = dest.trim_start_matches('/');
        // Parents first: cpio creates no directories for the kernel.
        for (end, _) in dest.match_indices('/') {
            let parent = &dest[..end];
            if !entries.iter().any(|e| e.name == parent) {
                entries.push(Entry::dir(parent, 0o755));
            }
        }
        entries.push(Entry::file(dest, 0o644, workspace::read(src)?));
    }
    let digest = digest(&entries);
    let stamp = PathBuf::from(format!("{}.inputs", out.display()));
    if out.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == digest) {
        return Ok(());
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let partial = out.with_extension(format!("partial-{}", std::process::id()));
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    write_cpio(&entries, file).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, out)
        .with_context(|| format!("moving {} to {}", partial.display(), out.display()))?;
    workspace::write(&stamp, digest)
}

fn digest(entries: &[Entry]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(FORMAT);
    for entry in entries {
        hasher.update(format!(
            "{} {:o} {:?} {}\n",
            entry.name,
            entry.mode,
            entry.rdev,
            entry.data.len()
        ));
        hasher.update(&entry.data);
    }
    crate::debian::hex(&hasher.finalize())
}

fn write_cpio(entries: &[Entry], out: std::fs::File) -> std::io::Result<()> {
    let mut gz = GzEncoder::new(std::io::BufWriter::new(out), Compression::best());
    for (index, entry) in entries.iter().enumerate() {
        let is_dir = entry.mode & S_IFMT == S_IFDIR;
        let size = u32::try_from(entry.data.len())
            .map_err(|_| std::io::Error::other(format!("{} is over 4 GiB", entry.name)))?;
        let mut writer = cpio::NewcBuilder::new(&entry.name)
            .ino(index as u32 + 1)
            .mode(entry.mode)
            .nlink(if is_dir { 2 } else { 1 })
            .rdev_major(entry.rdev.0)
            .rdev_minor(entry.rdev.1)
            .write(&mut gz, size);
        writer.write_all(&entry.data)?;
        writer.finish()?;
    }
    cpio::newc::trailer(&mut gz)?;
    gz.finish()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tessera-initramfs-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// (name, mode, rdev, data) of an entry.
    type Listed = (String, u32, (u32, u32), Vec<u8>);

    /// Each entry, read back with the crate.
    fn list(path: &Path) -> Vec<Listed> {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(bytes[..3], [0x1f, 0x8b, 8], "gzip magic and deflate");
        let mut cpio = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut cpio)
            .unwrap();
        let mut entries = Vec::new();
        let mut rest = &cpio[..];
        loop {
            let mut reader = cpio::NewcReader::new(rest).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            let e = reader.entry();
            let (name, mode, rdev) = (
                e.name().to_string(),
                e.mode(),
                (e.rdev_major(), e.rdev_minor()),
            );
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            entries.push((name, mode, rdev, data));
            rest = reader.finish().unwrap();
        }
        entries
    }

    #[test]
    fn holds_busybox_init_console_and_modules() {
        let dir = scratch("build");
        let busybox = dir.join("busybox");
        std::fs::write(&busybox, b"\x7fELF fake busybox").unwrap();
        let ko = dir.join("virtio_blk.ko");
        std::fs::write(&ko, b"\x7fELF fake module").unwrap();
        let dest = "lib/modules/6.1.0-50-arm64/kernel/drivers/block/virtio_blk.ko";
        let out = dir.join("initrd.gz");
        let init = init_script("6.1.0-50-arm64", &["drivers/block/virtio_blk.ko"]);
        build(&busybox, &[(ko, dest.into())], &init, &out).unwrap();

        let entries = list(&out);
        let find = |name: &str| {
            entries.iter().find(|e| e.0 == name).unwrap_or_else(|| {
                panic!(
                    "no {name} in {:?}",
                    entries.iter().map(|e| &e.0).collect::<Vec<_>>()
                )
            })
        };
        let init_text = String::from_utf8(find("init").3.clone()).unwrap();
        assert!(
            init_text.contains("for m in drivers/block/virtio_blk.ko; do")
                && init_text.contains("insmod /lib/modules/6.1.0-50-arm64/kernel/$m"),
            "/init loads the modules: {init_text}"
        );
        assert_eq!(find("bin/busybox").1, 0o100755);
        assert_eq!(find("bin/busybox").3, b"\x7fELF fake busybox");
        assert_eq!(find("init").1, 0o100755);
        assert!(String::from_utf8_lossy(&find("init").3)
            .contains("echo \"tessera-init: 6.1.0-50-arm64 up\""));
        let console = find("dev/console");
        assert_eq!((console.1, console.2), (0o020600, (5, 1)));
        for dir in [
            "dev",
            "proc",
            "sys",
            "bin",
            "sbin",
            "tmp",
            "lib/modules/6.1.0-50-arm64",
        ] {
            assert_eq!(find(dir).1 & 0o170000, 0o040000, "{dir} is not a directory");
        }
        assert_eq!(find("tmp").1, 0o041777);
        assert_eq!(find(dest).1, 0o100644);
        assert_eq!(find(dest).3, b"\x7fELF fake module");
        // Each directory comes before what is in it.
        for (i, entry) in entries.iter().enumerate() {
            if let Some((parent, _)) = entry.0.rsplit_once('/') {
                let at = entries.iter().position(|e| e.0 == parent).unwrap();
                assert!(at < i, "{} before its directory", entry.0);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn init_brings_up_each_port_the_command_line_gives_an_address() {
        let init = init_script("6.1.0-50-arm64", &["drivers/net/virtio_net.ko"]);
        // After the modules, before the shell; the lines before kept.
        let lines: Vec<&str> = init.lines().collect();
        let at = |line: &str| {
            lines
                .iter()
                .position(|l| l.trim() == line)
                .unwrap_or_else(|| panic!("no {line:?} in:\n{init}"))
        };
        assert_eq!(lines[0], "#!/bin/busybox sh");
        assert!(at("mount -t devtmpfs devtmpfs /dev") < at("done"));
        let loaded = at(
            "echo \"tessera-init: modules $(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' ')\"",
        );
        let lo = at("ip link set lo up");
        let shell = at("exec setsid cttyhack sh");
        assert!(loaded < lo && lo < shell, "{init}");
        for line in [
            "for word in $(cat /proc/cmdline); do",
            "tessera.net=*,*)",
            "port=${word#tessera.net=}",
            "if ip link set \"$dev\" up && ip addr add \"$addr\" dev \"$dev\"; then",
            "echo \"tessera-init: $dev $addr\"",
        ] {
            assert!(
                (lo..shell).contains(&at(line)),
                "{line:?} in place in:\n{init}"
            );
        }

        // The part after the modules, run by the host's sh with `cat` and
        // `ip` stood in for: each port up, then addressed, and said; a
        // word without an address skipped, a port that fails said so.
        let part = lines[lo..shell].join("\n");
        let stubs = r#"cat() { echo "console=ttyAMA0 quiet tessera.net=eth0,10.0.0.2/24 tessera.net=eth9 tessera.net=gone,10.0.1.2/24 tessera.net=eth1,192.168.7.3/28"; }
ip() { echo "ip $*"; [ "$3" != gone ]; }
"#;
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{stubs}{part}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "ip link set lo up\n\
             ip link set eth0 up\n\
             ip addr add 10.0.0.2/24 dev eth0\n\
             tessera-init: eth0 10.0.0.2/24\n\
             ip link set gone up\n\
             tessera-init: gone 10.0.1.2/24 failed\n\
             ip link set eth1 up\n\
             ip addr add 192.168.7.3/28 dev eth1\n\
             tessera-init: eth1 192.168.7.3/28\n"
        );
    }

    #[test]
    fn the_same_inputs_are_not_built_again() {
        let dir = scratch("cached");
        let busybox = dir.join("busybox");
        std::fs::write(&busybox, b"one").unwrap();
        let out = dir.join("sub/initrd.gz");
        build(&busybox, &[], "#!/bin/sh\n", &out).unwrap();
        let first = std::fs::read(&out).unwrap();
        // Same bytes when built again from scratch: deterministic.
        std::fs::remove_file(&out).unwrap();
        build(&busybox, &[], "#!/bin/sh\n", &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), first);
        // A marker in the output shows whether it was rewritten.
        std::fs::write(&out, b"untouched").unwrap();
        build(&busybox, &[], "#!/bin/sh\n", &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"untouched");
        std::fs::write(&busybox, b"two").unwrap();
        build(&busybox, &[], "#!/bin/sh\n", &out).unwrap();
        assert_ne!(std::fs::read(&out).unwrap(), b"untouched");
        std::fs::write(&out, b"untouched").unwrap();
        build(&busybox, &[], "#!/bin/sh\necho\n", &out).unwrap();
        assert_ne!(std::fs::read(&out).unwrap(), b"untouched");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
