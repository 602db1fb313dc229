//! scratch
use std::time::{Duration, Instant};
fn main() {
    let rt = coscheduler::Runtime::builder().threads(2).build().unwrap();
    coscheduler::pool::inc_pool_size(10_000);
    let mode = std::env::args().nth(1).unwrap_or_default();
    for it in 0..30 {
        let n = 10_000;
        let t = Instant::now();
        let hs: Vec<_> = (0..n).map(|_| { let m = mode.clone(); rt.spawn(move || { if m == "sleep" { coprimitives::co_sleep(Duration::from_millis(1)); } else if m == "yield" { coscheduler::yield_now(); } })}).collect();
        let spawned = t.elapsed();
        for h in hs { h.join().unwrap(); }
        if it % 10 == 9 { println!("{mode}: spawn {spawned:?} total {:?}", t.elapsed()); }
    }
}
