//! Hot-path cost of `observe_*`: one thread, two threads, sub-ranges, big tables.
//!
//! Run: `cargo bench -p keyviz --bench sampler_observe`
//! (hot keys on vs off: `cargo bench -p keyviz --bench sampler_observe -- hot_keys`)
//!
//! Every figure is the **CPU time of the observing thread** per operation
//! (`CLOCK_THREAD_CPUTIME_ID`), not wall time: on a quiet machine the two are
//! the same for a single-threaded loop, and on this shared 2-vCPU machine (load
//! average 10–20 while seven engineers build) wall time mostly measures how
//! long the thread waited for a core. Two-thread cases report the two
//! threads' CPU time summed and halved (the wall time two free cores would
//! take). Cache pollution by other processes still shows.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keyviz::hotkeys::KeyRedactor;
use keyviz::{ReadRole, Sampler, SamplerConfig};

mod support;

type Crit = Criterion<ThreadCpu>;

/// Runs `work(thread index, start offset)` on two threads and returns their CPU
/// time summed and halved.
fn two_threads<F>(work: F) -> Duration
where
    F: Fn(usize) + Send + Sync + Clone + 'static,
{
    let handles: Vec<_> = (0..2usize)
        .map(|t| {
            let work = work.clone();
            std::thread::spawn(move || {
                let start = thread_cpu();
                work(t);
                thread_cpu().saturating_sub(start)
            })
        })
        .collect();
    let total: Duration = handles.into_iter().map(|h| h.join().expect("worker")).sum();
    total / 2
}

use support::{ThreadCpu, sampler_with_routes, thread_cpu};

fn sampler(routes: u64, k: u32) -> Sampler {
    sampler_with_routes(
        routes,
        SamplerConfig {
            key_buckets_per_route: k,
            ..SamplerConfig::default()
        },
    )
}

fn observe(c: &mut Crit) {
    let mut g = c.benchmark_group("observe");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let key = [7u8; 16];

    // The floors on this machine, measured in the same run: one relaxed
    // fetch_add on an uncontended atomic, and one plain add to memory (what a
    // single-writer shard costs at best). Quote observe costs as ratios to them.
    let floor = std::sync::atomic::AtomicU64::new(0);
    g.bench_function("baseline_relaxed_fetch_add", |b| {
        b.iter(|| floor.fetch_add(black_box(1), std::sync::atomic::Ordering::Relaxed))
    });
    let mut plain = 0u64;
    g.bench_function("baseline_plain_add", |b| {
        b.iter(|| {
            plain = black_box(plain).wrapping_add(black_box(1));
        })
    });
    black_box(plain);

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
    // Go's `ObserveSubRange/K=64` shape: one constant key.
    g.bench_function("write_k64_constant_key", |b| {
        b.iter(|| s64.observe_write(black_box(1), black_box(&key), 64, 1, 42, t))
    });
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
            let s = Arc::clone(&shared);
            two_threads(move |t| {
                let t = t as u64;
                let at = s.open_window_unix_ms();
                let key = [t as u8; 16];
                for n in 0..per_thread {
                    s.observe_write(1 + t * 128 + (n & 3), black_box(&key), 64, 1, 42, at);
                }
            })
        })
    });
    g.finish();
}

/// The Go reference's 10 000-route shape (`Observe10k*`,
/// ../shared/reference/perf-side-by-side.md): routes `r = 1..=10 000` are
/// `[BE32(r·1000), BE32((r+1)·1000))` in 8 groups at term 3, K = 1; the key of
/// route `r` is 16 bytes, `BE32(r·1000 + 7)` then the bytes 4..=15.
fn go_shape_sampler() -> Sampler {
    let s = Sampler::new(
        SamplerConfig {
            max_tracked_routes: 10_000,
            key_buckets_per_route: 1,
            ..SamplerConfig::default()
        },
        support::T0,
    )
    .expect("bench config is valid");
    s.register_routes((1..=10_000u32).map(|r| keyviz::RouteSpec {
        id: u64::from(r),
        start: (r * 1_000).to_be_bytes().to_vec(),
        end: Some(((r + 1) * 1_000).to_be_bytes().to_vec()),
        group: u64::from(r % 8 + 1),
    }))
    .expect("routes tile the key space");
    s
}

fn go_shape_key(r: u32) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&(r * 1_000 + 7).to_be_bytes());
    for (i, b) in k.iter_mut().enumerate().skip(4) {
        *b = i as u8;
    }
    k
}

/// 1 Mi route ids in `1..=10 000`: uniform, or Zipf with s = 1.1 (rank 1 the
/// hottest), from a fixed seed. The same distributions as the Go generator
/// (seed 42); the sequences themselves differ (a different PRNG).
fn go_shape_sequence(zipf: bool) -> Vec<u32> {
    let mut x = 42u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let cdf: Vec<f64> = {
        let mut acc = 0.0;
        let w: Vec<f64> = (0..10_000).map(|k| (1.0 + k as f64).powf(-1.1)).collect();
        let total: f64 = w.iter().sum();
        w.iter()
            .map(|v| {
                acc += v / total;
                acc
            })
            .collect()
    };
    (0..1usize << 20)
        .map(|_| {
            let u = next();
            if zipf {
                let p = (u >> 11) as f64 / (1u64 << 53) as f64;
                cdf.partition_point(|c| *c < p).min(9_999) as u32 + 1
            } else {
                (u % 10_000) as u32 + 1
            }
        })
        .collect()
}

/// The Go reference's `Observe10k` / `Observe10kRead` cases, uniform and
/// Zipf, one thread and two (thread `g` starts at index `g·7919`; the two-thread
/// figure is wall time ÷ total operations, as Go's `RunParallel` ns/op).
fn go_shapes(c: &mut Crit) {
    let mut g = c.benchmark_group("observe_go_shapes");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let s = Arc::new(go_shape_sampler());
    let keys: Arc<Vec<[u8; 16]>> = Arc::new((0..=10_000u32).map(go_shape_key).collect());
    for (dist, zipf) in [("uniform", false), ("zipf", true)] {
        let seq = Arc::new(go_shape_sequence(zipf));
        for write in [true, false] {
            let op = if write { "write" } else { "read" };
            let one = move |s: &Sampler, seq: &[u32], keys: &[[u8; 16]], start: usize, n: u64| {
                let t = s.open_window_unix_ms();
                let mask = seq.len() - 1;
                for j in 0..n as usize {
                    let r = seq[(start + j) & mask];
                    let key = &keys[r as usize];
                    if write {
                        s.observe_write(
                            u64::from(r),
                            black_box(key),
                            64,
                            u64::from(r % 8 + 1),
                            3,
                            t,
                        );
                    } else {
                        s.observe_read(u64::from(r), black_box(key), 64, ReadRole::Leader, t);
                    }
                }
            };
            g.bench_function(format!("10k_{dist}_{op}_1_thread"), |b| {
                let mut at = 0usize;
                b.iter_custom(|iters| {
                    let start = thread_cpu();
                    one(&s, &seq, &keys, at, iters);
                    at = at.wrapping_add(iters as usize);
                    thread_cpu().saturating_sub(start)
                })
            });
            g.bench_function(format!("10k_{dist}_{op}_2_threads"), |b| {
                b.iter_custom(|iters| {
                    let per_thread = iters.div_ceil(2);
                    let (s, seq, keys) = (Arc::clone(&s), Arc::clone(&seq), Arc::clone(&keys));
                    two_threads(move |t| one(&s, &seq, &keys, t * 7_919, per_thread))
                })
            });
        }
    }
    g.finish();
}

/// Registering 10 000 routes: one batch ([`Sampler::register_routes`]) versus
/// one call per route (each publishes a whole new table; 1 000 routes here,
/// the cost per call grows with the table).
fn register(c: &mut Crit) {
    let mut g = c.benchmark_group("register");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let spec = |r: u32| keyviz::RouteSpec {
        id: u64::from(r),
        start: (r * 1_000).to_be_bytes().to_vec(),
        end: Some(((r + 1) * 1_000).to_be_bytes().to_vec()),
        group: u64::from(r % 8 + 1),
    };
    let config = SamplerConfig {
        max_tracked_routes: 10_000,
        ..SamplerConfig::default()
    };
    g.bench_function("batch_10k_routes", |b| {
        b.iter(|| {
            let s = Sampler::new(config.clone(), support::T0).expect("config");
            s.register_routes((1..=10_000).map(spec)).expect("register");
            s
        })
    });
    g.bench_function("one_by_one_1k_routes", |b| {
        b.iter(|| {
            let s = Sampler::new(config.clone(), support::T0).expect("config");
            for r in 1..=1_000 {
                s.register_route(spec(r)).expect("register");
            }
            s
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
fn hot_keys(c: &mut Crit) {
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
                    let start = thread_cpu();
                    for j in 0..n {
                        let key = &keys[(j as usize) % keys.len()];
                        s.observe_write(black_box(1), black_box(key), 64, 1, 42, now);
                    }
                    spent += thread_cpu().saturating_sub(start);
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

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpu::NS);
    targets = observe, go_shapes, register, hot_keys
}
criterion_main!(benches);
