//! The kernel's limit on memory mappings, which bounds how many coroutines can exist.
//!
//! Every coroutine stack is one `mmap` with a `PROT_NONE` guard page at its bottom, which
//! the kernel keeps as two mappings (areas of different protection). Linux caps a process's
//! mappings at `vm.max_map_count`, 65,530 by default, so a little under 32,765 coroutines can
//! exist at once, whatever their stack size: the stacks are mapped with `MAP_NORESERVE` and
//! touched lazily, so memory runs out much later than mappings do. Past the limit `mmap`
//! fails with `ENOMEM`, which reads like "out of memory" and says nothing of the real cause.
//!
//! So before a run, [`preflight`] compares the coroutines the workload will hold at once
//! with the mappings left and refuses with a message that names the limit, how many fit and
//! the fix; and when a stack allocation fails in the middle of a run anyway (the estimate
//! missed, something else took the mappings, or `--no-preflight`), [`diagnose_failure`]
//! words the same advice around the OS error.

use std::fs;

/// Mappings a guarded stack costs: the stack and its guard page.
pub const MAPPINGS_PER_STACK: usize = 2;

/// Mappings left for everything else the run creates besides coroutine stacks: worker
/// thread stacks, allocator arenas, the progress and watchdog threads, libraries.
const RESERVED_MAPPINGS: usize = 1_000;

/// Where Linux publishes the limit.
const MAX_MAP_COUNT: &str = "/proc/sys/vm/max_map_count";

/// The limit and the mappings in use now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mappings {
    /// `vm.max_map_count`.
    pub limit: usize,
    /// Lines of `/proc/self/maps`: the mappings this process has now.
    pub in_use: usize,
}

impl Mappings {
    /// The current figures, or `None` where `/proc` does not tell them (not Linux).
    pub fn read() -> Option<Mappings> {
        let limit = fs::read_to_string(MAX_MAP_COUNT)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some(Mappings {
            limit,
            in_use: mapping_count()?,
        })
    }

    /// How many more guarded stacks fit, keeping [`RESERVED_MAPPINGS`] for the rest.
    pub fn stacks_that_fit(&self) -> usize {
        self.limit.saturating_sub(self.in_use + RESERVED_MAPPINGS) / MAPPINGS_PER_STACK
    }

    /// A `vm.max_map_count` that leaves room for `stacks` stacks: the mappings needed,
    /// rounded up to a multiple of 65,536 so that the advice reads as a round number.
    pub fn limit_for(&self, stacks: usize) -> usize {
        let needed = stacks * MAPPINGS_PER_STACK + self.in_use + RESERVED_MAPPINGS;
        needed.div_ceil(65_536) * 65_536
    }
}

/// The mappings this process has now (lines of `/proc/self/maps`).
pub fn mapping_count() -> Option<usize> {
    fs::read_to_string("/proc/self/maps")
        .ok()
        .map(|maps| maps.lines().count())
}

/// What a run asks for: coroutines at once, as a function of the per-context count.
#[derive(Clone, Copy)]
pub struct Demand<'a> {
    /// The workload's name, for the message.
    pub workload: &'a str,
    /// `stress.coroutines`.
    pub per_context: usize,
    /// Worker contexts.
    pub contexts: usize,
    /// The stack size, for the message.
    pub stack_size: usize,
    /// Coroutines alive at once for a given per-context count (and `contexts`).
    pub coroutines: &'a dyn Fn(usize) -> usize,
}

impl Demand<'_> {
    fn total(&self) -> usize {
        (self.coroutines)(self.per_context)
    }

    /// The largest per-context count whose coroutines fit in `stacks`, if any does.
    fn largest_fitting(&self, stacks: usize) -> Option<usize> {
        if (self.coroutines)(1) > stacks {
            return None;
        }
        // The count grows with the per-context number, so bisect on it.
        let (mut fits, mut too_many) = (1, self.per_context.max(2));
        while too_many - fits > 1 {
            let middle = fits + (too_many - fits) / 2;
            if (self.coroutines)(middle) <= stacks {
                fits = middle;
            } else {
                too_many = middle;
            }
        }
        Some(fits)
    }
}

/// Refuses a run whose coroutines would not fit under the mapping limit.
///
/// # Errors
///
/// The message to print (exit status 4): the limit, how many fit, and the fix.
pub fn preflight(demand: &Demand<'_>, mappings: &Mappings) -> Result<(), String> {
    let needed = demand.total();
    let fit = mappings.stacks_that_fit();
    if needed <= fit {
        return Ok(());
    }
    Err(format!(
        "too many coroutines for the kernel's limit on memory mappings: {workload} would hold \
         about {needed} at once ({per} per context on {contexts} contexts), {MAPPINGS_PER_STACK} \
         mappings each (stack + guard page)\n{advice}",
        workload = demand.workload,
        per = demand.per_context,
        contexts = demand.contexts,
        advice = advice(demand, mappings, needed),
    ))
}

/// The mapping-limit message for a stack allocation that failed with `error` in the middle
/// of a run; `at_start` are the figures from before the run.
///
/// The caller knows a stack allocation failed (the pool counted it). Stacks are mapped with
/// `MAP_NORESERVE`, so the usual reason is the mapping limit; by the time the run has wound
/// down the stacks are unmapped again, so the figures before the run are the ones to advise
/// from.
pub fn diagnose_failure(demand: &Demand<'_>, at_start: &Mappings, error: &str) -> String {
    format!(
        "a coroutine stack could not be mapped ({error}), most likely because the process \
         reached the kernel's limit on memory mappings: {workload} holds about {needed} \
         coroutines at once, {MAPPINGS_PER_STACK} mappings each\n{advice}",
        workload = demand.workload,
        needed = demand.total(),
        advice = advice(demand, at_start, demand.total()),
    )
}

fn advice(demand: &Demand<'_>, mappings: &Mappings, needed: usize) -> String {
    let fit = mappings.stacks_that_fit();
    let smaller = match demand.largest_fitting(fit) {
        Some(per_context) => format!("run with --coroutines {per_context} or fewer"),
        None => "run on fewer contexts (--threads)".to_owned(),
    };
    format!(
        "  vm.max_map_count is {limit} and {in_use} mappings are in use: about {fit} coroutines \
         fit, with {stack} stacks or any other size (mappings, not memory, are the limit)\n  \
         fix: raise the limit, e.g. `sudo sysctl -w vm.max_map_count={suggested}` (add \
         `vm.max_map_count = {suggested}` to /etc/sysctl.conf to keep it after a reboot), or \
         {smaller}",
        limit = mappings.limit,
        in_use = mappings.in_use,
        stack = format_size(demand.stack_size),
        suggested = mappings.limit_for(needed),
    )
}

fn format_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b}-byte"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand<'a>(per_context: usize, coroutines: &'a dyn Fn(usize) -> usize) -> Demand<'a> {
        Demand {
            workload: "mutex",
            per_context,
            contexts: 2,
            stack_size: 1 << 20,
            coroutines,
        }
    }

    const DEFAULT_LIMIT: Mappings = Mappings {
        limit: 65_530,
        in_use: 200,
    };

    #[test]
    fn the_default_limit_holds_about_32k_stacks() {
        assert_eq!(DEFAULT_LIMIT.stacks_that_fit(), 32_165);
        assert_eq!(DEFAULT_LIMIT.limit_for(40_000), 131_072);
    }

    #[test]
    fn a_run_that_fits_passes() {
        let two_contexts = |per: usize| per * 2;
        preflight(&demand(16_000, &two_contexts), &DEFAULT_LIMIT).unwrap();
    }

    #[test]
    fn a_run_past_the_limit_is_refused_with_the_fix() {
        let two_contexts = |per: usize| per * 2;
        let message = preflight(&demand(20_000, &two_contexts), &DEFAULT_LIMIT).unwrap_err();
        for needle in [
            "about 40000 at once (20000 per context on 2 contexts)",
            "vm.max_map_count is 65530",
            "about 32165 coroutines fit",
            "with 1 MiB stacks",
            "sudo sysctl -w vm.max_map_count=131072",
            "--coroutines 16082 or fewer",
        ] {
            assert!(message.contains(needle), "{needle:?} not in {message}");
        }
    }

    #[test]
    fn a_failure_in_the_run_names_the_limit_and_the_cause() {
        let two_contexts = |per: usize| per * 2;
        let message = diagnose_failure(
            &demand(20_000, &two_contexts),
            &DEFAULT_LIMIT,
            "os error 12",
        );
        for needle in [
            "(os error 12)",
            "vm.max_map_count is 65530",
            "--coroutines 16082",
        ] {
            assert!(message.contains(needle), "{needle:?} not in {message}");
        }
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(format_size(1 << 20), "1 MiB");
        assert_eq!(format_size(64 << 10), "64 KiB");
        assert_eq!(format_size(100_000), "100000-byte");
    }
}
