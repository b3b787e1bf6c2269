//! backupd: repository format, backup engine, scheduler, daemon and control tool, shared by `backupd` and `backupctl`.

pub mod cancel;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod duration;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod job;
pub mod logfiles;
pub mod monitor;
pub mod paths;
pub mod process;
pub mod protocol;
pub mod record;
pub mod repo;
pub mod retry;
pub mod schedule;
pub mod service;
pub mod size;
pub mod sources;
pub mod state;
pub mod sysinfo;
pub mod verify;

pub use error::{Error, Result};
