//! QEMU command lines from a profile's `[qemu]` section.

use crate::compose::Built;
use crate::tools;
use anyhow::{Context, Result};
use config::profile::{Profile, QemuSpec};
use std::path::Path;
use std::process::Command;

/// The board's `[qemu]` section, or an error saying the board cannot run there.
pub fn spec(profile: &Profile) -> Result<&QemuSpec> {
    profile.qemu.as_ref().with_context(|| {
        format!(
            "{} has no [qemu] section, so it cannot run in QEMU",
            profile.path.display()
        )
    })
}

/// QEMU booting `built` directly with `-kernel` (an ELF: QEMU loads it at its
/// own addresses and enters it at EL2), no network. Callers choose the
/// serial/display options.
pub fn command(spec: &QemuSpec, built: &Built) -> Result<Command> {
    tools::ensure(&[tools::qemu(&spec.binary)])?;
    let mut cmd = Command::new(&spec.binary);
    cmd.args(["-M", &spec.machine, "-cpu", &spec.cpu, "-m", &spec.memory])
        .args(["-smp", &built.composition.cpus.to_string()])
        .args(["-nic", "none", "-kernel"])
        .arg(built.elf())
        .args(&spec.extra);
    Ok(cmd)
}

/// Debian's u-boot for the board's architecture (package `u-boot-qemu`).
pub fn u_boot_firmware(arch: config::composition::Arch) -> &'static str {
    match arch {
        config::composition::Arch::Aarch64 => "/usr/lib/u-boot/qemu_arm64/u-boot.bin",
        config::composition::Arch::Armv7a => "/usr/lib/u-boot/qemu_arm/u-boot.bin",
    }
}

/// QEMU with the real u-boot as its firmware and `sdcard` as a virtio disk:
/// u-boot's distro boot finds `boot.scr` there and starts Tessera itself,
/// as on a board.
pub fn u_boot_command(spec: &QemuSpec, built: &Built, sdcard: &Path) -> Result<Command> {
    let firmware = u_boot_firmware(built.composition.arch);
    anyhow::ensure!(
        Path::new(firmware).is_file(),
        "{firmware} is missing: apt-get install u-boot-qemu"
    );
    tools::ensure(&[tools::qemu(&spec.binary)])?;
    let mut cmd = Command::new(&spec.binary);
    cmd.args(["-M", &spec.machine, "-cpu", &spec.cpu, "-m", &spec.memory])
        .args(["-smp", &built.composition.cpus.to_string()])
        .args(["-nic", "none", "-bios", firmware, "-drive"])
        .arg(format!(
            "if=none,file={},format=raw,id=sd",
            sdcard.display()
        ))
        .args(["-device", "virtio-blk-device,drive=sd"])
        .args(&spec.extra);
    Ok(cmd)
}

/// `-icount shift=0`: one instruction per nanosecond of virtual time, so
/// tick counts and the serial output are the same on every run.
pub const ICOUNT: [&str; 2] = ["-icount", "shift=0,align=off,sleep=off"];

/// Serial on stdout, nothing else, for reading it from a program.
pub const HEADLESS: [&str; 6] = ["-display", "none", "-serial", "stdio", "-monitor", "none"];

/// Attaches `image` (a raw disk image) as a virtio-blk device: the first
/// one takes QEMU virt's highest virtio-mmio slot, 0x0a003e00, which the
/// QEMU boards' `[disk]` names.
pub fn attach_disk(cmd: &mut Command, image: &Path) {
    cmd.arg("-drive")
        .arg(format!("if=none,file={},format=raw,id=hd", image.display()))
        .args(["-device", "virtio-blk-device,drive=hd"]);
}

/// QEMU's virtio-mmio transports at `version` (1: legacy, 2: modern).
pub fn virtio_mmio_version(cmd: &mut Command, version: u32) {
    let legacy = if version == 1 { "true" } else { "false" };
    cmd.args(["-global", &format!("virtio-mmio.force-legacy={legacy}")]);
}

/// Boots `built` with the serial port on this terminal, and `disk` as its
/// disk if given.
pub fn run_interactive(spec: &QemuSpec, built: &Built, disk: Option<&Path>) -> Result<()> {
    let mut cmd = command(spec, built)?;
    if let Some(disk) = disk {
        attach_disk(&mut cmd, disk);
    }
    cmd.arg("-nographic");
    eprintln!(
        "xtask: booting {} in {}; the serial port is this terminal, Ctrl-A X quits",
        built.composition.name, spec.binary
    );
    let status = cmd
        .status()
        .with_context(|| format!("starting {}", spec.binary))?;
    anyhow::ensure!(status.success(), "{} exited with {status}", spec.binary);
    Ok(())
}
