//! # KeyViz core
//!
//! The pure heart of KeyViz, a key visualizer for range-partitioned,
//! Raft-replicated stores: it counts every operation a node serves per key
//! range, keeps step-aligned history, answers matrix queries with a row budget
//! that never drops counts, and merges several nodes' matrices with rules that
//! respect Raft leadership. No I/O, no async, no clock: the host passes time in.
//!
//! ```
//! use keyviz::{MatrixQuery, ReadRole, RouteSpec, Sampler, SamplerConfig, Series};
//!
//! let t0 = 1_700_000_000_000;
//! let sampler = Sampler::new(SamplerConfig { step_ms: 1_000, ..SamplerConfig::default() }, t0)?;
//! sampler.register_route(RouteSpec { id: 1, start: b"a".to_vec(), end: Some(b"m".to_vec()), group: 7 })?;
//! sampler.observe_write(1, b"apple", 5, 7, 42, t0 + 10);   // term 42, stamped t0 + 10 ms
//! sampler.observe_read(1, b"apple", 5, ReadRole::Follower, t0 + 20);
//! // Seal (no history lock, no I/O), then publish into the history; a host
//! // persists `published.records` off its async workers.
//! let published = sampler.publish(sampler.seal(t0 + 1_000));
//! assert_eq!(published.records[0].unix_ms, t0);
//! let m = sampler.matrix(&MatrixQuery { series: Series::Writes, ..MatrixQuery::default() }, t0 + 1_000);
//! assert_eq!(m.rows[0].values, vec![1]);
//! assert_eq!(m.rows[0].leader_terms, vec![42]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The pieces, in data-flow order: [`Sampler`] (observe, route catalog, the
//! open window and side buffer, seal / publish), the history inside it
//! (retention, [`HistoryStore`] seam), [`Matrix`] and [`MatrixQuery`] (wire
//! types, row budget), [`merge`] (the cluster merge), and [`key_preview`]
//! (printable key labels).

#![deny(missing_docs)]

mod bucket;
mod config;
mod error;
mod history;
pub mod hotkeys;
mod matrix;
pub mod merge;
pub use matrix::boundaries;
mod preview;
mod sampler;
mod sync;
mod time;

pub use bucket::{
    bucket_base, incarnation_bucket_id, parse_route_bucket_id, route_bucket_id, virtual_bucket_id,
    virtual_bucket_name,
};
pub use config::{
    HistoryTier, MAX_COLUMNS, MAX_HISTORY_TIERS, MAX_HOT_KEY_SKETCHES, MAX_KEY_BUCKETS,
    MAX_STEP_MS, MAX_TIER_KEEP_MS, MAX_TIER_STEP_MS, MIN_STEP_MS, SamplerConfig,
};
pub use error::{ConfigError, MatrixError, RouteError};
pub use history::{
    CellRecord, ColumnRecord, DecodeError, HistoryStore, HotRecord, MAX_QUERY_COLUMNS,
    PersistError, WriteRecord,
};
/// Comparing a matrix with a baseline window ([`compare::compare`]).
pub use matrix::compare;
pub use matrix::{
    CellLane, MAX_CELL_LANES, MAX_MATRIX_CELLS, MAX_MATRIX_COLUMNS, Matrix, MatrixQuery, MatrixRow,
    Series, UnknownSeries, coarsen_rows, plan_groups,
};
pub use preview::{MAX_PREVIEW_CHARS, RESERVED_PREFIXES, key_preview};
pub use sampler::{
    FlushReport, MAX_FUTURE_STEPS, MAX_SIDE_CELLS, MAX_SIDE_WINDOWS, Published, ReadRole, Recorder,
    RouteId, RouteSpec, Sampler, SamplerError, SamplerStats, Sealed,
};
pub use time::{align_down, align_nearest, format_rfc3339_ms};
