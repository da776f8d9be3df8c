//! Cluster fan-out over real HTTP peers on 127.0.0.1: merge rules, failures, caps, identity,
//! peer tokens, recursion and single-flight.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use keyviz::Series::{Reads, Writes};
use keyviz_admin::{AdminConfig, Member, Membership};

use crate::util::*;

const MATRIX: &str = "/admin/api/v1/keyviz/matrix";

/// A local node listing `peers`, plus a browser session on it.
async fn entry_node(
    local: Vec<keyviz::Matrix>,
    peers: &[String],
    tweak: impl FnOnce(&mut AdminConfig),
) -> (Server, Session) {
    let mut config = fanout_config(peers);
    tweak(&mut config);
    let s = start_node("n1", bind().await, FixedSource::new(local), config).await;
    let sess = login(&s, "bob", "bob-secret").await;
    (s, sess)
}

async fn matrix(s: &Server, sess: &Session, q: &str) -> serde_json::Value {
    let r = get_with(&s.url(&format!("{MATRIX}{q}")), &sess.headers()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

fn node(v: &serde_json::Value, i: usize) -> &serde_json::Value {
    &v["fanout"]["nodes"][i]
}

/// Starts a fake peer answering `m` as node `id`.
async fn peer_with(id: &str, m: keyviz::Matrix) -> (Server, Arc<FakeLog>) {
    fake_peer(id, Behaviour::Body(peer_body(m, id))).await
}

#[tokio::test]
async fn reads_sum_across_nodes_and_status_lists_self_first() {
    let (p, _) = peer_with("n2", mx(Reads, &[1000], &[("route:1", &[7], &[], &[])])).await;
    let (s, sess) = entry_node(
        vec![mx(Reads, &[1000], &[("route:1", &[3], &[], &[])])],
        &[p.addr.to_string()],
        |_| {},
    )
    .await;
    let v = matrix(&s, &sess, "?series=reads").await;
    assert_eq!(row_values(&v, "route:1"), vec![10]);
    assert_eq!(v["fanout"]["expected"], 2);
    assert_eq!(v["fanout"]["responded"], 2);
    assert_eq!(node(&v, 0)["node"], s.addr.to_string());
    assert_eq!(node(&v, 0)["node_id"], "n1");
    assert_eq!(node(&v, 1)["node"], p.addr.to_string());
    assert_eq!(node(&v, 1)["node_id"], "n2");
    assert_eq!(node(&v, 1)["ok"], true);
    assert_eq!(node(&v, 1)["generated_at"], "2026-01-01T00:00:00Z");
    assert!(node(&v, 1)["elapsed_ms"].is_u64());
}

#[tokio::test]
async fn write_merge_rules_over_http() {
    struct Case {
        name: &'static str,
        local: (Vec<u64>, Vec<u64>, Vec<u64>),
        peer: (Vec<u64>, Vec<u64>, Vec<u64>),
        values: Vec<u64>,
        conflicts: Vec<bool>,
    }
    let cases = vec![
        Case {
            name: "stable leader: follower reports zero",
            local: (vec![30, 40], vec![7, 7], vec![42, 42]),
            peer: (vec![0, 0], vec![7, 7], vec![42, 42]),
            values: vec![30, 40],
            conflicts: vec![],
        },
        Case {
            name: "leadership flip with identity sums across terms",
            local: (vec![30, 0], vec![7, 7], vec![42, 42]),
            peer: (vec![50, 80], vec![7, 7], vec![43, 43]),
            values: vec![80, 80],
            conflicts: vec![],
        },
        Case {
            name: "conflict within one term keeps the larger value",
            local: (vec![30, 10], vec![7, 7], vec![42, 42]),
            peer: (vec![55, 10], vec![7, 7], vec![42, 42]),
            values: vec![55, 10],
            conflicts: vec![true, false],
        },
        Case {
            name: "legacy peer without identity falls back to max",
            local: (vec![30, 100], vec![7, 7], vec![42, 42]),
            peer: (vec![50, 50], vec![], vec![]),
            values: vec![50, 100],
            conflicts: vec![true, true],
        },
    ];
    for c in cases {
        let peer_m = mx(
            Writes,
            &[1000, 2000],
            &[("route:1", &c.peer.0, &c.peer.1, &c.peer.2)],
        );
        let (p, _) = peer_with("n2", peer_m).await;
        let local = mx(
            Writes,
            &[1000, 2000],
            &[("route:1", &c.local.0, &c.local.1, &c.local.2)],
        );
        let (s, sess) = entry_node(vec![local], &[p.addr.to_string()], |_| {}).await;
        let v = matrix(&s, &sess, "").await;
        assert_eq!(row_values(&v, "route:1"), c.values, "{}", c.name);
        let row = &v["rows"][0];
        let conflicts: Vec<bool> = row["conflicts"]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_bool).collect())
            .unwrap_or_default();
        assert_eq!(conflicts, c.conflicts, "{}", c.name);
        assert_eq!(
            row["conflict"].as_bool().unwrap_or(false),
            c.conflicts.contains(&true),
            "{}",
            c.name
        );
        assert_eq!(v["fanout"]["responded"], 2, "{}", c.name);
    }
}

#[tokio::test]
async fn down_peer_is_reported_and_local_view_kept() {
    let dead = bind().await;
    let dead_addr = dead.local_addr().expect("addr").to_string();
    drop(dead);
    let (s, sess) = entry_node(
        vec![mx(Reads, &[1000], &[("route:1", &[3], &[], &[])])],
        std::slice::from_ref(&dead_addr),
        |_| {},
    )
    .await;
    let v = matrix(&s, &sess, "?series=reads").await;
    assert_eq!(row_values(&v, "route:1"), vec![3]);
    assert_eq!(v["fanout"]["expected"], 2);
    assert_eq!(v["fanout"]["responded"], 1);
    assert_eq!(node(&v, 1)["node"], dead_addr);
    assert_eq!(node(&v, 1)["ok"], false);
    assert!(
        node(&v, 1)["error"]
            .as_str()
            .is_some_and(|e| e.contains("peer request failed")),
        "{v}"
    );
}

#[tokio::test]
async fn failing_status_malformed_and_wrong_lengths_mark_only_that_peer() {
    let good = mx(Reads, &[1000], &[("route:1", &[7], &[], &[])]);
    let (ok_peer, _) = peer_with("n2", good).await;
    let (boom, _) = fake_peer("n3", Behaviour::Status(500, "boom")).await;
    let (garbage, _) = fake_peer(
        "n4",
        Behaviour::Body(Bytes::from_static(
            b"{\"column_unix_ms\": [1000], \"rows\": [oops",
        )),
    )
    .await;
    let mut bad_len = mx(Reads, &[1000, 2000], &[("route:1", &[1, 2], &[], &[])]);
    bad_len.rows[0].values = vec![1];
    let (short, _) = fake_peer("n5", Behaviour::Body(peer_body(bad_len, "n5"))).await;
    let non_numeric = Bytes::from_static(
        b"{\"column_unix_ms\":[1000],\"rows\":[{\"bucket_id\":\"route:1\",\"values\":[\"x\"]}],\"series\":\"reads\",\"generated_at\":\"\",\"node_id\":\"n6\"}",
    );
    let (nonnum, _) = fake_peer("n6", Behaviour::Body(non_numeric)).await;
    let peers: Vec<String> = [&ok_peer, &boom, &garbage, &short, &nonnum]
        .iter()
        .map(|p| p.addr.to_string())
        .collect();
    let (s, sess) = entry_node(
        vec![mx(Reads, &[1000], &[("route:1", &[3], &[], &[])])],
        &peers,
        |_| {},
    )
    .await;
    let v = matrix(&s, &sess, "?series=reads").await;
    assert_eq!(
        row_values(&v, "route:1"),
        vec![10],
        "only the good peer is merged"
    );
    assert_eq!(v["fanout"]["expected"], 6);
    assert_eq!(v["fanout"]["responded"], 2);
    let err = |i: usize| {
        node(&v, i)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        err(2).contains("500") && err(2).contains("boom"),
        "{}",
        err(2)
    );
    assert!(err(3).starts_with("decode peer response"), "{}", err(3));
    assert!(err(4).starts_with("invalid peer matrix"), "{}", err(4));
    assert!(err(5).starts_with("decode peer response"), "{}", err(5));
    for i in 2..=5 {
        assert_eq!(node(&v, i)["ok"], false);
    }
    let metrics = get_with(&s.url("/metrics"), &[]).await.text();
    assert!(
        metrics.contains("keyviz_fanout_peer_failures_total{reason=\"decode\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn slow_peer_is_cut_at_the_timeout_but_a_merely_slowish_one_is_merged() {
    let body = peer_body(mx(Reads, &[1000], &[("route:1", &[7], &[], &[])]), "n2");
    let (slowish, _) = fake_peer(
        "n2",
        Behaviour::Delay(Duration::from_millis(100), body.clone()),
    )
    .await;
    let (stuck, _) = fake_peer("n3", Behaviour::Delay(Duration::from_secs(30), body)).await;
    let timeout = Duration::from_millis(800);
    let peers = vec![slowish.addr.to_string(), stuck.addr.to_string()];
    let (s, sess) = entry_node(
        vec![mx(Reads, &[1000], &[("route:1", &[3], &[], &[])])],
        &peers,
        |c| c.fanout_timeout = timeout,
    )
    .await;
    let started = Instant::now();
    let v = matrix(&s, &sess, "?series=reads").await;
    let took = started.elapsed();
    // The answer comes at the deadline (+10 %, plus slack for a loaded debug build), not
    // after the stuck peer's 30 s.
    let bound = timeout.mul_f64(1.1) + Duration::from_secs(3);
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    assert_eq!(row_values(&v, "route:1"), vec![10]);
    assert_eq!(node(&v, 1)["ok"], true);
    assert_eq!(node(&v, 2)["ok"], false);
    assert!(
        node(&v, 2)["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not answer within"))
    );
    assert!(
        node(&v, 2)["elapsed_ms"]
            .as_u64()
            .is_some_and(|ms| ms >= 600),
        "cut at the first round's share (3/4) of the deadline"
    );
}

#[tokio::test]
async fn streaming_peer_is_capped_while_reading() {
    let (big, log) = fake_peer(
        "n2",
        Behaviour::Stream {
            total: 100 * 1024 * 1024,
        },
    )
    .await;
    let cap = 1024 * 1024;
    let (s, sess) = entry_node(
        vec![mx(Reads, &[1000], &[("route:1", &[3], &[], &[])])],
        &[big.addr.to_string()],
        |c| {
            c.fanout_body_cap = cap;
            c.fanout_timeout = Duration::from_secs(20);
        },
    )
    .await;
    let v = matrix(&s, &sess, "?series=reads").await;
    assert_eq!(node(&v, 1)["ok"], false);
    assert!(
        node(&v, 1)["error"]
            .as_str()
            .is_some_and(|e| e.contains("cap")),
        "{v}"
    );
    assert_eq!(row_values(&v, "route:1"), vec![3]);
    // The reader stopped near the cap: the peer could not push anywhere near 100 MB.
    let sent = log.bytes_sent.load(Ordering::SeqCst);
    assert!(sent < 32 * 1024 * 1024, "peer sent {sent} bytes");
}

#[tokio::test]
async fn body_cap_edges_small_cap_and_large_valid_matrix() {
    // A tiny valid matrix followed by whitespace fits in a 200-byte cap.
    let mut tiny = serde_json::to_vec(&{
        let mut m = mx(Reads, &[], &[]);
        m.node_id = Some("n2".into());
        m
    })
    .expect("encode");
    assert!(tiny.len() < 150);
    tiny.extend(std::iter::repeat_n(b' ', 40));
    let (p, _) = fake_peer("n2", Behaviour::Body(Bytes::from(tiny))).await;
    let (s, sess) = entry_node(vec![mx(Reads, &[], &[])], &[p.addr.to_string()], |c| {
        c.fanout_body_cap = 200
    })
    .await;
    let v = matrix(&s, &sess, "?series=reads").await;
    assert_eq!(node(&v, 1)["ok"], true, "{v}");

    // 64 rows x 4096 zero columns is far below the default 64 MiB cap.
    let cols: Vec<i64> = (1..=4096).map(|i| i * 1000).collect();
    let zeros = vec![0u64; 4096];
    let ids: Vec<String> = (0..64).map(|i| format!("route:{i:03}")).collect();
    let rows: Vec<RowSpec<'_>> = ids
        .iter()
        .map(|id| (id.as_str(), zeros.as_slice(), &[][..], &[][..]))
        .collect();
    let (p2, _) = peer_with("n3", mx(Reads, &cols, &rows)).await;
    let (s2, sess2) = entry_node(vec![mx(Reads, &[], &[])], &[p2.addr.to_string()], |_| {}).await;
    let v = matrix(&s2, &sess2, "?series=reads").await;
    assert_eq!(node(&v, 1)["ok"], true);
    assert_eq!(v["column_unix_ms"].as_array().map(Vec::len), Some(4096));
}

#[tokio::test]
async fn self_alias_by_another_hostname_is_dropped_with_warning() {
    // This node advertises a hostname; the static list reaches it through 127.0.0.1.
    let listener = bind().await;
    let port = listener.local_addr().expect("addr").port();
    let src = FixedSource::new(vec![mx(Reads, &[1000], &[("route:1", &[3], &[], &[])])]);
    let state = node_state(
        "n1",
        &format!("node-a.example:{port}"),
        src.clone(),
        fanout_config(&[
            format!("127.0.0.1:{port}"),
            format!("node-a.example:{port}"),
        ]),
        None,
    );
    let s = serve_on(listener, keyviz_admin::router(state)).await;
    let sess = login(&s, "bob", "bob-secret").await;
    let v = matrix(&s, &sess, "?series=reads").await;
    assert_eq!(
        row_values(&v, "route:1"),
        vec![3],
        "reads are not double counted"
    );
    let nodes = v["fanout"]["nodes"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        nodes.len(),
        2,
        "the literal self entry is skipped without a call: {v}"
    );
    assert_eq!(nodes[1]["node"], format!("127.0.0.1:{port}"));
    assert_eq!(nodes[1]["warnings"][0]["code"], "self_alias");
    assert_eq!(v["fanout"]["expected"], 1);
    assert_eq!(v["fanout"]["responded"], 1);
    assert_eq!(src.calls(), 2, "one local view per round, no self-call");
}

#[tokio::test]
async fn signed_peer_requests_bound_to_audience_time_key_and_nonce() {
    let s = start_node(
        "n2",
        bind().await,
        FixedSource::new(vec![mx(Reads, &[1000], &[("route:1", &[3], &[], &[])])]),
        fanout_config(&["127.0.0.1:1".into()]),
    )
    .await;
    let now = now_ms();
    let pq = format!("{MATRIX}?series=reads&rows=16384");
    let url = s.url(&pq);
    let k = peer_keys();
    let valid = signed_get(&k, &pq, "n1", "n2", now);
    let r = get_with(&url, &valid).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers["x-keyviz-peer-node"], "n2",
        "the answer is signed"
    );
    let v = r.json();
    assert!(v.get("fanout").is_none(), "a peer gets the local view only");
    assert_eq!(v["node_id"], "n2");
    // The same signed request again (a replay) is refused.
    assert_eq!(
        get_with(&url, &valid).await.status,
        StatusCode::UNAUTHORIZED
    );
    let expired = signed_get(&k, &pq, "n1", "n2", now - 60_000);
    assert_eq!(
        get_with(&url, &expired).await.status,
        StatusCode::UNAUTHORIZED
    );
    let other = signed_get(&k, &pq, "n1", "n3", now);
    assert_eq!(
        get_with(&url, &other).await.status,
        StatusCode::UNAUTHORIZED
    );
    // An identity challenge grants nothing but the identity answer.
    let challenge = signed_get(&k, &pq, "n1", "*identity", now);
    assert_eq!(
        get_with(&url, &challenge).await.status,
        StatusCode::UNAUTHORIZED
    );
    let forged_keys = keyviz_admin::peer::PeerKeys::new(vec![7; 40], None);
    let forged = signed_get(&forged_keys, &pq, "n1", "n2", now);
    assert_eq!(
        get_with(&url, &forged).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Signed for another query than the one sent.
    let moved = signed_get(
        &k,
        &format!("{MATRIX}?series=writes&rows=16384"),
        "n1",
        "n2",
        now,
    );
    assert_eq!(
        get_with(&url, &moved).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The legacy header alone grants nothing.
    let r = get_with(&url, &[("x-admin-fanout-peer", "1".into())]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn browser_cookie_never_reaches_a_peer_and_spoofed_header_does_not_suppress_fanout() {
    let (p, log) = peer_with("n2", mx(Reads, &[1000], &[("route:1", &[7], &[], &[])])).await;
    let (s, sess) = entry_node(
        vec![mx(Reads, &[1000], &[("route:1", &[3], &[], &[])])],
        &[p.addr.to_string()],
        |_| {},
    )
    .await;
    let mut h = sess.headers();
    h.push(("x-admin-fanout-peer", "1".into()));
    h[0].1.push_str("; unrelated_app_session=zzz");
    let r = get_with(&s.url(&format!("{MATRIX}?series=reads&rows=5")), &h).await;
    let v = r.json();
    assert!(
        v.get("fanout").is_some(),
        "spoofed header must not suppress the fan-out"
    );
    assert_eq!(row_values(&v, "route:1"), vec![10]);
    let headers = log.headers.lock().clone();
    assert_eq!(headers.len(), 1);
    assert!(
        headers[0].get("cookie").is_none(),
        "cookie forwarded: {:?}",
        headers[0]
    );
    assert!(headers[0].get("authorization").is_none());
    assert!(
        headers[0].get("x-keyviz-peer-sig").is_some(),
        "peer calls are signed: {:?}",
        headers[0]
    );
    let q = log.queries.lock().clone();
    assert_eq!(
        q,
        vec!["rows=16384&series=reads&round=totals".to_string()],
        "peers are asked for their untrimmed totals (an older peer answers its plain view)"
    );
}

#[tokio::test]
async fn every_node_listing_every_node_cannot_recurse() {
    let listeners = [bind().await, bind().await, bind().await];
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").to_string())
        .collect();
    let mut sources = Vec::new();
    let mut servers = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let src = FixedSource::new(vec![mx(
            Reads,
            &[1000],
            &[("route:1", &[1 + i as u64], &[], &[])],
        )]);
        sources.push(src.clone());
        servers.push(start_node(&format!("n{}", i + 1), l, src, fanout_config(&addrs)).await);
    }
    let sess = login(&servers[0], "bob", "bob-secret").await;
    let v = matrix(&servers[0], &sess, "?series=reads").await;
    assert_eq!(row_values(&v, "route:1"), vec![6]);
    assert_eq!(v["fanout"]["expected"], 3);
    assert_eq!(v["fanout"]["responded"], 3);
    let calls: Vec<usize> = sources.iter().map(|s| s.calls()).collect();
    assert_eq!(
        calls,
        vec![2, 2, 2],
        "each node computed its local view once per round (totals, then boundaries)"
    );
}

#[tokio::test]
async fn twenty_concurrent_browser_requests_cause_one_call_per_peer() {
    let body = peer_body(mx(Reads, &[1000], &[("route:1", &[7], &[], &[])]), "n2");
    let (p2, log2) = fake_peer("n2", Behaviour::Delay(Duration::from_millis(300), body)).await;
    let body3 = peer_body(mx(Reads, &[1000], &[("route:1", &[5], &[], &[])]), "n3");
    let (p3, log3) = fake_peer("n3", Behaviour::Delay(Duration::from_millis(300), body3)).await;
    let (s, sess) = entry_node(
        vec![mx(Reads, &[1000], &[("route:1", &[3], &[], &[])])],
        &[p2.addr.to_string(), p3.addr.to_string()],
        |_| {},
    )
    .await;
    let url = s.url(&format!("{MATRIX}?series=reads"));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let url = url.clone();
        let h = sess.headers();
        tasks.push(tokio::spawn(async move { get_with(&url, &h).await }));
    }
    for t in tasks {
        let r = t.await.expect("task");
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(row_values(&r.json(), "route:1"), vec![15]);
    }
    assert_eq!(log2.matrix_calls.load(Ordering::SeqCst), 1);
    assert_eq!(log3.matrix_calls.load(Ordering::SeqCst), 1);
}

struct FixedMembers(Vec<Member>);
impl Membership for FixedMembers {
    fn members(&self) -> Vec<Member> {
        self.0.clone()
    }
}

#[tokio::test]
async fn membership_and_static_list_combine_without_duplicates() {
    let (p2, log2) = peer_with("n2", mx(Reads, &[1000], &[("route:1", &[7], &[], &[])])).await;
    let (p3, log3) = peer_with("n3", mx(Reads, &[1000], &[("route:1", &[5], &[], &[])])).await;
    let listener = bind().await;
    let me = listener.local_addr().expect("addr").to_string();
    let members = FixedMembers(vec![
        Member {
            node_id: Some("n1".into()),
            admin_addr: me.clone(),
        },
        Member {
            node_id: Some("n2".into()),
            admin_addr: p2.addr.to_string(),
        },
        Member {
            node_id: Some("n3".into()),
            admin_addr: p3.addr.to_string(),
        },
    ]);
    let state = node_state(
        "n1",
        &me,
        FixedSource::new(vec![mx(Reads, &[1000], &[("route:1", &[3], &[], &[])])]),
        fanout_config(&[me.clone(), p2.addr.to_string()]),
        Some(Arc::new(members)),
    );
    let s = serve_on(listener, keyviz_admin::router(state)).await;
    let sess = login(&s, "bob", "bob-secret").await;
    let v = matrix(&s, &sess, "?series=reads").await;
    assert_eq!(row_values(&v, "route:1"), vec![15]);
    assert_eq!(v["fanout"]["expected"], 3);
    assert_eq!(log2.matrix_calls.load(Ordering::SeqCst), 1);
    assert_eq!(log3.matrix_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn two_entries_for_one_peer_are_merged_once() {
    let (p2, log2) = peer_with("n2", mx(Reads, &[1000], &[("route:1", &[7], &[], &[])])).await;
    let port = p2.addr.port();
    let (s, sess) = entry_node(
        vec![mx(Reads, &[1000], &[("route:1", &[3], &[], &[])])],
        &[format!("127.0.0.1:{port}"), format!("localhost:{port}")],
        |_| {},
    )
    .await;
    let v = matrix(&s, &sess, "?series=reads").await;
    assert_eq!(row_values(&v, "route:1"), vec![10], "peer counted once");
    assert_eq!(v["fanout"]["expected"], 2);
    assert_eq!(node(&v, 2)["warnings"][0]["code"], "duplicate_node");
    assert_eq!(log2.matrix_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn row_budget_applies_to_the_cluster_merge() {
    let ids: Vec<String> = (0..30).map(|i| format!("route:{i:02}")).collect();
    let one = [1u64];
    let rows_for = |range: std::ops::Range<usize>| -> Vec<RowSpec<'_>> {
        ids[range]
            .iter()
            .map(|id| (id.as_str(), &one[..], &[][..], &[][..]))
            .collect()
    };
    let (p, _) = peer_with("n2", mx(Reads, &[1000], &rows_for(10..30))).await;
    let (s, sess) = entry_node(
        vec![mx(Reads, &[1000], &rows_for(0..10))],
        &[p.addr.to_string()],
        |_| {},
    )
    .await;
    let v = matrix(&s, &sess, "?series=reads&rows=5").await;
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    assert!(!rows.is_empty() && rows.len() <= 5, "{} rows", rows.len());
    let total: u64 = rows
        .iter()
        .flat_map(|r| r["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|x| x.as_u64())
        .sum();
    assert_eq!(total, 30);
}

#[tokio::test]
async fn catalog_divergence_is_reported_on_the_peer() {
    let mut peer_m = mx(Reads, &[1000], &[("route:1", &[7], &[], &[])]);
    peer_m.rows[0].start = Some(b"other-start".to_vec());
    let (p, _) = peer_with("n2", peer_m).await;
    let (s, sess) = entry_node(
        vec![mx(Reads, &[1000], &[("route:1", &[3], &[], &[])])],
        &[p.addr.to_string()],
        |_| {},
    )
    .await;
    let v = matrix(&s, &sess, "?series=reads").await;
    let warnings = node(&v, 1)["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w["code"] == "catalog_divergence" && w["bucket_id"] == "route:1"),
        "{v}"
    );
}

#[tokio::test]
async fn peers_get_the_compact_encoding_only_when_they_ask() {
    let m = mx(
        Writes,
        &[1000, 2000],
        &[("route:1", &[30, 0], &[7, 7], &[42, 42])],
    );
    let s = start_node(
        "n2",
        bind().await,
        FixedSource::new(vec![m]),
        AdminConfig::default(),
    )
    .await;
    let url = s.url(MATRIX);
    let auth = || signed_get(&peer_keys(), MATRIX, "n1", "n2", now_ms());
    let json = get_with(&url, &auth()).await;
    assert_eq!(
        json.headers["content-type"],
        "application/json; charset=utf-8"
    );
    let mut h = auth();
    h.push((
        "accept",
        keyviz_admin::fanout::compact::CONTENT_TYPE.to_string(),
    ));
    let compact = get_with(&url, &h).await;
    assert_eq!(
        compact.headers["content-type"],
        keyviz_admin::fanout::compact::CONTENT_TYPE
    );
    let a = keyviz_admin::fanout::decode::decode_matrix(&json.body).expect("json");
    let b = keyviz_admin::fanout::decode::decode_compact_matrix(&compact.body).expect("compact");
    assert_eq!(a, b);
    assert_eq!(b.node_id.as_deref(), Some("n2"));
    // A browser asking for it still gets JSON.
    let n1 = start_node(
        "n1",
        bind().await,
        FixedSource::new(vec![]),
        AdminConfig::default(),
    )
    .await;
    let sess = login(&n1, "bob", "bob-secret").await;
    let mut h = sess.headers();
    h.push((
        "accept",
        keyviz_admin::fanout::compact::CONTENT_TYPE.to_string(),
    ));
    let r = get_with(&n1.url(MATRIX), &h).await;
    assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");
}

#[tokio::test]
async fn identity_mismatch_missing_id_and_foreign_secret_are_reported() {
    let reads = |v: u64| mx(Reads, &[1000], &[("route:1", &[v], &[], &[])]);
    // Probe says n2, the matrix says n3: not merged.
    let (liar, _) = fake_peer("n2", Behaviour::Body(peer_body(reads(100), "n3"))).await;
    // An old peer without node_id in its matrix: merged, with a warning.
    let no_id = Bytes::from(serde_json::to_vec(&reads(7)).expect("encode"));
    let (legacy, _) = fake_peer("n4", Behaviour::Body(no_id)).await;
    // A real node with another cluster secret cannot prove its identity to us.
    let foreign_listener = bind().await;
    let foreign_addr = foreign_listener.local_addr().expect("addr").to_string();
    let foreign_state = keyviz_admin::AdminState::builder(
        keyviz_admin::NodeIdentity::new("n5", &foreign_addr).expect("id"),
        keyviz_admin::ClusterSecret::new(vec![5; 48], None).expect("secret"),
    )
    .matrix_source(FixedSource::new(vec![reads(1000)]))
    .build()
    .expect("state");
    let foreign = serve_on(foreign_listener, keyviz_admin::router(foreign_state)).await;
    let peers = vec![
        liar.addr.to_string(),
        legacy.addr.to_string(),
        foreign.addr.to_string(),
    ];
    let (s, sess) = entry_node(vec![reads(3)], &peers, |_| {}).await;
    let v = matrix(&s, &sess, "?series=reads").await;
    assert_eq!(row_values(&v, "route:1"), vec![10], "{v}");
    assert_eq!(node(&v, 1)["ok"], false);
    assert!(
        node(&v, 1)["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("peer identity"))
    );
    assert_eq!(node(&v, 2)["ok"], true);
    assert_eq!(node(&v, 2)["warnings"][0]["code"], "missing_node_id");
    assert_eq!(node(&v, 3)["ok"], false);
    assert!(
        node(&v, 3)["error"]
            .as_str()
            .is_some_and(|e| e.contains("401")),
        "{v}"
    );
    assert_eq!(v["fanout"]["expected"], 4);
    assert_eq!(v["fanout"]["responded"], 2);
}

#[tokio::test]
async fn key_range_is_forwarded_to_a_real_peer_and_gives_finer_merged_rows() {
    let peer_src = RecordingSource::new(route_sampler(20..40));
    let p = start_node("n2", bind().await, peer_src.clone(), AdminConfig::default()).await;
    let local_src = RecordingSource::new(route_sampler(0..20));
    let s = start_node(
        "n1",
        bind().await,
        local_src.clone(),
        fanout_config(&[p.addr.to_string()]),
    )
    .await;
    let sess = login(&s, "bob", "bob-secret").await;
    let wide = matrix(&s, &sess, "?rows=4").await;
    assert!(
        row_ids(&wide).iter().all(|(_, aggregate)| *aggregate),
        "40 routes in 4 rows are coarsened: {:?}",
        row_ids(&wide)
    );
    let q = format!(
        "?rows=4&key_start={}&key_end={}",
        b64q(&route_key(18)),
        b64q(&route_key(22))
    );
    let v = matrix(&s, &sess, &q).await;
    let want: Vec<(String, bool)> = (18..22).map(|i| (format!("route:{i}"), false)).collect();
    assert_eq!(row_ids(&v), want, "both nodes' exact rows in range");
    assert_eq!(v["fanout"]["responded"], 2);
    let seen = peer_src.queries.lock().clone();
    let last = seen.last().cloned().unwrap_or_default();
    assert_eq!(
        last.key_start,
        Some(route_key(18)),
        "the peer filtered itself"
    );
    assert_eq!(last.key_end, Some(route_key(22)));
    let local = local_src.queries.lock().clone();
    assert_eq!(
        local.last().and_then(|q| q.key_start.clone()),
        Some(route_key(18))
    );
}

#[tokio::test]
async fn peer_ignoring_the_key_range_is_filtered_before_the_merge() {
    let ranged = |ids: &[&str]| {
        let mut m = mx(Writes, &[1000], &[]);
        for (i, id) in ids.iter().enumerate() {
            let start = id.as_bytes().to_vec();
            let end = ids.get(i + 1).map(|n| n.as_bytes().to_vec());
            m.rows.push(keyviz::MatrixRow {
                bucket_id: format!("route:{id}"),
                start: Some(start),
                end,
                route_count: 1,
                values: vec![5],
                raft_group_ids: vec![1],
                leader_terms: vec![1],
                ..keyviz::MatrixRow::default()
            });
        }
        m
    };
    // The fake peer answers every row whatever the URL says, as a reference node would.
    let (p, log) = peer_with("n2", ranged(&["a", "c", "e", "g", "i"])).await;
    let (s, sess) = entry_node(vec![ranged(&["b", "d"])], &[p.addr.to_string()], |_| {}).await;
    let v = matrix(
        &s,
        &sess,
        &format!("?key_start={}&key_end={}", b64q(b"c"), b64q(b"f")),
    )
    .await;
    let ids: Vec<String> = row_ids(&v).into_iter().map(|(id, _)| id).collect();
    // Peer rows: [c,e) and [e,g) overlap [c,f), [a,c) and [g,i) do not; the open-ended
    // [i,..) starts after the end. Local: [b,d) overlaps, [d,..) too.
    assert_eq!(ids, vec!["route:b", "route:c", "route:d", "route:e"]);
    let q = log.queries.lock().clone();
    assert_eq!(q.len(), 1);
    assert!(
        q[0].contains("key_start=Yw%3D%3D") && q[0].contains("key_end=Zg%3D%3D"),
        "the range is forwarded: {}",
        q[0]
    );
}

/// A peer that accepts TCP connections and never answers (a SIGSTOP-ed process looks like
/// this: the kernel completes the handshake, nobody reads). Holds every socket until dropped.
struct AsleepPeer {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AsleepPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn asleep_peer() -> AsleepPeer {
    let listener = bind().await;
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    AsleepPeer { addr, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_requests_with_one_peer_asleep_all_answer_by_the_deadline() {
    let (live, _) = peer_with("n2", mx(Reads, &[1000], &[("route:1", &[7], &[], &[])])).await;
    let asleep = asleep_peer().await;
    let timeout = Duration::from_secs(2);
    let peers = vec![live.addr.to_string(), asleep.addr.to_string()];
    let (s, sess) = entry_node(
        vec![mx(Reads, &[1000], &[("route:1", &[3], &[], &[])])],
        &peers,
        |c| c.fanout_timeout = timeout,
    )
    .await;
    let s = Arc::new(s);
    let headers = Arc::new(sess.headers());
    let started = Instant::now();
    // Distinct row budgets: 64 distinct fan-outs, none coalesced by single-flight.
    let calls = (1..=64).map(|rows| {
        let s = s.clone();
        let headers = headers.clone();
        tokio::spawn(async move {
            let r = get_with(
                &s.url(&format!("{MATRIX}?series=reads&rows={rows}")),
                &headers,
            )
            .await;
            (r, started.elapsed())
        })
    });
    let bound = timeout.mul_f64(1.1);
    for done in futures::future::join_all(calls).await {
        let (r, took) = done.expect("request task");
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let v = r.json();
        assert_eq!(row_values(&v, "route:1"), vec![10]);
        assert_eq!(node(&v, 2)["ok"], false);
        assert!(took <= bound, "answered after {took:?}, bound {bound:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fanouts_against_streaming_peers_share_one_body_budget_and_return_it() {
    let mut peers = Vec::new();
    let mut logs = Vec::new();
    for i in 0..2 {
        let (p, log) = fake_peer(
            &format!("n{}", i + 2),
            Behaviour::Stream {
                total: 100 * 1024 * 1024,
            },
        )
        .await;
        peers.push(p);
        logs.push(log);
    }
    let names: Vec<String> = peers.iter().map(|p| p.addr.to_string()).collect();
    let budget = 8 * 1024 * 1024;
    let mut config = fanout_config(&names);
    config.fanout_timeout = Duration::from_secs(3);
    config.fanout_bytes_in_flight = budget;
    let listener = bind().await;
    let addr = listener.local_addr().expect("addr").to_string();
    let state = node_state(
        "n1",
        &addr,
        FixedSource::new(vec![mx(Reads, &[1000], &[("route:1", &[3], &[], &[])])]),
        config,
        None,
    );
    assert_eq!(state.peer_body_budget_free(), budget);
    let s = Arc::new(serve_on(listener, keyviz_admin::router(state.clone())).await);
    let sess = login(&s, "bob", "bob-secret").await;
    let headers = Arc::new(sess.headers());
    let calls = (1..=16).map(|rows| {
        let s = s.clone();
        let headers = headers.clone();
        tokio::spawn(async move {
            get_with(
                &s.url(&format!("{MATRIX}?series=reads&rows={rows}")),
                &headers,
            )
            .await
        })
    });
    for done in futures::future::join_all(calls).await {
        let r = done.expect("request task");
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let v = r.json();
        // The local view survives; every streaming peer is refused (cap or deadline).
        assert_eq!(row_values(&v, "route:1"), vec![3]);
        assert_eq!(node(&v, 1)["ok"], false, "{v}");
        assert_eq!(node(&v, 2)["ok"], false, "{v}");
    }
    // Nothing read beyond what the budget allowed can have been buffered, and every byte of
    // budget is back once the answers are out (nothing held afterwards).
    let deadline = Instant::now() + Duration::from_secs(5);
    while state.peer_body_budget_free() != budget {
        assert!(
            Instant::now() < deadline,
            "budget not returned: {} of {budget} free",
            state.peer_body_budget_free()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent: usize = logs
        .iter()
        .map(|l| l.bytes_sent.load(Ordering::SeqCst))
        .sum();
    assert!(sent < 16 * 2 * 100 * 1024 * 1024, "peers sent {sent} bytes");
}

/// Node `n`'s writes over 24 routes in 6 raft groups (route % 6 + 1), each counted by its
/// group's leader (group % 4) in term 3; group 2 is also reported, identically, by the next
/// node (a duplicate of one (group, term)); route 5 is hot.
fn write_view(n: u64) -> keyviz::Matrix {
    let cols = [60_000i64, 120_000, 180_000];
    let rows: Vec<keyviz::MatrixRow> = (0..24u64)
        .map(|r| {
            let group = r % 6 + 1;
            let leader = group % 4;
            let counts = n == leader || (group == 2 && n == (leader + 1) % 4);
            let values: Vec<u64> = (0..3u64)
                .map(|c| {
                    if !counts {
                        0
                    } else if r == 5 {
                        5_000 + c
                    } else {
                        (r + c) % 7 + 1
                    }
                })
                .collect();
            keyviz::MatrixRow {
                bucket_id: format!("route:{r}"),
                start: Some(format!("k{r:03}").into_bytes()),
                end: Some(format!("k{:03}", r + 1).into_bytes()),
                route_count: 1,
                values,
                raft_group_ids: vec![group; 3],
                leader_terms: vec![3; 3],
                ..keyviz::MatrixRow::default()
            }
        })
        .collect();
    keyviz::Matrix {
        column_unix_ms: cols.to_vec(),
        rows,
        series: Writes,
        generated_at: "2026-12-01T00:00:00Z".into(),
        step_ms: 60_000,
        node_id: None,
    }
}

fn column_totals(v: &serde_json::Value) -> Vec<u64> {
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    let width = v["column_unix_ms"].as_array().map_or(0, Vec::len);
    (0..width)
        .map(|j| rows.iter().filter_map(|r| r["values"][j].as_u64()).sum())
        .collect()
}

#[tokio::test]
async fn shared_boundaries_conserve_write_totals_across_real_and_older_peers() {
    // n1 (entry), n2 and n3 are real routers speaking both rounds; n4 is an older peer that
    // ignores them and answers its plain view.
    let views: Vec<keyviz::Matrix> = (0..4).map(write_view).collect();
    let oracle = keyviz::merge::merge(
        &views,
        &keyviz::merge::MergeOptions {
            series: Writes,
            step_ms: 60_000,
            row_budget: None,
            settling_from_unix_ms: None,
        },
    )
    .matrix;
    let want: Vec<u64> = (0..3)
        .map(|j| oracle.rows.iter().map(|r| r.values[j]).sum())
        .collect();
    let l2 = bind().await;
    let l3 = bind().await;
    let (old, old_log) = peer_with("n4", views[3].clone()).await;
    let peers = vec![
        l2.local_addr().expect("addr").to_string(),
        l3.local_addr().expect("addr").to_string(),
        old.addr.to_string(),
    ];
    let src2 = FixedSource::new(vec![views[1].clone()]);
    let src3 = FixedSource::new(vec![views[2].clone()]);
    let _n2 = start_node("n2", l2, src2.clone(), fanout_config(&[])).await;
    let _n3 = start_node("n3", l3, src3.clone(), fanout_config(&[])).await;
    let (s, sess) = entry_node(vec![views[0].clone()], &peers, |_| {}).await;
    for budget in [1usize, 3, 6, 24] {
        let v = matrix(&s, &sess, &format!("?series=writes&rows={budget}")).await;
        let rows = v["rows"].as_array().cloned().unwrap_or_default();
        assert!(
            rows.len() <= budget,
            "{} rows at budget {budget}",
            rows.len()
        );
        assert_eq!(v["fanout"]["responded"], 4, "{v}");
        assert_eq!(
            column_totals(&v),
            want,
            "write totals at budget {budget}: {v}"
        );
        assert!(
            rows.iter().all(|r| r["conflict"] != true),
            "identical duplicates are no conflict: {v}"
        );
        if budget >= 3 {
            assert_eq!(
                row_values(&v, "route:5"),
                vec![5_000, 5_001, 5_002],
                "the hot route keeps its own row at budget {budget}"
            );
        }
    }
    // The older peer was asked once per fan-out (round 1) and never for the second round.
    let q = old_log.queries.lock().clone();
    assert_eq!(q.len(), 4);
    assert!(q.iter().all(|q| q.ends_with("&round=totals")), "{q:?}");
    // The real peers answered both rounds from their untrimmed view.
    assert_eq!(src2.calls(), 8);
    assert!(
        src3.queries
            .lock()
            .iter()
            .all(|q| q.row_budget == Some(16_384))
    );
}

#[tokio::test]
async fn round_two_answers_kvmb2_to_who_asks_for_it_and_kvmb1_to_older_aggregators() {
    use keyviz_admin::fanout::compact::{
        BOUNDARY_CONTENT_TYPE, BOUNDARY_V2_CONTENT_TYPE, decode_boundary_packed, encode_boundaries,
    };
    let m = mx(
        Writes,
        &[1000, 2000],
        &[
            ("route:1", &[30, 0], &[7, 7], &[42, 42]),
            ("route:2", &[4, 5], &[8, 8], &[3, 3]),
        ],
    );
    let s = start_node(
        "n2",
        bind().await,
        FixedSource::new(vec![m]),
        AdminConfig::default(),
    )
    .await;
    let b = keyviz::boundaries::Boundaries::from_keys(vec![Vec::new()]).expect("one row");
    let path = format!(
        "{MATRIX}?series=writes&boundaries={}",
        encode_boundaries(&b)
    );
    let ask = |accept: &str| {
        let mut h = signed_get(&peer_keys(), &path, "n1", "n2", now_ms());
        h.push(("accept", accept.to_string()));
        h
    };
    // What an aggregator of this version sends, and what an older one sent.
    let v2 = get_with(
        &s.url(&path),
        &ask(&format!(
            "{BOUNDARY_V2_CONTENT_TYPE}, {BOUNDARY_CONTENT_TYPE};q=0.9"
        )),
    )
    .await;
    let v1 = get_with(&s.url(&path), &ask(BOUNDARY_CONTENT_TYPE)).await;
    assert_eq!(v2.headers["content-type"], BOUNDARY_V2_CONTENT_TYPE);
    assert_eq!(v1.headers["content-type"], BOUNDARY_CONTENT_TYPE);
    assert!(v2.body.starts_with(b"KVMB2\n"));
    assert!(v1.body.starts_with(b"KVMB1\n"));
    let decode = |body: &[u8]| {
        let mut p = keyviz::boundaries::PackedBoundaryMatrix::default();
        decode_boundary_packed(body, &mut p, 1, 1 << 48).expect("decodes");
        p
    };
    let (a, b) = (decode(&v2.body), decode(&v1.body));
    assert_eq!(a, b, "both versions carry the same answer");
    assert_eq!(
        a.values,
        vec![34, 5],
        "two routes joined in one boundary row"
    );
}
