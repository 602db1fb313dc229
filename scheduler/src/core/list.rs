//! [`LocalList`]: an intrusive FIFO of coroutine references, thread-local.

use std::ptr;

use super::control::{CoInner, CoRef};

/// An intrusive FIFO of owned references linked through `CoInner::next`.
/// Thread-local: used for wakeup lists, an enter's pending list and a
/// context's ready queue.
pub(crate) struct LocalList {
    head: *const CoInner,
    tail: *const CoInner,
}

impl LocalList {
    /// The empty list.
    pub(crate) const fn new() -> LocalList {
        LocalList {
            head: ptr::null(),
            tail: ptr::null(),
        }
    }

    /// A list made of a chain built elsewhere (a coroutine's wakeup list).
    ///
    /// # Safety
    /// `head..tail` is a chain of references owned by the caller, linked
    /// through `CoInner::next` and ending at `tail`, or both are null.
    pub(crate) unsafe fn from_parts(head: *const CoInner, tail: *const CoInner) -> LocalList {
        LocalList { head, tail }
    }

    /// True when empty.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Appends an owned reference.
    pub(crate) fn push_back(&mut self, co: CoRef) {
        let raw = co.into_raw();
        // SAFETY: we own a reference; the link is free (one list at a time).
        unsafe { (*raw).next.set(ptr::null()) };
        if self.tail.is_null() {
            self.head = raw;
        } else {
            // SAFETY: the tail is on this list, which owns a reference to it.
            unsafe { (*self.tail).next.set(raw) };
        }
        self.tail = raw;
    }

    /// Removes the first element.
    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<CoRef> {
        if self.head.is_null() {
            return None;
        }
        let raw = self.head;
        // SAFETY: `raw` is on this list, which owns a reference to it.
        self.head = unsafe { (*raw).next.get() };
        if self.head.is_null() {
            self.tail = ptr::null();
        }
        // SAFETY: the list's reference is handed to the caller exactly once.
        Some(unsafe { CoRef::from_raw(raw) })
    }

    /// Puts all of `front` before the current elements, keeping its order
    /// (QEMU's `QSIMPLEQ_PREPEND` of a finished coroutine's wakeups).
    #[inline]
    pub(crate) fn prepend(&mut self, front: LocalList) {
        if front.head.is_null() {
            return;
        }
        // SAFETY: `front.tail` is on `front`, which we now own.
        unsafe { (*front.tail).next.set(self.head) };
        if self.tail.is_null() {
            self.tail = front.tail;
        }
        self.head = front.head;
        std::mem::forget(front);
    }

    /// Appends all of `back`.
    pub(crate) fn append(&mut self, back: LocalList) {
        if back.head.is_null() {
            return;
        }
        if self.tail.is_null() {
            self.head = back.head;
        } else {
            // SAFETY: the tail is on this list.
            unsafe { (*self.tail).next.set(back.head) };
        }
        self.tail = back.tail;
        std::mem::forget(back);
    }
}

impl Drop for LocalList {
    fn drop(&mut self) {
        while self.pop_front().is_some() {}
    }
}
