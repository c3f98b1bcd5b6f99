//! QEMU scenarios (`ci/scenarios/*.toml`): a board, maybe its own VMs, and
//! what the serial port must (and must not) show.

use super::error::{ProfileError, Source};
use super::spec::{ChannelSpec, NetworkSpec, VmSource, VmSpec, WindowSpec};
use super::units::Period;
use super::{board_path, channels, check, load_board, networks, read, Composition, Known, Profile};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

#[derive(Debug, Clone)]
pub struct Scenario {
    pub path: PathBuf,
    /// The file stem.
    pub name: String,
    /// The board this run of the scenario uses: the first of [`Scenario::boards`]
    /// until [`Scenario::on_board`] picks another.
    pub board: String,
    /// Every board the scenario runs on (`board = "b"` or `board = ["a", "b"]`).
    pub boards: Vec<String>,
    pub description: String,
    pub timeout: Duration,
    /// Substrings the serial output must contain, in this order.
    pub expect: Vec<Expect>,
    /// Substrings that fail the scenario wherever they appear.
    pub forbid: Vec<String>,
    /// Text typed into the serial console, each once a line with its
    /// `after` appeared (in order).
    pub input: Vec<Input>,
    /// Run QEMU with `-icount` (deterministic guest time).
    pub icount: bool,
    /// The scenario's own VMs and the channels and networks between them,
    /// replacing the board's.
    pub vms: Option<VmSource>,
    /// QEMU `-M` instead of the board's, to boot it wrongly on purpose.
    pub machine: Option<String>,
    /// A hypervisor self-test compiled into this scenario's image.
    pub selftest: Option<String>,
    /// The number of CPUs to run the board with, instead of its `[board] cpus`
    /// (QEMU `-smp`).
    pub cpus: Option<u32>,
    /// How the image reaches the machine.
    pub boot: Boot,
    /// A disk image (path from the workspace root; `.gz` is unpacked into
    /// `target/disks/` first) that QEMU attaches as the board's `[disk]`:
    /// `-drive if=none,...,id=hd -device virtio-blk-device,drive=hd`. QEMU
    /// never writes the file named here, only the copy in `target/`.
    pub disk: Option<PathBuf>,
    /// The virtio-mmio transport version QEMU's devices speak: 1 (legacy,
    /// QEMU 7.2's default) or 2 (`-global virtio-mmio.force-legacy=false`);
    /// `None` leaves QEMU's default.
    pub virtio_mmio_version: Option<u32>,
    /// `[disk-check]`: what `disk` must hold after the run.
    pub disk_check: Option<super::DiskCheck>,
    /// The scenario's `[compose]`, over the board's (see [`Scenario::plan`]).
    pub(super) compose: Option<ComposeOverride>,
    disk_span: Option<std::ops::Range<usize>>,
    text: String,
    board_span: std::ops::Range<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ScenarioFile {
    board: Spanned<Boards>,
    description: String,
    timeout: Spanned<Period>,
    expect: Spanned<Vec<ExpectFile>>,
    #[serde(default)]
    forbid: Vec<Spanned<String>>,
    #[serde(default)]
    input: Vec<Input>,
    #[serde(default = "yes")]
    icount: bool,
    vm: Option<Spanned<Vec<VmSpec>>>,
    /// Channels between the scenario's own VMs.
    channel: Option<Spanned<Vec<ChannelSpec>>>,
    /// Networks between the scenario's own VMs.
    network: Option<Spanned<Vec<NetworkSpec>>>,
    machine: Option<String>,
    selftest: Option<Spanned<String>>,
    cpus: Option<Spanned<u32>>,
    #[serde(default)]
    boot: Boot,
    compose: Option<ComposeOverride>,
    disk: Option<Spanned<String>>,
    virtio_mmio_version: Option<Spanned<u32>>,
    disk_check: Option<Spanned<super::disk_check::DiskCheckFile>>,
}

/// One `input` entry: `send` is typed once a serial line contains `after`
/// (escapes as in TOML: "\n" is Enter).
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub after: String,
    pub send: String,
}

/// One `expect` entry: a line, or a list of lines that may come in any
/// order among themselves (after the entries before it, before the ones
/// after), for events whose order the scenario does not fix.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum Expect {
    Line(String),
    AnyOrder(Vec<String>),
}

/// An `expect` entry as written: a line, lines in any order, or
/// `{ each = "lo..hi", lines = [...] }`, which stands for each line with
/// its `{}` replaced by every integer lo..=hi, all in any order (one
/// line per VM of a counted `[[vm]]`, say).
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(untagged)]
enum ExpectFile {
    Plain(Expect),
    Each(EachSpec),
}

#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct EachSpec {
    each: String,
    lines: Vec<String>,
}

/// Most lines one `each` entry may stand for.
const EACH_MAX: u64 = 1 << 20;

impl ExpectFile {
    /// The entry, an `each` expanded; or what is wrong with it.
    fn expand(self) -> Result<Expect, String> {
        let spec = match self {
            ExpectFile::Plain(e) => return Ok(e),
            ExpectFile::Each(spec) => spec,
        };
        const FORM: &str = "each is \"lo..hi\": two decimal integers, lo <= hi";
        let (lo, hi) = spec.each.split_once("..").ok_or(FORM)?;
        let (lo, hi): (u64, u64) = match (lo.trim().parse(), hi.trim().parse()) {
            (Ok(lo), Ok(hi)) if lo <= hi => (lo, hi),
            _ => return Err(format!("{:?}: {FORM}", spec.each)),
        };
        if let Some(line) = spec.lines.iter().find(|l| !l.contains("{}")) {
            return Err(format!(
                "{line:?} has no {{}} for the number, so each copy would be the same line"
            ));
        }
        if spec.lines.is_empty() || (hi - lo + 1) * spec.lines.len() as u64 > EACH_MAX {
            return Err(format!(
                "an each entry stands for 1 to {EACH_MAX} lines; this one for {}",
                (hi - lo + 1) * spec.lines.len() as u64
            ));
        }
        Ok(Expect::AnyOrder(
            (lo..=hi)
                .flat_map(|n| {
                    let n = n.to_string();
                    spec.lines.iter().map(move |l| l.replace("{}", &n))
                })
                .collect(),
        ))
    }
}

impl Expect {
    pub fn lines(&self) -> &[String] {
        match self {
            Expect::Line(line) => std::slice::from_ref(line),
            Expect::AnyOrder(lines) => lines,
        }
    }
}

impl From<&str> for Expect {
    fn from(line: &str) -> Self {
        Expect::Line(line.to_string())
    }
}

/// `board = "b"`, or a list of boards to run the same scenario on.
#[derive(Deserialize)]
#[serde(untagged)]
enum Boards {
    One(String),
    Many(Vec<String>),
}

/// How a scenario boots its image.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Boot {
    /// QEMU loads `tessera.elf` itself (`-kernel`) and enters it at EL2.
    #[default]
    Kernel,
    /// Debian's real u-boot is QEMU's firmware and finds `boot.scr` on the
    /// SD-card image, attached as a virtio disk, by itself.
    UBoot,
    /// The same, with a card whose `boot.scr` boots the FIT image, whose
    /// hashes u-boot checks.
    UBootFit,
}

/// A scenario's `[compose]`: the parts of the board's it replaces, with the
/// same syntax and checks.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct ComposeOverride {
    pub scheduler: Option<Spanned<String>>,
    pub time_slice: Option<Spanned<Period>>,
    /// The ARINC 653 major frame. A scenario that sets `scheduler` and not
    /// `windows` has none: the board's windows name the board's VMs, and
    /// belong to the board's scheduler.
    pub windows: Option<Spanned<Vec<WindowSpec>>>,
    /// Gone, as the board's: refused with a message of its own.
    pub vgic: Option<Spanned<toml::Value>>,
    /// Gone, as the board's: refused with a message of its own.
    pv: Option<Spanned<toml::Value>>,
}

/// The CPU counts a scenario may run its board with: QEMU virt's GICv2
/// takes at most 8 CPUs.
pub const CPUS: std::ops::RangeInclusive<u32> = 1..=8;

/// Self-tests the image knows (see images/tessera).
pub const SELFTESTS: &[&str] = &["el2-fault", "wx-text", "wx-data", "stack-guard"];

fn yes() -> bool {
    true
}

impl Scenario {
    /// Loads the scenario's board; an unknown board is reported at the
    /// scenario's `board = ...` line.
    pub fn load_board(&self, boards_dir: &Path) -> Result<Profile, ProfileError> {
        if let Err((message, help)) = board_path(boards_dir, &self.board) {
            let src = Source {
                path: &self.path,
                text: &self.text,
            };
            return Err(src
                .error(self.board_span.clone(), "board", message)
                .with_help(help));
        }
        load_board(boards_dir, &self.board)
    }

    /// The same scenario on `board` (one of [`Scenario::boards`]).
    pub fn on_board(&self, board: &str) -> Scenario {
        Scenario {
            board: board.to_string(),
            ..self.clone()
        }
    }

    /// Validates and lays out `profile` (the scenario's board) with the
    /// scenario's VMs, `[compose]` and `cpus` in place of the board's, like
    /// [`super::plan`]. Errors about what the scenario wrote point into the
    /// scenario file.
    pub fn plan(
        &self,
        profile: &Profile,
        known: &Known,
        name: &str,
        files: &dyn super::plan::GuestFiles,
    ) -> Result<Composition, ProfileError> {
        if let (Some(span), None) = (&self.disk_span, &profile.disk) {
            let src = Source {
                path: &self.path,
                text: &self.text,
            };
            return Err(src
                .error(
                    span.clone(),
                    "disk",
                    format!(
                        "board {} has no [disk], so nothing would read this disk",
                        self.board
                    ),
                )
                .with_help("run the scenario on a board with a [disk] section (the QEMU boards have one), or remove disk"));
        }
        let over = super::plan::Override {
            src: Source {
                path: &self.path,
                text: &self.text,
            },
            compose: self.compose.as_ref(),
            cpus: self.cpus,
        };
        super::plan::plan_with(profile, Some(over), self.vms.as_ref(), known, name, files)
    }
}

/// Reads and checks a scenario file. Its VMs are checked one by one here,
/// and against the board by [`super::plan`].
pub fn load_scenario(path: &Path) -> Result<Scenario, ProfileError> {
    let text = read(path)?;
    let src = Source { path, text: &text };
    let file: ScenarioFile = src.parse()?;

    if file.timeout.get_ref().0.is_zero() {
        return Err(src
            .error(file.timeout.span(), "timeout", "the timeout is zero")
            .with_help("give the scenario time to boot, e.g. timeout = \"60s\""));
    }
    let expect_span = file.expect.span();
    let expect = file
        .expect
        .into_inner()
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            e.expand().map_err(|why| {
                src.error(
                    expect_span.clone(),
                    "expect",
                    format!("expect #{}: {why}", i + 1),
                )
                .with_help("e.g. { each = \"0..4095\", lines = [\"[t{}] tiny: hello\"] }")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let file_expect = Spanned::new(expect_span, expect);
    if file_expect.get_ref().is_empty() {
        return Err(src
            .error(
                file_expect.span(),
                "expect",
                "nothing is expected, so the scenario proves nothing",
            )
            .with_help("list the lines the serial port must show, in order"));
    }
    // An empty string would match anything: a forbid would always fail, an expect never.
    if file_expect
        .get_ref()
        .iter()
        .any(|e| e.lines().is_empty() || e.lines().iter().any(String::is_empty))
    {
        return Err(src
            .error(file_expect.span(), "expect", "an expected line is empty")
            .with_help("remove the \"\" or [] entry"));
    }
    if let Some(empty) = file.forbid.iter().find(|f| f.get_ref().is_empty()) {
        return Err(src
            .error(
                empty.span(),
                "forbid",
                "a forbidden line is empty, so every run would fail",
            )
            .with_help("remove the \"\" entry"));
    }
    let boards = match file.board.get_ref() {
        Boards::One(board) => vec![board.clone()],
        Boards::Many(boards) => boards.clone(),
    };
    if boards.is_empty() || boards.iter().any(String::is_empty) {
        return Err(src
            .error(file.board.span(), "board", "a board name is empty")
            .with_help(
                "write the file stem of a profile under boards/, e.g. board = \"qemu-virt-a64\"",
            ));
    }

    if let Some(selftest) = &file.selftest {
        if !SELFTESTS.contains(&selftest.get_ref().as_str()) {
            return Err(src
                .error(
                    selftest.span(),
                    "selftest",
                    format!("unknown self-test `{}`", selftest.get_ref()),
                )
                .with_help(format!("self-tests: {}", SELFTESTS.join(", "))));
        }
    }
    if let Some(compose) = &file.compose {
        if let Some(pv) = &compose.pv {
            return Err(check::pv_gone(src, pv));
        }
        if let Some(slice) = &compose.time_slice {
            if slice.get_ref().0.is_zero() {
                return Err(src
                    .error(slice.span(), "compose.time-slice", "the time slice is zero")
                    .with_help("give the scheduler a slice such as \"2ms\""));
            }
        }
    }
    if let Some(cpus) = &file.cpus {
        let n = *cpus.get_ref();
        if !CPUS.contains(&n) {
            return Err(src
                .error(
                    cpus.span(),
                    "cpus",
                    format!(
                        "{n} CPUs is outside {}..={}",
                        CPUS.start(),
                        CPUS.end()
                    ),
                )
                .with_help(format!(
                    "cpus runs the board with that many CPUs (QEMU -smp), {} to {}; leave it out for the board's [board] cpus",
                    CPUS.start(),
                    CPUS.end()
                )));
        }
    }
    if let Some(disk) = &file.disk {
        if disk.get_ref().is_empty() {
            return Err(src
                .error(disk.span(), "disk", "the disk image's path is empty")
                .with_help("name a raw disk image from the workspace root, e.g. disk = \"components/disk-layout/tests/fixtures/lvm.img.gz\""));
        }
        if file.boot != Boot::Kernel {
            return Err(src
                .error(
                    disk.span(),
                    "disk",
                    "a scenario booted by u-boot has its SD card as its disk",
                )
                .with_help("remove disk, or boot = \"kernel\""));
        }
    }
    if let Some(version) = &file.virtio_mmio_version {
        if !matches!(version.get_ref(), 1 | 2) {
            return Err(src
                .error(
                    version.span(),
                    "virtio-mmio-version",
                    format!("virtio-mmio version {} does not exist", version.get_ref()),
                )
                .with_help("1 (legacy, QEMU 7.2's default) or 2"));
        }
    }
    let disk_check = match file.disk_check {
        Some(c) => Some(super::disk_check::check(
            Source { path, text: &text },
            c,
            file.disk.is_some(),
        )?),
        None => None,
    };
    // Channels link the VMs of their own file: the board's channels go with
    // the board's VMs, so a scenario that keeps those has none of its own.
    if let (None, Some(channel)) = (&file.vm, &file.channel) {
        return Err(src
            .error(
                channel.span(),
                "channel",
                "this scenario runs its board's VMs, which bring the board's channels; a scenario has channels only with [[vm]]s of its own",
            )
            .with_help("add the scenario's own [[vm]] tables, or put the channel in the board profile"));
    }
    if let (None, Some(network)) = (&file.vm, &file.network) {
        return Err(src
            .error(
                network.span(),
                "network",
                "this scenario runs its board's VMs, which bring the board's networks; a scenario has networks only with [[vm]]s of its own",
            )
            .with_help("add the scenario's own [[vm]] tables, or put the network in the board profile"));
    }
    let vms = file
        .vm
        .map(|vm| {
            VmSource::new(
                path.to_path_buf(),
                text.clone(),
                Some(vm),
                file.channel,
                file.network,
            )
        })
        .transpose()?;
    if let Some(vms) = &vms {
        check::each_vm(vms)?;
        channels::check(vms)?;
        networks::check(vms)?;
    }
    Ok(Scenario {
        path: path.to_path_buf(),
        name: super::file_stem(path),
        board: boards[0].clone(),
        boards,
        description: file.description,
        timeout: file.timeout.get_ref().0,
        expect: file_expect.into_inner(),
        forbid: file.forbid.into_iter().map(Spanned::into_inner).collect(),
        input: file.input,
        icount: file.icount,
        vms,
        machine: file.machine,
        selftest: file.selftest.map(Spanned::into_inner),
        cpus: file.cpus.map(Spanned::into_inner),
        boot: file.boot,
        disk_span: file.disk.as_ref().map(Spanned::span),
        disk: file.disk.map(|d| PathBuf::from(d.into_inner())),
        virtio_mmio_version: file.virtio_mmio_version.map(Spanned::into_inner),
        disk_check,
        compose: file.compose,
        board_span: file.board.span(),
        text,
    })
}
