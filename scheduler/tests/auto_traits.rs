//! The thread-safety of the public types (API.md): checked at compile time.

use coscheduler::blocking::BlockingMetrics;
use coscheduler::fd::Registration;
use coscheduler::{
    AioContext, Builder, Config, Coroutine, Deadlock, DeadlockMember, Handle, JoinError,
    JoinHandle, Runtime, StallMetrics, StallReport,
};

fn send<T: Send>() {}
fn sync<T: Sync>() {}

#[test]
fn public_types_have_the_documented_auto_traits() {
    send::<Coroutine>();
    sync::<Coroutine>();
    send::<AioContext>();
    sync::<AioContext>();
    send::<Runtime>();
    sync::<Runtime>();
    send::<Handle>();
    sync::<Handle>();
    send::<JoinHandle<u64>>();
    send::<JoinError>();
    send::<Builder>();
    send::<Config>();
    send::<Registration>();
    send::<StallReport>();
    sync::<StallReport>();
    send::<StallMetrics>();
    send::<BlockingMetrics>();
    send::<Deadlock>();
    sync::<Deadlock>();
    send::<DeadlockMember>();
}
