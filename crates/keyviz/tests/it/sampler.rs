//! The sampler: counting, routes, flush and history.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keyviz::{
    MAX_SIDE_CELLS, MAX_SIDE_WINDOWS, MatrixQuery, ReadRole, RouteError, Sampler, SamplerConfig,
    Series, virtual_bucket_name,
};

use crate::util::{MemStore, STEP, T0, all, route, sampler, sampler_with, total};

#[test]
fn counts_ops_and_key_plus_value_bytes() {
    let s = sampler();
    s.register_route(route(1, b"a", Some(b"c"), 7))
        .expect("register");
    s.observe_read(1, b"apple", 10, ReadRole::Leader, T0);
    s.observe_read(1, b"apple", 10, ReadRole::Follower, T0);
    s.observe_write(1, b"apple", 100, 7, 42, T0);
    let _ = s.flush(T0 + 1_000);
    assert_eq!(total(&s, Series::Reads), 2);
    assert_eq!(total(&s, Series::ReadBytes), 30);
    assert_eq!(total(&s, Series::Writes), 1);
    assert_eq!(total(&s, Series::WriteBytes), 105);
    assert_eq!(total(&s, Series::LeaderReads), 1);
    assert_eq!(total(&s, Series::FollowerReads), 1);
    let m = all(&s, Series::Writes);
    assert_eq!(m.rows[0].bucket_id, "route:1");
    assert_eq!(m.rows[0].raft_group_ids, vec![7]);
    assert_eq!(m.rows[0].leader_terms, vec![42]);
    assert_eq!(m.rows[0].preview.as_deref(), Some("a"));
}

#[test]
fn huge_lengths_on_a_busy_route_are_counted_with_capped_bytes() {
    // Past 256 operations the route is counted on this thread's own shard
    // (the fast path); a key or value length of 2^47 or more leaves the fast
    // path, and the general path caps the operation's bytes at 2^48.
    const CAP: u64 = 1 << 48;
    let s = sampler();
    s.register_route(route(1, b"a", Some(b"c"), 7))
        .expect("register");
    for _ in 0..1_000 {
        s.observe_write(1, b"apple", 2, 7, 42, T0);
        s.observe_read(1, b"apple", 2, ReadRole::Leader, T0);
    }
    s.observe_write(1, b"apple", usize::MAX, 7, 42, T0);
    s.observe_read(1, b"apple", 1 << 47, ReadRole::Leader, T0);
    s.observe_read(1, b"apple", (1 << 47) - 1, ReadRole::Leader, T0);
    let _ = s.flush(T0 + 1_000);
    assert_eq!(total(&s, Series::Writes), 1_001);
    assert_eq!(total(&s, Series::WriteBytes), 1_000 * 7 + CAP);
    assert_eq!(total(&s, Series::Reads), 1_002);
    assert_eq!(
        total(&s, Series::ReadBytes),
        1_000 * 7 + (5 + (1 << 47)) + (5 + (1 << 47) - 1)
    );
}

#[test]
fn columns_are_window_starts_aligned_to_the_step() {
    let s = sampler_with(|c| c.step_ms = 60_000);
    s.register_route(route(1, b"", None, 1)).expect("register");
    let t = 1_700_000_000_000; // 22:13:20, 20 s into a minute
    s.observe_read(1, b"k", 0, ReadRole::Leader, t + 10);
    let _ = s.flush(t + 40_000); // first boundary after the start
    s.observe_read(1, b"k", 0, ReadRole::Leader, t + 50_000);
    let report = s.flush(t + 100_000);
    assert_eq!(report.column_unix_ms % 60_000, 0);
    let m = all(&s, Series::Reads);
    assert!(
        m.column_unix_ms.iter().all(|c| c % 60_000 == 0),
        "{:?}",
        m.column_unix_ms
    );
    assert_eq!(m.step_ms, 60_000);
}

#[test]
fn two_flushes_in_one_window_make_one_column() {
    let s = sampler();
    s.register_route(route(1, b"", None, 1)).expect("register");
    s.observe_write(1, b"k", 1, 1, 1, T0);
    let _ = s.flush(T0 + 1_000);
    s.observe_write(1, b"k", 1, 1, 1, T0 + 1_100);
    let _ = s.flush(T0 + 1_200); // shutdown-style flush inside the next window
    s.observe_write(1, b"k", 1, 1, 1, T0 + 1_300);
    let _ = s.flush(T0 + 1_400);
    let m = all(&s, Series::Writes);
    assert_eq!(m.column_unix_ms, vec![T0, T0 + 1_000]);
    assert_eq!(m.total(), 3);
}

#[test]
fn no_counts_lost_across_flush_under_two_threads() {
    let s = Arc::new(sampler());
    s.register_route(route(1, b"a", Some(b"z"), 1))
        .expect("register");
    s.register_route(route(2, b"z", None, 1)).expect("register");
    let done = Arc::new(AtomicBool::new(false));
    const PER_THREAD: u64 = 200_000;
    let observers: Vec<_> = (0..2u64)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    if i % 2 == 0 {
                        s.observe_read(1 + t, b"key", 3, ReadRole::Leader, s.open_window_unix_ms());
                    } else {
                        s.observe_write(1 + t, b"key", 3, 1, 5, s.open_window_unix_ms());
                    }
                }
            })
        })
        .collect();
    let flusher = {
        let (s, done) = (Arc::clone(&s), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut now = T0;
            while !done.load(Ordering::Acquire) {
                now += 1_000;
                let _ = s.flush(now);
            }
            now
        })
    };
    for o in observers {
        o.join().expect("observer");
    }
    done.store(true, Ordering::Release);
    let now = flusher.join().expect("flusher");
    let _ = s.flush(now + 1_000);
    assert_eq!(total(&s, Series::Reads), PER_THREAD);
    assert_eq!(total(&s, Series::Writes), PER_THREAD);
    assert_eq!(total(&s, Series::WriteBytes), PER_THREAD / 2 * 6 * 2);
}

/// More observing threads than shard leases, all on one route (busy enough
/// that every lease holder gets its own shard, the rest share the atomic
/// counters), a seal running all the while, and threads exiting and handing
/// their leases on: every count lands exactly once.
#[test]
fn no_counts_lost_across_seals_with_more_threads_than_shard_leases() {
    let s = Arc::new(sampler());
    s.register_route(route(1, b"", None, 1)).expect("register");
    let done = Arc::new(AtomicBool::new(false));
    const THREADS: u64 = 12;
    const PER_THREAD: u64 = 20_000;
    let flusher = {
        let (s, done) = (Arc::clone(&s), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut now = T0;
            while !done.load(Ordering::Acquire) {
                now += 1_000;
                let _ = s.flush(now);
            }
            now
        })
    };
    // Two waves: the second reuses the leases the first gave back.
    for wave in 0..2u64 {
        let observers: Vec<_> = (0..THREADS)
            .map(|t| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    let key = (wave * THREADS + t).to_be_bytes();
                    for _ in 0..PER_THREAD {
                        s.observe_write(1, &key, 2, 1, 5, s.open_window_unix_ms());
                    }
                })
            })
            .collect();
        for o in observers {
            o.join().expect("observer");
        }
    }
    done.store(true, Ordering::Release);
    let now = flusher.join().expect("flusher");
    let _ = s.flush(now + 1_000);
    let ops = 2 * THREADS * PER_THREAD;
    assert_eq!(total(&s, Series::Writes), ops);
    assert_eq!(total(&s, Series::WriteBytes), ops * 10);
}

#[test]
fn batch_registration_matches_one_by_one_and_is_all_or_nothing() {
    let specs = |n: u8| -> Vec<keyviz::RouteSpec> {
        (0..n)
            .map(|i| route(u64::from(i) + 1, &[i], Some(&[i + 1]), 1 + u64::from(i % 3)))
            .collect()
    };
    let batch = sampler();
    batch.register_routes(specs(50)).expect("batch");
    let single = sampler();
    for spec in specs(50) {
        single.register_route(spec).expect("one");
    }
    for s in [&batch, &single] {
        for i in 0..50u8 {
            s.observe_write(u64::from(i) + 1, &[i, 7], 1, 1, 1, T0);
        }
        let _ = s.flush(T0 + 1_000);
    }
    let rows = |s: &Sampler| {
        all(s, Series::Writes)
            .rows
            .iter()
            .map(|r| (r.bucket_id.clone(), r.start.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&batch).len(), 50);
    assert_eq!(rows(&batch), rows(&single));
    assert_eq!(batch.stats().routes, 50);

    // A batch whose last spec overlaps an earlier one registers nothing.
    let s = sampler();
    let mut bad = specs(3);
    bad.push(route(9, &[1, 5], Some(&[2]), 1));
    assert!(s.register_routes(bad).is_err());
    assert_eq!(s.stats().routes, 0);
    // ... nor one that reuses a registered id; the catalog is unchanged.
    s.register_route(route(1, b"x", Some(b"y"), 1))
        .expect("one");
    assert!(s.register_routes(specs(3)).is_err());
    assert_eq!(s.stats().routes, 1);
    s.register_routes(vec![route(2, b"a", Some(b"b"), 1)])
        .expect("free range still registers");
    assert_eq!(s.stats().routes, 2);
}

#[test]
fn route_registered_after_start_is_counted() {
    let s = sampler();
    s.register_route(route(1, b"a", Some(b"m"), 1))
        .expect("register");
    s.observe_write(1, b"b", 0, 1, 1, T0);
    let _ = s.flush(T0 + 1_000);
    s.register_route(route(2, b"m", None, 2))
        .expect("late route");
    s.observe_write(2, b"x", 0, 2, 1, T0 + 1_000);
    let _ = s.flush(T0 + 2_000);
    let m = all(&s, Series::Writes);
    assert_eq!(m.total(), 2);
    assert!(m.rows.iter().any(|r| r.bucket_id == "route:2"));
    assert_eq!(s.stats().unknown_route_observations, 0);
}

#[test]
fn a_threads_cached_table_follows_changes_made_on_other_threads_and_samplers() {
    // Each thread caches the last table it observed into; a change made on
    // another thread, or an observe into another sampler, must not leave it
    // counting into a stale table.
    let a = Arc::new(sampler());
    let b = sampler();
    a.register_route(route(1, b"a", Some(b"m"), 1))
        .expect("register");
    b.register_route(route(1, b"", None, 5)).expect("register");
    for _ in 0..300 {
        // Busy enough for this thread's shard of route 1 in `a`.
        a.observe_write(1, b"b", 0, 1, 1, T0);
    }
    a.observe_write(2, b"x", 0, 2, 1, T0);
    assert_eq!(a.stats().unknown_route_observations, 1);
    let a2 = Arc::clone(&a);
    std::thread::spawn(move || a2.register_route(route(2, b"m", None, 2)))
        .join()
        .expect("thread")
        .expect("late route");
    // Two samplers alternating on one thread, and the new route.
    for _ in 0..10 {
        a.observe_write(2, b"x", 0, 2, 1, T0);
        b.observe_write(1, b"x", 0, 5, 1, T0);
        a.observe_write(1, b"b", 0, 1, 1, T0);
    }
    let _ = a.flush(T0 + 1_000);
    let _ = b.flush(T0 + 1_000);
    let m = all(&a, Series::Writes);
    assert_eq!(m.total(), 300 + 20);
    let two = m.rows.iter().find(|r| r.bucket_id == "route:2");
    assert_eq!(two.map(|r| r.values.iter().sum::<u64>()), Some(10));
    assert_eq!(a.stats().unknown_route_observations, 1);
    assert_eq!(all(&b, Series::Writes).total(), 10);
}

#[test]
fn unknown_routes_are_counted_as_dropped_not_silent() {
    let s = sampler();
    s.observe_read(99, b"k", 0, ReadRole::Leader, T0);
    assert_eq!(s.stats().unknown_route_observations, 1);
    let _ = s.flush(T0 + 1_000);
    assert_eq!(all(&s, Series::Reads).rows.len(), 0);
}

#[test]
fn catalog_rejects_overlaps_empty_ranges_and_duplicates() {
    let s = sampler();
    s.register_route(route(1, b"b", Some(b"d"), 1))
        .expect("register");
    assert_eq!(
        s.register_route(route(2, b"c", Some(b"e"), 1)),
        Err(RouteError::Overlap { id: 2, other: 1 })
    );
    assert_eq!(
        s.register_route(route(3, b"a", None, 1)),
        Err(RouteError::Overlap { id: 3, other: 1 })
    );
    assert_eq!(
        s.register_route(route(4, b"x", Some(b"x"), 1)),
        Err(RouteError::EmptyRange { id: 4 })
    );
    assert_eq!(
        s.register_route(route(1, b"x", None, 1)),
        Err(RouteError::AlreadyRegistered(1))
    );
    assert_eq!(s.remove_route(9), Err(RouteError::UnknownRoute(9)));
    assert_eq!(
        s.split_route(1, b"a", 5),
        Err(RouteError::SplitKeyOutsideRange(1))
    );
}

#[test]
fn split_and_merge_while_observing_keep_totals() {
    let s = Arc::new(sampler());
    s.register_route(route(1, b"", None, 1)).expect("register");
    let stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) || n < 10_000 {
                // Route 1 always exists; it only changes shape.
                s.observe_write(1, b"a", 0, 1, 1, s.open_window_unix_ms());
                n += 1;
            }
            n
        })
    };
    let mut now = T0;
    for i in 0..50u64 {
        s.split_route(1, b"m", 100 + i).expect("split");
        now += 1_000;
        let _ = s.flush(now);
        s.merge_routes(1, 100 + i).expect("merge");
        now += 1_000;
        let _ = s.flush(now);
    }
    stop.store(true, Ordering::Release);
    let n = observer.join().expect("observer");
    for _ in 0..3 {
        now += 1_000;
        let _ = s.flush(now);
    }
    assert_eq!(total(&s, Series::Writes), n);
}

#[test]
fn split_rows_show_the_new_ranges() {
    let s = sampler();
    s.register_route(route(1, b"a", Some(b"z"), 1))
        .expect("register");
    s.split_route(1, b"m", 2).expect("split");
    s.observe_write(1, b"b", 0, 1, 1, T0);
    s.observe_write(2, b"n", 0, 1, 1, T0);
    let _ = s.flush(T0 + 1_000);
    let m = all(&s, Series::Writes);
    let ranges: Vec<_> = m
        .rows
        .iter()
        .map(|r| (r.bucket_id.as_str(), r.start.clone(), r.end.clone()))
        .collect();
    assert_eq!(
        ranges,
        vec![
            ("route:1", Some(b"a".to_vec()), Some(b"m".to_vec())),
            ("route:2", Some(b"m".to_vec()), Some(b"z".to_vec())),
        ]
    );
}

#[test]
fn route_budget_coarsens_cold_adjacent_routes_and_keeps_hot_ones() {
    let s = sampler_with(|c| c.max_tracked_routes = 3);
    let keys: [&[u8]; 5] = [b"a", b"b", b"c", b"d", b"e"];
    for (i, k) in keys.iter().enumerate().take(3) {
        s.register_route(route(i as u64 + 1, k, Some(keys[i + 1]), 1))
            .expect("register");
    }
    // Route 2 is hot; its activity is learnt at flush.
    for _ in 0..100 {
        s.observe_write(2, b"bb", 0, 1, 1, T0);
    }
    let _ = s.flush(T0 + 1_000);
    s.register_route(route(4, b"d", Some(b"e"), 1))
        .expect("register 4");
    s.register_route(route(5, b"e", None, 1))
        .expect("register 5");
    let stats = s.stats();
    assert_eq!(stats.slots, 3);
    assert_eq!(stats.routes, 5);
    for id in 1..=5 {
        s.observe_write(id, b"x", 0, 1, 1, T0 + 1_000);
    }
    let _ = s.flush(T0 + 2_000);
    let m = s.matrix(
        &MatrixQuery {
            series: Series::Writes,
            from_unix_ms: Some(T0 + 1_000),
            ..MatrixQuery::default()
        },
        T0,
    );
    assert_eq!(m.total(), 5, "every write counted, coarsened or not");
    assert!(
        m.rows
            .iter()
            .any(|r| r.bucket_id == "route:2" && !r.aggregate),
        "hot route stays individual"
    );
    let virt: Vec<_> = m.rows.iter().filter(|r| r.aggregate).collect();
    assert!(!virt.is_empty());
    let members: u64 = m.rows.iter().map(|r| r.route_count).sum();
    assert_eq!(members, 5);
}

#[test]
fn virtual_bucket_ids_are_equal_on_two_samplers_with_the_same_ranges() {
    let build = || {
        let s = sampler_with(|c| c.max_tracked_routes = 1);
        s.register_route(route(1, b"a", Some(b"b"), 1))
            .expect("register");
        s.register_route(route(2, b"b", Some(b"c"), 1))
            .expect("register");
        s.observe_read(1, b"a", 0, ReadRole::Leader, T0);
        let _ = s.flush(T0 + 1_000);
        all(&s, Series::Reads).rows[0].bucket_id.clone()
    };
    let (a, b) = (build(), build());
    assert_eq!(a, b);
    assert_eq!(a, virtual_bucket_name(b"a", Some(b"c")));
}

#[test]
fn term_change_inside_a_window_keeps_terms_apart() {
    let store = Arc::new(MemStore::default());
    let s = Sampler::with_store(
        keyviz::SamplerConfig {
            step_ms: STEP,
            ..keyviz::SamplerConfig::default()
        },
        T0,
        store.clone(),
    )
    .expect("sampler");
    s.register_route(route(1, b"", None, 7)).expect("register");
    for _ in 0..3 {
        s.observe_write(1, b"k", 0, 7, 42, T0);
    }
    for _ in 0..5 {
        s.observe_write(1, b"k", 0, 7, 43, T0);
    }
    let report = s.flush(T0 + 1_000);
    assert!(report.persist_error.is_none());
    let m = all(&s, Series::Writes);
    assert_eq!(m.rows[0].values, vec![8]);
    assert_eq!(
        m.rows[0].leader_terms,
        vec![43],
        "the dominant term names the cell"
    );
    let records = store.columns.lock().clone();
    let lanes = &records[0].cells[0].writes;
    let mut per_term: Vec<(u64, u64)> = lanes.iter().map(|w| (w.term, w.writes)).collect();
    per_term.sort_unstable();
    assert_eq!(per_term, vec![(42, 3), (43, 5)]);
}

#[test]
fn sub_ranges_split_a_hot_route_into_ordered_rows() {
    let s = sampler_with(|c| c.key_buckets_per_route = 4);
    s.register_route(route(1, &[0x00], Some(&[0x40]), 1))
        .expect("register");
    for _ in 0..100 {
        s.observe_write(1, &[0x38], 0, 1, 1, T0);
    }
    s.observe_write(1, &[0x01], 0, 1, 1, T0);
    let _ = s.flush(T0 + 1_000);
    let m = all(&s, Series::Writes);
    let rows: Vec<_> = m
        .rows
        .iter()
        .map(|r| (r.bucket_id.as_str(), r.values[0]))
        .collect();
    assert_eq!(rows, vec![("route:1#0", 1), ("route:1#3", 100)]);
    assert_eq!(m.rows[1].start, Some(vec![0x30]));
    assert_eq!(m.rows[1].end, Some(vec![0x40]));
}

#[test]
fn retention_drops_old_columns_by_age_and_count() {
    let s = sampler_with(|c| {
        c.retention_ms = 5_000;
        c.max_columns = 3;
    });
    s.register_route(route(1, b"", None, 1)).expect("register");
    let mut now = T0;
    for _ in 0..10 {
        s.observe_read(1, b"k", 0, ReadRole::Leader, now);
        now += 1_000;
        let _ = s.flush(now);
    }
    let m = all(&s, Series::Reads);
    assert_eq!(m.column_unix_ms.len(), 3);
    assert_eq!(m.column_unix_ms.last(), Some(&(now - 1_000)));
    assert_eq!(s.stats().columns, 3);
}

#[test]
fn row_budget_in_a_query_conserves_totals() {
    let s = sampler();
    for i in 0..50u8 {
        s.register_route(route(u64::from(i) + 1, &[i], Some(&[i + 1]), 1))
            .expect("register");
        let n = if i == 24 { 1_000 } else { u64::from(i) + 1 };
        for _ in 0..n {
            s.observe_read(u64::from(i) + 1, &[i], 0, ReadRole::Leader, T0);
        }
    }
    let _ = s.flush(T0 + 1_000);
    let m = s.matrix(
        &MatrixQuery {
            series: Series::Reads,
            row_budget: Some(8),
            ..MatrixQuery::default()
        },
        T0,
    );
    assert_eq!(m.rows.len(), 8);
    assert_eq!(m.total(), (1..=50).sum::<u64>() - 25 + 1_000);
    assert!(m.validate().is_ok());
    assert!(
        m.rows
            .iter()
            .any(|r| r.bucket_id == "route:25" && r.values == vec![1_000]),
        "the hot row stays individual"
    );
}

#[test]
fn query_window_is_half_open_on_column_starts() {
    let s = sampler();
    s.register_route(route(1, b"", None, 1)).expect("register");
    let mut now = T0;
    for _ in 0..5 {
        s.observe_read(1, b"k", 0, ReadRole::Leader, now);
        now += 1_000;
        let _ = s.flush(now);
    }
    let m = s.matrix(
        &MatrixQuery {
            series: Series::Reads,
            from_unix_ms: Some(T0 + 1_000),
            to_unix_ms: Some(T0 + 3_000),
            ..MatrixQuery::default()
        },
        T0,
    );
    assert_eq!(m.column_unix_ms, vec![T0 + 1_000, T0 + 2_000]);
    let inverted = s.matrix(
        &MatrixQuery {
            series: Series::Reads,
            from_unix_ms: Some(T0 + 3_000),
            to_unix_ms: Some(T0 + 1_000),
            ..MatrixQuery::default()
        },
        T0,
    );
    assert!(inverted.column_unix_ms.is_empty());
}

#[test]
fn history_store_restores_columns_after_restart() {
    let store = Arc::new(MemStore::default());
    let config = keyviz::SamplerConfig {
        step_ms: STEP,
        ..keyviz::SamplerConfig::default()
    };
    {
        let s = Sampler::with_store(config.clone(), T0, store.clone()).expect("first life");
        s.register_route(route(1, b"a", None, 3)).expect("register");
        s.observe_write(1, b"a", 1, 3, 9, T0);
        s.observe_read(1, b"a", 1, ReadRole::Follower, T0);
        let report = s.flush(T0 + 1_000);
        assert!(report.persist_error.is_none());
    }
    let s = Sampler::with_store(config, T0 + 2_000, store).expect("second life");
    let m = all(&s, Series::Writes);
    assert_eq!(m.rows[0].values, vec![1]);
    assert_eq!(m.rows[0].leader_terms, vec![9]);
    assert_eq!(all(&s, Series::FollowerReads).total(), 1);
}

#[test]
fn removing_a_route_still_harvests_its_counts() {
    let s = sampler();
    s.register_route(route(1, b"a", Some(b"c"), 1))
        .expect("register");
    for _ in 0..7 {
        s.observe_read(1, b"b", 0, ReadRole::Leader, T0);
    }
    s.remove_route(1).expect("remove");
    s.observe_read(1, b"b", 0, ReadRole::Leader, T0); // after removal: dropped, and said so
    let _ = s.flush(T0 + 1_000);
    assert_eq!(total(&s, Series::Reads), 7);
    assert_eq!(s.stats().unknown_route_observations, 1);
}

#[test]
fn re_registering_inside_a_window_shows_one_row() {
    let s = sampler();
    s.register_route(route(1, b"a", Some(b"c"), 1))
        .expect("register");
    s.observe_read(1, b"b", 0, ReadRole::Leader, T0);
    s.remove_route(1).expect("remove");
    s.register_route(route(1, b"a", Some(b"c"), 1))
        .expect("register again");
    s.observe_read(1, b"b", 0, ReadRole::Leader, T0);
    let _ = s.flush(T0 + 1_000);
    let m = all(&s, Series::Reads);
    assert_eq!(m.rows.len(), 1);
    assert_eq!(m.rows[0].values, vec![2]);
}

#[test]
fn virtual_bucket_metadata_follows_its_members() {
    let s = sampler_with(|c| c.max_tracked_routes = 2);
    s.register_route(route(1, b"a", Some(b"c"), 1)).expect("1");
    s.register_route(route(2, b"c", Some(b"e"), 1)).expect("2");
    s.register_route(route(3, b"e", Some(b"g"), 1)).expect("3");
    s.observe_read(1, b"a", 0, ReadRole::Leader, T0);
    let _ = s.flush(T0 + 1_000);
    s.split_route(1, b"b", 4).expect("split inside the bucket");
    s.observe_read(4, b"b", 0, ReadRole::Leader, T0 + 1_000);
    let _ = s.flush(T0 + 2_000);
    let m = s.matrix(
        &MatrixQuery {
            series: Series::Reads,
            from_unix_ms: Some(T0 + 1_000),
            ..MatrixQuery::default()
        },
        T0,
    );
    let bucket = m.rows.iter().find(|r| r.aggregate).expect("virtual row");
    assert_eq!(bucket.route_ids, vec![1, 4, 2], "members in key order");
    assert_eq!(bucket.route_count, 3);
}

#[test]
fn coarsened_query_rows_list_their_routes_and_count_sub_ranges_once() {
    let s = sampler_with(|c| c.key_buckets_per_route = 4);
    s.register_route(route(1, &[0x00], Some(&[0x40]), 1))
        .expect("1");
    s.register_route(route(2, &[0x40], Some(&[0x80]), 1))
        .expect("2");
    s.observe_read(1, &[0x01], 0, ReadRole::Leader, T0);
    s.observe_read(1, &[0x31], 0, ReadRole::Leader, T0);
    s.observe_read(2, &[0x41], 0, ReadRole::Leader, T0);
    let _ = s.flush(T0 + 1_000);
    let m = s.matrix(
        &MatrixQuery {
            series: Series::Reads,
            row_budget: Some(1),
            ..MatrixQuery::default()
        },
        T0,
    );
    assert_eq!(m.rows.len(), 1);
    let row = &m.rows[0];
    assert_eq!(row.route_ids, vec![1, 2]);
    assert_eq!(row.route_count, 2, "three sub-range rows of two routes");
    assert!(!row.route_ids_truncated);
    assert_eq!(row.values, vec![3]);
}

#[test]
fn read_rows_name_their_raft_group() {
    let s = sampler();
    s.register_route(route(1, b"a", None, 9)).expect("register");
    s.observe_read(1, b"a", 0, ReadRole::Follower, T0);
    let _ = s.flush(T0 + 1_000);
    let m = all(&s, Series::Reads);
    assert_eq!(m.rows[0].raft_group_ids, vec![9]);
    assert_eq!(m.rows[0].leader_terms, vec![0]);
}

#[test]
fn key_range_filter_keeps_overlapping_rows_before_the_budget() {
    let s = sampler();
    for (i, k) in [b"a", b"c", b"e", b"g"].iter().enumerate() {
        let end = [k[0] + 2];
        s.register_route(route(i as u64 + 1, *k, Some(&end), 1))
            .expect("register");
        s.observe_read(i as u64 + 1, *k, 0, ReadRole::Leader, T0);
    }
    let _ = s.flush(T0 + 1_000);
    let m = s.matrix(
        &MatrixQuery {
            series: Series::Reads,
            key_start: Some(b"d".to_vec()),
            key_end: Some(b"g".to_vec()),
            ..MatrixQuery::default()
        },
        T0,
    );
    let ids: Vec<_> = m.rows.iter().map(|r| r.bucket_id.as_str()).collect();
    assert_eq!(ids, ["route:2", "route:3"], "[c,e) and [e,g) overlap [d,g)");
}

#[test]
fn sparse_and_dense_route_ids_both_resolve() {
    let s = sampler();
    s.register_route(route(3, b"a", Some(b"m"), 1))
        .expect("dense id");
    s.register_route(route(u64::MAX - 5, b"m", None, 1))
        .expect("sparse id");
    s.observe_read(3, b"b", 0, ReadRole::Leader, T0);
    s.observe_read(u64::MAX - 5, b"x", 0, ReadRole::Leader, T0);
    s.observe_read(4, b"b", 0, ReadRole::Leader, T0); // unregistered id inside the dense array
    let _ = s.flush(T0 + 1_000);
    assert_eq!(total(&s, Series::Reads), 2);
    assert_eq!(s.stats().unknown_route_observations, 1);
}

#[test]
fn recorder_handle_counts_like_the_sampler_and_sees_catalog_changes() {
    let s = sampler();
    s.register_route(route(1, b"a", Some(b"m"), 1))
        .expect("register");
    let mut rec = s.recorder();
    rec.observe_write(1, b"b", 1, 1, 5, T0);
    s.register_route(route(2, b"m", None, 1))
        .expect("late route");
    rec.observe_write(2, b"x", 1, 1, 5, T0);
    s.split_route(1, b"c", 3).expect("split");
    rec.observe_read(3, b"d", 0, ReadRole::Follower, T0);
    rec.observe_read(9, b"d", 0, ReadRole::Follower, T0);
    drop(rec);
    let _ = s.flush(T0 + 1_000);
    assert_eq!(total(&s, Series::Writes), 2);
    assert_eq!(total(&s, Series::FollowerReads), 1);
    assert_eq!(s.stats().unknown_route_observations, 1);
}

#[test]
fn a_recorder_can_move_into_a_spawned_task() {
    fn assert_send_static<T: Send + 'static>(_: &T) {}
    let s = sampler();
    s.register_route(route(1, b"", None, 1)).expect("register");
    let mut rec = s.recorder();
    assert_send_static(&rec);
    std::thread::spawn(move || rec.observe_read(1, b"k", 0, ReadRole::Leader, T0))
        .join()
        .expect("recorder thread");
    let _ = s.flush(T0 + 1_000);
    assert_eq!(total(&s, Series::Reads), 1);
}

// ---- windows: every count in the window it was served in ----

/// (column start, value) of every non-zero column of `series`, summed over rows.
fn per_column(s: &Sampler, series: Series) -> Vec<(i64, u64)> {
    let m = all(s, series);
    m.column_unix_ms
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, m.rows.iter().map(|r| r.values[i]).sum::<u64>()))
        .filter(|(_, v)| *v > 0)
        .collect()
}

#[test]
fn late_flush_files_counts_in_the_windows_they_were_observed_in() {
    let s = sampler();
    s.register_route(route(1, b"", None, 1)).expect("register");
    s.observe_write(1, b"k", 1, 1, 5, T0 + 100); // window W = T0
    for _ in 0..2 {
        s.observe_write(1, b"k", 1, 1, 5, T0 + 5_300); // W + 5, before any flush
    }
    s.observe_read(1, b"k", 1, ReadRole::Leader, T0 + 5_900);
    // The process was stalled: the first flush runs ten steps late.
    let report = s.flush(T0 + 10_500);
    assert!(report.persist_error.is_none());
    assert_eq!(report.column_unix_ms, T0, "the open window is sealed as W");
    assert_eq!(
        per_column(&s, Series::Writes),
        vec![(T0, 1), (T0 + 5_000, 2)]
    );
    assert_eq!(per_column(&s, Series::Reads), vec![(T0 + 5_000, 1)]);
    // After the late flush, the open window is the one of the flush time.
    assert_eq!(s.open_window_unix_ms(), T0 + 10_000);
    s.observe_write(1, b"k", 1, 1, 5, T0 + 10_700);
    let _ = s.flush(T0 + 11_000);
    assert_eq!(
        per_column(&s, Series::Writes),
        vec![(T0, 1), (T0 + 5_000, 2), (T0 + 10_000, 1)]
    );
    assert_eq!(total(&s, Series::Writes), 4, "nothing lost, nothing twice");
    assert_eq!(s.stats().out_of_window_observations, 3);
    assert_eq!(s.stats().folded_observations, 0);
}

#[test]
fn observation_after_the_boundary_before_the_flush_lands_in_the_next_window_and_is_never_left_behind()
 {
    let s = sampler();
    s.register_route(route(1, b"", None, 1)).expect("register");
    s.observe_write(1, b"k", 0, 1, 5, T0 + 900);
    s.observe_write(1, b"k", 0, 1, 5, T0 + 1_050); // past the boundary, flush not run yet
    let _ = s.flush(T0 + 1_100);
    // The seal takes every buffered observation: the open window's count is published as
    // a partial column, which the next seal completes.
    assert_eq!(
        per_column(&s, Series::Writes),
        vec![(T0, 1), (T0 + 1_000, 1)]
    );
    assert_eq!(
        s.stats().pending_windows,
        0,
        "a seal leaves nothing buffered"
    );
    s.observe_write(1, b"k", 0, 1, 5, T0 + 1_500);
    let _ = s.flush(T0 + 2_000);
    assert_eq!(
        per_column(&s, Series::Writes),
        vec![(T0, 1), (T0 + 1_000, 2)]
    );
    assert_eq!(s.stats().pending_windows, 0);
}

#[test]
fn late_observation_for_a_published_window_merges_into_it_and_the_record_is_the_merged_column() {
    let s = sampler();
    s.register_route(route(1, b"a", None, 7)).expect("register");
    for _ in 0..3 {
        s.observe_write(1, b"b", 1, 7, 5, T0 + 10);
    }
    s.observe_read(1, b"b", 1, ReadRole::Follower, T0 + 20);
    let first = s.publish(s.seal(T0 + 1_000));
    assert_eq!(first.records.len(), 1);
    assert_eq!(first.records[0].unix_ms, T0);
    // A lagging replica applies two more writes of term 5 and one of term 6, stamped in W.
    let mut rec = s.recorder();
    rec.observe_write(1, b"b", 1, 7, 5, T0 + 500);
    rec.observe_write(1, b"b", 1, 7, 5, T0 + 600);
    rec.observe_write(1, b"b", 1, 7, 6, T0 + 700);
    let second = s.publish(s.seal(T0 + 2_000));
    let merged = second
        .records
        .iter()
        .find(|r| r.unix_ms == T0)
        .expect("the late window is republished");
    assert_eq!(merged.cells.len(), 1, "one row, merged");
    let cell = &merged.cells[0];
    assert_eq!(
        cell.reads_follower, 1,
        "the earlier counts are in the record"
    );
    let mut lanes: Vec<(u64, u64, u64)> = cell
        .writes
        .iter()
        .map(|w| (w.group, w.term, w.writes))
        .collect();
    lanes.sort_unstable();
    assert_eq!(
        lanes,
        vec![(7, 5, 5), (7, 6, 1)],
        "lanes summed per (group, term)"
    );
    assert_eq!(per_column(&s, Series::Writes), vec![(T0, 6)]);
    // Persisting the records (replace by window) and reloading gives the same history.
    let store = Arc::new(MemStore::default());
    first.persist_to(store.as_ref()).expect("persist");
    second.persist_to(store.as_ref()).expect("persist");
    let config = SamplerConfig {
        step_ms: STEP,
        ..SamplerConfig::default()
    };
    let again = Sampler::with_store(config, T0 + 3_000, store).expect("restart");
    assert_eq!(per_column(&again, Series::Writes), vec![(T0, 6)]);
    assert_eq!(total(&again, Series::FollowerReads), 1);
}

#[test]
fn seal_and_catalog_changes_do_not_wait_for_the_history_lock() {
    let s = sampler();
    s.register_route(route(1, b"a", None, 1)).expect("register");
    s.observe_write(1, b"b", 0, 1, 1, T0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        // A query (or a publish) holds the history lock for as long as it likes.
        let guard = s.hold_history_lock_for_tests();
        scope.spawn(|| {
            s.split_route(1, b"m", 2).expect("split");
            s.observe_write(2, b"x", 0, 1, 1, T0 + 500);
            s.observe_write(1, b"c", 0, 1, 1, T0 + 1_500); // side buffer
            let sealed = s.seal(T0 + 1_000);
            s.merge_routes(1, 2).expect("merge");
            let _ = tx.send(sealed);
        });
        let sealed = rx.recv_timeout(std::time::Duration::from_secs(20));
        drop(guard);
        let sealed = sealed.expect("seal and catalog changes finished while the lock was held");
        let _ = s.publish(sealed);
    });
    let _ = s.flush(T0 + 2_000);
    assert_eq!(
        per_column(&s, Series::Writes),
        vec![(T0, 2), (T0 + 1_000, 1)]
    );
}

#[test]
fn side_buffer_window_cap_folds_into_the_nearest_window_and_conserves_totals() {
    let late = MAX_SIDE_WINDOWS as i64 + 50;
    let s = Sampler::new(
        SamplerConfig {
            step_ms: STEP,
            ..SamplerConfig::default()
        },
        T0 + 10_000_000,
    )
    .expect("sampler");
    s.register_route(route(1, b"", None, 1)).expect("register");
    for i in 0..late {
        s.observe_write(1, b"k", 0, 1, 1, T0 + i * 1_000);
    }
    let stats = s.stats();
    assert_eq!(stats.pending_windows, MAX_SIDE_WINDOWS);
    assert_eq!(stats.folded_observations, 50);
    let _ = s.flush(T0 + 10_000_500);
    assert_eq!(total(&s, Series::Writes), late as u64);
    let columns = per_column(&s, Series::Writes);
    assert_eq!(columns.len(), MAX_SIDE_WINDOWS);
    assert_eq!(
        columns.last(),
        Some(&(T0 + (MAX_SIDE_WINDOWS as i64 - 1) * 1_000, 51)),
        "the newest kept window is the nearest one for the folded writes"
    );
}

#[test]
fn side_buffer_cell_cap_folds_into_the_open_window_and_conserves_totals() {
    // 65 routes of 256 sub-ranges: key [i, b] is sub-range b of route i.
    let s = sampler_with(|c| c.key_buckets_per_route = 256);
    let routes = (MAX_SIDE_CELLS / 256 + 1) as u8;
    for i in 0..routes {
        s.register_route(route(u64::from(i) + 1, &[i], Some(&[i + 1]), 1))
            .expect("register");
    }
    let _ = s.flush(T0 + 5_000);
    let mut n = 0u64;
    for i in 0..routes {
        for b in 0..=255u8 {
            s.observe_read(u64::from(i) + 1, &[i, b], 0, ReadRole::Leader, T0 + 100);
            n += 1;
        }
    }
    let stats = s.stats();
    assert_eq!(stats.pending_cells, MAX_SIDE_CELLS);
    assert_eq!(stats.folded_observations, n - MAX_SIDE_CELLS as u64);
    let _ = s.flush(T0 + 6_000);
    assert_eq!(total(&s, Series::Reads), n);
    assert_eq!(
        per_column(&s, Series::Reads),
        vec![
            (T0, MAX_SIDE_CELLS as u64),
            (T0 + 5_000, n - MAX_SIDE_CELLS as u64)
        ],
        "past the cell cap, counts go to the open window"
    );
}

#[test]
fn observations_older_than_retention_fold_into_the_oldest_retained_window() {
    let s = sampler_with(|c| c.retention_ms = 5_000);
    s.register_route(route(1, b"", None, 1)).expect("register");
    let _ = s.flush(T0 + 100_000);
    s.observe_write(1, b"k", 0, 1, 1, T0); // 100 steps old
    let _ = s.flush(T0 + 101_000);
    // The oldest window retention keeps once the seal made T0 + 100 s the newest column.
    assert_eq!(per_column(&s, Series::Writes), vec![(T0 + 97_000, 1)]);
    assert_eq!(s.stats().aged_observations, 1);
}

#[test]
fn observations_from_a_clock_far_ahead_fold_into_the_open_window() {
    let s = sampler();
    s.register_route(route(1, b"", None, 1)).expect("register");
    s.observe_write(1, b"k", 0, 1, 1, T0 + 3_600_000); // an hour ahead
    s.observe_write(1, b"k", 0, 1, 1, T0 + 1_500); // one step ahead: kept
    let _ = s.flush(T0 + 1_000);
    assert_eq!(s.stats().clock_ahead_observations, 1);
    let _ = s.flush(T0 + 2_000);
    assert_eq!(per_column(&s, Series::Writes), vec![(T0 + 1_000, 2)]);
}
