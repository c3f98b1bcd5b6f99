//! What the core needs from the hardware, implemented by the arch layer and
//! the image's drivers. The core calls it; it never calls the core.

/// Why the CPU came back from a guest, as the exception vector saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// Synchronous exception (hypercall, abort, trapped instruction).
    Sync,
    Irq,
    Fiq,
    SError,
}

/// A guest exit with the syndrome registers read right after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawExit {
    pub kind: ExitKind,
    /// ESR_EL2 (HSR on ARMv7: same layout for the classes we decode).
    pub esr: u64,
    /// FAR_EL2: the faulting virtual address.
    pub far: u64,
    /// HPFAR_EL2: the faulting IPA's page (bits [51:12] in [43:4]).
    pub hpfar: u64,
}

/// Where the board's GIC is, as its profile says: host-physical addresses,
/// identity-mapped as device memory. What a GIC version lacks is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicMap {
    pub distributor: usize,
    /// GICv2: the CPU interface (GICC), the virtual interface control
    /// (GICH) and the virtual CPU interface guests see (GICV).
    pub cpu_interface: usize,
    pub hyp_interface: usize,
    pub virtual_cpu_interface: u64,
    /// GICv3: the first redistributor.
    pub redistributor: usize,
    pub cpus: usize,
}

/// A private interrupt the hypervisor takes on every CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrivateIrq {
    pub intid: u32,
    pub priority: u8,
    /// What it is, for messages.
    pub what: &'static str,
}

/// The execution state a VM's EL1 runs in: the composition's own type.
pub use config::vm::GuestWidth;

/// A vCPU's registers as the core sees them. Register numbers are AArch64
/// `xN` (AArch32 `rN` map onto the same numbers).
pub trait VcpuRegs {
    fn reg(&self, n: usize) -> u64;
    fn set_reg(&mut self, n: usize, value: u64);
    fn pc(&self) -> u64;
    fn set_pc(&mut self, pc: u64);
}

/// The board as the core uses it: a vCPU's context on a physical CPU, the
/// timers, the physical interrupt controller, console input, and guest RAM
/// (reached only through [`GuestMemory`](crate::memory::GuestMemory)).
/// Implemented for anything that implements the five. The virtual CPU interface is the
/// vGIC's ([`crate::vgic::Vgic::Interface`]).
pub trait Platform: crate::memory::GuestMemory + Cpu + Timer + PhysicalIrq + ConsoleInput {}

impl<T: crate::memory::GuestMemory + Cpu + Timer + PhysicalIrq + ConsoleInput> Platform for T {}

/// What the host types on the hypervisor's console.
pub trait ConsoleInput {
    /// Takes the bytes waiting, up to `buf.len()`; how many.
    fn read_console(&mut self, buf: &mut [u8]) -> usize;
}

/// A physical CPU running vCPUs: their contexts, stage-2 and caches.
pub trait Cpu {
    /// A vCPU's whole state (general, system and FP registers).
    type Context: VcpuRegs;

    /// vCPU `index` of its VM, starting at `entry` at EL1 in `width` with
    /// interrupts masked, MMU off and `x0 = arg0` (its MPIDR's Aff0 is
    /// `index`). A board that cannot run `width` never gets asked: the
    /// composer refuses such VMs.
    fn new_context(&self, entry: u64, arg0: u64, index: u32, width: GuestWidth) -> Self::Context;

    /// Loads a vCPU's state (EL1 system registers, timer) and its stage-2
    /// (`vttbr`) into this CPU.
    fn vcpu_load(&mut self, ctx: &Self::Context, vttbr: u64);

    /// Saves them back when the vCPU leaves this CPU, and disables its
    /// virtual timer in the hardware (it may run elsewhere next).
    fn vcpu_put(&mut self, ctx: &mut Self::Context);

    /// Runs the loaded vCPU until it traps to the hypervisor.
    fn run(&mut self, ctx: &mut Self::Context) -> RawExit;

    /// Invalidates all guest (stage-1 and stage-2) TLB entries of all VMIDs
    /// on every CPU (a broadcast invalidation), done when it returns.
    fn flush_guest_tlbs(&mut self);

    /// The width of the VMIDs the hypervisor hands out: 8, or 16 where the
    /// CPU has 16-bit VMIDs and the board turned them on.
    fn vmid_bits(&self) -> u32;

    /// Makes freshly written guest memory visible to a guest that starts with
    /// its MMU and caches off (clean to the point of coherency, invalidate
    /// the instruction cache).
    fn sync_guest_memory(&mut self, ram: crate::memory::GuestSlice);
}

/// The generic timer: the hypervisor's own, and the loaded vCPU's virtual one.
pub trait Timer {
    /// Free-running counter (CNTPCT), in ticks.
    fn counter(&self) -> u64;

    /// Counter ticks per second (CNTFRQ).
    fn counter_frequency(&self) -> u64;

    /// Arms the hypervisor's own timer for `deadline` (counter ticks), or
    /// disarms it with `None`.
    fn set_deadline(&mut self, deadline: Option<u64>);

    /// INTID of the hypervisor's own timer.
    fn timer_irq(&self) -> u32;

    /// INTID of the guests' virtual timer as the physical GIC sees it.
    fn guest_timer_irq(&self) -> u32;

    /// Masks (or unmasks) the loaded vCPU's virtual timer interrupt.
    fn mask_guest_timer(&mut self, masked: bool);

    /// When the loaded vCPU's virtual timer fires, if it is enabled and
    /// the guest has not masked it.
    fn guest_timer_deadline(&self) -> Option<u64>;
}

/// The physical interrupt controller as the hypervisor takes interrupts.
pub trait PhysicalIrq {
    /// Interrupts physical CPU `cpu` (an SGI) so it looks for work again.
    fn kick_cpu(&mut self, cpu: crate::sched::CpuId);

    /// INTID of that kick.
    fn kick_irq(&self) -> u32;

    /// Waits (WFI) until an interrupt is pending; it is not taken, the
    /// caller acknowledges it.
    fn wait_for_interrupt(&mut self);

    /// Acknowledges the highest-priority pending physical interrupt.
    fn ack_irq(&mut self) -> Option<u32>;

    /// Ends an interrupt taken with [`PhysicalIrq::ack_irq`].
    fn end_irq(&mut self, intid: u32);

    /// INTID of the GIC's maintenance interrupt.
    fn maintenance_irq(&self) -> u32;
}
