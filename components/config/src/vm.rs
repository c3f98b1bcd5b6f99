//! One VM and one window of the ARINC 653 frame, as the composer writes
//! them and the core keeps them: the composition carries these types, the
//! image's VM table is them in postcard, and the core holds each
//! [`VmConfig`] in its VM. Strings are `Cow`s: owned on the host, borrowed
//! from the image's table at boot.

use alloc::{borrow::Cow, vec::Vec};
use serde::{Deserialize, Serialize};

/// The weight of a VM whose profile gives none (credit).
pub const DEFAULT_WEIGHT: u32 = 256;

/// The register width a VM's guest runs with at EL1.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GuestWidth {
    /// 64-bit (AArch64): only on an AArch64 host.
    Aarch64,
    /// 32-bit (AArch32, ARMv7-A code in SVC mode): on either host.
    Aarch32,
}

impl GuestWidth {
    pub fn name(self) -> &'static str {
        match self {
            GuestWidth::Aarch64 => "aarch64",
            GuestWidth::Aarch32 => "aarch32",
        }
    }
}

/// A host-physical range.
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

/// One VM. No field is skipped when empty: postcard writes every one.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct VmConfig<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// The guest crate it runs (for messages).
    #[serde(borrow)]
    pub guest: Cow<'a, str>,
    #[serde(borrow)]
    pub cmdline: Cow<'a, str>,
    /// How many vCPUs; vCPU 0 starts at the image's entry, the others wait
    /// for the guest's PSCI CPU_ON.
    pub vcpus: u32,
    pub width: GuestWidth,
    /// Host-physical RAM (2 MiB aligned, a multiple of 2 MiB).
    pub ram: Region,
    /// Index of its guest image in the image's guest table (the
    /// composition's `guests`).
    pub image: u32,
    /// Relative share of CPU time (credit); [`DEFAULT_WEIGHT`] unless the
    /// profile says.
    pub weight: u32,
    /// Most CPU time, in percent of one CPU (credit); 0 = no cap.
    pub cap_percent: u32,
    /// The physical CPU its vCPU 0 is pinned to (static, credit), vCPU k
    /// to the k-th next; `None`: any.
    pub cpu: Option<u32>,
    /// Started by Linux's boot protocol, `image` being the kernel; `None`:
    /// a Tessera guest, `image` loaded at the RAM's base with its start
    /// info.
    pub linux: Option<LinuxBoot>,
    /// Its emulated devices besides the virtual GIC.
    #[serde(borrow)]
    pub devices: Vec<DeviceConfig<'a>>,
    /// The channels it is a side of (`[[channel]]`), in profile order: the
    /// index `CHANNEL_NOTIFY` takes.
    #[serde(borrow)]
    pub channels: Vec<ChannelEnd<'a>>,
}

/// One side of an inter-VM channel, as the composer placed it. Both sides
/// of a channel see it at the same guest-physical addresses.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ChannelEnd<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// This side writes the data pages; the other only reads them.
    pub writer: bool,
    /// The data pages: host-physical, and where the guest sees them.
    pub data: Region,
    pub data_ipa: u64,
    /// The page holding the channel's `abi::ChannelState` (read-only to
    /// both sides): host-physical, and where the guest sees it.
    pub state: u64,
    pub state_ipa: u64,
    /// The interrupt this side gets (an SPI INTID).
    pub intid: u32,
    /// The other side's VM (its index in the VM table).
    pub peer: u32,
}

/// Where Linux's boot protocol puts things in a VM's RAM (offsets from its
/// guest-physical base), and so what vCPU 0 starts with: at the kernel,
/// with the DTB's address in x0 (arm64) or r2 (arm, r0 = 0, r1 = ~0).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct LinuxBoot {
    pub kernel_offset: u64,
    pub dtb: Blob,
    pub initrd: Option<Blob>,
}

/// One of the image's guest-table entries, copied into a VM's RAM at
/// `offset` from its base.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Blob {
    pub image: u32,
    pub offset: u64,
}

/// An emulated device of a VM: which component (its row name in the
/// component table), its guest-physical window and its interrupt.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct DeviceConfig<'a> {
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    pub base: u64,
    pub size: u64,
    pub intid: u32,
    /// For a virtio-blk device: the volume it serves.
    #[serde(borrow)]
    pub disk: Option<DiskConfig<'a>>,
    /// For a virtio-net device: its network and address.
    pub net: Option<NetConfig>,
}

/// A VM's port on a `[[network]]`: the network (its index in the
/// profile) and the MAC address the composer gave the port.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct NetConfig {
    pub network: u32,
    pub mac: [u8; 6],
}

/// A VM's disk: a volume on the hypervisor's own disk (`[disk]`), resolved
/// at boot.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct DiskConfig<'a> {
    /// `part:N`, `gpt:NAME` or `lvm:VG/LV` (`disk_layout::Source`).
    #[serde(borrow)]
    pub source: Cow<'a, str>,
    pub read_only: bool,
    /// The smallest volume the VM takes (`min-size`); 0: any.
    pub min_sectors: u64,
}

impl VmConfig<'_> {
    /// The same VM, borrowing nothing.
    pub fn into_owned(self) -> VmConfig<'static> {
        VmConfig {
            name: Cow::Owned(self.name.into_owned()),
            guest: Cow::Owned(self.guest.into_owned()),
            cmdline: Cow::Owned(self.cmdline.into_owned()),
            vcpus: self.vcpus,
            width: self.width,
            ram: self.ram,
            image: self.image,
            weight: self.weight,
            cap_percent: self.cap_percent,
            cpu: self.cpu,
            linux: self.linux,
            devices: self
                .devices
                .into_iter()
                .map(|d| DeviceConfig {
                    kind: Cow::Owned(d.kind.into_owned()),
                    disk: d.disk.map(|disk| DiskConfig {
                        source: Cow::Owned(disk.source.into_owned()),
                        read_only: disk.read_only,
                        min_sectors: disk.min_sectors,
                    }),
                    ..d
                })
                .collect(),
            channels: self
                .channels
                .into_iter()
                .map(|c| ChannelEnd {
                    name: Cow::Owned(c.name.into_owned()),
                    ..c
                })
                .collect(),
        }
    }
}

/// One window of the ARINC 653 major frame: VM `vm` (an index into the
/// VMs) owns the CPU for `length_us` microseconds.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct TimeWindow {
    pub vm: u32,
    pub length_us: u64,
}
