//! `kernel-package-lists/sources.yml`: the repositories the crawler reads.
//!
//! ```yaml
//! - name: debian-bookworm-security       # list file: <name>.txt
//!   type: debian                         # layout type of the bundles
//!   kind: apt                            # apt | yum
//!   url: http://security.debian.org/debian-security   # canonical base URL
//!   suites: [bookworm-security]          # apt
//!   components: [main]                   # apt
//!   architectures: [amd64]               # apt
//!   packages: ['^linux-headers-.*-(amd64|cloud-amd64)$']   # roots, by package name
//!   grouping: depends                    # depends | single | suse
//!   keyring: keys/debian-archive-keyring.gpg
//! - name: centos-stream-9
//!   type: redhat
//!   kind: yum
//!   url: https://mirror.stream.centos.org
//!   repos: [9-stream/AppStream/x86_64/os]   # yum: paths holding repodata/
//!   packages: ['^kernel-devel$']
//!   grouping: single
//!   keyring: keys/RPM-GPG-KEY-CentOS-Official
//!   signed_index: false                  # yum: repomd.xml has no .asc upstream
//! ```
//! `mirrorlist:` (yum) names a file whose first URL replaces `url`/`repos`
//! (Amazon Linux).
//!
//! apt archives that spread one release over hosts (Ubuntu) need one entry
//! per release: `security_url:` serves the suites ending in `-security`,
//! and `ports_url:` the architectures other than amd64 and i386 (Ubuntu's
//! ports archive). An entry with ports architectures is split when loaded
//! into `<name>` (amd64, i386) and `<name>-ports` (the others, every suite
//! from `ports_url`), so an unreachable ports host never hides the amd64
//! kernels:
//! ```yaml
//! - name: ubuntu-noble
//!   type: ubuntu
//!   kind: apt
//!   url: http://archive.ubuntu.com/ubuntu
//!   security_url: http://security.ubuntu.com/ubuntu
//!   ports_url: http://ports.ubuntu.com/ubuntu-ports
//!   suites: [noble, noble-updates, noble-security]
//!   components: [main, restricted, universe]
//!   architectures: [amd64, arm64]
//!   grouping: depends
//!   keyring: keys/ubuntu-archive-keyring.gpg
//! ```
//!
//! Trust: `keyring` is an absolute host path, or a path relative to the
//! sources file, or the name of a key shipped in the binary (`keys/<file>`,
//! [`crate::trust::keys`]). apt sources need a signed Release; yum sources
//! need a signed repomd.xml unless `signed_index: false`, and every package
//! is signature-checked when built (gpgcheck) unless `gpgcheck: false`.
//! `insecure: true` turns every check off. Each opt-out warns on every crawl.

use crate::trust::keys::Keyring;
use anyhow::{anyhow, bail, Context, Result};
use regex::Regex;
use serde::Deserialize;
use std::path::Path;

/// The default allowance for clocks that disagree.
pub const DEFAULT_SKEW_SECS: i64 = 600;

/// The shipped sources, compiled in.
pub const SHIPPED_SOURCES: &str = include_str!("../../kernel-package-lists/sources.yml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Apt,
    Yum,
    /// A bucket's XML listing of COS builds ([`super::gcs`]).
    Gcs,
    /// Flatcar's release server for one channel and board ([`super::flatcar`]).
    Flatcar,
    /// Garden Linux's GitHub releases and component descriptors ([`super::garden`]).
    Garden,
    /// minikube's release list and the ISO config at each tag ([`super::minikube`]).
    Minikube,
    /// kernel.org's tarball listings and a config per series ([`super::kernelorg`]).
    #[serde(rename = "kernel-org")]
    KernelOrg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    /// A root headers package and the linux-headers/linux-kbuild packages
    /// its Depends name (Debian, Ubuntu).
    Depends,
    /// One package, one bundle (RHEL family, Oracle).
    Single,
    /// kernel-<flavour>-devel with the kernel-devel of the same version (SUSE).
    Suse,
    /// The files of one build directory (COS: kernel-src.tar.gz and kernel-headers.tgz).
    Build,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub name: String,
    #[serde(rename = "type")]
    pub layout: String,
    pub kind: Kind,
    pub url: String,
    /// apt: the base URL of the suites ending in `-security` (Ubuntu's
    /// security host); `url` when absent.
    #[serde(default)]
    pub security_url: Option<String>,
    /// apt: the base URL of every suite for architectures other than amd64
    /// and i386 (Ubuntu's ports archive); see the module documentation.
    #[serde(default)]
    pub ports_url: Option<String>,
    /// garden: the package pool the kernels' .debs are in (`…/pool/main/l`).
    #[serde(default)]
    pub pool_url: Option<String>,
    /// minikube: the base of the tag trees (`<tree_url>/<tag>/deploy/iso/…`).
    #[serde(default)]
    pub tree_url: Option<String>,
    /// minikube: kernel.org's `…/pub/linux/kernel`, where the tarballs are.
    #[serde(default)]
    pub kernel_url: Option<String>,
    /// kernel-org: the series crawled (`6.6`).
    #[serde(default)]
    pub series: Vec<String>,
    /// kernel-org: the config of a series' kernels, `{series}` replaced.
    #[serde(default)]
    pub config_url: Option<String>,
    /// kernel-org: how many of each series' newest releases are listed.
    #[serde(default)]
    pub newest: Option<usize>,
    #[serde(default)]
    pub suites: Vec<String>,
    #[serde(default)]
    pub components: Vec<String>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub repos: Vec<String>,
    #[serde(default)]
    pub mirrorlist: Option<String>,
    /// apt: an optional filter on the roots found from relationships;
    /// yum: the -devel package names to take.
    #[serde(default)]
    pub packages: Vec<String>,
    pub grouping: Grouping,
    /// As written: a host path, a path beside the sources file, or a
    /// shipped key's name.
    #[serde(default)]
    pub keyring: Option<String>,
    /// `keyring`, resolved when the file is loaded.
    #[serde(skip)]
    pub key: Option<Keyring>,
    /// yum: whether repomd.xml must carry a valid signature (.asc).
    #[serde(default = "yes")]
    pub signed_index: bool,
    /// yum: whether every package's own signature is checked before it is
    /// extracted (dnf's gpgcheck).
    #[serde(default = "yes")]
    pub gpgcheck: bool,
    /// No signature checks at all.
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub description: Option<String>,
    /// Refuse a Release whose Valid-Until has passed (apt's default).
    #[serde(default = "yes")]
    pub check_valid_until: bool,
    /// How far ahead of our clock a Release's Date may be (default 10m).
    #[serde(default)]
    pub clock_skew: Option<String>,
    /// A TLS client certificate presented to this source's hosts (PEM),
    /// with its key (a secret file: root's or ours, mode 0600) and the CA
    /// bundle trusted for them instead of the system's (Red Hat's CDN).
    #[serde(default)]
    pub client_cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub client_key: Option<std::path::PathBuf>,
    #[serde(default)]
    pub ca: Option<std::path::PathBuf>,
    /// Base URLs with the same layout where this source's packages go
    /// when its releases move (old-releases archives, CentOS's vault):
    /// tried for a package its own locations answer 404/410 for.
    #[serde(default)]
    pub archive_urls: Vec<String>,
    /// A snapshot archive with Debian's snapshot API, for packages gone
    /// from this source (looked up by name and version, checked by sha256).
    #[serde(default)]
    pub snapshot_url: Option<String>,
}

/// A kernel series as written (`6.6`): two short numbers (kernel-org sources).
pub fn valid_series(series: &str) -> bool {
    let parts: Vec<&str> = series.split('.').collect();
    parts.len() == 2 && parts.iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn yes() -> bool {
    true
}

/// The architectures Ubuntu's main archive serves; the others are on ports.
const MAIN_ARCHIVE_ARCHES: &[&str] = &["amd64", "i386"];

impl Source {
    pub fn patterns(&self) -> Result<Vec<Regex>> {
        self.packages
            .iter()
            .map(|p| Regex::new(p).with_context(|| format!("source {}: invalid package pattern {p:?}", self.name)))
            .collect()
    }

    pub fn clock_skew_secs(&self) -> i64 {
        self.clock_skew
            .as_deref()
            .and_then(|s| crate::util::parse_duration(s).ok())
            .map_or(DEFAULT_SKEW_SECS, |d| d.as_secs() as i64)
    }

    /// Whether the index (Release, repomd.xml) must be signed by `key`.
    pub fn index_key(&self) -> Option<&Keyring> {
        let checked = !self.insecure && (self.kind == Kind::Apt || self.signed_index);
        self.key.as_ref().filter(|_| checked)
    }

    /// The key every package must be signed by (yum gpgcheck).
    pub fn package_key(&self) -> Option<&Keyring> {
        let checked = !self.insecure && self.kind == Kind::Yum && self.gpgcheck;
        self.key.as_ref().filter(|_| checked)
    }

    /// What is not checked, for the warning each crawl logs.
    pub fn opt_outs(&self) -> Vec<&'static str> {
        if self.insecure {
            return vec!["insecure: true (no signature is checked)"];
        }
        let mut out = Vec::new();
        if self.kind == Kind::Yum && !self.signed_index {
            out.push("signed_index: false (repomd.xml is trusted on its transport)");
        }
        if self.kind == Kind::Yum && !self.gpgcheck {
            out.push("gpgcheck: false (package signatures are not checked)");
        }
        if self.kind == Kind::Gcs {
            out.push("a bucket listing is not signed (what it lists is trusted on its HTTPS transport)");
        }
        if self.kind == Kind::Garden {
            out.push("Garden Linux's releases and component descriptors are not signed and give no checksums (packages trusted on HTTPS)");
        }
        if self.kind == Kind::Flatcar {
            out.push(
                "Flatcar's release index and package lists are not checked against a signature (trusted on HTTPS)",
            );
        }
        if self.kind == Kind::Minikube {
            out.push("minikube's release list and ISO configs are not signed (trusted on HTTPS)");
        }
        if self.kind == Kind::KernelOrg {
            out.push("kernel.org's listings are trusted on HTTPS (the tarballs' .sign is not checked)");
        }
        out
    }

    pub fn matches(&self, selector: &str) -> bool {
        self.name == selector || self.layout == selector
    }

    /// The base URL serving `suite` (apt).
    pub fn base_for(&self, suite: &str) -> &str {
        match &self.security_url {
            Some(url) if suite.ends_with("-security") => url.trim_end_matches('/'),
            _ => self.url.trim_end_matches('/'),
        }
    }

    /// An entry with both archive and ports architectures, as the two
    /// sources it is crawled as (see the module documentation).
    fn split_ports(self) -> Vec<Source> {
        let Some(ports) = self.ports_url.clone() else { return vec![self] };
        let (main, other): (Vec<String>, Vec<String>) =
            self.architectures.iter().cloned().partition(|a| MAIN_ARCHIVE_ARCHES.contains(&a.as_str()));
        let mut out = Vec::new();
        if !other.is_empty() {
            let mut p = self.clone();
            p.name = format!("{}-ports", self.name);
            p.url = ports;
            p.security_url = None;
            p.ports_url = None;
            p.architectures = other;
            out.push(p);
        }
        if !main.is_empty() {
            let mut m = self;
            m.ports_url = None;
            m.architectures = main;
            out.insert(0, m);
        }
        out
    }

    fn validate(&self) -> Result<()> {
        let n = &self.name;
        if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            bail!("source name {n:?} must be letters, digits, '.', '_' or '-'");
        }
        for url in std::iter::once(&self.url)
            .chain(&self.security_url)
            .chain(&self.ports_url)
            .chain(&self.tree_url)
            .chain(&self.kernel_url)
            .chain(&self.config_url)
            .chain(&self.snapshot_url)
            .chain(&self.archive_urls)
        {
            if !url.contains("://") {
                bail!("source {n}: url {:?} is not a URL", crate::fetch::auth::redact(url));
            }
            // A URL is printed, listed and written into manifests: a secret
            // in it would leak everywhere.
            if url::Url::parse(url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some()) {
                bail!(
                    "source {n}: {} carries credentials in the URL; put them in an auth file (--auth-file, apt's auth.conf format) instead",
                    crate::fetch::auth::redact(url)
                );
            }
        }
        if self.kind == Kind::Yum && (self.security_url.is_some() || self.ports_url.is_some()) {
            bail!("source {n}: security_url and ports_url are apt settings");
        }
        match self.kind {
            Kind::Gcs if self.layout != "cos" => bail!("source {n}: bucket listings (kind: gcs) are for type cos"),
            Kind::Gcs => {}
            Kind::Flatcar if self.layout != "coreos" => {
                bail!("source {n}: Flatcar release servers (kind: flatcar) are for type coreos")
            }
            Kind::Flatcar => {}
            Kind::Garden if self.layout != "garden" => {
                bail!("source {n}: Garden Linux releases (kind: garden) are for type garden")
            }
            Kind::Garden if self.pool_url.is_none() => bail!("source {n}: garden sources need pool_url"),
            Kind::Garden => {}
            Kind::Minikube if self.layout != "minikube" => {
                bail!("source {n}: minikube release lists (kind: minikube) are for type minikube")
            }
            Kind::Minikube if self.tree_url.is_none() || self.kernel_url.is_none() => {
                bail!("source {n}: minikube sources need tree_url and kernel_url")
            }
            Kind::Minikube => {}
            Kind::KernelOrg if self.layout != "linuxkit" => {
                bail!("source {n}: kernel.org listings (kind: kernel-org) are for type linuxkit")
            }
            Kind::KernelOrg if self.config_url.is_none() || self.series.is_empty() => {
                bail!("source {n}: kernel-org sources need series and config_url")
            }
            Kind::KernelOrg => {
                if let Some(bad) = self.series.iter().find(|s| !valid_series(s)) {
                    bail!("source {n}: series {bad:?} is not a kernel series like '6.6'");
                }
            }
            _ => {
                crate::layout::Family::of(&self.layout).with_context(|| format!("source {n}"))?;
            }
        }
        match self.kind {
            Kind::Apt if self.suites.is_empty() || self.components.is_empty() || self.architectures.is_empty() => {
                bail!("source {n}: apt sources need suites, components and architectures")
            }
            Kind::Yum if self.repos.is_empty() && self.mirrorlist.is_none() => {
                bail!("source {n}: yum sources need repos or a mirrorlist")
            }
            _ => {}
        }
        if self.packages.is_empty() && self.kind == Kind::Yum {
            bail!("source {n}: yum sources need package patterns (e.g. '^kernel-devel$')");
        }
        self.patterns()?;
        if let Some(skew) = &self.clock_skew {
            crate::util::parse_duration(skew).map_err(|e| anyhow!("source {n}: clock_skew: {e}"))?;
        }
        if self.kind == Kind::Gcs && self.grouping != Grouping::Build {
            bail!("source {n}: bucket listings group by build (grouping: build)");
        }
        if self.kind == Kind::Flatcar && self.grouping != Grouping::Single {
            bail!("source {n}: a Flatcar release is one image (grouping: single)");
        }
        if matches!(self.kind, Kind::Minikube | Kind::KernelOrg) && self.grouping != Grouping::Build {
            bail!("source {n}: a release's source and config are one bundle (grouping: build)");
        }
        let unsigned = matches!(self.kind, Kind::Gcs | Kind::Flatcar | Kind::Garden | Kind::Minikube | Kind::KernelOrg);
        if self.keyring.is_none() && !self.insecure && !unsigned {
            bail!("source {n}: no keyring; give one, or set insecure: true to crawl it unsigned");
        }
        if self.kind == Kind::Apt && (!self.signed_index || !self.gpgcheck) {
            bail!("source {n}: signed_index and gpgcheck are yum settings (apt packages are checked through the signed Release)");
        }
        Ok(())
    }
}

/// Parse and validate a sources file's text, keyrings resolved against
/// the shipped keys only.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Source>> {
    parse_at(text, origin, None)
}

/// Parse and validate a sources file's text; relative keyrings are looked
/// for in `dir` (the file's directory) first.
pub fn parse_at(text: &str, origin: &str, dir: Option<&Path>) -> Result<Vec<Source>> {
    let written: Vec<Source> = serde_saphyr::from_str(text).map_err(|e| anyhow!("malformed sources {origin}: {e}"))?;
    for s in &written {
        s.validate().with_context(|| format!("in {origin}"))?;
    }
    let mut sources: Vec<Source> = written.into_iter().flat_map(Source::split_ports).collect();
    let mut names = std::collections::HashSet::new();
    for s in &mut sources {
        if let Some(value) = &s.keyring {
            s.key = Some(Keyring::resolve(value, dir).with_context(|| format!("in {origin}: source {}", s.name))?);
        }
        if !names.insert(s.name.clone()) {
            bail!("in {origin}: source {} is listed twice", s.name);
        }
    }
    Ok(sources)
}

/// Load `path`, or the shipped sources.
pub fn load(path: Option<&Path>) -> Result<Vec<Source>> {
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            parse_at(&text, &p.display().to_string(), p.parent())
        }
        None => parse(SHIPPED_SOURCES, "the shipped sources.yml"),
    }
}

/// The canonical archive bases a host's apt mirror can stand in for, as
/// the shipped sources name them (so no host name is written twice).
pub fn canonical_bases() -> crate::fetch::mirror::Canonical {
    let shipped = parse(SHIPPED_SOURCES, "the shipped sources.yml").unwrap_or_default();
    let ubuntu = shipped.iter().find(|s| s.layout == "ubuntu" && s.kind == Kind::Apt);
    let ports = shipped.iter().find(|s| s.layout == "ubuntu" && s.name.ends_with("-ports"));
    crate::fetch::mirror::Canonical {
        ubuntu_archive: ubuntu.map(|s| s.url.clone()),
        ubuntu_security: ubuntu.and_then(|s| s.security_url.clone()),
        ubuntu_ports: ports.map(|s| s.url.clone()),
    }
}

impl Source {
    /// The base URLs this source's packages are under.
    pub fn bases(&self) -> Vec<&str> {
        std::iter::once(self.url.as_str())
            .chain(self.security_url.as_deref())
            .chain(self.ports_url.as_deref())
            .collect()
    }
}

/// What the sources add to the fetcher: their client certificates (by
/// base URL) and where their packages go when they leave.
pub fn fetch_extras(
    sources: &[Source],
    credentials: &mut crate::fetch::Credentials,
    archives: &mut crate::fetch::Archives,
) -> Result<()> {
    use crate::fetch::auth::{ClientIdentity, Entry, Scope};
    for src in sources {
        let from = format!("source {}", src.name);
        let identity =
            ClientIdentity::from_parts(src.client_cert.clone(), src.client_key.clone(), src.ca.clone(), &from)?;
        if let Some(identity) = identity {
            for base in src.bases() {
                let scope = Scope::of_url(base).with_context(|| format!("{from}: {base} is not a URL"))?;
                credentials.add(Entry { scope, secret: None, identity: Some(identity.clone()), from: from.clone() })?;
            }
        }
        for archive in &src.archive_urls {
            for base in src.bases() {
                archives.add_prefix(base, archive);
            }
        }
        if let Some(snapshot) = &src.snapshot_url {
            for base in src.bases() {
                archives.add_snapshot(base, snapshot);
            }
        }
    }
    Ok(())
}

/// The sources named or typed by `selectors` (all when empty).
pub fn select<'a>(sources: &'a [Source], selectors: &[String]) -> Result<Vec<&'a Source>> {
    if selectors.is_empty() {
        return Ok(sources.iter().collect());
    }
    for sel in selectors {
        if !sources.iter().any(|s| s.matches(sel)) {
            bail!(
                "no source or type named {sel} (known: {})",
                sources.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(sources.iter().filter(|s| selectors.iter().any(|sel| s.matches(sel))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_sources_are_valid() {
        let sources = load(None).unwrap();
        assert!(sources.iter().any(|s| s.layout == "debian"));
        for s in sources.iter().filter(|s| s.layout == "debian") {
            assert!(
                s.url == crate::fetch::mirror::DEBIAN_ARCHIVE || s.url == crate::fetch::mirror::DEBIAN_SECURITY,
                "canonical Debian URLs only: {}",
                s.url
            );
        }
        let debian = select(&sources, &["debian".to_string()]).unwrap();
        assert!(debian.len() >= 7, "bookworm, -security, -updates, trixie, -security, bullseye, -security");
        for s in &debian {
            assert_eq!(s.architectures, ["amd64", "arm64"], "{}", s.name);
            assert!(s.packages.is_empty(), "{}: Debian selects by relationships, not by name", s.name);
        }
    }

    /// Issue 10 item 4: no shipped source depends on a key the host may
    /// lack, none is insecure, and every yum source checks packages.
    #[test]
    fn every_shipped_source_has_a_shipped_key_and_is_checked() {
        for s in load(None).unwrap() {
            assert!(matches!(s.key, Some(Keyring::Shipped(_))), "{}: {:?}", s.name, s.key);
            assert!(!s.insecure, "{}", s.name);
            assert!(s.key.as_ref().unwrap().bytes(4 << 20).is_ok(), "{}", s.name);
            if s.kind == Kind::Yum {
                assert!(s.package_key().is_some(), "{}: gpgcheck", s.name);
            } else {
                assert!(s.index_key().is_some(), "{}: signed Release", s.name);
            }
        }
    }

    #[test]
    fn opt_outs_are_named() {
        let yum = "- name: y\n  type: redhat\n  kind: yum\n  url: http://x/el\n  repos: [os]\n  packages: ['^kernel-devel$']\n  grouping: single\n  keyring: keys/RPM-GPG-KEY-Rocky-9\n";
        let s = &parse(yum, "t").unwrap()[0];
        assert!(s.opt_outs().is_empty() && s.index_key().is_some() && s.package_key().is_some());
        let s = &parse(&format!("{yum}  signed_index: false\n  gpgcheck: false\n"), "t").unwrap()[0];
        assert_eq!(s.opt_outs().len(), 2);
        assert!(s.index_key().is_none() && s.package_key().is_none());
        let apt = "- name: a\n  type: debian\n  kind: apt\n  url: http://x/debian\n  suites: [a]\n  components: [main]\n  architectures: [amd64]\n  grouping: depends\n  keyring: keys/debian-archive-keyring.gpg\n";
        assert!(parse(&format!("{apt}  gpgcheck: false\n"), "t").is_err(), "a yum setting on an apt source");
        assert!(parse(&apt.replace("keys/debian", "keys/nope"), "t").is_err(), "an unknown shipped key");
    }

    #[test]
    fn unsigned_needs_insecure() {
        let text = "- name: x\n  type: debian\n  kind: apt\n  url: http://x/debian\n  suites: [a]\n  components: [main]\n  architectures: [amd64]\n  packages: ['^linux-headers']\n  grouping: depends\n";
        let err = format!("{:#}", parse(text, "t").unwrap_err());
        assert!(err.contains("insecure: true"), "{err}");
        let ok = parse(&format!("{text}  insecure: true\n"), "t").unwrap();
        assert!(ok[0].insecure);
    }
}
