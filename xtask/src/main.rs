//! `cargo xtask <command>`: see `cargo xtask --help`.

use anyhow::Result;
use clap::{Parser, Subcommand};
use config::profile;
use xtask::workspace::Workspace;
use xtask::{
    bench, compose, debian, diskcheck, qemu, scenario, sdcard, test, tools, DEFAULT_BOARD,
};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Tessera composer and developer commands"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What `cargo xtask run` boots when asked for nothing else.
const DEMO_SCENARIO: &str = "demo";

#[derive(Subcommand)]
enum Command {
    /// Compose a board's image into target/images/<board>/
    Build {
        #[arg(long, default_value = DEFAULT_BOARD)]
        board: String,
    },
    /// Build an image and boot it in QEMU, serial on this terminal: by
    /// default the demo (ci/scenarios/demo.toml: Linux beside a real-time
    /// guest on the default board); a board with its own VMs; or any scenario
    Run {
        #[arg(long, conflicts_with = "scenario")]
        board: Option<String>,
        #[arg(long)]
        scenario: Option<String>,
    },
    /// Host unit tests, the uImage check and every QEMU scenario in ci/scenarios
    Test {
        /// Run only the scenarios whose names contain one of these (and
        /// skip the host tests and the uImage check)
        scenarios: Vec<String>,
    },
    /// List the boards, one line each
    Boards,
    /// The property tests of guest-controlled input (host tests named
    /// fuzz_*), longer than `test` runs them and with a fresh seed
    Fuzz {
        /// Cases per property
        #[arg(long, default_value_t = 20_000)]
        cases: u32,
        /// Replay a seed a run printed
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Figures from ci/bench*.toml under icount, on a QEMU board
    Bench {
        #[arg(long, default_value = DEFAULT_BOARD)]
        board: String,
        /// Only this group of figures ("disk", "channel", "net" or "memory"), for working on it
        #[arg(long, hide = true)]
        only: Option<String>,
    },
    /// Build a board's image and its SD card, target/images/<board>/sdcard.img
    Image {
        #[arg(long, default_value = DEFAULT_BOARD)]
        board: String,
    },
    /// Build a board's SD card and write it to a device or file
    Flash {
        #[arg(long, default_value = DEFAULT_BOARD)]
        board: String,
        /// A block device (/dev/sdX, /dev/mmcblkN) or a file
        #[arg(long)]
        device: std::path::PathBuf,
        /// Write a block device even if it is mounted or not removable
        #[arg(long)]
        force: bool,
    },
    /// Remake the guests' disk, ci/disks/guest.img.gz, with sfdisk, mkfs.ext4
    /// and lvm2 (ci/disks/make-guest-disk.sh; needs root and loop devices)
    GuestDisk,
    /// Fetch Debian's kernel and busybox with apt (private state under
    /// target/debian) and build the initramfs; print their paths
    LinuxAssets {
        #[arg(long, value_enum, default_value_t = debian::Flavour::Arm64)]
        flavour: debian::Flavour,
    },
}

fn main() {
    if let Err(error) = run(Cli::parse().command) {
        eprintln!("error: {error}");
        for cause in error.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(1);
    }
}

fn run(command: Command) -> Result<()> {
    let ws = Workspace::locate()?;
    // Every command but these compiles for a board's target.
    if !matches!(
        command,
        Command::Boards | Command::Fuzz { .. } | Command::LinuxAssets { .. } | Command::GuestDisk
    ) {
        tools::ensure_rust(&ws.root)?;
    }
    match command {
        Command::Build { board } => {
            let profile = compose::load_board(&ws, &board)?;
            compose::build(&ws, &profile, None, &board)?;
        }
        Command::Run { board, scenario } => match (board, scenario) {
            (Some(board), _) => {
                let profile = compose::load_board(&ws, &board)?;
                // Fail on a board without [qemu] before compiling anything.
                let spec = qemu::spec(&profile)?;
                let built = compose::build(&ws, &profile, None, &board)?;
                qemu::run_interactive(spec, &built, None)?;
            }
            (None, scenario) => {
                let name = scenario.as_deref().unwrap_or(DEMO_SCENARIO);
                scenario::run_interactive(&ws, name)?;
            }
        },
        Command::Test { scenarios } => test::run(&ws, &scenarios)?,
        Command::Boards => boards(&ws),
        Command::Fuzz { cases, seed } => test::fuzz(&ws, cases, seed)?,
        Command::Bench { board, only } => bench::run(&ws, &board, only.as_deref())?,
        Command::Image { board } => {
            image(&ws, &board)?;
        }
        Command::Flash {
            board,
            device,
            force,
        } => {
            let card = image(&ws, &board)?;
            let bytes = sdcard::flash(&card, &device, force)?;
            println!(
                "wrote {bytes} bytes ({} MiB) of {} to {}",
                bytes >> 20,
                card.display(),
                device.display()
            );
        }
        Command::GuestDisk => diskcheck::make_guest_disk(&ws)?,
        Command::LinuxAssets { flavour } => {
            let assets = debian::linux_assets(&ws, flavour)?;
            println!("version {}", assets.version);
            for path in [&assets.kernel, &assets.initrd] {
                let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                println!("{} ({size} bytes)", path.display());
            }
        }
    }
    Ok(())
}

/// Builds the board's image and its SD card; prints what is on the card.
fn image(ws: &Workspace, board: &str) -> Result<std::path::PathBuf> {
    let profile = compose::load_board(ws, board)?;
    let built = compose::build(ws, &profile, None, board)?;
    let card = sdcard::write_sdcard(&built)?;
    println!("{}", card.display());
    for file in sdcard::card_files(&built.dir)? {
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        println!("  {name:<16} {size:>9} bytes");
    }
    Ok(card)
}

/// One line per board; a board whose profile does not load says why.
fn boards(ws: &Workspace) {
    for name in profile::list_boards(&ws.boards_dir()) {
        match profile::load_board(&ws.boards_dir(), &name) {
            Ok(p) => println!(
                "{name:<20} {:<8} {} cpu{}  {}",
                compose::arch_name(p.board.arch),
                p.board.cpus,
                if p.board.cpus == 1 { " " } else { "s" },
                p.board.description
            ),
            Err(error) => println!("{name:<20} (invalid profile: {error})"),
        }
    }
}
