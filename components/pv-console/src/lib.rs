//! The paravirtual console back-end: each VM's output is collected into
//! lines and each line goes out whole, prefixed with the VM's name, so
//! guests sharing one UART never interleave mid-line and no guest can
//! forge another's (or the hypervisor's) prefix or send terminal escapes.
#![cfg_attr(not(test), no_std)]

use heapless::Vec;

/// Longest line kept; a longer one is wrapped.
pub const LINE_MAX: usize = 200;
/// Longest prefix: `[` + 32-byte name + `] `.
const PREFIX_MAX: usize = 35;

/// One VM's partial output line.
#[derive(Default)]
pub struct LineBuffer {
    line: Vec<u8, LINE_MAX>,
}

impl LineBuffer {
    pub const fn new() -> Self {
        LineBuffer { line: Vec::new() }
    }

    /// Takes `bytes` of `name`'s output; calls `emit` with each completed,
    /// prefixed line (newline included). Returns how many lines it emitted.
    pub fn write(&mut self, name: &str, bytes: &[u8], emit: &mut impl FnMut(&[u8])) -> usize {
        let mut lines = 0;
        for &byte in bytes {
            match byte {
                b'\n' => {
                    self.emit_line(name, emit);
                    lines += 1;
                }
                b'\r' => {}
                _ => {
                    if self.line.is_full() {
                        self.emit_line(name, emit);
                        lines += 1;
                    }
                    let _ = self.line.push(printable(byte));
                }
            }
        }
        lines
    }

    /// Emits what is left of a line (when a VM stops mid-line).
    pub fn flush(&mut self, name: &str, emit: &mut impl FnMut(&[u8])) {
        if !self.line.is_empty() {
            self.emit_line(name, emit);
        }
    }

    fn emit_line(&mut self, name: &str, emit: &mut impl FnMut(&[u8])) {
        let mut out: Vec<u8, { PREFIX_MAX + LINE_MAX + 1 }> = Vec::new();
        let name = &name.as_bytes()[..name.len().min(PREFIX_MAX - 3)];
        // Capacity covers prefix, line and newline, so these cannot fail.
        let _ = out.push(b'[');
        let _ = out.extend_from_slice(name);
        let _ = out.extend_from_slice(b"] ");
        let _ = out.extend_from_slice(&self.line);
        let _ = out.push(b'\n');
        emit(&out);
        self.line.clear();
    }
}

/// Control characters would let a guest move the cursor or rewrite what
/// other VMs printed; they show as `.`.
fn printable(byte: u8) -> u8 {
    match byte {
        b'\t' | 0x20..=0x7e | 0x80..=0xff => byte,
        _ => b'.',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(buf: &mut LineBuffer, name: &str, input: &[u8]) -> (std::vec::Vec<String>, usize) {
        let mut lines = std::vec::Vec::new();
        let n = buf.write(name, input, &mut |l: &[u8]| {
            lines.push(String::from_utf8(l.to_vec()).unwrap())
        });
        (lines, n)
    }

    #[test]
    fn prefixes_whole_lines_and_keeps_partial_ones() {
        let mut buf = LineBuffer::new();
        let (lines, n) = collect(&mut buf, "hello", b"one\ntw");
        assert_eq!((lines, n), (vec!["[hello] one\n".to_string()], 1));
        let (lines, _) = collect(&mut buf, "hello", b"o\r\n");
        assert_eq!(lines, vec!["[hello] two\n"]);
    }

    #[test]
    fn escapes_and_control_characters_are_neutralised() {
        let mut buf = LineBuffer::new();
        let (lines, _) = collect(&mut buf, "evil", b"\x1b[2J\x08[hv] fake\n");
        assert_eq!(lines, vec!["[evil] .[2J.[hv] fake\n"]);
    }

    #[test]
    fn long_lines_wrap_and_flush_emits_the_rest() {
        let mut buf = LineBuffer::new();
        let long = vec![b'x'; LINE_MAX + 5];
        let (lines, n) = collect(&mut buf, "a", &long);
        assert_eq!(n, 1);
        assert_eq!(lines[0].len(), "[a] ".len() + LINE_MAX + 1);
        let mut rest = std::vec::Vec::new();
        buf.flush("a", &mut |l: &[u8]| rest.push(l.to_vec()));
        assert_eq!(rest, vec![b"[a] xxxxx\n".to_vec()]);
        buf.flush("a", &mut |_: &[u8]| panic!("nothing left to flush"));
    }
}
