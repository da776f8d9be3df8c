//! Hot keys: which keys carry a row's traffic, with honest bounds.
//!
//! ```text
//!  observe ──► capture decision on the counter's own fetch_add result
//!              (every op while a counter is young in its window, then 1 in 2^j)
//!          ──► per-slot capture sketch (Space-Saving, weighted)
//!  seal    ──► HotSummary per (row, series, write identity) into the column
//!  query   ──► NodeHotKeys (parts per identity) ──► merge_hot_keys ──► HotKeys
//! ```
//!
//! [`HotSummary`] is the unit everything exchanges: exact total, listed keys
//! with lower/upper bounds, and a floor bounding every unlisted key.

mod merge;
mod redact;
mod sketch;
mod span;
mod summary;
mod wire;

pub use merge::merge_hot_keys;
pub use redact::{KeyRedactor, MAX_KEPT_PREFIX, SEAL_FORM_CACHE_ENTRIES};
#[doc(hidden)]
pub use sketch::BenchSketch;
// The sampler's capture path is the user; unused until it lands (hk-sampler).
#[allow(unused_imports)]
pub(crate) use sketch::{CaptureSketch, MAX_CAPTURE_CAPACITY};
pub use span::{KeySpan, MAX_PART_SPANS, MAX_SPAN_KEY_BYTES};
pub(crate) use span::{SpanRef, compact_spans, sum_by_spans};
pub use summary::{HotItem, HotSummary, MAX_HOT_KEY_BYTES, MAX_SUMMARY_ITEMS, SummaryError};
pub use wire::{
    DEFAULT_HOT_KEYS_K, HotKeyEntry, HotKeyMode, HotKeyQuery, HotKeyQueryError, HotKeys, HotPart,
    MAX_HOT_KEYS_K, MAX_HOT_PARTS, NodeHotKeys, UnknownHotKeyMode,
};
