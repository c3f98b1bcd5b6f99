//! Clearing a VM's RAM: lazily, so that boot does not wait for it.
//!
//! Every byte a guest can read must be zero or written by the hypervisor
//! (its images, its start info) before the guest can reach it: RAM held
//! other VMs', the hypervisor's or the firmware's data before. Rather than
//! clear all of a VM's RAM before any VM runs, the core maps a VM's RAM in
//! stage 2 one 2 MiB block at a time, each only once it is clear:
//!
//! - at first boot, the 64 KiB groups its images and start info are in
//!   (the bytes the images fill are written, not cleared first); the
//!   blocks holding them are mapped a group at a time (4 KiB pages);
//! - when the guest touches a block, or a group of such a block, it has
//!   not yet (a stage-2 translation fault in its RAM), that block or
//!   group, and the guest retries its access;
//! - at a reset, the blocks and groups it had, again (but the images).
//!
//! A VM with devices that reach its RAM (disks, network ports) is cleared
//! all at once before it first runs: they read and write its RAM at
//! addresses the guest names, which need not be mapped yet. The console
//! hypercall checks its buffer's blocks itself.
//!
//! The clearing is `Work::Zero`, in pieces of at most [`PIECE`], done
//! without the lock by a CPU that picked one of the VM's vCPUs: the CPU
//! that will run it.

use super::{exit::Next, vm::VmState, Hypervisor};
use crate::{
    memory::{GuestRam, GuestSlice},
    platform::Platform,
    sched::{CpuId, Scheduler, VcpuId},
    stage2::{self, Stage2},
    trap::Abort,
    vgic::Vgic,
};
use alloc::vec::Vec;

/// How much one `Work::Zero` clears: about 2,800 ticks under icount with
/// `DC ZVA`; a CPU of a shared scheduler goes back to it between pieces.
pub(crate) const PIECE: u64 = 1 << 20;

/// At most this many resets a second start a VM again.
const RESETS_PER_SECOND: u64 = 1000;

/// A block of a VM's RAM: what stage 2 maps at once.
const BLOCK: u64 = stage2::BLOCK_SIZE;

/// A group of the blocks the start writes into: mapped as 16 pages.
const GROUP: u64 = 64 << 10;

/// The groups of a block, one bit each.
type Groups = u32;
const _: () = assert!(BLOCK / GROUP == Groups::BITS as u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    /// Never given to the guest: unmapped, and whatever it held before.
    Untouched,
    /// Being cleared; `mapped` if stage 2 maps it already (a reset: no
    /// vCPU of the VM runs then).
    Clearing { mapped: bool },
    /// Clear (or written since by the guest) and mapped.
    Ready,
    /// Mapped a group at a time: a block the start writes into. `mapped`
    /// are the groups stage 2 maps, `clearing` those being cleared (a
    /// group that is both: a reset, no vCPU of the VM runs).
    Grouped { mapped: Groups, clearing: Groups },
}

/// What is done once every piece handed out is back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    /// Map the blocks cleared; the guest's vCPUs go on.
    Map,
    /// Also write the images and start info and start vCPU 0: at first
    /// boot, or (`reset`) after a reset.
    Start { reset: bool },
}

/// The state of a VM's RAM.
pub(crate) struct RamState {
    blocks: Vec<Block>,
    /// The blocks with pieces to clear (`Clearing`, or `Grouped` with
    /// groups `clearing`), which [`Hypervisor::cleared`] maps: only those,
    /// not every block of a big VM. A block may be listed twice.
    pending: Vec<usize>,
    /// Pieces still to hand out, last first.
    todo: Vec<GuestSlice>,
    /// Pieces handed out and not back yet.
    in_flight: u32,
    then: Option<Then>,
    /// All of it is cleared before the VM first runs.
    eager: bool,
}

impl RamState {
    /// A VM's RAM before it first runs: the blocks its start writes into
    /// (`written`: offset, length) or all (`eager`) are to be cleared, but
    /// for the bytes the images fill (`filled`). Those blocks are mapped in
    /// `stage2` now: no vCPU runs before they are clear. The rest stays
    /// unmapped until the guest touches it.
    pub fn new(
        ram: &GuestRam,
        written: &[(u64, u64)],
        filled: &[(u64, u64)],
        eager: bool,
        stage2: &mut Stage2,
    ) -> Result<RamState, stage2::MapError> {
        let count = ram.size().div_ceil(BLOCK) as usize;
        let mut state = RamState {
            blocks: alloc::vec![Block::Untouched; count],
            pending: Vec::new(),
            todo: Vec::new(),
            in_flight: 0,
            then: Some(Then::Start { reset: false }),
            eager,
        };
        let touches = |start: u64, len: u64| {
            written
                .iter()
                .any(|&(at, size)| at < start + len && start < at + size)
        };
        if eager {
            for block in 0..count {
                let (start, len) = block_range(ram, block);
                map_block(ram, block, stage2)?;
                state.blocks[block] = Block::Clearing { mapped: true };
                state.pending.push(block);
                state.add_gaps(ram, start, len, filled);
            }
            return Ok(state);
        }
        // The blocks the start writes into, from the ranges themselves: a
        // VM of 512 MiB has 256 blocks and its start touches one or two.
        let mut touched: Vec<usize> = written
            .iter()
            .filter(|&&(_, size)| size > 0)
            .flat_map(|&(at, size)| (at / BLOCK) as usize..=((at + size - 1) / BLOCK) as usize)
            .filter(|&block| block < count)
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for block in touched {
            let (start, len) = block_range(ram, block);
            let mut groups = 0;
            for group in 0..len.div_ceil(GROUP) {
                let at = start + group * GROUP;
                let size = GROUP.min(start + len - at);
                if touches(at, size) {
                    map_group(ram, at, stage2)?;
                    groups |= 1 << group;
                    state.add_gaps(ram, at, size, filled);
                }
            }
            state.blocks[block] = Block::Grouped {
                mapped: groups,
                clearing: groups,
            };
            state.pending.push(block);
        }
        Ok(state)
    }

    /// Whether pieces are waiting or out: the RAM is not all the guest's.
    pub fn busy(&self) -> bool {
        self.then.is_some()
    }

    /// Whether the guest-physical range `ipa..ipa + len` is all in blocks
    /// and groups the guest has (an empty range: the group `ipa` is in).
    pub fn ready(&self, ram: &GuestRam, ipa: u64, len: u64) -> bool {
        let Some(start) = ipa.checked_sub(ram.ipa_base) else {
            return false;
        };
        let Some(last) = start.checked_add(len.max(1) - 1) else {
            return false;
        };
        (start / GROUP..=last / GROUP).all(|group| {
            let block = usize::try_from(group * GROUP / BLOCK).unwrap_or(usize::MAX);
            let bit = 1 << (group % Groups::BITS as u64);
            match self.blocks.get(block) {
                Some(Block::Ready) => true,
                Some(Block::Grouped { mapped, clearing }) => mapped & !clearing & bit != 0,
                _ => false,
            }
        })
    }

    /// Queues the pieces of `start..start + len` (RAM offsets) that no
    /// range of `filled` (offset, length) covers. Skipping those is safe:
    /// `Start::place` writes every byte of them once the pieces are done,
    /// before any vCPU of the VM can run again.
    /// One more piece to clear before the VM (re)starts: memory of its
    /// outside its RAM (a channel it writes).
    pub fn add_piece(&mut self, piece: GuestSlice) {
        self.todo.push(piece);
    }

    fn add_gaps(&mut self, ram: &GuestRam, start: u64, len: u64, filled: &[(u64, u64)]) {
        let end = start + len;
        let mut at = start;
        while at < end {
            // The next byte some image fills, at or after `at`.
            let covered = filled
                .iter()
                .filter(|&&(f, size)| f <= at && at < f + size)
                .map(|&(f, size)| f + size)
                .max();
            if let Some(past) = covered {
                at = past.min(end);
                continue;
            }
            let next = filled
                .iter()
                .map(|&(f, _)| f)
                .filter(|&f| f > at)
                .min()
                .unwrap_or(end)
                .min(end)
                .min((at / PIECE + 1) * PIECE);
            self.todo.push(
                ram.slice(ram.ipa_base + at, next - at)
                    .expect("inside the RAM"),
            );
            at = next;
        }
    }
}

/// RAM offset and length of block `block`.
fn block_range(ram: &GuestRam, block: usize) -> (u64, u64) {
    let start = block as u64 * BLOCK;
    (start, BLOCK.min(ram.size() - start))
}

fn map_block(ram: &GuestRam, block: usize, stage2: &mut Stage2) -> Result<(), stage2::MapError> {
    let (start, len) = block_range(ram, block);
    stage2.map_ram(ram.ipa_base + start, ram.pa_base + start, len)
}

/// Maps the group at RAM offset `at` (a whole one: RAM is whole blocks).
fn map_group(ram: &GuestRam, at: u64, stage2: &mut Stage2) -> Result<(), stage2::MapError> {
    stage2.map_ram_pages(ram.ipa_base + at, ram.pa_base + at, GROUP)
}

impl<P: Platform, S: Scheduler, V: Vgic> Hypervisor<P, S, V> {
    /// The next piece of `vcpu`'s VM's RAM to clear, if any is waiting:
    /// handed out, so it must come back through [`Self::after_zero`].
    pub(super) fn clear_piece(&mut self, vcpu: VcpuId) -> Option<GuestSlice> {
        let vm = self.vm_of(vcpu);
        let piece = self.vms[vm].ram_state.todo.pop()?;
        self.vms[vm].ram_state.in_flight += 1;
        Some(piece)
    }

    /// `cpu` cleared the piece of `vcpu`'s VM [`Self::clear_piece`] gave
    /// it; once all are back, the blocks are the guest's (and, at boot or
    /// reset, the images go in and vCPU 0 starts). The vCPU keeps the CPU
    /// for its next piece, or to run, while its slice lasts: so the first
    /// VM to run does not wait for the others' RAM.
    pub fn after_zero(&mut self, cpu: CpuId, vcpu: VcpuId) {
        self.acting = cpu;
        let vm = self.vm_of(vcpu);
        let state = &mut self.vms[vm].ram_state;
        state.in_flight -= 1;
        if state.todo.is_empty() && state.in_flight == 0 {
            self.cleared(vcpu);
        }
        let now = self.platform.counter();
        let slice_over = self.cpus[cpu.0 as usize]
            .slice_end
            .is_some_and(|end| now >= end);
        if slice_over || !self.can_run(vcpu) {
            self.stop_clearing(cpu, vcpu);
        }
    }

    /// What `cpu`, which kept `vcpu` after clearing a piece, does next:
    /// the VM's next piece; `None` to run the vCPU (loaded now); or, while
    /// other CPUs still clear its pieces, something else.
    pub(super) fn go_on_clearing(
        &mut self,
        cpu: CpuId,
        vcpu: VcpuId,
    ) -> Option<super::Work<P::Context>> {
        if let Some(piece) = self.clear_piece(vcpu) {
            return Some(super::Work::Zero(vcpu, piece));
        }
        if self.vms[self.vm_of(vcpu)].ram_state.busy() || self.vcpus[vcpu.0 as usize].blocked {
            self.stop_clearing(cpu, vcpu);
            return Some(self.next_work(cpu));
        }
        self.cpus[cpu.0 as usize].clearing = false;
        self.load(cpu, vcpu);
        self.arm_timer(cpu);
        None
    }

    /// `cpu` gives `vcpu`, which it held to clear RAM, back to the scheduler.
    fn stop_clearing(&mut self, cpu: CpuId, vcpu: VcpuId) {
        self.cpus[cpu.0 as usize].clearing = false;
        // Nothing of the vCPU was loaded to clear RAM.
        self.leave_cpu(cpu, vcpu);
    }

    /// Every piece of `vcpu`'s VM is clear: its blocks become the guest's.
    fn cleared(&mut self, vcpu: VcpuId) {
        let vm = self.vm_of(vcpu);
        let then = self.vms[vm].ram_state.then.take();
        if self.vms[vm].state == VmState::Stopped {
            return;
        }
        let ram = self.vms[vm].ram;
        let v = &mut self.vms[vm];
        let mut unmappable = false;
        let mut pending = core::mem::take(&mut v.ram_state.pending);
        for &block in &pending {
            match v.ram_state.blocks[block] {
                Block::Clearing { mapped } => {
                    unmappable |= !mapped && map_block(&ram, block, &mut v.stage2).is_err();
                    v.ram_state.blocks[block] = Block::Ready;
                }
                Block::Grouped { mapped, clearing } if clearing != 0 => {
                    let (start, _) = block_range(&ram, block);
                    for group in 0..Groups::BITS {
                        if clearing & !mapped & (1 << group) != 0 {
                            let at = start + u64::from(group) * GROUP;
                            unmappable |= map_group(&ram, at, &mut v.stage2).is_err();
                        }
                    }
                    v.ram_state.blocks[block] = Block::Grouped {
                        mapped: mapped | clearing,
                        clearing: 0,
                    };
                }
                _ => {}
            }
        }
        // Kept for the next faults' blocks, allocation and all.
        pending.clear();
        v.ram_state.pending = pending;
        if unmappable {
            self.stop(vcpu, format_args!("its RAM cannot be mapped"));
            return;
        }
        let Some(Then::Start { reset }) = then else {
            return;
        };
        if self.vms[vm].start.place(&ram, &mut self.platform).is_err() {
            self.stop(vcpu, format_args!("its image no longer fits"));
            return;
        }
        if reset {
            let first = VcpuId(self.vms[vm].first_vcpu as u32);
            self.restart_vcpu0(first);
            self.channels_up(vm);
            // Each reset takes the lock for a while; clearing all RAM used
            // to pace a reset loop to about 1,000 a second, now a reset
            // clears only what the guest had: pace it here (its vCPU 0
            // waits as in WFI, for the deadline heap to wake it).
            let now = self.platform.counter();
            let gap = self.platform.counter_frequency() / RESETS_PER_SECOND;
            let start = match self.vms[vm].last_reset {
                Some(last) if now < last + gap => {
                    self.set_blocked(first.0 as usize, true, Some(last + gap));
                    last + gap
                }
                _ => now,
            };
            self.vms[vm].last_reset = Some(start);
        }
    }

    /// At boot, on the boot CPU: each VM whose RAM is cleared as it is
    /// reached has its first groups (around its images and start info,
    /// some 128 KiB) cleared and its images placed now, so that every VM
    /// is ready when the CPUs start. VMs cleared whole first (devices that
    /// reach their RAM) are left to `Work::Zero` on the CPU that runs them.
    pub(super) fn clear_boot_groups(&mut self) {
        for vm in 0..self.vms.len() {
            if !self.vms[vm].ram_state.eager {
                self.clear_now(vm);
            }
        }
    }

    /// Clears what VM `vm` waits for at once, on this CPU, under the lock.
    pub(super) fn clear_now(&mut self, vm: usize) {
        let vcpu = VcpuId(self.vms[vm].first_vcpu as u32);
        while let Some(piece) = self.clear_piece(vcpu) {
            // Cleaned to the point of coherency too.
            crate::memory::GuestMemory::zero_guest(&mut self.platform, piece);
            self.vms[vm].ram_state.in_flight -= 1;
        }
        if self.vms[vm].ram_state.in_flight == 0 {
            self.cleared(vcpu);
        }
    }

    /// A reset: every block the guest had is cleared again (but for what
    /// the images fill, which they fill again), then vCPU 0 starts.
    pub(super) fn clear_for_reset(&mut self, vm: usize) {
        let ram = self.vms[vm].ram;
        let filled = self.vms[vm].start.filled();
        let state = &mut self.vms[vm].ram_state;
        state.todo.clear();
        state.pending.clear();
        for block in 0..state.blocks.len() {
            let (start, len) = block_range(&ram, block);
            let mapped = match state.blocks[block] {
                // Never mapped, never written: it stays as it is until
                // the guest reaches it, and is cleared then.
                Block::Untouched => continue,
                Block::Clearing { mapped } => mapped,
                Block::Ready => true,
                Block::Grouped { mapped, clearing } => {
                    let groups = mapped | clearing;
                    for group in (0..Groups::BITS).filter(|g| groups & (1 << g) != 0) {
                        let at = start + u64::from(group) * GROUP;
                        state.add_gaps(&ram, at, GROUP.min(start + len - at), &filled);
                    }
                    state.blocks[block] = Block::Grouped {
                        mapped,
                        clearing: groups,
                    };
                    state.pending.push(block);
                    continue;
                }
            };
            state.blocks[block] = Block::Clearing { mapped };
            state.pending.push(block);
            state.add_gaps(&ram, start, len, &filled);
        }
        state.then = Some(Then::Start { reset: true });
    }

    /// A stage-2 abort in `vcpu`'s VM's RAM where the guest has no block
    /// yet: that block is queued for clearing (if it is not already) and
    /// the vCPU gives way, to retry the same access once it is mapped.
    /// `None` if the abort is not of that kind.
    pub(super) fn ram_fault(&mut self, vcpu: VcpuId, abort: &Abort) -> Option<Next> {
        let vm = self.vm_of(vcpu);
        let ram = self.vms[vm].ram;
        let offset = abort.ipa.checked_sub(ram.ipa_base)?;
        if offset >= ram.size() || abort.status & 0b11_1100 != 0b00_0100 {
            return None;
        }
        let block = (offset / BLOCK) as usize;
        let state = &mut self.vms[vm].ram_state;
        match state.blocks[block] {
            Block::Untouched => {
                state.blocks[block] = Block::Clearing { mapped: false };
                state.pending.push(block);
                let (start, len) = block_range(&ram, block);
                state.add_gaps(&ram, start, len, &[]);
                state.then.get_or_insert(Then::Map);
            }
            Block::Grouped { mapped, clearing } => {
                let bit = 1 << ((offset % BLOCK) / GROUP);
                if (mapped | clearing) & bit == 0 {
                    // No image byte is in it: those groups are mapped.
                    let at = offset / GROUP * GROUP;
                    state.add_gaps(&ram, at, GROUP, &[]);
                    state.blocks[block] = Block::Grouped {
                        mapped,
                        clearing: clearing | bit,
                    };
                    state.pending.push(block);
                    state.then.get_or_insert(Then::Map);
                }
            }
            // Another vCPU of the VM asked first, or the fault raced with
            // the mapping: retry either way.
            Block::Clearing { .. } | Block::Ready => {}
        }
        Some(Next::Requeue)
    }

    /// Whether the hypervisor may read `ipa..ipa + len` of `vcpu`'s VM's
    /// RAM for the guest: only blocks the guest has, so it never reads a
    /// block not yet cleared (another VM's old data).
    pub(super) fn ram_ready(&self, vcpu: VcpuId, ipa: u64, len: u64) -> bool {
        let vm = &self.vms[self.vm_of(vcpu)];
        vm.ram_state.ready(&vm.ram, ipa, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_vm_at_boot_has_only_the_blocks_its_start_writes_pending_and_mapped() {
        // 512 MiB: 256 blocks; an image at the base, the start info in the
        // last page.
        const SIZE: u64 = 512 << 20;
        let ram = GuestRam::new(0x4000_0000, 0x1_0000_0000, SIZE);
        let filled = [(0, 10_000)];
        let written = [(0, 10_000), (SIZE - 4096, 4096)];
        let mut stage2 = Stage2::new();
        let state = RamState::new(&ram, &written, &filled, false, &mut stage2).unwrap();
        assert_eq!(state.pending, [0, 255]);
        let last_group = 1 << (Groups::BITS - 1);
        for (block, &kind) in state.blocks.iter().enumerate() {
            let expected = match block {
                0 => Block::Grouped {
                    mapped: 1,
                    clearing: 1,
                },
                255 => Block::Grouped {
                    mapped: last_group,
                    clearing: last_group,
                },
                _ => Block::Untouched,
            };
            assert_eq!(kind, expected, "block {block}");
        }
        // Mapped: the two groups, nothing between.
        let pa = |offset: u64| Some(0x1_0000_0000 + offset);
        assert_eq!(stage2.translate(0x4000_0000), pa(0));
        assert_eq!(stage2.translate(0x4000_0000 + GROUP - 1), pa(GROUP - 1));
        assert_eq!(stage2.translate(0x4000_0000 + GROUP), None);
        assert_eq!(stage2.translate(0x4000_0000 + BLOCK), None);
        assert_eq!(stage2.translate(0x4000_0000 + SIZE - GROUP - 1), None);
        assert_eq!(
            stage2.translate(0x4000_0000 + SIZE - GROUP),
            pa(SIZE - GROUP)
        );
        // To clear: the first group but the image, and the last group.
        let cleared: u64 = state.todo.iter().map(|piece| piece.len()).sum();
        assert_eq!(cleared, 2 * GROUP - 10_000);
    }
}
