//! The volume sources a board profile names.
use core::fmt;

/// Where a guest's disk comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// `part:N`: partition N (1-based) of the MBR or GPT.
    Partition(u32),
    /// `gpt:NAME`: the GPT partition with this name.
    GptName(&'a str),
    /// `lvm:VG/LV`: a linear logical volume.
    Lvm { vg: &'a str, lv: &'a str },
}

/// Why a source string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    UnknownKind,
    BadPartitionNumber,
    EmptyName,
    NameTooLong,
    NoSlash,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::UnknownKind => "a disk source is part:N, gpt:NAME or lvm:VG/LV",
            ParseError::BadPartitionNumber => {
                "part:N needs a partition number from 1 to 4294967295"
            }
            ParseError::EmptyName => "the name is empty",
            ParseError::NameTooLong => {
                "a GPT partition name holds at most 36 UTF-16 units, an LVM name 127 bytes"
            }
            ParseError::NoSlash => "lvm: needs VG/LV, with exactly one slash",
        })
    }
}

impl<'a> Source<'a> {
    pub fn parse(s: &'a str) -> Result<Self, ParseError> {
        if let Some(n) = s.strip_prefix("part:") {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::BadPartitionNumber);
            }
            match n.parse::<u32>() {
                Ok(0) | Err(_) => Err(ParseError::BadPartitionNumber),
                Ok(n) => Ok(Source::Partition(n)),
            }
        } else if let Some(name) = s.strip_prefix("gpt:") {
            if name.is_empty() {
                return Err(ParseError::EmptyName);
            }
            if name.encode_utf16().count() > 36 {
                return Err(ParseError::NameTooLong);
            }
            Ok(Source::GptName(name))
        } else if let Some(rest) = s.strip_prefix("lvm:") {
            let (vg, lv) = rest.split_once('/').ok_or(ParseError::NoSlash)?;
            if lv.contains('/') {
                return Err(ParseError::NoSlash);
            }
            if vg.is_empty() || lv.is_empty() {
                return Err(ParseError::EmptyName);
            }
            if vg.len() > 127 || lv.len() > 127 {
                return Err(ParseError::NameTooLong);
            }
            Ok(Source::Lvm { vg, lv })
        } else {
            Err(ParseError::UnknownKind)
        }
    }
}
