//! Running a kernel's own Makefiles and scripts, which are code from the
//! internet, with bubblewrap (Debian's `bubblewrap`; the sandbox Flatpak
//! uses, unprivileged, one small setuid-free binary): as an unprivileged
//! user, in new user, mount, pid, network, IPC and UTS namespaces that see
//! `/usr` read-only, a size-bounded tmpfs as their only writable place and
//! nothing of the host's `/root`, `/etc` or other files; with CPU, memory,
//! file-size and process limits, and the whole process tree killed on a
//! deadline or when the build is no longer wanted.
//!
//! Files go in and out as tar streams on stdin and stdout (the build log
//! on stderr, its tail kept for the error), so nothing the build does is
//! ever written to the host's disk by it.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The unprivileged users builds run as when kpackfs runs as root: one
/// per build, from a range no distribution allocates, so that the process
/// limit (which counts per user, host-wide) is each build's own and one
/// build's fork bomb cannot starve another (bwrap maps ids below 2^31).
const BUILD_UIDS: std::ops::Range<u32> = 1_500_000_000..1_501_000_000;

fn build_uid() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let span = BUILD_UIDS.end - BUILD_UIDS.start;
    BUILD_UIDS.start + (std::process::id().wrapping_mul(7919).wrapping_add(n)) % span
}

/// Bounds on one sandboxed build.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub wall: Duration,
    /// CPU seconds per process.
    pub cpu_secs: u64,
    /// Address space per process.
    pub memory_bytes: u64,
    /// Largest file a process may write.
    pub file_bytes: u64,
    /// Processes of the build user.
    pub processes: u64,
    /// The tmpfs the build works in.
    pub scratch_bytes: u64,
}

impl Limits {
    /// The limits the settings give (`source_timeout`, `source_memory`, `source_scratch`).
    pub fn of(settings: &crate::settings::Settings) -> Limits {
        Limits {
            wall: settings.source_timeout,
            memory_bytes: settings.source_memory,
            scratch_bytes: settings.source_scratch,
            ..Limits::default()
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall: Duration::from_secs(30 * 60),
            cpu_secs: 20 * 60,
            memory_bytes: 4 << 30,
            file_bytes: 1 << 30,
            processes: 1024,
            scratch_bytes: 4 << 30,
        }
    }
}

/// One sandboxed command.
pub struct Sandbox {
    pub limits: Limits,
    /// Host paths the build must not see (replaced by an empty file).
    pub masked: Vec<PathBuf>,
    pub env: Vec<(String, String)>,
    /// A file the build reads on fd 4 (a toolchain tarball): opened here,
    /// so the build user needs no access to where it is kept.
    pub fd4: Option<PathBuf>,
}

/// Why a sandboxed build failed, with the tail of its log.
#[derive(Debug)]
pub struct Failure {
    pub cause: String,
    pub log_tail: String,
    /// The build's own doing (an exit status, a limit), not the host's.
    pub by_build: bool,
}

impl Failure {
    fn host(cause: impl Into<String>) -> Failure {
        Failure { cause: cause.into(), log_tail: String::new(), by_build: false }
    }
}

/// Where bubblewrap is, from PATH.
pub fn bwrap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join("bwrap")).find(|p| p.is_file())
}

/// The last `MAX_TAIL` bytes of the log, by whole lines.
const MAX_TAIL: usize = 16 << 10;

fn tail_of(reader: &mut dyn Read) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * MAX_TAIL {
            kept.drain(..kept.len() - MAX_TAIL);
        }
    }
    let start = kept.len().saturating_sub(MAX_TAIL);
    let text = String::from_utf8_lossy(&kept[start..]).into_owned();
    // Names and paths in a log are the input's: no control characters.
    text.chars().map(|c| if c.is_control() && c != '\n' { '?' } else { c }).collect()
}

fn bwrap_args(sandbox: &Sandbox) -> Vec<String> {
    let mut args: Vec<String> = ["--unshare-all", "--die-with-parent", "--new-session", "--hostname", "kpackfs"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut add = |a: &[&str]| args.extend(a.iter().map(|s| s.to_string()));
    add(&["--ro-bind", "/usr", "/usr"]);
    // Merged /usr: the top-level directories are links into it.
    for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
        match std::fs::symlink_metadata(top) {
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(top) {
                    add(&["--symlink", &target.to_string_lossy(), top]);
                }
            }
            Ok(m) if m.is_dir() => add(&["--ro-bind", top, top]),
            _ => {}
        }
    }
    // Debian's tool names (awk, cc) are links through /etc/alternatives.
    add(&["--ro-bind-try", "/etc/alternatives", "/etc/alternatives"]);
    add(&["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]);
    add(&["--proc", "/proc", "--dev", "/dev"]);
    let scratch = sandbox.limits.scratch_bytes.to_string();
    add(&["--size", &scratch, "--tmpfs", "/build"]);
    add(&["--size", "268435456", "--tmpfs", "/tmp"]);
    for path in &sandbox.masked {
        add(&["--ro-bind", "/dev/null", &path.to_string_lossy()]);
    }
    add(&["--chdir", "/build", "--clearenv"]);
    for (k, v) in &sandbox.env {
        add(&["--setenv", k, v]);
    }
    args
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit { rlim_cur: value as libc::rlim_t, rlim_max: value as libc::rlim_t };
    // SAFETY: setrlimit with a valid pointer to a local struct.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Run `script` (sh) in the sandbox with `args`: `feed` writes its stdin,
/// `take` reads its stdout. Stops on `cancel`, the deadline, or a failure
/// of either side.
pub fn run<T: Send>(
    sandbox: &Sandbox,
    script: &str,
    args: &[String],
    cancel: &AtomicBool,
    feed: impl FnOnce(&mut dyn Write) -> anyhow::Result<()> + Send,
    take: impl FnOnce(&mut dyn Read) -> anyhow::Result<T> + Send,
) -> Result<T, Failure> {
    let bwrap = bwrap().ok_or_else(|| Failure::host("bubblewrap (bwrap) is not installed; source bundles need it"))?;
    let mut command = Command::new(&bwrap);
    command.args(bwrap_args(sandbox)).args(["sh", "-c", script, "kpackfs-build"]).args(args);
    command.env_clear().stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let limits = sandbox.limits;
    let uid = build_uid();
    let fd4 = match &sandbox.fd4 {
        Some(path) => {
            Some(std::fs::File::open(path).map_err(|e| Failure::host(format!("opening {}: {e}", path.display())))?)
        }
        None => None,
    };
    let fd4_raw = fd4.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    // SAFETY: between fork and exec only async-signal-safe calls.
    unsafe {
        command.pre_exec(move || {
            if let Some(raw) = fd4_raw {
                // dup2 clears close-on-exec; the same number needs it cleared by hand.
                let done = if raw == 4 { libc::fcntl(4, libc::F_SETFD, 0) } else { libc::dup2(raw, 4) };
                if done < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::geteuid() == 0
                && (libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(uid) != 0 || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            set_limit(libc::RLIMIT_CPU, limits.cpu_secs)?;
            set_limit(libc::RLIMIT_AS, limits.memory_bytes)?;
            set_limit(libc::RLIMIT_FSIZE, limits.file_bytes)?;
            set_limit(libc::RLIMIT_NPROC, limits.processes)?;
            set_limit(libc::RLIMIT_CORE, 0)?;
            // After the uid change, which clears it: die with kpackfs.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| Failure::host(format!("starting {}: {e}", bwrap.display())))?;
    drop(fd4);
    let (mut stdin, mut stdout, mut stderr) = match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
        (Some(i), Some(o), Some(e)) => (i, o, e),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Failure::host("the sandbox's pipes were not set up"));
        }
    };
    let abort = AtomicBool::new(false);
    let started = Instant::now();
    let (status, fed, taken, log_tail, stopped) = std::thread::scope(|s| {
        let abort = &abort;
        let feeder = s.spawn(move || {
            let fed = feed(&mut stdin);
            if fed.is_err() {
                abort.store(true, Ordering::SeqCst);
            }
            drop(stdin);
            fed
        });
        let taker = s.spawn(move || {
            let taken = take(&mut stdout);
            if taken.is_err() {
                abort.store(true, Ordering::SeqCst);
            }
            // Drain what is left so the build never blocks on a full pipe.
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
            taken
        });
        let logger = s.spawn(move || tail_of(&mut stderr));
        let mut stopped = None;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {}
                Err(_) => break None,
            }
            let why = if cancel.load(Ordering::SeqCst) {
                Some("no reader waits for it any more".to_string())
            } else if started.elapsed() > limits.wall {
                Some(format!("over its {}s deadline", limits.wall.as_secs()))
            } else if abort.load(Ordering::SeqCst) {
                Some("its input or output was refused".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                // bwrap's init dies with it (--die-with-parent), and with
                // the pid namespace's init every process of the build.
                let _ = child.kill();
                stopped = Some(why);
                break child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let fed = feeder.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the input writer panicked")));
        let taken = taker.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the output reader panicked")));
        let log_tail = logger.join().unwrap_or_default();
        (status, fed, taken, log_tail, stopped)
    });
    let failed = |cause: String, log_tail: String| Err(Failure { cause, log_tail, by_build: true });
    // The first cause: a refused input or output, then a stop, then the exit.
    if let Err(e) = fed {
        if !is_broken_pipe(&e) || stopped.is_some() || status.is_some_and(|s| s.success()) {
            return failed(format!("the source: {e:#}"), log_tail);
        }
    }
    if let Some(why) = stopped {
        if let Err(e) = &taken {
            if abort.load(Ordering::SeqCst) && !cancel.load(Ordering::SeqCst) {
                return failed(format!("the build's output: {e:#}"), log_tail);
            }
        }
        return failed(format!("the build was stopped: {why}"), log_tail);
    }
    match status {
        Some(status) if status.success() => {
            taken.map_err(|e| Failure { cause: format!("the build's output: {e:#}"), log_tail, by_build: true })
        }
        Some(status) => failed(describe_exit(status), log_tail),
        None => Err(Failure::host("waiting for the sandbox failed")),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("the build exited with status {code}"),
        (None, Some(signal)) => format!("the build was killed by signal {signal}"),
        _ => "the build ended abnormally".into(),
    }
}

/// Whether a sandbox can start here (bwrap present, user namespaces allowed).
pub fn available() -> Result<(), String> {
    let sandbox = Sandbox {
        limits: Limits { wall: Duration::from_secs(30), ..Limits::default() },
        masked: vec![],
        env: vec![],
        fd4: None,
    };
    let never = AtomicBool::new(false);
    run(&sandbox, "exit 0", &[], &never, |_| Ok(()), |_| Ok(()))
        .map_err(|f| format!("{} {}", f.cause, f.log_tail.trim()))
}

/// A path the sandbox sees (it binds `/usr` only).
pub fn visible(path: &Path) -> bool {
    path.starts_with("/usr") || path.starts_with("/bin") || path.starts_with("/lib")
}
