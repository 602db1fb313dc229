//! Guard-paged coroutine stacks (layer 1 of ARCHITECTURE.md).
//!
//! QEMU's `qemu_alloc_stack`: an anonymous mapping whose lowest page is
//! `PROT_NONE`, so running off the end of the stack faults instead of
//! scribbling over a neighbour. Each stack costs two mappings (the guard and
//! the usable part), which is what ties the pool's hard cap to
//! `vm.max_map_count`.

use std::io;
use std::num::NonZeroUsize;
use std::ptr;

use corosensei::stack::{Stack, StackPointer};

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
pub struct GuardedStack {
    /// Lowest address of the mapping (the guard page starts here).
    low: NonZeroUsize,
    /// Whole mapping length: guard page plus usable size.
    len: usize,
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
        // From here on `stack` owns the mapping, so an early return unmaps it.
        let stack = GuardedStack { low, len };
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
}

fn size_overflow() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "stack size overflows the address space")
}

impl Drop for GuardedStack {
    fn drop(&mut self) {
        // SAFETY: `low..low+len` is exactly the mapping created in `new`, and
        // no coroutine runs on it any more (the owner is being dropped).
        let rc = unsafe { libc::munmap(self.low.get() as *mut libc::c_void, self.len) };
        debug_assert_eq!(rc, 0, "munmap of a coroutine stack failed");
    }
}

// SAFETY: the mapping has a PROT_NONE guard page at its lowest address and
// at least MIN_STACK_SIZE (> corosensei's 4096) usable bytes; `base` and
// `limit` are page aligned, hence aligned to STACK_ALIGNMENT.
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

// SAFETY: a GuardedStack is an owned address range; nothing in it is tied to
// the thread that mapped it.
unsafe impl Send for GuardedStack {}
