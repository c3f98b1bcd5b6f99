//! Channel figures, as the `notif` and `transfer` tests of the RTAS 2023
//! comparison of static partitioning hypervisors: two Rust guests
//! (`guests/chan`) over a pair of channels, the sensor timing with its own
//! virtual counter. A round trip is: the sensor writes a chunk's header,
//! notifies; the logger wakes, reads it, writes its ack, notifies; the
//! sensor wakes and sees the ack. A transfer is that for every chunk of
//! what the channel holds, each word written and checked.
//! `ci/bench-channel.toml` shares one CPU; `ci/bench-channel-two-cpus.toml`
//! pins each guest to a CPU of its own (static).

use super::{boot, find_last, Cpus, Then};
use crate::workspace::Workspace;
use anyhow::{ensure, Result};

const ROUND_TRIPS: &str = "chan: sensor: ";
const TRANSFER: &str = "chan: sensor: transfer ";
/// The counter's rate under QEMU `virt` (62.5 MHz): ticks to guest seconds.
const TICKS_PER_S: f64 = 62_500_000.0;
/// The transfers the two-CPU scenario makes (`max-transfer` there).
pub const TRANSFER_KIB: [u64; 7] = [4, 16, 64, 256, 1024, 4096, 16384];

/// `100 notify round trips, 1234 ticks each`: the ticks.
pub fn parse_round_trips(text: &str) -> Option<u64> {
    let (_, rest) = text.split_once(" notify round trips, ")?;
    rest.strip_suffix(" ticks each")?.parse().ok()
}

/// `64 KiB in 1 chunks: 5678 ticks, ...`: (KiB, ticks).
pub fn parse_transfer(text: &str) -> Option<(u64, u64)> {
    let (kib, rest) = text.split_once(" KiB in ")?;
    let (_, rest) = rest.split_once(" chunks: ")?;
    let (ticks, _) = rest.split_once(" ticks")?;
    Some((kib.parse().ok()?, ticks.parse().ok()?))
}

/// The figures' rows.
pub fn rows(ws: &Workspace, board: &str) -> Result<Vec<[String; 3]>> {
    let one = boot(ws, "bench-channel", board, Cpus::One, Then::Stop)?;
    let two = boot(ws, "bench-channel-two-cpus", board, Cpus::Board, Then::Stop)?;
    ensure!(two.cpus == 2, "bench-channel-two-cpus runs on 2 CPUs");
    let mut rows = Vec::new();
    for (booted, name) in [(&one, "one CPU shared"), (&two, "two CPUs (static)")] {
        let ticks = find_last(&booted.lines, ROUND_TRIPS, parse_round_trips)?;
        rows.push([
            format!("channel notify round trip, {name}"),
            ticks.to_string(),
            "ticks: sensor notifies, logger wakes and acks, sensor wakes (Rust guests)".into(),
        ]);
    }
    for kib in TRANSFER_KIB {
        let (_, ticks) = find_last(&two.lines, TRANSFER, |text| {
            parse_transfer(text).filter(|&(k, _)| k == kib)
        })?;
        let mib_per_s = kib as f64 / 1024.0 / (ticks as f64 / TICKS_PER_S);
        rows.push([
            format!("channel transfer {kib} KiB, two CPUs"),
            format!("{mib_per_s:.1}"),
            format!(
                "MiB/s of guest time ({ticks} ticks; 1 MiB channel, each word written and checked)"
            ),
        ]);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sensor_lines() {
        assert_eq!(
            parse_round_trips("100 notify round trips, 1234 ticks each"),
            Some(1234)
        );
        assert_eq!(
            parse_transfer("64 KiB in 1 chunks: 5678 ticks, 11 bytes per 1000 ticks"),
            Some((64, 5678))
        );
        assert_eq!(parse_round_trips("100 messages, 3 bytes"), None);
        assert_eq!(parse_transfer("64 KiB in x chunks"), None);
    }
}
