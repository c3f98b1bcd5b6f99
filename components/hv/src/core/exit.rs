//! Acting on a guest exit: hypercalls, WFI, emulated distributor accesses,
//! stage-2 faults, interrupts.

use super::{vm::VmState, Hypervisor};
use crate::{
    info, log,
    platform::{ExitKind, Platform, RawExit, VcpuRegs},
    sched::{CpuId, Scheduler, VcpuId},
    trap::{self, Abort, Trap},
    vgic::{Effects, Vgic},
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
            Trap::Hypercall => self.hypercall(vcpu, exit.esr),
            Trap::SecureMonitorCall => {
                // No firmware service is passed through yet (guest PSCI comes with SMP).
                let ctx = self.ctx(vcpu);
                ctx.set_reg(0, Error::NotSupported as i64 as u64);
                skip_instruction(ctx, exit.esr);
                Next::Resume
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
                let effects = self.vms[vcpu.0 as usize].vgic.write_sgi1r(0, value);
                self.kick(vcpu, effects);
                Next::Resume
            }
            Trap::Stage2Abort(abort) => self.stage2_abort(vcpu, abort, exit.esr),
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
            // A woken vCPU may deserve the CPU now (and a vCPU that ran
            // alone has no slice end): let the scheduler decide.
            let woke = self.wake_due(now);
            let slice_over = self.cpus[cpu.0 as usize]
                .slice_end
                .is_some_and(|end| now >= end);
            if woke || slice_over {
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

    /// Masks the (level) timer interrupt and hands it to the guest as a
    /// virtual one; it is unmasked when the guest has completed it.
    fn guest_timer_fired(&mut self, vcpu: VcpuId) {
        self.platform.mask_guest_timer(true);
        let vm = &mut self.vms[vcpu.0 as usize];
        vm.vcpu.vtimer_masked = true;
        let effects = vm.vgic.raise(0, abi::GUEST_VTIMER_INTID);
        self.kick(vcpu, effects);
        self.wake(vcpu);
    }

    /// Wakes the vCPUs a virtual interrupt was made pending for, and has
    /// the list registers looked at before the guest runs again.
    fn kick(&mut self, vcpu: VcpuId, effects: Effects) {
        self.vms[vcpu.0 as usize].vcpu.irq_dirty = true;
        // One vCPU per VM: bit 0 is `vcpu` itself.
        if effects.kick & 1 != 0 {
            self.wake(vcpu);
        }
    }

    /// WFI: block until an interrupt is pending for the vCPU, unless one is
    /// already, or its timer is about to fire.
    fn wait_for_interrupt(&mut self, vcpu: VcpuId, esr: u64) -> Next {
        skip_instruction(self.ctx(vcpu), esr);
        if esr & WFX_IS_WFE != 0 {
            return Next::Requeue;
        }
        if self.vms[vcpu.0 as usize].vgic.has_pending(0) {
            return Next::Resume;
        }
        let now = self.platform.counter();
        let wake_at = self.platform.guest_timer_deadline();
        if wake_at.is_some_and(|at| at <= now) {
            return Next::Resume;
        }
        let state = &mut self.vms[vcpu.0 as usize].vcpu;
        state.blocked = true;
        state.wake_at = wake_at;
        Next::Block
    }

    fn stage2_abort(&mut self, vcpu: VcpuId, abort: Abort, esr: u64) -> Next {
        let emulated = self.vms[vcpu.0 as usize].vgic.handles(abort.ipa);
        if !abort.instruction && emulated {
            if let Some(access) = abort.access {
                let ipa = abort.ipa;
                let register = usize::from(access.register);
                if abort.write {
                    let value = if register == 31 {
                        0
                    } else {
                        self.ctx(vcpu).reg(register)
                    };
                    let vgic = &mut self.vms[vcpu.0 as usize].vgic;
                    let effects = vgic.write(0, ipa, access.width, access.stored(value));
                    self.kick(vcpu, effects);
                } else {
                    let value = self.vms[vcpu.0 as usize].vgic.read(0, ipa, access.width);
                    if register != 31 {
                        self.ctx(vcpu).set_reg(register, access.loaded(value));
                    }
                }
                skip_instruction(self.ctx(vcpu), esr);
                return Next::Resume;
            }
        }
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

    fn hypercall(&mut self, vcpu: VcpuId, esr: u64) -> Next {
        let ctx = self.ctx(vcpu);
        let (function, arg1, arg2) = (ctx.reg(0), ctx.reg(1), ctx.reg(2));
        // The ABI is `HVC #0`; other immediates are reserved.
        let immediate = esr & 0xffff;
        let (result, next) = match function {
            _ if immediate != 0 => (Error::NotSupported as i64, Next::Resume),
            abi::HC_ABI_VERSION => (
                (u64::from(abi::ABI_MAJOR) << 16 | u64::from(abi::ABI_MINOR)) as i64,
                Next::Resume,
            ),
            abi::HC_CONSOLE_WRITE => (self.console_write(vcpu, arg1, arg2), Next::Resume),
            abi::HC_YIELD => (0, Next::Requeue),
            abi::HC_VM_EXIT => {
                let name = self.vms[vcpu.0 as usize].name;
                self.flush_console(vcpu);
                info!("VM {name} exited (code {arg1}) {}", self.cpu_report(vcpu));
                self.mark_stopped(vcpu);
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
        let vm = &mut self.vms[vcpu.0 as usize];
        let Ok(bytes) = vm.ram.read(ipa, len) else {
            return Error::InvalidAddress as i64;
        };
        let lines = vm
            .console
            .write(vm.name, bytes, &mut |line: &[u8]| log::write_line(line));
        if lines > 0 && self.first_guest_line.is_none() {
            let at = self.platform.counter();
            self.first_guest_line = Some(at);
            info!("first guest line at counter {at}");
        }
        len as i64
    }

    fn flush_console(&mut self, vcpu: VcpuId) {
        let vm = &mut self.vms[vcpu.0 as usize];
        vm.console
            .flush(vm.name, &mut |line: &[u8]| log::write_line(line));
    }

    /// Stops a VM for a fault of its own, saying why; the others go on.
    pub(super) fn stop(&mut self, vcpu: VcpuId, why: core::fmt::Arguments) -> Next {
        self.flush_console(vcpu);
        self.mark_stopped(vcpu);
        let vm = &self.vms[vcpu.0 as usize];
        // A guest's own fault, not the hypervisor's: reported, not an error.
        info!("VM {} stopped: {why}", vm.name);
        Next::Stop
    }

    fn mark_stopped(&mut self, vcpu: VcpuId) {
        let vm = &mut self.vms[vcpu.0 as usize];
        if vm.state == VmState::Running {
            vm.state = VmState::Stopped;
            vm.vcpu.blocked = false;
            self.running_vms -= 1;
        }
    }

    fn ctx(&mut self, vcpu: VcpuId) -> &mut P::Context {
        self.vms[vcpu.0 as usize]
            .vcpu
            .ctx
            .as_deref_mut()
            .expect("handed back before its exit is handled")
    }
}

/// Steps over the trapped instruction (2 or 4 bytes, from the IL bit).
fn skip_instruction(ctx: &mut impl VcpuRegs, esr: u64) {
    let length = if trap::instruction_is_32bit(esr) {
        4
    } else {
        2
    };
    ctx.set_pc(ctx.pc() + length);
}
