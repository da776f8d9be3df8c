//! openraft's network traits over the internal transport, one factory per group.
//!
//! Each RPC is `POST /raft/{group}/{append|vote|snapshot}` with the openraft request encoded
//! with postcard; the peer answers `Result<Response, RaftError>`, also postcard. Transport
//! failures become `Unreachable` so openraft backs off instead of hammering a dead peer.
//!
//! Deadlines. openraft 0.9 wraps every AppendEntries call in a timeout of one heartbeat
//! interval, whatever it carries. A big entry (a 16 MiB value) can take longer than that on a
//! loaded machine, and re-sending it from scratch after every timeout never finishes. So an
//! AppendEntries that carries entries runs in its own task with a deadline that grows with its
//! size ([`crate::transport::deadline_for`]); when openraft gives up waiting, the task keeps
//! going, and openraft's retry of the same entries (same vote, same previous and last log id)
//! joins that task instead of sending them again. Heartbeats (no entries) never wait behind it.
//! The log reader bounds the bytes per RPC (`log_store::MAX_APPEND_BYTES`), so only a single
//! big entry ever needs this.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{LogId, Vote};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use super::types::{TypeConfig, entries_bytes};
use crate::store::to_bin;
use crate::transport::{PeerClient, TransportError, deadline_for};

type NodeId = u64;

/// Smallest deadline of an AppendEntries that carries entries, before the per-byte part: the
/// follower appends them to its log before it answers.
const APPEND_BASE_DEADLINE: Duration = Duration::from_secs(1);

/// At most one warning per peer in this interval (replication to a slow peer would otherwise
/// log on every retry).
const WARN_EVERY: Duration = Duration::from_secs(5);

/// Creates per-peer clients for one group.
pub(crate) struct NetworkFactory {
    group: u64,
    client: PeerClient,
}

impl NetworkFactory {
    pub(crate) fn new(group: u64, client: PeerClient) -> Self {
        Self { group, client }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        GroupNetwork {
            group: self.group,
            target,
            addr: node.addr.clone(),
            client: self.client.clone(),
            inflight: None,
        }
    }
}

type AppendAnswer =
    Result<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>, TransportError>;

/// What identifies an AppendEntries retry: openraft re-sends the same range under the same
/// vote (the commit index may differ, which does not change the answer).
#[derive(PartialEq, Eq)]
struct AppendKey {
    vote: Vote<NodeId>,
    prev: Option<LogId<NodeId>>,
    last: Option<LogId<NodeId>>,
}

/// An AppendEntries with entries still on its way (or answered but not yet collected).
struct InFlight {
    key: AppendKey,
    bytes: usize,
    started: Instant,
    task: JoinHandle<AppendAnswer>,
}

/// Connection of one group to one peer.
pub(crate) struct GroupNetwork {
    group: u64,
    target: NodeId,
    addr: String,
    client: PeerClient,
    inflight: Option<InFlight>,
}

impl Drop for GroupNetwork {
    fn drop(&mut self) {
        if let Some(f) = self.inflight.take() {
            f.task.abort();
        }
    }
}

/// Logs `msg` at warn for `peer` unless a warning for it was logged less than
/// [`WARN_EVERY`] ago; counts what it suppressed. Takes a process-wide mutex briefly.
fn warn_rate_limited(peer: NodeId, group: u64, msg: &str, detail: &dyn std::fmt::Display) {
    static LAST: OnceLock<Mutex<HashMap<NodeId, (Instant, u64)>>> = OnceLock::new();
    let now = Instant::now();
    let mut last = LAST.get_or_init(Default::default).lock();
    let slot = last.entry(peer).or_insert((now - WARN_EVERY * 2, 0));
    if now.duration_since(slot.0) < WARN_EVERY {
        slot.1 += 1;
        return;
    }
    let suppressed = std::mem::replace(slot, (now, 0)).1;
    drop(last);
    tracing::warn!(peer, group, suppressed, "{msg}: {detail}");
}

fn transport_to_rpc<E: std::error::Error>(
    e: TransportError,
) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    match e {
        TransportError::Unreachable { .. }
        | TransportError::Timeout(_)
        | TransportError::Status { .. } => RPCError::Unreachable(Unreachable::new(&e)),
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

impl GroupNetwork {
    fn path(&self, kind: &str) -> String {
        format!("/raft/{}/{kind}", self.group)
    }

    /// One RPC whose body carries about `weight` bytes of entries or snapshot data (encoded
    /// off the worker when big, [`PeerClient::call_weighed`]).
    async fn rpc<Q, R, E>(
        &self,
        kind: &str,
        req: &Q,
        weight: usize,
        ttl: Duration,
    ) -> Result<R, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Q: Serialize,
        R: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<R, RaftError<NodeId, E>> = self
            .client
            .call_weighed(&self.addr, &self.path(kind), req, weight, ttl)
            .await
            .map_err(|e| {
                if matches!(e, TransportError::Timeout(_)) {
                    warn_rate_limited(self.target, self.group, "raft rpc timed out", &e);
                }
                transport_to_rpc(e)
            })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// Starts (or joins, for a retry) the AppendEntries task for `rpc` and waits for it at
    /// most `ttl`. Cancel-safe: if this future is dropped, the task goes on and stays joinable.
    async fn append_with_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        ttl: Duration,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let key = AppendKey {
            vote: rpc.vote,
            prev: rpc.prev_log_id,
            last: rpc.entries.last().map(|e| e.log_id),
        };
        let retry = self.inflight.as_ref().is_some_and(|f| f.key == key);
        if !retry {
            if let Some(old) = self.inflight.take() {
                // openraft moved on (new vote or another range): the old answer is moot.
                old.task.abort();
            }
            // Encoding a big entry takes long enough to starve the other groups' timers.
            let payload = keyviz_admin::peer::off_worker(entries_bytes(&rpc.entries), || {
                to_bin("append entries", &rpc)
            })
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            let bytes = payload.len();
            let deadline = deadline_for(APPEND_BASE_DEADLINE.max(ttl), bytes);
            let client = self.client.clone();
            let addr = self.addr.clone();
            let path = self.path("append");
            let task = tokio::spawn(async move {
                client
                    .call_raw(&addr, &path, Bytes::from(payload), deadline)
                    .await
            });
            self.inflight = Some(InFlight {
                key,
                bytes,
                started: Instant::now(),
                task,
            });
        }
        let Some(f) = self.inflight.as_mut() else {
            return Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other("append task missing"),
            )));
        };
        // Slightly shorter than openraft's own timeout, so the warning below is ours to log.
        let wait = ttl.mul_f64(0.95);
        let joined = match tokio::time::timeout(wait, &mut f.task).await {
            Err(_) => {
                let (bytes, elapsed) = (f.bytes, f.started.elapsed());
                warn_rate_limited(
                    self.target,
                    self.group,
                    "append entries slower than the heartbeat; still sending",
                    &format_args!("{bytes} bytes, {elapsed:?} so far"),
                );
                return Err(RPCError::Timeout(Timeout {
                    action: RPCTypes::AppendEntries,
                    id: rpc.vote.leader_id().voted_for().unwrap_or_default(),
                    target: self.target,
                    timeout: ttl,
                }));
            }
            Ok(joined) => joined,
        };
        self.inflight = None;
        match joined {
            Err(join) => Err(RPCError::Unreachable(Unreachable::new(&join))),
            Ok(Err(e)) => {
                warn_rate_limited(self.target, self.group, "append entries failed", &e);
                Err(transport_to_rpc(e))
            }
            Ok(Ok(answer)) => {
                answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
        }
    }
}

impl RaftNetwork<TypeConfig> for GroupNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        if rpc.entries.is_empty() {
            // A heartbeat: small, never waits behind a big transfer in flight.
            return self.rpc("append", &rpc, 0, option.hard_ttl()).await;
        }
        self.append_with_entries(rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        // `call` extends the deadline by the chunk's size.
        self.rpc("snapshot", &rpc, rpc.data.len(), option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc("vote", &rpc, 0, option.hard_ttl()).await
    }
}
