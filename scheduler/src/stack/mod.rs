//! Guard-paged coroutine stacks (layer 1 of docs/ARCHITECTURE.md).
//!
//! QEMU's `qemu_alloc_stack`: an anonymous mapping whose lowest page is
//! `PROT_NONE`, so running off the end of the stack faults instead of
//! scribbling over a neighbour. Each stack costs two mappings (the guard and
//! the usable part), which is what ties the pool's hard cap to
//! `vm.max_map_count`.
//!
//! Three debugging aids hang off the stack:
//!
//! - every stack is registered with Valgrind for its whole lifetime, so
//!   memcheck and callgrind treat a switch onto it as a stack switch rather
//!   than a wild jump of the stack pointer (free outside Valgrind);
//! - [`GuardedStack::paint`] and [`GuardedStack::high_water_mark`] measure how
//!   deep a coroutine really went (QEMU's `CONFIG_DEBUG_STACK_USAGE`);
//! - the `overflow` module turns a fault in the running coroutine's guard page
//!   into a one-line report naming the coroutine, then aborts.

use std::fmt;
use std::io;
use std::num::NonZeroUsize;
use std::ptr;

use corosensei::stack::valgrind::ValgrindStackRegistration;
use corosensei::stack::{Stack, StackPointer};

pub(crate) mod overflow;
mod paint;
mod valgrind;

/// Internal items that integration tests need, kept out of the stable API.
///
/// Nothing here is covered by semver. Code inside the crate uses
/// `crate::stack::overflow::*` instead; only `tests/stack_guard.rs` should use
/// this path.
#[doc(hidden)]
pub mod __private {
    pub use super::overflow::{FaultTarget, ensure_thread_altstack, install};
}

/// QEMU's `COROUTINE_STACK_SIZE`: 1 MiB of address space, touched lazily.
pub const DEFAULT_STACK_SIZE: usize = 1 << 20;

/// The smallest usable size accepted; smaller requests are rounded up.
pub const MIN_STACK_SIZE: usize = 16 * 1024;

/// The host page size, read once.
pub(crate) fn page_size() -> usize {
    use std::sync::OnceLock;
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions; it only reads a constant.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size)
            .ok()
            .filter(|s| s.is_power_of_two())
            .unwrap_or(4096)
    })
}

/// Rounds a requested usable size up to whole pages (at least
/// [`MIN_STACK_SIZE`]); `None` on overflow.
pub(crate) fn usable_size_for(requested: usize) -> Option<usize> {
    let page = page_size();
    requested
        .max(MIN_STACK_SIZE)
        .checked_add(page - 1)
        .map(|s| s & !(page - 1))
}

/// An mmap'ed coroutine stack with a `PROT_NONE` guard page at its lowest
/// address.
///
/// The mapping is registered with Valgrind from creation to drop. The usable
/// part can optionally be painted to measure how deep a coroutine went; see
/// [`GuardedStack::paint`].
pub struct GuardedStack {
    /// Lowest address of the mapping (the guard page starts here).
    low: NonZeroUsize,
    /// Whole mapping length: guard page plus usable size.
    len: usize,
    /// Valgrind's record of the mapping as a stack. It is an `Option` only so
    /// that `Drop` can end the registration *before* the munmap (field drops
    /// would run after it); it is `Some` for the stack's whole life.
    valgrind: Option<ValgrindStackRegistration>,
    /// Whether [`GuardedStack::paint`] has filled the usable area, which is
    /// what makes [`GuardedStack::high_water_mark`] meaningful.
    painted: bool,
}

impl GuardedStack {
    /// Maps a stack with at least `size` usable bytes plus one guard page.
    ///
    /// Fails with the OS error (typically `ENOMEM` once `vm.max_map_count`
    /// mappings exist) instead of aborting.
    pub fn new(size: usize) -> io::Result<GuardedStack> {
        let page = page_size();
        let usable = usable_size_for(size).ok_or_else(size_overflow)?;
        let len = usable.checked_add(page).ok_or_else(size_overflow)?;
        // SAFETY: an anonymous private mapping at a kernel-chosen address
        // touches no existing memory; the result is checked below.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let low = NonZeroUsize::new(base as usize).ok_or_else(io::Error::last_os_error)?;
        // From here on `stack` owns the mapping, so an early return unmaps it
        // (and ends the Valgrind registration first).
        let stack = GuardedStack {
            low,
            len,
            // Like corosensei's DefaultStack, register the whole mapping,
            // guard included: Valgrind only needs the bounds to recognise a
            // stack-pointer move into this range as a stack switch.
            valgrind: Some(ValgrindStackRegistration::new(base.cast(), len)),
            painted: false,
        };
        // SAFETY: the first page lies inside the mapping created above, which
        // nothing else references yet.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// Usable bytes (the mapping minus the guard page).
    pub fn usable_size(&self) -> usize {
        self.len - page_size()
    }

    /// The guard page's address range, `[start, end)`.
    pub fn guard_range(&self) -> std::ops::Range<usize> {
        self.low.get()..self.low.get() + page_size()
    }

    /// Fills the usable area with a pattern word so that
    /// [`high_water_mark`](GuardedStack::high_water_mark) can later tell how
    /// deep a coroutine running on this stack went.
    ///
    /// This writes every usable page, so it commits the whole stack (1 MiB by
    /// default) that would otherwise be touched lazily: use it to size stacks
    /// in development, not on every allocation in production. Painting again
    /// (for example before a pooled stack is reused) resets the mark.
    ///
    /// Taking `&mut self` is what makes this sound: a coroutine that runs or
    /// is suspended on this stack holds the stack (by value or by `&mut`), so
    /// no live frame can be overwritten.
    pub fn paint(&mut self) {
        paint::fill(self.usable_words_mut());
        self.painted = true;
    }

    /// Returns the deepest stack use, in bytes from the top, since the last
    /// [`paint`](GuardedStack::paint), or `None` if the stack was never
    /// painted.
    ///
    /// The result is at most [`usable_size`](GuardedStack::usable_size) and is
    /// exact to the word, except that a frame which reserved space without
    /// writing to it is not seen. Scanning reads every usable page, so it is
    /// as costly as painting; call it when a stack is retired, as QEMU does.
    pub fn high_water_mark(&self) -> Option<usize> {
        self.painted.then(|| paint::used_bytes(self.usable_words()))
    }

    /// The high-water mark of a painted stack that a fiber owns, read through
    /// its address range.
    ///
    /// # Safety
    /// `start..start + len` must be the usable area of a live, painted
    /// `GuardedStack`, and nothing may run on that stack during the call.
    pub(crate) unsafe fn high_water_mark_at(start: usize, len: usize) -> usize {
        valgrind::make_mem_defined(start, len);
        crate::sanitizer::unpoison(start, len);
        let n = len / size_of::<usize>();
        // SAFETY: per the contract, the range is mapped, initialised and not
        // written concurrently.
        let words = unsafe { std::slice::from_raw_parts(start as *const usize, n) };
        paint::used_bytes(words)
    }

    /// The usable area (everything above the guard page) as words.
    fn usable_words(&self) -> &[usize] {
        let start = self.guard_range().end;
        // Memcheck holds a finished coroutine's dead frames inaccessible;
        // this read of them is deliberate.
        valgrind::make_mem_defined(start, self.usable_size());
        crate::sanitizer::unpoison(start, self.usable_size());
        // SAFETY:
        // - `start..start + usable_size()` is the read-write part of the
        //   mapping this value owns, page aligned and so word aligned;
        // - its bytes are initialised: the kernel zero-fills anonymous
        //   memory, and later writes (ours or a coroutine's frames) never
        //   de-initialise it;
        // - nothing writes it while `&self` lives: a coroutine running on this
        //   stack holds it by value or by `&mut`, so it cannot run now.
        unsafe {
            std::slice::from_raw_parts(
                start as *const usize,
                self.usable_size() / size_of::<usize>(),
            )
        }
    }

    /// The usable area as mutable words; see [`GuardedStack::usable_words`].
    fn usable_words_mut(&mut self) -> &mut [usize] {
        let start = self.guard_range().end;
        // As in `usable_words`: repainting overwrites dead frames on purpose.
        valgrind::make_mem_defined(start, self.usable_size());
        crate::sanitizer::unpoison(start, self.usable_size());
        // SAFETY: as in `usable_words`, and `&mut self` additionally proves
        // that no other reference to the area (and no coroutine on it) exists.
        unsafe {
            std::slice::from_raw_parts_mut(
                start as *mut usize,
                self.usable_size() / size_of::<usize>(),
            )
        }
    }
}

/// The error for a requested size that cannot be mapped on this host at all.
fn size_overflow() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "stack size overflows the address space",
    )
}

impl fmt::Debug for GuardedStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedStack")
            .field(
                "guard",
                &format_args!("{:#x}..{:#x}", self.low, self.low.get() + page_size()),
            )
            .field("usable_size", &self.usable_size())
            .field("painted", &self.painted)
            .finish()
    }
}

impl Drop for GuardedStack {
    fn drop(&mut self) {
        // Valgrind must forget the range before the kernel can hand it out
        // again, or it would take a later mapping there for this stack.
        drop(self.valgrind.take());
        // SAFETY: `low..low+len` is exactly the mapping created in `new`, and
        // no coroutine runs on it any more (the owner is being dropped).
        let rc = unsafe { libc::munmap(self.low.get() as *mut libc::c_void, self.len) };
        debug_assert_eq!(rc, 0, "munmap of a coroutine stack failed");
    }
}

// SAFETY: the mapping has a PROT_NONE guard page at its lowest address and
// at least MIN_STACK_SIZE (> corosensei's 4096) usable bytes; `base` and
// `limit` are page aligned, hence aligned to STACK_ALIGNMENT, and `limit`
// includes the guard page as the trait requires.
unsafe impl Stack for GuardedStack {
    #[inline]
    fn base(&self) -> StackPointer {
        // The top of the mapping, where a descending stack begins.
        self.low.saturating_add(self.len)
    }

    #[inline]
    fn limit(&self) -> StackPointer {
        self.low
    }
}

// `GuardedStack` is `Send` and `Sync` automatically: it holds an address
// range, a length, a flag and Valgrind's integer handle, none of them tied to
// the thread that mapped it, and every method that reads the memory through
// `&self` relies on the borrow rules above rather than on thread identity.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GuardedStack>();
};

#[cfg(test)]
mod tests {
    use super::*;

    /// A never-painted stack has no high-water mark; a freshly painted one
    /// reports zero.
    #[test]
    fn mark_needs_paint() {
        let mut stack = GuardedStack::new(MIN_STACK_SIZE).expect("map a stack");
        assert_eq!(stack.high_water_mark(), None);
        stack.paint();
        assert_eq!(stack.high_water_mark(), Some(0));
    }

    /// A write at a known depth is measured to the exact byte count from the
    /// top, and repainting resets the mark.
    #[test]
    fn mark_is_measured_from_the_top() {
        let mut stack = GuardedStack::new(64 * 1024).expect("map a stack");
        stack.paint();
        let top = stack.base().get();
        let depth = 1000 * size_of::<usize>();
        let slot = (top - depth) as *mut usize;
        // SAFETY: `slot` is word aligned and lies inside the usable area of a
        // stack no coroutine runs on; `stack` is only used again after the
        // write.
        unsafe { slot.write(0) };
        assert_eq!(stack.high_water_mark(), Some(depth));
        stack.paint();
        assert_eq!(stack.high_water_mark(), Some(0));
    }

    /// A write just above the guard page counts as the whole usable size.
    #[test]
    fn mark_is_bounded_by_usable_size() {
        let mut stack = GuardedStack::new(MIN_STACK_SIZE).expect("map a stack");
        stack.paint();
        let lowest = stack.guard_range().end as *mut usize;
        // SAFETY: the first usable word, word aligned, of a stack no
        // coroutine runs on.
        unsafe { lowest.write(7) };
        assert_eq!(stack.high_water_mark(), Some(stack.usable_size()));
    }

    /// Sizes too large for the address space are an error, not a panic.
    #[test]
    fn oversized_request_is_an_error() {
        let err = GuardedStack::new(usize::MAX).expect_err("cannot map usize::MAX");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
