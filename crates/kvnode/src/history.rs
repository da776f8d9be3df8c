//! KeyViz history persisted in the node's fjall database, so a restarted node still shows the
//! heatmap it had, in every tier.
//!
//! Columns of the finest tier (the node's `--step`) live in the `keyviz_history` keyspace, keyed
//! by the window start as an order-preserving big-endian i64 (sign bit flipped), as before tiers
//! existed, so an older data dir loads unchanged. Columns of the coarser tiers live in
//! `keyviz_history_tiers`, keyed by the tier's step (big-endian u64) then the window start, so
//! each tier prunes with one range delete. Values are `ColumnRecord`s in the core's compact
//! binary form (`ColumnRecord::encode`, ≈ 20–30 B a cell); values written by kvnode before
//! it (JSON, ≈ 350 B a cell, recognised by their first byte) still load, and are rewritten in
//! the binary form the next time their window changes. Appending a column that exists
//! replaces it, as the trait requires. Loading decodes and hands over one record at a time,
//! coarsest tier first, each tier in window order (see [`HistoryStore::load`]). Writes are not fsync'd on their own: they ride on the next log fsync, and losing
//! the last column on a power cut is acceptable for a heatmap.

use keyviz::{ColumnRecord, HistoryStore, PersistError};

use crate::counting::{Watermarks, stage_watermarks};
use crate::sampling::ColumnSink;
use crate::store::{Store, StoreError, from_json};

/// [`HistoryStore`] (start-up load) and [`ColumnSink`] (the persistence thread) over the
/// node's database.
pub(crate) struct FjallHistory {
    store: Store,
    /// Step of the finest tier: its records go to the legacy keyspace.
    finest_step_ms: u64,
}

impl FjallHistory {
    /// History in `store` for a sampler whose finest tier is `finest_step_ms` wide.
    pub(crate) fn new(store: Store, finest_step_ms: u64) -> Self {
        Self {
            store,
            finest_step_ms,
        }
    }
}

impl FjallHistory {
    /// Calls `each(what, key, value)` for every stored column from `since_unix_ms` on, in
    /// [`HistoryStore::load`]'s order, until `each` returns `false`. Blocks on the store's
    /// I/O; takes no lock of its own.
    ///
    /// # Errors
    /// The store's.
    fn scan(
        &self,
        since_unix_ms: i64,
        mut each: impl FnMut(&'static str, &[u8], &[u8]) -> bool,
    ) -> Result<(), PersistError> {
        let mut below: Option<[u8; 16]> = None;
        loop {
            let last = match below {
                None => self.store.history_tiers.iter().next_back(),
                Some(b) => self.store.history_tiers.range(..b).next_back(),
            };
            let Some(last) = last else { break };
            let k = last.key().map_err(err)?;
            let Some(step) = tier_key_step(&k) else { break };
            let range = tier_key(step, since_unix_ms)..=tier_key(step, i64::MAX);
            for item in self.store.history_tiers.range(range) {
                let (k, v) = item.into_inner().map_err(err)?;
                if tier_key_unix_ms(&k).is_some() && !each("keyviz tier column", &k, &v) {
                    return Ok(());
                }
            }
            if step == 0 {
                break;
            }
            below = Some(tier_key(step, i64::MIN));
        }
        for item in self.store.history.range(key(since_unix_ms)..) {
            let (k, v) = item.into_inner().map_err(err)?;
            if !each("keyviz column", &k, &v) {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// A record with nothing in it, to decode into.
fn empty_record() -> ColumnRecord {
    ColumnRecord {
        unix_ms: 0,
        step_ms: 0,
        cells: Vec::new(),
    }
}

fn key(unix_ms: i64) -> [u8; 8] {
    ((unix_ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn tier_key(step_ms: u64, unix_ms: i64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&step_ms.to_be_bytes());
    k[8..].copy_from_slice(&key(unix_ms));
    k
}

/// The window start of a `tier_key`, if the key has that shape.
fn tier_key_unix_ms(k: &[u8]) -> Option<i64> {
    let t: [u8; 8] = k.get(8..16)?.try_into().ok()?;
    Some((u64::from_be_bytes(t) ^ (1 << 63)) as i64)
}

/// The step of a `tier_key`, if the key has that shape.
fn tier_key_step(k: &[u8]) -> Option<u64> {
    let s: [u8; 8] = k.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(s))
}

fn err(e: impl std::error::Error + Send + Sync + 'static) -> PersistError {
    PersistError(Box::new(e))
}

/// Decodes a stored column value, the binary form or JSON as kvnode wrote before it, into
/// `record`, reusing its memory for a binary value ([`ColumnRecord::decode_into`]); a JSON
/// value replaces it.
///
/// # Errors
/// [`StoreError::Corrupt`] naming `what` when the value is neither; `record` then holds
/// unspecified contents.
fn decode_column_into(
    what: &'static str,
    raw: &[u8],
    record: &mut ColumnRecord,
) -> Result<(), StoreError> {
    if ColumnRecord::is_binary(raw) {
        record.decode_into(raw).map_err(|e| StoreError::Corrupt {
            what,
            detail: e.to_string(),
        })
    } else {
        // Freed first, so the old record and the new one are never held together.
        record.cells = Vec::new();
        *record = from_json(what, raw)?;
        Ok(())
    }
}

/// Decodes a stored column into `record` and says whether it could: when its
/// bytes do not decode, `false` (logged at `warn`): one damaged window of the
/// heatmap must not keep the node from starting. Storage errors are not this:
/// they still fail the load.
fn readable(what: &'static str, key: &[u8], raw: &[u8], record: &mut ColumnRecord) -> bool {
    match decode_column_into(what, raw, record) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                key = %hex(key),
                bytes = raw.len(),
                "skipping an unreadable stored history column (that window is left out of the heatmap): {e}"
            );
            false
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value kvnode stores for `record` (its binary form).
pub(crate) fn encode_column(record: &ColumnRecord) -> Vec<u8> {
    let mut out = Vec::new();
    record.encode(&mut out);
    out
}

impl HistoryStore for FjallHistory {
    fn append(&self, record: &ColumnRecord) -> Result<(), PersistError> {
        self.write(std::slice::from_ref(record), None)
    }

    /// Coarsest tier first (each tier found with one backward seek from the previous one's
    /// first key), then the finest; each tier in window order, from `since_unix_ms` on.
    /// One value is read and decoded per `visit`, every one into the same record, whose
    /// memory is reused ([`ColumnRecord::decode_into`]): the load holds one record (≈ 5 MiB
    /// as structs for 10 000 cells) whatever the store holds, and allocates nearly nothing
    /// per record. Blocks the caller on the store's I/O until every record was visited,
    /// `visit` failed (its error is returned as it is) or the store failed. Takes no lock of
    /// its own; fjall takes its internal ones.
    fn load(
        &self,
        since_unix_ms: i64,
        visit: &mut dyn FnMut(&ColumnRecord) -> Result<(), PersistError>,
    ) -> Result<(), PersistError> {
        let mut record = empty_record();
        let mut visited = Ok(());
        self.scan(since_unix_ms, |what, k, v| {
            if readable(what, k, v, &mut record) {
                visited = visit(&record);
            }
            visited.is_ok()
        })?;
        visited
    }

    fn prune(&self, before_unix_ms: i64) -> Result<(), PersistError> {
        let mut batch = self.store.batch();
        for item in self.store.history.range(..key(before_unix_ms)) {
            batch.remove(&self.store.history, item.key().map_err(err)?);
        }
        batch.commit().map_err(err)
    }

    fn prune_tier(&self, step_ms: u64, before_unix_ms: i64) -> Result<(), PersistError> {
        let mut batch = self.store.batch();
        let range = tier_key(step_ms, i64::MIN)..tier_key(step_ms, before_unix_ms);
        for item in self.store.history_tiers.range(range) {
            batch.remove(&self.store.history_tiers, item.key().map_err(err)?);
        }
        batch.commit().map_err(err)
    }
}

impl ColumnSink for FjallHistory {
    /// One fjall batch: the columns and the log positions they cover are durable together.
    fn write(
        &self,
        records: &[ColumnRecord],
        marks: Option<&Watermarks>,
    ) -> Result<(), PersistError> {
        let mut batch = self.store.batch();
        for record in records {
            let raw = encode_column(record);
            if record.step_ms == self.finest_step_ms {
                batch.insert(&self.store.history, key(record.unix_ms), raw);
            } else {
                let k = tier_key(record.step_ms, record.unix_ms);
                batch.insert(&self.store.history_tiers, k, raw);
            }
        }
        if let Some(marks) = marks {
            stage_watermarks(&self.store, &mut batch, marks);
        }
        batch.commit().map_err(err)
    }

    fn prune(&self, before_unix_ms: i64) -> Result<(), PersistError> {
        HistoryStore::prune(self, before_unix_ms)
    }

    fn prune_tier(&self, step_ms: u64, before_unix_ms: i64) -> Result<(), PersistError> {
        HistoryStore::prune_tier(self, step_ms, before_unix_ms)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn column(unix_ms: i64) -> ColumnRecord {
        ColumnRecord {
            unix_ms,
            step_ms: 1_000,
            cells: Vec::new(),
        }
    }

    fn sampler_on(h: &Arc<FjallHistory>, now: i64) -> keyviz::Sampler {
        let config = keyviz::SamplerConfig {
            step_ms: 1_000,
            ..keyviz::SamplerConfig::default()
        };
        keyviz::Sampler::with_store(config, now, h.clone()).expect("sampler")
    }

    fn hot_writes(s: &keyviz::Sampler) -> keyviz::hotkeys::NodeHotKeys {
        let q = keyviz::hotkeys::HotKeyQuery {
            series: keyviz::Series::Writes,
            ..keyviz::hotkeys::HotKeyQuery::default()
        };
        s.hot_keys(&q, 0).expect("valid query")
    }

    #[test]
    fn a_restarted_node_keeps_its_hot_keys_and_row_labels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 = 1_700_000_000_000;
        let (before, label) = {
            let h = Arc::new(FjallHistory::new(
                Store::open(dir.path(), false).expect("open"),
                1_000,
            ));
            let s = sampler_on(&h, t0);
            s.register_route(keyviz::RouteSpec {
                id: 1,
                start: Vec::new(),
                end: None,
                group: 1,
            })
            .expect("route");
            for i in 0..20 {
                s.observe_write(1, b"hot:counter", 8, 1, 4, t0);
                s.observe_write(1, format!("a:{i}").as_bytes(), 8, 1, 4, t0);
            }
            let published = s.publish(s.seal(t0 + 1_000));
            published.persist_to(h.as_ref()).expect("persist");
            let m = s.matrix(&keyviz::MatrixQuery::default(), t0);
            (hot_writes(&s), m.rows[0].first_key.clone())
        };
        assert_eq!(before.parts[0].summary.items[0].key, b"hot:counter");
        assert_eq!(label.as_deref(), Some(b"a:0".as_slice()));
        let h = Arc::new(FjallHistory::new(
            Store::open(dir.path(), false).expect("reopen"),
            1_000,
        ));
        let s = sampler_on(&h, t0 + 2_000);
        assert_eq!(hot_writes(&s), before);
        let m = s.matrix(&keyviz::MatrixQuery::default(), t0);
        assert_eq!(m.rows[0].first_key, label);
    }

    #[test]
    fn a_data_dir_written_before_hot_keys_still_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), false).expect("open");
        // A column exactly as the previous release stored it (no hot keys, no labels).
        let old = br#"{"unix_ms":1700000000000,"step_ms":1000,"cells":[{"bucket_id":"route:1",
            "start":[],"end":null,"aggregate":false,"route_ids":[1],"route_count":1,
            "reads_leader":0,"reads_follower":0,"read_bytes":0,
            "writes":[{"group":1,"term":4,"writes":9,"write_bytes":90}]}]}"#;
        let mut batch = store.batch();
        batch.insert(&store.history, key(1_700_000_000_000), old.to_vec());
        batch.commit().expect("commit");
        let h = Arc::new(FjallHistory::new(store, 1_000));
        let s = sampler_on(&h, 1_700_000_001_000);
        let hot = hot_writes(&s);
        assert_eq!(hot.total(), 9);
        assert!(hot.parts[0].summary.items.is_empty());
    }

    #[test]
    fn a_restarted_node_keeps_every_tier_and_each_tier_prunes_on_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;
        let config = || keyviz::SamplerConfig {
            step_ms: 1_000,
            retention_ms: 60_000,
            coarser_tiers: vec![
                keyviz::HistoryTier {
                    step_ms: 10_000,
                    keep_ms: 600_000,
                },
                keyviz::HistoryTier {
                    step_ms: 60_000,
                    keep_ms: 3_600_000,
                },
            ],
            ..keyviz::SamplerConfig::default()
        };
        let route = keyviz::RouteSpec {
            id: 1,
            start: Vec::new(),
            end: None,
            group: 1,
        };
        let seconds = 300;
        let end = t0 + seconds * 1_000;
        let windows = |s: &keyviz::Sampler| -> Vec<(u64, usize, u64)> {
            [30_000, 300_000, 3_600_000]
                .iter()
                .map(|back| {
                    let q = keyviz::MatrixQuery {
                        from_unix_ms: Some(end - back),
                        ..keyviz::MatrixQuery::default()
                    };
                    let m = s.matrix(&q, end);
                    (m.step_ms, m.column_unix_ms.len(), m.total())
                })
                .collect()
        };
        let before = {
            let h = Arc::new(FjallHistory::new(
                Store::open(dir.path(), false).expect("open"),
                1_000,
            ));
            let s = keyviz::Sampler::with_store(config(), t0, h.clone()).expect("sampler");
            s.register_route(route.clone()).expect("route");
            for i in 0..seconds {
                let at = t0 + i * 1_000;
                // A leader change every 25 s.
                s.observe_write(1, b"k", 8, 1, 3 + (i / 25) as u64, at);
                let published = s.publish(s.seal(at + 1_000));
                published.persist_to(h.as_ref()).expect("persist");
            }
            windows(&s)
        };
        assert_eq!(
            before,
            vec![(1_000, 30, 30), (10_000, 30, 300), (60_000, 5, 300)]
        );
        let store = Store::open(dir.path(), false).expect("reopen");
        let fine = store.history.iter().count();
        let coarse: Vec<u64> = store
            .history_tiers
            .iter()
            .map(|i| {
                let k = i.key().expect("key");
                u64::from_be_bytes(k[..8].try_into().expect("8 bytes"))
            })
            .collect();
        assert_eq!(fine, 60, "the 1 s tier keeps 1 min");
        assert_eq!(coarse.iter().filter(|s| **s == 10_000).count(), 30);
        assert_eq!(coarse.iter().filter(|s| **s == 60_000).count(), 5);
        let h = Arc::new(FjallHistory::new(store, 1_000));
        let s = keyviz::Sampler::with_store(config(), end, h).expect("restart");
        s.register_route(route).expect("route");
        assert_eq!(windows(&s), before, "every tier survives the restart");
    }

    #[test]
    fn columns_round_trip_in_time_order_and_prune_drops_old_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = FjallHistory::new(Store::open(dir.path(), false).expect("open"), 1_000);
        for t in [3_000, -1_000, 1_000, 2_000] {
            h.append(&column(t)).expect("append");
        }
        h.append(&column(2_000)).expect("replace");
        let got: Vec<i64> = loaded(&h, 0).iter().map(|c| c.unix_ms).collect();
        assert_eq!(got, vec![1_000, 2_000, 3_000]);
        HistoryStore::prune(&h, 2_000).expect("prune");
        let got: Vec<i64> = loaded(&h, i64::MIN).iter().map(|c| c.unix_ms).collect();
        assert_eq!(got, vec![2_000, 3_000]);
    }

    #[test]
    fn an_unreadable_column_is_skipped_and_the_rest_still_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), false).expect("open");
        let h = FjallHistory::new(store.clone(), 1_000);
        for t in [1_000, 2_000, 3_000] {
            h.append(&column(t)).expect("append");
        }
        h.append(&tier_column(10_000, 0)).expect("append");
        let mut good = Vec::new();
        column(2_000).encode(&mut good);
        let mut batch = store.batch();
        // A binary column cut short, JSON garbage, and a damaged tier column.
        batch.insert(&store.history, key(2_000), good[..good.len() / 2].to_vec());
        batch.insert(&store.history, key(4_000), b"{not json".to_vec());
        batch.insert(
            &store.history_tiers,
            tier_key(10_000, 10_000),
            b"KVcr\x01\xff".to_vec(),
        );
        batch.commit().expect("commit");
        let got: Vec<(u64, i64)> = loaded(&h, 0)
            .iter()
            .map(|c| (c.step_ms, c.unix_ms))
            .collect();
        assert_eq!(got, vec![(10_000, 0), (1_000, 1_000), (1_000, 3_000)]);
    }

    /// Every record `load` hands over, in its order.
    fn loaded(h: &FjallHistory, since: i64) -> Vec<ColumnRecord> {
        let mut out = Vec::new();
        h.load(since, &mut |r| {
            out.push(r.clone());
            Ok(())
        })
        .expect("load");
        out
    }

    fn tier_column(step_ms: u64, unix_ms: i64) -> ColumnRecord {
        ColumnRecord {
            unix_ms,
            step_ms,
            cells: Vec::new(),
        }
    }

    #[test]
    fn load_yields_the_coarsest_tier_first_and_each_tier_in_window_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = FjallHistory::new(Store::open(dir.path(), false).expect("open"), 1_000);
        for (step, t) in [
            (10_000, 20_000),
            (1_000, 2_000),
            (60_000, 0),
            (10_000, 0),
            (1_000, 1_000),
            (60_000, -60_000),
            (10_000, 10_000),
        ] {
            h.append(&tier_column(step, t)).expect("append");
        }
        let got: Vec<(u64, i64)> = loaded(&h, 0)
            .iter()
            .map(|c| (c.step_ms, c.unix_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                (60_000, 0),
                (10_000, 0),
                (10_000, 10_000),
                (10_000, 20_000),
                (1_000, 1_000),
                (1_000, 2_000),
            ],
            "coarsest first, each tier from `since` on in window order"
        );
        let mut seen = 0;
        let stopped = h.load(i64::MIN, &mut |_| {
            seen += 1;
            Err(PersistError("stop".into()))
        });
        assert!(stopped.is_err(), "the visitor's error ends the load");
        assert_eq!(seen, 1, "nothing is read after the visitor's error");
    }

    #[test]
    fn columns_are_stored_in_the_binary_form_and_read_back_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), false).expect("open");
        let h = FjallHistory::new(store.clone(), 1_000);
        let record = ColumnRecord {
            unix_ms: 1_700_000_000_000,
            step_ms: 1_000,
            cells: (1..=100u64)
                .map(|id| keyviz::CellRecord {
                    bucket_id: format!("route:{id}"),
                    start: format!("user:{:05}", id * 100).into_bytes(),
                    end: Some(format!("user:{:05}", (id + 1) * 100).into_bytes()),
                    aggregate: false,
                    route_ids: vec![id],
                    route_count: 1,
                    reads_leader: id,
                    reads_follower: 0,
                    read_bytes: id * 108,
                    writes: vec![keyviz::WriteRecord {
                        group: 1 + id % 3,
                        term: 7,
                        writes: 2,
                        write_bytes: 216,
                    }],
                    hot: Vec::new(),
                    first_key: Some(format!("user:{:05}", id * 100 + 3).into_bytes()),
                    last_key: Some(format!("user:{:05}", id * 100 + 97).into_bytes()),
                })
                .collect(),
        };
        h.append(&record).expect("append");
        let raw = store
            .history
            .get(key(record.unix_ms))
            .expect("read")
            .expect("stored");
        assert!(
            ColumnRecord::is_binary(&raw),
            "kvnode writes the binary form"
        );
        let json = serde_json::to_vec(&record).expect("json");
        assert!(
            raw.len() * 10 < json.len(),
            "binary {} B against JSON {} B",
            raw.len(),
            json.len()
        );
        assert_eq!(loaded(&h, 0), vec![record]);
    }

    #[test]
    fn a_data_dir_written_with_json_columns_still_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;
        let config = || keyviz::SamplerConfig {
            step_ms: 1_000,
            retention_ms: 60_000,
            coarser_tiers: vec![keyviz::HistoryTier {
                step_ms: 10_000,
                keep_ms: 600_000,
            }],
            ..keyviz::SamplerConfig::default()
        };
        let route = || keyviz::RouteSpec {
            id: 1,
            start: Vec::new(),
            end: None,
            group: 1,
        };
        let store = Store::open(dir.path(), false).expect("open");
        let s = keyviz::Sampler::new(config(), t0).expect("sampler");
        s.register_route(route()).expect("route");
        // Every column written as the previous release did: JSON values.
        for i in 0..30 {
            let at = t0 + i * 1_000;
            s.observe_write(1, format!("k{}", i % 4).as_bytes(), 8, 1, 4, at);
            let published = s.publish(s.seal(at + 1_000));
            let mut batch = store.batch();
            for r in &published.records {
                let raw = crate::store::to_json("test column", r).expect("json");
                if r.step_ms == 1_000 {
                    batch.insert(&store.history, key(r.unix_ms), raw);
                } else {
                    batch.insert(&store.history_tiers, tier_key(r.step_ms, r.unix_ms), raw);
                }
            }
            batch.commit().expect("commit");
        }
        let end = t0 + 30_000;
        let before = s.matrix(&keyviz::MatrixQuery::default(), end);
        let before_hot = hot_writes(&s);
        assert_eq!(before.total(), 30);
        let h = Arc::new(FjallHistory::new(store.clone(), 1_000));
        let restarted = keyviz::Sampler::with_store(config(), end, h.clone()).expect("restart");
        restarted.register_route(route()).expect("route");
        assert_eq!(
            restarted.matrix(&keyviz::MatrixQuery::default(), end),
            before
        );
        assert_eq!(hot_writes(&restarted), before_hot);
        // The next write of a window stores it in the binary form.
        restarted.observe_write(1, b"k9", 8, 1, 4, end);
        let published = restarted.publish(restarted.seal(end + 1_000));
        published.persist_to(h.as_ref()).expect("persist");
        let raw = store.history.get(key(end)).expect("read").expect("stored");
        assert!(ColumnRecord::is_binary(&raw));
        let mixed = keyviz::Sampler::with_store(config(), end + 1_000, h).expect("mixed dir");
        assert_eq!(
            mixed
                .matrix(&keyviz::MatrixQuery::default(), end + 1_000)
                .total(),
            31,
            "JSON and binary columns load side by side"
        );
    }

    // ---- restart memory (a measurement, run by hand; docs/PERFORMANCE.md) ----

    /// The default tiers of `keyviz node` at a 60 s step (60s:24h,10m:7d,1h:30d).
    fn tiered_config() -> keyviz::SamplerConfig {
        keyviz::SamplerConfig {
            step_ms: 60_000,
            retention_ms: 86_400_000,
            max_columns: 100_000,
            coarser_tiers: vec![
                keyviz::HistoryTier {
                    step_ms: 600_000,
                    keep_ms: 7 * 86_400_000,
                },
                keyviz::HistoryTier {
                    step_ms: 3_600_000,
                    keep_ms: 30 * 86_400_000,
                },
            ],
            ..keyviz::SamplerConfig::default()
        }
    }

    /// 2023-11-14T00:00:00Z plus 30 days: the restart's clock.
    const RSS_END: i64 = 1_699_920_000_000 + 30 * 86_400_000;

    /// A stored column shaped as a column of `routes` active routes comes out of the
    /// history (`user:<8 digits>` route keys, one write share, reads, row labels, and
    /// single-key hot summaries in all four series for the first `hot_cells` cells: what
    /// the column caps of 128 / 32 listed keys per series leave).
    fn stored_column(step_ms: u64, unix_ms: i64, routes: u64, hot_cells: u64) -> ColumnRecord {
        let one = |total: u64, key: &[u8]| keyviz::hotkeys::HotSummary {
            total,
            floor: 0,
            sampled: false,
            unit_variance: 0,
            items: vec![keyviz::hotkeys::HotItem {
                key: key.to_vec(),
                estimate: total,
                lower: total,
                upper: total,
                truncated: false,
                seen: total,
            }],
        };
        let minutes = step_ms / 60_000;
        let cells = (0..routes)
            .map(|i| {
                let id = i + 1;
                let group = 1 + i % 3;
                let term = 5 + (unix_ms / 21_600_000) as u64 % 1_000;
                let writes = minutes * (1 + i % 3);
                let key = format!("user:{:08}", i * 1_000 + 17).into_bytes();
                let series = [
                    (keyviz::Series::Reads, 0, 0, minutes),
                    (keyviz::Series::ReadBytes, 0, 0, minutes * 108),
                    (keyviz::Series::Writes, group, term, writes),
                    (keyviz::Series::WriteBytes, group, term, writes * 108),
                ];
                keyviz::CellRecord {
                    bucket_id: format!("route:{id}"),
                    start: if i == 0 {
                        Vec::new()
                    } else {
                        format!("user:{:08}", i * 1_000).into_bytes()
                    },
                    end: (id < routes).then(|| format!("user:{:08}", id * 1_000).into_bytes()),
                    aggregate: false,
                    route_ids: vec![id],
                    route_count: 1,
                    reads_leader: minutes,
                    reads_follower: 0,
                    read_bytes: minutes * 108,
                    writes: vec![keyviz::WriteRecord {
                        group,
                        term,
                        writes,
                        write_bytes: writes * 108,
                    }],
                    hot: if i < hot_cells {
                        series
                            .iter()
                            .map(|&(series, group, term, n)| keyviz::HotRecord {
                                series,
                                group,
                                term,
                                summary: one(n, &key),
                            })
                            .collect()
                    } else {
                        Vec::new()
                    },
                    first_key: Some(key.clone()),
                    last_key: Some(format!("user:{:08}", i * 1_000 + 998).into_bytes()),
                }
            })
            .collect();
        ColumnRecord {
            unix_ms,
            step_ms,
            cells,
        }
    }

    fn status_kib(field: &str) -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse().ok())
            })
            .unwrap_or(0)
    }

    fn dir_bytes(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
    }

    /// Holds every record before restoring any, as `HistoryStore::load` returned a `Vec`
    /// before the streaming load: the restart of the previous release, emulated.
    struct Collecting(FjallHistory);

    impl HistoryStore for Collecting {
        fn append(&self, record: &ColumnRecord) -> Result<(), PersistError> {
            self.0.append(record)
        }
        fn load(
            &self,
            since: i64,
            visit: &mut dyn FnMut(&ColumnRecord) -> Result<(), PersistError>,
        ) -> Result<(), PersistError> {
            let mut all = Vec::new();
            self.0.load(since, &mut |r| {
                all.push(r.clone());
                Ok(())
            })?;
            eprintln!(
                "restart rss: all {} records held, VmRSS {} KiB",
                all.len(),
                status_kib("VmRSS")
            );
            all.iter().try_for_each(visit)
        }
        fn prune(&self, before: i64) -> Result<(), PersistError> {
            HistoryStore::prune(&self.0, before)
        }
        fn prune_tier(&self, step: u64, before: i64) -> Result<(), PersistError> {
            HistoryStore::prune_tier(&self.0, step, before)
        }
    }

    /// The restart half of [`restart_peak_rss`], in a process of its own so its peak is
    /// its own: reopens `KVNODE_RSS_DIR` and rebuilds the history
    /// (`KVNODE_RSS_MODE=stream`, or `collect` for the previous release's whole-`Vec` load).
    /// `KVNODE_RSS_PAUSE=<seconds>` keeps it alive that long after printing, for a look from
    /// outside (gdb's `call (void)malloc_stats()`, `/proc/<pid>/smaps`).
    #[test]
    #[ignore = "child process of restart_peak_rss"]
    fn restart_rss_child() {
        let Ok(dir) = std::env::var("KVNODE_RSS_DIR") else {
            return;
        };
        let mode = std::env::var("KVNODE_RSS_MODE").unwrap_or_default();
        // The parent's database may still be closing (its background threads hold the lock).
        let mut tries = 0;
        let store = loop {
            match Store::open(std::path::Path::new(&dir), false) {
                Ok(store) => break store,
                Err(e) if tries < 300 => {
                    tries += 1;
                    eprintln!("restart rss: waiting for the data dir ({e})");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("open: {e}"),
            }
        };
        let history = FjallHistory::new(store.clone(), 60_000);
        let before = (status_kib("VmRSS"), status_kib("VmHWM"));
        let t = std::time::Instant::now();
        let history: Arc<dyn HistoryStore> = if mode == "collect" {
            Arc::new(Collecting(history))
        } else {
            Arc::new(history)
        };
        let s = keyviz::Sampler::with_store(tiered_config(), RSS_END, history).expect("restart");
        let stats = s.stats();
        println!(
            "restart rss [{mode}]: {} columns restored in {:.1} s; before: VmRSS {} KiB, VmHWM {} KiB; after: VmRSS {} KiB, VmHWM {} KiB; history {:.1} MiB accounted; block cache {:.1} MiB",
            stats.columns,
            t.elapsed().as_secs_f64(),
            before.0,
            before.1,
            status_kib("VmRSS"),
            status_kib("VmHWM"),
            stats.history_bytes as f64 / 1_048_576.0,
            store.cache_bytes() as f64 / 1_048_576.0,
        );
        if let Ok(secs) = std::env::var("KVNODE_RSS_PAUSE") {
            // Time for an outside look at the process (gdb, /proc/<pid>/smaps).
            eprintln!("restart rss: pid {} paused", std::process::id());
            std::thread::sleep(std::time::Duration::from_secs(secs.parse().unwrap_or(60)));
        }
        drop(s);
    }

    /// Writes 10 000 active routes of tiered history through [`FjallHistory`] (the full
    /// 30 days divided by `KVNODE_RSS_SCALE`, default 10, columns of each tier; values in
    /// `KVNODE_RSS_FORMAT` `binary` or `json`), prints the bytes stored, then restarts a
    /// sampler on it in a child process per mode in `KVNODE_RSS_MODES` (default
    /// `stream`) and prints its memory. Run:
    /// `cargo test -p kvnode --release --lib restart_peak_rss -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement: minutes and gigabytes"]
    fn restart_peak_rss() {
        let scale: u64 = std::env::var("KVNODE_RSS_SCALE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10)
            .max(1);
        let json = std::env::var("KVNODE_RSS_FORMAT").is_ok_and(|f| f == "json");
        let modes = std::env::var("KVNODE_RSS_MODES").unwrap_or_else(|_| "stream".into());
        let routes = 10_000;
        let dir =
            tempfile::tempdir_in(std::env::var("KVNODE_RSS_TMP").unwrap_or_else(|_| ".".into()))
                .expect("tempdir");
        let store = Store::open(dir.path(), false).expect("open");
        let h = FjallHistory::new(store.clone(), 60_000);
        let (mut columns, mut cells, mut value_bytes) = (0u64, 0u64, 0u64);
        let t = std::time::Instant::now();
        for (step, count, hot_cells) in [
            (3_600_000u64, 720 / scale, 32),
            (600_000, 1_008 / scale, 32),
            (60_000, 1_440 / scale, 128),
        ] {
            for j in 0..count {
                let at = RSS_END - ((count - j) * step) as i64;
                let record = stored_column(step, at, routes, hot_cells);
                let raw = if json {
                    crate::store::to_json("rss column", &record).expect("json")
                } else {
                    encode_column(&record)
                };
                columns += 1;
                cells += record.cells.len() as u64;
                value_bytes += raw.len() as u64;
                let mut batch = store.batch();
                if step == 60_000 {
                    batch.insert(&store.history, key(at), raw);
                } else {
                    batch.insert(&store.history_tiers, tier_key(step, at), raw);
                }
                batch.commit().expect("commit");
            }
        }
        // Memtables to tables, compacted once: what the keyspaces hold on disk, after
        // fjall's block compression.
        for ks in [&store.history, &store.history_tiers] {
            ks.rotate_memtable_and_wait().expect("flush");
            ks.major_compact().expect("compact");
        }
        let tables = store.history.disk_space() + store.history_tiers.disk_space();
        drop(h);
        drop(store);
        println!(
            "restart rss: wrote {columns} columns, {cells} cells as {} in {:.1} s: values {:.1} MiB ({:.1} B a cell, {:.1} KiB a 10 000-cell column); history keyspaces on disk {:.1} MiB after compaction ({:.1} B a cell); data dir {:.1} MiB",
            if json { "JSON" } else { "binary" },
            t.elapsed().as_secs_f64(),
            value_bytes as f64 / 1_048_576.0,
            value_bytes as f64 / cells as f64,
            value_bytes as f64 / columns as f64 / 1_024.0,
            tables as f64 / 1_048_576.0,
            tables as f64 / cells as f64,
            dir_bytes(dir.path()) as f64 / 1_048_576.0,
        );
        let exe = std::env::current_exe().expect("test binary");
        for mode in modes.split(',') {
            let out = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "history::tests::restart_rss_child",
                    "--ignored",
                    "--nocapture",
                ])
                .env("KVNODE_RSS_DIR", dir.path())
                .env("KVNODE_RSS_MODE", mode)
                .output()
                .expect("child");
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.lines().filter(|l| l.starts_with("restart rss")) {
                println!("{line}");
            }
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "child {mode} failed");
        }
    }
}
