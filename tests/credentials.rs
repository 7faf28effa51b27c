//! Sources that need credentials, on loopback servers: a signed apt and a
//! signed yum repository behind HTTP basic auth, a bearer token, a URL
//! token, and TLS that requires a client certificate (certificates made
//! with openssl here, served by `openssl s_server`); what missing or wrong
//! credentials look like; credentials never sent to another origin (a
//! redirect, a mirror standing in for a canonical host); and no secret in
//! any file kpackfs wrote or any line it printed.

mod common;

use base64::Engine;
use common::http::{Required, Server};
use common::mirror::Mounted;
use common::pkgs;
use common::repo::{signed_debian_kernel, yum_repo, TestKey};
use common::{kpackfs, tempdir};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Repos {
    work: tempfile::TempDir,
    www: PathBuf,
    key: TestKey,
    deb: pkgs::Synthetic,
    rpm_uname: String,
}

/// A signed apt repository under `www/debian` and a signed yum repository
/// under `www/centos/AppStream`.
fn repos() -> Repos {
    let work = tempdir();
    let (key, deb, www) = signed_debian_kernel(work.path());
    let rhel = pkgs::synthetic_rhel(work.path(), "redhat", "w19.zstdio");
    for rpm in &rhel.files {
        key.rpmsign(rpm, false);
    }
    yum_repo(&www.join("centos/AppStream"), &rhel.files, Some(&key));
    Repos { rpm_uname: rhel.uname.clone(), work, www, key, deb }
}

impl Repos {
    fn dir(&self) -> &Path {
        self.work.path()
    }

    /// sources.yml for both repositories under `base`, each entry with `extra` lines.
    fn sources(&self, name: &str, base: &str, extra: &str) -> PathBuf {
        let keyring = self.key.keyring.display();
        let text = format!(
            "- name: test-debian\n  type: debian\n  kind: apt\n  url: {base}/debian\n  suites: [testsuite]\n  components: [main]\n  architectures: [amd64]\n  grouping: depends\n  keyring: {keyring}\n{extra}\
             - name: test-centos\n  type: redhat\n  kind: yum\n  url: {base}/centos\n  repos: [AppStream]\n  packages: ['^kernel-devel$']\n  grouping: single\n  keyring: {keyring}\n{extra}"
        );
        let path = self.dir().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn crawl(&self, sources: &Path, extra: &[String]) -> Output {
        let d = self.dir();
        let mut cmd = kpackfs();
        cmd.arg("crawl").arg("--sources").arg(sources);
        cmd.arg("--lists-dir").arg(d.join("lists")).arg("--manifest").arg(d.join("manifest.yml"));
        cmd.arg("--cache-dir").arg(d.join("cache"));
        cmd.args(["--no-apt-mirrors", "--no-host-credentials", "--retries", "0"]).args(extra);
        cmd.output().unwrap()
    }

    fn bundle(&self, name: &str, extra: &[String]) -> Output {
        let d = self.dir();
        let mut cmd = kpackfs();
        cmd.args(["bundle", name, "--manifest"]).arg(d.join("manifest.yml")).arg("--cache-dir").arg(d.join("cache"));
        cmd.args(["--no-apt-mirrors", "--no-host-credentials", "--retries", "0"]).args(extra);
        cmd.arg("-o").arg(d.join(format!("{}.tgz", name.replace('/', "_"))));
        cmd.output().unwrap()
    }
}

/// A secret file: ours, mode 0600, outside what kpackfs writes.
fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let path = secrets.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ok(out: Output) -> String {
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    t
}

/// Every file under `dir` (but `secrets/`, where the test keeps them)
/// whose bytes contain `secret`. Only `dir`'s own filesystem is searched:
/// under /tmp, other tests' mounts (a kpackfs of a million bundles, a
/// tmpfs) are not ours to read, and reading them could build or hang.
fn files_containing(dir: &Path, secret: &str) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let Ok(device) = std::fs::symlink_metadata(dir).map(|m| m.dev()) else { return Vec::new() };
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        // Other tests' files come and go under /tmp: what vanishes is skipped.
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            let same_filesystem = || std::fs::symlink_metadata(&p).is_ok_and(|m| m.dev() == device);
            if ft.is_dir() && p.file_name().is_some_and(|n| n != "secrets") && same_filesystem() {
                stack.push(p);
            } else if ft.is_file() {
                let bytes = std::fs::read(&p).unwrap_or_default();
                if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                    hits.push(p);
                }
            }
        }
    }
    hits
}

#[test]
fn basic_bearer_and_url_token_repositories_crawl_and_build_and_missing_or_wrong_ones_fail_as_auth_failed() {
    let secret = "Pw-7f3a9c1e-never-printed";
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("builder:{secret}"));
    let cases = [
        (
            "basic",
            Required::Header(format!("Basic {basic}")),
            format!("login builder password {secret}"),
            "login builder password wrong-one",
        ),
        ("bearer", Required::Header(format!("Bearer {secret}")), format!("token {secret}"), "token wrong-one"),
        ("url token", Required::Query(format!("sig={secret}")), format!("query sig={secret}"), "query sig=wrong-one"),
    ];
    for (what, required, good, bad) in cases {
        let r = repos();
        let server = Server::start();
        server.mount("/", &r.www);
        server.require(required);
        let base = server.url("");
        let sources = r.sources("sources.yml", &base, "");
        let origin = format!("http://127.0.0.1:{}", server.port);

        // No credentials: a class of its own, not "unreachable".
        let out = r.crawl(&sources, &[]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(5), "{what}: {t}");
        assert!(t.contains("authentication failed") && t.contains("no credentials match"), "{what}: {t}");
        assert!(!t.contains("unreachable:"), "{what}: {t}");

        // Wrong ones: refused, and said so.
        let wrong = secret_file(r.dir(), "wrong", &format!("machine {origin} {bad}\n"));
        let out = r.crawl(&sources, &["--auth-file".into(), wrong.display().to_string()]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(5), "{what}: {t}");
        assert!(t.contains("were refused"), "{what}: {t}");

        // apt's rule: an entry without a scheme is for https only.
        let bare = secret_file(r.dir(), "bare", &format!("machine 127.0.0.1:{} {good}\n", server.port));
        let out = r.crawl(&sources, &["--auth-file".into(), bare.display().to_string()]);
        assert_eq!(out.status.code(), Some(5), "{what}: a scheme-less entry is not sent over http: {}", text(&out));

        let auth = secret_file(r.dir(), "auth", &format!("machine {origin} {good}\n"));
        let args = vec!["--auth-file".to_string(), auth.display().to_string()];
        let mut printed = ok(r.crawl(&sources, &args));
        assert!(printed.contains("2 ok"), "{what}: {printed}");
        printed += &ok(r.bundle(&r.deb.name, &args));
        printed += &ok(r.bundle(&r.rpm_uname, &args));
        // Then a mount builds one, and its status and log are read too.
        let m = Mounted::start(
            &r.dir().join("manifest.yml"),
            None,
            &[args.clone(), vec!["--no-host-credentials".into()]].concat(),
        );
        let uname = std::fs::read_to_string(m.mnt.join("debian").join(&r.deb.name).join("BUNDLE_UNAME")).unwrap();
        assert_eq!(uname.trim(), r.deb.uname);
        for meta in ["status", "status.json", "metrics"] {
            printed += &std::fs::read_to_string(m.mnt.join(".kpackfs").join(meta)).unwrap();
        }
        printed += &std::fs::read_to_string(m.cache.join("kpackfs.log")).unwrap();
        assert_eq!(files_containing(&m.cache, secret), Vec::<PathBuf>::new(), "{what}: the mount's cache");
        drop(m);
        // A server gone: the connection error names the URL, never its token.
        drop(server);
        let out = r.crawl(&sources, &args);
        assert_eq!(out.status.code(), Some(3), "{what}: {}", text(&out));
        printed += &text(&out);

        assert!(!printed.contains(secret), "{what}: a secret was printed: {printed}");
        assert_eq!(files_containing(r.dir(), secret), Vec::<PathBuf>::new(), "{what}: files holding the secret");
        assert!(files_containing(&std::env::temp_dir(), secret).iter().all(|p| p.starts_with(r.dir())));
    }
}

#[test]
fn credentials_go_only_to_their_own_origin_across_redirects_and_mirrors() {
    let r = repos();
    let mirror_secret = "mirror-secret-3e1d";
    let canonical_secret = "canonical-secret-9b2c";
    // The mirror requires its own credentials and redirects packages to a
    // second server (a CDN), which requires none and records what it got.
    let cdn = Server::start();
    cdn.mount("/", &r.www);
    let mirror = Server::start();
    mirror.mount("/", &r.www);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("u:{mirror_secret}"));
    mirror.require(Required::Header(format!("Basic {basic}")));
    mirror.redirect("/debian/pool/", &cdn.url("/debian/pool/"));
    mirror.redirect("/centos/AppStream/Packages/", &cdn.url("/centos/AppStream/Packages/"));
    let canonical = "http://archive.example.test";
    let sources = r.sources("sources.yml", canonical, "");
    let auth = secret_file(
        r.dir(),
        "auth",
        &format!(
            "machine {canonical} login u password {canonical_secret}\nmachine http://127.0.0.1:{} login u password {mirror_secret}\n",
            mirror.port
        ),
    );
    let args = vec![
        "--auth-file".to_string(),
        auth.display().to_string(),
        "--mirror".into(),
        format!("{canonical}={}", mirror.url("")),
        "--no-archives".into(),
    ];
    ok(r.crawl(&sources, &args));
    ok(r.bundle(&r.deb.name, &args));
    ok(r.bundle(&r.rpm_uname, &args));
    let at_cdn = cdn.authorizations();
    assert!(
        at_cdn.iter().any(|(p, _)| p.ends_with(".deb")) && at_cdn.iter().any(|(p, _)| p.ends_with(".rpm")),
        "{at_cdn:?}"
    );
    assert!(at_cdn.iter().all(|(_, a)| a.is_none()), "the redirect target got credentials: {at_cdn:?}");
    let at_mirror = mirror.authorizations();
    assert!(at_mirror.iter().all(|(_, a)| a.as_deref() == Some(format!("Basic {basic}").as_str())), "{at_mirror:?}");
    let canonical_basic = base64::engine::general_purpose::STANDARD.encode(format!("u:{canonical_secret}"));
    assert!(at_mirror
        .iter()
        .chain(&at_cdn)
        .all(|(_, a)| a.as_deref() != Some(format!("Basic {canonical_basic}").as_str())));
}

#[test]
fn secret_files_readable_by_others_are_refused_with_a_message() {
    let r = repos();
    let path = secret_file(r.dir(), "auth", "machine http://127.0.0.1:1 login u password leaked-if-shown\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sources = r.sources("sources.yml", "http://127.0.0.1:1", "");
    let out = r.crawl(&sources, &["--auth-file".into(), path.display().to_string()]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("mode 0644") && t.contains("refusing it"), "{t}");
    assert!(!t.contains("leaked-if-shown"), "{t}");
    // A link is not followed, even to a good file.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = r.dir().join("secrets/link");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let t = text(&r.crawl(&sources, &["--auth-file".into(), link.display().to_string()]));
    assert!(t.contains("a link is not followed"), "{t}");
    // A URL with credentials in sources.yml is refused, redacted.
    let bad = r.sources("bad.yml", "http://u:pw-in-url@127.0.0.1:1", "");
    let t = text(&r.crawl(&bad, &[]));
    assert!(t.contains("carries credentials in the URL") && !t.contains("pw-in-url"), "{t}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate,
/// made with openssl.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let dir = dir.join("secrets/pki");
        std::fs::create_dir_all(&dir).unwrap();
        let script = r#"
set -e
ext() { printf '%s\n' "$@" > "$1.ext.tmp"; }
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=kpackfs-test-ca 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=another-ca 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > client.ext
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
for who in client:ca stranger:other-ca; do
  name=${who%%:*}; ca=${who#*:}
  openssl req -newkey rsa:2048 -nodes -keyout $name.key -out $name.csr -subj /CN=$name 2>/dev/null
  openssl x509 -req -in $name.csr -CA $ca.pem -CAkey $ca.key -CAcreateserial -out $name.pem -days 2 -extfile client.ext 2>/dev/null
done
chmod 600 *.key
"#;
        let st = Command::new("bash").arg("-c").arg(script).current_dir(&dir).status().unwrap();
        assert!(st.success(), "openssl");
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// `openssl s_server -WWW` serving `root`, requiring a client certificate
/// signed by the test CA; killed on drop.
struct TlsServer {
    child: std::process::Child,
    port: u16,
}

impl TlsServer {
    fn start(pki: &Pki, root: &Path) -> TlsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = TlsServer {
            child: Command::new("openssl")
                .args(["s_server", "-quiet", "-WWW", "-accept"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["-cert", &pki.path("server.pem"), "-key", &pki.path("server.key")])
                .args(["-CAfile", &pki.path("ca.pem"), "-Verify", "1", "-verify_return_error"])
                .current_dir(root)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
            port,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("openssl s_server did not start");
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_tls_repository_that_requires_a_client_certificate_crawls_and_builds_with_one() {
    let r = repos();
    let pki = Pki::new(r.dir());
    let server = TlsServer::start(&pki, &r.www);
    let base = format!("https://127.0.0.1:{}", server.port);
    let ca_only = format!("  ca: {}\n", pki.path("ca.pem"));

    // The server is trusted (its CA is given) but no certificate is sent.
    let sources = r.sources("no-cert.yml", &base, &ca_only);
    let out = r.crawl(&sources, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(5), "{t}");
    assert!(t.contains("authentication failed") && t.contains("TLS handshake"), "{t}");

    // A certificate from another CA: refused by the server, told as such.
    let stranger =
        format!("  client_cert: {}\n  client_key: {}\n{ca_only}", pki.path("stranger.pem"), pki.path("stranger.key"));
    let out = r.crawl(&r.sources("stranger.yml", &base, &stranger), &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(text(&out).contains("were refused"), "{}", text(&out));

    // The right one: Debian's through the source's own client_cert, the yum
    // repository's through a .repo file (a RHEL host's entitlement).
    let apt_cert =
        format!("  client_cert: {}\n  client_key: {}\n{ca_only}", pki.path("client.pem"), pki.path("client.key"));
    let text_yml = std::fs::read_to_string(r.sources("x.yml", &base, "")).unwrap();
    let (apt_part, yum_part) = text_yml.split_at(text_yml.find("- name: test-centos").unwrap());
    let sources = r.dir().join("tls.yml");
    std::fs::write(&sources, format!("{apt_part}{apt_cert}{yum_part}")).unwrap();
    let repos_d = r.dir().join("yum.repos.d");
    std::fs::create_dir_all(&repos_d).unwrap();
    std::fs::write(
        repos_d.join("redhat.repo"),
        format!(
            "[test-centos]\nname=x\nbaseurl={base}/centos/AppStream\nenabled=1\nsslclientcert={}\nsslclientkey={}\nsslcacert={}\n",
            pki.path("client.pem"),
            pki.path("client.key"),
            pki.path("ca.pem")
        ),
    )
    .unwrap();
    let config = r.dir().join("config.yml");
    // The sources' client certificates reach `bundle` through the configured sources file.
    std::fs::write(&config, format!("yum_repos_dir: {}\nsources: {}\n", repos_d.display(), sources.display())).unwrap();
    let crawl = |extra: &[&str]| {
        let d = r.dir();
        let mut cmd = kpackfs();
        cmd.arg("--config").arg(&config).arg("crawl").arg("--sources").arg(&sources);
        cmd.arg("--lists-dir").arg(d.join("lists")).arg("--manifest").arg(d.join("manifest.yml"));
        cmd.arg("--cache-dir").arg(d.join("cache")).args(["--no-apt-mirrors", "--retries", "0"]).args(extra);
        cmd.output().unwrap()
    };
    // Without the host's .repo files the yum repository's server is not
    // even trusted (its CA came from there); the apt one works.
    let t = text(&crawl(&["--no-host-credentials"]));
    assert!(t.contains("1 ok") && t.contains("invalid peer certificate"), "{t}");
    let t = ok(crawl(&[]));
    assert!(t.contains("2 ok"), "{t}");
    for name in [r.deb.name.as_str(), r.rpm_uname.as_str()] {
        let d = r.dir();
        let mut cmd = kpackfs();
        cmd.arg("--config").arg(&config).args(["bundle", name, "--manifest"]).arg(d.join("manifest.yml"));
        cmd.arg("--cache-dir").arg(d.join("cache")).args(["--no-apt-mirrors", "-o"]).arg(d.join("tls.tgz"));
        ok(cmd.output().unwrap());
    }
}
