//! Checking VMs against the board and the components, and laying them out.

use super::check::{self, range, vm_label, BoardLayout, MIB2};
use super::error::{did_you_mean, ProfileError, Source};
use super::scenario::ComposeOverride;
use super::schedule;
use super::units::format_size;
use super::{channels, disks, linux, networks, Known, Profile, VmSource};
use crate::composition::{Arch, Composition, Disk, Gic, Region, Timer, Uart};
use crate::vm::{Blob, DeviceConfig, GuestWidth, LinuxBoot, VmConfig, DEFAULT_WEIGHT};
use std::path::PathBuf;
use toml::Spanned;

/// The files the composer builds or fetches for the VMs it plans.
pub trait GuestFiles {
    /// The flat binary of guest crate `guest` built for `width`.
    fn guest_image(&self, guest: &str, width: GuestWidth) -> PathBuf;

    /// The kernel and initrd a Linux VM named `vm` asks for (`kernel` and
    /// `initrd` as the profile writes them), and where its device tree is
    /// to be written. The error says what could not be had.
    fn linux(
        &self,
        vm: &str,
        kernel: &str,
        initrd: Option<&str>,
        width: GuestWidth,
    ) -> Result<LinuxFiles, String>;
}

/// A Linux VM's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxFiles {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// Where the composer writes the VM's device tree, once planned.
    pub dtb: PathBuf,
}

/// Guest crates only (tests, tools): a VM with a Linux kernel is refused.
impl<F: Fn(&str, GuestWidth) -> PathBuf> GuestFiles for F {
    fn guest_image(&self, guest: &str, width: GuestWidth) -> PathBuf {
        self(guest, width)
    }

    fn linux(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: GuestWidth,
    ) -> Result<LinuxFiles, String> {
        Err("this composer builds no Linux VMs".into())
    }
}

/// Validates `profile` with `vms` (a scenario's, replacing the board's when
/// given) against the `known` components, and lays the VMs out: VMs with a
/// `base` stay there; the others follow one another from the first 2 MiB
/// boundary after the hypervisor region, in order, stepping over fixed VMs;
/// the channels between them come after all of it ([`channels::place`]).
/// A scenario's `[compose]` goes through [`super::Scenario::plan`].
pub fn plan(
    profile: &Profile,
    vms: Option<&VmSource>,
    known: &Known,
    name: &str,
    files: &dyn GuestFiles,
) -> Result<Composition, ProfileError> {
    plan_with(profile, None, vms, known, name, files)
}

/// What a scenario puts over its board: its `[compose]` and its CPU
/// count, and the scenario file they are written in.
pub(super) struct Override<'a> {
    pub src: Source<'a>,
    pub compose: Option<&'a ComposeOverride>,
    /// The number of CPUs to run the board with, instead of `[board] cpus`.
    pub cpus: Option<u32>,
}

/// [`plan`], with the fields of `over` in place of the board's `[compose]`
/// and `[board] cpus`.
pub(super) fn plan_with(
    profile: &Profile,
    over: Option<Override>,
    vms: Option<&VmSource>,
    known: &Known,
    name: &str,
    files: &dyn GuestFiles,
) -> Result<Composition, ProfileError> {
    let layout = check::board(profile)?;
    let src = profile.source();
    let compose = over.as_ref().and_then(|o| o.compose.map(|c| (c, o.src)));
    let (scheduler, scheduler_src) =
        match compose.and_then(|(c, src)| Some((c.scheduler.as_ref()?, src))) {
            Some(scenario) => scenario,
            None => (&profile.compose.scheduler, src),
        };
    known_name(
        scheduler_src,
        scheduler,
        "compose.scheduler",
        "scheduler",
        &known.schedulers,
    )?;
    known_name(
        src,
        &profile.uart.driver,
        "uart.driver",
        "UART driver",
        &known.uart_drivers,
    )?;
    if let Some(disk) = &profile.disk {
        known_name(
            src,
            &disk.driver,
            "disk.driver",
            "disk driver",
            &known.disk_drivers,
        )?;
    }
    // A scenario's vgic (the board's own is refused with the board).
    if let Some((vgic, src)) = compose.and_then(|(c, src)| Some((c.vgic.as_ref()?, src))) {
        return Err(check::vgic_gone(src, vgic, profile));
    }

    let vms = vms.unwrap_or(&profile.vms);
    check_vms(vms, known)?;
    channels::check(vms)?;
    let networks = networks::check(vms)?;
    disks::check_board(profile, vms)?;
    check::guest_maps(vms, *profile.gic.version.get_ref())?;
    let widths = guest_widths(vms, profile)?;
    let scenario_scheduler = compose.is_some_and(|(c, _)| c.scheduler.is_some());
    let cpus_said = match over.as_ref().and_then(|o| Some((o.cpus?, o.src))) {
        Some((n, src)) => format!("cpus = {n} in scenario {}", src.path.display()),
        None => format!("board.cpus = {}", profile.board.cpus),
    };
    let composed = over.map(|o| with_override(profile, &o));
    let composed = composed.as_ref().unwrap_or(profile);
    let schedule = schedule::check(composed, vms, &cpus_said)
        .map_err(|e| scenario_says(e, profile, composed, scenario_scheduler))?;
    // Linux VMs' kernels and initrds travel in the image: the hypervisor's
    // region grows by them, before the VMs are placed after it.
    let mut fetched = Vec::with_capacity(vms.vms.len());
    for (i, (vm, &width)) in vms.vms.iter().zip(&widths).enumerate() {
        fetched.push(match (&vm.guest, &vm.kernel) {
            (None, Some(kernel)) => Some(linux::fetch(vms, i, vm, kernel, width, files)?),
            _ => None,
        });
    }
    let carried: u64 = fetched.iter().flatten().map(|f| f.image_bytes).sum();
    let mut layout = layout;
    let heap = heap_for(vms.vms.len());
    layout.hypervisor.size += (carried + heap).div_ceil(MIB2) * MIB2;
    let rams = place(vms, &layout)?;
    let mut channels =
        channels::place(vms, &layout, &rams, *profile.gic.version.get_ref())?.into_iter();

    // Each distinct guest image once, in the order the VMs name them.
    let mut guests: Vec<PathBuf> = Vec::new();
    let mut index_of = |file: PathBuf| {
        let index = guests.iter().position(|g| *g == file).unwrap_or_else(|| {
            guests.push(file);
            guests.len() - 1
        });
        index as u32
    };
    let mut configs = Vec::with_capacity(vms.vms.len());
    for (i, (((vm, ram), cpu), width)) in vms
        .vms
        .iter()
        .zip(rams)
        .zip(schedule.cpus)
        .zip(widths)
        .enumerate()
    {
        let text = |s: &Option<Spanned<String>>| s.as_ref().map(|s| s.get_ref().clone());
        let (guest, image, cmdline, linux, devices) = match (&vm.guest, &vm.kernel) {
            (Some(guest), _) => {
                let image = index_of(files.guest_image(guest.get_ref(), width));
                let cmdline = text(&vm.cmdline).unwrap_or_default();
                (
                    guest.get_ref().clone(),
                    image,
                    cmdline,
                    None,
                    devices(vms, i),
                )
            }
            (None, Some(kernel)) => {
                let fetched = fetched[i].take().expect("fetched above");
                let placed = linux::place(vms, i, vm, &fetched, ram)?;
                let image = index_of(fetched.files.kernel);
                let dtb = Blob {
                    image: index_of(fetched.files.dtb),
                    offset: placed.dtb,
                };
                let initrd = fetched.files.initrd.map(|file| Blob {
                    image: index_of(file),
                    offset: placed.initrd,
                });
                let boot = LinuxBoot {
                    kernel_offset: placed.kernel,
                    dtb,
                    initrd,
                };
                // Its addresses, for its /init to set.
                let bootargs =
                    std::iter::once(text(&vm.bootargs).unwrap_or_else(|| linux::BOOTARGS.into()))
                        .chain(networks::cmdline_words(vms, &networks, i))
                        .collect::<Vec<_>>()
                        .join(" ");
                (
                    kernel.get_ref().clone(),
                    image,
                    bootargs,
                    Some(boot),
                    devices(vms, i),
                )
            }
            (None, None) => unreachable!("check_vms wants a guest or a kernel"),
        };
        configs.push(VmConfig {
            name: vm.name.get_ref().clone().into(),
            guest: guest.into(),
            cmdline: cmdline.into(),
            vcpus: *vm.vcpus.get_ref(),
            width,
            ram,
            image,
            weight: vm.weight.as_ref().map_or(DEFAULT_WEIGHT, |w| *w.get_ref()),
            cap_percent: vm.cap.as_ref().map_or(0, |c| *c.get_ref()),
            cpu,
            linux,
            devices,
            channels: channels.next().unwrap_or_default(),
        });
    }

    let g = &profile.gic;
    let addr = |a: &Option<Spanned<u64>>| a.as_ref().map(|a| *a.get_ref());
    Ok(Composition {
        board: profile.stem(),
        name: name.to_string(),
        arch: profile.board.arch,
        cpus: composed.board.cpus,
        ram: layout.ram,
        hypervisor: layout.hypervisor,
        uart: Uart {
            driver: profile.uart.driver.get_ref().clone(),
            base: *profile.uart.base.get_ref(),
            reg_shift: profile.uart.reg_shift.as_ref().map_or(0, |s| *s.get_ref()),
            reg_io_width: profile
                .uart
                .reg_io_width
                .as_ref()
                .map_or(1, |w| *w.get_ref()),
        },
        disk: profile.disk.as_ref().map(|d| Disk {
            driver: d.driver.get_ref().clone(),
            base: *d.base.get_ref(),
            irq: *d.irq.get_ref(),
        }),
        gic: Gic {
            version: *g.version.get_ref(),
            distributor: *g.distributor.get_ref(),
            cpu_interface: addr(&g.cpu_interface),
            hyp_interface: addr(&g.hyp_interface),
            virtual_cpu_interface: addr(&g.virtual_cpu_interface),
            redistributor: addr(&g.redistributor),
            maintenance_irq: *g.maintenance_irq.get_ref(),
        },
        timer: Timer {
            hyp_irq: *profile.timer.hyp_irq.get_ref(),
            virt_irq: *profile.timer.virt_irq.get_ref(),
        },
        scheduler: composed.compose.scheduler.get_ref().clone(),
        time_slice_us: u64::try_from(composed.compose.time_slice.get_ref().0.as_micros())
            .unwrap_or(u64::MAX),
        vms: configs,
        guests,
        networks: networks::composed(vms, &networks),
        windows: schedule.windows,
        selftest: None,
    })
}

/// The emulated devices of VM `index` besides the vGIC: a Linux VM's UART
/// (a Tessera guest has the PV console instead), then its disks and its
/// network ports, in that order in the virtio-mmio slots.
pub(super) fn devices(vms: &VmSource, index: usize) -> Vec<DeviceConfig<'static>> {
    let vm = &vms.vms[index];
    let uart = vm.guest.is_none().then(linux::console_uart);
    let ports = networks::devices(vms, index, disks::count(vm) as u32);
    uart.into_iter()
        .chain(disks::devices(vm))
        .chain(ports)
        .collect()
}

/// The board `profile` with the scenario's `[compose]` fields in place of
/// its own. When the scenario sets the scheduler or the windows, the result
/// reads as if written in the scenario file, so that the scheduler checks
/// (which locate `compose`'s values in the profile's file) point there:
/// then every `compose` value they may point at is the scenario's, for a
/// scenario that sets the scheduler brings its windows or has none.
fn with_override(profile: &Profile, over: &Override) -> Profile {
    let mut composed = profile.clone();
    if let Some(cpus) = over.cpus {
        composed.board.cpus = cpus;
    }
    let Some(o) = over.compose else {
        return composed;
    };
    if let Some(slice) = &o.time_slice {
        composed.compose.time_slice = slice.clone();
    }
    if o.scheduler.is_none() && o.windows.is_none() {
        return composed;
    }
    if let Some(scheduler) = &o.scheduler {
        composed.compose.scheduler = scheduler.clone();
        composed.compose.windows = None;
    }
    if let Some(windows) = &o.windows {
        composed.compose.windows = Some(windows.clone());
    }
    composed.path = over.src.path.to_path_buf();
    composed.text = over.src.text.to_string();
    composed
}

/// The scheduler checks say which file chose the scheduler ("this profile
/// uses rr"); when `composed` stands for a scenario, say so right.
fn scenario_says(
    mut e: ProfileError,
    profile: &Profile,
    composed: &Profile,
    scenario_scheduler: bool,
) -> ProfileError {
    if composed.path == profile.path {
        return e;
    }
    let scheduler = composed.compose.scheduler.get_ref();
    // Who chose the scheduler: the scenario, or still the board.
    let chooser = if !scenario_scheduler {
        format!("its board profile {}", profile.path.display())
    } else if e.file == composed.path {
        "this scenario".to_string()
    } else {
        format!("scenario {}", composed.path.display())
    };
    for written in [
        "this profile".to_string(),
        format!("its board profile {}", composed.path.display()),
    ] {
        e.message = e.message.replace(
            &format!("{written} uses {scheduler}"),
            &format!("{chooser} uses {scheduler}"),
        );
    }
    e
}

/// `name` must be one of `known`; `what` says what kind of thing it is.
pub(super) fn known_name(
    src: Source,
    name: &Spanned<String>,
    field: &str,
    what: &str,
    known: &[String],
) -> Result<(), ProfileError> {
    if known.contains(name.get_ref()) {
        return Ok(());
    }
    let there = if known.is_empty() {
        format!("there are no {what}s")
    } else {
        format!("the {what}s there are: {}", known.join(", "))
    };
    Err(src
        .error(
            name.span(),
            field,
            format!("unknown {what} '{}'; {there}", name.get_ref()),
        )
        .with_optional_help(did_you_mean(name.get_ref(), known)))
}

fn check_vms(vms: &VmSource, known: &Known) -> Result<(), ProfileError> {
    let src = vms.source();
    if vms.vms.is_empty() {
        return Err(src
            .error(vms.span.clone(), "vm", "there are no VMs to run")
            .with_help("add a [[vm]] table with name, guest, vcpus and memory"));
    }
    check::each_vm(vms)?;
    // Names seen so far, and the first VM with each: thousands of VMs are
    // no quadratic scan.
    let mut seen: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(vms.vms.len());
    for (i, vm) in vms.vms.iter().enumerate() {
        let label = vm_label(i, vm);
        if let Some(first) = seen
            .insert(vm.name.get_ref(), i)
            .map(|first| &vms.vms[first])
        {
            let (line, _) = super::error::line_column(&vms.text, first.name.span().start);
            return Err(src
                .error(
                    vm.name.span(),
                    &format!("{label} name"),
                    format!(
                        "a VM named '{}' is already on line {line}",
                        vm.name.get_ref()
                    ),
                )
                .with_help("VM names must differ: they prefix the VMs' log lines"));
        }
        match &vm.guest {
            Some(guest) => {
                linux::check_guest_fields(src, &label, vm)?;
                known_name(
                    src,
                    guest,
                    &format!("{label} guest"),
                    "guest",
                    &known.guests,
                )
                .map_err(|e| match e.help {
                    Some(_) => e,
                    None => {
                        e.with_help("a guest is a crate under guests/, named as in its Cargo.toml")
                    }
                })?
            }
            None => linux::check_spec(src, &label, vm)?,
        }
    }
    Ok(())
}

/// Each VM's register width: what it says, else the host's own. A 64-bit
/// guest needs a 64-bit host; a 32-bit guest needs the GICv2 interface
/// (the vGICv3 here does not emulate AArch32's ICC_SGI1R access).
fn guest_widths(vms: &VmSource, profile: &Profile) -> Result<Vec<GuestWidth>, ProfileError> {
    let src = vms.source();
    let host = profile.board.arch;
    vms.vms
        .iter()
        .enumerate()
        .map(|(i, vm)| {
            let Some(arch) = &vm.arch else {
                return linux::kernel_width(src, &vm_label(i, vm), vm, host)
                    .map(|width| width.unwrap_or(host.native_guest()));
            };
            let field = format!("{} arch", vm_label(i, vm));
            match (host, arch.get_ref()) {
                (Arch::Armv7a, GuestWidth::Aarch64) => Err(src
                    .error(arch.span(), &field, "an ARMv7-A host cannot run a 64-bit guest")
                    .with_help("use arch = \"aarch32\", or run the VM on an AArch64 board")),
                (_, GuestWidth::Aarch32) if *profile.gic.version.get_ref() != 2 => Err(src
                    .error(
                        arch.span(),
                        &field,
                        "32-bit guests need a GICv2 board: the virtual GICv3 does not emulate AArch32's system-register GIC interface",
                    )
                    .with_help("use a GICv2 board (e.g. qemu-virt-a64), or arch = \"aarch64\"")),
                (_, width) => Ok(*width),
            }
        })
        .collect()
}

/// VMs whose state the board's `hypervisor` region holds besides the
/// image and stacks; each further VM grows it by [`HEAP_PER_VM`].
pub const VMS_IN_REGION: usize = 16;
/// Heap a VM beyond [`VMS_IN_REGION`] adds to the hypervisor's region: its
/// stage-2 tables, vCPU, vGIC and console state (the hypervisor prints what
/// they took at boot; `cargo xtask bench` and the manifest show it), with
/// room for the allocator's alignment gaps.
pub const HEAP_PER_VM: u64 = 32 << 10;

/// Bytes the hypervisor's region grows by for `vms` VMs.
pub fn heap_for(vms: usize) -> u64 {
    vms.saturating_sub(VMS_IN_REGION) as u64 * HEAP_PER_VM
}

/// The host-physical RAM of each VM, in order.
fn place(vms: &VmSource, layout: &BoardLayout) -> Result<Vec<Region>, ProfileError> {
    let src = vms.source();
    let (ram, hv) = (&layout.ram, &layout.hypervisor);

    // Enough RAM in total, pointing at the VM that tips it over.
    let asked: u64 = vms
        .vms
        .iter()
        .fold(hv.size, |sum, vm| sum.saturating_add(vm.memory.get_ref().0));
    if asked > ram.size {
        let mut running = hv.size;
        let culprit = vms
            .vms
            .iter()
            .enumerate()
            .find(|(_, vm)| {
                running = running.saturating_add(vm.memory.get_ref().0);
                running > ram.size
            })
            .map_or(0, |(i, _)| i);
        let vm = &vms.vms[culprit];
        return Err(src
            .error(
                vm.memory.span(),
                &format!("{} memory", vm_label(culprit, vm)),
                format!(
                    "the hypervisor ({}) and the VMs ({}) ask for {}, but RAM is {}",
                    format_size(hv.size),
                    format_size(asked - hv.size),
                    format_size(asked),
                    format_size(ram.size)
                ),
            )
            .with_help("give the VMs less memory or run fewer of them; from this VM on, the total passes the size of RAM"));
    }

    // VMs with a base stay where they say.
    let mut fixed: Vec<(usize, Region)> = Vec::new();
    for (i, vm) in vms.vms.iter().enumerate() {
        let Some(base) = &vm.base else { continue };
        let label = vm_label(i, vm);
        let field = format!("{label} base");
        let r = check::region(src, &field, base, vm.memory.get_ref().0)?;
        let clash =
            |what: String| src.error(base.span(), &field, format!("memory {} {what}", range(&r)));
        if !ram.contains(&r) {
            return Err(clash(format!("is outside RAM ({})", range(ram)))
                .with_help("move base into RAM, or leave it out to have the VM placed for you"));
        }
        if r.overlaps(hv) {
            return Err(
                clash(format!("overlaps the hypervisor ({})", range(hv))).with_help(format!(
                    "move base to {:#x} or above, or leave it out",
                    hv.end().next_multiple_of(MIB2)
                )),
            );
        }
        if let Some((j, other)) = fixed.iter().find(|(_, o)| o.overlaps(&r)) {
            return Err(clash(format!(
                "overlaps {} ({})",
                vm_label(*j, &vms.vms[*j]),
                range(other)
            ))
            .with_help(format!(
                "move base to {:#x} or above, or leave it out",
                other.end()
            )));
        }
        fixed.push((i, r));
    }

    // The others follow one another after the hypervisor, each on the
    // boundary its size wants (`check::ram_align`).
    let mut next = Some(hv.end());
    let mut rams = Vec::with_capacity(vms.vms.len());
    // Fixed VMs in address order, and the first that may still be ahead.
    let mut by_base: Vec<Region> = fixed.iter().map(|(_, r)| *r).collect();
    by_base.sort_by_key(|r| r.base);
    let mut fixed_ahead = 0;
    for (i, vm) in vms.vms.iter().enumerate() {
        if let Some((_, r)) = fixed.iter().find(|(j, _)| *j == i) {
            rams.push(*r);
            continue;
        }
        let size = vm.memory.get_ref().0;
        let align = check::ram_align(size);
        let placed = loop {
            let Some(base) = next.and_then(|n| n.checked_next_multiple_of(align)) else {
                break None;
            };
            let Some(end) = base.checked_add(size) else {
                break None;
            };
            let candidate = Region { base, size };
            // Fixed VMs wholly below the candidate are behind for good.
            while by_base
                .get(fixed_ahead)
                .is_some_and(|f| f.end() <= candidate.base)
            {
                fixed_ahead += 1;
            }
            match by_base[fixed_ahead..]
                .iter()
                .find(|f| f.overlaps(&candidate))
            {
                Some(f) => next = Some(f.end()),
                None if end <= ram.end() => break Some(candidate),
                None => break None,
            }
        };
        let Some(r) = placed else {
            return Err(src
                .error(
                    vm.memory.span(),
                    &format!("{} memory", vm_label(i, vm)),
                    format!(
                        "{} does not fit in RAM ({}) after the hypervisor and the VMs placed before it",
                        format_size(size),
                        range(ram)
                    ),
                )
                .with_help("the VMs with a base leave gaps too small for it: move them, or give this VM a base"));
        };
        next = Some(r.end());
        rams.push(r);
    }
    Ok(rams)
}
