//! KeyViz history persisted in the node's fjall database (`keyviz_history` keyspace), so a
//! restarted node still shows the heatmap it had.
//!
//! Key: the column's window start as an order-preserving big-endian i64 (sign bit flipped);
//! value: the JSON `ColumnRecord`. Appending a window that exists replaces it, as the trait
//! requires. Writes are not fsync'd on their own: they ride on the next log fsync, and losing
//! the last column on a power cut is acceptable for a heatmap.

use keyviz::{ColumnRecord, HistoryStore, PersistError};

use crate::counting::{Watermarks, stage_watermarks};
use crate::sampling::ColumnSink;
use crate::store::{Store, from_json, to_json};

/// [`HistoryStore`] (start-up load) and [`ColumnSink`] (the persistence thread) over the
/// node's database.
pub(crate) struct FjallHistory {
    store: Store,
}

impl FjallHistory {
    /// History in `store`.
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }
}

fn key(unix_ms: i64) -> [u8; 8] {
    ((unix_ms as u64) ^ (1 << 63)).to_be_bytes()
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
        Ok(out)
    }

    fn prune(&self, before_unix_ms: i64) -> Result<(), PersistError> {
        let mut batch = self.store.batch();
        for item in self.store.history.range(..key(before_unix_ms)) {
            batch.remove(&self.store.history, item.key().map_err(err)?);
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
            batch.insert(&self.store.history, key(record.unix_ms), raw);
        }
        if let Some(marks) = marks {
            stage_watermarks(&self.store, &mut batch, marks);
        }
        batch.commit().map_err(err)
    }

    fn prune(&self, before_unix_ms: i64) -> Result<(), PersistError> {
        HistoryStore::prune(self, before_unix_ms)
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
        let h = Arc::new(FjallHistory::new(store));
        let s = sampler_on(&h, 1_700_000_001_000);
        let hot = hot_writes(&s);
        assert_eq!(hot.total(), 9);
        assert!(hot.parts[0].summary.items.is_empty());
    }

    #[test]
    fn columns_round_trip_in_time_order_and_prune_drops_old_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = FjallHistory::new(Store::open(dir.path(), false).expect("open"));
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
