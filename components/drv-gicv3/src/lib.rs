//! GICv3: the physical distributor, redistributors and system-register CPU
//! interface for the hypervisor's own interrupts (through `arm-gic`), and
//! the ICH_* interface through which guests get theirs
//! (`vgic_v3::ich::Interface`).
#![no_std]
// Unsafe only in `Component::at`, which turns the board's addresses into
// register blocks (MMIO; DESIGN.md).
#![deny(unsafe_code)]

use arm_gic::{
    gicv3::{
        registers::{Gicd, GicrSgi},
        GicCpuInterface, GicV3, SgiTarget, SgiTargetGroup,
    },
    IntId, InterruptGroup,
};
use core::ptr::NonNull;
use hv::platform::{GicMap, PrivateIrq};
use safe_mmio::UniqueMmioPointer;
use vgic_v3::ich::Interface;

/// This driver as the component table names it (`drv_gicv3::Component`);
/// see `drv_gicv2::Component` for what every GIC component has.
pub type Component = Gic;

pub struct Gic {
    gic: GicV3<'static>,
    private: &'static [PrivateIrq],
}

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
    /// `map` is the board's GICv3: its distributor and `map.cpus`
    /// redistributors identity-mapped as device memory for as long as the
    /// program runs, used by nothing else. Call once.
    #[allow(unsafe_code)]
    pub unsafe fn at(map: &GicMap, private: &'static [PrivateIrq]) -> (Self, Interface) {
        // EL2 (and the guests, through ICH) use the system registers.
        GicCpuInterface::enable_system_register_el2(true);
        let gicd = NonNull::new(map.distributor as *mut Gicd).expect("a GICD");
        let gicr = NonNull::new(map.redistributor as *mut GicrSgi).expect("a GICR");
        // SAFETY: the caller's promise; each CPU touches its own
        // redistributor and CPU interface under the hypervisor's lock.
        let gic = unsafe { GicV3::new(UniqueMmioPointer::new(gicd), gicr, map.cpus) };
        let mut gic = Gic {
            gic: gic.expect("the board's GICv3 redistributors answer"),
            private,
        };
        gic.gic.setup(0);
        gic.enable_private(0);
        (gic, Interface::probe())
    }

    /// This CPU's redistributor awake, its private interrupts enabled. Run
    /// on every secondary CPU.
    pub fn init_this_cpu(&mut self, cpu: usize) {
        GicCpuInterface::enable_system_register_el2(true);
        self.gic.init_cpu(cpu);
        GicCpuInterface::enable_group1(true);
        self.enable_private(cpu);
    }

    fn enable_private(&mut self, cpu: usize) {
        GicCpuInterface::set_priority_mask(0xff);
        for irq in self.private {
            let result = self
                .gic
                .set_interrupt_priority(intid(irq.intid), Some(cpu), irq.priority)
                .and_then(|()| self.gic.enable_interrupt(intid(irq.intid), Some(cpu), true));
            if let Err(e) = result {
                hv::error!(
                    "cannot enable the {} interrupt {}: {e:?}",
                    irq.what,
                    irq.intid
                );
            }
        }
    }

    /// Interrupts physical CPU `cpu` (Aff0 within cluster 0) with SGI `sgi`.
    pub fn send_sgi(&mut self, cpu: u32, sgi: u32) {
        let target = SgiTarget::List {
            affinity3: 0,
            affinity2: 0,
            affinity1: 0,
            target_list: 1 << cpu,
        };
        if let Err(e) =
            GicCpuInterface::send_sgi(IntId::sgi(sgi), target, SgiTargetGroup::CurrentGroup1)
        {
            hv::error!("cannot kick CPU {cpu}: {e:?}");
        }
    }

    pub fn ack(&mut self) -> Option<u32> {
        GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1).map(u32::from)
    }

    pub fn end(&mut self, intid_raw: u32) {
        GicCpuInterface::end_interrupt(intid(intid_raw), InterruptGroup::Group1);
    }
}
