//! The files a run writes besides stdout, checked before any workload starts.
//!
//! A report is only worth its run: finding out after ten minutes of load that the histogram
//! directory was misspelt throws the run away. So every output path is tried before the
//! first workload: the `--hgrm` directory must exist and take a new file, and the `--html`
//! file's directory must exist and the file itself, if present, be a regular file that can be
//! written. Nothing is left behind by the check: a probe file is removed at once, and an
//! existing report is opened without truncation.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::error::SettingsError;

/// Where the run writes files of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    /// `--hgrm DIR`: one HdrHistogram percentile file per histogram.
    pub hgrm_dir: Option<PathBuf>,
    /// `--html FILE`: the self-contained HTML report.
    pub html_file: Option<PathBuf>,
}

impl Outputs {
    /// Checks that every output can be written, without writing anything that stays.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the flag, the path and what is wrong with it.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(dir) = &self.hgrm_dir {
            check_dir(dir).map_err(|reason| SettingsError::output("--hgrm", dir, reason))?;
        }
        if let Some(file) = &self.html_file {
            check_file(file).map_err(|reason| SettingsError::output("--html", file, reason))?;
        }
        Ok(())
    }
}

/// An existing directory that takes a new file.
fn check_dir(dir: &Path) -> Result<(), String> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err("not a directory (it names a file)".to_owned()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err("no such directory (create it first)".to_owned());
        }
        Err(err) => return Err(err.to_string()),
    }
    let probe = dir.join(format!(".costress-probe-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|err| format!("cannot create a file in it: {err}"))?;
    // The probe was just created by us; failing to remove it leaves an empty dot file, which
    // is not worth refusing the run for.
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// A file that can be written: its directory exists, and it is absent or a writable regular
/// file.
fn check_file(file: &Path) -> Result<(), String> {
    if file.as_os_str().is_empty() {
        return Err("empty path".to_owned());
    }
    let parent = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    match fs::metadata(parent) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", parent.display())),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(format!("no such directory {}", parent.display()));
        }
        Err(err) => return Err(format!("{}: {err}", parent.display())),
    }
    match fs::metadata(file) {
        Ok(meta) if meta.is_dir() => Err("is a directory (expected a file name)".to_owned()),
        Ok(_) => OpenOptions::new()
            .append(true)
            .open(file)
            .map(drop)
            .map_err(|err| format!("cannot write it: {err}")),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(file)
                .map_err(|err| format!("cannot create it: {err}"))?;
            let _ = fs::remove_file(file);
            Ok(())
        }
        Err(err) => Err(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("costress-outputs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn refusal(outputs: Outputs) -> String {
        outputs.validate().unwrap_err().to_string()
    }

    #[test]
    fn good_paths_pass_and_leave_nothing_behind() {
        let dir = scratch("good");
        let outputs = Outputs {
            hgrm_dir: Some(dir.clone()),
            html_file: Some(dir.join("report.html")),
        };
        outputs.validate().unwrap();
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "the probes were removed"
        );
        fs::write(dir.join("report.html"), "old").unwrap();
        outputs.validate().unwrap();
        assert_eq!(fs::read_to_string(dir.join("report.html")).unwrap(), "old");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_paths_are_named_with_the_reason() {
        let dir = scratch("bad");
        let file = dir.join("plain");
        fs::write(&file, "x").unwrap();
        let missing = dir.join("missing");
        let hgrm = |path: &Path| Outputs {
            hgrm_dir: Some(path.to_owned()),
            html_file: None,
        };
        let html = |path: &Path| Outputs {
            hgrm_dir: None,
            html_file: Some(path.to_owned()),
        };
        let text = refusal(hgrm(&missing));
        assert!(text.starts_with("--hgrm: "), "{text}");
        assert!(
            text.contains("no such directory (create it first)"),
            "{text}"
        );
        assert!(refusal(hgrm(&file)).contains("not a directory"));
        assert!(refusal(html(&missing.join("r.html"))).contains("no such directory"));
        assert!(refusal(html(&dir)).contains("is a directory"));
        assert!(refusal(html(&file.join("r.html"))).contains("is not a directory"));
        fs::remove_dir_all(dir).unwrap();
    }
}
