//! Board profiles (`boards/<board>.toml`) and QEMU scenario files
//! (`ci/scenarios/*.toml`): parsing, validation with located messages, and
//! the layout that turns a profile into a [`Composition`].

mod channels;
mod check;
mod count;
mod disk_check;
mod disks;
mod error;
mod linux;
mod networks;
mod plan;
mod scenario;
mod schedule;
mod spec;
mod units;

pub use crate::composition::Composition;
pub use channels::{CHANNEL_FIRST_INTID, CHANNEL_SIZE_MAX, CHANNEL_STATE_PAGE, GUEST_CHANNEL_BASE};
pub use count::{COUNT_MAX, INDEX as COUNT_INDEX};
pub use disk_check::{DiskCheck, Ext4Check, FileCheck, FileWant};
pub use error::ProfileError;
pub use networks::CMDLINE_WORD as NET_CMDLINE_WORD;
pub use plan::{heap_for, plan, GuestFiles, LinuxFiles, HEAP_PER_VM, VMS_IN_REGION};
pub use scenario::{load_scenario, Boot, Expect, Input, Scenario};
pub use spec::{
    Board, BoardSpans, ChannelSpec, ComposeSpec, DiskSpec, GicSpec, MemorySpec, NetworkSpec,
    QemuSpec, RamSpec, TimerSpec, UartSpec, VmDiskSpec, VmSource, VmSpec, WindowSpec,
};
pub use units::{format_size, Period, Size};

use error::{did_you_mean, Source};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A parsed board profile. Board-level checks have passed; the VMs are
/// checked against the board by [`plan`].
#[derive(Debug, Clone)]
pub struct Profile {
    pub path: PathBuf,
    pub text: String,
    pub board: Board,
    pub board_spans: BoardSpans,
    pub memory: MemorySpec,
    pub uart: UartSpec,
    /// `[disk]`, if the board has one.
    pub disk: Option<DiskSpec>,
    pub gic: GicSpec,
    pub timer: TimerSpec,
    pub qemu: Option<QemuSpec>,
    pub compose: ComposeSpec,
    /// The board's own `[[vm]]`s.
    pub vms: VmSource,
}

impl Profile {
    /// The board's name: the profile's file stem.
    pub fn stem(&self) -> String {
        file_stem(&self.path)
    }

    fn source(&self) -> Source<'_> {
        Source {
            path: &self.path,
            text: &self.text,
        }
    }
}

/// The file as written; `Profile` adds where it came from.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ProfileFile {
    board: spec::BoardFile,
    memory: MemorySpec,
    uart: UartSpec,
    disk: Option<DiskSpec>,
    gic: GicSpec,
    timer: TimerSpec,
    qemu: Option<QemuSpec>,
    compose: ComposeSpec,
    vm: Option<Spanned<Vec<VmSpec>>>,
    channel: Option<Spanned<Vec<ChannelSpec>>>,
    network: Option<Spanned<Vec<NetworkSpec>>>,
}

/// The names a profile may use: the components from the table
/// ([`crate::components`]), the guests from the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub schedulers: Vec<String>,
    pub uart_drivers: Vec<String>,
    pub disk_drivers: Vec<String>,
    /// Guest crates under `guests/`.
    pub guests: Vec<String>,
}

impl Known {
    /// The components in the table, and the guests xtask found.
    pub fn builtin(guests: Vec<String>) -> Known {
        let names = |kind| {
            crate::components::names(kind)
                .into_iter()
                .map(String::from)
                .collect()
        };
        Known {
            schedulers: names(crate::components::Kind::Scheduler),
            uart_drivers: names(crate::components::Kind::Uart),
            disk_drivers: names(crate::components::Kind::Disk),
            guests,
        }
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read(path: &Path) -> Result<String, ProfileError> {
    std::fs::read_to_string(path)
        .map_err(|err| ProfileError::whole(path, "", format!("cannot read the file: {err}")))
}

/// Board names (file stems of `*.toml`) in `boards_dir`, sorted.
pub fn list_boards(boards_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(boards_dir) else {
        return Vec::new();
    };
    let mut boards: Vec<String> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| file_stem(&p))
        .collect();
    boards.sort();
    boards
}

/// Where board `name` lives, or what to say when there is no such board.
fn board_path(boards_dir: &Path, name: &str) -> Result<PathBuf, (String, String)> {
    let boards = list_boards(boards_dir);
    if boards.iter().any(|b| b == name) {
        return Ok(boards_dir.join(format!("{name}.toml")));
    }
    let there = if boards.is_empty() {
        format!("there are no *.toml profiles in {}", boards_dir.display())
    } else {
        format!("the boards there are: {}", boards.join(", "))
    };
    let help = did_you_mean(name, &boards)
        .unwrap_or_else(|| format!("add a profile as {}/{name}.toml", boards_dir.display()));
    Err((
        format!("no board '{name}' in {}; {there}", boards_dir.display()),
        help,
    ))
}

/// Reads and checks `boards_dir/<name>.toml`.
pub fn load_board(boards_dir: &Path, name: &str) -> Result<Profile, ProfileError> {
    let path = board_path(boards_dir, name).map_err(|(message, help)| {
        ProfileError::whole(boards_dir, "board", message).with_help(help)
    })?;
    let text = read(&path)?;
    let profile = parse_profile(&path, &text)?;
    if profile.board.name != name {
        return Err(profile
            .source()
            .error(
                profile.board_spans.name.clone(),
                "board.name",
                format!(
                    "'{}' does not match the file name '{name}.toml'",
                    profile.board.name
                ),
            )
            .with_help(format!("write name = \"{name}\", or rename the file")));
    }
    Ok(profile)
}

/// Parses a profile and runs the checks that need nothing but the profile.
pub fn parse_profile(path: &Path, text: &str) -> Result<Profile, ProfileError> {
    let file: ProfileFile = Source { path, text }.parse()?;
    let (board, board_spans) = file.board.split();
    let profile = Profile {
        path: path.to_path_buf(),
        text: text.to_string(),
        board,
        board_spans,
        memory: file.memory,
        uart: file.uart,
        disk: file.disk,
        gic: file.gic,
        timer: file.timer,
        qemu: file.qemu,
        compose: file.compose,
        vms: VmSource::new(
            path.to_path_buf(),
            text.to_string(),
            file.vm,
            file.channel,
            file.network,
        )?,
    };
    check::board(&profile)?;
    check::each_vm(&profile.vms)?;
    channels::check(&profile.vms)?;
    networks::check(&profile.vms)?;
    Ok(profile)
}
