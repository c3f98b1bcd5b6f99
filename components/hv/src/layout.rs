//! The hypervisor's own memory, as its linker script lays it out, and the
//! access each 4 KiB page of it gets in the EL2 (HYP) map: text read-only
//! and executable, read-only data read-only, everything else read-write,
//! nothing writable executable (W^X), and an unmapped guard page below
//! each CPU's stack. The arch crates build the page tables from
//! [`HvLayout::access`] and name faulting addresses with
//! [`HvLayout::region`].

use core::fmt;

pub const PAGE: u64 = 4096;

/// Section boundaries (page aligned) and the stack slots at the top.
///
/// `start..text_end` is text, `text_end..rodata_end` read-only data (the
/// VM table and guest images included), `rodata_end..end` data, bss, heap
/// and stacks. The top `cpus` slots of `stack_slot` bytes each hold, from
/// the bottom, a `guard` page, CPU n's stack, and its fault stack; slot n
/// ends n slots below `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HvLayout {
    pub start: u64,
    pub text_end: u64,
    pub rodata_end: u64,
    pub end: u64,
    pub cpus: u64,
    pub stack_slot: u64,
    pub guard: u64,
}

/// What a page of the hypervisor may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read-only, executable.
    Text,
    /// Read-only, never executable.
    ReadOnly,
    /// Read-write, never executable.
    ReadWrite,
    /// Not mapped: a stack guard page.
    Unmapped,
}

/// Where an address is, for fault reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    Text,
    ReadOnlyData,
    Data,
    StackGuard { cpu: u64 },
    Outside,
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Region::Text => f.write_str("hypervisor text"),
            Region::ReadOnlyData => f.write_str("hypervisor read-only data"),
            Region::Data => f.write_str("hypervisor data, heap or stack"),
            Region::StackGuard { cpu } => {
                write!(f, "stack guard page of CPU {cpu}: stack overflow")
            }
            Region::Outside => f.write_str("outside the hypervisor image"),
        }
    }
}

impl HvLayout {
    /// Whether the boundaries are page aligned and in order, and the stack
    /// slots fit above the read-only part with room for their guards.
    pub fn is_valid(&self) -> bool {
        let aligned = [
            self.start,
            self.text_end,
            self.rodata_end,
            self.end,
            self.stack_slot,
            self.guard,
        ]
        .iter()
        .all(|v| v % PAGE == 0);
        let stacks = self.cpus.checked_mul(self.stack_slot);
        aligned
            && self.start <= self.text_end
            && self.text_end <= self.rodata_end
            && self.rodata_end <= self.end
            && self.guard < self.stack_slot
            && stacks.is_some_and(|s| s <= self.end - self.rodata_end)
    }

    pub fn contains(&self, addr: u64) -> bool {
        (self.start..self.end).contains(&addr)
    }

    /// The CPU whose stack guard page holds `addr`.
    fn guard_of(&self, addr: u64) -> Option<u64> {
        if addr >= self.end || self.stack_slot == 0 {
            return None;
        }
        let slot = (self.end - addr - 1) / self.stack_slot;
        let slot_start = self.end - (slot + 1) * self.stack_slot;
        (slot < self.cpus && addr < slot_start + self.guard).then_some(slot)
    }

    pub fn region(&self, addr: u64) -> Region {
        if !self.contains(addr) {
            Region::Outside
        } else if addr < self.text_end {
            Region::Text
        } else if addr < self.rodata_end {
            Region::ReadOnlyData
        } else if let Some(cpu) = self.guard_of(addr) {
            Region::StackGuard { cpu }
        } else {
            Region::Data
        }
    }

    /// The runs of pages, `(start, end)`, that tile the block of
    /// `block_size` bytes at `base`: a run ends where the hypervisor's
    /// region changes ([`HvLayout::region_end`]) or at one of `edges` (what
    /// else changes a page's attributes, such as where RAM starts and ends),
    /// rounded up to a whole `page`.
    pub fn page_runs(
        &self,
        base: u64,
        block_size: u64,
        page: u64,
        edges: [u64; 3],
    ) -> impl Iterator<Item = (u64, u64)> + '_ {
        let block_end = base + block_size;
        let mut at = base;
        core::iter::from_fn(move || {
            if at >= block_end {
                return None;
            }
            let end = core::iter::once(self.region_end(at))
                .chain(edges)
                .filter(|&edge| edge > at)
                .min()
                .unwrap_or(block_end)
                .min(block_end)
                .next_multiple_of(page);
            let run = (at, end);
            at = end;
            Some(run)
        })
    }

    /// The access of the page at `addr`, which is in the hypervisor.
    /// Where the run of addresses in `addr`'s region (so with its access)
    /// ends: the next address above it where [`HvLayout::region`] may
    /// change (`u64::MAX` past the end). Lets the EL2/HYP tables be built
    /// a run at a time rather than a page at a time.
    pub fn region_end(&self, addr: u64) -> u64 {
        if addr < self.start {
            return self.start;
        }
        if addr >= self.end {
            return u64::MAX;
        }
        if addr < self.text_end {
            return self.text_end;
        }
        if addr < self.rodata_end {
            return self.rodata_end;
        }
        if self.stack_slot == 0 {
            return self.end;
        }
        // Data and the stacks' guard pages: CPU n's slot is n slots below
        // the end, its guard at the slot's bottom.
        let slot = (self.end - addr - 1) / self.stack_slot;
        if slot >= self.cpus {
            return self.end - self.cpus * self.stack_slot;
        }
        let slot_start = self.end - (slot + 1) * self.stack_slot;
        if addr < slot_start + self.guard {
            slot_start + self.guard
        } else {
            slot_start + self.stack_slot
        }
    }

    pub fn access(&self, addr: u64) -> Access {
        match self.region(addr) {
            Region::Text => Access::Text,
            Region::ReadOnlyData => Access::ReadOnly,
            Region::StackGuard { .. } => Access::Unmapped,
            Region::Data | Region::Outside => Access::ReadWrite,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_is_the_same_up_to_its_end() {
        let hv = layout();
        let mut at = hv.start - 64 * KIB;
        while at < hv.end + 64 * KIB {
            let end = hv.region_end(at);
            assert!(end > at, "{at:#x}");
            let region = hv.region(at);
            for page in (at..end.min(hv.end + 64 * KIB)).step_by(4096) {
                assert_eq!(hv.region(page), region, "{page:#x} in the run from {at:#x}");
            }
            if end < hv.end + 64 * KIB {
                assert_ne!(hv.region(end), region, "{end:#x} ends the run from {at:#x}");
            }
            at = end.min(hv.end + 64 * KIB);
        }
    }

    const KIB: u64 = 1024;

    fn layout() -> HvLayout {
        HvLayout {
            start: 0x4008_0000,
            text_end: 0x4009_0000,
            rodata_end: 0x400a_0000,
            end: 0x4088_0000,
            cpus: 2,
            stack_slot: 64 * KIB,
            guard: 4 * KIB,
        }
    }

    #[test]
    fn sections_get_their_access() {
        let l = layout();
        assert!(l.is_valid());
        assert_eq!(l.access(0x4008_0000), Access::Text);
        assert_eq!(l.access(0x4008_f000), Access::Text);
        assert_eq!(l.access(0x4009_0000), Access::ReadOnly);
        assert_eq!(l.access(0x4009_f000), Access::ReadOnly);
        assert_eq!(l.access(0x400a_0000), Access::ReadWrite);
        assert_eq!(l.access(0x4080_0000), Access::ReadWrite);
    }

    #[test]
    fn one_guard_page_below_each_stack() {
        let l = layout();
        let cpu0_slot = 0x4088_0000 - 64 * KIB;
        let cpu1_slot = cpu0_slot - 64 * KIB;
        assert_eq!(l.access(cpu0_slot), Access::Unmapped);
        assert_eq!(l.region(cpu0_slot + 0xff8), Region::StackGuard { cpu: 0 });
        assert_eq!(l.access(cpu0_slot + 0x1000), Access::ReadWrite);
        assert_eq!(l.access(cpu0_slot - 8), Access::ReadWrite);
        assert_eq!(l.region(cpu1_slot), Region::StackGuard { cpu: 1 });
        // Below the last CPU's slot is heap: no guard.
        assert_eq!(l.access(cpu1_slot - 64 * KIB), Access::ReadWrite);
        assert_eq!(l.access(0x4088_0000 - 8), Access::ReadWrite);
        assert_eq!(l.region(0x4088_0000), Region::Outside);
        assert_eq!(l.region(0x4007_f000), Region::Outside);
    }

    #[test]
    fn bad_layouts_are_refused() {
        let l = layout();
        assert!(!HvLayout {
            text_end: l.text_end + 8,
            ..l
        }
        .is_valid());
        assert!(!HvLayout {
            rodata_end: l.text_end - PAGE,
            ..l
        }
        .is_valid());
        assert!(!HvLayout { cpus: 1 << 60, ..l }.is_valid());
        assert!(!HvLayout {
            guard: l.stack_slot,
            ..l
        }
        .is_valid());
    }

    #[test]
    fn regions_are_named() {
        let l = layout();
        assert_eq!(
            l.region(0x4088_0000 - 64 * KIB).to_string(),
            "stack guard page of CPU 0: stack overflow"
        );
        assert_eq!(l.region(0x4008_0000).to_string(), "hypervisor text");
    }
}
