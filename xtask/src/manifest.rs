//! The `manifest`: what was composed and how big each part is.

use crate::compose::{arch_name, GUESTS_SECTION, VMS_SECTION};
use crate::elf::{self, SectionSizes};
use anyhow::{Context, Result};
use config::composition::Composition;
use config::profile::format_size;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Sizes in bytes.
pub struct Sizes {
    /// Allocated sections of the image but the VM table and the guests.
    pub hypervisor: SectionSizes,
    pub vm_table: u64,
    /// Each distinct guest image (a guest at one register width), in the
    /// order the VMs name them: its label, its file, its size.
    pub guests: Vec<(String, PathBuf, u64)>,
    /// `tessera.bin`, everything included.
    pub bin_total: u64,
    /// The image's `TESSERA_STATE_SIZES`: a VM's, a vCPU's and a vCPU's
    /// registers' fixed-size state as compiled.
    pub state: Option<[u32; 3]>,
}

impl Sizes {
    pub fn measure(composition: &Composition, image_elf: &[u8], bin_total: u64) -> Result<Self> {
        let hypervisor = elf::section_sizes(image_elf, &[VMS_SECTION, GUESTS_SECTION])
            .context("reading the image's section sizes")?;
        let vm_table = hypervisor.named[0].1;
        let mut guests: Vec<(String, PathBuf, u64)> = Vec::new();
        for vm in &composition.vms {
            let image = composition.guest_image(vm);
            if guests.iter().all(|(_, known, _)| known != image) {
                let bytes = std::fs::metadata(image)
                    .with_context(|| format!("reading {}", image.display()))?
                    .len();
                // A guest at the host's own width is just its name.
                let label = if vm.width == composition.arch.native_guest() {
                    vm.guest.to_string()
                } else {
                    format!("{} ({})", vm.guest, vm.width.name())
                };
                guests.push((label, image.to_path_buf(), bytes));
            }
        }
        let state =
            elf::symbol_u32s(image_elf, "TESSERA_STATE_SIZES", 3)?.and_then(|v| v.try_into().ok());
        Ok(Sizes {
            hypervisor,
            vm_table,
            guests,
            bin_total,
            state,
        })
    }

    fn guest_image(&self, path: &Path) -> u64 {
        self.guests
            .iter()
            .find(|(_, image, _)| image == path)
            .map_or(0, |&(_, _, bytes)| bytes)
    }
}

pub fn render(c: &Composition, sizes: &Sizes) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("board        {}", c.board));
    line(format!(
        "arch         {} ({})",
        arch_name(c.arch),
        c.arch.hypervisor_target()
    ));
    line(format!("composition  {}", c.name));
    line(format!("cpus         {}", c.cpus));
    line(format!(
        "hypervisor   {}",
        range(c.hypervisor.base, c.hypervisor.end())
    ));
    line(String::new());
    line("components".into());
    line(format!(
        "  scheduler    {} (time slice {} us)",
        c.scheduler, c.time_slice_us
    ));
    line(format!(
        "  uart driver  {} at {:#x}",
        c.uart.driver, c.uart.base
    ));
    if let Some(disk) = &c.disk {
        line(format!(
            "  disk driver  {} at {:#x} (INTID {}, polled)",
            disk.driver, disk.base, disk.irq
        ));
    }
    line(format!("  gic          v{} (vgic v{0})", c.gic.version));
    let pv: Vec<String> = config::components::of(config::components::Kind::Pv)
        .map(|p| p.name.to_string())
        .collect();
    line(format!("  pv           {}", list(&pv)));
    line(format!("  features     {}", c.features().join(",")));
    line(String::new());
    line("vms".into());
    let mut table = vec![[
        "name".to_string(),
        "guest".into(),
        "vcpus".into(),
        "ram (host-physical)".into(),
        "image bytes".into(),
        "stage 2".into(),
        "cmdline".into(),
    ]];
    let tables = stage2_tables(c);
    for (vm, tables) in c.vms.iter().zip(&tables) {
        table.push([
            vm.name.to_string(),
            vm.guest.to_string(),
            vm.vcpus.to_string(),
            range(vm.ram.base, vm.ram.end()),
            sizes.guest_image(c.guest_image(vm)).to_string(),
            match tables {
                Some(n) => format!("{n} x 4 KiB"),
                None => "unmappable".into(),
            },
            format!("{:?}", vm.cmdline),
        ]);
    }
    for row in columns(&table) {
        line(format!("  {row}"));
    }
    let mut devices = Vec::new();
    for vm in &c.vms {
        for d in &vm.devices {
            let serves = match (&d.disk, &d.net) {
                (Some(disk), _) => format!(
                    "{}{}",
                    disk.source,
                    if disk.read_only { ", read-only" } else { "" }
                ),
                (None, Some(net)) => format!("network {}", network_name(c, net.network)),
                (None, None) => String::new(),
            };
            devices.push([
                vm.name.to_string(),
                d.kind.to_string(),
                range(d.base, d.base + d.size),
                format!("SPI {}", d.intid.saturating_sub(32)),
                serves,
            ]);
        }
    }
    if !devices.is_empty() {
        line(String::new());
        line("devices (guest-physical)".into());
        for row in columns(&devices) {
            line(format!("  {}", row.trim_end()));
        }
    }
    channels(c, &mut line);
    network_ports(c, &mut line);
    line(String::new());
    let h = &sizes.hypervisor;
    line("sizes (bytes)".into());
    line(format!("  hypervisor without guests  {}", h.total()));
    line(format!("    text                     {}", h.text));
    line(format!("    rodata                   {}", h.rodata));
    line(format!("    data                     {}", h.data));
    line(format!("    bss                      {}", h.bss));
    line(format!("  vm table                   {}", sizes.vm_table));
    for (guest, _, bytes) in &sizes.guests {
        line(format!("  guest {guest:<20} {bytes}"));
    }
    line(format!("  tessera.bin                {}", sizes.bin_total));
    per_vm(c, sizes, &tables, &mut line);
    out
}

/// What the hypervisor keeps per VM besides its RAM, as far as the build
/// knows it: the stage-2 tables, the fixed-size state as compiled, and
/// the heap the region has for each. The hypervisor measures the whole
/// at boot (`[hv] memory:`), and `cargo xtask bench` reports that.
fn per_vm(c: &Composition, sizes: &Sizes, tables: &[Option<usize>], line: &mut impl FnMut(String)) {
    let known: Vec<usize> = tables.iter().flatten().copied().collect();
    let (Some(least), Some(most)) = (known.iter().min(), known.iter().max()) else {
        return;
    };
    line(String::new());
    line("per VM besides its RAM (bytes; the hypervisor prints its heap per VM at boot)".into());
    let count = if least == most {
        format!("{least}")
    } else {
        format!("{least} to {most}")
    };
    line(format!(
        "  stage-2 tables             {} ({count} of 4 KiB; the GIC frame's shared by all VMs)",
        most * 4096
    ));
    if let Some([vm, vcpu, regs]) = sizes.state {
        line(format!(
            "  VM, vCPU, registers        {vm}, {vcpu}, {regs} (fixed-size state as compiled, a vCPU's each)"
        ));
    }
    line(format!(
        "  heap the region holds      {} per VM past the first {} (+{} here)",
        config::profile::HEAP_PER_VM,
        config::profile::VMS_IN_REGION,
        format_size(config::profile::heap_for(c.vms.len()))
    ));
}

/// The stage-2 tables each VM owns, from the hypervisor's own table
/// builder over the VM's map (RAM, channel pages, the GICv2 virtual CPU
/// interface in tables all VMs share, as `hv::core` builds them); `None`
/// for a map it refuses (the hypervisor would not start that VM).
fn stage2_tables(c: &Composition) -> Vec<Option<usize>> {
    use hv::stage2::{Stage2, PAGE_SIZE};
    // The vGICv2 maps GICV's two pages where guests expect GICC; v3 none.
    const GICV_SIZE: u64 = 0x2000;
    let gicv = c.gic.virtual_cpu_interface.filter(|_| c.gic.version == 2);
    let shared = Stage2::shared(|s2| match gicv {
        Some(pa) => s2.map_device(abi::GUEST_GICC_BASE, pa, GICV_SIZE),
        None => Ok(()),
    });
    let Ok(shared) = shared else {
        return vec![None; c.vms.len()];
    };
    c.vms
        .iter()
        .map(|vm| {
            let mut s2 = Stage2::sharing(&shared);
            s2.map_ram(abi::GUEST_RAM_BASE, vm.ram.base, vm.ram.size)
                .ok()?;
            for ch in &vm.channels {
                s2.map_shared(ch.state_ipa, ch.state, PAGE_SIZE, false)
                    .ok()?;
                s2.map_shared(ch.data_ipa, ch.data.base, ch.data.size, ch.writer)
                    .ok()?;
            }
            Some(s2.tables())
        })
        .collect()
}

/// Each VM's channel ends, in its order (the index `CHANNEL_NOTIFY`
/// takes), at their guest-physical addresses, and the host-physical area
/// they all share.
fn channels(c: &Composition, line: &mut impl FnMut(String)) {
    let ends = || {
        c.vms
            .iter()
            .flat_map(|vm| vm.channels.iter().map(move |ch| (vm, ch)))
    };
    let (Some(first), Some(last)) = (
        ends().map(|(_, ch)| ch.state).min(),
        ends().map(|(_, ch)| ch.data.end()).max(),
    ) else {
        return;
    };
    let rows: Vec<[String; 7]> = ends()
        .map(|(vm, ch)| {
            let peer = c
                .vms
                .get(ch.peer as usize)
                .map_or_else(|| format!("#{}", ch.peer), |p| p.name.to_string());
            [
                vm.name.to_string(),
                ch.name.to_string(),
                if ch.writer { "writer" } else { "reader" }.to_string(),
                format_size(ch.data.size),
                format!(
                    "state {:#010x}, data {}",
                    ch.state_ipa,
                    range(ch.data_ipa, ch.data_ipa + ch.data.size)
                ),
                format!("INTID {} (SPI {})", ch.intid, ch.intid.saturating_sub(32)),
                format!("peer {peer}"),
            ]
        })
        .collect();
    line(String::new());
    line(format!(
        "channels (guest-physical, the same in both VMs; host-physical {})",
        range(first, last)
    ));
    for row in columns(&rows) {
        line(format!("  {row}"));
    }
}

/// Network `index`'s name, as the composition has it.
fn network_name(c: &Composition, index: u32) -> String {
    c.networks
        .get(index as usize)
        .map_or_else(|| format!("#{index}"), |n| n.name.clone())
}

/// Each VM's network ports, in its slot order: the network, the slot,
/// its SPI, the MAC, and the address the VM was told (Linux VMs; `-` for
/// the others); the heading gives each network's subnet.
fn network_ports(c: &Composition, line: &mut impl FnMut(String)) {
    let mut rows: Vec<[String; 6]> = Vec::new();
    for (v, vm) in c.vms.iter().enumerate() {
        for d in &vm.devices {
            let Some(net) = &d.net else { continue };
            let address = c
                .networks
                .get(net.network as usize)
                .and_then(|n| n.ports.iter().find(|p| p.vm as usize == v))
                .and_then(|p| p.address.clone());
            let mac: Vec<String> = net.mac.iter().map(|b| format!("{b:02x}")).collect();
            rows.push([
                vm.name.to_string(),
                network_name(c, net.network),
                range(d.base, d.base + d.size),
                format!("SPI {}", d.intid.saturating_sub(32)),
                mac.join(":"),
                address.unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    if rows.is_empty() {
        return;
    }
    let subnets: Vec<String> = c
        .networks
        .iter()
        .map(|n| format!("{} {}", n.name, n.subnet))
        .collect();
    line(String::new());
    line(format!(
        "network ports (guest-physical; {})",
        subnets.join(", ")
    ));
    for row in columns(&rows) {
        line(format!("  {row}"));
    }
}

fn range(base: u64, end: u64) -> String {
    format!("{base:#010x}..{end:#010x}")
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// Rows with each column padded to its widest cell.
pub fn columns<const N: usize>(rows: &[[String; N]]) -> Vec<String> {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|row| row[i].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let mut text = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                let _ = write!(text, "{cell:<width$}  ");
            }
            text.trim_end().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::profile::{parse_profile, plan, GuestFiles, Known, LinuxFiles};
    use config::vm::GuestWidth;

    #[test]
    fn stage2_tables_and_state_sizes_are_listed_per_vm() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let path = root.join("boards/qemu-virt-a64.toml");
        let board = std::fs::read_to_string(&path).unwrap();
        let text = board[..board.find("[[vm]]").unwrap()].to_string()
            + "[[vm]]\nname = \"t{}\"\ncount = 2\nguest = \"hello\"\nvcpus = 1\nmemory = \"64KiB\"\n\n"
            + "[[vm]]\nname = \"big\"\nguest = \"hello\"\nvcpus = 1\nmemory = \"16MiB\"\n\n"
            + "[[channel]]\nname = \"c\"\nwriter = \"t0\"\nreader = \"big\"\nsize = \"4KiB\"\n";
        let profile = parse_profile(&path, &text).unwrap();
        let known = Known::builtin(vec!["hello".into()]);
        let image = |guest: &str, _: GuestWidth| PathBuf::from(guest);
        let c = plan(&profile, None, &known, "test", &image).unwrap();
        // t1: root, RAM's level 2 and 3. t0 also copies the GIC frame's
        // level 2 and 3 to map its channel in that GiB, and a level 3 for
        // the channel's pages. big: root, RAM's level 2 (blocks), the
        // copies and the channel's level 3.
        assert_eq!(stage2_tables(&c), [Some(6), Some(3), Some(5)]);
        let sizes = Sizes {
            hypervisor: SectionSizes::default(),
            vm_table: 0,
            guests: Vec::new(),
            bin_total: 0,
            state: Some([968, 216, 1072]),
        };
        let text = render(&c, &sizes);
        for want in [
            "  t1    hello  1      ",
            "3 x 4 KiB",
            "  stage-2 tables             24576 (3 to 6 of 4 KiB",
            "  VM, vCPU, registers        968, 216, 1072",
            "  heap the region holds      32768 per VM past the first 16 (+0 bytes here)",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
    }

    #[test]
    fn channels_are_listed_per_vm() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let path = root.join("boards/qemu-virt-a64.toml");
        let text = std::fs::read_to_string(&path).unwrap()
            + "\n[[channel]]\nname = \"telemetry\"\nwriter = \"hello\"\nreader = \"spinner\"\nsize = \"64KiB\"\n";
        let profile = parse_profile(&path, &text).unwrap();
        let known = Known::builtin(vec!["hello".into(), "spinner".into()]);
        let image = |guest: &str, _: GuestWidth| PathBuf::from(guest);
        let c = plan(&profile, None, &known, "test", &image).unwrap();
        let sizes = Sizes {
            hypervisor: SectionSizes::default(),
            vm_table: 0,
            guests: Vec::new(),
            bin_total: 0,
            state: Some([1, 2, 3]),
        };
        let text = render(&c, &sizes);
        let state = c.vms[0].channels[0].state;
        let heading = format!(
            "channels (guest-physical, the same in both VMs; host-physical {})",
            range(state, state + 0x1_1000)
        );
        assert!(text.contains(&heading), "{text}");
        for row in [
            "  hello    telemetry  writer  64 KiB  state 0x10000000, data 0x10001000..0x10011000  INTID 64 (SPI 32)  peer spinner\n",
            "  spinner  telemetry  reader  64 KiB  state 0x10000000, data 0x10001000..0x10011000  INTID 64 (SPI 32)  peer hello\n",
        ] {
            assert!(text.contains(row), "{row:?} not in:\n{text}");
        }
    }

    fn scratch() -> PathBuf {
        std::env::temp_dir().join(format!("tessera-manifest-{}", std::process::id()))
    }

    /// Guests as paths, and a Linux VM's kernel: an arm64 Image header.
    struct Files;

    impl GuestFiles for Files {
        fn guest_image(&self, guest: &str, _: GuestWidth) -> PathBuf {
            PathBuf::from(guest)
        }

        fn linux(
            &self,
            vm: &str,
            _: &str,
            _: Option<&str>,
            _: GuestWidth,
        ) -> Result<LinuxFiles, String> {
            let dir = scratch();
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let mut image = vec![0u8; 4096];
            image[16..24].copy_from_slice(&0x201_0000u64.to_le_bytes());
            image[56..60].copy_from_slice(b"ARMd");
            let kernel = dir.join(format!("{vm}.Image"));
            std::fs::write(&kernel, &image).map_err(|e| e.to_string())?;
            Ok(LinuxFiles {
                kernel,
                initrd: None,
                dtb: dir.join(format!("{vm}.dtb")),
            })
        }
    }

    #[test]
    fn network_ports_are_listed_per_vm() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let path = root.join("boards/qemu-virt-a64.toml");
        let text = std::fs::read_to_string(&path).unwrap()
            + "\n[[vm]]\nname = \"web\"\nkernel = \"debian:arm64\"\nvcpus = 1\nmemory = \"64MiB\"\n\
               disks = [{ source = \"part:2\" }]\n\
               \n[[network]]\nname = \"lan\"\nvms = [\"hello\", \"web\"]\n\
               \n[[network]]\nname = \"back\"\nvms = [\"web\", \"spinner\"]\nsubnet = \"192.168.7.0/28\"\n";
        let profile = parse_profile(&path, &text).unwrap();
        let known = Known::builtin(vec!["hello".into(), "spinner".into()]);
        let c = plan(&profile, None, &known, "test", &Files).unwrap();
        std::fs::remove_dir_all(scratch()).unwrap();
        // render() also names the image's features, and the virtio-net row
        // is not in the component table yet: the section on its own.
        let mut text = String::new();
        network_ports(&c, &mut |l| {
            text.push_str(&l);
            text.push('\n');
        });
        assert_eq!(
            text,
            "\n\
             network ports (guest-physical; lan 10.0.0.0/24, back 192.168.7.0/28)\n\
             \x20 hello    lan   0x0a000000..0x0a000200  SPI 16  02:54:53:00:00:00  -\n\
             \x20 spinner  back  0x0a000000..0x0a000200  SPI 16  02:54:53:01:00:01  -\n\
             \x20 web      lan   0x0a000200..0x0a000400  SPI 17  02:54:53:00:00:02  10.0.0.3/24\n\
             \x20 web      back  0x0a000400..0x0a000600  SPI 18  02:54:53:01:00:02  192.168.7.2/28\n"
        );
    }
}
