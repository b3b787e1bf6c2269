//! Checking a repository: structure, and with read-data every blob re-hashed.
