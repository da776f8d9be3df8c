//! The cluster merge at fan-out sizes.
//!
//! Run: `cargo bench -p keyviz --bench merge_nodes`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keyviz::merge::{MergeOptions, merge};
use keyviz::{Matrix, MatrixRow, Series};

/// One node's write matrix: `rows` x `cols`, group/term identities, with the
/// node leading a third of the rows (others report zeros, as followers do).
fn node(n: u64, rows: usize, cols: usize) -> Matrix {
    Matrix {
        column_unix_ms: (0..cols as i64).map(|c| c * 60_000).collect(),
        rows: (0..rows)
            .map(|r| {
                let leads = r as u64 % 3 == n;
                MatrixRow {
                    bucket_id: format!("route:{r}"),
                    start: Some((r as u64 * 1_000).to_be_bytes().to_vec()),
                    end: Some(((r as u64 + 1) * 1_000).to_be_bytes().to_vec()),
                    route_count: 1,
                    values: (0..cols)
                        .map(|c| if leads { (r + c) as u64 % 50 + 1 } else { 0 })
                        .collect(),
                    raft_group_ids: vec![r as u64 % 3 + 1; cols],
                    leader_terms: vec![7; cols],
                    ..MatrixRow::default()
                }
            })
            .collect(),
        series: Series::Writes,
        generated_at: String::new(),
        step_ms: 60_000,
        node_id: Some(format!("n{n}")),
    }
}

/// The Go reference's merge shape (`BenchmarkMerge`, docs/PERFORMANCE.md and
/// perf-side-by-side.md): dense and 3-way agreeing. Routes r = 1..=rows are
/// `[BE32(r*1000), BE32((r+1)*1000))` in 8 raft groups, leader term 3; every node reports
/// every cell, non-zero, with the same value and identity (duplicates of one (group, term)
/// collapse by max). Values are our deterministic pattern; the shape is Go's.
fn go_shape_node(n: u64, rows: usize, cols: usize) -> Matrix {
    let be32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX).to_be_bytes().to_vec();
    Matrix {
        column_unix_ms: (0..cols as i64).map(|c| c * 60_000).collect(),
        rows: (1..=rows as u64)
            .map(|r| MatrixRow {
                bucket_id: format!("route:{r}"),
                start: Some(be32(r * 1_000)),
                end: Some(be32((r + 1) * 1_000)),
                route_count: 1,
                values: (0..cols as u64)
                    .map(|c| (r * 31 + c * 7) % 997 + 1)
                    .collect(),
                raft_group_ids: vec![r % 8 + 1; cols],
                leader_terms: vec![3; cols],
                ..MatrixRow::default()
            })
            .collect(),
        series: Series::Writes,
        generated_at: String::new(),
        step_ms: 60_000,
        node_id: Some(format!("n{n}")),
    }
}

fn merges(c: &mut Criterion) {
    let mut g = c.benchmark_group("merge");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    let opts = MergeOptions {
        series: Series::Writes,
        step_ms: 60_000,
        row_budget: Some(1024),
        settling_from_unix_ms: None,
    };
    for cols in [600usize, 4096] {
        let inputs: Vec<Matrix> = (0..3).map(|n| node(n, 1024, cols)).collect();
        g.bench_function(
            format!("3_nodes_x_1024_rows_x_{cols}_columns_writes"),
            |b| b.iter(|| black_box(merge(black_box(&inputs), &opts))),
        );
        let dense: Vec<Matrix> = (0..3).map(|n| go_shape_node(n, 1024, cols)).collect();
        g.bench_function(format!("go_shape_writes_3x1024x{cols}"), |b| {
            b.iter(|| black_box(merge(black_box(&dense), &opts)))
        });
    }
    g.finish();
}

criterion_group!(benches, merges);
criterion_main!(benches);
