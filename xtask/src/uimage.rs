//! U-Boot legacy images (`uImage`, `boot.scr`), written by hand: no crate
//! writes them and the format is a 64-byte header in front of the payload.
//! `dumpimage -T kernel -l` / `-T script -l` is the outside check.

use anyhow::{ensure, Context, Result};
use config::composition::Arch;
use std::path::Path;
use xshell::{cmd, Shell};

const MAGIC: u32 = 0x2705_1956;
pub const HEADER_LEN: usize = 64;
const NAME_LEN: usize = 32;
const OS_LINUX: u8 = 5;
const COMPRESSION_NONE: u8 = 0;

/// `ih_type`: what U-Boot does with the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kernel = 2,
    Script = 6,
}

/// `ih_arch` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageArch {
    Arm = 2,
    Arm64 = 22,
}

impl From<Arch> for ImageArch {
    fn from(arch: Arch) -> Self {
        match arch {
            Arch::Aarch64 => ImageArch::Arm64,
            Arch::Armv7a => ImageArch::Arm,
        }
    }
}

/// A legacy image: the 64-byte big-endian header, then `payload`.
/// `name` is cut to 31 bytes so the field stays NUL-terminated.
pub fn legacy_image(
    kind: Kind,
    arch: ImageArch,
    load: u32,
    entry: u32,
    name: &str,
    payload: &[u8],
    timestamp: u32,
) -> Vec<u8> {
    let size = u32::try_from(payload.len()).expect("a legacy image payload is below 4 GiB");
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    // 4..8: header CRC, computed last over the header with this field zero.
    header[8..12].copy_from_slice(&timestamp.to_be_bytes());
    header[12..16].copy_from_slice(&size.to_be_bytes());
    header[16..20].copy_from_slice(&load.to_be_bytes());
    header[20..24].copy_from_slice(&entry.to_be_bytes());
    header[24..28].copy_from_slice(&crc32fast::hash(payload).to_be_bytes());
    header[28] = OS_LINUX;
    header[29] = arch as u8;
    header[30] = kind as u8;
    header[31] = COMPRESSION_NONE;
    let name = &name.as_bytes()[..name.len().min(NAME_LEN - 1)];
    header[32..32 + name.len()].copy_from_slice(name);
    let header_crc = crc32fast::hash(&header);
    header[4..8].copy_from_slice(&header_crc.to_be_bytes());

    let mut image = Vec::with_capacity(HEADER_LEN + payload.len());
    image.extend_from_slice(&header);
    image.extend_from_slice(payload);
    image
}

/// A script image (`boot.scr`): the script behind a one-entry length table
/// (`be32(len)`, then a zero terminator), as `mkimage -T script` writes it.
pub fn script_image(arch: ImageArch, name: &str, script: &str, timestamp: u32) -> Vec<u8> {
    let len = u32::try_from(script.len()).expect("a boot script is below 4 GiB");
    let mut payload = Vec::with_capacity(8 + script.len());
    payload.extend_from_slice(&len.to_be_bytes());
    payload.extend_from_slice(&0u32.to_be_bytes());
    payload.extend_from_slice(script.as_bytes());
    legacy_image(Kind::Script, arch, 0, 0, name, &payload, timestamp)
}

/// The distro-boot script: load the uImage from the partition the script was
/// found on to the board's load address and `bootm` it with U-Boot's own DTB
/// (without an FDT argument `bootm` resets these boards).
pub fn boot_cmd(load_address: u64) -> String {
    format!(
        "load ${{devtype}} ${{devnum}}:${{distro_bootpart}} {load_address:#x} tessera.uimg\n\
         bootm {load_address:#x} - ${{fdtcontroladdr}}\n"
    )
}

/// The image timestamp: `SOURCE_DATE_EPOCH` when set, else 0, so that two
/// builds of the same tree are byte-identical.
pub fn timestamp() -> Result<u32> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds")),
        Err(_) => Ok(0),
    }
}

/// What `dumpimage -T <kind> -l` said about an image. Plain `dumpimage -l`
/// is no check: it exits 0 on a corrupt image.
pub struct Listing {
    /// It accepted the header and data CRCs.
    pub ok: bool,
    pub text: String,
}

impl Listing {
    /// A hexadecimal field such as `Load Address: 40400000`.
    pub fn address(&self, field: &str) -> Option<u64> {
        self.text.lines().find_map(|line| {
            let value = line.strip_prefix(field)?.strip_prefix(':')?;
            u64::from_str_radix(value.trim(), 16).ok()
        })
    }

    pub fn image_type(&self) -> Option<&str> {
        self.text
            .lines()
            .find_map(|line| line.strip_prefix("Image Type:"))
            .map(str::trim)
    }
}

pub fn dumpimage(kind: Kind, path: &Path) -> Result<Listing> {
    let kind = match kind {
        Kind::Kernel => "kernel",
        Kind::Script => "script",
    };
    let sh = Shell::new()?;
    let output = cmd!(sh, "dumpimage -T {kind} -l {path}")
        .quiet()
        .ignore_status()
        .output()
        .context("running dumpimage (apt-get install u-boot-tools)")?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(Listing {
        ok: output.status.success(),
        text,
    })
}

/// Checks a kernel uImage with `dumpimage`: valid CRCs, the architecture
/// (as dumpimage names it, e.g. "AArch64"), and load = entry = `load`.
pub fn check_kernel(path: &Path, arch: &str, load: u64) -> Result<()> {
    let listing = dumpimage(Kind::Kernel, path)?;
    let context = || {
        format!(
            "dumpimage -T kernel -l {}:\n{}",
            path.display(),
            listing.text
        )
    };
    ensure!(listing.ok, "rejected the image: {}", context());
    ensure!(
        listing.image_type().is_some_and(|t| t.starts_with(arch)),
        "the image is not for {arch}: {}",
        context()
    );
    for field in ["Load Address", "Entry Point"] {
        ensure!(
            listing.address(field) == Some(load),
            "{field} is not {load:#x}: {}",
            context()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be32(bytes: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn header_fields() {
        let payload = b"tessera payload";
        let image = legacy_image(
            Kind::Kernel,
            ImageArch::Arm64,
            0x4040_0000,
            0x4040_0000,
            "tessera",
            payload,
            1_700_000_000,
        );
        assert_eq!(image.len(), HEADER_LEN + payload.len());
        assert_eq!(be32(&image, 0), MAGIC);
        assert_eq!(be32(&image, 8), 1_700_000_000);
        assert_eq!(be32(&image, 12), payload.len() as u32);
        assert_eq!(be32(&image, 16), 0x4040_0000);
        assert_eq!(be32(&image, 20), 0x4040_0000);
        assert_eq!(be32(&image, 24), crc32fast::hash(payload));
        assert_eq!(&image[28..32], &[5, 22, 2, 0]);
        assert_eq!(&image[32..40], b"tessera\0");
        assert!(image[39..64].iter().all(|&b| b == 0));
        assert_eq!(&image[HEADER_LEN..], payload);
    }

    #[test]
    fn header_crc_covers_header_with_crc_field_zero() {
        let image = legacy_image(Kind::Kernel, ImageArch::Arm, 1, 2, "x", b"", 0);
        let mut header = image[..HEADER_LEN].to_vec();
        header[4..8].fill(0);
        assert_eq!(be32(&image, 4), crc32fast::hash(&header));
        assert_eq!(image[29], 2);
        // Known value: CRC-32 of the empty payload.
        assert_eq!(be32(&image, 24), 0);
    }

    #[test]
    fn long_names_stay_terminated() {
        let image = legacy_image(
            Kind::Kernel,
            ImageArch::Arm64,
            0,
            0,
            &"n".repeat(40),
            b"",
            0,
        );
        assert_eq!(&image[32..63], "n".repeat(31).as_bytes());
        assert_eq!(image[63], 0);
    }

    #[test]
    fn script_payload_has_length_table() {
        let script = "echo hi\n";
        let image = script_image(ImageArch::Arm64, "boot", script, 0);
        assert_eq!(image[30], Kind::Script as u8);
        assert_eq!(be32(&image, 16), 0);
        assert_eq!(be32(&image, HEADER_LEN), script.len() as u32);
        assert_eq!(be32(&image, HEADER_LEN + 4), 0);
        assert_eq!(&image[HEADER_LEN + 8..], script.as_bytes());
        assert_eq!(be32(&image, 24), crc32fast::hash(&image[HEADER_LEN..]));
    }

    #[test]
    fn boot_cmd_uses_the_load_address() {
        let cmd = boot_cmd(0x4040_0000);
        assert!(cmd.contains("${distro_bootpart} 0x40400000 tessera.uimg"));
        assert!(cmd.contains("bootm 0x40400000 - ${fdtcontroladdr}"));
    }
}
