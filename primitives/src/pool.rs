//! Coroutine pool controls (QEMU's `qemu_coroutine_inc_pool_size` /
//! `qemu_coroutine_dec_pool_size`), re-exported from
//! [`coscheduler::pool`] so that users of the primitives find them here too.
//!
//! | QEMU | here |
//! |---|---|
//! | `qemu_coroutine_inc_pool_size(n)` | [`inc_pool_size`] |
//! | `qemu_coroutine_dec_pool_size(n)` | [`dec_pool_size`] |
//! | (none) | [`stats`] → [`PoolStats`] |
//!
//! ```
//! let before = coprimitives::pool::stats().max_size;
//! coprimitives::pool::inc_pool_size(64);
//! assert_eq!(coprimitives::pool::stats().max_size, before + 64);
//! coprimitives::pool::dec_pool_size(64);
//! ```

pub use coscheduler::pool::{PoolStats, dec_pool_size, inc_pool_size, stats};
