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
