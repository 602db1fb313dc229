//! What the process holds, from `/proc/self`: threads, mappings, resident memory.

use std::fs;

/// Threads of this process now (entries of `/proc/self/task`).
pub(super) fn threads() -> Option<usize> {
    fs::read_dir("/proc/self/task").ok().map(Iterator::count)
}

/// Resident memory now and its high-water mark, in KiB (`VmRSS`, `VmHWM`).
pub(super) fn resident_kib() -> Option<(u64, u64)> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_thread_is_counted() {
        let before = threads().expect("Linux has /proc/self/task");
        let (ready, wait) = std::sync::mpsc::channel::<()>();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = ready.send(());
            let _ = stopped.recv();
        });
        wait.recv().unwrap();
        // Other tests of this binary start and stop threads too, so only "more than one
        // fewer" would be wrong.
        assert!(threads().unwrap() >= 2, "main and the new thread");
        drop(stop);
        thread.join().unwrap();
        assert!(before >= 1);
    }

    #[test]
    fn resident_memory_is_below_its_peak() {
        let (rss, peak) = resident_kib().expect("Linux has VmRSS and VmHWM");
        assert!(rss > 0 && rss <= peak, "{rss} {peak}");
    }
}
