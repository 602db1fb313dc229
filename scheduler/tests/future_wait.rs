//! `wait`: futures awaited from coroutines and from plain threads; the
//! waker's one-wake-per-suspension rule, stale wakers, cancellation.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::thread::{self, ThreadId};
use std::time::Duration;

use coscheduler::{AioContext, Coroutine, JoinError, Runtime, suspend, wait};
use testkit::wait_until;

/// Runs this thread's context until a turn makes no progress.
fn drain(ctx: &AioContext) {
    while ctx.poll(false) {}
}

/// A future that is pending until `open`, counting its polls and keeping
/// the latest waker where the test can reach it (a stale waker, once the
/// wait is over).
#[derive(Clone, Default)]
struct Gate {
    open: Arc<AtomicBool>,
    polls: Arc<AtomicUsize>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl Gate {
    fn waker(&self) -> Waker {
        self.waker.lock().unwrap().clone().expect("polled once")
    }
}

impl Future for Gate {
    type Output = usize;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let n = self.polls.fetch_add(1, SeqCst) + 1;
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        if self.open.load(SeqCst) {
            Poll::Ready(n)
        } else {
            Poll::Pending
        }
    }
}

#[test]
fn a_ready_future_returns_its_value_inside_and_outside_a_coroutine() {
    assert_eq!(wait(async { 1 + 1 }), 2);
    let ctx = AioContext::current();
    let h = ctx.spawn(|| wait(std::future::ready("in")));
    assert_eq!(h.join().unwrap(), "in");
}

#[test]
fn a_future_may_borrow_the_coroutines_locals() {
    let ctx = AioContext::current();
    let h = ctx.spawn(|| {
        let word = String::from("borrowed");
        let len = wait(async { word.len() });
        (len, word)
    });
    assert_eq!(h.join().unwrap(), (8, "borrowed".to_owned()));
}

#[test]
fn a_panicking_future_fails_the_coroutine_with_its_message() {
    let ctx = AioContext::current();
    let h = ctx.spawn(|| wait(async { panic!("future says no") }));
    let e = h.join().unwrap_err();
    assert_eq!(e.panic_message(), Some("future says no"));
}

#[test]
fn outside_a_coroutine_wait_runs_the_threads_context_meanwhile() {
    // The future is completed by a coroutine homed on this very thread:
    // `wait` must run it, or it would block forever.
    let ctx = AioContext::current();
    let (tx, rx) = futures::channel::oneshot::channel();
    let _h = ctx.spawn(move || {
        coscheduler::yield_now();
        tx.send(thread::current().id()).unwrap();
    });
    let sender = wait(rx).unwrap();
    assert_eq!(sender, thread::current().id());
}

#[test]
fn outside_a_coroutine_a_wake_from_another_thread_ends_the_block() {
    let (tx, rx) = futures::channel::oneshot::channel();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        tx.send(5).unwrap();
    });
    assert_eq!(wait(rx), Ok(5));
    t.join().unwrap();
}

/// 10,000 oneshot values, each sent by a plain thread to a coroutine (which
/// checks it resumed on its home thread) or by a coroutine to a plain
/// thread (which blocks in `wait`).
#[test]
fn oneshot_between_coroutines_and_plain_threads() {
    const COROUTINES: usize = 50;
    const EACH: usize = 100; // 50 * 100 * 2 directions = 10,000 messages
    let rt = Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .build()
        .unwrap();
    // Plain senders: get (sender, value) pairs and send.
    type Job = (futures::channel::oneshot::Sender<usize>, usize);
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let rx = jobs_rx.clone();
            thread::spawn(move || {
                loop {
                    let job = rx.lock().unwrap().recv();
                    let Ok((tx, v)) = job else { return };
                    tx.send(v).unwrap();
                }
            })
        })
        .collect();
    // Plain receivers: get receivers and wait for them outside coroutines.
    let (rx_tx, rx_rx) = mpsc::channel::<futures::channel::oneshot::Receiver<usize>>();
    let rx_rx = Arc::new(Mutex::new(rx_rx));
    let received_by_threads = Arc::new(Mutex::new(Vec::new()));
    let receivers: Vec<_> = (0..2)
        .map(|_| {
            let (rx, out) = (rx_rx.clone(), received_by_threads.clone());
            thread::spawn(move || {
                loop {
                    let next = rx.lock().unwrap().recv();
                    let Ok(r) = next else { return };
                    let v = wait(r).unwrap();
                    out.lock().unwrap().push(v);
                }
            })
        })
        .collect();
    let handles: Vec<_> = (0..COROUTINES)
        .map(|c| {
            let jobs = jobs_tx.clone();
            let to_threads = rx_tx.clone();
            rt.contexts()[c % 2].spawn(move || {
                let home = thread::current().id();
                let mut got = Vec::with_capacity(EACH);
                for k in 0..EACH {
                    let v = (c * EACH + k) * 2;
                    let (tx, rx) = futures::channel::oneshot::channel();
                    jobs.send((tx, v)).unwrap();
                    got.push(wait(rx).unwrap());
                    assert_eq!(thread::current().id(), home, "a wake landed away from home");
                    let (tx, rx) = futures::channel::oneshot::channel();
                    to_threads.send(rx).unwrap();
                    tx.send(v + 1).unwrap();
                }
                got
            })
        })
        .collect();
    drop((jobs_tx, rx_tx));
    let mut seen = HashSet::new();
    for h in handles {
        for v in h.join().unwrap() {
            assert!(seen.insert(v), "{v} received twice");
        }
    }
    for t in senders.into_iter().chain(receivers) {
        t.join().unwrap();
    }
    for v in received_by_threads.lock().unwrap().iter() {
        assert!(seen.insert(*v), "{v} received twice");
    }
    assert_eq!(seen.len(), COROUTINES * EACH * 2);
    assert_eq!(seen, (0..COROUTINES * EACH * 2).collect());
    rt.shutdown();
}

/// 10,000 values through bounded async-channels: plain producer threads to
/// receiving coroutines, and sending coroutines to a plain consumer, with
/// senders that must suspend when the channel is full.
#[test]
fn async_channel_between_coroutines_and_plain_threads() {
    const PER_DIRECTION: usize = 5_000;
    let rt = Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .build()
        .unwrap();
    let (to_co, from_threads) = async_channel::bounded::<usize>(8);
    let (to_thread, from_cos) = async_channel::bounded::<usize>(8);
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let tx = to_co.clone();
            thread::spawn(move || {
                for v in (p..PER_DIRECTION).step_by(2) {
                    tx.send_blocking(v).unwrap();
                }
            })
        })
        .collect();
    drop(to_co);
    let consumer = thread::spawn(move || {
        let mut got = Vec::new();
        while let Ok(v) = from_cos.recv_blocking() {
            got.push(v);
        }
        got
    });
    let cos: Vec<_> = (0..8)
        .map(|i| {
            let (rx, tx) = (from_threads.clone(), to_thread.clone());
            rt.contexts()[i % 2].spawn(move || {
                let home = thread::current().id();
                let mut got = Vec::new();
                while let Ok(v) = wait(rx.recv()) {
                    assert_eq!(thread::current().id(), home);
                    got.push(v);
                    wait(tx.send(PER_DIRECTION + v)).unwrap();
                    assert_eq!(thread::current().id(), home);
                }
                got
            })
        })
        .collect();
    drop((from_threads, to_thread));
    let mut seen = HashSet::new();
    for h in cos {
        for v in h.join().unwrap() {
            assert!(seen.insert(v), "{v} received twice");
        }
    }
    for p in producers {
        p.join().unwrap();
    }
    for v in consumer.join().unwrap() {
        assert!(seen.insert(v), "{v} received twice");
    }
    assert_eq!(seen, (0..2 * PER_DIRECTION).collect());
    rt.shutdown();
}

/// Spawns, on this thread's context, a coroutine that waits for `gate`, then
/// suspends raw (as if on a primitive of its own) until woken, then ends.
fn waits_then_suspends(gate: &Gate) -> (Coroutine, Arc<AtomicUsize>) {
    let resumed = Arc::new(AtomicUsize::new(0));
    let (g, r) = (gate.clone(), resumed.clone());
    let h = AioContext::current().spawn(move || {
        wait(g);
        suspend();
        r.fetch_add(1, SeqCst);
    });
    (h.coroutine().clone(), resumed)
}

#[test]
fn a_stale_waker_does_not_resume_a_coroutine_suspended_on_something_else() {
    let ctx = AioContext::current();
    let gate = Gate::default();
    let (co, resumed) = waits_then_suspends(&gate);
    drain(&ctx);
    assert_eq!(gate.polls.load(SeqCst), 1);
    gate.open.store(true, SeqCst);
    gate.waker().wake_by_ref();
    drain(&ctx);
    // The wait is over; the coroutine is now in `suspend()`.
    assert_eq!(gate.polls.load(SeqCst), 2);
    assert!(!co.is_finished());
    let stale = gate.waker();
    // From this thread: a real wake would enter it right here.
    stale.wake_by_ref();
    assert_eq!(resumed.load(SeqCst), 0, "resumed by a stale waker");
    // From other threads: a real wake would be in the hand-off queue.
    let before = ctx.metrics().handoffs_received;
    let t = {
        let w = stale.clone();
        thread::spawn(move || {
            w.wake_by_ref();
            w.wake();
        })
    };
    t.join().unwrap();
    drain(&ctx);
    assert_eq!(ctx.metrics().handoffs_received, before);
    assert_eq!(resumed.load(SeqCst), 0, "resumed by a stale waker");
    // Its real owner wakes it exactly once, without a double-wake panic.
    co.wake();
    drain(&ctx);
    assert_eq!(resumed.load(SeqCst), 1);
    assert!(co.is_finished());
    // A waker outliving its coroutine is harmless.
    stale.wake();
}

#[test]
fn a_stale_waker_only_makes_a_later_wait_poll_again() {
    let ctx = AioContext::current();
    let first = Gate::default();
    let second = Gate::default();
    let (f, s) = (first.clone(), second.clone());
    let h = ctx.spawn(move || {
        wait(f);
        wait(s)
    });
    drain(&ctx);
    first.open.store(true, SeqCst);
    first.waker().wake();
    drain(&ctx);
    assert_eq!(second.polls.load(SeqCst), 1, "now waiting on the second");
    // The first wait's waker is stale; the second wait polls again and
    // stays pending.
    first.waker().wake();
    drain(&ctx);
    assert_eq!(second.polls.load(SeqCst), 2);
    assert!(!h.is_finished());
    second.open.store(true, SeqCst);
    second.waker().wake();
    assert_eq!(h.join().unwrap(), 3);
}

/// `Waker::wake` by value, on a waker of its own (the vtable's `wake`, not
/// `wake_by_ref`).
fn wake_owned(w: Waker) {
    w.wake();
}

#[test]
fn four_thousand_wakes_from_four_threads_are_one_wake() {
    let ctx = AioContext::current();
    let gate = Gate::default();
    let g = gate.clone();
    let h = ctx.spawn(move || wait(g));
    drain(&ctx);
    assert_eq!(gate.polls.load(SeqCst), 1);
    let waker = gate.waker();
    let before = ctx.metrics().handoffs_received;
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let w = waker.clone();
            thread::spawn(move || {
                for k in 0..1_000 {
                    if (i + k) % 2 == 0 {
                        w.wake_by_ref();
                    } else {
                        wake_owned(w.clone());
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drain(&ctx);
    assert_eq!(ctx.metrics().handoffs_received - before, 1, "one hand-off");
    assert_eq!(gate.polls.load(SeqCst), 2, "resumed once, polled once more");
    gate.open.store(true, SeqCst);
    waker.wake();
    assert_eq!(h.join().unwrap(), 3);
}

#[test]
fn a_coroutine_awaits_another_coroutines_join_handle() {
    let rt = Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .build()
        .unwrap();
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    let inner = rt.contexts()[1].spawn(move || wait(rx).unwrap() + 1);
    let outer = rt.contexts()[0].spawn(move || wait(inner));
    tx.send(41).unwrap();
    assert_eq!(outer.join().unwrap().unwrap(), 42);
    let failing = rt.spawn(|| -> u32 { panic!("inner failed") });
    let outer = rt.spawn(move || wait(failing));
    let e = outer.join().unwrap().unwrap_err();
    assert_eq!(e.panic_message(), Some("inner failed"));
    rt.shutdown();
}

#[test]
fn join_handles_are_futures_for_any_executor() {
    let rt = Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .build()
        .unwrap();
    let hs: Vec<_> = (0..100u64)
        .map(|i| {
            rt.spawn(move || {
                coscheduler::yield_now();
                i
            })
        })
        .collect();
    let sum: u64 = futures::executor::block_on(async {
        let mut sum = 0;
        for h in hs {
            sum += h.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, (0..100).sum());
    rt.shutdown();
}

#[test]
fn polling_a_join_handle_after_its_result_panics() {
    let ctx = AioContext::current();
    let mut h = ctx.spawn(|| 1);
    drain(&ctx);
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(matches!(Pin::new(&mut h).poll(&mut cx), Poll::Ready(Ok(1))));
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = Pin::new(&mut h).poll(&mut cx);
    }));
    let msg = again.unwrap_err();
    let msg = msg.downcast_ref::<String>().unwrap();
    assert!(msg.contains("polled after it returned its result"), "{msg}");
}

/// Records where (and whether) it was dropped; never completes.
struct DropProbe {
    home: ThreadId,
    dropped: Arc<AtomicUsize>,
    away: Arc<AtomicUsize>,
    keep_waker: Option<Arc<Mutex<Vec<Waker>>>>,
}

impl Future for DropProbe {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(k) = &self.keep_waker {
            k.lock().unwrap().push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        if thread::current().id() != self.home {
            self.away.fetch_add(1, SeqCst);
        }
        self.dropped.fetch_add(1, SeqCst);
    }
}

/// Shutting a runtime down unwinds coroutines suspended in `wait`: each
/// future is dropped once, on its home thread, whether or not its waker is
/// still held elsewhere, and each handle reports the cancellation.
#[test]
fn shutdown_drops_awaited_futures_on_their_home_threads() {
    const N: usize = 60;
    let rt = Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .build()
        .unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let away = Arc::new(AtomicUsize::new(0));
    let waiting = Arc::new(AtomicUsize::new(0));
    let kept = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let (d, a, w) = (dropped.clone(), away.clone(), waiting.clone());
            let keep = (i % 2 == 0).then(|| kept.clone());
            rt.contexts()[i % 2].spawn(move || {
                let probe = DropProbe {
                    home: thread::current().id(),
                    dropped: d,
                    away: a,
                    keep_waker: keep,
                };
                w.fetch_add(1, SeqCst);
                wait(probe);
                unreachable!("the probe never completes");
            })
        })
        .collect();
    wait_until("every coroutine to wait", || {
        waiting.load(SeqCst) == N && kept.lock().unwrap().len() == N / 2
    });
    // Let the last ones reach their suspension.
    wait_until("the coroutines to suspend", || {
        handles.iter().all(|h| !h.coroutine().entered())
    });
    drop(rt);
    assert_eq!(dropped.load(SeqCst), N, "every future dropped once");
    assert_eq!(away.load(SeqCst), 0, "dropped away from its home thread");
    for h in handles {
        assert!(matches!(h.join(), Err(JoinError::Cancelled)));
    }
    // Wakers that outlived their runtime and coroutines are inert.
    for w in kept.lock().unwrap().drain(..) {
        w.wake();
    }
}

/// Dropping every handle of a coroutine suspended in `wait`, when nothing
/// else holds its waker, unwinds it at home and drops the future there.
#[test]
fn a_coroutine_nobody_can_wake_drops_its_future_at_home() {
    let rt = Runtime::builder()
        .threads(1)
        .pin_threads(false)
        .build()
        .unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let away = Arc::new(AtomicUsize::new(0));
    let (d, a) = (dropped.clone(), away.clone());
    let (tx, rx) = mpsc::channel();
    let h = rt.spawn(move || {
        tx.send(()).unwrap();
        wait(DropProbe {
            home: thread::current().id(),
            dropped: d,
            away: a,
            keep_waker: None,
        });
    });
    rx.recv().unwrap();
    wait_until("the coroutine to suspend", || !h.coroutine().entered());
    drop(h);
    wait_until("the future to be dropped", || dropped.load(SeqCst) == 1);
    assert_eq!(away.load(SeqCst), 0);
    rt.shutdown();
}
