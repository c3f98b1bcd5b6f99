//! The component table: every component an image can be built from, with
//! the name a profile gives it, the Cargo feature of `images/tessera` that
//! links it and the Rust path the generated composition names. Profile
//! validation (known names, did-you-mean), the features xtask turns on and
//! the items `images/tessera/build.rs` writes all come from [`COMPONENTS`].
//!
//! From now on each emulated device and PV back-end gets a kind here too
//! (today the vGIC is the one emulated device, the console the one back-end).
//!
//! Adding a component is a crate under `components/` exporting the item
//! its kind asks for (see [`Kind::item`]) plus one row here; the image's
//! `Cargo.toml` needs the feature and the optional dependency too, which
//! `tests/components.rs` checks against this table.

/// What a component is, and so where a profile picks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `[compose] scheduler`.
    Scheduler,
    /// `[gic] version`: the physical GIC's driver.
    Gic,
    /// Derived from `[gic] version`: the vGIC runs on that GIC's own
    /// virtualisation interface, so there is nothing to choose.
    Vgic,
    /// `[uart] driver`: the console UART's driver.
    Uart,
    /// `[disk] driver`: the hypervisor's own disk (optional). Its
    /// `Component` has `unsafe fn at(base: usize) -> Result<Self, E>` with
    /// `E: Display`, and is an `hv::disk::BlockDevice`.
    Disk,
    /// Paravirtual back-ends: every one in the table is in every image
    /// (the console is not optional).
    Pv,
    /// Emulated devices: those the image's VMs have (`VmConfig::devices`,
    /// by row name). Each exports `Component` with
    /// `new(setup: hv::device::Setup) -> Result<Self, hv::device::SetupError>`,
    /// an `hv::device::MmioDevice`.
    Device,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Scheduler,
        Kind::Gic,
        Kind::Vgic,
        Kind::Uart,
        Kind::Disk,
        Kind::Pv,
        Kind::Device,
    ];

    /// What errors call one.
    pub fn what(self) -> &'static str {
        match self {
            Kind::Scheduler => "scheduler",
            Kind::Gic => "GIC version",
            Kind::Vgic => "vGIC",
            Kind::Uart => "UART driver",
            Kind::Disk => "disk driver",
            Kind::Pv => "PV back-end",
            Kind::Device => "emulated device",
        }
    }

    /// The item of the generated `composition` module the chosen row's
    /// path becomes: `pub type Scheduler = sched_rr::Component;`.
    pub fn item(self) -> &'static str {
        match self {
            Kind::Scheduler => "Scheduler",
            Kind::Gic => "Gic",
            Kind::Vgic => "Vgic",
            Kind::Uart => "Uart",
            Kind::Disk => "Disk",
            Kind::Pv => "PV",
            Kind::Device => "new_device",
        }
    }
}

/// A profile knob only some schedulers act on. Each scheduler row lists
/// the ones it takes; the profile checks ask the chosen row, so a new
/// scheduler says here what it does with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// `[[vm]] weight` and `cap`: shares of CPU time.
    Shares,
    /// `[[vm]] cpu`: a VM pinned to a physical CPU.
    Pinning,
    /// Every vCPU has a CPU of its own, so there are no more vCPUs than
    /// CPUs and a VM without `cpu` gets the lowest free one.
    CpuPerVcpu,
    /// `[compose] windows`: the ARINC 653 major frame.
    MajorFrame,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    pub kind: Kind,
    /// What the profile writes (`"rr"`, `"pl011"`, `2` as `"2"`, ...).
    pub name: &'static str,
    /// The Cargo feature of `images/tessera` that links it; `None` for a
    /// component every image has through `hv` itself.
    pub feature: Option<&'static str>,
    /// The optional dependencies of `images/tessera` the feature turns on.
    pub deps: &'static [&'static str],
    /// What the generated composition names: `crate::Component`.
    pub path: &'static str,
    /// For a scheduler: the profile knobs it acts on.
    pub takes: &'static [Takes],
}

impl Component {
    pub fn takes(&self, knob: Takes) -> bool {
        self.takes.contains(&knob)
    }

    /// The crate it lives in (`sched_rr::Component` → `sched-rr`).
    pub fn krate(&self) -> alloc::string::String {
        let name = self.path.split("::").next().unwrap_or(self.path);
        name.replace('_', "-")
    }
}

const fn row(
    kind: Kind,
    name: &'static str,
    feature: &'static str,
    deps: &'static [&'static str],
    path: &'static str,
) -> Component {
    Component {
        kind,
        name,
        feature: Some(feature),
        deps,
        path,
        takes: &[],
    }
}

/// A scheduler's row: `row` plus the knobs it takes.
const fn scheduler(
    name: &'static str,
    feature: &'static str,
    deps: &'static [&'static str],
    path: &'static str,
    takes: &'static [Takes],
) -> Component {
    Component {
        takes,
        ..row(Scheduler, name, feature, deps, path)
    }
}

use Kind::*;

/// Every component, one row each.
#[rustfmt::skip]
pub const COMPONENTS: &[Component] = &[
    scheduler("rr",       "sched-rr",       &["sched-rr"],       "sched_rr::Component",       &[]),
    scheduler("credit",   "sched-credit",   &["sched-credit"],   "sched_credit::Component",   &[Takes::Shares, Takes::Pinning]),
    scheduler("static",   "sched-static",   &["sched-static"],   "sched_static::Component",   &[Takes::Pinning, Takes::CpuPerVcpu]),
    scheduler("arinc653", "sched-arinc653", &["sched-arinc653"], "sched_arinc653::Component", &[Takes::MajorFrame]),
    row(Gic,       "2",        "gic-v2",         &["drv-gicv2"],      "drv_gicv2::Component"),
    row(Gic,       "3",        "gic-v3",         &["drv-gicv3"],      "drv_gicv3::Component"),
    row(Vgic,      "v2",       "vgic-v2",        &["vgic-v2"],        "vgic_v2::Component"),
    row(Vgic,      "v3",       "vgic-v3",        &["vgic-v3"],        "vgic_v3::Component"),
    row(Uart,      "pl011",    "drv-pl011",      &["drv-pl011"],      "drv_pl011::Component"),
    row(Uart,      "ns16550",  "drv-ns16550",    &["drv-ns16550"],    "drv_ns16550::Component"),
    row(Disk,      "virtio-blk", "drv-virtio-blk", &["drv-virtio-blk"], "drv_virtio_blk::Component"),
    row(Device,    "sbsa-uart", "vuart-pl011",   &["vuart-pl011"],    "vuart_pl011::Component"),
    row(Device,    "virtio-blk", "vblk",         &["vblk"],           "vblk::Component"),
    row(Device,    "virtio-net", "vnet",         &["vnet"],           "vnet::Component"),
    // hv's own console back-end (guest lines to the log): no feature.
    Component { kind: Pv, name: "console", feature: None, deps: &[], path: "pv_console", takes: &[] },
];

/// The rows of one kind, in table order.
pub fn of(kind: Kind) -> impl Iterator<Item = &'static Component> {
    COMPONENTS.iter().filter(move |c| c.kind == kind)
}

/// The names a profile may give a component of `kind`.
pub fn names(kind: Kind) -> alloc::vec::Vec<&'static str> {
    of(kind).map(|c| c.name).collect()
}

/// The row of `kind` called `name`.
pub fn find(kind: Kind, name: &str) -> Option<&'static Component> {
    of(kind).find(|c| c.name == name)
}

/// The schedulers that take `knob`, as prose: "credit", "credit and static".
pub fn schedulers_taking(knob: Takes) -> alloc::string::String {
    let names: alloc::vec::Vec<_> = of(Scheduler)
        .filter(|c| c.takes(knob))
        .map(|c| c.name)
        .collect();
    match names.split_last() {
        Some((last, [])) => alloc::string::String::from(*last),
        Some((last, rest)) => alloc::format!("{} and {last}", rest.join(", ")),
        None => alloc::string::String::from("no scheduler"),
    }
}

/// The vGIC a GIC of `version` runs: the only one it can.
pub fn vgic_for(gic_version: u32) -> Option<&'static Component> {
    find(Vgic, &alloc::format!("v{gic_version}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_knobs_a_scheduler_takes_come_from_its_row() {
        assert_eq!(schedulers_taking(Takes::Shares), "credit");
        assert_eq!(schedulers_taking(Takes::Pinning), "credit and static");
        assert_eq!(schedulers_taking(Takes::MajorFrame), "arinc653");
        let rr = find(Scheduler, "rr").unwrap();
        assert!([
            Takes::Shares,
            Takes::Pinning,
            Takes::CpuPerVcpu,
            Takes::MajorFrame
        ]
        .iter()
        .all(|&knob| !rr.takes(knob)));
    }
}
