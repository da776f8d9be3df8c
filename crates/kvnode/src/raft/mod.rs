//! Multi-Raft on openraft 0.9: one `Raft` per group, all sharing one fjall database and one
//! pooled peer client.
//!
//! This module is the only place that names openraft types. The rest of the crate talks to
//! [`Groups`] in our own vocabulary (group ids, propose, read barrier, leader, term), so moving to
//! openraft 0.10 (or another engine) touches only this directory.

mod log_store;
mod network;
pub(crate) mod router;
mod sessions;
pub(crate) mod state_machine;
mod types;

mod leadership;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ForwardToLeader, InitializeError, RaftError};
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy, TryAsRef};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub(crate) use leadership::HandOverRequest;
pub use leadership::{Leadership, TransferError};

pub use types::{ExpireCond, KvOp, KvRequest, KvResponse, RequestId, SessionId, SetCond};

use crate::counting::CountFence;
use crate::routing::split::SharedCatalog;
use crate::sampling::Sampling;
use crate::store::{Store, StoreError};
use crate::transport::PeerClient;
use types::RaftHandle;

/// Identifier of a Raft group (`1..=groups`).
pub type GroupId = u64;

/// Timing knobs of every group.
#[derive(Debug, Clone, Copy)]
pub struct RaftTiming {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomised election timeout.
    pub election_min_ms: u64,
    /// Upper bound of the randomised election timeout.
    pub election_max_ms: u64,
    /// Build a snapshot (and purge the log) after this many applied entries.
    pub snapshot_every: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        Self {
            heartbeat_ms: 250,
            election_min_ms: 1000,
            election_max_ms: 2000,
            snapshot_every: 20_000,
        }
    }
}

/// Why a group operation did not happen here.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupError {
    /// This node is not the group's leader; nothing was proposed. `leader` is the current
    /// leader if known.
    #[error("not the leader of group {group} (leader: {leader:?})")]
    NotLeader {
        /// Group.
        group: GroupId,
        /// Known leader node id.
        leader: Option<u64>,
    },
    /// The group id is not hosted on this node.
    #[error("unknown raft group {0}")]
    UnknownGroup(GroupId),
    /// The proposal or read barrier did not complete in time (no quorum?). A write may still
    /// commit later.
    #[error("group {0} did not answer in time")]
    Timeout(GroupId),
    /// openraft failed (shutting down, storage error, lost quorum).
    #[error("raft group {group}: {detail}")]
    Raft {
        /// Group.
        group: GroupId,
        /// openraft's message.
        detail: String,
    },
}

/// A committed proposal: the state machine's answer and the term of the entry that carried it.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The state machine's answer.
    pub response: KvResponse,
    /// Term of the leader that appended the entry.
    pub term: u64,
}

/// Observable state of one group on this node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupStatus {
    /// Group id.
    pub group: GroupId,
    /// Current leader, if known.
    pub leader: Option<u64>,
    /// Current term as seen here.
    pub term: u64,
    /// Last applied log index.
    pub applied_index: Option<u64>,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
}

type Metrics = openraft::RaftMetrics<u64, BasicNode>;

struct Group {
    raft: RaftHandle,
    metrics: watch::Receiver<Metrics>,
    /// Leadership state shared with the group's leader-watch task (see `leadership`).
    watch: Arc<leadership::GroupWatch>,
}

/// All groups hosted by this node.
pub struct Groups {
    node_id: u64,
    groups: BTreeMap<GroupId, Group>,
    op_timeout: Duration,
    client: PeerClient,
    timing: RaftTiming,
    watchers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Starting a group failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Storage could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// openraft refused the configuration or failed to start.
    #[error("raft: {0}")]
    Raft(String),
}

impl Groups {
    /// Starts `group_ids` on this node over `store`. Each state machine observes its applied
    /// writes into `sampling` under `fence`; before a group starts applying, the writes a crash
    /// lost (applied after the last flushed KeyViz watermark) are re-observed from its log, and
    /// while sampling is on the log keeps every entry above the persisted watermark.
    ///
    /// # Errors
    /// [`StartError`] when storage or openraft fails.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start(
        node_id: u64,
        group_ids: impl IntoIterator<Item = GroupId>,
        store: &Store,
        catalog: Arc<SharedCatalog>,
        client: PeerClient,
        timing: RaftTiming,
        sampling: Sampling,
        fence: Arc<CountFence>,
    ) -> Result<Self, StartError> {
        let config = Config {
            cluster_name: "kvnode".into(),
            heartbeat_interval: timing.heartbeat_ms,
            election_timeout_min: timing.election_min_ms,
            election_timeout_max: timing.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(timing.snapshot_every),
            max_in_snapshot_log_to_keep: 1_000,
            // openraft 0.9 uses the heartbeat interval as the AppendEntries deadline; smaller
            // batches keep one RPC well inside it on a loaded machine. The log reader also
            // bounds an RPC to 8 MiB of entries, and the network lets a single bigger entry
            // outlive the heartbeat deadline (raft/network.rs).
            max_payload_entries: 128,
            // Snapshots travel in 4 MiB chunks (far below the 80 MiB body cap); a chunk, and the
            // install that follows the last one, get 30 s (the transport extends it per byte).
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            install_snapshot_timeout: 30_000,
            ..Default::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| StartError::Raft(e.to_string()))?,
        );
        let mut groups = BTreeMap::new();
        let mut watchers = Vec::new();
        for g in group_ids {
            let keep_uncounted = sampling.sampler().is_some();
            let log = log_store::LogStore::new(store.clone(), g, keep_uncounted);
            let sm = state_machine::StateMachine::open(
                store.clone(),
                g,
                catalog.clone(),
                sampling.clone(),
                fence.clone(),
            )?;
            sm.recount_from_log(&log)?;
            let net = network::NetworkFactory::new(g, client.clone());
            let raft = openraft::Raft::new(node_id, config.clone(), net, log, sm)
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?;
            let metrics = raft.metrics();
            let watch = Arc::new(leadership::GroupWatch::default());
            watchers.push(tokio::spawn(leadership::watch_leadership(
                g,
                metrics.clone(),
                watch.clone(),
            )));
            groups.insert(
                g,
                Group {
                    raft,
                    metrics,
                    watch,
                },
            );
        }
        Ok(Self {
            node_id,
            groups,
            op_timeout: Duration::from_secs(5),
            client,
            timing,
            watchers: Mutex::new(watchers),
        })
    }

    fn group(&self, g: GroupId) -> Result<&Group, GroupError> {
        self.groups.get(&g).ok_or(GroupError::UnknownGroup(g))
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Ids of the hosted groups.
    pub fn ids(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.keys().copied()
    }

    /// Initialises every group that has no state yet with `members` (node id → raft address).
    /// Only one node (the lowest id) calls this; on a restart it is a no-op.
    pub(crate) async fn bootstrap(
        &self,
        members: &BTreeMap<u64, String>,
    ) -> Result<(), StartError> {
        let nodes: BTreeMap<u64, BasicNode> = members
            .iter()
            .map(|(id, a)| (*id, BasicNode::new(a)))
            .collect();
        for (g, group) in &self.groups {
            match group.raft.initialize(nodes.clone()).await {
                Ok(()) => tracing::info!(group = g, "raft group initialised"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(StartError::Raft(e.to_string())),
            }
        }
        Ok(())
    }

    /// Proposes `req` to group `g`, if this node leads it, and waits for it to be applied.
    ///
    /// # Errors
    /// [`GroupError::NotLeader`] (nothing proposed), [`GroupError::Timeout`] (outcome
    /// unknown), [`GroupError::Raft`].
    ///
    /// While this node hands leadership of `g` over (see [`Groups::campaign`]), proposals are
    /// refused with `NotLeader` (hint: the target), so the target's log can catch up with ours.
    pub async fn propose(&self, g: GroupId, req: KvRequest) -> Result<Committed, GroupError> {
        let group = self.group(g)?;
        if let Some(target) = group.watch.handing_over_to() {
            return Err(GroupError::NotLeader {
                group: g,
                leader: Some(target),
            });
        }
        // A big entry takes longer to replicate and apply: the deadline grows with its size.
        let timeout = crate::transport::deadline_for(self.op_timeout, crate::store::bin_size(&req));
        let fut = group.raft.client_write(req);
        let resp = group_outcome(g, tokio::time::timeout(timeout, fut).await)
            .inspect_err(|e| group.watch.log_failure("proposal", g, e))?;
        Ok(Committed {
            response: resp.data,
            term: resp.log_id.leader_id.term,
        })
    }

    /// Waits until this node, as leader of `g`, has applied everything committed before the
    /// call (openraft's read index), so a following local read is linearizable.
    ///
    /// # Errors
    /// [`GroupError::NotLeader`], [`GroupError::Timeout`], [`GroupError::Raft`].
    pub async fn read_barrier(&self, g: GroupId) -> Result<(), GroupError> {
        // Same openraft call as the read index; only the index is dropped.
        self.read_index(g).await.map(|_| ())
    }

    /// As leader of `g`: confirms leadership with a quorum and returns the log index a
    /// linearizable read must wait for (the read index; 0 when the log is empty).
    ///
    /// # Errors
    /// As [`Groups::read_barrier`].
    pub async fn read_index(&self, g: GroupId) -> Result<u64, GroupError> {
        let group = self.group(g)?;
        let fut = group.raft.ensure_linearizable();
        let log_id = group_outcome(g, tokio::time::timeout(self.op_timeout, fut).await)?;
        Ok(log_id.map_or(0, |l| l.index))
    }

    /// Waits until this node has applied `g`'s log up to `index` (a follower catching up to
    /// a read index).
    ///
    /// # Errors
    /// [`GroupError::Timeout`] when the node does not catch up in time.
    pub async fn wait_applied(&self, g: GroupId, index: u64) -> Result<(), GroupError> {
        let group = self.group(g)?;
        if index == 0 {
            return Ok(());
        }
        group
            .raft
            .wait(Some(self.op_timeout))
            .applied_index_at_least(Some(index), "follower read")
            .await
            .map(|_| ())
            .map_err(|_| GroupError::Timeout(g))
    }

    /// The leader of `g` as last seen by this node.
    pub fn leader(&self, g: GroupId) -> Option<u64> {
        self.groups
            .get(&g)
            .and_then(|gr| gr.metrics.borrow().current_leader)
    }

    /// Whether this node currently believes it leads `g`.
    pub fn is_leader(&self, g: GroupId) -> bool {
        self.leader(g) == Some(self.node_id)
    }

    /// Status of every group.
    pub fn status(&self) -> Vec<GroupStatus> {
        self.groups
            .iter()
            .map(|(g, gr)| {
                let m = gr.metrics.borrow();
                let role = match m.state {
                    ServerState::Leader => "leader",
                    ServerState::Follower => "follower",
                    ServerState::Candidate => "candidate",
                    ServerState::Learner => "learner",
                    ServerState::Shutdown => "shutdown",
                };
                GroupStatus {
                    group: *g,
                    leader: m.current_leader,
                    term: m.current_term,
                    applied_index: m.last_applied.map(|l| l.index),
                    role: role.to_string(),
                }
            })
            .collect()
    }

    /// Starts an election for `g` on this node right now (`raft.trigger().elect()`), without
    /// any of the checks of [`Groups::campaign`]. The leader calls this on the target of a
    /// hand-over (`/kv/{g}/elect`) once the target has caught up; start-up also uses it.
    ///
    /// # Errors
    /// [`GroupError::UnknownGroup`], [`GroupError::Raft`] when openraft has stopped.
    pub async fn elect_here(&self, g: GroupId) -> Result<(), GroupError> {
        let group = self.group(g)?;
        group
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|e| GroupError::Raft {
                group: g,
                detail: e.to_string(),
            })
    }

    /// Waits until every group has a known leader, or `timeout` passes. Returns the groups
    /// still without one.
    pub async fn wait_for_leaders(&self, timeout: Duration) -> BTreeSet<GroupId> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let missing: BTreeSet<GroupId> =
                self.ids().filter(|g| self.leader(*g).is_none()).collect();
            if missing.is_empty() || tokio::time::Instant::now() >= deadline {
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every group (waits for their tasks) and the leader-watch tasks.
    pub async fn shutdown(&self) {
        for w in self.watchers.lock().drain(..) {
            w.abort();
        }
        for (g, gr) in &self.groups {
            if let Err(e) = gr.raft.shutdown().await {
                tracing::warn!(group = g, error = %e, "raft shutdown");
            }
        }
    }
}

/// Maps a time-limited openraft call on group `g` to our vocabulary: elapsed is
/// [`GroupError::Timeout`], "forward to leader" is [`GroupError::NotLeader`] (this node did
/// nothing), anything else is [`GroupError::Raft`].
fn group_outcome<T, E>(
    g: GroupId,
    outcome: Result<Result<T, RaftError<u64, E>>, tokio::time::error::Elapsed>,
) -> Result<T, GroupError>
where
    E: std::fmt::Debug + std::fmt::Display + TryAsRef<ForwardToLeader<u64, BasicNode>>,
{
    match outcome {
        Err(_) => Err(GroupError::Timeout(g)),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => match e.forward_to_leader::<BasicNode>() {
            Some(f) => Err(GroupError::NotLeader {
                group: g,
                leader: f.leader_id,
            }),
            None => Err(GroupError::Raft {
                group: g,
                detail: e.to_string(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{StorageError, StorageIOError};

    use super::log_store::LogStore;
    use super::state_machine::StateMachine;
    use super::types::TypeConfig;
    use crate::routing::split::SharedCatalog;
    use crate::routing::{Catalog, Layout};
    use crate::sampling::Sampling;
    use crate::store::Store;

    /// Fresh fjall storage per suite case; the temp dir lives as long as the stores.
    struct FjallBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for FjallBuilder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
            let io = |e: &dyn std::fmt::Display| {
                StorageError::from(StorageIOError::write(&std::io::Error::other(e.to_string())))
            };
            let dir = tempfile::tempdir().map_err(|e| io(&e))?;
            let store = Store::open(dir.path(), false).map_err(|e| io(&e))?;
            let catalog = Catalog::from_layout(&Layout::even(1)).map_err(|e| io(&e))?;
            let catalog = Arc::new(SharedCatalog::new(catalog, Sampling::disabled()));
            let fence = Arc::new(crate::counting::CountFence::new([1]));
            let sm = StateMachine::open(store.clone(), 1, catalog, Sampling::disabled(), fence)
                .map_err(|e| io(&e))?;
            Ok((dir, LogStore::new(store, 1, false), sm))
        }
    }

    #[test]
    fn fjall_storage_passes_the_openraft_conformance_suite() {
        Suite::test_all(FjallBuilder).expect("openraft storage suite");
    }
}
