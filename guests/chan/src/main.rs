//! Two VMs over inter-VM channels (ABI 1.3), and one with none. The
//! command line picks the role:
//!
//! - `role=sensor`: writes channel `telemetry`, reads `acks`. Sends
//!   `rounds` empty messages (notify round trips), then `messages`
//!   messages of varying length, then one transfer of each size from
//!   4 KiB up to `max-transfer` KiB (in chunks of what the channel holds),
//!   each chunk acknowledged; then rings the doorbell `flood` times; then
//!   says goodbye and, if the logger was told to `intrude`, waits for the
//!   hypervisor to say it stopped.
//! - `role=logger`: reads `telemetry`, writes `acks`. Checks every word of
//!   every chunk against what the sensor writes, acknowledges each. With
//!   `intrude=1` it then writes its read-only mapping of `telemetry`, which
//!   stops its VM (stage 2).
//!   With `poll-ms=N` either side also looks every N ms, for a peer that
//!   cannot notify (Linux's busybox `devmem`).
//! - `role=outsider`: a VM on no channel. Its notifies are refused; it then
//!   reads `probe` (a channel's address), which stops its VM.
//!
//! A chunk in `telemetry`: word 0 its sequence number (written last), word
//! 1 its length in bytes, then the payload from byte 16. `acks` word 0: the
//! last sequence number taken. After the goodbye's ack the sensor sets
//! word 0 to 0 (ack seen: the logger may stop, and its `acks` be zeroed).
//! Failures print `FAIL` and exit with 1.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use abi::{StartInfo, CHANNEL_SIDE_RUNNING, CHANNEL_SIDE_STOPPED};
use guest_rt::{channel, channel::Channel, cmdline, gic, irq, println, probe, timer};

guest_rt::entry!(main);

const PRIORITY: u8 = 0x80;
/// How long either side waits for the other before it gives up.
const TIMEOUT_S: u64 = 20;
/// Where the payload starts in a chunk.
const HEADER: u64 = 16;
/// Sequence numbers of the goodbye chunk and of flood's end.
const GOODBYE: u32 = u32::MAX;

/// Notifications received (any channel).
static NOTIFIED: AtomicU32 = AtomicU32::new(0);
/// `poll-ms`, in counter ticks: also look this often, for a peer that
/// cannot notify (Linux from user space); 0 = only when notified.
static POLL_TICKS: AtomicU64 = AtomicU64::new(0);

fn on_irq(intid: u32) {
    if intid == timer::INTID {
        // The watchdog: `wait_until` sees the time.
        timer::disable();
    } else {
        NOTIFIED.fetch_add(1, Ordering::Relaxed);
    }
}

fn fail(args: core::fmt::Arguments) -> u64 {
    println!("chan: FAIL: {args}");
    1
}

/// Sleeps until `done` holds, woken by notifications; `Err` after
/// [`TIMEOUT_S`].
fn wait_until(done: impl Fn() -> bool) -> Result<(), ()> {
    let give_up = timer::now() + TIMEOUT_S * timer::frequency();
    let poll = POLL_TICKS.load(Ordering::Relaxed);
    loop {
        let wake = if poll == 0 {
            give_up
        } else {
            timer::now() + poll
        };
        timer::set_deadline(wake.min(give_up));
        // Masked between the check and the wait: no wake-up is lost.
        irq::disable();
        if done() {
            irq::enable();
            return Ok(());
        }
        if timer::now() >= give_up {
            irq::enable();
            return Err(());
        }
        irq::wait();
        irq::enable();
    }
}

/// Word `i` of chunk `seq`'s payload: both sides compute it.
fn payload_word(seq: u32, i: u32) -> u32 {
    seq.wrapping_mul(0x9e37_79b1) ^ i.wrapping_mul(0x85eb_ca6b) ^ 0x5bd1_e995
}

fn setup(channels: &[Option<Channel>]) {
    irq::set_handler(on_irq);
    gic::init();
    gic::enable(timer::INTID, PRIORITY);
    for channel in channels.iter().flatten() {
        gic::enable(channel.intid(), PRIORITY);
    }
    irq::enable();
}

fn main(info: &'static StartInfo) -> u64 {
    let cmdline = info.cmdline();
    let poll_ms = cmdline::number(cmdline, "poll-ms", 0);
    POLL_TICKS.store(poll_ms * timer::frequency() / 1000, Ordering::Relaxed);
    let role = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("role="))
        .unwrap_or("");
    match role {
        "sensor" | "logger" => {
            let (Some(telemetry), Some(acks)) = (
                channel::find(info, "telemetry"),
                channel::find(info, "acks"),
            ) else {
                return fail(format_args!("no channels telemetry and acks"));
            };
            setup(&[Some(telemetry), Some(acks)]);
            println!(
                "chan: {role}: telemetry {} bytes at {:#x} ({}), acks {} bytes at {:#x} ({})",
                telemetry.size(),
                telemetry.info.base,
                side(&telemetry),
                acks.size(),
                acks.info.base,
                side(&acks)
            );
            let state = telemetry.state();
            if (state.writer, state.reader) != (CHANNEL_SIDE_RUNNING, CHANNEL_SIDE_RUNNING) {
                return fail(format_args!("telemetry starts as {state:?}"));
            }
            if role == "sensor" {
                sensor(cmdline, &telemetry, &acks)
            } else {
                logger(info, cmdline, &telemetry, &acks)
            }
        }
        "outsider" => outsider(info, cmdline),
        other => fail(format_args!("unknown role '{other}'")),
    }
}

fn side(channel: &Channel) -> &'static str {
    if channel.is_writer() {
        "writes"
    } else {
        "reads"
    }
}

/// The sensor's side of one chunk: payload, length, then the sequence
/// number; a notify; then the logger's acknowledgement.
fn send(telemetry: &Channel, acks: &Channel, seq: u32, len: u64) -> Result<(), u64> {
    for i in 0..len / 4 {
        telemetry.write(HEADER + i * 4, payload_word(seq, i as u32));
    }
    telemetry.write(4, len as u32);
    telemetry.publish(0, seq);
    telemetry
        .notify()
        .map_err(|e| fail(format_args!("notify: {e:?}")))?;
    wait_until(|| acks.read(0) == seq)
        .map_err(|()| fail(format_args!("no ack of chunk {seq} within {TIMEOUT_S}s")))
}

fn sensor(cmdline: &str, telemetry: &Channel, acks: &Channel) -> u64 {
    let rounds = cmdline::number(cmdline, "rounds", 100);
    let messages = cmdline::number(cmdline, "messages", 100);
    let max_transfer = cmdline::number(cmdline, "max-transfer", 256) << 10;
    let flood = cmdline::number(cmdline, "flood", 0);
    let capacity = (telemetry.size() - HEADER) & !3;
    let mut seq = 0u32;
    let mut next = || {
        seq += 1;
        seq
    };

    let start = timer::now();
    for _ in 0..rounds {
        if let Err(code) = send(telemetry, acks, next(), 0) {
            return code;
        }
    }
    let ticks = timer::now() - start;
    println!(
        "chan: sensor: {rounds} notify round trips, {} ticks each",
        ticks / rounds.max(1)
    );

    let mut sent = 0;
    for m in 0..messages {
        let len = ((m * 2654 + 4) % capacity.min(8192)) & !3;
        if let Err(code) = send(telemetry, acks, next(), len) {
            return code;
        }
        sent += len;
    }
    println!("chan: sensor: {messages} messages, {sent} bytes, all acknowledged");

    let mut size = 4096;
    while size <= max_transfer {
        let start = timer::now();
        let mut left = size;
        while left > 0 {
            let len = left.min(capacity);
            if let Err(code) = send(telemetry, acks, next(), len) {
                return code;
            }
            left -= len;
        }
        let ticks = (timer::now() - start).max(1);
        println!(
            "chan: sensor: transfer {} KiB in {} chunks: {ticks} ticks, {} bytes per 1000 ticks",
            size >> 10,
            size.div_ceil(capacity),
            size * 1000 / ticks
        );
        size *= 4;
    }

    if flood > 0 {
        let start = timer::now();
        for _ in 0..flood {
            if telemetry.notify().is_err() {
                return fail(format_args!("a flood notify was refused"));
            }
        }
        println!(
            "chan: sensor: {flood} notifies in a row, {} ticks each",
            (timer::now() - start) / flood
        );
    }

    let generation = telemetry.state().reader_generation;
    if let Err(code) = send(telemetry, acks, GOODBYE, 0) {
        return code;
    }
    println!("chan: sensor: goodbye acknowledged");
    // Seen: the logger may go (what it writes is zeroed when it stops).
    telemetry.publish(0, 0);
    if let Err(e) = telemetry.notify() {
        return fail(format_args!("notify: {e:?}"));
    }
    if cmdline::number(cmdline, "wait-for-logger", 0) == 1 {
        let stopped = wait_until(|| {
            let state = telemetry.state();
            state.reader == CHANNEL_SIDE_STOPPED && state.reader_generation > generation
        });
        if stopped.is_err() {
            return fail(format_args!("the logger never stopped"));
        }
        let state = telemetry.state();
        println!(
            "chan: sensor: the hypervisor says the logger stopped (generation {})",
            state.reader_generation
        );
    }
    0
}

fn logger(info: &'static StartInfo, cmdline: &str, telemetry: &Channel, acks: &Channel) -> u64 {
    let (mut chunks, mut bytes, mut last) = (0u64, 0u64, 0u32);
    loop {
        if wait_until(|| telemetry.read(0) != last).is_err() {
            return fail(format_args!("no chunk after {last} within {TIMEOUT_S}s"));
        }
        let seq = telemetry.read(0);
        if seq != GOODBYE && seq != last.wrapping_add(1) {
            return fail(format_args!("chunk {seq} after {last}"));
        }
        let len = u64::from(telemetry.read(4));
        if len > telemetry.size() - HEADER {
            return fail(format_args!("chunk {seq} of {len} bytes"));
        }
        for i in 0..len / 4 {
            let word = telemetry.read(HEADER + i * 4);
            if word != payload_word(seq, i as u32) {
                return fail(format_args!("chunk {seq} word {i}: {word:#x}"));
            }
        }
        chunks += 1;
        bytes += len;
        last = seq;
        acks.write(0, seq);
        if let Err(e) = acks.notify() {
            return fail(format_args!("notify: {e:?}"));
        }
        if seq == GOODBYE {
            break;
        }
    }
    println!(
        "chan: logger: {chunks} chunks, {bytes} bytes, every word as sent; {} notifications",
        NOTIFIED.load(Ordering::Relaxed)
    );
    // The sensor saw the goodbye's ack when it clears the sequence number.
    if wait_until(|| telemetry.read(0) == 0).is_err() {
        return fail(format_args!("the sensor never saw the goodbye's ack"));
    }
    if cmdline::number(cmdline, "intrude", 0) == 1 {
        println!("chan: logger: writing its read-only telemetry");
        // The hypervisor stops this VM here.
        let _ = probe::write(info, telemetry.info.base, 0xbad);
        return fail(format_args!("wrote a read-only channel"));
    }
    0
}

fn outsider(info: &'static StartInfo, cmdline: &str) -> u64 {
    if channel::all(info).count() != 0 {
        return fail(format_args!("an outsider has channels"));
    }
    for index in [0, 1, 15, 16, u64::MAX] {
        let raw = channel::notify_raw(index);
        if raw != abi::Error::InvalidParameter as i64 {
            return fail(format_args!("notify({index}) = {raw}"));
        }
    }
    println!("chan: outsider: notify of channels 0, 1, 15, 16, 2^64-1 refused");
    let target = cmdline::number(cmdline, "probe", 0);
    println!("chan: outsider: reading {target:#x}");
    // The hypervisor stops this VM here: nothing is mapped there for it.
    let value = probe::read(info, target);
    fail(format_args!("read {value:?} at {target:#x}"))
}
