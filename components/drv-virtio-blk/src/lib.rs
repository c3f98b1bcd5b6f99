//! virtio-blk over virtio-mmio as the hypervisor's own disk (QEMU `virt`:
//! `-device virtio-blk-device`), on the `virtio-drivers` crate, which speaks
//! both the legacy (version 1, QEMU 7.2's default) and the version 2
//! transport. Polled: the driver waits for each request's completion, which
//! is what a boot-time probe needs; no interrupt is taken.
//!
//! DMA memory (the virtqueue) comes from the hypervisor's heap: page-aligned,
//! zeroed, freed with the driver. The heap lies in the hypervisor's region,
//! which the EL2 (HYP) map identity-maps as normal read-write memory, so a
//! buffer's virtual address is its physical address and the device can
//! reach it and any request buffer directly, without bounce copies. A
//! static region would hold the queue's pages for ever and need a linker
//! section sized for the largest queue; the heap gives them back.
//! QEMU's virtio-mmio devices are DMA-coherent, so no cache maintenance is
//! done; a board with a non-coherent virtio device would need it in
//! `share`/`unshare`.
#![cfg_attr(not(test), no_std)]
// Unsafe only where virtio-drivers asks for it: the `Hal` (DMA memory and
// address translation) and the transport's register window (MMIO;
// DESIGN.md).
#![deny(unsafe_code)]

extern crate alloc;

use core::fmt;
use core::ptr::NonNull;
use hv::disk::{check_request, BlockDevice, DiskError, SECTOR};
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::transport::mmio::{MmioError, MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, DeviceTypeError, Transport};
use virtio_drivers::{BufferDirection, PhysAddr, PAGE_SIZE};

/// Bytes of a virtio-mmio slot: the header and the device's config space.
pub const WINDOW: usize = 0x200;

/// The hypervisor's side of DMA: heap pages, identity-mapped.
pub struct IdentityHal;

fn dma_layout(pages: usize) -> Option<core::alloc::Layout> {
    let size = pages.checked_mul(PAGE_SIZE)?;
    core::alloc::Layout::from_size_align(size, PAGE_SIZE).ok()
}

// SAFETY: `dma_alloc` returns page-aligned, zeroed memory from the global
// allocator that nothing else holds until `dma_dealloc` frees it; the
// hypervisor's map is the identity, so the physical address handed to the
// device is the virtual one, and `share` hands the buffer's own address
// (valid memory of the caller's, identity-mapped like all RAM).
#[allow(unsafe_code)]
unsafe impl virtio_drivers::Hal for IdentityHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(layout) = dma_layout(pages).filter(|l| l.size() > 0) else {
            // virtio-drivers turns a zero address into Error::DmaError.
            return (0, NonNull::dangling());
        };
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { alloc::alloc::alloc_zeroed(layout) };
        match NonNull::new(ptr) {
            Some(p) => (p.as_ptr() as usize as PhysAddr, p),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let Some(layout) = dma_layout(pages) else {
            return -1;
        };
        // SAFETY: the caller passes back what `dma_alloc` returned for
        // `pages` pages, allocated with this same layout.
        unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // Identity map; only the PCI transport asks.
        NonNull::new(paddr as usize as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as usize as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// Why the board's disk could not be driven.
#[derive(Debug)]
pub enum ProbeError {
    /// No virtio device in the slot (QEMU: no `-device` there), or not a
    /// virtio-mmio slot at all.
    NoDevice,
    /// A virtio device, but not a block device.
    NotBlock(DeviceType),
    /// The transport refused (bad magic, unknown version, ...).
    Transport(MmioError),
    /// The device did not initialise.
    Init(virtio_drivers::Error),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::NoDevice => f.write_str("no virtio device in the slot"),
            ProbeError::NotBlock(t) => {
                write!(f, "the virtio device is a {t:?}, not a block device")
            }
            ProbeError::Transport(e) => write!(f, "virtio-mmio transport: {e}"),
            ProbeError::Init(e) => write!(f, "virtio-blk initialisation failed: {e}"),
        }
    }
}

/// The board's virtio-blk disk.
pub struct VirtioBlk {
    blk: VirtIOBlk<IdentityHal, MmioTransport<'static>>,
    version: u32,
}

// SAFETY: the transport's pointer is the device's register window, which
// the EL2 (HYP) map shared by every CPU maps, and the queue's memory is the
// shared heap; nothing in either is tied to the CPU that probed it. The core
// owns the driver behind its lock, so one CPU at a time drives it.
#[allow(unsafe_code)]
unsafe impl Send for VirtioBlk {}

/// What `[disk] driver = "virtio-blk"` links.
pub type Component = VirtioBlk;

impl VirtioBlk {
    /// Probes the virtio-mmio slot at `base` and initialises the block
    /// device in it (features negotiated, one virtqueue, polled).
    ///
    /// # Safety
    ///
    /// `base` is a virtio-mmio slot's [`WINDOW`], mapped as device memory
    /// for as long as the driver lives, and no other code touches it.
    #[allow(unsafe_code)]
    pub unsafe fn at(base: usize) -> Result<Self, ProbeError> {
        let header = NonNull::new(base as *mut VirtIOHeader).ok_or(ProbeError::NoDevice)?;
        // SAFETY: the caller promises `base..base + WINDOW` is this device's
        // register window, mapped and used by nothing else.
        let transport = match unsafe { MmioTransport::new(header, WINDOW) } {
            Ok(t) => t,
            Err(MmioError::InvalidDeviceID(DeviceTypeError::InvalidDeviceType(0))) => {
                return Err(ProbeError::NoDevice)
            }
            Err(MmioError::BadMagic(_)) => return Err(ProbeError::NoDevice),
            Err(e) => return Err(ProbeError::Transport(e)),
        };
        if transport.device_type() != DeviceType::Block {
            return Err(ProbeError::NotBlock(transport.device_type()));
        }
        let version = u32::from(transport.version());
        let blk = VirtIOBlk::new(transport).map_err(ProbeError::Init)?;
        Ok(VirtioBlk { blk, version })
    }

    /// The virtio-mmio transport version the device speaks (1: legacy).
    pub fn transport_version(&self) -> u32 {
        self.version
    }
}

fn block_id(sector: u64) -> Result<usize, DiskError> {
    usize::try_from(sector).map_err(|_| DiskError::OutOfRange)
}

impl BlockDevice for VirtioBlk {
    fn sectors(&self) -> u64 {
        self.blk.capacity()
    }

    fn read_only(&self) -> bool {
        self.blk.readonly()
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        check_request(self.sectors(), sector, buf.len())?;
        debug_assert_eq!(SECTOR, virtio_drivers::device::blk::SECTOR_SIZE);
        self.blk
            .read_blocks(block_id(sector)?, buf)
            .map_err(|_| DiskError::Device)
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DiskError> {
        if self.read_only() {
            return Err(DiskError::ReadOnly);
        }
        check_request(self.sectors(), sector, buf.len())?;
        self.blk
            .write_blocks(block_id(sector)?, buf)
            .map_err(|_| DiskError::Device)
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        self.blk.flush().map_err(|_| DiskError::Device)
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use virtio_drivers::Hal;

    #[test]
    fn dma_pages_are_page_aligned_zeroed_and_identity_addressed() {
        let (paddr, vaddr) = IdentityHal::dma_alloc(3, BufferDirection::Both);
        assert_ne!(paddr, 0);
        assert_eq!(paddr, vaddr.as_ptr() as usize as PhysAddr);
        assert_eq!(paddr % PAGE_SIZE as PhysAddr, 0);
        // SAFETY: dma_alloc returned 3 pages at vaddr, which nothing else uses.
        let pages = unsafe { core::slice::from_raw_parts(vaddr.as_ptr(), 3 * PAGE_SIZE) };
        assert!(pages.iter().all(|&b| b == 0));
        // SAFETY: what dma_alloc returned, for the same page count, once.
        assert_eq!(unsafe { IdentityHal::dma_dealloc(paddr, vaddr, 3) }, 0);
    }

    #[test]
    fn zero_pages_are_refused() {
        assert_eq!(IdentityHal::dma_alloc(0, BufferDirection::Both).0, 0);
        assert_eq!(
            IdentityHal::dma_alloc(usize::MAX, BufferDirection::Both).0,
            0
        );
    }

    #[test]
    fn shared_buffers_are_their_own_address() {
        let mut buf = [0u8; 512];
        let ptr = NonNull::from(&mut buf[..]);
        // SAFETY: buf is valid and not otherwise used during the call.
        let paddr = unsafe { IdentityHal::share(ptr, BufferDirection::DeviceToDriver) };
        assert_eq!(paddr, buf.as_ptr() as usize as PhysAddr);
    }
}
