//! Restoring a snapshot (or a path in it) into a directory, atomically and verified.
