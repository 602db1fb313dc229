//! Ctrl-C and SIGTERM: the first stops the run cleanly, a second exits at once.
//!
//! A load test is often stopped by hand, and what it measured until then is still worth
//! having. So the first SIGINT or SIGTERM only raises a flag: the running workload sees it
//! as its deadline, winds down, runs its checks on what it did, and `costress` prints the
//! report marked *interrupted* and exits with status 130. Winding down takes a moment (every
//! coroutine is joined); someone who does not want to wait presses Ctrl-C again, and the
//! second signal ends the process from the handler, after moving the terminal to a fresh
//! line so that the shell's prompt does not land on the progress line.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::exit::Exit;

/// Whether an interrupt has been asked for. Cheap to clone and to poll.
///
/// Nothing is published through the flag (the workload's own joins order everything it
/// reads afterwards), so `Relaxed` is enough: the run only has to see it soon.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// A flag that only [`raise`](Interrupt::raise) sets: for tests, and for runs without
    /// signal handlers.
    pub fn manual() -> Interrupt {
        Interrupt::default()
    }

    /// A flag raised by the first SIGINT or SIGTERM; the second exits the process with
    /// status 130 at once.
    ///
    /// # Errors
    ///
    /// The OS error if a handler could not be installed.
    pub fn install() -> io::Result<Interrupt> {
        let interrupt = Interrupt::default();
        for signal in [SIGINT, SIGTERM] {
            let flag = Arc::clone(&interrupt.0);
            // SAFETY: `signal_hook::low_level::register` requires the action to be
            // async-signal-safe. It does an atomic swap on a flag it owns, and on a second
            // signal calls `write(2)` on a constant buffer and `_exit(2)` (through
            // `low_level::exit`), both on POSIX's list of async-signal-safe functions; it
            // allocates nothing, takes no lock and does not unwind.
            unsafe {
                signal_hook::low_level::register(signal, move || {
                    if flag.swap(true, Ordering::Relaxed) {
                        exit_at_once();
                    }
                })
            }?;
        }
        Ok(interrupt)
    }

    /// Whether an interrupt was asked for.
    #[inline]
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Asks for an interrupt, as the first signal does.
    pub fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The second signal's action: end the progress line, say why, exit 130. Runs inside a
/// signal handler, so only async-signal-safe calls.
fn exit_at_once() -> ! {
    const MESSAGE: &[u8] = b"\ncostress: interrupted again; exiting without a report\n";
    // SAFETY: `write(2)` is async-signal-safe; the buffer is a `'static` constant and the
    // length is its own. A short or failed write only loses the message.
    let _ = unsafe { libc::write(libc::STDERR_FILENO, MESSAGE.as_ptr().cast(), MESSAGE.len()) };
    signal_hook::low_level::exit(i32::from(Exit::Interrupted.code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_flag_is_raised_only_by_hand() {
        let interrupt = Interrupt::manual();
        let seen_by_clone = interrupt.clone();
        assert!(!seen_by_clone.is_raised());
        interrupt.raise();
        assert!(seen_by_clone.is_raised());
    }
}
