//! ARINC 653 time partitioning: a major frame of fixed windows, each owned
//! by one VM, repeats forever. During a window only its VM's vCPUs run
//! (round-robin among them); if that VM has nothing runnable the CPU idles
//! until the window ends. Time is never lent to another partition, so what
//! one VM does cannot change when another runs: that is the point.
//!
//! The frame starts at the `now` of the first `pick_next` (not at tick 0),
//! so the first window gets its full length however late the core starts
//! scheduling. Window boundaries are computed from the clock, not counted
//! from picks, so they never drift even when picks come late. A VM with no
//! window never runs. Only CPU 0 runs partitions; other CPUs idle.
//!
//! Each VM has its own run queue, and the window `now` falls in is found by
//! binary search: a pick is O(log windows), everything else O(1).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use hv::sched::{CpuId, Pick, RunQueues, SchedConfig, Scheduler, VcpuId, Window};

/// The CPU that runs the partitions; the others idle.
const PARTITION_CPU: CpuId = CpuId(0);

/// This scheduler as the component table names it (`sched_arinc653::Component`).
pub type Component = Arinc653;

pub struct Arinc653 {
    windows: Vec<Window>,
    /// Where each window ends, from the start of the frame.
    ends: Vec<u64>,
    /// Sum of the window lengths.
    frame: u64,
    /// When the first major frame began (the first pick).
    start: Option<u64>,
    /// Indexed by `VcpuId`.
    vm_of: Vec<u32>,
    /// One list per VM (indexed by `vm_of`): its runnable vCPUs in arrival
    /// order; each window takes the first of its own VM, which makes it
    /// round-robin within the VM.
    queues: RunQueues,
    slice: u64,
    /// Windows looked at, for the scale test.
    #[cfg(test)]
    steps: u64,
}

impl Arinc653 {
    /// The window `now` falls in and when it ends.
    fn window_at(&mut self, now: u64) -> Option<(Window, u64)> {
        if self.frame == 0 {
            return None;
        }
        let start = *self.start.get_or_insert(now);
        let offset = now.saturating_sub(start) % self.frame;
        let frame_start = now - offset;
        // The first window that ends after `offset`.
        let (mut low, mut high) = (0, self.ends.len());
        while low < high {
            #[cfg(test)]
            {
                self.steps += 1;
            }
            let mid = (low + high) / 2;
            if self.ends[mid] <= offset {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        Some((self.windows[low], frame_start + self.ends[low]))
    }
}

impl Arinc653 {
    fn enqueue(&mut self, vcpu: VcpuId) {
        if let Some(&vm) = self.vm_of.get(vcpu.0 as usize) {
            self.queues.push_back(vm as usize, vcpu);
        }
    }
}

impl Scheduler for Arinc653 {
    fn new(config: &SchedConfig) -> Self {
        let ends: Vec<u64> = config
            .windows
            .iter()
            .scan(0, |end, w| {
                *end += w.length;
                Some(*end)
            })
            .collect();
        let vms = config.vcpus.iter().map(|p| p.vm as usize + 1).max();
        Arinc653 {
            windows: config.windows.to_vec(),
            frame: ends.last().copied().unwrap_or(0),
            ends,
            start: None,
            vm_of: config.vcpus.iter().map(|p| p.vm).collect(),
            queues: RunQueues::new(config.vcpus.len(), vms.unwrap_or(0)),
            slice: config.slice,
            #[cfg(test)]
            steps: 0,
        }
    }

    // The core keeps each vCPU's state and wakes only one that is neither
    // queued nor running: the queue is all this scheduler holds.
    fn wake(&mut self, vcpu: VcpuId, _now: u64) {
        self.enqueue(vcpu);
    }

    fn descheduled(&mut self, _cpu: CpuId, vcpu: VcpuId, _now: u64, runnable: bool) {
        if runnable {
            self.enqueue(vcpu);
        }
    }

    fn remove(&mut self, vcpu: VcpuId) {
        self.queues.remove(vcpu);
    }

    fn cpu_for(&self, _vcpu: VcpuId) -> Option<CpuId> {
        Some(PARTITION_CPU)
    }

    fn pick_next(&mut self, cpu: CpuId, now: u64) -> Pick {
        if cpu != PARTITION_CPU {
            return Pick::Idle { until: None };
        }
        let Some((window, end)) = self.window_at(now) else {
            return Pick::Idle { until: None };
        };
        let Some(vcpu) = self.queues.pop_front(window.vm as usize) else {
            // The partition has nothing to do: its time stays its own.
            return Pick::Idle { until: Some(end) };
        };
        // Take turns only if a sibling in the same VM is waiting; the window
        // end is always a deadline.
        let sibling = !self.queues.is_empty(window.vm as usize);
        let until = if sibling {
            end.min(now + self.slice)
        } else {
            end
        };
        Pick::Run {
            vcpu,
            until: Some(until),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hv::sched::VcpuParams;

    const CPU: CpuId = CpuId(0);

    impl Arinc653 {
        /// Windows looked at and queue links followed.
        fn steps(&self) -> u64 {
            self.steps + self.queues.steps()
        }
    }

    fn build(vms: &[u32], windows: &[Window], slice: u64) -> Arinc653 {
        let params: Vec<_> = vms.iter().map(|&vm| VcpuParams::of_vm(vm)).collect();
        Arinc653::new(&SchedConfig {
            cpus: 1,
            slice,
            ticks_per_second: 1_000_000,
            vcpus: &params,
            windows,
        })
    }

    /// Who had the CPU from `at` on: a vCPU, or nobody.
    #[derive(Debug, PartialEq)]
    struct Span {
        at: u64,
        vcpu: Option<u32>,
    }

    /// Every vCPU runs until its deadline and stays runnable; the CPU idles
    /// until its deadline. Returns each span and the time each vCPU got.
    fn simulate(
        sched: &mut Arinc653,
        vcpus: usize,
        from: u64,
        to: u64,
    ) -> (Vec<Span>, Vec<u64>, u64) {
        let (mut spans, mut used, mut idle) = (Vec::new(), vec![0; vcpus], 0);
        let mut now = from;
        while now < to {
            match sched.pick_next(CPU, now) {
                Pick::Run { vcpu, until } => {
                    let end = until.expect("partitions always have a deadline").min(to);
                    spans.push(Span {
                        at: now,
                        vcpu: Some(vcpu.0),
                    });
                    used[vcpu.0 as usize] += end - now;
                    now = end;
                    sched.descheduled(CPU, vcpu, now, true);
                }
                Pick::Idle { until } => {
                    let end = until.expect("a window always ends").min(to);
                    spans.push(Span {
                        at: now,
                        vcpu: None,
                    });
                    idle += end - now;
                    now = end;
                }
            }
        }
        (spans, used, idle)
    }

    #[test]
    fn every_partition_runs_on_the_partition_cpu() {
        let sched = build(&[0, 1], &[], 10);
        for v in 0..2 {
            assert_eq!(sched.cpu_for(VcpuId(v)), Some(CPU));
        }
        let mut sched = build(&[0], &[Window { vm: 0, length: 10 }], 10);
        sched.wake(VcpuId(0), 0);
        assert_eq!(sched.pick_next(CpuId(1), 0), Pick::Idle { until: None });
        assert!(matches!(sched.pick_next(CPU, 0), Pick::Run { .. }));
    }

    #[test]
    fn windows_start_on_time_and_each_vm_gets_exactly_its_windows() {
        // VM 0 (vCPUs 0, 1) 300, VM 1 (vCPU 2) 200, VM 0 again 100,
        // VM 2 (vCPU 3) 400. The frame starts at the first pick, tick 1234.
        let windows = [
            Window { vm: 0, length: 300 },
            Window { vm: 1, length: 200 },
            Window { vm: 0, length: 100 },
            Window { vm: 2, length: 400 },
        ];
        let mut sched = build(&[0, 0, 1, 2], &windows, 70);
        for v in 0..4 {
            sched.wake(VcpuId(v), 0);
        }
        let start = 1234;
        let frames = 7;
        let (spans, used, idle) = simulate(&mut sched, 4, start, start + frames * 1000);
        println!("7 frames of 1000 ticks: vCPU time {used:?}, idle {idle}");
        assert_eq!(idle, 0);
        // VM 0: 400 per frame, split evenly by its two vCPUs' round-robin.
        assert_eq!(used[0] + used[1], frames * 400);
        assert!(used[0].abs_diff(used[1]) <= 70, "{used:?}");
        assert_eq!(used[2], frames * 200);
        assert_eq!(used[3], frames * 400);
        // Each window opens exactly on its boundary with its own VM.
        let vm = |v: Option<u32>| v.map(|v| [0, 0, 1, 2][v as usize]);
        for f in 0..frames {
            for (offset, w) in [(0, 0), (300, 1), (500, 2), (600, 3)] {
                let at = start + f * 1000 + offset;
                let span = spans
                    .iter()
                    .find(|s| s.at == at)
                    .unwrap_or_else(|| panic!("nothing starts at {at}"));
                assert_eq!(
                    vm(span.vcpu),
                    Some(windows[w].vm),
                    "window {w} of frame {f}"
                );
            }
        }
        // And no vCPU ever runs outside its VM's windows.
        for s in &spans {
            let offset = (s.at - start) % 1000;
            let owner = match offset {
                0..300 | 500..600 => 0,
                300..500 => 1,
                _ => 2,
            };
            assert_eq!(vm(s.vcpu), Some(owner), "span at {}", s.at);
        }
    }

    #[test]
    fn an_idle_partition_keeps_its_time() {
        // VM 1's only vCPU never wakes; VM 2 has no window at all.
        let windows = [Window { vm: 0, length: 600 }, Window { vm: 1, length: 400 }];
        let mut sched = build(&[0, 1, 2], &windows, 100);
        sched.wake(VcpuId(0), 0);
        sched.wake(VcpuId(2), 0);
        let (spans, used, idle) = simulate(&mut sched, 3, 0, 5000);
        assert_eq!(used, vec![3000, 0, 0]);
        assert_eq!(idle, 2000);
        // The idle spans are exactly VM 1's windows, idling to their end.
        let idle_at: Vec<_> = spans
            .iter()
            .filter(|s| s.vcpu.is_none())
            .map(|s| s.at)
            .collect();
        assert_eq!(idle_at, vec![600, 1600, 2600, 3600, 4600]);
        assert_eq!(sched.pick_next(CpuId(1), 0), Pick::Idle { until: None });
    }

    #[test]
    fn blocked_vcpus_wait_for_wake_within_their_window() {
        let windows = [Window { vm: 0, length: 100 }, Window { vm: 1, length: 100 }];
        let mut sched = build(&[0, 1], &windows, 10);
        sched.wake(VcpuId(0), 0);
        sched.wake(VcpuId(1), 0);
        // Frame starts at 50. VM 0 alone in its window: runs to the end.
        assert_eq!(
            sched.pick_next(CPU, 50),
            Pick::Run {
                vcpu: VcpuId(0),
                until: Some(150)
            }
        );
        sched.descheduled(CPU, VcpuId(0), 80, false);
        assert_eq!(sched.pick_next(CPU, 80), Pick::Idle { until: Some(150) });
        sched.wake(VcpuId(0), 90);
        assert_eq!(
            sched.pick_next(CPU, 90),
            Pick::Run {
                vcpu: VcpuId(0),
                until: Some(150)
            }
        );
        sched.descheduled(CPU, VcpuId(0), 150, true);
        // A late pick lands in the right window and keeps its end.
        assert_eq!(
            sched.pick_next(CPU, 153),
            Pick::Run {
                vcpu: VcpuId(1),
                until: Some(250)
            }
        );
        // Its VM stops while it runs: handed back, not runnable, removed.
        sched.descheduled(CPU, VcpuId(1), 200, false);
        sched.remove(VcpuId(1));
        assert_eq!(sched.pick_next(CPU, 200), Pick::Idle { until: Some(250) });
        // VM 1's window stays its own, idle, in every later frame.
        assert_eq!(sched.pick_next(CPU, 360), Pick::Idle { until: Some(450) });
    }

    /// Issue 16: 100,000 vCPUs in 10,000 VMs of 10, one window each. Each
    /// pick, wake, deschedule and removal takes a bounded number of steps,
    /// where a scan of the windows or the queue would take thousands.
    #[test]
    fn every_event_takes_bounded_steps_among_100_000_vcpus() {
        const VMS: u32 = 10_000;
        const VCPUS: u32 = 100_000;
        const BOUND: u64 = 64;
        let vms: Vec<_> = (0..VCPUS).map(|v| v % VMS).collect();
        let windows: Vec<_> = (0..VMS).map(|vm| Window { vm, length: 10 }).collect();
        let mut sched = build(&vms, &windows, 3);
        for v in 0..VCPUS {
            sched.wake(VcpuId(v), 0);
        }
        let mut worst = 0;
        let mut count = |sched: &mut Arinc653, what: &str, event: &mut dyn FnMut(&mut Arinc653)| {
            let before = sched.steps();
            event(sched);
            let steps = sched.steps() - before;
            assert!(steps <= BOUND, "{what} took {steps} steps");
            worst = worst.max(steps);
        };
        let mut now = 0;
        for i in 0..10_000u64 {
            // Jump around the major frame, to windows far down the list.
            now += 10 * 7919 + 1;
            let mut picked = None;
            count(&mut sched, "pick", &mut |s| {
                picked = match s.pick_next(CPU, now) {
                    Pick::Run { vcpu, .. } => Some(vcpu),
                    Pick::Idle { .. } => None,
                }
            });
            if let Some(vcpu) = picked {
                let blocks = i % 2 == 0;
                count(&mut sched, "deschedule", &mut |s| {
                    s.descheduled(CPU, vcpu, now, !blocks)
                });
                if blocks {
                    count(&mut sched, "wake", &mut |s| s.wake(vcpu, now));
                }
            }
            if i % 10 == 0 {
                let gone = VcpuId((i * 104_729 % VCPUS as u64) as u32);
                count(&mut sched, "remove", &mut |s| s.remove(gone));
            }
        }
        println!("worst: {worst} steps per event among {VCPUS} vCPUs");
    }
}
