//! The stage-1 identity map both arch modules use, as plain data: LPAE
//! long-descriptor level-1 blocks of 1 GiB, which are the AArch64 VMSA
//! format for a 4 KiB granule too. Only the table's length and alignment
//! and the registers that point at it differ per arch.

/// MAIR index of Device-nGnRnE (Strongly-ordered on ARMv7).
pub const ATTR_DEVICE: u64 = 0;
/// MAIR index of Normal, inner and outer write-back, read/write-allocate.
pub const ATTR_NORMAL: u64 = 1;

/// The MAIR attribute bytes (`MAIR_EL1`; `MAIR0` on ARMv7, `MAIR1` is 0):
/// Attr0 Device-nGnRnE (0x00), Attr1 Normal, inner and outer write-back
/// non-transient, read/write-allocate (0xff).
pub const MAIR_ATTRS: u64 = 0xff << (8 * ATTR_NORMAL) | 0x00 << (8 * ATTR_DEVICE);

/// Level-1 block descriptor bits (1 GiB blocks).
const DESC_BLOCK: u64 = 0b01;
const fn desc_attr_index(index: u64) -> u64 {
    index << 2
}
const DESC_INNER_SHAREABLE: u64 = 0b11 << 8;
const DESC_ACCESS_FLAG: u64 = 1 << 10;
const GIB: u64 = 1 << 30;

/// The entries of an `N`-entry level-1 identity map: [0, 1 GiB) Device
/// (devices the hypervisor may give or emulate, the GIC among them),
/// [1 GiB, 4 GiB) Normal write-back inner-shareable (guest RAM, and
/// whatever the prober probes), the rest invalid. Read/write and executable
/// everywhere at EL1/PL1: stage 2 is the guard, and a probe must reach it
/// rather than fault in stage 1. The access flag is preset (and hardware
/// access-flag updates are off), so the walker never writes the table and
/// it can live in `.rodata`.
pub const fn identity_map<const N: usize>() -> [u64; N] {
    assert!(N >= 4);
    let mut table = [0u64; N];
    table[0] = DESC_BLOCK | desc_attr_index(ATTR_DEVICE) | DESC_ACCESS_FLAG;
    let mut gib = 1;
    while gib < 4 {
        table[gib] = (gib as u64 * GIB)
            | DESC_BLOCK
            | desc_attr_index(ATTR_NORMAL)
            | DESC_INNER_SHAREABLE
            | DESC_ACCESS_FLAG;
        gib += 1;
    }
    table
}
