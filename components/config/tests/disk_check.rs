//! A scenario's `[disk-check]`: parsed, and each rule refused at its line.

use config::profile::*;
use std::path::PathBuf;

const HEAD: &str = r#"board = "qemu-virt-a64"
description = "x"
timeout = "60s"
expect = ["ok"]
disk = "ci/disks/guest.img.gz"
"#;

const HASH: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

/// Loads a scenario made of `head` and `body` from a temporary file.
fn load(name: &str, head: &str, body: &str) -> (PathBuf, Result<Scenario, ProfileError>) {
    let dir = std::env::temp_dir().join(format!("config-disk-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("{head}{body}")).unwrap();
    let result = load_scenario(&path);
    (path, result)
}

fn err_at(name: &str, body: &str, line: usize, field: &str, says: &str) {
    let (path, result) = load(name, HEAD, body);
    let err = result.unwrap_err();
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), line, field),
        "{err}"
    );
    assert!(err.to_string().contains(says), "{err}");
}

#[test]
fn parses_writable_volumes_and_files() {
    let body = format!(
        r#"
[disk-check]
writable = ["lvm:vg0/web"]

[[disk-check.ext4]]
volume = "lvm:vg0/web"
files = [
    {{ path = "/hello-a.txt", sha256 = "{HASH}" }},
    {{ path = "/from-a.txt", text = "from a\n" }},
]

[[disk-check.ext4]]
volume = "gpt:data"
"#
    );
    let (_, s) = load("good", HEAD, &body);
    let check = s.unwrap().disk_check.unwrap();
    assert_eq!(
        check,
        DiskCheck {
            writable: vec!["lvm:vg0/web".into()],
            ext4: vec![
                Ext4Check {
                    volume: "lvm:vg0/web".into(),
                    files: vec![
                        FileCheck {
                            path: "/hello-a.txt".into(),
                            want: FileWant::Sha256(HASH.into())
                        },
                        FileCheck {
                            path: "/from-a.txt".into(),
                            want: FileWant::Text("from a\n".into())
                        },
                    ]
                },
                Ext4Check {
                    volume: "gpt:data".into(),
                    files: vec![]
                },
            ]
        }
    );
    // Nothing writable: the whole disk must stay as it was.
    let (_, s) = load("none", HEAD, "[disk-check]\nwritable = []\n");
    let check = s.unwrap().disk_check.unwrap();
    assert!(check.writable.is_empty() && check.ext4.is_empty());
    let (_, s) = load("absent", HEAD, "");
    assert!(s.unwrap().disk_check.is_none());
}

#[test]
fn each_rule_is_refused_where_it_is_broken() {
    // The first line of `body` is line 6.
    let (path, result) = load(
        "no_disk",
        &HEAD.replace("disk = \"ci/disks/guest.img.gz\"\n", ""),
        "[disk-check]\nwritable = []\n",
    );
    let err = result.unwrap_err();
    assert_eq!((&err.file, err.line), (&path, 5));
    assert!(err.to_string().contains("there is no disk to check"));

    err_at(
        "no_writable",
        "[disk-check]\next4 = []\n",
        6,
        "disk-check",
        "'writable' is missing",
    );
    err_at(
        "empty_writable",
        "[disk-check]\nwritable = [\"\"]\n",
        7,
        "disk-check.writable",
        "volume '': a disk source is part:N, gpt:NAME or lvm:VG/LV",
    );
    err_at(
        "bad_source",
        "[disk-check]\nwritable = []\n[[disk-check.ext4]]\nvolume = \"lvm:vg0\"\n",
        9,
        "disk-check.ext4.volume",
        "volume 'lvm:vg0': lvm: needs VG/LV",
    );
    err_at(
        "relative",
        "[disk-check]\nwritable = []\n[[disk-check.ext4]]\nvolume = \"gpt:data\"\nfiles = [{ path = \"a.txt\", text = \"a\" }]\n",
        10,
        "disk-check.ext4.files",
        "is not absolute",
    );
    err_at(
        "both",
        &format!("[disk-check]\nwritable = []\n[[disk-check.ext4]]\nvolume = \"gpt:data\"\nfiles = [{{ path = \"/a\", text = \"a\", sha256 = \"{HASH}\" }}]\n"),
        10,
        "disk-check.ext4.files",
        "exactly one",
    );
    err_at(
        "neither",
        "[disk-check]\nwritable = []\n[[disk-check.ext4]]\nvolume = \"gpt:data\"\nfiles = [{ path = \"/a\" }]\n",
        10,
        "disk-check.ext4.files",
        "exactly one",
    );
    err_at(
        "upper_hash",
        &format!("[disk-check]\nwritable = []\n[[disk-check.ext4]]\nvolume = \"gpt:data\"\nfiles = [{{ path = \"/a\", sha256 = \"{}\" }}]\n", HASH.to_uppercase()),
        10,
        "disk-check.ext4.files",
        "64 lowercase hex",
    );
    err_at(
        "short_hash",
        "[disk-check]\nwritable = []\n[[disk-check.ext4]]\nvolume = \"gpt:data\"\nfiles = [{ path = \"/a\", sha256 = \"abc\" }]\n",
        10,
        "disk-check.ext4.files",
        "64 lowercase hex",
    );
    err_at(
        "unknown",
        "[disk-check]\nwritable = []\nfsck = true\n",
        8,
        "disk-check",
        "unknown field 'fsck'; the fields here are: writable, ext4",
    );
}
