//! `cargo xtask bench`: figures from the `ci/bench*.toml` compositions.
//!
//! Tick figures run under icount (`-icount shift=0`), so they are exact and
//! repeatable: `ci/bench.toml` (null hypercall, reset to first guest line),
//! `bench-boot-*.toml` (reset to first guest line with 2 x 16 MiB and
//! 2 x 512 MiB VMs; `--only boot` runs them alone),
//! `bench-ticker*.toml` (virtual-timer IRQ latency, alone and beside a
//! spinner, attacks or Linux), `bench-linux-boot.toml` (Debian's Linux,
//! reset to its /init's first line), `bench-yield-*.toml` (yield without and
//! with a world switch), `bench-disk-linux.toml` (disk throughput with and
//! without the hypervisor, `disk`).
//! Host CPU figures (`bench-idle*.toml`) run in real time instead: with
//! `-icount sleep=off` QEMU skips idle guest time by spinning a host core,
//! which would measure the skipping, not the hypervisor.
//!
//! `--board B` runs them on board B (default qemu-virt-a64). The table goes
//! to stdout and to `<target>/bench-<board>.txt`, a picture of the ticker's
//! latencies and the VMs' CPU shares to `<target>/bench-<board>.svg`. `--only disk` runs the
//! disk figures alone (printed beside the last full run's, file untouched).

mod channel;
mod disk;
mod net;
mod svg;

use crate::compose;
use crate::manifest::columns;
use crate::qemu;
use crate::scenario::{self, Matcher, Progress};
use crate::workspace::{write, Workspace};
use anyhow::{bail, ensure, Context, Result};
use config::composition::Arch;
use config::profile;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

const BENCH_LINE: &str = "bench: null-hypercall ";
const GICD_READ_LINE: &str = "bench: gicd-read ";
const FIRST_LINE: &str = "[hv] first guest line at counter ";
/// The ticker's per-second report; the bench takes the last one.
const TICKER_LINE: &str = "[ticker] ticker: ";
/// The ticker's last second, every latency (`histogram=1`), for the picture.
const LATENCIES_LINE: &str = "[ticker] ticker: latencies ";
/// The end of the hypervisor's report of a VM that exited or powered off.
const SHARE_END: &str = "% of a CPU";
/// What the Linux VMs' /init prints first.
const INIT_LINE: &str = "tessera-init: ";
/// The yielder whose line counts in the two-yielder composition: the first
/// to finish (the other's last call waits for this one to print and exit).
const YIELD_PAIR_LINE: &str = "[yield-a] yielder: ";
const YIELD_ALONE_LINE: &str = "[yielder] yielder: ";
/// The hypervisor's heap after building its VMs (`report_memory` in the image).
const MEMORY_LINE: &str = "[hv] memory: ";
const STATE_LINE: &str = "[hv] memory: fixed-size state: ";
/// Goal for the hypervisor's memory per VM besides its RAM (issue 16).
const PER_VM_GOAL: u64 = 16 << 10;

/// Wall time of each host CPU measurement, in seconds (default 10).
pub const IDLE_SECS_ENV: &str = "TESSERA_BENCH_IDLE_SECS";
const IDLE_SECS_DEFAULT: f64 = 10.0;
/// CPUs of the host CPU figures: one, like the tick figures, so they compare
/// with each other and with one-CPU boards (`Cpus::Board` for the board's).
const IDLE_CPUS: Cpus = Cpus::One;

/// A guest's `calls=.. ticks=.. mean-ticks=..` (the bench and yielder guests).
#[derive(Debug, PartialEq)]
pub struct Calls {
    pub calls: u64,
    pub ticks: u64,
    /// The guest's own figure (two decimals, truncated).
    pub mean_ticks: String,
}

impl Calls {
    pub fn mean(&self) -> f64 {
        self.ticks as f64 / self.calls as f64
    }
}

/// A ticker's `<n>s: <irqs> irqs, latency ticks min <a> median <b> max <c>`.
#[derive(Debug, PartialEq)]
pub struct Latency {
    pub second: u64,
    pub irqs: u64,
    pub min: u64,
    pub median: u64,
    pub max: u64,
    /// The ticker reported late: the figures mix two seconds.
    pub mixed: bool,
}

/// QEMU's own CPU time over a stretch of wall time.
#[derive(Debug)]
pub struct HostCpu {
    pub wall: Duration,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub clock_ticks_per_s: u64,
}

impl HostCpu {
    /// Percent of one host core.
    pub fn percent(&self) -> f64 {
        self.cpu_ticks as f64 / self.clock_ticks_per_s as f64 / self.wall.as_secs_f64() * 100.0
    }
}

/// The figures on `board` (the bench compositions' VMs, on that board);
/// with `only`, just that group (`disk`).
pub fn run(ws: &Workspace, board: &str, only: Option<&str>) -> Result<()> {
    match only {
        None => {}
        Some(group @ ("disk" | "channel" | "net" | "exit" | "memory" | "boot")) => {
            let arch = compose::load_board(ws, board)?.board.arch;
            let head = ["figure".to_string(), "value".into(), "unit".into()];
            let figures = match group {
                "disk" => disk::rows(ws, board, arch)?,
                "net" => net::rows(ws, board, arch)?,
                "exit" => {
                    let base = icount_lines(ws, &ws.bench_scenario(), board)?;
                    ExitFigures::measure(ws, board, &base, &mut Picture::default())?.rows()
                }
                "memory" => memory_rows(ws, board)?,
                "boot" => boot_rows(ws, board)?,
                _ => channel::rows(ws, board)?,
            };
            let rows = std::iter::once(head).chain(figures).collect();
            let text = format!("Tessera bench on {board}, {group} figures only\n")
                + &table_text(ws, board, rows);
            print!("{text}");
            return Ok(());
        }
        Some(other) => {
            bail!("bench --only {other:?}: the groups are \"exit\", \"boot\", \"disk\", \"channel\", \"net\" and \"memory\"")
        }
    }
    let idle_wall = idle_wall()?;

    let base = icount_lines(ws, &ws.bench_scenario(), board)?;
    // The tick figures below run on one CPU, the VMs sharing it.
    let built = base
        .built
        .as_ref()
        .context("the bench scenario built nothing")?;
    let first_line: u64 = find(&base.lines, FIRST_LINE, |rest| rest.trim().parse().ok())?;

    let mut picture = Picture::default();
    let exit = ExitFigures::measure(ws, board, &base, &mut picture)?;
    let one = |stem| boot(ws, stem, board, Cpus::One, Then::Stop);
    let ticker_spin = one("bench-ticker-spinner")?;
    picture.keep("beside a spinner", &ticker_spin.lines);
    let ticker_spin = find_last(&ticker_spin.lines, TICKER_LINE, parse_latency)?;

    // A neighbour on a CPU of its own (static), alone and beside each attack.
    let mut own_cpu = |attack: &str, name: &str| -> Result<Latency> {
        let booted = boot(
            ws,
            &format!("bench-ticker-static-{attack}"),
            board,
            Cpus::Board,
            Then::Stop,
        )?;
        picture.keep(name, &booted.lines);
        find_last(&booted.lines, TICKER_LINE, parse_latency)
    };
    let attacks: Vec<(&str, Latency)> = [
        ("alone", "ticker alone, own CPU (static)"),
        ("reset-loop", "beside a reset loop, own CPU"),
        ("psci-storm", "beside a PSCI storm, own CPU"),
        ("maintenance-storm", "beside a maintenance storm, own CPU"),
        ("fuzzer", "beside the fuzzer, own CPU"),
    ]
    .into_iter()
    .map(|(attack, name)| Ok((name, own_cpu(attack, name)?)))
    .collect::<Result<_>>()?;

    // Debian's arm64 Linux: its boot, and the ticker beside it spinning.
    // Not on 32-bit hosts yet: armmp-lpae takes about 100 s of guest time
    // to boot there under icount (see the README's status table).
    let linux_rows = match built.composition.arch {
        Arch::Aarch64 => {
            let boot_to_init = boot(ws, "bench-linux-boot", board, Cpus::Board, Then::Stop)?;
            let at = init_line_at(&boot_to_init.lines)?;
            let hog = boot(
                ws,
                "bench-ticker-own-cpu-linux",
                board,
                Cpus::Board,
                Then::Stop,
            )?;
            picture.keep("beside Linux spinning, own CPU", &hog.lines);
            let hog = find_last(&hog.lines, TICKER_LINE, parse_latency)?;
            [
                [
                    format!(
                        "Linux boot, reset to /init's first line{}",
                        on_cpus(boot_to_init.cpus)
                    ),
                    at.to_string(),
                    "ticks (Debian's arm64 kernel, quiet, busybox initramfs, 2 vCPUs)".into(),
                ],
                latency_row("vtimer IRQ latency, beside Linux spinning, own CPU", &hog),
            ]
        }
        Arch::Armv7a => [
            "Linux boot, reset to /init's first line",
            "vtimer IRQ latency, beside Linux spinning, own CPU",
        ]
        .map(|name| {
            [
                name.into(),
                "-".into(),
                "not measured on 32-bit hosts yet".into(),
            ]
        }),
    };

    let disk_rows = disk::rows(ws, board, built.composition.arch)?;
    let channel_rows = channel::rows(ws, board)?;
    let net_rows = net::rows(ws, board, built.composition.arch)?;

    let memory_rows = memory_rows(ws, board)?;

    let measure = |stem| -> Result<(u32, HostCpu)> {
        let booted = boot(ws, stem, board, IDLE_CPUS, Then::MeasureCpu(idle_wall))?;
        let cpu = booted.host_cpu.context("no CPU time measured")?;
        Ok((booted.cpus, cpu))
    };
    let (idle_cpus, idle) = measure("bench-idle")?;
    let (idle_spin_cpus, idle_spin) = measure("bench-idle-spinner")?;

    let secs = format!("{:.1} s", idle_wall.as_secs_f64());
    let head = [
        ["figure".to_string(), "value".into(), "unit".into()],
        [
            "hypervisor image without guests".into(),
            built.sizes.hypervisor.total().to_string(),
            "bytes".into(),
        ],
        [
            "tessera.bin total".into(),
            built.sizes.bin_total.to_string(),
            "bytes (hypervisor and the bench guest)".into(),
        ],
        [
            "reset to first guest line".into(),
            first_line.to_string(),
            "ticks (one 16 MiB VM)".into(),
        ],
        latency_row("vtimer IRQ latency, beside a spinner", &ticker_spin),
    ];
    let boot_rows = boot_rows(ws, board)?;
    let rows: Vec<[String; 3]> =
        head.into_iter()
            .chain(exit.rows())
            .chain(boot_rows)
            .chain(attacks.iter().map(|(name, latency)| {
                latency_row(&format!("vtimer IRQ latency, {name}"), latency)
            }))
            .chain(linux_rows)
            .chain(disk_rows)
            .chain(channel_rows)
            .chain(net_rows)
            .chain(memory_rows)
            .chain([
                [
                    format!("host CPU, two idle VMs{}", on_cpus(idle_cpus)),
                    format!("{:.1}", idle.percent()),
                    format!(
                        "% of one core (QEMU utime+stime {} ticks of 1/{} s in {secs}, real time)",
                        idle.cpu_ticks, idle.clock_ticks_per_s
                    ),
                ],
                [
                    format!("host CPU, spinner + idle VM{}", on_cpus(idle_spin_cpus)),
                    format!("{:.1}", idle_spin.percent()),
                    format!(
                        "% of one core (QEMU utime+stime {} ticks of 1/{} s in {secs}, real time)",
                        idle_spin.cpu_ticks, idle_spin.clock_ticks_per_s
                    ),
                ],
            ])
            .collect();
    let mut text = format!(
        "Tessera bench on {}: ticks under -icount shift=0, host CPU in real time\n  (tick figures with one CPU shared by the VMs, but the own-CPU latencies: static, 2-3 CPUs)\n",
        built.composition.board
    );
    text += &table_text(ws, board, rows);
    text += "  (ticks of the 62.5 MHz counter: 16 ns, 16 instructions under icount;\n";
    text += "   IRQ latency: deadline to the guest's handler, 1 kHz CNTV, last second of 2)\n";
    print!("{text}");
    let out = ws.target.join(format!("bench-{board}.txt"));
    write(&out, &text)?;
    eprintln!("xtask: wrote {}", out.display());
    let out = ws.target.join(format!("bench-{board}.svg"));
    write(&out, picture.render(&built.composition.board)?)?;
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}

/// The exit path's figures (`--only exit`, and part of every full run):
/// a null hypercall, a trapped distributor read, the virtual timer's
/// latency and a yield with and without a world switch, all on one CPU.
struct ExitFigures {
    hypercall: Calls,
    gicd_read: Calls,
    ticker: Latency,
    alone: Calls,
    pair: Calls,
}

impl ExitFigures {
    /// `base`: the bench scenario's outcome (`ci/bench.toml`).
    fn measure(
        ws: &Workspace,
        board: &str,
        base: &scenario::Outcome,
        picture: &mut Picture,
    ) -> Result<Self> {
        let one = |stem| boot(ws, stem, board, Cpus::One, Then::Stop);
        let ticker = one("bench-ticker")?;
        picture.keep("ticker alone", &ticker.lines);
        let alone = one("bench-yield-alone")?;
        picture.keep("yield alone", &alone.lines);
        let pair = one("bench-yield-pair")?;
        picture.keep("yield ping-pong", &pair.lines);
        Ok(Self {
            hypercall: find(&base.lines, BENCH_LINE, parse_calls)?,
            gicd_read: find(&base.lines, GICD_READ_LINE, parse_calls)?,
            ticker: find_last(&ticker.lines, TICKER_LINE, parse_latency)?,
            alone: find_last(&alone.lines, YIELD_ALONE_LINE, parse_calls)?,
            pair: find_last(&pair.lines, YIELD_PAIR_LINE, parse_calls)?,
        })
    }

    fn rows(&self) -> Vec<[String; 3]> {
        let Self {
            hypercall,
            gicd_read,
            ticker,
            alone,
            pair,
        } = self;
        // World switch. Alone, a yield is a hypercall round trip through the
        // scheduler that picks the same VM again: no switch. With two yielders
        // on one CPU, one call of yield-a spans: its trap, a switch to yield-b,
        // yield-b's return from its own yield, its loop and next yield trap, a
        // switch back, yield-a's return. So the pair's mean per call is two
        // switching yields, and
        //   one switching yield (trap in one VM to return in the other) = pair / 2,
        //   what switching adds to a yield = pair / 2 - alone,
        //   what it adds to a null hypercall = pair / 2 - null hypercall
        // (the last one also counts the scheduler's work on a yield). The
        // hypervisor takes every yield through the scheduler and back whether
        // or not it picks another vCPU, so the middle figure is small: most of
        // a switch's cost is paid by a non-switching yield too.
        let switch = pair.mean() / 2.0;

        vec![
            mean_row("null hypercall round trip", hypercall),
            mean_row("trapped GICD_TYPER read", gicd_read),
            latency_row("vtimer IRQ latency, ticker alone", ticker),
            [
                "yield, nobody else to run".into(),
                format!("{:.2}", alone.mean()),
                format!(
                    "ticks per call, mean of {}: hypercall + scheduler, no switch",
                    alone.calls
                ),
            ],
            [
                "yield ping-pong, two VMs".into(),
                format!("{:.2}", pair.mean()),
                format!(
                    "ticks per call, mean of {}: two world switches (A->B, B->A)",
                    pair.calls
                ),
            ],
            [
                "world switch, one way".into(),
                format!("{switch:.2}"),
                "ticks: ping-pong / 2, a yield from trap in one VM to return in the other".into(),
            ],
            [
                "  switching minus non-switching yield".into(),
                format!("{:.2}", switch - alone.mean()),
                "ticks: ping-pong / 2 - yield alone, what the switch itself adds".into(),
            ],
            [
                "  switching yield minus null hypercall".into(),
                format!("{:.2}", switch - hypercall.mean()),
                "ticks: ping-pong / 2 - null hypercall (switch + scheduler)".into(),
            ],
        ]
    }
}

/// `calls`' mean per call, in ticks.
fn mean_row(name: &str, calls: &Calls) -> [String; 3] {
    [
        name.into(),
        format!("{:.2}", calls.mean()),
        format!(
            "ticks, mean of {} calls ({} ticks in all)",
            calls.calls, calls.ticks
        ),
    ]
}

/// RAM the board gets for the two 512 MiB VMs (QEMU's boards have 1 GiB).
const BIG_RAM: u64 = 2 << 30;

/// Reset to the first guest line with two small VMs and with two big ones
/// (`ci/bench-boot-*.toml`, one CPU): a VM's RAM is cleared as it is
/// reached, so the two should be about equal.
fn boot_rows(ws: &Workspace, board: &str) -> Result<Vec<[String; 3]>> {
    [
        ("bench-boot-16m", "16", None),
        ("bench-boot-512m", "512", Some(BIG_RAM)),
    ]
    .into_iter()
    .map(|(stem, mib, ram)| {
        let booted = boot_with_ram(ws, stem, board, Cpus::One, Then::Stop, ram)?;
        let at: u64 = find(&booted.lines, FIRST_LINE, |rest| rest.trim().parse().ok())?;
        Ok([
            format!("reset to first guest line, 2 x {mib} MiB VMs"),
            at.to_string(),
            format!("ticks ({stem}.toml)"),
        ])
    })
    .collect()
}

/// What `bench-<board>.svg` shows, gathered from the scenarios' lines.
#[derive(Default)]
struct Picture {
    latencies: Vec<svg::Latencies>,
    shares: Vec<svg::Share>,
}

impl Picture {
    /// The ticker's latencies in `lines` (if it printed them) as figure
    /// `name`, and each VM's exit report as `<name>: <vm>`.
    fn keep(&mut self, name: &str, lines: &[String]) {
        let counts = latency_counts(lines);
        if !counts.is_empty() {
            self.latencies.push(svg::Latencies {
                name: name.into(),
                counts,
            });
        }
        self.shares
            .extend(
                lines
                    .iter()
                    .filter_map(|line| parse_share(line))
                    .map(|(vm, percent)| svg::Share {
                        name: format!("{name}: {vm}"),
                        percent,
                    }),
            );
    }

    fn render(self, board: &str) -> Result<String> {
        svg::render(&svg::Picture {
            title: format!("Tessera bench on {board} (under -icount shift=0)"),
            latencies: self.latencies,
            shares: self.shares,
        })
    }
}

/// `(ticks, count)` from the ticker's `latencies 122x990 9033x10` lines.
fn latency_counts(lines: &[String]) -> Vec<(u64, u64)> {
    lines
        .iter()
        .filter_map(|line| Some(&line[line.find(LATENCIES_LINE)? + LATENCIES_LINE.len()..]))
        .flat_map(str::split_whitespace)
        .filter_map(|run| {
            let (ticks, count) = run.split_once('x')?;
            Some((ticks.parse().ok()?, count.parse().ok()?))
        })
        .collect()
}

/// `[hv] VM a exited (code 0) after 1003 ms, 33.4% of a CPU` (or `powered
/// off`, `stopped: ...`): the VM's name and its percent of one CPU.
fn parse_share(line: &str) -> Option<(String, f64)> {
    let rest = line.strip_prefix("[hv] VM ")?;
    let before = rest.strip_suffix(SHARE_END)?;
    let percent = before.rsplit(' ').next()?.parse().ok()?;
    Some((rest.split(' ').next()?.to_string(), percent))
}

/// The table's lines: `rows` (a header row first), each figure beside the
/// previous full run's value on this board (`<target>/bench-<board>.txt`).
fn table_text(ws: &Workspace, board: &str, rows: Vec<[String; 3]>) -> String {
    let out = ws.target.join(format!("bench-{board}.txt"));
    let before = std::fs::read_to_string(&out)
        .map(|old| previous_values(&old))
        .unwrap_or_default();
    let rows: Vec<[String; 5]> = rows
        .into_iter()
        .enumerate()
        .map(|(i, [figure, value, unit])| {
            let (was, issue_16) = if i == 0 {
                (
                    "previous run".to_string(),
                    "before issue 16 (goal)".to_string(),
                )
            } else {
                let was = before
                    .get(figure.trim())
                    .cloned()
                    .unwrap_or_else(|| "-".into());
                let issue_16 = before_issue_16(board, figure.trim())
                    .map_or_else(|| "-".into(), |(then, goal)| format!("{then} ({goal})"));
                (was, issue_16)
            };
            [figure, value, was, issue_16, unit]
        })
        .collect();
    columns(&rows)
        .into_iter()
        .map(|row| format!("  {row}\n"))
        .collect()
}

/// Issue 16's figures as this bench measured them before its work (the
/// exit path at 6074135's parent, boot at 8787717's base), and its goals.
fn before_issue_16(board: &str, figure: &str) -> Option<(&'static str, &'static str)> {
    let a64 = board == "qemu-virt-a64";
    let pick = |a64_then, a15_then| if a64 { a64_then } else { a15_then };
    if !(a64 || board == "qemu-virt-a15") {
        return None;
    }
    Some(match figure {
        "null hypercall round trip" => (pick("28.25", "24.50"), "6.6"),
        "trapped GICD_TYPER read" => (pick("36.94", "40.25"), "10"),
        "vtimer IRQ latency, ticker alone" => (pick("181", "199"), "130"),
        "world switch, one way" => (pick("80.75", "81.50"), "25"),
        "reset to first guest line" => (pick("482859", "907354"), "15600"),
        "reset to first guest line, 2 x 16 MiB VMs" => (pick("953224", "1768614"), "15600"),
        "reset to first guest line, 2 x 512 MiB VMs" => (pick("29747081", "55134190"), "15600"),
        "hypervisor memory per VM, besides its RAM" => ("-", "16384"),
        _ => return None,
    })
}

/// Figure name to value from a previous `bench-<board>.txt`: its table's
/// first two columns (cells are separated by two or more spaces).
fn previous_values(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter(|line| line.starts_with("  ") && !line.starts_with("  ("))
        .filter_map(|line| {
            let mut cells = line
                .trim()
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty());
            Some((cells.next()?.to_string(), cells.next()?.to_string()))
        })
        .collect()
}

/// Nothing for one CPU (as the header says), else ` (<n> CPUs)`.
fn on_cpus(cpus: u32) -> String {
    if cpus == 1 {
        String::new()
    } else {
        format!(" ({cpus} CPUs)")
    }
}

/// `ci/<stem>.toml`.
fn ci(ws: &Workspace, stem: &str) -> PathBuf {
    ws.root.join("ci").join(format!("{stem}.toml"))
}

/// `TESSERA_BENCH_IDLE_SECS` or 10 s.
fn idle_wall() -> Result<Duration> {
    let Ok(value) = std::env::var(IDLE_SECS_ENV) else {
        return Ok(Duration::from_secs_f64(IDLE_SECS_DEFAULT));
    };
    let secs: f64 = value
        .trim()
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0)
        .with_context(|| {
            format!("{IDLE_SECS_ENV}={value:?} is not a positive number of seconds")
        })?;
    Ok(Duration::from_secs_f64(secs))
}

fn latency_row(name: &str, l: &Latency) -> [String; 3] {
    [
        name.into(),
        format!("{} / {} / {}", l.min, l.median, l.max),
        format!(
            "ticks min / median / max, second {} ({} irqs){}",
            l.second,
            l.irqs,
            if l.mixed { ", REPORT LATE: mixed" } else { "" }
        ),
    ]
}

/// Runs an icount scenario on `board` to its end; its serial lines, or why
/// it failed.
fn icount_lines(ws: &Workspace, path: &std::path::Path, board: &str) -> Result<scenario::Outcome> {
    let outcome = scenario::run_on(ws, path, board);
    if outcome.failure.is_some() {
        outcome.report();
        bail!("the bench scenario {} failed", path.display());
    }
    Ok(outcome)
}

/// QEMU, killed (and reaped) when dropped.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        // It may have exited already: errors do not matter.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How many CPUs a bench composition gets.
#[derive(Clone, Copy, PartialEq)]
enum Cpus {
    /// The board's (or the scenario's `cpus`).
    Board,
    /// One, whatever the board has: VMs that must share a CPU (a world
    /// switch, the scheduler's effect on latency) cannot be pinned under
    /// every scheduler, but with one CPU they share it under all.
    One,
}

/// What [`boot`] does once the `expect` lines are seen.
enum Then {
    /// Stop: the figures are in the lines.
    Stop,
    /// Measure QEMU's CPU time over this much wall time, then stop.
    MeasureCpu(Duration),
}

struct Booted {
    lines: Vec<String>,
    cpus: u32,
    host_cpu: Option<HostCpu>,
}

/// Boots `ci/<stem>.toml` on `board` (planned as `cargo xtask test` plans a
/// scenario, then given `cpus`, with the scenario's disk attached), waits for
/// its `expect` lines, maybe measures QEMU's CPU time, and kills QEMU.
fn boot(ws: &Workspace, stem: &str, board: &str, cpus: Cpus, then: Then) -> Result<Booted> {
    boot_with_ram(ws, stem, board, cpus, then, None)
}

/// [`boot`], the board given `ram` bytes of RAM if `Some`.
fn boot_with_ram(
    ws: &Workspace,
    stem: &str,
    board: &str,
    cpus: Cpus,
    then: Then,
    ram: Option<u64>,
) -> Result<Booted> {
    let path = ci(ws, stem);
    let scenario = profile::load_scenario(&path)?.on_board(board);
    let measure = match then {
        Then::Stop => None,
        Then::MeasureCpu(wall) => Some(wall),
    };
    ensure!(
        measure.is_none() || !scenario.icount,
        "{}: host CPU figures need `icount = false` (real time)",
        path.display()
    );
    let (board, mut composition) = match ram {
        None => scenario::plan(ws, &scenario)?,
        Some(ram) => scenario::plan_with_ram(ws, &scenario, ram)?,
    };
    if cpus == Cpus::One {
        composition.cpus = 1;
    }
    let cpus = composition.cpus;
    let built = compose::build_planned(ws, composition)?;
    let mut cmd = qemu::command(qemu::spec(&board)?, &built)?;
    if let Some(disk) = scenario::prepare_disk(ws, &scenario)? {
        qemu::attach_disk(&mut cmd, &disk);
    }
    if let Some(version) = scenario.virtio_mmio_version {
        qemu::virtio_mmio_version(&mut cmd, version);
    }
    if scenario.icount {
        cmd.args(qemu::ICOUNT);
    }
    let watch = Watch {
        path: &path,
        expect: &scenario.expect,
        forbid: &scenario.forbid,
        input: &scenario.input,
        timeout: scenario.timeout,
        log: ws
            .scenario_logs_dir()
            .join(format!("{}.log", scenario.name)),
    };
    let (lines, host_cpu) = drive(cmd, &watch, measure)?;
    Ok(Booted {
        lines,
        cpus,
        host_cpu,
    })
}

/// What [`drive`] waits for, types, and where it keeps the lines.
struct Watch<'a> {
    /// The scenario, for messages.
    path: &'a std::path::Path,
    expect: &'a [profile::Expect],
    forbid: &'a [String],
    input: &'a [profile::Input],
    timeout: Duration,
    log: PathBuf,
}

/// Runs `cmd` (QEMU, serial on stdio), types `watch.input`, waits for every
/// `watch.expect` line, maybe measures QEMU's CPU time over `measure` of
/// wall time, kills QEMU; the serial lines, also written to `watch.log`.
fn drive(
    mut cmd: std::process::Command,
    watch: &Watch,
    measure: Option<Duration>,
) -> Result<(Vec<String>, Option<HostCpu>)> {
    let path = watch.path;
    cmd.args(qemu::HEADLESS);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut qemu = Qemu(cmd.spawn().context("starting QEMU")?);
    let mut typist = scenario::Typist::new(watch.input, qemu.0.stdin.take());
    let pid = qemu.0.id();
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = qemu.0.stdout.take() {
        spawn_reader(stdout, "", tx.clone());
    }
    if let Some(stderr) = qemu.0.stderr.take() {
        spawn_reader(stderr, "qemu: ", tx);
    }
    let mut lines = Vec::new();
    let mut matcher = Matcher::new(watch.expect, watch.forbid);
    let log = &watch.log;
    let fail = |lines: &[String], why: String| -> anyhow::Error {
        let _ = write(log, lines.join("\n") + "\n");
        let tail = lines[lines.len().saturating_sub(30)..].join("\n    ");
        anyhow::anyhow!("bench {}: {why}\n    {tail}", path.display())
    };

    // Every expected line, in order.
    let deadline = Instant::now() + watch.timeout;
    while !matcher.done() {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let progress = if line.starts_with("qemu: ") {
                    Progress::Waiting
                } else {
                    typist.feed(&line);
                    matcher.feed(&line)
                };
                lines.push(line);
                if let Progress::Forbidden(bad) = progress {
                    return Err(fail(&lines, format!("forbidden output {bad:?}")));
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let want = matcher.waiting_for().unwrap_or_default();
                return Err(fail(&lines, format!("timed out waiting for {want:?}")));
            }
            Err(RecvTimeoutError::Disconnected) => {
                let want = matcher.waiting_for().unwrap_or_default();
                return Err(fail(&lines, format!("QEMU exited before {want:?}")));
            }
        }
    }

    let mut host_cpu = None;
    if let Some(wall) = measure {
        // Still draining the serial port meanwhile: a full pipe would
        // stall QEMU.
        let clock_ticks_per_s = clock_ticks_per_s();
        let cpu_before = cpu_ticks(pid)?;
        let start = Instant::now();
        let end = start + wall;
        loop {
            match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let forbidden = !line.starts_with("qemu: ")
                        && watch.forbid.iter().any(|bad| line.contains(bad.as_str()));
                    lines.push(line);
                    if forbidden {
                        return Err(fail(&lines, "forbidden output while measuring".into()));
                    }
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(fail(&lines, "QEMU exited while measuring".into()));
                }
            }
        }
        let cpu_after = cpu_ticks(pid)?;
        let wall = start.elapsed();
        if let Ok(Some(status)) = qemu.0.try_wait() {
            return Err(fail(
                &lines,
                format!("QEMU exited ({status}) while measuring"),
            ));
        }
        host_cpu = Some(HostCpu {
            wall,
            cpu_ticks: cpu_after.saturating_sub(cpu_before),
            clock_ticks_per_s,
        });
    }
    drop(qemu);
    write(log, lines.join("\n") + "\n")?;
    Ok((lines, host_cpu))
}

/// Sends each line of `stream`, prefixed, until it closes.
fn spawn_reader(
    stream: impl Read + Send + 'static,
    prefix: &'static str,
    tx: mpsc::Sender<String>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&buf);
            let text = text.trim_end_matches(['\n', '\r']);
            if tx.send(format!("{prefix}{text}")).is_err() {
                break;
            }
            buf.clear();
        }
    });
}

/// `getconf CLK_TCK`: the unit of `/proc/<pid>/stat` times (100 if unknown).
fn clock_ticks_per_s() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
        .filter(|&hz| hz > 0)
        .unwrap_or(100)
}

/// utime + stime of process `pid` (all its threads), in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&stat).with_context(|| format!("cannot read the CPU times in {path}: {stat:?}"))
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The
/// command name (field 2) is in parentheses and may hold spaces or `)`.
fn parse_stat(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state), so field n is fields[n - 3].
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// The first serial line containing `marker`, parsed from what follows it.
/// The counter at the hypervisor's first-guest-line mark, which must follow
/// the Linux VM's /init line: a kernel line before it (a warning despite
/// `quiet`) would make the figure the kernel's, not /init's.
fn init_line_at(lines: &[String]) -> Result<u64> {
    let at = lines
        .iter()
        .position(|line| line.starts_with(FIRST_LINE))
        .with_context(|| format!("no line starts with {FIRST_LINE:?}"))?;
    let first = lines[..at]
        .iter()
        .rev()
        .find(|line| line.starts_with("[linux] "))
        .context("the first-guest-line mark came before any Linux line")?;
    ensure!(
        first.contains(INIT_LINE),
        "the first guest line was {first:?}, not /init's {INIT_LINE:?}: the kernel printed despite `quiet`"
    );
    find(&lines[at..], FIRST_LINE, |rest| rest.trim().parse().ok())
}

fn find<T>(lines: &[String], marker: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    let line = lines
        .iter()
        .find(|line| line.contains(marker))
        .with_context(|| format!("no line with {:?} in the bench output", marker.trim()))?;
    let rest = &line[line.find(marker).unwrap_or(0) + marker.len()..];
    parse(rest).with_context(|| format!("cannot read the figures in {line:?}"))
}

/// The last serial line containing `marker` that `parse` takes.
fn find_last<T>(lines: &[String], marker: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    let mut found = None;
    for line in lines.iter().filter(|line| line.contains(marker)) {
        let rest = &line[line.find(marker).unwrap_or(0) + marker.len()..];
        if let Some(value) = parse(rest) {
            found = Some(value);
        }
    }
    found.with_context(|| {
        format!(
            "no readable line with {:?} in the bench output",
            marker.trim()
        )
    })
}

/// What the hypervisor keeps per VM besides the VM's RAM, as it measures
/// its heap at boot (`[hv] memory:`): with 1024 tiny VMs and with 16, the
/// difference per VM, so that what it needs whatever the number of VMs
/// (console, scheduler, CPUs) is left out; the stage-2 tables among it.
fn memory_rows(ws: &Workspace, board: &str) -> Result<Vec<[String; 3]>> {
    let few = boot(ws, "bench-vms-16", board, Cpus::Board, Then::Stop)?;
    let many = boot(ws, "bench-vms-1024", board, Cpus::Board, Then::Stop)?;
    let few_memory = find(&few.lines, MEMORY_LINE, parse_memory)?;
    let memory = find(&many.lines, MEMORY_LINE, parse_memory)?;
    let state = find(&many.lines, STATE_LINE, |rest| {
        Some(rest.trim().to_string())
    })?;
    let per_vm = memory.per_vm_beyond(&few_memory)?;
    Ok(vec![
        [
            "hypervisor memory per VM, besides its RAM".into(),
            per_vm.heap.to_string(),
            format!(
                "bytes of heap ({} VMs of 64 KiB minus {}, per VM; goal {PER_VM_GOAL}: {}; {} per VM counting what every image has)",
                memory.vms,
                few_memory.vms,
                if per_vm.heap <= PER_VM_GOAL { "met" } else { "not met" },
                memory.heap / memory.vms.max(1),
            ),
        ],
        [
            "  of which stage-2 tables".into(),
            (per_vm.tables * 4096).to_string(),
            format!(
                "bytes: {} tables of 4 KiB per VM (the GIC frame's shared by all)",
                per_vm.tables
            ),
        ],
        [
            "  fixed-size state (as compiled)".into(),
            "-".into(),
            format!("bytes: {state}"),
        ],
    ])
}

/// `[hv] memory:` figures.
#[derive(Debug, PartialEq, Eq)]
struct Memory {
    heap: u64,
    vms: u64,
    tables: u64,
}

impl Memory {
    /// What each VM more than `fewer` has costs, heap and tables.
    fn per_vm_beyond(&self, fewer: &Memory) -> Result<Memory> {
        let vms = self.vms.saturating_sub(fewer.vms);
        anyhow::ensure!(vms > 0, "the two memory runs have as many VMs");
        Ok(Memory {
            heap: self.heap.saturating_sub(fewer.heap) / vms,
            vms: 1,
            tables: self.tables.saturating_sub(fewer.tables) / vms,
        })
    }
}

/// `73152992 bytes of heap for 4096 VMs, 17859 per VM; stage 2 12288 tables (12288 per VM)`
fn parse_memory(text: &str) -> Option<Memory> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let after = |word: &str| -> Option<u64> {
        let at = words.iter().position(|w| *w == word)?;
        words.get(at + 1)?.trim_end_matches(',').parse().ok()
    };
    Some(Memory {
        heap: words.first()?.parse().ok()?,
        vms: after("for")?,
        tables: after("2")?,
    })
}

/// `calls=10000 ticks=123 mean-ticks=0.01`
fn parse_calls(text: &str) -> Option<Calls> {
    let field = |key: &str| {
        text.split_whitespace()
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
    };
    let mean_ticks = field("mean-ticks")?;
    mean_ticks.parse::<f64>().ok()?;
    let calls: u64 = field("calls")?.parse().ok()?;
    if calls == 0 {
        return None;
    }
    Some(Calls {
        calls,
        ticks: field("ticks")?.parse().ok()?,
        mean_ticks: mean_ticks.into(),
    })
}

/// `2s: 1000 irqs, latency ticks min 5 median 6 max 40`, maybe followed by
/// ` (report late, figures mixed)`.
fn parse_latency(text: &str) -> Option<Latency> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let after = |key: &str| -> Option<u64> {
        let at = words.iter().position(|w| *w == key)?;
        words.get(at + 1)?.parse().ok()
    };
    let second = words.first()?.strip_suffix("s:")?.parse().ok()?;
    let irqs = words.get(1)?.parse().ok()?;
    if words.get(2) != Some(&"irqs") {
        return None;
    }
    Some(Latency {
        second,
        irqs,
        min: after("min")?,
        median: after("median")?,
        max: after("max")?,
        mixed: text.contains("figures mixed"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_figures_are_read_back_by_name() {
        let old = "Tessera bench on qemu-virt-a64: ticks\n  (tick figures ...)\n  figure                      value             unit\n  null hypercall round trip   28.38             ticks, mean of 10000 calls\n  vtimer IRQ latency, alone   158 / 158 / 158   ticks min / median / max\n    switching minus yield     4.88              ticks: what the switch adds\n  (ticks of the 62.5 MHz counter)\n";
        let values = previous_values(old);
        assert_eq!(values["null hypercall round trip"], "28.38");
        assert_eq!(values["vtimer IRQ latency, alone"], "158 / 158 / 158");
        assert_eq!(values["switching minus yield"], "4.88");
        assert!(!values.keys().any(|k| k.starts_with('(')));
    }

    #[test]
    fn linux_boot_is_read_at_init_line_only() {
        let lines = |first: &str| -> Vec<String> {
            vec![
                "[hv] vm linux: guest debian:arm64".into(),
                first.into(),
                "[hv] first guest line at counter 987654".into(),
                "[linux] tessera-init: 6.1.0-50-arm64 up".into(),
            ]
        };
        let init = lines("[linux] tessera-init: 6.1.0-50-arm64 up");
        assert_eq!(init_line_at(&init).unwrap(), 987_654);
        let kernel = lines("[linux] [    0.1] cacheinfo: Unable to detect cache hierarchy");
        let error = init_line_at(&kernel).unwrap_err().to_string();
        assert!(error.contains("despite `quiet`"), "{error}");
        assert!(init_line_at(&init[..2]).is_err(), "no mark");
    }

    #[test]
    fn reads_the_memory_line_and_takes_the_difference_per_vm() {
        let line = "[hv] memory: 73152992 bytes of heap for 4096 VMs, 17859 per VM; stage 2 12288 tables (12288 per VM)";
        let many = find(&[line.to_string()], MEMORY_LINE, parse_memory).unwrap();
        assert_eq!(
            many,
            Memory {
                heap: 73152992,
                vms: 4096,
                tables: 12288
            }
        );
        let few = Memory {
            heap: 1_000_000,
            vms: 16,
            tables: 48,
        };
        let per_vm = many.per_vm_beyond(&few).unwrap();
        assert_eq!(
            (per_vm.heap, per_vm.tables),
            ((73152992 - 1_000_000) / 4080, 3)
        );
        assert!(few.per_vm_beyond(&few).is_err());
        assert!(parse_memory("fixed-size state: VM 1 bytes").is_none());
    }

    #[test]
    fn reads_the_bench_lines() {
        let lines = vec![
            "[hv] Tessera 0.1.0".to_string(),
            "[bench] bench: null-hypercall calls=10000 ticks=81234 mean-ticks=8.12".into(),
            "[hv] first guest line at counter 123456".into(),
        ];
        let hypercall = find(&lines, BENCH_LINE, parse_calls).unwrap();
        assert_eq!(
            hypercall,
            Calls {
                calls: 10000,
                ticks: 81234,
                mean_ticks: "8.12".into()
            }
        );
        assert!((hypercall.mean() - 8.1234).abs() < 1e-9);
        assert_eq!(
            find(&lines, FIRST_LINE, |r| r.trim().parse::<u64>().ok()).unwrap(),
            123456
        );
    }

    #[test]
    fn missing_or_garbled_lines_are_errors() {
        let lines = vec!["[bench] bench: null-hypercall calls=x".to_string()];
        assert!(find(&lines, BENCH_LINE, parse_calls).is_err());
        assert!(find(&lines, FIRST_LINE, |r| r.trim().parse::<u64>().ok()).is_err());
        let zero = vec!["[yielder] yielder: calls=0 ticks=0 mean-ticks=0.00".to_string()];
        assert!(find_last(&zero, YIELD_ALONE_LINE, parse_calls).is_err());
    }

    #[test]
    fn reads_the_last_ticker_second() {
        let lines = vec![
            "[ticker] ticker: started, period 62500 ticks".to_string(),
            "[ticker] ticker: 1s: 1001 irqs, latency ticks min 9 median 10 max 300".into(),
            "[ticker] ticker: 2s: 1000 irqs, latency ticks min 8 median 11 max 42".into(),
            "[ticker] ticker: done".into(),
        ];
        assert_eq!(
            find_last(&lines, TICKER_LINE, parse_latency).unwrap(),
            Latency {
                second: 2,
                irqs: 1000,
                min: 8,
                median: 11,
                max: 42,
                mixed: false
            }
        );
        let late = parse_latency(
            "3s: 1000 irqs, latency ticks min 1 median 2 max 3 (report late, figures mixed)",
        );
        assert!(late.unwrap().mixed);
        assert!(find_last(&lines[..1], TICKER_LINE, parse_latency).is_err());
    }

    #[test]
    fn reads_the_pictures_lines() {
        let lines: Vec<String> = [
            "[ticker] ticker: 2s: 1000 irqs, latency ticks min 122 median 122 max 9033",
            "[ticker] ticker: latencies 122x990 130x5",
            "[ticker] ticker: latencies 9033x5",
            "[ticker] ticker: done",
            "[hv] VM ticker exited (code 0) after 3243 ms, 68.1% of a CPU",
            "[hv] VM linux powered off after 10 ms, 0.5% of a CPU",
            "[other] [hv] VM fake exited after 1 ms, 9.0% of a CPU",
        ]
        .map(String::from)
        .into();
        assert_eq!(latency_counts(&lines), [(122, 990), (130, 5), (9033, 5)]);
        let mut picture = Picture::default();
        picture.keep("beside Linux", &lines);
        picture.keep("no ticker", &lines[3..]);
        assert_eq!(picture.latencies.len(), 1);
        assert_eq!(picture.latencies[0].name, "beside Linux");
        let shares: Vec<(&str, f64)> = picture
            .shares
            .iter()
            .map(|s| (s.name.as_str(), s.percent))
            .collect();
        assert_eq!(
            shares,
            [
                ("beside Linux: ticker", 68.1),
                ("beside Linux: linux", 0.5),
                ("no ticker: ticker", 68.1),
                ("no ticker: linux", 0.5),
            ]
        );
    }

    #[test]
    fn reads_proc_stat_times() {
        // Fields 14 (utime) and 15 (stime); a name with spaces and `)`.
        let stat = "4242 (qemu-system) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    731 69 0 0 20 0 5 0 12345 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(800));
        assert_eq!(parse_stat("garbage"), None);
        let own = cpu_ticks(std::process::id()).unwrap();
        assert!(own < u64::MAX);
    }

    #[test]
    fn host_cpu_percent_is_of_one_core() {
        let cpu = HostCpu {
            wall: Duration::from_secs(10),
            cpu_ticks: 50,
            clock_ticks_per_s: 100,
        };
        assert!((cpu.percent() - 5.0).abs() < 1e-9);
    }
}
