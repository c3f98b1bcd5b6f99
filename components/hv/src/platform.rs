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

/// The board as the core uses it. Guest RAM is reached only through its
/// [`GuestMemory`](crate::memory::GuestMemory).
pub trait Platform: crate::memory::GuestMemory {
    /// A vCPU's whole state (general, system and FP registers).
    type Context: VcpuRegs;

    /// vCPU `index` of its VM, starting at `entry` at EL1 in `width` with
    /// interrupts masked, MMU off and `x0 = arg0` (its MPIDR's Aff0 is
    /// `index`). A board that cannot run `width` never gets asked: the
    /// composer refuses such VMs.
    fn new_context(&self, entry: u64, arg0: u64, index: u32, width: GuestWidth) -> Self::Context;

    /// Loads a vCPU's state (EL1 system registers, timer, GIC CPU interface)
    /// and its stage-2 (`vttbr`) into this CPU.
    fn vcpu_load(&mut self, ctx: &Self::Context, vttbr: u64);

    /// Saves them back when the vCPU leaves this CPU, and disables its
    /// virtual timer in the hardware (it may run elsewhere next).
    fn vcpu_put(&mut self, ctx: &mut Self::Context);

    /// Interrupts physical CPU `cpu` (an SGI) so it looks for work again.
    fn kick_cpu(&mut self, cpu: crate::sched::CpuId);

    /// INTID of that kick.
    fn kick_irq(&self) -> u32;

    /// Runs the loaded vCPU until it traps to the hypervisor.
    fn run(&mut self, ctx: &mut Self::Context) -> RawExit;

    /// Free-running counter (CNTPCT), in ticks.
    fn counter(&self) -> u64;

    /// Counter ticks per second (CNTFRQ).
    fn counter_frequency(&self) -> u64;

    /// Arms the hypervisor's own timer for `deadline` (counter ticks), or
    /// disarms it with `None`.
    fn set_deadline(&mut self, deadline: Option<u64>);

    /// Waits (WFI) until an interrupt is pending; it is not taken, the
    /// caller acknowledges it.
    fn wait_for_interrupt(&mut self);

    /// Acknowledges the highest-priority pending physical interrupt.
    fn ack_irq(&mut self) -> Option<u32>;

    /// Ends an interrupt taken with [`Platform::ack_irq`].
    fn end_irq(&mut self, intid: u32);

    /// INTID of the hypervisor's own timer.
    fn timer_irq(&self) -> u32;

    /// INTID of the guests' virtual timer as the physical GIC sees it.
    fn guest_timer_irq(&self) -> u32;

    /// INTID of the GIC's maintenance interrupt.
    fn maintenance_irq(&self) -> u32;

    /// Masks (or unmasks) the loaded vCPU's virtual timer interrupt.
    fn mask_guest_timer(&mut self, masked: bool);

    /// When the loaded vCPU's virtual timer fires, if it is enabled and
    /// the guest has not masked it.
    fn guest_timer_deadline(&self) -> Option<u64>;

    /// Host-physical address and size of the GIC's virtual CPU interface,
    /// mapped where the guest expects its CPU interface (GICv2); `None`
    /// when the CPU interface is system registers (GICv3).
    fn guest_cpu_interface(&self) -> Option<(u64, u64)>;

    /// How many list registers the GIC has.
    fn lr_count(&self) -> usize;

    /// Writes the loaded vCPU's list registers; `underflow` asks for a
    /// maintenance interrupt when they (nearly) run empty.
    fn write_lrs(&mut self, lrs: &[crate::vgic::ListReg], underflow: bool);

    /// Reads them back after the guest ran.
    fn read_lrs(&mut self, lrs: &mut [crate::vgic::ListReg]);

    /// Invalidates all guest (stage-1 and stage-2) TLB entries of all VMIDs.
    fn flush_guest_tlbs(&mut self);

    /// Makes freshly written guest memory visible to a guest that starts with
    /// its MMU and caches off (clean to the point of coherency, invalidate
    /// the instruction cache).
    fn sync_guest_memory(&mut self, ram: crate::memory::GuestSlice);
}
