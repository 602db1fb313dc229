//! What can go wrong in a W8 server's set-up or in its client.

use std::fmt;
use std::io;

/// A failed step of the W8 client (or of a listener's set-up), or a broken echo.
#[derive(Debug)]
pub enum Error {
    /// An I/O call failed while `doing` something.
    Io {
        /// What the client was doing, as in "connecting".
        doing: &'static str,
        /// The call's error.
        source: io::Error,
    },
    /// The server or the client broke the workload's rules: a short write, an echo of
    /// bytes never sent, no progress for a minute.
    Broken(String),
}

impl Error {
    pub(crate) fn io(doing: &'static str, source: io::Error) -> Error {
        Error::Io { doing, source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { doing, source } => write!(f, "{doing}: {source}"),
            Error::Broken(detail) => f.write_str(detail),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Broken(_) => None,
        }
    }
}
