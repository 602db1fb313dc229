//! A context's timers: a hierarchical timing wheel over a slab of callbacks.
//!
//! Owner-thread only. Arming and cancelling are O(1); firing costs O(1) per
//! timer plus one move per level it crosses on the way down (at most
//! [`LEVELS`], in practice one or two). Steady-state arming and firing
//! allocate nothing but the callback box, and small callbacks are stored
//! inline.
//!
//! # The wheel
//!
//! Time is counted in ticks of [`TICK_NS`] nanoseconds since the wheel's
//! epoch, an instant no later than any "now" it will be asked about (the
//! owning loop's clock when it was built). A timer is filed by its deadline
//! rounded *up* to a tick, so every slot up to the one `now` falls in holds
//! only timers due by the end of that tick; the wheel visits those slots and
//! fires what is due by `now` exactly: a timer fires once `now` reaches its
//! deadline, never before.
//!
//! Level `L` has 64 slots of `64^L` ticks each. `elapsed` is the tick the
//! wheel has advanced to. A timer due at tick `t > elapsed` sits at the level
//! of the highest base-64 digit in which `t` and `elapsed` differ, in the slot
//! given by `t`'s digit there; a timer with `t <= elapsed` sits in level 0 at
//! `elapsed`'s own slot (due at the next look). So at level `L` every timer
//! shares `elapsed`'s digits above `L` and has a larger digit at `L`: the
//! occupied slots of each level lie ahead of `elapsed` within its current
//! rotation, and every slot of level `L` starts after every slot of level
//! `L - 1`. The earliest occupied slot is therefore the first occupied one at
//! the lowest non-empty level ([`Timers::next_slot`]).
//!
//! Advancing ([`Timers::take_due`]) visits the occupied slots in time order
//! up to now: a level-0 slot fires; a higher slot is *cascaded*, its timers
//! re-filed relative to its start, which moves each down at least one level.
//! `elapsed` only ever enters an occupied slot by visiting it, so a timer's
//! level stays right while `elapsed` moves towards it.
//!
//! # Order
//! Timers fire in deadline order, and equal deadlines in arming order: slots
//! are visited in time order, lists keep insertion order (also when
//! cascaded), and a level-0 slot's timers, which share a tick but not
//! necessarily a deadline, are stably sorted by deadline when it fires.
//!
//! # Next deadline
//! [`Timers::next_deadline`] is the smallest deadline in the earliest slot,
//! so the loop sleeps until it and a simulation's virtual clock jumps
//! straight to it: at level 0 by a walk of the slot (timers fire there), at
//! a higher level from the slot's running minimum. That minimum is not
//! raised when its timer is cancelled, so it may then be early, but never
//! before the tick ahead of the slot's: asked then, `take_due` cascades the
//! slot and the next answer is exact.
//!
//! # Range
//! Deadlines are nanoseconds from the epoch in a `u64`; one more than about
//! 584 years away counts as that last nanosecond, and fires there.

use std::time::{Duration, Instant};

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

/// log2 of a tick in nanoseconds: 1.024 µs, well below the loop's
/// oversleep (tens of µs) and fine enough that rounding is invisible.
const TICK_SHIFT: u32 = 10;
/// Nanoseconds per tick.
pub(crate) const TICK_NS: u64 = 1 << TICK_SHIFT;
/// Bits of a tick per level (64 slots).
const LEVEL_BITS: u32 = 6;
const SLOTS: usize = 1 << LEVEL_BITS;
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// Levels: 54 bits of ticks, all that nanoseconds in a `u64` (about 584
/// years past the epoch) need; a later deadline counts as that last
/// nanosecond.
pub(crate) const LEVELS: usize = 9;
/// The last tick: `u64::MAX` nanoseconds, rounded up.
const MAX_TICK: u64 = u64::MAX >> TICK_SHIFT;
// The levels cover every tick, so `level_for` stays below `LEVELS`.
const _: () = assert!(MAX_TICK >> (LEVEL_BITS * LEVELS as u32) == 0);
/// No entry (list ends, free slot links).
const NIL: u32 = u32::MAX;

/// One slab entry: an armed timer, or a free slot waiting for reuse.
struct Entry {
    generation: u32,
    callback: Option<TimerFn>,
    /// Nanoseconds from the epoch (0 for a deadline before it).
    deadline: u64,
    prev: u32,
    next: u32,
    /// Where it is filed, for O(1) cancel.
    level: u8,
    slot: u8,
}

/// A slot's timers, in insertion order.
#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    /// The smallest deadline filed here since the slot was last empty: the
    /// earliest of its timers, or, after that one was cancelled, a bound
    /// below them (see the module docs, "Next deadline").
    earliest: u64,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
    earliest: u64::MAX,
};

/// The timer set of one context.
pub(crate) struct Timers {
    epoch: Instant,
    /// The tick the wheel has advanced to.
    elapsed: u64,
    lists: [[List; SLOTS]; LEVELS],
    /// Bit `s` of `occupied[L]`: slot `s` of level `L` is non-empty.
    occupied: [u64; LEVELS],
    /// Bit `L`: `occupied[L]` is not zero.
    levels: u16,
    entries: Vec<Entry>,
    free: Vec<u32>,
    armed: usize,
    /// A firing slot's entries while they are sorted (kept to reuse).
    firing: Vec<u32>,
}

/// The level at which a timer due at `tick` is filed while the wheel is at
/// `elapsed` (both at most [`MAX_TICK`], so the level is below [`LEVELS`]).
#[inline]
fn level_for(tick: u64, elapsed: u64) -> usize {
    let differ = (tick ^ elapsed) | SLOT_MASK;
    let top_bit = 63 - differ.leading_zeros();
    (top_bit / LEVEL_BITS) as usize
}

/// The tick a deadline `ns` nanoseconds after the epoch is filed by: rounded
/// up, so that its slot ends no earlier than the deadline.
#[inline]
fn ceil_tick(ns: u64) -> u64 {
    ns.saturating_add(TICK_NS - 1) >> TICK_SHIFT
}

/// `tick`'s digit at `level`.
#[inline]
fn digit(tick: u64, level: usize) -> usize {
    ((tick >> (LEVEL_BITS * level as u32)) & SLOT_MASK) as usize
}

impl Timers {
    /// An empty wheel whose ticks count from `epoch`, which must be no later
    /// than any `now` later given to [`take_due`](Self::take_due).
    pub(crate) fn new(epoch: Instant) -> Timers {
        Timers {
            epoch,
            elapsed: 0,
            lists: [[EMPTY; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            levels: 0,
            entries: Vec::new(),
            free: Vec::new(),
            armed: 0,
            firing: Vec::new(),
        }
    }

    /// Nanoseconds from the epoch to `t`; 0 before it, saturating past
    /// ~584 years (where the top tick is as good as any).
    #[inline]
    fn nanos(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.epoch);
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    }

    /// The instant `ns` nanoseconds after the epoch.
    fn instant_of(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }

    /// Arms a timer.
    pub(crate) fn add(&mut self, deadline: Instant, callback: TimerFn) -> TimerKey {
        let deadline = self.nanos(deadline);
        let index = match self.free.pop() {
            Some(i) => {
                let e = &mut self.entries[i as usize];
                e.callback = Some(callback);
                e.deadline = deadline;
                i
            }
            None => {
                self.entries.push(Entry {
                    generation: 0,
                    callback: Some(callback),
                    deadline,
                    prev: NIL,
                    next: NIL,
                    level: 0,
                    slot: 0,
                });
                u32::try_from(self.entries.len() - 1).expect("fewer than 2^32 timers")
            }
        };
        self.file(index);
        self.armed += 1;
        TimerKey {
            slot: index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Files entry `index` relative to `elapsed`, at the end of its slot.
    fn file(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        let tick = ceil_tick(deadline).max(self.elapsed);
        let level = level_for(tick, self.elapsed);
        let slot = digit(tick, level);
        let list = &mut self.lists[level][slot];
        let prev = list.tail;
        list.tail = index;
        list.earliest = list.earliest.min(deadline);
        if prev == NIL {
            list.head = index;
            self.occupied[level] |= 1 << slot;
            self.levels |= 1 << level;
        } else {
            self.entries[prev as usize].next = index;
        }
        let e = &mut self.entries[index as usize];
        e.prev = prev;
        e.next = NIL;
        e.level = level as u8;
        e.slot = slot as u8;
    }

    /// Takes entry `index` out of its slot's list.
    fn unlink(&mut self, index: u32) {
        let (prev, next, level, slot) = {
            let e = &self.entries[index as usize];
            (e.prev, e.next, usize::from(e.level), usize::from(e.slot))
        };
        let list = &mut self.lists[level][slot];
        if prev == NIL {
            list.head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            list.tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        if list.head == NIL {
            list.earliest = u64::MAX;
            self.vacate(level, slot);
        }
    }

    /// Marks slot `slot` of `level` empty.
    #[inline]
    fn vacate(&mut self, level: usize, slot: usize) {
        self.occupied[level] &= !(1 << slot);
        if self.occupied[level] == 0 {
            self.levels &= !(1 << level);
        }
    }

    /// Disarms a timer and hands its callback back, to be dropped by the
    /// caller once it no longer borrows the timers (dropping a callback can
    /// run arbitrary code); `None` if it already fired or was cancelled.
    pub(crate) fn cancel(&mut self, id: TimerKey) -> Option<TimerFn> {
        match self.entries.get(id.slot as usize) {
            Some(e) if e.generation == id.generation && e.callback.is_some() => {
                self.unlink(id.slot);
                let cb = self.entries[id.slot as usize].callback.take();
                self.retire(id.slot);
                cb
            }
            _ => None,
        }
    }

    fn retire(&mut self, index: u32) {
        let e = &mut self.entries[index as usize];
        e.generation = e.generation.wrapping_add(1);
        self.free.push(index);
        self.armed -= 1;
    }

    /// The earliest occupied slot: its level, its index there and the tick
    /// at which it starts (see the module docs for why the lowest non-empty
    /// level has it).
    #[inline]
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        if self.levels == 0 {
            return None;
        }
        let level = self.levels.trailing_zeros() as usize;
        let bits = self.occupied[level];
        // Every occupied slot lies ahead of `elapsed` in its level's current
        // rotation (the module docs' invariant), so the lowest bit is next:
        // level 0 may hold `elapsed`'s own slot, a higher level never does.
        let here = digit(self.elapsed, level);
        debug_assert!(
            bits.trailing_zeros() as usize > here
                || (level == 0 && bits.trailing_zeros() as usize == here),
            "slot behind the wheel at level {level}"
        );
        let slot = bits.trailing_zeros() as usize;
        let shift = LEVEL_BITS * level as u32;
        let rotation = self.elapsed & !((SLOT_MASK << shift) | ((1 << shift) - 1));
        Some((level, slot, rotation | ((slot as u64) << shift)))
    }

    /// The earliest deadline: exact, unless the earliest timer of a slot
    /// above level 0 was cancelled (then a bound below the rest; see the
    /// module docs, "Next deadline").
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let (level, slot, start) = self.next_slot()?;
        let list = &self.lists[level][slot];
        if level > 0 {
            // Every timer here rounds up to `start` or later, so each is due
            // after the tick before it: a bound that holds however stale
            // `earliest` is, and that `take_due` rounds up to `start`.
            let after_previous_tick = ((start - 1) << TICK_SHIFT) + 1;
            return Some(self.instant_of(list.earliest.max(after_previous_tick)));
        }
        // Level 0 is where timers fire: exact, whatever was cancelled.
        let mut i = list.head;
        let mut earliest = u64::MAX;
        while i != NIL {
            let e = &self.entries[i as usize];
            earliest = earliest.min(e.deadline);
            i = e.next;
        }
        Some(self.instant_of(earliest))
    }

    /// Removes and returns the callbacks due at `now`, in deadline order.
    pub(crate) fn take_due(&mut self, now: Instant, out: &mut Vec<TimerFn>) {
        // Slots that start up to the tick `now` falls in; that last tick is
        // only partly over, so its slot fires only what is due by `now`.
        let now = self.nanos(now);
        let now_tick = ceil_tick(now);
        while let Some((level, slot, start)) = self.next_slot() {
            if start > now_tick {
                break;
            }
            self.elapsed = self.elapsed.max(start);
            let list = std::mem::replace(&mut self.lists[level][slot], EMPTY);
            self.vacate(level, slot);
            if level == 0 {
                if !self.fire(list, now, out) {
                    break;
                }
            } else {
                // Cascade: each timer is re-filed relative to the slot's
                // start, one level down or more, keeping the list's order.
                let mut i = list.head;
                while i != NIL {
                    let next = self.entries[i as usize].next;
                    self.file(i);
                    i = next;
                }
            }
        }
        // Every tick before `now`'s is over and nothing is filed there any
        // more, so moving up to it enters no occupied slot.
        self.elapsed = self.elapsed.max(now >> TICK_SHIFT);
    }

    /// Fires the timers of a level-0 slot (they share one tick) that are due
    /// at `now`, in deadline order and, for equal deadlines, in list (arming)
    /// order; files the rest back, in order. True if the slot is now empty.
    fn fire(&mut self, list: List, now: u64, out: &mut Vec<TimerFn>) -> bool {
        if list.head == list.tail {
            // One timer: nothing to sort.
            let i = list.head;
            if self.entries[i as usize].deadline > now {
                self.file(i);
                return false;
            }
            if let Some(cb) = self.entries[i as usize].callback.take() {
                out.push(cb);
            }
            self.retire(i);
            return true;
        }
        let mut firing = std::mem::take(&mut self.firing);
        let mut i = list.head;
        while i != NIL {
            let next = self.entries[i as usize].next;
            if self.entries[i as usize].deadline <= now {
                firing.push(i);
            } else {
                self.file(i);
            }
            i = next;
        }
        if firing.len() > 1 {
            let entries = &self.entries;
            firing.sort_by_key(|&i| entries[i as usize].deadline);
        }
        for &i in &firing {
            if let Some(cb) = self.entries[i as usize].callback.take() {
                out.push(cb);
            }
            self.retire(i);
        }
        firing.clear();
        self.firing = firing;
        self.lists[0][digit(self.elapsed, 0)].head == NIL
    }

    /// Armed timers.
    pub(crate) fn len(&self) -> usize {
        self.armed
    }

    /// Disarms everything, returning the callbacks (context shutdown). The
    /// slab is kept, each entry retired, so that an id from before cannot
    /// match a timer armed after.
    pub(crate) fn clear(&mut self) -> Vec<TimerFn> {
        self.lists = [[EMPTY; SLOTS]; LEVELS];
        self.occupied = [0; LEVELS];
        self.levels = 0;
        self.armed = 0;
        self.free.clear();
        let mut callbacks = Vec::new();
        for (i, e) in self.entries.iter_mut().enumerate() {
            if let Some(cb) = e.callback.take() {
                callbacks.push(cb);
                e.generation = e.generation.wrapping_add(1);
            }
            self.free
                .push(u32::try_from(i).expect("fewer than 2^32 timers"));
        }
        callbacks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    fn recorder() -> (Arc<Mutex<Vec<u32>>>, impl Fn(u32) -> TimerFn) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        (log, move |n| {
            let l = l.clone();
            TimerFn::new(move || l.lock().unwrap().push(n))
        })
    }

    fn run_due(t: &mut Timers, now: Instant) -> usize {
        let mut due = Vec::new();
        t.take_due(now, &mut due);
        let n = due.len();
        due.into_iter().for_each(TimerFn::run);
        n
    }

    #[test]
    fn fires_in_deadline_then_arming_order() {
        let (log, cb) = recorder();
        let now = Instant::now();
        let mut t = Timers::new(now);
        t.add(now + Duration::from_millis(2), cb(2));
        t.add(now + Duration::from_millis(1), cb(1));
        t.add(now + Duration::from_millis(1), cb(11));
        t.add(now + Duration::from_secs(60), cb(60));
        run_due(&mut t, now + Duration::from_millis(5));
        assert_eq!(*log.lock().unwrap(), vec![1, 11, 2]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(60)));
        run_due(&mut t, now + Duration::from_secs(60));
        assert_eq!(*log.lock().unwrap(), vec![1, 11, 2, 60]);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn cancelled_timers_never_fire_and_slots_are_reused() {
        let (log, cb) = recorder();
        let now = Instant::now();
        let mut t = Timers::new(now);
        let a = t.add(now, cb(1));
        assert!(t.cancel(a).is_some());
        assert!(t.cancel(a).is_none(), "second cancel is a no-op");
        let b = t.add(now, cb(2));
        assert_eq!(b.slot, a.slot, "slot reused");
        assert!(
            t.cancel(a).is_none(),
            "a stale id cannot cancel the new timer"
        );
        run_due(&mut t, now);
        assert_eq!(*log.lock().unwrap(), vec![2]);
        assert_eq!(t.len(), 0);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn a_timer_fires_at_its_deadline_not_before() {
        let (log, cb) = recorder();
        let epoch = Instant::now();
        let mut t = Timers::new(epoch);
        let deadline = epoch + Duration::from_nanos(1_000_500);
        t.add(deadline, cb(1));
        t.add(deadline + Duration::from_nanos(1), cb(2));
        run_due(&mut t, deadline - Duration::from_nanos(1));
        assert!(log.lock().unwrap().is_empty(), "fired before its deadline");
        assert_eq!(t.next_deadline(), Some(deadline));
        run_due(&mut t, deadline);
        assert_eq!(*log.lock().unwrap(), vec![1]);
        assert_eq!(t.next_deadline(), Some(deadline + Duration::from_nanos(1)));
        run_due(&mut t, deadline + Duration::from_nanos(1));
        assert_eq!(*log.lock().unwrap(), vec![1, 2]);
    }

    #[test]
    fn next_deadline_is_exact_when_near() {
        let epoch = Instant::now();
        let mut t = Timers::new(epoch);
        let near = epoch + Duration::from_nanos(5_000);
        t.add(near + Duration::from_nanos(300), TimerFn::new(|| {}));
        t.add(near, TimerFn::new(|| {}));
        assert_eq!(t.next_deadline(), Some(near));
    }

    /// Far timers too: the slot's running minimum, exact until its timer is
    /// cancelled, then a bound below the rest that still makes progress.
    #[test]
    fn next_deadline_of_far_timers() {
        let epoch = Instant::now();
        let mut t = Timers::new(epoch);
        let first = epoch + Duration::from_millis(10_000);
        let second = first + Duration::from_micros(3);
        let a = t.add(first, TimerFn::new(|| {}));
        t.add(second, TimerFn::new(|| {}));
        assert_eq!(t.next_deadline(), Some(first));
        assert!(t.cancel(a).is_some());
        let bound = t.next_deadline().expect("one armed");
        assert!(bound <= second);
        // Asked at the bound, the wheel cascades and then answers exactly.
        assert_eq!(run_due(&mut t, bound), 0);
        assert_eq!(t.next_deadline(), Some(second));
        assert_eq!(run_due(&mut t, second), 1);
    }

    #[test]
    fn past_and_far_deadlines() {
        let (log, cb) = recorder();
        let epoch = Instant::now();
        let mut t = Timers::new(epoch + Duration::from_secs(1));
        // Before the epoch: due at the first look.
        t.add(epoch, cb(0));
        // Far beyond any level but the top, and beyond the last tick.
        t.add(epoch + Duration::from_secs(86_400 * 365 * 100), cb(1));
        t.add(epoch + Duration::from_secs(u64::MAX / 4), cb(2));
        assert_eq!(run_due(&mut t, epoch + Duration::from_secs(1)), 1);
        assert_eq!(t.len(), 2);
        // Behind the wheel's position: due at the next look too.
        run_due(&mut t, epoch + Duration::from_secs(5));
        t.add(epoch + Duration::from_secs(2), cb(3));
        assert_eq!(run_due(&mut t, epoch + Duration::from_secs(5)), 1);
        run_due(&mut t, epoch + Duration::from_secs(86_400 * 365 * 101));
        assert_eq!(*log.lock().unwrap(), vec![0, 3, 1]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.clear().len(), 1);
        assert_eq!(t.len(), 0);
        assert_eq!(t.next_deadline(), None);
    }

    /// A xorshift generator: the same pseudo-random sequence every run.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Against a reference (a sorted map of (deadline, arming number)): random
    /// arms over six orders of magnitude, cancels and advances fire exactly
    /// the timers due, in deadline then arming order, none early.
    #[test]
    fn matches_a_sorted_reference_under_random_use() {
        let epoch = Instant::now();
        let mut t = Timers::new(epoch);
        let mut reference = BTreeMap::<(Instant, u32), TimerKey>::new();
        let fired = Arc::new(Mutex::new(Vec::<(u32, Instant)>::new()));
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut now = epoch;
        for n in 0..20_000u32 {
            match rng.below(10) {
                0..=5 => {
                    let scale = 10u64.pow(rng.below(13) as u32);
                    let offset = Duration::from_nanos(rng.below(100) * scale);
                    // One in eight already past (due at the next look).
                    let deadline = if rng.below(8) == 0 {
                        now.checked_sub(offset).unwrap_or(epoch).max(epoch)
                    } else {
                        now + offset
                    };
                    let f = fired.clone();
                    let key = t.add(
                        deadline,
                        TimerFn::new(move || f.lock().unwrap().push((n, deadline))),
                    );
                    reference.insert((deadline, n), key);
                }
                6 if !reference.is_empty() => {
                    let skip = rng.below(reference.len() as u64) as usize;
                    let k = *reference.keys().nth(skip).unwrap();
                    let key = reference.remove(&k).unwrap();
                    assert!(t.cancel(key).is_some());
                }
                _ => {
                    // Half the time straight to the next deadline, as the
                    // loop and the simulation do: that must make progress.
                    let asked = t.next_deadline().filter(|&d| d > now && rng.below(2) == 0);
                    now = asked.unwrap_or(now + Duration::from_nanos(rng.below(2_000_000)));
                    let mut due = Vec::new();
                    t.take_due(now, &mut due);
                    if let Some(asked) = asked {
                        assert!(
                            !due.is_empty() || t.next_deadline().is_none_or(|d| d > asked),
                            "no progress at the next deadline, step {n}"
                        );
                    }
                    due.into_iter().for_each(TimerFn::run);
                    let fired = std::mem::take(&mut *fired.lock().unwrap());
                    let expected: Vec<(u32, Instant)> = reference
                        .range(..(now, u32::MAX))
                        .map(|(&(d, n), _)| (n, d))
                        .collect();
                    assert_eq!(fired, expected, "at step {n}");
                    reference.retain(|&(d, _), _| d > now);
                    assert!(fired.iter().all(|&(_, d)| d <= now), "early");
                }
            }
            assert_eq!(t.len(), reference.len());
            if let (Some(next), Some(&(first, _))) = (t.next_deadline(), reference.keys().next()) {
                assert!(next <= first, "next deadline {next:?} after {first:?}");
            }
        }
    }
}
