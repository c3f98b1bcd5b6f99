//! The Tessera guest ABI: the contract between the hypervisor and every guest.
//!
//! It only grows. A guest built against ABI 1.x runs on every later Tessera;
//! `abi.manifest` beside this file holds every published item and a test
//! fails if one of them changes or disappears.
//!
//! # Calling convention (AArch64 guests)
//! Hypercalls follow the Arm SMC Calling Convention (DEN 0028) over `HVC #0`,
//! in the vendor-specific hypervisor service range (OEN 6, fast call, SMC64):
//! - `x0`: function ID (one of the `HC_*` constants);
//! - `x1`..`x5`: arguments;
//! - on return `x0` holds the result: `>= 0` is success (a value where the call
//!   defines one), `< 0` is one of the [`Error`] codes; `x1`..`x17` are
//!   preserved, as are all other registers.
//!
//! Using SMCCC IDs keeps Tessera's calls out of the way of the standard
//! services (PSCI is `0x84xx_xxxx`/`0xC4xx_xxxx`), which guests may also call.
//!
//! # AArch32 guests (ABI 1.2)
//! A 32-bit guest calls `HVC #0` with the SMC32 form of each ID ([`smc32`],
//! the `HC32_*` constants): `r0` function ID, `r1`..`r3` arguments, result
//! in `r0` (negative results sign-extend from 32 bits). An SMC64 ID from a
//! 32-bit guest is [`Error::NotSupported`], as SMCCC says. AArch64 guests may
//! use either form; with the SMC32 form only the low 32 bits of the
//! arguments count.
//!
//! # Guest entry
//! A guest image is a flat binary loaded at [`GUEST_RAM_BASE`] and entered at
//! its first byte at EL1 with the MMU off, and `x0` = the guest-physical
//! address of a [`StartInfo`] inside the guest's RAM (its last 4 KiB page).
//! A 32-bit guest is entered in SVC mode, ARM state, IRQ/FIQ/aborts masked,
//! with the address in `r0`.
#![no_std]

pub mod psci;

/// ABI major version: changes only if the ABI broke, which it must not.
pub const ABI_MAJOR: u16 = 1;
/// ABI minor version: grows with every addition.
pub const ABI_MINOR: u16 = 3;

/// `ABI_VERSION`: returns `(major << 16) | minor`. Also the cheapest call,
/// used to measure the hypercall round trip.
pub const HC_ABI_VERSION: u64 = 0xC600_0000;
/// `CONSOLE_WRITE(ipa, len)`: writes `len` bytes at guest-physical `ipa` to
/// the console, prefixed by the VM's name at the start of each line. Returns
/// the number of bytes written. At most [`CONSOLE_WRITE_MAX`] bytes a call.
pub const HC_CONSOLE_WRITE: u64 = 0xC600_0001;
/// `YIELD`: gives up the rest of this time slice. Returns 0.
pub const HC_YIELD: u64 = 0xC600_0002;
/// `VM_EXIT(code)`: stops the whole VM. Does not return.
pub const HC_VM_EXIT: u64 = 0xC600_0003;

/// `CHANNEL_NOTIFY(index)` (ABI 1.3): makes the interrupt of the other side
/// of the caller's channel `index` (its place in [`ChannelTable`]) pending
/// and wakes that VM. Returns 0. A notification still pending is not queued
/// again. [`Error::InvalidParameter`] if the caller has no channel `index`.
pub const HC_CHANNEL_NOTIFY: u64 = 0xC600_0004;

/// SMCCC function ID bit 30: set for the SMC64 calling convention (ABI 1.2).
pub const SMC64: u64 = 0x4000_0000;

/// The SMC32 form of a hypercall ID, what 32-bit guests pass (ABI 1.2).
pub const fn smc32(id: u64) -> u64 {
    id & !SMC64
}

/// `ABI_VERSION` for 32-bit guests (ABI 1.2).
pub const HC32_ABI_VERSION: u64 = smc32(HC_ABI_VERSION);
/// `CONSOLE_WRITE` for 32-bit guests (ABI 1.2).
pub const HC32_CONSOLE_WRITE: u64 = smc32(HC_CONSOLE_WRITE);
/// `YIELD` for 32-bit guests (ABI 1.2).
pub const HC32_YIELD: u64 = smc32(HC_YIELD);
/// `VM_EXIT` for 32-bit guests (ABI 1.2).
pub const HC32_VM_EXIT: u64 = smc32(HC_VM_EXIT);

/// `CHANNEL_NOTIFY` for 32-bit guests (ABI 1.3).
pub const HC32_CHANNEL_NOTIFY: u64 = smc32(HC_CHANNEL_NOTIFY);

/// Most bytes one `CONSOLE_WRITE` takes.
pub const CONSOLE_WRITE_MAX: u64 = 4096;

/// Where every guest's RAM starts in its own (guest-physical) address space.
pub const GUEST_RAM_BASE: u64 = 0x4000_0000;

/// The guest's GIC distributor (emulated), as on QEMU `virt` (ABI 1.1).
pub const GUEST_GICD_BASE: u64 = 0x0800_0000;
/// The guest's GICv2 CPU interface (the hardware's virtual CPU interface),
/// as on QEMU `virt` (ABI 1.1).
pub const GUEST_GICC_BASE: u64 = 0x0801_0000;
/// The guest's GICv3 redistributors, one 128 KiB frame per vCPU, as on
/// QEMU `virt` (ABI 1.1).
pub const GUEST_GICR_BASE: u64 = 0x080a_0000;
/// Sizes of those windows (as in 1.1; published in the 1.2 tree): the
/// distributor, the GICv2 CPU interface, and one vCPU's redistributor.
pub const GUEST_GICD_SIZE: u64 = 0x1_0000;
pub const GUEST_GICC_SIZE: u64 = 0x2000;
pub const GUEST_GICR_STRIDE: u64 = 0x2_0000;
/// INTID of the virtual timer (CNTV) interrupt a guest gets (ABI 1.1).
pub const GUEST_VTIMER_INTID: u32 = 27;

/// Where a VM's emulated UART is (an SBSA-subset PL011, for guests that
/// drive a UART, e.g. Linux), and its interrupt (SPI 1), as on QEMU `virt`.
pub const GUEST_UART_BASE: u64 = 0x0900_0000;
pub const GUEST_UART_SIZE: u64 = 0x1000;
pub const GUEST_UART_INTID: u32 = 33;

/// Where a VM's virtio-mmio devices are (its disks, in profile order):
/// device n's window is at `GUEST_VIRTIO_BASE + n * GUEST_VIRTIO_SIZE` and
/// its interrupt is `GUEST_VIRTIO_INTID + n` (SPI 16 + n), as on QEMU
/// `virt`; at most [`GUEST_VIRTIO_COUNT`].
pub const GUEST_VIRTIO_BASE: u64 = 0x0a00_0000;
pub const GUEST_VIRTIO_SIZE: u64 = 0x200;
pub const GUEST_VIRTIO_INTID: u32 = 48;
pub const GUEST_VIRTIO_COUNT: u64 = 8;

/// Negative results of a hypercall, as in SMCCC.
#[repr(i64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Unknown function ID.
    NotSupported = -1,
    /// An argument is out of range.
    InvalidParameter = -2,
    /// A guest address is outside the guest's RAM.
    InvalidAddress = -3,
}

impl Error {
    /// The error a raw `x0` value stands for, if it is one.
    pub const fn from_raw(raw: i64) -> Option<Error> {
        match raw {
            -1 => Some(Error::NotSupported),
            -2 => Some(Error::InvalidParameter),
            -3 => Some(Error::InvalidAddress),
            _ => None,
        }
    }
}

/// `StartInfo::magic`: "TSSR".
pub const START_INFO_MAGIC: u32 = 0x5453_5352;
/// Length of [`StartInfo::name`] (NUL-padded, not always NUL-terminated).
pub const VM_NAME_LEN: usize = 32;
/// Length of [`StartInfo::cmdline`] (NUL-padded).
pub const CMDLINE_LEN: usize = 128;

/// What a guest is told at entry (its address is in `x0`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartInfo {
    /// [`START_INFO_MAGIC`].
    pub magic: u32,
    /// [`ABI_MAJOR`] of the hypervisor.
    pub abi_major: u16,
    /// [`ABI_MINOR`] of the hypervisor.
    pub abi_minor: u16,
    /// The VM's index in the image, from 0.
    pub vm_id: u32,
    /// Number of vCPUs the VM has.
    pub vcpus: u32,
    /// Guest-physical base of the VM's RAM ([`GUEST_RAM_BASE`]).
    pub ram_base: u64,
    /// Size of the VM's RAM in bytes.
    pub ram_size: u64,
    /// The VM's name from the board profile.
    pub name: [u8; VM_NAME_LEN],
    /// The VM's command line from the board profile.
    pub cmdline: [u8; CMDLINE_LEN],
}

impl StartInfo {
    /// The VM's name as text.
    pub fn name(&self) -> &str {
        nul_padded_str(&self.name)
    }

    /// The VM's command line as text.
    pub fn cmdline(&self) -> &str {
        nul_padded_str(&self.cmdline)
    }
}

/// Where the [`ChannelTable`] is in the start-info page (ABI 1.3): right
/// after the [`StartInfo`]. A hypervisor older than 1.3 leaves it zero.
pub const START_INFO_CHANNELS_OFFSET: usize = core::mem::size_of::<StartInfo>();
/// Most channels a VM is a side of.
pub const CHANNELS_MAX: usize = 16;
/// Length of [`ChannelInfo::name`] (NUL-padded).
pub const CHANNEL_NAME_LEN: usize = 16;
/// [`ChannelInfo::flags`]: this VM writes the channel (else it reads it).
pub const CHANNEL_WRITER: u32 = 1;

/// The VM's channels (ABI 1.3), in the order the board profile declares
/// them; `CHANNEL_NOTIFY(i)` notifies the other side of `channels[i]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelTable {
    pub count: u32,
    pub reserved: u32,
    pub channels: [ChannelInfo; CHANNELS_MAX],
}

/// One channel as a side sees it: its pages (read-write for the writer,
/// read-only for the reader, at the same guest-physical address in both
/// VMs), its [`ChannelState`] page (read-only for both), and the interrupt
/// this side gets when the other notifies it or stops.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel's name from the profile.
    pub name: [u8; CHANNEL_NAME_LEN],
    /// Guest-physical base and size of its data pages.
    pub base: u64,
    pub size: u64,
    /// Guest-physical address of its [`ChannelState`].
    pub state: u64,
    /// The INTID (an SPI) this side's notifications arrive on.
    pub intid: u32,
    /// [`CHANNEL_WRITER`] or 0.
    pub flags: u32,
}

impl ChannelTable {
    /// No channels: what a VM without any is told.
    pub const EMPTY: ChannelTable = ChannelTable {
        count: 0,
        reserved: 0,
        channels: [ChannelInfo::EMPTY; CHANNELS_MAX],
    };

    /// The channels there are (at most [`CHANNELS_MAX`], whatever `count`
    /// says).
    pub fn channels(&self) -> &[ChannelInfo] {
        &self.channels[..(self.count as usize).min(CHANNELS_MAX)]
    }
}

impl ChannelInfo {
    pub const EMPTY: ChannelInfo = ChannelInfo {
        name: [0; CHANNEL_NAME_LEN],
        base: 0,
        size: 0,
        state: 0,
        intid: 0,
        flags: 0,
    };

    pub fn name(&self) -> &str {
        nul_padded_str(&self.name)
    }

    pub fn is_writer(&self) -> bool {
        self.flags & CHANNEL_WRITER != 0
    }
}

/// What the hypervisor says of a channel's two sides, in a page both map
/// read-only. When a side's VM stops or resets, its word becomes
/// [`CHANNEL_SIDE_STOPPED`] and its generation grows (the writer's data
/// pages are zeroed first), and the other side's interrupt is raised.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelState {
    pub writer: u32,
    pub writer_generation: u32,
    pub reader: u32,
    pub reader_generation: u32,
}

/// [`ChannelState`]: the side's VM runs.
pub const CHANNEL_SIDE_RUNNING: u32 = 1;
/// [`ChannelState`]: the side's VM stopped (or is being reset; it runs
/// again with a higher generation).
pub const CHANNEL_SIDE_STOPPED: u32 = 2;

fn nul_padded_str(bytes: &[u8]) -> &str {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..len]).unwrap_or("")
}

/// Every published item, one per line, in the form `abi.manifest` holds.
pub fn manifest() -> [(&'static str, u64); 42] {
    [
        ("ABI_MAJOR", ABI_MAJOR as u64),
        ("HC_ABI_VERSION", HC_ABI_VERSION),
        ("HC_CONSOLE_WRITE", HC_CONSOLE_WRITE),
        ("HC_YIELD", HC_YIELD),
        ("HC_VM_EXIT", HC_VM_EXIT),
        ("CONSOLE_WRITE_MAX", CONSOLE_WRITE_MAX),
        ("GUEST_RAM_BASE", GUEST_RAM_BASE),
        ("GUEST_GICD_BASE", GUEST_GICD_BASE),
        ("GUEST_GICC_BASE", GUEST_GICC_BASE),
        ("GUEST_GICR_BASE", GUEST_GICR_BASE),
        ("GUEST_VTIMER_INTID", GUEST_VTIMER_INTID as u64),
        ("ERROR_NOT_SUPPORTED", Error::NotSupported as i64 as u64),
        (
            "ERROR_INVALID_PARAMETER",
            Error::InvalidParameter as i64 as u64,
        ),
        ("ERROR_INVALID_ADDRESS", Error::InvalidAddress as i64 as u64),
        ("START_INFO_MAGIC", START_INFO_MAGIC as u64),
        ("START_INFO_SIZE", core::mem::size_of::<StartInfo>() as u64),
        (
            "START_INFO_OFFSET_NAME",
            core::mem::offset_of!(StartInfo, name) as u64,
        ),
        (
            "START_INFO_OFFSET_CMDLINE",
            core::mem::offset_of!(StartInfo, cmdline) as u64,
        ),
        ("SMC64", SMC64),
        ("HC32_ABI_VERSION", HC32_ABI_VERSION),
        ("HC32_CONSOLE_WRITE", HC32_CONSOLE_WRITE),
        ("HC32_YIELD", HC32_YIELD),
        ("HC32_VM_EXIT", HC32_VM_EXIT),
        ("GUEST_GICD_SIZE", GUEST_GICD_SIZE),
        ("GUEST_GICC_SIZE", GUEST_GICC_SIZE),
        ("GUEST_GICR_STRIDE", GUEST_GICR_STRIDE),
        ("GUEST_UART_BASE", GUEST_UART_BASE),
        ("GUEST_UART_SIZE", GUEST_UART_SIZE),
        ("GUEST_UART_INTID", GUEST_UART_INTID as u64),
        ("GUEST_VIRTIO_BASE", GUEST_VIRTIO_BASE),
        ("GUEST_VIRTIO_SIZE", GUEST_VIRTIO_SIZE),
        ("GUEST_VIRTIO_INTID", GUEST_VIRTIO_INTID as u64),
        ("GUEST_VIRTIO_COUNT", GUEST_VIRTIO_COUNT),
        ("HC_CHANNEL_NOTIFY", HC_CHANNEL_NOTIFY),
        ("HC32_CHANNEL_NOTIFY", HC32_CHANNEL_NOTIFY),
        (
            "START_INFO_CHANNELS_OFFSET",
            START_INFO_CHANNELS_OFFSET as u64,
        ),
        (
            "CHANNEL_TABLE_SIZE",
            core::mem::size_of::<ChannelTable>() as u64,
        ),
        (
            "CHANNEL_INFO_SIZE",
            core::mem::size_of::<ChannelInfo>() as u64,
        ),
        ("CHANNEL_WRITER", CHANNEL_WRITER as u64),
        (
            "CHANNEL_STATE_SIZE",
            core::mem::size_of::<ChannelState>() as u64,
        ),
        ("CHANNEL_SIDE_RUNNING", CHANNEL_SIDE_RUNNING as u64),
        ("CHANNEL_SIDE_STOPPED", CHANNEL_SIDE_STOPPED as u64),
    ]
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{format, string::String};

    /// The committed manifest may only grow: every line in it must still be
    /// produced, unchanged, by this crate.
    #[test]
    fn abi_matches_committed_manifest() {
        let committed = include_str!("../abi.manifest");
        let current: std::vec::Vec<String> = manifest()
            .iter()
            .map(|(name, value)| format!("{name} = {value:#x}"))
            .collect();
        let mut checked = 0;
        for line in committed.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            assert!(
                current.iter().any(|c| c == line),
                "ABI item changed or removed: `{line}` (now: {current:#?})"
            );
            checked += 1;
        }
        assert!(checked >= 14, "manifest lists only {checked} items");
    }

    #[test]
    fn error_codes_round_trip() {
        for e in [
            Error::NotSupported,
            Error::InvalidParameter,
            Error::InvalidAddress,
        ] {
            assert_eq!(Error::from_raw(e as i64), Some(e));
        }
        assert_eq!(Error::from_raw(0), None);
    }

    #[test]
    fn start_info_text_fields() {
        let mut info = StartInfo {
            magic: START_INFO_MAGIC,
            abi_major: ABI_MAJOR,
            abi_minor: ABI_MINOR,
            vm_id: 0,
            vcpus: 1,
            ram_base: GUEST_RAM_BASE,
            ram_size: 0x100_0000,
            name: [0; VM_NAME_LEN],
            cmdline: [0; CMDLINE_LEN],
        };
        info.name[..5].copy_from_slice(b"hello");
        assert_eq!(info.name(), "hello");
        assert_eq!(info.cmdline(), "");
        info.name = [b'x'; VM_NAME_LEN];
        assert_eq!(info.name().len(), VM_NAME_LEN);
    }
}
