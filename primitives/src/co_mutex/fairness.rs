//! [`Fairness`]: which waiter a [`CoMutex`](super::CoMutex) unlock serves next.

use std::time::Duration;

use super::raw::Policy;

/// The bound of the default [`Fairness::Eventual`] policy: 1 ms.
///
/// Long enough that a batch of hand-overs on one context (tens of
/// nanoseconds each) pays for the cross-thread wake (microseconds, up to a
/// time slice under a busy neighbour) that ends it; short enough to be well
/// under a typical I/O latency target.
pub const DEFAULT_FAIRNESS_BOUND: Duration = Duration::from_millis(1);

/// How a [`CoMutex`](super::CoMutex) chooses the waiter that gets the lock at an unlock
/// (see "Fairness" on [`CoMutex`](super::CoMutex)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fairness {
    /// Strict FIFO across contexts: always the oldest waiter (QEMU).
    Fifo,
    /// Own context first: the oldest waiter of the unlocker's context, unless
    /// the oldest waiter overall has waited longer than `bound`.
    Eventual {
        /// How long the oldest waiter may be overtaken (measured from when
        /// the unlocking side first saw its wait record).
        bound: Duration,
    },
}

impl Fairness {
    /// The protocol's form of the policy.
    pub(super) const fn policy(self) -> Policy {
        match self {
            Fairness::Fifo => Policy::Fifo,
            Fairness::Eventual { bound } => {
                let ns = bound.as_nanos();
                Policy::Eventual {
                    bound_ns: if ns > u64::MAX as u128 {
                        u64::MAX
                    } else {
                        ns as u64
                    },
                }
            }
        }
    }
}

impl Default for Fairness {
    /// [`Fairness::Eventual`] with [`DEFAULT_FAIRNESS_BOUND`].
    fn default() -> Fairness {
        Fairness::Eventual {
            bound: DEFAULT_FAIRNESS_BOUND,
        }
    }
}
