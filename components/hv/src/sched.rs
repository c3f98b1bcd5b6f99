//! The scheduler interface every `sched-*` component implements. The core
//! owns the vCPUs; a scheduler only decides which runnable one runs next and
//! for how long.

/// A vCPU, numbered across the whole image from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuId(pub u32);

/// What to run next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub vcpu: VcpuId,
    /// When to take the CPU back (counter ticks), or `None` to let it run
    /// until it traps by itself: no periodic tick when nothing else waits.
    pub until: Option<u64>,
}

pub trait Scheduler {
    /// A scheduler for `vcpus` vCPUs with a time slice of `slice` ticks.
    /// This is the only place a scheduler may allocate.
    fn new(vcpus: usize, slice: u64) -> Self;

    /// `vcpu` can run (it was just created, or it was preempted or yielded).
    fn make_runnable(&mut self, vcpu: VcpuId, now: u64);

    /// `vcpu` is gone (its VM stopped); it is never picked again.
    fn remove(&mut self, vcpu: VcpuId);

    /// Takes the next vCPU to run off the run queue, or `None` if nothing
    /// is runnable. The caller hands it back with `make_runnable`.
    fn pick_next(&mut self, now: u64) -> Option<Decision>;
}
