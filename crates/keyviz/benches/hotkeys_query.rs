//! `Sampler::hot_keys` over a production-sized history: 1 024 (and 10 000) active routes x
//! 600 one-minute columns, hot keys captured in raw mode from a skewed key stream.
//!
//! Run: `cargo bench -p keyviz --bench hotkeys_query -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use keyviz::hotkeys::HotKeyQuery;
use keyviz::{Sampler, SamplerConfig, Series};

mod support;

use support::{T0, sampler_with_routes};

const STEP: u64 = 60_000;
const COLUMNS: u64 = 600;

fn sampler(routes: u64) -> Sampler {
    sampler_with_routes(
        routes,
        SamplerConfig {
            step_ms: STEP,
            max_columns: 100_000,
            hot_key_sketches: routes.max(4_096) as usize,
            ..SamplerConfig::default()
        },
    )
}

/// Key offset (inside the route's 1 000 keys) of the `j`-th write of column `c`: half the
/// writes go to one key, a quarter to three warm keys, the rest spread over 200 keys, so every
/// cell has a summary with a clear head and a long tail.
fn skewed_offset(j: u64, c: u64) -> u64 {
    if j.is_multiple_of(2) {
        0
    } else if j % 4 == 1 {
        1 + (j / 4 + c) % 3
    } else {
        10 + (j.wrapping_mul(7) + c.wrapping_mul(13)) % 200
    }
}

/// `COLUMNS` flushes with `active` routes (every `stride`-th) written `writes` times each.
fn fill(s: &Sampler, active: u64, stride: u64, writes: u64) {
    for c in 0..COLUMNS {
        let at = T0 + (c * STEP) as i64;
        for r in 0..active {
            let route = r * stride;
            let id = 1 + route;
            for j in 0..writes {
                let key = (route * 1_000 + skewed_offset(j, c)).to_be_bytes();
                s.observe_write(id, &key, 100, 1 + route % 3, 5, at);
            }
        }
        let _ = s.flush(T0 + ((c + 1) * STEP) as i64);
    }
}

fn whole_window(k: usize) -> HotKeyQuery {
    HotKeyQuery {
        series: Series::Writes,
        from_unix_ms: Some(T0),
        to_unix_ms: Some(T0 + (COLUMNS * STEP) as i64),
        k,
        ..HotKeyQuery::default()
    }
}

/// One route's key range over the whole window.
fn one_row(route: u64, k: usize) -> HotKeyQuery {
    HotKeyQuery {
        key_start: Some((route * 1_000).to_be_bytes().to_vec()),
        key_end: Some(((route + 1) * 1_000).to_be_bytes().to_vec()),
        ..whole_window(k)
    }
}

fn report(s: &Sampler, label: &str, built: Duration) {
    let stats = s.stats();
    let answer = s
        .hot_keys(&whole_window(20), T0)
        .expect("bench query is valid");
    let items: usize = answer.parts.iter().map(|p| p.summary.items.len()).sum();
    eprintln!(
        "{label}: built in {:.1} s; {} columns, history {:.1} MiB (hot-key summaries {:.1} MiB); \
         answer: {} parts, {} items",
        built.as_secs_f64(),
        stats.columns,
        stats.history_bytes as f64 / (1024.0 * 1024.0),
        stats.history_hot_key_bytes as f64 / (1024.0 * 1024.0),
        answer.parts.len(),
        items,
    );
    assert!(items > 0, "the bench history must hold hot-key summaries");
}

fn query(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot_keys");
    g.sample_size(10).measurement_time(Duration::from_secs(3));

    let t = Instant::now();
    let s = sampler(10_000);
    fill(&s, 1_024, 9, 40);
    report(&s, "1024 active of 10k routes x 600 columns", t.elapsed());
    let all = whole_window(20);
    let row = one_row(9 * 500, 20);
    g.bench_function("all_rows_1024_active_x_600_columns_k20", |b| {
        b.iter(|| black_box(s.hot_keys(black_box(&all), T0)))
    });
    g.bench_function("one_row_of_1024_active_x_600_columns_k20", |b| {
        b.iter(|| black_box(s.hot_keys(black_box(&row), T0)))
    });
    drop(s);

    if std::env::var_os("HOTKEYS_QUERY_10K").is_some() {
        let t = Instant::now();
        let s = sampler(10_000);
        fill(&s, 10_000, 1, 8);
        report(&s, "10k active routes x 600 columns", t.elapsed());
        let row = one_row(5_000, 20);
        g.bench_function("all_rows_10k_active_x_600_columns_k20", |b| {
            b.iter(|| black_box(s.hot_keys(black_box(&all), T0)))
        });
        g.bench_function("one_row_of_10k_active_x_600_columns_k20", |b| {
            b.iter(|| black_box(s.hot_keys(black_box(&row), T0)))
        });
    }
    g.finish();
}

criterion_group!(benches, query);
criterion_main!(benches);
