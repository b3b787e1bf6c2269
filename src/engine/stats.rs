//! Sizes and counts of snapshots and of the repository.
