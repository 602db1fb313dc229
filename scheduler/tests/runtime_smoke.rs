//! Quick end-to-end checks of the Runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use coscheduler::{Coroutine, Runtime, suspend};

#[test]
fn block_on_and_spawn() {
    let rt = Runtime::builder().threads(2).build().unwrap();
    let total = Arc::new(AtomicUsize::new(0));
    let t = total.clone();
    let sum = rt.block_on(move || {
        let hs: Vec<_> = (0..100)
            .map(|i| {
                let t = t.clone();
                coscheduler::AioContext::current().spawn(move || {
                    t.fetch_add(1, SeqCst);
                    i
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
    });
    assert_eq!(sum, 4950);
    assert_eq!(total.load(SeqCst), 100);
    let handles: Vec<_> = (0..1000).map(|i| rt.spawn(move || i * 2)).collect();
    let s: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(s, 999 * 1000);
    rt.shutdown();
}

#[test]
fn cross_context_ping_pong() {
    const N: usize = 10_000;
    let rt = Runtime::builder().threads(2).pin_threads(false).build().unwrap();
    let ctxs = rt.contexts().to_vec();
    let a_slot: Arc<std::sync::Mutex<Option<Coroutine>>> = Arc::default();
    let (slot, b_ran) = (a_slot.clone(), Arc::new(AtomicUsize::new(0)));
    let br = b_ran.clone();
    let b = Coroutine::new(move || {
        for _ in 0..N {
            suspend();
            br.fetch_add(1, SeqCst);
            let a = slot.lock().unwrap().clone().unwrap();
            a.wake();
        }
    });
    let ready = Arc::new(AtomicUsize::new(0));
    ctxs[1].schedule(&b);
    while b.context().is_none() || b.entered() {
        std::thread::yield_now();
    }
    let (b2, r) = (b.clone(), ready.clone());
    let a = Coroutine::new(move || {
        for _ in 0..N {
            b2.wake();
            suspend();
        }
        r.store(1, SeqCst);
    });
    *a_slot.lock().unwrap() = Some(a.clone());
    ctxs[0].schedule(&a);
    let start = std::time::Instant::now();
    while ready.load(SeqCst) == 0 {
        assert!(start.elapsed().as_secs() < 30, "ping-pong stalled at {}", b_ran.load(SeqCst));
        std::thread::yield_now();
    }
    assert_eq!(b_ran.load(SeqCst), N);
    assert_eq!(a.context().unwrap(), ctxs[0]);
    assert_eq!(b.context().unwrap(), ctxs[1]);
    let m = rt.metrics();
    assert!(m.total.handoffs_received >= 2 * N as u64, "{m:?}");
    a_slot.lock().unwrap().take();
    rt.shutdown();
}
