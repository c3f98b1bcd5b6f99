//! `cargo xtask bench`: figures from `ci/bench.toml`, run under icount so
//! tick counts are exact and repeatable.

use crate::manifest::columns;
use crate::scenario;
use crate::workspace::Workspace;
use anyhow::{bail, Context, Result};

const BENCH_LINE: &str = "bench: null-hypercall ";
const FIRST_LINE: &str = "[hv] first guest line at counter ";

/// The guest's `bench: null-hypercall calls=.. ticks=.. mean-ticks=..`.
#[derive(Debug, PartialEq)]
pub struct Hypercall {
    pub calls: u64,
    pub ticks: u64,
    pub mean_ticks: String,
}

pub fn run(ws: &Workspace) -> Result<()> {
    let path = ws.bench_scenario();
    let outcome = scenario::run(ws, &path);
    if outcome.failure.is_some() {
        outcome.report();
        bail!("the bench scenario {} failed", path.display());
    }
    let built = outcome
        .built
        .as_ref()
        .context("the bench scenario built nothing")?;
    let hypercall = find(&outcome.lines, BENCH_LINE, parse_hypercall)?;
    let first_line: u64 = find(&outcome.lines, FIRST_LINE, |rest| rest.trim().parse().ok())?;

    println!(
        "Tessera bench: {} (-icount shift=0)",
        built.composition.name
    );
    let rows = [
        ["figure".to_string(), "value".into(), "unit".into()],
        [
            "hypervisor image without guests".into(),
            built.sizes.hypervisor.total().to_string(),
            "bytes".into(),
        ],
        [
            "tessera.bin total".into(),
            built.sizes.bin_total.to_string(),
            "bytes".into(),
        ],
        [
            "null hypercall round trip".into(),
            hypercall.mean_ticks.clone(),
            format!(
                "ticks, mean of {} calls ({} ticks in all)",
                hypercall.calls, hypercall.ticks
            ),
        ],
        [
            "reset to first guest line".into(),
            first_line.to_string(),
            "ticks".into(),
        ],
    ];
    for row in columns(&rows) {
        println!("  {row}");
    }
    println!("  (ticks of the 62.5 MHz counter: 16 ns, 16 instructions under icount)");
    Ok(())
}

/// The first serial line containing `marker`, parsed from what follows it.
fn find<T>(lines: &[String], marker: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    let line = lines
        .iter()
        .find(|line| line.contains(marker))
        .with_context(|| format!("no line with {:?} in the bench output", marker.trim()))?;
    let rest = &line[line.find(marker).unwrap_or(0) + marker.len()..];
    parse(rest).with_context(|| format!("cannot read the figures in {line:?}"))
}

/// `calls=10000 ticks=123 mean-ticks=0.01`
fn parse_hypercall(text: &str) -> Option<Hypercall> {
    let field = |key: &str| {
        text.split_whitespace()
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
    };
    let mean_ticks = field("mean-ticks")?;
    mean_ticks.parse::<f64>().ok()?;
    Some(Hypercall {
        calls: field("calls")?.parse().ok()?,
        ticks: field("ticks")?.parse().ok()?,
        mean_ticks: mean_ticks.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bench_lines() {
        let lines = vec![
            "[hv] Tessera 0.1.0".to_string(),
            "[bench] bench: null-hypercall calls=10000 ticks=81234 mean-ticks=8.12".into(),
            "[hv] first guest line at counter 123456".into(),
        ];
        let hypercall = find(&lines, BENCH_LINE, parse_hypercall).unwrap();
        assert_eq!(
            hypercall,
            Hypercall {
                calls: 10000,
                ticks: 81234,
                mean_ticks: "8.12".into()
            }
        );
        assert_eq!(
            find(&lines, FIRST_LINE, |r| r.trim().parse::<u64>().ok()).unwrap(),
            123456
        );
    }

    #[test]
    fn missing_or_garbled_lines_are_errors() {
        let lines = vec!["[bench] bench: null-hypercall calls=x".to_string()];
        assert!(find(&lines, BENCH_LINE, parse_hypercall).is_err());
        assert!(find(&lines, FIRST_LINE, |r| r.trim().parse::<u64>().ok()).is_err());
    }
}
