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
    /// Paravirtual back-ends: every one in the table is in every image
    /// (the console is not optional).
    Pv,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Scheduler, Kind::Gic, Kind::Vgic, Kind::Uart, Kind::Pv];

    /// What errors call one.
    pub fn what(self) -> &'static str {
        match self {
            Kind::Scheduler => "scheduler",
            Kind::Gic => "GIC version",
            Kind::Vgic => "vGIC",
            Kind::Uart => "UART driver",
            Kind::Pv => "PV back-end",
        }
    }

    /// The item of the generated `composition` module the chosen row's
    /// path becomes: `pub type Scheduler = sched_rr::Component;`, and for
    /// the GIC `pub mod gic` (an image module, mounted from its file).
    pub fn item(self) -> &'static str {
        match self {
            Kind::Scheduler => "Scheduler",
            Kind::Gic => "gic",
            Kind::Vgic => "Vgic",
            Kind::Uart => "Uart",
            Kind::Pv => "PV",
        }
    }
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
    /// What the generated composition names: a type (`crate::Component`),
    /// or, for the GIC, the image's module file under `src/`.
    pub path: &'static str,
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
    }
}

use Kind::*;

/// Every component, one row each.
#[rustfmt::skip]
pub const COMPONENTS: &[Component] = &[
    row(Scheduler, "rr",       "sched-rr",       &["sched-rr"],       "sched_rr::Component"),
    row(Scheduler, "credit",   "sched-credit",   &["sched-credit"],   "sched_credit::Component"),
    row(Scheduler, "static",   "sched-static",   &["sched-static"],   "sched_static::Component"),
    row(Scheduler, "arinc653", "sched-arinc653", &["sched-arinc653"], "sched_arinc653::Component"),
    // The GICv2 driver programs GICH through vgic-v2's register block.
    row(Gic,       "2",        "gic-v2",         &["arm-gic", "vgic-v2"], "board/gicv2.rs"),
    row(Gic,       "3",        "gic-v3",         &["arm-gic"],        "board/gicv3.rs"),
    row(Vgic,      "v2",       "vgic-v2",        &["vgic-v2"],        "vgic_v2::Component"),
    row(Vgic,      "v3",       "vgic-v3",        &["vgic-v3"],        "vgic_v3::Component"),
    row(Uart,      "pl011",    "drv-pl011",      &["drv-pl011"],      "drv_pl011::Component"),
    row(Uart,      "ns16550",  "drv-ns16550",    &["drv-ns16550"],    "drv_ns16550::Component"),
    // hv's own console back-end (guest lines to the log): no feature.
    Component { kind: Pv, name: "console", feature: None, deps: &[], path: "pv_console" },
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

/// The vGIC a GIC of `version` runs: the only one it can.
pub fn vgic_for(gic_version: u32) -> Option<&'static Component> {
    find(Vgic, &alloc::format!("v{gic_version}"))
}
