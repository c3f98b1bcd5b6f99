//! ELF → flat binary and section sizes, with `object` (no outside objcopy).

use anyhow::{bail, Context, Result};
use object::elf::PT_LOAD;
use object::read::elf::{FileHeader, ProgramHeader};
use object::{FileKind, Object, ObjectSection, SectionFlags, SectionKind};

/// A flat binary image: the bytes to place at `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flat {
    /// Lowest physical (load) address of the loaded segments.
    pub base: u64,
    pub entry: u64,
    pub bytes: Vec<u8>,
}

/// The `PT_LOAD` segments' file contents at their physical addresses, from
/// the lowest one, gaps zero-filled. Memory beyond a segment's file size
/// (`.bss`) is not included: the loaded code clears it itself.
pub fn flatten(data: &[u8]) -> Result<Flat> {
    match FileKind::parse(data).context("not an object file")? {
        FileKind::Elf32 => flatten_elf::<object::elf::FileHeader32<object::Endianness>>(data),
        FileKind::Elf64 => flatten_elf::<object::elf::FileHeader64<object::Endianness>>(data),
        kind => bail!("expected an ELF file, found {kind:?}"),
    }
}

fn flatten_elf<Elf: FileHeader<Endian = object::Endianness>>(data: &[u8]) -> Result<Flat> {
    let header = Elf::parse(data).context("bad ELF header")?;
    let endian = header.endian()?;
    let mut segments = Vec::new();
    for ph in header.program_headers(endian, data)? {
        if ph.p_type(endian) != PT_LOAD || ph.p_filesz(endian).into() == 0 {
            continue;
        }
        let bytes = ph
            .data(endian, data)
            .map_err(|()| anyhow::anyhow!("a PT_LOAD segment lies outside the file"))?;
        segments.push((ph.p_paddr(endian).into(), bytes));
    }
    let Some(base) = segments.iter().map(|&(addr, _)| addr).min() else {
        bail!("the ELF has no loadable contents");
    };
    let end = segments
        .iter()
        .map(|&(addr, bytes)| addr + bytes.len() as u64)
        .max()
        .unwrap_or(base);
    let mut flat = vec![0u8; usize::try_from(end - base)?];
    for (addr, bytes) in segments {
        let at = (addr - base) as usize;
        flat[at..at + bytes.len()].copy_from_slice(bytes);
    }
    Ok(Flat {
        base,
        entry: header.e_entry(endian).into(),
        bytes: flat,
    })
}

/// Bytes of an image's allocated sections, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SectionSizes {
    pub text: u64,
    pub rodata: u64,
    pub data: u64,
    pub bss: u64,
    /// Named sections that were asked for separately, in the order asked.
    pub named: Vec<(String, u64)>,
}

impl SectionSizes {
    /// Everything allocated except the separately named sections.
    pub fn total(&self) -> u64 {
        self.text + self.rodata + self.data + self.bss
    }
}

/// Sizes of the allocated (`SHF_ALLOC`) sections; those in `separate` are
/// counted on their own rather than under text/rodata/data/bss.
pub fn section_sizes(data: &[u8], separate: &[&str]) -> Result<SectionSizes> {
    let file = object::File::parse(data).context("not an object file")?;
    let mut sizes = SectionSizes {
        named: separate.iter().map(|name| (name.to_string(), 0)).collect(),
        ..Default::default()
    };
    for section in file.sections() {
        let SectionFlags::Elf { sh_flags } = section.flags() else {
            bail!("expected an ELF file");
        };
        if sh_flags & u64::from(object::elf::SHF_ALLOC) == 0 {
            continue;
        }
        let name = section.name().unwrap_or("");
        if let Some(slot) = sizes.named.iter_mut().find(|(n, _)| n == name) {
            slot.1 += section.size();
            continue;
        }
        let bucket = match bucket_by_name(name).unwrap_or_else(|| section.kind()) {
            SectionKind::Text => &mut sizes.text,
            SectionKind::ReadOnlyData
            | SectionKind::ReadOnlyDataWithRel
            | SectionKind::ReadOnlyString => &mut sizes.rodata,
            SectionKind::UninitializedData | SectionKind::UninitializedTls => &mut sizes.bss,
            // Everything else allocated is written at run time or by the loader.
            _ => &mut sizes.data,
        };
        *bucket += section.size();
    }
    Ok(sizes)
}

/// The kind a linker script means by an output section's conventional name;
/// it wins over the flags, which merging may have widened (a `.rodata` that
/// also holds relocated data is writable).
fn bucket_by_name(name: &str) -> Option<SectionKind> {
    let is = |prefix: &str| name == prefix || name.starts_with(&format!("{prefix}."));
    if is(".text") {
        Some(SectionKind::Text)
    } else if is(".rodata") {
        Some(SectionKind::ReadOnlyData)
    } else if is(".data") {
        Some(SectionKind::Data)
    } else if is(".bss") {
        Some(SectionKind::UninitializedData)
    } else {
        None
    }
}

/// `count` little-endian `u32`s at symbol `name` in an ELF file, if it has
/// the symbol (in a section with data).
pub fn symbol_u32s(data: &[u8], name: &str, count: usize) -> Result<Option<Vec<u32>>> {
    use object::{ObjectSymbol, ObjectSymbolTable};
    let file = object::File::parse(data).context("not an object file")?;
    let Some(symbol) = file
        .symbol_table()
        .and_then(|t| t.symbols().find(|s| s.name().is_ok_and(|n| n == name)))
    else {
        return Ok(None);
    };
    let Some(index) = symbol.section_index() else {
        return Ok(None);
    };
    let section = file.section_by_index(index)?;
    let bytes = section
        .data_range(symbol.address(), (count * 4) as u64)?
        .with_context(|| format!("{name} is not in its section's data"))?;
    Ok(Some(
        bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal little-endian ELF64 with the given (paddr, vaddr, file bytes,
    /// mem size) PT_LOAD segments.
    fn elf64(entry: u64, segments: &[(u64, u64, &[u8], u64)]) -> Vec<u8> {
        const EHSIZE: usize = 64;
        const PHENTSIZE: usize = 56;
        let mut out = vec![0u8; EHSIZE];
        out[0..4].copy_from_slice(b"\x7fELF");
        out[4] = 2; // ELFCLASS64
        out[5] = 1; // little-endian
        out[6] = 1; // EV_CURRENT
        out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[24..32].copy_from_slice(&entry.to_le_bytes());
        out[32..40].copy_from_slice(&(EHSIZE as u64).to_le_bytes()); // e_phoff
        out[52..54].copy_from_slice(&(EHSIZE as u16).to_le_bytes());
        out[54..56].copy_from_slice(&(PHENTSIZE as u16).to_le_bytes());
        out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        out[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        let mut offset = EHSIZE + PHENTSIZE * segments.len();
        for &(paddr, vaddr, bytes, memsz) in segments {
            let mut ph = [0u8; PHENTSIZE];
            ph[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            ph[8..16].copy_from_slice(&(offset as u64).to_le_bytes());
            ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
            ph[24..32].copy_from_slice(&paddr.to_le_bytes());
            ph[32..40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
            out.extend_from_slice(&ph);
            offset += bytes.len();
        }
        for &(_, _, bytes, _) in segments {
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn segments_are_placed_by_physical_address_with_gaps_zeroed() {
        let elf = elf64(
            0x4000_0000,
            &[
                // Listed out of order, and with vaddr != paddr for the data.
                (0x4000_0010, 0xffff_0000, b"DATA", 4),
                (0x4000_0000, 0x4000_0000, b"CODE", 4),
                // .bss only: not in the binary.
                (0x4000_0100, 0x4000_0100, b"", 0x1000),
            ],
        );
        let flat = flatten(&elf).unwrap();
        assert_eq!(flat.base, 0x4000_0000);
        assert_eq!(flat.entry, 0x4000_0000);
        let mut expected = b"CODE".to_vec();
        expected.resize(0x10, 0);
        expected.extend_from_slice(b"DATA");
        assert_eq!(flat.bytes, expected);
    }

    #[test]
    fn memory_beyond_file_size_is_not_included() {
        let elf = elf64(0x1000, &[(0x1000, 0x1000, b"abc", 0x400)]);
        assert_eq!(flatten(&elf).unwrap().bytes, b"abc");
    }

    #[test]
    fn no_loadable_contents_is_an_error() {
        let elf = elf64(0, &[]);
        assert!(flatten(&elf).is_err());
        assert!(flatten(b"not an elf at all").is_err());
    }
}
