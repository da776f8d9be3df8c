//! Size and encode/decode speed of a Raft log entry in the candidate binary formats
//! (postcard, bincode 2 in serde mode) and in the JSON we used before, on the entries the
//! store really carries: one `SET` with a 1 KiB value, one with a 16 MiB value, and a
//! 128-operation pipeline batch. The figures chose postcard (docs/STORE.md, "Storage").
//!
//! Run: `cargo bench -p kvnode --bench wire` (prints the encoded sizes first).

use std::hint::black_box;
use std::io::Cursor;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvnode::raft::{KvOp, KvRequest, KvResponse, RequestId, SessionId, SetCond};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

openraft::declare_raft_types!(
    /// Same shape as the store's own type configuration.
    Cfg:
        D = KvRequest,
        R = KvResponse,
);

fn set(key: String, value: Vec<u8>) -> KvOp {
    KvOp::Set {
        key: key.into_bytes(),
        value,
        expire_at_unix_ms: 0,
        cond: SetCond::Always,
    }
}

fn entry(op: KvOp) -> Entry<Cfg> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(7, 2), 123_456),
        payload: EntryPayload::Normal(KvRequest {
            now_unix_ms: 1_764_547_200_000,
            request: Some(RequestId {
                session: SessionId {
                    node: 2,
                    epoch: 0x5eed_1234_abcd_0042,
                    conn: 17,
                },
                seq: 9_001,
            }),
            op,
        }),
    }
}

/// Pseudo-random bytes (xorshift), so neither format profits from runs of one byte.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn cases() -> Vec<(&'static str, Entry<Cfg>)> {
    let batch = KvOp::Batch {
        ops: (0..128)
            .map(|i| set(format!("key:{i:012}"), noise(64)))
            .collect(),
    };
    vec![
        ("set_1KiB", entry(set("user:00042".into(), noise(1024)))),
        ("set_16MiB", entry(set("big:1".into(), noise(16 << 20)))),
        ("batch_128x64B", entry(batch)),
    ]
}

fn postcard_enc(e: &Entry<Cfg>) -> Vec<u8> {
    postcard::to_stdvec(e).expect("postcard encode")
}

fn bincode_enc(e: &Entry<Cfg>) -> Vec<u8> {
    bincode::serde::encode_to_vec(e, bincode::config::standard()).expect("bincode encode")
}

fn bench(c: &mut Criterion) {
    for (name, e) in cases() {
        let p = postcard_enc(&e);
        let b = bincode_enc(&e);
        let j = serde_json::to_vec(&e).expect("json");
        println!(
            "{name}: postcard {} B, bincode {} B, json {} B",
            p.len(),
            b.len(),
            j.len()
        );
        let back: Entry<Cfg> = postcard::from_bytes(&p).expect("postcard decode");
        assert_eq!(back.log_id, e.log_id);

        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(p.len() as u64));
        if name == "set_16MiB" {
            g.sample_size(10).measurement_time(Duration::from_secs(3));
        }
        g.bench_function("postcard_encode", |bch| {
            bch.iter(|| postcard_enc(black_box(&e)))
        });
        g.bench_function("bincode_encode", |bch| {
            bch.iter(|| bincode_enc(black_box(&e)))
        });
        g.bench_function("postcard_decode", |bch| {
            bch.iter(|| postcard::from_bytes::<Entry<Cfg>>(black_box(&p)).expect("decode"))
        });
        g.bench_function("bincode_decode", |bch| {
            bch.iter(|| {
                bincode::serde::decode_from_slice::<Entry<Cfg>, _>(
                    black_box(&b),
                    bincode::config::standard(),
                )
                .expect("decode")
            })
        });
        if name != "set_16MiB" {
            g.bench_function("json_encode", |bch| {
                bch.iter(|| serde_json::to_vec(black_box(&e)).expect("json"))
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
