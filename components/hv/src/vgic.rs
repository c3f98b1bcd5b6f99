//! The virtual GIC interface every `vgic-*` component implements: the
//! distributor a VM sees (emulated by trapping its accesses) and the
//! policy that moves pending virtual interrupts into a vCPU's list
//! registers. Each vGIC also brings the driver of the hardware's virtual CPU
//! interface it fills ([`VirtualInterface`]: GICH on GICv2, the ICH_*
//! system registers on GICv3).

/// State of one list register, as both GIC versions have it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LrState {
    #[default]
    Invalid,
    Pending,
    Active,
    PendingActive,
}

/// One list register, independent of the GIC version's encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListReg {
    /// Virtual INTID the guest sees.
    pub intid: u32,
    /// Priority, 8-bit scale (the hardware keeps the top 5 bits).
    pub priority: u8,
    pub state: LrState,
    /// For a software-generated interrupt on GICv2, the vCPU that sent it.
    pub source: u8,
    /// Ask for a maintenance interrupt when the guest EOIs it (GICv2
    /// `EOI` bit, GICv3 `EOI` bit): lets the hypervisor act on completion.
    pub eoi_maintenance: bool,
}

impl ListReg {
    pub fn is_free(&self) -> bool {
        self.state == LrState::Invalid
    }
}

/// What a distributor write asks of the hypervisor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// vCPUs (bit n = vCPU n) that got a new pending interrupt: wake them
    /// if they wait in WFI, kick them if they run on another CPU.
    pub kick: u64,
}

/// What filling a vCPU's list registers found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Some pending interrupts did not fit: ask for a maintenance
    /// interrupt when the list registers (nearly) empty, and flush again.
    pub waiting: bool,
    /// Interrupts this vCPU's list registers held back from others until
    /// now (see the vGIC's emptied entries) may go to these vCPUs.
    pub effects: Effects,
}

/// The physical GIC's virtual CPU interface, one per image: its registers
/// are banked (GICv2's GICH) or per CPU (GICv3's ICH_*), so each CPU
/// reaches its own through the same driver, under the hypervisor's lock.
pub trait VirtualInterface {
    /// What a guest set in its CPU interface outside the list registers
    /// (priority mask, active priorities): saved with its vCPU.
    type CpuState: Default;

    /// How many list registers the hardware has (read once, at boot).
    fn lr_count(&self) -> usize;

    /// Host-physical address and size of the memory-mapped CPU interface a
    /// guest uses (GICv2's GICV), mapped where the guest expects GICC;
    /// `None` when guests use system registers (GICv3).
    fn guest_cpu_interface(&self) -> Option<(u64, u64)>;

    /// Writes the loaded vCPU's list registers and turns the interface on;
    /// `underflow` asks for a maintenance interrupt when they (nearly) run
    /// empty.
    fn write_lrs(&mut self, lrs: &[ListReg], underflow: bool);

    /// Reads them back after the guest ran.
    fn read_lrs(&mut self, lrs: &mut [ListReg]);

    /// A vCPU comes to this CPU: its CPU-interface state goes in.
    fn load(&mut self, state: &Self::CpuState);

    /// It leaves: its state comes out, and the interface is turned off (no
    /// maintenance interrupt for a vCPU that is not here; an idle CPU would
    /// wake for it again and again). `write_lrs` turns it on again.
    fn put(&mut self, state: &mut Self::CpuState);
}

/// One VM's virtual GIC behind a lock of its own, with the frames it
/// answers. A distributor access takes this lock alone (the exit fast
/// path); the hypervisor takes it inside its own lock, never the other way
/// round. VMs live as long as the image, so each cell is leaked once, at
/// build time, and shared by reference.
pub struct VgicCell<V> {
    windows: alloc::boxed::Box<[crate::device::Window]>,
    state: spin::mutex::TicketMutex<V, crate::log::BoardRelax>,
}

impl<V: Vgic> VgicCell<V> {
    /// A new virtual GIC for a VM with `vcpus` vCPUs, for the image's life.
    pub fn leak(vcpus: usize) -> &'static Self {
        let vgic = V::new(vcpus);
        alloc::boxed::Box::leak(alloc::boxed::Box::new(VgicCell {
            windows: vgic.windows().into_boxed_slice(),
            state: spin::mutex::TicketMutex::new(vgic),
        }))
    }

    pub fn lock(&self) -> spin::mutex::TicketMutexGuard<'_, V> {
        self.state.lock()
    }

    /// The guest-physical frames it emulates.
    pub fn windows(&self) -> &[crate::device::Window] {
        &self.windows
    }

    /// Whether `ipa` is in one of its frames.
    #[inline]
    pub fn claims(&self, ipa: u64) -> bool {
        self.windows.iter().any(|w| w.contains(ipa))
    }
}

/// One VM's virtual interrupt controller.
pub trait Vgic: 'static {
    /// The hardware interface its list registers go through.
    type Interface: VirtualInterface;

    /// A virtual GIC for a VM with `vcpus` vCPUs.
    fn new(vcpus: usize) -> Self;

    /// The guest-physical frames it emulates (the distributor; on GICv3
    /// also the redistributors): they head the VM's device table, so
    /// accesses there trap to stage 2 and come to `read`/`write`.
    fn windows(&self) -> alloc::vec::Vec<crate::device::Window>;

    /// A trapped read of `width` bytes (1, 2, 4 or 8) at guest-physical
    /// `ipa` by `vcpu`. Reserved or write-only registers read as zero.
    fn read(&mut self, vcpu: usize, ipa: u64, width: u8) -> u64;

    /// A trapped write. Read-only registers ignore it.
    fn write(&mut self, vcpu: usize, ipa: u64, width: u8, value: u64) -> Effects;

    /// The guest wrote ICC_SGI1R_EL1 (GICv3's way to send SGIs; the write
    /// traps because physical interrupts are routed to EL2). GICv2 guests
    /// send SGIs through the distributor instead.
    fn write_sgi1r(&mut self, _vcpu: usize, _value: u64) -> Effects {
        Effects::default()
    }

    /// A device (or the virtual timer) asserts `intid`: for a private
    /// interrupt (INTID < 32) on `vcpu`, for a shared one wherever the
    /// guest routed it.
    fn raise(&mut self, vcpu: usize, intid: u32) -> Effects;

    /// A level-triggered device drives the line of `intid` (for a private
    /// interrupt, `vcpu`'s) to `level`: while it is high and the guest
    /// configured the interrupt level-sensitive, the interrupt is pending;
    /// configured edge-triggered, a rising line is an edge. List registers
    /// of level interrupts ask for EOI maintenance (the core keeps their
    /// [`ListReg::eoi_maintenance`]) so `sync` hears of completion.
    fn set_level(&mut self, vcpu: usize, intid: u32, level: bool) -> Effects;

    /// Before `vcpu` runs: put the highest-priority pending, enabled
    /// interrupts into its free list registers. Says whether some did not
    /// fit (the caller asks for a maintenance interrupt when the list
    /// registers (nearly) empty, and calls `flush` again then) and which
    /// vCPUs to kick for interrupts this one no longer holds back.
    fn flush(&mut self, vcpu: usize, lrs: &mut [ListReg]) -> Flushed;

    /// After `vcpu` ran: take back what the guest did with its list
    /// registers (acknowledged, completed) so the distributor's view is
    /// current; completed entries become free. A level interrupt completed
    /// with its line still high is pending again: the vCPUs to kick for it.
    fn sync(&mut self, vcpu: usize, lrs: &mut [ListReg]) -> Effects;

    /// `vcpu` turned off (PSCI CPU_OFF) with its list registers as last
    /// synced: what was pending there goes back to the distributor (and to
    /// whichever vCPU it is routed to now), what was active is dropped, and
    /// nothing stays "in a list register" of a vCPU that will not run.
    fn release_lrs(&mut self, vcpu: usize) -> Effects;

    /// Whether `vcpu` has an interrupt pending that it would take: a vCPU
    /// in WFI with one does not block.
    fn has_pending(&self, vcpu: usize) -> bool;

    /// Whether `intid` is pending or active for `vcpu` (in the distributor
    /// or in its list registers as last synced).
    fn in_flight(&self, vcpu: usize, intid: u32) -> bool;
}
