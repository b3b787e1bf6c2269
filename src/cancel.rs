//! How long operations report progress ([`Progress`]) and are asked to stop ([`CancelToken`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Receives progress of long operations. All methods have empty defaults.
pub trait Progress: Send + Sync {
    /// A new phase begins; `total` in the phase's unit (bytes or items) when known.
    fn phase(&self, _name: &str, _total: Option<u64>) {}
    /// `n` more units of the current phase are done.
    fn inc(&self, _n: u64) {}
    /// A line worth showing (what is being worked on, a warning): `warning: ...` and
    /// `error: ...` start that way. The sink shows it and, in the daemon, logs it; the caller
    /// does not log it too.
    fn note(&self, _msg: &str) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Asks a running operation to stop at its next safe point.
#[derive(Clone, Default, Debug)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst)
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// The flag itself, for signal handlers to set.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
    /// `Err(Interrupted)` once cancelled.
    pub fn check(&self) -> crate::Result<()> {
        if self.is_cancelled() {
            Err(crate::Error::Interrupted)
        } else {
            Ok(())
        }
    }
}
