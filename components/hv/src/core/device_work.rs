//! The work a device asks for when its guest notifies a virtqueue. A
//! network device's is served in the trap, under the lock, one frame per
//! exit (`network.rs`). Any other device's (a disk's requests) is served
//! on the notifying CPU without the hypervisor's lock ([`DeviceJob`]):
//! a FLUSH or a cold read takes milliseconds of the disk's own time, and
//! every other CPU's exits need that lock. The device is out of its VM's
//! table meanwhile: another vCPU's access to it is made again later; the
//! hypervisor's disk is behind a lock of its own.

use super::{Hypervisor, VmState};
use crate::{
    device::{Backing, MmioDevice, Signal},
    disk::{BlockDevice, SharedDisk},
    memory::{GuestMemory, GuestRam},
    platform::Platform,
    sched::{CpuId, Scheduler, VcpuId},
    switch::Port,
    vgic::Vgic,
};
use alloc::boxed::Box;

/// Most rounds of work one notify gets: a device that asks for work again
/// (it left requests for later) is called again, up to this bound, which
/// stops one that asks for ever.
const WORK_ROUNDS: usize = 64;

/// One device's work, served by the CPU whose vCPU notified it, without
/// the hypervisor's lock ([`DeviceJob::run`]); then
/// [`Hypervisor::after_device`] puts the device back. The vCPU stays on
/// that CPU meanwhile, so its VM cannot be reset (its RAM cleared) under
/// the job.
pub struct DeviceJob {
    vcpu: VcpuId,
    vm: usize,
    device: usize,
    ops: Box<dyn MmioDevice>,
    ram: GuestRam,
    disk: Option<SharedDisk>,
    /// What the rounds asked of the core, applied when the device is back.
    signal: Signal,
}

impl DeviceJob {
    /// Serves the work, reaching guest RAM through `memory`.
    pub fn run(&mut self, memory: &mut dyn GuestMemory) {
        let mut disk = self.disk.as_ref().map(|disk| disk.lock());
        for _ in 0..WORK_ROUNDS {
            let backing = Backing {
                ram: &self.ram,
                memory: &mut *memory,
                disk: disk
                    .as_deref_mut()
                    .map(|d| &mut **d as &mut dyn BlockDevice),
                frames: None,
            };
            let done = self.ops.work(backing);
            self.signal = Signal {
                raise: self.signal.raise || done.raise,
                level: done.level.or(self.signal.level),
                console_line: self.signal.console_line || done.console_line,
                work: done.work,
            };
            if !done.work {
                break;
            }
        }
    }
}

impl<P: Platform, S: Scheduler, V: Vgic> Hypervisor<P, S, V> {
    /// Device `device` of `vcpu`'s VM asked for work. A network device's is
    /// served now: false if it has more to send, and the access that asked
    /// is to be made again. Any other's is taken out for the acting CPU to
    /// serve after this exit, without the lock ([`super::Work::Device`]).
    pub(super) fn device_work(&mut self, vcpu: VcpuId, device: usize) -> bool {
        let vm = self.vm_of(vcpu);
        let port = Port { vm, device };
        if self.switch.find(port).is_some() {
            return self.transmit(vcpu, port);
        }
        let Some(ops) = self.vms[vm].devices.take(device) else {
            return true;
        };
        let cpu = self.acting.0 as usize;
        debug_assert!(self.jobs[cpu].is_none(), "one notify per exit");
        self.jobs[cpu] = Some(Box::new(DeviceJob {
            vcpu,
            vm,
            device,
            ops,
            ram: self.vms[vm].ram,
            disk: self.disk.clone(),
            signal: Signal::default(),
        }));
        true
    }

    /// `job`, which `cpu`'s vCPU asked for in the exit just handled, if
    /// `cpu` is to serve it before it goes back into that vCPU.
    #[cold]
    pub(super) fn job_for(&mut self, cpu: CpuId, job: Box<DeviceJob>) -> Option<Box<DeviceJob>> {
        if self.cpus[cpu.0 as usize].running == Some(job.vcpu) {
            return Some(job);
        }
        // The vCPU left its CPU in the same exit (it cannot: a notify
        // resumes it). Without it there, a reset could clear its VM's RAM
        // under the job: served here, under the lock, instead.
        let mut job = job;
        job.run(&mut self.platform);
        self.device_back(*job);
        None
    }

    /// `cpu` served `job`: the device goes back into its table, what it
    /// asked is applied, and its vCPU goes on (or leaves the CPU, if its
    /// VM stopped or reset meanwhile).
    pub fn after_device(&mut self, cpu: CpuId, job: DeviceJob) {
        self.acting = cpu;
        let vcpu = job.vcpu;
        self.device_back(job);
        let next = if self.can_run(vcpu) {
            super::exit::Next::Resume
        } else {
            super::exit::Next::Block
        };
        self.exit_handled(cpu, vcpu, next);
    }

    fn device_back(&mut self, job: DeviceJob) {
        let DeviceJob {
            vcpu,
            vm,
            device,
            ops,
            signal,
            ..
        } = job;
        let reset = self.vms[vm].devices.put_back(device, ops);
        if reset || self.vms[vm].state != VmState::Running {
            return;
        }
        if signal.console_line {
            self.note_first_guest_line();
        }
        self.signal(vcpu, device, signal);
    }
}
