//! Differences between two snapshots.
