//! One step window of counts, stored sparsely and compactly.
//!
//! Only non-zero cells are kept. Each counter array is stored at the narrowest
//! integer width that holds its largest value in this column, so a typical
//! cell (row id, five counters, identity) costs 10–20 bytes instead of 56.
//! Hot-key summaries are kept beside the cells, for the few cells that have
//! them, with a per-column cap on listed keys, encoded in one byte array per
//! column ([`HotLayout`]) that queries decode cell by cell ([`HotCursor`]).
//! Write lanes beyond a cell's first are packed arrays too ([`ExtraLanes`]).

use crate::hotkeys::{HotItem, HotSummary};
use crate::matrix::Series;

/// A counter array at the narrowest width that fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Packed {
    /// Every value is zero.
    Zero,
    U8(Box<[u8]>),
    U16(Box<[u16]>),
    U32(Box<[u32]>),
    U64(Box<[u64]>),
}

impl Packed {
    /// The values `values` yields at the narrowest width that holds the
    /// largest (walked twice: once for the largest value, once to fill), so
    /// no `u64` copy of the values is allocated first: the array is the only
    /// allocation, at its exact size.
    pub(crate) fn pack_iter(values: impl Iterator<Item = u64> + Clone) -> Packed {
        let max = values.clone().max().unwrap_or(0);
        // The casts below cannot truncate: every value is <= max, which fits.
        if max == 0 {
            Packed::Zero
        } else if max <= u64::from(u8::MAX) {
            Packed::U8(values.map(|v| v as u8).collect())
        } else if max <= u64::from(u16::MAX) {
            Packed::U16(values.map(|v| v as u16).collect())
        } else if max <= u64::from(u32::MAX) {
            Packed::U32(values.map(|v| v as u32).collect())
        } else {
            Packed::U64(values.collect())
        }
    }

    #[inline]
    pub(crate) fn get(&self, i: usize) -> u64 {
        match self {
            Packed::Zero => 0,
            Packed::U8(v) => v.get(i).map_or(0, |x| u64::from(*x)),
            Packed::U16(v) => v.get(i).map_or(0, |x| u64::from(*x)),
            Packed::U32(v) => v.get(i).map_or(0, |x| u64::from(*x)),
            Packed::U64(v) => v.get(i).copied().unwrap_or(0),
        }
    }

    /// `out[i] += self[i]` for every cell; one loop per width, no per-cell match.
    pub(crate) fn add_into(&self, out: &mut [u64]) {
        fn add<T: Copy + Into<u64>>(src: &[T], out: &mut [u64]) {
            for (o, v) in out.iter_mut().zip(src) {
                *o = o.saturating_add((*v).into());
            }
        }
        match self {
            Packed::Zero => {}
            Packed::U8(v) => add(v, out),
            Packed::U16(v) => add(v, out),
            Packed::U32(v) => add(v, out),
            Packed::U64(v) => add(v, out),
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Packed::Zero => 0,
            Packed::U8(v) => v.len(),
            Packed::U16(v) => v.len() * 2,
            Packed::U32(v) => v.len() * 4,
            Packed::U64(v) => v.len() * 8,
        }
    }
}

/// Identified (group, term) write lanes one cell keeps; see [`Lanes::add`].
pub(crate) const MAX_CELL_LANES: usize = 16;

/// Writes of one (group, term) in one cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WriteLane {
    pub(crate) group: u64,
    pub(crate) term: u64,
    pub(crate) writes: u64,
    pub(crate) write_bytes: u64,
}

/// The write lanes of one cell, largest first; the first names the cell.
///
/// The first lane is stored inline: a cell with one leader term (nearly all of
/// them) costs no allocation when flushed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Lanes {
    first: Option<WriteLane>,
    rest: Vec<WriteLane>,
}

impl Lanes {
    /// Every lane, largest writes first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &WriteLane> {
        self.first.iter().chain(self.rest.iter())
    }

    /// The dominant lane.
    pub(crate) fn first(&self) -> Option<&WriteLane> {
        self.first.as_ref()
    }

    /// Adds `lane`, joining a lane of equal identity, keeping the order.
    ///
    /// A cell keeps at most [`MAX_CELL_LANES`] identified lanes; the writes of
    /// a further identity join the identity-less `(0, 0)` lane (counted, never
    /// dropped; the cluster merge then treats the cell as identity-less).
    pub(crate) fn add(&mut self, mut lane: WriteLane) {
        let identified = |l: &WriteLane| l.group != 0 || l.term != 0;
        let known = self
            .iter()
            .any(|l| l.group == lane.group && l.term == lane.term);
        if !known
            && identified(&lane)
            && self.iter().filter(|l| identified(l)).count() >= MAX_CELL_LANES
        {
            lane.group = 0;
            lane.term = 0;
        }
        let same = |l: &&mut WriteLane| l.group == lane.group && l.term == lane.term;
        if let Some(l) = self.first.iter_mut().chain(self.rest.iter_mut()).find(same) {
            l.writes = l.writes.saturating_add(lane.writes);
            l.write_bytes = l.write_bytes.saturating_add(lane.write_bytes);
        } else if self.first.is_none() {
            self.first = Some(lane);
            return;
        } else {
            self.rest.push(lane);
        }
        if !self.rest.is_empty() {
            let mut all: Vec<WriteLane> = self.iter().copied().collect();
            sort_lanes(&mut all);
            let mut all = all.into_iter();
            self.first = all.next();
            self.rest = all.collect();
        }
    }
}

impl FromIterator<WriteLane> for Lanes {
    fn from_iter<I: IntoIterator<Item = WriteLane>>(iter: I) -> Self {
        let mut lanes = Lanes::default();
        for lane in iter {
            lanes.add(lane);
        }
        lanes
    }
}

/// One cell before packing (and after unpacking).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CellInput {
    pub(crate) row: u32,
    pub(crate) reads_leader: u64,
    pub(crate) reads_follower: u64,
    pub(crate) read_bytes: u64,
    /// Non-empty lanes, largest writes first (the first is the cell's identity).
    pub(crate) lanes: Lanes,
    /// Hot-key summaries, at most one per (series, group, term); a series or
    /// lane without one was not captured (its keys are bounded by its total).
    pub(crate) hot: Vec<CellHot>,
    /// Smallest and largest captured key label of the window (not stored in
    /// the column: publish folds it into the row, see `RowMeta::labels`).
    pub(crate) labels: Option<(Vec<u8>, Vec<u8>)>,
}

/// The hot-key summary of one series (and, for writes, one (group, term)) of
/// one cell. Its `total` is at most the cell's exact count for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CellHot {
    pub(crate) series: Series,
    pub(crate) group: u64,
    pub(crate) term: u64,
    pub(crate) summary: HotSummary,
}

/// Keys a cell's summary keeps after a merge (as the capture's seal does).
pub(crate) const CELL_HOT_K: usize = 8;

/// Listed hot keys one column keeps per series, across all its cells: the
/// hottest by estimate; a dropped key's upper bound joins its summary's floor.
pub(crate) const MAX_COLUMN_HOT_ITEMS: usize = 128;

/// Listed hot keys a column of a coarser history tier keeps per series: a
/// coarse column summarises many windows, and 30 days of them at the finest
/// tier's cap would cost more than the counts (docs/PERFORMANCE.md).
pub(crate) const MAX_COARSE_COLUMN_HOT_ITEMS: usize = 32;

/// Joins the summaries of equal (series, group, term), trims each to
/// [`CELL_HOT_K`], and gives write summaries of an identity the lanes no
/// longer hold (past `MAX_CELL_LANES`) to the identity-less lane, as
/// [`Lanes::add`] does with the counts.
fn fold_hot(hot: &mut Vec<CellHot>, lanes: &Lanes) {
    for h in hot.iter_mut() {
        if h.series.is_write() && !lanes.iter().any(|l| (l.group, l.term) == (h.group, h.term)) {
            h.group = 0;
            h.term = 0;
        }
    }
    if hot.len() < 2 {
        return;
    }
    hot.sort_by_key(|h| (series_rank(h.series), h.group, h.term));
    let mut out: Vec<CellHot> = Vec::with_capacity(hot.len());
    for h in hot.drain(..) {
        match out.last_mut() {
            Some(last) if (last.series, last.group, last.term) == (h.series, h.group, h.term) => {
                last.summary.add_disjoint(&h.summary);
                last.summary.trim(CELL_HOT_K);
            }
            _ => out.push(h),
        }
    }
    *hot = out;
}

pub(super) fn series_rank(s: Series) -> u8 {
    match s {
        Series::Reads => 0,
        Series::ReadBytes => 1,
        Series::Writes => 2,
        Series::WriteBytes => 3,
        Series::LeaderReads => 4,
        Series::FollowerReads => 5,
    }
}

/// Keeps at most `cap` listed keys per series over
/// `hot` (cell index, summary): the hottest by estimate (ties: earlier cell),
/// the rest join their summary's floor; summaries left with no keys go.
fn cap_column_hot(hot: &mut Vec<(u32, CellHot)>, cap: usize) {
    for rank in 0..4u8 {
        let mut all: Vec<(u64, usize, usize)> = hot
            .iter()
            .enumerate()
            .filter(|(_, (_, h))| series_rank(h.series) == rank)
            .flat_map(|(e, (_, h))| {
                h.summary
                    .items
                    .iter()
                    .enumerate()
                    .map(move |(i, item)| (item.estimate, e, i))
            })
            .collect();
        if all.len() <= cap {
            continue;
        }
        all.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut keep: Vec<usize> = vec![0; hot.len()];
        for &(_, e, i) in &all[..cap] {
            // Items are sorted hottest first within a summary, so the kept
            // ones are a prefix: keep the longest prefix chosen.
            keep[e] = keep[e].max(i + 1);
        }
        for (e, (_, h)) in hot.iter_mut().enumerate() {
            if series_rank(h.series) == rank {
                h.summary.trim(keep[e]);
            }
        }
    }
    hot.retain(|(_, h)| !h.summary.items.is_empty());
}

impl CellInput {
    /// Adds `other` (same row) into `self`, joining lanes of equal identity
    /// and hot-key summaries of equal (series, identity); labels take the
    /// smaller first and the larger last key.
    pub(crate) fn absorb(&mut self, other: CellInput) {
        self.reads_leader = self.reads_leader.saturating_add(other.reads_leader);
        self.reads_follower = self.reads_follower.saturating_add(other.reads_follower);
        self.read_bytes = self.read_bytes.saturating_add(other.read_bytes);
        for lane in other.lanes.iter() {
            self.lanes.add(*lane);
        }
        self.labels = join_labels(self.labels.take(), other.labels);
        if !other.hot.is_empty() || !self.hot.is_empty() {
            self.hot.extend(other.hot);
            fold_hot(&mut self.hot, &self.lanes);
        }
    }
}

/// The smaller first and larger last label of two observations.
pub(crate) fn join_labels(
    a: Option<(Vec<u8>, Vec<u8>)>,
    b: Option<(Vec<u8>, Vec<u8>)>,
) -> Option<(Vec<u8>, Vec<u8>)> {
    match (a, b) {
        (Some((af, al)), Some((bf, bl))) => Some((af.min(bf), al.max(bl))),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Largest writes first; ties by larger term so the choice is deterministic.
pub(crate) fn sort_lanes(lanes: &mut [WriteLane]) {
    lanes.sort_by(|a, b| {
        (b.writes, b.write_bytes, b.term, b.group).cmp(&(a.writes, a.write_bytes, a.term, a.group))
    });
}

/// Write lanes of cells beyond each cell's first, as packed parallel arrays
/// sorted by cell: 6–10 B a lane instead of a 40-byte struct (in 30 days of
/// tiered history at one leader change every 6 h, 1.5 M coarse cells carry a
/// second lane; docs/PERFORMANCE.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtraLanes {
    /// Cell index of each lane, non-decreasing.
    cells: Packed,
    /// Index into the column's `identities` of each lane.
    identity: Packed,
    writes: Packed,
    write_bytes: Packed,
    len: usize,
}

impl ExtraLanes {
    /// Packs `(cell, identity index, writes, write bytes)`, sorted by cell.
    fn pack(lanes: &[(u64, u64, u64, u64)]) -> ExtraLanes {
        let field = |f: fn(&(u64, u64, u64, u64)) -> u64| Packed::pack_iter(lanes.iter().map(f));
        ExtraLanes {
            cells: field(|l| l.0),
            identity: field(|l| l.1),
            writes: field(|l| l.2),
            write_bytes: field(|l| l.3),
            len: lanes.len(),
        }
    }

    /// Number of lanes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Cell index of lane `k`.
    #[inline]
    pub(crate) fn cell(&self, k: usize) -> usize {
        self.cells.get(k) as usize
    }

    /// First lane of cell `i` or later (binary search).
    fn lower_bound(&self, i: usize) -> usize {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.cell(mid) < i {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn heap_bytes(&self) -> usize {
        self.cells.heap_bytes()
            + self.identity.heap_bytes()
            + self.writes.heap_bytes()
            + self.write_bytes.heap_bytes()
    }
}

/// A sealed column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) unix_ms: i64,
    /// Row id per cell, strictly increasing. Shared with a neighbouring
    /// column (of its tier) that has the same rows ([`Column::share_rows`]):
    /// with steady traffic every column names the same rows, and this array
    /// would otherwise be 4 B of every cell.
    pub(crate) rows: std::sync::Arc<[u32]>,
    reads_leader: Packed,
    reads_follower: Packed,
    read_bytes: Packed,
    /// Writes of each cell's first lane.
    writes: Packed,
    write_bytes: Packed,
    /// Index into `identities` of each cell's first lane.
    identity: Packed,
    identities: Box<[(u64, u64)]>,
    /// Lanes beyond the first, by cell.
    extra: ExtraLanes,
    /// Hot-key summaries by cell index (sorted by cell), capped per series at
    /// [`MAX_COLUMN_HOT_ITEMS`] listed keys.
    hot: HotStore,
}

/// How a column keeps its cells' hot-key summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HotLayout {
    /// As structs: only for tests that compare query results against the
    /// packed form.
    #[cfg(test)]
    Plain,
    /// Encoded in one byte array per column ([`encode_hot`]), in every tier:
    /// ≈ 25 B a listed key instead of ≈ 150 B as structs
    /// (docs/PERFORMANCE.md). Queries decode the summaries of the cells they
    /// read, one column at a time ([`HotCursor`]); nothing decoded outlives
    /// the query.
    Packed,
}

/// A column's hot-key summaries, by cell index, in one of the [`HotLayout`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HotStore {
    #[cfg(test)]
    Plain(Box<[(u32, CellHot)]>),
    Packed(Box<[u8]>),
}

#[cfg(test)]
fn plain_hot_bytes(hot: &[(u32, CellHot)]) -> usize {
    hot.iter()
        .map(|(_, h)| {
            std::mem::size_of::<(u32, CellHot)>()
                + h.summary
                    .items
                    .iter()
                    .map(|i| {
                        std::mem::size_of::<HotItem>()
                            + i.key.capacity().max(1).next_multiple_of(16)
                    })
                    .sum::<usize>()
        })
        .sum()
}

/// Appends `v` as a LEB128 varint (7 bits a byte, low first).
pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A cursor over bytes written by [`encode_hot`] (and by the stored-record
/// codec); `None` on any malformed input (never panics).
#[derive(Debug, Clone)]
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `bytes`.
    pub(super) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    /// Bytes not read yet.
    pub(super) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    #[inline]
    pub(super) fn varint(&mut self) -> Option<u64> {
        // Nearly every value of a summary fits one byte.
        let (&b, rest) = self.bytes.split_first()?;
        if b < 0x80 {
            self.bytes = rest;
            return Some(u64::from(b));
        }
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.bytes.split_first()?;
            self.bytes = rest;
            v |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    #[inline]
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    #[inline]
    pub(super) fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(b)
    }
}

/// Series ranks a packed column has a section for (every [`Series`]).
const HOT_SECTIONS: usize = 6;

pub(super) fn series_of_rank(rank: usize) -> Option<Series> {
    Some(match rank {
        0 => Series::Reads,
        1 => Series::ReadBytes,
        2 => Series::Writes,
        3 => Series::WriteBytes,
        4 => Series::LeaderReads,
        5 => Series::FollowerReads,
        _ => return None,
    })
}

/// Encodes `(cell, summary)` entries (sorted by cell, then series rank, group
/// and term, as [`Column::build_capped`] leaves them) as varints, one section
/// per series so a query decodes only its own: the byte length of each of
/// the [`HOT_SECTIONS`] sections, then the sections. Per entry of a section:
/// the cell's distance from the section's previous entry's cell, group,
/// term, total, floor, `sampled`, `unit_variance` and item count; per item
/// `key length · 2 + truncated`, the key, `upper`, `upper - estimate`,
/// `estimate - lower` and `seen`. No entries: no bytes. The destructuring
/// is exhaustive on purpose: a field added to [`HotSummary`] or [`HotItem`]
/// fails to compile here until it is encoded.
fn encode_hot(entries: &[(u32, CellHot)]) -> Box<[u8]> {
    if entries.is_empty() {
        return Box::default();
    }
    let mut sections: [Vec<u8>; HOT_SECTIONS] = Default::default();
    let mut prev = [0u32; HOT_SECTIONS];
    for (cell, h) in entries {
        let CellHot {
            series,
            group,
            term,
            summary,
        } = h;
        let HotSummary {
            total,
            floor,
            sampled,
            unit_variance,
            items,
        } = summary;
        let rank = usize::from(series_rank(*series));
        let out = &mut sections[rank];
        put_varint(out, u64::from(cell.saturating_sub(prev[rank])));
        prev[rank] = *cell;
        put_varint(out, *group);
        put_varint(out, *term);
        put_varint(out, *total);
        put_varint(out, *floor);
        out.push(u8::from(*sampled));
        put_varint(out, *unit_variance);
        put_varint(out, items.len() as u64);
        for item in items {
            let HotItem {
                key,
                estimate,
                lower,
                upper,
                truncated,
                seen,
            } = item;
            put_varint(out, ((key.len() as u64) << 1) | u64::from(*truncated));
            out.extend_from_slice(key);
            put_varint(out, *upper);
            put_varint(out, upper.saturating_sub(*estimate));
            put_varint(out, estimate.saturating_sub(*lower));
            put_varint(out, *seen);
        }
    }
    let mut out = Vec::with_capacity(sections.iter().map(|s| s.len() + 3).sum::<usize>());
    for s in &sections {
        put_varint(&mut out, s.len() as u64);
    }
    for s in &sections {
        out.extend_from_slice(s);
    }
    out.into_boxed_slice()
}

/// The bytes of section `rank` of [`encode_hot`]'s output (empty when
/// there are none or the header is malformed).
fn hot_section(bytes: &[u8], rank: usize) -> &[u8] {
    let mut r = Reader { bytes };
    let mut lens = [0usize; HOT_SECTIONS];
    for len in &mut lens {
        match r.varint().and_then(|n| usize::try_from(n).ok()) {
            Some(n) => *len = n,
            None => return &[],
        }
    }
    let Some(&len) = lens.get(rank) else {
        return &[];
    };
    let skip = lens[..rank]
        .iter()
        .fold(0usize, |a, &n| a.saturating_add(n));
    r.bytes
        .get(skip..)
        .and_then(|b| b.get(..len))
        .unwrap_or(&[])
}

/// The summaries of one series of one column, in cell order, decoded one
/// entry at a time: a query skips the entries of cells it does not select
/// without allocating, and owns what it decodes (nothing is cached in the
/// column). Malformed bytes (only a bug could produce them: they never
/// leave the process) end the walk early; never panics.
pub(crate) struct HotCursor<'a>(CursorInner<'a>);

enum CursorInner<'a> {
    Packed {
        r: Reader<'a>,
        /// Cell of the entry at the head, once its distance is read.
        head: Option<u32>,
        prev: u32,
    },
    #[cfg(test)]
    Plain {
        entries: &'a [(u32, CellHot)],
        series: Series,
    },
}

impl<'a> HotCursor<'a> {
    fn packed(section: &'a [u8]) -> HotCursor<'a> {
        HotCursor(CursorInner::Packed {
            r: Reader { bytes: section },
            head: None,
            prev: 0,
        })
    }

    /// The cell of the next entry, if any. O(1).
    #[inline]
    pub(crate) fn next_cell(&mut self) -> Option<u32> {
        match &mut self.0 {
            CursorInner::Packed { r, head, prev } => {
                if head.is_none() && !r.bytes.is_empty() {
                    let cell = r
                        .varint()
                        .and_then(|d| u32::try_from(d).ok())
                        .and_then(|d| prev.checked_add(d));
                    match cell {
                        Some(c) => *head = Some(c),
                        None => r.bytes = &[],
                    }
                }
                *head
            }
            #[cfg(test)]
            CursorInner::Plain { entries, series } => {
                while let Some(((_, h), rest)) = entries.split_first()
                    && h.series != *series
                {
                    *entries = rest;
                }
                entries.first().map(|(c, _)| *c)
            }
        }
    }

    /// Passes over the next entry without decoding its keys.
    pub(crate) fn skip(&mut self) {
        if self.next_cell().is_none() {
            return;
        }
        match &mut self.0 {
            CursorInner::Packed { r, head, prev } => {
                let mut pass = || -> Option<()> {
                    for _ in 0..4 {
                        r.varint()?; // group, term, total, floor
                    }
                    r.byte()?;
                    r.varint()?;
                    let count = r.varint()?;
                    for _ in 0..count {
                        let len = usize::try_from(r.varint()? >> 1).ok()?;
                        r.take(len)?;
                        for _ in 0..4 {
                            r.varint()?;
                        }
                    }
                    Some(())
                };
                if pass().is_none() {
                    r.bytes = &[];
                }
                if let Some(c) = head.take() {
                    *prev = c;
                }
            }
            #[cfg(test)]
            CursorInner::Plain { entries, .. } => *entries = &entries[1..],
        }
    }

    /// Decodes the next entry: `(group, term, summary)`.
    pub(crate) fn take(&mut self) -> Option<(u64, u64, HotSummary)> {
        self.next_cell()?;
        match &mut self.0 {
            CursorInner::Packed { r, head, prev } => {
                if let Some(c) = head.take() {
                    *prev = c;
                }
                let got = decode_entry(r);
                if got.is_none() {
                    r.bytes = &[];
                }
                got
            }
            #[cfg(test)]
            CursorInner::Plain { entries, .. } => {
                let (_, h) = entries.first()?;
                *entries = &entries[1..];
                Some((h.group, h.term, h.summary.clone()))
            }
        }
    }
}

/// One entry of a section, after its cell distance.
fn decode_entry(r: &mut Reader<'_>) -> Option<(u64, u64, HotSummary)> {
    let group = r.varint()?;
    let term = r.varint()?;
    let total = r.varint()?;
    let floor = r.varint()?;
    let sampled = r.byte()? != 0;
    let unit_variance = r.varint()?;
    let count = usize::try_from(r.varint()?).ok()?;
    let mut items = Vec::with_capacity(count.min(r.bytes.len()));
    for _ in 0..count {
        let head = r.varint()?;
        let len = usize::try_from(head >> 1).ok()?;
        let key = r.take(len)?.to_vec();
        let upper = r.varint()?;
        let estimate = upper.checked_sub(r.varint()?)?;
        let lower = estimate.checked_sub(r.varint()?)?;
        let seen = r.varint()?;
        items.push(HotItem {
            key,
            estimate,
            lower,
            upper,
            truncated: head & 1 != 0,
            seen,
        });
    }
    Some((
        group,
        term,
        HotSummary {
            total,
            floor,
            sampled,
            unit_variance,
            items,
        },
    ))
}

/// Decodes every section of [`encode_hot`]'s bytes back into entries sorted
/// as they were encoded (by cell, then series rank); a malformed section
/// stops at its first bad entry.
fn decode_hot(bytes: &[u8]) -> Vec<(u32, CellHot)> {
    let mut out = Vec::new();
    for rank in 0..HOT_SECTIONS {
        let Some(series) = series_of_rank(rank) else {
            continue;
        };
        let mut cursor = HotCursor::packed(hot_section(bytes, rank));
        while let Some(cell) = cursor.next_cell() {
            let Some((group, term, summary)) = cursor.take() else {
                break;
            };
            out.push((
                cell,
                CellHot {
                    series,
                    group,
                    term,
                    summary,
                },
            ));
        }
    }
    // Stable: within a cell, entries stay in series-rank order.
    out.sort_by_key(|(cell, _)| *cell);
    out
}

/// The counter a query reads from a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    ReadsLeader,
    ReadsFollower,
    Reads,
    ReadBytes,
    Writes,
    WriteBytes,
}

impl Column {
    /// Seals `cells` (any order; rows must be distinct) into a column that
    /// lists at most [`MAX_COLUMN_HOT_ITEMS`] hot keys per series.
    #[cfg(test)]
    pub(crate) fn build(unix_ms: i64, cells: Vec<CellInput>) -> Column {
        let mut cells = cells;
        Column::build_capped(
            unix_ms,
            &mut cells,
            MAX_COLUMN_HOT_ITEMS,
            HotLayout::Packed,
            None,
        )
    }

    /// [`Column::build`] listing at most `hot_cap` hot keys per series (the
    /// rest join their summaries' floors, so bounds stay honest), keeping the
    /// summaries in `layout`. Leaves `cells` empty with its capacity, for the
    /// caller to fill again (a restore builds every column in one vector).
    /// `like` is a neighbouring column's row array: when the cells name the
    /// same rows, the column shares it instead of allocating its own.
    ///
    /// Allocation order is chosen for the heap: the hot-key summaries (many
    /// small allocations) are encoded and freed before the column's long-lived
    /// arrays are allocated, and a shared row array is never allocated at
    /// all, so building a column leaves no short-lived block between the
    /// arrays that stay (docs/PERFORMANCE.md, round rss).
    pub(crate) fn build_capped(
        unix_ms: i64,
        cells: &mut Vec<CellInput>,
        hot_cap: usize,
        layout: HotLayout,
        like: Option<&std::sync::Arc<[u32]>>,
    ) -> Column {
        cells.sort_unstable_by_key(|c| c.row);
        let mut hot: Vec<(u32, CellHot)> = Vec::new();
        for (i, cell) in cells.iter_mut().enumerate() {
            if !cell.hot.is_empty() {
                fold_hot(&mut cell.hot, &cell.lanes);
                hot.extend(
                    std::mem::take(&mut cell.hot)
                        .into_iter()
                        .map(|h| (i as u32, h)),
                );
            }
        }
        cap_column_hot(&mut hot, hot_cap);
        let hot = match layout {
            #[cfg(test)]
            HotLayout::Plain => HotStore::Plain(hot.into()),
            HotLayout::Packed => HotStore::Packed(encode_hot(&hot)),
        };
        let rows = match like {
            Some(rows) if rows.iter().copied().eq(cells.iter().map(|c| c.row)) => rows.clone(),
            _ => cells.iter().map(|c| c.row).collect(),
        };
        let mut identities: Vec<(u64, u64)> = vec![(0, 0)];
        let mut identity_index: rustc_hash::FxHashMap<(u64, u64), usize> =
            rustc_hash::FxHashMap::default();
        identity_index.insert((0, 0), 0);
        // The lanes beyond each cell's first are the only temporary besides
        // the packed arrays, which are built straight from `cells` (the
        // identity of a cell's first lane is looked up again to pack it).
        let mut extra = Vec::new();
        let first_lane = |c: &CellInput| c.lanes.first().copied().unwrap_or_default();
        for (i, cell) in cells.iter().enumerate() {
            let first = first_lane(cell);
            let key = (first.group, first.term);
            identity_index.entry(key).or_insert_with(|| {
                identities.push(key);
                identities.len() - 1
            });
            for lane in cell.lanes.iter().skip(1) {
                let key = (lane.group, lane.term);
                let idx = *identity_index.entry(key).or_insert_with(|| {
                    identities.push(key);
                    identities.len() - 1
                });
                extra.push((i as u64, idx as u64, lane.writes, lane.write_bytes));
            }
        }
        let pack = |f: fn(&CellInput) -> u64| Packed::pack_iter(cells.iter().map(f));
        let identity = Packed::pack_iter(cells.iter().map(|c| {
            let first = first_lane(c);
            // Every first lane's identity was entered above.
            identity_index
                .get(&(first.group, first.term))
                .map_or(0, |&i| i as u64)
        }));
        let column = Column {
            unix_ms,
            reads_leader: pack(|c| c.reads_leader),
            reads_follower: pack(|c| c.reads_follower),
            read_bytes: pack(|c| c.read_bytes),
            rows,
            writes: Packed::pack_iter(cells.iter().map(|c| first_lane(c).writes)),
            write_bytes: Packed::pack_iter(cells.iter().map(|c| first_lane(c).write_bytes)),
            identity,
            identities: identities.into(),
            extra: ExtraLanes::pack(&extra),
            hot,
        };
        cells.clear();
        column
    }

    /// Takes `rows` (a neighbour's row array) when it names the same rows as
    /// this column's, so both share one allocation. O(cells).
    pub(crate) fn share_rows_with(&mut self, rows: std::sync::Arc<[u32]>) {
        if !std::sync::Arc::ptr_eq(&self.rows, &rows) && self.rows[..] == rows[..] {
            self.rows = rows;
        }
    }

    /// The hot-key summaries of `series`, in cell order, decoded one entry
    /// at a time as the caller walks it alongside the cells (a merge join:
    /// both are in cell order). Decodes nothing up front and keeps nothing:
    /// what [`HotCursor::take`] returns is the caller's. O(1) to open.
    pub(crate) fn hot_cursor(&self, series: Series) -> HotCursor<'_> {
        match &self.hot {
            HotStore::Packed(b) => {
                HotCursor::packed(hot_section(b, usize::from(series_rank(series))))
            }
            #[cfg(test)]
            HotStore::Plain(h) => HotCursor(CursorInner::Plain { entries: h, series }),
        }
    }

    /// Every cell's hot-key summaries, decoded, ordered by cell index and
    /// series rank.
    fn hot_entries(&self) -> Vec<(u32, CellHot)> {
        match &self.hot {
            HotStore::Packed(b) => decode_hot(b),
            #[cfg(test)]
            HotStore::Plain(h) => h.to_vec(),
        }
    }

    /// Calls `f(group, term, writes, write_bytes)` for every write lane of
    /// cell `i` (the dominant one first). Allocation-free.
    pub(crate) fn for_each_lane(&self, i: usize, f: impl FnMut(u64, u64, u64, u64)) {
        self.for_each_lane_at(i, self.extra.lower_bound(i), f);
    }

    /// Calls `f(group, term, writes, write_bytes)` for the lanes beyond the
    /// first of cell `i`, starting at extra lane `k` (as found by
    /// [`Column::extra_lanes_of`]); returns the index past them.
    #[inline]
    pub(crate) fn for_each_extra_lane_at(
        &self,
        i: usize,
        mut k: usize,
        mut f: impl FnMut(u64, u64, u64, u64),
    ) -> usize {
        let e = &self.extra;
        while k < e.len() && e.cell(k) == i {
            let (g, t) = self
                .identities
                .get(e.identity.get(k) as usize)
                .copied()
                .unwrap_or((0, 0));
            f(g, t, e.writes.get(k), e.write_bytes.get(k));
            k += 1;
        }
        k
    }

    /// For a caller visiting cells in increasing order with cursor `k` (start
    /// at 0): moves `k` to the first extra lane of cell `i` or later and says
    /// whether cell `i` has lanes beyond its first. Amortised O(1).
    #[inline]
    pub(crate) fn extra_lanes_of(&self, i: usize, k: &mut usize) -> bool {
        let e = &self.extra;
        while *k < e.len() && e.cell(*k) < i {
            *k += 1;
        }
        *k < e.len() && e.cell(*k) == i
    }

    /// True when some cell has more than one write lane.
    #[inline]
    pub(crate) fn has_extra_lanes(&self) -> bool {
        self.extra.len() != 0
    }

    /// Reads (leader plus follower) and read bytes of cell `i`.
    pub(crate) fn reads_of(&self, i: usize) -> (u64, u64) {
        (
            self.reads_leader
                .get(i)
                .saturating_add(self.reads_follower.get(i)),
            self.read_bytes.get(i),
        )
    }

    /// The cells back, as built (lanes sorted).
    pub(crate) fn cells(&self) -> Vec<CellInput> {
        let mut hot = self.hot_entries().into_iter().peekable();
        let mut cells: Vec<CellInput> = (0..self.rows.len())
            .map(|i| {
                let (group, term) = self.identity_of(i);
                let writes = self.writes.get(i);
                let write_bytes = self.write_bytes.get(i);
                CellInput {
                    row: self.rows[i],
                    reads_leader: self.reads_leader.get(i),
                    reads_follower: self.reads_follower.get(i),
                    read_bytes: self.read_bytes.get(i),
                    hot: std::iter::from_fn(|| hot.next_if(|(c, _)| *c as usize == i))
                        .map(|(_, h)| h)
                        .collect(),
                    labels: None,
                    lanes: if writes == 0 && write_bytes == 0 && group == 0 && term == 0 {
                        Lanes::default()
                    } else {
                        std::iter::once(WriteLane {
                            group,
                            term,
                            writes,
                            write_bytes,
                        })
                        .collect()
                    },
                }
            })
            .collect();
        let mut k = 0;
        for (i, c) in cells.iter_mut().enumerate() {
            if self.extra_lanes_of(i, &mut k) {
                k = self.for_each_extra_lane_at(i, k, |group, term, writes, write_bytes| {
                    c.lanes.add(WriteLane {
                        group,
                        term,
                        writes,
                        write_bytes,
                    });
                });
            }
        }
        cells
    }

    /// (group, term) of cell `i`'s dominant write lane.
    #[inline]
    pub(crate) fn identity_of(&self, i: usize) -> (u64, u64) {
        let idx = self.identity.get(i) as usize;
        self.identities.get(idx).copied().unwrap_or((0, 0))
    }

    /// Fills `out` with one value of `counter` per cell.
    pub(crate) fn values_into(&self, counter: Counter, out: &mut Vec<u64>) {
        out.clear();
        out.resize(self.rows.len(), 0);
        self.add_values_into(counter, out);
    }

    /// `out[i] += ` the value of `counter` of cell `i` (saturating), for the
    /// first `out.len()` cells: a run of columns sharing one row array sums
    /// into one vector.
    pub(crate) fn add_values_into(&self, counter: Counter, out: &mut [u64]) {
        match counter {
            Counter::ReadsLeader => self.reads_leader.add_into(out),
            Counter::ReadsFollower => self.reads_follower.add_into(out),
            Counter::Reads => {
                self.reads_leader.add_into(out);
                self.reads_follower.add_into(out);
            }
            Counter::ReadBytes => self.read_bytes.add_into(out),
            Counter::Writes | Counter::WriteBytes => {
                let bytes = counter == Counter::WriteBytes;
                if bytes {
                    self.write_bytes.add_into(out);
                } else {
                    self.writes.add_into(out);
                }
                let e = &self.extra;
                let src = if bytes { &e.write_bytes } else { &e.writes };
                for k in 0..e.len() {
                    if let Some(o) = out.get_mut(e.cell(k)) {
                        *o = o.saturating_add(src.get(k));
                    }
                }
            }
        }
    }

    /// The distinct (group, term) identities of the column's lanes; see
    /// [`Column::identity_indices_into`].
    pub(crate) fn identities(&self) -> &[(u64, u64)] {
        &self.identities
    }

    /// Fills `out` with the index into [`Column::identities`] of each cell's
    /// dominant lane.
    pub(crate) fn identity_indices_into(&self, out: &mut Vec<u64>) {
        out.clear();
        out.resize(self.rows.len(), 0);
        self.identity.add_into(out);
    }

    /// Calls `f(group, term, writes, write_bytes)` for every non-empty write
    /// lane of cell `i` (the dominant one first), with `k` the cursor of
    /// [`Column::extra_lanes_of`] for `i`. Allocation-free, O(lanes).
    #[inline]
    pub(crate) fn for_each_lane_at(
        &self,
        i: usize,
        k: usize,
        mut f: impl FnMut(u64, u64, u64, u64),
    ) {
        let (writes, write_bytes) = (self.writes.get(i), self.write_bytes.get(i));
        if writes != 0 || write_bytes != 0 {
            let (group, term) = self.identity_of(i);
            f(group, term, writes, write_bytes);
        }
        self.for_each_extra_lane_at(i, k, f);
    }

    /// Approximate heap bytes of the column.
    pub(crate) fn heap_bytes(&self) -> usize {
        // A shared row array is counted once over its holders.
        self.rows.len() * 4 / std::sync::Arc::strong_count(&self.rows).max(1)
            + self.reads_leader.heap_bytes()
            + self.reads_follower.heap_bytes()
            + self.read_bytes.heap_bytes()
            + self.writes.heap_bytes()
            + self.write_bytes.heap_bytes()
            + self.identity.heap_bytes()
            + self.identities.len() * 16
            + self.extra.heap_bytes()
            + self.hot_heap_bytes()
    }

    /// Heap bytes of the hot-key summaries (a packed column's byte array).
    pub(crate) fn hot_heap_bytes(&self) -> usize {
        match &self.hot {
            HotStore::Packed(b) => b.len(),
            #[cfg(test)]
            HotStore::Plain(hot) => plain_hot_bytes(hot),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(group: u64, term: u64, writes: u64) -> WriteLane {
        WriteLane {
            group,
            term,
            writes,
            write_bytes: writes * 10,
        }
    }

    #[test]
    fn lanes_past_the_cap_join_the_identity_less_lane_and_keep_totals() {
        let lanes: Lanes = (1..=MAX_CELL_LANES as u64 + 3)
            .map(|t| lane(7, t, 1))
            .collect();
        let identified = lanes.iter().filter(|l| l.term != 0).count();
        assert_eq!(identified, MAX_CELL_LANES);
        let anonymous: Vec<_> = lanes.iter().filter(|l| l.term == 0).collect();
        assert_eq!(anonymous.len(), 1);
        assert_eq!(anonymous[0].writes, 3);
        assert_eq!(
            lanes.iter().map(|l| l.writes).sum::<u64>(),
            MAX_CELL_LANES as u64 + 3
        );
    }

    #[test]
    fn packing_picks_the_narrowest_width_and_round_trips() {
        assert_eq!(Packed::pack_iter([0, 0].into_iter()), Packed::Zero);
        assert!(matches!(
            Packed::pack_iter([1, 255].into_iter()),
            Packed::U8(_)
        ));
        assert!(matches!(
            Packed::pack_iter([256].into_iter()),
            Packed::U16(_)
        ));
        assert!(matches!(
            Packed::pack_iter([u64::MAX].into_iter()),
            Packed::U64(_)
        ));
        assert_eq!(Packed::pack_iter([3, 70_000].into_iter()).get(1), 70_000);
    }

    #[test]
    fn column_round_trips_cells_with_several_terms() {
        let cells = vec![
            CellInput {
                row: 9,
                reads_leader: 1,
                reads_follower: 2,
                read_bytes: 30,
                lanes: [lane(7, 43, 50), lane(7, 42, 30)].into_iter().collect(),
                ..CellInput::default()
            },
            CellInput {
                row: 3,
                reads_leader: 5,
                ..CellInput::default()
            },
        ];
        let col = Column::build(60_000, cells.clone());
        let mut back = col.cells();
        back.sort_by_key(|c| std::cmp::Reverse(c.row));
        assert_eq!(back, cells);
        let mut out = Vec::new();
        col.values_into(Counter::Writes, &mut out);
        assert_eq!(out, vec![0, 80], "writes sum every term of a cell");
        col.values_into(Counter::Reads, &mut out);
        assert_eq!(out, vec![5, 3]);
        assert_eq!(col.identity_of(1), (7, 43), "identity is the dominant lane");
    }

    #[test]
    fn a_column_shares_its_neighbours_row_array_only_when_the_rows_are_equal() {
        let cells = |rows: &[u32]| -> Vec<CellInput> {
            rows.iter()
                .map(|&row| CellInput {
                    row,
                    reads_leader: 1,
                    ..CellInput::default()
                })
                .collect()
        };
        let neighbour = Column::build(0, cells(&[1, 2, 3]));
        let like = Some(&neighbour.rows);
        let mut same = cells(&[3, 1, 2]);
        let shared = Column::build_capped(60_000, &mut same, 8, HotLayout::Packed, like);
        assert!(std::sync::Arc::ptr_eq(&shared.rows, &neighbour.rows));
        assert!(
            same.is_empty() && same.capacity() >= 3,
            "cells come back empty, capacity kept"
        );
        let mut other = cells(&[1, 2, 4]);
        let own = Column::build_capped(60_000, &mut other, 8, HotLayout::Packed, like);
        assert!(!std::sync::Arc::ptr_eq(&own.rows, &neighbour.rows));
        assert_eq!(&own.rows[..], &[1, 2, 4]);
        let mut fewer = cells(&[1, 2]);
        let own = Column::build_capped(60_000, &mut fewer, 8, HotLayout::Packed, like);
        assert_eq!(&own.rows[..], &[1, 2]);
    }

    #[test]
    fn cursor_walk_over_extra_lanes_sees_every_lane_of_every_cell() {
        let cells: Vec<CellInput> = (0..5u32)
            .map(|r| CellInput {
                row: r,
                lanes: (0..u64::from(r % 3) + 1)
                    .map(|t| lane(1 + u64::from(r), 40 + t, 100 - t))
                    .collect(),
                ..CellInput::default()
            })
            .collect();
        let col = Column::build(0, cells.clone());
        let mut k = 0;
        for (i, cell) in cells.iter().enumerate() {
            let mut direct = Vec::new();
            col.for_each_lane(i, |g, t, w, wb| direct.push((g, t, w, wb)));
            let has_extra = col.extra_lanes_of(i, &mut k);
            assert_eq!(has_extra, cell.lanes.iter().count() > 1, "cell {i}");
            let mut walked = Vec::new();
            col.for_each_lane_at(i, k, |g, t, w, wb| walked.push((g, t, w, wb)));
            assert_eq!(walked, direct, "cell {i}");
            let expected: Vec<_> = cell
                .lanes
                .iter()
                .map(|l| (l.group, l.term, l.writes, l.write_bytes))
                .collect();
            assert_eq!(direct, expected, "cell {i}");
        }
        assert_eq!(col.cells(), cells, "packed extra lanes round-trip");
    }

    fn hot(series: Series, term: u64, keys: &[(&[u8], u64)]) -> CellHot {
        let total = keys.iter().map(|k| k.1).sum::<u64>() + 5;
        CellHot {
            series,
            group: u64::from(term != 0) * 7,
            term,
            summary: HotSummary {
                total,
                floor: 3,
                sampled: term % 2 == 1,
                unit_variance: (term % 2) * 63,
                items: keys
                    .iter()
                    .map(|&(key, n)| HotItem {
                        key: key.to_vec(),
                        estimate: n,
                        lower: n - 1,
                        upper: n + 2,
                        truncated: key.len() > 3,
                        seen: n / 2,
                    })
                    .collect(),
            },
        }
    }

    /// `(cell, group, term, summary)` of every entry of `series` a cursor
    /// yields, skipping the cells for which `skip` says so.
    fn walk(
        col: &Column,
        series: Series,
        skip: impl Fn(u32) -> bool,
    ) -> Vec<(u32, u64, u64, HotSummary)> {
        let mut cursor = col.hot_cursor(series);
        let mut out = Vec::new();
        while let Some(cell) = cursor.next_cell() {
            if skip(cell) {
                cursor.skip();
                continue;
            }
            let (g, t, h) = cursor.take().expect("well-formed entry");
            out.push((cell, g, t, h));
        }
        out
    }

    fn hot_cells() -> Vec<CellInput> {
        (0..40u32)
            .map(|r| CellInput {
                row: r * 3,
                reads_leader: 100,
                lanes: [lane(7, 41, 50), lane(7, 42, 30)].into_iter().collect(),
                hot: match r % 4 {
                    // Some cells have no summary at all, some one series only.
                    0 => Vec::new(),
                    1 => vec![hot(Series::WriteBytes, 42, &[(b"wb", 7)])],
                    _ => vec![
                        hot(Series::Reads, 0, &[(b"k", 60), (b"long-key", 20)]),
                        hot(Series::Writes, 41, &[(&r.to_be_bytes(), 40)]),
                        hot(Series::Writes, 42, &[(b"", u64::MAX - 9)]),
                        hot(Series::ReadBytes, 0, &[(&[0xff; 40][..], 1 << 40)]),
                    ],
                },
                ..CellInput::default()
            })
            .collect()
    }

    #[test]
    fn packed_hot_summaries_read_back_as_built_and_cost_less() {
        let cells = hot_cells();
        let plain = Column::build_capped(0, &mut cells.clone(), 1_000, HotLayout::Plain, None);
        let packed = Column::build_capped(0, &mut cells.clone(), 1_000, HotLayout::Packed, None);
        assert!(packed.hot_heap_bytes() * 3 < plain.hot_heap_bytes());
        assert_eq!(packed.cells(), plain.cells(), "records are layout-free");
        assert_eq!(packed.hot_entries(), plain.hot_entries());
        for series in Series::ALL {
            let all = walk(&plain, series, |_| false);
            assert_eq!(walk(&packed, series, |_| false), all, "{series}");
            // Skipping entries (cells a query does not select) leaves the
            // cursor on the next entry, as decoding them would.
            let odd = |c: u32| c % 2 == 1;
            let some: Vec<_> = all.iter().filter(|e| !odd(e.0)).cloned().collect();
            assert_eq!(walk(&packed, series, odd), some, "{series}, skipping");
        }
        assert_eq!(walk(&packed, Series::Reads, |_| false).len(), 20);
        assert_eq!(walk(&packed, Series::Writes, |_| false).len(), 40);
        assert!(walk(&packed, Series::LeaderReads, |_| false).is_empty());
        let empty = Column::build(
            0,
            vec![CellInput {
                row: 1,
                ..CellInput::default()
            }],
        );
        assert_eq!(empty.hot_heap_bytes(), 0, "no summaries, no bytes");
        assert!(walk(&empty, Series::Reads, |_| false).is_empty());
    }

    #[test]
    fn decoding_cut_or_damaged_hot_bytes_stops_without_panicking() {
        let entries = vec![
            (1, hot(Series::Reads, 0, &[(b"a", 9)])),
            (2, hot(Series::WriteBytes, 5, &[(b"bcde", 4)])),
            (2, hot(Series::Writes, 5, &[(b"bcde", 4), (b"f", 2)])),
            (9, hot(Series::Reads, 0, &[(b"gh", 300)])),
        ];
        let mut sorted = entries.clone();
        sorted.sort_by_key(|(c, h)| (*c, series_rank(h.series)));
        let bytes = encode_hot(&sorted);
        assert_eq!(decode_hot(&bytes), sorted);
        for cut in 0..bytes.len() {
            let got = decode_hot(&bytes[..cut]);
            assert!(got.len() < sorted.len(), "cut at {cut}");
            assert!(got.iter().all(|e| sorted.contains(e)), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = bytes.to_vec();
                bad[at] ^= flip;
                let _ = decode_hot(&bad);
                let section = hot_section(&bad, 0);
                let mut cursor = HotCursor::packed(section);
                let mut steps = 0;
                while cursor.next_cell().is_some() {
                    cursor.skip();
                    steps += 1;
                }
                assert!(steps <= section.len(), "every step consumes bytes");
            }
        }
    }
}
