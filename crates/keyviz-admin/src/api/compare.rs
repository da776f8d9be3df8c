//! `baseline_from_unix_ms` / `baseline_to_unix_ms` on `GET /admin/api/v1/keyviz/matrix`:
//! the cluster matrix of the asked window plus, per row, its change against the baseline
//! window (docs/ADMIN.md, "Comparing two windows").
//!
//! Both windows are ordinary cluster fan-outs (single-flighted and reused like any matrix
//! request, so comparing costs two matrix queries, and a repeated comparison reuses
//! them); the alignment of rows by key range is the core's pure
//! [`keyviz::compare::compare`].

use bytes::Bytes;
use keyviz::Matrix;
use keyviz::compare::{Comparison, compare};
use serde::{Deserialize, Serialize};

use super::query::parse_time;
use super::{ApiError, MatrixParams};
use crate::fanout::status::FanoutStatus;
use crate::host::TermLeader;
use crate::state::AdminState;

/// The parsed baseline window, `[from, to)` in unix ms.
pub(crate) type Baseline = (i64, i64);

/// Reads the baseline parameters: absent (both) means no comparison; one without the
/// other, a non-integer, or `from >= to` is a 400.
///
/// # Errors
/// 400 `invalid_query` naming the parameter.
pub(crate) fn parse_baseline(query: Option<&str>) -> Result<Option<Baseline>, ApiError> {
    let q = query.unwrap_or("");
    let from = parse_time(q, "baseline_from_unix_ms")?;
    let to = parse_time(q, "baseline_to_unix_ms")?;
    match (from, to) {
        (None, None) => Ok(None),
        (Some(f), Some(t)) if f < t => Ok(Some((f, t))),
        (Some(_), Some(_)) => Err(ApiError::invalid_query(
            "baseline_from_unix_ms must be before baseline_to_unix_ms",
        )),
        _ => Err(ApiError::invalid_query(
            "baseline_from_unix_ms and baseline_to_unix_ms must be given together",
        )),
    }
}

/// A fan-out body decoded back (the compare path needs the matrix itself).
#[derive(Deserialize)]
struct Decoded {
    #[serde(flatten)]
    matrix: Matrix,
    #[serde(default)]
    fanout: Option<FanoutStatus>,
    /// The current window's term leaders, passed through (diff mode names leaders too).
    #[serde(default)]
    leaders: Vec<TermLeader>,
    /// The current window's per-node coverage, passed through as it was encoded (diff mode
    /// keeps the outage lanes).
    #[serde(default)]
    coverage: Option<serde_json::Value>,
}

/// The compare response: the current window's matrix and fan-out, the baseline's fan-out
/// status and the comparison.
#[derive(Serialize)]
struct Compared<'a> {
    #[serde(flatten)]
    matrix: &'a Matrix,
    #[serde(skip_serializing_if = "Option::is_none")]
    fanout: Option<&'a FanoutStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_fanout: Option<&'a FanoutStatus>,
    compare: &'a Comparison,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    leaders: &'a [TermLeader],
    #[serde(skip_serializing_if = "Option::is_none")]
    coverage: Option<&'a serde_json::Value>,
}

/// The length of the current window: its asked bounds, with an open bound replaced by the
/// matrix's first column start or last column end (0 for an empty matrix).
fn current_span(m: &Matrix, params: &MatrixParams) -> u64 {
    let step = i64::try_from(m.step_ms).unwrap_or(0);
    let from = params.from_unix_ms.or(m.column_unix_ms.first().copied());
    let to = params
        .to_unix_ms
        .or(m.column_unix_ms.last().map(|t| t.saturating_add(step)));
    match (from, to) {
        (Some(f), Some(t)) => u64::try_from(t.saturating_sub(f)).unwrap_or(0),
        _ => 0,
    }
}

fn decode(body: &Bytes) -> Result<Decoded, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::internal(format!("decode matrix: {e}")))
}

/// Runs the current and the baseline fan-outs concurrently and encodes the comparison.
/// The baseline uses the same series, rows and key range as the current window.
///
/// # Errors
/// Either fan-out's error; 500 if a body cannot be decoded again.
pub(crate) async fn compared(
    state: &AdminState,
    params: MatrixParams,
    baseline: Baseline,
) -> Result<Bytes, ApiError> {
    let mut base_params = params.clone();
    base_params.from_unix_ms = Some(baseline.0);
    base_params.to_unix_ms = Some(baseline.1);
    let (cur, base) = tokio::join!(
        super::matrix::cluster_matrix(state, params.clone()),
        super::matrix::cluster_matrix(state, base_params)
    );
    let cur = cur.as_ref().clone()?;
    let base = base.as_ref().clone()?;
    tokio::task::spawn_blocking(move || {
        let cur = decode(&cur)?;
        let base = decode(&base)?;
        let cmp = compare(
            &cur.matrix,
            &base.matrix,
            baseline,
            current_span(&cur.matrix, &params),
        );
        let mut body = serde_json::to_vec(&Compared {
            matrix: &cur.matrix,
            fanout: cur.fanout.as_ref(),
            baseline_fanout: base.fanout.as_ref(),
            compare: &cmp,
            leaders: &cur.leaders,
            coverage: cur.coverage.as_ref(),
        })
        .map_err(|e| ApiError::internal(format!("encode comparison: {e}")))?;
        body.push(b'\n');
        Ok(Bytes::from(body))
    })
    .await
    .map_err(ApiError::internal)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_need_both_ordered_integer_bounds() {
        assert_eq!(parse_baseline(None).ok(), Some(None));
        assert_eq!(parse_baseline(Some("series=reads")).ok(), Some(None));
        assert_eq!(
            parse_baseline(Some("baseline_from_unix_ms=5&baseline_to_unix_ms=9")).ok(),
            Some(Some((5, 9)))
        );
        for (q, needle) in [
            ("baseline_from_unix_ms=5", "must be given together"),
            ("baseline_to_unix_ms=5", "must be given together"),
            (
                "baseline_from_unix_ms=9&baseline_to_unix_ms=5",
                "must be before",
            ),
            (
                "baseline_from_unix_ms=x&baseline_to_unix_ms=5",
                "baseline_from_unix_ms must be an integer",
            ),
        ] {
            assert!(
                parse_baseline(Some(q))
                    .is_err_and(|e| e.code == "invalid_query" && e.message.contains(needle)),
                "{q}"
            );
        }
    }

    #[test]
    fn the_current_span_uses_asked_bounds_and_falls_back_to_the_columns() {
        let mut m = Matrix::empty(keyviz::Series::Writes, 1_000, String::new());
        m.column_unix_ms = vec![10_000, 11_000, 12_000];
        let mut p = super::super::parse_matrix_query(None, 16).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(current_span(&m, &p), 3_000);
        p.from_unix_ms = Some(5_000);
        assert_eq!(current_span(&m, &p), 8_000);
        p.to_unix_ms = Some(65_000);
        assert_eq!(current_span(&m, &p), 60_000);
        p.from_unix_ms = None;
        p.to_unix_ms = None;
        m.column_unix_ms.clear();
        assert_eq!(current_span(&m, &p), 0);
    }
}
