//! `ProfileError` and the helpers that point it at a file, line and column.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Separates a message from its help in errors raised inside serde
/// deserialisers, which can only carry one string.
pub(crate) const HELP_SEP: &str = "\nhelp: ";

/// A problem in a board profile or scenario file, located for the developer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    pub file: PathBuf,
    /// 1-based; 0 when the error is about the file as a whole (or a directory).
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The field at fault, as written in the file ("memory.hypervisor", "vm 'b' memory").
    pub field: String,
    pub message: String,
    pub help: Option<String>,
}

impl ProfileError {
    /// An error about a whole file or directory, with no position in it.
    pub fn whole(file: &Path, field: &str, message: impl Into<String>) -> Self {
        ProfileError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            field: field.to_string(),
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn with_optional_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProfileError {}

/// A file being checked: errors at a byte span in it get a line and column.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    pub fn error(
        &self,
        span: Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ProfileError {
        let (line, column) = line_column(self.text, span.start);
        ProfileError {
            file: self.path.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
            help: None,
        }
    }

    /// Reads a file and makes sense of its TOML into `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ProfileError> {
        // Parsing to a plain table first tells syntax errors from schema errors.
        if let Err(err) = self.text.parse::<toml::Table>() {
            let span = err.span().unwrap_or(0..0);
            return Err(self
                .error(
                    span,
                    "",
                    format!("TOML syntax error: {}", err.message().trim_end()),
                )
                .with_help("see https://toml.io for the syntax"));
        }
        toml::from_str(self.text).map_err(|err| self.schema_error(&err))
    }

    fn schema_error(&self, err: &toml::de::Error) -> ProfileError {
        let span = err.span().unwrap_or(0..0);
        let raw = err.message().trim_end();
        let (section, key) = field_at(self.text, span.start);
        let field = join_field(&section, key.as_deref());
        if let Some((unknown, valid)) = parse_unknown(raw) {
            // The span is on the unknown key itself: name the table it sits in.
            let kind = if raw.starts_with("unknown variant") {
                "value"
            } else {
                "field"
            };
            let (field, listing) = if kind == "field" {
                let listing = if section.is_empty() {
                    "the file takes"
                } else {
                    "the fields here are"
                };
                (section.clone(), listing)
            } else {
                (field, "the accepted values are")
            };
            let message = if valid.is_empty() {
                format!("unknown {kind} '{unknown}'; this table takes no fields")
            } else {
                format!(
                    "unknown {kind} '{unknown}'; {listing}: {}",
                    valid.join(", ")
                )
            };
            return self
                .error(span, &field, message)
                .with_optional_help(did_you_mean(&unknown, &valid));
        }
        if let Some(missing) = raw
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            let table = if section.is_empty() {
                "at the top of the file".to_string()
            } else {
                format!("in [{section}]")
            };
            return self
                .error(span, &section, format!("'{missing}' is missing"))
                .with_help(format!("add {missing} = ... {table}"));
        }
        // serde names Rust types; the developer wrote TOML.
        let raw = raw
            .replace("expected u32", "expected a whole number")
            .replace(
                "expected u64",
                "expected a whole number (an address or a size in bytes)",
            );
        let (message, help) = match raw.split_once(HELP_SEP) {
            Some((message, help)) => (message, Some(help.to_string())),
            None => (raw.as_str(), None),
        };
        self.error(span, &field, message).with_optional_help(help)
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The table and key a byte offset sits in, read back from the text, for
/// errors that toml reports with a span only. Arrays of tables are numbered
/// ("vm #2"). Best effort: good enough to point a developer at the line.
fn field_at(text: &str, offset: usize) -> (String, Option<String>) {
    let (line, column) = line_column(text, offset);
    let current = text.lines().nth(line - 1).unwrap_or("");
    let upto: String = current.chars().take(column - 1).collect();
    let mut section = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for l in text.lines().take(line) {
        let t = l.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|t| t.split("]]").next()) {
            let name = name.trim().to_string();
            let n = match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => {
                    *c += 1;
                    *c
                }
                None => {
                    counts.push((name.clone(), 1));
                    1
                }
            };
            section = format!("{name} #{n}");
        } else if let Some(name) = t.strip_prefix('[').and_then(|t| t.split(']').next()) {
            section = name.trim().to_string();
        }
    }
    // A span inside a header's brackets is an unknown table name: the
    // table it belongs to is the top level.
    if current.trim_start().starts_with('[') && !upto.trim().is_empty() {
        section.clear();
    }
    let keys: Vec<&str> = upto
        .match_indices('=')
        .filter_map(|(i, _)| {
            let k = upto[..i].trim_end();
            let start = k
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .map_or(0, |s| s + 1);
            (start < k.len()).then(|| &k[start..])
        })
        .collect();
    let key = match keys.as_slice() {
        [] => None,
        [one] => Some(one.to_string()),
        [first, .., last] => Some(format!("{first}.{last}")),
    };
    (section, key)
}

/// "memory" + "hypervisor" → "memory.hypervisor"; "vm #2" + "memory" → "vm #2 memory".
fn join_field(section: &str, key: Option<&str>) -> String {
    match key {
        None => section.to_string(),
        Some(key) if section.is_empty() => key.to_string(),
        Some(key) if section.contains(" #") => format!("{section} {key}"),
        Some(key) => format!("{section}.{key}"),
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant"):
/// the unknown name and the valid ones.
fn parse_unknown(message: &str) -> Option<(String, Vec<String>)> {
    if !(message.starts_with("unknown field") || message.starts_with("unknown variant")) {
        return None;
    }
    let mut quoted = message.split('`').skip(1).step_by(2).map(str::to_string);
    let unknown = quoted.next()?;
    Some((unknown, quoted.collect()))
}

/// "did you mean 'x'?" for the closest of `candidates`, if any is close.
pub(crate) fn did_you_mean<S: AsRef<str>>(name: &str, candidates: &[S]) -> Option<String> {
    closest(name, candidates).map(|c| format!("did you mean '{c}'?"))
}

pub(crate) fn closest<'a, S: AsRef<str>>(name: &str, candidates: &'a [S]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(name, c.as_ref()), c.as_ref()))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nx", 3), (2, 1));
    }

    #[test]
    fn field_at_names_section_and_key() {
        let text = "[memory]\nram = { base = 1, size = \"x\" }\n[[vm]]\n[[vm]]\nmemory = \"y\"\n";
        let size = text.find("\"x\"").unwrap();
        assert_eq!(
            field_at(text, size),
            ("memory".into(), Some("ram.size".into()))
        );
        let mem = text.find("\"y\"").unwrap();
        assert_eq!(field_at(text, mem), ("vm #2".into(), Some("memory".into())));
        assert_eq!(
            field_at(text, text.find("[[vm]]").unwrap()),
            ("vm #1".into(), None)
        );
        assert_eq!(
            field_at(text, text.find("vm]]").unwrap()),
            (String::new(), None)
        );
    }
}
