//! Term leaders of a matrix answer: for every write identity (raft group, leader term) the
//! operator's matrix shows, the node that led that term, so a leader change on the heatmap
//! can say which node took over (`leaders` in the answer, docs/ADMIN.md "Term leaders").
//!
//! Why not from the merge: writes are counted from the committed Raft log by *every*
//! replica (kvnode observes each applied entry on each node), so all replicas carry the same
//! (group, term) part of a write cell and the merge keeps whichever it meets first; which
//! node's part is kept says nothing about who led. The log itself does: every entry's log id
//! names the leader that appended it. So the host answers from what its own applied log says
//! ([`MatrixSource::term_leaders`]); with kvnode every node replicates every group, so the
//! entry node alone knows every term's leader, and nothing extra crosses the peer protocol
//! (older peers keep working; an identity the entry node does not know is simply not named).

use keyviz::Matrix;

use crate::host::{MatrixSource, TermLeader};

/// Most identities named per answer: a week of a flapping cluster at a coarse tier must not
/// grow the response (or the host lookup) without bound. The newest terms of each group are
/// kept (terms only grow), the rest are not named.
pub const MAX_LEADERS: usize = 4096;

/// The distinct write identities (group and term both non-zero) of `matrix`: each cell's
/// dominant identity and, for cells with several, every share in `write_lanes` (coarse
/// history tiers and merged cells carry them). Ascending by (group, term), at most
/// [`MAX_LEADERS`] (the highest terms kept). Pure.
#[must_use = "the identities are the result"]
pub fn identities(matrix: &Matrix) -> Vec<(u64, u64)> {
    let mut ids: Vec<(u64, u64)> = Vec::new();
    for row in &matrix.rows {
        ids.extend(
            row.raft_group_ids
                .iter()
                .zip(&row.leader_terms)
                .map(|(&g, &t)| (g, t)),
        );
        ids.extend(row.write_lanes.iter().map(|l| (l.group, l.term)));
        // Dedup as we go, so a wide matrix does not hold one pair per cell.
        if ids.len() > 4 * MAX_LEADERS {
            ids.sort_unstable();
            ids.dedup();
        }
    }
    ids.retain(|&(g, t)| g != 0 && t != 0);
    ids.sort_unstable();
    ids.dedup();
    if ids.len() > MAX_LEADERS {
        // Keep the newest terms: drop from the lowest terms up, whatever their group.
        let mut by_term: Vec<(u64, u64)> = ids.iter().map(|&(g, t)| (t, g)).collect();
        by_term.sort_unstable();
        let cut = by_term.len() - MAX_LEADERS;
        ids = by_term[cut..].iter().map(|&(t, g)| (g, t)).collect();
        ids.sort_unstable();
    }
    ids
}

/// The leaders `source` knows for the identities of `matrix`, sorted by (group, term), one
/// per identity (the first the source gave wins), only identities the matrix carries, with
/// a non-empty node id. Blocks on whatever [`MatrixSource::term_leaders`] blocks on (a short
/// lock); call it off the async workers.
#[must_use = "the leaders are the result"]
pub fn leaders_of(source: &dyn MatrixSource, matrix: &Matrix) -> Vec<TermLeader> {
    let ids = identities(matrix);
    if ids.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<TermLeader> = source
        .term_leaders(&ids)
        .into_iter()
        .filter(|l| !l.node_id.is_empty() && ids.binary_search(&(l.group, l.term)).is_ok())
        .collect();
    // Stable sort, then dedup: the first answer for an identity wins.
    out.sort_by_key(|l| (l.group, l.term));
    out.dedup_by_key(|l| (l.group, l.term));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyviz::{CellLane, MatrixRow, Series};

    fn row(id: &str, groups: &[u64], terms: &[u64]) -> MatrixRow {
        MatrixRow {
            bucket_id: id.to_string(),
            label: None,
            start: Some(id.as_bytes().to_vec()),
            end: None,
            aggregate: false,
            route_ids: Vec::new(),
            route_ids_truncated: false,
            route_count: 1,
            values: vec![1; groups.len()],
            conflict: false,
            conflicts: Vec::new(),
            raft_group_ids: groups.to_vec(),
            leader_terms: terms.to_vec(),
            preview: None,
            first_key: None,
            last_key: None,
            write_lanes: Vec::new(),
        }
    }

    fn matrix(rows: Vec<MatrixRow>) -> Matrix {
        let mut m = Matrix::empty(Series::Writes, 1_000, String::new());
        m.column_unix_ms = (0..rows.first().map_or(0, |r| r.values.len()) as i64)
            .map(|j| j * 1_000)
            .collect();
        m.rows = rows;
        m
    }

    /// A source that knows a fixed table, answering in the order given.
    struct Known(Vec<TermLeader>);

    impl MatrixSource for Known {
        fn matrix(
            &self,
            _q: &keyviz::MatrixQuery,
            _now: i64,
        ) -> Result<Matrix, crate::host::SourceError> {
            Err(crate::host::SourceError::Disabled)
        }

        fn term_leaders(&self, wanted: &[(u64, u64)]) -> Vec<TermLeader> {
            self.0
                .iter()
                .filter(|l| wanted.contains(&(l.group, l.term)))
                .cloned()
                .collect()
        }
    }

    fn leader(group: u64, term: u64, node: &str) -> TermLeader {
        TermLeader {
            group,
            term,
            node_id: node.to_string(),
        }
    }

    #[test]
    fn identities_are_the_distinct_non_zero_cell_identities_and_every_lane() {
        let mut coarse = row("b", &[2, 2, 0], &[3, 3, 0]);
        // A coarse cell that holds two terms: the lesser one only in the lanes.
        coarse.write_lanes = vec![
            CellLane {
                column: 1,
                group: 2,
                term: 3,
                value: 5,
            },
            CellLane {
                column: 1,
                group: 2,
                term: 4,
                value: 1,
            },
        ];
        let m = matrix(vec![row("a", &[1, 1, 1], &[5, 5, 7]), coarse]);
        assert_eq!(identities(&m), vec![(1, 5), (1, 7), (2, 3), (2, 4)]);
    }

    #[test]
    fn identities_keep_the_newest_terms_within_the_cap() {
        let n = MAX_LEADERS + 10;
        let groups = vec![1u64; n];
        let terms: Vec<u64> = (1..=n as u64).collect();
        let m = matrix(vec![row("a", &groups, &terms)]);
        let ids = identities(&m);
        assert_eq!(ids.len(), MAX_LEADERS);
        assert_eq!(
            ids.first(),
            Some(&(1, 11)),
            "the 10 oldest terms are left out"
        );
        assert_eq!(ids.last(), Some(&(1, n as u64)));
    }

    #[test]
    fn leaders_name_only_the_matrix_identities_once_each_in_order() {
        let m = matrix(vec![row("a", &[1, 1, 2], &[5, 7, 3])]);
        let source = Known(vec![
            leader(2, 3, "n3"),
            leader(1, 7, "n2"),
            leader(1, 7, "n9"), // a second claim for the same term: the first wins
            leader(1, 5, "n1"),
            leader(1, 6, "n1"), // not in the matrix
            leader(2, 9, ""),   // no name
        ]);
        assert_eq!(
            leaders_of(&source, &m),
            vec![leader(1, 5, "n1"), leader(1, 7, "n2"), leader(2, 3, "n3")]
        );
    }

    #[test]
    fn a_source_that_knows_no_leaders_and_a_read_matrix_name_none() {
        let m = matrix(vec![row("a", &[1, 1], &[5, 7])]);
        assert!(leaders_of(&crate::host::DisabledSource, &m).is_empty());
        // Reads carry a group but no term: nothing to name.
        let mut reads = matrix(vec![row("a", &[1, 1], &[0, 0])]);
        reads.series = Series::Reads;
        assert!(leaders_of(&Known(vec![leader(1, 0, "n1")]), &reads).is_empty());
    }
}
