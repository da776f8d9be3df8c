//! Peak RSS of an aggregator serving 16 concurrent matrix requests against two peers that
//! each stream 100 MB (issue 11: must stay under 256 MB; the body budget
//! `fanout_bytes_in_flight` bounds it). Prints VmHWM and VmRSS before, at the peak and after.
//!
//! Run: `cargo run -p keyviz-admin --example fanout_rss` (the default 96 MiB budget), or
//! with `KEYVIZ_RSS_BUDGET_MB=100000` for a budget that never binds (the old behaviour, as
//! a baseline in the same session).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use keyviz::{Matrix, MatrixQuery};
use keyviz_admin::{
    AdminConfig, AdminState, ClusterSecret, MatrixSource, NodeIdentity, Role, SourceError,
    StaticCredentials,
};

const SECRET: &[u8] = b"keyviz-admin-rss-example-secret-0123456789";
const STREAM: usize = 100 * 1024 * 1024;

struct Empty1;

impl MatrixSource for Empty1 {
    fn matrix(&self, q: &MatrixQuery, _now: i64) -> Result<Matrix, SourceError> {
        Ok(Matrix::empty(
            q.series,
            60_000,
            "2026-12-01T00:00:00Z".into(),
        ))
    }
}

fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// A peer that says who it is and streams `STREAM` bytes of spaces after `{` for any matrix.
async fn streaming_peer(id: &'static str) -> Option<SocketAddr> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
    let addr = l.local_addr().ok()?;
    let app = Router::new()
        .route(
            "/admin/api/v1/keyviz/identity",
            get(move || async move { axum::Json(serde_json::json!({ "node_id": id })) }),
        )
        .route(
            "/admin/api/v1/keyviz/matrix",
            get(|| async {
                let chunk = Bytes::from(vec![b' '; 64 * 1024]);
                let stream = futures::stream::unfold(0usize, move |sent| {
                    let chunk = chunk.clone();
                    async move {
                        if sent >= STREAM {
                            return None;
                        }
                        let piece = if sent == 0 {
                            Bytes::from_static(b"{")
                        } else {
                            chunk
                        };
                        let n = piece.len();
                        Some((Ok::<Bytes, std::io::Error>(piece), sent + n))
                    }
                });
                Body::from_stream(stream)
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    Some(addr)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (Some(p1), Some(p2)) = (streaming_peer("p1").await, streaming_peer("p2").await) else {
        eprintln!("could not start the peers");
        return;
    };
    let Ok(l) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
        return;
    };
    let Ok(addr) = l.local_addr() else { return };
    let (Ok(identity), Ok(secret)) = (
        NodeIdentity::new("n0", addr.to_string()),
        ClusterSecret::new(SECRET.to_vec(), None),
    ) else {
        return;
    };
    let config = AdminConfig {
        fanout_nodes: vec![p1.to_string(), p2.to_string()],
        fanout_timeout: Duration::from_secs(20),
        result_reuse: Duration::ZERO,
        fanout_bytes_in_flight: std::env::var("KEYVIZ_RSS_BUDGET_MB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(keyviz_admin::config::DEFAULT_FANOUT_BYTES_IN_FLIGHT, |mb| {
                mb << 20
            }),
        ..AdminConfig::default()
    };
    let creds = StaticCredentials::new().with_plain("rss", "rss", Some(Role::ReadOnly));
    let Ok(state) = AdminState::builder(identity, secret)
        .config(config)
        .matrix_source(Arc::new(Empty1))
        .credentials(Arc::new(creds))
        .build()
    else {
        return;
    };
    let cookie = state
        .issue_session("rss", Role::ReadOnly)
        .map(|s| format!("admin_session={}", s.cookie_value))
        .unwrap_or_default();
    let app = keyviz_admin::router(state);
    tokio::spawn(async move {
        let _ = axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    println!(
        "before: VmHWM {} VmRSS {}",
        status("VmHWM:"),
        status("VmRSS:")
    );
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let calls = (1..=16).map(|rows| {
        let client = client.clone();
        let cookie = cookie.clone();
        async move {
            let url = format!("http://{addr}/admin/api/v1/keyviz/matrix?series=reads&rows={rows}");
            let req = http::Request::get(url)
                .header("cookie", cookie)
                .body(Empty::<Bytes>::new());
            let Ok(req) = req else { return 0 };
            match client.request(req).await {
                Ok(resp) => {
                    let ok = resp.status().is_success();
                    let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                    usize::from(ok && body.is_ok())
                }
                Err(_) => 0,
            }
        }
    });
    let answered: usize = futures::future::join_all(calls).await.into_iter().sum();
    println!(
        "16 concurrent fan-outs, {answered} answered 200: peak VmHWM {} VmRSS {}",
        status("VmHWM:"),
        status("VmRSS:")
    );
}
