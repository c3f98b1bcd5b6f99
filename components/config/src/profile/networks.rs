//! `[[network]]`s: virtual Ethernet segments between VMs of the same file.
//! Each VM on a network has one virtio-net port there, in the ABI's
//! virtio-mmio slots after its disks, with a MAC the composer makes; a
//! Linux VM is also told its address on the kernel command line.

use super::check::vm_label;
use super::error::{line_column, ProfileError, Source};
use super::plan::known_name;
use super::spec::{NetworkSpec, VmSource, VmSpec};
use crate::composition::{Network, NetworkPort};
use crate::vm::{DeviceConfig, NetConfig};
use std::fmt;
use std::net::Ipv4Addr;

/// The component that serves a VM's port.
const KIND: &str = "virtio-net";

/// The longest network name (as a channel's).
const NAME_MAX: usize = 15;

/// A port's MAC holds its network's index in one byte.
const NETWORKS_MAX: usize = 256;

/// The first three bytes of every port's MAC: locally administered
/// unicast (0x02), then "TS".
const MAC_PREFIX: [u8; 3] = [0x02, 0x54, 0x53];

/// The i-th VM listed in a network has host address i + FIRST_HOST in its
/// subnet; .1 is left for a gateway.
const FIRST_HOST: u32 = 2;

/// The prefix lengths a subnet may have: /30 and longer hold no two VMs
/// beside a gateway; shorter than /8 is no segment.
const PREFIXES: std::ops::RangeInclusive<u32> = 8..=30;

/// The kernel command-line word that gives a Linux VM one port's address;
/// its `/init` (xtask's initramfs) sets it.
pub const CMDLINE_WORD: &str = "tessera.net";

/// "network[2] (lan)": the file's second `[[network]]` (numbered from 1,
/// as channels), or "network[2]" when the name is empty.
fn label(index: usize, n: &NetworkSpec) -> String {
    match n.name.get_ref().as_str() {
        "" => format!("network[{}]", index + 1),
        name => format!("network[{}] ({name})", index + 1),
    }
}

/// An IPv4 subnet: its first address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Subnet {
    base: Ipv4Addr,
    prefix: u32,
}

impl Subnet {
    /// `a.b.c.d/n`, n in [`PREFIXES`], no host bits set.
    fn parse(text: &str) -> Result<Subnet, String> {
        let not = || format!("'{text}' is not an IPv4 subnet a.b.c.d/n");
        let (addr, prefix) = text.split_once('/').ok_or_else(not)?;
        let base: Ipv4Addr = addr.parse().map_err(|_| not())?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not());
        }
        let prefix: u32 = prefix
            .parse()
            .ok()
            .filter(|p| PREFIXES.contains(p))
            .ok_or_else(|| {
                format!(
                    "the prefix length /{prefix} is outside {}..={}",
                    PREFIXES.start(),
                    PREFIXES.end()
                )
            })?;
        let subnet = Subnet { base, prefix };
        let network = subnet.widened(prefix);
        if network != subnet {
            return Err(format!(
                "{text} has host bits set: the network is {network}"
            ));
        }
        Ok(subnet)
    }

    /// 10.0.`index`.0/24, for a network that gives no subnet.
    fn default_for(index: usize) -> Subnet {
        Subnet {
            base: Ipv4Addr::new(10, 0, index as u8, 0),
            prefix: 24,
        }
    }

    fn mask(self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    /// The subnet of prefix length `prefix` (shorter) holding this one.
    fn widened(self, prefix: u32) -> Subnet {
        let wide = Subnet {
            base: self.base,
            prefix,
        };
        Subnet {
            base: Ipv4Addr::from(u32::from(self.base) & wide.mask()),
            prefix,
        }
    }

    /// How many VMs it has addresses for: all but the network's own
    /// address, the gateway's (.1) and broadcast.
    fn room(self) -> u64 {
        (1u64 << (32 - self.prefix)) - u64::from(FIRST_HOST) - 1
    }

    /// The address of the `position`-th VM listed in the network.
    fn host(self, position: usize) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + FIRST_HOST + position as u32)
    }

    /// That VM's address with the prefix: "10.0.0.2/24".
    fn address(self, position: usize) -> String {
        format!("{}/{}", self.host(position), self.prefix)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// A network as checked: its subnet and its VMs (indices into the file's
/// VMs) in the order it lists them.
pub(super) struct Checked {
    subnet: Subnet,
    vms: Vec<usize>,
}

/// The networks on their own and against the VMs of their file: names,
/// VMs, subnets, and no VM with more devices than the ABI has slots.
pub(super) fn check(vms: &VmSource) -> Result<Vec<Checked>, ProfileError> {
    let src = vms.source();
    let vm_names: Vec<String> = vms.vms.iter().map(|v| v.name.get_ref().clone()).collect();
    let mut checked = Vec::with_capacity(vms.networks.len());
    for (i, n) in vms.networks.iter().enumerate() {
        let label = label(i, n);
        if i == NETWORKS_MAX {
            return Err(src
                .error(
                    n.name.span(),
                    &label,
                    format!("more than {NETWORKS_MAX} networks: a port's MAC holds its network's index in one byte"),
                )
                .with_help("join networks: a VM on one network reaches every other VM on it"));
        }
        name(src, &label, n)?;
        if let Some(first) = vms.networks[..i]
            .iter()
            .find(|o| o.name.get_ref() == n.name.get_ref())
        {
            let (line, _) = line_column(&vms.text, first.name.span().start);
            return Err(src
                .error(
                    n.name.span(),
                    &format!("{label} name"),
                    format!(
                        "a network named '{}' is already on line {line}",
                        n.name.get_ref()
                    ),
                )
                .with_help(
                    "network names must differ: the manifest and the logs name networks by them",
                ));
        }
        let field = format!("{label} vms");
        let mut members: Vec<usize> = Vec::with_capacity(n.vms.get_ref().len());
        for vm in n.vms.get_ref() {
            known_name(src, vm, &field, "VM", &vm_names).map_err(|e| match e.help {
                Some(_) => e,
                None => e.with_help("a network links [[vm]]s of the file it is in"),
            })?;
            let index = vm_names
                .iter()
                .position(|v| v == vm.get_ref())
                .expect("known_name found it");
            if members.contains(&index) {
                return Err(src
                    .error(
                        vm.span(),
                        &field,
                        format!("vm '{}' is listed twice", vm.get_ref()),
                    )
                    .with_help("a VM has one port on a network: list it once"));
            }
            members.push(index);
        }
        if members.len() < 2 {
            return Err(src
                .error(
                    n.vms.span(),
                    &field,
                    format!(
                        "{} VM{} on the network: it links nothing",
                        members.len(),
                        if members.len() == 1 { "" } else { "s" }
                    ),
                )
                .with_help(
                    "list at least two VMs, e.g. vms = [\"a\", \"b\"], or remove the network",
                ));
        }
        let subnet = subnet(src, &label, i, n, members.len())?;
        checked.push(Checked {
            subnet,
            vms: members,
        });
    }
    slots(vms, &checked)?;
    Ok(checked)
}

fn name(src: Source, label: &str, n: &NetworkSpec) -> Result<(), ProfileError> {
    let fault = super::check::name_fault(
        n.name.get_ref(),
        NAME_MAX,
        super::check::label_byte,
        super::check::LABEL_BYTES,
    );
    let Some(what) = fault else {
        return Ok(());
    };
    Err(src
        .error(
            n.name.span(),
            &format!("{label} name"),
            format!("the network name {what}"),
        )
        .with_help(format!(
            "1 to {NAME_MAX} bytes of A-Z, a-z, 0-9, '_' and '-', e.g. \"lan\""
        )))
}

/// The network's subnet, given or the default, with room for its VMs.
fn subnet(
    src: Source,
    label: &str,
    index: usize,
    n: &NetworkSpec,
    members: usize,
) -> Result<Subnet, ProfileError> {
    let Some(given) = &n.subnet else {
        // A /24 has room for 253 VMs: rarely short, but then say so.
        let subnet = Subnet::default_for(index);
        if members as u64 > subnet.room() {
            return Err(src
                .error(
                    n.vms.span(),
                    &format!("{label} vms"),
                    format!(
                        "{members} VMs do not fit the default subnet {subnet}, which has room for {}",
                        subnet.room()
                    ),
                )
                .with_help("give the network a larger subnet, e.g. subnet = \"10.0.0.0/16\""));
        }
        return Ok(subnet);
    };
    let field = format!("{label} subnet");
    let example = format!("e.g. subnet = \"{}\"", Subnet::default_for(index));
    let subnet = Subnet::parse(given.get_ref()).map_err(|why| {
        src.error(given.span(), &field, why).with_help(format!(
            "an IPv4 network address (its host bits zero) and a prefix length of {} to {}, {example}",
            PREFIXES.start(),
            PREFIXES.end()
        ))
    })?;
    if members as u64 > subnet.room() {
        let fits = PREFIXES
            .rev()
            .find(|&prefix| subnet.widened(prefix).room() >= members as u64)
            .unwrap_or(*PREFIXES.start());
        let larger = subnet.widened(fits);
        return Err(src
            .error(
                given.span(),
                &field,
                format!(
                    "{subnet} has room for {} VM{} (from .{FIRST_HOST}; .1 is left for a gateway), and {members} are on the network",
                    subnet.room(),
                    if subnet.room() == 1 { "" } else { "s" }
                ),
            )
            .with_help(format!(
                "a /{fits} has room for {}, e.g. subnet = \"{larger}\"",
                larger.room()
            )));
    }
    Ok(subnet)
}

/// Each VM's disks and ports together fit the ABI's virtio-mmio slots;
/// the error is at the port that does not.
fn slots(vms: &VmSource, checked: &[Checked]) -> Result<(), ProfileError> {
    for (v, vm) in vms.vms.iter().enumerate() {
        let disks = super::disks::count(vm);
        let mut ports = 0;
        for (i, (n, c)) in vms.networks.iter().zip(checked).enumerate() {
            let Some(position) = c.vms.iter().position(|&m| m == v) else {
                continue;
            };
            ports += 1;
            if (disks + ports) as u64 <= abi::GUEST_VIRTIO_COUNT {
                continue;
            }
            let total = vms
                .networks
                .iter()
                .zip(checked)
                .filter(|(_, c)| c.vms.contains(&v))
                .count();
            return Err(vms
                .source()
                .error(
                    n.vms.get_ref()[position].span(),
                    &format!("{} vms", label(i, n)),
                    format!(
                        "{} has {disks} disk{} and is on {total} network{}: {} virtio devices, and a VM has {} virtio-mmio slots (the guest ABI's)",
                        vm_label(v, vm),
                        if disks == 1 { "" } else { "s" },
                        if total == 1 { "" } else { "s" },
                        disks + total,
                        abi::GUEST_VIRTIO_COUNT
                    ),
                )
                .with_help("take the VM off a network, or give it fewer disks"));
        }
    }
    Ok(())
}

/// The networks VM `vm` is on, in file order: (network index, the VM's
/// position in that network's list). The k-th is its port k.
fn ports_of(vms: &VmSource, vm: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    let name = vms.vms[vm].name.get_ref();
    vms.networks.iter().enumerate().filter_map(move |(i, n)| {
        let position = n.vms.get_ref().iter().position(|v| v.get_ref() == name)?;
        Some((i, position))
    })
}

/// The MAC of VM `vm`'s port on network `network`: locally administered
/// unicast, "TS", the network's index, the VM's index (big-endian), so
/// unique per (network, VM).
fn mac(network: usize, vm: usize) -> [u8; 6] {
    let [.., high, low] = (vm as u16).to_be_bytes();
    let [a, b, c] = MAC_PREFIX;
    [a, b, c, network as u8, high, low]
}

/// VM `vm`'s virtio-net devices, one per network it is on, in file order,
/// in the virtio-mmio slots from `first_slot` (after its disks).
pub(super) fn devices(
    vms: &VmSource,
    vm: usize,
    first_slot: u32,
) -> impl Iterator<Item = DeviceConfig<'static>> + '_ {
    ports_of(vms, vm)
        .zip(first_slot..)
        .map(move |((network, _), n)| DeviceConfig {
            kind: KIND.into(),
            base: abi::GUEST_VIRTIO_BASE + u64::from(n) * abi::GUEST_VIRTIO_SIZE,
            size: abi::GUEST_VIRTIO_SIZE,
            intid: abi::GUEST_VIRTIO_INTID + n,
            disk: None,
            net: Some(NetConfig {
                network: network as u32,
                mac: mac(network, vm),
            }),
        })
}

/// A VM told its addresses: Linux, through its `/init`. A Tessera guest
/// has a port but is told nothing (it may be anyone's).
fn told(vm: &VmSpec) -> bool {
    vm.guest.is_none()
}

/// The kernel command-line words that give Linux VM `vm` its addresses:
/// `tessera.net=eth<k>,<address>/<prefix>` for its port k (Linux names
/// virtio-net devices in probe order, the device tree's slot order).
pub(super) fn cmdline_words(vms: &VmSource, checked: &[Checked], vm: usize) -> Vec<String> {
    ports_of(vms, vm)
        .enumerate()
        .map(|(k, (network, position))| {
            format!(
                "{CMDLINE_WORD}=eth{k},{}",
                checked[network].subnet.address(position)
            )
        })
        .collect()
}

/// The networks as the composition lists them, for the manifest.
pub(super) fn composed(vms: &VmSource, checked: &[Checked]) -> Vec<Network> {
    vms.networks
        .iter()
        .zip(checked)
        .map(|(n, c)| Network {
            name: n.name.get_ref().clone(),
            subnet: c.subnet.to_string(),
            ports: c
                .vms
                .iter()
                .enumerate()
                .map(|(position, &vm)| NetworkPort {
                    vm: vm as u32,
                    address: told(&vms.vms[vm]).then(|| c.subnet.address(position)),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_network_addresses_with_a_prefix_of_8_to_30() {
        let s = Subnet::parse("192.168.4.0/22").unwrap();
        assert_eq!(s.to_string(), "192.168.4.0/22");
        assert_eq!(s.room(), 1021);
        assert_eq!(s.address(0), "192.168.4.2/22");
        assert_eq!(s.address(300), "192.168.5.46/22");
        for (text, why) in [
            ("10.0.0.0", "is not an IPv4 subnet"),
            ("10.0.0/24", "is not an IPv4 subnet"),
            ("10.0.0.0/", "is not an IPv4 subnet"),
            ("10.0.0.0/+8", "is not an IPv4 subnet"),
            ("10.0.0.256/24", "is not an IPv4 subnet"),
            ("10.0.0.0/7", "/7 is outside 8..=30"),
            ("10.0.0.0/31", "/31 is outside 8..=30"),
            ("10.0.0.0/99999999999", "outside 8..=30"),
            ("10.0.0.1/24", "host bits set: the network is 10.0.0.0/24"),
        ] {
            let err = Subnet::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert_eq!(Subnet::parse("10.0.0.0/30").unwrap().room(), 1);
        assert_eq!(Subnet::default_for(7).to_string(), "10.0.7.0/24");
    }

    #[test]
    fn macs_are_local_unicast_and_name_network_and_vm() {
        assert_eq!(mac(3, 0x0102), [0x02, 0x54, 0x53, 3, 1, 2]);
        let first = mac(0, 0)[0];
        assert_eq!(first & 1, 0, "unicast");
        assert_eq!(first & 2, 2, "locally administered");
    }
}
