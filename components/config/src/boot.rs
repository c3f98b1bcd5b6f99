//! The VM table: the composition's VMs and windows, written by the image's
//! build script with postcard and decoded once by the hypervisor at boot
//! from its own image section, its strings borrowed from it.

use crate::vm::{TimeWindow, VmConfig};
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// All VMs of an image, in the order the profile lists them.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct VmTable<'a> {
    #[serde(borrow)]
    pub vms: Vec<VmConfig<'a>>,
    /// The ARINC 653 major frame, in order; empty for the other schedulers.
    pub windows: Vec<TimeWindow>,
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
    use crate::vm::{GuestWidth, Region};
    use alloc::borrow::Cow;

    #[test]
    fn table_round_trips_through_postcard() {
        let table = VmTable {
            vms: alloc::vec![
                VmConfig {
                    name: "hello".into(),
                    guest: "hello".into(),
                    cmdline: "loud".into(),
                    vcpus: 1,
                    width: GuestWidth::Aarch64,
                    ram: Region {
                        base: 0x4100_0000,
                        size: 16 << 20,
                    },
                    image: 0,
                    weight: 512,
                    cap_percent: 50,
                    cpu: Some(1),
                    linux: None,
                    devices: alloc::vec::Vec::new(),
                    channels: alloc::vec::Vec::new(),
                },
                VmConfig {
                    name: "spinner".into(),
                    guest: "spinner".into(),
                    cmdline: "".into(),
                    vcpus: 2,
                    width: GuestWidth::Aarch32,
                    ram: Region {
                        base: 0x4200_0000,
                        size: 16 << 20,
                    },
                    image: 1,
                    weight: 256,
                    cap_percent: 0,
                    cpu: None,
                    linux: Some(crate::vm::LinuxBoot {
                        kernel_offset: 0x1_0000,
                        dtb: crate::vm::Blob {
                            image: 2,
                            offset: 0x840_0000,
                        },
                        initrd: Some(crate::vm::Blob {
                            image: 3,
                            offset: 0x800_0000,
                        }),
                    }),
                    devices: alloc::vec![crate::vm::DeviceConfig {
                        kind: "sbsa-uart".into(),
                        base: 0x0900_0000,
                        size: 0x1000,
                        intid: 33,
                        disk: None,
                        net: None,
                    }],
                    channels: alloc::vec![crate::vm::ChannelEnd {
                        name: "telemetry".into(),
                        writer: false,
                        data: Region {
                            base: 0x4400_1000,
                            size: 0x1_0000,
                        },
                        data_ipa: 0x1000_1000,
                        state: 0x4400_0000,
                        state_ipa: 0x1000_0000,
                        intid: 64,
                        peer: 0,
                    }],
                },
            ],
            windows: alloc::vec![
                TimeWindow {
                    vm: 0,
                    length_us: 10_000,
                },
                TimeWindow {
                    vm: 1,
                    length_us: 5_000,
                },
            ],
        };
        let bytes = table.encode();
        let decoded = VmTable::decode(&bytes).unwrap();
        assert_eq!(decoded, table);
        assert!(
            decoded
                .vms
                .iter()
                .all(|vm| matches!(vm.name, Cow::Borrowed(_))),
            "strings are borrowed from the table, not copied"
        );
        assert!(VmTable::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
