//! The hypervisor proper: boots the VMs of the image, then runs whichever
//! vCPU the scheduler picks until it traps, and acts on the trap (see
//! `exit.rs`). Between runs it keeps each vCPU's list registers in step with
//! its virtual GIC, and wakes vCPUs blocked in WFI when their timer fires.

mod channel;
mod clear;
mod console;
mod cpu_loop;
mod device_work;
mod exit;
mod network;
mod psci;
mod timers;
mod vm;

pub use cpu_loop::{run_cpu, HvLock, Outside};
pub use device_work::DeviceJob;
pub use vm::VmDevices;

use crate::{
    device::Signal,
    disk::{BlockDevice, SharedDisk},
    platform::{Platform, RawExit},
    sched::{CpuId, Pick, SchedConfig, Scheduler, VcpuId, VcpuParams, Window},
    vgic::{Effects, ListReg, Vgic, VirtualInterface},
    vmid::VmidAllocator,
};
use alloc::{boxed::Box, vec::Vec};
use config::boot::VmTable;
use vm::{GicState, Power, RunState, Vcpu, Vm, VmState};

/// What a physical CPU is doing.
#[derive(Clone, Copy, Debug, Default)]
struct CpuState {
    /// The vCPU whose state is loaded here (running, or between exits).
    running: Option<VcpuId>,
    /// When that vCPU's time slice ends (or, idle, when to look again).
    slice_end: Option<u64>,
    /// Waiting in WFI for something to do: a wake-up must kick it.
    idle: bool,
    /// Another CPU gave its vCPU a slice end: arm the timer before going
    /// back into the guest.
    rearm: bool,
    /// `running` is not loaded: this CPU clears its VM's RAM on its slice
    /// (`Work::Zero`), then runs it.
    clearing: bool,
    /// The list registers here may hold entries (a vCPU's were written
    /// since they were last cleared): a vCPU with none must clear them.
    lrs_in_use: bool,
    /// The vCPU here was handed its expired virtual timer in this lock
    /// hold: this CPU keeps its turn after the lock ([`Hypervisor::keeps_turn`]).
    timer_handed: bool,
}

/// What a physical CPU does next (see [`Hypervisor::next_work`]).
pub enum Work<C> {
    /// Run this vCPU: its state is loaded on this CPU. Hand the context
    /// back with [`Hypervisor::after_run`].
    Run(VcpuId, alloc::boxed::Box<C>),
    /// This vCPU's VM is starting, resetting or touched RAM it had not
    /// before: zero this part of its RAM and clean it to the point of
    /// coherency, without the lock, then call [`Hypervisor::after_zero`].
    Zero(VcpuId, crate::memory::GuestSlice),
    /// Serve this device's work ([`DeviceJob::run`]) without the lock,
    /// then call [`Hypervisor::after_device`]. The vCPU that notified it
    /// stays loaded on this CPU.
    Device(Box<DeviceJob>),
    /// Wait for an interrupt (WFI), then call [`Hypervisor::after_idle`].
    Idle,
    /// No VM is left.
    Finished,
}

pub struct Hypervisor<P: Platform, S: Scheduler, V: Vgic> {
    platform: P,
    /// The virtual CPU interface the vGIC fills; `lr_count` of it, read once.
    vif: V::Interface,
    lr_count: usize,
    sched: S,
    /// The VMs that were built.
    vms: Vec<Vm<V>>,
    /// Every VM's vCPUs, in VM order: `VcpuId(i)` is `vcpus[i]`.
    vcpus: Vec<Vcpu<P::Context, GicState<V>>>,
    vmids: VmidAllocator,
    cpus: Vec<CpuState>,
    /// VMs not stopped yet (asked on every exit: kept, not counted).
    running_vms: usize,
    /// The deadlines of blocked vCPUs' timers (see `set_blocked`).
    timers: timers::Deadlines,
    /// Where `wake_due` gathers the vCPUs whose timers fired (room for all).
    due: Vec<u32>,
    /// vCPUs that are on in a running VM, and those of them blocked with no
    /// timer: kept so that no event scans every vCPU to find a deadlock.
    live_vcpus: usize,
    sleeping_vcpus: usize,
    first_guest_line: Option<u64>,
    /// The time slice, in counter ticks.
    slice: u64,
    /// The CPU whose call into the core is being handled (under the lock).
    acting: CpuId,
    /// Who gets console input.
    focus: console::Focus,
    /// The hypervisor's own disk, which VMs' disk devices serve volumes of.
    disk: Option<SharedDisk>,
    /// The device work each CPU serves after the exit being handled.
    jobs: Vec<Option<Box<DeviceJob>>>,
    /// The switch of every network, its ports the VMs' network devices.
    switch: crate::switch::Switch,
    /// What a network device sends before the switch delivers it; none
    /// without networks.
    outbox: Option<network::Outbox>,
    /// Where the frame being delivered goes (kept: no allocation per frame).
    targets: Vec<crate::switch::Port>,
}

impl<P: Platform, S: Scheduler, V: Vgic> Hypervisor<P, S, V> {
    /// Builds every VM of `table` for a host of `cpus` physical CPUs. A VM
    /// that cannot be built is reported and left out; the others run.
    /// `images` is the image's guest table, which each VM indexes;
    /// `devices[i]` are VM `i`'s emulated devices (none when absent).
    pub fn new(
        mut platform: P,
        vif: V::Interface,
        table: VmTable<'static>,
        images: &[&'static [u8]],
        devices: Vec<VmDevices>,
        cpus: u32,
        time_slice_us: u64,
    ) -> Self {
        let VmTable {
            vms: configs,
            windows,
        } = table;
        let mut vms = Vec::with_capacity(configs.len());
        let mut vcpus = Vec::new();
        let devices = devices
            .into_iter()
            .chain(core::iter::repeat_with(|| Ok(Vec::new())));
        let shared = vm::shared_tables(&vif);
        for (id, (config, devices)) in configs.into_iter().zip(devices).enumerate() {
            let name = config.name.clone();
            let devices = match devices {
                Ok(devices) => devices,
                Err(why) => {
                    crate::error!("VM {name} not started: {why}");
                    continue;
                }
            };
            match vm::build(
                &mut platform,
                &vif,
                id as u32,
                config,
                images,
                devices,
                vm::Place {
                    vm: vms.len(),
                    first_vcpu: vcpus.len(),
                    shared: &shared,
                },
            ) {
                Ok((vm, its_vcpus)) => {
                    vms.push(vm);
                    vcpus.extend(its_vcpus);
                }
                Err(why) => crate::error!("VM {name} not started: {why}"),
            }
        }
        let ticks_per_second = platform.counter_frequency();
        let ticks = |us: u64| us * ticks_per_second / 1_000_000;
        let params: Vec<VcpuParams> = vcpus.iter().map(|v| v.sched).collect();
        let windows: Vec<Window> = windows
            .iter()
            .map(|w| Window {
                vm: w.vm,
                length: ticks(w.length_us),
            })
            .collect();
        let slice = ticks(time_slice_us);
        let mut sched = S::new(&SchedConfig {
            cpus,
            slice,
            ticks_per_second,
            vcpus: &params,
            windows: &windows,
        });
        let now = platform.counter();
        for (index, vcpu) in vcpus.iter_mut().enumerate() {
            if vcpu.power == Power::On {
                vcpu.run = RunState::Queued;
                sched.wake(VcpuId(index as u32), now);
            }
        }
        let vmids = VmidAllocator::new(cpus as usize, platform.vmid_bits());
        let live_vcpus = vcpus.iter().filter(|v| v.power == Power::On).count();
        let mut hv = Hypervisor {
            running_vms: vms.len(),
            timers: timers::Deadlines::new(vcpus.len()),
            due: Vec::with_capacity(vcpus.len()),
            live_vcpus,
            sleeping_vcpus: 0,
            platform,
            lr_count: vif.lr_count().min(vm::MAX_LIST_REGS),
            vif,
            sched,
            vms,
            vcpus,
            vmids,
            cpus: alloc::vec![
                CpuState {
                    // Whatever the firmware left there is cleared once.
                    lrs_in_use: true,
                    ..CpuState::default()
                };
                cpus as usize
            ],
            first_guest_line: None,
            slice,
            acting: CpuId(0),
            focus: console::Focus::default(),
            disk: None,
            jobs: (0..cpus).map(|_| None).collect(),
            switch: crate::switch::Switch::default(),
            outbox: None,
            targets: Vec::new(),
        };
        hv.clear_boot_groups();
        hv.init_console_focus();
        hv.connect_channels();
        hv.connect_networks();
        hv
    }

    pub fn platform(&mut self) -> &mut P {
        &mut self.platform
    }

    /// Hands over the hypervisor's own disk, whose volumes the VMs' disk
    /// devices serve.
    pub fn set_disk(&mut self, disk: Box<dyn BlockDevice + Send>) {
        self.disk = Some(alloc::sync::Arc::new(spin::mutex::TicketMutex::new(disk)));
    }

    /// "after N ms, P% of a CPU": how long `vcpu`'s VM has existed and
    /// what share of one CPU it used, the current run included.
    fn cpu_report(&self, vcpu: VcpuId) -> CpuReport {
        let vm = &self.vms[self.vm_of(vcpu)];
        let now = self.platform.counter();
        let current: u64 = self
            .cpus
            .iter()
            .filter_map(|c| c.running)
            .filter(|v| self.vm_of(*v) == self.vm_of(vcpu))
            .map(|v| now.saturating_sub(self.vcpus[v.0 as usize].run_started))
            .sum();
        CpuReport {
            lifetime: now - vm.created_at,
            used: vm.cpu_ticks + current,
            ticks_per_ms: (self.platform.counter_frequency() / 1000).max(1),
        }
    }

    #[inline]
    fn can_run(&self, vcpu: VcpuId) -> bool {
        self.vcpus[vcpu.0 as usize].power == Power::On
            && self.vms[self.vm_of(vcpu)].state == VmState::Running
    }

    /// Index of `vcpu`'s VM.
    #[inline]
    fn vm_of(&self, vcpu: VcpuId) -> usize {
        self.vcpus[vcpu.0 as usize].vm
    }

    /// How many VMs are still running.
    pub fn running_vms(&self) -> usize {
        self.running_vms
    }

    /// How many VMs were built (running or not).
    pub fn vm_count(&self) -> usize {
        self.vms.len()
    }

    /// Stage-2 translation tables of all VMs (4 KiB each).
    pub fn stage2_tables(&self) -> usize {
        self.vms.iter().map(|vm| vm.stage2.tables()).sum()
    }

    /// Bytes of the fixed-size state of a VM and of a vCPU (its registers
    /// apart), and of a vCPU's registers: what the compiler made of them
    /// for this image, for the memory report and the manifest.
    pub const STATE_SIZES: [usize; 3] = [
        core::mem::size_of::<Vm<V>>(),
        core::mem::size_of::<Vcpu<P::Context, GicState<V>>>(),
        core::mem::size_of::<P::Context>(),
    ];

    /// Which VMs got CPU, and the least and most any got: the exit report
    /// (once, when no VM is left; it looks at every VM).
    pub fn exit_report(&self) -> ExitReport {
        let ticks = self.vms.iter().map(|vm| vm.cpu_ticks);
        ExitReport {
            vms: self.vms.len(),
            ran: ticks.clone().filter(|&t| t > 0).count(),
            least: ticks.clone().min().unwrap_or(0),
            most: ticks.max().unwrap_or(0),
            ticks_per_ms: (self.platform.counter_frequency() / 1000).max(1),
        }
    }

    /// Runs every VM on CPU 0 until none is left: a one-CPU host (and the
    /// host tests), through the loop the image's CPUs run.
    pub fn run(&mut self) {
        let alone = cpu_loop::Alone::new(self);
        run_cpu(&alone, CpuId(0), &mut cpu_loop::Through(&alone));
        alone.into_inner().platform.set_deadline(None);
    }

    /// What `cpu` does next: go on with its vCPU, pick another, or idle.
    /// On SMP hosts each CPU calls this (and `after_run`/`after_idle`) under
    /// the lock that guards the hypervisor, and runs the guest without it.
    pub fn next_work(&mut self, cpu: CpuId) -> Work<P::Context> {
        self.acting = cpu;
        if let Some(job) = self.jobs[cpu.0 as usize].take() {
            if let Some(job) = self.job_for(cpu, job) {
                return Work::Device(job);
            }
        }
        if self.running_vms() == 0 {
            return Work::Finished;
        }
        let vcpu = match self.cpus[cpu.0 as usize].running {
            Some(vcpu) if self.cpus[cpu.0 as usize].clearing => {
                match self.go_on_clearing(cpu, vcpu) {
                    Some(work) => return work,
                    None => vcpu,
                }
            }
            // Going back in after an exit: the timer is armed already.
            Some(vcpu) => vcpu,
            None => match self.sched.pick_next(cpu, self.platform.counter()) {
                Pick::Run { vcpu, .. }
                    if self.vcpus.get(vcpu.0 as usize).map(|v| v.run) != Some(RunState::Queued) =>
                {
                    // The scheduler broke its protocol; running the vCPU
                    // could put it on two CPUs at once.
                    crate::error!("scheduler picked {vcpu:?}, which it does not hold");
                    self.cpus[cpu.0 as usize].idle = true;
                    return Work::Idle;
                }
                Pick::Run { vcpu, .. } if !self.can_run(vcpu) => {
                    // Turned off (or its VM stopped) while queued.
                    self.sched
                        .descheduled(cpu, vcpu, self.platform.counter(), false);
                    self.vcpus[vcpu.0 as usize].run = RunState::Parked;
                    return self.next_work(cpu);
                }
                Pick::Run { vcpu, until } => {
                    self.cpus[cpu.0 as usize].slice_end = until;
                    if let Some(chunk) = self.clear_piece(vcpu) {
                        self.vcpus[vcpu.0 as usize].run = RunState::OnCpu(cpu);
                        self.vcpus[vcpu.0 as usize].run_started = self.platform.counter();
                        self.cpus[cpu.0 as usize].running = Some(vcpu);
                        self.cpus[cpu.0 as usize].clearing = true;
                        return Work::Zero(vcpu, chunk);
                    }
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
        self.flush_lrs(cpu, vcpu);
        let ctx = self.vcpus[vcpu.0 as usize]
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
        self.acting = cpu;
        self.vcpus[vcpu.0 as usize].ctx = Some(ctx);
        self.sync_lrs(vcpu);
        let next = if self.can_run(vcpu) {
            self.handle_exit(cpu, vcpu, exit)
        } else {
            // A sibling stopped the VM or reset it (turning this vCPU off)
            // while this one ran: what it asked for is dropped. A physical
            // interrupt is still the hypervisor's to take.
            if exit.kind == crate::platform::ExitKind::Irq {
                self.handle_irq(cpu, Some(vcpu));
            }
            exit::Next::Block
        };
        self.exit_handled(cpu, vcpu, next);
    }

    /// `cpu` came back from running `vcpu`, whose last exit the fast path
    /// answered without this lock: a distributor access that made
    /// interrupts pending for the vCPUs in `effects`.
    pub fn after_fast(
        &mut self,
        cpu: CpuId,
        vcpu: VcpuId,
        ctx: alloc::boxed::Box<P::Context>,
        effects: Effects,
    ) {
        self.acting = cpu;
        self.vcpus[vcpu.0 as usize].ctx = Some(ctx);
        self.sync_lrs(vcpu);
        let next = if self.can_run(vcpu) {
            self.kick(vcpu, effects);
            exit::Next::Resume
        } else {
            exit::Next::Block
        };
        self.exit_handled(cpu, vcpu, next);
    }

    #[inline(always)]
    fn exit_handled(&mut self, cpu: CpuId, vcpu: VcpuId, next: exit::Next) {
        // Whatever stops the VM or turns this vCPU off while its exit is
        // handled says so in `next`.
        debug_assert!(!matches!(next, exit::Next::Resume) || self.can_run(vcpu));
        if !matches!(next, exit::Next::Resume) {
            self.unload(cpu, vcpu);
        } else if self.cpus[cpu.0 as usize].rearm {
            self.arm_timer(cpu);
        }
    }

    /// `work` runs the vCPU that was handed its expired virtual timer in
    /// this lock hold. Its CPU then keeps its turn after letting the lock
    /// go (no YIELD to a waiter): under QEMU's round-robin TCG giving way
    /// hands the rest of the turn to the waiter, which runs on into its own
    /// guest up to the next timer deadline anywhere, and the timer
    /// interrupt waits for all of it (beside a packet flooder, tens of
    /// milliseconds). Only the timer, and once per expiry (it stays masked
    /// until the guest completes it): a vCPU spinning with interrupts
    /// masked on a sibling that waits for the lock still lets it in at its
    /// next exit. On hardware YIELD is a hint either way.
    pub(super) fn keeps_turn(&mut self, cpu: CpuId, work: &Work<P::Context>) -> bool {
        let handed = core::mem::take(&mut self.cpus[cpu.0 as usize].timer_handed);
        handed && matches!(work, Work::Run(..))
    }

    /// What the fast path may answer distributor accesses from while
    /// `work` runs: its VM's vGIC, if nothing of the vCPU's is in the list
    /// registers (so nothing needs syncing first) and its timer interrupt is
    /// not waiting to be unmasked.
    #[inline(always)]
    fn fast_vgic(&self, work: &Work<P::Context>) -> exit::FastVgic<V> {
        let Work::Run(vcpu, _) = work else {
            return None;
        };
        let state = &self.vcpus[vcpu.0 as usize];
        (!state.lrs_live && !state.vtimer_masked)
            .then(|| (self.vms[state.vm].vgic, state.index as usize))
    }

    /// `cpu` woke from WFI: take the interrupt that woke it.
    pub fn after_idle(&mut self, cpu: CpuId) {
        self.acting = cpu;
        self.cpus[cpu.0 as usize].idle = false;
        self.handle_irq(cpu, None);
    }

    /// No CPU runs a vCPU, and every vCPU that is on waits in WFI with no
    /// timer armed: no interrupt source is left that could wake one (there
    /// are no devices yet).
    fn deadlocked(&self) -> bool {
        #[cfg(test)]
        assert_eq!(
            self.live_vcpus == self.sleeping_vcpus,
            self.vcpus
                .iter()
                .filter(|v| self.vms[v.vm].state == VmState::Running && v.power == Power::On)
                .all(|v| v.blocked && v.wake_at.is_none()),
            "the counts agree with a scan"
        );
        // Only a live vCPU blocks, so equal counts mean all of them sleep.
        self.cpus.iter().all(|c| c.running.is_none()) && self.live_vcpus == self.sleeping_vcpus
    }

    /// Sets whether `vcpu` waits in WFI, and until when (a `wake_at` counts
    /// only while blocked), keeping the timer heap and the counts in step:
    /// every change of `blocked` and `wake_at` goes through here.
    fn set_blocked(&mut self, vcpu: usize, blocked: bool, wake_at: Option<u64>) {
        let wake_at = wake_at.filter(|_| blocked);
        let state = &mut self.vcpus[vcpu];
        let sleeping = |blocked: bool, at: Option<u64>| usize::from(blocked && at.is_none());
        self.sleeping_vcpus -= sleeping(state.blocked, state.wake_at);
        self.sleeping_vcpus += sleeping(blocked, wake_at);
        state.blocked = blocked;
        state.wake_at = wake_at;
        self.timers.set(vcpu, wake_at);
    }

    /// Turns `vcpu` on or off, keeping the count of live vCPUs: every
    /// change of `power` goes through here.
    fn set_power(&mut self, vcpu: usize, power: Power) {
        let state = &mut self.vcpus[vcpu];
        if self.vms[state.vm].state == VmState::Running && state.power != power {
            if power == Power::On {
                self.live_vcpus += 1;
            } else {
                self.live_vcpus -= 1;
            }
        }
        state.power = power;
    }

    /// Better a clear report than a silent hang.
    fn stop_deadlocked(&mut self) {
        for index in 0..self.vms.len() {
            if self.vms[index].state == VmState::Running {
                let vcpu = VcpuId(self.vms[index].first_vcpu as u32);
                self.stop(
                    vcpu,
                    format_args!(
                        "it waits in WFI with no timer armed, and nothing else can wake it"
                    ),
                );
            }
        }
    }

    /// `cpu`'s timer fires at the end of its slice or when the first
    /// blocked vCPU's timer does, whichever is sooner; and, while it runs a
    /// vCPU, at least once a slice (a tick).
    ///
    /// The tick, for a vCPU of a VM with several: alone on its CPU it has
    /// no slice end, and one that spins with its interrupts masked waiting
    /// for a sibling (Linux's `stop_machine`) never leaves the guest. Under
    /// QEMU 7.2's round-robin TCG with `-icount` that CPU is given every
    /// instruction up to the next timer deadline and the sibling's CPU
    /// none, so the sibling never answers: the guest deadlocks. Re-arming
    /// the timer each tick ends the spinner's turn; on hardware it costs one
    /// short exit per slice. A VM with one vCPU has no sibling to wait for,
    /// so it gets none (and its neighbours' latency does not pay for it).
    fn arm_timer(&mut self, cpu: CpuId) {
        let wake = self.timers.earliest();
        #[cfg(test)]
        assert_eq!(
            wake,
            self.vcpus
                .iter()
                .filter(|v| v.blocked)
                .filter_map(|v| v.wake_at)
                .min(),
            "the heap agrees with a scan"
        );
        let tick = self.cpus[cpu.0 as usize]
            .running
            .filter(|&vcpu| self.has_siblings(vcpu))
            .map(|_| self.platform.counter() + self.slice);
        // Pairwise, not an iterator over an array: that copied the array and
        // cost about 100 instructions on every exit that rearms.
        let deadline = earlier(
            earlier(self.cpus[cpu.0 as usize].slice_end, wake),
            earlier(tick, self.console_deadline(cpu)),
        );
        self.cpus[cpu.0 as usize].rearm = false;
        self.platform.set_deadline(deadline);
    }

    /// Makes `vcpu` runnable again if it waits in WFI.
    fn wake(&mut self, vcpu: VcpuId) {
        let state = &self.vcpus[vcpu.0 as usize];
        if state.blocked && state.power == Power::On {
            self.set_blocked(vcpu.0 as usize, false, None);
            self.make_runnable(vcpu);
        }
    }

    /// Hands `vcpu` to the scheduler if it can run and nobody holds it: a
    /// vCPU on a CPU goes back to the scheduler when it leaves that CPU.
    fn make_runnable(&mut self, vcpu: VcpuId) {
        let state = &self.vcpus[vcpu.0 as usize];
        if state.run == RunState::Parked && !state.blocked && self.can_run(vcpu) {
            self.vcpus[vcpu.0 as usize].run = RunState::Queued;
            self.sched.wake(vcpu, self.platform.counter());
            if !self.kick_idle_cpus_for(vcpu) {
                self.end_open_slices_for(vcpu);
            }
        }
    }

    /// Whether `vcpu`'s VM has other vCPUs it may wait for.
    fn has_siblings(&self, vcpu: VcpuId) -> bool {
        self.vms[self.vcpus[vcpu.0 as usize].vm].config.vcpus > 1
    }

    /// The CPUs that may run `vcpu`: the one the scheduler names, or all.
    fn cpus_for(&self, vcpu: VcpuId) -> core::ops::Range<usize> {
        match self.sched.cpu_for(vcpu) {
            Some(cpu) => {
                let index = (cpu.0 as usize).min(self.cpus.len());
                index..(index + 1).min(self.cpus.len())
            }
            None => 0..self.cpus.len(),
        }
    }

    /// An idle CPU may be the one to run `vcpu`, which just became
    /// runnable: kicks each that may; whether there was one.
    fn kick_idle_cpus_for(&mut self, vcpu: VcpuId) -> bool {
        let mut kicked = false;
        for index in self.cpus_for(vcpu) {
            if self.cpus[index].idle {
                self.platform.kick_cpu(CpuId(index as u32));
                kicked = true;
            }
        }
        kicked
    }

    /// No CPU that may run `vcpu` is idle. A vCPU picked while nothing else
    /// waited runs with no slice end, until it traps by itself: one that
    /// never does would starve `vcpu`. Each such CPU gets a slice end now
    /// (and is kicked to arm its timer), so the scheduler chooses again
    /// within a slice.
    fn end_open_slices_for(&mut self, vcpu: VcpuId) {
        let end = self.platform.counter() + self.slice;
        for index in self.cpus_for(vcpu) {
            let state = &mut self.cpus[index];
            if state.running.is_none() || state.slice_end.is_some() {
                continue;
            }
            state.slice_end = Some(end);
            state.rearm = true;
            if index != self.acting.0 as usize {
                self.platform.kick_cpu(CpuId(index as u32));
            }
        }
    }

    /// Wakes every blocked vCPU whose timer has fired by `now`; whether
    /// any woke.
    fn wake_due(&mut self, now: u64) -> bool {
        let mut due = core::mem::take(&mut self.due);
        due.clear();
        while let Some(index) = self.timers.pop_due(now) {
            due.push(index as u32);
        }
        // In vCPU order, as a scan found them: the scheduler queues them in
        // the order they wake.
        due.sort_unstable();
        for &index in &due {
            self.wake(VcpuId(index));
        }
        let woke = !due.is_empty();
        self.due = due;
        woke
    }

    /// Puts `vcpu`'s state, list registers and stage-2 into `cpu`.
    fn load(&mut self, cpu: CpuId, vcpu: VcpuId) {
        let index = self.vm_of(vcpu);
        let (vmid, flush) = self.vmids.vmid_for(cpu.0 as usize, self.vms[index].vmid);
        if flush {
            self.platform.flush_guest_tlbs();
        }
        self.vms[index].vmid = Some(vmid);
        let vttbr = self.vms[index].stage2.vttbr(vmid.id);
        let state = &mut self.vcpus[vcpu.0 as usize];
        let ctx = state.ctx.as_deref().expect("not running elsewhere");
        self.platform.vcpu_load(ctx, vttbr);
        self.vif.load(&state.gic);
        let now = self.platform.counter();
        state.run_started = now;
        state.run = RunState::OnCpu(cpu);
        let timer_in_flight = state.vtimer_masked;
        self.cpus[cpu.0 as usize].running = Some(vcpu);
        // Its virtual timer expired while it was off the CPU (it is usually
        // why it was woken): hand it the interrupt now, so that it enters
        // its handler straight away instead of entering the guest only for
        // the timer to fire there and exit at once.
        if !timer_in_flight
            && self
                .platform
                .guest_timer_deadline()
                .is_some_and(|at| at <= now)
        {
            self.guest_timer_fired(vcpu);
        }
        // `flush_lrs`, which runs next (`next_work`), writes them itself
        // when the vCPU has any live or due: only clear the previous
        // vCPU's here.
        let state = &self.vcpus[vcpu.0 as usize];
        let cpu_state = &mut self.cpus[cpu.0 as usize];
        if !(state.lrs_live || state.irq_dirty) && cpu_state.lrs_in_use {
            self.vif.write_lrs(&state.lrs[..self.lr_count], false);
            cpu_state.lrs_in_use = false;
        }
    }

    /// Takes `vcpu`'s state off `cpu` and tells the scheduler whether it
    /// can still run (preempted, yielded) or not (blocked, off, stopped).
    fn unload(&mut self, cpu: CpuId, vcpu: VcpuId) {
        let state = &mut self.vcpus[vcpu.0 as usize];
        self.vif.put(&mut state.gic);
        self.platform
            .vcpu_put(state.ctx.as_deref_mut().expect("handed back"));
        self.leave_cpu(cpu, vcpu);
    }

    /// `vcpu` is off `cpu` (its state saved, or never loaded): its CPU time
    /// counted, the scheduler told.
    fn leave_cpu(&mut self, cpu: CpuId, vcpu: VcpuId) {
        let now = self.platform.counter();
        let runnable = self.can_run(vcpu) && !self.vcpus[vcpu.0 as usize].blocked;
        let state = &mut self.vcpus[vcpu.0 as usize];
        state.run = if runnable {
            RunState::Queued
        } else {
            RunState::Parked
        };
        let ran = now - state.run_started;
        let vm_index = state.vm;
        let vm = &mut self.vms[vm_index];
        vm.cpu_ticks += ran;
        let stopped = vm.state == VmState::Stopped;
        self.cpus[cpu.0 as usize].running = None;
        self.sched.descheduled(cpu, vcpu, now, runnable);
        if stopped {
            self.sched.remove(vcpu);
        }
        self.clear_channels_if_quiet(vm_index);
        self.reset_if_quiet(vm_index);
    }

    /// Before the guest runs: pending virtual interrupts into its list
    /// registers.
    fn flush_lrs(&mut self, cpu: CpuId, vcpu: VcpuId) {
        let count = self.lr_count;
        let state = &mut self.vcpus[vcpu.0 as usize];
        if !state.lrs_live && !state.irq_dirty {
            return;
        }
        state.irq_dirty = false;
        let mut vgic = self.vms[state.vm].vgic.lock();
        let index = state.index as usize;
        // Entries the guest completed go back to the hardware empty: one
        // left with its EOI-maintenance bit would keep the maintenance
        // interrupt asserted.
        let lrs = &mut state.lrs[..count];
        let flushed = vgic.flush(index, lrs);
        drop(vgic);
        let overflow = flushed.waiting;
        for lr in lrs.iter_mut() {
            // Hear when the guest completes a timer interrupt, to unmask
            // it; the vGIC asks for others (level interrupts) itself.
            if lr.is_free() {
                lr.eoi_maintenance = false;
            } else if lr.intid == abi::GUEST_VTIMER_INTID {
                lr.eoi_maintenance = true;
            }
        }
        state.lrs_live = overflow || lrs.iter().any(|lr| !lr.is_free());
        self.vif.write_lrs(lrs, overflow);
        self.cpus[cpu.0 as usize].lrs_in_use = state.lrs_live;
        // What this vCPU held back from others until now.
        if flushed.effects.kick != 0 {
            self.kick(vcpu, flushed.effects);
        }
    }

    /// After the guest ran: what it did with its list registers back into
    /// its virtual GIC; its timer unmasked once its interrupt is done.
    #[inline(always)]
    fn sync_lrs(&mut self, vcpu: VcpuId) {
        // Most exits: nothing in the list registers, no timer to unmask.
        let state = &self.vcpus[vcpu.0 as usize];
        if state.lrs_live || state.vtimer_masked {
            self.sync_live_lrs(vcpu);
        }
    }

    #[inline(never)]
    fn sync_live_lrs(&mut self, vcpu: VcpuId) {
        let count = self.lr_count;
        let state = &mut self.vcpus[vcpu.0 as usize];
        let mut vgic = self.vms[state.vm].vgic.lock();
        let index = state.index as usize;
        let mut effects = Effects::default();
        if state.lrs_live {
            let lrs = &mut state.lrs[..count];
            self.vif.read_lrs(lrs);
            effects = vgic.sync(index, lrs);
            let completed = lrs
                .iter()
                .any(|lr| lr.is_free() && *lr != ListReg::default());
            for lr in lrs.iter_mut().filter(|lr| lr.is_free()) {
                *lr = ListReg::default();
            }
            // Still live if anything is in flight, or if completed entries
            // must be written back empty before the guest runs again.
            state.lrs_live =
                completed || lrs.iter().any(|lr| !lr.is_free()) || vgic.has_pending(index);
        }
        if state.vtimer_masked && !vgic.in_flight(index, abi::GUEST_VTIMER_INTID) {
            state.vtimer_masked = false;
            self.platform.mask_guest_timer(false);
        }
        drop(vgic);
        // A level interrupt completed with its line high is pending again.
        if effects.kick != 0 {
            self.kick(vcpu, effects);
        }
    }

    /// A device of VM `vm` (entry `device` of its device table) changed
    /// its interrupt outside a guest access (console input arrived): its
    /// line is driven or its interrupt raised as `signal` says. Unknown
    /// VMs and devices are ignored.
    pub fn device_signal(&mut self, vm: usize, device: usize, signal: Signal) {
        let Some(vm) = self.vms.get(vm) else {
            return;
        };
        if device < vm.devices.device_count() {
            self.signal(VcpuId(vm.first_vcpu as u32), device, signal);
        }
    }
}

/// What the VMs got of the CPUs, over their lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitReport {
    /// VMs built.
    pub vms: usize,
    /// Of them, those that ran at all.
    pub ran: usize,
    /// The least and the most CPU time one got, in counter ticks.
    pub least: u64,
    pub most: u64,
    pub ticks_per_ms: u64,
}

impl core::fmt::Display for ExitReport {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        let us = |ticks: u64| ticks * 1000 / self.ticks_per_ms;
        write!(
            f,
            "exit report: {} VMs, {} got CPU (least {} us, most {} us)",
            self.vms,
            self.ran,
            us(self.least),
            us(self.most)
        )
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

/// The earlier of two optional deadlines.
fn earlier(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
