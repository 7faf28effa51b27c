//! Refresh while mounted: with --crawl-interval, a kernel added to a
//! repository appears at its path, and builds, without a remount; even a
//! name that was looked up (and cached as missing) before.

mod common;

use common::http::Server;
use common::mirror::{errno_of, Mounted};
use common::pkgs::{self, real_debian};
use common::repo::{AptRepo, TestKey};
use common::{build_hello, read, tempdir};
use std::path::Path;
use std::time::{Duration, Instant};

fn wait_for(path: &Path, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn new_kernel_appears_while_mounted() {
    let work = tempdir();
    let key = TestKey::new(work.path(), "archive");
    let fx = pkgs::synthetic_debian(work.path(), ["xz", "xz", "xz"]);
    let repo = AptRepo::new(&work.path().join("www/debian"), "stable");
    repo.add(&fx.files);
    repo.publish(Some(&key));
    let server = Server::start();
    server.mount("/", &work.path().join("www"));
    let sources = work.path().join("sources.yml");
    std::fs::write(
        &sources,
        format!(
            "- name: test-debian\n  type: debian\n  kind: apt\n  url: http://archive.example.test/debian\n  suites: [stable]\n  components: [main]\n  architectures: [amd64]\n  packages: ['^linux-headers-.*-amd64$']\n  grouping: depends\n  keyring: {}\n",
            key.keyring.display()
        ),
    )
    .unwrap();
    let empty = work.path().join("empty.yml");
    std::fs::write(&empty, "# no bundles yet\n").unwrap();
    let args: Vec<String> = [
        "--crawl-interval",
        "1s",
        "--sources",
        sources.to_str().unwrap(),
        "--no-apt-mirrors",
        "--mirror",
        &format!("http://archive.example.test={}", server.url("")),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let m = Mounted::start(&empty, None, &args);

    let first = m.path(&format!("debian/{}", fx.name));
    assert!(wait_for(&first, Duration::from_secs(30)), "the first crawl shows {}: {}", fx.name, m.log());
    assert_eq!(read(&first.join("BUNDLE_UNAME")), fx.uname);

    // A name looked up before it exists is cached as missing by the kernel.
    let deb = real_debian();
    let second = m.path(&format!("debian/{}", deb.uname));
    assert_eq!(errno_of(std::fs::metadata(&second)), Some(libc::ENOENT));
    repo.add(&deb.files());
    repo.publish(Some(&key));
    assert!(wait_for(&second, Duration::from_secs(30)), "the new kernel appears without a remount: {}", m.log());
    let listing: Vec<String> = std::fs::read_dir(m.path("debian"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(listing.contains(&deb.uname) && listing.contains(&format!("{}.tgz", deb.uname)), "{listing:?}");
    let vermagic = build_hello(&second, &work.path().join("hello"));
    assert!(vermagic.starts_with(&deb.uname), "{vermagic}");
}
