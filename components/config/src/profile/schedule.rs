//! Checks that tie the VMs to the scheduler the profile composes: credit's
//! weights and caps, pinning, static's one vCPU per CPU, and the ARINC 653
//! major frame. They run against the VMs being planned (the board's, or a
//! scenario's that replace them), so [`super::plan`] calls them.

use super::check::vm_label;
use super::error::{did_you_mean, ProfileError};
use super::{Profile, VmSource};
use crate::components::{self, schedulers_taking, Kind, Takes};
use crate::vm::TimeWindow;

/// Whether the scheduler called `name` takes `knob` (an unknown name, which
/// validation reports on its own, takes nothing).
fn takes(name: &str, knob: Takes) -> bool {
    components::find(Kind::Scheduler, name).is_some_and(|row| row.takes(knob))
}

/// `scheduler = "credit"`, or `scheduler = "credit" or "static"`: what to
/// write under [compose] for `knob`.
fn write_scheduler_for(knob: Takes) -> String {
    let names: Vec<String> = components::of(Kind::Scheduler)
        .filter(|row| row.takes(knob))
        .map(|row| format!("\"{}\"", row.name))
        .collect();
    format!("scheduler = {}", names.join(" or "))
}

/// What the scheduler needs beyond the VMs themselves.
pub(super) struct Schedule {
    /// Per VM: the CPU it is pinned to. Under `static` every VM has one:
    /// its own `cpu`, or else the lowest CPU no VM before it took.
    pub cpus: Vec<Option<u32>>,
    /// The ARINC 653 major frame (empty for the other schedulers).
    pub windows: Vec<TimeWindow>,
}

/// `profile.board.cpus` is the number of CPUs the board runs with;
/// `cpus_said` says where that number comes from ("board.cpus = 2").
pub(super) fn check(
    profile: &Profile,
    vms: &VmSource,
    cpus_said: &str,
) -> Result<Schedule, ProfileError> {
    let scheduler = profile.compose.scheduler.get_ref().as_str();
    let uses = if vms.path == profile.path {
        format!("this profile uses {scheduler}")
    } else {
        format!(
            "its board profile {} uses {scheduler}",
            profile.path.display()
        )
    };
    per_vm(profile, vms, scheduler, &uses, cpus_said)?;
    let cpus = if takes(scheduler, Takes::CpuPerVcpu) {
        one_vcpu_per_cpu(profile, vms)?
    } else {
        vms.vms
            .iter()
            .map(|vm| vm.cpu.as_ref().map(|c| *c.get_ref()))
            .collect()
    };
    let windows = windows(profile, vms, scheduler)?;
    Ok(Schedule { cpus, windows })
}

/// `weight`, `cap` and `cpu` only where the scheduler uses them.
fn per_vm(
    profile: &Profile,
    vms: &VmSource,
    scheduler: &str,
    uses: &str,
    cpus_said: &str,
) -> Result<(), ProfileError> {
    let src = vms.source();
    let cpus = profile.board.cpus;
    for (i, vm) in vms.vms.iter().enumerate() {
        let label = vm_label(i, vm);
        if !takes(scheduler, Takes::Shares) {
            for (key, value) in [("weight", &vm.weight), ("cap", &vm.cap)] {
                if let Some(value) = value {
                    return Err(src
                        .error(
                            value.span(),
                            &format!("{label} {key}"),
                            format!(
                                "weight and cap only apply to the {} scheduler; {uses}",
                                schedulers_taking(Takes::Shares)
                            ),
                        )
                        .with_help(format!(
                            "remove {key}, or write {} under [compose]",
                            write_scheduler_for(Takes::Shares)
                        )));
                }
            }
        }
        let Some(cpu) = &vm.cpu else { continue };
        let field = format!("{label} cpu");
        if !takes(scheduler, Takes::Pinning) {
            return Err(src
                .error(
                    cpu.span(),
                    &field,
                    format!(
                        "cpu pins a VM to a CPU, which only the {} schedulers do; {uses}",
                        schedulers_taking(Takes::Pinning)
                    ),
                )
                .with_help(format!(
                    "remove cpu: {scheduler} does not pin; or write {} under [compose]",
                    write_scheduler_for(Takes::Pinning)
                )));
        }
        let c = *cpu.get_ref();
        if c >= cpus {
            let which = if cpus == 1 {
                "CPU 0".to_string()
            } else {
                format!("CPUs 0 to {}", cpus - 1)
            };
            return Err(src
                .error(
                    cpu.span(),
                    &field,
                    format!("there is no CPU {c}: the board has {which} ({cpus_said})"),
                )
                .with_help(format!("pin the VM to one of {which}, or leave cpu out")));
        }
        // vCPU n runs on CPU cpu + n: the last one must exist too.
        let vcpus = *vm.vcpus.get_ref();
        let last = u64::from(c) + u64::from(vcpus) - 1;
        if vcpus > 1 && last >= u64::from(cpus) {
            return Err(src
                .error(
                    cpu.span(),
                    &field,
                    format!(
                        "the VM's {vcpus} vCPUs are pinned from CPU {c} on (vCPU n to CPU {c} + n): there is no CPU {last}; the board has {cpus} ({cpus_said})"
                    ),
                )
                .with_help(format!(
                    "pin it to CPU {} at most, or leave cpu out",
                    cpus.saturating_sub(vcpus)
                )));
        }
    }
    Ok(())
}

/// Static gives each vCPU a CPU of its own: enough CPUs, no CPU pinned
/// twice. Returns each VM's CPU, choosing the lowest free one for VMs
/// that do not say.
fn one_vcpu_per_cpu(profile: &Profile, vms: &VmSource) -> Result<Vec<Option<u32>>, ProfileError> {
    let src = vms.source();
    let cpus = profile.board.cpus;
    let total: u64 = vms
        .vms
        .iter()
        .map(|vm| u64::from(*vm.vcpus.get_ref()))
        .sum();
    if total > u64::from(cpus) {
        let mut running = 0u64;
        let culprit = vms
            .vms
            .iter()
            .position(|vm| {
                running += u64::from(*vm.vcpus.get_ref());
                running > u64::from(cpus)
            })
            .unwrap_or(0);
        let vm = &vms.vms[culprit];
        return Err(src
            .error(
                vm.vcpus.span(),
                &format!("{} vcpus", vm_label(culprit, vm)),
                format!("static runs one vCPU per CPU: {total} vCPUs, {cpus} CPUs"),
            )
            .with_help("from this VM on there are more vCPUs than CPUs: run fewer VMs, or write scheduler = \"credit\" or \"rr\" under [compose] to share CPUs"));
    }

    // vCPU n of a VM pinned to CPU c runs on CPU c + n.
    let mut taken: Vec<Option<usize>> = vec![None; cpus as usize];
    for (i, vm) in vms.vms.iter().enumerate() {
        let Some(cpu) = &vm.cpu else { continue };
        let first = *cpu.get_ref() as usize;
        // per_vm has checked that these CPUs exist.
        let range = first..first + *vm.vcpus.get_ref() as usize;
        if let Some((clash, j)) = range.clone().find_map(|c| taken[c].map(|j| (c, j))) {
            let label = vm_label(i, vm);
            return Err(src
                .error(
                    cpu.span(),
                    &format!("{label} cpu"),
                    format!(
                        "{} is pinned to CPU {clash} too; static runs one vCPU per CPU",
                        vm_label(j, &vms.vms[j]),
                    ),
                )
                .with_help(
                    "pin each VM to CPUs of its own (vCPU n on its CPU + n), or leave cpu out to have free ones chosen",
                ));
        }
        taken[range].fill(Some(i));
    }

    // The others take the first run of free CPUs long enough for them.
    let mut chosen = Vec::with_capacity(vms.vms.len());
    for (i, vm) in vms.vms.iter().enumerate() {
        if let Some(cpu) = &vm.cpu {
            chosen.push(Some(*cpu.get_ref()));
            continue;
        }
        let n = *vm.vcpus.get_ref() as usize;
        let Some(first) = (0..taken.len().saturating_sub(n.saturating_sub(1)))
            .find(|&c| taken[c..c + n].iter().all(Option::is_none))
        else {
            return Err(src
                .error(
                    vm.vcpus.span(),
                    &format!("{} vcpus", vm_label(i, vm)),
                    format!("static runs vCPU n of a VM on its first CPU + n, and no {n} free CPUs in a row are left for this VM"),
                )
                .with_help("pin the VMs (cpu = ...) so that each gets CPUs in a row"));
        };
        taken[first..first + n].fill(Some(i));
        chosen.push(Some(first as u32));
    }
    Ok(chosen)
}

/// The ARINC 653 major frame: there when the scheduler is arinc653 and
/// only then, naming the planned VMs, each of them at least once.
fn windows(
    profile: &Profile,
    vms: &VmSource,
    scheduler: &str,
) -> Result<Vec<TimeWindow>, ProfileError> {
    let src = profile.source();
    let names: Vec<&str> = vms
        .vms
        .iter()
        .map(|vm| vm.name.get_ref().as_str())
        .collect();
    let example = || {
        let frame: Vec<String> = names
            .iter()
            .map(|n| format!("{{ vm = \"{n}\", length = \"10ms\" }}"))
            .collect();
        format!("windows = [{}]", frame.join(", "))
    };
    let windows = &profile.compose.windows;
    if !takes(scheduler, Takes::MajorFrame) {
        if let Some(windows) = windows {
            return Err(src
                .error(
                    windows.span(),
                    "compose.windows",
                    format!(
                        "windows are the ARINC 653 major frame, but this profile uses {scheduler}"
                    ),
                )
                .with_help(format!(
                    "remove windows, or write {} under [compose]",
                    write_scheduler_for(Takes::MajorFrame)
                )));
        }
        return Ok(Vec::new());
    }
    let Some(windows) = windows else {
        return Err(src
            .error(
                profile.compose.scheduler.span(),
                "compose.scheduler",
                "arinc653 runs the VMs in a fixed major frame, but compose.windows is missing",
            )
            .with_help(format!(
                "list the windows in order under [compose], at least one per VM, e.g. {}",
                example()
            )));
    };
    if windows.get_ref().is_empty() {
        return Err(src
            .error(
                windows.span(),
                "compose.windows",
                "the major frame has no windows",
            )
            .with_help(format!(
                "list at least one window per VM, e.g. {}",
                example()
            )));
    }

    let from = if vms.path == profile.path {
        String::new()
    } else {
        format!(" (from {})", vms.path.display())
    };
    let mut plan = Vec::with_capacity(windows.get_ref().len());
    for (k, window) in windows.get_ref().iter().enumerate() {
        let field = format!("compose.windows #{}", k + 1);
        let name = window.vm.get_ref();
        let Some(vm) = names.iter().position(|n| n == name) else {
            return Err(src
                .error(
                    window.vm.span(),
                    &format!("{field} vm"),
                    format!(
                        "no VM named '{name}'; the VMs{from} are: {}",
                        names.join(", ")
                    ),
                )
                .with_help(did_you_mean(name, &names).unwrap_or_else(|| {
                    "a window names the [[vm]] that owns the CPU during it".to_string()
                })));
        };
        let length = window.length.get_ref().0;
        if length.is_zero() {
            return Err(src
                .error(
                    window.length.span(),
                    &format!("{field} length"),
                    "the window is zero long",
                )
                .with_help("give it a length such as \"10ms\", or remove the window"));
        }
        plan.push(TimeWindow {
            vm: vm as u32,
            length_us: u64::try_from(length.as_micros()).unwrap_or(u64::MAX),
        });
    }

    if let Some((i, vm)) = vms
        .vms
        .iter()
        .enumerate()
        .find(|(i, _)| !plan.iter().any(|w| w.vm as usize == *i))
    {
        let label = vm_label(i, vm);
        return Err(vms
            .source()
            .error(
                vm.name.span(),
                &format!("{label} name"),
                format!("{label} has no window in compose.windows, so it would never run"),
            )
            .with_help(format!(
                "add {{ vm = \"{}\", length = \"10ms\" }} to windows under [compose] in {}, or remove the VM",
                vm.name.get_ref(),
                profile.path.display()
            )));
    }
    Ok(plan)
}
