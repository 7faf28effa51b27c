//! An S3-compatible server for the tier tests: moto's server mode (PyPI),
//! started on loopback and stopped on drop. `.ci/run` installs it into
//! `target/ci-venv`; `KPACKFS_MOTO_SERVER` names another moto_server.
//! Users and policies are enforced (IAM): a writer and a read-only reader.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BUCKET: &str = "kpackfs-fleet";

pub struct Moto {
    pub port: u16,
    child: Child,
    /// (access key, secret) of the writer and the reader.
    pub writer: (String, String),
    pub reader: (String, String),
    python: PathBuf,
}

fn venv_bin(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin").join(name)
}

impl Moto {
    pub fn start() -> Moto {
        let server =
            std::env::var_os("KPACKFS_MOTO_SERVER").map(PathBuf::from).unwrap_or_else(|| venv_bin("moto_server"));
        assert!(server.exists(), "{} missing: bash .ci/run installs moto into target/ci-venv", server.display());
        let python = server.parent().unwrap().join("python");
        // Requests before users exist are not checked (bucket, 2 x (user, policy, attach, key)); every later one is.
        // Port 0: the server binds a free port and prints it (no port picked and dropped here).
        let mut child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "9")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting moto_server");
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
                    let _ = tx.send(rest.trim().parse::<u16>().ok());
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(30)).ok().flatten().expect("moto_server did not say its port");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut moto = Moto { port, child, writer: Default::default(), reader: Default::default(), python };
        let keys = moto.admin(&["setup", &moto.endpoint(), BUCKET], None);
        let keys: serde_json::Value = serde_json::from_str(&keys).unwrap();
        let pair = |u: &str| (keys[u][0].as_str().unwrap().to_string(), keys[u][1].as_str().unwrap().to_string());
        moto.writer = pair("writer");
        moto.reader = pair("reader");
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn admin(&self, args: &[&str], key: Option<&(String, String)>) -> String {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/common/moto_admin.py");
        let mut cmd = Command::new(&self.python);
        cmd.arg(script).args(args);
        if let Some((ak, sk)) = key {
            cmd.env("KPACKFS_AK", ak).env("KPACKFS_SK", sk);
        }
        super::run_ok(&mut cmd)
    }

    /// The AWS_* variables for kpackfs, as `who` (the writer or the reader).
    pub fn env(&self, who: &(String, String)) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", who.0.as_str()),
            ("AWS_SECRET_ACCESS_KEY", who.1.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", &self.endpoint()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The remote URL of a prefix of the test bucket.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// Keys under `prefix` (as the writer).
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let out = self.admin(&["list", &self.endpoint(), BUCKET, prefix], Some(&self.writer));
        out.lines().map(str::to_string).collect()
    }

    /// Replace an object (as the writer), e.g. to corrupt it.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), bytes).unwrap();
        self.admin(&["put", &self.endpoint(), BUCKET, key, tmp.path().to_str().unwrap()], Some(&self.writer));
    }

    /// Delete an object (as the writer).
    pub fn delete(&self, key: &str) {
        self.admin(&["delete", &self.endpoint(), BUCKET, key], Some(&self.writer));
    }

    /// Stop the server (the tier goes down).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
