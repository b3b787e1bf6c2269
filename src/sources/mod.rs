//! Consistent sources beyond plain files: live SQLite databases, command output, locked files, hooks.

pub mod command;
pub mod hooks;
pub mod retry;
pub mod sqlite;
