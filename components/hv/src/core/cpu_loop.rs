//! One physical CPU's loop: the same code for the image's CPUs and the host
//! tests. It takes the hypervisor's lock once per exit, and does what needs
//! no lock (running the guest, clearing a resetting VM's RAM, waiting for an
//! interrupt, serving a disk request) outside it, through [`Outside`]. Exits that concern only the
//! vCPU's own registers, and its VM's virtual distributor while nothing of
//! the vCPU's is in the list registers (under the vGIC's own lock), are
//! answered without the hypervisor's lock and without leaving the guest's
//! turn ([`super::exit::handle_fast`]).

use super::{
    exit::{Fast, FastVgic},
    DeviceJob, Hypervisor, Work,
};
use crate::{
    memory::{GuestMemory, GuestSlice},
    platform::{Platform, RawExit},
    sched::{CpuId, Scheduler},
    vgic::Vgic,
};
use core::{cell::RefCell, ops::DerefMut};

/// The lock that guards the hypervisor: the image's ticket lock, or, with
/// one CPU, none.
pub trait HvLock {
    type Hv;
    type Guard<'a>: DerefMut<Target = Self::Hv>
    where
        Self: 'a;
    fn lock(&self) -> Self::Guard<'_>;
    /// Called right after this CPU let the lock go.
    fn after_release(&self) {}
}

impl<T, R: spin::RelaxStrategy> HvLock for spin::mutex::TicketMutex<T, R> {
    type Hv = T;
    type Guard<'a>
        = spin::mutex::TicketMutexGuard<'a, T>
    where
        Self: 'a;
    fn lock(&self) -> Self::Guard<'_> {
        spin::mutex::TicketMutex::lock(self)
    }
    /// Held again at once: another CPU was waiting and has it now. Give way
    /// (`R`'s hint, YIELD in the image). Under QEMU's round-robin TCG the
    /// waiter otherwise waits out this CPU's host time slice and the lock
    /// holds of every exit in it; on hardware it is a hint.
    fn after_release(&self) {
        if self.is_locked() {
            R::relax();
        }
    }
}

/// What a CPU does without the lock.
pub trait Outside<C> {
    /// Enters the guest with `ctx` loaded until it traps.
    fn run_guest(&mut self, ctx: &mut C) -> RawExit;
    /// Zeroes `chunk` of a resetting VM's RAM and cleans it to the point of
    /// coherency.
    fn zero(&mut self, chunk: GuestSlice);
    /// Waits for an interrupt (WFI).
    fn wait_for_interrupt(&mut self);
    /// Serves a device's work ([`DeviceJob::run`]), reaching guest RAM
    /// directly.
    fn device_work(&mut self, job: &mut DeviceJob);
}

/// Runs `cpu` until no VM is left. Console output queued while the lock was
/// held is written after each step, with the lock let go.
pub fn run_cpu<L, P, S, V, O>(hv: &L, cpu: CpuId, outside: &mut O)
where
    L: HvLock<Hv = Hypervisor<P, S, V>>,
    P: Platform,
    S: Scheduler,
    V: Vgic,
    O: Outside<P::Context>,
{
    let (mut work, mut vgic, _) = next(&mut hv.lock(), cpu);
    loop {
        // One lock hold per exit, not two: acting on what the CPU did and
        // picking its next work happen together. A VM exiting at a high
        // rate then costs a neighbour's exit at most one wait.
        let keeps_turn;
        (work, vgic, keeps_turn) = match work {
            Work::Run(vcpu, mut ctx) => {
                let (exit, fast) = loop {
                    let exit = outside.run_guest(&mut ctx);
                    match super::exit::handle_fast(&mut *ctx, &exit, vgic) {
                        Fast::Done => {}
                        fast => break (exit, fast),
                    }
                };
                let mut hv = hv.lock();
                match fast {
                    Fast::Kick(effects) => hv.after_fast(cpu, vcpu, ctx, effects),
                    _ => hv.after_run(cpu, vcpu, ctx, exit),
                }
                next(&mut hv, cpu)
            }
            Work::Zero(vcpu, chunk) => {
                outside.zero(chunk);
                let mut hv = hv.lock();
                hv.after_zero(cpu, vcpu);
                next(&mut hv, cpu)
            }
            Work::Device(mut job) => {
                outside.device_work(&mut job);
                let mut hv = hv.lock();
                hv.after_device(cpu, *job);
                next(&mut hv, cpu)
            }
            Work::Idle => {
                crate::log::drain();
                outside.wait_for_interrupt();
                let mut hv = hv.lock();
                hv.after_idle(cpu);
                next(&mut hv, cpu)
            }
            Work::Finished => return,
        };
        if !keeps_turn {
            hv.after_release();
        }
        crate::log::drain();
    }
}

/// `cpu`'s next work, the vGIC its fast path may use meanwhile, and
/// whether it keeps its turn after the lock ([`Hypervisor::keeps_turn`]).
#[inline(always)]
fn next<P: Platform, S: Scheduler, V: Vgic>(
    hv: &mut Hypervisor<P, S, V>,
    cpu: CpuId,
) -> (Work<P::Context>, FastVgic<V>, bool) {
    let work = hv.next_work(cpu);
    let vgic = hv.fast_vgic(&work);
    let keeps_turn = hv.keeps_turn(cpu, &work);
    (work, vgic, keeps_turn)
}

/// A one-CPU host's lock: the only CPU holds the hypervisor outright. It
/// counts the times the loop gave way after it, for the host tests.
pub(super) struct Alone<'h, H> {
    hv: RefCell<&'h mut H>,
    pub gave_way: core::cell::Cell<u32>,
}

impl<'h, H> Alone<'h, H> {
    pub fn new(hv: &'h mut H) -> Self {
        Alone {
            hv: RefCell::new(hv),
            gave_way: core::cell::Cell::new(0),
        }
    }

    pub fn into_inner(self) -> &'h mut H {
        self.hv.into_inner()
    }
}

impl<'h, H> HvLock for Alone<'h, H> {
    type Hv = H;
    type Guard<'a>
        = core::cell::RefMut<'a, H>
    where
        Self: 'a;
    fn lock(&self) -> Self::Guard<'_> {
        core::cell::RefMut::map(self.hv.borrow_mut(), |hv| &mut **hv)
    }
    fn after_release(&self) {
        self.gave_way.set(self.gave_way.get() + 1);
    }
}

/// Does the work outside the lock through the platform, which [`Alone`]
/// holds; the loop never holds the lock while it runs.
pub(super) struct Through<'l, 'h, H>(pub &'l Alone<'h, H>);

impl<P: Platform, S: Scheduler, V: Vgic> Outside<P::Context>
    for Through<'_, '_, Hypervisor<P, S, V>>
{
    fn run_guest(&mut self, ctx: &mut P::Context) -> RawExit {
        self.0.lock().platform.run(ctx)
    }
    fn zero(&mut self, chunk: GuestSlice) {
        // Cleaned to the point of coherency too.
        self.0.lock().platform.zero_guest(chunk);
    }
    fn wait_for_interrupt(&mut self) {
        self.0.lock().platform.wait_for_interrupt();
    }
    fn device_work(&mut self, job: &mut DeviceJob) {
        job.run(&mut self.0.lock().platform as &mut dyn GuestMemory);
    }
}
