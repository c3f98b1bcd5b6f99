//! What Tessera's emulated virtio devices (virtio-blk, virtio-net) share:
//! the virtio-mmio version 2 register map (virtio 1.2 §4.2.2), the status
//! and feature bits every device type uses, and the device side of the
//! split virtqueue ([`queue`]), where every guest value is copied out once
//! and checked, and the transport's state ([`transport`]) behind the
//! registers.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "testing")]
extern crate std;

pub mod queue;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transport;

pub use queue::{ChainError, QueueConfig, QUEUE_NUM_MAX};
pub use transport::{read_config, Event, Transport};

/// The size of a device's MMIO window (one QEMU virt virtio-mmio slot).
pub const WINDOW: u64 = 0x200;

// virtio-mmio registers (virtio 1.2 §4.2.2).
pub const MAGIC_VALUE: u64 = 0x000;
pub const VERSION: u64 = 0x004;
pub const DEVICE_ID: u64 = 0x008;
pub const VENDOR_ID: u64 = 0x00c;
pub const DEVICE_FEATURES: u64 = 0x010;
pub const DEVICE_FEATURES_SEL: u64 = 0x014;
pub const DRIVER_FEATURES: u64 = 0x020;
pub const DRIVER_FEATURES_SEL: u64 = 0x024;
pub const QUEUE_SEL: u64 = 0x030;
pub const QUEUE_NUM_MAX_REG: u64 = 0x034;
pub const QUEUE_NUM: u64 = 0x038;
pub const QUEUE_READY: u64 = 0x044;
pub const QUEUE_NOTIFY: u64 = 0x050;
pub const INTERRUPT_STATUS: u64 = 0x060;
pub const INTERRUPT_ACK: u64 = 0x064;
pub const STATUS: u64 = 0x070;
pub const QUEUE_DESC_LOW: u64 = 0x080;
pub const QUEUE_DESC_HIGH: u64 = 0x084;
pub const QUEUE_DRIVER_LOW: u64 = 0x090;
pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
pub const CONFIG_GENERATION: u64 = 0x0fc;
pub const CONFIG: u64 = 0x100;

pub const MAGIC: u32 = 0x7472_6976; // "virt"
/// "Tess", as QEMU's is "QEMU".
pub const VENDOR: u32 = u32::from_le_bytes(*b"Tess");

// Device status bits (virtio 1.2 §2.1).
pub const S_ACKNOWLEDGE: u32 = 1;
pub const S_DRIVER: u32 = 2;
pub const S_DRIVER_OK: u32 = 4;
pub const S_FEATURES_OK: u32 = 8;
pub const S_NEEDS_RESET: u32 = 0x40;
pub const S_FAILED: u32 = 0x80;

// InterruptStatus bits.
pub const INT_USED: u32 = 1;
pub const INT_CONFIG: u32 = 2;

/// The one feature bit every device here offers: a version 2 transport
/// has no legacy interface.
pub const F_VERSION_1: u64 = 1 << 32;
