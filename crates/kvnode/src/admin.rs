//! Mounting `keyviz-admin` on the node's admin listener, plus the node's one state-changing
//! admin endpoint: `POST /admin/api/v1/kvnode/split` (operators with the `full` role).

use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use http::StatusCode;
use keyviz::boundaries::{Boundaries, RowTotal, RunBoundaryMatrix};
use keyviz::hotkeys::{HotKeyQuery, NodeHotKeys};
use keyviz::{Matrix, MatrixQuery};
use keyviz_admin::auth::{Principal, Role, StaticCredentials};
use keyviz_admin::{
    AdminConfig, AdminState, ApiError, ClusterSecret, CredentialStore, DisabledSource,
    MatrixSource, Member, MetricsToken, NodeIdentity, SourceError, TermLeader,
};
use serde::Deserialize;

use crate::config::NodeConfig;
use crate::dispatch::Dispatcher;
use crate::leaders::TermLeaders;
use crate::node::NodeError;
use crate::sampling::Sampling;

/// The admin-facing name of node `id` (also the peer-token audience).
pub(crate) fn node_name(id: u64) -> String {
    format!("node-{id}")
}

/// The node's matrix source: the sampler for every matrix and hot-key call (each method
/// delegates to the sampler's own, overrides included), plus the term leaders the applied
/// log named (see [`crate::leaders`]).
struct NodeSource {
    sampler: Arc<keyviz::Sampler>,
    leaders: Arc<TermLeaders>,
}

impl MatrixSource for NodeSource {
    fn matrix(&self, query: &MatrixQuery, now_unix_ms: i64) -> Result<Matrix, SourceError> {
        MatrixSource::matrix(&*self.sampler, query, now_unix_ms)
    }

    fn is_enabled(&self) -> bool {
        MatrixSource::is_enabled(&*self.sampler)
    }

    fn row_totals(
        &self,
        query: &MatrixQuery,
        now_unix_ms: i64,
    ) -> Result<Vec<RowTotal>, SourceError> {
        MatrixSource::row_totals(&*self.sampler, query, now_unix_ms)
    }

    fn matrix_on_boundaries(
        &self,
        query: &MatrixQuery,
        boundaries: &Boundaries,
        now_unix_ms: i64,
    ) -> Result<RunBoundaryMatrix, SourceError> {
        MatrixSource::matrix_on_boundaries(&*self.sampler, query, boundaries, now_unix_ms)
    }

    fn hot_keys(&self, query: &HotKeyQuery, now_unix_ms: i64) -> Result<NodeHotKeys, SourceError> {
        MatrixSource::hot_keys(&*self.sampler, query, now_unix_ms)
    }

    /// Takes the registry's lock once for the whole lookup.
    fn term_leaders(&self, wanted: &[(u64, u64)]) -> Vec<TermLeader> {
        self.leaders
            .lookup(wanted)
            .into_iter()
            .map(|(group, term, node)| TermLeader {
                group,
                term,
                node_id: node_name(node),
            })
            .collect()
    }
}

/// Loads operators from the credentials file or the `admin_user`/`admin_password` pair.
pub(crate) fn credentials(cfg: &NodeConfig) -> Result<Arc<dyn CredentialStore>, NodeError> {
    if let Some(path) = &cfg.credentials_file {
        let store = StaticCredentials::load(path)
            .map_err(|e| NodeError::Admin(format!("credentials file: {e}")))?;
        return Ok(Arc::new(store));
    }
    match (&cfg.admin_user, &cfg.admin_password) {
        (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => {
            Ok(Arc::new(StaticCredentials::new().with_plain(u, p, Some(Role::Full))))
        }
        _ => Err(NodeError::Admin(
            "no operators: set credentials_file, or admin_user and admin_password (KEYVIZ_ADMIN_USER / KEYVIZ_ADMIN_PASSWORD)".into(),
        )),
    }
}

#[derive(Deserialize)]
struct SplitBody {
    /// The split key as UTF-8 text.
    at: String,
}

async fn split(
    Extension(dispatcher): Extension<Arc<Dispatcher>>,
    principal: Principal,
    Json(body): Json<SplitBody>,
) -> Response {
    match principal {
        Principal::Operator(c) if c.role == Role::Full => {}
        _ => return ApiError::forbidden("splitting a route needs the full role").into_response(),
    }
    if body.at.is_empty() {
        return ApiError::invalid_query("`at` must be a non-empty key").into_response();
    }
    match dispatcher.split_at(body.at.as_bytes()).await {
        Ok(Ok(right_id)) => Json(serde_json::json!({ "right_route_id": right_id })).into_response(),
        Ok(Err(why)) => {
            ApiError::new(StatusCode::BAD_REQUEST, "split_refused", why).into_response()
        }
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "split_failed",
            e.to_string(),
        )
        .into_response(),
    }
}

/// The `/metrics` bearer token from `metrics_token` or `metrics_token_file`, if any.
fn metrics_token(cfg: &NodeConfig) -> Result<Option<MetricsToken>, NodeError> {
    let text = match (&cfg.metrics_token, &cfg.metrics_token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| NodeError::Admin(format!("metrics token file {}: {e}", path.display())))?,
        (None, None) => return Ok(None),
    };
    MetricsToken::new(&text)
        .map(Some)
        .map_err(|e| NodeError::Admin(format!("metrics token: {e}")))
}

/// The admin router for this node, and its state (the RESP server's `HOTKEYS` fans out
/// through it).
pub(crate) fn router(
    cfg: &NodeConfig,
    secret: &[u8],
    sampling: &Sampling,
    dispatcher: Arc<Dispatcher>,
    admin_addr: &str,
    peer_tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<(Router, AdminState), NodeError> {
    // With TLS the admin listener serves HTTPS only, so members are called at `https://`.
    let tls = cfg.tls_enabled();
    let identity = NodeIdentity::new(node_name(cfg.node_id), admin_addr)
        .map_err(|e| NodeError::Admin(e.to_string()))?;
    let secret = ClusterSecret::new(secret.to_vec(), None)
        .map_err(|e| NodeError::Admin(format!("cluster secret: {e}")))?;
    let config = AdminConfig {
        fanout_nodes: cfg.fanout_nodes.clone(),
        fanout_timeout: Duration::from_millis(cfg.fanout_timeout_ms),
        metrics_token: metrics_token(cfg)?,
        secure_transport: tls,
        ..AdminConfig::default()
    };
    let source: Arc<dyn MatrixSource> = match sampling.sampler() {
        Some(s) => Arc::new(NodeSource {
            sampler: s.clone(),
            leaders: sampling.leaders().clone(),
        }),
        None => Arc::new(DisabledSource),
    };
    let me = cfg.node_id;
    let members: Vec<Member> = cfg
        .members()
        .into_iter()
        .filter(|(id, _)| *id != me)
        .filter_map(|(id, p)| {
            p.admin.map(|a| Member {
                node_id: Some(node_name(id)),
                admin_addr: if tls && !a.contains("://") {
                    format!("https://{a}")
                } else {
                    a
                },
            })
        })
        .collect();
    let state = AdminState::builder(identity, secret)
        .peer_tls(peer_tls)
        // Under mutual TLS every node certificate names `keyviz-node-<id>` (checked at
        // start), so fan-out identities are bound to certificates both ways.
        .certificate_binding(tls && cfg.tls_client_auth != keyviz_admin::tls::ClientAuth::Off)
        .config(config)
        .matrix_source(source)
        .credentials(credentials(cfg)?)
        .membership(Arc::new(move || members.clone()))
        .build()
        .map_err(|e| NodeError::Admin(e.to_string()))?;
    let split_routes = Router::new()
        .route("/admin/api/v1/kvnode/split", post(split))
        .layer(Extension(dispatcher))
        .with_state(state.clone());
    // The hardening headers again over the merged router, so the split route has them too.
    let mut app = keyviz_admin::router(state.clone())
        .merge(split_routes)
        .layer(axum::middleware::map_response(
            keyviz_admin::security_headers,
        ));
    if tls {
        app = app.layer(axum::middleware::map_response(
            keyviz_admin::strict_transport_security,
        ));
    }
    Ok((app, state))
}
