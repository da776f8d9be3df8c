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
}

/// A log entry payload: the operation plus the proposer's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRequest {
    /// Proposer's unix ms; expiry is evaluated against it on every replica.
    pub now_unix_ms: u64,
    /// The operation.
    pub op: KvOp,
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
    /// One answer per operation of a [`KvOp::Batch`], in order.
    Batch(Vec<KvResponse>),
    /// Non-application entries (blank, membership).
    Internal,
}
