//! Tests of the `[runtime]` table: parsing, per-key errors, ranges and round trips.

use super::*;

fn parse(text: &str) -> Result<RuntimeConfig, ConfigError> {
    Config::from_toml_str(text).map(|config| config.runtime)
}

fn error(text: &str) -> ConfigError {
    parse(text).expect_err("the configuration should be refused")
}

#[test]
fn durations_are_written_in_one_unit_and_read_back_unchanged() {
    let cases = [
        (Duration::ZERO, "0s"),
        (Duration::from_nanos(1), "1ns"),
        (Duration::from_nanos(32_768), "32.768us"),
        (Duration::from_nanos(999), "999ns"),
        (Duration::from_nanos(1_000_001), "1000.001us"),
        (Duration::from_micros(50), "50us"),
        (Duration::from_micros(1_500), "1.5ms"),
        (Duration::from_millis(100), "100ms"),
        (Duration::from_millis(1_250), "1.25s"),
        (Duration::from_secs(5), "5s"),
        (Duration::from_secs(90), "90s"),
        (Duration::from_secs(120), "2m"),
        (Duration::from_secs(7_200), "2h"),
        (Duration::from_secs(86_400), "24h"),
    ];
    for (duration, text) in cases {
        assert_eq!(format_duration(duration), text);
        assert_eq!(
            humantime_serde::re::humantime::parse_duration(text),
            Ok(duration),
            "{text} reads back"
        );
    }
}

#[test]
fn a_written_configuration_spells_durations_in_one_unit() {
    let text = toml::to_string(&RuntimeConfig::default()).unwrap();
    assert!(text.contains(r#"poll_max = "32.768us""#), "{text}");
    assert_eq!(
        parse(&format!("[runtime]\n{text}")).unwrap(),
        RuntimeConfig::default()
    );
}

#[test]
fn defaults() {
    let config = RuntimeConfig::default();
    assert_eq!(config.threads(), None);
    assert!(!config.pin_threads());
    assert_eq!(config.stack_size_bytes(), 1 << 20);
    assert_eq!(config.pool_max(), 128);
    assert_eq!(config.poll_max(), Duration::from_nanos(32_768));
    assert_eq!(config.thread_name(), "coscheduler-worker");
    assert_eq!(config.stall_threshold(), Duration::from_millis(100));
    assert_eq!(config.blocking_threads(), 64);
    assert_eq!(config.blocking_queue(), 256);
    assert_eq!(config.shutdown_timeout(), Duration::from_secs(5));
    assert_eq!(parse("").unwrap(), config);
    assert_eq!(parse("[runtime]").unwrap(), config);
    assert_eq!(Config::default().runtime, config);
}

#[test]
fn every_key_parses() {
    let config = parse(
        r#"
        [runtime]
        threads = 3
        pin_threads = true
        stack_size = "64KiB"
        pool_max = 0
        poll_max = "50us"
        thread_name = "io"
        stall_threshold = "0s"
        blocking_threads = 4
        blocking_queue = 0
        shutdown_timeout = "250ms"
        "#,
    )
    .unwrap();
    assert_eq!(config.threads(), NonZeroUsize::new(3));
    assert!(config.pin_threads());
    assert_eq!(config.stack_size_bytes(), 64 * 1024);
    assert_eq!(config.pool_max(), 0);
    assert_eq!(config.poll_max(), Duration::from_micros(50));
    assert_eq!(config.thread_name(), "io");
    assert_eq!(config.stall_threshold(), Duration::ZERO);
    assert_eq!(config.blocking_threads(), 4);
    assert_eq!(config.blocking_queue(), 0);
    assert_eq!(config.shutdown_timeout(), Duration::from_millis(250));
    let refused = error("[runtime]\nshutdown_timeout = \"2h\"").to_string();
    assert!(refused.contains("runtime.shutdown_timeout"), "{refused}");
    let refused = error("[runtime]\nblocking_threads = 0").to_string();
    assert!(
        refused.contains("runtime.blocking_threads = 0"),
        "{refused}"
    );
    let refused = error("[runtime]\nstall_threshold = \"2h\"").to_string();
    assert!(refused.contains("runtime.stall_threshold"), "{refused}");
}

#[test]
fn threads_auto_spellings() {
    for text in ["threads = 0", r#"threads = "auto""#, r#"threads = "AUTO""#] {
        let config = parse(&format!("[runtime]\n{text}")).unwrap();
        assert_eq!(config.threads(), None, "{text}");
    }
    let config = parse("[runtime]\nthreads = \"8\"").unwrap();
    assert_eq!(config.threads(), NonZeroUsize::new(8));
}

#[test]
fn sizes_accept_integers_and_units() {
    let config = parse("[runtime]\nstack_size = 32768").unwrap();
    assert_eq!(config.stack_size_bytes(), 32 * 1024);
    let config = parse("[runtime]\nstack_size = \"1 GiB\"").unwrap();
    assert_eq!(config.stack_size_bytes(), 1 << 30);
}

#[test]
fn other_tables_are_ignored() {
    let config = parse("[stress]\nduration = \"1s\"\nwhatever = 1\n[runtime]\npool_max = 3");
    assert_eq!(config.unwrap().pool_max(), 3);
}

/// Every bad value: the message names the key, repeats the value and says what was
/// expected.
#[test]
fn bad_values_name_key_value_and_form() {
    let cases = [
        (
            "threads = -2",
            "runtime.threads",
            "-2",
            r#"0, "auto" or a positive integer"#,
        ),
        (
            "threads = \"many\"",
            "runtime.threads",
            r#""many""#,
            "positive integer",
        ),
        (
            "pin_threads = \"yes\"",
            "runtime.pin_threads",
            r#""yes""#,
            "true or false",
        ),
        (
            "stack_size = \"12 parsecs\"",
            "runtime.stack_size",
            r#""12 parsecs""#,
            r#"a size such as "64KiB" or "1MiB""#,
        ),
        (
            "stack_size = \"8KiB\"",
            "runtime.stack_size",
            r#""8KiB""#,
            "from \"16KiB\"",
        ),
        (
            "stack_size = \"2GiB\"",
            "runtime.stack_size",
            r#""2GiB""#,
            "to \"1GiB\"",
        ),
        (
            "pool_max = -1",
            "runtime.pool_max",
            "-1",
            "a non-negative integer",
        ),
        (
            "pool_max = 1.5",
            "runtime.pool_max",
            "1.5",
            "a non-negative integer",
        ),
        (
            "poll_max = \"soon\"",
            "runtime.poll_max",
            r#""soon""#,
            "a duration such as",
        ),
        (
            "poll_max = 50",
            "runtime.poll_max",
            "50",
            "a duration such as",
        ),
        (
            "poll_max = \"2s\"",
            "runtime.poll_max",
            r#""2s""#,
            "at most \"1s\"",
        ),
        (
            "thread_name = \"\"",
            "runtime.thread_name",
            r#""""#,
            "a non-empty string",
        ),
        (
            "thread_name = \"a\\u0000b\"",
            "runtime.thread_name",
            "\"a\\u0000b\"",
            "NUL",
        ),
        ("thread_name = 7", "runtime.thread_name", "7", "a string"),
    ];
    for (line, key, value, expected) in cases {
        let err = error(&format!("[runtime]\n{line}"));
        let message = err.to_string();
        assert_eq!(err.key(), Some(key), "{line}: {message}");
        assert!(
            message.starts_with(&format!("{key} = {value}: expected ")),
            "{message}"
        );
        assert!(message.contains(expected), "{line}: {message}");
    }
}

#[test]
fn runtime_must_be_a_table() {
    let err = error("runtime = 4");
    assert_eq!(err.key(), Some("runtime"));
    assert_eq!(err.to_string(), "runtime = 4: expected a table ([runtime])");
}

#[test]
fn unknown_key_lists_the_known_ones() {
    let err = error("[runtime]\nstak_size = \"64KiB\"");
    assert_eq!(err.key(), Some("runtime.stak_size"));
    assert_eq!(
        err.to_string(),
        "unknown key runtime.stak_size (expected one of: threads, pin_threads, stack_size, \
         pool_max, poll_max, thread_name, stall_threshold, blocking_threads, blocking_queue, shutdown_timeout)"
    );
}

#[test]
fn syntax_error_has_line_and_column() {
    let err = error("[runtime]\npool_max = 3\nthreads = = 2\n");
    let message = err.to_string();
    assert_eq!(err.key(), None);
    assert!(
        message.starts_with("TOML syntax error at line 3, column 11: "),
        "{message}"
    );
}

#[test]
fn file_errors_name_the_path() {
    let missing = Path::new("/nonexistent/coscheduler/config.toml");
    let err = Config::from_file(missing).unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("cannot read /nonexistent/coscheduler/config.toml: "));
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(err.key(), None);

    let dir = std::env::temp_dir().join(format!("coscheduler-config-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    fs::write(&file, "[runtime]\npool_max = \"lots\"\n").unwrap();
    let message = Config::from_file(&file).unwrap_err().to_string();
    fs::remove_dir_all(&dir).unwrap();
    let expected = format!(
        "{}: runtime.pool_max = \"lots\": expected a non-negative integer",
        file.display()
    );
    assert_eq!(message, expected);
}

#[test]
fn set_reads_flag_and_environment_text() {
    let mut config = RuntimeConfig::default();
    config.set("threads", "4").unwrap();
    config.set("pin_threads", "true").unwrap();
    config.set("stack_size", "64KiB").unwrap();
    config.set("pool_max", "7").unwrap();
    config.set("poll_max", "1ms").unwrap();
    config.set("thread_name", "1234").unwrap();
    assert_eq!(config.threads(), NonZeroUsize::new(4));
    assert!(config.pin_threads());
    assert_eq!(config.stack_size_bytes(), 64 * 1024);
    assert_eq!(config.pool_max(), 7);
    assert_eq!(config.poll_max(), Duration::from_millis(1));
    assert_eq!(config.thread_name(), "1234");
    config.set("threads", "auto").unwrap();
    assert_eq!(config.threads(), None);
}

#[test]
fn set_refuses_and_leaves_the_config_alone() {
    let mut config = RuntimeConfig::default();
    let err = config.set("stack_size", "4KiB").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"runtime.stack_size = "4KiB": expected a size from "16KiB" to "1GiB""#
    );
    let err = config.set("pool_max", "-5").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"runtime.pool_max = "-5": expected a non-negative integer"#
    );
    let err = config.set("stak_size", "1MiB").unwrap_err();
    assert_eq!(err.key(), Some("runtime.stak_size"));
    assert_eq!(config, RuntimeConfig::default());
}

#[test]
fn serde_paths_validate_too() {
    #[derive(Deserialize)]
    struct Tool {
        runtime: RuntimeConfig,
    }
    let tool: Tool = toml::from_str("[runtime]\npool_max = 2").unwrap();
    assert_eq!(tool.runtime.pool_max(), 2);
    let err = toml::from_str::<Tool>("[runtime]\nstack_size = 1024")
        .err()
        .unwrap();
    assert!(
        err.message().contains("runtime.stack_size"),
        "{}",
        err.message()
    );
}

#[test]
fn serializes_losslessly() {
    let mut config = RuntimeConfig::default();
    config.set("stack_size", "100000").unwrap();
    config.set("threads", "3").unwrap();
    let text = toml::to_string(&Config::to_document(&config)).unwrap();
    assert_eq!(parse(&text).unwrap(), config, "{text}");
}

#[test]
fn keys_match_fields() {
    let document = toml::Table::try_from(RuntimeConfig::default()).unwrap();
    let written: Vec<&str> = document.keys().map(String::as_str).collect();
    let mut keys = RuntimeConfig::KEYS.to_vec();
    keys.sort_unstable();
    assert_eq!(written, keys);
}

impl Config {
    fn to_document(runtime: &RuntimeConfig) -> toml::Table {
        toml::Table::from_iter([(
            SECTION.to_owned(),
            toml::Value::try_from(runtime.clone()).unwrap(),
        )])
    }
}
