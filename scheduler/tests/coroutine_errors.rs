//! Bad paths of the coroutine core: panics, re-entry, misuse, dropping a
//! suspended coroutine.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use coscheduler::{AioContext, Coroutine, current, suspend};
use testkit::{CountDrop, panic_message};

#[test]
fn panic_inside_resumes_in_the_enterer() {
    let co = Coroutine::new(|| panic!("boom in a coroutine"));
    let err = catch_unwind(AssertUnwindSafe(|| co.enter())).unwrap_err();
    assert_eq!(panic_message(err), "boom in a coroutine");
    assert!(co.is_finished());
    // The thread is still healthy: new coroutines run and reuse stacks.
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    Coroutine::new(move || {
        r.fetch_add(1, SeqCst);
    })
    .enter();
    assert_eq!(ran.load(SeqCst), 1);
}

#[test]
fn panic_after_a_suspension_propagates_to_the_second_enter() {
    let co = Coroutine::new(|| {
        suspend();
        panic!("late");
    });
    co.enter();
    let err = catch_unwind(AssertUnwindSafe(|| co.enter())).unwrap_err();
    assert_eq!(panic_message(err), "late");
}

#[test]
fn wakeups_queued_by_a_panicking_coroutine_still_run() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let sleeper = Coroutine::new(move || {
        suspend();
        r.fetch_add(1, SeqCst);
    });
    sleeper.enter();
    let s = sleeper.clone();
    let waker = Coroutine::new(move || {
        s.wake();
        panic!("after waking");
    });
    let err = catch_unwind(AssertUnwindSafe(|| waker.enter())).unwrap_err();
    assert_eq!(panic_message(err), "after waking");
    assert_eq!(
        ran.load(SeqCst),
        1,
        "the woken coroutine ran before the panic surfaced"
    );
    assert!(sleeper.is_finished());
}

#[test]
fn reentering_a_running_coroutine_panics() {
    let seen = Arc::new(std::sync::Mutex::new(String::new()));
    let s = seen.clone();
    let co = Coroutine::new(move || {
        let me = current().unwrap();
        let err = catch_unwind(AssertUnwindSafe(|| me.enter())).unwrap_err();
        *s.lock().unwrap() = panic_message(err);
    });
    co.enter();
    assert!(
        seen.lock()
            .unwrap()
            .contains("coroutine re-entered recursively"),
        "{}",
        seen.lock().unwrap()
    );
}

#[test]
fn entering_a_finished_coroutine_panics() {
    let co = Coroutine::new(|| {});
    co.enter();
    let err = catch_unwind(AssertUnwindSafe(|| co.enter())).unwrap_err();
    assert!(panic_message(err).contains("after it finished"));
}

#[test]
fn suspend_outside_a_coroutine_panics() {
    let err = catch_unwind(suspend).unwrap_err();
    assert!(panic_message(err).contains("outside a coroutine"));
}

#[test]
fn a_second_wake_before_the_coroutine_ran_panics_naming_the_first() {
    let co = Coroutine::new(suspend);
    co.enter();
    let c = co.clone();
    let outcome = Arc::new(std::sync::Mutex::new(String::new()));
    let o = outcome.clone();
    Coroutine::new(move || {
        c.wake(); // queued: runs after this coroutine suspends
        let err = catch_unwind(AssertUnwindSafe(|| c.wake())).unwrap_err();
        *o.lock().unwrap() = panic_message(err);
    })
    .enter();
    let msg = outcome.lock().unwrap().clone();
    assert!(
        msg.contains("already scheduled at") && msg.contains("coroutine_errors.rs"),
        "{msg}"
    );
    assert!(co.is_finished(), "the first wake still ran it");
}

#[test]
fn entering_on_a_thread_that_is_not_home_panics() {
    let co = Coroutine::new(suspend);
    co.enter();
    let c = co.clone();
    let msg = std::thread::spawn(move || {
        let err = catch_unwind(AssertUnwindSafe(|| c.enter())).unwrap_err();
        panic_message(err)
    })
    .join()
    .unwrap();
    assert!(
        msg.contains("is homed on context") && msg.contains("cannot be entered"),
        "{msg}"
    );
    co.enter();
    assert!(co.is_finished());
}

#[test]
fn dropping_the_last_handle_unwinds_a_suspended_coroutine_on_its_home_thread() {
    let drops = Arc::new(AtomicUsize::new(0));
    let home = std::thread::current().id();
    let dropped_on = Arc::new(std::sync::Mutex::new(None));
    let (d, on) = (drops.clone(), dropped_on.clone());
    let co = Coroutine::new(move || {
        let _guard = CountDrop(d);
        struct Where(Arc<std::sync::Mutex<Option<std::thread::ThreadId>>>);
        impl Drop for Where {
            fn drop(&mut self) {
                *self.0.lock().unwrap() = Some(std::thread::current().id());
            }
        }
        let _w = Where(on);
        suspend();
        unreachable!("nobody can wake this coroutine");
    });
    co.enter();
    assert_eq!(drops.load(SeqCst), 0);
    let before = coscheduler::pool::stats();
    drop(co);
    assert_eq!(
        drops.load(SeqCst),
        1,
        "destructors ran when the last handle went"
    );
    assert_eq!(*dropped_on.lock().unwrap(), Some(home));
    let after = coscheduler::pool::stats();
    assert!(
        after.pooled > before.pooled || after.freed > before.freed,
        "the stack went back"
    );
}

#[test]
fn dropping_the_last_handle_on_another_thread_unwinds_at_home() {
    let drops = Arc::new(AtomicUsize::new(0));
    let home = std::thread::current().id();
    let dropped_on = Arc::new(std::sync::Mutex::new(None));
    let (d, on) = (drops.clone(), dropped_on.clone());
    let co = Coroutine::new(move || {
        let _guard = CountDrop(d);
        suspend();
        *on.lock().unwrap() = Some(std::thread::current().id());
    });
    co.enter();
    std::thread::spawn(move || drop(co)).join().unwrap();
    assert_eq!(drops.load(SeqCst), 0, "nothing runs on the dropping thread");
    // The cancellation is handed to the home context: poll it.
    let ctx = AioContext::current();
    let start = std::time::Instant::now();
    while drops.load(SeqCst) == 0 && start.elapsed().as_secs() < 10 {
        ctx.poll(false);
    }
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(
        *dropped_on.lock().unwrap(),
        None,
        "the body did not continue past its suspension"
    );
    let _ = home;
}

#[test]
fn a_coroutine_may_drop_the_last_handle_of_another() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let victim = Coroutine::new(move || {
        let _g = CountDrop(d);
        suspend();
    });
    victim.enter();
    let dr = drops.clone();
    let killer = Coroutine::new(move || {
        drop(victim);
        // The unwinding runs after this coroutine suspends or returns.
        assert_eq!(dr.load(SeqCst), 0);
    });
    killer.enter();
    assert_eq!(drops.load(SeqCst), 1);
}

#[test]
fn names_and_ids() {
    let a = Coroutine::builder().name("alpha").create(|| {}).unwrap();
    let b = Coroutine::new(|| {});
    assert_eq!(a.name(), Some("alpha"));
    assert_eq!(b.name(), None);
    assert_ne!(a.id(), b.id());
    assert!(a.context().is_none(), "no context before the first entry");
    a.enter();
    assert_eq!(a.context(), Some(AioContext::current()));
    assert!(format!("{a:?}").contains("alpha"));
}
