//! Proven peer identity and authenticated peer answers over real HTTP: impostors that claim a
//! member's id, tampered answers, replayed requests and absurd counts.

use std::sync::atomic::Ordering;

use http::StatusCode;
use keyviz::Series::Reads;

use crate::util::*;

const MATRIX: &str = "/admin/api/v1/keyviz/matrix";

async fn fan_out(peers: &[String]) -> serde_json::Value {
    let s = start_node(
        "n1",
        bind().await,
        FixedSource::new(vec![mx(Reads, &[1000], &[("route:1", &[3], &[], &[])])]),
        fanout_config(peers),
    )
    .await;
    let sess = login(&s, "bob", "bob-secret").await;
    let r = get_with(&s.url(&format!("{MATRIX}?series=reads")), &sess.headers()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

fn status_of<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["fanout"]["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["node"] == name))
        .unwrap_or_else(|| panic!("no status for {name} in {v}"))
}

#[tokio::test]
async fn an_impostor_claiming_a_member_is_unproven_gets_nothing_and_never_replaces_it() {
    let reads = |v: u64| mx(Reads, &[1000], &[("route:1", &[v], &[], &[])]);
    // The real n2 holds the secret.
    let real = start_node(
        "n2",
        bind().await,
        FixedSource::new(vec![reads(7)]),
        Default::default(),
    )
    .await;
    // The impostor claims n2 but has no secret; listed first so it would win today.
    let (impostor, log) = fake_peer_at(
        "n2",
        Behaviour::Body(peer_body(reads(u64::MAX / 2), "n2")),
        None,
        MATRIX,
    )
    .await;
    let v = fan_out(&[impostor.addr.to_string(), real.addr.to_string()]).await;
    let fake = status_of(&v, &impostor.addr.to_string());
    assert_eq!(fake["ok"], false, "{v}");
    assert_eq!(fake["reason"], "peer_identity_unproven", "{v}");
    assert!(
        fake["node_id"].is_null(),
        "an unproven claim is not shown as n2: {v}"
    );
    let member = status_of(&v, &real.addr.to_string());
    assert_eq!(member["ok"], true, "{v}");
    assert_eq!(member["node_id"], "n2");
    assert!(
        member["warnings"].as_array().is_none_or(|w| w.is_empty()),
        "the real n2 is merged, not dropped as a duplicate: {v}"
    );
    assert_eq!(row_values(&v, "route:1"), vec![10], "local 3 + real n2's 7");
    // The impostor only ever saw an identity challenge, never a request it could use.
    assert_eq!(log.matrix_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_peer_without_the_secret_gets_no_request_usable_against_a_member() {
    let real = start_node(
        "n2",
        bind().await,
        FixedSource::new(vec![mx(Reads, &[1000], &[("route:1", &[7], &[], &[])])]),
        Default::default(),
    )
    .await;
    // A recording impostor: it keeps the identity challenge it was sent.
    let recorder = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<http::HeaderMap>::new()));
    let rec = recorder.clone();
    let app = axum::Router::new().route(
        "/admin/api/v1/keyviz/identity",
        axum::routing::get(move |h: http::HeaderMap| {
            let rec = rec.clone();
            async move {
                rec.lock().push(h);
                axum::Json(serde_json::json!({"node_id": "n2"}))
            }
        }),
    );
    let impostor = serve_on(bind().await, app).await;
    let v = fan_out(&[impostor.addr.to_string()]).await;
    assert_eq!(
        status_of(&v, &impostor.addr.to_string())["reason"],
        "peer_identity_unproven"
    );
    let challenge = recorder
        .lock()
        .first()
        .cloned()
        .expect("identity challenge seen");
    assert_eq!(challenge["x-keyviz-peer-aud"], "*identity");
    // Replayed at the real n2's matrix endpoint, the challenge grants nothing.
    let replay: Vec<(&str, String)> = challenge
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("x-keyviz-peer-"))
        .map(|(n, v)| {
            let name: &'static str = Box::leak(n.as_str().to_string().into_boxed_str());
            (name, v.to_str().unwrap_or_default().to_string())
        })
        .collect();
    let r = get_with(&real.url(&format!("{MATRIX}?series=reads")), &replay).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_tampered_answer_is_refused_before_it_is_decoded() {
    let honest = peer_body(mx(Reads, &[1000], &[("route:1", &[7], &[], &[])]), "n2");
    let forged = peer_body(mx(Reads, &[1000], &[("route:1", &[7000], &[], &[])]), "n2");
    let (p, log) = fake_peer_at(
        "n2",
        Behaviour::Tamper {
            signed: honest,
            sent: forged,
        },
        Some(peer_keys()),
        MATRIX,
    )
    .await;
    let v = fan_out(&[p.addr.to_string()]).await;
    let st = status_of(&v, &p.addr.to_string());
    assert_eq!(st["ok"], false, "{v}");
    assert_eq!(st["reason"], "peer_answer_unauthenticated", "{v}");
    assert_eq!(row_values(&v, "route:1"), vec![3], "nothing of it merged");
    assert_eq!(log.matrix_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn replayed_signed_requests_are_refused_at_the_peer() {
    let (p, log) = fake_peer(
        "n2",
        Behaviour::Body(peer_body(
            mx(Reads, &[1000], &[("route:1", &[7], &[], &[])]),
            "n2",
        )),
    )
    .await;
    let v = fan_out(&[p.addr.to_string()]).await;
    assert_eq!(row_values(&v, "route:1"), vec![10]);
    // Capture the signed request the aggregator sent and send it again.
    let captured = log.headers.lock()[0].clone();
    let query = log.queries.lock()[0].clone();
    let replay: Vec<(&str, String)> = captured
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("x-keyviz-peer-"))
        .map(|(n, v)| {
            let name: &'static str = Box::leak(n.as_str().to_string().into_boxed_str());
            (name, v.to_str().unwrap_or_default().to_string())
        })
        .collect();
    let r = get_with(&p.url(&format!("{MATRIX}?{query}")), &replay).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(
        log.matrix_calls.load(Ordering::SeqCst),
        1,
        "the replay never reached the handler"
    );
}

#[tokio::test]
async fn absurd_counts_from_a_proven_peer_are_that_nodes_error() {
    let huge = peer_body(
        mx(Reads, &[1000], &[("route:1", &[u64::MAX], &[], &[])]),
        "n2",
    );
    let (p, _) = fake_peer("n2", Behaviour::Body(huge)).await;
    let mut overflow = mx(Reads, &[1000], &[("route:1", &[1 << 47], &[], &[])]);
    overflow.rows.extend(
        mx(
            Reads,
            &[1000],
            &[
                ("route:2", &[1 << 47], &[], &[]),
                ("route:3", &[1 << 47], &[], &[]),
            ],
        )
        .rows,
    );
    let (q, _) = fake_peer("n3", Behaviour::Body(peer_body(overflow, "n3"))).await;
    let v = fan_out(&[p.addr.to_string(), q.addr.to_string()]).await;
    for s in [&p, &q] {
        let st = status_of(&v, &s.addr.to_string());
        assert_eq!(st["ok"], false, "{v}");
        assert_eq!(st["reason"], "invalid", "{v}");
    }
    assert_eq!(row_values(&v, "route:1"), vec![3]);
}

#[tokio::test]
async fn absurd_hot_key_totals_from_a_proven_peer_are_that_nodes_error() {
    let huge = node_hot(Reads, &[(1, 1, u64::MAX, &[("a", 5)])]);
    let (p, _) = fake_hot_peer("n2", Behaviour::Body(hot_body(huge, "n2"))).await;
    let s = start_node(
        "n1",
        bind().await,
        HotSource::new(vec![node_hot(Reads, &[(1, 1, 3, &[("a", 3)])])]),
        fanout_config(&[p.addr.to_string()]),
    )
    .await;
    let sess = login(&s, "bob", "bob-secret").await;
    let r = get_with(
        &s.url("/admin/api/v1/keyviz/hotkeys?series=reads"),
        &sess.headers(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    let st = status_of(&v, &p.addr.to_string());
    assert_eq!(st["ok"], false, "{v}");
    assert_eq!(st["reason"], "invalid", "{v}");
}
