//! Builds in flight: one per bundle however many ask, the others queued
//! without blocking a thread; what each build is doing; which packages
//! running builds need. A failure is remembered for a backoff during which
//! askers get its cause at once, so a broken mirror is not hammered. A
//! build whose every waiter has left (killed readers) is told to stop;
//! stopping is not a failure, so the next asker starts it again at once.

use crate::error::BuildError;
use crate::ids::Sha256;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a build failed (its class and one line), shared by every waiter.
pub type Cause = BuildError;

/// What a waiter is told.
pub type Outcome<T> = Result<Arc<T>, Cause>;

pub type Waiter<T> = Box<dyn FnOnce(Outcome<T>) + Send>;

/// Whether a waiter can leave before its answer.
#[derive(Clone)]
pub enum Watch {
    /// It waits to the end (serve's clients, a write-back): the build is
    /// always wanted while it waits.
    Stays,
    /// A filesystem caller; the flag is set when it left (killed).
    Caller(Arc<AtomicBool>),
    /// Another flight of the same bundle waits on this one (a .tgz made
    /// from the pack): that flight's own waiters carry the interest.
    Sibling,
}

impl Watch {
    fn wants(&self) -> Option<bool> {
        match self {
            Watch::Stays => Some(true),
            Watch::Caller(left) => Some(!left.load(Ordering::SeqCst)),
            Watch::Sibling => None,
        }
    }
}

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
        watches: Vec<Watch>,
        failures: u32,
        phase: Phase,
        /// Set when nobody waits any more: the build stops.
        cancel: Arc<AtomicBool>,
        /// Since when nobody waits (a grace before the stop).
        unwanted_since: Option<Instant>,
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

    pub fn join(&mut self, id: K, waiter: Waiter<T>, watch: Watch, now: Instant) -> Joined<T> {
        match self.map.get_mut(&id) {
            Some(Flight::Running { waiters, watches, .. }) => {
                waiters.push(waiter);
                watches.push(watch);
                Joined::Queued
            }
            Some(Flight::Failed { cause, until, .. }) if now < *until => Joined::Failed(waiter, cause.clone()),
            previous => {
                let failures = match previous {
                    Some(Flight::Failed { attempts, .. }) => *attempts,
                    _ => 0,
                };
                let cancel = Arc::new(AtomicBool::new(false));
                let running = Flight::Running {
                    waiters: vec![waiter],
                    watches: vec![watch],
                    failures,
                    phase: Phase::Fetching,
                    cancel,
                    unwanted_since: None,
                };
                self.map.insert(id, running);
                Joined::Start
            }
        }
    }

    /// Finish a build: returns its waiters, and whether it was told to
    /// stop. A failure starts a backoff; a stopped build does not.
    pub fn finish(&mut self, id: K, outcome: &Result<(), Cause>, now: Instant) -> (Vec<Waiter<T>>, bool) {
        let (waiters, failures, stopped) = match self.map.remove(&id) {
            Some(Flight::Running { waiters, failures, cancel, .. }) => {
                (waiters, failures, cancel.load(Ordering::SeqCst))
            }
            _ => (Vec::new(), 0, false),
        };
        if stopped && outcome.is_err() {
            // A stop leaves no failure behind: the next asker starts again.
            return (waiters, true);
        }
        if let Err(cause) = outcome {
            let attempts = failures + 1;
            let until = now + self.backoff.after(attempts);
            self.map.insert(id, Flight::Failed { cause: cause.clone(), until, attempts });
        }
        (waiters, false)
    }

    /// The flag that stops a running build when nobody waits for it.
    pub fn cancel_token(&self, id: &K) -> Option<Arc<AtomicBool>> {
        match self.map.get(id) {
            Some(Flight::Running { cancel, .. }) => Some(cancel.clone()),
            _ => None,
        }
    }

    /// Tell every running build nobody has waited for during `grace` to
    /// stop: a group (`group` maps a flight to its bundle) is wanted while
    /// any flight of it has a waiter that stays or has not left. The grace
    /// is for readers the kernel queued behind the one that left (lookups of
    /// one name are serialized before they reach us): they ask again at
    /// once. Returns the flights told.
    pub fn cancel_unwanted<G: Eq + Hash>(&mut self, group: impl Fn(&K) -> G, now: Instant, grace: Duration) -> Vec<K> {
        let mut wanted: HashMap<G, bool> = HashMap::new();
        for (id, flight) in &self.map {
            if let Flight::Running { watches, .. } = flight {
                let any = watches.iter().filter_map(Watch::wants).any(|w| w);
                *wanted.entry(group(id)).or_default() |= any;
            }
        }
        let mut told = Vec::new();
        for (id, flight) in &mut self.map {
            if let Flight::Running { cancel, unwanted_since, .. } = flight {
                if wanted.get(&group(id)).copied().unwrap_or(true) {
                    *unwanted_since = None;
                    continue;
                }
                let since = *unwanted_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= grace && !cancel.swap(true, Ordering::SeqCst) {
                    told.push(*id);
                }
            }
        }
        told
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
        assert!(matches!(f.join(id, waiter(&told), Watch::Stays, t0), Joined::Start));
        for _ in 0..15 {
            assert!(matches!(f.join(id, waiter(&told), Watch::Stays, t0), Joined::Queued));
        }
        assert_eq!(f.waiting(&id), 16);
        let (waiters, stopped) = f.finish(id, &Err(cause("HTTP 500")), t0);
        assert_eq!((waiters.len(), stopped), (16, false));
        match f.join(id, waiter(&told), Watch::Stays, t0 + Duration::from_secs(1)) {
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
            assert!(matches!(f.join(id, waiter(&told), Watch::Stays, now), Joined::Start));
            f.finish(id, &Err(cause("again")), now);
        }
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300]);
        // Success clears the failure.
        assert!(matches!(f.join(id, waiter(&told), Watch::Stays, now + Duration::from_secs(300)), Joined::Start));
        f.finish(id, &Ok(()), now);
        assert!(f.failure(&id, now).is_none());
    }

    fn nobody() -> Waiter<u32> {
        Box::new(|_| {})
    }

    #[test]
    fn a_build_is_told_to_stop_once_every_caller_of_its_bundle_left_and_that_is_no_failure() {
        let backoff = Backoff { base: Duration::from_secs(60), max: Duration::from_secs(300) };
        // Flights keyed (bundle, file): file 0 the pack, 1 the .tgz made from it.
        let mut f: Flights<(u32, u8), u32> = Flights::new(backoff);
        let t0 = Instant::now();
        let (a, b) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        assert!(matches!(f.join((1, 0), nobody(), Watch::Caller(a.clone()), t0), Joined::Start));
        f.join((1, 1), nobody(), Watch::Caller(b.clone()), t0);
        f.join((1, 0), nobody(), Watch::Sibling, t0);
        // Another bundle served to a client that stays is never stopped.
        f.join((2, 0), nobody(), Watch::Stays, t0);
        let bundle = |k: &(u32, u8)| k.0;
        let grace = Duration::from_secs(2);
        a.store(true, Ordering::SeqCst);
        assert!(f.cancel_unwanted(bundle, t0, grace).is_empty(), "the .tgz's reader still waits");
        b.store(true, Ordering::SeqCst);
        assert!(f.cancel_unwanted(bundle, t0, grace).is_empty(), "nobody waits: the grace starts");
        // A reader the kernel held back asks again within the grace.
        let c = Arc::new(AtomicBool::new(false));
        f.join((1, 0), nobody(), Watch::Caller(c.clone()), t0);
        assert!(f.cancel_unwanted(bundle, t0 + grace, grace).is_empty(), "wanted again");
        c.store(true, Ordering::SeqCst);
        let later = t0 + grace * 2;
        assert!(f.cancel_unwanted(bundle, later, grace).is_empty(), "a new grace");
        let mut told = f.cancel_unwanted(bundle, later + grace, grace);
        told.sort();
        assert_eq!(told, vec![(1, 0), (1, 1)]);
        assert!(f.cancel_token(&(1, 0)).unwrap().load(Ordering::SeqCst));
        assert!(f.cancel_unwanted(bundle, later + grace * 2, grace).is_empty(), "told once");
        assert!(!f.cancel_token(&(2, 0)).unwrap().load(Ordering::SeqCst));
        let (_, stopped) = f.finish((1, 0), &Err(cause("stopped")), t0);
        assert!(stopped);
        assert!(f.failure(&(1, 0), t0).is_none(), "no backoff after a stop");
        assert!(matches!(f.join((1, 0), nobody(), Watch::Stays, t0), Joined::Start), "the next asker starts it");
    }
}
