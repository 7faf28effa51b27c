//! Builds in flight: one per bundle however many ask, the others queued
//! without blocking a thread; what each build is doing; which packages
//! running builds need. A failure is remembered for a backoff during which
//! askers get its cause at once, so a broken mirror is not hammered.

use crate::error::BuildError;
use crate::ids::Sha256;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a build failed (its class and one line), shared by every waiter.
pub type Cause = BuildError;

/// What a waiter is told.
pub type Outcome<T> = Result<Arc<T>, Cause>;

pub type Waiter<T> = Box<dyn FnOnce(Outcome<T>) + Send>;

/// What a running build is doing (status shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Checking a cached file's digest before first use.
    Verifying,
    /// Reading a prebuilt bundle from the remote tier.
    Remote,
    Fetching,
    Extracting,
    Compressing,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Verifying => "verifying",
            Phase::Remote => "remote",
            Phase::Fetching => "fetching",
            Phase::Extracting => "extracting",
            Phase::Compressing => "compressing",
        }
    }
}

enum Flight<T> {
    /// `failures`: consecutive failures before this attempt.
    Running {
        waiters: Vec<Waiter<T>>,
        failures: u32,
        phase: Phase,
    },
    Failed {
        cause: Cause,
        until: Instant,
        attempts: u32,
    },
}

/// Backoff after failures: `base`, doubling per consecutive failure, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn after(&self, attempts: u32) -> Duration {
        self.base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20)).min(self.max)
    }
}

/// What [`Flights::join`] decided.
pub enum Joined<T> {
    /// The caller must start the build.
    Start,
    /// A build is running; the waiter is queued.
    Queued,
    /// A recent failure; the waiter is handed back with the cause.
    Failed(Waiter<T>, Cause),
}

/// Flights keyed by `K` (a bundle and which of its files).
pub struct Flights<K, T> {
    map: HashMap<K, Flight<T>>,
    backoff: Backoff,
}

impl<K: Copy + Eq + Hash, T> Flights<K, T> {
    pub fn new(backoff: Backoff) -> Self {
        Flights { map: HashMap::new(), backoff }
    }

    pub fn join(&mut self, id: K, waiter: Waiter<T>, now: Instant) -> Joined<T> {
        match self.map.get_mut(&id) {
            Some(Flight::Running { waiters, .. }) => {
                waiters.push(waiter);
                Joined::Queued
            }
            Some(Flight::Failed { cause, until, .. }) if now < *until => Joined::Failed(waiter, cause.clone()),
            previous => {
                let failures = match previous {
                    Some(Flight::Failed { attempts, .. }) => *attempts,
                    _ => 0,
                };
                self.map.insert(id, Flight::Running { waiters: vec![waiter], failures, phase: Phase::Fetching });
                Joined::Start
            }
        }
    }

    /// Finish a build: returns its waiters. A failure starts a backoff.
    pub fn finish(&mut self, id: K, outcome: &Result<(), Cause>, now: Instant) -> Vec<Waiter<T>> {
        let (waiters, failures) = match self.map.remove(&id) {
            Some(Flight::Running { waiters, failures, .. }) => (waiters, failures),
            _ => (Vec::new(), 0),
        };
        if let Err(cause) = outcome {
            let attempts = failures + 1;
            let until = now + self.backoff.after(attempts);
            self.map.insert(id, Flight::Failed { cause: cause.clone(), until, attempts });
        }
        waiters
    }

    pub fn set_phase(&mut self, id: K, to: Phase) {
        if let Some(Flight::Running { phase, .. }) = self.map.get_mut(&id) {
            *phase = to;
        }
    }

    /// The phase of a running build.
    pub fn phase(&self, id: &K) -> Option<Phase> {
        match self.map.get(id) {
            Some(Flight::Running { phase, .. }) => Some(*phase),
            _ => None,
        }
    }

    pub fn is_running(&self, id: &K) -> bool {
        self.phase(id).is_some()
    }

    /// Waiters queued on a running build (the first asker included).
    pub fn waiting(&self, id: &K) -> usize {
        match self.map.get(id) {
            Some(Flight::Running { waiters, .. }) => waiters.len(),
            _ => 0,
        }
    }

    /// The last failure, and how long until the next attempt is allowed.
    pub fn failure(&self, id: &K, now: Instant) -> Option<(Cause, Duration)> {
        match self.map.get(id) {
            Some(Flight::Failed { cause, until, .. }) => Some((cause.clone(), until.saturating_duration_since(now))),
            _ => None,
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.map.keys()
    }
}

/// Packages that running builds need (sha256 → builds): never evicted.
#[derive(Default)]
pub struct Pins(HashMap<Sha256, usize>);

impl Pins {
    pub fn pin(&mut self, shas: &[Sha256]) {
        for sha in shas {
            *self.0.entry(*sha).or_default() += 1;
        }
    }

    pub fn unpin(&mut self, shas: &[Sha256]) {
        for sha in shas {
            if let Some(n) = self.0.get_mut(sha) {
                *n -= 1;
                if *n == 0 {
                    self.0.remove(sha);
                }
            }
        }
    }

    pub fn contains(&self, sha: &Sha256) -> bool {
        self.0.contains_key(sha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn cause(text: &str) -> Cause {
        BuildError::new(ErrorClass::Unreachable, text)
    }

    #[test]
    fn one_start_many_waiters_then_backoff_doubling_to_the_cap() {
        let backoff = Backoff { base: Duration::from_secs(2), max: Duration::from_secs(300) };
        let mut f: Flights<u32, u32> = Flights::new(backoff);
        let id = 1;
        let told = Arc::new(AtomicUsize::new(0));
        let waiter = |t: &Arc<AtomicUsize>| -> Waiter<u32> {
            let t = t.clone();
            Box::new(move |_| {
                t.fetch_add(1, Ordering::SeqCst);
            })
        };
        let t0 = Instant::now();
        assert!(matches!(f.join(id, waiter(&told), t0), Joined::Start));
        for _ in 0..15 {
            assert!(matches!(f.join(id, waiter(&told), t0), Joined::Queued));
        }
        assert_eq!(f.waiting(&id), 16);
        let waiters = f.finish(id, &Err(cause("HTTP 500")), t0);
        assert_eq!(waiters.len(), 16);
        match f.join(id, waiter(&told), t0 + Duration::from_secs(1)) {
            Joined::Failed(_, cause) => assert_eq!(cause.message(), "HTTP 500"),
            _ => panic!("expected the remembered failure"),
        }
        // Each consecutive failure doubles the wait: 2, 4, 8, … 256, then 300 s.
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..9 {
            let (_, wait) = f.failure(&id, now).unwrap();
            waits.push(wait.as_secs());
            now += wait;
            assert!(matches!(f.join(id, waiter(&told), now), Joined::Start));
            f.finish(id, &Err(cause("again")), now);
        }
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300]);
        // Success clears the failure.
        assert!(matches!(f.join(id, waiter(&told), now + Duration::from_secs(300)), Joined::Start));
        f.finish(id, &Ok(()), now);
        assert!(f.failure(&id, now).is_none());
    }
}
