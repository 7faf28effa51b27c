//! Credentials for sources that need them, by URL prefix.
//!
//! An entry names a scope (`[scheme://]host[:port][/path]`, apt's
//! auth.conf rules: no scheme means https only, no port means any port, the
//! path is a prefix) and what to present there: a secret (HTTP basic, a
//! bearer token, or a URL token appended as the query, SUSE's scheme) and/or
//! a TLS client identity (certificate, key, optional CA bundle). Entries
//! come from apt's `auth.conf` and `auth.conf.d/*.conf` ([`netrc`]), yum's
//! `.repo` files ([`yum`]), `--auth-file` files in apt's format with
//! kpackfs's extra tokens, and per-source `client_cert`/`client_key`/`ca`.
//!
//! Credentials are chosen per request from the URL actually requested (the
//! mirror's URL after a rewrite, each hop of a redirect), never carried
//! from one URL to another: so a redirect to another host, or a mirror
//! standing in for a canonical host, never receives the canonical host's
//! secrets. Nothing here prints a secret: `Debug` shows scopes only.

pub mod netrc;
pub mod yum;

use std::fmt;
use std::path::PathBuf;

/// What is presented in a scope besides a client certificate.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Basic {
        login: String,
        password: String,
    },
    Bearer(String),
    /// Appended to the URL as its query (`?<token>`).
    Query(String),
}

/// Only the kind: a secret is never formatted.
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.kind())
    }
}

impl Secret {
    pub fn kind(&self) -> &'static str {
        match self {
            Secret::Basic { .. } => "basic",
            Secret::Bearer(_) => "bearer",
            Secret::Query(_) => "url token",
        }
    }

    /// The secret's text, for leak checks only.
    fn words(&self) -> Vec<&str> {
        match self {
            Secret::Basic { password, .. } => vec![password],
            Secret::Bearer(t) | Secret::Query(t) => vec![t],
        }
    }
}

/// How TLS goes in a scope: a client certificate and its key, and/or the
/// CA bundle trusted there instead of the system's. PEM files, read when
/// the clients are built.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientIdentity {
    /// (certificate, key)
    pub cert_key: Option<(PathBuf, PathBuf)>,
    /// Trust only this CA bundle for the scope (yum's `sslcacert`).
    pub ca: Option<PathBuf>,
}

impl ClientIdentity {
    /// From optional paths as configuration gives them; `what` names the
    /// place in messages. A certificate needs its key and the reverse.
    pub fn from_parts(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        ca: Option<PathBuf>,
        what: &str,
    ) -> anyhow::Result<Option<ClientIdentity>> {
        let cert_key = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => anyhow::bail!("{what}: a client certificate needs both its certificate and its key"),
        };
        Ok((cert_key.is_some() || ca.is_some()).then_some(ClientIdentity { cert_key, ca }))
    }
}

/// Where an entry applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// None: https only (apt's rule for an entry without a protocol).
    pub scheme: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// A prefix of the URL's path ("" matches every path).
    pub path: String,
}

impl Scope {
    /// `[scheme://]host[:port][/path]`, as apt's `machine` token.
    pub fn parse(machine: &str) -> Option<Scope> {
        let (scheme, rest) = match machine.split_once("://") {
            Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
            None => (None, machine),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, Some(p.parse().ok()?)),
            _ => (authority, None),
        };
        Some(Scope { scheme, host: host.to_ascii_lowercase(), port, path: path.to_string() })
    }

    /// The scope of a base URL (its scheme, host, port and path).
    pub fn of_url(url: &str) -> Option<Scope> {
        let u = url::Url::parse(url).ok()?;
        Some(Scope {
            scheme: Some(u.scheme().to_string()),
            host: u.host_str()?.to_ascii_lowercase(),
            port: u.port(),
            path: u.path().trim_end_matches('/').to_string(),
        })
    }

    pub fn matches(&self, url: &url::Url) -> bool {
        let scheme_ok = match &self.scheme {
            Some(s) => s == url.scheme(),
            None => matches!(url.scheme(), "https" | "tor+https"),
        };
        let host_ok = url.host_str().is_some_and(|h| h.eq_ignore_ascii_case(&self.host));
        let port_ok = self.port.is_none() || self.port == url.port_or_known_default();
        let path = url.path();
        let path_ok = self.path.is_empty()
            || path == self.path
            || path.strip_prefix(self.path.as_str()).is_some_and(|rest| rest.starts_with('/'));
        scheme_ok && host_ok && port_ok && path_ok
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.scheme {
            write!(f, "{s}://")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        f.write_str(&self.path)
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub scope: Scope,
    pub secret: Option<Secret>,
    pub identity: Option<ClientIdentity>,
    /// The file (or source) it came from, for messages.
    pub from: String,
}

/// Every credential entry, in the order they were read: the first entry
/// whose scope matches a URL gives its secret, the first with an identity
/// gives its certificate (apt: "once a match is made, the file is not
/// searched further").
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    entries: Vec<Entry>,
}

/// The most entries read from all files (a bound on hostile input).
pub const MAX_ENTRIES: usize = 10_000;

impl Credentials {
    pub fn add(&mut self, entry: Entry) -> anyhow::Result<()> {
        if self.entries.len() >= MAX_ENTRIES {
            anyhow::bail!("more than {MAX_ENTRIES} credential entries");
        }
        self.entries.push(entry);
        Ok(())
    }

    pub fn extend(&mut self, other: Credentials) -> anyhow::Result<()> {
        for e in other.entries {
            self.add(e)?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn secret_for(&self, url: &url::Url) -> Option<&Secret> {
        self.entries
            .iter()
            .filter(|e| e.secret.is_some())
            .find(|e| e.scope.matches(url))
            .and_then(|e| e.secret.as_ref())
    }

    pub fn identity_for(&self, url: &url::Url) -> Option<&ClientIdentity> {
        self.entries
            .iter()
            .filter(|e| e.identity.is_some())
            .find(|e| e.scope.matches(url))
            .and_then(|e| e.identity.as_ref())
    }

    /// Each distinct identity once (a client is built per identity).
    pub fn identities(&self) -> Vec<ClientIdentity> {
        let mut ids: Vec<ClientIdentity> = self.entries.iter().filter_map(|e| e.identity.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Whether `text` contains any secret held here (for tests and checks).
    pub fn leaks_into(&self, text: &str) -> bool {
        self.entries
            .iter()
            .filter_map(|e| e.secret.as_ref())
            .flat_map(Secret::words)
            .any(|w| !w.is_empty() && text.contains(w))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self
            .entries
            .iter()
            .map(|e| {
                let what: Vec<&str> = e
                    .secret
                    .as_ref()
                    .map(Secret::kind)
                    .into_iter()
                    .chain(e.identity.as_ref().map(|i| {
                        if i.cert_key.is_some() {
                            "client certificate"
                        } else {
                            "CA bundle"
                        }
                    }))
                    .collect();
                format!("{} ({}, from {})", e.scope, what.join(" + "), e.from)
            })
            .collect();
        f.debug_list().entries(shown).finish()
    }
}

/// A URL as it may be printed: user information and the query removed
/// (both may carry a secret; a redirect's target may be a signed URL).
pub fn redact(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        // Not a URL: cut anything that looks like user information or a query.
        let cut = url.split(['?', '#']).next().unwrap_or("");
        return match cut.split_once("://").and_then(|(s, rest)| rest.split_once('@').map(|(_, h)| (s, h))) {
            Some((s, h)) => format!("{s}://***@{h}"),
            None => cut.to_string(),
        };
    };
    let had_user = !u.username().is_empty() || u.password().is_some();
    let had_query = u.query().is_some();
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.set_query(None);
    u.set_fragment(None);
    let mut s = u.to_string();
    if had_user {
        if let Some(i) = s.find("://") {
            s.insert_str(i + 3, "***@");
        }
    }
    if had_query {
        s.push_str("?***");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn scopes_follow_apts_rules() {
        let bare = Scope::parse("esm.example/apps/ubuntu").unwrap();
        assert!(bare.matches(&url("https://esm.example/apps/ubuntu/dists/x")));
        assert!(!bare.matches(&url("http://esm.example/apps/ubuntu/dists/x")), "no scheme: https only");
        assert!(!bare.matches(&url("https://esm.example/apps/ubuntuX/dists")), "the path is a directory prefix");
        assert!(!bare.matches(&url("https://other.example/apps/ubuntu/x")));
        let http = Scope::parse("http://127.0.0.1:8080").unwrap();
        assert!(http.matches(&url("http://127.0.0.1:8080/a")));
        assert!(!http.matches(&url("http://127.0.0.1:8081/a")), "a port given must match");
        assert!(Scope::parse("HOST.example").unwrap().matches(&url("https://host.example:444/x")), "no port: any port");
        assert!(Scope::parse("user@host").is_none());
    }

    #[test]
    fn the_first_matching_entry_wins_and_identity_is_chosen_apart() {
        let mut c = Credentials::default();
        let entry = |m: &str, secret: Option<Secret>, identity: Option<ClientIdentity>| Entry {
            scope: Scope::parse(m).unwrap(),
            secret,
            identity,
            from: "t".into(),
        };
        let id = ClientIdentity { cert_key: Some(("/c".into(), "/k".into())), ca: None };
        c.add(entry("https://h/a/b", Some(Secret::Bearer("one".into())), None)).unwrap();
        c.add(entry("https://h/a", Some(Secret::Bearer("two".into())), Some(id.clone()))).unwrap();
        assert_eq!(c.secret_for(&url("https://h/a/b/c")), Some(&Secret::Bearer("one".into())));
        assert_eq!(c.secret_for(&url("https://h/a/x")), Some(&Secret::Bearer("two".into())));
        assert_eq!(c.identity_for(&url("https://h/a/b/c")), Some(&id));
        assert_eq!(c.secret_for(&url("https://g/a")), None);
        let shown = format!("{c:?}");
        assert!(!c.leaks_into(&shown), "Debug shows no secret: {shown}");
        assert!(shown.contains("bearer"));
    }

    #[test]
    fn redaction_removes_user_information_and_queries() {
        assert_eq!(redact("https://u:pw@h.example/x?tok"), "https://***@h.example/x?***");
        assert_eq!(redact("http://h.example/x"), "http://h.example/x");
        assert_eq!(redact("not a url://u:pw@h/x?t"), "not a url://***@h/x");
    }
}
