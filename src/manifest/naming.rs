//! Bundle name and kernel release from package file names, before any download.
//!
//! The rules follow what kernel-packer's repackaging produced from package
//! contents, so that the names collector looks up (`bundle-<name>.tgz`) agree:
//! - Debian family (debian, garden): `linux-headers-<uname>_…` that is not `-common`.
//! - Ubuntu: `linux-headers-<ver>-<abi>-<flavour>_<version>_…`; a backport
//!   version (`…~20.04.1`) adds `~<series>` to the name (not to the uname),
//!   as kernel-packer did for 16.04 and 20.04; an architecture other than
//!   amd64 adds `-<arch>` before it (Ubuntu's releases do not carry it).
//! - RPM family: the NEVRA of the -devel package. SUSE drops the last release
//!   component and appends the flavour: `kernel-default-devel-5.14.21-150400.24.84.1`
//!   is `5.14.21-150400.24.84-default`.
//!
//! Types whose kernel release only shows inside package contents get an error
//! that says so; [`name_from_urls`] still gives them a stable name from what
//! the manifest holds (a COS build number, a CoreOS or minikube version, a
//! kernel tarball's version, a subscription package's checksum).

use regex::Regex;
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The path component and `bundle-<name>.tgz`.
    pub name: String,
    /// The kernel release: BUNDLE_UNAME.
    pub uname: String,
}

impl Names {
    fn same(uname: String) -> Self {
        Names { name: uname.clone(), uname }
    }
}

fn regex(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("static regex"))
}

/// Derive name and uname for a bundle of type `kind` from its package file names.
pub fn derive_names(kind: &str, files: &[&str]) -> Result<Names, String> {
    match kind {
        "debian" | "garden" | "kops" => debian(files),
        "ubuntu" => ubuntu(files),
        "redhat" | "oracle" => rpm_family(kind, files),
        "suse" => suse(files),
        "cos" => Err("cos: the kernel release comes from the Makefile inside kernel-src.tar.gz".into()),
        "coreos" => {
            Err("coreos: the kernel release comes from lib/modules inside the developer container image".into())
        }
        "minikube" => Err("minikube: the kernel release comes from the configured buildroot source tree".into()),
        "linuxkit" | "dockerdesktop" => {
            Err(format!("{kind}: the kernel release comes from the Makefile inside the source tarball"))
        }
        other => Err(format!("{other}: no naming rule for this type")),
    }
}

fn debian(files: &[&str]) -> Result<Names, String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = regex(&RE, r"linux-headers-([0-9][^_/]*)_[^_]+_[a-z0-9]+\.deb$");
    let unames: Vec<String> = files
        .iter()
        .filter_map(|f| re.captures(f).map(|c| c[1].to_string()))
        .filter(|u| !u.ends_with("-common") && !u.contains("-common-"))
        .collect();
    match unames.as_slice() {
        [one] => Ok(Names::same(one.clone())),
        [] => Err("debian: no linux-headers-<release> package (other than -common) among the packages".into()),
        many => Err(format!("debian: more than one flavour of headers: {}", many.join(", "))),
    }
}

fn ubuntu(files: &[&str]) -> Result<Names, String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    // The flavour package: linux-headers-<x.y.z>-<abi>-<flavour>_<version>_<arch>.deb
    let re = regex(&RE, r"linux-headers-([0-9]+\.[0-9]+\.[0-9]+-[0-9]+-[a-z][a-z0-9-]*)_([^_]+)_([a-z0-9]+)\.deb$");
    let found: Vec<(String, String, String)> = files
        .iter()
        .filter_map(|f| re.captures(f).map(|c| (c[1].to_string(), c[2].to_string(), c[3].to_string())))
        .collect();
    let (uname, version, arch) = match found.as_slice() {
        [one] => one.clone(),
        [] => return Err("ubuntu: no linux-headers-<release>-<flavour> package among the packages".into()),
        many => {
            return Err(format!(
                "ubuntu: more than one flavour of headers: {}",
                many.iter().map(|(u, _, _)| u.as_str()).collect::<Vec<_>>().join(", ")
            ))
        }
    };
    let arch = if matches!(arch.as_str(), "amd64" | "all") { String::new() } else { format!("-{arch}") };
    Ok(Names { name: format!("{uname}{arch}{}", ubuntu_backport_suffix(&version)), uname })
}

/// kernel-packer appends `~16.04` / `~20.04` for backported kernels, the two
/// series collector's bootstrap looks up under a suffixed name. Every other
/// series gets its suffix too: without it a backport (`6.8.0-40-generic`
/// built for 22.04, `6.8.0-40.40~22.04.3`) and the release it comes from
/// (24.04's `6.8.0-40.40`) would share a name, and one would be hidden.
fn ubuntu_backport_suffix(version: &str) -> String {
    static RE: OnceLock<Regex> = OnceLock::new();
    // `~22.04.1`, or `-22.04.1` in a simplified name (`~` became `-`),
    // right after the ABI number and upload number (`6.8.0-40.40`).
    let re = regex(&RE, r"^[0-9]+\.[0-9]+\.[0-9]+-[0-9]+\.[0-9]+(\.[0-9]+)?[~-]([0-9]{2}\.[0-9]{2})([.+~].*)?$");
    re.captures(version).map_or(String::new(), |c| format!("~{}", &c[2]))
}

/// name-version-release.arch from an RPM file name.
pub(crate) fn parse_nevra(file: &str) -> Option<(String, String, String, String)> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = regex(&RE, r"^(.+)-([^-]+)-([^-]+)\.([A-Za-z0-9_]+)\.rpm$");
    let c = re.captures(file)?;
    Some((c[1].to_string(), c[2].to_string(), c[3].to_string(), c[4].to_string()))
}

fn rpm_family(kind: &str, files: &[&str]) -> Result<Names, String> {
    let mut unames = Vec::new();
    for f in files {
        let Some((name, ver, rel, arch)) = parse_nevra(f) else { continue };
        let variant = match name.as_str() {
            "kernel-devel" | "kernel-lt-devel" | "kernel-ml-devel" | "kernel-uek-devel" => "",
            // RHEL 9.3+ builds variants from one kernel; their release lacks the variant.
            "kernel-rt-devel" if !rel.contains(".rt") => "+rt",
            "kernel-rt-devel" => "",
            "kernel-64k-devel" => "+64k",
            "kernel-debug-devel" | "kernel-uek-debug-devel" => "+debug",
            _ => continue,
        };
        unames.push(format!("{ver}-{rel}.{arch}{variant}"));
    }
    match unames.as_slice() {
        [one] => Ok(Names::same(one.clone())),
        [] if files.iter().any(|f| !f.ends_with(".rpm")) => Err(format!(
            "{kind}: the package URL names no RPM file ({}); the release needs the RPM header",
            files.first().unwrap_or(&"")
        )),
        [] => Err(format!("{kind}: no kernel -devel RPM among the packages")),
        many => Err(format!("{kind}: more than one kernel -devel RPM: {}", many.join(", "))),
    }
}

fn suse(files: &[&str]) -> Result<Names, String> {
    let mut unames = Vec::new();
    for f in files {
        let Some((name, ver, rel, _arch)) = parse_nevra(f) else { continue };
        let Some(flavour) = name.strip_prefix("kernel-").and_then(|n| n.strip_suffix("-devel")) else { continue };
        if flavour.is_empty() || flavour == "devel" || name == "kernel-devel" {
            continue;
        }
        // The last release component is the build counter, not part of uname.
        let rel_base = rel.rsplit_once('.').map_or(rel.as_str(), |(base, _)| base);
        unames.push(format!("{ver}-{rel_base}-{flavour}"));
    }
    match unames.as_slice() {
        [one] => Ok(Names::same(one.clone())),
        [] => Err("suse: no kernel-<flavour>-devel RPM among the packages".into()),
        many => Err(format!("suse: more than one flavour: {}", many.join(", "))),
    }
}

/// A stable name for a bundle whose kernel release is only known from its
/// contents (docs/manifest.md): derived from the package URLs, not the
/// file names alone. None for types with release-bearing file names.
pub fn name_from_urls(kind: &str, urls: &[&str]) -> Option<String> {
    static COS: OnceLock<Regex> = OnceLock::new();
    static COREOS: OnceLock<Regex> = OnceLock::new();
    static MINIKUBE: OnceLock<Regex> = OnceLock::new();
    static TARBALL: OnceLock<Regex> = OnceLock::new();
    static RHSM: OnceLock<Regex> = OnceLock::new();
    let first = |re: &Regex| urls.iter().find_map(|u| re.captures(u).map(|c| c[1].to_string()));
    match kind {
        // https://storage.googleapis.com/cos-tools/12739.68.0/kernel-src.tar.gz
        "cos" => first(regex(&COS, r"/cos-tools/([0-9][0-9.]*[0-9])/")),
        // https://stable.release.flatcar-linux.net/amd64-usr/2135.4.0/flatcar_developer_container.bin.bz2
        "coreos" => urls.iter().find_map(|u| {
            let c =
                regex(&COREOS, r"/amd64-usr/([0-9][0-9.]*[0-9])/(flatcar|coreos)_developer_container").captures(u)?;
            Some(format!("{}-{}", &c[2], &c[1]))
        }),
        // https://raw.githubusercontent.com/kubernetes/minikube/v1.29.0/deploy/iso/…
        "minikube" => first(regex(&MINIKUBE, r"/kubernetes/minikube/(v[0-9][0-9.]*[0-9])/")),
        // https://cdn.kernel.org/pub/linux/kernel/v4.x/linux-4.19.76.tar.gz, …/linux-archive/v4.9.125.tar.gz
        "linuxkit" | "dockerdesktop" => {
            first(regex(&TARBALL, r"/(?:linux-|v)([0-9]+\.[0-9]+(?:\.[0-9]+)?)\.tar\.(?:gz|xz)$"))
        }
        // https://api.access.redhat.com/management/v1/packages/<sha256>/download
        "redhat" => first(regex(&RHSM, r"/management/v1/packages/([0-9a-f]{16})[0-9a-f]*/download"))
            .map(|h| format!("rhsm-{h}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(kind: &str, files: &[&str]) -> (String, String) {
        let n = derive_names(kind, files).unwrap();
        (n.name, n.uname)
    }

    #[test]
    fn debian_triples_and_pairs() {
        let n = names(
            "debian",
            &[
                "linux-kbuild-6.1_6.1.192-2_amd64.deb",
                "linux-headers-6.1.0-56-common_6.1.192-2_all.deb",
                "linux-headers-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb",
            ],
        );
        assert_eq!(n, ("6.1.0-56-cloud-amd64".into(), "6.1.0-56-cloud-amd64".into()));
        let n = names(
            "debian",
            &["linux-kbuild-4.4_4.4-4~bpo8+1_amd64.deb", "linux-headers-4.4.102-k8s_4.4.102-20171126_amd64.deb"],
        );
        assert_eq!(n.1, "4.4.102-k8s");
        let n = names(
            "debian",
            &["linux-headers-6.8.12-rt-amd64_6.8.12-1_amd64.deb", "linux-kbuild-6.8.12_6.8.12-1_amd64.deb"],
        );
        assert_eq!(n.1, "6.8.12-rt-amd64");
    }

    #[test]
    fn ubuntu_flavours_and_backports() {
        let n = names(
            "ubuntu",
            &[
                "linux-headers-5.4.0-156-generic_5.4.0-156.173_amd64.deb",
                "linux-headers-5.4.0-156_5.4.0-156.173_all.deb",
            ],
        );
        assert_eq!(n, ("5.4.0-156-generic".into(), "5.4.0-156-generic".into()));
        let n = names(
            "ubuntu",
            &[
                "linux-headers-4.15.0-1129-azure_4.15.0-1129.142~16.04.1_amd64.deb",
                "linux-azure-headers-4.15.0-1129_4.15.0-1129.142~16.04.1_all.deb",
            ],
        );
        assert_eq!(n, ("4.15.0-1129-azure~16.04".into(), "4.15.0-1129-azure".into()));
        let n = names(
            "ubuntu",
            &[
                "linux-headers-5.15.0-1049-aws_5.15.0-1049.54~20.04.1_amd64.deb",
                "linux-aws-5.15-headers-5.15.0-1049_5.15.0-1049.54~20.04.1_all.deb",
            ],
        );
        assert_eq!(n.0, "5.15.0-1049-aws~20.04");
        // Other series get theirs too, so a backport and its original differ.
        let n = names("ubuntu", &["linux-headers-5.4.0-42-generic_5.4.0-42.46~18.04.1_amd64.deb"]);
        assert_eq!(n.0, "5.4.0-42-generic~18.04");
        let n = names("ubuntu", &["linux-headers-6.8.0-40-generic_6.8.0-40.40~22.04.3_amd64.deb"]);
        assert_eq!(n, ("6.8.0-40-generic~22.04".into(), "6.8.0-40-generic".into()));
        // kernel-packer's simplified names (`~` became `-`).
        let n = names("ubuntu", &["http---x-linux-headers-5.8.0-1036-gcp_5.8.0-1036.38-20.04.1_amd64.deb"]);
        assert_eq!(n.0, "5.8.0-1036-gcp~20.04");
        // Not a backport: a rebuild suffix, a three-part version.
        assert_eq!(
            names("ubuntu", &["linux-headers-5.4.0-1085-azure-cvm_5.4.0-1085.90+cvm2_amd64.deb"]).0,
            "5.4.0-1085-azure-cvm"
        );
        assert_eq!(
            names("ubuntu", &["linux-headers-6.8.1-1015-realtime_6.8.1-1015.16_amd64.deb"]).0,
            "6.8.1-1015-realtime"
        );
        // Other architectures carry theirs in the name, not in the release.
        let n = names(
            "ubuntu",
            &["linux-headers-6.8.0-40-generic-64k_6.8.0-40.40_arm64.deb", "linux-headers-6.8.0-40_6.8.0-40.40_all.deb"],
        );
        assert_eq!(n, ("6.8.0-40-generic-64k-arm64".into(), "6.8.0-40-generic-64k".into()));
        let n = names("ubuntu", &["linux-headers-6.8.0-40-generic_6.8.0-40.40~22.04.3_arm64.deb"]);
        assert_eq!(n.0, "6.8.0-40-generic-arm64~22.04");
    }

    #[test]
    fn rpm_nevra() {
        assert_eq!(names("redhat", &["kernel-devel-3.10.0-1160.80.1.el7.x86_64.rpm"]).1, "3.10.0-1160.80.1.el7.x86_64");
        assert_eq!(
            names("redhat", &["kernel-lt-devel-5.4.90-1.el7.elrepo.x86_64.rpm"]).1,
            "5.4.90-1.el7.elrepo.x86_64"
        );
        assert_eq!(
            names("redhat", &["kernel-rt-devel-4.18.0-305.100.1.rt7.175.el8_4.x86_64.rpm"]).1,
            "4.18.0-305.100.1.rt7.175.el8_4.x86_64"
        );
        assert_eq!(
            names("oracle", &["kernel-uek-devel-5.4.17-2136.329.3.1.el7uek.x86_64.rpm"]).1,
            "5.4.17-2136.329.3.1.el7uek.x86_64"
        );
        let err = derive_names("redhat", &["download"]).unwrap_err();
        assert!(err.contains("names no RPM file"), "{err}");
    }

    #[test]
    fn suse_flavour_and_release() {
        let n = names(
            "suse",
            &[
                "kernel-devel-5.14.21-150400.24.84.1.noarch.rpm",
                "kernel-default-devel-5.14.21-150400.24.84.1.x86_64.rpm",
            ],
        );
        assert_eq!(n.1, "5.14.21-150400.24.84-default");
        let n = names(
            "suse",
            &["kernel-azure-devel-5.3.18-18.24.1.x86_64.rpm", "kernel-devel-azure-5.3.18-18.24.1.noarch.rpm"],
        );
        assert_eq!(n.1, "5.3.18-18.24-azure");
    }

    #[test]
    fn content_named_types_say_why() {
        let err = derive_names("cos", &["kernel-src.tar.gz"]).unwrap_err();
        assert!(err.starts_with("cos: "), "{err}");
    }

    #[test]
    fn names_from_what_the_manifest_holds() {
        let name = |kind: &str, url: &str| name_from_urls(kind, &[url]);
        assert_eq!(
            name("cos", "https://storage.googleapis.com/cos-tools/12739.68.0/kernel-src.tar.gz").as_deref(),
            Some("12739.68.0")
        );
        assert_eq!(
            name(
                "coreos",
                "https://stable.release.flatcar-linux.net/amd64-usr/2135.4.0/flatcar_developer_container.bin.bz2"
            )
            .as_deref(),
            Some("flatcar-2135.4.0")
        );
        assert_eq!(
            name("coreos", "http://stable.release.core-os.net/amd64-usr/1409.8.0/coreos_developer_container.bin.bz2")
                .as_deref(),
            Some("coreos-1409.8.0")
        );
        assert_eq!(
            name("minikube", "https://raw.githubusercontent.com/kubernetes/minikube/v1.29.0/deploy/iso/minikube-iso/board/minikube/x86_64/linux_x86_64_defconfig").as_deref(),
            Some("v1.29.0")
        );
        assert_eq!(
            name("linuxkit", "https://cdn.kernel.org/pub/linux/kernel/v4.x/linux-4.19.76.tar.gz").as_deref(),
            Some("4.19.76")
        );
        assert_eq!(
            name("linuxkit", "https://github.com/linuxkit/linux-archive/v4.9.125.tar.gz").as_deref(),
            Some("4.9.125")
        );
        let rhsm = "https://api.access.redhat.com/management/v1/packages/66ed90931c6a668b3ae3fa4e5bce7c1b05e33fd1f403f83845816ba5bc184402/download";
        assert_eq!(name("redhat", rhsm).as_deref(), Some("rhsm-66ed90931c6a668b"));
        assert_eq!(name("debian", rhsm), None);
    }
}
