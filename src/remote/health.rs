//! A tier that failed is skipped for a while (doubling, capped), so a slow
//! or broken bucket costs one attempt per backoff, not one per bundle.

use std::sync::Mutex;
use std::time::{Duration, Instant};

const FIRST: Duration = Duration::from_secs(30);
const MAX: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
struct State {
    failures: u32,
    until: Option<Instant>,
}

/// Separate backoffs for reads and writes: read-only credentials refuse
/// every write but serve every read.
#[derive(Debug, Default)]
pub struct Health {
    reads: Mutex<State>,
    writes: Mutex<State>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn usable(m: &Mutex<State>, now: Instant) -> bool {
    lock(m).until.is_none_or(|t| now >= t)
}

/// Record a failure; returns how long the tier is now skipped.
/// The backoff a failure starts, or None when one is already running (a
/// concurrent failure of the same outage: neither longer nor logged again).
fn failed(m: &Mutex<State>, now: Instant) -> Option<Duration> {
    let mut st = lock(m);
    if st.until.is_some_and(|t| now < t) {
        return None;
    }
    let wait = FIRST.saturating_mul(1 << st.failures.min(5)).min(MAX);
    st.failures = st.failures.saturating_add(1);
    st.until = Some(now + wait);
    Some(wait)
}

fn worked(m: &Mutex<State>) {
    *lock(m) = State::default();
}

impl Health {
    pub fn can_read(&self, now: Instant) -> bool {
        usable(&self.reads, now)
    }
    pub fn can_write(&self, now: Instant) -> bool {
        usable(&self.writes, now)
    }
    pub fn read_failed(&self, now: Instant) -> Option<Duration> {
        failed(&self.reads, now)
    }
    pub fn write_failed(&self, now: Instant) -> Option<Duration> {
        failed(&self.writes, now)
    }
    pub fn read_worked(&self) {
        worked(&self.reads)
    }
    pub fn write_worked(&self) {
        worked(&self.writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_doubling_to_a_cap_and_success_resets() {
        let h = Health::default();
        let t = Instant::now();
        assert!(h.can_read(t));
        assert_eq!(h.read_failed(t), Some(FIRST));
        assert!(!h.can_read(t) && h.can_write(t), "reads and writes back off apart");
        assert_eq!(h.read_failed(t), None, "a failure during the backoff neither doubles it nor is logged");
        assert!(h.can_read(t + FIRST));
        assert_eq!(h.read_failed(t + FIRST), Some(FIRST * 2));
        let mut now = t + FIRST;
        for _ in 0..10 {
            now += MAX;
            h.read_failed(now);
        }
        assert_eq!(h.read_failed(now + MAX), Some(MAX));
        h.read_worked();
        assert!(h.can_read(now));
    }
}
