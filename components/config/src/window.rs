//! Guest-physical windows: a VM's RAM and the device registers it sees. No
//! two may overlap, or an access would go to two owners; the composer checks
//! the map of every VM at build time, and the core again when it builds one.

/// `[base, base + size)` in a VM's guest-physical address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub base: u64,
    pub size: u64,
}

impl Window {
    pub const fn new(base: u64, size: u64) -> Self {
        Window { base, size }
    }

    /// One past the last byte (saturating: a window may end at 2^64).
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    pub const fn contains(&self, ipa: u64) -> bool {
        ipa >= self.base && ipa - self.base < self.size
    }

    /// Whether the two share a byte (an empty window shares none).
    pub const fn overlaps(&self, other: &Window) -> bool {
        self.size != 0 && other.size != 0 && self.base < other.end() && other.base < self.end()
    }
}

impl core::fmt::Display for Window {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}..{:#x}", self.base, self.end())
    }
}

/// The first two windows (by index) that overlap, if any.
pub fn first_overlap(windows: &[Window]) -> Option<(usize, usize)> {
    (0..windows.len()).find_map(|j| {
        (0..j)
            .find(|&i| windows[i].overlaps(&windows[j]))
            .map(|i| (i, j))
    })
}

/// What the guest ABI puts in every VM's address space besides its
/// devices: its RAM and its GIC (`gic_version` 2: distributor and CPU
/// interface; 3: distributor and one redistributor per vCPU).
pub fn guest_map(gic_version: u32, vcpus: u32, memory: u64) -> [(&'static str, Window); 3] {
    let gic = if gic_version >= 3 {
        (
            "GICv3 redistributors",
            Window::new(
                abi::GUEST_GICR_BASE,
                u64::from(vcpus) * abi::GUEST_GICR_STRIDE,
            ),
        )
    } else {
        (
            "GICv2 CPU interface",
            Window::new(abi::GUEST_GICC_BASE, abi::GUEST_GICC_SIZE),
        )
    };
    [
        ("RAM", Window::new(abi::GUEST_RAM_BASE, memory)),
        (
            "GIC distributor",
            Window::new(abi::GUEST_GICD_BASE, abi::GUEST_GICD_SIZE),
        ),
        gic,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_overlap_only_when_they_share_a_byte() {
        let a = Window::new(0x1000, 0x1000);
        assert!(a.overlaps(&Window::new(0x1fff, 1)));
        assert!(!a.overlaps(&Window::new(0x2000, 0x1000)), "adjacent");
        assert!(!a.overlaps(&Window::new(0, 0x1000)), "adjacent below");
        assert!(a.overlaps(&Window::new(0, u64::MAX)), "inside a larger one");
        assert!(!a.overlaps(&Window::new(0x1800, 0)), "empty");
        assert!(Window::new(u64::MAX - 1, 2).contains(u64::MAX));
        assert!(!a.contains(0x2000) && a.contains(0x1000) && !a.contains(0xfff));
    }

    #[test]
    fn first_overlap_names_both() {
        let ws = [
            Window::new(0, 0x100),
            Window::new(0x100, 0x100),
            Window::new(0x180, 0x10),
        ];
        assert_eq!(first_overlap(&ws), Some((1, 2)));
        assert_eq!(first_overlap(&ws[..2]), None);
    }

    #[test]
    fn the_abi_map_is_disjoint_for_every_gic_and_size() {
        for version in [2, 3] {
            for vcpus in [1, 8] {
                let map = guest_map(version, vcpus, 3 << 30);
                let windows: alloc::vec::Vec<_> = map.iter().map(|(_, w)| *w).collect();
                assert_eq!(
                    first_overlap(&windows),
                    None,
                    "GICv{version}, {vcpus} vCPUs"
                );
            }
        }
    }
}
