//! The node's one embedded database: a fjall `Database` with three keyspaces.
//!
//! - `raft_log`: `group (8 bytes BE) ++ index (8 bytes BE)` → postcard log entry.
//! - `raft_meta`: `group (8 bytes BE) ++ name` → postcard (vote, committed, purged) or JSON
//!   (applied state), plus the global `catalog` key (the route catalog, written with every
//!   split) and the global `format` key naming the log encoding ([`LOG_FORMAT`]).
//! - `keyviz_history`: KeyViz columns of the finest history tier (see `history.rs`), so a
//!   restart keeps the heatmap; `keyviz_history_tiers`: the coarser tiers' columns.
//! - `kv`: user key → [`StoredValue`] encoding. Keys are *not* prefixed by group: every node hosts
//!   every group and routes never overlap, so the user key alone is unique, and a whole-keyspace
//!   `SCAN` is one ordered range read. A group's keys are the keys inside its routes.
//!
//! All fjall calls are synchronous and short; the slow one is the fsync that makes appended
//! log entries durable. It runs on a dedicated thread ([`Store::sync_then`]) that coalesces the
//! appends of every group into one fsync (group commit), so an fsync never blocks a tokio
//! worker and concurrent groups share its cost.

use std::path::Path;
use std::sync::mpsc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

/// Failure of the embedded storage engine (I/O, corruption, or an undecodable record).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// fjall reported an error (disk full, permission, corruption).
    #[error("storage engine: {0}")]
    Engine(#[from] fjall::Error),
    /// A stored record could not be decoded (written by an incompatible version or corrupted).
    #[error("corrupt record under {what}: {detail}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// Decoder message.
        detail: String,
    },
    /// The data directory holds a Raft log in an encoding this version does not read (the
    /// JSON log of kvnode before the binary format). There is no migration: start on an
    /// empty directory.
    #[error(
        "the data directory holds a Raft log in format {found:?}, this kvnode reads only {expected:?}: it was written by an incompatible kvnode version; move it away and start on an empty directory"
    )]
    Format {
        /// What the directory holds (`"json (kvnode < binary log)"` when unmarked).
        found: String,
        /// [`LOG_FORMAT`].
        expected: &'static str,
    },
}

/// Name of the encoding of `raft_log` entries and the Raft records of `raft_meta`, stored
/// under the `format` key of `raft_meta` when a data directory is first opened. A directory
/// with Raft state but no marker predates it (JSON) and is refused.
pub const LOG_FORMAT: &str = "postcard-1";

/// `raft_meta` key of the [`LOG_FORMAT`] marker (no group prefix: it is 6 bytes, group keys
/// start with 8).
const FORMAT_KEY: &[u8] = b"format";

/// Refuses a directory whose Raft log is in another encoding; marks a fresh one.
fn check_format(log: &Keyspace, meta: &Keyspace) -> Result<(), StoreError> {
    match meta.get(FORMAT_KEY)? {
        Some(raw) if raw.as_ref() == LOG_FORMAT.as_bytes() => Ok(()),
        Some(raw) => Err(StoreError::Format {
            found: String::from_utf8_lossy(&raw).into_owned(),
            expected: LOG_FORMAT,
        }),
        None => {
            let has_raft_state = log.iter().next().is_some()
                || meta.iter().any(|kv| kv.key().is_ok_and(|k| k.len() > 8));
            if has_raft_state {
                return Err(StoreError::Format {
                    found: "json (kvnode before the binary log)".into(),
                    expected: LOG_FORMAT,
                });
            }
            meta.insert(FORMAT_KEY, LOG_FORMAT.as_bytes())?;
            Ok(())
        }
    }
}

/// Handle to the node's database; cheap to clone (fjall handles are reference counted).
#[derive(Clone)]
pub struct Store {
    db: Database,
    pub(crate) log: Keyspace,
    pub(crate) meta: Keyspace,
    pub(crate) kv: Keyspace,
    pub(crate) history: Keyspace,
    pub(crate) history_tiers: Keyspace,
    fsync: bool,
    syncer: mpsc::Sender<SyncWaiter>,
}

/// Called once the data written before it was queued is durable (or the fsync failed).
pub(crate) type SyncWaiter = Box<dyn FnOnce(Result<(), String>) + Send>;

/// The group-commit loop: waits for a waiter, takes every waiter queued meanwhile, fsyncs once
/// and answers them all in queue order. Ends when the last `Store` clone is dropped.
fn sync_loop(db: Database, fsync: bool, rx: mpsc::Receiver<SyncWaiter>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let result = if fsync {
            db.persist(PersistMode::SyncData).map_err(|e| e.to_string())
        } else {
            Ok(())
        };
        for w in batch {
            w(result.clone());
        }
    }
}

impl Store {
    /// Opens (or creates) the database under `dir`. `fsync = false` skips the per-append fsync
    /// (faster, loses the last writes on power failure; a process crash still keeps them because
    /// fjall's journal is written before the call returns).
    ///
    /// # Errors
    /// [`StoreError::Engine`] when the directory cannot be created or the journal cannot be
    /// recovered; [`StoreError::Format`] when the directory holds a Raft log written in another
    /// encoding (an older kvnode's JSON log).
    pub fn open(dir: &Path, fsync: bool) -> Result<Self, StoreError> {
        let db = Database::builder(dir).open()?;
        let log = db.keyspace("raft_log", KeyspaceCreateOptions::default)?;
        let meta = db.keyspace("raft_meta", KeyspaceCreateOptions::default)?;
        check_format(&log, &meta)?;
        let kv = db.keyspace("kv", KeyspaceCreateOptions::default)?;
        let history = db.keyspace("keyviz_history", KeyspaceCreateOptions::default)?;
        let history_tiers = db.keyspace("keyviz_history_tiers", KeyspaceCreateOptions::default)?;
        let (syncer, rx) = mpsc::channel();
        let db2 = db.clone();
        std::thread::Builder::new()
            .name("kvnode-fsync".into())
            .spawn(move || sync_loop(db2, fsync, rx))
            .map_err(|e| StoreError::Corrupt {
                what: "fsync thread",
                detail: e.to_string(),
            })?;
        Ok(Self {
            db,
            log,
            meta,
            kv,
            history,
            history_tiers,
            fsync,
            syncer,
        })
    }

    /// Bytes held by the database's block cache (shared by every keyspace; fjall's default
    /// capacity, 32 MiB), for the restart measurement. Takes the cache's shard locks
    /// briefly; never blocks on I/O.
    #[cfg(test)]
    pub(crate) fn cache_bytes(&self) -> u64 {
        self.db.cache_size()
    }

    /// Starts an atomic write batch across the keyspaces.
    pub(crate) fn batch(&self) -> fjall::OwnedWriteBatch {
        self.db.batch()
    }

    /// A consistent point-in-time view of all keyspaces (used to build Raft snapshots while
    /// entries keep being applied).
    pub(crate) fn snapshot(&self) -> fjall::Snapshot {
        self.db.snapshot()
    }

    /// Calls `then` once everything written so far is durable (group commit on the fsync
    /// thread). Never blocks.
    pub(crate) fn sync_then(&self, then: SyncWaiter) {
        if let Err(mpsc::SendError(w)) = self.syncer.send(then) {
            w(Err("fsync thread stopped".into()));
        }
    }

    /// Makes everything written so far durable (fsync), unless fsync was disabled. Blocks the
    /// caller: only for rare records (votes, purge marks, snapshot installs).
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        if self.fsync {
            self.db.persist(PersistMode::SyncData)?;
        }
        Ok(())
    }

    /// Reads a user key's live value at `now_unix_ms` (expired values read as absent).
    pub(crate) fn get_value(
        &self,
        key: &[u8],
        now_unix_ms: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        // fjall keys are 1..=65 535 bytes (it panics on others): such a key cannot exist.
        if key.is_empty() || key.len() > crate::limits::MAX_KEY_BYTES {
            return Ok(None);
        }
        match self.kv.get(key)? {
            None => Ok(None),
            Some(raw) => Ok(StoredValue::decode(&raw)?.live(now_unix_ms).map(|v| v.data)),
        }
    }

    /// A user key's expiry at `now_unix_ms`: `None` when the key is absent or expired,
    /// `Some(0)` when it never expires, else `Some(unix ms)`. Reads only the 8-byte header
    /// of the stored value (fjall still loads the whole entry).
    pub(crate) fn get_expiry(
        &self,
        key: &[u8],
        now_unix_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        if key.is_empty() || key.len() > crate::limits::MAX_KEY_BYTES {
            return Ok(None);
        }
        let Some(raw) = self.kv.get(key)? else {
            return Ok(None);
        };
        let head: [u8; 8] =
            raw.get(..8)
                .and_then(|h| h.try_into().ok())
                .ok_or(StoreError::Corrupt {
                    what: "kv value",
                    detail: format!("{} bytes, need at least 8", raw.len()),
                })?;
        let at = u64::from_be_bytes(head);
        Ok((at == 0 || at > now_unix_ms).then_some(at))
    }

    /// Counts live keys on this node (all groups).
    pub(crate) fn count_live(&self, now_unix_ms: u64) -> Result<u64, StoreError> {
        let mut n = 0u64;
        for item in self.kv.iter() {
            let (_, v) = item.into_inner()?;
            if StoredValue::decode(&v)?.live(now_unix_ms).is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Returns up to `count` live keys of the whole keyspace in key order, starting at `from`
    /// (inclusive; `None` = the first key), and the key the next page starts at (`None` when
    /// the scan is complete).
    ///
    /// Resuming at a key rather than at a count of keys already returned is what makes `SCAN`
    /// correct under deletes: a key deleted behind the cursor does not shift the keys ahead
    /// of it, and each page costs O(count) instead of a walk from the start. Reads the local
    /// `kv` keyspace only (no locks of ours; fjall's own are short).
    pub(crate) fn scan_live(
        &self,
        from: Option<&[u8]>,
        count: usize,
        now_unix_ms: u64,
    ) -> Result<ScanPage, StoreError> {
        let mut out = Vec::with_capacity(count.min(1024));
        use std::ops::Bound;
        let start = from.map_or(Bound::Unbounded, |k| Bound::Included(k.to_vec()));
        for item in self.kv.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (k, v) = item.into_inner()?;
            if StoredValue::decode(&v)?.live(now_unix_ms).is_none() {
                continue;
            }
            if out.len() == count {
                return Ok(ScanPage {
                    next: Some(k.to_vec()),
                    keys: out,
                });
            }
            out.push(k.to_vec());
        }
        Ok(ScanPage {
            next: None,
            keys: out,
        })
    }
}

/// One page of [`Store::scan_live`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ScanPage {
    /// The first live key after this page (where the next page starts); `None` at the end.
    pub(crate) next: Option<Vec<u8>>,
    /// This page's live keys, in key order.
    pub(crate) keys: Vec<Vec<u8>>,
}

/// Big-endian prefix of a group's records in `raft_log` / `raft_meta`.
pub(crate) fn group_prefix(group: u64) -> [u8; 8] {
    group.to_be_bytes()
}

/// `raft_log` key of one entry.
pub(crate) fn log_key(group: u64, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

/// `raft_meta` key of one named record of a group.
pub(crate) fn meta_key(group: u64, name: &str) -> Vec<u8> {
    let mut k = group_prefix(group).to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// A value as stored in the `kv` keyspace: an absolute expiry (0 = none) and the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredValue {
    /// Unix ms at which the value expires; 0 means never.
    pub(crate) expire_at_ms: u64,
    /// The user's bytes.
    pub(crate) data: Vec<u8>,
}

impl StoredValue {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.data.len());
        out.extend_from_slice(&self.expire_at_ms.to_be_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    pub(crate) fn decode(raw: &[u8]) -> Result<Self, StoreError> {
        let (head, data) = raw.split_at_checked(8).ok_or(StoreError::Corrupt {
            what: "kv value",
            detail: format!("{} bytes, need at least 8", raw.len()),
        })?;
        let mut b = [0u8; 8];
        b.copy_from_slice(head);
        Ok(Self {
            expire_at_ms: u64::from_be_bytes(b),
            data: data.to_vec(),
        })
    }

    /// The value if it has not expired at `now_unix_ms`.
    pub(crate) fn live(self, now_unix_ms: u64) -> Option<Self> {
        if self.expire_at_ms != 0 && self.expire_at_ms <= now_unix_ms {
            None
        } else {
            Some(self)
        }
    }
}

/// Encodes a Raft record (log entry, vote, log id) or an internal RPC body in the binary wire
/// and storage format (postcard: compact, no self-description, byte strings written raw).
///
/// # Errors
/// [`StoreError::Corrupt`] naming `what` when the value cannot be serialised.
pub(crate) fn to_bin<T: serde::Serialize>(
    what: &'static str,
    v: &T,
) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(v).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

/// The length [`to_bin`] would produce, without building it (a counting postcard flavor;
/// no allocation). 0 if the value cannot be serialised.
pub(crate) fn bin_size<T: serde::Serialize>(v: &T) -> usize {
    struct Count(usize);
    impl postcard::ser_flavors::Flavor for Count {
        type Output = usize;
        fn try_push(&mut self, _: u8) -> postcard::Result<()> {
            self.0 += 1;
            Ok(())
        }
        fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
            self.0 += data.len();
            Ok(())
        }
        fn finalize(self) -> postcard::Result<usize> {
            Ok(self.0)
        }
    }
    postcard::serialize_with_flavor(v, Count(0)).unwrap_or(0)
}

/// Decodes a record written by [`to_bin`]. Never panics on arbitrary bytes; allocation is
/// bounded by the input length (postcard reads declared lengths against the input).
///
/// # Errors
/// [`StoreError::Corrupt`] naming `what` when the bytes are not a valid encoding.
pub(crate) fn from_bin<T: serde::de::DeserializeOwned>(
    what: &'static str,
    raw: &[u8],
) -> Result<T, StoreError> {
    postcard::from_bytes(raw).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

/// Serialises a record as JSON for `raft_meta` (state machine records, catalog) and history.
pub(crate) fn to_json<T: serde::Serialize>(
    what: &'static str,
    v: &T,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

/// Decodes a JSON record written by [`to_json`].
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    raw: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_values_read_as_absent_and_are_not_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), false).expect("open");
        let v = StoredValue {
            expire_at_ms: 1_000,
            data: b"x".to_vec(),
        };
        store.kv.insert("a", v.encode()).expect("insert");
        let forever = StoredValue {
            expire_at_ms: 0,
            data: b"y".to_vec(),
        };
        store.kv.insert("b", forever.encode()).expect("insert");
        assert_eq!(
            store.get_value(b"a", 999).expect("get"),
            Some(b"x".to_vec())
        );
        assert_eq!(store.get_value(b"a", 1_000).expect("get"), None);
        assert_eq!(store.count_live(2_000).expect("count"), 1);
        let page = store.scan_live(None, 10, 2_000).expect("scan");
        assert_eq!(
            page,
            ScanPage {
                next: None,
                keys: vec![b"b".to_vec()]
            }
        );
    }

    #[test]
    fn expiry_reads_the_header_and_hides_expired_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), false).expect("open");
        for (k, at) in [("forever", 0u64), ("later", 5_000)] {
            let v = StoredValue {
                expire_at_ms: at,
                data: b"v".to_vec(),
            };
            store.kv.insert(k, v.encode()).expect("insert");
        }
        assert_eq!(store.get_expiry(b"forever", 9_999).expect("read"), Some(0));
        assert_eq!(
            store.get_expiry(b"later", 4_999).expect("read"),
            Some(5_000)
        );
        assert_eq!(store.get_expiry(b"later", 5_000).expect("read"), None);
        assert_eq!(store.get_expiry(b"missing", 0).expect("read"), None);
        assert_eq!(store.get_expiry(b"", 0).expect("read"), None);
    }

    #[test]
    fn scan_walks_the_keyspace_in_pages_that_resume_at_a_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), false).expect("open");
        let live = StoredValue {
            expire_at_ms: 0,
            data: vec![],
        };
        for i in 0..5 {
            store
                .kv
                .insert(format!("k{i}"), live.encode())
                .expect("insert");
        }
        let p1 = store.scan_live(None, 2, 0).expect("scan");
        assert_eq!(p1.keys, vec![b"k0".to_vec(), b"k1".to_vec()]);
        assert_eq!(p1.next.as_deref(), Some(&b"k2"[..]));
        let p2 = store.scan_live(p1.next.as_deref(), 2, 0).expect("scan");
        let p3 = store.scan_live(p2.next.as_deref(), 2, 0).expect("scan");
        assert_eq!(
            p3,
            ScanPage {
                next: None,
                keys: vec![b"k4".to_vec()]
            }
        );
        assert_eq!(p1.keys.len() + p2.keys.len() + p3.keys.len(), 5);
    }

    #[test]
    fn a_scan_resumes_at_its_key_so_deleting_what_it_returned_skips_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), false).expect("open");
        let live = StoredValue {
            expire_at_ms: 0,
            data: vec![],
        };
        for i in 0..90 {
            store
                .kv
                .insert(format!("aaa:{i:03}"), live.encode())
                .expect("insert");
        }
        let (mut from, mut seen) = (None::<Vec<u8>>, Vec::new());
        loop {
            let page = store.scan_live(from.as_deref(), 20, 0).expect("scan");
            for k in &page.keys {
                store.kv.remove(k.clone()).expect("delete");
            }
            seen.extend(page.keys);
            match page.next {
                Some(n) => from = Some(n),
                None => break,
            }
        }
        assert_eq!(
            seen.len(),
            90,
            "every key present from start to end is returned"
        );
        seen.dedup();
        assert_eq!(seen.len(), 90, "no key is returned twice");
    }

    #[test]
    fn bin_size_is_the_encoded_length() {
        let v = (7u64, vec![1u8; 300], "key".to_string());
        assert_eq!(bin_size(&v), to_bin("t", &v).expect("encode").len());
    }

    #[test]
    fn a_json_era_data_dir_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = Database::builder(dir.path()).open().expect("open");
            let log = db
                .keyspace("raft_log", KeyspaceCreateOptions::default)
                .expect("log");
            log.insert(log_key(1, 1), br#"{"log_id":{}}"#)
                .expect("insert");
        }
        let err = Store::open(dir.path(), false).err().expect("refused");
        assert!(matches!(err, StoreError::Format { .. }), "{err}");
        assert!(
            err.to_string().contains("incompatible kvnode version"),
            "{err}"
        );
        // A fresh directory is marked and reopens fine.
        let fresh = tempfile::tempdir().expect("tempdir");
        drop(Store::open(fresh.path(), false).expect("fresh"));
        drop(Store::open(fresh.path(), false).expect("reopen"));
    }

    #[test]
    fn corrupt_value_is_an_error_not_a_panic() {
        assert!(matches!(
            StoredValue::decode(b"abc"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
