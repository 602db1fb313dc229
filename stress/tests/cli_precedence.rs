//! Built-in defaults < config file < COSTRESS_* environment < flags, observed through
//! --print-config.

mod common;

use std::fs;
use std::path::Path;

use common::{code, costress, run, scratch};

/// The resolved configuration that `command` prints.
fn resolved(command: &mut std::process::Command) -> toml::Table {
    let (output, stdout, stderr) = run(command.arg("--print-config"));
    assert_eq!(code(&output), 0, "{stderr}");
    stdout
        .parse()
        .unwrap_or_else(|err| panic!("--print-config is not TOML: {err}\n{stdout}"))
}

fn get<'a>(table: &'a toml::Table, section: &str, key: &str) -> &'a toml::Value {
    &table[section][key]
}

fn write_config(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    fs::write(
        &path,
        r#"
        [runtime]
        threads = 2
        pool_max = 10
        stack_size = "256KiB"
        [stress]
        duration = "1s"
        coroutines = 2
        seed = 5
        workloads = ["mutex"]
        "#,
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn defaults_when_there_is_no_file() {
    let dir = scratch("precedence-defaults");
    let table = resolved(&mut costress(&dir));
    assert_eq!(get(&table, "runtime", "threads").as_str(), Some("auto"));
    assert_eq!(get(&table, "runtime", "stack_size").as_str(), Some("1MiB"));
    assert_eq!(get(&table, "stress", "duration").as_str(), Some("10s"));
    assert_eq!(
        get(&table, "stress", "workloads").as_array().unwrap().len(),
        1
    );
}

#[test]
fn durations_are_printed_as_a_user_writes_them() {
    let dir = scratch("precedence-durations");
    let table = resolved(costress(&dir).args([
        "--duration",
        "1500ms",
        "--stall-threshold",
        "1m 30s",
        "--poll-max",
        "0.05ms",
    ]));
    assert_eq!(get(&table, "stress", "duration").as_str(), Some("1.5s"));
    assert_eq!(
        get(&table, "runtime", "stall_threshold").as_str(),
        Some("90s")
    );
    assert_eq!(get(&table, "runtime", "poll_max").as_str(), Some("50us"));
}

#[test]
fn file_then_environment_then_flags() {
    let dir = scratch("precedence-layers");
    let config = write_config(&dir, "layers.toml");
    let table = resolved(
        costress(&dir)
            .args(["--config", &config])
            .env("COSTRESS_DURATION", "2s")
            .env("COSTRESS_SEED", "6")
            .env("COSTRESS_POOL_MAX", "20")
            .env("COSTRESS_THREADS", "3")
            .env("COSTRESS_WORKLOADS", "queue")
            .args(["--duration", "3s", "--pool-max", "30", "echo"]),
    );
    // Flags beat the environment, which beats the file, which beats the defaults.
    assert_eq!(get(&table, "stress", "duration").as_str(), Some("3s"));
    assert_eq!(get(&table, "runtime", "pool_max").as_integer(), Some(30));
    assert_eq!(
        get(&table, "stress", "workloads").as_array().unwrap()[0].as_str(),
        Some("echo")
    );
    assert_eq!(get(&table, "stress", "seed").as_integer(), Some(6));
    assert_eq!(get(&table, "runtime", "threads").as_integer(), Some(3));
    assert_eq!(get(&table, "stress", "coroutines").as_integer(), Some(2));
    assert_eq!(
        get(&table, "runtime", "stack_size").as_str(),
        Some("256KiB")
    );
    assert_eq!(
        get(&table, "runtime", "poll_max").as_str(),
        Some("32.768us")
    );
}

#[test]
fn environment_workloads_beat_the_file() {
    let dir = scratch("precedence-workloads");
    let config = write_config(&dir, "workloads.toml");
    let table = resolved(
        costress(&dir)
            .args(["--config", &config])
            .env("COSTRESS_WORKLOADS", "queue,wake"),
    );
    let names: Vec<_> = get(&table, "stress", "workloads")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, ["queue", "wake"]);
}

#[test]
fn config_toml_in_the_current_directory_is_read() {
    let dir = scratch("precedence-cwd");
    fs::write(dir.join("config.toml"), "[stress]\nseed = 77\n").unwrap();
    let table = resolved(&mut costress(&dir));
    assert_eq!(get(&table, "stress", "seed").as_integer(), Some(77));
}

#[test]
fn config_path_from_the_environment() {
    let dir = scratch("precedence-config-env");
    let config = write_config(&dir, "from-env.toml");
    let table = resolved(costress(&dir).env("COSTRESS_CONFIG", &config));
    assert_eq!(get(&table, "stress", "seed").as_integer(), Some(5));
}

#[test]
fn printed_configuration_reads_back() {
    let dir = scratch("precedence-round-trip");
    let (_, printed, _) =
        run(costress(&dir).args(["--print-config", "--stack-size", "100000", "--threads", "4"]));
    fs::write(dir.join("printed.toml"), &printed).unwrap();
    let (_, again, _) = run(costress(&dir).args(["--print-config", "--config", "printed.toml"]));
    assert_eq!(printed, again);
}
