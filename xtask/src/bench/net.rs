//! Network figures between two Debian arm64 Linux VMs on a virtual network
//! (`ci/bench-net-linux.toml`): busybox ping's average round trip, and a
//! 16 MiB TCP transfer with busybox nc, timed with the guest's clock as
//! the disk figures are (see `disk.rs`). Both are guest time under icount.

use super::disk::{parse_timed, Timed};
use super::{boot, find_last, Cpus, Then};
use crate::workspace::Workspace;
use anyhow::{ensure, Context, Result};
use config::composition::Arch;

pub const STEM: &str = "bench-net-linux";
const PING: &str = "round-trip min/avg/max = ";
const CLOCK: &str = "net-clock: ";
const TCP: &str = "net-tcp: ";
/// What the scenario sends (`bs=1M count=16`).
const TCP_MIB: f64 = 16.0;

/// `0.148/0.181/0.223 ms`: the average, in microseconds.
pub fn parse_ping_avg_us(text: &str) -> Option<f64> {
    let figures = text.trim().strip_suffix(" ms")?;
    let avg: f64 = figures.split('/').nth(1)?.parse().ok()?;
    Some(avg * 1000.0)
}

fn done(what: &str, t: Timed) -> Result<u64> {
    ensure!(
        t.status == 0,
        "`{what}` in the guest failed with status {}",
        t.status
    );
    Ok(t.ns)
}

pub fn rows(ws: &Workspace, board: &str, arch: Arch) -> Result<Vec<[String; 3]>> {
    let names = [
        "ping round trip, two Linux VMs",
        "TCP throughput, two Linux VMs (nc, 16 MiB)",
    ];
    if arch != Arch::Aarch64 {
        return Ok(names
            .map(|n| {
                [
                    n.into(),
                    "-".into(),
                    "not measured on 32-bit hosts yet".into(),
                ]
            })
            .into());
    }
    let booted = boot(ws, STEM, board, Cpus::Board, Then::Stop)?;
    let lines = &booted.lines;
    let rtt = find_last(lines, PING, parse_ping_avg_us)?;
    let clock = done("clock", find_last(lines, CLOCK, parse_timed)?)?;
    let tcp = done("nc", find_last(lines, TCP, parse_timed)?)?;
    let secs = tcp
        .checked_sub(clock)
        .context("the transfer took less than the clock")? as f64
        / 1e9;
    Ok(vec![
        [
            names[0].into(),
            format!("{rtt:.0}"),
            "us of guest time, busybox ping's average of 20 (virtio-net, the hypervisor's switch)"
                .into(),
        ],
        [
            names[1].into(),
            format!("{:.1}", TCP_MIB / secs),
            format!(
                "MiB/s of guest time ({:.1} ms for 16 MiB from tmpfs, one CPU each)",
                secs * 1e3
            ),
        ],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pings_average() {
        assert_eq!(parse_ping_avg_us("0.148/0.181/0.223 ms"), Some(181.0));
        assert_eq!(parse_ping_avg_us("0.148/0.181/0.223"), None);
        assert_eq!(parse_ping_avg_us("x/y/z ms"), None);
    }
}
