//! `kpackfs which`: a kernel as users identify it → its bundle.
//!
//! Identifiers: the running kernel (`uname -r`, and `/etc/os-release` for
//! the distribution), a release, Falco's release and version pair (the
//! version as `uname -v` prints it, as Falco's kernelversion, or as a
//! package version), a package file name, collector's `bundle-<name>.tgz`.

use super::resolve::{self, describe, LookupError};
use super::suggest;
use crate::manifest::index::Index;
use std::path::Path;

/// `/etc/os-release`, the fields that identify the distribution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub id_like: Vec<String>,
    pub version_id: Option<String>,
}

impl OsRelease {
    pub fn parse(text: &str) -> OsRelease {
        let mut os = OsRelease::default();
        for line in text.lines().take(200) {
            let Some((key, value)) = line.split_once('=') else { continue };
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
            match key.trim() {
                "ID" => os.id = value.to_ascii_lowercase(),
                "ID_LIKE" => os.id_like = value.split_whitespace().map(str::to_ascii_lowercase).collect(),
                "VERSION_ID" => os.version_id = Some(value),
                _ => {}
            }
        }
        os
    }

    /// `<root>/etc/os-release`, else `<root>/usr/lib/os-release` (as
    /// systemd reads it; `root` is `/`, or the host's root seen from a
    /// container, as Falco's HOST_ROOT).
    pub fn read(root: &Path) -> Option<OsRelease> {
        ["etc/os-release", "usr/lib/os-release"].iter().find_map(|p| {
            use std::io::Read;
            let mut text = String::new();
            std::fs::File::open(root.join(p)).ok()?.take(64 << 10).read_to_string(&mut text).ok()?;
            Some(OsRelease::parse(&text))
        })
    }

    /// kpackfs types that hold this distribution's kernels, best first.
    pub fn types(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for id in std::iter::once(&self.id).chain(&self.id_like) {
            for t in types_of_id(id) {
                if !out.contains(t) {
                    out.push(*t);
                }
            }
        }
        out
    }

    pub fn describe(&self) -> String {
        match &self.version_id {
            Some(v) => format!("{} {v}", self.id),
            None => self.id.clone(),
        }
    }
}

/// os-release IDs → kpackfs types (docs/lookup.md).
pub fn types_of_id(id: &str) -> &'static [&'static str] {
    match id {
        "debian" => &["debian"],
        "gardenlinux" => &["garden", "debian"],
        "ubuntu" => &["ubuntu"],
        "ol" => &["oracle", "redhat"],
        "rhel" | "centos" | "rocky" | "almalinux" | "fedora" | "amzn" => &["redhat"],
        "opensuse" | "opensuse-leap" | "sles" | "sled" | "suse" => &["suse"],
        "cos" => &["cos"],
        "flatcar" | "coreos" | "fedora-coreos" => &["coreos"],
        "minikube" => &["minikube"],
        _ => &[],
    }
}

/// The running kernel's release: `<root>/proc/sys/kernel/osrelease`, as
/// `uname -r` reports it.
pub fn running_release(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("proc/sys/kernel/osrelease"))
        .or_else(|_| std::fs::read_to_string("/proc/sys/kernel/osrelease"))
        .ok()?;
    Some(text.trim().to_string()).filter(|s| !s.is_empty())
}

/// Whether an Ubuntu kernel is a backport, as far as a version says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backport {
    Unknown,
    None,
    /// The release series it was built for (`22.04`).
    Of(String),
}

/// The backport series of an Ubuntu version (`6.8.0-40.40~22.04.3`: `22.04`).
fn backport_series(version: &str) -> Option<String> {
    let after = version.split_once('~')?.1;
    let series: Vec<&str> = after.split(['.', '-']).take(2).collect();
    (series.len() == 2 && series.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
        .then(|| series.join("."))
}

/// What a version argument pins down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// A distribution package version (`6.1.192-2`, from `uname -v` on
    /// Debian or given as is).
    Package(String),
    /// Ubuntu's upload number (`101` of `5.15.0-91.101`): Falco's
    /// kernelversion, or `#101-Ubuntu` in `uname -v`; and whether the
    /// kernel is a backport, when known: `uname -v` says (`#40~22.04.3-Ubuntu`
    /// is 22.04's backport, `#40-Ubuntu` is no backport), Falco's number
    /// does not.
    Upload(String, Backport),
    /// Falco's kernelversion for distributions where it is only a build
    /// counter (Debian's `#1`): no constraint.
    Counter(String),
}

impl Version {
    /// Read a version as users give it.
    pub fn parse(text: &str) -> Version {
        let t = text.trim();
        // `uname -v`: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2025-10-05)"
        if let Some(after) = t.split_once(" Debian ").map(|(_, a)| a) {
            if let Some(v) = after.split_whitespace().next() {
                return Version::Package(v.to_string());
            }
        }
        // `uname -v`: "#101~20.04.1-Ubuntu SMP …" or "#101-Ubuntu SMP …"
        if let Some(first) = t.strip_prefix('#').and_then(|r| r.split_whitespace().next()) {
            let digits: String = first.chars().take_while(char::is_ascii_digit).collect();
            if first.contains("-Ubuntu") && !digits.is_empty() {
                let backport = backport_series(first).map_or(Backport::None, Backport::Of);
                return Version::Upload(digits, backport);
            }
            if !digits.is_empty() {
                return Version::Counter(digits);
            }
        }
        if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
            return Version::Upload(t.to_string(), Backport::Unknown);
        }
        Version::Package(t.to_string())
    }

    /// Whether a package file of a bundle carries this version.
    fn matches_file(&self, kind: &str, file: &str) -> bool {
        let version = package_version(file);
        match self {
            Version::Counter(_) => true,
            Version::Package(v) => version.as_deref() == Some(v.as_str()),
            // Ubuntu's upload number; elsewhere Falco's kernelversion is a counter.
            Version::Upload(n, backport) if kind == "ubuntu" => version.as_deref().is_some_and(|v| {
                let base = v.split('~').next().unwrap_or(v);
                let same_series = match backport {
                    Backport::Unknown => true,
                    Backport::None => backport_series(v).is_none(),
                    Backport::Of(s) => backport_series(v).as_deref() == Some(s.as_str()),
                };
                same_series && base.rsplit_once('.').is_some_and(|(_, upload)| upload == n)
            }),
            Version::Upload(..) => true,
        }
    }
}

/// The version field of a package file name (`name_version_arch.deb`,
/// `name-version-release.arch.rpm` gives `version-release`).
pub fn package_version(file: &str) -> Option<String> {
    if let Some(stem) = file.strip_suffix(".deb") {
        let mut parts = stem.split('_');
        let _name = parts.next()?;
        return parts.next().map(|v| v.replace("%7e", "~").replace("%7E", "~"));
    }
    let (_, ver, rel, _) = crate::manifest::parse_nevra(file)?;
    Some(format!("{ver}-{rel}"))
}

/// A kernel as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kernel {
    Release {
        release: String,
        version: Option<Version>,
    },
    PackageFile(String),
    /// A bundle name in any form `resolve` accepts (`bundle-NAME.tgz`, …).
    BundleName(String),
}

impl Kernel {
    /// From `which`'s arguments (the running kernel's release when none).
    pub fn from_args(args: &[String], running: impl FnOnce() -> Option<String>) -> Result<Kernel, String> {
        match args {
            [] => running()
                .map(|release| Kernel::Release { release, version: None })
                .ok_or_else(|| "cannot read the running kernel's release (uname -r)".to_string()),
            [one] if one.ends_with(".deb") || one.ends_with(".rpm") => {
                Ok(Kernel::PackageFile(one.rsplit('/').next().unwrap_or(one).to_string()))
            }
            [one] if one.ends_with(".tgz") || one.contains('/') => Ok(Kernel::BundleName(one.clone())),
            [release] => Ok(Kernel::Release { release: release.clone(), version: None }),
            [release, version] => {
                Ok(Kernel::Release { release: release.clone(), version: Some(Version::parse(version)) })
            }
            _ => Err("give at most a release and a version".to_string()),
        }
    }
}

/// Why `which` found no single bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhichError {
    Lookup(LookupError),
    /// Known, but only for other distributions.
    OtherDistribution {
        release: String,
        distro: String,
        found: Vec<String>,
    },
    /// kpackfs serves no kernel of the distribution at all.
    NotCrawled {
        distro: String,
        types: Vec<String>,
    },
    /// Bundles with this release exist, none with the version asked for.
    NoSuchVersion {
        release: String,
        version: String,
        found: Vec<String>,
    },
    /// No bundle has this release (of the distribution, when known).
    UnknownRelease {
        release: String,
        distro: Option<String>,
        closest: Vec<String>,
    },
}

impl std::fmt::Display for WhichError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WhichError::Lookup(e) => write!(f, "{e}"),
            WhichError::OtherDistribution { release, distro, found } => write!(
                f,
                "{release} is known only for other distributions than {distro}: {}; give --distro to pick one",
                found.join(", ")
            ),
            WhichError::NotCrawled { distro, types } if types.is_empty() => {
                write!(f, "kpackfs has no bundle type for distribution {distro}")
            }
            WhichError::NotCrawled { distro, types } => write!(
                f,
                "kpackfs serves no {} kernels: distribution {distro} is not crawled (add a source to sources.yml, docs/crawl.md)",
                types.join("/")
            ),
            WhichError::NoSuchVersion { release, version, found } => {
                write!(f, "no bundle of {release} has version {version}; there are: {}", found.join(", "))
            }
            WhichError::UnknownRelease { release, distro, closest } => {
                write!(f, "no bundle for kernel {release}")?;
                if let Some(d) = distro {
                    write!(f, " of {d}")?;
                }
                match closest.is_empty() {
                    true => write!(f, " (nothing close)"),
                    false => write!(f, "; closest: {}", closest.join(", ")),
                }
            }
        }
    }
}

impl std::error::Error for WhichError {}

fn labels(index: &Index, slots: &[u32]) -> Vec<String> {
    slots.iter().map(|s| describe(index, *s)).collect()
}

/// Served slots whose packages include `file`.
fn holding_file(index: &Index, slots: impl Iterator<Item = u32>, file: &str) -> Vec<u32> {
    slots
        .filter(|s| index.is_served(*s))
        .filter(|s| index.entry(*s).is_some_and(|(_, spec, _)| spec.packages.iter().any(|p| p.file_name() == file)))
        .collect()
}

/// Find the one bundle for `kernel`, among `types` when given (the
/// distribution's, best first).
pub fn find(index: &Index, kernel: &Kernel, distro: Option<(&str, &[&str])>) -> Result<u32, WhichError> {
    match kernel {
        Kernel::BundleName(name) => resolve::resolve(index, name).map_err(WhichError::Lookup),
        Kernel::PackageFile(file) => {
            // The release the file names, by each family's naming rule; else every entry.
            let mut unames: Vec<String> = ["debian", "ubuntu", "redhat", "suse"]
                .iter()
                .filter_map(|k| crate::manifest::derive_names(k, &[file]).ok())
                .map(|n| n.uname)
                .collect();
            unames.dedup();
            let mut found: Vec<u32> =
                unames.iter().flat_map(|u| holding_file(index, index.find_uname(u).into_iter(), file)).collect();
            if found.is_empty() {
                found = holding_file(index, 0..index.slot_count(), file);
            }
            found.sort();
            found.dedup();
            pick(index, file, found, distro)
        }
        Kernel::Release { release, version } => {
            let mut found = index.find_uname(release);
            if found.is_empty() {
                if let Ok(slot) = resolve::resolve(index, release) {
                    found.push(slot);
                }
            }
            if found.is_empty() {
                return Err(unknown_release(index, release, distro));
            }
            if let Some(version) = version {
                let matching: Vec<u32> = found
                    .iter()
                    .copied()
                    .filter(|s| {
                        index.entry(*s).is_some_and(|(_, spec, _)| {
                            spec.packages.iter().any(|p| version.matches_file(&spec.kind, p.file_name()))
                        })
                    })
                    .collect();
                if matching.is_empty() {
                    let found = found
                        .iter()
                        .filter_map(|s| {
                            let (_, spec, _) = index.entry(*s)?;
                            let v = spec.packages.iter().find_map(|p| package_version(p.file_name()))?;
                            Some(format!("{} {v}", describe(index, *s)))
                        })
                        .collect();
                    let shown = match version {
                        Version::Package(v) | Version::Upload(v, _) | Version::Counter(v) => v.clone(),
                    };
                    return Err(WhichError::NoSuchVersion { release: release.clone(), version: shown, found });
                }
                found = matching;
            }
            pick(index, release, super::arch::prefer_this_machine(index, found), distro)
        }
    }
}

/// One of `found`, narrowed to the distribution's types.
fn pick(index: &Index, query: &str, found: Vec<u32>, distro: Option<(&str, &[&str])>) -> Result<u32, WhichError> {
    let narrowed: Vec<u32> = match distro {
        Some((_, types)) if !types.is_empty() => {
            // The distribution's first type that has one wins.
            types
                .iter()
                .map(|t| found.iter().copied().filter(|s| index.kind(*s) == Some(*t)).collect::<Vec<_>>())
                .find(|v| !v.is_empty())
                .unwrap_or_default()
        }
        _ => found.clone(),
    };
    match (narrowed.as_slice(), distro) {
        ([one], _) => Ok(*one),
        ([], Some((name, _))) if !found.is_empty() => Err(WhichError::OtherDistribution {
            release: query.to_string(),
            distro: name.to_string(),
            found: labels(index, &found),
        }),
        ([], _) => Err(WhichError::Lookup(LookupError::Unknown { query: query.to_string(), closest: Vec::new() })),
        (many, _) => Err(WhichError::Lookup(LookupError::Ambiguous {
            query: query.to_string(),
            candidates: labels(index, many),
        })),
    }
}

/// No bundle has `release`: say whether the distribution is crawled at
/// all, and the closest releases it has.
fn unknown_release(index: &Index, release: &str, distro: Option<(&str, &[&str])>) -> WhichError {
    let types: Vec<u16> = (0..index.type_count() as u16)
        .filter(|t| distro.is_none_or(|(_, types)| index.type_name(*t).is_some_and(|n| types.contains(&n))))
        .filter(|t| index.type_len(*t).unwrap_or(0) > 0)
        .collect();
    if let (Some((name, wanted)), true) = (distro, types.is_empty()) {
        return WhichError::NotCrawled {
            distro: name.to_string(),
            types: wanted.iter().map(|t| t.to_string()).collect(),
        };
    }
    let mut unames = Vec::new();
    for t in types {
        for i in 0..index.type_len(t).unwrap_or(0) {
            if let Some(u) = index.type_at(t, i).and_then(|(slot, _)| index.uname(slot)) {
                unames.push(u.to_string());
            }
        }
    }
    let closest = suggest::closest(release, unames.iter().map(String::as_str), 5);
    WhichError::UnknownRelease {
        release: release.to_string(),
        distro: distro.map(|(name, _)| name.to_string()),
        closest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_and_its_types() {
        let os = OsRelease::parse(
            "PRETTY_NAME=\"Rocky Linux 9.4\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n",
        );
        assert_eq!(os.id, "rocky");
        assert_eq!(os.types(), ["redhat"]);
        assert_eq!(os.describe(), "rocky 9.4");
        let ol = OsRelease::parse("ID=\"ol\"\nID_LIKE=\"fedora\"\n");
        assert_eq!(ol.types(), ["oracle", "redhat"]);
        assert_eq!(OsRelease::parse("ID=plan9\n").types(), Vec::<&str>::new());
    }

    #[test]
    fn versions_as_users_give_them() {
        assert_eq!(
            Version::parse("#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2025-10-05)"),
            Version::Package("6.1.192-2".into())
        );
        assert_eq!(
            Version::parse("#101~20.04.1-Ubuntu SMP Fri Jan 1"),
            Version::Upload("101".into(), Backport::Of("20.04".into()))
        );
        assert_eq!(Version::parse("#40-Ubuntu SMP PREEMPT_DYNAMIC"), Version::Upload("40".into(), Backport::None));
        assert_eq!(Version::parse("#1 SMP PREEMPT_DYNAMIC"), Version::Counter("1".into()));
        assert_eq!(Version::parse("101"), Version::Upload("101".into(), Backport::Unknown));
        assert_eq!(Version::parse("6.1.192-2"), Version::Package("6.1.192-2".into()));
        let v = Version::Upload("54".into(), Backport::Unknown);
        assert!(v.matches_file("ubuntu", "linux-headers-5.15.0-1049-aws_5.15.0-1049.54~20.04.1_amd64.deb"));
        assert!(!v.matches_file("ubuntu", "linux-headers-5.15.0-1049-aws_5.15.0-1049.55_amd64.deb"));
        assert!(Version::Upload("1".into(), Backport::Unknown)
            .matches_file("debian", "linux-headers-6.1.0-56-amd64_6.1.192-2_amd64.deb"));
        // A jammy HWE kernel and noble's build of the same release differ by `uname -v`.
        let (hwe, noble) = (
            "linux-headers-6.8.0-40-generic_6.8.0-40.40~22.04.3_amd64.deb",
            "linux-headers-6.8.0-40-generic_6.8.0-40.40_amd64.deb",
        );
        let on_jammy = Version::parse("#40~22.04.3-Ubuntu SMP PREEMPT_DYNAMIC");
        let on_noble = Version::parse("#40-Ubuntu SMP PREEMPT_DYNAMIC");
        assert!(on_jammy.matches_file("ubuntu", hwe) && !on_jammy.matches_file("ubuntu", noble));
        assert!(on_noble.matches_file("ubuntu", noble) && !on_noble.matches_file("ubuntu", hwe));
        assert_eq!(
            package_version("kernel-devel-5.14.0-427.13.1.el9_4.x86_64.rpm").as_deref(),
            Some("5.14.0-427.13.1.el9_4")
        );
    }

    #[test]
    fn arguments_name_the_kernel() {
        let k = |args: &[&str]| {
            Kernel::from_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>(), || Some("6.1.0-56-amd64".into()))
        };
        assert_eq!(k(&[]), Ok(Kernel::Release { release: "6.1.0-56-amd64".into(), version: None }));
        assert_eq!(
            k(&["/tmp/linux-headers-6.1.0-56-amd64_6.1.192-2_amd64.deb"]),
            Ok(Kernel::PackageFile("linux-headers-6.1.0-56-amd64_6.1.192-2_amd64.deb".into()))
        );
        assert_eq!(k(&["bundle-6.1.0-56-amd64.tgz"]), Ok(Kernel::BundleName("bundle-6.1.0-56-amd64.tgz".into())));
        assert!(matches!(
            k(&["6.1.0-56-amd64", "6.1.192-2"]),
            Ok(Kernel::Release { version: Some(Version::Package(_)), .. })
        ));
        assert!(k(&["a", "b", "c"]).is_err());
    }
}
