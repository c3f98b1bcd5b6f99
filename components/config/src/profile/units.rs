//! Sizes ("16MiB", or bytes) and durations ("2ms") as written in profiles.

use super::error::HELP_SEP;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

const SIZE_UNITS: [(&str, u64); 5] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

const PERIOD_UNITS: [(&str, u64); 3] = [("us", 1), ("ms", 1_000), ("s", 1_000_000)];

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

/// A duration, with microsecond resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period(pub Duration);

/// Splits "16 MiB" into 16 and "MiB"; the message says what is wrong otherwise.
fn split_number(text: &str, example: &str) -> Result<(u64, String), String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return Err(format!(
            "\"{text}\" does not start with a number{HELP_SEP}write it like \"{example}\""
        ));
    }
    let number = text[..digits]
        .parse()
        .map_err(|_| format!("\"{text}\" is too large"))?;
    Ok((number, text[digits..].trim().to_string()))
}

impl std::str::FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (number, unit) = split_number(text, "16MiB")?;
        let accepted = "B, KiB, MiB, GiB, TiB (binary, powers of 1024), or a plain number of bytes";
        let Some(&(_, scale)) = SIZE_UNITS
            .iter()
            .find(|(u, _)| *u == unit || unit.is_empty())
        else {
            // "16MB", "16m", "16mib": the developer almost always means the binary unit.
            let guess = SIZE_UNITS.iter().find(|(u, _)| {
                u.chars().next() == unit.chars().next().map(|c| c.to_ascii_uppercase())
            });
            let help = match guess {
                Some((u, _)) => {
                    format!("sizes take the units {accepted}; did you mean \"{number}{u}\"?")
                }
                None => format!("sizes take the units {accepted}"),
            };
            return Err(format!(
                "\"{}\": unknown size unit \"{unit}\"{HELP_SEP}{help}",
                text.trim()
            ));
        };
        number
            .checked_mul(scale)
            .map(Size)
            .ok_or_else(|| format!("\"{}\" does not fit in 64 bits", text.trim()))
    }
}

impl std::str::FromStr for Period {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (number, unit) = split_number(text, "2ms")?;
        let unit = if unit == "µs" {
            "us".to_string()
        } else {
            unit
        };
        let Some(&(_, scale)) = PERIOD_UNITS.iter().find(|(u, _)| *u == unit) else {
            let what = if unit.is_empty() {
                "has no unit".to_string()
            } else {
                format!("has an unknown unit \"{unit}\"")
            };
            return Err(format!(
                "\"{}\" {what}{HELP_SEP}durations take the units us, ms, s, e.g. \"2ms\" or \"500us\"",
                text.trim()
            ));
        };
        number
            .checked_mul(scale)
            .map(|us| Period(Duration::from_micros(us)))
            .ok_or_else(|| format!("\"{}\" is too long", text.trim()))
    }
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = Size;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a size such as \"16MiB\" or a number of bytes")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
        Ok(Size(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
        u64::try_from(v)
            .map(Size)
            .map_err(|_| E::custom(format!("a size cannot be negative ({v})")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
        v.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SizeVisitor)
    }
}

struct PeriodVisitor;

impl Visitor<'_> for PeriodVisitor {
    type Value = Period;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration such as \"2ms\"")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Period, E> {
        Err(E::custom(format!(
            "{v} has no unit{HELP_SEP}write a string with a unit: \"{v}ms\", \"{v}us\" or \"{v}s\""
        )))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Period, E> {
        v.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PeriodVisitor)
    }
}

/// "16 MiB", "1 GiB", "1536 KiB", "7 bytes": the largest unit that divides exactly.
pub fn format_size(bytes: u64) -> String {
    SIZE_UNITS[1..]
        .iter()
        .rev()
        .find(|(_, scale)| bytes >= *scale && bytes.is_multiple_of(*scale))
        .map_or(format!("{bytes} bytes"), |(u, scale)| {
            format!("{} {u}", bytes / scale)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!("16MiB".parse(), Ok(Size(16 << 20)));
        assert_eq!("1 GiB".parse(), Ok(Size(1 << 30)));
        assert_eq!("4096".parse(), Ok(Size(4096)));
        let err = "16MB".parse::<Size>().unwrap_err();
        assert!(err.contains("\"16MiB\""), "{err}");
        assert!("MiB".parse::<Size>().is_err());
        assert!("99999999999GiB".parse::<Size>().is_err());
    }

    #[test]
    fn periods_parse_to_microseconds() {
        assert_eq!("2ms".parse(), Ok(Period(Duration::from_millis(2))));
        assert_eq!("500us".parse(), Ok(Period(Duration::from_micros(500))));
        assert_eq!("60s".parse(), Ok(Period(Duration::from_secs(60))));
        assert!("2".parse::<Period>().is_err());
        assert!("2min".parse::<Period>().is_err());
    }

    #[test]
    fn sizes_format_readably() {
        assert_eq!(format_size(16 << 20), "16 MiB");
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(1536 << 10), "1536 KiB");
        assert_eq!(format_size(7), "7 bytes");
    }
}
