//! The ICH_LR<n>_EL2 encoding (IHI 0069 §12.5): pure functions, so the
//! layout is tested on the host. [`crate::ich`] moves the values in
//! and out of the system registers.

use hv::vgic::{ListReg, LrState};

const VINTID: u64 = 0xffff_ffff;
const EOI: u64 = 1 << 41;
const PRIORITY_SHIFT: u32 = 48;
const GROUP1: u64 = 1 << 60;
const STATE_SHIFT: u32 = 62;

/// An ICH_LR<n>_EL2 value for `lr`: a group 1, software-only (HW = 0,
/// pINTID = 0) virtual interrupt; EOI asks for a maintenance interrupt on
/// deactivation. The full 8-bit priority is written; the hardware keeps
/// its top ICH_VTR_EL2.PRIbits + 1 bits.
pub fn encode_lr(lr: &ListReg) -> u64 {
    let state: u64 = match lr.state {
        LrState::Invalid => 0,
        LrState::Pending => 1,
        LrState::Active => 2,
        LrState::PendingActive => 3,
    };
    let eoi = if lr.eoi_maintenance { EOI } else { 0 };
    u64::from(lr.intid)
        | eoi
        | u64::from(lr.priority) << PRIORITY_SHIFT
        | GROUP1
        | state << STATE_SHIFT
}

/// The inverse of [`encode_lr`] (the group and HW bits are not kept;
/// `source` is 0: GICv3 SGIs carry no source).
pub fn decode_lr(value: u64) -> ListReg {
    ListReg {
        intid: (value & VINTID) as u32,
        priority: (value >> PRIORITY_SHIFT) as u8,
        state: match value >> STATE_SHIFT {
            0 => LrState::Invalid,
            1 => LrState::Pending,
            2 => LrState::Active,
            _ => LrState::PendingActive,
        },
        source: 0,
        eoi_maintenance: value & EOI != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr(intid: u32, priority: u8, state: LrState, eoi: bool) -> ListReg {
        ListReg {
            intid,
            priority,
            state,
            source: 0,
            eoi_maintenance: eoi,
        }
    }

    #[test]
    fn encode_lr_places_every_field() {
        let value = encode_lr(&lr(27, 0xa0, LrState::Pending, false));
        assert_eq!(value, 1 << 62 | 1 << 60 | 0xa0 << 48 | 27);
        let value = encode_lr(&lr(40, 0x10, LrState::PendingActive, true));
        assert_eq!(value, 3 << 62 | 1 << 60 | 0x10 << 48 | 1 << 41 | 40);
    }

    #[test]
    fn encode_lr_is_group_1_software_only() {
        let value = encode_lr(&lr(95, 0xff, LrState::Active, false));
        assert_eq!(value >> 60 & 1, 1, "Group");
        assert_eq!(value >> 61 & 1, 0, "HW");
        assert_eq!(value >> 32 & 0x1fff & !(1 << 9), 0, "pINTID apart from EOI");
    }

    #[test]
    fn decode_lr_inverts_encode_lr_for_every_state() {
        for state in [
            LrState::Invalid,
            LrState::Pending,
            LrState::Active,
            LrState::PendingActive,
        ] {
            for eoi in [false, true] {
                let original = lr(1019, 0xf8, state, eoi);
                assert_eq!(decode_lr(encode_lr(&original)), original);
            }
        }
    }

    #[test]
    fn decode_lr_reads_a_hardware_value() {
        // Active, group 1, priority 0xa0, vINTID 30, as the guest left it.
        let decoded = decode_lr(0x90a0_0000_0000_001e);
        assert_eq!(decoded, lr(30, 0xa0, LrState::Active, false));
    }
}
