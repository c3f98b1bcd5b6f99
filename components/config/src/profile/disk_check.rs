//! A scenario's `[disk-check]`: what its disk must hold once QEMU is gone.
//! xtask runs the checks (diskcheck.rs).
//!
//! ```toml
//! [disk-check]
//! writable = ["lvm:vg0/web"]     # every byte outside these must be unchanged
//! [[disk-check.ext4]]            # e2fsck -fn passes on the volume, and
//! volume = "lvm:vg0/web"         # each file (debugfs cat) has its content
//! files = [{ path = "/a.txt", sha256 = "..." }, { path = "/b.txt", text = "b\n" }]
//! ```

use super::error::{ProfileError, Source};
use serde::Deserialize;
use toml::Spanned;

/// The checks, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCheck {
    /// Volume sources the run may change; nothing else on the disk may.
    pub writable: Vec<String>,
    pub ext4: Vec<Ext4Check>,
}

/// An ext4 filesystem on a volume: `e2fsck -fn` passes and `files` match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4Check {
    pub volume: String,
    pub files: Vec<FileCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// Absolute, inside the filesystem.
    pub path: String,
    pub want: FileWant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileWant {
    /// Lowercase hex, 64 digits.
    Sha256(String),
    Text(String),
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct DiskCheckFile {
    writable: Vec<Spanned<String>>,
    #[serde(default)]
    ext4: Vec<Ext4File>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Ext4File {
    volume: Spanned<String>,
    #[serde(default)]
    files: Vec<Spanned<FileEntry>>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileEntry {
    path: String,
    sha256: Option<String>,
    text: Option<String>,
}

/// Checks `[disk-check]`; `has_disk` is whether the scenario sets `disk`.
pub(super) fn check(
    src: Source,
    file: Spanned<DiskCheckFile>,
    has_disk: bool,
) -> Result<DiskCheck, ProfileError> {
    let span = file.span();
    let file = file.into_inner();
    if !has_disk {
        return Err(src
            .error(span, "disk-check", "there is no disk to check")
            .with_help("set disk = \"...\" (the image QEMU attaches), or remove [disk-check]"));
    }
    let nonempty = |s: &Spanned<String>, field: &str| match disk_layout::Source::parse(s.get_ref())
    {
        Ok(_) => Ok(s.get_ref().clone()),
        Err(why) => Err(src
            .error(s.span(), field, format!("volume '{}': {why}", s.get_ref()))
            .with_help("a volume source as in a VM's disks: part:N, gpt:NAME or lvm:VG/LV")),
    };
    let writable = file
        .writable
        .iter()
        .map(|w| nonempty(w, "disk-check.writable"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ext4 = Vec::new();
    for e in file.ext4 {
        let volume = nonempty(&e.volume, "disk-check.ext4.volume")?;
        let mut files = Vec::new();
        for f in e.files {
            let at = f.span();
            let f = f.into_inner();
            let field = "disk-check.ext4.files";
            if !f.path.starts_with('/') {
                return Err(src
                    .error(at, field, format!("path {:?} is not absolute", f.path))
                    .with_help("a path inside the filesystem, from its root: \"/hello.txt\""));
            }
            let want = match (f.sha256, f.text) {
                (Some(hash), None) => {
                    if hash.len() != 64
                        || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    {
                        return Err(src
                            .error(at, field, format!("sha256 {hash:?} is not 64 lowercase hex digits"))
                            .with_help("as sha256sum prints it"));
                    }
                    FileWant::Sha256(hash)
                }
                (None, Some(text)) => FileWant::Text(text),
                _ => {
                    return Err(src
                        .error(at, field, format!("{}: give sha256 or text, exactly one", f.path))
                        .with_help("{ path = \"/a.txt\", sha256 = \"...\" } or { path = \"/a.txt\", text = \"a\\n\" }"))
                }
            };
            files.push(FileCheck { path: f.path, want });
        }
        ext4.push(Ext4Check { volume, files });
    }
    Ok(DiskCheck { writable, ext4 })
}
