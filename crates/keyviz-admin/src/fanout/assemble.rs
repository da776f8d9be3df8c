//! Turning peer answers into merge inputs and per-node statuses, in configured order. Shared
//! by the matrix and the hot-key fan-outs: `T` is what one node contributes.

use super::PeerAnswer;
use super::client::PeerError;
use super::membership::PeerTarget;
use super::status::{
    NodeStatus, NodeWarning, PeerRecord, WARN_DUPLICATE_NODE, WARN_MISSING_NODE_ID, WARN_SELF_ALIAS,
};
use crate::state::Inner;

/// The fan-out result being assembled: self first, then one status per peer entry.
pub(crate) struct Assembly<T> {
    /// Per-node statuses, self at index 0.
    pub(crate) nodes: Vec<NodeStatus>,
    /// Merge inputs: local first, then distinct successful peers.
    pub(crate) inputs: Vec<T>,
    /// `inputs[i]` came from `nodes[input_node[i]]`.
    pub(crate) input_node: Vec<usize>,
    /// Distinct nodes expected, self included.
    pub(crate) expected: usize,
    seen_ids: Vec<String>,
}

pub(crate) fn warning(code: &str, detail: String) -> NodeWarning {
    NodeWarning {
        code: code.to_string(),
        bucket_id: None,
        detail,
    }
}

impl<T> Assembly<T> {
    /// Starts with this node's own contribution (`generated_at` as it reported it).
    pub(crate) fn new(
        inner: &Inner,
        local: T,
        generated_at: Option<String>,
        local_elapsed_ms: u64,
    ) -> Self {
        let self_id = inner.identity.node_id().to_string();
        Assembly {
            nodes: vec![NodeStatus {
                node: inner.identity.admin_addr().to_string(),
                node_id: Some(self_id.clone()),
                ok: true,
                error: None,
                reason: None,
                generated_at,
                elapsed_ms: local_elapsed_ms,
                warnings: Vec::new(),
            }],
            inputs: vec![local],
            input_node: vec![0],
            expected: 1,
            seen_ids: vec![self_id],
        }
    }

    /// Records one peer's answer: its status, its contribution as a merge input unless it is
    /// this node or a node already merged, and the peer table entry behind the nodes endpoint.
    pub(crate) fn add(
        &mut self,
        inner: &Inner,
        target: &PeerTarget,
        res: Result<PeerAnswer<T>, PeerError>,
        elapsed: u64,
        attempted_ms: i64,
    ) {
        let mut st = NodeStatus {
            node: target.name.clone(),
            node_id: target
                .node_id
                .clone()
                .or_else(|| inner.peers.cached_node_id(&target.name)),
            ok: false,
            error: None,
            reason: None,
            generated_at: None,
            elapsed_ms: elapsed,
            warnings: Vec::new(),
        };
        let reached = |self_alias: bool| {
            inner.peers.record(&target.name, |r| {
                if newer_attempt_recorded(r, attempted_ms) {
                    return;
                }
                r.self_alias = self_alias;
                r.reachable = Some(true);
                r.last_attempt_unix_ms = Some(attempted_ms);
                r.last_ok_unix_ms = Some(attempted_ms);
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
            Ok(PeerAnswer::Answer {
                value,
                node_id,
                missing_id,
                generated_at,
            }) => {
                st.ok = true;
                st.node_id = Some(node_id.clone());
                st.generated_at = generated_at;
                reached(false);
                if missing_id {
                    st.warnings.push(warning(
                        WARN_MISSING_NODE_ID,
                        "peer answer carries no node_id".to_string(),
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
                    self.inputs.push(value);
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
                // A peer without hot keys answered: it is reachable, only this feature is
                // missing there.
                let answered = matches!(e, PeerError::HotKeysUnavailable(_));
                inner.peers.record(&target.name, |r| {
                    if newer_attempt_recorded(r, attempted_ms) {
                        return;
                    }
                    r.reachable = Some(answered);
                    r.last_attempt_unix_ms = Some(attempted_ms);
                    if answered {
                        r.last_ok_unix_ms = Some(attempted_ms);
                    }
                    r.last_elapsed_ms = Some(elapsed);
                    r.last_error = Some(text.clone());
                });
                st.reason = Some(e.reason().to_string());
                st.error = Some(text);
            }
        }
        self.nodes.push(st);
    }
}

/// True when the peer table already holds an attempt that started after `attempted_ms`. Matrix
/// and hot-key fan-outs overlap, so an answer that was in flight when a peer went down can
/// arrive after a newer attempt saw it fail; the table keeps the newest attempt, never the
/// last to finish.
fn newer_attempt_recorded(r: &PeerRecord, attempted_ms: i64) -> bool {
    r.last_attempt_unix_ms.is_some_and(|t| t > attempted_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_from_an_older_attempt_never_overwrites_a_newer_one() {
        let failed_later = PeerRecord {
            reachable: Some(false),
            last_attempt_unix_ms: Some(2_000),
            ..PeerRecord::default()
        };
        assert!(newer_attempt_recorded(&failed_later, 1_999));
        assert!(!newer_attempt_recorded(&failed_later, 2_000));
        assert!(!newer_attempt_recorded(&PeerRecord::default(), 0));
    }
}
