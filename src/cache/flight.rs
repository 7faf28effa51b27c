//! Single flight with failure backoff: one build per key however many ask;
//! the others wait without blocking a thread (their continuation is queued).
//! A failure is remembered for a backoff period during which askers get the
//! cause at once, so a broken mirror is not hammered in a hot loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a build failed: one line, shared by every waiter.
pub type Cause = Arc<str>;

/// What a waiter is told.
pub type Outcome<T> = Result<Arc<T>, Cause>;

pub type Waiter<T> = Box<dyn FnOnce(Outcome<T>) + Send>;

enum Flight<T> {
    /// `failures`: consecutive failures before this attempt.
    Running {
        waiters: Vec<Waiter<T>>,
        failures: u32,
    },
    Failed {
        cause: Cause,
        until: Instant,
        attempts: u32,
    },
}

/// Backoff after failures: `base`, doubling per consecutive failure, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    fn after(&self, attempts: u32) -> Duration {
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

pub struct Flights<T> {
    map: HashMap<String, Flight<T>>,
    backoff: Backoff,
}

impl<T> Flights<T> {
    pub fn new(backoff: Backoff) -> Self {
        Flights { map: HashMap::new(), backoff }
    }

    pub fn join(&mut self, key: &str, waiter: Waiter<T>) -> Joined<T> {
        match self.map.get_mut(key) {
            Some(Flight::Running { waiters, .. }) => {
                waiters.push(waiter);
                Joined::Queued
            }
            Some(Flight::Failed { cause, until, .. }) if Instant::now() < *until => {
                Joined::Failed(waiter, cause.clone())
            }
            previous => {
                let failures = match previous {
                    Some(Flight::Failed { attempts, .. }) => *attempts,
                    _ => 0,
                };
                self.map.insert(key.to_string(), Flight::Running { waiters: vec![waiter], failures });
                Joined::Start
            }
        }
    }

    /// Finish a build: returns its waiters.
    pub fn finish(&mut self, key: &str, outcome: &Result<(), Cause>) -> Vec<Waiter<T>> {
        let (waiters, failures) = match self.map.remove(key) {
            Some(Flight::Running { waiters, failures }) => (waiters, failures),
            _ => (Vec::new(), 0),
        };
        if let Err(cause) = outcome {
            let attempts = failures + 1;
            let until = Instant::now() + self.backoff.after(attempts);
            self.map.insert(key.to_string(), Flight::Failed { cause: cause.clone(), until, attempts });
        }
        waiters
    }

    pub fn is_running(&self, key: &str) -> bool {
        matches!(self.map.get(key), Some(Flight::Running { .. }))
    }

    /// The last failure, and how long until the next attempt is allowed.
    pub fn failure(&self, key: &str) -> Option<(Cause, Duration)> {
        match self.map.get(key) {
            Some(Flight::Failed { cause, until, .. }) => {
                Some((cause.clone(), until.saturating_duration_since(Instant::now())))
            }
            _ => None,
        }
    }

    pub fn running(&self) -> impl Iterator<Item = &str> {
        self.map.iter().filter(|(_, f)| matches!(f, Flight::Running { .. })).map(|(k, _)| k.as_str())
    }

    pub fn failed(&self) -> impl Iterator<Item = &str> {
        self.map.iter().filter(|(_, f)| matches!(f, Flight::Failed { .. })).map(|(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn one_start_many_waiters_then_backoff() {
        let backoff = Backoff { base: Duration::from_millis(50), max: Duration::from_secs(1) };
        let mut f: Flights<u32> = Flights::new(backoff);
        let told = Arc::new(AtomicUsize::new(0));
        let waiter = |t: &Arc<AtomicUsize>| -> Waiter<u32> {
            let t = t.clone();
            Box::new(move |_| {
                t.fetch_add(1, Ordering::SeqCst);
            })
        };
        assert!(matches!(f.join("k", waiter(&told)), Joined::Start));
        for _ in 0..15 {
            assert!(matches!(f.join("k", waiter(&told)), Joined::Queued));
        }
        let waiters = f.finish("k", &Err(Arc::from("HTTP 500")));
        assert_eq!(waiters.len(), 16);
        // Within the backoff: the cause at once, no new build.
        match f.join("k", waiter(&told)) {
            Joined::Failed(_, cause) => assert_eq!(&*cause, "HTTP 500"),
            _ => panic!("expected the remembered failure"),
        }
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(f.join("k", waiter(&told)), Joined::Start));
        // A second failure backs off twice as long.
        f.finish("k", &Err(Arc::from("again")));
        let (_, wait) = f.failure("k").unwrap();
        assert!(wait > Duration::from_millis(60), "{wait:?}");
        assert_eq!(backoff.after(30), Duration::from_secs(1));
    }
}
