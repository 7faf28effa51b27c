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
}

impl TestKey {
    pub fn new(dir: &Path, name: &str) -> TestKey {
        let home = dir.join(format!("gnupg-{name}"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let gpg = |args: &[&str]| {
            run_ok(
                Command::new("gpg")
                    .arg("--homedir")
                    .arg(&home)
                    .args(["--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""])
                    .args(args),
            );
        };
        gpg(&["--quick-gen-key", &format!("kpackfs test {name} <{name}@example.org>"), "ed25519", "sign", "never"]);
        let keyring = dir.join(format!("{name}.gpg"));
        let out = Command::new("gpg").arg("--homedir").arg(&home).arg("--export").output().unwrap();
        std::fs::write(&keyring, out.stdout).unwrap();
        TestKey { home, keyring }
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
        c
    }

    pub fn clearsign(&self, input: &Path, output: &Path) {
        run_ok(self.gpg().arg("--clearsign").arg("-o").arg(output).arg(input));
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
}

impl AptRepo {
    pub fn new(root: &Path, suite: &str) -> AptRepo {
        std::fs::create_dir_all(root.join("pool/main")).unwrap();
        AptRepo { root: root.to_path_buf(), suite: suite.to_string() }
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
        let bin = self.dists().join("main/binary-amd64");
        std::fs::create_dir_all(&bin).unwrap();
        let packages = run_ok(
            Command::new("dpkg-scanpackages").args(["--multiversion", "pool", "/dev/null"]).current_dir(&self.root),
        );
        std::fs::write(bin.join("Packages"), &packages).unwrap();
        let _ = std::fs::remove_file(bin.join("Packages.xz"));
        run_ok(Command::new("xz").arg("-k").arg(bin.join("Packages")));
        let mut release = format!(
            "Origin: kpackfs-test\nSuite: {s}\nCodename: {s}\n{fields}Architectures: amd64\nComponents: main\nSHA256:\n",
            s = self.suite
        );
        for f in ["main/binary-amd64/Packages", "main/binary-amd64/Packages.xz"] {
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
