//! Round-robin: runnable vCPUs take turns, one time slice each, in the
//! order they became runnable, from one queue shared by all physical CPUs.
//! A vCPU alone gets no deadline, so a lone guest runs without a periodic
//! tick.
//!
//! Every operation is O(1): the queue is linked through per-vCPU arrays
//! made in `new`, so a removal takes the vCPU out of the middle directly.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use hv::sched::{CpuId, Pick, RunQueues, SchedConfig, Scheduler, VcpuId};

/// This scheduler as the component table names it (`sched_rr::Component`).
pub type Component = RoundRobin;

/// Its one list.
const QUEUE: usize = 0;

pub struct RoundRobin {
    queue: RunQueues,
    slice: u64,
}

impl Scheduler for RoundRobin {
    fn new(config: &SchedConfig) -> Self {
        // Sized once so the hot path never allocates.
        RoundRobin {
            queue: RunQueues::new(config.vcpus.len(), 1),
            slice: config.slice,
        }
    }

    // The core wakes only a vCPU that is neither queued nor running, and
    // hands back only the one it was given: no check for one queued twice.
    fn wake(&mut self, vcpu: VcpuId, _now: u64) {
        self.queue.push_back(QUEUE, vcpu);
    }

    fn descheduled(&mut self, _cpu: CpuId, vcpu: VcpuId, _now: u64, runnable: bool) {
        if runnable {
            self.queue.push_back(QUEUE, vcpu);
        }
    }

    fn remove(&mut self, vcpu: VcpuId) {
        self.queue.remove(vcpu);
    }

    fn pick_next(&mut self, _cpu: CpuId, now: u64) -> Pick {
        match self.queue.pop_front(QUEUE) {
            Some(vcpu) => Pick::Run {
                vcpu,
                until: (!self.queue.is_empty(QUEUE)).then(|| now + self.slice),
            },
            None => Pick::Idle { until: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hv::sched::VcpuParams;

    const CPU: CpuId = CpuId(0);

    impl RoundRobin {
        fn steps(&self) -> u64 {
            self.queue.steps()
        }
    }

    fn rr(vcpus: usize, slice: u64) -> RoundRobin {
        let params: Vec<_> = (0..vcpus as u32).map(VcpuParams::of_vm).collect();
        RoundRobin::new(&SchedConfig {
            cpus: 1,
            slice,
            ticks_per_second: 1_000_000,
            vcpus: &params,
            windows: &[],
        })
    }

    /// Runs the scheduler against a simulated clock where every vCPU uses
    /// its whole slice; returns the CPU time each got.
    fn simulate(sched: &mut RoundRobin, vcpus: usize, duration: u64) -> Vec<u64> {
        let mut used = vec![0; vcpus];
        let mut now = 0;
        while now < duration {
            let Pick::Run { vcpu, until } = sched.pick_next(CPU, now) else {
                panic!("someone is runnable")
            };
            let end = until.unwrap_or(duration).min(duration);
            used[vcpu.0 as usize] += end - now;
            now = end;
            sched.descheduled(CPU, vcpu, now, true);
        }
        used
    }

    #[test]
    fn equal_shares_for_spinning_vcpus() {
        let mut sched = rr(3, 100);
        for v in 0..3 {
            sched.wake(VcpuId(v), 0);
        }
        assert_eq!(
            simulate(&mut sched, 3, 30_000),
            vec![10_000, 10_000, 10_000]
        );
    }

    #[test]
    fn turns_follow_arrival_order_and_removed_vcpus_never_run() {
        let mut sched = rr(3, 10);
        for v in [2, 0, 1] {
            sched.wake(VcpuId(v), 0);
        }
        sched.remove(VcpuId(1));
        let order: Vec<_> = (0..4)
            .map(|_| {
                let Pick::Run { vcpu, .. } = sched.pick_next(CPU, 0) else {
                    panic!()
                };
                sched.descheduled(CPU, vcpu, 0, true);
                vcpu.0
            })
            .collect();
        assert_eq!(order, vec![2, 0, 2, 0]);
    }

    #[test]
    fn blocked_vcpus_wait_for_wake_and_an_empty_queue_idles() {
        let mut sched = rr(2, 10);
        sched.wake(VcpuId(0), 0);
        assert_eq!(
            sched.pick_next(CPU, 5),
            Pick::Run {
                vcpu: VcpuId(0),
                until: None
            }
        );
        sched.descheduled(CPU, VcpuId(0), 6, false);
        assert_eq!(sched.pick_next(CPU, 6), Pick::Idle { until: None });
        sched.wake(VcpuId(0), 7);
        sched.wake(VcpuId(1), 7);
        assert_eq!(
            sched.pick_next(CPU, 7),
            Pick::Run {
                vcpu: VcpuId(0),
                until: Some(17)
            }
        );
    }

    /// Issue 16: with 100,000 vCPUs queued, each pick, wake, deschedule
    /// and removal takes a bounded number of steps, where a scan of the
    /// queue would take up to 100,000.
    #[test]
    fn every_event_takes_bounded_steps_among_100_000_vcpus() {
        const VCPUS: u32 = 100_000;
        const BOUND: u64 = 64;
        let mut sched = rr(VCPUS as usize, 10);
        for v in 0..VCPUS {
            sched.wake(VcpuId(v), 0);
        }
        let mut worst = 0;
        let mut count =
            |sched: &mut RoundRobin, what: &str, event: &mut dyn FnMut(&mut RoundRobin)| {
                let before = sched.steps();
                event(sched);
                let steps = sched.steps() - before;
                assert!(steps <= BOUND, "{what} took {steps} steps");
                worst = worst.max(steps);
            };
        for i in 0..10_000 {
            let mut picked = None;
            count(&mut sched, "pick", &mut |s| {
                picked = match s.pick_next(CPU, i) {
                    Pick::Run { vcpu, .. } => Some(vcpu),
                    Pick::Idle { .. } => None,
                }
            });
            let vcpu = picked.expect("someone is runnable");
            let blocks = i % 2 == 0;
            count(&mut sched, "deschedule", &mut |s| {
                s.descheduled(CPU, vcpu, i, !blocks)
            });
            if blocks {
                count(&mut sched, "wake", &mut |s| s.wake(vcpu, i));
            }
            // A VM stops: a vCPU from the middle of the queue goes.
            if i % 10 == 0 {
                let gone = VcpuId(VCPUS / 2 + i as u32 / 10);
                count(&mut sched, "remove", &mut |s| s.remove(gone));
            }
        }
        println!("worst: {worst} steps per event among {VCPUS} vCPUs");
    }
}
