//! The repository's config.toml is the built-in defaults, with every key documented.

use costress::settings::{FileConfig, StressConfig};

const CONFIG: &str = include_str!("../../config.toml");

#[test]
fn config_toml_is_the_built_in_defaults() {
    let file = FileConfig::parse(CONFIG).unwrap_or_else(|err| panic!("config.toml: {err}"));
    assert_eq!(file, FileConfig::default());
    let runtime = coscheduler::Config::from_toml_str(CONFIG).unwrap().runtime;
    assert_eq!(runtime, coscheduler::RuntimeConfig::default());
}

#[test]
fn every_key_is_documented() {
    let lines: Vec<&str> = CONFIG.lines().collect();
    let keys = coscheduler::RuntimeConfig::KEYS
        .iter()
        .copied()
        .chain(StressConfig::keys());
    for key in keys {
        let at = lines
            .iter()
            .position(|line| line.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("config.toml does not set {key}"));
        let comment: Vec<&str> = lines[..at]
            .iter()
            .rev()
            .take_while(|line| line.starts_with('#'))
            .copied()
            .collect();
        assert!(comment.len() >= 2, "{key} has no comment above it");
        let env = format!("COSTRESS_{}", key.to_uppercase());
        assert!(
            comment.iter().any(|line| line.contains(&env)),
            "{key}'s comment does not name {env}"
        );
    }
}
