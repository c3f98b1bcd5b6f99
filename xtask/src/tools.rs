//! Outside programs the commands need, and installing them where we may.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};

/// A program (or, with a `/` in `binary`, a file at that path) and the
/// Debian package that provides it.
pub struct Tool {
    pub binary: String,
    pub package: &'static str,
}

pub fn dumpimage() -> Tool {
    Tool {
        binary: "dumpimage".into(),
        package: "u-boot-tools",
    }
}

/// mtools, to read the SD-card image's FAT partition back (`mdir`, `mcopy`).
pub fn mtools() -> Tool {
    Tool {
        binary: "mdir".into(),
        package: "mtools",
    }
}

/// `dtc`, to read the FIT (a device tree) back.
pub fn dtc() -> Tool {
    Tool {
        binary: "dtc".into(),
        package: "device-tree-compiler",
    }
}

/// GNU `cpio`, to list the initramfs back.
pub fn cpio() -> Tool {
    Tool {
        binary: "cpio".into(),
        package: "cpio",
    }
}

/// `fdisk -l`, to read the SD-card image's partition table back.
pub fn fdisk() -> Tool {
    Tool {
        binary: "fdisk".into(),
        package: "fdisk",
    }
}

/// lvm2: `pvck` reads a disk's LVM metadata back; `pvcreate` and friends
/// write the guests' disk (ci/disks/make-guest-disk.sh).
pub fn lvm2() -> Tool {
    Tool {
        binary: "pvck".into(),
        package: "lvm2",
    }
}

/// e2fsprogs: `mkfs.ext4 -d` makes the guests' filesystems, `e2fsck` and
/// `debugfs` read them back after a scenario.
pub fn e2fsprogs() -> Vec<Tool> {
    ["mkfs.ext4", "e2fsck", "debugfs"]
        .into_iter()
        .map(|binary| Tool {
            binary: binary.into(),
            package: "e2fsprogs",
        })
        .collect()
}

/// Debian's prebuilt u-boot for QEMU `virt` (arm64); a file, not a program.
pub fn u_boot_qemu() -> Tool {
    Tool {
        binary: "/usr/lib/u-boot/qemu_arm64/u-boot.bin".into(),
        package: "u-boot-qemu",
    }
}

/// QEMU as a profile names it; Debian's `qemu-system-arm` provides both
/// `qemu-system-arm` and `qemu-system-aarch64`.
pub fn qemu(binary: &str) -> Tool {
    Tool {
        binary: binary.into(),
        package: "qemu-system-arm",
    }
}

/// The program's path in `PATH`, if any; a name with a `/` is a file path
/// and is found if that file exists.
pub fn find(binary: &str) -> Option<PathBuf> {
    if binary.contains('/') {
        return Path::new(binary).is_file().then(|| binary.into());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(binary))
        .find(|path| path.is_file())
}

/// Makes sure every tool is there: as root on Debian/Ubuntu, installs the
/// missing ones with apt-get; elsewhere fails with the command to run.
pub fn ensure(tools: &[Tool]) -> Result<()> {
    let missing: Vec<&Tool> = tools.iter().filter(|t| find(&t.binary).is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    packages.sort_unstable();
    packages.dedup();
    let names: Vec<&str> = missing.iter().map(|t| t.binary.as_str()).collect();
    let install = format!(
        "apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    if !(is_root() && is_debian_like()) {
        bail!(
            "missing {}; install with:\n    sudo apt-get update && sudo {install}",
            names.join(", ")
        );
    }
    eprintln!(
        "xtask: missing {}, running apt-get update && {install}",
        names.join(", ")
    );
    let sh = Shell::new()?;
    // A mirror mid-sync fails `apt-get update` for one index file; the
    // install below still works from the rest, or fails naming the package.
    if let Err(error) = cmd!(sh, "apt-get update").run() {
        eprintln!("xtask: {error}; installing with the lists apt has");
    }
    cmd!(
        sh,
        "apt-get install -y --no-install-recommends {packages...}"
    )
    .env("DEBIAN_FRONTEND", "noninteractive")
    .run()
    .with_context(|| format!("{install} failed"))?;
    if let Some(tool) = missing.iter().find(|t| find(&t.binary).is_none()) {
        bail!(
            "{} is still missing after installing {}",
            tool.binary,
            tool.package
        );
    }
    Ok(())
}

pub fn is_root() -> bool {
    let Ok(sh) = Shell::new() else { return false };
    cmd!(sh, "id -u")
        .quiet()
        .read()
        .is_ok_and(|uid| uid.trim() == "0")
}

fn is_debian_like() -> bool {
    std::fs::read_to_string("/etc/os-release").is_ok_and(|text| {
        text.lines().any(|line| {
            let (key, value) = line.split_once('=').unwrap_or_default();
            let value = value.trim_matches('"');
            (key == "ID" || key == "ID_LIKE")
                && value
                    .split_whitespace()
                    .any(|id| id == "debian" || id == "ubuntu")
        })
    })
}

/// What `rust-toolchain.toml` asks of the toolchain beyond the compiler.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RustNeeds {
    pub targets: Vec<String>,
    pub components: Vec<String>,
}

impl RustNeeds {
    /// Reads `[toolchain] targets` and `components` from the text of a
    /// `rust-toolchain.toml`.
    pub fn parse(text: &str) -> Result<Self> {
        let table: toml::Table = text.parse()?;
        let toolchain = table.get("toolchain").and_then(|t| t.as_table());
        let list = |key: &str| -> Result<Vec<String>> {
            let Some(value) = toolchain.and_then(|t| t.get(key)) else {
                return Ok(Vec::new());
            };
            value
                .as_array()
                .and_then(|items| {
                    items
                        .iter()
                        .map(|item| item.as_str().map(String::from))
                        .collect()
                })
                .with_context(|| format!("[toolchain] {key} is not a list of strings"))
        };
        Ok(RustNeeds {
            targets: list("targets")?,
            components: list("components")?,
        })
    }

    /// What of `self` is not in the installed lists; rustup lists a component
    /// with its host triple (`clippy-x86_64-unknown-linux-gnu`).
    pub fn missing(&self, targets: &[String], components: &[String]) -> RustNeeds {
        let has_component = |name: &String| {
            components.iter().any(|c| {
                c == name
                    || c.strip_prefix(name.as_str())
                        .is_some_and(|r| r.starts_with('-'))
            })
        };
        RustNeeds {
            targets: self
                .targets
                .iter()
                .filter(|t| !targets.contains(t))
                .cloned()
                .collect(),
            components: self
                .components
                .iter()
                .filter(|c| !has_component(c))
                .cloned()
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty() && self.components.is_empty()
    }

    /// The rustup commands that install `self` on `toolchain` (without one,
    /// on the toolchain rustup picks in the workspace).
    pub fn rustup_commands(&self, toolchain: Option<&str>) -> Vec<Vec<String>> {
        let mut commands = Vec::new();
        for (what, names) in [("target", &self.targets), ("component", &self.components)] {
            if !names.is_empty() {
                let mut command: Vec<String> = vec!["rustup".into(), what.into(), "add".into()];
                if let Some(toolchain) = toolchain {
                    command.extend(["--toolchain".into(), toolchain.into()]);
                }
                command.extend(names.iter().cloned());
                commands.push(command);
            }
        }
        commands
    }
}

/// Makes sure the toolchain that runs us has the targets and components
/// `rust-toolchain.toml` names, before anything is compiled for a board.
/// rustup fetches them on a toolchain's first install only, and xtask runs
/// cargo by its path, past the rustup proxy: a machine that already had the
/// toolchain has none of the bare-metal targets.
pub fn ensure_rust(workspace_root: &Path) -> Result<()> {
    let file = workspace_root.join("rust-toolchain.toml");
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let needs = RustNeeds::parse(&text).with_context(|| format!("{}", file.display()))?;
    let sh = Shell::new()?;
    sh.change_dir(workspace_root);
    if find("rustup").is_none() {
        return ensure_rust_without_rustup(&sh, &needs);
    }
    // rustup names the toolchain it picked for this cargo in the environment;
    // run directly, ask it which one the workspace selects.
    let toolchain = match std::env::var("RUSTUP_TOOLCHAIN") {
        Ok(name) => name,
        Err(_) => {
            let active = cmd!(sh, "rustup show active-toolchain").quiet().read()?;
            active
                .split_whitespace()
                .next()
                .context("`rustup show active-toolchain` named no toolchain")?
                .to_string()
        }
    };
    let installed = |what: &str| -> Result<Vec<String>> {
        Ok(
            cmd!(sh, "rustup {what} list --installed --toolchain {toolchain}")
                .quiet()
                .read()
                .with_context(|| format!("listing the {what}s of toolchain {toolchain}"))?
                .lines()
                .map(|line| line.trim().to_string())
                .collect(),
        )
    };
    let missing = needs.missing(&installed("target")?, &installed("component")?);
    for command in missing.rustup_commands(Some(&toolchain)) {
        eprintln!(
            "xtask: installing what rust-toolchain.toml names and {toolchain} lacks: {}",
            command.join(" ")
        );
        let (program, args) = command.split_first().expect("a command has a program");
        cmd!(sh, "{program} {args...}")
            .quiet()
            .run()
            .with_context(|| format!("`{}` failed", command.join(" ")))?;
    }
    Ok(())
}

/// Without rustup, looks for the targets in the compiler's sysroot and the
/// components beside cargo, and says what to install.
fn ensure_rust_without_rustup(sh: &Shell, needs: &RustNeeds) -> Result<()> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = PathBuf::from(
        cmd!(sh, "{rustc} --print sysroot")
            .quiet()
            .read()
            .context("running rustc to find its sysroot")?,
    );
    let targets: Vec<String> = needs
        .targets
        .iter()
        .filter(|t| sysroot.join("lib/rustlib").join(t).is_dir())
        .cloned()
        .collect();
    let component_binary = |name: &str| match name {
        "clippy" => "cargo-clippy".to_string(),
        other => other.to_string(),
    };
    let components: Vec<String> = needs
        .components
        .iter()
        .filter(|c| find(&component_binary(c)).is_some())
        .cloned()
        .collect();
    let missing = needs.missing(&targets, &components);
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "this Rust toolchain ({}) lacks {}, which rust-toolchain.toml names, and there is no rustup \
         to add them. Install rustup, then run in this workspace:\n    {}",
        sysroot.display(),
        [missing.targets.join(", "), missing.components.join(", ")]
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" and "),
        missing
            .rustup_commands(None)
            .iter()
            .map(|c| c.join(" "))
            .collect::<Vec<_>>()
            .join("\n    ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    const FILE: &str = r#"
[toolchain]
channel = "stable"
components = ["rustfmt", "clippy"]
targets = ["aarch64-unknown-none", "armv7a-none-eabi"]
"#;

    #[test]
    fn reads_targets_and_components() {
        let needs = RustNeeds::parse(FILE).unwrap();
        assert_eq!(needs.targets, ["aarch64-unknown-none", "armv7a-none-eabi"]);
        assert_eq!(needs.components, ["rustfmt", "clippy"]);
        assert!(RustNeeds::parse("[toolchain]\ntargets = [1]").is_err());
        assert_eq!(RustNeeds::parse("").unwrap(), RustNeeds::default());
    }

    #[test]
    fn a_fresh_toolchain_misses_every_target_and_gets_one_command_each() {
        let needs = RustNeeds::parse(FILE).unwrap();
        // What `rustup ... list --installed` prints on a fresh minimal toolchain.
        let missing = needs.missing(
            &strings(&["x86_64-unknown-linux-gnu"]),
            &strings(&[
                "cargo-x86_64-unknown-linux-gnu",
                "rustc-x86_64-unknown-linux-gnu",
            ]),
        );
        assert_eq!(missing, needs);
        assert_eq!(
            missing.rustup_commands(Some("stable-x86_64-unknown-linux-gnu")),
            [
                strings(&[
                    "rustup",
                    "target",
                    "add",
                    "--toolchain",
                    "stable-x86_64-unknown-linux-gnu",
                    "aarch64-unknown-none",
                    "armv7a-none-eabi"
                ]),
                strings(&[
                    "rustup",
                    "component",
                    "add",
                    "--toolchain",
                    "stable-x86_64-unknown-linux-gnu",
                    "rustfmt",
                    "clippy"
                ]),
            ]
        );
    }

    #[test]
    fn installed_ones_are_not_missing() {
        let needs = RustNeeds::parse(FILE).unwrap();
        let missing = needs.missing(
            &strings(&["x86_64-unknown-linux-gnu", "armv7a-none-eabi"]),
            &strings(&[
                "clippy-x86_64-unknown-linux-gnu",
                "rustfmt-preview",
                "rustfmt",
            ]),
        );
        assert_eq!(missing.targets, ["aarch64-unknown-none"]);
        assert!(missing.components.is_empty());
        // A component whose name merely starts the same is another component.
        let missing = needs.missing(&[], &strings(&["clippyx", "rustfmtish-x86_64"]));
        assert_eq!(missing.components, ["rustfmt", "clippy"]);
        assert!(needs.missing(&needs.targets, &needs.components).is_empty());
        assert!(RustNeeds::default().rustup_commands(None).is_empty());
    }
}
