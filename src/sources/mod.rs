//! Consistent sources beyond plain files: live SQLite databases, command output, locked files, hooks; and their set-up for one backup (`prepare`).

pub mod command;
pub mod extra;
pub mod hooks;
pub mod locked;
pub(crate) mod prepare;
pub mod retry;
pub mod sqlite;
