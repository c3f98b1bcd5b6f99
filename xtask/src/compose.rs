//! The build pipeline: profile → validated composition → guests → image →
//! `target/images/<name>/`.

use crate::debian;
use crate::devicetree;
use crate::elf;
use crate::fit;
use crate::manifest::{self, Sizes};
use crate::uimage::{self, ImageArch, Kind};
use crate::workspace::{read, write, Workspace};
use anyhow::{ensure, Context, Result};
use config::composition::{Arch, Composition};
use config::profile::{self, GuestFiles, Known, LinuxFiles, Profile, VmSource};
use config::vm::GuestWidth;
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
    /// `tessera.itb`, the FIT.
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
    Ok(profile::plan(
        profile,
        vms,
        &known,
        name,
        &Files::new(ws, name),
    )?)
}

/// The files composition `name` is built from: where each guest's flat
/// binary goes, per width; Debian's kernels and busybox initramfs, fetched
/// and built on demand; and where each Linux VM's device tree goes.
pub struct Files<'a> {
    ws: &'a Workspace,
    dir: PathBuf,
}

impl<'a> Files<'a> {
    pub fn new(ws: &'a Workspace, name: &str) -> Self {
        Files {
            ws,
            dir: ws.compose_dir(name),
        }
    }
}

impl GuestFiles for Files<'_> {
    fn guest_image(&self, guest: &str, width: GuestWidth) -> PathBuf {
        self.ws
            .committed_guest(guest, width.name())
            .unwrap_or_else(|| {
                self.dir
                    .join("guests")
                    .join(width.name())
                    .join(format!("{guest}.bin"))
            })
    }

    fn linux(
        &self,
        vm: &str,
        kernel: &str,
        initrd: Option<&str>,
        width: GuestWidth,
    ) -> Result<LinuxFiles, String> {
        let flavour = match width {
            GuestWidth::Aarch64 => debian::Flavour::Arm64,
            GuestWidth::Aarch32 => debian::Flavour::ArmmpLpae,
        };
        let debian = || debian::linux_assets(self.ws, flavour).map_err(|e| format!("{e:#}"));
        let kernel = match debian::Flavour::from_kernel_spec(kernel) {
            Some(_) => debian()?.kernel,
            None => self.ws.root.join(kernel),
        };
        let initrd = match initrd {
            None => None,
            Some("busybox") => Some(debian()?.initrd),
            Some(path) => Some(self.ws.root.join(path)),
        };
        Ok(LinuxFiles {
            kernel,
            initrd,
            dtb: self.dir.join("linux").join(format!("{vm}.dtb")),
        })
    }
}

/// Writes the device tree of each Linux VM where the plan put it.
fn write_device_trees(composition: &Composition) -> Result<()> {
    for vm in &composition.vms {
        let Some(linux) = &vm.linux else { continue };
        let initrd_len = match linux.initrd {
            Some(blob) => std::fs::metadata(&composition.guests[blob.image as usize])?.len(),
            None => 0,
        };
        let dtb = devicetree::linux_vm(vm, composition.gic.version, initrd_len)?;
        write(&composition.guests[linux.dtb.image as usize], &dtb)?;
    }
    Ok(())
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
    eprintln!("xtask: composing {name}");
    let sh = Shell::new()?;
    sh.change_dir(&ws.root);
    build_guests(ws, &sh, &composition)?;
    write_device_trees(&composition)?;
    let composition_file = composition_file(ws, name);
    write(&composition_file, composition.to_toml())?;
    let image_elf = build_image(ws, &sh, &composition, &composition_file)?;
    let built = write_deliverables(ws, composition, &image_elf)?;
    eprintln!("xtask: wrote {}", built.dir.display());
    Ok(built)
}

/// Builds every guest the composition names once, as a flat binary at the
/// path the plan gave it.
fn build_guests(ws: &Workspace, sh: &Shell, composition: &Composition) -> Result<()> {
    let cargo = ws.cargo();
    let mut done: Vec<(&str, GuestWidth)> = Vec::new();
    for vm in composition.vms.iter().filter(|vm| vm.linux.is_none()) {
        let triple = vm.width.rust_target();
        let image = composition.guest_image(vm);
        if ws.committed_guest(&vm.guest, vm.width.name()).is_some() {
            // Built against an older ABI and committed: run as it is.
            ensure!(
                image.exists(),
                "VM {}: guest {} has no committed {} binary ({})",
                vm.name,
                vm.guest,
                vm.width.name(),
                image.display()
            );
        } else if !done.contains(&(&vm.guest, vm.width)) {
            let package = format!("guest-{}", vm.guest);
            cmd!(sh, "{cargo} build --release -p {package} --target {triple}")
                .env("CARGO_TARGET_DIR", &ws.target)
                .run()
                .with_context(|| format!("building guest {}", vm.guest))?;
            let elf_path = ws.release_dir(triple).join(&*vm.guest);
            let flat = elf::flatten(&read(&elf_path)?)
                .with_context(|| format!("converting {} to a flat binary", elf_path.display()))?;
            write(image, &flat.bytes)?;
            done.push((&vm.guest, vm.width));
        }
        let size = std::fs::metadata(image)?.len();
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
    image_cargo(ws, sh, composition, composition_file, "build", &[])
        .run()
        .context("building the hypervisor image (images/tessera)")?;
    Ok(ws
        .release_dir(composition.arch.hypervisor_target())
        .join("tessera"))
}

/// `cargo <verb>` of `images/tessera` as `composition` configures it (its
/// target, its features, its composition file), then `trailing` arguments.
pub fn image_cargo<'a>(
    ws: &Workspace,
    sh: &'a Shell,
    composition: &Composition,
    composition_file: &Path,
    verb: &str,
    trailing: &[&str],
) -> xshell::Cmd<'a> {
    let triple = composition.arch.hypervisor_target();
    let features = composition.features().join(",");
    let cargo = ws.cargo();
    cmd!(
        sh,
        "{cargo} {verb} --release -p tessera --target {triple} --features {features} {trailing...}"
    )
    .env("CARGO_TARGET_DIR", &ws.target)
    .env("TESSERA_COMPOSITION", composition_file)
}

/// The composition file the image of composition `name` is built from.
pub fn composition_file(ws: &Workspace, name: &str) -> PathBuf {
    ws.compose_dir(name).join("composition.toml")
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
    // A legacy uImage has 32-bit addresses: above 4 GiB only the FIT can say
    // where the image goes.
    let uimage_load = u32::try_from(base).ok();
    let arch = ImageArch::from(composition.arch);
    let timestamp = uimage::timestamp()?;
    let title = format!("Tessera {}", composition.name);
    // The FIT carries the flat binary only: QEMU virt and u-boot provide the DTB.
    let boot_cmd = match (BOOT_SCR, uimage_load) {
        (BootImage::UImage, Some(_)) => uimage::boot_cmd(base),
        _ => fit::boot_cmd(),
    };

    let sizes = Sizes::measure(&composition, &elf_bytes, flat.bytes.len() as u64)?;
    write(&dir.join("tessera.elf"), &elf_bytes)?;
    let uimage_path = dir.join("tessera.uimg");
    match uimage_load {
        Some(load) => write(
            &uimage_path,
            uimage::legacy_image(
                Kind::Kernel,
                arch,
                load,
                load,
                &title,
                &flat.bytes,
                timestamp,
            ),
        )?,
        None if uimage_path.exists() => std::fs::remove_file(&uimage_path)
            .with_context(|| format!("removing the stale {}", uimage_path.display()))?,
        None => {}
    }
    write(&dir.join("tessera.bin"), &flat.bytes)?;
    write(
        &dir.join("boot.scr"),
        uimage::script_image(arch, &title, &boot_cmd, timestamp),
    )?;
    write(&dir.join("boot.cmd"), boot_cmd)?;
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
