//! Interned row metadata shared by every column that mentions the row.
//!
//! Columns store a `u32` per cell instead of a bucket id and two keys. Each row
//! is reference-counted: one reference per retained column that mentions it
//! and one per live slot that may emit it, so memory follows what is retained,
//! not everything ever seen.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
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

/// What identifies a row in the index: bucket id, range and generation.
/// Owned keys ([`RowKey`]) and borrowed ones ([`RowRef`]) hash and compare
/// alike, so a lookup needs no allocation.
trait RowIdentity {
    fn parts(&self) -> (&str, &[u8], Option<&[u8]>, u64);
}

/// The index's own copy of a row's identity.
#[derive(Debug)]
struct RowKey {
    bucket_id: Arc<str>,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    generation: u64,
}

impl RowIdentity for RowKey {
    fn parts(&self) -> (&str, &[u8], Option<&[u8]>, u64) {
        (
            &self.bucket_id,
            &self.start,
            self.end.as_deref(),
            self.generation,
        )
    }
}

/// A row's identity borrowed from a stored record (restore looks rows up
/// with it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowRef<'a> {
    pub(crate) bucket_id: &'a str,
    pub(crate) start: &'a [u8],
    pub(crate) end: Option<&'a [u8]>,
    pub(crate) generation: u64,
}

impl RowIdentity for RowRef<'_> {
    fn parts(&self) -> (&str, &[u8], Option<&[u8]>, u64) {
        (self.bucket_id, self.start, self.end, self.generation)
    }
}

impl Hash for dyn RowIdentity + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn RowIdentity + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn RowIdentity + '_ {}

impl Hash for RowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn RowIdentity).hash(state);
    }
}

impl PartialEq for RowKey {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for RowKey {}

impl<'a> Borrow<dyn RowIdentity + 'a> for RowKey {
    fn borrow(&self) -> &(dyn RowIdentity + 'a) {
        self
    }
}

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
        let id = RowRef {
            bucket_id: &meta.bucket_id,
            start: &meta.start,
            end: meta.end.as_deref(),
            generation: meta.generation,
        };
        if let Some(found) = self.find(id) {
            return found;
        }
        self.intern(meta)
    }

    /// The id of the row `id` names, with one more reference, when it is
    /// interned; `None` (nothing changed) otherwise. Allocation-free.
    pub(crate) fn find(&mut self, id: RowRef<'_>) -> Option<u32> {
        let &found = self.index.get(&id as &dyn RowIdentity)?;
        self.refs[found as usize] += 1;
        Some(found)
    }

    /// Interns `meta`, which must not be interned yet, with one reference.
    fn intern(&mut self, meta: RowMeta) -> u32 {
        let key = RowKey {
            bucket_id: meta.bucket_id.clone(),
            start: meta.start.clone(),
            end: meta.end.clone(),
            generation: meta.generation,
        };
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

    /// Joins the captured key labels `first`..`last` into a live row's, as
    /// [`note_labels`](RowCatalog::note_labels) does, copying a label only
    /// when it widens the row's.
    pub(crate) fn note_label_refs(&mut self, id: u32, first: &[u8], last: &[u8]) {
        let Some(Some(meta)) = self.rows.get_mut(id as usize) else {
            return;
        };
        match &mut meta.labels {
            Some((f, l)) => {
                if first < f.as_slice() {
                    f.clear();
                    f.extend_from_slice(first);
                }
                if last > l.as_slice() {
                    l.clear();
                    l.extend_from_slice(last);
                }
            }
            None => meta.labels = Some((first.to_vec(), last.to_vec())),
        }
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
            let key = RowRef {
                bucket_id: &meta.bucket_id,
                start: &meta.start,
                end: meta.end.as_deref(),
                generation: meta.generation,
            };
            self.index.remove(&key as &dyn RowIdentity);
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

    #[test]
    fn a_borrowed_lookup_finds_an_interned_row_and_takes_a_reference() {
        let mut c = RowCatalog::default();
        let a = c.acquire(meta("route:1", b"a"));
        let id = |start: &'static [u8]| RowRef {
            bucket_id: "route:1",
            start,
            end: None,
            generation: 0,
        };
        assert_eq!(c.find(id(b"a")), Some(a));
        assert_eq!(c.find(id(b"b")), None, "another range is another row");
        assert_eq!(
            c.find(RowRef {
                generation: 1,
                ..id(b"a")
            }),
            None,
            "another generation is another row"
        );
        // acquire + find: two references; the row stays until both go.
        c.release(a);
        assert!(c.get(a).is_some());
        c.release(a);
        assert!(c.get(a).is_none());
        assert_eq!(c.find(id(b"a")), None, "a freed row is out of the index");
    }

    #[test]
    fn borrowed_labels_only_widen_a_rows_labels() {
        let mut c = RowCatalog::default();
        let a = c.acquire(meta("route:1", b"a"));
        c.note_label_refs(a, b"k5", b"k7");
        c.note_label_refs(a, b"k6", b"k6");
        assert_eq!(
            c.get(a).and_then(|m| m.labels.clone()),
            Some((b"k5".to_vec(), b"k7".to_vec()))
        );
        c.note_label_refs(a, b"k1", b"k9");
        assert_eq!(
            c.get(a).and_then(|m| m.labels.clone()),
            Some((b"k1".to_vec(), b"k9".to_vec()))
        );
    }
}
