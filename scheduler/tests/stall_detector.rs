//! The stall detector (issue 14): a coroutine that runs past the threshold
//! without suspending is reported once, by name, with its backtrace; the
//! other workers keep running the rest.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coscheduler::{AioContext, Runtime, StallReport};

/// Spins without suspending until `until` or until `stop` is set.
#[inline(never)]
fn spin_without_suspending(until: Instant, stop: &AtomicBool) {
    while Instant::now() < until && !stop.load(SeqCst) {
        std::hint::spin_loop();
    }
}

type Reports = Arc<Mutex<Vec<StallReport>>>;

fn runtime(threads: usize, threshold: Duration) -> (Runtime, Reports, Reports) {
    let (started, ended) = (Reports::default(), Reports::default());
    let (s, e) = (started.clone(), ended.clone());
    let rt = Runtime::builder()
        .threads(threads)
        .pin_threads(false)
        .stall_threshold(threshold)
        .on_stall(move |r| s.lock().unwrap().push(r.clone()))
        .on_stall_end(move |r| e.lock().unwrap().push(r.clone()))
        .build()
        .unwrap();
    (rt, started, ended)
}

#[test]
fn a_spinning_coroutine_is_reported_once_with_its_backtrace() {
    let (rt, started, ended) = runtime(2, Duration::from_millis(100));
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = rt.spawn_named("spinner", move || {
        spin_without_suspending(Instant::now() + Duration::from_millis(300), &s)
    });
    h.join().unwrap();
    let metrics = rt.metrics();
    let reports = started.lock().unwrap().clone();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    assert_eq!(r.name(), Some("spinner"));
    assert!(r.coroutine_id().is_some());
    assert!(
        r.elapsed() >= Duration::from_millis(100),
        "{:?}",
        r.elapsed()
    );
    assert!(!r.has_ended());
    assert!(
        r.backtrace().contains("spin_without_suspending"),
        "backtrace:\n{}",
        r.backtrace()
    );
    let line = r.to_string();
    assert!(line.contains("(spinner)") && !line.contains('\n'), "{line}");
    // The stall's length is in the histogram (over, or in progress if the
    // watchdog has not sampled since it ended).
    assert_eq!(metrics.stalls.detected, 1);
    assert_eq!(metrics.stalls.lengths.len(), 1);
    let longest = Duration::from_nanos(metrics.stalls.lengths.max());
    assert!(
        longest >= Duration::from_millis(200) && longest < Duration::from_secs(5),
        "{longest:?}"
    );
    rt.shutdown();
    // Once over, the total went to `on_stall_end`.
    let ended = ended.lock().unwrap();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert!(ended[0].has_ended() && ended[0].elapsed() >= Duration::from_millis(200));
}

#[test]
fn a_coroutine_that_yields_every_millisecond_is_never_reported() {
    let (rt, started, _) = runtime(1, Duration::from_millis(100));
    rt.spawn(|| {
        let stop = AtomicBool::new(false);
        let end = Instant::now() + Duration::from_secs(1);
        while Instant::now() < end {
            spin_without_suspending(Instant::now() + Duration::from_millis(1), &stop);
            coscheduler::yield_now();
        }
    })
    .join()
    .unwrap();
    let m = rt.metrics();
    rt.shutdown();
    assert!(started.lock().unwrap().is_empty());
    assert_eq!(m.stalls.detected, 0);
    assert_eq!(m.stalls.lengths.len(), 0);
}

#[test]
fn threshold_zero_reports_nothing() {
    let (rt, started, ended) = runtime(1, Duration::ZERO);
    let stop = AtomicBool::new(false);
    rt.spawn(move || spin_without_suspending(Instant::now() + Duration::from_millis(150), &stop))
        .join()
        .unwrap();
    let m = rt.metrics();
    rt.shutdown();
    assert!(started.lock().unwrap().is_empty());
    assert!(ended.lock().unwrap().is_empty());
    assert_eq!(m.stalls.threshold, Duration::ZERO);
    assert_eq!(m.stalls.detected, 0);
}

/// While worker 0 is held by a spinning coroutine, everything spawned
/// meanwhile runs on worker 1.
#[test]
fn other_workers_run_new_coroutines_while_one_is_stalled() {
    let detected = Arc::new(AtomicBool::new(false));
    let d = detected.clone();
    let rt = Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .stall_threshold(Duration::from_millis(50))
        .on_stall(move |_| d.store(true, SeqCst))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let stalled_ctx = rt.contexts()[0].clone();
    let spinner = stalled_ctx
        .spawn(move || spin_without_suspending(Instant::now() + Duration::from_secs(60), &s));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !detected.load(SeqCst) {
        assert!(Instant::now() < deadline, "the stall was never detected");
        std::thread::sleep(Duration::from_millis(5));
    }
    let elsewhere = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..10_000)
        .map(|_| {
            let (elsewhere, stalled) = (elsewhere.clone(), stalled_ctx.clone());
            rt.spawn(move || {
                if AioContext::current() != stalled {
                    elsewhere.fetch_add(1, SeqCst);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(elsewhere.load(SeqCst), 10_000);
    stop.store(true, SeqCst);
    spinner.join().unwrap();
    rt.shutdown();
}

/// A worker that does not answer is named in the dump by what it runs.
#[test]
fn the_dump_names_the_coroutine_a_busy_worker_runs() {
    let (rt, _, _) = runtime(1, Duration::from_millis(50));
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = rt.spawn_named("hog", move || {
        spin_without_suspending(Instant::now() + Duration::from_secs(60), &s)
    });
    while h.coroutine().context().is_none() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let dump = rt.dump();
    stop.store(true, SeqCst);
    h.join().unwrap();
    rt.shutdown();
    let id = h_id(&dump);
    assert!(
        dump.contains(&format!("coroutine {id} (hog) has been running for")),
        "{dump}"
    );
}

/// The id in "coroutine N (hog)".
fn h_id(dump: &str) -> u64 {
    let at = dump.find(" (hog)").expect("the dump names the coroutine");
    let digits: String = dump[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap()
}

/// The shutdown's message about a worker it waits for names the coroutine
/// that keeps it busy. Run in a child process to read its stderr.
#[test]
fn the_shutdown_names_the_coroutine_it_waits_for() {
    if std::env::var_os("STALL_SHUTDOWN_CHILD").is_some() {
        let rt = Runtime::builder()
            .threads(1)
            .thread_name("hogged")
            .stall_threshold(Duration::from_millis(50))
            .on_stall(|_| {})
            .shutdown_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let stop = AtomicBool::new(false);
        let h = rt.spawn_named("endless", move || {
            spin_without_suspending(Instant::now() + Duration::from_millis(1500), &stop)
        });
        while h.coroutine().context().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        eprintln!("child: the spinner is coroutine {}", h.coroutine().id());
        drop(h);
        drop(rt);
        return;
    }
    let out = testkit::run_test_in_child(
        "the_shutdown_names_the_coroutine_it_waits_for",
        "STALL_SHUTDOWN_CHILD",
        "1",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let id: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("child: the spinner is coroutine "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        stderr.contains(&format!(
            "shutdown is waiting for worker 0 (hogged-0): coroutine {id} (endless) has been running for"
        )),
        "{stderr}"
    );
}
