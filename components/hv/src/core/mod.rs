//! The hypervisor proper: boots the VMs of the image, then runs whichever
//! vCPU the scheduler picks until it traps, and acts on the trap (see
//! `exit.rs`). Between runs it keeps each vCPU's list registers in step with
//! its virtual GIC, and wakes vCPUs blocked in WFI when their timer fires.

mod exit;
mod vm;

pub use vm::VmDesc;

use crate::{
    platform::Platform,
    sched::{CpuId, Pick, SchedConfig, Scheduler, VcpuId, VcpuParams, Window},
    vgic::{ListReg, Vgic},
    vmid::{Vmid, VmidAllocator},
};
use alloc::vec::Vec;
use config::boot::BootWindow;
use vm::{Vm, VmState};

/// Everything runs on CPU 0 until the SMP work lands.
const CPU: CpuId = CpuId(0);

pub struct Hypervisor<P: Platform, S: Scheduler, V: Vgic> {
    platform: P,
    sched: S,
    /// The VMs that were built; one vCPU each for now: `VcpuId(i)` is `vms[i]`'s.
    vms: Vec<Vm<P::Context, V>>,
    vmids: VmidAllocator,
    /// The vCPU whose EL1 state, list registers and stage-2 are in the CPU.
    loaded: Option<(VcpuId, Vmid)>,
    /// When the running vCPU's time slice ends.
    slice_end: Option<u64>,
    /// When the running vCPU was entered (for CPU-time accounting).
    run_started: u64,
    first_guest_line: Option<u64>,
}

impl<P: Platform, S: Scheduler, V: Vgic> Hypervisor<P, S, V> {
    /// Builds every VM. A VM that cannot be built is reported and left
    /// out; the others run.
    /// `windows` is the ARINC 653 major frame (VM table index, length).
    pub fn new(
        mut platform: P,
        descs: Vec<VmDesc>,
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
            cpus: 1,
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
            platform,
            sched,
            vms,
            vmids: VmidAllocator::new(),
            loaded: None,
            slice_end: None,
            run_started: 0,
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
        CpuReport {
            lifetime: now - vm.created_at,
            used: vm.cpu_ticks + now.saturating_sub(self.run_started),
            ticks_per_ms: (self.platform.counter_frequency() / 1000).max(1),
        }
    }

    /// How many VMs are still running.
    pub fn running_vms(&self) -> usize {
        self.vms
            .iter()
            .filter(|vm| vm.state == VmState::Running)
            .count()
    }

    /// Runs VMs until none is left.
    pub fn run(&mut self) {
        while self.running_vms() > 0 {
            match self.sched.pick_next(CPU, self.platform.counter()) {
                Pick::Run { vcpu, until } => {
                    let runnable = self.run_vcpu(vcpu, until);
                    let now = self.platform.counter();
                    self.sched.descheduled(CPU, vcpu, now, runnable);
                    if self.vms[vcpu.0 as usize].state == VmState::Stopped {
                        self.sched.remove(vcpu);
                    }
                }
                Pick::Idle { until: None } if self.deadlocked() => self.stop_deadlocked(),
                Pick::Idle { until } => self.idle(until),
            }
        }
        self.slice_end = None;
        self.platform.set_deadline(None);
    }

    /// Runs `vcpu` until its slice ends, it blocks or it stops; whether it
    /// can go on.
    fn run_vcpu(&mut self, vcpu: VcpuId, until: Option<u64>) -> bool {
        self.run_started = self.platform.counter();
        let runnable = self.run_vcpu_until_descheduled(vcpu, until);
        let ran = self.platform.counter() - self.run_started;
        self.vms[vcpu.0 as usize].cpu_ticks += ran;
        runnable
    }

    fn run_vcpu_until_descheduled(&mut self, vcpu: VcpuId, until: Option<u64>) -> bool {
        self.load(vcpu);
        self.slice_end = until;
        self.arm_timer();
        loop {
            self.flush_lrs(vcpu);
            let exit = self.platform.run(&mut self.vms[vcpu.0 as usize].vcpu.ctx);
            self.sync_lrs(vcpu);
            match self.handle_exit(vcpu, exit) {
                exit::Next::Resume => continue,
                exit::Next::Requeue => return true,
                exit::Next::Block | exit::Next::Stop => return false,
            }
        }
    }

    /// Nothing to run: wait in WFI, with no tick, for an interrupt, the
    /// scheduler's deadline or a blocked vCPU's timer.
    fn idle(&mut self, until: Option<u64>) {
        self.slice_end = until;
        self.arm_timer();
        self.platform.wait_for_interrupt();
        self.handle_irq(None);
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

    /// The hypervisor timer fires at the end of the slice or when the
    /// first blocked vCPU's timer does, whichever is sooner.
    fn arm_timer(&mut self) {
        let wake = self
            .vms
            .iter()
            .filter(|vm| vm.vcpu.blocked)
            .filter_map(|vm| vm.vcpu.wake_at)
            .min();
        let deadline = match (self.slice_end, wake) {
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

    /// Puts `vcpu`'s state, list registers and stage-2 into the CPU unless
    /// they are there.
    fn load(&mut self, vcpu: VcpuId) {
        let index = vcpu.0 as usize;
        if !self.vmids.is_current(self.vms[index].vmid) {
            let (vmid, flush) = self.vmids.allocate();
            if flush {
                self.platform.flush_guest_tlbs();
            }
            self.vms[index].vmid = Some(vmid);
        }
        let vmid = self.vms[index].vmid.expect("just allocated");
        if self.loaded == Some((vcpu, vmid)) {
            return;
        }
        let vttbr = self.vms[index].stage2.vttbr(vmid.id);
        match self.loaded.map(|(prev, _)| prev.0 as usize) {
            Some(prev) if prev != index => {
                let (prev_vm, next_vm) = pair_mut(&mut self.vms, prev, index);
                self.platform
                    .switch_to(Some(&mut prev_vm.vcpu.ctx), &next_vm.vcpu.ctx, vttbr);
            }
            _ => self
                .platform
                .switch_to(None, &self.vms[index].vcpu.ctx, vttbr),
        }
        // The list registers still hold the previous vCPU's interrupts.
        let count = self.platform.lr_count();
        self.platform
            .write_lrs(&self.vms[index].vcpu.lrs[..count], false);
        self.loaded = Some((vcpu, vmid));
    }

    /// Before the guest runs: pending virtual interrupts into its list
    /// registers.
    fn flush_lrs(&mut self, vcpu: VcpuId) {
        let count = self.platform.lr_count();
        let vm = &mut self.vms[vcpu.0 as usize];
        if !vm.vcpu.lrs_live && !vm.vgic.has_pending(0) {
            return;
        }
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

/// Two distinct elements of a slice, mutably.
fn pair_mut<T>(items: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b);
    if a < b {
        let (low, high) = items.split_at_mut(b);
        (&mut low[a], &mut high[0])
    } else {
        let (low, high) = items.split_at_mut(a);
        (&mut high[0], &mut low[b])
    }
}

#[cfg(test)]
mod tests;
