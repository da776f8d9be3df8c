//! Tiered history: aging keeps exact totals, coarse write cells merge exactly
//! across replicas and leader changes, a restart keeps every tier, and a
//! query reads the finest tier that covers its window.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyviz::hotkeys::HotKeyQuery;
use keyviz::merge::{MergeOptions, merge};
use keyviz::{
    ColumnRecord, HistoryStore, HistoryTier, Matrix, MatrixQuery, PersistError, ReadRole,
    RouteSpec, Sampler, SamplerConfig, Series,
};
use parking_lot::Mutex;

const MIN: u64 = 60_000;
const TEN: u64 = 10 * MIN;
const HOUR: u64 = 60 * MIN;
/// A whole day (so every tier's windows start on it).
const T0: i64 = 1_699_920_000_000;

/// 1 min kept 1 h, 10 min kept 6 h, 1 h kept 2 days.
fn config() -> SamplerConfig {
    SamplerConfig {
        step_ms: MIN,
        retention_ms: HOUR,
        coarser_tiers: vec![
            HistoryTier {
                step_ms: TEN,
                keep_ms: 6 * HOUR,
            },
            HistoryTier {
                step_ms: HOUR,
                keep_ms: 48 * HOUR,
            },
        ],
        ..SamplerConfig::default()
    }
}

fn routes(s: &Sampler) {
    for id in 1..=3u64 {
        s.register_route(RouteSpec {
            id,
            start: vec![b'a' + id as u8],
            end: Some(vec![b'a' + id as u8 + 1]),
            group: id,
        })
        .expect("route");
    }
}

/// What a minute `c` counts: writes of route `r` under term `term_of(c)`.
fn writes_at(c: u64, r: u64) -> u64 {
    1 + (c * 7 + r * 3) % 5
}

/// The leader term of every group at minute `c`: a leader change every 25 min.
fn term_of(c: u64) -> u64 {
    4 + c / 25
}

/// Fills `minutes` columns from `T0`, returning the exact write and read totals
/// per minute.
fn fill(s: &Sampler, minutes: u64) -> BTreeMap<i64, (u64, u64)> {
    let mut exact = BTreeMap::new();
    for c in 0..minutes {
        let at = T0 + (c * MIN) as i64;
        let (mut w, mut r) = (0, 0);
        for route in 1..=3u64 {
            for _ in 0..writes_at(c, route) {
                s.observe_write(route, b"k", 10, route, term_of(c), at);
                w += 1;
            }
            s.observe_read(route, b"k", 10, ReadRole::Leader, at);
            r += 1;
        }
        exact.insert(at, (w, r));
        let _ = s.flush(at + MIN as i64);
    }
    exact
}

fn query(series: Series, from: Option<i64>, to: Option<i64>) -> MatrixQuery {
    MatrixQuery {
        series,
        from_unix_ms: from,
        to_unix_ms: to,
        ..MatrixQuery::default()
    }
}

fn exact_in(exact: &BTreeMap<i64, (u64, u64)>, from: i64, to: i64, writes: bool) -> u64 {
    exact
        .range(from..to)
        .map(|(_, (w, r))| if writes { *w } else { *r })
        .sum()
}

#[test]
fn aging_into_coarser_tiers_keeps_exact_totals_and_queries_pick_the_finest_covering_tier() {
    let s = Sampler::new(config(), T0).expect("valid config");
    routes(&s);
    let minutes = 8 * 60;
    let exact = fill(&s, minutes);
    let end = T0 + (minutes * MIN) as i64;

    // Everything: only the 1 h tier still holds the first hours.
    let all = s.matrix(&query(Series::Writes, None, None), T0);
    assert_eq!(all.step_ms, HOUR);
    assert_eq!(all.column_unix_ms.len(), 8);
    assert_eq!(all.total(), exact_in(&exact, T0, end, true));
    let reads = s.matrix(&query(Series::Reads, None, None), T0);
    assert_eq!(reads.total(), exact_in(&exact, T0, end, false));
    for (j, &t) in all.column_unix_ms.iter().enumerate() {
        let col: u64 = all.rows.iter().map(|r| r.values[j]).sum();
        assert_eq!(col, exact_in(&exact, t, t + HOUR as i64, true), "hour {t}");
    }

    // The last 3 h: the 10 min tier, column by column exact.
    let from = end - (3 * HOUR) as i64;
    let m = s.matrix(&query(Series::Writes, Some(from), None), T0);
    assert_eq!(m.step_ms, TEN);
    assert_eq!(m.column_unix_ms.len(), 18);
    assert_eq!(m.total(), exact_in(&exact, from, end, true));

    // The last 30 min: the 1 min tier.
    let from = end - (30 * MIN) as i64;
    let m = s.matrix(&query(Series::Writes, Some(from), None), T0);
    assert_eq!(m.step_ms, MIN);
    assert_eq!(m.column_unix_ms.len(), 30);
    assert_eq!(m.total(), exact_in(&exact, from, end, true));

    // A window start inside a coarse column includes that whole column.
    let from = end - (3 * HOUR) as i64 + 5 * MIN as i64;
    let m = s.matrix(&query(Series::Writes, Some(from), None), T0);
    assert_eq!(m.step_ms, TEN);
    assert_eq!(m.column_unix_ms[0], from - (5 * MIN) as i64);

    // A coarse cell spanning a leader change lists its terms' shares.
    let row = &all.rows[0];
    let lanes: Vec<_> = row.write_lanes.iter().filter(|l| l.column == 0).collect();
    let terms: Vec<u64> = lanes.iter().map(|l| l.term).collect();
    assert_eq!(terms, vec![4, 5, 6], "minutes 0-59 saw terms 4, 5 and 6");
    assert_eq!(lanes.iter().map(|l| l.value).sum::<u64>(), row.values[0]);
    all.validate().expect("a local matrix with lanes is valid");

    // Hot keys of the whole window read the same tier and agree with it.
    let hot = s
        .hot_keys(
            &HotKeyQuery {
                series: Series::Writes,
                ..HotKeyQuery::default()
            },
            T0,
        )
        .expect("valid");
    assert_eq!(hot.total(), all.total());
    for part in &hot.parts {
        let item = &part.summary.items[0];
        assert_eq!(item.key, b"k");
        assert!(item.lower <= part.summary.total && part.summary.total <= item.estimate);
    }
}

/// One replica: observes the writes of `terms` only (what it applied before
/// it went away or after it came back), in one 1 h window.
fn replica(terms: &[(u64, u64)]) -> Matrix {
    let s = Sampler::new(config(), T0).expect("valid config");
    routes(&s);
    for (minute, &(term, writes)) in terms.iter().enumerate() {
        let at = T0 + (minute as u64 * 10 * MIN) as i64;
        for _ in 0..writes {
            s.observe_write(1, b"k", 1, 1, term, at);
        }
        let _ = s.flush(at + MIN as i64);
    }
    s.matrix(
        &query(Series::Writes, Some(T0 - (30 * HOUR) as i64), None),
        T0,
    )
}

#[test]
fn coarse_cells_of_three_replicas_across_leader_changes_merge_exactly() {
    // Terms 5, 6 and 7 inside one hour; each replica saw a different part.
    let a = replica(&[(5, 100), (6, 50)]);
    let b = replica(&[(0, 0), (6, 50), (7, 30)]);
    let c = replica(&[(5, 100), (6, 50), (7, 30)]);
    for m in [&a, &b, &c] {
        assert_eq!(m.step_ms, HOUR, "a 30 h window reads the 1 h tier");
        m.validate().expect("valid");
    }
    let options = MergeOptions {
        series: Series::Writes,
        step_ms: HOUR,
        row_budget: None,
        settling_from_unix_ms: None,
    };
    let merged = merge(&[a.clone(), b.clone(), c.clone()], &options).matrix;
    assert_eq!(merged.total(), 180, "each term counted once");
    assert!(!merged.rows[0].conflict);
    let shares: Vec<(u64, u64)> = merged.rows[0]
        .write_lanes
        .iter()
        .map(|l| (l.term, l.value))
        .collect();
    assert_eq!(shares, vec![(5, 100), (6, 50), (7, 30)]);
    merged.validate().expect("valid");
    // Input order does not matter, and merging a merged matrix stays exact.
    let again = merge(&[c, merged.clone(), b, a], &options).matrix;
    assert_eq!(again.total(), 180);
    // Without the shares (an older producer) the same inputs double count the
    // overlap, which is why coarse cells carry them.
    let strip = |m: &Matrix| {
        let mut m = m.clone();
        m.rows.iter_mut().for_each(|r| r.write_lanes.clear());
        m
    };
    let a = replica(&[(5, 100), (6, 50)]);
    let b = replica(&[(0, 0), (6, 50), (7, 30)]);
    let old = merge(&[strip(&a), strip(&b)], &options).matrix;
    assert_ne!(old.total(), 180);
    let exact = merge(&[a, b], &options).matrix;
    assert_eq!(exact.total(), 180);
}

#[test]
fn write_lanes_that_do_not_sum_to_their_cell_are_rejected() {
    let mut m = replica(&[(5, 10), (6, 5)]);
    m.validate().expect("valid");
    m.rows[0].write_lanes[0].value += 1;
    let e = m.validate().expect_err("lanes must sum to the cell");
    assert!(e.to_string().contains("write_lanes"), "{e}");
    let mut m = replica(&[(5, 10), (6, 5)]);
    m.rows[0].write_lanes[0].column = 99;
    assert!(m.validate().is_err());
    let json = serde_json::to_string(&replica(&[(5, 10), (6, 5)])).expect("json");
    assert!(json.contains("\"write_lanes\""));
    let back: Matrix = serde_json::from_str(&json).expect("decodes");
    back.validate().expect("valid after a round trip");
}

/// A store keyed by (step, window), as the trait requires.
#[derive(Default)]
struct TierStore {
    columns: Mutex<BTreeMap<(u64, i64), ColumnRecord>>,
    /// `load` yields coarser tiers first (as kvnode's store does).
    coarse_first: std::sync::atomic::AtomicBool,
}

impl HistoryStore for TierStore {
    fn append(&self, record: &ColumnRecord) -> Result<(), PersistError> {
        self.columns
            .lock()
            .insert((record.step_ms, record.unix_ms), record.clone());
        Ok(())
    }
    /// Finest tier first (the order that makes restore rebuild the coarser
    /// tiers and drop them again), or coarsest first when `coarse_first`.
    fn load(
        &self,
        since: i64,
        visit: &mut dyn FnMut(&ColumnRecord) -> Result<(), PersistError>,
    ) -> Result<(), PersistError> {
        let mut cols: Vec<ColumnRecord> = self.columns.lock().values().cloned().collect();
        if self.coarse_first.load(std::sync::atomic::Ordering::Relaxed) {
            cols.sort_by_key(|c| (std::cmp::Reverse(c.step_ms), c.unix_ms));
        }
        cols.iter()
            .filter(|c| c.unix_ms >= since)
            .try_for_each(visit)
    }
    fn prune(&self, before: i64) -> Result<(), PersistError> {
        self.prune_tier(MIN, before)
    }
    fn prune_tier(&self, step: u64, before: i64) -> Result<(), PersistError> {
        self.columns
            .lock()
            .retain(|&(s, t), _| s != step || t >= before);
        Ok(())
    }
}

/// Write hot keys of the same windows as [`every_tier`] (one per tier; the
/// coarser tiers keep their summaries encoded, the finest as built).
fn every_tier_hot(s: &Sampler, end: i64) -> Vec<keyviz::hotkeys::NodeHotKeys> {
    [30 * MIN, 3 * HOUR, 30 * HOUR]
        .iter()
        .map(|&back| {
            s.hot_keys(
                &HotKeyQuery {
                    series: Series::Writes,
                    from_unix_ms: Some(end - back as i64),
                    ..HotKeyQuery::default()
                },
                T0,
            )
            .expect("valid")
        })
        .collect()
}

/// How many columns the store holds in each tier (1 min, 10 min, 1 h).
fn held_per_tier(store: &TierStore) -> Vec<usize> {
    let columns = store.columns.lock();
    [MIN, TEN, HOUR]
        .iter()
        .map(|&st| columns.keys().filter(|(s, _)| *s == st).count())
        .collect()
}

fn every_tier(s: &Sampler, end: i64) -> Vec<Matrix> {
    [30 * MIN, 3 * HOUR, 30 * HOUR]
        .iter()
        .map(|&back| {
            let mut m = s.matrix(&query(Series::Writes, Some(end - back as i64), None), T0);
            m.generated_at.clear();
            m
        })
        .collect()
}

#[test]
fn a_restart_keeps_every_tier_and_an_old_single_tier_store_rebuilds_the_coarser_ones() {
    let store = Arc::new(TierStore::default());
    let minutes = 4 * 60;
    let end = T0 + (minutes * MIN) as i64;
    let (before, before_hot) = {
        let s = Sampler::with_store(config(), T0, store.clone()).expect("sampler");
        routes(&s);
        fill(&s, minutes);
        (every_tier(&s, end), every_tier_hot(&s, end))
    };
    for hot in &before_hot {
        assert!(
            hot.parts.iter().any(|p| !p.summary.items.is_empty()),
            "every tier lists hot keys"
        );
    }
    let steps: Vec<u64> = before.iter().map(|m| m.step_ms).collect();
    assert_eq!(steps, vec![MIN, TEN, HOUR]);
    let held = held_per_tier(&store);
    assert_eq!(
        held,
        vec![60, 24, 4],
        "each tier pruned to its own retention"
    );
    let s = Sampler::with_store(config(), end, store.clone()).expect("restart");
    routes(&s);
    assert_eq!(every_tier(&s, end), before);
    assert_eq!(
        every_tier_hot(&s, end),
        before_hot,
        "every tier's hot keys survive the restart"
    );
    drop(s);
    // The restore is streamed and takes records in any order: finest tier
    // first above (each coarser tier rebuilt, then replaced by its stored
    // records), coarsest first here (nothing rebuilt).
    store
        .coarse_first
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let s = Sampler::with_store(config(), end, store.clone()).expect("restart, coarse first");
    routes(&s);
    assert_eq!(every_tier(&s, end), before, "same history in either order");
    assert_eq!(every_tier_hot(&s, end), before_hot);
    let held_again = held_per_tier(&store);
    assert_eq!(held_again, held, "a restart stores no rebuilt column");

    // A store written before tiers: the 1 min records only (kept 48 h then).
    let old = Arc::new(TierStore::default());
    {
        let single = SamplerConfig {
            retention_ms: 48 * HOUR,
            coarser_tiers: Vec::new(),
            ..config()
        };
        let s = Sampler::with_store(single, T0, old.clone()).expect("sampler");
        routes(&s);
        fill(&s, minutes);
    }
    let s = Sampler::with_store(config(), end, old.clone()).expect("upgrade");
    routes(&s);
    assert_eq!(every_tier(&s, end), before, "coarser tiers rebuilt exactly");
    let coarse = old.columns.lock().keys().filter(|(s, _)| *s != MIN).count();
    assert_eq!(coarse, 24 + 4, "the rebuilt tiers were stored");
    drop(s);
    let s = Sampler::with_store(config(), end, old).expect("second start");
    routes(&s);
    assert_eq!(
        every_tier(&s, end),
        before,
        "a second start loads them as stored"
    );
}
