//! `print!` and `println!` over the console hypercall, without a heap: text
//! is formatted into a buffer on the stack and written when the buffer is
//! full and at the end of the call, so a short line is one hypercall.

use core::fmt::{self, Write};

const BUFFER_LEN: usize = 256;

/// Formats into a fixed buffer and writes it with [`crate::hc::console_write_all`].
pub struct Console {
    buffer: [u8; BUFFER_LEN],
    len: usize,
}

impl Console {
    /// An empty console buffer.
    pub const fn new() -> Self {
        Console {
            buffer: [0; BUFFER_LEN],
            len: 0,
        }
    }

    /// Writes out what is buffered. Console errors are dropped: there is
    /// nowhere else to report them.
    pub fn flush(&mut self) {
        let _ = crate::hc::console_write_all(&self.buffer[..self.len]);
        self.len = 0;
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut bytes = s.as_bytes();
        while !bytes.is_empty() {
            if self.len == BUFFER_LEN {
                self.flush();
            }
            let n = bytes.len().min(BUFFER_LEN - self.len);
            self.buffer[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    let mut console = Console::new();
    let _ = console.write_fmt(args);
    console.flush();
}

/// Prints to the Tessera console (the hypervisor adds `[vm-name] ` to each line).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!($($arg)*))
    };
}

/// Prints a line to the Tessera console (the hypervisor adds `[vm-name] `).
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::_print(::core::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}
