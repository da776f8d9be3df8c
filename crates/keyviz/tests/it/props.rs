//! Property tests: merge order independence and exact read totals.

use keyviz::merge::{MergeOptions, merge};
use keyviz::{Matrix, MatrixQuery, MatrixRow, ReadRole, Series};
use proptest::prelude::*;

use crate::util::{T0, route, sampler};

fn arb_matrix(series: Series) -> impl Strategy<Value = Matrix> {
    let cols = 4usize;
    proptest::collection::vec(
        (
            0u8..6,
            proptest::collection::vec((0u64..50, 1u64..3, 1u64..4), cols),
        ),
        0..6,
    )
    .prop_map(move |rows| {
        let mut seen = std::collections::BTreeMap::new();
        for (id, cells) in rows {
            seen.entry(id).or_insert(cells);
        }
        Matrix {
            column_unix_ms: (0..cols as i64).map(|c| c * 1_000).collect(),
            rows: seen
                .into_iter()
                .map(|(id, cells)| MatrixRow {
                    bucket_id: format!("route:{id}"),
                    start: Some(vec![id]),
                    end: Some(vec![id + 1]),
                    route_count: 1,
                    values: cells.iter().map(|c| c.0).collect(),
                    raft_group_ids: cells.iter().map(|c| c.1).collect(),
                    leader_terms: cells.iter().map(|c| c.2).collect(),
                    ..MatrixRow::default()
                })
                .collect(),
            series,
            generated_at: String::new(),
            step_ms: 1_000,
            node_id: None,
        }
    })
}

type CellView = (String, Vec<u64>, Vec<u64>, Vec<u64>, Vec<bool>);

fn cells(m: &Matrix) -> Vec<CellView> {
    m.rows
        .iter()
        .map(|r| {
            (
                r.bucket_id.clone(),
                r.values.clone(),
                r.raft_group_ids.clone(),
                r.leader_terms.clone(),
                r.conflicts.clone(),
            )
        })
        .collect()
}

proptest! {
    #[test]
    fn merge_is_order_independent_in_values_and_identity(
        a in arb_matrix(Series::Writes),
        b in arb_matrix(Series::Writes),
        c in arb_matrix(Series::Writes),
        write in any::<bool>(),
    ) {
        let series = if write { Series::Writes } else { Series::Reads };
        let opts = MergeOptions { series, step_ms: 1_000, row_budget: None, settling_from_unix_ms: None };
        let abc = merge(&[a.clone(), b.clone(), c.clone()], &opts).matrix;
        let cab = merge(&[c, a, b], &opts).matrix;
        prop_assert_eq!(cells(&abc), cells(&cab));
    }

    #[test]
    fn merged_reads_equal_the_sum_of_inputs(
        a in arb_matrix(Series::Reads),
        b in arb_matrix(Series::Reads),
        budget in proptest::option::of(1usize..4),
    ) {
        let opts = MergeOptions { series: Series::Reads, step_ms: 1_000, row_budget: budget, settling_from_unix_ms: None };
        let merged = merge(&[a.clone(), b.clone()], &opts).matrix;
        prop_assert_eq!(merged.total(), a.total() + b.total());
        prop_assert!(merged.validate().is_ok());
    }

    #[test]
    fn matrix_reads_equal_observed_reads(
        ops in proptest::collection::vec((0u8..4, proptest::collection::vec(any::<u8>(), 0..4), any::<bool>(), 0u8..3), 0..200),
        budget in proptest::option::of(1usize..4),
    ) {
        let s = sampler();
        for i in 0..4u8 {
            let end = if i == 3 { None } else { Some(vec![(i + 1) * 64]) };
            s.register_route(route(u64::from(i), &[i * 64], end.as_deref(), 1)).expect("register");
        }
        let mut now = T0;
        let mut observed = 0u64;
        for (r, key, leader, flush) in ops {
            let mut key = key;
            key.insert(0, r * 64);
            let role = if leader { ReadRole::Leader } else { ReadRole::Follower };
            s.observe_read(u64::from(r), &key, 0, role, now);
            observed += 1;
            if flush == 0 {
                now += 1_000;
                let _ = s.flush(now);
            }
        }
        let _ = s.flush(now + 1_000);
        let m = s.matrix(&MatrixQuery { series: Series::Reads, row_budget: budget, ..MatrixQuery::default() }, now);
        prop_assert_eq!(m.total(), observed);
        prop_assert!(m.validate().is_ok());
    }
}
