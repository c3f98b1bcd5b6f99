//! Linux kernels as the composer checks and places them: the arm64 `Image`
//! header (Documentation/arch/arm64/booting.rst) and the ARM `zImage`
//! header (Documentation/arch/arm/booting.rst), and where kernel, device
//! tree and initrd go in a VM's RAM by each protocol's rules.

use crate::vm::GuestWidth;

const MIB: u64 = 1 << 20;

/// The arm64 Image magic, "ARM\x64", at byte 56.
const IMAGE_MAGIC: u32 = 0x644d_5241;
/// The zImage magic at byte 0x24.
const ZIMAGE_MAGIC: u32 = 0x016f_2818;

/// A kernel image, as its header describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// arm64 `Image`: placed `text_offset` above a 2 MiB-aligned base, it
    /// needs `image_size` bytes from there (its BSS included).
    Arm64 { text_offset: u64, image_size: u64 },
    /// ARM `zImage` of `len` bytes (self-decompressing).
    ZImage { len: u64 },
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

impl Kernel {
    /// Reads the header of a kernel for a `width` guest.
    pub fn parse(bytes: &[u8], width: GuestWidth) -> Result<Kernel, String> {
        match width {
            GuestWidth::Aarch64 => {
                if u32_at(bytes, 56) != Some(IMAGE_MAGIC) {
                    return Err("not an arm64 Image: no \"ARM\\x64\" magic at byte 56".into());
                }
                let text_offset = u64_at(bytes, 8).unwrap_or(0);
                let image_size = u64_at(bytes, 16).unwrap_or(0);
                let flags = u64_at(bytes, 24).unwrap_or(0);
                if image_size == 0 {
                    return Err("the Image header has image_size 0 (a kernel older than 3.17): its size is unknown".into());
                }
                if flags & 1 != 0 {
                    return Err("a big-endian Image: the guests are little-endian".into());
                }
                if image_size < bytes.len() as u64 {
                    return Err(format!(
                        "the Image header says image_size {image_size:#x}, less than the file's {:#x} bytes",
                        bytes.len()
                    ));
                }
                Ok(Kernel::Arm64 {
                    text_offset,
                    image_size,
                })
            }
            GuestWidth::Aarch32 => {
                if u32_at(bytes, 0x24) != Some(ZIMAGE_MAGIC) {
                    return Err("not an ARM zImage: no magic 0x016F2818 at byte 0x24".into());
                }
                Ok(Kernel::ZImage {
                    len: bytes.len() as u64,
                })
            }
        }
    }
}

/// Where each part goes, as offsets from the VM's RAM base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub kernel: u64,
    pub dtb: u64,
    pub initrd: u64,
}

/// Room kept for the device tree (arm64 allows at most 2 MiB).
pub const DTB_MAX: u64 = 2 * MIB;

/// The zImage's place: low in the first 128 MiB, where QEMU puts it too.
/// Its decompressor writes the kernel at the 128 MiB-aligned base plus
/// TEXT_OFFSET (0x208000 in Debian's armmp-lpae) and moves itself out of
/// the way first if they overlap.
const ZIMAGE_OFFSET: u64 = 0x1_0000;

/// The first 128 MiB are the decompressed kernel's: device tree and initrd
/// go above (a 128 MiB-aligned RAM base is `abi::GUEST_RAM_BASE`).
const ZIMAGE_LOW: u64 = 128 * MIB;

impl Layout {
    /// Places `kernel`, a device tree of at most [`DTB_MAX`] and an initrd
    /// of `initrd_len` bytes in `ram` bytes of RAM.
    pub fn place(kernel: Kernel, initrd_len: u64, ram: u64) -> Result<Layout, String> {
        let layout = match kernel {
            Kernel::Arm64 {
                text_offset,
                image_size,
            } => {
                let end = text_offset + image_size;
                let dtb = end.div_ceil(2 * MIB) * (2 * MIB);
                Layout {
                    kernel: text_offset,
                    dtb,
                    initrd: dtb + DTB_MAX,
                }
            }
            Kernel::ZImage { len } => {
                if ZIMAGE_OFFSET + len > ZIMAGE_LOW {
                    return Err(format!(
                        "the zImage ({} MiB) does not fit in the first 128 MiB",
                        len.div_ceil(MIB)
                    ));
                }
                Layout {
                    kernel: ZIMAGE_OFFSET,
                    initrd: ZIMAGE_LOW,
                    dtb: (ZIMAGE_LOW + initrd_len).div_ceil(2 * MIB) * (2 * MIB),
                }
            }
        };
        let end = (layout.initrd + initrd_len).max(layout.dtb + DTB_MAX);
        if end > ram {
            return Err(format!(
                "kernel, device tree and initrd need {} MiB of RAM by the boot protocol",
                end.div_ceil(MIB)
            ));
        }
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(text_offset: u64, image_size: u64, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        bytes[8..16].copy_from_slice(&text_offset.to_le_bytes());
        bytes[16..24].copy_from_slice(&image_size.to_le_bytes());
        bytes[24..32].copy_from_slice(&0xau64.to_le_bytes());
        bytes[56..60].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
        bytes
    }

    #[test]
    fn an_arm64_image_goes_at_text_offset_with_dtb_and_initrd_above() {
        // Debian's 6.1: text_offset 0, image_size 0x2010000.
        let kernel = Kernel::parse(&image(0, 0x201_0000, 4096), GuestWidth::Aarch64).unwrap();
        let layout = Layout::place(kernel, 3 * MIB, 256 * MIB).unwrap();
        assert_eq!(
            layout,
            Layout {
                kernel: 0,
                dtb: 0x220_0000,
                initrd: 0x240_0000
            }
        );
        assert!(Layout::place(kernel, 3 * MIB, 38 * MIB).is_err());
    }

    #[test]
    fn headers_that_are_not_kernels_are_refused_with_the_reason() {
        let mut bytes = image(0, 0x201_0000, 4096);
        assert!(Kernel::parse(&bytes, GuestWidth::Aarch32)
            .unwrap_err()
            .contains("zImage"));
        bytes[16..24].fill(0);
        assert!(Kernel::parse(&bytes, GuestWidth::Aarch64)
            .unwrap_err()
            .contains("image_size 0"));
        assert!(Kernel::parse(&[0; 10], GuestWidth::Aarch64)
            .unwrap_err()
            .contains("magic"));
        let mut big_endian = image(0, 0x201_0000, 4096);
        big_endian[24] |= 1;
        assert!(Kernel::parse(&big_endian, GuestWidth::Aarch64).is_err());
    }

    #[test]
    fn a_zimage_stays_low_and_its_dtb_and_initrd_go_above_128_mib() {
        let mut bytes = vec![0; 5 << 20];
        bytes[0x24..0x28].copy_from_slice(&ZIMAGE_MAGIC.to_le_bytes());
        let kernel = Kernel::parse(&bytes, GuestWidth::Aarch32).unwrap();
        let layout = Layout::place(kernel, 3 * MIB, 256 * MIB).unwrap();
        assert_eq!(layout.kernel, 0x1_0000);
        assert_eq!(layout.initrd, 128 * MIB);
        assert_eq!(layout.dtb, 132 * MIB);
        assert!(Layout::place(kernel, 3 * MIB, 128 * MIB).is_err());
    }
}
