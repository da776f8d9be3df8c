//! Write counts as a deterministic function of the committed log.
//!
//! Every replica's state machine observes each applied, non-duplicate write with the entry's
//! (group, term) and proposer timestamp, so any surviving replica's count is authoritative
//! (the cluster merge takes the max per (group, term)). For a node that is the only survivor,
//! each flushed KeyViz column also records per group the last applied log index whose
//! observations it covers (the *watermark*), in the same fjall batch as the column; at
//! start-up the node re-observes the log entries in (watermark, applied] that a crash lost.
//!
//! [`CountFence`] makes "observed" and "covered by the watermark" agree: apply observes a batch
//! of entries and advances its group's watermark under that group's small mutex; the flush
//! takes every group's mutex around the drain of the counters only, and records the
//! watermarks it drained up to.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::raft::KvOp;
use crate::store::{Store, StoreError, meta_key};

/// `raft_meta` record name of a group's persisted KeyViz watermark (8 B BE log index).
const WATERMARK: &str = "keyviz_watermark";
/// `raft_meta` record name of a group's count floor: the last index of an installed snapshot
/// (8 B BE). Entries at or below it were not applied here one by one and are never re-counted.
const FLOOR: &str = "keyviz_floor";
/// `raft_meta` record name prefix of duplicate markers: `keyviz_dup/` ++ index (8 B BE) marks
/// an entry answered from the session table, which a re-count must skip.
const DUP: &str = "keyviz_dup/";

/// Value bytes counted for an `INCR`-family write: a function of the entry alone (the new
/// value's length is not in the log), so a re-count after a crash counts what the live apply
/// counted.
pub(crate) const INCR_VALUE_BYTES: usize = 8;

/// Calls `f(key, value_len)` once per key written by `op` (per operation of a batch); splits
/// write no key. Depends on `op` only, so a live apply and a re-count agree.
pub(crate) fn for_each_write(op: &KvOp, f: &mut impl FnMut(&[u8], usize)) {
    match op {
        KvOp::Set { key, value, .. } | KvOp::Append { key, value } => f(key, value.len()),
        KvOp::IncrBy { key, .. } => f(key, INCR_VALUE_BYTES),
        KvOp::MSet { pairs } => pairs.iter().for_each(|(k, v)| f(k, v.len())),
        KvOp::Del { keys } => keys.iter().for_each(|k| f(k, 0)),
        KvOp::Expire { key, .. } | KvOp::Persist { key } => f(key, 0),
        KvOp::Batch { ops } => ops.iter().for_each(|op| for_each_write(op, f)),
        KvOp::Split { .. } => {}
    }
}

fn index_value(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn load_index(store: &Store, group: u64, name: &str) -> Result<Option<u64>, StoreError> {
    match store.meta.get(meta_key(group, name))? {
        None => Ok(None),
        Some(raw) => {
            let b: [u8; 8] = raw.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                what: "keyviz watermark",
                detail: format!("{} bytes, need 8", raw.len()),
            })?;
            Ok(Some(u64::from_be_bytes(b)))
        }
    }
}

/// The persisted watermark of `group` (`None`: no column covering its writes was flushed).
///
/// # Errors
/// [`StoreError`] when the record cannot be read or decoded.
pub(crate) fn load_watermark(store: &Store, group: u64) -> Result<Option<u64>, StoreError> {
    load_index(store, group, WATERMARK)
}

/// The persisted count floor of `group` (last installed snapshot index).
///
/// # Errors
/// [`StoreError`] when the record cannot be read or decoded.
pub(crate) fn load_floor(store: &Store, group: u64) -> Result<Option<u64>, StoreError> {
    load_index(store, group, FLOOR)
}

/// The `raft_meta` record of `group`'s count floor at `index` (written with a snapshot install).
pub(crate) fn floor_record(group: u64, index: u64) -> (Vec<u8>, Vec<u8>) {
    (meta_key(group, FLOOR), index_value(index).to_vec())
}

/// The `raft_meta` key of the duplicate marker of `group`'s entry `index`.
pub(crate) fn dup_key(group: u64, index: u64) -> Vec<u8> {
    let mut k = meta_key(group, DUP);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Removes `group`'s duplicate markers of entries below `end` (exclusive) into `batch`.
///
/// # Errors
/// [`StoreError`] when the keyspace cannot be read.
pub(crate) fn remove_dups_below(
    store: &Store,
    batch: &mut fjall::OwnedWriteBatch,
    group: u64,
    end: u64,
) -> Result<(), StoreError> {
    for item in store.meta.range(dup_key(group, 0)..dup_key(group, end)) {
        batch.remove(&store.meta, item.key()?);
    }
    Ok(())
}

/// Per group, the last applied log index whose write observations a seal covered.
pub type Watermarks = BTreeMap<u64, u64>;

/// The per-group fence between apply-side observation and the KeyViz flush.
///
/// Lock order: a caller holds at most one group's mutex (apply), or all of them in ascending
/// group order (flush); nothing else is taken while holding them except the lock-free
/// sampler counters and, inside the flush's closure, whatever the closure takes.
pub struct CountFence {
    /// Per group: the last applied log index whose observations are in the counters.
    groups: BTreeMap<u64, Mutex<u64>>,
}

impl CountFence {
    /// A fence for `groups`, every watermark at 0 (raised by the state machines at open).
    pub fn new(groups: impl IntoIterator<Item = u64>) -> Self {
        Self {
            groups: groups.into_iter().map(|g| (g, Mutex::new(0))).collect(),
        }
    }

    /// Runs `observe` (the observations of applied entries up to log index `applied`) and
    /// raises `group`'s watermark to `applied`, both under `group`'s mutex, so a flush drains
    /// either none or all of them together with the watermark. Blocks only while a flush
    /// drains. A group unknown to the fence runs `observe` unfenced.
    pub fn observe_applied<R>(&self, group: u64, applied: u64, observe: impl FnOnce() -> R) -> R {
        match self.groups.get(&group) {
            Some(m) => {
                let mut w = m.lock();
                let r = observe();
                *w = (*w).max(applied);
                r
            }
            None => observe(),
        }
    }

    /// Raises `group`'s watermark with nothing to observe (start-up, snapshot install, entries
    /// that count nothing). Takes `group`'s mutex.
    pub fn advance(&self, group: u64, applied: u64) {
        self.observe_applied(group, applied, || ());
    }

    /// `group`'s current watermark. Takes `group`'s mutex.
    pub fn watermark(&self, group: u64) -> Option<u64> {
        self.groups.get(&group).map(|m| *m.lock())
    }

    /// Runs `drain` with every group's mutex held (taken in ascending group order) and the
    /// watermarks it covers: every observation of an entry at or below a group's watermark was
    /// made before `drain` started, none above it can happen while it runs. Keep `drain` to
    /// the drain of the counters (`Sampler::seal`): apply waits while it runs. The caller
    /// persists the watermarks atomically with the columns the drain produced.
    pub fn with_groups_locked<R>(&self, drain: impl FnOnce(&Watermarks) -> R) -> R {
        let guards: Vec<(u64, parking_lot::MutexGuard<'_, u64>)> =
            self.groups.iter().map(|(g, m)| (*g, m.lock())).collect();
        let marks: Watermarks = guards.iter().map(|(g, w)| (*g, **w)).collect();
        let r = drain(&marks);
        drop(guards);
        r
    }
}

/// Adds the watermark records of `marks` (group → index) to `batch`.
pub(crate) fn stage_watermarks(
    store: &Store,
    batch: &mut fjall::OwnedWriteBatch,
    marks: &BTreeMap<u64, u64>,
) {
    for (g, w) in marks {
        batch.insert(
            &store.meta,
            meta_key(*g, WATERMARK),
            index_value(*w).to_vec(),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn a_drain_sees_all_or_none_of_a_fenced_observation() {
        let fence = Arc::new(CountFence::new([1, 2]));
        let counter = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let applier = {
            let (fence, counter, stop) = (fence.clone(), counter.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut index = 0;
                while !stop.load(Ordering::Relaxed) {
                    index += 1;
                    // Ten observations per "entry".
                    fence.observe_applied(1, index, || {
                        for _ in 0..10 {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            })
        };
        let mut total = 0;
        for _ in 0..2_000 {
            let (drained, marks) =
                fence.with_groups_locked(|m| (counter.swap(0, Ordering::Relaxed), m.clone()));
            total += drained;
            assert_eq!(total, marks[&1] * 10, "drained counts match the watermark");
        }
        stop.store(true, Ordering::Relaxed);
        applier.join().expect("applier");
    }

    #[test]
    fn watermarks_only_rise_and_a_seal_reports_the_ones_it_covered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), false).expect("open");
        let fence = CountFence::new([1, 2]);
        fence.advance(1, 5);
        fence.advance(1, 3);
        assert_eq!(fence.watermark(1), Some(5));
        let sealed = fence.with_groups_locked(|m| m.clone());
        fence.advance(2, 9); // after the seal: not covered by it
        let mut batch = store.batch();
        stage_watermarks(&store, &mut batch, &sealed);
        batch.commit().expect("commit");
        assert_eq!(load_watermark(&store, 1).expect("load"), Some(5));
        assert_eq!(load_watermark(&store, 2).expect("load"), Some(0));
    }

    #[test]
    fn every_written_key_of_a_batch_is_counted_from_the_op_alone() {
        let op = KvOp::Batch {
            ops: vec![
                KvOp::IncrBy {
                    key: b"a".to_vec(),
                    delta: 1,
                },
                KvOp::MSet {
                    pairs: vec![(b"b".to_vec(), b"xyz".to_vec())],
                },
                KvOp::Del {
                    keys: vec![b"c".to_vec(), b"d".to_vec()],
                },
            ],
        };
        let mut seen = Vec::new();
        for_each_write(&op, &mut |k, len| seen.push((k.to_vec(), len)));
        assert_eq!(
            seen,
            vec![
                (b"a".to_vec(), INCR_VALUE_BYTES),
                (b"b".to_vec(), 3),
                (b"c".to_vec(), 0),
                (b"d".to_vec(), 0)
            ]
        );
    }
}
