//! Wait-for cycles: coroutines that wait on each other and can never be
//! woken.
//!
//! # The graph
//!
//! A primitive that suspends a coroutine can say what the coroutine waits
//! for by running the wait inside [`wait_on`], with a [`Blocker`]: an
//! object on the waiter's stack that names the coroutines whose progress
//! the wait needs (a lock's holders; for a queued ticket, the waiter ahead
//! of it). [`JoinHandle::join`](crate::JoinHandle::join) does the same for
//! the coroutine it joins. The nodes of the wait-for graph are the
//! suspended coroutines, the edges go from a waiter to each coroutine its
//! blocker names, and a cycle is a set of coroutines none of which can run
//! before another of them does: a deadlock.
//!
//! # Taking the snapshot
//!
//! A suspended coroutine's wait description is its executing thread's, and
//! so is the blocker on its stack. So each worker describes its own
//! suspended coroutines in a bottom half (as [`Runtime::dump`] does), where
//! a blocker can be asked for its blockers safely: the coroutine is
//! suspended inside the wait, so the blocker is alive. The graph is then
//! put together on the calling thread. Workers answer at different
//! instants, so a lock handed over between two answers could close a cycle
//! that never existed; a deadlock does not change, so the search ([`Runtime::deadlocks`]) takes two
//! snapshots and reports the cycles present in both. Coroutines already
//! woken (scheduled to run) are not waiting and are left out.
//!
//! [`Runtime::dump`]: crate::Runtime::dump
//! [`Runtime::deadlocks`]: crate::Runtime::deadlocks

mod cycles;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use crate::aio::AioContext;
pub use crate::core::blocker::{Blocker, wait_on};
use crate::core::home::SuspendedInfo;

/// How long a worker is given to describe its coroutines; one that does not
/// answer (busy in a coroutine that does not suspend) is left out.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// One coroutine of a [`Deadlock`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadlockMember {
    /// Its [`Coroutine::id`](crate::Coroutine::id).
    pub id: u64,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// The [`AioContext::id`] of its home context.
    pub context: u64,
    /// What it waits on, as its primitive names it ("CoMutex 'accounts'",
    /// "CoRwLock at 0x7f…", "join of coroutine 12 (worker)").
    pub waits_on: String,
}

impl DeadlockMember {
    /// The name, or `#<id>` for an unnamed coroutine.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("#{}", self.id))
    }
}

/// A cycle of coroutines each waiting for the next (and the last for the
/// first): none of them can ever run again.
///
/// Its `Display` is one line:
///
/// ```text
/// deadlock: coroutine 3 (a) on context 1 waits on CoMutex 'b' held by coroutine 4 (b); coroutine 4 (b) on context 2 waits on CoMutex 'a' held by coroutine 3 (a)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadlock {
    members: Vec<DeadlockMember>,
}

impl Deadlock {
    /// The members in cycle order, each waiting for the next; the first is
    /// the oldest (lowest id).
    pub fn members(&self) -> &[DeadlockMember] {
        &self.members
    }

    /// The members' names in cycle order, `#<id>` for unnamed ones.
    pub fn names(&self) -> Vec<String> {
        self.members.iter().map(DeadlockMember::label).collect()
    }

    /// True if the coroutine with this id is in the cycle.
    pub fn contains(&self, id: u64) -> bool {
        self.members.iter().any(|m| m.id == id)
    }
}

impl fmt::Display for Deadlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadlock: ")?;
        let n = self.members.len();
        for (i, m) in self.members.iter().enumerate() {
            let next = &self.members[(i + 1) % n];
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "coroutine {} ({}) on context {} waits on {} held by coroutine {} ({})",
                m.id,
                m.name.as_deref().unwrap_or("unnamed"),
                m.context,
                m.waits_on,
                next.id,
                next.name.as_deref().unwrap_or("unnamed"),
            )?;
        }
        Ok(())
    }
}

/// The wait-for cycles among the suspended coroutines of `contexts` (see
/// the module docs).
pub(crate) fn find(contexts: &[AioContext]) -> Vec<Deadlock> {
    let first = cycles_of(&snapshot(contexts));
    if first.is_empty() {
        return first;
    }
    let second: HashSet<Vec<(u64, String)>> = cycles_of(&snapshot(contexts))
        .iter()
        .map(signature)
        .collect();
    first
        .into_iter()
        .filter(|d| second.contains(&signature(d)))
        .collect()
}

/// What identifies a cycle across snapshots: its members and their waits.
fn signature(d: &Deadlock) -> Vec<(u64, String)> {
    d.members
        .iter()
        .map(|m| (m.id, m.waits_on.clone()))
        .collect()
}

/// Every worker's suspended coroutines (workers that do not answer in time
/// are left out).
fn snapshot(contexts: &[AioContext]) -> Vec<SuspendedInfo> {
    let replies: Vec<_> = contexts
        .iter()
        .map(|ctx| ctx.ask_owner(|owner| owner.describe_suspended()))
        .collect();
    replies
        .into_iter()
        .filter_map(|rx| rx.recv_timeout(ANSWER_TIMEOUT).ok())
        .flatten()
        .collect()
}

/// The cycles of one snapshot.
pub(crate) fn cycles_of(suspended: &[SuspendedInfo]) -> Vec<Deadlock> {
    // Nodes: coroutines that wait on something that names its blockers,
    // ordered by id so that each cycle starts at its oldest member.
    let mut nodes: Vec<&SuspendedInfo> = suspended
        .iter()
        .filter(|s| !s.scheduled && s.blocker.is_some())
        .collect();
    nodes.sort_by_key(|s| s.id);
    let index: HashMap<usize, usize> = nodes.iter().enumerate().map(|(i, s)| (s.key, i)).collect();
    let edges: Vec<Vec<usize>> = nodes
        .iter()
        .map(|s| {
            let mut out: Vec<usize> = s
                .blocked_by
                .iter()
                .filter_map(|k| index.get(k).copied())
                .collect();
            out.sort_unstable();
            out.dedup();
            out
        })
        .collect();
    cycles::elementary(&edges)
        .into_iter()
        .map(|cycle| Deadlock {
            members: cycle
                .into_iter()
                .map(|i| {
                    let s = nodes[i];
                    DeadlockMember {
                        id: s.id,
                        name: s.name.clone(),
                        context: s.context,
                        waits_on: s.blocker.clone().unwrap_or_default(),
                    }
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(id: u64, name: &str, waits_on: &str, blocked_by: &[u64]) -> SuspendedInfo {
        SuspendedInfo {
            id,
            name: (!name.is_empty()).then(|| name.to_owned()),
            context: 1,
            waiting_on: Some(waits_on.to_owned()),
            scheduled: false,
            key: id as usize * 64,
            blocker: Some(waits_on.to_owned()),
            blocked_by: blocked_by.iter().map(|b| *b as usize * 64).collect(),
        }
    }

    #[test]
    fn a_two_lock_cycle_starts_at_its_oldest_member() {
        let s = [
            waiter(8, "b", "CoMutex 'm1'", &[7]),
            waiter(7, "a", "CoMutex 'm2'", &[8]),
            waiter(9, "bystander", "CoMutex 'm1'", &[7]),
        ];
        let found = cycles_of(&s);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].names(), ["a", "b"]);
        assert_eq!(
            found[0].to_string(),
            "deadlock: coroutine 7 (a) on context 1 waits on CoMutex 'm2' held by coroutine 8 (b); \
             coroutine 8 (b) on context 1 waits on CoMutex 'm1' held by coroutine 7 (a)"
        );
    }

    #[test]
    fn no_cycle_no_deadlock_and_woken_coroutines_do_not_count() {
        let mut s = vec![
            waiter(1, "a", "CoMutex", &[2]),
            waiter(2, "b", "CoMutex", &[3]),
            waiter(3, "", "join", &[]),
        ];
        assert!(cycles_of(&s).is_empty());
        s[2].blocked_by = vec![64];
        assert_eq!(cycles_of(&s)[0].names(), ["a", "b", "#3"]);
        s[1].scheduled = true;
        assert!(cycles_of(&s).is_empty());
    }

    #[test]
    fn a_self_wait_is_a_cycle_of_one() {
        let s = [waiter(4, "greedy", "CoRwLock", &[4])];
        assert_eq!(cycles_of(&s)[0].names(), ["greedy"]);
    }
}
