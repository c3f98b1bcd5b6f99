//! The initramfs writer checked by GNU cpio (Debian's `cpio`).

use std::path::Path;
use std::process::Command;
use xtask::{initramfs, tools};

#[test]
fn gnu_cpio_lists_our_initramfs() {
    assert!(
        tools::find("cpio").is_some(),
        "cpio is missing: apt-get install cpio"
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("initramfs");
    std::fs::create_dir_all(&dir).unwrap();
    let busybox = dir.join("busybox");
    std::fs::write(&busybox, vec![0x7f; 5000]).unwrap();
    let ko = dir.join("ext4.ko");
    std::fs::write(&ko, b"module").unwrap();
    let out = dir.join("initrd.gz");
    let dest = "lib/modules/6.1.0-50-arm64/kernel/fs/ext4/ext4.ko";
    initramfs::build(
        &busybox,
        &[(ko, dest.into())],
        &initramfs::init_script("6.1.0-50-arm64", xtask::debian::MODULES),
        &out,
    )
    .unwrap();

    let cpio = std::fs::read(&out).unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&cpio[..]), &mut plain).unwrap();
    let listing = Command::new("cpio")
        .args(["-itv", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&plain)?;
            child.wait_with_output()
        })
        .unwrap();
    let stderr = String::from_utf8_lossy(&listing.stderr);
    assert!(listing.status.success(), "cpio failed: {stderr}");
    let text = String::from_utf8_lossy(&listing.stdout);
    // `ls -l`-like lines: mode, links, owner, group, size (or major, minor), date, name.
    let line = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(line("bin/busybox")[0], "-rwxr-xr-x");
    assert_eq!(line("bin/busybox")[4], "5000");
    assert_eq!(line("init")[0], "-rwxr-xr-x");
    let console = line("dev/console");
    assert_eq!(console[0], "crw-------");
    assert_eq!(console[4..6], ["5,", "1"]);
    assert_eq!(line("tmp")[0], "drwxrwxrwt");
    for dir in ["dev", "proc", "sys", "sbin", "lib/modules/6.1.0-50-arm64"] {
        assert!(line(dir)[0].starts_with('d'), "{dir}: {:?}", line(dir));
    }
    assert_eq!(line(dest)[0], "-rw-r--r--");
    assert!(text.lines().all(|l| l.contains(" root ")), "{text}");
}
