//! The tables of a board profile as written, with the spans of the values
//! that validation may have to point at.

use super::units::{Period, Size};
use crate::composition::Arch;
use crate::vm::GuestWidth;
use serde::Deserialize;
use std::ops::Range;
use std::path::PathBuf;
use toml::Spanned;

/// `[board]`: plain values, as xtask shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    pub name: String,
    pub description: String,
    pub arch: Arch,
    pub cpus: u32,
}

/// Where `[board]`'s checked values are in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardSpans {
    pub name: Range<usize>,
    pub cpus: Range<usize>,
}

/// `[board]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct BoardFile {
    name: Spanned<String>,
    description: String,
    arch: Arch,
    cpus: Spanned<u32>,
}

impl BoardFile {
    pub(crate) fn split(self) -> (Board, BoardSpans) {
        let spans = BoardSpans {
            name: self.name.span(),
            cpus: self.cpus.span(),
        };
        let board = Board {
            name: self.name.into_inner(),
            description: self.description,
            arch: self.arch,
            cpus: self.cpus.into_inner(),
        };
        (board, spans)
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RamSpec {
    pub base: Spanned<u64>,
    pub size: Spanned<Size>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MemorySpec {
    pub ram: RamSpec,
    pub load_address: Spanned<u64>,
    /// Size of the hypervisor's own region, from `load_address`.
    pub hypervisor: Spanned<Size>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UartSpec {
    pub driver: Spanned<String>,
    pub base: Spanned<u64>,
    /// Register stride is `1 << reg_shift` bytes; absent means 0.
    pub reg_shift: Option<Spanned<u32>>,
    /// Bytes per register access, 1 or 4 (ns16550 only); absent means 1.
    pub reg_io_width: Option<Spanned<u32>>,
}

/// `[disk]`: the hypervisor's own disk (optional; a board without it has
/// none).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DiskSpec {
    /// Driver component: "virtio-blk".
    pub driver: Spanned<String>,
    /// The device's register window (a virtio-mmio slot).
    pub base: Spanned<u64>,
    /// Its interrupt (INTID, an SPI); the driver polls for now.
    pub irq: Spanned<u32>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GicSpec {
    pub version: Spanned<u32>,
    pub distributor: Spanned<u64>,
    pub cpu_interface: Option<Spanned<u64>>,
    pub hyp_interface: Option<Spanned<u64>>,
    pub virtual_cpu_interface: Option<Spanned<u64>>,
    pub redistributor: Option<Spanned<u64>>,
    pub maintenance_irq: Spanned<u32>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TimerSpec {
    pub hyp_irq: Spanned<u32>,
    pub virt_irq: Spanned<u32>,
}

/// How `cargo xtask run` and the scenarios start QEMU for this board.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct QemuSpec {
    pub binary: String,
    pub machine: String,
    pub cpu: String,
    pub memory: String,
    #[serde(default)]
    pub extra: Vec<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ComposeSpec {
    pub scheduler: Spanned<String>,
    pub time_slice: Spanned<Period>,
    /// The ARINC 653 major frame, in order (scheduler `arinc653` only).
    pub windows: Option<Spanned<Vec<WindowSpec>>>,
    /// Gone (the console is not optional); refused with a message of its own.
    pub pv: Option<Spanned<toml::Value>>,
    /// Gone (the vGIC follows `[gic] version`); refused with a message of its own.
    pub vgic: Option<Spanned<toml::Value>>,
}

/// One window of the ARINC 653 major frame: `vm` owns the CPU for `length`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WindowSpec {
    pub vm: Spanned<String>,
    pub length: Spanned<Period>,
}

/// One `[[vm]]` table.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VmSpec {
    /// With `count`, a pattern: `{}` stands for the VM's index.
    pub name: Spanned<String>,
    /// How many like VMs this table makes (`super::count`); absent means one.
    pub count: Option<Spanned<u32>>,
    /// A Tessera guest crate; a VM runs either a guest or a Linux `kernel`.
    pub guest: Option<Spanned<String>>,
    /// A Linux kernel: "debian:arm64", "debian:armmp-lpae", or the path of
    /// an arm64 Image / ARM zImage.
    pub kernel: Option<Spanned<String>>,
    /// A Linux VM's initrd: "busybox" (one xtask builds) or a path.
    pub initrd: Option<Spanned<String>>,
    /// A Linux VM's kernel command line.
    pub bootargs: Option<Spanned<String>>,
    pub vcpus: Spanned<u32>,
    pub memory: Spanned<Size>,
    /// "aarch64" or "aarch32"; absent means the host's own width.
    pub arch: Option<Spanned<GuestWidth>>,
    /// Host-physical base; absent means "place it after the others".
    pub base: Option<Spanned<u64>>,
    pub cmdline: Option<Spanned<String>>,
    /// Relative share of CPU time, 1..=65535 (credit only; absent means 256).
    pub weight: Option<Spanned<u32>>,
    /// Most CPU time, in percent of one CPU, 1..=100 (credit only; absent means no cap).
    pub cap: Option<Spanned<u32>>,
    /// The physical CPU the VM's vCPU is pinned to (static and credit).
    pub cpu: Option<Spanned<u32>>,
    /// Volumes on the hypervisor's `[disk]` the VM sees as virtio-blk
    /// devices, in the order of the ABI's virtio-mmio slots.
    pub disks: Option<Spanned<Vec<VmDiskSpec>>>,
}

/// One of a VM's `disks`: `{ source = "lvm:vg0/web", read-only = true }`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VmDiskSpec {
    /// `part:N`, `gpt:NAME` or `lvm:VG/LV` (`disk_layout::Source`).
    pub source: Spanned<String>,
    /// Absent means writable.
    #[serde(default)]
    pub read_only: bool,
    /// The smallest volume the VM takes: a smaller one stops it at boot.
    pub min_size: Option<Spanned<Size>>,
}

/// One `[[channel]]` table: a one-way link, `writer` filling pages that
/// `reader` maps read-only. A two-way link is two channels.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ChannelSpec {
    /// 1 to 15 bytes of `[A-Za-z0-9_-]`: the guests find it by name.
    pub name: Spanned<String>,
    /// The VM that writes the data pages.
    pub writer: Spanned<String>,
    /// The VM that reads them.
    pub reader: Spanned<String>,
    /// The data pages' size: whole 4 KiB pages, at most 64 MiB.
    pub size: Spanned<Size>,
}

/// One `[[network]]` table: a virtual Ethernet segment between VMs of the
/// file, each VM on it given one virtio-net port.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NetworkSpec {
    /// 1 to 15 bytes of `[A-Za-z0-9_-]`.
    pub name: Spanned<String>,
    /// The VMs on it, at least two, each once; the order gives their
    /// addresses.
    pub vms: Spanned<Vec<Spanned<String>>>,
    /// IPv4 CIDR, e.g. "10.0.0.0/24"; absent means 10.0.<index>.0/24.
    pub subnet: Option<Spanned<String>>,
}

/// A list of VMs and the channels and networks between them, with the
/// file they came from (a board profile, or a scenario that replaces the board's VMs), so
/// errors point into that file.
#[derive(Debug, Clone)]
pub struct VmSource {
    pub path: PathBuf,
    pub text: String,
    /// Where the list is (the end of the file if it has no `[[vm]]`), for "no VMs".
    pub span: Range<usize>,
    pub vms: Vec<VmSpec>,
    /// The `[[channel]]`s written beside these VMs, in file order.
    pub channels: Vec<ChannelSpec>,
    /// The `[[network]]`s written beside these VMs, in file order.
    pub networks: Vec<NetworkSpec>,
}

impl VmSource {
    /// The list as written, counted `[[vm]]`s expanded (`super::count`).
    pub(crate) fn new(
        path: PathBuf,
        text: String,
        vm: Option<Spanned<Vec<VmSpec>>>,
        channel: Option<Spanned<Vec<ChannelSpec>>>,
        network: Option<Spanned<Vec<NetworkSpec>>>,
    ) -> Result<Self, super::ProfileError> {
        let (span, vms) = match vm {
            Some(vm) => (vm.span(), vm.into_inner()),
            None => (text.len()..text.len(), Vec::new()),
        };
        let src = super::error::Source {
            path: &path,
            text: &text,
        };
        let vms = super::count::expand(src, vms)?;
        Ok(VmSource {
            path,
            text,
            span,
            vms,
            channels: channel.map(Spanned::into_inner).unwrap_or_default(),
            networks: network.map(Spanned::into_inner).unwrap_or_default(),
        })
    }

    pub(crate) fn source(&self) -> super::error::Source<'_> {
        super::error::Source {
            path: &self.path,
            text: &self.text,
        }
    }
}
