//! CPU time from the kernel's accounts (`getrusage`): of this process, of the calling
//! thread, and of the reaped children.
//!
//! Two pieces of evidence that wall-clock figures cannot give: how much CPU a W8 server spent
//! per request once the client threads' own time is taken out (the [`echo`](crate::echo)
//! client reads it), and how much CPU a load pass's competitors really burnt (cobench's
//! load passes).

use std::time::Duration;

/// Whose CPU time to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// Every thread of this process, live or exited.
    Process,
    /// The calling thread only (Linux `RUSAGE_THREAD`).
    Thread,
    /// Children that have exited and been waited for, with their own waited-for children.
    Children,
}

/// User plus system CPU time of `who` so far; zero if the kernel refuses (it does not for
/// these three on Linux).
pub fn cpu_time(who: Who) -> Duration {
    let which = match who {
        Who::Process => libc::RUSAGE_SELF,
        Who::Thread => libc::RUSAGE_THREAD,
        Who::Children => libc::RUSAGE_CHILDREN,
    };
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable `rusage` (zeroed, so initialised even if the call
    // failed to write it), and `which` is one of the three constants getrusage(2) accepts.
    let rc = unsafe { libc::getrusage(which, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: zero-initialised above, and written by a successful getrusage.
    let usage = unsafe { usage.assume_init() };
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

fn timeval(t: libc::timeval) -> Duration {
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let micros = u32::try_from(t.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spinning_thread_accrues_its_own_cpu_time() {
        let before = cpu_time(Who::Thread);
        let start = std::time::Instant::now();
        let mut x = 0u64;
        // The kernel accounts in ticks: spin until one lands (bounded, so that a broken
        // account fails rather than hangs).
        while cpu_time(Who::Thread) == before && start.elapsed() < Duration::from_secs(10) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        let spent = cpu_time(Who::Thread) - before;
        assert!(
            spent > Duration::ZERO,
            "no CPU time accounted after {:?}",
            start.elapsed()
        );
        assert!(cpu_time(Who::Process) >= spent);
    }
}
