//! The hypervisor proper: boots the VMs of the image, then runs whichever
//! vCPU the scheduler picks until it traps, and acts on the trap (see
//! `exit.rs`). Between runs it keeps each vCPU's list registers in step with
//! its virtual GIC, and wakes vCPUs blocked in WFI when their timer fires.

mod exit;
mod vm;

pub use vm::VmDesc;

use crate::{
    platform::{Platform, RawExit},
    sched::{CpuId, Pick, SchedConfig, Scheduler, VcpuId, VcpuParams, Window},
    vgic::{ListReg, Vgic},
    vmid::VmidAllocator,
};
use alloc::vec::Vec;
use config::boot::BootWindow;
use vm::{Vm, VmState};

/// What a physical CPU is doing.
#[derive(Clone, Copy, Debug, Default)]
struct CpuState {
    /// The vCPU whose state is loaded here (running, or between exits).
    running: Option<VcpuId>,
    /// When that vCPU's time slice ends (or, idle, when to look again).
    slice_end: Option<u64>,
    /// Waiting in WFI for something to do: a wake-up must kick it.
    idle: bool,
}

/// What a physical CPU does next (see [`Hypervisor::next_work`]).
pub enum Work<C> {
    /// Run this vCPU: its state is loaded on this CPU. Hand the context
    /// back with [`Hypervisor::after_run`].
    Run(VcpuId, alloc::boxed::Box<C>),
    /// Wait for an interrupt (WFI), then call [`Hypervisor::after_idle`].
    Idle,
    /// No VM is left.
    Finished,
}

pub struct Hypervisor<P: Platform, S: Scheduler, V: Vgic> {
    platform: P,
    sched: S,
    /// The VMs that were built; one vCPU each for now: `VcpuId(i)` is `vms[i]`'s.
    vms: Vec<Vm<P::Context, V>>,
    vmids: VmidAllocator,
    cpus: Vec<CpuState>,
    /// VMs not stopped yet (asked on every exit: kept, not counted).
    running_vms: usize,
    first_guest_line: Option<u64>,
}

impl<P: Platform, S: Scheduler, V: Vgic> Hypervisor<P, S, V> {
    /// Builds every VM for a host of `cpus` physical CPUs. A VM that cannot
    /// be built is reported and left out; the others run. `windows` is the
    /// ARINC 653 major frame (VM table index, length).
    pub fn new(
        mut platform: P,
        descs: Vec<VmDesc>,
        cpus: u32,
        time_slice_us: u64,
        windows: &[BootWindow],
    ) -> Self {
        let mut vms = Vec::with_capacity(descs.len());
        for (id, desc) in descs.into_iter().enumerate() {
            let name = desc.name;
            match vm::build(&mut platform, id as u32, desc) {
                Ok(vm) => vms.push(vm),
                Err(why) => crate::error!("VM {name} not started: {why}"),
            }
        }
        let ticks_per_second = platform.counter_frequency();
        let ticks = |us: u64| us * ticks_per_second / 1_000_000;
        let params: Vec<VcpuParams> = vms.iter().map(|vm| vm.sched).collect();
        let windows: Vec<Window> = windows
            .iter()
            .map(|w| Window {
                vm: w.vm,
                length: ticks(w.length_us),
            })
            .collect();
        let mut sched = S::new(&SchedConfig {
            cpus,
            slice: ticks(time_slice_us),
            ticks_per_second,
            vcpus: &params,
            windows: &windows,
        });
        let now = platform.counter();
        for index in 0..vms.len() {
            sched.wake(VcpuId(index as u32), now);
        }
        Hypervisor {
            running_vms: vms.len(),
            platform,
            sched,
            vms,
            vmids: VmidAllocator::new(),
            cpus: alloc::vec![CpuState::default(); cpus as usize],
            first_guest_line: None,
        }
    }

    pub fn platform(&mut self) -> &mut P {
        &mut self.platform
    }

    /// "after N ms, P% of a CPU": how long `vcpu`'s VM has existed and
    /// what share of one CPU it used, the current run included.
    fn cpu_report(&self, vcpu: VcpuId) -> CpuReport {
        let vm = &self.vms[vcpu.0 as usize];
        let now = self.platform.counter();
        let current = if self.cpus.iter().any(|c| c.running == Some(vcpu)) {
            now.saturating_sub(vm.vcpu.run_started)
        } else {
            0
        };
        CpuReport {
            lifetime: now - vm.created_at,
            used: vm.cpu_ticks + current,
            ticks_per_ms: (self.platform.counter_frequency() / 1000).max(1),
        }
    }

    /// How many VMs are still running.
    pub fn running_vms(&self) -> usize {
        self.running_vms
    }

    /// Runs every VM on CPU 0 until none is left: the whole loop for a
    /// one-CPU host (and the host tests).
    pub fn run(&mut self) {
        const CPU: CpuId = CpuId(0);
        loop {
            match self.next_work(CPU) {
                Work::Run(vcpu, mut ctx) => {
                    let exit = self.platform.run(&mut ctx);
                    self.after_run(CPU, vcpu, ctx, exit);
                }
                Work::Idle => {
                    self.platform.wait_for_interrupt();
                    self.after_idle(CPU);
                }
                Work::Finished => break,
            }
        }
        self.platform.set_deadline(None);
    }

    /// What `cpu` does next: go on with its vCPU, pick another, or idle.
    /// On SMP hosts each CPU calls this (and `after_run`/`after_idle`) under
    /// the lock that guards the hypervisor, and runs the guest without it.
    pub fn next_work(&mut self, cpu: CpuId) -> Work<P::Context> {
        if self.running_vms() == 0 {
            return Work::Finished;
        }
        let vcpu = match self.cpus[cpu.0 as usize].running {
            // Going back in after an exit: the timer is armed already.
            Some(vcpu) => vcpu,
            None => match self.sched.pick_next(cpu, self.platform.counter()) {
                Pick::Run { vcpu, until } => {
                    self.cpus[cpu.0 as usize].slice_end = until;
                    self.load(cpu, vcpu);
                    self.arm_timer(cpu);
                    vcpu
                }
                Pick::Idle { until: None } if self.deadlocked() => {
                    self.stop_deadlocked();
                    return self.next_work(cpu);
                }
                Pick::Idle { until } => {
                    let state = &mut self.cpus[cpu.0 as usize];
                    state.slice_end = until;
                    state.idle = true;
                    self.arm_timer(cpu);
                    return Work::Idle;
                }
            },
        };
        self.flush_lrs(vcpu);
        let ctx = self.vms[vcpu.0 as usize]
            .vcpu
            .ctx
            .take()
            .expect("a vCPU runs on one CPU at a time");
        Work::Run(vcpu, ctx)
    }

    /// `cpu` came back from running `vcpu` with `exit`.
    pub fn after_run(
        &mut self,
        cpu: CpuId,
        vcpu: VcpuId,
        ctx: alloc::boxed::Box<P::Context>,
        exit: RawExit,
    ) {
        self.vms[vcpu.0 as usize].vcpu.ctx = Some(ctx);
        self.sync_lrs(vcpu);
        match self.handle_exit(cpu, vcpu, exit) {
            exit::Next::Resume => {}
            exit::Next::Requeue => self.unload(cpu, vcpu, true),
            exit::Next::Block | exit::Next::Stop => self.unload(cpu, vcpu, false),
        }
    }

    /// `cpu` woke from WFI: take the interrupt that woke it.
    pub fn after_idle(&mut self, cpu: CpuId) {
        self.cpus[cpu.0 as usize].idle = false;
        self.handle_irq(cpu, None);
    }

    /// Every running VM waits in WFI with no timer armed: no interrupt
    /// source is left that could wake one (there are no devices yet).
    fn deadlocked(&self) -> bool {
        self.vms
            .iter()
            .filter(|vm| vm.state == VmState::Running)
            .all(|vm| vm.vcpu.blocked && vm.vcpu.wake_at.is_none())
    }

    /// Better a clear report than a silent hang.
    fn stop_deadlocked(&mut self) {
        for index in 0..self.vms.len() {
            if self.vms[index].state == VmState::Running {
                let vcpu = VcpuId(index as u32);
                self.stop(
                    vcpu,
                    format_args!(
                        "it waits in WFI with no timer armed, and nothing else can wake it"
                    ),
                );
                self.sched.remove(vcpu);
            }
        }
    }

    /// `cpu`'s timer fires at the end of its slice or when the first
    /// blocked vCPU's timer does, whichever is sooner.
    fn arm_timer(&mut self, cpu: CpuId) {
        let wake = self
            .vms
            .iter()
            .filter(|vm| vm.vcpu.blocked)
            .filter_map(|vm| vm.vcpu.wake_at)
            .min();
        let deadline = match (self.cpus[cpu.0 as usize].slice_end, wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.platform.set_deadline(deadline);
    }

    /// Makes `vcpu` runnable again if it waits in WFI.
    fn wake(&mut self, vcpu: VcpuId) {
        let state = &mut self.vms[vcpu.0 as usize].vcpu;
        if state.blocked {
            state.blocked = false;
            state.wake_at = None;
            self.sched.wake(vcpu, self.platform.counter());
            // An idle CPU may be the one to run it.
            for index in 0..self.cpus.len() {
                if self.cpus[index].idle {
                    self.platform.kick_cpu(CpuId(index as u32));
                }
            }
        }
    }

    /// Wakes every blocked vCPU whose timer has fired by `now`; whether
    /// any woke.
    fn wake_due(&mut self, now: u64) -> bool {
        let mut woke = false;
        for index in 0..self.vms.len() {
            let state = &self.vms[index].vcpu;
            if state.blocked && state.wake_at.is_some_and(|at| at <= now) {
                self.wake(VcpuId(index as u32));
                woke = true;
            }
        }
        woke
    }

    /// Puts `vcpu`'s state, list registers and stage-2 into `cpu`.
    fn load(&mut self, cpu: CpuId, vcpu: VcpuId) {
        let index = vcpu.0 as usize;
        if !self.vmids.is_current(self.vms[index].vmid) {
            let (vmid, flush) = self.vmids.allocate();
            if flush {
                self.platform.flush_guest_tlbs();
            }
            self.vms[index].vmid = Some(vmid);
        }
        let vmid = self.vms[index].vmid.expect("just allocated");
        let vm = &mut self.vms[index];
        let vttbr = vm.stage2.vttbr(vmid.id);
        let ctx = vm.vcpu.ctx.as_deref().expect("not running elsewhere");
        self.platform.vcpu_load(ctx, vttbr);
        let count = self.platform.lr_count();
        self.platform.write_lrs(&vm.vcpu.lrs[..count], false);
        vm.vcpu.run_started = self.platform.counter();
        self.cpus[cpu.0 as usize].running = Some(vcpu);
    }

    /// Takes `vcpu`'s state off `cpu` and tells the scheduler.
    fn unload(&mut self, cpu: CpuId, vcpu: VcpuId, runnable: bool) {
        let now = self.platform.counter();
        let vm = &mut self.vms[vcpu.0 as usize];
        vm.cpu_ticks += now - vm.vcpu.run_started;
        self.platform
            .vcpu_put(vm.vcpu.ctx.as_deref_mut().expect("handed back"));
        let stopped = vm.state == VmState::Stopped;
        self.cpus[cpu.0 as usize].running = None;
        self.sched.descheduled(cpu, vcpu, now, runnable);
        if stopped {
            self.sched.remove(vcpu);
        }
    }

    /// Before the guest runs: pending virtual interrupts into its list
    /// registers.
    fn flush_lrs(&mut self, vcpu: VcpuId) {
        let count = self.platform.lr_count();
        let vm = &mut self.vms[vcpu.0 as usize];
        if !vm.vcpu.lrs_live && !vm.vcpu.irq_dirty {
            return;
        }
        vm.vcpu.irq_dirty = false;
        // Entries the guest completed go back to the hardware empty: one
        // left with its EOI-maintenance bit would keep the maintenance
        // interrupt asserted.
        let lrs = &mut vm.vcpu.lrs[..count];
        let overflow = vm.vgic.flush(0, lrs);
        for lr in lrs.iter_mut() {
            // Hear when the guest completes a timer interrupt, to unmask it.
            lr.eoi_maintenance = !lr.is_free() && lr.intid == abi::GUEST_VTIMER_INTID;
        }
        vm.vcpu.lrs_live = overflow || lrs.iter().any(|lr| !lr.is_free());
        self.platform.write_lrs(lrs, overflow);
    }

    /// After the guest ran: what it did with its list registers back into
    /// its virtual GIC; its timer unmasked once its interrupt is done.
    fn sync_lrs(&mut self, vcpu: VcpuId) {
        let count = self.platform.lr_count();
        let vm = &mut self.vms[vcpu.0 as usize];
        if vm.vcpu.lrs_live {
            let lrs = &mut vm.vcpu.lrs[..count];
            self.platform.read_lrs(lrs);
            vm.vgic.sync(0, lrs);
            let completed = lrs
                .iter()
                .any(|lr| lr.is_free() && *lr != ListReg::default());
            for lr in lrs.iter_mut().filter(|lr| lr.is_free()) {
                *lr = ListReg::default();
            }
            // Still live if anything is in flight, or if completed entries
            // must be written back empty before the guest runs again.
            vm.vcpu.lrs_live =
                completed || lrs.iter().any(|lr| !lr.is_free()) || vm.vgic.has_pending(0);
        }
        if vm.vcpu.vtimer_masked && !vm.vgic.in_flight(0, abi::GUEST_VTIMER_INTID) {
            vm.vcpu.vtimer_masked = false;
            self.platform.mask_guest_timer(false);
        }
    }
}

struct CpuReport {
    lifetime: u64,
    used: u64,
    ticks_per_ms: u64,
}

impl core::fmt::Display for CpuReport {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        let permille = self.used * 1000 / self.lifetime.max(1);
        write!(
            f,
            "after {} ms, {}.{}% of a CPU",
            self.lifetime / self.ticks_per_ms,
            permille / 10,
            permille % 10
        )
    }
}

#[cfg(test)]
mod tests;
