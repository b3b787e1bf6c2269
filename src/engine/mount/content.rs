//! Reading a file of a mount (pure): which of its blobs cover a byte range, given each blob's size from the index, and the small cache of recently loaded blobs that keeps sequential reads from loading and decrypting a blob once per kernel read.

use crate::repo::id::Id;
use std::collections::VecDeque;
use std::sync::Arc;

/// The part of one blob that a read needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The blob's position in the file's content list.
    pub blob: usize,
    /// Where the needed bytes start within the blob.
    pub start: usize,
    /// How many bytes of the blob are needed.
    pub len: usize,
}

/// Where each blob starts in the file, from the blobs' sizes; one more entry at the end: the
/// file's length.
pub fn starts(sizes: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(sizes.len() + 1);
    let mut at = 0u64;
    out.push(0);
    for s in sizes {
        at += s;
        out.push(at);
    }
    out
}

/// The spans of the blobs that hold the bytes `offset .. offset + size` of a file whose blobs
/// start at `starts` (as [`starts`] gives them); a range past the end is cut at the end.
pub fn spans(starts: &[u64], offset: u64, size: u64) -> Vec<Span> {
    let total = *starts.last().unwrap_or(&0);
    let end = offset.saturating_add(size).min(total);
    if offset >= end {
        return Vec::new();
    }
    // The blob holding `offset`: the last one starting at or before it (a zero-length blob
    // starts where the next does, so the search skips it).
    let first = starts.partition_point(|&s| s <= offset) - 1;
    let mut out = Vec::new();
    let mut at = offset;
    for b in first..starts.len() - 1 {
        if at >= end {
            break;
        }
        let (bs, be) = (starts[b], starts[b + 1]);
        if be <= at {
            continue;
        }
        let stop = be.min(end);
        out.push(Span {
            blob: b,
            start: (at - bs) as usize,
            len: (stop - at) as usize,
        });
        at = stop;
    }
    out
}

/// The most recently used blobs, up to a total size: a blob is kept whole, so the reads that
/// follow within it need no second load.
#[derive(Debug)]
pub struct BlobCache {
    budget: usize,
    used: usize,
    /// Most recently used last.
    blobs: VecDeque<(Id, Arc<Vec<u8>>)>,
}

impl BlobCache {
    /// A cache of at most `budget` bytes (a blob larger than that is not kept).
    pub fn new(budget: usize) -> BlobCache {
        BlobCache {
            budget,
            used: 0,
            blobs: VecDeque::new(),
        }
    }

    /// The blob, if it is cached (it becomes the most recently used).
    pub fn get(&mut self, id: &Id) -> Option<Arc<Vec<u8>>> {
        let pos = self.blobs.iter().position(|(i, _)| i == id)?;
        let e = self.blobs.remove(pos)?;
        let data = e.1.clone();
        self.blobs.push_back(e);
        Some(data)
    }

    /// Keeps `data` as the most recently used, dropping the least recently used past the budget.
    pub fn put(&mut self, id: Id, data: Arc<Vec<u8>>) {
        if data.len() > self.budget || self.blobs.iter().any(|(i, _)| *i == id) {
            return;
        }
        self.used += data.len();
        self.blobs.push_back((id, data));
        while self.used > self.budget {
            match self.blobs.pop_front() {
                Some((_, d)) => self.used -= d.len(),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_within_one_blob_needs_only_that_blob() {
        let s = starts(&[10, 10, 10]);
        assert_eq!(s, [0, 10, 20, 30]);
        assert_eq!(
            spans(&s, 12, 5),
            [Span {
                blob: 1,
                start: 2,
                len: 5
            }]
        );
    }

    #[test]
    fn a_range_across_blobs_is_cut_at_each_boundary_and_at_the_end() {
        let s = starts(&[10, 10, 10]);
        assert_eq!(
            spans(&s, 8, 100),
            [
                Span {
                    blob: 0,
                    start: 8,
                    len: 2
                },
                Span {
                    blob: 1,
                    start: 0,
                    len: 10
                },
                Span {
                    blob: 2,
                    start: 0,
                    len: 10
                },
            ]
        );
        assert!(spans(&s, 30, 10).is_empty());
        assert!(spans(&s, 99, 10).is_empty());
        assert!(spans(&starts(&[]), 0, 10).is_empty());
    }

    #[test]
    fn empty_blobs_are_skipped() {
        let s = starts(&[0, 5, 0, 5]);
        let got = spans(&s, 0, 10);
        assert_eq!(got.iter().map(|x| x.blob).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(got.iter().map(|x| x.len).sum::<usize>(), 10);
    }

    #[test]
    fn the_cache_keeps_the_most_recently_used_within_its_budget() {
        let mut c = BlobCache::new(10);
        let (a, b, d) = (Id::hash(b"a"), Id::hash(b"b"), Id::hash(b"d"));
        c.put(a, Arc::new(vec![0; 4]));
        c.put(b, Arc::new(vec![0; 4]));
        assert!(c.get(&a).is_some()); // a is now the most recent
        c.put(d, Arc::new(vec![0; 4])); // over budget: b goes
        assert!(c.get(&b).is_none());
        assert!(c.get(&a).is_some() && c.get(&d).is_some());
        c.put(Id::hash(b"big"), Arc::new(vec![0; 11]));
        assert!(c.get(&Id::hash(b"big")).is_none());
    }
}
