//! The chunkers' throughput, single-threaded, on the same pseudo-random data: restic's Rabin chunker (`engine::chunker`, what backups use) beside FastCDC (what they used before).
//!
//! `cargo bench --bench chunkers` (bench/chunker.sh runs it). `CHUNKER_BENCH_MIB` sets the data
//! size (default 512), `CHUNKER_BENCH_RUNS` the runs of each (default 5; the median is printed).

use backupd::engine::chunker::{cuts, Tables};
use std::time::Instant;

/// restic's test polynomial (any of degree 53 chunks at the same speed).
const POL: u64 = 0x3DA3358B4DC173;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Deterministic pseudo-random bytes (xorshift64, eight bytes a step).
fn data(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// The median of `runs` timings of `f` over `data`, in MB/s, and the chunks it cut.
fn measure(data: &[u8], runs: usize, f: impl Fn(&[u8]) -> usize) -> (f64, usize) {
    let mut speeds = Vec::new();
    let mut chunks = 0;
    for _ in 0..runs {
        let t = Instant::now();
        chunks = std::hint::black_box(f(std::hint::black_box(data)));
        speeds.push(data.len() as f64 / t.elapsed().as_secs_f64() / 1e6);
    }
    speeds.sort_by(f64::total_cmp);
    (speeds[speeds.len() / 2], chunks)
}

fn main() {
    let mib = env_usize("CHUNKER_BENCH_MIB", 512);
    let runs = env_usize("CHUNKER_BENCH_RUNS", 5).max(1);
    let buf = data(mib * 1024 * 1024);
    let tables = Tables::new(POL).expect("restic's test polynomial has degree 53");
    let (restic, n_restic) = measure(&buf, runs, |d| cuts(&tables, d).len());
    let (fast, n_fast) = measure(&buf, runs, |d| {
        fastcdc::v2020::FastCDC::new(d, 512 * 1024, 1024 * 1024, 8 * 1024 * 1024).count()
    });
    println!("data: {mib} MiB pseudo-random, single thread, median of {runs} runs");
    println!(
        "restic (Rabin)  {restic:8.0} MB/s  {n_restic} chunks, {:.2} MiB on average",
        mib as f64 / n_restic as f64
    );
    println!(
        "FastCDC 2020    {fast:8.0} MB/s  {n_fast} chunks, {:.2} MiB on average",
        mib as f64 / n_fast as f64
    );
}
