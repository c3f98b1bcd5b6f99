//! The timer deadlines of vCPUs blocked in WFI, in an indexed min-heap
//! (`VcpuHeap`), so finding the earliest is O(1) and setting, clearing or
//! taking one is O(log n), however many vCPUs the image has. Each vCPU has
//! at most one entry: no stale entries pile up, and the heap never
//! outgrows the size `new` gives it.

use crate::sched::{VcpuHeap, VcpuId};

pub(crate) struct Deadlines(VcpuHeap<u64>);

impl Deadlines {
    /// Room for `vcpus` vCPUs' deadlines, allocated once.
    pub fn new(vcpus: usize) -> Self {
        Deadlines(VcpuHeap::new(vcpus))
    }

    /// `vcpu`'s timer fires at `at`, or it has none.
    pub fn set(&mut self, vcpu: usize, at: Option<u64>) {
        let vcpu = VcpuId(vcpu as u32);
        match at {
            Some(at) => self.0.set(vcpu, at),
            None => {
                self.0.remove(vcpu);
            }
        }
    }

    /// The earliest deadline.
    pub fn earliest(&self) -> Option<u64> {
        self.0.peek().map(|(at, _)| at)
    }

    /// Takes out one vCPU whose deadline is `now` or earlier (the earliest;
    /// of equal ones, the lowest vCPU).
    pub fn pop_due(&mut self, now: u64) -> Option<usize> {
        if self.earliest()? > now {
            return None;
        }
        self.0.pop().map(|(_, vcpu)| vcpu.0 as usize)
    }

    /// Heap steps taken so far, for the scale test.
    #[cfg(test)]
    fn steps(&self) -> u64 {
        self.0.steps()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A small xorshift: the same pseudo-random sequence on every run.
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn deadlines_come_out_earliest_first_and_ties_by_vcpu() {
        let mut timers = Deadlines::new(6);
        for (vcpu, at) in [(0, 50), (1, 10), (2, 30), (3, 10), (4, 70), (5, 20)] {
            timers.set(vcpu, Some(at));
        }
        timers.set(4, None); // woken by an interrupt
        timers.set(2, Some(5)); // blocked again, sooner
        timers.set(2, Some(40)); // and later
        assert_eq!(timers.earliest(), Some(10));
        let mut due = Vec::new();
        while let Some(vcpu) = timers.pop_due(40) {
            due.push(vcpu);
        }
        assert_eq!(due, vec![1, 3, 5, 2]);
        assert_eq!(timers.earliest(), Some(50));
        assert_eq!(timers.pop_due(49), None);
        assert_eq!(timers.pop_due(50), Some(0));
        assert_eq!(timers.earliest(), None);
        timers.set(9, Some(1)); // no such vCPU: ignored
        assert_eq!(timers.earliest(), None);
    }

    #[test]
    fn random_updates_agree_with_a_scan() {
        let mut timers = Deadlines::new(64);
        let mut model = [None; 64];
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let vcpu = (rng(&mut seed) % 64) as usize;
            let at = (!rng(&mut seed).is_multiple_of(4)).then(|| rng(&mut seed) % 1000);
            timers.set(vcpu, at);
            model[vcpu] = at;
            assert_eq!(timers.earliest(), model.iter().flatten().min().copied());
            if rng(&mut seed).is_multiple_of(8) {
                let now = rng(&mut seed) % 1000;
                if let Some(vcpu) = timers.pop_due(now) {
                    let earliest = model.iter().flatten().min().copied();
                    assert!(model[vcpu] == earliest && earliest <= Some(now));
                    model[vcpu] = None;
                }
            }
        }
    }

    /// Issue 16: nothing scans all vCPUs. With 100,000 blocked vCPUs,
    /// setting, moving, clearing and taking a deadline each cost O(log n)
    /// heap steps (log2 100,000 is 17), where a scan would cost 100,000.
    #[test]
    fn a_deadline_costs_log_n_steps_among_100_000() {
        const VCPUS: usize = 100_000;
        const BOUND: u64 = 64;
        let mut timers = Deadlines::new(VCPUS);
        let mut seed = 0x2545_f491_4f6c_dd1d;
        for vcpu in 0..VCPUS {
            timers.set(vcpu, Some(rng(&mut seed) % 1_000_000_000));
        }
        let mut worst = 0;
        let mut measure =
            |timers: &mut Deadlines, what: &str, f: &mut dyn FnMut(&mut Deadlines)| {
                let before = timers.steps();
                f(timers);
                let steps = timers.steps() - before;
                assert!(steps <= BOUND, "{what}: {steps} steps");
                worst = worst.max(steps);
            };
        for _ in 0..10_000 {
            let vcpu = (rng(&mut seed) % VCPUS as u64) as usize;
            let at = rng(&mut seed) % 1_000_000_000;
            measure(&mut timers, "move", &mut |t| t.set(vcpu, Some(at)));
            measure(&mut timers, "clear", &mut |t| t.set(vcpu, None));
            measure(&mut timers, "set", &mut |t| t.set(vcpu, Some(at)));
            measure(&mut timers, "earliest", &mut |t| {
                t.earliest();
            });
            let now = timers.earliest().unwrap();
            measure(&mut timers, "take", &mut |t| {
                let due = t.pop_due(now).expect("due");
                t.set(due, Some(now + 1_000_000_000));
            });
        }
        println!("worst: {worst} heap steps per deadline event among {VCPUS} vCPUs");
    }
}
