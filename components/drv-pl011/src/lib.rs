//! Arm PL011 UART (the console of QEMU `virt` and Calxeda boards): polled
//! transmit and receive, with the FIFOs on. Baud rate and clocks are left as
//! the firmware set them.
//!
//! Written here rather than on `arm-pl011-uart`: that crate's `enable`
//! programs the baud rate from the UART's input clock, which our board
//! profiles do not know; we keep the firmware's setting.
#![cfg_attr(not(test), no_std)]
// Unsafe only in `Component::at`, which turns the board's address into the
// register block (MMIO; DESIGN.md).
#![deny(unsafe_code)]

use core::ptr::NonNull;
use safe_mmio::{
    field,
    fields::{ReadPure, ReadPureWrite, WriteOnly},
    UniqueMmioPointer,
};

/// The PL011 register block (PrimeCell UART r1p5 TRM, table 3-1).
#[repr(C)]
pub struct Registers {
    dr: ReadPureWrite<u32>,
    rsr: ReadPureWrite<u32>,
    _reserved0: [u32; 4],
    fr: ReadPure<u32>,
    _reserved1: u32,
    ilpr: ReadPureWrite<u32>,
    ibrd: ReadPureWrite<u32>,
    fbrd: ReadPureWrite<u32>,
    lcr_h: ReadPureWrite<u32>,
    cr: ReadPureWrite<u32>,
    ifls: ReadPureWrite<u32>,
    imsc: ReadPureWrite<u32>,
    ris: ReadPure<u32>,
    mis: ReadPure<u32>,
    icr: WriteOnly<u32>,
}

const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
const LCR_H_FEN: u32 = 1 << 4;
const LCR_H_WLEN_8: u32 = 0b11 << 5;
const CR_UARTEN: u32 = 1 << 0;
const CR_TXE: u32 = 1 << 8;
const CR_RXE: u32 = 1 << 9;

/// The transmit FIFO is full; try again.
#[derive(Debug, PartialEq, Eq)]
pub struct WouldBlock;

/// This driver as the component table names it (`drv_pl011::Component`).
/// Every UART component has `at`, `init` and `write_bytes` as here.
pub type Component = Pl011<'static>;

impl Component {
    /// The PL011 at `base`. Its registers are 32-bit and 4 bytes apart
    /// whatever the profile's `reg-shift` and `reg-io-width`, which it
    /// takes only to be called like every UART component.
    ///
    /// # Safety
    ///
    /// `base` is a PL011's register block, mapped as device memory for as
    /// long as the program runs, that nothing else writes while the result
    /// is in use.
    #[allow(unsafe_code)]
    pub unsafe fn at(base: usize, _reg_shift: u32, _reg_io_width: u32) -> Self {
        let regs = NonNull::new(base as *mut Registers).expect("a UART at address 0");
        // SAFETY: the caller's promise: device memory that this driver alone uses.
        Pl011::new(unsafe { UniqueMmioPointer::new(regs) })
    }
}

pub struct Pl011<'a> {
    regs: UniqueMmioPointer<'a, Registers>,
}

impl<'a> Pl011<'a> {
    pub fn new(regs: UniqueMmioPointer<'a, Registers>) -> Self {
        Pl011 { regs }
    }

    /// 8N1 with FIFOs, transmit and receive on, no interrupts.
    pub fn init(&mut self) {
        field!(self.regs, imsc).write(0);
        field!(self.regs, icr).write(0x7ff);
        field!(self.regs, lcr_h).write(LCR_H_FEN | LCR_H_WLEN_8);
        field!(self.regs, cr).write(CR_UARTEN | CR_TXE | CR_RXE);
    }

    pub fn try_write_byte(&mut self, byte: u8) -> Result<(), WouldBlock> {
        if field!(self.regs, fr).read() & FR_TXFF != 0 {
            return Err(WouldBlock);
        }
        field!(self.regs, dr).write(u32::from(byte));
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

    /// The next received byte, if one has arrived.
    pub fn read_byte(&mut self) -> Option<u8> {
        if field!(self.regs, fr).read() & FR_RXFE != 0 {
            return None;
        }
        Some(field!(self.regs, dr).read() as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake() -> Registers {
        Registers {
            dr: ReadPureWrite(0),
            rsr: ReadPureWrite(0),
            _reserved0: [0; 4],
            fr: ReadPure(FR_RXFE),
            _reserved1: 0,
            ilpr: ReadPureWrite(0),
            ibrd: ReadPureWrite(0),
            fbrd: ReadPureWrite(0),
            lcr_h: ReadPureWrite(0),
            cr: ReadPureWrite(0),
            ifls: ReadPureWrite(0),
            imsc: ReadPureWrite(0xff),
            ris: ReadPure(0),
            mis: ReadPure(0),
            icr: WriteOnly(0),
        }
    }

    #[test]
    fn register_offsets_match_the_trm() {
        use core::mem::offset_of;
        assert_eq!(offset_of!(Registers, fr), 0x18);
        assert_eq!(offset_of!(Registers, ibrd), 0x24);
        assert_eq!(offset_of!(Registers, lcr_h), 0x2c);
        assert_eq!(offset_of!(Registers, cr), 0x30);
        assert_eq!(offset_of!(Registers, imsc), 0x38);
        assert_eq!(offset_of!(Registers, icr), 0x44);
    }

    #[test]
    fn init_enables_fifos_8n1_and_masks_interrupts() {
        let mut regs = fake();
        Pl011::new(UniqueMmioPointer::from(&mut regs)).init();
        assert_eq!(regs.lcr_h.0, 0x70);
        assert_eq!(regs.cr.0, 0x301);
        assert_eq!(regs.imsc.0, 0);
    }

    #[test]
    fn transmit_waits_for_fifo_room() {
        let mut regs = fake();
        regs.fr = ReadPure(FR_TXFF);
        assert_eq!(
            Pl011::new(UniqueMmioPointer::from(&mut regs)).try_write_byte(b'x'),
            Err(WouldBlock)
        );
        assert_eq!(regs.dr.0, 0, "nothing written into a full FIFO");
        regs.fr = ReadPure(0);
        Pl011::new(UniqueMmioPointer::from(&mut regs)).write_bytes(b"\n");
        assert_eq!(regs.dr.0, u32::from(b'\n'), "last byte of \\r\\n");
    }

    #[test]
    fn receive_reads_only_when_the_fifo_has_data() {
        let mut regs = fake();
        assert_eq!(
            Pl011::new(UniqueMmioPointer::from(&mut regs)).read_byte(),
            None
        );
        regs.fr = ReadPure(0);
        regs.dr = ReadPureWrite(u32::from(b'k'));
        assert_eq!(
            Pl011::new(UniqueMmioPointer::from(&mut regs)).read_byte(),
            Some(b'k')
        );
    }

    #[test]
    #[allow(unsafe_code)]
    fn component_at_writes_the_data_register() {
        // 'static "device memory": the driver may keep it as long as it likes.
        let regs: &'static mut Registers = Box::leak(Box::new(fake()));
        regs.fr = ReadPure(0);
        let base = regs as *mut Registers as usize;
        {
            // SAFETY: a leaked, live register block; only this driver
            // touches it, until the end of this block.
            let mut uart = unsafe { Component::at(base, 0, 1) };
            uart.init();
            uart.write_bytes(b"k");
        }
        // SAFETY: the driver is gone; the block is still allocated.
        let regs = unsafe { &*(base as *const Registers) };
        assert_eq!(regs.dr.0, u32::from(b'k'));
        assert_ne!(regs.cr.0 & CR_UARTEN, 0, "init turned the UART on");
    }
}
