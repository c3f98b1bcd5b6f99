//! Outside programs the commands need, and installing them where we may.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};

/// A program (or, with a `/` in `binary`, a file at that path) and the
/// Debian package that provides it.
pub struct Tool {
    pub binary: String,
    pub package: &'static str,
}

pub fn dumpimage() -> Tool {
    Tool {
        binary: "dumpimage".into(),
        package: "u-boot-tools",
    }
}

/// mtools, to read the SD-card image's FAT partition back (`mdir`, `mcopy`).
pub fn mtools() -> Tool {
    Tool {
        binary: "mdir".into(),
        package: "mtools",
    }
}

/// `fdisk -l`, to read the SD-card image's partition table back.
pub fn fdisk() -> Tool {
    Tool {
        binary: "fdisk".into(),
        package: "fdisk",
    }
}

/// Debian's prebuilt u-boot for QEMU `virt` (arm64); a file, not a program.
pub fn u_boot_qemu() -> Tool {
    Tool {
        binary: "/usr/lib/u-boot/qemu_arm64/u-boot.bin".into(),
        package: "u-boot-qemu",
    }
}

/// QEMU as a profile names it; Debian's `qemu-system-arm` provides both
/// `qemu-system-arm` and `qemu-system-aarch64`.
pub fn qemu(binary: &str) -> Tool {
    Tool {
        binary: binary.into(),
        package: "qemu-system-arm",
    }
}

/// The program's path in `PATH`, if any; a name with a `/` is a file path
/// and is found if that file exists.
pub fn find(binary: &str) -> Option<PathBuf> {
    if binary.contains('/') {
        return Path::new(binary).is_file().then(|| binary.into());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(binary))
        .find(|path| path.is_file())
}

/// Makes sure every tool is there: as root on Debian/Ubuntu, installs the
/// missing ones with apt-get; elsewhere fails with the command to run.
pub fn ensure(tools: &[Tool]) -> Result<()> {
    let missing: Vec<&Tool> = tools.iter().filter(|t| find(&t.binary).is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    packages.sort_unstable();
    packages.dedup();
    let names: Vec<&str> = missing.iter().map(|t| t.binary.as_str()).collect();
    let install = format!("apt-get install -y {}", packages.join(" "));
    if !(is_root() && is_debian_like()) {
        bail!(
            "missing {}; install with:\n    sudo apt-get update && sudo {install}",
            names.join(", ")
        );
    }
    eprintln!(
        "xtask: missing {}, running apt-get update && {install}",
        names.join(", ")
    );
    let sh = Shell::new()?;
    cmd!(sh, "apt-get update")
        .run()
        .context("apt-get update failed")?;
    cmd!(sh, "apt-get install -y {packages...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .with_context(|| format!("{install} failed"))?;
    if let Some(tool) = missing.iter().find(|t| find(&t.binary).is_none()) {
        bail!(
            "{} is still missing after installing {}",
            tool.binary,
            tool.package
        );
    }
    Ok(())
}

fn is_root() -> bool {
    let Ok(sh) = Shell::new() else { return false };
    cmd!(sh, "id -u")
        .quiet()
        .read()
        .is_ok_and(|uid| uid.trim() == "0")
}

fn is_debian_like() -> bool {
    std::fs::read_to_string("/etc/os-release").is_ok_and(|text| {
        text.lines().any(|line| {
            let (key, value) = line.split_once('=').unwrap_or_default();
            let value = value.trim_matches('"');
            (key == "ID" || key == "ID_LIKE")
                && value
                    .split_whitespace()
                    .any(|id| id == "debian" || id == "ubuntu")
        })
    })
}
