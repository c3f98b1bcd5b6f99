//! Guest RAM as the hypervisor sees it: one contiguous host-physical region
//! per VM, mapped at the same guest-physical base for every VM.

use abi::StartInfo;
use core::mem::{offset_of, size_of};

/// A VM's RAM. The slice is the hypervisor's (identity) mapping of the
/// host-physical region; the image creates it from the VM table.
pub struct GuestRam {
    /// Guest-physical base ([`abi::GUEST_RAM_BASE`]).
    pub ipa_base: u64,
    /// Host-physical base.
    pub pa_base: u64,
    mem: &'static mut [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The guest range is not (entirely) inside the VM's RAM.
    OutOfRange { ipa: u64, len: u64 },
    /// The image does not fit (with the start-info page).
    TooBig { image: usize, ram: usize },
}

impl GuestRam {
    pub fn new(ipa_base: u64, pa_base: u64, mem: &'static mut [u8]) -> Self {
        GuestRam {
            ipa_base,
            pa_base,
            mem,
        }
    }

    pub fn size(&self) -> u64 {
        self.mem.len() as u64
    }

    /// The bytes at guest-physical `ipa..ipa+len`, if all inside this RAM.
    pub fn read(&self, ipa: u64, len: u64) -> Result<&[u8], MemoryError> {
        let out = MemoryError::OutOfRange { ipa, len };
        let start = ipa.checked_sub(self.ipa_base).ok_or(out)?;
        let end = start.checked_add(len).ok_or(out)?;
        if end > self.size() {
            return Err(out);
        }
        Ok(&self.mem[start as usize..end as usize])
    }

    /// Guest-physical address of the start-info page (the last 4 KiB).
    pub fn start_info_ipa(&self) -> u64 {
        self.ipa_base + self.size() - START_INFO_PAGE
    }

    /// Clears the RAM, copies the guest image to its base and writes the
    /// start info into its last page, so nothing of an earlier tenant
    /// survives into the new VM.
    pub fn load(&mut self, image: &[u8], info: &StartInfo) -> Result<(), MemoryError> {
        let ram = self.mem.len();
        if image.len() as u64 > self.size() - START_INFO_PAGE {
            return Err(MemoryError::TooBig {
                image: image.len(),
                ram,
            });
        }
        self.mem.fill(0);
        self.mem[..image.len()].copy_from_slice(image);
        let page = ram - START_INFO_PAGE as usize;
        write_start_info(&mut self.mem[page..page + size_of::<StartInfo>()], info);
        Ok(())
    }

    /// The whole RAM, for cache maintenance after loading.
    pub fn bytes(&self) -> &[u8] {
        self.mem
    }
}

const START_INFO_PAGE: u64 = 4096;

/// Lays `info` out as `#[repr(C)]` little-endian bytes, field by field, so no
/// `unsafe` transmute is needed.
fn write_start_info(out: &mut [u8], info: &StartInfo) {
    fn put(out: &mut [u8], offset: usize, bytes: &[u8]) {
        out[offset..offset + bytes.len()].copy_from_slice(bytes);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use abi::{CMDLINE_LEN, GUEST_RAM_BASE, START_INFO_MAGIC, VM_NAME_LEN};

    pub(crate) fn leak_ram(size: usize) -> &'static mut [u8] {
        Box::leak(vec![0xAAu8; size].into_boxed_slice())
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

    #[test]
    fn read_is_bounded_by_ram() {
        let ram = GuestRam::new(GUEST_RAM_BASE, 0x8000_0000, leak_ram(8192));
        assert_eq!(ram.read(GUEST_RAM_BASE, 8192).unwrap().len(), 8192);
        assert_eq!(ram.read(GUEST_RAM_BASE + 8191, 1).unwrap().len(), 1);
        for (ipa, len) in [
            (GUEST_RAM_BASE - 1, 1),
            (GUEST_RAM_BASE + 8192, 1),
            (GUEST_RAM_BASE + 8191, 2),
            (GUEST_RAM_BASE, u64::MAX),
            (u64::MAX, 2),
        ] {
            assert_eq!(
                ram.read(ipa, len),
                Err(MemoryError::OutOfRange { ipa, len })
            );
        }
    }

    #[test]
    fn load_clears_copies_and_writes_start_info() {
        let mut ram = GuestRam::new(GUEST_RAM_BASE, 0x8000_0000, leak_ram(64 * 1024));
        ram.load(&[1, 2, 3], &info()).unwrap();
        assert_eq!(&ram.bytes()[..4], &[1, 2, 3, 0]);
        let si = ram.start_info_ipa();
        assert_eq!(si, GUEST_RAM_BASE + 60 * 1024);
        let page = ram.read(si, size_of::<StartInfo>() as u64).unwrap();
        assert_eq!(&page[..4], &START_INFO_MAGIC.to_le_bytes());
        assert_eq!(&page[8..12], &7u32.to_le_bytes());
        assert_eq!(&page[32..35], b"vm0");
        assert!(ram.bytes()[4..page.len()].iter().all(|&b| b == 0));
    }

    #[test]
    fn load_refuses_an_image_over_the_start_info_page() {
        let mut ram = GuestRam::new(GUEST_RAM_BASE, 0, leak_ram(8192));
        let image = vec![0u8; 4097];
        assert_eq!(
            ram.load(&image, &info()),
            Err(MemoryError::TooBig {
                image: 4097,
                ram: 8192
            })
        );
    }
}
