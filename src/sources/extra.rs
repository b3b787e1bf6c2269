//! Content a snapshot gets that does not come from walking a path: a staged copy of a database, a command's output.

use std::io::Read;
use std::path::PathBuf;

/// A stream stored as a file (a command's standard output, say).
pub trait StreamSource: Send {
    fn reader(&mut self) -> &mut dyn Read;
    /// Called after the end of the stream; an error fails the source (e.g. the command's exit
    /// status and the tail of its standard error).
    fn finish(&mut self) -> std::result::Result<(), String>;
}

/// Where the content of an extra file comes from.
pub enum ExtraContent {
    /// A local file's content (e.g. a consistent copy of a database in a staging folder); the
    /// node gets the metadata of `meta_from` (the original file) when given.
    File {
        path: PathBuf,
        meta_from: Option<PathBuf>,
    },
    /// A stream read to its end, stored with mode 0600 and the time of the backup.
    Stream(Box<dyn StreamSource>),
}

/// Content stored in the snapshot at `snapshot_path` that does not come from walking a path.
/// When the path also exists on disk inside a backed-up folder, the extra replaces it.
pub struct ExtraFile {
    /// Absolute path in the snapshot.
    pub snapshot_path: PathBuf,
    pub content: ExtraContent,
    /// What to call it in messages ("SQLite database /srv/app.db").
    pub describe: String,
    /// If it cannot be read: true fails the backup (no snapshot), false makes the snapshot
    /// partial.
    pub required: bool,
}
