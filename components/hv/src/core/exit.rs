//! Acting on a guest exit: hypercalls, WFI, emulated device accesses,
//! stage-2 faults, interrupts.

use super::{
    psci,
    vm::{Power, RunState, VmState},
    Hypervisor,
};
use crate::{
    device::{Owner, Signal, Window},
    info, log,
    platform::{ExitKind, Platform, RawExit, VcpuRegs},
    sched::{CpuId, Scheduler, VcpuId},
    trap::{self, Abort, Access, Trap},
    vgic::{Effects, Vgic, VgicCell},
};
use abi::Error;

/// What handling one exit means for the vCPU that made it.
pub(super) enum Next {
    /// Back into the same vCPU, same slice.
    Resume,
    /// Its slice is over, or it gave it up: back on the run queue.
    Requeue,
    /// It waits in WFI for an interrupt.
    Block,
    /// Its VM stopped.
    Stop,
}

/// A vCPU put on a CPU to take an interrupt keeps it for 1/this of a second
/// (100 us) before another vCPU's wake-up may preempt it.
const WAKE_GRACE_PER_SECOND: u64 = 10_000;

/// WFE rather than WFI (ESR ISS bit 0): no event is tracked, so it yields.
const WFX_IS_WFE: u64 = 1;

impl<P: Platform, S: Scheduler, V: Vgic> Hypervisor<P, S, V> {
    pub(super) fn handle_exit(&mut self, cpu: CpuId, vcpu: VcpuId, exit: RawExit) -> Next {
        match exit.kind {
            ExitKind::Irq => return self.handle_irq(cpu, Some(vcpu)),
            ExitKind::Sync => {}
            ExitKind::Fiq | ExitKind::SError => {
                return self.stop(vcpu, format_args!("{:?} (ESR {:#x})", exit.kind, exit.esr));
            }
        }
        match trap::decode(&exit) {
            Trap::Hypercall if psci::is_psci(self.ctx(vcpu).reg(0)) && exit.esr & 0xffff == 0 => {
                self.psci(vcpu)
            }
            Trap::Hypercall => self.hypercall(vcpu, exit.esr),
            Trap::SecureMonitorCall => {
                // Guests never reach the firmware: PSCI is answered here,
                // every other secure service is not there.
                let ctx = self.ctx(vcpu);
                skip_instruction(ctx, exit.esr);
                if psci::is_psci(ctx.reg(0)) {
                    self.psci(vcpu)
                } else {
                    ctx.set_reg(0, Error::NotSupported as i64 as u64);
                    Next::Resume
                }
            }
            Trap::WaitForInterrupt => self.wait_for_interrupt(vcpu, exit.esr),
            Trap::SystemRegister(sysreg)
                if sysreg.encoding == trap::ICC_SGI1R_EL1 && !sysreg.read =>
            {
                let ctx = self.ctx(vcpu);
                let value = if sysreg.register == 31 {
                    0
                } else {
                    ctx.reg(usize::from(sysreg.register))
                };
                skip_instruction(ctx, exit.esr);
                let (vm, index) = self.vm_and_index(vcpu);
                let effects = self.vms[vm].vgic.lock().write_sgi1r(index, value);
                self.kick(vcpu, effects);
                Next::Resume
            }
            Trap::SystemRegister(sysreg)
                if matches!(sysreg.encoding, trap::ICC_ASGI1R_EL1 | trap::ICC_SGI0R_EL1)
                    && !sysreg.read =>
            {
                // Generates nothing for this guest (no group 0, no secure
                // state): ignored, as a GIC with the guest's view would.
                skip_instruction(self.ctx(vcpu), exit.esr);
                Next::Resume
            }
            Trap::Stage2Abort(abort) => self.stage2_abort(vcpu, abort, exit.esr),
            Trap::SystemRegister(_) | Trap::Other { .. }
                if trap::DebugOrPmu::decode(exit.esr).is_some() =>
            {
                debug_or_pmu_raz_wi(self.ctx(vcpu), exit.esr);
                Next::Resume
            }
            Trap::SystemRegister(_) | Trap::Other { .. } => {
                let ec = trap::exception_class(exit.esr);
                let elr = self.ctx(vcpu).pc();
                self.stop(
                    vcpu,
                    format_args!(
                        "unexpected trap: EC {ec:#x} ({}), ESR {:#x}, ELR {elr:#x}, FAR {:#x}",
                        trap::class_name(ec),
                        exit.esr,
                        exit.far
                    ),
                )
            }
        }
    }

    /// A physical interrupt, taken from a guest (`current`) or while idle.
    pub(super) fn handle_irq(&mut self, cpu: CpuId, current: Option<VcpuId>) -> Next {
        let Some(intid) = self.platform.ack_irq() else {
            return Next::Resume; // spurious
        };
        let next = if intid == self.platform.timer_irq() {
            // Disarm first: the timer condition stays asserted until then.
            self.platform.set_deadline(None);
            let now = self.platform.counter();
            self.poll_console(cpu, now);
            // A woken vCPU may deserve the CPU now (and a vCPU that ran
            // alone has no slice end): let the scheduler decide.
            let woke = self.wake_due(now);
            let slice_over = self.cpus[cpu.0 as usize]
                .slice_end
                .is_some_and(|end| now >= end);
            if woke && !slice_over && self.taking_its_interrupt(cpu, now) {
                // Requeued now, it would wait behind the vCPU that woke,
                // for a whole slice, with its interrupt pending: it keeps
                // the CPU a short grace, or until it blocks.
                let grace_end = now + self.platform.counter_frequency() / WAKE_GRACE_PER_SECOND;
                let slice_end = &mut self.cpus[cpu.0 as usize].slice_end;
                *slice_end = Some(slice_end.map_or(grace_end, |end| end.min(grace_end)));
                self.arm_timer(cpu);
                Next::Resume
            } else if woke || slice_over {
                Next::Requeue
            } else {
                self.arm_timer(cpu);
                Next::Resume
            }
        } else if intid == self.platform.guest_timer_irq() {
            // The virtual timer of the vCPU running here (it is disabled in
            // the hardware whenever no vCPU is loaded).
            if let Some(vcpu) = self.cpus[cpu.0 as usize].running {
                self.guest_timer_fired(vcpu);
            }
            Next::Resume
        } else if intid == self.platform.kick_irq() {
            // Another CPU made a vCPU runnable: look again.
            Next::Resume
        } else if intid == self.platform.maintenance_irq() {
            // The list registers are synced and refilled on the way back in.
            Next::Resume
        } else {
            crate::warn!("unexpected interrupt {intid} (while running {current:?})");
            Next::Resume
        };
        self.platform.end_irq(intid);
        next
    }

    /// The vCPU on `cpu` was put there within the wake grace and has a
    /// virtual interrupt in flight: it was given the CPU to take it.
    fn taking_its_interrupt(&self, cpu: CpuId, now: u64) -> bool {
        let Some(vcpu) = self.cpus[cpu.0 as usize].running else {
            return false;
        };
        let state = &self.vcpus[vcpu.0 as usize];
        let grace = self.platform.counter_frequency() / WAKE_GRACE_PER_SECOND;
        (state.lrs_live || state.irq_dirty) && now < state.run_started + grace
    }

    /// Masks the (level) timer interrupt and hands it to the guest as a
    /// virtual one; it is unmasked when the guest has completed it.
    pub(super) fn guest_timer_fired(&mut self, vcpu: VcpuId) {
        self.platform.mask_guest_timer(true);
        self.vcpus[vcpu.0 as usize].vtimer_masked = true;
        if let RunState::OnCpu(cpu) = self.vcpus[vcpu.0 as usize].run {
            self.cpus[cpu.0 as usize].timer_handed = true;
        }
        let (vm, index) = self.vm_and_index(vcpu);
        let effects = self.vms[vm]
            .vgic
            .lock()
            .raise(index, abi::GUEST_VTIMER_INTID);
        self.kick(vcpu, effects);
        self.wake(vcpu);
    }

    /// Wakes the vCPUs of `vcpu`'s VM that a virtual interrupt was made
    /// pending for (bit n: its vCPU n), and has their list registers looked
    /// at before they run again; one running on another CPU is kicked out
    /// of the guest so that happens now.
    pub(super) fn kick(&mut self, vcpu: VcpuId, effects: Effects) {
        self.vcpus[vcpu.0 as usize].irq_dirty = true;
        let vm = self.vm_of(vcpu);
        for (bit, index) in self.vms[vm].vcpu_indices().enumerate() {
            if effects.kick & (1 << bit) == 0 {
                continue;
            }
            let target = VcpuId(index as u32);
            self.vcpus[index].irq_dirty = true;
            self.wake(target);
            self.kick_if_in_guest(target);
        }
    }

    /// Index of `vcpu`'s VM and its own index there.
    pub(super) fn vm_and_index(&self, vcpu: VcpuId) -> (usize, usize) {
        let state = &self.vcpus[vcpu.0 as usize];
        (state.vm, state.index as usize)
    }

    /// WFI: block until an interrupt is pending for the vCPU, unless one is
    /// already, or its timer is about to fire.
    fn wait_for_interrupt(&mut self, vcpu: VcpuId, esr: u64) -> Next {
        skip_instruction(self.ctx(vcpu), esr);
        if esr & WFX_IS_WFE != 0 {
            return Next::Requeue;
        }
        let (vm, index) = self.vm_and_index(vcpu);
        if self.vms[vm].vgic.lock().has_pending(index) {
            return Next::Resume;
        }
        let now = self.platform.counter();
        let wake_at = self.platform.guest_timer_deadline();
        if wake_at.is_some_and(|at| at <= now) {
            return Next::Resume;
        }
        self.set_blocked(vcpu.0 as usize, true, wake_at);
        Next::Block
    }

    fn stage2_abort(&mut self, vcpu: VcpuId, abort: Abort, esr: u64) -> Next {
        if let Some(next) = self.ram_fault(vcpu, &abort) {
            return next;
        }
        let vm = self.vm_of(vcpu);
        let owner = if abort.instruction {
            None
        } else {
            self.vms[vm].devices.find(abort.ipa)
        };
        if let (Some((owner, window)), Some(access)) = (owner, abort.access) {
            return match self.emulate_mmio(vcpu, owner, window, abort, access) {
                Some(again) => again,
                None => {
                    skip_instruction(self.ctx(vcpu), esr);
                    Next::Resume
                }
            };
        }
        let emulated = owner.is_some();
        let elr = self.ctx(vcpu).pc();
        let kind = if abort.instruction {
            "exec"
        } else if abort.write {
            "write"
        } else {
            "read"
        };
        let unemulated = if abort.access.is_none() && emulated {
            " (an access the virtual GIC cannot emulate: use single ldr/str)"
        } else {
            ""
        };
        self.stop(
            vcpu,
            format_args!(
                "stage-2 {} abort ({kind}, {}) at IPA {:#x}, ESR {esr:#x}, ELR {elr:#x}{unemulated}",
                if abort.instruction { "instruction" } else { "data" },
                abort.status_name(),
                abort.ipa,
            ),
        )
    }

    /// Carries out one trapped load or store in `owner`'s `window`: the
    /// stored register is read once, the loaded one written once. `Some`
    /// when the access is to be made again, and what the vCPU does first:
    /// a network device with more to send than one exit serves (the
    /// guest's store traps again), or a device a CPU serves without the
    /// lock (the vCPU gives way first).
    fn emulate_mmio(
        &mut self,
        vcpu: VcpuId,
        owner: Owner,
        window: Window,
        abort: Abort,
        access: Access,
    ) -> Option<Next> {
        let (vm, index) = self.vm_and_index(vcpu);
        let stored = abort.write.then(|| access.store_value(self.ctx(vcpu)));
        match owner {
            Owner::Vgic => {
                let mut vgic = self.vms[vm].vgic.lock();
                match stored {
                    Some(value) => {
                        let effects = vgic.write(index, abort.ipa, access.width, value);
                        drop(vgic);
                        self.kick(vcpu, effects);
                    }
                    None => {
                        let value = vgic.read(index, abort.ipa, access.width);
                        drop(vgic);
                        access.load_into(self.ctx(vcpu), value);
                    }
                }
            }
            Owner::Device(device) => {
                let offset = abort.ipa - window.base;
                // Out: a CPU serves its work without the lock. Made again
                // later (the vCPU gives way), not waited for here.
                let Some(device_ops) = self.vms[vm].devices.device(device) else {
                    return Some(Next::Requeue);
                };
                let signal = match stored {
                    Some(value) => device_ops.write(index, offset, access.width, value),
                    None => {
                        let value = device_ops.read(index, offset, access.width);
                        let level = device_ops.level();
                        access.load_into(self.ctx(vcpu), value);
                        Signal {
                            level,
                            ..Signal::default()
                        }
                    }
                };
                if signal.console_line {
                    self.note_first_guest_line();
                }
                self.signal(vcpu, device, signal);
                if signal.work && !self.device_work(vcpu, device) {
                    return Some(Next::Resume);
                }
            }
        }
        None
    }

    /// Device `device` of `vcpu`'s VM asks for `signal` (after an access by
    /// `vcpu`, or on its own): its interrupt raised, its line driven.
    pub(super) fn signal(&mut self, vcpu: VcpuId, device: usize, signal: Signal) {
        let (vm, index) = self.vm_and_index(vcpu);
        let Some(intid) = self.vms[vm].devices.irq(device) else {
            return;
        };
        let mut vgic = self.vms[vm].vgic.lock();
        let mut effects = Effects::default();
        if let Some(level) = signal.level {
            effects.kick |= vgic.set_level(index, intid, level).kick;
        }
        if signal.raise {
            effects.kick |= vgic.raise(index, intid).kick;
        }
        drop(vgic);
        if effects.kick != 0 {
            self.kick(vcpu, effects);
        }
    }

    fn hypercall(&mut self, vcpu: VcpuId, esr: u64) -> Next {
        let ctx = self.ctx(vcpu);
        let (function, mut arg1, mut arg2) = (ctx.reg(0), ctx.reg(1), ctx.reg(2));
        if function & abi::SMC64 == 0 {
            // SMC32: only the low halves of the arguments are defined.
            arg1 &= 0xffff_ffff;
            arg2 &= 0xffff_ffff;
        }
        if let Some(result) = own_state_hypercall(function, esr) {
            self.ctx(vcpu).set_reg(0, result as u64);
            return Next::Resume;
        }
        let (result, next) = match function | abi::SMC64 {
            abi::HC_CONSOLE_WRITE => (self.console_write(vcpu, arg1, arg2), Next::Resume),
            abi::HC_YIELD => (0, Next::Requeue),
            abi::HC_CHANNEL_NOTIFY => (self.channel_notify(vcpu, arg1), Next::Resume),
            abi::HC_VM_EXIT => {
                let vm = self.vm_of(vcpu);
                self.flush_console(vcpu);
                info!(
                    "VM {} exited (code {arg1}) {}",
                    self.vms[vm].config.name,
                    self.cpu_report(vcpu)
                );
                self.stop_vm(vm);
                return Next::Stop;
            }
            _ => (Error::NotSupported as i64, Next::Resume),
        };
        self.ctx(vcpu).set_reg(0, result as u64);
        next
    }

    fn console_write(&mut self, vcpu: VcpuId, ipa: u64, len: u64) -> i64 {
        if len > abi::CONSOLE_WRITE_MAX {
            return Error::InvalidParameter as i64;
        }
        // Only RAM the guest has: a block not yet cleared holds old data.
        if !self.ram_ready(vcpu, ipa, len) {
            return Error::InvalidAddress as i64;
        }
        let vm_index = self.vm_of(vcpu);
        let vm = &mut self.vms[vm_index];
        let Ok(from) = vm.ram.slice(ipa, len) else {
            return Error::InvalidAddress as i64;
        };
        // Read once, into hypervisor memory, before anything looks at it.
        let mut copy = [0u8; abi::CONSOLE_WRITE_MAX as usize];
        let bytes = &mut copy[..len as usize];
        self.platform.read_guest(from, bytes);
        let lines = vm
            .console
            .write(&vm.config.name, bytes, &mut |line: &[u8]| {
                log::write_guest_line(vm_index, line);
            });
        let lost = log::take_lost(vm_index + 1);
        if lost > 0 {
            info!(
                "VM {} lost {lost} bytes of console output: it prints faster than the UART drains",
                vm.config.name
            );
        }
        if lines > 0 {
            self.note_first_guest_line();
        }
        len as i64
    }

    /// A guest printed a whole line: the first one's time is a figure
    /// (`cargo xtask bench`: reset to first guest line).
    pub(super) fn note_first_guest_line(&mut self) {
        if self.first_guest_line.is_none() {
            let at = self.platform.counter();
            self.first_guest_line = Some(at);
            info!("first guest line at counter {at}");
        }
    }

    fn flush_console(&mut self, vcpu: VcpuId) {
        let vm_index = self.vm_of(vcpu);
        let vm = &mut self.vms[vm_index];
        vm.console.flush(&vm.config.name, &mut |line: &[u8]| {
            log::write_guest_line(vm_index, line);
        });
    }

    /// Stops a VM for a fault of its own, saying why; the others go on.
    pub(super) fn stop(&mut self, vcpu: VcpuId, why: core::fmt::Arguments) -> Next {
        self.flush_console(vcpu);
        let vm = self.vm_of(vcpu);
        self.stop_vm(vm);
        // A guest's own fault, not the hypervisor's: reported, not an error.
        info!("VM {} stopped: {why}", self.vms[vm].config.name);
        Next::Stop
    }

    /// The VM stops: none of its vCPUs is picked again; those running on
    /// other CPUs are kicked out and leave at their next exit.
    pub(super) fn stop_vm(&mut self, vm: usize) {
        if self.vms[vm].state == VmState::Stopped {
            return;
        }
        self.vms[vm].state = VmState::Stopped;
        self.running_vms -= 1;
        self.channels_down(vm);
        self.vms[vm].devices.reset_all();
        for index in self.vms[vm].vcpu_indices() {
            self.set_blocked(index, false, None);
            // No longer live: the VM is stopped.
            if self.vcpus[index].power == Power::On {
                self.live_vcpus -= 1;
            }
            let state = &mut self.vcpus[index];
            // One on a CPU is removed when it leaves it (`unload`).
            if !matches!(state.run, RunState::OnCpu(_)) {
                state.run = RunState::Parked;
                self.sched.remove(VcpuId(index as u32));
            }
        }
        self.kick_cpus_running(vm);
    }

    pub(super) fn ctx(&mut self, vcpu: VcpuId) -> &mut P::Context {
        self.vcpus[vcpu.0 as usize]
            .ctx
            .as_deref_mut()
            .expect("handed back before its exit is handled")
    }
}

/// Steps over the trapped instruction (2 or 4 bytes, from the IL bit).
/// The result of a hypercall that needs nothing but the caller's
/// registers (its version, or a refusal), or `None` for one that needs the
/// hypervisor. Both the fast path and [`Hypervisor::hypercall`] ask here.
fn own_state_hypercall(function: u64, esr: u64) -> Option<i64> {
    // The ABI is `HVC #0`; other immediates are reserved.
    let immediate = esr & 0xffff;
    let from_aarch32 = trap::exception_class(esr) == trap::EC_HVC32;
    let smc64 = function & abi::SMC64 != 0;
    match function | abi::SMC64 {
        _ if immediate != 0 || (from_aarch32 && smc64) => Some(Error::NotSupported as i64),
        abi::HC_ABI_VERSION => {
            Some((u64::from(abi::ABI_MAJOR) << 16 | u64::from(abi::ABI_MINOR)) as i64)
        }
        abi::HC_CONSOLE_WRITE | abi::HC_YIELD | abi::HC_CHANNEL_NOTIFY | abi::HC_VM_EXIT => None,
        _ => Some(Error::NotSupported as i64),
    }
}

/// What the fast path made of an exit.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Fast {
    /// Answered: back into the guest.
    Done,
    /// Answered, and the access made interrupts pending for these vCPUs of
    /// the VM: the rest needs the hypervisor's lock
    /// ([`Hypervisor::after_fast`]).
    Kick(Effects),
    /// Not an exit for the fast path: untouched, for the full path.
    No,
}

/// The vGIC a vCPU's distributor accesses may be answered from without the
/// hypervisor's lock, and the vCPU's index in its VM: given while nothing
/// of it is in the list registers, so the distributor's view is current.
pub(super) type FastVgic<V> = Option<(&'static VgicCell<V>, usize)>;

/// Handles `exit` if it concerns only the vCPU's own registers (an
/// own-state hypercall, a trapped debug or PMU register) or, with `vgic`,
/// its VM's virtual distributor, without the hypervisor's lock, so the CPU
/// goes straight back into the guest. Nothing another CPU does is missed:
/// what it asks of this vCPU (an interrupt, a stop, a reset) comes as a
/// physical interrupt, which exits the guest again at once and takes the
/// full path.
pub(super) fn handle_fast<V: Vgic>(
    ctx: &mut impl VcpuRegs,
    exit: &RawExit,
    vgic: FastVgic<V>,
) -> Fast {
    if exit.kind != ExitKind::Sync {
        return Fast::No;
    }
    let ec = trap::exception_class(exit.esr);
    // Hypercalls first: the common case, tested in two compares.
    if ec == trap::EC_HVC64 || ec == trap::EC_HVC32 {
        let function = ctx.reg(0);
        if psci::is_psci(function) && exit.esr & 0xffff == 0 {
            return Fast::No;
        }
        let Some(result) = own_state_hypercall(function, exit.esr) else {
            return Fast::No;
        };
        ctx.set_reg(0, result as u64);
        return Fast::Done;
    }
    if ec == trap::EC_DABT_LOWER {
        return match vgic {
            Some((vgic, index)) => distributor_fast(ctx, exit, vgic, index),
            None => Fast::No,
        };
    }
    if debug_or_pmu_fast(ctx, exit.esr) {
        Fast::Done
    } else {
        Fast::No
    }
}

/// A trapped load or store in the vGIC's frames, under the vGIC's lock
/// alone: the stored register read once, the loaded one written once, as
/// [`Hypervisor::emulate_mmio`] does under the hypervisor's.
fn distributor_fast<V: Vgic>(
    ctx: &mut impl VcpuRegs,
    exit: &RawExit,
    vgic: &VgicCell<V>,
    index: usize,
) -> Fast {
    let ipa = trap::fault_ipa(exit);
    let Some(access) = Access::decode(exit.esr) else {
        return Fast::No;
    };
    if !vgic.claims(ipa) {
        return Fast::No;
    }
    let effects = if trap::data_abort_is_write(exit.esr) {
        let value = access.store_value(ctx);
        vgic.lock().write(index, ipa, access.width, value)
    } else {
        let value = vgic.lock().read(index, ipa, access.width);
        access.load_into(ctx, value);
        Effects::default()
    };
    skip_instruction(ctx, exit.esr);
    if effects.kick == 0 {
        Fast::Done
    } else {
        Fast::Kick(effects)
    }
}

/// The fast path's other case, out of line so that the hypercall case
/// stays a few compares.
#[inline(never)]
fn debug_or_pmu_fast(ctx: &mut impl VcpuRegs, esr: u64) -> bool {
    let coprocessor = matches!(
        trap::exception_class(esr),
        trap::EC_SYSREG | trap::EC_CP14_32 | trap::EC_CP14_64 | trap::EC_CP15_32 | trap::EC_CP15_64
    );
    if coprocessor && trap::DebugOrPmu::decode(esr).is_some() {
        debug_or_pmu_raz_wi(ctx, esr);
        return true;
    }
    false
}

fn skip_instruction(ctx: &mut impl VcpuRegs, esr: u64) {
    let length = if trap::instruction_is_32bit(esr) {
        4
    } else {
        2
    };
    ctx.set_pc(ctx.pc() + length);
}

/// A trapped debug or PMU register access (MDCR_EL2 / HDCR): guests have
/// none, so it reads as zero and writes are ignored, and the guest goes
/// on after it. Nothing of one VM's reaches another.
fn debug_or_pmu_raz_wi(ctx: &mut impl VcpuRegs, esr: u64) {
    if let Some(access) = trap::DebugOrPmu::decode(esr) {
        for register in access.registers.into_iter().flatten() {
            ctx.set_reg(usize::from(register), 0);
        }
    }
    skip_instruction(ctx, esr);
}
