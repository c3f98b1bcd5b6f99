//! Where things are: the workspace, its target directory and the outputs
//! the composer writes there.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Where guests built against older ABIs are kept, one folder a version.
pub const COMMITTED_GUESTS: &str = "ci/abi";

pub struct Workspace {
    pub root: PathBuf,
    /// `CARGO_TARGET_DIR` if set, else `<root>/target`; handed to every
    /// cargo run so nested builds land in the same place.
    pub target: PathBuf,
}

impl Workspace {
    pub fn locate() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask is not inside a workspace")?
            .to_path_buf();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            // Cargo reads a relative CARGO_TARGET_DIR from the current directory.
            Some(dir) => std::env::current_dir()?.join(dir),
            None => root.join("target"),
        };
        Ok(Workspace { root, target })
    }

    pub fn boards_dir(&self) -> PathBuf {
        self.root.join("boards")
    }

    pub fn scenarios_dir(&self) -> PathBuf {
        self.root.join("ci").join("scenarios")
    }

    pub fn bench_scenario(&self) -> PathBuf {
        self.root.join("ci").join("bench.toml")
    }

    /// What a profile's `guest` may name: a crate under `guests/`, or a
    /// committed binary ([`Workspace::committed_guests`]).
    pub fn guest_names(&self) -> Result<Vec<String>> {
        let mut names = self.guest_crates()?;
        names.extend(self.committed_guests()?);
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The guest crates under `guests/` (the runtime aside).
    pub fn guest_crates(&self) -> Result<Vec<String>> {
        let dir = self.root.join("guests");
        let mut names = Vec::new();
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_dir() && name != "rt" {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The guests committed as built against an older ABI, which every
    /// later Tessera must run unchanged: `ci/abi/<version>/<guest>.<width>.bin`
    /// is guest `abi-<version>/<guest>`.
    fn committed_guests(&self) -> Result<Vec<String>> {
        let abi = self.root.join(COMMITTED_GUESTS);
        let mut names = Vec::new();
        let Ok(versions) = std::fs::read_dir(&abi) else {
            return Ok(names);
        };
        for version in versions {
            let version = version?;
            let dir = version.path();
            for file in
                std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
            {
                let file = file?.file_name().to_string_lossy().into_owned();
                if let Some((guest, _width)) =
                    file.strip_suffix(".bin").and_then(|f| f.rsplit_once('.'))
                {
                    names.push(format!(
                        "abi-{}/{guest}",
                        version.file_name().to_string_lossy()
                    ));
                }
            }
        }
        Ok(names)
    }

    /// The committed binary of guest `name` at `width`, if `name` is one of
    /// [`Workspace::committed_guests`] (`abi-1.2/hello`).
    pub fn committed_guest(&self, name: &str, width: &str) -> Option<PathBuf> {
        let (version, guest) = name.strip_prefix("abi-")?.split_once('/')?;
        Some(
            self.root
                .join(COMMITTED_GUESTS)
                .join(version)
                .join(format!("{guest}.{width}.bin")),
        )
    }

    /// Inputs of the image build of composition `name` (composition.toml, guests/).
    pub fn compose_dir(&self, name: &str) -> PathBuf {
        self.target.join("compose").join(name)
    }

    /// The deliverables of composition `name`.
    pub fn images_dir(&self, name: &str) -> PathBuf {
        self.target.join("images").join(name)
    }

    pub fn scenario_logs_dir(&self) -> PathBuf {
        self.target.join("scenarios")
    }

    /// Where `cargo build --release --target <triple>` puts binaries.
    pub fn release_dir(&self, triple: &str) -> PathBuf {
        self.target.join(triple).join("release")
    }

    /// The cargo that runs us, so nested builds use the same toolchain.
    pub fn cargo(&self) -> String {
        std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
    }
}

/// Reads a file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes a file and creates its directory, naming it in the error.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_guests_are_named_by_abi_version() {
        let ws = Workspace::locate().unwrap();
        let names = ws.guest_names().unwrap();
        for guest in [
            "abi-1.2/hello",
            "abi-1.2/smp",
            "abi-1.3/chan",
            "hello",
            "smp",
        ] {
            assert!(names.iter().any(|n| n == guest), "{guest} in {names:?}");
        }
        // Only crates are built and linted.
        let crates = ws.guest_crates().unwrap();
        assert!(crates.iter().all(|c| !c.contains('/')), "{crates:?}");
        assert!(crates.iter().any(|c| c == "hello"));
        assert_eq!(
            ws.committed_guest("abi-1.2/hello", "aarch32"),
            Some(ws.root.join("ci/abi/1.2/hello.aarch32.bin"))
        );
        assert!(ws
            .committed_guest("abi-1.2/smp", "aarch64")
            .unwrap()
            .exists());
        assert_eq!(ws.committed_guest("hello", "aarch64"), None);
        assert_eq!(ws.committed_guest("abi-1.2", "aarch64"), None);
    }
}
