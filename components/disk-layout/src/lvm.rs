//! LVM2: the label, the pv_header, the metadata area header, the committed
//! copy in the ring, and the VG metadata that maps an LV to PV extents.
//! Only single-PV VGs and linear LVs (`striped` with one stripe) are served.
use crate::mbr::{read_mbr, table_from, Partition};
use crate::text::{self, Section, Value};
use crate::volume::Run;
use crate::{crc, le32, le64, read_sectors, BlockRead, LayoutError, Volume, SECTOR};
use alloc::string::String;
use alloc::vec::Vec;

const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
/// Refuse metadata texts above this instead of reading what a header says.
const MAX_TEXT: u64 = 1 << 20;
const RAW_LOCN_IGNORED: u32 = 1;
/// A GPT may type thousands of entries as LVM; each costs up to 2 MiB of
/// metadata reads, so look at this many at most.
pub const MAX_PVS: usize = 16;
/// lvm2 writes at most two metadata areas per PV.
const MAX_MDAS: usize = 2;

pub fn resolve(disk: &mut impl BlockRead, vg: &str, lv: &str) -> Result<Volume, LayoutError> {
    let pvs = match read_mbr(disk)? {
        Some(entries) => table_from(disk, entries)?.lvm_partitions()?,
        // No partition table: the whole disk may be the PV.
        None => alloc::vec![Partition {
            start: 0,
            sectors: disk.sectors(),
            lvm: true
        }],
    };
    if pvs.is_empty() {
        return Err(LayoutError::NoLvmPv);
    }
    if pvs.len() > MAX_PVS {
        return Err(LayoutError::TooManyPvs(pvs.len()));
    }
    let mut found = String::new();
    let mut first_err = None;
    for pv in pvs {
        let result = read_pv(disk, pv).and_then(|(uuid, text)| {
            let root = text::parse(&text)?;
            let (name, vg_sec) = vg_section(&root)?;
            if name != vg.as_bytes() {
                return Ok(Err(String::from_utf8_lossy(name).into_owned()));
            }
            map_lv(vg, vg_sec, lv, &uuid, pv).map(Ok)
        });
        match result {
            Ok(Ok(volume)) => return Ok(volume),
            Ok(Err(other)) => {
                if !found.is_empty() {
                    found.push_str(", ");
                }
                found.push_str(&other);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    // A PV we could not read may hold the VG: its error says more.
    Err(first_err.unwrap_or(LayoutError::NoSuchVg {
        vg: String::from(vg),
        found: if found.is_empty() {
            String::from("none")
        } else {
            found
        },
    }))
}

/// One LV as [`list_pv`] finds it: VG name, LV name, size in sectors or
/// why it cannot be mapped.
pub type ListedLv = (String, String, Result<u64, LayoutError>);

/// The LVs of the VG on PV `pv`: VG name, LV name, and the LV's size in
/// sectors or why it cannot be mapped (checked as [`resolve`] checks it,
/// extents past the disk included).
pub fn list_pv(disk: &mut impl BlockRead, pv: Partition) -> Result<Vec<ListedLv>, LayoutError> {
    let (uuid, text) = read_pv(disk, pv)?;
    let root = text::parse(&text)?;
    let (name, vg_sec) = vg_section(&root)?;
    let vg = String::from_utf8_lossy(name).into_owned();
    let disk_sectors = disk.sectors();
    let mut out = Vec::new();
    if let Some(lvs) = vg_sec.section("logical_volumes") {
        for lv_sec in lvs.sections() {
            let lv = String::from_utf8_lossy(lv_sec.name).into_owned();
            let sectors = map_lv(&vg, vg_sec, &lv, &uuid, pv).and_then(|v| {
                let inside = v.extents().iter().all(|e| {
                    e.disk_sector
                        .checked_add(e.sectors)
                        .is_some_and(|end| end <= disk_sectors)
                });
                if inside {
                    Ok(v.sectors())
                } else {
                    Err(LayoutError::ExtentPastDisk)
                }
            });
            out.push((vg.clone(), lv, sectors));
        }
    }
    Ok(out)
}

/// Reads `len` bytes at byte `offset` of partition `pv`, inside it.
fn read_bytes(
    disk: &mut impl BlockRead,
    pv: Partition,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, LayoutError> {
    let end = offset
        .checked_add(len)
        .ok_or(LayoutError::Overflow("PV byte range"))?;
    if end > pv.sectors.saturating_mul(SECTOR as u64) {
        return Err(LayoutError::MetadataAreaOutsidePv);
    }
    let first = offset / SECTOR as u64;
    let count = end.div_ceil(SECTOR as u64) - first;
    let count = usize::try_from(count).map_err(|_| LayoutError::Overflow("read size"))?;
    let sector = pv
        .start
        .checked_add(first)
        .ok_or(LayoutError::Overflow("PV sector"))?;
    let buf = read_sectors(disk, sector, count)?;
    let skip = (offset % SECTOR as u64) as usize;
    let len = usize::try_from(len).map_err(|_| LayoutError::Overflow("read size"))?;
    buf.get(skip..skip.saturating_add(len))
        .map(<[u8]>::to_vec)
        .ok_or(LayoutError::Overflow("read size"))
}

/// Finds and checks the label; returns the PV UUID and the committed
/// metadata text of the first metadata area that reads cleanly.
fn read_pv(disk: &mut impl BlockRead, pv: Partition) -> Result<([u8; 32], Vec<u8>), LayoutError> {
    if pv.sectors < 4 {
        return Err(LayoutError::NoLvmLabel);
    }
    let head = read_sectors(disk, pv.start, 4)?;
    let (at, label) = head
        .chunks_exact(SECTOR)
        .enumerate()
        .find(|(_, s)| s.starts_with(b"LABELONE"))
        .ok_or(LayoutError::NoLvmLabel)?;
    let stored = le64(label, 8).unwrap_or(u64::MAX);
    if stored != at as u64 {
        return Err(LayoutError::LabelSector {
            stored,
            at: at as u64,
        });
    }
    if le32(label, 16) != Some(crc::LVM.checksum(&label[20..])) {
        return Err(LayoutError::LabelCrc);
    }
    if label.get(24..32) != Some(b"LVM2 001".as_slice()) {
        return Err(LayoutError::LabelType);
    }
    let offset = le32(label, 20).unwrap_or(0);
    // pv_header: 32-byte UUID, u64 size, then the area lists.
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    if start < 32 || start.saturating_add(40) > SECTOR {
        return Err(LayoutError::LabelOffset(offset));
    }
    let mut uuid = [0u8; 32];
    uuid.copy_from_slice(
        label
            .get(start..start + 32)
            .ok_or(LayoutError::LabelOffset(offset))?,
    );
    let mut pos = start + 40;
    let list = |pos: &mut usize| -> Result<Vec<(u64, u64)>, LayoutError> {
        let mut out = Vec::new();
        loop {
            let (off, size) = (le64(label, *pos), le64(label, *pos + 8));
            let (Some(off), Some(size)) = (off, size) else {
                return Err(LayoutError::PvHeaderList);
            };
            *pos += 16;
            if off == 0 {
                return Ok(out);
            }
            out.push((off, size));
        }
    };
    let _data_areas = list(&mut pos)?;
    let mdas = list(&mut pos)?;
    let mut first_err = None;
    for (off, size) in mdas.into_iter().take(MAX_MDAS) {
        match read_mda(disk, pv, off, size) {
            Ok(text) => return Ok((uuid, text)),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or(LayoutError::NoMetadataArea))
}

/// Reads the mda_header at byte `start` of the PV and the committed text.
fn read_mda(
    disk: &mut impl BlockRead,
    pv: Partition,
    start: u64,
    listed_size: u64,
) -> Result<Vec<u8>, LayoutError> {
    if listed_size < SECTOR as u64 || start.checked_add(listed_size).is_none() {
        return Err(LayoutError::MdaSize(listed_size));
    }
    let h = read_bytes(disk, pv, start, SECTOR as u64)?;
    if le32(&h, 0) != Some(crc::LVM.checksum(h.get(4..).unwrap_or_default())) {
        return Err(LayoutError::MdaHeaderCrc);
    }
    if h.get(4..20) != Some(MDA_MAGIC.as_slice()) {
        return Err(LayoutError::MdaMagic);
    }
    let version = le32(&h, 20).unwrap_or(0);
    if version != 1 {
        return Err(LayoutError::MdaVersion(version));
    }
    let stored = le64(&h, 24).unwrap_or(0);
    if stored != start {
        return Err(LayoutError::MdaStart { stored, at: start });
    }
    let area = le64(&h, 32).unwrap_or(0);
    if area <= SECTOR as u64 {
        return Err(LayoutError::MdaSize(area));
    }
    match start.checked_add(area) {
        Some(end) if end <= pv.sectors.saturating_mul(SECTOR as u64) => {}
        _ => return Err(LayoutError::MetadataAreaOutsidePv),
    }
    let (offset, size) = (le64(&h, 40).unwrap_or(0), le64(&h, 48).unwrap_or(0));
    let (checksum, flags) = (le32(&h, 56).unwrap_or(0), le32(&h, 60).unwrap_or(0));
    if offset == 0 || size == 0 || flags & RAW_LOCN_IGNORED != 0 {
        return Err(LayoutError::NoCommittedMetadata);
    }
    let text = read_ring(disk, pv, start, area, offset, size)?;
    if crc::LVM.checksum(&text) != checksum {
        return Err(LayoutError::MetadataChecksum);
    }
    Ok(text)
}

/// The ring is the area past its header sector; a copy that runs past the
/// area's end continues at `start + 512`.
fn read_ring(
    disk: &mut impl BlockRead,
    pv: Partition,
    start: u64,
    area: u64,
    offset: u64,
    size: u64,
) -> Result<Vec<u8>, LayoutError> {
    let sector = SECTOR as u64;
    if offset < sector || offset >= area {
        return Err(LayoutError::RingOffset { offset, area });
    }
    if size > area - sector {
        return Err(LayoutError::RingSize { size, area });
    }
    if size > MAX_TEXT {
        return Err(LayoutError::MetadataTooBig(size));
    }
    let first = size.min(area - offset);
    // size <= area - 512 makes the wrapped part end at or before `offset`.
    let second = size - first;
    // start + area fits (checked by the caller), so these sums do too.
    let mut text = read_bytes(disk, pv, start + offset, first)?;
    if second > 0 {
        text.extend_from_slice(&read_bytes(disk, pv, start + sector, second)?);
    }
    Ok(text)
}

fn sec_name(s: &Section) -> String {
    String::from_utf8_lossy(s.name).into_owned()
}

/// `key` of section `s`, as `pick` takes it: missing and wrongly typed
/// values are told apart.
fn field<'a, T>(
    s: &Section<'a>,
    key: &'static str,
    pick: impl FnOnce(&Value<'a>) -> Option<T>,
) -> Result<T, LayoutError> {
    let Some(value) = s.get(key) else {
        return Err(LayoutError::MetadataMissing {
            section: sec_name(s),
            key,
        });
    };
    pick(value).ok_or_else(|| LayoutError::MetadataBadValue {
        section: sec_name(s),
        key,
    })
}

fn int(s: &Section, key: &'static str) -> Result<u64, LayoutError> {
    field(s, key, |v| match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    })
}

fn string<'a>(s: &Section<'a>, key: &'static str) -> Result<&'a [u8], LayoutError> {
    field(s, key, |v| match v {
        Value::Str(v) => Some(*v),
        _ => None,
    })
}

fn subsection<'s, 'a>(
    s: &'s Section<'a>,
    key: &'static str,
) -> Result<&'s Section<'a>, LayoutError> {
    s.section(key).ok_or_else(|| LayoutError::MetadataMissing {
        section: sec_name(s),
        key,
    })
}

/// The one VG section at the text's top level, with its name.
fn vg_section<'s, 'a>(root: &'s Section<'a>) -> Result<(&'a [u8], &'s Section<'a>), LayoutError> {
    let mut it = root.sections();
    match (it.next(), it.next()) {
        (Some(vg), None) => Ok((vg.name, vg)),
        _ => Err(LayoutError::MetadataMissing {
            section: String::from("the metadata text"),
            key: "exactly one VG section",
        }),
    }
}

fn map_lv(
    vg: &str,
    vg_sec: &Section,
    lv: &str,
    uuid: &[u8; 32],
    pv: Partition,
) -> Result<Volume, LayoutError> {
    let extent_size = int(vg_sec, "extent_size")?;
    if extent_size == 0 {
        return Err(LayoutError::MetadataBadValue {
            section: sec_name(vg_sec),
            key: "extent_size",
        });
    }
    let pvs = subsection(vg_sec, "physical_volumes")?;
    let count = pvs.sections().count();
    if count != 1 {
        if count == 0 {
            return Err(LayoutError::MetadataMissing {
                section: String::from("physical_volumes"),
                key: "a PV",
            });
        }
        return Err(LayoutError::MultiplePvs {
            vg: String::from(vg),
            count,
        });
    }
    let pv_sec = pvs.sections().next().ok_or(LayoutError::NoLvmPv)?;
    let id: Vec<u8> = string(pv_sec, "id")?
        .iter()
        .copied()
        .filter(|&b| b != b'-')
        .collect();
    if id != uuid {
        return Err(LayoutError::PvIdMismatch {
            vg: String::from(vg),
        });
    }
    let pe_start = int(pv_sec, "pe_start")?;
    let pe_count = int(pv_sec, "pe_count")?;
    let data_end = pe_count
        .checked_mul(extent_size)
        .and_then(|d| d.checked_add(pe_start))
        .ok_or(LayoutError::Overflow("PV data area"))?;
    if data_end > pv.sectors {
        return Err(LayoutError::PvPastDevice {
            vg: String::from(vg),
        });
    }
    let lv_sec = vg_sec
        .section("logical_volumes")
        .and_then(|l| l.section(lv))
        .ok_or_else(|| LayoutError::NoSuchLv {
            vg: String::from(vg),
            lv: String::from(lv),
        })?;
    let lv_name = || String::from(lv);
    // Segments are the subsections named segmentN; N names them in errors.
    let mut segs: Vec<(u32, &Section)> = Vec::new();
    for s in lv_sec.sections() {
        if let Some(n) = s.name.strip_prefix(b"segment") {
            let n = core::str::from_utf8(n)
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if segs.len() == crate::MAX_EXTENTS {
                return Err(LayoutError::TooManyExtents);
            }
            segs.push((n, s));
        }
    }
    let stated = int(lv_sec, "segment_count")?;
    if stated != segs.len() as u64 {
        return Err(LayoutError::SegmentCount {
            lv: lv_name(),
            stated,
            found: segs.len(),
        });
    }
    let mut keyed = Vec::with_capacity(segs.len());
    for (n, s) in segs {
        keyed.push((int(s, "start_extent")?, n, s));
    }
    keyed.sort_by_key(|(start, n, _)| (*start, *n));
    let mut runs = Vec::with_capacity(keyed.len());
    let mut expected = 0u64;
    for (start, seg, s) in keyed {
        let ty = string(s, "type")?;
        if ty != b"striped" {
            return Err(LayoutError::SegmentType {
                lv: lv_name(),
                seg,
                ty: String::from_utf8_lossy(ty).into_owned(),
            });
        }
        let stripes = int(s, "stripe_count")?;
        if stripes != 1 {
            return Err(LayoutError::StripeCount {
                lv: lv_name(),
                seg,
                count: stripes,
            });
        }
        if start != expected {
            return Err(LayoutError::SegmentGap {
                lv: lv_name(),
                seg,
                expected,
                found: start,
            });
        }
        let count = int(s, "extent_count")?;
        if count == 0 {
            return Err(LayoutError::MetadataBadValue {
                section: sec_name(s),
                key: "extent_count",
            });
        }
        let first_pe = match s.get("stripes") {
            Some(Value::List(l)) => match l.as_slice() {
                [Value::Str(name), Value::Int(pe)] if *name == pv_sec.name => u64::try_from(*pe)
                    .map_err(|_| LayoutError::MetadataBadValue {
                        section: sec_name(s),
                        key: "stripes",
                    })?,
                [Value::Str(_), Value::Int(_)] => {
                    return Err(LayoutError::StripePv { lv: lv_name(), seg })
                }
                _ => {
                    return Err(LayoutError::MetadataBadValue {
                        section: sec_name(s),
                        key: "stripes",
                    })
                }
            },
            Some(_) => {
                return Err(LayoutError::MetadataBadValue {
                    section: sec_name(s),
                    key: "stripes",
                })
            }
            None => {
                return Err(LayoutError::MetadataMissing {
                    section: sec_name(s),
                    key: "stripes",
                })
            }
        };
        match first_pe.checked_add(count) {
            Some(end) if end <= pe_count => {}
            _ => return Err(LayoutError::SegmentPastPv { lv: lv_name(), seg }),
        }
        // first_pe + count <= pe_count and pe_count * extent_size + pe_start
        // fit (checked above); the partition start still needs a check.
        let disk_sector = first_pe
            .checked_mul(extent_size)
            .and_then(|o| o.checked_add(pe_start))
            .and_then(|o| o.checked_add(pv.start))
            .ok_or(LayoutError::Overflow("segment disk sector"))?;
        let sectors = count
            .checked_mul(extent_size)
            .ok_or(LayoutError::Overflow("segment size"))?;
        runs.push(Run {
            disk_sector,
            sectors,
        });
        expected = start
            .checked_add(count)
            .ok_or(LayoutError::Overflow("extent number"))?;
    }
    Volume::from_runs(runs)
}
