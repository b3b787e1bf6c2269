//! Consistent sources beyond plain files: live SQLite databases, command output, locked files, hooks.

pub mod command;
pub mod extra;
pub mod hooks;
pub mod locked;
pub mod retry;
pub mod sqlite;
