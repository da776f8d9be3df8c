//! Builders shared by the test modules.

use keyviz::{
    ColumnRecord, HistoryStore, Matrix, MatrixQuery, MatrixRow, PersistError, RouteSpec, Sampler,
    SamplerConfig, Series,
};
use parking_lot::Mutex;

/// 2023-11-14T22:13:20Z, a whole minute.
pub(crate) const T0: i64 = 1_700_000_040_000;
pub(crate) const STEP: u64 = 1_000;

pub(crate) fn sampler() -> Sampler {
    sampler_with(|_| {})
}

pub(crate) fn sampler_with(f: impl FnOnce(&mut SamplerConfig)) -> Sampler {
    let mut config = SamplerConfig {
        step_ms: STEP,
        ..SamplerConfig::default()
    };
    f(&mut config);
    Sampler::new(config, T0).expect("valid config")
}

pub(crate) fn route(id: u64, start: &[u8], end: Option<&[u8]>, group: u64) -> RouteSpec {
    RouteSpec {
        id,
        start: start.to_vec(),
        end: end.map(<[u8]>::to_vec),
        group,
    }
}

pub(crate) fn all(sampler: &Sampler, series: Series) -> Matrix {
    sampler.matrix(
        &MatrixQuery {
            series,
            ..MatrixQuery::default()
        },
        T0,
    )
}

/// Sum of every cell of `series`.
pub(crate) fn total(sampler: &Sampler, series: Series) -> u64 {
    all(sampler, series).total()
}

/// One row: (bucket_id, values, raft group ids, leader terms).
pub(crate) type RowSpec<'a> = (&'a str, &'a [u64], &'a [u64], &'a [u64]);

/// A peer matrix with one row per `(bucket_id, values, groups, terms)`.
pub(crate) fn matrix(series: Series, columns: &[i64], rows: &[RowSpec<'_>]) -> Matrix {
    Matrix {
        column_unix_ms: columns.to_vec(),
        rows: rows
            .iter()
            .map(|(id, values, groups, terms)| MatrixRow {
                bucket_id: (*id).to_owned(),
                start: Some(id.as_bytes().to_vec()),
                end: None,
                route_count: 1,
                values: values.to_vec(),
                raft_group_ids: groups.to_vec(),
                leader_terms: terms.to_vec(),
                ..MatrixRow::default()
            })
            .collect(),
        series,
        generated_at: "2023-11-14T22:13:20Z".into(),
        step_ms: 0,
        node_id: None,
    }
}

/// An in-memory [`HistoryStore`]: columns kept sorted by time, one per (step, window).
#[derive(Default)]
pub(crate) struct MemStore {
    pub(crate) columns: Mutex<Vec<ColumnRecord>>,
}

impl HistoryStore for MemStore {
    fn append(&self, record: &ColumnRecord) -> Result<(), PersistError> {
        let mut cols = self.columns.lock();
        cols.retain(|c| (c.step_ms, c.unix_ms) != (record.step_ms, record.unix_ms));
        cols.push(record.clone());
        cols.sort_by_key(|c| c.unix_ms);
        Ok(())
    }
    fn load(
        &self,
        since: i64,
        visit: &mut dyn FnMut(&ColumnRecord) -> Result<(), PersistError>,
    ) -> Result<(), PersistError> {
        let cols = self.columns.lock().clone();
        cols.iter()
            .filter(|c| c.unix_ms >= since)
            .try_for_each(visit)
    }
    fn prune(&self, before: i64) -> Result<(), PersistError> {
        self.columns
            .lock()
            .retain(|c| c.step_ms != STEP || c.unix_ms >= before);
        Ok(())
    }
    fn prune_tier(&self, step: u64, before: i64) -> Result<(), PersistError> {
        self.columns
            .lock()
            .retain(|c| c.step_ms != step || c.unix_ms >= before);
        Ok(())
    }
}
