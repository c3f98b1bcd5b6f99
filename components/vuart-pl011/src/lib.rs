//! An emulated PL011 UART for one VM, enough of it for Linux's amba-pl011
//! driver as `arm,sbsa-uart` (DR, FR, IMSC, RIS, MIS, ICR) and as
//! `arm,pl011` (also the baud, line and control registers, stored and
//! read back, and the PrimeCell ID of a PL011 r1p5). Offsets are the PL011
//! TRM's (DDI0183).
//!
//! What the guest transmits goes to the hypervisor console one whole line
//! at a time, prefixed with the VM's name, through the same line buffer as
//! the paravirtual console ([`pv_console::LineBuffer`]). What the host
//! types comes in through [`VUart::input`] into a bounded receive FIFO.
//!
//! Choices, and why:
//! - TX drains instantly: FR.TXFE is always set, TXFF and BUSY never are.
//!   Linux's `pl011_start_tx` writes while TXFF is clear and only unmasks
//!   the TX interrupt if it had to stop, so it sends everything at once
//!   and never waits for a TX interrupt; its console and earlycon poll
//!   TXFF and BUSY, which never hold it up.
//! - TXRIS is set at reset and by every TX write (the FIFO is empty again)
//!   and cleared only by ICR. A guest that unmasks TXIM to wait for room
//!   is interrupted at once, so nothing hangs; the line then stays high
//!   while TXIM is unmasked, which does not storm Linux: its handler
//!   writes what it has and masks TXIM (`pl011_stop_tx`) once it has
//!   nothing left to send.
//! - RXRIS and RTRIS are set while data is waiting (by input, and again by
//!   a DR read that leaves data behind, as the hardware's receive timeout
//!   would fire), cleared by ICR and when the FIFO empties. Linux's
//!   handler never clears them with ICR: it reads DR until FR.RXFE.
//! - The receive FIFO is the hardware's 32 bytes plus a backlog, one
//!   bounded queue; FR.RXFF means the first 32 are taken. Input that does
//!   not fit is dropped and counted, never waited for. Overruns are not
//!   reported to the guest (RSR and OEIS stay 0).
//! - Input is taken whatever CR says: the SBSA UART has no CR, so Linux's
//!   `arm,sbsa-uart` driver never sets RXE. Input from before the guest
//!   opened the port waits in the bounded queue.
//! - The interrupt is level-triggered: every access reports the line,
//!   `RIS & IMSC != 0`.
//! - Registers are 32 bits wide; DR also takes 8- and 16-bit accesses
//!   (earlycon writes bytes). Any other width, or an offset that is not a
//!   register, reads as 0 and ignores writes.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use heapless::Deque;
use hv::device::{MmioDevice, Signal};
use pv_console::LineBuffer;

/// This device as the component table names it (`vuart_pl011::Component`).
pub type Component = VUart;

/// The hardware's receive FIFO depth.
pub const RX_FIFO: usize = 32;
/// Input held beyond the FIFO while the guest is not reading.
pub const RX_BACKLOG: usize = 4096;
/// Most input bytes held at once.
pub const RX_MAX: usize = RX_FIFO + RX_BACKLOG;

// Register offsets (DDI0183 table 3-1); RSR/ECR 0x004 and DMACR 0x048
// read as 0 and ignore writes like unknown offsets.
const DR: u64 = 0x000;
const FR: u64 = 0x018;
const IBRD: u64 = 0x024;
const FBRD: u64 = 0x028;
const LCR_H: u64 = 0x02c;
const CR: u64 = 0x030;
const IFLS: u64 = 0x034;
const IMSC: u64 = 0x038;
const RIS: u64 = 0x03c;
const MIS: u64 = 0x040;
const ICR: u64 = 0x044;
const ID_BASE: u64 = 0xfe0;

/// PeriphID0..3 (PL011, Arm, r1p5) then CellID0..3 (0xB105F00D).
const ID_VALUES: [u32; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

// FR bits.
pub const FR_RXFE: u32 = 1 << 4;
pub const FR_TXFF: u32 = 1 << 5;
pub const FR_RXFF: u32 = 1 << 6;
pub const FR_TXFE: u32 = 1 << 7;

// Interrupt bits (IMSC, RIS, MIS, ICR).
pub const INT_RX: u32 = 1 << 4;
pub const INT_TX: u32 = 1 << 5;
pub const INT_RT: u32 = 1 << 6;
/// The eleven interrupt bits IMSC and ICR have.
pub const INT_ALL: u32 = 0x7ff;

/// Reset values (DDI0183): TXE and RXE set in CR, FIFO levels at half.
const CR_RESET: u32 = 0x0300;
const IFLS_RESET: u32 = 0x12;

/// One VM's emulated PL011.
pub struct VUart {
    name: &'static str,
    vm_index: usize,
    intid: u32,
    tx: LineBuffer,
    rx: Deque<u8, RX_MAX>,
    dropped: u64,
    ris: u32,
    imsc: u32,
    /// IBRD, FBRD, LCR_H, CR, IFLS: stored for the guest, no effect here.
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
}

impl VUart {
    /// The component's constructor (`composition::new_device`).
    pub fn new(setup: hv::device::Setup) -> Result<Self, hv::device::SetupError> {
        Ok(Self::with(setup.vm_name, setup.vm_index, setup.intid))
    }

    /// The UART of VM `name` (index `vm_index` in the core, as
    /// `hv::log::write_guest_line` counts), interrupting on SPI `intid`.
    pub const fn with(name: &'static str, vm_index: usize, intid: u32) -> Self {
        VUart {
            name,
            vm_index,
            intid,
            tx: LineBuffer::new(),
            rx: Deque::new(),
            dropped: 0,
            ris: INT_TX,
            imsc: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_RESET,
            ifls: IFLS_RESET,
        }
    }

    /// Queues `bytes` for the guest to read; how many it took. The rest is
    /// dropped (see [`VUart::dropped`]).
    pub fn input(&mut self, bytes: &[u8]) -> (usize, Signal) {
        let room = RX_MAX - self.rx.len();
        let took = bytes.len().min(room);
        for &byte in &bytes[..took] {
            // Cannot fail: `took` fits the room left.
            let _ = self.rx.push_back(byte);
        }
        self.dropped = self.dropped.saturating_add((bytes.len() - took) as u64);
        if took > 0 {
            self.ris |= INT_RX | INT_RT;
        }
        (took, self.signal())
    }

    /// Input bytes dropped because the receive queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes waiting for the guest to read.
    pub fn pending(&self) -> usize {
        self.rx.len()
    }

    /// The interrupt line: some unmasked interrupt is raised.
    pub fn line(&self) -> bool {
        self.ris & self.imsc != 0
    }

    /// The line as the core takes it after an access ([`MmioDevice::read`]
    /// has no room for it, so the core asks here after a read).
    pub fn signal(&self) -> Signal {
        Signal {
            level: Some(self.line()),
            ..Signal::default()
        }
    }

    /// Emits what is left of a line, for when the VM stops mid-line.
    pub fn flush(&mut self) {
        let vm_index = self.vm_index;
        self.tx.flush(self.name, &mut |line: &[u8]| {
            hv::log::write_guest_line(vm_index, line);
        });
    }

    /// Sends `byte`; whether it ended a line.
    fn transmit(&mut self, byte: u8) -> bool {
        let vm_index = self.vm_index;
        let lines = self.tx.write(self.name, &[byte], &mut |line: &[u8]| {
            hv::log::write_guest_line(vm_index, line);
        });
        // Lost lines are counted per VM by the log's outbox; say so once
        // a line has gone, as the paravirtual console does.
        if lines > 0 {
            let lost = hv::log::take_lost(vm_index + 1);
            if lost > 0 {
                hv::info!(
                    "VM {} lost {lost} bytes of UART output: it prints faster than the UART drains",
                    self.name
                );
            }
        }
        // The byte left at once: the TX FIFO is empty again.
        self.ris |= INT_TX;
        lines > 0
    }

    fn receive(&mut self) -> u32 {
        let byte = self.rx.pop_front();
        if self.rx.is_empty() {
            self.ris &= !(INT_RX | INT_RT);
        } else {
            self.ris |= INT_RX | INT_RT;
        }
        byte.map_or(0, u32::from)
    }

    fn flags(&self) -> u32 {
        let mut fr = FR_TXFE;
        if self.rx.is_empty() {
            fr |= FR_RXFE;
        }
        if self.rx.len() >= RX_FIFO {
            fr |= FR_RXFF;
        }
        fr
    }
}

impl MmioDevice for VUart {
    /// Registers only: its VM's RAM may be cleared as the guest touches it.
    fn reaches_ram(&self) -> bool {
        false
    }

    fn read(&mut self, _vcpu: usize, offset: u64, width: u8) -> u64 {
        let value = match (offset, width) {
            (DR, 1 | 2 | 4) => self.receive(),
            (_, 4) => match offset {
                FR => self.flags(),
                IBRD => self.ibrd,
                FBRD => self.fbrd,
                LCR_H => self.lcr_h,
                CR => self.cr,
                IFLS => self.ifls,
                IMSC => self.imsc,
                RIS => self.ris,
                MIS => self.ris & self.imsc,
                ID_BASE..=0xffc if offset.is_multiple_of(4) => {
                    // In range and aligned: the index is 0..8.
                    ID_VALUES[((offset - ID_BASE) / 4) as usize]
                }
                // RSR (no errors), DMACR (no DMA), ICR (write-only), the rest.
                _ => 0,
            },
            _ => 0,
        };
        u64::from(value)
    }

    fn write(&mut self, _vcpu: usize, offset: u64, width: u8, value: u64) -> Signal {
        let value = value as u32;
        let mut console_line = false;
        match (offset, width) {
            (DR, 1 | 2 | 4) => console_line = self.transmit(value as u8),
            (_, 4) => match offset {
                IBRD => self.ibrd = value & 0xffff,
                FBRD => self.fbrd = value & 0x3f,
                LCR_H => self.lcr_h = value & 0xff,
                CR => self.cr = value & 0xffff,
                IFLS => self.ifls = value & 0x3f,
                IMSC => self.imsc = value & INT_ALL,
                ICR => self.ris &= !(value & INT_ALL),
                // RSR/ECR: no errors to clear; DMACR: no DMA; the rest
                // read-only or not registers.
                _ => {}
            },
            _ => {}
        }
        Signal {
            console_line,
            ..self.signal()
        }
    }

    fn irq(&self) -> Option<u32> {
        Some(self.intid)
    }

    fn level(&self) -> Option<bool> {
        // A read of DR that empties the receive FIFO lowers the line.
        Some(self.line())
    }

    fn takes_input(&self) -> bool {
        true
    }

    fn input(&mut self, bytes: &[u8]) -> Option<(usize, Signal)> {
        Some(VUart::input(self, bytes))
    }
}

#[cfg(test)]
mod tests;
