//! `kpackfs mount`, `kpackfs umount` and `kpackfs status`.

use super::FetchArgs;
use crate::daemon::{self, mountpoint};
use crate::settings::{parse, Settings};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Clone)]
pub struct MountArgs {
    /// Where to mount.
    mountpoint: PathBuf,
    #[command(flatten)]
    served: super::ServedArgs,
    /// Stay attached (logs to stderr) instead of returning once mounted.
    #[arg(long)]
    foreground: bool,
    /// FUSE worker threads (default: one per core).
    #[arg(long, value_parser = parse::threads)]
    threads: Option<usize>,
    /// After a failed build, refuse (EIO at once) for this long, doubling per failure (default 2s).
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    retry_backoff: Option<std::time::Duration>,
    /// Largest uncompressed size of one bundle's contents (default 2G).
    #[arg(long, value_name = "SIZE", value_parser = parse::size)]
    max_bundle_size: Option<u64>,
    /// Crawl the sources this often in the background, or "off" (default 6h).
    #[arg(long, value_name = "DURATION", value_parser = parse::interval)]
    crawl_interval: Option<parse::Interval>,
    /// The sources file for the background crawl (default: the shipped sources.yml).
    #[arg(long = "sources", value_name = "FILE")]
    sources_file: Option<PathBuf>,
    /// Keep this much of the cache's filesystem free, evicting below the budget if needed (default 5%).
    #[arg(long, value_name = "SIZE|PCT", value_parser = parse::free_floor)]
    min_free: Option<crate::util::FreeFloor>,
    /// A bundle used this recently counts as in use: eviction spares it (default 60s).
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    evict_grace: Option<std::time::Duration>,
    /// Serve Prometheus metrics at http://ADDR/metrics (also /.kpackfs/metrics in the mount).
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse::listen)]
    metrics: Option<parse::Listen>,
    /// Mount over a directory that has files in it, hiding them (-o nonempty).
    #[arg(long)]
    allow_non_empty: bool,
    /// Settings as KEY=VALUE[,KEY=VALUE…], as in fstab (repeatable).
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,
    #[command(flatten)]
    fetch: FetchArgs,
}

impl MountArgs {
    /// The `-o` settings as (key, value), fstab's and systemd's left out.
    fn options(&self) -> Result<Vec<(&'static str, String)>> {
        let mut out = Vec::new();
        for group in &self.options {
            // mount(8), fstab and systemd options are theirs, as the mount helper ignores them.
            for item in group.split(',').filter(|s| !s.is_empty() && *s != "nonempty" && !super::helper::ignored(s)) {
                let (k, v) = item.split_once('=').unwrap_or((item, "true"));
                let key = crate::settings::keys::find(k).with_context(|| format!("-o {item}: unknown option {k:?}"))?;
                out.push((key.name, v.to_string()));
            }
        }
        Ok(out)
    }

    /// Defaults, the file, `-o`, then the flags.
    fn settings(&self, base: &Settings) -> Result<Settings> {
        let mut s = base.clone();
        for (k, v) in self.options()? {
            s.set(k, &v).map_err(|e| anyhow::anyhow!("-o {k}: {e:#}"))?;
        }
        let flags = |s: &mut Settings| {
            if let Some(v) = self.threads {
                s.threads = v;
            }
            if let Some(v) = self.retry_backoff {
                s.retry_backoff = v;
            }
            super::max_bundle_size(s, self.max_bundle_size);
            if let Some(v) = self.crawl_interval {
                s.crawl_interval = v.0;
            }
            if let Some(v) = &self.sources_file {
                s.sources = Some(v.clone());
            }
            if let Some(v) = self.min_free {
                s.min_free = v;
            }
            if let Some(v) = self.evict_grace {
                s.evict_grace = v;
            }
            if let Some(v) = self.metrics {
                s.metrics = v.0;
            }
            self.served.apply(s);
            self.fetch.apply(s);
        };
        Ok(super::settings(&s, flags))
    }
}

pub fn run(args: MountArgs, base: &Settings) -> Result<ExitCode> {
    let settings = args.settings(base)?;
    let mountpoint = &args.mountpoint;
    mountpoint::clean_stale_mount(mountpoint)?;
    match std::fs::metadata(mountpoint) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("mount point {} does not exist (mkdir -p {} first)", mountpoint.display(), mountpoint.display())
        }
        Err(e) => bail!("mount point {}: {e}", mountpoint.display()),
        Ok(m) if !m.is_dir() => bail!("mount point {} is not a directory", mountpoint.display()),
        Ok(_) => {}
    }
    if mountpoint::is_kpackfs_mount(mountpoint) {
        bail!("{} is already a kpackfs mount", mountpoint.display());
    }
    let allow_non_empty = args.allow_non_empty || args.options.iter().any(|g| g.split(',').any(|o| o == "nonempty"));
    if !allow_non_empty {
        refuse_non_empty(mountpoint)?;
    }
    mountpoint::check_fuse_access()?;
    if !args.foreground {
        // The daemon loads everything once; a bad manifest, config or
        // sources file ends it before it is ready, and its error shows here.
        let pid = daemon::detach_and_wait(&settings.cache_dir, super::argv_after_program())?;
        // The mount is up whether or not anyone reads this line.
        let _ = super::print(&format!(
            "kpackfs: mounted {} (pid {pid}, log {})\n",
            mountpoint.display(),
            settings.cache_dir.join("kpackfs.log").display()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    daemon::serve(mountpoint, settings)?;
    Ok(ExitCode::SUCCESS)
}

/// Mounting over files hides them from everyone until the unmount; an
/// fstab typo should not do that silently.
fn refuse_non_empty(mountpoint: &std::path::Path) -> Result<()> {
    let mut entries = std::fs::read_dir(mountpoint).with_context(|| format!("reading {}", mountpoint.display()))?;
    if let Some(first) = entries.next() {
        let first = first.map(|e| e.file_name().to_string_lossy().into_owned()).unwrap_or_default();
        bail!(
            "mount point {} is not empty (it holds {first:?}{}); mounting would hide its files: \
             use an empty directory, or pass --allow-non-empty (-o nonempty)",
            mountpoint.display(),
            if entries.next().is_some() { " and more" } else { "" }
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct UmountArgs {
    mountpoint: PathBuf,
    /// Detach now even if busy; the daemon exits when the last user goes.
    #[arg(long)]
    lazy: bool,
}

/// Unmount, then wait for the daemon to exit (it saves its index on the way
/// out), so that a new mount on the same cache can start at once.
pub fn umount(args: UmountArgs) -> Result<ExitCode> {
    if mountpoint::clean_stale_mount(&args.mountpoint)? {
        return Ok(ExitCode::SUCCESS);
    }
    let pid = std::fs::read_to_string(args.mountpoint.join(".kpackfs/status.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["pid"].as_u64());
    mountpoint::unmount(&args.mountpoint, args.lazy)?;
    if let Some(pid) = pid {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while proc_dir.exists() && std::time::Instant::now() < deadline {
            let zombie = std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|s| s.contains(") Z "));
            if zombie {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct StatusArgs {
    mountpoint: PathBuf,
    /// Print the JSON form.
    #[arg(long)]
    json: bool,
}

pub fn status(args: StatusArgs) -> Result<ExitCode> {
    if mountpoint::is_stale(&args.mountpoint).unwrap_or(false) {
        bail!(
            "{} is a kpackfs mount whose daemon is gone (see its log); kpackfs umount {} cleans it up",
            args.mountpoint.display(),
            args.mountpoint.display()
        );
    }
    let file = args.mountpoint.join(".kpackfs").join(if args.json { "status.json" } else { "status" });
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!("{} is not a kpackfs mount (reading {})", args.mountpoint.display(), file.display())
    })?;
    super::print(&text)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mount: MountArgs,
    }

    /// fstab's and systemd's options are ignored as the mount helper
    /// ignores them; our own are taken; an unknown one is an error.
    #[test]
    fn mount_options_of_fstab_and_systemd_are_ignored_on_the_command_line_too() {
        let args = |o: &str| Cli::try_parse_from(["kpackfs", "/kernels", "-o", o]).unwrap().mount;
        let taken = args("defaults,nofail,_netdev,x-systemd.automount,noatime,cache_size=1G").options().unwrap();
        assert_eq!(taken, vec![("cache_size", "1G".to_string())]);
        let s = args("noatime,cache_size=1G").settings(&Settings::defaults()).unwrap();
        assert_eq!(s.cache_size, 1 << 30);
        let err = args("cache_size=1G,bogus=1").options().unwrap_err().to_string();
        assert!(err.contains("unknown option \"bogus\""), "{err}");
    }
}
