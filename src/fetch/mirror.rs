//! Mirror map: URLs in lists and manifests stay canonical; at fetch time a
//! canonical prefix is rewritten to a mirror's.
//!
//! Rules come from `--mirror CANONICAL=LOCAL`, from configuration, and by
//! default from the host's apt sources: a Debian or Ubuntu mirror there
//! serves the canonical archive URLs of that distribution (cloud images
//! point apt at their provider's mirror).

use anyhow::Result;
use std::path::Path;

/// The canonical Debian archive bases (sources.yml uses these).
pub const DEBIAN_ARCHIVE: &str = "http://ftp.debian.org/debian";
pub const DEBIAN_SECURITY: &str = "http://security.debian.org/debian-security";

/// The canonical bases a host's apt mirror can stand in for, by role
/// (the caller takes them from the shipped sources).
#[derive(Debug, Clone, Default)]
pub struct Canonical {
    pub ubuntu_archive: Option<String>,
    pub ubuntu_security: Option<String>,
    pub ubuntu_ports: Option<String>,
}

/// One `deb` entry of apt's configuration: its URI and suites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptEntry {
    pub uri: String,
    pub suites: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorMap {
    /// (canonical prefix, mirror prefix), longest canonical prefix first.
    rules: Vec<(String, String)>,
}

fn trim_slash(s: &str) -> String {
    s.trim_end_matches('/').to_string()
}

impl MirrorMap {
    pub fn add(&mut self, canonical: &str, mirror: &str) {
        let canonical = trim_slash(canonical);
        self.rules.retain(|(c, _)| *c != canonical);
        self.rules.push((canonical, trim_slash(mirror)));
        self.rules.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    }

    /// Parse `CANONICAL=LOCAL`.
    pub fn parse_rule(rule: &str) -> Result<(String, String), String> {
        let Some((canonical, mirror)) = rule.split_once('=') else {
            return Err(format!("invalid mirror rule {rule:?}: expected CANONICAL=LOCAL"));
        };
        if !canonical.contains("://") || !mirror.contains("://") {
            return Err(format!("invalid mirror rule {rule:?}: both sides must be URLs"));
        }
        Ok((canonical.to_string(), mirror.to_string()))
    }

    /// Add a `CANONICAL=LOCAL` rule.
    pub fn add_rule(&mut self, rule: &str) -> Result<()> {
        let (canonical, mirror) = Self::parse_rule(rule).map_err(|e| anyhow::anyhow!(e))?;
        self.add(&canonical, &mirror);
        Ok(())
    }

    /// Add rules that do not override existing ones.
    pub fn add_defaults(&mut self, other: &MirrorMap) {
        for (c, m) in &other.rules {
            if !self.rules.iter().any(|(existing, _)| existing == c) {
                self.add(c, m);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[(String, String)] {
        &self.rules
    }

    /// The URL to fetch for a canonical URL.
    pub fn rewrite(&self, url: &str) -> String {
        for (canonical, mirror) in &self.rules {
            if let Some(rest) = url.strip_prefix(canonical.as_str()) {
                if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') {
                    return format!("{mirror}{rest}");
                }
            }
        }
        url.to_string()
    }

    /// Debian and Ubuntu mirrors named by apt's configuration under
    /// `etc_apt` (`sources.list`, `sources.list.d/*.list` and `*.sources`):
    /// a URI ending in `/debian`, `/debian-security`, `/ubuntu` or
    /// `/ubuntu-ports` stands for that archive; an Ubuntu URI serves the
    /// security pocket when its suites are `*-security` ones (a cloud
    /// mirror often serves both). The first entry for a role wins; one that
    /// is the canonical URL itself adds nothing.
    pub fn from_apt(etc_apt: &Path, canonical: &Canonical) -> MirrorMap {
        let mut map = MirrorMap::default();
        for entry in apt_sources(etc_apt) {
            let uri = trim_slash(&entry.uri);
            let security = entry.suites.iter().any(|s| s.ends_with("-security"));
            let plain = entry.suites.is_empty() || entry.suites.iter().any(|s| !s.ends_with("-security"));
            let mut roles: Vec<&str> = Vec::new();
            if uri.ends_with("/debian-security") {
                roles.push(DEBIAN_SECURITY);
            } else if uri.ends_with("/debian") {
                roles.push(DEBIAN_ARCHIVE);
            } else if uri.ends_with("/ubuntu-ports") {
                roles.extend(canonical.ubuntu_ports.as_deref());
            } else if uri.ends_with("/ubuntu") {
                if plain {
                    roles.extend(canonical.ubuntu_archive.as_deref());
                }
                if security {
                    roles.extend(canonical.ubuntu_security.as_deref());
                }
            }
            for role in roles {
                let role = trim_slash(role);
                if uri != role && !map.rules.iter().any(|(c, _)| *c == role) {
                    map.add(&role, &uri);
                }
            }
        }
        map
    }
}

/// Every `deb` source URI in apt's configuration.
pub fn apt_source_uris(etc_apt: &Path) -> Vec<String> {
    apt_sources(etc_apt).into_iter().map(|e| e.uri).collect()
}

/// Every `deb` entry (URI and suites) in apt's configuration, in apt's order.
pub fn apt_sources(etc_apt: &Path) -> Vec<AptEntry> {
    let mut uris = Vec::new();
    let mut files = vec![etc_apt.join("sources.list")];
    if let Ok(dir) = std::fs::read_dir(etc_apt.join("sources.list.d")) {
        let mut more: Vec<_> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let name = file.to_string_lossy();
        if name.ends_with(".sources") {
            uris.extend(deb822_uris(&text));
        } else if name.ends_with(".list") {
            uris.extend(one_line_uris(&text));
        }
    }
    uris
}

fn one_line_uris(text: &str) -> Vec<AptEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let mut rest: Vec<&str> = words.collect();
        if rest.first().is_some_and(|w| w.starts_with('[')) {
            while let Some(w) = rest.first() {
                let done = w.ends_with(']');
                rest.remove(0);
                if done {
                    break;
                }
            }
        }
        if let Some(uri) = rest.first() {
            out.push(AptEntry {
                uri: uri.to_string(),
                suites: rest.get(1).map(|s| s.to_string()).into_iter().collect(),
            });
        }
    }
    out
}

fn deb822_uris(text: &str) -> Vec<AptEntry> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types_deb = false;
        let mut enabled = true;
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            if let Some((key, value)) = line.split_once(':') {
                match key.trim().to_ascii_lowercase().as_str() {
                    "types" => types_deb = value.split_whitespace().any(|t| t == "deb"),
                    "uris" => uris = value.split_whitespace().map(str::to_string).collect(),
                    "suites" => suites = value.split_whitespace().map(str::to_string).collect(),
                    "enabled" => enabled = !value.trim().eq_ignore_ascii_case("no"),
                    _ => {}
                }
            }
        }
        if types_deb && enabled {
            out.extend(uris.into_iter().map(|uri| AptEntry { uri, suites: suites.clone() }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_longest_prefix() {
        let mut m = MirrorMap::default();
        m.add_rule("http://example.org/a=http://127.0.0.1:1/x").unwrap();
        m.add_rule("http://example.org/a/b=http://127.0.0.1:1/y/").unwrap();
        assert_eq!(m.rewrite("http://example.org/a/b/c.deb"), "http://127.0.0.1:1/y/c.deb");
        assert_eq!(m.rewrite("http://example.org/a/c.deb"), "http://127.0.0.1:1/x/c.deb");
        assert_eq!(m.rewrite("http://example.org/ab/c.deb"), "http://example.org/ab/c.deb");
        assert!(m.add_rule("nonsense").is_err());
    }

    #[test]
    fn reads_apt_sources() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sources.list.d")).unwrap();
        std::fs::write(
            dir.path().join("sources.list.d/x.sources"),
            "Types: deb\nURIs: http://mirror.test/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://mirror.test/debian-security/\nSuites: bookworm-security\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("sources.list"), "deb [arch=amd64] http://other.test/ubuntu jammy main\n")
            .unwrap();
        let m = MirrorMap::from_apt(dir.path(), &Canonical::default());
        assert_eq!(m.rewrite("http://ftp.debian.org/debian/pool/x.deb"), "http://mirror.test/debian/pool/x.deb");
        assert_eq!(
            m.rewrite("http://security.debian.org/debian-security/dists/x"),
            "http://mirror.test/debian-security/dists/x"
        );
        assert_eq!(m.rules().len(), 2);
    }

    #[test]
    fn reads_an_ubuntu_hosts_mirrors_by_role() {
        let canonical = Canonical {
            ubuntu_archive: Some("http://archive.example/ubuntu".into()),
            ubuntu_security: Some("http://security.example/ubuntu".into()),
            ubuntu_ports: Some("http://ports.example/ubuntu-ports".into()),
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sources.list.d")).unwrap();
        // A cloud image: one mirror for the release and -updates, the
        // canonical security host for -security, ports on another mirror.
        std::fs::write(
            dir.path().join("sources.list.d/ubuntu.sources"),
            "Types: deb\nURIs: http://cloud.mirror.test/ubuntu/\nSuites: noble noble-updates\nComponents: main\n\n\
             Types: deb\nURIs: http://security.example/ubuntu/\nSuites: noble-security\nComponents: main\n\n\
             Types: deb\nURIs: http://ports.mirror.test/ubuntu-ports\nSuites: noble noble-security\n",
        )
        .unwrap();
        let m = MirrorMap::from_apt(dir.path(), &canonical);
        assert_eq!(m.rewrite("http://archive.example/ubuntu/pool/a.deb"), "http://cloud.mirror.test/ubuntu/pool/a.deb");
        assert_eq!(m.rewrite("http://security.example/ubuntu/pool/a.deb"), "http://security.example/ubuntu/pool/a.deb");
        assert_eq!(
            m.rewrite("http://ports.example/ubuntu-ports/dists/x"),
            "http://ports.mirror.test/ubuntu-ports/dists/x"
        );
        // A mirror that serves -security too stands for the security host.
        std::fs::write(dir.path().join("sources.list"), "deb http://az.mirror.test/ubuntu noble-security main\n")
            .unwrap();
        std::fs::remove_file(dir.path().join("sources.list.d/ubuntu.sources")).unwrap();
        let m = MirrorMap::from_apt(dir.path(), &canonical);
        assert_eq!(m.rewrite("http://security.example/ubuntu/pool/a.deb"), "http://az.mirror.test/ubuntu/pool/a.deb");
        assert_eq!(m.rewrite("http://archive.example/ubuntu/pool/a.deb"), "http://archive.example/ubuntu/pool/a.deb");
    }
}
