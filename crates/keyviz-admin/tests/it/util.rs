//! Shared helpers: real servers on 127.0.0.1:0, an HTTP client, fixed matrix sources, fake
//! peers and login.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use keyviz::{Matrix, MatrixQuery, MatrixRow, RouteSpec, Sampler, SamplerConfig, Series};
use keyviz_admin::peer::{GuardConfig, PeerGuard, PeerKeys, signing};
use keyviz_admin::{
    AdminConfig, AdminState, ClusterSecret, MatrixSource, Membership, NodeIdentity, Role,
    SourceError, StaticCredentials,
};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The cluster secret every test node shares.
pub(crate) const SECRET: &[u8] = b"keyviz-admin-integration-test-secret-0123456789";

pub(crate) fn secret() -> ClusterSecret {
    ClusterSecret::new(SECRET.to_vec(), None).expect("test secret is long enough")
}

/// The test cluster secret as peer signing keys.
pub(crate) fn peer_keys() -> PeerKeys {
    PeerKeys::from_secret(&secret())
}

/// Wall clock, unix ms.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Headers of a GET of `path_and_query` signed by `issuer` for `audience` with `keys` at
/// `ts_ms` (a fresh nonce each call).
pub(crate) fn signed_get(
    keys: &PeerKeys,
    path_and_query: &str,
    issuer: &str,
    audience: &str,
    ts_ms: i64,
) -> Vec<(&'static str, String)> {
    let s = signing::sign_request(
        keys,
        &Method::GET,
        path_and_query,
        b"",
        issuer,
        audience,
        ts_ms,
    )
    .expect("sign");
    s.headers
        .into_iter()
        .map(|(n, v)| {
            let name: &'static str = match n.as_str() {
                "x-keyviz-peer-iss" => "x-keyviz-peer-iss",
                "x-keyviz-peer-aud" => "x-keyviz-peer-aud",
                "x-keyviz-peer-ts" => "x-keyviz-peer-ts",
                "x-keyviz-peer-nonce" => "x-keyviz-peer-nonce",
                _ => "x-keyviz-peer-sig",
            };
            (name, v.to_str().expect("ascii").to_string())
        })
        .collect()
}

/// The guard a fake peer holding `keys` runs as `node_id`: it verifies our signed requests
/// and signs its answers, as a real node does.
fn fake_guard(node_id: &str, keys: PeerKeys) -> Arc<PeerGuard> {
    Arc::new(PeerGuard::new(
        keys,
        GuardConfig {
            self_id: node_id.to_string(),
            max_age: Duration::from_secs(10),
            max_skew: Duration::from_secs(30),
            age_bytes_per_sec: None,
            replay_capacity: 1024,
            request_cap: 64 * 1024,
            identity_path: Some("/admin/api/v1/keyviz/identity".into()),
            required: false,
        },
        |status, _code, message| (status, message).into_response(),
        now_ms,
    ))
}

/// Operators: alice (full), bob (read_only), carol (valid secret, no role).
pub(crate) fn creds() -> StaticCredentials {
    StaticCredentials::new()
        .with_plain("alice", "alice-secret", Some(Role::Full))
        .with_plain("bob", "bob-secret", Some(Role::ReadOnly))
        .with_plain("carol", "carol-secret", None)
}

/// A running server; aborted on drop.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

/// Serves `router` on `listener` and waits (deadline 5 s) until it accepts connections.
pub(crate) async fn serve_on(listener: TcpListener, router: Router) -> Server {
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server on {addr} not ready within 5 s"
        );
        tokio::task::yield_now().await;
    }
    Server { addr, task }
}

/// A response read to the end.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Resp {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn error_code(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub(crate) fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }
}

/// Sends one request (plain HTTP/1, fresh client) and reads the whole body.
pub(crate) async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> Resp {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    let req = b
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("request");
    let resp = client.request(req).await.expect("request sent");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

pub(crate) async fn get_with(url: &str, headers: &[(&str, String)]) -> Resp {
    send(Method::GET, url, headers, None).await
}

/// A logged-in browser: its Cookie header and CSRF token.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

impl Session {
    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        vec![("cookie", self.cookie.clone())]
    }

    pub(crate) fn write_headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("cookie", self.cookie.clone()),
            ("x-admin-csrf", self.csrf.clone()),
        ]
    }
}

pub(crate) async fn login_resp(server: &Server, key: &str, secret: &str) -> Resp {
    let body = serde_json::json!({"access_key": key, "secret_key": secret}).to_string();
    send(
        Method::POST,
        &server.url("/admin/api/v1/auth/login"),
        &[("content-type", "application/json".to_string())],
        Some(body.into_bytes()),
    )
    .await
}

pub(crate) async fn login(server: &Server, key: &str, secret: &str) -> Session {
    let r = login_resp(server, key, secret).await;
    assert_eq!(r.status, StatusCode::OK, "login failed: {}", r.text());
    let mut pairs = Vec::new();
    let mut csrf = String::new();
    for c in r.set_cookies() {
        let pair = c.split(';').next().unwrap_or_default().to_string();
        if let Some(v) = pair.strip_prefix("admin_csrf=") {
            csrf = v.to_string();
        }
        pairs.push(pair);
    }
    Session {
        cookie: pairs.join("; "),
        csrf,
    }
}

/// A matrix source serving fixed matrices per series, counting calls and recording queries.
pub(crate) struct FixedSource {
    pub(crate) matrices: Mutex<HashMap<Series, Matrix>>,
    pub(crate) calls: AtomicUsize,
    pub(crate) queries: Mutex<Vec<MatrixQuery>>,
    pub(crate) delay: Duration,
}

impl FixedSource {
    pub(crate) fn new(matrices: Vec<Matrix>) -> Arc<Self> {
        Self::with_delay(matrices, Duration::ZERO)
    }

    pub(crate) fn with_delay(matrices: Vec<Matrix>, delay: Duration) -> Arc<Self> {
        Arc::new(FixedSource {
            matrices: Mutex::new(matrices.into_iter().map(|m| (m.series, m)).collect()),
            calls: AtomicUsize::new(0),
            queries: Mutex::new(Vec::new()),
            delay,
        })
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl MatrixSource for FixedSource {
    fn matrix(&self, query: &MatrixQuery, _now: i64) -> Result<Matrix, SourceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.queries.lock().push(query.clone());
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        let mut m = self
            .matrices
            .lock()
            .get(&query.series)
            .cloned()
            .unwrap_or_else(|| Matrix::empty(query.series, 0, "2026-01-01T00:00:00Z".into()));
        // Like the core: the key filter comes before the row budget.
        m.rows
            .retain(|r| query.overlaps(r.start.as_deref().unwrap_or_default(), r.end.as_deref()));
        if let Some(budget) = query.row_budget.filter(|b| m.rows.len() > *b) {
            m.rows = keyviz::coarsen_rows(m.rows, budget, 256);
        }
        Ok(m)
    }
}

/// One row spec: bucket id, values, raft group ids, leader terms (empty = legacy).
pub(crate) type RowSpec<'a> = (&'a str, &'a [u64], &'a [u64], &'a [u64]);

/// A matrix over `cols` whose rows start at their bucket id's bytes.
pub(crate) fn mx(series: Series, cols: &[i64], rows: &[RowSpec<'_>]) -> Matrix {
    let mut rows: Vec<MatrixRow> = rows
        .iter()
        .map(|(id, v, g, t)| MatrixRow {
            bucket_id: (*id).to_string(),
            start: Some(id.as_bytes().to_vec()),
            end: None,
            route_count: 1,
            values: v.to_vec(),
            raft_group_ids: g.to_vec(),
            leader_terms: t.to_vec(),
            ..MatrixRow::default()
        })
        .collect();
    rows.sort_by(|a, b| a.start.cmp(&b.start));
    Matrix {
        column_unix_ms: cols.to_vec(),
        rows,
        series,
        generated_at: "2026-01-01T00:00:00Z".into(),
        step_ms: 0,
        node_id: None,
    }
}

/// Builds a node's state.
pub(crate) fn node_state(
    node_id: &str,
    addr: &str,
    source: Arc<dyn MatrixSource>,
    config: AdminConfig,
    membership: Option<Arc<dyn Membership>>,
) -> AdminState {
    let identity = NodeIdentity::new(node_id, addr).expect("identity");
    let mut b = AdminState::builder(identity, secret())
        .config(config)
        .matrix_source(source)
        .credentials(Arc::new(creds()));
    if let Some(m) = membership {
        b = b.membership(m);
    }
    b.build().expect("state")
}

/// Starts a node on `listener` advertising `listener`'s address.
pub(crate) async fn start_node(
    node_id: &str,
    listener: TcpListener,
    source: Arc<dyn MatrixSource>,
    config: AdminConfig,
) -> Server {
    let addr = listener.local_addr().expect("addr").to_string();
    let state = node_state(node_id, &addr, source, config, None);
    serve_on(listener, keyviz_admin::router(state)).await
}

/// What a fake peer does on its matrix endpoint.
#[derive(Clone)]
pub(crate) enum Behaviour {
    /// 200 with this body.
    Body(Bytes),
    /// This status and body.
    Status(u16, &'static str),
    /// 200, streaming `total` bytes of spaces in 64 KiB chunks after `{`.
    Stream { total: usize },
    /// Wait, then 200 with this body.
    Delay(Duration, Bytes),
    /// 200 signed over `signed`, but `sent` goes on the wire (a tampering middlebox).
    Tamper {
        /// What the answer MAC covers.
        signed: Bytes,
        /// What the client receives.
        sent: Bytes,
    },
}

/// Observations of a fake peer.
#[derive(Default)]
pub(crate) struct FakeLog {
    pub(crate) matrix_calls: AtomicUsize,
    pub(crate) bytes_sent: AtomicUsize,
    pub(crate) headers: Mutex<Vec<HeaderMap>>,
    pub(crate) queries: Mutex<Vec<String>>,
}

struct FakeState {
    node_id: String,
    behaviour: Behaviour,
    log: Arc<FakeLog>,
}

async fn fake_identity(State(s): State<Arc<FakeState>>) -> Response {
    axum::Json(serde_json::json!({"node_id": s.node_id})).into_response()
}

async fn fake_matrix(
    State(s): State<Arc<FakeState>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    s.log.matrix_calls.fetch_add(1, Ordering::SeqCst);
    s.log.headers.lock().push(headers);
    s.log.queries.lock().push(q.unwrap_or_default());
    match &s.behaviour {
        Behaviour::Body(b) | Behaviour::Tamper { signed: b, .. } => {
            (StatusCode::OK, b.clone()).into_response()
        }
        Behaviour::Status(code, body) => (
            StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            *body,
        )
            .into_response(),
        Behaviour::Delay(d, b) => {
            tokio::time::sleep(*d).await;
            (StatusCode::OK, b.clone()).into_response()
        }
        Behaviour::Stream { total } => {
            let total = *total;
            let log = s.log.clone();
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let stream = futures::stream::unfold(0usize, move |sent| {
                let chunk = chunk.clone();
                let log = log.clone();
                async move {
                    if sent >= total {
                        return None;
                    }
                    let piece = if sent == 0 {
                        Bytes::from_static(b"{")
                    } else {
                        chunk
                    };
                    log.bytes_sent.fetch_add(piece.len(), Ordering::SeqCst);
                    Some((
                        Ok::<Bytes, std::io::Error>(piece.clone()),
                        sent + piece.len(),
                    ))
                }
            });
            (StatusCode::OK, Body::from_stream(stream)).into_response()
        }
    }
}

/// Starts a fake peer holding the cluster secret, answering the identity probe with
/// `node_id` and its matrix endpoint with `behaviour`.
pub(crate) async fn fake_peer(node_id: &str, behaviour: Behaviour) -> (Server, Arc<FakeLog>) {
    fake_peer_at(
        node_id,
        behaviour,
        Some(peer_keys()),
        "/admin/api/v1/keyviz/matrix",
    )
    .await
}

/// A fake peer whose `path` does `behaviour`; with `keys` it verifies signed requests and
/// signs its answers (a streaming answer is left unsigned: the cap must stop it first),
/// without them it is an impostor that merely claims `node_id`.
pub(crate) async fn fake_peer_at(
    node_id: &str,
    behaviour: Behaviour,
    keys: Option<PeerKeys>,
    path: &str,
) -> (Server, Arc<FakeLog>) {
    let log = Arc::new(FakeLog::default());
    let tamper = match &behaviour {
        Behaviour::Tamper { sent, .. } => Some(sent.clone()),
        _ => None,
    };
    let streams = matches!(behaviour, Behaviour::Stream { .. });
    let state = Arc::new(FakeState {
        node_id: node_id.to_string(),
        behaviour,
        log: log.clone(),
    });
    let identity = Router::new().route("/admin/api/v1/keyviz/identity", get(fake_identity));
    let answers = Router::new().route(path, get(fake_matrix));
    let router = match keys {
        None => identity.merge(answers),
        Some(keys) => {
            let guard = fake_guard(node_id, keys);
            let layer =
                axum::middleware::from_fn_with_state(guard, keyviz_admin::peer::server::guard);
            if streams {
                identity.layer(layer).merge(answers)
            } else {
                identity.merge(answers).layer(layer)
            }
        }
    };
    let router = match tamper {
        None => router,
        Some(sent) => router.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let sent = sent.clone();
                async move {
                    let identity = req.uri().path().ends_with("/identity");
                    let r = next.run(req).await;
                    if identity {
                        return r;
                    }
                    let (mut parts, _) = r.into_parts();
                    parts.headers.remove(http::header::CONTENT_LENGTH);
                    Response::from_parts(parts, Body::from(sent))
                }
            },
        )),
    };
    (serve_on(bind().await, router.with_state(state)).await, log)
}

/// JSON body of a matrix as a peer would send it.
pub(crate) fn peer_body(mut m: Matrix, node_id: &str) -> Bytes {
    m.node_id = Some(node_id.to_string());
    Bytes::from(serde_json::to_vec(&m).expect("encode"))
}

/// A config listing `nodes` as static fan-out peers.
pub(crate) fn fanout_config(nodes: &[String]) -> AdminConfig {
    AdminConfig {
        fanout_nodes: nodes.to_vec(),
        ..AdminConfig::default()
    }
}

/// Values of row `bucket` in a response JSON.
pub(crate) fn row_values(v: &serde_json::Value, bucket: &str) -> Vec<u64> {
    v["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["bucket_id"] == bucket))
        .and_then(|r| r["values"].as_array())
        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_else(|| panic!("no row {bucket} in {v}"))
}

/// Start of route `id` in [`route_sampler`]: `k00042` (route `id` ends where `id + 1` starts).
pub(crate) fn route_key(id: u64) -> Vec<u8> {
    format!("k{id:05}").into_bytes()
}

/// A real sampler with one route per id in `ids`, each `[route_key(id), route_key(id + 1))`
/// with one write, flushed into one column at `1_700_000_060_000`.
pub(crate) fn route_sampler(ids: std::ops::Range<u64>) -> Arc<Sampler> {
    let t0 = 1_700_000_000_000i64;
    let sampler = Sampler::new(SamplerConfig::default(), t0).expect("sampler");
    for id in ids {
        sampler
            .register_route(RouteSpec {
                id,
                start: route_key(id),
                end: Some(route_key(id + 1)),
                group: 1,
            })
            .expect("route");
        sampler.observe_write(id, &route_key(id), 1, 1, 1, t0);
    }
    let _ = sampler.flush(t0 + 60_000);
    Arc::new(sampler)
}

/// A source that records every query and delegates to `inner`.
pub(crate) struct RecordingSource {
    pub(crate) inner: Arc<dyn MatrixSource>,
    pub(crate) queries: Mutex<Vec<MatrixQuery>>,
}

impl RecordingSource {
    pub(crate) fn new(inner: Arc<dyn MatrixSource>) -> Arc<Self> {
        Arc::new(RecordingSource {
            inner,
            queries: Mutex::new(Vec::new()),
        })
    }
}

impl MatrixSource for RecordingSource {
    fn matrix(&self, query: &MatrixQuery, now: i64) -> Result<Matrix, SourceError> {
        self.queries.lock().push(query.clone());
        self.inner.matrix(query, now)
    }
}

/// Standard padded base64 of `key`, percent-encoded for a query string.
pub(crate) fn b64q(key: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .encode(key)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// `(bucket_id, aggregate)` of every row of a response JSON, in order.
pub(crate) fn row_ids(v: &serde_json::Value) -> Vec<(String, bool)> {
    v["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r["bucket_id"].as_str().unwrap_or_default().to_string(),
                        r["aggregate"].as_bool().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A source keeping crafted hot keys per series (and empty matrices), recording every
/// hot-key query it is asked.
pub(crate) struct HotSource {
    pub(crate) hot: Mutex<HashMap<Series, keyviz::hotkeys::NodeHotKeys>>,
    pub(crate) queries: Mutex<Vec<keyviz::hotkeys::HotKeyQuery>>,
}

impl HotSource {
    pub(crate) fn new(hot: Vec<keyviz::hotkeys::NodeHotKeys>) -> Arc<Self> {
        Arc::new(HotSource {
            hot: Mutex::new(hot.into_iter().map(|h| (h.series, h)).collect()),
            queries: Mutex::new(Vec::new()),
        })
    }
}

impl MatrixSource for HotSource {
    fn matrix(&self, query: &MatrixQuery, _now: i64) -> Result<Matrix, SourceError> {
        Ok(Matrix::empty(
            query.series,
            0,
            "2026-01-01T00:00:00Z".into(),
        ))
    }

    fn hot_keys(
        &self,
        query: &keyviz::hotkeys::HotKeyQuery,
        _now: i64,
    ) -> Result<keyviz::hotkeys::NodeHotKeys, SourceError> {
        self.queries.lock().push(query.clone());
        Ok(self
            .hot
            .lock()
            .get(&query.series)
            .cloned()
            .unwrap_or_else(|| keyviz::hotkeys::NodeHotKeys {
                series: query.series,
                mode: keyviz::hotkeys::HotKeyMode::Raw,
                node_id: None,
                parts: Vec::new(),
            }))
    }
}

/// One hot-key part: `(group, term, total, [(key, count)])`.
pub(crate) type PartSpec<'a> = (u64, u64, u64, &'a [(&'a str, u64)]);

/// One node's exact hot keys.
pub(crate) fn node_hot(series: Series, parts: &[PartSpec<'_>]) -> keyviz::hotkeys::NodeHotKeys {
    use keyviz::hotkeys::{HotItem, HotKeyMode, HotPart, HotSummary, NodeHotKeys};
    NodeHotKeys {
        series,
        mode: HotKeyMode::Raw,
        node_id: None,
        parts: parts
            .iter()
            .map(|(group, term, total, keys)| {
                let mut items: Vec<HotItem> = keys
                    .iter()
                    .map(|(k, n)| HotItem {
                        key: k.as_bytes().to_vec(),
                        estimate: *n,
                        lower: *n,
                        upper: *n,
                        truncated: false,
                        seen: 0,
                    })
                    .collect();
                items.sort_by(|a, b| b.estimate.cmp(&a.estimate).then(a.key.cmp(&b.key)));
                HotPart {
                    group: *group,
                    term: *term,
                    summary: HotSummary {
                        total: *total,
                        floor: 0,
                        sampled: false,
                        unit_variance: 0,
                        items,
                    },
                    spans: Vec::new(),
                }
            })
            .collect(),
    }
}

/// Starts a fake peer holding the secret whose hot-keys endpoint does `behaviour`
/// (matrix: 404).
pub(crate) async fn fake_hot_peer(node_id: &str, behaviour: Behaviour) -> (Server, Arc<FakeLog>) {
    fake_peer_at(
        node_id,
        behaviour,
        Some(peer_keys()),
        "/admin/api/v1/keyviz/hotkeys",
    )
    .await
}

/// JSON body of a node's hot keys as a peer would send it.
pub(crate) fn hot_body(mut hot: keyviz::hotkeys::NodeHotKeys, node_id: &str) -> Bytes {
    hot.node_id = Some(node_id.to_string());
    Bytes::from(serde_json::to_vec(&hot).expect("encode"))
}
