//! Many `kpackfs publish` workers filling one destination (issue 23 item
//! 6): shards split the bundles by id, workers started at once build each
//! bundle once, and a bundle another worker is building is put off to the
//! end of the run, not waited on. Real processes, a loopback mirror, a
//! directory destination (the file:// tier: create-only writes and claims
//! as on a bucket).

mod common;

use common::mirror::Fixture;
use common::tier::objects;
use common::{kpackfs, run_ok, tempdir};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn publish(fx: &Fixture, to: &Path, extra: &[&str]) -> Command {
    let mut c = kpackfs();
    c.arg("publish").args(["--layout", "id"]).args(extra).arg("--to").arg(to);
    // Each worker its own cache (removed with the fixture): they share the
    // destination alone.
    c.arg("--manifest").arg(&fx.manifest).arg("--cache-dir").arg(fresh_cache(fx));
    c.args(fx.mirror_args());
    c
}

/// A new cache directory inside the fixture's directory.
fn fresh_cache(fx: &Fixture) -> std::path::PathBuf {
    tempfile::Builder::new().prefix("cache-").tempdir_in(fx.dir.path()).unwrap().keep()
}

/// A number from the summary line: the one after `label`.
fn figure(out: &Output, label: &str) -> usize {
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find(label).unwrap_or_else(|| panic!("no {label:?} in {text}"));
    let digits: String = text[at + label.len()..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("no figure after {label:?} in {text}"))
}

fn succeeded(out: &Output) {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Bundle ids whose digest is in the destination.
fn published_ids(to: &Path) -> Vec<String> {
    let mut ids: Vec<String> = objects(to)
        .iter()
        .filter_map(|o| {
            o.strip_prefix("by-id/")?.strip_suffix(".sha256").filter(|id| !id.contains('.')).map(str::to_string)
        })
        .collect();
    ids.sort();
    ids
}

fn all_ids(fx: &Fixture) -> Vec<String> {
    let mut ids: Vec<String> = fx.bundles.iter().map(|b| b.id.clone()).collect();
    ids.sort();
    ids
}

/// The shard a bundle id falls in, as the option documents it: the id's
/// first eight bytes, big-endian, modulo N.
fn shard_of(id: &str, n: u64) -> u64 {
    u64::from_str_radix(&id[..16], 16).unwrap() % n
}

#[test]
fn shards_split_the_bundles_by_id_and_together_publish_each_once() {
    let fx = Fixture::new(true);
    let to = tempdir();
    let mut seen = 0;
    for i in 0..2u64 {
        let out = publish(&fx, to.path(), &["--shard", &format!("{i}/2")]).output().unwrap();
        succeeded(&out);
        let mine: Vec<String> = all_ids(&fx).into_iter().filter(|id| shard_of(id, 2) == i).collect();
        assert_eq!(figure(&out, "built here "), mine.len(), "shard {i}");
        assert_eq!(figure(&out, "published "), mine.len(), "shard {i}");
        seen += mine.len();
        // Everything so far is this shard's and the ones before.
        let so_far: Vec<String> = all_ids(&fx).into_iter().filter(|id| shard_of(id, 2) <= i).collect();
        assert_eq!(published_ids(to.path()), so_far, "after shard {i}");
    }
    assert_eq!(seen, fx.bundles.len());
    // Together they did it all: a worker without a shard has nothing to do.
    let out = publish(&fx, to.path(), &[]).output().unwrap();
    succeeded(&out);
    assert_eq!(figure(&out, "built here "), 0);
    assert_eq!(figure(&out, "already there "), fx.bundles.len());
    for bad in ["2/2", "0/0", "1", "a/2"] {
        let out = publish(&fx, to.path(), &["--shard", bad]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "--shard {bad} is refused");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--shard"), "--shard {bad}");
    }
}

#[test]
fn two_workers_started_at_once_build_each_bundle_once() {
    let fx = Fixture::new(true);
    let to = tempdir();
    let spawn = || publish(&fx, to.path(), &["--parallel", "2"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let (a, b) = (spawn().unwrap(), spawn().unwrap());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    succeeded(&a);
    succeeded(&b);
    let built = figure(&a, "built here ") + figure(&b, "built here ");
    assert_eq!(built, fx.bundles.len(), "each bundle built once by the two workers");
    assert_eq!(figure(&a, "published ") + figure(&b, "published "), fx.bundles.len());
    assert_eq!(published_ids(to.path()), all_ids(&fx));
    let claims: Vec<String> = objects(to.path()).into_iter().filter(|o| o.ends_with(".building")).collect();
    assert!(claims.is_empty(), "claims left: {claims:?}");
}

#[test]
fn a_bundle_another_worker_is_building_is_put_off_not_waited_on() {
    let fx = Fixture::new(true);
    let to = tempdir();
    // The bundle this worker takes first (its listing order), claimed by
    // "another worker" that is still building it.
    let list =
        run_ok(kpackfs().arg("list").arg("--manifest").arg(&fx.manifest).arg("--cache-dir").arg(fresh_cache(&fx)));
    let first = list.lines().next().and_then(|l| l.split_whitespace().nth(3)).expect("a bundle listed").to_string();
    let full = fx.bundles.iter().find(|b| b.id.starts_with(&first)).expect("the listed bundle").id.clone();
    std::fs::create_dir_all(to.path().join("by-id")).unwrap();
    let claim = to.path().join(format!("by-id/{full}.building"));
    std::fs::write(&claim, "0\n").unwrap();
    let mut worker =
        publish(&fx, to.path(), &["--parallel", "1"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // One at a time, the claimed bundle first: the others are published
    // while the claim is held.
    let others: Vec<String> = all_ids(&fx).into_iter().filter(|id| *id != full).collect();
    let started = Instant::now();
    while published_ids(to.path()) != others {
        if started.elapsed() > Duration::from_secs(60) || worker.try_wait().unwrap().is_some() {
            let _ = worker.kill();
            let out = worker.wait_with_output().unwrap();
            panic!(
                "the other bundles were not published while one was claimed: {:?}\n{}",
                objects(to.path()),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Then it waits on the claim; the other worker gives up (its claim
    // goes without the bundle), so this one builds it.
    std::thread::sleep(Duration::from_millis(500));
    assert!(worker.try_wait().unwrap().is_none(), "the claimed bundle is waited on in the last pass");
    std::fs::remove_file(&claim).unwrap();
    let out = worker.wait_with_output().unwrap();
    succeeded(&out);
    assert_eq!(figure(&out, "deferred behind another worker's claim "), 1);
    assert_eq!(figure(&out, "built here "), fx.bundles.len());
    assert_eq!(published_ids(to.path()), all_ids(&fx));
}
