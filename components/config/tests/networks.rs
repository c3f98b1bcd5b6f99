//! `[[network]]`s: a virtio-net port per VM and network, in the slots
//! after the VM's disks, with MACs and (Linux VMs) addresses made by the
//! composer, and each mistake refused with its file, line and field.

use config::composition::{Composition, Network, NetworkPort};
use config::profile::*;
use config::vm::{DeviceConfig, GuestWidth, NetConfig};
use std::path::{Path, PathBuf};

/// Files for the planner: guests as paths, and for a Linux VM a kernel
/// with a valid arm64 Image header and an initrd, written under a
/// directory of the test's own (tests run at the same time).
struct Files(String);

impl GuestFiles for Files {
    fn guest_image(&self, guest: &str, width: GuestWidth) -> PathBuf {
        PathBuf::from(format!("/images/{}/{guest}.bin", width.name()))
    }

    fn linux(
        &self,
        vm: &str,
        _: &str,
        initrd: Option<&str>,
        _: GuestWidth,
    ) -> Result<LinuxFiles, String> {
        let mut image = vec![0u8; 4096];
        image[16..24].copy_from_slice(&0x201_0000u64.to_le_bytes());
        image[56..60].copy_from_slice(b"ARMd");
        let kernel = scratch(&format!("{}-{vm}.Image", self.0));
        std::fs::write(&kernel, &image).unwrap();
        let initrd = initrd.map(|_| {
            let path = scratch(&format!("{}-{vm}.initrd", self.0));
            std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
            path
        });
        Ok(LinuxFiles {
            kernel,
            initrd,
            dtb: scratch(&format!("{}-{vm}.dtb", self.0)),
        })
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("networks");
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

/// The reference board with `body` (VMs and networks) instead of its VMs,
/// written as `name`.toml, parsed and planned.
fn plan_body(name: &str, body: &str) -> (PathBuf, Result<Composition, ProfileError>) {
    let path = scratch(&format!("{name}.toml"));
    let text = format!("{}{body}", board_head());
    std::fs::write(&path, &text).unwrap();
    let planned = parse_profile(&path, &text)
        .and_then(|p| plan(&p, None, &known(), "test", &Files(name.into())));
    (path, planned)
}

/// web: Linux with two disks; db: a Rust guest with one; cache: Linux
/// with none and bootargs of its own.
const THREE: &str = r#"[[vm]]
name = "web"
kernel = "debian:arm64"
initrd = "busybox"
vcpus = 1
memory = "64MiB"
disks = [{ source = "lvm:vg0/web" }, { source = "part:2", read-only = true }]

[[vm]]
name = "db"
guest = "hello"
vcpus = 1
memory = "16MiB"
disks = [{ source = "lvm:vg0/db" }]

[[vm]]
name = "cache"
kernel = "debian:arm64"
vcpus = 1
memory = "64MiB"
bootargs = "console=ttyAMA0 quiet"
"#;

fn network(name: &str, vms: &str, subnet: Option<&str>) -> String {
    let subnet = subnet.map_or(String::new(), |s| format!("subnet = \"{s}\"\n"));
    format!("\n[[network]]\nname = \"{name}\"\nvms = {vms}\n{subnet}")
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

/// The virtio-net device in slot `slot`, as the composer makes it.
fn port(slot: u32, network: u32, mac: [u8; 6]) -> DeviceConfig<'static> {
    DeviceConfig {
        kind: "virtio-net".into(),
        base: abi::GUEST_VIRTIO_BASE + u64::from(slot) * abi::GUEST_VIRTIO_SIZE,
        size: abi::GUEST_VIRTIO_SIZE,
        intid: abi::GUEST_VIRTIO_INTID + slot,
        disk: None,
        net: Some(NetConfig { network, mac }),
    }
}

#[test]
fn ports_follow_the_disks_with_their_macs_and_addresses() {
    let body = THREE.to_string()
        + &network("lan", "[\"web\", \"db\", \"cache\"]", None)
        + &network("back", "[\"cache\", \"web\"]", Some("192.168.7.0/28"));
    let (_, planned) = plan_body("placed", &body);
    let c = planned.unwrap();
    let [web, db, cache] = &c.vms[..] else {
        panic!("three VMs")
    };

    // web: UART, disks in slots 0 and 1, then lan and back.
    let kinds: Vec<&str> = web.devices.iter().map(|d| &*d.kind).collect();
    assert_eq!(
        kinds,
        [
            "sbsa-uart",
            "virtio-blk",
            "virtio-blk",
            "virtio-net",
            "virtio-net"
        ]
    );
    assert_eq!(web.devices[1].base, 0x0a00_0000);
    assert_eq!(web.devices[2].base, 0x0a00_0200);
    assert_eq!(web.devices[3], port(2, 0, [2, 0x54, 0x53, 0, 0, 0]));
    assert_eq!(web.devices[4], port(3, 1, [2, 0x54, 0x53, 1, 0, 0]));
    assert_eq!(
        (web.devices[3].base, web.devices[3].intid),
        (0x0a00_0400, 50)
    );
    assert_eq!(
        web.cmdline,
        "console=ttyAMA0 tessera.net=eth0,10.0.0.2/24 tessera.net=eth1,192.168.7.3/28"
    );

    // db: a Rust guest: no UART, its disk, its port; told nothing.
    assert_eq!(db.devices.len(), 2);
    assert_eq!(db.devices[0].kind, "virtio-blk");
    assert_eq!(db.devices[1], port(1, 0, [2, 0x54, 0x53, 0, 0, 1]));
    assert_eq!(db.cmdline, "");

    // cache: no disks, so its ports start at slot 0; its own bootargs kept.
    assert_eq!(cache.devices[0].kind, "sbsa-uart");
    assert_eq!(cache.devices[1], port(0, 0, [2, 0x54, 0x53, 0, 0, 2]));
    assert_eq!(cache.devices[2], port(1, 1, [2, 0x54, 0x53, 1, 0, 2]));
    assert_eq!(
        cache.cmdline,
        "console=ttyAMA0 quiet tessera.net=eth0,10.0.0.4/24 tessera.net=eth1,192.168.7.2/28"
    );

    let address = |vm: u32, a: Option<&str>| NetworkPort {
        vm,
        address: a.map(String::from),
    };
    assert_eq!(
        c.networks,
        [
            Network {
                name: "lan".into(),
                subnet: "10.0.0.0/24".into(),
                ports: vec![
                    address(0, Some("10.0.0.2/24")),
                    address(1, None),
                    address(2, Some("10.0.0.4/24")),
                ],
            },
            Network {
                name: "back".into(),
                subnet: "192.168.7.0/28".into(),
                ports: vec![
                    address(2, Some("192.168.7.2/28")),
                    address(0, Some("192.168.7.3/28")),
                ],
            },
        ]
    );
    // The composition carries them to the image build and back.
    assert_eq!(Composition::from_toml(&c.to_toml()).unwrap(), c);
}

#[test]
fn default_subnets_follow_the_network_index_and_a_full_vm_has_8_slots() {
    // web has 6 disks and is on two networks: every slot taken.
    let disks = (1..=6)
        .map(|n| format!("{{ source = \"part:{n}\" }}"))
        .collect::<Vec<_>>()
        .join(", ");
    let body = THREE.replace(
        "disks = [{ source = \"lvm:vg0/web\" }, { source = \"part:2\", read-only = true }]",
        &format!("disks = [{disks}]"),
    ) + &network("a", "[\"db\", \"cache\"]", None)
        + &network("b", "[\"web\", \"db\"]", None)
        + &network("c", "[\"cache\", \"web\"]", None);
    let (_, planned) = plan_body("full", &body);
    let c = planned.unwrap();
    let web = &c.vms[0];
    assert_eq!(web.devices.len(), 9, "UART and 8 virtio slots");
    assert_eq!(web.devices[7], port(6, 1, [2, 0x54, 0x53, 1, 0, 0]));
    assert_eq!(web.devices[8], port(7, 2, [2, 0x54, 0x53, 2, 0, 0]));
    let subnets: Vec<&str> = c.networks.iter().map(|n| &*n.subnet).collect();
    assert_eq!(subnets, ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"]);
    assert!(web
        .cmdline
        .ends_with(" tessera.net=eth0,10.0.1.2/24 tessera.net=eth1,10.0.2.3/24"));

    // A seventh disk leaves no slot for its second network.
    let seven = body.replace(
        "{ source = \"part:6\" }",
        "{ source = \"part:6\" }, { source = \"part:7\" }",
    );
    refused(
        "slots",
        &seven,
        ("\"web\"", 3),
        "network[3] (c) vms",
        &[
            "vm 'web' has 7 disks and is on 2 networks: 9 virtio devices",
            "8 virtio-mmio slots",
            "take the VM off a network, or give it fewer disks",
        ],
    );
}

#[test]
fn network_vms_are_known_distinct_and_two_or_more() {
    refused(
        "unknown-vm",
        &(THREE.to_string() + &network("lan", "[\"web\", \"dbb\"]", None)),
        ("dbb", 1),
        "network[1] (lan) vms",
        &[
            "unknown VM 'dbb'",
            "the VMs there are: web, db, cache",
            "did you mean 'db'?",
        ],
    );
    refused(
        "unknown-vm-far",
        &(THREE.to_string() + &network("lan", "[\"web\", \"printer\"]", None)),
        ("printer", 1),
        "network[1] (lan) vms",
        &[
            "unknown VM 'printer'",
            "a network links [[vm]]s of the file",
        ],
    );
    refused(
        "twice",
        &(THREE.to_string()
            + &network("a", "[\"web\", \"db\"]", None)
            + &network("b", "[\"web\", \"db\", \"web\"]", None)),
        ("\"web\"", 4),
        "network[2] (b) vms",
        &["vm 'web' is listed twice", "list it once"],
    );
    refused(
        "alone",
        &(THREE.to_string() + &network("lan", "[\"web\"]", None)),
        ("[\"web\"]", 1),
        "network[1] (lan) vms",
        &["1 VM on the network: it links nothing", "at least two VMs"],
    );
    refused(
        "empty",
        &(THREE.to_string() + &network("lan", "[]", None)),
        ("[]", 1),
        "network[1] (lan) vms",
        &["0 VMs on the network"],
    );
}

#[test]
fn a_file_has_at_most_256_networks() {
    // A port's MAC has one byte for its network.
    let many = |n: usize| {
        (0..n).fold(THREE.to_string(), |body, i| {
            body + &network(&format!("n{i}"), "[\"web\", \"db\"]", None)
        })
    };
    refused(
        "257",
        &many(257),
        ("n256", 1),
        "network[257] (n256)",
        &["more than 256 networks: a port's MAC holds its network's index in one byte"],
    );
}

#[test]
fn network_names_are_short_distinct_words() {
    refused(
        "name-twice",
        &(THREE.to_string()
            + &network("lan", "[\"web\", \"db\"]", None)
            + &network("lan", "[\"db\", \"cache\"]", None)),
        ("lan", 2),
        "network[2] (lan) name",
        &["a network named 'lan' is already on line"],
    );
    refused(
        "name-empty",
        &(THREE.to_string() + &network("", "[\"web\", \"db\"]", None)),
        ("name = \"\"", 1),
        "network[1] name",
        &["the network name is empty"],
    );
    refused(
        "name-long",
        &(THREE.to_string() + &network("sixteen-bytes-xx", "[\"web\", \"db\"]", None)),
        ("sixteen", 1),
        "network[1] (sixteen-bytes-xx) name",
        &["is 16 bytes long, more than 15"],
    );
    refused(
        "name-chars",
        &(THREE.to_string() + &network("l.an", "[\"web\", \"db\"]", None)),
        ("l.an", 1),
        "network[1] (l.an) name",
        &["has characters other than A-Z, a-z, 0-9, '_' and '-'"],
    );
    let (_, planned) = plan_body(
        "name-fine",
        &(THREE.to_string() + &network("Back_end-15char", "[\"web\", \"db\"]", None)),
    );
    planned.unwrap();
}

#[test]
fn subnets_are_cidr_networks_with_room_for_their_vms() {
    let with = |subnet: &str| {
        THREE.to_string() + &network("lan", "[\"web\", \"db\", \"cache\"]", Some(subnet))
    };
    for (name, subnet, words) in [
        (
            "subnet-no-prefix",
            "10.1.0.0",
            &["'10.1.0.0' is not an IPv4 subnet a.b.c.d/n", "e.g. subnet = \"10.0.0.0/24\""][..],
        ),
        (
            "subnet-bad-address",
            "10.1.300.0/24",
            &["'10.1.300.0/24' is not an IPv4 subnet a.b.c.d/n"][..],
        ),
        (
            "subnet-prefix-long",
            "10.1.0.0/31",
            &["the prefix length /31 is outside 8..=30"][..],
        ),
        (
            "subnet-prefix-short",
            "10.0.0.0/7",
            &["the prefix length /7 is outside 8..=30"][..],
        ),
        (
            "subnet-host-bits",
            "10.1.0.9/24",
            &["10.1.0.9/24 has host bits set: the network is 10.1.0.0/24"][..],
        ),
        (
            "subnet-small",
            "10.1.0.0/30",
            &[
                "10.1.0.0/30 has room for 1 VM (from .2; .1 is left for a gateway), and 3 are on the network",
                "a /29 has room for 5, e.g. subnet = \"10.1.0.0/29\"",
            ][..],
        ),
    ] {
        refused(
            name,
            &with(subnet),
            ("subnet", 1),
            "network[1] (lan) subnet",
            words,
        );
    }
    let (_, planned) = plan_body("subnet-fits", &with("10.1.0.8/29"));
    let c = planned.unwrap();
    assert!(c.vms[2].cmdline.ends_with("tessera.net=eth0,10.1.0.12/29"));
}

#[test]
fn network_fields_are_checked() {
    refused(
        "unknown-field",
        &(THREE.to_string() + &network("lan", "[\"web\", \"db\"]", None).replace("vms", "vm")),
        ("vm =", 1),
        "network #1",
        &["unknown field 'vm'", "did you mean 'vms'?"],
    );
}

fn scenario(name: &str, text: &str) -> PathBuf {
    let path = scratch(&format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

const SCENARIO_HEAD: &str = r#"board = "qemu-virt-a64"
description = "networks"
timeout = "60s"
expect = ["tessera"]
"#;

#[test]
fn a_scenario_with_its_own_vms_brings_its_own_networks() {
    let guests = "[[vm]]\nname = \"a\"\nguest = \"hello\"\nvcpus = 1\nmemory = \"16MiB\"\n\n[[vm]]\nname = \"b\"\nguest = \"spinner\"\nvcpus = 1\nmemory = \"16MiB\"\n";
    let (board_path, planned) = plan_body(
        "board-with-network",
        &(guests.to_string() + &network("board-lan", "[\"a\", \"b\"]", None)),
    );
    planned.unwrap();
    let text = std::fs::read_to_string(&board_path).unwrap();
    let profile = parse_profile(&board_path, &text).unwrap();

    let own = format!(
        "{SCENARIO_HEAD}\n{}{}",
        guests.replace("\"a\"", "\"x\"").replace("\"b\"", "\"y\""),
        network("link", "[\"y\", \"x\"]", Some("172.16.0.0/16"))
    );
    let s = load_scenario(&scenario("own", &own)).unwrap();
    let c = s
        .plan(&profile, &known(), "test", &Files("scenario".into()))
        .unwrap();
    assert_eq!(c.networks.len(), 1);
    assert_eq!(
        (&*c.networks[0].name, &*c.networks[0].subnet),
        ("link", "172.16.0.0/16")
    );
    // Rust guests: ports, no addresses; y is listed first.
    assert_eq!(c.vms[1].devices, [port(0, 0, [2, 0x54, 0x53, 0, 0, 1])]);
    assert_eq!(
        c.networks[0].ports[0],
        NetworkPort {
            vm: 1,
            address: None
        }
    );

    // Without VMs of its own, a scenario runs the board's, with their networks.
    let s = load_scenario(&scenario("board-vms", SCENARIO_HEAD)).unwrap();
    let c = s
        .plan(&profile, &known(), "test", &Files("scenario".into()))
        .unwrap();
    assert_eq!(&*c.networks[0].name, "board-lan");
    assert_eq!(c.vms[0].devices.len(), 1);

    // A scenario's network errors point into the scenario.
    let bad = own.replace("[\"y\", \"x\"]", "[\"y\", \"z\"]");
    let path = scenario("own-bad", &bad);
    let err = load_scenario(&path).unwrap_err();
    let line = bad[..bad.find("[\"y\", \"z\"]").unwrap()]
        .matches('\n')
        .count()
        + 1;
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), line, "network[1] (link) vms"),
        "{err}"
    );
    assert!(err.message.contains("unknown VM 'z'"), "{err}");

    // Networks without VMs would link the board's: refused.
    let path = scenario(
        "network-no-vms",
        &format!("{SCENARIO_HEAD}{}", network("x", "[\"a\", \"b\"]", None)),
    );
    let err = load_scenario(&path).unwrap_err();
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), 6, "network"),
        "{err}"
    );
    assert!(
        err.to_string().contains("only with [[vm]]s of its own"),
        "{err}"
    );
}
