//! GICv3: the physical distributor, redistributors and system-register CPU
//! interface for the hypervisor's own interrupts (arm-gic), and the
//! ICH_* virtual interface through which guests get theirs.

// Mounted as `composition::gic` (the component table's GIC row).
use crate::board::{intid, irq_priority, KICK_SGI};
use crate::composition as c;
use core::ptr::NonNull;
use safe_mmio::UniqueMmioPointer;
use arm_gic::{
    gicv3::{
        registers::{Gicd, GicrSgi},
        GicCpuInterface, GicV3, SgiTarget, SgiTargetGroup,
    },
    IntId, InterruptGroup,
};

pub struct Gic {
    gic: GicV3<'static>,
}

impl Gic {
    pub fn new() -> Gic {
        // EL2 (and the guests, through ICH) use the system registers.
        GicCpuInterface::enable_system_register_el2(true);
        // SAFETY: the distributor and the redistributors of the board's GIC,
        // identity-mapped as device memory, owned only by this driver; each
        // CPU touches its own redistributor and CPU interface under the
        // hypervisor's lock.
        let gic = unsafe {
            let gicd = UniqueMmioPointer::new(NonNull::new(c::GICD_BASE as *mut Gicd).unwrap());
            let gicr = NonNull::new(c::GICR_BASE as *mut GicrSgi).unwrap();
            GicV3::new(gicd, gicr, c::CPUS as usize)
        };
        let mut gic = Gic {
            gic: gic.expect("the board's GICv3 redistributors answer"),
        };
        gic.gic.setup(0);
        gic.enable_private(0);
        gic
    }

    /// This CPU's redistributor awake, its private interrupts (timers,
    /// maintenance) enabled. Run on every secondary CPU.
    pub fn init_this_cpu(&mut self, cpu: usize) {
        GicCpuInterface::enable_system_register_el2(true);
        self.gic.init_cpu(cpu);
        GicCpuInterface::enable_group1(true);
        self.enable_private(cpu);
    }

    fn enable_private(&mut self, cpu: usize) {
        GicCpuInterface::set_priority_mask(0xff);
        for (irq, what) in [
            (c::HYP_TIMER_IRQ, "hypervisor timer"),
            (c::VIRT_TIMER_IRQ, "guest virtual timer"),
            (c::MAINTENANCE_IRQ, "GIC maintenance"),
            (KICK_SGI, "CPU kick"),
        ] {
            let result = self
                .gic
                .set_interrupt_priority(intid(irq), Some(cpu), irq_priority(irq))
                .and_then(|()| self.gic.enable_interrupt(intid(irq), Some(cpu), true));
            if let Err(e) = result {
                hv::error!("cannot enable the {what} interrupt {irq}: {e:?}");
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

/// The ICH_* registers, for the vGIC.
pub fn virtual_interface() -> vgic_v3::ich::Interface {
    vgic_v3::ich::Interface::probe()
}
