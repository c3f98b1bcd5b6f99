//! Disks written by sfdisk and lvm2 (see make-fixtures.sh), read back, and
//! corrupted one check at a time.
use disk_layout::{resolve, BlockRead, IoError, LayoutError, Source, Volume};
use std::io::Read;
use std::sync::OnceLock;

#[derive(Clone)]
pub struct MemDisk(pub Vec<u8>);

impl BlockRead for MemDisk {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let at = usize::try_from(sector).map_err(|_| IoError)? * 512;
        let src = self.0.get(at..at + buf.len()).ok_or(IoError)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn sectors(&self) -> u64 {
        (self.0.len() / 512) as u64
    }
}

fn load(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/{name}.img.gz",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

pub fn fixture(name: &str) -> MemDisk {
    static IMAGES: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
    let [mbr, gpt, lvm] = IMAGES.get_or_init(|| [load("mbr"), load("gpt"), load("lvm")]);
    MemDisk(match name {
        "mbr" => mbr.clone(),
        "gpt" => gpt.clone(),
        _ => lvm.clone(),
    })
}

fn res(disk: &mut MemDisk, s: &str) -> Result<Volume, LayoutError> {
    resolve(disk, &Source::parse(s).unwrap())
}

/// Checks that 4 KiB block k of the volume starts with "TAG-k", reading
/// through `map` one block at a time (a partial last block has no marker).
fn check_markers(disk: &MemDisk, v: &Volume, tag: &str) {
    assert!(v.sectors() >= 8);
    for block in 0..v.sectors() / 8 {
        let runs: Vec<_> = v.map(block * 8, 8).unwrap().collect();
        assert_eq!(runs.iter().map(|r| r.sectors).sum::<u64>(), 8);
        let at = runs[0].disk_sector as usize * 512;
        let want = format!("{tag}-{block:04}");
        let got = &disk.0[at..at + want.len()];
        assert_eq!(
            got,
            want.as_bytes(),
            "block {block}: {}",
            String::from_utf8_lossy(got)
        );
    }
}

#[test]
fn mbr_partitions() {
    let mut d = fixture("mbr");
    for n in 1..=3 {
        let v = res(&mut d, &format!("part:{n}")).unwrap();
        assert_eq!(v.extents().len(), 1);
        check_markers(&d, &v, &format!("MBR-P{n}"));
    }
    assert_eq!(res(&mut d, "part:1").unwrap().sectors(), 1024);
    assert_eq!(res(&mut d, "part:4"), Err(LayoutError::NoSuchPartition(4)));
    assert_eq!(res(&mut d, "part:5"), Err(LayoutError::LogicalPartition(5)));
    assert_eq!(res(&mut d, "gpt:boot"), Err(LayoutError::NotGpt));
    assert_eq!(res(&mut d, "lvm:vg0/web"), Err(LayoutError::NoLvmPv));
}

#[test]
fn mbr_checks() {
    let mut d = fixture("mbr");
    d.0[510] = 0;
    assert_eq!(res(&mut d, "part:1"), Err(LayoutError::NoMbrSignature));
    // Partition 2 made extended: refused, not followed.
    let mut d = fixture("mbr");
    d.0[446 + 16 + 4] = 0x05;
    assert_eq!(
        res(&mut d, "part:2"),
        Err(LayoutError::ExtendedPartition(2))
    );
    // Partition 3 made longer than the disk.
    let mut d = fixture("mbr");
    d.0[446 + 32 + 12..446 + 32 + 16].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    assert_eq!(
        res(&mut d, "part:3"),
        Err(LayoutError::PartitionOutsideDisk(3))
    );
    // An MBR type 0x8e partition without a label.
    let mut d = fixture("mbr");
    d.0[446 + 4] = 0x8e;
    assert_eq!(res(&mut d, "lvm:vg0/web"), Err(LayoutError::NoLvmLabel));
}

#[test]
fn gpt_partitions_by_number_and_name() {
    let mut d = fixture("gpt");
    for (n, name) in [(1, "boot"), (2, "rootfs"), (3, "données")] {
        let v = res(&mut d, &format!("part:{n}")).unwrap();
        check_markers(&d, &v, &format!("GPT-P{n}"));
        assert_eq!(res(&mut d, &format!("gpt:{name}")).unwrap(), v);
    }
    assert_eq!(res(&mut d, "gpt:boot").unwrap().sectors(), 1024);
    assert_eq!(
        res(&mut d, "gpt:nope"),
        Err(LayoutError::NoGptName("nope".into()))
    );
    assert_eq!(
        res(&mut d, "gpt:Boot"),
        Err(LayoutError::NoGptName("Boot".into()))
    );
    assert_eq!(res(&mut d, "part:4"), Err(LayoutError::NoSuchPartition(4)));
    assert_eq!(
        res(&mut d, "part:200"),
        Err(LayoutError::NoSuchPartition(200))
    );
}

fn gpt_fix_header_crc(d: &mut MemDisk) {
    let h = &mut d.0[512..512 + 92];
    h[16..20].fill(0);
    let crc = crc32fast::hash(h);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn gpt_checks() {
    let mut d = fixture("gpt");
    d.0[512 + 17] ^= 1;
    assert_eq!(res(&mut d, "part:1"), Err(LayoutError::GptHeaderCrc));
    let mut d = fixture("gpt");
    d.0[512] = b'X';
    assert_eq!(res(&mut d, "part:1"), Err(LayoutError::GptSignature));
    // A name character of entry 1 (array at LBA 2).
    let mut d = fixture("gpt");
    d.0[1024 + 56] ^= 0x20;
    assert_eq!(res(&mut d, "gpt:boot"), Err(LayoutError::GptEntryArrayCrc));
    // Absurd entry count, header CRC fixed: refused before any read.
    let mut d = fixture("gpt");
    d.0[512 + 80..512 + 84].copy_from_slice(&0x0100_0000u32.to_le_bytes());
    gpt_fix_header_crc(&mut d);
    assert_eq!(
        res(&mut d, "part:1"),
        Err(LayoutError::GptEntryArrayTooBig {
            count: 0x0100_0000,
            size: 128
        })
    );
    let mut d = fixture("gpt");
    d.0[512 + 84..512 + 88].copy_from_slice(&100u32.to_le_bytes());
    gpt_fix_header_crc(&mut d);
    assert_eq!(res(&mut d, "part:1"), Err(LayoutError::GptEntrySize(100)));
    let mut d = fixture("gpt");
    d.0[512 + 24] = 7;
    gpt_fix_header_crc(&mut d);
    assert_eq!(res(&mut d, "part:1"), Err(LayoutError::GptMyLba(7)));
    // Disk cut short: the last partition no longer fits, the others do.
    let mut d = fixture("gpt");
    d.0.truncate(3 << 20);
    assert_eq!(
        res(&mut d, "part:3"),
        Err(LayoutError::PartitionOutsideDisk(3))
    );
    assert_eq!(
        res(&mut d, "gpt:données"),
        Err(LayoutError::PartitionOutsideDisk(3))
    );
    assert!(res(&mut d, "part:2").is_ok());
}

#[test]
fn lvm_on_gpt_partition() {
    let mut d = fixture("lvm");
    let esp = res(&mut d, "part:1").unwrap();
    check_markers(&d, &esp, "ESP");
    let db = res(&mut d, "lvm:vg0/db").unwrap();
    assert_eq!(db.extents().len(), 1);
    assert_eq!(db.sectors(), 6 * 128);
    check_markers(&d, &db, "LV-db");
    let web = res(&mut d, "lvm:vg0/web").unwrap();
    assert_eq!(
        web.extents().len(),
        2,
        "web was extended after db: two segments"
    );
    assert_eq!(web.sectors(), 12 * 128);
    check_markers(&d, &web, "LV-web");
    // A range across web's two segments comes back as two runs.
    let runs: Vec<_> = web.map(8 * 128 - 4, 8).unwrap().collect();
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].sectors, runs[1].sectors), (4, 4));
    assert_eq!(runs[1].disk_sector, web.extents()[1].disk_sector);
    assert_eq!(
        res(&mut d, "lvm:vg1/web"),
        Err(LayoutError::NoSuchVg {
            vg: "vg1".into(),
            found: "vg0".into()
        })
    );
    assert_eq!(
        res(&mut d, "lvm:vg0/scratch"),
        Err(LayoutError::NoSuchLv {
            vg: "vg0".into(),
            lv: "scratch".into()
        })
    );
}

/// Offsets of the PV, its mda header and the committed copy in lvm.img.
struct Mda {
    pv: usize,
    header: usize,
    area: usize,
    offset: usize,
    size: usize,
}

fn mda(d: &MemDisk) -> Mda {
    let label = d.0.windows(8).position(|w| w == b"LABELONE").unwrap();
    let pv = label - 512;
    let magic =
        d.0.windows(16)
            .position(|w| w == b" LVM2 x[5A%r0N*>")
            .unwrap();
    let header = magic - 4;
    let le = |at: usize| u64::from_le_bytes(d.0[at..at + 8].try_into().unwrap()) as usize;
    assert_eq!(le(header + 24), header - pv);
    Mda {
        pv,
        header,
        area: le(header + 32),
        offset: le(header + 40),
        size: le(header + 48),
    }
}

fn lvm_crc(b: &[u8]) -> u32 {
    !crc32fast::Hasher::new_with_initial(!0xF597_A6CF).chain(b)
}

trait Chain {
    fn chain(self, b: &[u8]) -> u32;
}
impl Chain for crc32fast::Hasher {
    fn chain(mut self, b: &[u8]) -> u32 {
        self.update(b);
        self.finalize()
    }
}

fn fix_mda_crc(d: &mut MemDisk, m: &Mda) {
    let crc = lvm_crc(&d.0[m.header + 4..m.header + 512]);
    d.0[m.header..m.header + 4].copy_from_slice(&crc.to_le_bytes());
}

fn set_u64(d: &mut MemDisk, at: usize, v: u64) {
    d.0[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The committed text, unwrapped.
fn metadata_text(d: &MemDisk, m: &Mda) -> String {
    let start = m.header;
    let first = m.size.min(m.area - m.offset);
    let mut t = d.0[start + m.offset..start + m.offset + first].to_vec();
    t.extend_from_slice(&d.0[start + 512..start + 512 + (m.size - first)]);
    assert_eq!(t.pop(), Some(0));
    String::from_utf8(t).unwrap()
}

/// Commits `edit(text)` as the new metadata, unwrapped at the ring's start,
/// with a correct checksum and header CRC, as lvm2 would.
fn rewrite(edit: impl Fn(&str) -> String) -> MemDisk {
    let mut d = fixture("lvm");
    let m = mda(&d);
    let mut text = edit(&metadata_text(&d, &m)).into_bytes();
    text.push(0);
    d.0[m.header + 512..m.header + 512 + text.len()].copy_from_slice(&text);
    set_u64(&mut d, m.header + 40, 512);
    set_u64(&mut d, m.header + 48, text.len() as u64);
    let crc = lvm_crc(&text);
    d.0[m.header + 56..m.header + 60].copy_from_slice(&crc.to_le_bytes());
    fix_mda_crc(&mut d, &m);
    d
}

#[test]
fn lvm_fixture_ring_wrapped() {
    let d = fixture("lvm");
    let m = mda(&d);
    assert!(
        m.offset + m.size > m.area,
        "make-fixtures.sh should leave a wrapped copy"
    );
    assert_eq!(m.pv % 512, 0);
    assert!(metadata_text(&d, &m).contains("segment2"));
    // The unwrapped rewrite of the same text reads the same.
    let mut same = rewrite(|t| t.to_string());
    let mut orig = fixture("lvm");
    assert_eq!(res(&mut same, "lvm:vg0/web"), res(&mut orig, "lvm:vg0/web"));
}

#[test]
fn lvm_header_checks() {
    let m = mda(&fixture("lvm"));
    let label = m.pv + 512;
    let mut d = fixture("lvm");
    d.0[label + 40] ^= 1; // a UUID byte
    assert_eq!(res(&mut d, "lvm:vg0/web"), Err(LayoutError::LabelCrc));
    let mut d = fixture("lvm");
    d.0[label..label + 8].copy_from_slice(b"LABELTWO");
    assert_eq!(res(&mut d, "lvm:vg0/web"), Err(LayoutError::NoLvmLabel));
    let mut d = fixture("lvm");
    d.0[m.header + 100] ^= 1;
    assert_eq!(res(&mut d, "lvm:vg0/web"), Err(LayoutError::MdaHeaderCrc));
    let mut d = fixture("lvm");
    d.0[m.header + 6] = b'X';
    fix_mda_crc(&mut d, &m);
    assert_eq!(res(&mut d, "lvm:vg0/web"), Err(LayoutError::MdaMagic));
    let mut d = fixture("lvm");
    d.0[m.header + 20] = 2;
    fix_mda_crc(&mut d, &m);
    assert_eq!(res(&mut d, "lvm:vg0/web"), Err(LayoutError::MdaVersion(2)));
    let mut d = fixture("lvm");
    set_u64(&mut d, m.header + 24, 8192);
    fix_mda_crc(&mut d, &m);
    assert_eq!(
        res(&mut d, "lvm:vg0/web"),
        Err(LayoutError::MdaStart {
            stored: 8192,
            at: (m.header - m.pv) as u64
        })
    );
    let mut d = fixture("lvm");
    set_u64(&mut d, m.header + 48, m.area as u64);
    fix_mda_crc(&mut d, &m);
    let (size, area) = (m.area as u64, m.area as u64);
    assert_eq!(
        res(&mut d, "lvm:vg0/web"),
        Err(LayoutError::RingSize { size, area })
    );
    let mut d = fixture("lvm");
    set_u64(&mut d, m.header + 40, m.area as u64);
    fix_mda_crc(&mut d, &m);
    assert_eq!(
        res(&mut d, "lvm:vg0/web"),
        Err(LayoutError::RingOffset { offset: area, area })
    );
    let mut d = fixture("lvm");
    set_u64(&mut d, m.header + 32, 1 << 40);
    fix_mda_crc(&mut d, &m);
    assert_eq!(
        res(&mut d, "lvm:vg0/web"),
        Err(LayoutError::MetadataAreaOutsidePv)
    );
    // A byte of the text, in the wrapped part and in the first part.
    for at in [m.header + 512 + 3, m.header + m.offset + 3] {
        let mut d = fixture("lvm");
        d.0[at] ^= 1;
        assert_eq!(
            res(&mut d, "lvm:vg0/web"),
            Err(LayoutError::MetadataChecksum)
        );
    }
}

fn lv_err(d: &mut MemDisk, lv: &str) -> String {
    res(d, &format!("lvm:vg0/{lv}")).unwrap_err().to_string()
}

/// Replaces the first `from` after `lv`'s section start (and after its
/// `seg` subsection's start, if given) with `to`.
fn edit_seg(text: &str, lv: &str, seg: &str, from: &str, to: &str) -> String {
    let mut at = text.find(&format!("\n{lv} {{")).unwrap();
    if !seg.is_empty() {
        at += text[at..].find(&format!("{seg} {{")).unwrap();
    }
    at += text[at..].find(from).unwrap();
    format!("{}{to}{}", &text[..at], &text[at + from.len()..])
}

#[test]
fn lvm_metadata_checks() {
    let mut d = rewrite(|t| edit_seg(t, "web", "segment2", "stripe_count = 1", "stripe_count = 2"));
    assert_eq!(
        res(&mut d, "lvm:vg0/web"),
        Err(LayoutError::StripeCount {
            lv: "web".into(),
            seg: 2,
            count: 2
        })
    );
    assert_eq!(
        lv_err(&mut d, "web"),
        "LV web segment 2 has stripe_count 2: only linear LVs are supported"
    );
    assert!(res(&mut d, "lvm:vg0/db").is_ok(), "db is untouched");

    let mut d = rewrite(|t| edit_seg(t, "db", "segment1", "type = \"striped\"", "type = \"thin\""));
    assert_eq!(
        lv_err(&mut d, "db"),
        "LV db segment 1 has type \"thin\": only linear LVs are supported"
    );

    let mut d = rewrite(|t| edit_seg(t, "web", "segment2", "start_extent = 8", "start_extent = 9"));
    assert_eq!(
        res(&mut d, "lvm:vg0/web"),
        Err(LayoutError::SegmentGap {
            lv: "web".into(),
            seg: 2,
            expected: 8,
            found: 9
        })
    );
    let mut d = rewrite(|t| edit_seg(t, "web", "segment2", "start_extent = 8", "start_extent = 7"));
    assert!(matches!(
        res(&mut d, "lvm:vg0/web"),
        Err(LayoutError::SegmentGap { found: 7, .. })
    ));
    let mut d = rewrite(|t| edit_seg(t, "web", "segment2", "start_extent = 8", "start_extent = 0"));
    assert!(matches!(
        res(&mut d, "lvm:vg0/web"),
        Err(LayoutError::SegmentGap { .. })
    ));

    // db's first extent moved so that it ends past pe_count.
    let mut d = rewrite(|t| {
        let pe_count: u64 = t
            .split("pe_count = ")
            .nth(1)
            .unwrap()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap();
        edit_seg(
            t,
            "db",
            "segment1",
            "\"pv0\", 8",
            &format!("\"pv0\", {}", pe_count - 2),
        )
    });
    assert_eq!(
        res(&mut d, "lvm:vg0/db"),
        Err(LayoutError::SegmentPastPv {
            lv: "db".into(),
            seg: 1
        })
    );
    let mut d = rewrite(|t| edit_seg(t, "db", "segment1", "\"pv0\", 8", "\"pv7\", 8"));
    assert_eq!(
        res(&mut d, "lvm:vg0/db"),
        Err(LayoutError::StripePv {
            lv: "db".into(),
            seg: 1
        })
    );
    let mut d = rewrite(|t| edit_seg(t, "web", "", "segment_count = 2", "segment_count = 3"));
    assert!(matches!(
        res(&mut d, "lvm:vg0/web"),
        Err(LayoutError::SegmentCount {
            stated: 3,
            found: 2,
            ..
        })
    ));

    // A second PV in the VG.
    let mut d = rewrite(|t| {
        t.replace(
            "physical_volumes {\n",
            "physical_volumes {\npv1 {\nid = \"xxxxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxxxx\"\npe_start = 128\npe_count = 10\n}\n",
        )
    });
    assert_eq!(lv_err(&mut d, "db"), "VG vg0 spans 2 PVs: not supported");

    let mut d = rewrite(|t| {
        let pv_at = t.find("pv0 {").unwrap();
        let id_at = pv_at + t[pv_at..].find("id = \"").unwrap() + 6;
        format!("{}!{}", &t[..id_at], &t[id_at + 1..])
    });
    assert_eq!(
        res(&mut d, "lvm:vg0/db"),
        Err(LayoutError::PvIdMismatch { vg: "vg0".into() })
    );

    let mut d = rewrite(|t| t.replace("extent_size = 128", "extent_size = 1125899906842624"));
    assert!(matches!(
        res(&mut d, "lvm:vg0/db"),
        Err(LayoutError::Overflow(_) | LayoutError::PvPastDevice { .. })
    ));

    let mut d = rewrite(|t| t.replacen("{", "{ {", 1));
    assert!(matches!(
        res(&mut d, "lvm:vg0/db"),
        Err(LayoutError::MetadataSyntax { .. })
    ));
    let mut d = rewrite(|t| t.replacen("extent_size = 128", "extent_size = \"128\"", 1));
    assert!(matches!(
        res(&mut d, "lvm:vg0/db"),
        Err(LayoutError::MetadataBadValue { .. })
    ));
}

#[test]
fn whole_disk_pv() {
    // The PV cut out of lvm.img: no partition table, label in sector 1.
    let d = fixture("lvm");
    let m = mda(&d);
    let mut pv = MemDisk(d.0[m.pv..].to_vec());
    let web = res(&mut pv, "lvm:vg0/web").unwrap();
    check_markers(&pv, &web, "LV-web");
}

#[test]
fn map_refuses_past_end_and_overflow() {
    let mut d = fixture("lvm");
    let web = res(&mut d, "lvm:vg0/web").unwrap();
    let n = web.sectors();
    assert!(web.map(n - 1, 1).is_ok());
    assert!(web.map(n, 0).unwrap().next().is_none());
    assert!(web.map(n - 1, 2).is_err());
    assert!(web.map(n, 1).is_err());
    assert!(web.map(u64::MAX, 2).is_err());
    assert!(web.map(2, u64::MAX).is_err());
    assert!(web.map(u64::MAX, 0).is_err());
    // The disk is larger than the LV: ranges inside the disk but past the
    // LV are still refused.
    assert!(d.sectors() > web.extents()[1].disk_sector + 1000);
    assert!(web.map(n, 8).is_err());
    let all: u64 = web.map(0, n).unwrap().map(|r| r.sectors).sum();
    assert_eq!(all, n);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const SOURCES: [&str; 7] = [
        "part:1",
        "part:2",
        "part:3",
        "gpt:boot",
        "gpt:pv",
        "lvm:vg0/web",
        "lvm:vg0/db",
    ];

    fn check(mut d: MemDisk) {
        for s in SOURCES {
            if let Ok(v) = res(&mut d, s) {
                for e in v.extents() {
                    assert!(
                        e.disk_sector.checked_add(e.sectors).unwrap() <= d.sectors(),
                        "{s}: {e:?}"
                    );
                }
                let n = v.sectors();
                let total: u64 = v.map(0, n).unwrap().map(|r| r.sectors).sum();
                assert_eq!(total, n);
                assert!(v.map(n, 1).is_err());
            }
        }
    }

    /// Offsets worth hitting: the tables, the label and the metadata.
    fn hot(name: &str) -> Vec<std::ops::Range<usize>> {
        let d = fixture(name);
        // The MBR and the primary GPT.
        let tables = 0..512 * 34;
        let mut r = vec![tables];
        if name == "lvm" {
            let m = mda(&d);
            r.push(m.pv..m.pv + 1024);
            r.push(m.header..m.header + m.area);
        }
        r
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn flipped_bytes_never_panic(
            which in 0usize..3,
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 1..12),
            cut in prop::option::of(any::<prop::sample::Index>()),
        ) {
            let name = ["mbr", "gpt", "lvm"][which];
            let mut d = fixture(name);
            let ranges = hot(name);
            for (r, i, x) in flips {
                let r = r.get(&ranges);
                let at = r.start + i.index(r.len());
                d.0[at] ^= x | 1;
            }
            if let Some(c) = cut {
                let len = c.index(d.0.len() / 512 + 1) * 512;
                d.0.truncate(len);
            }
            check(d);
        }

        /// Metadata texts with a valid checksum but random edits.
        #[test]
        fn edited_metadata_never_panics(edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(vec!["", "0", "9", "{", "}", "[", "]", "\"", "=", "-", "18446744073709551615", "#", "segment3 {", "\n"])), 1..6)) {
            let d = rewrite(|t| {
                let mut t = t.to_string();
                for (i, s) in &edits {
                    let mut at = i.index(t.len() + 1);
                    while !t.is_char_boundary(at) { at -= 1; }
                    let end = (at + 1).min(t.len());
                    let end = if t.is_char_boundary(end) { end } else { at };
                    t.replace_range(at..end, s);
                }
                t
            });
            check(d);
        }

        #[test]
        fn random_disks_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..8192)) {
            let mut bytes = bytes;
            // Often a valid MBR signature, so the parsers behind it run.
            if bytes.len() >= 512 && bytes[0] & 1 == 0 {
                bytes[510] = 0x55;
                bytes[511] = 0xaa;
            }
            check(MemDisk(bytes));
        }
    }
}

#[test]
fn too_many_lvm_partitions_are_refused() {
    // lvm.img's GPT with 17 entries typed LVM (copies of the PV's entry).
    let mut d = fixture("lvm");
    let entry: Vec<u8> = d.0[1024 + 128..1024 + 256].to_vec();
    for i in 2..19 {
        d.0[1024 + i * 128..1024 + (i + 1) * 128].copy_from_slice(&entry);
    }
    let count = u32::from_le_bytes(d.0[512 + 80..512 + 84].try_into().unwrap()) as usize;
    let crc = crc32fast::hash(&d.0[1024..1024 + count * 128]);
    d.0[512 + 88..512 + 92].copy_from_slice(&crc.to_le_bytes());
    gpt_fix_header_crc(&mut d);
    assert_eq!(res(&mut d, "lvm:vg0/web"), Err(LayoutError::TooManyPvs(18)));
    assert!(res(&mut d, "part:19").is_ok());
}

#[test]
fn list_lvm_disk() {
    use disk_layout::{list, Item, TableKind};
    let mut d = fixture("lvm");
    let listing = list(&mut d).unwrap();
    assert_eq!(listing.table, TableKind::Gpt);
    let esp = res(&mut d, "gpt:esp").unwrap();
    let pv = res(&mut d, "gpt:pv").unwrap();
    let part = |number: u32, name: &str, v: &Volume, lvm: bool| Item::Partition {
        number,
        name: Some(name.to_string()),
        start: v.extents()[0].disk_sector,
        sectors: v.sectors(),
        lvm,
    };
    let lv = |lv: &str, sectors: u64| Item::Lv {
        vg: "vg0".into(),
        lv: lv.into(),
        sectors: Ok(sectors),
    };
    // 64 KiB extents: web has 8 + 4, db 6.
    assert_eq!(
        listing.items,
        vec![
            part(1, "esp", &esp, false),
            part(2, "pv", &pv, true),
            lv("web", 12 * 128),
            lv("db", 6 * 128),
        ]
    );
    assert_eq!(esp.sectors(), 1024);
}

#[test]
fn list_mbr_and_gpt_disks() {
    use disk_layout::{list, Item, TableKind};
    let mut d = fixture("mbr");
    let listing = list(&mut d).unwrap();
    assert_eq!(listing.table, TableKind::Mbr);
    let numbers: Vec<_> = listing
        .items
        .iter()
        .map(|i| match i {
            Item::Partition {
                number, name, lvm, ..
            } => {
                assert!(name.is_none() && !lvm);
                *number
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(numbers, [1, 2, 3]);

    let mut d = fixture("gpt");
    let listing = list(&mut d).unwrap();
    assert_eq!(listing.table, TableKind::Gpt);
    let names: Vec<_> = listing
        .items
        .iter()
        .map(|i| match i {
            Item::Partition { name, .. } => name.clone().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["boot", "rootfs", "données"]);
}

#[test]
fn list_whole_disk_pv_and_blank_disk() {
    use disk_layout::{list, Item, TableKind};
    let d = fixture("lvm");
    let m = mda(&d);
    let mut pv = MemDisk(d.0[m.pv..].to_vec());
    let listing = list(&mut pv).unwrap();
    assert_eq!(listing.table, TableKind::None);
    assert_eq!(listing.items.len(), 2);
    assert!(matches!(&listing.items[0], Item::Lv { lv, sectors: Ok(1536), .. } if lv == "web"));
    // A blank disk: no table, no PV, nothing to list (not an error).
    let mut blank = MemDisk(vec![0; 1 << 20]);
    let listing = list(&mut blank).unwrap();
    assert_eq!(listing.table, TableKind::None);
    assert!(listing.items.is_empty());
}

#[test]
fn list_reports_a_broken_pv_and_a_broken_lv_as_items() {
    use disk_layout::{list, Item};
    // An LV that is not linear is listed with its error; the others still are.
    let mut d = rewrite(|t| {
        edit_seg(
            t,
            "db",
            "segment1",
            "type = \"striped\"",
            "type = \"raid1\"",
        )
    });
    let items = list(&mut d).unwrap().items;
    assert!(items.iter().any(|i| matches!(
        i,
        Item::Lv { lv, sectors: Err(LayoutError::SegmentType { .. }), .. } if lv == "db"
    )));
    assert!(items
        .iter()
        .any(|i| matches!(i, Item::Lv { lv, sectors: Ok(_), .. } if lv == "web")));
    // A PV whose label is gone: the partitions are listed, the PV is an error.
    let mut d = fixture("lvm");
    let m = mda(&d);
    for b in &mut d.0[m.pv..m.pv + 4 * 512] {
        *b = 0;
    }
    let items = list(&mut d).unwrap().items;
    assert_eq!(items.len(), 3);
    assert!(matches!(
        items[2],
        Item::BadPv {
            pv: 2,
            error: LayoutError::NoLvmLabel
        }
    ));
}
