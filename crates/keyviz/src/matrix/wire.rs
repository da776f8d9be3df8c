//! The wire types of `GET /admin/api/v1/keyviz/matrix`.
//!
//! Field names and shapes follow the reference JSON so existing clients keep
//! working; every field we add (`step_ms`, `node_id`, `preview`) is optional on
//! input and additive on output.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::MatrixError;

/// Most columns [`Matrix::validate`] accepts (the history's own hard cap).
pub const MAX_MATRIX_COLUMNS: usize = crate::config::MAX_COLUMNS;
/// Most cells (rows × columns) [`Matrix::validate`] accepts: 32 Mi, 16 × a
/// 1024 × 2048 matrix, and far more than a 64 MiB JSON body can carry densely.
pub const MAX_MATRIX_CELLS: usize = 1 << 25;
/// Column timestamps must lie in years 0000–9999 (RFC 3339's range).
const MIN_UNIX_MS: i64 = -62_167_219_200_000;
const MAX_UNIX_MS: i64 = 253_402_300_799_999;

/// Which counter a matrix shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Series {
    /// Reads served, by leaders and followers together.
    Reads,
    /// Writes applied by the Raft leader (the default, as in the reference).
    #[default]
    Writes,
    /// Key plus value bytes of reads.
    ReadBytes,
    /// Key plus value bytes of writes.
    WriteBytes,
    /// Reads served by a group leader only.
    LeaderReads,
    /// Reads served by followers only.
    FollowerReads,
}

impl Series {
    /// Every series, in the order the UI lists them.
    pub const ALL: [Series; 6] = [
        Series::Writes,
        Series::Reads,
        Series::WriteBytes,
        Series::ReadBytes,
        Series::LeaderReads,
        Series::FollowerReads,
    ];

    /// The wire name (`reads`, `writes`, `read_bytes`, ...).
    #[must_use = "pure function"]
    pub fn as_str(self) -> &'static str {
        match self {
            Series::Reads => "reads",
            Series::Writes => "writes",
            Series::ReadBytes => "read_bytes",
            Series::WriteBytes => "write_bytes",
            Series::LeaderReads => "leader_reads",
            Series::FollowerReads => "follower_reads",
        }
    }

    /// True for the write series, which the cluster merge deduplicates per
    /// (raft group, leader term); read series are summed across nodes.
    #[must_use = "pure function"]
    pub fn is_write(self) -> bool {
        matches!(self, Series::Writes | Series::WriteBytes)
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not a known series name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "series must be one of: reads, writes, read_bytes, write_bytes, leader_reads, follower_reads"
)]
pub struct UnknownSeries;

impl FromStr for Series {
    type Err = UnknownSeries;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Series::ALL
            .into_iter()
            .find(|series| series.as_str() == s)
            .ok_or(UnknownSeries)
    }
}

/// One heatmap: columns are step windows, rows are key ranges.
///
/// Invariants (checked by [`Matrix::validate`]): `column_unix_ms` strictly
/// increases; every row's `values` (and, when present, `raft_group_ids`,
/// `leader_terms`, `conflicts`) has one entry per column; bucket ids are unique.
/// Column timestamps are window starts aligned to `step_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    /// Window start of each column, unix milliseconds.
    #[serde(default)]
    pub column_unix_ms: Vec<i64>,
    /// Rows ordered by start key.
    #[serde(default)]
    pub rows: Vec<MatrixRow>,
    /// The series the values count.
    #[serde(default)]
    pub series: Series,
    /// When the matrix was built (RFC 3339 UTC).
    #[serde(default)]
    pub generated_at: String,
    /// Column width in milliseconds; 0 when the producer did not say (old peers).
    #[serde(default)]
    pub step_ms: u64,
    /// Identity of the node that produced the matrix, used for self-alias detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

impl Matrix {
    /// An empty matrix of `series`.
    #[must_use = "constructor"]
    pub fn empty(series: Series, step_ms: u64, generated_at: String) -> Matrix {
        Matrix {
            column_unix_ms: Vec::new(),
            rows: Vec::new(),
            series,
            generated_at,
            step_ms,
            node_id: None,
        }
    }

    /// Checks the invariants written on the type, so a peer's malformed answer is
    /// rejected as a whole before it can corrupt a merge.
    ///
    /// # Errors
    /// The first broken invariant, as a [`MatrixError`].
    pub fn validate(&self) -> Result<(), MatrixError> {
        let (rows, columns) = (self.rows.len(), self.column_unix_ms.len());
        if columns > MAX_MATRIX_COLUMNS || rows.saturating_mul(columns) > MAX_MATRIX_CELLS {
            return Err(MatrixError::TooLarge {
                rows,
                columns,
                limit: MAX_MATRIX_CELLS,
            });
        }
        if let Some(i) = self
            .column_unix_ms
            .iter()
            .position(|t| !(MIN_UNIX_MS..=MAX_UNIX_MS).contains(t))
        {
            return Err(MatrixError::ColumnOutOfRange(i));
        }
        if let Some(i) = self.column_unix_ms.windows(2).position(|w| w[0] >= w[1]) {
            return Err(MatrixError::ColumnsNotIncreasing(i + 1));
        }
        let expected = self.column_unix_ms.len();
        let mut seen = std::collections::HashSet::with_capacity(self.rows.len());
        for (i, row) in self.rows.iter().enumerate() {
            if row.bucket_id.is_empty() {
                return Err(MatrixError::EmptyBucketId(i));
            }
            if !seen.insert(row.bucket_id.as_str()) {
                return Err(MatrixError::DuplicateBucket(row.bucket_id.clone()));
            }
            let check = |field: &'static str, got: usize, optional: bool| {
                if got == expected || (optional && got == 0) {
                    Ok(())
                } else {
                    Err(MatrixError::LengthMismatch {
                        bucket_id: row.bucket_id.clone(),
                        field,
                        got,
                        expected,
                    })
                }
            };
            check("values", row.values.len(), false)?;
            check("raft_group_ids", row.raft_group_ids.len(), true)?;
            check("leader_terms", row.leader_terms.len(), true)?;
            check("conflicts", row.conflicts.len(), true)?;
            if let (Some(start), Some(end)) = (&row.start, &row.end)
                && start >= end
            {
                return Err(MatrixError::InvertedRange(row.bucket_id.clone()));
            }
            check_lanes(row, expected)?;
        }
        Ok(())
    }

    /// Sum of every cell, saturating.
    #[must_use = "pure function"]
    pub fn total(&self) -> u64 {
        self.rows
            .iter()
            .flat_map(|r| r.values.iter())
            .fold(0u64, |acc, v| acc.saturating_add(*v))
    }
}

/// Checks [`MatrixRow::write_lanes`]: columns in range and non-decreasing, at
/// most [`MAX_CELL_LANES`] shares per cell, and each listed cell's shares
/// summing to its value. O(lanes).
fn check_lanes(row: &MatrixRow, columns: usize) -> Result<(), MatrixError> {
    let bad = |detail: String| MatrixError::BadWriteLanes {
        bucket_id: row.bucket_id.clone(),
        detail,
    };
    let mut i = 0;
    while i < row.write_lanes.len() {
        let column = row.write_lanes[i].column;
        let j = column as usize;
        if j >= columns {
            return Err(bad(format!(
                "lane column {column} is past the {columns} columns"
            )));
        }
        let mut sum = 0u64;
        let mut n = 0usize;
        while let Some(l) = row.write_lanes.get(i).filter(|l| l.column == column) {
            sum = sum.saturating_add(l.value);
            n += 1;
            i += 1;
        }
        if n > MAX_CELL_LANES {
            return Err(bad(format!(
                "column {column} lists {n} lanes, over {MAX_CELL_LANES}"
            )));
        }
        if row.write_lanes.get(i).is_some_and(|l| l.column < column) {
            return Err(bad("lanes are not ordered by column".to_owned()));
        }
        if row.values.get(j).copied() != Some(sum) {
            return Err(bad(format!(
                "lanes of column {column} do not sum to its value"
            )));
        }
    }
    Ok(())
}

/// One key range of a [`Matrix`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MatrixRow {
    /// Stable row identity across nodes: `route:<id>`, `route:<id>#<sub>`, or
    /// `virtual:<hash of the range>` for coarsened rows.
    pub bucket_id: String,
    /// The reference's adapter label; this store does not split by adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// First key of the range; `None` (JSON null) is the empty key.
    #[serde(default, with = "b64_opt")]
    pub start: Option<Vec<u8>>,
    /// End of the range, exclusive; `None` (JSON null) is unbounded.
    #[serde(default, with = "b64_opt")]
    pub end: Option<Vec<u8>>,
    /// True when the row stands for several routes (a virtual bucket or rows
    /// coarsened by the row budget).
    #[serde(default)]
    pub aggregate: bool,
    /// Member routes of an aggregate row (at most the listing cap).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_ids: Vec<u64>,
    /// True when the aggregate has more members than `route_ids` lists.
    #[serde(default, skip_serializing_if = "is_false")]
    pub route_ids_truncated: bool,
    /// Number of routes the row stands for.
    #[serde(default)]
    pub route_count: u64,
    /// One value per column.
    #[serde(default)]
    pub values: Vec<u64>,
    /// True when any cell conflicted in the cluster merge.
    #[serde(default, skip_serializing_if = "is_false")]
    pub conflict: bool,
    /// Per-cell conflict flags; empty when no cell conflicted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<bool>,
    /// Raft group that wrote each cell (0 = unknown).
    #[serde(default)]
    pub raft_group_ids: Vec<u64>,
    /// Leader term of each cell's writes (0 = unknown).
    #[serde(default)]
    pub leader_terms: Vec<u64>,
    /// Printable label of `start` (see [`key_preview`](crate::key_preview)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// Smallest key observed in the row (raw mode; the kept prefix in hashed
    /// mode); absent when none was observed. A real key, unlike `start`, which
    /// may be a computed sub-range boundary.
    #[serde(default, with = "b64_opt", skip_serializing_if = "Option::is_none")]
    pub first_key: Option<Vec<u8>>,
    /// Largest key observed in the row, as `first_key`.
    #[serde(default, with = "b64_opt", skip_serializing_if = "Option::is_none")]
    pub last_key: Option<Vec<u8>>,
    /// Write series only: the per-(group, term) shares of every cell counted
    /// under more than one identity (a leader change inside the window, which
    /// coarse history tiers make common), by column. A listed cell's shares
    /// sum to its value; `raft_group_ids`/`leader_terms` still name its
    /// largest share. The cluster merge deduplicates replicas per share, so a
    /// coarse cell merges exactly. Absent when every cell has one identity,
    /// and from older producers. At most [`MAX_CELL_LANES`] shares per cell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_lanes: Vec<CellLane>,
}

/// Most identity shares one cell lists in [`MatrixRow::write_lanes`]; a
/// producer folds further identities into one identity-less `(0, 0)` share
/// (the merge then takes that cell's largest node total, flagging disagreement).
pub const MAX_CELL_LANES: usize = 32;

/// One (raft group, leader term) share of a write cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellLane {
    /// Index into [`Matrix::column_unix_ms`].
    pub column: u32,
    /// Raft group (0 = unknown).
    pub group: u64,
    /// Leader term (0 = unknown).
    pub term: u64,
    /// The cell's count under this identity.
    pub value: u64,
}

impl MatrixRow {
    /// Sum of the row's values, saturating.
    #[must_use = "pure function"]
    pub fn total(&self) -> u64 {
        self.values.iter().fold(0u64, |a, v| a.saturating_add(*v))
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Optional key bytes as standard padded base64; empty and absent are both null.
mod b64_opt {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) if !bytes.is_empty() => {
                s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            _ => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
        match text {
            None => Ok(None),
            Some(t) if t.is_empty() => Ok(None),
            Some(t) => base64::engine::general_purpose::STANDARD
                .decode(t.as_bytes())
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("invalid base64 key: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, values: Vec<u64>) -> MatrixRow {
        MatrixRow {
            bucket_id: id.into(),
            route_count: 1,
            raft_group_ids: vec![0; values.len()],
            leader_terms: vec![0; values.len()],
            values,
            ..MatrixRow::default()
        }
    }

    #[test]
    fn wire_json_uses_reference_field_names_and_omits_false_flags() {
        let m = Matrix {
            column_unix_ms: vec![60_000],
            rows: vec![MatrixRow {
                start: Some(b"a".to_vec()),
                end: None,
                ..row("route:1", vec![4])
            }],
            series: Series::Writes,
            generated_at: "2023-11-14T22:13:20Z".into(),
            step_ms: 60_000,
            node_id: None,
        };
        let json = serde_json::to_value(&m).expect("serializes");
        let r = &json["rows"][0];
        assert_eq!(r["bucket_id"], "route:1");
        assert_eq!(r["start"], "YQ==");
        assert!(r["end"].is_null());
        assert!(r.get("conflict").is_none());
        assert!(r.get("conflicts").is_none());
        assert!(r.get("route_ids").is_none());
        assert_eq!(json["series"], "writes");
        let back: Matrix = serde_json::from_value(json).expect("round trips");
        assert_eq!(back, m);
    }

    #[test]
    fn reference_json_without_additive_fields_decodes() {
        let json = r#"{"column_unix_ms":[1],"rows":[{"bucket_id":"route:1","start":null,"end":null,
            "aggregate":false,"route_count":1,"values":[3]}],"series":"reads","generated_at":"x"}"#;
        let m: Matrix = serde_json::from_str(json).expect("decodes");
        assert_eq!(m.step_ms, 0);
        assert!(m.rows[0].raft_group_ids.is_empty());
        assert!(m.validate().is_ok());
    }

    #[test]
    fn invalid_base64_and_unknown_series_are_errors() {
        let bad = r#"{"column_unix_ms":[],"rows":[{"bucket_id":"a","start":"%%%","values":[]}]}"#;
        assert!(serde_json::from_str::<Matrix>(bad).is_err());
        assert!("bogus".parse::<Series>().is_err());
        assert_eq!("read_bytes".parse::<Series>(), Ok(Series::ReadBytes));
    }

    #[test]
    fn validate_rejects_length_mismatch_and_unsorted_columns() {
        let mut m = Matrix::empty(Series::Reads, 1000, String::new());
        m.column_unix_ms = vec![1000, 2000];
        m.rows.push(row("route:1", vec![1]));
        assert!(matches!(
            m.validate(),
            Err(MatrixError::LengthMismatch { .. })
        ));
        m.rows[0] = row("route:1", vec![1, 2]);
        assert!(m.validate().is_ok());
        m.column_unix_ms = vec![2000, 1000];
        assert_eq!(m.validate(), Err(MatrixError::ColumnsNotIncreasing(1)));
        m.column_unix_ms = vec![1000, 2000];
        m.rows.push(row("route:1", vec![1, 2]));
        assert!(matches!(m.validate(), Err(MatrixError::DuplicateBucket(_))));
    }
}
