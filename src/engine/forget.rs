//! Retention: which snapshots a keep policy keeps, and why.
