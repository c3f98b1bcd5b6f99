//! Hypervisor logging: one sink (the board's UART), one macro family, each
//! line prefixed by its source: `[hv]` for the hypervisor, `[<vm>]` for guests.
//!
//! Once the image calls [`queue_output`], lines are not written where they
//! are logged (under the hypervisor's lock, where a polled UART at 115200
//! baud would hold every CPU for 87 µs a byte) but queued in an [`Outbox`]
//! and written by [`drain`], which a CPU calls after it has let go of that
//! lock. Each source has a quota in the outbox, so a VM that prints faster
//! than the UART drains loses its own lines (counted), never another's.
//! Errors are written at once, after what is queued: they may be the last
//! words before the machine stops.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use spin::{mutex::SpinMutex, Once};

/// Where log lines go. Implemented by the image over its console driver.
pub trait Sink: Sync {
    /// Writes one whole line (already prefixed, with its newline).
    fn write_line(&self, line: &[u8]);
}

static SINK: Once<&'static dyn Sink> = Once::new();
static OUTBOX: Once<SpinMutex<Outbox, BoardRelax>> = Once::new();
/// How a CPU waits for the outbox lock: the board's way ([`queue_output`]).
static RELAX: Once<fn()> = Once::new();

/// Waits as the board said to: a CPU that spins without yielding burns
/// its whole time slice under QEMU's round-robin TCG, where the lock's
/// holder cannot run meanwhile.
pub(crate) struct BoardRelax;

impl spin::RelaxStrategy for BoardRelax {
    fn relax() {
        match RELAX.get() {
            Some(relax) => relax(),
            None => core::hint::spin_loop(),
        }
    }
}
/// A CPU is writing the outbox to the sink; others leave it to that one.
static DRAINING: AtomicBool = AtomicBool::new(false);
/// Something may be queued: [`drain`] runs after every exit and, most of
/// the time, only reads this.
static QUEUED: AtomicBool = AtomicBool::new(false);

/// The outbox source of the hypervisor's own lines; VM `n` is `n + 1`.
pub const HV_SOURCE: usize = 0;
/// Longest line the outbox takes (a longer one is cut).
pub const LINE_MAX: usize = 256;
const HEADER: usize = 4;

/// Lines waiting for the sink, oldest first, each with its source; a source
/// holds at most its quota of them at a time (the hypervisor's, which
/// speaks for every VM, may be larger than a VM's).
pub struct Outbox {
    bytes: VecDeque<u8>,
    quota: usize,
    hv_quota: usize,
    /// Bytes each source has queued.
    queued: Vec<usize>,
    /// Bytes each source lost to a full quota since this was last reported.
    lost: Vec<u64>,
}

impl Outbox {
    /// An outbox for `sources` sources of `quota` bytes each; all the memory
    /// it will use is allocated here.
    pub fn new(sources: usize, quota: usize) -> Self {
        Self::with_hv_quota(sources, quota, quota)
    }

    /// [`Outbox::new`], with `hv_quota` bytes for the hypervisor's source.
    pub fn with_hv_quota(sources: usize, hv_quota: usize, quota: usize) -> Self {
        let vms = sources.saturating_sub(1);
        Outbox {
            bytes: VecDeque::with_capacity(hv_quota + HEADER + vms * (quota + HEADER)),
            quota,
            hv_quota,
            queued: alloc::vec![0; sources],
            lost: alloc::vec![0; sources],
        }
    }

    /// Queues `line` from `source`; false (and counted) if it would take
    /// the source past its quota, or the source is unknown.
    pub fn push(&mut self, source: usize, line: &[u8]) -> bool {
        let line = &line[..line.len().min(LINE_MAX)];
        let Some(queued) = self.queued.get_mut(source) else {
            return false;
        };
        let quota = if source == HV_SOURCE {
            self.hv_quota
        } else {
            self.quota
        };
        if *queued + line.len() > quota {
            self.lost[source] += line.len() as u64;
            return false;
        }
        *queued += line.len();
        self.bytes.extend((source as u16).to_le_bytes());
        self.bytes.extend((line.len() as u16).to_le_bytes());
        self.bytes.extend(line);
        true
    }

    /// Takes the oldest line into `out`; its length.
    pub fn pop(&mut self, out: &mut [u8; LINE_MAX]) -> Option<usize> {
        if self.bytes.len() < HEADER {
            return None;
        }
        let mut header = [0; HEADER];
        for byte in &mut header {
            *byte = self.bytes.pop_front()?;
        }
        let source = usize::from(u16::from_le_bytes([header[0], header[1]]));
        let len = usize::from(u16::from_le_bytes([header[2], header[3]]));
        for (slot, byte) in out.iter_mut().zip(self.bytes.drain(..len)) {
            *slot = byte;
        }
        self.queued[source] -= len;
        Some(len)
    }

    /// Bytes `source` lost since the last call, which resets the count.
    pub fn take_lost(&mut self, source: usize) -> u64 {
        self.lost.get_mut(source).map_or(0, core::mem::take)
    }
}

/// From now on, lines are queued for [`drain`]: `sources` sources (the
/// hypervisor, `hv_quota` bytes, and each VM, `quota` bytes); a CPU that
/// waits for the outbox calls `relax` while it spins.
pub fn queue_output(sources: usize, hv_quota: usize, quota: usize, relax: fn()) {
    RELAX.call_once(|| relax);
    OUTBOX.call_once(|| SpinMutex::new(Outbox::with_hv_quota(sources, hv_quota, quota)));
}

/// Writes the queued lines to the sink, unless another CPU is at it.
pub fn drain() {
    // QUEUED first: this runs after every exit, and is nearly always false.
    if !QUEUED.load(Ordering::Acquire) {
        return;
    }
    let (Some(sink), Some(outbox)) = (SINK.get(), OUTBOX.get()) else {
        return;
    };
    if DRAINING.swap(true, Ordering::Acquire) {
        return;
    }
    QUEUED.store(false, Ordering::Relaxed);
    let mut line = [0; LINE_MAX];
    // The outbox lock is held to take one line, not while it is written.
    while let Some(len) = outbox.lock().pop(&mut line) {
        sink.write_line(&line[..len]);
    }
    DRAINING.store(false, Ordering::Release);
}

/// Bytes of `source`'s lines lost to its full quota since last asked.
pub fn take_lost(source: usize) -> u64 {
    OUTBOX
        .get()
        .map_or(0, |outbox| outbox.lock().take_lost(source))
}

/// Queues `line` from `source`, or writes it at once while nothing is
/// queued; false if it was lost.
fn deliver(source: usize, line: &[u8]) -> bool {
    match (OUTBOX.get(), SINK.get()) {
        (Some(outbox), _) => {
            let queued = outbox.lock().push(source, line);
            QUEUED.store(true, Ordering::Release);
            queued
        }
        (None, Some(sink)) => {
            sink.write_line(line);
            true
        }
        (None, None) => false,
    }
}

/// Installs the sink; lines logged before this are dropped.
pub fn set_sink(sink: &'static dyn Sink) {
    SINK.call_once(|| sink);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
}

/// Formats into a fixed line buffer: logging must work with no heap and
/// from the exception handler.
struct LineBuf {
    buf: [u8; 256],
    len: usize,
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - 1 - self.len; // keep one byte for '\n'
        let take = s.len().min(room);
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// A line VM `vm` printed, already prefixed; false if it was lost.
pub fn write_guest_line(vm: usize, line: &[u8]) -> bool {
    deliver(vm + 1, line)
}

/// Writes one `[source] ...` line. Use the macros instead.
pub fn emit(level: Level, source: &str, args: fmt::Arguments) {
    let Some(sink) = SINK.get() else { return };
    let mut line = LineBuf {
        buf: [0; 256],
        len: 0,
    };
    let tag = match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info => "",
    };
    let _ = write!(line, "[{source}] {tag}{args}");
    line.buf[line.len] = b'\n';
    let line = &line.buf[..=line.len];
    if level == Level::Error {
        drain();
        sink.write_line(line);
    } else {
        deliver(HV_SOURCE, line);
    }
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Info, "hv", format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Warn, "hv", format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Error, "hv", format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pop_all(outbox: &mut Outbox) -> Vec<Vec<u8>> {
        let mut out = [0; LINE_MAX];
        core::iter::from_fn(|| outbox.pop(&mut out).map(|len| out[..len].to_vec())).collect()
    }

    #[test]
    fn lines_come_out_in_order_whatever_their_source() {
        let mut outbox = Outbox::new(3, 64);
        assert!(outbox.push(1, b"[a] one\n"));
        assert!(outbox.push(HV_SOURCE, b"[hv] two\n"));
        assert!(outbox.push(2, b"[b] three\n"));
        assert_eq!(
            pop_all(&mut outbox),
            [&b"[a] one\n"[..], b"[hv] two\n", b"[b] three\n"]
        );
        assert!(pop_all(&mut outbox).is_empty());
    }

    #[test]
    fn the_hypervisor_may_have_a_quota_of_its_own() {
        let mut outbox = Outbox::with_hv_quota(3, 40, 10);
        assert!(outbox.push(HV_SOURCE, &[b'h'; 30]));
        assert!(outbox.push(1, &[b'a'; 10]));
        assert!(!outbox.push(2, &[b'b'; 11]), "a VM's quota is 10");
        assert!(!outbox.push(HV_SOURCE, &[b'h'; 11]), "30 + 11 > 40");
        assert!(outbox.push(HV_SOURCE, &[b'h'; 10]));
        assert_eq!(outbox.take_lost(2), 11);
        assert_eq!(outbox.take_lost(HV_SOURCE), 11);
    }

    #[test]
    fn a_source_over_its_quota_loses_its_own_lines_only() {
        let mut outbox = Outbox::new(3, 20);
        let flood = [b'x'; 10];
        assert!(outbox.push(1, &flood));
        assert!(outbox.push(1, &flood));
        assert!(!outbox.push(1, &flood), "a third would pass the quota");
        assert!(!outbox.push(1, b"y"));
        assert!(
            outbox.push(2, &[b'z'; 20]),
            "another VM still has all of its quota"
        );
        assert!(outbox.push(HV_SOURCE, b"hv"));
        assert_eq!(outbox.take_lost(1), 11);
        assert_eq!(outbox.take_lost(1), 0, "reported once");
        assert_eq!(outbox.take_lost(2), 0);
        assert_eq!(pop_all(&mut outbox).len(), 4);
        assert!(outbox.push(1, &flood), "drained, the quota is back");
        assert!(!outbox.push(9, b"no such source"));
        assert_eq!(outbox.take_lost(9), 0);
    }

    #[test]
    fn a_long_line_is_cut_and_the_outbox_never_grows() {
        let mut outbox = Outbox::new(2, 2 * LINE_MAX);
        let capacity = outbox.bytes.capacity();
        assert!(outbox.push(1, &[b'l'; 1000]));
        assert!(outbox.push(1, &[b'm'; 1000]));
        assert!(!outbox.push(1, b"!"));
        assert!(outbox.push(0, &[b'h'; LINE_MAX]));
        assert_eq!(
            outbox.bytes.capacity(),
            capacity,
            "no allocation after new()"
        );
        let lines = pop_all(&mut outbox);
        assert_eq!(
            lines.iter().map(Vec::len).collect::<Vec<_>>(),
            [LINE_MAX, LINE_MAX, LINE_MAX]
        );
    }
}
