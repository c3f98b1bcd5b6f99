//! The VM table: written by the composer with postcard, decoded by the
//! hypervisor at boot from its own image section without copying strings.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// One VM as the hypervisor needs it. Addresses are host-physical.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct VmEntry<'a> {
    pub name: &'a str,
    /// The guest crate it runs (for messages).
    pub guest: &'a str,
    /// Host-physical base of the VM's RAM (2 MiB aligned).
    pub ram_base: u64,
    /// Size of the VM's RAM (a multiple of 2 MiB).
    pub ram_size: u64,
    pub vcpus: u32,
    /// The guest runs in AArch32 (32-bit) state.
    pub aarch32: bool,
    /// Index of the VM's guest image in the image's guest table.
    pub image: u32,
    pub cmdline: &'a str,
    /// Relative share of CPU time (credit); 256 by default.
    pub weight: u32,
    /// Most CPU time, in percent of one CPU (credit); 0 = no cap.
    pub cap_percent: u32,
    /// The physical CPU the VM's vCPU is pinned to (static, credit), if any.
    pub cpu: Option<u32>,
}

/// One window of the ARINC 653 major frame.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootWindow {
    /// Index into [`VmTable::vms`] of the VM that owns the CPU.
    pub vm: u32,
    pub length_us: u64,
}

/// All VMs of an image, in the order the profile lists them.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct VmTable<'a> {
    #[serde(borrow)]
    pub vms: Vec<VmEntry<'a>>,
    /// The ARINC 653 major frame, in order; empty for the other schedulers.
    pub windows: Vec<BootWindow>,
}

impl<'a> VmTable<'a> {
    pub fn decode(bytes: &'a [u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    #[cfg(feature = "std")]
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a VM table always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trips_through_postcard() {
        let table = VmTable {
            vms: alloc::vec![
                VmEntry {
                    name: "hello",
                    guest: "hello",
                    ram_base: 0x4100_0000,
                    ram_size: 16 << 20,
                    vcpus: 1,
                    aarch32: false,
                    image: 0,
                    cmdline: "loud",
                    weight: 512,
                    cap_percent: 50,
                    cpu: Some(1),
                },
                VmEntry {
                    name: "spinner",
                    guest: "spinner",
                    ram_base: 0x4200_0000,
                    ram_size: 16 << 20,
                    vcpus: 1,
                    aarch32: true,
                    image: 1,
                    cmdline: "",
                    weight: 256,
                    cap_percent: 0,
                    cpu: None,
                },
            ],
            windows: alloc::vec![
                BootWindow {
                    vm: 0,
                    length_us: 10_000,
                },
                BootWindow {
                    vm: 1,
                    length_us: 5_000,
                },
            ],
        };
        let bytes = table.encode();
        assert_eq!(VmTable::decode(&bytes).unwrap(), table);
        assert!(VmTable::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
