//! Every cell stays at the key range it was counted under: splits, merges,
//! coarsening and re-registration add row incarnations and never redraw old
//! columns under a new range.

use std::collections::BTreeMap;

use keyviz::merge::{MergeOptions, merge};
use keyviz::{
    Matrix, MatrixQuery, ReadRole, Sampler, Series, bucket_base, incarnation_bucket_id,
    virtual_bucket_name,
};
use proptest::prelude::*;

use crate::util::{STEP, T0, all, route, sampler_with};

/// (bucket id, start, end, values) of every row, in matrix order.
type RowView = (String, Vec<u8>, Option<Vec<u8>>, Vec<u64>);

fn rows(m: &Matrix) -> Vec<RowView> {
    m.rows
        .iter()
        .map(|r| {
            (
                r.bucket_id.clone(),
                r.start.clone().unwrap_or_default(),
                r.end.clone(),
                r.values.clone(),
            )
        })
        .collect()
}

fn view(id: &str, start: &[u8], end: Option<&[u8]>, values: &[u64]) -> RowView {
    (
        id.to_owned(),
        start.to_vec(),
        end.map(<[u8]>::to_vec),
        values.to_vec(),
    )
}

fn in_range(key: &[u8], start: &[u8], end: Option<&[u8]>) -> bool {
    key >= start && end.is_none_or(|e| key < e)
}

/// Checks every column against the keys observed in its window, when one
/// catalog was in force for the whole window: each non-zero cell holds exactly
/// the keys of its row's range, and the column total is the number of keys.
fn assert_cells_hold_their_keys(m: &Matrix, observed: &[Vec<&[u8]>]) {
    assert_eq!(m.column_unix_ms.len(), observed.len(), "{m:?}");
    for (j, keys) in observed.iter().enumerate() {
        let mut total = 0;
        for r in &m.rows {
            let v = r.values[j];
            total += v;
            if v == 0 {
                continue;
            }
            let start = r.start.as_deref().unwrap_or(&[]);
            let want = keys
                .iter()
                .filter(|k| in_range(k, start, r.end.as_deref()))
                .count() as u64;
            assert_eq!(v, want, "row {} in column {j}", r.bucket_id);
        }
        assert_eq!(total, keys.len() as u64, "column {j} total");
    }
}

fn observe_all(s: &Sampler, route_of: impl Fn(&[u8]) -> u64, keys: &[&[u8]], at: i64) {
    for k in keys {
        s.observe_write(route_of(k), k, 1, 1, 1, at);
    }
}

const BEFORE: [&[u8]; 7] = [b"a1", b"b", b"x1", b"x2", b"x3", b"x4", b"x5"];
const AFTER: [&[u8]; 4] = [b"a", b"c", b"x9", b"zz"];

/// Route 1 covers every key; writes, flush, split at `m` (right id 2),
/// writes, flush.
fn split_scenario(key_buckets: u32) -> Matrix {
    let s = sampler_with(|c| c.key_buckets_per_route = key_buckets);
    s.register_route(route(1, b"", None, 1)).expect("register");
    observe_all(&s, |_| 1, &BEFORE, T0);
    let _ = s.flush(T0 + 1_000);
    s.split_route(1, b"m", 2).expect("split");
    observe_all(
        &s,
        |k| if k < b"m".as_slice() { 1 } else { 2 },
        &AFTER,
        T0 + 1_000,
    );
    let _ = s.flush(T0 + 2_000);
    let m = all(&s, Series::Writes);
    m.validate().expect("valid matrix");
    assert_cells_hold_their_keys(&m, &[BEFORE.to_vec(), AFTER.to_vec()]);
    m
}

#[test]
fn split_keeps_old_columns_at_their_range_with_one_key_bucket() {
    let m = split_scenario(1);
    let old = incarnation_bucket_id("route:1", b"", None);
    assert_eq!(
        rows(&m),
        [
            view("route:1", b"", Some(b"m"), &[0, 2]),
            view(&old, b"", None, &[7, 0]),
            view("route:2", b"m", None, &[0, 2]),
        ],
        "rows by start then end: the old whole range sits between its halves"
    );
}

#[test]
fn split_keeps_old_columns_at_their_range_with_eight_key_buckets() {
    let m = split_scenario(8);
    // Sub-range boundaries moved with the route's range: the old sub-ranges
    // keep the first column, suffixed; the new ones hold only the second.
    for r in &m.rows {
        let old = r.values[0] > 0;
        assert!(
            !(old && r.values[1] > 0),
            "{} mixes both catalogs",
            r.bucket_id
        );
        assert_eq!(
            old,
            r.bucket_id.contains('@'),
            "{}: only old sub-ranges are suffixed",
            r.bucket_id
        );
        if !old {
            let end = r.end.as_deref();
            let start = r.start.as_deref().unwrap_or(&[]);
            assert!(
                end.is_some_and(|e| e <= b"m".as_slice()) || start >= b"m".as_slice(),
                "{} straddles the split",
                r.bucket_id
            );
        }
    }
    let x_rows: Vec<_> = m
        .rows
        .iter()
        .filter(|r| {
            r.values[0] > 0 && in_range(b"x1", r.start.as_deref().unwrap_or(&[]), r.end.as_deref())
        })
        .collect();
    assert_eq!(x_rows.len(), 1);
    // Eight sub-ranges of the whole key space: [0x60, 0x80) held every key.
    assert_eq!(x_rows[0].values, vec![7, 0]);
    assert_eq!(
        (x_rows[0].start.clone(), x_rows[0].end.clone()),
        (Some(vec![0x60]), Some(vec![0x80]))
    );
    assert!(x_rows[0].bucket_id.contains('@'), "an old sub-range");
}

#[test]
fn split_inside_one_window_keeps_earlier_counts_under_the_old_range() {
    let s = sampler_with(|_| {});
    s.register_route(route(1, b"", None, 1)).expect("register");
    s.observe_write(1, b"x", 0, 1, 1, T0);
    s.split_route(1, b"m", 2).expect("split");
    s.observe_write(2, b"x", 0, 1, 1, T0);
    s.observe_write(1, b"a", 0, 1, 1, T0);
    let _ = s.flush(T0 + 1_000);
    let old = incarnation_bucket_id("route:1", b"", None);
    assert_eq!(
        rows(&all(&s, Series::Writes)),
        [
            view("route:1", b"", Some(b"m"), &[1]),
            view(&old, b"", None, &[1]),
            view("route:2", b"m", None, &[1]),
        ]
    );
}

#[test]
fn merge_of_routes_keeps_both_old_rows_and_adds_the_merged_one() {
    let s = sampler_with(|_| {});
    s.register_route(route(1, b"a", Some(b"m"), 1)).expect("1");
    s.register_route(route(2, b"m", Some(b"z"), 1)).expect("2");
    s.observe_write(1, b"b", 0, 1, 1, T0);
    s.observe_write(2, b"n", 0, 1, 1, T0);
    s.observe_write(2, b"o", 0, 1, 1, T0);
    let _ = s.flush(T0 + 1_000);
    s.merge_routes(1, 2).expect("merge");
    s.observe_write(1, b"n", 0, 1, 1, T0 + 1_000);
    let _ = s.flush(T0 + 2_000);
    let m = all(&s, Series::Writes);
    assert_eq!(
        rows(&m),
        [
            view(
                &incarnation_bucket_id("route:1", b"a", Some(b"m")),
                b"a",
                Some(b"m"),
                &[1, 0]
            ),
            view("route:1", b"a", Some(b"z"), &[0, 1]),
            view(
                &incarnation_bucket_id("route:2", b"m", Some(b"z")),
                b"m",
                Some(b"z"),
                &[2, 0]
            ),
        ]
    );
    assert_cells_hold_their_keys(&m, &[vec![b"b", b"n", b"o"], vec![b"n"]]);
}

#[test]
fn coarsening_into_a_virtual_bucket_keeps_old_route_rows() {
    let s = sampler_with(|c| c.max_tracked_routes = 2);
    s.register_route(route(1, b"a", Some(b"c"), 1)).expect("1");
    s.register_route(route(2, b"c", Some(b"e"), 1)).expect("2");
    for _ in 0..10 {
        s.observe_write(1, b"a", 0, 1, 1, T0);
    }
    s.observe_write(2, b"d", 0, 1, 1, T0);
    let _ = s.flush(T0 + 1_000);
    // Over budget: the quiet pair (2, 3) becomes one virtual bucket [c, g).
    s.register_route(route(3, b"e", Some(b"g"), 1)).expect("3");
    s.observe_write(2, b"d", 0, 1, 1, T0 + 1_000);
    s.observe_write(3, b"f", 0, 1, 1, T0 + 1_000);
    s.observe_write(1, b"b", 0, 1, 1, T0 + 1_000);
    let _ = s.flush(T0 + 2_000);
    let m = all(&s, Series::Writes);
    assert_eq!(
        rows(&m),
        [
            view("route:1", b"a", Some(b"c"), &[10, 1]),
            view(
                &incarnation_bucket_id("route:2", b"c", Some(b"e")),
                b"c",
                Some(b"e"),
                &[1, 0]
            ),
            view(
                &virtual_bucket_name(b"c", Some(b"g")),
                b"c",
                Some(b"g"),
                &[0, 2]
            ),
        ]
    );
}

#[test]
fn re_registration_with_another_range_is_a_new_incarnation() {
    let s = sampler_with(|_| {});
    s.register_route(route(1, b"a", Some(b"c"), 1)).expect("1");
    s.observe_read(1, b"b", 0, ReadRole::Leader, T0);
    let _ = s.flush(T0 + 1_000);
    s.remove_route(1).expect("remove");
    s.register_route(route(1, b"a", Some(b"k"), 1))
        .expect("again");
    s.observe_read(1, b"j", 0, ReadRole::Leader, T0 + 1_000);
    let _ = s.flush(T0 + 2_000);
    assert_eq!(
        rows(&all(&s, Series::Reads)),
        [
            view(
                &incarnation_bucket_id("route:1", b"a", Some(b"c")),
                b"a",
                Some(b"c"),
                &[1, 0]
            ),
            view("route:1", b"a", Some(b"k"), &[0, 1]),
        ]
    );
}

#[test]
fn a_rebuilt_slot_over_the_same_range_keeps_the_plain_id_before_it_counts() {
    // As after a restart: the live slot has not counted yet, its range is unchanged.
    let s = sampler_with(|c| c.key_buckets_per_route = 8);
    s.register_route(route(1, b"", None, 1)).expect("register");
    s.observe_write(1, b"x", 0, 1, 1, T0);
    let _ = s.flush(T0 + 1_000);
    s.remove_route(1).expect("remove");
    s.register_route(route(1, b"", None, 1)).expect("again");
    let _ = s.flush(T0 + 2_000);
    let ids: Vec<_> = all(&s, Series::Writes)
        .rows
        .iter()
        .map(|r| r.bucket_id.clone())
        .collect();
    assert_eq!(ids, ["route:1#3"]);
    s.split_route(1, b"m", 2).expect("split");
    let ids: Vec<_> = all(&s, Series::Writes)
        .rows
        .iter()
        .map(|r| r.bucket_id.clone())
        .collect();
    assert_eq!(
        ids,
        [incarnation_bucket_id("route:1#3", &[0x60], Some(&[0x80]))]
    );
}

#[test]
fn key_filter_keeps_every_incarnation_overlapping_it() {
    let s = sampler_with(|_| {});
    s.register_route(route(1, b"", None, 1)).expect("register");
    s.observe_write(1, b"x", 0, 1, 1, T0);
    let _ = s.flush(T0 + 1_000);
    s.split_route(1, b"m", 2).expect("split");
    s.observe_write(1, b"a", 0, 1, 1, T0 + 1_000);
    s.observe_write(2, b"y", 0, 1, 1, T0 + 1_000);
    let _ = s.flush(T0 + 2_000);
    let m = s.matrix(
        &MatrixQuery {
            series: Series::Writes,
            key_start: Some(b"n".to_vec()),
            ..MatrixQuery::default()
        },
        T0,
    );
    let ids: Vec<_> = m.rows.iter().map(|r| r.bucket_id.clone()).collect();
    assert_eq!(
        ids,
        [
            incarnation_bucket_id("route:1", b"", None),
            "route:2".to_owned()
        ],
        "the old whole range overlaps [n, ∞), its new left half does not"
    );
}

/// Two nodes with the same catalog history, reading different amounts.
fn two_nodes_that_saw_the_split(key_buckets: u32) -> (Matrix, Matrix) {
    let node = |weight: u64| {
        let s = sampler_with(|c| c.key_buckets_per_route = key_buckets);
        s.register_route(route(1, b"", None, 1)).expect("register");
        for k in BEFORE {
            for _ in 0..weight {
                s.observe_read(1, k, 0, ReadRole::Follower, T0);
            }
        }
        let _ = s.flush(T0 + 1_000);
        s.split_route(1, b"m", 2).expect("split");
        for k in AFTER {
            for _ in 0..weight {
                s.observe_read(
                    if k < b"m".as_slice() { 1 } else { 2 },
                    k,
                    0,
                    ReadRole::Leader,
                    T0 + 1_000,
                );
            }
        }
        let _ = s.flush(T0 + 2_000);
        all(&s, Series::Reads)
    };
    (node(1), node(2))
}

#[test]
fn merged_matrix_of_two_nodes_that_saw_the_split_has_one_row_per_incarnation() {
    for key_buckets in [1, 8] {
        let (a, b) = two_nodes_that_saw_the_split(key_buckets);
        assert_eq!(rows(&a).len(), rows(&b).len());
        let merged = merge(
            &[a.clone(), b],
            &MergeOptions {
                series: Series::Reads,
                step_ms: STEP,
                row_budget: None,
                settling_from_unix_ms: None,
            },
        );
        assert!(
            merged.warnings.is_empty(),
            "K={key_buckets}: {:?}",
            merged.warnings
        );
        merged.matrix.validate().expect("valid merged matrix");
        let want: Vec<RowView> = rows(&a)
            .into_iter()
            .map(|(id, s, e, v)| (id, s, e, v.iter().map(|x| x * 3).collect()))
            .collect();
        assert_eq!(rows(&merged.matrix), want, "K={key_buckets}");
    }
}

#[test]
fn lagging_node_old_range_joins_the_old_incarnation_with_a_divergence_warning() {
    let (a, _) = two_nodes_that_saw_the_split(1);
    // A node that has not applied the split still calls the whole range route:1.
    let lagging = {
        let s = sampler_with(|_| {});
        s.register_route(route(1, b"", None, 1)).expect("register");
        s.observe_read(1, b"x1", 0, ReadRole::Follower, T0);
        let _ = s.flush(T0 + 1_000);
        all(&s, Series::Reads)
    };
    let merged = merge(
        &[a, lagging],
        &MergeOptions {
            series: Series::Reads,
            step_ms: STEP,
            row_budget: None,
            settling_from_unix_ms: None,
        },
    );
    assert_eq!(merged.warnings.len(), 1, "{:?}", merged.warnings);
    let old = incarnation_bucket_id("route:1", b"", None);
    assert_eq!(
        rows(&merged.matrix),
        [
            view("route:1", b"", Some(b"m"), &[0, 2]),
            view(&old, b"", None, &[8, 0]),
            view("route:2", b"m", None, &[0, 2]),
        ]
    );
}

#[test]
fn row_budget_over_mixed_incarnations_conserves_totals_and_covers_members() {
    for key_buckets in [1, 8] {
        let (a, b) = two_nodes_that_saw_the_split(key_buckets);
        let full = a.clone();
        for budget in 1..=full.rows.len() {
            let opts = MergeOptions {
                series: Series::Reads,
                step_ms: STEP,
                row_budget: Some(budget),
                settling_from_unix_ms: None,
            };
            let merged = merge(&[a.clone(), b.clone()], &opts).matrix;
            merged.validate().expect("valid");
            assert!(merged.rows.len() <= budget);
            for j in 0..full.column_unix_ms.len() {
                let want: u64 = full.rows.iter().map(|r| r.values[j] * 3).sum();
                let got: u64 = merged.rows.iter().map(|r| r.values[j]).sum();
                assert_eq!(got, want, "K={key_buckets} budget {budget} column {j}");
            }
            // Every incarnation lies inside the row it was coarsened into.
            for r in &full.rows {
                let start = r.start.clone().unwrap_or_default();
                assert!(
                    merged.rows.iter().any(|o| {
                        let os = o.start.clone().unwrap_or_default();
                        os <= start
                            && match (&o.end, &r.end) {
                                (None, _) => true,
                                (Some(oe), Some(re)) => oe >= re,
                                (Some(_), None) => false,
                            }
                    }),
                    "K={key_buckets} budget {budget}: {} [{start:?}, {:?}) is in no row",
                    r.bucket_id,
                    r.end
                );
            }
        }
    }
}

#[test]
fn local_row_budget_over_mixed_incarnations_conserves_totals() {
    let m = split_scenario(8);
    let s = sampler_with(|c| c.key_buckets_per_route = 8);
    s.register_route(route(1, b"", None, 1)).expect("register");
    observe_all(&s, |_| 1, &BEFORE, T0);
    let _ = s.flush(T0 + 1_000);
    s.split_route(1, b"m", 2).expect("split");
    observe_all(
        &s,
        |k| if k < b"m".as_slice() { 1 } else { 2 },
        &AFTER,
        T0 + 1_000,
    );
    let _ = s.flush(T0 + 2_000);
    for budget in 1..=m.rows.len() {
        let b = s.matrix(
            &MatrixQuery {
                series: Series::Writes,
                row_budget: Some(budget),
                ..MatrixQuery::default()
            },
            T0,
        );
        b.validate().expect("valid");
        assert!(b.rows.len() <= budget);
        assert_eq!(b.rows.iter().map(|r| r.values[0]).sum::<u64>(), 7);
        assert_eq!(b.rows.iter().map(|r| r.values[1]).sum::<u64>(), 4);
        if budget == 1 {
            let first = m.rows.first().expect("rows");
            assert_eq!(b.rows[0].start, first.start, "the first row starts first");
            let latest = m.rows.iter().filter_map(|r| r.end.clone()).max();
            assert!(m.rows.iter().all(|r| r.end.is_some()));
            assert_eq!(
                b.rows[0].end, latest,
                "the union ends where its latest member ends"
            );
        }
    }
}

/// One step of the random scenario.
#[derive(Debug, Clone)]
enum Op {
    /// Observe the key with this first byte.
    Observe(u8),
    /// Split the route holding this byte at it (if inside its range).
    Split(u8),
    /// Merge the route holding this byte with its right neighbour.
    Merge(u8),
    Flush,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..32).prop_map(Op::Observe),
        1 => (1u8..32).prop_map(Op::Split),
        1 => (0u8..32).prop_map(Op::Merge),
        2 => Just(Op::Flush),
    ]
}

/// (column, plain bucket id, start, end) of one counted cell.
type CellKey = (i64, String, Vec<u8>, Option<Vec<u8>>);

/// The model catalog: route start -> (id, end).
type Model = BTreeMap<u8, (u64, Option<u8>)>;

fn holder(model: &Model, b: u8) -> (u8, u64, Option<u8>) {
    let (&start, &(id, end)) = model
        .range(..=b)
        .next_back()
        .expect("routes tile the space");
    (start, id, end)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Per-range totals over time equal what was observed under that range.
    #[test]
    fn every_count_stays_at_the_range_it_was_observed_under(
        ops in proptest::collection::vec(arb_op(), 1..80),
    ) {
        let s = sampler_with(|_| {});
        s.register_route(route(1, b"", None, 1)).expect("register");
        let mut model: Model = BTreeMap::from([(0, (1, None))]);
        let mut next_id = 2;
        let mut now = T0;
        let mut want: BTreeMap<CellKey, u64> = BTreeMap::new();
        let range = |start: u8, end: Option<u8>| {
            (if start == 0 { Vec::new() } else { vec![start] }, end.map(|e| vec![e]))
        };
        for op in ops {
            match op {
                Op::Observe(b) => {
                    let (start, id, end) = holder(&model, b);
                    s.observe_write(id, &[b, b'k'], 0, 1, 1, now);
                    let (start, end) = range(start, end);
                    *want.entry((now, format!("route:{id}"), start, end)).or_default() += 1;
                }
                Op::Split(b) => {
                    let (start, id, end) = holder(&model, b);
                    if b > start {
                        s.split_route(id, &[b], next_id).expect("split inside the range");
                        model.insert(start, (id, Some(b)));
                        model.insert(b, (next_id, end));
                        next_id += 1;
                    }
                }
                Op::Merge(b) => {
                    let (start, id, end) = holder(&model, b);
                    if let Some(e) = end {
                        let (right, right_end) = model[&e];
                        s.merge_routes(id, right).expect("adjacent");
                        model.remove(&e);
                        model.insert(start, (id, right_end));
                    }
                }
                Op::Flush => {
                    now += STEP as i64;
                    let _ = s.flush(now);
                }
            }
        }
        now += STEP as i64;
        let _ = s.flush(now);
        let m = all(&s, Series::Writes);
        prop_assert!(m.validate().is_ok());
        let mut got: BTreeMap<CellKey, u64> = BTreeMap::new();
        for r in &m.rows {
            let start = r.start.clone().unwrap_or_default();
            // Plain ids are exactly the live catalog's ranges.
            let live = model.values().any(|&(id, _)| format!("route:{id}") == r.bucket_id);
            if r.bucket_id == bucket_base(&r.bucket_id) {
                let (s0, id, e0) = holder(&model, start.first().copied().unwrap_or(0));
                let expected = format!("route:{id}");
                prop_assert!(live && r.bucket_id == expected);
                prop_assert_eq!((start.clone(), r.end.clone()), range(s0, e0));
            }
            for (j, &v) in r.values.iter().enumerate() {
                if v > 0 {
                    let key = (
                        m.column_unix_ms[j],
                        bucket_base(&r.bucket_id).to_owned(),
                        start.clone(),
                        r.end.clone(),
                    );
                    prop_assert!(got.insert(key, v).is_none(), "one cell per range and column");
                }
            }
        }
        prop_assert_eq!(got, want);
    }
}
