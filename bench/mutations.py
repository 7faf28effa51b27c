#!/usr/bin/env python3
"""Mutation pass: break one guarded check at a time and show the tests red.

Each mutation names a check, the file and the exact text that implements
it, what to put instead (the check removed or made to pass), and the tests
that guard it. For each: apply it, build, run those tests, expect at least
one to fail, put the file back. A mutation whose text is no longer in the
file is reported (the table must follow the code), as is one the tests do
not catch. Writes a markdown table (docs/testing.md holds the last one).

Usage: bench/mutations.py [--only NAME...] [--markdown OUT]
Exit status: 0 when every mutation turned its tests red.
"""

import argparse
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, file, text, replacement, nextest filter arguments)
MUTATIONS = [
    ("repomd.xml signature not checked", "src/crawl/yum.rs",
     "            gpg::verify_detached(keyring, &fetched.body, &s.body, gpg::ExpiredKey::Refuse)\n"
     "                .with_context(|| format!(\"{base}/repodata/repomd.xml\"))?;",
     "            let _ = (keyring, gpg::ExpiredKey::Refuse);",
     ["--test", "crawl", "a_yum_index_whose_signature_fails_is_refused"]),
    ("a good signature beside an unknown key's refused", "src/trust/gpg.rs",
     "let exited_ok = out.status.success() || (out.status.code() == Some(2) && only_unknown_keys);",
     "let exited_ok = out.status.success();",
     ["--test", "crawl", "a_good_signature_beside_an_unknown_keys_is_accepted"]),
    ("Packages sha256 not compared with Release", "src/crawl/http.rs",
     "        if actual != expected {\n            bail!(\"{url}: {what} mismatch",
     "        if false && actual != expected {\n            bail!(\"{url}: {what} mismatch",
     ["--test", "crawl", "packages_whose_hash_does_not_match_release_are_refused"]),
    ("package sha256 not checked at admission", "src/fetch/store.rs",
     "            if !expected.eq_ignore_ascii_case(&actual) {\n                return refuse(FetchError::Sha256Mismatch",
     "            if false && !expected.eq_ignore_ascii_case(&actual) {\n                return refuse(FetchError::Sha256Mismatch",
     ["--test", "quick", "corrupted_bytes_are_a_sha256_mismatch"]),
    ("package sha512 not checked at admission", "src/fetch/store.rs",
     "            if !expected.eq_ignore_ascii_case(got) {",
     "            if false && !expected.eq_ignore_ascii_case(got) {",
     ["--test", "ubuntu", "a_release_whose_indexes_carry_only_sha512_is_crawled_and_verified"]),
    ("packages of a running build not pinned", "src/cache/evict.rs",
     "Key::Package(sha) => st.pins.contains(sha),",
     "Key::Package(_sha) => false,",
     ["--test", "quick", "a_pinned_package_is_never_the_victim"]),
    ("a hit does not refresh recency", "src/cache/obtain.rs",
     "        let value = st.loaded.get(id, T::KIND).and_then(T::unwrap)?;\n        self.touch(&mut st, *id);",
     "        let value = st.loaded.get(id, T::KIND).and_then(T::unwrap)?;",
     ["--test", "quick", "eviction_takes_the_least_recently_used_and_a_hit_refreshes_recency"]),
    ("restart order not rebuilt from last access", "src/cache/evict.rs",
     "found.sort_by_key(|(_, _, access)| *access);", "",
     ["--test", "quick", "the_order_comes_back_at_restart"]),
    ("a pack not bound to its bundle", "src/cache/artefact.rs",
     "Pack::open_verified_as(path, id)", "Pack::open_verified(path)",
     ["--test", "quick", "a_pack_copied_over_another_bundles_is_refused_and_rebuilt"]),
    ("the tier's digest not checked", "src/remote/mod.rs",
     "            if actual != expected {\n                bail!(\"{key} has sha256 {actual}, the tier records {expected}\");",
     "            if false && actual != expected {\n                bail!(\"{key} has sha256 {actual}, the tier records {expected}\");",
     ["--test", "quick", "corrupted_objects_are_rejected"]),
    ("the layout's output not bounded", "src/layout/engine.rs",
     "        if self.nodes.len() >= self.limits.max_entries {",
     "        if false && self.nodes.len() >= self.limits.max_entries {",
     ["--test", "hostile", "a_symlink_copy_bomb_is_refused"]),
    ("CPU leases not waited for", "src/cpu.rs",
     "        while *free == 0 {\n            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());\n        }\n"
     "        let threads = want.clamp(1, *free);\n        *free -= threads;",
     "        let threads = want.max(1);",
     ["--test", "quick", "concurrent_builds_run_at_most_one_thread_per_core"]),
    ("If-Range not sent on a resume", "src/fetch/source/http.rs",
     "                    headers.insert(header::IF_RANGE, v);",
     "                    let _ = v;",
     ["--test", "fetch_resume", "a_file_replaced_between_the_cut_and_the_resume_is_never_mixed"]),
    ("credentials carried across a redirect", "src/fetch/client.rs",
     "            let secret = self.credentials.secret_for(&current);",
     "            let secret = self.credentials.secret_for(&url::Url::parse(url).unwrap_or_else(|_| current.clone()));",
     ["--test", "credentials", "credentials_go_only_to_their_own_origin"]),
    ("a secret file readable by others accepted", "src/files.rs",
     "    if meta.mode() & 0o077 != 0 {\n        bail!(\n            \"{} holds secrets",
     "    if false && meta.mode() & 0o077 != 0 {\n        bail!(\n            \"{} holds secrets",
     ["--test", "credentials", "secret_files_readable_by_others_are_refused"]),
    ("a 401 classed as unreachable", "src/fetch/client.rs",
     "                401 | 403 => return Err(FetchError::Auth {",
     "                999 => return Err(FetchError::Auth {",
     ["--test", "credentials", "basic_bearer_and_url_token"]),
    ("a TLS alert over the client certificate classed as unreachable", "src/fetch/client.rs",
     "    if chain.contains(\"received fatal alert\") && ALERTS",
     "    if false && chain.contains(\"received fatal alert\") && ALERTS",
     ["--test", "credentials", "a_tls_repository_that_requires_a_client_certificate"]),
    ("an auth.conf entry without a scheme sent over http", "src/fetch/auth/mod.rs",
     "            None => matches!(url.scheme(), \"https\" | \"tor+https\"),",
     "            None => true,",
     ["--test", "credentials", "basic_bearer_and_url_token"]),
    ("a transport error keeps its URL and URL token", "src/fetch/client.rs",
     ".map_err(|e| connect_error(e.without_url(), with_identity))",
     ".map_err(|e| connect_error(e, with_identity))",
     ["--test", "credentials", "basic_bearer_and_url_token"]),
    ("no archive looked at for a package gone", "src/fetch/mod.rs",
     "        if gone && self.cfg.archives.enabled && pkg.sha256.is_some()",
     "        if false && gone && self.cfg.archives.enabled && pkg.sha256.is_some()",
     ["--test", "archives", "a_kernel_whose_mirror_lost_a_package"]),
    ("a mirror's 404 not followed by the canonical URL", "src/fetch/mod.rs",
     "            if self.cfg.mirrors.rewrite(url) != url {\n                moved.push(url.to_string());",
     "            if false && self.cfg.mirrors.rewrite(url) != url {\n                moved.push(url.to_string());",
     ["--test", "archives", "a_package_its_mirror_lost_comes_from_the_canonical_archive"]),
    ("a wrong archive copy keeps the own locations' class", "src/fetch/mod.rs",
     "            class = ErrorClass::Refused;",
     "            let _ = class;",
     ["--test", "archives", "a_kernel_whose_mirror_lost_a_package"]),
    ("--no-archives ignored", "src/cli/mod.rs",
     "            s.fetch.archives.enabled = false;",
     "            s.fetch.archives.enabled = true;",
     ["--test", "archives", "a_kernel_whose_mirror_lost_a_package"]),
    ("status text not escaped", "src/observe/report.rs",
     "printable(b.cause.as_deref().unwrap_or(\"\"))", "b.cause.as_deref().unwrap_or(\"\")",
     ["--test", "hostile", "names_from_archives_cannot_forge_status_or_log_lines"]),
    ("a rebuild under the same release not preferred", "src/manifest/index/build.rs",
     "                    .then(by_version)", "",
     ["--lib", "a_rebuild_under_the_same_release"]),
    ("a status reader's refresh re-renders", "src/fs/core.rs",
     "let freshness = if from_open_file { Freshness::Kept } else { Freshness::New };",
     "let freshness = Freshness::New;",
     ["--test", "quick", "a_status_reader_sees_one_rendering_from_open_to_end"]),
    ("a failed build answers EIO whatever its class", "src/fs/core.rs",
     "Err(e) => done(Err(Errno(e.errno()))),",
     "Err(_) => done(Err(Errno::EIO)),",
     ["--test", "quick", "each_failure_class_reaches_the_reader_status_and_metrics"]),
    ("a 404 counted as unreachable", "src/fetch/error.rs",
     "FetchError::Status(404 | 410) => ErrorClass::NotFound,",
     "FetchError::Status(404 | 410) => ErrorClass::Unreachable,",
     ["--test", "quick", "each_failure_class_reaches_the_reader_status_and_metrics"]),
    ("a signature refusal classed as hostile", "src/build/assemble.rs",
     ".map_err(|e| named(ErrorClass::Refused, e.context(\"gpgcheck\")))",
     ".map_err(|e| named(ErrorClass::Hostile, e.context(\"gpgcheck\")))",
     ["--test", "rpm_signature", "signatures_are_checked_before_extraction"]),
    ("kpackfs bundle exits 1 whatever the class", "src/cli/mod.rs",
     "crate::error::class_of(&e).map_or(ExitCode::FAILURE, |class| ExitCode::from(class.exit_code()))",
     "ExitCode::FAILURE",
     ["--test", "quick", "kpackfs_bundle_exits_with_the_class_of_its_failure"]),
    ("a tier that fails is not skipped", "src/remote/tier.rs",
     "        if !self.health.can_read(now) {\n            return TierRead::Unusable;\n        }",
     "",
     ["--test", "quick", "a_tier_that_is_down_never_fails_a_build_and_is_then_skipped"]),
    ("an upward import not seen", "tests/quick/layers.rs",
     "            if a != b && floor_of(a) < floor_of(b) {",
     "            if a != b && floor_of(a) < floor_of(b) && false {",
     ["--test", "quick", "the_layer_checker_sees_a_circle_and_resolves_groups_and_super"]),
    ("a source build shares the host's network", "src/build/source/sandbox.rs",
     '["--unshare-all", ',
     '["--unshare-user", "--unshare-pid", "--unshare-uts", "--unshare-ipc", ',
     ["--test", "source", "the_sandbox_runs_unprivileged_without_network_host_files_or_writes_outside"]),
    ("a prepared config is not compared with the kernel's", "src/build/source/mod.rs",
     "    if !changed.is_empty() {",
     "    if false && !changed.is_empty() {",
     ["--test", "source", "a_config_the_build_would_change_is_refused_naming_the_options"]),
    ("a source build runs as root", "src/build/source/sandbox.rs",
     "            if libc::geteuid() == 0\n",
     "            if libc::geteuid() == 12345\n",
     ["--test", "source", "the_sandbox_runs_unprivileged_without_network_host_files_or_writes_outside"]),
    ("a GPT header's table size is not checked before gptman", "src/build/image/disk.rs",
     "    (1..=1024).contains(&entries) && entry_size == 128 && (2..64).contains(&entries_lba)",
     "    let _ = (entries, entry_size, entries_lba); true",
     ["--test", "image", "broken_partition_tables_truncated_streams_and_bombs_are_refused"]),
    ("Flatcar's wrapper Makefile keeps the build machine's path", "src/layout/coreos.rs",
     "        has_source.then(|| if abs.ends_with",
     "        (has_source && false).then(|| if abs.ends_with",
     ["--lib", "layout::coreos::tests::flatcar_wrapper_naming_the_build_machine_points_at_source"]),
    ("an image link to the tree itself or above is followed", "src/build/image/tree.rs",
     "                        if self.roots.iter().any(|r| under(r, &to)) {",
     "                        if false && self.roots.iter().any(|r| under(r, &to)) {",
     ["--test", "image", "hostile_trees_inside_the_image_are_bounded"]),
    ("a COS file's published .md5 is not compared", "src/build/source/cos.rs",
     "    if actual != want {",
     "    if false && actual != want {",
     ["--test", "source", "live_a_cos_kernel_builds_with_the_toolchain_published_beside_it_fetched_once_and_md5_checked"]),
    ("the toolchain published beside a COS kernel is not fetched", "src/build/recipe.rs",
     "    let Some(toolchain) = source::cos::toolchain(&env.fetcher, &src.url).await? else { return Ok(()) };",
     "    let Some(toolchain) = None::<source::cos::Toolchain> else { return Ok(()) };",
     ["--test", "source", "live_a_cos_kernel_builds_with_the_toolchain_published_beside_it_fetched_once_and_md5_checked"]),
    ("source_scratch does not bound the build's tmpfs", "src/build/source/sandbox.rs",
     "            scratch_bytes: settings.source_scratch,\n",
     "",
     ["--test", "source", "a_build_that_fills_its_scratch_fails_with_the_cause_and_writes_nothing"]),
    ("a failed source build's log is not kept", "src/build/source/mod.rs",
     "        let kept = job.keep_log.filter(|_| !stopped).and_then(|keep| keep(&f.log_tail));",
     "        let kept: Option<PathBuf> = job.keep_log.filter(|_| !stopped).and(None);",
     ["--test", "source", "a_failed_source_build_through_the_mount_is_eio_with_its_log_kept_in_the_cache"]),
    ("a build nobody waits for is not stopped", "src/fs/core.rs",
     "        self.bundles.cache().cancel_unwanted();\n",
     "",
     ["--test", "source", "a_source_build_whose_last_reader_is_killed_is_stopped_and_starts_again_for_the_next"]),
    ("no grace before a build nobody waits for stops", "src/cache/obtain.rs",
     "now, STOP_GRACE);",
     "now, std::time::Duration::ZERO);",
     ["--test", "quick", "cache::a_build_whose_every_caller_was_killed_is_told_to_stop"]),
    ("the cache lock is inherited by programs the daemon runs", "src/daemon/detach.rs",
     "        close_on_exec(fd);\n        if let Some(ready)",
     "        if let Some(ready)",
     ["--test", "mount_lifecycle", "the_daemon_hands_neither_its_cache_lock_nor_its_ready_pipe_to_programs_it_runs"]),
    ("minikube prereleases and tags before v1.24 crawled", "src/crawl/minikube.rs",
     ".filter(|(v, _)| *v >= FIRST)",
     ".filter(|(v, _)| *v >= (0, 0, 0))",
     ["--test", "crawl", "a_minikube_release_list_and_its_iso_configs_give_kernel_packers_minikube_list"]),
    ("a crawled linuxkit entry's own config ignored", "src/build/recipe.rs",
     "            let config = match find(&|n| !is_tarball(n)) {",
     "            let config = match None::<&std::path::Path> {",
     ["--test", "source", "a_crawled_linuxkit_entry_builds_with_the_config_it_carries"]),
    ("which takes the first mount, not the one serving the kernel", "src/cli/which.rs",
     "        .collect())\n}",
     "        .take(1)\n        .collect())\n}",
     ["--test", "lookup", "which_answers_from_the_mount_that_serves_the_kernel"]),
    ("which does not read the failed bundle's cause from status", "src/cli/which.rs",
     "    let Some(status) = status else {",
     "    let Some(status) = status.filter(|_| false) else {",
     ["--test", "lookup", "which_names_the_cause_and_the_log_of_a_bundle_that_failed"]),
    ("list with no match exits 0 in silence", "src/cli/list.rs",
     "    if first {\n        if let Some(query)",
     "    if false {\n        if let Some(query)",
     ["--test", "lookup", "list_with_no_match_says_so_suggests_and_exits_1"]),
    ("suggestions ignore version closeness", "src/lookup/suggest.rs",
     "Some((edits, std::cmp::Reverse(at), gap, n))",
     "Some((edits, std::cmp::Reverse(at * 0), gap * 0, n))",
     ["--lib", "lookup::suggest::tests::among_equally_close_names_the_nearest_version_comes_first"]),
    ("crawl counts every unseen id as new, merged or not", "src/crawl/mod.rs",
     "manifest.entries.contains_key(*id) && counted.insert((*id).clone())",
     "counted.insert((*id).clone()) || true",
     ["--test", "crawl", "the_same_packages_through_two_archives_are_one_entry_with_fallbacks"]),
    ("an unreachable source never backs off", "src/crawl/state.rs",
     "states.get(name).is_none_or(|s| s.next_try() <= now)",
     "states.get(name).is_none_or(|s| s.next_try() <= now) || true",
     ["--test", "crawl", "a_source_unreachable_crawl_after_crawl_backs_off_and_is_told_once"]),
    ("a known-unreachable source is warned about at length every crawl", "src/crawl/mod.rs",
     "is_none_or(|b| b.unreachable_runs == 0);",
     "is_none_or(|b| b.unreachable_runs < u32::MAX);",
     ["--test", "crawl", "a_source_unreachable_crawl_after_crawl_backs_off_and_is_told_once"]),
    ("README's main job leaves kpackfs off PATH", "README.md",
     "install -m 0755 target/release/kpackfs /usr/local/bin/ && ",
     "",
     ["--test", "readme", "live_readme_main_job_and_using_it_run_verbatim_on_a_clean_cache"]),
    ("a bundle pinned by warm --pin is evicted like any other", "src/cache/evict.rs",
     "                    || st.kept.contains(id)\n",
     "",
     ["--test", "mount_cache", "warm_builds_ahead_pins_against_eviction_and_stops_before_evicting_what_it_warmed"]),
    ("warm goes on while the cache evicts what it warmed", "src/cli/warm.rs",
     "    (evicted > 0).then(|| {",
     "    (evicted > usize::MAX - 1).then(|| {",
     ["--test", "mount_cache", "warm_builds_ahead_pins_against_eviction_and_stops_before_evicting_what_it_warmed"]),
    ("kernel-crawler's version split dropped (kernelversion always 1)", "src/lookup/falco.rs",
     "        ok.then(|| (format!(\"{upstream}-{abi}\"), upload.to_string()))",
     "        ok.then(|| (version.to_string(), \"1\".to_string())).filter(|_| false)",
     ["--test", "lookup", "kernel_crawler_format_matches_its_published_records_and_which_takes_driverkits_triple"]),
    ("the fetcher never asks the package tier", "src/fetch/mod.rs",
     "let Some((tier, sha)) = self.tier.clone().zip(pkg.sha256.clone()) else",
     "let Some((tier, sha)) = self.tier.clone().zip(pkg.sha256.clone()).filter(|_| false) else",
     ["--test", "package_tier"]),
    ("no per-package claim in the package tier", "src/remote/packages.rs",
     "r.fetch_or_wait(&what, &package_claim_key(sha256), self.write, fetch)",
     "r.fetch_or_wait(&what, &package_claim_key(sha256), false, fetch)",
     ["--test", "package_tier", "two_hosts_building_sibling_flavours_at_once_download_the_shared_package_once"]),
    ("a package object not checked against its name", "src/remote/packages.rs",
     "if actual != sha256 || size.is_some_and(|s| s != len) {",
     "if false && (actual != sha256 || size.is_some_and(|s| s != len)) {",
     ["--test", "package_tier", "a_corrupted_package_object_is_refused_and_the_package_refetched_and_replaced"]),
    ("a failure during a backoff doubles it", "src/remote/health.rs",
     "    if st.until.is_some_and(|t| now < t) {\n        return None;",
     "    if false && st.until.is_some_and(|t| now < t) {\n        return None;",
     ["--lib", "remote::health"]),
    ("package writes go on while the tier is down", "src/remote/packages.rs",
     "if r.health.can_write(now) && r.health.can_read(now) {",
     "if r.health.can_write(now) {",
     ["--test", "fleet", "a_tier_that_is_down_or_stalls_never_fails_a_read"]),
    ("a warm build's entries not cached", "src/fs/fuse.rs",
     "reply.entry_with_ttls(&ttl, &FOREVER, &file_attr(&attr), Generation(0))",
     "reply.entry_with_ttls(&ttl, &std::time::Duration::ZERO, &file_attr(&attr), Generation(0))",
     ["--test", "mount", "hello_module_builds_through_the_mount_nested_too"]),
    ("a tier pack's index not checked", "src/remote/packs.rs",
     "    check_index(&pack, limits)?;\n",
     "",
     ["--lib", "remote::packs::tests::a_tier_pack_is_admitted_only_with_a_sound_index_and_its_own_id"]),
    ("a tier pack's digest not compared", "src/remote/packs.rs",
     "            if actual != expected {\n                return Ok(PackGot::Refused(",
     "            if false && actual != expected {\n                return Ok(PackGot::Refused(",
     ["--test", "tier_packs", "a_pack_object_that_fails_its_digest"]),
    ("a stale claim not taken over", "src/remote/mod.rs",
     "            Ok(Put::Created) => Got::Claimed,\n            _ => Got::Unclaimed,",
     "            Ok(Put::Created) => Got::Unclaimed,\n            _ => Got::Unclaimed,",
     ["--test", "fleet", "publish_is_idempotent_and_resumes_after_kill_9"]),
    ("publish waits on another worker's claim", "src/publish.rs",
     "pass == Pass::First && remote.claimed_elsewhere(&job.id).await?",
     "pass == Pass::Last && remote.claimed_elsewhere(&job.id).await?",
     ["--test", "publish_workers", "a_bundle_another_worker_is_building_is_put_off"]),
    ("publish ignores its shard", "src/cli/publish.rs",
     "if args.shard.is_some_and(|shard| !shard.holds(&id)) {",
     "if args.shard.is_some_and(|shard| shard.count == 0) {",
     ["--test", "publish_workers", "shards_split_the_bundles_by_id"]),
    ("publish workers do not claim", "src/remote/tier.rs",
     "let got = self.fetch_or_wait(&what, &super::claim_key(id), !self.read_only, fetch).await;",
     "let got = self.fetch_or_wait(&what, &super::claim_key(id), false, fetch).await;",
     ["--test", "publish_workers", "two_workers_started_at_once_build_each_bundle_once"]),
    ("READDIRPLUS_AUTO back: pages past the first without attributes", "src/fs/fuse.rs",
     "            InitFlags::FUSE_DO_READDIRPLUS,\n",
     "            InitFlags::FUSE_DO_READDIRPLUS,\n            InitFlags::FUSE_READDIRPLUS_AUTO,\n",
     ["--test", "mount", "ls_l_of_a_big_type_directory_asks_only_about_unbuilt_tgz_names"]),
    ("namespace directories report a 4 KiB st_blksize (32 KiB listings)", "src/fs/core.rs",
     "const NAMESPACE_DIR_BLKSIZE: u32 = 1 << 20;",
     "const NAMESPACE_DIR_BLKSIZE: u32 = 4096;",
     ["--test", "mount", "ls_l_of_a_big_type_directory_asks_only_about_unbuilt_tgz_names"]),
    ("the open-file probe ignores the .tgz suffix filter's matches", "src/fs/procfd.rs",
     "        if !matches {\n            continue;\n        }",
     "        if matches || !matches {\n            continue;\n        }",
     ["--test", "mount", "tgz_reads_exact_bytes_whether_built_or_not"]),
    ("the index beside a manifest is never adopted", "src/namespace/served.rs",
     "        if prev.is_some() || self.lists_dir.is_some() || self.crawl_result.exists() {",
     "        if true || prev.is_some() || self.lists_dir.is_some() || self.crawl_result.exists() {",
     ["--test", "mount", "a_manifest_with_its_index_beside_it_mounts_without_parsing_the_yaml"]),
    ("an index beside a manifest is adopted for other YAML bytes", "src/manifest/index/sidecar.rs",
     "    &head[..8] == MAGIC && head[8..40] == *want\n",
     "    &head[..8] == MAGIC\n",
     ["--test", "mount", "a_manifest_with_its_index_beside_it_mounts_without_parsing_the_yaml"]),
]


def run(cmd, **kw):
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--markdown")
    args = ap.parse_args()
    rows, ok = [], True
    for name, path, text, replacement, tests in MUTATIONS:
        if args.only and not any(o in name for o in args.only):
            continue
        full = os.path.join(REPO, path)
        original = open(full).read()
        if original.count(text) != 1:
            rows.append((name, path, " ".join(tests), "**the guarded text is not in the file (update the table)**"))
            ok = False
            continue
        started = time.time()
        try:
            open(full, "w").write(original.replace(text, replacement, 1))
            result = run(["cargo", "nextest", "run", "--no-fail-fast"] + tests)
            out = result.stdout + result.stderr
            if "error[E" in out or "could not compile" in out:
                verdict = "**does not compile** (fix the mutation)"
                ok = False
            elif result.returncode != 0 and "FAIL" in out:
                failed = sorted({l.split()[-1] for l in out.splitlines() if l.strip().startswith("FAIL [")})
                verdict = f"red: {', '.join(failed)}"
            else:
                verdict = "**still green: the tests do not guard it**"
                ok = False
        finally:
            open(full, "w").write(original)
        took = time.time() - started
        print(f"{name:<50} {verdict} ({took:.0f}s)", flush=True)
        rows.append((name, path, " ".join(tests), verdict))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("| mutation | file | tests run | result |\n|---|---|---|---|\n")
            for name, path, tests, verdict in rows:
                f.write(f"| {name} | `{path}` | `{tests}` | {verdict} |\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
