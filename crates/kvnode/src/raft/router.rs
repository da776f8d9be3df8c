//! Server side of the Raft RPCs: `POST /raft/{group}/{append|vote|snapshot}`, each handing the
//! decoded openraft request (postcard) to the group's `Raft` and answering its `Result` in
//! postcard.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use super::Groups;
use super::types::TypeConfig;
use crate::internal::Bin;

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
    Bin(req): Bin<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    match groups.groups.get(&group) {
        None => unknown(group),
        Some(g) => Bin(g.raft.append_entries(req).await).into_response(),
    }
}

async fn vote(
    State(groups): State<Arc<Groups>>,
    Path(group): Path<u64>,
    Bin(req): Bin<VoteRequest<u64>>,
) -> Response {
    match groups.groups.get(&group) {
        None => unknown(group),
        Some(g) => Bin(g.raft.vote(req).await).into_response(),
    }
}

async fn snapshot(
    State(groups): State<Arc<Groups>>,
    Path(group): Path<u64>,
    Bin(req): Bin<InstallSnapshotRequest<TypeConfig>>,
) -> Response {
    match groups.groups.get(&group) {
        None => unknown(group),
        Some(g) => Bin(g.raft.install_snapshot(req).await).into_response(),
    }
}
