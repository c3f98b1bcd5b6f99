//! NS16550/8250-compatible UART (the console of TI OMAP5 UART3 and of
//! AppliedMicro X-Gene): polled transmit and receive, with the FIFOs on.
//!
//! Owns the register protocol only. The baud rate is left as the firmware
//! (u-boot) set it: the divisor latch (DLL/DLM) is never written, and LCR's
//! DLAB bit is left clear. Chip-specific mode registers beyond the eight
//! 16550 ones (OMAP's MDR1, for one) are also left as the firmware set them.
//!
//! Register access goes through [`RegisterBlock`]. The MMIO implementation
//! is [`Mmio`]: registers `1 << reg_shift` bytes apart, each accessed with
//! `reg-io-width` bytes ([`Mmio8`] for 1, [`Mmio32`] for 4), over a
//! `safe-mmio` pointer; [`Component::at`] makes one from the profile's values.
//!
//! Transmit policy: a 16550A's transmit FIFO holds 16 bytes (OMAP's 64), and
//! LSR.THRE says it is empty. The driver checks THRE before each burst of at
//! most [`TX_BURST`] bytes, so it never overruns a FIFO of 16 bytes or more;
//! when `init` finds that the FIFOs did not turn on (IIR bits 7:6 are not
//! both set: an 8250/16450, or a 16550 with the broken FIFO), the burst is one
//! byte and THRE is checked before every byte.
#![cfg_attr(not(test), no_std)]
// Unsafe only in `Component::at`, which turns the board's address into the
// register window (MMIO; DESIGN.md).
#![deny(unsafe_code)]

use core::ptr::NonNull;
use safe_mmio::{fields::ReadWrite, UniqueMmioPointer};

/// The eight 16550 registers, numbered as before `reg_shift` is applied.
/// The driver never sets LCR.DLAB, so `Data` and `Ier` are always
/// RBR/THR and IER, never the divisor latch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reg {
    /// RBR (read) / THR (write).
    Data = 0,
    /// IER, interrupt enable.
    Ier = 1,
    /// IIR (read) / FCR (write).
    IirFcr = 2,
    /// LCR, line control.
    Lcr = 3,
    /// MCR, modem control.
    Mcr = 4,
    /// LSR, line status.
    Lsr = 5,
    /// MSR, modem status.
    Msr = 6,
    /// SCR, scratch.
    Scr = 7,
}

impl Reg {
    /// The highest register the driver may touch.
    const LAST: Reg = Reg::Scr;
}

/// One 8-bit register at a time. Reads of RBR, IIR and LSR have side
/// effects (pop a byte, clear status), hence `&mut self`.
pub trait RegisterBlock {
    fn read(&mut self, reg: Reg) -> u8;
    fn write(&mut self, reg: Reg, value: u8);
}

/// A run of equally wide MMIO words from the UART's base address: what one
/// `reg-io-width` looks like from the CPU.
pub trait IoWindow {
    /// Bytes per access: the device tree's `reg-io-width`.
    const WIDTH: usize;
    /// How many words of `WIDTH` bytes the window spans.
    fn words(&self) -> usize;
    /// Reads the word at `index` (byte offset `index * WIDTH`).
    fn read(&mut self, index: usize) -> u32;
    /// Writes the word at `index` (byte offset `index * WIDTH`).
    fn write(&mut self, index: usize, value: u32);
}

impl IoWindow for UniqueMmioPointer<'_, [ReadWrite<u8>]> {
    const WIDTH: usize = 1;

    fn words(&self) -> usize {
        self.len()
    }

    fn read(&mut self, index: usize) -> u32 {
        // `Mmio::new` checked that every register's index is in range.
        self.get(index).map_or(0, |mut r| u32::from(r.read()))
    }

    fn write(&mut self, index: usize, value: u32) {
        if let Some(mut r) = self.get(index) {
            r.write(value as u8);
        }
    }
}

impl IoWindow for UniqueMmioPointer<'_, [ReadWrite<u32>]> {
    const WIDTH: usize = 4;

    fn words(&self) -> usize {
        self.len()
    }

    fn read(&mut self, index: usize) -> u32 {
        // `Mmio::new` checked that every register's index is in range.
        self.get(index).map_or(0, |mut r| r.read())
    }

    fn write(&mut self, index: usize, value: u32) {
        if let Some(mut r) = self.get(index) {
            r.write(value);
        }
    }
}

/// Why a window and a `reg_shift` do not describe a 16550.
#[derive(Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// `reg_shift` is above 3 (registers more than 8 bytes apart).
    ShiftTooLarge { reg_shift: u32 },
    /// Registers are `1 << reg_shift` bytes apart, fewer than the access width.
    StrideBelowWidth { stride: usize, width: usize },
    /// The window ends before the last register.
    WindowTooSmall { words: usize, needed: usize },
}

/// The registers of a memory-mapped 16550: register `r` is at byte offset
/// `r << reg_shift`, accessed with `W::WIDTH` bytes; the register's value is
/// the low 8 bits of the access.
pub struct Mmio<W> {
    window: W,
    reg_shift: u32,
}

/// Byte accesses (`reg-io-width = <1>`, the default).
pub type Mmio8<'a> = Mmio<UniqueMmioPointer<'a, [ReadWrite<u8>]>>;
/// 32-bit accesses (`reg-io-width = <4>`).
pub type Mmio32<'a> = Mmio<UniqueMmioPointer<'a, [ReadWrite<u32>]>>;

impl<W: IoWindow> Mmio<W> {
    pub fn new(window: W, reg_shift: u32) -> Result<Self, LayoutError> {
        if reg_shift > 3 {
            return Err(LayoutError::ShiftTooLarge { reg_shift });
        }
        let stride = 1usize << reg_shift;
        if stride < W::WIDTH {
            return Err(LayoutError::StrideBelowWidth {
                stride,
                width: W::WIDTH,
            });
        }
        let needed = index(Reg::LAST, reg_shift, W::WIDTH) + 1;
        if window.words() < needed {
            return Err(LayoutError::WindowTooSmall {
                words: window.words(),
                needed,
            });
        }
        Ok(Mmio { window, reg_shift })
    }
}

/// The word index of `reg`: its byte offset over the access width.
fn index(reg: Reg, reg_shift: u32, width: usize) -> usize {
    ((reg as usize) << reg_shift) / width
}

impl<W: IoWindow> RegisterBlock for Mmio<W> {
    fn read(&mut self, reg: Reg) -> u8 {
        let i = index(reg, self.reg_shift, W::WIDTH);
        self.window.read(i) as u8
    }

    fn write(&mut self, reg: Reg, value: u8) {
        let i = index(reg, self.reg_shift, W::WIDTH);
        self.window.write(i, u32::from(value));
    }
}

const IER_NONE: u8 = 0;
const FCR_ENABLE: u8 = 1 << 0;
const FCR_CLEAR_RX: u8 = 1 << 1;
const FCR_CLEAR_TX: u8 = 1 << 2;
const IIR_FIFOS_ON: u8 = 0b11 << 6;
const LCR_8N1: u8 = 0b11; // 8 data bits, 1 stop bit, no parity, DLAB clear
const MCR_DTR: u8 = 1 << 0;
const MCR_RTS: u8 = 1 << 1;
const LSR_DR: u8 = 1 << 0;
const LSR_THRE: u8 = 1 << 5;
const LSR_TEMT: u8 = 1 << 6;

/// Bytes written after one look at LSR.THRE: the 16550A's FIFO depth, the
/// smallest among the FIFO parts this driver is for (OMAP's holds 64).
pub const TX_BURST: u8 = 16;

/// How many times `init` reads LSR waiting for the firmware's last bytes to
/// leave, before it goes on anyway: about 64 bytes at 9600 baud with fast
/// register reads, and bounded so that an unclocked UART cannot hang boot.
const INIT_DRAIN_POLLS: u32 = 1 << 20;

/// The transmitter cannot take a byte now; try again.
#[derive(Debug, PartialEq, Eq)]
pub struct WouldBlock;

/// This driver as the component table names it (`drv_ns16550::Component`):
/// byte or 32-bit register accesses, as the profile's `reg-io-width` says.
/// Every UART component has `at`, `init` and `write_bytes` as here.
pub enum Component {
    Bytes(Ns16550<Mmio8<'static>>),
    Words(Ns16550<Mmio32<'static>>),
}

impl Component {
    /// The 16550 at `base`: eight registers `1 << reg_shift` bytes apart,
    /// accessed `reg_io_width` bytes (1 or 4) at a time. Panics on a layout
    /// that is no 16550's (the composer refuses those).
    ///
    /// # Safety
    ///
    /// `base..base + (8 << reg_shift)` is a 16550's register block, mapped
    /// as device memory for as long as the program runs, that nothing else
    /// writes while the result is in use.
    #[allow(unsafe_code)]
    pub unsafe fn at(base: usize, reg_shift: u32, reg_io_width: u32) -> Self {
        /// The block as words of `W`.
        #[allow(unsafe_code)]
        unsafe fn window<W>(
            base: usize,
            reg_shift: u32,
        ) -> UniqueMmioPointer<'static, [ReadWrite<W>]> {
            let words = (8usize << reg_shift) / core::mem::size_of::<W>();
            let first = NonNull::new(base as *mut ReadWrite<W>).expect("a UART at address 0");
            // SAFETY: the caller's promise: device memory that this driver alone uses.
            unsafe { UniqueMmioPointer::new(NonNull::slice_from_raw_parts(first, words)) }
        }
        const LAYOUT: &str = "the composer checked reg-shift and reg-io-width";
        // SAFETY: `at`'s own contract, passed on.
        unsafe {
            if reg_io_width == 4 {
                let regs = Mmio::new(window::<u32>(base, reg_shift), reg_shift).expect(LAYOUT);
                Component::Words(Ns16550::new(regs))
            } else {
                let regs = Mmio::new(window::<u8>(base, reg_shift), reg_shift).expect(LAYOUT);
                Component::Bytes(Ns16550::new(regs))
            }
        }
    }

    pub fn init(&mut self) {
        match self {
            Component::Bytes(u) => u.init(),
            Component::Words(u) => u.init(),
        }
    }

    pub fn write_bytes(&mut self, bytes: &[u8]) {
        match self {
            Component::Bytes(u) => u.write_bytes(bytes),
            Component::Words(u) => u.write_bytes(bytes),
        }
    }

    /// The next received byte, if one has arrived.
    pub fn read_byte(&mut self) -> Option<u8> {
        match self {
            Component::Bytes(u) => u.try_read_byte(),
            Component::Words(u) => u.try_read_byte(),
        }
    }
}

pub struct Ns16550<R> {
    regs: R,
    /// Bytes that may still be written without looking at THRE.
    tx_room: u8,
    /// Bytes per THRE: `TX_BURST` with FIFOs on, else 1.
    burst: u8,
}

impl<R: RegisterBlock> Ns16550<R> {
    /// Until `init` runs the driver assumes no FIFO: one byte per THRE.
    pub fn new(regs: R) -> Self {
        Ns16550 {
            regs,
            tx_room: 0,
            burst: 1,
        }
    }

    /// 8N1, FIFOs on and emptied, interrupts off, DTR and RTS asserted (as
    /// u-boot's ns16550 and Linux's 8250 drivers leave MCR). The divisor
    /// (baud rate) is the firmware's. Waits, boundedly, for what the
    /// firmware was still sending, so that clearing the FIFO loses nothing.
    pub fn init(&mut self) {
        let mut polls = 0;
        while self.regs.read(Reg::Lsr) & LSR_TEMT == 0 && polls < INIT_DRAIN_POLLS {
            polls += 1;
            core::hint::spin_loop();
        }
        // LCR first: it clears DLAB if the firmware left it set, so that the
        // IER write below reaches IER and not the divisor latch (DLM).
        self.regs.write(Reg::Lcr, LCR_8N1);
        self.regs.write(Reg::Ier, IER_NONE);
        self.regs
            .write(Reg::IirFcr, FCR_ENABLE | FCR_CLEAR_RX | FCR_CLEAR_TX);
        self.burst = if self.regs.read(Reg::IirFcr) & IIR_FIFOS_ON == IIR_FIFOS_ON {
            TX_BURST
        } else {
            1
        };
        self.regs.write(Reg::Mcr, MCR_DTR | MCR_RTS);
        self.tx_room = 0;
    }

    /// Writes `byte` if the transmitter has room, as far as the last look at
    /// THRE tells: after THRE, `burst` bytes fit.
    pub fn try_write_byte(&mut self, byte: u8) -> Result<(), WouldBlock> {
        if self.tx_room == 0 {
            if self.regs.read(Reg::Lsr) & LSR_THRE == 0 {
                return Err(WouldBlock);
            }
            self.tx_room = self.burst;
        }
        self.regs.write(Reg::Data, byte);
        self.tx_room -= 1;
        Ok(())
    }

    /// Writes `bytes`, waiting for FIFO room, with `\n` sent as `\r\n`.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                self.write_byte_blocking(b'\r');
            }
            self.write_byte_blocking(byte);
        }
    }

    fn write_byte_blocking(&mut self, byte: u8) {
        while self.try_write_byte(byte).is_err() {
            core::hint::spin_loop();
        }
    }

    /// The next received byte, if one has arrived (LSR.DR).
    pub fn try_read_byte(&mut self) -> Option<u8> {
        if self.regs.read(Reg::Lsr) & LSR_DR == 0 {
            return None;
        }
        Some(self.regs.read(Reg::Data))
    }
}

#[cfg(test)]
mod tests;
