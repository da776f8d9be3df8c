//! Peer matrix decoding and end-to-end fan-out over loopback.
//!
//! Run: `cargo bench -p keyviz-admin --bench fanout`

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use keyviz::{Matrix, MatrixQuery, MatrixRow, Series};
use keyviz_admin::{
    AdminConfig, AdminState, ClusterSecret, MatrixSource, NodeIdentity, Role, SourceError,
    StaticCredentials,
};

/// A write matrix as a peer sends it: values plus per-cell group and term, with realistic
/// spread (mostly 1–5 digit counts, some zeros where the node is a follower).
fn peer_matrix(node: u64, rows: usize, cols: usize) -> Matrix {
    Matrix {
        column_unix_ms: (0..cols as i64)
            .map(|c| 1_699_999_980_000 + c * 60_000)
            .collect(),
        rows: (0..rows)
            .map(|r| {
                let leads = r as u64 % 3 == node;
                MatrixRow {
                    bucket_id: format!("route:{r}"),
                    start: Some((r as u64 * 1_000).to_be_bytes().to_vec()),
                    end: Some(((r as u64 + 1) * 1_000).to_be_bytes().to_vec()),
                    route_count: 1,
                    values: (0..cols)
                        .map(|c| {
                            if leads {
                                (((r as u64 + 1) * 2_654_435_761) ^ ((c as u64) * 40_503)) % 50_000
                            } else {
                                0
                            }
                        })
                        .collect(),
                    raft_group_ids: vec![r as u64 % 64 + 1; cols],
                    leader_terms: vec![12; cols],
                    ..MatrixRow::default()
                }
            })
            .collect(),
        series: Series::Writes,
        generated_at: "2026-11-27T00:00:00Z".into(),
        step_ms: 60_000,
        node_id: Some(format!("n{node}")),
    }
}

fn decode(c: &mut Criterion) {
    let body = serde_json::to_vec(&peer_matrix(0, 1024, 4096)).unwrap_or_default();
    let mut g = c.benchmark_group("peer_decode");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("json_1024x4096", |b| {
        b.iter(|| keyviz_admin::fanout::decode::decode_matrix(black_box(&body)))
    });
    let compact =
        keyviz_admin::fanout::compact::encode(&peer_matrix(0, 1024, 4096)).unwrap_or_default();
    g.bench_function("compact_1024x4096", |b| {
        b.iter(|| keyviz_admin::fanout::decode::decode_compact_matrix(black_box(&compact)))
    });
    g.bench_function("serde_json_generic_1024x4096", |b| {
        b.iter(|| serde_json::from_slice::<Matrix>(black_box(&body)).map(|m| m.rows.len()))
    });
    g.finish();
}

struct Fixed(Matrix);

impl MatrixSource for Fixed {
    fn matrix(&self, q: &MatrixQuery, _now: i64) -> Result<Matrix, SourceError> {
        let mut m = self.0.clone();
        m.series = q.series;
        Ok(m)
    }
}

const SECRET: &[u8] = b"keyviz-admin-benchmark-secret-0123456789";

fn fanout(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let (url, cookie) = rt.block_on(async {
        let mut listeners = Vec::new();
        for _ in 0..3 {
            if let Ok(l) = tokio::net::TcpListener::bind("127.0.0.1:0").await {
                listeners.push(l);
            }
        }
        let addrs: Vec<String> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok().map(|a| a.to_string()))
            .collect();
        let mut entry: Option<AdminState> = None;
        for (i, l) in listeners.into_iter().enumerate() {
            let addr = addrs[i].clone();
            let Ok(identity) = NodeIdentity::new(format!("n{i}"), addr) else {
                continue;
            };
            let Ok(secret) = ClusterSecret::new(SECRET.to_vec(), None) else {
                continue;
            };
            let config = AdminConfig {
                fanout_nodes: addrs.clone(),
                result_reuse: Duration::ZERO,
                login_rate_limit: 1_000,
                ..AdminConfig::default()
            };
            let creds = StaticCredentials::new().with_plain("bench", "bench", Some(Role::ReadOnly));
            let Ok(state) = AdminState::builder(identity, secret)
                .config(config)
                .matrix_source(Arc::new(Fixed(peer_matrix(i as u64, 1024, 600))))
                .credentials(Arc::new(creds))
                .build()
            else {
                continue;
            };
            if i == 0 {
                entry = Some(state.clone());
            }
            let app = keyviz_admin::router(state);
            tokio::spawn(async move {
                let _ =
                    axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>()).await;
            });
        }
        let token = entry
            .and_then(|s| s.issue_session("bench", Role::ReadOnly).ok())
            .map(|s| s.cookie_value)
            .unwrap_or_default();
        (
            format!("http://{}/admin/api/v1/keyviz/matrix?rows=1024", addrs[0]),
            format!("admin_session={token}"),
        )
    });
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let fetch = || async {
        let req = http::Request::get(url.as_str())
            .header("cookie", cookie.as_str())
            .body(Empty::<Bytes>::new());
        let Ok(req) = req else { return 0 };
        match client.request(req).await {
            Ok(resp) => resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().len())
                .unwrap_or(0),
            Err(_) => 0,
        }
    };
    let size = rt.block_on(fetch());
    assert!(size > 100_000, "fan-out answer too small: {size} bytes");
    let mut g = c.benchmark_group("fanout");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("loopback_3_nodes_1024x600", |b| {
        b.iter(|| rt.block_on(fetch()))
    });
    g.finish();
}

criterion_group!(benches, decode, fanout);
criterion_main!(benches);
