//! `JoinHandle` as a `Future`, awaited from tokio tasks.

use coscheduler::{JoinError, Runtime};

#[test]
fn a_tokio_task_awaits_a_thousand_coroutines() {
    let rt = Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .build()
        .unwrap();
    let handles: Vec<_> = (0..1_000u64)
        .map(|i| {
            rt.spawn(move || {
                coscheduler::yield_now();
                (i, std::thread::current().name().map(str::to_owned))
            })
        })
        .collect();
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let results = tokio_rt.block_on(async move {
        tokio::spawn(async move {
            let mut out = Vec::with_capacity(handles.len());
            for h in handles {
                out.push(h.await.expect("the coroutine returned"));
            }
            out
        })
        .await
        .unwrap()
    });
    for (k, (i, worker)) in results.into_iter().enumerate() {
        assert_eq!(k as u64, i);
        let worker = worker.unwrap();
        assert!(worker.starts_with("coscheduler-worker-"), "{worker}");
    }
    rt.shutdown();
}

#[test]
fn a_coroutine_panic_arrives_as_a_join_error() {
    let rt = Runtime::builder()
        .threads(1)
        .pin_threads(false)
        .build()
        .unwrap();
    let h = rt.spawn(|| -> u8 { panic!("coroutine went wrong") });
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let e = tokio_rt.block_on(h).unwrap_err();
    assert!(e.is_panic());
    assert_eq!(e.panic_message(), Some("coroutine went wrong"));
    rt.shutdown();
}

#[test]
fn a_coroutine_cancelled_by_shutdown_arrives_as_cancelled() {
    let rt = Runtime::builder()
        .threads(1)
        .pin_threads(false)
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let blocker = rt.spawn(move || {
        // Keeps the worker busy so that the next spawn never starts.
        let _ = rx.recv();
    });
    let never = rt.spawn(|| 1);
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let waiter = std::thread::spawn(move || tokio_rt.block_on(never));
    drop(tx);
    rt.shutdown();
    let _ = blocker.join();
    // Either it ran before the shutdown, or it was cancelled: never lost.
    match waiter.join().unwrap() {
        Ok(v) => assert_eq!(v, 1),
        Err(e) => assert!(matches!(e, JoinError::Cancelled), "{e}"),
    }
}
