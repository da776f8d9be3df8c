//! Hot keys: capture on the observe path, summaries in the history, the
//! node answer of `Sampler::hot_keys`, persistence, and key labels.

use std::sync::Arc;

use keyviz::hotkeys::{HotKeyMode, HotKeyQuery, KeyRedactor, NodeHotKeys};
use keyviz::merge::{MergeOptions, merge};
use keyviz::{ColumnRecord, MatrixQuery, ReadRole, Sampler, SamplerConfig, Series};

use crate::util::{MemStore, STEP, T0, route, sampler_with, total};

fn query(series: Series) -> HotKeyQuery {
    HotKeyQuery {
        series,
        k: 10,
        ..HotKeyQuery::default()
    }
}

fn hot(s: &Sampler, series: Series) -> NodeHotKeys {
    s.hot_keys(&query(series), T0).expect("valid query")
}

/// The one reads part (or the writes parts summed) of an answer.
fn merged(n: &NodeHotKeys) -> keyviz::hotkeys::HotKeys {
    keyviz::hotkeys::merge_hot_keys(std::slice::from_ref(n), 10)
}

#[test]
fn a_quiet_row_names_its_hot_key_exactly_over_a_uniform_background() {
    let s = sampler_with(|_| {});
    s.register_route(route(1, b"", None, 7)).expect("register");
    // 30 background keys once each, the hot key 20 times: fewer than 64
    // operations per counter, so every one is captured.
    for i in 0..30u32 {
        s.observe_read(1, format!("bg:{i:03}").as_bytes(), 10, ReadRole::Leader, T0);
    }
    for _ in 0..20 {
        s.observe_read(1, b"hot:counter", 10, ReadRole::Follower, T0);
    }
    let _ = s.publish(s.seal(T0 + STEP as i64));
    let n = hot(&s, Series::Reads);
    assert_eq!(n.mode, HotKeyMode::Raw);
    assert_eq!(n.parts.len(), 1);
    assert_eq!(n.total(), 50, "exact total, as the matrix");
    assert_eq!(n.total(), total(&s, Series::Reads));
    let m = merged(&n);
    let top = &m.keys[0];
    assert_eq!(top.key, b"hot:counter");
    assert_eq!((top.lower, top.estimate, top.upper), (20, 20, 20));
    assert!(!m.sampled);
    // Bytes: 20 reads of 11 + 10 bytes.
    let b = merged(&hot(&s, Series::ReadBytes));
    assert_eq!(b.keys[0].key, b"hot:counter");
    assert_eq!(b.keys[0].estimate, 20 * 21);
    assert_eq!(b.total, total(&s, Series::ReadBytes));
}

#[test]
fn a_busy_row_samples_yet_names_the_hot_key_with_bounds_that_hold() {
    let s = sampler_with(|_| {});
    s.register_route(route(1, b"", None, 7)).expect("register");
    let (n_bg, hot_every) = (100_000u32, 10u32);
    let mut hot_true = 0u64;
    for i in 0..n_bg {
        if i % hot_every == 0 {
            s.observe_write(1, b"hot:counter", 8, 7, 3, T0);
            hot_true += 1;
        } else {
            s.observe_write(1, format!("user:{:05}", i % 5_000).as_bytes(), 8, 7, 3, T0);
        }
    }
    let _ = s.publish(s.seal(T0 + STEP as i64));
    let n = hot(&s, Series::Writes);
    assert_eq!(n.total(), u64::from(n_bg));
    let m = merged(&n);
    assert!(m.sampled, "a busy window is sampled and says so");
    let top = &m.keys[0];
    assert_eq!(top.key, b"hot:counter");
    assert!(
        top.lower <= hot_true && hot_true <= top.upper,
        "bounds {}..{} hold the true count {hot_true}",
        top.lower,
        top.upper
    );
    let err = top.estimate.abs_diff(hot_true) as f64 / hot_true as f64;
    eprintln!(
        "busy row: hot key estimate {} in {}..{} (true {hot_true}), floor {}",
        top.estimate, top.lower, top.upper, m.floor
    );
    assert!(err < 0.15, "estimate {} vs {hot_true}", top.estimate);
    assert!(m.floor >= 20, "any other key may have had up to its share");
}

#[test]
fn write_parts_keep_their_group_and_term() {
    let s = sampler_with(|_| {});
    s.register_route(route(1, b"", None, 7)).expect("register");
    for _ in 0..10 {
        s.observe_write(1, b"k:old", 1, 7, 5, T0);
    }
    for _ in 0..4 {
        s.observe_write(1, b"k:new", 1, 7, 6, T0);
    }
    s.observe_write(1, b"k:anon", 1, 0, 0, T0);
    let _ = s.publish(s.seal(T0 + STEP as i64));
    let n = hot(&s, Series::Writes);
    let ids: Vec<(u64, u64, u64)> = n
        .parts
        .iter()
        .map(|p| (p.group, p.term, p.summary.total))
        .collect();
    assert_eq!(ids, vec![(0, 0, 1), (7, 5, 10), (7, 6, 4)]);
    let term5 = n.parts.iter().find(|p| p.term == 5).expect("term 5");
    assert_eq!(term5.summary.items[0].key, b"k:old");
    assert_eq!(term5.summary.items[0].estimate, 10);
    let term6 = n.parts.iter().find(|p| p.term == 6).expect("term 6");
    assert_eq!(term6.summary.items.len(), 1);
    assert_eq!(term6.summary.items[0].key, b"k:new");
}

#[test]
fn the_key_range_and_time_range_select_rows_columns_and_raw_keys() {
    let s = sampler_with(|c| c.key_buckets_per_route = 1);
    s.register_route(route(1, b"a", Some(b"m"), 7))
        .expect("register");
    s.register_route(route(2, b"m", None, 8)).expect("register");
    for _ in 0..5 {
        s.observe_read(1, b"apple", 0, ReadRole::Leader, T0);
        s.observe_read(1, b"kiwi", 0, ReadRole::Leader, T0);
    }
    for _ in 0..9 {
        s.observe_read(2, b"zebra", 0, ReadRole::Leader, T0);
    }
    let _ = s.publish(s.seal(T0 + STEP as i64));
    for _ in 0..3 {
        s.observe_read(2, b"zebra", 0, ReadRole::Leader, T0 + STEP as i64);
    }
    let _ = s.publish(s.seal(T0 + 2 * STEP as i64));
    let q = HotKeyQuery {
        key_start: Some(b"b".to_vec()),
        key_end: Some(b"n".to_vec()),
        from_unix_ms: Some(T0),
        to_unix_ms: Some(T0 + STEP as i64),
        ..query(Series::Reads)
    };
    let n = s.hot_keys(&q, T0).expect("valid");
    // Both rows overlap [b, n); the row totals stay whole, keys outside go.
    assert_eq!(n.total(), 19);
    let keys: Vec<&[u8]> = n.parts[0]
        .summary
        .items
        .iter()
        .map(|i| i.key.as_slice())
        .collect();
    assert_eq!(keys, vec![b"kiwi".as_slice()]);
    let late = HotKeyQuery {
        from_unix_ms: Some(T0 + STEP as i64),
        ..query(Series::Reads)
    };
    let n = s.hot_keys(&late, T0).expect("valid");
    assert_eq!(n.total(), 3);
    assert_eq!(n.parts[0].summary.items[0].estimate, 3);
    assert!(
        s.hot_keys(
            &HotKeyQuery {
                series: Series::LeaderReads,
                ..query(Series::Reads)
            },
            T0
        )
        .is_err()
    );
}

#[test]
fn off_mode_captures_nothing_but_keeps_exact_totals() {
    let s = sampler_with(|c| c.hot_keys = KeyRedactor::off());
    s.register_route(route(1, b"", None, 7)).expect("register");
    for _ in 0..5 {
        s.observe_read(1, b"secret:ssn", 0, ReadRole::Leader, T0);
    }
    let _ = s.publish(s.seal(T0 + STEP as i64));
    let n = hot(&s, Series::Reads);
    assert_eq!(n.mode, HotKeyMode::Off);
    assert_eq!(n.total(), 5);
    assert!(n.parts[0].summary.items.is_empty());
    assert_eq!(n.parts[0].summary.floor, 5);
    let m = crate::util::all(&s, Series::Reads);
    assert_eq!(m.rows[0].first_key, None);
    assert_eq!(s.stats().hot_key_sketches, 0);
}

#[test]
fn the_sketch_budget_caps_memory_and_keeps_bounds_honest() {
    let s = sampler_with(|c| c.hot_key_sketches = 4);
    for id in 1..=10u64 {
        let start = format!("r{id:02}");
        let end = format!("r{:02}", id + 1);
        s.register_route(route(id, start.as_bytes(), Some(end.as_bytes()), id))
            .expect("register");
        for _ in 0..7 {
            s.observe_read(
                id,
                format!("{start}:hot").as_bytes(),
                1,
                ReadRole::Leader,
                T0,
            );
        }
    }
    let stats = s.stats();
    assert!(stats.hot_key_sketches <= 4, "{stats:?}");
    assert!(stats.uncaptured_observations > 0);
    let _ = s.publish(s.seal(T0 + STEP as i64));
    let n = hot(&s, Series::Reads);
    assert_eq!(n.total(), 70);
    let m = merged(&n);
    // Each row's key took 7 reads; a key the budget left out is covered by the floor.
    for id in 1..=10u64 {
        let key = format!("r{id:02}:hot");
        match m.keys.iter().find(|k| k.key == key.as_bytes()) {
            Some(k) => assert!(k.lower <= 7 && 7 <= k.upper, "{key}: {k:?}"),
            None => assert!(m.floor >= 7, "{key} unlisted, floor {}", m.floor),
        }
    }
    // The budget ran out, so the seal freed the quiet rows' sketches: a row
    // that turns hot next window gets one, though others stay active.
    assert_eq!(s.stats().hot_key_sketches, 0);
    let t1 = T0 + STEP as i64;
    for _ in 0..9 {
        s.observe_read(10, b"r10:now-hot", 1, ReadRole::Leader, t1);
    }
    for id in 1..=9u64 {
        s.observe_read(
            id,
            format!("r{id:02}:hot").as_bytes(),
            1,
            ReadRole::Leader,
            t1,
        );
    }
    let _ = s.publish(s.seal(T0 + 2 * STEP as i64));
    let q = HotKeyQuery {
        from_unix_ms: Some(t1),
        ..query(Series::Reads)
    };
    let m = merged(&s.hot_keys(&q, T0).expect("valid"));
    assert_eq!(m.keys[0].key, b"r10:now-hot");
    assert_eq!(m.keys[0].lower, 9);
}

fn config() -> SamplerConfig {
    SamplerConfig {
        step_ms: STEP,
        ..SamplerConfig::default()
    }
}

#[test]
fn a_restart_keeps_hot_keys_and_labels() {
    let store = Arc::new(MemStore::default());
    let (before, labels) = {
        let s = Sampler::with_store(config(), T0, store.clone()).expect("first life");
        s.register_route(route(1, b"", None, 7)).expect("register");
        for i in 0..12 {
            s.observe_write(1, b"hot:counter", 4, 7, 2, T0);
            s.observe_write(1, format!("cold:{i}").as_bytes(), 4, 7, 2, T0);
        }
        assert!(s.flush(T0 + STEP as i64).persist_error.is_none());
        let m = crate::util::all(&s, Series::Writes);
        (
            hot(&s, Series::Writes),
            (m.rows[0].first_key.clone(), m.rows[0].last_key.clone()),
        )
    };
    assert_eq!(labels.0.as_deref(), Some(b"cold:0".as_slice()));
    assert_eq!(labels.1.as_deref(), Some(b"hot:counter".as_slice()));
    // The stored record survives a JSON round trip, as kvnode stores it.
    let json = serde_json::to_string(&store.columns.lock().clone()).expect("encode");
    let back: Vec<ColumnRecord> = serde_json::from_str(&json).expect("decode");
    assert_eq!(back, *store.columns.lock());
    let s = Sampler::with_store(config(), T0 + 2 * STEP as i64, store).expect("second life");
    assert_eq!(hot(&s, Series::Writes), before);
    let m = crate::util::all(&s, Series::Writes);
    assert_eq!(
        (m.rows[0].first_key.clone(), m.rows[0].last_key.clone()),
        labels
    );
}

#[test]
fn records_written_before_hot_keys_still_load_without_keys() {
    // A column as stored before this change: no `hot`, no labels.
    let old = r#"[{"unix_ms":1700000040000,"step_ms":1000,"cells":[{"bucket_id":"route:1",
        "start":[],"end":null,"aggregate":false,"route_ids":[1],"route_count":1,
        "reads_leader":4,"reads_follower":1,"read_bytes":50,
        "writes":[{"group":7,"term":3,"writes":6,"write_bytes":60}]}]}]"#;
    let records: Vec<ColumnRecord> = serde_json::from_str(old).expect("old records decode");
    let store = Arc::new(MemStore::default());
    *store.columns.lock() = records;
    let s = Sampler::with_store(config(), T0 + STEP as i64, store).expect("loads");
    let r = hot(&s, Series::Reads);
    assert_eq!(r.total(), 5);
    assert!(r.parts[0].summary.items.is_empty());
    assert_eq!(
        r.parts[0].summary.floor, 5,
        "uncaptured: any key may be all of it"
    );
    let w = hot(&s, Series::Writes);
    assert_eq!(
        w.parts
            .iter()
            .map(|p| (p.group, p.term, p.summary.total))
            .collect::<Vec<_>>(),
        vec![(7, 3, 6)]
    );
    assert_eq!(crate::util::all(&s, Series::Writes).rows[0].first_key, None);
}

fn labelled(keys: &[&str]) -> Sampler {
    let s = sampler_with(|c| c.key_buckets_per_route = 4);
    s.register_route(route(1, b"a", Some(b"z"), 7))
        .expect("register");
    for k in keys {
        s.observe_write(1, k.as_bytes(), 1, 7, 1, T0);
    }
    let _ = s.publish(s.seal(T0 + STEP as i64));
    s
}

#[test]
fn nodes_fed_the_same_traffic_label_rows_alike_and_the_merge_takes_min_and_max() {
    let keys = ["apple", "banana", "cherry", "melon", "peach", "yuzu"];
    let a = labelled(&keys);
    let b = labelled(&keys);
    let q = MatrixQuery::default();
    let (ma, mb) = (a.matrix(&q, T0), b.matrix(&q, T0));
    let labels = |m: &keyviz::Matrix| {
        m.rows
            .iter()
            .map(|r| (r.bucket_id.clone(), r.first_key.clone(), r.last_key.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(labels(&ma), labels(&mb));
    assert!(ma.rows.len() > 1, "sub-ranges make several rows");
    for r in &ma.rows {
        let (f, l) = (
            r.first_key.clone().expect("first"),
            r.last_key.clone().expect("last"),
        );
        assert!(keys.contains(&std::str::from_utf8(&f).expect("utf8")));
        assert!(f <= l);
        assert!(
            r.start.clone().unwrap_or_default() <= f,
            "a label lies in its row"
        );
    }
    // Another node saw other keys of the same rows: min and max across both.
    let c = labelled(&["aardvark", "zulu"]);
    let mc = c.matrix(&q, T0);
    let m = merge(
        &[ma.clone(), mc.clone()],
        &MergeOptions {
            series: Series::Writes,
            step_ms: STEP,
            row_budget: None,
            settling_from_unix_ms: None,
        },
    )
    .matrix;
    let first = m.rows.first().expect("rows");
    assert_eq!(first.first_key.as_deref(), Some(b"aardvark".as_slice()));
    let last = m.rows.last().expect("rows");
    assert_eq!(last.last_key.as_deref(), Some(b"zulu".as_slice()));
}

fn window_query(series: Series, from: i64) -> HotKeyQuery {
    HotKeyQuery {
        series,
        k: 10,
        from_unix_ms: Some(from),
        to_unix_ms: Some(from + STEP as i64),
        ..HotKeyQuery::default()
    }
}

/// The escalation scheme: a quiet row captures its first 32 ops per counter,
/// then 1 in 64, and says `sampled` with bounds that still hold; once a window
/// of the row counted 4 096 ops or more, the next window captures every one
/// of its first 1 024 ops per counter again, exactly.
#[test]
fn a_quiet_row_samples_past_its_exact_span_and_a_busy_window_escalates_it() {
    let s = sampler_with(|_| {});
    s.register_route(route(1, b"", None, 7)).expect("register");
    let window = |s: &Sampler, w: i64, ops: u32| -> u64 {
        let mut hot_true = 0;
        for i in 0..ops {
            if i % 10 == 0 {
                s.observe_write(1, b"hot:counter", 8, 7, 3, w);
                hot_true += 1;
            } else {
                s.observe_write(1, format!("user:{:04}", i % 600).as_bytes(), 8, 7, 3, w);
            }
        }
        let _ = s.publish(s.seal(w + STEP as i64));
        hot_true
    };
    let answer = |s: &Sampler, w: i64| {
        merged(
            &s.hot_keys(&window_query(Series::Writes, w), T0)
                .expect("query"),
        )
    };
    // Window 1: quiet (no window before it), 2 000 ops.
    let w1 = T0;
    let hot_true = window(&s, w1, 2_000);
    let m = answer(&s, w1);
    assert_eq!(m.total, 2_000);
    assert!(m.sampled, "ops were skipped, and the answer says so");
    let top = &m.keys[0];
    assert_eq!(top.key, b"hot:counter");
    assert!(
        top.lower <= hot_true && hot_true <= top.upper,
        "bounds {}..{} hold {hot_true}",
        top.lower,
        top.upper
    );
    // Window 2: busy (5 000 ops), which makes the row hot for window 3.
    let w2 = w1 + STEP as i64;
    let _ = window(&s, w2, 5_000);
    // Window 3: 500 ops, all captured: exact again.
    let w3 = w2 + STEP as i64;
    let hot_true = window(&s, w3, 500);
    let m = answer(&s, w3);
    assert!(!m.sampled, "an escalated row captures every op");
    let top = &m.keys[0];
    assert_eq!(top.key, b"hot:counter");
    assert_eq!(
        (top.lower, top.estimate, top.upper),
        (hot_true, hot_true, hot_true)
    );
    // Window 4 follows a quiet window (500 ops): sampled again past 32 ops.
    let w4 = w3 + STEP as i64;
    let _ = window(&s, w4, 500);
    assert!(answer(&s, w4).sampled, "the row calmed down");
}

/// An hour of one-second windows of a quiet row (sampled past 32 ops per
/// counter in each): the summaries add up in captured weight and are settled
/// once, so the floor stays a small fraction of the total and the hot key's
/// interval narrows with the square root of its count (±3σ of 1-in-64
/// sampling: about ±26 % here). Settling each window
/// and adding the intervals made the floor 95 % of the total and the hot
/// key's upper bound 3.5 times its count (`keyviz demo`, before).
#[test]
fn an_hour_of_quiet_windows_sums_to_tight_bounds_and_a_small_floor() {
    let s = sampler_with(|_| {});
    s.register_route(route(1, b"", None, 7)).expect("register");
    let mut truth: std::collections::HashMap<Vec<u8>, u64> = std::collections::HashMap::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for w in 0..60i64 {
        let at = T0 + w * STEP as i64;
        for _ in 0..500u32 {
            // xorshift: a background of 400 keys, the hot key on 2 ops in 7
            // (at random positions: the capture's block phase depends on the
            // position only, so a fixed pattern would be sampled alike in
            // every window; see docs/CORE_API.md on aliasing).
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = if (x >> 32) % 7 < 2 {
                b"hot:counter".to_vec()
            } else {
                format!("user:{:04}", x % 400).into_bytes()
            };
            s.observe_write(1, &key, 8, 7, 3, at);
            *truth.entry(key).or_default() += 1;
        }
        let _ = s.publish(s.seal(at + STEP as i64));
    }
    let q = HotKeyQuery {
        series: Series::Writes,
        k: 10,
        from_unix_ms: Some(T0),
        to_unix_ms: Some(T0 + 60 * STEP as i64),
        ..HotKeyQuery::default()
    };
    let m = merged(&s.hot_keys(&q, T0).expect("query"));
    assert_eq!(m.total, 30_000);
    assert!(m.sampled, "each window sampled past its exact span");
    let top = &m.keys[0];
    let hot_true = truth[b"hot:counter".as_slice()];
    eprintln!(
        "hour of quiet windows: hot key {} in {}..{} (true {hot_true}), floor {} of {}",
        top.estimate, top.lower, top.upper, m.floor, m.total
    );
    assert_eq!(top.key, b"hot:counter");
    assert!(
        top.lower <= hot_true && hot_true <= top.upper,
        "bounds {}..{} hold {hot_true}",
        top.lower,
        top.upper
    );
    assert!(
        (top.upper - top.lower) as f64 <= 0.75 * hot_true as f64,
        "interval {}..{} is narrower than 75 % of the true {hot_true}",
        top.lower,
        top.upper
    );
    assert!(
        m.floor <= m.total / 10,
        "floor {} stays under 10 % of {}",
        m.floor,
        m.total
    );
    for (key, &t) in &truth {
        match m.keys.iter().find(|e| &e.key == key) {
            Some(e) => assert!(e.lower <= t && t <= e.upper, "{key:?}: {t} in bounds"),
            None => assert!(
                t <= m.floor,
                "{key:?}: unlisted {t} under the floor {}",
                m.floor
            ),
        }
    }
}

/// Rows with disjoint key ranges hold disjoint keys: an unlisted key lies in
/// one of them, so the answer's floor is one row's, not the sum over every
/// row (12 routes of 20 one-op keys per window, cells keep 8 keys: each
/// row's floor is 1 per window, so 5 over five windows, where adding every
/// row's floor said 60).
#[test]
fn rows_with_disjoint_key_ranges_share_one_floor_instead_of_adding_theirs() {
    let s = sampler_with(|_| {});
    for i in 0..12u8 {
        let (start, end) = ([b'a' + i], [b'a' + i + 1]);
        s.register_route(route(u64::from(i) + 1, &start, Some(&end), 7))
            .expect("register");
    }
    let mut truth: std::collections::HashMap<Vec<u8>, u64> = std::collections::HashMap::new();
    for w in 0..5i64 {
        let at = T0 + w * STEP as i64;
        for i in 0..12u8 {
            for k in 0..20u8 {
                let key = vec![b'a' + i, b':', b'a' + k];
                s.observe_write(u64::from(i) + 1, &key, 8, 7, 3, at);
                *truth.entry(key).or_default() += 1;
            }
        }
        for _ in 0..10 {
            s.observe_write(1, b"a:hot", 8, 7, 3, at);
            *truth.entry(b"a:hot".to_vec()).or_default() += 1;
        }
        let _ = s.publish(s.seal(at + STEP as i64));
    }
    let q = HotKeyQuery {
        series: Series::Writes,
        k: 10,
        from_unix_ms: Some(T0),
        to_unix_ms: Some(T0 + 5 * STEP as i64),
        ..HotKeyQuery::default()
    };
    let m = merged(&s.hot_keys(&q, T0).expect("query"));
    assert_eq!(m.total, 5 * (12 * 20 + 10));
    assert!(!m.sampled);
    assert_eq!(m.keys[0].key, b"a:hot");
    assert_eq!(
        (m.keys[0].lower, m.keys[0].upper),
        (50, 50),
        "exact: no other row's floor joins a key of row a"
    );
    assert_eq!(m.floor, 5, "one row's floor over five windows");
    for (key, &t) in &truth {
        match m.keys.iter().find(|e| &e.key == key) {
            Some(e) => assert!(e.lower <= t && t <= e.upper, "{key:?}: {t} in bounds"),
            None => assert!(
                t <= m.floor,
                "{key:?}: unlisted {t} under the floor {}",
                m.floor
            ),
        }
    }
}

/// A split makes rows whose key ranges overlap the old row's: the same key
/// counted before the split in `[a, c)` and after it in `[a, b)` must add up,
/// so overlapping rows are summed, never combined as disjoint.
#[test]
fn rows_before_and_after_a_split_add_up_for_the_same_key() {
    let s = sampler_with(|_| {});
    s.register_route(route(1, b"a", Some(b"c"), 7))
        .expect("register");
    let mut truth: std::collections::HashMap<Vec<u8>, u64> = std::collections::HashMap::new();
    let mut window = |s: &Sampler, w: i64, id_of: &dyn Fn(&[u8]) -> u64| {
        let at = T0 + w * STEP as i64;
        // 12 one-op keys per half: cells keep 8, so each half's floor is 1.
        for k in 0..12u8 {
            for half in [b'a', b'b'] {
                let key = vec![half, b':', b'a' + k];
                s.observe_write(id_of(&key), &key, 8, 7, 3, at);
                *truth.entry(key).or_default() += 1;
            }
        }
        let _ = s.publish(s.seal(at + STEP as i64));
    };
    for w in 0..3 {
        window(&s, w, &|_| 1);
    }
    s.split_route(1, b"b", 2).expect("split");
    for w in 3..6 {
        window(&s, w, &|k: &[u8]| if k < b"b".as_slice() { 1 } else { 2 });
    }
    let q = HotKeyQuery {
        series: Series::Writes,
        k: 10,
        from_unix_ms: Some(T0),
        to_unix_ms: Some(T0 + 6 * STEP as i64),
        ..HotKeyQuery::default()
    };
    let m = merged(&s.hot_keys(&q, T0).expect("query"));
    assert_eq!(m.total, 6 * 24);
    for (key, &t) in &truth {
        match m.keys.iter().find(|e| &e.key == key) {
            Some(e) => assert!(e.lower <= t && t <= e.upper, "{key:?}: {t} in bounds"),
            None => assert!(
                t <= m.floor,
                "{key:?}: unlisted {t} under the floor {}",
                m.floor
            ),
        }
    }
    assert!(
        m.floor >= 6,
        "every window's floor of the old row and a half adds up"
    );
}

/// Hashed mode hashes at seal (per kept key), not per capture: the shown
/// form is exactly the redactor's form of the key, and no raw key leaves
/// the sampler.
#[test]
fn hashed_mode_shows_the_keyed_form_computed_at_seal() {
    let redactor = KeyRedactor::hashed(b"cluster secret", Some(b':'));
    let s = sampler_with(|c| c.hot_keys = redactor.clone());
    s.register_route(route(1, b"", None, 7)).expect("register");
    for _ in 0..20 {
        s.observe_read(1, b"hot:counter", 4, ReadRole::Leader, T0);
    }
    s.observe_read(1, b"cold:key", 4, ReadRole::Leader, T0);
    let _ = s.publish(s.seal(T0 + STEP as i64));
    let m = merged(&hot(&s, Series::Reads));
    let mut form = Vec::new();
    redactor.apply(b"hot:counter", &mut form);
    assert_eq!(m.keys[0].key, form);
    assert!(m.keys[0].key.starts_with(b"hot:#"));
    assert_eq!(m.keys[0].estimate, 20);
    redactor.apply(b"cold:key", &mut form);
    assert_eq!(m.keys[1].key, form);
    assert!(
        m.keys
            .iter()
            .all(|k| !k.key.windows(7).any(|w| w == b"counter"))
    );
}
