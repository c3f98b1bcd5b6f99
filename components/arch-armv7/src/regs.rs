//! CP15 registers `aarch32-cpu` 0.4 lacks (or gets wrong), declared on its
//! own register traits so they read and write like the crate's.

use aarch32_cpu::register::{
    SysReg, SysReg64, SysRegRead, SysRegRead64, SysRegWrite, SysRegWrite64,
};

/// A 32-bit CP15 register: `MRC/MCR p15, op1, Rt, CRn, CRm, op2`.
macro_rules! reg32 {
    ($(#[$doc:meta])* $name:ident = ($op1:literal, $crn:literal, $crm:literal, $op2:literal)) => {
        $(#[$doc])*
        pub struct $name;
        impl SysReg for $name {
            const CP: u32 = 15;
            const CRN: u32 = $crn;
            const OP1: u32 = $op1;
            const CRM: u32 = $crm;
            const OP2: u32 = $op2;
        }
        impl SysRegRead for $name {}
        impl SysRegWrite for $name {}
    };
}

/// A 64-bit CP15 register: `MRRC/MCRR p15, op1, Rt, Rt2, CRm`.
macro_rules! reg64 {
    ($(#[$doc:meta])* $name:ident = ($op1:literal, $crm:literal)) => {
        $(#[$doc])*
        pub struct $name;
        impl SysReg64 for $name {
            const CP: u32 = 15;
            const OP1: u32 = $op1;
            const CRM: u32 = $crm;
        }
        impl SysRegRead64 for $name {}
        impl SysRegWrite64 for $name {}
    };
}

reg32!(
    /// HTCR: the HYP translation control (T0SZ, walk attributes).
    Htcr = (4, 2, 0, 2)
);
reg32!(
    /// VTCR: stage-2 translation control.
    Vtcr = (4, 2, 1, 2)
);
reg32!(
    /// TTBCR: the guest's stage-1 translation control.
    Ttbcr = (0, 2, 0, 2)
);
reg32!(
    /// TLBIALLH: invalidate the HYP TLB entries of this CPU (write-only).
    TlbiAllH = (4, 8, 7, 0)
);
reg32!(
    /// TLBIALLNSNHIS: invalidate every non-secure, non-HYP TLB entry (all
    /// VMIDs, stage 1 and 2), inner shareable (write-only).
    TlbiAllNsNhIs = (4, 8, 3, 4)
);
reg32!(
    /// ICIALLUIS: invalidate all instruction caches (and branch predictors)
    /// to PoU, inner shareable (write-only). The crate has only ICIALLU.
    IciAllUIs = (0, 7, 1, 0)
);

reg64!(
    /// HTTBR: base of the HYP translation table.
    Httbr = (4, 2)
);
reg64!(
    /// VTTBR: stage-2 table base and VMID.
    Vttbr = (6, 2)
);
reg64!(
    /// CNTHP_CVAL. The crate's `CnthpCval` encodes op1 = 2, which is
    /// CNTP_CVAL; the HYP timer's compare value is op1 = 6.
    CnthpCval = (6, 14)
);
reg64!(
    /// TTBR0, 64-bit (LPAE) form; the crate has only the 32-bit one.
    Ttbr0 = (0, 2)
);
reg64!(
    /// TTBR1, 64-bit (LPAE) form.
    Ttbr1 = (1, 2)
);
reg64!(
    /// PAR, 64-bit (LPAE) form; the crate has only the 32-bit one.
    Par = (0, 7)
);
