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
use crate::raft::{GroupError, GroupStatus, HandOverRequest, Leadership, TransferError};
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
        .route("/kv/{group}/elect", post(elect))
        .route("/kv/{group}/hand_over", post(hand_over))
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

/// The leader of a hand-over asks the target to start its election now.
async fn elect(State(ctx): State<Ctx>, Path(group): Path<u64>) -> Json<Result<(), GroupError>> {
    Json(ctx.dispatcher.groups().elect_here(group).await)
}

/// One hand-over attempt on this node, which must lead the group (see `Groups::campaign`).
async fn hand_over(
    State(ctx): State<Ctx>,
    Path(group): Path<u64>,
    Json(req): Json<HandOverRequest>,
) -> Json<Result<Leadership, TransferError>> {
    // The caller's budget, capped so a forged request cannot pause proposals for long.
    let budget = std::time::Duration::from_millis(req.budget_ms.min(10_000));
    let deadline = tokio::time::Instant::now() + budget;
    Json(
        ctx.dispatcher
            .groups()
            .hand_over(group, req.target, deadline)
            .await,
    )
}

/// A split forwarded by another node: executed here only if this node leads the owning group
/// (`NotLeader` otherwise, so the sender retries), with the route resolved from this node's
/// catalog.
async fn split(
    State(ctx): State<Ctx>,
    Json(req): Json<SplitRequest>,
) -> Json<Result<Result<u64, String>, GroupError>> {
    Json(
        ctx.dispatcher
            .split_as_leader(&req.at)
            .await
            .map_err(to_wire),
    )
}

async fn status(State(ctx): State<Ctx>) -> Json<NodeStatus> {
    let d = &ctx.dispatcher;
    Json(NodeStatus {
        node_id: d.node_id(),
        groups: d.groups().status(),
        routes: d.catalog().routes().to_vec(),
    })
}
