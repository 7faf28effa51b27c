//! The one retry policy: transient failures (see
//! [`FetchError::is_transient`]) are retried with exponential backoff,
//! never past the deadline.

use super::error::FetchError;
use std::future::Future;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub retries: u32,
    /// Delay before the first retry; doubles with each one.
    pub base: Duration,
    /// The longest delay between attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { retries: 3, base: Duration::from_millis(500), max_delay: Duration::from_secs(30) }
    }
}

/// The last error and how many attempts were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub error: FetchError,
    pub attempts: u32,
}

impl RetryPolicy {
    /// The delay after the `attempt`-th failure (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(self.max_delay)
    }

    /// Run `attempt(n)` until it succeeds, fails permanently, runs out of
    /// retries, or the next try would start after `deadline`.
    pub async fn run<T, F, Fut>(&self, deadline: Option<Instant>, mut attempt: F) -> Result<T, Failed>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, FetchError>>,
    {
        let mut n = 0;
        loop {
            n += 1;
            let error = match attempt(n).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let delay = self.delay(n);
            let past_deadline = deadline.is_some_and(|d| Instant::now() + delay >= d);
            if !error.is_transient() || n > self.retries || past_deadline {
                return Err(Failed { error, attempts: n });
            }
            log::debug!("attempt {n} failed ({error}); retrying in {delay:?}");
            tokio::time::sleep(delay).await;
        }
    }
}

impl Failed {
    /// `"<cause> (N attempts)"`.
    pub fn describe(&self) -> String {
        let n = self.attempts;
        format!("{} ({n} attempt{})", self.error, if n == 1 { "" } else { "s" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy() -> RetryPolicy {
        RetryPolicy { retries: 3, base: Duration::from_millis(1), max_delay: Duration::from_millis(4) }
    }

    #[test]
    fn delays_double_up_to_the_maximum() {
        let p = RetryPolicy { retries: 9, base: Duration::from_secs(2), max_delay: Duration::from_secs(300) };
        let delays: Vec<u64> = (1..=10).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_permanent_ones_are_not() {
        let calls = AtomicU32::new(0);
        let r = policy()
            .run(None, |n| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 3 {
                        Err(FetchError::Status(503))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(r, Ok(3));
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = policy()
            .run(None, |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(FetchError::Status(404)) }
            })
            .await;
        assert_eq!(r.unwrap_err().attempts, 1);
        let r: Result<(), _> = policy().run(None, |_| async { Err(FetchError::Status(500)) }).await;
        let failed = r.unwrap_err();
        assert_eq!(failed.attempts, 4);
        assert_eq!(failed.describe(), "HTTP 500 Internal Server Error (4 attempts)");
    }

    #[tokio::test]
    async fn no_retry_starts_past_the_deadline() {
        let slow = RetryPolicy { retries: 5, base: Duration::from_secs(10), max_delay: Duration::from_secs(10) };
        let deadline = Instant::now() + Duration::from_secs(1);
        let r: Result<(), _> = slow.run(Some(deadline), |_| async { Err(FetchError::Status(503)) }).await;
        assert_eq!(r.unwrap_err().attempts, 1);
    }
}
