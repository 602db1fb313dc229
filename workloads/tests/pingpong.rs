//! W3's rounds complete between two coroutines on two workers, and the floor's between two
//! threads, each lap timed once.

use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;

use coscheduler::{Coroutine, suspend};
use workloads::pingpong::{atomic_pingpong, ping, pong, timed_rounds};

const ROUNDS: u64 = 1_000;
const PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn the_floor_times_every_round_trip() {
    let mut laps = 0;
    let elapsed = atomic_pingpong(ROUNDS, |_| {}, |_| laps += 1).unwrap();
    assert_eq!(laps, ROUNDS);
    assert!(elapsed > Duration::ZERO);
}

#[test]
fn two_coroutines_on_two_workers_complete_every_round() {
    let rt = coscheduler::Runtime::builder().threads(2).build().unwrap();
    let contexts = rt.contexts();
    let a_slot: Arc<OnceLock<Coroutine>> = Arc::default();
    let (started_tx, started_rx) = mpsc::channel();
    let slot = a_slot.clone();
    let b = Coroutine::new(move || {
        started_tx.send(()).unwrap();
        suspend();
        pong(
            slot.get().expect("A is published before it wakes B"),
            ROUNDS,
        );
    });
    contexts[1].schedule(&b);
    started_rx.recv_timeout(PATIENCE).unwrap();
    let (laps_tx, laps_rx) = mpsc::channel();
    let b_handle = b.clone();
    let a = Coroutine::new(move || {
        let mut laps = 0u64;
        timed_rounds(ROUNDS, || ping(&b_handle), |_| laps += 1);
        laps_tx.send(laps).unwrap();
    });
    a_slot.set(a.clone()).ok().unwrap();
    contexts[0].schedule(&a);
    assert_eq!(laps_rx.recv_timeout(PATIENCE).unwrap(), ROUNDS);
    drop((a, b, a_slot));
    rt.shutdown();
}
