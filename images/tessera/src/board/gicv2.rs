//! GICv2 (GIC-400): the physical distributor and CPU interface for the
//! hypervisor's own interrupts (arm-gic), and the virtual interface
//! control block (GICH) through which guests get theirs.

// Mounted as `composition::gic` (the component table's GIC row).
use crate::board::{intid, irq_priority, KICK_SGI};
use crate::composition as c;
use core::ptr::NonNull;
use safe_mmio::UniqueMmioPointer;
use arm_gic::{
    gicv2::{
        registers::{Gicc, Gicd},
        GicV2, SgiTarget, SgiTargetListFilter,
    },
    IntId, InterruptGroup,
};

pub struct Gic {
    gic: GicV2<'static>,
    group: InterruptGroup,
    /// The interrupt being handled, as the CPU interface gave it.
    acked: Option<IntId>,
}

/// GICC_IAR: the INTID; above it, an SGI's source CPU.
const INTID_MASK: u32 = 0x3ff;

impl Gic {
    pub fn new() -> Gic {
        // SAFETY: the distributor and CPU interface of the board's GIC,
        // identity-mapped as device memory, owned only by this driver.
        // The CPU interface and the private interrupts' distributor
        // registers are banked: each CPU reaches its own through the
        // same addresses, under the hypervisor's lock.
        let gic = unsafe { GicV2::new(c::GICD_BASE as *mut Gicd, c::GICC_BASE as *mut Gicc) };
        let mut gic = Gic {
            gic,
            group: InterruptGroup::Group0,
            acked: None,
        };
        gic.init_this_cpu(0);
        gic
    }

    /// This CPU's interface on, its private interrupts (timers,
    /// maintenance) enabled. Run on every CPU.
    pub fn init_this_cpu(&mut self, _cpu: usize) {
        let gic = &mut self.gic;
        gic.setup();
        for (irq, what) in [
            (c::HYP_TIMER_IRQ, "hypervisor timer"),
            (c::VIRT_TIMER_IRQ, "guest virtual timer"),
            (c::MAINTENANCE_IRQ, "GIC maintenance"),
            (KICK_SGI, "CPU kick"),
        ] {
            gic.set_interrupt_priority(intid(irq), irq_priority(irq));
            if let Err(e) = gic.enable_interrupt(intid(irq), true) {
                hv::error!("cannot enable the {what} interrupt {irq}: {e:?}");
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

/// The GICH block and GICV frames, for the vGIC.
pub fn virtual_interface() -> vgic_v2::hw::Interface<'static> {
    // SAFETY: the GIC's virtual interface control block, identity-mapped
    // as device memory, owned only by this driver (banked per CPU).
    let gich = unsafe {
        UniqueMmioPointer::new(
            NonNull::new(c::GICH_BASE as *mut vgic_v2::hw::GichRegisters).unwrap(),
        )
    };
    vgic_v2::hw::Interface::new(gich, c::GICV_BASE)
}
