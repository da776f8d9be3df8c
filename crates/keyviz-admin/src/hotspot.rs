//! Hotspot signals for `/metrics`: a handful of numbers per series, computed from one
//! cluster matrix (and per-node totals), with labels that stay bounded — one `series`
//! label, never a key or a route (docs/ADMIN.md, "Hotspot metrics").
//!
//! The functions here are pure; [`crate::metrics`] runs the queries and caches the result.

use keyviz::Matrix;

/// Columns (steps) that make "recent": the shares and loads are over the newest ones.
pub const RECENT_COLUMNS: usize = 5;
/// Least older columns needed before a z-score is computed (otherwise it is 0).
pub const MIN_HISTORY_COLUMNS: usize = 5;
/// Share of a column's traffic a row must take for the column to count as "hot" for it.
pub const HOT_SHARE: f64 = 0.25;
/// Cap on |z| (a quiet history with a sudden hot range would otherwise give huge values).
pub const Z_CAP: f64 = 100.0;

/// The signals of one series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// Share (0..=1) of the recent traffic taken by the hottest row; 0 without traffic.
    pub hottest_share: f64,
    /// Max/mean of the recent load of the raft groups seen in the window; 0 without traffic.
    pub group_imbalance: f64,
    /// z-score of the hottest row's recent mean per column against its own older columns
    /// (σ floored at √μ and at 1: counts are Poisson-like), capped at ±[`Z_CAP`]; 0 when
    /// fewer than [`MIN_HISTORY_COLUMNS`] older columns exist.
    pub hottest_zscore: f64,
    /// How long (seconds) the recent hottest row has taken at least [`HOT_SHARE`] of
    /// every column, counting back from the newest column.
    pub hot_seconds: f64,
    /// Traffic of the recent columns.
    pub recent_total: u64,
}

/// Max over mean of `loads`; 0 when empty or all zero.
#[must_use = "pure function"]
pub fn imbalance(loads: &[u64]) -> f64 {
    let sum: u128 = loads.iter().map(|v| u128::from(*v)).sum();
    if loads.is_empty() || sum == 0 {
        return 0.0;
    }
    let max = loads.iter().copied().max().unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let r = max as f64 / (sum as f64 / loads.len() as f64);
    r
}

/// Computes the signals of `m` (rows × columns of one series, oldest column first).
#[must_use = "pure function"]
pub fn signals(m: &Matrix) -> Signals {
    let cols = m.column_unix_ms.len();
    if cols == 0 || m.rows.is_empty() {
        return Signals::default();
    }
    let recent_from = cols.saturating_sub(RECENT_COLUMNS);
    let recent = |values: &[u64]| -> u64 {
        values
            .get(recent_from..)
            .unwrap_or_default()
            .iter()
            .fold(0u64, |a, v| a.saturating_add(*v))
    };
    let totals: Vec<u64> = m.rows.iter().map(|r| recent(&r.values)).collect();
    let recent_total = totals.iter().fold(0u64, |a, v| a.saturating_add(*v));
    let Some((hot, &hot_total)) = totals
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
    else {
        return Signals::default();
    };
    if recent_total == 0 {
        return Signals::default();
    }
    #[allow(clippy::cast_precision_loss)]
    let hottest_share = hot_total as f64 / recent_total as f64;

    // Raft groups: every group seen in any cell of the window, loaded by its recent cells.
    let mut groups: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for r in &m.rows {
        for (c, g) in r.raft_group_ids.iter().enumerate() {
            if *g == 0 {
                continue;
            }
            let e = groups.entry(*g).or_insert(0);
            if c >= recent_from {
                *e = e.saturating_add(r.values.get(c).copied().unwrap_or(0));
            }
        }
    }
    let loads: Vec<u64> = groups.into_values().collect();
    let group_imbalance = imbalance(&loads);

    // z-score of the hottest row against its older columns.
    let row = &m.rows[hot].values;
    #[allow(clippy::cast_precision_loss)]
    let hottest_zscore = if recent_from >= MIN_HISTORY_COLUMNS {
        let hist = &row[..recent_from];
        let n = hist.len() as f64;
        let mean = hist.iter().map(|v| *v as f64).sum::<f64>() / n;
        let var = hist.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n;
        let sigma = var.sqrt().max(mean.sqrt()).max(1.0);
        let recent_mean = hot_total as f64 / (cols - recent_from) as f64;
        ((recent_mean - mean) / sigma).clamp(-Z_CAP, Z_CAP)
    } else {
        0.0
    };

    // How long the hottest row has held its share, newest column backwards.
    let mut streak = 0usize;
    for c in (0..cols).rev() {
        let col_total = m.rows.iter().fold(0u64, |a, r| {
            a.saturating_add(r.values.get(c).copied().unwrap_or(0))
        });
        let v = row.get(c).copied().unwrap_or(0);
        #[allow(clippy::cast_precision_loss)]
        let hot_here = col_total > 0 && v as f64 >= HOT_SHARE * col_total as f64;
        if !hot_here {
            break;
        }
        streak += 1;
    }
    #[allow(clippy::cast_precision_loss)]
    let hot_seconds = streak as f64 * m.step_ms as f64 / 1000.0;
    Signals {
        hottest_share,
        group_imbalance,
        hottest_zscore,
        hot_seconds,
        recent_total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyviz::{MatrixRow, Series};

    fn m(rows: Vec<(Vec<u64>, Vec<u64>)>) -> Matrix {
        let cols = rows[0].0.len();
        Matrix {
            column_unix_ms: (0..cols)
                .map(|i| 60_000 * i as i64 + 1_700_000_000_000)
                .collect(),
            rows: rows
                .into_iter()
                .enumerate()
                .map(|(i, (values, groups))| MatrixRow {
                    bucket_id: format!("route:{i}"),
                    start: Some(vec![b'a' + i as u8]),
                    end: Some(vec![b'b' + i as u8]),
                    raft_group_ids: groups,
                    values,
                    ..MatrixRow::default()
                })
                .collect(),
            series: Series::Writes,
            generated_at: String::new(),
            step_ms: 60_000,
            node_id: None,
        }
    }

    #[test]
    fn imbalance_is_max_over_mean() {
        assert_eq!(imbalance(&[]), 0.0);
        assert_eq!(imbalance(&[0, 0]), 0.0);
        assert_eq!(imbalance(&[5, 5, 5]), 1.0);
        assert_eq!(imbalance(&[9, 0, 0]), 3.0);
        assert_eq!(imbalance(&[6, 2]), 1.5);
    }

    #[test]
    fn a_sudden_hot_range_has_a_high_share_z_score_and_a_short_hot_time() {
        // 12 columns: 10 quiet ones, then row 0 takes 90 % for the last 2.
        let mut hot = vec![1u64; 12];
        hot[10] = 90;
        hot[11] = 90;
        let cold = vec![10u64; 12];
        let s = signals(&m(vec![(hot, vec![1; 12]), (cold, vec![2; 12])]));
        // Recent = last 5 columns: row 0 has 1+1+1+90+90 = 183 of 183 + 50.
        assert!((s.hottest_share - 183.0 / 233.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.recent_total, 233);
        // Groups 1 and 2 loaded 183 and 50: max/mean = 183 / 116.5.
        assert!((s.group_imbalance - 183.0 / 116.5).abs() < 1e-9, "{s:?}");
        // History: seven columns of 1 (mean 1, σ floored to 1); recent mean 36.6.
        assert!((s.hottest_zscore - 35.6).abs() < 1e-9, "{s:?}");
        // Hot (≥ 25 %) only in the last two columns: 2 minutes.
        assert_eq!(s.hot_seconds, 120.0);
    }

    #[test]
    fn a_range_hot_for_the_whole_window_counts_every_column_and_a_steady_one_has_z_zero() {
        let s = signals(&m(vec![
            (vec![50; 15], vec![1; 15]),
            (vec![10; 15], vec![2; 15]),
        ]));
        assert_eq!(s.hot_seconds, 15.0 * 60.0);
        assert_eq!(s.hottest_zscore, 0.0);
        assert!((s.hottest_share - 50.0 / 60.0).abs() < 1e-9);
    }

    #[test]
    fn no_traffic_or_short_history_gives_zeros_not_nan() {
        let s = signals(&m(vec![(vec![0; 8], vec![1; 8])]));
        assert_eq!(s, Signals::default());
        let s = signals(&m(vec![(vec![3; 4], vec![0; 4])]));
        assert_eq!(s.hottest_share, 1.0);
        assert_eq!(
            s.hottest_zscore, 0.0,
            "4 columns: no history beyond the recent 5"
        );
        assert_eq!(s.group_imbalance, 0.0, "no known group");
        let empty = Matrix::empty(Series::Reads, 1_000, String::new());
        assert_eq!(signals(&empty), Signals::default());
    }
}
