//! The persistence seam: where a host stores columns so a restart keeps history.
//!
//! The core does no I/O. A host that wants durable history implements
//! [`HistoryStore`] (the store keeps it in its embedded engine) and hands it to
//! [`Sampler::with_store`](crate::Sampler::with_store), which reloads the
//! retained columns at start-up. Every publish returns the whole, merged
//! [`ColumnRecord`] of each window it touched ([`Published`](crate::Published)):
//! the host appends them (off its async workers), or
//! [`Sampler::flush`](crate::Sampler::flush) does it inline. Records carry
//! their row metadata, so they stay readable after the route catalog has changed.

use serde::{Deserialize, Serialize};

use crate::hotkeys::HotSummary;
use crate::matrix::Series;

/// Writes of one (raft group, leader term) in one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRecord {
    /// Raft group (0 = unknown).
    pub group: u64,
    /// Leader term (0 = unknown).
    pub term: u64,
    /// Writes counted.
    pub writes: u64,
    /// Key plus value bytes written.
    pub write_bytes: u64,
}

/// One non-zero cell of a stored column, with its row metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellRecord {
    /// Row identity (see [`MatrixRow::bucket_id`](crate::MatrixRow::bucket_id)).
    pub bucket_id: String,
    /// First key of the row.
    pub start: Vec<u8>,
    /// End of the row (exclusive); `None` = unbounded.
    pub end: Option<Vec<u8>>,
    /// True for a virtual bucket.
    pub aggregate: bool,
    /// Listed member routes.
    pub route_ids: Vec<u64>,
    /// All member routes.
    pub route_count: u64,
    /// Reads served as leader.
    pub reads_leader: u64,
    /// Reads served as follower.
    pub reads_follower: u64,
    /// Read bytes.
    pub read_bytes: u64,
    /// Writes per (group, term).
    pub writes: Vec<WriteRecord>,
    /// Hot-key summaries of the cell, one per (series, group, term); absent in
    /// records written before hot keys (such cells simply list no keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hot: Vec<HotRecord>,
    /// Smallest key label captured in the row so far (see
    /// [`MatrixRow::first_key`](crate::MatrixRow::first_key)); absent in old records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_key: Option<Vec<u8>>,
    /// Largest key label captured in the row so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key: Option<Vec<u8>>,
}

/// The hot keys of one series of one cell (for writes: of one (group, term)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotRecord {
    /// `reads`, `read_bytes`, `writes` or `write_bytes`.
    pub series: Series,
    /// Raft group of the writes (0 for reads or unknown).
    #[serde(default)]
    pub group: u64,
    /// Leader term of the writes (0 for reads or unknown).
    #[serde(default)]
    pub term: u64,
    /// The keys, with `total` at most the cell's count for this series and
    /// identity (the rest was not captured).
    pub summary: HotSummary,
}

/// One stored window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnRecord {
    /// Window start, aligned to `step_ms`.
    pub unix_ms: i64,
    /// The step the window was counted with.
    pub step_ms: u64,
    /// Non-zero cells.
    pub cells: Vec<CellRecord>,
}

/// A store failed; the message says what and where.
#[derive(Debug, thiserror::Error)]
#[error("history store: {0}")]
pub struct PersistError(pub Box<dyn std::error::Error + Send + Sync>);

/// Durable storage for columns, implemented by the host.
///
/// Implementations must be safe to call from the persisting thread while other
/// threads query; a column is identified by its (`step_ms`, `unix_ms`): one
/// window start can hold a column in several tiers. `append` of a column that
/// already exists must replace it (a
/// late observation or a second seal inside one window rewrites the whole
/// merged column). Records of one window must be appended in publish order.
pub trait HistoryStore: Send + Sync {
    /// Stores (or replaces) the column of `record.unix_ms`.
    ///
    /// # Errors
    /// Any storage failure; the in-memory history is unaffected.
    fn append(&self, record: &ColumnRecord) -> Result<(), PersistError>;

    /// Hands every stored column, of every tier, with
    /// `unix_ms >= since_unix_ms` to `visit`, one at a time, and returns when
    /// all were handed over or at the first error (the store's or `visit`'s,
    /// which it returns as it is). `visit` only reads the record: an
    /// implementation should decode each record into the same `ColumnRecord`
    /// ([`ColumnRecord::decode_into`] reuses its memory) and keep no other:
    /// the restart's peak memory is then the history plus one record (a
    /// 10 000-cell column is ≈ 5 MiB as structs), not the whole store, and
    /// the decoding allocates nearly nothing per record. Called by
    /// [`Sampler::with_store`](crate::Sampler::with_store) on the caller's
    /// thread, blocking on the store's I/O; `visit` holds the new sampler's
    /// history lock (no other thread can see that sampler yet) and never
    /// calls back into the store.
    ///
    /// **Order.** None is required: [`Sampler::with_store`](crate::Sampler::with_store)
    /// restores the same history from any order. Preferred, and what kvnode's
    /// store yields: coarser tiers (wider `step_ms`) before finer ones, each in
    /// ascending `unix_ms`. A finer record seen before any record of a coarser
    /// tier is also summed into that tier (a data dir from before tiers has no
    /// coarser records); that work is dropped when the tier's first stored
    /// record arrives.
    ///
    /// # Errors
    /// Any storage or decoding failure, or `visit`'s error.
    fn load(
        &self,
        since_unix_ms: i64,
        visit: &mut dyn FnMut(&ColumnRecord) -> Result<(), PersistError>,
    ) -> Result<(), PersistError>;

    /// Deletes columns of the finest tier (the sampler's `step_ms`) with
    /// `unix_ms < before_unix_ms`.
    ///
    /// # Errors
    /// Any storage failure.
    fn prune(&self, before_unix_ms: i64) -> Result<(), PersistError>;

    /// Deletes columns of the coarser tier of `step_ms` with
    /// `unix_ms < before_unix_ms` (see
    /// [`SamplerConfig::coarser_tiers`](crate::SamplerConfig::coarser_tiers)).
    ///
    /// # Errors
    /// Any storage failure.
    fn prune_tier(&self, step_ms: u64, before_unix_ms: i64) -> Result<(), PersistError>;
}
