//! Turning peer answers into merge inputs and per-node statuses, in configured order.

use keyviz::Matrix;

use super::PeerAnswer;
use super::client::PeerError;
use super::membership::PeerTarget;
use super::status::{
    NodeStatus, NodeWarning, WARN_DUPLICATE_NODE, WARN_MISSING_NODE_ID, WARN_SELF_ALIAS,
};
use crate::state::Inner;

/// The fan-out result being assembled: self first, then one status per peer entry.
pub(super) struct Assembly {
    /// Per-node statuses, self at index 0.
    pub(super) nodes: Vec<NodeStatus>,
    /// Merge inputs: local first, then distinct successful peers.
    pub(super) inputs: Vec<Matrix>,
    /// `inputs[i]` came from `nodes[input_node[i]]`.
    pub(super) input_node: Vec<usize>,
    /// Distinct nodes expected, self included.
    pub(super) expected: usize,
    seen_ids: Vec<String>,
}

fn warning(code: &str, detail: String) -> NodeWarning {
    NodeWarning {
        code: code.to_string(),
        bucket_id: None,
        detail,
    }
}

impl Assembly {
    pub(super) fn new(inner: &Inner, local: Matrix, local_elapsed_ms: u64) -> Self {
        let self_id = inner.identity.node_id().to_string();
        Assembly {
            nodes: vec![NodeStatus {
                node: inner.identity.admin_addr().to_string(),
                node_id: Some(self_id.clone()),
                ok: true,
                error: None,
                generated_at: Some(local.generated_at.clone()),
                elapsed_ms: local_elapsed_ms,
                warnings: Vec::new(),
            }],
            inputs: vec![local],
            input_node: vec![0],
            expected: 1,
            seen_ids: vec![self_id],
        }
    }

    /// Records one peer's answer: its status, its matrix as a merge input unless it is this
    /// node or a node already merged, and the peer table entry behind the nodes endpoint.
    pub(super) fn add(
        &mut self,
        inner: &Inner,
        target: &PeerTarget,
        res: Result<PeerAnswer, PeerError>,
        elapsed: u64,
        now_ms: i64,
    ) {
        let mut st = NodeStatus {
            node: target.name.clone(),
            node_id: target
                .node_id
                .clone()
                .or_else(|| inner.peers.cached_node_id(&target.name)),
            ok: false,
            error: None,
            generated_at: None,
            elapsed_ms: elapsed,
            warnings: Vec::new(),
        };
        let reached = |self_alias: bool| {
            inner.peers.record(&target.name, |r| {
                r.self_alias = self_alias;
                r.reachable = Some(true);
                r.last_attempt_unix_ms = Some(now_ms);
                r.last_ok_unix_ms = Some(now_ms);
                r.last_elapsed_ms = Some(elapsed);
                r.last_error = None;
            });
        };
        match res {
            Ok(PeerAnswer::SelfAlias) => {
                st.ok = true;
                st.node_id = Some(inner.identity.node_id().to_string());
                st.warnings.push(warning(
                    WARN_SELF_ALIAS,
                    format!(
                        "{} is this node ({}) under another name; not merged",
                        target.name,
                        inner.identity.node_id()
                    ),
                ));
                reached(true);
            }
            Ok(PeerAnswer::Matrix {
                matrix,
                node_id,
                missing_id,
            }) => {
                st.ok = true;
                st.node_id = Some(node_id.clone());
                st.generated_at = Some(matrix.generated_at.clone());
                reached(false);
                if missing_id {
                    st.warnings.push(warning(
                        WARN_MISSING_NODE_ID,
                        "peer matrix carries no node_id".to_string(),
                    ));
                }
                if self.seen_ids.contains(&node_id) {
                    st.warnings.push(warning(
                        WARN_DUPLICATE_NODE,
                        format!("node {node_id:?} was already merged; not merged twice"),
                    ));
                } else {
                    self.seen_ids.push(node_id);
                    self.expected += 1;
                    self.input_node.push(self.nodes.len());
                    self.inputs.push(matrix);
                }
            }
            Err(e) => {
                inner.metrics.peer_failure(e.reason());
                let text = e.to_string();
                tracing::warn!(peer = %target.name, error = %text, "keyviz fan-out peer failed");
                let known = st
                    .node_id
                    .as_ref()
                    .is_some_and(|id| self.seen_ids.contains(id));
                if !known {
                    self.expected += 1;
                }
                inner.peers.record(&target.name, |r| {
                    r.reachable = Some(false);
                    r.last_attempt_unix_ms = Some(now_ms);
                    r.last_elapsed_ms = Some(elapsed);
                    r.last_error = Some(text.clone());
                });
                st.error = Some(text);
            }
        }
        self.nodes.push(st);
    }
}
