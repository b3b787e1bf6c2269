//! Which packs read-data reads whole: the `--read-data-subset` syntax, how a choice reads in a
//! report, and the choice itself.

use crate::repo::id::Id;
use rand::Rng;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Which packs to read whole (beyond the structure check, which reads only headers).
#[derive(Debug, Clone, PartialEq)]
pub enum ReadData {
    /// Structure only.
    No,
    /// Every pack.
    All,
    /// A random share of the packs, in percent (at least one pack).
    Percent(f64),
    /// Group `n` of `of` (1-based): the packs whose id's first byte modulo `of` is `n - 1`.
    Group { n: u32, of: u32 },
    /// Exactly these packs (those that still exist): a verification drill's share of its cycle.
    Packs(Arc<BTreeSet<Id>>),
}

impl ReadData {
    /// Parses a `--read-data-subset` value: `N%` (0 < N <= 100) or `n/m` (1 <= n <= m <= 256).
    pub fn parse_subset(s: &str) -> std::result::Result<ReadData, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| {
                format!("invalid subset {s:?}: expected a percentage like 10% or a group like 1/5")
            })?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(format!(
                    "invalid subset {s:?}: the percentage must be above 0 and at most 100"
                ));
            }
            return Ok(ReadData::Percent(v));
        }
        if let Some((n, m)) = s.split_once('/') {
            let bad = || {
                format!(
                    "invalid subset {s:?}: expected n/m with 1 <= n <= m <= 256 (e.g. 1/5 .. 5/5)"
                )
            };
            let n: u32 = n.trim().parse().map_err(|_| bad())?;
            let m: u32 = m.trim().parse().map_err(|_| bad())?;
            if n == 0 || m == 0 || n > m || m > 256 {
                return Err(bad());
            }
            return Ok(ReadData::Group { n, of: m });
        }
        Err(format!(
            "invalid subset {s:?}: expected a percentage like 10% or a group like 1/5"
        ))
    }

    /// How it reads in a report: "none", "all", "10%", "1/5".
    pub fn describe(&self) -> String {
        match self {
            ReadData::No => "none".into(),
            ReadData::All => "all".into(),
            ReadData::Percent(p) => format!("{p}%"),
            ReadData::Group { n, of } => format!("{n}/{of}"),
            ReadData::Packs(p) => format!("{} chosen packs", p.len()),
        }
    }

    /// The packs (from `packs`, sorted by id) to read whole.
    pub fn select(&self, packs: &[Id]) -> Vec<Id> {
        self.select_with(packs, &mut rand::thread_rng())
    }

    /// [`ReadData::select`] with the random choice of `Percent` drawn from `rng` (so that it can
    /// be repeated); the result keeps the order of `packs`.
    fn select_with<R: Rng + ?Sized>(&self, packs: &[Id], rng: &mut R) -> Vec<Id> {
        match *self {
            ReadData::Packs(ref chosen) => packs
                .iter()
                .filter(|id| chosen.contains(id))
                .copied()
                .collect(),
            ReadData::No => Vec::new(),
            ReadData::All => packs.to_vec(),
            ReadData::Percent(p) => {
                if packs.is_empty() {
                    return Vec::new();
                }
                let want = ((packs.len() as f64 * p / 100.0) as usize).clamp(1, packs.len());
                let mut idx = rand::seq::index::sample(rng, packs.len(), want).into_vec();
                idx.sort_unstable();
                idx.into_iter().map(|i| packs[i]).collect()
            }
            ReadData::Group { n, of } => packs
                .iter()
                .filter(|id| id.0[0] as u32 % of == n - 1)
                .copied()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn subset_parsing() {
        assert_eq!(ReadData::parse_subset("10%"), Ok(ReadData::Percent(10.0)));
        assert_eq!(ReadData::parse_subset("2.5%"), Ok(ReadData::Percent(2.5)));
        assert_eq!(
            ReadData::parse_subset("2/5"),
            Ok(ReadData::Group { n: 2, of: 5 })
        );
        for bad in ["0%", "101%", "x%", "0/3", "4/3", "1/257", "1/0", "7", ""] {
            assert!(
                ReadData::parse_subset(bad).is_err(),
                "{bad} must be rejected"
            );
        }
    }

    #[test]
    fn groups_cover_every_pack_once() {
        let packs: Vec<Id> = (0..300u32).map(|i| Id::hash(&i.to_le_bytes())).collect();
        for m in [1u32, 2, 3, 7] {
            let mut all: Vec<Id> = (1..=m)
                .flat_map(|n| ReadData::Group { n, of: m }.select(&packs))
                .collect();
            all.sort();
            let mut want = packs.clone();
            want.sort();
            assert_eq!(all, want, "groups 1/{m}..{m}/{m}");
        }
    }

    #[test]
    fn percent_picks_at_least_one() {
        let packs: Vec<Id> = (0..10u32).map(|i| Id::hash(&i.to_le_bytes())).collect();
        assert_eq!(ReadData::Percent(1.0).select(&packs).len(), 1);
        assert_eq!(ReadData::Percent(50.0).select(&packs).len(), 5);
        assert_eq!(ReadData::Percent(100.0).select(&packs).len(), 10);
        let mut s = ReadData::Percent(30.0).select(&packs);
        let n = s.len();
        s.dedup();
        assert_eq!(s.len(), n, "no pack picked twice");
        assert!(ReadData::Percent(50.0).select(&[]).is_empty());
    }

    fn ids(n: u32) -> Vec<Id> {
        let mut v: Vec<Id> = (0..n).map(|i| Id::hash(&i.to_le_bytes())).collect();
        v.sort();
        v
    }

    #[test]
    fn percent_choice_repeats_for_the_same_seed_and_keeps_the_order() {
        let packs = ids(100);
        let pick =
            |seed| ReadData::Percent(25.0).select_with(&packs, &mut StdRng::seed_from_u64(seed));
        let a = pick(7);
        assert_eq!(a.len(), 25);
        assert_eq!(a, pick(7), "the same seed picks the same packs");
        assert!(
            a.windows(2).all(|w| w[0] < w[1]),
            "in the order of the listing"
        );
        assert!(a.iter().all(|p| packs.contains(p)));
    }

    #[test]
    fn group_choice_depends_only_on_the_ids() {
        let packs = ids(50);
        let g = ReadData::Group { n: 2, of: 3 };
        let a = g.select(&packs);
        assert_eq!(a, g.select(&packs));
        assert!(a.iter().all(|id| id.0[0] % 3 == 1));
        let mut reversed = packs.clone();
        reversed.reverse();
        let mut b = g.select(&reversed);
        b.sort();
        assert_eq!(a, b, "the same packs whatever the order of the listing");
    }

    #[test]
    fn none_all_and_chosen_packs() {
        let packs = ids(5);
        assert!(ReadData::No.select(&packs).is_empty());
        assert_eq!(ReadData::All.select(&packs), packs);
        let gone = Id::hash(b"not listed");
        let chosen = ReadData::Packs(Arc::new([packs[3], gone, packs[1]].into_iter().collect()));
        assert_eq!(
            chosen.select(&packs),
            vec![packs[1], packs[3]],
            "only packs that exist"
        );
        assert_eq!(chosen.describe(), "3 chosen packs");
    }

    #[test]
    fn descriptions() {
        assert_eq!(ReadData::No.describe(), "none");
        assert_eq!(ReadData::All.describe(), "all");
        assert_eq!(ReadData::Percent(2.5).describe(), "2.5%");
        assert_eq!(ReadData::Group { n: 1, of: 5 }.describe(), "1/5");
    }
}
