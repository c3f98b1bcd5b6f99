//! The SD-card image (`target/images/<name>/sdcard.img`) and writing it to a
//! card. No root and no loop device: the MBR is written with `mbrman` and the
//! FAT32 file system with `fatfs` straight into the image file.
//!
//! The image is reproducible: fixed disk signature, volume id and label, and
//! every FAT time stamp is `SOURCE_DATE_EPOCH` (0 when unset, which FAT can
//! only spell as its earliest date, 1980-01-01 00:00:00).

use crate::compose::Built;
use crate::uimage;
use anyhow::{bail, ensure, Context, Result};
use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions, TimeProvider};
use mbrman::{MBRPartitionEntry, BOOT_ACTIVE, CHS, MBR};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The whole card image.
pub const IMAGE_BYTES: u64 = 64 << 20;
pub const SECTOR: u32 = 512;
/// The FAT partition starts at 1 MiB.
pub const PARTITION_START_LBA: u32 = 2048;
/// FAT32 with LBA addressing.
pub const PARTITION_TYPE: u8 = 0x0c;
const DISK_SIGNATURE: [u8; 4] = *b"TSSR";
const VOLUME_ID: u32 = 0x7e55_e4a0;
const VOLUME_LABEL: [u8; 11] = *b"TESSERA    ";

/// The files of a built image that go on the card, in this order; the
/// optional ones only when they exist (no uImage for a board whose load
/// address is above 4 GiB).
pub const CARD_FILES: [(&str, bool); 4] = [
    ("tessera.uimg", false),
    ("boot.scr", true),
    ("boot.cmd", true),
    ("tessera.itb", true),
];

/// Writes `<built.dir>/sdcard.img` from the built image's files.
pub fn write_sdcard(built: &Built) -> Result<PathBuf> {
    let out = built.dir.join("sdcard.img");
    write_image(&out, &card_files(&built.dir)?)?;
    Ok(out)
}

/// A card whose `boot.scr` boots the FIT (`tessera.itb`) instead of the
/// uImage: `sdcard-fit.img`, staged from `boot-fit.scr`/`boot-fit.cmd`.
pub fn write_fit_sdcard(built: &Built) -> Result<PathBuf> {
    let stage = built.dir.join("fit-card");
    std::fs::create_dir_all(&stage).with_context(|| format!("creating {}", stage.display()))?;
    let mut files = Vec::new();
    for (from, to) in [
        ("boot-fit.scr", "boot.scr"),
        ("boot-fit.cmd", "boot.cmd"),
        ("tessera.itb", "tessera.itb"),
    ] {
        let (from, to) = (built.dir.join(from), stage.join(to));
        std::fs::copy(&from, &to)
            .with_context(|| format!("staging {} for the FIT card", from.display()))?;
        files.push(to);
    }
    let out = built.dir.join("sdcard-fit.img");
    write_image(&out, &files)?;
    Ok(out)
}

/// The files of [`CARD_FILES`] in `dir`; fails if a required one is missing.
pub fn card_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for (name, required) in CARD_FILES {
        let path = dir.join(name);
        if path.is_file() {
            files.push(path);
        } else if required {
            bail!("{} is missing: build the image first", path.display());
        }
    }
    Ok(files)
}

/// Writes a card image at `out` whose one FAT32 partition holds `files`
/// (under their own names, in the root directory).
pub fn write_image(out: &Path, files: &[PathBuf]) -> Result<()> {
    let context = || format!("writing the SD-card image {}", out.display());
    let mut disk = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .with_context(context)?;
    disk.set_len(IMAGE_BYTES).with_context(context)?;

    let total_sectors = u32::try_from(IMAGE_BYTES / u64::from(SECTOR))?;
    let sectors = total_sectors - PARTITION_START_LBA;
    let mut mbr = MBR::new_from(&mut disk, SECTOR, DISK_SIGNATURE).with_context(context)?;
    mbr[1] = MBRPartitionEntry {
        boot: BOOT_ACTIVE,
        first_chs: CHS::empty(),
        sys: PARTITION_TYPE,
        last_chs: CHS::empty(),
        starting_lba: PARTITION_START_LBA,
        sectors,
    };
    mbr.write_into(&mut disk).with_context(context)?;

    let start = u64::from(PARTITION_START_LBA) * u64::from(SECTOR);
    let end = start + u64::from(sectors) * u64::from(SECTOR);
    disk.seek(SeekFrom::Start(0))?;
    let mut partition = fscommon::StreamSlice::new(&mut disk, start, end).with_context(context)?;
    fatfs::format_volume(
        &mut partition,
        FormatVolumeOptions::new()
            .fat_type(FatType::Fat32)
            .bytes_per_cluster(SECTOR)
            .volume_id(VOLUME_ID)
            .volume_label(VOLUME_LABEL),
    )
    .context("formatting the FAT32 partition")?;

    let options = FsOptions::new()
        .update_accessed_date(false)
        .time_provider(time_provider()?);
    let fs =
        FileSystem::new(&mut partition, options).context("opening the new FAT32 file system")?;
    {
        let root = fs.root_dir();
        for path in files {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("{} has no usable file name", path.display()))?;
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let mut file = root
                .create_file(name)
                .with_context(|| format!("creating {name} on the card"))?;
            file.truncate()?;
            file.write_all(&bytes)
                .with_context(|| format!("writing {name} on the card (is it too big?)"))?;
            file.flush()?;
        }
    }
    fs.unmount().context("closing the FAT32 file system")?;
    disk.flush().with_context(context)?;
    Ok(())
}

/// FAT time stamps: one fixed time, `SOURCE_DATE_EPOCH` or 0.
#[derive(Debug)]
struct FixedTime(fatfs::DateTime);

impl TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        self.0
    }
}

/// fatfs 0.3 wants a `&'static` provider; one small leak per image written.
fn time_provider() -> Result<&'static FixedTime> {
    let time = dos_time(uimage::timestamp()?);
    Ok(Box::leak(Box::new(FixedTime(time))))
}

/// Seconds since 1970 (UTC) as a FAT date and time, clamped to FAT's
/// 1980..=2107 range.
pub fn dos_time(unix: u32) -> fatfs::DateTime {
    const MIN: i64 = 315_532_800; // 1980-01-01T00:00:00Z
    let secs = i64::from(unix).max(MIN);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // u32 seconds end in 2106, inside FAT's range.
    fatfs::DateTime {
        date: fatfs::Date {
            year: year as u16,
            month: month as u16,
            day: day as u16,
        },
        time: fatfs::Time {
            hour: (rest / 3600) as u16,
            min: (rest / 60 % 60) as u16,
            sec: (rest % 60) as u16,
            millis: 0,
        },
    }
}

/// Why a block device must not be written without `--force`: one reason a
/// line, none when it is safe. `disk` is its name in `/sys/block` (`sdb`,
/// `mmcblk0`), `mounts` the text of `/proc/mounts` and `sys_block` the
/// `/sys/block` directory (both passed in so that tests can fake them).
pub fn device_problems(disk: &str, mounts: &str, sys_block: &Path) -> Vec<String> {
    let dir = sys_block.join(disk);
    if !dir.is_dir() {
        return vec![format!(
            "{disk} is not a whole disk (no {}): give the disk, not a partition",
            dir.display()
        )];
    }
    let mut problems = Vec::new();
    // Partitions are the subdirectories named after the disk (sdb1, mmcblk0p1).
    let mut names = vec![disk.to_string()];
    if let Ok(entries) = std::fs::read_dir(&dir) {
        names.extend(
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(disk) && n != disk),
        );
    }
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(source), Some(target)) = (fields.next(), fields.next()) else {
            continue;
        };
        if let Some(name) = source.strip_prefix("/dev/") {
            if names.iter().any(|n| n == name) {
                problems.push(format!("{source} is mounted on {target}"));
            }
        }
    }
    match std::fs::read_to_string(dir.join("removable")) {
        Ok(flag) if flag.trim() == "1" => {}
        Ok(_) => problems.push(format!(
            "{disk} is not removable ({}/removable is not 1): it may be a system disk",
            dir.display()
        )),
        Err(_) => problems.push(format!("cannot tell whether {disk} is removable")),
    }
    problems
}

/// Writes `image` to `device`: a regular file (or a new path), or a block
/// device that is removable and has nothing mounted (unless `force`).
/// Returns the bytes written.
pub fn flash(image: &Path, device: &Path, force: bool) -> Result<u64> {
    use std::os::unix::fs::FileTypeExt;
    let is_block = std::fs::metadata(device).is_ok_and(|m| m.file_type().is_block_device());
    if is_block {
        let real = device.canonicalize()?;
        let disk = real
            .file_name()
            .and_then(|n| n.to_str())
            .context("the device has no name")?
            .to_string();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let problems = device_problems(&disk, &mounts, Path::new("/sys/block"));
        if !problems.is_empty() {
            if force {
                for problem in &problems {
                    eprintln!("xtask: --force given, writing anyway: {problem}");
                }
            } else {
                bail!(
                    "refusing to write {}:\n    {}\n(use --force if you are sure)",
                    device.display(),
                    problems.join("\n    ")
                );
            }
        }
    } else if let Ok(meta) = std::fs::metadata(device) {
        ensure!(
            meta.is_file(),
            "{} is neither a regular file nor a block device",
            device.display()
        );
    }
    let mut source = File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let mut target = OpenOptions::new()
        .write(true)
        .create(!is_block)
        .truncate(!is_block)
        .open(device)
        .with_context(|| format!("opening {} for writing", device.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        let n = source.read(&mut buf)?;
        if n == 0 {
            break;
        }
        target
            .write_all(&buf[..n])
            .with_context(|| format!("writing {}", device.display()))?;
        written += n as u64;
    }
    target
        .sync_all()
        .with_context(|| format!("syncing {}", device.display()))?;
    Ok(written)
}
