//! A coroutine waiting in a socket call and woken by something else (a
//! stray `Coroutine::wake`) re-checks the socket and waits again: the call
//! ends with its own result, never with `ErrorKind::Interrupted`, and the
//! coroutine does not spin while it waits.

mod support_io;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coprimitives::co_sleep;
use coprimitives::io::{TcpListener, TcpStream, UnixStream};
use coscheduler::{AioContext, Coroutine};
use support_io::{runtime, watchdog};

/// Where a coroutine publishes its own handle for the test to wake.
type Slot = Arc<Mutex<Option<Coroutine>>>;

fn publish(slot: &Slot) {
    *slot.lock().unwrap() = coscheduler::current();
}

/// Waits until the coroutine in `slot` has published itself and suspended,
/// then wakes it `times` times, letting it run (and wait again) in between.
/// Returns the context's coroutine switches during the last idle stretch.
fn stray_wakes(slot: &Slot, times: usize) -> u64 {
    let co = loop {
        if let Some(co) = slot.lock().unwrap().clone() {
            break co;
        }
        coscheduler::yield_now();
    };
    co_sleep(Duration::from_millis(5));
    for _ in 0..times {
        assert!(!co.is_finished(), "the waiter ended before its data came");
        co.wake();
        co_sleep(Duration::from_millis(2));
    }
    let before = AioContext::current().metrics().switches;
    co_sleep(Duration::from_millis(30));
    assert!(!co.is_finished(), "the waiter ended before its data came");
    AioContext::current().metrics().switches - before
}

/// Switches a 30 ms sleep of the waker may cost with the waiter suspended
/// (its own timer and a few loop turns); a waiter spinning on `Interrupted`
/// would add thousands.
const IDLE_SWITCHES: u64 = 20;

#[test]
fn a_read_absorbs_stray_wakes() {
    let _w = watchdog("a_read_absorbs_stray_wakes", Duration::from_secs(20));
    let rt = runtime(1);
    let (got, idle) = rt.block_on(|| {
        let (mut a, b) = UnixStream::pair().unwrap();
        let slot = Slot::default();
        let s2 = slot.clone();
        let reader = AioContext::current().spawn(move || {
            publish(&s2);
            let mut buf = [0u8; 16];
            let n = (&b).read(&mut buf).expect("read");
            buf[..n].to_vec()
        });
        let idle = stray_wakes(&slot, 5);
        a.write_all(b"after").unwrap();
        (reader.join().unwrap(), idle)
    });
    assert_eq!(got, b"after");
    assert!(idle <= IDLE_SWITCHES, "{idle} switches while idle");
    rt.shutdown();
}

#[test]
fn an_accept_absorbs_stray_wakes() {
    let _w = watchdog("an_accept_absorbs_stray_wakes", Duration::from_secs(20));
    let rt = runtime(1);
    let idle = rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let slot = Slot::default();
        let s2 = slot.clone();
        let acceptor = AioContext::current().spawn(move || {
            publish(&s2);
            let (s, _) = listener.accept().expect("accept");
            s.peer_addr().unwrap()
        });
        let idle = stray_wakes(&slot, 3);
        let c = TcpStream::connect(addr).unwrap();
        assert_eq!(acceptor.join().unwrap(), c.local_addr().unwrap());
        idle
    });
    assert!(idle <= IDLE_SWITCHES, "{idle} switches while idle");
    rt.shutdown();
}

#[test]
fn a_write_to_a_full_socket_absorbs_stray_wakes() {
    let _w = watchdog(
        "a_write_to_a_full_socket_absorbs_stray_wakes",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (written, drained, idle) = rt.block_on(|| {
        let (a, b) = UnixStream::pair().unwrap();
        let slot = Slot::default();
        let s2 = slot.clone();
        let writer = AioContext::current().spawn(move || {
            // Fill the socket buffer first (plain writes until one is short
            // or would block), then make the write that has to wait.
            let chunk = vec![7u8; 64 * 1024];
            let mut total = 0;
            loop {
                let n = (&a).write(&chunk).expect("write");
                total += n;
                if n < chunk.len() {
                    break;
                }
            }
            publish(&s2);
            total += (&a).write(&chunk).expect("write after the stray wakes");
            total
        });
        let idle = stray_wakes(&slot, 4);
        let mut drained = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while !writer.is_finished() {
            drained += (&b).read(&mut buf).unwrap();
            coscheduler::yield_now();
        }
        let written = writer.join().unwrap();
        b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        while drained < written {
            drained += (&b).read(&mut buf).unwrap();
        }
        (written, drained, idle)
    });
    assert_eq!(written, drained);
    assert!(idle <= IDLE_SWITCHES, "{idle} switches while idle");
    rt.shutdown();
}
