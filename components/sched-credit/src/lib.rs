//! Proportional share with caps, in the manner of Xen's credit scheduler.
//!
//! Every accounting period (30 ms, Xen's default) the vCPUs that are active
//! (runnable, running, or ran during the last period) share the period's
//! CPU time as credit in proportion to their `weight`; running burns credit
//! at the rate of time used. vCPUs with credit left (UNDER) run before those
//! without (OVER), round-robin within a priority, so over a period each
//! vCPU gets its weighted share and spare time still goes to someone (the
//! scheduler is work-conserving). A vCPU that wakes from blocking with
//! credit left is BOOSTed ahead of both for one turn, so an interactive or
//! interrupt-driven guest answers quickly without getting more than its
//! share: boosting spends the same credit.
//!
//! `cap_percent` is a hard limit, not a share: once a vCPU has used that
//! much of one CPU in the current period it is parked until the period
//! ends, even if the CPU then idles. Caps are per period, so over any span
//! a capped vCPU is off by at most one period's cap.
//!
//! Periods are aligned to counter tick 0 and accounted lazily when the core
//! calls in; deadlines never cross a period end while anything else waits,
//! so accounting happens on time. A vCPU pinned with `VcpuParams::cpu` only
//! runs on that CPU; others run on any CPU from one shared queue.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use hv::sched::{CpuId, Pick, SchedConfig, Scheduler, VcpuId};

/// The accounting period, in milliseconds (Xen: 3 ticks of 10 ms).
pub const PERIOD_MS: u64 = 30;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Blocked,
    Queued,
    Running { since: u64 },
    Removed,
}

/// Higher runs first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prio {
    Over,
    Under,
    Boost,
}

struct Vcpu {
    weight: u64,
    /// Ticks per period it may use; `None`: uncapped.
    cap: Option<u64>,
    cpu: Option<CpuId>,
    state: State,
    /// Ticks it may still use this period before it is OVER; may go
    /// negative by up to a period (a slice overran its credit), which is
    /// repaid from the next period's share.
    credit: i64,
    /// Ticks used this period, for the cap.
    used: u64,
    boost: bool,
}

impl Vcpu {
    fn prio(&self) -> Prio {
        if self.boost {
            Prio::Boost
        } else if self.credit > 0 {
            Prio::Under
        } else {
            Prio::Over
        }
    }

    fn capped_out(&self) -> bool {
        self.cap.is_some_and(|cap| self.used >= cap)
    }

    fn may_run_on(&self, cpu: CpuId) -> bool {
        self.cpu.is_none_or(|c| c == cpu)
    }
}

/// This scheduler as the component table names it (`sched_credit::Component`).
pub type Component = Credit;

pub struct Credit {
    /// Indexed by `VcpuId`.
    vcpus: Vec<Vcpu>,
    /// Runnable vCPUs, in the order they became runnable; the first of the
    /// highest priority runs, which makes each priority round-robin.
    queue: VecDeque<VcpuId>,
    period: u64,
    /// End of the current accounting period; 0 before the first one.
    period_end: u64,
    cpus: u64,
    slice: u64,
}

impl Credit {
    /// Burns the credit of a running `vcpu` for its time up to `upto`.
    fn charge(&mut self, vcpu: usize, upto: u64) {
        let period = self.period as i64;
        let v = &mut self.vcpus[vcpu];
        if let State::Running { since } = v.state {
            let ran = upto.saturating_sub(since);
            v.credit = (v.credit - ran as i64).max(-period);
            v.used += ran;
            v.state = State::Running {
                since: since.max(upto),
            };
        }
    }

    /// Starts a new accounting period if `now` is past the current one.
    fn account(&mut self, now: u64) {
        if now < self.period_end {
            return;
        }
        let start = now - now % self.period;
        // Time run before the boundary belongs to the period that ends.
        for i in 0..self.vcpus.len() {
            self.charge(i, start);
        }
        // Who shares this period: whoever wants the CPU, and whoever used
        // it lately (a vCPU that blocks often still earns its share).
        let active = |v: &Vcpu| match v.state {
            State::Queued | State::Running { .. } => true,
            State::Blocked => v.used > 0,
            State::Removed => false,
        };
        let total: u64 = self
            .vcpus
            .iter()
            .filter(|v| active(v))
            .map(|v| v.weight)
            .sum();
        let pool = self.period as u128 * self.cpus as u128;
        for v in &mut self.vcpus {
            if active(v) {
                // A vCPU can use at most one CPU, so it earns at most one
                // period; unused credit is not hoarded beyond that either.
                let earn =
                    (pool * v.weight as u128 / total as u128).min(self.period as u128) as i64;
                v.credit = (v.credit + earn).min(earn);
            }
            v.used = 0;
        }
        self.period_end = start + self.period;
    }
}

impl Scheduler for Credit {
    fn new(config: &SchedConfig) -> Self {
        let period = (config.ticks_per_second * PERIOD_MS / 1000).max(1);
        let vcpus = config
            .vcpus
            .iter()
            .map(|p| Vcpu {
                weight: p.weight.max(1) as u64,
                // A cap of a whole CPU or more limits nothing.
                cap: (p.cap_percent > 0 && p.cap_percent < 100)
                    .then(|| period * p.cap_percent as u64 / 100),
                cpu: p.cpu,
                state: State::Blocked,
                credit: 0,
                used: 0,
                boost: false,
            })
            .collect();
        Credit {
            vcpus,
            // Sized once: each vCPU is queued at most once, so this never grows.
            queue: VecDeque::with_capacity(config.vcpus.len()),
            period,
            period_end: 0,
            cpus: config.cpus.max(1) as u64,
            slice: config.slice.max(1),
        }
    }

    // The core keeps each vCPU's run state and keeps to the protocol (a
    // wake only for one neither queued nor running); `state` here is what
    // the accounting needs (who is active, since when one runs), not a
    // guard.
    fn wake(&mut self, vcpu: VcpuId, _now: u64) {
        if let Some(v) = self.vcpus.get_mut(vcpu.0 as usize) {
            v.state = State::Queued;
            v.boost = v.credit > 0;
            self.queue.push_back(vcpu);
        }
    }

    fn descheduled(&mut self, _cpu: CpuId, vcpu: VcpuId, now: u64, runnable: bool) {
        let i = vcpu.0 as usize;
        if i >= self.vcpus.len() {
            return;
        }
        self.account(now);
        self.charge(i, now);
        let v = &mut self.vcpus[i];
        // Boost lasts one turn.
        v.boost = false;
        if runnable {
            v.state = State::Queued;
            self.queue.push_back(vcpu);
        } else {
            v.state = State::Blocked;
        }
    }

    fn remove(&mut self, vcpu: VcpuId) {
        if let Some(v) = self.vcpus.get_mut(vcpu.0 as usize) {
            if v.state == State::Queued {
                self.queue.retain(|&q| q != vcpu);
            }
            v.state = State::Removed;
        }
    }

    fn cpu_for(&self, vcpu: VcpuId) -> Option<CpuId> {
        self.vcpus.get(vcpu.0 as usize).and_then(|v| v.cpu)
    }

    fn pick_next(&mut self, cpu: CpuId, now: u64) -> Pick {
        self.account(now);
        let mut best: Option<(usize, Prio)> = None;
        let mut parked = false;
        for (i, id) in self.queue.iter().enumerate() {
            let v = &self.vcpus[id.0 as usize];
            if !v.may_run_on(cpu) {
                continue;
            }
            if v.capped_out() {
                parked = true;
                continue;
            }
            // Strictly greater: the first of a priority wins (round-robin).
            if best.is_none_or(|(_, p)| v.prio() > p) {
                best = Some((i, v.prio()));
            }
        }
        let Some((i, _)) = best else {
            // Wake when the caps lift, or on an interrupt if nobody waits.
            return Pick::Idle {
                until: parked.then_some(self.period_end),
            };
        };
        let vcpu = self.queue.remove(i).expect("index from the queue");
        let v = &mut self.vcpus[vcpu.0 as usize];
        v.state = State::Running { since: now };
        let until = match v.cap {
            // Alone and uncapped: no tick; the core re-picks when one wakes.
            None if self.queue.is_empty() => None,
            None => Some((now + self.slice).min(self.period_end)),
            Some(cap) => Some(
                (now + self.slice)
                    .min(self.period_end)
                    .min(now + (cap - v.used)),
            ),
        };
        Pick::Run { vcpu, until }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hv::sched::VcpuParams;

    const CPU: CpuId = CpuId(0);
    const TPS: u64 = 62_500_000;
    const SLICE: u64 = TPS * 2 / 1000;

    fn credit(params: &[VcpuParams]) -> Credit {
        let mut sched = Credit::new(&SchedConfig {
            cpus: 1,
            slice: SLICE,
            ticks_per_second: TPS,
            vcpus: params,
            windows: &[],
        });
        for v in 0..params.len() as u32 {
            sched.wake(VcpuId(v), 0);
        }
        sched
    }

    fn weighted(vm: u32, weight: u32) -> VcpuParams {
        VcpuParams {
            weight,
            ..VcpuParams::of_vm(vm)
        }
    }

    fn with_cap(vm: u32, cap_percent: u32) -> VcpuParams {
        VcpuParams {
            cap_percent,
            ..VcpuParams::of_vm(vm)
        }
    }

    /// Runs one CPU against a simulated clock where every vCPU spins (uses
    /// its whole turn and stays runnable); returns the time each vCPU got
    /// and the time the CPU idled.
    fn simulate(sched: &mut Credit, vcpus: usize, duration: u64) -> (Vec<u64>, u64) {
        let (mut used, mut idle) = (vec![0; vcpus], 0);
        let mut now = 0;
        while now < duration {
            match sched.pick_next(CPU, now) {
                Pick::Run { vcpu, until } => {
                    let end = until.unwrap_or(duration).min(duration);
                    assert!(end > now, "a turn must make progress");
                    used[vcpu.0 as usize] += end - now;
                    now = end;
                    sched.descheduled(CPU, vcpu, now, true);
                }
                Pick::Idle { until } => {
                    let end = until
                        .expect("spinning vCPUs are only ever parked by a cap")
                        .min(duration);
                    assert!(end > now, "idling must make progress");
                    idle += end - now;
                    now = end;
                }
            }
        }
        (used, idle)
    }

    fn share(part: u64, of: u64) -> f64 {
        part as f64 / of as f64
    }

    #[test]
    fn only_a_pinned_vcpu_names_its_cpu() {
        let pinned = VcpuParams {
            cpu: Some(CpuId(1)),
            ..VcpuParams::of_vm(0)
        };
        let sched = credit(&[pinned, VcpuParams::of_vm(1)]);
        assert_eq!(sched.cpu_for(VcpuId(0)), Some(CpuId(1)));
        assert_eq!(sched.cpu_for(VcpuId(1)), None);
    }

    #[test]
    fn weights_256_512_share_1_to_2() {
        let mut sched = credit(&[weighted(0, 256), weighted(1, 512)]);
        let (used, idle) = simulate(&mut sched, 2, TPS);
        let ratio = share(used[1], used[0]);
        println!("256:512 over 1 s: {used:?} ticks, ratio 1:{ratio:.4}");
        assert_eq!(idle, 0);
        assert!((ratio - 2.0).abs() <= 0.05 * 2.0, "ratio 1:{ratio}");
    }

    #[test]
    fn three_vms_256_256_512_share_1_1_2() {
        let mut sched = credit(&[weighted(0, 256), weighted(1, 256), weighted(2, 512)]);
        let (used, idle) = simulate(&mut sched, 3, TPS);
        let (b, c) = (share(used[1], used[0]), share(used[2], used[0]));
        println!("256:256:512 over 1 s: {used:?} ticks, ratio 1:{b:.4}:{c:.4}");
        assert_eq!(idle, 0);
        assert!((b - 1.0).abs() <= 0.05, "1:{b}:{c}");
        assert!((c - 2.0).abs() <= 0.05 * 2.0, "1:{b}:{c}");
    }

    #[test]
    fn a_25_percent_cap_holds_beside_an_uncapped_vcpu() {
        let mut sched = credit(&[with_cap(0, 25), VcpuParams::of_vm(1)]);
        let (used, idle) = simulate(&mut sched, 2, TPS);
        let capped = share(used[0], TPS) * 100.0;
        println!("cap 25% beside uncapped over 1 s: {used:?} ticks, capped got {capped:.3}%");
        // Work-conserving: the uncapped vCPU takes all the rest.
        assert_eq!(idle, 0);
        assert!((capped - 25.0).abs() <= 1.0, "{capped}%");
        // The 0.5% over is the last, partial period; over whole periods
        // (3 s = 100 periods) the cap is exact.
        let mut sched = credit(&[with_cap(0, 25), VcpuParams::of_vm(1)]);
        assert_eq!(simulate(&mut sched, 2, 3 * TPS).0[0], 3 * TPS / 4);
    }

    #[test]
    fn a_25_percent_cap_holds_alone_and_the_cpu_idles_the_rest() {
        let mut sched = credit(&[with_cap(0, 25)]);
        let (used, idle) = simulate(&mut sched, 1, TPS);
        let (ran, idled) = (share(used[0], TPS) * 100.0, share(idle, TPS) * 100.0);
        println!("cap 25% alone over 1 s: ran {ran:.3}%, idle {idled:.3}%");
        assert!((ran - 25.0).abs() <= 1.0, "{ran}%");
        assert_eq!(used[0] + idle, TPS);
        let mut sched = credit(&[with_cap(0, 25)]);
        assert_eq!(
            simulate(&mut sched, 1, 3 * TPS),
            (vec![3 * TPS / 4], 3 * TPS * 3 / 4)
        );
        // Parked: the CPU sleeps exactly until the period ends.
        let period = TPS * PERIOD_MS / 1000;
        let mut sched = credit(&[with_cap(0, 25)]);
        assert_eq!(
            sched.pick_next(CPU, 0),
            Pick::Run {
                vcpu: VcpuId(0),
                until: Some(SLICE)
            }
        );
        sched.descheduled(CPU, VcpuId(0), period / 4, true);
        assert_eq!(
            sched.pick_next(CPU, period / 4),
            Pick::Idle {
                until: Some(period)
            }
        );
        assert!(matches!(
            sched.pick_next(CPU, period),
            Pick::Run {
                vcpu: VcpuId(0),
                ..
            }
        ));
    }

    #[test]
    fn a_lone_uncapped_vcpu_runs_without_a_tick() {
        let mut sched = credit(&[VcpuParams::of_vm(0), VcpuParams::of_vm(1)]);
        sched.remove(VcpuId(1));
        assert_eq!(
            sched.pick_next(CPU, 0),
            Pick::Run {
                vcpu: VcpuId(0),
                until: None
            }
        );
        sched.descheduled(CPU, VcpuId(0), 10 * TPS, false);
        assert_eq!(sched.pick_next(CPU, 10 * TPS), Pick::Idle { until: None });
    }

    #[test]
    fn blocked_vcpus_wait_for_wake_then_jump_the_queue_with_boost() {
        let mut sched = credit(&[
            VcpuParams::of_vm(0),
            VcpuParams::of_vm(1),
            VcpuParams::of_vm(2),
        ]);
        let mut now = 0;
        // One full turn; returns who ran.
        fn turn(sched: &mut Credit, now: &mut u64, runnable: bool) -> u32 {
            let Pick::Run { vcpu, until } = sched.pick_next(CPU, *now) else {
                panic!("someone is runnable")
            };
            *now = until.expect("others wait");
            sched.descheduled(CPU, vcpu, *now, runnable);
            vcpu.0
        }
        assert_eq!(turn(&mut sched, &mut now, false), 0); // vCPU 0 blocks after one slice
        let order: Vec<_> = (0..6).map(|_| turn(&mut sched, &mut now, true)).collect();
        assert_eq!(order, vec![1, 2, 1, 2, 1, 2]);
        // Woken with credit left: BOOST puts it ahead of both UNDER vCPUs,
        // for one turn only.
        sched.wake(VcpuId(0), now);
        let order: Vec<_> = (0..4).map(|_| turn(&mut sched, &mut now, true)).collect();
        assert_eq!(order, vec![0, 1, 2, 0]);
    }

    #[test]
    fn removed_vcpus_are_never_picked() {
        let mut sched = credit(&[weighted(0, 256), weighted(1, 4096), weighted(2, 256)]);
        // Queued (`credit` wakes every vCPU), then its VM stops.
        sched.remove(VcpuId(1));
        let (used, _) = simulate(&mut sched, 3, TPS / 10);
        assert_eq!(used[1], 0);
        assert_eq!(used[0] + used[2], TPS / 10);
        // Its VM stops while it runs: handed back not runnable, removed.
        let Pick::Run { vcpu, .. } = sched.pick_next(CPU, TPS) else {
            panic!()
        };
        sched.descheduled(CPU, vcpu, TPS + 1, false);
        sched.remove(vcpu);
        for t in 2..10 {
            let Pick::Run { vcpu: next, .. } = sched.pick_next(CPU, TPS + t) else {
                panic!()
            };
            assert_ne!(next, vcpu);
            sched.descheduled(CPU, next, TPS + t, true);
        }
    }
}
