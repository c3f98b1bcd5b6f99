//! A scenario's `[disk-check]`, run on its disk image once QEMU is gone:
//! every byte outside the writable volumes is as before the run (sha256 of
//! each piece, taken before QEMU starts), and each ext4 volume passes
//! `e2fsck -fn` and holds the files it should (`debugfs -R 'cat PATH'`).
//! Volumes are found with `disk-layout`, the parser the hypervisor uses,
//! whose answers the fixture tests hold against `pvck`.

use crate::tools;
use crate::workspace::Workspace;
use anyhow::{anyhow, bail, Context, Result};
use config::profile::{DiskCheck, Ext4Check, FileWant};
use disk_layout::{BlockRead, Extent, IoError, Item, Source, Volume};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Sectors per hashed piece: a change is located to within 1 MiB.
const PIECE: u64 = 2048;

/// A raw disk image read through `disk-layout`.
pub struct ImageDisk {
    file: File,
    sectors: u64,
}

impl ImageDisk {
    pub fn open(image: &Path) -> Result<Self> {
        let file = File::open(image).with_context(|| format!("opening {}", image.display()))?;
        let sectors = file.metadata()?.len() / 512;
        Ok(ImageDisk { file, sectors })
    }

    /// Resolves a volume source (`part:N`, `gpt:NAME`, `lvm:VG/LV`).
    pub fn volume(&mut self, source: &str) -> Result<Volume> {
        let parsed = Source::parse(source).map_err(|e| anyhow!("{e}"))?;
        disk_layout::resolve(self, &parsed).map_err(|e| anyhow!("{e}"))
    }

    fn bytes(&self, sectors: Range<u64>) -> Result<Vec<u8>> {
        let mut buf = vec![0; ((sectors.end - sectors.start) * 512) as usize];
        self.file.read_exact_at(&mut buf, sectors.start * 512)?;
        Ok(buf)
    }

    /// The volume's bytes, in volume order.
    pub fn read_volume(&self, volume: &Volume) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity((volume.sectors() * 512) as usize);
        for e in volume.extents() {
            out.extend(self.bytes(e.disk_sector..e.disk_sector + e.sectors)?);
        }
        Ok(out)
    }

    /// Names what holds `sector`: an LV before the partition that is its PV.
    fn owner(&mut self, sector: u64) -> String {
        let Ok(listing) = disk_layout::list(self) else {
            return "the disk, whose layout does not read".into();
        };
        let mut partition = None;
        for item in listing.items {
            match item {
                Item::Lv { vg, lv, .. } => {
                    let source = format!("lvm:{vg}/{lv}");
                    if let Ok(v) = self.volume(&source) {
                        if v.extents().iter().any(|e| within(e, sector)) {
                            return source;
                        }
                    }
                }
                Item::Partition {
                    number,
                    name,
                    start,
                    sectors,
                    lvm,
                } if (start..start + sectors).contains(&sector) => {
                    let p = name.map_or(format!("part:{number}"), |n| format!("gpt:{n}"));
                    partition = Some(if lvm {
                        format!("{p}, outside its LVs (LVM label, metadata or free extents)")
                    } else {
                        p
                    });
                }
                _ => {}
            }
        }
        partition.unwrap_or_else(|| "no volume (partition table or free space)".into())
    }
}

fn within(e: &Extent, sector: u64) -> bool {
    (e.disk_sector..e.disk_sector + e.sectors).contains(&sector)
}

impl BlockRead for ImageDisk {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.file
            .read_exact_at(buf, sector * 512)
            .map_err(|_| IoError)
    }
    fn sectors(&self) -> u64 {
        self.sectors
    }
}

/// The sector ranges of `0..total` that no extent in `taken` covers, in
/// order; extents may overlap, touch, or run past `total`.
pub fn outside(total: u64, taken: &[Extent]) -> Vec<Range<u64>> {
    let mut spans: Vec<Range<u64>> = taken
        .iter()
        .map(|e| e.disk_sector.min(total)..e.disk_sector.saturating_add(e.sectors).min(total))
        .filter(|r| !r.is_empty())
        .collect();
    spans.sort_by_key(|r| r.start);
    let mut free = Vec::new();
    let mut at = 0;
    for r in spans {
        if r.start > at {
            free.push(at..r.start);
        }
        at = at.max(r.end);
    }
    if at < total {
        free.push(at..total);
    }
    free
}

/// `ranges` cut into pieces of at most `piece` sectors.
pub fn pieces(ranges: &[Range<u64>], piece: u64) -> Vec<Range<u64>> {
    ranges
        .iter()
        .flat_map(|r| {
            (r.start..r.end)
                .step_by(piece as usize)
                .map(move |s| s..(s + piece).min(r.end))
        })
        .collect()
}

/// Adjacent ranges joined: `0..2, 2..4, 6..8` is `0..4, 6..8`.
fn merge(ranges: impl IntoIterator<Item = Range<u64>>) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => out.push(r),
        }
    }
    out
}

/// The disk before the run: a hash of each piece that must not change.
pub struct Baseline {
    pieces: Vec<(Range<u64>, [u8; 32])>,
}

/// Hashes every piece of `image` outside `check.writable`.
pub fn before(image: &Path, check: &DiskCheck) -> Result<Baseline> {
    let mut disk = ImageDisk::open(image)?;
    let mut taken = Vec::new();
    for source in &check.writable {
        let v = disk
            .volume(source)
            .with_context(|| format!("disk {}: volume {source}", image.display()))?;
        taken.extend_from_slice(v.extents());
    }
    let pieces = pieces(&outside(disk.sectors, &taken), PIECE)
        .into_iter()
        .map(|r| Ok((r.clone(), Sha256::digest(disk.bytes(r)?).into())))
        .collect::<Result<_>>()?;
    Ok(Baseline { pieces })
}

/// Runs every check on `image` after the run; `work` takes the volumes'
/// copies. The error lists every failure, each naming the disk, the
/// volume and the check.
pub fn after(image: &Path, check: &DiskCheck, base: &Baseline, work: &Path) -> Result<()> {
    tools::ensure(&tools::e2fsprogs())?;
    let mut disk = ImageDisk::open(image)?;
    let mut failures = Vec::new();
    let changed = merge(
        base.pieces
            .iter()
            .filter(|(r, hash)| {
                disk.bytes(r.clone())
                    .map_or(true, |b| <[u8; 32]>::from(Sha256::digest(b)) != *hash)
            })
            .map(|(r, _)| r.clone()),
    );
    for r in changed {
        let owner = disk.owner(r.start);
        failures.push(format!(
            "sectors {}..{} changed, outside the writable volumes [{}] (in {owner})",
            r.start,
            r.end,
            check.writable.join(", ")
        ));
    }
    for e in &check.ext4 {
        if let Err(error) = ext4(&mut disk, e, work) {
            failures.push(format!("volume {}: {error:#}", e.volume));
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    bail!(
        "disk-check of {}:\n  {}",
        image.display(),
        failures.join("\n  ")
    )
}

/// `e2fsck -fn` and the files of one ext4 volume, on a copy in `work`.
fn ext4(disk: &mut ImageDisk, check: &Ext4Check, work: &Path) -> Result<()> {
    let volume = disk.volume(&check.volume)?;
    let copy = work.join(format!("{}.img", check.volume.replace([':', '/'], "_")));
    crate::workspace::write(&copy, disk.read_volume(&volume)?)?;
    let fsck = Command::new("e2fsck").arg("-fn").arg(&copy).output()?;
    if !fsck.status.success() {
        bail!(
            "e2fsck -fn {} failed ({}):\n{}{}",
            copy.display(),
            fsck.status,
            String::from_utf8_lossy(&fsck.stdout),
            String::from_utf8_lossy(&fsck.stderr)
        );
    }
    let mut bad = Vec::new();
    for f in &check.files {
        let got = debugfs_cat(&copy, &f.path)?;
        let problem = match (&got, &f.want) {
            (None, _) => Some("not found".to_string()),
            (Some(got), FileWant::Sha256(want)) => {
                let hash = hex(&Sha256::digest(got));
                (hash != *want).then(|| format!("sha256 {hash}, expected {want}"))
            }
            (Some(got), FileWant::Text(want)) => (got != want.as_bytes()).then(|| {
                format!(
                    "holds {:?}, expected {want:?}",
                    String::from_utf8_lossy(got)
                )
            }),
        };
        if let Some(p) = problem {
            bad.push(format!("{}: {p} (debugfs -R 'cat {}')", f.path, f.path));
        }
    }
    if !bad.is_empty() {
        bail!("{}", bad.join("; "));
    }
    Ok(())
}

/// The file's bytes by `debugfs -R 'cat PATH'`, `None` if it is not there
/// (debugfs says so on stderr and still exits 0).
pub fn debugfs_cat(fs: &Path, path: &str) -> Result<Option<Vec<u8>>> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat \"{path}\""))
        .arg(fs)
        .output()
        .context("running debugfs")?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || err.contains("not found") {
        return Ok(None);
    }
    if err.lines().any(|l| !l.starts_with("debugfs ")) {
        bail!("debugfs -R 'cat {path}' {}: {err}", fs.display());
    }
    Ok(Some(out.stdout))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a scenario's volume copies go: `target/disks/<board>+<scenario>/`.
pub fn work_dir(ws: &Workspace, run: &str) -> PathBuf {
    ws.target.join("disks").join(run)
}

/// `cargo xtask guest-disk`: remakes ci/disks/guest.img.gz with the real
/// tools, installed first where we may.
pub fn make_guest_disk(ws: &Workspace) -> Result<()> {
    let mut needed = tools::e2fsprogs();
    needed.extend([
        tools::lvm2(),
        tools::fdisk(),
        tools::Tool {
            binary: "losetup".into(),
            package: "mount",
        },
    ]);
    tools::ensure(&needed)?;
    anyhow::ensure!(
        tools::is_root(),
        "ci/disks/make-guest-disk.sh needs root (loop devices)"
    );
    let script = ws.root.join("ci/disks/make-guest-disk.sh");
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(status.success(), "{} failed ({status})", script.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(disk_sector: u64, sectors: u64) -> Extent {
        Extent {
            volume_sector: 0,
            disk_sector,
            sectors,
        }
    }

    #[test]
    fn outside_is_the_complement_of_the_extents() {
        assert_eq!(outside(100, &[]), vec![0..100; 1]);
        assert_eq!(outside(100, &[ext(10, 5)]), [0..10, 15..100]);
        // Out of order, touching, overlapping, at both ends.
        assert_eq!(
            outside(
                100,
                &[ext(50, 10), ext(0, 5), ext(5, 3), ext(55, 20), ext(90, 10)]
            ),
            [8..50, 75..90]
        );
        // One extent inside another.
        assert_eq!(outside(100, &[ext(10, 50), ext(20, 5)]), [0..10, 60..100]);
        // Everything taken; an extent running past the end; an empty one.
        assert!(outside(100, &[ext(0, 100)]).is_empty());
        assert_eq!(outside(100, &[ext(90, 50)]), vec![0..90; 1]);
        assert_eq!(outside(100, &[ext(200, 5), ext(7, 0)]), vec![0..100; 1]);
        assert_eq!(outside(10, &[ext(u64::MAX - 1, 5)]), vec![0..10; 1]);
        assert!(outside(0, &[]).is_empty());
    }

    #[test]
    fn pieces_cover_each_range_exactly() {
        assert_eq!(
            pieces(&[0..5, 10..21], 4),
            [0..4, 4..5, 10..14, 14..18, 18..21]
        );
        assert!(pieces(&[], 4).is_empty());
        assert_eq!(pieces(&vec![3..4; 1], 2048), vec![3..4; 1]);
        assert_eq!(merge([0..2, 2..4, 6..8, 8..9]), [0..4, 6..9]);
    }
}
