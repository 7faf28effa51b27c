//! Why a transfer failed, as a type: the fetcher and the crawler decide on
//! retries from it, and messages name the cause the same way everywhere.

use crate::error::ErrorClass;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The server answered with this HTTP status.
    Status(u16),
    /// No response (connection refused, DNS, TLS, reset before headers).
    Connect(String),
    /// No bytes for the stall timeout.
    Stalled {
        after_bytes: u64,
        timeout: Duration,
    },
    /// The average rate stayed under the minimum.
    TooSlow {
        bytes: u64,
        elapsed: Duration,
        min_rate: u64,
    },
    /// The overall deadline passed.
    Deadline {
        after: Duration,
    },
    /// The body ended, or failed, before it was complete.
    Cut {
        after_bytes: u64,
        expected: Option<u64>,
        cause: String,
    },
    /// More bytes than allowed (the expected size, or a cap).
    TooLarge {
        limit: u64,
    },
    SizeMismatch {
        expected: u64,
        got: u64,
    },
    Sha256Mismatch {
        expected: String,
        got: String,
    },
    Sha512Mismatch {
        expected: String,
        got: String,
    },
    /// The cache budget has no room for the download.
    NoRoom {
        needed: u64,
    },
    /// The server wants credentials (401, 403) or ended the TLS handshake
    /// over the client certificate. `sent`: credentials were presented.
    Auth {
        status: Option<u16>,
        sent: bool,
        cause: String,
    },
    /// A local file operation failed (`errno` when it was a system error).
    Io {
        message: String,
        errno: Option<i32>,
    },
}

impl FetchError {
    /// Whether another attempt may succeed: connection trouble, stalls,
    /// cuts and 5xx/408/429. Not: other 4xx, checksums, sizes, deadlines.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Status(s) => (500..600).contains(s) || *s == 408 || *s == 429,
            FetchError::Connect(_) | FetchError::Stalled { .. } | FetchError::Cut { .. } => true,
            FetchError::TooSlow { .. } => true,
            _ => false,
        }
    }

    /// A local I/O failure, keeping its errno (a full disk is `no_space`).
    pub fn io(context: &str, e: std::io::Error) -> FetchError {
        FetchError::Io { message: format!("{context}: {e}"), errno: e.raw_os_error() }
    }

    /// A local failure described by an error chain.
    pub fn local(context: &str, e: &anyhow::Error) -> FetchError {
        let errno = if crate::error::is_no_space(e) { Some(libc::ENOSPC) } else { None };
        FetchError::Io { message: format!("{context}: {e:#}"), errno }
    }

    /// What kind of failure this is, for status, metrics and exit codes.
    pub fn class(&self) -> ErrorClass {
        match self {
            FetchError::Status(404 | 410) => ErrorClass::NotFound,
            FetchError::Status(_)
            | FetchError::Connect(_)
            | FetchError::Stalled { .. }
            | FetchError::TooSlow { .. }
            | FetchError::Deadline { .. }
            | FetchError::Cut { .. } => ErrorClass::Unreachable,
            FetchError::TooLarge { .. } => ErrorClass::Hostile,
            FetchError::SizeMismatch { .. } | FetchError::Sha256Mismatch { .. } | FetchError::Sha512Mismatch { .. } => {
                ErrorClass::Refused
            }
            FetchError::NoRoom { .. } => ErrorClass::NoSpace,
            FetchError::Auth { .. } => ErrorClass::AuthFailed,
            FetchError::Io { errno: Some(n), .. } if *n == libc::ENOSPC || *n == libc::EDQUOT => ErrorClass::NoSpace,
            FetchError::Io { .. } => ErrorClass::Internal,
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Status(s) => write!(f, "HTTP {s}{}", status_reason(*s)),
            FetchError::Connect(e) => write!(f, "request failed: {e}"),
            FetchError::Stalled { after_bytes, timeout } => {
                write!(f, "transfer stalled for {timeout:?} after {after_bytes} bytes")
            }
            FetchError::TooSlow { bytes, elapsed, min_rate } => write!(
                f,
                "transfer too slow: {bytes} bytes in {:.0}s, under the minimum of {}/s",
                elapsed.as_secs_f64(),
                crate::util::human_bytes(*min_rate)
            ),
            FetchError::Deadline { after } => write!(f, "gave up after the {after:?} deadline"),
            FetchError::Cut { after_bytes, expected: Some(total), cause } => {
                write!(f, "transfer cut after {after_bytes} of {total} bytes{}", with_cause(cause))
            }
            FetchError::Cut { after_bytes, expected: None, cause } => {
                write!(f, "transfer cut after {after_bytes} bytes{}", with_cause(cause))
            }
            FetchError::TooLarge { limit } => write!(f, "body exceeds the limit of {limit} bytes"),
            FetchError::SizeMismatch { expected, got } => {
                write!(f, "size mismatch: expected {expected} bytes, got {got}")
            }
            FetchError::Sha256Mismatch { expected, got } => {
                write!(f, "sha256 mismatch: expected {expected}, got {got}")
            }
            FetchError::Sha512Mismatch { expected, got } => {
                write!(f, "sha512 mismatch: expected {expected}, got {got}")
            }
            FetchError::NoRoom { needed } => {
                write!(f, "the cache budget has no room for {} more", crate::util::human_bytes(*needed))
            }
            FetchError::Io { message, .. } => f.write_str(message),
            FetchError::Auth { status, sent, cause } => {
                let why = match sent {
                    true => "the credentials for this URL were refused",
                    false => "no credentials match this URL (see Credentials in docs/operations.md)",
                };
                match status {
                    Some(s) => write!(f, "authentication failed: HTTP {s}{} ({why})", status_reason(*s)),
                    None => write!(
                        f,
                        "authentication failed: the server ended the TLS handshake ({why}){}",
                        with_cause(cause)
                    ),
                }
            }
        }
    }
}

impl std::error::Error for FetchError {}

fn with_cause(cause: &str) -> String {
    if cause.is_empty() {
        String::new()
    } else {
        format!(": {cause}")
    }
}

fn status_reason(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()) {
        Some(r) => format!(" {r}"),
        None => String::new(),
    }
}

/// An error with its sources, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_failures_are_retried() {
        for s in [500, 502, 503, 408, 429] {
            assert!(FetchError::Status(s).is_transient(), "{s}");
        }
        for s in [400, 403, 404, 410, 416] {
            assert!(!FetchError::Status(s).is_transient(), "{s}");
        }
        assert!(FetchError::Cut { after_bytes: 1, expected: None, cause: String::new() }.is_transient());
        assert!(FetchError::Stalled { after_bytes: 0, timeout: Duration::from_secs(1) }.is_transient());
        assert!(!FetchError::Sha256Mismatch { expected: "a".into(), got: "b".into() }.is_transient());
        assert!(!FetchError::Deadline { after: Duration::from_secs(1) }.is_transient());
        assert_eq!(FetchError::Status(404).to_string(), "HTTP 404 Not Found");
    }

    #[test]
    fn each_failure_has_the_class_an_operator_acts_on() {
        assert_eq!(FetchError::Status(404).class(), ErrorClass::NotFound);
        assert_eq!(FetchError::Status(410).class(), ErrorClass::NotFound);
        assert_eq!(FetchError::Status(503).class(), ErrorClass::Unreachable);
        assert_eq!(FetchError::Connect("refused".into()).class(), ErrorClass::Unreachable);
        assert_eq!(FetchError::Deadline { after: Duration::from_secs(1) }.class(), ErrorClass::Unreachable);
        assert_eq!(FetchError::Sha256Mismatch { expected: "a".into(), got: "b".into() }.class(), ErrorClass::Refused);
        assert_eq!(FetchError::SizeMismatch { expected: 1, got: 2 }.class(), ErrorClass::Refused);
        assert_eq!(FetchError::TooLarge { limit: 1 }.class(), ErrorClass::Hostile);
        assert_eq!(FetchError::NoRoom { needed: 1 }.class(), ErrorClass::NoSpace);
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(FetchError::io("writing", full).class(), ErrorClass::NoSpace);
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(FetchError::io("writing", denied).class(), ErrorClass::Internal);
    }
}
