//! A VM and its vCPUs: memory, stage-2, interrupt state, console.

use crate::{
    device::{DeviceTable, MmioDevice, Window},
    info,
    memory::GuestRam,
    platform::{GuestWidth, Platform, VcpuRegs},
    sched::{CpuId, VcpuParams},
    stage2::{self, Stage2},
    vgic::{ListReg, Vgic, VgicCell, VirtualInterface},
    vmid::Vmid,
};
use abi::{ChannelInfo, ChannelTable, StartInfo, CMDLINE_LEN, GUEST_RAM_BASE, VM_NAME_LEN};
use config::vm::{ChannelEnd, VmConfig};
use pv_console::LineBuffer;

/// Most list registers any GIC implementation has.
pub(crate) const MAX_LIST_REGS: usize = 16;

/// A VM's emulated devices besides the virtual GIC, each with its window;
/// or why they could not be made (a disk source not on the disk), and then
/// the VM does not start.
pub type VmDevices =
    Result<alloc::vec::Vec<(Window, alloc::boxed::Box<dyn MmioDevice>)>, alloc::string::String>;

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

pub(crate) struct Vm<V: 'static> {
    /// What the image says of it, as decoded from the VM table.
    pub config: VmConfig<'static>,
    /// Its index in the image's VM table (which VMs that did not start
    /// leave gaps in).
    pub id: u32,
    /// The other side of each of its channels (`config.channels`), if that
    /// VM started: set once all VMs are built.
    pub channel_peers: alloc::vec::Vec<Option<super::channel::Peer>>,
    /// How many times it stopped or reset: its channel sides' generation.
    pub generation: u32,
    /// It stopped or is resetting, and the channels it writes are to be
    /// zeroed once none of its vCPUs runs.
    pub channels_to_clear: bool,
    /// Its vCPUs are the hypervisor's `first_vcpu..first_vcpu + config.vcpus`.
    pub first_vcpu: usize,
    /// What its RAM holds at start and how vCPU 0 enters, to restart it
    /// (PSCI SYSTEM_RESET).
    pub start: Start,
    /// The guest asked for a reset (PSCI SYSTEM_RESET); done once none of
    /// its vCPUs runs anywhere.
    pub reset_requested: bool,
    /// Which of its RAM is cleared and mapped, and what is being cleared
    /// (see `clear.rs`).
    pub ram_state: super::clear::RamState,
    /// When it last started again after a reset (resets are paced).
    pub last_reset: Option<u64>,
    pub stage2: Stage2,
    pub vmid: Option<Vmid>,
    pub ram: GuestRam,
    pub console: LineBuffer,
    pub state: VmState,
    /// When it was created, and how long its vCPU has run since (counter
    /// ticks; hypervisor work on its behalf included).
    pub created_at: u64,
    pub cpu_ticks: u64,
    /// Its virtual GIC, under a lock of its own (see [`VgicCell`]).
    pub vgic: &'static VgicCell<V>,
    /// Who answers a trapped access where (the vGIC's frames first).
    pub devices: DeviceTable,
}

impl<V> Vm<V> {
    /// Its vCPUs' indices in the hypervisor's vCPU table.
    pub fn vcpu_indices(&self) -> core::ops::Range<usize> {
        self.first_vcpu..self.first_vcpu + self.config.vcpus as usize
    }
}

/// The stage-2 tables every VM links to: the GIC's virtual CPU interface
/// where guests expect their CPU interface (if the GIC has one to map).
pub(crate) fn shared_tables<I: VirtualInterface>(vif: &I) -> alloc::sync::Arc<Stage2> {
    let build = |s2: &mut Stage2| match vif.guest_cpu_interface() {
        Some((pa, size)) => s2.map_device(abi::GUEST_GICC_BASE, pa, size),
        None => Ok(()),
    };
    // Failing, each VM maps the frame itself, and says so if it cannot.
    Stage2::shared(build).unwrap_or_else(|_| alloc::sync::Arc::new(Stage2::new()))
}

/// A built VM and its vCPUs, for the hypervisor's tables.
pub(crate) type VmAndVcpus<V, C> = (Vm<V>, alloc::vec::Vec<Vcpu<C, GicState<V>>>);

/// What a vCPU's GIC CPU interface holds outside its list registers.
pub(crate) type GicState<V> = <<V as Vgic>::Interface as VirtualInterface>::CpuState;

/// Where a VM being built goes in the hypervisor's tables.
pub(crate) struct Place<'a> {
    /// Its index among the VMs built.
    pub vm: usize,
    /// Its first vCPU's index among all vCPUs.
    pub first_vcpu: usize,
    /// The stage-2 tables every VM links to ([`shared_tables`]).
    pub shared: &'a alloc::sync::Arc<Stage2>,
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
    devices: alloc::vec::Vec<(Window, alloc::boxed::Box<dyn MmioDevice>)>,
    place: Place,
) -> Result<VmAndVcpus<V, P::Context>, &'static str> {
    let Place {
        vm: vm_index,
        first_vcpu,
        shared,
    } = place;
    let image = *images
        .get(config.image as usize)
        .ok_or("its guest image is not in the image")?;
    let ram = GuestRam::new(GUEST_RAM_BASE, config.ram.base, config.ram.size);
    let VmConfig {
        ref name,
        ref guest,
        vcpus,
        width,
        weight,
        cap_percent,
        cpu,
        ..
    } = config;
    let vgic = VgicCell::<V>::leak(vcpus as usize);
    let mut mapped = alloc::vec![Window::new(GUEST_RAM_BASE, ram.size())];
    for channel in &config.channels {
        mapped.push(Window::new(channel.state_ipa, stage2::PAGE_SIZE));
        mapped.push(Window::new(channel.data_ipa, channel.data.size));
    }
    let cpu_interface = vif.guest_cpu_interface();
    if let Some((_, size)) = cpu_interface {
        mapped.push(Window::new(abi::GUEST_GICC_BASE, size));
    }
    // Devices that reach guest RAM get all of it cleared first (see
    // `clear.rs`).
    let eager = devices.iter().any(|(_, device)| device.reaches_ram());
    let devices = DeviceTable::new(vgic.windows(), devices, &mapped).map_err(|(a, b)| {
        crate::error!("vm {name}: window {a} overlaps window {b}");
        "two windows of its guest-physical map overlap"
    })?;
    // RAM not in whole 2 MiB blocks (small VMs, mapped in 4 KiB pages) is
    // cleared whole before the VM first runs: little of it, and the lazy
    // clearing works by blocks and their 64 KiB groups.
    let eager = eager
        || [ram.pa_base, ram.size()]
            .iter()
            .any(|v| !v.is_multiple_of(stage2::BLOCK_SIZE));
    // The GIC frame every VM maps alike is in `shared` (see `shared_tables`).
    let mut stage2 = Stage2::sharing(shared);
    if let Some((pa, size)) =
        cpu_interface.filter(|_| shared.translate(abi::GUEST_GICC_BASE).is_none())
    {
        stage2
            .map_device(abi::GUEST_GICC_BASE, pa, size)
            .map_err(|_| "the GIC virtual CPU interface cannot be mapped")?;
    }
    for channel in &config.channels {
        map_channel(&mut stage2, channel).map_err(|_| {
            crate::error!("vm {name}: channel {} cannot be mapped", channel.name);
            "a channel's pages cannot be mapped"
        })?;
    }
    let start = Start::of(&config, id, image, images, &ram)?;
    let filled = start.filled();
    if filled
        .iter()
        .any(|&(at, len)| ram.slice(ram.ipa_base + at, len).is_err())
    {
        return Err("its guest image does not fit in its RAM");
    }
    // Nothing is cleared or written yet: the CPU that first picks vCPU 0
    // does it (`Work::Zero`), then the images go in.
    let written = start.written(&ram);
    let ram_state = super::clear::RamState::new(&ram, &written, &filled, eager, &mut stage2)
        .map_err(|_| "its RAM cannot be mapped")?;
    let whole_mib = ram.size().is_multiple_of(1 << 20);
    info!(
        "vm {name}: guest {guest} ({}), {vcpus} vCPU, RAM {:#x}..{:#x} ({} {}) at IPA {GUEST_RAM_BASE:#x}, image {} bytes",
        width.name(),
        ram.pa_base,
        ram.pa_base + ram.size(),
        ram.size() >> if whole_mib { 20 } else { 10 },
        if whole_mib { "MiB" } else { "KiB" },
        image.len()
    );
    for channel in &config.channels {
        let (size, unit) = match channel.data.size {
            size if size % (1 << 20) == 0 => (size >> 20, "MiB"),
            size => (size >> 10, "KiB"),
        };
        info!(
            "vm {name}: channel {}: {} {size} {unit} at {:#x}, SPI {}",
            channel.name,
            if channel.writer { "writes" } else { "reads" },
            channel.data_ipa,
            channel.intid.saturating_sub(32)
        );
    }
    let vcpu_list = (0..vcpus)
        .map(|index| {
            let power = if index == 0 { Power::On } else { Power::Off };
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
                ctx: Some(alloc::boxed::Box::new(if index == 0 {
                    start.context(platform, width)
                } else {
                    platform.new_context(0, 0, index, width)
                })),
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
        id,
        channel_peers: alloc::vec::Vec::new(),
        generation: 0,
        channels_to_clear: false,
        first_vcpu,
        start,
        reset_requested: false,
        ram_state,
        last_reset: None,
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

/// What a VM's RAM holds when it starts, and how its vCPU 0 enters it.
pub(crate) struct Start {
    /// Images copied in, at offsets from the RAM's base.
    blobs: alloc::vec::Vec<(u64, &'static [u8])>,
    /// A Tessera guest's start info and channel table, in the RAM's last
    /// page.
    /// (The table only if it lists a channel: most VMs have none, and it is
    /// 776 bytes.)
    info: Option<(StartInfo, Option<alloc::boxed::Box<ChannelTable>>)>,
    /// vCPU 0's entry point (guest-physical) and x0..x2.
    entry: u64,
    regs: [u64; 3],
}

impl Start {
    /// A Tessera guest: its image at the RAM's base, entered there with
    /// x0 = its start info. Linux: kernel, device tree and initrd where the
    /// composer placed them, entered at the kernel with the device tree's
    /// address in x0 (arm64) or r2 (arm, with r0 = 0 and r1 = ~0: no
    /// machine number, a device tree).
    fn of(
        config: &VmConfig<'static>,
        id: u32,
        image: &'static [u8],
        images: &[&'static [u8]],
        ram: &GuestRam,
    ) -> Result<Start, &'static str> {
        let Some(linux) = &config.linux else {
            let info = start_info(id, &config.name, &config.cmdline, ram.size(), config.vcpus);
            let channels = (!config.channels.is_empty())
                .then(|| alloc::boxed::Box::new(channel_table(&config.channels)));
            if image.len() as u64 > ram.size().saturating_sub(crate::memory::START_INFO_PAGE) {
                return Err("its guest image does not fit in its RAM");
            }
            return Ok(Start {
                blobs: alloc::vec![(0, image)],
                info: Some((info, channels)),
                entry: GUEST_RAM_BASE,
                regs: [ram.start_info_ipa(), 0, 0],
            });
        };
        let blob = |b: config::vm::Blob| {
            images
                .get(b.image as usize)
                .map(|&bytes| (b.offset, bytes))
                .ok_or("its device tree or initrd is not in the image")
        };
        let mut blobs = alloc::vec![(linux.kernel_offset, image), blob(linux.dtb)?];
        if let Some(initrd) = linux.initrd {
            blobs.push(blob(initrd)?);
        }
        let dtb = GUEST_RAM_BASE + linux.dtb.offset;
        Ok(Start {
            blobs,
            info: None,
            entry: GUEST_RAM_BASE + linux.kernel_offset,
            regs: match config.width {
                GuestWidth::Aarch64 => [dtb, 0, 0],
                GuestWidth::Aarch32 => [0, u64::from(u32::MAX), dtb],
            },
        })
    }

    /// The RAM the images fill (offset, length): never cleared first.
    pub fn filled(&self) -> alloc::vec::Vec<(u64, u64)> {
        self.blobs
            .iter()
            .map(|&(offset, bytes)| (offset, bytes.len() as u64))
            .collect()
    }

    /// The RAM it writes (offset, length): the images and the start info's
    /// page, which is cleared first.
    pub fn written(&self, ram: &GuestRam) -> alloc::vec::Vec<(u64, u64)> {
        let mut written = self.filled();
        if self.info.is_some() {
            let page = crate::memory::START_INFO_PAGE;
            written.push((ram.size() - page, page));
        }
        written
    }

    /// Writes the images and the start info into the (cleared) RAM and
    /// makes them visible to a guest with its caches off.
    pub fn place<P: Platform>(
        &self,
        ram: &GuestRam,
        platform: &mut P,
    ) -> Result<(), crate::memory::MemoryError> {
        for &(offset, bytes) in &self.blobs {
            let at = ram.slice(ram.ipa_base + offset, bytes.len() as u64)?;
            platform.load_guest(at, bytes);
            platform.sync_guest_memory(at);
        }
        if let Some((info, channels)) = &self.info {
            let channels = channels.as_deref().unwrap_or(&ChannelTable::EMPTY);
            let page = ram.write_start_info(platform, info, channels)?;
            platform.sync_guest_memory(page);
        }
        Ok(())
    }

    /// vCPU 0 as it starts.
    pub fn context<P: Platform>(&self, platform: &P, width: GuestWidth) -> P::Context {
        let mut ctx = platform.new_context(self.entry, self.regs[0], 0, width);
        ctx.set_reg(1, self.regs[1]);
        ctx.set_reg(2, self.regs[2]);
        ctx
    }
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

/// A channel's state page (read-only) and data pages (read-write for the
/// writer) in a side's stage-2.
fn map_channel(stage2: &mut Stage2, channel: &ChannelEnd) -> Result<(), stage2::MapError> {
    stage2.map_shared(channel.state_ipa, channel.state, stage2::PAGE_SIZE, false)?;
    stage2.map_shared(
        channel.data_ipa,
        channel.data.base,
        channel.data.size,
        channel.writer,
    )
}

/// What a Tessera guest is told of its channels (the composer bounds
/// them; more than the table holds are left out rather than trusted).
fn channel_table(channels: &[ChannelEnd]) -> ChannelTable {
    let mut table = ChannelTable::EMPTY;
    for (info, channel) in table.channels.iter_mut().zip(channels) {
        let name = &channel.name.as_bytes()[..channel.name.len().min(abi::CHANNEL_NAME_LEN)];
        let mut padded = [0; abi::CHANNEL_NAME_LEN];
        padded[..name.len()].copy_from_slice(name);
        *info = ChannelInfo {
            name: padded,
            base: channel.data_ipa,
            size: channel.data.size,
            state: channel.state_ipa,
            intid: channel.intid,
            flags: if channel.writer {
                abi::CHANNEL_WRITER
            } else {
                0
            },
        };
        table.count += 1;
    }
    table
}
