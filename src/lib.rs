//! backupd: repository format, backup engine, scheduler, daemon and control tool, shared by `backupd` and `backupctl`.

pub mod cancel;
pub mod config;
pub mod ctl;
pub mod daemon;
pub(crate) mod duration;
pub mod engine;
pub mod error;
pub(crate) mod fsutil;
pub(crate) mod job;
pub(crate) mod logfiles;
pub mod monitor;
pub(crate) mod paths;
pub(crate) mod process;
pub(crate) mod protocol;
pub(crate) mod record;
pub mod repo;
pub(crate) mod retry;
pub(crate) mod schedule;
pub mod service;
pub(crate) mod size;
pub mod sources;
pub(crate) mod state;
pub(crate) mod sysinfo;
pub mod verify;

pub use error::{Error, Result};
