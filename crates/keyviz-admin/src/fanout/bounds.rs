//! Bounds a peer's counts must respect before they are merged.
//!
//! The merge adds cells of every node (and of the rows it coarsens) with saturating
//! arithmetic: a peer sending 2^64−1 would saturate every sum it touches and pass as a
//! healthy answer. A column of one node may count at most [`MAX_COLUMN_TOTAL`] operations,
//! so the cluster-wide sum of a column over up to 2^15 nodes still fits in `u64` exactly,
//! and any cell (a part of a column) does too.

use keyviz::Matrix;

use super::client::PeerError;

/// Most operations one node may report in one column (all rows together): 2^48, about
/// 2.8·10^14, which is millions of years of a 1 M ops/s node at a 1 s step.
pub const MAX_COLUMN_TOTAL: u64 = 1 << 48;

/// Most operations one node's hot-key answer may count over all its parts: 2^55, so the
/// merged totals (and every item bound, which `NodeHotKeys::validate` keeps below its part's
/// total) of up to 2^9 nodes fit in `u64` exactly.
pub const MAX_HOT_TOTAL: u64 = 1 << 55;

/// Checks that the parts of a peer's hot keys count at most [`MAX_HOT_TOTAL`] together.
///
/// # Errors
/// [`PeerError::InvalidHotKeys`] when they count more.
pub fn check_hot_total(hot: &keyviz::hotkeys::NodeHotKeys) -> Result<(), PeerError> {
    let mut total = 0u64;
    for p in &hot.parts {
        total = total.saturating_add(p.summary.total);
        if total > MAX_HOT_TOTAL {
            return Err(PeerError::InvalidHotKeys(format!(
                "parts count more than {MAX_HOT_TOTAL} operations (group {}, term {})",
                p.group, p.term
            )));
        }
    }
    Ok(())
}

/// Checks that every column of `m` sums to at most [`MAX_COLUMN_TOTAL`]. O(cells).
///
/// # Errors
/// [`PeerError::Invalid`] naming the first column over the bound.
pub fn check_counts(m: &Matrix) -> Result<(), PeerError> {
    let mut totals = vec![0u64; m.column_unix_ms.len()];
    for row in &m.rows {
        for (i, v) in row.values.iter().enumerate() {
            let Some(t) = totals.get_mut(i) else {
                break;
            };
            *t = t.saturating_add(*v);
            if *t > MAX_COLUMN_TOTAL {
                return Err(PeerError::Invalid(format!(
                    "column {i} counts more than {MAX_COLUMN_TOTAL} operations (row {:?})",
                    row.bucket_id
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyviz::MatrixRow;

    fn matrix(values: &[&[u64]]) -> Matrix {
        let mut m = Matrix::empty(keyviz::Series::Writes, 1000, String::new());
        m.column_unix_ms = (0..values.first().map_or(0, |v| v.len()) as i64).collect();
        m.rows = values
            .iter()
            .enumerate()
            .map(|(i, v)| MatrixRow {
                bucket_id: format!("route:{i}"),
                values: v.to_vec(),
                ..MatrixRow::default()
            })
            .collect();
        m
    }

    #[test]
    fn absurd_hot_key_totals_are_refused() {
        use keyviz::hotkeys::{HotKeyMode, HotPart, HotSummary, NodeHotKeys};
        let part = |total| HotPart {
            group: 1,
            term: 1,
            summary: HotSummary {
                total,
                floor: 0,
                sampled: false,
                items: Vec::new(),
            },
        };
        let hot = |parts| NodeHotKeys {
            series: keyviz::Series::Reads,
            mode: HotKeyMode::Raw,
            node_id: None,
            parts,
        };
        assert!(check_hot_total(&hot(vec![part(MAX_HOT_TOTAL)])).is_ok());
        assert!(matches!(
            check_hot_total(&hot(vec![part(u64::MAX)])),
            Err(PeerError::InvalidHotKeys(_))
        ));
        assert!(check_hot_total(&hot(vec![part(MAX_HOT_TOTAL), part(1)])).is_err());
    }

    #[test]
    fn absurd_cells_and_column_totals_are_refused() {
        assert!(check_counts(&matrix(&[&[1, 2], &[3, MAX_COLUMN_TOTAL - 2]])).is_ok());
        assert!(matches!(
            check_counts(&matrix(&[&[u64::MAX, 0]])),
            Err(PeerError::Invalid(_))
        ));
        assert!(matches!(
            check_counts(&matrix(&[&[0, MAX_COLUMN_TOTAL], &[0, 1]])),
            Err(PeerError::Invalid(_))
        ));
    }
}
