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
    /// Index of the VM's guest image in the image's guest table.
    pub image: u32,
    pub cmdline: &'a str,
}

/// All VMs of an image, in the order the profile lists them.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct VmTable<'a> {
    #[serde(borrow)]
    pub vms: Vec<VmEntry<'a>>,
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
            vms: alloc::vec![VmEntry {
                name: "hello",
                guest: "hello",
                ram_base: 0x4100_0000,
                ram_size: 16 << 20,
                vcpus: 1,
                image: 0,
                cmdline: "loud",
            }],
        };
        let bytes = table.encode();
        assert_eq!(VmTable::decode(&bytes).unwrap(), table);
        assert!(VmTable::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
