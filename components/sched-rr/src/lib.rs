//! Round-robin: runnable vCPUs take turns, one time slice each, in the
//! order they became runnable. A vCPU alone on the CPU gets no deadline,
//! so a lone guest runs without a periodic tick.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use hv::sched::{Decision, Scheduler, VcpuId};

pub struct RoundRobin {
    queue: VecDeque<VcpuId>,
    slice: u64,
}

impl Scheduler for RoundRobin {
    fn new(vcpus: usize, slice: u64) -> Self {
        // Sized once so the hot path never allocates.
        RoundRobin {
            queue: VecDeque::with_capacity(vcpus),
            slice,
        }
    }

    fn make_runnable(&mut self, vcpu: VcpuId, _now: u64) {
        if !self.queue.contains(&vcpu) {
            self.queue.push_back(vcpu);
        }
    }

    fn remove(&mut self, vcpu: VcpuId) {
        self.queue.retain(|&v| v != vcpu);
    }

    fn pick_next(&mut self, now: u64) -> Option<Decision> {
        let vcpu = self.queue.pop_front()?;
        let until = (!self.queue.is_empty()).then(|| now + self.slice);
        Some(Decision { vcpu, until })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the scheduler against a simulated clock where every vCPU uses
    /// its whole slice; returns the CPU time each got.
    fn simulate(sched: &mut RoundRobin, vcpus: usize, duration: u64) -> Vec<u64> {
        let mut used = vec![0; vcpus];
        let mut now = 0;
        while now < duration {
            let d = sched.pick_next(now).expect("someone is runnable");
            let end = d.until.unwrap_or(duration).min(duration);
            used[d.vcpu.0 as usize] += end - now;
            now = end;
            sched.make_runnable(d.vcpu, now);
        }
        used
    }

    #[test]
    fn equal_shares_for_spinning_vcpus() {
        let mut rr = RoundRobin::new(3, 100);
        for v in 0..3 {
            rr.make_runnable(VcpuId(v), 0);
        }
        let used = simulate(&mut rr, 3, 30_000);
        assert_eq!(used, vec![10_000, 10_000, 10_000]);
    }

    #[test]
    fn turns_follow_arrival_order_and_removed_vcpus_never_run() {
        let mut rr = RoundRobin::new(3, 10);
        for v in [2, 0, 1] {
            rr.make_runnable(VcpuId(v), 0);
        }
        rr.make_runnable(VcpuId(0), 0); // already queued: no double turn
        rr.remove(VcpuId(1));
        let order: Vec<_> = (0..4)
            .map(|_| {
                let d = rr.pick_next(0).unwrap();
                rr.make_runnable(d.vcpu, 0);
                d.vcpu.0
            })
            .collect();
        assert_eq!(order, vec![2, 0, 2, 0]);
    }

    #[test]
    fn a_lone_vcpu_runs_without_a_deadline() {
        let mut rr = RoundRobin::new(2, 10);
        rr.make_runnable(VcpuId(0), 0);
        assert_eq!(
            rr.pick_next(5),
            Some(Decision {
                vcpu: VcpuId(0),
                until: None
            })
        );
        rr.make_runnable(VcpuId(0), 5);
        rr.make_runnable(VcpuId(1), 5);
        assert_eq!(rr.pick_next(7).unwrap().until, Some(17));
        assert!(RoundRobin::new(0, 10).pick_next(0).is_none());
    }
}
