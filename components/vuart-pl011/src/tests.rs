use super::*;
use proptest::prelude::*;
use std::sync::Mutex;

const RSR: u64 = 0x004;
const DMACR: u64 = 0x048;

/// Collects what reaches the hypervisor console. Tests run in parallel,
/// so each test's VM has its own name and reads back only its lines.
struct Recorder(Mutex<Vec<Vec<u8>>>);

impl hv::log::Sink for Recorder {
    fn write_line(&self, line: &[u8]) {
        self.0.lock().unwrap().push(line.to_vec());
    }
}

static RECORDER: Recorder = Recorder(Mutex::new(Vec::new()));

fn uart(name: &'static str) -> VUart {
    hv::log::set_sink(&RECORDER);
    VUart::with(name, 3, 33)
}

fn lines_of(name: &str) -> Vec<String> {
    let prefix = format!("[{name}] ");
    RECORDER
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .filter(|l| l.starts_with(&prefix))
        .collect()
}

fn r32(u: &mut VUart, offset: u64) -> u32 {
    u.read(0, offset, 4) as u32
}

fn w32(u: &mut VUart, offset: u64, value: u32) -> Signal {
    u.write(0, offset, 4, u64::from(value))
}

fn level(line: bool) -> Signal {
    Signal {
        level: Some(line),
        ..Signal::default()
    }
}

#[test]
fn reset_state() {
    let mut u = uart("reset");
    assert_eq!(r32(&mut u, FR), FR_RXFE | FR_TXFE);
    assert_eq!(r32(&mut u, RIS), INT_TX);
    assert_eq!(r32(&mut u, IMSC), 0);
    assert_eq!(r32(&mut u, MIS), 0);
    assert_eq!(r32(&mut u, CR), 0x300);
    assert_eq!(r32(&mut u, IFLS), 0x12);
    assert_eq!(r32(&mut u, DR), 0, "empty FIFO reads 0");
    assert!(!u.line());
    assert_eq!(u.irq(), Some(33));
}

#[test]
fn config_registers_read_back_within_their_fields() {
    let mut u = uart("config");
    for (offset, value, kept) in [
        (IBRD, 0xdead_0027, 0x0027),
        (FBRD, 0xff, 0x3f),
        (LCR_H, 0x170, 0x70),
        (CR, 0x1_0301, 0x0301),
        (IFLS, 0xff, 0x3f),
        (IMSC, 0xffff_ffff, INT_ALL),
    ] {
        assert!(!w32(&mut u, offset, value).raise);
        assert_eq!(r32(&mut u, offset), kept, "offset {offset:#x}");
    }
    // RSR/ECR and DMACR: writes ignored, read 0.
    w32(&mut u, RSR, 0xf);
    w32(&mut u, DMACR, 0x7);
    assert_eq!((r32(&mut u, RSR), r32(&mut u, DMACR)), (0, 0));
    // FR, RIS and MIS are read-only.
    w32(&mut u, FR, 0);
    w32(&mut u, RIS, 0);
    assert_eq!(r32(&mut u, FR), FR_RXFE | FR_TXFE);
    assert_eq!(r32(&mut u, RIS), INT_TX);
}

#[test]
fn id_registers_say_pl011_r1p5() {
    let mut u = uart("ids");
    let ids: Vec<u32> = (0..8).map(|i| r32(&mut u, 0xfe0 + 4 * i)).collect();
    assert_eq!(ids, [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
    let cell = ids[4..].iter().rev().fold(0u32, |acc, &b| acc << 8 | b);
    assert_eq!(cell, 0xb105_f00d);
    let periph = ids[..4].iter().rev().fold(0u32, |acc, &b| acc << 8 | b);
    assert_eq!(periph & 0x000f_ffff, 0x0004_1011, "Arm's PL011");
    assert_eq!(periph >> 20 & 0xf, 3, "revision r1p5");
    // Misaligned or narrow ID reads are not registers; the IDs stay.
    assert_eq!(u.read(0, 0xfe1, 4), 0);
    assert_eq!(u.read(0, 0xfe0, 1), 0);
    w32(&mut u, 0xfe0, 0);
    assert_eq!(r32(&mut u, 0xfe0), 0x11);
}

#[test]
fn linux_like_tx_goes_out_in_prefixed_lines() {
    let mut u = uart("txvm");
    // pl011_hwinit/pl011_enable_interrupts: clear RX, unmask RX|RT.
    w32(&mut u, ICR, INT_RX | INT_RT | 0x780);
    assert_eq!(w32(&mut u, IMSC, INT_RX | INT_RT), level(false));
    // pl011_start_tx -> pl011_tx_chars(from_irq = false): while !TXFF,
    // write DR. It never finds TXFF, so never unmasks TXIM.
    for &byte in b"Booting Linux\r\nsecond" {
        assert_eq!(r32(&mut u, FR) & FR_TXFF, 0);
        let line_ends = Signal {
            console_line: byte == b'\n',
            ..level(false)
        };
        assert_eq!(w32(&mut u, DR, u32::from(byte)), line_ends);
    }
    // pl011_tx_empty / console write: FR.BUSY clear, TXFE set.
    assert_eq!(r32(&mut u, FR) & (1 << 3), 0);
    assert_ne!(r32(&mut u, FR) & FR_TXFE, 0);
    assert_eq!(lines_of("txvm"), ["[txvm] Booting Linux\n"]);
    // Earlycon writes single bytes; the upper bits of a wide write are not
    // data.
    u.write(0, DR, 1, u64::from(b'!'));
    u.write(0, DR, 2, 0xff00 | u64::from(b'\n'));
    assert_eq!(
        lines_of("txvm"),
        ["[txvm] Booting Linux\n", "[txvm] second!\n"]
    );
    // A partial line comes out on flush; control bytes are neutralised as
    // the paravirtual console does.
    for &byte in b"\x1b[2Jbye" {
        w32(&mut u, DR, u32::from(byte));
    }
    u.flush();
    assert_eq!(lines_of("txvm")[2], "[txvm] .[2Jbye\n");
}

#[test]
fn tx_interrupt_fires_at_once_and_stops_when_masked() {
    let mut u = uart("txirq");
    // A driver that unmasks TXIM to wait for room gets the interrupt now.
    assert_eq!(w32(&mut u, IMSC, INT_TX), level(true));
    assert_eq!(r32(&mut u, MIS), INT_TX);
    // Its handler writes and then masks TXIM (pl011_stop_tx): line low.
    assert_eq!(w32(&mut u, DR, u32::from(b'x')), level(true));
    assert_eq!(w32(&mut u, IMSC, 0), level(false));
    // ICR clears TXRIS; the next write sets it again.
    w32(&mut u, ICR, INT_TX);
    assert_eq!(r32(&mut u, RIS), 0);
    assert_eq!(w32(&mut u, IMSC, INT_TX), level(false));
    let signal = w32(&mut u, DR, u32::from(b'\n'));
    assert_eq!(signal.level, Some(true));
    assert!(signal.console_line, "the line ended");
}

#[test]
fn rx_with_interrupt() {
    let mut u = uart("rxvm");
    w32(&mut u, ICR, INT_ALL);
    assert_eq!(w32(&mut u, IMSC, INT_RX | INT_RT), level(false));
    assert_eq!(u.input(b"ls\n"), (3, level(true)));
    assert_eq!(r32(&mut u, FR) & FR_RXFE, 0);
    assert_eq!(r32(&mut u, MIS), INT_RX | INT_RT);
    // pl011_fifo_to_tty: read DR until FR.RXFE.
    let mut got = Vec::new();
    while r32(&mut u, FR) & FR_RXFE == 0 {
        got.push(r32(&mut u, DR) as u8);
        assert_eq!(u.line(), u.pending() > 0);
    }
    assert_eq!(got, b"ls\n");
    assert_eq!(r32(&mut u, RIS) & (INT_RX | INT_RT), 0);
    assert_eq!(u.signal(), level(false));
    // ICR clears RX status with data still waiting; a later read that
    // leaves data behind sets it again.
    u.input(b"ab");
    assert_eq!(w32(&mut u, ICR, INT_RX | INT_RT), level(false));
    assert_eq!(u.read(0, DR, 1), u64::from(b'a'));
    assert!(u.line());
    assert_eq!(u.read(0, DR, 2), u64::from(b'b'));
    assert!(!u.line());
}

#[test]
fn masked_and_unmasked_level_changes() {
    let mut u = uart("masks");
    w32(&mut u, ICR, INT_TX);
    assert_eq!(u.input(b"x").1, level(false), "RX masked");
    assert_eq!(r32(&mut u, RIS), INT_RX | INT_RT);
    assert_eq!(r32(&mut u, MIS), 0);
    assert_eq!(w32(&mut u, IMSC, INT_RT), level(true));
    assert_eq!(r32(&mut u, MIS), INT_RT);
    assert_eq!(w32(&mut u, IMSC, INT_TX), level(false), "TXRIS clear");
    assert_eq!(w32(&mut u, IMSC, INT_RX | INT_TX), level(true));
    assert_eq!(w32(&mut u, ICR, INT_RX), level(false));
    assert_eq!(r32(&mut u, RIS), INT_RT);
}

#[test]
fn rx_is_bounded_and_counts_what_it_drops() {
    let mut u = uart("flood");
    assert_eq!(u.input(&[b'a'; RX_FIFO - 1]).0, RX_FIFO - 1);
    assert_eq!(r32(&mut u, FR) & FR_RXFF, 0);
    u.input(b"b");
    assert_ne!(r32(&mut u, FR) & FR_RXFF, 0);
    let big = vec![b'c'; RX_MAX];
    assert_eq!(u.input(&big).0, RX_MAX - RX_FIFO);
    assert_eq!(u.dropped(), RX_FIFO as u64);
    assert_eq!(u.input(b"zz").0, 0);
    assert_eq!(u.dropped(), RX_FIFO as u64 + 2);
    assert_eq!(u.pending(), RX_MAX);
    // Oldest first; the backlog refills the FIFO as the guest reads.
    assert_eq!(r32(&mut u, DR), u32::from(b'a'));
    for _ in 1..RX_MAX {
        assert_ne!(r32(&mut u, DR), 0);
    }
    assert_eq!(r32(&mut u, FR) & (FR_RXFE | FR_RXFF), FR_RXFE);
}

#[test]
fn input_is_taken_whatever_cr_says() {
    let mut u = uart("rxoff");
    w32(&mut u, CR, 0);
    assert_eq!(u.input(b"k").0, 1);
    assert_eq!(r32(&mut u, DR), u32::from(b'k'));
}

#[test]
fn bad_widths_and_offsets_are_ignored() {
    let mut u = uart("bad");
    u.input(b"q");
    w32(&mut u, IMSC, INT_RX);
    for width in [0u8, 3, 5, 8, 16, 255] {
        assert_eq!(u.read(0, DR, width), 0, "DR width {width}");
        assert_eq!(u.write(0, DR, width, u64::from(b'y')), level(true));
    }
    for width in [1u8, 2, 8] {
        assert_eq!(u.read(0, FR, width), 0);
        assert_eq!(u.read(0, IMSC, width), 0);
        u.write(0, IMSC, width, 0);
        u.write(0, ICR, width, u64::from(INT_ALL));
    }
    assert_eq!(r32(&mut u, IMSC), INT_RX, "narrow writes ignored");
    for offset in [
        1,
        2,
        3,
        0x8,
        0x1c,
        0x4c,
        0x100,
        0xfdc,
        0xffd,
        0x1000,
        u64::MAX,
    ] {
        assert_eq!(u.read(0, offset, 4), 0, "offset {offset:#x}");
        assert_eq!(u.write(0, offset, 4, u64::MAX), level(true));
    }
    assert_eq!(r32(&mut u, DR), u32::from(b'q'), "data untouched");
    assert!(lines_of("bad").is_empty());
}

#[derive(Clone, Debug)]
enum Step {
    Read(u64, u8),
    Write(u64, u8, u64),
    Input(Vec<u8>),
}

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u64..0x13).prop_map(|r| r * 4),
        1 => (0u64..8).prop_map(|i| 0xfe0 + 4 * i),
        1 => 0u64..0x1000,
        1 => any::<u64>(),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let width = prop_oneof![4 => Just(4u8), 1 => Just(1u8), 1 => Just(2u8), 1 => any::<u8>()];
    prop_oneof![
        3 => (offset(), width.clone()).prop_map(|(o, w)| Step::Read(o, w)),
        3 => (offset(), width, any::<u64>()).prop_map(|(o, w, v)| Step::Write(o, w, v)),
        1 => prop::collection::vec(any::<u8>(), 0..RX_MAX / 2).prop_map(Step::Input),
    ]
}

proptest! {
    #[test]
    fn random_accesses_keep_the_invariants(steps in prop::collection::vec(step(), 1..200)) {
        let mut u = uart("prop");
        let mut offered = 0u64;
        let mut taken = 0u64;
        for step in steps {
            let signal = match step {
                Step::Read(offset, width) => {
                    u.read(1, offset, width);
                    u.signal()
                }
                Step::Write(offset, width, value) => u.write(1, offset, width, value),
                Step::Input(bytes) => {
                    let (took, signal) = u.input(&bytes);
                    prop_assert!(took <= bytes.len());
                    offered += bytes.len() as u64;
                    taken += took as u64;
                    signal
                }
            };
            let ris = r32(&mut u, RIS);
            let imsc = r32(&mut u, IMSC);
            prop_assert_eq!(signal.level, Some(ris & imsc != 0));
            prop_assert!(!signal.raise);
            prop_assert_eq!(u.line(), ris & imsc != 0);
            prop_assert_eq!(r32(&mut u, MIS), ris & imsc);
            prop_assert!(u.pending() <= RX_MAX);
            let fr = r32(&mut u, FR);
            prop_assert_eq!(fr & FR_RXFE != 0, u.pending() == 0);
            prop_assert_eq!(fr & FR_RXFF != 0, u.pending() >= RX_FIFO);
            prop_assert_eq!(fr & (FR_TXFE | FR_TXFF), FR_TXFE);
            if u.pending() == 0 {
                prop_assert_eq!(ris & (INT_RX | INT_RT), 0);
            }
            prop_assert_eq!(u.dropped(), offered - taken);
        }
    }
}
