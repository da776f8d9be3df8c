//! KeyViz admin HTTP surface: the matrix API, operator authentication, the cluster fan-out
//! aggregator and the embedded web UI, as one [`axum::Router`] a host mounts.
//!
//! # How a host mounts this
//!
//! The host (the store's node binary) builds an [`AdminState`] from its services and serves
//! [`router`] at the root of its admin listener. The router only answers `/admin/...` and
//! `/metrics`, so it can be merged with the host's own routes. Serve it with connect info so
//! the login rate limit sees client addresses:
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use keyviz_admin::{
//!     AdminConfig, AdminState, ClusterSecret, Member, NodeIdentity, StaticCredentials,
//!     parse_fanout_nodes, router,
//! };
//!
//! # async fn host(sampler: Arc<keyviz::Sampler>) -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let identity = NodeIdentity::new("node-1", listener.local_addr()?.to_string())?;
//! let secret = ClusterSecret::new(b"a shared secret of at least 32 bytes!!".to_vec(), None)?;
//! let config = AdminConfig {
//!     fanout_nodes: parse_fanout_nodes("127.0.0.1:8080,127.0.0.1:8081,127.0.0.1:8082"),
//!     ..AdminConfig::default()
//! };
//! let state = AdminState::builder(identity, secret)
//!     .config(config)
//!     .matrix_source(sampler)
//!     .credentials(Arc::new(StaticCredentials::load("operators.toml".as_ref())?))
//!     // Live members from the store; combined with the static list without duplicates.
//!     .membership(Arc::new(|| vec![Member { node_id: Some("node-2".into()), admin_addr: "127.0.0.1:8081".into() }]))
//!     .build()?;
//! let app = router(state);
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Routes
//!
//! | Method | Path | Auth | What |
//! |---|---|---|---|
//! | POST | `/admin/api/v1/auth/login` | none (rate limited, bounded pool) | sets `admin_session` + `admin_csrf` cookies |
//! | POST | `/admin/api/v1/auth/logout` | session + CSRF | clears cookies, revokes the session (valid on this node only) |
//! | GET | `/admin/api/v1/keyviz/matrix` | session or peer token | operators: cluster merge; peers: local view |
//! | GET | `/admin/api/v1/keyviz/hotkeys` | session or peer token | operators: cluster hot keys ([`hotkeys::cluster_hot_keys`]); peers: node-local `NodeHotKeys` |
//! | GET | `/admin/api/v1/keyviz/nodes` | session or peer token | cluster members and their reachability |
//! | GET | `/admin/api/v1/keyviz/identity` | none | `{"node_id"}` (peers address tokens with it) |
//! | GET | `/admin/healthz` | none | `ok` |
//! | GET | `/admin/assets/{*path}` | none | embedded UI files |
//! | GET | `/admin`, `/admin/...` | none | the UI's `index.html` (deep links) |
//! | GET | `/metrics` | bearer token if configured, else none | Prometheus/OpenMetrics text |
//!
//! Errors use one envelope, `{"error": code, "message": text}` ([`ApiError`]). The wire
//! behaviour and the differences from the Go reference are described in `docs/ADMIN.md`;
//! the security model (sessions bound to their node, CSRF, login bounds, headers) in
//! `docs/SECURITY.md`. Every response carries the headers of [`security_headers`].

pub mod api;
pub mod auth;
mod clock;
pub mod config;
pub mod fanout;
pub mod host;
pub mod hotkeys;
pub mod hotspot;
pub mod leaders;
mod metrics;
pub mod peer;
mod state;
pub mod tls;
mod ui;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::{HeaderValue, Method, StatusCode, header};

pub use api::ApiError;
pub use auth::{CredentialCheck, CredentialStore, Role, StaticCredentials};
pub use config::{AdminConfig, ConfigError, MetricsToken, parse_fanout_nodes};
pub use fanout::status::{FanoutStatus, NodeStatus, NodeWarning};
pub use host::{
    ClusterSecret, DisabledSource, MatrixSource, Member, Membership, NoMembership, NodeIdentity,
    SourceError, TermLeader,
};
pub use hotkeys::{ClusterHotKeys, cluster_hot_keys};
pub use state::{AdminState, AdminStateBuilder, IssuedSession};

async fn unknown_endpoint() -> ApiError {
    ApiError::unknown_endpoint()
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn healthz(method: Method) -> Response {
    match method {
        Method::GET => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "ok\n",
        )
            .into_response(),
        Method::HEAD => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "").into_response(),
        _ => {
            let mut r = ApiError::method_not_allowed("only GET and HEAD").into_response();
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
    }
}

/// `GET /metrics`. With [`AdminConfig::metrics_token`] set, the request must carry
/// `Authorization: Bearer <token>` (401 `unauthenticated` with `WWW-Authenticate: Bearer`
/// otherwise); without it the endpoint is open. What it exposes: docs/SECURITY.md.
async fn metrics(State(state): State<AdminState>, headers: http::HeaderMap) -> Response {
    if let Some(want) = &state.inner.config.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        if !presented.is_some_and(|t| want.matches(t)) {
            let mut r = ApiError::unauthenticated("/metrics needs Authorization: Bearer <token>")
                .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keyviz-metrics\""),
            );
            return r;
        }
    }
    metrics::before_scrape(&state.inner);
    let rendered = state.inner.metrics.render();
    metrics::after_scrape(&state.inner);
    match rendered {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::internal(format!("render metrics: {e}")).into_response(),
    }
}

/// The `Content-Security-Policy` of every admin response. The UI loads only its own files
/// (one module script, one stylesheet, no inline code or style attributes); `data:` images
/// cover the empty inline favicon. Nothing may frame the UI.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the browser-hardening headers to a response: CSP ([`CONTENT_SECURITY_POLICY`]),
/// `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and
/// `Referrer-Policy: no-referrer`. [`router`] applies it to every route; a host that merges
/// its own routes into the admin router applies it again on the merged router with
/// `axum::middleware::map_response(keyviz_admin::security_headers)` (idempotent).
pub async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// The `Strict-Transport-Security` value sent when the admin listener is served over TLS
/// (`AdminConfig::secure_transport`): one year, this host only (`includeSubDomains` is left
/// to the operator's proxy, since other services may share the domain).
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// Adds `Strict-Transport-Security` ([`STRICT_TRANSPORT_SECURITY`]) to a response. [`router`]
/// applies it to every route when `AdminConfig::secure_transport` is set; a host merging its
/// own routes applies it again over the merged router (idempotent).
pub async fn strict_transport_security(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
    );
    resp
}

/// The admin surface as a router with its state applied. It answers `/admin/...` and
/// `/metrics` only (unknown `/admin/api/v1/...` paths get 404 `unknown_endpoint` before any
/// authentication; other unknown `/admin/api...` paths 404 `not_found`), so a host may merge
/// it with other routes. Needs a tokio runtime; serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so login rate limiting is per client
/// IP (without connect info every client shares one bucket).
#[must_use = "the router must be served"]
pub fn router(state: AdminState) -> Router {
    let r = Router::new()
        .route(api::LOGIN_PATH, any(auth::login::login))
        .route(api::LOGOUT_PATH, any(auth::login::logout))
        .route(api::MATRIX_PATH, any(api::matrix::matrix))
        .route(api::HOT_KEYS_PATH, any(api::hotkeys::hot_keys))
        .route(api::NODES_PATH, any(api::nodes::nodes))
        .route(api::IDENTITY_PATH, any(api::identity::identity))
        .route("/admin/api/v1/", any(unknown_endpoint))
        .route("/admin/api/v1/{*rest}", any(unknown_endpoint))
        .route("/admin/api", any(not_found))
        .route("/admin/api/", any(not_found))
        .route("/admin/api/{*rest}", any(not_found))
        .route("/admin/assets", any(not_found))
        .route("/admin/assets/", any(not_found))
        .route("/admin/assets/{*path}", any(ui::asset))
        .route("/admin/healthz", any(healthz))
        .route("/admin", any(ui::index))
        .route("/admin/", any(ui::index))
        .route("/admin/{*rest}", any(ui::index))
        .route("/metrics", get(metrics))
        // Inside the security headers: the answer MAC covers the body only, so headers added
        // afterwards do not break it.
        .layer(axum::middleware::from_fn_with_state(
            state.inner.peer_guard.clone(),
            peer::server::guard,
        ))
        .layer(axum::middleware::map_response(security_headers));
    let r = if state.inner.config.secure_transport {
        r.layer(axum::middleware::map_response(strict_transport_security))
    } else {
        r
    };
    r.with_state(state)
}
