//! The registry of started, unfinished coroutines homed on a context.
//!
//! Owner-thread only, and non-owning: entries are raw pointers that a
//! coroutine removes itself when it finishes (or that its new home's owner
//! removes after a migration). Shutdown walks it to unwind every suspended
//! coroutine on its home thread, and `Runtime::dump` walks it to list them.

use crate::core::control::CoInner;

/// A slab of raw control-block pointers.
#[derive(Default)]
pub(crate) struct Registry {
    slots: Vec<*const CoInner>,
    free: Vec<usize>,
    live: usize,
}

impl Registry {
    /// Adds a coroutine; returns its slot.
    pub(crate) fn insert(&mut self, co: *const CoInner) -> usize {
        self.live += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = co;
                i
            }
            None => {
                self.slots.push(co);
                self.slots.len() - 1
            }
        }
    }

    /// Removes the entry at `slot` if it still holds `co`.
    pub(crate) fn remove(&mut self, slot: usize, co: *const CoInner) {
        if self.slots.get(slot).copied() == Some(co) {
            self.slots[slot] = std::ptr::null();
            self.free.push(slot);
            self.live -= 1;
        }
    }

    /// Registered coroutines.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// A copy of every entry (callers must check each is still live and
    /// homed here before touching it: the copy is taken, then coroutines run).
    pub(crate) fn snapshot(&self) -> Vec<*const CoInner> {
        self.slots
            .iter()
            .copied()
            .filter(|p| !p.is_null())
            .collect()
    }
}
