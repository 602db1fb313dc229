//! A context's timers: a binary heap of deadlines over a slab of callbacks.
//!
//! Owner-thread only. Cancelling is O(1): the slab slot is emptied and its
//! generation bumped, and the stale heap entry is skipped when it surfaces.
//! Steady-state arming and firing allocate nothing but the callback box.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// A timer callback. Runs on the context's thread, outside coroutine context.
/// Small closures are stored inline, so arming a timer allocates nothing.
pub(crate) type TimerFn = crate::core::entry::Entry;

/// Identifies an armed timer for cancellation: the context it was armed on
/// and its slot there, so that it cannot disarm another context's timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    pub(crate) context: u64,
    pub(crate) key: TimerKey,
}

/// A timer's slot in one context's [`Timers`] and the slot's generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TimerKey {
    slot: u32,
    generation: u32,
}

struct Slot {
    generation: u32,
    callback: Option<TimerFn>,
}

/// The timer set of one context.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, u32, u32)>>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    armed: usize,
    /// Tie-breaker so that equal deadlines fire in arming order.
    seq: u64,
}

impl Timers {
    /// Arms a timer.
    pub(crate) fn add(&mut self, deadline: Instant, callback: TimerFn) -> TimerKey {
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize].callback = Some(callback);
                i
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    callback: Some(callback),
                });
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 timers")
            }
        };
        let generation = self.slots[slot as usize].generation;
        self.seq += 1;
        self.heap
            .push(Reverse((deadline, self.seq, slot, generation)));
        self.armed += 1;
        TimerKey { slot, generation }
    }

    /// Disarms a timer and hands its callback back, to be dropped by the
    /// caller once it no longer borrows the timers (dropping a callback can
    /// run arbitrary code); `None` if it already fired or was cancelled.
    pub(crate) fn cancel(&mut self, id: TimerKey) -> Option<TimerFn> {
        match self.slots.get_mut(id.slot as usize) {
            Some(s) if s.generation == id.generation && s.callback.is_some() => {
                let cb = s.callback.take();
                self.retire(id.slot);
                cb
            }
            _ => None,
        }
    }

    fn retire(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        s.generation = s.generation.wrapping_add(1);
        self.free.push(slot);
        self.armed -= 1;
    }

    /// The earliest live deadline, dropping cancelled entries on the way.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((deadline, _, slot, generation))) = self.heap.peek() {
            if self.slots[slot as usize].generation == generation {
                return Some(deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns the callbacks due at `now`, in deadline order.
    pub(crate) fn take_due(&mut self, now: Instant, out: &mut Vec<TimerFn>) {
        while let Some(deadline) = self.next_deadline() {
            if deadline > now {
                break;
            }
            let Reverse((_, _, slot, _)) = self.heap.pop().expect("peeked");
            if let Some(cb) = self.slots[slot as usize].callback.take() {
                out.push(cb);
            }
            self.retire(slot);
        }
    }

    /// Armed timers.
    pub(crate) fn len(&self) -> usize {
        self.armed
    }

    /// Disarms everything, returning the callbacks (context shutdown).
    pub(crate) fn clear(&mut self) -> Vec<TimerFn> {
        self.heap.clear();
        self.free.clear();
        self.armed = 0;
        self.slots.drain(..).filter_map(|s| s.callback).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn recorder() -> (Arc<Mutex<Vec<u32>>>, impl Fn(u32) -> TimerFn) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        (log, move |n| {
            let l = l.clone();
            TimerFn::new(move || l.lock().unwrap().push(n))
        })
    }

    #[test]
    fn fires_in_deadline_then_arming_order() {
        let (log, cb) = recorder();
        let mut t = Timers::default();
        let now = Instant::now();
        t.add(now + Duration::from_millis(2), cb(2));
        t.add(now + Duration::from_millis(1), cb(1));
        t.add(now + Duration::from_millis(1), cb(11));
        t.add(now + Duration::from_secs(60), cb(60));
        let mut due = Vec::new();
        t.take_due(now + Duration::from_millis(5), &mut due);
        due.into_iter().for_each(TimerFn::run);
        assert_eq!(*log.lock().unwrap(), vec![1, 11, 2]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(60)));
    }

    #[test]
    fn cancelled_timers_never_fire_and_slots_are_reused() {
        let (log, cb) = recorder();
        let mut t = Timers::default();
        let now = Instant::now();
        let a = t.add(now, cb(1));
        assert!(t.cancel(a).is_some());
        assert!(t.cancel(a).is_none(), "second cancel is a no-op");
        let b = t.add(now, cb(2));
        assert_eq!(b.slot, a.slot, "slot reused");
        assert!(
            t.cancel(a).is_none(),
            "a stale id cannot cancel the new timer"
        );
        let mut due = Vec::new();
        t.take_due(now, &mut due);
        due.into_iter().for_each(TimerFn::run);
        assert_eq!(*log.lock().unwrap(), vec![2]);
        assert_eq!(t.len(), 0);
        assert_eq!(t.next_deadline(), None);
    }
}
