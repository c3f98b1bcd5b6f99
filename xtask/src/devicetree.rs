//! The device tree each Linux VM boots with: what the VM has, at the
//! guest-physical addresses of the ABI (`abi::GUEST_*`): its CPUs (PSCI
//! through HVC), its RAM, its virtual GIC, the generic timer, its emulated
//! UART, its virtio-mmio disks and network ports, its channels, and
//! `chosen` (bootargs, console, initrd).

use anyhow::{anyhow, ensure, Result};
use config::vm::{GuestWidth, VmConfig};
use vm_fdt::{FdtWriter, FdtWriterResult};

/// The GIC's phandle, every interrupt's parent.
const GIC_PHANDLE: u32 = 1;

/// GIC interrupt specifier: (type, number, flags).
const SPI: u32 = 0;
const PPI: u32 = 1;
const EDGE_RISING: u32 = 1;
const LEVEL_HIGH: u32 = 4;
const LEVEL_LOW: u32 = 8;

/// The device tree of Linux VM `vm`, whose initrd is `initrd_len` bytes,
/// on a board with GIC `gic_version`.
pub fn linux_vm(vm: &VmConfig, gic_version: u32, initrd_len: u64) -> Result<Vec<u8>> {
    let linux = vm
        .linux
        .as_ref()
        .ok_or_else(|| anyhow!("VM {} is not a Linux VM", vm.name))?;
    let dtb = write(
        vm,
        gic_version,
        linux.initrd.map(|i| (i.offset, initrd_len)),
    )
    .map_err(|e| anyhow!("device tree of VM {}: {e:?}", vm.name))?;
    ensure!(
        dtb.len() as u64 <= config::linux::DTB_MAX,
        "the device tree of VM {} is {} bytes, more than the room the boot protocol gives it",
        vm.name,
        dtb.len()
    );
    Ok(dtb)
}

fn write(vm: &VmConfig, gic_version: u32, initrd: Option<(u64, u64)>) -> FdtWriterResult<Vec<u8>> {
    let ram = abi::GUEST_RAM_BASE;
    let mut w = FdtWriter::new()?;
    let root = w.begin_node("")?;
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    w.property_string("compatible", "tessera,vm")?;
    w.property_string("model", &format!("Tessera VM {}", vm.name))?;
    w.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let uart = format!("/serial@{:x}", abi::GUEST_UART_BASE);
    let chosen = w.begin_node("chosen")?;
    w.property_string("bootargs", &vm.cmdline)?;
    w.property_string("stdout-path", &uart)?;
    if let Some((offset, len)) = initrd {
        w.property_u64("linux,initrd-start", ram + offset)?;
        w.property_u64("linux,initrd-end", ram + offset + len)?;
    }
    w.end_node(chosen)?;

    let memory = w.begin_node(&format!("memory@{ram:x}"))?;
    w.property_string("device_type", "memory")?;
    w.property_array_u64("reg", &[ram, vm.ram.size])?;
    w.end_node(memory)?;

    let cpus = w.begin_node("cpus")?;
    w.property_u32("#address-cells", 1)?;
    w.property_u32("#size-cells", 0)?;
    for n in 0..vm.vcpus {
        let cpu = w.begin_node(&format!("cpu@{n}"))?;
        w.property_string("device_type", "cpu")?;
        w.property_string(
            "compatible",
            match vm.width {
                GuestWidth::Aarch64 => "arm,armv8",
                GuestWidth::Aarch32 => "arm,cortex-a15",
            },
        )?;
        w.property_u32("reg", n)?;
        if vm.width == GuestWidth::Aarch64 {
            w.property_string("enable-method", "psci")?;
        }
        w.end_node(cpu)?;
    }
    w.end_node(cpus)?;

    let psci = w.begin_node("psci")?;
    w.property_string_list(
        "compatible",
        vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()],
    )?;
    w.property_string("method", "hvc")?;
    w.end_node(psci)?;

    let gic = w.begin_node(&format!("interrupt-controller@{:x}", abi::GUEST_GICD_BASE))?;
    w.property_u32("#interrupt-cells", 3)?;
    w.property_null("interrupt-controller")?;
    w.property_u32("phandle", GIC_PHANDLE)?;
    if gic_version == 3 {
        w.property_string("compatible", "arm,gic-v3")?;
        w.property_u32("#redistributor-regions", 1)?;
        w.property_array_u64(
            "reg",
            &[
                abi::GUEST_GICD_BASE,
                abi::GUEST_GICD_SIZE,
                abi::GUEST_GICR_BASE,
                abi::GUEST_GICR_STRIDE * u64::from(vm.vcpus),
            ],
        )?;
    } else {
        w.property_string("compatible", "arm,cortex-a15-gic")?;
        w.property_array_u64(
            "reg",
            &[
                abi::GUEST_GICD_BASE,
                abi::GUEST_GICD_SIZE,
                abi::GUEST_GICC_BASE,
                abi::GUEST_GICC_SIZE,
            ],
        )?;
    }
    w.end_node(gic)?;

    // PPIs 13, 14, 11, 10: secure and non-secure physical, virtual, and
    // hypervisor timers. GICv2 specifiers name the CPUs they go to.
    let cpu_mask = if gic_version == 3 {
        0
    } else {
        ((1u32 << vm.vcpus.min(8)) - 1) << 8
    };
    let timer = w.begin_node("timer")?;
    w.property_string(
        "compatible",
        match vm.width {
            GuestWidth::Aarch64 => "arm,armv8-timer",
            GuestWidth::Aarch32 => "arm,armv7-timer",
        },
    )?;
    let mut interrupts = Vec::new();
    for ppi in [13, 14, 11, 10] {
        interrupts.extend([PPI, ppi, cpu_mask | LEVEL_LOW]);
    }
    w.property_array_u32("interrupts", &interrupts)?;
    w.property_null("always-on")?;
    w.end_node(timer)?;

    let serial = w.begin_node(&uart[1..])?;
    w.property_string("compatible", "arm,sbsa-uart")?;
    w.property_array_u64("reg", &[abi::GUEST_UART_BASE, abi::GUEST_UART_SIZE])?;
    w.property_array_u32("interrupts", &[SPI, abi::GUEST_UART_INTID - 32, LEVEL_HIGH])?;
    w.property_u32("current-speed", 115_200)?;
    w.end_node(serial)?;

    virtio_mmio(&mut w, vm)?;

    // Its channels: the state page and the data pages (at the same
    // addresses in the peer VM), and the interrupt the peer's
    // CHANNEL_NOTIFY (or its VM stopping) raises, an edge. Only the writer
    // may write the data.
    for ch in &vm.channels {
        let node = w.begin_node(&format!("channel@{:x}", ch.state_ipa))?;
        w.property_string("compatible", "tessera,channel")?;
        w.property_array_u64(
            "reg",
            &[
                ch.state_ipa,
                config::profile::CHANNEL_STATE_PAGE,
                ch.data_ipa,
                ch.data.size,
            ],
        )?;
        w.property_string_list("reg-names", vec!["state".into(), "data".into()])?;
        w.property_array_u32("interrupts", &[SPI, ch.intid - 32, EDGE_RISING])?;
        w.property_string("label", &ch.name)?;
        if ch.writer {
            w.property_null("tessera,writer")?;
        }
        w.end_node(node)?;
    }

    w.end_node(root)?;
    w.finish()
}

/// The device kinds served over virtio-mmio: Linux probes each transport
/// for its device ID.
const VIRTIO_KINDS: [&str; 2] = ["virtio-blk", "virtio-net"];

/// Its disks and network ports, a virtio-mmio node each, in slot order:
/// Linux probes them in the tree's order, and so names its network
/// interfaces eth0, eth1, ... in slot order, as the composer's
/// `tessera.net=` words expect.
fn virtio_mmio(w: &mut FdtWriter, vm: &VmConfig) -> FdtWriterResult<()> {
    let mut devices: Vec<_> = vm
        .devices
        .iter()
        .filter(|d| VIRTIO_KINDS.contains(&&*d.kind))
        .collect();
    devices.sort_by_key(|d| d.base);
    for device in devices {
        let node = w.begin_node(&format!("virtio_mmio@{:x}", device.base))?;
        w.property_string("compatible", "virtio,mmio")?;
        w.property_array_u64("reg", &[device.base, device.size])?;
        w.property_array_u32("interrupts", &[SPI, device.intid - 32, LEVEL_HIGH])?;
        // The hypervisor reaches guest RAM through cacheable mappings, so
        // the guest need not clean or invalidate around requests.
        w.property_null("dma-coherent")?;
        w.end_node(node)?;
    }
    Ok(())
}
