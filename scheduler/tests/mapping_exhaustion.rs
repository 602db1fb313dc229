//! Creating coroutines until the kernel's mapping limit: creation fails with
//! the OS error (never an abort), the process stays healthy, and freeing some
//! coroutines makes creation work again. Alone in its binary: it exhausts
//! the process's mappings.

use coscheduler::{Coroutine, suspend};

#[test]
fn mapping_exhaustion_is_an_error_not_a_crash() {
    let limit: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65530);
    if limit > 262_144 {
        eprintln!("vm.max_map_count = {limit}: too high to exhaust in a test; skipping");
        return;
    }
    let mut live = Vec::new();
    let err = loop {
        match Coroutine::builder().stack_size(16 * 1024).create(suspend) {
            Ok(co) => {
                co.enter();
                live.push(co);
            }
            Err(e) => break e,
        }
        assert!(
            live.len() < limit,
            "no error after {} coroutines",
            live.len()
        );
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOMEM), "{err}");
    assert!(
        live.len() > limit / 3,
        "only {} coroutines before {err}",
        live.len()
    );
    let stats = coscheduler::pool::stats();
    assert!(stats.alloc_failures >= 1);
    // Still healthy: heap allocation and the live coroutines work.
    let v: Vec<u8> = vec![7; 1 << 16];
    assert_eq!(v.iter().map(|&b| b as usize).sum::<usize>(), 7 << 16);
    // Free some: creation works again.
    for co in live.drain(..100) {
        co.enter();
        assert!(co.is_finished());
    }
    let again = Coroutine::builder()
        .stack_size(16 * 1024)
        .create(|| {})
        .expect("a stack after freeing some");
    again.enter();
    assert!(again.is_finished());
    // Every remaining coroutine still resumes and finishes.
    for co in &live {
        co.enter();
    }
    assert!(live.iter().all(Coroutine::is_finished));
}
