//! Debian's kernels and busybox, fetched the Debian way: apt with a private
//! state under `target/debian/apt` (its own sources.list, lists, cache and
//! status file, the foreign architectures set there), so the host's apt
//! set-up is neither read nor touched. apt checks the InRelease signatures
//! against the host's Debian archive keyring and each .deb against the signed
//! Packages index; we check the .deb's SHA256 against that index entry again
//! before every use, so a corrupted cache is caught too.
//!
//! Layout under `target/debian/`: `apt/` (apt's state), `debs/` (the .deb
//! files), `unpacked/<deb>/` (`dpkg-deb -x`), `<flavour>/initrd.gz`.

use crate::initramfs;
use crate::tools::{self, Tool};
use crate::workspace::{self, Workspace};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The kernel every Linux VM runs: Debian's ABI name and the exact package
/// version. The one in bookworm itself, not bookworm-security: point
/// releases keep it longer. When Debian drops it, `kernel` fails and lists
/// what the archive has; change these two lines.
pub const KERNEL_ABI: &str = "6.1.0-50";
pub const KERNEL_PACKAGE_VERSION: &str = "6.1.176-1";

const SUITE: &str = "bookworm";
const ARCHIVES: [(&str, &str); 2] = [
    ("http://deb.debian.org/debian", "bookworm"),
    ("http://deb.debian.org/debian-security", "bookworm-security"),
];
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Where to change the pin, for error messages.
const PIN: &str = "KERNEL_ABI and KERNEL_PACKAGE_VERSION in xtask/src/debian.rs";

/// Modules the initramfs carries, under `/lib/modules/<ver>/kernel/`, in
/// load order (each one's `depends=` comes before it; checked when built).
/// crc32c_generic is jbd2's and ext4's soft dependency. `/init` loads them
/// all, in this order, and says which are in.
pub const MODULES: &[&str] = &[
    "drivers/virtio/virtio_mmio.ko",
    "drivers/block/virtio_blk.ko",
    "lib/crc16.ko",
    "fs/mbcache.ko",
    "crypto/crc32c_generic.ko",
    "fs/jbd2/jbd2.ko",
    "fs/ext4/ext4.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebArch {
    Arm64,
    Armhf,
}

impl DebArch {
    pub const ALL: [DebArch; 2] = [DebArch::Arm64, DebArch::Armhf];

    pub fn name(self) -> &'static str {
        match self {
            DebArch::Arm64 => "arm64",
            DebArch::Armhf => "armhf",
        }
    }
}

/// A Debian kernel flavour Tessera boots, as a profile names it after
/// `debian:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Flavour {
    /// `linux-image-<abi>-arm64`: an uncompressed arm64 Image
    Arm64,
    /// `linux-image-<abi>-armmp-lpae` (armhf): a zImage
    ArmmpLpae,
}

impl Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Arm64 => "arm64",
            Flavour::ArmmpLpae => "armmp-lpae",
        }
    }

    /// `debian:arm64` → `Arm64`.
    pub fn from_kernel_spec(spec: &str) -> Option<Flavour> {
        match spec.strip_prefix("debian:")? {
            "arm64" => Some(Flavour::Arm64),
            "armmp-lpae" => Some(Flavour::ArmmpLpae),
            _ => None,
        }
    }

    pub fn arch(self) -> DebArch {
        match self {
            Flavour::Arm64 => DebArch::Arm64,
            Flavour::ArmmpLpae => DebArch::Armhf,
        }
    }

    /// The kernel release, `uname -r`: `6.1.0-50-arm64`.
    pub fn release(self) -> String {
        format!("{KERNEL_ABI}-{}", self.name())
    }

    pub fn package(self) -> String {
        format!("linux-image-{}", self.release())
    }
}

/// A kernel unpacked from its .deb.
#[derive(Debug, Clone)]
pub struct KernelFiles {
    /// `/boot/vmlinuz-<release>`: an arm64 Image or an ARM zImage.
    pub image: PathBuf,
    /// `/lib/modules/<release>`.
    pub modules_dir: PathBuf,
    /// The release, `6.1.0-50-arm64`.
    pub version: String,
}

/// What a Linux VM boots.
#[derive(Debug, Clone)]
pub struct Assets {
    pub kernel: PathBuf,
    /// gzip'd newc cpio: busybox, `/init`, [`MODULES`].
    pub initrd: PathBuf,
    pub version: String,
}

/// The kernel of `flavour` at the pinned version, fetched and unpacked (once).
pub fn kernel(ws: &Workspace, flavour: Flavour) -> Result<KernelFiles> {
    let apt = Apt::new(ws);
    let package = flavour.package();
    let arch = flavour.arch();
    let Some((entry, deb)) = apt.deb(&package, arch, Some(KERNEL_PACKAGE_VERSION))? else {
        bail!("{}", pin_gone_message(&apt, flavour)?);
    };
    let root = unpack(ws, &deb, &entry)?;
    let version = flavour.release();
    let files = KernelFiles {
        image: root.join("boot").join(format!("vmlinuz-{version}")),
        modules_dir: root.join("lib/modules").join(&version),
        version,
    };
    for path in [&files.image, &files.modules_dir] {
        if !path.exists() {
            bail!(
                "{} from {package} {KERNEL_PACKAGE_VERSION} has no {}",
                root.display(),
                path.display()
            );
        }
    }
    Ok(files)
}

/// Debian's static busybox for `arch`, at the version bookworm has (not
/// pinned: only its shell, mount and insmod are used, which do not change in
/// a stable release, and a pin would break at each point release that
/// rebuilds it). The lists are only refreshed when something is missing, so
/// the version stays put until then.
pub fn busybox(ws: &Workspace, arch: DebArch) -> Result<PathBuf> {
    let apt = Apt::new(ws);
    let (entry, deb) = apt
        .deb("busybox-static", arch, None)?
        .with_context(|| format!("busybox-static:{} is not in Debian {SUITE}", arch.name()))?;
    let binary = unpack(ws, &deb, &entry)?.join("bin/busybox");
    if !binary.is_file() {
        bail!(
            "busybox-static {} has no {}",
            entry.version,
            binary.display()
        );
    }
    Ok(binary)
}

/// Kernel and initramfs for `flavour`. A second call with nothing changed
/// touches neither the network nor the initramfs.
pub fn linux_assets(ws: &Workspace, flavour: Flavour) -> Result<Assets> {
    let kernel = kernel(ws, flavour)?;
    let busybox = busybox(ws, flavour.arch())?;
    let modules = initramfs_modules(&kernel)?;
    let init = initramfs::init_script(&kernel.version, MODULES);
    let initrd = ws
        .target
        .join("debian")
        .join(flavour.name())
        .join("initrd.gz");
    initramfs::build(&busybox, &modules, &init, &initrd)?;
    Ok(Assets {
        kernel: kernel.image,
        initrd,
        version: kernel.version,
    })
}

/// [`MODULES`] as (file, path in the initramfs), after checking that each
/// one's dependencies come before it.
fn initramfs_modules(kernel: &KernelFiles) -> Result<Vec<(PathBuf, String)>> {
    let mut order = Vec::new();
    let mut modules = Vec::new();
    for relative in MODULES {
        let src = kernel.modules_dir.join("kernel").join(relative);
        let depends = module_depends(&workspace::read(&src)?)
            .with_context(|| format!("reading {}", src.display()))?;
        order.push((module_name(relative), depends));
        let dest = format!("lib/modules/{}/kernel/{relative}", kernel.version);
        modules.push((src, dest));
    }
    check_load_order(&order).with_context(|| format!("in {}", kernel.modules_dir.display()))?;
    Ok(modules)
}

/// Fails unless every module's dependencies come before it.
pub fn check_load_order(modules: &[(String, Vec<String>)]) -> Result<()> {
    for (at, (name, depends)) in modules.iter().enumerate() {
        for dependency in depends {
            if !modules[..at]
                .iter()
                .any(|(earlier, _)| earlier == dependency)
            {
                bail!(
                    "{name} needs {dependency}, which MODULES in xtask/src/debian.rs \
                     does not list before it"
                );
            }
        }
    }
    Ok(())
}

/// `fs/jbd2/jbd2.ko` → `jbd2`, as `depends=` names modules (`-` is `_`).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.trim_end_matches(".ko").replace('-', "_")
}

/// The `depends=` list of a kernel module's `.modinfo` section.
pub fn module_depends(ko: &[u8]) -> Result<Vec<String>> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(ko).context("not an ELF file")?;
    let section = file
        .section_by_name(".modinfo")
        .context("no .modinfo section")?;
    let data = section.data().context("reading .modinfo")?;
    let depends = data
        .split(|&b| b == 0)
        .find_map(|field| field.strip_prefix(b"depends="))
        .unwrap_or_default();
    Ok(String::from_utf8_lossy(depends)
        .split(',')
        .filter(|name| !name.is_empty())
        .map(|name| name.replace('-', "_"))
        .collect())
}

/// One package's entry in a Packages index, as `apt-cache show` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageEntry {
    pub package: String,
    pub version: String,
    pub architecture: String,
    /// `pool/main/...deb`
    pub filename: String,
    pub sha256: String,
}

impl PackageEntry {
    fn from_stanza(stanza: &BTreeMap<String, String>) -> Option<PackageEntry> {
        let field = |name: &str| stanza.get(name).cloned();
        Some(PackageEntry {
            package: field("Package")?,
            version: field("Version")?,
            architecture: field("Architecture")?,
            filename: field("Filename")?,
            sha256: field("SHA256")?.to_ascii_lowercase(),
        })
    }

    /// The file name in `debs/`: the pool's, which has no epoch (no `:`).
    fn deb_name(&self) -> &str {
        self.filename.rsplit('/').next().unwrap_or(&self.filename)
    }
}

/// The stanzas of deb822 text (`apt-cache show`, a Packages file): one map
/// of field to value per paragraph; continuation lines are dropped.
pub fn parse_stanzas(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut stanzas = Vec::new();
    let mut current = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                stanzas.push(std::mem::take(&mut current));
            }
        } else if !line.starts_with([' ', '\t']) {
            if let Some((key, value)) = line.split_once(':') {
                current.insert(key.to_string(), value.trim().to_string());
            }
        }
    }
    if !current.is_empty() {
        stanzas.push(current);
    }
    stanzas
}

/// Refuses `path` unless its SHA256 is the one the Packages index gives.
pub fn check_sha256(path: &Path, expected: &str) -> Result<()> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    let actual = hex(&hasher.finalize());
    if !actual.eq_ignore_ascii_case(expected) {
        bail!(
            "{}: SHA256 {actual} is not the {expected} of Debian's Packages index",
            path.display()
        );
    }
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// apt with its whole state under `root` (`target/debian/apt`).
pub struct Apt {
    root: PathBuf,
    /// The .deb files.
    debs: PathBuf,
}

impl Apt {
    pub fn new(ws: &Workspace) -> Apt {
        let debian = ws.target.join("debian");
        Apt {
            root: debian.join("apt"),
            debs: debian.join("debs"),
        }
    }

    /// The private sources.list: bookworm and its security archive, signed
    /// by the host's Debian archive keyring.
    pub fn sources_list() -> String {
        let archs = DebArch::ALL.map(DebArch::name).join(",");
        ARCHIVES
            .iter()
            .map(|(uri, suite)| {
                format!("deb [arch={archs} signed-by={KEYRING}] {uri} {suite} main\n")
            })
            .collect()
    }

    /// apt's configuration: every file and directory apt reads or writes
    /// for these commands is under `root`, and only arm64 and armhf are
    /// known.
    pub fn options(&self) -> Vec<(String, String)> {
        let path = |relative: &str| self.root.join(relative).display().to_string();
        let mut options: Vec<(String, String)> = [
            ("Dir::Etc", path("etc")),
            ("Dir::Etc::Main", path("etc/apt.conf")),
            ("Dir::Etc::Parts", path("etc/apt.conf.d")),
            ("Dir::Etc::SourceList", path("etc/sources.list")),
            ("Dir::Etc::SourceParts", path("etc/sources.list.d")),
            ("Dir::Etc::Preferences", path("etc/preferences")),
            ("Dir::Etc::PreferencesParts", path("etc/preferences.d")),
            ("Dir::Etc::Trusted", path("etc/trusted.gpg")),
            ("Dir::Etc::TrustedParts", path("etc/trusted.gpg.d")),
            ("Dir::State", path("state")),
            ("Dir::State::Lists", path("state/lists")),
            ("Dir::State::status", path("state/status")),
            ("Dir::Cache", path("cache")),
            ("Dir::Cache::Archives", path("cache/archives")),
            ("Dir::Log", path("log")),
            ("APT::Architecture", DebArch::Arm64.name().into()),
            ("Acquire::Languages", "none".into()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();
        for arch in DebArch::ALL {
            options.push(("APT::Architectures::".into(), arch.name().into()));
        }
        options
    }

    /// The options as an apt.conf. apt reads it through `APT_CONFIG` before
    /// anything else, so `Dir::Etc::Parts` keeps it from reading the host's
    /// /etc/apt/apt.conf.d (`-o` comes too late for that).
    pub fn apt_conf(options: &[(String, String)]) -> String {
        options
            .iter()
            .map(|(key, value)| format!("{key} \"{value}\";\n"))
            .collect()
    }

    fn conf_path(&self) -> PathBuf {
        self.root.join("apt.conf")
    }

    /// Writes the configuration and the empty state apt expects.
    fn prepare(&self) -> Result<()> {
        tools::ensure(&[
            Tool {
                binary: KEYRING.into(),
                package: "debian-archive-keyring",
            },
            Tool {
                binary: "apt-get".into(),
                package: "apt",
            },
            Tool {
                binary: "dpkg-deb".into(),
                package: "dpkg",
            },
        ])?;
        for dir in [
            "etc/apt.conf.d",
            "etc/sources.list.d",
            "etc/preferences.d",
            "etc/trusted.gpg.d",
            "state/lists/partial",
            "cache/archives/partial",
            "log",
        ] {
            let dir = self.root.join(dir);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut conf = Apt::apt_conf(&self.options());
        // As root apt fetches as user _apt, who may not write under target/;
        // it would fall back to root with a warning.
        if tools::is_root() {
            conf.push_str("APT::Sandbox::User \"root\";\n");
        }
        write_if_changed(&self.conf_path(), &conf)?;
        write_if_changed(&self.root.join("etc/sources.list"), &Apt::sources_list())?;
        let status = self.root.join("state/status");
        if !status.exists() {
            workspace::write(&status, "")?;
        }
        Ok(())
    }

    /// apt-get or apt-cache with our configuration.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("APT_CONFIG", self.conf_path());
        command
    }

    fn run(&self, mut command: Command, what: &str) -> Result<String> {
        let output = command
            .output()
            .with_context(|| format!("running {what}"))?;
        if !output.status.success() {
            bail!(
                "{what} failed (APT_CONFIG={}): {}",
                self.conf_path().display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `apt-get update`, tried three times: a mirror in the middle of a sync
    /// serves index files that do not match its Release file for a minute
    /// or two. If the last try still fails but left lists, goes on with
    /// them: every .deb is checked against its entry anyway, and a package
    /// the lists lack is reported by name.
    fn update(&self) -> Result<()> {
        const PAUSES: [u64; 2] = [15, 60];
        for attempt in 0..=PAUSES.len() {
            eprintln!(
                "xtask: apt-get update of Debian {SUITE} (arm64, armhf) in {}",
                self.root.display()
            );
            let mut command = self.command("apt-get");
            command.args(["-q", "update"]);
            let status = command.status().context("running apt-get update")?;
            if status.success() {
                return Ok(());
            }
            if let Some(pause) = PAUSES.get(attempt) {
                eprintln!("xtask: apt-get update failed ({status}); trying again in {pause} s");
                std::thread::sleep(std::time::Duration::from_secs(*pause));
            }
        }
        if self.has_lists() {
            eprintln!(
                "xtask: apt-get update still fails; going on with the lists it fetched (APT_CONFIG={})",
                self.conf_path().display()
            );
            return Ok(());
        }
        bail!(
            "apt-get update failed three times (APT_CONFIG={})",
            self.conf_path().display()
        )
    }

    fn has_lists(&self) -> bool {
        std::fs::read_dir(self.root.join("state/lists")).is_ok_and(|dir| {
            dir.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
        })
    }

    /// `apt-cache show` of one package: its entries, none if the lists
    /// lack it.
    fn show(&self, spec: &str, all_versions: bool) -> Result<Vec<BTreeMap<String, String>>> {
        let mut command = self.command("apt-cache");
        command.arg("show");
        if !all_versions {
            command.arg("--no-all-versions");
        }
        command.arg(spec);
        let output = command.output().context("running apt-cache show")?;
        // apt-cache fails for an unknown name and prints nothing for an
        // unknown version.
        if !output.status.success() {
            return Ok(Vec::new());
        }
        Ok(parse_stanzas(&String::from_utf8_lossy(&output.stdout)))
    }

    /// The index entry of `package` for `arch` at `version` (or the version
    /// apt picks) and its .deb, checked against that entry. Uses the lists
    /// and .deb files it has; runs `apt-get update` (once) only when the
    /// lists lack the package or name a file the mirror no longer has.
    /// `None` if Debian does not have it.
    pub fn deb(
        &self,
        package: &str,
        arch: DebArch,
        version: Option<&str>,
    ) -> Result<Option<(PackageEntry, PathBuf)>> {
        self.prepare()?;
        let spec = match version {
            Some(version) => format!("{package}:{}={version}", arch.name()),
            None => format!("{package}:{}", arch.name()),
        };
        let mut updated = false;
        if !self.has_lists() {
            self.update()?;
            updated = true;
        }
        loop {
            let entry = self
                .show(&spec, false)?
                .first()
                .and_then(PackageEntry::from_stanza);
            let error = match entry {
                None if updated => return Ok(None),
                None => anyhow::anyhow!("{spec} is not in the lists"),
                Some(entry) => match self.fetch(&entry) {
                    Ok(deb) => return Ok(Some((entry, deb))),
                    Err(error) if updated => return Err(error),
                    Err(error) => error,
                },
            };
            eprintln!("xtask: {error:#}; refreshing the lists");
            self.update()?;
            updated = true;
        }
    }

    /// The .deb of `entry` in `debs/`, checked against the entry; fetched
    /// with `apt-get download` when missing or corrupt.
    fn fetch(&self, entry: &PackageEntry) -> Result<PathBuf> {
        let deb = self.debs.join(entry.deb_name());
        if deb.exists() {
            match check_sha256(&deb, &entry.sha256) {
                Ok(()) => return Ok(deb),
                Err(error) => eprintln!("xtask: fetching again: {error:#}"),
            }
        }
        let spec = format!("{}:{}={}", entry.package, entry.architecture, entry.version);
        // apt-get download writes into the current directory, under a name
        // of its own (with the epoch); a fresh one holds just this file.
        let partial = self.debs.join(format!("partial-{}", std::process::id()));
        if partial.exists() {
            std::fs::remove_dir_all(&partial)
                .with_context(|| format!("removing {}", partial.display()))?;
        }
        std::fs::create_dir_all(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        eprintln!("xtask: apt-get download {spec}");
        let fetched = self.download(&spec, &partial).and_then(|fetched| {
            check_sha256(&fetched, &entry.sha256)?;
            // A rename: another xtask building beside us sees the old file
            // or the whole new one.
            std::fs::rename(&fetched, &deb)
                .with_context(|| format!("moving {} to {}", fetched.display(), deb.display()))
        });
        // Gone whether it worked or not; a leftover is harmless.
        let _ = std::fs::remove_dir_all(&partial);
        fetched.map(|()| deb)
    }

    /// `apt-get download spec` into the empty directory `dir`: the .deb.
    fn download(&self, spec: &str, dir: &Path) -> Result<PathBuf> {
        let mut command = self.command("apt-get");
        command.args(["-q", "download", spec]).current_dir(dir);
        self.run(command, &format!("apt-get download {spec}"))?;
        std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .with_context(|| format!("apt-get download {spec} left no .deb"))
    }
}

/// What the archive has instead of the pinned kernel, and where the pin is.
fn pin_gone_message(apt: &Apt, flavour: Flavour) -> Result<String> {
    let meta = format!("linux-image-{}:{}", flavour.name(), flavour.arch().name());
    let mut madison = apt.command("apt-cache");
    madison.args(["madison", &meta]);
    let suites = apt.run(madison, &format!("apt-cache madison {meta}"))?;
    let available = available_kernels(&apt.show(&meta, true)?, &suites);
    Ok(kernel_gone_message(flavour, &available))
}

/// A kernel package the archive has: (package, version, suite).
pub type Available = (String, String, String);

/// The kernels the `linux-image-<flavour>` metapackage's entries (`apt-cache
/// show`) depend on, with the suite `apt-cache madison` gives each version:
/// what Debian has today.
pub fn available_kernels(meta: &[BTreeMap<String, String>], madison: &str) -> Vec<Available> {
    let suite_of = |version: &str| {
        madison
            .lines()
            .map(|line| line.split('|').map(str::trim).collect::<Vec<_>>())
            .find(|fields| fields.get(1) == Some(&version))
            .and_then(|fields| Some(fields.get(2)?.split_whitespace().nth(1)?.to_string()))
            .map(|suite| suite.trim_end_matches("/main").to_string())
            .unwrap_or_else(|| "?".into())
    };
    let mut kernels: Vec<Available> = meta
        .iter()
        .filter_map(|stanza| {
            let depends = stanza.get("Depends")?;
            let first = depends.split(',').next()?.trim();
            let (package, version) = first.split_once(" (= ")?;
            let version = version.trim_end_matches(')');
            Some((package.to_string(), version.to_string(), suite_of(version)))
        })
        .collect();
    kernels.sort();
    kernels.dedup();
    kernels
}

pub fn kernel_gone_message(flavour: Flavour, available: &[Available]) -> String {
    let listed = if available.is_empty() {
        "none".to_string()
    } else {
        available
            .iter()
            .map(|(package, version, suite)| format!("{package} {version} in {suite}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{} {KERNEL_PACKAGE_VERSION} ({}) is no longer in Debian {SUITE} or {SUITE}-security; \
         they have: {listed}. Pick one (the one in {SUITE} itself stays longer than \
         {SUITE}-security's) and change {PIN}",
        flavour.package(),
        flavour.arch().name()
    )
}

/// `dpkg-deb -x` of `deb` into `unpacked/<name>/`, once per file content:
/// a marker holding the .deb's SHA256 says the tree is whole.
fn unpack(ws: &Workspace, deb: &Path, entry: &PackageEntry) -> Result<PathBuf> {
    let unpacked = ws.target.join("debian").join("unpacked");
    let name = entry.deb_name().trim_end_matches(".deb");
    let dest = unpacked.join(name);
    let marker = unpacked.join(format!("{name}.sha256"));
    if dest.is_dir() && std::fs::read_to_string(&marker).is_ok_and(|s| s == entry.sha256) {
        return Ok(dest);
    }
    let partial = unpacked.join(format!("{name}.partial-{}", std::process::id()));
    for stale in [&dest, &partial] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&partial)
        .status()
        .context("running dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb -x {} failed", deb.display());
    }
    if let Err(error) = std::fs::rename(&partial, &dest) {
        // Another xtask unpacked the same .deb meanwhile.
        if !dest.is_dir() {
            return Err(error)
                .with_context(|| format!("moving {} to {}", partial.display(), dest.display()));
        }
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    workspace::write(&marker, &entry.sha256)?;
    Ok(dest)
}

/// Writes `text` unless the file already holds it.
fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    workspace::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apt_in(target: &str) -> Apt {
        Apt::new(&Workspace {
            root: "/src/tessera".into(),
            target: target.into(),
        })
    }

    #[test]
    fn every_apt_path_is_under_target() {
        let apt = apt_in("/build/tessera-target");
        let options = apt.options();
        let dirs: Vec<&(String, String)> = options
            .iter()
            .filter(|(k, _)| k.starts_with("Dir"))
            .collect();
        assert!(dirs.len() >= 10, "{options:?}");
        for (key, value) in dirs {
            assert!(
                value.starts_with("/build/tessera-target/debian/apt/"),
                "{key} = {value} is outside target/"
            );
        }
        // The ones that decide what apt reads and writes are all set.
        for key in [
            "Dir::Etc::Parts",
            "Dir::Etc::SourceList",
            "Dir::Etc::SourceParts",
            "Dir::Etc::Trusted",
            "Dir::Etc::TrustedParts",
            "Dir::State::Lists",
            "Dir::State::status",
            "Dir::Cache",
        ] {
            assert!(options.iter().any(|(k, _)| k == key), "{key} not set");
        }
        let archs: Vec<&str> = options
            .iter()
            .filter(|(k, _)| k == "APT::Architectures::")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(archs, ["arm64", "armhf"]);
        let conf = Apt::apt_conf(&options);
        assert!(
            conf.contains("Dir::Etc::Parts \"/build/tessera-target/debian/apt/etc/apt.conf.d\";\n")
        );
        assert!(conf.contains("APT::Architectures:: \"armhf\";\n"));
        assert!(!conf.to_lowercase().contains("allowunauthenticated"));
    }

    #[test]
    fn sources_list_is_signed_bookworm_for_both_arches() {
        let list = Apt::sources_list();
        assert_eq!(
            list,
            "deb [arch=arm64,armhf signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
             http://deb.debian.org/debian bookworm main\n\
             deb [arch=arm64,armhf signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
             http://deb.debian.org/debian-security bookworm-security main\n"
        );
        assert!(!list.contains("trusted"));
    }

    // What `apt-cache show` prints, cut down.
    const SHOW: &str = "\
Package: busybox-static
Version: 1:1.35.0-4+deb12u1+b1
Architecture: armhf
Description: Standalone rescue shell with tons of builtin utilities
 BusyBox combines tiny versions of many common UNIX utilities into a single
Filename: pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_armhf.deb
Size: 815288
SHA256: 2F68DBEAEBEDA49F3CDE34AC421D5ADD85FB1C837FF7C4A4971945340D9D66FF

";

    #[test]
    fn reads_an_index_entry() {
        let stanzas = parse_stanzas(SHOW);
        assert_eq!(stanzas.len(), 1);
        let entry = PackageEntry::from_stanza(&stanzas[0]).unwrap();
        assert_eq!(entry.version, "1:1.35.0-4+deb12u1+b1");
        assert_eq!(entry.architecture, "armhf");
        assert_eq!(
            entry.deb_name(),
            "busybox-static_1.35.0-4+deb12u1+b1_armhf.deb"
        );
        assert_eq!(
            entry.sha256,
            "2f68dbeaebeda49f3cde34ac421d5add85fb1c837ff7c4a4971945340d9d66ff"
        );
        // No SHA256, no entry: nothing unchecked gets through.
        let unsigned = SHOW.replace("SHA256", "MD5sum");
        assert!(PackageEntry::from_stanza(&parse_stanzas(&unsigned)[0]).is_none());
    }

    #[test]
    fn a_corrupted_deb_is_refused() {
        let dir = std::env::temp_dir().join(format!("tessera-debian-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let deb = dir.join("x.deb");
        std::fs::write(&deb, b"!<arch>\ndebian-binary\n").unwrap();
        let good = hex(&Sha256::digest(b"!<arch>\ndebian-binary\n"));
        check_sha256(&deb, &good).unwrap();
        check_sha256(&deb, &good.to_uppercase()).unwrap();
        std::fs::write(&deb, b"!<arch>\ndebian-binarx\n").unwrap();
        let error = check_sha256(&deb, &good).unwrap_err().to_string();
        assert!(error.contains("x.deb") && error.contains(&good), "{error}");
        assert!(check_sha256(&dir.join("missing.deb"), &good).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_gone_pin_names_what_is_there_and_where_to_change_it() {
        let meta = parse_stanzas(
            "Package: linux-image-arm64\nVersion: 6.1.192-3\n\
             Depends: linux-image-6.1.0-57-arm64 (= 6.1.192-3)\n\n\
             Package: linux-image-arm64\nVersion: 6.1.176-1\n\
             Depends: linux-image-6.1.0-50-arm64 (= 6.1.176-1)\n",
        );
        let madison = "\
linux-image-arm64 |  6.1.192-3 | http://deb.debian.org/debian-security bookworm-security/main arm64 Packages
linux-image-arm64 |  6.1.176-1 | http://deb.debian.org/debian bookworm/main arm64 Packages
";
        let available = available_kernels(&meta, madison);
        let kernel = |package: &str, version: &str, suite: &str| {
            (package.to_string(), version.to_string(), suite.to_string())
        };
        assert_eq!(
            available,
            [
                kernel("linux-image-6.1.0-50-arm64", "6.1.176-1", "bookworm"),
                kernel(
                    "linux-image-6.1.0-57-arm64",
                    "6.1.192-3",
                    "bookworm-security"
                ),
            ]
        );
        let message = kernel_gone_message(Flavour::Arm64, &available);
        assert!(
            message.contains("linux-image-6.1.0-57-arm64 6.1.192-3 in bookworm-security"),
            "{message}"
        );
        assert!(message.contains("xtask/src/debian.rs"), "{message}");
        assert!(kernel_gone_message(Flavour::ArmmpLpae, &[]).contains("have: none"));
    }

    #[test]
    fn modules_load_after_their_dependencies() {
        let module = |name: &str, depends: &[&str]| {
            (
                name.to_string(),
                depends.iter().map(|d| d.to_string()).collect(),
            )
        };
        // As bookworm's 6.1 kernels have them.
        check_load_order(&[
            module("crc16", &[]),
            module("mbcache", &[]),
            module("jbd2", &[]),
            module("ext4", &["jbd2", "mbcache", "crc16"]),
        ])
        .unwrap();
        let error = check_load_order(&[module("ext4", &["jbd2"]), module("jbd2", &[])])
            .unwrap_err()
            .to_string();
        assert!(error.contains("ext4 needs jbd2"), "{error}");
        assert!(MODULES.iter().all(|m| m.ends_with(".ko")));
    }

    #[test]
    fn names_of_flavours_and_modules() {
        assert_eq!(
            Flavour::from_kernel_spec("debian:armmp-lpae"),
            Some(Flavour::ArmmpLpae)
        );
        assert_eq!(Flavour::from_kernel_spec("debian:armhf"), None);
        assert_eq!(Flavour::from_kernel_spec("arm64"), None);
        assert_eq!(
            Flavour::ArmmpLpae.package(),
            format!("linux-image-{KERNEL_ABI}-armmp-lpae")
        );
        assert_eq!(Flavour::ArmmpLpae.arch(), DebArch::Armhf);
        assert_eq!(module_name("crypto/crc32c_generic.ko"), "crc32c_generic");
        assert_eq!(module_name("fs/jbd2/jbd2.ko"), "jbd2");
    }
}
