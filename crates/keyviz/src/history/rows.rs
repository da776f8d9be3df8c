//! Interned row metadata shared by every column that mentions the row.
//!
//! Columns store a `u32` per cell instead of a bucket id and two keys. Each row
//! is reference-counted: one reference per retained column that mentions it
//! and one per live slot that may emit it, so memory follows what is retained,
//! not everything ever seen.

use std::collections::HashMap;
use std::sync::Arc;

/// Metadata of one row (one bucket with one key range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowMeta {
    pub(crate) bucket_id: Arc<str>,
    pub(crate) start: Vec<u8>,
    pub(crate) end: Option<Vec<u8>>,
    pub(crate) aggregate: bool,
    /// Member routes, already capped at the listing limit.
    pub(crate) route_ids: Vec<u64>,
    /// All member routes, including unlisted ones.
    pub(crate) route_count: u64,
    /// Raft group of the route (0 for virtual buckets and unknown).
    pub(crate) group: u64,
    /// Creation order of the slot that emitted the row (0 = restored from a
    /// store). A rebuilt slot gets a new row even for an equal range, so
    /// metadata is never stale; a query shows rows of one bucket id and one
    /// range as one matrix row, named by the newest generation. Rows of one
    /// bucket id with different ranges are never joined (see `bucket`).
    pub(crate) generation: u64,
    /// Smallest and largest key label captured in the row, over its life:
    /// observations, not part of the row's identity (see `note_labels`).
    pub(crate) labels: Option<(Vec<u8>, Vec<u8>)>,
}

type RowKey = (Arc<str>, Vec<u8>, Option<Vec<u8>>, u64);

/// The interning table.
#[derive(Debug, Default)]
pub(crate) struct RowCatalog {
    rows: Vec<Option<RowMeta>>,
    refs: Vec<u32>,
    free: Vec<u32>,
    index: HashMap<RowKey, u32>,
}

impl RowCatalog {
    /// The id of `meta`, interned if new, with one more reference.
    pub(crate) fn acquire(&mut self, meta: RowMeta) -> u32 {
        let key: RowKey = (
            meta.bucket_id.clone(),
            meta.start.clone(),
            meta.end.clone(),
            meta.generation,
        );
        if let Some(&id) = self.index.get(&key) {
            self.refs[id as usize] += 1;
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.rows[id as usize] = Some(meta);
                self.refs[id as usize] = 1;
                id
            }
            None => {
                self.rows.push(Some(meta));
                self.refs.push(1);
                (self.rows.len() - 1) as u32
            }
        };
        self.index.insert(key, id);
        id
    }

    /// Joins captured key labels into a live row's (min first, max last).
    pub(crate) fn note_labels(&mut self, id: u32, labels: Option<(Vec<u8>, Vec<u8>)>) {
        if labels.is_none() {
            return;
        }
        if let Some(Some(meta)) = self.rows.get_mut(id as usize) {
            meta.labels = super::column::join_labels(meta.labels.take(), labels);
        }
    }

    /// One more reference to a live row.
    pub(crate) fn retain(&mut self, id: u32) {
        if let Some(r) = self.refs.get_mut(id as usize) {
            *r += 1;
        }
    }

    /// One reference fewer; the row is freed at zero.
    pub(crate) fn release(&mut self, id: u32) {
        let Some(r) = self.refs.get_mut(id as usize) else {
            return;
        };
        *r = r.saturating_sub(1);
        if *r == 0
            && let Some(meta) = self.rows[id as usize].take()
        {
            self.index
                .remove(&(meta.bucket_id, meta.start, meta.end, meta.generation));
            self.free.push(id);
        }
    }

    /// The metadata of a live row.
    pub(crate) fn get(&self, id: u32) -> Option<&RowMeta> {
        self.rows.get(id as usize).and_then(Option::as_ref)
    }

    /// One past the largest id ever handed out.
    pub(crate) fn capacity(&self) -> usize {
        self.rows.len()
    }

    /// Live rows.
    pub(crate) fn live(&self) -> usize {
        self.rows.len() - self.free.len()
    }

    /// Approximate heap bytes.
    pub(crate) fn heap_bytes(&self) -> usize {
        let metas: usize = self
            .rows
            .iter()
            .flatten()
            .map(|m| {
                // Row meta in the vec, its keys twice (meta and index key), ids.
                2 * (m.start.len() + m.end.as_ref().map_or(0, Vec::len) + m.bucket_id.len())
                    + m.route_ids.len() * 8
                    + m.labels.as_ref().map_or(0, |(f, l)| f.len() + l.len())
                    + 64
            })
            .sum();
        metas
            + self.rows.capacity() * std::mem::size_of::<Option<RowMeta>>()
            + self.refs.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str, start: &[u8]) -> RowMeta {
        RowMeta {
            bucket_id: id.into(),
            start: start.to_vec(),
            end: None,
            aggregate: false,
            route_ids: Vec::new(),
            route_count: 1,
            group: 0,
            generation: 0,
            labels: None,
        }
    }

    #[test]
    fn rows_are_shared_and_freed_when_the_last_reference_goes() {
        let mut c = RowCatalog::default();
        let a = c.acquire(meta("route:1", b"a"));
        assert_eq!(c.acquire(meta("route:1", b"a")), a);
        let b = c.acquire(meta("route:1", b"b"));
        assert_ne!(a, b, "a new range is a new row");
        c.release(a);
        assert!(c.get(a).is_some());
        c.release(a);
        assert!(c.get(a).is_none());
        assert_eq!(c.live(), 1);
        let again = c.acquire(meta("route:2", b"z"));
        assert_eq!(again, a, "freed ids are reused");
    }
}
