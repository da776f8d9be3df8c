//! The stored form of a column: bytes and encode/decode time of a real 10 000-cell column
//! (one minute of 10 000 active routes, as `publish` hands it to the host), in the binary
//! form (`ColumnRecord::encode`/`decode`) and as JSON (what kvnode stored before).
//!
//! Run: `cargo bench -p keyviz --bench history_codec`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keyviz::{ColumnRecord, ReadRole, SamplerConfig};

mod support;

use support::{T0, sampler_with_routes};

const STEP: u64 = 60_000;

/// One published minute of `routes` active routes: 1-3 writes and a read per route on a
/// key inside it, hot keys captured and capped as the history keeps them.
fn published_column(routes: u64) -> ColumnRecord {
    let s = sampler_with_routes(
        routes,
        SamplerConfig {
            step_ms: STEP,
            ..SamplerConfig::default()
        },
    );
    for r in 0..routes {
        let id = r + 1;
        let key = (r * 1_000 + 17).to_be_bytes();
        for _ in 0..1 + r % 3 {
            s.observe_write(id, &key, 100, 1 + r % 3, 5, T0);
        }
        s.observe_read(id, &key, 100, ReadRole::Leader, T0);
    }
    let mut published = s.publish(s.seal(T0 + STEP as i64));
    published.records.pop().expect("the minute was published")
}

fn codec(c: &mut Criterion) {
    let record = published_column(10_000);
    let mut binary = Vec::new();
    record.encode(&mut binary);
    let json = serde_json::to_vec(&record).expect("records serialise");
    let cells = record.cells.len();
    let hot: usize = record.cells.iter().map(|c| c.hot.len()).sum();
    eprintln!(
        "history codec: {cells} cells ({hot} hot summaries): binary {} B ({:.1} B a cell), JSON {} B ({:.1} B a cell), {:.1}x smaller",
        binary.len(),
        binary.len() as f64 / cells as f64,
        json.len(),
        json.len() as f64 / cells as f64,
        json.len() as f64 / binary.len() as f64,
    );
    assert_eq!(ColumnRecord::decode(&binary).as_ref(), Ok(&record));

    let mut g = c.benchmark_group("history_codec");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    let mut out = Vec::with_capacity(binary.len());
    g.bench_function("encode_binary_10k_cells", |b| {
        b.iter(|| {
            out.clear();
            black_box(&record).encode(&mut out);
            black_box(out.len())
        })
    });
    g.bench_function("decode_binary_10k_cells", |b| {
        b.iter(|| ColumnRecord::decode(black_box(&binary)))
    });
    g.bench_function("encode_json_10k_cells", |b| {
        b.iter(|| serde_json::to_vec(black_box(&record)))
    });
    g.bench_function("decode_json_10k_cells", |b| {
        b.iter(|| serde_json::from_slice::<ColumnRecord>(black_box(&json)))
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
