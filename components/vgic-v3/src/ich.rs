//! The GICv3 virtual CPU interface of this physical CPU, through the EL2
//! system registers (IHI 0069 §12.5, ICH_*_EL2): the list registers, the
//! interface control, and the guest's own CPU interface state saved and
//! restored per vCPU. The list-register encoding is [`crate::lr`]'s (pure,
//! host-tested); this module only moves values. No `unsafe`:
//! `aarch64-cpu`'s register accessors are safe (off AArch64 they panic,
//! so only the image calls them).

use crate::lr::{decode_lr, encode_lr};
use aarch64_cpu::registers::{
    Readable, Writeable, ICH_AP0R0_EL2, ICH_AP0R1_EL2, ICH_AP0R2_EL2, ICH_AP0R3_EL2, ICH_AP1R0_EL2,
    ICH_AP1R1_EL2, ICH_AP1R2_EL2, ICH_AP1R3_EL2, ICH_HCR_EL2, ICH_LR0_EL2, ICH_LR10_EL2,
    ICH_LR11_EL2, ICH_LR12_EL2, ICH_LR13_EL2, ICH_LR14_EL2, ICH_LR15_EL2, ICH_LR1_EL2, ICH_LR2_EL2,
    ICH_LR3_EL2, ICH_LR4_EL2, ICH_LR5_EL2, ICH_LR6_EL2, ICH_LR7_EL2, ICH_LR8_EL2, ICH_LR9_EL2,
    ICH_VMCR_EL2, ICH_VTR_EL2,
};
use hv::vgic::{ListReg, VirtualInterface};

/// Runs `$body` with `$reg` bound to the `$index`th of the listed
/// registers (each is its own type, so this expands once per register);
/// `$default` for an index past the list.
macro_rules! with_register {
    ($index:expr, $default:expr, |$reg:ident| $body:expr, [$($n:literal => $name:ident),* $(,)?]) => {
        match $index {
            $($n => {
                let $reg = $name;
                $body
            })*
            _ => $default,
        }
    };
}

/// Runs `$body` with `$reg` bound to ICH_LR`$index`_EL2.
macro_rules! with_lr {
    ($index:expr, $default:expr, |$reg:ident| $body:expr) => {
        with_register!($index, $default, |$reg| $body, [
            0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2,
            4 => ICH_LR4_EL2, 5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2,
            8 => ICH_LR8_EL2, 9 => ICH_LR9_EL2, 10 => ICH_LR10_EL2, 11 => ICH_LR11_EL2,
            12 => ICH_LR12_EL2, 13 => ICH_LR13_EL2, 14 => ICH_LR14_EL2, 15 => ICH_LR15_EL2,
        ])
    };
}

/// How many list registers the hardware has (ICH_VTR_EL2.ListRegs + 1).
fn lr_count() -> usize {
    ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as usize + 1
}

/// How many of each of ICH_AP0R<n>_EL2 and ICH_AP1R<n>_EL2 exist: one
/// per 32 preemption levels (ICH_VTR_EL2.PREbits + 1 bits: 5 → 1, 6 → 2,
/// 7 → 4). Touching one that does not exist is UNDEFINED.
fn apr_count() -> usize {
    match ICH_VTR_EL2.read(ICH_VTR_EL2::PREbits) {
        0..=4 => 1,
        5 => 2,
        _ => 4,
    }
}

/// List register `i`; one past the 16 the architecture has reads as
/// invalid. `i` must be below [`lr_count`].
fn read_lr(i: usize) -> ListReg {
    decode_lr(with_lr!(i, 0, |reg| reg.get()))
}

/// Writes list register `i` (below [`lr_count`]; past 16 it is ignored).
fn write_lr(i: usize, lr: &ListReg) {
    let value = encode_lr(lr);
    with_lr!(i, (), |reg| reg.set(value));
}

/// ICH_HCR_EL2: the virtual CPU interface on (`En`), and a maintenance
/// interrupt when at most one list register is valid (`UIE`), for
/// interrupts that did not fit. The other controls are left off.
fn set_hcr(enable: bool, underflow_maintenance: bool) {
    ICH_HCR_EL2.write(
        ICH_HCR_EL2::En.val(enable.into()) + ICH_HCR_EL2::UIE.val(underflow_maintenance.into()),
    );
}

/// ICH_VMCR_EL2: the guest's CPU interface control (priority mask, binary
/// points, group enables), saved and restored per vCPU.
fn vmcr() -> u32 {
    ICH_VMCR_EL2.get() as u32
}

fn set_vmcr(value: u32) {
    ICH_VMCR_EL2.set(value.into());
}

/// Runs `$body` with `$reg` bound to ICH_AP`$group`R`$index`_EL2.
macro_rules! with_apr {
    ($group:literal, $index:expr, |$reg:ident| $body:expr) => {
        match $group {
            0 => with_register!($index, (), |$reg| $body, [
                0 => ICH_AP0R0_EL2, 1 => ICH_AP0R1_EL2, 2 => ICH_AP0R2_EL2, 3 => ICH_AP0R3_EL2,
            ]),
            _ => with_register!($index, (), |$reg| $body, [
                0 => ICH_AP1R0_EL2, 1 => ICH_AP1R1_EL2, 2 => ICH_AP1R2_EL2, 3 => ICH_AP1R3_EL2,
            ]),
        }
    };
}

/// The guest's view of its CPU interface that is not in the list
/// registers: saved when its vCPU leaves this CPU, restored when a vCPU
/// comes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuState {
    vmcr: u32,
    /// ICH_AP0R<n>_EL2 (group 0 active priorities); only the first
    /// `apr_count` are used.
    ap0r: [u32; 4],
    /// ICH_AP1R<n>_EL2 (group 1 active priorities).
    ap1r: [u32; 4],
}

/// The ICH_* registers of whichever CPU runs it: one driver for all, its
/// counts read once (they are the same on every CPU).
pub struct Interface {
    lr_count: usize,
    apr_count: usize,
}

impl Interface {
    /// Reads ICH_VTR_EL2 (at EL2, on the CPU).
    pub fn probe() -> Self {
        Interface {
            lr_count: lr_count(),
            apr_count: apr_count(),
        }
    }
}

impl VirtualInterface for Interface {
    type CpuState = CpuState;

    fn lr_count(&self) -> usize {
        self.lr_count
    }

    fn guest_cpu_interface(&self) -> Option<(u64, u64)> {
        None
    }

    fn write_lrs(&mut self, lrs: &[ListReg], underflow: bool) {
        for (i, lr) in lrs.iter().enumerate() {
            write_lr(i, lr);
        }
        set_hcr(true, underflow);
    }

    fn read_lrs(&mut self, lrs: &mut [ListReg]) {
        for (i, lr) in lrs.iter_mut().enumerate() {
            *lr = read_lr(i);
        }
    }

    fn load(&mut self, state: &CpuState) {
        set_vmcr(state.vmcr);
        for i in 0..self.apr_count {
            with_apr!(0, i, |reg| reg.set(state.ap0r[i].into()));
            with_apr!(1, i, |reg| reg.set(state.ap1r[i].into()));
        }
    }

    fn put(&mut self, state: &mut CpuState) {
        state.vmcr = vmcr();
        for i in 0..self.apr_count {
            with_apr!(0, i, |reg| state.ap0r[i] = reg.get() as u32);
            with_apr!(1, i, |reg| state.ap1r[i] = reg.get() as u32);
        }
        set_hcr(false, false);
    }
}
