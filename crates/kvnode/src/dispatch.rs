//! Executes one operation on the right group.
//!
//! The path of a write: resolve key → route → group; if this node leads the group, propose and
//! wait for it to be applied; otherwise forward the command to the leader over the internal
//! transport, and the leader does the same. Writes are not observed here: every replica's state
//! machine observes them on apply (see `counting`). A write made inside a client session
//! ([`Dispatcher::in_session`], one per RESP connection) carries a [`RequestId`], which the state
//! machine deduplicates, so it is retried — with the same id — after "not leader", a refused
//! connection, and also (a few times) after a timeout or a broken forward whose outcome is
//! unknown; a write without a session is retried only when nothing was proposed.
//!
//! The path of a read: on the leader, a read barrier (openraft's read index) then a local read,
//! observed with `ReadRole::Leader`. On a follower with follower reads enabled, the follower
//! fetches the leader's read index, waits until it has applied that far and reads locally
//! (linearizable), observed with `ReadRole::Follower`; without them, the read is forwarded to
//! the leader, which observes it.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::raft::{GroupError, GroupId, Groups, KvOp, KvRequest, KvResponse, RequestId, SessionId};
use crate::routing::Catalog;
use crate::routing::split::SharedCatalog;
use crate::sampling::Sampling;
use crate::store::{Store, StoreError};
use crate::transport::{PeerClient, TransportError};

/// Current unix time in ms (0 if the clock is before 1970).
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An operation on keys that all belong to one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupCommand {
    /// A replicated write. Inside a client session [`Dispatcher::execute`] turns it into a
    /// [`GroupCommand::WriteOnce`].
    Write(KvOp),
    /// A replicated write applied at most once per request id (a retry gets the first answer).
    WriteOnce {
        /// The client write's identity.
        id: RequestId,
        /// The write.
        op: KvOp,
    },
    /// Read the live values of these keys.
    Read(Vec<Vec<u8>>),
    /// Read the expiry of these keys (`TTL`, `PTTL`), linearizably as [`GroupCommand::Read`].
    ReadExpiry(Vec<Vec<u8>>),
}

impl GroupCommand {
    /// Key and value bytes the command carries ([`KvOp::payload_bytes`], or the keys of a
    /// read): what encoding it costs grows with. Pure.
    #[must_use]
    pub fn payload_bytes(&self) -> usize {
        match self {
            GroupCommand::Write(op) | GroupCommand::WriteOnce { op, .. } => op.payload_bytes(),
            GroupCommand::Read(keys) | GroupCommand::ReadExpiry(keys) => {
                keys.iter().map(Vec::len).fold(0, usize::saturating_add)
            }
        }
    }
}

impl GroupReply {
    /// Value bytes the reply carries (a read's values; 0 for a write's answer). Pure.
    #[must_use]
    pub fn payload_bytes(&self) -> usize {
        match self {
            GroupReply::Write(_) => 0,
            GroupReply::Expiry(at) => at.len().saturating_mul(9),
            GroupReply::Read(values) => values
                .iter()
                .map(|v| v.as_ref().map_or(0, Vec::len))
                .fold(0, usize::saturating_add),
        }
    }
}

/// The answer to a [`GroupCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupReply {
    /// The state machine's answer to a write.
    Write(KvResponse),
    /// One value (or none) per requested key, in order.
    Read(Vec<Option<Vec<u8>>>),
    /// Per requested key, in order: `None` absent, `Some(0)` no expiry, else its unix ms.
    Expiry(Vec<Option<u64>>),
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The group failed (no leader, timeout, raft error).
    #[error(transparent)]
    Group(#[from] GroupError),
    /// Forwarding to the leader failed.
    #[error("forwarding to the leader: {0}")]
    Forward(#[from] TransportError),
    /// Reading local storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No leader emerged for the group within the retry budget.
    #[error("no leader for group {0}")]
    NoLeader(GroupId),
    /// A peer answered a read with a write result or the reverse (a peer bug or version skew).
    #[error("group {0} answered with the wrong kind of reply")]
    WrongReply(GroupId),
}

/// Internal addresses of one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddrs {
    /// Internal transport (`host:port`).
    pub raft: String,
    /// Redis protocol (`host:port`).
    pub resp: String,
    /// Admin HTTP (`host:port`), if served.
    pub admin: Option<String>,
}

/// The client session of one RESP connection: its id and the next sequence number. Cheap to
/// clone (clones share the counter).
#[derive(Debug, Clone)]
pub struct ClientSession {
    id: SessionId,
    seq: Arc<AtomicU64>,
}

impl ClientSession {
    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// A fresh request id of this session (sequence numbers start at 1 and only grow).
    pub fn next_request(&self) -> RequestId {
        // Ordering: Relaxed — only uniqueness and growth per session matter.
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        RequestId {
            session: self.id,
            seq,
        }
    }
}

tokio::task_local! {
    /// The client session of the connection task running the current command.
    static SESSION: ClientSession;
}

/// Retries of a write whose previous attempt had an unknown outcome (timeout, broken
/// forward); safe only because the request id makes the write apply at most once.
const MAX_UNKNOWN_RETRIES: u32 = 3;

/// A random 64-bit epoch for this process: std's `RandomState` is seeded from the OS's
/// randomness, so two processes (or restarts) draw different epochs.
fn boot_epoch() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_unix_ms());
    h.write_u32(std::process::id());
    h.finish()
}

/// Executes operations for the RESP server, the internal forward endpoint and the demo.
pub struct Dispatcher {
    node_id: u64,
    groups: Arc<Groups>,
    catalog: Arc<SharedCatalog>,
    sampling: Sampling,
    store: Store,
    peers: BTreeMap<u64, PeerAddrs>,
    client: PeerClient,
    follower_reads: bool,
    forward_timeout: Duration,
    epoch: u64,
    connections: AtomicU64,
    scan_cursors: crate::resp::scan::ScanCursors,
}

const MAX_ATTEMPTS: u32 = 40;
/// How long [`Dispatcher::split_at`] retries through leader changes.
const SPLIT_DEADLINE: Duration = Duration::from_secs(10);
/// Route resolutions per split on the leader (each one can only be invalidated by a split that
/// was already in the log, so a few are plenty).
const SPLIT_RESOLVE_ATTEMPTS: u32 = 8;

impl Dispatcher {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        node_id: u64,
        groups: Arc<Groups>,
        catalog: Arc<SharedCatalog>,
        sampling: Sampling,
        store: Store,
        peers: BTreeMap<u64, PeerAddrs>,
        client: PeerClient,
        follower_reads: bool,
    ) -> Self {
        let epoch = boot_epoch();
        Self {
            node_id,
            groups,
            catalog,
            sampling,
            store,
            peers,
            client,
            follower_reads,
            forward_timeout: Duration::from_secs(6),
            epoch,
            connections: AtomicU64::new(0),
            scan_cursors: crate::resp::scan::ScanCursors::new(epoch ^ node_id.rotate_left(32)),
        }
    }

    /// A new client session, unique across nodes and restarts (this node's id, this process's
    /// random epoch, a connection counter). One per RESP connection.
    pub fn new_session(&self) -> ClientSession {
        // Ordering: Relaxed — a unique counter.
        let conn = self.connections.fetch_add(1, Ordering::Relaxed);
        ClientSession {
            id: SessionId {
                node: self.node_id,
                epoch: self.epoch,
                conn,
            },
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Runs `fut` (the commands of one connection) inside `session`: every write it executes
    /// gets a request id of that session and so applies at most once. `fut` must not run two
    /// writes to one group concurrently (a connection's runs are sequential; a multi-key command
    /// runs one write per group): the later id would make the earlier one stale.
    pub async fn in_session<F: std::future::Future>(
        &self,
        session: ClientSession,
        fut: F,
    ) -> F::Output {
        SESSION.scope(session, fut).await
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The raft groups of this node.
    pub fn groups(&self) -> &Arc<Groups> {
        &self.groups
    }

    /// The current route catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load()
    }

    /// Peers by node id (including this node).
    pub fn peers(&self) -> &BTreeMap<u64, PeerAddrs> {
        &self.peers
    }

    /// Whether follower reads are enabled.
    pub fn follower_reads(&self) -> bool {
        self.follower_reads
    }

    /// Local storage (for whole-keyspace reads: `SCAN`, `DBSIZE`).
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The node's `SCAN` cursor table (shared by every connection).
    pub(crate) fn scan_cursors(&self) -> &crate::resp::scan::ScanCursors {
        &self.scan_cursors
    }

    /// Runs `cmd` on group `g`, forwarding to the leader when needed.
    ///
    /// # Errors
    /// [`DispatchError`]; after a `Timeout` or a broken forward the write's outcome is unknown.
    pub async fn execute(
        &self,
        g: GroupId,
        cmd: GroupCommand,
    ) -> Result<GroupReply, DispatchError> {
        // Linearizable follower read: catch up to the leader's read index, then read here.
        // `None` means this node became the leader meanwhile: the leader path below serves it.
        if matches!(cmd, GroupCommand::Read(_) | GroupCommand::ReadExpiry(_))
            && self.follower_reads
            && !self.groups.is_leader(g)
            && let Some(index) = self.leader_read_index(g).await?
        {
            self.groups.wait_applied(g, index).await?;
            match &cmd {
                GroupCommand::ReadExpiry(keys) => {
                    return Ok(GroupReply::Expiry(self.read_local_expiry(keys, false)?));
                }
                GroupCommand::Read(keys) => {
                    return Ok(GroupReply::Read(self.read_local(keys, false)?));
                }
                _ => {}
            }
        }
        // Splits are not deduplicated (the session table does not cover them), so they keep
        // the "retry only when nothing was proposed" rule.
        let cmd = match cmd {
            GroupCommand::Write(op) if !matches!(op, KvOp::Split { .. }) => {
                match SESSION.try_with(ClientSession::next_request) {
                    Ok(id) => GroupCommand::WriteOnce { id, op },
                    Err(_) => GroupCommand::Write(op),
                }
            }
            other => other,
        };
        // With a request id, an attempt of unknown outcome may be retried: the state machine
        // answers a duplicate from its session table instead of applying it again.
        let once = matches!(cmd, GroupCommand::WriteOnce { .. });
        let mut unknown = 0u32;
        let mut retry_unknown = || {
            unknown += 1;
            once && unknown <= MAX_UNKNOWN_RETRIES
        };
        let mut backoff = Duration::from_millis(20);
        for _ in 0..MAX_ATTEMPTS {
            let leader = match self.execute_as_leader(g, &cmd).await {
                Err(DispatchError::Group(GroupError::NotLeader { leader, .. })) => {
                    leader.or(self.groups.leader(g))
                }
                Err(DispatchError::Group(GroupError::Timeout(_))) if retry_unknown() => {
                    self.groups.leader(g)
                }
                other => return other,
            };
            if let Some(leader) = leader.filter(|l| *l != self.node_id) {
                match self.forward(leader, g, &cmd).await {
                    Ok(Ok(reply)) => return Ok(reply),
                    // The leader moved before proposing: nothing happened, try again.
                    Ok(Err(GroupError::NotLeader { .. })) => {}
                    Ok(Err(GroupError::Timeout(_))) if retry_unknown() => {}
                    Ok(Err(e)) => return Err(e.into()),
                    // Connect failed: the peer never saw the request.
                    Err(TransportError::Unreachable { connect: true, .. }) => {}
                    Err(TransportError::Unreachable { .. } | TransportError::Timeout(_))
                        if retry_unknown() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(300));
        }
        Err(DispatchError::NoLeader(g))
    }

    /// Runs `cmd` only if this node leads `g` (the forward endpoint's entry point). Reads are
    /// observed here; writes by the state machines on apply.
    ///
    /// # Errors
    /// [`GroupError::NotLeader`] (nothing done) and the other [`DispatchError`]s.
    pub async fn execute_as_leader(
        &self,
        g: GroupId,
        cmd: &GroupCommand,
    ) -> Result<GroupReply, DispatchError> {
        match cmd {
            GroupCommand::Write(op) => self.propose_write(g, op, None).await,
            GroupCommand::WriteOnce { id, op } => self.propose_write(g, op, Some(*id)).await,
            GroupCommand::Read(keys) => {
                self.groups.read_barrier(g).await?;
                Ok(GroupReply::Read(self.read_local(keys, true)?))
            }
            GroupCommand::ReadExpiry(keys) => {
                self.groups.read_barrier(g).await?;
                Ok(GroupReply::Expiry(self.read_local_expiry(keys, true)?))
            }
        }
    }

    /// Proposes `op` (with its request id, if any) to `g` if this node leads it and waits for
    /// it to be applied.
    async fn propose_write(
        &self,
        g: GroupId,
        op: &KvOp,
        request: Option<RequestId>,
    ) -> Result<GroupReply, DispatchError> {
        if !self.groups.is_leader(g) {
            // Cheap early answer; openraft re-checks inside propose.
            return Err(GroupError::NotLeader {
                group: g,
                leader: self.groups.leader(g),
            }
            .into());
        }
        let req = KvRequest {
            now_unix_ms: now_unix_ms(),
            op: op.clone(),
            request,
        };
        let committed = self.groups.propose(g, req).await?;
        Ok(GroupReply::Write(committed.response))
    }

    /// The read index of `g` from its leader, or `None` when this node is the leader.
    async fn leader_read_index(&self, g: GroupId) -> Result<Option<u64>, DispatchError> {
        let mut backoff = Duration::from_millis(20);
        for _ in 0..MAX_ATTEMPTS {
            match self.groups.leader(g) {
                Some(l) if l == self.node_id => return Ok(None),
                Some(l) => {
                    let Some(peer) = self.peers.get(&l) else {
                        return Err(DispatchError::NoLeader(g));
                    };
                    let path = format!("/kv/{g}/read_index");
                    let answer: Result<Result<u64, GroupError>, TransportError> = self
                        .client
                        .call(&peer.raft, &path, &(), self.forward_timeout)
                        .await;
                    match answer {
                        Ok(Ok(index)) => return Ok(Some(index)),
                        Ok(Err(GroupError::NotLeader { .. }))
                        | Err(TransportError::Unreachable { .. }) => {}
                        Ok(Err(e)) => return Err(e.into()),
                        Err(e) => return Err(e.into()),
                    }
                }
                None => {}
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(300));
        }
        Err(DispatchError::NoLeader(g))
    }

    async fn forward(
        &self,
        leader: u64,
        g: GroupId,
        cmd: &GroupCommand,
    ) -> Result<Result<GroupReply, GroupError>, TransportError> {
        let Some(peer) = self.peers.get(&leader) else {
            return Ok(Err(GroupError::NotLeader {
                group: g,
                leader: None,
            }));
        };
        self.client
            .call_weighed(
                &peer.raft,
                &format!("/kv/{g}/exec"),
                cmd,
                cmd.payload_bytes(),
                self.forward_timeout,
            )
            .await
    }

    fn read_local(
        &self,
        keys: &[Vec<u8>],
        leader: bool,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let now = now_unix_ms();
        let catalog = self.catalog.load();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let v = self.store.get_value(k, now)?;
            let len = v.as_ref().map_or(0, Vec::len);
            self.sampling
                .observe_read(catalog.route_for(k).id, k, len, leader, now as i64);
            out.push(v);
        }
        Ok(out)
    }

    /// The expiries of `keys` on this replica ([`Store::get_expiry`]), each observed as a
    /// read of no value bytes.
    fn read_local_expiry(
        &self,
        keys: &[Vec<u8>],
        leader: bool,
    ) -> Result<Vec<Option<u64>>, StoreError> {
        let now = now_unix_ms();
        let catalog = self.catalog.load();
        keys.iter()
            .map(|k| {
                self.sampling
                    .observe_read(catalog.route_for(k).id, k, 0, leader, now as i64);
                self.store.get_expiry(k, now)
            })
            .collect()
    }

    /// Observes keys returned by a whole-keyspace read (`SCAN`) served by this node.
    pub(crate) fn observe_scan(&self, keys: &[Vec<u8>]) {
        let catalog = self.catalog.load();
        let now = now_unix_ms() as i64;
        for k in keys {
            let route = catalog.route_for(k);
            self.sampling
                .observe_read(route.id, k, 0, self.groups.is_leader(route.group), now);
        }
    }

    /// Splits the route containing `at` at `at` (through the owning group's log), from any
    /// node. Returns the new route id.
    ///
    /// The split runs on the leader of the owning group (here, or forwarded to `/kv/split` on
    /// the leader), which resolves the route from *its* catalog: this node's catalog may lag
    /// behind splits the leader has already applied. A key's group never changes with splits,
    /// so even a stale catalog names the right group. Retries on leader changes, and when the
    /// leader could not be reached before sending, for up to [`SPLIT_DEADLINE`]; blocks for at
    /// most that long plus one forward deadline. Takes no lock across an await.
    ///
    /// # Errors
    /// [`DispatchError`] (no leader in time, a timeout with unknown outcome, a peer failure), or
    /// `Ok(Err(reason))` when the key is already a route boundary (the only refusal).
    pub async fn split_at(&self, at: &[u8]) -> Result<Result<u64, String>, DispatchError> {
        let deadline = tokio::time::Instant::now() + SPLIT_DEADLINE;
        let mut backoff = Duration::from_millis(20);
        loop {
            let g = self.catalog.load().route_for(at).group;
            let answer = match self.groups.leader(g) {
                Some(l) if l == self.node_id => self.split_as_leader(at).await,
                Some(l) => self.forward_split(l, g, at).await,
                None => Err(GroupError::NotLeader {
                    group: g,
                    leader: None,
                }
                .into()),
            };
            match answer {
                // Nothing was proposed: try again where the leader is now.
                Err(DispatchError::Group(GroupError::NotLeader { .. }))
                | Err(DispatchError::Forward(TransportError::Unreachable {
                    connect: true, ..
                })) => {}
                other => return other,
            }
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(DispatchError::NoLeader(g));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(300));
        }
    }

    /// The leader side of [`Dispatcher::split_at`]: resolves the route containing `at` from this
    /// node's catalog and proposes the split, if this node leads the owning group.
    ///
    /// When the split entry is refused at apply because an earlier split (committed but not yet
    /// applied here when the route was resolved) changed the route of `at`, it resolves again
    /// and proposes again: the refusal was applied after every earlier entry, so the catalog now
    /// shows them.
    ///
    /// # Errors
    /// [`GroupError::NotLeader`] (nothing proposed) and the other [`DispatchError`]s;
    /// `Ok(Err(reason))` when `at` already starts a route.
    pub(crate) async fn split_as_leader(
        &self,
        at: &[u8],
    ) -> Result<Result<u64, String>, DispatchError> {
        let mut last_refusal = String::new();
        for _ in 0..SPLIT_RESOLVE_ATTEMPTS {
            let route = self.catalog.load().route_for(at).clone();
            if route.start == at {
                return Ok(Err(format!(
                    "split key {:?} is already the start of route {}",
                    String::from_utf8_lossy(at),
                    route.id
                )));
            }
            let op = KvOp::Split {
                route: route.id,
                at: at.to_vec(),
            };
            match self
                .execute_as_leader(route.group, &GroupCommand::Write(op))
                .await?
            {
                GroupReply::Write(KvResponse::Split { right_id }) => return Ok(Ok(right_id)),
                GroupReply::Write(KvResponse::SplitRefused(why)) => {
                    if self.catalog.load().route_for(at).id == route.id {
                        return Ok(Err(why));
                    }
                    last_refusal = why;
                }
                other => return Ok(Err(format!("unexpected answer {other:?}"))),
            }
        }
        Ok(Err(last_refusal))
    }

    async fn forward_split(
        &self,
        leader: u64,
        g: GroupId,
        at: &[u8],
    ) -> Result<Result<u64, String>, DispatchError> {
        let Some(peer) = self.peers.get(&leader) else {
            return Err(GroupError::NotLeader {
                group: g,
                leader: None,
            }
            .into());
        };
        let req = crate::internal::SplitRequest { at: at.to_vec() };
        let answer: Result<Result<u64, String>, GroupError> = self
            .client
            .call(&peer.raft, "/kv/split", &req, self.forward_timeout)
            .await?;
        Ok(answer?)
    }

    /// Groups `keys` by owning group, remembering each key's position.
    pub(crate) fn partition<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> BTreeMap<GroupId, Vec<usize>> {
        let catalog = self.catalog.load();
        let mut by_group: BTreeMap<GroupId, Vec<usize>> = BTreeMap::new();
        for (i, k) in keys.into_iter().enumerate() {
            by_group
                .entry(catalog.route_for(k).group)
                .or_default()
                .push(i);
        }
        by_group
    }
}
