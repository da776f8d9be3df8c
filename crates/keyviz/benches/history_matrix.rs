//! Flush, matrix query and history memory at production sizes.
//!
//! Run: `cargo bench -p keyviz --bench history_matrix`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use keyviz::{MatrixQuery, Sampler, SamplerConfig, Series};

mod support;

use support::{T0, sampler_with_routes};

const STEP: u64 = 60_000;

fn sampler(routes: u64) -> Sampler {
    sampler_with_routes(
        routes,
        SamplerConfig {
            step_ms: STEP,
            max_columns: 100_000,
            ..SamplerConfig::default()
        },
    )
}

/// `columns` flushes with `active` routes written `1..=20` times each.
fn fill(s: &Sampler, active: u64, stride: u64, columns: u64) {
    for c in 0..columns {
        for r in 0..active {
            let id = 1 + r * stride;
            for _ in 0..=(r + c) % 20 {
                s.observe_write(
                    id,
                    &id.to_be_bytes(),
                    100,
                    1 + (id - 1) % 3,
                    5,
                    T0 + (c * STEP) as i64,
                );
            }
        }
        let _ = s.flush(T0 + ((c + 1) * STEP) as i64);
    }
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn flush(c: &mut Criterion) {
    let mut g = c.benchmark_group("flush");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let s = sampler(10_000);
    let mut now = T0;
    g.bench_function("10k_dirty_routes", |b| {
        b.iter_batched(
            || {
                for id in 1..=10_000u64 {
                    s.observe_write(id, &id.to_be_bytes(), 100, 1, 5, s.open_window_unix_ms());
                }
            },
            |()| {
                now += STEP as i64;
                black_box(s.flush(now))
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn matrix(c: &mut Criterion) {
    let mut g = c.benchmark_group("matrix");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    let q = MatrixQuery {
        series: Series::Writes,
        row_budget: Some(1024),
        ..MatrixQuery::default()
    };

    let s = sampler(10_000);
    fill(&s, 1_024, 9, 600);
    g.bench_function("1024_active_of_10k_routes_x_600_columns", |b| {
        b.iter(|| black_box(s.matrix(black_box(&q), T0)))
    });
    drop(s);

    let s = sampler(10_000);
    fill(&s, 10_000, 1, 600);
    g.bench_function("budget_1024_of_10k_active_routes_x_600_columns", |b| {
        b.iter(|| black_box(s.matrix(black_box(&q), T0)))
    });
    g.finish();
}

fn memory(c: &mut Criterion) {
    // Not a timing: builds 10k active routes x 1440 columns once and prints
    // the history's own accounting and the process RSS growth.
    let before = rss_mib();
    let s = sampler(10_000);
    fill(&s, 10_000, 1, 1_440);
    let stats = s.stats();
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "memory: 10k active routes x {} columns: history {:.1} MiB (accounted; hot-key summaries {:.1} MiB of it), RSS growth {:.1} MiB; capture sketches alive {}",
        stats.columns,
        mib(stats.history_bytes),
        mib(stats.history_hot_key_bytes),
        rss_mib() - before,
        stats.hot_key_sketches,
    );
    let mut g = c.benchmark_group("memory");
    g.sample_size(10);
    let q = MatrixQuery {
        series: Series::Writes,
        row_budget: Some(1024),
        ..MatrixQuery::default()
    };
    g.bench_function("matrix_1024_rows_x_1440_columns_of_10k_routes", |b| {
        b.iter(|| black_box(s.matrix(&q, T0)))
    });
    g.finish();
}

criterion_group!(benches, flush, matrix, memory);
criterion_main!(benches);
