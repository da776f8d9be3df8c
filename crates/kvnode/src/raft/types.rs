//! The openraft type configuration and the replicated command set.
//!
//! Every entry of a group's log carries one [`KvRequest`]; applying it yields one
//! [`KvResponse`]. Requests are deterministic: the proposer stamps its clock into `now_unix_ms`
//! and every replica evaluates expiry against that stamp, never against its own clock.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// openraft type configuration of every group on this node.
    pub TypeConfig:
        D = KvRequest,
        R = KvResponse,
);

/// The openraft handle of one group.
pub(crate) type RaftHandle = openraft::Raft<TypeConfig>;

/// Condition of a `SET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetCond {
    /// Always write.
    Always,
    /// Write only if the key does not exist (`NX`).
    IfAbsent,
    /// Write only if the key exists (`XX`).
    IfPresent,
}

/// Condition of an `EXPIRE` family command (Redis 7's options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpireCond {
    /// Always set the expiry.
    Always,
    /// Only if the key has no expiry (`NX`).
    IfNone,
    /// Only if the key has an expiry (`XX`).
    IfSome,
    /// Only if the new expiry is later than the current one; no expiry counts as infinite
    /// (`GT`).
    Later,
    /// Only if the new expiry is earlier than the current one; no expiry counts as infinite
    /// (`LT`).
    Earlier,
}

impl ExpireCond {
    /// Whether an expiry at `new` (unix ms) may replace `current` (0 = none).
    pub fn allows(self, current: u64, new: u64) -> bool {
        let infinite = |at: u64| if at == 0 { u64::MAX } else { at };
        match self {
            ExpireCond::Always => true,
            ExpireCond::IfNone => current == 0,
            ExpireCond::IfSome => current != 0,
            ExpireCond::Later => current != 0 && new > current,
            ExpireCond::Earlier => new < infinite(current),
        }
    }
}

/// One replicated operation on one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    /// `SET key value [EX|PX] [NX|XX]`; `expire_at_unix_ms = 0` means no expiry.
    Set {
        /// Key.
        key: Vec<u8>,
        /// Value (written as one byte string: postcard copies it instead of looping per byte).
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Absolute expiry (unix ms), 0 = none.
        expire_at_unix_ms: u64,
        /// NX / XX.
        cond: SetCond,
    },
    /// `DEL` of keys that all belong to this group.
    Del {
        /// Keys.
        keys: Vec<Vec<u8>>,
    },
    /// `INCRBY key delta` (and INCR/DECR/DECRBY).
    IncrBy {
        /// Key.
        key: Vec<u8>,
        /// Signed increment.
        delta: i64,
    },
    /// `APPEND key value`.
    Append {
        /// Key.
        key: Vec<u8>,
        /// Suffix (one byte string on the wire, as for `Set`).
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// `MSET` of pairs that all belong to this group (applied atomically).
    MSet {
        /// Key/value pairs.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Several single-key writes of one client pipeline, applied in order in one entry (one
    /// Raft round trip for the whole run); answered with [`KvResponse::Batch`].
    Batch {
        /// The writes, in pipeline order (never `Split` or nested `Batch`).
        ops: Vec<KvOp>,
    },
    /// Split route `route` at `at`; the new right route's id comes from the entry's log index.
    Split {
        /// Route to split.
        route: u64,
        /// First key of the new right route.
        at: Vec<u8>,
    },
    /// `EXPIRE`/`PEXPIRE`/`EXPIREAT`/`PEXPIREAT` of one key: answered `Int(1)` when set (or,
    /// for an instant already past at apply, when the key was deleted), `Int(0)` when the key
    /// is missing or `cond` refused. (New variants go last: the log's encoding numbers them.)
    Expire {
        /// Key.
        key: Vec<u8>,
        /// Absolute expiry (unix ms), at least 1.
        expire_at_unix_ms: u64,
        /// NX / XX / GT / LT.
        cond: ExpireCond,
    },
    /// `PERSIST key`: drop the key's expiry; `Int(1)` if it had one, else `Int(0)`.
    Persist {
        /// Key.
        key: Vec<u8>,
    },
}

impl KvOp {
    /// Key and value bytes the operation carries (nested batches included): what its encode,
    /// decode, append and apply cost grows with. Pure; no allocation.
    #[must_use]
    pub fn payload_bytes(&self) -> usize {
        match self {
            KvOp::Set { key, value, .. } | KvOp::Append { key, value } => {
                key.len().saturating_add(value.len())
            }
            KvOp::Del { keys } => keys.iter().map(Vec::len).fold(0, usize::saturating_add),
            KvOp::IncrBy { key, .. } => key.len(),
            KvOp::MSet { pairs } => pairs
                .iter()
                .map(|(k, v)| k.len().saturating_add(v.len()))
                .fold(0, usize::saturating_add),
            KvOp::Batch { ops } => ops
                .iter()
                .map(KvOp::payload_bytes)
                .fold(0, usize::saturating_add),
            KvOp::Split { at, .. } => at.len(),
            KvOp::Expire { key, .. } | KvOp::Persist { key } => key.len(),
        }
    }
}

/// Key and value bytes a log entry carries ([`KvOp::payload_bytes`]; 0 for blank and
/// membership entries). Pure.
pub(crate) fn entry_bytes(entry: &openraft::Entry<TypeConfig>) -> usize {
    match &entry.payload {
        openraft::EntryPayload::Normal(req) => req.op.payload_bytes(),
        _ => 0,
    }
}

/// Key and value bytes of `entries` together ([`entry_bytes`]). Pure.
pub(crate) fn entries_bytes<'a>(
    entries: impl IntoIterator<Item = &'a openraft::Entry<TypeConfig>>,
) -> usize {
    entries
        .into_iter()
        .map(entry_bytes)
        .fold(0, usize::saturating_add)
}

/// A client session: unique per RESP connection across nodes and restarts (the node that
/// accepted the connection, a random epoch drawn at that node's start, and a per-process
/// connection counter), so two connections never share a session (Raft dissertation §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId {
    /// Node that accepted the client connection.
    pub node: u64,
    /// Random per-process epoch of that node (distinguishes restarts).
    pub epoch: u64,
    /// Connection counter within that process.
    pub conn: u64,
}

/// Identity of one client write: its session and a sequence number that grows with every write
/// of the session. Retries of one write carry the same id, so the state machine applies it at
/// most once and answers a duplicate with the cached response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId {
    /// The client session.
    pub session: SessionId,
    /// Sequence number within the session (strictly increasing per session and group).
    pub seq: u64,
}

/// A log entry payload: the operation plus the proposer's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRequest {
    /// Proposer's unix ms; expiry is evaluated against it on every replica, session expiry
    /// too, and every replica counts the write in the KeyViz window of this stamp.
    pub now_unix_ms: u64,
    /// The operation.
    pub op: KvOp,
    /// The client write this entry carries, for exactly-once application; `None` for internal
    /// operations (splits) and entries written before sessions existed.
    #[serde(default)]
    pub request: Option<RequestId>,
}

/// Result of applying one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    /// `+OK`.
    Ok,
    /// Null bulk (a conditional SET that did not apply).
    Nil,
    /// An integer reply (DEL count, INCR result, APPEND/STRLEN length).
    Int(i64),
    /// INCR on a value that is not a base-10 i64.
    NotInteger,
    /// INCR would overflow i64.
    Overflow,
    /// A split was refused (unknown route, key outside, ...).
    SplitRefused(String),
    /// A split was applied; the new route's id.
    Split {
        /// Id of the new right route.
        right_id: u64,
    },
    /// The operation was refused deterministically on every replica (oversized key or result,
    /// empty key, malformed entry, stale request id); the text is a Redis error without the
    /// `ERR ` prefix. Nothing was changed.
    Rejected(String),
    /// One answer per operation of a [`KvOp::Batch`], in order.
    Batch(Vec<KvResponse>),
    /// Non-application entries (blank, membership).
    Internal,
}
