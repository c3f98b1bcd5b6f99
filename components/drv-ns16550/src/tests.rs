//! The driver against a simulated 16550 behind a simulated bus.
//!
//! `Sim<WIDTH>` is the bus and the chip: it sees byte offsets and access
//! widths (what the CPU would put on the interconnect), decodes them with
//! its own wiring (`shift`, as the board routes address lines), and models
//! the chip: DLAB and the divisor latch, a transmit FIFO of `depth` bytes
//! in front of a shift register, LSR.THRE/TEMT computed from them, IIR's
//! FIFO bits, a receive FIFO with LSR.DR. Time only passes (one character
//! leaves the shift register) when the test calls `tick`, or every
//! `drain_every` register accesses if the test asks for that.

use super::*;
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Access {
    offset: usize,
    width: usize,
    /// `Some(value)` for a write.
    wrote: Option<u8>,
}

struct Sim<const WIDTH: usize> {
    /// Register `r` answers at byte offset `r << shift`.
    shift: u32,
    /// Whether the chip has FIFOs at all (an 8250/16450 does not).
    has_fifo: bool,
    /// Transmit FIFO depth when FIFOs are on.
    depth: usize,
    fifo_on: bool,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    tx_fifo: VecDeque<u8>,
    shifter: Option<u8>,
    rx_fifo: VecDeque<u8>,
    /// What went out on the wire, in order.
    line: Vec<u8>,
    /// Bytes written to THR while the transmitter was full: lost.
    dropped: Vec<u8>,
    /// RBR reads with nothing received.
    empty_reads: usize,
    /// Writes that reached DLL or DLM.
    divisor_writes: usize,
    fcr_writes: Vec<u8>,
    accesses: Vec<Access>,
    drain_every: Option<usize>,
}

impl<const WIDTH: usize> Sim<WIDTH> {
    /// A 16550A as u-boot leaves it: 8N1, divisor 26 (115200 baud from
    /// 48 MHz), FIFOs on, some interrupts enabled.
    fn new(shift: u32) -> Self {
        Sim {
            shift,
            has_fifo: true,
            depth: 16,
            fifo_on: true,
            ier: 0x05,
            lcr: 0x03,
            mcr: 0x00,
            scr: 0,
            dll: 26,
            dlm: 0,
            tx_fifo: VecDeque::new(),
            shifter: None,
            rx_fifo: VecDeque::new(),
            line: Vec::new(),
            dropped: Vec::new(),
            empty_reads: 0,
            divisor_writes: 0,
            fcr_writes: Vec::new(),
            accesses: Vec::new(),
            drain_every: None,
        }
    }

    /// One character time: the byte in the shift register reaches the
    /// line and the next one moves in from the FIFO.
    fn tick(&mut self) {
        if let Some(byte) = self.shifter.take() {
            self.line.push(byte);
            self.shifter = self.tx_fifo.pop_front();
        }
    }

    fn idle(&mut self) {
        while self.shifter.is_some() {
            self.tick();
        }
    }

    fn lsr(&self) -> u8 {
        let mut lsr = 0;
        if !self.rx_fifo.is_empty() {
            lsr |= LSR_DR;
        }
        if self.tx_fifo.is_empty() {
            lsr |= LSR_THRE;
            if self.shifter.is_none() {
                lsr |= LSR_TEMT;
            }
        }
        lsr
    }

    fn dlab(&self) -> bool {
        self.lcr & 0x80 != 0
    }

    fn transmit(&mut self, byte: u8) {
        let room = if self.fifo_on { self.depth } else { 1 };
        if self.shifter.is_none() && self.tx_fifo.is_empty() {
            self.shifter = Some(byte);
        } else if self.tx_fifo.len() < room {
            self.tx_fifo.push_back(byte);
        } else {
            self.dropped.push(byte);
        }
    }

    /// The register at `offset`; panics on an access between registers or
    /// past the last one, which real hardware would route elsewhere.
    fn decode(&self, offset: usize) -> usize {
        assert_eq!(
            offset % (1 << self.shift),
            0,
            "access at {offset:#x} falls between registers {} bytes apart",
            1 << self.shift
        );
        let reg = offset >> self.shift;
        assert!(reg <= 7, "access at {offset:#x} is past SCR");
        reg
    }

    fn time_passes(&mut self) {
        if let Some(n) = self.drain_every {
            if self.accesses.len().is_multiple_of(n) {
                self.tick();
            }
        }
    }

    fn offsets(&self) -> Vec<usize> {
        let mut o: Vec<usize> = self.accesses.iter().map(|a| a.offset).collect();
        o.sort_unstable();
        o.dedup();
        o
    }
}

impl<const WIDTH: usize> IoWindow for Sim<WIDTH> {
    const WIDTH: usize = WIDTH;

    fn words(&self) -> usize {
        // The device tree's reg size for these UARTs: 0x100 (OMAP).
        0x100 / WIDTH
    }

    fn read(&mut self, index: usize) -> u32 {
        let offset = index * WIDTH;
        let value = match self.decode(offset) {
            0 if self.dlab() => self.dll,
            0 => self.rx_fifo.pop_front().unwrap_or_else(|| {
                self.empty_reads += 1;
                0
            }),
            1 if self.dlab() => self.dlm,
            1 => self.ier,
            // IIR: no interrupt pending; bits 7:6 say whether FIFOs are on.
            2 => 0x01 | if self.fifo_on { 0xc0 } else { 0 },
            3 => self.lcr,
            4 => self.mcr,
            5 => self.lsr(),
            6 => 0,
            _ => self.scr,
        };
        self.accesses.push(Access {
            offset,
            width: WIDTH,
            wrote: None,
        });
        self.time_passes();
        u32::from(value)
    }

    fn write(&mut self, index: usize, value: u32) {
        let offset = index * WIDTH;
        assert!(value <= 0xff, "{value:#x} written to an 8-bit register");
        let value = value as u8;
        match self.decode(offset) {
            0 if self.dlab() => {
                self.dll = value;
                self.divisor_writes += 1;
            }
            0 => self.transmit(value),
            1 if self.dlab() => {
                self.dlm = value;
                self.divisor_writes += 1;
            }
            1 => self.ier = value,
            2 => {
                self.fcr_writes.push(value);
                if self.has_fifo {
                    self.fifo_on = value & FCR_ENABLE != 0;
                    if value & FCR_CLEAR_RX != 0 || !self.fifo_on {
                        self.rx_fifo.clear();
                    }
                    if value & FCR_CLEAR_TX != 0 || !self.fifo_on {
                        self.tx_fifo.clear();
                    }
                }
            }
            3 => self.lcr = value,
            4 => self.mcr = value,
            5 | 6 => {} // read-only
            _ => self.scr = value,
        }
        self.accesses.push(Access {
            offset,
            width: WIDTH,
            wrote: Some(value),
        });
        self.time_passes();
    }
}

fn uart<const W: usize>(sim: Sim<W>) -> Ns16550<Mmio<Sim<W>>> {
    let shift = sim.shift;
    Ns16550::new(Mmio::new(sim, shift).expect("layout"))
}

fn sim<const W: usize>(u: &mut Ns16550<Mmio<Sim<W>>>) -> &mut Sim<W> {
    &mut u.regs.window
}

#[test]
fn init_sets_8n1_fifos_and_no_interrupts_and_leaves_the_divisor() {
    let mut u = uart(Sim::<4>::new(2));
    u.init();
    let s = sim(&mut u);
    assert_eq!(s.lcr, 0x03, "8N1 with DLAB clear");
    assert_eq!(s.ier, 0, "interrupts off");
    assert_eq!(s.fcr_writes, [0x07], "FIFOs enabled and both cleared");
    assert!(s.fifo_on);
    assert_eq!(s.mcr, 0x03, "DTR and RTS");
    assert_eq!((s.dll, s.dlm), (26, 0), "divisor as the firmware set it");
    assert_eq!(s.divisor_writes, 0);
    assert_eq!(u.burst, TX_BURST, "IIR said the FIFOs are on");
}

#[test]
fn init_clears_a_dlab_left_set_before_touching_ier() {
    let mut s = Sim::<4>::new(2);
    s.lcr = 0x83; // firmware left the divisor latch open
    s.dlm = 0x01;
    let mut u = uart(s);
    u.init();
    let s = sim(&mut u);
    assert_eq!(s.divisor_writes, 0, "IER = 0 must not land in DLM");
    assert_eq!((s.dll, s.dlm), (26, 1));
    assert_eq!(s.ier, 0);
    assert_eq!(s.lcr, 0x03);
}

#[test]
fn init_lets_the_firmwares_last_bytes_out_before_clearing_the_fifo() {
    let mut s = Sim::<4>::new(2);
    for &b in b"boot\r\n" {
        s.transmit(b);
    }
    s.drain_every = Some(2);
    let mut u = uart(s);
    u.init();
    let s = sim(&mut u);
    assert_eq!(s.line, b"boot\r\n", "nothing lost to FCR's clear");
}

#[test]
fn reg_shift_2_width_4_hits_the_word_offsets() {
    let mut u = uart(Sim::<4>::new(2));
    u.init();
    sim(&mut u).rx_fifo.push_back(b'x');
    u.try_write_byte(b'a').unwrap();
    assert_eq!(u.try_read_byte(), Some(b'x'));
    let s = sim(&mut u);
    assert_eq!(s.offsets(), [0x00, 0x04, 0x08, 0x0c, 0x10, 0x14]);
    assert!(s.accesses.iter().all(|a| a.width == 4));
    let thr: Vec<_> = s.accesses.iter().filter(|a| a.offset == 0).collect();
    assert_eq!(thr[0].wrote, Some(b'a'), "THR at offset 0");
}

#[test]
fn reg_shift_2_width_1_uses_byte_accesses_at_the_same_offsets() {
    let mut u = uart(Sim::<1>::new(2));
    u.init();
    u.try_write_byte(b'a').unwrap();
    let s = sim(&mut u);
    assert_eq!(s.offsets(), [0x00, 0x04, 0x08, 0x0c, 0x10, 0x14]);
    assert!(s.accesses.iter().all(|a| a.width == 1));
}

#[test]
fn reg_shift_0_packs_the_registers() {
    let mut u = uart(Sim::<1>::new(0));
    u.init();
    u.try_write_byte(b'a').unwrap();
    assert_eq!(sim(&mut u).offsets(), [0, 1, 2, 3, 4, 5]);
}

#[test]
fn layouts_that_are_not_a_16550_are_refused() {
    assert_eq!(
        Mmio::new(Sim::<4>::new(2), 0).err(),
        Some(LayoutError::StrideBelowWidth {
            stride: 1,
            width: 4
        })
    );
    assert_eq!(
        Mmio::new(Sim::<1>::new(2), 4).err(),
        Some(LayoutError::ShiftTooLarge { reg_shift: 4 })
    );
    let mut small: [ReadWrite<u8>; 16] = Default::default();
    assert_eq!(
        Mmio::new(UniqueMmioPointer::from(&mut small[..]), 2).err(),
        Some(LayoutError::WindowTooSmall {
            words: 16,
            needed: 29
        })
    );
}

#[test]
fn mmio_over_safe_mmio_indexes_by_offset_over_width() {
    let mut words: [ReadWrite<u32>; 8] = Default::default();
    {
        let mut regs = Mmio32::new(UniqueMmioPointer::from(&mut words[..]), 2).unwrap();
        regs.write(Reg::Lcr, 0x03);
        regs.write(Reg::Scr, 0x5a);
        words_read_back(&mut regs);
    }
    assert_eq!(words[3].0, 0x03, "LCR at 0x0c is word 3");
    assert_eq!(words[7].0, 0x5a, "SCR at 0x1c is word 7");

    let mut bytes: [ReadWrite<u8>; 32] = Default::default();
    {
        let mut regs = Mmio8::new(UniqueMmioPointer::from(&mut bytes[..]), 2).unwrap();
        regs.write(Reg::Lcr, 0x03);
        regs.write(Reg::Scr, 0x5a);
    }
    assert_eq!(bytes[0x0c].0, 0x03, "LCR at byte 0x0c");
    assert_eq!(bytes[0x1c].0, 0x5a, "SCR at byte 0x1c");
    assert_eq!(bytes.iter().filter(|b| b.0 != 0).count(), 2);
}

fn words_read_back(regs: &mut Mmio32<'_>) {
    assert_eq!(regs.read(Reg::Lcr), 0x03);
    assert_eq!(regs.read(Reg::Scr), 0x5a);
    assert_eq!(regs.read(Reg::Mcr), 0);
}

#[test]
fn a_string_arrives_in_order_with_crlf() {
    let mut u = uart(Sim::<4>::new(2));
    u.init();
    sim(&mut u).drain_every = Some(3);
    u.write_bytes(b"hello\nworld\n");
    let s = sim(&mut u);
    s.idle();
    assert_eq!(s.line, b"hello\r\nworld\r\n");
    assert!(s.dropped.is_empty());
}

#[test]
fn a_full_fifo_blocks_and_nothing_is_lost_once_it_drains() {
    let mut u = uart(Sim::<4>::new(2));
    u.init();
    // No time passes: the transmitter fills up.
    let mut accepted = 0;
    while u.try_write_byte(b'a' + accepted as u8).is_ok() {
        accepted += 1;
        assert!(accepted <= 32, "never said WouldBlock");
    }
    assert_eq!(accepted, usize::from(TX_BURST));
    assert!(sim(&mut u).dropped.is_empty(), "wrote into a full FIFO");
    assert_eq!(u.try_write_byte(b'!'), Err(WouldBlock), "still full");

    // Partly drained is not empty: THRE is still clear.
    sim(&mut u).tick();
    assert_eq!(u.try_write_byte(b'!'), Err(WouldBlock));
    sim(&mut u).idle();
    assert_eq!(u.try_write_byte(b'!'), Ok(()));
    let s = sim(&mut u);
    s.idle();
    let mut expected: Vec<u8> = (b'a'..b'a' + TX_BURST).collect();
    expected.push(b'!');
    assert_eq!(s.line, expected);
    assert!(s.dropped.is_empty());
}

#[test]
fn write_bytes_waits_for_a_slowly_draining_fifo() {
    let text: Vec<u8> = (0..100u8).map(|i| b'0' + i % 10).collect();
    let mut u = uart(Sim::<4>::new(2));
    u.init();
    // One character leaves every 7 register accesses: far slower than
    // the driver writes, so it must wait, many times.
    sim(&mut u).drain_every = Some(7);
    u.write_bytes(&text);
    let s = sim(&mut u);
    s.idle();
    assert!(s.dropped.is_empty(), "overran the FIFO: {:?}", s.dropped);
    assert_eq!(s.line, text);
}

#[test]
fn without_fifos_one_byte_goes_per_thre() {
    let mut s = Sim::<1>::new(0);
    s.has_fifo = false;
    s.fifo_on = false;
    let mut u = uart(s);
    u.init();
    assert_eq!(u.burst, 1, "IIR said no FIFOs");
    sim(&mut u).drain_every = Some(5);
    u.write_bytes(b"no fifo here\n");
    let s = sim(&mut u);
    s.idle();
    assert!(s.dropped.is_empty(), "overran THR: {:?}", s.dropped);
    assert_eq!(s.line, b"no fifo here\r\n");
}

#[test]
fn receive_reads_only_what_arrived() {
    let mut u = uart(Sim::<4>::new(2));
    u.init();
    assert_eq!(u.try_read_byte(), None);
    sim(&mut u).rx_fifo.extend(b"ok");
    assert_eq!(u.try_read_byte(), Some(b'o'));
    assert_eq!(u.try_read_byte(), Some(b'k'));
    assert_eq!(u.try_read_byte(), None);
    assert_eq!(sim(&mut u).empty_reads, 0, "read RBR with LSR.DR clear");
}

#[test]
fn init_discards_stale_input() {
    let mut s = Sim::<4>::new(2);
    s.rx_fifo.extend(b"junk");
    let mut u = uart(s);
    u.init();
    assert_eq!(u.try_read_byte(), None);
}

/// `Component::at` over plain memory: LSR (register 5) says the
/// transmitter is empty, so a byte lands in THR (register 0), at the
/// offset `reg_shift` gives and with the access width `reg_io_width` gives.
#[test]
#[allow(unsafe_code)]
fn component_at_addresses_registers_by_shift_and_width() {
    const LSR_EMPTY: u8 = LSR_THRE | LSR_TEMT;
    // 32-bit accesses, 4 bytes apart (X-Gene).
    let words: &'static mut [u32; 8] = Box::leak(Box::new([0; 8]));
    words[5] = u32::from(LSR_EMPTY);
    let base = words.as_mut_ptr() as usize;
    {
        // SAFETY: leaked, live memory that only this driver touches, until
        // the end of this block.
        let mut uart = unsafe { Component::at(base, 2, 4) };
        assert!(matches!(uart, Component::Words(_)));
        uart.init();
        uart.write_bytes(b"w");
    }
    // SAFETY: the driver is gone; the memory is still allocated.
    let words = unsafe { &*(base as *const [u32; 8]) };
    assert_eq!(words[0], u32::from(b'w'));
    assert_eq!(words[3], u32::from(LCR_8N1), "LCR is register 3");

    // Byte accesses, 4 bytes apart (OMAP5).
    let bytes: &'static mut [u8; 32] = Box::leak(Box::new([0; 32]));
    bytes[5 << 2] = LSR_EMPTY;
    let base = bytes.as_mut_ptr() as usize;
    {
        // SAFETY: as above.
        let mut uart = unsafe { Component::at(base, 2, 1) };
        assert!(matches!(uart, Component::Bytes(_)));
        uart.init();
        uart.write_bytes(b"b");
    }
    // SAFETY: as above.
    let bytes = unsafe { &*(base as *const [u8; 32]) };
    assert_eq!(bytes[0], b'b');
    assert_eq!(bytes[3 << 2], LCR_8N1);
}
