//! A VM and its one vCPU: memory, stage-2, interrupt state, console.

use crate::{
    info,
    memory::GuestRam,
    platform::Platform,
    sched::{CpuId, VcpuParams},
    stage2::Stage2,
    vgic::{ListReg, Vgic},
    vmid::Vmid,
};
use abi::{StartInfo, CMDLINE_LEN, GUEST_RAM_BASE, VM_NAME_LEN};
use pv_console::LineBuffer;

/// Most list registers any GIC implementation has.
pub(crate) const MAX_LIST_REGS: usize = 16;

/// One VM as the image describes it.
pub struct VmDesc {
    pub name: &'static str,
    pub guest: &'static str,
    pub cmdline: &'static str,
    pub ram: GuestRam,
    pub image: &'static [u8],
    /// Credit weight (256 by default).
    pub weight: u32,
    /// Credit cap, percent of one CPU; 0 = none.
    pub cap_percent: u32,
    /// The physical CPU its vCPU is pinned to.
    pub cpu: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VmState {
    Running,
    Stopped,
}

/// A vCPU: its registers and what the core tracks about it.
pub(crate) struct Vcpu<C> {
    /// Its registers; taken out while a CPU runs it.
    pub ctx: Option<alloc::boxed::Box<C>>,
    /// When it was last loaded on a CPU (for CPU-time accounting).
    pub run_started: u64,
    /// Its list registers as last written to or read from the hardware.
    pub lrs: [ListReg; MAX_LIST_REGS],
    /// Some list register is in use, or interrupts wait for one: the
    /// hardware must be read back after the guest runs.
    pub lrs_live: bool,
    /// Its virtual GIC changed since its list registers were last filled
    /// (an interrupt raised, a distributor register written).
    pub irq_dirty: bool,
    /// Waiting in WFI for an interrupt.
    pub blocked: bool,
    /// When its virtual timer fires, while it is blocked.
    pub wake_at: Option<u64>,
    /// Its virtual timer is masked while the interrupt it raised is in
    /// flight (the timer interrupt is level: unmasked, it would fire again
    /// at once).
    pub vtimer_masked: bool,
}

pub(crate) struct Vm<C, V> {
    /// What the scheduler is told about its vCPU (`sched.vm` is the VM's
    /// index in the image's VM table).
    pub sched: VcpuParams,
    pub name: &'static str,
    pub stage2: Stage2,
    pub vmid: Option<Vmid>,
    pub ram: GuestRam,
    pub console: LineBuffer,
    pub state: VmState,
    /// When it was created, and how long its vCPU has run since (counter
    /// ticks; hypervisor work on its behalf included).
    pub created_at: u64,
    pub cpu_ticks: u64,
    pub vgic: V,
    pub vcpu: Vcpu<C>,
}

/// Builds a VM: stage-2 (RAM, and the GIC's virtual CPU interface where
/// the guest expects its CPU interface), RAM contents, start info, vCPU.
pub(crate) fn build<P: Platform, V: Vgic>(
    platform: &mut P,
    id: u32,
    desc: VmDesc,
) -> Result<Vm<P::Context, V>, &'static str> {
    let VmDesc {
        name,
        guest,
        cmdline,
        mut ram,
        image,
        weight,
        cap_percent,
        cpu,
    } = desc;
    let mut stage2 = Stage2::new();
    stage2
        .map_ram(GUEST_RAM_BASE, ram.pa_base, ram.size())
        .map_err(|_| "its RAM cannot be mapped with 2 MiB blocks")?;
    if let Some((pa, size)) = platform.guest_cpu_interface() {
        stage2
            .map_device(abi::GUEST_GICC_BASE, pa, size)
            .map_err(|_| "the GIC virtual CPU interface cannot be mapped")?;
    }
    ram.load(image, &start_info(id, name, cmdline, ram.size()))
        .map_err(|_| "its guest image does not fit in its RAM")?;
    platform.sync_guest_memory(ram.bytes());
    let ctx = platform.new_context(GUEST_RAM_BASE, ram.start_info_ipa());
    info!(
        "vm {name}: guest {guest}, 1 vCPU, RAM {:#x}..{:#x} ({} MiB) at IPA {GUEST_RAM_BASE:#x}, image {} bytes",
        ram.pa_base,
        ram.pa_base + ram.size(),
        ram.size() >> 20,
        image.len()
    );
    Ok(Vm {
        sched: VcpuParams {
            vm: id,
            weight,
            cap_percent,
            cpu: cpu.map(CpuId),
        },
        name,
        stage2,
        vmid: None,
        ram,
        console: LineBuffer::new(),
        state: VmState::Running,
        created_at: platform.counter(),
        cpu_ticks: 0,
        vgic: V::new(1),
        vcpu: Vcpu {
            ctx: Some(alloc::boxed::Box::new(ctx)),
            run_started: 0,
            lrs: [ListReg::default(); MAX_LIST_REGS],
            lrs_live: false,
            irq_dirty: false,
            blocked: false,
            wake_at: None,
            vtimer_masked: false,
        },
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
