//! The registry of workloads, in `--list` order.
//!
//! Each workload will be a module here (`mutex.rs`, `rwlock.rs`, ...). Until the runtime API
//! they need exists, every entry is a `pending` placeholder that refuses to run.

pub mod deadlock;
mod pending;

use crate::workload::Workload;
use pending::Pending;

/// The workload run when none is named: all the others at once.
pub const DEFAULT: &str = "mixed";

/// Every workload, in the order `--list` shows them.
static WORKLOADS: [&dyn Workload; 8] = [
    &Pending::new(
        "mutex",
        "contended CoMutex: coroutines on every context increment one counter (W4); \
         checks counter == increments",
    ),
    &Pending::new(
        "rwlock",
        "CoRwLock readers and writers with upgrades and downgrades; checks that readers \
         never see a torn write and writes == versions",
    ),
    &Pending::new(
        "queue",
        "producers and consumers over CoQueue and CoMutex; checks every item is consumed \
         exactly once",
    ),
    &Pending::new(
        "wake",
        "cross-context ping-pong and wake storms (W3); checks wakes sent == wakes received, \
         wake latency by source",
    ),
    &Pending::new(
        "lifecycle",
        "spawn storms and create/enter/finish churn through the pool (W2, W5); checks \
         spawned == completed",
    ),
    &Pending::new(
        "sleep",
        "coroutines sleeping on timers (W7); checks sleeps == wake-ups, oversleep histogram",
    ),
    &Pending::new(
        "echo",
        "loopback TCP echo (W8); checks bytes sent == bytes echoed, request latency",
    ),
    &Pending::new(DEFAULT, "all of the above at once"),
];

/// Every workload, in `--list` order.
pub fn all() -> &'static [&'static dyn Workload] {
    &WORKLOADS
}

/// The workload called `name`.
pub fn find(name: &str) -> Option<&'static dyn Workload> {
    WORKLOADS
        .iter()
        .copied()
        .find(|workload| workload.name() == name)
}

/// The names of every workload, in `--list` order.
pub fn names() -> Vec<&'static str> {
    WORKLOADS.iter().map(|workload| workload.name()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eight_workloads_are_registered() {
        let expected = [
            "mutex",
            "rwlock",
            "queue",
            "wake",
            "lifecycle",
            "sleep",
            "echo",
            "mixed",
        ];
        assert_eq!(names(), expected);
        assert!(find(DEFAULT).is_some());
        assert!(
            find("deadlock").is_none(),
            "the deadlock scenario is not a workload"
        );
    }
}
