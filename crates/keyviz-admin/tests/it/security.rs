//! Issue 12 (admin web surface): sessions end everywhere, session-bound CSRF, bounded login
//! work, a limiter that lets newcomers in, hardening headers and the `/metrics` token.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{Method, StatusCode};
use keyviz_admin::auth::{CredentialCheck, CredentialStore, Principal};
use keyviz_admin::config::IpNet;
use keyviz_admin::{AdminConfig, AdminState, MetricsToken, Role};
use parking_lot::Mutex;

use crate::util::*;

const MATRIX: &str = "/admin/api/v1/keyviz/matrix";
const LOGOUT: &str = "/admin/api/v1/auth/logout";
const LOGIN: &str = "/admin/api/v1/auth/login";
/// A state-changing route like kvnode's `POST /admin/api/v1/kvnode/split`.
const WRITE: &str = "/admin/api/v1/test/write";

async fn write_route(principal: Principal) -> Response {
    match principal {
        Principal::Operator(c) if c.role == Role::Full => {
            axum::Json(serde_json::json!({"done": true})).into_response()
        }
        _ => keyviz_admin::ApiError::forbidden("needs the full role").into_response(),
    }
}

/// The admin router plus a write route taking the same `Principal` extractor, as a host
/// mounts it.
fn host_router(state: AdminState) -> Router {
    let writes = Router::new()
        .route(WRITE, post(write_route))
        .with_state(state.clone());
    keyviz_admin::router(state)
        .merge(writes)
        .layer(axum::middleware::map_response(
            keyviz_admin::security_headers,
        ))
}

/// Three real admin routers `n1..n3` that list each other as fan-out peers.
async fn three_nodes() -> Vec<Server> {
    let listeners = vec![bind().await, bind().await, bind().await];
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").to_string())
        .collect();
    let mut servers = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let state = node_state(
            &format!("n{}", i + 1),
            &addrs[i],
            FixedSource::new(vec![]),
            fanout_config(&addrs),
            None,
        );
        servers.push(serve_on(l, host_router(state)).await);
    }
    servers
}

/// Polls `check` until it holds or one second has passed.
async fn within_a_second(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn write(s: &Server, headers: &[(&str, String)]) -> Resp {
    send(Method::POST, &s.url(WRITE), headers, Some(b"{}".to_vec())).await
}

#[tokio::test]
async fn a_session_works_only_on_its_node_and_logout_ends_it_on_every_node() {
    let nodes = three_nodes().await;
    let sess = login(&nodes[0], "alice", "alice-secret").await;
    // The entry node serves the cluster view: the fan-out uses peer tokens, not the cookie.
    let r = get_with(&nodes[0].url(MATRIX), &sess.headers()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["fanout"]["responded"], 3, "{}", r.text());
    assert_eq!(
        write(&nodes[0], &sess.write_headers()).await.status,
        StatusCode::OK
    );
    // Other nodes refuse the cookie explicitly and name the issuing node, reads and writes.
    for n in &nodes[1..] {
        for r in [
            get_with(&n.url(MATRIX), &sess.headers()).await,
            write(n, &sess.write_headers()).await,
            send(Method::POST, &n.url(LOGOUT), &sess.write_headers(), None).await,
        ] {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
            assert_eq!(r.error_code(), "session_wrong_node");
            assert!(
                r.json()["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("\"n1\""))
            );
        }
    }
    let r = send(
        Method::POST,
        &nodes[0].url(LOGOUT),
        &sess.write_headers(),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for n in &nodes {
        within_a_second("logged-out cookie refused", async || {
            get_with(&n.url(MATRIX), &sess.headers()).await.status == StatusCode::UNAUTHORIZED
                && write(n, &sess.write_headers()).await.status == StatusCode::UNAUTHORIZED
        })
        .await;
    }
    // Signing in on another node gives a session for that node.
    let s2 = login(&nodes[1], "alice", "alice-secret").await;
    assert_eq!(
        get_with(&nodes[1].url(MATRIX), &s2.headers()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_with(&nodes[0].url(MATRIX), &s2.headers())
            .await
            .error_code(),
        "session_wrong_node"
    );
}

#[tokio::test]
async fn a_restart_with_a_changed_password_ends_the_old_sessions() {
    let listener = bind().await;
    let addr = listener.local_addr().expect("addr");
    let state = node_state(
        "n1",
        &addr.to_string(),
        FixedSource::new(vec![]),
        AdminConfig::default(),
        None,
    );
    let server = serve_on(listener, host_router(state)).await;
    let sess = login(&server, "alice", "alice-secret").await;
    assert_eq!(
        get_with(&server.url(MATRIX), &sess.headers()).await.status,
        StatusCode::OK
    );
    drop(server);
    // Same node id, same cluster secret, alice's password changed: the credentials file
    // is read at start, so a password change is a restart.
    let creds = keyviz_admin::StaticCredentials::new().with_plain(
        "alice",
        "a-new-password",
        Some(Role::Full),
    );
    let state = AdminState::builder(
        keyviz_admin::NodeIdentity::new("n1", addr.to_string()).expect("id"),
        secret(),
    )
    .matrix_source(FixedSource::new(vec![]))
    .credentials(Arc::new(creds))
    .build()
    .expect("state");
    let listener = {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "rebind {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    };
    let restarted = serve_on(listener, host_router(state.clone())).await;
    let r = get_with(&restarted.url(MATRIX), &sess.headers()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(r.error_code(), "unauthenticated");
    assert_eq!(
        login_resp(&restarted, "alice", "alice-secret").await.status,
        StatusCode::UNAUTHORIZED
    );
    // A host whose store changes without a restart ends the sessions itself.
    let fresh = login(&restarted, "alice", "a-new-password").await;
    assert_eq!(
        get_with(&restarted.url(MATRIX), &fresh.headers())
            .await
            .status,
        StatusCode::OK
    );
    state.end_all_sessions();
    assert_eq!(
        get_with(&restarted.url(MATRIX), &fresh.headers())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn csrf_header_must_be_derived_from_the_session_a_planted_cookie_fails() {
    let nodes = three_nodes().await;
    let n1 = &nodes[0];
    let sess = login(n1, "alice", "alice-secret").await;
    let other = login(n1, "alice", "alice-secret").await;
    assert_ne!(sess.csrf, other.csrf, "each session has its own token");
    let session_only = sess
        .cookie
        .split("; ")
        .find(|c| c.starts_with("admin_session="))
        .expect("session cookie")
        .to_string();
    // The old bypass: an attacker-chosen admin_csrf cookie equal to the header.
    let planted = vec![
        (
            "cookie",
            format!("{session_only}; admin_csrf=attacker-chosen"),
        ),
        ("x-admin-csrf", "attacker-chosen".to_string()),
    ];
    let r = write(n1, &planted).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::FORBIDDEN, "csrf_mismatch")
    );
    // Another session's token does not fit this session.
    let crossed = vec![
        ("cookie", session_only.clone()),
        ("x-admin-csrf", other.csrf.clone()),
    ];
    assert_eq!(write(n1, &crossed).await.error_code(), "csrf_mismatch");
    // The UI's way: echo the admin_csrf cookie the login set.
    assert_eq!(
        write(n1, &sess.write_headers()).await.status,
        StatusCode::OK
    );
    // The derived token is what counts, not the cookie.
    let header_only = vec![
        ("cookie", session_only),
        ("x-admin-csrf", sess.csrf.clone()),
    ];
    assert_eq!(write(n1, &header_only).await.status, StatusCode::OK);
}

/// Login from `ip` (forwarded by the trusted loopback proxy).
async fn login_from(s: &Server, ip: &str, key: &str, secret: &str) -> Resp {
    let body = serde_json::json!({"access_key": key, "secret_key": secret}).to_string();
    send(
        Method::POST,
        &s.url(LOGIN),
        &[
            ("content-type", "application/json".into()),
            ("x-forwarded-for", ip.into()),
        ],
        Some(body.into_bytes()),
    )
    .await
}

#[tokio::test]
async fn a_new_address_still_gets_in_when_the_limiter_table_is_full_of_attackers() {
    let s = start_node(
        "n1",
        bind().await,
        FixedSource::new(vec![]),
        AdminConfig {
            trusted_proxies: vec![IpNet::parse("127.0.0.1").expect("net")],
            login_rate_max_clients: 16,
            ..AdminConfig::default()
        },
    )
    .await;
    for i in 0..16 {
        let ip = format!("203.0.113.{i}");
        for _ in 0..5 {
            assert_eq!(
                login_from(&s, &ip, "alice", "guess").await.status,
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(
            login_from(&s, &ip, "alice", "guess").await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    // Before the fix every newcomer got 429 for up to 60 s here.
    let r = login_from(&s, "198.51.100.1", "alice", "alice-secret").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // A recent attacker entry keeps its count.
    assert_eq!(
        login_from(&s, "203.0.113.15", "alice", "alice-secret")
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A credential store whose checks block until released, counting those running.
struct GatedStore {
    gate: Mutex<mpsc::Receiver<()>>,
    running: std::sync::atomic::AtomicUsize,
}

impl CredentialStore for GatedStore {
    fn check(&self, _key: &str, _secret: &str) -> CredentialCheck {
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = self.gate.lock().recv_timeout(Duration::from_secs(10));
        CredentialCheck::Invalid
    }
}

#[tokio::test]
async fn logins_beyond_the_workers_and_queue_get_503_at_once() {
    let (release, gate) = mpsc::channel::<()>();
    let store = Arc::new(GatedStore {
        gate: Mutex::new(gate),
        running: Default::default(),
    });
    let listener = bind().await;
    let addr = listener.local_addr().expect("addr").to_string();
    let state = AdminState::builder(
        keyviz_admin::NodeIdentity::new("n1", addr).expect("id"),
        secret(),
    )
    .config(AdminConfig {
        login_workers: 1,
        login_queue: 1,
        login_rate_limit: 100,
        ..AdminConfig::default()
    })
    .credentials(store.clone())
    .build()
    .expect("state");
    let s = Arc::new(serve_on(listener, keyviz_admin::router(state)).await);
    let spawn_login =
        |s: Arc<Server>| tokio::spawn(async move { login_resp(&s, "mallory", "guess").await });
    let running = spawn_login(s.clone());
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.running.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "first check never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The only worker is busy: of five more logins one waits in the queue and four are
    // refused at once, while the worker is still blocked.
    let more: Vec<_> = (0..5).map(|_| spawn_login(s.clone())).collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    while more.iter().filter(|h| h.is_finished()).count() < 4 {
        assert!(
            Instant::now() < deadline,
            "excess logins were not refused at once"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.running.load(std::sync::atomic::Ordering::SeqCst), 1);
    let mut refused = 0;
    let mut waiting = Vec::new();
    for h in more {
        if h.is_finished() {
            let r = h.await.expect("join");
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
            assert_eq!(r.error_code(), "login_busy");
            assert_eq!(r.headers["retry-after"], "1");
            refused += 1;
        } else {
            waiting.push(h);
        }
    }
    assert_eq!((refused, waiting.len()), (4, 1));
    for _ in 0..2 {
        let _ = release.send(());
    }
    assert_eq!(
        running.await.ok().map(|r| r.status),
        Some(StatusCode::UNAUTHORIZED)
    );
    for h in waiting {
        assert_eq!(
            h.await.ok().map(|r| r.status),
            Some(StatusCode::UNAUTHORIZED)
        );
    }
    assert_eq!(store.running.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn ui_api_error_and_metrics_responses_carry_the_hardening_headers() {
    let nodes = three_nodes().await;
    let n1 = &nodes[0];
    let sess = login(n1, "alice", "alice-secret").await;
    let responses = [
        ("index", get_with(&n1.url("/admin"), &[]).await),
        ("deep link", get_with(&n1.url("/admin/keyviz"), &[]).await),
        (
            "asset",
            get_with(&n1.url("/admin/assets/js/main.js"), &[]).await,
        ),
        ("api", get_with(&n1.url(MATRIX), &sess.headers()).await),
        ("error", get_with(&n1.url(MATRIX), &[]).await),
        (
            "unknown",
            get_with(&n1.url("/admin/api/v1/nope"), &[]).await,
        ),
        ("metrics", get_with(&n1.url("/metrics"), &[]).await),
        ("healthz", get_with(&n1.url("/admin/healthz"), &[]).await),
        ("host route", write(n1, &sess.write_headers()).await),
    ];
    for (what, r) in &responses {
        let h = &r.headers;
        let csp = h
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no CSP"));
        assert!(csp.starts_with("default-src 'self'"), "{what}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert!(!csp.contains("unsafe"), "{what}: {csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    }
}

#[tokio::test]
async fn the_index_page_has_no_inline_script_style_or_handlers() {
    let s = start_node(
        "n1",
        bind().await,
        FixedSource::new(vec![]),
        AdminConfig::default(),
    )
    .await;
    let html = get_with(&s.url("/admin"), &[]).await.text().to_lowercase();
    assert!(html.contains("<script type=\"module\" src=\"/admin/assets/js/main.js\">"));
    for (i, _) in html.match_indices("<script") {
        let tag = &html[i..i + html[i..].find('>').unwrap_or(0)];
        assert!(tag.contains(" src="), "inline script: {tag}");
    }
    assert!(!html.contains("<style"), "inline <style> element");
    assert!(!html.contains(" style="), "inline style attribute");
    assert!(!html.contains("javascript:"), "javascript: URL");
    // Inline event handlers: ` on<letters>=` inside a tag.
    let handler = html.split('<').skip(1).find_map(|tag| {
        let tag = tag.split('>').next().unwrap_or_default();
        tag.split_whitespace()
            .skip(1)
            .find(|a| a.starts_with("on") && a.contains('='))
            .map(str::to_string)
    });
    assert_eq!(handler, None, "inline event handler");
}

#[tokio::test]
async fn metrics_need_the_bearer_token_when_one_is_configured() {
    let open = start_node(
        "n1",
        bind().await,
        FixedSource::new(vec![]),
        AdminConfig::default(),
    )
    .await;
    let r = get_with(&open.url("/metrics"), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "open without a token, as before");
    assert!(
        r.text().contains("keyviz_fanout_peer_calls"),
        "{}",
        r.text()
    );

    let token = "metrics-token-0123456789abcdef";
    let guarded = start_node(
        "n1",
        bind().await,
        FixedSource::new(vec![]),
        AdminConfig {
            metrics_token: Some(MetricsToken::new(token).expect("token")),
            ..AdminConfig::default()
        },
    )
    .await;
    for headers in [
        vec![],
        vec![(
            "authorization",
            "Bearer wrong-token-0123456789abcdef".into(),
        )],
        vec![("authorization", format!("Basic {token}"))],
        vec![("authorization", format!("Bearer {token}x"))],
        vec![("authorization", "Bearer".to_string())],
    ] {
        let r = get_with(&guarded.url("/metrics"), &headers).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(r.error_code(), "unauthenticated");
        assert!(
            r.headers["www-authenticate"]
                .to_str()
                .is_ok_and(|v| v.starts_with("Bearer")),
            "{headers:?}"
        );
        assert!(!r.text().contains("keyviz_"), "{headers:?}: leaked metrics");
    }
    let r = get_with(
        &guarded.url("/metrics"),
        &[("authorization", format!("bearer {token}"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        r.text().contains("keyviz_fanout_peer_calls"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn secure_transport_marks_cookies_secure_and_sends_hsts_and_plain_http_does_neither() {
    for secure_transport in [false, true] {
        let config = AdminConfig {
            secure_transport,
            ..AdminConfig::default()
        };
        let s = start_node("n1", bind().await, FixedSource::new(vec![]), config).await;
        let r = login_resp(&s, "alice", "alice-secret").await;
        assert_eq!(r.status, StatusCode::OK);
        let cookies = r.set_cookies();
        assert_eq!(cookies.len(), 2, "{cookies:?}");
        for c in &cookies {
            assert_eq!(c.contains("; Secure"), secure_transport, "{c}");
        }
        let hsts = r
            .headers
            .get(http::header::STRICT_TRANSPORT_SECURITY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let want = secure_transport.then(|| keyviz_admin::STRICT_TRANSPORT_SECURITY.to_string());
        assert_eq!(hsts, want, "login answer");
        let health = get_with(&s.url("/admin/healthz"), &[]).await;
        assert_eq!(
            health
                .headers
                .contains_key(http::header::STRICT_TRANSPORT_SECURITY),
            secure_transport,
            "every route"
        );
    }
}
