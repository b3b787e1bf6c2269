//! Reading back what a backup just wrote (a job's `verify_after`): the packs it uploaded, all or a sample, each read whole from the storage and checked as `check --read-data` checks a pack.
//!
//! A pack is read from the backend itself, never from the local cache (the backend's `load` of
//! a pack never comes from it), so a write the storage lost or damaged is found before the run
//! is called a success. Which packs a sample reads is a pure function of their ids: pack ids are
//! SHA-256 hashes of the content, so the packs with the smallest ids are a sample the data does
//! not choose.

use super::read::{parallel_map, read_pack};
use crate::cancel::CancelToken;
use crate::error::Result;
use crate::repo::index::IndexPack;
use crate::repo::pack::PackedBlob;
use crate::repo::Repository;
use std::time::Instant;

/// What a job reads back after its backup (`verify_after`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum VerifyAfter {
    /// Nothing (the default).
    #[default]
    Off,
    /// Every pack the run wrote (`"new-data"`).
    NewData,
    /// This percentage of them, at least one (`"sample=N%"`, N from 1 to 100).
    Sample(u8),
}

impl VerifyAfter {
    /// Parses `off`, `new-data` or `sample=N%`.
    pub fn parse(s: &str) -> std::result::Result<VerifyAfter, String> {
        match s.trim() {
            "off" => Ok(VerifyAfter::Off),
            "new-data" => Ok(VerifyAfter::NewData),
            other => {
                let n = other
                    .strip_prefix("sample=")
                    .and_then(|r| r.strip_suffix('%'))
                    .and_then(|n| n.parse::<u8>().ok())
                    .filter(|n| (1..=100).contains(n));
                n.map(VerifyAfter::Sample).ok_or_else(|| {
                    format!("verify_after {other:?} is not \"off\", \"new-data\" or \"sample=N%\" (N from 1 to 100)")
                })
            }
        }
    }
}

/// What reading back found, and what it cost.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ReadBack {
    /// The packs the run wrote, and how many of them were read.
    pub packs_written: usize,
    pub packs_read: usize,
    pub blobs_checked: usize,
    pub bytes_read: u64,
    pub seconds: f64,
    /// One message per damaged pack, naming it.
    pub damaged: Vec<String>,
}

impl ReadBack {
    /// One line for the log: what was read, what it cost, what it found.
    pub fn describe(&self) -> String {
        let verdict = match self.damaged.len() {
            0 => "all read correctly".to_string(),
            n => format!("{n} damaged"),
        };
        format!(
            "verify_after: read back {} of the {} pack(s) written ({} blob(s), {}) in {:.1} s: {verdict}",
            self.packs_read,
            self.packs_written,
            self.blobs_checked,
            crate::size::human_bytes(self.bytes_read),
            self.seconds
        )
    }
}

/// The packs `how` reads of `packs`: all, a share of them (the smallest ids; at least one), or
/// none.
pub fn select(packs: &[IndexPack], how: VerifyAfter) -> Vec<&IndexPack> {
    let mut all: Vec<&IndexPack> = packs.iter().collect();
    let keep = match how {
        VerifyAfter::Off => 0,
        VerifyAfter::NewData => all.len(),
        VerifyAfter::Sample(p) => (all.len() * p as usize).div_ceil(100).max(1),
    };
    all.sort_by_key(|p| p.id);
    all.truncate(keep);
    all
}

/// Reads back the packs `how` selects of `packs` (a backup's new packs) from the storage, each
/// checked against what the index says it holds.
pub fn read_back(
    repo: &Repository,
    packs: &[IndexPack],
    how: VerifyAfter,
    cancel: &CancelToken,
) -> Result<ReadBack> {
    let t0 = Instant::now();
    let chosen = select(packs, how);
    let threads = super::read::io_threads(repo);
    let reads = parallel_map(&chosen, threads, cancel, |p| {
        let entries: Vec<PackedBlob> = p.packed().collect();
        read_pack(repo, p.id, Some(&entries))
    })?;
    cancel.check()?;
    let mut out = ReadBack {
        packs_written: packs.len(),
        packs_read: reads.len(),
        ..ReadBack::default()
    };
    for r in &reads {
        out.blobs_checked += r.checked;
        out.bytes_read += r.bytes;
        if let Some(f) = r.judge(Some(&[]), None) {
            out.damaged.push(f.message);
        }
    }
    out.damaged.sort();
    out.seconds = t0.elapsed().as_secs_f64();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::id::Id;

    fn packs(n: u8) -> Vec<IndexPack> {
        (0..n)
            .map(|i| IndexPack {
                id: Id::hash(&[i]),
                blobs: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn the_setting_parses_and_names_what_it_takes() {
        assert_eq!(VerifyAfter::parse("off"), Ok(VerifyAfter::Off));
        assert_eq!(VerifyAfter::parse("new-data"), Ok(VerifyAfter::NewData));
        assert_eq!(
            VerifyAfter::parse("sample=10%"),
            Ok(VerifyAfter::Sample(10))
        );
        for bad in ["sample=0%", "sample=101%", "sample=10", "all", ""] {
            let e = VerifyAfter::parse(bad).unwrap_err();
            assert!(e.contains("sample=N%"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_sample_is_a_share_of_the_packs_at_least_one_chosen_by_id() {
        let p = packs(30);
        assert_eq!(select(&p, VerifyAfter::Off).len(), 0);
        assert_eq!(select(&p, VerifyAfter::NewData).len(), 30);
        assert_eq!(select(&p, VerifyAfter::Sample(10)).len(), 3);
        assert_eq!(select(&p, VerifyAfter::Sample(1)).len(), 1);
        assert_eq!(select(&p[..1], VerifyAfter::Sample(1)).len(), 1);
        assert!(select(&[], VerifyAfter::Sample(50)).is_empty());
        let s = select(&p, VerifyAfter::Sample(10));
        let mut ids: Vec<Id> = p.iter().map(|p| p.id).collect();
        ids.sort();
        assert_eq!(s.iter().map(|p| p.id).collect::<Vec<_>>(), ids[..3]);
    }
}
