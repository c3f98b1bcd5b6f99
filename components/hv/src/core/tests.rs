//! The core against a scripted platform.

use super::*;
use crate::device::{MmioDevice, Signal, Window};
use crate::platform::GuestWidth;
use crate::{
    log,
    memory::{GuestMemory, GuestSlice, SparseRam},
    platform::{Cpu, ExitKind, PhysicalIrq, RawExit, Timer, VcpuRegs},
    vgic::{Effects, Flushed, ListReg, LrState, VirtualInterface},
};
use abi::{Error, GUEST_RAM_BASE};
use config::vm::{Region, VmConfig};
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

/// First in, first out, with a fixed slice: enough to drive the core. A
/// vCPU with `VcpuParams::cpu` runs only there; one picked while nothing
/// else waits gets no slice end (as `sched-rr` and `sched-credit` do).
struct Fifo {
    queue: VecDeque<VcpuId>,
    slice: u64,
    pins: Vec<Option<CpuId>>,
}
impl Scheduler for Fifo {
    fn new(config: &SchedConfig) -> Self {
        Fifo {
            queue: VecDeque::new(),
            slice: config.slice,
            pins: config.vcpus.iter().map(|p| p.cpu).collect(),
        }
    }
    fn wake(&mut self, v: VcpuId, _: u64) {
        self.queue.push_back(v);
    }
    fn descheduled(&mut self, _: CpuId, v: VcpuId, _: u64, runnable: bool) {
        if runnable {
            self.queue.push_back(v);
        }
    }
    fn remove(&mut self, v: VcpuId) {
        self.queue.retain(|&x| x != v);
    }
    fn cpu_for(&self, v: VcpuId) -> Option<CpuId> {
        self.pins[v.0 as usize]
    }
    fn pick_next(&mut self, cpu: CpuId, now: u64) -> Pick {
        let mine = |v: &VcpuId| self.pins[v.0 as usize].is_none_or(|c| c == cpu);
        match self.queue.iter().position(mine) {
            Some(i) => {
                let vcpu = self.queue.remove(i).expect("found");
                Pick::Run {
                    vcpu,
                    until: (!self.queue.is_empty()).then_some(now + self.slice),
                }
            }
            None => Pick::Idle { until: None },
        }
    }
}

/// Enough of a virtual GIC to drive the core: pending INTIDs go into
/// free list registers; a distributor of 4-byte registers to read back;
/// a write of 1 at offset 0xf00 raises SGI 1 (and kicks). An INTID with a
/// line is level-sensitive: pending while it is high, taken back from a
/// list register where it waits when it drops, pending again when
/// completed with it high.
#[derive(Default)]
struct TestVgic {
    pending: Vec<u32>,
    in_lrs: Vec<u32>,
    registers: std::collections::HashMap<u64, u64>,
    lines: std::collections::HashMap<u32, bool>,
}

impl TestVgic {
    fn line_high(&self, intid: u32) -> bool {
        self.lines.get(&intid) == Some(&true)
    }

    /// Pending as its line says, if not in a list register; the kick.
    fn follow_line(&mut self, intid: u32) -> Effects {
        if !self.lines.contains_key(&intid) {
            return Effects::default();
        }
        self.pending.retain(|&p| p != intid);
        if self.line_high(intid) && !self.in_lrs.contains(&intid) {
            self.pending.push(intid);
            return Effects { kick: 1 };
        }
        Effects::default()
    }
}

impl Vgic for TestVgic {
    type Interface = MockInterface;
    fn new(_: usize) -> Self {
        TestVgic::default()
    }
    fn windows(&self) -> Vec<Window> {
        vec![Window::new(abi::GUEST_GICD_BASE, 0x1000)]
    }
    fn read(&mut self, _: usize, ipa: u64, _: u8) -> u64 {
        let offset = ipa - abi::GUEST_GICD_BASE;
        self.registers.get(&offset).copied().unwrap_or(0)
    }
    fn write(&mut self, _: usize, ipa: u64, _: u8, value: u64) -> Effects {
        let offset = ipa - abi::GUEST_GICD_BASE;
        self.registers.insert(offset, value);
        if offset == 0xf00 && value == 1 {
            return self.raise(0, 1);
        }
        Effects::default()
    }
    fn raise(&mut self, _: usize, intid: u32) -> Effects {
        self.pending.push(intid);
        Effects { kick: 1 }
    }
    fn set_level(&mut self, _: usize, intid: u32, level: bool) -> Effects {
        self.lines.insert(intid, level);
        self.follow_line(intid)
    }
    fn flush(&mut self, _: usize, lrs: &mut [ListReg]) -> Flushed {
        for lr in lrs.iter_mut() {
            if lr.state == LrState::Pending && self.lines.get(&lr.intid) == Some(&false) {
                self.in_lrs.retain(|&i| i != lr.intid);
                lr.state = LrState::Invalid;
            }
        }
        for lr in lrs.iter_mut().filter(|lr| lr.is_free()) {
            let Some(intid) = self.pending.pop() else {
                break;
            };
            *lr = ListReg {
                intid,
                priority: 0xa0,
                state: LrState::Pending,
                eoi_maintenance: self.lines.contains_key(&intid),
                ..ListReg::default()
            };
            self.in_lrs.push(intid);
        }
        Flushed {
            waiting: !self.pending.is_empty(),
            effects: Effects::default(),
        }
    }
    fn sync(&mut self, _: usize, lrs: &mut [ListReg]) -> Effects {
        let before = core::mem::take(&mut self.in_lrs);
        self.in_lrs = lrs
            .iter()
            .filter(|lr| !lr.is_free())
            .map(|lr| lr.intid)
            .collect();
        let mut effects = Effects::default();
        for intid in before {
            if !self.in_lrs.contains(&intid) {
                effects.kick |= self.follow_line(intid).kick;
            }
        }
        effects
    }
    fn release_lrs(&mut self, _: usize) -> Effects {
        self.pending.append(&mut self.in_lrs);
        Effects { kick: 1 }
    }
    fn has_pending(&self, _: usize) -> bool {
        !self.pending.is_empty()
    }
    fn in_flight(&self, _: usize, intid: u32) -> bool {
        self.pending.contains(&intid) || self.in_lrs.contains(&intid)
    }
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Hvc(u64, u64, u64),
    /// HVC with another immediate than the ABI's #0.
    HvcImm(u16, u64, u64, u64),
    /// HVC #0 from an AArch32 guest (EC 0x12).
    Hvc32(u64, u64, u64),
    TimerIrq,
    /// Another CPU kicked this one.
    Kicked,
    /// The guest's virtual timer fires.
    GuestTimerIrq,
    /// The guest completes every interrupt in its list registers, which
    /// raises the maintenance interrupt.
    CompleteInterrupts,
    /// SMC with x0..x3 set (a PSCI call).
    SmcCall(u64, u64, u64, u64),
    /// WFI, with the guest's timer armed this many ticks ahead.
    Wfi {
        timer_in: Option<u64>,
    },
    Smc,
    Trap {
        esr: u64,
        far: u64,
        hpfar: u64,
    },
    /// A trap the guest makes again for as long as the hypervisor leaves
    /// its PC on it, as an instruction not skipped is executed again.
    Repeated {
        esr: u64,
        far: u64,
        hpfar: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
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
    /// The list registers as the hardware holds them.
    lrs: HwLrs,
    guest_timer: Option<u64>,
    guest_timer_masked: bool,
    /// Per context, at each entry: whether the virtual timer's interrupt
    /// was pending in a list register.
    entered_with_timer: Vec<Vec<bool>>,
    /// CPUs kicked, in order.
    kicks: Vec<u32>,
    ram: SparseRam,
    /// Per context, the `Step::Repeated` it last made and the PC of it.
    repeating: Vec<Option<(u64, Step)>>,
    /// Times a `Step::Repeated` was made again.
    repeats: usize,
}

impl GuestMemory for Mock {
    fn read_guest(&self, from: GuestSlice, buf: &mut [u8]) {
        self.ram.read_guest(from, buf);
    }
    fn write_guest(&mut self, to: GuestSlice, bytes: &[u8]) {
        self.ram.write_guest(to, bytes);
    }
    fn zero_guest(&mut self, to: GuestSlice) {
        self.ram.zero_guest(to);
    }
}

/// Four list registers, shared by the mock CPU (whose guests complete
/// what is in them) and the mock interface that writes them.
type HwLrs = std::rc::Rc<RefCell<[ListReg; 4]>>;

/// The virtual CPU interface of the mock CPU. Its CPU-interface state is
/// a number the guest bumps each time it runs, to see it saved and
/// restored.
struct MockInterface {
    lrs: HwLrs,
    /// (state loaded, state put) in order.
    loads: Vec<u32>,
    current: u32,
}

impl MockInterface {
    fn of(mock: &Mock) -> Self {
        MockInterface {
            lrs: mock.lrs.clone(),
            loads: Vec::new(),
            current: 0,
        }
    }
}

impl VirtualInterface for MockInterface {
    type CpuState = u32;
    fn lr_count(&self) -> usize {
        4
    }
    fn guest_cpu_interface(&self) -> Option<(u64, u64)> {
        Some((0x0804_0000, 0x2000))
    }
    fn write_lrs(&mut self, lrs: &[ListReg], _underflow: bool) {
        self.lrs.borrow_mut().copy_from_slice(lrs);
    }
    fn read_lrs(&mut self, lrs: &mut [ListReg]) {
        lrs.copy_from_slice(&*self.lrs.borrow());
    }
    fn load(&mut self, state: &u32) {
        self.loads.push(*state);
        self.current = *state;
    }
    fn put(&mut self, state: &mut u32) {
        *state = self.current + 1;
    }
}

impl Cpu for Mock {
    type Context = MockCtx;
    fn new_context(&self, entry: u64, arg0: u64, _index: u32, _width: GuestWidth) -> MockCtx {
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
    fn vcpu_put(&mut self, _: &mut MockCtx) {}
    fn vcpu_load(&mut self, next: &MockCtx, vttbr: u64) {
        self.switches.push((next.id, vttbr));
    }
    fn run(&mut self, ctx: &mut MockCtx) -> RawExit {
        self.now += 10;
        self.results[ctx.id].push(ctx.regs[0] as i64);
        let timer_pending = self
            .lrs
            .borrow()
            .iter()
            .any(|lr| lr.intid == abi::GUEST_VTIMER_INTID && lr.state == LrState::Pending);
        if self.entered_with_timer.len() <= ctx.id {
            self.entered_with_timer.resize(ctx.id + 1, Vec::new());
        }
        self.entered_with_timer[ctx.id].push(timer_pending);
        if self.repeating.len() <= ctx.id {
            self.repeating.resize(ctx.id + 1, None);
        }
        let step = match self.repeating[ctx.id].take() {
            Some((pc, step)) if pc == ctx.pc => {
                self.repeats += 1;
                step
            }
            _ => self.scripts[ctx.id].pop_front().expect("script ran out"),
        };
        if let Step::Repeated { .. } = step {
            self.repeating[ctx.id] = Some((ctx.pc, step));
        }
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
            Step::HvcImm(imm, f, a, b) => {
                ctx.regs[..3].copy_from_slice(&[f, a, b]);
                ctx.pc += 4;
                sync(0x5a00_0000 | u64::from(imm))
            }
            Step::Hvc32(f, a, b) => {
                ctx.regs[..3].copy_from_slice(&[f, a, b]);
                ctx.pc += 4;
                sync(0x4a00_0000)
            }
            Step::Smc => sync(0x5e00_0000),
            Step::SmcCall(f, a, b, c) => {
                ctx.regs[..4].copy_from_slice(&[f, a, b, c]);
                sync(0x5e00_0000)
            }
            Step::Kicked => {
                self.pending_irq = Some(self.kick_irq());
                RawExit {
                    kind: ExitKind::Irq,
                    esr: 0,
                    far: 0,
                    hpfar: 0,
                }
            }
            Step::GuestTimerIrq => {
                self.pending_irq = Some(27);
                RawExit {
                    kind: ExitKind::Irq,
                    esr: 0,
                    far: 0,
                    hpfar: 0,
                }
            }
            Step::CompleteInterrupts => {
                *self.lrs.borrow_mut() = [ListReg::default(); 4];
                self.pending_irq = Some(25);
                RawExit {
                    kind: ExitKind::Irq,
                    esr: 0,
                    far: 0,
                    hpfar: 0,
                }
            }
            Step::Wfi { timer_in } => {
                self.guest_timer = timer_in.map(|ticks| self.now + ticks);
                sync(0x0600_0000)
            }
            Step::TimerIrq => {
                // The hypervisor timer fires at its deadline.
                self.now = self.now.max(self.deadline.expect("timer armed"));
                self.pending_irq = Some(26);
                RawExit {
                    kind: ExitKind::Irq,
                    esr: 0,
                    far: 0,
                    hpfar: 0,
                }
            }
            Step::Trap { esr, far, hpfar } | Step::Repeated { esr, far, hpfar } => RawExit {
                kind: ExitKind::Sync,
                esr,
                far,
                hpfar,
            },
        }
    }
    fn flush_guest_tlbs(&mut self) {}
    fn vmid_bits(&self) -> u32 {
        8
    }
    fn sync_guest_memory(&mut self, _: GuestSlice) {}
}

impl Timer for Mock {
    fn counter(&self) -> u64 {
        self.now
    }
    fn counter_frequency(&self) -> u64 {
        1_000_000
    }
    fn set_deadline(&mut self, deadline: Option<u64>) {
        self.deadline = deadline;
    }
    fn timer_irq(&self) -> u32 {
        26
    }
    fn guest_timer_irq(&self) -> u32 {
        27
    }
    fn mask_guest_timer(&mut self, masked: bool) {
        self.guest_timer_masked = masked;
    }
    fn guest_timer_deadline(&self) -> Option<u64> {
        self.guest_timer.filter(|_| !self.guest_timer_masked)
    }
}

impl crate::platform::ConsoleInput for Mock {
    fn read_console(&mut self, _: &mut [u8]) -> usize {
        0
    }
}

impl PhysicalIrq for Mock {
    fn kick_cpu(&mut self, cpu: CpuId) {
        self.kicks.push(cpu.0);
    }
    fn kick_irq(&self) -> u32 {
        0
    }
    fn wait_for_interrupt(&mut self) {
        let deadline = self
            .deadline
            .expect("idle with no deadline would never wake");
        // Whichever fires first: the hypervisor's timer or the guest's.
        match self
            .guest_timer
            .filter(|&at| !self.guest_timer_masked && at < deadline)
        {
            Some(at) => {
                self.now = self.now.max(at);
                self.pending_irq = Some(27);
            }
            None => {
                self.now = self.now.max(deadline);
                self.pending_irq = Some(26);
            }
        }
    }
    fn ack_irq(&mut self) -> Option<u32> {
        self.pending_irq.take()
    }
    fn end_irq(&mut self, _: u32) {}
    fn maintenance_irq(&self) -> u32 {
        25
    }
}

const MIB2: usize = 2 << 20;
const EXIT: u64 = abi::HC_VM_EXIT;
const WRITE: u64 = abi::HC_CONSOLE_WRITE;

/// A VM as a test builds it: its config, guest image and devices.
struct TestVm {
    config: VmConfig<'static>,
    image: &'static [u8],
    devices: Vec<(Window, Box<dyn MmioDevice>)>,
}

fn vm(name: &'static str, pa: u64, image: &'static [u8]) -> TestVm {
    TestVm {
        config: VmConfig {
            name: name.into(),
            guest: "test".into(),
            cmdline: "".into(),
            vcpus: 1,
            width: GuestWidth::Aarch64,
            ram: Region {
                base: pa,
                size: MIB2 as u64,
            },
            image: 0,
            weight: config::vm::DEFAULT_WEIGHT,
            cap_percent: 0,
            cpu: None,
            linux: None,
            devices: Vec::new(),
            channels: Vec::new(),
        },
        image,
        devices: Vec::new(),
    }
}

/// The hypervisor with `vms`, each image its own entry in the guest table.
fn build(mock: Mock, vms: Vec<TestVm>, cpus: u32) -> Hypervisor<Mock, Fifo, TestVgic> {
    let mut table = VmTable {
        vms: Vec::new(),
        windows: Vec::new(),
    };
    let (mut images, mut devices) = (Vec::new(), Vec::new());
    for (i, vm) in vms.into_iter().enumerate() {
        table.vms.push(VmConfig {
            image: i as u32,
            ..vm.config
        });
        images.push(vm.image);
        devices.push(Ok(vm.devices));
    }
    let vif = MockInterface::of(&mock);
    Hypervisor::new(mock, vif, table, &images, devices, cpus, 100)
}

fn boot(vms: Vec<(TestVm, Vec<Step>)>) -> Hypervisor<Mock, Fifo, TestVgic> {
    log::set_sink(&CaptureSink);
    take_lines();
    let mut mock = Mock::default();
    let mut descs = Vec::new();
    for (desc, script) in vms {
        mock.scripts.push(script.into());
        mock.results.push(Vec::new());
        descs.push(desc);
    }
    build(mock, descs, 1)
}

#[test]
fn smc32_hypercall_ids_serve_both_widths() {
    let version = (i64::from(abi::ABI_MAJOR) << 16) | i64::from(abi::ABI_MINOR);
    let mut hv = boot(vec![(
        vm("alpha", 0x8000_0000, b"hi\n"),
        vec![
            Step::Hvc32(abi::HC32_ABI_VERSION, 0, 0),
            // SMCCC: a 32-bit caller has no SMC64 functions.
            Step::Hvc32(abi::HC_ABI_VERSION, 0, 0),
            Step::Hvc32(abi::HC32_CONSOLE_WRITE, GUEST_RAM_BASE, 3),
            // A 64-bit caller may use SMC32 IDs; the top halves do not count.
            Step::Hvc(abi::HC32_CONSOLE_WRITE, (0xdead << 32) | GUEST_RAM_BASE, 3),
            Step::Hvc32(abi::HC32_VM_EXIT, 5, 0),
        ],
    )]);
    hv.run();
    let results = &hv.platform().results[0];
    assert_eq!(results[1], version);
    assert_eq!(results[2], Error::NotSupported as i64);
    assert_eq!(results[3], 3);
    assert_eq!(results[4], 3);
    let lines = take_lines();
    assert!(
        lines.iter().any(|l| l.contains("VM alpha exited (code 5)")),
        "{lines:?}"
    );
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
    assert_eq!(
        results[1],
        (i64::from(abi::ABI_MAJOR) << 16) | i64::from(abi::ABI_MINOR),
        "ABI version"
    );
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
    assert!(lines[0]
        .starts_with("[hv] vm alpha: guest test (aarch64), 1 vCPU, RAM 0x80000000..0x80200000"));
    assert_eq!(lines[1], "[alpha] hello");
    assert_eq!(lines[2], "[alpha] world");
    assert!(lines[3].starts_with("[hv] first guest line at counter "));
    assert!(
        lines[4].starts_with("[hv] VM alpha exited (code 7) after "),
        "{}",
        lines[4]
    );
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
            vec![Step::Hvc(WRITE, GUEST_RAM_BASE, 3), Step::Hvc(EXIT, 0, 0)],
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
    assert!(lines[4].starts_with("[hv] VM good exited (code 0) after "));
    assert!(hv.platform().scripts.iter().all(|s| s.is_empty()));
}

#[test]
fn each_vcpu_gets_back_the_cpu_interface_state_it_left_with() {
    let mut hv = boot(vec![
        (
            vm("a", 0x8000_0000, b""),
            vec![Step::TimerIrq, Step::TimerIrq, Step::Hvc(EXIT, 0, 0)],
        ),
        (
            vm("b", 0x8020_0000, b""),
            vec![Step::TimerIrq, Step::TimerIrq, Step::Hvc(EXIT, 0, 0)],
        ),
    ]);
    hv.run();
    let switches: Vec<_> = hv.platform().switches.iter().map(|s| s.0).collect();
    assert_eq!(switches, vec![0, 1, 0, 1, 0, 1]);
    assert_eq!(hv.vif.loads, vec![0, 0, 1, 1, 2, 2]);
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

/// A table naming a guest image the image does not have (a stale or
/// corrupt build) leaves that VM out rather than panicking.
#[test]
fn a_vm_whose_image_index_is_out_of_the_guest_table_is_left_out() {
    log::set_sink(&CaptureSink);
    take_lines();
    let mut table = VmTable {
        vms: vec![vm("lost", 0x8000_0000, b"").config],
        windows: Vec::new(),
    };
    table.vms[0].image = 1;
    let mock = Mock::default();
    let vif = MockInterface::of(&mock);
    let hv: Hypervisor<Mock, Fifo, TestVgic> =
        Hypervisor::new(mock, vif, table, &[b""], Vec::new(), 1, 100);
    assert_eq!(hv.running_vms(), 0);
    assert_eq!(
        take_lines(),
        vec!["[hv] error: VM lost not started: its guest image is not in the image"]
    );
}

#[test]
fn the_guest_timer_is_masked_until_its_interrupt_is_completed() {
    let mut hv = boot(vec![(
        vm("tick", 0x8000_0000, b""),
        vec![
            Step::GuestTimerIrq,
            Step::Hvc(abi::HC_ABI_VERSION, 0, 0),
            Step::CompleteInterrupts,
            Step::Hvc(EXIT, 0, 0),
        ],
    )]);
    hv.clear_now(0);
    // Step by step, the way each CPU of an SMP host drives the core.
    let step = |hv: &mut Hypervisor<Mock, Fifo, TestVgic>| {
        let Work::Run(vcpu, mut ctx) = hv.next_work(CpuId(0)) else {
            panic!("tick runs")
        };
        let exit = hv.platform.run(&mut ctx);
        hv.after_run(CpuId(0), vcpu, ctx, exit);
    };
    step(&mut hv); // the timer fires
    assert!(hv.platform.guest_timer_masked, "masked while in flight");
    let Work::Run(vcpu, mut ctx) = hv.next_work(CpuId(0)) else {
        panic!("tick runs")
    };
    let lr = hv.platform.lrs.borrow()[0];
    assert_eq!(
        (lr.intid, lr.state, lr.eoi_maintenance),
        (27, LrState::Pending, true)
    );
    let exit = hv.platform.run(&mut ctx); // runs with it pending
    hv.after_run(CpuId(0), vcpu, ctx, exit);
    step(&mut hv); // completes it: EOI maintenance
    assert!(!hv.platform.guest_timer_masked, "unmasked once completed");
    hv.run();
    assert_eq!(hv.running_vms(), 0);
}

#[test]
fn wfi_blocks_until_the_guest_timer_fires() {
    let mut hv = boot(vec![
        (
            vm("sleeper", 0x8000_0000, b""),
            vec![
                Step::Wfi {
                    timer_in: Some(5_000),
                },
                Step::Hvc(EXIT, 1, 0),
            ],
        ),
        (vm("quick", 0x8020_0000, b""), vec![Step::Hvc(EXIT, 2, 0)]),
    ]);
    hv.run();
    let lines = take_lines();
    let exits: Vec<_> = lines
        .iter()
        .filter_map(|l| l.split(" after ").next().filter(|l| l.contains("exited")))
        .collect();
    assert_eq!(
        exits,
        [
            "[hv] VM quick exited (code 2)",
            "[hv] VM sleeper exited (code 1)"
        ]
    );
    assert!(
        hv.platform.now >= 5_000,
        "the sleeper slept until its timer ({})",
        hv.platform.now
    );
}

#[test]
fn a_vcpu_woken_by_its_timer_enters_with_the_interrupt_pending() {
    // Not entered first for the timer to fire in the guest and exit again.
    let mut hv = boot(vec![(
        vm("sleeper", 0x8000_0000, b""),
        vec![
            Step::Wfi {
                timer_in: Some(5_000),
            },
            Step::Hvc(EXIT, 1, 0),
        ],
    )]);
    hv.run();
    assert_eq!(hv.platform.entered_with_timer[0], [false, true]);
    assert!(hv.platform.guest_timer_masked, "masked while in flight");
}

/// How often `hv`'s CPU 0 gives way after the lock while it runs to the end.
fn give_ways(hv: &mut Hypervisor<Mock, Fifo, TestVgic>) -> u32 {
    let alone = cpu_loop::Alone::new(hv);
    cpu_loop::run_cpu(&alone, CpuId(0), &mut cpu_loop::Through(&alone));
    alone.gave_way.get()
}

#[test]
fn a_cpu_handing_its_vcpu_the_timer_keeps_its_turn_once() {
    // Giving way there hands the rest of the CPU's turn, under QEMU's
    // round-robin TCG, to a neighbour that then runs up to the next
    // deadline while the interrupt waits (a packet flooder: 0.6-0.9
    // million ticks). Every other release gives way, as before.
    let mut hv = boot(vec![(
        vm("sleeper", 0x8000_0000, b""),
        vec![
            Step::Wfi {
                timer_in: Some(5_000),
            },
            // The timer is still in flight: this exit gives way.
            Step::Trap {
                esr: 0x9380_0005,
                far: abi::GUEST_GICD_BASE,
                hpfar: (abi::GUEST_GICD_BASE >> 12) << 4,
            },
            Step::Hvc(EXIT, 1, 0),
        ],
    )]);
    let gave_way = give_ways(&mut hv);
    assert_eq!(hv.platform.entered_with_timer[0], [false, true, true]);
    assert_eq!(
        gave_way, 3,
        "going idle twice and after the distributor read; not after handing the vCPU its timer (4 then)"
    );
}

#[test]
fn wfi_with_nothing_to_wake_it_is_reported_not_hung() {
    let mut hv = boot(vec![(
        vm("stuck", 0x8000_0000, b""),
        vec![Step::Wfi { timer_in: None }],
    )]);
    hv.run();
    assert!(take_lines().iter().any(|l| l
        == "[hv] VM stuck stopped: it waits in WFI with no timer armed, and nothing else can wake it"));
}

#[test]
fn distributor_accesses_are_emulated_and_others_stop_the_vm() {
    let dabt = |write: bool, reg: u64, offset: u64| {
        let ipa = abi::GUEST_GICD_BASE + offset;
        let esr = 0x9380_0005 | (reg << 16) | if write { 1 << 6 } else { 0 };
        Step::Trap {
            esr,
            far: ipa,
            hpfar: (ipa >> 12) << 4,
        }
    };
    let mut hv = boot(vec![(
        vm("gic", 0x8000_0000, b""),
        vec![
            Step::Hvc(abi::HC_ABI_VERSION, 0, 0),
            dabt(true, 0, 0x100), // str w0 (the ABI version, 0x1_000N) to ISENABLER0
            dabt(false, 5, 0x100),
            Step::Hvc(abi::HC_ABI_VERSION, 0, 0),
            // A pair access has no syndrome: it cannot be emulated.
            Step::Trap {
                esr: 0x9200_0005,
                far: abi::GUEST_GICD_BASE,
                hpfar: (abi::GUEST_GICD_BASE >> 12) << 4,
            },
        ],
    )]);
    hv.run();
    assert_eq!(
        hv.vcpus[0].ctx.as_ref().unwrap().regs[5],
        (u64::from(abi::ABI_MAJOR) << 16) | u64::from(abi::ABI_MINOR),
        "read back what was written"
    );
    assert_eq!(
        hv.vcpus[0].ctx.as_ref().unwrap().pc,
        GUEST_RAM_BASE + 4 + 4 + 4 + 4,
        "each access stepped over"
    );
    assert!(take_lines()
        .iter()
        .any(|l| l.contains("cannot emulate: use single ldr/str")));
}

/// A data abort at `ipa` with syndrome bits `esr` (access width, register,
/// direction) besides its class and a translation fault.
/// A store to a device's notify register at `ipa`, made again while the
/// hypervisor leaves the PC on it.
fn notify_store(ipa: u64) -> Step {
    let store = (2 << 22) | (1 << 6);
    Step::Repeated {
        esr: 0x9300_0005 | store,
        far: ipa,
        hpfar: (ipa >> 12) << 4,
    }
}

fn dabt(ipa: u64, esr: u64) -> Step {
    Step::Trap {
        esr: 0x9300_0005 | esr,
        far: ipa,
        hpfar: (ipa >> 12) << 4,
    }
}

/// A device of the VM's table: keeps what is written, reads it back, and
/// asks for its interrupt on a write at 0x14.
struct Scratch(AccessLog);

/// (offset, width, value written) of each access, in order.
type AccessLog = std::sync::Arc<std::sync::Mutex<Vec<(u64, u8, Option<u64>)>>>;

impl MmioDevice for Scratch {
    fn read(&mut self, _: usize, offset: u64, width: u8) -> u64 {
        self.0.lock().unwrap().push((offset, width, None));
        if width == 1 {
            0x80
        } else {
            0x1234_5678
        }
    }
    fn write(&mut self, _: usize, offset: u64, width: u8, value: u64) -> Signal {
        self.0.lock().unwrap().push((offset, width, Some(value)));
        Signal {
            raise: offset == 0x14,
            ..Signal::default()
        }
    }
    fn irq(&self) -> Option<u32> {
        Some(40)
    }
}

/// Trapped accesses in a device's window reach that device, at its own
/// offsets, with the zero register and sign extension done once in the
/// core; one past its window stops the VM.
#[test]
fn the_trap_path_dispatches_through_the_device_table() {
    const BASE: u64 = 0x0900_0000;
    let dabt = |esr: u64, offset: u64| dabt(BASE + offset, esr);
    let word = 2 << 22;
    let (write, sse, sf) = (1 << 6, 1 << 21, 1 << 15);
    let reg = |n: u64| n << 16;
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut desc = vm("dev", 0x8000_0000, b"");
    desc.devices = vec![(
        Window::new(BASE, 0x1000),
        Box::new(Scratch(log.clone())) as _,
    )];
    let mut hv = boot(vec![(
        desc,
        vec![
            Step::Hvc(abi::HC_ABI_VERSION, 0, 0),
            dabt(word | write | reg(0), 0x10),  // str w0
            dabt(word | write | reg(31), 0x14), // str wzr: raises the IRQ
            dabt(word | reg(6) | sf, 0x10),     // ldr x6
            dabt(word | reg(31), 0x10),         // ldr wzr
            dabt(sse | sf | reg(7), 0x3),       // ldrsb x7
            dabt(word | reg(8), 0x1000),        // one past the window
        ],
    )]);
    hv.run();
    let version = (u64::from(abi::ABI_MAJOR) << 16) | u64::from(abi::ABI_MINOR);
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            (0x10, 4, Some(version)),
            (0x14, 4, Some(0)),
            (0x10, 4, None),
            (0x10, 4, None),
            (0x3, 1, None),
        ]
    );
    let regs = &hv.vcpus[0].ctx.as_ref().unwrap().regs;
    assert_eq!((regs[6], regs[7]), (0x1234_5678, 0xffff_ffff_ffff_ff80));
    assert!(
        hv.vms[0].vgic.lock().in_flight(0, 40),
        "its interrupt raised"
    );
    assert!(take_lines().iter().any(|l| l.contains(
        "VM dev stopped: stage-2 data abort (read, translation fault) at IPA 0x9001000"
    )));
}

/// A UART-like device: a write at offset 0 ends a line, at 4 does not.
struct LineEnder;

impl MmioDevice for LineEnder {
    fn read(&mut self, _: usize, _: u64, _: u8) -> u64 {
        0
    }
    fn write(&mut self, _: usize, offset: u64, _: u8, _: u64) -> Signal {
        Signal {
            console_line: offset == 0,
            ..Signal::default()
        }
    }
}

/// The first line a guest prints through an emulated device (Linux's
/// UART) is stamped as the paravirtual console's is: the bench's "reset
/// to first guest line" holds for Linux VMs too.
#[test]
fn a_device_that_ends_a_line_stamps_the_first_guest_line() {
    const BASE: u64 = 0x0900_0000;
    let store = (2 << 22) | (1 << 6);
    let run = |offsets: &[u64]| {
        let mut desc = vm("uart", 0x8000_0000, b"");
        desc.devices = vec![(Window::new(BASE, 0x1000), Box::new(LineEnder) as _)];
        let mut steps: Vec<Step> = offsets.iter().map(|&o| dabt(BASE + o, store)).collect();
        steps.push(Step::Hvc(EXIT, 0, 0));
        take_lines();
        boot(vec![(desc, steps)]).run();
        take_lines()
            .iter()
            .filter(|l| l.starts_with("[hv] first guest line at counter "))
            .count()
    };
    assert_eq!(run(&[4, 4]), 0, "no line ended");
    assert_eq!(run(&[4, 0, 4, 0]), 1, "stamped once");
}

/// A DMA-like device: a write at 0 asks for work, which copies the first
/// 512 bytes of the VM's RAM (its image) to sector 0 of the disk and raises
/// its line. It counts its resets.
#[derive(Default)]
struct Copier(std::sync::Arc<std::sync::atomic::AtomicU32>);

impl MmioDevice for Copier {
    fn read(&mut self, _: usize, _: u64, _: u8) -> u64 {
        0
    }
    fn write(&mut self, _: usize, offset: u64, _: u8, _: u64) -> Signal {
        Signal {
            work: offset == 0,
            ..Signal::default()
        }
    }
    fn irq(&self) -> Option<u32> {
        Some(48)
    }
    fn reset(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn work(&mut self, backing: crate::device::Backing<'_>) -> Signal {
        let mut sector = [0u8; 512];
        let from = backing.ram.slice(GUEST_RAM_BASE, 512).unwrap();
        backing.memory.read_guest(from, &mut sector);
        let disk = backing.disk.expect("the core lends its disk");
        disk.write(0, &sector).unwrap();
        Signal {
            level: Some(true),
            ..Signal::default()
        }
    }
}

/// Sector 0 of a shared in-memory disk.
struct SharedDisk(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl crate::disk::BlockDevice for SharedDisk {
    fn sectors(&self) -> u64 {
        1
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read(&mut self, _: u64, buf: &mut [u8]) -> Result<(), crate::disk::DiskError> {
        buf.copy_from_slice(&self.0.lock().unwrap());
        Ok(())
    }
    fn write(&mut self, _: u64, buf: &[u8]) -> Result<(), crate::disk::DiskError> {
        self.0.lock().unwrap().copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), crate::disk::DiskError> {
        Ok(())
    }
}

/// A device that asks for work after an access gets the VM's RAM and the
/// hypervisor's disk, still in the trap, and its signal is applied.
#[test]
fn a_device_asking_for_work_reaches_ram_and_disk() {
    const BASE: u64 = 0x0a00_0000;
    let store = (2 << 22) | (1 << 6);
    let mut desc = vm("dma", 0x8000_0000, b"sector zero");
    desc.devices = vec![(Window::new(BASE, 0x200), Box::new(Copier::default()) as _)];
    let mut hv = boot(vec![(
        desc,
        vec![
            dabt(BASE + 4, store),
            dabt(BASE, store),
            Step::Hvc(EXIT, 0, 0),
        ],
    )]);
    let sector = std::sync::Arc::new(std::sync::Mutex::new(vec![0u8; 512]));
    hv.set_disk(Box::new(SharedDisk(sector.clone())));
    hv.run();
    assert_eq!(&sector.lock().unwrap()[..11], b"sector zero");
    assert!(hv.vms[0].vgic.lock().in_flight(0, 48), "its line is high");
}

type TestHv = Hypervisor<Mock, Fifo, TestVgic>;

/// Where the two-vCPU VM of the device-job tests has its [`Copier`].
const COPIER_BASE: u64 = 0x0a00_0000;

/// A VM of two vCPUs with `copier`, its disk `sector`, on two CPUs: vCPU 0
/// starts vCPU 1 and notifies the device (then yields); vCPU 1, in the
/// guest on CPU 1 with `then` to do, is handed back with the job CPU 0
/// serves without the lock.
fn device_job_out(
    copier: Copier,
    sector: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    then: Vec<Step>,
) -> (TestHv, (VcpuId, Box<MockCtx>), Box<DeviceJob>) {
    let store = (2 << 22) | (1 << 6);
    let mut desc = vm("dma", 0x8000_0000, b"sector zero");
    desc.config.vcpus = 2;
    desc.devices = vec![(Window::new(COPIER_BASE, 0x200), Box::new(copier) as _)];
    // Contexts: 0 = vCPU 0, 1 = vCPU 1 as built (off), 2 = vCPU 1 on.
    let scripts = vec![
        vec![
            Step::SmcCall(CPU_ON, 1, GUEST_RAM_BASE + 0x100, 0),
            dabt(COPIER_BASE, store),
            Step::Hvc(abi::HC_YIELD, 0, 0),
        ]
        .into(),
        VecDeque::new(),
        then.into(),
    ];
    log::set_sink(&CaptureSink);
    let mock = Mock {
        scripts,
        results: vec![Vec::new(); 4],
        ..Mock::default()
    };
    let mut hv = build(mock, vec![desc], 2);
    hv.set_disk(Box::new(SharedDisk(sector)));
    let v0 = enter(&mut hv, 0).expect("vCPU 0 runs");
    finish(&mut hv, 0, v0);
    let v1 = enter(&mut hv, 1).expect("vCPU 1 runs on CPU 1");
    assert_eq!(v1.0, VcpuId(1));
    let v0 = enter(&mut hv, 0).expect("vCPU 0 goes on");
    finish(&mut hv, 0, v0);
    let Work::Device(job) = hv.next_work(CpuId(0)) else {
        panic!("CPU 0 serves the notify without the lock");
    };
    (hv, v1, job)
}

/// A device's work (a disk request) is served by the CPU whose vCPU
/// notified it, without the lock: meanwhile another CPU's exits are
/// handled, and its vCPU's access to the busy device is made again later
/// (its PC kept, the vCPU requeued). Once the device is back, its
/// interrupt is raised and the notifying vCPU goes on where it was.
#[test]
fn a_device_s_work_is_served_without_the_lock_and_its_device_waits() {
    let load = 2 << 22;
    let sector = std::sync::Arc::new(std::sync::Mutex::new(vec![0u8; 512]));
    let (mut hv, v1, mut job) = device_job_out(
        Copier::default(),
        sector.clone(),
        vec![dabt(COPIER_BASE + 4, load), dabt(COPIER_BASE + 4, load)],
    );
    // The lock is free: CPU 1's exit is handled while the job is out.
    let pc = v1.1.pc;
    finish(&mut hv, 1, v1);
    assert_eq!(
        hv.vcpus[1].ctx.as_ref().unwrap().pc,
        pc,
        "the access to the busy device is not done"
    );
    assert_eq!(hv.cpus[1].running, None, "its vCPU gave way");
    assert!(!hv.vms[0].vgic.lock().in_flight(0, 48), "no interrupt yet");
    job.run(&mut hv.platform);
    assert_eq!(&sector.lock().unwrap()[..11], b"sector zero");
    hv.after_device(CpuId(0), *job);
    assert!(hv.vms[0].vgic.lock().in_flight(0, 48), "its line is high");
    let again = enter(&mut hv, 1).expect("vCPU 1 runs again");
    finish(&mut hv, 1, again);
    assert_eq!(
        hv.vcpus[1].ctx.as_ref().unwrap().pc,
        pc + 4,
        "the access is done this time"
    );
    assert_eq!(hv.cpus[1].running, Some(VcpuId(1)), "and vCPU 1 stays on");
    let v0 = enter(&mut hv, 0).expect("vCPU 0 goes on where it was");
    assert_eq!(v0.0, VcpuId(0));
    assert_eq!(v0.1.pc, GUEST_RAM_BASE + 8, "past the notify");
}

/// A sibling resets the VM while a CPU serves its device's work: the
/// reset waits for the device (its RAM is not cleared under the work), the
/// device comes back reset, raises nothing in the rebooted guest, and the
/// VM starts again once its vCPU has left the CPU.
#[test]
fn a_reset_waits_for_a_device_s_work_and_gets_a_fresh_device() {
    let resets = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let sector = std::sync::Arc::new(std::sync::Mutex::new(vec![0u8; 512]));
    let (mut hv, v1, mut job) = device_job_out(
        Copier(resets.clone()),
        sector,
        vec![Step::SmcCall(SYSTEM_RESET, 0, 0, 0)],
    );
    finish(&mut hv, 1, v1);
    let resets_before = resets.load(std::sync::atomic::Ordering::Relaxed);
    assert!(hv.vms[0].reset_requested, "the reset waits for the device");
    assert!(
        !hv.vms[0].ram_state.busy(),
        "no RAM is being cleared under the work"
    );
    job.run(&mut hv.platform);
    hv.after_device(CpuId(0), *job);
    assert_eq!(
        resets.load(std::sync::atomic::Ordering::Relaxed),
        resets_before + 1,
        "the device is reset once it is back"
    );
    assert!(!hv.vms[0].vgic.lock().in_flight(0, 48), "nothing raised");
    assert!(!hv.vms[0].reset_requested, "then the VM resets");
    assert_eq!(hv.cpus[0].running, None, "vCPU 0 left its CPU");
}

/// A VM whose devices could not be made (a disk not on the disk) does not
/// start, with why; the others do.
#[test]
fn a_vm_without_its_devices_does_not_start() {
    let mut table = VmTable {
        vms: Vec::new(),
        windows: Vec::new(),
    };
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        let desc = vm(name, 0x8000_0000 + (i as u64) * (MIB2 as u64), b"");
        table.vms.push(desc.config);
    }
    let mock = Mock::default();
    let vif = MockInterface::of(&mock);
    take_lines();
    let hv: Hypervisor<Mock, Fifo, TestVgic> = Hypervisor::new(
        mock,
        vif,
        table,
        &[b""],
        vec![
            Err("disk lvm:vg0/a: VG vg0 has no LV a".into()),
            Ok(Vec::new()),
        ],
        1,
        100,
    );
    assert_eq!(hv.running_vms(), 1);
    let lines = take_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("VM a not started: disk lvm:vg0/a: VG vg0 has no LV a")),
        "{lines:?}"
    );
}

/// A device window over the VM's RAM would take accesses the RAM mapping
/// never traps: the VM is left out, with both windows named.
#[test]
fn a_device_window_over_ram_leaves_the_vm_out() {
    let mut desc = vm("clash", 0x8000_0000, b"");
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    desc.devices = vec![(
        Window::new(GUEST_RAM_BASE + 0x1000, 0x1000),
        Box::new(Scratch(log)) as _,
    )];
    let hv = boot(vec![(desc, vec![]), (vm("fine", 0x8020_0000, b""), vec![])]);
    assert_eq!(hv.running_vms(), 1);
    let lines = take_lines();
    assert!(
        lines
            .iter()
            .any(|l| l
                .contains("window 0x40000000..0x40200000 overlaps window 0x40001000..0x40002000")),
        "{lines:?}"
    );
}

#[test]
fn exit_reports_cpu_share() {
    let report = CpuReport {
        lifetime: 3000,
        used: 1000,
        ticks_per_ms: 1,
    };
    assert_eq!(report.to_string(), "after 3000 ms, 33.3% of a CPU");
    let all = CpuReport {
        lifetime: 0,
        used: 0,
        ticks_per_ms: 1,
    };
    assert_eq!(all.to_string(), "after 0 ms, 0.0% of a CPU");
}

#[test]
fn two_cpus_run_two_vcpus_at_once_and_idle_cpus_are_kicked() {
    let mut hv = boot(vec![
        (
            vm("a", 0x8000_0000, b""),
            vec![
                Step::Wfi {
                    timer_in: Some(1000),
                },
                Step::Hvc(EXIT, 0, 0),
            ],
        ),
        (vm("b", 0x8020_0000, b""), vec![Step::Hvc(EXIT, 0, 0)]),
    ]);
    hv.cpus = vec![CpuState::default(); 2];
    hv.jobs = (0..2).map(|_| None).collect();
    hv.clear_now(0);
    hv.clear_now(1);
    let (cpu0, cpu1) = (CpuId(0), CpuId(1));
    let Work::Run(a, ctx_a) = hv.next_work(cpu0) else {
        panic!()
    };
    let Work::Run(b, ctx_b) = hv.next_work(cpu1) else {
        panic!()
    };
    assert_eq!(
        (a, b),
        (VcpuId(0), VcpuId(1)),
        "both run at once, one per CPU"
    );
    assert!(
        hv.vcpus.iter().all(|v| v.ctx.is_none()),
        "each context is out with its CPU"
    );
    // b exits on CPU 1; a blocks on CPU 0; CPU 1 then idles.
    let mut ctx_b = ctx_b;
    let exit = hv.platform.run(&mut ctx_b);
    hv.after_run(cpu1, b, ctx_b, exit);
    let mut ctx_a = ctx_a;
    let exit = hv.platform.run(&mut ctx_a);
    hv.after_run(cpu0, a, ctx_a, exit);
    assert!(matches!(hv.next_work(cpu1), Work::Idle));
    // a's timer wakes it (CPU 0 idles until then): CPU 1, idle, is kicked.
    assert!(matches!(hv.next_work(cpu0), Work::Idle));
    hv.platform.wait_for_interrupt();
    hv.after_idle(cpu0);
    assert_eq!(hv.platform.kicks, vec![1]);
}

/// A vCPU pinned to a CPU wakes: only that CPU may run it, so an idle
/// neighbour's CPU is not kicked (it would wake, take the lock and find
/// nothing: a neighbour on a CPU of its own felt every wake-up).
#[test]
fn a_pinned_vcpu_waking_kicks_only_its_own_cpu() {
    let mut a = vm("a", 0x8000_0000, b"");
    a.config.cpu = Some(0);
    let mut b = vm("b", 0x8020_0000, b"");
    b.config.cpu = Some(1);
    let mut hv = boot(vec![
        (
            a,
            vec![
                Step::Wfi {
                    timer_in: Some(1000),
                },
                Step::Hvc(EXIT, 0, 0),
            ],
        ),
        (b, vec![Step::Wfi { timer_in: None }]),
    ]);
    hv.cpus = vec![CpuState::default(); 2];
    hv.jobs = (0..2).map(|_| None).collect();
    let (cpu0, cpu1) = (CpuId(0), CpuId(1));
    let ran_a = enter(&mut hv, 0).expect("a runs on CPU 0");
    let a = ran_a.0;
    let ran_b = enter(&mut hv, 1).expect("b runs on CPU 1");
    finish(&mut hv, 1, ran_b);
    finish(&mut hv, 0, ran_a);
    assert!(matches!(hv.next_work(cpu1), Work::Idle));
    assert!(matches!(hv.next_work(cpu0), Work::Idle));
    hv.platform.wait_for_interrupt();
    hv.after_idle(cpu0);
    assert_eq!(
        hv.platform.kicks,
        Vec::<u32>::new(),
        "b's CPU was kicked for a"
    );
    assert!(matches!(hv.next_work(cpu0), Work::Run(v, _) if v == a));
}

/// Every CPU runs a vCPU that was alone when picked (no slice end) and
/// never traps by itself; a third vCPU wakes. It must get a CPU within a
/// slice, not when one of them happens to trap (a busy 32-bit fuzzer beside
/// a ticker on `rr` starved it for seconds).
#[test]
fn a_vcpu_woken_while_every_cpu_is_busy_runs_within_a_slice() {
    let entry = GUEST_RAM_BASE + 0x100;
    // Contexts: 0-2 = vCPUs 0-2 as built (1 and 2 off), 3 and 4 = vCPUs 1
    // and 2 after CPU_ON.
    let mut hv = boot_smp(
        3,
        2,
        vec![
            vec![
                Step::SmcCall(CPU_ON, 1, entry, 0),
                Step::SmcCall(CPU_ON, 2, entry, 0),
            ],
            Vec::new(),
            Vec::new(),
            vec![Step::Kicked, Step::TimerIrq],
            Vec::new(),
        ],
    );
    let ran_0 = enter(&mut hv, 0).expect("vCPU 0 runs on CPU 0");
    assert!(enter(&mut hv, 1).is_none(), "nothing else is on yet");
    hv.platform.kicks.clear();
    let ran_0 = {
        finish(&mut hv, 0, ran_0);
        let ctx = hv.vcpus[0].ctx.take().expect("resumed");
        (VcpuId(0), ctx)
    };
    hv.after_idle(CpuId(1));
    let ran_1 = enter(&mut hv, 1).expect("vCPU 1 runs on CPU 1");
    assert_eq!(ran_1.0, VcpuId(1));
    assert_eq!(hv.cpus[1].slice_end, None, "alone when picked");
    // vCPU 2 comes on while both CPUs are busy.
    finish(&mut hv, 0, ran_0);
    assert_eq!(
        hv.platform.kicks,
        vec![1, 1],
        "CPU 1 is kicked to end its slice"
    );
    assert!(hv.cpus[0].slice_end.is_some() && hv.cpus[1].slice_end.is_some());
    // CPU 1 takes the kick, arms its timer, and the slice ends.
    let ran_1 = {
        finish(&mut hv, 1, ran_1);
        let ctx = hv.vcpus[1].ctx.take().expect("resumed after the kick");
        (VcpuId(1), ctx)
    };
    assert_eq!(hv.platform.deadline, hv.cpus[1].slice_end, "timer armed");
    finish(&mut hv, 1, ran_1);
    let ran_2 = enter(&mut hv, 1).expect("CPU 1 picks again");
    assert_eq!(ran_2.0, VcpuId(2), "the woken vCPU runs");
}

#[test]
fn psci_starts_and_stops_sibling_vcpus_and_powers_the_vm_off() {
    const CPU_ON: u64 = 0xc400_0003;
    const CPU_OFF: u64 = 0x8400_0002;
    const AFFINITY_INFO: u64 = 0xc400_0004;
    const FEATURES: u64 = 0x8400_000a;
    const SYSTEM_OFF: u64 = 0x8400_0008;
    let entry = GUEST_RAM_BASE + 0x100;
    let mut desc = vm("smp", 0x8000_0000, b"");
    desc.config.vcpus = 2;
    log::set_sink(&CaptureSink);
    take_lines();
    // Contexts: 0 = vCPU 0, 1 = vCPU 1 as built (off), 2 = vCPU 1 after CPU_ON.
    let scripts = vec![
        vec![
            Step::SmcCall(CPU_ON, 1, entry, 7),
            Step::SmcCall(AFFINITY_INFO, 1, 0, 0),
            Step::SmcCall(CPU_ON, 1, entry, 7),
            Step::Hvc(abi::HC_YIELD, 0, 0),
            Step::SmcCall(AFFINITY_INFO, 1, 0, 0),
            Step::SmcCall(CPU_ON, 99, entry, 0),
            Step::SmcCall(FEATURES, CPU_ON, 0, 0),
            Step::SmcCall(FEATURES, 0x8400_0042, 0, 0),
            Step::SmcCall(SYSTEM_OFF, 0, 0, 0),
        ]
        .into(),
        VecDeque::new(),
        vec![Step::SmcCall(CPU_OFF, 0, 0, 0)].into(),
    ];
    let mock = Mock {
        scripts,
        results: vec![Vec::new(); 3],
        ..Mock::default()
    };
    let mut hv = build(mock, vec![desc], 1);
    hv.run();
    let results = &hv.platform.results;
    // results[v][n]: x0 as vCPU v saw it before its step n.
    assert_eq!(
        &results[0][1..],
        &[0, 0, -4, 0, 1, -2, 0, -1],
        "ON, ON, ALREADY_ON, yield, OFF, INVALID, FEATURES"
    );
    assert_eq!(
        results[2],
        vec![7],
        "the sibling starts with x0 = context id"
    );
    assert!(results[1].is_empty(), "the powered-off context never ran");
    assert!(take_lines()
        .iter()
        .any(|l| l.starts_with("[hv] VM smp powered off after ")));
    assert_eq!(hv.running_vms(), 0);
}

const CPU_ON: u64 = 0xc400_0003;
const SYSTEM_RESET: u64 = 0x8400_0009;

/// A VM of `vcpus` vCPUs on a host of `cpus` CPUs; `scripts[n]` is what
/// context n does (0..vcpus as built, then each one CPU_ON or a reset makes).
fn boot_smp(vcpus: u32, cpus: usize, scripts: Vec<Vec<Step>>) -> Hypervisor<Mock, Fifo, TestVgic> {
    let mut desc = vm("smp", 0x8000_0000, b"late\n");
    desc.config.vcpus = vcpus;
    log::set_sink(&CaptureSink);
    take_lines();
    let mock = Mock {
        results: vec![Vec::new(); scripts.len()],
        scripts: scripts.into_iter().map(Into::into).collect(),
        ..Mock::default()
    };
    build(mock, vec![desc], cpus as u32)
}

/// `cpu` takes its next work and, if it is a vCPU, lets it into the guest:
/// the context is out until [`finish`] hands its exit back.
fn enter(hv: &mut Hypervisor<Mock, Fifo, TestVgic>, cpu: u32) -> Option<(VcpuId, Box<MockCtx>)> {
    loop {
        match hv.next_work(CpuId(cpu)) {
            Work::Run(vcpu, ctx) => return Some((vcpu, ctx)),
            Work::Zero(vcpu, chunk) => {
                hv.platform.zero_guest(chunk);
                hv.after_zero(CpuId(cpu), vcpu);
            }
            Work::Device(mut job) => {
                job.run(&mut hv.platform);
                hv.after_device(CpuId(cpu), *job);
            }
            Work::Idle | Work::Finished => return None,
        }
    }
}

/// The guest on `cpu` makes its next scripted exit, and the core handles it.
fn finish(
    hv: &mut Hypervisor<Mock, Fifo, TestVgic>,
    cpu: u32,
    (vcpu, mut ctx): (VcpuId, Box<MockCtx>),
) {
    let exit = hv.platform.run(&mut ctx);
    hv.after_run(CpuId(cpu), vcpu, ctx, exit);
}

/// A vCPU of a VM with several, alone on its CPU, has no slice end, yet
/// the hypervisor's timer still fires every slice while it runs (a tick),
/// and after each tick the same vCPU goes on with the next tick armed. One
/// that spins with its interrupts masked never traps by itself: under QEMU
/// 7.2's round-robin TCG with `-icount` its CPU then takes every
/// instruction and its sibling's CPU none (32-bit Linux's `stop_machine`
/// deadlocked that way).
#[test]
fn a_vcpu_alone_on_its_cpu_still_gets_a_tick_every_slice() {
    let mut hv = boot_smp(2, 2, vec![vec![Step::TimerIrq, Step::TimerIrq], vec![]]);
    let ran = enter(&mut hv, 0).expect("vCPU 0 runs");
    assert_eq!(hv.cpus[0].slice_end, None, "alone when picked");
    let first = hv.platform.now + hv.slice;
    assert_eq!(hv.platform.deadline, Some(first), "a tick is armed");
    finish(&mut hv, 0, ran);
    assert_eq!(hv.platform.now, first, "the tick fired");
    let ctx = hv.vcpus[0].ctx.take().expect("the same vCPU goes on");
    assert_eq!(hv.platform.deadline, Some(first + hv.slice), "next tick");
    finish(&mut hv, 0, (VcpuId(0), ctx));
    assert!(hv.vcpus[0].ctx.is_some(), "still on its CPU");
}

/// The tick is for siblings: a VM with one vCPU has none to wait for, and
/// its CPU's timer stays unarmed while it runs alone.
#[test]
fn a_lone_vcpu_of_a_one_vcpu_vm_gets_no_tick() {
    let mut hv = boot_smp(1, 1, vec![vec![Step::TimerIrq]]);
    enter(&mut hv, 0).expect("vCPU 0 runs");
    assert_eq!(hv.cpus[0].slice_end, None, "alone when picked");
    assert_eq!(hv.platform.deadline, None, "no tick");
}

#[test]
fn a_reset_while_a_sibling_runs_drops_its_cpu_on_and_restarts_the_vm() {
    let entry = GUEST_RAM_BASE + 0x100;
    // Contexts: 0 vCPU 0, 1 vCPU 1 as built, 2 vCPU 1 after CPU_ON; the
    // reset makes 3 and 4 (both off), then 5, vCPU 0 at the entry point.
    let mut hv = boot_smp(
        2,
        2,
        vec![
            vec![
                Step::SmcCall(CPU_ON, 1, entry, 0),
                Step::SmcCall(SYSTEM_RESET, 0, 0, 0),
            ],
            vec![],
            // Turned off by the reset while in the guest, it starts itself.
            vec![Step::SmcCall(CPU_ON, 1, entry, 0)],
            vec![],
            vec![],
            vec![Step::Hvc(EXIT, 0, 0)],
        ],
    );
    let on_cpu0 = enter(&mut hv, 0).unwrap();
    finish(&mut hv, 0, on_cpu0); // CPU_ON: vCPU 1 queued, vCPU 0 resumes
    let on_cpu0 = enter(&mut hv, 0).unwrap();
    let on_cpu1 = enter(&mut hv, 1).expect("vCPU 1 runs on CPU 1");
    assert_eq!(on_cpu1.0, VcpuId(1));
    finish(&mut hv, 0, on_cpu0); // SYSTEM_RESET; vCPU 1 is still in the guest
    assert_eq!(
        hv.platform.kicks,
        vec![1],
        "CPU 1 is kicked out of the guest"
    );
    assert!(
        enter(&mut hv, 0).is_none(),
        "nothing runs until vCPU 1 has left"
    );
    finish(&mut hv, 1, on_cpu1); // its CPU_ON of itself is dropped
    assert_eq!(hv.vcpus[1].power, Power::Off);
    assert_eq!(hv.vcpus[1].run, RunState::Parked);
    // The VM restarts on vCPU 0 alone, wherever it is picked.
    let restarted = enter(&mut hv, 1).expect("vCPU 0 restarted");
    assert_eq!(restarted.0, VcpuId(0));
    assert!(
        enter(&mut hv, 0).is_none(),
        "vCPU 1 stays off after the reset"
    );
    finish(&mut hv, 1, restarted);
    assert_eq!(hv.running_vms(), 0);
    assert_eq!(
        hv.platform.results[5],
        vec![hv.vms[0].ram.start_info_ipa() as i64]
    );
    assert!(hv.platform.scripts.iter().all(|s| s.is_empty()));
    let lines = take_lines();
    assert!(
        lines.iter().any(|l| l.contains("VM smp resets")),
        "{lines:?}"
    );
}

#[test]
fn a_reset_drops_an_exit_already_in_flight_on_a_third_cpu() {
    let entry = GUEST_RAM_BASE + 0x100;
    // Contexts: 0 vCPU 0, 1-2 vCPUs 1-2 as built, 3-4 after CPU_ON; the
    // reset makes 5-7 (all off), then 8, vCPU 0 at the entry point.
    let mut hv = boot_smp(
        3,
        3,
        vec![
            vec![
                Step::SmcCall(CPU_ON, 1, entry, 0),
                Step::SmcCall(CPU_ON, 2, entry, 0),
                Step::SmcCall(SYSTEM_RESET, 0, 0, 0),
            ],
            vec![],
            vec![],
            vec![Step::Hvc(WRITE, GUEST_RAM_BASE, 5)],
            // vCPU 2 starts vCPU 1, which is running: the exit is in flight
            // when the reset comes.
            vec![Step::SmcCall(CPU_ON, 1, entry, 0)],
            vec![],
            vec![],
            vec![],
            vec![Step::Hvc(EXIT, 0, 0)],
        ],
    );
    let v0 = enter(&mut hv, 0).unwrap();
    finish(&mut hv, 0, v0);
    let v0 = enter(&mut hv, 0).unwrap();
    finish(&mut hv, 0, v0);
    let v0 = enter(&mut hv, 0).unwrap();
    let v1 = enter(&mut hv, 1).unwrap();
    let v2 = enter(&mut hv, 2).unwrap();
    assert_eq!((v1.0, v2.0), (VcpuId(1), VcpuId(2)));
    finish(&mut hv, 0, v0); // reset: vCPUs 1 and 2 are in the guest
    finish(&mut hv, 2, v2); // vCPU 2's CPU_ON of vCPU 1: dropped
    assert!(enter(&mut hv, 2).is_none());
    finish(&mut hv, 1, v1); // vCPU 1's console write: dropped, it leaves
    let restarted = enter(&mut hv, 2).expect("vCPU 0 restarted");
    assert_eq!(restarted.0, VcpuId(0));
    assert!(enter(&mut hv, 0).is_none() && enter(&mut hv, 1).is_none());
    finish(&mut hv, 2, restarted);
    assert_eq!(hv.running_vms(), 0);
    assert_eq!(
        hv.platform.results[4],
        vec![0],
        "vCPU 2's request had no answer"
    );
    let lines = take_lines();
    assert!(!lines.iter().any(|l| l.contains("late")), "{lines:?}");
}

#[test]
fn cpu_on_of_a_vcpu_still_on_a_cpu_answers_already_on_or_on_pending() {
    const ALREADY_ON: i64 = -4;
    const ON_PENDING: i64 = -5;
    let entry = GUEST_RAM_BASE + 0x100;
    let mut hv = boot_smp(
        2,
        2,
        vec![
            vec![
                Step::SmcCall(CPU_ON, 1, entry, 0),
                Step::SmcCall(CPU_ON, 1, entry, 0),
                Step::SmcCall(CPU_ON, 1, entry, 0),
                Step::Hvc(EXIT, 0, 0),
            ],
            vec![],
            vec![Step::Hvc(EXIT, 0, 0)],
        ],
    );
    let v0 = enter(&mut hv, 0).unwrap();
    finish(&mut hv, 0, v0);
    let v0 = enter(&mut hv, 0).unwrap();
    let v1 = enter(&mut hv, 1).unwrap();
    finish(&mut hv, 0, v0); // vCPU 1 is on, in the guest on CPU 1
                            // As if vCPU 1 had been turned off while its context is out on CPU 1.
    hv.vcpus[1].power = Power::Off;
    let v0 = enter(&mut hv, 0).unwrap();
    finish(&mut hv, 0, v0);
    let v0 = enter(&mut hv, 0).unwrap();
    finish(&mut hv, 0, v0);
    assert_eq!(&hv.platform.results[0][2..], &[ALREADY_ON, ON_PENDING]);
    assert!(matches!(hv.vcpus[1].run, RunState::OnCpu(CpuId(1))));
    drop(v1);
}

#[test]
fn only_hvc_0_is_the_abi_and_psci_answers_over_hvc_too() {
    const PSCI_VERSION: u64 = 0x8400_0000;
    let not_supported = Error::NotSupported as i64;
    let mut hv = boot(vec![(
        vm("alpha", 0x8000_0000, b""),
        vec![
            Step::Hvc(PSCI_VERSION, 0, 0),
            Step::HvcImm(1, abi::HC_ABI_VERSION, 0, 0),
            Step::HvcImm(0x8000, PSCI_VERSION, 0, 0),
            Step::HvcImm(1, EXIT, 0, 0),
            Step::Hvc(EXIT, 0, 0),
        ],
    )]);
    hv.run();
    assert_eq!(
        &hv.platform().results[0][1..],
        &[0x1_0000, not_supported, not_supported, not_supported]
    );
}

#[test]
fn psci_checks_entry_points_affinity_levels_and_mpidrs() {
    const AFFINITY_INFO: u64 = 0xc400_0004;
    const INVALID_PARAMETERS: i64 = -2;
    const INVALID_ADDRESS: i64 = -9;
    let entry = GUEST_RAM_BASE + 0x100;
    let ram_end = GUEST_RAM_BASE + MIB2 as u64;
    let mut hv = boot_smp(
        2,
        1,
        vec![vec![
            Step::SmcCall(CPU_ON, 1, GUEST_RAM_BASE - 4, 0),
            Step::SmcCall(CPU_ON, 1, ram_end - 2, 0),
            Step::SmcCall(CPU_ON, 1, u64::MAX - 1, 0),
            Step::SmcCall(CPU_ON, 1 << 8 | 1, entry, 0),
            Step::SmcCall(CPU_ON, 1 << 16 | 1, entry, 0),
            Step::SmcCall(CPU_ON, 1 << 32 | 1, entry, 0),
            Step::SmcCall(AFFINITY_INFO, 1, 1, 0),
            Step::SmcCall(AFFINITY_INFO, 1 << 32, 0, 0),
            Step::SmcCall(AFFINITY_INFO, 1, 0, 0),
            // MPIDR bits 24-31 (MT, U, RES1) are not affinity: ignored.
            Step::SmcCall(CPU_ON, 1 << 31 | 1 << 24 | 1, ram_end - 4, 0),
            Step::SmcCall(AFFINITY_INFO, 1, 0, 0),
            Step::Hvc(EXIT, 0, 0),
        ]],
    );
    hv.run();
    assert_eq!(
        &hv.platform().results[0][1..],
        &[
            INVALID_ADDRESS,
            INVALID_ADDRESS,
            INVALID_ADDRESS,
            INVALID_PARAMETERS,
            INVALID_PARAMETERS,
            INVALID_PARAMETERS,
            INVALID_PARAMETERS,
            INVALID_PARAMETERS,
            1,
            0,
            0,
        ]
    );
}

#[test]
fn the_zero_register_stores_zero_and_loads_nowhere() {
    let dabt = |write: bool, offset: u64| {
        let ipa = abi::GUEST_GICD_BASE + offset;
        let esr = 0x9380_0005 | (31 << 16) | if write { 1 << 6 } else { 0 };
        Step::Trap {
            esr,
            far: ipa,
            hpfar: (ipa >> 12) << 4,
        }
    };
    let mut hv = boot(vec![(
        vm("gic", 0x8000_0000, b""),
        vec![
            dabt(true, 0x100), // str wzr, [ISENABLER0]
            dabt(false, 0x100),
            Step::Hvc(EXIT, 0, 0),
        ],
    )]);
    hv.vms[0].vgic.lock().registers.insert(0x100, 0xffff);
    hv.run();
    assert_eq!(hv.vms[0].vgic.lock().registers[&0x100], 0);
    let ctx = hv.vcpus[0].ctx.as_ref().unwrap();
    assert!(
        ctx.regs.iter().all(|&r| r == 0 || r == EXIT),
        "{:x?}",
        ctx.regs
    );
}

#[test]
fn a_16_bit_instruction_is_stepped_over_by_2_bytes() {
    // WFE (EC 0x01, ISS bit 0) from a T32 16-bit encoding: IL = 0.
    let mut hv = boot(vec![(
        vm("thumb", 0x8000_0000, b""),
        vec![
            Step::Trap {
                esr: 0x01 << 26 | 1,
                far: 0,
                hpfar: 0,
            },
            Step::Trap {
                esr: 0x01 << 26 | 1 << 25 | 1,
                far: 0,
                hpfar: 0,
            },
            Step::Hvc(EXIT, 0, 0),
        ],
    )]);
    hv.run();
    assert_eq!(
        hv.vcpus[0].ctx.as_ref().unwrap().pc,
        GUEST_RAM_BASE + 2 + 4 + 4
    );
}

#[test]
fn cpu_off_gives_back_what_its_list_registers_held() {
    const CPU_OFF: u64 = 0x8400_0002;
    let entry = GUEST_RAM_BASE + 0x100;
    let sgi_write = {
        let ipa = abi::GUEST_GICD_BASE + 0xf00;
        Step::Trap {
            esr: 0x9380_0045, // str w0, 4 bytes
            far: ipa,
            hpfar: (ipa >> 12) << 4,
        }
    };
    let mut hv = boot_smp(
        2,
        1,
        vec![
            vec![
                // vCPU 1 starts with x0 = 1: its store raises SGI 1.
                Step::SmcCall(CPU_ON, 1, entry, 1),
                Step::Hvc(abi::HC_YIELD, 0, 0),
                Step::Hvc(EXIT, 0, 0),
            ],
            vec![],
            vec![sgi_write, Step::SmcCall(CPU_OFF, 0, 0, 0)],
        ],
    );
    hv.run();
    // Back in the distributor, it went to the vCPU still on.
    assert_eq!(hv.vcpus[0].lrs[0].intid, 1);
    assert_eq!(hv.vcpus[0].lrs[0].state, LrState::Pending);
    assert!(hv.vcpus[1].lrs.iter().all(|lr| *lr == ListReg::default()));
}

#[test]
fn a_reset_clears_the_ram_in_chunks_handed_out_as_work() {
    let mut hv = boot_smp(
        1,
        1,
        // Contexts: 0 as built; the reset makes 1 (off), then 2 at the entry.
        vec![
            vec![Step::SmcCall(SYSTEM_RESET, 0, 0, 0)],
            vec![],
            vec![Step::Hvc(EXIT, 0, 0)],
        ],
    );
    // What the guest left behind must not survive the reset.
    let ram = hv.vms[0].ram;
    hv.platform
        .write_guest(ram.slice(GUEST_RAM_BASE + 0x1000, 4).unwrap(), b"left");
    let v0 = enter(&mut hv, 0).unwrap();
    finish(&mut hv, 0, v0);
    let mut chunks = Vec::new();
    let restarted = loop {
        match hv.next_work(CpuId(0)) {
            Work::Zero(vcpu, chunk) => {
                assert_eq!(vcpu, VcpuId(0));
                chunks.push((chunk.pa(), chunk.len()));
                hv.platform.zero_guest(chunk);
                hv.after_zero(CpuId(0), vcpu);
            }
            Work::Run(vcpu, ctx) => break (vcpu, ctx),
            Work::Device(_) | Work::Idle | Work::Finished => panic!("the VM restarts"),
        }
    };
    // The 64 KiB groups it had, the image's and the start info's, but
    // the image's 5 bytes, which it writes again.
    chunks.sort();
    assert_eq!(
        chunks,
        [(0x8000_0005, (64 << 10) - 5), (0x801f_0000, 64 << 10)]
    );
    let mut left = [0xff; 4];
    hv.platform
        .read_guest(ram.slice(GUEST_RAM_BASE + 0x1000, 4).unwrap(), &mut left);
    assert_eq!(left, [0; 4]);
    let mut image = [0; 5];
    hv.platform
        .read_guest(ram.slice(GUEST_RAM_BASE, 5).unwrap(), &mut image);
    assert_eq!(&image, b"late\n", "the image is back");
    finish(&mut hv, 0, restarted);
    assert_eq!(hv.running_vms(), 0);
}

#[test]
fn smc32_psci_calls_read_only_the_low_halves_of_their_arguments() {
    const AFFINITY_INFO_32: u64 = 0x8400_0004;
    const CPU_ON_32: u64 = 0x8400_0003;
    let high = 1 << 32;
    let mut hv = boot_smp(
        2,
        1,
        vec![vec![
            // vCPU 0 is on; the upper half of the MPIDR is not part of it.
            Step::SmcCall(AFFINITY_INFO_32, high, high, 0),
            Step::SmcCall(CPU_ON_32, high, high | (GUEST_RAM_BASE + 0x100), 0),
            // The 64-bit calls read all 64 bits: Aff3 = 1 names no vCPU.
            Step::SmcCall(0xc400_0004, high, 0, 0),
            Step::Hvc(EXIT, 0, 0),
        ]],
    );
    hv.run();
    assert_eq!(&hv.platform().results[0][1..], &[0, -4, -2]);
}

#[test]
fn group_0_and_other_group_1_sgi_writes_are_ignored_not_fatal() {
    // MSR ICC_ASGI1R_EL1 / ICC_SGI0R_EL1, x1 (EC 0x18, IL, write).
    let msr = |op2: u64| Step::Trap {
        esr: 0x18 << 26 | 1 << 25 | 3 << 20 | op2 << 17 | 12 << 10 | 1 << 5 | 11 << 1,
        far: 0,
        hpfar: 0,
    };
    let mut hv = boot(vec![(
        vm("gic", 0x8000_0000, b""),
        vec![msr(6), msr(7), Step::Hvc(EXIT, 0, 0)],
    )]);
    hv.run();
    assert_eq!(
        hv.vcpus[0].ctx.as_ref().unwrap().pc,
        GUEST_RAM_BASE + 4 + 4 + 4
    );
    let lines = take_lines();
    assert!(
        lines.iter().any(|l| l.contains("VM gic exited")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("stopped")), "{lines:?}");
}

#[test]
fn debug_and_pmu_registers_read_as_zero_and_ignore_writes() {
    let sysreg = |op0: u64, op1: u64, crn: u64, crm: u64, op2: u64, rt: u64, read: bool| {
        let iss = op0 << 20 | op2 << 17 | op1 << 14 | crn << 10 | rt << 5 | crm << 1;
        Step::Trap {
            esr: 0x18 << 26 | 1 << 25 | iss | u64::from(read),
            far: 0,
            hpfar: 0,
        }
    };
    // MRC p14, 0, r7, c0, c2, 2 (DBGDSCRext) from an AArch32 guest.
    let mrc_dbgdscr = Step::Trap {
        esr: 0x05 << 26 | 1 << 25 | 1 << 24 | 0xe << 20 | 2 << 17 | 7 << 5 | 2 << 1 | 1,
        far: 0,
        hpfar: 0,
    };
    let mut hv = boot(vec![(
        vm("dbg", 0x8000_0000, b""),
        vec![
            sysreg(3, 3, 9, 12, 0, 5, true),   // mrs x5, pmcr_el0
            sysreg(2, 0, 0, 2, 2, 6, false),   // msr mdscr_el1, x6
            sysreg(3, 3, 14, 15, 7, 31, true), // mrs xzr, pmccfiltr_el0
            mrc_dbgdscr,
            Step::Hvc(EXIT, 0, 0),
        ],
    )]);
    let ctx = hv.vcpus[0].ctx.as_mut().unwrap();
    ctx.regs[5] = 0x41;
    ctx.regs[6] = 0x1000;
    ctx.regs[7] = 0x77;
    hv.run();
    let lines = take_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[hv] VM dbg exited (code 0)")),
        "the VM runs on: {lines:?}"
    );
    let ctx = hv.vcpus[0].ctx.as_ref().unwrap();
    assert_eq!((ctx.regs[5], ctx.regs[6], ctx.regs[7]), (0, 0x1000, 0));
    // Each trapped instruction was stepped over, then the HVC.
    assert_eq!(ctx.pc, GUEST_RAM_BASE + 4 * 4 + 4);
}

#[test]
fn a_vcpu_woken_to_take_its_interrupt_is_not_preempted_by_the_next_wake_at_once() {
    // Both VMs wait in WFI; a's timer fires first, then, 50 ticks later
    // (within the 100-tick grace of a 1 MHz counter), b's.
    let mut hv = boot(vec![
        (
            vm("a", 0x8000_0000, b""),
            vec![
                Step::Wfi {
                    timer_in: Some(1000),
                },
                Step::GuestTimerIrq,
                Step::TimerIrq,
                Step::Hvc(EXIT, 0, 0),
            ],
        ),
        (
            vm("b", 0x8020_0000, b""),
            vec![
                Step::Wfi {
                    timer_in: Some(1040),
                },
                Step::Hvc(EXIT, 0, 0),
            ],
        ),
    ]);
    hv.run();
    let order: Vec<usize> = hv.platform().switches.iter().map(|&(ctx, _)| ctx).collect();
    assert_eq!(
        order,
        [0, 1, 0, 1],
        "a takes its interrupt and exits before b runs"
    );
}

/// A Linux VM of `width` whose kernel, device tree and initrd are images
/// 0, 1 and 2.
fn linux_vm(width: GuestWidth) -> (VmConfig<'static>, [&'static [u8]; 3]) {
    let mut config = vm("linux", 0x8000_0000, b"").config;
    config.width = width;
    config.ram.size = 8 << 20;
    config.linux = Some(config::vm::LinuxBoot {
        kernel_offset: 0x1_0000,
        dtb: config::vm::Blob {
            image: 1,
            offset: 0x40_0000,
        },
        initrd: Some(config::vm::Blob {
            image: 2,
            offset: 0x60_0000,
        }),
    });
    (config, [b"kernel", b"dtb", b"initrd"])
}

#[test]
fn a_linux_vm_starts_at_its_kernel_with_the_device_tree_by_the_protocol() {
    for (width, regs) in [
        (GuestWidth::Aarch64, [GUEST_RAM_BASE + 0x40_0000, 0, 0]),
        (
            GuestWidth::Aarch32,
            [0, 0xffff_ffff, GUEST_RAM_BASE + 0x40_0000],
        ),
    ] {
        log::set_sink(&CaptureSink);
        let (config, images) = linux_vm(width);
        let table = VmTable {
            vms: vec![config],
            windows: Vec::new(),
        };
        let mock = Mock::default();
        let vif = MockInterface::of(&mock);
        let mut hv: Hypervisor<Mock, Fifo, TestVgic> =
            Hypervisor::new(mock, vif, table, &images, Vec::new(), 1, 100);
        assert_eq!(hv.running_vms(), 1, "{:?}", take_lines());
        hv.clear_now(0);
        let ctx = hv.vcpus[0].ctx.as_deref().unwrap();
        assert_eq!(ctx.pc, GUEST_RAM_BASE + 0x1_0000, "{width:?}");
        assert_eq!(ctx.regs[..3], regs, "{width:?}");
        let ram = hv.vms[0].ram;
        for (offset, bytes) in [
            (0x1_0000, &b"kernel"[..]),
            (0x40_0000, b"dtb"),
            (0x60_0000, b"initrd"),
        ] {
            let mut read = vec![0; bytes.len()];
            let at = ram
                .slice(GUEST_RAM_BASE + offset, bytes.len() as u64)
                .unwrap();
            hv.platform.read_guest(at, &mut read);
            assert_eq!(read, bytes);
        }
        let mut page = [0u8; 4];
        hv.platform
            .read_guest(ram.slice(ram.start_info_ipa(), 4).unwrap(), &mut page);
        assert_eq!(page, [0; 4], "no start info for Linux");
    }
}

#[test]
fn a_linux_vm_whose_initrd_passes_its_ram_is_left_out() {
    log::set_sink(&CaptureSink);
    take_lines();
    let (mut config, images) = linux_vm(GuestWidth::Aarch64);
    config
        .linux
        .as_mut()
        .unwrap()
        .initrd
        .as_mut()
        .unwrap()
        .offset = (8 << 20) - 2;
    let table = VmTable {
        vms: vec![config],
        windows: Vec::new(),
    };
    let mock = Mock::default();
    let vif = MockInterface::of(&mock);
    let hv: Hypervisor<Mock, Fifo, TestVgic> =
        Hypervisor::new(mock, vif, table, &images, Vec::new(), 1, 100);
    assert_eq!(hv.running_vms(), 0);
    assert!(take_lines()
        .iter()
        .any(|l| l.contains("VM linux not started")));
}

/// A UART-like device that keeps what it is typed.
struct Keyboard(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl MmioDevice for Keyboard {
    fn read(&mut self, _: usize, _: u64, _: u8) -> u64 {
        0
    }
    fn write(&mut self, _: usize, _: u64, _: u8, _: u64) -> Signal {
        Signal::default()
    }
    fn irq(&self) -> Option<u32> {
        Some(33)
    }
    fn takes_input(&self) -> bool {
        true
    }
    fn input(&mut self, bytes: &[u8]) -> Option<(usize, Signal)> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Some((
            bytes.len(),
            Signal {
                raise: false,
                level: Some(true),
                ..Signal::default()
            },
        ))
    }
}

#[test]
fn console_input_goes_to_the_focused_vm_and_ctrl_bracket_moves_the_focus() {
    log::set_sink(&CaptureSink);
    take_lines();
    let typed: Vec<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> =
        (0..2).map(|_| Default::default()).collect();
    let mut a = vm("a", 0x8000_0000, b"");
    a.devices.push((
        Window::new(abi::GUEST_UART_BASE, 0x1000),
        Box::new(Keyboard(typed[0].clone())),
    ));
    let plain = vm("plain", 0x8020_0000, b"");
    let mut b = vm("b", 0x8040_0000, b"");
    b.devices.push((
        Window::new(abi::GUEST_UART_BASE, 0x1000),
        Box::new(Keyboard(typed[1].clone())),
    ));
    let mut hv = build(Mock::default(), vec![a, plain, b], 1);
    assert_eq!(hv.focus.targets, vec![0, 2], "the VMs that take input");
    hv.console_input(b"ls\x1dpwd\x1ddropped\x1dcd");
    assert_eq!(*typed[0].lock().unwrap(), b"lscd");
    assert_eq!(*typed[1].lock().unwrap(), b"pwd");
    let lines: Vec<String> = take_lines()
        .into_iter()
        .filter(|l| l.contains("console input"))
        .collect();
    assert_eq!(
        lines,
        vec![
            "[hv] console input goes to a (Ctrl-] switches)",
            "[hv] console input goes to b (Ctrl-] switches)",
            "[hv] console input goes to the hypervisor (Ctrl-] switches)",
            "[hv] console input goes to a (Ctrl-] switches)",
        ]
    );
    assert!(
        hv.vms[0].vgic.lock().in_flight(0, 33) && hv.vms[2].vgic.lock().in_flight(0, 33),
        "the input raised each UART's interrupt"
    );
}

/// A level-triggered device, as a UART with a receive interrupt: a write
/// at 0x4 sets its line to the value's truth, a read at 0 drains it (the
/// line drops).
struct LevelDevice(std::sync::Arc<std::sync::Mutex<bool>>);

impl MmioDevice for LevelDevice {
    fn read(&mut self, _: usize, _: u64, _: u8) -> u64 {
        *self.0.lock().unwrap() = false;
        0x41
    }
    fn write(&mut self, _: usize, _: u64, _: u8, value: u64) -> Signal {
        *self.0.lock().unwrap() = value != 0;
        Signal {
            raise: false,
            level: Some(value != 0),
            ..Signal::default()
        }
    }
    fn irq(&self) -> Option<u32> {
        Some(40)
    }
    fn level(&self) -> Option<bool> {
        Some(*self.0.lock().unwrap())
    }
}

/// A device's line reaches the vGIC on writes, reads and from outside an
/// access; its interrupt's list register keeps the vGIC's EOI-maintenance
/// request, and the core gives the interrupt again when the guest
/// completes it with the line still high.
#[test]
fn a_level_triggered_device_drives_its_interrupt() {
    const BASE: u64 = 0x0900_0000;
    let dabt = |esr: u64, offset: u64| dabt(BASE + offset, esr);
    let (word, write) = (2 << 22, 1 << 6);
    let line = std::sync::Arc::new(std::sync::Mutex::new(false));
    let mut desc = vm("uart", 0x8000_0000, b"");
    desc.devices = vec![(
        Window::new(BASE, 0x1000),
        Box::new(LevelDevice(line.clone())) as _,
    )];
    let mut hv = boot(vec![(
        desc,
        vec![
            Step::Hvc(abi::HC_ABI_VERSION, 0, 0), // x0 = the version, not 0
            dabt(word | write, 0x4),              // str w0: the line rises
            dabt(word | (1 << 16), 0x0),          // ldr w1: drained, it drops
            Step::Hvc(abi::HC_ABI_VERSION, 0, 0),
            Step::CompleteInterrupts, // with the line high
            Step::CompleteInterrupts, // with it low
            Step::Hvc(EXIT, 0, 0),
        ],
    )]);
    let hw_lrs = |hv: &Hypervisor<Mock, Fifo, TestVgic>| -> Vec<(u32, LrState, bool)> {
        hv.platform
            .lrs
            .borrow()
            .iter()
            .filter(|lr| !lr.is_free())
            .map(|lr| (lr.intid, lr.state, lr.eoi_maintenance))
            .collect()
    };
    let step = |hv: &mut Hypervisor<Mock, Fifo, TestVgic>| {
        let running = enter(hv, 0).expect("the vCPU runs");
        finish(hv, 0, running);
    };
    step(&mut hv); // HVC
    step(&mut hv); // the line rises
    assert!(hv.vms[0].vgic.lock().in_flight(0, 40));
    let running = enter(&mut hv, 0).unwrap();
    assert_eq!(
        hw_lrs(&hv),
        [(40, LrState::Pending, true)],
        "delivered, asking for EOI maintenance"
    );
    finish(&mut hv, 0, running); // the guest reads the device
    assert!(!*line.lock().unwrap());
    let running = enter(&mut hv, 0).unwrap();
    assert!(hw_lrs(&hv).is_empty(), "no longer pending");
    assert!(!hv.vms[0].vgic.lock().in_flight(0, 40));
    finish(&mut hv, 0, running); // HVC
                                 // Input arrives outside any access.
    *line.lock().unwrap() = true;
    let signal = Signal {
        raise: false,
        level: Some(true),
        ..Signal::default()
    };
    hv.device_signal(0, 0, signal);
    hv.device_signal(0, 7, signal); // no such device
    hv.device_signal(3, 0, signal); // no such VM
    let running = enter(&mut hv, 0).unwrap();
    assert_eq!(hw_lrs(&hv), [(40, LrState::Pending, true)]);
    finish(&mut hv, 0, running); // completed, the line still high
    let running = enter(&mut hv, 0).unwrap();
    assert_eq!(hw_lrs(&hv), [(40, LrState::Pending, true)], "again");
    hv.device_signal(0, 0, Signal::default()); // nothing changes
    *line.lock().unwrap() = false;
    finish(&mut hv, 0, running); // completed again; then the line drops
    hv.device_signal(
        0,
        0,
        Signal {
            raise: false,
            level: Some(false),
            ..Signal::default()
        },
    );
    let running = enter(&mut hv, 0).unwrap();
    assert!(hw_lrs(&hv).is_empty());
    finish(&mut hv, 0, running); // exits
    assert_eq!(hv.running_vms(), 0);
}

const CHANNEL_STATE_PA: u64 = 0x9000_0000;
const CHANNEL_DATA_PA: u64 = 0x9000_1000;

/// `sensor` writes channel `telemetry`, `logger` reads it (as the composer
/// places them: the same IPAs in both, INTID 64 on each side).
fn channel_pair(sensor_script: Vec<Step>, logger_script: Vec<Step>) -> Vec<(TestVm, Vec<Step>)> {
    let end = |writer: bool, peer: u32| config::vm::ChannelEnd {
        name: "telemetry".into(),
        writer,
        data: Region {
            base: CHANNEL_DATA_PA,
            size: 0x2000,
        },
        data_ipa: 0x1000_1000,
        state: CHANNEL_STATE_PA,
        state_ipa: 0x1000_0000,
        intid: 64,
        peer,
    };
    let mut sensor = vm("sensor", 0x8000_0000, b"s");
    sensor.config.channels.push(end(true, 1));
    let mut logger = vm("logger", 0x8020_0000, b"l");
    logger.config.channels.push(end(false, 0));
    vec![(sensor, sensor_script), (logger, logger_script)]
}

fn read_pa(hv: &mut Hypervisor<Mock, Fifo, TestVgic>, pa: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    let slice = crate::memory::GuestRam::new(0, pa, len as u64).all();
    hv.platform().ram.read_guest(slice, &mut buf);
    buf
}

/// (writer state, writer generation, reader state, reader generation).
fn channel_state(hv: &mut Hypervisor<Mock, Fifo, TestVgic>) -> [u32; 4] {
    let bytes = read_pa(hv, CHANNEL_STATE_PA, 16);
    core::array::from_fn(|i| u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap()))
}

#[test]
fn each_side_finds_its_channel_in_its_start_info() {
    let mut hv = boot(channel_pair(vec![], vec![]));
    hv.clear_now(0);
    hv.clear_now(1);
    for (vm, flags) in [(0x8000_0000u64, abi::CHANNEL_WRITER), (0x8020_0000, 0)] {
        let table = read_pa(&mut hv, vm + MIB2 as u64 - 4096 + 0xc0, 8 + 0x30);
        assert_eq!(&table[..4], &1u32.to_le_bytes());
        assert_eq!(&table[8..17], b"telemetry");
        assert_eq!(&table[24..32], &0x1000_1000u64.to_le_bytes(), "data IPA");
        assert_eq!(&table[32..40], &0x2000u64.to_le_bytes());
        assert_eq!(&table[40..48], &0x1000_0000u64.to_le_bytes(), "state IPA");
        assert_eq!(&table[48..52], &64u32.to_le_bytes());
        assert_eq!(&table[52..56], &flags.to_le_bytes());
    }
    let running = abi::CHANNEL_SIDE_RUNNING;
    assert_eq!(channel_state(&mut hv), [running, 0, running, 0]);
    // The writer maps the data read-write, the reader read-only; both the
    // state page read-only. (The bits are stage2.rs's to test.)
    for vm in 0..2 {
        let s2 = &hv.vms[vm].stage2;
        assert_eq!(s2.translate(0x1000_0008), Some(CHANNEL_STATE_PA + 8));
        assert_eq!(s2.translate(0x1000_2ff0), Some(CHANNEL_DATA_PA + 0x1ff0));
        assert_eq!(s2.translate(0x1000_3000), None);
    }
}

#[test]
fn notify_raises_the_other_sides_interrupt_and_checks_the_index() {
    let mut hv = boot(channel_pair(
        vec![
            Step::Hvc(abi::HC_CHANNEL_NOTIFY, 0, 0),
            Step::Hvc(abi::HC_CHANNEL_NOTIFY, 1, 0),
            Step::Hvc(abi::HC_CHANNEL_NOTIFY, u64::MAX, 0),
            // SMC32: the top half of the index does not count.
            Step::Hvc32(abi::HC32_CHANNEL_NOTIFY, 0, 0),
            Step::Hvc(abi::HC32_CHANNEL_NOTIFY, 1 << 32, 0),
            Step::Hvc(EXIT, 0, 0),
        ],
        vec![Step::Hvc(EXIT, 0, 0)],
    ));
    hv.run();
    let results = &hv.platform().results[0];
    assert_eq!(results[1], 0);
    assert_eq!(results[2], Error::InvalidParameter as i64);
    assert_eq!(results[3], Error::InvalidParameter as i64);
    assert_eq!(results[4], 0);
    assert_eq!(results[5], 0);
    assert!(
        hv.vms[1].vgic.lock().pending.contains(&64) || hv.vms[1].vgic.lock().in_lrs.contains(&64)
    );
    assert!(
        !hv.vms[0].vgic.lock().pending.contains(&64),
        "not the caller's own"
    );
}

#[test]
fn a_writer_that_stops_zeroes_its_channel_and_tells_the_reader() {
    let mut hv = boot(channel_pair(
        vec![Step::Hvc(EXIT, 0, 0)],
        vec![Step::Hvc(abi::HC_YIELD, 0, 0), Step::Hvc(EXIT, 0, 0)],
    ));
    let data = crate::memory::GuestRam::new(0, CHANNEL_DATA_PA, 0x2000).all();
    hv.platform().ram.write_guest(data, &[0xa5; 0x2000]);
    hv.run();
    assert!(read_pa(&mut hv, CHANNEL_DATA_PA, 0x2000)
        .iter()
        .all(|&b| b == 0));
    let stopped = abi::CHANNEL_SIDE_STOPPED;
    assert_eq!(channel_state(&mut hv), [stopped, 1, stopped, 1]);
    // The reader was told when the writer stopped (it ran after).
    assert!(
        hv.vms[1].vgic.lock().pending.contains(&64) || hv.vms[1].vgic.lock().in_lrs.contains(&64)
    );
}

#[test]
fn a_reader_that_stops_leaves_the_data_and_tells_the_writer() {
    let mut hv = boot(channel_pair(
        vec![Step::Hvc(abi::HC_YIELD, 0, 0), Step::Hvc(EXIT, 0, 0)],
        vec![Step::Hvc(EXIT, 0, 0)],
    ));
    let data = crate::memory::GuestRam::new(0, CHANNEL_DATA_PA, 0x2000).all();
    hv.platform().ram.write_guest(data, &[0xa5; 0x2000]);
    let sensor = enter(&mut hv, 0).unwrap();
    finish(&mut hv, 0, sensor); // yields
    let logger = enter(&mut hv, 0).unwrap();
    finish(&mut hv, 0, logger); // exits
    let (running, stopped) = (abi::CHANNEL_SIDE_RUNNING, abi::CHANNEL_SIDE_STOPPED);
    assert_eq!(channel_state(&mut hv), [running, 0, stopped, 1]);
    assert!(read_pa(&mut hv, CHANNEL_DATA_PA, 0x2000)
        .iter()
        .all(|&b| b == 0xa5));
    assert!(
        hv.vms[0].vgic.lock().pending.contains(&64),
        "the writer is told"
    );
    let sensor = enter(&mut hv, 0).unwrap();
    finish(&mut hv, 0, sensor); // exits
    assert_eq!(channel_state(&mut hv), [stopped, 1, stopped, 1]);
    assert!(read_pa(&mut hv, CHANNEL_DATA_PA, 0x2000)
        .iter()
        .all(|&b| b == 0));
}

#[test]
fn a_writer_that_resets_comes_back_empty_with_a_new_generation() {
    let mut hv = boot(channel_pair(
        vec![Step::SmcCall(SYSTEM_RESET, 0, 0, 0)],
        vec![Step::Hvc(abi::HC_YIELD, 0, 0), Step::Hvc(EXIT, 0, 0)],
    ));
    // Contexts 2 and 3: the writer's vCPU 0 reset, then started again.
    for script in [vec![], vec![Step::Hvc(EXIT, 0, 0)]] {
        hv.platform().scripts.push(script.into());
        hv.platform().results.push(Vec::new());
    }
    let data = crate::memory::GuestRam::new(0, CHANNEL_DATA_PA, 0x2000).all();
    hv.platform().ram.write_guest(data, &[0xa5; 0x2000]);
    let sensor = enter(&mut hv, 0).unwrap();
    finish(&mut hv, 0, sensor); // resets
    let (running, stopped) = (abi::CHANNEL_SIDE_RUNNING, abi::CHANNEL_SIDE_STOPPED);
    assert_eq!(channel_state(&mut hv), [stopped, 1, running, 0]);
    assert!(
        hv.vms[1].vgic.lock().pending.contains(&64),
        "the reader is told"
    );
    // Not zeroed under the lock: with the RAM, as `Work::Zero`, before
    // the writer starts again.
    assert!(read_pa(&mut hv, CHANNEL_DATA_PA, 0x2000)
        .iter()
        .all(|&b| b == 0xa5));
    let mut zeroed = Vec::new();
    let restarted = loop {
        match hv.next_work(CpuId(0)) {
            Work::Zero(vcpu, piece) => {
                zeroed.push((piece.pa(), piece.len()));
                hv.platform.zero_guest(piece);
                hv.after_zero(CpuId(0), vcpu);
            }
            Work::Run(VcpuId(0), ctx) => break (VcpuId(0), ctx),
            Work::Run(reader, mut ctx) => {
                let exit = hv.platform.run(&mut ctx); // yields
                hv.after_run(CpuId(0), reader, ctx, exit);
            }
            _ => panic!("the writer restarts"),
        }
    };
    assert!(zeroed.contains(&(CHANNEL_DATA_PA, 0x2000)), "{zeroed:x?}");
    assert!(read_pa(&mut hv, CHANNEL_DATA_PA, 0x2000)
        .iter()
        .all(|&b| b == 0));
    assert_eq!(channel_state(&mut hv), [running, 1, running, 0]);
    finish(&mut hv, 0, restarted);
    hv.run();
    assert_eq!(channel_state(&mut hv)[..2], [stopped, 2]);
    assert!(take_lines()
        .iter()
        .any(|l| l.contains("VM sensor exited (code 0)")));
}

#[test]
fn a_channel_whose_other_side_did_not_start_says_so() {
    let mut vms = channel_pair(vec![], vec![]);
    // The reader's image does not fit: it is left out.
    vms[1].0.image = Box::leak(vec![1u8; MIB2].into_boxed_slice());
    let mut hv = boot(vms);
    assert_eq!(hv.running_vms(), 1);
    let (running, stopped) = (abi::CHANNEL_SIDE_RUNNING, abi::CHANNEL_SIDE_STOPPED);
    assert_eq!(channel_state(&mut hv), [running, 0, stopped, 0]);
    assert_eq!(hv.vms[0].channel_peers, [None]);
}

/// Frames a test NIC is to send, and those it received.
type Frames = std::sync::Arc<std::sync::Mutex<VecDeque<Vec<u8>>>>;

/// A network device: a write at 0 sends what is queued in `tx` (as far
/// as the switch takes it, asking for more work if it stopped); what it
/// receives goes to `rx`, with an edge on its interrupt.
struct Nic {
    mac: [u8; 6],
    tx: Frames,
    rx: Frames,
}

impl MmioDevice for Nic {
    fn read(&mut self, _: usize, _: u64, _: u8) -> u64 {
        0
    }
    fn write(&mut self, _: usize, offset: u64, _: u8, _: u64) -> Signal {
        Signal {
            work: offset == 0,
            ..Signal::default()
        }
    }
    fn irq(&self) -> Option<u32> {
        Some(49)
    }
    fn mac(&self) -> Option<[u8; 6]> {
        Some(self.mac)
    }
    fn work(&mut self, backing: crate::device::Backing<'_>) -> Signal {
        let sink = backing.frames.expect("a port gets the switch");
        let mut tx = self.tx.lock().unwrap();
        while let Some(frame) = tx.front() {
            if !sink.send(frame) {
                return Signal {
                    work: true,
                    ..Signal::default()
                };
            }
            tx.pop_front();
        }
        Signal::default()
    }
    fn receive(&mut self, frame: &[u8], backing: crate::device::Backing<'_>) -> Signal {
        assert!(backing.frames.is_none());
        self.rx.lock().unwrap().push_back(frame.to_vec());
        Signal {
            raise: true,
            ..Signal::default()
        }
    }
    /// Noted among what it received, to be seen in order.
    fn reset(&mut self) {
        self.rx.lock().unwrap().push_back(NIC_RESET.to_vec());
    }
}

const NIC_RESET: &[u8] = b"reset";

fn nic_mac(n: u8) -> [u8; 6] {
    [2, 0x54, 0x53, 0, 0, n]
}

fn ether(dst: [u8; 6], src: [u8; 6], n: u8) -> Vec<u8> {
    let mut frame = vec![n; 60];
    frame[..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    frame
}

/// VM `name` at `pa` with a NIC on `network`, its MAC `nic_mac(n)`.
fn vm_on_network(name: &'static str, pa: u64, network: u32, n: u8) -> (TestVm, Frames, Frames) {
    const BASE: u64 = 0x0a00_0200;
    let (tx, rx) = (Frames::default(), Frames::default());
    let mut desc = vm(name, pa, b"");
    desc.config.devices.push(config::vm::DeviceConfig {
        kind: "test-nic".into(),
        base: BASE,
        size: 0x200,
        intid: 49,
        disk: None,
        net: Some(config::vm::NetConfig {
            network,
            mac: nic_mac(n),
        }),
    });
    let nic = Nic {
        mac: nic_mac(n),
        tx: tx.clone(),
        rx: rx.clone(),
    };
    desc.devices = vec![(Window::new(BASE, 0x200), Box::new(nic) as _)];
    (desc, tx, rx)
}

/// What a NIC's transmit notify sends reaches the VMs of its network, a
/// frame per exit (the notify is made again while the NIC has more: the
/// lock is let go between frames), and no other VM.
#[test]
fn frames_are_switched_within_their_network_only() {
    let notify = notify_store(0x0a00_0200);
    let (a, a_tx, a_rx) = vm_on_network("a", 0x8000_0000, 0, 1);
    let (b, _, b_rx) = vm_on_network("b", 0x8020_0000, 0, 2);
    let (c, c_tx, c_rx) = vm_on_network("c", 0x8040_0000, 1, 3);
    for n in 0..40 {
        a_tx.lock()
            .unwrap()
            .push_back(ether(nic_mac(2), nic_mac(1), n));
    }
    a_tx.lock()
        .unwrap()
        .push_back(ether([0xff; 6], nic_mac(1), 40));
    // c: a broadcast, and a frame to a's address, on its own network.
    c_tx.lock()
        .unwrap()
        .push_back(ether([0xff; 6], nic_mac(3), 0));
    c_tx.lock()
        .unwrap()
        .push_back(ether(nic_mac(1), nic_mac(3), 0));
    let mut hv = boot(vec![
        (a, vec![notify, Step::Hvc(EXIT, 0, 0)]),
        (b, vec![Step::Hvc(EXIT, 0, 0)]),
        (c, vec![notify, Step::Hvc(EXIT, 0, 0)]),
    ]);
    // Each VM's RAM cleared first: a frame for a VM whose RAM is still
    // being cleared is dropped (it has not run, so it has no buffers).
    for vm in 0..3 {
        hv.clear_now(vm);
    }
    hv.run();
    // Each device was reset as its VM exited, after what it received.
    let frames = |rx: &Frames| -> Vec<Vec<u8>> {
        let got: Vec<Vec<u8>> = rx.lock().unwrap().iter().cloned().collect();
        assert_eq!(got.last().map(Vec::as_slice), Some(NIC_RESET));
        got[..got.len() - 1].to_vec()
    };
    let got: Vec<u8> = frames(&b_rx).iter().map(|f| f[20]).collect();
    assert_eq!(got, (0..=40).collect::<Vec<u8>>(), "in order, all 41");
    assert!(a_tx.lock().unwrap().is_empty());
    assert!(frames(&a_rx).is_empty(), "not back to the sender");
    assert!(frames(&c_rx).is_empty(), "another network");
    assert_eq!(hv.switch.ports(), 3);
    assert!(
        hv.vms[1].vgic.lock().in_flight(0, 49),
        "b's interrupt raised"
    );
    // a's 41 frames took 41 exits, c's 2 took 2: one notify each, the
    // rest made again.
    assert_eq!(hv.platform().repeats, 40 + 1);
}

/// A VM that resets takes no frame until it runs again, and its network
/// device is reset first: the rings its guest set up before are forgotten,
/// so nothing is written into the rebooted guest's RAM through them.
#[test]
fn a_resetting_vm_gets_no_frames_and_a_fresh_device() {
    let store = (2 << 22) | (1 << 6);
    let notify = dabt(0x0a00_0200, store);
    let (a, a_tx, _) = vm_on_network("a", 0x8000_0000, 0, 1);
    let (b, _, b_rx) = vm_on_network("b", 0x8020_0000, 0, 2);
    log::set_sink(&CaptureSink);
    take_lines();
    let mock = Mock {
        scripts: vec![
            vec![notify, notify, Step::Hvc(EXIT, 0, 0)].into(),
            vec![Step::SmcCall(SYSTEM_RESET, 0, 0, 0)].into(),
            // The contexts b's reset makes: the first is replaced at once.
            VecDeque::new(),
            vec![Step::Hvc(EXIT, 0, 0)].into(),
        ],
        results: vec![Vec::new(); 4],
        ..Mock::default()
    };
    let mut hv = build(mock, vec![a, b], 2);
    let on_a = enter(&mut hv, 0).expect("a runs");
    let on_b = enter(&mut hv, 1).expect("b runs");
    assert_eq!((on_a.0, on_b.0), (VcpuId(0), VcpuId(1)));
    finish(&mut hv, 1, on_b); // b resets
    a_tx.lock()
        .unwrap()
        .push_back(ether(nic_mac(2), nic_mac(1), 1));
    finish(&mut hv, 0, on_a);
    let on_a = enter(&mut hv, 0).expect("a goes on after its transmit");
    assert_eq!(
        *b_rx.lock().unwrap(),
        [NIC_RESET.to_vec()],
        "dropped while b resets"
    );
    let on_b = enter(&mut hv, 1).expect("b runs again");
    a_tx.lock()
        .unwrap()
        .push_back(ether(nic_mac(2), nic_mac(1), 2));
    finish(&mut hv, 0, on_a);
    let on_a = enter(&mut hv, 0).expect("a goes on");
    let got: Vec<Vec<u8>> = b_rx.lock().unwrap().iter().cloned().collect();
    assert_eq!(got, [NIC_RESET.to_vec(), ether(nic_mac(2), nic_mac(1), 2)]);
    finish(&mut hv, 0, on_a);
    finish(&mut hv, 1, on_b);
    assert_eq!(hv.running_vms(), 0);
}

mod fast_path {
    use super::*;
    use crate::trap;
    use proptest::prelude::*;

    /// ESRs near the fast path's edges: HVC (both widths, any immediate),
    /// the system register and coprocessor classes, and anything at all.
    fn esr() -> impl Strategy<Value = u64> {
        let ec = prop_oneof![
            Just(trap::EC_HVC64),
            Just(trap::EC_HVC32),
            Just(trap::EC_SYSREG),
            Just(trap::EC_CP14_32),
            Just(trap::EC_CP15_32),
            Just(trap::EC_CP14_64),
            Just(trap::EC_CP15_64),
            any::<u8>().prop_map(|ec| ec & 0x3f),
        ];
        let iss = prop_oneof![
            Just(0u32),
            1u32..4,
            any::<u32>().prop_map(|i| i & 0x1ff_ffff)
        ];
        (ec, iss).prop_map(|(ec, iss)| u64::from(ec) << 26 | 1 << 25 | u64::from(iss))
    }

    fn function() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(abi::HC_ABI_VERSION),
            Just(abi::HC32_ABI_VERSION),
            Just(abi::HC_CONSOLE_WRITE),
            Just(abi::HC_YIELD),
            Just(abi::HC_VM_EXIT),
            Just(abi::HC_CHANNEL_NOTIFY),
            Just(0x8400_0000u64), // PSCI_VERSION
            Just(0xc400_0003u64), // CPU_ON (64-bit)
            any::<u64>(),
        ]
    }

    proptest! {
        /// Whatever the fast path answers, the full path (under the lock)
        /// answers the same, with the same registers and PC after, and
        /// goes back into the same vCPU; what it declines, it leaves as it
        /// found it.
        #[test]
        fn fuzz_fast_exits_match_the_full_path(
            esr in esr(),
            x0 in function(),
            regs in proptest::array::uniform30(any::<u64>()),
            irq in proptest::bool::weighted(0.1),
        ) {
            let mut hv = boot(vec![(vm("fast", 0x8000_0000, b""), vec![])]);
            take_lines();
            let ctx = hv.vcpus[0].ctx.as_mut().unwrap();
            ctx.regs[0] = x0;
            ctx.regs[1..].copy_from_slice(&regs);
            let before = (**ctx).clone();
            let exit = RawExit {
                kind: if irq { ExitKind::Irq } else { ExitKind::Sync },
                esr,
                far: 0,
                hpfar: 0,
            };
            let mut fast = before.clone();
            if exit::handle_fast::<TestVgic>(&mut fast, &exit, None) == exit::Fast::Done {
                let next = hv.handle_exit(CpuId(0), VcpuId(0), exit);
                prop_assert!(matches!(next, exit::Next::Resume));
                prop_assert_eq!(hv.vcpus[0].ctx.as_deref(), Some(&fast));
                prop_assert_eq!(take_lines(), Vec::<String>::new());
            } else {
                prop_assert_eq!(fast, before);
            }
        }

        /// A load or store in or near the distributor frame, answered by
        /// the fast path under the vGIC's lock alone, leaves the registers,
        /// the PC, the vGIC and the vCPUs to kick as the full path under
        /// the hypervisor's lock does; what it declines, it leaves as it
        /// found it.
        #[test]
        fn fuzz_fast_distributor_accesses_match_the_full_path(
            offset in prop_oneof![Just(0xf00), 0i64..0x1000, -0x100i64..0x1100].prop_map(|o| o as u64),
            store in any::<bool>(),
            size in 0u64..4,
            register in prop_oneof![Just(0u64), 0u64..32],
            sign_extend in any::<bool>(),
            wide in any::<bool>(),
            isv in proptest::bool::weighted(0.9),
            regs in proptest::array::uniform30(any::<u64>()),
            enable in any::<bool>(),
        ) {
            let boot_one = || boot(vec![(vm("fast", 0x8000_0000, b""), vec![])]);
            let (mut fast_hv, mut full_hv) = (boot_one(), boot_one());
            take_lines();
            let ipa = abi::GUEST_GICD_BASE.wrapping_add(offset);
            let esr = u64::from(trap::EC_DABT_LOWER) << 26
                | 1 << 25
                | u64::from(isv) << 24
                | size << 22
                | u64::from(sign_extend) << 21
                | register << 16
                | u64::from(wide) << 15
                | u64::from(store) << 6;
            let exit = RawExit {
                kind: ExitKind::Sync,
                esr,
                far: ipa & 0xfff,
                hpfar: (ipa >> 12) << 4,
            };
            for hv in [&mut fast_hv, &mut full_hv] {
                let ctx = hv.vcpus[0].ctx.as_mut().unwrap();
                ctx.regs[1..].copy_from_slice(&regs);
                // The test vGIC raises an interrupt on 1 at 0xf00.
                ctx.regs[0] = u64::from(enable);
            }
            let mut fast = (**fast_hv.vcpus[0].ctx.as_ref().unwrap()).clone();
            let before = fast.clone();
            let vgic = Some((fast_hv.vms[0].vgic, 0));
            match exit::handle_fast(&mut fast, &exit, vgic) {
                exit::Fast::No => {
                    prop_assert_eq!(&fast, &before);
                    prop_assert!(!(isv && fast_hv.vms[0].vgic.claims(ipa)));
                    return Ok(());
                }
                exit::Fast::Done => {}
                exit::Fast::Kick(effects) => {
                    fast_hv.kick(VcpuId(0), effects);
                }
            }
            let next = full_hv.handle_exit(CpuId(0), VcpuId(0), exit);
            prop_assert!(matches!(next, exit::Next::Resume));
            prop_assert_eq!(full_hv.vcpus[0].ctx.as_deref(), Some(&fast));
            let (a, b) = (fast_hv.vms[0].vgic.lock(), full_hv.vms[0].vgic.lock());
            prop_assert_eq!(&a.registers, &b.registers);
            prop_assert_eq!(&a.pending, &b.pending);
            // The full path looks at the list registers after any vGIC
            // write; the fast one only when something became pending.
            prop_assert_eq!(fast_hv.vcpus[0].irq_dirty, !a.pending.is_empty());
            prop_assert!(!fast_hv.vcpus[0].irq_dirty || full_hv.vcpus[0].irq_dirty);
        }
    }
}

/// What a VM's RAM held before (another VM's or the firmware's data): the
/// first bytes of each page are enough to see it.
const JUNK: [u8; 16] = [0xa5; 16];

/// No page `vcpu`'s VM's stage 2 maps still holds the junk put there.
fn assert_mapped_ram_clean(hv: &Hypervisor<Mock, Fifo, TestVgic>, vcpu: VcpuId) {
    let vm = &hv.vms[hv.vm_of(vcpu)];
    let ram = vm.ram;
    for offset in (0..ram.size()).step_by(4096) {
        let ipa = ram.ipa_base + offset;
        let Some(pa) = vm.stage2.translate(ipa) else {
            continue;
        };
        assert_eq!(pa, ram.pa_base + offset);
        let mut first = [0; 16];
        hv.platform
            .ram
            .read_guest(ram.slice(ipa, 16).unwrap(), &mut first);
        assert_ne!(
            first, JUNK,
            "VM {} runs with old data mapped at IPA {ipa:#x}",
            vm.config.name
        );
    }
}

#[test]
fn a_thousand_small_vms_each_sleep_wake_exit_and_own_three_tables() {
    const VMS: usize = 1024;
    const RAM: u64 = 64 << 10;
    let vms = (0..VMS)
        .map(|i| {
            let name: &'static str = Box::leak(format!("t{i}").into_boxed_str());
            let mut vm = vm(name, 0x8000_0000 + i as u64 * RAM, b"");
            vm.config.ram.size = RAM;
            // Deadlines out of order, so the heap, not the VM order, wakes them.
            let timer_in = 1_000 + (i as u64 * 7919) % 5_000;
            let script = vec![
                Step::Wfi {
                    timer_in: Some(timer_in),
                },
                Step::Hvc(EXIT, 0, 0),
            ];
            (vm, script)
        })
        .collect();
    let mut hv = boot(vms);
    assert_eq!(hv.vm_count(), VMS);
    // Root, level 2 and level 3 of the RAM each; the GIC frame's shared.
    assert_eq!(hv.stage2_tables(), 3 * VMS);
    hv.run();
    let lines = take_lines();
    for i in 0..VMS {
        let exited = format!("[hv] VM t{i} exited (code 0) ");
        assert!(
            lines.iter().any(|l| l.starts_with(&exited)),
            "VM t{i} did not exit with 0"
        );
    }
    let report = hv.exit_report();
    assert_eq!((report.vms, report.ran), (VMS, VMS));
    assert!(report.least > 0 && report.least <= report.most);
    assert!(report
        .to_string()
        .starts_with("exit report: 1024 VMs, 1024 got CPU (least "));
    assert_eq!(hv.running_vms(), 0);
}

#[test]
fn no_vm_runs_on_ram_not_cleared_and_ram_is_cleared_as_it_is_reached() {
    // Three blocks each: the image's, one between, the start info's. The
    // first and last are the guest's 64 KiB at a time.
    const MIB6: u64 = 6 << 20;
    const GROUP: u64 = 64 << 10;
    let block1 = GUEST_RAM_BASE + MIB2 as u64 + 0x100;
    let group5 = GUEST_RAM_BASE + 5 * GROUP + 8;
    let mut a = vm("a", 0x8000_0000, b"hi\n");
    let mut b = vm("b", 0x8060_0000, b"hey\n");
    a.config.ram.size = MIB6;
    b.config.ram.size = MIB6;
    log::set_sink(&CaptureSink);
    take_lines();
    let mut mock = Mock::default();
    // What the RAM held before the hypervisor started.
    for pa in [0x8000_0000, 0x8060_0000] {
        for offset in (0..MIB6).step_by(4096) {
            let at = crate::memory::GuestRam::new(0, pa + offset, 16).all();
            mock.ram.write_guest(at, &JUNK);
        }
    }
    let scripts = [
        vec![
            Step::Hvc(WRITE, GUEST_RAM_BASE, 3),
            // RAM it never touched: not its yet, not readable for it.
            Step::Hvc(WRITE, block1, 4),
            // It touches it: a translation fault, that block cleared and
            // mapped, the same access again.
            dabt(block1, 0),
            Step::Hvc(WRITE, block1, 4),
            // A group of its first block it had not touched.
            Step::Hvc(WRITE, group5, 4),
            dabt(group5, 0),
            Step::Hvc(WRITE, group5, 4),
            Step::Hvc(EXIT, 0, 0),
        ],
        vec![Step::Hvc(WRITE, GUEST_RAM_BASE, 4), Step::Hvc(EXIT, 0, 0)],
    ];
    for script in scripts {
        mock.scripts.push(script.into());
        mock.results.push(Vec::new());
    }
    let mut hv = build(mock, vec![a, b], 1);
    let mut zeroed = 0;
    let mut pcs = vec![Vec::new(); 2];
    loop {
        match hv.next_work(CpuId(0)) {
            Work::Zero(vcpu, piece) => {
                hv.platform.zero_guest(piece);
                zeroed += piece.len();
                hv.after_zero(CpuId(0), vcpu);
            }
            Work::Run(vcpu, mut ctx) => {
                assert_mapped_ram_clean(&hv, vcpu);
                pcs[vcpu.0 as usize].push(ctx.pc);
                let exit = hv.platform.run(&mut ctx);
                hv.after_run(CpuId(0), vcpu, ctx, exit);
            }
            Work::Device(_) | Work::Idle => panic!("nothing waits"),
            Work::Finished => break,
        }
    }
    assert_eq!((pcs[0].len(), pcs[1].len()), (8, 2));
    // a's faults were not stepped over: it ran again at the same address.
    assert_eq!(pcs[0][2], pcs[0][3]);
    assert_eq!(pcs[0][5], pcs[0][6]);
    // Each VM's image and start-info groups (but the image) were cleared
    // at boot; then, as work, the block and the group a reached, not the
    // block b never did.
    assert_eq!(zeroed, MIB2 as u64 + GROUP);
    let results = &hv.platform().results[0];
    // (x0 as each run began: a fault leaves the refusal there.)
    let refused = Error::InvalidAddress as i64;
    assert_eq!(results[1..], [3, refused, refused, 4, refused, refused, 4]);
    let lines = take_lines();
    assert!(lines.iter().any(|l| l == "[a] hi"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "[b] hey"), "{lines:?}");
}
