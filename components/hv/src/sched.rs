//! The scheduler interface every `sched-*` component implements. The core
//! owns the vCPUs and their state; a scheduler only decides which runnable
//! vCPU a physical CPU runs next, and until when.
//!
//! The protocol, per physical CPU: `pick_next` hands out a vCPU (it is then
//! running, not queued); when it stops running the core calls `descheduled`
//! with whether it can still run (preempted, yielded) or not (blocked in
//! WFI, or its VM stopped). A blocked vCPU comes back with `wake`. A vCPU
//! whose VM is gone is `remove`d and never picked again.

mod queues;

pub use config::vm::DEFAULT_WEIGHT;
pub use queues::{RunQueues, VcpuHeap};

/// A vCPU, numbered across the whole image from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuId(pub u32);

/// A physical CPU, numbered from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuId(pub u32);

/// What the board profile says about one vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuParams {
    /// Index of its VM in the image.
    pub vm: u32,
    /// Relative share of CPU time (credit); [`DEFAULT_WEIGHT`] unless the
    /// profile says.
    pub weight: u32,
    /// Most CPU time it may use, in percent of one CPU (credit); 0 = no cap.
    pub cap_percent: u32,
    /// The physical CPU it is pinned to (static), if any.
    pub cpu: Option<CpuId>,
}

impl VcpuParams {
    pub fn of_vm(vm: u32) -> Self {
        VcpuParams {
            vm,
            weight: DEFAULT_WEIGHT,
            cap_percent: 0,
            cpu: None,
        }
    }
}

/// One window of an ARINC 653 major frame: VM `vm` owns the CPU for
/// `length` ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub vm: u32,
    pub length: u64,
}

/// Everything a scheduler is built from. Times are counter ticks.
#[derive(Clone, Copy, Debug)]
pub struct SchedConfig<'a> {
    pub cpus: u32,
    /// Time slice.
    pub slice: u64,
    /// Counter ticks per second.
    pub ticks_per_second: u64,
    /// Indexed by `VcpuId`.
    pub vcpus: &'a [VcpuParams],
    /// The major frame, in order (ARINC 653 only).
    pub windows: &'a [Window],
}

/// What a physical CPU does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Run `vcpu`; take the CPU back at `until`, or let it run until it
    /// traps by itself (`None`: no periodic tick when nothing else waits).
    Run { vcpu: VcpuId, until: Option<u64> },
    /// Nothing to run now: wait for an interrupt, or until `until` when the
    /// scheduler will have something (a window opens, a cap is lifted).
    Idle { until: Option<u64> },
}

pub trait Scheduler {
    /// This is the only place a scheduler may allocate.
    fn new(config: &SchedConfig) -> Self;

    /// `vcpu` can run from `now` on: just created, or woken from a wait.
    fn wake(&mut self, vcpu: VcpuId, now: u64);

    /// `vcpu`, which `pick_next` gave to `cpu`, stopped running at `now`.
    /// `runnable`: it was preempted or yielded and goes back in the queue;
    /// otherwise it blocked and waits for `wake`.
    fn descheduled(&mut self, cpu: CpuId, vcpu: VcpuId, now: u64, runnable: bool);

    /// `vcpu` is gone (its VM stopped): never pick it again.
    fn remove(&mut self, vcpu: VcpuId);

    /// What `cpu` should do from `now`.
    fn pick_next(&mut self, cpu: CpuId, now: u64) -> Pick;

    /// The one physical CPU that can run `vcpu`, if only one can (pinned,
    /// partitioned); `None`: any CPU. The core kicks just that CPU when
    /// `vcpu` wakes, so a neighbour's CPU is not woken for nothing.
    fn cpu_for(&self, _vcpu: VcpuId) -> Option<CpuId> {
        None
    }
}
