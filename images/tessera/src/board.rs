//! The board's devices as the core uses them: the console UART, the
//! physical GIC, and the arch layer behind hv's Platform trait.

use crate::composition as c;
use arch_aarch64::relax::Mutex;
use arch_aarch64::{cache, el2, timer};
use core::ptr::NonNull;
use hv::{sched::CpuId, vgic::ListReg, Platform, RawExit, VcpuRegs};
use safe_mmio::UniqueMmioPointer;
use spin::Once;

#[cfg(feature = "drv-pl011")]
type Uart = drv_pl011::Pl011<'static>;
#[cfg(feature = "drv-pl011")]
fn uart_at(base: usize) -> Uart {
    // SAFETY: `base` is the board's UART register block, identity-mapped as
    // device memory, and only this one driver instance owns it.
    let regs =
        unsafe { UniqueMmioPointer::new(NonNull::new(base as *mut drv_pl011::Registers).unwrap()) };
    drv_pl011::Pl011::new(regs)
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

/// The hypervisor's mapping of a VM's RAM.
pub fn vm_ram(base: u64, size: u64) -> &'static mut [u8] {
    // SAFETY: the composer placed each VM's RAM inside board RAM, apart from
    // the hypervisor and from every other VM, and the VM table lists each
    // region once, so this is the only reference to it. The guest writes the
    // same memory only while the hypervisor is not running on this CPU.
    unsafe { core::slice::from_raw_parts_mut(base as *mut u8, size as usize) }
}

#[cfg(feature = "gic-v2")]
mod gic {
    use super::*;
    use arm_gic::{
        gicv2::{
            registers::{Gicc, Gicd},
            GicV2, SgiTarget, SgiTargetListFilter,
        },
        IntId, InterruptGroup,
    };

    fn intid(raw: u32) -> IntId {
        match raw {
            0..16 => IntId::sgi(raw),
            16..32 => IntId::ppi(raw - 16),
            _ => IntId::spi(raw - 32),
        }
    }

    pub struct Gic {
        gic: GicV2<'static>,
        group: InterruptGroup,
        /// The interrupt being handled, as the CPU interface gave it.
        acked: Option<IntId>,
    }

    /// GICC_IAR: the INTID; above it, an SGI's source CPU.
    const INTID_MASK: u32 = 0x3ff;

    impl Gic {
        pub fn new() -> Gic {
            // SAFETY: the distributor and CPU interface of the board's GIC,
            // identity-mapped as device memory, owned only by this driver.
            // The CPU interface and the private interrupts' distributor
            // registers are banked: each CPU reaches its own through the
            // same addresses, under the hypervisor's lock.
            let gic = unsafe { GicV2::new(c::GICD_BASE as *mut Gicd, c::GICC_BASE as *mut Gicc) };
            let mut gic = Gic {
                gic,
                group: InterruptGroup::Group0,
                acked: None,
            };
            gic.init_this_cpu();
            gic
        }

        /// This CPU's interface on, its private interrupts (timers,
        /// maintenance) enabled. Run on every CPU.
        pub fn init_this_cpu(&mut self) {
            let gic = &mut self.gic;
            gic.setup();
            for (irq, what) in [
                (c::HYP_TIMER_IRQ, "hypervisor timer"),
                (c::VIRT_TIMER_IRQ, "guest virtual timer"),
                (c::MAINTENANCE_IRQ, "GIC maintenance"),
            ] {
                gic.set_interrupt_priority(intid(irq), 0x80);
                if let Err(e) = gic.enable_interrupt(intid(irq), true) {
                    hv::error!("cannot enable the {what} interrupt {irq}: {e:?}");
                }
            }
            self.group = if gic.typer().has_security_extension() {
                InterruptGroup::Group1
            } else {
                InterruptGroup::Group0
            };
        }

        /// Interrupts physical CPU `cpu` with SGI `sgi`.
        pub fn send_sgi(&mut self, cpu: u32, sgi: u32) {
            let target = SgiTarget::List {
                target_list_filter: SgiTargetListFilter::CPUTargetList,
                target_list: 1 << cpu,
            };
            self.gic.send_sgi(IntId::sgi(sgi), target);
        }

        /// The INTID of the interrupt taken. For an SGI the interface also
        /// reports the sending CPU; that full value goes back in `end`.
        pub fn ack(&mut self) -> Option<u32> {
            let iar = self.gic.get_and_acknowledge_interrupt(self.group)?;
            self.acked = Some(iar);
            Some(u32::from(iar) & INTID_MASK)
        }

        pub fn end(&mut self, intid: u32) {
            match self.acked.take() {
                Some(iar) if u32::from(iar) & INTID_MASK == intid => {
                    self.gic.end_interrupt(iar, self.group)
                }
                _ => hv::error!("end of interrupt {intid}, which was not the one taken"),
            }
        }
    }
}

/// A vCPU as this board runs it: the CPU's registers and the state of its
/// GICv2 virtual CPU interface (what the guest wrote to its GICC).
pub struct VcpuContext {
    cpu: arch_aarch64::Context,
    vmcr: u32,
    apr: u32,
}

impl VcpuRegs for VcpuContext {
    fn reg(&self, n: usize) -> u64 {
        self.cpu.reg(n)
    }
    fn set_reg(&mut self, n: usize, value: u64) {
        self.cpu.set_reg(n, value);
    }
    fn pc(&self) -> u64 {
        self.cpu.pc()
    }
    fn set_pc(&mut self, pc: u64) {
        self.cpu.set_pc(pc);
    }
}

pub struct Board {
    gic: gic::Gic,
    gich: vgic_v2::hw::Gich<'static>,
}

/// The SGI one CPU sends another to make it look for work.
const KICK_SGI: u32 = 0;

impl Board {
    pub fn new() -> Board {
        // SAFETY: the GIC's virtual interface control block, identity-mapped
        // as device memory, owned only by this driver (banked per CPU).
        let gich = unsafe {
            UniqueMmioPointer::new(
                NonNull::new(c::GICH_BASE as *mut vgic_v2::hw::GichRegisters).unwrap(),
            )
        };
        Board {
            gic: gic::Gic::new(),
            gich: vgic_v2::hw::Gich::new(gich),
        }
    }

    /// What each secondary CPU sets up for itself.
    pub fn init_this_cpu(&mut self) {
        self.gic.init_this_cpu();
    }
}

/// Enters a vCPU on this CPU until it traps (outside the hypervisor lock).
pub fn run_guest(ctx: &mut VcpuContext) -> RawExit {
    el2::run(&mut ctx.cpu)
}

impl Platform for Board {
    type Context = VcpuContext;

    fn new_context(&self, entry: u64, arg0: u64) -> VcpuContext {
        VcpuContext {
            cpu: arch_aarch64::Context::new(entry, arg0, 0),
            vmcr: 0,
            apr: 0,
        }
    }

    fn vcpu_load(&mut self, ctx: &VcpuContext, vttbr: u64) {
        el2::vcpu_load(&ctx.cpu, vttbr);
        self.gich.set_vmcr(ctx.vmcr);
        self.gich.set_apr(ctx.apr);
    }

    fn vcpu_put(&mut self, ctx: &mut VcpuContext) {
        ctx.vmcr = self.gich.vmcr();
        ctx.apr = self.gich.apr();
        el2::vcpu_put(&mut ctx.cpu);
    }

    fn kick_cpu(&mut self, cpu: CpuId) {
        self.gic.send_sgi(cpu.0, KICK_SGI);
    }

    fn kick_irq(&self) -> u32 {
        KICK_SGI
    }

    fn run(&mut self, ctx: &mut VcpuContext) -> RawExit {
        run_guest(ctx)
    }

    fn counter(&self) -> u64 {
        timer::counter()
    }

    fn counter_frequency(&self) -> u64 {
        timer::frequency()
    }

    fn set_deadline(&mut self, deadline: Option<u64>) {
        timer::set_deadline(deadline);
    }

    fn wait_for_interrupt(&mut self) {
        aarch64_cpu::asm::wfi();
    }

    fn ack_irq(&mut self) -> Option<u32> {
        self.gic.ack()
    }

    fn end_irq(&mut self, intid: u32) {
        self.gic.end(intid);
    }

    fn timer_irq(&self) -> u32 {
        c::HYP_TIMER_IRQ
    }

    fn guest_timer_irq(&self) -> u32 {
        c::VIRT_TIMER_IRQ
    }

    fn maintenance_irq(&self) -> u32 {
        c::MAINTENANCE_IRQ
    }

    fn mask_guest_timer(&mut self, masked: bool) {
        timer::mask_guest_timer(masked);
    }

    fn guest_timer_deadline(&self) -> Option<u64> {
        timer::guest_timer_deadline()
    }

    fn guest_cpu_interface(&self) -> Option<(u64, u64)> {
        // The GICv2 virtual CPU interface: two 4 KiB pages.
        Some((c::GICV_BASE, 0x2000))
    }

    fn lr_count(&self) -> usize {
        self.gich.lr_count()
    }

    fn write_lrs(&mut self, lrs: &[ListReg], underflow: bool) {
        for (i, lr) in lrs.iter().enumerate() {
            self.gich.write_lr(i, lr);
        }
        self.gich.set_hcr(true, underflow);
    }

    fn read_lrs(&mut self, lrs: &mut [ListReg]) {
        for (i, lr) in lrs.iter_mut().enumerate() {
            *lr = self.gich.read_lr(i);
        }
    }

    fn flush_guest_tlbs(&mut self) {
        cache::flush_guest_tlbs();
    }

    fn sync_guest_memory(&mut self, bytes: &[u8]) {
        cache::clean_to_poc(bytes);
    }
}
