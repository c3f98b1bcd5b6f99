//! VMIDs with generations, so the VMID field (8 bits, or 16 where the CPU
//! has them) never caps the number of VMs: when the IDs run out, a new
//! generation starts, all guest TLB entries are flushed, and each VM takes a
//! fresh VMID the next time it runs.
//!
//! On several CPUs a rollover must not hand out a VMID that another CPU is
//! running a guest with: that CPU keeps filling its TLB under the ID after
//! the flush, and the VM that got it next would hit those entries. As Linux
//! KVM does (arch/arm64/kvm/vmid.c), the VMID each CPU last loaded is
//! reserved across a rollover and stays its VM's in the new generation.
//! Like KVM, the rollover flush is one broadcast (inner-shareable) TLB
//! invalidation rather than a flush-pending mark per CPU: rollovers are
//! rare, and `tests/vmid_tlb.rs` shows a local flush would not do.

use alloc::vec::Vec;

/// A VM's claim on a VMID: valid only while its generation is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vmid {
    pub id: u16,
    pub generation: u64,
}

pub struct VmidAllocator {
    generation: u64,
    /// IDs in use: `1 << bits` of them.
    limit: u32,
    /// IDs taken in this generation, one bit each.
    used: Vec<u64>,
    /// Where the search for a free ID starts.
    next: u32,
    /// The VMID each CPU last loaded.
    active: Vec<Option<Vmid>>,
    /// The VMIDs CPUs had loaded at the last rollover: their VMs keep the ID.
    reserved: Vec<Option<Vmid>>,
}

/// VMID 0 is never handed out, so a stale TLB entry tagged 0 (the reset
/// value of VTTBR) can match no VM.
const FIRST: u32 = 1;

impl VmidAllocator {
    /// An allocator for `cpus` CPUs with `bits`-bit VMIDs (8, or 16 on
    /// aarch64 CPUs with FEAT_VMID16).
    pub fn new(cpus: usize, bits: u32) -> Self {
        assert!((1..=16).contains(&bits), "VMIDs are at most 16 bits");
        let limit = 1u32 << bits;
        // A rollover reserves one ID per CPU and must leave one free.
        assert!(cpus + 1 < limit as usize, "{cpus} CPUs need more VMIDs");
        VmidAllocator {
            generation: 1,
            limit,
            used: alloc::vec![0; (limit as usize).div_ceil(64)],
            next: FIRST,
            active: alloc::vec![None; cpus],
            reserved: alloc::vec![None; cpus],
        }
    }

    /// The VMID a VM that holds `current` runs with on `cpu`, now. The
    /// `bool` is true when a new generation began: the caller must flush
    /// every guest TLB entry on all CPUs (a broadcast invalidation) before
    /// using it.
    pub fn vmid_for(&mut self, cpu: usize, current: Option<Vmid>) -> (Vmid, bool) {
        let (vmid, flush) = self.claim(current);
        if let Some(active) = self.active.get_mut(cpu) {
            *active = Some(vmid);
        }
        (vmid, flush)
    }

    fn claim(&mut self, current: Option<Vmid>) -> (Vmid, bool) {
        if let Some(vmid) = current.filter(|v| v.generation == self.generation) {
            return (vmid, false);
        }
        if let Some(old) = current.filter(|v| self.reserved.contains(&Some(*v))) {
            // Running somewhere when the IDs ran out: its ID was kept for it.
            let renewed = Vmid {
                id: old.id,
                generation: self.generation,
            };
            for slot in self.reserved.iter_mut().filter(|r| **r == Some(old)) {
                *slot = Some(renewed);
            }
            return (renewed, false);
        }
        let (id, flush) = match self.free_id() {
            Some(id) => (id, false),
            None => {
                self.roll_over();
                // At most one ID per CPU is reserved: `new` left one free.
                (self.free_id().expect("IDs left after a rollover"), true)
            }
        };
        mark_used(&mut self.used, id);
        let vmid = Vmid {
            id,
            generation: self.generation,
        };
        (vmid, flush)
    }

    fn is_used(&self, id: u32) -> bool {
        self.used[id as usize / 64] & (1 << (id % 64)) != 0
    }

    fn free_id(&mut self) -> Option<u16> {
        let id = (self.next..self.limit).find(|&id| !self.is_used(id))?;
        self.next = id + 1;
        Some(id as u16)
    }

    fn roll_over(&mut self) {
        self.generation += 1;
        self.used.fill(0);
        self.next = FIRST;
        self.reserved.clone_from(&self.active);
        for vmid in self.reserved.iter().flatten() {
            mark_used(&mut self.used, vmid.id);
        }
    }
}

fn mark_used(used: &mut [u64], id: u16) {
    used[usize::from(id) / 64] |= 1 << (id % 64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_1_to_255_then_starts_a_new_generation() {
        let mut vmids = VmidAllocator::new(1, 8);
        let first: Vec<_> = (0..255).map(|_| vmids.vmid_for(0, None)).collect();
        assert!(first.iter().all(|(_, flush)| !flush));
        assert_eq!(first[0].0.id, 1);
        assert_eq!(first[254].0.id, 255);
        assert_eq!(vmids.vmid_for(0, Some(first[0].0)), (first[0].0, false));

        let (next, flush) = vmids.vmid_for(0, None);
        assert!(flush, "running out must ask for a TLB flush");
        assert_eq!(next.generation, 2);
        // The CPU's last VMID (1, just used again) was kept for its VM.
        assert_eq!(next.id, 2);
        let (stale, flush) = vmids.vmid_for(0, Some(first[3].0));
        assert!(!flush);
        assert_eq!(
            (stale.id, stale.generation),
            (3, 2),
            "an old generation gets a new ID"
        );
        let (kept, _) = vmids.vmid_for(1, Some(first[0].0));
        assert_eq!(
            (kept.id, kept.generation),
            (1, 2),
            "the reserved one keeps its ID"
        );
    }

    /// How many VMs, each new, get an ID before the first rollover, and the
    /// largest ID they get.
    fn first_generation(bits: u32) -> (usize, u16) {
        let mut vmids = VmidAllocator::new(4, bits);
        let mut largest = 0;
        for count in 0.. {
            let (vmid, flush) = vmids.vmid_for(count % 4, None);
            if flush {
                return (count, largest);
            }
            largest = largest.max(vmid.id);
        }
        unreachable!()
    }

    #[test]
    fn eight_bit_vmids_give_255_ids_per_generation() {
        assert_eq!(first_generation(8), (255, 255));
    }

    #[test]
    fn sixteen_bit_vmids_give_65535_ids_per_generation() {
        assert_eq!(first_generation(16), (65535, 65535));
        // 4096 VMs, each run once on each of 4 CPUs: no rollover at all.
        let mut vmids = VmidAllocator::new(4, 16);
        let mut held = alloc::vec![None; 4096];
        for round in 0..4 {
            for (vm, vmid) in held.iter_mut().enumerate() {
                let (next, flush) = vmids.vmid_for((vm + round) % 4, *vmid);
                assert!(!flush);
                assert!(vmid.is_none_or(|v| v == next), "an ID changed");
                *vmid = Some(next);
            }
        }
    }

    #[test]
    #[should_panic(expected = "need more VMIDs")]
    fn refuses_more_cpus_than_a_rollover_can_reserve() {
        VmidAllocator::new(3, 2);
    }

    #[test]
    fn thousands_of_vms_keep_getting_ids() {
        let mut vmids = VmidAllocator::new(1, 8);
        let flushes = (0..5000).filter(|_| vmids.vmid_for(0, None).1).count();
        // 255 IDs in the first generation, 254 in each later one (the ID the
        // CPU last loaded stays reserved).
        assert_eq!(flushes, 1 + (5000 - 255) / 254);
    }

    #[test]
    fn a_rollover_never_reissues_an_id_another_cpu_runs_with() {
        let mut vmids = VmidAllocator::new(2, 8);
        // CPU 1 runs a VM with its VMID for all of what follows.
        let (running, _) = vmids.vmid_for(1, None);
        let mut rolled_over = 0;
        for _ in 0..1000 {
            let (vmid, flush) = vmids.vmid_for(0, None);
            rolled_over += usize::from(flush);
            assert_ne!(vmid.id, running.id, "handed out while CPU 1 runs with it");
        }
        assert!(rolled_over >= 3);
        // That VM runs on, here or elsewhere, with the same ID: its TLB
        // entries were flushed with everyone's, nobody else has the ID.
        let (renewed, flush) = vmids.vmid_for(0, Some(running));
        assert!(!flush);
        assert_eq!(renewed.id, running.id);
        assert_eq!(vmids.vmid_for(1, Some(renewed)), (renewed, false));
    }
}
