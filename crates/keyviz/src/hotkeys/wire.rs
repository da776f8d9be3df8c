//! The wire types of hot keys: the query, one node's answer (what a peer
//! sends), and the cluster answer (what `GET /admin/api/v1/keyviz/hotkeys`,
//! `HOTKEYS GET` and `keyviz top` show).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::span::KeySpan;
use super::summary::{HotSummary, SummaryError};
use crate::matrix::Series;

/// Most keys a query may ask for.
pub const MAX_HOT_KEYS_K: usize = 1_000;
/// Keys returned when a query does not say.
pub const DEFAULT_HOT_KEYS_K: usize = 20;
/// Most parts a [`NodeHotKeys`] accepted from outside may carry.
pub const MAX_HOT_PARTS: usize = 65_536;

/// How a node captures key names (`--hot-keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HotKeyMode {
    /// No key is captured; hot-key queries answer with no keys.
    Off,
    /// Keys are kept as a keyed hash (keyed with the cluster secret), plus the
    /// prefix up to an optional separator, so no key name is ever stored.
    Hashed,
    /// Keys are kept as written (cut at `MAX_HOT_KEY_BYTES`); the default, as
    /// Redis and Valkey show key names.
    #[default]
    Raw,
}

impl HotKeyMode {
    /// The flag and wire name (`off`, `hashed`, `raw`).
    #[must_use = "pure function"]
    pub fn as_str(self) -> &'static str {
        match self {
            HotKeyMode::Off => "off",
            HotKeyMode::Hashed => "hashed",
            HotKeyMode::Raw => "raw",
        }
    }
}

impl fmt::Display for HotKeyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not `off`, `hashed` or `raw`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hot-key mode must be one of: off, hashed, raw")]
pub struct UnknownHotKeyMode;

impl FromStr for HotKeyMode {
    type Err = UnknownHotKeyMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(HotKeyMode::Off),
            "hashed" => Ok(HotKeyMode::Hashed),
            "raw" => Ok(HotKeyMode::Raw),
            _ => Err(UnknownHotKeyMode),
        }
    }
}

/// What to summarise: the counter, a time range and a key range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotKeyQuery {
    /// One of `reads`, `writes`, `read_bytes`, `write_bytes`.
    pub series: Series,
    /// Inclusive lower bound on column window start; `None` = unbounded.
    pub from_unix_ms: Option<i64>,
    /// Exclusive upper bound on column window start; `None` = unbounded.
    pub to_unix_ms: Option<i64>,
    /// Only rows overlapping `[key_start, key_end)` (and, in raw mode, only keys
    /// inside it); `None` = from the first key.
    pub key_start: Option<Vec<u8>>,
    /// Exclusive end of the key filter; `None` = unbounded.
    pub key_end: Option<Vec<u8>>,
    /// Keys wanted, 1 ..= [`MAX_HOT_KEYS_K`].
    pub k: usize,
}

impl Default for HotKeyQuery {
    fn default() -> Self {
        HotKeyQuery {
            series: Series::Writes,
            from_unix_ms: None,
            to_unix_ms: None,
            key_start: None,
            key_end: None,
            k: DEFAULT_HOT_KEYS_K,
        }
    }
}

/// A hot-key query is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HotKeyQueryError {
    /// Hot keys are kept for four series only.
    #[error("hot keys are kept for reads, writes, read_bytes and write_bytes, not {0}")]
    Series(Series),
    /// `k` is 0 or above [`MAX_HOT_KEYS_K`].
    #[error("k must be between 1 and {MAX_HOT_KEYS_K}, got {0}")]
    K(usize),
    /// `from_unix_ms >= to_unix_ms`.
    #[error("from_unix_ms must be before to_unix_ms")]
    EmptyTime,
    /// `key_start >= key_end`.
    #[error("key_start must be before key_end")]
    EmptyKeys,
}

impl HotKeyQuery {
    /// Checks the documented ranges.
    ///
    /// # Errors
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), HotKeyQueryError> {
        if !matches!(
            self.series,
            Series::Reads | Series::Writes | Series::ReadBytes | Series::WriteBytes
        ) {
            return Err(HotKeyQueryError::Series(self.series));
        }
        if self.k == 0 || self.k > MAX_HOT_KEYS_K {
            return Err(HotKeyQueryError::K(self.k));
        }
        if let (Some(f), Some(t)) = (self.from_unix_ms, self.to_unix_ms)
            && f >= t
        {
            return Err(HotKeyQueryError::EmptyTime);
        }
        if let (Some(s), Some(e)) = (&self.key_start, &self.key_end)
            && s >= e
        {
            return Err(HotKeyQueryError::EmptyKeys);
        }
        Ok(())
    }
}

/// One identity's share of a node's answer.
///
/// For read series `group` and `term` are 0 and parts of different nodes add
/// up. For write series a part holds one (raft group, leader term): every
/// replica counts the same writes, so the cluster keeps one replica's part per
/// identity (see [`merge_hot_keys`](crate::hotkeys::merge_hot_keys)). `0` means
/// "unknown identity".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotPart {
    /// Raft group of the writes (0 for reads or unknown).
    #[serde(default)]
    pub group: u64,
    /// Leader term of the writes (0 for reads or unknown).
    #[serde(default)]
    pub term: u64,
    /// The keys and exact total of this identity's traffic in the query's
    /// time and key range.
    pub summary: HotSummary,
    /// Key ranges all of this part's traffic lies in (its rows' ranges,
    /// joined, at most [`MAX_PART_SPANS`](super::MAX_PART_SPANS)), so the
    /// merge can combine parts of disjoint ranges key-disjointly; empty:
    /// every key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<KeySpan>,
}

/// One node's hot keys for a [`HotKeyQuery`]: what a peer answers the
/// aggregator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHotKeys {
    /// The series summarised.
    pub series: Series,
    /// Capture mode of the node.
    pub mode: HotKeyMode,
    /// The node that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Parts, one per identity (reads: one part).
    #[serde(default)]
    pub parts: Vec<HotPart>,
}

impl NodeHotKeys {
    /// Checks every part, so a malformed peer answer is refused as a whole.
    ///
    /// # Errors
    /// Too many parts, or the first part whose summary breaks an invariant.
    pub fn validate(&self) -> Result<(), SummaryError> {
        if self.parts.len() > MAX_HOT_PARTS {
            return Err(SummaryError::TooManyItems(self.parts.len()));
        }
        self.parts.iter().try_for_each(|p| {
            p.summary.validate()?;
            if p.spans.len() > super::MAX_PART_SPANS {
                return Err(SummaryError::Span);
            }
            p.spans.iter().try_for_each(KeySpan::validate)
        })
    }

    /// Exact total over every part (saturating).
    #[must_use = "pure function"]
    pub fn total(&self) -> u64 {
        self.parts
            .iter()
            .fold(0u64, |a, p| a.saturating_add(p.summary.total))
    }
}

/// One key of the cluster answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HotKeyEntry {
    /// The key (base64 on the wire).
    #[serde(with = "super::summary::b64")]
    pub key: Vec<u8>,
    /// A printable label ([`key_preview`](crate::key_preview)).
    pub preview: String,
    /// Best estimate of its count.
    pub estimate: u64,
    /// Lower bound of its count.
    pub lower: u64,
    /// Upper bound of its count.
    pub upper: u64,
    /// `estimate / total` (0 when the total is 0).
    pub share: f64,
    /// The key was cut at `MAX_HOT_KEY_BYTES`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// The cluster's hot keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HotKeys {
    /// The series summarised.
    pub series: Series,
    /// Capture mode of the nodes merged (the first input's; inputs of another
    /// mode are left out with a warning).
    pub mode: HotKeyMode,
    /// Hottest first, at most `k`.
    pub keys: Vec<HotKeyEntry>,
    /// Exact total of the selected range and window (writes deduplicated per
    /// identity, as the matrix merge does).
    pub total: u64,
    /// Upper bound on the count of any key not listed.
    pub floor: u64,
    /// True when any bound is statistical (sampled capture).
    pub sampled: bool,
    /// Why an input was left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}
