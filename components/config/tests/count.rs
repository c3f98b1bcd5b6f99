//! `[[vm]] count = N`: many like VMs from one table, small VMs mapped in
//! 4 KiB pages, and scenario `each` entries.

use config::profile::*;
use config::vm::GuestWidth;
use std::path::{Path, PathBuf};

fn boards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../boards")
}

fn known() -> Known {
    Known::builtin(["hello", "tiny"].map(String::from).to_vec())
}

fn image(guest: &str, arch: GuestWidth) -> PathBuf {
    PathBuf::from(format!("/images/{}/{guest}.bin", arch.name()))
}

/// The reference board with `vms` in place of its own [[vm]] tables.
fn board_with(vms: &str) -> (PathBuf, String) {
    let path = boards_dir().join("qemu-virt-a64.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cut = text.find("[[vm]]").unwrap();
    (path, format!("{}{vms}", &text[..cut]))
}

fn plan_vms(vms: &str) -> Result<Composition, ProfileError> {
    let (path, text) = board_with(vms);
    let profile = parse_profile(&path, &text)?;
    plan(&profile, None, &known(), "test", &image)
}

/// The error `vms` gives, checked for its line (in the whole text) and field.
#[track_caller]
fn refused(vms: &str, line_text: &str, field: &str, words: &[&str]) {
    let (_, text) = board_with(vms);
    let line = text
        .lines()
        .position(|l| l.starts_with(line_text))
        .expect("the line is in the text")
        + 1;
    let err = plan_vms(vms).expect_err("must be refused");
    println!("{err}");
    assert_eq!((err.line, err.field.as_str()), (line, field), "{err}");
    let shown = err.to_string();
    for w in words {
        assert!(shown.contains(w), "{w:?} not in:\n{shown}");
    }
}

const TINY: &str = "guest = \"tiny\"\nvcpus = 1\nmemory = \"64KiB\"\n";

#[test]
fn a_counted_vm_is_that_many_vms_named_by_index_packed_in_pages() {
    let c = plan_vms(&format!("[[vm]]\nname = \"t{{}}\"\ncount = 4096\n{TINY}")).unwrap();
    assert_eq!(c.vms.len(), 4096);
    assert_eq!(&*c.vms[0].name, "t0");
    assert_eq!(&*c.vms[4095].name, "t4095");
    // The region grows by the heap of the VMs past the first few.
    assert_eq!(
        c.hypervisor.size,
        (8 << 20) + heap_for(4096).next_multiple_of(2 << 20)
    );
    assert_eq!(heap_for(4096), (4096 - VMS_IN_REGION as u64) * HEAP_PER_VM);
    // Back to back from the first 4 KiB after the region, none overlapping.
    assert_eq!(c.vms[0].ram.base, c.hypervisor.base + c.hypervisor.size);
    for pair in c.vms.windows(2) {
        assert_eq!(pair[0].ram.size, 64 << 10);
        assert_eq!(pair[1].ram.base, pair[0].ram.base + (64 << 10));
    }
    assert!(c.vms[4095].ram.end() <= c.ram.end());
    // One guest image for all of them.
    assert_eq!(c.guests.len(), 1);
}

#[test]
fn counted_and_plain_vms_mix_and_big_ones_stay_on_2mib() {
    let c = plan_vms(&format!(
        "[[vm]]\nname = \"a{{}}\"\ncount = 3\n{TINY}\n[[vm]]\nname = \"big\"\nguest = \"hello\"\nvcpus = 1\nmemory = \"16MiB\"\n\n[[vm]]\nname = \"b{{}}\"\ncount = 1\n{TINY}"
    ))
    .unwrap();
    let names: Vec<_> = c.vms.iter().map(|v| v.name.to_string()).collect();
    assert_eq!(names, ["a0", "a1", "a2", "big", "b0"]);
    assert_eq!(
        c.vms[3].ram.base % (2 << 20),
        0,
        "whole blocks start on one"
    );
    assert_eq!(c.vms[4].ram.base, c.vms[3].ram.end());
}

#[test]
fn count_is_checked() {
    let name = "name = \"t{}\"";
    refused(
        &format!("[[vm]]\n{name}\ncount = 0\n{TINY}"),
        "count = 0",
        "vm #1 count",
        &["count 0 is outside 1..=65536"],
    );
    refused(
        &format!("[[vm]]\n{name}\ncount = 70000\n{TINY}"),
        "count = 70000",
        "vm #1 count",
        &["count 70000 is outside 1..=65536"],
    );
    refused(
        &format!("[[vm]]\nname = \"t\"\ncount = 4\n{TINY}"),
        "name = \"t\"",
        "vm #1 name",
        &["needs one {} for the VM's index", "name = \"t{}\""],
    );
    refused(
        &format!("[[vm]]\nname = \"t{{}}-{{}}\"\ncount = 4\n{TINY}"),
        "name = \"t{}-{}\"",
        "vm #1 name",
        &["has more than one"],
    );
    refused(
        &format!("[[vm]]\n{name}\n{TINY}"),
        "name = \"t{}\"",
        "vm #1 name",
        &["only a counted [[vm]] fills", "add count = N"],
    );
    refused(
        &format!("[[vm]]\n{name}\ncount = 2\nbase = 0x4800_0000\n{TINY}"),
        "base = 0x48",
        "vm #1 base",
        &["cannot all have their RAM at one base"],
    );
}

#[test]
fn counted_vms_are_validated_like_any_other() {
    // Each name checked: the index makes the eleventh too long.
    let long = "a".repeat(30);
    refused(
        &format!("[[vm]]\nname = \"{long}{{}}\"\ncount = 11\n{TINY}"),
        "name = \"aaa",
        &format!("vm '{long}10' name"),
        &["32 bytes long, more than 31"],
    );
    // A plain VM whose name a counted one takes.
    refused(
        &format!("[[vm]]\nname = \"t{{}}\"\ncount = 4\n{TINY}\n[[vm]]\nname = \"t2\"\n{TINY}"),
        "name = \"t2\"",
        "vm 't2' name",
        &["a VM named 't2' is already on line"],
    );
    // Too many for RAM: the table's memory line, naming the first that
    // does not fit.
    refused(
        &format!("[[vm]]\nname = \"t{{}}\"\ncount = 20000\n{TINY}"),
        "memory = \"64KiB\"",
        // 8 MiB + 626 MiB of heap, then 6240 VMs of 64 KiB fill 1 GiB.
        "vm 't6240' memory",
        &["ask for", "but RAM is 1 GiB"],
    );
}

#[test]
fn small_vms_take_4kib_multiples_linux_2mib() {
    refused(
        "[[vm]]\nname = \"x\"\nguest = \"tiny\"\nvcpus = 1\nmemory = \"66KiB\"\n",
        "memory = \"66KiB\"",
        "vm 'x' memory",
        &["66 KiB is not a multiple of 4 KiB", "\"68KiB\""],
    );
    refused(
        "[[vm]]\nname = \"x\"\nguest = \"tiny\"\nvcpus = 1\nmemory = \"8KiB\"\n",
        "memory = \"8KiB\"",
        "vm 'x' memory",
        &["at least 16 KiB", "\"16KiB\""],
    );
    refused(
        "[[vm]]\nname = \"x\"\nguest = \"tiny\"\nvcpus = 1\nmemory = \"64KiB\"\nbase = 0x4880_0800\n",
        "base = 0x48",
        "vm 'x' base",
        &["is not 4 KiB aligned", "0x48800000 or 0x48801000"],
    );
    refused(
        "[[vm]]\nname = \"x\"\nkernel = \"debian:arm64\"\nvcpus = 1\nmemory = \"64KiB\"\n",
        "memory = \"64KiB\"",
        "vm 'x' memory",
        &["not a non-zero multiple of 2 MiB", "Linux", "\"2MiB\""],
    );
    plan_vms("[[vm]]\nname = \"x\"\nguest = \"tiny\"\nvcpus = 1\nmemory = \"64KiB\"\nbase = 0x4880_1000\n")
        .unwrap();
}

fn scenario_file(name: &str, expect: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("config-count-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("board = \"qemu-virt-a64\"\ndescription = \"d\"\ntimeout = \"60s\"\nexpect = {expect}\n"),
    )
    .unwrap();
    path
}

#[test]
fn each_stands_for_a_line_per_number_in_any_order() {
    let path = scenario_file(
        "each",
        r#"["start", { each = "3..5", lines = ["[t{}] up", "VM t{} exited"] }, "end"]"#,
    );
    let s = load_scenario(&path).unwrap();
    assert_eq!(s.expect.len(), 3);
    assert_eq!(
        s.expect[1],
        Expect::AnyOrder(
            [
                "[t3] up",
                "VM t3 exited",
                "[t4] up",
                "VM t4 exited",
                "[t5] up",
                "VM t5 exited"
            ]
            .map(String::from)
            .to_vec()
        )
    );
    for (bad, says) in [
        (r#"[{ each = "5..3", lines = ["t{}"] }]"#, "lo <= hi"),
        (
            r#"[{ each = "x..3", lines = ["t{}"] }]"#,
            "two decimal integers",
        ),
        (
            r#"[{ each = "0..3", lines = ["same"] }]"#,
            "has no {} for the number",
        ),
        (r#"[{ each = "0..3", lines = [] }]"#, "stands for 1 to"),
    ] {
        let err = load_scenario(&scenario_file("bad-each", bad)).unwrap_err();
        assert_eq!(err.field, "expect", "{err}");
        assert!(err.to_string().contains(says), "{says:?} not in {err}");
    }
}
