//! Step-aligned columns kept for the retention period.
//!
//! Columns are ordered by window start. A column pushed with the timestamp of
//! an existing one (a second seal inside one window, such as the shutdown
//! flush, or a late observation for a published window) is added into it, so
//! one window is always one column. Retention is
//! enforced on every push, by age (`retention_ms` behind the newest column) and
//! by count (`max_columns`), whichever bites first.

mod column;
mod persist;
mod rows;

use std::collections::VecDeque;

use crate::hotkeys::MAX_HOT_KEY_BYTES;
use crate::matrix::Series;

pub(crate) use column::{CELL_HOT_K, CellHot, CellInput, Column, Counter, Lanes, WriteLane};
pub use persist::{CellRecord, ColumnRecord, HistoryStore, HotRecord, PersistError, WriteRecord};
pub(crate) use rows::{RowCatalog, RowMeta};

/// The columns and the rows they mention.
#[derive(Debug)]
pub(crate) struct History {
    columns: VecDeque<Column>,
    pub(crate) catalog: RowCatalog,
    retention_ms: u64,
    max_columns: usize,
}

impl History {
    pub(crate) fn new(retention_ms: u64, max_columns: usize) -> History {
        History {
            columns: VecDeque::new(),
            catalog: RowCatalog::default(),
            retention_ms,
            max_columns: max_columns.max(1),
        }
    }

    /// Adds a window's cells. Each cell's row must carry one reference taken
    /// for this column (`RowCatalog::acquire`/`retain`); the history releases it
    /// when the column leaves.
    ///
    /// A window that already has a column (a second seal inside one window, a
    /// late observation, a restart replay) is merged into it: cells of one row
    /// are summed, write lanes per identical (group, term). `cells` may name a
    /// row more than once (a window's live and buffered counts).
    pub(crate) fn push(&mut self, unix_ms: i64, mut cells: Vec<CellInput>) {
        for cell in &mut cells {
            if let Some(labels) = cell.labels.take() {
                self.catalog.note_labels(cell.row, Some(labels));
            }
        }
        let pos = self.columns.partition_point(|c| c.unix_ms < unix_ms);
        if let Some(existing) = self.columns.get(pos).filter(|c| c.unix_ms == unix_ms) {
            let mut merged = existing.cells();
            merged.append(&mut cells);
            let merged = self.fold_rows(merged);
            self.columns[pos] = Column::build(unix_ms, merged);
        } else {
            let cells = self.fold_rows(cells);
            self.columns.insert(pos, Column::build(unix_ms, cells));
        }
        self.prune();
    }

    /// Window start of the oldest retained column.
    pub(crate) fn oldest(&self) -> Option<i64> {
        self.columns.front().map(|c| c.unix_ms)
    }

    /// Joins cells of equal row (each holds a column reference, so the joined
    /// duplicates give theirs back). O(n log n).
    fn fold_rows(&mut self, mut cells: Vec<CellInput>) -> Vec<CellInput> {
        cells.sort_by_key(|c| c.row);
        let mut out: Vec<CellInput> = Vec::with_capacity(cells.len());
        for cell in cells {
            match out.last_mut() {
                Some(last) if last.row == cell.row => {
                    self.catalog.release(cell.row);
                    last.absorb(cell);
                }
                _ => out.push(cell),
            }
        }
        out
    }

    fn prune(&mut self) {
        let Some(newest) = self.columns.back().map(|c| c.unix_ms) else {
            return;
        };
        let horizon = newest.saturating_sub(i64::try_from(self.retention_ms).unwrap_or(i64::MAX));
        while let Some(front) = self.columns.front() {
            if front.unix_ms > horizon && self.columns.len() <= self.max_columns {
                break;
            }
            if let Some(old) = self.columns.pop_front() {
                for &row in old.rows.iter() {
                    self.catalog.release(row);
                }
            }
        }
    }

    /// Columns with window start in `[from, to)`; `None` leaves a side open.
    pub(crate) fn range(
        &self,
        from: Option<i64>,
        to: Option<i64>,
    ) -> impl Iterator<Item = &Column> {
        let lo = from.map_or(0, |f| self.columns.partition_point(|c| c.unix_ms < f));
        let hi = to.map_or(self.columns.len(), |t| {
            self.columns.partition_point(|c| c.unix_ms < t)
        });
        self.columns.range(lo..hi.max(lo))
    }

    /// Number of retained columns.
    pub(crate) fn len(&self) -> usize {
        self.columns.len()
    }

    /// Approximate heap bytes of columns and row metadata.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.columns.iter().map(Column::heap_bytes).sum::<usize>()
            + self.columns.capacity() * std::mem::size_of::<Column>()
            + self.catalog.heap_bytes()
    }

    /// Approximate heap bytes of the columns' hot-key summaries.
    pub(crate) fn hot_heap_bytes(&self) -> usize {
        self.columns.iter().map(Column::hot_heap_bytes).sum()
    }

    /// The whole window of `column` as self-contained records.
    pub(crate) fn record_of(&self, column: &Column, step_ms: u64) -> ColumnRecord {
        ColumnRecord {
            unix_ms: column.unix_ms,
            step_ms,
            cells: column
                .cells()
                .into_iter()
                .filter_map(|c| {
                    let meta = self.catalog.get(c.row)?;
                    Some(CellRecord {
                        bucket_id: meta.bucket_id.to_string(),
                        start: meta.start.clone(),
                        end: meta.end.clone(),
                        aggregate: meta.aggregate,
                        route_ids: meta.route_ids.clone(),
                        route_count: meta.route_count,
                        reads_leader: c.reads_leader,
                        reads_follower: c.reads_follower,
                        read_bytes: c.read_bytes,
                        writes: c
                            .lanes
                            .iter()
                            .map(|l| WriteRecord {
                                group: l.group,
                                term: l.term,
                                writes: l.writes,
                                write_bytes: l.write_bytes,
                            })
                            .collect(),
                        hot: c
                            .hot
                            .into_iter()
                            .map(|h| HotRecord {
                                series: h.series,
                                group: h.group,
                                term: h.term,
                                summary: h.summary,
                            })
                            .collect(),
                        first_key: meta.labels.as_ref().map(|(f, _)| f.clone()),
                        last_key: meta.labels.as_ref().map(|(_, l)| l.clone()),
                    })
                })
                .collect(),
        }
    }

    /// The newest column at `unix_ms`, if any.
    pub(crate) fn column_at(&self, unix_ms: i64) -> Option<&Column> {
        let pos = self.columns.partition_point(|c| c.unix_ms < unix_ms);
        self.columns.get(pos).filter(|c| c.unix_ms == unix_ms)
    }

    /// Restores a stored record (used at start-up).
    pub(crate) fn restore(&mut self, record: ColumnRecord) {
        let cells = record
            .cells
            .into_iter()
            .map(|c| {
                let row = self.catalog.acquire(RowMeta {
                    bucket_id: c.bucket_id.into(),
                    start: c.start,
                    end: c.end,
                    aggregate: c.aggregate,
                    route_ids: c.route_ids,
                    route_count: c.route_count,
                    group: c.writes.first().map_or(0, |w| w.group),
                    generation: 0,
                    labels: None,
                });
                let labels = match (c.first_key, c.last_key) {
                    (Some(f), Some(l))
                        if f.len() <= MAX_HOT_KEY_BYTES && l.len() <= MAX_HOT_KEY_BYTES =>
                    {
                        Some((f, l))
                    }
                    _ => None,
                };
                let lanes: Lanes = c
                    .writes
                    .into_iter()
                    .map(|w| WriteLane {
                        group: w.group,
                        term: w.term,
                        writes: w.writes,
                        write_bytes: w.write_bytes,
                    })
                    .collect();
                // A stored summary that breaks an invariant (a damaged or
                // foreign record) is left out: its cell's keys are then only
                // bounded by its total, which stays honest.
                let hot = c
                    .hot
                    .into_iter()
                    .filter(|h| {
                        matches!(
                            h.series,
                            Series::Reads | Series::ReadBytes | Series::Writes | Series::WriteBytes
                        ) && h.summary.validate().is_ok()
                    })
                    .map(|h| CellHot {
                        series: h.series,
                        group: h.group,
                        term: h.term,
                        summary: h.summary,
                    })
                    .collect();
                CellInput {
                    row,
                    reads_leader: c.reads_leader,
                    reads_follower: c.reads_follower,
                    read_bytes: c.read_bytes,
                    lanes,
                    hot,
                    labels,
                }
            })
            .collect::<Vec<_>>();
        // Two records may name one row twice; push folds them.
        self.push(record.unix_ms, cells);
    }
}
