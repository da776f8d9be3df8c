//! Server side of the Raft RPCs: `POST /raft/{group}/{append|vote|snapshot}`, each handing the
//! decoded openraft request to the group's `Raft` and answering its `Result` as JSON.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use super::Groups;
use super::types::TypeConfig;

/// The raft RPC routes over `groups`.
pub(crate) fn routes(groups: Arc<Groups>) -> Router {
    Router::new()
        .route("/raft/{group}/append", post(append))
        .route("/raft/{group}/vote", post(vote))
        .route("/raft/{group}/snapshot", post(snapshot))
        .with_state(groups)
}

fn unknown(group: u64) -> Response {
    (StatusCode::NOT_FOUND, format!("unknown raft group {group}")).into_response()
}

async fn append(
    State(groups): State<Arc<Groups>>,
    Path(group): Path<u64>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    match groups.groups.get(&group) {
        None => unknown(group),
        Some(g) => Json(g.raft.append_entries(req).await).into_response(),
    }
}

async fn vote(
    State(groups): State<Arc<Groups>>,
    Path(group): Path<u64>,
    Json(req): Json<VoteRequest<u64>>,
) -> Response {
    match groups.groups.get(&group) {
        None => unknown(group),
        Some(g) => Json(g.raft.vote(req).await).into_response(),
    }
}

async fn snapshot(
    State(groups): State<Arc<Groups>>,
    Path(group): Path<u64>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Response {
    match groups.groups.get(&group) {
        None => unknown(group),
        Some(g) => Json(g.raft.install_snapshot(req).await).into_response(),
    }
}
