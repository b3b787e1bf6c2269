//! Retrying: the one backoff schedule (growth, cap, jitter), the one limit (retries or a deadline) and the one loop that waits between attempts.
//!
//! A caller describes each attempt's outcome as an [`Attempt`] (done, worth another try, final)
//! and hands [`run`] a [`Policy`]; `run` waits between attempts (interruptibly, when given a
//! [`CancelToken`]), tells the caller before each wait (for the log, or a `Waiting` report), and
//! ends with the value or a [`GaveUp`] saying why and after how many attempts.
//!
//! The wait before retry `n` (1 for the first) is `first × factor^(n-1)`, capped at `max`, then
//! scaled by the jitter (so one wait may exceed `max` by the jitter's fraction); under a deadline
//! a wait is cut so that it never ends past the deadline, and the attempt after it is the last.
//!
//! The callers keep the numbers they always had:
//!
//! | caller | first | factor | max | jitter | limit |
//! |---|---|---|---|---|---|
//! | `repo::http` (S3, REST) | 200 ms | 2 | 5 s | ±50 % | 5 retries (`Http::retries`) |
//! | `repo::sftp` | 500 ms | 2 | 32 s | +0–50 % | 3 retries (`RECONNECT_ATTEMPTS`) |
//! | `repo::gdrive` | 500 ms | 2 | 32 s | +0–50 % | 8 attempts (`GDriveOptions`) |
//! | `monitor::notifications` | 1 s | 2 | 60 s | +0–25 % | the channel's attempts |
//! | `sources::retry` (busy sources) | configured (1 s) | configured (2) | configured (60 s) | ±20 % | a deadline (10 min, `--sqlite-wait`, the locked-file wait) |
//!
//! What is worth another try is each caller's own judgement, not this module's: `repo::http`
//! retries transport failures and the statuses 5xx, 429 and 408 (`transient_status`); the
//! notification webhook classifies its failures itself (5xx and 429 but not 408, and a TLS
//! failure inside an I/O error is retried like a connection failure).

use crate::cancel::CancelToken;
use std::time::{Duration, Instant};

/// How the wait grows from one retry to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub first: Duration,
    /// Each wait is this many times the previous one (below 1, or NaN, counts as 1).
    pub factor: f64,
    /// No wait is longer than this, before the jitter.
    pub max: Duration,
    /// How much each wait is varied at random.
    pub jitter: Jitter,
}

/// A random variation of each wait, so that clients that failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// Exactly the schedule.
    None,
    /// Scaled by a factor in [1 − f, 1 + f] (f = 0.5: ±50 %).
    Around(f64),
    /// Lengthened by up to the fraction f (f = 0.5: +0–50 %).
    Above(f64),
}

/// When to stop trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// At most this many attempts after the first.
    Retries(u32),
    /// No new wait once this long has passed since the first attempt began.
    Deadline(Duration),
}

/// A backoff schedule and a limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub backoff: Backoff,
    pub limit: Limit,
}

/// The outcome of one attempt. A retryable failure may carry another type (`R`) than a final
/// one (`E`), e.g. who holds a lock.
#[derive(Debug)]
pub enum Attempt<T, E, R = E> {
    Done(T),
    /// Failed in a way that another try may mend.
    Retry(R),
    /// Failed in a way that waiting will not fix.
    Fail(E),
}

/// What [`run`] tells its caller before each wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Attempts made so far (1 before the first wait).
    pub attempts: u32,
    /// The coming wait (with jitter, cut at the deadline).
    pub delay: Duration,
    /// Time since the first attempt began.
    pub elapsed: Duration,
}

/// Why [`run`] ended without a value.
#[derive(Debug, thiserror::Error)]
pub enum GaveUp<E, R = E> {
    /// An attempt failed for good (the `attempts`-th).
    #[error("{error}")]
    Failed { error: E, attempts: u32 },
    /// The limit was reached; `last` is the last attempt's failure.
    #[error("{last} (after {attempts} attempts)")]
    Exhausted {
        last: R,
        attempts: u32,
        waited: Duration,
    },
    /// The cancel token was set during a wait.
    #[error("interrupted while waiting to try again (after {attempts} attempts): {last}")]
    Cancelled {
        last: R,
        attempts: u32,
        waited: Duration,
    },
}

impl Jitter {
    /// The factor a wait is scaled by, for a random `draw` in [0, 1); never negative.
    pub fn factor(self, draw: f64) -> f64 {
        let draw = if draw.is_nan() {
            0.0
        } else {
            draw.clamp(0.0, 1.0)
        };
        let f = match self {
            Jitter::None => 1.0,
            Jitter::Around(f) => 1.0 - f + 2.0 * f * draw,
            Jitter::Above(f) => 1.0 + f * draw,
        };
        if f.is_nan() {
            1.0
        } else {
            f.max(0.0)
        }
    }
}

impl Backoff {
    /// The wait before retry `retry` (1 for the first; 0 counts as 1), without jitter:
    /// `first × factor^(retry-1)`, at most `max`. The exponent stops growing at 64, and an
    /// overflowing product is `max`.
    pub fn nominal(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(64) as i32;
        let secs = self.first.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The wait before retry `retry`, with the jitter for a random `draw` in [0, 1).
    pub fn delay(&self, retry: u32, draw: f64) -> Duration {
        let nominal = self.nominal(retry);
        if self.jitter == Jitter::None {
            return nominal;
        }
        let secs = nominal.as_secs_f64() * self.jitter.factor(draw);
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

impl Policy {
    /// The wait after `attempts` attempts that began `elapsed` ago, for a random `draw` in
    /// [0, 1); `None` when the limit is reached. A wait never ends past a deadline.
    pub fn next_wait(&self, attempts: u32, elapsed: Duration, draw: f64) -> Option<Duration> {
        let delay = self.backoff.delay(attempts, draw);
        match self.limit {
            Limit::Retries(r) if attempts > r => None,
            Limit::Retries(_) => Some(delay),
            Limit::Deadline(d) if elapsed >= d => None,
            Limit::Deadline(d) => Some(delay.min(d - elapsed)),
        }
    }
}

impl<E> GaveUp<E, E> {
    /// The failure it ended on, whatever the reason.
    pub fn into_error(self) -> E {
        match self {
            GaveUp::Failed { error, .. } => error,
            GaveUp::Exhausted { last, .. } | GaveUp::Cancelled { last, .. } => last,
        }
    }
}

impl<E, R> GaveUp<E, R> {
    /// How many attempts were made.
    pub fn attempts(&self) -> u32 {
        match self {
            GaveUp::Failed { attempts, .. }
            | GaveUp::Exhausted { attempts, .. }
            | GaveUp::Cancelled { attempts, .. } => *attempts,
        }
    }
}

/// Runs `attempt` (given the number of attempts made before it, 0 first) until it is done,
/// fails for good, or `policy`'s limit is reached; between attempts calls `on_wait` with the
/// failure and the coming wait, then waits. A set `cancel` ends a wait early (it is looked at
/// every 100 ms while waiting, not before the first attempt).
pub fn run<T, E, R>(
    policy: &Policy,
    cancel: Option<&CancelToken>,
    mut on_wait: impl FnMut(&R, &Wait),
    mut attempt: impl FnMut(u32) -> Attempt<T, E, R>,
) -> Result<T, GaveUp<E, R>> {
    let start = Instant::now();
    let mut made = 0u32;
    loop {
        let outcome = attempt(made);
        made = made.saturating_add(1);
        let last = match outcome {
            Attempt::Done(v) => return Ok(v),
            Attempt::Fail(error) => {
                return Err(GaveUp::Failed {
                    error,
                    attempts: made,
                })
            }
            Attempt::Retry(last) => last,
        };
        let elapsed = start.elapsed();
        let Some(delay) = policy.next_wait(made, elapsed, rand::random()) else {
            return Err(GaveUp::Exhausted {
                last,
                attempts: made,
                waited: elapsed,
            });
        };
        let wait = Wait {
            attempts: made,
            delay,
            elapsed,
        };
        on_wait(&last, &wait);
        if !sleep(delay, cancel) {
            return Err(GaveUp::Cancelled {
                last,
                attempts: made,
                waited: start.elapsed(),
            });
        }
    }
}

/// Sleeps `delay`, in steps of at most 100 ms while `cancel` may end it; false when cancelled.
fn sleep(delay: Duration, cancel: Option<&CancelToken>) -> bool {
    let Some(cancel) = cancel else {
        std::thread::sleep(delay);
        return true;
    };
    let until = Instant::now().checked_add(delay);
    loop {
        let now = Instant::now();
        let left = match until {
            Some(u) if now >= u => return true,
            Some(u) => u - now,
            None => Duration::MAX,
        };
        if cancel.is_cancelled() {
            return false;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doubling(first_ms: u64, max_ms: u64, jitter: Jitter) -> Backoff {
        Backoff {
            first: Duration::from_millis(first_ms),
            factor: 2.0,
            max: Duration::from_millis(max_ms),
            jitter,
        }
    }

    #[test]
    fn waits_grow_and_stop_at_the_cap() {
        let b = doubling(500, 32_000, Jitter::None);
        let ms: Vec<u128> = (1..=8).map(|n| b.nominal(n).as_millis()).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 8000, 16000, 32000, 32000]);
        assert_eq!(b.nominal(0), b.nominal(1));
        assert_eq!(b.delay(3, 0.7), Duration::from_secs(2));
        let flat = Backoff { factor: 0.5, ..b };
        assert_eq!(flat.nominal(5), Duration::from_millis(500));
        let nan = Backoff {
            factor: f64::NAN,
            ..b
        };
        assert_eq!(nan.nominal(5), Duration::from_millis(500));
    }

    #[test]
    fn huge_factors_and_retry_numbers_give_the_cap() {
        for factor in [1e300, f64::INFINITY, f64::MAX] {
            let b = Backoff {
                factor,
                ..doubling(1000, 60_000, Jitter::Around(0.2))
            };
            assert_eq!(b.nominal(2), Duration::from_secs(60));
            assert_eq!(b.nominal(u32::MAX), Duration::from_secs(60));
        }
        let b = doubling(1000, 60_000, Jitter::None);
        assert_eq!(b.nominal(u32::MAX), Duration::from_secs(60));
        let huge = Backoff {
            max: Duration::MAX,
            ..doubling(1000, 0, Jitter::Above(0.5))
        };
        assert_eq!(huge.delay(u32::MAX, 0.99), Duration::MAX);
        assert!(huge.delay(3, 0.0) == Duration::from_secs(4));
    }

    #[test]
    fn jitter_stays_in_its_bounds() {
        let around = doubling(1000, 5000, Jitter::Around(0.5));
        let above = doubling(1000, 5000, Jitter::Above(0.25));
        for i in 0..=100 {
            let draw = i as f64 / 101.0;
            let d = around.delay(10, draw).as_secs_f64();
            assert!((2.5..=7.5).contains(&d), "{d}");
            let d = above.delay(1, draw).as_secs_f64();
            assert!((1.0..=1.25).contains(&d), "{d}");
        }
        assert_eq!(Jitter::Around(0.2).factor(0.0), 0.8);
        assert_eq!(Jitter::Around(3.0).factor(0.0), 0.0);
        assert_eq!(Jitter::Above(0.5).factor(f64::NAN), 1.0);
        assert_eq!(Jitter::Above(0.5).factor(7.0), 1.5);
    }

    #[test]
    fn a_wait_never_runs_past_the_deadline() {
        let p = Policy {
            backoff: doubling(1000, 60_000, Jitter::Around(0.2)),
            limit: Limit::Deadline(Duration::from_secs(10)),
        };
        let s = Duration::from_secs;
        assert_eq!(p.next_wait(1, s(0), 0.5), Some(s(1)));
        assert_eq!(p.next_wait(5, s(9), 0.99), Some(s(1)));
        assert_eq!(
            p.next_wait(50, Duration::from_millis(9990), 0.99),
            Some(Duration::from_millis(10))
        );
        assert_eq!(p.next_wait(2, s(10), 0.0), None);
        assert_eq!(p.next_wait(2, s(11), 0.0), None);
        let r = Policy {
            limit: Limit::Retries(2),
            ..p
        };
        assert!(r.next_wait(2, s(1000), 0.5).is_some());
        assert_eq!(r.next_wait(3, s(0), 0.5), None);
    }

    fn quick(limit: Limit) -> Policy {
        Policy {
            backoff: doubling(1, 2, Jitter::Around(0.5)),
            limit,
        }
    }

    #[test]
    fn run_retries_reports_each_wait_and_counts_attempts() {
        let mut waits = Vec::new();
        let r: Result<u32, GaveUp<&str>> = run(
            &quick(Limit::Retries(5)),
            None,
            |e: &&str, w: &Wait| waits.push((e.to_string(), w.attempts)),
            |n| {
                if n < 3 {
                    Attempt::Retry("busy")
                } else {
                    Attempt::Done(n)
                }
            },
        );
        assert_eq!(r.unwrap(), 3);
        assert_eq!(
            waits,
            [("busy".into(), 1), ("busy".into(), 2), ("busy".into(), 3)]
        );

        let mut calls = 0;
        let e = run(
            &quick(Limit::Retries(3)),
            None,
            |_: &&str, _: &Wait| {},
            |_| {
                calls += 1;
                Attempt::<(), &str>::Retry("503")
            },
        )
        .unwrap_err();
        assert_eq!(calls, 4);
        assert!(matches!(e, GaveUp::Exhausted { attempts: 4, .. }));
        assert_eq!(e.to_string(), "503 (after 4 attempts)");

        let e = run(
            &quick(Limit::Retries(3)),
            None,
            |_: &&str, _: &Wait| {},
            |n| {
                if n == 0 {
                    Attempt::<(), &str>::Retry("503")
                } else {
                    Attempt::Fail("404")
                }
            },
        )
        .unwrap_err();
        assert!(matches!(
            e,
            GaveUp::Failed {
                error: "404",
                attempts: 2
            }
        ));
        assert_eq!(e.into_error(), "404");
    }

    #[test]
    fn run_stops_at_the_deadline_and_on_cancel() {
        let start = Instant::now();
        let e = run(
            &quick(Limit::Deadline(Duration::from_millis(30))),
            None,
            |_: &String, _: &Wait| {},
            |_| Attempt::<(), (), String>::Retry("PID 7".into()),
        )
        .unwrap_err();
        let GaveUp::Exhausted { last, waited, .. } = e else {
            panic!("expected exhausted, got {e:?}")
        };
        assert_eq!(last, "PID 7");
        assert!(waited >= Duration::from_millis(30) && start.elapsed() < Duration::from_secs(5));

        let cancel = CancelToken::new();
        let slow = Policy {
            backoff: doubling(60_000, 60_000, Jitter::None),
            limit: Limit::Retries(9),
        };
        let e = run(
            &slow,
            Some(&cancel),
            |_: &&str, _: &Wait| cancel.cancel(),
            |_| Attempt::<(), &str>::Retry("busy"),
        )
        .unwrap_err();
        assert!(matches!(e, GaveUp::Cancelled { attempts: 1, .. }), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(30));
    }
}
