//! backupd: repository format, backup engine and control tool, shared by `backupd` and `backupctl`.

pub mod config;
pub mod ctl;
pub mod daemon;
pub mod duration;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod job;
pub mod logfiles;
pub mod password;
pub mod repo;
pub mod sources;
pub mod sysinfo;

pub use error::{Error, Result};
