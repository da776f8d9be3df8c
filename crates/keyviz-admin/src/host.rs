//! The services a host hands to the admin surface: where matrices come from, who this node
//! is, the cluster secret and the live membership.

use keyviz::boundaries::{Boundaries, RowTotal, RunBoundaryMatrix};
use keyviz::hotkeys::{HotKeyQuery, NodeHotKeys};
use keyviz::{Matrix, MatrixQuery};

use crate::config::ConfigError;

/// Why a [`MatrixSource`] could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// KeyViz is switched off on this node: the API answers 503 `keyviz_disabled`.
    #[error("key visualizer sampler is not configured on this node")]
    Disabled,
    /// The source failed for another reason: the API answers 500 and logs the detail.
    #[error("matrix source failed: {0}")]
    Failed(String),
}

/// Produces this node's local matrix for a query.
///
/// Implementations must be cheap to call concurrently and must not block for long: the
/// handler calls them on a tokio worker. `now_unix_ms` is the wall clock of the request.
pub trait MatrixSource: Send + Sync + 'static {
    /// The local view for `query` (row budget, time window and series already parsed).
    ///
    /// # Errors
    /// [`SourceError::Disabled`] when KeyViz is off on this node.
    fn matrix(&self, query: &MatrixQuery, now_unix_ms: i64) -> Result<Matrix, SourceError>;

    /// Whether KeyViz is on; when false the API answers 503 before parsing parameters.
    fn is_enabled(&self) -> bool {
        true
    }

    /// The first round of a cluster fan-out: one total per row of this node's view for
    /// `query`, in key order. The default computes [`MatrixSource::matrix`] and sums its
    /// rows; a source that keeps per-route totals may answer without building the matrix.
    ///
    /// # Errors
    /// As [`MatrixSource::matrix`].
    fn row_totals(
        &self,
        query: &MatrixQuery,
        now_unix_ms: i64,
    ) -> Result<Vec<RowTotal>, SourceError> {
        self.matrix(query, now_unix_ms)
            .map(|m| keyviz::boundaries::row_totals(&m))
    }

    /// The second round: this node's view coarsened onto the cluster's `boundaries`, with
    /// identities as runs (the boundary encodings write runs; no per-cell group or term
    /// array is needed). The default computes [`MatrixSource::matrix`] and applies
    /// [`keyviz::boundaries::coarsen_onto_runs`]; an override must keep the same totals and
    /// may build the answer row by row ([`RunBoundaryMatrix::push_row`]). Same blocking
    /// and locking rules as [`MatrixSource::matrix`].
    ///
    /// # Errors
    /// As [`MatrixSource::matrix`].
    fn matrix_on_boundaries(
        &self,
        query: &MatrixQuery,
        boundaries: &Boundaries,
        now_unix_ms: i64,
    ) -> Result<RunBoundaryMatrix, SourceError> {
        self.matrix(query, now_unix_ms).map(|m| {
            keyviz::boundaries::coarsen_onto_runs(
                m,
                boundaries,
                keyviz::merge::MAX_LISTED_ROUTE_IDS,
            )
        })
    }

    /// This node's hot keys for `query` (already validated). The default is a source
    /// that keeps none: [`SourceError::Disabled`].
    ///
    /// # Errors
    /// [`SourceError::Disabled`] when this source keeps no hot keys.
    fn hot_keys(
        &self,
        _query: &HotKeyQuery,
        _now_unix_ms: i64,
    ) -> Result<NodeHotKeys, SourceError> {
        Err(SourceError::Disabled)
    }

    /// The node that led each of the write identities `wanted` (raft group, leader term,
    /// ascending and unique), as far as this node knows: at most one entry per identity, in
    /// any order; identities it does not know are left out. Writes are counted from the
    /// committed log by every replica, so no part of a merged write cell says who led; the
    /// host must know it from the log itself (every entry's log id names the leader that
    /// appended it). The default knows none. Called on a blocking thread; an implementation
    /// may take a short lock and must not do I/O.
    fn term_leaders(&self, _wanted: &[(u64, u64)]) -> Vec<TermLeader> {
        Vec::new()
    }
}

/// The node that led one raft group in one leader term: what the matrix answer's `leaders`
/// lists for the write identities its cells carry (docs/ADMIN.md, "Term leaders").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TermLeader {
    /// Raft group.
    pub group: u64,
    /// Leader term.
    pub term: u64,
    /// The admin node id of the leader (as in `fanout.nodes[].node_id`).
    pub node_id: String,
}

impl MatrixSource for keyviz::Sampler {
    fn matrix(&self, query: &MatrixQuery, now_unix_ms: i64) -> Result<Matrix, SourceError> {
        Ok(keyviz::Sampler::matrix(self, query, now_unix_ms))
    }

    fn hot_keys(&self, query: &HotKeyQuery, now_unix_ms: i64) -> Result<NodeHotKeys, SourceError> {
        keyviz::Sampler::hot_keys(self, query, now_unix_ms)
            .map_err(|e| SourceError::Failed(e.to_string()))
    }
}

/// A source for nodes running with KeyViz off: every call is [`SourceError::Disabled`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DisabledSource;

impl MatrixSource for DisabledSource {
    fn matrix(&self, _query: &MatrixQuery, _now_unix_ms: i64) -> Result<Matrix, SourceError> {
        Err(SourceError::Disabled)
    }

    fn is_enabled(&self) -> bool {
        false
    }
}

/// Who this node is: a stable cluster-unique id and the admin address peers reach it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    node_id: String,
    admin_addr: String,
}

impl NodeIdentity {
    /// `node_id` must be non-empty and the same across restarts; `admin_addr` is the listen
    /// or advertised address (`host:port`, wildcard hosts allowed), used for literal self
    /// detection and as this node's name in fan-out statuses.
    ///
    /// # Errors
    /// [`ConfigError::EmptyNodeId`] for an empty id.
    pub fn new(
        node_id: impl Into<String>,
        admin_addr: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        let node_id = node_id.into();
        if node_id.trim().is_empty() {
            return Err(ConfigError::EmptyNodeId);
        }
        Ok(NodeIdentity {
            node_id,
            admin_addr: admin_addr.into(),
        })
    }

    /// The node id carried in every matrix response and peer token audience.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The admin address as configured.
    #[must_use]
    pub fn admin_addr(&self) -> &str {
        &self.admin_addr
    }
}

/// Minimum length of a cluster secret in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// The key material shared by all nodes: signs operator sessions and peer tokens. A previous
/// secret may be kept during rotation; it verifies tokens but never signs.
#[derive(Clone)]
pub struct ClusterSecret {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSecret")
            .field("current", &"<redacted>")
            .field("previous", &self.previous.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ClusterSecret {
    /// Both secrets must be at least [`MIN_SECRET_LEN`] bytes.
    ///
    /// # Errors
    /// [`ConfigError::SecretTooShort`] for a short current or previous secret.
    pub fn new(current: Vec<u8>, previous: Option<Vec<u8>>) -> Result<Self, ConfigError> {
        for s in std::iter::once(&current).chain(previous.iter()) {
            if s.len() < MIN_SECRET_LEN {
                return Err(ConfigError::SecretTooShort {
                    min: MIN_SECRET_LEN,
                    got: s.len(),
                });
            }
        }
        Ok(ClusterSecret { current, previous })
    }

    /// The signing key.
    pub(crate) fn current(&self) -> &[u8] {
        &self.current
    }

    /// Verification keys in the order they are tried: current, then previous.
    pub(crate) fn verify_keys(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.current.as_slice()).chain(self.previous.as_deref())
    }
}

/// One cluster member as the host's membership knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's node id, when the host knows it.
    pub node_id: Option<String>,
    /// Its admin address, `host:port` or `http://host:port`.
    pub admin_addr: String,
}

/// The live list of cluster members (e.g. from the store's Raft membership). Called once per
/// fan-out; it must be quick and must not block. Self may be included: it is recognised
/// by node id or address and skipped.
pub trait Membership: Send + Sync + 'static {
    /// Current members.
    fn members(&self) -> Vec<Member>;
}

/// A membership that is always empty (only the static `--keyvizFanoutNodes` list is used).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMembership;

impl Membership for NoMembership {
    fn members(&self) -> Vec<Member> {
        Vec::new()
    }
}

impl<F> Membership for F
where
    F: Fn() -> Vec<Member> + Send + Sync + 'static,
{
    fn members(&self) -> Vec<Member> {
        self()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_and_empty_node_ids_are_rejected() {
        assert_eq!(
            ClusterSecret::new(vec![1; 31], None).err(),
            Some(ConfigError::SecretTooShort { min: 32, got: 31 })
        );
        assert!(ClusterSecret::new(vec![1; 32], Some(vec![2; 8])).is_err());
        assert!(ClusterSecret::new(vec![1; 32], Some(vec![2; 64])).is_ok());
        assert_eq!(
            NodeIdentity::new(" ", "a:1").err(),
            Some(ConfigError::EmptyNodeId)
        );
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let s = ClusterSecret::new(b"super-secret-value-that-is-long-enough".to_vec(), None);
        let text = format!("{s:?}");
        assert!(!text.contains("super-secret"), "{text}");
    }

    #[test]
    fn disabled_source_reports_disabled() {
        let q = MatrixQuery {
            series: keyviz::Series::Writes,
            from_unix_ms: None,
            to_unix_ms: None,
            row_budget: None,
            ..MatrixQuery::default()
        };
        assert!(!DisabledSource.is_enabled());
        assert_eq!(
            DisabledSource.matrix(&q, 0).err(),
            Some(SourceError::Disabled)
        );
    }
}
