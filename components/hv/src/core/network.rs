//! Virtual networks between VMs (`[[network]]`): the VMs' network devices
//! are the ports of the hypervisor's switch (`crate::switch`). When a guest
//! notifies its transmit queue, the core hands the CPU a [`DeviceJob`],
//! which it runs without the hypervisor's lock: the device copies each
//! frame once into the CPU's outbox, the switch routes it, and each
//! receiving device copies it into its guest's receive buffers, each
//! device under its own lock. The interrupts the job raised are applied
//! when the CPU takes the hypervisor's lock again.
//!
//! A flooding VM thus holds the lock every CPU needs only for its exits,
//! not for its copies: under QEMU's round-robin CPUs a turn that ended in
//! the middle of a copy used to keep every other CPU's exits waiting.

use super::{Hypervisor, VmState};
use crate::{
    device::{Backing, DeviceCell, FrameSink, Signal, MAX_FRAME},
    memory::{GuestMemory, GuestRam},
    platform::Platform,
    sched::{CpuId, Scheduler, VcpuId},
    switch::{Port, Switch},
    sync::Mutex,
    vgic::Vgic,
};
use alloc::{sync::Arc, vec::Vec};

/// Frames one `work` call may send before they are delivered.
const OUTBOX_FRAMES: usize = 32;
/// Most rounds of work and delivery one notify gets: a transmit queue
/// holds at most 256 chains, 8 outboxes; the bound stops a device that
/// asks for work for ever.
const WORK_ROUNDS: usize = 64;

/// The frames a network device sent in one `work` call.
pub(crate) struct Outbox {
    bytes: Vec<u8>,
    lens: Vec<usize>,
    /// Frames over [`MAX_FRAME`] a device handed over (a device bug):
    /// dropped here.
    pub oversized: u64,
}

impl Outbox {
    fn new() -> Self {
        Outbox {
            bytes: alloc::vec![0; OUTBOX_FRAMES * MAX_FRAME],
            lens: Vec::with_capacity(OUTBOX_FRAMES),
            oversized: 0,
        }
    }

    fn frame(&self, index: usize) -> &[u8] {
        &self.bytes[index * MAX_FRAME..][..self.lens[index]]
    }
}

impl FrameSink for Outbox {
    fn send(&mut self, frame: &[u8]) -> bool {
        if frame.len() > MAX_FRAME {
            self.oversized += 1;
            return true;
        }
        let index = self.lens.len();
        if index == OUTBOX_FRAMES {
            return false;
        }
        self.bytes[index * MAX_FRAME..][..frame.len()].copy_from_slice(frame);
        self.lens.push(frame.len());
        true
    }
}

/// A port as a CPU outside the hypervisor's lock reaches it.
struct PortCell {
    port: Port,
    device: Arc<DeviceCell>,
    ram: GuestRam,
    /// Its VM's first vCPU, for whom the core raises its interrupts.
    vcpu: VcpuId,
}

/// What every CPU serving a transmit shares: the switch and its ports.
pub(crate) struct Networks {
    switch: Mutex<Switch>,
    ports: Vec<PortCell>,
}

impl Networks {
    fn port(&self, port: Port) -> Option<&PortCell> {
        self.ports.iter().find(|p| p.port == port)
    }

    #[cfg(test)]
    pub(super) fn port_count(&self) -> usize {
        self.switch.lock().ports()
    }
}

/// A transmit a CPU serves without the hypervisor's lock
/// ([`super::Work::Device`]); [`Hypervisor::after_device`] takes it back.
pub struct DeviceJob {
    vcpu: VcpuId,
    from: Port,
    networks: Arc<Networks>,
    outbox: Outbox,
    targets: Vec<Port>,
    /// The interrupts to raise: one per device, merged.
    signals: Vec<(VcpuId, usize, Signal)>,
}

impl DeviceJob {
    pub(super) fn into_outbox(self) -> Outbox {
        self.outbox
    }

    /// Serves the transmit queue until it is empty (or [`WORK_ROUNDS`]),
    /// delivering what it sent after each round. `memory` reaches guest
    /// RAM without the hypervisor's lock.
    pub fn run(&mut self, memory: &mut dyn GuestMemory) {
        let Some(sender) = self.networks.port(self.from) else {
            return;
        };
        let (device, ram) = (sender.device.clone(), sender.ram);
        for _ in 0..WORK_ROUNDS {
            let done = {
                let mut ops = device.lock();
                if !device.is_open() {
                    break;
                }
                ops.work(Backing {
                    ram: &ram,
                    memory: &mut *memory,
                    disk: None,
                    frames: Some(&mut self.outbox),
                })
            };
            note(&mut self.signals, self.vcpu, self.from.device, done);
            self.deliver(memory);
            if !done.work {
                break;
            }
        }
    }

    /// Routes and hands over every frame in the outbox.
    fn deliver(&mut self, memory: &mut dyn GuestMemory) {
        let DeviceJob {
            from,
            networks,
            outbox,
            targets,
            signals,
            ..
        } = self;
        for index in 0..outbox.lens.len() {
            let frame = outbox.frame(index);
            targets.clear();
            // A dropped frame is counted by the switch; nothing to tell.
            let _ = networks
                .switch
                .lock()
                .route(*from, frame, |port| targets.push(port));
            for &port in targets.iter() {
                let Some(to) = networks.port(port) else {
                    continue;
                };
                let signal = {
                    let mut ops = to.device.lock();
                    if !to.device.is_open() {
                        continue;
                    }
                    ops.receive(
                        frame,
                        Backing {
                            ram: &to.ram,
                            memory: &mut *memory,
                            disk: None,
                            frames: None,
                        },
                    )
                };
                note(signals, to.vcpu, port.device, signal);
            }
        }
        outbox.lens.clear();
    }
}

/// Adds what a device asked for to `signals`, one entry per device: raises
/// merge, the last line level stands.
fn note(signals: &mut Vec<(VcpuId, usize, Signal)>, vcpu: VcpuId, device: usize, signal: Signal) {
    if !signal.raise && signal.level.is_none() {
        return;
    }
    match signals
        .iter_mut()
        .find(|(v, d, _)| *v == vcpu && *d == device)
    {
        Some((_, _, merged)) => {
            merged.raise |= signal.raise;
            merged.level = signal.level.or(merged.level);
        }
        None => signals.push((vcpu, device, signal)),
    }
}

impl<P: Platform, S: Scheduler, V: Vgic> Hypervisor<P, S, V> {
    /// Once every VM is built: each network device the composer put on a
    /// network (found by its MAC) becomes a port of that network's switch.
    pub(super) fn connect_networks(&mut self) {
        let mut switch = Switch::default();
        let mut ports = Vec::new();
        for vm in 0..self.vms.len() {
            let wanted = self.vms[vm].config.devices.iter().filter_map(|d| d.net);
            for net in wanted {
                let devices = &self.vms[vm].devices;
                let found =
                    (0..devices.device_count()).find(|&d| devices.device(d).mac() == Some(net.mac));
                match found {
                    Some(device) => {
                        let port = Port { vm, device };
                        switch.add_port(net.network as usize, port, net.mac);
                        ports.push(PortCell {
                            port,
                            device: devices.device(device).clone(),
                            ram: self.vms[vm].ram,
                            vcpu: VcpuId(self.vms[vm].first_vcpu as u32),
                        });
                    }
                    None => crate::error!(
                        "vm {}: no network device for its port on network {}",
                        self.vms[vm].config.name,
                        net.network
                    ),
                }
            }
        }
        if !ports.is_empty() {
            self.networks = Some(Arc::new(Networks {
                switch: Mutex::new(switch),
                ports,
            }));
            self.outboxes = (0..self.cpus.len()).map(|_| Some(Outbox::new())).collect();
        }
    }

    /// Device `device` of `vcpu`'s VM, on `cpu`, asked for work: a network
    /// port's is handed to `cpu` as a job to run without the lock; any
    /// other device's (a disk's) is done here, in the trap.
    pub(super) fn device_work(&mut self, cpu: CpuId, vcpu: VcpuId, device: usize) {
        let vm = self.vm_of(vcpu);
        let from = Port { vm, device };
        if let Some(networks) = self.networks.as_ref().filter(|n| n.port(from).is_some()) {
            let outbox = self.outboxes[cpu.0 as usize]
                .take()
                .expect("one job per CPU at a time");
            self.jobs[cpu.0 as usize] = Some(DeviceJob {
                vcpu,
                from,
                networks: networks.clone(),
                outbox,
                targets: Vec::new(),
                signals: Vec::new(),
            });
            return;
        }
        for _ in 0..WORK_ROUNDS {
            let state = &mut self.vms[vm];
            let done = state.devices.device(device).lock().work(Backing {
                ram: &state.ram,
                memory: &mut self.platform,
                disk: self
                    .disk
                    .as_deref_mut()
                    .map(|d| d as &mut dyn crate::disk::BlockDevice),
                frames: None,
            });
            self.signal(vcpu, device, done);
            if !done.work {
                break;
            }
        }
    }

    /// `cpu` ran `job` for `vcpu`: the interrupts it raised are raised in
    /// the VMs still running, and `vcpu` goes on (or leaves, if its VM
    /// stopped or reset meanwhile).
    pub fn after_device(&mut self, cpu: CpuId, vcpu: VcpuId, job: DeviceJob) {
        self.acting = cpu;
        let DeviceJob {
            outbox, signals, ..
        } = job;
        self.outboxes[cpu.0 as usize] = Some(outbox);
        for (target, device, signal) in signals {
            if self.vms[self.vm_of(target)].state == VmState::Running {
                self.signal(target, device, signal);
            }
        }
        if !self.can_run(vcpu) {
            self.unload(cpu, vcpu);
        } else if self.cpus[cpu.0 as usize].rearm {
            self.arm_timer(cpu);
        }
    }
}
