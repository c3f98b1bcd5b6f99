//! The validated, laid-out composition that xtask hands to the image build
//! (as TOML in `target/compose/<name>/composition.toml`, named by the
//! `TESSERA_COMPOSITION` environment variable). Everything here is resolved:
//! addresses are numbers, sizes are bytes, guest images are files.

use crate::components::{self, Component, Kind};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    Aarch64,
    Armv7a,
}

impl Arch {
    /// The Rust target the hypervisor and guests are built for.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-none",
            Arch::Armv7a => "armv7a-none-eabi",
        }
    }
}

/// The register width a VM's guest runs with at EL1.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GuestArch {
    /// 64-bit (AArch64): only on an AArch64 host.
    Aarch64,
    /// 32-bit (AArch32, ARMv7-A code): on either host.
    Aarch32,
}

impl GuestArch {
    /// The Rust target the guest is built for.
    pub fn rust_target(self) -> &'static str {
        match self {
            GuestArch::Aarch64 => Arch::Aarch64.rust_target(),
            GuestArch::Aarch32 => Arch::Armv7a.rust_target(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GuestArch::Aarch64 => "aarch64",
            GuestArch::Aarch32 => "aarch32",
        }
    }
}

impl Arch {
    /// The guests a host of this architecture runs when a VM does not say.
    pub fn native_guest(self) -> GuestArch {
        match self {
            Arch::Aarch64 => GuestArch::Aarch64,
            Arch::Armv7a => GuestArch::Aarch32,
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub size: u64,
}

impl Region {
    pub fn end(&self) -> u64 {
        self.base + self.size
    }
    pub fn overlaps(&self, other: &Region) -> bool {
        self.base < other.end() && other.base < self.end()
    }
    pub fn contains(&self, other: &Region) -> bool {
        other.base >= self.base && other.end() <= self.end()
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
pub struct VmPlan {
    pub name: String,
    pub guest: String,
    pub vcpus: u32,
    /// The guest's register width.
    pub arch: GuestArch,
    /// Host-physical RAM of the VM.
    pub ram: Region,
    pub cmdline: String,
    /// The guest's flat binary, built by xtask.
    pub image: PathBuf,
    /// Relative share of CPU time (credit); [`VmPlan::DEFAULT_WEIGHT`] unless the profile says.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Most CPU time, in percent of one CPU (credit); 0 = no cap.
    #[serde(default)]
    pub cap_percent: u32,
    /// The physical CPU the VM's vCPU is pinned to (static, credit), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
}

impl VmPlan {
    /// The weight of a VM whose profile gives none.
    pub const DEFAULT_WEIGHT: u32 = 256;
}

fn default_weight() -> u32 {
    VmPlan::DEFAULT_WEIGHT
}

/// One window of the ARINC 653 major frame.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct WindowPlan {
    /// Index into [`Composition::vms`] of the VM that owns the CPU.
    pub vm: u32,
    pub length_us: u64,
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
    pub gic: Gic,
    pub timer: Timer,
    /// Scheduler component name ("rr", "credit", "static", "arinc653").
    pub scheduler: String,
    /// Scheduler time slice in microseconds.
    pub time_slice_us: u64,
    pub vms: Vec<VmPlan>,
    /// The ARINC 653 major frame, in order; empty for the other schedulers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowPlan>,
    /// A hypervisor self-test to run instead of the VMs (test scenarios only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selftest: Option<String>,
}

impl Composition {
    /// The rows of [`crate::components::COMPONENTS`] this composition is
    /// built from, in [`Kind::ALL`] order: the scheduler, the GIC driver, the
    /// vGIC that GIC implies, the UART driver, and every PV back-end.
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
        chosen.extend(components::of(Kind::Pv));
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
                Kind::Pv => {
                    let names: Vec<_> = rows.iter().map(|r| r.name).collect();
                    format!("pub const {item}: &str = {:?};\n", names.join(", "))
                }
            };
            s.push_str(&line);
        }
        Ok(s)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a composition always serialises")
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}
