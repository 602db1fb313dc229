//! `--html FILE` writes one self-contained page: every histogram has its percentile chart,
//! throughput over time and the per-context table are there, nothing is fetched from
//! elsewhere, and the markup is balanced. Where Chromium is installed, the page is also
//! rendered to a screenshot by `stress/scripts/render-html.sh`.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use common::{code, costress, run, scratch};

/// Elements that have no end tag.
const VOID: [&str; 4] = ["meta", "br", "img", "input"];

/// Checks that every element is closed in order, and returns how often each was opened.
fn balanced_elements(html: &str) -> std::collections::HashMap<String, usize> {
    let mut open: Vec<String> = Vec::new();
    let mut counts = std::collections::HashMap::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let end = rest.find('>').expect("an unterminated tag");
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') || tag.starts_with('?') {
            continue;
        }
        let self_closing = tag.ends_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(closing) = tag.strip_prefix('/') {
            let _ = closing;
            let top = open
                .pop()
                .unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(top, name, "</{name}> closes <{top}>");
        } else {
            *counts.entry(name.clone()).or_insert(0) += 1;
            if !self_closing && !VOID.contains(&name.as_str()) {
                // The style block is text, not markup.
                if name == "style" {
                    let close = rest.find("</style>").expect("</style>");
                    rest = &rest[close + "</style>".len()..];
                    continue;
                }
                open.push(name);
            }
        }
    }
    assert!(open.is_empty(), "unclosed elements: {open:?}");
    counts
}

#[test]
fn the_page_is_self_contained_and_charts_every_histogram() {
    let dir = scratch("html-report");
    let page = dir.join("report.html");
    let (output, stdout, stderr) = run(costress(&dir).args([
        "mixed",
        "--duration",
        "500ms",
        "--threads",
        "2",
        "--pin-threads",
        "false",
        "--coroutines",
        "4",
        "--format",
        "json",
        "--html",
        page.to_str().unwrap(),
    ]));
    assert_eq!(code(&output), 0, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let histograms: Vec<&str> = doc["workloads"][0]["histograms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["count"].as_u64().unwrap() > 0)
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    let html = fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    let counts = balanced_elements(&html);
    // One chart per non-empty histogram, and the throughput chart.
    assert_eq!(counts["svg"], histograms.len() + 1, "{counts:?}");
    for name in &histograms {
        let escaped = name.replace('&', "&amp;").replace('<', "&lt;");
        assert!(
            html.contains(&format!("{escaped} (")),
            "no chart titled {name}"
        );
    }
    assert!(html.contains("throughput over time"));
    let texts = svg_texts(&html);
    for axis in [
        "0%",
        "90%",
        "99%",
        "percentile",
        "latency (log scale)",
        "ops/s",
    ] {
        assert!(
            texts.iter().any(|t| t == axis),
            "no axis label {axis}: {texts:?}"
        );
    }
    assert!(html.contains("<table class=\"contexts\">"));
    assert!(html.contains("<table class=\"locks\">"));
    // Self-contained: no script, no link, no image or style sheet from elsewhere. SVG's
    // namespace is an identifier, not a download.
    for forbidden in ["<script", "<link", "src=", "url(", "@import"] {
        assert!(
            !html.contains(forbidden),
            "the page refers out: {forbidden}"
        );
    }
    let without_namespace = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(!without_namespace.contains("http://") && !without_namespace.contains("https://"));
    screenshot(&page);
}

/// The text of every SVG `<text>` element, trimmed.
fn svg_texts(html: &str) -> Vec<String> {
    html.split("<text")
        .skip(1)
        .filter_map(|rest| {
            let content = &rest[rest.find('>')? + 1..];
            Some(content[..content.find("</text>")?].trim().to_owned())
        })
        .collect()
}

/// Renders `page` with headless Chromium where it is installed, and checks a picture came
/// out; elsewhere says why it was skipped.
fn screenshot(page: &Path) {
    let has_chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .any(|name| {
            Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .is_ok_and(|out| out.status.success())
        });
    if !has_chromium {
        eprintln!("screenshot skipped: no Chromium (apt-get install -y chromium)");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/render-html.sh");
    let shot = page.with_extension("png");
    let output = Command::new("bash")
        .arg(script)
        .arg(page)
        .arg(&shot)
        .output()
        .expect("run render-html.sh");
    assert!(
        output.status.success(),
        "render-html.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let png = fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000, "a blank page? {} bytes", png.len());
    eprintln!("screenshot: {}", shot.display());
}
