//! The validated, laid-out composition that xtask hands to the image build
//! (as TOML in `target/compose/<name>/composition.toml`, named by the
//! `TESSERA_COMPOSITION` environment variable). Everything here is resolved:
//! addresses are numbers, sizes are bytes, guest images are files.

use crate::components::{self, Component, Kind};
pub use crate::vm::Region;
use crate::vm::{GuestWidth, TimeWindow, VmConfig};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::PathBuf;

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    Aarch64,
    Armv7a,
}

impl Arch {
    /// The Rust target native guests are built for (FP/SIMD available).
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-none",
            Arch::Armv7a => "armv7a-none-eabi",
        }
    }

    /// The Rust target the hypervisor is built for: one that never uses
    /// FP/SIMD registers, so a guest's stay live across its traps and are
    /// switched only with the vCPU (`armv7a-none-eabi` is soft-float
    /// already).
    pub fn hypervisor_target(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-none-softfloat",
            Arch::Armv7a => "armv7a-none-eabi",
        }
    }
}

impl GuestWidth {
    /// The Rust target the guest is built for.
    pub fn rust_target(self) -> &'static str {
        match self {
            GuestWidth::Aarch64 => Arch::Aarch64.rust_target(),
            GuestWidth::Aarch32 => Arch::Armv7a.rust_target(),
        }
    }
}

impl Arch {
    /// The guests a host of this architecture runs when a VM does not say.
    pub fn native_guest(self) -> GuestWidth {
        match self {
            Arch::Aarch64 => GuestWidth::Aarch64,
            Arch::Armv7a => GuestWidth::Aarch32,
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Uart {
    /// Driver component: "pl011" or "ns16550".
    pub driver: String,
    pub base: u64,
    pub reg_shift: u32,
    /// Bytes per register access (ns16550: 1 or 4).
    pub reg_io_width: u32,
}

/// The hypervisor's own disk (`[disk]`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Disk {
    /// Driver component: "virtio-blk".
    pub driver: String,
    /// Its register window, mapped for the hypervisor only.
    pub base: u64,
    /// Its interrupt (INTID); unused while the driver polls.
    pub irq: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Gic {
    pub version: u32,
    pub distributor: u64,
    /// GICv2 only.
    pub cpu_interface: Option<u64>,
    pub hyp_interface: Option<u64>,
    pub virtual_cpu_interface: Option<u64>,
    /// GICv3 only.
    pub redistributor: Option<u64>,
    pub maintenance_irq: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Timer {
    /// INTID of the EL2 physical timer (CNTHP), the hypervisor's tick.
    pub hyp_irq: u32,
    /// INTID of the EL1 virtual timer (CNTV), the guests' timer.
    pub virt_irq: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Composition {
    /// Board name (the profile's file stem).
    pub board: String,
    /// What this composition is called in `target/` (the board, or board+scenario).
    pub name: String,
    pub arch: Arch,
    pub cpus: u32,
    pub ram: Region,
    /// Where the hypervisor image is linked and loaded, and what it may use
    /// for itself (code, data, heap, stacks).
    pub hypervisor: Region,
    pub uart: Uart,
    /// The board's disk, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Disk>,
    pub gic: Gic,
    pub timer: Timer,
    /// Scheduler component name ("rr", "credit", "static", "arinc653").
    pub scheduler: String,
    /// Scheduler time slice in microseconds.
    pub time_slice_us: u64,
    /// The VMs as the image's VM table carries them.
    #[serde(deserialize_with = "owned_vms")]
    pub vms: Vec<VmConfig<'static>>,
    /// The guests' flat binaries, built by xtask, each once; a VM names its
    /// own by index ([`VmConfig::image`]).
    pub guests: Vec<PathBuf>,
    /// The `[[network]]`s, in profile order (a port's `NetConfig::network`
    /// is an index here): what the manifest says of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<Network>,
    /// The ARINC 653 major frame, in order; empty for the other schedulers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<TimeWindow>,
    /// A hypervisor self-test to run instead of the VMs (test scenarios only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selftest: Option<String>,
}

/// A virtual network between VMs, as composed. The core knows each port
/// by its device's `NetConfig`; this is for people.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Network {
    pub name: String,
    /// Its IPv4 subnet: "10.0.0.0/24".
    pub subnet: String,
    /// Its VMs, in the profile's order.
    pub ports: Vec<NetworkPort>,
}

/// One VM on a [`Network`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct NetworkPort {
    /// The VM (its index in the VMs).
    pub vm: u32,
    /// The address the VM was told ("10.0.0.2/24"): Linux VMs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// The VMs as read, their strings copied out of the text.
fn owned_vms<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<VmConfig<'static>>, D::Error> {
    let vms = Vec::<VmConfig<'de>>::deserialize(d)?;
    Ok(vms.into_iter().map(VmConfig::into_owned).collect())
}

impl Composition {
    /// The guest image file of `vm`.
    pub fn guest_image(&self, vm: &VmConfig) -> &std::path::Path {
        &self.guests[vm.image as usize]
    }

    /// The rows of [`crate::components::COMPONENTS`] this composition is
    /// built from, in [`Kind::ALL`] order: the scheduler, the GIC driver, the
    /// vGIC that GIC implies, the UART driver, the disk driver if there is a
    /// disk, every PV back-end and the VMs' emulated devices.
    pub fn components(&self) -> Result<Vec<&'static Component>, String> {
        let pick = |kind: Kind, name: &str| {
            components::find(kind, name).ok_or_else(|| {
                format!(
                    "no {} '{name}' in the component table (components/config/src/components.rs)",
                    kind.what()
                )
            })
        };
        let version = self.gic.version.to_string();
        let mut chosen = vec![
            pick(Kind::Scheduler, &self.scheduler)?,
            pick(Kind::Gic, &version)?,
            components::vgic_for(self.gic.version)
                .ok_or_else(|| format!("no vGIC for GICv{version} in the component table"))?,
            pick(Kind::Uart, &self.uart.driver)?,
        ];
        if let Some(disk) = &self.disk {
            chosen.push(pick(Kind::Disk, &disk.driver)?);
        }
        chosen.extend(components::of(Kind::Pv));
        for device in self.vms.iter().flat_map(|vm| &vm.devices) {
            let row = pick(Kind::Device, &device.kind)?;
            if !chosen.contains(&row) {
                chosen.push(row);
            }
        }
        Ok(chosen)
    }

    /// Cargo features of `images/tessera` that link this composition's
    /// components (a planned composition names only known ones).
    pub fn features(&self) -> Vec<String> {
        self.components()
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .filter_map(|c| c.feature.map(String::from))
            .collect()
    }

    /// The `composition` module's component items, one per kind, each the
    /// chosen row's path: the scheduler, GIC driver, vGIC and UART driver
    /// as types (`pub type Scheduler = sched_rr::Component;`), the PV
    /// back-ends as a list of names.
    pub fn component_items(&self) -> Result<String, String> {
        let chosen = self.components()?;
        let mut s = String::new();
        for kind in Kind::ALL {
            let rows: Vec<_> = chosen.iter().filter(|r| r.kind == kind).collect();
            let item = kind.item();
            let line = match kind {
                Kind::Scheduler | Kind::Gic | Kind::Vgic | Kind::Uart => {
                    format!("pub type {item} = {};\n", rows[0].path)
                }
                // `probe_disk` is how the image reaches it: the chosen
                // driver at the board's address, once, or None.
                Kind::Disk => match (rows.first(), &self.disk) {
                    (Some(row), Some(disk)) => format!(
                        "pub type {item} = {path};\n\
                         /// The board's disk (`[disk]`), probed by its driver; `None` when the\n\
                         /// board has none or it was probed before (one driver per device).\n\
                         pub fn probe_disk() -> Option<(&'static str, hv::disk::Probed)> {{\n\
                         \x20   static PROBED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);\n\
                         \x20   if PROBED.swap(true, core::sync::atomic::Ordering::AcqRel) {{\n\
                         \x20       return None;\n\
                         \x20   }}\n\
                         \x20   // SAFETY: {base:#x} is the board's [disk] window: the composer checked it\n\
                         \x20   // lies outside RAM and clear of the UART and GIC, the EL2 (HYP) map\n\
                         \x20   // identity-maps it as device memory, no guest's stage 2 maps it, and\n\
                         \x20   // PROBED makes this the only driver of it.\n\
                         \x20   let disk = unsafe {{ // SAFETY: as above.\n\
                         \x20       {item}::at({base:#x})\n\
                         \x20   }};\n\
                         \x20   Some(({desc:?}, disk.map(|d| alloc::boxed::Box::new(d) as alloc::boxed::Box<dyn hv::disk::BlockDevice + Send>).map_err(|e| alloc::format!(\"{{e}}\"))))\n\
                         }}\n",
                        path = row.path,
                        base = disk.base,
                        desc = format!("{} at {:#x}", disk.driver, disk.base),
                    ),
                    _ => "/// This board has no disk (`[disk]`).\n\
                          pub fn probe_disk() -> Option<(&'static str, hv::disk::Probed)> {\n    None\n}\n"
                        .to_string(),
                },
                Kind::Pv => {
                    let names: Vec<_> = rows.iter().map(|r| r.name).collect();
                    format!("pub const {item}: &str = {:?};\n", names.join(", "))
                }
                Kind::Device => {
                    let arms: String = rows
                        .iter()
                        .map(|r| {
                            format!(
                                "        {:?} => Some({}::new(setup).map(|d| alloc::boxed::Box::new(d) as alloc::boxed::Box<dyn hv::device::MmioDevice>)),\n",
                                r.name, r.path
                            )
                        })
                        .collect();
                    format!(
                        "/// The emulated device of component row `kind`, for a VM.\n\
                         #[allow(unused_variables, clippy::match_single_binding)]\n\
                         pub fn {item}(kind: &str, setup: hv::device::Setup) -> Option<Result<alloc::boxed::Box<dyn hv::device::MmioDevice>, hv::device::SetupError>> {{\n    match kind {{\n{arms}        _ => None,\n    }}\n}}\n"
                    )
                }
            };
            s.push_str(&line);
        }
        Ok(s)
    }

    /// The image's VM table: the VMs and windows as they are, in postcard.
    pub fn vm_table(&self) -> Vec<u8> {
        crate::boot::VmTable {
            vms: self.vms.clone(),
            windows: self.windows.clone(),
        }
        .encode()
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a composition always serialises")
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}
