//! Records the compiler and profile that built this binary, so a results file names the
//! toolchain that produced the measured code rather than whatever `rustc` is on `PATH` when
//! the suite runs.

use std::process::Command;

fn main() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |out| String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        );
    // Cargo sets PROFILE to "release" for every profile that inherits from release (bench
    // included) and to "debug" otherwise: the split that moves instruction counts.
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=COBENCH_RUSTC_VERSION={version}");
    println!("cargo:rustc-env=COBENCH_PROFILE={profile}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC");
}
