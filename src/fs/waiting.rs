//! Requests waiting for a build, and letting go of those whose caller dies.
//!
//! Once the daemon has read a request, the kernel waits for its answer
//! uninterruptibly: a reader killed with SIGKILL stays in D state until the
//! daemon answers (docs/design.md). fuser 0.18 answers FUSE_INTERRUPT with
//! ENOSYS, which makes the kernel stop sending interrupts, so the daemon
//! watches instead: every queued answer is registered with the caller's
//! thread id, and a sweep answers EINTR to each one whose caller has a
//! fatal signal pending (or is gone). The build goes on for the others;
//! once a bundle's last caller left, the cache stops its build.

use super::types::{Caller, Done, Errno};
use crate::cache::Watch;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the daemon can learn about the thread behind a request.
pub trait CallerProbe: Send + Sync {
    /// It has a fatal signal pending, or is gone.
    fn is_dying(&self, pid: u32) -> bool;
    /// It has the .tgz with inode `ino` of this filesystem open (see `procfd`).
    fn has_tgz_open(&self, pid: u32, ino: u64) -> bool;
}

/// The real probe: `/proc/<tid>/status`. SIGKILL, or any fatal signal the
/// kernel turned into one, shows in SigPnd/ShdPnd; a zombie or a missing
/// entry means gone.
pub struct ProcProbe;

const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);

impl CallerProbe for ProcProbe {
    fn is_dying(&self, pid: u32) -> bool {
        let text = match std::fs::read_to_string(format!("/proc/{pid}/status")) {
            Ok(t) => t,
            Err(e) => return e.kind() == std::io::ErrorKind::NotFound,
        };
        status_says_dying(&text)
    }

    fn has_tgz_open(&self, pid: u32, ino: u64) -> bool {
        super::procfd::process_has_open(pid, ino, crate::namespace::TGZ_SUFFIX.as_bytes())
    }
}

fn status_says_dying(text: &str) -> bool {
    text.lines().any(|line| {
        let Some((key, value)) = line.split_once(':') else { return false };
        let value = value.trim();
        match key {
            "State" => value.starts_with('Z') || value.starts_with('X'),
            "SigPnd" | "ShdPnd" => u64::from_str_radix(value, 16).is_ok_and(|mask| mask & SIGKILL_BIT != 0),
            _ => false,
        }
    })
}

struct Registered {
    pid: u32,
    abandon: Box<dyn FnOnce() + Send>,
}

/// The registry of queued answers.
pub struct Waiting {
    next: AtomicU64,
    map: Mutex<HashMap<u64, Registered>>,
    probe: Arc<dyn CallerProbe>,
}

impl Waiting {
    pub fn new(probe: Arc<dyn CallerProbe>) -> Arc<Waiting> {
        Arc::new(Waiting { next: AtomicU64::new(0), map: Mutex::default(), probe })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Registered>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wrap `done` so that exactly one answer is given: the build's, or
    /// EINTR from [`Waiting::sweep`] if the caller dies first; the
    /// [`Watch`] tells the cache when it left. A caller we cannot see
    /// (pid 0) is not watched.
    pub fn register<T: Send + 'static>(self: &Arc<Self>, caller: Caller, done: Done<T>) -> (Done<T>, Watch) {
        if caller.pid == 0 {
            return (done, Watch::Stays);
        }
        let slot: Arc<Mutex<Option<Done<T>>>> = Arc::new(Mutex::new(Some(done)));
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let for_sweep = slot.clone();
        let left = Arc::new(AtomicBool::new(false));
        let leaves = left.clone();
        let abandon = Box::new(move || {
            leaves.store(true, Ordering::SeqCst);
            let taken = for_sweep.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(done) = taken {
                done(Err(Errno::EINTR));
            }
        });
        self.lock().insert(token, Registered { pid: caller.pid, abandon });
        let me = self.clone();
        let done: Done<T> = Box::new(move |result| {
            me.lock().remove(&token);
            let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(done) = taken {
                done(result);
            }
        });
        (done, Watch::Caller(left))
    }

    /// Answer EINTR to every wait whose caller is dying. Returns how many.
    pub fn sweep(&self) -> usize {
        let pids: Vec<(u64, u32)> = self.lock().iter().map(|(t, r)| (*t, r.pid)).collect();
        let mut dying: HashMap<u32, bool> = HashMap::new();
        let mut released = 0;
        for (token, pid) in pids {
            if !*dying.entry(pid).or_insert_with(|| self.probe.is_dying(pid)) {
                continue;
            }
            let registered = self.lock().remove(&token);
            if let Some(r) = registered {
                (r.abandon)();
                released += 1;
            }
        }
        if released > 0 {
            log::info!("answered {released} request(s) of killed readers with EINTR");
        }
        released
    }

    /// Answers still queued.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    struct Fake(AtomicBool);
    impl CallerProbe for Fake {
        fn is_dying(&self, pid: u32) -> bool {
            pid == 7 && self.0.load(Ordering::SeqCst)
        }
        fn has_tgz_open(&self, _: u32, _: u64) -> bool {
            false
        }
    }

    #[test]
    fn reads_proc_status() {
        let ours = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(!status_says_dying(&ours));
        assert!(status_says_dying("State:\tD (disk sleep)\nSigPnd:\t0000000000000100\nShdPnd:\t0000000000000000\n"));
        assert!(status_says_dying("State:\tZ (zombie)\n"));
        assert!(!ProcProbe.is_dying(std::process::id()));
    }

    #[test]
    fn a_dying_caller_gets_eintr_once_and_others_wait_for_the_build() {
        let probe = Arc::new(Fake(AtomicBool::new(false)));
        let waiting = Waiting::new(probe.clone());
        type Answers = Arc<Mutex<Vec<(u32, Result<u32, Errno>)>>>;
        let answers: Answers = Arc::default();
        let answer = |pid: u32| -> Done<u32> {
            let answers = answers.clone();
            Box::new(move |r| answers.lock().unwrap().push((pid, r)))
        };
        let (killed, killed_watch) = waiting.register(Caller { pid: 7 }, answer(7));
        let (alive, alive_watch) = waiting.register(Caller { pid: 8 }, answer(8));
        let left = |w: &Watch| matches!(w, Watch::Caller(f) if f.load(Ordering::SeqCst));
        assert_eq!(waiting.sweep(), 0);
        probe.0.store(true, Ordering::SeqCst);
        assert_eq!(waiting.sweep(), 1);
        assert_eq!(waiting.len(), 1);
        assert!(left(&killed_watch) && !left(&alive_watch), "the cache learns who left");
        // The build finishes later: the killed caller is not answered twice.
        killed(Ok(1));
        alive(Ok(1));
        assert_eq!(*answers.lock().unwrap(), vec![(7, Err(Errno::EINTR)), (8, Ok(1))]);
        assert!(waiting.is_empty());
    }
}
