//! Sleeping until a wall-clock instant, and noticing clock jumps and system sleep, without periodic wakeups.
//!
//! The daemon schedules jobs on the wall clock ("every day at 02:00"), but a plain timer
//! measures elapsed time: it does not notice when the clock is set, and on most systems
//! it does not count the time a laptop spends suspended. [`WallSleeper`] sleeps until a
//! wall-clock instant and tells the caller why it woke up ([`WakeCause`]), so that the
//! caller recomputes its schedule after a clock change or a resume.
//!
//! On Linux it uses two timerfds and no periodic wakeups at all:
//! - a timer on `CLOCK_BOOTTIME`, armed *relative* with `due - now`. BOOTTIME counts the
//!   time spent in suspend, so a machine that sleeps through a due time fires the timer
//!   right after resume. Being relative, it also works under libfaketime, which fakes
//!   `clock_gettime` but not the kernel's timer expiry.
//! - a timer on `CLOCK_REALTIME`, armed absolute at the end of time with
//!   `TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET`. It never expires, but its read fails
//!   with `ECANCELED` as soon as someone sets the clock (and on resume): that is the
//!   clock-jump signal.
//!
//! After any wake-up the clocks are compared with the last reading ([`classify`]).
//! Other systems use a fallback with one wakeup a minute (see [`WallSleeper::sleep_until`]).

use chrono::{DateTime, TimeDelta, Utc};

/// A wall-clock jump or a sleep shorter than this is ordinary clock noise (NTP steps,
/// scheduling delays) and is not reported.
pub const JUMP_THRESHOLD: TimeDelta = TimeDelta::seconds(30);

/// Why [`WallSleeper::sleep_until`] returned, or what [`WallSleeper::check`] noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeCause {
    /// The due instant was reached on the wall clock.
    Due,
    /// The wall clock was set by more than 30 s (positive: forward). Recompute due times.
    ClockChanged { by_seconds: i64 },
    /// The system was suspended for about this long. Recompute due times (some may have
    /// been missed while asleep).
    Resumed { slept_seconds: i64 },
}

/// Classifies the change of the clocks since the last reading: how far the wall clock
/// (`wall_delta`), `CLOCK_MONOTONIC` (`mono_delta`, stops in suspend) and `CLOCK_BOOTTIME`
/// (`boot_delta`, counts suspend) advanced.
///
/// - The wall clock moved away from BOOTTIME by more than 30 s, either way: someone set
///   the clock, [`WakeCause::ClockChanged`] by that difference.
/// - Otherwise, the wall clock advanced more than MONOTONIC by more than 30 s (and agrees
///   with BOOTTIME): the system slept, [`WakeCause::Resumed`].
/// - Otherwise `None`.
pub fn classify(
    wall_delta: TimeDelta,
    mono_delta: TimeDelta,
    boot_delta: TimeDelta,
) -> Option<WakeCause> {
    let jump = wall_delta - boot_delta;
    if jump.abs() > JUMP_THRESHOLD {
        return Some(WakeCause::ClockChanged {
            by_seconds: jump.num_seconds(),
        });
    }
    let slept = wall_delta - mono_delta;
    if slept > JUMP_THRESHOLD {
        return Some(WakeCause::Resumed {
            slept_seconds: slept.num_seconds(),
        });
    }
    None
}

/// One reading of the clocks.
#[derive(Debug, Clone, Copy)]
struct Reading {
    wall: DateTime<Utc>,
    #[cfg(target_os = "linux")]
    mono: Option<TimeDelta>,
    #[cfg(target_os = "linux")]
    boot: Option<TimeDelta>,
    #[cfg(not(target_os = "linux"))]
    mono: std::time::Instant,
}

impl Reading {
    fn now() -> Reading {
        Reading {
            // chrono, not the raw clock, so that libfaketime applies like everywhere else.
            wall: Utc::now(),
            #[cfg(target_os = "linux")]
            mono: linux::clock(nix::time::ClockId::CLOCK_MONOTONIC).ok(),
            #[cfg(target_os = "linux")]
            boot: linux::clock(nix::time::ClockId::CLOCK_BOOTTIME).ok(),
            #[cfg(not(target_os = "linux"))]
            mono: std::time::Instant::now(),
        }
    }

    /// The (wall, monotonic, boot) deltas from `earlier` to `self`.
    fn deltas_since(&self, earlier: &Reading) -> (TimeDelta, TimeDelta, TimeDelta) {
        let wall = self.wall - earlier.wall;
        #[cfg(target_os = "linux")]
        {
            // A clock that could not be read (never seen in practice: `new` checked both)
            // counts as agreeing with the next one, so it reports nothing by itself.
            let diff = |a: Option<TimeDelta>, b: Option<TimeDelta>| a.zip(b).map(|(a, b)| a - b);
            let mono = diff(self.mono, earlier.mono).unwrap_or(wall);
            let boot = diff(self.boot, earlier.boot).unwrap_or(mono);
            (wall, mono, boot)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let mono = TimeDelta::from_std(self.mono.saturating_duration_since(earlier.mono))
                .unwrap_or(TimeDelta::MAX);
            // No portable clock counts suspend: a wall clock ahead of the monotonic one is
            // taken as sleep (the common cause), one behind it as a clock change.
            let boot = wall.max(mono);
            (wall, mono, boot)
        }
    }
}

/// Sleeps until wall-clock instants and notices clock changes and system sleep; see the
/// module documentation. One per daemon; keeps the last reading of the clocks.
#[derive(Debug)]
pub struct WallSleeper {
    last: Reading,
    #[cfg(target_os = "linux")]
    timers: linux::Timers,
}

impl WallSleeper {
    /// Sets up the timers. On Linux this must run inside a Tokio runtime with IO enabled
    /// (the timers are registered with its reactor); outside a runtime it returns an error.
    pub fn new() -> std::io::Result<WallSleeper> {
        #[cfg(target_os = "linux")]
        {
            let timers = linux::Timers::new()?;
            Ok(WallSleeper {
                last: Reading::now(),
                timers,
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            Ok(WallSleeper {
                last: Reading::now(),
            })
        }
    }

    /// Compares the clocks now against the last reading and makes this reading the new
    /// baseline. `sleep_until` calls it after every wake-up; the daemon also calls it after
    /// its other wake-ups (a finished job, a control request) to notice a clock change or
    /// a suspend that happened meanwhile.
    pub fn check(&mut self) -> Option<WakeCause> {
        let now = Reading::now();
        let (wall, mono, boot) = now.deltas_since(&self.last);
        self.last = now;
        classify(wall, mono, boot)
    }

    /// Sleeps until `due` on the wall clock (returns at once if it is past). Cancel-safe:
    /// usable as a branch of `tokio::select!` and called again afterwards.
    ///
    /// Returns early with [`WakeCause::ClockChanged`] when the wall clock is set (a jump
    /// either way of more than 30 s), and with [`WakeCause::Resumed`] when the system
    /// slept (the wall clock advanced more than the monotonic clock by over 30 s), also
    /// when it slept through `due`: the caller recomputes and calls again, and a due
    /// instant in the past then returns [`WakeCause::Due`] at once. A clock change or a
    /// sleep since the last reading (for example while a job ran) is reported at once.
    ///
    /// On Linux there are no periodic wakeups (timerfds on `CLOCK_BOOTTIME` and
    /// `CLOCK_REALTIME`). Elsewhere this is the fallback with one wakeup a minute: it
    /// sleeps at most 60 s at a time with `tokio::time::sleep`, then compares the clocks.
    pub async fn sleep_until(&mut self, due: DateTime<Utc>) -> WakeCause {
        loop {
            if let Some(cause) = self.check() {
                return cause;
            }
            let remaining = due - Utc::now();
            if remaining <= TimeDelta::zero() {
                return WakeCause::Due;
            }
            #[cfg(target_os = "linux")]
            {
                if let Err(e) = self.timers.wait(remaining).await {
                    // Not expected (the timers were set up in `new`); keep the schedule
                    // going with a plain timer rather than failing the daemon.
                    tracing::warn!(
                        error = %e,
                        "the wall-clock timer failed; using a plain timer with one wakeup a minute"
                    );
                    fallback_sleep(remaining).await;
                }
            }
            #[cfg(not(target_os = "linux"))]
            fallback_sleep(remaining).await;
        }
    }
}

/// Sleeps for `remaining`, at most 60 s (the fallback's one wakeup a minute).
async fn fallback_sleep(remaining: TimeDelta) {
    let step = remaining
        .min(TimeDelta::seconds(60))
        .to_std()
        .unwrap_or(std::time::Duration::from_millis(1));
    tokio::time::sleep(step).await;
}

#[cfg(target_os = "linux")]
mod linux {
    //! The two timerfds behind [`super::WallSleeper`] on Linux.

    use chrono::TimeDelta;
    use nix::errno::Errno;
    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{
        ClockId as TimerClock, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags,
    };
    use nix::time::ClockId;
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// Reads a clock as the time since its epoch.
    pub(super) fn clock(id: ClockId) -> nix::Result<TimeDelta> {
        let t = nix::time::clock_gettime(id)?;
        Ok(TimeDelta::seconds(t.tv_sec() as i64) + TimeDelta::nanoseconds(t.tv_nsec() as i64))
    }

    /// A timerfd that tokio's reactor can watch.
    #[derive(Debug)]
    struct Fd(TimerFd);

    impl AsRawFd for Fd {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }

    /// What a read of a timerfd said.
    enum Fired {
        Expired,
        /// The realtime clock was set (`ECANCELED`).
        ClockSet,
    }

    fn read(fd: &Fd) -> io::Result<Fired> {
        let mut buf = [0u8; 8];
        loop {
            match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                Ok(_) => return Ok(Fired::Expired),
                Err(Errno::ECANCELED) => return Ok(Fired::ClockSet),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    }

    #[derive(Debug)]
    pub(super) struct Timers {
        /// Relative one-shot timer on CLOCK_BOOTTIME for the due instant.
        boot: AsyncFd<Fd>,
        /// Never-expiring absolute timer on CLOCK_REALTIME, cancelled when the clock is set.
        cancel: AsyncFd<Fd>,
    }

    fn os_error(what: &str, e: Errno) -> io::Error {
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("{what}: {e}"))
    }

    impl Timers {
        pub(super) fn new() -> io::Result<Timers> {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(io::Error::other(
                    "the wall-clock timer must be set up inside a Tokio runtime (WallSleeper::new was called outside one)",
                ));
            }
            for (id, name) in [
                (ClockId::CLOCK_MONOTONIC, "CLOCK_MONOTONIC"),
                (ClockId::CLOCK_BOOTTIME, "CLOCK_BOOTTIME"),
            ] {
                clock(id).map_err(|e| {
                    os_error(
                        &format!("could not read {name} (needs Linux 2.6.39 or later)"),
                        e,
                    )
                })?;
            }
            let flags = TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC;
            let boot = TimerFd::new(TimerClock::CLOCK_BOOTTIME, flags)
                .map_err(|e| os_error("could not create a timerfd on CLOCK_BOOTTIME", e))?;
            let cancel = TimerFd::new(TimerClock::CLOCK_REALTIME, flags)
                .map_err(|e| os_error("could not create a timerfd on CLOCK_REALTIME", e))?;
            arm_cancel(&cancel)?;
            Ok(Timers {
                boot: register(boot)?,
                cancel: register(cancel)?,
            })
        }

        /// Waits until the boot timer expires after `remaining`, or the clock is set.
        /// Cancel-safe: all state is in the kernel, and the next call re-arms the timer.
        pub(super) async fn wait(&self, remaining: TimeDelta) -> io::Result<()> {
            // Zero would disarm the timer: at least one microsecond.
            let remaining = remaining.max(TimeDelta::microseconds(1));
            let spec = TimeSpec::new(
                remaining.num_seconds() as libc::time_t,
                remaining.subsec_nanos() as libc::c_long,
            );
            // Re-arming also discards an expiry that nobody read (a dropped earlier wait).
            self.boot
                .get_ref()
                .0
                .set(Expiration::OneShot(spec), TimerSetTimeFlags::empty())
                .map_err(|e| os_error("could not arm the CLOCK_BOOTTIME timerfd", e))?;
            loop {
                tokio::select! {
                    guard = self.boot.readable() => {
                        match guard?.try_io(|fd| read(fd.get_ref())) {
                            Ok(Ok(_)) => return Ok(()),
                            Ok(Err(e)) => return Err(e),
                            Err(_would_block) => continue,
                        }
                    }
                    guard = self.cancel.readable() => {
                        match guard?.try_io(|fd| read(fd.get_ref())) {
                            Ok(Ok(_)) => {
                                // The clock was set (or, impossibly, the end of time came):
                                // arm again for the next change, and let the caller compare.
                                arm_cancel(&self.cancel.get_ref().0)?;
                                return Ok(());
                            }
                            Ok(Err(e)) => return Err(e),
                            Err(_would_block) => continue,
                        }
                    }
                }
            }
        }
    }

    fn register(fd: TimerFd) -> io::Result<AsyncFd<Fd>> {
        // SAFETY: `Fd` owns the descriptor (an `OwnedFd` inside `TimerFd`), keeps it open
        // until the `AsyncFd` drops it, and always returns that same descriptor.
        Ok(unsafe { AsyncFd::register_with_interest(Fd(fd), Interest::READABLE) }?)
    }

    /// Arms the realtime timer absolute far in the future (2200-01-01), with cancel-on-set,
    /// so that it only ever becomes readable when the clock is set. Not at the end of time:
    /// libfaketime shifts absolute timer expiries by its offset, and time_t::MAX overflows.
    fn arm_cancel(fd: &TimerFd) -> io::Result<()> {
        let never = Expiration::OneShot(TimeSpec::new(7_258_118_400, 0));
        let flags =
            TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET;
        loop {
            match fd.set(never, flags) {
                Ok(()) => return Ok(()),
                // A clock change not yet read: consume it and arm again.
                Err(Errno::ECANCELED) => {
                    let mut buf = [0u8; 8];
                    let _ = nix::unistd::read(fd.as_fd().as_raw_fd(), &mut buf);
                }
                Err(e) => {
                    return Err(os_error(
                        "could not arm the CLOCK_REALTIME cancel-on-set timerfd",
                        e,
                    ))
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[tokio::test]
        async fn the_cancel_timer_does_not_fire_by_itself() {
            let timers = Timers::new().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
            // Readable only on a clock change: a read now finds nothing.
            let fd = timers.cancel.get_ref();
            let mut buf = [0u8; 8];
            assert_eq!(
                nix::unistd::read(fd.as_raw_fd(), &mut buf),
                Err(Errno::EAGAIN)
            );
        }

        fn thread_cpu_time() -> std::time::Duration {
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            assert_eq!(
                unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) },
                0
            );
            let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
            std::time::Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
        }

        #[tokio::test]
        async fn sleeping_does_not_spin() {
            // A timer that fired again and again (say, a cancel timer that is always
            // readable) would burn the CPU while "sleeping".
            let mut sleeper = super::super::WallSleeper::new().unwrap();
            let before = thread_cpu_time();
            let due = chrono::Utc::now() + TimeDelta::milliseconds(500);
            assert_eq!(sleeper.sleep_until(due).await, super::super::WakeCause::Due);
            let used = thread_cpu_time() - before;
            assert!(
                used < std::time::Duration::from_millis(100),
                "used {used:?} of CPU in 500 ms"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn s(n: i64) -> TimeDelta {
        TimeDelta::seconds(n)
    }

    #[test]
    fn classify_ordinary_progress_reports_nothing() {
        assert_eq!(classify(s(0), s(0), s(0)), None);
        assert_eq!(classify(s(3600), s(3600), s(3600)), None);
        // Small NTP steps either way, and a short suspend, are noise.
        assert_eq!(classify(s(3610), s(3600), s(3600)), None);
        assert_eq!(classify(s(3590), s(3600), s(3600)), None);
        assert_eq!(classify(s(20), s(0), s(20)), None);
    }

    #[test]
    fn classify_clock_set_either_way() {
        assert_eq!(
            classify(s(3700), s(100), s(100)),
            Some(WakeCause::ClockChanged { by_seconds: 3600 })
        );
        assert_eq!(
            classify(s(-3500), s(100), s(100)),
            Some(WakeCause::ClockChanged { by_seconds: -3600 })
        );
        assert_eq!(
            classify(s(131), s(100), s(100)),
            Some(WakeCause::ClockChanged { by_seconds: 31 })
        );
        // Exactly 30 s is still noise.
        assert_eq!(classify(s(130), s(100), s(100)), None);
    }

    #[test]
    fn classify_suspend() {
        // Slept 2 h: wall and BOOTTIME agree, MONOTONIC stood still.
        assert_eq!(
            classify(s(7210), s(10), s(7210)),
            Some(WakeCause::Resumed {
                slept_seconds: 7200
            })
        );
        // Slept and then the clock was set back an hour on resume: that is a clock change.
        assert_eq!(
            classify(s(3610), s(10), s(7210)),
            Some(WakeCause::ClockChanged { by_seconds: -3600 })
        );
    }

    #[tokio::test]
    async fn sleeps_until_a_wall_clock_instant() {
        let mut sleeper = WallSleeper::new().unwrap();
        let start = Instant::now();
        let due = Utc::now() + TimeDelta::milliseconds(300);
        assert_eq!(sleeper.sleep_until(due).await, WakeCause::Due);
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "woke after {:?}",
            start.elapsed()
        );
        assert!(Utc::now() >= due);
    }

    #[tokio::test]
    async fn a_past_instant_returns_at_once() {
        let mut sleeper = WallSleeper::new().unwrap();
        let due = Utc::now() - TimeDelta::hours(1);
        assert_eq!(sleeper.sleep_until(due).await, WakeCause::Due);
    }

    #[tokio::test]
    async fn check_without_a_jump_reports_nothing() {
        let mut sleeper = WallSleeper::new().unwrap();
        assert_eq!(sleeper.check(), None);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(sleeper.check(), None);
    }

    #[tokio::test]
    async fn a_dropped_sleep_can_be_started_again() {
        let mut sleeper = WallSleeper::new().unwrap();
        let far = Utc::now() + TimeDelta::hours(1);
        tokio::select! {
            cause = sleeper.sleep_until(far) => panic!("woke for {cause:?} an hour early"),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        let start = Instant::now();
        let due = Utc::now() + TimeDelta::milliseconds(200);
        assert_eq!(sleeper.sleep_until(due).await, WakeCause::Due);
        assert!(start.elapsed() >= Duration::from_millis(200));
        // And once more after the timer expired unread: the sleep is dropped before it
        // is due, and its timer expires while nobody waits.
        tokio::select! {
            biased;
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            _ = sleeper.sleep_until(Utc::now() + TimeDelta::milliseconds(30)) => {}
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
        let due = Utc::now() + TimeDelta::milliseconds(100);
        let start = Instant::now();
        assert_eq!(sleeper.sleep_until(due).await, WakeCause::Due);
        assert!(start.elapsed() >= Duration::from_millis(100));
    }
}
