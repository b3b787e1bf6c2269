//! A repository's verification drills (`[repositories.NAME.verify]`), as read from the configuration.

use crate::schedule::Schedule;
use serde::{Deserialize, Deserializer, Serialize};
use std::time::Duration;

/// The default read-data cycle: every pack re-read at least once a month.
pub const DEFAULT_CYCLE: Duration = Duration::from_secs(30 * 86_400);

/// `[repositories.NAME.verify]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifyConfig {
    /// Cron schedule of the structure check.
    pub check: Option<toml::Spanned<String>>,
    /// Cron schedule of the read-data runs, each reading its share of the cycle.
    pub read_data: Option<toml::Spanned<String>>,
    /// Every pack is re-read at least once per this period (default 30 days).
    #[serde(deserialize_with = "de_duration")]
    pub read_data_cycle: Duration,
    /// Cron schedule of the restore drill.
    pub restore_drill: Option<toml::Spanned<String>>,
    /// How many files a restore drill restores (default 10).
    pub restore_drill_files: usize,
    /// The IANA zone the schedules are read in (default: the local zone).
    pub timezone: Option<toml::Spanned<String>>,
    /// The configured drills' schedules read in `timezone`, in [`DrillKind::ALL`]'s order,
    /// parsed once when the file is checked ([`crate::config::Config::parse`]).
    #[serde(skip)]
    pub parsed_schedules: Vec<(DrillKind, Schedule)>,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            check: None,
            read_data: None,
            read_data_cycle: DEFAULT_CYCLE,
            restore_drill: None,
            restore_drill_files: 10,
            timezone: None,
            parsed_schedules: Vec::new(),
        }
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    crate::duration::parse_duration(&s).map_err(serde::de::Error::custom)
}

/// The three drills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillKind {
    Check,
    ReadData,
    RestoreDrill,
}

impl DrillKind {
    pub const ALL: [DrillKind; 3] = [
        DrillKind::Check,
        DrillKind::ReadData,
        DrillKind::RestoreDrill,
    ];

    /// The name in messages, state and metrics: "check", "read-data", "restore-drill".
    pub fn as_str(self) -> &'static str {
        match self {
            DrillKind::Check => "check",
            DrillKind::ReadData => "read-data",
            DrillKind::RestoreDrill => "restore-drill",
        }
    }

    /// The configuration key of its schedule.
    pub fn key(self) -> &'static str {
        match self {
            DrillKind::Check => "check",
            DrillKind::ReadData => "read_data",
            DrillKind::RestoreDrill => "restore_drill",
        }
    }
}

impl VerifyConfig {
    /// The schedule expression of a drill, if configured.
    pub fn expr(&self, kind: DrillKind) -> Option<&toml::Spanned<String>> {
        match kind {
            DrillKind::Check => self.check.as_ref(),
            DrillKind::ReadData => self.read_data.as_ref(),
            DrillKind::RestoreDrill => self.restore_drill.as_ref(),
        }
    }
}
