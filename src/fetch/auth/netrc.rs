//! apt's auth.conf format (netrc-like, apt_auth.conf(5)), and where apt
//! keeps it.
//!
//! ```text
//! machine esm.example/apps/ubuntu login bearer password s3cret
//! machine http://127.0.0.1:8080/repo login user password pw
//! ```
//! Tokens are separated by spaces, tabs or newlines; `machine` starts an
//! entry; unknown tokens are ignored, as apt does. kpackfs's own files
//! (`--auth-file`) may also use `token T` (an HTTP bearer token), `query Q`
//! (a URL token, appended as the query) and `cert`, `key`, `ca` (a TLS client
//! certificate and key, and the CA bundle trusted for the scope, as PEM
//! file paths); apt would ignore those.

use super::{ClientIdentity, Credentials, Entry, Scope, Secret};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The largest auth file read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Parse one file's text; `from` names it in messages.
pub fn parse(text: &str, from: &str) -> Result<Credentials> {
    let mut out = Credentials::default();
    let mut words = text.split_whitespace();
    let mut current: Option<Pending> = None;
    while let Some(word) = words.next() {
        let mut value = |what: &str| match words.next() {
            Some(v) => Ok(v.to_string()),
            None => bail!("{from}: `{what}` without a value at the end of the file"),
        };
        match word {
            "machine" => {
                if let Some(p) = current.take() {
                    out.add(p.finish(from)?)?;
                }
                let machine = value("machine")?;
                let Some(scope) = Scope::parse(&machine) else {
                    bail!("{from}: invalid machine {:?}", crate::manifest::rules::shown(&machine));
                };
                current = Some(Pending { scope: Some(scope), ..Pending::default() });
            }
            "login" | "password" | "token" | "query" | "cert" | "key" | "ca" => {
                let v = value(word)?;
                let Some(p) = current.as_mut() else {
                    bail!("{from}: `{word}` before any `machine`");
                };
                match word {
                    "login" => p.login = Some(v),
                    "password" => p.password = Some(v),
                    "token" => p.token = Some(v),
                    "query" => p.query = Some(v),
                    "cert" => p.cert = Some(PathBuf::from(v)),
                    "key" => p.key = Some(PathBuf::from(v)),
                    _ => p.ca = Some(PathBuf::from(v)),
                }
            }
            _ => {} // apt ignores unknown tokens
        }
    }
    if let Some(p) = current.take() {
        out.add(p.finish(from)?)?;
    }
    Ok(out)
}

#[derive(Default)]
struct Pending {
    scope: Option<Scope>,
    login: Option<String>,
    password: Option<String>,
    token: Option<String>,
    query: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
}

impl Pending {
    fn finish(self, from: &str) -> Result<Entry> {
        let Some(scope) = self.scope else { bail!("{from}: an entry without a machine") };
        let secret = match (self.login, self.password, self.token, self.query) {
            (None, None, None, None) => None,
            (login, Some(password), None, None) => Some(Secret::Basic { login: login.unwrap_or_default(), password }),
            (None, None, Some(t), None) => Some(Secret::Bearer(t)),
            (None, None, None, Some(q)) => Some(Secret::Query(q)),
            (Some(_), None, None, None) => bail!("{from}: machine {scope}: a login without a password"),
            _ => bail!("{from}: machine {scope}: give one of login/password, token or query"),
        };
        let identity = ClientIdentity::from_parts(self.cert, self.key, self.ca, &format!("{from}: machine {scope}"))?;
        Ok(Entry { scope, secret, identity, from: from.to_string() })
    }
}

/// One auth file, after the secret-file checks (owner, mode, no link).
pub fn read_file(path: &Path) -> Result<Credentials> {
    let bytes = crate::files::read_secret(path, MAX_FILE_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{} is not UTF-8", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// apt's own files under `etc_apt`: `auth.conf`, then `auth.conf.d/*.conf`
/// in name order (apt's Dir::Etc::netrc and netrcparts). A file that fails
/// the checks is skipped with its reason; the others still count.
pub fn read_apt(etc_apt: &Path) -> (Credentials, Vec<String>) {
    let mut files = vec![etc_apt.join("auth.conf")];
    if let Ok(dir) = std::fs::read_dir(etc_apt.join("auth.conf.d")) {
        let mut parts: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        parts.sort();
        files.extend(parts);
    }
    read_all(files)
}

/// Files that may be missing: the ones present are read; problems are
/// returned as messages, not errors (a host file must not stop a mount).
pub fn read_all(files: Vec<PathBuf>) -> (Credentials, Vec<String>) {
    let mut out = Credentials::default();
    let mut problems = Vec::new();
    for file in files {
        if std::fs::symlink_metadata(&file).is_err() {
            continue;
        }
        match read_file(&file).and_then(|c| out.extend(c)) {
            Ok(()) => {}
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_apts_format_and_kpackfs_tokens() {
        let text = "machine esm.example/apps login bearer password s3cret\n\
                    # a comment is just more tokens apt ignores\n\
                    machine http://127.0.0.1:9/r token tok1\n\
                    machine h.example query sig=abc cert /c.pem key /k.pem ca /ca.pem\n";
        let c = parse(text, "t").unwrap();
        let e = c.entries();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].secret, Some(Secret::Basic { login: "bearer".into(), password: "s3cret".into() }));
        assert_eq!(e[1].scope.port, Some(9));
        assert_eq!(e[1].secret, Some(Secret::Bearer("tok1".into())));
        assert_eq!(e[2].secret, Some(Secret::Query("sig=abc".into())));
        assert_eq!(e[2].identity.as_ref().unwrap().ca.as_deref(), Some(Path::new("/ca.pem")));
    }

    #[test]
    fn refuses_incomplete_entries_without_echoing_secrets() {
        for bad in ["login x", "machine h login u", "machine h password p token t", "machine h cert /c", "machine"] {
            let err = parse(bad, "t").unwrap_err().to_string();
            assert!(!err.contains(" p ") && !err.contains("token t"), "{err}");
        }
    }
}
