//! Retrying a busy source: exponential backoff with jitter until a deadline, saying what it waits for.

use crate::cancel::CancelToken;
use chrono::{DateTime, Local};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How long and how often to retry a source that is locked or busy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Wait before the second attempt.
    #[serde(with = "secs")]
    pub initial_delay: Duration,
    /// Each wait is this many times the previous one.
    pub factor: f64,
    /// No wait is longer than this.
    #[serde(with = "secs")]
    pub max_delay: Duration,
    /// Give up this long after the first attempt.
    #[serde(with = "secs")]
    pub deadline: Duration,
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        if !(0.0..=1e9).contains(&v) {
            return Err(serde::de::Error::custom(
                "a duration in seconds must be between 0 and 1e9",
            ));
        }
        Ok(Duration::from_secs_f64(v))
    }
}

impl Default for RetryPolicy {
    /// 1 s, doubling, at most 60 s apart, for at most 10 minutes.
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(60),
            deadline: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `n + 1` (n ≥ 1), without jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let f = self
            .factor
            .max(1.0)
            .powi(n.saturating_sub(1).min(64) as i32);
        let secs = self.initial_delay.as_secs_f64() * f;
        if !secs.is_finite() || secs >= self.max_delay.as_secs_f64() {
            self.max_delay
        } else {
            Duration::from_secs_f64(secs)
        }
    }
}

/// The result of one attempt.
pub enum Attempt<T, E> {
    Done(T),
    /// Busy or locked: `holder` says by what or whom (for the log and the final error).
    Busy {
        holder: String,
    },
    /// Failed for a reason that waiting will not fix.
    Failed(E),
}

/// What a retry loop is waiting for, reported before each wait.
#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    pub what: String,
    pub holder: String,
    pub since: DateTime<Local>,
    pub attempt: u32,
    #[serde(with = "secs")]
    pub next_delay: Duration,
    #[serde(with = "secs")]
    pub deadline_in: Duration,
}

impl Waiting {
    /// One line for the log and the terminal: what is waited for, why, since when, and for how
    /// much longer at most.
    pub fn message(&self) -> String {
        format!(
            "waiting for {}: {}; waiting since {}, attempt {}, next try in {:.0?}, giving up in {:.0?}",
            self.what,
            self.holder,
            self.since.format("%H:%M:%S"),
            self.attempt,
            self.next_delay,
            self.deadline_in
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    #[error("{what} was still busy after {waited:?} ({attempts} attempts, deadline {deadline:?}): {holder}")]
    Deadline {
        what: String,
        holder: String,
        waited: Duration,
        attempts: u32,
        deadline: Duration,
    },
    #[error(transparent)]
    Failed(E),
    #[error("interrupted while waiting for {0}")]
    Cancelled(String),
}

/// Runs `attempt` until it is done, fails, or the deadline passes; waits with exponential backoff
/// and ±20 % jitter between attempts, calling `on_wait` before each wait.
pub fn retry<T, E>(
    policy: &RetryPolicy,
    what: &str,
    cancel: &CancelToken,
    on_wait: &mut dyn FnMut(&Waiting),
    mut attempt: impl FnMut() -> Attempt<T, E>,
) -> Result<T, RetryError<E>> {
    let start = Instant::now();
    let since = Local::now();
    let mut n = 0u32;
    loop {
        n += 1;
        let holder = match attempt() {
            Attempt::Done(v) => return Ok(v),
            Attempt::Failed(e) => return Err(RetryError::Failed(e)),
            Attempt::Busy { holder } => holder,
        };
        let elapsed = start.elapsed();
        if elapsed >= policy.deadline {
            return Err(RetryError::Deadline {
                what: what.to_string(),
                holder,
                waited: elapsed,
                attempts: n,
                deadline: policy.deadline,
            });
        }
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        let delay = policy
            .delay(n)
            .mul_f64(jitter)
            .min(policy.deadline - elapsed);
        on_wait(&Waiting {
            what: what.to_string(),
            holder,
            since,
            attempt: n,
            next_delay: delay,
            deadline_in: policy.deadline - elapsed,
        });
        // Sleep in small steps so that a cancel is seen quickly.
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if cancel.is_cancelled() {
                return Err(RetryError::Cancelled(what.to_string()));
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1), Duration::from_secs(1));
        assert_eq!(p.delay(2), Duration::from_secs(2));
        assert_eq!(p.delay(6), Duration::from_secs(32));
        assert_eq!(p.delay(7), Duration::from_secs(60));
        assert_eq!(p.delay(1000), Duration::from_secs(60));
    }

    #[test]
    fn succeeds_after_busy_and_reports_waits() {
        let p = RetryPolicy {
            initial_delay: Duration::from_millis(5),
            factor: 2.0,
            max_delay: Duration::from_millis(20),
            deadline: Duration::from_secs(5),
        };
        let mut calls = 0;
        let mut waits = Vec::new();
        let r: Result<u32, RetryError<String>> = retry(
            &p,
            "db",
            &CancelToken::new(),
            &mut |w| waits.push(w.clone()),
            || {
                calls += 1;
                if calls < 4 {
                    Attempt::Busy {
                        holder: "PID 7".into(),
                    }
                } else {
                    Attempt::Done(calls)
                }
            },
        );
        assert_eq!(r.unwrap(), 4);
        assert_eq!(waits.len(), 3);
        assert_eq!(waits[2].attempt, 3);
        assert_eq!(waits[0].holder, "PID 7");
    }

    #[test]
    fn deadline_names_the_holder_and_failures_are_not_retried() {
        let p = RetryPolicy {
            initial_delay: Duration::from_millis(5),
            factor: 2.0,
            max_delay: Duration::from_millis(10),
            deadline: Duration::from_millis(60),
        };
        let r: Result<(), RetryError<String>> = retry(
            &p,
            "the database /x.db",
            &CancelToken::new(),
            &mut |_| {},
            || Attempt::Busy {
                holder: "an exclusive lock".into(),
            },
        );
        let e = r.unwrap_err();
        assert!(matches!(e, RetryError::Deadline { .. }));
        assert!(
            e.to_string().contains("the database /x.db")
                && e.to_string().contains("an exclusive lock"),
            "{e}"
        );
        let mut calls = 0;
        let r: Result<(), RetryError<String>> =
            retry(&p, "x", &CancelToken::new(), &mut |_| {}, || {
                calls += 1;
                Attempt::Failed("not a database".into())
            });
        assert!(matches!(r, Err(RetryError::Failed(_))));
        assert_eq!(calls, 1);
    }
}
