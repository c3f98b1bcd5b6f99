//! `[[channel]]`s: one-way links between two VMs of the same file. Each is
//! a state page and its data pages, placed once in host RAM after
//! everything else and seen at the same guest-physical address by both
//! VMs; each side has an interrupt of its own.

use super::check::{guest_windows, range, BoardLayout, KIB4, MIB2};
use super::error::{line_column, ProfileError, Source};
use super::plan::known_name;
use super::spec::{ChannelSpec, VmSource};
use super::units::format_size;
use crate::vm::{ChannelEnd, Region};
use crate::window::Window;

/// Where the channel area starts in every VM's guest-physical space: above
/// the ABI's device windows, below its RAM (`abi::GUEST_RAM_BASE`). The
/// composer's choice, not the ABI's: guests are told each channel's
/// addresses (start info, device tree).
pub const GUEST_CHANNEL_BASE: u64 = 0x1000_0000;

/// A VM's i-th channel (its channels in file order, written or read)
/// interrupts it on this INTID + i: SPI 32 + i, above the virtio slots'.
pub const CHANNEL_FIRST_INTID: u32 = 64;

// The channels' SPIs come after the ABI devices' (UART, virtio slots).
const _: () = assert!(
    CHANNEL_FIRST_INTID > abi::GUEST_UART_INTID
        && CHANNEL_FIRST_INTID >= abi::GUEST_VIRTIO_INTID + abi::GUEST_VIRTIO_COUNT as u32
);

/// The most data pages one channel has.
pub const CHANNEL_SIZE_MAX: u64 = 64 << 20;

/// The page holding a channel's `abi::ChannelState`, before its data.
pub const CHANNEL_STATE_PAGE: u64 = KIB4;

/// The longest name: `abi::ChannelInfo::name` keeps a NUL after it.
const NAME_MAX: usize = abi::CHANNEL_NAME_LEN - 1;

/// "channel[2] (telemetry)": the file's second `[[channel]]` (numbered from
/// 1, as "vm #2"), or "channel[2]" when the name is empty.
fn label(index: usize, c: &ChannelSpec) -> String {
    match c.name.get_ref().as_str() {
        "" => format!("channel[{}]", index + 1),
        name => format!("channel[{}] ({name})", index + 1),
    }
}

/// The channels on their own and against the VMs of their file: names,
/// sides, sizes, and no more than a VM's start info has room for.
pub(super) fn check(vms: &VmSource) -> Result<(), ProfileError> {
    let src = vms.source();
    let vm_names: Vec<String> = vms.vms.iter().map(|v| v.name.get_ref().clone()).collect();
    for (i, c) in vms.channels.iter().enumerate() {
        let label = label(i, c);
        name(src, &label, c)?;
        if let Some(first) = vms.channels[..i]
            .iter()
            .find(|o| o.name.get_ref() == c.name.get_ref())
        {
            let (line, _) = line_column(&vms.text, first.name.span().start);
            return Err(src
                .error(
                    c.name.span(),
                    &format!("{label} name"),
                    format!(
                        "a channel named '{}' is already on line {line}",
                        c.name.get_ref()
                    ),
                )
                .with_help("channel names must differ: guests find their channels by name"));
        }
        for (side, vm) in [("writer", &c.writer), ("reader", &c.reader)] {
            known_name(src, vm, &format!("{label} {side}"), "VM", &vm_names).map_err(
                |e| match e.help {
                    Some(_) => e,
                    None => e.with_help("a channel links two [[vm]]s of the file it is in"),
                },
            )?;
        }
        if c.writer.get_ref() == c.reader.get_ref() {
            return Err(src
                .error(
                    c.reader.span(),
                    &format!("{label} reader"),
                    format!(
                        "vm '{}' is both writer and reader: a VM linked to itself",
                        c.reader.get_ref()
                    ),
                )
                .with_help("a channel goes one way between two VMs; a two-way link is two channels, one each way"));
        }
        size(src, &label, c)?;
    }
    for vm in &vm_names {
        let mut sides = vms
            .channels
            .iter()
            .enumerate()
            .flat_map(|(i, c)| [(i, c, "writer", &c.writer), (i, c, "reader", &c.reader)])
            .filter(|(_, _, _, side)| side.get_ref() == vm);
        if let Some((i, c, side, at)) = sides.nth(abi::CHANNELS_MAX) {
            return Err(src
                .error(
                    at.span(),
                    &format!("{} {side}", label(i, c)),
                    format!(
                        "vm '{vm}' is a side of more than {} channels: this is its {}th",
                        abi::CHANNELS_MAX,
                        abi::CHANNELS_MAX + 1
                    ),
                )
                .with_help(format!(
                    "a VM has at most {} channels (the table in its start info); carry several streams in one channel's pages",
                    abi::CHANNELS_MAX
                )));
        }
    }
    Ok(())
}

fn name(src: Source, label: &str, c: &ChannelSpec) -> Result<(), ProfileError> {
    let fault = super::check::name_fault(
        c.name.get_ref(),
        NAME_MAX,
        super::check::label_byte,
        super::check::LABEL_BYTES,
    );
    let Some(what) = fault else {
        return Ok(());
    };
    Err(src
        .error(
            c.name.span(),
            &format!("{label} name"),
            format!("the channel name {what}"),
        )
        .with_help(format!(
            "guests find a channel by its name: 1 to {NAME_MAX} bytes of A-Z, a-z, 0-9, '_' and '-', e.g. \"telemetry\""
        )))
}

fn size(src: Source, label: &str, c: &ChannelSpec) -> Result<(), ProfileError> {
    let size = c.size.get_ref().0;
    let what = if size == 0 {
        "the channel's size is zero".to_string()
    } else if !size.is_multiple_of(KIB4) {
        format!("{} is not a whole number of 4 KiB pages", format_size(size))
    } else if size > CHANNEL_SIZE_MAX {
        format!(
            "{} is more than a channel's {}",
            format_size(size),
            format_size(CHANNEL_SIZE_MAX)
        )
    } else {
        return Ok(());
    };
    let fit = size.div_ceil(KIB4).clamp(1, CHANNEL_SIZE_MAX / KIB4) * KIB4;
    Err(src
        .error(c.size.span(), &format!("{label} size"), what)
        .with_help(format!(
            "the data pages are mapped in 4 KiB pages, 4 KiB to {}: e.g. size = \"{}\"",
            format_size(CHANNEL_SIZE_MAX),
            format_size(fit).replace(' ', "")
        )))
}

/// Each VM's channel ends, in the order of `vms` (each VM's own in file
/// order), for VMs whose RAM is `rams`. In host RAM the channels follow
/// the hypervisor and every VM, from the next 2 MiB boundary: each its
/// state page, then its data pages. In every guest they are at the same
/// offsets from [`GUEST_CHANNEL_BASE`]. Expects [`check`] to have passed.
pub(super) fn place(
    vms: &VmSource,
    layout: &BoardLayout,
    rams: &[Region],
    gic_version: u32,
) -> Result<Vec<Vec<ChannelEnd<'static>>>, ProfileError> {
    let src = vms.source();
    let (ram, hv) = (&layout.ram, &layout.hypervisor);
    let taken = rams.iter().chain([hv]).map(Region::end).max();
    let start = taken.and_then(|end| end.checked_next_multiple_of(MIB2));
    let index_of = |name: &str| {
        vms.vms
            .iter()
            .position(|v| v.name.get_ref() == name)
            .expect("check() found both sides")
    };

    let mut ends: Vec<Vec<ChannelEnd<'static>>> = vec![Vec::new(); vms.vms.len()];
    let mut offset = 0;
    for (i, c) in vms.channels.iter().enumerate() {
        let label = label(i, c);
        let size = c.size.get_ref().0;
        let span = CHANNEL_STATE_PAGE + size;
        let pages = start
            .and_then(|s| s.checked_add(offset))
            .map(|base| Region { base, size: span })
            .filter(|r| r.base.checked_add(r.size).is_some() && ram.contains(r));
        let Some(pages) = pages else {
            let from = start.unwrap_or(u64::MAX);
            let left = ram.end().saturating_sub(from).saturating_sub(offset);
            return Err(src
                .error(
                    c.size.span(),
                    &format!("{label} size"),
                    format!(
                        "its state page and {} do not fit in RAM ({}): the channels start at {from:#x}, after the hypervisor and the VMs, and {} of RAM is left there for this one",
                        format_size(size),
                        range(ram),
                        format_size(left)
                    ),
                )
                .with_help("make the channels smaller, give the VMs less memory, or move a VM with a base lower in RAM"));
        };
        // Placed after all of them, so this holds; checked all the same,
        // for a guest must never see another VM's RAM or the hypervisor.
        let owners = rams
            .iter()
            .enumerate()
            .map(|(v, r)| (format!("the RAM of vm '{}'", vms.vms[v].name.get_ref()), r))
            .chain([("the hypervisor".to_string(), hv)]);
        for (owner, r) in owners {
            if pages.overlaps(r) {
                return Err(src.error(
                    c.name.span(),
                    &label,
                    format!("its pages {} overlap {owner} ({})", range(&pages), range(r)),
                ));
            }
        }

        let ipa = GUEST_CHANNEL_BASE.saturating_add(offset);
        if ipa.saturating_add(span) > abi::GUEST_RAM_BASE {
            return Err(src
                .error(
                    c.size.span(),
                    &format!("{label} size"),
                    format!(
                        "the channels' guest-physical area {GUEST_CHANNEL_BASE:#x}..{:#x} would run into the VMs' RAM at {:#x}: all channels together, a state page each included, take at most {}",
                        ipa.saturating_add(span),
                        abi::GUEST_RAM_BASE,
                        format_size(abi::GUEST_RAM_BASE - GUEST_CHANNEL_BASE)
                    ),
                )
                .with_help("make the channels smaller, or fewer"));
        }

        let (writer, reader) = (index_of(c.writer.get_ref()), index_of(c.reader.get_ref()));
        for (vm, peer, is_writer) in [(writer, reader, true), (reader, writer, false)] {
            // Clear of the ABI's device windows by the choice of
            // GUEST_CHANNEL_BASE; checked, for the ABI may grow.
            let spec = &vms.vms[vm];
            let windows = guest_windows(vms, vm, gic_version);
            for (what, window) in [
                ("state page", Window::new(ipa, CHANNEL_STATE_PAGE)),
                ("data pages", Window::new(ipa + CHANNEL_STATE_PAGE, size)),
            ] {
                if let Some((name, w)) = windows.iter().find(|(_, w)| w.overlaps(&window)) {
                    return Err(src.error(
                        c.name.span(),
                        &label,
                        format!(
                            "its {what} ({window}) would overlap the {name} ({w}) of vm '{}'",
                            spec.name.get_ref()
                        ),
                    ));
                }
            }
            let mine = &mut ends[vm];
            mine.push(ChannelEnd {
                name: c.name.get_ref().clone().into(),
                writer: is_writer,
                data: Region {
                    base: pages.base + CHANNEL_STATE_PAGE,
                    size,
                },
                data_ipa: ipa + CHANNEL_STATE_PAGE,
                state: pages.base,
                state_ipa: ipa,
                intid: CHANNEL_FIRST_INTID + (mine.len() as u32),
                peer: peer as u32,
            });
        }
        offset += span;
    }
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The area is clear of every device window the ABI gives a VM, on
    /// either GIC with the most vCPUs.
    #[test]
    fn the_channel_area_is_clear_of_the_abi_devices() {
        let area = Window::new(GUEST_CHANNEL_BASE, abi::GUEST_RAM_BASE - GUEST_CHANNEL_BASE);
        let devices = [
            Window::new(abi::GUEST_UART_BASE, abi::GUEST_UART_SIZE),
            Window::new(
                abi::GUEST_VIRTIO_BASE,
                abi::GUEST_VIRTIO_COUNT * abi::GUEST_VIRTIO_SIZE,
            ),
        ];
        for version in [2, 3] {
            let map = crate::window::guest_map(version, 8, 1 << 30);
            let gic = map.iter().skip(1).map(|(_, w)| *w);
            for w in gic.chain(devices) {
                assert!(!area.overlaps(&w), "{area} overlaps {w}");
            }
        }
    }
}
