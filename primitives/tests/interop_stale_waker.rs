//! A future's waker kept after `coscheduler::wait` returned must never
//! resume a coroutine that now waits on a CoMutex: the mutex relies on
//! being the only one to wake its waiters (a second wake would panic in the
//! unlocker, or resume the waiter without the lock).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use coprimitives::CoMutex;
use coscheduler::{AioContext, suspend, wait};

/// Pending until `open`; keeps the latest waker for the test.
#[derive(Clone, Default)]
struct Gate {
    open: Arc<AtomicBool>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl Future for Gate {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        if self.open.load(SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

fn drain(ctx: &AioContext) {
    while ctx.poll(false) {}
}

#[test]
fn a_stale_waker_does_not_resume_a_comutex_waiter() {
    let ctx = AioContext::current();
    let m = Arc::new(CoMutex::new(0u32));
    // The holder takes the lock and keeps it until woken.
    let held = Arc::new(AtomicBool::new(false));
    let holder = {
        let (m, held) = (m.clone(), held.clone());
        ctx.spawn(move || {
            let mut g = m.lock();
            held.store(true, SeqCst);
            suspend();
            *g += 1;
        })
    };
    drain(&ctx);
    assert!(held.load(SeqCst));
    // The waiter awaits a future, then queues on the held mutex.
    let gate = Gate::default();
    let got = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (m, gate, got) = (m.clone(), gate.clone(), got.clone());
        ctx.spawn(move || {
            wait(gate);
            let mut g = m.lock();
            got.store(true, SeqCst);
            *g += 10;
        })
    };
    drain(&ctx);
    gate.open.store(true, SeqCst);
    let stale = gate.waker.lock().unwrap().clone().unwrap();
    stale.wake_by_ref();
    drain(&ctx);
    assert!(m.is_locked() && !got.load(SeqCst), "queued on the mutex");
    // Same thread: a real wake would enter the waiter right here.
    stale.wake_by_ref();
    assert!(!got.load(SeqCst), "a stale waker resumed a CoMutex waiter");
    // Four threads, 250 wakes each: a real wake would be handed over.
    let before = ctx.metrics().handoffs_received;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let w = stale.clone();
            std::thread::spawn(move || {
                for _ in 0..250 {
                    w.wake_by_ref();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drain(&ctx);
    assert_eq!(ctx.metrics().handoffs_received, before);
    assert!(!got.load(SeqCst), "a stale waker resumed a CoMutex waiter");
    // The unlock is the waiter's one wake.
    holder.coroutine().wake();
    drain(&ctx);
    assert!(got.load(SeqCst));
    holder.join().unwrap();
    waiter.join().unwrap();
    assert_eq!(*m.try_lock().unwrap(), 11);
}
