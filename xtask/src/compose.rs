//! The build pipeline: profile → validated composition → guests → image →
//! `target/images/<name>/`.

use crate::elf;
use crate::fit;
use crate::manifest::{self, Sizes};
use crate::uimage::{self, ImageArch, Kind};
use crate::workspace::{read, write, Workspace};
use anyhow::{bail, ensure, Context, Result};
use config::composition::{Arch, Composition};
use config::profile::{self, Known, Profile, VmSource};
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};

/// ELF sections that hold the VMs rather than the hypervisor.
pub const GUESTS_SECTION: &str = ".tessera.guests";
pub const VMS_SECTION: &str = ".tessera.vms";

/// The image `boot.scr` (the script distro boot runs) loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BootImage {
    /// `tessera.uimg`, the legacy uImage.
    UImage,
    /// `tessera.itb`, the FIT (aarch64 only for now; else the uImage).
    #[allow(dead_code)]
    Fit,
}

/// Which image `boot.scr`/`boot.cmd` boot. `boot-fit.scr`/`boot-fit.cmd`
/// always boot the FIT. The FIT boots under Debian's qemu_arm64 u-boot
/// 2023.01 in QEMU (`bootm` checked its SHA-256); switch to `BootImage::Fit`
/// once it has also booted with the board's own u-boot.
const BOOT_SCR: BootImage = BootImage::UImage;

/// A composition built into `target/images/<name>/`.
pub struct Built {
    pub composition: Composition,
    pub dir: PathBuf,
    pub sizes: Sizes,
}

impl Built {
    pub fn elf(&self) -> PathBuf {
        self.dir.join("tessera.elf")
    }

    pub fn uimage(&self) -> PathBuf {
        self.dir.join("tessera.uimg")
    }
}

/// The architecture as profiles spell it.
pub fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "aarch64",
        Arch::Armv7a => "armv7a",
    }
}

/// Loads `boards/<board>.toml`; its error is the profile's own message.
pub fn load_board(ws: &Workspace, board: &str) -> Result<Profile> {
    Ok(profile::load_board(&ws.boards_dir(), board)?)
}

/// Validates and lays out `profile` (with `vms` instead of its own VMs, if
/// given) as composition `name`. Nothing is compiled before this passes.
pub fn plan(
    ws: &Workspace,
    profile: &Profile,
    vms: Option<&VmSource>,
    name: &str,
) -> Result<Composition> {
    let known = Known::builtin(ws.guest_names()?);
    let guests = ws.compose_dir(name).join("guests");
    let guest_image = |guest: &str| guests.join(format!("{guest}.bin"));
    Ok(profile::plan(profile, vms, &known, name, &guest_image)?)
}

/// Builds composition `name` of `profile` and writes its deliverables.
pub fn build(
    ws: &Workspace,
    profile: &Profile,
    vms: Option<&VmSource>,
    name: &str,
) -> Result<Built> {
    build_planned(ws, plan(ws, profile, vms, name)?)
}

/// Builds a composition [`plan`] made (and a caller may have adjusted).
pub fn build_planned(ws: &Workspace, composition: Composition) -> Result<Built> {
    let name = composition.name.clone();
    let name = name.as_str();
    if composition.arch == Arch::Armv7a {
        bail!(
            "board {} is ARMv7-A: the ARMv7-A hypervisor (arch-armv7) is not built yet; \
             only aarch64 boards can be composed today",
            composition.board
        );
    }
    eprintln!("xtask: composing {name}");
    let sh = Shell::new()?;
    sh.change_dir(&ws.root);
    build_guests(ws, &sh, &composition)?;
    let composition_file = ws.compose_dir(name).join("composition.toml");
    write(&composition_file, composition.to_toml())?;
    let image_elf = build_image(ws, &sh, &composition, &composition_file)?;
    let built = write_deliverables(ws, composition, &image_elf)?;
    eprintln!("xtask: wrote {}", built.dir.display());
    Ok(built)
}

/// Builds every guest the composition names once, as a flat binary at the
/// path the plan gave it.
fn build_guests(ws: &Workspace, sh: &Shell, composition: &Composition) -> Result<()> {
    let triple = composition.arch.rust_target();
    let cargo = ws.cargo();
    let mut done: Vec<&str> = Vec::new();
    for vm in &composition.vms {
        if !done.contains(&vm.guest.as_str()) {
            let package = format!("guest-{}", vm.guest);
            cmd!(sh, "{cargo} build --release -p {package} --target {triple}")
                .env("CARGO_TARGET_DIR", &ws.target)
                .run()
                .with_context(|| format!("building guest {}", vm.guest))?;
            let elf_path = ws.release_dir(triple).join(&vm.guest);
            let flat = elf::flatten(&read(&elf_path)?)
                .with_context(|| format!("converting {} to a flat binary", elf_path.display()))?;
            write(&vm.image, &flat.bytes)?;
            done.push(&vm.guest);
        }
        let size = std::fs::metadata(&vm.image)?.len();
        ensure!(
            size <= vm.ram.size,
            "guest {} is {size} bytes, more than the {} bytes of RAM of VM {}: give the VM more memory",
            vm.guest,
            vm.ram.size,
            vm.name
        );
    }
    Ok(())
}

/// Builds `images/tessera` with the composition's features; its build script
/// reads the composition (and the guest images it names) itself.
fn build_image(
    ws: &Workspace,
    sh: &Shell,
    composition: &Composition,
    composition_file: &Path,
) -> Result<PathBuf> {
    let triple = composition.arch.rust_target();
    let features = composition.features().join(",");
    let cargo = ws.cargo();
    cmd!(
        sh,
        "{cargo} build --release -p tessera --target {triple} --features {features}"
    )
    .env("CARGO_TARGET_DIR", &ws.target)
    .env("TESSERA_COMPOSITION", composition_file)
    .run()
    .context("building the hypervisor image (images/tessera)")?;
    Ok(ws.release_dir(triple).join("tessera"))
}

/// Writes `target/images/<name>/` from a built image ELF.
pub fn write_deliverables(
    ws: &Workspace,
    composition: Composition,
    image_elf: &Path,
) -> Result<Built> {
    let dir = ws.images_dir(&composition.name);
    let elf_bytes = read(image_elf)?;
    let flat = elf::flatten(&elf_bytes)
        .with_context(|| format!("converting {} to a flat binary", image_elf.display()))?;
    let base = composition.hypervisor.base;
    ensure!(
        flat.entry == base && flat.base == base,
        "{} is entered at {:#x} and starts at {:#x}, but the board loads it at {base:#x}: \
         the image's linker script does not follow the composition",
        image_elf.display(),
        flat.entry,
        flat.base
    );
    let load = u32::try_from(base)
        .with_context(|| format!("load address {base:#x} does not fit a u-boot legacy image"))?;
    let arch = ImageArch::from(composition.arch);
    let timestamp = uimage::timestamp()?;
    let title = format!("Tessera {}", composition.name);
    // The FIT carries the flat binary only: QEMU virt and u-boot provide the DTB.
    let fit = composition.arch == Arch::Aarch64;
    let boot_cmd = if BOOT_SCR == BootImage::Fit && fit {
        fit::boot_cmd()
    } else {
        uimage::boot_cmd(base)
    };

    let sizes = Sizes::measure(&composition, &elf_bytes, flat.bytes.len() as u64)?;
    write(&dir.join("tessera.elf"), &elf_bytes)?;
    write(
        &dir.join("tessera.uimg"),
        uimage::legacy_image(
            Kind::Kernel,
            arch,
            load,
            load,
            &title,
            &flat.bytes,
            timestamp,
        ),
    )?;
    write(&dir.join("tessera.bin"), &flat.bytes)?;
    write(
        &dir.join("boot.scr"),
        uimage::script_image(arch, &title, &boot_cmd, timestamp),
    )?;
    write(&dir.join("boot.cmd"), boot_cmd)?;
    if fit {
        write(
            &dir.join("tessera.itb"),
            fit::fit_image(arch, base, base, &title, &flat.bytes, None, timestamp)?,
        )?;
        let fit_cmd = fit::boot_cmd();
        write(
            &dir.join("boot-fit.scr"),
            uimage::script_image(arch, &title, &fit_cmd, timestamp),
        )?;
        write(&dir.join("boot-fit.cmd"), fit_cmd)?;
    }
    write(
        &dir.join("manifest"),
        manifest::render(&composition, &sizes),
    )?;
    Ok(Built {
        composition,
        dir,
        sizes,
    })
}
