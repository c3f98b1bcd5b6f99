//! Linux VMs in a profile: planned by the boot protocols, and each mistake
//! refused with its file, line and field.

use config::profile::*;
use config::vm::GuestWidth;
use std::path::{Path, PathBuf};

/// Files for the planner: guests as paths, and a kernel (a valid arm64
/// Image header unless the VM's kernel is "broken") and initrd written
/// to the test's scratch directory.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl GuestFiles for Scratch {
    fn guest_image(&self, guest: &str, width: GuestWidth) -> PathBuf {
        PathBuf::from(format!("/images/{}/{guest}.bin", width.name()))
    }

    fn linux(
        &self,
        vm: &str,
        kernel: &str,
        initrd: Option<&str>,
        _: GuestWidth,
    ) -> Result<LinuxFiles, String> {
        let mut image = vec![0u8; 4096];
        if kernel != "broken" {
            image[16..24].copy_from_slice(&0x201_0000u64.to_le_bytes());
            image[56..60].copy_from_slice(b"ARMd");
        }
        let kernel_path = self.0.join(format!("{vm}.Image"));
        std::fs::write(&kernel_path, &image).unwrap();
        let initrd = initrd.map(|_| {
            let path = self.0.join(format!("{vm}.initrd"));
            std::fs::write(&path, vec![0u8; 3 << 20]).unwrap();
            path
        });
        Ok(LinuxFiles {
            kernel: kernel_path,
            initrd,
            dtb: self.0.join(format!("{vm}.dtb")),
        })
    }
}

/// The reference board with `vms` instead of its own.
fn plan_vms(name: &str, vms: &str) -> Result<config::composition::Composition, ProfileError> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../boards");
    let board = std::fs::read_to_string(dir.join("qemu-virt-a64.toml")).unwrap();
    let text = format!("{}{vms}", &board[..board.find("[[vm]]").unwrap()]);
    let scratch = Scratch::new(name);
    let path = scratch.0.join("board.toml");
    std::fs::write(&path, &text).unwrap();
    let profile = parse_profile(&path, &text)?;
    let known = Known::builtin(vec!["hello".into()]);
    plan(&profile, None, &known, "test", &scratch)
}

/// The line of `text` in the profile that `needle` is on.
fn line_of(vms: &str, needle: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../boards");
    let board = std::fs::read_to_string(dir.join("qemu-virt-a64.toml")).unwrap();
    let head = &board[..board.find("[[vm]]").unwrap()];
    head.lines().count() + vms[..vms.find(needle).unwrap()].lines().count() + 1
}

#[track_caller]
fn refused(name: &str, vms: &str, needle: &str, field: &str, words: &[&str]) {
    let err = plan_vms(name, vms).expect_err("refused");
    println!("{err}");
    assert_eq!(
        (err.line, err.field.as_str()),
        (line_of(vms, needle), field),
        "{err}"
    );
    for w in words {
        assert!(err.to_string().contains(w), "{w:?} not in {err}");
    }
}

const LINUX: &str = r#"[[vm]]
name = "linux"
kernel = "debian:arm64"
initrd = "busybox"
vcpus = 2
memory = "64MiB"
"#;

#[test]
fn a_linux_vm_is_placed_by_the_arm64_protocol_and_gets_a_uart() {
    let c = plan_vms(
        "placed",
        &format!(
            "{LINUX}\n[[vm]]\nname = \"hello\"\nguest = \"hello\"\nvcpus = 1\nmemory = \"16MiB\"\n"
        ),
    )
    .unwrap();
    let vm = &c.vms[0];
    let linux = vm.linux.expect("a Linux VM");
    assert_eq!(linux.kernel_offset, 0);
    assert_eq!(
        linux.dtb.offset, 0x220_0000,
        "above the kernel's image_size, 2 MiB aligned"
    );
    assert_eq!(linux.initrd.unwrap().offset, 0x240_0000);
    assert_eq!(vm.cmdline, "console=ttyAMA0");
    assert_eq!(vm.devices.len(), 1);
    assert_eq!(vm.devices[0].kind, "sbsa-uart");
    assert_eq!(vm.devices[0].base, abi::GUEST_UART_BASE);
    assert!(c.guests[vm.image as usize].ends_with("linux.Image"));
    assert!(c.guests[linux.dtb.image as usize].ends_with("linux.dtb"));
    assert!(c.vms[1].linux.is_none() && c.vms[1].devices.is_empty());
    // The hypervisor's region carries kernel, initrd and the DTB slot.
    assert!(
        c.hypervisor.size >= (8 << 20) + (6 << 20),
        "{:#x}",
        c.hypervisor.size
    );
    assert!(c.vms[0].ram.base >= c.hypervisor.end());
}

#[test]
fn linux_vm_mistakes_name_their_line_and_field() {
    refused(
        "neither",
        "[[vm]]\nname = \"x\"\nvcpus = 1\nmemory = \"16MiB\"\n",
        "name",
        "vm 'x'",
        &["neither a guest nor a kernel"],
    );
    refused(
        "both",
        "[[vm]]\nname = \"x\"\nguest = \"hello\"\nkernel = \"debian:arm64\"\nvcpus = 1\nmemory = \"16MiB\"\n",
        "kernel",
        "vm 'x' kernel",
        &["not both"],
    );
    refused(
        "initrd-on-guest",
        "[[vm]]\nname = \"x\"\nguest = \"hello\"\ninitrd = \"busybox\"\nvcpus = 1\nmemory = \"16MiB\"\n",
        "initrd",
        "vm 'x' initrd",
        &["for Linux VMs"],
    );
    refused(
        "cmdline",
        &LINUX.replace("vcpus = 2", "cmdline = \"quiet\"\nvcpus = 2"),
        "cmdline",
        "vm 'linux' cmdline",
        &["bootargs"],
    );
    refused(
        "flavour",
        &LINUX.replace("debian:arm64", "debian:amd64"),
        "kernel",
        "vm 'linux' kernel",
        &[
            "unknown Debian kernel",
            "debian:arm64 and debian:armmp-lpae",
        ],
    );
    refused(
        "magic",
        &LINUX.replace("debian:arm64", "broken"),
        "kernel",
        "vm 'linux' kernel",
        &["not an arm64 Image"],
    );
    refused(
        "small",
        &LINUX.replace("64MiB", "36MiB"),
        "memory",
        "vm 'linux' memory",
        &["by the boot protocol"],
    );
}

#[test]
fn a_linux_vms_disks_follow_its_uart() {
    let c = plan_vms(
        "disks",
        &LINUX.replace(
            "vcpus = 2",
            "disks = [{ source = \"lvm:vg0/web\" }, { source = \"part:2\", read-only = true }]\nvcpus = 2",
        ),
    )
    .unwrap();
    let devices: Vec<_> = c.vms[0]
        .devices
        .iter()
        .map(|d| {
            let disk = d.disk.as_ref().map(|d| (&*d.source, d.read_only));
            (&*d.kind, d.base, d.size, d.intid, disk)
        })
        .collect();
    assert_eq!(
        devices,
        [
            (
                "sbsa-uart",
                abi::GUEST_UART_BASE,
                abi::GUEST_UART_SIZE,
                33,
                None
            ),
            (
                "virtio-blk",
                0x0a00_0000,
                0x200,
                48,
                Some(("lvm:vg0/web", false))
            ),
            ("virtio-blk", 0x0a00_0200, 0x200, 49, Some(("part:2", true))),
        ]
    );
}

#[test]
fn a_volume_shared_with_a_writer_names_it() {
    let hello = |disk: &str| {
        format!("\n[[vm]]\nname = \"hello\"\nguest = \"hello\"\nvcpus = 1\nmemory = \"16MiB\"\ndisks = [{disk}]\n")
    };
    let linux = |disk: &str| LINUX.replace("vcpus = 2", &format!("disks = [{disk}]\nvcpus = 2"));
    let ro = "{ source = \"gpt:data\", read-only = true }";
    let rw = "{ source = \"gpt:data\" }";
    for (first, second, writer) in [
        (rw, rw, "both"),
        (ro, rw, "vm 'hello'"),
        (rw, ro, "vm 'linux'"),
    ] {
        let vms = format!("{}{}", linux(first), hello(second));
        let err = plan_vms("shared", &vms).expect_err("refused");
        assert_eq!(err.field, "vm 'hello' disks", "{err}");
        assert!(
            err.message.ends_with(&format!(
                "is also a disk of vm 'linux' (line {}), and {writer} may write it",
                line_of(&vms, "name = \"linux\"")
            )),
            "{err}"
        );
    }
    // Readers may share.
    plan_vms("readers", &format!("{}{}", linux(ro), hello(ro))).unwrap();
}
