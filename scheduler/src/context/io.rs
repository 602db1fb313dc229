//! A context's epoll instance (through `mio`), created on first need, and
//! its table of registered file descriptors.
//!
//! The poll and the table are owner-only; the `mio::Waker` is shared so that
//! producers on other threads can end an `epoll_wait` (see the hand-off
//! protocol in [`handoff`](super::handoff)).
//!
//! Registrations are edge-triggered for both directions, and each keeps a
//! readiness cache: an event sets the direction's bit and wakes the
//! coroutine waiting for it; a coroutine that gets `WouldBlock` clears the
//! bit before waiting again. Events are only processed on the owner thread
//! between coroutine runs, so there is no window in which an edge can be
//! lost between the failed syscall and the clear.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::coroutine::control::CoRef;

/// The token of the context's waker.
pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

/// Readiness bit: readable (or read side closed, or error).
pub(crate) const READ: u8 = 1;
/// Readiness bit: writable (or write side closed, or error).
pub(crate) const WRITE: u8 = 2;

/// One registered fd.
pub(crate) struct FdSlot {
    pub(crate) fd: RawFd,
    pub(crate) generation: u64,
    pub(crate) ready: u8,
    pub(crate) reader: Option<CoRef>,
    pub(crate) writer: Option<CoRef>,
    pub(crate) live: bool,
}

/// An epoll instance, its event buffer and its registrations.
pub(crate) struct IoDriver {
    poll: Poll,
    events: Events,
    pub(crate) slots: Vec<FdSlot>,
    free: Vec<usize>,
    /// Live registrations: with none, a turn never needs `epoll_wait(0)`.
    pub(crate) sources: usize,
    next_generation: u64,
}

impl IoDriver {
    /// Creates the epoll instance and its waker.
    pub(crate) fn new() -> io::Result<(IoDriver, mio::Waker)> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        let driver = IoDriver {
            poll,
            events: Events::with_capacity(256),
            slots: Vec::new(),
            free: Vec::new(),
            sources: 0,
            next_generation: 1,
        };
        Ok((driver, waker))
    }

    /// Waits for events and returns the coroutines they wake.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>, woken: &mut Vec<CoRef>) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for event in self.events.iter() {
            if event.token() == WAKER_TOKEN {
                continue;
            }
            if let Some(slot) = self.slots.get_mut(event.token().0) {
                apply_event(slot, event, woken);
            }
        }
        Ok(())
    }

    /// Registers `fd` for both directions; returns `(slot, generation)`.
    pub(crate) fn register(&mut self, fd: RawFd) -> io::Result<(usize, u64)> {
        let index = self.free.pop().unwrap_or(self.slots.len());
        let generation = self.next_generation;
        self.next_generation += 1;
        self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        )
        .inspect_err(|_| {
            if index < self.slots.len() {
                self.free.push(index);
            }
        })?;
        let slot = FdSlot { fd, generation, ready: 0, reader: None, writer: None, live: true };
        if index == self.slots.len() {
            self.slots.push(slot);
        } else {
            self.slots[index] = slot;
        }
        self.sources += 1;
        Ok((index, generation))
    }

    /// The live slot `index` if it still has `generation`.
    pub(crate) fn slot(&mut self, index: usize, generation: u64) -> Option<&mut FdSlot> {
        self.slots.get_mut(index).filter(|s| s.live && s.generation == generation)
    }

    /// Removes a registration; returns the coroutines that were waiting on
    /// it, for the caller to wake (their wait then fails).
    pub(crate) fn deregister(&mut self, index: usize, generation: u64) -> Vec<CoRef> {
        let Some(slot) = self.slot(index, generation) else {
            return Vec::new();
        };
        slot.live = false;
        let fd = slot.fd;
        let waiters: Vec<CoRef> = slot.reader.take().into_iter().chain(slot.writer.take()).collect();
        // The fd may already be closed (EBADF), which removed it from the
        // epoll set anyway; nothing to report.
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        self.free.push(index);
        self.sources -= 1;
        waiters
    }
}

fn apply_event(slot: &mut FdSlot, event: &Event, woken: &mut Vec<CoRef>) {
    if !slot.live {
        return;
    }
    if event.is_readable() || event.is_read_closed() || event.is_error() {
        slot.ready |= READ;
        woken.extend(slot.reader.take());
    }
    if event.is_writable() || event.is_write_closed() || event.is_error() {
        slot.ready |= WRITE;
        woken.extend(slot.writer.take());
    }
}
