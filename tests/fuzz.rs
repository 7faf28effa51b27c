//! Fuzzing every parser of hostile input, on stable Rust.
//!
//! `cargo fuzz` needs a nightly toolchain, which a new machine here does not
//! have; this is a small mutation fuzzer instead: each target starts from
//! its seed corpus (`fuzz/corpus/<target>/`, made by `fuzz/make-seeds.sh`
//! with the real tools, plus seeds built here), mutates inputs (bit flips,
//! interesting bytes, insertions, deletions, duplications, splices,
//! truncations) for a time budget, and checks that the parser returns —
//! an error is fine, a panic is a failure. A failing input is written to
//! `target/fuzz-failures/<target>-<hash>` and named in the failure.
//! Allocations over 1 GiB abort the process (a parser that trusts a size it
//! read; Rust aborts on a failed allocation, no unwinding): each input is
//! written to `target/fuzz-failures/<target>-in-progress` before it runs,
//! so after an abort that file is the input, and the next run of the
//! target fails at once naming it.
//!
//! Budget: `KPACKFS_FUZZ_SECS` per target (default 2 s; CI runs that).
//! Longer runs, for when a parser changes:
//! `KPACKFS_FUZZ_SECS=600 cargo nextest run --release --test fuzz --no-capture`.
//! `KPACKFS_FUZZ_SEED` makes a run repeatable.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Refuses single allocations over 1 GiB: a parser allocating what an
/// input claims, before reading it, fails loudly instead of thrashing.
struct Capped;

const ALLOC_CAP: usize = 1 << 30;

// SAFETY: forwards to the system allocator, refusing only oversized requests.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOC_CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOC_CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Capped = Capped;

/// xorshift64*: small, fast, repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, b'/', b'.', b'\n', b':', b'-', b'0', b'9'];

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                out.splice(at..at, bytes);
            }
            3 if len > 1 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                out.drain(at..at + n);
            }
            4 if len > 1 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(256));
                let copy = out[at..at + n].to_vec();
                let to = rng.below(len + 1);
                out.splice(to..to, copy);
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let at = rng.below(len + 1);
                    out.truncate(at);
                    out.extend_from_slice(&other[from..]);
                }
            }
            6 if len > 0 => out.truncate(rng.below(len)),
            // A multi-byte number rewritten: counts, sizes, offsets.
            _ if len >= 8 => {
                let at = rng.below(len - 7);
                let v = [0u64, 1, 0x7fff_ffff, 0xffff_ffff, u64::MAX, 0x1_0000_0000][rng.below(6)];
                out[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            _ => {}
        }
    }
    out
}

fn seeds(target: &str, extra: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| std::fs::read(e.ok()?.path()).ok()).collect())
        .unwrap_or_default();
    out.extend(extra);
    assert!(!out.is_empty(), "no seeds for {target} in {}", dir.display());
    out
}

fn failure_path(target: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{target}-{}", &kpackfs::util::sha256_hex(input)[..16]))
}

/// Run `check` on the seeds, then on mutations for the time budget.
fn fuzz(target: &str, extra_seeds: Vec<Vec<u8>>, check: impl Fn(&[u8])) {
    let secs: f64 = std::env::var("KPACKFS_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let seed: u64 = std::env::var("KPACKFS_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    });
    let corpus = seeds(target, extra_seeds);
    let mut rng = Rng(seed);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut runs = 0u64;
    // An input left from a run that aborted (the allocation cap): report it.
    let in_progress = failure_path(target, b"").with_file_name(format!("{target}-in-progress"));
    if let Ok(left) = std::fs::read(&in_progress) {
        let kept = failure_path(target, &left);
        let _ = std::fs::rename(&in_progress, &kept);
        panic!("{target}: an earlier run aborted (an allocation over the cap?) on the input now in {}", kept.display());
    }
    let mut progress = std::fs::File::create(&in_progress).expect("the in-progress file");
    let run = |input: &[u8], progress: &mut std::fs::File| {
        use std::io::{Seek, Write};
        // Written before the parser runs: an abort leaves it behind.
        let _ = progress.set_len(0).and_then(|()| progress.rewind()).and_then(|_| progress.write_all(input));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(input)));
        if result.is_err() {
            let path = failure_path(target, input);
            let _ = std::fs::write(&path, input);
            panic!("{target}: a parser panicked; the input is in {} (seed {seed})", path.display());
        }
    };
    for input in &corpus {
        run(input, &mut progress);
    }
    while Instant::now() < deadline {
        let base = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, base, &corpus);
        run(&input, &mut progress);
        runs += 1;
    }
    drop(progress);
    let _ = std::fs::remove_file(&in_progress);
    eprintln!("{target}: {runs} mutated inputs in {secs}s (seed {seed}), no panic");
}

fn budget() -> std::sync::Arc<kpackfs::package::Budget> {
    kpackfs::package::Budget::new(kpackfs::package::Limits {
        max_file_bytes: 16 << 20,
        max_total_bytes: 64 << 20,
        max_entries: 100_000,
    })
}

#[test]
fn fuzz_packages_deb_rpm_tar() {
    fuzz("package", Vec::new(), |input| {
        let _ = kpackfs::package::read_from(input, &budget());
    });
}

#[test]
fn fuzz_cpio() {
    fuzz("cpio", Vec::new(), |input| {
        let _ = kpackfs::package::read_cpio(input, &budget());
    });
}

#[test]
fn fuzz_rpm_headers() {
    let packages = seeds("package", Vec::new()).into_iter().filter(|s| s.starts_with(&[0xed, 0xab])).collect();
    fuzz("package", packages, |mut input| {
        let _ = kpackfs::package::rpm::read_headers(&mut input);
    });
}

#[test]
fn fuzz_apt_packages() {
    fuzz("packages", Vec::new(), |input| {
        let stanzas = kpackfs::crawl::apt::parse_packages_from(input, |n| n.starts_with("linux-")).unwrap_or_default();
        let _ = kpackfs::crawl::apt::group_by_depends(&stanzas, |n| n.contains("amd64"));
    });
}

#[test]
fn fuzz_apt_release() {
    let dir = tempfile::tempdir().unwrap();
    let src = kpackfs::crawl::sources::load(None).unwrap().remove(0);
    fuzz("release", Vec::new(), |input| {
        let text = String::from_utf8_lossy(input);
        let _ = kpackfs::crawl::apt::release_checksums(&text);
        let _ = kpackfs::crawl::freshness::check_release(&src, &dir.path().join("state"), &text, 1_800_000_000);
    });
}

#[test]
fn fuzz_repodata() {
    fuzz("repomd", Vec::new(), |input| {
        let _ = kpackfs::crawl::yum::repomd_primary(input);
    });
    fuzz("primary", Vec::new(), |input| {
        let _ = kpackfs::crawl::yum::parse_primary(input, |n| n.contains("kernel"));
    });
}

#[test]
fn fuzz_manifest() {
    fuzz("manifest", Vec::new(), |input| {
        let _ = kpackfs::manifest::Manifest::parse(&String::from_utf8_lossy(input), &Default::default());
    });
}

#[test]
fn fuzz_sources_and_config() {
    fuzz("sources", Vec::new(), |input| {
        let _ = kpackfs::crawl::sources::parse(&String::from_utf8_lossy(input), "fuzz");
    });
    fuzz("config", Vec::new(), |input| {
        let _ = kpackfs::settings::file::parse(&String::from_utf8_lossy(input));
    });
}

#[test]
fn fuzz_pack_files() {
    use kpackfs::layout::{BundleTree, ItemKind, TreeItem};
    let dir = tempfile::tempdir().unwrap();
    let item = |path: &str, kind: ItemKind, mode| TreeItem { path: path.into(), kind, mode };
    let tree = BundleTree {
        items: vec![
            item("", ItemKind::Dir, 0o755),
            item("BUNDLE_UNAME", ItemKind::File(std::sync::Arc::new(b"1.0".to_vec())), 0o644),
            item("a", ItemKind::Dir, 0o755),
            item("a/f", ItemKind::File(std::sync::Arc::new(b"contents".to_vec())), 0o644),
            item("a/l", ItemKind::Symlink("f".into()), 0o777),
        ],
    };
    let mut pack = Vec::new();
    kpackfs::pack::write(&tree, &mut pack).unwrap();
    let path = dir.path().join("x.pack");
    let index_len = u64::from_le_bytes(pack[pack.len() - 40..pack.len() - 32].try_into().unwrap()) as usize;
    let past_the_crcs = std::sync::atomic::AtomicUsize::new(0);
    fuzz("pack", vec![pack], |input| {
        // As mutated (the checks in front must refuse it), then repaired
        // (magic, trailer placement and both CRCs made right again) so that
        // the record parser behind them is fuzzed too.
        std::fs::write(&path, input).unwrap();
        walk_pack(&path);
        std::fs::write(&path, repaired_pack(input, index_len)).unwrap();
        let reached = match kpackfs::pack::Pack::open_verified(&path) {
            Ok(_) => true,
            Err(e) => !format!("{e:#}").contains("checksum"),
        };
        if reached {
            past_the_crcs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        walk_pack(&path);
    });
    assert!(past_the_crcs.into_inner() > 10, "repaired inputs reach the record parser");
}

/// A mutated pack with its framing made valid again: magic in front, the
/// index taken as the last `index_len` bytes before a fresh trailer (or
/// what is there), the record count as many records as could fit, CRCs
/// over the bytes as they are.
fn repaired_pack(input: &[u8], index_len: usize) -> Vec<u8> {
    let body_end = input.len().saturating_sub(48).max(8);
    let mut bytes = Vec::with_capacity(body_end + 48);
    bytes.extend_from_slice(b"KPKPACK1");
    bytes.extend_from_slice(input.get(8..body_end).unwrap_or(&[]));
    let index_len = index_len.min(bytes.len() - 8);
    let index_off = bytes.len() - index_len;
    let body_crc = crc32fast::hash(&bytes[..index_off]);
    let index_crc = crc32fast::hash(&bytes[index_off..]);
    let count = input.get(input.len().saturating_sub(32)..input.len().saturating_sub(24)).map_or(1, |c| {
        u64::from_le_bytes(c.try_into().unwrap_or([1, 0, 0, 0, 0, 0, 0, 0])).min(index_len as u64 / 9 + 1)
    });
    bytes.extend_from_slice(&(index_off as u64).to_le_bytes());
    bytes.extend_from_slice(&(index_len as u64).to_le_bytes());
    bytes.extend_from_slice(&count.to_le_bytes());
    bytes.extend_from_slice(&index_crc.to_le_bytes());
    bytes.extend_from_slice(&body_crc.to_le_bytes());
    bytes.extend_from_slice(&2u32.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(b"KPKEND02");
    bytes
}

/// Open a pack as the cache does; whatever opens must be walkable and readable.
fn walk_pack(path: &Path) {
    {
        if let Ok(pack) = kpackfs::pack::Pack::open_verified(path) {
            // Whatever opens must also be walkable and readable.
            for i in 0..pack.len() as u32 {
                if let Some(e) = pack.entry(i) {
                    let _ = pack.name(e);
                    let _ = pack.children(i);
                    let _ = pack.lookup(i, b"f");
                    let _ = pack.read(e, 0, 64);
                    let _ = pack.link_target(e);
                }
            }
            let _ = pack.bundle_checksum();
        }
    }
}

#[test]
fn fuzz_manifest_index() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("manifest.yml")).unwrap();
    let manifest = kpackfs::manifest::Manifest::parse(&text, &Default::default()).unwrap();
    let mut b = kpackfs::manifest::index::IndexBuilder::new();
    kpackfs::manifest::index::add_manifest(&mut b, &manifest).unwrap();
    let seed = b.finish([1; 32]);
    fuzz("index", vec![seed], |input| {
        if let Ok(idx) = kpackfs::manifest::index::Index::from_bytes(input.to_vec()) {
            for slot in 0..(idx.counts.slots as u32).min(200) + 2 {
                let _ = idx.entry(slot);
                let _ = idx.name(slot);
                let _ = idx.uname_at(slot as usize);
            }
            for t in 0..idx.type_count().min(50) as u16 + 1 {
                let _ = idx.type_at(t, 0);
                let _ = idx.find_in_type(t, "6.1.0-56-amd64");
            }
            let _ = idx.find_flat("6.1.0-56-amd64");
            let _ = idx.find_id(&kpackfs::ids::BundleId([0; 32]));
        }
    });
}

/// An abort (the allocation cap) cannot unwind to the harness: the input
/// it was running is the in-progress file, which the next run reports.
#[test]
fn an_input_left_by_an_aborted_run_is_kept_and_reported() {
    let in_progress = failure_path("selftest", b"").with_file_name("selftest-in-progress");
    std::fs::write(&in_progress, b"the input that aborted").unwrap();
    let result = std::panic::catch_unwind(|| fuzz("selftest", vec![b"seed".to_vec()], |_| {}));
    let message = result.err().and_then(|e| e.downcast_ref::<String>().cloned()).unwrap_or_default();
    assert!(message.contains("an earlier run aborted"), "{message}");
    let kept = failure_path("selftest", b"the input that aborted");
    assert_eq!(std::fs::read(&kept).unwrap(), b"the input that aborted");
    assert!(!in_progress.exists());
    let _ = std::fs::remove_file(kept);
}

/// Small disk images made with the real tools: a bare ext4 filesystem
/// and the same in a GPT partition, each holding a tiny kernel tree.
fn image_seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
        r=$1/root; b=$r/usr/lib/modules/6.1.0-seed/build
        mkdir -p $b/include/generated $r/usr/lib/modules/6.1.0-seed/source
        ln -s usr/lib $r/lib; ln -s ../source $b/src; echo 'include ../source/Makefile' > $b/Makefile
        echo '#define UTS_RELEASE "6.1.0-seed"' > $b/include/generated/utsrelease.h
        mkfs.ext4 -q -F -b 1024 -N 32 -O ^has_journal -d $r $1/bare.img 256K
        truncate -s $(( (34 + 512 + 40) * 512 )) $1/gpt.img
        sgdisk -a 1 -n 1:34:545 -c 1:ROOT $1/gpt.img >/dev/null
        dd if=$1/bare.img of=$1/gpt.img bs=512 seek=34 conv=notrunc status=none
    "#;
    let ok = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script, "seeds"])
        .arg(dir.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "making the image seeds (mkfs.ext4, sgdisk)");
    ["bare.img", "gpt.img"].iter().map(|f| std::fs::read(dir.path().join(f)).unwrap()).collect()
}

#[test]
fn fuzz_disk_images() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.raw");
    let limits = kpackfs::package::Limits { max_file_bytes: 1 << 20, max_total_bytes: 16 << 20, max_entries: 10_000 };
    let seeds = image_seeds();
    for seed in &seeds {
        // The seeds reach the tree reader: mutations start deep.
        std::fs::write(&path, seed).unwrap();
        let found = kpackfs::build::image::read_raw(
            std::fs::File::open(&path).unwrap(),
            seed.len() as u64,
            None,
            limits,
            &std::sync::atomic::AtomicBool::new(false),
        );
        assert_eq!(found.map(|f| f.release).as_deref(), Ok("6.1.0-seed"));
    }
    fuzz("image", seeds, |input| {
        std::fs::write(&path, input).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let cancel = std::sync::atomic::AtomicBool::new(false);
        let _ = kpackfs::build::image::read_raw(file, input.len() as u64, None, limits, &cancel);
    });
}

#[test]
fn fuzz_parallel_bzip2() {
    let text: Vec<u8> =
        (0..300_000u32).map(|i| b"kernel headers, one path away "[(i % 30) as usize] ^ (i / 7000) as u8).collect();
    let seeds = [1u32, 9]
        .iter()
        .map(|&level| {
            use std::io::Write;
            let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(level));
            enc.write_all(&text).unwrap();
            enc.finish().unwrap()
        })
        .collect();
    fuzz("bunzip", seeds, |input| {
        let mut out = LimitedSink(0);
        let cancel = std::sync::atomic::AtomicBool::new(false);
        let _ = kpackfs::build::image::bunzip::decode(&mut std::io::Cursor::new(input), &mut out, 2, &cancel);
    });
}

/// Counts what it is given and refuses past 256 MiB (a bomb stops there).
struct LimitedSink(u64);

impl std::io::Write for LimitedSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        if self.0 > 256 << 20 {
            return Err(std::io::Error::other("over the test's limit"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
