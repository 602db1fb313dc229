//! The process exit status and what each value means.
//!
//! Scripts and CI branch on these, so they are part of the interface: keep them stable.

use std::process::ExitCode;

/// How a `costress` run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Exit {
    /// Every workload ran and every correctness check passed (also `--help`, `--list`).
    Success = 0,
    /// A correctness check failed, or a workload could not finish (the runtime failed to
    /// start, a workload panicked). The report says what and by how much.
    CheckFailed = 1,
    /// Bad input: an unknown workload, a malformed configuration, a value out of range, an
    /// unknown flag. The message names the key or flag and the expected form.
    BadInput = 2,
    /// The watchdog fired: no progress for `stall_timeout`. A dump of the suspended
    /// coroutines was printed first.
    Stalled = 3,
    /// The coroutines do not fit under the kernel's limit on memory mappings
    /// (`vm.max_map_count`): found before the run, or when a stack allocation failed in it.
    /// The message gives the limit, how many fit and how to raise it.
    ResourceLimit = 4,
    /// The soak found a leak after a runtime was dropped: a thread, mappings, stacks, a
    /// destructor that did not run, a lock left held or a reference left behind. The
    /// report names the cycle and what leaked.
    Leaked = 5,
    /// Stopped by SIGINT or SIGTERM; the report of what ran was printed, marked
    /// interrupted (128 + SIGINT, as shells report it).
    Interrupted = 130,
}

impl Exit {
    /// The numeric status the process exits with.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The status clap asks for when it refuses the command line (2) or has printed help or
    /// the version (0).
    pub fn from_clap(err: &clap::Error) -> Exit {
        if err.use_stderr() {
            Exit::BadInput
        } else {
            Exit::Success
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let codes = [
            Exit::Success,
            Exit::CheckFailed,
            Exit::BadInput,
            Exit::Stalled,
            Exit::ResourceLimit,
            Exit::Leaked,
            Exit::Interrupted,
        ]
        .map(Exit::code);
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 130]);
    }
}
