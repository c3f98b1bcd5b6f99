//! VMIDs with generations, so the 8-bit VMID field never caps the number of
//! VMs: when the IDs run out, a new generation starts, all guest TLB entries
//! are flushed, and each VM takes a fresh VMID the next time it runs.

/// A VM's claim on a VMID: valid only while its generation is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vmid {
    pub id: u8,
    pub generation: u64,
}

pub struct VmidAllocator {
    generation: u64,
    next: u16,
}

impl Default for VmidAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// VMID 0 is never handed out, so a stale TLB entry tagged 0 (the reset
/// value of VTTBR) can match no VM.
const FIRST: u16 = 1;
const LIMIT: u16 = 256;

impl VmidAllocator {
    pub fn new() -> Self {
        VmidAllocator {
            generation: 1,
            next: FIRST,
        }
    }

    /// Whether `vmid` may still be used as it is.
    pub fn is_current(&self, vmid: Option<Vmid>) -> bool {
        vmid.is_some_and(|v| v.generation == self.generation)
    }

    /// A fresh VMID. The `bool` is true when a new generation began: the
    /// caller must flush all guest TLB entries before using it.
    pub fn allocate(&mut self) -> (Vmid, bool) {
        let rolled_over = self.next == LIMIT;
        if rolled_over {
            self.generation += 1;
            self.next = FIRST;
        }
        let vmid = Vmid {
            id: self.next as u8,
            generation: self.generation,
        };
        self.next += 1;
        (vmid, rolled_over)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_1_to_255_then_starts_a_new_generation() {
        let mut vmids = VmidAllocator::new();
        let first: Vec<_> = (0..255).map(|_| vmids.allocate()).collect();
        assert!(first.iter().all(|(_, flush)| !flush));
        assert_eq!(first[0].0.id, 1);
        assert_eq!(first[254].0.id, 255);
        assert!(vmids.is_current(Some(first[0].0)));

        let (next, flush) = vmids.allocate();
        assert!(flush, "running out must ask for a TLB flush");
        assert_eq!(
            next,
            Vmid {
                id: 1,
                generation: 2
            }
        );
        assert!(
            !vmids.is_current(Some(first[0].0)),
            "old generation is stale"
        );
        assert!(vmids.is_current(Some(next)));
        assert!(!vmids.is_current(None));
    }

    #[test]
    fn thousands_of_vms_keep_getting_ids() {
        let mut vmids = VmidAllocator::new();
        let flushes = (0..5000).filter(|_| vmids.allocate().1).count();
        assert_eq!(flushes, 5000 / 255);
    }
}
