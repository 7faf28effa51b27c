//! What a crawl says: each source's outcome in one of three classes, a
//! summary whose shape puts what needs attention apart from what will
//! retry by itself, and the exit code a cron job acts on (docs/crawl.md).

use crate::fetch::FetchError;
use std::time::Duration;

/// One source's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok {
        packages: usize,
        bundles: usize,
        new: usize,
    },
    /// The repository could not be reached (connection, timeout, HTTP
    /// error): transient, or this host cannot reach it; the next crawl
    /// tries again.
    Unreachable(String),
    /// It was reached and its content refused (signature, checksum,
    /// freshness, malformed index) or our side failed (disk): needs a look.
    Refused(String),
    /// The repository wants credentials, or refused the ones sent: needs
    /// a credential (docs/operations.md, Credentials).
    AuthFailed(String),
}

impl Outcome {
    /// Classify a failure by what is in its chain.
    pub fn of_error(e: &anyhow::Error) -> Outcome {
        let text = format!("{e:#}");
        if e.chain().any(|c| matches!(c.downcast_ref::<FetchError>(), Some(FetchError::Auth { .. }))) {
            return Outcome::AuthFailed(text);
        }
        let transport = e.chain().any(|c| {
            matches!(
                c.downcast_ref::<FetchError>(),
                Some(
                    FetchError::Status(_)
                        | FetchError::Connect(_)
                        | FetchError::Stalled { .. }
                        | FetchError::TooSlow { .. }
                        | FetchError::Deadline { .. }
                        | FetchError::Cut { .. }
                )
            )
        });
        if transport {
            Outcome::Unreachable(text)
        } else {
            Outcome::Refused(text)
        }
    }

    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Ok { .. } => "ok",
            Outcome::Unreachable(_) => "unreachable",
            Outcome::Refused(_) => "refused",
            Outcome::AuthFailed(_) => "auth_failed",
        }
    }

    pub fn cause(&self) -> Option<&str> {
        match self {
            Outcome::Ok { .. } => None,
            Outcome::Unreachable(c) | Outcome::Refused(c) | Outcome::AuthFailed(c) => Some(c),
        }
    }

    /// One line for logs and progress bars.
    pub fn line(&self) -> String {
        match self {
            Outcome::Ok { packages, bundles, new } => format!("ok: {packages} packages, {bundles} bundles ({new} new)"),
            other => format!("{}: {}", other.class(), other.cause().unwrap_or_default()),
        }
    }
}

/// One source's result.
#[derive(Debug)]
pub struct SourceReport {
    pub name: String,
    pub outcome: Outcome,
}

/// Exit codes of `kpackfs crawl` (clap keeps 2 for usage errors).
pub mod exit {
    /// Every selected source was crawled.
    pub const OK: u8 = 0;
    /// Nothing was crawled: the manifest, the sources file or the disk failed.
    pub const FATAL: u8 = 1;
    /// Some sources could not be reached; none was refused. Retry later.
    pub const UNREACHABLE: u8 = 3;
    /// Some source was refused (bad signature, checksum, stale index…). Look.
    pub const REFUSED: u8 = 4;
    /// Some source wants credentials or refused ours (and none was refused).
    pub const AUTH_FAILED: u8 = 5;
}

#[derive(Debug)]
pub struct Report {
    pub sources: Vec<SourceReport>,
    pub bundles_new: usize,
    pub bundles_total: usize,
    /// Entries merged into another with the same packages (another
    /// archive), counted when that gave the entry a location it lacked.
    pub merged: usize,
    /// Sources not tried because they keep being unreachable, with the
    /// Unix second of their next try.
    pub backing_off: Vec<(String, u64)>,
    pub requests: u64,
    pub not_modified: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Whether the manifest file changed.
    pub manifest_changed: bool,
}

impl Report {
    pub fn count(&self, class: &str) -> usize {
        self.sources.iter().filter(|s| s.outcome.class() == class).count()
    }

    pub fn failed(&self) -> impl Iterator<Item = &SourceReport> {
        self.sources.iter().filter(|s| !matches!(s.outcome, Outcome::Ok { .. }))
    }

    pub fn exit_code(&self) -> u8 {
        if self.count("refused") > 0 {
            exit::REFUSED
        } else if self.count("auth_failed") > 0 {
            exit::AUTH_FAILED
        } else if self.count("unreachable") > 0 {
            exit::UNREACHABLE
        } else {
            exit::OK
        }
    }

    /// The last line of the summary: counts only (what the background crawl logs).
    pub fn totals(&self) -> String {
        let packages: usize = self
            .sources
            .iter()
            .map(|s| match s.outcome {
                Outcome::Ok { packages, .. } => packages,
                _ => 0,
            })
            .sum();
        let merged =
            if self.merged > 0 { format!(" ({} merged as other locations)", self.merged) } else { String::new() };
        let backing_off = if self.backing_off.is_empty() {
            String::new()
        } else {
            format!(", {} backing off", self.backing_off.len())
        };
        let auth = match self.count("auth_failed") {
            0 => String::new(),
            n => format!(", {n} authentication failed"),
        };
        format!(
            "crawled {} sources in {:.1}s: {} ok, {} unreachable, {} refused{auth}{backing_off}; {packages} packages, {} bundles new, {} entries in the crawl result{merged}; {} requests ({} not modified), {}",
            self.sources.len(),
            self.elapsed.as_secs_f64(),
            self.count("ok"),
            self.count("unreachable"),
            self.count("refused"),
            self.bundles_new,
            self.bundles_total,
            self.requests,
            self.not_modified,
            crate::util::human_bytes(self.bytes),
        )
    }

    /// In one line, the unreachable sources `include` picks and those
    /// backing off, or None.
    pub fn unreachable_line(&self, include: impl Fn(&SourceReport) -> bool) -> Option<String> {
        let names: Vec<&str> = self
            .sources
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Unreachable(_)) && include(s))
            .map(|s| s.name.as_str())
            .collect();
        if names.is_empty() && self.backing_off.is_empty() {
            return None;
        }
        let mut line = String::new();
        if !names.is_empty() {
            line.push_str(&format!("{} still unreachable ({})", names.len(), name_list(&names)));
        }
        if let Some(next) = self.backing_off.iter().map(|(_, t)| *t).min() {
            let waiting: Vec<&str> = self.backing_off.iter().map(|(n, _)| n.as_str()).collect();
            let wait = Duration::from_secs(next.saturating_sub(crate::util::now_secs()));
            line.push_str(&format!(
                "{}{} not tried, unreachable for several crawls in a row ({}; the next try in {}; `kpackfs crawl NAME` tries one now)",
                if line.is_empty() { "" } else { "; " },
                waiting.len(),
                name_list(&waiting),
                crate::util::human_duration(wait)
            ));
        }
        Some(line)
    }

    /// The whole summary: the sources that worked, then those that will be
    /// retried, then those that need attention, then the totals.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for s in &self.sources {
            if let Outcome::Ok { packages, bundles, new } = s.outcome {
                out.push_str(&format!(
                    "  {:<28} ok  {packages:>5} packages {bundles:>5} bundles ({new} new)\n",
                    s.name
                ));
            }
        }
        for (class, heading) in [
            ("unreachable", "unreachable (tried again next crawl)"),
            ("refused", "refused (needs attention)"),
            ("auth_failed", "authentication failed (needs credentials)"),
        ] {
            let failed: Vec<&SourceReport> = self.sources.iter().filter(|s| s.outcome.class() == class).collect();
            if failed.is_empty() {
                continue;
            }
            out.push_str(&format!("{heading}:\n"));
            for s in failed {
                out.push_str(&format!("  {:<28} {}\n", s.name, s.outcome.cause().unwrap_or_default()));
            }
        }
        if !self.backing_off.is_empty() {
            let now = crate::util::now_secs();
            out.push_str("not tried (unreachable for several crawls in a row; `kpackfs crawl NAME` tries one now):\n");
            for (name, next) in &self.backing_off {
                let wait = Duration::from_secs(next.saturating_sub(now));
                out.push_str(&format!("  {name:<28} next try in {}\n", crate::util::human_duration(wait)));
            }
        }
        out.push_str(&self.totals());
        out.push('\n');
        out
    }
}

/// At most five names, then how many more.
fn name_list(names: &[&str]) -> String {
    let mut out = names.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        out.push_str(&format!(" and {} more", names.len() - 5));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcomes: Vec<Outcome>) -> Report {
        Report {
            sources: outcomes
                .into_iter()
                .enumerate()
                .map(|(i, outcome)| SourceReport { name: format!("s{i}"), outcome })
                .collect(),
            bundles_new: 0,
            bundles_total: 0,
            merged: 0,
            backing_off: Vec::new(),
            requests: 0,
            not_modified: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
            manifest_changed: false,
        }
    }

    #[test]
    fn failures_are_classified_by_their_cause() {
        let net = anyhow::Error::new(FetchError::Connect("connection refused".into())).context("fetching x");
        assert_eq!(Outcome::of_error(&net).class(), "unreachable");
        let http = anyhow::Error::new(FetchError::Status(503)).context("fetching x");
        assert_eq!(Outcome::of_error(&http).class(), "unreachable");
        let sig = anyhow::anyhow!("signature check failed: bad signature").context("stable/InRelease");
        assert_eq!(Outcome::of_error(&sig).class(), "refused");
        let big = anyhow::Error::new(FetchError::TooLarge { limit: 1 }).context("fetching x");
        assert_eq!(Outcome::of_error(&big).class(), "refused", "an oversized index is the server's doing");
    }

    #[test]
    fn the_exit_code_says_the_worst_class() {
        let ok = Outcome::Ok { packages: 1, bundles: 1, new: 0 };
        assert_eq!(report(vec![ok.clone()]).exit_code(), exit::OK);
        let unreachable = Outcome::Unreachable("x".into());
        assert_eq!(report(vec![ok.clone(), unreachable.clone()]).exit_code(), exit::UNREACHABLE);
        let r = report(vec![unreachable, Outcome::Refused("bad signature".into()), ok]);
        assert_eq!(r.exit_code(), exit::REFUSED);
        let summary = r.summary();
        let order: Vec<usize> = ["  s2 ", "unreachable (", "  s0 ", "refused (", "  s1 ", "crawled 3 sources"]
            .iter()
            .map(|needle| summary.find(needle).unwrap_or_else(|| panic!("{needle}: {summary}")))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "ok, then unreachable, then refused, then totals:\n{summary}");
        assert!(summary.contains("1 ok, 1 unreachable, 1 refused"), "{summary}");
    }
}
