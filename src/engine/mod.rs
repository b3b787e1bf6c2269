//! Operations on a repository: backup, restore, check, forget, prune, diff, stats, mount.
//!
//! The engine knows nothing of the command line, IPC or signals: callers pass a [`Progress`](crate::cancel::Progress)
//! sink and a [`CancelToken`](crate::cancel::CancelToken), and hold the repository lock the operation needs (shared for
//! backup, restore, check; exclusive for forget and prune).

pub mod backup;
pub mod check;
pub mod chunker;
pub mod copy;
pub mod diff;
pub mod dump;
pub mod edit;
pub mod exclude;
pub mod find;
pub mod forget;
pub mod measure;
pub mod mount;
pub(crate) mod packer;
pub mod prune;
pub mod recover;
pub mod repair;
pub mod restore;
pub mod resume;
pub mod rewrite;
pub mod stats;
pub mod tags;
pub mod targets;
pub mod walk;
