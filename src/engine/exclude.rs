//! Exclusion rules for backup: glob patterns, exclude files, CACHEDIR.TAG.
