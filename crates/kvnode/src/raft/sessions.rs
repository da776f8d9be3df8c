//! The per-group table of client sessions that makes writes exactly-once (Raft dissertation
//! §6.3).
//!
//! For every session the table keeps the last applied sequence number and its response. An
//! entry whose request id repeats the last one is a duplicate (a retry after a timeout or a
//! leader change): it is answered with the cached response and changes nothing. An older
//! sequence number is stale (its client has already moved on) and is refused. Everything is a
//! function of the log alone — the table is changed only by applied entries and aged only by
//! their proposer timestamps — so every replica holds the same table. It is persisted in the
//! same fjall batch as the applied entries and carried in snapshots.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::types::{KvResponse, RequestId, SessionId};
use crate::store::{StoreError, from_json, to_json};

/// A session idle (by proposer time) for longer than this is forgotten.
pub(crate) const SESSION_IDLE_MS: u64 = 10 * 60 * 1000;

/// Most sessions a group remembers; the least recently used (by proposer time) goes first.
pub(crate) const MAX_SESSIONS: usize = 100_000;

/// What the table knows of one session; also its persisted and snapshot form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    pub(crate) session: SessionId,
    /// Last applied sequence number.
    pub(crate) seq: u64,
    /// Proposer timestamp of the last entry of this session.
    pub(crate) last_ms: u64,
    /// The response of `seq`.
    pub(crate) response: KvResponse,
}

impl SessionRecord {
    /// The persisted value: seq (8 B BE), last proposer ms (8 B BE), the response as JSON. The
    /// session id is the record's key; the value is kept short because one is written per
    /// applied write.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if the response cannot be encoded.
    pub(crate) fn encode_value(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::with_capacity(24);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.last_ms.to_be_bytes());
        out.extend_from_slice(&to_json("session response", &self.response)?);
        Ok(out)
    }

    /// Decodes a value written by [`SessionRecord::encode_value`] for `session`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the value is truncated or its response undecodable.
    pub(crate) fn decode_value(session: SessionId, raw: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt {
            what: "session",
            detail: format!("{} bytes, need at least 16", raw.len()),
        };
        let (seq, rest) = raw.split_at_checked(8).ok_or_else(corrupt)?;
        let (last, response) = rest.split_at_checked(8).ok_or_else(corrupt)?;
        let be = |b: &[u8]| -> Result<u64, StoreError> {
            Ok(u64::from_be_bytes(b.try_into().map_err(|_| corrupt())?))
        };
        Ok(Self {
            session,
            seq: be(seq)?,
            last_ms: be(last)?,
            response: from_json("session response", response)?,
        })
    }
}

/// The 24-byte encoding of a session id (the tail of its record's key).
pub(crate) fn session_id_bytes(s: &SessionId) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&s.node.to_be_bytes());
    out[8..16].copy_from_slice(&s.epoch.to_be_bytes());
    out[16..].copy_from_slice(&s.conn.to_be_bytes());
    out
}

/// The session id whose [`session_id_bytes`] end `key`, if `key` is long enough.
pub(crate) fn session_id_from_key(key: &[u8]) -> Option<SessionId> {
    let tail = key.get(key.len().checked_sub(24)?..)?;
    let part = |i: usize| -> Option<u64> {
        Some(u64::from_be_bytes(tail.get(i..i + 8)?.try_into().ok()?))
    };
    Some(SessionId {
        node: part(0)?,
        epoch: part(8)?,
        conn: part(16)?,
    })
}

/// Verdict on an incoming request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// Not seen: apply it.
    Fresh,
    /// The last applied request of its session: answer this without applying.
    Duplicate(KvResponse),
    /// Older than the session's last applied request: refuse without applying.
    Stale,
}

/// The session table of one group, with the changes not yet written to fjall.
#[derive(Debug)]
pub(crate) struct SessionTable {
    by_id: HashMap<SessionId, SessionRecord>,
    /// `(last_ms, session)`: expiry and eviction order, identical on every replica.
    by_age: BTreeSet<(u64, SessionId)>,
    /// Sessions changed since the last [`SessionTable::take_changes`]: `true` = write the
    /// record, `false` = delete it.
    dirty: BTreeMap<SessionId, bool>,
    idle_ms: u64,
    cap: usize,
}

impl SessionTable {
    /// An empty table with the default expiry and cap.
    pub(crate) fn new() -> Self {
        Self::with_limits(SESSION_IDLE_MS, MAX_SESSIONS)
    }

    /// An empty table forgetting sessions idle for more than `idle_ms` and holding at most
    /// `cap` (at least 1) sessions.
    pub(crate) fn with_limits(idle_ms: u64, cap: usize) -> Self {
        Self {
            by_id: HashMap::new(),
            by_age: BTreeSet::new(),
            dirty: BTreeMap::new(),
            idle_ms,
            cap: cap.max(1),
        }
    }

    /// Replaces the contents with `records` (load at open, snapshot install). Records beyond
    /// the cap are dropped oldest first. Clears pending changes: the caller persists the
    /// replacement itself.
    pub(crate) fn replace(&mut self, records: impl IntoIterator<Item = SessionRecord>) {
        self.by_id.clear();
        self.by_age.clear();
        self.dirty.clear();
        for r in records {
            self.by_age.insert((r.last_ms, r.session));
            if let Some(old) = self.by_id.insert(r.session, r) {
                self.by_age.remove(&(old.last_ms, old.session));
            }
        }
        while self.by_id.len() > self.cap {
            self.evict_oldest();
        }
        self.dirty.clear();
    }

    /// Number of sessions remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Every record, in session order.
    #[cfg(test)]
    pub(crate) fn records(&self) -> Vec<SessionRecord> {
        let mut out: Vec<SessionRecord> = self.by_id.values().cloned().collect();
        out.sort_by_key(|r| r.session);
        out
    }

    /// Forgets the sessions idle for more than the expiry at proposer time `now_ms`.
    pub(crate) fn expire(&mut self, now_ms: u64) {
        while let Some(&(last, _)) = self.by_age.first() {
            if now_ms.saturating_sub(last) <= self.idle_ms {
                break;
            }
            self.evict_oldest();
        }
    }

    /// Classifies `id` against the table.
    pub(crate) fn check(&self, id: &RequestId) -> Check {
        match self.by_id.get(&id.session) {
            None => Check::Fresh,
            Some(r) if id.seq > r.seq => Check::Fresh,
            Some(r) if id.seq == r.seq => Check::Duplicate(r.response.clone()),
            Some(_) => Check::Stale,
        }
    }

    /// Records that `id` was applied at proposer time `now_ms` with `response`, evicting the
    /// oldest session first if the table is full.
    pub(crate) fn record(&mut self, id: RequestId, now_ms: u64, response: KvResponse) {
        let last_ms = match self.by_id.get(&id.session) {
            Some(old) => {
                self.by_age.remove(&(old.last_ms, old.session));
                // Proposer clocks can step back across leaders; keep the age monotonic.
                old.last_ms.max(now_ms)
            }
            None => {
                if self.by_id.len() >= self.cap {
                    self.evict_oldest();
                }
                now_ms
            }
        };
        self.by_age.insert((last_ms, id.session));
        self.by_id.insert(
            id.session,
            SessionRecord {
                session: id.session,
                seq: id.seq,
                last_ms,
                response,
            },
        );
        self.dirty.insert(id.session, true);
    }

    fn evict_oldest(&mut self) {
        if let Some((_, s)) = self.by_age.pop_first() {
            self.by_id.remove(&s);
            self.dirty.insert(s, false);
        }
    }

    /// The changes since the last call: records to write and sessions to delete.
    pub(crate) fn take_changes(&mut self) -> (Vec<SessionRecord>, Vec<SessionId>) {
        let dirty = std::mem::take(&mut self.dirty);
        let mut write = Vec::new();
        let mut delete = Vec::new();
        for (s, present) in dirty {
            match (present, self.by_id.get(&s)) {
                (true, Some(r)) => write.push(r.clone()),
                _ => delete.push(s),
            }
        }
        (write, delete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(conn: u64, seq: u64) -> RequestId {
        RequestId {
            session: SessionId {
                node: 1,
                epoch: 7,
                conn,
            },
            seq,
        }
    }

    #[test]
    fn a_repeated_request_id_is_a_duplicate_with_the_cached_response() {
        let mut t = SessionTable::new();
        assert_eq!(t.check(&id(1, 1)), Check::Fresh);
        t.record(id(1, 1), 1_000, KvResponse::Int(5));
        assert_eq!(t.check(&id(1, 1)), Check::Duplicate(KvResponse::Int(5)));
        assert_eq!(t.check(&id(1, 2)), Check::Fresh);
        t.record(id(1, 3), 1_001, KvResponse::Int(6));
        assert_eq!(t.check(&id(1, 2)), Check::Stale);
        assert_eq!(t.check(&id(2, 1)), Check::Fresh, "sessions are independent");
    }

    #[test]
    fn sessions_expire_by_proposer_time_only() {
        let mut t = SessionTable::with_limits(100, 10);
        t.record(id(1, 1), 1_000, KvResponse::Ok);
        t.record(id(2, 1), 1_050, KvResponse::Ok);
        t.expire(1_100);
        assert_eq!(t.len(), 2, "idle for exactly the limit is kept");
        t.expire(1_101);
        assert_eq!(t.check(&id(1, 1)), Check::Fresh, "session 1 expired");
        assert_eq!(t.check(&id(2, 1)), Check::Duplicate(KvResponse::Ok));
        let (write, delete) = t.take_changes();
        assert_eq!(write.len(), 1);
        assert_eq!(delete, vec![id(1, 1).session]);
    }

    #[test]
    fn a_full_table_evicts_the_least_recent_session_on_every_replica_alike() {
        let run = || {
            let mut t = SessionTable::with_limits(u64::MAX, 3);
            t.record(id(1, 1), 10, KvResponse::Ok);
            t.record(id(2, 1), 20, KvResponse::Ok);
            t.record(id(3, 1), 20, KvResponse::Ok);
            t.record(id(1, 2), 30, KvResponse::Ok); // session 1 is now the most recent
            t.record(id(4, 1), 40, KvResponse::Ok); // evicts session 2 (20, conn 2 < conn 3)
            t.records()
        };
        let a = run();
        assert_eq!(a, run(), "deterministic");
        let conns: Vec<u64> = a.iter().map(|r| r.session.conn).collect();
        assert_eq!(conns, vec![1, 3, 4]);
    }

    #[test]
    fn a_record_round_trips_through_its_key_and_short_value() {
        let r = SessionRecord {
            session: id(77, 1).session,
            seq: 12,
            last_ms: 1_796_000_000_000,
            response: KvResponse::Int(-3),
        };
        let mut key = b"prefix".to_vec();
        key.extend_from_slice(&session_id_bytes(&r.session));
        let session = session_id_from_key(&key).expect("id");
        let raw = r.encode_value().expect("encode");
        assert!(raw.len() < 32, "{} bytes", raw.len());
        assert_eq!(
            SessionRecord::decode_value(session, &raw).expect("decode"),
            r
        );
        assert!(SessionRecord::decode_value(session, &raw[..10]).is_err());
    }

    #[test]
    fn replace_loads_records_and_keeps_the_cap() {
        let mut t = SessionTable::with_limits(u64::MAX, 2);
        let recs: Vec<SessionRecord> = (1..=3)
            .map(|c| SessionRecord {
                session: id(c, 1).session,
                seq: 1,
                last_ms: c * 10,
                response: KvResponse::Int(c as i64),
            })
            .collect();
        t.replace(recs);
        assert_eq!(t.len(), 2);
        assert_eq!(t.check(&id(1, 1)), Check::Fresh, "oldest dropped");
        assert_eq!(t.check(&id(3, 1)), Check::Duplicate(KvResponse::Int(3)));
        assert_eq!(
            t.take_changes(),
            (Vec::new(), Vec::new()),
            "nothing to persist"
        );
    }
}
