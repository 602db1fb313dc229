//! Shared-machine mode: the loads the time tier runs under, and the competing processes
//! that make them.
//!
//! A loaded pass (`--load busy:N`) starts N child processes, each `cobench busy` spinning
//! on a core for as long as the pass runs: what a neighbour on a CI runner, container host
//! or shared VM does. A child process is the faithful neighbour, not a thread of ours: the
//! kernel schedules it as a stranger, it shows in no `getrusage` of this process (so the
//! W8 rows' server CPU stays clean), and it cannot share a lock or an allocator with the
//! runtime under test.
//!
//! # Stopping them, whatever happens
//!
//! - At the end of the pass, [`Competitors::stop`] kills and reaps every child and reads
//!   from the kernel how much CPU they burnt ([`LoadPass::competitor_cpu_seconds`]),
//!   which is the evidence that the pass really was loaded.
//! - On an error or a panic, [`Competitors`]' `Drop` kills and reaps them.
//! - If `cobench` itself dies (Ctrl-C, SIGKILL), each child has asked the kernel for
//!   `SIGKILL` on its parent's death (`PR_SET_PDEATHSIG`) and also polls its parent id, so
//!   none is left spinning. Ctrl-C at a terminal reaches them directly as well: they are in
//!   `cobench`'s process group.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::cpu::{Who, cpu_time};
use crate::error::Error;
use crate::schema::{LoadPass, QUIET};

/// What runs beside the time tier during one pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// Nothing of ours: the machine as it is.
    Quiet,
    /// `processes` children each spinning on a core: unpinned, placed by the kernel as any
    /// neighbour is, or pinned one per core counting down from the last, so that on two
    /// cores `busy:1:pinned` shares a core with a pinned runtime's worker 1 for certain.
    Busy {
        /// How many spinning processes.
        processes: u32,
        /// Whether each is pinned to one core.
        pinned: bool,
    },
}

impl Load {
    /// How many competing processes this load starts.
    pub fn processes(self) -> u32 {
        match self {
            Load::Quiet => 0,
            Load::Busy { processes, .. } => processes,
        }
    }
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Load::Quiet => f.write_str(QUIET),
            Load::Busy {
                processes,
                pinned: false,
            } => write!(f, "busy:{processes}"),
            Load::Busy {
                processes,
                pinned: true,
            } => write!(f, "busy:{processes}:pinned"),
        }
    }
}

impl FromStr for Load {
    type Err = String;

    /// `quiet`, `busy:N` or `busy:N:pinned`, N from 1 to 64.
    fn from_str(s: &str) -> Result<Load, String> {
        let bad = || format!("`{s}` is not a load: use quiet, busy:N or busy:N:pinned");
        if s == QUIET {
            return Ok(Load::Quiet);
        }
        let rest = s.strip_prefix("busy:").ok_or_else(bad)?;
        let (count, pinned) = match rest.strip_suffix(":pinned") {
            Some(count) => (count, true),
            None => (rest, false),
        };
        match count.parse::<u32>() {
            Ok(processes @ 1..=64) => Ok(Load::Busy { processes, pinned }),
            _ => Err(bad()),
        }
    }
}

/// Parses a comma-separated list of loads (`quiet,busy:1`), refusing an empty list and
/// repeats (two passes under one load would give two rows of one name and load).
pub fn parse_list(s: &str) -> Result<Vec<Load>, String> {
    let mut loads: Vec<Load> = Vec::new();
    for part in s.split(',').map(str::trim) {
        let load = part.parse::<Load>()?;
        if loads.contains(&load) {
            return Err(format!("load `{load}` is listed twice"));
        }
        loads.push(load);
    }
    Ok(loads)
}

/// How long to wait for a competitor to report that it spins, before calling the pass
/// broken rather than loaded.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The running competitors of one pass; dropping it kills them.
#[derive(Debug)]
pub struct Competitors {
    load: Load,
    children: Vec<Child>,
    started: Instant,
}

impl Competitors {
    /// Starts the competitors of `load` (none for [`Load::Quiet`]) as `exe busy`, and
    /// returns once each has reported that it is spinning.
    pub fn start(exe: &Path, load: Load) -> Result<Competitors, Error> {
        let mut competitors = Competitors {
            load,
            children: Vec::new(),
            started: Instant::now(),
        };
        let Load::Busy { processes, pinned } = load else {
            return Ok(competitors);
        };
        let cores = core_affinity::get_core_ids().map_or(1, |ids| ids.len().max(1));
        for i in 0..processes as usize {
            let mut command = Command::new(exe);
            command
                .arg("busy")
                .arg("--parent")
                .arg(std::process::id().to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            if pinned {
                command
                    .arg("--core")
                    .arg((cores - 1 - i % cores).to_string());
            }
            let child = command.spawn().map_err(|e| Error::io(exe, e))?;
            // Pushed before waiting for it, so that `Drop` reaps it if the wait fails.
            competitors.children.push(child);
            let child = competitors.children.last_mut().expect("just pushed");
            wait_ready(child)?;
            eprintln!("cobench: competitor pid {} spinning ({load})", child.id());
        }
        competitors.started = Instant::now();
        Ok(competitors)
    }

    /// Process ids of the running competitors.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Kills and reaps every competitor and accounts for the pass.
    pub fn stop(mut self) -> Result<LoadPass, Error> {
        let seconds = self.started.elapsed().as_secs_f64();
        let before = cpu_time(Who::Children);
        let reaped = self.reap();
        // Only this thread reaps children, and nothing else runs between the two reads, so
        // the difference is the competitors' own CPU time.
        let cpu = cpu_time(Who::Children).saturating_sub(before);
        reaped?;
        Ok(LoadPass {
            load: self.load.to_string(),
            competitors: self.load.processes(),
            seconds,
            competitor_cpu_seconds: cpu.as_secs_f64(),
        })
    }

    /// Kills and waits for every child still held, returning the first failure after
    /// trying them all.
    fn reap(&mut self) -> Result<(), Error> {
        let mut first_error = None;
        for mut child in self.children.drain(..) {
            // `kill` fails only if the child already exited, which `wait` then reaps.
            let _ = child.kill();
            if let Err(e) = child.wait() {
                first_error.get_or_insert(Error::Load(format!(
                    "waiting for competitor pid {}: {e}",
                    child.id()
                )));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Competitors {
    fn drop(&mut self) {
        // An error or a panic ended the pass: a spinning leftover would skew whatever the
        // machine does next.
        let _ = self.reap();
    }
}

/// Waits for a competitor's "ready" line on its stdout.
fn wait_ready(child: &mut Child) -> Result<(), Error> {
    let pid = child.id();
    let Some(stdout) = child.stdout.take() else {
        return Err(Error::Load(format!("competitor pid {pid} has no stdout")));
    };
    // A blocking read on a pipe has no timeout; a helper thread reads, this one waits.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(read.map(|_| line));
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(Ok(line)) if line.trim() == READY => Ok(()),
        Ok(Ok(line)) => Err(Error::Load(format!(
            "competitor pid {pid} did not start spinning (said {line:?})"
        ))),
        Ok(Err(e)) => Err(Error::Load(format!("reading competitor pid {pid}: {e}"))),
        Err(_) => Err(Error::Load(format!(
            "competitor pid {pid} did not report within {START_TIMEOUT:?}"
        ))),
    }
}

/// What a competitor prints once it is about to spin.
const READY: &str = "ready";

/// Spin iterations between checks that the parent is still alive: about a millisecond.
const SPINS_PER_CHECK: u32 = 1 << 20;

/// The hidden `cobench busy` subcommand: keeps one core busy until `parent` is gone (or
/// this process is killed, which is how a pass normally ends it). Pinned to the `core`-th
/// core when given.
pub fn busy(parent: u32, core: Option<usize>) -> Result<(), Error> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number as its only argument (the rest are
    // ignored); it changes nothing but this process's own death signal.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    if rc != 0 {
        // The poll below still ends the process when the parent goes.
        eprintln!(
            "cobench busy: PR_SET_PDEATHSIG failed: {}",
            std::io::Error::last_os_error()
        );
    }
    // The parent may have died between fork and prctl: then nobody would ever stop us.
    if std::os::unix::process::parent_id() != parent {
        return Ok(());
    }
    if let Some(index) = core {
        let ids = core_affinity::get_core_ids().unwrap_or_default();
        if let Some(&id) = ids.get(index) {
            core_affinity::set_for_current(id);
        }
    }
    let mut out = std::io::stdout();
    writeln!(out, "{READY}")
        .and_then(|()| out.flush())
        .map_err(|e| Error::Load(format!("cobench busy: {e}")))?;
    let mut x = 0u64;
    while std::os::unix::process::parent_id() == parent {
        for _ in 0..SPINS_PER_CHECK {
            // Integer work the optimiser must keep: a neighbour computing, not pausing.
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_parse_and_print_back() {
        for text in ["quiet", "busy:1", "busy:2:pinned"] {
            assert_eq!(text.parse::<Load>().unwrap().to_string(), text);
        }
        assert_eq!(
            parse_list("quiet, busy:1").unwrap(),
            [
                Load::Quiet,
                Load::Busy {
                    processes: 1,
                    pinned: false
                }
            ]
        );
        for bad in [
            "",
            "busy",
            "busy:0",
            "busy:x",
            "busy:1:loose",
            "noisy",
            "busy:65",
        ] {
            assert!(bad.parse::<Load>().is_err(), "{bad}");
        }
        assert!(parse_list("quiet,quiet").unwrap_err().contains("twice"));
    }

    #[test]
    fn quiet_starts_nothing() {
        let c = Competitors::start(Path::new("/nonexistent"), Load::Quiet).unwrap();
        assert!(c.pids().is_empty());
        let pass = c.stop().unwrap();
        assert_eq!((pass.load.as_str(), pass.competitors), ("quiet", 0));
    }
}
