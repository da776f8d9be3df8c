//! Hot-path cost of `observe_*`: one thread, two threads, sub-ranges, big tables.
//!
//! Run: `cargo bench -p keyviz --bench sampler_observe`
//! (hot keys on vs off: `cargo bench -p keyviz --bench sampler_observe -- hot_keys`)

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use keyviz::hotkeys::KeyRedactor;
use keyviz::{ReadRole, Sampler, SamplerConfig};

mod support;

use support::sampler_with_routes;

fn sampler(routes: u64, k: u32) -> Sampler {
    sampler_with_routes(
        routes,
        SamplerConfig {
            key_buckets_per_route: k,
            ..SamplerConfig::default()
        },
    )
}

fn observe(c: &mut Criterion) {
    let mut g = c.benchmark_group("observe");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let key = [7u8; 16];

    // The floor on this machine, measured in the same run: one relaxed
    // fetch_add on an uncontended atomic. Quote observe costs as a ratio to it.
    let floor = std::sync::atomic::AtomicU64::new(0);
    g.bench_function("baseline_relaxed_fetch_add", |b| {
        b.iter(|| floor.fetch_add(black_box(1), std::sync::atomic::Ordering::Relaxed))
    });

    let s = sampler(1, 1);
    // Every observation is stamped inside the open window (the fast path), as a
    // node's are between two step boundaries.
    let t = s.open_window_unix_ms();
    g.bench_function("read_hit_1_thread", |b| {
        b.iter(|| {
            s.observe_read(
                black_box(1),
                black_box(&key),
                black_box(64),
                ReadRole::Leader,
                t,
            )
        })
    });
    g.bench_function("write_hit_1_thread", |b| {
        b.iter(|| s.observe_write(black_box(1), black_box(&key), black_box(64), 1, 42, t))
    });
    let mut rec = s.recorder();
    g.bench_function("read_hit_recorder_handle", |b| {
        b.iter(|| {
            rec.observe_read(
                black_box(1),
                black_box(&key),
                black_box(64),
                ReadRole::Leader,
                t,
            )
        })
    });
    g.bench_function("write_hit_recorder_handle", |b| {
        b.iter(|| rec.observe_write(black_box(1), black_box(&key), black_box(64), 1, 42, t))
    });
    drop(rec);
    // The slow path: a write stamped five windows back (a late apply), counted
    // in the side buffer under its mutex (the cell already exists).
    let late = t - 5 * 60_000;
    g.bench_function("write_late_side_buffer", |b| {
        b.iter(|| s.observe_write(black_box(1), black_box(&key), black_box(64), 1, 42, late))
    });
    g.bench_function("miss_unknown_route", |b| {
        b.iter(|| s.observe_read(black_box(99), black_box(&key), 64, ReadRole::Leader, t))
    });

    let s64 = sampler(1, 64);
    let t = s64.open_window_unix_ms();
    let mut i = 0u64;
    g.bench_function("write_k64", |b| {
        b.iter(|| {
            i = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
            s64.observe_write(black_box(1), black_box(&i.to_be_bytes()), 64, 1, 42, t)
        })
    });

    let big = sampler(10_000, 1);
    let mut r = 0u64;
    g.bench_function("write_10k_routes_spread", |b| {
        b.iter(|| {
            r = (r + 7_919) % 10_000;
            big.observe_write(black_box(r + 1), black_box(&key), 64, 1, 42, t)
        })
    });

    // Two threads, each on its own routes (as the Go benchmark shards them):
    // reported time is wall time per operation across both threads.
    let shared = Arc::new(sampler(256, 1));
    g.bench_function("write_2_threads_aggregate", |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(2);
            let start = Instant::now();
            let handles: Vec<_> = (0..2u64)
                .map(|t| {
                    let s = Arc::clone(&shared);
                    let at = s.open_window_unix_ms();
                    std::thread::spawn(move || {
                        let key = [t as u8; 16];
                        for n in 0..per_thread {
                            s.observe_write(1 + t * 128 + (n & 3), black_box(&key), 64, 1, 42, at);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("worker");
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn with_capture(routes: u64, k: u32, hot_keys: KeyRedactor) -> Sampler {
    sampler_with_routes(
        routes,
        SamplerConfig {
            key_buckets_per_route: k,
            hot_keys,
            ..SamplerConfig::default()
        },
    )
}

/// Hot keys on versus off on kvnode's path (`Sampler::observe_*`, thread-local
/// table cache), 8 sub-ranges per route as kvnode's default, 1 000 distinct keys.
fn hot_keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot_keys");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let keys: Vec<[u8; 16]> = (0..1_000u64)
        .map(|i| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&(i % 7).wrapping_mul(1_000).to_be_bytes());
            k[8..].copy_from_slice(&i.wrapping_mul(0x9e37_79b9).to_be_bytes());
            k
        })
        .collect();
    let modes = [
        ("off", KeyRedactor::off()),
        ("raw", KeyRedactor::raw()),
        ("hashed", KeyRedactor::hashed(&[7u8; 32], Some(b':'))),
    ];
    for (name, mode) in &modes {
        // A busy window: one window for the whole run, so past each counter's
        // first 1 024 operations only 512 per doubling are captured.
        let s = with_capture(1, 8, mode.clone());
        let t = s.open_window_unix_ms();
        let mut i = 0usize;
        g.bench_function(format!("write_busy_window_{name}"), |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                s.observe_write(black_box(1), black_box(&keys[i]), 64, 1, 42, t)
            })
        });
        let mut i = 0usize;
        g.bench_function(format!("read_busy_window_{name}"), |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                s.observe_read(black_box(1), black_box(&keys[i]), 64, ReadRole::Leader, t)
            })
        });
        // The worst case: a window sealed every 1 000 operations, so every
        // operation is captured (a quiet row). Seal time is not measured.
        let s = with_capture(1, 8, mode.clone());
        g.bench_function(format!("write_every_op_captured_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut done = 0u64;
                let mut now = s.open_window_unix_ms();
                while done < iters {
                    let n = (iters - done).min(1_000);
                    let start = Instant::now();
                    for j in 0..n {
                        let key = &keys[(j as usize) % keys.len()];
                        s.observe_write(black_box(1), black_box(key), 64, 1, 42, now);
                    }
                    spent += start.elapsed();
                    done += n;
                    now += 60_000;
                    let _ = s.publish(s.seal(now));
                }
                spent
            })
        });
        // Many routes: each counter stays young longer, so more is captured.
        let big = with_capture(10_000, 1, mode.clone());
        let t = big.open_window_unix_ms();
        let mut r = 0u64;
        g.bench_function(format!("write_10k_routes_spread_{name}"), |b| {
            b.iter(|| {
                r = (r + 7_919) % 10_000;
                let key = (r * 1_000 + 1).to_be_bytes();
                big.observe_write(black_box(r + 1), black_box(&key), 64, 1, 42, t)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, observe, hot_keys);
criterion_main!(benches);
