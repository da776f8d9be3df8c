//! Embedded UI assets, SPA deep links, health and metrics endpoints.

use http::{Method, StatusCode};
use keyviz_admin::AdminConfig;

use crate::util::*;

async fn node() -> Server {
    start_node(
        "n1",
        bind().await,
        FixedSource::new(vec![]),
        AdminConfig::default(),
    )
    .await
}

#[tokio::test]
async fn admin_and_deep_links_serve_index_html() {
    let s = node().await;
    let index = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/index.html"))
        .expect("ui/index.html");
    for p in ["/admin", "/admin/", "/admin/cluster/deep/link"] {
        let r = get_with(&s.url(p), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{p}");
        assert_eq!(r.headers["content-type"], "text/html; charset=utf-8", "{p}");
        assert_eq!(r.headers["cache-control"], "no-cache");
        assert_eq!(r.body.as_ref(), index.as_slice(), "{p}");
    }
    let r = send(Method::POST, &s.url("/admin/somewhere"), &[], None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn assets_have_content_type_etag_and_conditional_get() {
    let s = node().await;
    let r = get_with(&s.url("/admin/assets/js/main.js"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(r.headers["cache-control"], "no-cache");
    let etag = r.headers["etag"].to_str().expect("etag").to_string();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    let r2 = get_with(
        &s.url("/admin/assets/js/main.js"),
        &[("if-none-match", etag)],
    )
    .await;
    assert_eq!(r2.status, StatusCode::NOT_MODIFIED);
    assert!(r2.body.is_empty());
    for p in [
        "/admin/assets",
        "/admin/assets/nope.js",
        "/admin/assets/../Cargo.toml",
        "/admin/assets/%2e%2e/Cargo.toml",
    ] {
        assert_eq!(
            get_with(&s.url(p), &[]).await.status,
            StatusCode::NOT_FOUND,
            "{p}"
        );
    }
}

#[tokio::test]
async fn healthz_and_metrics() {
    let s = node().await;
    let r = get_with(&s.url("/admin/healthz"), &[]).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ok\n"));
    let r = send(Method::POST, &s.url("/admin/healthz"), &[], None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers["allow"], "GET, HEAD");
    let sess = login(&s, "bob", "bob-secret").await;
    let _ = get_with(&s.url("/admin/api/v1/keyviz/matrix"), &sess.headers()).await;
    let m = get_with(&s.url("/metrics"), &[]).await;
    assert_eq!(m.status, StatusCode::OK);
    let text = m.text();
    assert!(
        text.contains("keyviz_fanout_duration_seconds_count 1"),
        "{text}"
    );
    assert!(
        text.contains("keyviz_matrix_requests_total{outcome=\"fanout\"} 1"),
        "{text}"
    );
}
