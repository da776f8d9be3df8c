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

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use fjall::Readable;
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageError, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::types::{KvOp, KvRequest, KvResponse, SetCond, TypeConfig};
use crate::routing::split::{SharedCatalog, right_route_id};
use crate::routing::{Catalog, Route};
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
}

fn sm_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

impl StateMachine {
    pub(crate) fn open(
        store: Store,
        group: u64,
        catalog: Arc<SharedCatalog>,
    ) -> Result<Self, StoreError> {
        let applied = match store.meta.get(meta_key(group, "applied"))? {
            None => AppliedState::default(),
            Some(raw) => from_json("applied state", &raw)?,
        };
        Ok(Self {
            store,
            group,
            catalog,
            applied,
            current: Arc::default(),
        })
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
                    if self.read(pending, k, now)?.is_some() {
                        n += 1;
                    }
                    pending.insert(k.clone(), None);
                }
                KvResponse::Int(n)
            }
            KvOp::IncrBy { key, delta } => {
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
                let mut v = self.read(pending, key, now)?.unwrap_or(StoredValue {
                    expire_at_ms: 0,
                    data: Vec::new(),
                });
                v.data.extend_from_slice(value);
                let len = v.data.len() as i64;
                pending.insert(key.clone(), Some(v));
                KvResponse::Int(len)
            }
            KvOp::Batch { ops } => {
                let mut out = Vec::with_capacity(ops.len());
                for op in ops {
                    out.push(match op {
                        KvOp::Split { .. } | KvOp::Batch { .. } => {
                            KvResponse::SplitRefused("splits and batches cannot be batched".into())
                        }
                        _ => self.apply_op(pending, now, op)?,
                    });
                }
                KvResponse::Batch(out)
            }
            KvOp::Split { .. } => KvResponse::Internal, // handled by the caller
        })
    }

    fn commit(
        &self,
        pending: &mut BTreeMap<Vec<u8>, Option<StoredValue>>,
    ) -> Result<(), StoreError> {
        let mut batch = self.store.batch();
        for (k, v) in std::mem::take(pending) {
            match v {
                Some(v) => batch.insert(&self.store.kv, k, v.encode()),
                None => batch.remove(&self.store.kv, k),
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
        let data = to_json("snapshot", &SnapshotPayload { routes, pairs })?;
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
        let mut pending = BTreeMap::new();
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
                // Earlier entries of this batch must be on disk before the split's applied id.
                self.commit(&mut pending).map_err(sm_err)?;
            }
            self.applied.last_applied = Some(entry.log_id);
            let resp = match entry.payload {
                EntryPayload::Blank => KvResponse::Internal,
                EntryPayload::Membership(m) => {
                    self.applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    KvResponse::Internal
                }
                EntryPayload::Normal(req) => match &req.op {
                    KvOp::Split { route, at } => {
                        self.apply_split(entry.log_id, *route, at).map_err(sm_err)?
                    }
                    _ => self
                        .apply_op(&mut pending, req.now_unix_ms, &req.op)
                        .map_err(sm_err)?,
                },
            };
            out.push(resp);
        }
        self.commit(&mut pending).map_err(sm_err)?;
        Ok(out)
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
        let (mk, mv) = self.applied_record().map_err(sm_err)?;
        let store = self.store.clone();
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
