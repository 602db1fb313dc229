//! Renderers for a run's outcomes: a human table, one JSON document, `.hgrm` files.
//!
//! Each renderer is a pure function from outcomes to text, so tests can feed it synthetic
//! outcomes; writing to stdout or to files is left to the caller.

pub mod hgrm;
pub mod human;
pub mod json;
mod units;

pub use units::{format_count, format_nanos};

/// The percentiles every summary shows, as (label, quantile).
pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];
