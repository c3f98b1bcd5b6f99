//! Static partitioning: every vCPU owns one physical CPU for good (its
//! `VcpuParams::cpu`, else vCPU i goes to CPU i) and no CPU is shared.
//! There is nothing to decide at run time, so there is no scheduling tick
//! at all, and every operation is one array lookup (O(1)): a CPU runs its vCPU with no deadline, or idles until an
//! interrupt when that vCPU is blocked. This gives the lowest and most
//! predictable latency, for boards with a CPU per guest to spare.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use hv::sched::{CpuId, Pick, SchedConfig, Scheduler, VcpuId};

/// What one physical CPU owns.
#[derive(Clone, Copy)]
struct Slot {
    vcpu: Option<VcpuId>,
    /// Queued: woken or preempted, and not running. The core keeps the
    /// vCPU's state; this is only the one-place queue of this CPU.
    ready: bool,
}

/// This scheduler as the component table names it (`sched_static::Component`).
pub type Component = Static;

pub struct Static {
    /// Indexed by `CpuId`.
    slots: Vec<Slot>,
    /// Indexed by `VcpuId`: the CPU it is pinned to.
    home: Vec<CpuId>,
    /// Slots looked up, for the scale test.
    #[cfg(test)]
    steps: u64,
}

impl Static {
    fn slot_of(&mut self, vcpu: VcpuId) -> Option<&mut Slot> {
        #[cfg(test)]
        {
            self.steps += 1;
        }
        let cpu = *self.home.get(vcpu.0 as usize)?;
        self.slots.get_mut(cpu.0 as usize)
    }
}

impl Scheduler for Static {
    fn new(config: &SchedConfig) -> Self {
        let mut slots = alloc::vec![Slot { vcpu: None, ready: false }; config.cpus as usize];
        let mut home = Vec::with_capacity(config.vcpus.len());
        // The composer rejects these profiles at build time; the panics are
        // the last line of defence, not an error path.
        for (i, params) in config.vcpus.iter().enumerate() {
            let vcpu = VcpuId(i as u32);
            let cpu = params.cpu.unwrap_or(CpuId(i as u32));
            let slot = slots.get_mut(cpu.0 as usize).unwrap_or_else(|| {
                panic!(
                    "static scheduler: vCPU {} is pinned to CPU {} but the board has {} CPUs",
                    i, cpu.0, config.cpus
                )
            });
            if let Some(other) = slot.vcpu {
                panic!(
                    "static scheduler: vCPUs {} and {} are both pinned to CPU {}",
                    other.0, i, cpu.0
                );
            }
            slot.vcpu = Some(vcpu);
            home.push(cpu);
        }
        Static {
            slots,
            home,
            #[cfg(test)]
            steps: 0,
        }
    }

    fn wake(&mut self, vcpu: VcpuId, _now: u64) {
        if let Some(slot) = self.slot_of(vcpu) {
            slot.ready = true;
        }
    }

    fn descheduled(&mut self, _cpu: CpuId, vcpu: VcpuId, _now: u64, runnable: bool) {
        if let Some(slot) = self.slot_of(vcpu) {
            slot.ready = runnable;
        }
    }

    fn remove(&mut self, vcpu: VcpuId) {
        if let Some(slot) = self.slot_of(vcpu) {
            // The CPU idles from now on: its vCPU can never come back.
            *slot = Slot {
                vcpu: None,
                ready: false,
            };
        }
    }

    fn cpu_for(&self, vcpu: VcpuId) -> Option<CpuId> {
        self.home.get(vcpu.0 as usize).copied()
    }

    fn pick_next(&mut self, cpu: CpuId, _now: u64) -> Pick {
        #[cfg(test)]
        {
            self.steps += 1;
        }
        match self.slots.get_mut(cpu.0 as usize) {
            Some(Slot {
                vcpu: Some(vcpu),
                ready: ready @ true,
            }) => {
                *ready = false;
                Pick::Run {
                    vcpu: *vcpu,
                    until: None,
                }
            }
            _ => Pick::Idle { until: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hv::sched::VcpuParams;

    fn build(cpus: u32, vcpus: &[VcpuParams]) -> Static {
        Static::new(&SchedConfig {
            cpus,
            slice: 100,
            ticks_per_second: 1_000_000,
            vcpus,
            windows: &[],
        })
    }

    fn pinned(vm: u32, cpu: u32) -> VcpuParams {
        VcpuParams {
            cpu: Some(CpuId(cpu)),
            ..VcpuParams::of_vm(vm)
        }
    }

    #[test]
    fn each_cpu_runs_its_own_vcpu_with_no_deadline() {
        // vCPU 0 is pinned to CPU 2, vCPU 1 defaults to CPU 1, vCPU 2 is
        // pinned to CPU 0.
        let mut sched = build(4, &[pinned(0, 2), VcpuParams::of_vm(1), pinned(2, 0)]);
        for v in 0..3 {
            sched.wake(VcpuId(v), 0);
        }
        for round in 0..3 {
            let now = round * 1000;
            assert_eq!(
                sched.pick_next(CpuId(0), now),
                Pick::Run {
                    vcpu: VcpuId(2),
                    until: None
                }
            );
            assert_eq!(
                sched.pick_next(CpuId(1), now),
                Pick::Run {
                    vcpu: VcpuId(1),
                    until: None
                }
            );
            assert_eq!(
                sched.pick_next(CpuId(2), now),
                Pick::Run {
                    vcpu: VcpuId(0),
                    until: None
                }
            );
            assert_eq!(sched.pick_next(CpuId(3), now), Pick::Idle { until: None });
            for (cpu, v) in [(0, 2), (1, 1), (2, 0)] {
                sched.descheduled(CpuId(cpu), VcpuId(v), now + 500, true);
            }
        }
    }

    #[test]
    fn blocked_idles_until_woken_and_removed_never_runs() {
        let mut sched = build(2, &[VcpuParams::of_vm(0), VcpuParams::of_vm(1)]);
        // Not yet woken: nothing to run.
        assert_eq!(sched.pick_next(CpuId(0), 0), Pick::Idle { until: None });
        sched.wake(VcpuId(0), 0);
        sched.wake(VcpuId(1), 0);
        assert_eq!(
            sched.pick_next(CpuId(0), 1),
            Pick::Run {
                vcpu: VcpuId(0),
                until: None
            }
        );
        sched.descheduled(CpuId(0), VcpuId(0), 10, false);
        assert_eq!(sched.pick_next(CpuId(0), 10), Pick::Idle { until: None });
        // The other CPU is unaffected.
        assert_eq!(
            sched.pick_next(CpuId(1), 10),
            Pick::Run {
                vcpu: VcpuId(1),
                until: None
            }
        );
        sched.wake(VcpuId(0), 20);
        assert_eq!(
            sched.pick_next(CpuId(0), 20),
            Pick::Run {
                vcpu: VcpuId(0),
                until: None
            }
        );
        sched.descheduled(CpuId(1), VcpuId(1), 30, false);
        sched.remove(VcpuId(1));
        assert_eq!(sched.pick_next(CpuId(1), 30), Pick::Idle { until: None });
    }

    #[test]
    fn a_waking_vcpu_names_its_own_cpu() {
        let sched = build(3, &[pinned(0, 2), VcpuParams::of_vm(1)]);
        assert_eq!(sched.cpu_for(VcpuId(0)), Some(CpuId(2)));
        assert_eq!(sched.cpu_for(VcpuId(1)), Some(CpuId(1)));
    }

    #[test]
    #[should_panic(expected = "vCPUs 0 and 1 are both pinned to CPU 1")]
    fn two_vcpus_on_one_cpu_are_refused() {
        build(2, &[pinned(0, 1), VcpuParams::of_vm(0)]);
    }

    #[test]
    #[should_panic(expected = "vCPU 2 is pinned to CPU 2 but the board has 2 CPUs")]
    fn more_vcpus_than_cpus_are_refused() {
        build(
            2,
            &[
                VcpuParams::of_vm(0),
                VcpuParams::of_vm(1),
                VcpuParams::of_vm(2),
            ],
        );
    }

    /// Issue 16: with 100,000 vCPUs on 100,000 CPUs, each pick, wake,
    /// deschedule and removal looks up one slot, whatever the count.
    #[test]
    fn every_event_takes_bounded_steps_among_100_000_vcpus() {
        const VCPUS: u32 = 100_000;
        const BOUND: u64 = 64;
        let params: Vec<_> = (0..VCPUS).map(VcpuParams::of_vm).collect();
        let mut sched = build(VCPUS, &params);
        for v in 0..VCPUS {
            sched.wake(VcpuId(v), 0);
        }
        let mut worst = 0;
        let mut count = |sched: &mut Static, what: &str, event: &mut dyn FnMut(&mut Static)| {
            let before = sched.steps;
            event(sched);
            let steps = sched.steps - before;
            assert!(steps <= BOUND, "{what} took {steps} steps");
            worst = worst.max(steps);
        };
        for i in 0..10_000u64 {
            let cpu = CpuId((i * 7919 % VCPUS as u64) as u32);
            let vcpu = VcpuId(cpu.0);
            // A removed vCPU's CPU idles; the others run theirs.
            count(&mut sched, "pick", &mut |s| {
                s.pick_next(cpu, i);
            });
            count(&mut sched, "deschedule", &mut |s| {
                s.descheduled(cpu, vcpu, i, false)
            });
            count(&mut sched, "wake", &mut |s| s.wake(vcpu, i));
            if i % 10 == 0 {
                let gone = VcpuId((i * 104_729 % VCPUS as u64) as u32);
                count(&mut sched, "remove", &mut |s| s.remove(gone));
            }
        }
        println!("worst: {worst} steps per event among {VCPUS} vCPUs");
    }
}
