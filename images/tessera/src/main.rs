//! The Tessera image: the composition root. `build.rs` turned the board's
//! validated composition into `composition.rs`; this file wires those
//! components into the core and boots it. Only this file and the arch
//! crate touch hardware addresses.
#![no_std]
#![no_main]

extern crate alloc;

mod board;
mod guest_ram;

#[allow(dead_code)]
mod composition {
    include!(concat!(env!("OUT_DIR"), "/composition.rs"));
}

// The one place the target's arch crate is chosen; its mode module (EL2
// or HYP) is `hyp` here either way.
#[cfg(target_arch = "aarch64")]
use arch_aarch64::{self as arch, el2 as hyp};
#[cfg(target_arch = "arm")]
use arch_armv7::{self as arch, hyp};

use arch::relax::Mutex;
use arch::{mmu, psci};
use composition as c;
use config::boot::VmTable;
use hv::{
    core::{run_cpu, Outside},
    info,
    sched::CpuId,
    Hypervisor,
};
use linked_list_allocator::LockedHeap;
use spin::Once;

#[global_allocator]
static HEAP: Heap = Heap(LockedHeap::empty());

/// The boot-time heap, its zeroed allocations (stage-2 tables, 4 KiB each)
/// cleared by the arch layer's `mem::zero` (on ARMv7 32 bytes a store,
/// where `compiler_builtins` stores a word a loop).
struct Heap(LockedHeap);

// SAFETY: every call goes to `LockedHeap`, a `GlobalAlloc`, with the
// caller's arguments; `alloc_zeroed` zeroes exactly the block it returns,
// which no one else holds yet.
unsafe impl core::alloc::GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: core::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { self.0.alloc(layout) };
        if !ptr.is_null() {
            // SAFETY: a fresh block of `layout.size()` bytes, ours alone.
            unsafe { arch::mem::zero(ptr, layout.size()) };
        }
        ptr
    }
}

/// The EL2 (HYP) identity map, W^X over the image: the boot CPU fills it
/// from the board's RAM and the image's layout before its MMU is on.
static EL2_TABLES: mmu::Tables<{ c::HV_L3_TABLES }> = mmu::Tables::new();

extern "C" {
    static __heap_start: u8;
    static __heap_end: u8;
}

/// Entered from `_start` at EL2 (HYP) on the boot CPU, stack set, bss zeroed.
#[no_mangle]
extern "C" fn tessera_main(_dtb: u64) -> ! {
    EL2_TABLES.build(c::RAM_BASE, c::RAM_SIZE, &mmu::layout());
    mmu::enable(&EL2_TABLES);
    board::init_console();
    init_heap();
    hyp::init();
    info!(
        "Tessera {} on {} ({}, {}), {} CPU, RAM {:#x}..{:#x}",
        env!("CARGO_PKG_VERSION"),
        c::BOARD,
        arch::ARCH,
        arch::MODE,
        c::CPUS,
        c::RAM_BASE,
        c::RAM_BASE + c::RAM_SIZE
    );
    info!(
        "components: scheduler {} ({} us slice), uart {}, gic v{}, pv {}",
        c::SCHEDULER,
        c::TIME_SLICE_US,
        c::UART_DRIVER,
        c::GIC_VERSION,
        c::PV
    );
    match c::SELFTEST {
        Some("el2-fault") => {
            info!("self-test: the hypervisor reads an address it does not map");
            hyp::selftest_fault();
        }
        Some("wx-text") => {
            info!("self-test: the hypervisor writes to its own text");
            hyp::selftest_write_text();
            hv::error!("self-test: W^X BROKEN: hypervisor text is writable");
            psci::system_off();
        }
        Some("wx-data") => {
            info!("self-test: the hypervisor executes from its data");
            hyp::selftest_exec_data();
            hv::error!("self-test: W^X BROKEN: hypervisor data is executable");
            psci::system_off();
        }
        Some("stack-guard") => {
            info!("self-test: the hypervisor overflows its stack");
            hyp::selftest_stack_overflow();
        }
        _ => {}
    }
    let mut disk = open_disk();
    let heap_at_start = HEAP.0.lock().used();
    let (platform, vif) = board::Board::new();
    let table = vm_table();
    let vm_count = table.vms.len();
    let devices = vm_devices(
        &table,
        disk.as_mut()
            .map(|d| d.as_mut() as &mut dyn hv::disk::BlockDevice),
    );
    let mut hv = Hypervisor::new(
        platform,
        vif,
        table,
        &c::GUEST_IMAGES,
        devices,
        c::CPUS,
        c::TIME_SLICE_US,
    );
    if let Some(disk) = disk {
        hv.set_disk(disk);
    }
    info!("{}-bit VMIDs", hyp::vmid_bits());
    // From here on, CPUs write console output after leaving the lock.
    let (hv_quota, quota) = console_quotas(vm_count);
    hv::log::queue_output(1 + vm_count, hv_quota, quota, || {
        <arch::relax::Yield as spin::RelaxStrategy>::relax()
    });
    report_memory(&hv, HEAP.0.lock().used() - heap_at_start);
    info!("starting {} VMs", hv.running_vms());
    let hv = HYPERVISOR.call_once(|| Mutex::new(hv));
    start_secondaries();
    cpu_loop(hv, CpuId(0))
}

/// The board's disk (`[disk]`), if it has one: probed once by its driver
/// (polled, on this CPU, before any VM runs) and what is on it reported,
/// one line for the disk and one per partition and LV. A missing or
/// unreadable disk is a line too; the VMs start either way (those with
/// disks do not).
fn open_disk() -> Option<alloc::boxed::Box<dyn hv::disk::BlockDevice + Send>> {
    let (what, probed) = c::probe_disk()?;
    match probed {
        Ok(mut disk) => {
            for line in hv::disk::report(what, disk.as_mut()) {
                info!("{line}");
            }
            Some(disk)
        }
        Err(e) => {
            info!("disk: {what}: none ({e})");
            None
        }
    }
}

type Tessera = Hypervisor<board::Board, c::Scheduler, c::Vgic>;

/// Each VM's emulated devices, made by the components the composition
/// linked (`composition::new_device`); a VM's disks are its volumes of
/// `disk`, resolved here. A VM whose device cannot be made does not start.
fn vm_devices(
    table: &VmTable<'static>,
    disk: Option<&mut dyn hv::disk::BlockDevice>,
) -> alloc::vec::Vec<hv::VmDevices> {
    let requests: alloc::vec::Vec<hv::disk::Request> = table
        .vms
        .iter()
        .flat_map(|vm| {
            vm.devices.iter().filter_map(|d| {
                d.disk.as_ref().map(|disk| hv::disk::Request {
                    vm: &vm.name,
                    source: &disk.source,
                    read_only: disk.read_only,
                    min_sectors: disk.min_sectors,
                })
            })
        })
        .collect();
    let mut volumes = match disk {
        Some(disk) if !requests.is_empty() => hv::disk::serve_all(disk, &requests),
        _ => alloc::vec::Vec::new(),
    }
    .into_iter();
    table
        .vms
        .iter()
        .enumerate()
        .map(|(index, vm)| {
            // Decoded in place, the name borrows from the image.
            let name: &'static str = match &vm.name {
                alloc::borrow::Cow::Borrowed(name) => name,
                alloc::borrow::Cow::Owned(name) => {
                    alloc::boxed::Box::leak(name.clone().into_boxed_str())
                }
            };
            // This VM's volumes, taken whether or not it starts.
            let mut its_volumes = vm
                .devices
                .iter()
                .filter_map(|d| d.disk.as_ref())
                .map(|wanted| {
                    volumes.next().unwrap_or_else(|| {
                        Err(alloc::format!(
                            "disk {}: the board's disk is not there",
                            wanted.source
                        ))
                    })
                })
                .collect::<alloc::vec::Vec<_>>()
                .into_iter();
            let mut next_volume = || its_volumes.next().expect("one volume per disk, above");
            let mut made = alloc::vec::Vec::new();
            for d in &vm.devices {
                let volume = match &d.disk {
                    None => None,
                    Some(_) => Some(next_volume()?),
                };
                if let Some(served) = &volume {
                    info!(
                        "vm {name}: disk {}: {} sectors ({}){} at {:#x}, SPI {}",
                        served.source,
                        served.volume.sectors(),
                        hv::disk::human_size(served.volume.sectors() * hv::disk::SECTOR as u64),
                        if served.read_only { ", read-only" } else { "" },
                        d.base,
                        d.intid - 32
                    );
                }
                if let Some(net) = d.net {
                    let m = net.mac;
                    info!(
                        "vm {name}: network {}: {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} at {:#x}, SPI {}",
                        net.network,
                        m[0], m[1], m[2], m[3], m[4], m[5],
                        d.base,
                        d.intid - 32
                    );
                }
                let setup = hv::device::Setup {
                    vm_name: name,
                    vm_index: index,
                    intid: d.intid,
                    volume,
                    mac: d.net.map(|net| net.mac),
                };
                match c::new_device(&d.kind, setup) {
                    Some(Ok(device)) => {
                        made.push((hv::device::Window::new(d.base, d.size), device))
                    }
                    Some(Err(why)) => return Err(alloc::format!("its {} device: {why}", d.kind)),
                    None => hv::error!("vm {name}: no '{}' device in this image", d.kind),
                }
            }
            Ok(made)
        })
        .collect()
}

/// Bytes of console output each VM (and the hypervisor) may have waiting for
/// the UART: about ten full lines.
const CONSOLE_QUOTA: usize = 2048;
/// What all VMs' quotas may add up to; with more VMs each gets less, but
/// never under one whole line.
const CONSOLE_VMS_TOTAL: usize = 128 * 1024;

/// The hypervisor's quota and each VM's: the hypervisor speaks for every
/// VM (a line when each exits), so its quota grows with them.
fn console_quotas(vms: usize) -> (usize, usize) {
    let vm = (CONSOLE_VMS_TOTAL / vms.max(1)).clamp(hv::log::LINE_MAX, CONSOLE_QUOTA);
    (CONSOLE_QUOTA + 64 * vms, vm)
}

/// `Hypervisor::STATE_SIZES` of this image, under a name xtask's manifest
/// reads from the ELF.
#[no_mangle]
static TESSERA_STATE_SIZES: [u32; 3] = {
    let [vm, vcpu, regs] = Tessera::STATE_SIZES;
    [vm as u32, vcpu as u32, regs as u32]
};

/// Says what the VMs cost the hypervisor besides their RAM, measured: the
/// heap taken from building the first VM to queueing console output (VM
/// and vCPU state, stage-2 tables, vGIC models, devices, console quotas),
/// per VM; and the stage-2 tables among it.
fn report_memory(hv: &Tessera, heap: usize) {
    let vms = hv.vm_count().max(1);
    let tables = hv.stage2_tables();
    info!(
        "memory: {heap} bytes of heap for {} VMs, {} per VM; stage 2 {tables} tables ({} per VM)",
        hv.vm_count(),
        heap / vms,
        tables * 4096 / vms
    );
    // Read through its address, so that the linker keeps it for xtask.
    let [vm, vcpu, regs] = *core::hint::black_box(&TESSERA_STATE_SIZES);
    info!("memory: fixed-size state: VM {vm} bytes, vCPU {vcpu}, registers {regs}");
}

/// The hypervisor, shared by the CPUs: each takes the lock for hypervisor
/// work and runs guests without it.
static HYPERVISOR: Once<Mutex<Tessera>> = Once::new();

/// Starts CPUs 1.. through PSCI. QEMU virt (and the boards here) number
/// CPUs by affinity level 0 within one cluster.
fn start_secondaries() {
    for cpu in 1..u64::from(c::CPUS) {
        let status = psci::cpu_on(cpu, arch::_start_secondary as *const () as u64, cpu);
        if status != 0 {
            hv::error!("PSCI CPU_ON for CPU {cpu} failed ({status}); going on without it");
        }
    }
}

/// Entered from `_start_secondary` at EL2 (HYP) on CPU `cpu`, its stack set.
#[no_mangle]
extern "C" fn tessera_secondary_main(cpu: u64) -> ! {
    mmu::enable(&EL2_TABLES);
    hyp::init();
    let hv = HYPERVISOR
        .get()
        .expect("the boot CPU starts secondaries after building the hypervisor");
    hv.lock().platform().init_this_cpu(cpu as usize);
    info!("CPU {cpu} up");
    cpu_loop(hv, CpuId(cpu as u32))
}

/// One physical CPU's life: the core's loop (see `hv::core::run_cpu`),
/// then, when no VM is left, power off.
fn cpu_loop(hv: &Mutex<Tessera>, cpu: CpuId) -> ! {
    run_cpu(hv, cpu, &mut OnThisCpu);
    // The first CPU out reports; the others power off behind it.
    static REPORTED: Once<()> = Once::new();
    REPORTED.call_once(|| info!("{}", hv.lock().exit_report()));
    info!("all VMs stopped, powering off");
    hv::log::drain();
    psci::system_off()
}

/// What this CPU does without the hypervisor's lock.
struct OnThisCpu;

impl Outside<arch::Context> for OnThisCpu {
    fn run_guest(&mut self, ctx: &mut arch::Context) -> hv::RawExit {
        board::run_guest(ctx)
    }
    fn zero(&mut self, chunk: hv::memory::GuestSlice) {
        // Cleaned to the point of coherency too.
        guest_ram::zero(chunk);
    }
    fn wait_for_interrupt(&mut self) {
        arch::wfi();
    }
    fn device_work(&mut self, job: &mut hv::core::DeviceJob) {
        job.run(&mut guest_ram::Direct);
    }
}

fn init_heap() {
    // SAFETY: the linker script reserves __heap_start..__heap_end for the
    // heap; nothing else uses it and this runs once.
    unsafe {
        let start = &raw const __heap_start as usize;
        let end = &raw const __heap_end as usize;
        HEAP.0.lock().init(start as *mut u8, end - start);
    }
}

/// The image's VM table, decoded once, its strings borrowed from the image.
fn vm_table() -> VmTable<'static> {
    match VmTable::decode(&c::VM_TABLE) {
        Ok(table) => table,
        Err(e) => {
            hv::error!("VM table is corrupt ({e:?}); rebuild the image");
            psci::system_off()
        }
    }
}

/// Started at EL1 or in a PL1 mode (e.g. QEMU without
/// `virtualization=on`): say so and stop. `current_el` is CurrentEL on
/// AArch64, CPSR.M on ARMv7.
#[no_mangle]
extern "C" fn tessera_wrong_el(current_el: u64) -> ! {
    for text in [
        "Tessera must be started at ",
        arch::MODE,
        " (QEMU: -M virt,virtualization=on); halting.\n",
    ] {
        board::early_message(current_el >> 2, text);
    }
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hv::error!("hypervisor panic: {info}");
    psci::system_off()
}
