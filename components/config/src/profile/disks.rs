//! A VM's `disks`: volumes on the hypervisor's own disk, each served to the
//! VM as a virtio-blk device in the ABI's virtio-mmio slots.

use super::check::vm_label;
use super::error::{line_column, ProfileError, Source};
use super::spec::{VmDiskSpec, VmSpec};
use super::{Profile, VmSource};
use crate::vm::{DeviceConfig, DiskConfig};
use disk_layout::Source as Volume;

/// Bytes per sector of a virtio-blk volume.
const SECTOR: u64 = 512;

/// The component that serves a VM's disk.
const KIND: &str = "virtio-blk";

fn list(vm: &VmSpec) -> &[VmDiskSpec] {
    vm.disks.as_ref().map_or(&[], |d| d.get_ref())
}

/// How many disks the VM has: the virtio-mmio slots they take.
pub(super) fn count(vm: &VmSpec) -> usize {
    list(vm).len()
}

/// One VM's disks on their own: each source as the hypervisor will read
/// it, no more than the ABI has slots, and no volume twice.
pub(super) fn check_vm(src: Source, label: &str, vm: &VmSpec) -> Result<(), ProfileError> {
    let field = format!("{label} disks");
    let disks = list(vm);
    let mut parsed: Vec<Volume> = Vec::with_capacity(disks.len());
    for (n, disk) in disks.iter().enumerate() {
        let text = disk.source.get_ref();
        if n as u64 >= abi::GUEST_VIRTIO_COUNT {
            return Err(src
                .error(
                    disk.source.span(),
                    &field,
                    format!(
                        "{} disks; a VM has at most {} (the guest ABI's virtio-mmio slots)",
                        disks.len(),
                        abi::GUEST_VIRTIO_COUNT
                    ),
                )
                .with_help("give the VM fewer disks, e.g. one LV per VM holding what it needs"));
        }
        let volume = Volume::parse(text).map_err(|why| {
            src.error(
                disk.source.span(),
                &field,
                format!("disk #{} source '{text}': {why}", n + 1),
            )
            .with_help("e.g. source = \"part:2\", \"gpt:data\" or \"lvm:vg0/web\"")
        })?;
        if let Some(first) = parsed.iter().position(|v| *v == volume) {
            return Err(src
                .error(
                    disk.source.span(),
                    &field,
                    format!(
                        "disk #{} source '{text}' is disk #{}'s volume again",
                        n + 1,
                        first + 1
                    ),
                )
                .with_help("a VM names each volume once"));
        }
        if let Some(min) = &disk.min_size {
            if min.get_ref().0 % SECTOR != 0 {
                return Err(src
                    .error(
                        min.span(),
                        &field,
                        format!(
                            "disk #{} min-size is not a whole number of 512-byte sectors",
                            n + 1
                        ),
                    )
                    .with_help("e.g. min-size = \"64MiB\""));
            }
        }
        parsed.push(volume);
    }
    Ok(())
}

/// The VMs' disks against the board: it must have a `[disk]` for the
/// hypervisor to read, and a volume written by one VM is no other's.
pub(super) fn check_board(profile: &Profile, vms: &VmSource) -> Result<(), ProfileError> {
    let src = vms.source();
    if profile.disk.is_none() {
        if let Some((i, vm)) = vms
            .vms
            .iter()
            .enumerate()
            .find(|(_, vm)| !list(vm).is_empty())
        {
            let span = vm.disks.as_ref().map_or(0..0, |d| d.span());
            return Err(src
                .error(
                    span,
                    &format!("{} disks", vm_label(i, vm)),
                    format!(
                        "board {} has no [disk]: the hypervisor has no driver for a disk of its own there, so its VMs cannot have disks",
                        profile.stem()
                    ),
                )
                .with_help("remove disks, or run the VM on a board with a [disk] section (the QEMU boards have one)"));
        }
        return Ok(());
    }
    // Every disk so far: (VM index, volume, writable).
    let mut seen: Vec<(usize, Volume, bool)> = Vec::new();
    for (i, vm) in vms.vms.iter().enumerate() {
        for disk in list(vm) {
            // check_vm parsed every source already.
            let Ok(volume) = Volume::parse(disk.source.get_ref()) else {
                continue;
            };
            let writable = !disk.read_only;
            let clash = seen
                .iter()
                .find(|(j, v, w)| *j != i && *v == volume && (*w || writable));
            if let Some(&(j, _, other_writable)) = clash {
                let other = &vms.vms[j];
                let (line, _) = line_column(&vms.text, other.name.span().start);
                let writer = match (writable, other_writable) {
                    (true, true) => "both".to_string(),
                    (true, false) => vm_label(i, vm),
                    _ => vm_label(j, other),
                };
                return Err(src
                    .error(
                        disk.source.span(),
                        &format!("{} disks", vm_label(i, vm)),
                        format!(
                            "'{}' is also a disk of {} (line {line}), and {writer} may write it",
                            disk.source.get_ref(),
                            vm_label(j, other)
                        ),
                    )
                    .with_help("a volume one VM writes is that VM's alone: give each VM its own, or make every copy read-only = true"));
            }
            seen.push((i, volume, writable));
        }
    }
    Ok(())
}

/// The VM's virtio-blk devices, in order, in the ABI's slots.
pub(super) fn devices(vm: &VmSpec) -> impl Iterator<Item = DeviceConfig<'static>> + '_ {
    list(vm).iter().zip(0u32..).map(|(disk, n)| DeviceConfig {
        kind: KIND.into(),
        base: abi::GUEST_VIRTIO_BASE + u64::from(n) * abi::GUEST_VIRTIO_SIZE,
        size: abi::GUEST_VIRTIO_SIZE,
        intid: abi::GUEST_VIRTIO_INTID + n,
        disk: Some(DiskConfig {
            source: disk.source.get_ref().clone().into(),
            read_only: disk.read_only,
            min_sectors: disk.min_size.as_ref().map_or(0, |m| m.get_ref().0 / SECTOR),
        }),
        net: None,
    })
}
