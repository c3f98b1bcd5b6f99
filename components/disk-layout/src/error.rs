//! Errors, each naming the check that failed.
use alloc::string::String;
use core::fmt;

/// A failed read, as the block device reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoError;

/// Why a disk's layout could not be read or a source not resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    Io {
        sector: u64,
        error: IoError,
    },
    ReadPastDisk {
        sector: u64,
    },
    NoMbrSignature,
    ExtendedPartition(u32),
    LogicalPartition(u32),
    NoSuchPartition(u32),
    PartitionOutsideDisk(u32),
    NotGpt,
    GptSignature,
    GptRevision(u32),
    GptHeaderSize(u32),
    GptHeaderCrc,
    GptMyLba(u64),
    GptEntrySize(u32),
    GptEntryArrayTooBig {
        count: u32,
        size: u32,
    },
    GptEntryArrayLba(u64),
    GptEntryArrayCrc,
    NoGptName(String),
    DuplicateGptName(String),
    NoLvmPv,
    NoLvmLabel,
    TooManyPvs(usize),
    LabelSector {
        stored: u64,
        at: u64,
    },
    LabelCrc,
    LabelOffset(u32),
    LabelType,
    PvHeaderList,
    NoMetadataArea,
    MetadataAreaOutsidePv,
    MdaHeaderCrc,
    MdaMagic,
    MdaVersion(u32),
    MdaStart {
        stored: u64,
        at: u64,
    },
    MdaSize(u64),
    NoCommittedMetadata,
    RingOffset {
        offset: u64,
        area: u64,
    },
    RingSize {
        size: u64,
        area: u64,
    },
    MetadataTooBig(u64),
    MetadataChecksum,
    MetadataSyntax {
        line: u32,
        what: &'static str,
    },
    MetadataNesting {
        line: u32,
    },
    MetadataMissing {
        section: String,
        key: &'static str,
    },
    MetadataBadValue {
        section: String,
        key: &'static str,
    },
    NoSuchVg {
        vg: String,
        found: String,
    },
    NoSuchLv {
        vg: String,
        lv: String,
    },
    MultiplePvs {
        vg: String,
        count: usize,
    },
    PvIdMismatch {
        vg: String,
    },
    PvPastDevice {
        vg: String,
    },
    SegmentType {
        lv: String,
        seg: u32,
        ty: String,
    },
    StripeCount {
        lv: String,
        seg: u32,
        count: u64,
    },
    StripePv {
        lv: String,
        seg: u32,
    },
    SegmentGap {
        lv: String,
        seg: u32,
        expected: u64,
        found: u64,
    },
    SegmentCount {
        lv: String,
        stated: u64,
        found: usize,
    },
    SegmentPastPv {
        lv: String,
        seg: u32,
    },
    TooManyExtents,
    EmptyVolume,
    Overflow(&'static str),
    ExtentPastDisk,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LayoutError::*;
        match self {
            Io { sector, .. } => write!(f, "disk read failed at sector {sector}"),
            ReadPastDisk { sector } => write!(f, "the layout points at sector {sector}, past the disk's end"),
            NoMbrSignature => f.write_str("no partition table: sector 0 lacks the 0x55AA signature"),
            ExtendedPartition(n) => write!(f, "partition {n} is an extended partition: not supported, use a primary partition or GPT"),
            LogicalPartition(n) => write!(f, "partition {n} would be a logical partition inside an extended one: not supported, use part:1 to part:4 or GPT"),
            NoSuchPartition(n) => write!(f, "no partition {n} on this disk"),
            PartitionOutsideDisk(n) => write!(f, "partition {n} does not lie inside the disk (or is empty)"),
            NotGpt => f.write_str("gpt:NAME needs a GPT disk, but this disk has a plain MBR"),
            GptSignature => f.write_str("protective MBR but no GPT header at LBA 1 (signature is not \"EFI PART\")"),
            GptRevision(r) => write!(f, "GPT header revision {r:#x}: only 1.x is supported"),
            GptHeaderSize(s) => write!(f, "GPT header size {s} is outside 92..=512"),
            GptHeaderCrc => f.write_str("GPT header CRC mismatch"),
            GptMyLba(l) => write!(f, "GPT header at LBA 1 says it is at LBA {l}"),
            GptEntrySize(s) => write!(f, "GPT partition entry size {s} is not a power of two of at least 128"),
            GptEntryArrayTooBig { count, size } => write!(f, "GPT partition entry array of {count} entries of {size} bytes is larger than the 1 MiB this reader accepts"),
            GptEntryArrayLba(l) => write!(f, "GPT partition entry array at LBA {l} overlaps the header or runs past the disk"),
            GptEntryArrayCrc => f.write_str("GPT partition entry array CRC mismatch"),
            NoGptName(n) => write!(f, "no GPT partition named \"{n}\""),
            DuplicateGptName(n) => write!(f, "more than one GPT partition is named \"{n}\": the name is ambiguous"),
            NoLvmPv => f.write_str("no LVM physical volume: no partition of type 0x8e / LVM GUID and no LVM label on the whole disk"),
            TooManyPvs(n) => write!(f, "{n} partitions are typed as LVM PVs: more than the {} this reader looks at", crate::lvm::MAX_PVS),
            NoLvmLabel => f.write_str("no LVM label (LABELONE) in sectors 0..3 of the physical volume"),
            LabelSector { stored, at } => write!(f, "LVM label in sector {at} says it is in sector {stored}"),
            LabelCrc => f.write_str("LVM label CRC mismatch"),
            LabelOffset(o) => write!(f, "LVM label's pv_header offset {o} is outside the label sector"),
            LabelType => f.write_str("LVM label type is not \"LVM2 001\""),
            PvHeaderList => f.write_str("LVM pv_header's area lists are not zero-terminated within the label sector"),
            NoMetadataArea => f.write_str("LVM PV has no metadata area (a PV made with --metadatacopies 0 cannot be read alone)"),
            MetadataAreaOutsidePv => f.write_str("LVM metadata area lies outside the physical volume"),
            MdaHeaderCrc => f.write_str("LVM metadata area header CRC mismatch"),
            MdaMagic => f.write_str("LVM metadata area header magic is wrong"),
            MdaVersion(v) => write!(f, "LVM metadata area header version {v}: only 1 is supported"),
            MdaStart { stored, at } => write!(f, "LVM metadata area header read at byte {at} says it starts at {stored}"),
            MdaSize(s) => write!(f, "LVM metadata area size {s} is smaller than its header sector"),
            NoCommittedMetadata => f.write_str("LVM metadata area holds no committed metadata"),
            RingOffset { offset, area } => write!(f, "metadata ring entry offset {offset} is outside the {area}-byte area"),
            RingSize { size, area } => write!(f, "metadata ring entry of {size} bytes runs past the {area}-byte area (its header sector included)"),
            MetadataTooBig(s) => write!(f, "LVM metadata text of {s} bytes is larger than the 1 MiB this reader accepts"),
            MetadataChecksum => f.write_str("LVM metadata checksum mismatch"),
            MetadataSyntax { line, what } => write!(f, "LVM metadata line {line}: {what}"),
            MetadataNesting { line } => write!(f, "LVM metadata line {line}: sections nested too deep"),
            MetadataMissing { section, key } => write!(f, "LVM metadata: {section} has no {key}"),
            MetadataBadValue { section, key } => write!(f, "LVM metadata: {section}'s {key} has the wrong type or value"),
            NoSuchVg { vg, found } => write!(f, "no VG {vg} on this disk (found: {found})"),
            NoSuchLv { vg, lv } => write!(f, "VG {vg} has no LV {lv}"),
            MultiplePvs { vg, count } => write!(f, "VG {vg} spans {count} PVs: not supported"),
            PvIdMismatch { vg } => write!(f, "VG {vg}'s PV id does not match the LVM label's PV UUID"),
            PvPastDevice { vg } => write!(f, "VG {vg}: pe_start + pe_count * extent_size runs past the PV's partition"),
            SegmentType { lv, seg, ty } => write!(f, "LV {lv} segment {seg} has type \"{ty}\": only linear LVs are supported"),
            StripeCount { lv, seg, count } => write!(f, "LV {lv} segment {seg} has stripe_count {count}: only linear LVs are supported"),
            StripePv { lv, seg } => write!(f, "LV {lv} segment {seg}'s stripe names no PV of the VG"),
            SegmentGap { lv, seg, expected, found } => write!(f, "LV {lv} segment {seg} starts at extent {found}, expected {expected}: segments overlap or leave a gap"),
            SegmentCount { lv, stated, found } => write!(f, "LV {lv} says segment_count {stated} but has {found} segments"),
            SegmentPastPv { lv, seg } => write!(f, "LV {lv} segment {seg} uses extents past the PV's pe_count"),
            TooManyExtents => write!(f, "volume has more than {} extents", crate::MAX_EXTENTS),
            EmptyVolume => f.write_str("volume is empty"),
            Overflow(what) => write!(f, "{what} overflows 64 bits"),
            ExtentPastDisk => f.write_str("a volume extent runs past the disk's end"),
        }
    }
}
