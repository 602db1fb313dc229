//! Compile-time assertions of the auto traits of every public type of the
//! locking API (STYLE.md rule 5). A change in any of them fails to compile.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use coprimitives::stats::{Counters, LockKind, LockStats};
use coprimitives::{
    CoMutex, CoMutexGuard, CoQueue, CoRwLock, CoRwLockReadGuard, CoRwLockWriteGuard, LockableGuard,
    NoLock, SpinLock,
};

const fn send<T: ?Sized + Send>() {}
const fn sync<T: ?Sized + Sync>() {}

/// Fails to compile if `$t` implements `$tr` (the `static_assertions`
/// ambiguity trick: with an impl, `_` cannot be inferred).
macro_rules! assert_not_impl {
    ($t:ty: $tr:path) => {
        const _: fn() = || {
            trait AmbiguousIfImpl<A> {
                fn some_item() {}
            }
            impl<T: ?Sized> AmbiguousIfImpl<()> for T {}
            #[allow(dead_code)]
            struct Invalid;
            impl<T: ?Sized + $tr> AmbiguousIfImpl<Invalid> for T {}
            let _ = <$t as AmbiguousIfImpl<_>>::some_item;
        };
    };
}

const _: () = {
    // CoMutex<T>: Send + Sync when T: Send (like std::sync::Mutex).
    send::<CoMutex<u64>>();
    sync::<CoMutex<u64>>();
    send::<CoMutex<Cell<u8>>>();
    sync::<CoMutex<Cell<u8>>>(); // Send but !Sync contents: still Sync
    sync::<CoMutex<[u8]>>();
    // CoRwLock<T>: Send when T: Send, Sync when T: Send + Sync.
    send::<CoRwLock<u64>>();
    sync::<CoRwLock<u64>>();
    send::<CoRwLock<Cell<u8>>>();
    // CoQueue, SpinLock, NoLock: Send + Sync.
    send::<CoQueue>();
    sync::<CoQueue>();
    send::<SpinLock>();
    sync::<SpinLock>();
    send::<NoLock>();
    sync::<NoLock>();
    // Guards are Sync when T: Sync (they hand out &T).
    sync::<CoMutexGuard<'static, u64>>();
    sync::<CoRwLockReadGuard<'static, u64>>();
    sync::<CoRwLockWriteGuard<'static, u64>>();
    // Statistics snapshots are plain data.
    send::<LockStats>();
    sync::<LockStats>();
    send::<Counters>();
    send::<LockKind>();
};

// Not Sync/Send where that would be unsound.
assert_not_impl!(CoMutex<Rc<u8>>: Send);
assert_not_impl!(CoMutex<Rc<u8>>: Sync);
assert_not_impl!(CoRwLock<Cell<u8>>: Sync);
assert_not_impl!(CoRwLock<Rc<u8>>: Send);
// Guards stay with the coroutine that locked (QEMU: holder == self).
assert_not_impl!(CoMutexGuard<'static, u64>: Send);
assert_not_impl!(CoRwLockReadGuard<'static, u64>: Send);
assert_not_impl!(CoRwLockWriteGuard<'static, u64>: Send);
assert_not_impl!(LockableGuard<'static, SpinLock>: Send);
// A guard over !Sync contents must not be shared.
assert_not_impl!(CoMutexGuard<'static, RefCell<u8>>: Sync);
assert_not_impl!(CoRwLockReadGuard<'static, Cell<u8>>: Sync);

/// The assertions above are checked at compile time; this makes the file
/// show up in the test list.
#[test]
fn auto_traits_hold() {}
