//! The hypervisor's own disk: the interface its driver implements
//! ([`BlockDevice`]) and the boot report of what is on it ([`report`]).
//!
//! The board's `[disk]` names the driver; the image probes it once at boot
//! and hands it over as a `BlockDevice`. The virtio-blk back-ends that
//! serve its partitions and LVs to guests read and write through the same
//! trait, in the extents `disk_layout::resolve` gives, with the disk's own
//! lock held ([`SharedDisk`]).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use disk_layout::{Item, TableKind};

/// Bytes per sector.
pub const SECTOR: usize = 512;

/// Why a disk request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskError {
    /// The buffer is empty or not a whole number of sectors.
    BadLength,
    /// The range does not lie inside the disk.
    OutOfRange,
    /// A write to a read-only disk.
    ReadOnly,
    /// The device reported an error or broke the protocol.
    Device,
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiskError::BadLength => "buffer is not a whole number of sectors",
            DiskError::OutOfRange => "sectors outside the disk",
            DiskError::ReadOnly => "the disk is read-only",
            DiskError::Device => "device error",
        })
    }
}

/// A physical disk in 512-byte sectors, as a driver serves it. Requests
/// are synchronous (the driver polls); buffers are whole sectors.
pub trait BlockDevice {
    /// The disk's size in sectors.
    fn sectors(&self) -> u64;
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
    /// Reads `buf.len() / 512` sectors from `sector` into `buf`.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError>;
    /// Writes `buf.len() / 512` sectors at `sector`.
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DiskError>;
    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), DiskError>;
}

/// The hypervisor's disk once the core has it: behind a lock of its own,
/// which a CPU holds for one device's work, without the hypervisor's lock.
/// A CPU waiting for it relaxes as the board says (YIELD): one that spins
/// without yielding keeps its QEMU round-robin turn up to the next timer
/// deadline anywhere, and with every timer fired and masked in the
/// hypervisor there is none, so the holder, polling for its request, got
/// a turn every few seconds (`disk-linux` timed out that way).
pub(crate) type SharedDisk = alloc::sync::Arc<
    spin::mutex::TicketMutex<alloc::boxed::Box<dyn BlockDevice + Send>, crate::log::BoardRelax>,
>;

/// The board's disk as the image's `probe_disk` hands it over: its driver,
/// or why it could not be driven. `Send`: the core owns it behind its lock.
pub type Probed = Result<alloc::boxed::Box<dyn BlockDevice + Send>, String>;

/// A volume of the hypervisor's disk that one VM's device serves: where
/// it lies (resolved at boot), what the profile called it, and whether
/// the VM may write it.
#[derive(Debug, Clone)]
pub struct Served {
    pub source: String,
    pub volume: disk_layout::Volume,
    pub read_only: bool,
}

/// Checks a request against the disk before a driver sends it: a non-empty
/// whole number of sectors, all inside `sectors`.
pub fn check_request(sectors: u64, sector: u64, len: usize) -> Result<(), DiskError> {
    if len == 0 || !len.is_multiple_of(SECTOR) {
        return Err(DiskError::BadLength);
    }
    let count = (len / SECTOR) as u64;
    match sector.checked_add(count) {
        Some(end) if end <= sectors => Ok(()),
        _ => Err(DiskError::OutOfRange),
    }
}

/// A `BlockDevice` as `disk_layout` reads it.
struct Reader<'a>(&'a mut dyn BlockDevice);

impl disk_layout::BlockRead for Reader<'_> {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), disk_layout::IoError> {
        self.0.read(sector, buf).map_err(|_| disk_layout::IoError)
    }
    fn sectors(&self) -> u64 {
        self.0.sectors()
    }
}

/// A VM's disk as the profile names it, to be found on the disk at boot.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub vm: &'a str,
    pub source: &'a str,
    pub read_only: bool,
    /// The smallest volume the VM takes (0: any).
    pub min_sectors: u64,
}

/// Resolves every request on `disk`, in order: each volume, or why that
/// VM cannot have it (the message names the source and the check that
/// failed). Besides what `disk_layout::resolve` refuses, a partition that
/// is an LVM PV is refused (its metadata is the hypervisor's: serve its
/// LVs), and so is a volume that overlaps one already given to another
/// VM when either may be written.
pub fn serve_all(disk: &mut dyn BlockDevice, requests: &[Request]) -> Vec<Result<Served, String>> {
    let pv_starts: Vec<u64> = match disk_layout::list(&mut Reader(&mut *disk)) {
        Ok(listing) => listing
            .items
            .iter()
            .filter_map(|item| match item {
                Item::Partition {
                    start, lvm: true, ..
                } => Some(*start),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let mut given: Vec<(&Request, Served)> = Vec::new();
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        let result = serve_one(disk, request, &pv_starts, &given);
        if let Ok(served) = &result {
            given.push((request, served.clone()));
        }
        results.push(result);
    }
    results
}

fn serve_one(
    disk: &mut dyn BlockDevice,
    request: &Request,
    pv_starts: &[u64],
    given: &[(&Request, Served)],
) -> Result<Served, String> {
    let fail = |why: &dyn fmt::Display| format!("disk {}: {why}", request.source);
    let source = disk_layout::Source::parse(request.source).map_err(|e| fail(&e))?;
    let volume = disk_layout::resolve(&mut Reader(&mut *disk), &source).map_err(|e| fail(&e))?;
    let is_partition = matches!(
        source,
        disk_layout::Source::Partition(_) | disk_layout::Source::GptName(_)
    );
    if is_partition
        && volume
            .extents()
            .iter()
            .any(|e| pv_starts.contains(&e.disk_sector))
    {
        return Err(fail(
            &"the partition is an LVM PV, whose metadata only the hypervisor reads: serve its LVs",
        ));
    }
    for (other, theirs) in given {
        let shared = !(request.read_only && other.read_only);
        if other.vm != request.vm && shared && overlap(&volume, &theirs.volume) {
            return Err(fail(&format_args!(
                "overlaps {} of VM {}, and one of them is writable",
                other.source, other.vm
            )));
        }
    }
    if volume.sectors() < request.min_sectors {
        return Err(fail(&format_args!(
            "{} sectors ({}), less than the VM's min-size of {}",
            volume.sectors(),
            sectors_size(volume.sectors()),
            sectors_size(request.min_sectors)
        )));
    }
    if disk.read_only() && !request.read_only {
        return Err(fail(&"the disk is read-only: say read-only = true"));
    }
    Ok(Served {
        source: String::from(request.source),
        volume,
        read_only: request.read_only,
    })
}

/// Whether two volumes share a disk sector.
fn overlap(a: &disk_layout::Volume, b: &disk_layout::Volume) -> bool {
    a.extents().iter().any(|x| {
        b.extents().iter().any(|y| {
            x.disk_sector < y.disk_sector.saturating_add(y.sectors)
                && y.disk_sector < x.disk_sector.saturating_add(x.sectors)
        })
    })
}

/// `bytes` for people: "8 MiB", "6.5 MiB", "512 bytes".
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = None;
    let mut scale = 1u64;
    for (i, _) in UNITS.iter().enumerate() {
        let next = 1u64 << (10 * (i + 1));
        if bytes >= next {
            unit = Some(i);
            scale = next;
        }
    }
    match unit {
        None => format!("{bytes} bytes"),
        Some(i) => {
            let whole = bytes / scale;
            // Tenths, rounded down, so "1023.9 KiB" never reads "1024.0".
            let tenths = (u128::from(bytes % scale) * 10 / u128::from(scale)) as u64;
            if bytes.is_multiple_of(scale) {
                format!("{whole} {}", UNITS[i])
            } else {
                format!("{whole}.{tenths} {}", UNITS[i])
            }
        }
    }
}

fn sectors_size(sectors: u64) -> String {
    human_size(sectors.saturating_mul(SECTOR as u64))
}

/// What is on `disk`, one line each (without the `[hv]` prefix): the disk
/// and its size, then each partition and each LV, or why it could not be
/// read. `what` names the disk ("virtio-blk at 0xa003e00").
pub fn report(what: &str, disk: &mut dyn BlockDevice) -> Vec<String> {
    let sectors = disk.sectors();
    let ro = if disk.read_only() { ", read-only" } else { "" };
    let mut lines = Vec::new();
    let listing = disk_layout::list(&mut Reader(disk));
    let table = match &listing {
        Ok(l) => match l.table {
            TableKind::Gpt => "GPT",
            TableKind::Mbr => "MBR",
            TableKind::None => "no partition table",
        },
        Err(_) => "layout unreadable",
    };
    lines.push(format!(
        "disk: {what}: {sectors} sectors ({}){ro}, {table}",
        sectors_size(sectors)
    ));
    let listing = match listing {
        Ok(l) => l,
        Err(e) => {
            lines.push(format!("disk: cannot read its layout: {e}"));
            return lines;
        }
    };
    if listing.items.is_empty() {
        lines.push(String::from("disk: no partitions or LVs"));
    }
    for item in listing.items {
        lines.push(match item {
            Item::Partition {
                number,
                name,
                start,
                sectors,
                lvm,
            } => format!(
                "disk: partition {number}{}: sectors {start}..{} ({}){}",
                name.map(|n| format!(" \"{}\"", n.escape_debug()))
                    .unwrap_or_default(),
                start.saturating_add(sectors),
                sectors_size(sectors),
                if lvm { ", LVM PV" } else { "" }
            ),
            Item::BadPartition { number, error } => {
                format!("disk: partition {number}: unusable: {error}")
            }
            Item::Lv {
                vg,
                lv,
                sectors: Ok(sectors),
            } => format!(
                "disk: LV {}/{}: {sectors} sectors ({})",
                vg.escape_debug(),
                lv.escape_debug(),
                sectors_size(sectors)
            ),
            Item::Lv {
                vg,
                lv,
                sectors: Err(e),
            } => format!(
                "disk: LV {}/{}: cannot be served: {e}",
                vg.escape_debug(),
                lv.escape_debug()
            ),
            Item::BadPv { pv: 0, error } => format!("disk: LVM PV (the whole disk): {error}"),
            Item::BadPv { pv, error } => format!("disk: LVM PV on partition {pv}: {error}"),
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    struct Mem(Vec<u8>, bool);

    impl BlockDevice for Mem {
        fn sectors(&self) -> u64 {
            (self.0.len() / SECTOR) as u64
        }
        fn read_only(&self) -> bool {
            false
        }
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
            check_request(self.sectors(), sector, buf.len())?;
            if self.1 {
                return Err(DiskError::Device);
            }
            let at = sector as usize * SECTOR;
            buf.copy_from_slice(&self.0[at..at + buf.len()]);
            Ok(())
        }
        fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DiskError> {
            check_request(self.sectors(), sector, buf.len())?;
            let at = sector as usize * SECTOR;
            self.0[at..at + buf.len()].copy_from_slice(buf);
            Ok(())
        }
        fn flush(&mut self) -> Result<(), DiskError> {
            Ok(())
        }
    }

    /// A 1 MiB disk with an MBR: partition 1 at 2048, 512 sectors, type
    /// 0x83; partition 2 type 0x8e past the disk's end.
    fn mbr_disk() -> Mem {
        let mut d = vec![0u8; 1 << 20];
        let mut entry = |i: usize, ty: u8, start: u32, len: u32| {
            let at = 446 + 16 * i;
            d[at + 4] = ty;
            d[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
            d[at + 12..at + 16].copy_from_slice(&len.to_le_bytes());
        };
        entry(0, 0x83, 1024, 512);
        entry(1, 0x8e, 1536, 4096);
        d[510] = 0x55;
        d[511] = 0xaa;
        Mem(d, false)
    }

    #[test]
    fn report_lists_partitions_and_errors() {
        let lines = report("test disk", &mut mbr_disk());
        assert_eq!(
            lines,
            [
                "disk: test disk: 2048 sectors (1 MiB), MBR",
                "disk: partition 1: sectors 1024..1536 (256 KiB)",
                "disk: partition 2: unusable: partition 2 does not lie inside the disk (or is empty)",
            ]
        );
    }

    #[test]
    fn report_blank_and_unreadable_disks() {
        let lines = report("blank", &mut Mem(vec![0; 4096], false));
        assert_eq!(
            lines,
            [
                "disk: blank: 8 sectors (4 KiB), no partition table",
                "disk: no partitions or LVs"
            ]
        );
        let lines = report("broken", &mut Mem(vec![0; 4096], true));
        assert_eq!(
            lines[0],
            "disk: broken: 8 sectors (4 KiB), layout unreadable"
        );
        assert!(lines[1].starts_with("disk: cannot read its layout: "));
        assert_eq!(lines.len(), 2);
    }

    /// disk-layout's LVM fixture: GPT "esp" (partition 1) and "pv"
    /// (partition 2, VG vg0 with LVs web and db).
    fn lvm_disk() -> Mem {
        use std::io::Read;
        let gz = include_bytes!("../../disk-layout/tests/fixtures/lvm.img.gz");
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut bytes)
            .expect("the fixture unpacks");
        Mem(bytes, false)
    }

    fn request<'a>(vm: &'a str, source: &'a str, read_only: bool) -> Request<'a> {
        Request {
            vm,
            source,
            read_only,
            min_sectors: 0,
        }
    }

    fn outcome(results: &[Result<Served, String>]) -> Vec<Result<u64, &str>> {
        results
            .iter()
            .map(|r| match r {
                Ok(s) => Ok(s.volume.sectors()),
                Err(e) => Err(e.as_str()),
            })
            .collect()
    }

    #[test]
    fn volumes_are_served_once_to_writers() {
        let mut disk = lvm_disk();
        let results = serve_all(
            &mut disk,
            &[
                request("a", "lvm:vg0/web", false),
                request("b", "gpt:esp", true),
                request("c", "part:1", true),
                request("c", "lvm:vg0/db", false),
                request("d", "lvm:vg0/web", true),
                request("d", "part:1", false),
                request("e", "part:2", true),
                request("e", "lvm:vg0/nope", false),
                request("e", "lvm:web", false),
            ],
        );
        assert_eq!(
            outcome(&results),
            [
                Ok(1536),
                Ok(1024),
                Ok(1024),
                Ok(768),
                Err("disk lvm:vg0/web: overlaps lvm:vg0/web of VM a, and one of them is writable"),
                Err("disk part:1: overlaps gpt:esp of VM b, and one of them is writable"),
                Err("disk part:2: the partition is an LVM PV, whose metadata only the hypervisor reads: serve its LVs"),
                Err("disk lvm:vg0/nope: VG vg0 has no LV nope"),
                Err("disk lvm:web: lvm: needs VG/LV, with exactly one slash"),
            ]
        );
        let web = results[0].as_ref().unwrap();
        assert_eq!((web.source.as_str(), web.read_only), ("lvm:vg0/web", false));
    }

    #[test]
    fn a_volume_smaller_than_the_vm_asks_is_refused() {
        let mut disk = lvm_disk();
        let at_least = |min_sectors| Request {
            min_sectors,
            ..request("a", "lvm:vg0/web", true)
        };
        let results = serve_all(&mut disk, &[at_least(1536), at_least(1537)]);
        assert_eq!(
            outcome(&results),
            [
                Ok(1536),
                Err("disk lvm:vg0/web: 1536 sectors (768 KiB), less than the VM's min-size of 768.5 KiB")
            ]
        );
    }

    #[test]
    fn a_read_only_disk_serves_only_read_only_volumes() {
        let mut disk = ReadOnlyMem(lvm_disk(), true);
        let results = serve_all(
            &mut disk,
            &[
                request("a", "lvm:vg0/web", false),
                request("b", "lvm:vg0/db", true),
            ],
        );
        assert_eq!(
            outcome(&results),
            [
                Err("disk lvm:vg0/web: the disk is read-only: say read-only = true"),
                Ok(768)
            ]
        );
    }

    /// `Mem` that says it is read-only (or not).
    struct ReadOnlyMem(Mem, bool);

    impl BlockDevice for ReadOnlyMem {
        fn sectors(&self) -> u64 {
            self.0.sectors()
        }
        fn read_only(&self) -> bool {
            self.1
        }
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
            self.0.read(sector, buf)
        }
        fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DiskError> {
            self.0.write(sector, buf)
        }
        fn flush(&mut self) -> Result<(), DiskError> {
            Ok(())
        }
    }

    #[test]
    fn requests_are_checked() {
        assert_eq!(check_request(8, 0, 0), Err(DiskError::BadLength));
        assert_eq!(check_request(8, 0, 513), Err(DiskError::BadLength));
        assert_eq!(check_request(8, 7, 1024), Err(DiskError::OutOfRange));
        assert_eq!(check_request(8, u64::MAX, 512), Err(DiskError::OutOfRange));
        assert_eq!(check_request(8, 7, 512), Ok(()));
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1023), "1023 bytes");
        assert_eq!(human_size(1024), "1 KiB");
        assert_eq!(human_size(3 << 19), "1.5 MiB");
        assert_eq!(human_size((1 << 20) - 1), "1023.9 KiB");
        assert_eq!(human_size(8 << 30), "8 GiB");
        assert_eq!(human_size(1 << 50), "1 PiB");
        assert_eq!(human_size(u64::MAX), "16383.9 PiB");
    }
}
