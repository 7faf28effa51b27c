//! Why a bundle could not be built, as a type: one class per kind of
//! failure, each with the errno a reader gets, the label status and metrics
//! show, and the exit code of `kpackfs bundle`.
//!
//! The classes are what an operator acts on: `unreachable` (the network or
//! a mirror: retry later, fix the mirror), `not_found` (the archive no
//! longer has a package: an archive source, issue 21), `refused` (a
//! signature or checksum did not match: someone must look), `hostile` (an
//! input broke a rule or a bound: a malformed package, an over-large
//! bundle), `no_space` (the cache's disk or budget), `internal` (a bug or
//! a local I/O failure), `auth_failed` (the server wants credentials or
//! refused the ones sent: fix the credentials, issue 21).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Unreachable,
    NotFound,
    Refused,
    Hostile,
    NoSpace,
    Internal,
    /// The server wants credentials, or refused the ones sent.
    AuthFailed,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 7] = [
        ErrorClass::Unreachable,
        ErrorClass::NotFound,
        ErrorClass::Refused,
        ErrorClass::Hostile,
        ErrorClass::NoSpace,
        ErrorClass::Internal,
        ErrorClass::AuthFailed,
    ];

    /// The label in status, metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Unreachable => "unreachable",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Refused => "refused",
            ErrorClass::Hostile => "hostile",
            ErrorClass::NoSpace => "no_space",
            ErrorClass::Internal => "internal",
            ErrorClass::AuthFailed => "auth_failed",
        }
    }

    /// What a reader of the mount gets. Only a full disk has an errno of
    /// its own that readers know (`make` prints "No space left on
    /// device"); every other failure is EIO, with the class in status.
    pub fn errno(self) -> i32 {
        match self {
            ErrorClass::NoSpace => libc::ENOSPC,
            // "Permission denied": the reader's fix is a credential.
            ErrorClass::AuthFailed => libc::EACCES,
            _ => libc::EIO,
        }
    }

    /// `kpackfs bundle`'s exit code (sysexits.h, so scripts can tell a
    /// retryable failure from one that needs a person).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorClass::Unreachable => 69, // EX_UNAVAILABLE
            ErrorClass::NotFound => 66,    // EX_NOINPUT
            ErrorClass::Refused => 77,     // EX_NOPERM
            ErrorClass::Hostile => 65,     // EX_DATAERR
            ErrorClass::NoSpace => 73,     // EX_CANTCREAT
            ErrorClass::Internal => 70,    // EX_SOFTWARE
            ErrorClass::AuthFailed => 78,  // EX_CONFIG: credentials are configuration
        }
    }

    /// The position in [`ErrorClass::ALL`] (counters are kept per class).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed build: its class and one line naming the cause (the package
/// or file, and why). Cheap to clone: every waiter of a build gets it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    pub class: ErrorClass,
    message: std::sync::Arc<str>,
}

impl BuildError {
    pub fn new(class: ErrorClass, message: impl fmt::Display) -> BuildError {
        BuildError { class, message: std::sync::Arc::from(message.to_string()) }
    }

    /// An error from a step whose failures are all of one class, with its
    /// causes on one line; a full disk anywhere in the chain is `no_space`.
    pub fn of(class: ErrorClass, e: &anyhow::Error) -> BuildError {
        let class = if is_no_space(e) { ErrorClass::NoSpace } else { class };
        BuildError::new(class, format!("{e:#}"))
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `context` before its message.
    pub fn context(&self, context: impl fmt::Display) -> BuildError {
        BuildError::new(self.class, format!("{context}: {}", self.message))
    }

    pub fn errno(&self) -> i32 {
        self.class.errno()
    }
}

/// Whether an error chain holds an I/O error of a full disk or quota.
pub fn is_no_space(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|n| n == libc::ENOSPC || n == libc::EDQUOT)
    })
}

/// The class of the first [`BuildError`] in an error chain.
pub fn class_of(e: &anyhow::Error) -> Option<ErrorClass> {
    e.chain().find_map(|c| c.downcast_ref::<BuildError>()).map(|b| b.class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_has_its_own_exit_code_and_only_a_full_disk_is_not_eio() {
        let codes: std::collections::HashSet<u8> = ErrorClass::ALL.iter().map(|c| c.exit_code()).collect();
        assert_eq!(codes.len(), ErrorClass::ALL.len());
        for c in ErrorClass::ALL {
            assert_eq!(c.errno() == libc::ENOSPC, c == ErrorClass::NoSpace, "{c}");
            assert_eq!(ErrorClass::ALL[c.index()], c);
        }
    }

    #[test]
    fn a_full_disk_in_the_chain_is_no_space_whatever_the_step() {
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e = anyhow::Error::from(io).context("writing the pack");
        assert_eq!(BuildError::of(ErrorClass::Internal, &e).class, ErrorClass::NoSpace);
        let other = anyhow::Error::from(std::io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(BuildError::of(ErrorClass::Internal, &other).class, ErrorClass::Internal);
        let wrapped = anyhow::Error::from(BuildError::new(ErrorClass::Refused, "sha256 mismatch")).context("bundle x");
        assert_eq!(class_of(&wrapped), Some(ErrorClass::Refused));
    }
}
