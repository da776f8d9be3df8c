//! The replicated state machine of one group: its share of the `kv` keyspace plus the routes it
//! owns.
//!
//! Applying a batch of entries writes one fjall batch (values + the applied log id), so a crash
//! leaves either all or none of a batch; entries after the persisted applied id are re-applied
//! from the log at restart. A split entry is applied under the catalog's write lock and persists
//! the whole catalog in the same batch as its applied id (see `routing::split`).
//!
//! Snapshots are built from a fjall MVCC snapshot taken when openraft asks for the builder, so
//! building never blocks applying and always matches the applied id it reports.
//!
//! Applying is total and deterministic: an entry the store cannot hold (an empty or oversized
//! key, a value or `APPEND` result past [`MAX_VALUE_BYTES`], a malformed batch) is answered with
//! [`KvResponse::Rejected`] on every replica and changes nothing; only a genuine storage error
//! fails the apply (a `StorageError`, never a panic), so a node never crash-loops on its log.
//!
//! Writes carrying a request id go through the group's [`SessionTable`] (exactly-once), and
//! every applied, non-duplicate write is observed by KeyViz here, on every replica, with the
//! entry's (group, term) and proposer timestamp, after its batch is in fjall (see `counting`).

use std::collections::{BTreeMap, VecDeque};
use std::io::Cursor;
use std::sync::Arc;

use fjall::Readable;
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageError, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::log_store::LogStore;
use super::sessions::{Check, SessionRecord, SessionTable, session_id_bytes, session_id_from_key};
use super::types::{KvOp, KvRequest, KvResponse, SessionId, SetCond, TypeConfig, entries_bytes};
use crate::counting::{self, CountFence};
use crate::leaders::MAX_TERMS_PER_GROUP;
use crate::limits::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::routing::split::{SharedCatalog, right_route_id};
use crate::routing::{Catalog, Route};
use crate::sampling::Sampling;
use crate::store::{Store, StoreError, StoredValue, from_json, meta_key, to_json};

type NodeId = u64;
type Membership = StoredMembership<NodeId, openraft::BasicNode>;

/// Persisted under `raft_meta/group/applied`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
}

/// What a snapshot of one group carries.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotPayload {
    routes: Vec<Route>,
    /// Keys and their encoded [`StoredValue`]s.
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The session table at the snapshot's applied id (exactly-once survives snapshots).
    #[serde(default)]
    sessions: Vec<SessionRecord>,
}

/// `raft_meta` record name prefix of a group's sessions: `s/` ++ node ++ epoch ++ conn (8 B BE
/// each); short, because one record is written per applied write.
const SESSION_PREFIX: &str = "s/";

fn session_key(group: u64, s: &SessionId) -> Vec<u8> {
    let mut k = meta_key(group, SESSION_PREFIX);
    k.extend_from_slice(&session_id_bytes(s));
    k
}

/// Decodes one persisted session record (key and value).
fn session_record(key: &[u8], value: &[u8]) -> Result<SessionRecord, StoreError> {
    let session = session_id_from_key(key).ok_or(StoreError::Corrupt {
        what: "session key",
        detail: format!("{} bytes", key.len()),
    })?;
    SessionRecord::decode_value(session, value)
}

/// Error text of an `APPEND` or `SET` whose value would pass [`MAX_VALUE_BYTES`] (Redis's).
pub(crate) const TOO_LARGE: &str = "string exceeds maximum allowed size (proto-max-bulk-len)";

/// Why `key` cannot be stored (fjall keys are 1..=65 535 bytes), if it cannot.
fn key_refusal(key: &[u8]) -> Option<String> {
    if key.is_empty() {
        Some("empty keys are not supported".to_owned())
    } else if key.len() > MAX_KEY_BYTES {
        Some(format!(
            "key exceeds maximum allowed size ({MAX_KEY_BYTES} bytes)"
        ))
    } else {
        None
    }
}

/// Whether `key` can exist in the `kv` keyspace (reads of other keys find nothing).
pub(crate) fn storable_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_BYTES
}

/// An applied write waiting to be observed once its batch is in fjall.
struct Applied {
    term: u64,
    at_unix_ms: u64,
    op: KvOp,
}

/// The last built or installed snapshot, shared by the state machine and its builders.
type CurrentSnapshot = Arc<Mutex<Option<(SnapshotMeta<NodeId, openraft::BasicNode>, Vec<u8>)>>>;

/// Key under which the catalog is persisted (global, not per group).
pub(crate) const CATALOG_KEY: &[u8] = b"catalog";

/// Loads the persisted catalog, if any.
pub(crate) fn load_catalog(store: &Store) -> Result<Option<Catalog>, StoreError> {
    match store.meta.get(CATALOG_KEY)? {
        None => Ok(None),
        Some(raw) => Ok(Some(from_json("catalog", &raw)?)),
    }
}

/// The state machine of one group.
pub(crate) struct StateMachine {
    store: Store,
    group: u64,
    catalog: Arc<SharedCatalog>,
    applied: AppliedState,
    current: CurrentSnapshot,
    sessions: SessionTable,
    sampling: Sampling,
    fence: Arc<CountFence>,
    /// Terms of this group whose leader is persisted, ascending (at most
    /// [`MAX_TERMS_PER_GROUP`]); the last one is the newest term seen in the log.
    leader_terms: VecDeque<u64>,
    /// (term, leader node) records to write with the next batch.
    leader_writes: Vec<(u64, NodeId)>,
}

/// `raft_meta` record name prefix of a group's term leaders: `l/` ++ term (8 B BE) → the
/// leader's node id (8 B BE). One record per term, written with the batch that applied the
/// term's first entry, so a restarted node still names the leaders of its history.
const LEADER_PREFIX: &str = "l/";

fn leader_key(group: u64, term: u64) -> Vec<u8> {
    let mut k = meta_key(group, LEADER_PREFIX);
    k.extend_from_slice(&term.to_be_bytes());
    k
}

/// Loads group `group`'s persisted term leaders, ascending by term, feeding `sampling`'s
/// registry. A malformed record (never written by this code) is skipped with a warning: it
/// only names a node in the UI and must not stop the node from starting.
fn load_leaders(
    store: &Store,
    group: u64,
    sampling: &Sampling,
) -> Result<VecDeque<u64>, StoreError> {
    let prefix = meta_key(group, LEADER_PREFIX);
    let mut terms = Vec::new();
    for item in store.meta.prefix(&prefix) {
        let (k, v) = item.into_inner()?;
        let term = k
            .get(prefix.len()..)
            .and_then(|t| <[u8; 8]>::try_from(t).ok())
            .map(u64::from_be_bytes);
        let node = <[u8; 8]>::try_from(&v[..]).ok().map(u64::from_be_bytes);
        match (term, node) {
            (Some(t), Some(n)) => {
                sampling.observe_leader(group, t, n);
                terms.push(t);
            }
            _ => tracing::warn!(group, "malformed term-leader record skipped"),
        }
    }
    terms.sort_unstable();
    let skip = terms.len().saturating_sub(MAX_TERMS_PER_GROUP);
    Ok(terms.into_iter().skip(skip).collect())
}

fn sm_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

impl StateMachine {
    /// Opens group `group`'s state machine: its applied state and session table. Observes
    /// applied writes into `sampling` under `fence`.
    pub(crate) fn open(
        store: Store,
        group: u64,
        catalog: Arc<SharedCatalog>,
        sampling: Sampling,
        fence: Arc<CountFence>,
    ) -> Result<Self, StoreError> {
        let applied = match store.meta.get(meta_key(group, "applied"))? {
            None => AppliedState::default(),
            Some(raw) => from_json("applied state", &raw)?,
        };
        let mut records = Vec::new();
        for item in store.meta.prefix(meta_key(group, SESSION_PREFIX)) {
            let (k, v) = item.into_inner()?;
            records.push(session_record(&k, &v)?);
        }
        let mut sessions = SessionTable::new();
        sessions.replace(records);
        let leader_terms = load_leaders(&store, group, &sampling)?;
        Ok(Self {
            store,
            group,
            catalog,
            applied,
            current: Arc::default(),
            leader_terms,
            leader_writes: Vec::new(),
            sessions,
            sampling,
            fence,
        })
    }

    /// Notes the leader named by an applied (or installed) log id: the first entry of a newer
    /// term names its leader, which is published to the registry now and persisted with the
    /// next batch. Entries apply in log order, so terms never go back.
    fn note_leader(&mut self, log_id: &LogId<NodeId>) {
        let term = log_id.leader_id.term;
        if self.leader_terms.back().is_some_and(|&t| t >= term) {
            return;
        }
        let node = log_id.leader_id.node_id;
        self.leader_terms.push_back(term);
        self.leader_writes.push((term, node));
        self.sampling.observe_leader(self.group, term, node);
    }

    /// Re-observes the writes a crash lost: the entries in (watermark, applied] of the log,
    /// minus duplicates and entries covered by an installed snapshot, with their own terms and
    /// proposer timestamps; then sets the fence's watermark to the applied index. Call once,
    /// after open and before the group starts applying. Returns how many entries were
    /// re-observed.
    ///
    /// # Errors
    /// [`StoreError`] when the log or the meta records cannot be read.
    pub(crate) fn recount_from_log(&self, log: &LogStore) -> Result<u64, StoreError> {
        let applied = self.applied.last_applied.map_or(0, |l| l.index);
        if self.sampling.sampler().is_none() {
            self.fence.advance(self.group, applied);
            return Ok(0);
        }
        let watermark = counting::load_watermark(&self.store, self.group)?.unwrap_or(0);
        let floor = counting::load_floor(&self.store, self.group)?.unwrap_or(0);
        let start = watermark.max(floor).saturating_add(1);
        let mut recounted = 0u64;
        let catalog = self.catalog.load();
        let group = self.group;
        let sampling = &self.sampling;
        let mut next = start;
        let outcome = self.fence.observe_applied(group, applied, || {
            while next <= applied {
                // Chunks bound the memory of a long tail (entries can be large).
                let end = next.saturating_add(256).min(applied.saturating_add(1));
                let entries = log.read_range(next, end)?;
                let mut dups = std::collections::BTreeSet::new();
                let lo = counting::dup_key(group, next);
                let hi = counting::dup_key(group, end);
                for item in self.store.meta.range(lo..hi) {
                    let k = item.key()?;
                    if let Some(tail) = k.get(k.len().saturating_sub(8)..)
                        && let Ok(b) = <[u8; 8]>::try_from(tail)
                    {
                        dups.insert(u64::from_be_bytes(b));
                    }
                }
                for e in entries {
                    if let EntryPayload::Normal(req) = &e.payload
                        && !dups.contains(&e.log_id.index)
                    {
                        observe_op(
                            sampling,
                            &catalog,
                            group,
                            e.log_id.leader_id.term,
                            req.now_unix_ms,
                            &req.op,
                        );
                        recounted += 1;
                    }
                }
                next = end;
            }
            Ok::<(), StoreError>(())
        });
        outcome?;
        if recounted > 0 {
            tracing::info!(
                group,
                from = start,
                to = applied,
                entries = recounted,
                "keyviz: re-counted applied writes not covered by a flushed column"
            );
        }
        Ok(recounted)
    }

    /// Observes `done` (applied and in fjall) and raises the watermark to the applied index.
    fn observe(&self, done: &mut Vec<Applied>) {
        let applied = self.applied.last_applied.map_or(0, |l| l.index);
        if done.is_empty() || self.sampling.sampler().is_none() {
            done.clear();
            self.fence.advance(self.group, applied);
            return;
        }
        let catalog = self.catalog.load();
        self.fence.observe_applied(self.group, applied, || {
            for a in done.iter() {
                observe_op(
                    &self.sampling,
                    &catalog,
                    self.group,
                    a.term,
                    a.at_unix_ms,
                    &a.op,
                );
            }
        });
        done.clear();
    }

    fn applied_record(&self) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        Ok((
            meta_key(self.group, "applied"),
            to_json("applied state", &self.applied)?,
        ))
    }

    fn read(
        &self,
        pending: &BTreeMap<Vec<u8>, Option<StoredValue>>,
        key: &[u8],
        now: u64,
    ) -> Result<Option<StoredValue>, StoreError> {
        if !storable_key(key) {
            return Ok(None);
        }
        let v = match pending.get(key) {
            Some(v) => v.clone(),
            None => match self.store.kv.get(key)? {
                None => None,
                Some(raw) => Some(StoredValue::decode(&raw)?),
            },
        };
        Ok(v.and_then(|v| v.live(now)))
    }

    fn apply_op(
        &self,
        pending: &mut BTreeMap<Vec<u8>, Option<StoredValue>>,
        now: u64,
        op: &KvOp,
    ) -> Result<KvResponse, StoreError> {
        Ok(match op {
            KvOp::Set {
                key,
                value,
                expire_at_unix_ms,
                cond,
            } => {
                if let Some(why) = key_refusal(key) {
                    return Ok(KvResponse::Rejected(why));
                }
                if value.len() > MAX_VALUE_BYTES {
                    return Ok(KvResponse::Rejected(TOO_LARGE.to_owned()));
                }
                let exists = self.read(pending, key, now)?.is_some();
                let allowed = match cond {
                    SetCond::Always => true,
                    SetCond::IfAbsent => !exists,
                    SetCond::IfPresent => exists,
                };
                if !allowed {
                    return Ok(KvResponse::Nil);
                }
                let v = StoredValue {
                    expire_at_ms: *expire_at_unix_ms,
                    data: value.clone(),
                };
                pending.insert(key.clone(), Some(v));
                KvResponse::Ok
            }
            KvOp::MSet { pairs } => {
                // All or nothing: refuse the whole MSET before writing any pair.
                for (k, v) in pairs {
                    if let Some(why) = key_refusal(k) {
                        return Ok(KvResponse::Rejected(why));
                    }
                    if v.len() > MAX_VALUE_BYTES {
                        return Ok(KvResponse::Rejected(TOO_LARGE.to_owned()));
                    }
                }
                for (k, v) in pairs {
                    pending.insert(
                        k.clone(),
                        Some(StoredValue {
                            expire_at_ms: 0,
                            data: v.clone(),
                        }),
                    );
                }
                KvResponse::Ok
            }
            KvOp::Del { keys } => {
                let mut n = 0;
                for k in keys {
                    // A key that cannot be stored cannot exist: nothing to delete.
                    if !storable_key(k) {
                        continue;
                    }
                    if self.read(pending, k, now)?.is_some() {
                        n += 1;
                    }
                    pending.insert(k.clone(), None);
                }
                KvResponse::Int(n)
            }
            KvOp::IncrBy { key, delta } => {
                if let Some(why) = key_refusal(key) {
                    return Ok(KvResponse::Rejected(why));
                }
                let cur = self.read(pending, key, now)?;
                let (old, expire) = match &cur {
                    None => (0i64, 0),
                    Some(v) => match std::str::from_utf8(&v.data)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                    {
                        Some(n) => (n, v.expire_at_ms),
                        None => return Ok(KvResponse::NotInteger),
                    },
                };
                let Some(new) = old.checked_add(*delta) else {
                    return Ok(KvResponse::Overflow);
                };
                pending.insert(
                    key.clone(),
                    Some(StoredValue {
                        expire_at_ms: expire,
                        data: new.to_string().into_bytes(),
                    }),
                );
                KvResponse::Int(new)
            }
            KvOp::Append { key, value } => {
                if let Some(why) = key_refusal(key) {
                    return Ok(KvResponse::Rejected(why));
                }
                let mut v = self.read(pending, key, now)?.unwrap_or(StoredValue {
                    expire_at_ms: 0,
                    data: Vec::new(),
                });
                if v.data.len().saturating_add(value.len()) > MAX_VALUE_BYTES {
                    return Ok(KvResponse::Rejected(TOO_LARGE.to_owned()));
                }
                v.data.extend_from_slice(value);
                let len = v.data.len() as i64;
                pending.insert(key.clone(), Some(v));
                KvResponse::Int(len)
            }
            KvOp::Expire {
                key,
                expire_at_unix_ms,
                cond,
            } => {
                let Some(mut v) = self.read(pending, key, now)? else {
                    return Ok(KvResponse::Int(0));
                };
                let at = (*expire_at_unix_ms).max(1);
                if !cond.allows(v.expire_at_ms, at) {
                    return Ok(KvResponse::Int(0));
                }
                if at <= now {
                    // An instant already past deletes the key, as in Redis.
                    pending.insert(key.clone(), None);
                } else {
                    v.expire_at_ms = at;
                    pending.insert(key.clone(), Some(v));
                }
                KvResponse::Int(1)
            }
            KvOp::Persist { key } => match self.read(pending, key, now)? {
                Some(mut v) if v.expire_at_ms != 0 => {
                    v.expire_at_ms = 0;
                    pending.insert(key.clone(), Some(v));
                    KvResponse::Int(1)
                }
                _ => KvResponse::Int(0),
            },
            KvOp::Batch { ops } => {
                let mut out = Vec::with_capacity(ops.len());
                for op in ops {
                    out.push(match op {
                        KvOp::Split { .. } | KvOp::Batch { .. } => {
                            KvResponse::Rejected("splits and batches cannot be batched".into())
                        }
                        _ => self.apply_op(pending, now, op)?,
                    });
                }
                KvResponse::Batch(out)
            }
            // Handled by the caller; reaching here means a malformed entry.
            KvOp::Split { .. } => KvResponse::Rejected("a split cannot be applied here".into()),
        })
    }

    /// Writes the pending values, the session changes, the duplicate markers and the applied
    /// id in one fjall batch.
    fn commit(
        &mut self,
        pending: &mut BTreeMap<Vec<u8>, Option<StoredValue>>,
        dups: &mut Vec<u64>,
    ) -> Result<(), StoreError> {
        let mut batch = self.store.batch();
        for (k, v) in std::mem::take(pending) {
            match v {
                Some(v) => batch.insert(&self.store.kv, k, v.encode()),
                None => batch.remove(&self.store.kv, k),
            }
        }
        let (write, delete) = self.sessions.take_changes();
        for r in &write {
            batch.insert(
                &self.store.meta,
                session_key(self.group, &r.session),
                r.encode_value()?,
            );
        }
        for s in &delete {
            batch.remove(&self.store.meta, session_key(self.group, s));
        }
        for i in dups.drain(..) {
            batch.insert(&self.store.meta, counting::dup_key(self.group, i), [1u8]);
        }
        for (term, node) in self.leader_writes.drain(..) {
            batch.insert(
                &self.store.meta,
                leader_key(self.group, term),
                node.to_be_bytes(),
            );
        }
        while self.leader_terms.len() > MAX_TERMS_PER_GROUP {
            if let Some(old) = self.leader_terms.pop_front() {
                batch.remove(&self.store.meta, leader_key(self.group, old));
            }
        }
        let (mk, mv) = self.applied_record()?;
        batch.insert(&self.store.meta, mk, mv);
        batch.commit()?;
        Ok(())
    }

    fn apply_split(
        &mut self,
        log_id: LogId<NodeId>,
        route: u64,
        at: &[u8],
    ) -> Result<KvResponse, StoreError> {
        if let Some(why) = key_refusal(at) {
            return Ok(KvResponse::SplitRefused(why));
        }
        let owned = self.catalog.load().route(route).map(|r| r.group) == Some(self.group);
        if !owned {
            return Ok(KvResponse::SplitRefused(format!(
                "route {route} is not in group {}",
                self.group
            )));
        }
        let right_id = right_route_id(self.group, log_id.index);
        let (mk, mv) = self.applied_record()?;
        let store = self.store.clone();
        let result =
            self.catalog
                .split(route, at, right_id, |catalog| -> Result<(), StoreError> {
                    let mut batch = store.batch();
                    batch.insert(
                        &store.meta,
                        CATALOG_KEY.to_vec(),
                        to_json("catalog", catalog)?,
                    );
                    batch.insert(&store.meta, mk, mv);
                    Ok(batch.commit()?)
                })?;
        Ok(match result {
            Ok(right) => KvResponse::Split { right_id: right.id },
            Err(e) => KvResponse::SplitRefused(e.to_string()),
        })
    }

    /// Applies `entries` in order and commits their effects in fjall batches (one, or one
    /// more per split); synchronous, called by [`RaftStateMachine::apply`] off the worker for
    /// big entries. Takes the group's KeyViz fence mutex (`CountFence`) once per commit, and
    /// the catalog's split serialisation for a split; holds neither across entries.
    fn apply_now(
        &mut self,
        entries: Vec<Entry<TypeConfig>>,
    ) -> Result<Vec<KvResponse>, StoreError> {
        let mut pending = BTreeMap::new();
        let mut dups = Vec::new();
        let mut done = Vec::new();
        let mut out = Vec::new();
        for entry in entries {
            let is_split = matches!(
                &entry.payload,
                EntryPayload::Normal(KvRequest {
                    op: KvOp::Split { .. },
                    ..
                })
            );
            if is_split {
                // Earlier entries of this batch must be on disk before the split's applied id,
                // and observed under the routes they were applied with.
                self.commit(&mut pending, &mut dups)?;
                self.observe(&mut done);
            }
            self.applied.last_applied = Some(entry.log_id);
            self.note_leader(&entry.log_id);
            let resp = match entry.payload {
                EntryPayload::Blank => KvResponse::Internal,
                EntryPayload::Membership(m) => {
                    self.applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    KvResponse::Internal
                }
                EntryPayload::Normal(req) => {
                    self.sessions.expire(req.now_unix_ms);
                    match &req.op {
                        KvOp::Split { route, at } => self.apply_split(entry.log_id, *route, at)?,
                        _ => match req.request.map(|id| (id, self.sessions.check(&id))) {
                            Some((_, Check::Duplicate(cached))) => {
                                dups.push(entry.log_id.index);
                                cached
                            }
                            Some((_, Check::Stale)) => {
                                dups.push(entry.log_id.index);
                                KvResponse::Rejected(
                                    "stale request id: the session has moved on".into(),
                                )
                            }
                            fresh => {
                                let resp = self.apply_op(&mut pending, req.now_unix_ms, &req.op)?;
                                if let Some((id, _)) = fresh {
                                    self.sessions.record(id, req.now_unix_ms, resp.clone());
                                }
                                done.push(Applied {
                                    term: entry.log_id.leader_id.term,
                                    at_unix_ms: req.now_unix_ms,
                                    op: req.op,
                                });
                                resp
                            }
                        },
                    }
                }
            };
            out.push(resp);
        }
        self.commit(&mut pending, &mut dups)?;
        self.observe(&mut done);
        Ok(out)
    }

    fn build(&self) -> Result<(SnapshotMeta<NodeId, openraft::BasicNode>, Vec<u8>), StoreError> {
        let snap = self.store.snapshot();
        let routes: Vec<Route> = self.catalog.load().routes_of(self.group).cloned().collect();
        let mut pairs = Vec::new();
        for r in &routes {
            let iter = match &r.end {
                Some(end) => snap.range(&self.store.kv, r.start.clone()..end.clone()),
                None => snap.range(&self.store.kv, r.start.clone()..),
            };
            for item in iter {
                let (k, v) = item.into_inner()?;
                pairs.push((k.to_vec(), v.to_vec()));
            }
        }
        let mut sessions = Vec::new();
        for item in snap.prefix(&self.store.meta, meta_key(self.group, SESSION_PREFIX)) {
            let (k, v) = item.into_inner()?;
            sessions.push(session_record(&k, &v)?);
        }
        let data = to_json(
            "snapshot",
            &SnapshotPayload {
                routes,
                pairs,
                sessions,
            },
        )?;
        let last = self.applied.last_applied;
        let id = match last {
            Some(l) => format!("{}-{}-{}", self.group, l.leader_id.term, l.index),
            None => format!("{}-empty", self.group),
        };
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.applied.membership.clone(),
            snapshot_id: id,
        };
        Ok((meta, data))
    }
}

/// Builds a snapshot from the state captured when openraft asked for the builder.
pub(crate) struct SnapshotBuilder {
    built: Result<(SnapshotMeta<NodeId, openraft::BasicNode>, Vec<u8>), String>,
    current: CurrentSnapshot,
    store: Store,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (meta, data) = self
            .built
            .clone()
            .map_err(|e| StorageIOError::read_state_machine(&std::io::Error::other(e)))?;
        // The log is purged after a snapshot; make the applied state it replaces durable first.
        self.store.sync().map_err(sm_err)?;
        *self.current.lock() = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<KvResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        // Copying, encoding and writing big values takes long enough to starve the other
        // groups' timers on this worker (docs/STORE.md, "Big entries and the other groups").
        let bytes = entries_bytes(&entries);
        keyviz_admin::peer::off_worker(bytes, || self.apply_now(entries)).map_err(sm_err)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            built: self.build().map_err(|e| e.to_string()),
            current: self.current.clone(),
            store: self.store.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let payload: SnapshotPayload = from_json("snapshot", &data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.applied = AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        // The snapshot's last entry names its term's leader (persisted with the next batch);
        // the terms it covers before that are not named on this node.
        if let Some(last) = &meta.last_log_id {
            self.note_leader(last);
        }
        let (mk, mv) = self.applied_record().map_err(sm_err)?;
        let store = self.store.clone();
        let group = self.group;
        let snapshot_index = meta.last_log_id.map_or(0, |l| l.index);
        let sessions = &payload.sessions;
        let old_routes: Vec<Route> = self.catalog.load().routes_of(self.group).cloned().collect();
        self.catalog
            .replace_group(
                self.group,
                payload.routes,
                |catalog| -> Result<(), StoreError> {
                    let mut batch = store.batch();
                    for r in &old_routes {
                        let iter = match &r.end {
                            Some(end) => store.kv.range(r.start.clone()..end.clone()),
                            None => store.kv.range(r.start.clone()..),
                        };
                        for item in iter {
                            batch.remove(&store.kv, item.key()?);
                        }
                    }
                    for (k, v) in &payload.pairs {
                        batch.insert(&store.kv, k.clone(), v.clone());
                    }
                    for item in store.meta.prefix(meta_key(group, SESSION_PREFIX)) {
                        batch.remove(&store.meta, item.key()?);
                    }
                    for r in sessions {
                        batch.insert(
                            &store.meta,
                            session_key(group, &r.session),
                            r.encode_value()?,
                        );
                    }
                    // Snapshot installs are not counted here (the replicas that applied the
                    // entries have them); a restart must not re-count below this index either.
                    let (fk, fv) = counting::floor_record(group, snapshot_index);
                    batch.insert(&store.meta, fk, fv);
                    batch.insert(
                        &store.meta,
                        CATALOG_KEY.to_vec(),
                        to_json("catalog", catalog)?,
                    );
                    batch.insert(&store.meta, mk, mv);
                    batch.commit()?;
                    store.sync()
                },
            )
            .map_err(sm_err)?;
        self.sessions.replace(payload.sessions);
        self.fence.advance(self.group, snapshot_index);
        *self.current.lock() = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.current.lock().clone().map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Observes every key written by `op` (an entry of `group` appended in `term`, proposed at
/// `at_unix_ms`) on the route the catalog gives it.
fn observe_op(
    sampling: &Sampling,
    catalog: &Catalog,
    group: u64,
    term: u64,
    at_unix_ms: u64,
    op: &KvOp,
) {
    // The proposer's timestamp, not this replica's clock: every replica (and a re-count after
    // a crash) files the write in the window it was proposed in, so the cluster merge's max per
    // (group, term) compares like with like.
    let at = i64::try_from(at_unix_ms).unwrap_or(i64::MAX);
    counting::for_each_write(op, &mut |key, len| {
        sampling.observe_write(catalog.route_for(key).id, key, len, group, term, at);
    });
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;
    use openraft::storage::RaftLogStorage;

    use super::*;
    use crate::raft::types::{ExpireCond, RequestId};
    use crate::routing::Layout;
    use crate::store::log_key;

    fn session(conn: u64) -> SessionId {
        SessionId {
            node: 1,
            epoch: 42,
            conn,
        }
    }

    fn req(op: KvOp, id: Option<(u64, u64)>) -> KvRequest {
        KvRequest {
            now_unix_ms: 1_000,
            op,
            request: id.map(|(conn, seq)| RequestId {
                session: session(conn),
                seq,
            }),
        }
    }

    fn entry(index: u64, r: KvRequest) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(r),
        }
    }

    fn incr(key: &str) -> KvOp {
        KvOp::IncrBy {
            key: key.as_bytes().to_vec(),
            delta: 1,
        }
    }

    fn open(store: &Store, sampling: Sampling) -> StateMachine {
        let catalog = Catalog::from_layout(&Layout::even(1)).expect("layout");
        let catalog = Arc::new(SharedCatalog::new(catalog, sampling.clone()));
        let fence = Arc::new(CountFence::new([1]));
        StateMachine::open(store.clone(), 1, catalog, sampling, fence).expect("open")
    }

    async fn apply_one(sm: &mut StateMachine, e: Entry<TypeConfig>) -> KvResponse {
        let mut out = sm.apply([e]).await.expect("apply");
        out.pop().expect("one response")
    }

    #[tokio::test]
    async fn a_duplicate_request_id_changes_state_once_and_returns_the_cached_reply() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), false).expect("store");
        let mut sm = open(&store, Sampling::disabled());
        let first = apply_one(&mut sm, entry(1, req(incr("n"), Some((1, 1))))).await;
        assert_eq!(first, KvResponse::Int(1));
        let again = apply_one(&mut sm, entry(2, req(incr("n"), Some((1, 1))))).await;
        assert_eq!(again, KvResponse::Int(1), "the cached reply");
        assert_eq!(store.get_value(b"n", 0).expect("get"), Some(b"1".to_vec()));
        let next = apply_one(&mut sm, entry(3, req(incr("n"), Some((1, 2))))).await;
        assert_eq!(next, KvResponse::Int(2));
        let stale = apply_one(&mut sm, entry(4, req(incr("n"), Some((1, 1))))).await;
        assert!(matches!(stale, KvResponse::Rejected(_)), "{stale:?}");
        let other = apply_one(&mut sm, entry(5, req(incr("n"), Some((2, 1))))).await;
        assert_eq!(other, KvResponse::Int(3), "another session is independent");
        let no_id = apply_one(&mut sm, entry(6, req(incr("n"), None))).await;
        assert_eq!(no_id, KvResponse::Int(4));
        assert_eq!(store.get_value(b"n", 0).expect("get"), Some(b"4".to_vec()));

        // The table was persisted with the applies: a reopened state machine still dedups.
        drop(sm);
        let mut sm = open(&store, Sampling::disabled());
        let after = apply_one(&mut sm, entry(7, req(incr("n"), Some((1, 2))))).await;
        assert_eq!(after, KvResponse::Int(2), "cached across a restart");
        assert_eq!(store.get_value(b"n", 0).expect("get"), Some(b"4".to_vec()));
    }

    #[tokio::test]
    async fn expire_follows_its_condition_a_past_instant_deletes_and_persist_clears() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), false).expect("store");
        let mut sm = open(&store, Sampling::disabled());
        let expire = |at: u64, cond: ExpireCond| KvOp::Expire {
            key: b"k".to_vec(),
            expire_at_unix_ms: at,
            cond,
        };
        let persist = || KvOp::Persist { key: b"k".to_vec() };
        // The entries' time is 1 000 ms (`req`).
        let steps: [(KvOp, i64, u64); 8] = [
            (expire(5_000, ExpireCond::Always), 0, 0), // no key yet
            (incr("k"), 1, 0),
            (expire(5_000, ExpireCond::IfSome), 0, 0), // XX: none to replace
            (expire(5_000, ExpireCond::IfNone), 1, 5_000),
            (expire(4_000, ExpireCond::Later), 0, 5_000), // GT: not later
            (expire(6_000, ExpireCond::Later), 1, 6_000),
            (expire(2_000, ExpireCond::Earlier), 1, 2_000),
            (persist(), 1, 0),
        ];
        for (i, (op, want, expiry)) in steps.into_iter().enumerate() {
            let r = apply_one(&mut sm, entry(i as u64 + 1, req(op.clone(), None))).await;
            if i == 1 {
                assert_eq!(r, KvResponse::Int(1), "INCR creates the key");
            } else {
                assert_eq!(r, KvResponse::Int(want), "step {i}: {op:?}");
            }
            let now = 1_000;
            let got = store.get_expiry(b"k", now).expect("read");
            if i >= 1 {
                assert_eq!(got, Some(expiry), "step {i}: the stored expiry");
            }
        }
        let again = apply_one(&mut sm, entry(9, req(persist(), None))).await;
        assert_eq!(again, KvResponse::Int(0), "nothing left to persist");
        let lt_none = apply_one(
            &mut sm,
            entry(10, req(expire(9_000, ExpireCond::Earlier), None)),
        )
        .await;
        assert_eq!(
            lt_none,
            KvResponse::Int(1),
            "LT: no expiry counts as infinite"
        );
        let past = apply_one(
            &mut sm,
            entry(11, req(expire(500, ExpireCond::Always), None)),
        )
        .await;
        assert_eq!(past, KvResponse::Int(1));
        assert_eq!(
            store.get_value(b"k", 0).expect("get"),
            None,
            "a past instant deletes"
        );
    }

    #[tokio::test]
    async fn each_terms_leader_is_named_from_the_log_ids_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), false).expect("store");
        let sampling = Sampling::disabled();
        let mut sm = open(&store, sampling.clone());
        let at = |term: u64, node: u64, index: u64| {
            LogId::new(CommittedLeaderId::new(term, node), index)
        };
        // Node 1 leads term 3 (a blank entry opens it, then a write), node 2 takes over in term 5.
        let entries = vec![
            Entry {
                log_id: at(3, 1, 1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: at(3, 1, 2),
                payload: EntryPayload::Normal(req(incr("n"), None)),
            },
            Entry {
                log_id: at(5, 2, 3),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: at(5, 2, 4),
                payload: EntryPayload::Normal(req(incr("n"), None)),
            },
        ];
        sm.apply(entries).await.expect("apply");
        assert_eq!(
            sampling.leaders().lookup(&[(1, 3), (1, 4), (1, 5)]),
            vec![(1, 3, 1), (1, 5, 2)],
            "term 4 had no entry here, so it is not named"
        );
        // A restarted node reads them back from raft_meta, with no entry applied again.
        drop(sm);
        let fresh = Sampling::disabled();
        let mut sm = open(&store, fresh.clone());
        assert_eq!(
            fresh.leaders().lookup(&[(1, 3), (1, 5)]),
            vec![(1, 3, 1), (1, 5, 2)]
        );
        // The next term is appended after them, never a lower one.
        apply_one(&mut sm, entry(5, req(incr("n"), None))).await;
        assert!(
            fresh.leaders().lookup(&[(1, 1)]).is_empty(),
            "an entry of an older term names no one"
        );
        sm.apply([Entry {
            log_id: at(8, 3, 6),
            payload: EntryPayload::Blank,
        }])
        .await
        .expect("apply");
        assert_eq!(fresh.leaders().lookup(&[(1, 8)]), vec![(1, 8, 3)]);
        assert_eq!(sm.leader_terms, VecDeque::from([3, 5, 8]));
    }

    #[tokio::test]
    async fn persisted_term_leaders_are_bounded_per_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), false).expect("store");
        let mut sm = open(&store, Sampling::disabled());
        let n = MAX_TERMS_PER_GROUP as u64 + 3;
        for term in 1..=n {
            sm.apply([Entry {
                log_id: LogId::new(CommittedLeaderId::new(term, term % 3 + 1), term),
                payload: EntryPayload::Blank,
            }])
            .await
            .expect("apply");
        }
        let stored = store.meta.prefix(meta_key(1, LEADER_PREFIX)).count();
        assert_eq!(
            stored, MAX_TERMS_PER_GROUP,
            "the oldest records were removed"
        );
        drop(sm);
        let fresh = Sampling::disabled();
        let _sm = open(&store, fresh.clone());
        assert!(fresh.leaders().lookup(&[(1, 3)]).is_empty());
        assert_eq!(
            fresh.leaders().lookup(&[(1, 4), (1, n)]),
            vec![(1, 4, 2), (1, n, n % 3 + 1)]
        );
    }

    #[tokio::test]
    async fn oversized_keys_and_values_are_rejected_on_every_replica_without_panicking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), false).expect("store");
        let mut sm = open(&store, Sampling::disabled());
        let big = vec![b'k'; 70_000];
        let set = |key: Vec<u8>, value: Vec<u8>| KvOp::Set {
            key,
            value,
            expire_at_unix_ms: 0,
            cond: SetCond::Always,
        };
        let r = apply_one(
            &mut sm,
            entry(1, req(set(big.clone(), b"v".to_vec()), None)),
        )
        .await;
        assert!(
            matches!(r, KvResponse::Rejected(ref t) if t.contains("key")),
            "{r:?}"
        );
        let r = apply_one(&mut sm, entry(2, req(set(Vec::new(), b"v".to_vec()), None))).await;
        assert!(matches!(r, KvResponse::Rejected(_)), "empty key: {r:?}");
        let r = apply_one(
            &mut sm,
            entry(
                3,
                req(
                    KvOp::Del {
                        keys: vec![big.clone()],
                    },
                    None,
                ),
            ),
        )
        .await;
        assert_eq!(r, KvResponse::Int(0));
        let almost = vec![b'x'; MAX_VALUE_BYTES - 1];
        let r = apply_one(&mut sm, entry(4, req(set(b"a".to_vec(), almost), None))).await;
        assert_eq!(r, KvResponse::Ok);
        let append = KvOp::Append {
            key: b"a".to_vec(),
            value: b"yz".to_vec(),
        };
        let r = apply_one(&mut sm, entry(5, req(append, None))).await;
        assert_eq!(r, KvResponse::Rejected(TOO_LARGE.to_owned()));
        let len = store.get_value(b"a", 0).expect("get").map(|v| v.len());
        assert_eq!(
            len,
            Some(MAX_VALUE_BYTES - 1),
            "the refused APPEND changed nothing"
        );
        let batch = KvOp::Batch {
            ops: vec![set(big.clone(), b"v".to_vec()), incr("c")],
        };
        let r = apply_one(&mut sm, entry(6, req(batch, None))).await;
        let KvResponse::Batch(rs) = r else {
            panic!("batch answered {r:?}")
        };
        assert!(matches!(rs[0], KvResponse::Rejected(_)));
        assert_eq!(rs[1], KvResponse::Int(1), "the rest of the batch applies");
        assert_eq!(
            store.get_value(&big, 0).expect("read of an oversized key"),
            None
        );
        let (applied, _) = sm.applied_state().await.expect("applied");
        assert_eq!(applied.map(|l| l.index), Some(6));
    }

    #[tokio::test]
    async fn a_snapshot_carries_the_session_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), false).expect("store");
        let mut sm = open(&store, Sampling::disabled());
        assert_eq!(
            apply_one(&mut sm, entry(1, req(incr("n"), Some((1, 1))))).await,
            KvResponse::Int(1)
        );
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");

        let dir2 = tempfile::tempdir().expect("tempdir");
        let store2 = Store::open(dir2.path(), false).expect("store");
        let mut sm2 = open(&store2, Sampling::disabled());
        sm2.install_snapshot(&snap.meta, snap.snapshot)
            .await
            .expect("install");
        let dup = apply_one(&mut sm2, entry(2, req(incr("n"), Some((1, 1))))).await;
        assert_eq!(
            dup,
            KvResponse::Int(1),
            "the installed table knows the request"
        );
        assert_eq!(store2.get_value(b"n", 0).expect("get"), Some(b"1".to_vec()));
        assert_eq!(counting::load_floor(&store2, 1).expect("floor"), Some(1));
    }

    #[tokio::test]
    async fn a_restart_recounts_only_applied_entries_above_the_watermark_and_skips_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), false).expect("store");
        let sampler = || {
            let cfg = keyviz::SamplerConfig {
                step_ms: 1_000,
                ..keyviz::SamplerConfig::default()
            };
            Sampling::enabled(Arc::new(keyviz::Sampler::new(cfg, 0).expect("sampler")))
        };
        let mut sm = open(&store, sampler());
        let entries = vec![
            entry(1, req(incr("a"), Some((1, 1)))),
            entry(2, req(incr("a"), Some((1, 1)))), // a retry: duplicate
            entry(3, req(incr("b"), Some((1, 2)))),
            entry(4, req(incr("c"), Some((1, 3)))),
        ];
        // The log holds what was applied (the real log store wrote it before apply).
        for e in &entries {
            store
                .log
                .insert(
                    log_key(1, e.log_id.index),
                    crate::store::to_bin("e", e).expect("encode"),
                )
                .expect("log");
        }
        sm.apply(entries).await.expect("apply");
        drop(sm);

        // "Crash" before any flush: everything applied is re-counted except the duplicate.
        let log = LogStore::new(store.clone(), 1, true);
        let sm = open(&store, sampler());
        assert_eq!(sm.recount_from_log(&log).expect("recount"), 3);
        assert_eq!(sm.fence.watermark(1), Some(4));

        // A flushed column covering index 3: only entry 4 is re-counted.
        let mut batch = store.batch();
        counting::stage_watermarks(&store, &mut batch, &BTreeMap::from([(1, 3)]));
        batch.commit().expect("commit");
        let sm = open(&store, sampler());
        assert_eq!(sm.recount_from_log(&log).expect("recount"), 1);

        // Purge keeps what the watermark does not cover.
        let mut log2 = log.clone();
        log2.purge(LogId::new(CommittedLeaderId::new(1, 1), 4))
            .await
            .expect("purge");
        let kept: Vec<u64> = log
            .read_range(0, 10)
            .expect("read")
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(kept, vec![4], "entry 4 stays until a flush covers it");
        let state = log2.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id.map(|l| l.index), Some(4));
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(4));
    }
}
