//! Retrying a busy source: its retry policy (part of the configuration and state format), the `Waiting` report, and the loop (`crate::retry`'s, until a deadline) that names what it waits for.

use crate::cancel::CancelToken;
use crate::retry::{self, Attempt, GaveUp};
use chrono::{DateTime, Local};
use serde::{Deserialize, Serialize};
use std::time::Duration;

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
        self.policy().backoff.nominal(n)
    }

    /// As the retry foundation's policy: this backoff with ±20 % jitter, until the deadline.
    pub fn policy(&self) -> retry::Policy {
        retry::Policy {
            backoff: retry::Backoff {
                first: self.initial_delay,
                factor: self.factor,
                max: self.max_delay,
                jitter: retry::Jitter::Around(0.2),
            },
            limit: retry::Limit::Deadline(self.deadline),
        }
    }
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
            self.since.format("%H:%M:%S %:z"),
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
/// and ±20 % jitter between attempts (never past the deadline), calling `on_wait` before each
/// wait. A busy attempt is `Attempt::Retry(holder)`: by what or whom it is held.
pub fn retry<T, E>(
    policy: &RetryPolicy,
    what: &str,
    cancel: &CancelToken,
    on_wait: &mut dyn FnMut(&Waiting),
    mut attempt: impl FnMut() -> Attempt<T, E, String>,
) -> Result<T, RetryError<E>> {
    let since = Local::now();
    let report = |holder: &String, w: &retry::Wait| {
        on_wait(&Waiting {
            what: what.to_string(),
            holder: holder.clone(),
            since,
            attempt: w.attempts,
            next_delay: w.delay,
            deadline_in: policy.deadline.saturating_sub(w.elapsed),
        })
    };
    retry::run(&policy.policy(), Some(cancel), report, |_| attempt()).map_err(|g| match g {
        GaveUp::Failed { error, .. } => RetryError::Failed(error),
        GaveUp::Exhausted {
            last,
            attempts,
            waited,
        } => RetryError::Deadline {
            what: what.to_string(),
            holder: last,
            waited,
            attempts,
            deadline: policy.deadline,
        },
        GaveUp::Cancelled { .. } => RetryError::Cancelled(what.to_string()),
    })
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
                    Attempt::Retry("PID 7".into())
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
            || Attempt::Retry("an exclusive lock".into()),
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
                Attempt::Fail("not a database".into())
            });
        assert!(matches!(r, Err(RetryError::Failed(_))));
        assert_eq!(calls, 1);
    }
}
