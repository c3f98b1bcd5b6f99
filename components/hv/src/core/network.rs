//! Virtual networks between VMs (`[[network]]`): the VMs' network devices
//! are the ports of the hypervisor's switch (`crate::switch`). A device
//! sends in its `work` (the guest notified its transmit queue) into the
//! core's outbox; the core then routes each frame and hands it to each
//! receiving device, which copies it into its guest's receive buffers.
//! All of it in the sender's trap, under the lock, one frame per exit:
//! delivering writes into other VMs' devices, which other CPUs use.

use super::{Hypervisor, VmState};
use crate::{
    device::{Backing, FrameSink, MAX_FRAME},
    platform::Platform,
    sched::{Scheduler, VcpuId},
    switch::Port,
    vgic::Vgic,
};
use alloc::vec::Vec;

/// Frames one exit may send: the core delivers them and, if the device
/// has more, lets the lock go and has the guest's notify made again (its
/// store traps again). A neighbour waiting for the lock then waits for at
/// most this many frames' copies, not a whole queue's.
const OUTBOX_FRAMES: usize = 1;

/// One frame's room in the outbox, 8-byte aligned: an aligned frame is
/// copied in and out a word at a time (the hypervisor is built for strict
/// alignment: between differently aligned addresses, byte by byte).
#[repr(C, align(8))]
struct Slot([u8; MAX_FRAME]);

/// The frames a network device sent in one `work` call.
pub(crate) struct Outbox {
    slots: Vec<Slot>,
    lens: Vec<usize>,
    /// Frames over [`MAX_FRAME`] a device handed over (a device bug):
    /// dropped here.
    pub oversized: u64,
}

impl Outbox {
    fn new() -> Self {
        Outbox {
            slots: (0..OUTBOX_FRAMES).map(|_| Slot([0; MAX_FRAME])).collect(),
            lens: Vec::with_capacity(OUTBOX_FRAMES),
            oversized: 0,
        }
    }

    fn frame(&self, index: usize) -> &[u8] {
        &self.slots[index].0[..self.lens[index]]
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
        self.slots[index].0[..frame.len()].copy_from_slice(frame);
        self.lens.push(frame.len());
        true
    }
}

impl<P: Platform, S: Scheduler, V: Vgic> Hypervisor<P, S, V> {
    /// Once every VM is built: each network device the composer put on a
    /// network (found by its MAC) becomes a port of that network's switch.
    pub(super) fn connect_networks(&mut self) {
        for vm in 0..self.vms.len() {
            let ports: Vec<_> = self.vms[vm]
                .config
                .devices
                .iter()
                .filter_map(|d| d.net)
                .collect();
            for net in ports {
                let devices = &mut self.vms[vm].devices;
                let found = (0..devices.device_count()).find(|&d| devices.mac(d) == Some(net.mac));
                match found {
                    Some(device) => {
                        let port = Port { vm, device };
                        self.switch.add_port(net.network as usize, port, net.mac);
                    }
                    None => crate::error!(
                        "vm {}: no network device for its port on network {}",
                        self.vms[vm].config.name,
                        net.network
                    ),
                }
            }
        }
        if self.switch.ports() > 0 {
            self.outbox = Some(Outbox::new());
        }
    }

    /// Serves one round of a network device's transmit work under the
    /// lock (`Backing::frames` the outbox) and delivers what it sent. False
    /// if it has more to send: the access that asked is made again.
    pub(super) fn transmit(&mut self, vcpu: VcpuId, port: Port) -> bool {
        let state = &mut self.vms[port.vm];
        let Some(device) = state.devices.device(port.device) else {
            return true;
        };
        let backing = Backing {
            ram: &state.ram,
            memory: &mut self.platform,
            disk: None,
            frames: self.outbox.as_mut().map(|o| o as &mut dyn FrameSink),
        };
        let done = device.work(backing);
        self.signal(vcpu, port.device, done);
        self.deliver(port);
        !done.work
    }

    /// Routes and hands over every frame in the outbox, sent by `from`.
    fn deliver(&mut self, from: Port) {
        let Some(outbox) = self.outbox.take() else {
            return;
        };
        let mut targets = core::mem::take(&mut self.targets);
        for index in 0..outbox.lens.len() {
            let frame = outbox.frame(index);
            targets.clear();
            // A dropped frame is counted by the switch; nothing to tell.
            let _ = self.switch.route(from, frame, |port| targets.push(port));
            for &port in &targets {
                self.receive(port, frame);
            }
        }
        let mut outbox = outbox;
        outbox.lens.clear();
        self.outbox = Some(outbox);
        self.targets = targets;
    }

    /// `frame` for `port`, if its VM runs and is not being reset (its RAM
    /// may be being cleared without the lock).
    fn receive(&mut self, port: Port, frame: &[u8]) {
        let state = &mut self.vms[port.vm];
        if state.state != VmState::Running || state.reset_requested || state.ram_state.busy() {
            return;
        }
        let backing = Backing {
            ram: &state.ram,
            memory: &mut self.platform,
            disk: None,
            frames: None,
        };
        let Some(device) = state.devices.device(port.device) else {
            return;
        };
        let signal = device.receive(frame, backing);
        let first = VcpuId(state.first_vcpu as u32);
        self.signal(first, port.device, signal);
    }
}
