//! The component table against what Cargo and the component crates must
//! have for it: forgetting a line there fails here, with what to add.

use config::components::{self, Kind, COMPONENTS};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn toml_file(path: &str) -> toml::Table {
    let path = root().join(path);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The table as the README shows it; `cargo test -p config --test
/// components -- --nocapture` prints it.
#[test]
fn the_table_lists_every_component() {
    println!("{:<10} {:<9} {:<15} path", "kind", "name", "feature");
    for c in COMPONENTS {
        let kind = format!("{:?}", c.kind);
        let feature = c.feature.unwrap_or("-");
        println!("{kind:<10} {:<9} {feature:<15} {}", c.name, c.path);
    }
    // The components this tree has; a new row adds to them.
    for (kind, names) in [
        (Kind::Scheduler, &["rr", "credit", "static", "arinc653"][..]),
        (Kind::Gic, &["2", "3"]),
        (Kind::Vgic, &["v2", "v3"]),
        (Kind::Uart, &["pl011", "ns16550"]),
        (Kind::Disk, &["virtio-blk"]),
        (Kind::Pv, &["console"]),
        (Kind::Device, &["sbsa-uart", "virtio-blk", "virtio-net"]),
    ] {
        let table = components::names(kind);
        for name in names {
            assert!(
                table.contains(name),
                "{kind:?} '{name}' is not in the table"
            );
        }
    }
}

#[test]
fn names_and_features_are_unique() {
    let mut seen = BTreeSet::new();
    for c in COMPONENTS {
        assert!(
            seen.insert((c.kind as u8, c.name)),
            "{:?} '{}' is in the table twice",
            c.kind,
            c.name
        );
    }
    let mut features = BTreeSet::new();
    for f in COMPONENTS.iter().filter_map(|c| c.feature) {
        assert!(features.insert(f), "feature `{f}` is in the table twice");
    }
}

/// Every GIC the table has a driver for has its vGIC, which profiles cannot
/// choose: it follows `[gic] version`.
#[test]
fn every_gic_has_its_vgic() {
    for gic in components::of(Kind::Gic) {
        let version: u32 = gic.name.parse().expect("GIC rows are named by version");
        assert!(
            components::vgic_for(version).is_some(),
            "GICv{version} has a driver but no vGIC row 'v{version}'"
        );
    }
}

#[test]
fn image_cargo_toml_has_each_feature_and_dependency() {
    let cargo = toml_file("images/tessera/Cargo.toml");
    let features = cargo["features"].as_table().expect("[features]");
    let deps = cargo["dependencies"].as_table().expect("[dependencies]");
    for c in COMPONENTS {
        let Some(feature) = c.feature else { continue };
        let Some(enables) = features.get(feature).and_then(|f| f.as_array()) else {
            panic!(
                "images/tessera/Cargo.toml has no feature `{feature}` for {} '{}': add\n  \
                 {feature} = [{}]\nunder [features]",
                c.kind.what(),
                c.name,
                c.deps
                    .iter()
                    .map(|d| format!("\"dep:{d}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        for dep in c.deps {
            let wanted = format!("dep:{dep}");
            assert!(
                enables.iter().any(|e| e.as_str() == Some(&wanted)),
                "images/tessera/Cargo.toml: feature `{feature}` does not turn on {wanted}; the component table says it needs it"
            );
            let optional = deps
                .get(*dep)
                .and_then(|d| d.get("optional"))
                .and_then(|o| o.as_bool());
            assert_eq!(
                optional,
                Some(true),
                "images/tessera/Cargo.toml: add `{dep} = {{ workspace = true, optional = true }}` under [dependencies] for {} '{}'",
                c.kind.what(),
                c.name
            );
        }
    }
    // And nothing else: a feature the table does not know would never be turned on.
    for feature in features.keys() {
        assert!(
            COMPONENTS.iter().any(|c| c.feature == Some(feature.as_str())),
            "images/tessera/Cargo.toml has feature `{feature}`, which no row of components/config/src/components.rs turns on"
        );
    }
    for (dep, spec) in deps {
        if spec.get("optional").and_then(|o| o.as_bool()) == Some(true) {
            assert!(
                COMPONENTS.iter().any(|c| c.deps.contains(&dep.as_str())),
                "images/tessera/Cargo.toml: optional dependency `{dep}` belongs to no row of the component table"
            );
        }
    }
}

/// A component crate under `components/` exports the item the generated
/// composition names, and the workspace builds and tests it on the host.
#[test]
fn component_crates_export_the_item_and_are_workspace_members() {
    let workspace = toml_file("Cargo.toml");
    let ws = workspace["workspace"].as_table().unwrap();
    let default_members: Vec<&str> = ws["default-members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let ws_deps = ws["dependencies"].as_table().unwrap();
    for c in COMPONENTS {
        let krate = c.krate();
        let dir = format!("components/{krate}");
        let lib = root().join(&dir).join("src/lib.rs");
        let text = std::fs::read_to_string(&lib)
            .unwrap_or_else(|e| panic!("{} '{}': {}: {e}", c.kind.what(), c.name, lib.display()));
        if let Some(item) = c.path.split("::").nth(1) {
            assert!(
                [
                    format!("pub type {item}"),
                    format!("pub struct {item}"),
                    format!("pub enum {item}")
                ]
                .iter()
                .any(|decl| text.contains(decl.as_str())),
                "{}: {} '{}' must export `{item}` (the table's path is {})",
                lib.display(),
                c.kind.what(),
                c.name,
                c.path
            );
        }
        // The GIC drivers build for bare metal only (arm-gic's system
        // register CPU interface); `cargo xtask test` lints them per target.
        assert!(
            c.kind == Kind::Gic || default_members.contains(&dir.as_str()),
            "Cargo.toml: add \"{dir}\" to default-members, so that `cargo test` runs its tests"
        );
        assert!(
            ws_deps.contains_key(&krate),
            "Cargo.toml: add `{krate} = {{ path = \"{dir}\" }}` under [workspace.dependencies]"
        );
    }
}

/// Each row, and nothing but the row, reaches the three places: the names
/// a profile may use, the features xtask turns on, and the items build.rs
/// writes. So a new row needs no edit anywhere else in the composer.
#[test]
fn every_row_reaches_validation_features_and_items() {
    use config::profile::{load_board, plan, Known};
    let known = Known::builtin(vec!["hello".into(), "spinner".into()]);
    let profile = load_board(&root().join("boards"), "qemu-virt-a64").unwrap();
    let image = |g: &str, _| PathBuf::from(format!("/{g}.bin"));
    let reference = plan(&profile, None, &known, "t", &image).unwrap();
    for row in COMPONENTS {
        let mut c = reference.clone();
        match row.kind {
            Kind::Scheduler => {
                assert!(known.schedulers.iter().any(|s| s == row.name));
                c.scheduler = row.name.into();
            }
            Kind::Uart => {
                assert!(known.uart_drivers.iter().any(|s| s == row.name));
                c.uart.driver = row.name.into();
            }
            Kind::Disk => {
                assert!(known.disk_drivers.iter().any(|s| s == row.name));
                c.disk = Some(config::composition::Disk {
                    driver: row.name.into(),
                    base: 0x0a00_3e00,
                    irq: 79,
                });
            }
            Kind::Gic => c.gic.version = row.name.parse().unwrap(),
            Kind::Vgic => c.gic.version = row.name[1..].parse().unwrap(),
            Kind::Pv => {}
            Kind::Device => c.vms[0].devices.push(config::vm::DeviceConfig {
                kind: row.name.into(),
                base: 0x0900_0000,
                size: 0x1000,
                intid: 33,
                disk: None,
                net: None,
            }),
        }
        assert!(c.components().unwrap().contains(&row), "{row:?}");
        if let Some(feature) = row.feature {
            assert!(c.features().iter().any(|f| f == feature), "{row:?}");
        }
        let items = c.component_items().unwrap();
        let wanted = match row.kind {
            Kind::Pv => format!("pub const PV: &str = \"{}\";", row.name),
            Kind::Device => format!(
                "{:?} => Some({}::new(setup).map(|d| alloc::boxed::Box::new(d) as alloc::boxed::Box<dyn hv::device::MmioDevice>)),",
                row.name, row.path
            ),
            kind => format!("pub type {} = {};", kind.item(), row.path),
        };
        assert!(items.contains(&wanted), "{wanted:?} not in:\n{items}");
    }
}
