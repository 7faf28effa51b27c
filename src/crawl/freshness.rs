//! Freeze and rollback protection, as apt does it: a signed index that has
//! expired (Release's `Valid-Until`), that is dated in the future, or that
//! is older than the last one accepted for the same source is refused, even
//! with a good signature: an attacker replaying an old signed index could
//! otherwise hide new kernels (and their fixes) forever.
//!
//! The last accepted `Date` (apt) or `<revision>` (yum) is remembered per
//! source in the crawl's state directory. Clocks differ: `Date` may be up to
//! the source's `clock_skew` (default 10 minutes) ahead of ours, and
//! `Valid-Until` is honoured with the same allowance. Sources that publish
//! no `Valid-Until` are not affected; a source can opt out with
//! `check_valid_until: false`.

use super::sources::Source;
use anyhow::{bail, Result};
use std::path::Path;

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().take_while(|l| !l.is_empty()).find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
}

fn remembered(state: &Path) -> Option<i64> {
    std::fs::read_to_string(state).ok()?.trim().parse().ok()
}

fn remember(state: &Path, value: i64) -> Result<()> {
    crate::util::write_atomic(state, value.to_string().as_bytes())
}

fn when(secs: i64) -> String {
    crate::util::format_utc(secs)
}

/// Check a verified Release text at time `now`, then remember its Date.
pub fn check_release(src: &Source, state: &Path, text: &str, now: i64) -> Result<()> {
    let skew = src.clock_skew_secs();
    let date = match field(text, "Date") {
        Some(d) => Some(crate::util::parse_rfc2822(d).ok_or_else(|| anyhow::anyhow!("unreadable Date {d:?}"))?),
        None => None,
    };
    if date.is_none() {
        if let Some(last) = remembered(state) {
            bail!(
                "has no Date, while the one accepted before was dated {}: refused (a replayed index stripped of its date?)",
                when(last)
            );
        }
    }
    if let Some(date) = date {
        if date > now + skew {
            bail!(
                "dated {} (in the future by {}s, beyond the {skew}s clock allowance): refused",
                when(date),
                date - now
            );
        }
        if let Some(last) = remembered(state) {
            if date < last {
                bail!(
                    "dated {}, older than the {} accepted before: refused (a replayed or rolled-back index)",
                    when(date),
                    when(last)
                );
            }
        }
    }
    if src.check_valid_until {
        if let Some(v) = field(text, "Valid-Until") {
            let until = crate::util::parse_rfc2822(v).ok_or_else(|| anyhow::anyhow!("unreadable Valid-Until {v:?}"))?;
            if until + skew < now {
                bail!(
                    "expired: Valid-Until {} has passed (a frozen mirror?); set check_valid_until: false for archives that are never refreshed",
                    when(until)
                );
            }
        }
    }
    if let Some(date) = date {
        remember(state, date)?;
    }
    Ok(())
}

/// Check repomd.xml's `<revision>` (a timestamp or counter) never goes back.
pub fn check_repomd(state: &Path, repomd: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(repomd);
    let revision: Option<i64> = text
        .split_once("<revision>")
        .and_then(|(_, rest)| rest.split_once("</revision>"))
        .and_then(|(r, _)| r.trim().parse().ok());
    let Some(revision) = revision else { return Ok(()) };
    if let Some(last) = remembered(state) {
        if revision < last {
            bail!("revision {revision} is older than the {last} accepted before: refused (a replayed or rolled-back index)");
        }
    }
    remember(state, revision)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(check: bool) -> Source {
        let mut s = crate::crawl::sources::parse(
            "- name: t\n  type: debian\n  kind: apt\n  url: http://x/debian\n  suites: [a]\n  components: [main]\n  architectures: [amd64]\n  packages: ['^x']\n  grouping: depends\n  insecure: true\n",
            "test",
        )
        .unwrap()
        .remove(0);
        s.check_valid_until = check;
        s
    }

    fn release(date: i64, valid_until: Option<i64>) -> String {
        let mut t = format!("Origin: Test\nDate: {}\n", when(date));
        if let Some(v) = valid_until {
            t.push_str(&format!("Valid-Until: {}\n", when(v)));
        }
        t + "SHA256:\n abc 1 main/binary-amd64/Packages\n"
    }

    #[test]
    fn expired_future_and_older_indexes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let now = 1_800_000_000;
        let src = source(true);
        check_release(&src, &state, &release(now - 3600, Some(now + 86400)), now).unwrap();
        let err = check_release(&src, &state, &release(now - 7200, Some(now + 86400)), now).unwrap_err();
        assert!(err.to_string().contains("older than"), "{err}");
        let err = check_release(&src, &state, &release(now, Some(now - 3600)), now).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        let err = check_release(&src, &state, &release(now + 86400, None), now).unwrap_err();
        assert!(err.to_string().contains("in the future"), "{err}");
        // Within the clock allowance, and the same Date again, are fine.
        check_release(&src, &state, &release(now + 60, None), now).unwrap();
        check_release(&src, &state, &release(now + 60, None), now).unwrap();
        // An archive that is never refreshed may opt out of Valid-Until.
        check_release(&source(false), &state, &release(now + 60, Some(now - 86400)), now).unwrap();
    }

    #[test]
    fn repomd_revisions_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        check_repomd(&state, b"<repomd><revision>1700000000</revision></repomd>").unwrap();
        assert!(check_repomd(&state, b"<repomd><revision>1600000000</revision></repomd>").is_err());
        check_repomd(&state, b"<repomd><revision>1700000001</revision></repomd>").unwrap();
        check_repomd(&state, b"<repomd></repomd>").unwrap();
    }
}
