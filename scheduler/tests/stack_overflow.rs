//! A coroutine that overflows its stack is reported by name, then the process
//! aborts: never a bare segfault. Runs the overflow in a child process (the
//! test binary re-executed with an environment variable).

use std::os::unix::process::ExitStatusExt;

use coscheduler::Coroutine;

const CHILD_ENV: &str = "COSCHEDULER_OVERFLOW_CHILD";

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = [depth; 64];
    std::hint::black_box(&frame);
    if depth == u64::MAX {
        0
    } else {
        recurse(depth + 1) + std::hint::black_box(frame[3])
    }
}

fn child() {
    let co = Coroutine::builder()
        .name("deep-recursion")
        .stack_size(64 * 1024)
        .create(|| {
            recurse(0);
        })
        .unwrap();
    eprintln!("child: coroutine id {}", co.id());
    co.enter();
    unreachable!("the overflow must abort the process");
}

#[test]
fn overflow_is_reported_with_the_coroutine_name_then_aborts() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    let out = testkit::run_test_in_child(
        "overflow_is_reported_with_the_coroutine_name_then_aborts",
        CHILD_ENV,
        "1",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let id: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("child: coroutine id "))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("child did not report its coroutine id; stderr:\n{stderr}"));
    let expected = format!("coroutine {id} (deep-recursion) overflowed its 64 KiB stack");
    assert!(
        stderr.contains(&expected),
        "missing {expected:?} in stderr:\n{stderr}"
    );
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "status {:?}",
        out.status
    );
}

#[test]
fn painted_stack_reports_its_high_water_mark() {
    let shallow = Coroutine::builder()
        .paint_stack()
        .stack_size(256 * 1024)
        .create(|| {
            std::hint::black_box([0u8; 1024]);
        });
    let deep = Coroutine::builder()
        .paint_stack()
        .stack_size(256 * 1024)
        .create(|| {
            std::hint::black_box([0u8; 96 * 1024]);
        });
    let (shallow, deep) = (shallow.unwrap(), deep.unwrap());
    assert_eq!(shallow.stack_high_water_mark(), None, "known once finished");
    shallow.enter();
    deep.enter();
    let s = shallow.stack_high_water_mark().unwrap();
    let d = deep.stack_high_water_mark().unwrap();
    assert!((1024..32 * 1024).contains(&s), "shallow used {s} bytes");
    assert!((96 * 1024..200 * 1024).contains(&d), "deep used {d} bytes");
    let plain = Coroutine::new(|| {});
    plain.enter();
    assert_eq!(plain.stack_high_water_mark(), None);
}
