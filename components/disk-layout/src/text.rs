//! LVM2's text metadata: `name { ... }` sections, `key = value`, strings,
//! integers, flat lists and `#` comments. Hand-written: no crate parses this
//! format in no_std. Recursion is bounded, numbers are checked.
use crate::LayoutError;
use alloc::vec::Vec;

const MAX_DEPTH: u32 = 8;

#[derive(Debug)]
pub enum Value<'a> {
    /// The bytes between the quotes, escapes left in place.
    Str(&'a [u8]),
    Int(i64),
    /// A number with a fraction: read past, never used.
    Float,
    List(Vec<Value<'a>>),
    Section(Section<'a>),
}

#[derive(Debug)]
pub struct Section<'a> {
    pub name: &'a [u8],
    pub items: Vec<(&'a [u8], Value<'a>)>,
}

impl<'a> Section<'a> {
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.items
            .iter()
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, v)| v)
    }

    pub fn sections(&self) -> impl Iterator<Item = &Section<'a>> {
        self.items.iter().filter_map(|(_, v)| match v {
            Value::Section(s) => Some(s),
            _ => None,
        })
    }

    pub fn section(&self, key: &str) -> Option<&Section<'a>> {
        self.sections().find(|s| s.name == key.as_bytes())
    }
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    line: u32,
}

fn is_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-')
}

/// Parses a whole metadata text (up to its first NUL) into a root section.
pub fn parse(text: &[u8]) -> Result<Section<'_>, LayoutError> {
    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    let mut p = Parser {
        text: text.get(..end).unwrap_or(text),
        pos: 0,
        line: 1,
    };
    let items = p.items(0, false)?;
    Ok(Section { name: b"", items })
}

impl<'a> Parser<'a> {
    fn err(&self, what: &'static str) -> LayoutError {
        LayoutError::MetadataSyntax {
            line: self.line,
            what,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        if b == b'\n' {
            self.line = self.line.saturating_add(1);
        }
        Some(b)
    }

    fn skip_ws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => {
                    self.bump();
                }
                b'#' => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
    }

    fn items(
        &mut self,
        depth: u32,
        in_section: bool,
    ) -> Result<Vec<(&'a [u8], Value<'a>)>, LayoutError> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None if in_section => return Err(self.err("a section is not closed with }")),
                None => return Ok(items),
                Some(b'}') if in_section => {
                    self.bump();
                    return Ok(items);
                }
                Some(b'}') => return Err(self.err("} without a section to close")),
                Some(_) => {}
            }
            let start = self.pos;
            while self.peek().is_some_and(is_name) {
                self.bump();
            }
            let name = self.text.get(start..self.pos).unwrap_or_default();
            if name.is_empty() {
                return Err(self.err("expected a name"));
            }
            self.skip_ws();
            match self.bump() {
                Some(b'{') => {
                    if depth >= MAX_DEPTH {
                        return Err(LayoutError::MetadataNesting { line: self.line });
                    }
                    let inner = self.items(depth + 1, true)?;
                    items.push((name, Value::Section(Section { name, items: inner })));
                }
                Some(b'=') => {
                    let v = self.value(true)?;
                    items.push((name, v));
                }
                _ => return Err(self.err("expected = or { after a name")),
            }
        }
    }

    fn value(&mut self, list_ok: bool) -> Result<Value<'a>, LayoutError> {
        self.skip_ws();
        match self.peek() {
            Some(b'"') => {
                self.bump();
                let start = self.pos;
                loop {
                    match self.bump() {
                        None => return Err(self.err("a string is not closed")),
                        Some(b'\\') => {
                            self.bump();
                        }
                        Some(b'"') => break,
                        Some(_) => {}
                    }
                }
                // `pos - 1` is the closing quote, at or after `start`.
                Ok(Value::Str(
                    self.text.get(start..self.pos - 1).unwrap_or_default(),
                ))
            }
            Some(b'[') if list_ok => {
                self.bump();
                let mut list = Vec::new();
                loop {
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.bump();
                        return Ok(Value::List(list));
                    }
                    list.push(self.value(false)?);
                    self.skip_ws();
                    match self.bump() {
                        Some(b',') => {}
                        Some(b']') => return Ok(Value::List(list)),
                        _ => return Err(self.err("expected , or ] in a list")),
                    }
                }
            }
            Some(b'[') => Err(self.err("lists inside lists are not part of the format")),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("expected a string, a number or a list")),
        }
    }

    fn number(&mut self) -> Result<Value<'a>, LayoutError> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.bump();
        }
        let mut n: i64 = 0;
        let mut digits = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            self.bump();
            digits += 1;
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(i64::from(d - b'0')))
                .ok_or_else(|| self.err("number too large"))?;
        }
        if digits == 0 {
            return Err(self.err("expected digits"));
        }
        if self.peek() == Some(b'.') {
            self.bump();
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.bump();
            }
            return Ok(Value::Float);
        }
        Ok(Value::Int(if negative { -n } else { n }))
    }
}
