//! A context's epoll instance, created on first need, and its table of
//! registered file descriptors.
//!
//! The epoll fd and the table are owner-only; the `mio::Waker` (an eventfd in
//! the same epoll set) is shared so that producers on other threads can end
//! an `epoll_wait` (see the hand-off protocol in `core::home::mailbox`).
//! `mio::Poll` only owns the epoll fd and builds the waker: waiting and
//! `epoll_ctl` are done here directly, because we need `epoll_pwait2`'s
//! nanosecond timeout (epoll_wait rounds up to whole milliseconds, which
//! alone would make every 1 ms sleep overshoot by up to a millisecond) and
//! the raw `EEXIST` of a second `EPOLL_CTL_ADD`.
//!
//! # Readiness cache
//!
//! Registrations are edge-triggered for both directions, and each slot keeps
//! a readiness cache: an event sets the direction's bit and wakes the
//! waiter of that direction; code that gets `WouldBlock` clears the bit
//! before waiting again. Events are only processed on the owner thread
//! between coroutine runs, so there is no window in which an edge can be
//! lost between the failed syscall and the clear.
//!
//! # Waiters: coroutines and wakers
//!
//! A direction's one waiter ([`Wakee`]) is either a coroutine suspended in
//! `Registration::wait` or the `Waker` of async code that polled
//! `Registration::poll_ready` on the owner thread. Both are taken out of the
//! slot by the same events, sweeps and deregistrations, and woken by the
//! caller once the driver is no longer borrowed: a `Waker` runs arbitrary
//! code, and dropping either may drop the last reference of a coroutine. A
//! coroutine's own waker (`coscheduler::wait`) is queued on the ready list
//! like a coroutine waiter (`future::wake_queued`), so the event loop never
//! enters it nested; another waker is called as it is. A waker waiter is
//! never withdrawn by its poller (async code cannot tell that a future was
//! dropped), so a stale one can stay until the next event; therefore a later
//! poll replaces it, and a coroutine's `wait` displaces it (waking it, so
//! that a poller still interested finds the slot taken), instead of both
//! failing with `ResourceBusy`. A coroutine waiter is never displaced.
//!
//! # One slot per open file, shared
//!
//! epoll keys its interest list by *(open file, fd number)*, so the same fd
//! cannot be added twice to one epoll set (`EEXIST`). Two registrations of
//! one fd on one context (a reader and a writer each using a `BorrowedFd`,
//! or `wait_readable` on a socket a stream already registered) therefore
//! share one slot: `users` counts them, and the `EPOLL_CTL_DEL` happens when
//! the last one goes. Waiters are per direction, one each.
//!
//! # Closed and reused fds
//!
//! epoll silently forgets a file when its last fd is closed, so a coroutine
//! waiting on an fd that someone closes would never wake. Three rules give
//! that case a defined result (`EBADF`):
//!
//! 1. **Reuse at registration.** `by_fd` maps an fd number to the slot that
//!    owns its kernel entry. When an `EPOLL_CTL_ADD` for a number that
//!    `by_fd` already knows *succeeds*, the old file must have been closed
//!    (otherwise the add would fail with `EEXIST`): the old slot is marked
//!    `closed`, its waiters are woken, and it loses the number, so that its
//!    own (possibly deferred) deregistration does not `EPOLL_CTL_DEL` the new
//!    file's entry.
//! 2. **Validity sweep.** While any coroutine waits, a timer runs every
//!    [`SWEEP_INTERVAL`] and `fstat`s the fds of waiters that were already
//!    waiting at the previous sweep, comparing `(st_dev, st_ino)` with the
//!    identity taken at registration. A closed fd (`EBADF`) or a number now
//!    naming another file marks the slot `closed` and wakes its waiters.
//!    Short waits (a busy connection) are never checked; a long wait costs
//!    one `fstat` per interval. A closed fd is reported within two
//!    intervals.
//! 3. **Deregistration** only issues `EPOLL_CTL_DEL` while the slot still
//!    owns its number in `by_fd`; errors (the fd already closed) are
//!    ignored, the kernel having dropped the entry itself.
//!
//! One case stays undetectable by design: if the file is still open through
//! a `dup` elsewhere, closing *our* fd number leaves the kernel entry alive
//! (epoll's documented behaviour), and the sweep reports `EBADF` because the
//! number is closed; the stale kernel entry then only produces events that
//! are ignored.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::Location;
use std::task::Waker;
use std::time::Duration;

use mio::{Poll, Token};

use crate::core::control::{self, CoRef};
use crate::core::home::Owner;

/// The token of the context's waker (its `epoll_event.u64`).
pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

/// Readiness bit: readable (or read side closed, or error).
pub(crate) const READ: u8 = 1;
/// Readiness bit: writable (or write side closed, or error).
pub(crate) const WRITE: u8 = 2;
/// Sticky readiness: the peer shut down its writing (`EPOLLRDHUP`) or the
/// fd hung up (`EPOLLHUP`); every read from now on returns at once (EOF or
/// an error). Clearing `READ` after a short read leaves it, because no new
/// edge will announce an EOF that is already there (tokio never clears its
/// closed readiness either). `EPOLLERR` is not sticky: a datagram socket's
/// error is consumed by the next call.
pub(crate) const READ_CLOSED: u8 = 4;
/// Sticky readiness: `EPOLLHUP`; every write fails at once.
pub(crate) const WRITE_CLOSED: u8 = 8;

/// The cache bits that make `dir` (`READ` or `WRITE`) ready.
pub(crate) fn ready_mask(dir: u8) -> u8 {
    if dir == READ {
        READ | READ_CLOSED
    } else {
        WRITE | WRITE_CLOSED
    }
}

/// How often the validity sweep looks at long waits (see the module docs).
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// Events taken per `epoll_wait`.
const EVENTS_CAPACITY: usize = 256;

/// The identity of an open file: `(st_dev, st_ino)`.
pub(crate) type FileId = (u64, u64);

/// Who waits for a direction (see "Waiters" in the module docs).
pub(crate) enum Wakee {
    /// A coroutine suspended in `Registration::wait`.
    Co(CoRef),
    /// The waker of async code that polled `Registration::poll_ready`.
    Task(Waker),
}

impl Wakee {
    /// Owner thread, with the driver not borrowed: resumes the waiter.
    pub(crate) fn wake(self, o: Owner<'_>) {
        match self {
            Wakee::Co(co) => {
                // A coroutine already woken for another reason finds the
                // readiness bit when it runs; a second wake would be a bug.
                if control::try_schedule(&co, Location::caller()).is_ok() {
                    o.push_ready(co);
                }
            }
            // Through the waker's own protocol (the await state, for a
            // coroutine's waker), so a stale waker resumes nothing; a
            // coroutine's is queued like a coroutine waiter, not entered.
            Wakee::Task(w) => crate::core::future::wake_queued(w, o),
        }
    }
}

/// The waiter of one direction of one slot.
pub(crate) struct Waiter {
    pub(crate) who: Wakee,
    /// The registration it waits through.
    pub(crate) reg: u64,
    /// Identifies this one wait (timeouts compare it).
    pub(crate) ticket: u64,
    /// The sweep epoch when the wait started.
    pub(crate) since: u64,
}

/// One registered open file.
pub(crate) struct FdSlot {
    pub(crate) fd: RawFd,
    pub(crate) generation: u64,
    pub(crate) ready: u8,
    pub(crate) reader: Option<Waiter>,
    pub(crate) writer: Option<Waiter>,
    pub(crate) live: bool,
    /// Registrations sharing the slot.
    pub(crate) users: u32,
    identity: FileId,
    /// The fd was found closed or reused: waits fail with `EBADF`.
    pub(crate) closed: bool,
    /// Per direction, the ticket of the last wait ended by its deadline.
    pub(crate) timed_out: [u64; 2],
}

impl FdSlot {
    /// The waiter of `dir` (`READ` or `WRITE`).
    pub(crate) fn waiter(&mut self, dir: u8) -> &mut Option<Waiter> {
        if dir == READ {
            &mut self.reader
        } else {
            &mut self.writer
        }
    }

    fn take_waiters(&mut self, woken: &mut Vec<Wakee>) {
        woken.extend(self.reader.take().map(|w| w.who));
        woken.extend(self.writer.take().map(|w| w.who));
    }
}

/// An epoll instance, its event buffer and its registrations.
pub(crate) struct IoDriver {
    poll: Poll,
    events: Vec<libc::epoll_event>,
    pub(crate) slots: Vec<FdSlot>,
    free: Vec<usize>,
    /// fd number → the slot owning its kernel entry.
    by_fd: HashMap<RawFd, usize>,
    /// Live registrations (not slots): with none, a turn never needs
    /// `epoll_wait(0)`.
    pub(crate) sources: usize,
    next_id: u64,
    /// A validity-sweep timer is armed.
    pub(crate) sweep_armed: bool,
    pub(crate) sweep_epoch: u64,
    /// `epoll_pwait2` exists (Linux 5.11+); otherwise `epoll_wait`.
    pwait2: bool,
}

impl IoDriver {
    /// Creates the epoll instance and its waker.
    pub(crate) fn new() -> io::Result<(IoDriver, mio::Waker)> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        let driver = IoDriver {
            poll,
            events: Vec::with_capacity(EVENTS_CAPACITY),
            slots: Vec::new(),
            free: Vec::new(),
            by_fd: HashMap::new(),
            sources: 0,
            next_id: 1,
            sweep_armed: false,
            sweep_epoch: 0,
            pwait2: true,
        };
        Ok((driver, waker))
    }

    /// A fresh identifier (generations, registrations, wait tickets).
    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Waits for events (up to `timeout`, `None` = forever) and returns the
    /// waiters they wake.
    pub(crate) fn wait(
        &mut self,
        timeout: Option<Duration>,
        woken: &mut Vec<Wakee>,
    ) -> io::Result<()> {
        let n = match self.epoll_wait(timeout) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        };
        for i in 0..n {
            let event = self.events[i];
            let token = event.u64;
            if token == WAKER_TOKEN.0 as u64 {
                continue;
            }
            if let Some(slot) = self.slots.get_mut(token as usize) {
                apply_event(slot, event.events, woken);
            }
        }
        Ok(())
    }

    /// One `epoll_pwait2` (or `epoll_wait`) into `self.events`.
    fn epoll_wait(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        self.events.clear();
        let ep = self.poll.as_raw_fd();
        let cap = self.events.capacity() as libc::c_int;
        let n = if self.pwait2 {
            let ts = timeout.map(|t| libc::timespec {
                tv_sec: t.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
                tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
            });
            let ts_ptr = ts
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `ep` is our epoll fd; the buffer has room for `cap`
            // events; `ts_ptr` is null or points to a timespec that lives
            // across the call; a null sigmask means "leave it unchanged".
            let n = unsafe {
                libc::epoll_pwait2(ep, self.events.as_mut_ptr(), cap, ts_ptr, std::ptr::null())
            };
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                self.pwait2 = false;
                return self.epoll_wait(timeout);
            }
            n
        } else {
            let ms = timeout.map_or(-1, |t| {
                // Round up, so that a sub-millisecond timeout does not spin.
                let ms = t.as_nanos().div_ceil(1_000_000);
                libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
            });
            // SAFETY: as above, without the timespec.
            unsafe { libc::epoll_wait(ep, self.events.as_mut_ptr(), cap, ms) }
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel initialised the first `n <= cap` entries.
        unsafe { self.events.set_len(n as usize) };
        Ok(n as usize)
    }

    fn epoll_ctl(&self, op: libc::c_int, fd: RawFd, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLET | libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLOUT) as u32,
            u64: token,
        };
        // SAFETY: our epoll fd; `event` lives across the call (ignored for
        // EPOLL_CTL_DEL, where a non-null pointer keeps old kernels happy).
        let rc = unsafe { libc::epoll_ctl(self.poll.as_raw_fd(), op, fd, &mut event) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Registers `fd` for both directions, sharing the slot of an earlier
    /// registration of the same open file; returns `(slot, generation,
    /// registration id)` and the waiters of a stale slot to wake.
    pub(crate) fn register(
        &mut self,
        fd: RawFd,
        woken: &mut Vec<Wakee>,
    ) -> io::Result<(usize, u64, u64)> {
        let identity = file_id(fd)?;
        let index = self.free.last().copied().unwrap_or(self.slots.len());
        match self.epoll_ctl(libc::EPOLL_CTL_ADD, fd, index as u64) {
            Ok(()) => {
                // Rule 1: a slot that still claims this number is stale.
                if let Some(old) = self.by_fd.remove(&fd) {
                    let slot = &mut self.slots[old];
                    slot.closed = true;
                    slot.take_waiters(woken);
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                let reg = self.next_id();
                let shared = self.by_fd.get(&fd).copied().map(|i| &mut self.slots[i]);
                return match shared {
                    Some(slot) if slot.identity == identity && !slot.closed => {
                        slot.users += 1;
                        self.sources += 1;
                        Ok((self.by_fd[&fd], slot.generation, reg))
                    }
                    // Registered in our epoll set by someone else, or the
                    // file behind the number changed under a dup (see the
                    // module docs): we cannot tell its events apart.
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        }
        if index < self.slots.len() {
            // `index` came from the top of the free list.
            self.free.pop();
        }
        let generation = self.next_id();
        let slot = FdSlot {
            fd,
            generation,
            ready: 0,
            reader: None,
            writer: None,
            live: true,
            users: 1,
            identity,
            closed: false,
            timed_out: [0; 2],
        };
        if index == self.slots.len() {
            self.slots.push(slot);
        } else {
            self.slots[index] = slot;
        }
        self.by_fd.insert(fd, index);
        self.sources += 1;
        Ok((index, generation, self.next_id()))
    }

    /// The live slot `index` if it still has `generation`.
    pub(crate) fn slot(&mut self, index: usize, generation: u64) -> Option<&mut FdSlot> {
        self.slots
            .get_mut(index)
            .filter(|s| s.live && s.generation == generation)
    }

    /// Drops registration `reg` of a slot; returns the waiters that were
    /// waiting through it, for the caller to wake (a coroutine's wait then
    /// fails; a waker's poller polls again).
    pub(crate) fn deregister(&mut self, index: usize, generation: u64, reg: u64) -> Vec<Wakee> {
        let Some(slot) = self
            .slots
            .get_mut(index)
            .filter(|s| s.live && s.generation == generation)
        else {
            return Vec::new();
        };
        let mut waiters = Vec::new();
        for dir in [READ, WRITE] {
            let w = slot.waiter(dir);
            if w.as_ref().is_some_and(|w| w.reg == reg) {
                waiters.extend(w.take().map(|w| w.who));
            }
        }
        slot.users -= 1;
        self.sources -= 1;
        if slot.users > 0 {
            return waiters;
        }
        slot.live = false;
        let fd = slot.fd;
        slot.take_waiters(&mut waiters);
        // Rule 3: only the number's current owner removes the kernel entry;
        // EBADF/ENOENT mean the kernel already dropped it.
        if self.by_fd.get(&fd) == Some(&index) {
            self.by_fd.remove(&fd);
            let _ = self.epoll_ctl(libc::EPOLL_CTL_DEL, fd, 0);
        }
        self.free.push(index);
        waiters
    }

    /// Rule 2: checks the fds of long waits; wakes those whose fd was closed.
    /// Returns true while any waiter is left (re-arm the sweep).
    pub(crate) fn sweep(&mut self, woken: &mut Vec<Wakee>) -> bool {
        self.sweep_epoch += 1;
        let epoch = self.sweep_epoch;
        let mut waiting = false;
        for slot in self.slots.iter_mut().filter(|s| s.live && !s.closed) {
            let has = |w: &Option<Waiter>| w.as_ref().map(|w| w.since);
            let oldest = match (has(&slot.reader), has(&slot.writer)) {
                (None, None) => continue,
                (a, b) => a.into_iter().chain(b).min().unwrap_or(epoch),
            };
            if oldest + 1 < epoch && file_id(slot.fd).ok() != Some(slot.identity) {
                slot.closed = true;
                slot.take_waiters(woken);
                continue;
            }
            waiting = true;
        }
        // Closed slots lose their number: a later registration of a new file
        // there must not be deleted by their deregistration.
        let slots = &self.slots;
        self.by_fd.retain(|_, i| !slots[*i].closed);
        waiting
    }

    /// A wait's deadline passed: takes its waiter if it is still that wait.
    pub(crate) fn expire(
        &mut self,
        index: usize,
        generation: u64,
        dir: u8,
        ticket: u64,
    ) -> Option<Wakee> {
        let slot = self.slot(index, generation)?;
        let w = slot.waiter(dir);
        if w.as_ref().is_some_and(|w| w.ticket == ticket) {
            slot.timed_out[usize::from(dir == WRITE)] = ticket;
            return slot.waiter(dir).take().map(|w| w.who);
        }
        None
    }
}

/// `(st_dev, st_ino)` of the file behind `fd`.
fn file_id(fd: RawFd) -> io::Result<FileId> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a writable stat buffer; fstat on any int is defined
    // (EBADF for a closed one).
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so it filled the buffer.
    let st = unsafe { st.assume_init() };
    // The widths of `dev_t` and `ino_t` differ between targets.
    #[allow(clippy::unnecessary_cast)]
    Ok((st.st_dev as u64, st.st_ino as u64))
}

fn apply_event(slot: &mut FdSlot, events: u32, woken: &mut Vec<Wakee>) {
    if !slot.live || slot.closed {
        return;
    }
    let read = (libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR)
        as u32;
    let write = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
    if events & (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0 {
        slot.ready |= READ_CLOSED;
    }
    if events & libc::EPOLLHUP as u32 != 0 {
        slot.ready |= WRITE_CLOSED;
    }
    if events & read != 0 {
        slot.ready |= READ;
        woken.extend(slot.reader.take().map(|w| w.who));
    }
    if events & write != 0 {
        slot.ready |= WRITE;
        woken.extend(slot.writer.take().map(|w| w.who));
    }
}
