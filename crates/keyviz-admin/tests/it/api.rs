//! The matrix, nodes and identity endpoints of a single node.

use std::sync::Arc;

use http::{Method, StatusCode};
use keyviz::{RouteSpec, Sampler, SamplerConfig, Series};
use keyviz_admin::{AdminConfig, DisabledSource};

use crate::util::*;

const MATRIX: &str = "/admin/api/v1/keyviz/matrix";

async fn single(source: Arc<dyn keyviz_admin::MatrixSource>) -> Server {
    start_node("n1", bind().await, source, AdminConfig::default()).await
}

#[tokio::test]
async fn disabled_keyviz_is_503_after_auth_and_401_before() {
    let s = single(Arc::new(DisabledSource)).await;
    let anon = get_with(&s.url(MATRIX), &[]).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anon.error_code(), "unauthenticated");
    let sess = login(&s, "bob", "bob-secret").await;
    let r = get_with(&s.url(MATRIX), &sess.headers()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.error_code(), "keyviz_disabled");
    let r = get_with(&s.url(&format!("{MATRIX}?series=bogus")), &sess.headers()).await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "503 comes before parameter checks"
    );
}

#[tokio::test]
async fn non_get_is_405_with_csrf_and_403_without() {
    let s = single(FixedSource::new(vec![])).await;
    let sess = login(&s, "alice", "alice-secret").await;
    let r = send(Method::POST, &s.url(MATRIX), &sess.write_headers(), None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.error_code(), "method_not_allowed");
    let r = send(Method::POST, &s.url(MATRIX), &sess.headers(), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "csrf_missing");
    let r = send(Method::HEAD, &s.url(MATRIX), &sess.headers(), None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

fn sampler_with_traffic() -> Arc<Sampler> {
    let t0 = 1_700_000_000_000i64;
    let sampler = Sampler::new(
        SamplerConfig {
            step_ms: 60_000,
            ..SamplerConfig::default()
        },
        t0,
    )
    .expect("sampler");
    sampler
        .register_route(RouteSpec {
            id: 1,
            start: b"a".to_vec(),
            end: Some(b"m".to_vec()),
            group: 7,
        })
        .expect("route 1");
    sampler
        .register_route(RouteSpec {
            id: 2,
            start: b"m".to_vec(),
            end: Some(b"z".to_vec()),
            group: 8,
        })
        .expect("route 2");
    for _ in 0..4 {
        sampler.observe_write(1, b"b", 10, 7, 42, t0);
    }
    sampler.observe_read(1, b"b", 10, keyviz::ReadRole::Leader, t0);
    for _ in 0..7 {
        sampler.observe_write(2, b"n", 10, 8, 3, t0);
    }
    let _ = sampler.flush(t0 + 60_000);
    for _ in 0..9 {
        sampler.observe_write(1, b"c", 10, 7, 42, t0 + 60_000);
    }
    for _ in 0..3 {
        sampler.observe_read(1, b"c", 10, keyviz::ReadRole::Leader, t0 + 60_000);
    }
    let _ = sampler.flush(t0 + 120_000);
    Arc::new(sampler)
}

#[tokio::test]
async fn real_sampler_matrix_has_reference_shape_and_series() {
    let s = single(sampler_with_traffic()).await;
    let sess = login(&s, "bob", "bob-secret").await;
    let r = get_with(&s.url(MATRIX), &sess.headers()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(r.body.ends_with(b"\n"));
    let v = r.json();
    assert_eq!(v["series"], "writes");
    assert_eq!(v["node_id"], "n1");
    assert_eq!(v["column_unix_ms"].as_array().map(Vec::len), Some(2));
    assert_eq!(row_values(&v, "route:1"), vec![4, 9]);
    assert_eq!(row_values(&v, "route:2"), vec![7, 0]);
    let route1 = v["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["bucket_id"] == "route:1"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(route1["raft_group_ids"], serde_json::json!([7, 7]));
    assert_eq!(route1["leader_terms"], serde_json::json!([42, 42]));
    let again = get_with(&s.url(MATRIX), &sess.headers()).await.json();
    assert_eq!(
        again["rows"], v["rows"],
        "repeated polls give the same rows"
    );
    assert!(v["generated_at"].as_str().is_some_and(|g| g.ends_with('Z')));
    let fan = &v["fanout"];
    assert_eq!(fan["expected"], 1);
    assert_eq!(fan["responded"], 1);
    assert_eq!(fan["nodes"][0]["node_id"], "n1");
    assert_eq!(fan["nodes"][0]["ok"], true);

    let reads = get_with(&s.url(&format!("{MATRIX}?series=reads")), &sess.headers())
        .await
        .json();
    assert_eq!(reads["series"], "reads");
    assert_eq!(row_values(&reads, "route:1"), vec![1, 3]);
    let wb = get_with(
        &s.url(&format!("{MATRIX}?series=write_bytes")),
        &sess.headers(),
    )
    .await
    .json();
    assert_eq!(wb["series"], "write_bytes");
    let r1 = row_values(&wb, "route:1");
    assert!(
        r1[0] > 0 && r1[1] > r1[0],
        "write bytes grow with writes: {r1:?}"
    );
}

#[tokio::test]
async fn invalid_parameters_are_400_invalid_query() {
    let s = single(FixedSource::new(vec![])).await;
    let sess = login(&s, "bob", "bob-secret").await;
    for (q, needle) in [
        ("series=bogus", "series must be one of"),
        ("rows=abc", "rows must be an integer"),
        ("from_unix_ms=notanumber", "from_unix_ms must be an integer"),
        ("to_unix_ms=1.5", "to_unix_ms must be an integer"),
    ] {
        let r = get_with(&s.url(&format!("{MATRIX}?{q}")), &sess.headers()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.error_code(), "invalid_query", "{q}");
        assert!(
            r.json()["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle)),
            "{q}: {}",
            r.text()
        );
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
    }
}

#[tokio::test]
async fn time_bounds_and_clamped_rows_reach_the_source() {
    let src = FixedSource::new(vec![]);
    let s = single(src.clone()).await;
    let sess = login(&s, "bob", "bob-secret").await;
    let q = format!("{MATRIX}?from_unix_ms=1699000000000&to_unix_ms=1700500000000&rows=9999");
    assert_eq!(
        get_with(&s.url(&q), &sess.headers()).await.status,
        StatusCode::OK
    );
    let q2 = format!("{MATRIX}?from_unix_ms=0&to_unix_ms=0&rows=-1&series=reads");
    assert_eq!(
        get_with(&s.url(&q2), &sess.headers()).await.status,
        StatusCode::OK
    );
    let q3 = format!("{MATRIX}?from_unix_ms=5000&to_unix_ms=1000&series=read_bytes");
    let r = get_with(&s.url(&q3), &sess.headers()).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "inverted window is an empty answer, not an error"
    );
    assert_eq!(r.json()["rows"], serde_json::json!([]));
    let queries = src.queries.lock().clone();
    assert_eq!(queries.len(), 3);
    assert_eq!(queries[0].from_unix_ms, Some(1_699_000_000_000));
    assert_eq!(queries[0].to_unix_ms, Some(1_700_500_000_000));
    assert_eq!(queries[0].row_budget, Some(1024));
    assert_eq!(queries[1].from_unix_ms, None);
    assert_eq!(queries[1].to_unix_ms, None);
    assert_eq!(queries[1].series, Series::Reads);
    assert_eq!(queries[1].row_budget, Some(1024));
}

#[tokio::test]
async fn row_budget_caps_rows_and_keeps_the_total() {
    let t0 = 1_700_000_000_000i64;
    let sampler = Sampler::new(SamplerConfig::default(), t0).expect("sampler");
    for id in 0..1029u64 {
        let start = format!("k{id:05}").into_bytes();
        let end = format!("k{:05}", id + 1).into_bytes();
        sampler
            .register_route(RouteSpec {
                id,
                start: start.clone(),
                end: Some(end),
                group: 1,
            })
            .expect("route");
        sampler.observe_write(id, &start, 1, 1, 1, t0);
    }
    let _ = sampler.flush(t0 + 60_000);
    let s = single(Arc::new(sampler)).await;
    let sess = login(&s, "bob", "bob-secret").await;
    for q in ["", "?rows=0", "?rows=-1", "?rows=9999"] {
        let v = get_with(&s.url(&format!("{MATRIX}{q}")), &sess.headers())
            .await
            .json();
        let rows = v["rows"].as_array().map(Vec::len).unwrap_or_default();
        assert_eq!(rows, 1024, "{q}");
    }
    let v = get_with(&s.url(&format!("{MATRIX}?rows=10")), &sess.headers())
        .await
        .json();
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    assert!(rows.len() <= 10 && !rows.is_empty());
    let total: u64 = rows
        .iter()
        .flat_map(|r| r["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|x| x.as_u64())
        .sum();
    assert_eq!(total, 1029, "coarsening keeps every write");
}

#[tokio::test]
async fn identity_is_public_and_nodes_lists_self_and_peers() {
    let src = FixedSource::new(vec![]);
    let config = fanout_config(&["127.0.0.1:1".to_string()]);
    let s = start_node("n1", bind().await, src, config).await;
    let id = get_with(&s.url("/admin/api/v1/keyviz/identity"), &[]).await;
    assert_eq!(id.status, StatusCode::OK);
    assert_eq!(id.json()["node_id"], "n1");
    let anon = get_with(&s.url("/admin/api/v1/keyviz/nodes"), &[]).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    let sess = login(&s, "bob", "bob-secret").await;
    // One fan-out first, so the peer's reachability is known.
    let _ = get_with(&s.url(MATRIX), &sess.headers()).await;
    let v = get_with(&s.url("/admin/api/v1/keyviz/nodes"), &sess.headers())
        .await
        .json();
    assert_eq!(v["node_id"], "n1");
    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["self"], true);
    assert_eq!(nodes[1]["node"], "127.0.0.1:1");
    assert_eq!(nodes[1]["reachable"], false);
    assert!(
        nodes[1]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
}

#[tokio::test]
async fn unknown_paths_are_404_before_auth() {
    let s = single(FixedSource::new(vec![])).await;
    let r = get_with(&s.url("/admin/api/v1/keyviz/matrix/"), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "unknown_endpoint");
    let r = get_with(&s.url("/admin/api/v1/nope"), &[]).await;
    assert_eq!(r.error_code(), "unknown_endpoint");
    for p in ["/admin/api", "/admin/api/v2/x", "/admin/api/v1"] {
        let r = get_with(&s.url(p), &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{p}");
        assert_eq!(r.error_code(), "not_found", "{p}");
    }
}

#[tokio::test]
async fn invalid_key_bounds_are_400_naming_the_parameter() {
    let src = FixedSource::new(vec![]);
    let s = single(src.clone()).await;
    let sess = login(&s, "bob", "bob-secret").await;
    let too_long = b64q(&[b'k'; keyviz_admin::api::MAX_KEY_BYTES + 1]);
    for (q, needle) in [
        ("key_start=%21%21".to_string(), "key_start must be base64"),
        ("key_end=a".to_string(), "key_end must be base64"),
        (
            format!("key_start={too_long}"),
            "key_start must be at most 4096 bytes",
        ),
        (
            format!("key_end={too_long}"),
            "key_end must be at most 4096 bytes",
        ),
        (
            format!("key_start={}&key_end={}", b64q(b"b"), b64q(b"a")),
            "key_end must be greater than key_start",
        ),
        (
            format!("key_start={}&key_end={}", b64q(b"a"), b64q(b"a")),
            "key_end must be greater than key_start",
        ),
    ] {
        let r = get_with(&s.url(&format!("{MATRIX}?{q}")), &sess.headers()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.error_code(), "invalid_query", "{q}");
        let message = r.json()["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains(needle), "{q}: {message}");
    }
    assert_eq!(src.calls(), 0, "a bad key bound never reaches the source");
}

#[tokio::test]
async fn key_bounds_reach_the_source_in_every_accepted_spelling() {
    let src = FixedSource::new(vec![]);
    // No result reuse: every spelling must reach the source on its own.
    let config = AdminConfig {
        result_reuse: std::time::Duration::ZERO,
        ..AdminConfig::default()
    };
    let s = start_node("n1", bind().await, src.clone(), config).await;
    let sess = login(&s, "bob", "bob-secret").await;
    // [0xfb, 0xff] is "+/8=" in standard base64 and "-_8" URL-safe unpadded.
    for q in [
        "key_start=%2B%2F8%3D&key_end=%2F%2F8%3D",
        "key_start=-_8&key_end=__8",
        "key_start=%2B%2F8&key_end=%2F%2F8",
    ] {
        let r = get_with(&s.url(&format!("{MATRIX}?{q}")), &sess.headers()).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text());
    }
    let r = get_with(
        &s.url(&format!("{MATRIX}?key_start=&key_end=")),
        &sess.headers(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "empty bounds mean unbounded");
    let queries = src.queries.lock().clone();
    assert_eq!(queries.len(), 4);
    for q in &queries[..3] {
        assert_eq!(q.key_start.as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(q.key_end.as_deref(), Some(&[0xff, 0xff][..]));
    }
    assert_eq!(
        (queries[3].key_start.clone(), queries[3].key_end.clone()),
        (None, None)
    );
}

#[tokio::test]
async fn key_range_narrows_a_real_sampler_to_finer_rows_inside_the_range() {
    let s = single(route_sampler(0..1029)).await;
    let sess = login(&s, "bob", "bob-secret").await;
    let wide = get_with(&s.url(&format!("{MATRIX}?rows=10")), &sess.headers())
        .await
        .json();
    assert!(
        row_ids(&wide).iter().all(|(_, aggregate)| *aggregate),
        "the unfiltered view is coarsened: {:?}",
        row_ids(&wide)
    );
    let q = format!(
        "{MATRIX}?rows=10&key_start={}&key_end={}",
        b64q(&route_key(100)),
        b64q(&route_key(105))
    );
    let r = get_with(&s.url(&q), &sess.headers()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    let want: Vec<(String, bool)> = (100..105).map(|i| (format!("route:{i}"), false)).collect();
    assert_eq!(row_ids(&v), want, "one exact row per route in range");
    for i in 100..105 {
        assert_eq!(row_values(&v, &format!("route:{i}")), vec![1]);
    }
    // Only a start: every route from k01020 on; a row straddling the start is kept.
    let q = format!("{MATRIX}?key_start={}", b64q(b"k01020x"));
    let v = get_with(&s.url(&q), &sess.headers()).await.json();
    let want: Vec<(String, bool)> = (1020..1029)
        .map(|i| (format!("route:{i}"), false))
        .collect();
    assert_eq!(row_ids(&v), want);
}
