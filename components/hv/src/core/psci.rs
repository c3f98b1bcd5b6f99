//! PSCI 1.0 for guests (Arm DEN 0022), over SMC or HVC: how a guest starts
//! and stops its vCPUs and powers its VM off or resets it, as on hardware.

use super::{
    exit::Next,
    vm::{Power, RunState, VmState},
    Hypervisor,
};
use crate::{
    info,
    platform::{Platform, VcpuRegs},
    sched::{CpuId, Scheduler, VcpuId},
    vgic::{ListReg, Vgic},
};
use abi::psci::{
    AFFINITY_INFO_32, AFFINITY_INFO_64, ALREADY_ON, CPU_OFF, CPU_ON_32, CPU_ON_64, FEATURES,
    INVALID_ADDRESS, INVALID_PARAMETERS, MIGRATE_INFO_TYPE, NOT_SUPPORTED, ON_PENDING, SUCCESS,
    SYSTEM_OFF, SYSTEM_RESET, TRUSTED_OS_NOT_PRESENT, VERSION, VERSION_1_0,
};

const IMPLEMENTED: [u32; 10] = [
    VERSION,
    CPU_OFF,
    CPU_ON_32,
    CPU_ON_64,
    AFFINITY_INFO_32,
    AFFINITY_INFO_64,
    MIGRATE_INFO_TYPE,
    SYSTEM_OFF,
    SYSTEM_RESET,
    FEATURES,
];

/// Whether an SMCCC function ID is in PSCI's range (standard secure
/// service calls 0x00-0x1f, SMC32 or SMC64).
pub(super) fn is_psci(function: u64) -> bool {
    function & !0x4000_0000 & !0x1f == 0x8400_0000
}

impl<P: Platform, S: Scheduler, V: Vgic> Hypervisor<P, S, V> {
    /// A PSCI call by `vcpu`; the trapped instruction has been stepped over.
    pub(super) fn psci(&mut self, vcpu: VcpuId) -> Next {
        let ctx = self.ctx(vcpu);
        let (function, mut arg1, mut arg2, mut arg3) =
            (ctx.reg(0), ctx.reg(1), ctx.reg(2), ctx.reg(3));
        if function & 0x4000_0000 == 0 {
            // SMC32: only the low halves of the arguments are defined.
            (arg1, arg2, arg3) = (arg1 & 0xffff_ffff, arg2 & 0xffff_ffff, arg3 & 0xffff_ffff);
        }
        // A function ID is 32 bits: one with any upper bit set is none of these.
        let (result, next) = match u32::try_from(function).unwrap_or(0) {
            VERSION => (VERSION_1_0, Next::Resume),
            CPU_ON_32 | CPU_ON_64 => (self.cpu_on(vcpu, arg1, arg2, arg3), Next::Resume),
            CPU_OFF => {
                self.cpu_off(vcpu);
                return Next::Block;
            }
            AFFINITY_INFO_32 | AFFINITY_INFO_64 => {
                (self.affinity_info(vcpu, arg1, arg2), Next::Resume)
            }
            MIGRATE_INFO_TYPE => (TRUSTED_OS_NOT_PRESENT, Next::Resume),
            FEATURES => (
                if u32::try_from(arg1).is_ok_and(|id| IMPLEMENTED.contains(&id)) {
                    SUCCESS
                } else {
                    NOT_SUPPORTED
                },
                Next::Resume,
            ),
            SYSTEM_OFF => {
                let vm = self.vm_of(vcpu);
                info!(
                    "VM {} powered off {}",
                    self.vms[vm].config.name,
                    self.cpu_report(vcpu)
                );
                self.stop_vm(vm);
                return Next::Stop;
            }
            SYSTEM_RESET => {
                self.request_reset(vcpu);
                return Next::Block;
            }
            _ => (NOT_SUPPORTED, Next::Resume),
        };
        self.ctx(vcpu).set_reg(0, result as u64);
        next
    }

    /// The vCPU of `vcpu`'s VM that `mpidr` names (Aff0 = index).
    fn sibling(&self, vcpu: VcpuId, mpidr: u64) -> Option<VcpuId> {
        let vm = &self.vms[self.vm_of(vcpu)];
        let index = mpidr & 0xff_00ff_ffff;
        (index < u64::from(vm.config.vcpus)).then(|| VcpuId((vm.first_vcpu as u64 + index) as u32))
    }

    fn cpu_on(&mut self, vcpu: VcpuId, mpidr: u64, entry: u64, context: u64) -> i64 {
        let Some(target) = self.sibling(vcpu, mpidr) else {
            return INVALID_PARAMETERS;
        };
        let state = &self.vcpus[target.0 as usize];
        if state.power == Power::On {
            return ALREADY_ON;
        }
        if matches!(state.run, RunState::OnCpu(_)) {
            // Turned off but still leaving its CPU: its context is not ours
            // to reset until it has.
            return ON_PENDING;
        }
        let ram = &self.vms[state.vm].ram;
        if ram.slice(entry, 4).is_err() {
            return INVALID_ADDRESS;
        }
        self.reset_vcpu(target, entry, context);
        self.set_power(target.0 as usize, Power::On);
        self.start(target);
        SUCCESS
    }

    fn cpu_off(&mut self, vcpu: VcpuId) {
        self.set_power(vcpu.0 as usize, Power::Off);
        // Its list registers were synced when it trapped. Left there, an
        // interrupt would stay "held" by a vCPU that never runs again: no
        // sibling could take it, and the one it is routed to would ask for
        // a maintenance interrupt on every entry.
        let (vm, index) = self.vm_and_index(vcpu);
        let effects = self.vms[vm].vgic.lock().release_lrs(index);
        let state = &mut self.vcpus[vcpu.0 as usize];
        state.lrs = [ListReg::default(); super::vm::MAX_LIST_REGS];
        state.lrs_live = false;
        self.kick(vcpu, effects);
        let vm = self.vm_of(vcpu);
        let all_off = self.vms[vm]
            .vcpu_indices()
            .all(|v| self.vcpus[v].power == Power::Off);
        if all_off {
            info!(
                "VM {} stopped: all its vCPUs are off {}",
                self.vms[vm].config.name,
                self.cpu_report(vcpu)
            );
            self.stop_vm(vm);
        }
    }

    fn affinity_info(&self, vcpu: VcpuId, mpidr: u64, level: u64) -> i64 {
        match self.sibling(vcpu, mpidr) {
            Some(target) if level == 0 => match self.vcpus[target.0 as usize].power {
                Power::On => 0,
                Power::Off => 1,
            },
            _ => INVALID_PARAMETERS,
        }
    }

    /// Every vCPU of the VM goes off; once none runs anywhere the VM is
    /// rebuilt from its image and vCPU 0 starts again.
    fn request_reset(&mut self, vcpu: VcpuId) {
        let vm = self.vm_of(vcpu);
        info!("VM {} resets", self.vms[vm].config.name);
        self.vms[vm].reset_requested = true;
        for index in self.vms[vm].vcpu_indices() {
            self.set_power(index, Power::Off);
            self.set_blocked(index, false, None);
        }
        self.channels_down(vm);
        // A network device would otherwise go on writing arriving frames
        // into the rings the guest set up before, in the rebooted guest's
        // RAM. Frames are not delivered until the VM runs again.
        self.vms[vm].devices.reset_all();
        self.kick_cpus_running(vm);
    }

    /// Called when a vCPU of a VM that asked for a reset has left its CPU.
    pub(super) fn reset_if_quiet(&mut self, vm: usize) {
        // The flag first: this runs every time a vCPU leaves a CPU.
        if !self.vms[vm].reset_requested || self.vms[vm].state == VmState::Stopped {
            return;
        }
        let quiet = self.vms[vm]
            .vcpu_indices()
            .all(|v| !matches!(self.vcpus[v].run, RunState::OnCpu(_)));
        if !quiet {
            return;
        }
        self.vms[vm].reset_requested = false;
        *self.vms[vm].vgic.lock() = V::new(self.vms[vm].config.vcpus as usize);
        for index in self.vms[vm].vcpu_indices() {
            self.reset_vcpu(VcpuId(index as u32), 0, 0);
        }
        // Clearing megabytes under the lock every CPU takes would stall all
        // of them: vCPU 0 clears the RAM piece by piece, without the lock,
        // whenever the scheduler gives it a CPU (`Work::Zero`), then starts.
        self.clear_for_reset(vm);
        self.clear_channels_with_reset(vm);
        let first = self.vms[vm].first_vcpu;
        self.set_power(first, Power::On);
        self.start(VcpuId(first as u32));
    }

    /// A fresh vCPU at `entry` with `x0 = arg0`, as after power-on.
    fn reset_vcpu(&mut self, vcpu: VcpuId, entry: u64, arg0: u64) {
        let state = &self.vcpus[vcpu.0 as usize];
        let width = self.vms[state.vm].config.width;
        let fresh = self.platform.new_context(entry, arg0, state.index, width);
        self.reset_vcpu_to(vcpu, fresh);
    }

    /// vCPU 0 of a VM just reloaded, as it started.
    pub(super) fn restart_vcpu0(&mut self, vcpu: VcpuId) {
        let vm = &self.vms[self.vm_of(vcpu)];
        let fresh = vm.start.context(&self.platform, vm.config.width);
        self.reset_vcpu_to(vcpu, fresh);
    }

    fn reset_vcpu_to(&mut self, vcpu: VcpuId, fresh: P::Context) {
        let state = &mut self.vcpus[vcpu.0 as usize];
        if let Some(ctx) = state.ctx.as_deref_mut() {
            *ctx = fresh;
        }
        state.lrs = [ListReg::default(); super::vm::MAX_LIST_REGS];
        state.gic = Default::default();
        state.lrs_live = false;
        state.irq_dirty = false;
        state.vtimer_masked = false;
        self.set_blocked(vcpu.0 as usize, false, None);
    }

    /// Hands a vCPU that was off to the scheduler, and kicks idle CPUs.
    fn start(&mut self, vcpu: VcpuId) {
        self.make_runnable(vcpu);
    }

    /// Makes the CPUs running `vm`'s vCPUs in the guest right now exit to
    /// the hypervisor soon.
    pub(super) fn kick_cpus_running(&mut self, vm: usize) {
        for index in self.vms[vm].vcpu_indices() {
            self.kick_if_in_guest(VcpuId(index as u32));
        }
    }

    /// Kicks the CPU running `vcpu` if it is in the guest right now. (A vCPU
    /// whose context is in hand is not: it is the one whose exit is being
    /// handled, or it runs nowhere.)
    pub(super) fn kick_if_in_guest(&mut self, vcpu: VcpuId) {
        if self.vcpus[vcpu.0 as usize].ctx.is_some() {
            return;
        }
        if let Some(cpu) = self.cpus.iter().position(|c| c.running == Some(vcpu)) {
            self.platform.kick_cpu(CpuId(cpu as u32));
        }
    }
}
