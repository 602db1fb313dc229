//! Cost of awaiting futures from coroutines (issue 15), each next to its
//! reference in the same run:
//! - `wait` of an already-ready future inside a coroutine, against a plain
//!   (non-inlined) call returning the same value, and outside a coroutine;
//! - a cross-thread ping-pong woken through futures' wakers, against the
//!   same ping-pong woken with `Coroutine::wake` (W3).
//!
//! `cargo bench -p coscheduler --bench wait`

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::task::AtomicWaker;

use coscheduler::{Coroutine, Runtime, suspend, wait};

#[inline(never)]
fn plain_call(v: u64) -> u64 {
    black_box(v)
}

/// Runs `body(iters)` inside a fresh coroutine on this thread and returns
/// the time it measured there.
fn in_coroutine(iters: u64, body: fn(u64) -> Duration) -> Duration {
    let out = Arc::new(Mutex::new(Duration::ZERO));
    let o = out.clone();
    let co = Coroutine::new(move || *o.lock().unwrap() = body(iters));
    co.enter();
    assert!(co.is_finished());
    *out.lock().unwrap()
}

fn ready(c: &mut Criterion) {
    let mut g = c.benchmark_group("wait_ready_future");
    g.bench_function("plain_call_in_coroutine", |b| {
        b.iter_custom(|n| {
            in_coroutine(n, |n| {
                let start = Instant::now();
                for i in 0..n {
                    black_box(plain_call(i));
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("wait_ready_in_coroutine", |b| {
        b.iter_custom(|n| {
            in_coroutine(n, |n| {
                let start = Instant::now();
                for i in 0..n {
                    black_box(wait(std::future::ready(black_box(i))));
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("wait_async_block_in_coroutine", |b| {
        b.iter_custom(|n| {
            in_coroutine(n, |n| {
                let start = Instant::now();
                for i in 0..n {
                    black_box(wait(async { plain_call(i) }));
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("wait_ready_outside_coroutine", |b| {
        b.iter(|| black_box(wait(std::future::ready(black_box(1u64)))))
    });
    g.finish();
}

/// A one-bit mailbox awaited as a future (the usual flag + `AtomicWaker`).
#[derive(Default)]
struct Signal {
    set: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    fn raise(&self) {
        self.set.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn lowered(&self) -> Lowered<'_> {
        Lowered(self)
    }
}

struct Lowered<'a>(&'a Signal);

impl Future for Lowered<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.set.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.0.waker.register(cx.waker());
        if self.0.set.swap(false, Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A flag whose waiter's waker is taken once and kept, so that a round
/// costs only the waker mechanism itself (no registration per poll).
#[derive(Default)]
struct KeptSignal {
    set: AtomicBool,
    waker: OnceLock<Waker>,
}

impl KeptSignal {
    fn raise(&self) {
        self.set.store(true, Ordering::Release);
        // Pairs with the fence in `poll`: a raise that finds no waker yet is
        // seen by the poll's re-check (first round only).
        fence(Ordering::SeqCst);
        if let Some(w) = self.waker.get() {
            w.wake_by_ref();
        }
    }

    fn lowered(&self) -> KeptLowered<'_> {
        KeptLowered(self)
    }
}

struct KeptLowered<'a>(&'a KeptSignal);

impl Future for KeptLowered<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.set.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        if self.0.waker.get().is_none() {
            let _ = self.0.waker.set(cx.waker().clone());
            fence(Ordering::SeqCst);
        }
        if self.0.set.swap(false, Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A homed on worker 0, B on worker 1, passing a turn through two
/// kept-waker flags: every wake is a waker called on the other worker's
/// thread.
fn kept_waker_pingpong(rt: &Runtime, rounds: u64) -> Duration {
    let (to_a, to_b) = (
        Arc::new(KeptSignal::default()),
        Arc::new(KeptSignal::default()),
    );
    let (a_sig, b_sig) = (to_a.clone(), to_b.clone());
    let b = rt.contexts()[1].spawn(move || {
        for _ in 0..rounds {
            wait(b_sig.lowered());
            a_sig.raise();
        }
    });
    let a = rt.contexts()[0].spawn(move || {
        let start = Instant::now();
        for _ in 0..rounds {
            to_b.raise();
            wait(to_a.lowered());
        }
        start.elapsed()
    });
    let d = a.join().unwrap();
    b.join().unwrap();
    d
}

/// The same with `AtomicWaker` (a registration per poll, as most futures
/// do).
fn waker_pingpong(rt: &Runtime, rounds: u64) -> Duration {
    let (to_a, to_b) = (Arc::new(Signal::default()), Arc::new(Signal::default()));
    let (a_sig, b_sig) = (to_a.clone(), to_b.clone());
    let b = rt.contexts()[1].spawn(move || {
        for _ in 0..rounds {
            wait(b_sig.lowered());
            a_sig.raise();
        }
    });
    let a = rt.contexts()[0].spawn(move || {
        let start = Instant::now();
        for _ in 0..rounds {
            to_b.raise();
            wait(to_a.lowered());
        }
        start.elapsed()
    });
    let d = a.join().unwrap();
    b.join().unwrap();
    d
}

/// The same turn-taking with `Coroutine::wake` (W3 in `benches/runtime.rs`).
fn wake_pingpong(rt: &Runtime, rounds: u64) -> Duration {
    let ctxs = rt.contexts();
    let a_slot: Arc<Mutex<Option<Coroutine>>> = Arc::default();
    let slot = a_slot.clone();
    let b = Coroutine::new(move || {
        suspend();
        let a = slot.lock().unwrap().clone().expect("A published");
        for i in 0..rounds {
            if i > 0 {
                suspend();
            }
            a.wake();
        }
    });
    ctxs[1].schedule(&b);
    while b.context().is_none() || b.entered() {
        std::hint::spin_loop();
    }
    let (tx, rx) = mpsc::channel();
    let b2 = b.clone();
    let a = Coroutine::new(move || {
        let start = Instant::now();
        for _ in 0..rounds {
            b2.wake();
            suspend();
        }
        tx.send(start.elapsed()).unwrap();
    });
    *a_slot.lock().unwrap() = Some(a.clone());
    ctxs[0].schedule(&a);
    let d = rx.recv().unwrap();
    a_slot.lock().unwrap().take();
    d
}

fn cross_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_thread_wake_round_trip");
    g.sample_size(10);
    let rt = Runtime::builder().threads(2).build().unwrap();
    g.bench_function("coroutine_wake", |b| {
        b.iter_custom(|n| wake_pingpong(&rt, n))
    });
    g.bench_function("future_waker_kept", |b| {
        b.iter_custom(|n| kept_waker_pingpong(&rt, n))
    });
    g.bench_function("future_waker_atomic_waker", |b| {
        b.iter_custom(|n| waker_pingpong(&rt, n))
    });
    g.finish();
    rt.shutdown();
}

criterion_group!(benches, ready, cross_thread);
criterion_main!(benches);
