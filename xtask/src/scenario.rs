//! QEMU scenarios (`ci/scenarios/*.toml`): build a composition, boot it and
//! watch the serial port for the expected lines, in order, within a timeout.

use crate::compose::{self, Built};
use crate::diskcheck;
use crate::qemu;
use crate::sdcard;
use crate::workspace::{write, Workspace};
use anyhow::{Context, Result};
use config::composition::Composition;
use config::profile::{self, Boot, Expect, Known, Profile, Scenario};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Lines of serial output shown under a failure.
const TAIL: usize = 30;

/// Matches serial lines against a scenario's `expect` (in order) and
/// `forbid` (substrings, anywhere).
///
/// An expectation is a substring of the line, except that `{lo..hi}` in it
/// stands for a whole decimal integer n with lo <= n <= hi (inclusive; not
/// part of a longer run of digits, no sign). Braces without `..` inside are
/// literal. A placeholder with `..` that is not `{lo..hi}` (both decimal,
/// lo <= hi) is an error, reported by [`run`] right after the scenario file
/// is loaded, before anything is built ([`check_expectations`]); `Matcher::new`
/// takes such a placeholder literally. `forbid` is always literal.
pub struct Matcher<'a> {
    /// Each `expect` entry: one line, or lines in any order.
    expect: Vec<Vec<Expectation<'a>>>,
    forbid: &'a [String],
    /// Entries fully seen.
    seen: usize,
    /// Which lines of entry `seen` have been seen.
    seen_in_entry: Vec<bool>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Progress<'a> {
    Waiting,
    Done,
    Forbidden(&'a str),
}

impl<'a> Matcher<'a> {
    pub fn new(expect: &'a [Expect], forbid: &'a [String]) -> Self {
        let expect: Vec<Vec<Expectation<'a>>> = expect
            .iter()
            .map(|entry| {
                entry
                    .lines()
                    .iter()
                    .map(|e| Expectation::parse(e).unwrap_or_else(|_| Expectation::literal(e)))
                    .collect()
            })
            .collect();
        let first = expect.first().map_or(0, Vec::len);
        Matcher {
            expect,
            forbid,
            seen: 0,
            seen_in_entry: vec![false; first],
        }
    }

    pub fn feed(&mut self, line: &str) -> Progress<'a> {
        if let Some(bad) = self.forbid.iter().find(|bad| line.contains(bad.as_str())) {
            return Progress::Forbidden(bad);
        }
        // One line may satisfy several consecutive expectations.
        while let Some(entry) = self.expect.get(self.seen) {
            let mut any = false;
            for (want, seen) in entry.iter().zip(&mut self.seen_in_entry) {
                if !*seen && want.matches(line) {
                    *seen = true;
                    any = true;
                }
            }
            if !any || !self.seen_in_entry.iter().all(|&s| s) {
                break;
            }
            self.seen += 1;
            let next = self.expect.get(self.seen).map_or(0, Vec::len);
            self.seen_in_entry = vec![false; next];
        }
        if self.done() {
            Progress::Done
        } else {
            Progress::Waiting
        }
    }

    pub fn done(&self) -> bool {
        self.seen == self.expect.len()
    }

    /// The next expected line, if any, as written.
    pub fn waiting_for(&self) -> Option<&'a str> {
        let entry = self.expect.get(self.seen)?;
        let unseen = entry
            .iter()
            .zip(&self.seen_in_entry)
            .find(|(_, seen)| !**seen);
        unseen.map(|(e, _)| e.text)
    }
}

/// Checks the `{lo..hi}` placeholders of every expectation; the error
/// names the expectation (1-based) and what is wrong with it.
pub fn check_expectations(expect: &[Expect]) -> Result<(), String> {
    for (i, entry) in expect.iter().enumerate() {
        for text in entry.lines() {
            Expectation::parse(text).map_err(|e| format!("expect #{} {text:?}: {e}", i + 1))?;
        }
    }
    Ok(())
}

/// One `expect` entry, split into literal text and numeric ranges.
struct Expectation<'a> {
    text: &'a str,
    pieces: Vec<Piece<'a>>,
}

#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Literal(&'a str),
    /// A whole decimal integer in `lo..=hi`.
    Range(u64, u64),
}

impl<'a> Expectation<'a> {
    fn literal(text: &'a str) -> Self {
        Expectation {
            text,
            pieces: vec![Piece::Literal(text)],
        }
    }

    fn parse(text: &'a str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        // `literal_from..i` is literal text not yet pushed.
        let mut literal_from = 0;
        let mut i = 0;
        while let Some(open) = text[i..].find('{').map(|o| i + o) {
            let body_start = open + 1;
            // The placeholder's body runs to the next brace; only a `}`
            // closes it.
            let Some(close) = text[body_start..]
                .find(['{', '}'])
                .map(|c| body_start + c)
                .filter(|c| text[*c..].starts_with('}'))
            else {
                i = body_start;
                continue;
            };
            let body = &text[body_start..close];
            if !body.contains("..") {
                i = body_start;
                continue;
            }
            let range = parse_range(body).map_err(|e| format!("{{{body}}}: {e}"))?;
            if literal_from < open {
                pieces.push(Piece::Literal(&text[literal_from..open]));
            }
            pieces.push(range);
            i = close + 1;
            literal_from = i;
        }
        if literal_from < text.len() {
            pieces.push(Piece::Literal(&text[literal_from..]));
        }
        Ok(Expectation { text, pieces })
    }

    /// Whether the pieces match, one after another, somewhere in `line`.
    fn matches(&self, line: &str) -> bool {
        match self.pieces.as_slice() {
            [Piece::Literal(literal)] => line.contains(literal),
            pieces => (0..=line.len())
                .filter(|start| line.is_char_boundary(*start))
                .any(|start| matches_at(pieces, line, start)),
        }
    }
}

/// `lo..hi`, both decimal, lo <= hi.
fn parse_range(body: &str) -> Result<Piece<'static>, String> {
    const FORM: &str = "a range is {lo..hi}: two decimal integers, lo <= hi, inclusive";
    let (lo, hi) = body.split_once("..").ok_or(FORM)?;
    let number = |s: &str| -> Result<u64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{s:?} is not a decimal integer; {FORM}"));
        }
        s.parse().map_err(|_| format!("{s} is too large; {FORM}"))
    };
    let (lo, hi) = (number(lo)?, number(hi)?);
    if lo > hi {
        return Err(format!("{lo} is more than {hi}; {FORM}"));
    }
    Ok(Piece::Range(lo, hi))
}

/// Whether `pieces` match `line` from byte `at` on, back to back.
fn matches_at(pieces: &[Piece], line: &str, mut at: usize) -> bool {
    let bytes = line.as_bytes();
    for piece in pieces {
        match piece {
            Piece::Literal(literal) => {
                if !line[at..].starts_with(literal) {
                    return false;
                }
                at += literal.len();
            }
            Piece::Range(lo, hi) => {
                // A whole integer: no digit just before, all the digits after.
                if at > 0 && bytes[at - 1].is_ascii_digit() {
                    return false;
                }
                let digits = bytes[at..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                let Ok(n) = line[at..at + digits].parse::<u64>() else {
                    return false; // no digits, or more than u64 holds
                };
                if n < *lo || n > *hi {
                    return false;
                }
                at += digits;
            }
        }
    }
    true
}

/// What a scenario did.
pub struct Outcome {
    pub name: String,
    pub elapsed: Duration,
    /// Serial output (and QEMU's own messages, prefixed `qemu: `).
    pub lines: Vec<String>,
    pub failure: Option<String>,
    pub built: Option<Built>,
}

impl Outcome {
    fn failed(name: String, reason: String) -> Self {
        Outcome {
            name,
            elapsed: Duration::ZERO,
            lines: Vec::new(),
            failure: Some(reason),
            built: None,
        }
    }

    /// `PASS <name> (<secs>s)`, or `FAIL <name>: <reason>` and the last lines.
    pub fn report(&self) {
        match &self.failure {
            None => println!("PASS {} ({:.1}s)", self.name, self.elapsed.as_secs_f64()),
            Some(reason) => {
                println!("FAIL {}: {reason}", self.name);
                for line in &self.lines[self.lines.len().saturating_sub(TAIL)..] {
                    println!("    {line}");
                }
            }
        }
    }
}

/// Every `*.toml` in `dir`, in name order.
pub fn files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Builds and runs the scenario in `path` on its first board; never
/// fails, the outcome says why.
pub fn run(ws: &Workspace, path: &Path) -> Outcome {
    match runs(path, &|_| true) {
        Ok(runs) => {
            let (name, scenario) = runs
                .into_iter()
                .next()
                .expect("a scenario runs on at least one board");
            Outcome {
                name,
                ..run_scenario(ws, &scenario)
            }
        }
        Err(failed) => *failed,
    }
}

/// Builds and runs the scenario in `path` on `board` instead of its own.
pub fn run_on(ws: &Workspace, path: &Path, board: &str) -> Outcome {
    match profile::load_scenario(path) {
        Ok(scenario) => run_scenario(ws, &scenario.on_board(board)),
        Err(error) => Outcome::failed(scenario_stem(path), error.to_string()),
    }
}

fn scenario_stem(path: &Path) -> String {
    path.file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
}

/// The runs of the scenario in `path` that `wanted` accepts: each board's
/// run name (`name`, or `name@board` for a scenario on several boards) and
/// the scenario on that board. A file that does not load is one failed run.
pub fn runs(
    path: &Path,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<(String, Scenario)>, Box<Outcome>> {
    let scenario = profile::load_scenario(path)
        .map_err(|error| Box::new(Outcome::failed(scenario_stem(path), error.to_string())))?;
    let several = scenario.boards.len() > 1;
    Ok(scenario
        .boards
        .iter()
        .map(|board| {
            let name = if several {
                format!("{}@{board}", scenario.name)
            } else {
                scenario.name.clone()
            };
            (name, scenario.on_board(board))
        })
        .filter(|(name, _)| wanted(name))
        .collect())
}

fn run_scenario(ws: &Workspace, scenario: &Scenario) -> Outcome {
    match prepare(ws, scenario) {
        Ok(ready) => ready.boot(ws, 1),
        Err(failed) => *failed,
    }
}

/// A scenario built and ready to boot: what may run beside other boots,
/// since nothing in it is shared with another run.
pub struct Ready {
    scenario: Scenario,
    built: Built,
    cmd: Command,
}

/// Checks and builds `scenario` (builds share cargo's target directory, so
/// they run one at a time); the failure is the run's outcome.
pub fn prepare(ws: &Workspace, scenario: &Scenario) -> Result<Ready, Box<Outcome>> {
    let failed = |error: String| Box::new(Outcome::failed(scenario.name.clone(), error));
    // Malformed `{lo..hi}` placeholders fail the scenario before it builds.
    check_expectations(&scenario.expect)
        .map_err(|error| failed(format!("{}: {error}", scenario.path.display())))?;
    build(ws, scenario).map_err(|error| failed(format!("{error:#}")))
}

impl Ready {
    /// Boots the image and watches it; never fails, the outcome says why.
    /// `sharing` boots run on the host at once (and a build beside them):
    /// the scenario's timeout, in host time, is stretched as many times.
    pub fn boot(mut self, ws: &Workspace, sharing: u32) -> Outcome {
        self.scenario.timeout *= sharing.max(1);
        let name = self.scenario.name.clone();
        boot(ws, self).unwrap_or_else(|error| Outcome::failed(name, format!("{error:#}")))
    }
}

/// Builds scenario `name` (ci/scenarios/<name>.toml, on its first board)
/// and boots it with the serial port on this terminal, in real time.
pub fn run_interactive(ws: &Workspace, name: &str) -> Result<()> {
    let path = ws.scenarios_dir().join(format!("{name}.toml"));
    let scenario = profile::load_scenario(&path)?;
    let (profile, mut composition) = plan(ws, &scenario)?;
    composition.selftest = scenario.selftest.clone();
    let spec = qemu::spec(&profile)?.clone();
    let built = compose::build_planned(ws, composition)?;
    let disk = prepare_disk(ws, &scenario)?;
    qemu::run_interactive(&spec, &built, disk.as_deref())
}

/// The scenario's board and its composition `<board>+<scenario>`: as
/// `compose::plan`, with the scenario's VMs, `[compose]` and CPU count over
/// the board's.
pub fn plan(ws: &Workspace, scenario: &Scenario) -> Result<(Profile, Composition)> {
    // An unknown board is reported at the scenario's `board = ...` line.
    let profile = scenario.load_board(&ws.boards_dir())?;
    let name = format!("{}+{}", scenario.board, scenario.name);
    let known = Known::builtin(ws.guest_names()?);
    let composition = scenario.plan(&profile, &known, &name, &compose::Files::new(ws, &name))?;
    Ok((profile, composition))
}

/// As [`plan`], the board given `ram` bytes of RAM (and QEMU `-m` as
/// much): for bench compositions bigger than a board's usual RAM.
pub fn plan_with_ram(
    ws: &Workspace,
    scenario: &Scenario,
    ram: u64,
) -> Result<(Profile, Composition)> {
    let mut profile = scenario.load_board(&ws.boards_dir())?;
    let size = &mut profile.memory.ram.size;
    *size = toml::Spanned::new(size.span(), config::profile::Size(ram));
    if let Some(qemu) = profile.qemu.as_mut() {
        qemu.memory = format!("{}M", ram >> 20);
    }
    let name = format!("{}+{}", scenario.board, scenario.name);
    let known = Known::builtin(ws.guest_names()?);
    let composition = scenario.plan(&profile, &known, &name, &compose::Files::new(ws, &name))?;
    Ok((profile, composition))
}

/// The scenario's `disk`, copied (a `.gz` unpacked) to
/// `target/disks/<board>+<scenario>.img` afresh for each boot, so that QEMU
/// writes the copy, never the file in the tree; `None` without a disk.
pub fn prepare_disk(ws: &Workspace, scenario: &Scenario) -> Result<Option<std::path::PathBuf>> {
    let Some(disk) = &scenario.disk else {
        return Ok(None);
    };
    let source = ws.root.join(disk);
    let bytes = crate::workspace::read(&source).with_context(|| {
        format!(
            "{}: disk = {:?} (a path from the workspace root)",
            scenario.path.display(),
            disk.display()
        )
    })?;
    let bytes = if source.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .with_context(|| format!("unpacking {}", source.display()))?;
        out
    } else {
        bytes
    };
    anyhow::ensure!(
        !bytes.is_empty() && bytes.len() % 512 == 0,
        "{}: the disk image is {} bytes, not a whole number of 512-byte sectors",
        source.display(),
        bytes.len()
    );
    let image = ws
        .target
        .join("disks")
        .join(format!("{}+{}.img", scenario.board, scenario.name));
    write(&image, bytes)?;
    Ok(Some(image))
}

fn build(ws: &Workspace, scenario: &Scenario) -> Result<Ready> {
    let (profile, mut composition) = plan(ws, scenario)?;
    composition.selftest = scenario.selftest.clone();
    let built = compose::build_planned(ws, composition)?;
    let mut spec = qemu::spec(&profile)?.clone();
    if let Some(machine) = &scenario.machine {
        spec.machine = machine.clone();
    }
    let cmd = match scenario.boot {
        Boot::Kernel => qemu::command(&spec, &built)?,
        Boot::UBoot => qemu::u_boot_command(&spec, &built, &sdcard::write_sdcard(&built)?)?,
        Boot::UBootFit => qemu::u_boot_command(&spec, &built, &sdcard::write_fit_sdcard(&built)?)?,
    };
    Ok(Ready {
        scenario: scenario.clone(),
        built,
        cmd,
    })
}

fn boot(ws: &Workspace, ready: Ready) -> Result<Outcome> {
    let Ready {
        scenario,
        built,
        mut cmd,
    } = ready;
    let scenario = &scenario;
    let disk = prepare_disk(ws, scenario)?;
    if let Some(disk) = &disk {
        qemu::attach_disk(&mut cmd, disk);
    }
    // What must not change, hashed before QEMU may write.
    let disk_check = match (&scenario.disk_check, &disk) {
        (Some(check), Some(disk)) => Some((check, disk, diskcheck::before(disk, check)?)),
        _ => None,
    };
    if let Some(version) = scenario.virtio_mmio_version {
        qemu::virtio_mmio_version(&mut cmd, version);
    }
    cmd.args(qemu::HEADLESS);
    if scenario.icount {
        cmd.args(qemu::ICOUNT);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting QEMU")?;
    let mut matcher = Matcher::new(&scenario.expect, &scenario.forbid);
    let mut typist = Typist::new(&scenario.input, child.stdin.take());
    let (mut lines, mut verdict) = watch(&mut child, &mut matcher, &mut typist, scenario.timeout);
    // Done either way; QEMU may already have exited, so errors do not matter.
    let _ = child.kill();
    let _ = child.wait();
    // The disk is checked only after a run that passed: a failed run may
    // have stopped a guest halfway through its writes.
    if let (Ok(()), Some((check, disk, base))) = (&verdict, &disk_check) {
        let run = format!("{}+{}", scenario.board, scenario.name);
        verdict = diskcheck::after(disk, check, base, &diskcheck::work_dir(ws, &run))
            .map_err(|e| format!("{e:#}"));
        lines.push(match &verdict {
            Ok(()) => format!("xtask: disk-check of {} passed", disk.display()),
            Err(e) => format!("xtask: {e}"),
        });
    }
    let elapsed = start.elapsed();
    let log = ws
        .scenario_logs_dir()
        .join(format!("{}+{}.log", scenario.board, scenario.name));
    write(&log, lines.join("\n") + "\n")?;
    Ok(Outcome {
        name: scenario.name.clone(),
        elapsed,
        lines,
        failure: verdict.err(),
        built: Some(built),
    })
}

/// Types a scenario's `input` into QEMU's serial console, each entry once
/// its `after` appeared in a line.
pub struct Typist<'a> {
    input: &'a [profile::Input],
    next: usize,
    stdin: Option<std::process::ChildStdin>,
}

impl<'a> Typist<'a> {
    pub fn new(input: &'a [profile::Input], stdin: Option<std::process::ChildStdin>) -> Self {
        Typist {
            input,
            next: 0,
            stdin,
        }
    }

    pub fn feed(&mut self, line: &str) {
        use std::io::Write;
        while let Some(step) = self.input.get(self.next) {
            if !line.contains(&step.after) {
                break;
            }
            self.next += 1;
            if let Some(stdin) = &mut self.stdin {
                // QEMU gone: the verdict says so.
                let _ = stdin
                    .write_all(step.send.as_bytes())
                    .and_then(|()| stdin.flush());
            }
        }
    }
}

/// Feeds QEMU's output to `matcher` until it is satisfied, sees a forbidden
/// line, QEMU exits, or `timeout` passes. Returns every line read.
fn watch(
    child: &mut Child,
    matcher: &mut Matcher,
    typist: &mut Typist,
    timeout: Duration,
) -> (Vec<String>, Result<(), String>) {
    let (tx, rx) = mpsc::channel();
    // Readers end by themselves when QEMU's pipes close.
    if let Some(stdout) = child.stdout.take() {
        spawn_reader(stdout, Source::Serial, tx.clone());
    }
    if let Some(stderr) = child.stderr.take() {
        spawn_reader(stderr, Source::Qemu, tx);
    }
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    let verdict = loop {
        let (source, line) =
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    break Err(format!(
                        "timed out after {}s waiting for {:?}",
                        timeout.as_secs(),
                        matcher.waiting_for().unwrap_or_default()
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = child
                        .wait()
                        .map_or_else(|e| e.to_string(), |s| s.to_string());
                    break Err(format!(
                        "QEMU exited ({status}) before {:?} appeared",
                        matcher.waiting_for().unwrap_or_default()
                    ));
                }
            };
        let progress = match source {
            Source::Serial => {
                typist.feed(&line);
                matcher.feed(&line)
            }
            Source::Qemu => Progress::Waiting,
        };
        lines.push(match source {
            Source::Serial => line,
            Source::Qemu => format!("qemu: {line}"),
        });
        match progress {
            Progress::Waiting => {}
            Progress::Done => break Ok(()),
            Progress::Forbidden(bad) => break Err(format!("forbidden output {bad:?}")),
        }
    };
    (lines, verdict)
}

#[derive(Clone, Copy)]
enum Source {
    Serial,
    /// QEMU's own messages (stderr): logged, never matched.
    Qemu,
}

fn spawn_reader(
    stream: impl Read + Send + 'static,
    source: Source,
    tx: mpsc::Sender<(Source, String)>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        // Serial output is bytes: a guest may print anything.
        while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&buf);
            let text = text.trim_end_matches(['\n', '\r']);
            if tx.send((source, text.to_string())).is_err() {
                break;
            }
            buf.clear();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn lines(items: &[&str]) -> Vec<Expect> {
        items.iter().map(|&s| Expect::from(s)).collect()
    }

    #[test]
    fn expectations_match_in_order() {
        let expect = lines(&["[hv] Tessera", "[hello] goodbye"]);
        let mut m = Matcher::new(&expect, &[]);
        assert_eq!(m.feed("[hello] goodbye"), Progress::Waiting); // too early
        assert_eq!(
            m.feed("[hv] Tessera 0.1.0 on qemu-virt-a64"),
            Progress::Waiting
        );
        assert_eq!(m.waiting_for(), Some("[hello] goodbye"));
        assert_eq!(m.feed("[spinner] started"), Progress::Waiting);
        assert_eq!(m.feed("[hello] goodbye"), Progress::Done);
        assert!(m.done());
    }

    #[test]
    fn lines_of_an_any_order_entry_come_in_either_order() {
        let expect = vec![
            Expect::from("start"),
            Expect::AnyOrder(strings(&["VM a exited", "VM b exited"])),
            Expect::from("end"),
        ];
        for order in [
            ["VM a exited", "VM b exited"],
            ["VM b exited", "VM a exited"],
        ] {
            let mut m = Matcher::new(&expect, &[]);
            assert_eq!(m.feed(order[0]), Progress::Waiting); // before start
            assert_eq!(m.feed("start"), Progress::Waiting);
            assert_eq!(m.feed("end"), Progress::Waiting); // the group first
            assert_eq!(m.feed(order[0]), Progress::Waiting);
            assert_eq!(m.waiting_for(), Some(order[1]));
            assert_eq!(m.feed(order[1]), Progress::Waiting);
            assert_eq!(m.feed("end"), Progress::Done);
        }
    }

    #[test]
    fn one_line_can_satisfy_consecutive_expectations() {
        let expect = lines(&["a", "b"]);
        let mut m = Matcher::new(&expect, &[]);
        assert_eq!(m.feed("ab"), Progress::Done);
    }

    #[test]
    fn forbidden_wins_anywhere() {
        let expect = lines(&["ok"]);
        let forbid = strings(&["ISOLATION BROKEN"]);
        let mut m = Matcher::new(&expect, &forbid);
        assert_eq!(
            m.feed("[probe] ok ISOLATION BROKEN"),
            Progress::Forbidden("ISOLATION BROKEN")
        );
    }

    fn matches(expect: &str, line: &str) -> bool {
        Expectation::parse(expect).unwrap().matches(line)
    }

    const EXIT: &str = "[hv] VM a exited (code 0) after 1003 ms, 33.4% of a CPU";

    #[test]
    fn a_range_matches_a_whole_integer_inside_it() {
        assert!(matches("after {900..1100} ms", EXIT));
        assert!(matches("after {1003..1003} ms", EXIT));
        assert!(matches("{0..99}.4%", EXIT)); // 33, whole: not the 3 of 33
        assert!(!matches("after {900..1000} ms", EXIT));
        assert!(!matches("after {1004..1100} ms", EXIT));
        // Part of a longer number does not count, on either side.
        assert!(!matches("{0..3}.4%", EXIT));
        assert!(!matches("after {100..100}", EXIT));
        assert!(!matches("after {0..9}", "after x ms"));
    }

    #[test]
    fn several_ranges_and_literal_text_in_order() {
        let want = "[hv] VM a exited (code 0) after {900..1100} ms, {30..36}.{0..9}% of a CPU";
        assert!(matches(want, EXIT));
        assert!(matches(want, &format!("noise {EXIT} noise")));
        assert!(!matches(want, &EXIT.replace("33.4", "37.4")));
        assert!(!matches(want, &EXIT.replace("VM a", "VM b")));
        let expect = lines(&["worker: {100..200} ms", "VM a exited", "{30..36}.", "done"]);
        let mut m = Matcher::new(&expect, &[]);
        assert_eq!(m.feed("worker: 300 ms"), Progress::Waiting);
        assert_eq!(m.waiting_for(), Some("worker: {100..200} ms"));
        assert_eq!(m.feed("worker: 200 ms"), Progress::Waiting);
        assert_eq!(m.feed(EXIT), Progress::Waiting);
        assert_eq!(m.feed("done"), Progress::Done);
    }

    #[test]
    fn braces_without_dots_are_literal() {
        assert!(matches("{}", "a {} b"));
        assert!(matches("{x}{1..2}", "{x}2"));
        assert!(matches("{ {5..5} }", "{ 5 }"));
        assert!(matches("{1.2}", "v{1.2}"));
        assert!(matches("{3..4", "{3..4"));
        assert!(!matches("{1.2}", "v1.2"));
        assert_eq!(check_expectations(&lines(&["{}", "{abc}", "x{"])), Ok(()));
    }

    #[test]
    fn malformed_ranges_are_errors() {
        for bad in [
            "{1..}",
            "{..2}",
            "{a..b}",
            "{5..3}",
            "{1..=2}",
            "{ 1..2}",
            "{-1..2}",
            "{1..99999999999999999999}",
        ] {
            let err = check_expectations(&lines(&["ok", bad])).unwrap_err();
            assert!(err.starts_with("expect #2 "), "{bad}: {err}");
            assert!(err.contains("{lo..hi}"), "{bad}: {err}");
        }
        // The matcher alone takes them literally.
        let expect = lines(&["{5..3}"]);
        let mut m = Matcher::new(&expect, &[]);
        assert_eq!(m.feed("4"), Progress::Waiting);
        assert_eq!(m.feed("x {5..3}"), Progress::Done);
    }

    #[test]
    fn forbid_stays_literal() {
        let expect = lines(&["never"]);
        let forbid = strings(&["{1..9}"]);
        let mut m = Matcher::new(&expect, &forbid);
        assert_eq!(m.feed("5"), Progress::Waiting);
        assert_eq!(m.feed("a {1..9} b"), Progress::Forbidden("{1..9}"));
    }

    #[test]
    fn a_malformed_range_fails_the_scenario_before_it_builds() {
        let ws = Workspace::locate().unwrap();
        let dir = std::env::temp_dir().join(format!("xtask-range-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ranged.toml");
        std::fs::write(
            &path,
            "board = \"qemu-virt-a64\"\ndescription = \"x\"\ntimeout = \"1s\"\nexpect = [\"a {9..1} b\"]\n",
        )
        .unwrap();
        let outcome = run(&ws, &path);
        std::fs::remove_dir_all(&dir).unwrap();
        let reason = outcome.failure.expect("a malformed range fails");
        assert!(reason.contains("ranged.toml: expect #1"), "{reason}");
        assert!(reason.contains("9 is more than 1"), "{reason}");
        assert!(outcome.built.is_none());
    }

    /// `watch` on a shell script standing in for QEMU.
    fn watch_script(
        script: &str,
        expect: &[&str],
        timeout_ms: u64,
    ) -> (Vec<String>, Result<(), String>) {
        let mut child = std::process::Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let expect = lines(expect);
        let forbid = strings(&["PANIC"]);
        let mut matcher = Matcher::new(&expect, &forbid);
        let mut typist = Typist::new(&[], None);
        let result = watch(
            &mut child,
            &mut matcher,
            &mut typist,
            Duration::from_millis(timeout_ms),
        );
        let _ = child.kill();
        let _ = child.wait();
        result
    }

    #[test]
    fn watch_stops_once_everything_is_seen() {
        let (lines, verdict) = watch_script("echo one; echo two; sleep 10", &["one", "two"], 5000);
        assert_eq!(verdict, Ok(()));
        assert_eq!(lines, ["one", "two"]);
    }

    #[test]
    fn watch_reports_exit_timeout_and_forbidden_lines() {
        let (lines, verdict) =
            watch_script("echo one; echo oops >&2; exit 3", &["one", "two"], 5000);
        let reason = verdict.unwrap_err();
        assert!(
            reason.contains("QEMU exited") && reason.contains("\"two\""),
            "{reason}"
        );
        assert!(lines.contains(&"qemu: oops".to_string()), "{lines:?}");

        let (_, verdict) = watch_script("echo one; sleep 10", &["one", "two"], 300);
        assert!(verdict.unwrap_err().contains("timed out"));

        let (_, verdict) = watch_script(
            "printf 'one\\r\\nPANIC\\n'; sleep 10",
            &["one", "two"],
            5000,
        );
        assert_eq!(verdict, Err("forbidden output \"PANIC\"".to_string()));
    }

    #[test]
    fn a_bad_scenario_file_fails_with_its_message() {
        let ws = Workspace::locate().unwrap();
        let dir = std::env::temp_dir().join(format!("xtask-scenario-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broken.toml");
        std::fs::write(&path, "board = \"qemu-virt-a64\"\ntimeout = \"1s\"\n").unwrap();
        let outcome = run(&ws, &path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(outcome.name, "broken");
        let reason = outcome.failure.expect("a scenario without expect fails");
        assert!(reason.contains("broken.toml"), "{reason}");
        assert!(outcome.built.is_none());
    }

    #[test]
    fn nothing_expected_is_done_at_once() {
        let mut m = Matcher::new(&[], &[]);
        assert!(m.done());
        assert_eq!(m.feed("anything"), Progress::Done);
    }
}
