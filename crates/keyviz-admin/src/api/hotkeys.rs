//! `GET /admin/api/v1/keyviz/hotkeys`: the node-local `NodeHotKeys` for peers, the merged
//! cluster hot keys for operators.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::Method;
use keyviz::hotkeys::{HotKeyMode, NodeHotKeys};

use super::{ApiError, json_ok, parse_hot_keys_query};
use crate::auth::Principal;
use crate::clock;
use crate::hotkeys::{cluster_hot_keys_joined, local_hot_keys};
use crate::state::AdminState;

pub(crate) async fn hot_keys(
    State(state): State<AdminState>,
    principal: Principal,
    method: Method,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let inner = &state.inner;
    if method != Method::GET {
        return Err(ApiError::method_not_allowed("only GET"));
    }
    if !inner.source.is_enabled() {
        return Err(ApiError::keyviz_disabled());
    }
    let query = parse_hot_keys_query(query.as_deref())?;
    match principal {
        Principal::Peer(_) => {
            inner.metrics.hot_keys_request("peer");
            // A node keeping no hot keys (capture off, or a source without them) answers
            // with mode `off` and no parts, so the caller reports it per node.
            let hot = local_hot_keys(inner, &query, clock::now_unix_ms())
                .await?
                .unwrap_or_else(|_| NodeHotKeys {
                    series: query.series,
                    mode: HotKeyMode::Off,
                    node_id: Some(inner.identity.node_id().to_string()),
                    parts: Vec::new(),
                });
            Ok(json_ok(&hot))
        }
        Principal::Operator(_) => {
            let (hot, _) = cluster_hot_keys_joined(inner, query, clock::now_unix_ms()).await?;
            Ok(json_ok(&hot))
        }
    }
}
