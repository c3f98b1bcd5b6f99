//! VMIDs on several CPUs, against a model of each CPU's TLB.
//!
//! Each CPU caches guest translations tagged with the VMID in its VTTBR and
//! made from the tables of the VM that VTTBR points at. A CPU keeps filling
//! its TLB while it runs a guest, whatever other CPUs do, and may fill it
//! speculatively while idle too, since its VTTBR stays loaded. The machine
//! uses the allocator as `Hypervisor::load` does, and flushes as the
//! platform does: `flush_guest_tlbs` is a broadcast invalidation on both
//! arch crates (TLBI ALLE1IS, TLBIALLNSNHIS).
//!
//! The property: a CPU never runs VM Y under VMID v while its TLB holds an
//! entry tagged v that VM X made; Y would translate through X's memory.
//! (QEMU flushes a CPU's guest TLB whenever its VTTBR changes, so only a
//! model shows this.)

use hv::vmid::{Vmid, VmidAllocator};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// What the rollover flush reaches.
#[derive(Clone, Copy, Debug)]
enum Flush {
    /// Every CPU's TLB, as the arch crates do it.
    Broadcast,
    /// Only the TLB of the CPU that rolled over.
    Local,
}

#[derive(Default)]
struct CpuTlb {
    /// VMID field and the VM whose tables VTTBR points at.
    vttbr: Option<(u16, usize)>,
    /// Running a guest (else idle in the hypervisor, VTTBR left as it was).
    running: bool,
    /// Cached translations: (VMID tag, VM whose tables made them).
    entries: BTreeSet<(u16, usize)>,
}

struct Machine {
    vmids: VmidAllocator,
    flush: Flush,
    /// Each VM's VMID, as `Vm::vmid` holds it.
    held: Vec<Option<Vmid>>,
    cpus: Vec<CpuTlb>,
    rollovers: usize,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    /// `cpu` loads a vCPU of `vm` (a VM may run on several CPUs at once).
    Load { cpu: usize, vm: usize },
    /// `cpu` goes idle.
    Idle { cpu: usize },
    /// `cpu` walks its loaded tables (speculatively, if idle).
    Walk { cpu: usize },
}

impl Machine {
    fn new(cpus: usize, vms: usize, flush: Flush) -> Self {
        Machine {
            vmids: VmidAllocator::new(cpus, 8),
            flush,
            held: vec![None; vms],
            cpus: (0..cpus).map(|_| CpuTlb::default()).collect(),
            rollovers: 0,
        }
    }

    /// One step, then every running guest touches its memory; the first
    /// CPU found running a VM over another VM's entries, if any.
    fn step(&mut self, op: Op) -> Result<(), String> {
        match op {
            Op::Load { cpu, vm } => self.load(cpu, vm),
            Op::Idle { cpu } => self.cpus[cpu].running = false,
            Op::Walk { cpu } => fill(&mut self.cpus[cpu]),
        }
        self.check(op)?;
        for cpu in self.cpus.iter_mut().filter(|c| c.running) {
            fill(cpu);
        }
        Ok(())
    }

    /// What `Hypervisor::load` does with VMIDs and the TLB.
    fn load(&mut self, cpu: usize, vm: usize) {
        let (vmid, flush) = self.vmids.vmid_for(cpu, self.held[vm]);
        if flush {
            self.rollovers += 1;
            match self.flush {
                Flush::Broadcast => self.cpus.iter_mut().for_each(|c| c.entries.clear()),
                Flush::Local => self.cpus[cpu].entries.clear(),
            }
        }
        self.held[vm] = Some(vmid);
        self.cpus[cpu].vttbr = Some((vmid.id, vm));
        self.cpus[cpu].running = true;
    }

    fn check(&self, op: Op) -> Result<(), String> {
        for (index, cpu) in self.cpus.iter().enumerate() {
            let Some((id, vm)) = cpu.vttbr.filter(|_| cpu.running) else {
                continue;
            };
            if let Some(&(_, owner)) = cpu.entries.iter().find(|&&(v, o)| v == id && o != vm) {
                return Err(format!(
                    "after {op:?}: CPU {index} runs VM {vm} under VMID {id} \
                     over VM {owner}'s TLB entries ({} rollovers)",
                    self.rollovers
                ));
            }
        }
        Ok(())
    }
}

/// The CPU's walker caches a translation of the tables it has loaded.
fn fill(cpu: &mut CpuTlb) {
    if let Some(entry) = cpu.vttbr {
        cpu.entries.insert(entry);
    }
}

fn run(cpus: usize, vms: usize, flush: Flush, ops: &[Op]) -> Result<usize, String> {
    let mut machine = Machine::new(cpus, vms, flush);
    for &op in ops {
        machine.step(op)?;
    }
    Ok(machine.rollovers)
}

/// CPU 1 runs VM 0 throughout while CPU 0 runs VMs 1 to `others` once
/// each, then CPU 1 runs each of those in turn.
fn one_cpu_stays_while_others_churn(others: usize) -> Vec<Op> {
    let mut ops = vec![Op::Load { cpu: 1, vm: 0 }];
    ops.extend((1..=others).map(|vm| Op::Load { cpu: 0, vm }));
    ops.extend((1..=others).map(|vm| Op::Load { cpu: 1, vm }));
    ops
}

#[test]
fn a_vm_running_through_a_rollover_shares_its_vmid_with_no_one() {
    // VM 255 is the first of a new generation. Were VM 0's ID (1) handed
    // to it, CPU 1 would run it over VM 0's entries made after the flush.
    let ops = one_cpu_stays_while_others_churn(255);
    assert!(run(2, 256, Flush::Broadcast, &ops).unwrap() >= 1);
    // Many rollovers, all while CPU 1 runs VM 0.
    let ops = one_cpu_stays_while_others_churn(2000);
    let rollovers = run(2, 2001, Flush::Broadcast, &ops).unwrap();
    assert!(rollovers >= 8, "{rollovers}");
}

#[test]
fn an_idle_cpu_keeps_its_vmid_reserved() {
    // CPU 1 ran VM 0, then idles with VM 0's tables still in VTTBR and
    // walks them speculatively while CPU 0 goes through several
    // generations; then it runs each VM, latest first (those hold IDs of
    // the current generation and run with no new ID or flush).
    let mut ops = vec![Op::Load { cpu: 1, vm: 0 }, Op::Idle { cpu: 1 }];
    for vm in 1..=1000 {
        ops.push(Op::Load { cpu: 0, vm });
        ops.push(Op::Walk { cpu: 1 });
    }
    ops.extend((0..=1000).rev().map(|vm| Op::Load { cpu: 1, vm }));
    let rollovers = run(2, 1001, Flush::Broadcast, &ops).unwrap();
    assert!(rollovers >= 4, "{rollovers}");
}

#[test]
fn a_local_flush_at_rollover_would_not_do() {
    // CPU 1 ran VM 1 (ID 2) and moved on to VM 2 (ID 3): VM 1's entries
    // stay in its TLB. CPU 0 runs out of IDs; after the rollover, ID 2 is
    // free again and goes to VM 256, which then runs on CPU 1. Only a
    // flush of CPU 1's TLB too (broadcast) drops VM 1's entries first.
    let mut ops = vec![
        Op::Load { cpu: 0, vm: 0 },
        Op::Load { cpu: 1, vm: 1 },
        Op::Load { cpu: 1, vm: 2 },
    ];
    ops.extend((3..=256).map(|vm| Op::Load { cpu: 0, vm }));
    ops.push(Op::Load { cpu: 1, vm: 256 });
    assert_eq!(run(2, 257, Flush::Broadcast, &ops), Ok(1));
    let err = run(2, 257, Flush::Local, &ops).unwrap_err();
    assert!(
        err.contains("CPU 1 runs VM 256 under VMID 2 over VM 1's"),
        "{err}"
    );
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok());
    ProptestConfig {
        cases: cases.unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const VMS: usize = 300;

/// Random loads, idles and walks on `cpus` CPUs over more VMs than 8-bit
/// VMIDs number, so generations roll over many times.
fn ops(cpus: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        8 => (0..cpus, 0..VMS).prop_map(|(cpu, vm)| Op::Load { cpu, vm }),
        1 => (0..cpus).prop_map(|cpu| Op::Idle { cpu }),
        1 => (0..cpus).prop_map(|cpu| Op::Walk { cpu }),
    ];
    prop::collection::vec(op, 1000..3000)
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn random_loads_never_run_a_vm_over_another_vms_entries(
        (cpus, ops) in (2usize..=4).prop_flat_map(|cpus| (Just(cpus), ops(cpus)))
    ) {
        let rollovers = run(cpus, VMS, Flush::Broadcast, &ops).map_err(TestCaseError::fail)?;
        // Some runs load fewer than 255 distinct VMs; most roll over.
        prop_assert!(ops.len() < 1500 || rollovers > 0);
    }
}
