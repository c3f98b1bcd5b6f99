//! Console input: what the host types goes to one VM at a time, the one
//! with the focus, through the emulated device of that VM that takes input
//! (its UART). Ctrl-] moves the focus to the next such VM, then to the
//! hypervisor (which takes nothing yet, so input is dropped), then back to
//! the first VM; the hypervisor says where the focus went.
//!
//! The physical UART is polled every [`POLL_PER_SECOND`]th of a second by
//! CPU 0 while some VM takes input: boards do not name their UART's
//! interrupt yet. A VM that does not read its input has it buffered by its
//! device (bounded) and dropped beyond that, never blocking anyone.

use super::Hypervisor;
use crate::{
    platform::Platform,
    sched::{CpuId, Scheduler},
    vgic::Vgic,
};
use alloc::vec::Vec;

/// The byte that moves the focus: Ctrl-] (QEMU's `-nographic` keeps
/// Ctrl-A for itself).
pub const FOCUS_KEY: u8 = 0x1d;

/// How often CPU 0 looks for input.
pub const POLL_PER_SECOND: u64 = 50;

/// Who gets console input.
#[derive(Debug, Default)]
pub(super) struct Focus {
    /// The VMs whose devices take input, in VM order.
    pub targets: Vec<usize>,
    /// Index into `targets`; `targets.len()` is the hypervisor.
    pub at: usize,
    /// When CPU 0 looks next (counter ticks).
    pub next_poll: Option<u64>,
}

impl<P: Platform, S: Scheduler, V: Vgic> Hypervisor<P, S, V> {
    /// The VMs with a device that takes input; the first gets the focus.
    pub(super) fn init_console_focus(&mut self) {
        self.focus.targets = (0..self.vms.len())
            .filter(|&vm| self.vms[vm].devices.input_device().is_some())
            .collect();
        self.focus.at = 0;
        if !self.focus.targets.is_empty() {
            self.focus.next_poll = Some(self.platform.counter());
            self.say_focus();
        }
    }

    fn say_focus(&self) {
        match self.focus.targets.get(self.focus.at) {
            Some(&vm) => crate::info!(
                "console input goes to {} (Ctrl-] switches)",
                self.vms[vm].config.name
            ),
            None => crate::info!("console input goes to the hypervisor (Ctrl-] switches)"),
        }
    }

    /// When CPU `cpu` must wake to look for input, if it is the one that
    /// looks.
    pub(super) fn console_deadline(&self, cpu: CpuId) -> Option<u64> {
        (cpu.0 == 0).then_some(self.focus.next_poll).flatten()
    }

    /// On CPU 0, when its poll is due: takes what the host typed.
    pub(super) fn poll_console(&mut self, cpu: CpuId, now: u64) {
        let Some(due) = self.console_deadline(cpu) else {
            return;
        };
        if now < due {
            return;
        }
        let period = self.platform.counter_frequency() / POLL_PER_SECOND;
        self.focus.next_poll = Some(now + period);
        let mut buf = [0u8; 64];
        loop {
            let n = self.platform.read_console(&mut buf);
            if n == 0 {
                break;
            }
            self.console_input(&buf[..n]);
        }
    }

    /// Bytes the host typed: the focus key moves the focus, the rest goes
    /// to the VM that has it.
    pub(super) fn console_input(&mut self, bytes: &[u8]) {
        for chunk in bytes.split_inclusive(|&b| b == FOCUS_KEY) {
            let (text, switch) = match chunk.split_last() {
                Some((&FOCUS_KEY, text)) => (text, true),
                _ => (chunk, false),
            };
            if let Some(&vm) = self.focus.targets.get(self.focus.at) {
                if !text.is_empty() && self.vms[vm].state == super::VmState::Running {
                    self.input_to(vm, text);
                }
            }
            if switch {
                self.focus.at = (self.focus.at + 1) % (self.focus.targets.len() + 1);
                self.say_focus();
            }
        }
    }

    fn input_to(&mut self, vm: usize, bytes: &[u8]) {
        let table = &mut self.vms[vm].devices;
        let Some(index) = table.input_device() else {
            return;
        };
        let Some((_, signal)) = table.device(index).and_then(|d| d.input(bytes)) else {
            return;
        };
        self.device_signal(vm, index, signal);
    }
}
