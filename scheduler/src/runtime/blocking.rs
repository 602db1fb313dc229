//! The blocking pool: plain threads that run blocking closures while the
//! coroutines that asked for them are suspended (QEMU's `thread_pool_submit_co`).
//!
//! A coroutine that calls a blocking function — `std::fs`, a DNS lookup, a
//! C library without an asynchronous interface, a long computation — holds
//! up every coroutine of its context. [`run`] hands the closure to a pool
//! thread of the coroutine's runtime and suspends the coroutine; the pool
//! thread stores the result (or the panic) and wakes the coroutine, which
//! resumes on its home context and returns it (or re-raises the panic).
//!
//! # Bounds
//!
//! Each runtime's pool starts threads on demand, up to
//! [`Builder::blocking_threads`](crate::Builder::blocking_threads), and keeps
//! them until the runtime shuts down. Closures that find every thread busy
//! queue, up to [`Builder::blocking_queue`](crate::Builder::blocking_queue);
//! past that the submitting coroutine waits (suspended) until a thread takes
//! a queued closure, so a flood of callers is back-pressured instead of
//! growing the queue.
//!
//! # Shutdown
//!
//! A call in flight is never lost. The wait in [`run`], for room in the
//! queue and for the result, is not a cancellation point (it is
//! [shielded](crate::raw::shield)): a shutting-down runtime lets the closure
//! finish and the coroutine get its result, and unwinds the coroutine only
//! at its next suspension after that. The pool keeps its threads while the
//! workers drain, runs every closure still queued, and is stopped once the
//! workers are; a closure still running after the runtime's
//! [`shutdown_timeout`](crate::Builder::shutdown_timeout) has its thread
//! detached (its coroutine is then among those reported leaked).
//!
//! # Outside a runtime
//!
//! Outside a coroutine, and in a coroutine that does not run on a Runtime
//! worker (one entered directly on a plain thread), [`run`] calls the
//! closure inline: there is no pool to hand it to, and a plain thread's
//! coroutine would only be resumed if that thread polls its context.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::core::coroutine::Coroutine;

/// The default [`Builder::blocking_threads`](crate::Builder::blocking_threads): 64, like QEMU's
/// thread pool.
pub const DEFAULT_BLOCKING_THREADS: usize = 64;

/// The default [`Builder::blocking_queue`](crate::Builder::blocking_queue): 256 closures.
pub const DEFAULT_BLOCKING_QUEUE: usize = 256;

type Work = Box<dyn FnOnce() + Send + 'static>;

struct Job {
    work: Work,
    queued_at: Instant,
}

/// Everything under the pool's lock.
struct State {
    queue: VecDeque<Job>,
    /// Threads started and not yet exited.
    threads: usize,
    /// Threads waiting for a job (a notified one counts until it wakes).
    idle: usize,
    /// Threads started that have not yet taken the lock for the first time:
    /// each is on its way to the job that made it start.
    starting: usize,
    /// Threads running a job.
    busy: usize,
    /// Coroutines waiting for room in the queue, oldest first; each is in
    /// here once per suspension, and is woken once, by the thread that
    /// makes room (or by `close`).
    waiting_to_submit: VecDeque<Coroutine>,
    closing: bool,
    completed: u64,
    /// Nanoseconds from submission to the start on a pool thread.
    wait: Histogram<u64>,
    handles: Vec<JoinHandle<()>>,
}

/// One runtime's blocking pool.
pub(crate) struct BlockingPool {
    max_threads: usize,
    queue_bound: usize,
    thread_name: String,
    state: Mutex<State>,
    /// Pool threads wait here for jobs.
    work_cv: Condvar,
    /// `close` waits here for the threads to exit.
    exited_cv: Condvar,
}

/// A snapshot of a blocking pool, in
/// [`RuntimeMetrics::blocking`](crate::RuntimeMetrics::blocking).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BlockingMetrics {
    /// The most threads the pool may start.
    pub max_threads: usize,
    /// The most closures that may wait for a thread.
    pub queue_bound: usize,
    /// Threads started (they stay until the runtime shuts down).
    pub threads: usize,
    /// Threads running a closure right now.
    pub busy: usize,
    /// Closures waiting for a thread (not counting those an idle or a
    /// just-started thread is already on its way to).
    pub queued: usize,
    /// Coroutines waiting for room in the queue (back-pressure).
    pub waiting_to_submit: usize,
    /// Closures finished (returned or panicked).
    pub completed: u64,
    /// Nanoseconds each closure waited from submission to its start on a
    /// pool thread.
    pub wait: Histogram<u64>,
}

impl State {
    /// Queued jobs that no thread is on its way to: those beyond one per
    /// idle (possibly already notified) and per starting thread. This is
    /// what the queue bound limits and what the metrics call queued.
    fn unclaimed(&self) -> usize {
        self.queue.len().saturating_sub(self.idle + self.starting)
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every critical section leaves the state consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a submission did.
enum Submitted {
    Queued,
    /// No room: the caller was added to `waiting_to_submit`.
    Full(Work),
    /// The pool is closed: the caller runs the work itself.
    Closed(Work),
}

impl BlockingPool {
    pub(crate) fn new(max_threads: usize, queue_bound: usize, thread_name: String) -> BlockingPool {
        BlockingPool {
            max_threads: max_threads.max(1),
            queue_bound,
            thread_name,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
                starting: 0,
                busy: 0,
                waiting_to_submit: VecDeque::new(),
                closing: false,
                completed: 0,
                // 1 µs to one hour, three significant digits.
                wait: Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3)
                    .expect("static histogram bounds are valid"),
                handles: Vec::new(),
            }),
            work_cv: Condvar::new(),
            exited_cv: Condvar::new(),
        }
    }

    /// Queues `work` if there is room: a thread that can take it now (idle,
    /// or one that may still be started), or a free place in the queue.
    /// Otherwise registers `me` as waiting for room.
    fn try_submit(self: &Arc<Self>, work: Work, me: &Coroutine) -> Submitted {
        let mut st = lock(&self.state);
        if st.closing {
            return Submitted::Closed(work);
        }
        if st.unclaimed() >= (self.max_threads - st.threads) + self.queue_bound {
            st.waiting_to_submit.push_back(me.clone());
            return Submitted::Full(work);
        }
        st.queue.push_back(Job {
            work,
            queued_at: Instant::now(),
        });
        if st.unclaimed() > 0 && st.threads < self.max_threads {
            self.start_thread(&mut st);
        }
        drop(st);
        self.work_cv.notify_one();
        Submitted::Queued
    }

    /// Starts one more pool thread (under the lock).
    fn start_thread(self: &Arc<Self>, st: &mut State) {
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name(self.thread_name.clone())
            .spawn(move || me.work());
        match spawned {
            Ok(handle) => {
                st.threads += 1;
                st.starting += 1;
                st.handles.push(handle);
            }
            // The threads already running take the job later; a pool that
            // has none gets another try at the next submission, and the
            // queued job is run by `close` at the latest.
            Err(e) => eprintln!("coscheduler: cannot start a blocking-pool thread: {e}"),
        }
    }

    /// A pool thread's body.
    fn work(&self) {
        let mut st = lock(&self.state);
        st.starting -= 1;
        loop {
            if let Some(job) = st.queue.pop_front() {
                st.busy += 1;
                let waited = u64::try_from(job.queued_at.elapsed().as_nanos()).unwrap_or(u64::MAX);
                st.wait.saturating_record(waited);
                let room_for = st.waiting_to_submit.pop_front();
                drop(st);
                if let Some(co) = room_for {
                    co.wake();
                }
                // The job catches its closure's panic itself (see `run`).
                (job.work)();
                st = lock(&self.state);
                st.busy -= 1;
                st.completed += 1;
                continue;
            }
            if st.closing {
                break;
            }
            st.idle += 1;
            st = self
                .work_cv
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
            st.idle -= 1;
        }
        st.threads -= 1;
        drop(st);
        self.exited_cv.notify_all();
    }

    /// Stops the pool: queued work still runs, then the threads exit. Waits
    /// until `deadline` for them; threads still running a closure then are
    /// detached.
    pub(crate) fn close(&self, deadline: Instant) {
        let mut st = lock(&self.state);
        st.closing = true;
        let waiting: Vec<Coroutine> = st.waiting_to_submit.drain(..).collect();
        drop(st);
        self.work_cv.notify_all();
        // They retry, find the pool closed, and run their closures inline.
        waiting.iter().for_each(Coroutine::wake);
        let mut st = lock(&self.state);
        while st.threads > 0 {
            let now = Instant::now();
            if now >= deadline {
                eprintln!(
                    "coscheduler: {} blocking-pool thread(s) still running a closure at shutdown; detached",
                    st.threads
                );
                break;
            }
            st = self
                .exited_cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let all_exited = st.threads == 0;
        let handles = std::mem::take(&mut st.handles);
        // Threads leave only once the queue is empty, so anything left was
        // queued when no thread could be started: run it here, so that its
        // caller is not left waiting.
        let leftover: Vec<Job> = if all_exited {
            st.queue.drain(..).collect()
        } else {
            Vec::new()
        };
        drop(st);
        for job in leftover {
            (job.work)();
        }
        if all_exited {
            for h in handles {
                // The body cannot panic (jobs catch their closures' panics).
                let _ = h.join();
            }
        }
    }

    pub(crate) fn metrics(&self) -> BlockingMetrics {
        let st = lock(&self.state);
        BlockingMetrics {
            max_threads: self.max_threads,
            queue_bound: self.queue_bound,
            threads: st.threads,
            busy: st.busy,
            queued: st.unclaimed(),
            waiting_to_submit: st.waiting_to_submit.len(),
            completed: st.completed,
            wait: st.wait.clone(),
        }
    }
}

/// Where a pool thread leaves a closure's outcome for its coroutine.
struct Outcome<R> {
    value: Mutex<Option<Result<R, Box<dyn Any + Send>>>>,
}

/// Runs the blocking closure `f` on the calling coroutine's runtime's pool
/// and returns its result; the coroutine is suspended meanwhile, and its
/// context runs other coroutines. A panic in `f` is re-raised here.
///
/// Outside a coroutine, or in a coroutine not running on a
/// [`Runtime`](crate::Runtime) worker, `f` runs inline. See the
/// [module docs](self) for the bounds and for shutdown.
///
/// ```
/// let rt = coscheduler::Runtime::builder().threads(1).build().unwrap();
/// let n = rt.block_on(|| coscheduler::blocking::run(|| {
///     std::thread::sleep(std::time::Duration::from_millis(5)); // blocks a pool thread
///     6 * 7
/// }));
/// assert_eq!(n, 42);
/// assert_eq!(coscheduler::blocking::run(|| 1), 1); // inline, outside a coroutine
/// ```
pub fn run<R, F>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let pool = crate::runtime::worker::current_blocking_pool();
    let (Some(pool), Some(me)) = (pool, crate::current()) else {
        return f();
    };
    let outcome = Arc::new(Outcome {
        value: Mutex::new(None),
    });
    let job: Work = {
        let (outcome, me) = (outcome.clone(), me.clone());
        Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(f));
            *outcome.value.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
            // Exactly one wake for the one suspension that waits for it
            // (below); from this thread it goes to the coroutine's home.
            me.wake();
        })
    };
    let result = crate::raw::shield(|| {
        let mut job = job;
        loop {
            match pool.try_submit(job, &me) {
                Submitted::Queued => break,
                Submitted::Full(back) => {
                    job = back;
                    crate::raw::set_wait_reason("blocking pool (queue full)", None);
                    crate::suspend();
                    crate::raw::clear_wait_reason();
                }
                Submitted::Closed(back) => {
                    back();
                    break;
                }
            }
        }
        crate::raw::set_wait_reason("blocking pool", None);
        loop {
            // Suspend before looking: the job's one wake is owed to one
            // suspension, even when it came before we got here (a wake
            // while running takes effect once we have suspended; the inline
            // run of a closed pool wakes us while we run).
            crate::suspend();
            let done = outcome
                .value
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(r) = done {
                crate::raw::clear_wait_reason();
                return r;
            }
        }
    });
    match result {
        Ok(v) => v,
        Err(p) => crate::core::unwinding::rethrow(p),
    }
}

/// How long a closure given to a closing pool may keep its thread.
pub(crate) fn close_deadline(timeout: Duration) -> Instant {
    Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
}
