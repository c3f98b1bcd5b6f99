//! A VM and its vCPUs: memory, stage-2, interrupt state, console.

use crate::{
    device::{DeviceTable, MmioDevice, Window},
    info,
    memory::GuestRam,
    platform::Platform,
    sched::{CpuId, VcpuParams},
    stage2::Stage2,
    vgic::{ListReg, Vgic, VirtualInterface},
    vmid::Vmid,
};
use abi::{StartInfo, CMDLINE_LEN, GUEST_RAM_BASE, VM_NAME_LEN};
use config::vm::VmConfig;
use pv_console::LineBuffer;

/// Most list registers any GIC implementation has.
pub(crate) const MAX_LIST_REGS: usize = 16;

/// A VM's emulated devices besides the virtual GIC, each with its window.
pub type VmDevices = alloc::vec::Vec<(Window, alloc::boxed::Box<dyn MmioDevice>)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VmState {
    Running,
    Stopped,
}

/// Whether a vCPU is on, as PSCI sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Power {
    On,
    Off,
}

/// Where a vCPU is, as the core alone tracks it: schedulers are told of
/// each change and keep no state of their own about it, so a wake-up can
/// never put a vCPU in a run queue while a CPU runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunState {
    /// Not runnable (off, blocked in WFI, or its VM stopped): the scheduler
    /// does not hold it.
    Parked,
    /// The scheduler holds it and may hand it to any CPU.
    Queued,
    /// Loaded on this CPU: in the guest, or its exit being handled.
    OnCpu(CpuId),
}

/// A vCPU: its registers and what the core tracks about it.
pub(crate) struct Vcpu<C, G> {
    /// Index of its VM in the hypervisor's VMs, and its own in the VM.
    pub vm: usize,
    pub index: u32,
    pub power: Power,
    pub run: RunState,
    /// What the scheduler is told about it.
    pub sched: VcpuParams,
    /// Its registers; taken out while a CPU runs it.
    pub ctx: Option<alloc::boxed::Box<C>>,
    /// When it was last loaded on a CPU (for CPU-time accounting).
    pub run_started: u64,
    /// Its list registers as last written to or read from the hardware.
    pub lrs: [ListReg; MAX_LIST_REGS],
    /// Its GIC CPU-interface state outside the list registers.
    pub gic: G,
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

pub(crate) struct Vm<V> {
    /// What the image says of it, as decoded from the VM table.
    pub config: VmConfig<'static>,
    /// Its vCPUs are the hypervisor's `first_vcpu..first_vcpu + config.vcpus`.
    pub first_vcpu: usize,
    /// Its guest image and start info, to restart it (PSCI SYSTEM_RESET).
    pub image: &'static [u8],
    pub start_info: StartInfo,
    /// The guest asked for a reset (PSCI SYSTEM_RESET); done once none of
    /// its vCPUs runs anywhere.
    pub reset_requested: bool,
    /// A reset is clearing its RAM: the chunks cleared so far (see
    /// `Work::Zero`).
    pub chunks_cleared: Option<u64>,
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
    /// Who answers a trapped access where (the vGIC's frames first).
    pub devices: DeviceTable,
}

impl<V> Vm<V> {
    /// Its vCPUs' indices in the hypervisor's vCPU table.
    pub fn vcpu_indices(&self) -> core::ops::Range<usize> {
        self.first_vcpu..self.first_vcpu + self.config.vcpus as usize
    }
}

/// A built VM and its vCPUs, for the hypervisor's tables.
pub(crate) type VmAndVcpus<V, C> = (Vm<V>, alloc::vec::Vec<Vcpu<C, GicState<V>>>);

/// What a vCPU's GIC CPU interface holds outside its list registers.
pub(crate) type GicState<V> = <<V as Vgic>::Interface as VirtualInterface>::CpuState;

/// Where a VM being built goes in the hypervisor's tables.
pub(crate) struct Place {
    /// Its index among the VMs built.
    pub vm: usize,
    /// Its first vCPU's index among all vCPUs.
    pub first_vcpu: usize,
}

/// Builds a VM: stage-2 (RAM, and the GIC's virtual CPU interface where
/// the guest expects its CPU interface), RAM contents, start info, and its
/// vCPUs (vCPU 0 on). `images` is the image's guest table, which
/// `config.image` indexes.
pub(crate) fn build<P: Platform, V: Vgic>(
    platform: &mut P,
    vif: &V::Interface,
    id: u32,
    config: VmConfig<'static>,
    images: &[&'static [u8]],
    devices: VmDevices,
    place: Place,
) -> Result<VmAndVcpus<V, P::Context>, &'static str> {
    let Place {
        vm: vm_index,
        first_vcpu,
    } = place;
    let image = *images
        .get(config.image as usize)
        .ok_or("its guest image is not in the image")?;
    let ram = GuestRam::new(GUEST_RAM_BASE, config.ram.base, config.ram.size);
    let VmConfig {
        ref name,
        ref guest,
        ref cmdline,
        vcpus,
        width,
        weight,
        cap_percent,
        cpu,
        ..
    } = config;
    let vgic = V::new(vcpus as usize);
    let mut mapped = alloc::vec![Window::new(GUEST_RAM_BASE, ram.size())];
    let cpu_interface = vif.guest_cpu_interface();
    if let Some((_, size)) = cpu_interface {
        mapped.push(Window::new(abi::GUEST_GICC_BASE, size));
    }
    let devices = DeviceTable::new(&vgic.windows(), devices, &mapped).map_err(|(a, b)| {
        crate::error!("vm {name}: window {a} overlaps window {b}");
        "two windows of its guest-physical map overlap"
    })?;
    let mut stage2 = Stage2::new();
    stage2
        .map_ram(GUEST_RAM_BASE, ram.pa_base, ram.size())
        .map_err(|_| "its RAM cannot be mapped with 2 MiB blocks")?;
    if let Some((pa, size)) = cpu_interface {
        stage2
            .map_device(abi::GUEST_GICC_BASE, pa, size)
            .map_err(|_| "the GIC virtual CPU interface cannot be mapped")?;
    }
    let start_info = start_info(id, name, cmdline, ram.size(), vcpus);
    ram.load(platform, image, &start_info)
        .map_err(|_| "its guest image does not fit in its RAM")?;
    platform.sync_guest_memory(ram.all());
    info!(
        "vm {name}: guest {guest} ({}), {vcpus} vCPU, RAM {:#x}..{:#x} ({} MiB) at IPA {GUEST_RAM_BASE:#x}, image {} bytes",
        width.name(),
        ram.pa_base,
        ram.pa_base + ram.size(),
        ram.size() >> 20,
        image.len()
    );
    let vcpu_list = (0..vcpus)
        .map(|index| {
            let (entry, arg0, power) = if index == 0 {
                (GUEST_RAM_BASE, ram.start_info_ipa(), Power::On)
            } else {
                (0, 0, Power::Off)
            };
            Vcpu {
                vm: vm_index,
                index,
                power,
                run: RunState::Parked,
                sched: VcpuParams {
                    vm: id,
                    weight,
                    cap_percent,
                    cpu: cpu.map(|c| CpuId(c + index)),
                },
                ctx: Some(alloc::boxed::Box::new(
                    platform.new_context(entry, arg0, index, width),
                )),
                run_started: 0,
                lrs: [ListReg::default(); MAX_LIST_REGS],
                gic: Default::default(),
                lrs_live: false,
                irq_dirty: false,
                blocked: false,
                wake_at: None,
                vtimer_masked: false,
            }
        })
        .collect();
    let vm = Vm {
        config,
        first_vcpu,
        image,
        start_info,
        reset_requested: false,
        chunks_cleared: None,
        stage2,
        vmid: None,
        ram,
        console: LineBuffer::new(),
        state: VmState::Running,
        created_at: platform.counter(),
        cpu_ticks: 0,
        vgic,
        devices,
    };
    Ok((vm, vcpu_list))
}

fn start_info(id: u32, name: &str, cmdline: &str, ram_size: u64, vcpus: u32) -> StartInfo {
    let mut info = StartInfo {
        magic: abi::START_INFO_MAGIC,
        abi_major: abi::ABI_MAJOR,
        abi_minor: abi::ABI_MINOR,
        vm_id: id,
        vcpus,
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
