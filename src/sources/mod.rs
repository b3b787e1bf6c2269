//! Consistent sources beyond plain files: live SQLite databases, command output, locked files, hooks.

pub mod retry;
