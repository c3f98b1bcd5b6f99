//! A seeded hostile guest: it throws random but legal-for-a-guest input at
//! every interface the hypervisor offers it, counts what happened, checks
//! the answers it can predict, and exits. The hypervisor's promise is that
//! a hostile guest hurts only itself: the scenarios run it beside the
//! `ticker`, which must keep its 1 kHz pace.
//!
//! Command line (`key=value` words):
//! - `seed=<n>` (default 1): the whole run follows from it (splitmix64);
//! - `attempts=<n>` (default 1000000): operations to make;
//! - `progress=<n>` (default attempts / 4): a progress line every n;
//! - opt-in attacks the default campaign leaves out (each `=1`):
//!   `gicd-64k` (GICv2: the whole 64 KiB distributor region, not the 4 KiB
//!   the hypervisor emulates), `sgi0r` (GICv3: ICC_SGI0R_EL1 and
//!   ICC_ASGI1R_EL1 writes, which trap to the hypervisor), `psci32-upper`
//!   (AArch64: SMC32 PSCI calls with garbage in the upper halves of
//!   x1..x3, which the hypervisor once read as 64-bit; `fuzz.toml` turns it
//!   on),
//!   `eoimode` (random EOImode in GICC_CTLR/ICC_CTLR_EL1: the runtime's
//!   handler then leaves interrupts active, which only hurts this guest);
//! - `probe-icactiver=1`: instead of the campaign, checks that the timer
//!   interrupt comes back after it is ended by EOIR, by ICACTIVER with the
//!   active priority cleared, and by EOImode 1 + EOIR + ICACTIVER;
//! - `trace-from=<n>`: print each GIC access and WFI storm from attempt n
//!   (changes the timing, so a seed's run is no longer the same);
//! - `final=<step>`: a deliberate last step instead of `VM_EXIT`:
//!   `cntp` (the physical timer, which the hypervisor must refuse),
//!   `system-off` (PSCI SYSTEM_OFF), `cpu-off` (PSCI CPU_OFF of the only
//!   vCPU).
//!
//! Categories (an attempt is one operation):
//! - `hvc`: the vendor hypervisor range (`0xC600_00xx`, `0x8600_00xx`, and
//!   `0x..00_FFxx`) and fully random function IDs, edge arguments;
//! - `console`: `CONSOLE_WRITE` of buffers that are outside RAM, cross its
//!   end, wrap, or are too long (never a valid one with bytes in it, so the
//!   console stays readable);
//! - `psci`: over SMC and HVC: VERSION, FEATURES of random IDs,
//!   AFFINITY_INFO of random MPIDRs and levels, CPU_ON of itself and of
//!   vCPUs that do not exist with bad entry points, MIGRATE_INFO_TYPE,
//!   random IDs in the PSCI and SMCCC ranges, and calls with immediates
//!   the ABI does not define;
//! - `gic`: every trapped GIC register (GICv2 distributor and CPU
//!   interface; GICv3 distributor and this VM's redistributors) at every
//!   load and store form and width, random values;
//! - `icc` (GICv3 on AArch64; UNDEFINED on GICv2): the CPU interface system
//!   registers, random reads and writes, random ICC_SGI1R_EL1 writes
//!   (ICC_BPR*_EL1 kept in 0..=7: QEMU 7.2 asserts on 8);
//! - `sysreg`: EL2/HYP and EL3/Secure registers from EL1: each must fault
//!   in the guest;
//! - `undef`: undefined instructions (and BRK), stepped over by the
//!   guest's own vectors;
//! - `wfi`: WFI storms with the virtual timer armed, WFE/SEV.
//!
//! Answers that do not match the ABI print `fuzzer: anomaly: ...` (the first
//! few) and are counted. The last line is the summary:
//! `fuzzer: done seed=<s> attempts=<n> hvc=.. console=.. psci=.. gic=..
//! icc=.. sysreg=.. undef=.. wfi=.. exceptions=.. irqs=.. anomalies=..`.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

// PSCI functions the fuzzer names beyond the runtime's.
use abi::psci::{
    AFFINITY_INFO_32 as PSCI_AFFINITY_INFO_32, CPU_ON_32 as PSCI_CPU_ON_32,
    MIGRATE_INFO_TYPE as PSCI_MIGRATE_INFO_TYPE,
};
use abi::StartInfo;
use guest_rt::{cmdline, fuzz, gic, hc, irq, println, psci, rng::Rng, timer};

guest_rt::entry!(main);

/// Whether this guest is 32-bit: its registers (and so every argument the
/// hypervisor sees) are 32 bits wide.
const AARCH32: bool = cfg!(target_arch = "arm");

/// Exit code when an answer did not match the ABI.
const EXIT_ANOMALY: u64 = 3;
/// Anomalies printed in full (the rest are only counted).
const ANOMALIES_SHOWN: u64 = 1000;

/// Interrupts the fuzzer's own handler took.
static IRQS: AtomicU64 = AtomicU64::new(0);

/// What the run counts, by category.
#[derive(Default)]
struct Counts {
    hvc: u64,
    console: u64,
    psci: u64,
    gic: u64,
    icc: u64,
    sysreg: u64,
    undef: u64,
    wfi: u64,
    anomalies: u64,
}

impl Counts {
    fn total(&self) -> u64 {
        self.hvc
            + self.console
            + self.psci
            + self.gic
            + self.icc
            + self.sysreg
            + self.undef
            + self.wfi
    }
}

/// Opt-in attacks (see the crate doc).
struct Options {
    gicd_64k: bool,
    sgi0r: bool,
    psci32_upper: bool,
    eoimode: bool,
}

/// Most acknowledged interrupts the fuzzer keeps to end later.
const ACKED_MAX: usize = 32;

struct Fuzzer {
    rng: Rng,
    /// Attempts to make in all.
    attempts: u64,
    /// Interrupts a random read of an acknowledge register (GICC_IAR,
    /// GICC_AIAR, ICC_IAR0/1_EL1) took, with the register that ends each:
    /// ended (in reverse order) before each WFI storm, as a guest that
    /// acknowledges must, or the interrupt stays active for ever and
    /// masks the timer behind it.
    acked: [(u64, u32); ACKED_MAX],
    acked_len: usize,
    /// How many channels the VM has (ABI 1.3): notifies below it succeed.
    channels: u64,
    /// `trace-from=<n>`: from attempt n on, print each GIC access and WFI
    /// storm before making it (to find what a seed did last).
    trace_from: u64,
    counts: Counts,
    options: Options,
    gic: gic::Version,
    vcpus: u64,
    ram_base: u64,
    ram_end: u64,
}

const PSCI_IMPLEMENTED: [u32; 10] = [
    psci::VERSION,
    psci::CPU_OFF,
    PSCI_CPU_ON_32,
    psci::CPU_ON,
    PSCI_AFFINITY_INFO_32,
    psci::AFFINITY_INFO,
    PSCI_MIGRATE_INFO_TYPE,
    psci::SYSTEM_OFF,
    psci::SYSTEM_RESET,
    psci::FEATURES,
];
/// Function IDs that stop or reset the VM: never called by accident.
const FATAL_IDS: [u32; 5] = [
    psci::CPU_OFF,
    psci::SYSTEM_OFF,
    psci::SYSTEM_RESET,
    abi::HC_VM_EXIT as u32,
    abi::HC32_VM_EXIT as u32,
];

/// GICv2 distributor frame the hypervisor emulates.
const GICV2_DISTRIBUTOR: u64 = 0x1000;
/// GICv2 CPU interface registers the fuzzer treats with care.
const GICC_CTLR: u64 = 0x00;
const GICC_CTLR_EOIMODE: u64 = 1 << 9;
const GICC_IAR: u64 = 0x0c;
const GICC_AIAR: u64 = 0x20;
/// ICC_CTLR_EL1.EOImode.
const ICC_CTLR_EOIMODE: u64 = 1 << 1;
/// An acknowledge value with nothing acknowledged (1020..1023).
const SPECIAL_INTIDS: core::ops::Range<u64> = 1020..1024;

/// The virtual timer's interrupt, as the GIC numbers it.
const VTIMER: u32 = timer::INTID;

impl Fuzzer {
    /// A result register as the signed value the ABI means: sign-extended
    /// from 32 bits on a 32-bit guest.
    fn signed(raw: u64) -> i64 {
        if AARCH32 {
            i64::from(raw as u32 as i32)
        } else {
            raw as i64
        }
    }

    fn anomaly(&mut self, what: core::fmt::Arguments) {
        self.counts.anomalies += 1;
        if self.counts.anomalies <= ANOMALIES_SHOWN {
            println!("fuzzer: anomaly: {what}");
        }
    }

    /// An argument: an edge value (or a random one).
    fn edge(&mut self) -> u64 {
        let (base, end) = (self.ram_base, self.ram_end);
        match self.rng.below(20) {
            0 => 0,
            1 => 1,
            2 => u64::MAX,
            3 => u64::from(u32::MAX),
            4 => 0x8000_0000,
            5 => 0x7fff_ffff,
            6 => 1 << 63,
            7 => base,
            8 => end,
            9 => end - 1,
            10 => base - 1,
            11 => end + 1,
            12 => base + self.rng.below(end - base),
            13 => abi::GUEST_GICD_BASE,
            14 => 0x0900_0000, // the UART
            15 => (1 << 32) + base,
            16 => abi::CONSOLE_WRITE_MAX,
            17 => abi::CONSOLE_WRITE_MAX + 1,
            18 => 1 << self.rng.below(64),
            _ => self.rng.next_u64(),
        }
    }

    /// Whether the low 32 bits of `id` are all the hypervisor looks at:
    /// always on a 32-bit guest, else when the upper half is zero.
    fn as_seen(id: u64) -> Option<u32> {
        (AARCH32 || id >> 32 == 0).then_some(id as u32)
    }

    fn fatal(id: u64) -> bool {
        Self::as_seen(id).is_some_and(|low| FATAL_IDS.contains(&low))
    }

    /// Whether the hypervisor would take `id` (over HVC #0) as one of the
    /// Tessera calls: which one (0..=4).
    fn tessera_call(id: u64) -> Option<u32> {
        let low = Self::as_seen(id)?;
        let call = (low | abi::SMC64 as u32).wrapping_sub(abi::HC_ABI_VERSION as u32);
        (call <= 4).then_some(call)
    }

    fn is_psci(id: u64) -> bool {
        Self::as_seen(id).is_some_and(|low| low & !0x4000_001f == 0x8400_0000)
    }

    /// A `CONSOLE_WRITE` buffer that cannot print: outside RAM, crossing
    /// its end, wrapping, too long, or empty; as the hypervisor sees it
    /// whole (SMC64) and by its low halves (SMC32, 32-bit guests).
    fn bad_buffer(&mut self) -> (u64, u64) {
        let ipa = self.edge();
        let len = match self.rng.below(8) {
            0 => 0,
            1 => 1,
            2 => abi::CONSOLE_WRITE_MAX,
            3 => abi::CONSOLE_WRITE_MAX + 1,
            4 => u64::MAX,
            5 => 1 << 32,
            6 => self.rng.below(64),
            _ => self.edge(),
        };
        let prints = |ipa: u64, len: u64| {
            len != 0
                && len <= abi::CONSOLE_WRITE_MAX
                && ipa >= self.ram_base
                && ipa.checked_add(len).is_some_and(|end| end <= self.ram_end)
        };
        if prints(ipa, len) || prints(ipa & 0xffff_ffff, len & 0xffff_ffff) {
            // Too long either way.
            (ipa, abi::CONSOLE_WRITE_MAX + 1)
        } else {
            (ipa, len)
        }
    }

    /// What the hypervisor must answer a `CONSOLE_WRITE(ipa, len)` that
    /// cannot print: `None` if more than one answer is right.
    fn console_expected(&self, smc64: bool, len: u64) -> Option<i64> {
        let len = if smc64 && !AARCH32 {
            len
        } else {
            len & 0xffff_ffff
        };
        if len > abi::CONSOLE_WRITE_MAX {
            Some(abi::Error::InvalidParameter as i64)
        } else if len == 0 {
            None // 0, or InvalidAddress outside RAM
        } else {
            Some(abi::Error::InvalidAddress as i64)
        }
    }

    fn hvc(&mut self) {
        self.counts.hvc += 1;
        let id = match self.rng.below(4) {
            0 => 0xC600_0000 | self.rng.below(0x100),
            1 => 0x8600_0000 | self.rng.below(0x100),
            2 => self.rng.pick(&[0xC600_FF00, 0x8600_FF00]) | self.rng.below(0x100),
            _ if AARCH32 => self.rng.next_u64() & 0xffff_ffff,
            _ => self.rng.next_u64(),
        };
        if Self::fatal(id) {
            return;
        }
        let (mut a1, mut a2, a3) = (self.edge(), self.edge(), self.edge());
        let call = Self::tessera_call(id);
        if call == Some(1) {
            (a1, a2) = self.bad_buffer();
        }
        let smc64 = id & abi::SMC64 != 0;
        let raw = fuzz::hvc(id, a1, a2, a3);
        let got = Self::signed(raw);
        let expected = match call {
            _ if Self::is_psci(id) => None,
            Some(_) if AARCH32 && smc64 => Some(abi::Error::NotSupported as i64),
            Some(0) => Some(i64::from(abi::ABI_MAJOR) << 16 | i64::from(abi::ABI_MINOR)),
            Some(1) => self.console_expected(smc64, a2),
            Some(2) => Some(0),
            // CHANNEL_NOTIFY: only the low half of an SMC32 index counts.
            Some(4) => {
                let index = if smc64 { a1 } else { a1 & 0xffff_ffff };
                Some(if index < self.channels {
                    0
                } else {
                    abi::Error::InvalidParameter as i64
                })
            }
            Some(_) => None,
            None => Some(abi::Error::NotSupported as i64),
        };
        if expected.is_some_and(|e| e != got) {
            self.anomaly(format_args!(
                "hvc({id:#x}, {a1:#x}, {a2:#x}, {a3:#x}) = {got}, expected {}",
                expected.unwrap_or(0)
            ));
        }
    }

    fn console(&mut self) {
        self.counts.console += 1;
        let id = if AARCH32 || self.rng.chance(2) {
            abi::HC32_CONSOLE_WRITE
        } else {
            abi::HC_CONSOLE_WRITE
        };
        let (ipa, len) = self.bad_buffer();
        let got = Self::signed(fuzz::hvc(id, ipa, len, self.edge()));
        let expected = self.console_expected(id & abi::SMC64 != 0, len);
        if expected.is_some_and(|e| e != got) || (expected.is_none() && got > 0) {
            self.anomaly(format_args!(
                "console_write({ipa:#x}, {len:#x}) = {got}, expected {}",
                expected.unwrap_or(0)
            ));
        }
    }

    /// An MPIDR: this vCPU, another that may exist, or nonsense.
    fn mpidr(&mut self) -> u64 {
        match self.rng.below(6) {
            0 => 0,
            1 => self.rng.below(8),
            2 => self.rng.below(256),
            3 => 1 << self.rng.below(40),
            4 => 0x8000_0000, // MPIDR's RES1 bit
            _ => self.edge(),
        }
    }

    /// The vCPU an MPIDR names, as the hypervisor reads it (Aff0..Aff3).
    fn vcpu_named(&self, mpidr: u64, smc64: bool) -> Option<u64> {
        let mpidr = if smc64 && !AARCH32 {
            mpidr
        } else {
            mpidr & 0xffff_ffff
        };
        let index = mpidr & 0xff_00ff_ffff;
        (index < self.vcpus).then_some(index)
    }

    fn psci(&mut self) {
        self.counts.psci += 1;
        let over_smc = self.rng.chance(2);
        let (id, a1, a2, a3) = match self.rng.below(9) {
            0 => (psci::VERSION, self.edge(), 0, 0),
            1 => {
                let feature = match self.rng.below(3) {
                    0 => self.rng.pick(&PSCI_IMPLEMENTED),
                    1 => {
                        0x8400_0000 | self.rng.below(0x20) as u32 | self.rng.pick(&[0, 0x4000_0000])
                    }
                    _ => self.rng.next_u64() as u32,
                };
                (psci::FEATURES, u64::from(feature), self.edge(), 0)
            }
            2 => {
                let level = if self.rng.chance(2) { 0 } else { self.edge() };
                (
                    self.rng.pick(&[psci::AFFINITY_INFO, PSCI_AFFINITY_INFO_32]),
                    self.mpidr(),
                    level,
                    0,
                )
            }
            3 => {
                let entry = self.rng.pick(&[
                    0,
                    1,
                    self.ram_base + 2,
                    self.ram_end,
                    self.ram_base - 4,
                    u64::MAX,
                ]);
                (
                    self.rng.pick(&[psci::CPU_ON, PSCI_CPU_ON_32]),
                    self.mpidr(),
                    entry,
                    self.edge(),
                )
            }
            4 => (PSCI_MIGRATE_INFO_TYPE, 0, 0, 0),
            5 => (
                0x8400_0000 | self.rng.below(0x20) as u32 | self.rng.pick(&[0, 0x4000_0000]),
                self.edge(),
                self.edge(),
                self.edge(),
            ),
            6 => (
                0x8000_0000 | self.rng.below(0x1_0000) as u32 | self.rng.pick(&[0, 0x4000_0000]),
                self.edge(),
                self.edge(),
                0,
            ),
            7 => (
                self.rng.pick(&[
                    0x8400_0050,
                    0x8600_ff01,
                    0x8600_ff00,
                    0xbf00_ff01,
                    0x8200_0000,
                ]),
                0,
                0,
                0,
            ),
            _ => {
                // An immediate the ABI does not define: HVC #1/#0xffff
                // answer "not supported" whatever the ID; SMC #1 is an SMC.
                let random = self.rng.next_u64() as u32;
                let id = self.rng.pick(&[
                    psci::VERSION,
                    psci::FEATURES,
                    abi::HC_ABI_VERSION as u32,
                    random,
                ]);
                if Self::fatal(id.into()) {
                    return;
                }
                let which = self.rng.below(3) as u32;
                let got = Self::signed(fuzz::call_with_immediate(which, id.into(), self.edge()));
                if which < 2 && got != abi::Error::NotSupported as i64 {
                    self.anomaly(format_args!("hvc #imm({id:#x}) = {got}, expected -1"));
                }
                return;
            }
        };
        let id64 = u64::from(id);
        if Self::fatal(id64) {
            return;
        }
        let smc64 = id & 0x4000_0000 != 0;
        // An SMC32 PSCI call from AArch64 with garbage in the upper halves
        // of x1..x3: SMCCC says only W1..W3 count (the hypervisor once read
        // them as 64-bit, so CPU_ON_32 of 0x1_0000_0000 named no vCPU).
        // `psci32-upper=1` sends it.
        let (a1, a2, a3) = if smc64 || AARCH32 || self.options.psci32_upper {
            (a1, a2, a3)
        } else {
            (a1 & 0xffff_ffff, a2 & 0xffff_ffff, a3 & 0xffff_ffff)
        };
        let target = self.vcpu_named(a1, smc64);
        // CPU_ON of a vCPU that exists and is off would start it at a bad
        // entry: only this vCPU (on) may be named when there are others.
        let cpu_on = id == psci::CPU_ON || id == PSCI_CPU_ON_32;
        if cpu_on && target.is_some_and(|t| t != 0) {
            return;
        }
        let raw = if over_smc {
            fuzz::smc(id64, a1, a2, a3)
        } else {
            fuzz::hvc(id64, a1, a2, a3)
        };
        let got = Self::signed(raw);
        let level = if smc64 && !AARCH32 {
            a2
        } else {
            a2 & 0xffff_ffff
        };
        let expected = match id {
            psci::VERSION => Some(0x1_0000),
            psci::FEATURES => {
                let asked = if AARCH32 { a1 & 0xffff_ffff } else { a1 };
                Some(if PSCI_IMPLEMENTED.iter().any(|&f| u64::from(f) == asked) {
                    0
                } else {
                    -1
                })
            }
            psci::AFFINITY_INFO | PSCI_AFFINITY_INFO_32 => Some(match target {
                Some(0) if level == 0 => 0,
                Some(_) if level == 0 => return, // a sibling, on or off
                _ => psci::INVALID_PARAMETERS,
            }),
            psci::CPU_ON | PSCI_CPU_ON_32 => Some(match target {
                Some(_) => psci::ALREADY_ON,
                None => psci::INVALID_PARAMETERS,
            }),
            PSCI_MIGRATE_INFO_TYPE => Some(2),
            _ if !Self::is_psci(id64) && (Self::tessera_call(id64).is_none() || over_smc) => {
                Some(-1)
            }
            _ if Self::is_psci(id64) && !PSCI_IMPLEMENTED.contains(&id) => Some(-1),
            _ => None,
        };
        if expected.is_some_and(|e| e != got) {
            self.anomaly(format_args!(
                "{}({id:#x}, {a1:#x}, {a2:#x}, {a3:#x}) = {got}, expected {}",
                if over_smc { "smc" } else { "hvc" },
                expected.unwrap_or(0)
            ));
        }
    }

    /// A GIC register value: edge-biased.
    fn value(&mut self) -> u64 {
        match self.rng.below(6) {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << self.rng.below(64),
            3 => self.rng.below(0x100),
            _ => self.rng.next_u64(),
        }
    }

    /// An address in a frame the hypervisor emulates (or, for the GICv2
    /// CPU interface, the hardware's virtual one), and whether only 32-bit
    /// accesses suit it.
    fn gic_address(&mut self) -> (u64, bool) {
        match self.gic {
            gic::Version::V2 => {
                if self.rng.chance(10) {
                    (
                        abi::GUEST_GICC_BASE + self.rng.below(fuzz::GICC_FRAME),
                        true,
                    )
                } else {
                    let span = if self.options.gicd_64k {
                        fuzz::GICD_FRAME
                    } else {
                        GICV2_DISTRIBUTOR
                    };
                    (abi::GUEST_GICD_BASE + self.rng.below(span), false)
                }
            }
            gic::Version::V3 => {
                let offset = match self.rng.below(10) {
                    0..=4 => self.rng.below(0x1000),
                    5 | 6 => 0x6000 + self.rng.below(0x2000),
                    7 => 0xffd0 + self.rng.below(0x30),
                    _ => self.rng.below(fuzz::GICD_FRAME),
                };
                if self.rng.chance(2) {
                    (abi::GUEST_GICD_BASE + offset, false)
                } else {
                    let vcpu = self.rng.below(self.vcpus);
                    let offset = match self.rng.below(4) {
                        0 => self.rng.below(0x100),
                        1 => 0x1_0000 + self.rng.below(0x1000),
                        2 => 0xffd0 + self.rng.below(0x30) + self.rng.pick(&[0, 0x1_0000]),
                        _ => self.rng.below(fuzz::GICR_STRIDE),
                    };
                    (
                        abi::GUEST_GICR_BASE + vcpu * fuzz::GICR_STRIDE + offset,
                        false,
                    )
                }
            }
        }
    }

    fn gic(&mut self) {
        self.counts.gic += 1;
        let (addr, word_only) = self.gic_address();
        let write = self.rng.chance(2);
        let form = if word_only {
            2 // `ldr w`/`str w` (and `ldr`/`str`) on both
        } else if write {
            self.rng.below(u64::from(fuzz::STORE_FORMS)) as u32
        } else {
            self.rng.below(u64::from(fuzz::LOAD_FORMS)) as u32
        };
        let width = if write {
            fuzz::store_width(form)
        } else {
            fuzz::load_width(form)
        };
        let addr = addr & !(width - 1);
        let result = if write {
            let mut value = self.value();
            if addr == abi::GUEST_GICC_BASE + GICC_CTLR && !self.options.eoimode {
                // EOImode stays 0: the runtime's handler ends interrupts
                // with EOIR alone.
                value &= !GICC_CTLR_EOIMODE;
            }
            if self.counts.total() >= self.trace_from {
                println!(
                    "fuzzer: trace {}: write {addr:#x} form {form} value {value:#x}",
                    self.counts.total()
                );
            }
            fuzz::gic_write(addr, form, value)
        } else {
            let value = fuzz::gic_read(addr, form);
            if self.counts.total() >= self.trace_from {
                println!(
                    "fuzzer: trace {}: read {addr:#x} form {form} = {value:x?}",
                    self.counts.total()
                );
            }
            let offset = addr.wrapping_sub(abi::GUEST_GICC_BASE);
            if let (Ok(iar), true) = (value, word_only) {
                if offset == GICC_IAR || offset == GICC_AIAR {
                    self.acked(iar, (offset + 4) as u32);
                }
            }
            value.map(|_| ())
        };
        if let Err(why) = result {
            self.anomaly(format_args!("gic access at {addr:#x} refused: {why}"));
        }
    }

    fn icc(&mut self) {
        self.counts.icc += 1;
        let registers = fuzz::ICC_REGISTERS;
        // The last two (ICC_ASGI1R_EL1, ICC_SGI0R_EL1) are opt-in.
        let usable = if self.options.sgi0r {
            registers.len()
        } else {
            registers.len() - 2
        };
        let n = if self.rng.chance(3) {
            registers
                .iter()
                .position(|&r| r == "ICC_SGI1R_EL1")
                .unwrap_or(0)
        } else {
            self.rng.below(usable as u64) as usize
        };
        let name = registers[n];
        let write = self.rng.chance(2);
        let value = if name.starts_with("ICC_BPR") {
            self.rng.below(8)
        } else if name == "ICC_SGI1R_EL1" {
            // TargetList, Aff1, INTID, Aff2, IRM, RS, Aff3: often aimed at
            // this VM's vCPUs.
            let v = self.value();
            if self.rng.chance(2) {
                v & !(0xff << 16 | 0xff << 32 | 0xff << 48)
            } else {
                v
            }
        } else if name == "ICC_CTLR_EL1" && !self.options.eoimode {
            self.value() & !ICC_CTLR_EOIMODE
        } else {
            self.value()
        };
        let read = fuzz::icc_access(n, write.then_some(value));
        if !write && (name == "ICC_IAR1_EL1" || name == "ICC_IAR0_EL1") {
            let eoir = if name == "ICC_IAR1_EL1" {
                "ICC_EOIR1_EL1"
            } else {
                "ICC_EOIR0_EL1"
            };
            let eoir = registers.iter().position(|&r| r == eoir).unwrap_or(0);
            self.acked(read & 0xff_ffff, eoir as u32);
        }
    }

    fn sysreg(&mut self) {
        self.counts.sysreg += 1;
        let n = self.rng.below(fuzz::REFUSED_REGISTERS.len() as u64) as usize;
        let write = self.rng.chance(2).then(|| self.value());
        let before = fuzz::faults();
        fuzz::refused_access(n, write);
        if fuzz::faults() != before + 1 {
            let name = fuzz::REFUSED_REGISTERS[n];
            let how = if write.is_some() { "write" } else { "read" };
            self.anomaly(format_args!(
                "ISOLATION BROKEN: {how} of {name} from EL1 did not fault"
            ));
        }
    }

    fn undef(&mut self) {
        self.counts.undef += 1;
        let before = fuzz::faults();
        fuzz::undefined(self.rng.below(8) as u32);
        if fuzz::faults() != before + 1 {
            self.anomaly(format_args!("an undefined instruction did not fault"));
        }
    }

    /// Keeps an acknowledged interrupt (`iar`) to end with `end` (a GICC
    /// offset, or an ICC register number) before the next WFI storm.
    fn acked(&mut self, iar: u64, end: u32) {
        if SPECIAL_INTIDS.contains(&(iar & 0x3ff)) {
            return;
        }
        if self.acked_len == ACKED_MAX {
            self.end_acked();
        }
        self.acked[self.acked_len] = (iar, end);
        self.acked_len += 1;
    }

    /// Ends what random reads acknowledged, last first (EOImode is 0: a
    /// priority drop and a deactivation each).
    fn end_acked(&mut self) {
        while self.acked_len > 0 {
            self.acked_len -= 1;
            let (iar, end) = self.acked[self.acked_len];
            match self.gic {
                gic::Version::V2 => {
                    let _ = fuzz::gic_write(abi::GUEST_GICC_BASE + u64::from(end), 2, iar);
                }
                gic::Version::V3 => {
                    fuzz::icc_access(end as usize, Some(iar));
                }
            }
        }
    }

    /// Puts the virtual timer's interrupt and this vCPU's CPU interface
    /// back in working order after the random writes: enabled, not pending
    /// or active, priority 0x80, everything let through, group enabled.
    fn sanitize_timer_irq(&mut self) {
        self.end_acked();
        let bit = 1u32 << VTIMER;
        let w = |addr: u64, value: u32| {
            let _ = fuzz::gic_write(addr, 2, value.into());
        };
        match self.gic {
            gic::Version::V2 => {
                let d = abi::GUEST_GICD_BASE;
                w(d, 1); // GICD_CTLR
                w(d + 0x280, bit); // ICPENDR0
                w(d + 0x380, bit); // ICACTIVER0
                w(d + 0x100, bit); // ISENABLER0
                w(d + 0x400 + u64::from(VTIMER & !3), 0x8080_8080); // IPRIORITYR
                let c = abi::GUEST_GICC_BASE;
                w(c + 0xd0, 0); // GICC_APR0
                w(c + 0x04, 0xff); // GICC_PMR
                w(c + 0x08, 0); // GICC_BPR
                w(c, 1); // GICC_CTLR: group 1 (as seen from NS) on, EOImode 0
            }
            gic::Version::V3 => {
                w(abi::GUEST_GICD_BASE, 0b11 | 1 << 4); // GICD_CTLR
                let sgi = abi::GUEST_GICR_BASE + 0x1_0000; // vCPU 0's SGI_base
                w(sgi + 0x080, u32::MAX); // IGROUPR0: group 1
                w(sgi + 0x280, bit); // ICPENDR0
                w(sgi + 0x380, bit); // ICACTIVER0
                w(sgi + 0x100, bit); // ISENABLER0
                w(sgi + 0x400 + u64::from(VTIMER & !3), 0x8080_8080);
                let reg = |name: &str| fuzz::ICC_REGISTERS.iter().position(|&r| r == name);
                for (name, value) in [
                    ("ICC_CTLR_EL1", 0),
                    ("ICC_AP1R0_EL1", 0),
                    ("ICC_AP0R0_EL1", 0),
                    ("ICC_PMR_EL1", 0xff),
                    ("ICC_BPR1_EL1", 0),
                    ("ICC_IGRPEN1_EL1", 1),
                ] {
                    if let Some(n) = reg(name) {
                        fuzz::icc_access(n, Some(value));
                    }
                }
            }
        }
    }

    /// A WFI storm with the virtual timer armed a little ahead (IRQs
    /// masked: WFI returns once the interrupt is pending), then WFE/SEV,
    /// then a window with IRQs on so that the handler takes what is
    /// pending. Returns the attempts made.
    fn wfi_storm(&mut self) {
        self.sanitize_timer_irq();
        let ahead = self.rng.below(2000);
        timer::set_deadline(timer::now() + ahead);
        // At most the attempts left, so that a run makes exactly `attempts`.
        let n = (1 + self.rng.below(16)).min(self.attempts - self.counts.total());
        if self.counts.total() >= self.trace_from {
            println!(
                "fuzzer: trace {}: storm ahead {ahead} n {n} ctl {:#x}",
                self.counts.total(),
                fuzz::vtimer_ctl()
            );
        }
        for _ in 0..n {
            // The hypervisor holds the timer back (IMASK) until the guest
            // completes its interrupt; then only a pending interrupt wakes.
            irq::wait();
        }
        for _ in 0..self.rng.below(4) {
            fuzz::send_event();
            fuzz::wait_for_event();
        }
        self.counts.wfi += n;
        irq::enable();
        for _ in 0..64 {
            core::hint::spin_loop();
        }
        irq::disable();
        timer::disable();
    }

    /// One attempt (or a storm of them) of a random category.
    fn step(&mut self) {
        let icc = !fuzz::ICC_REGISTERS.is_empty();
        match self.rng.below(100) {
            0..=13 => self.hvc(),
            14..=21 => self.console(),
            22..=39 => self.psci(),
            40..=49 if icc => self.icc(),
            40..=84 => self.gic(),
            85..=89 => self.sysreg(),
            90..=95 => self.undef(),
            _ => self.wfi_storm(),
        }
    }
}

/// The fuzzer's own interrupt handler: counts, and stops the timer (its
/// interrupt is level: it would fire again at once).
fn on_irq(intid: u32) {
    IRQS.fetch_add(1, Ordering::Relaxed);
    if intid == VTIMER {
        timer::disable();
    }
}

/// The deliberate last step `final=<step>`, if any: does not return if it
/// stops the VM as it should.
fn final_step(cmdline: &str) {
    let Some(step) = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("final="))
    else {
        return;
    };
    println!("fuzzer: final step {step}");
    match step {
        "cntp" => {
            let v = fuzz::physical_timer_read();
            println!("fuzzer: ISOLATION BROKEN: CNTP_CTL read {v:#x} from EL1");
        }
        "system-off" => psci::system_off(),
        "cpu-off" => psci::cpu_off(),
        other => println!("fuzzer: unknown final step {other}"),
    }
}

/// `probe-icactiver=1`: acknowledges the timer interrupt, ends it in one
/// of three ways (0: EOIR; 1: GICD/GICR ICACTIVER, then the active
/// priorities cleared; 2: EOImode 1, EOIR for the priority drop, then
/// ICACTIVER for the deactivation) and checks that the timer interrupts
/// again, as on a GIC it must. Prints `fuzzer: icactiver probe ...`.
fn probe_icactiver(f: &mut Fuzzer, way: u32) -> bool {
    f.sanitize_timer_irq();
    let wait = |ticks: u64| {
        let until = timer::now() + ticks;
        while timer::now() < until {
            core::hint::spin_loop();
        }
    };
    let icc = |name: &str| {
        fuzz::ICC_REGISTERS
            .iter()
            .position(|&r| r == name)
            .unwrap_or(0)
    };
    let v2 = f.gic == gic::Version::V2;
    let cpu = |offset: u64, value: u64| {
        let _ = fuzz::gic_write(abi::GUEST_GICC_BASE + offset, 2, value);
    };
    let iar = || {
        if v2 {
            fuzz::gic_read(abi::GUEST_GICC_BASE + GICC_IAR, 2).unwrap_or(1023)
        } else {
            fuzz::icc_access(icc("ICC_IAR1_EL1"), None)
        }
    };
    let eoi = |iar: u64| {
        if v2 {
            cpu(0x10, iar);
        } else {
            fuzz::icc_access(icc("ICC_EOIR1_EL1"), Some(iar));
        }
    };
    let active_reg = if v2 {
        abi::GUEST_GICD_BASE + 0x300
    } else {
        abi::GUEST_GICR_BASE + 0x1_0300
    };
    let icactiver = || {
        let _ = fuzz::gic_write(active_reg + 0x80, 2, 1 << VTIMER);
    };
    let eoimode = |on: bool| {
        if v2 {
            cpu(0x00, if on { 1 | GICC_CTLR_EOIMODE } else { 1 });
        } else {
            fuzz::icc_access(
                icc("ICC_CTLR_EL1"),
                Some(if on { ICC_CTLR_EOIMODE } else { 0 }),
            );
        }
    };
    timer::set_deadline(timer::now() + 1000);
    wait(20_000);
    if way == 2 {
        eoimode(true);
    }
    let first = iar();
    match way {
        0 => eoi(first),
        1 => {
            icactiver();
            if v2 {
                cpu(0xd0, 0); // GICC_APR0
            } else {
                fuzz::icc_access(icc("ICC_AP1R0_EL1"), Some(0));
            }
        }
        _ => {
            eoi(first);
            icactiver();
        }
    }
    wait(20_000);
    let active = fuzz::gic_read(active_reg, 2).unwrap_or(0) >> VTIMER & 1;
    timer::set_deadline(timer::now() + 1000);
    wait(20_000);
    let second = iar();
    if second & 0x3ff == u64::from(VTIMER) {
        eoi(second);
        if way == 2 {
            icactiver();
        }
    }
    eoimode(false);
    timer::disable();
    let ctl = fuzz::vtimer_ctl();
    println!(
        "fuzzer: icactiver probe {way}: first ack {first}, active after {active}, second ack {second}, ctl {ctl:#x}"
    );
    u64::from(VTIMER) == first & 0x3ff && u64::from(VTIMER) == second & 0x3ff
}

fn main(info: &'static StartInfo) -> u64 {
    let line = info.cmdline();
    let seed = cmdline::number(line, "seed", 1);
    let attempts = cmdline::number(line, "attempts", 1_000_000);
    let progress = cmdline::number(line, "progress", (attempts / 4).max(1));
    let flag = |key| cmdline::number(line, key, 0) != 0;
    let options = Options {
        gicd_64k: flag("gicd-64k"),
        sgi0r: flag("sgi0r"),
        psci32_upper: flag("psci32-upper"),
        eoimode: flag("eoimode"),
    };

    irq::set_handler(on_irq);
    gic::init();
    gic::enable(VTIMER, 0x80);
    let gic = gic::version();
    println!(
        "fuzzer: seed={seed} attempts={attempts} vcpus={} gic={gic:?} {}",
        info.vcpus,
        if AARCH32 { "aarch32" } else { "aarch64" }
    );

    fuzz::set_recover(true);
    let ram_base = info.ram_base;
    let mut f = Fuzzer {
        rng: Rng(seed),
        attempts,
        counts: Counts::default(),
        options,
        gic,
        acked: [(0, 0); ACKED_MAX],
        acked_len: 0,
        channels: guest_rt::channel::all(info).count() as u64,
        trace_from: cmdline::number(line, "trace-from", u64::MAX),
        vcpus: info.vcpus.into(),
        ram_base,
        ram_end: ram_base + info.ram_size,
    };
    if cmdline::number(line, "probe-icactiver", 0) != 0 {
        let ok = [0, 1, 2].map(|way| probe_icactiver(&mut f, way));
        println!(
            "fuzzer: icactiver probe: eoi {}, icactiver {}, eoimode {}",
            ok[0], ok[1], ok[2]
        );
        return u64::from(ok.contains(&false));
    }
    let start = timer::now();
    let mut next_report = progress;
    while f.counts.total() < attempts {
        f.step();
        if f.counts.total() >= next_report {
            println!("fuzzer: {} attempts", f.counts.total());
            next_report += progress;
        }
    }
    let ticks = timer::now() - start;

    // The hypervisor still answers as the ABI says.
    let (major, minor) = hc::abi_version();
    let (psci_major, psci_minor) = psci::version();
    println!("fuzzer: after the campaign: abi {major}.{minor}, psci {psci_major}.{psci_minor}");
    let c = &f.counts;
    println!(
        "fuzzer: done seed={seed} attempts={} hvc={} console={} psci={} gic={} icc={} sysreg={} undef={} wfi={} exceptions={} irqs={} anomalies={} ms={}",
        c.total(),
        c.hvc,
        c.console,
        c.psci,
        c.gic,
        c.icc,
        c.sysreg,
        c.undef,
        c.wfi,
        fuzz::faults(),
        IRQS.load(Ordering::Relaxed),
        c.anomalies,
        ticks * 1000 / timer::frequency(),
    );
    fuzz::set_recover(false);
    final_step(line);
    if c.anomalies > 0 {
        EXIT_ANOMALY
    } else {
        0
    }
}
