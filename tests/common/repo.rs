//! Loopback package repositories in the real formats, signed with a
//! throwaway key made at test time: apt (dpkg-scanpackages, Release,
//! InRelease and Release.gpg) and yum (createrepo_c, repomd.xml.asc).

use super::run_ok;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A throwaway OpenPGP key in its own gpg home.
pub struct TestKey {
    pub home: PathBuf,
    /// The public key, exported (binary): a keyring for gpgv.
    pub keyring: PathBuf,
    /// gpg's clock for signing (`--faked-system-time`), for expired keys.
    faked_time: Option<&'static str>,
}

impl TestKey {
    pub fn new(dir: &Path, name: &str) -> TestKey {
        Self::with_algorithm(dir, name, "ed25519")
    }

    /// A key of the given gpg algorithm (`ed25519`, `rsa2048`, …).
    pub fn with_algorithm(dir: &Path, name: &str, algorithm: &str) -> TestKey {
        Self::make(dir, name, algorithm, None)
    }

    /// A key made in 2020 that expired a day later; it signs an hour after
    /// it was made. gpg's faked clock runs on, so signing at the creation
    /// second itself can land "in the future" of a key made on a loaded host.
    pub fn expired(dir: &Path, name: &str) -> TestKey {
        Self::make(dir, name, "ed25519", Some(("20200101T000000", "20200101T010000")))
    }

    /// `faked` is gpg's clock when the key is made and when it signs.
    fn make(dir: &Path, name: &str, algorithm: &str, faked: Option<(&'static str, &'static str)>) -> TestKey {
        let faked_time = faked.map(|(_, signs)| signs);
        let made_at = faked.map(|(made, _)| made);
        let home = dir.join(format!("gnupg-{name}"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let gpg = |args: &[&str]| {
            run_ok(
                Command::new("gpg")
                    .arg("--homedir")
                    .arg(&home)
                    .args(["--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""])
                    .args(made_at.map(|t| format!("--faked-system-time={t}")))
                    .args(args),
            );
        };
        gpg(&[
            "--quick-gen-key",
            &format!("kpackfs test {name} <{name}@example.org>"),
            algorithm,
            "sign",
            if faked_time.is_some() { "1d" } else { "never" },
        ]);
        let keyring = dir.join(format!("{name}.gpg"));
        let out = Command::new("gpg").arg("--homedir").arg(&home).arg("--export").output().unwrap();
        std::fs::write(&keyring, out.stdout).unwrap();
        TestKey { home, keyring, faked_time }
    }

    fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.arg("--homedir").arg(&self.home).args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        c.args(self.faked_time.map(|t| format!("--faked-system-time={t}")));
        c
    }

    /// Clearsign with this key and `other` (two signatures, as xenial's
    /// Release carries one by a retired key beside the current one).
    pub fn clearsign_with(&self, other: &TestKey, input: &Path, output: &Path) {
        let secret = Command::new("gpg")
            .arg("--homedir")
            .arg(&other.home)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--export-secret-keys"])
            .output()
            .unwrap()
            .stdout;
        let mut import = self.gpg();
        import.arg("--import").stdin(std::process::Stdio::piped());
        let mut child = import.spawn().unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &secret).unwrap();
        assert!(child.wait().unwrap().success());
        let uid = |k: &TestKey| k.uid().expect("a user id");
        run_ok(self.gpg().args(["--clearsign", "-u", &uid(self), "-u", &uid(other), "-o"]).arg(output).arg(input));
    }

    pub fn clearsign(&self, input: &Path, output: &Path) {
        run_ok(self.gpg().arg("--clearsign").arg("-o").arg(output).arg(input));
    }

    /// Sign an RPM in place with rpmsign: a header signature, plus the
    /// legacy header+payload one with `legacy`.
    pub fn rpmsign(&self, rpm: &Path, legacy: bool) {
        let name = self.uid().expect("the key's user id");
        let mut c = Command::new("rpmsign");
        if legacy {
            c.arg("--rpmv3");
        }
        c.arg("--define").arg("__gpg /usr/bin/gpg");
        c.arg("--define").arg(format!("_gpg_path {}", self.home.display()));
        c.arg("--define").arg(format!("_gpg_name {name}"));
        c.arg("--define").arg("_gpg_sign_cmd_extra_args --batch --pinentry-mode loopback --passphrase ''");
        run_ok(c.arg("--addsign").arg(rpm));
    }

    /// The key's e-mail address.
    fn uid(&self) -> Option<String> {
        let out = self.gpg().args(["--with-colons", "--list-keys"]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let uid = text.lines().find(|l| l.starts_with("uid:"))?.split(':').nth(9)?.to_string();
        Some(uid.split('<').nth(1)?.trim_end_matches('>').to_string())
    }

    /// A keyring of this key with its revocation imported (the certificate
    /// gpg made when the key was generated): what the key signed since
    /// counts as signed by a revoked key.
    pub fn revoked_keyring(&self, dir: &Path) -> PathBuf {
        let revs = self.home.join("openpgp-revocs.d");
        let cert = std::fs::read_dir(&revs).unwrap().next().expect("a revocation certificate").unwrap().path();
        // gpg guards the certificate with a leading ':' on its armor line.
        let text = std::fs::read_to_string(&cert)
            .unwrap()
            .replace(":-----BEGIN PGP PUBLIC KEY BLOCK", "-----BEGIN PGP PUBLIC KEY BLOCK");
        let home = dir.join("gnupg-revoked");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let gpg = |args: &[&str]| {
            let mut c = Command::new("gpg");
            c.arg("--homedir").arg(&home).args(["--batch", "--yes"]).args(args);
            c
        };
        run_ok(gpg(&["--import"]).arg(&self.keyring));
        let rev = dir.join("revocation.asc");
        std::fs::write(&rev, text).unwrap();
        run_ok(gpg(&["--import"]).arg(&rev));
        let out = gpg(&["--export"]).output().unwrap();
        let keyring = dir.join("revoked.gpg");
        std::fs::write(&keyring, out.stdout).unwrap();
        let _ = Command::new("gpgconf").arg("--homedir").arg(&home).args(["--kill", "all"]).output();
        keyring
    }

    pub fn detach_sign(&self, input: &Path, output: &Path, armor: bool) {
        let mut c = self.gpg();
        if armor {
            c.arg("--armor");
        }
        run_ok(c.arg("--detach-sign").arg("-o").arg(output).arg(input));
    }
}

impl Drop for TestKey {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").arg("--homedir").arg(&self.home).args(["--kill", "all"]).output();
    }
}

/// An apt repository rooted at `root` (the URL path of the archive).
pub struct AptRepo {
    pub root: PathBuf,
    pub suite: String,
    /// One binary-<arch>/Packages each (amd64 unless told).
    pub architectures: Vec<String>,
}

impl AptRepo {
    pub fn new(root: &Path, suite: &str) -> AptRepo {
        std::fs::create_dir_all(root.join("pool/main")).unwrap();
        AptRepo { root: root.to_path_buf(), suite: suite.to_string(), architectures: vec!["amd64".into()] }
    }

    /// A repository with an index per architecture (`_all` packages in each).
    pub fn with_architectures(root: &Path, suite: &str, architectures: &[&str]) -> AptRepo {
        let mut repo = AptRepo::new(root, suite);
        repo.architectures = architectures.iter().map(|a| a.to_string()).collect();
        repo
    }

    pub fn add(&self, debs: &[PathBuf]) {
        for deb in debs {
            std::fs::copy(deb, self.root.join("pool/main").join(deb.file_name().unwrap())).unwrap();
        }
    }

    fn dists(&self) -> PathBuf {
        self.root.join("dists").join(&self.suite)
    }

    /// Regenerate Packages(.xz) and Release; sign with `key` (InRelease and
    /// Release.gpg), or leave unsigned.
    pub fn publish(&self, key: Option<&TestKey>) {
        self.publish_with(key, "")
    }

    /// Publish with extra Release fields (e.g. `Date:` and `Valid-Until:` lines).
    pub fn publish_with(&self, key: Option<&TestKey>, fields: &str) {
        let mut indexes = Vec::new();
        for arch in &self.architectures {
            let bin = self.dists().join(format!("main/binary-{arch}"));
            std::fs::create_dir_all(&bin).unwrap();
            let packages = run_ok(
                Command::new("dpkg-scanpackages")
                    .args(["--multiversion", "--arch", arch, "pool", "/dev/null"])
                    .current_dir(&self.root),
            );
            std::fs::write(bin.join("Packages"), &packages).unwrap();
            let _ = std::fs::remove_file(bin.join("Packages.xz"));
            run_ok(Command::new("xz").arg("-k").arg(bin.join("Packages")));
            indexes.push(format!("main/binary-{arch}/Packages"));
            indexes.push(format!("main/binary-{arch}/Packages.xz"));
        }
        let mut release = format!(
            "Origin: kpackfs-test\nSuite: {s}\nCodename: {s}\n{fields}Architectures: {a}\nComponents: main\nSHA256:\n",
            s = self.suite,
            a = self.architectures.join(" ")
        );
        for f in &indexes {
            let path = self.dists().join(f);
            release.push_str(&format!(
                " {} {} {f}\n",
                super::sha256_file(&path),
                std::fs::metadata(&path).unwrap().len()
            ));
        }
        std::fs::write(self.dists().join("Release"), release).unwrap();
        for f in ["InRelease", "Release.gpg"] {
            let _ = std::fs::remove_file(self.dists().join(f));
        }
        if let Some(key) = key {
            key.clearsign(&self.dists().join("Release"), &self.dists().join("InRelease"));
            key.detach_sign(&self.dists().join("Release"), &self.dists().join("Release.gpg"), false);
        }
    }

    pub fn packages_xz(&self) -> PathBuf {
        self.dists().join("main/binary-amd64/Packages.xz")
    }

    pub fn in_release(&self) -> PathBuf {
        self.dists().join("InRelease")
    }
}

/// An archive laid out as Ubuntu's (suites with pockets, components,
/// architectures), its indexes made by apt-ftparchive: `add` puts packages
/// into a suite's component, `publish` writes every Packages(.xz) and a
/// signed Release per suite.
pub struct FtpArchive {
    pub root: PathBuf,
}

/// Which checksums the indexes carry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hashes {
    /// MD5, SHA1, SHA256 and SHA512 (apt-ftparchive's default).
    All,
    /// SHA512 only (Ubuntu from 26.10 on).
    Sha512Only,
}

impl FtpArchive {
    pub fn new(root: &Path) -> FtpArchive {
        std::fs::create_dir_all(root).unwrap();
        FtpArchive { root: root.to_path_buf() }
    }

    /// Put `debs` into `suite`'s `component` (pool/<component>/<suite>/).
    pub fn add(&self, suite: &str, component: &str, debs: &[PathBuf]) {
        let dir = self.root.join("pool").join(component).join(suite);
        std::fs::create_dir_all(&dir).unwrap();
        for deb in debs {
            std::fs::copy(deb, dir.join(deb.file_name().unwrap())).unwrap();
        }
    }

    fn hash_opts(hashes: Hashes) -> Vec<&'static str> {
        match hashes {
            Hashes::All => vec![],
            Hashes::Sha512Only => vec![
                "-o",
                "APT::FTPArchive::MD5=false",
                "-o",
                "APT::FTPArchive::SHA1=false",
                "-o",
                "APT::FTPArchive::SHA256=false",
            ],
        }
    }

    /// Index and sign `suites` (each with every one of `components`, empty
    /// ones included, as Ubuntu's are) for `arches`.
    pub fn publish(&self, key: &TestKey, suites: &[&str], components: &[&str], arches: &[&str], hashes: Hashes) {
        for suite in suites {
            let dists = self.root.join("dists").join(suite);
            for component in components {
                let pool = self.root.join("pool").join(component).join(suite);
                std::fs::create_dir_all(&pool).unwrap();
                for arch in arches {
                    let bin = dists.join(format!("{component}/binary-{arch}"));
                    std::fs::create_dir_all(&bin).unwrap();
                    let packages = run_ok(
                        Command::new("apt-ftparchive")
                            .args(Self::hash_opts(hashes))
                            .args(["--arch", arch, "packages"])
                            .arg(format!("pool/{component}/{suite}"))
                            .current_dir(&self.root),
                    );
                    std::fs::write(bin.join("Packages"), &packages).unwrap();
                    let _ = std::fs::remove_file(bin.join("Packages.xz"));
                    run_ok(Command::new("xz").arg("-k").arg(bin.join("Packages")));
                }
            }
            let release = run_ok(
                Command::new("apt-ftparchive")
                    .args(Self::hash_opts(hashes))
                    .args(["-o", &format!("APT::FTPArchive::Release::Suite={suite}")])
                    .args(["-o", &format!("APT::FTPArchive::Release::Codename={suite}")])
                    .args(["-o", &format!("APT::FTPArchive::Release::Architectures={}", arches.join(" "))])
                    .args(["-o", &format!("APT::FTPArchive::Release::Components={}", components.join(" "))])
                    .arg("release")
                    .arg(format!("dists/{suite}"))
                    .current_dir(&self.root),
            );
            std::fs::write(dists.join("Release"), release).unwrap();
            for f in ["InRelease", "Release.gpg"] {
                let _ = std::fs::remove_file(dists.join(f));
            }
            key.clearsign(&dists.join("Release"), &dists.join("InRelease"));
            key.detach_sign(&dists.join("Release"), &dists.join("Release.gpg"), false);
        }
    }
}

/// A yum repository made by createrepo_c, repomd.xml signed with `key`.
pub fn yum_repo(dir: &Path, rpms: &[PathBuf], key: Option<&TestKey>) {
    std::fs::create_dir_all(dir.join("Packages")).unwrap();
    for rpm in rpms {
        std::fs::copy(rpm, dir.join("Packages").join(rpm.file_name().unwrap())).unwrap();
    }
    run_ok(Command::new("createrepo_c").arg("--quiet").arg(dir));
    if let Some(key) = key {
        key.detach_sign(&dir.join("repodata/repomd.xml"), &dir.join("repodata/repomd.xml.asc"), true);
    }
}

/// A signed apt repository at `<work>/www/debian` (suite `stable`) with one
/// synthetic Debian kernel, served over loopback HTTP from `<work>/www`.
pub struct SignedRepo {
    pub work: tempfile::TempDir,
    pub key: TestKey,
    pub fx: super::pkgs::Synthetic,
    pub repo: AptRepo,
    pub server: super::http::Server,
}

impl SignedRepo {
    pub fn new(compressions: [&str; 3]) -> SignedRepo {
        let work = super::tempdir();
        let key = TestKey::new(work.path(), "archive");
        let fx = super::pkgs::synthetic_debian(work.path(), compressions);
        let repo = AptRepo::new(&work.path().join("www/debian"), "stable");
        repo.add(&fx.files);
        repo.publish(Some(&key));
        let server = super::http::Server::start();
        server.mount("/", &work.path().join("www"));
        SignedRepo { work, key, fx, repo, server }
    }
}

/// A synthetic Debian kernel in an apt repository under `<work>/www/debian`
/// (suite `testsuite`), signed with a new key: (key, kernel, www).
pub fn signed_debian_kernel(work: &Path) -> (TestKey, super::pkgs::Synthetic, PathBuf) {
    let key = TestKey::new(work, "archive");
    let deb = super::pkgs::synthetic_debian(work, ["xz", "xz", "xz"]);
    let www = work.join("www");
    let repo = AptRepo::new(&www.join("debian"), "testsuite");
    repo.add(&deb.files);
    repo.publish(Some(&key));
    (key, deb, www)
}
