//! GICv2 (GIC-400): the physical distributor and CPU interface for the
//! hypervisor's own interrupts (through `arm-gic`), and the GICH block and
//! GICV frames through which guests get theirs (`vgic_v2::hw::Interface`).
#![no_std]
// Unsafe only in `Component::at`, which turns the board's addresses into
// register blocks (MMIO; DESIGN.md).
#![deny(unsafe_code)]

use arm_gic::{
    gicv2::{
        registers::{Gicc, Gicd},
        GicV2, SgiTarget, SgiTargetListFilter,
    },
    IntId, InterruptGroup,
};
use core::ptr::NonNull;
use hv::platform::{GicMap, PrivateIrq};
use safe_mmio::UniqueMmioPointer;
use vgic_v2::hw::{GichRegisters, Interface};

/// This driver as the component table names it (`drv_gicv2::Component`).
/// Every GIC component has `at`, `init_this_cpu`, `send_sgi`, `ack` and
/// `end` as here.
pub type Component = Gic;

pub struct Gic {
    gic: GicV2<'static>,
    group: InterruptGroup,
    /// The interrupt being handled, as the CPU interface gave it.
    acked: Option<IntId>,
    private: &'static [PrivateIrq],
}

/// GICC_IAR: the INTID; above it, an SGI's source CPU.
const INTID_MASK: u32 = 0x3ff;

/// arm-gic's interrupt ID for a raw INTID (the crate has no conversion).
fn intid(raw: u32) -> IntId {
    match raw {
        0..16 => IntId::sgi(raw),
        16..32 => IntId::ppi(raw - 16),
        _ => IntId::spi(raw - 32),
    }
}

impl Gic {
    /// The GIC at `map`, set up on this (the boot) CPU with `private`
    /// enabled, and the virtual interface for the vGIC.
    ///
    /// # Safety
    ///
    /// `map` is the board's GICv2: its distributor, CPU interface and GICH
    /// identity-mapped as device memory for as long as the program runs,
    /// used by nothing else. Call once.
    #[allow(unsafe_code)]
    pub unsafe fn at(map: &GicMap, private: &'static [PrivateIrq]) -> (Self, Interface<'static>) {
        // SAFETY: the caller's promise. The CPU interface and the private
        // interrupts' distributor registers are banked: each CPU reaches
        // its own through the same addresses, under the hypervisor's lock.
        let gic =
            unsafe { GicV2::new(map.distributor as *mut Gicd, map.cpu_interface as *mut Gicc) };
        let gich = NonNull::new(map.hyp_interface as *mut GichRegisters).expect("a GICH");
        // SAFETY: the caller's promise (GICH is banked per CPU as well).
        let gich = unsafe { UniqueMmioPointer::new(gich) };
        let mut gic = Gic {
            gic,
            group: InterruptGroup::Group0,
            acked: None,
            private,
        };
        gic.init_this_cpu(0);
        (gic, Interface::new(gich, map.virtual_cpu_interface))
    }

    /// This CPU's interface on, its private interrupts enabled. Run on
    /// every CPU.
    pub fn init_this_cpu(&mut self, _cpu: usize) {
        let gic = &mut self.gic;
        gic.setup();
        for irq in self.private {
            gic.set_interrupt_priority(intid(irq.intid), irq.priority);
            if let Err(e) = gic.enable_interrupt(intid(irq.intid), true) {
                hv::error!(
                    "cannot enable the {} interrupt {}: {e:?}",
                    irq.what,
                    irq.intid
                );
            }
        }
        self.group = if gic.typer().has_security_extension() {
            InterruptGroup::Group1
        } else {
            InterruptGroup::Group0
        };
    }

    /// Interrupts physical CPU `cpu` with SGI `sgi`.
    pub fn send_sgi(&mut self, cpu: u32, sgi: u32) {
        let target = SgiTarget::List {
            target_list_filter: SgiTargetListFilter::CPUTargetList,
            target_list: 1 << cpu,
        };
        self.gic.send_sgi(IntId::sgi(sgi), target);
    }

    /// The INTID of the interrupt taken. For an SGI the interface also
    /// reports the sending CPU; that full value goes back in `end`.
    pub fn ack(&mut self) -> Option<u32> {
        let iar = self.gic.get_and_acknowledge_interrupt(self.group)?;
        self.acked = Some(iar);
        Some(u32::from(iar) & INTID_MASK)
    }

    pub fn end(&mut self, intid: u32) {
        match self.acked.take() {
            Some(iar) if u32::from(iar) & INTID_MASK == intid => {
                self.gic.end_interrupt(iar, self.group)
            }
            _ => hv::error!("end of interrupt {intid}, which was not the one taken"),
        }
    }
}
