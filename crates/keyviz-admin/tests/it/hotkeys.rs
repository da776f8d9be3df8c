//! `GET /admin/api/v1/keyviz/hotkeys` and `keyviz_admin::cluster_hot_keys` over real
//! routers on 127.0.0.1: cluster merge rules, nodes without hot keys, hostile peers,
//! parameters and auth.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use keyviz::Series::{Reads, Writes};
use keyviz::hotkeys::{HotKeyMode, HotKeyQuery, NodeHotKeys};
use keyviz_admin::{AdminConfig, AdminState, MatrixSource};

use crate::util::*;

const HOT: &str = "/admin/api/v1/keyviz/hotkeys";

/// A node serving `source`, listing `peers`; returns its state too (for the Rust API).
async fn hot_node(
    id: &str,
    source: Arc<dyn MatrixSource>,
    peers: &[String],
    tweak: impl FnOnce(&mut AdminConfig),
) -> (Server, AdminState) {
    let listener = bind().await;
    let addr = listener.local_addr().expect("addr").to_string();
    let mut config = fanout_config(peers);
    tweak(&mut config);
    let state = node_state(id, &addr, source, config, None);
    let server = serve_on(listener, keyviz_admin::router(state.clone())).await;
    (server, state)
}

async fn hot(s: &Server, sess: &Session, q: &str) -> serde_json::Value {
    let r = get_with(&s.url(&format!("{HOT}{q}")), &sess.headers()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

fn keys(v: &serde_json::Value) -> Vec<(String, u64)> {
    v["keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|k| {
                    (
                        k["preview"].as_str().unwrap_or_default().to_string(),
                        k["estimate"].as_u64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn node(v: &serde_json::Value, i: usize) -> &serde_json::Value {
    &v["fanout"]["nodes"][i]
}

/// Three real nodes; n1 lists n2 and n3. Returns n1, its state and a session on it.
async fn three_nodes(hot: [NodeHotKeys; 3]) -> (Server, AdminState, Session, [Server; 2]) {
    let [h1, h2, h3] = hot;
    let (n2, _) = hot_node("n2", HotSource::new(vec![h2]), &[], |_| {}).await;
    let (n3, _) = hot_node("n3", HotSource::new(vec![h3]), &[], |_| {}).await;
    let peers = [n2.addr.to_string(), n3.addr.to_string()];
    let (n1, state) = hot_node("n1", HotSource::new(vec![h1]), &peers, |_| {}).await;
    let sess = login(&n1, "bob", "bob-secret").await;
    (n1, state, sess, [n2, n3])
}

#[tokio::test]
async fn operator_gets_the_reads_of_three_nodes_added_up_sorted_with_shares() {
    let (n1, state, sess, _peers) = three_nodes([
        node_hot(Reads, &[(0, 0, 10, &[("hot", 5), ("n1-only", 5)])]),
        node_hot(Reads, &[(0, 0, 10, &[("hot", 7), ("warm", 3)])]),
        node_hot(Reads, &[(0, 0, 20, &[("hot", 8), ("warm", 2)])]),
    ])
    .await;
    let v = hot(&n1, &sess, "?series=reads&k=2").await;
    assert_eq!(keys(&v), vec![("hot".into(), 20), ("n1-only".into(), 5)]);
    assert_eq!(v["total"], 40);
    assert_eq!(v["series"], "reads");
    assert_eq!(v["mode"], "raw");
    assert_eq!(v["keys"][0]["key"], "aG90", "the key itself is base64");
    assert_eq!(v["keys"][0]["lower"], 20);
    assert_eq!(v["keys"][0]["upper"], 20);
    assert!((v["keys"][0]["share"].as_f64().unwrap_or_default() - 0.5).abs() < 1e-9);
    // `warm` (5 in total) was cut by k=2: the floor says no unlisted key exceeds 5.
    assert_eq!(v["floor"], 5);
    assert_eq!(v["from_unix_ms"], serde_json::Value::Null);
    assert_eq!(v["fanout"]["responded"], 3);
    assert_eq!(v["fanout"]["expected"], 3);
    assert_eq!(node(&v, 0)["node_id"], "n1");
    assert_eq!(node(&v, 1)["node_id"], "n2");
    assert_eq!(node(&v, 2)["node_id"], "n3");
    for i in 0..3 {
        assert_eq!(node(&v, i)["ok"], true, "{v}");
    }

    // The Rust entry point (kvnode's RESP HOTKEYS) gives the same answer.
    let q = HotKeyQuery {
        series: Reads,
        k: 2,
        ..HotKeyQuery::default()
    };
    let direct = keyviz_admin::cluster_hot_keys(&state, q, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(direct.hot.total, 40);
    assert_eq!(direct.hot.keys[0].key, b"hot");
    assert_eq!(direct.fanout.responded, 3);
    assert_eq!(
        serde_json::to_value(&direct).expect("encode")["keys"],
        v["keys"],
        "the HTTP body is the serialised ClusterHotKeys"
    );
}

#[tokio::test]
async fn writes_of_one_group_and_term_reported_by_three_replicas_count_once() {
    let replica: &[PartSpec<'_>] = &[(7, 3, 100, &[("hot", 90), ("b", 10)])];
    let (n1, _, sess, _peers) = three_nodes([
        // n1 also led term 4 of the same group: those writes are distinct and add up.
        node_hot(
            Writes,
            &[
                (7, 3, 100, &[("hot", 90), ("b", 10)]),
                (7, 4, 10, &[("hot", 10)]),
            ],
        ),
        node_hot(Writes, replica),
        node_hot(Writes, replica),
    ])
    .await;
    let v = hot(&n1, &sess, "?series=writes").await;
    assert_eq!(v["total"], 110, "{v}");
    assert_eq!(keys(&v), vec![("hot".into(), 100), ("b".into(), 10)]);
    assert_eq!(v["fanout"]["responded"], 3);
}

#[tokio::test]
async fn nodes_without_hot_keys_are_reported_as_unavailable_never_missing() {
    // An older node: its router answers unknown `/admin/api/v1/...` paths like this.
    let (old_peer, _) = fake_hot_peer(
        "n2",
        Behaviour::Status(
            404,
            "{\"error\":\"unknown_endpoint\",\"message\":\"no admin API handler is registered for this path\"}",
        ),
    )
    .await;
    let (disabled, _) = fake_hot_peer(
        "n3",
        Behaviour::Status(
            503,
            "{\"error\":\"keyviz_disabled\",\"message\":\"key visualizer sampler is not configured on this node\"}",
        ),
    )
    .await;
    let mut off = node_hot(Reads, &[]);
    off.mode = HotKeyMode::Off;
    let (off_node, _) = hot_node("n4", HotSource::new(vec![off]), &[], |_| {}).await;
    let peers = [
        old_peer.addr.to_string(),
        disabled.addr.to_string(),
        off_node.addr.to_string(),
    ];
    let local = node_hot(Reads, &[(0, 0, 9, &[("hot", 9)])]);
    let (n1, _) = hot_node("n1", HotSource::new(vec![local]), &peers, |_| {}).await;
    let sess = login(&n1, "bob", "bob-secret").await;
    let v = hot(&n1, &sess, "?series=reads").await;
    assert_eq!(keys(&v), vec![("hot".into(), 9)]);
    assert_eq!(v["fanout"]["expected"], 4);
    assert_eq!(v["fanout"]["responded"], 1);
    for (i, needle) in [(1, "404"), (2, "KeyViz is off"), (3, "--hot-keys=off")] {
        assert_eq!(node(&v, i)["ok"], false, "{v}");
        assert_eq!(node(&v, i)["reason"], "hot_keys_unavailable", "{v}");
        assert!(
            node(&v, i)["error"]
                .as_str()
                .is_some_and(|e| e.contains(needle)),
            "node {i}: {v}"
        );
    }
    // The nodes endpoint still counts them as reachable: only hot keys are missing there.
    let nodes = get_with(&n1.url("/admin/api/v1/keyviz/nodes"), &sess.headers())
        .await
        .json();
    let reachable = nodes.to_string();
    assert!(!reachable.contains("\"reachable\":false"), "{reachable}");
}

#[tokio::test]
async fn a_node_that_keeps_no_hot_keys_itself_still_names_the_peers_hot_key() {
    // A plain matrix source keeps no hot keys (the trait's default).
    let (n2, _) = hot_node(
        "n2",
        HotSource::new(vec![node_hot(Reads, &[(0, 0, 4, &[("hot", 4)])])]),
        &[],
        |_| {},
    )
    .await;
    let (n1, _) = hot_node(
        "n1",
        FixedSource::new(vec![]),
        &[n2.addr.to_string()],
        |_| {},
    )
    .await;
    let sess = login(&n1, "bob", "bob-secret").await;
    let v = hot(&n1, &sess, "?series=reads").await;
    assert_eq!(keys(&v), vec![("hot".into(), 4)]);
    assert_eq!(node(&v, 0)["ok"], false);
    assert_eq!(node(&v, 0)["reason"], "hot_keys_unavailable");
    assert_eq!(node(&v, 1)["ok"], true);
    assert_eq!(v["fanout"]["responded"], 1);
}

#[tokio::test]
async fn hostile_peers_are_refused_as_their_own_error_within_the_timeout() {
    let mut beyond = node_hot(Reads, &[(0, 0, 10, &[("evil", 10)])]);
    beyond.parts[0].summary.items[0].upper = 1_000_000;
    let (p_beyond, _) = fake_hot_peer("n2", Behaviour::Body(hot_body(beyond, "n2"))).await;
    let mut flood = br#"{"series":"reads","mode":"raw","node_id":"n3","parts":["#.to_vec();
    for i in 0..1_000_000 {
        if i > 0 {
            flood.push(b',');
        }
        flood.extend_from_slice(br#"{"summary":{"total":0,"floor":0}}"#);
    }
    flood.extend_from_slice(b"]}");
    let (p_flood, _) = fake_hot_peer("n3", Behaviour::Body(Bytes::from(flood))).await;
    let wrong = node_hot(Writes, &[(1, 1, 50, &[("evil", 50)])]);
    let (p_wrong, _) = fake_hot_peer("n4", Behaviour::Body(hot_body(wrong, "n4"))).await;
    let (p_garbage, _) = fake_hot_peer(
        "n5",
        Behaviour::Body(Bytes::from_static(b"{\"parts\": [oops")),
    )
    .await;
    let good = node_hot(Reads, &[(0, 0, 6, &[("hot", 6)])]);
    let (p_good, _) = fake_hot_peer("n6", Behaviour::Body(hot_body(good, "n6"))).await;
    let peers: Vec<String> = [&p_beyond, &p_flood, &p_wrong, &p_garbage, &p_good]
        .iter()
        .map(|p| p.addr.to_string())
        .collect();
    let timeout = Duration::from_secs(10);
    let local = node_hot(Reads, &[(0, 0, 4, &[("hot", 4)])]);
    let (n1, _) = hot_node("n1", HotSource::new(vec![local]), &peers, |c| {
        c.fanout_timeout = timeout
    })
    .await;
    let sess = login(&n1, "bob", "bob-secret").await;
    let started = Instant::now();
    let v = hot(&n1, &sess, "?series=reads").await;
    assert!(started.elapsed() < timeout + Duration::from_secs(5));
    assert_eq!(keys(&v), vec![("hot".into(), 10)], "only n1 and n6: {v}");
    assert_eq!(v["total"], 10);
    assert_eq!(v["fanout"]["responded"], 2);
    let err = |i: usize| {
        node(&v, i)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(err(1).starts_with("invalid peer hot keys"), "{}", err(1));
    assert!(
        err(2).starts_with("invalid peer hot keys") && err(2).contains("more than 65536 parts"),
        "{}",
        err(2)
    );
    assert!(
        err(3).contains("series writes instead of reads"),
        "{}",
        err(3)
    );
    assert!(err(4).starts_with("decode peer response"), "{}", err(4));
    for (i, reason) in [
        (1, "invalid"),
        (2, "invalid"),
        (3, "invalid"),
        (4, "decode"),
    ] {
        assert_eq!(node(&v, i)["ok"], false);
        assert_eq!(node(&v, i)["reason"], reason, "{v}");
    }
    assert_eq!(node(&v, 5)["ok"], true);
}

#[tokio::test]
async fn a_stuck_peer_is_cut_at_the_timeout() {
    let body = hot_body(node_hot(Reads, &[(0, 0, 1, &[("hot", 1)])]), "n2");
    let (stuck, _) = fake_hot_peer("n2", Behaviour::Delay(Duration::from_secs(30), body)).await;
    let timeout = Duration::from_millis(500);
    let local = node_hot(Reads, &[(0, 0, 4, &[("hot", 4)])]);
    let (n1, _) = hot_node(
        "n1",
        HotSource::new(vec![local]),
        &[stuck.addr.to_string()],
        |c| c.fanout_timeout = timeout,
    )
    .await;
    let sess = login(&n1, "bob", "bob-secret").await;
    let started = Instant::now();
    let v = hot(&n1, &sess, "?series=reads").await;
    assert!(started.elapsed() < timeout + Duration::from_secs(3));
    assert_eq!(keys(&v), vec![("hot".into(), 4)]);
    assert_eq!(node(&v, 1)["reason"], "timeout");
}

#[tokio::test]
async fn peers_get_the_node_local_answer_and_the_query_forwarded_with_more_keys() {
    let body = hot_body(node_hot(Reads, &[(0, 0, 1, &[("a", 1)])]), "n2");
    let (p, log) = fake_hot_peer("n2", Behaviour::Body(body)).await;
    let src = HotSource::new(vec![node_hot(Reads, &[(0, 0, 3, &[("a", 3)])])]);
    let (n1, _) = hot_node("n1", src.clone(), &[p.addr.to_string()], |_| {}).await;
    let sess = login(&n1, "bob", "bob-secret").await;
    let q = format!(
        "?series=reads&k=5&from_unix_ms=1000&to_unix_ms=2000&key_start={}&key_end={}",
        b64q(b"a"),
        b64q(b"b")
    );
    let v = hot(&n1, &sess, &q).await;
    assert_eq!(keys(&v), vec![("a".into(), 4)]);
    assert_eq!(v["from_unix_ms"], 1000);
    assert_eq!(v["to_unix_ms"], 2000);
    assert_eq!(log.matrix_calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        log.queries.lock()[0],
        "from_unix_ms=1000&k=64&key_end=Yg%3D%3D&key_start=YQ%3D%3D&series=reads&to_unix_ms=2000"
    );
    let aud = log.headers.lock()[0]
        .get("x-keyviz-peer-aud")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(aud, "n2", "signed for the proven peer");
    assert!(
        log.headers.lock()[0].get("cookie").is_none(),
        "browser cookies are never forwarded"
    );
    let local_q = src.queries.lock()[0].clone();
    assert_eq!(local_q.k, 64);
    assert_eq!(local_q.key_start.as_deref(), Some(&b"a"[..]));

    // A signed peer request gets this node's own NodeHotKeys, no fan-out.
    let pq = format!("{HOT}?series=reads&k=7");
    let r = get_with(
        &n1.url(&pq),
        &signed_get(&peer_keys(), &pq, "n9", "n1", now_ms()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let local: NodeHotKeys = serde_json::from_slice(&r.body).expect("a NodeHotKeys");
    assert_eq!(local.node_id.as_deref(), Some("n1"));
    assert_eq!(local.total(), 3);
    assert!(r.json().get("fanout").is_none());
    assert_eq!(log.matrix_calls.load(Ordering::SeqCst), 1, "no recursion");
}

#[tokio::test]
async fn bad_parameters_are_400_with_the_envelope_and_no_auth_is_401() {
    let (n1, _) = hot_node("n1", HotSource::new(vec![]), &[], |_| {}).await;
    let r = get_with(&n1.url(HOT), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "unauthenticated");
    let sess = login(&n1, "bob", "bob-secret").await;
    for (q, needle) in [
        ("?k=0", "k must be between 1 and 1000"),
        ("?k=1001", "k must be between 1 and 1000"),
        ("?k=x", "k must be an integer"),
        ("?series=leader_reads", "hot keys are kept for reads"),
        ("?series=nope", "series must be one of"),
        (
            "?from_unix_ms=5&to_unix_ms=5",
            "from_unix_ms must be before to_unix_ms",
        ),
        (
            "?key_start=Yg&key_end=YQ",
            "key_end must be greater than key_start",
        ),
        ("?key_start=%21", "key_start must be base64"),
    ] {
        let r = get_with(&n1.url(&format!("{HOT}{q}")), &sess.headers()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.error_code(), "invalid_query", "{q}");
        assert!(
            r.json()["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(needle)),
            "{q}: {}",
            r.text()
        );
    }
    // Unknown parameters are ignored and the first value wins, as for the matrix.
    let v = hot(&n1, &sess, "?k=3&k=0&bogus=1").await;
    assert_eq!(v["series"], "writes");
    let r = keyviz_admin::cluster_hot_keys(
        &node_state(
            "n1",
            "127.0.0.1:1",
            HotSource::new(vec![]),
            AdminConfig::default(),
            None,
        ),
        HotKeyQuery {
            k: 0,
            ..HotKeyQuery::default()
        },
        0,
    )
    .await;
    assert!(r.is_err_and(|e| e.code == "invalid_query"));
}

#[tokio::test]
async fn a_peer_in_another_capture_mode_is_reported_not_merged() {
    let mut hashed = node_hot(Reads, &[(0, 0, 50, &[("h:1f2e", 50)])]);
    hashed.mode = HotKeyMode::Hashed;
    let (p, _) = fake_hot_peer("n2", Behaviour::Body(hot_body(hashed, "n2"))).await;
    let local = node_hot(Reads, &[(0, 0, 4, &[("hot", 4)])]);
    let (n1, _) = hot_node(
        "n1",
        HotSource::new(vec![local]),
        &[p.addr.to_string()],
        |_| {},
    )
    .await;
    let sess = login(&n1, "bob", "bob-secret").await;
    let v = hot(&n1, &sess, "?series=reads").await;
    assert_eq!(keys(&v), vec![("hot".into(), 4)]);
    assert_eq!(v["mode"], "raw");
    assert_eq!(node(&v, 1)["ok"], false);
    assert_eq!(node(&v, 1)["reason"], "hot_keys_mode_mismatch");
    assert_eq!(v["fanout"]["responded"], 1);
}

#[tokio::test]
async fn a_self_alias_is_not_merged_twice_and_identical_requests_share_one_fan_out() {
    let listener = bind().await;
    let port = listener.local_addr().expect("addr").port();
    let src = HotSource::new(vec![node_hot(Reads, &[(0, 0, 3, &[("hot", 3)])])]);
    let state = node_state(
        "n1",
        &format!("node-a.example:{port}"),
        src.clone(),
        fanout_config(&[format!("127.0.0.1:{port}")]),
        None,
    );
    let s = serve_on(listener, keyviz_admin::router(state)).await;
    let sess = login(&s, "bob", "bob-secret").await;
    let v = hot(&s, &sess, "?series=reads").await;
    assert_eq!(
        keys(&v),
        vec![("hot".into(), 3)],
        "reads are not double counted"
    );
    assert_eq!(node(&v, 1)["warnings"][0]["code"], "self_alias");
    assert_eq!(v["fanout"]["expected"], 1);
    assert_eq!(src.queries.lock().len(), 1, "no self-call");

    // Within the reuse window an identical request is served from the same fan-out.
    let again = hot(&s, &sess, "?series=reads").await;
    assert_eq!(again["keys"], v["keys"]);
    assert_eq!(src.queries.lock().len(), 1);
    let metrics = get_with(&s.url("/metrics"), &[]).await.text();
    assert!(
        metrics.contains("keyviz_hot_keys_requests_total{outcome=\"reused\"} 1"),
        "{metrics}"
    );
}

/// A real sampler with one route over the whole key space (raft group 7), fed by `feed`
/// and flushed into one column.
fn real_sampler(feed: impl FnOnce(&keyviz::Sampler, i64)) -> Arc<keyviz::Sampler> {
    let t0 = 1_700_000_000_000i64;
    let s = keyviz::Sampler::new(keyviz::SamplerConfig::default(), t0).expect("sampler");
    s.register_route(keyviz::RouteSpec {
        id: 1,
        start: Vec::new(),
        end: None,
        group: 7,
    })
    .expect("route");
    feed(&s, t0);
    let _ = s.flush(t0 + 60_000);
    Arc::new(s)
}

#[tokio::test]
async fn asked_on_a_node_that_served_none_of_the_traffic_real_samplers_name_the_hot_key() {
    use keyviz::ReadRole;
    // n2 and n3 replicate the same writes of group 7, term 3, and serve their own reads.
    let replica = |reads: u32| {
        move |s: &keyviz::Sampler, t0: i64| {
            for _ in 0..reads {
                s.observe_read(1, b"hot:counter", 8, ReadRole::Leader, t0);
            }
            for i in 0..10u32 {
                s.observe_read(
                    1,
                    format!("user:{i:03}").as_bytes(),
                    8,
                    ReadRole::Leader,
                    t0,
                );
            }
            for _ in 0..30 {
                s.observe_write(1, b"hot:counter", 8, 7, 3, t0);
            }
            for i in 0..5u32 {
                s.observe_write(1, format!("user:{i:03}").as_bytes(), 8, 7, 3, t0);
            }
        }
    };
    let (n2, _) = hot_node("n2", real_sampler(replica(20)), &[], |_| {}).await;
    let (n3, _) = hot_node("n3", real_sampler(replica(15)), &[], |_| {}).await;
    let peers = [n2.addr.to_string(), n3.addr.to_string()];
    let (n1, state) = hot_node("n1", real_sampler(|_, _| {}), &peers, |_| {}).await;
    let sess = login(&n1, "bob", "bob-secret").await;

    let reads = hot(&n1, &sess, "?series=reads&k=3").await;
    assert_eq!(reads["fanout"]["responded"], 3, "{reads}");
    assert_eq!(reads["total"], 55, "reads of both nodes add up: {reads}");
    assert_eq!(reads["keys"][0]["preview"], "hot:counter", "{reads}");
    assert_eq!(reads["keys"][0]["estimate"], 35);
    assert!(reads["keys"][0]["lower"].as_u64().is_some_and(|l| l <= 35));
    assert!(reads["keys"][0]["upper"].as_u64().is_some_and(|u| u >= 35));
    assert!((reads["keys"][0]["share"].as_f64().unwrap_or_default() - 35.0 / 55.0).abs() < 1e-9);

    let writes = hot(&n1, &sess, "?series=writes").await;
    assert_eq!(
        writes["total"], 35,
        "one (group, term) counts once: {writes}"
    );
    assert_eq!(writes["keys"][0]["preview"], "hot:counter");
    assert_eq!(writes["keys"][0]["estimate"], 30);

    // The Rust entry point agrees (kvnode's RESP HOTKEYS uses it).
    let direct = keyviz_admin::cluster_hot_keys(
        &state,
        HotKeyQuery {
            series: Writes,
            ..HotKeyQuery::default()
        },
        1_700_000_060_000,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(direct.hot.keys[0].key, b"hot:counter");
    assert_eq!(direct.hot.total, 35);
}
