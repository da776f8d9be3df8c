//! Raft log storage of one group in the shared fjall database.
//!
//! Entries live in `raft_log` under `group ++ index` (big-endian, so a prefix range is the
//! group's log in index order), encoded with postcard ([`crate::store::to_bin`]); vote,
//! committed and purged ids live in `raft_meta`, also postcard. An append is one atomic batch
//! followed by one fsync, and only then is openraft told it is durable.
//!
//! Replication reads the log through [`RaftLogReader::limited_get_log_entries`], which stops
//! once the entries read weigh [`MAX_APPEND_BYTES`] (always at least one entry), so one
//! AppendEntries RPC stays small enough to cross the network within its deadline however big
//! the values are; openraft additionally bounds it to `max_payload_entries`.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, RaftLogReader, StorageError, StorageIOError, Vote};

use super::types::{TypeConfig, entries_bytes};
use crate::store::{Store, StoreError, from_bin, group_prefix, log_key, meta_key, to_bin};

type NodeId = u64;

/// Most stored bytes of log entries one AppendEntries RPC carries, unless its first entry
/// alone is bigger (an entry is never split: it then travels alone). 8 MiB crosses loopback
/// or a LAN in well under the 250 ms heartbeat that openraft 0.9 uses as the RPC deadline.
pub(crate) const MAX_APPEND_BYTES: usize = 8 * 1024 * 1024;

/// The weight given to [`keyviz_admin::peer::off_worker`] for a small Raft metadata write
/// (vote, committed id): fjall writes every batch into one journal under one mutex, so a
/// small write waits while a big entry's batch is written (in a debug build on a loaded
/// machine, up to a second or more) and must not wait on a tokio worker.
const WAITS_FOR_THE_JOURNAL: usize = keyviz_admin::peer::OFF_WORKER_BYTES;

/// The log of one group; clones share the same storage.
#[derive(Clone)]
pub(crate) struct LogStore {
    store: Store,
    group: u64,
    /// Keep entries above the KeyViz watermark on purge (sampling on): a restart re-counts
    /// them from the log (see `counting`).
    keep_uncounted: bool,
}

fn read_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    /// The log of `group`; `keep_uncounted` keeps, on purge, the entries a restart may have
    /// to re-count for KeyViz.
    pub(crate) fn new(store: Store, group: u64, keep_uncounted: bool) -> Self {
        Self {
            store,
            group,
            keep_uncounted,
        }
    }

    /// The entries physically present with index in `[start, end)`, in order — including
    /// entries below openraft's purged id that a purge kept for KeyViz re-counting.
    pub(crate) fn read_range(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
        self.entries(start, Some(end), None)
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        name: &'static str,
    ) -> Result<Option<T>, StoreError> {
        match self.store.meta.get(meta_key(self.group, name))? {
            None => Ok(None),
            Some(raw) => Ok(Some(from_bin(name, &raw)?)),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, name: &'static str, v: &T) -> Result<(), StoreError> {
        let raw = to_bin(name, v)?;
        // Small, but it waits for fjall's journal, which a big entry's write holds meanwhile,
        // and then for the fsync.
        keyviz_admin::peer::off_worker(WAITS_FOR_THE_JOURNAL, || {
            self.store.meta.insert(meta_key(self.group, name), raw)?;
            self.store.sync()
        })
    }

    fn bounds(&self, range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        (start, end)
    }

    /// Entries `[start, end)`; with `max_bytes`, stops before the entry that would take the
    /// stored bytes read past it (the first entry is always returned).
    fn entries(
        &self,
        start: u64,
        end: Option<u64>,
        max_bytes: Option<usize>,
    ) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
        let lo = log_key(self.group, start);
        let hi = match end {
            Some(e) => log_key(self.group, e).to_vec(),
            None => (self.group + 1).to_be_bytes().to_vec(),
        };
        if lo.as_slice() >= hi.as_slice() {
            return Ok(Vec::new());
        }
        // The stored values first, then the decode, which copies every value and runs off the
        // worker when they are big (docs/STORE.md, "Big entries and the other groups"). The
        // read stays inline: a value's size is known only once it is read, and recent entries
        // (the ones replication reads) are in fjall's memtable or block cache, shared slices.
        let mut raw = Vec::new();
        let mut bytes = 0usize;
        for item in self.store.log.range(lo.to_vec()..hi) {
            let v = item.value()?;
            let next = bytes.saturating_add(v.len());
            if max_bytes.is_some_and(|m| next > m) && !raw.is_empty() {
                break;
            }
            bytes = next;
            raw.push(v);
        }
        keyviz_admin::peer::off_worker(bytes, || {
            raw.iter().map(|v| from_bin("log entry", v)).collect()
        })
    }

    fn last_entry(&self) -> Result<Option<Entry<TypeConfig>>, StoreError> {
        match self.store.log.prefix(group_prefix(self.group)).next_back() {
            None => Ok(None),
            Some(item) => Ok(Some(from_bin("log entry", &item.value()?)?)),
        }
    }

    fn remove_range(&self, start: u64, end: Option<u64>) -> Result<(), StoreError> {
        let lo = log_key(self.group, start).to_vec();
        let hi = match end {
            Some(e) => log_key(self.group, e).to_vec(),
            None => (self.group + 1).to_be_bytes().to_vec(),
        };
        let mut batch = self.store.batch();
        for item in self.store.log.range(lo..hi) {
            batch.remove(&self.store.log, item.key()?);
        }
        if start == 0
            && let Some(end) = end
        {
            // A purge: duplicate markers of entries that can no longer be re-counted go too.
            crate::counting::remove_dups_below(&self.store, &mut batch, self.group, end)?;
        }
        batch.commit()?;
        self.store.sync()
    }

    /// First index a purge up to `index` may not remove physically: everything above the
    /// KeyViz watermark (or an installed snapshot's floor) stays until a flush covers it.
    fn purge_end(&self, index: u64) -> Result<u64, StoreError> {
        let end = index.saturating_add(1);
        if !self.keep_uncounted {
            return Ok(end);
        }
        let watermark = crate::counting::load_watermark(&self.store, self.group)?.unwrap_or(0);
        let floor = crate::counting::load_floor(&self.store, self.group)?.unwrap_or(0);
        Ok(end.min(watermark.max(floor).saturating_add(1)))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let (start, end) = self.bounds(&range);
        self.entries(start, end, None).map_err(read_err)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.entries(start, Some(end), Some(MAX_APPEND_BYTES))
            .map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let purged: Option<LogId<NodeId>> = self.get_meta("purged").map_err(read_err)?;
        let last = self.last_entry().map_err(read_err)?.map(|e| e.log_id);
        // Entries kept below the purged id for KeyViz do not count as the log's tail.
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.max(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta("vote", vote)
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_meta("vote")
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not fsync'd on its own: losing it only means re-applying from the last applied id.
        let raw = to_bin("committed", &committed).map_err(write_err)?;
        // Small, but it waits for fjall's journal, which a big entry's write (of this group's
        // state machine, or another group) may hold for a long time on a loaded machine.
        keyviz_admin::peer::off_worker(WAITS_FOR_THE_JOURNAL, || {
            self.store
                .meta
                .insert(meta_key(self.group, "committed"), raw)
        })
        .map_err(|e| write_err(e.into()))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .get_meta::<Option<LogId<NodeId>>>("committed")
            .map_err(read_err)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        // Encoding and writing a big entry (journal write, memtable insert) takes long enough
        // to starve the other groups' timers on this worker.
        let committed = keyviz_admin::peer::off_worker(entries_bytes(&entries), || {
            let mut batch = self.store.batch();
            for entry in &entries {
                let raw = to_bin("log entry", entry)?;
                batch.insert(
                    &self.store.log,
                    log_key(self.group, entry.log_id.index).to_vec(),
                    raw,
                );
            }
            batch.commit().map_err(StoreError::from)
        });
        if let Err(e) = committed {
            callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            return Err(write_err(e));
        }
        // openraft may go on (e.g. replicate to followers) while the fsync runs; it treats the
        // entries as durable only when the callback fires.
        self.store.sync_then(Box::new(move |r| {
            callback.log_io_completed(r.map_err(std::io::Error::other))
        }));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove_range(log_id.index, None).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta("purged", &log_id).map_err(write_err)?;
        let end = self.purge_end(log_id.index).map_err(write_err)?;
        self.remove_range(0, Some(end)).map_err(write_err)
    }
}
