//! Peer matrix decoding (warm and cold heap) and end-to-end fan-out over loopback: 3 nodes
//! with full matrices, and 32 peers x 10 000 active routes x 600 columns through the
//! two-round protocol on shared row boundaries.
//!
//! Run: `cargo bench -p keyviz-admin --bench fanout -- --warm-up-time 1 --measurement-time 3`
//! (a filter such as `fanout_32` runs one group; the 32 peers run in a child process, this
//! same binary started with `KEYVIZ_BENCH_PEERS=32`, so this process is the aggregator
//! alone and its peak RSS is printed after the group).

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use keyviz::boundaries::{Boundaries, IdentityRun, RowTotal, RunBoundaryMatrix, coarsen_onto};
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

/// Gives freed heap back to the OS, so the next decode faults its memory in again (the cold
/// case: a node that has not just decoded a matrix of the same size). The one audited
/// `unsafe` of the bench: an FFI call with no argument that touches no Rust object.
#[allow(unsafe_code)]
fn cold_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; no Rust object is affected.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn decode(c: &mut Criterion) {
    if !wants("peer_decode") {
        return;
    }
    let m = peer_matrix(0, 1024, 4096);
    let body = serde_json::to_vec(&m).unwrap_or_default();
    let compact = keyviz_admin::fanout::compact::encode(&m).unwrap_or_default();
    let one = Boundaries::plan([keyviz::boundaries::row_totals(&m).as_slice()], 1024);
    let boundary =
        keyviz_admin::fanout::compact::encode_boundary(&coarsen_onto(m.clone(), &one, 256))
            .unwrap_or_default();
    drop(m);
    let mut g = c.benchmark_group("peer_decode");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Bytes(body.len() as u64));
    type Decoder = fn(&[u8]) -> usize;
    let cases: [(&str, &[u8], Decoder); 4] = [
        ("json_1024x4096", &body, |b| {
            keyviz_admin::fanout::decode::decode_matrix(b).map_or(0, |m| m.rows.len())
        }),
        ("compact_1024x4096", &compact, |b| {
            keyviz_admin::fanout::decode::decode_compact_matrix(b).map_or(0, |m| m.rows.len())
        }),
        ("boundary_1024x4096", &boundary, |b| {
            keyviz_admin::fanout::compact::decode_boundary(b).map_or(0, |m| m.matrix.rows.len())
        }),
        // What round 2 does: into a packed buffer, validated, column bound included (a
        // fresh buffer per call here; the fan-out reuses its buffers).
        ("boundary_packed_1024x4096", &boundary, |b| {
            let mut p = keyviz::boundaries::PackedBoundaryMatrix::default();
            keyviz_admin::fanout::compact::decode_boundary_packed(
                b,
                &mut p,
                keyviz::boundaries::MAX_BOUNDARIES,
                keyviz_admin::fanout::bounds::MAX_COLUMN_TOTAL,
            )
            .map_or(0, |()| p.header.rows.len())
        }),
    ];
    for (name, bytes, f) in cases {
        assert_eq!(f(bytes), 1024, "{name} does not decode");
        g.bench_function(format!("{name}_warm_heap"), |b| {
            b.iter(|| f(black_box(bytes)))
        });
        g.bench_function(format!("{name}_cold_heap"), |b| {
            b.iter_batched(cold_heap, |()| f(black_box(bytes)), BatchSize::PerIteration)
        });
    }
    g.finish();
}

/// One peer's round-2 answer as `fanout_32` sends it (a synthetic node's 10 000 routes ×
/// 600 columns on the 1 024 boundaries planned from its totals), `KVMB2`: encoded by the
/// peer, decoded into the packed buffer by the aggregator, the two codec steps each of the
/// 32 answers of a query takes.
fn round2_codec(c: &mut Criterion) {
    if !wants("round2_codec") {
        return;
    }
    let node = Synthetic::new(1);
    let q = MatrixQuery::default();
    let totals = node.row_totals(&q, 0).unwrap_or_default();
    let plan = Boundaries::plan([totals.as_slice()], 1024);
    let Ok(answer) = node.matrix_on_boundaries(&q, &plan, 0) else {
        return;
    };
    let body = keyviz_admin::fanout::compact::encode_boundary_runs_v2(&answer).unwrap_or_default();
    let mut packed = keyviz::boundaries::PackedBoundaryMatrix::default();
    let decode = |body: &[u8], packed: &mut keyviz::boundaries::PackedBoundaryMatrix| {
        keyviz_admin::fanout::compact::decode_boundary_packed(
            body,
            packed,
            keyviz::boundaries::MAX_BOUNDARIES,
            keyviz_admin::fanout::bounds::MAX_COLUMN_TOTAL,
        )
        .map_or(0, |()| packed.header.rows.len())
    };
    assert_eq!(decode(&body, &mut packed), answer.len(), "KVMB2 decodes");
    let values = answer.values();
    assert_eq!(packed.values, values, "KVMB2 decodes to the values sent");
    let mut g = c.benchmark_group("round2_codec");
    g.throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("encode_v2_1024x600", |b| {
        b.iter(|| {
            keyviz_admin::fanout::compact::encode_boundary_runs_v2(black_box(&answer))
                .map_or(0, |v| v.len())
        })
    });
    g.bench_function("decode_packed_v2_1024x600", |b| {
        b.iter(|| decode(black_box(&body), &mut packed))
    });
    g.finish();
    println!(
        "round2_codec: KVMB2 body {} bytes for {} rows",
        body.len(),
        answer.len()
    );
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
    if !wants("fanout/loopback_3_nodes_1024x600") {
        return;
    }
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

/// Whether the command line's filters (criterion's positional arguments) select `name`;
/// lets a filtered run skip the setup of groups it does not measure.
fn wants(name: &str) -> bool {
    let mut filters = Vec::new();
    let mut skip_value = false;
    for a in std::env::args().skip(1) {
        if skip_value {
            skip_value = false;
            continue;
        }
        if a.starts_with("--") {
            skip_value = !matches!(
                a.as_str(),
                "--bench"
                    | "--test"
                    | "--list"
                    | "--exact"
                    | "--quiet"
                    | "--verbose"
                    | "--discard-baseline"
            ) && !a.contains('=');
            continue;
        }
        filters.push(a);
    }
    filters.is_empty()
        || filters
            .iter()
            .any(|f| name.contains(f.as_str()) || f.contains(name))
}

const ROUTES: u64 = 10_000;
const COLS: usize = 600;
const PEERS: usize = 32;

fn route_key(r: u64) -> Vec<u8> {
    (r * 1_000).to_be_bytes().to_vec()
}

/// A node whose reads follow `weight(route) x profile(node, column)`: every one of the
/// 10 000 routes active in every column on every node (the heaviest wire: no zero cell),
/// a few hot routes 50x the rest. Answers both fan-out rounds in O(rows x columns) from
/// prefix sums, as a node that keeps per-route totals could, so the bench measures the
/// fan-out (transport, codec, plan, fold, encode) and not 32 local queries sharing 2 cores;
/// the local query is measured by the core's matrix benches.
struct Synthetic {
    node: u64,
    keys: Vec<Vec<u8>>,
    /// `prefix[r]` = sum of the weights of routes `0..r`.
    prefix: Vec<u64>,
}

impl Synthetic {
    fn new(node: u64) -> Self {
        let weight = |r: u64| {
            let w = 1 + (r.wrapping_mul(2_654_435_761) >> 7) % 97;
            if r.is_multiple_of(997) { w * 50 } else { w }
        };
        let mut prefix = vec![0u64; ROUTES as usize + 1];
        for r in 0..ROUTES {
            prefix[r as usize + 1] = prefix[r as usize] + weight(r);
        }
        Synthetic {
            node,
            keys: (0..ROUTES).map(route_key).collect(),
            prefix,
        }
    }

    fn profile(&self, c: usize) -> u64 {
        1 + (self.node * 7 + c as u64 * 13) % 17
    }

    fn columns() -> Vec<i64> {
        (0..COLS as i64)
            .map(|c| 1_699_999_980_000 + c * 60_000)
            .collect()
    }

    /// This node's total of every cell, for checking conservation.
    fn grand_total(&self) -> u64 {
        let f: u64 = (0..COLS).map(|c| self.profile(c)).sum();
        self.prefix[ROUTES as usize] * f
    }

    fn row(&self, lo: usize, hi: usize) -> MatrixRow {
        let w = self.prefix[hi] - self.prefix[lo];
        let (group, term) = if hi - lo == 1 {
            (lo as u64 % 64 + 1, 12)
        } else {
            (0, 0)
        };
        MatrixRow {
            values: (0..COLS).map(|c| w * self.profile(c)).collect(),
            raft_group_ids: vec![group; COLS],
            leader_terms: vec![term; COLS],
            ..self.meta(lo, hi)
        }
    }

    /// The metadata of the row of routes `lo..hi` (a route's own row when it is one).
    fn meta(&self, lo: usize, hi: usize) -> MatrixRow {
        let end = Some(route_key(hi as u64));
        if hi - lo == 1 {
            return MatrixRow {
                bucket_id: format!("route:{lo}"),
                start: Some(self.keys[lo].clone()),
                end,
                route_count: 1,
                ..MatrixRow::default()
            };
        }
        MatrixRow {
            bucket_id: keyviz::virtual_bucket_name(&self.keys[lo], end.as_deref()),
            start: Some(self.keys[lo].clone()),
            end,
            aggregate: true,
            route_ids: (lo as u64..hi as u64).take(256).collect(),
            route_ids_truncated: hi - lo > 256,
            route_count: (hi - lo) as u64,
            ..MatrixRow::default()
        }
    }

    fn matrix_of(&self, series: keyviz::Series, rows: Vec<MatrixRow>) -> Matrix {
        Matrix {
            column_unix_ms: Self::columns(),
            rows,
            series,
            generated_at: "2026-12-01T00:00:00Z".into(),
            step_ms: 60_000,
            node_id: Some(format!("p{}", self.node)),
        }
    }
}

impl MatrixSource for Synthetic {
    fn matrix(&self, q: &MatrixQuery, _now: i64) -> Result<Matrix, SourceError> {
        let rows = (0..ROUTES as usize).map(|r| self.row(r, r + 1)).collect();
        let mut m = self.matrix_of(q.series, rows);
        if let Some(b) = q.row_budget {
            m.rows = keyviz::coarsen_rows(m.rows, b, 256);
        }
        Ok(m)
    }

    fn row_totals(&self, _q: &MatrixQuery, _now: i64) -> Result<Vec<RowTotal>, SourceError> {
        let f: u64 = (0..COLS).map(|c| self.profile(c)).sum();
        Ok((0..ROUTES as usize)
            .map(|r| RowTotal {
                start: self.keys[r].clone(),
                total: (self.prefix[r + 1] - self.prefix[r]) * f,
            })
            .collect())
    }

    /// Built in run form, as a source that keeps its identities as runs would: one run of
    /// the route's group and term for a route's row, one of 0 (no identity) for a joined
    /// row; no per-cell identity array.
    fn matrix_on_boundaries(
        &self,
        q: &MatrixQuery,
        b: &Boundaries,
        _now: i64,
    ) -> Result<RunBoundaryMatrix, SourceError> {
        let keys = b.keys();
        let mut out = RunBoundaryMatrix::new(self.matrix_of(q.series, Vec::new()));
        out.reserve(keys.len(), keys.len() * COLS);
        for i in 0..keys.len() {
            let lo = self.keys.partition_point(|k| k < &keys[i]);
            let hi = keys.get(i + 1).map_or(self.keys.len(), |next| {
                self.keys.partition_point(|k| k < next)
            });
            if lo >= hi {
                continue;
            }
            let w = self.prefix[hi] - self.prefix[lo];
            let values = (0..COLS).map(|c| w * self.profile(c));
            let run = |value: u64| {
                [IdentityRun {
                    len: COLS as u32,
                    value,
                }]
            };
            let (groups, terms) = if hi - lo == 1 {
                (run(lo as u64 % 64 + 1), run(12))
            } else {
                (run(0), run(0))
            };
            out.push_row(self.meta(lo, hi), values, &groups, &terms, &[]);
        }
        Ok(out)
    }
}

fn proc_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// CPU seconds (user + system) used so far by process `pid` ("self" for this one), from
/// `/proc/<pid>/stat` (Linux clock ticks are 1/100 s).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

/// One recorded peer: the answers a real peer of `Synthetic` gives, encoded by the real
/// encoders once, then served from memory with real request checks and answer MACs. Lets
/// the bench time the aggregator alone while 32 peers share its 2 cores.
struct Recorded {
    node_id: String,
    source: Synthetic,
    keys: keyviz_admin::peer::PeerKeys,
    replay: keyviz_admin::peer::signing::ReplayCache,
    totals: Bytes,
    /// The round-2 answer for the encoding and boundaries last asked (the plan is the same
    /// every query).
    boundary: std::sync::Mutex<Option<(String, Bytes)>>,
}

impl Recorded {
    fn new(node: u64) -> Self {
        let source = Synthetic::new(node);
        let node_id = format!("p{node}");
        let q = MatrixQuery::default();
        let totals = keyviz_admin::fanout::compact::encode_totals(
            &keyviz_admin::fanout::compact::NodeTotals {
                node_id: Some(node_id.clone()),
                generated_at: "2026-12-01T00:00:00Z".into(),
                totals: source.row_totals(&q, 0).unwrap_or_default(),
            },
        )
        .unwrap_or_default();
        let secret = ClusterSecret::new(SECRET.to_vec(), None).ok();
        Recorded {
            node_id,
            source,
            keys: secret
                .as_ref()
                .map(keyviz_admin::peer::PeerKeys::from_secret)
                .unwrap_or_else(|| keyviz_admin::peer::PeerKeys::new(SECRET.to_vec(), None)),
            replay: keyviz_admin::peer::signing::ReplayCache::new(4096),
            totals: Bytes::from(totals),
            boundary: std::sync::Mutex::new(None),
        }
    }

    /// The answer to one request: verified like a real peer verifies it, signed like a
    /// real peer signs it.
    fn answer(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        use keyviz_admin::peer::signing;
        let pq = uri.path_and_query().map_or("", |p| p.as_str());
        let identity = uri.path() == keyviz_admin::api::IDENTITY_PATH;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let accept = signing::Acceptance {
            self_id: &self.node_id,
            identity_challenge: identity,
            max_age_ms: 60_000,
            max_skew_ms: 60_000,
        };
        let req = match signing::verify_request(
            &self.keys,
            method,
            pq,
            headers,
            b"",
            &accept,
            now,
            &self.replay,
        ) {
            Ok(r) => r,
            Err(e) => return (http::StatusCode::UNAUTHORIZED, e.to_string()).into_response(),
        };
        let query = uri.query().unwrap_or("");
        let (body, media) = if identity {
            (
                Bytes::from(format!("{{\"node_id\":\"{}\"}}", self.node_id)),
                "application/json",
            )
        } else if query.split('&').any(|p| p == "round=totals") {
            (
                self.totals.clone(),
                keyviz_admin::fanout::compact::TOTALS_CONTENT_TYPE,
            )
        } else if let Some(b) = query.split('&').find_map(|p| p.strip_prefix("boundaries=")) {
            let v2 = headers
                .get_all(http::header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| {
                    t.split(';').next().map(str::trim)
                        == Some(keyviz_admin::fanout::compact::BOUNDARY_V2_CONTENT_TYPE)
                });
            let key = format!("{v2}:{b}");
            let Ok(mut slot) = self.boundary.lock() else {
                return http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            let cached = slot
                .as_ref()
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.clone());
            let body = match cached {
                Some(v) => v,
                None => {
                    let Ok(bounds) = keyviz_admin::fanout::compact::decode_boundaries(b) else {
                        return http::StatusCode::BAD_REQUEST.into_response();
                    };
                    let q = MatrixQuery {
                        series: Series::Reads,
                        ..MatrixQuery::default()
                    };
                    let mut bm = match self.source.matrix_on_boundaries(&q, &bounds, now) {
                        Ok(bm) => bm,
                        Err(e) => {
                            return (http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                                .into_response();
                        }
                    };
                    bm.set_node_id(Some(self.node_id.clone()));
                    // As a real peer: `KVMB2` when the aggregator asks for it.
                    let v = Bytes::from(if v2 {
                        keyviz_admin::fanout::compact::encode_boundary_runs_v2(&bm)
                            .unwrap_or_default()
                    } else {
                        keyviz_admin::fanout::compact::encode_boundary_runs(&bm).unwrap_or_default()
                    });
                    *slot = Some((key, v.clone()));
                    v
                }
            };
            let media = if v2 {
                keyviz_admin::fanout::compact::BOUNDARY_V2_CONTENT_TYPE
            } else {
                keyviz_admin::fanout::compact::BOUNDARY_CONTENT_TYPE
            };
            (body, media)
        } else {
            return (
                http::StatusCode::NOT_FOUND,
                "recorded peers answer the two rounds only",
            )
                .into_response();
        };
        let Ok(signed) = signing::sign_response(&self.keys, &req, &self.node_id, 200, &body) else {
            return http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let mut resp = (http::StatusCode::OK, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(media),
        );
        for (name, value) in signed {
            h.insert(name, value);
        }
        resp
    }
}

/// Peer mode (`KEYVIZ_BENCH_PEERS=n`): serves `n` admin routers on 127.0.0.1 (with
/// `KEYVIZ_BENCH_RECORDED=1`: `n` recorded peers instead), prints `PEERS addr,addr,...`,
/// and exits when stdin closes (the bench process ended).
fn run_peers(n: usize) {
    let recorded = std::env::var("KEYVIZ_BENCH_RECORDED").is_ok_and(|v| v == "1");
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        return;
    };
    let addrs = rt.block_on(async {
        let mut addrs = Vec::new();
        for i in 0..n {
            let Ok(l) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
                continue;
            };
            let Ok(addr) = l.local_addr() else { continue };
            if recorded {
                let peer = Arc::new(Recorded::new(i as u64 + 1));
                let app = axum::Router::new().fallback(
                    move |method: http::Method, uri: http::Uri, headers: http::HeaderMap| {
                        let peer = peer.clone();
                        async move { peer.answer(&method, &uri, &headers) }
                    },
                );
                tokio::spawn(async move {
                    let _ = axum::serve(l, app).await;
                });
                addrs.push(addr.to_string());
                continue;
            }
            let (Ok(identity), Ok(secret)) = (
                NodeIdentity::new(format!("p{}", i + 1), addr.to_string()),
                ClusterSecret::new(SECRET.to_vec(), None),
            ) else {
                continue;
            };
            let Ok(state) = AdminState::builder(identity, secret)
                .matrix_source(Arc::new(Synthetic::new(i as u64 + 1)))
                .build()
            else {
                continue;
            };
            let app = keyviz_admin::router(state);
            tokio::spawn(async move {
                let _ =
                    axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>()).await;
            });
            addrs.push(addr.to_string());
        }
        addrs
    });
    let mut out = std::io::stdout();
    let _ = writeln!(out, "PEERS {}", addrs.join(","));
    let _ = out.flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(rt);
}

fn fanout_32(c: &mut Criterion) {
    // Real admin routers as peers: their own work (two answers each per query) shares the
    // two cores with the aggregator.
    fanout_32_case(c, "peers_10k_routes_600_columns_to_1024_rows", false);
    // Recorded peers: the same answers, encoded once, served with real signatures, so the
    // time is the aggregator's (plus transport and signing on both sides).
    fanout_32_case(
        c,
        "recorded_peers_10k_routes_600_columns_to_1024_rows",
        true,
    );
}

fn fanout_32_case(c: &mut Criterion, case: &str, recorded: bool) {
    if !wants(&format!("fanout_32/{case}")) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let Ok(mut child) = std::process::Command::new(exe)
        .env("KEYVIZ_BENCH_PEERS", PEERS.to_string())
        .env("KEYVIZ_BENCH_RECORDED", if recorded { "1" } else { "0" })
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        return;
    };
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let peers: Vec<String> = line
        .trim()
        .strip_prefix("PEERS ")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(peers.len(), PEERS, "peer process answered {line:?}");
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
    else {
        return;
    };
    let (url, cookie) = rt.block_on(async {
        let Ok(l) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
            return (String::new(), String::new());
        };
        let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let (Ok(identity), Ok(secret)) = (
            NodeIdentity::new("p0", addr.clone()),
            ClusterSecret::new(SECRET.to_vec(), None),
        ) else {
            return (String::new(), String::new());
        };
        let config = AdminConfig {
            fanout_nodes: peers.clone(),
            result_reuse: Duration::ZERO,
            fanout_timeout: Duration::from_secs(10),
            ..AdminConfig::default()
        };
        let creds = StaticCredentials::new().with_plain("bench", "bench", Some(Role::ReadOnly));
        let Ok(state) = AdminState::builder(identity, secret)
            .config(config)
            .matrix_source(Arc::new(Synthetic::new(0)))
            .credentials(Arc::new(creds))
            .build()
        else {
            return (String::new(), String::new());
        };
        let token = state
            .issue_session("bench", Role::ReadOnly)
            .map(|s| s.cookie_value)
            .unwrap_or_default();
        let app = keyviz_admin::router(state);
        tokio::spawn(async move {
            let _ = axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>()).await;
        });
        (
            format!("http://{addr}/admin/api/v1/keyviz/matrix?rows=1024&series=reads"),
            format!("admin_session={token}"),
        )
    });
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let fetch = || async {
        let req = http::Request::get(url.as_str())
            .header("cookie", cookie.as_str())
            .body(Empty::<Bytes>::new());
        let Ok(req) = req else { return Bytes::new() };
        match client.request(req).await {
            Ok(resp) => resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default(),
            Err(_) => Bytes::new(),
        }
    };
    // The answer is checked once: 1 024 rows, every peer merged, totals conserved.
    let body = rt.block_on(fetch());
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let rows = v["rows"].as_array().map_or(0, Vec::len);
    assert!(rows > 1000 && rows <= 1024, "{rows} rows");
    assert_eq!(v["fanout"]["responded"], PEERS + 1, "{}", v["fanout"]);
    let total: u64 = v["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|x| x.as_u64())
        .sum();
    let want: u64 = (0..=PEERS as u64)
        .map(|n| Synthetic::new(n).grand_total())
        .sum();
    assert_eq!(
        total, want,
        "cluster total is not the sum of the node totals"
    );
    drop(v);
    drop(body);
    // The check's parsed answer is the harness's, not the fan-out's: its freed heap goes
    // back to the OS before the peak of the measured loop is taken.
    cold_heap();
    println!(
        "fanout_32 {case}: aggregator VmRSS before the measured loop {}, loadavg {}",
        proc_status("VmRSS:"),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    // Peak RSS of the measured loop alone (resets VmHWM to the current RSS).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let child_pid = child.id().to_string();
    let (cpu_self, cpu_peers) = (cpu_seconds("self"), cpu_seconds(&child_pid));
    let queries = std::sync::atomic::AtomicU64::new(0);
    let mut g = c.benchmark_group("fanout_32");
    g.sample_size(10);
    g.bench_function(case, |b| {
        b.iter(|| {
            queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.block_on(fetch()).len()
        })
    });
    g.finish();
    let n = queries.load(std::sync::atomic::Ordering::Relaxed).max(1) as f64;
    println!(
        "fanout_32 {case}: {n} queries; CPU per query: aggregator {:.0} ms, 32 peers together {:.0} ms; \
         aggregator VmHWM during the measured loop {}, VmRSS after {}, loadavg {}",
        (cpu_seconds("self") - cpu_self) * 1000.0 / n,
        (cpu_seconds(&child_pid) - cpu_peers) * 1000.0 / n,
        proc_status("VmHWM:"),
        proc_status("VmRSS:"),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    drop(child.stdin.take());
    let _ = child.wait();
}

criterion_group!(benches, decode, round2_codec, fanout, fanout_32);

fn main() {
    if let Some(n) = std::env::var("KEYVIZ_BENCH_PEERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        run_peers(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
