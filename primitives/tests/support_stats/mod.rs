//! The contention scenario both statistics test binaries run (each binary
//! is its own crate, so they share it as a module).

use std::sync::Arc;

use coprimitives::CoMutex;
use coscheduler::{Coroutine, suspend};

/// One holder, `waiters` coroutines queued behind it, then `extra`
/// uncontended acquisitions.
pub(crate) fn mutex_scenario(name: &str, waiters: usize, extra: usize) {
    let m = Arc::new(CoMutex::with_stats(0u64, name));
    assert_eq!(m.name(), Some(name));
    let m0 = m.clone();
    let holder = Coroutine::new(move || {
        let mut g = m0.lock();
        *g += 1;
        suspend();
    });
    holder.enter();
    let queued: Vec<_> = (0..waiters)
        .map(|_| {
            let m = m.clone();
            let co = Coroutine::new(move || *m.lock() += 1);
            co.enter();
            co
        })
        .collect();
    holder.enter(); // releases: the waiters run one after another
    assert!(queued.iter().all(Coroutine::is_finished));
    let m1 = m.clone();
    Coroutine::new(move || {
        for _ in 0..extra {
            *m1.lock() += 1;
        }
    })
    .enter();
    assert_eq!(*m.try_lock().unwrap(), (1 + waiters + extra) as u64);
}
