//! U-Boot FIT images (`tessera.itb`): a flattened device tree holding the
//! kernel (and optionally a DTB) with their load addresses and SHA-256
//! hashes, written with `vm-fdt`. `bootm` verifies the hashes and copies the
//! kernel out of the FIT to its load address; `dumpimage -l` lists it.

use crate::uimage::ImageArch;
use anyhow::{anyhow, ensure, Result};
use sha2::{Digest, Sha256};
use vm_fdt::FdtWriter;

type FdtResult<T> = std::result::Result<T, vm_fdt::Error>;

/// The image and configuration names `fit_image` uses.
pub const KERNEL: &str = "kernel";
pub const FDT: &str = "fdt";
pub const CONFIG: &str = "conf-1";

/// The `arch` property, as U-Boot's `uimage_arch` table spells it.
fn arch_name(arch: ImageArch) -> &'static str {
    match arch {
        ImageArch::Arm => "arm",
        ImageArch::Arm64 => "arm64",
    }
}

/// A FIT with `kernel` as image `kernel` (loaded at `load`, entered at
/// `entry`), `fdt` as image `fdt` if given, and one default configuration
/// `conf-1` using both. Each image carries a `hash-1` node with its SHA-256.
pub fn fit_image(
    arch: ImageArch,
    load: u64,
    entry: u64,
    name: &str,
    kernel: &[u8],
    fdt: Option<&[u8]>,
    timestamp: u32,
) -> Result<Vec<u8>> {
    // One address cell, as 32-bit u-boot reads it, unless an address needs
    // two (RAM above 4 GiB, as on X-Gene), which only 64-bit u-boot has.
    let cells = if load.max(entry) <= u64::from(u32::MAX) {
        1
    } else {
        ensure!(
            arch == ImageArch::Arm64,
            "load address {load:#x} / entry {entry:#x} above 4 GiB on a 32-bit board"
        );
        2
    };
    build(arch, cells, load, entry, name, kernel, fdt, timestamp)
        .map_err(|e| anyhow!("writing the FIT image: {e}"))
}

#[allow(clippy::too_many_arguments)]
fn build(
    arch: ImageArch,
    cells: u32,
    load: u64,
    entry: u64,
    name: &str,
    kernel: &[u8],
    fdt: Option<&[u8]>,
    timestamp: u32,
) -> FdtResult<Vec<u8>> {
    let arch = arch_name(arch);
    let mut w = FdtWriter::new()?;
    let root = w.begin_node("")?;
    w.property_string("description", name)?;
    w.property_u32("timestamp", timestamp)?;
    w.property_u32("#address-cells", cells)?;

    let images = w.begin_node("images")?;
    let node = w.begin_node(KERNEL)?;
    w.property_string("description", name)?;
    w.property("data", kernel)?;
    w.property_string("type", "kernel")?;
    w.property_string("arch", arch)?;
    w.property_string("os", "linux")?;
    w.property_string("compression", "none")?;
    if cells == 1 {
        // Both fit: fit_image checked.
        w.property_u32("load", load as u32)?;
        w.property_u32("entry", entry as u32)?;
    } else {
        w.property_u64("load", load)?;
        w.property_u64("entry", entry)?;
    }
    hash(&mut w, kernel)?;
    w.end_node(node)?;
    if let Some(fdt) = fdt {
        let node = w.begin_node(FDT)?;
        w.property_string("description", "device tree")?;
        w.property("data", fdt)?;
        w.property_string("type", "flat_dt")?;
        w.property_string("arch", arch)?;
        w.property_string("compression", "none")?;
        hash(&mut w, fdt)?;
        w.end_node(node)?;
    }
    w.end_node(images)?;

    let configurations = w.begin_node("configurations")?;
    w.property_string("default", CONFIG)?;
    let config = w.begin_node(CONFIG)?;
    w.property_string("description", name)?;
    w.property_string("kernel", KERNEL)?;
    if fdt.is_some() {
        w.property_string("fdt", FDT)?;
    }
    w.end_node(config)?;
    w.end_node(configurations)?;

    w.end_node(root)?;
    w.finish()
}

fn hash(w: &mut FdtWriter, data: &[u8]) -> FdtResult<()> {
    let node = w.begin_node("hash-1")?;
    w.property_string("algo", "sha256")?;
    w.property("value", &Sha256::digest(data))?;
    w.end_node(node)
}

/// Checks a FIT with `dumpimage -l`: a kernel for `arch` (as dumpimage
/// names it, e.g. "AArch64") loaded and entered at `load`. `dumpimage -l`
/// does not verify the hashes; u-boot's `bootm` does.
pub fn check_kernel(path: &std::path::Path, arch: &str, load: u64) -> Result<()> {
    let sh = xshell::Shell::new()?;
    let output = xshell::cmd!(sh, "dumpimage -l {path}")
        .quiet()
        .ignore_status()
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "dumpimage -l {} failed:\n{text}",
        path.display()
    );
    for expected in [
        "Type:         Kernel Image".to_string(),
        format!("Architecture: {arch}"),
        format!("Load Address: {load:#x}"),
        format!("Entry Point:  {load:#x}"),
    ] {
        ensure!(
            text.contains(&expected),
            "dumpimage -l {}: no {expected:?} in\n{text}",
            path.display()
        );
    }
    Ok(())
}

/// The distro-boot script for the FIT: load it at `ramdisk_addr_r`, away
/// from the kernel's load address (`bootm` copies the kernel out of the FIT
/// to it), and `bootm` it with U-Boot's own DTB (without an FDT argument
/// `bootm` resets these boards). The configuration is named: Debian's
/// qemu_arm64 u-boot picks a FIT configuration by matching `compatible`
/// against its own DTB and, finding none, fails with "Could not find
/// configuration node" instead of taking `default`.
pub fn boot_cmd() -> String {
    format!(
        "load ${{devtype}} ${{devnum}}:${{distro_bootpart}} ${{ramdisk_addr_r}} tessera.itb\n\
         bootm ${{ramdisk_addr_r}}#{CONFIG} - ${{fdtcontroladdr}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(image: &[u8]) -> fdt::Fdt<'_> {
        fdt::Fdt::new(image).expect("a valid flattened device tree")
    }

    fn prop<'a>(tree: &fdt::Fdt<'a>, node: &str, name: &str) -> &'a [u8] {
        tree.find_node(node)
            .unwrap_or_else(|| panic!("no {node}"))
            .property(name)
            .unwrap_or_else(|| panic!("no {node}/{name}"))
            .value
    }

    fn string<'a>(tree: &fdt::Fdt<'a>, node: &str, name: &str) -> &'a str {
        let value = prop(tree, node, name);
        std::str::from_utf8(value.strip_suffix(&[0]).expect("NUL-terminated")).unwrap()
    }

    fn be32(value: &[u8]) -> u32 {
        u32::from_be_bytes(value.try_into().expect("one cell"))
    }

    #[test]
    fn kernel_hash_is_the_payload_sha256() {
        let kernel: Vec<u8> = (0..1000u32).map(|i| (i * 13) as u8).collect();
        let image = fit_image(
            ImageArch::Arm64,
            0x4040_0000,
            0x4040_0000,
            "Tessera",
            &kernel,
            None,
            7,
        )
        .unwrap();
        let tree = parse(&image);
        assert_eq!(prop(&tree, "/images/kernel", "data"), kernel.as_slice());
        assert_eq!(string(&tree, "/images/kernel/hash-1", "algo"), "sha256");
        assert_eq!(
            prop(&tree, "/images/kernel/hash-1", "value"),
            Sha256::digest(&kernel).as_slice()
        );
        assert_eq!(be32(prop(&tree, "/images/kernel", "load")), 0x4040_0000);
        assert_eq!(be32(prop(&tree, "/images/kernel", "entry")), 0x4040_0000);
        assert_eq!(string(&tree, "/images/kernel", "arch"), "arm64");
        assert_eq!(string(&tree, "/images/kernel", "type"), "kernel");
        assert_eq!(be32(prop(&tree, "/", "timestamp")), 7);
        assert_eq!(string(&tree, "/configurations", "default"), "conf-1");
        assert_eq!(string(&tree, "/configurations/conf-1", "kernel"), "kernel");
        assert!(tree.find_node("/images/fdt").is_none());
        assert!(tree
            .find_node("/configurations/conf-1")
            .unwrap()
            .property("fdt")
            .is_none());
    }

    #[test]
    fn fdt_image_is_optional() {
        let dtb = b"not really a dtb";
        let image = fit_image(
            ImageArch::Arm,
            0x4000_8000,
            0x4000_8000,
            "t",
            b"k",
            Some(dtb),
            0,
        )
        .unwrap();
        let tree = parse(&image);
        assert_eq!(string(&tree, "/images/kernel", "arch"), "arm");
        assert_eq!(string(&tree, "/images/fdt", "type"), "flat_dt");
        assert_eq!(prop(&tree, "/images/fdt", "data"), dtb);
        assert_eq!(
            prop(&tree, "/images/fdt/hash-1", "value"),
            Sha256::digest(dtb).as_slice()
        );
        assert_eq!(string(&tree, "/configurations/conf-1", "fdt"), "fdt");
    }

    #[test]
    fn addresses_above_4gib_take_two_cells_on_arm64_only() {
        let image = fit_image(
            ImageArch::Arm64,
            0x1_0200_0000,
            0x1_0200_0000,
            "t",
            b"k",
            None,
            0,
        )
        .unwrap();
        let tree = parse(&image);
        assert_eq!(prop(&tree, "/", "#address-cells"), 2u32.to_be_bytes());
        assert_eq!(
            prop(&tree, "/images/kernel", "load"),
            0x1_0200_0000u64.to_be_bytes()
        );
        assert_eq!(
            prop(&tree, "/images/kernel", "entry"),
            0x1_0200_0000u64.to_be_bytes()
        );
        let low = fit_image(
            ImageArch::Arm64,
            0x4040_0000,
            0x4040_0000,
            "t",
            b"k",
            None,
            0,
        )
        .unwrap();
        assert_eq!(
            prop(&parse(&low), "/", "#address-cells"),
            1u32.to_be_bytes()
        );
        assert!(fit_image(ImageArch::Arm, 1 << 32, 0, "t", b"k", None, 0).is_err());
    }

    #[test]
    fn boot_cmd_loads_away_from_the_kernel() {
        let cmd = boot_cmd();
        assert!(cmd.contains("${distro_bootpart} ${ramdisk_addr_r} tessera.itb"));
        assert!(cmd.contains("bootm ${ramdisk_addr_r}#conf-1 - ${fdtcontroladdr}"));
    }
}
