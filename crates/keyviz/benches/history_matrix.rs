//! Flush, matrix query and history memory at production sizes, and the tiered
//! history (7- and 30-day windows, memory and disk of 10 000 routes x 30 days).
//!
//! Run: `cargo bench -p keyviz --bench history_matrix`; the tiered groups only:
//! `cargo bench -p keyviz --bench history_matrix -- tiers`

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use keyviz::hotkeys::{HotItem, HotKeyQuery, HotSummary};
use keyviz::{
    CellRecord, ColumnRecord, HistoryTier, HotRecord, MatrixQuery, ReadRole, Sampler,
    SamplerConfig, Series, WriteRecord,
};

mod support;

use support::{T0, ThreadCpu, sampler_with_routes};

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

/// `columns` flushes with `active` routes in the Go reference's FillSampler
/// shape (../shared/reference/perf-side-by-side.md): 1-3 writes and 1 read per
/// route per column, so a query reads both kinds of cells, as in production.
fn fill(s: &Sampler, active: u64, stride: u64, columns: u64) {
    for c in 0..columns {
        let at = T0 + (c * STEP) as i64;
        for r in 0..active {
            let id = 1 + r * stride;
            let key = id.to_be_bytes();
            for _ in 0..writes_at(r, c) {
                s.observe_write(id, &key, 100, 1 + (id - 1) % 3, 5, at);
            }
            s.observe_read(id, &key, 100, ReadRole::Leader, at);
        }
        let _ = s.flush(T0 + ((c + 1) * STEP) as i64);
    }
}

/// A `/proc/self/status` field in kB (`VmRSS`, `VmHWM`), as MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn rss_mib() -> f64 {
    status_mib("VmRSS")
}

/// What glibc's allocator says about the heap, in bytes: (in use by the
/// program, held free by the allocator). RSS counts both; the difference
/// between RSS growth and the history's own accounting is mostly the second
/// (freed temporaries the allocator keeps) when the first matches the
/// accounting.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_bytes() -> (usize, usize) {
    /// glibc's `struct mallinfo2` (glibc >= 2.33), every field a `size_t`.
    #[repr(C)]
    struct MallInfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    // The one unsafe item of this bench: reading the allocator's statistics
    // (a plain C call without arguments that returns a struct by value).
    #[allow(unsafe_code)]
    unsafe extern "C" {
        fn mallinfo2() -> MallInfo2;
    }
    #[allow(unsafe_code)]
    let m = unsafe { mallinfo2() };
    let _ = (
        m.arena, m.ordblks, m.smblks, m.hblks, m.usmblks, m.fsmblks, m.keepcost,
    );
    (m.uordblks + m.hblkhd, m.fordblks)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_bytes() -> (usize, usize) {
    (0, 0)
}

// Every group builds its input lazily, inside the first call of its bench
// closure: criterion calls a closure only when its id passes the filter, so
// `-- tiers` does not pay for the other groups' fills.

fn flush(c: &mut Criterion) {
    let mut g = c.benchmark_group("flush");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let cell = OnceLock::new();
    let mut now = T0;
    g.bench_function("10k_dirty_routes", |b| {
        let s: &Sampler = cell.get_or_init(|| sampler(10_000));
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

    let cell = OnceLock::new();
    g.bench_function("1024_active_of_10k_routes_x_600_columns", |b| {
        let s: &Sampler = cell.get_or_init(|| {
            let s = sampler(10_000);
            fill(&s, 1_024, 9, 600);
            s
        });
        b.iter(|| black_box(s.matrix(black_box(&q), T0)))
    });
    drop(cell);

    let cell = OnceLock::new();
    g.bench_function("budget_1024_of_10k_active_routes_x_600_columns", |b| {
        let s: &Sampler = cell.get_or_init(|| {
            let s = sampler(10_000);
            fill(&s, 10_000, 1, 600);
            s
        });
        b.iter(|| black_box(s.matrix(black_box(&q), T0)))
    });
    g.finish();
}

fn memory(c: &mut Criterion) {
    // Not only a timing: builds 10k active routes x 1440 columns once and
    // prints the history's own accounting and the process RSS growth.
    let mut g = c.benchmark_group("memory");
    g.sample_size(10);
    let q = MatrixQuery {
        series: Series::Writes,
        row_budget: Some(1024),
        ..MatrixQuery::default()
    };
    let cell = OnceLock::new();
    g.bench_function("matrix_1024_rows_x_1440_columns_of_10k_routes", |b| {
        let s: &Sampler = cell.get_or_init(|| {
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
            s
        });
        b.iter(|| black_box(s.matrix(&q, T0)))
    });
    g.finish();
}

const TEN_MIN: u64 = 600_000;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 86_400_000;
/// 2023-11-14T00:00:00Z, a whole day: every tier's windows start on it.
const START: i64 = 1_699_920_000_000;
/// 30 days of minutes.
const MINUTES: u64 = 30 * 24 * 60;

/// The default tiers of `keyviz node` at a 60 s step: 60s:24h,10m:7d,1h:30d.
fn tiered_sampler(routes: u64) -> Sampler {
    sampler_with_routes(
        routes,
        SamplerConfig {
            step_ms: STEP,
            retention_ms: DAY,
            max_columns: 100_000,
            coarser_tiers: vec![
                HistoryTier {
                    step_ms: TEN_MIN,
                    keep_ms: 7 * DAY,
                },
                HistoryTier {
                    step_ms: HOUR,
                    keep_ms: 30 * DAY,
                },
            ],
            ..SamplerConfig::default()
        },
    )
}

/// The Go reference's FillSampler shape, minute `c` of route index `r`:
/// 1-3 writes and 1 read (8-byte key, 100-byte value); every group's leader
/// term changes every 6 h, on a ten-minute and one-hour window boundary, so
/// no coarse cell carries a second write share (docs/PERFORMANCE.md).
fn writes_at(r: u64, c: u64) -> u64 {
    1 + (r + c) % 3
}

fn term_at(c: u64) -> u64 {
    5 + c / 360
}

fn summary(key: &[u8], n: u64) -> HotSummary {
    HotSummary {
        total: n,
        floor: 0,
        sampled: false,
        unit_variance: 0,
        items: vec![HotItem {
            key: key.to_vec(),
            estimate: n,
            lower: n,
            upper: n,
            truncated: false,
            seen: 0,
        }],
    }
}

/// The stored column of tier `step` starting at minute `c0`: for every active
/// route (`active` of them, every `stride`-th), the exact sums of its minutes,
/// write shares per leader term, and single-key hot summaries for the first
/// `hot_routes` (the column keeps at most 128 listed keys per series anyway).
fn column_record(step: u64, c0: u64, active: u64, stride: u64, hot_routes: u64) -> ColumnRecord {
    let minutes = step / STEP;
    let cells = (0..active)
        .map(|r| {
            let id = 1 + r * stride;
            let i = id - 1;
            let start = (i * 1_000).to_be_bytes().to_vec();
            let end = (id < 10_000).then(|| (id * 1_000).to_be_bytes().to_vec());
            let group = 1 + i % 3;
            let mut writes: Vec<WriteRecord> = Vec::new();
            for c in c0..c0 + minutes {
                let (term, n) = (term_at(c), writes_at(r, c));
                match writes.iter_mut().find(|w| w.term == term) {
                    Some(w) => {
                        w.writes += n;
                        w.write_bytes += n * 108;
                    }
                    None => writes.push(WriteRecord {
                        group,
                        term,
                        writes: n,
                        write_bytes: n * 108,
                    }),
                }
            }
            let key = i.to_be_bytes();
            let hot = if r < hot_routes {
                let mut hot = vec![
                    HotRecord {
                        series: Series::Reads,
                        group: 0,
                        term: 0,
                        summary: summary(&key, minutes),
                    },
                    HotRecord {
                        series: Series::ReadBytes,
                        group: 0,
                        term: 0,
                        summary: summary(&key, minutes * 108),
                    },
                ];
                for w in &writes {
                    hot.push(HotRecord {
                        series: Series::Writes,
                        group: w.group,
                        term: w.term,
                        summary: summary(&key, w.writes),
                    });
                    hot.push(HotRecord {
                        series: Series::WriteBytes,
                        group: w.group,
                        term: w.term,
                        summary: summary(&key, w.write_bytes),
                    });
                }
                hot
            } else {
                Vec::new()
            };
            CellRecord {
                bucket_id: format!("route:{id}"),
                start,
                end,
                aggregate: false,
                route_ids: vec![id],
                route_count: 1,
                reads_leader: minutes,
                reads_follower: 0,
                read_bytes: minutes * 108,
                writes,
                hot,
                first_key: Some(key.to_vec()),
                last_key: Some(key.to_vec()),
            }
        })
        .collect();
    ColumnRecord {
        unix_ms: START + (c0 * STEP) as i64,
        step_ms: step,
        cells,
    }
}

/// What each tier holds after 30 days: (step, first minute, columns).
fn tier_spans() -> [(u64, u64, u64); 3] {
    [
        (STEP, MINUTES - 24 * 60, 24 * 60),
        (TEN_MIN, MINUTES - 7 * 24 * 60, 7 * 24 * 6),
        (HOUR, 0, 30 * 24),
    ]
}

/// Loads 30 days of tiered history for `active` routes, one column at a
/// time (the restore path, in the order a store returns them). The records
/// are built on a second thread while the history takes the previous one;
/// at most two are alive at once, so the fill's temporaries do not inflate
/// the RSS figure (16 at a time, as before, held ≈ 16 × 25 MiB of input).
fn fill_30_days(s: &Sampler, active: u64, stride: u64, hot_routes: u64) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<ColumnRecord>(1);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for (step, first, columns) in tier_spans() {
                let per = step / STEP;
                for j in 0..columns {
                    let record = column_record(step, first + j * per, active, stride, hot_routes);
                    if tx.send(record).is_err() {
                        return;
                    }
                }
            }
        });
        for record in rx {
            s.load_records_for_benches(vec![record]);
        }
    });
}

/// Hot keys of every series over the last `days` (1: the one-minute tier, 7:
/// ten-minute, 30: one-hour), `k = 20`.
fn hot_window(series: Series, days: u64) -> HotKeyQuery {
    HotKeyQuery {
        series,
        from_unix_ms: Some(START + (MINUTES * STEP) as i64 - (days * DAY) as i64),
        k: 20,
        ..HotKeyQuery::default()
    }
}

/// Runs the hot-key query of every series and window once and prints its
/// size, wall time and a digest of the whole answer (FNV-1a of its JSON):
/// two builds that keep summaries differently must print the same digests.
fn print_hot_key_digests(s: &Sampler) {
    for days in [1, 7, 30] {
        for series in [
            Series::Reads,
            Series::ReadBytes,
            Series::Writes,
            Series::WriteBytes,
        ] {
            let t = Instant::now();
            let answer = s
                .hot_keys(&hot_window(series, days), T0)
                .expect("bench query is valid");
            let took = t.elapsed();
            let json = serde_json::to_vec(&answer).expect("answers serialise");
            let digest = json.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            let items: usize = answer.parts.iter().map(|p| p.summary.items.len()).sum();
            eprintln!(
                "tiers hot keys: {days} d {series}: {} parts, {items} items, digest {digest:016x}, {:.1} ms",
                answer.parts.len(),
                took.as_secs_f64() * 1e3,
            );
        }
    }
}

fn window(days: u64) -> MatrixQuery {
    MatrixQuery {
        series: Series::Writes,
        from_unix_ms: Some(START + (MINUTES * STEP) as i64 - (days * DAY) as i64),
        row_budget: Some(1024),
        ..MatrixQuery::default()
    }
}

fn tiers(c: &mut Criterion) {
    let mut g = c.benchmark_group("tiers");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    let cell = OnceLock::new();
    let build = || {
        let s = tiered_sampler(10_000);
        fill_30_days(&s, 1_024, 9, 128);
        for days in [1, 7, 30] {
            let m = s.matrix(&window(days), T0);
            eprintln!(
                "tiers: {days} d window -> step {} ms, {} columns x {} rows, total {}",
                m.step_ms,
                m.column_unix_ms.len(),
                m.rows.len(),
                m.total()
            );
        }
        s
    };
    for days in [7, 30] {
        let q = window(days);
        g.bench_function(format!("{days}d_window_1024_active_of_10k_routes"), |b| {
            let s: &Sampler = cell.get_or_init(build);
            b.iter(|| black_box(s.matrix(black_box(&q), T0)))
        });
    }
    // Hot keys of 24 h (the one-minute tier: 1 440 columns, 128 listed keys
    // per series each) and 7 days (ten-minute tier), summaries decoded from
    // the packed columns as the query reads them.
    for (label, days) in [("24h", 1), ("7d", 7)] {
        let q = hot_window(Series::Writes, days);
        g.bench_function(format!("hot_keys_{label}_writes_1024_active_k20"), |b| {
            let s: &Sampler = cell.get_or_init(build);
            b.iter(|| black_box(s.hot_keys(black_box(&q), T0)))
        });
    }
    g.finish();
}

/// The `tiers` queries and the `matrix/1024_active...` baseline again, timed in
/// thread CPU time (group `tiers_cpu`): the figures to compare across runs on
/// the loaded machine.
fn tiers_cpu(c: &mut Criterion<ThreadCpu>) {
    let mut g = c.benchmark_group("tiers_cpu");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    let base = OnceLock::new();
    let q = MatrixQuery {
        series: Series::Writes,
        row_budget: Some(1024),
        ..MatrixQuery::default()
    };
    g.bench_function("baseline_1024_active_of_10k_routes_x_600_columns", |b| {
        let s: &Sampler = base.get_or_init(|| {
            let s = sampler(10_000);
            fill(&s, 1_024, 9, 600);
            s
        });
        b.iter(|| black_box(s.matrix(black_box(&q), T0)))
    });
    let cell = OnceLock::new();
    for days in [7, 30] {
        let q = window(days);
        g.bench_function(format!("{days}d_window_1024_active_of_10k_routes"), |b| {
            let s: &Sampler = cell.get_or_init(|| {
                let s = tiered_sampler(10_000);
                fill_30_days(&s, 1_024, 9, 128);
                s
            });
            b.iter(|| black_box(s.matrix(black_box(&q), T0)))
        });
    }
    g.finish();
}

fn tiers_memory(c: &mut Criterion) {
    // Not only a timing: builds 10k active routes x 30 days in the default
    // tiers and prints the history's accounting, RSS growth and the bytes a
    // store keeps (JSON values, as kvnode writes them).
    let mut g = c.benchmark_group("tiers_memory");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    let cell = OnceLock::new();
    let build = || {
        let before = rss_mib();
        let (heap_before, _) = heap_bytes();
        let t = Instant::now();
        let s = tiered_sampler(10_000);
        fill_30_days(&s, 10_000, 1, 10_000);
        let filled = t.elapsed();
        let stats = s.stats();
        let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
        let (heap, heap_free) = heap_bytes();
        eprintln!(
            "tiers memory: filled in {:.0} s; after the fill: RSS {:.1} MiB (growth {:.1} MiB), VmHWM {:.1} MiB; heap in use {:.1} MiB (growth {:.1} MiB), free in the allocator {:.1} MiB",
            filled.as_secs_f64(),
            rss_mib(),
            rss_mib() - before,
            status_mib("VmHWM"),
            mib(heap),
            mib(heap.saturating_sub(heap_before)),
            mib(heap_free),
        );
        let json: usize = tier_spans()
            .iter()
            .map(|&(step, first, columns)| {
                let one = serde_json::to_vec(&column_record(step, first, 10_000, 1, 10_000))
                    .map_or(0, |v| v.len());
                one * columns as usize
            })
            .sum();
        eprintln!(
            "tiers memory: 10k active routes x 30 days, {} columns in all tiers: history {:.1} MiB (accounted; hot-key summaries {:.1} MiB of it), RSS growth {:.1} MiB; stored JSON {:.1} MiB",
            stats.columns,
            mib(stats.history_bytes),
            mib(stats.history_hot_key_bytes),
            rss_mib() - before,
            mib(json),
        );
        print_hot_key_digests(&s);
        let (heap, heap_free) = heap_bytes();
        eprintln!(
            "tiers memory: after the hot-key queries: RSS {:.1} MiB, VmHWM {:.1} MiB; heap in use {:.1} MiB, free in the allocator {:.1} MiB",
            rss_mib(),
            status_mib("VmHWM"),
            mib(heap),
            mib(heap_free),
        );
        s
    };
    for days in [7, 30] {
        let q = window(days);
        g.bench_function(
            format!("{days}d_window_1024_rows_of_10k_active_routes"),
            |b| {
                let s: &Sampler = cell.get_or_init(build);
                b.iter(|| black_box(s.matrix(black_box(&q), T0)))
            },
        );
    }
    // Hot keys of 24 h (1 440 one-minute columns, every summary decoded from
    // its packed column as the query reads it) and of 30 days.
    for (label, days) in [("24h", 1), ("30d", 30)] {
        let q = hot_window(Series::Writes, days);
        g.bench_function(
            format!("hot_keys_{label}_writes_10k_active_routes_k20"),
            |b| {
                let s: &Sampler = cell.get_or_init(build);
                b.iter(|| black_box(s.hot_keys(black_box(&q), T0)))
            },
        );
    }
    g.finish();
}

criterion_group!(benches, flush, matrix, memory, tiers, tiers_memory);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu::MS);
    targets = tiers_cpu
}
criterion_main!(benches, cpu);
