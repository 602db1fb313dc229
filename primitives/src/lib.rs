//! Coroutine synchronization and I/O for [`coscheduler`]: QEMU's CoMutex,
//! CoQueue, CoRwlock, sleep, timeout, lockables and coroutine sockets, in
//! Rust idioms.
//!
//! Every primitive here suspends the calling *coroutine*, never the thread:
//! while one coroutine waits for a lock, a timer or a socket, its thread runs
//! others.

// Module declarations and re-exports are added below by each module's
// author, one line each.
