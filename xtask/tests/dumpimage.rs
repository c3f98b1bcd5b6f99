//! The uImage and boot-script writers checked by U-Boot's own `dumpimage`
//! (and, byte for byte, against `mkimage`).

use std::path::{Path, PathBuf};
use xtask::tools;
use xtask::uimage::{self, ImageArch, Kind};

const LOAD: u32 = 0x4040_0000;

fn require(tool: &str) {
    assert!(
        tools::find(tool).is_some(),
        "{tool} is missing: apt-get install u-boot-tools"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("uimage");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Flips one payload byte: dumpimage must then reject the image.
fn corrupt(path: &Path) -> PathBuf {
    let mut bytes = std::fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let bad = path.with_extension("bad");
    std::fs::write(&bad, bytes).unwrap();
    bad
}

#[test]
fn dumpimage_accepts_our_kernel_image() {
    require("dumpimage");
    let payload: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let image = uimage::legacy_image(
        Kind::Kernel,
        ImageArch::Arm64,
        LOAD,
        LOAD,
        "Tessera test",
        &payload,
        0,
    );
    let path = scratch("tessera.uimg");
    std::fs::write(&path, &image).unwrap();

    uimage::check_kernel(&path, "AArch64", LOAD.into()).unwrap();
    let listing = uimage::dumpimage(Kind::Kernel, &path).unwrap();
    assert!(listing.text.contains("Tessera test"), "{}", listing.text);

    let listing = uimage::dumpimage(Kind::Kernel, &corrupt(&path)).unwrap();
    assert!(
        !listing.ok,
        "dumpimage accepted a corrupt payload:\n{}",
        listing.text
    );
}

#[test]
fn dumpimage_accepts_our_script_image() {
    require("dumpimage");
    let script = uimage::boot_cmd(LOAD.into());
    let path = scratch("boot.scr");
    std::fs::write(
        &path,
        uimage::script_image(ImageArch::Arm64, "boot", &script, 0),
    )
    .unwrap();

    let listing = uimage::dumpimage(Kind::Script, &path).unwrap();
    assert!(listing.ok, "{}", listing.text);
    assert!(
        listing
            .image_type()
            .is_some_and(|t| t.starts_with("AArch64") && t.contains("Script")),
        "{}",
        listing.text
    );
    assert_eq!(listing.address("Load Address"), Some(0));

    let listing = uimage::dumpimage(Kind::Script, &corrupt(&path)).unwrap();
    assert!(
        !listing.ok,
        "dumpimage accepted a corrupt script:\n{}",
        listing.text
    );
}

/// What `mkimage` makes of `payload` with `args`, at a fixed timestamp.
fn mkimage(args: &[&str], payload: &[u8], name: &str) -> Vec<u8> {
    require("mkimage");
    let input = scratch(&format!("{name}.in"));
    let output = scratch(&format!("{name}.mkimage"));
    std::fs::write(&input, payload).unwrap();
    let status = std::process::Command::new("mkimage")
        .args(["-A", "arm64", "-O", "linux", "-C", "none"])
        .args(args)
        .arg("-d")
        .args([&input, &output])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(&output).unwrap()
}

#[test]
fn images_match_mkimage_byte_for_byte() {
    let script = uimage::boot_cmd(LOAD.into());
    assert_eq!(
        uimage::script_image(ImageArch::Arm64, "boot", &script, 1_700_000_000),
        mkimage(&["-T", "script", "-n", "boot"], script.as_bytes(), "script")
    );
    let payload = b"not really a kernel";
    assert_eq!(
        uimage::legacy_image(
            Kind::Kernel,
            ImageArch::Arm64,
            LOAD,
            LOAD,
            "Tessera",
            payload,
            1_700_000_000
        ),
        mkimage(
            &[
                "-T",
                "kernel",
                "-a",
                "0x40400000",
                "-e",
                "0x40400000",
                "-n",
                "Tessera"
            ],
            payload,
            "kernel"
        )
    );
}
