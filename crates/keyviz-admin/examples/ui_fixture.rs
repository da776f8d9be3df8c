//! A small real cluster for the web UI's end-to-end tests and for trying the UI by hand.
//!
//! Starts three admin routers on 127.0.0.1 ports, each with its own `keyviz::Sampler` fed with
//! synthetic traffic (a constant hot range whose route `user:0022` sends all its heavy writes to
//! the one key `user:0022:counter`, a diagonal sweep, light background, and a different read
//! pattern with the read-hot key `user:0045:profile`), fanning out to each other:
//! - `n1` is the entry node (the browser talks to it);
//! - `n2` can be stopped through the control endpoint to make the cluster view degraded;
//! - group 2 changes leader term halfway through the history (a leadership change: `n1` takes
//!   over from `n2`, as every node's `term_leaders` says), and at the same moment route 30's
//!   writes step up and route 10's step down (for diff mode);
//! - `n3` is a crafted peer: besides its own groups it reports a copy of one of n1's rows with
//!   different write values for the same (raft group, leader term), which the merge must flag
//!   as conflicting cells; it also reports a different end key for `route:<DIVERGENT_ROUTE>`, which
//!   the merge reports as a `catalog_divergence` warning.
//!
//! One JSON line on stdout gives the ports and credentials; then the process runs until it is
//! killed or `POST /shutdown` arrives on the control port. `POST /stop?node=n2` stops a node,
//! `POST /start?node=n2` starts it again on the same address (a restart that keeps its history).
//!
//! ```text
//! cargo run -p keyviz-admin --example ui_fixture -- [--step-ms 5000] [--history-min 60] [--n2-outage-s START:LEN]
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use keyviz::hotkeys::{HotKeyQuery, NodeHotKeys};
use keyviz::{Matrix, MatrixQuery, MatrixRow, RouteSpec, Sampler, SamplerConfig};
use keyviz_admin::{
    AdminConfig, AdminState, ClusterSecret, MatrixSource, NodeIdentity, Role, SourceError,
    StaticCredentials, TermLeader,
};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, oneshot};

/// Number of routes (key ranges) every node tracks.
const ROUTES: u64 = 64;
/// Routes with constant heavy writes.
const HOT: std::ops::Range<u64> = 20..24;
/// Routes with heavy reads (so switching series changes the picture).
const READ_HOT: std::ops::Range<u64> = 44..48;
/// The row the crafted peer contradicts (group 1, led by n1, inside the hot range).
const CONFLICT_ROUTE: u64 = 21;
/// The row whose key range the crafted peer misreports (catalog divergence); led by n1.
const DIVERGENT_ROUTE: u64 = 42;
/// The hot route whose heavy writes all go to one named key, so the hot-key panels have a
/// clear winner to name (the other hot routes spread theirs over 50 keys).
const HOT_KEY_ROUTE: u64 = 22;
/// The read-hot route whose heavy reads all go to one named key.
const READ_HOT_KEY_ROUTE: u64 = 45;
/// Extra writes per window on each hot route.
const HOT_WRITES: u64 = 400;
/// Extra reads per window on each read-hot route.
const HOT_READS: u64 = 300;
/// A route whose writes step up halfway through the history (at the leadership change), and
/// one whose writes step down there: diff mode's tests compare the two halves and need a range
/// that grew, one that shrank and the steady hot range that did not change.
const STEP_UP_ROUTE: u64 = 30;
const STEP_DOWN_ROUTE: u64 = 10;
/// Extra writes per window on the step routes (while they are on).
const STEP_WRITES: u64 = 60;
/// The raft group whose leader term changes halfway through the history.
const LEADER_CHANGE_GROUP: u64 = 2;
/// Raft groups; group g is led by node g-1 with term 7+g.
const GROUPS: u64 = 3;
/// The node that leads `LEADER_CHANGE_GROUP` after the change (it was `n2` before).
const NEW_LEADER: &str = "n1";

/// Who led which term, as a real node's applied log would say: group g's first term by
/// `n<g>`, and `LEADER_CHANGE_GROUP`'s second term by [`NEW_LEADER`].
fn term_leader_table() -> Vec<TermLeader> {
    let mut out: Vec<TermLeader> = (1..=GROUPS)
        .map(|g| TermLeader {
            group: g,
            term: 7 + g,
            node_id: format!("n{g}"),
        })
        .collect();
    out.push(TermLeader {
        group: LEADER_CHANGE_GROUP,
        term: 8 + LEADER_CHANGE_GROUP,
        node_id: NEW_LEADER.to_string(),
    });
    out
}

/// The leaders of `wanted` in `table`.
fn lookup_leaders(table: &[TermLeader], wanted: &[(u64, u64)]) -> Vec<TermLeader> {
    table
        .iter()
        .filter(|l| wanted.contains(&(l.group, l.term)))
        .cloned()
        .collect()
}

/// A plain node's source: its sampler, plus the term leaders.
struct FixtureSource {
    sampler: Arc<Sampler>,
    leaders: Arc<Vec<TermLeader>>,
}

impl MatrixSource for FixtureSource {
    fn matrix(&self, query: &MatrixQuery, now_unix_ms: i64) -> Result<Matrix, SourceError> {
        MatrixSource::matrix(self.sampler.as_ref(), query, now_unix_ms)
    }

    fn hot_keys(&self, query: &HotKeyQuery, now_unix_ms: i64) -> Result<NodeHotKeys, SourceError> {
        MatrixSource::hot_keys(self.sampler.as_ref(), query, now_unix_ms)
    }

    fn term_leaders(&self, wanted: &[(u64, u64)]) -> Vec<TermLeader> {
        lookup_leaders(&self.leaders, wanted)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn group_of(route: u64) -> u64 {
    1 + route % GROUPS
}

/// Leader term of `group` in step window `window_index`: group `LEADER_CHANGE_GROUP` gets a new
/// leader term from window `change_at` on (a leadership change the UI marks).
fn term_of(group: u64, window_index: i64, change_at: i64) -> u64 {
    7 + group + u64::from(group == LEADER_CHANGE_GROUP && window_index >= change_at)
}

fn route_key(route: u64) -> Vec<u8> {
    format!("user:{route:04}").into_bytes()
}

/// The single key carrying all the heavy writes of `HOT_KEY_ROUTE`.
fn hot_key() -> Vec<u8> {
    let mut k = route_key(HOT_KEY_ROUTE);
    k.extend_from_slice(b":counter");
    k
}

/// The single key carrying all the heavy reads of `READ_HOT_KEY_ROUTE`.
fn read_hot_key() -> Vec<u8> {
    let mut k = route_key(READ_HOT_KEY_ROUTE);
    k.extend_from_slice(b":profile");
    k
}

/// Registers the same route table on a sampler: route r = [user:r, user:r+1), the last one open.
fn register_routes(sampler: &Sampler) -> Result<(), String> {
    for r in 0..ROUTES {
        let start = if r == 0 { Vec::new() } else { route_key(r) };
        let end = (r + 1 < ROUTES).then(|| route_key(r + 1));
        sampler
            .register_route(RouteSpec {
                id: r,
                start,
                end,
                group: group_of(r),
            })
            .map_err(|e| format!("register route {r}: {e:?}"))?;
    }
    Ok(())
}

/// Feeds one step window of synthetic traffic into node `node` (0-based), which leads group
/// node+1: it records writes and leader reads for routes of its group, and one follower read
/// per window for every other route. `change_at` is the window of the leadership change.
/// Every observation is stamped `at_unix_ms` (inside the window).
fn drive_window(sampler: &Sampler, node: u64, window_index: i64, change_at: i64, at_unix_ms: i64) {
    let diag =
        u64::try_from(window_index.rem_euclid(i64::try_from(ROUTES).unwrap_or(64))).unwrap_or(0);
    let mut key = Vec::with_capacity(24);
    for r in 0..ROUTES {
        let group = group_of(r);
        if group != node + 1 {
            // Followers serve a trickle of reads for the other groups, so every node reports
            // every route (which is what lets the merge notice a divergent catalog).
            key.clear();
            key.extend_from_slice(&route_key(r));
            sampler.observe_read(r, &key, 60, keyviz::ReadRole::Follower, at_unix_ms);
            continue;
        }
        let mut writes = if r % 5 == 0 { 0 } else { 1 + (r % 3) };
        if HOT.contains(&r) {
            writes += HOT_WRITES;
        }
        if r == diag {
            writes += 150;
        }
        if (r == STEP_UP_ROUTE && window_index >= change_at)
            || (r == STEP_DOWN_ROUTE && window_index < change_at)
        {
            writes += STEP_WRITES;
        }
        let mut reads = 2 + r % 4;
        if READ_HOT.contains(&r) {
            reads += HOT_READS;
        }
        // The first HOT_WRITES writes (HOT_READS reads) of a hot route are its heavy traffic:
        // on HOT_KEY_ROUTE (READ_HOT_KEY_ROUTE) they all hit one named key.
        let named = |i: u64, on: bool, route: u64, heavy: u64, name: fn() -> Vec<u8>| {
            (on && r == route && i < heavy).then(name)
        };
        for i in 0..writes.max(reads) {
            let spread = || {
                let mut k = route_key(r);
                k.extend_from_slice(format!(":{:03}", i % 50).as_bytes());
                k
            };
            if i < writes {
                key.clear();
                key.extend_from_slice(
                    &named(i, HOT.contains(&r), HOT_KEY_ROUTE, HOT_WRITES, hot_key)
                        .unwrap_or_else(spread),
                );
                sampler.observe_write(
                    r,
                    &key,
                    100,
                    group,
                    term_of(group, window_index, change_at),
                    at_unix_ms,
                );
            }
            if i < reads {
                key.clear();
                key.extend_from_slice(
                    &named(
                        i,
                        READ_HOT.contains(&r),
                        READ_HOT_KEY_ROUTE,
                        HOT_READS,
                        read_hot_key,
                    )
                    .unwrap_or_else(spread),
                );
                sampler.observe_read(r, &key, 60, keyviz::ReadRole::Leader, at_unix_ms);
            }
        }
    }
}

/// n3's matrix source: its own sampler's matrix plus copies of two of n1's rows:
/// `route:<CONFLICT_ROUTE>` with write values that differ on every fifth column while claiming
/// n1's group and term (a conflict), and `route:<DIVERGENT_ROUTE>` with n1's values but a
/// different end key (a catalog divergence).
struct CraftedSource {
    own: Arc<Sampler>,
    victim: Arc<Sampler>,
    leaders: Arc<Vec<TermLeader>>,
}

/// Copies `src` (a row of `theirs`) onto the columns of `m`, passing each value through
/// `tweak(column index, value)`.
fn copy_row(
    src: &MatrixRow,
    theirs: &Matrix,
    m: &Matrix,
    tweak: impl Fn(usize, u64) -> u64,
) -> MatrixRow {
    let at: HashMap<i64, usize> = theirs
        .column_unix_ms
        .iter()
        .enumerate()
        .map(|(j, t)| (*t, j))
        .collect();
    let mut row = src.clone();
    let n = m.column_unix_ms.len();
    row.values = vec![0; n];
    row.raft_group_ids = vec![0; n];
    row.leader_terms = vec![0; n];
    row.conflict = false;
    row.conflicts = Vec::new();
    for (j, t) in m.column_unix_ms.iter().enumerate() {
        if let Some(&k) = at.get(t) {
            row.values[j] = tweak(j, src.values.get(k).copied().unwrap_or(0));
            row.raft_group_ids[j] = src.raft_group_ids.get(k).copied().unwrap_or(0);
            row.leader_terms[j] = src.leader_terms.get(k).copied().unwrap_or(0);
        }
    }
    row
}

impl MatrixSource for CraftedSource {
    fn matrix(&self, query: &MatrixQuery, now_unix_ms: i64) -> Result<Matrix, SourceError> {
        let mut m = self.own.matrix(query, now_unix_ms);
        let theirs = self.victim.matrix(query, now_unix_ms);
        let conflict = format!("route:{CONFLICT_ROUTE}");
        let divergent = format!("route:{DIVERGENT_ROUTE}");
        let mut injected = Vec::new();
        if query.series.is_write()
            && let Some(src) = theirs.rows.iter().find(|r| r.bucket_id == conflict)
        {
            injected.push(copy_row(src, &theirs, &m, |j, v| {
                if v > 0 && j % 5 == 0 { v + 13 } else { v }
            }));
        }
        if !m.rows.iter().any(|r| r.bucket_id == divergent)
            && let Some(src) = theirs.rows.iter().find(|r| r.bucket_id == divergent)
        {
            injected.push(copy_row(src, &theirs, &m, |_, v| v));
        }
        for row in &injected {
            m.rows.retain(|r| r.bucket_id != row.bucket_id);
        }
        m.rows.extend(injected);
        for row in m.rows.iter_mut().filter(|r| r.bucket_id == divergent) {
            let mut end = route_key(DIVERGENT_ROUTE);
            end.extend_from_slice(b"~");
            row.end = Some(end);
        }
        m.rows.sort_by(|a, b| {
            a.start
                .as_deref()
                .unwrap_or_default()
                .cmp(b.start.as_deref().unwrap_or_default())
                .then_with(|| a.bucket_id.cmp(&b.bucket_id))
        });
        Ok(m)
    }

    /// n3's own hot keys (the crafted rows are a matrix-only contradiction).
    fn hot_keys(&self, query: &HotKeyQuery, now_unix_ms: i64) -> Result<NodeHotKeys, SourceError> {
        MatrixSource::hot_keys(self.own.as_ref(), query, now_unix_ms)
    }

    fn term_leaders(&self, wanted: &[(u64, u64)]) -> Vec<TermLeader> {
        lookup_leaders(&self.leaders, wanted)
    }
}

struct Args {
    step_ms: u64,
    history_min: i64,
    /// `(start, len)` in seconds before start-up: n2 replays no window in that span (it was
    /// down), so its history has a gap there — an outage the merged cells alone do not show.
    n2_outage_s: Option<(i64, i64)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        step_ms: 5_000,
        history_min: 60,
        n2_outage_s: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--step-ms" => {
                args.step_ms = value()?.parse().map_err(|e| format!("--step-ms: {e}"))?
            }
            "--history-min" => {
                args.history_min = value()?
                    .parse()
                    .map_err(|e| format!("--history-min: {e}"))?;
            }
            "--n2-outage-s" => {
                let v = value()?;
                let (a, b) = v
                    .split_once(':')
                    .ok_or_else(|| format!("--n2-outage-s wants START:LEN, got {v}"))?;
                let start: i64 = a.parse().map_err(|e| format!("--n2-outage-s start: {e}"))?;
                let len: i64 = b.parse().map_err(|e| format!("--n2-outage-s len: {e}"))?;
                if start <= 0 || len <= 0 || len >= start {
                    return Err(format!(
                        "--n2-outage-s: need 0 < LEN < START, got {start}:{len}"
                    ));
                }
                args.n2_outage_s = Some((start, len));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !(0..=24 * 60).contains(&args.history_min) {
        return Err(format!(
            "--history-min must be 0..=1440, got {}",
            args.history_min
        ));
    }
    Ok(args)
}

/// What the control endpoint can stop and start again: per node, the shutdown sender of the
/// running server (absent while stopped), its address and its router.
#[derive(Clone, Default)]
struct Nodes {
    stoppers: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
    servers: Arc<Mutex<HashMap<String, (SocketAddr, Router)>>>,
}

/// Serves `app` on `listener` until the node's stop sender fires.
async fn serve_node(nodes: &Nodes, node_id: String, listener: TcpListener, app: Router) {
    let (tx, rx) = oneshot::channel::<()>();
    nodes.stoppers.lock().await.insert(node_id.clone(), tx);
    tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = rx.await;
        })
        .await;
        if let Err(e) = served {
            eprintln!("node {node_id} stopped with error: {e}");
        }
    });
}

#[derive(serde::Deserialize)]
struct StopQuery {
    node: String,
}

async fn stop_node(State(nodes): State<Nodes>, Query(q): Query<StopQuery>) -> StatusCode {
    match nodes.stoppers.lock().await.remove(&q.node) {
        Some(tx) => {
            // The receiver is gone only if the server already ended; stopping twice is fine.
            let _ = tx.send(());
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}

/// Starts a stopped node again on its old address (a restart: same samplers, so its history
/// is kept, as a real node's persisted history would be). 409 when it is running.
async fn start_node(State(nodes): State<Nodes>, Query(q): Query<StopQuery>) -> StatusCode {
    if nodes.stoppers.lock().await.contains_key(&q.node) {
        return StatusCode::CONFLICT;
    }
    let Some((addr, app)) = nodes.servers.lock().await.get(&q.node).cloned() else {
        return StatusCode::NOT_FOUND;
    };
    // The old server may still be closing its connections: retry the bind for a moment.
    for _ in 0..50 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            serve_node(&nodes, q.node.clone(), listener, app).await;
            return StatusCode::NO_CONTENT;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    StatusCode::SERVICE_UNAVAILABLE
}

fn random_secret(len: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    getrandom::fill(&mut buf).map_err(|e| format!("getrandom: {e}"))?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = parse_args()?;
    let step = i64::try_from(args.step_ms).map_err(|e| e.to_string())?;
    let config = SamplerConfig {
        step_ms: args.step_ms,
        ..SamplerConfig::default()
    };

    // History: start the samplers in the past and replay windows up to now, so the heatmap
    // has an hour of columns as soon as the process is up.
    let now = now_ms();
    let first_boundary = (now - args.history_min * 60_000) / step * step;
    let samplers: Vec<Arc<Sampler>> = (0..GROUPS)
        .map(|_| {
            let s = Sampler::new(config.clone(), first_boundary)
                .map_err(|e| format!("sampler: {e:?}"))?;
            register_routes(&s)?;
            Ok(Arc::new(s))
        })
        .collect::<Result<_, String>>()?;
    let change_at = (first_boundary + (now - first_boundary) / 2) / step;
    // The samplers are independent, so each replays its hour on its own thread (the replay,
    // with hot-key capture in a debug build, is most of the start-up time).
    let replayed = (now - first_boundary) / step;
    let outage = args
        .n2_outage_s
        .map(|(start, len)| (now - start * 1000, now - (start - len) * 1000));
    std::thread::scope(|scope| {
        for (i, s) in samplers.iter().enumerate() {
            scope.spawn(move || {
                for w in 0..replayed {
                    let at = first_boundary + w * step;
                    if i == 1 && outage.is_some_and(|(from, to)| at >= from && at < to) {
                        continue;
                    }
                    drive_window(s, i as u64, at / step, change_at, at);
                    let _report = s.flush(at + step);
                }
            });
        }
    });
    let boundary = first_boundary + replayed * step;

    let mut listeners = Vec::new();
    for _ in 0..GROUPS {
        listeners.push(
            TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let secret = random_secret(32)?;
    let access_key = "operator";
    let secret_key = hex(&random_secret(12)?);
    let control_nodes = Nodes::default();
    let leaders = Arc::new(term_leader_table());

    for (i, listener) in listeners.into_iter().enumerate() {
        let node_id = format!("n{}", i + 1);
        let peers: Vec<String> = addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| a.to_string())
            .collect();
        let admin_config = AdminConfig {
            fanout_nodes: peers,
            // A whole-hour hot-key query over every row answers in well under a second in a
            // debug build (0.2-0.3 s measured); 5 s leaves room for a busy machine while a
            // stopped peer still shows up as degraded well inside the tests' waits.
            fanout_timeout: Duration::from_secs(5),
            login_rate_limit: 1000,
            result_reuse: Duration::from_millis(200),
            ..AdminConfig::default()
        };
        let source: Arc<dyn MatrixSource> = if i == 2 {
            Arc::new(CraftedSource {
                own: Arc::clone(&samplers[2]),
                victim: Arc::clone(&samplers[0]),
                leaders: Arc::clone(&leaders),
            })
        } else {
            Arc::new(FixtureSource {
                sampler: Arc::clone(&samplers[i]),
                leaders: Arc::clone(&leaders),
            })
        };
        let identity =
            NodeIdentity::new(node_id.clone(), addrs[i].to_string()).map_err(|e| e.to_string())?;
        let state = AdminState::builder(
            identity,
            ClusterSecret::new(secret.clone(), None).map_err(|e| e.to_string())?,
        )
        .config(admin_config)
        .matrix_source(source)
        .credentials(Arc::new(StaticCredentials::new().with_plain(
            access_key,
            &secret_key,
            Some(Role::Full),
        )))
        .build()
        .map_err(|e| e.to_string())?;
        let app: Router = keyviz_admin::router(state);
        control_nodes
            .servers
            .lock()
            .await
            .insert(node_id.clone(), (addrs[i], app.clone()));
        serve_node(&control_nodes, node_id, listener, app).await;
    }

    // Live traffic: one window per step, flushed at the boundary, as a real node would.
    let live = samplers.clone();
    tokio::spawn(async move {
        let mut boundary = boundary;
        loop {
            let wait = boundary + step - now_ms();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
            }
            for (i, s) in live.iter().enumerate() {
                drive_window(s, i as u64, boundary / step, change_at, boundary);
                let _report = s.flush(boundary + step);
            }
            boundary += step;
        }
    });

    let control = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let control_addr = control.local_addr().map_err(|e| e.to_string())?;
    let (quit_tx, quit_rx) = oneshot::channel::<()>();
    let quit = Arc::new(Mutex::new(Some(quit_tx)));
    let control_app = Router::new()
        .route("/stop", post(stop_node))
        .route("/start", post(start_node))
        .with_state(control_nodes.clone())
        .route(
            "/shutdown",
            post(move || {
                let quit = Arc::clone(&quit);
                async move {
                    if let Some(tx) = quit.lock().await.take() {
                        let _ = tx.send(());
                    }
                    StatusCode::NO_CONTENT
                }
            }),
        );

    let nodes: Vec<serde_json::Value> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| serde_json::json!({ "node_id": format!("n{}", i + 1), "addr": a.to_string(), "url": format!("http://{a}") }))
        .collect();
    let hello = serde_json::json!({
        "nodes": nodes,
        "control": format!("http://{control_addr}"),
        "access_key": access_key,
        "secret_key": secret_key,
        "step_ms": args.step_ms,
        "routes": ROUTES,
        "hot_routes": [HOT.start, HOT.end],
        "read_hot_routes": [READ_HOT.start, READ_HOT.end],
        "hot_key": String::from_utf8_lossy(&hot_key()),
        "hot_key_route": format!("route:{HOT_KEY_ROUTE}"),
        "read_hot_key": String::from_utf8_lossy(&read_hot_key()),
        "conflict_bucket": format!("route:{CONFLICT_ROUTE}"),
        "step_change_unix_ms": change_at * step,
        "step_up_route": format!("route:{STEP_UP_ROUTE}"),
        "step_down_route": format!("route:{STEP_DOWN_ROUTE}"),
        "divergent_bucket": format!("route:{DIVERGENT_ROUTE}"),
        "stoppable": "n2",
        "n2_outage": outage.map(|(from, to)| serde_json::json!({ "from_unix_ms": from, "to_unix_ms": to })),
        "leader_change": {
            "group": LEADER_CHANGE_GROUP,
            "at_unix_ms": change_at * step,
            "from_term": 7 + LEADER_CHANGE_GROUP,
            "to_term": 8 + LEADER_CHANGE_GROUP,
            "leader": NEW_LEADER,
            "was": format!("n{LEADER_CHANGE_GROUP}"),
        },
    });
    println!("{hello}");

    axum::serve(control, control_app)
        .with_graceful_shutdown(async move {
            let _ = quit_rx.await;
        })
        .await
        .map_err(|e| e.to_string())
}
