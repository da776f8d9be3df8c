//! The internal HTTP server on `raft_addr`: Raft RPCs, forwarded operations, leadership
//! campaigns, splits and status. Requests must carry the cluster secret when one is set.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::dispatch::{DispatchError, Dispatcher, GroupCommand, GroupReply};
use crate::raft::{GroupError, GroupStatus};
use crate::routing::Route;
use crate::transport::{MAX_BODY_BYTES, SECRET_HEADER};

/// `GET /status` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeStatus {
    /// This node's id.
    pub(crate) node_id: u64,
    /// Every hosted group.
    pub(crate) groups: Vec<GroupStatus>,
    /// The route catalog as this node sees it.
    pub(crate) routes: Vec<Route>,
}

/// `POST /kv/split` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SplitRequest {
    /// Split key (the first key of the new route).
    pub(crate) at: Vec<u8>,
}

#[derive(Clone)]
struct Ctx {
    dispatcher: Arc<Dispatcher>,
    secret: Option<Arc<str>>,
}

/// The internal router.
pub(crate) fn router(dispatcher: Arc<Dispatcher>, secret: Option<String>) -> Router {
    let ctx = Ctx {
        dispatcher: dispatcher.clone(),
        secret: secret.map(Arc::from),
    };
    Router::new()
        .route("/kv/{group}/exec", post(exec))
        .route("/kv/{group}/campaign", post(campaign))
        .route("/kv/{group}/read_index", post(read_index))
        .route("/kv/split", post(split))
        .route("/status", get(status))
        .with_state(ctx.clone())
        .merge(crate::raft::router::routes(dispatcher.groups().clone()))
        .layer(middleware::from_fn_with_state(ctx, check_secret))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

async fn check_secret(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    if let Some(secret) = &ctx.secret {
        let given = req.headers().get(SECRET_HEADER).map(|v| v.as_bytes());
        if given != Some(secret.as_bytes()) {
            return (StatusCode::UNAUTHORIZED, "missing or wrong cluster secret").into_response();
        }
    }
    next.run(req).await
}

fn to_wire(e: DispatchError) -> GroupError {
    match e {
        DispatchError::Group(g) => g,
        other => GroupError::Raft {
            group: 0,
            detail: other.to_string(),
        },
    }
}

async fn exec(
    State(ctx): State<Ctx>,
    Path(group): Path<u64>,
    Json(cmd): Json<GroupCommand>,
) -> Json<Result<GroupReply, GroupError>> {
    Json(
        ctx.dispatcher
            .execute_as_leader(group, &cmd)
            .await
            .map_err(to_wire),
    )
}

async fn read_index(
    State(ctx): State<Ctx>,
    Path(group): Path<u64>,
) -> Json<Result<u64, GroupError>> {
    Json(ctx.dispatcher.groups().read_index(group).await)
}

async fn campaign(State(ctx): State<Ctx>, Path(group): Path<u64>) -> Json<Result<(), GroupError>> {
    Json(ctx.dispatcher.groups().campaign(group).await)
}

async fn split(State(ctx): State<Ctx>, Json(req): Json<SplitRequest>) -> Response {
    match ctx.dispatcher.split_at(&req.at).await {
        Ok(Ok(id)) => Json(serde_json::json!({ "right_id": id })).into_response(),
        Ok(Err(why)) => (StatusCode::BAD_REQUEST, why).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn status(State(ctx): State<Ctx>) -> Json<NodeStatus> {
    let d = &ctx.dispatcher;
    Json(NodeStatus {
        node_id: d.node_id(),
        groups: d.groups().status(),
        routes: d.catalog().routes().to_vec(),
    })
}
