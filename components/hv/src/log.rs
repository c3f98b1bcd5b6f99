//! Hypervisor logging: one sink (the board's UART), one macro family, each
//! line prefixed by its source: `[hv]` for the hypervisor, `[<vm>]` for guests.

use core::fmt::{self, Write};
use spin::Once;

/// Where log lines go. Implemented by the image over its console driver.
pub trait Sink: Sync {
    /// Writes one whole line (already prefixed, with its newline).
    fn write_line(&self, line: &[u8]);
}

static SINK: Once<&'static dyn Sink> = Once::new();

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

/// Writes a line that is already prefixed (a guest's console line).
pub fn write_line(line: &[u8]) {
    if let Some(sink) = SINK.get() {
        sink.write_line(line);
    }
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
    sink.write_line(&line.buf[..=line.len]);
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
