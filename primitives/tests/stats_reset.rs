//! `stats::reset` (its own test binary: a reset clears every name in the
//! process, which would disturb tests running beside it).

mod support_stats;

use coprimitives::stats;
use support_stats::mutex_scenario;

/// `reset` forgets everything, including the fast counters of threads that
/// keep running (baselines) and of threads that have exited.
#[test]
fn reset_forgets_everything() {
    // Runs the scenario on a thread that exits (its record is retired) and
    // on this thread.
    let name = "stats-test/reset";
    std::thread::spawn(move || mutex_scenario(name, 1, 1))
        .join()
        .unwrap();
    mutex_scenario(name, 1, 1);
    assert_eq!(stats::snapshot_of(name).unwrap().counters.waited, 2);
    stats::reset();
    let s = stats::snapshot_of(name).unwrap();
    assert_eq!(s.counters.acquisitions(), 0, "{s}");
    assert!(s.wait.is_empty());
    mutex_scenario(name, 2, 0);
    let s = stats::snapshot_of(name).unwrap();
    assert_eq!(s.counters.waited, 2);
    assert_eq!(s.counters.fast, 2);
}
