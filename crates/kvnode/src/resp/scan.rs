//! `SCAN` cursors: the number a client sends back, mapped to the key its next page starts at.
//!
//! Redis clients (redis-cli, redis-rs, redis-py) parse the cursor as an unsigned 64-bit
//! integer, and keys are arbitrary bytes of up to 64 KiB, so a cursor cannot carry its resume
//! key. This node keeps the resume key of every cursor it handed out in a bounded table and
//! hands out an opaque number instead. Within one node's lifetime that gives Redis's guarantee
//! (every key present from the start to the end of a full iteration is returned, whatever is
//! deleted or added meanwhile), which a cursor that counts returned keys cannot give: deleting
//! the keys of a page shifts every later key back past the cursor.
//!
//! Limits: at most [`MAX_CURSORS`] cursors and [`MAX_CURSOR_BYTES`] of resume keys are kept;
//! past either, the oldest cursors are forgotten first. A forgotten cursor, a cursor of
//! another node, or one from before a restart is answered `ERR invalid cursor` — never with a
//! silently different iteration.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

/// Most cursors kept at once (the oldest are forgotten first).
pub const MAX_CURSORS: usize = 65_536;

/// Most bytes of resume keys kept at once (the oldest cursors are forgotten first).
pub const MAX_CURSOR_BYTES: usize = 32 << 20;

/// A cursor number that names no scan this node can resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ERR invalid cursor")]
pub struct InvalidCursor;

/// The node's table of live `SCAN` cursors. Shared by all connections; every method takes
/// one short `parking_lot` mutex and does no I/O.
#[derive(Debug)]
pub struct ScanCursors {
    inner: Mutex<Table>,
    /// Mixed into every cursor number, so numbers of an earlier process (or another node)
    /// are not mistaken for ours.
    salt: u64,
}

#[derive(Debug, Default)]
struct Table {
    keys: HashMap<u64, Vec<u8>>,
    /// Cursor numbers oldest first (for eviction).
    order: VecDeque<u64>,
    bytes: usize,
    issued: u64,
}

impl ScanCursors {
    /// An empty table whose cursor numbers are derived from `salt` (a per-process random).
    pub fn new(salt: u64) -> Self {
        Self {
            inner: Mutex::new(Table::default()),
            salt,
        }
    }

    /// Where the scan named by `cursor` resumes: `None` for cursor 0 (a new scan from the
    /// first key), the stored resume key otherwise. A cursor may be resumed more than once
    /// (a client retrying a page gets the same page again).
    pub fn resume(&self, cursor: u64) -> Result<Option<Vec<u8>>, InvalidCursor> {
        if cursor == 0 {
            return Ok(None);
        }
        self.inner
            .lock()
            .keys
            .get(&cursor)
            .cloned()
            .map(Some)
            .ok_or(InvalidCursor)
    }

    /// A new nonzero cursor number that resumes at `next`, forgetting the oldest cursors if
    /// the table is over [`MAX_CURSORS`] or [`MAX_CURSOR_BYTES`].
    pub fn issue(&self, next: Vec<u8>) -> u64 {
        let mut t = self.inner.lock();
        let cursor = loop {
            t.issued = t.issued.wrapping_add(1);
            let c = mix(self.salt.wrapping_add(t.issued));
            if c != 0 && !t.keys.contains_key(&c) {
                break c;
            }
        };
        t.bytes += next.len();
        t.keys.insert(cursor, next);
        t.order.push_back(cursor);
        while t.order.len() > MAX_CURSORS || t.bytes > MAX_CURSOR_BYTES {
            let Some(old) = t.order.pop_front() else {
                break;
            };
            if let Some(k) = t.keys.remove(&old) {
                t.bytes -= k.len();
            }
        }
        cursor
    }

    /// Cursors currently kept.
    pub fn len(&self) -> usize {
        self.inner.lock().keys.len()
    }

    /// Whether no cursor is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// splitmix64's finalizer: a bijection on u64, so distinct counters give distinct cursors.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_zero_starts_a_scan_and_issued_cursors_resume_at_their_key() {
        let t = ScanCursors::new(7);
        assert_eq!(t.resume(0), Ok(None));
        let c = t.issue(b"k2".to_vec());
        assert_ne!(c, 0);
        assert_eq!(t.resume(c), Ok(Some(b"k2".to_vec())));
        assert_eq!(
            t.resume(c),
            Ok(Some(b"k2".to_vec())),
            "a page can be retried"
        );
    }

    #[test]
    fn an_unknown_cursor_is_refused_not_restarted() {
        let t = ScanCursors::new(7);
        assert_eq!(t.resume(12_345), Err(InvalidCursor));
        let other_process = ScanCursors::new(8);
        let c = other_process.issue(b"x".to_vec());
        assert_eq!(t.resume(c), Err(InvalidCursor));
        assert_eq!(InvalidCursor.to_string(), "ERR invalid cursor");
    }

    #[test]
    fn the_oldest_cursors_are_forgotten_past_the_byte_budget() {
        let t = ScanCursors::new(1);
        let big = vec![b'k'; MAX_CURSOR_BYTES / 4];
        let first = t.issue(big.clone());
        let rest: Vec<u64> = (0..4).map(|_| t.issue(big.clone())).collect();
        assert_eq!(t.resume(first), Err(InvalidCursor));
        assert_eq!(t.len(), 4);
        for c in rest {
            assert!(t.resume(c).is_ok());
        }
    }

    #[test]
    fn the_table_never_holds_more_than_max_cursors() {
        let t = ScanCursors::new(3);
        let first = t.issue(b"a".to_vec());
        for _ in 0..MAX_CURSORS {
            t.issue(b"b".to_vec());
        }
        assert_eq!(t.len(), MAX_CURSORS);
        assert_eq!(t.resume(first), Err(InvalidCursor));
    }
}
