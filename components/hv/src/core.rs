//! The hypervisor proper: boots the VMs of the image, then runs whichever
//! vCPU the scheduler picks until it traps, and acts on the trap.

use crate::{
    info, log,
    memory::GuestRam,
    platform::{ExitKind, Platform, RawExit, VcpuRegs},
    sched::{CpuId, Pick, SchedConfig, Scheduler, VcpuId, VcpuParams},
    stage2::Stage2,
    trap::{self, Trap},
    vmid::{Vmid, VmidAllocator},
};
use abi::{Error, StartInfo, CMDLINE_LEN, GUEST_RAM_BASE, VM_NAME_LEN};
use alloc::vec::Vec;
use pv_console::LineBuffer;

/// One VM as the image describes it.
pub struct VmDesc {
    pub name: &'static str,
    pub guest: &'static str,
    pub cmdline: &'static str,
    pub ram: GuestRam,
    pub image: &'static [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VmState {
    Running,
    Stopped,
}

struct Vm<C> {
    /// Index in the image's VM table.
    id: u32,
    name: &'static str,
    stage2: Stage2,
    vmid: Option<Vmid>,
    ram: GuestRam,
    console: LineBuffer,
    state: VmState,
    vcpu: C,
}

/// What handling one exit means for the vCPU that made it.
enum Next {
    /// Back into the same vCPU, same slice.
    Resume,
    /// Its slice is over, or it gave it up: back on the run queue.
    Requeue,
    /// Its VM stopped.
    Stop,
}

pub struct Hypervisor<P: Platform, S: Scheduler> {
    platform: P,
    sched: S,
    /// The VMs that were built; one vCPU each for now: `VcpuId(i)` is `vms[i]`'s.
    vms: Vec<Vm<P::Context>>,
    vmids: VmidAllocator,
    /// The vCPU whose EL1 state and stage-2 are in the CPU.
    loaded: Option<(VcpuId, Vmid)>,
    first_guest_line: Option<u64>,
}

impl<P: Platform, S: Scheduler> Hypervisor<P, S> {
    /// Builds every VM: stage-2 tables, RAM contents, start info, vCPU.
    /// A VM that cannot be built is reported and left out; the others run.
    pub fn new(mut platform: P, descs: Vec<VmDesc>, time_slice_us: u64) -> Self {
        let mut vms = Vec::with_capacity(descs.len());
        for (id, desc) in descs.into_iter().enumerate() {
            let name = desc.name;
            match build_vm(&mut platform, id as u32, desc) {
                Ok(vm) => vms.push(vm),
                Err(why) => crate::error!("VM {name} not started: {why}"),
            }
        }
        let ticks_per_second = platform.counter_frequency();
        let params: Vec<VcpuParams> = vms.iter().map(|vm| VcpuParams::of_vm(vm.id)).collect();
        let mut sched = S::new(&SchedConfig {
            cpus: 1,
            slice: time_slice_us * ticks_per_second / 1_000_000,
            ticks_per_second,
            vcpus: &params,
            windows: &[],
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
            first_guest_line: None,
        }
    }

    pub fn platform(&mut self) -> &mut P {
        &mut self.platform
    }

    /// Runs VMs until none is left.
    pub fn run(&mut self) {
        const CPU: CpuId = CpuId(0);
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
                Pick::Idle { until } => self.idle(until),
            }
        }
        self.platform.set_deadline(None);
    }

    /// Runs `vcpu` until its slice ends or it stops; whether it can go on.
    fn run_vcpu(&mut self, vcpu: VcpuId, until: Option<u64>) -> bool {
        self.load(vcpu);
        self.platform.set_deadline(until);
        loop {
            let exit = self.platform.run(&mut self.vms[vcpu.0 as usize].vcpu);
            match self.handle_exit(vcpu, exit) {
                Next::Resume => continue,
                Next::Requeue => return true,
                Next::Stop => return false,
            }
        }
    }

    /// Nothing to run: wait for an interrupt (or the scheduler's deadline)
    /// with the CPU in WFI, no tick.
    fn idle(&mut self, until: Option<u64>) {
        self.platform.set_deadline(until);
        self.platform.wait_for_interrupt();
        // Only the timer can end an idle period today; any interrupt does.
        let _ = self.handle_irq();
    }

    /// Puts `vcpu`'s state and stage-2 into the CPU unless they are there.
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
                    .switch_to(Some(&mut prev_vm.vcpu), &next_vm.vcpu, vttbr);
            }
            _ => self.platform.switch_to(None, &self.vms[index].vcpu, vttbr),
        }
        self.loaded = Some((vcpu, vmid));
    }

    fn handle_exit(&mut self, vcpu: VcpuId, exit: RawExit) -> Next {
        match exit.kind {
            ExitKind::Irq => return self.handle_irq(),
            ExitKind::Sync => {}
            ExitKind::Fiq | ExitKind::SError => {
                return self.stop(vcpu, format_args!("{:?} (ESR {:#x})", exit.kind, exit.esr));
            }
        }
        match trap::decode(&exit) {
            Trap::Hypercall => self.hypercall(vcpu),
            Trap::SecureMonitorCall => {
                // No firmware service is passed through yet (PSCI comes with SMP).
                let ctx = &mut self.vms[vcpu.0 as usize].vcpu;
                ctx.set_reg(0, Error::NotSupported as i64 as u64);
                ctx.set_pc(ctx.pc() + 4);
                Next::Resume
            }
            Trap::WaitForInterrupt => {
                // Nothing can wake a guest yet (no virtual interrupts), so a
                // wait is a yield; blocking comes with the vGIC.
                let ctx = &mut self.vms[vcpu.0 as usize].vcpu;
                ctx.set_pc(ctx.pc() + 4);
                Next::Requeue
            }
            Trap::Stage2Abort(abort) => {
                let elr = self.vms[vcpu.0 as usize].vcpu.pc();
                self.stop(
                    vcpu,
                    format_args!(
                        "stage-2 {} abort ({}, {}) at IPA {:#x}, ESR {:#x}, ELR {elr:#x}",
                        if abort.instruction {
                            "instruction"
                        } else {
                            "data"
                        },
                        if abort.instruction {
                            "exec"
                        } else if abort.write {
                            "write"
                        } else {
                            "read"
                        },
                        abort.status_name(),
                        abort.ipa,
                        exit.esr,
                    ),
                )
            }
            Trap::Other { ec } => {
                let elr = self.vms[vcpu.0 as usize].vcpu.pc();
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

    fn handle_irq(&mut self) -> Next {
        let Some(intid) = self.platform.ack_irq() else {
            return Next::Resume; // spurious
        };
        let next = if intid == self.platform.timer_irq() {
            // Disarm first: the timer condition stays asserted until then.
            self.platform.set_deadline(None);
            Next::Requeue
        } else {
            crate::warn!("unexpected interrupt {intid}");
            Next::Resume
        };
        self.platform.end_irq(intid);
        next
    }

    fn hypercall(&mut self, vcpu: VcpuId) -> Next {
        let vm = &mut self.vms[vcpu.0 as usize];
        let (function, arg1, arg2) = (vm.vcpu.reg(0), vm.vcpu.reg(1), vm.vcpu.reg(2));
        let (result, next) = match function {
            abi::HC_ABI_VERSION => (
                (u64::from(abi::ABI_MAJOR) << 16 | u64::from(abi::ABI_MINOR)) as i64,
                Next::Resume,
            ),
            abi::HC_CONSOLE_WRITE => (self.console_write(vcpu, arg1, arg2), Next::Resume),
            abi::HC_YIELD => (0, Next::Requeue),
            abi::HC_VM_EXIT => {
                let name = self.vms[vcpu.0 as usize].name;
                self.flush_console(vcpu);
                info!("VM {name} exited (code {arg1})");
                self.vms[vcpu.0 as usize].state = VmState::Stopped;
                return Next::Stop;
            }
            _ => (Error::NotSupported as i64, Next::Resume),
        };
        self.vms[vcpu.0 as usize].vcpu.set_reg(0, result as u64);
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
    fn stop(&mut self, vcpu: VcpuId, why: core::fmt::Arguments) -> Next {
        self.flush_console(vcpu);
        let vm = &mut self.vms[vcpu.0 as usize];
        vm.state = VmState::Stopped;
        // A guest's own fault, not the hypervisor's: reported, not an error.
        info!("VM {} stopped: {why}", vm.name);
        Next::Stop
    }

    /// How many VMs are still running.
    pub fn running_vms(&self) -> usize {
        self.vms
            .iter()
            .filter(|vm| vm.state == VmState::Running)
            .count()
    }
}

fn build_vm<P: Platform>(
    platform: &mut P,
    id: u32,
    desc: VmDesc,
) -> Result<Vm<P::Context>, &'static str> {
    let VmDesc {
        name,
        guest,
        cmdline,
        mut ram,
        image,
    } = desc;
    let mut stage2 = Stage2::new();
    stage2
        .map_ram(GUEST_RAM_BASE, ram.pa_base, ram.size())
        .map_err(|_| "its RAM cannot be mapped with 2 MiB blocks")?;
    ram.load(image, &start_info(id, name, cmdline, ram.size()))
        .map_err(|_| "its guest image does not fit in its RAM")?;
    platform.sync_guest_memory(ram.bytes());
    let vcpu = platform.new_context(GUEST_RAM_BASE, ram.start_info_ipa());
    info!(
        "vm {name}: guest {guest}, 1 vCPU, RAM {:#x}..{:#x} ({} MiB) at IPA {GUEST_RAM_BASE:#x}, image {} bytes",
        ram.pa_base,
        ram.pa_base + ram.size(),
        ram.size() >> 20,
        image.len()
    );
    Ok(Vm {
        id,
        name,
        stage2,
        vmid: None,
        ram,
        console: LineBuffer::new(),
        state: VmState::Running,
        vcpu,
    })
}

fn start_info(id: u32, name: &str, cmdline: &str, ram_size: u64) -> StartInfo {
    let mut info = StartInfo {
        magic: abi::START_INFO_MAGIC,
        abi_major: abi::ABI_MAJOR,
        abi_minor: abi::ABI_MINOR,
        vm_id: id,
        vcpus: 1,
        ram_base: GUEST_RAM_BASE,
        ram_size,
        name: [0; VM_NAME_LEN],
        cmdline: [0; CMDLINE_LEN],
    };
    // The composer bounds both; truncate rather than trust that here.
    let name = &name.as_bytes()[..name.len().min(VM_NAME_LEN)];
    info.name[..name.len()].copy_from_slice(name);
    let cmdline = &cmdline.as_bytes()[..cmdline.len().min(CMDLINE_LEN - 1)];
    info.cmdline[..cmdline.len()].copy_from_slice(cmdline);
    info
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
mod tests {
    use super::*;
    use std::{cell::RefCell, collections::VecDeque, string::String, vec};

    std::thread_local! {
        static LINES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    struct CaptureSink;
    impl log::Sink for CaptureSink {
        fn write_line(&self, line: &[u8]) {
            let line = String::from_utf8_lossy(line).trim_end().to_string();
            LINES.with(|l| l.borrow_mut().push(line));
        }
    }

    fn take_lines() -> Vec<String> {
        LINES.with(|l| core::mem::take(&mut *l.borrow_mut()))
    }

    /// First in, first out, with a fixed slice: enough to drive the core.
    struct Fifo(VecDeque<VcpuId>, u64);
    impl Scheduler for Fifo {
        fn new(config: &SchedConfig) -> Self {
            Fifo(VecDeque::new(), config.slice)
        }
        fn wake(&mut self, v: VcpuId, _: u64) {
            self.0.push_back(v);
        }
        fn descheduled(&mut self, _: CpuId, v: VcpuId, _: u64, runnable: bool) {
            if runnable {
                self.0.push_back(v);
            }
        }
        fn remove(&mut self, v: VcpuId) {
            self.0.retain(|&x| x != v);
        }
        fn pick_next(&mut self, _: CpuId, now: u64) -> Pick {
            match self.0.pop_front() {
                Some(vcpu) => Pick::Run {
                    vcpu,
                    until: Some(now + self.1),
                },
                None => Pick::Idle { until: None },
            }
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum Step {
        Hvc(u64, u64, u64),
        TimerIrq,
        Smc,
        Trap { esr: u64, far: u64, hpfar: u64 },
    }

    struct MockCtx {
        regs: [u64; 31],
        pc: u64,
        id: usize,
    }

    impl VcpuRegs for MockCtx {
        fn reg(&self, n: usize) -> u64 {
            self.regs[n]
        }
        fn set_reg(&mut self, n: usize, value: u64) {
            self.regs[n] = value;
        }
        fn pc(&self) -> u64 {
            self.pc
        }
        fn set_pc(&mut self, pc: u64) {
            self.pc = pc;
        }
    }

    /// A CPU whose guests do what their scripts say.
    #[derive(Default)]
    struct Mock {
        scripts: Vec<VecDeque<Step>>,
        contexts: core::cell::Cell<usize>,
        /// (vCPU switched to, VTTBR) in order.
        switches: Vec<(usize, u64)>,
        /// x0 as each vCPU saw it when it next ran (hypercall results).
        results: Vec<Vec<i64>>,
        pending_irq: Option<u32>,
        deadline: Option<u64>,
        now: u64,
    }

    impl Platform for Mock {
        type Context = MockCtx;
        fn new_context(&self, entry: u64, arg0: u64) -> MockCtx {
            let mut regs = [0; 31];
            regs[0] = arg0;
            let id = self.contexts.get();
            self.contexts.set(id + 1);
            MockCtx {
                regs,
                pc: entry,
                id,
            }
        }
        fn switch_to(&mut self, _prev: Option<&mut MockCtx>, next: &MockCtx, vttbr: u64) {
            self.switches.push((next.id, vttbr));
        }
        fn run(&mut self, ctx: &mut MockCtx) -> RawExit {
            self.now += 10;
            self.results[ctx.id].push(ctx.regs[0] as i64);
            let step = self.scripts[ctx.id].pop_front().expect("script ran out");
            let sync = |esr| RawExit {
                kind: ExitKind::Sync,
                esr,
                far: 0,
                hpfar: 0,
            };
            match step {
                Step::Hvc(f, a, b) => {
                    ctx.regs[..3].copy_from_slice(&[f, a, b]);
                    ctx.pc += 4;
                    sync(0x5a00_0000)
                }
                Step::Smc => sync(0x5e00_0000),
                Step::TimerIrq => {
                    self.pending_irq = Some(26);
                    RawExit {
                        kind: ExitKind::Irq,
                        esr: 0,
                        far: 0,
                        hpfar: 0,
                    }
                }
                Step::Trap { esr, far, hpfar } => RawExit {
                    kind: ExitKind::Sync,
                    esr,
                    far,
                    hpfar,
                },
            }
        }
        fn counter(&self) -> u64 {
            self.now
        }
        fn counter_frequency(&self) -> u64 {
            1_000_000
        }
        fn set_deadline(&mut self, deadline: Option<u64>) {
            self.deadline = deadline;
        }
        fn wait_for_interrupt(&mut self) {
            let deadline = self
                .deadline
                .expect("idle with no deadline would never wake");
            self.now = self.now.max(deadline);
            self.pending_irq = Some(26);
        }
        fn ack_irq(&mut self) -> Option<u32> {
            self.pending_irq.take()
        }
        fn end_irq(&mut self, _: u32) {}
        fn timer_irq(&self) -> u32 {
            26
        }
        fn flush_guest_tlbs(&mut self) {}
        fn sync_guest_memory(&mut self, _: &[u8]) {}
    }

    const MIB2: usize = 2 << 20;
    const EXIT: u64 = abi::HC_VM_EXIT;
    const WRITE: u64 = abi::HC_CONSOLE_WRITE;

    fn vm(name: &'static str, pa: u64, image: &'static [u8]) -> VmDesc {
        let ram = GuestRam::new(
            GUEST_RAM_BASE,
            pa,
            Box::leak(vec![0u8; MIB2].into_boxed_slice()),
        );
        VmDesc {
            name,
            guest: "test",
            cmdline: "",
            ram,
            image,
        }
    }

    fn boot(vms: Vec<(VmDesc, Vec<Step>)>) -> Hypervisor<Mock, Fifo> {
        log::set_sink(&CaptureSink);
        take_lines();
        let mut mock = Mock::default();
        let mut descs = Vec::new();
        for (desc, script) in vms {
            mock.scripts.push(script.into());
            mock.results.push(Vec::new());
            descs.push(desc);
        }
        Hypervisor::new(mock, descs, 100)
    }

    #[test]
    fn console_lines_are_prefixed_and_hypercalls_answer() {
        let mut hv = boot(vec![(
            vm("alpha", 0x8000_0000, b"hello\nworld\n"),
            vec![
                Step::Hvc(abi::HC_ABI_VERSION, 0, 0),
                Step::Hvc(WRITE, GUEST_RAM_BASE, 12),
                Step::Hvc(WRITE, GUEST_RAM_BASE + MIB2 as u64 - 1, 2),
                Step::Hvc(WRITE, GUEST_RAM_BASE, abi::CONSOLE_WRITE_MAX + 1),
                Step::Hvc(0xC600_00FF, 0, 0),
                Step::Smc,
                Step::Hvc(EXIT, 7, 0),
            ],
        )]);
        hv.run();
        let results = &hv.platform().results[0];
        // results[n] is x0 as the guest saw it before step n.
        assert_eq!(results[1], 0x1_0000, "ABI 1.0");
        assert_eq!(results[2], 12);
        assert_eq!(results[3], Error::InvalidAddress as i64);
        assert_eq!(results[4], Error::InvalidParameter as i64);
        assert_eq!(results[5], Error::NotSupported as i64);
        assert_eq!(
            results[6],
            Error::NotSupported as i64,
            "SMC answered, not passed on"
        );
        let lines = take_lines();
        assert!(
            lines[0].starts_with("[hv] vm alpha: guest test, 1 vCPU, RAM 0x80000000..0x80200000")
        );
        assert_eq!(lines[1], "[alpha] hello");
        assert_eq!(lines[2], "[alpha] world");
        assert!(lines[3].starts_with("[hv] first guest line at counter "));
        assert_eq!(lines[4], "[hv] VM alpha exited (code 7)");
        assert_eq!(hv.running_vms(), 0);
    }

    #[test]
    fn a_stage2_fault_stops_only_the_faulting_vm() {
        let hpfar = (0x0900_0000u64 >> 12) << 4;
        let mut hv = boot(vec![
            (
                vm("bad", 0x8000_0000, b"partial"),
                vec![
                    Step::Hvc(WRITE, GUEST_RAM_BASE, 7),
                    Step::Trap {
                        esr: 0x9200_0046,
                        far: 0x0900_0000,
                        hpfar,
                    },
                ],
            ),
            (
                vm("good", 0x8020_0000, b"ok\n"),
                vec![
                    Step::TimerIrq,
                    Step::Hvc(WRITE, GUEST_RAM_BASE, 3),
                    Step::Hvc(EXIT, 0, 0),
                ],
            ),
        ]);
        hv.run();
        let lines: Vec<_> = take_lines()
            .into_iter()
            .filter(|l| !l.contains("] vm "))
            .collect();
        assert_eq!(
            lines[0], "[bad] partial",
            "partial line flushed before the report"
        );
        assert!(
            lines[1].starts_with(
                "[hv] VM bad stopped: stage-2 data abort (write, translation fault) at IPA 0x9000000"
            ),
            "{}",
            lines[1]
        );
        assert_eq!(lines[2], "[good] ok");
        assert_eq!(lines[4], "[hv] VM good exited (code 0)");
        assert!(hv.platform().scripts.iter().all(|s| s.is_empty()));
    }

    #[test]
    fn timer_preempts_and_each_vm_has_its_own_vmid_and_tables() {
        let mut hv = boot(vec![
            (
                vm("a", 0x8000_0000, b""),
                vec![Step::TimerIrq, Step::TimerIrq, Step::Hvc(EXIT, 0, 0)],
            ),
            (
                vm("b", 0x8020_0000, b""),
                vec![
                    Step::TimerIrq,
                    Step::Hvc(abi::HC_YIELD, 0, 0),
                    Step::Hvc(EXIT, 0, 0),
                ],
            ),
        ]);
        hv.run();
        let switches: Vec<_> = hv.platform().switches.iter().map(|s| s.0).collect();
        assert_eq!(
            switches,
            vec![0, 1, 0, 1, 0, 1],
            "round trips through both VMs"
        );
        let vttbrs = &hv.platform().switches;
        assert_ne!(vttbrs[0].1 >> 48, vttbrs[1].1 >> 48, "distinct VMIDs");
        assert_ne!(
            vttbrs[0].1 & 0xffff_ffff_ffff,
            vttbrs[1].1 & 0xffff_ffff_ffff,
            "distinct tables"
        );
        assert_eq!(hv.platform().deadline, None, "timer disarmed at the end");
    }

    #[test]
    fn an_unknown_trap_names_the_vm_class_and_address() {
        let mut hv = boot(vec![(
            vm("sys", 0x8000_0000, b""),
            vec![Step::Trap {
                esr: 0x6200_0000,
                far: 0,
                hpfar: 0,
            }],
        )]);
        hv.run();
        let lines = take_lines();
        assert!(lines.iter().any(|l| l.starts_with(
            "[hv] VM sys stopped: unexpected trap: EC 0x18 (system register access), ESR 0x62000000, ELR 0x40000000"
        )), "{lines:?}");
    }

    #[test]
    fn a_vm_whose_image_does_not_fit_is_left_out() {
        let big: &'static [u8] = Box::leak(vec![1u8; MIB2].into_boxed_slice());
        let hv = boot(vec![(vm("huge", 0x8000_0000, big), vec![])]);
        assert_eq!(hv.running_vms(), 0);
        assert_eq!(
            take_lines(),
            vec!["[hv] error: VM huge not started: its guest image does not fit in its RAM"]
        );
    }
}
