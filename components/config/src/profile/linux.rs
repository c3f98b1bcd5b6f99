//! The profile's Linux VMs: `kernel`, `initrd` and `bootargs` checked,
//! the files fetched or built by the composer, and kernel, device tree and
//! initrd placed in the VM's RAM by the boot protocol (`crate::linux`).

use super::check::vm_label;
use super::error::{ProfileError, Source};
use super::plan::{GuestFiles, LinuxFiles};
use super::spec::VmSpec;
use super::VmSource;
use crate::composition::{Arch, Region};
use crate::linux::{Kernel, Layout, DTB_MAX};
use crate::vm::{DeviceConfig, GuestWidth};
use toml::Spanned;

/// A Linux VM's command line when the profile gives none: its console on
/// the emulated UART.
pub(super) const BOOTARGS: &str = "console=ttyAMA0";

/// The component that emulates a Linux VM's UART, and where.
pub(super) fn console_uart() -> DeviceConfig<'static> {
    DeviceConfig {
        kind: "sbsa-uart".into(),
        base: abi::GUEST_UART_BASE,
        size: abi::GUEST_UART_SIZE,
        intid: abi::GUEST_UART_INTID,
        disk: None,
        net: None,
    }
}

/// The Debian kernels the composer fetches, and the width each runs in.
const DEBIAN: [(&str, GuestWidth); 2] = [
    ("debian:arm64", GuestWidth::Aarch64),
    ("debian:armmp-lpae", GuestWidth::Aarch32),
];

/// A VM without `guest`: it must name a kernel, and the Linux-only fields
/// need one.
pub(super) fn check_spec(src: Source, label: &str, vm: &VmSpec) -> Result<(), ProfileError> {
    let Some(kernel) = &vm.kernel else {
        return Err(src
            .error(vm.name.span(), label, "the VM has neither a guest nor a kernel")
            .with_help(
                "add guest = \"<crate under guests/>\", or kernel = \"debian:arm64\" (or a path to an Image or zImage)",
            ));
    };
    let name = kernel.get_ref();
    if name.starts_with("debian:") && !DEBIAN.iter().any(|(known, _)| known == name) {
        let known: Vec<&str> = DEBIAN.iter().map(|(k, _)| *k).collect();
        return Err(src
            .error(
                kernel.span(),
                &format!("{label} kernel"),
                format!("unknown Debian kernel '{name}'"),
            )
            .with_help(format!("the Debian kernels are {}", known.join(" and "))));
    }
    if let Some(cmdline) = &vm.cmdline {
        return Err(src
            .error(
                cmdline.span(),
                &format!("{label} cmdline"),
                "a Linux VM's command line is `bootargs`",
            )
            .with_help("write bootargs = \"...\" instead"));
    }
    Ok(())
}

/// A Tessera guest has no initrd or bootargs.
pub(super) fn check_guest_fields(
    src: Source,
    label: &str,
    vm: &VmSpec,
) -> Result<(), ProfileError> {
    for (key, value) in [("initrd", &vm.initrd), ("bootargs", &vm.bootargs)] {
        if let Some(value) = value {
            return Err(src
                .error(
                    value.span(),
                    &format!("{label} {key}"),
                    format!("{key} is for Linux VMs, and this VM runs a guest"),
                )
                .with_help(
                    "remove it, or run a Linux kernel (kernel = ...) instead of the guest",
                ));
        }
    }
    if let (Some(_), Some(kernel)) = (&vm.guest, &vm.kernel) {
        return Err(src
            .error(
                kernel.span(),
                &format!("{label} kernel"),
                "a VM runs a guest or a Linux kernel, not both",
            )
            .with_help("remove guest or kernel"));
    }
    Ok(())
}

/// The width a Debian kernel runs in, if the VM names one (and the host
/// can run it).
pub(super) fn kernel_width(
    src: Source,
    label: &str,
    vm: &VmSpec,
    host: Arch,
) -> Result<Option<GuestWidth>, ProfileError> {
    let Some(kernel) = &vm.kernel else {
        return Ok(None);
    };
    let Some(&(_, width)) = DEBIAN.iter().find(|(name, _)| name == kernel.get_ref()) else {
        return Ok(None);
    };
    if host == Arch::Armv7a && width == GuestWidth::Aarch64 {
        return Err(src
            .error(
                kernel.span(),
                &format!("{label} kernel"),
                "an ARMv7-A host cannot run a 64-bit kernel",
            )
            .with_help("use kernel = \"debian:armmp-lpae\""));
    }
    Ok(Some(width))
}

/// A Linux VM's files, its kernel's header read.
pub(super) struct Fetched {
    pub files: LinuxFiles,
    kernel: Kernel,
    initrd_len: u64,
    /// What the image carries for it: kernel, initrd and device tree.
    pub image_bytes: u64,
}

/// Gets the VM's kernel and initrd from the composer and checks the
/// kernel's header.
pub(super) fn fetch(
    vms: &VmSource,
    index: usize,
    vm: &VmSpec,
    kernel: &Spanned<String>,
    width: GuestWidth,
    files: &dyn GuestFiles,
) -> Result<Fetched, ProfileError> {
    let src = vms.source();
    let label = vm_label(index, vm);
    let field = format!("{label} kernel");
    let initrd = vm.initrd.as_ref().map(|i| i.get_ref().as_str());
    let got = files
        .linux(vm.name.get_ref(), kernel.get_ref(), initrd, width)
        .map_err(|why| src.error(kernel.span(), &field, why))?;
    let bytes = std::fs::read(&got.kernel).map_err(|e| {
        src.error(
            kernel.span(),
            &field,
            format!("cannot read {}: {e}", got.kernel.display()),
        )
    })?;
    let parsed = Kernel::parse(&bytes, width).map_err(|why| {
        src.error(
            kernel.span(),
            &field,
            format!("{}: {why}", got.kernel.display()),
        )
        .with_help(match width {
            GuestWidth::Aarch64 => "a 64-bit VM boots an arm64 Image (arch/arm64/boot/Image)",
            GuestWidth::Aarch32 => "a 32-bit VM boots an ARM zImage (arch/arm/boot/zImage)",
        })
    })?;
    let initrd_len = match &got.initrd {
        Some(file) => std::fs::metadata(file)
            .map_err(|e| {
                let span = vm.initrd.as_ref().map_or(kernel.span(), |i| i.span());
                src.error(
                    span,
                    &format!("{label} initrd"),
                    format!("{}: {e}", file.display()),
                )
            })?
            .len(),
        None => 0,
    };
    Ok(Fetched {
        files: got,
        kernel: parsed,
        initrd_len,
        image_bytes: bytes.len() as u64 + initrd_len + DTB_MAX,
    })
}

/// Places kernel, device tree and initrd in the VM's `ram`.
pub(super) fn place(
    vms: &VmSource,
    index: usize,
    vm: &VmSpec,
    fetched: &Fetched,
    ram: Region,
) -> Result<Layout, ProfileError> {
    Layout::place(fetched.kernel, fetched.initrd_len, ram.size).map_err(|why| {
        vms.source()
            .error(
                vm.memory.span(),
                &format!("{} memory", vm_label(index, vm)),
                why,
            )
            .with_help("give the VM more memory")
    })
}
