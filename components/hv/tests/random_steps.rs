//! Random steps: the core driven by random sequences of guest exits
//! (hypercalls and PSCI calls with random and edge arguments, distributor
//! accesses, WFI/WFE, timer, kick and maintenance interrupts, unknown traps,
//! a level-triggered device's accesses and its line changing on its own,
//! the work it asks for, served without the lock over later steps) on 1 to
//! 4 CPUs, with every scheduler and both virtual GICs. After each step: no
//! panic, no vCPU on two CPUs at once, no VM's RAM cleared while its
//! device's work is out; at the end every VM runs or was stopped with a
//! message saying why.
//!
//! `cargo xtask test` runs a fixed budget of cases with a fixed seed;
//! `cargo xtask fuzz` runs many more with a fresh one.

use abi::{GUEST_GICD_BASE, GUEST_GICR_BASE, GUEST_RAM_BASE};
use config::boot::VmTable;
use config::vm::{Region, TimeWindow, VmConfig, DEFAULT_WEIGHT};
use hv::{
    core::Work,
    device::{Signal, Window},
    log,
    memory::{GuestMemory, GuestSlice, SparseRam},
    platform::{Cpu as CpuOps, PhysicalIrq, Timer},
    sched::{CpuId, Scheduler, VcpuId},
    vgic::{Effects, Flushed, ListReg, VirtualInterface},
    ExitKind, GuestWidth, Hypervisor, RawExit, VcpuRegs, Vgic,
};
use proptest::prelude::*;
use std::{
    cell::{Cell, RefCell},
    rc::Rc,
};

const MIB2: u64 = 2 << 20;
const TIMER_IRQ: u32 = 26;
const GUEST_TIMER_IRQ: u32 = 27;
const MAINTENANCE_IRQ: u32 = 25;
const KICK_IRQ: u32 = 0;
const VM_NAMES: [&str; 3] = ["vm0", "vm1", "vm2"];
/// Each VM's level-triggered device, and the SPI it drives.
const DEVICE_BASE: u64 = 0x0900_0000;
const DEVICE_SPI: u32 = 33;

/// A level-triggered device: a write sets its line to the value's bit 0,
/// a read drops it. A write with bit 1 set asks for work, which writes its
/// VM's RAM and raises the line.
struct Line(bool);

/// Where [`Line`]'s work writes, in its VM's RAM.
const WORK_IPA: u64 = GUEST_RAM_BASE + 0x2000;

impl hv::device::MmioDevice for Line {
    fn read(&mut self, _: usize, _: u64, _: u8) -> u64 {
        self.0 = false;
        0
    }
    fn write(&mut self, _: usize, _: u64, _: u8, value: u64) -> Signal {
        self.0 = value & 1 != 0;
        Signal {
            raise: false,
            level: Some(self.0),
            work: value & 2 != 0,
            ..Signal::default()
        }
    }
    fn work(&mut self, backing: hv::device::Backing<'_>) -> Signal {
        if let Ok(to) = backing.ram.slice(WORK_IPA, 8) {
            backing.memory.write_guest(to, b"workdone");
        }
        self.0 = true;
        Signal {
            level: Some(true),
            ..Signal::default()
        }
    }
    fn irq(&self) -> Option<u32> {
        Some(DEVICE_SPI)
    }
    fn level(&self) -> Option<bool> {
        Some(self.0)
    }
}

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

struct Ctx {
    regs: [u64; 31],
    pc: u64,
}

impl VcpuRegs for Ctx {
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

/// One physical CPU as the simulation keeps it.
#[derive(Default, Clone)]
struct Cpu {
    pending: Vec<u32>,
    deadline: Option<u64>,
    guest_timer: Option<u64>,
    guest_timer_masked: bool,
}

/// Every CPU's hardware; calls act on the CPU `current` names, as a real
/// platform acts on the CPU it runs on.
struct Sim {
    ram: SparseRam,
    now: u64,
    current: Rc<Cell<usize>>,
    cpus: Vec<Cpu>,
    /// Each VM's device work is out (a CPU serves it without the lock).
    work_out: Vec<bool>,
    /// RAM of a VM with its device's work out was cleared (which VM).
    cleared_under_work: Option<usize>,
}

impl Sim {
    fn cpu(&mut self) -> &mut Cpu {
        &mut self.cpus[self.current.get()]
    }
}

/// The virtual CPU interface of the simulated CPUs: four list registers
/// each, on the CPU the simulation says is current.
struct SimInterface {
    current: Rc<Cell<usize>>,
    lrs: Vec<[ListReg; 4]>,
}

impl VirtualInterface for SimInterface {
    type CpuState = ();
    fn lr_count(&self) -> usize {
        4
    }
    fn guest_cpu_interface(&self) -> Option<(u64, u64)> {
        Some((0x0804_0000, 0x2000))
    }
    fn write_lrs(&mut self, lrs: &[ListReg], _: bool) {
        self.lrs[self.current.get()].copy_from_slice(lrs);
    }
    fn read_lrs(&mut self, lrs: &mut [ListReg]) {
        lrs.copy_from_slice(&self.lrs[self.current.get()]);
    }
    fn load(&mut self, _: &()) {}
    fn put(&mut self, _: &mut ()) {}
}

/// A real vGIC model on the simulated interface.
struct Simulated<V>(V);

impl<V: Vgic> Vgic for Simulated<V> {
    type Interface = SimInterface;
    fn new(vcpus: usize) -> Self {
        Simulated(V::new(vcpus))
    }
    fn windows(&self) -> Vec<hv::device::Window> {
        self.0.windows()
    }
    fn read(&mut self, vcpu: usize, ipa: u64, width: u8) -> u64 {
        self.0.read(vcpu, ipa, width)
    }
    fn write(&mut self, vcpu: usize, ipa: u64, width: u8, value: u64) -> Effects {
        self.0.write(vcpu, ipa, width, value)
    }
    fn write_sgi1r(&mut self, vcpu: usize, value: u64) -> Effects {
        self.0.write_sgi1r(vcpu, value)
    }
    fn raise(&mut self, vcpu: usize, intid: u32) -> Effects {
        self.0.raise(vcpu, intid)
    }
    fn flush(&mut self, vcpu: usize, lrs: &mut [ListReg]) -> Flushed {
        self.0.flush(vcpu, lrs)
    }
    fn sync(&mut self, vcpu: usize, lrs: &mut [ListReg]) -> Effects {
        self.0.sync(vcpu, lrs)
    }
    fn set_level(&mut self, vcpu: usize, intid: u32, level: bool) -> Effects {
        self.0.set_level(vcpu, intid, level)
    }
    fn release_lrs(&mut self, vcpu: usize) -> Effects {
        self.0.release_lrs(vcpu)
    }
    fn has_pending(&self, vcpu: usize) -> bool {
        self.0.has_pending(vcpu)
    }
    fn in_flight(&self, vcpu: usize, intid: u32) -> bool {
        self.0.in_flight(vcpu, intid)
    }
}

impl GuestMemory for Sim {
    fn read_guest(&self, from: GuestSlice, buf: &mut [u8]) {
        self.ram.read_guest(from, buf);
    }
    fn write_guest(&mut self, to: GuestSlice, bytes: &[u8]) {
        self.ram.write_guest(to, bytes);
    }
    fn zero_guest(&mut self, to: GuestSlice) {
        let vm = ((to.pa() - 0x8000_0000) / MIB2) as usize;
        if self.work_out.get(vm) == Some(&true) {
            self.cleared_under_work = Some(vm);
        }
        self.ram.zero_guest(to);
    }
}

impl CpuOps for Sim {
    type Context = Ctx;
    fn new_context(&self, entry: u64, arg0: u64, _: u32, _: GuestWidth) -> Ctx {
        let mut regs = [0; 31];
        regs[0] = arg0;
        Ctx { regs, pc: entry }
    }
    fn vcpu_load(&mut self, _: &Ctx, _: u64) {}
    fn vcpu_put(&mut self, _: &mut Ctx) {}
    fn run(&mut self, _: &mut Ctx) -> RawExit {
        unreachable!("the test makes the exits")
    }
    fn flush_guest_tlbs(&mut self) {}
    fn vmid_bits(&self) -> u32 {
        8
    }
    fn sync_guest_memory(&mut self, _: GuestSlice) {}
}

impl Timer for Sim {
    fn counter(&self) -> u64 {
        self.now
    }
    fn counter_frequency(&self) -> u64 {
        1_000_000
    }
    fn set_deadline(&mut self, deadline: Option<u64>) {
        self.cpu().deadline = deadline;
    }
    fn timer_irq(&self) -> u32 {
        TIMER_IRQ
    }
    fn guest_timer_irq(&self) -> u32 {
        GUEST_TIMER_IRQ
    }
    fn mask_guest_timer(&mut self, masked: bool) {
        self.cpu().guest_timer_masked = masked;
    }
    fn guest_timer_deadline(&self) -> Option<u64> {
        let cpu = &self.cpus[self.current.get()];
        cpu.guest_timer.filter(|_| !cpu.guest_timer_masked)
    }
}

impl hv::platform::ConsoleInput for Sim {
    fn read_console(&mut self, _: &mut [u8]) -> usize {
        0
    }
}

impl PhysicalIrq for Sim {
    fn kick_cpu(&mut self, cpu: CpuId) {
        self.cpus[cpu.0 as usize].pending.push(KICK_IRQ);
    }
    fn kick_irq(&self) -> u32 {
        KICK_IRQ
    }
    fn wait_for_interrupt(&mut self) {}
    fn ack_irq(&mut self) -> Option<u32> {
        let pending = &mut self.cpu().pending;
        (!pending.is_empty()).then(|| pending.remove(0))
    }
    fn end_irq(&mut self, _: u32) {}
    fn maintenance_irq(&self) -> u32 {
        MAINTENANCE_IRQ
    }
}

/// An argument a guest might pass: edge values, its own RAM's edges, or
/// anything.
fn arg() -> impl Strategy<Value = u64> {
    let ram_end = GUEST_RAM_BASE + MIB2;
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(2),
        Just(u64::MAX),
        Just(u64::from(u32::MAX)),
        Just(GUEST_RAM_BASE),
        Just(GUEST_RAM_BASE + 0x100),
        Just(ram_end - 4),
        Just(ram_end),
        Just(ram_end - 1),
        0u64..4,
        any::<u64>(),
    ]
}

const PSCI_CPU_ON: u64 = 0xc400_0003;
const PSCI_CPU_OFF: u64 = 0x8400_0002;
const PSCI_SYSTEM_RESET: u64 = 0x8400_0009;

/// x0..x3 of a call: mostly what keeps a VM alive and busy (the ABI's calls,
/// PSCI CPU_ON of a sibling at a good entry point, CPU_OFF, SYSTEM_RESET), some
/// near misses and anything at all, and rarely what ends it.
fn call_registers() -> impl Strategy<Value = [u64; 4]> {
    let ram_end = GUEST_RAM_BASE + MIB2;
    let entry = prop_oneof![4 => Just(GUEST_RAM_BASE + 0x100), 1 => arg()];
    prop_oneof![
        6 => ((0u64..3).prop_map(|n| 0xc600_0000 + [0, 1, 2][n as usize]), arg(), arg())
            .prop_map(|(f, a, b)| [f, a, b, 0]),
        // CHANNEL_NOTIFY: each VM has channels 0 and 1 (a ring), or none.
        3 => (prop_oneof![4 => 0u64..3, 1 => arg()], arg())
            .prop_map(|(index, b)| [abi::HC_CHANNEL_NOTIFY, index, b, 0]),
        1 => (arg(), arg()).prop_map(move |(a, b)| [abi::HC_CONSOLE_WRITE, a.min(ram_end), b % 64, 0]),
        12 => (prop_oneof![Just(PSCI_CPU_ON), Just(0x8400_0003)], 0u64..3, entry, arg())
            .prop_map(|(f, target, entry, context)| [f, target, entry, context]),
        2 => Just([PSCI_CPU_OFF, 0, 0, 0]),
        5 => Just([PSCI_SYSTEM_RESET, 0, 0, 0]),
        2 => (prop::sample::select(vec![0x8400_0000u64, 0x8400_0004, 0xc400_0004, 0x8400_0006, 0x8400_000a]), arg(), arg())
            .prop_map(|(f, a, b)| [f, a, b, 0]),
        2 => ((0u64..0x20).prop_map(|n| 0x8400_0000 | n), arg(), arg(), arg())
            .prop_map(|(f, a, b, c)| [f, a, b, c]),
        2 => (any::<u64>(), arg(), arg(), arg()).prop_map(|(f, a, b, c)| [f, a, b, c]),
        // The ends: VM_EXIT and SYSTEM_OFF.
        1 => prop_oneof![Just([abi::HC_VM_EXIT, 3, 0, 0]), Just([0x8400_0008, 0, 0, 0])],
    ]
}

#[derive(Clone, Debug)]
enum Exit {
    /// HVC #imm (or SMC) with x0..x3.
    Call {
        smc: bool,
        imm: u16,
        x: [u64; 4],
    },
    /// A trapped access of `1 << size` bytes at `ipa` through register `reg`.
    Mmio {
        ipa: u64,
        size: u8,
        write: bool,
        reg: u8,
        value: u64,
    },
    /// ICC_SGI1R_EL1 written from `reg` (GICv3).
    Sgi1r {
        reg: u8,
        value: u64,
    },
    Wfx {
        wfe: bool,
        timer_in: Option<u64>,
    },
    Irq(u32),
    /// Any other syndrome.
    Trap {
        esr: u32,
    },
    /// Not an exit: VM `vm`'s device drives its line to `level` by itself
    /// (as input arriving).
    Line {
        vm: usize,
        level: bool,
    },
}

fn exit() -> impl Strategy<Value = Exit> {
    let call = (
        any::<bool>(),
        prop_oneof![20 => Just(0u16), 1 => any::<u16>()],
        call_registers(),
    )
        .prop_map(|(smc, imm, x)| Exit::Call { smc, imm, x });
    let gic_window = prop_oneof![
        10 => (0u64..0x1_0000).prop_map(|o| GUEST_GICD_BASE + o),
        10 => (0u64..0x8_0000).prop_map(|o| GUEST_GICR_BASE + o),
        1 => any::<u64>().prop_map(|a| a & 0x7f_ffff_ffff),
        4 => (0u64..0x1000).prop_map(|o| DEVICE_BASE + o),
    ];
    let mmio = (gic_window, 0u8..4, any::<bool>(), 0u8..32, arg()).prop_map(
        |(ipa, size, write, reg, value)| Exit::Mmio {
            ipa,
            size,
            write,
            reg,
            value,
        },
    );
    prop_oneof![
        40 => call,
        15 => mmio,
        3 => (0u8..32, any::<u64>()).prop_map(|(reg, value)| Exit::Sgi1r { reg, value }),
        8 => (any::<bool>(), prop::option::of(0u64..5_000))
            .prop_map(|(wfe, timer_in)| Exit::Wfx { wfe, timer_in }),
        10 => prop::sample::select(vec![TIMER_IRQ, GUEST_TIMER_IRQ, MAINTENANCE_IRQ, KICK_IRQ, 1023])
            .prop_map(Exit::Irq),
        1 => any::<u32>().prop_map(|esr| Exit::Trap { esr }),
        3 => (0usize..4, any::<bool>()).prop_map(|(vm, level)| Exit::Line { vm, level }),
        // A write that asks the device for work (a virtqueue notify).
        4 => (0u64..2).prop_map(|level| Exit::Mmio {
            ipa: DEVICE_BASE,
            size: 2,
            write: true,
            reg: 1,
            value: 2 | level,
        }),
    ]
}

/// One step: on `cpu`, take the next work or let the guest there exit.
#[derive(Clone, Debug)]
struct Step {
    cpu: usize,
    advance: u64,
    exit: Exit,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0usize..4, 0u64..3_000, exit()).prop_map(|(cpu, advance, exit)| Step {
            cpu,
            advance,
            exit,
        }),
        20..400,
    )
}

/// The VMs: vCPU counts, each 1..=3.
fn layout() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(1u32..=3, 1..=3)
}

/// Makes `exit` happen in `ctx` on the simulated CPU: registers as the
/// guest left them, then the syndrome.
fn make_exit(sim: &mut Sim, ctx: &mut Ctx, exit: &Exit) -> RawExit {
    let sync = |esr: u64| RawExit {
        kind: ExitKind::Sync,
        esr,
        far: 0,
        hpfar: 0,
    };
    match *exit {
        Exit::Call { smc, imm, x } => {
            ctx.regs[..4].copy_from_slice(&x);
            if smc {
                sync(0x17 << 26 | 1 << 25)
            } else {
                ctx.pc += 4;
                sync(0x16 << 26 | 1 << 25 | u64::from(imm))
            }
        }
        Exit::Mmio {
            ipa,
            size,
            write,
            reg,
            value,
        } => {
            if reg < 31 {
                ctx.regs[reg as usize] = value;
            }
            let esr = 0x24 << 26
                | 1 << 25
                | 1 << 24
                | u64::from(size) << 22
                | u64::from(reg) << 16
                | u64::from(size == 3) << 15
                | u64::from(write) << 6
                | 0x07;
            RawExit {
                kind: ExitKind::Sync,
                esr,
                far: ipa,
                hpfar: (ipa >> 12) << 4,
            }
        }
        Exit::Sgi1r { reg, value } => {
            if reg < 31 {
                ctx.regs[reg as usize] = value;
            }
            // MSR ICC_SGI1R_EL1 (op0 3, op1 0, CRn 12, CRm 11, op2 5).
            sync(
                0x18 << 26 | 1 << 25 | 3 << 20 | 5 << 17 | 12 << 10 | u64::from(reg) << 5 | 11 << 1,
            )
        }
        Exit::Wfx { wfe, timer_in } => {
            let now = sim.now;
            sim.cpu().guest_timer = timer_in.map(|t| now + t);
            sync(0x01 << 26 | 1 << 25 | u64::from(wfe))
        }
        Exit::Irq(intid) => {
            let cpu = sim.cpu();
            if intid == TIMER_IRQ {
                let deadline = cpu.deadline.unwrap_or(0);
                sim.now = sim.now.max(deadline);
            }
            sim.cpu().pending.push(intid);
            RawExit {
                kind: ExitKind::Irq,
                esr: 0,
                far: 0,
                hpfar: 0,
            }
        }
        Exit::Trap { esr } => RawExit {
            kind: ExitKind::Sync,
            esr: u64::from(esr),
            far: u64::from(esr).rotate_left(12),
            hpfar: u64::from(esr) << 4,
        },
        Exit::Line { .. } => unreachable!("not an exit"),
    }
}

/// Builds the VMs, runs `steps`, and checks the invariants.
/// VM `i`'s channels when `n` VMs form a ring: it writes channel `i` to
/// the next VM and reads channel `i - 1` from the previous one (none alone).
fn ring_channels(i: usize, n: usize) -> Vec<config::vm::ChannelEnd<'static>> {
    if n < 2 {
        return Vec::new();
    }
    let end = |channel: usize, writer: bool, peer: usize, intid: u32| {
        let at = channel as u64 * 0x2000;
        config::vm::ChannelEnd {
            name: format!("c{channel}").into(),
            writer,
            data: Region {
                base: 0x9000_1000 + at,
                size: 0x1000,
            },
            data_ipa: 0x1000_1000 + at,
            state: 0x9000_0000 + at,
            state_ipa: 0x1000_0000 + at,
            intid,
            peer: peer as u32,
        }
    };
    let (next, previous) = ((i + 1) % n, (i + n - 1) % n);
    vec![end(i, true, next, 64), end(previous, false, previous, 65)]
}

fn run<S: Scheduler, V: Vgic>(
    cpus: usize,
    vcpus: &[u32],
    steps: &[Step],
) -> Result<(), TestCaseError> {
    log::set_sink(&CaptureSink);
    LINES.with(|l| l.borrow_mut().clear());
    let mut first_cpu = 0;
    let vms = vcpus
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            // The static scheduler wants a CPU per vCPU: pin them in turn.
            let cpu = first_cpu % cpus as u32;
            first_cpu += n;
            VmConfig {
                name: VM_NAMES[i].into(),
                guest: "random".into(),
                cmdline: "".into(),
                vcpus: n,
                width: GuestWidth::Aarch64,
                ram: Region {
                    base: 0x8000_0000 + i as u64 * MIB2,
                    size: MIB2,
                },
                image: 0,
                weight: DEFAULT_WEIGHT,
                cap_percent: if i == 1 { 50 } else { 0 },
                cpu: Some(cpu),
                linux: None,
                devices: Vec::new(),
                channels: ring_channels(i, vcpus.len()),
            }
        })
        .collect();
    let windows = (0..vcpus.len() as u32)
        .map(|vm| TimeWindow {
            vm,
            length_us: 1000,
        })
        .collect();
    let current = Rc::new(Cell::new(0));
    let sim = Sim {
        ram: SparseRam::default(),
        now: 0,
        current: current.clone(),
        cpus: vec![Cpu::default(); cpus],
        work_out: vec![false; vcpus.len()],
        cleared_under_work: None,
    };
    let vif = SimInterface {
        current,
        lrs: vec![[ListReg::default(); 4]; cpus],
    };
    let mut hv: Hypervisor<Sim, S, Simulated<V>> = Hypervisor::new(
        sim,
        vif,
        VmTable { vms, windows },
        &[b"hello\n"],
        vcpus
            .iter()
            .map(|_| {
                let line: Box<dyn hv::device::MmioDevice> = Box::new(Line(false));
                Ok(vec![(Window::new(DEVICE_BASE, 0x1000), line)])
            })
            .collect(),
        cpus as u32,
        500,
    );
    let mut held: Vec<Option<(VcpuId, Box<Ctx>)>> = (0..cpus).map(|_| None).collect();
    // The device work each CPU has out, and whose VM it is; the vCPU
    // that last exited on each CPU.
    let mut jobs: Vec<Option<(Box<hv::core::DeviceJob>, usize)>> =
        (0..cpus).map(|_| None).collect();
    let mut last_exit: Vec<Option<VcpuId>> = vec![None; cpus];
    let vm_of = |vcpu: VcpuId| {
        let mut first = 0;
        vcpus
            .iter()
            .position(|&n| {
                first += n;
                vcpu.0 < first
            })
            .expect("a built vCPU")
    };
    for step in steps {
        let cpu = step.cpu % cpus;
        if let Exit::Line { vm, level } = step.exit {
            let signal = Signal {
                raise: false,
                level: Some(level),
                ..Signal::default()
            };
            hv.device_signal(vm, 0, signal);
            continue;
        }
        let sim = hv.platform();
        sim.now += step.advance;
        sim.current.set(cpu);
        if let Some((mut job, vm)) = jobs[cpu].take() {
            job.run(hv.platform());
            hv.platform().work_out[vm] = false;
            hv.after_device(CpuId(cpu as u32), *job);
            continue;
        }
        match held[cpu].take() {
            Some((vcpu, mut ctx)) => {
                let exit = make_exit(hv.platform(), &mut ctx, &step.exit);
                last_exit[cpu] = Some(vcpu);
                hv.after_run(CpuId(cpu as u32), vcpu, ctx, exit);
            }
            None => match hv.next_work(CpuId(cpu as u32)) {
                Work::Device(job) => {
                    let vm = vm_of(last_exit[cpu].expect("a vCPU exited here"));
                    hv.platform().work_out[vm] = true;
                    jobs[cpu] = Some((job, vm));
                }
                Work::Run(vcpu, ctx) => {
                    let serving =
                        (0..cpus).any(|c| jobs[c].is_some() && last_exit[c] == Some(vcpu));
                    prop_assert!(!serving, "{vcpu:?} runs while its CPU serves its device");
                    let elsewhere = held.iter().flatten().any(|(v, _)| *v == vcpu);
                    prop_assert!(
                        !elsewhere,
                        "{vcpu:?} handed to CPU {cpu} while another CPU runs it"
                    );
                    held[cpu] = Some((vcpu, ctx));
                }
                Work::Zero(vcpu, chunk) => {
                    let elsewhere = held.iter().flatten().any(|(v, _)| *v == vcpu);
                    prop_assert!(
                        !elsewhere,
                        "{vcpu:?} clears RAM on CPU {cpu} while another CPU runs it"
                    );
                    let sim = hv.platform();
                    sim.zero_guest(chunk);
                    hv.after_zero(CpuId(cpu as u32), vcpu);
                }
                Work::Idle => {
                    // Whatever woke the CPU: its timer, a kick, or nothing.
                    let sim = hv.platform();
                    if let (Exit::Irq(_), Some(deadline)) = (&step.exit, sim.cpu().deadline) {
                        sim.now = sim.now.max(deadline);
                        sim.cpu().pending.push(TIMER_IRQ);
                    }
                    hv.after_idle(CpuId(cpu as u32));
                }
                Work::Finished => {}
            },
        }
    }
    let cleared = hv.platform().cleared_under_work;
    prop_assert!(
        cleared.is_none(),
        "VM {cleared:?}'s RAM cleared while its device's work was out"
    );
    let lines = LINES.with(|l| l.borrow().clone());
    // A scheduler that broke its protocol (picked a vCPU it does not hold)
    // is caught by the core and reported as the hypervisor's error.
    let errors: Vec<_> = lines.iter().filter(|l| l.contains("error: ")).collect();
    prop_assert!(errors.is_empty(), "hypervisor errors: {:#?}", errors);
    let ended = |name: &str| {
        lines.iter().any(|l| {
            l.starts_with(&format!("[hv] VM {name} exited"))
                || l.starts_with(&format!("[hv] VM {name} powered off"))
                || l.starts_with(&format!("[hv] VM {name} stopped: "))
        })
    };
    let stopped = VM_NAMES[..vcpus.len()]
        .iter()
        .filter(|name| ended(name))
        .count();
    prop_assert_eq!(
        stopped + hv.running_vms(),
        vcpus.len(),
        "every VM runs, or was stopped with a message: {:#?}",
        lines
    );
    Ok(())
}

fn config() -> ProptestConfig {
    // A fixed budget in `cargo xtask test`; PROPTEST_CASES runs more.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok());
    ProptestConfig {
        cases: cases.unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

macro_rules! random_steps {
    ($($name:ident: $sched:ty, $vgic:ty;)*) => {$(
        proptest! {
            #![proptest_config(config())]
            #[test]
            fn $name(cpus in 1usize..=4, vcpus in layout(), steps in steps()) {
                run::<$sched, $vgic>(cpus, &vcpus, &steps)?;
            }
        }
    )*};
}

random_steps! {
    fuzz_random_steps_rr_gicv2: sched_rr::RoundRobin, vgic_v2::VgicV2;
    fuzz_random_steps_rr_gicv3: sched_rr::RoundRobin, vgic_v3::VgicV3;
    fuzz_random_steps_credit_gicv2: sched_credit::Credit, vgic_v2::VgicV2;
    fuzz_random_steps_credit_gicv3: sched_credit::Credit, vgic_v3::VgicV3;
    fuzz_random_steps_arinc653_gicv2: sched_arinc653::Arinc653, vgic_v2::VgicV2;
    fuzz_random_steps_arinc653_gicv3: sched_arinc653::Arinc653, vgic_v3::VgicV3;
}

/// The static scheduler needs a CPU for every vCPU.
fn static_layout() -> impl Strategy<Value = (usize, Vec<u32>)> {
    (1usize..=4).prop_flat_map(|cpus| {
        (
            Just(cpus),
            prop::collection::vec(1u32..=3, 1..=3).prop_filter("a CPU per vCPU", move |vcpus| {
                vcpus.iter().sum::<u32>() as usize <= cpus
            }),
        )
    })
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn fuzz_random_steps_static_gicv2((cpus, vcpus) in static_layout(), steps in steps()) {
        run::<sched_static::Static, vgic_v2::VgicV2>(cpus, &vcpus, &steps)?;
    }

    #[test]
    fn fuzz_random_steps_static_gicv3((cpus, vcpus) in static_layout(), steps in steps()) {
        run::<sched_static::Static, vgic_v3::VgicV3>(cpus, &vcpus, &steps)?;
    }
}
