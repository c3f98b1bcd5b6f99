//! The board's devices as the core uses them: the console UART, the
//! physical GIC, and the arch layer behind hv's platform traits.

use crate::arch::relax::Mutex;
use crate::arch::{self, cache, timer};
use crate::composition as c;
use crate::guest_ram;
use crate::hyp;
use hv::memory::{GuestMemory, GuestSlice};
use hv::platform::{ConsoleInput, Cpu, PhysicalIrq, PrivateIrq, Timer};
use hv::{sched::CpuId, GuestWidth, RawExit, Vgic};
use spin::Once;

/// The UART component the composition picked.
type Uart = c::Uart;

fn uart_at(base: usize) -> Uart {
    // SAFETY: `base` is the board's UART register block, identity-mapped as
    // device memory; the console instance is the only one used after boot
    // (the early message's runs before it exists).
    unsafe { Uart::at(base, c::UART_REG_SHIFT, c::UART_REG_IO_WIDTH) }
}

struct Console(Mutex<Uart>);

impl hv::log::Sink for Console {
    fn write_line(&self, line: &[u8]) {
        self.0.lock().write_bytes(line);
    }
}

static CONSOLE: Once<Console> = Once::new();

pub fn init_console() {
    let console = CONSOLE.call_once(|| {
        let mut uart = uart_at(c::UART_BASE);
        uart.init();
        Console(Mutex::new(uart))
    });
    hv::log::set_sink(console);
}

/// A message before anything is set up (wrong exception level).
pub fn early_message(_el: u64, text: &str) {
    uart_at(c::UART_BASE).write_bytes(text.as_bytes());
}

impl GuestMemory for Board {
    fn read_guest(&self, from: GuestSlice, buf: &mut [u8]) {
        guest_ram::Direct.read_guest(from, buf);
    }

    fn write_guest(&mut self, to: GuestSlice, bytes: &[u8]) {
        guest_ram::Direct.write_guest(to, bytes);
    }

    fn load_guest(&mut self, to: GuestSlice, bytes: &[u8]) {
        guest_ram::Direct.load_guest(to, bytes);
    }

    fn zero_guest(&mut self, to: GuestSlice) {
        guest_ram::Direct.zero_guest(to);
    }
}

/// The board's physical GIC: the hypervisor's own interrupts. The guests'
/// virtual CPU interface belongs to the vGIC.
pub struct Board {
    gic: c::Gic,
}

/// The SGI one CPU sends another to make it look for work.
const KICK_SGI: u32 = 0;

/// The interrupts the hypervisor takes on every CPU. Its timer outranks
/// the others: the hypervisor takes one interrupt per exit, lowest priority
/// value first, then lowest INTID; a guest that keeps one of those asserted
/// (a maintenance interrupt it provokes, kicks its siblings cause) must not
/// starve the timer that ends its time slice.
static PRIVATE_IRQS: [PrivateIrq; 4] = [
    PrivateIrq {
        intid: c::HYP_TIMER_IRQ,
        priority: 0x70,
        what: "hypervisor timer",
    },
    PrivateIrq {
        intid: c::VIRT_TIMER_IRQ,
        priority: 0x80,
        what: "guest virtual timer",
    },
    PrivateIrq {
        intid: c::MAINTENANCE_IRQ,
        priority: 0x80,
        what: "GIC maintenance",
    },
    PrivateIrq {
        intid: KICK_SGI,
        priority: 0x80,
        what: "CPU kick",
    },
];

impl Board {
    /// The board, and its GIC's virtual interface for the vGIC.
    pub fn new() -> (Board, <c::Vgic as Vgic>::Interface) {
        // SAFETY: the profile's GIC, identity-mapped as device memory by the
        // EL2 tables and used by nothing else; this runs once, at boot.
        let (gic, vif) = unsafe { c::Gic::at(&c::GIC, &PRIVATE_IRQS) };
        (Board { gic }, vif)
    }

    /// What each secondary CPU sets up for itself.
    pub fn init_this_cpu(&mut self, cpu: usize) {
        self.gic.init_this_cpu(cpu);
    }
}

/// Enters a vCPU on this CPU until it traps (outside the hypervisor lock).
pub fn run_guest(ctx: &mut arch::Context) -> RawExit {
    hyp::run(ctx)
}

impl Cpu for Board {
    type Context = arch::Context;

    fn new_context(&self, entry: u64, arg0: u64, index: u32, width: GuestWidth) -> arch::Context {
        arch::Context::new(entry, arg0, u64::from(index), width)
    }

    fn vcpu_load(&mut self, ctx: &arch::Context, vttbr: u64) {
        hyp::vcpu_load(ctx, vttbr);
    }

    fn vcpu_put(&mut self, ctx: &mut arch::Context) {
        hyp::vcpu_put(ctx);
    }

    fn run(&mut self, ctx: &mut arch::Context) -> RawExit {
        run_guest(ctx)
    }

    fn flush_guest_tlbs(&mut self) {
        cache::flush_guest_tlbs();
    }

    fn vmid_bits(&self) -> u32 {
        hyp::vmid_bits()
    }

    fn sync_guest_memory(&mut self, ram: GuestSlice) {
        cache::clean_to_poc(ram.pa() as usize, ram.len() as usize);
    }
}

impl Timer for Board {
    fn counter(&self) -> u64 {
        timer::counter()
    }

    fn counter_frequency(&self) -> u64 {
        timer::frequency()
    }

    fn set_deadline(&mut self, deadline: Option<u64>) {
        timer::set_deadline(deadline);
    }

    fn timer_irq(&self) -> u32 {
        c::HYP_TIMER_IRQ
    }

    fn guest_timer_irq(&self) -> u32 {
        c::VIRT_TIMER_IRQ
    }

    fn mask_guest_timer(&mut self, masked: bool) {
        timer::mask_guest_timer(masked);
    }

    fn guest_timer_deadline(&self) -> Option<u64> {
        timer::guest_timer_deadline()
    }
}

impl ConsoleInput for Board {
    fn read_console(&mut self, buf: &mut [u8]) -> usize {
        // Called under the hypervisor lock: never wait for a CPU that is
        // writing console output (outside that lock); look again next poll.
        let Some(mut uart) = CONSOLE.get().and_then(|console| console.0.try_lock()) else {
            return 0;
        };
        let mut n = 0;
        while n < buf.len() {
            match uart.read_byte() {
                Some(byte) => {
                    buf[n] = byte;
                    n += 1;
                }
                None => break,
            }
        }
        n
    }
}

impl PhysicalIrq for Board {
    fn kick_cpu(&mut self, cpu: CpuId) {
        self.gic.send_sgi(cpu.0, KICK_SGI);
    }

    fn kick_irq(&self) -> u32 {
        KICK_SGI
    }

    fn wait_for_interrupt(&mut self) {
        arch::wfi();
    }

    fn ack_irq(&mut self) -> Option<u32> {
        self.gic.ack()
    }

    fn end_irq(&mut self, intid: u32) {
        self.gic.end(intid);
    }

    fn maintenance_irq(&self) -> u32 {
        c::MAINTENANCE_IRQ
    }
}
