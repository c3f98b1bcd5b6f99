//! `[[vm]] count = N`: one table for many like VMs, named from a pattern
//! (`name = "t{}"` gives t0, t1, ... t<N-1>). Expanded where the file is
//! read, so every later check sees plain VMs; each copy keeps the table's
//! spans, so an error about any of them points at the table's line.

use super::error::Source;
use super::spec::VmSpec;
use super::ProfileError;
use toml::Spanned;

/// Most VMs one `count` makes (a VM's index takes two bytes in its MACs).
pub const COUNT_MAX: u32 = 65_536;
/// What stands for the index in a counted VM's name.
pub const INDEX: &str = "{}";

/// The VMs of `vms` with each counted table expanded, in file order.
pub(super) fn expand(src: Source, vms: Vec<VmSpec>) -> Result<Vec<VmSpec>, ProfileError> {
    let mut out = Vec::with_capacity(vms.len());
    for (i, vm) in vms.into_iter().enumerate() {
        let name = vm.name.get_ref();
        let holes = name.matches(INDEX).count();
        let Some(count) = vm.count.clone() else {
            if holes > 0 {
                return Err(src
                    .error(
                        vm.name.span(),
                        &format!("vm #{} name", i + 1),
                        format!("the name {name:?} has {INDEX}, which only a counted [[vm]] fills"),
                    )
                    .with_help(format!(
                        "add count = N to make N VMs named {}, or take the {INDEX} out",
                        name.replacen(INDEX, "0, 1, ...", 1)
                    )));
            }
            out.push(vm);
            continue;
        };
        let field = format!("vm #{} count", i + 1);
        let n = *count.get_ref();
        if n == 0 || n > COUNT_MAX {
            return Err(src
                .error(
                    count.span(),
                    &field,
                    format!("count {n} is outside 1..={COUNT_MAX}"),
                )
                .with_help("count is how many VMs this table makes; leave it out for one"));
        }
        if holes != 1 {
            let what = if holes == 0 { "no" } else { "more than one" };
            return Err(src
                .error(
                    vm.name.span(),
                    &format!("vm #{} name", i + 1),
                    format!("a counted [[vm]]'s name needs one {INDEX} for the VM's index; {name:?} has {what}"),
                )
                .with_help(format!(
                    "e.g. name = \"{}{INDEX}\" makes {} VMs named {}0 .. {}{}",
                    name.replace(INDEX, ""),
                    n,
                    name.replace(INDEX, ""),
                    name.replace(INDEX, ""),
                    n - 1
                )));
        }
        if let (Some(base), true) = (&vm.base, n > 1) {
            return Err(src
                .error(
                    base.span(),
                    &format!("vm #{} base", i + 1),
                    format!(
                        "the {n} VMs of a counted [[vm]] cannot all have their RAM at one base"
                    ),
                )
                .with_help("leave base out to have them placed one after another"));
        }
        let span = vm.name.span();
        for index in 0..n {
            let mut copy = vm.clone();
            copy.name = Spanned::new(span.clone(), name.replacen(INDEX, &index.to_string(), 1));
            copy.count = None;
            out.push(copy);
        }
    }
    Ok(out)
}
