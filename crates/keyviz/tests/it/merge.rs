//! The cluster merge, table-driven from the reference scenarios plus ours.

use keyviz::Series;
use keyviz::merge::{MergeOptions, SETTLE_MIN_MS, WarningCode, merge, settling_from_unix_ms};

use crate::util::{RowSpec, matrix};

fn opts(series: Series) -> MergeOptions {
    MergeOptions {
        series,
        step_ms: 0,
        row_budget: None,
        settling_from_unix_ms: None,
    }
}

type OwnedRow = (&'static str, Vec<u64>, Vec<u64>, Vec<u64>);

struct Case {
    name: &'static str,
    series: Series,
    /// Each input: rows of (bucket, values, groups, terms) over columns [100, 200].
    inputs: Vec<Vec<OwnedRow>>,
    values: Vec<u64>,
    groups: Vec<u64>,
    terms: Vec<u64>,
    conflicts: Vec<bool>,
}

#[test]
fn merge_scenarios_from_the_reference_and_ours() {
    use Series::{Reads, Writes};
    let cases = vec![
        Case {
            name: "reads_sum_across_nodes",
            series: Reads,
            inputs: vec![
                vec![("route:1", vec![10, 0], vec![], vec![])],
                vec![("route:1", vec![25, 1], vec![], vec![])],
            ],
            values: vec![35, 1],
            groups: vec![0, 0],
            terms: vec![0, 0],
            conflicts: vec![],
        },
        Case {
            name: "stable_leader_one_node_reports_writes",
            series: Writes,
            inputs: vec![
                vec![("route:1", vec![30, 40], vec![7, 7], vec![42, 42])],
                vec![("route:1", vec![0, 0], vec![7, 7], vec![42, 42])],
            ],
            values: vec![30, 40],
            groups: vec![7, 7],
            terms: vec![42, 42],
            conflicts: vec![],
        },
        Case {
            name: "leadership_flip_sums_across_terms",
            series: Writes,
            inputs: vec![
                vec![("route:1", vec![30, 0], vec![7, 7], vec![42, 42])],
                vec![("route:1", vec![50, 80], vec![7, 7], vec![43, 43])],
            ],
            values: vec![80, 80],
            groups: vec![7, 7],
            terms: vec![43, 43],
            conflicts: vec![],
        },
        Case {
            name: "conflict_only_when_same_term_disagrees",
            series: Writes,
            inputs: vec![
                vec![("route:1", vec![30, 10], vec![7, 7], vec![42, 42])],
                vec![("route:1", vec![55, 10], vec![7, 7], vec![42, 42])],
            ],
            values: vec![55, 10],
            groups: vec![7, 7],
            terms: vec![42, 42],
            conflicts: vec![true, false],
        },
        Case {
            name: "partial_identity_falls_back_to_max_with_conflict",
            series: Writes,
            inputs: vec![
                vec![("route:1", vec![30, 100], vec![7, 7], vec![42, 42])],
                vec![("route:1", vec![50, 50], vec![], vec![])],
            ],
            values: vec![50, 100],
            groups: vec![0, 7],
            terms: vec![0, 42],
            conflicts: vec![true, true],
        },
        Case {
            name: "no_identity_equal_values_do_not_conflict",
            series: Writes,
            inputs: vec![
                vec![("route:1", vec![0, 17], vec![0, 0], vec![0, 0])],
                vec![("route:1", vec![42, 17], vec![0, 0], vec![0, 0])],
            ],
            values: vec![42, 17],
            groups: vec![0, 0],
            terms: vec![0, 0],
            conflicts: vec![],
        },
        Case {
            name: "zero_contribution_carries_no_identity",
            series: Writes,
            inputs: vec![
                vec![("route:1", vec![30, 0], vec![7, 0], vec![42, 0])],
                vec![("route:1", vec![0, 0], vec![7, 0], vec![42, 0])],
            ],
            values: vec![30, 0],
            groups: vec![7, 0],
            terms: vec![42, 0],
            conflicts: vec![],
        },
    ];
    for case in cases {
        let inputs: Vec<_> = case
            .inputs
            .iter()
            .map(|rows| {
                let rows: Vec<RowSpec<'_>> = rows
                    .iter()
                    .map(|(id, v, g, t)| (*id, v.as_slice(), g.as_slice(), t.as_slice()))
                    .collect();
                matrix(case.series, &[100, 200], &rows)
            })
            .collect();
        let out = merge(&inputs, &opts(case.series)).matrix;
        let row = &out.rows[0];
        assert_eq!(row.values, case.values, "{}: values", case.name);
        assert_eq!(row.raft_group_ids, case.groups, "{}: groups", case.name);
        assert_eq!(row.leader_terms, case.terms, "{}: terms", case.name);
        assert_eq!(row.conflicts, case.conflicts, "{}: conflicts", case.name);
        assert_eq!(
            row.conflict,
            case.conflicts.contains(&true),
            "{}: row conflict",
            case.name
        );
    }
}

#[test]
fn columns_are_the_union_of_every_node() {
    let a = matrix(
        Series::Reads,
        &[100, 200],
        &[("route:1", &[1, 2], &[], &[])],
    );
    let b = matrix(
        Series::Reads,
        &[200, 300],
        &[("route:1", &[10, 20], &[], &[])],
    );
    let out = merge(&[a, b], &opts(Series::Reads)).matrix;
    assert_eq!(out.column_unix_ms, vec![100, 200, 300]);
    assert_eq!(out.rows[0].values, vec![1, 12, 20]);
}

#[test]
fn alignment_merges_jittered_columns_into_one() {
    let a = matrix(
        Series::Reads,
        &[60_000, 120_000],
        &[("route:1", &[1, 2], &[], &[])],
    );
    let b = matrix(
        Series::Reads,
        &[60_400, 119_700],
        &[("route:1", &[10, 20], &[], &[])],
    );
    let out = merge(
        &[a, b],
        &MergeOptions {
            series: Series::Reads,
            step_ms: 60_000,
            row_budget: None,
            settling_from_unix_ms: None,
        },
    )
    .matrix;
    assert_eq!(out.column_unix_ms, vec![60_000, 120_000]);
    assert_eq!(out.rows[0].values, vec![11, 22]);
}

#[test]
fn rows_are_sorted_by_start_after_merge() {
    let a = matrix(
        Series::Reads,
        &[1],
        &[("route:5", &[1], &[], &[]), ("route:1", &[1], &[], &[])],
    );
    let b = matrix(
        Series::Reads,
        &[1],
        &[("route:9", &[1], &[], &[]), ("route:5", &[1], &[], &[])],
    );
    let out = merge(&[a, b], &opts(Series::Reads)).matrix;
    let ids: Vec<_> = out.rows.iter().map(|r| r.bucket_id.as_str()).collect();
    assert_eq!(ids, ["route:1", "route:5", "route:9"]);
    assert_eq!(out.rows[1].values, vec![2]);
}

#[test]
fn sub_ranged_and_whole_rows_coexist_without_conflict() {
    let a = matrix(Series::Writes, &[1], &[("route:1", &[40], &[7], &[1])]);
    let b = matrix(
        Series::Writes,
        &[1],
        &[
            ("route:1#0", &[25], &[7], &[1]),
            ("route:1#1", &[15], &[7], &[1]),
        ],
    );
    let out = merge(&[a, b], &opts(Series::Writes)).matrix;
    assert_eq!(out.rows.len(), 3);
    assert!(out.rows.iter().all(|r| !r.conflict));
}

#[test]
fn catalog_divergence_is_reported_and_both_ranges_kept() {
    let a = matrix(Series::Reads, &[1], &[("route:1", &[1], &[], &[])]);
    let mut b = matrix(Series::Reads, &[1], &[("route:1", &[2], &[], &[])]);
    b.rows[0].end = Some(b"zzz".to_vec());
    let merged = merge(&[a.clone(), b], &opts(Series::Reads));
    assert_eq!(merged.warnings.len(), 1);
    assert_eq!(merged.warnings[0].code, WarningCode::CatalogDivergence);
    assert_eq!(merged.warnings[0].input, 1);
    // Each range keeps its own counts; the local node keeps the plain id.
    let rows: Vec<_> = merged
        .matrix
        .rows
        .iter()
        .map(|r| (r.bucket_id.as_str(), r.end.as_deref(), r.values.clone()))
        .collect();
    let renamed = keyviz::incarnation_bucket_id("route:1", b"route:1", Some(b"zzz"));
    assert_eq!(
        rows,
        [
            (renamed.as_str(), Some(&b"zzz"[..]), vec![2]),
            ("route:1", None, vec![1]),
        ]
    );
    merged.matrix.validate().expect("ids stay unique");
}

#[test]
fn identity_on_equal_per_term_values_is_deterministic() {
    let a = matrix(Series::Writes, &[1], &[("route:1", &[50], &[7], &[42])]);
    let b = matrix(Series::Writes, &[1], &[("route:1", &[50], &[7], &[43])]);
    let ab = merge(&[a.clone(), b.clone()], &opts(Series::Writes)).matrix;
    let ba = merge(&[b, a], &opts(Series::Writes)).matrix;
    assert_eq!(ab.rows[0].values, vec![100]);
    assert_eq!(
        ab.rows[0].leader_terms,
        vec![43],
        "ties go to the newer term"
    );
    assert_eq!(ab.rows[0].leader_terms, ba.rows[0].leader_terms);
}

#[test]
fn row_budget_applies_to_the_merged_result() {
    let rows: Vec<(String, Vec<u64>)> = (0..10).map(|i| (format!("route:{i}"), vec![i])).collect();
    let a = matrix(
        Series::Reads,
        &[1],
        &rows
            .iter()
            .map(|(id, v)| (id.as_str(), v.as_slice(), &[][..], &[][..]))
            .collect::<Vec<_>>(),
    );
    let merged = merge(
        &[a.clone(), a],
        &MergeOptions {
            series: Series::Reads,
            step_ms: 0,
            row_budget: Some(4),
            settling_from_unix_ms: None,
        },
    )
    .matrix;
    assert_eq!(merged.rows.len(), 4);
    assert_eq!(merged.total(), 2 * (0..10).sum::<u64>());
}

#[test]
fn short_arrays_from_a_sloppy_peer_never_panic() {
    let a = matrix(
        Series::Writes,
        &[1, 2],
        &[("route:1", &[5, 6], &[7, 7], &[1, 1])],
    );
    let b = matrix(Series::Writes, &[1, 2], &[("route:1", &[5], &[7], &[])]);
    let out = merge(&[a, b], &opts(Series::Writes)).matrix;
    assert_eq!(out.rows[0].values.len(), 2);
}

#[test]
fn absurd_peer_timestamps_are_rejected_and_never_panic() {
    let mut peer = matrix(Series::Reads, &[i64::MIN], &[("route:1", &[1], &[], &[])]);
    assert!(matches!(
        peer.validate(),
        Err(keyviz::MatrixError::ColumnOutOfRange(0))
    ));
    peer.step_ms = 1_000;
    let out = merge(
        &[matrix(Series::Reads, &[1_000], &[]), peer],
        &MergeOptions {
            series: Series::Reads,
            step_ms: 1_000,
            row_budget: None,
            settling_from_unix_ms: None,
        },
    );
    assert_eq!(out.matrix.total(), 1);
}

#[test]
fn merged_width_is_bounded_with_a_warning() {
    let wide: Vec<i64> = (0..(keyviz::MAX_MATRIX_COLUMNS as i64 + 10)).collect();
    let peer = matrix(Series::Reads, &wide, &[]);
    assert!(matches!(
        peer.validate(),
        Err(keyviz::MatrixError::TooLarge { .. })
    ));
    let local = matrix(Series::Reads, &[5], &[("route:1", &[1], &[], &[])]);
    let merged = merge(&[local, peer], &opts(Series::Reads));
    assert_eq!(
        merged.matrix.column_unix_ms.len(),
        keyviz::MAX_MATRIX_COLUMNS
    );
    assert!(
        merged
            .warnings
            .iter()
            .any(|w| w.code == WarningCode::ColumnsTruncated)
    );
    assert!(merged.matrix.validate().is_ok());
}

#[test]
fn an_input_of_another_series_is_left_out() {
    let local = matrix(Series::Reads, &[1], &[("route:1", &[1], &[], &[])]);
    let wrong = matrix(Series::Writes, &[1], &[("route:1", &[100], &[7], &[1])]);
    let merged = merge(&[local, wrong], &opts(Series::Reads));
    assert_eq!(merged.matrix.total(), 1);
    assert_eq!(merged.warnings[0].code, WarningCode::SeriesMismatch);
}

#[test]
fn a_finer_step_peer_lands_in_the_window_that_contains_it() {
    let local = matrix(Series::Reads, &[60_000], &[("route:1", &[1], &[], &[])]);
    let mut fine = matrix(
        Series::Reads,
        &[90_000, 119_000],
        &[("route:1", &[10, 20], &[], &[])],
    );
    fine.step_ms = 1_000;
    let merged = merge(
        &[local, fine],
        &MergeOptions {
            series: Series::Reads,
            step_ms: 60_000,
            row_budget: None,
            settling_from_unix_ms: None,
        },
    );
    assert_eq!(merged.matrix.column_unix_ms, vec![60_000]);
    assert_eq!(merged.matrix.rows[0].values, vec![31]);
    assert!(
        merged
            .warnings
            .iter()
            .any(|w| w.code == WarningCode::StepMismatch)
    );
}

#[test]
fn a_lagging_replica_conflicts_only_once_its_column_has_settled() {
    // Both nodes replicate group 7 in term 42; the second is one write behind in both
    // columns. Column 200 is still settling, column 100 is not.
    let caught_up: RowSpec<'_> = ("route:1", &[30, 40], &[7, 7], &[42, 42]);
    let behind: RowSpec<'_> = ("route:1", &[29, 39], &[7, 7], &[42, 42]);
    let inputs = [
        matrix(Series::Writes, &[100, 200], &[caught_up]),
        matrix(Series::Writes, &[100, 200], &[behind]),
    ];
    let options = MergeOptions {
        settling_from_unix_ms: Some(200),
        ..opts(Series::Writes)
    };
    let row = merge(&inputs, &options).matrix.rows.remove(0);
    assert_eq!(row.values, vec![30, 40], "the caught-up replica's counts");
    assert_eq!(row.conflicts, vec![true, false]);
    assert!(row.conflict);
    // Without a settling window both columns conflict, as in the reference.
    let row = merge(&inputs, &opts(Series::Writes)).matrix.rows.remove(0);
    assert_eq!(row.conflicts, vec![true, true]);
}

#[test]
fn settling_covers_two_steps_after_the_window_and_at_least_ten_seconds() {
    // A one-minute window starting 3 minutes ago ended 2 minutes ago: settled.
    assert_eq!(
        settling_from_unix_ms(1_000_000, 60_000),
        1_000_000 - 180_000
    );
    // Short steps still get SETTLE_MIN_MS after the window closes.
    let step = 1_000;
    assert_eq!(
        settling_from_unix_ms(1_000_000, step),
        1_000_000 - (step as i64 + SETTLE_MIN_MS as i64)
    );
    assert_eq!(settling_from_unix_ms(i64::MIN, u64::MAX), i64::MIN);
}
