//! The primary GPT. Structures come from `gpt_disk_types`; the header CRC is
//! computed here because that crate's `calculate_header_crc32` covers only
//! 92 bytes, while the spec (and a header_size above 92) covers header_size.
//! The backup GPT is not read: a damaged primary is an error.
use crate::{crc, read_sector, read_sectors, BlockRead, LayoutError, SECTOR};
use alloc::vec::Vec;
use gpt_disk_types::{guid, GptHeader, GptPartitionEntry, GptPartitionName, GptPartitionType};

const LVM_TYPE: GptPartitionType = GptPartitionType(guid!("e6d6d379-f507-44c2-a23c-238f2a3df928"));
/// Refuse entry arrays above this instead of reading whatever a header says.
const MAX_ARRAY_BYTES: u64 = 1 << 20;
const HEADER_STRUCT: usize = core::mem::size_of::<GptHeader>();
const ENTRY_STRUCT: usize = core::mem::size_of::<GptPartitionEntry>();

/// A used entry of the partition array.
pub struct GptPart {
    /// 0-based position in the array: partition `index + 1`.
    pub index: usize,
    pub ty: GptPartitionType,
    pub first: u64,
    pub last: u64,
    pub name: GptPartitionName,
}

impl GptPart {
    pub fn is_lvm(&self) -> bool {
        self.ty == LVM_TYPE
    }

    /// Names are UCS-2 (UTF-16LE), NUL-terminated or 36 units long.
    pub fn name_is(&self, name: &str) -> bool {
        self.name.chars().eq(name.chars())
    }
}

pub fn read(disk: &mut impl BlockRead) -> Result<Vec<GptPart>, LayoutError> {
    let sector = read_sector(disk, 1)?;
    let h: GptHeader = bytemuck::pod_read_unaligned(&sector[..HEADER_STRUCT]);
    if !h.is_signature_valid() {
        return Err(LayoutError::GptSignature);
    }
    if h.revision.major() != 1 {
        return Err(LayoutError::GptRevision(h.revision.0.to_u32()));
    }
    let header_size = h.header_size.to_u32();
    let hs = usize::try_from(header_size).unwrap_or(usize::MAX);
    if !(HEADER_STRUCT..=SECTOR).contains(&hs) {
        return Err(LayoutError::GptHeaderSize(header_size));
    }
    let mut digest = crc::GPT.digest();
    digest.update(&sector[..16]);
    digest.update(&[0; 4]);
    digest.update(&sector[20..hs]);
    if digest.finalize() != h.header_crc32.0.to_u32() {
        return Err(LayoutError::GptHeaderCrc);
    }
    let my_lba = h.my_lba.to_u64();
    if my_lba != 1 {
        return Err(LayoutError::GptMyLba(my_lba));
    }
    let count = h.number_of_partition_entries.to_u32();
    let size = h.size_of_partition_entry.to_u32();
    if size < 128 || !size.is_power_of_two() {
        return Err(LayoutError::GptEntrySize(size));
    }
    let bytes = u64::from(count) * u64::from(size);
    if bytes > MAX_ARRAY_BYTES {
        return Err(LayoutError::GptEntryArrayTooBig { count, size });
    }
    // Both bounded by MAX_ARRAY_BYTES above.
    let bytes = bytes as usize;
    let (count, size) = (count as usize, size as usize);
    let lba = h.partition_entry_lba.to_u64();
    let sectors = bytes.div_ceil(SECTOR);
    let fits = lba
        .checked_add(sectors as u64)
        .is_some_and(|end| lba >= 2 && end <= disk.sectors());
    if !fits {
        return Err(LayoutError::GptEntryArrayLba(lba));
    }
    let array = read_sectors(disk, lba, sectors)?;
    let array = array
        .get(..bytes)
        .ok_or(LayoutError::GptEntryArrayLba(lba))?;
    if crc::GPT.checksum(array) != h.partition_entry_array_crc32.0.to_u32() {
        return Err(LayoutError::GptEntryArrayCrc);
    }
    let mut parts = Vec::new();
    for (index, raw) in array.chunks_exact(size).take(count).enumerate() {
        let Some(raw) = raw.get(..ENTRY_STRUCT) else {
            continue;
        };
        let e: GptPartitionEntry = bytemuck::pod_read_unaligned(raw);
        if !e.is_used() {
            continue;
        }
        parts.push(GptPart {
            index,
            ty: e.partition_type_guid,
            first: e.starting_lba.to_u64(),
            last: e.ending_lba.to_u64(),
            name: e.name,
        });
    }
    Ok(parts)
}
