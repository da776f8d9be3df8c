//! `GET /admin/api/v1/keyviz/nodes`: this node's view of the cluster — members, admin
//! addresses, reachability and the last response time seen by the fan-out.

use axum::extract::State;
use axum::response::Response;
use http::Method;
use serde::Serialize;

use super::{ApiError, json_ok};
use crate::auth::Principal;
use crate::fanout::membership::{PeerSource, peer_targets};
use crate::fanout::status::PeerRecord;
use crate::state::AdminState;

/// One entry of the nodes list.
#[derive(Serialize)]
struct NodeView {
    node: String,
    #[serde(rename = "self")]
    is_self: bool,
    source: Option<PeerSource>,
    #[serde(flatten)]
    record: PeerRecord,
}

#[derive(Serialize)]
struct NodesResponse {
    node_id: String,
    admin_addr: String,
    nodes: Vec<NodeView>,
}

pub(crate) async fn nodes(
    State(state): State<AdminState>,
    _principal: Principal,
    method: Method,
) -> Result<Response, ApiError> {
    if method != Method::GET {
        return Err(ApiError::method_not_allowed("only GET"));
    }
    let inner = &state.inner;
    let members = inner.membership.members();
    let targets = peer_targets(&inner.identity, &inner.config.fanout_nodes, &members);
    let mut nodes = vec![NodeView {
        node: inner.identity.admin_addr().to_string(),
        is_self: true,
        source: None,
        record: PeerRecord {
            node_id: Some(inner.identity.node_id().to_string()),
            reachable: Some(true),
            ..PeerRecord::default()
        },
    }];
    for t in targets {
        let mut record = inner.peers.get(&t.name);
        if t.node_id.is_some() {
            record.node_id.clone_from(&t.node_id);
        }
        nodes.push(NodeView {
            node: t.name,
            is_self: false,
            source: Some(t.source),
            record,
        });
    }
    Ok(json_ok(&NodesResponse {
        node_id: inner.identity.node_id().to_string(),
        admin_addr: inner.identity.admin_addr().to_string(),
        nodes,
    }))
}
