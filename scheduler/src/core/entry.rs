//! A coroutine's entry closure, stored inline when it is small.
//!
//! Most bodies capture a few handles (an `Arc`, a counter, a channel end).
//! Boxing each one would add a heap allocation to every coroutine created;
//! closures of up to [`INLINE`] bytes are kept in the control block itself.

use std::mem::{ManuallyDrop, MaybeUninit, align_of, size_of};

/// Bytes of closure stored without a heap allocation.
pub(crate) const INLINE: usize = 32;

#[repr(C, align(16))]
struct Buf([MaybeUninit<u8>; INLINE]);

enum Repr {
    Inline {
        buf: Buf,
        /// Moves the closure out of the buffer and calls it.
        call: unsafe fn(*mut Buf),
        /// Drops the closure in place without calling it.
        drop: unsafe fn(*mut Buf),
    },
    Boxed(Box<dyn FnOnce() + Send + 'static>),
}

/// A `FnOnce() + Send + 'static`, run at most once.
pub(crate) struct Entry(Repr);

// SAFETY: the inline buffer only ever holds a `Send` closure (`Entry::new`'s
// bound); the boxed form is `Send` by its type.
unsafe impl Send for Entry {}

/// # Safety
/// `buf` holds an initialised `F` that is never used again.
unsafe fn call_inline<F: FnOnce()>(buf: *mut Buf) {
    // SAFETY: per the contract, we take the only copy out.
    let f = unsafe { buf.cast::<F>().read() };
    f();
}

/// # Safety
/// `buf` holds an initialised `F` that is never used again.
unsafe fn drop_inline<F>(buf: *mut Buf) {
    // SAFETY: per the contract.
    unsafe { buf.cast::<F>().drop_in_place() };
}

impl Entry {
    /// Wraps `f`, inline when it fits.
    #[inline]
    pub(crate) fn new<F: FnOnce() + Send + 'static>(f: F) -> Entry {
        if size_of::<F>() <= INLINE && align_of::<F>() <= align_of::<Buf>() {
            let mut buf = Buf([MaybeUninit::uninit(); INLINE]);
            // SAFETY: the buffer is large and aligned enough for `F`
            // (checked above) and nothing else is in it.
            unsafe { (&raw mut buf).cast::<F>().write(f) };
            Entry(Repr::Inline {
                buf,
                call: call_inline::<F>,
                drop: drop_inline::<F>,
            })
        } else {
            Entry(Repr::Boxed(Box::new(f)))
        }
    }

    /// Calls the closure.
    #[inline]
    pub(crate) fn run(self) {
        let mut me = ManuallyDrop::new(self);
        match &mut me.0 {
            // SAFETY: the buffer holds the closure `call` was made for, and
            // `me` is never dropped, so it is not used again.
            Repr::Inline { buf, call, .. } => unsafe { call(buf) },
            Repr::Boxed(_) => {
                // SAFETY: `me` is never used again after this read.
                let Repr::Boxed(f) = (unsafe { std::ptr::read(&me.0) }) else {
                    unreachable!()
                };
                f();
            }
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Repr::Inline { buf, drop, .. } = &mut self.0 {
            // SAFETY: the closure was never called (`run` forgets `self`).
            unsafe { drop(buf) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    #[test]
    fn small_and_large_closures_run_once_and_drop_their_captures() {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let small = Entry::new(move || {
            h.fetch_add(1, SeqCst);
        });
        assert!(matches!(small.0, Repr::Inline { .. }));
        small.run();
        let big = [7u64; 32];
        let h = hits.clone();
        let large = Entry::new(move || {
            h.fetch_add(big[31] as usize, SeqCst);
        });
        assert!(matches!(large.0, Repr::Boxed(_)));
        large.run();
        assert_eq!(hits.load(SeqCst), 8);
        let h = hits.clone();
        drop(Entry::new(move || drop(h)));
        assert_eq!(
            Arc::strong_count(&hits),
            1,
            "an unrun closure drops its captures"
        );
    }
}
