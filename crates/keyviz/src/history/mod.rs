//! Step-aligned columns kept for the retention period, in tiers.
//!
//! Columns are ordered by window start. A column pushed with the timestamp of
//! an existing one (a second seal inside one window, such as the shutdown
//! flush, or a late observation for a published window) is added into it, so
//! one window is always one column. Retention is
//! enforced on every push, by age (`keep_ms` behind the tier's newest column)
//! and by count (`max_columns`), whichever bites first.
//!
//! **Tiers.** The finest tier holds the columns as sealed (`step_ms` wide,
//! kept `retention_ms`); each coarser tier ([`HistoryTier`]) holds wider
//! columns for longer. Every pushed cell is added into the finest tier *and*
//! into the column of each coarser tier that contains its window, so each tier
//! holds the exact totals of its whole retention on its own (sums of counters;
//! write lanes per (group, term), hot-key summaries joined with
//! `HotSummary::add_disjoint`), and a query reads a single tier
//! ([`History::choose_tier`]). The cost is that recent windows are held once
//! per tier (see docs/PERFORMANCE.md for the figures).

mod codec;
mod column;
mod persist;
mod rows;

use std::collections::VecDeque;

use crate::config::HistoryTier;
use crate::hotkeys::MAX_HOT_KEY_BYTES;
use crate::matrix::Series;
use crate::time::align_down;

pub use codec::DecodeError;
pub(crate) use column::HotLayout;
use column::MAX_COARSE_COLUMN_HOT_ITEMS;
pub(crate) use column::{
    CELL_HOT_K, CellHot, CellInput, Column, Counter, Lanes, MAX_COLUMN_HOT_ITEMS, WriteLane,
};
pub use persist::{CellRecord, ColumnRecord, HistoryStore, HotRecord, PersistError, WriteRecord};
pub(crate) use rows::{RowCatalog, RowMeta, RowRef};

/// Columns a query reads from one tier at most, when a coarser tier covers the
/// window: a 24 h window at 1 min (1 440), a 1 h window at 1 s (3 600).
pub const MAX_QUERY_COLUMNS: usize = 4_096;

/// Where a streaming restore stands ([`History::restore_begin`]).
#[derive(Debug)]
pub(crate) struct Restore {
    /// Tiers that have received a stored record.
    stored: Vec<bool>,
    /// Tiers holding columns rebuilt from finer records.
    rebuilt: Vec<bool>,
    /// The cells of the record being restored: one vector for every record,
    /// so a restore does not allocate (and free) one per column between the
    /// history's long-lived arrays.
    scratch: Vec<CellInput>,
}

/// One tier's columns.
#[derive(Debug)]
struct Tier {
    step_ms: u64,
    keep_ms: u64,
    columns: VecDeque<Column>,
}

/// The columns of every tier and the rows they mention.
#[derive(Debug)]
pub(crate) struct History {
    tiers: Vec<Tier>,
    pub(crate) catalog: RowCatalog,
    max_columns: usize,
    /// (tier, window start) of every column changed since the last
    /// [`History::take_touched`], in change order, deduplicated.
    touched: Vec<(usize, i64)>,
    /// How columns keep their hot-key summaries (packed, except in tests
    /// that compare against structs).
    hot_layout: HotLayout,
}

impl History {
    /// `tiers` finest first (a validated configuration's
    /// [`SamplerConfig::tiers`](crate::SamplerConfig::tiers)); `max_columns`
    /// caps each tier.
    pub(crate) fn with_tiers(tiers: &[HistoryTier], max_columns: usize) -> History {
        let mut tiers: Vec<Tier> = tiers
            .iter()
            .map(|t| Tier {
                step_ms: t.step_ms.max(1),
                keep_ms: t.keep_ms,
                columns: VecDeque::new(),
            })
            .collect();
        if tiers.is_empty() {
            tiers.push(Tier {
                step_ms: 1,
                keep_ms: u64::MAX,
                columns: VecDeque::new(),
            });
        }
        History {
            tiers,
            catalog: RowCatalog::default(),
            max_columns: max_columns.max(1),
            touched: Vec::new(),
            hot_layout: HotLayout::Packed,
        }
    }

    /// The same history keeping hot-key summaries in `layout` (tests compare
    /// query results of the layouts).
    #[cfg(test)]
    pub(crate) fn with_hot_layout(mut self, layout: HotLayout) -> History {
        self.hot_layout = layout;
        self
    }

    /// Adds a window's cells. Each cell's row must carry one reference taken
    /// for this column (`RowCatalog::acquire`/`retain`); the history releases it
    /// when the column leaves. The cells are also added into the column of
    /// every coarser tier that contains `unix_ms` (taking a row reference each).
    ///
    /// A window that already has a column (a second seal inside one window, a
    /// late observation, a restart replay) is merged into it: cells of one row
    /// are summed, write lanes per identical (group, term). `cells` may name a
    /// row more than once (a window's live and buffered counts).
    pub(crate) fn push(&mut self, unix_ms: i64, cells: Vec<CellInput>) {
        let all: Vec<usize> = (0..self.tiers.len()).collect();
        self.push_to(&all, unix_ms, cells);
    }

    /// [`push`](History::push) into the tiers listed in `tiers` only; returns
    /// `cells` emptied, with its capacity (a restore fills it again).
    fn push_to(
        &mut self,
        tiers: &[usize],
        unix_ms: i64,
        mut cells: Vec<CellInput>,
    ) -> Vec<CellInput> {
        for cell in &mut cells {
            if let Some(labels) = cell.labels.take() {
                self.catalog.note_labels(cell.row, Some(labels));
            }
        }
        let Some((&last, rest)) = tiers.split_last() else {
            for cell in cells.drain(..) {
                self.catalog.release(cell.row);
            }
            return cells;
        };
        for &k in rest {
            let copy = cells.clone();
            for cell in &copy {
                self.catalog.retain(cell.row);
            }
            self.push_tier(k, unix_ms, copy);
        }
        self.push_tier(last, unix_ms, cells)
    }

    /// Adds `cells` into tier `k`; returns `cells` emptied, with its capacity.
    fn push_tier(&mut self, k: usize, unix_ms: i64, mut cells: Vec<CellInput>) -> Vec<CellInput> {
        let Some(step) = self.tiers.get(k).map(|t| t.step_ms) else {
            for cell in cells.drain(..) {
                self.catalog.release(cell.row);
            }
            return cells;
        };
        let unix_ms = align_down(unix_ms, step);
        let columns = &self.tiers[k].columns;
        let pos = columns.partition_point(|c| c.unix_ms < unix_ms);
        let existing = columns
            .get(pos)
            .filter(|c| c.unix_ms == unix_ms)
            .map(Column::cells);
        let hot_cap = if k == 0 {
            MAX_COLUMN_HOT_ITEMS
        } else {
            MAX_COARSE_COLUMN_HOT_ITEMS
        };
        let layout = self.hot_layout;
        // The row array of a neighbour (the column before, else the one
        // after), which the new column shares when it names the same rows.
        let after = pos + usize::from(existing.is_some());
        let like = pos
            .checked_sub(1)
            .and_then(|p| columns.get(p))
            .or_else(|| columns.get(after))
            .map(|c| c.rows.clone());
        let pos = match existing {
            Some(mut merged) => {
                merged.append(&mut cells);
                let mut merged = self.fold_rows(merged);
                self.tiers[k].columns[pos] =
                    Column::build_capped(unix_ms, &mut merged, hot_cap, layout, like.as_ref());
                pos
            }
            None => {
                cells = self.fold_rows(cells);
                let column =
                    Column::build_capped(unix_ms, &mut cells, hot_cap, layout, like.as_ref());
                self.tiers[k].columns.insert(pos, column);
                pos
            }
        };
        // Steady traffic names the same rows in every column: share the array.
        let columns = &mut self.tiers[k].columns;
        let neighbour = pos
            .checked_sub(1)
            .and_then(|p| columns.get(p))
            .or_else(|| columns.get(pos + 1))
            .map(|c| c.rows.clone());
        if let (Some(rows), Some(column)) = (neighbour, columns.get_mut(pos)) {
            column.share_rows_with(rows);
        }
        if !self.touched.contains(&(k, unix_ms)) {
            self.touched.push((k, unix_ms));
        }
        self.prune(k);
        cells
    }

    /// Window start of the oldest retained column of the finest tier.
    pub(crate) fn oldest(&self) -> Option<i64> {
        self.tiers[0].columns.front().map(|c| c.unix_ms)
    }

    /// (step, window start of the oldest retained column) of every coarser
    /// tier that holds any: a host's store prunes each tier below it.
    pub(crate) fn coarser_cutoffs(&self) -> Vec<(u64, i64)> {
        self.tiers
            .iter()
            .skip(1)
            .filter_map(|t| t.columns.front().map(|c| (t.step_ms, c.unix_ms)))
            .collect()
    }

    /// Joins cells of equal row (each holds a column reference, so the joined
    /// duplicates give theirs back). O(n log n).
    fn fold_rows(&mut self, mut cells: Vec<CellInput>) -> Vec<CellInput> {
        // A restored column's cells usually come in row order already (rows
        // are interned in the order of the first column's cells): then
        // nothing is sorted, and the stable sort's buffer is not allocated.
        if !cells.is_sorted_by_key(|c| c.row) {
            cells.sort_by_key(|c| c.row);
        }
        // In place: a restore's cells name each row once, so this usually
        // only sorts (no second vector of cells).
        let catalog = &mut self.catalog;
        cells.dedup_by(|later, kept| {
            if later.row != kept.row {
                return false;
            }
            catalog.release(later.row);
            kept.absorb(std::mem::take(later));
            true
        });
        cells
    }

    fn prune(&mut self, k: usize) {
        let max_columns = self.max_columns;
        let tier = &mut self.tiers[k];
        let Some(newest) = tier.columns.back().map(|c| c.unix_ms) else {
            return;
        };
        let horizon = newest.saturating_sub(i64::try_from(tier.keep_ms).unwrap_or(i64::MAX));
        while let Some(front) = tier.columns.front() {
            if front.unix_ms > horizon && tier.columns.len() <= max_columns {
                break;
            }
            if let Some(old) = tier.columns.pop_front() {
                for &row in old.rows.iter() {
                    self.catalog.release(row);
                }
            }
        }
    }

    /// Column width of tier `k` (the coarsest for an index past the end).
    pub(crate) fn tier_step(&self, k: usize) -> u64 {
        self.tiers
            .get(k)
            .or(self.tiers.last())
            .map_or(1, |t| t.step_ms)
    }

    /// The tier a query of `[from, to)` reads: the finest that still holds
    /// every count from `from` on (its retention reaches back to `from`,
    /// aligned down to its step) with at most `max_columns` columns in the
    /// window; the coarsest covering tier when none fits the budget, and the
    /// coarsest tier when none covers. `from = None` means the oldest column
    /// held anywhere. O(tiers × log columns).
    pub(crate) fn choose_tier(
        &self,
        from: Option<i64>,
        to: Option<i64>,
        max_columns: usize,
    ) -> usize {
        let last = self.tiers.len() - 1;
        let newest = self
            .tiers
            .iter()
            .filter_map(|t| t.columns.back().map(|c| c.unix_ms))
            .max();
        let Some(newest) = newest else {
            return 0;
        };
        let from = from.or_else(|| {
            self.tiers
                .iter()
                .filter_map(|t| t.columns.front().map(|c| c.unix_ms))
                .min()
        });
        let mut covering = None;
        for (k, tier) in self.tiers.iter().enumerate() {
            let covers = k == last
                || from.is_none_or(|f| {
                    let horizon = align_down(newest, tier.step_ms)
                        .saturating_sub(i64::try_from(tier.keep_ms).unwrap_or(i64::MAX));
                    align_down(f, tier.step_ms) > horizon
                });
            if !covers {
                continue;
            }
            covering.get_or_insert(k);
            if self.tier_range(k, from, to).len() <= max_columns {
                return k;
            }
            covering = Some(k);
        }
        covering.unwrap_or(last)
    }

    /// Columns of tier `k` whose window overlaps `[from, to)`: window start in
    /// `[align_down(from, step), to)`; `None` leaves a side open.
    pub(crate) fn tier_range(
        &self,
        k: usize,
        from: Option<i64>,
        to: Option<i64>,
    ) -> std::collections::vec_deque::Iter<'_, Column> {
        let tier = self.tiers.get(k).unwrap_or(&self.tiers[0]);
        let columns = &tier.columns;
        let lo = from.map_or(0, |f| {
            let f = align_down(f, tier.step_ms);
            columns.partition_point(|c| c.unix_ms < f)
        });
        let hi = to.map_or(columns.len(), |t| {
            columns.partition_point(|c| c.unix_ms < t)
        });
        columns.range(lo..hi.max(lo))
    }

    /// Number of retained columns, every tier together.
    pub(crate) fn len(&self) -> usize {
        self.tiers.iter().map(|t| t.columns.len()).sum()
    }

    fn all_columns(&self) -> impl Iterator<Item = &Column> {
        self.tiers.iter().flat_map(|t| t.columns.iter())
    }

    /// Approximate heap bytes of columns and row metadata.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.all_columns().map(Column::heap_bytes).sum::<usize>()
            + self
                .tiers
                .iter()
                .map(|t| t.columns.capacity() * std::mem::size_of::<Column>())
                .sum::<usize>()
            + self.catalog.heap_bytes()
    }

    /// Approximate heap bytes of the columns' hot-key summaries.
    pub(crate) fn hot_heap_bytes(&self) -> usize {
        self.all_columns().map(Column::hot_heap_bytes).sum()
    }

    /// The records of every column changed since the last call (each column
    /// once, as it is now, in change order; a column that has since left the
    /// history is skipped), for the host to persist.
    pub(crate) fn take_touched(&mut self) -> Vec<ColumnRecord> {
        let touched = std::mem::take(&mut self.touched);
        touched
            .into_iter()
            .filter_map(|(k, t)| {
                let tier = self.tiers.get(k)?;
                let pos = tier.columns.partition_point(|c| c.unix_ms < t);
                let column = tier.columns.get(pos).filter(|c| c.unix_ms == t)?;
                Some(self.record_of(column, tier.step_ms))
            })
            .collect()
    }

    /// Forgets the changed columns (a sampler that persists nothing).
    pub(crate) fn clear_touched(&mut self) {
        self.touched.clear();
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

    /// Starts a streaming restore (start-up): feed every stored record to
    /// [`restore_one`](History::restore_one), in any order, then persist
    /// [`take_touched`](History::take_touched).
    pub(crate) fn restore_begin(&self) -> Restore {
        Restore {
            stored: vec![false; self.tiers.len()],
            rebuilt: vec![false; self.tiers.len()],
            scratch: Vec::new(),
        }
    }

    /// The tier a stored record of `step_ms` goes into: the tier of its step
    /// (a step no tier has, such as one from before a `--step` change, goes
    /// into the finest tier whose step is at least as wide, else the coarsest).
    fn tier_of(&self, step_ms: u64) -> usize {
        self.tiers
            .iter()
            .position(|t| t.step_ms >= step_ms)
            .unwrap_or(self.tiers.len() - 1)
    }

    /// Restores one stored record (start-up), of any tier, in any order; the
    /// caller holds only this record, so a restart holds one stored column at
    /// a time on top of the history.
    ///
    /// A coarser tier of which the store holds nothing (a data dir written
    /// before tiers existed, or a tier added since) is rebuilt from the finer
    /// records, exactly as if they had been pushed; its rebuilt columns stay
    /// in the touched list, so the caller persists them. A tier's first
    /// stored record drops whatever was rebuilt into it from finer records
    /// that came earlier (the stored tier is authoritative, as when records
    /// came coarsest first): the result is the same for every order, and a
    /// store that yields coarser tiers first never rebuilds anything twice.
    pub(crate) fn restore_one(&mut self, state: &mut Restore, record: &ColumnRecord) {
        let k = self.tier_of(record.step_ms);
        if let Some(stored) = state.stored.get_mut(k)
            && !*stored
        {
            *stored = true;
            if std::mem::take(&mut state.rebuilt[k]) {
                self.clear_tier(k);
            }
        }
        // Rebuild the empty tiers coarser than this one from it.
        let mut targets = vec![k];
        targets.extend((k + 1..self.tiers.len()).filter(|&j| !state.stored[j]));
        for &j in &targets[1..] {
            state.rebuilt[j] = true;
        }
        let unix_ms = record.unix_ms;
        let cells = self.restore_cells(record, std::mem::take(&mut state.scratch));
        let before = self.touched.len();
        state.scratch = self.push_to(&targets, unix_ms, cells);
        // Columns that came from the store as they are need no rewrite.
        let mut i = before;
        while i < self.touched.len() {
            if self.touched[i].0 == k {
                self.touched.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Drops every column of tier `k` (their row references released) and
    /// forgets that they changed.
    fn clear_tier(&mut self, k: usize) {
        let Some(tier) = self.tiers.get_mut(k) else {
            return;
        };
        for column in std::mem::take(&mut tier.columns) {
            for &row in column.rows.iter() {
                self.catalog.release(row);
            }
        }
        self.touched.retain(|&(j, _)| j != k);
    }

    /// Files each record into the tier of its `step_ms` only (no coarser tier
    /// is rebuilt from it), as stored columns; nothing is left to persist.
    pub(crate) fn restore_exact(&mut self, records: Vec<ColumnRecord>) {
        for record in records {
            let k = self.tier_of(record.step_ms);
            let cells = self.restore_cells(&record, Vec::new());
            self.push_to(&[k], record.unix_ms, cells);
        }
        self.touched.clear();
    }

    /// A stored record's cells, rows interned (one reference each) and
    /// labels joined into their rows. Reads `record` without taking it: a row
    /// already interned (every row but those of the first column, in steady
    /// traffic) costs no allocation, and a label is copied only when it
    /// widens its row's, so restoring a record leaves no small temporaries
    /// behind; what is allocated is the hot-key summaries the column will
    /// pack (the cells go into `cells`, emptied first, whose capacity a
    /// restore reuses from record to record).
    fn restore_cells(
        &mut self,
        record: &ColumnRecord,
        mut cells: Vec<CellInput>,
    ) -> Vec<CellInput> {
        cells.clear();
        cells.reserve_exact(record.cells.len());
        for c in &record.cells {
            let id = RowRef {
                bucket_id: &c.bucket_id,
                start: &c.start,
                end: c.end.as_deref(),
                generation: 0,
            };
            let row = match self.catalog.find(id) {
                Some(row) => row,
                None => self.catalog.acquire(RowMeta {
                    bucket_id: c.bucket_id.as_str().into(),
                    start: c.start.clone(),
                    end: c.end.clone(),
                    aggregate: c.aggregate,
                    route_ids: c.route_ids.clone(),
                    route_count: c.route_count,
                    group: c.writes.first().map_or(0, |w| w.group),
                    generation: 0,
                    labels: None,
                }),
            };
            if let (Some(f), Some(l)) = (&c.first_key, &c.last_key)
                && f.len() <= MAX_HOT_KEY_BYTES
                && l.len() <= MAX_HOT_KEY_BYTES
            {
                self.catalog.note_label_refs(row, f, l);
            }
            let lanes: Lanes = c
                .writes
                .iter()
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
                .iter()
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
                    summary: h.summary.clone(),
                })
                .collect();
            cells.push(CellInput {
                row,
                reads_leader: c.reads_leader,
                reads_follower: c.reads_follower,
                read_bytes: c.read_bytes,
                lanes,
                hot,
                labels: None,
            });
        }
        cells
    }
}
