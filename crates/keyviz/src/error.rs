//! Errors of the KeyViz core.

use crate::sampler::RouteId;

/// A [`SamplerConfig`](crate::SamplerConfig) value is out of its documented range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `step_ms` is outside 1 000 ..= 3 600 000 (1 s to 1 h).
    #[error("step_ms must be between 1000 (1 s) and 3600000 (1 h), got {0}")]
    StepOutOfRange(u64),
    /// `retention_ms` is shorter than one step.
    #[error("retention_ms ({retention_ms}) must be at least one step ({step_ms} ms)")]
    RetentionShorterThanStep {
        /// The configured retention.
        retention_ms: u64,
        /// The configured step.
        step_ms: u64,
    },
    /// `max_columns` is 0 or above the hard cap of 100 000.
    #[error("max_columns must be between 1 and 100000, got {0}")]
    MaxColumnsOutOfRange(usize),
    /// `max_tracked_routes` is 0 or above 1 000 000.
    #[error("max_tracked_routes must be between 1 and 1000000, got {0}")]
    MaxTrackedRoutesOutOfRange(usize),
    /// `key_buckets_per_route` is 0 or above 256.
    #[error("key_buckets_per_route must be between 1 and 256, got {0}")]
    KeyBucketsOutOfRange(u32),
    /// `max_member_routes` is 0 or above 65 536.
    #[error("max_member_routes must be between 1 and 65536, got {0}")]
    MaxMemberRoutesOutOfRange(usize),
    /// `hot_key_sketches` is above 1 000 000.
    #[error("hot_key_sketches must be at most 1000000, got {0}")]
    HotKeySketchesOutOfRange(usize),
    /// More than [`MAX_HISTORY_TIERS`](crate::config::MAX_HISTORY_TIERS) tiers.
    #[error("at most 8 history tiers, got {0}")]
    TooManyTiers(usize),
    /// A tier's step is not a larger multiple of the finer tier's, or above 1 day.
    #[error(
        "history tier {index}: step {step_ms} ms must be a multiple of, and larger than, the finer tier's step {finer_step_ms} ms, and at most 1 day"
    )]
    TierStep {
        /// Position of the tier (0 = the finest, at `step_ms`).
        index: usize,
        /// Its step.
        step_ms: u64,
        /// The finer tier's step.
        finer_step_ms: u64,
    },
    /// A tier keeps no longer than the finer tier, less than one step, or over 400 days.
    #[error(
        "history tier {index}: keep {keep_ms} ms must be longer than the finer tier's {finer_keep_ms} ms, at least one step ({step_ms} ms), and at most 400 days"
    )]
    TierKeep {
        /// Position of the tier (0 = the finest).
        index: usize,
        /// Its keep.
        keep_ms: u64,
        /// Its step.
        step_ms: u64,
        /// The finer tier's keep.
        finer_keep_ms: u64,
    },
}

/// A route-catalog change was refused; the catalog is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// A route with this id is already registered.
    #[error("route {0} is already registered")]
    AlreadyRegistered(RouteId),
    /// No route with this id is registered.
    #[error("route {0} is not registered")]
    UnknownRoute(RouteId),
    /// The range is empty or inverted (`end <= start`).
    #[error("route {id} has an empty or inverted key range")]
    EmptyRange {
        /// The offending route.
        id: RouteId,
    },
    /// The range overlaps a registered route.
    #[error("route {id} overlaps registered route {other}")]
    Overlap {
        /// The route being registered.
        id: RouteId,
        /// The registered route it overlaps.
        other: RouteId,
    },
    /// The split key is not strictly inside the route's range.
    #[error("split key is not strictly inside route {0}'s range")]
    SplitKeyOutsideRange(RouteId),
    /// The two routes of a merge are not adjacent (`left.end == right.start`).
    #[error("routes {left} and {right} are not adjacent")]
    NotAdjacent {
        /// The left route.
        left: RouteId,
        /// The right route.
        right: RouteId,
    },
    /// The operation needs an individually tracked route, but it was coarsened
    /// into a virtual bucket.
    #[error("route {0} is coarsened into a virtual bucket and cannot be split or merged")]
    Coarsened(RouteId),
}

/// A matrix (typically a peer's response) breaks an invariant of the wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MatrixError {
    /// `column_unix_ms` is not strictly increasing.
    #[error("column_unix_ms is not strictly increasing at index {0}")]
    ColumnsNotIncreasing(usize),
    /// A column timestamp lies outside years 0000–9999.
    #[error("column_unix_ms[{0}] is outside years 0000-9999")]
    ColumnOutOfRange(usize),
    /// A row's `values` length differs from the number of columns.
    #[error("row {bucket_id}: {field} has {got} entries, expected {expected}")]
    LengthMismatch {
        /// The row.
        bucket_id: String,
        /// The offending array.
        field: &'static str,
        /// Its length.
        got: usize,
        /// The number of columns.
        expected: usize,
    },
    /// A row has an empty bucket id.
    #[error("row {0} has an empty bucket_id")]
    EmptyBucketId(usize),
    /// Two rows share one bucket id.
    #[error("bucket_id {0} appears twice")]
    DuplicateBucket(String),
    /// A row's range is inverted.
    #[error("row {0}: start is not below end")]
    InvertedRange(String),
    /// A row's `write_lanes` are out of range, unordered, too many for one
    /// cell, or do not sum to the cell's value.
    #[error("row {bucket_id}: write_lanes: {detail}")]
    BadWriteLanes {
        /// The row.
        bucket_id: String,
        /// What is wrong.
        detail: String,
    },
    /// More rows or columns than the limit the caller allows.
    #[error("matrix has {rows} rows x {columns} columns, over the limit of {limit} cells")]
    TooLarge {
        /// Rows in the matrix.
        rows: usize,
        /// Columns in the matrix.
        columns: usize,
        /// The cell limit.
        limit: usize,
    },
}
