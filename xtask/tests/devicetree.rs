//! A Linux VM's device tree, read back by `dtc`: every node Linux needs,
//! at the ABI's guest addresses (disks, network ports and channels
//! included), for each GIC version and width.

use config::vm::{
    Blob, ChannelEnd, DeviceConfig, DiskConfig, GuestWidth, LinuxBoot, NetConfig, Region, VmConfig,
};
use std::process::Command;
use xtask::{devicetree, tools};

fn vm(width: GuestWidth, vcpus: u32) -> VmConfig<'static> {
    VmConfig {
        name: "linux".into(),
        guest: "debian:arm64".into(),
        cmdline: "console=ttyAMA0 loglevel=8".into(),
        vcpus,
        width,
        ram: Region {
            base: 0x4300_0000,
            size: 256 << 20,
        },
        image: 0,
        weight: 256,
        cap_percent: 0,
        cpu: None,
        linux: Some(LinuxBoot {
            kernel_offset: 0,
            dtb: Blob {
                image: 1,
                offset: 0x220_0000,
            },
            initrd: Some(Blob {
                image: 2,
                offset: 0x240_0000,
            }),
        }),
        devices: vec![
            DeviceConfig {
                kind: "sbsa-uart".into(),
                base: abi::GUEST_UART_BASE,
                size: abi::GUEST_UART_SIZE,
                intid: abi::GUEST_UART_INTID,
                disk: None,
                net: None,
            },
            disk(0, "lvm:vg0/web"),
            disk(1, "part:2"),
        ],
        channels: vec![],
    }
}

/// The VM's disk `n`, in the ABI's slot n, as the plan makes it.
fn disk(n: u32, source: &'static str) -> DeviceConfig<'static> {
    DeviceConfig {
        kind: "virtio-blk".into(),
        base: abi::GUEST_VIRTIO_BASE + u64::from(n) * abi::GUEST_VIRTIO_SIZE,
        size: abi::GUEST_VIRTIO_SIZE,
        intid: abi::GUEST_VIRTIO_INTID + n,
        disk: Some(DiskConfig {
            source: source.into(),
            read_only: n == 1,
            min_sectors: 0,
        }),
        net: None,
    }
}

/// Both disks' nodes: at their slots, SPIs 16 and 17, level high.
fn has_disks(dts: &str) {
    has(
        dts,
        "virtio_mmio@a000000",
        &[
            "compatible = \"virtio,mmio\";",
            "reg = <0x00 0xa000000 0x00 0x200>;",
            "interrupts = <0x00 0x10 0x04>;",
            "dma-coherent;",
        ],
    );
    has(
        dts,
        "virtio_mmio@a000200",
        &[
            "compatible = \"virtio,mmio\";",
            "reg = <0x00 0xa000200 0x00 0x200>;",
            "interrupts = <0x00 0x11 0x04>;",
            "dma-coherent;",
        ],
    );
    assert!(!dts.contains("virtio_mmio@a000400"), "{dts}");
}

/// `dtc`'s source form of `dtb`.
fn decompile(dtb: &[u8], name: &str) -> String {
    assert!(
        tools::find("dtc").is_some(),
        "dtc is missing: apt-get install device-tree-compiler"
    );
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, dtb).unwrap();
    let output = Command::new("dtc")
        .args(["-I", "dtb", "-O", "dts", "-W", "no-unit_address_vs_reg"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn node<'a>(dts: &'a str, name: &str) -> &'a str {
    let start = dts
        .find(&format!("{name} {{"))
        .unwrap_or_else(|| panic!("no node {name} in:\n{dts}"));
    let end = dts[start..].find("};").map_or(dts.len(), |e| start + e);
    &dts[start..end]
}

fn has(dts: &str, node_name: &str, lines: &[&str]) {
    let text = node(dts, node_name);
    for line in lines {
        assert!(text.contains(line), "{node_name}: no {line:?} in:\n{text}");
    }
}

#[test]
fn an_arm64_vm_on_gicv2_has_every_node_linux_needs() {
    let dts = decompile(
        &devicetree::linux_vm(&vm(GuestWidth::Aarch64, 2), 2, 0x18_0000).unwrap(),
        "arm64-gicv2.dtb",
    );
    assert!(dts.contains("#address-cells = <0x02>;"), "{dts}");
    assert!(dts.contains("#size-cells = <0x02>;"), "{dts}");
    has(
        &dts,
        "cpu@0",
        &[
            "device_type = \"cpu\";",
            "reg = <0x00>;",
            "enable-method = \"psci\";",
        ],
    );
    has(
        &dts,
        "cpu@1",
        &["reg = <0x01>;", "enable-method = \"psci\";"],
    );
    assert!(!dts.contains("cpu@2"), "{dts}");
    has(
        &dts,
        "memory@40000000",
        &[
            "device_type = \"memory\";",
            "reg = <0x00 0x40000000 0x00 0x10000000>;",
        ],
    );
    has(
        &dts,
        "psci",
        &[
            "compatible = \"arm,psci-1.0\\0arm,psci-0.2\";",
            "method = \"hvc\";",
        ],
    );
    has(
        &dts,
        "interrupt-controller@8000000",
        &[
            "compatible = \"arm,cortex-a15-gic\";",
            "interrupt-controller;",
            "#interrupt-cells = <0x03>;",
            "reg = <0x00 0x8000000 0x00 0x10000 0x00 0x8010000 0x00 0x2000>;",
        ],
    );
    has(
        &dts,
        "timer",
        &[
            "compatible = \"arm,armv8-timer\";",
            "interrupts = <0x01 0x0d 0x308 0x01 0x0e 0x308 0x01 0x0b 0x308 0x01 0x0a 0x308>;",
        ],
    );
    has(
        &dts,
        "serial@9000000",
        &[
            "compatible = \"arm,sbsa-uart\";",
            "reg = <0x00 0x9000000 0x00 0x1000>;",
            "interrupts = <0x00 0x01 0x04>;",
            "current-speed = <0x1c200>;",
        ],
    );
    has(
        &dts,
        "chosen",
        &[
            "bootargs = \"console=ttyAMA0 loglevel=8\";",
            "stdout-path = \"/serial@9000000\";",
            "linux,initrd-start = <0x00 0x42400000>;",
            "linux,initrd-end = <0x00 0x42580000>;",
        ],
    );
    has_disks(&dts);
}

#[test]
fn gicv3_and_32_bit_vms_get_their_own_nodes() {
    let dts = decompile(
        &devicetree::linux_vm(&vm(GuestWidth::Aarch64, 4), 3, 0).unwrap(),
        "arm64-gicv3.dtb",
    );
    has(
        &dts,
        "interrupt-controller@8000000",
        &[
            "compatible = \"arm,gic-v3\";",
            "#redistributor-regions = <0x01>;",
            "reg = <0x00 0x8000000 0x00 0x10000 0x00 0x80a0000 0x00 0x80000>;",
        ],
    );
    has(&dts, "timer", &["interrupts = <0x01 0x0d 0x08 "]);
    has_disks(&dts);
    let dts = decompile(
        &devicetree::linux_vm(&vm(GuestWidth::Aarch32, 1), 2, 0).unwrap(),
        "arm-gicv2.dtb",
    );
    has(&dts, "cpu@0", &["compatible = \"arm,cortex-a15\";"]);
    assert!(!node(&dts, "cpu@0").contains("enable-method"), "{dts}");
    has(&dts, "timer", &["compatible = \"arm,armv7-timer\";"]);
    has_disks(&dts);
}

/// A channel end as the plan places it: state page at `state_ipa`, data
/// right after it.
fn channel(
    name: &'static str,
    writer: bool,
    state_ipa: u64,
    size: u64,
    intid: u32,
) -> ChannelEnd<'static> {
    ChannelEnd {
        name: name.into(),
        writer,
        data: Region {
            base: 0x5000_0000 + state_ipa + 0x1000,
            size,
        },
        data_ipa: state_ipa + 0x1000,
        state: 0x5000_0000 + state_ipa,
        state_ipa,
        intid,
        peer: 1,
    }
}

#[test]
fn channel_ends_have_their_own_nodes() {
    let mut vm = vm(GuestWidth::Aarch64, 1);
    vm.channels = vec![
        channel("telemetry", true, 0x1000_0000, 0x1_0000, 64),
        channel("control", false, 0x1001_1000, 0x2000, 65),
    ];
    let dts = decompile(
        &devicetree::linux_vm(&vm, 2, 0).unwrap(),
        "arm64-channels.dtb",
    );
    has(
        &dts,
        "channel@10000000",
        &[
            "compatible = \"tessera,channel\";",
            "reg = <0x00 0x10000000 0x00 0x1000 0x00 0x10001000 0x00 0x10000>;",
            "reg-names = \"state\\0data\";",
            "interrupts = <0x00 0x20 0x01>;",
            "label = \"telemetry\";",
            "tessera,writer;",
        ],
    );
    has(
        &dts,
        "channel@10011000",
        &[
            "compatible = \"tessera,channel\";",
            "reg = <0x00 0x10011000 0x00 0x1000 0x00 0x10012000 0x00 0x2000>;",
            "reg-names = \"state\\0data\";",
            "interrupts = <0x00 0x21 0x01>;",
            "label = \"control\";",
        ],
    );
    assert!(
        !node(&dts, "channel@10011000").contains("tessera,writer"),
        "the reader's side is not the writer:\n{dts}"
    );
    has_disks(&dts);
}

/// The VM's port on network `network`, in slot `slot`, as the plan makes it.
fn port(slot: u32, network: u32) -> DeviceConfig<'static> {
    DeviceConfig {
        kind: "virtio-net".into(),
        base: abi::GUEST_VIRTIO_BASE + u64::from(slot) * abi::GUEST_VIRTIO_SIZE,
        size: abi::GUEST_VIRTIO_SIZE,
        intid: abi::GUEST_VIRTIO_INTID + slot,
        disk: None,
        net: Some(NetConfig {
            network,
            mac: [2, 0x54, 0x53, network as u8, 0, 0],
        }),
    }
}

#[test]
fn network_ports_are_virtio_mmio_nodes_after_the_disks_in_slot_order() {
    let mut vm = vm(GuestWidth::Aarch64, 1);
    vm.cmdline = "console=ttyAMA0 tessera.net=eth0,10.0.0.2/24".into();
    vm.devices.truncate(2);
    // Listed out of order: the tree has them in slot order all the same.
    vm.devices.extend([port(2, 1), port(1, 0)]);
    let dts = decompile(&devicetree::linux_vm(&vm, 2, 0).unwrap(), "arm64-net.dtb");
    has(
        &dts,
        "virtio_mmio@a000000",
        &[
            "reg = <0x00 0xa000000 0x00 0x200>;",
            "interrupts = <0x00 0x10 0x04>;",
        ],
    );
    for (slot, spi) in [(0xa000200, 0x11), (0xa000400, 0x12)] {
        has(
            &dts,
            &format!("virtio_mmio@{slot:x}"),
            &[
                "compatible = \"virtio,mmio\";",
                &format!("reg = <0x00 {slot:#x} 0x00 0x200>;"),
                &format!("interrupts = <0x00 {spi:#x} 0x04>;"),
                "dma-coherent;",
            ],
        );
    }
    let at = |slot: &str| dts.find(&format!("virtio_mmio@{slot} {{")).unwrap();
    assert!(
        at("a000000") < at("a000200") && at("a000200") < at("a000400"),
        "slot order:\n{dts}"
    );
    assert!(!dts.contains("virtio_mmio@a000600"), "{dts}");
    has(
        &dts,
        "chosen",
        &["bootargs = \"console=ttyAMA0 tessera.net=eth0,10.0.0.2/24\";"],
    );
}
