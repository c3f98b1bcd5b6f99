//! Emulated devices: each owns a window of a VM's guest-physical space
//! that stage 2 leaves unmapped, so every access traps and the core hands
//! it to the owner, one load or store at a time. A VM's device table says
//! who owns what; the virtual GIC's frames are its first entries.

use crate::disk::{BlockDevice, Served};
use crate::memory::{GuestMemory, GuestRam};
use alloc::{boxed::Box, string::String, vec::Vec};
pub use config::window::{first_overlap, Window};

/// What a device component is made from (`Component::new(setup)`).
pub struct Setup {
    /// Its VM's name and index in the core (as `log::write_guest_line`
    /// counts).
    pub vm_name: &'static str,
    pub vm_index: usize,
    /// Its interrupt, an SPI of the VM's virtual GIC.
    pub intid: u32,
    /// A disk device's volume, resolved at boot on the hypervisor's disk.
    pub volume: Option<Served>,
    /// A network device's MAC address (the composer assigns it).
    pub mac: Option<[u8; 6]>,
}

/// What a device's [`MmioDevice::work`] may reach, lent by the core for
/// the length of the call: the VM's RAM, the hypervisor's disk, and the
/// switch of the network a network device is on.
pub struct Backing<'a> {
    pub ram: &'a GuestRam,
    pub memory: &'a mut dyn GuestMemory,
    pub disk: Option<&'a mut dyn BlockDevice>,
    pub frames: Option<&'a mut dyn FrameSink>,
}

/// Where a network device puts the frames its guest sends: the core's
/// switch, which delivers them (with [`MmioDevice::receive`]) once the
/// sender's `work` has returned.
pub trait FrameSink {
    /// Takes one Ethernet frame (destination MAC first, no FCS); `false`
    /// if it has no room now: the device leaves that buffer (and those
    /// after it) for later and asks for work again (`Signal::work`), and
    /// the core calls it once it has delivered what it holds.
    fn send(&mut self, frame: &[u8]) -> bool;
}

/// Largest Ethernet frame a network device sends or takes: 1514 bytes
/// (MTU 1500 and the header) with no VLAN tag and no offloads.
pub const MAX_FRAME: usize = 1514;

/// A device that cannot be made, and why ("no volume").
pub type SetupError = String;

/// A device a VM reaches through trapped loads and stores. Everything it
/// is given comes from the guest: offsets and widths are checked by the
/// core (inside its window; 1, 2, 4 or 8 bytes), values are not.
pub trait MmioDevice: Send {
    /// A `width`-byte read at `offset` into its window by vCPU `vcpu` of
    /// its VM. Unknown registers read as zero.
    fn read(&mut self, vcpu: usize, offset: u64, width: u8) -> u64;

    /// A `width`-byte write of `value`.
    fn write(&mut self, vcpu: usize, offset: u64, width: u8, value: u64) -> Signal;

    /// The interrupt (an SPI of the VM's virtual GIC) the device raises
    /// when an access returns [`Signal::raise`], or whose line it drives.
    fn irq(&self) -> Option<u32> {
        None
    }

    /// A level-triggered device's interrupt line now: the core applies it
    /// after each read, which may lower it (as draining a receive FIFO
    /// does). Writes say it in their [`Signal`]; `None` leaves the line as
    /// it was.
    fn level(&self) -> Option<bool> {
        None
    }

    /// Whether it takes console input (a UART).
    fn takes_input(&self) -> bool {
        false
    }

    /// Console input for it: how many bytes it took (the rest are
    /// dropped) and what that asks of the core; `None` if it takes none.
    fn input(&mut self, _bytes: &[u8]) -> Option<(usize, Signal)> {
        None
    }

    /// The work an access asked for with [`Signal::work`] (a virtqueue
    /// notified): what it needs outside its registers is in `backing`.
    fn work(&mut self, _backing: Backing<'_>) -> Signal {
        Signal::default()
    }

    /// Whether `work` or `receive` read or write guest RAM: then the VM's
    /// RAM is all cleared before it first runs, rather than block by block
    /// as the guest touches it (the device may name blocks the guest has
    /// not). Yes unless the device says no.
    fn reaches_ram(&self) -> bool {
        true
    }

    /// A network device's MAC address; `None` for other devices.
    fn mac(&self) -> Option<[u8; 6]> {
        None
    }

    /// A frame the switch delivers to this network device (at most
    /// [`MAX_FRAME`] bytes): put into the guest's next receive buffer, if
    /// it has one (else dropped, counted). `backing.frames` is `None`.
    fn receive(&mut self, _frame: &[u8], _backing: Backing<'_>) -> Signal {
        Signal::default()
    }
    /// Back to its state at power-on, as its VM stops or resets: nothing
    /// the guest set up before (a virtqueue's rings) may be used after.
    fn reset(&mut self) {}
}

/// What an access asks of the core besides its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Signal {
    /// Make the device's interrupt pending (an edge).
    pub raise: bool,
    /// A level-triggered device's interrupt line after the access: high
    /// keeps the interrupt pending until the guest makes the device lower
    /// it; `None` leaves the line as it was.
    pub level: Option<bool>,
    /// The access ended a line of the VM's console output (a UART's
    /// newline): the core notes the first guest line's time.
    pub console_line: bool,
    /// Call [`MmioDevice::work`] before the vCPU goes on: in the trap
    /// for a network device, else on the same CPU without the
    /// hypervisor's lock (`hv::core::DeviceJob`).
    pub work: bool,
}

/// Who answers an access in a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The VM's virtual GIC (distributor, redistributors).
    Vgic,
    /// Entry `n` of the VM's devices.
    Device(usize),
}

/// A VM's emulated windows and the devices behind them.
#[derive(Default)]
pub struct DeviceTable {
    windows: Vec<(Window, Owner)>,
    devices: Vec<Slot>,
}

/// One device, and what the core asks of it while a CPU has it out
/// ([`DeviceTable::take`]), read once when it was made.
struct Slot {
    /// `None` while a CPU serves its work without the hypervisor's lock.
    device: Option<Box<dyn MmioDevice>>,
    irq: Option<u32>,
    mac: Option<[u8; 6]>,
    takes_input: bool,
    /// Its VM stopped or reset while it was out: reset it when it is back.
    reset_when_back: bool,
}

impl DeviceTable {
    /// The table for a VM whose virtual GIC emulates `vgic` and which has
    /// `devices`; `reserved` (its RAM, mapped frames) no window may touch.
    /// On an overlap, the two windows that clash.
    pub fn new(
        vgic: &[Window],
        devices: Vec<(Window, Box<dyn MmioDevice>)>,
        reserved: &[Window],
    ) -> Result<Self, (Window, Window)> {
        let mut windows: Vec<(Window, Owner)> = vgic.iter().map(|&w| (w, Owner::Vgic)).collect();
        let mut slots = Vec::with_capacity(devices.len());
        for (index, (window, device)) in devices.into_iter().enumerate() {
            windows.push((window, Owner::Device(index)));
            slots.push(Slot {
                irq: device.irq(),
                mac: device.mac(),
                takes_input: device.takes_input(),
                device: Some(device),
                reset_when_back: false,
            });
        }
        let all: Vec<Window> = reserved
            .iter()
            .copied()
            .chain(windows.iter().map(|(w, _)| *w))
            .collect();
        if let Some((a, b)) = first_overlap(&all) {
            return Err((all[a], all[b]));
        }
        Ok(DeviceTable {
            windows,
            devices: slots,
        })
    }

    /// The owner of `ipa` and the window it is in.
    pub fn find(&self, ipa: u64) -> Option<(Owner, Window)> {
        self.windows
            .iter()
            .find(|(w, _)| w.contains(ipa))
            .map(|&(w, owner)| (owner, w))
    }

    /// Device `index`, unless a CPU has it out.
    pub fn device(&mut self, index: usize) -> Option<&mut dyn MmioDevice> {
        match &mut self.devices[index].device {
            Some(device) => Some(&mut **device),
            None => None,
        }
    }

    /// Takes device `index` out for a CPU to serve its work without the
    /// hypervisor's lock; `None` if it is out already.
    pub fn take(&mut self, index: usize) -> Option<Box<dyn MmioDevice>> {
        self.devices[index].device.take()
    }

    /// Puts back a device [`take`](Self::take) took out. True if its VM
    /// stopped or reset meanwhile: the device is back at power-on, and
    /// what its work asked (an interrupt) is for a guest that is gone.
    pub fn put_back(&mut self, index: usize, mut device: Box<dyn MmioDevice>) -> bool {
        let slot = &mut self.devices[index];
        debug_assert!(slot.device.is_none(), "a device is out once");
        let reset = core::mem::take(&mut slot.reset_when_back);
        if reset {
            device.reset();
        }
        slot.device = Some(device);
        reset
    }

    /// Device `index`'s interrupt ([`MmioDevice::irq`]).
    pub fn irq(&self, index: usize) -> Option<u32> {
        self.devices[index].irq
    }

    /// Device `index`'s MAC address ([`MmioDevice::mac`]).
    pub fn mac(&self, index: usize) -> Option<[u8; 6]> {
        self.devices[index].mac
    }

    /// The first device that takes console input.
    pub fn input_device(&self) -> Option<usize> {
        self.devices.iter().position(|d| d.takes_input)
    }

    /// Every device back to its power-on state ([`MmioDevice::reset`]);
    /// one that is out, when it is back.
    pub fn reset_all(&mut self) {
        for slot in &mut self.devices {
            match &mut slot.device {
                Some(device) => device.reset(),
                None => slot.reset_when_back = true,
            }
        }
    }

    /// How many devices there are (the vGIC's frames aside).
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl MmioDevice for Nothing {
        fn read(&mut self, _: usize, _: u64, _: u8) -> u64 {
            0
        }
        fn write(&mut self, _: usize, _: u64, _: u8, _: u64) -> Signal {
            Signal::default()
        }
    }

    #[test]
    fn the_table_finds_owners_and_refuses_overlaps() {
        let gicd = Window::new(0x0800_0000, 0x1_0000);
        let ram = Window::new(0x4000_0000, 0x100_0000);
        let uart = Window::new(0x0900_0000, 0x1000);
        let table = DeviceTable::new(&[gicd], alloc::vec![(uart, Box::new(Nothing) as _)], &[ram])
            .expect("disjoint");
        assert_eq!(table.find(0x0800_fffc), Some((Owner::Vgic, gicd)));
        assert_eq!(table.find(0x0900_0000), Some((Owner::Device(0), uart)));
        assert_eq!(table.find(0x0900_1000), None);
        assert_eq!(table.find(0x4000_0000), None, "RAM is mapped, not emulated");
        let into_ram = Window::new(0x40ff_f000, 0x2000);
        assert_eq!(
            DeviceTable::new(
                &[gicd],
                alloc::vec![(into_ram, Box::new(Nothing) as _)],
                &[ram]
            )
            .err(),
            Some((ram, into_ram))
        );
        let on_gicd = Window::new(0x0800_8000, 0x1000);
        assert_eq!(
            DeviceTable::new(
                &[gicd],
                alloc::vec![(on_gicd, Box::new(Nothing) as _)],
                &[ram]
            )
            .err(),
            Some((gicd, on_gicd))
        );
    }
}
