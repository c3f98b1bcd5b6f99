//! The FIT writer checked by U-Boot's `dumpimage` and by `dtc`. Neither
//! verifies the hashes (`bootm` does); `fit.rs`'s unit tests compare them.

use std::path::{Path, PathBuf};
use std::process::Command;
use xtask::fit;
use xtask::tools;
use xtask::uimage::ImageArch;

const LOAD: u64 = 0x4040_0000;

fn require(tool: &str, package: &str) {
    assert!(
        tools::find(tool).is_some(),
        "{tool} is missing: apt-get install {package}"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fit");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs `tool args`, asserting it succeeds; returns stdout + stderr.
fn run(tool: &str, args: &[&str]) -> String {
    let output = Command::new(tool).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{tool} {args:?} failed:\n{text}");
    text
}

fn write_fit(name: &str) -> PathBuf {
    write_fit_at(name, LOAD)
}

fn write_fit_at(name: &str, load: u64) -> PathBuf {
    let payload: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let image = fit::fit_image(
        ImageArch::Arm64,
        load,
        load,
        "Tessera test",
        &payload,
        None,
        0,
    )
    .unwrap();
    let path = scratch(name);
    std::fs::write(&path, image).unwrap();
    path
}

#[test]
fn dumpimage_lists_our_fit() {
    require("dumpimage", "u-boot-tools");
    let path = write_fit("dumpimage.itb");
    let text = run("dumpimage", &["-l", path.to_str().unwrap()]);
    for expected in [
        "FIT description: Tessera test",
        "Image 0 (kernel)",
        "Type:         Kernel Image",
        "Architecture: AArch64",
        "OS:           Linux",
        "Load Address: 0x40400000",
        "Entry Point:  0x40400000",
        "Hash algo:    sha256",
        "Default Configuration: 'conf-1'",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
}

/// X-Gene's RAM is above 4 GiB: the FIT takes two address cells there,
/// and u-boot reads them as one 64-bit address.
#[test]
fn dumpimage_reads_a_load_address_above_4gib() {
    require("dumpimage", "u-boot-tools");
    let path = write_fit_at("high.itb", 0x1_0200_0000);
    let text = run("dumpimage", &["-l", path.to_str().unwrap()]);
    for expected in ["Load Address: 0x102000000", "Entry Point:  0x102000000"] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
}

#[test]
fn dtc_reads_our_fit() {
    require("dtc", "device-tree-compiler");
    let path = write_fit("dtc.itb");
    let text = run("dtc", &["-I", "dtb", "-O", "dts", path.to_str().unwrap()]);
    let kernel = text
        .find("images {")
        .and_then(|at| text[at..].find("kernel {").map(|k| at + k))
        .unwrap_or_else(|| panic!("no /images/kernel in:\n{text}"));
    let kernel = &text[kernel..];
    for expected in [
        "type = \"kernel\";",
        "arch = \"arm64\";",
        "load = ",
        "entry = ",
        "algo = \"sha256\";",
    ] {
        assert!(kernel.contains(expected), "no {expected:?} in:\n{text}");
    }
    assert!(
        text.contains("default = \"conf-1\";"),
        "no default configuration in:\n{text}"
    );
    // dtc prints 0x40400000 as the string "@@" (its bytes are printable),
    // so read the cells back with fdtget.
    require("fdtget", "device-tree-compiler");
    for property in ["load", "entry"] {
        let value = run(
            "fdtget",
            &[
                "-t",
                "x",
                path.to_str().unwrap(),
                "/images/kernel",
                property,
            ],
        );
        assert_eq!(value.trim(), "40400000", "/images/kernel/{property}");
    }
}
