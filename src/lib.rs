//! backupd: repository format, backup engine, scheduler, daemon and control tool, shared by `backupd` and `backupctl`.

pub mod config;
pub mod ctl;
pub mod daemon;
pub mod duration;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod health;
pub mod job;
pub mod logfiles;
pub mod metrics;
pub mod notifications;
pub mod password;
pub mod paths;
pub mod protocol;
pub mod repo;
pub mod schedule;
pub mod service;
pub mod sources;
pub mod state;
pub mod sysinfo;
pub mod verify;

pub use error::{Error, Result};
