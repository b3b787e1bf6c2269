//! The daemon: scheduling on the wall clock and its logging (the rest of the daemon merges in here).

pub mod clock;
pub mod logging;
