//! `[[channel]]`s: placed in host RAM after everything else and at the same
//! guest-physical address in both VMs, and each mistake refused with its
//! file, line and field.

use config::boot::VmTable;
use config::composition::{Composition, Region};
use config::profile::*;
use config::vm::GuestWidth;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("channels");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn boards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../boards")
}

/// The reference board up to its VMs.
fn board_head() -> String {
    let board = std::fs::read_to_string(boards_dir().join("qemu-virt-a64.toml")).unwrap();
    board[..board.find("[[vm]]").unwrap()].to_string()
}

fn known() -> Known {
    Known::builtin(vec!["hello".into(), "spinner".into()])
}

fn image(guest: &str, width: GuestWidth) -> PathBuf {
    PathBuf::from(format!("/images/{}/{guest}.bin", width.name()))
}

/// The reference board with `body` (VMs and channels) instead of its VMs,
/// written as `name`.toml, parsed and planned.
fn plan_body(name: &str, body: &str) -> (PathBuf, Result<Composition, ProfileError>) {
    let path = scratch(&format!("{name}.toml"));
    let text = format!("{}{body}", board_head());
    std::fs::write(&path, &text).unwrap();
    let planned =
        parse_profile(&path, &text).and_then(|p| plan(&p, None, &known(), "test", &image));
    (path, planned)
}

/// Three VMs of 16 MiB, placed one after another.
const THREE: &str = r#"[[vm]]
name = "sensor"
guest = "hello"
vcpus = 1
memory = "16MiB"

[[vm]]
name = "logger"
guest = "spinner"
vcpus = 1
memory = "16MiB"

[[vm]]
name = "spare"
guest = "hello"
vcpus = 1
memory = "16MiB"
"#;

fn channel(name: &str, writer: &str, reader: &str, size: &str) -> String {
    format!(
        "\n[[channel]]\nname = \"{name}\"\nwriter = \"{writer}\"\nreader = \"{reader}\"\nsize = {size}\n"
    )
}

/// `body` is refused at the line holding the `nth` (from 1) occurrence of
/// `needle`, for `field`, with `words` in the message.
#[track_caller]
fn refused(name: &str, body: &str, (needle, nth): (&str, usize), field: &str, words: &[&str]) {
    let (path, planned) = plan_body(name, body);
    let err = planned.expect_err("refused");
    println!("{err}");
    let at = body.match_indices(needle).nth(nth - 1).unwrap().0;
    let line = format!("{}{}", board_head(), &body[..at])
        .matches('\n')
        .count()
        + 1;
    assert_eq!(err.file, path);
    assert_eq!((err.line, err.field.as_str()), (line, field), "{err}");
    assert!(err.column > 0);
    for w in words {
        assert!(err.to_string().contains(w), "{w:?} not in:\n{err}");
    }
}

#[test]
fn channels_follow_everything_and_share_their_guest_addresses() {
    // logger has a base high in RAM: the channels go after it, not after
    // the VMs placed from the hypervisor on.
    let body = THREE.replace(
        "guest = \"spinner\"\n",
        "guest = \"spinner\"\nbase = 0x5000_0000\n",
    ) + &channel("telemetry", "sensor", "logger", "\"64KiB\"")
        + &channel("control", "spare", "sensor", "8192");
    let (_, planned) = plan_body("placed", &body);
    let c = planned.unwrap();
    let rams: Vec<_> = c.vms.iter().map(|v| v.ram).collect();
    assert_eq!(rams[1].base, 0x5000_0000);
    assert_eq!(rams[2].base, 0x41C0_0000, "spare follows sensor");

    let end = |vm: usize, n: usize| {
        let e = &c.vms[vm].channels[n];
        (
            &*e.name,
            e.writer,
            e.state,
            e.state_ipa,
            e.data,
            e.data_ipa,
            e.intid,
            e.peer,
        )
    };
    let telemetry = |writer, intid, peer| {
        (
            "telemetry",
            writer,
            0x5100_0000,
            GUEST_CHANNEL_BASE,
            Region {
                base: 0x5100_1000,
                size: 0x1_0000,
            },
            GUEST_CHANNEL_BASE + 0x1000,
            intid,
            peer,
        )
    };
    let control = |writer, intid, peer| {
        (
            "control",
            writer,
            0x5101_1000,
            GUEST_CHANNEL_BASE + 0x1_1000,
            Region {
                base: 0x5101_2000,
                size: 0x2000,
            },
            GUEST_CHANNEL_BASE + 0x1_2000,
            intid,
            peer,
        )
    };
    // Each VM's channels in file order, INTIDs from 64 whether it writes
    // or reads; the peer is the other VM's index.
    assert_eq!(c.vms[0].channels.len(), 2);
    assert_eq!(end(0, 0), telemetry(true, 64, 1));
    assert_eq!(end(0, 1), control(false, 65, 2));
    assert_eq!(c.vms[1].channels.len(), 1);
    assert_eq!(end(1, 0), telemetry(false, 64, 0));
    assert_eq!(c.vms[2].channels.len(), 1);
    assert_eq!(end(2, 0), control(true, 64, 0));
    assert_eq!(CHANNEL_FIRST_INTID, 64);

    for e in c.vms.iter().flat_map(|v| &v.channels) {
        let pages = Region {
            base: e.state,
            size: 0x1000 + e.data.size,
        };
        assert!(c.ram.contains(&pages));
        assert!(!pages.overlaps(&c.hypervisor));
        for ram in &rams {
            assert!(!pages.overlaps(ram), "{pages:?} overlaps {ram:?}");
        }
        assert!(e.data_ipa + e.data.size <= abi::GUEST_RAM_BASE);
    }

    // What the image's build script reads back, and the core decodes.
    let read = Composition::from_toml(&c.to_toml()).unwrap();
    assert_eq!(read, c);
    let table = read.vm_table();
    assert_eq!(VmTable::decode(&table).unwrap().vms, c.vms);
}

#[test]
fn channels_start_at_the_next_2_mib_after_the_last_vm() {
    let (_, planned) = plan_body(
        "no-channels",
        &(THREE.to_string() + &channel("a", "sensor", "logger", "4096")),
    );
    let c = planned.unwrap();
    // spare ends at 0x43C0_0000, already 2 MiB aligned.
    assert_eq!(c.vms[0].channels[0].state, 0x43C0_0000);
    let (_, planned) = plan_body("none", THREE);
    assert!(planned.unwrap().vms.iter().all(|v| v.channels.is_empty()));
}

#[test]
fn channel_sides_are_vms_of_the_file() {
    refused(
        "unknown-writer",
        &(THREE.to_string() + &channel("telemetry", "sensr", "logger", "\"64KiB\"")),
        ("sensr", 1),
        "channel[1] (telemetry) writer",
        &[
            "unknown VM 'sensr'",
            "the VMs there are: sensor, logger, spare",
            "did you mean 'sensor'?",
        ],
    );
    refused(
        "unknown-reader",
        &(THREE.to_string()
            + &channel("a", "sensor", "logger", "4096")
            + &channel("b", "sensor", "printer", "4096")),
        ("printer", 1),
        "channel[2] (b) reader",
        &["unknown VM 'printer'", "two [[vm]]s of the file"],
    );
    refused(
        "itself",
        &(THREE.to_string() + &channel("loop", "sensor", "sensor", "4096")),
        ("sensor", 3),
        "channel[1] (loop) reader",
        &[
            "vm 'sensor' is both writer and reader: a VM linked to itself",
            "a two-way link is two channels",
        ],
    );
}

#[test]
fn channel_sizes_are_whole_pages_up_to_64_mib() {
    let sized = |size: &str| THREE.to_string() + &channel("telemetry", "sensor", "logger", size);
    refused(
        "size-zero",
        &sized("0"),
        ("size", 1),
        "channel[1] (telemetry) size",
        &["the channel's size is zero"],
    );
    refused(
        "size-odd",
        &sized("6000"),
        ("size", 1),
        "channel[1] (telemetry) size",
        &[
            "6000 bytes is not a whole number of 4 KiB pages",
            "size = \"8KiB\"",
        ],
    );
    refused(
        "size-cap",
        &sized("\"65MiB\""),
        ("size", 1),
        "channel[1] (telemetry) size",
        &["65 MiB is more than a channel's 64 MiB", "size = \"64MiB\""],
    );
    let (_, planned) = plan_body("size-cap-exact", &sized("\"64MiB\""));
    assert_eq!(planned.unwrap().vms[0].channels[0].data.size, 64 << 20);
}

#[test]
fn channel_names_are_short_distinct_words() {
    refused(
        "name-twice",
        &(THREE.to_string()
            + &channel("telemetry", "sensor", "logger", "4096")
            + &channel("telemetry", "logger", "sensor", "4096")),
        ("telemetry", 2),
        "channel[2] (telemetry) name",
        &["a channel named 'telemetry' is already on line"],
    );
    refused(
        "name-empty",
        &(THREE.to_string() + &channel("", "sensor", "logger", "4096")),
        ("name = \"\"", 1),
        "channel[1] name",
        &["the channel name is empty"],
    );
    refused(
        "name-long",
        &(THREE.to_string() + &channel("sixteen-bytes-xx", "sensor", "logger", "4096")),
        ("sixteen", 1),
        "channel[1] (sixteen-bytes-xx) name",
        &["is 16 bytes long, more than 15"],
    );
    refused(
        "name-chars",
        &(THREE.to_string() + &channel("tele.metry", "sensor", "logger", "4096")),
        ("tele.metry", 1),
        "channel[1] (tele.metry) name",
        &["has characters other than A-Z, a-z, 0-9, '_' and '-'"],
    );
    let (_, planned) = plan_body(
        "name-fine",
        &(THREE.to_string() + &channel("Tele_metry-15ch", "sensor", "logger", "4096")),
    );
    planned.unwrap();
}

#[test]
fn channel_fields_are_checked() {
    let body =
        THREE.to_string() + &channel("a", "sensor", "logger", "4096").replace("size", "sise");
    refused(
        "unknown-field",
        &body,
        ("sise", 1),
        "channel #1",
        &["unknown field 'sise'", "did you mean 'size'?"],
    );
}

#[test]
fn a_vm_has_at_most_16_channels() {
    let many = |n: usize| {
        (0..n).fold(THREE.to_string(), |body, i| {
            body + &channel(&format!("c{i}"), "sensor", "logger", "4096")
        })
    };
    let (_, planned) = plan_body("sixteen", &many(16));
    let c = planned.unwrap();
    assert_eq!(c.vms[0].channels.last().unwrap().intid, 79);
    refused(
        "seventeen",
        &many(17),
        ("\"sensor\"", 18),
        "channel[17] (c16) writer",
        &["vm 'sensor' is a side of more than 16 channels: this is its 17th"],
    );
}

#[test]
fn channels_that_do_not_fit_in_ram_say_what_is_left() {
    // logger ends 2 MiB below the end of RAM: room for one channel of
    // 1 MiB and its state page, not two.
    let body = THREE.replace(
        "guest = \"spinner\"\nvcpus = 1\nmemory = \"16MiB\"",
        "guest = \"spinner\"\nvcpus = 1\nmemory = \"2MiB\"\nbase = 0x7fc0_0000",
    ) + &channel("a", "sensor", "logger", "\"1MiB\"")
        + &channel("b", "sensor", "logger", "\"1MiB\"");
    refused(
        "ram-full",
        &body,
        ("size", 2),
        "channel[2] (b) size",
        &[
            "its state page and 1 MiB do not fit in RAM (0x40000000..0x80000000)",
            "the channels start at 0x7fe00000",
            "1020 KiB of RAM is left there for this one",
        ],
    );
}

#[test]
fn channels_end_below_the_guests_ram() {
    // Twelve of 64 MiB, with their state pages, pass 768 MiB.
    let body = (0..12).fold(THREE.to_string(), |body, i| {
        let (w, r) = [
            ("sensor", "logger"),
            ("logger", "spare"),
            ("spare", "sensor"),
        ][i % 3];
        body + &channel(&format!("c{i}"), w, r, "\"64MiB\"")
    });
    refused(
        "ipa-full",
        &body,
        ("size", 12),
        "channel[12] (c11) size",
        &["would run into the VMs' RAM at 0x40000000", "768 MiB"],
    );
}

fn scenario(name: &str, text: &str) -> PathBuf {
    let path = scratch(&format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

const SCENARIO_HEAD: &str = r#"board = "qemu-virt-a64"
description = "channels"
timeout = "60s"
expect = ["tessera"]
"#;

#[test]
fn a_scenario_with_its_own_vms_brings_its_own_channels() {
    // A board whose channels link its own VMs.
    let (board_path, planned) = plan_body(
        "board-with-channel",
        &(THREE.to_string() + &channel("telemetry", "sensor", "logger", "\"64KiB\"")),
    );
    planned.unwrap();
    let text = std::fs::read_to_string(&board_path).unwrap();
    let profile = parse_profile(&board_path, &text).unwrap();

    let own = format!(
        "{SCENARIO_HEAD}\n[[vm]]\nname = \"a\"\nguest = \"hello\"\nvcpus = 1\nmemory = \"16MiB\"\n\n[[vm]]\nname = \"b\"\nguest = \"hello\"\nvcpus = 1\nmemory = \"16MiB\"\n{}",
        channel("link", "b", "a", "\"16KiB\"")
    );
    let s = load_scenario(&scenario("own", &own)).unwrap();
    let c = s.plan(&profile, &known(), "test", &image).unwrap();
    let names = |vm: usize| -> Vec<_> {
        c.vms[vm]
            .channels
            .iter()
            .map(|e| e.name.to_string())
            .collect()
    };
    assert_eq!(
        (names(0), names(1)),
        (vec!["link".to_string()], vec!["link".to_string()])
    );
    assert!(c.vms[1].channels[0].writer && c.vms[0].channels[0].peer == 1);

    // Without VMs of its own, a scenario runs the board's, with their channels.
    let s = load_scenario(&scenario("board-vms", SCENARIO_HEAD)).unwrap();
    let c = s.plan(&profile, &known(), "test", &image).unwrap();
    assert_eq!(&*c.vms[0].channels[0].name, "telemetry");

    // A scenario's channel errors point into the scenario.
    let bad = own.replace("writer = \"b\"", "writer = \"c\"");
    let path = scenario("own-bad", &bad);
    let err = load_scenario(&path).unwrap_err();
    let line = bad[..bad.find("writer = \"c\"").unwrap()]
        .matches('\n')
        .count()
        + 1;
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), line, "channel[1] (link) writer"),
        "{err}"
    );
    assert!(err.message.contains("unknown VM 'c'"), "{err}");

    // Channels without VMs would link the board's: refused.
    let path = scenario(
        "channel-no-vms",
        &format!(
            "{SCENARIO_HEAD}{}",
            channel("x", "hello", "spinner", "4096")
        ),
    );
    let err = load_scenario(&path).unwrap_err();
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), 6, "channel"),
        "{err}"
    );
    assert!(
        err.to_string().contains("only with [[vm]]s of its own"),
        "{err}"
    );
}
