//! Operations on a repository: backup, restore, check, forget, prune, diff, stats.
//!
//! The engine knows nothing of the command line, IPC or signals: callers pass a [`Progress`](crate::cancel::Progress)
//! sink and a [`CancelToken`](crate::cancel::CancelToken), and hold the repository lock the operation needs (shared for
//! backup, restore, check; exclusive for forget and prune).

pub mod backup;
pub mod check;
pub mod copy;
pub mod diff;
pub mod exclude;
pub mod forget;
pub mod prune;
pub mod restore;
pub mod resume;
pub mod stats;
pub mod targets;
pub mod walk;
