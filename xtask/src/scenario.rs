//! QEMU scenarios (`ci/scenarios/*.toml`): build a composition, boot it and
//! watch the serial port for the expected lines, in order, within a timeout.

use crate::compose::{self, Built};
use crate::qemu;
use crate::workspace::{write, Workspace};
use anyhow::{Context, Result};
use config::profile::{self, Scenario};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Lines of serial output shown under a failure.
const TAIL: usize = 30;

/// Matches serial lines against a scenario's `expect` (substrings, in order)
/// and `forbid` (substrings, anywhere).
pub struct Matcher<'a> {
    expect: &'a [String],
    forbid: &'a [String],
    seen: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Progress<'a> {
    Waiting,
    Done,
    Forbidden(&'a str),
}

impl<'a> Matcher<'a> {
    pub fn new(expect: &'a [String], forbid: &'a [String]) -> Self {
        Matcher {
            expect,
            forbid,
            seen: 0,
        }
    }

    pub fn feed(&mut self, line: &str) -> Progress<'a> {
        if let Some(bad) = self.forbid.iter().find(|bad| line.contains(bad.as_str())) {
            return Progress::Forbidden(bad);
        }
        // One line may satisfy several consecutive expectations.
        while self
            .expect
            .get(self.seen)
            .is_some_and(|want| line.contains(want.as_str()))
        {
            self.seen += 1;
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

    /// The next expected line, if any.
    pub fn waiting_for(&self) -> Option<&'a str> {
        self.expect.get(self.seen).map(String::as_str)
    }
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

/// Builds and runs the scenario in `path`; never fails, the outcome says why.
pub fn run(ws: &Workspace, path: &Path) -> Outcome {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let scenario = match profile::load_scenario(path) {
        Ok(scenario) => scenario,
        Err(error) => return Outcome::failed(stem, error.to_string()),
    };
    let name = scenario.name.clone();
    match boot(ws, &scenario) {
        Ok(outcome) => outcome,
        Err(error) => Outcome::failed(name, format!("{error:#}")),
    }
}

fn boot(ws: &Workspace, scenario: &Scenario) -> Result<Outcome> {
    // An unknown board is reported at the scenario's `board = ...` line.
    let profile = scenario.load_board(&ws.boards_dir())?;
    let composition_name = format!("{}+{}", scenario.board, scenario.name);
    let mut composition = compose::plan(ws, &profile, scenario.vms.as_ref(), &composition_name)?;
    composition.selftest = scenario.selftest.clone();
    let built = compose::build_planned(ws, composition)?;
    let mut spec = qemu::spec(&profile)?.clone();
    if let Some(machine) = &scenario.machine {
        spec.machine = machine.clone();
    }
    let mut cmd = qemu::command(&spec, &built)?;
    cmd.args(qemu::HEADLESS);
    if scenario.icount {
        cmd.args(qemu::ICOUNT);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting QEMU")?;
    let mut matcher = Matcher::new(&scenario.expect, &scenario.forbid);
    let (lines, verdict) = watch(&mut child, &mut matcher, scenario.timeout);
    // Done either way; QEMU may already have exited, so errors do not matter.
    let _ = child.kill();
    let _ = child.wait();
    let elapsed = start.elapsed();
    let log = ws
        .scenario_logs_dir()
        .join(format!("{}.log", scenario.name));
    write(&log, lines.join("\n") + "\n")?;
    Ok(Outcome {
        name: scenario.name.clone(),
        elapsed,
        lines,
        failure: verdict.err(),
        built: Some(built),
    })
}

/// Feeds QEMU's output to `matcher` until it is satisfied, sees a forbidden
/// line, QEMU exits, or `timeout` passes. Returns every line read.
fn watch(
    child: &mut Child,
    matcher: &mut Matcher,
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
            Source::Serial => matcher.feed(&line),
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

    #[test]
    fn expectations_match_in_order() {
        let expect = strings(&["[hv] Tessera", "[hello] goodbye"]);
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
    fn one_line_can_satisfy_consecutive_expectations() {
        let expect = strings(&["a", "b"]);
        let mut m = Matcher::new(&expect, &[]);
        assert_eq!(m.feed("ab"), Progress::Done);
    }

    #[test]
    fn forbidden_wins_anywhere() {
        let expect = strings(&["ok"]);
        let forbid = strings(&["ISOLATION BROKEN"]);
        let mut m = Matcher::new(&expect, &forbid);
        assert_eq!(
            m.feed("[probe] ok ISOLATION BROKEN"),
            Progress::Forbidden("ISOLATION BROKEN")
        );
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
        let expect = strings(expect);
        let forbid = strings(&["PANIC"]);
        let mut matcher = Matcher::new(&expect, &forbid);
        let result = watch(&mut child, &mut matcher, Duration::from_millis(timeout_ms));
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
