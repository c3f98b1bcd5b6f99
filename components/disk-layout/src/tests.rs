use crate::text::{parse, Value};
use crate::volume::Run;
use crate::*;
use alloc::string::ToString;

#[test]
fn lvm_crc_matches_crc32fast_identity() {
    for data in [&b""[..], b"123456789", &[0xa5; 700]] {
        let mut h = crc32fast::Hasher::new_with_initial(!0xF597_A6CF);
        h.update(data);
        assert_eq!(crc::LVM.checksum(data), !h.finalize());
    }
    assert_eq!(
        crc::GPT.checksum(b"123456789"),
        crc32fast::hash(b"123456789")
    );
}

#[test]
fn source_parse() {
    assert_eq!(Source::parse("part:3"), Ok(Source::Partition(3)));
    assert_eq!(Source::parse("gpt:données"), Ok(Source::GptName("données")));
    assert_eq!(
        Source::parse("lvm:vg0/web"),
        Ok(Source::Lvm {
            vg: "vg0",
            lv: "web"
        })
    );
    assert_eq!(Source::parse("part:0"), Err(ParseError::BadPartitionNumber));
    assert_eq!(
        Source::parse("part:+1"),
        Err(ParseError::BadPartitionNumber)
    );
    assert_eq!(
        Source::parse("part:99999999999"),
        Err(ParseError::BadPartitionNumber)
    );
    assert_eq!(Source::parse("part:"), Err(ParseError::BadPartitionNumber));
    assert_eq!(Source::parse("gpt:"), Err(ParseError::EmptyName));
    assert_eq!(
        Source::parse(&["gpt:", &"x".repeat(37)].concat()),
        Err(ParseError::NameTooLong)
    );
    assert_eq!(Source::parse("lvm:vg0"), Err(ParseError::NoSlash));
    assert_eq!(Source::parse("lvm:a/b/c"), Err(ParseError::NoSlash));
    assert_eq!(Source::parse("lvm:/b"), Err(ParseError::EmptyName));
    assert_eq!(Source::parse("disk:1"), Err(ParseError::UnknownKind));
    assert!(ParseError::UnknownKind.to_string().contains("lvm:VG/LV"));
}

#[test]
fn text_parser() {
    let t = b"# c\nvg { a = 1 # x\nb = \"s\\\"q\" l = [\"pv0\", 12] f = 1.5 n = -3 e = []\ninner { k = 2 } }\ncontents = \"x\"\n\0garbage {";
    let root = parse(t).unwrap();
    let vg = root.section("vg").unwrap();
    assert!(matches!(vg.get("a"), Some(Value::Int(1))));
    assert!(matches!(vg.get("b"), Some(Value::Str(b"s\\\"q"))));
    assert!(matches!(vg.get("l"), Some(Value::List(l)) if l.len() == 2));
    assert!(matches!(vg.get("f"), Some(Value::Float)));
    assert!(matches!(vg.get("n"), Some(Value::Int(-3))));
    assert!(matches!(
        vg.section("inner").unwrap().get("k"),
        Some(Value::Int(2))
    ));
    for (bad, line) in [
        (&b"a {"[..], 1),
        (b"a = 99999999999999999999", 1),
        (b"\n}", 2),
        (b"a = [[1]]", 1),
        (b"a = \"x", 1),
        (b"a b", 1),
        (b"= 1", 1),
        (b"a = [1 2]", 1),
        (b"a = -", 1),
    ] {
        match parse(bad) {
            Err(LayoutError::MetadataSyntax { line: l, .. }) => {
                assert_eq!(l, line, "{:?}", core::str::from_utf8(bad))
            }
            other => panic!("{:?}: {other:?}", core::str::from_utf8(bad)),
        }
    }
    let deep = "a {".repeat(100);
    assert!(matches!(
        parse(deep.as_bytes()),
        Err(LayoutError::MetadataNesting { .. })
    ));
}

#[test]
fn volume_map() {
    let v = Volume::from_runs([
        Run {
            disk_sector: 1000,
            sectors: 10,
        },
        Run {
            disk_sector: 50,
            sectors: 5,
        },
        Run {
            disk_sector: 7000,
            sectors: 1,
        },
    ])
    .unwrap();
    assert_eq!(v.sectors(), 16);
    let runs: alloc::vec::Vec<_> = v.map(8, 8).unwrap().collect();
    assert_eq!(
        runs,
        [
            Run {
                disk_sector: 1008,
                sectors: 2
            },
            Run {
                disk_sector: 50,
                sectors: 5
            },
            Run {
                disk_sector: 7000,
                sectors: 1
            }
        ]
    );
    assert_eq!(
        v.map(15, 1).unwrap().collect::<alloc::vec::Vec<_>>(),
        [Run {
            disk_sector: 7000,
            sectors: 1
        }]
    );
    assert_eq!(
        v.map(10, 7).unwrap_err(),
        MapError {
            sector: 10,
            count: 7,
            volume_sectors: 16
        }
    );
    assert!(v.map(u64::MAX, 1).is_err());
    assert!(v.map(1, u64::MAX).is_err());
    assert!(Volume::from_runs([Run {
        disk_sector: u64::MAX,
        sectors: 1
    }])
    .is_err());
    assert!(Volume::from_runs([
        Run {
            disk_sector: 0,
            sectors: u64::MAX
        },
        Run {
            disk_sector: 0,
            sectors: 1
        }
    ])
    .is_err());
    assert_eq!(Volume::from_runs([]), Err(LayoutError::EmptyVolume));
    let many = (0..=MAX_EXTENTS as u64).map(|i| Run {
        disk_sector: i * 2,
        sectors: 1,
    });
    assert_eq!(Volume::from_runs(many), Err(LayoutError::TooManyExtents));
}

#[test]
fn errors_read_well() {
    let e = LayoutError::MultiplePvs {
        vg: "vg0".into(),
        count: 2,
    };
    assert_eq!(e.to_string(), "VG vg0 spans 2 PVs: not supported");
    assert_eq!(
        LayoutError::GptHeaderCrc.to_string(),
        "GPT header CRC mismatch"
    );
    assert_eq!(
        LayoutError::MetadataChecksum.to_string(),
        "LVM metadata checksum mismatch"
    );
}
