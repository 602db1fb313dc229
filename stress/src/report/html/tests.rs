//! Tests of the HTML report: the page, its charts and their axes.

use super::*;
use crate::outcome::new_histogram;

#[test]
fn the_percentile_axis_is_labelled_by_nines() {
    let labels: Vec<String> = (0..5).map(|x| percentile_label(f64::from(x))).collect();
    assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    assert_eq!(percentile_label(1.5), "");
    assert!((percentile_x(0.99) - 2.0).abs() < 1e-9);
    let decades: Vec<String> = (2..=7).map(|y| decade_label(f64::from(y))).collect();
    assert_eq!(
        decades,
        ["100 ns", "1 µs", "10 µs", "100 µs", "1 ms", "10 ms"]
    );
    assert_eq!(decade_label(2.5), "");
}

#[test]
fn a_curve_rises_and_ends_at_the_largest_value() {
    let mut histogram = new_histogram();
    for value in 1..=10_000u64 {
        histogram.record(value * 10).unwrap();
    }
    let points = percentile_points(&histogram);
    assert!(
        points
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1)
    );
    let last = points.last().unwrap();
    assert!(
        (last.0 - 4.0).abs() < 1e-9,
        "10,000 values reach 99.99%: {last:?}"
    );
    assert!(histogram.equivalent(last.1 as u64, 100_000));
}

/// The texts of `svg`'s `<text>` elements, in drawing order.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|element| {
            let inner = element.split_once('>')?.1;
            Some(inner.split_once("</text>")?.0.trim().to_owned())
        })
        .collect()
}

#[test]
fn each_throughput_axis_reads_in_one_number_format() {
    // 2.5 M ops/s for a second, sampled every 50 ms.
    let timeline: Vec<Sample> = (0..=20)
        .map(|i| Sample {
            elapsed_ns: i * 50_000_000,
            ops: i * 125_000,
        })
        .collect();
    let labels = texts(&throughput_chart(&timeline));
    let rates: Vec<&str> = labels
        .iter()
        .map(String::as_str)
        .filter(|l| l.ends_with('M') || l.ends_with('k'))
        .collect();
    assert_eq!(
        rates,
        ["0.0M", "0.5M", "1.0M", "1.5M", "2.0M", "2.5M"],
        "{labels:?}"
    );
    let seconds: Vec<&str> = labels
        .iter()
        .map(String::as_str)
        .filter(|l| l.parse::<f64>().is_ok())
        .collect();
    assert_eq!(
        seconds,
        ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"],
        "{labels:?}"
    );
}

#[test]
fn rates_are_per_interval() {
    let timeline = [
        Sample {
            elapsed_ns: 0,
            ops: 0,
        },
        Sample {
            elapsed_ns: 500_000_000,
            ops: 1_000,
        },
        Sample {
            elapsed_ns: 1_000_000_000,
            ops: 1_000,
        },
    ];
    assert_eq!(rates(&timeline), [(0.5, 2_000.0), (1.0, 0.0)]);
}
