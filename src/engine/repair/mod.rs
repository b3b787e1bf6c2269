//! Repairs (restic's `repair`): `index` rebuilds the index from the packs; `packs` salvages the readable blobs of damaged packs; `snapshots` rewrites snapshots whose trees reference data the repository no longer has.

mod index;
mod packs;
mod snapshots;

pub use index::{plan, repair_index, Plan, RepairIndexReport};
pub use packs::{repair_packs, PackRepair, RepairPacksReport};
pub use snapshots::{repair_snapshots, RepairSnapshotsReport, RepairedSnapshot};
