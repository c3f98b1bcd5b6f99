//! VMIDs with generations, so the 8-bit VMID field never caps the number of
//! VMs: when the IDs run out, a new generation starts, all guest TLB entries
//! are flushed, and each VM takes a fresh VMID the next time it runs.
//!
//! On several CPUs a rollover must not hand out a VMID that another CPU is
//! running a guest with: two VMs would share TLB entries. As Linux does for
//! ASIDs, the VMID each CPU last loaded is reserved across a rollover and
//! stays its VM's in the new generation.

use alloc::vec::Vec;

/// A VM's claim on a VMID: valid only while its generation is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vmid {
    pub id: u8,
    pub generation: u64,
}

pub struct VmidAllocator {
    generation: u64,
    /// IDs taken in this generation.
    used: [bool; LIMIT as usize],
    /// Where the search for a free ID starts.
    next: u16,
    /// The VMID each CPU last loaded.
    active: Vec<Option<Vmid>>,
    /// The VMIDs CPUs had loaded at the last rollover: their VMs keep the ID.
    reserved: Vec<Option<Vmid>>,
}

/// VMID 0 is never handed out, so a stale TLB entry tagged 0 (the reset
/// value of VTTBR) can match no VM.
const FIRST: u16 = 1;
const LIMIT: u16 = 256;

impl VmidAllocator {
    pub fn new(cpus: usize) -> Self {
        VmidAllocator {
            generation: 1,
            used: [false; LIMIT as usize],
            next: FIRST,
            active: alloc::vec![None; cpus],
            reserved: alloc::vec![None; cpus],
        }
    }

    /// The VMID a VM that holds `current` runs with on `cpu`, now. The
    /// `bool` is true when a new generation began: the caller must flush
    /// every guest TLB entry (on all CPUs) before using it.
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
                // One ID per CPU at most is reserved: 255 >= CPUs.
                (self.free_id().expect("IDs left after a rollover"), true)
            }
        };
        self.used[usize::from(id)] = true;
        let vmid = Vmid {
            id,
            generation: self.generation,
        };
        (vmid, flush)
    }

    fn free_id(&mut self) -> Option<u8> {
        let id = (self.next..LIMIT).find(|&id| !self.used[usize::from(id)])?;
        self.next = id + 1;
        Some(id as u8)
    }

    fn roll_over(&mut self) {
        self.generation += 1;
        self.used = [false; LIMIT as usize];
        self.next = FIRST;
        self.reserved.clone_from(&self.active);
        for vmid in self.reserved.iter().flatten() {
            self.used[usize::from(vmid.id)] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_1_to_255_then_starts_a_new_generation() {
        let mut vmids = VmidAllocator::new(1);
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

    #[test]
    fn thousands_of_vms_keep_getting_ids() {
        let mut vmids = VmidAllocator::new(1);
        let flushes = (0..5000).filter(|_| vmids.vmid_for(0, None).1).count();
        // 255 IDs in the first generation, 254 in each later one (the ID the
        // CPU last loaded stays reserved).
        assert_eq!(flushes, 1 + (5000 - 255) / 254);
    }

    #[test]
    fn a_rollover_never_reissues_an_id_another_cpu_runs_with() {
        let mut vmids = VmidAllocator::new(2);
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
