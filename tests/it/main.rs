//! The integration tests, one test binary (`cargo test --test it`): one module per area, run with the real `backupctl` and `backupd` binaries, sharing the helpers in `support`.

mod support;

mod backup;
mod check;
mod cli;
mod closed_output;
mod command_hooks;
mod daemon;
mod damage;
mod diff_stats;
mod example_config;
mod forget_prune;
mod garage_cluster;
mod gdrive;
mod hostile;
mod json_output;
mod layers;
mod monitor;
mod notifications;
mod remote;
mod restore;
mod run_due;
mod run_records;
mod s3_https;
mod service_files;
mod sftp;
mod sqlite;
mod systemd_host;
mod text_output;
