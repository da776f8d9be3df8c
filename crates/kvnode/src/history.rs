//! KeyViz history persisted in the node's fjall database, so a restarted node still shows the
//! heatmap it had, in every tier.
//!
//! Columns of the finest tier (the node's `--step`) live in the `keyviz_history` keyspace, keyed
//! by the window start as an order-preserving big-endian i64 (sign bit flipped), as before tiers
//! existed, so an older data dir loads unchanged. Columns of the coarser tiers live in
//! `keyviz_history_tiers`, keyed by the tier's step (big-endian u64) then the window start, so
//! each tier prunes with one range delete. Values are the JSON `ColumnRecord`s. Appending a
//! column that exists replaces it, as the trait requires. Writes are not fsync'd on their own: they ride on the next log fsync, and losing
//! the last column on a power cut is acceptable for a heatmap.

use keyviz::{ColumnRecord, HistoryStore, PersistError};

use crate::counting::{Watermarks, stage_watermarks};
use crate::sampling::ColumnSink;
use crate::store::{Store, from_json, to_json};

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

fn err(e: impl std::error::Error + Send + Sync + 'static) -> PersistError {
    PersistError(Box::new(e))
}

impl HistoryStore for FjallHistory {
    fn append(&self, record: &ColumnRecord) -> Result<(), PersistError> {
        self.write(std::slice::from_ref(record), None)
    }

    fn load(&self, since_unix_ms: i64) -> Result<Vec<ColumnRecord>, PersistError> {
        let mut out = Vec::new();
        for item in self.store.history.range(key(since_unix_ms)..) {
            let v = item.value().map_err(err)?;
            out.push(from_json("keyviz column", &v).map_err(err)?);
        }
        // The coarser tiers hold a few thousand columns at most: one scan, old ones skipped
        // by key before their value is read.
        for item in self.store.history_tiers.iter() {
            let (k, v) = item.into_inner().map_err(err)?;
            if tier_key_unix_ms(&k).is_some_and(|t| t >= since_unix_ms) {
                out.push(from_json("keyviz tier column", &v).map_err(err)?);
            }
        }
        Ok(out)
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
            let raw = to_json("keyviz column", record).map_err(err)?;
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
        let got: Vec<i64> = h.load(0).expect("load").iter().map(|c| c.unix_ms).collect();
        assert_eq!(got, vec![1_000, 2_000, 3_000]);
        HistoryStore::prune(&h, 2_000).expect("prune");
        let got: Vec<i64> = h
            .load(i64::MIN)
            .expect("load")
            .iter()
            .map(|c| c.unix_ms)
            .collect();
        assert_eq!(got, vec![2_000, 3_000]);
    }
}
