//! The load mode's bookkeeping: competitors start spinning, burn CPU, and are gone when
//! the pass ends, when it unwinds, and when `cobench` itself is killed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cobench::load::{Competitors, Load};

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cobench"))
}

/// The state letter of process `pid` from `/proc/PID/stat`, or `None` once it is gone.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Waits up to `limit` for `pid` to be gone (or a zombie nobody has reaped yet, which runs
/// no more).
fn gone_within(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        match state(pid) {
            None | Some('Z') | Some('X') => return true,
            Some(_) if Instant::now() >= deadline => return false,
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[test]
fn competitors_spin_until_stopped_then_are_reaped() {
    let load = Load::Busy {
        processes: 2,
        pinned: false,
    };
    let competitors = Competitors::start(exe(), load).unwrap();
    let pids = competitors.pids();
    assert_eq!(pids.len(), 2);
    for &pid in &pids {
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(cmdline.contains("busy"), "{cmdline:?}");
        assert!(matches!(state(pid), Some('R' | 'S')), "{:?}", state(pid));
    }
    std::thread::sleep(Duration::from_millis(300));
    let pass = competitors.stop().unwrap();
    assert_eq!((pass.load.as_str(), pass.competitors), ("busy:2", 2));
    assert!(pass.seconds >= 0.3, "{pass:?}");
    assert!(pass.competitor_cpu_seconds > 0.0, "{pass:?}");
    for pid in pids {
        // We were their parent and have waited for them: not even a zombie is left.
        assert_eq!(state(pid), None, "competitor {pid} outlived stop()");
    }
}

#[test]
fn a_pinned_competitor_runs_on_the_last_core() {
    let load = Load::Busy {
        processes: 1,
        pinned: true,
    };
    let competitors = Competitors::start(exe(), load).unwrap();
    let pid = competitors.pids()[0];
    let mine = allowed_cpus("self");
    assert_eq!(allowed_cpus(&pid.to_string()), [*mine.last().unwrap()]);
    competitors.stop().unwrap();
}

/// The CPU ids process `pid` (or `self`) may run on, in order.
fn allowed_cpus(pid: &str) -> Vec<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned();
    list.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<usize>>(),
            None => vec![part.parse().unwrap()],
        })
        .collect()
}

#[test]
fn a_panic_in_the_pass_still_stops_them() {
    let load = Load::Busy {
        processes: 1,
        pinned: false,
    };
    let mut pids = Vec::new();
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let competitors = Competitors::start(exe(), load).unwrap();
        pids = competitors.pids();
        panic!("a workload broke");
    }));
    assert!(unwound.is_err());
    assert_eq!(pids.len(), 1);
    assert_eq!(state(pids[0]), None, "competitor outlived the panic");
}

#[test]
fn a_killed_cobench_takes_its_competitors_with_it() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("killed/results.json");
    // A pass long enough to be killed in the middle of: W7's floor, 100 full samples.
    let mut run = Command::new(exe())
        .args(["run", "--tier", "time", "--filter", "std_sleep_threads"])
        .args(["--load", "busy:1", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(run.stderr.take().unwrap());
    let mut competitor = None;
    for line in stderr.lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("cobench: competitor pid ") {
            competitor = rest
                .split_whitespace()
                .next()
                .map(|p| p.parse::<u32>().unwrap());
            break;
        }
    }
    let pid = competitor.expect("cobench never reported its competitor");
    assert!(state(pid).is_some());
    run.kill().unwrap();
    run.wait().unwrap();
    assert!(
        gone_within(pid, Duration::from_secs(5)),
        "competitor {pid} still {:?} after its parent was killed",
        state(pid)
    );
    assert!(!out.exists(), "a killed run wrote results");
}
