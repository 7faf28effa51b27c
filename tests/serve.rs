//! `kpackfs serve` with curl (issue 12 item 3): the namespace's .tgz files
//! at the mount's paths, HEAD, Range, ETag and If-None-Match, 404 for
//! anything else and for traversal attempts, one build for concurrent cold
//! requests.

mod common;

use common::mirror::Fixture;
use common::{kpackfs, run_ok, tempdir};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};

struct Serving {
    child: Child,
    url: String,
    cache: tempfile::TempDir,
}

impl Serving {
    fn start(fx: &Fixture) -> Serving {
        Self::start_with(fx, &[])
    }

    fn start_with(fx: &Fixture, extra: &[&str]) -> Serving {
        let cache = tempdir();
        let log = std::fs::File::create(cache.path().join("serve.log")).unwrap();
        let mut child = kpackfs()
            .args(["serve", "--listen", "127.0.0.1:0", "--manifest"])
            .arg(&fx.manifest)
            .arg("--cache-dir")
            .arg(cache.path())
            .args(fx.mirror_args())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url =
            line.split_whitespace().find(|w| w.starts_with("http://")).expect(&line).trim_end_matches('/').to_string();
        Serving { child, url, cache }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.cache.path().join("serve.log")).unwrap_or_default()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// curl: (status, headers, body).
fn curl(args: &[&str]) -> (u16, String, Vec<u8>) {
    let dir = tempdir();
    let (headers, body) = (dir.path().join("h"), dir.path().join("b"));
    let out = run_ok(
        Command::new("curl")
            .args(["-s", "--path-as-is", "-D"])
            .arg(&headers)
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_code}"])
            .args(args),
    );
    (
        out.trim().parse().unwrap(),
        std::fs::read_to_string(&headers).unwrap_or_default().to_lowercase(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| l.strip_prefix(&format!("{name}: "))).map(str::trim)
}

#[test]
fn tgz_files_over_http_with_ranges_etags_and_nothing_else() {
    let fx = Fixture::new(true);
    let s = Serving::start(&fx);
    let deb = fx.bundle("debian");
    let flat = format!("{}/bundles/bundle-{}.tgz", s.url, deb.name);
    let typed = format!("{}/debian/{}.tgz", s.url, deb.name);

    // Concurrent cold requests: one build.
    let bodies: Vec<Vec<u8>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                sc.spawn({
                    let u = if i % 2 == 0 { flat.clone() } else { typed.clone() };
                    move || curl(&[&u]).2
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(bodies.windows(2).all(|w| w[0] == w[1]) && bodies[0].len() > 1000);
    assert_eq!(
        s.log().lines().filter(|l| l.contains(&format!("built debian/{}.tgz", deb.name))).count(),
        1,
        "{}",
        s.log()
    );
    // The bytes are the bundle's: `kpackfs bundle` writes the same.
    let out = tempdir();
    let tgz = out.path().join("b.tgz");
    run_ok(
        kpackfs()
            .args(["bundle", &deb.name, "--manifest"])
            .arg(&fx.manifest)
            .arg("--cache-dir")
            .arg(out.path().join("c"))
            .args(fx.mirror_args())
            .arg("-o")
            .arg(&tgz),
    );
    assert_eq!(std::fs::read(&tgz).unwrap(), bodies[0]);

    // HEAD: the length and the ETag, no body.
    let (code, headers, body) = curl(&["-I", &typed]);
    assert_eq!(code, 200);
    assert!(body.len() < 1024, "no body, only headers (curl -I writes them): {}", body.len());
    assert_eq!(header(&headers, "content-length"), Some(bodies[0].len().to_string().as_str()));
    let etag = header(&headers, "etag").unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", kpackfs::util::sha256_hex(&bodies[0])));
    assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));
    // Range.
    let (code, headers, body) = curl(&["-r", "100-1099", &typed]);
    assert_eq!((code, body.as_slice()), (206, &bodies[0][100..1100]));
    assert_eq!(header(&headers, "content-range"), Some(format!("bytes 100-1099/{}", bodies[0].len()).as_str()));
    let (code, _, body) = curl(&["-r", "-10", &typed]);
    assert_eq!((code, body.as_slice()), (206, &bodies[0][bodies[0].len() - 10..]));
    let (code, _, _) = curl(&["-r", &format!("{}-", bodies[0].len()), &typed]);
    assert_eq!(code, 416);
    // If-Range with another validator: the whole body.
    let (code, _, body) = curl(&["-r", "0-9", "-H", "If-Range: \"other\"", &typed]);
    assert_eq!((code, body.len()), (200, bodies[0].len()));
    // If-None-Match.
    let (code, _, body) = curl(&["-H", &format!("If-None-Match: {etag}"), &flat]);
    assert_eq!((code, body.len()), (304, 0));

    // The index.
    let (code, _, body) = curl(&[&format!("{}/index.json", s.url)]);
    assert_eq!(code, 200);
    let index: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(index.len(), fx.bundles.len());
    assert!(index.iter().any(|e| e["tgz"] == format!("/debian/{}.tgz", deb.name) && e["id"] == deb.id.as_str()));

    // Nothing else exists; nothing outside the namespace is reachable.
    for path in [
        "/".to_string(),
        format!("/debian/{}", deb.name),
        format!("/debian/{}/BUNDLE_UNAME", deb.name),
        "/debian/nope.tgz".to_string(),
        "/../../../../etc/passwd".to_string(),
        "/debian/../../etc/passwd".to_string(),
        "/%2e%2e/%2e%2e/etc/passwd".to_string(),
        "/debian%2f..%2f..%2fetc%2fpasswd.tgz".to_string(),
        "/bundles/bundle-..%2f..%2fetc%2fpasswd.tgz".to_string(),
        "//etc/passwd".to_string(),
        "/.kpackfs/status.json".to_string(),
    ] {
        let (code, _, body) = curl(&[&format!("{}{path}", s.url)]);
        assert_eq!(code, 404, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("root:"), "{path}");
    }
    let (code, headers, _) = curl(&["-X", "POST", &typed]);
    assert_eq!(code, 405);
    assert_eq!(header(&headers, "allow"), Some("get, head"));
    let (code, _, _) = curl(&["-X", "DELETE", &typed]);
    assert_eq!(code, 405);
}

#[test]
fn a_bundle_that_cannot_be_built_is_503_and_the_server_goes_on() {
    let fx = Fixture::new(true);
    let s = Serving::start(&fx);
    let rpm = fx.bundle("redhat");
    std::fs::remove_file(fx.mirror_file(&rpm.files[0].1)).unwrap();
    let (code, _, body) = curl(&[&format!("{}/redhat/{}.tgz", s.url, rpm.name)]);
    assert_eq!(code, 503);
    assert!(String::from_utf8_lossy(&body).contains("404"), "the cause: {}", String::from_utf8_lossy(&body));
    let deb = fx.bundle("debian");
    let (code, _, _) = curl(&["-I", &format!("{}/debian/{}.tgz", s.url, deb.name)]);
    assert_eq!(code, 200);
}

/// Many sockets from one client address that connect, send nothing and
/// reconnect in a loop (32 against 16 slots): each client holds at most a
/// quarter of the slots and idle sockets give theirs back after the short
/// header deadline, so a client from another address is served at once.
fn flood(
    addr: std::net::SocketAddr,
    sockets: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..sockets)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                        let _ = s.set_read_timeout(Some(std::time::Duration::from_millis(200)));
                        let mut buf = [0u8; 16];
                        // Hold it until the server closes it, then reconnect at once.
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            match s.read(&mut buf) {
                                Ok(0) => break,
                                Err(e)
                                    if e.kind() == std::io::ErrorKind::WouldBlock
                                        || e.kind() == std::io::ErrorKind::TimedOut =>
                                {
                                    continue
                                }
                                _ => break,
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

fn probes_from_another_address(url: &str, n: usize) -> usize {
    (0..n)
        .filter(|_| {
            let out = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "5",
                    "--interface",
                    "127.0.0.2",
                    url,
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim() == "200"
        })
        .count()
}

#[test]
fn a_client_reconnecting_in_a_loop_cannot_starve_the_others() {
    let fx = Fixture::new(true);
    let s = Serving::start_with(&fx, &["--max-connections", "16"]);
    let addr: std::net::SocketAddr = s.url.trim_start_matches("http://").parse().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders = flood(addr, 32, stop.clone());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let served = probes_from_another_address(&format!("{}/index.json", s.url), 6);
    // The metrics listener of a mount (16 slots, fixed) holds up the same way.
    let mut args = fx.mirror_args();
    args.extend(["--metrics".to_string(), "127.0.0.1:0".to_string()]);
    let m = common::mirror::Mounted::start(&fx.manifest, None, &args);
    let metrics: std::net::SocketAddr = m.status()["metrics_addr"].as_str().unwrap().parse().unwrap();
    let more = flood(metrics, 32, stop.clone());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let metrics_served = probes_from_another_address(&format!("http://{metrics}/metrics"), 3);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flooders.into_iter().chain(more) {
        let _ = f.join();
    }
    assert_eq!(served, 6, "every probe from another address was served: {}", s.log());
    assert_eq!(metrics_served, 3, "and by the metrics listener");
}
