//! Checks that need one profile, or one list of VMs, and nothing else.

/// Most vCPUs in one VM: GICv2 routes to 8 CPU interfaces.
const MAX_VCPUS: u32 = 8;

use super::error::{ProfileError, Source};
use super::units::format_size;
use super::{Profile, VmSource, VmSpec};
use crate::components::{self, Kind};
use crate::composition::Region;
use crate::window::Window;
use toml::Spanned;

pub(super) const KIB4: u64 = 4 << 10;
/// Stage 2 maps guest RAM in 2 MiB blocks where it can.
pub(super) const MIB2: u64 = 2 << 20;
/// The least RAM a Tessera guest gets: its image, stack and start info page.
const GUEST_RAM_MIN: u64 = 16 << 10;

/// What a VM's RAM size is a multiple of: 2 MiB for Linux, 4 KiB otherwise.
pub(super) fn ram_unit(vm: &VmSpec) -> u64 {
    if vm.kernel.is_some() && vm.guest.is_none() {
        MIB2
    } else {
        KIB4
    }
}

/// Where a VM of `size` bytes of RAM may start: on a 2 MiB boundary when
/// it is whole 2 MiB blocks (so stage 2 maps it with blocks), else a page.
pub(super) fn ram_align(size: u64) -> u64 {
    if size.is_multiple_of(MIB2) {
        MIB2
    } else {
        KIB4
    }
}
const VM_NAME_MAX: usize = 31;
const CMDLINE_MAX: usize = 127;
/// Private peripheral interrupts: the per-CPU timer and GIC maintenance lines.
const PPIS: std::ops::RangeInclusive<u32> = 16..=31;
/// A VM's `weight` (credit).
const WEIGHTS: std::ops::RangeInclusive<u32> = 1..=65535;
/// A VM's `cap`, in percent of one CPU (credit).
const CAPS: std::ops::RangeInclusive<u32> = 1..=100;

/// The board's RAM and the hypervisor's region in it, once checked.
pub(super) struct BoardLayout {
    pub ram: Region,
    pub hypervisor: Region,
}

pub(super) fn range(r: &Region) -> String {
    format!("{:#x}..{:#x}", r.base, r.end())
}

/// `base..base+size`, refusing the ones that wrap past 2^64.
pub(super) fn region(
    src: Source,
    field: &str,
    base: &Spanned<u64>,
    size: u64,
) -> Result<Region, ProfileError> {
    let b = *base.get_ref();
    match b.checked_add(size) {
        Some(_) => Ok(Region { base: b, size }),
        None => Err(src.error(
            base.span(),
            field,
            format!(
                "{b:#x} + {} runs past the end of the address space",
                format_size(size)
            ),
        )),
    }
}

pub(super) fn board(p: &Profile) -> Result<BoardLayout, ProfileError> {
    let src = p.source();
    if p.board.cpus == 0 {
        return Err(src
            .error(
                p.board_spans.cpus.clone(),
                "board.cpus",
                "a board has at least one CPU",
            )
            .with_help("write the number of cores the hypervisor may use, e.g. cpus = 1"));
    }

    let ram_size = p.memory.ram.size.get_ref().0;
    if ram_size == 0 {
        return Err(src.error(
            p.memory.ram.size.span(),
            "memory.ram.size",
            "RAM size is zero",
        ));
    }
    let ram = region(src, "memory.ram.base", &p.memory.ram.base, ram_size)?;

    let load = &p.memory.load_address;
    if !load.get_ref().is_multiple_of(KIB4) {
        return Err(src
            .error(
                load.span(),
                "memory.load-address",
                format!("{:#x} is not 4 KiB aligned", load.get_ref()),
            )
            .with_help(format!(
                "the image is mapped in 4 KiB pages; use {:#x} or {:#x}",
                load.get_ref() & !(KIB4 - 1),
                (load.get_ref() | (KIB4 - 1)) + 1
            )));
    }
    let hv = &p.memory.hypervisor;
    if hv.get_ref().0 == 0 || !hv.get_ref().0.is_multiple_of(KIB4) {
        return Err(src
            .error(
                hv.span(),
                "memory.hypervisor",
                format!(
                    "{} is not a non-zero multiple of 4 KiB",
                    format_size(hv.get_ref().0)
                ),
            )
            .with_help("give the hypervisor's region in whole pages, e.g. \"8MiB\""));
    }
    let hypervisor = region(src, "memory.load-address", load, hv.get_ref().0)?;
    if !ram.contains(&hypervisor) {
        return Err(src
            .error(
                load.span(),
                "memory.load-address",
                format!(
                    "the hypervisor region {} is not inside RAM {}",
                    range(&hypervisor),
                    range(&ram)
                ),
            )
            .with_help("move load-address into RAM, or make memory.hypervisor smaller"));
    }

    if let Some(shift) = &p.uart.reg_shift {
        if *shift.get_ref() > 3 {
            return Err(src
                .error(shift.span(), "uart.reg-shift", format!("{} is more than 3", shift.get_ref()))
                .with_help("registers are 1 << reg-shift bytes apart: 0 (bytes) to 3 (8 bytes); see reg-shift in the UART's device tree node"));
        }
    }

    if let Some(width) = &p.uart.reg_io_width {
        if p.uart.driver.get_ref() != "ns16550" {
            return Err(src
                .error(
                    width.span(),
                    "uart.reg-io-width",
                    format!(
                        "the {} driver has fixed 32-bit registers",
                        p.uart.driver.get_ref()
                    ),
                )
                .with_help("remove reg-io-width; it is for ns16550 UARTs"));
        }
        if !matches!(width.get_ref(), 1 | 4) {
            return Err(src
                .error(width.span(), "uart.reg-io-width", format!("{} is not 1 or 4", width.get_ref()))
                .with_help("see reg-io-width in the UART's device tree node: 1 (byte accesses) or 4 (32-bit)"));
        }
    }

    gic(p)?;
    if let Some(pv) = &p.compose.pv {
        return Err(pv_gone(src, pv));
    }
    if let Some(asked) = &p.compose.vgic {
        return Err(vgic_gone(src, asked, p));
    }
    irqs(p)?;
    devices_outside_ram(p, &ram)?;
    disk(p, &ram)?;

    let slice = &p.compose.time_slice;
    if slice.get_ref().0.is_zero() {
        return Err(src
            .error(slice.span(), "compose.time-slice", "the time slice is zero")
            .with_help("give the scheduler a slice such as \"2ms\""));
    }
    Ok(BoardLayout { ram, hypervisor })
}

fn gic(p: &Profile) -> Result<(), ProfileError> {
    let g = &p.gic;
    let version = *g.version.get_ref();
    let required: &[(&str, &Option<Spanned<u64>>, &str)] = match version {
        2 => &[
            ("cpu-interface", &g.cpu_interface, "GICC"),
            ("hyp-interface", &g.hyp_interface, "GICH"),
            ("virtual-cpu-interface", &g.virtual_cpu_interface, "GICV"),
        ],
        3 => &[("redistributor", &g.redistributor, "GICR")],
        _ => &[],
    };
    // The versions there are: those with a driver in the component table.
    let versions = components::names(Kind::Gic);
    if components::find(Kind::Gic, &version.to_string()).is_none() {
        return Err(p
            .source()
            .error(
                g.version.span(),
                "gic.version",
                format!(
                    "GIC version {version} is not supported; the versions there are: {}",
                    versions.join(", ")
                ),
            )
            .with_help("write version = 2 (GICv2, GIC-400) or version = 3"));
    }
    for (name, value, frame) in required {
        if value.is_none() {
            return Err(p
                .source()
                .error(
                    g.version.span(),
                    &format!("gic.{name}"),
                    format!(
                        "{name} is missing: a GICv{version} needs the base of its {frame} frame"
                    ),
                )
                .with_help(format!(
                    "add {name} = 0x... under [gic], from the GIC node of the board's device tree"
                )));
        }
    }
    Ok(())
}

/// `[compose] pv` chose nothing: the console is the only back-end and is
/// in every image. Refused where `src` (a profile or scenario) still sets it.
pub(super) fn pv_gone(src: Source, pv: &Spanned<toml::Value>) -> ProfileError {
    src.error(
        pv.span(),
        "compose.pv",
        "pv is not a setting any more: every image has the PV console, the only back-end",
    )
    .with_help("remove pv")
}

/// `[compose] vgic` chose nothing: the vGIC runs on the GIC's own
/// virtualisation interface, so `[gic] version` decides it. Refused where
/// `src` (a profile or scenario) still sets it, saying which one it is.
pub(super) fn vgic_gone(src: Source, asked: &Spanned<toml::Value>, p: &Profile) -> ProfileError {
    let has = *p.gic.version.get_ref();
    let (line, _) = super::error::line_column(&p.text, p.gic.version.span().start);
    let derived = components::vgic_for(has).map_or("none", |c| c.name);
    let asked_name = match asked.get_ref() {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let message = if asked_name == derived {
        format!(
            "vgic is not a setting any more: it follows [gic] version, which is {has} ({}:{line}), so it is {derived} anyway",
            p.path.display()
        )
    } else {
        format!(
            "vgic {asked_name} cannot be: the vGIC follows [gic] version, which is {has} ({}:{line}), so it is {derived}",
            p.path.display()
        )
    };
    src.error(asked.span(), "compose.vgic", message)
        .with_help("remove vgic; to get another vGIC, use a board whose [gic] has that version")
}

fn irqs(p: &Profile) -> Result<(), ProfileError> {
    let lines = [
        ("gic.maintenance-irq", &p.gic.maintenance_irq),
        ("timer.hyp-irq", &p.timer.hyp_irq),
        ("timer.virt-irq", &p.timer.virt_irq),
    ];
    for (i, (field, irq)) in lines.iter().enumerate() {
        let n = *irq.get_ref();
        if !PPIS.contains(&n) {
            return Err(p
                .source()
                .error(
                    irq.span(),
                    field,
                    format!("INTID {n} is not a PPI (16..=31)"),
                )
                .with_help("device trees give PPIs as <1 N ...>: the INTID is N + 16"));
        }
        if let Some((other, _)) = lines[..i].iter().find(|(_, o)| *o.get_ref() == n) {
            return Err(p
                .source()
                .error(irq.span(), field, format!("INTID {n} is also {other}"))
                .with_help("each of these interrupts needs its own line; check the device tree"));
        }
    }
    Ok(())
}

/// Bytes of the disk's register window: a virtio-mmio slot.
pub(super) const DISK_WINDOW: u64 = 0x200;
/// Shared peripheral interrupts.
const SPIS: std::ops::RangeInclusive<u32> = 32..=1019;
/// The EL2 (HYP) map covers devices below 4 GiB only.
const DEVICE_LIMIT: u64 = 1 << 32;

/// `[disk]`: its window outside RAM, below 4 GiB and clear of the UART's
/// and the GIC's frames (the hypervisor maps it for itself; no guest's
/// stage 2 maps anything but RAM and the GIC's virtual CPU interface);
/// its interrupt an SPI. The driver's name is checked with the others'.
fn disk(p: &Profile, ram: &Region) -> Result<(), ProfileError> {
    let Some(d) = &p.disk else { return Ok(()) };
    let src = p.source();
    let window = region(src, "disk.base", &d.base, DISK_WINDOW)?;
    if window.overlaps(ram) {
        return Err(src
            .error(
                d.base.span(),
                "disk.base",
                format!("the disk's window {} is inside RAM {}", range(&window), range(ram)),
            )
            .with_help("device registers live outside RAM; QEMU virt's first virtio-blk-device is at 0x0a003e00"));
    }
    if window.end() > DEVICE_LIMIT {
        return Err(src
            .error(
                d.base.span(),
                "disk.base",
                format!("the disk's window {} is above 4 GiB", range(&window)),
            )
            .with_help("the hypervisor maps devices below 4 GiB only"));
    }
    let g = &p.gic;
    let cpus = u64::from(p.board.cpus);
    // Frame sizes as the device trees give them (the GICv2 frames are
    // 4 or 8 KiB, listed as 64 KiB), a GICv3 redistributor per CPU.
    let others = [
        ("uart.base", Some(&p.uart.base), 0x1000),
        ("gic.distributor", Some(&g.distributor), 0x1_0000),
        ("gic.cpu-interface", g.cpu_interface.as_ref(), 0x1_0000),
        ("gic.hyp-interface", g.hyp_interface.as_ref(), 0x1_0000),
        (
            "gic.virtual-cpu-interface",
            g.virtual_cpu_interface.as_ref(),
            0x1_0000,
        ),
        (
            "gic.redistributor",
            g.redistributor.as_ref(),
            0x2_0000 * cpus,
        ),
    ];
    for (field, base, size) in others.into_iter().filter_map(|(f, b, s)| Some((f, b?, s))) {
        let b = *base.get_ref();
        let other = Region {
            base: b,
            size: size.min(u64::MAX - b),
        };
        if window.overlaps(&other) {
            return Err(src
                .error(
                    d.base.span(),
                    "disk.base",
                    format!(
                        "the disk's window {} overlaps {field}'s {}",
                        range(&window),
                        range(&other)
                    ),
                )
                .with_help(
                    "check the disk's address in the board's device tree (a virtio,mmio node)",
                ));
        }
    }
    let irq = *d.irq.get_ref();
    if !SPIS.contains(&irq) {
        return Err(src
            .error(
                d.irq.span(),
                "disk.irq",
                format!("INTID {irq} is not an SPI (32..=1019)"),
            )
            .with_help("device trees give SPIs as <0 N ...>: the INTID is N + 32"));
    }
    Ok(())
}

fn devices_outside_ram(p: &Profile, ram: &Region) -> Result<(), ProfileError> {
    let g = &p.gic;
    let devices = [
        ("uart.base", Some(&p.uart.base)),
        ("gic.distributor", Some(&g.distributor)),
        ("gic.cpu-interface", g.cpu_interface.as_ref()),
        ("gic.hyp-interface", g.hyp_interface.as_ref()),
        (
            "gic.virtual-cpu-interface",
            g.virtual_cpu_interface.as_ref(),
        ),
        ("gic.redistributor", g.redistributor.as_ref()),
    ];
    for (field, addr) in devices.into_iter().filter_map(|(f, a)| Some((f, a?))) {
        let a = *addr.get_ref();
        if a >= ram.base && a < ram.end() {
            return Err(p
                .source()
                .error(addr.span(), field, format!("{a:#x} is inside RAM {}", range(ram)))
                .with_help("device registers live outside RAM; check the address in the board's device tree"));
        }
    }
    Ok(())
}

/// "vm 'hello'", or "vm #2" when the name itself is the problem.
pub(super) fn vm_label(index: usize, vm: &VmSpec) -> String {
    if vm.name.get_ref().is_empty() {
        format!("vm #{}", index + 1)
    } else {
        format!("vm '{}'", vm.name.get_ref())
    }
}

/// Checks each VM on its own (names, sizes, alignment, vCPUs).
pub(super) fn each_vm(vms: &VmSource) -> Result<(), ProfileError> {
    vms.vms
        .iter()
        .enumerate()
        .try_for_each(|(i, vm)| one_vm(vms.source(), i, vm))
}

/// What is wrong with `name` as a name a profile gives (a VM's, a
/// channel's, a network's), if anything: empty, over `max` bytes, or a
/// byte `allowed` refuses (`allowed_text` lists those it takes).
pub(super) fn name_fault(
    name: &str,
    max: usize,
    allowed: fn(u8) -> bool,
    allowed_text: &str,
) -> Option<String> {
    if name.is_empty() {
        Some("is empty".to_string())
    } else if name.len() > max {
        Some(format!("is {} bytes long, more than {max}", name.len()))
    } else if !name.bytes().all(allowed) {
        Some(format!("has characters other than {allowed_text}"))
    } else {
        None
    }
}

/// The bytes a channel's or a network's name may have, and their list.
pub(super) fn label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}
pub(super) const LABEL_BYTES: &str = "A-Z, a-z, 0-9, '_' and '-'";

fn one_vm(src: Source, index: usize, vm: &VmSpec) -> Result<(), ProfileError> {
    let label = vm_label(index, vm);
    let vm_name_byte = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    let fault = name_fault(
        vm.name.get_ref(),
        VM_NAME_MAX,
        vm_name_byte,
        "a-z, 0-9 and '-'",
    );
    if let Some(what) = fault {
        return Err(src
            .error(vm.name.span(), &format!("{label} name"), format!("the VM name {what}"))
            .with_help(format!(
                "VM names prefix the VM's log lines: 1 to {VM_NAME_MAX} bytes of a-z, 0-9 and '-', e.g. \"net-1\""
            )));
    }

    match *vm.vcpus.get_ref() {
        0 => {
            return Err(src
                .error(vm.vcpus.span(), &format!("{label} vcpus"), "a VM needs at least one vCPU")
                .with_help("write vcpus = 1"))
        }
        1..=MAX_VCPUS => {}
        n => {
            return Err(src
                .error(
                    vm.vcpus.span(),
                    &format!("{label} vcpus"),
                    format!("{n} vCPUs asked for; a VM has at most {MAX_VCPUS} (the GICv2 limit, and Aff0 numbering)"),
                )
                .with_help(format!("write vcpus = {MAX_VCPUS} or fewer")))
        }
    }

    let size = vm.memory.get_ref().0;
    // Linux wants its RAM in 2 MiB blocks; a Tessera guest may be small,
    // mapped in 4 KiB pages.
    let unit = ram_unit(vm);
    if size < unit.max(GUEST_RAM_MIN) || !size.is_multiple_of(unit) {
        let up = size.next_multiple_of(unit).max(unit.max(GUEST_RAM_MIN));
        let (what, why) = if unit == MIB2 {
            (
                "a non-zero multiple of 2 MiB",
                "a Linux VM's RAM is mapped in 2 MiB blocks",
            )
        } else {
            (
                "a multiple of 4 KiB of at least 16 KiB",
                "stage 2 maps RAM in 4 KiB pages (2 MiB blocks where it can); a guest needs room for its image and its start info page",
            )
        };
        return Err(src
            .error(
                vm.memory.span(),
                &format!("{label} memory"),
                format!("{} is not {what}", format_size(size)),
            )
            .with_help(format!(
                "{why}; use \"{}\"",
                format_size(up).replace(' ', "")
            )));
    }

    if let Some(base) = &vm.base {
        // RAM in whole 2 MiB blocks starts on one, so blocks can map it.
        let align = ram_align(size);
        if !base.get_ref().is_multiple_of(align) {
            let b = *base.get_ref();
            let (unit_name, how) = if align == MIB2 {
                ("2 MiB", "RAM of whole 2 MiB blocks is mapped in blocks")
            } else {
                ("4 KiB", "stage 2 maps RAM in 4 KiB pages")
            };
            return Err(src
                .error(
                    base.span(),
                    &format!("{label} base"),
                    format!("{b:#x} is not {unit_name} aligned"),
                )
                .with_help(format!(
                    "{how}; use {:#x} or {:#x}, or leave base out to have the VM placed for you",
                    b & !(align - 1),
                    (b | (align - 1)).saturating_add(1)
                )));
        }
    }

    if let Some(cmdline) = &vm.cmdline {
        let len = cmdline.get_ref().len();
        if len > CMDLINE_MAX {
            return Err(src
                .error(
                    cmdline.span(),
                    &format!("{label} cmdline"),
                    format!("the command line is {len} bytes long, more than {CMDLINE_MAX}"),
                )
                .with_help(format!("shorten it to at most {CMDLINE_MAX} bytes")));
        }
    }

    if let Some(weight) = &vm.weight {
        let w = *weight.get_ref();
        if !WEIGHTS.contains(&w) {
            return Err(src
                .error(
                    weight.span(),
                    &format!("{label} weight"),
                    format!("weight {w} is outside 1..=65535"),
                )
                .with_help(format!(
                    "weight is the VM's share of CPU time relative to the others (credit scheduler); the default is {}, so 512 gets twice the default share",
                    crate::vm::DEFAULT_WEIGHT
                )));
        }
    }

    if let Some(cap) = &vm.cap {
        let c = *cap.get_ref();
        if !CAPS.contains(&c) {
            return Err(src
                .error(
                    cap.span(),
                    &format!("{label} cap"),
                    format!("cap {c} is outside 1..=100"),
                )
                .with_help(
                    "cap is the most CPU time the VM may use, in percent of one CPU (credit scheduler); leave it out for no cap",
                ));
        }
    }
    super::disks::check_vm(src, &label, vm)
}

/// No two windows of a VM's guest-physical map overlap: its RAM, its GIC
/// and its devices.
pub(super) fn guest_maps(vms: &VmSource, gic_version: u32) -> Result<(), ProfileError> {
    for (i, vm) in vms.vms.iter().enumerate() {
        let named = guest_windows(vms, i, gic_version);
        let windows: Vec<_> = named.iter().map(|(_, w)| *w).collect();
        if let Some((a, b)) = crate::window::first_overlap(&windows) {
            let label = vm_label(i, vm);
            return Err(vms
                .source()
                .error(
                    vm.memory.span(),
                    &format!("{label} memory"),
                    format!(
                        "its {} ({}) overlaps its {} ({})",
                        named[a].0, named[a].1, named[b].0, named[b].1
                    ),
                )
                .with_help("every window of a VM's guest-physical map must be its own"));
        }
    }
    Ok(())
}

/// The windows of the guest-physical map of VM `index` but its channels,
/// named for messages: its RAM, its GIC and its devices.
pub(super) fn guest_windows(
    vms: &VmSource,
    index: usize,
    gic_version: u32,
) -> Vec<(String, Window)> {
    let vm = &vms.vms[index];
    let map = crate::window::guest_map(gic_version, *vm.vcpus.get_ref(), vm.memory.get_ref().0);
    let mut named: Vec<(String, Window)> =
        map.iter().map(|(name, w)| (name.to_string(), *w)).collect();
    for d in super::plan::devices(vms, index) {
        let name = match (&d.disk, &d.net) {
            (Some(disk), _) => format!("{} {}", d.kind, disk.source),
            (None, Some(net)) => match vms.networks.get(net.network as usize) {
                Some(n) => format!("{} port on network '{}'", d.kind, n.name.get_ref()),
                None => d.kind.to_string(),
            },
            (None, None) => d.kind.to_string(),
        };
        named.push((name, Window::new(d.base, d.size)));
    }
    named
}
