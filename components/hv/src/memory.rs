//! Guest RAM as the hypervisor sees it: one contiguous host-physical region
//! per VM, mapped at the same guest-physical base for every VM.
//!
//! The hypervisor holds no Rust reference into guest RAM: sibling vCPUs
//! write it from other CPUs at any time. It names a checked range with a
//! [`GuestSlice`] (in the manner of Hubris' `USlice`) and copies through
//! the platform's [`GuestMemory`], the one audited place that touches the
//! bytes, so a guest value is read once into hypervisor memory and checked
//! there (no double fetch).

use abi::{ChannelInfo, ChannelTable, StartInfo, START_INFO_CHANNELS_OFFSET};
use core::mem::{offset_of, size_of};

/// A range of one VM's RAM, checked to lie inside it: host-physical address
/// and length. Only [`GuestRam::slice`] and [`GuestRam::all`] make one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestSlice {
    pa: u64,
    len: u64,
}

impl GuestSlice {
    pub fn pa(&self) -> u64 {
        self.pa
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How the hypervisor reads and writes guest RAM; the platform implements
/// it with accesses that stay defined while a guest writes the same bytes.
pub trait GuestMemory {
    /// Copies `from` into `buf` (of `from.len()` bytes), reading each byte
    /// once.
    fn read_guest(&self, from: GuestSlice, buf: &mut [u8]);

    /// Copies `bytes` (of `to.len()` bytes) into guest RAM.
    fn write_guest(&mut self, to: GuestSlice, bytes: &[u8]);

    /// Copies `bytes` into guest RAM that no vCPU can reach (an image at
    /// boot or reset: stage 2 does not map it yet, or none of the VM's
    /// vCPUs runs), so a platform may copy with plain stores.
    fn load_guest(&mut self, to: GuestSlice, bytes: &[u8]) {
        self.write_guest(to, bytes)
    }

    /// Sets every byte of `to` to zero and makes the zeroes visible to a
    /// guest with its MMU and caches off, as
    /// [`Platform::sync_guest_memory`](crate::platform::Platform::sync_guest_memory)
    /// does (the boards clean each line as they write it: cleaning the
    /// range again after would walk it twice). The core calls it only while
    /// no vCPU of that VM runs (it is being built, or reset once quiet), so
    /// a platform may clear the range with plain stores.
    fn zero_guest(&mut self, to: GuestSlice);
}

/// A borrowed memory is one too, so `&mut dyn GuestMemory` goes where an
/// `impl GuestMemory` is asked for.
impl<M: GuestMemory + ?Sized> GuestMemory for &mut M {
    fn read_guest(&self, from: GuestSlice, buf: &mut [u8]) {
        (**self).read_guest(from, buf)
    }
    fn write_guest(&mut self, to: GuestSlice, bytes: &[u8]) {
        (**self).write_guest(to, bytes)
    }
    fn load_guest(&mut self, to: GuestSlice, bytes: &[u8]) {
        (**self).load_guest(to, bytes)
    }
    fn zero_guest(&mut self, to: GuestSlice) {
        (**self).zero_guest(to)
    }
}

/// A VM's RAM: where it is, not a mapping of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRam {
    /// Guest-physical base ([`abi::GUEST_RAM_BASE`]).
    pub ipa_base: u64,
    /// Host-physical base.
    pub pa_base: u64,
    size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The guest range is not (entirely) inside the VM's RAM.
    OutOfRange { ipa: u64, len: u64 },
    /// The image does not fit (with the start-info page).
    TooBig { image: usize, ram: usize },
}

impl GuestRam {
    pub fn new(ipa_base: u64, pa_base: u64, size: u64) -> Self {
        GuestRam {
            ipa_base,
            pa_base,
            size,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Guest-physical `ipa..ipa+len`, if all of it is inside this RAM.
    pub fn slice(&self, ipa: u64, len: u64) -> Result<GuestSlice, MemoryError> {
        let out = MemoryError::OutOfRange { ipa, len };
        let start = ipa.checked_sub(self.ipa_base).ok_or(out)?;
        let end = start.checked_add(len).ok_or(out)?;
        if end > self.size {
            return Err(out);
        }
        Ok(GuestSlice {
            pa: self.pa_base + start,
            len,
        })
    }

    /// The whole RAM.
    pub fn all(&self) -> GuestSlice {
        GuestSlice {
            pa: self.pa_base,
            len: self.size,
        }
    }

    /// Guest-physical address of the start-info page (the last 4 KiB).
    pub fn start_info_ipa(&self) -> u64 {
        self.ipa_base + self.size - START_INFO_PAGE
    }

    /// Writes a Tessera guest's start info and its channel table (ABI
    /// 1.3) into the RAM's last page, where no vCPU can reach it (as
    /// [`GuestMemory::load_guest`]: at boot or reset, with the images);
    /// returns the slice written.
    pub fn write_start_info(
        &self,
        memory: &mut impl GuestMemory,
        info: &StartInfo,
        channels: &ChannelTable,
    ) -> Result<GuestSlice, MemoryError> {
        let mut page = [0u8; START_INFO_CHANNELS_OFFSET + size_of::<ChannelTable>()];
        write_start_info(&mut page, info);
        write_channel_table(&mut page[START_INFO_CHANNELS_OFFSET..], channels);
        let at = self.slice(self.start_info_ipa(), page.len() as u64)?;
        memory.load_guest(at, &page);
        Ok(at)
    }

    /// The `n`-th `chunk`-byte piece of the RAM (the last may be shorter),
    /// if there is one.
    pub fn chunk(&self, n: u64, chunk: u64) -> Option<GuestSlice> {
        let start = n.checked_mul(chunk).filter(|&s| s < self.size)?;
        Some(GuestSlice {
            pa: self.pa_base + start,
            len: chunk.min(self.size - start),
        })
    }
}

pub const START_INFO_PAGE: u64 = 4096;

/// Lays `info` out as `#[repr(C)]` little-endian bytes, field by field, so no
/// `unsafe` transmute is needed.
fn put(out: &mut [u8], offset: usize, bytes: &[u8]) {
    out[offset..offset + bytes.len()].copy_from_slice(bytes);
}

/// The channel table, as [`write_start_info`] lays out the start info.
fn write_channel_table(out: &mut [u8], table: &ChannelTable) {
    put(
        out,
        offset_of!(ChannelTable, count),
        &table.count.to_le_bytes(),
    );
    for (i, channel) in table.channels.iter().enumerate() {
        let at = offset_of!(ChannelTable, channels) + i * size_of::<ChannelInfo>();
        let out = &mut out[at..at + size_of::<ChannelInfo>()];
        put(out, offset_of!(ChannelInfo, name), &channel.name);
        put(
            out,
            offset_of!(ChannelInfo, base),
            &channel.base.to_le_bytes(),
        );
        put(
            out,
            offset_of!(ChannelInfo, size),
            &channel.size.to_le_bytes(),
        );
        put(
            out,
            offset_of!(ChannelInfo, state),
            &channel.state.to_le_bytes(),
        );
        put(
            out,
            offset_of!(ChannelInfo, intid),
            &channel.intid.to_le_bytes(),
        );
        put(
            out,
            offset_of!(ChannelInfo, flags),
            &channel.flags.to_le_bytes(),
        );
    }
}

fn write_start_info(out: &mut [u8], info: &StartInfo) {
    put(out, offset_of!(StartInfo, magic), &info.magic.to_le_bytes());
    put(
        out,
        offset_of!(StartInfo, abi_major),
        &info.abi_major.to_le_bytes(),
    );
    put(
        out,
        offset_of!(StartInfo, abi_minor),
        &info.abi_minor.to_le_bytes(),
    );
    put(out, offset_of!(StartInfo, vm_id), &info.vm_id.to_le_bytes());
    put(out, offset_of!(StartInfo, vcpus), &info.vcpus.to_le_bytes());
    put(
        out,
        offset_of!(StartInfo, ram_base),
        &info.ram_base.to_le_bytes(),
    );
    put(
        out,
        offset_of!(StartInfo, ram_size),
        &info.ram_size.to_le_bytes(),
    );
    put(out, offset_of!(StartInfo, name), &info.name);
    put(out, offset_of!(StartInfo, cmdline), &info.cmdline);
}

/// Guest RAM for host tests: sparse 4 KiB pages, zero until written.
#[cfg(any(test, feature = "testing"))]
#[derive(Default)]
pub struct SparseRam(std::collections::BTreeMap<u64, std::boxed::Box<[u8; 4096]>>);

#[cfg(any(test, feature = "testing"))]
impl GuestMemory for SparseRam {
    fn read_guest(&self, from: GuestSlice, buf: &mut [u8]) {
        assert_eq!(buf.len() as u64, from.len());
        for (i, byte) in buf.iter_mut().enumerate() {
            let pa = from.pa() + i as u64;
            *byte = self
                .0
                .get(&(pa >> 12))
                .map_or(0, |page| page[(pa & 0xfff) as usize]);
        }
    }

    fn write_guest(&mut self, to: GuestSlice, bytes: &[u8]) {
        assert_eq!(bytes.len() as u64, to.len());
        for (i, &byte) in bytes.iter().enumerate() {
            let pa = to.pa() + i as u64;
            let page = self
                .0
                .entry(pa >> 12)
                .or_insert_with(|| std::boxed::Box::new([0; 4096]));
            page[(pa & 0xfff) as usize] = byte;
        }
    }

    fn zero_guest(&mut self, to: GuestSlice) {
        let pages = to.pa() >> 12..(to.pa() + to.len()).div_ceil(4096);
        for page in pages.clone() {
            let first = (page << 12).max(to.pa());
            let last = ((page + 1) << 12).min(to.pa() + to.len());
            if let Some(bytes) = self.0.get_mut(&page) {
                bytes[(first & 0xfff) as usize..][..(last - first) as usize].fill(0);
            }
        }
    }
}

/// Where the whole `unit`s of `address..end` start and stop: `(body,
/// body_end)`, with the unaligned head `address..body` and tail
/// `body_end..end` left for byte stores. Both arch layers' cache-line
/// zeroing splits a range this way.
pub fn aligned_body(address: usize, end: usize, unit: usize) -> (usize, usize) {
    let body = address.next_multiple_of(unit).min(end);
    (body, body.max(end / unit * unit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::{CMDLINE_LEN, GUEST_RAM_BASE, START_INFO_MAGIC, VM_NAME_LEN};

    #[test]
    fn aligned_body_leaves_unaligned_head_and_tail() {
        assert_eq!(aligned_body(0x1010, 0x3030, 0x400), (0x1400, 0x3000));
        assert_eq!(aligned_body(0x1000, 0x2000, 0x400), (0x1000, 0x2000));
        // Inside one unit: no body, all head.
        assert_eq!(aligned_body(0x1010, 0x1020, 0x400), (0x1020, 0x1020));
    }

    fn info() -> StartInfo {
        let mut name = [0; VM_NAME_LEN];
        name[..3].copy_from_slice(b"vm0");
        StartInfo {
            magic: START_INFO_MAGIC,
            abi_major: 1,
            abi_minor: 0,
            vm_id: 7,
            vcpus: 1,
            ram_base: GUEST_RAM_BASE,
            ram_size: 64 * 1024,
            name,
            cmdline: [0; CMDLINE_LEN],
        }
    }

    fn read(memory: &SparseRam, slice: GuestSlice) -> Vec<u8> {
        let mut buf = vec![0; slice.len() as usize];
        memory.read_guest(slice, &mut buf);
        buf
    }

    #[test]
    fn slices_are_bounded_by_ram() {
        let ram = GuestRam::new(GUEST_RAM_BASE, 0x8000_0000, 8192);
        let all = ram.slice(GUEST_RAM_BASE, 8192).unwrap();
        assert_eq!((all.pa(), all.len()), (0x8000_0000, 8192));
        assert_eq!(all, ram.all());
        let last = ram.slice(GUEST_RAM_BASE + 8191, 1).unwrap();
        assert_eq!((last.pa(), last.len()), (0x8000_1fff, 1));
        assert!(ram.slice(GUEST_RAM_BASE + 8192, 0).unwrap().is_empty());
        for (ipa, len) in [
            (GUEST_RAM_BASE - 1, 1),
            (GUEST_RAM_BASE + 8192, 1),
            (GUEST_RAM_BASE + 8191, 2),
            (GUEST_RAM_BASE, u64::MAX),
            (u64::MAX, 2),
            (0, 0),
        ] {
            assert_eq!(
                ram.slice(ipa, len),
                Err(MemoryError::OutOfRange { ipa, len })
            );
        }
    }

    #[test]
    fn the_start_info_goes_in_the_last_page() {
        let ram = GuestRam::new(GUEST_RAM_BASE, 0x8000_0000, 64 * 1024);
        let mut memory = SparseRam::default();
        let mut channels = ChannelTable::EMPTY;
        channels.count = 1;
        channels.channels[0] = ChannelInfo {
            name: *b"telemetry\0\0\0\0\0\0\0",
            base: 0x1000_1000,
            size: 0x1_0000,
            state: 0x1000_0000,
            intid: 64,
            flags: abi::CHANNEL_WRITER,
        };
        let written = ram
            .write_start_info(&mut memory, &info(), &channels)
            .unwrap();
        let si = ram.start_info_ipa();
        assert_eq!(si, GUEST_RAM_BASE + 60 * 1024);
        assert_eq!(written.pa(), 0x8000_0000 + 60 * 1024);
        let bytes = read(&memory, ram.all());
        let page = &bytes[60 * 1024..];
        assert_eq!(&page[..4], &START_INFO_MAGIC.to_le_bytes());
        assert_eq!(&page[8..12], &7u32.to_le_bytes());
        assert_eq!(&page[32..35], b"vm0");
        // The channel table, as a 1.3 guest reads it (abi.manifest's offsets).
        let table = &page[0xc0..];
        assert_eq!(&table[..4], &1u32.to_le_bytes());
        let first = &table[8..8 + 0x30];
        assert_eq!(&first[..9], b"telemetry");
        assert_eq!(&first[16..24], &0x1000_1000u64.to_le_bytes());
        assert_eq!(&first[24..32], &0x1_0000u64.to_le_bytes());
        assert_eq!(&first[32..40], &0x1000_0000u64.to_le_bytes());
        assert_eq!(&first[40..44], &64u32.to_le_bytes());
        assert_eq!(&first[44..48], &1u32.to_le_bytes());
        assert!(table[8 + 0x30..0x308].iter().all(|&b| b == 0));
        let tiny = GuestRam::new(GUEST_RAM_BASE, 0, 0);
        assert!(tiny
            .write_start_info(&mut SparseRam::default(), &info(), &channels)
            .is_err());
    }
}
