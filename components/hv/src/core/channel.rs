//! Inter-VM channels (ABI 1.3): pages one VM writes and another reads,
//! mapped by `vm::build` from the composer's placement, and a doorbell.
//! The core answers `CHANNEL_NOTIFY` and keeps each channel's state page
//! (`abi::ChannelState`); it never reads the data pages.

use super::{vm::Vm, Hypervisor, RunState, VmState};
use crate::{
    memory::{GuestRam, GuestSlice},
    platform::Platform,
    sched::{Scheduler, VcpuId},
    vgic::Vgic,
};
use abi::{ChannelState, Error, CHANNEL_SIDE_RUNNING, CHANNEL_SIDE_STOPPED};
use config::vm::ChannelEnd;
use core::mem::offset_of;

/// The other side of a channel: its VM (index in the hypervisor's VMs) and
/// the interrupt that side is notified on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Peer {
    pub vm: usize,
    pub intid: u32,
}

/// The `len` bytes at host-physical `pa`, where the composer put a
/// channel's page: not any VM's RAM, so made here, from the end's own
/// addresses.
fn channel_slice(pa: u64, len: u64) -> GuestSlice {
    GuestRam::new(0, pa, len).all()
}

/// This side's two words in the channel's state page.
fn side_words(end: &ChannelEnd) -> GuestSlice {
    let offset = if end.writer {
        offset_of!(ChannelState, writer)
    } else {
        offset_of!(ChannelState, reader)
    };
    channel_slice(end.state + offset as u64, 8)
}

impl<P: Platform, S: Scheduler, V: Vgic> Hypervisor<P, S, V> {
    /// Once every VM is built: each side finds the other among the VMs
    /// that started and says it runs; a side whose VM did not start is
    /// marked stopped, so the other is not left waiting on it.
    pub(super) fn connect_channels(&mut self) {
        for vm in 0..self.vms.len() {
            let peers = self.vms[vm]
                .config
                .channels
                .iter()
                .map(|end| self.peer_of(end))
                .collect();
            self.vms[vm].channel_peers = peers;
        }
        // Each channel starts empty, its state page zero but for the words:
        // cleared once, by its writer's side or, without one, its reader's.
        for vm in 0..self.vms.len() {
            for index in 0..self.vms[vm].config.channels.len() {
                let end = &self.vms[vm].config.channels[index];
                if end.writer || self.vms[vm].channel_peers[index].is_none() {
                    let state = channel_slice(end.state, crate::stage2::PAGE_SIZE);
                    let data = channel_slice(end.data.base, end.data.size);
                    self.zero(state);
                    self.zero(data);
                }
            }
        }
        for vm in 0..self.vms.len() {
            for index in 0..self.vms[vm].config.channels.len() {
                self.write_side(vm, index, CHANNEL_SIDE_RUNNING);
                if self.vms[vm].channel_peers[index].is_none() {
                    let end = &self.vms[vm].config.channels[index];
                    let absent = ChannelEnd {
                        writer: !end.writer,
                        ..end.clone()
                    };
                    self.write_words(side_words(&absent), CHANNEL_SIDE_STOPPED, 0);
                }
            }
        }
    }

    fn peer_of(&self, end: &ChannelEnd) -> Option<Peer> {
        // VMs are built in table order: ids ascend (with gaps where one
        // did not start).
        let vm = self.vms.binary_search_by_key(&end.peer, |v| v.id).ok()?;
        let theirs = self.vms[vm]
            .config
            .channels
            .iter()
            .find(|e| e.name == end.name && e.writer != end.writer)?;
        Some(Peer {
            vm,
            intid: theirs.intid,
        })
    }

    /// `CHANNEL_NOTIFY(index)` from `vcpu`: the other side of its VM's
    /// channel `index` gets its interrupt.
    pub(super) fn channel_notify(&mut self, vcpu: VcpuId, index: u64) -> i64 {
        let vm = self.vm_of(vcpu);
        let peer = usize::try_from(index)
            .ok()
            .and_then(|i| self.vms[vm].channel_peers.get(i));
        match peer {
            None => Error::InvalidParameter as i64,
            Some(peer) => {
                if let Some(peer) = *peer {
                    self.notify(peer);
                }
                0
            }
        }
    }

    /// Makes `peer`'s interrupt pending and wakes it. One already pending
    /// is not queued again: the vGIC keeps one pending bit, and kicks only
    /// when it changes something, so a flood costs the caller's traps only.
    fn notify(&mut self, peer: Peer) {
        if self.vms[peer.vm].state != VmState::Running {
            return;
        }
        // The notifier's stores into the channel are seen before the
        // interrupt, by a reader on another CPU that does not take our lock.
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        let effects = self.vms[peer.vm].vgic.lock().raise(0, peer.intid);
        if effects.kick != 0 {
            let first = VcpuId(self.vms[peer.vm].first_vcpu as u32);
            self.kick(first, effects);
        }
    }

    /// `vm` stops or starts a reset: its sides say so with a new
    /// generation and the other sides are told; the channels it writes are
    /// zeroed once none of its vCPUs runs.
    pub(super) fn channels_down(&mut self, vm: usize) {
        if self.vms[vm].config.channels.is_empty() {
            return;
        }
        self.vms[vm].generation = self.vms[vm].generation.wrapping_add(1);
        self.vms[vm].channels_to_clear = true;
        for index in 0..self.vms[vm].config.channels.len() {
            self.write_side(vm, index, CHANNEL_SIDE_STOPPED);
            if let Some(peer) = self.vms[vm].channel_peers[index] {
                self.notify(peer);
            }
        }
        self.clear_channels_if_quiet(vm);
    }

    /// `vm` runs again after a reset: its sides say so and the other sides
    /// are told.
    pub(super) fn channels_up(&mut self, vm: usize) {
        for index in 0..self.vms[vm].config.channels.len() {
            self.write_side(vm, index, CHANNEL_SIDE_RUNNING);
            if let Some(peer) = self.vms[vm].channel_peers[index] {
                self.notify(peer);
            }
        }
    }

    /// Zeroes the channels `vm` writes, if it asked to be and none of its
    /// vCPUs runs (one still in the guest could write again after). A VM
    /// that resets has them cleared with its RAM instead, piece by piece
    /// without the lock ([`Self::clear_channels_with_reset`]): a reset loop
    /// would otherwise hold every CPU up for up to 64 MiB of zeroing each
    /// time. One that stopped has them zeroed here, once.
    pub(super) fn clear_channels_if_quiet(&mut self, vm: usize) {
        // Asked on every exit that leaves a CPU: the flag first.
        if !self.vms[vm].channels_to_clear {
            return;
        }
        let quiet = self.vms[vm]
            .vcpu_indices()
            .all(|v| !matches!(self.vcpus[v].run, RunState::OnCpu(_)));
        if !quiet {
            return;
        }
        self.vms[vm].channels_to_clear = false;
        // `reset_if_quiet` comes next, on the same condition.
        if self.vms[vm].reset_requested && self.vms[vm].state != VmState::Stopped {
            return;
        }
        for index in 0..self.vms[vm].config.channels.len() {
            let end = &self.vms[vm].config.channels[index];
            if end.writer {
                let data = channel_slice(end.data.base, end.data.size);
                self.zero(data);
            }
        }
    }

    /// Adds the data of the channels `vm` writes to the pieces its reset
    /// clears before it starts again (its sides say it runs only then).
    pub(super) fn clear_channels_with_reset(&mut self, vm: usize) {
        let Vm {
            config, ram_state, ..
        } = &mut self.vms[vm];
        for end in config.channels.iter().filter(|e| e.writer) {
            let data = GuestRam::new(0, end.data.base, end.data.size);
            for at in (0..end.data.size).step_by(super::clear::PIECE as usize) {
                let len = super::clear::PIECE.min(end.data.size - at);
                ram_state.add_piece(data.slice(at, len).expect("inside the channel"));
            }
        }
    }

    fn write_side(&mut self, vm: usize, index: usize, state: u32) {
        let words = side_words(&self.vms[vm].config.channels[index]);
        let generation = self.vms[vm].generation;
        self.write_words(words, state, generation);
    }

    /// A side's state and generation (under our lock: no two writers).
    fn write_words(&mut self, words: GuestSlice, state: u32, generation: u32) {
        let value = u64::from(state) | u64::from(generation) << 32;
        self.platform.write_guest(words, &value.to_le_bytes());
        // Guests with their caches off read memory, not our cache.
        self.platform.sync_guest_memory(words);
    }

    fn zero(&mut self, pages: GuestSlice) {
        // Cleaned to the point of coherency too.
        self.platform.zero_guest(pages);
    }
}
