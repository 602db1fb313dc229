//! Renders a comparison [`Report`] as Markdown (for people and CI logs) or JSON (for tools).

use std::fmt::Write;

use crate::compare::{Metric, Report, Row, SPREAD_FACTOR, Verdict};
use crate::schema::{Better, Tier};

/// The report as pretty JSON.
pub fn json(report: &Report) -> String {
    // Serialising plain structs of strings and finite-or-not floats cannot fail: serde_json
    // writes non-finite floats as null.
    serde_json::to_string_pretty(report).expect("a Report always serialises")
}

/// The report as a Markdown section: header, one table row per benchmark, then the
/// outcome per tier, every failing row explained in a sentence, and the notes.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let tier = report.tier.map_or("all tiers", Tier::as_str);
    // Writing to a String cannot fail; `let _` keeps the many `write!`s below readable.
    let _ = writeln!(out, "## cobench compare ({tier})\n");
    let _ = writeln!(out, "- baseline: {}", side(&report.baseline));
    let _ = writeln!(out, "- now: {}", side(&report.now));
    let _ = writeln!(
        out,
        "- threshold: {} (deterministic: instruction counts); time tier: the ratio to the \
         same-run reference, max({0}, {SPREAD_FACTOR} × combined spread); tails p99/p99.9 \
         get twice the row's and {}\n",
        percent(report.threshold),
        if report.tails_gate {
            "are judged (same machine)"
        } else {
            "are not judged (different machines)"
        },
    );
    out.push_str(
        "| benchmark | tier | load | judged | baseline | now | change | threshold | verdict \
         | tails |\n",
    );
    out.push_str("|---|---|---|---|---:|---:|---:|---:|---|---|\n");
    if report.rows.is_empty() {
        out.push_str("| (nothing to compare) | | | | | | | | | |\n");
    }
    for row in &report.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            row.tier.as_str(),
            row.load.as_deref().unwrap_or("—"),
            unit(row),
            row.baseline.map_or("—".into(), number),
            row.now.map_or("—".into(), number),
            row.change.map_or("—".into(), signed_percent),
            percent(row.threshold),
            verdict(row),
            tails(row),
        );
    }
    out.push('\n');
    out.push_str(&outcome(report));
    if !report.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for note in &report.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

fn side(s: &crate::compare::Side) -> String {
    let quick = if s.quick { ", quick" } else { "" };
    format!(
        "`{}` ({}, {} build{quick}, {}, {})",
        short(&s.commit),
        s.date,
        s.profile,
        s.cpu_model,
        s.rustc
    )
}

fn unit(row: &Row) -> String {
    match (&row.metric, &row.reference) {
        (Metric::Ratio, Some(r)) => format!("{} ÷ {r}", row.unit),
        _ => row.unit.clone(),
    }
}

fn verdict(row: &Row) -> String {
    let word = row.verdict.as_str();
    let mut text = if row.verdict.fails() && row.gates {
        format!("**{word}**")
    } else if row.gates {
        word.to_owned()
    } else {
        format!("{word} (info)")
    };
    if let Some(reason) = &row.reason {
        let _ = write!(text, ": {reason}");
    }
    text
}

fn tails(row: &Row) -> String {
    row.tails
        .iter()
        .map(|t| {
            let mark = if t.verdict == Verdict::Regressed && row.gates {
                " **regressed**"
            } else if t.verdict == Verdict::Regressed {
                " regressed"
            } else {
                ""
            };
            format!("{} {}{mark}", t.key, signed_percent(t.change))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line per tier judged, each failing row in a sentence, then the overall result.
fn outcome(report: &Report) -> String {
    let mut out = String::new();
    let mut failed_tiers = Vec::new();
    for tier in [Tier::Deterministic, Tier::Time] {
        let rows: Vec<&Row> = report.rows.iter().filter(|r| r.tier == tier).collect();
        if rows.is_empty() {
            continue;
        }
        let failing: Vec<&&Row> = rows
            .iter()
            .filter(|r| r.gates && r.verdict.fails())
            .collect();
        let status = if failing.is_empty() { "pass" } else { "FAIL" };
        let _ = writeln!(out, "- {} tier: {status} ({})", tier.as_str(), tally(&rows));
        if !failing.is_empty() {
            failed_tiers.push(tier.as_str());
        }
        for row in failing {
            let _ = writeln!(out, "  - {}", explain(row));
        }
    }
    out.push('\n');
    if failed_tiers.is_empty() {
        out.push_str("**Result: pass**, no regression beyond the threshold.\n");
    } else {
        let _ = writeln!(
            out,
            "**Result: FAIL** in the {} tier{}: see the rows named above.",
            failed_tiers.join(" and the "),
            if failed_tiers.len() > 1 { "s" } else { "" }
        );
    }
    out
}

/// "12 rows: 2 improved, 9 same, 1 regressed; 3 information only", naming only the
/// verdicts that occur.
fn tally(rows: &[&Row]) -> String {
    let gating: Vec<&&Row> = rows.iter().filter(|r| r.gates).collect();
    let verdicts = [
        Verdict::Improved,
        Verdict::Same,
        Verdict::New,
        Verdict::Regressed,
        Verdict::Missing,
        Verdict::Incomparable,
    ];
    let counts: Vec<String> = verdicts
        .iter()
        .filter_map(|&v| {
            let n = gating.iter().filter(|r| r.verdict == v).count();
            (n > 0).then(|| format!("{n} {}", v.as_str()))
        })
        .collect();
    let mut text = format!("{} rows judged", gating.len());
    if !counts.is_empty() {
        let _ = write!(text, ": {}", counts.join(", "));
    }
    let info = rows.len() - gating.len();
    if info > 0 {
        let _ = write!(text, "; {info} information only");
    }
    text
}

/// A failing row in one sentence: which row, which figure went from what to what, and
/// why that fails.
pub(crate) fn explain(row: &Row) -> String {
    let load = row
        .load
        .as_deref()
        .map_or_else(String::new, |l| format!(", {l}"));
    let head = format!("`{}` ({}{load})", row.name, row.tier.as_str());
    let figure = match (&row.metric, &row.reference) {
        (Metric::Ratio, Some(r)) => format!("ratio to {r}"),
        _ => row.unit.clone(),
    };
    match (row.verdict, row.baseline, row.now, row.change) {
        (Verdict::Regressed, Some(b), Some(n), Some(change)) => {
            let tail = row
                .reason
                .as_deref()
                .map_or_else(String::new, |r| format!("; {r}"));
            let better = match row.better {
                Better::Lower => "lower is better",
                Better::Higher => "higher is better",
            };
            format!(
                "{head} regressed: {figure} {} → {} ({}; {better}; threshold {}){tail}",
                number(b),
                number(n),
                signed_percent(change),
                percent(row.threshold)
            )
        }
        (verdict, ..) => {
            let reason = row.reason.as_deref().unwrap_or("");
            format!("{head} {}: {reason}", verdict.as_str())
        }
    }
}

/// A figure with about four significant digits and an SI suffix for large rates.
pub(crate) fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.3} G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.3} M", v / 1e6)
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

fn signed_percent(fraction: f64) -> String {
    format!("{:+.1}%", fraction * 100.0)
}

/// The first 10 characters of a commit id, keeping a `-dirty` suffix.
pub(crate) fn short(commit: &str) -> String {
    let (id, suffix) = commit
        .split_once('-')
        .map_or((commit, ""), |(id, _)| (id, "-dirty"));
    let id: String = id.chars().take(10).collect();
    format!("{id}{suffix}")
}
