//! What the fan-out reports: the `fanout` block of a matrix response and the per-peer
//! history behind `GET /admin/api/v1/keyviz/nodes`.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Warning code: a peer entry answered with this node's own id; it was not merged.
pub const WARN_SELF_ALIAS: &str = "self_alias";
/// Warning code: a peer entry answered with the id of a node already merged.
pub const WARN_DUPLICATE_NODE: &str = "duplicate_node";
/// Warning code: the peer's matrix carried no `node_id` (alias detection impossible).
pub const WARN_MISSING_NODE_ID: &str = "missing_node_id";

/// One warning attached to a node's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeWarning {
    /// `self_alias`, `duplicate_node`, `missing_node_id`, or a merge warning code such as
    /// `catalog_divergence` / `step_mismatch`.
    pub code: String,
    /// The bucket concerned, for merge warnings about one row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_id: Option<String>,
    /// Human-readable explanation.
    pub detail: String,
}

/// The outcome for one node of one fan-out. Self comes first, then peers in configured
/// order (static list, then membership), whatever order they answered in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's name: this node's admin address, or the peer entry as configured.
    pub node: String,
    /// The node id, when known (always for self and for peers that answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Whether the node's answer (matrix, or hot keys) was received, passed validation and
    /// was usable.
    pub ok: bool,
    /// Why not, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Stable machine-readable form of `error` (the metrics reason: `connect`, `timeout`,
    /// `status`, `body_cap`, `decode`, `invalid`, `identity`, `address`, or for hot keys
    /// `hot_keys_unavailable` / `hot_keys_mode_mismatch`), when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The node's own `generated_at`, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_at: Option<String>,
    /// Wall time of the call in milliseconds (local query time for self).
    pub elapsed_ms: u64,
    /// Warnings about this node's contribution.
    #[serde(default)]
    pub warnings: Vec<NodeWarning>,
}

/// The `fanout` block of a matrix or hot-keys response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanoutStatus {
    /// Per-node outcomes, self first.
    pub nodes: Vec<NodeStatus>,
    /// Distinct nodes whose answer was merged, self included.
    pub responded: usize,
    /// Distinct nodes expected, self included (aliases of self or of another peer are not
    /// counted twice).
    pub expected: usize,
}

/// The last known state of a peer, for `GET /admin/api/v1/keyviz/nodes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerRecord {
    /// Node id learnt from the peer or the membership.
    pub node_id: Option<String>,
    /// Whether the last call succeeded (`None` before the first call).
    pub reachable: Option<bool>,
    /// When the last call was made, unix ms.
    pub last_attempt_unix_ms: Option<i64>,
    /// When the peer last answered successfully, unix ms.
    pub last_ok_unix_ms: Option<i64>,
    /// Duration of the last call, ms.
    pub last_elapsed_ms: Option<u64>,
    /// Error of the last call, if it failed.
    pub last_error: Option<String>,
    /// The entry turned out to be this node under another name.
    pub self_alias: bool,
}

/// Per-peer records keyed by entry name; also caches learnt node ids.
#[derive(Default)]
pub(crate) struct PeerTable {
    records: Mutex<HashMap<String, PeerRecord>>,
}

impl PeerTable {
    pub(crate) fn cached_node_id(&self, name: &str) -> Option<String> {
        self.records
            .lock()
            .get(name)
            .and_then(|r| r.node_id.clone())
    }

    pub(crate) fn forget_node_id(&self, name: &str) {
        if let Some(r) = self.records.lock().get_mut(name) {
            r.node_id = None;
        }
    }

    pub(crate) fn record(&self, name: &str, update: impl FnOnce(&mut PeerRecord)) {
        let mut records = self.records.lock();
        // Bounded by the number of distinct configured/member entries; prune if a churning
        // membership ever makes it large.
        if records.len() > 4096 && !records.contains_key(name) {
            records.clear();
        }
        update(records.entry(name.to_string()).or_default());
    }

    pub(crate) fn get(&self, name: &str) -> PeerRecord {
        self.records.lock().get(name).cloned().unwrap_or_default()
    }
}
