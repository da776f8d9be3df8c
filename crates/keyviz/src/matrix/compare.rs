//! Comparing a matrix with a baseline window: per current row, how its traffic changed.
//!
//! Rows of the two windows need not have the same boundaries (ranges split, merge and
//! get coarsened differently by the row budget), so rows are aligned by key range: every
//! baseline row's traffic is assigned to the current rows its range overlaps. A baseline
//! row inside one current row goes to it whole (exact whenever boundaries coincide or
//! the current row is coarser); a baseline row straddling a current boundary is split in
//! proportion to the overlap, with keys read as base-256 fractions of the key space
//! (their first 16 bytes). Baseline traffic outside every current row (ranges the current
//! window no longer shows) is reported apart, never silently dropped.
//!
//! The baseline is scaled to the current window's length before the ratio and delta are
//! taken, so a 1 h baseline compares with a 10 min window as a rate would.
//!
//! Pure: no clock, no I/O.

use serde::{Deserialize, Serialize};

use super::wire::{Matrix, MatrixRow};

/// How one current row changed against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    /// The current row's `bucket_id` (rows are listed in the current matrix's order).
    pub bucket_id: String,
    /// The row's traffic in the current window.
    pub current: u64,
    /// The baseline traffic of the row's key range, scaled to the current window's
    /// length (see [`Comparison::scale`]).
    pub baseline: f64,
    /// `current - baseline`.
    pub delta: f64,
    /// `current / baseline`; `None` (JSON null) when the baseline is 0 (new traffic, or
    /// none in both windows).
    pub ratio: Option<f64>,
}

/// A whole comparison: one [`RowChange`] per current row, plus the totals it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Inclusive start of the baseline window, unix ms.
    pub baseline_from_unix_ms: i64,
    /// Exclusive end of the baseline window, unix ms.
    pub baseline_to_unix_ms: i64,
    /// Length of the current window in ms that the baseline was scaled to.
    pub current_span_ms: u64,
    /// Factor applied to baseline traffic: `current_span_ms / (baseline_to - baseline_from)`.
    pub scale: f64,
    /// Sum of the current matrix.
    pub current_total: u64,
    /// Sum of the baseline matrix, unscaled.
    pub baseline_total: u64,
    /// Unscaled baseline traffic that fell outside every current row.
    pub baseline_unmatched: f64,
    /// One entry per current row, in the current matrix's order.
    pub rows: Vec<RowChange>,
}

/// Position of a key in the key space as a fraction-like number: its first 16 bytes read
/// as a big-endian integer (shorter keys padded with zeros), as `f64`.
fn position(key: Option<&[u8]>, unbounded_end: bool) -> f64 {
    match key {
        None if unbounded_end => 2f64.powi(128),
        None => 0.0,
        Some(k) => {
            let mut buf = [0u8; 16];
            let n = k.len().min(16);
            buf[..n].copy_from_slice(&k[..n]);
            // Precision loss is fine: this only apportions straddling rows.
            #[allow(clippy::cast_precision_loss)]
            let p = u128::from_be_bytes(buf) as f64;
            p
        }
    }
}

/// Start of a row as a comparable bound (`None` is the empty key).
fn start_of(r: &MatrixRow) -> &[u8] {
    r.start.as_deref().unwrap_or_default()
}

/// Whether `end` (exclusive, `None` = unbounded) lies after `key`.
fn end_after(end: Option<&[u8]>, key: &[u8]) -> bool {
    end.is_none_or(|e| e > key)
}

/// The smaller of two exclusive ends.
fn min_end<'a>(a: Option<&'a [u8]>, b: Option<&'a [u8]>) -> Option<&'a [u8]> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(x), Some(y)) => Some(x.min(y)),
    }
}

/// Share of baseline row `b` that lies inside current row `c` (0..=1).
fn overlap_fraction(b: &MatrixRow, c: &MatrixRow) -> f64 {
    let (bs, cs) = (start_of(b), start_of(c));
    let (be, ce) = (b.end.as_deref(), c.end.as_deref());
    let lo = bs.max(cs);
    let hi = min_end(be, ce);
    if !end_after(hi, lo) {
        return 0.0;
    }
    if lo == bs && hi == be {
        return 1.0;
    }
    let whole = position(be, true) - position(Some(bs), false);
    if whole <= 0.0 {
        // The keys differ beyond 16 bytes: give the row to the current row holding its start.
        return if cs <= bs && end_after(ce, bs) {
            1.0
        } else {
            0.0
        };
    }
    let part = position(hi, true) - position(Some(lo), false);
    (part / whole).clamp(0.0, 1.0)
}

/// Compares `current` with `baseline`. `current_span_ms` and `baseline_span_ms` are the
/// windows' lengths (the API passes the asked bounds, or the columns' span when a bound
/// is open); a zero baseline span compares against nothing (every baseline is 0).
///
/// Rows of both matrices must be ordered by start key with disjoint ranges (what every
/// matrix answer guarantees); the sweep is then linear in the two row counts plus the
/// overlaps. Rows out of order still give a bounded (if approximate) answer: each
/// current row looks at most at every baseline row once.
#[must_use = "pure function"]
pub fn compare(
    current: &Matrix,
    baseline: &Matrix,
    baseline_window: (i64, i64),
    current_span_ms: u64,
) -> Comparison {
    let baseline_span_ms =
        u64::try_from(baseline_window.1.saturating_sub(baseline_window.0)).unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let scale = if baseline_span_ms == 0 {
        0.0
    } else {
        current_span_ms as f64 / baseline_span_ms as f64
    };
    let base_totals: Vec<u64> = baseline.rows.iter().map(MatrixRow::total).collect();
    let mut assigned = vec![0f64; baseline.rows.len()];
    let mut first = 0usize;
    let mut rows = Vec::with_capacity(current.rows.len());
    for c in &current.rows {
        let cs = start_of(c);
        // Baseline rows ending at or before this row's start cannot overlap it or any
        // later row (rows are sorted and disjoint).
        while first < baseline.rows.len() && !end_after(baseline.rows[first].end.as_deref(), cs) {
            first += 1;
        }
        let mut base = 0f64;
        for (i, b) in baseline.rows.iter().enumerate().skip(first) {
            if !end_after(c.end.as_deref(), start_of(b)) {
                break;
            }
            #[allow(clippy::cast_precision_loss)]
            let share = base_totals[i] as f64 * overlap_fraction(b, c);
            base += share;
            assigned[i] += share;
        }
        let current_total = c.total();
        let baseline = base * scale;
        #[allow(clippy::cast_precision_loss)]
        let cur = current_total as f64;
        rows.push(RowChange {
            bucket_id: c.bucket_id.clone(),
            current: current_total,
            baseline,
            delta: cur - baseline,
            ratio: (baseline > 0.0).then(|| cur / baseline),
        });
    }
    #[allow(clippy::cast_precision_loss)]
    let baseline_unmatched = base_totals
        .iter()
        .zip(&assigned)
        .map(|(t, a)| (*t as f64 - a).max(0.0))
        .sum();
    Comparison {
        baseline_from_unix_ms: baseline_window.0,
        baseline_to_unix_ms: baseline_window.1,
        current_span_ms,
        scale,
        current_total: current.total(),
        baseline_total: baseline.total(),
        baseline_unmatched,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Series;

    fn row(id: &str, start: &str, end: Option<&str>, values: Vec<u64>) -> MatrixRow {
        MatrixRow {
            bucket_id: id.into(),
            start: (!start.is_empty()).then(|| start.as_bytes().to_vec()),
            end: end.map(|e| e.as_bytes().to_vec()),
            values,
            ..MatrixRow::default()
        }
    }

    fn matrix(rows: Vec<MatrixRow>) -> Matrix {
        let cols = rows.first().map_or(0, |r| r.values.len());
        Matrix {
            column_unix_ms: (0..cols).map(|i| 1_000 * i as i64 + 1_000_000).collect(),
            rows,
            series: Series::Writes,
            generated_at: String::new(),
            step_ms: 1_000,
            node_id: None,
        }
    }

    #[test]
    fn identical_boundaries_give_exact_ratios_and_deltas() {
        let cur = matrix(vec![
            row("a", "", Some("m"), vec![30, 30]),
            row("b", "m", None, vec![5, 5]),
        ]);
        let base = matrix(vec![
            row("a", "", Some("m"), vec![10, 10]),
            row("b", "m", None, vec![5, 5]),
        ]);
        let c = compare(&cur, &base, (0, 2_000), 2_000);
        assert_eq!(c.scale, 1.0);
        assert_eq!(c.rows[0].current, 60);
        assert_eq!(c.rows[0].baseline, 20.0);
        assert_eq!(c.rows[0].delta, 40.0);
        assert_eq!(c.rows[0].ratio, Some(3.0));
        assert_eq!(c.rows[1].ratio, Some(1.0));
        assert_eq!(c.baseline_unmatched, 0.0);
        assert_eq!((c.current_total, c.baseline_total), (70, 30));
    }

    #[test]
    fn a_longer_baseline_is_scaled_to_the_current_window() {
        let cur = matrix(vec![row("a", "", None, vec![10])]);
        let base = matrix(vec![row("a", "", None, vec![60])]);
        // 60 over 6 s against 10 over 1 s: the same rate.
        let c = compare(&cur, &base, (0, 6_000), 1_000);
        assert!((c.rows[0].baseline - 10.0).abs() < 1e-9, "{c:?}");
        assert_eq!(c.rows[0].ratio.map(|r| (r * 1e6).round()), Some(1e6));
    }

    #[test]
    fn finer_baseline_rows_sum_into_the_coarser_current_row() {
        let cur = matrix(vec![row("all", "a", Some("z"), vec![9])]);
        let base = matrix(vec![
            row("1", "a", Some("f"), vec![1]),
            row("2", "f", Some("k"), vec![2]),
            row("3", "k", Some("z"), vec![3]),
        ]);
        let c = compare(&cur, &base, (0, 1_000), 1_000);
        assert_eq!(c.rows[0].baseline, 6.0);
        assert_eq!(c.rows[0].ratio, Some(1.5));
    }

    #[test]
    fn a_straddling_baseline_row_is_split_by_key_overlap_and_nothing_is_lost() {
        // Baseline "b".."d" straddles the current boundary "c": half on each side.
        let cur = matrix(vec![
            row("x", "a", Some("c"), vec![0]),
            row("y", "c", Some("e"), vec![0]),
        ]);
        let base = matrix(vec![row("b", "b", Some("d"), vec![100])]);
        let c = compare(&cur, &base, (0, 1_000), 1_000);
        assert!((c.rows[0].baseline - 50.0).abs() < 1e-6, "{c:?}");
        assert!((c.rows[1].baseline - 50.0).abs() < 1e-6, "{c:?}");
        assert!(c.baseline_unmatched.abs() < 1e-6);
        assert_eq!(c.rows[0].delta, -c.rows[0].baseline);
    }

    #[test]
    fn new_ranges_have_no_ratio_and_vanished_ranges_are_counted_unmatched() {
        let cur = matrix(vec![row("new", "p", Some("q"), vec![7])]);
        let base = matrix(vec![row("old", "a", Some("b"), vec![4])]);
        let c = compare(&cur, &base, (0, 1_000), 1_000);
        assert_eq!(c.rows[0].ratio, None);
        assert_eq!(c.rows[0].baseline, 0.0);
        assert_eq!(c.rows[0].delta, 7.0);
        assert_eq!(c.baseline_unmatched, 4.0);
    }

    #[test]
    fn an_empty_baseline_window_compares_against_zero() {
        let cur = matrix(vec![row("a", "", None, vec![3])]);
        let base = matrix(vec![row("a", "", None, vec![3])]);
        let c = compare(&cur, &base, (5, 5), 1_000);
        assert_eq!(c.scale, 0.0);
        assert_eq!(c.rows[0].ratio, None);
    }
}
