//! Renderers for a run's outcomes: a human table, one JSON document, `.hgrm` files, an
//! HTML page, and the `--explain` text.
//!
//! Each renderer is a pure function from outcomes to text, so tests can feed it synthetic
//! outcomes; [`render`] and [`write_files`] pick the renderers the settings ask for and do
//! the writing.

pub mod explain;
pub mod hgrm;
pub mod html;
pub mod human;
pub mod json;
mod units;

use std::fs;

pub use units::{format_count, format_nanos};

use crate::outcome::{Outcome, SoakSummary};
use crate::settings::{Format, Settings};

/// The percentiles every summary shows, as (label, quantile).
pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

/// The report for stdout, in the format and detail the settings ask for.
pub fn render(settings: &Settings, outcomes: &[Outcome], interrupted: bool) -> String {
    match (settings.format, settings.quiet) {
        (Format::Json, _) => json::render(settings, outcomes, interrupted),
        (Format::Human, false) => human::render(settings, outcomes, interrupted),
        (Format::Human, true) => human::render_summary(outcomes, interrupted),
    }
}

/// Writes the `.hgrm` files and the HTML page, where asked for.
///
/// # Errors
///
/// What went wrong, naming the flag and the path. The paths were checked before the run,
/// so this is rare (a disk that filled up, a directory removed meanwhile).
pub fn write_files(
    settings: &Settings,
    outcomes: &[Outcome],
    interrupted: bool,
) -> Result<(), String> {
    let outputs = &settings.outputs;
    if let Some(dir) = &outputs.hgrm_dir {
        hgrm::write_all(dir, outcomes)
            .map_err(|err| format!("--hgrm: cannot write histograms: {err}"))?;
    }
    if let Some(file) = &outputs.html_file {
        fs::write(file, html::render(settings, outcomes, interrupted))
            .map_err(|err| format!("--html: cannot write {}: {err}", file.display()))?;
    }
    Ok(())
}

/// Writes the soak's `.hgrm` files and HTML page, where asked for.
///
/// # Errors
///
/// As [`write_files`].
pub fn write_soak_files(
    settings: &Settings,
    outcomes: &[Outcome],
    soak: &SoakSummary,
) -> Result<(), String> {
    let outputs = &settings.outputs;
    if let Some(dir) = &outputs.hgrm_dir {
        hgrm::write_all(dir, outcomes)
            .map_err(|err| format!("--hgrm: cannot write histograms: {err}"))?;
    }
    if let Some(file) = &outputs.html_file {
        fs::write(file, html::render_soak(settings, outcomes, soak))
            .map_err(|err| format!("--html: cannot write {}: {err}", file.display()))?;
    }
    Ok(())
}
