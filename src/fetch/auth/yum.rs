//! Credentials in yum/dnf `.repo` files: per repository, `sslclientcert`,
//! `sslclientkey` and `sslcacert` (Red Hat's CDN: the host's entitlement
//! under /etc/pki/entitlement), and `username`/`password` (HTTP basic).
//! Each applies to the repository's `baseurl`s, cut at the first `$`
//! variable (`$releasever`, `$basearch`), as a URL prefix.
//!
//! A `.repo` file is usually world-readable; that is fine for paths to
//! certificates (the key file itself is checked when it is read), not for a
//! password: a section with one is taken only from a file that passes the
//! secret-file checks.

use super::{ClientIdentity, Credentials, Entry, Scope, Secret};
use std::path::{Path, PathBuf};

const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Default)]
struct Section {
    name: String,
    baseurls: Vec<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    username: Option<String>,
    password: Option<String>,
    enabled: bool,
}

/// Every `*.repo` under `dir`, in name order. Problems are messages.
pub fn read_dir(dir: &Path) -> (Credentials, Vec<String>) {
    let mut out = Credentials::default();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return (out, problems) };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "repo"))
        .collect();
    files.sort();
    for file in files {
        let text = match crate::files::read_bounded(&file, MAX_FILE_BYTES) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{e:#}"));
                continue;
            }
        };
        let private = crate::files::read_secret(&file, MAX_FILE_BYTES);
        for section in parse(&text) {
            if !section.enabled {
                continue;
            }
            let from = format!("{} [{}]", file.display(), section.name);
            let mut secret = None;
            if let Some(password) = section.password.clone() {
                match &private {
                    Ok(_) => {
                        secret = Some(Secret::Basic { login: section.username.clone().unwrap_or_default(), password })
                    }
                    Err(e) => problems.push(format!("{from}: its password is not used: {e:#}")),
                }
            }
            let identity = match ClientIdentity::from_parts(
                section.cert.clone(),
                section.key.clone(),
                section.ca.clone(),
                &from,
            ) {
                Ok(i) => i,
                Err(e) => {
                    problems.push(format!("{e:#} (sslclientcert and sslclientkey)"));
                    None
                }
            };
            if secret.is_none() && identity.is_none() {
                continue;
            }
            for base in &section.baseurls {
                let prefix = base.split('$').next().unwrap_or("");
                let Some(scope) = Scope::of_url(prefix) else {
                    problems.push(format!("{from}: baseurl {:?} is not a URL", crate::fetch::auth::redact(base)));
                    continue;
                };
                let entry = Entry { scope, secret: secret.clone(), identity: identity.clone(), from: from.clone() };
                if let Err(e) = out.add(entry) {
                    problems.push(format!("{from}: {e:#}"));
                    return (out, problems);
                }
            }
        }
    }
    (out, problems)
}

fn parse(text: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    let mut last_key = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push(Section { name: name.trim().to_string(), enabled: true, ..Section::default() });
            last_key.clear();
            continue;
        }
        let Some(section) = sections.last_mut() else { continue };
        // A continuation line (indented) adds more base URLs.
        if raw.starts_with([' ', '\t']) && last_key == "baseurl" {
            section.baseurls.extend(line.split([' ', ',']).filter(|u| !u.is_empty()).map(str::to_string));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        match key.as_str() {
            "baseurl" => section.baseurls.extend(value.split([' ', ',']).filter(|u| !u.is_empty()).map(str::to_string)),
            "sslclientcert" => section.cert = Some(PathBuf::from(value)),
            "sslclientkey" => section.key = Some(PathBuf::from(value)),
            "sslcacert" => section.ca = Some(PathBuf::from(value)),
            "username" => section.username = Some(value.to_string()),
            "password" => section.password = Some(value.to_string()),
            "enabled" => section.enabled = !matches!(value, "0" | "false" | "no" | "False"),
            _ => {}
        }
        last_key = key;
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn reads_entitlement_certificates_and_private_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let repo = "[rhel-8-baseos]\nname=x\nbaseurl=https://cdn.example/content/dist/rhel8/$releasever/x86_64/baseos/os\n\
                    sslclientcert=/etc/pki/entitlement/1.pem\nsslclientkey=/etc/pki/entitlement/1-key.pem\n\
                    sslcacert=/etc/rhsm/ca/uep.pem\n\n[off]\nenabled=0\nbaseurl=https://off.example/\nusername=u\npassword=p\n\n\
                    [basic]\nbaseurl=https://a.example/r/\n  https://b.example/r/\nusername=u\npassword=pw1\n";
        let path = dir.path().join("redhat.repo");
        std::fs::write(&path, repo).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (c, problems) = read_dir(dir.path());
        // World-readable: the certificates count, the password does not.
        assert_eq!(c.entries().len(), 1, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("[basic]") && p.contains("password is not used")), "{problems:?}");
        assert!(!problems.join(" ").contains("pw1"));
        let url =
            url::Url::parse("https://cdn.example/content/dist/rhel8/8/x86_64/baseos/os/repodata/repomd.xml").unwrap();
        assert_eq!(c.identity_for(&url).unwrap().ca.as_deref(), Some(Path::new("/etc/rhsm/ca/uep.pem")));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (c, _) = read_dir(dir.path());
        assert_eq!(c.entries().len(), 3, "one entry per base URL of [basic]");
        let b = url::Url::parse("https://b.example/r/Packages/k.rpm").unwrap();
        assert_eq!(c.secret_for(&b), Some(&Secret::Basic { login: "u".into(), password: "pw1".into() }));
        assert!(
            c.secret_for(&url::Url::parse("https://off.example/x").unwrap()).is_none(),
            "disabled repos are skipped"
        );
    }
}
