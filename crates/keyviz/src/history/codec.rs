//! The compact binary form of a [`ColumnRecord`], for hosts that store columns.
//!
//! JSON spends ≈ 350 B on a typical cell (bucket id, keys as number arrays,
//! field names); this form spends ≈ 20–30 B, because most row metadata is
//! derivable or shared with the neighbouring cell (docs/PERFORMANCE.md has the
//! figures). Layout, version 1 (every integer a LEB128 varint unless it says
//! "byte"; "key" means `shared prefix length, suffix length, suffix bytes`
//! against the base named):
//!
//! ```text
//! record  = magic "KVcr" · version byte (1) · zigzag(unix_ms) · step_ms · cell count · cell*
//! cell    = flags byte · bucket byte · start · end · bucket data · route ids · route count
//!           · [reads_leader reads_follower read_bytes] · [writes] · [hot] · [first_key] · [last_key]
//! start   = nothing if START_IS_PREV_END, else key against the previous cell's start
//! end     = nothing if END_UNBOUNDED, else key against this start
//! bucket  = kind (low 3 bits: raw string, route:<n>, route:<n>#<s>, virtual:<hash of the range>)
//!           · INCARNATION (`@<16 hex of the range hash>` appended) · AGGREGATE · END_UNBOUNDED
//! writes  = count · (group term writes write_bytes)*
//! hot     = count · (series byte · group · term · total · floor · flags byte · [unit_variance]
//!           · item count · (key against the previous item's key, suffix length ·2 + truncated
//!           · upper · upper-estimate · estimate-lower · seen)*)*
//! labels  = first_key as a key against start; last_key against first_key (else start)
//! ```
//!
//! Route ids equal to `[n]` of a `route:<n>` bucket and a route count equal to
//! the listed ids' number are flags, not bytes. The id strings written as a
//! kind are re-derived on decode and compared on encode, so any string that
//! is not exactly what [`route_bucket_id`](crate::route_bucket_id),
//! [`virtual_bucket_name`](crate::virtual_bucket_name) or
//! [`incarnation_bucket_id`](crate::incarnation_bucket_id) produce is stored
//! verbatim: the round trip is exact for every record.
//!
//! Decoding is safe on hostile input: every length and count is checked
//! against the bytes left before anything is allocated for it, nothing
//! panics, and a record is refused with a [`DecodeError`] saying what and
//! where. Shared prefixes let a few bytes stand for a long key, so the key
//! bytes a record may expand to are capped at 64 × its length
//! (plus 64 KiB); the encoder writes a record whose keys would exceed that
//! with every key whole (no sharing), so every encoded record decodes. A
//! decoded record therefore holds at most ≈ 150 × its encoded length in
//! memory (cell structs included). A decoded hot-key summary passes
//! [`HotSummary::validate`](crate::hotkeys::HotSummary::validate), the check
//! restore applies to stored summaries.

use super::column::{Reader, put_varint, series_of_rank, series_rank};
use super::persist::{CellRecord, ColumnRecord, HotRecord, WriteRecord};
use crate::bucket::virtual_bucket_id;
use crate::hotkeys::{HotItem, HotSummary, MAX_HOT_KEY_BYTES, MAX_SUMMARY_ITEMS, SummaryError};

/// First bytes of every binary record (JSON records start with `{`).
const MAGIC: [u8; 4] = *b"KVcr";
/// The layout [`ColumnRecord::encode`] writes.
const VERSION: u8 = 1;

// Cell flags (one byte).
const START_IS_PREV_END: u8 = 1 << 0;
const IDS_FROM_BUCKET: u8 = 1 << 1;
const COUNT_IS_IDS: u8 = 1 << 2;
const HAS_READS: u8 = 1 << 3;
const HAS_WRITES: u8 = 1 << 4;
const HAS_HOT: u8 = 1 << 5;
const HAS_FIRST_KEY: u8 = 1 << 6;
const HAS_LAST_KEY: u8 = 1 << 7;

// Bucket byte.
const KIND_MASK: u8 = 0b111;
const KIND_RAW: u8 = 0;
const KIND_ROUTE: u8 = 1;
const KIND_ROUTE_SUB: u8 = 2;
const KIND_VIRTUAL: u8 = 3;
const INCARNATION: u8 = 1 << 3;
const AGGREGATE: u8 = 1 << 4;
const END_UNBOUNDED: u8 = 1 << 5;
const BUCKET_BITS: u8 = KIND_MASK | INCARNATION | AGGREGATE | END_UNBOUNDED;

// Hot summary flags.
const SAMPLED: u8 = 1 << 0;
const HAS_UNIT_VARIANCE: u8 = 1 << 1;

/// Key bytes a record may decode to, per encoded byte (see the module docs).
const KEY_EXPANSION: usize = 64;
/// Key bytes a record may decode to beyond [`KEY_EXPANSION`] × its length.
const KEY_SLACK: usize = 64 * 1024;

fn key_budget(encoded_len: usize) -> usize {
    encoded_len
        .saturating_mul(KEY_EXPANSION)
        .saturating_add(KEY_SLACK)
}

/// Smallest encoding of one cell (flags and bucket bytes).
const MIN_CELL_BYTES: usize = 2;
/// Smallest encoding of one write record (four one-byte varints).
const MIN_WRITE_BYTES: usize = 4;
/// Smallest encoding of one hot record (series, group, term, total, floor,
/// flags, item count).
const MIN_HOT_BYTES: usize = 7;
/// Smallest encoding of one hot item (shared, length, upper, two
/// differences, seen).
const MIN_ITEM_BYTES: usize = 6;

/// A binary column record could not be decoded; nothing was returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes do not start with the record magic (not a binary record).
    #[error("not a binary column record (bad magic)")]
    BadMagic,
    /// A layout version this build does not read.
    #[error("binary column record version {0} is not supported (this build reads 1)")]
    UnsupportedVersion(u8),
    /// The input ended, or a varint ran past 64 bits, inside `what`.
    #[error("binary column record cut or malformed at byte {offset} ({what})")]
    Truncated {
        /// Offset of the field in the input.
        offset: usize,
        /// The field being read.
        what: &'static str,
    },
    /// A length or count exceeds what the bytes left can hold.
    #[error("binary column record: {what} of {len} at byte {offset} exceeds the bytes left")]
    TooLong {
        /// Offset of the length in the input.
        offset: usize,
        /// The field it counts.
        what: &'static str,
        /// The length read.
        len: u64,
    },
    /// A flag byte has bits this version does not define, or flags that
    /// contradict the record (a start equal to a previous end that does not
    /// exist, route ids taken from a bucket id that names no route).
    #[error("binary column record: invalid {what} flags {flags:#04x} at byte {offset}")]
    BadFlags {
        /// Offset of the flag byte.
        offset: usize,
        /// Which flags.
        what: &'static str,
        /// The byte read.
        flags: u8,
    },
    /// A shared-prefix length longer than the key it shares with.
    #[error("binary column record: prefix of {len} at byte {offset} is longer than its base")]
    BadPrefix {
        /// Offset of the length.
        offset: usize,
        /// The length read.
        len: u64,
    },
    /// A bucket id that is not UTF-8.
    #[error("binary column record: bucket id at byte {offset} is not UTF-8")]
    BadBucketId {
        /// Offset of the id bytes.
        offset: usize,
    },
    /// A series byte outside the known series.
    #[error("binary column record: unknown series {series} at byte {offset}")]
    BadSeries {
        /// Offset of the byte.
        offset: usize,
        /// The byte read.
        series: u8,
    },
    /// A hot-key summary breaks an invariant ([`HotSummary::validate`]).
    #[error("binary column record: hot-key summary of cell {cell}: {source}")]
    Summary {
        /// Index of the cell.
        cell: usize,
        /// The broken invariant.
        source: SummaryError,
    },
    /// The keys would expand past 64 × the input length (plus 64 KiB).
    #[error("binary column record: keys at byte {offset} expand past {KEY_EXPANSION} x its length")]
    TooLarge {
        /// Offset of the key that would exceed the budget.
        offset: usize,
    },
    /// Bytes left after the last cell.
    #[error("binary column record: {0} bytes after the last cell")]
    TrailingBytes(usize),
}

impl ColumnRecord {
    /// True when `bytes` start like a record [`encode`](ColumnRecord::encode)
    /// wrote (its magic); JSON records start with `{` and never match.
    #[must_use = "pure function"]
    pub fn is_binary(bytes: &[u8]) -> bool {
        bytes.starts_with(&MAGIC)
    }

    /// Appends the binary form of `self` to `out` (layout in the module
    /// docs). Pure (no lock, no I/O), never fails; exact for every record, valid or not
    /// ([`decode`](ColumnRecord::decode) of it returns `self`, unless a hot
    /// summary of `self` breaks [`HotSummary::validate`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let at = out.len();
        self.encode_with(out, true);
        if self.key_bytes() > key_budget(out.len() - at) {
            // Sharing made the keys too cheap to decode within the budget.
            out.truncate(at);
            self.encode_with(out, false);
        }
    }

    /// Every key byte the decoded record holds (row keys, labels, hot keys).
    fn key_bytes(&self) -> usize {
        self.cells
            .iter()
            .map(|c| {
                c.start.len()
                    + c.end.as_ref().map_or(0, Vec::len)
                    + c.first_key.as_ref().map_or(0, Vec::len)
                    + c.last_key.as_ref().map_or(0, Vec::len)
                    + c.hot
                        .iter()
                        .flat_map(|h| &h.summary.items)
                        .map(|i| i.key.len())
                        .sum::<usize>()
            })
            .sum()
    }

    fn encode_with(&self, out: &mut Vec<u8>, share: bool) {
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        put_varint(out, zigzag(self.unix_ms));
        put_varint(out, self.step_ms);
        put_varint(out, self.cells.len() as u64);
        let mut prev: Option<&CellRecord> = None;
        for cell in &self.cells {
            encode_cell(out, cell, prev, share);
            prev = Some(cell);
        }
    }

    /// Decodes a record [`encode`](ColumnRecord::encode) wrote. Pure (no
    /// lock, no I/O), never panics; allocates only for lengths the input can hold.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first problem: not a binary record, an
    /// unknown version, a cut or malformed field, a length past the end,
    /// undefined flags, a hot-key summary that breaks its invariants, or
    /// trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<ColumnRecord, DecodeError> {
        let mut record = ColumnRecord {
            unix_ms: 0,
            step_ms: 0,
            cells: Vec::new(),
        };
        record.decode_into(bytes)?;
        Ok(record)
    }

    /// [`decode`](ColumnRecord::decode) into `self`, reusing the memory it
    /// holds: its cell vector and every cell's buffers (bucket id, keys,
    /// route ids, write and hot-key records) are overwritten in place, so a
    /// host that decodes many records into one `ColumnRecord` allocates only
    /// when a record needs more than the previous ones did. On success `self`
    /// equals what `decode` returns (its spare capacity aside). Pure (no lock,
    /// no I/O), never panics; the same checks and limits as `decode`.
    ///
    /// # Errors
    /// As [`decode`](ColumnRecord::decode); `self` then holds a valid record
    /// with unspecified contents (decode the next record into it, or drop it).
    pub fn decode_into(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        let Some(rest) = bytes.strip_prefix(&MAGIC) else {
            return Err(DecodeError::BadMagic);
        };
        let mut d = Decoder {
            r: Reader::new(rest),
            len: bytes.len(),
            key_budget: key_budget(bytes.len()),
        };
        let version = d.byte("version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        self.unix_ms = unzigzag(d.varint("unix_ms")?);
        self.step_ms = d.varint("step_ms")?;
        let n = d.count("cells", MIN_CELL_BYTES)?;
        // Cells past the new count keep their buffers for later records.
        self.cells.truncate(n);
        self.cells.reserve_exact(n - self.cells.len());
        for i in 0..n {
            if i == self.cells.len() {
                self.cells.push(empty_cell());
            }
            let (before, at) = self.cells.split_at_mut(i);
            decode_cell(&mut d, before.last(), &mut at[0], i)?;
        }
        if d.r.remaining() > 0 {
            return Err(DecodeError::TrailingBytes(d.r.remaining()));
        }
        Ok(())
    }
}

/// A cell with nothing in it, to decode into.
fn empty_cell() -> CellRecord {
    CellRecord {
        bucket_id: String::new(),
        start: Vec::new(),
        end: None,
        aggregate: false,
        route_ids: Vec::new(),
        route_count: 0,
        reads_leader: 0,
        reads_follower: 0,
        read_bytes: 0,
        writes: Vec::new(),
        hot: Vec::new(),
        first_key: None,
        last_key: None,
    }
}

/// `slot`'s buffer, emptied, for an `Option<Vec<u8>>` field about to be
/// decoded into (a fresh one when the slot is `None`).
fn reuse(slot: &mut Option<Vec<u8>>) -> Vec<u8> {
    let mut v = slot.take().unwrap_or_default();
    v.clear();
    v
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// `key` as (shared prefix with `base`, suffix length, suffix); whole when
/// not `share`.
fn put_key(out: &mut Vec<u8>, key: &[u8], base: &[u8], share: bool) {
    let shared = if share { common_prefix(key, base) } else { 0 };
    put_varint(out, shared as u64);
    put_varint(out, (key.len() - shared) as u64);
    out.extend_from_slice(&key[shared..]);
}

/// How a bucket id is written: (kind, incarnation suffix derived, payload).
enum BucketForm<'a> {
    Raw(&'a str),
    Route(u64),
    RouteSub(u64, u32),
    Virtual,
}

fn range_hash_hex(start: &[u8], end: Option<&[u8]>) -> String {
    format!("{:016x}", virtual_bucket_id(start, end))
}

/// The compact form of `id` for a row of `[start, end)`, re-rendered and
/// compared so only exact canonical ids are derived.
fn bucket_form<'a>(id: &'a str, start: &[u8], end: Option<&[u8]>) -> (BucketForm<'a>, bool) {
    let (base, incarnation) = match id.rsplit_once('@') {
        Some((base, hex)) if !base.is_empty() && hex == range_hash_hex(start, end) => (base, true),
        _ => (id, false),
    };
    if let Some(hash) = base.strip_prefix("virtual:")
        && hash == virtual_bucket_id(start, end).to_string()
    {
        return (BucketForm::Virtual, incarnation);
    }
    if let Some(rest) = base.strip_prefix("route:") {
        match rest.split_once('#') {
            Some((n, s)) => {
                if let (Ok(n), Ok(s)) = (n.parse::<u64>(), s.parse::<u32>())
                    && format!("route:{n}#{s}") == base
                {
                    return (BucketForm::RouteSub(n, s), incarnation);
                }
            }
            None => {
                if let Ok(n) = rest.parse::<u64>()
                    && format!("route:{n}") == base
                {
                    return (BucketForm::Route(n), incarnation);
                }
            }
        }
    }
    (BucketForm::Raw(id), false)
}

fn encode_cell(out: &mut Vec<u8>, c: &CellRecord, prev: Option<&CellRecord>, share: bool) {
    let (form, incarnation) = bucket_form(&c.bucket_id, &c.start, c.end.as_deref());
    let route = match form {
        BucketForm::Route(n) | BucketForm::RouteSub(n, _) => Some(n),
        _ => None,
    };
    let mut flags = 0u8;
    let start_is_prev_end =
        share && prev.and_then(|p| p.end.as_deref()) == Some(c.start.as_slice());
    if start_is_prev_end {
        flags |= START_IS_PREV_END;
    }
    let ids_from_bucket = route.is_some_and(|n| c.route_ids == [n]);
    if ids_from_bucket {
        flags |= IDS_FROM_BUCKET;
    }
    if c.route_count == c.route_ids.len() as u64 {
        flags |= COUNT_IS_IDS;
    }
    if c.reads_leader != 0 || c.reads_follower != 0 || c.read_bytes != 0 {
        flags |= HAS_READS;
    }
    if !c.writes.is_empty() {
        flags |= HAS_WRITES;
    }
    if !c.hot.is_empty() {
        flags |= HAS_HOT;
    }
    if c.first_key.is_some() {
        flags |= HAS_FIRST_KEY;
    }
    if c.last_key.is_some() {
        flags |= HAS_LAST_KEY;
    }
    let mut bucket = match form {
        BucketForm::Raw(_) => KIND_RAW,
        BucketForm::Route(_) => KIND_ROUTE,
        BucketForm::RouteSub(..) => KIND_ROUTE_SUB,
        BucketForm::Virtual => KIND_VIRTUAL,
    };
    if incarnation {
        bucket |= INCARNATION;
    }
    if c.aggregate {
        bucket |= AGGREGATE;
    }
    if c.end.is_none() {
        bucket |= END_UNBOUNDED;
    }
    out.push(flags);
    out.push(bucket);
    if !start_is_prev_end {
        put_key(
            out,
            &c.start,
            prev.map_or(&[][..], |p| p.start.as_slice()),
            share,
        );
    }
    if let Some(end) = &c.end {
        put_key(out, end, &c.start, share);
    }
    match form {
        BucketForm::Raw(id) => {
            put_varint(out, id.len() as u64);
            out.extend_from_slice(id.as_bytes());
        }
        BucketForm::Route(n) => put_varint(out, n),
        BucketForm::RouteSub(n, s) => {
            put_varint(out, n);
            put_varint(out, u64::from(s));
        }
        BucketForm::Virtual => {}
    }
    if !ids_from_bucket {
        put_varint(out, c.route_ids.len() as u64);
        for &id in &c.route_ids {
            put_varint(out, id);
        }
    }
    if flags & COUNT_IS_IDS == 0 {
        put_varint(out, c.route_count);
    }
    if flags & HAS_READS != 0 {
        put_varint(out, c.reads_leader);
        put_varint(out, c.reads_follower);
        put_varint(out, c.read_bytes);
    }
    if !c.writes.is_empty() {
        put_varint(out, c.writes.len() as u64);
        for w in &c.writes {
            let WriteRecord {
                group,
                term,
                writes,
                write_bytes,
            } = *w;
            put_varint(out, group);
            put_varint(out, term);
            put_varint(out, writes);
            put_varint(out, write_bytes);
        }
    }
    if !c.hot.is_empty() {
        put_varint(out, c.hot.len() as u64);
        for h in &c.hot {
            encode_hot(out, h, share);
        }
    }
    if let Some(first) = &c.first_key {
        put_key(out, first, &c.start, share);
    }
    if let Some(last) = &c.last_key {
        put_key(out, last, c.first_key.as_deref().unwrap_or(&c.start), share);
    }
}

/// The destructuring is exhaustive on purpose: a field added to
/// [`HotRecord`], [`HotSummary`] or [`HotItem`] fails to compile here until it
/// is encoded.
fn encode_hot(out: &mut Vec<u8>, h: &HotRecord, share: bool) {
    let HotRecord {
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
    out.push(series_rank(*series));
    put_varint(out, *group);
    put_varint(out, *term);
    put_varint(out, *total);
    put_varint(out, *floor);
    let mut flags = 0u8;
    if *sampled {
        flags |= SAMPLED;
    }
    if *unit_variance != 0 {
        flags |= HAS_UNIT_VARIANCE;
    }
    out.push(flags);
    if *unit_variance != 0 {
        put_varint(out, *unit_variance);
    }
    put_varint(out, items.len() as u64);
    let mut prev_key: &[u8] = &[];
    for item in items {
        let HotItem {
            key,
            estimate,
            lower,
            upper,
            truncated,
            seen,
        } = item;
        let shared = if share {
            common_prefix(key, prev_key)
        } else {
            0
        };
        put_varint(out, shared as u64);
        put_varint(
            out,
            (((key.len() - shared) as u64) << 1) | u64::from(*truncated),
        );
        out.extend_from_slice(&key[shared..]);
        // Differences of valid bounds are small; wrapping keeps any record exact.
        put_varint(out, *upper);
        put_varint(out, upper.wrapping_sub(*estimate));
        put_varint(out, estimate.wrapping_sub(*lower));
        put_varint(out, *seen);
        prev_key = key;
    }
}

/// A [`Reader`] that reports typed errors with the offset of the field.
struct Decoder<'a> {
    r: Reader<'a>,
    /// Length of the whole input, so offsets count from its first byte.
    len: usize,
    /// Key bytes the record may still expand to.
    key_budget: usize,
}

impl<'a> Decoder<'a> {
    fn offset(&self) -> usize {
        self.len - self.r.remaining()
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let offset = self.offset();
        self.r
            .varint()
            .ok_or(DecodeError::Truncated { offset, what })
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let offset = self.offset();
        self.r.byte().ok_or(DecodeError::Truncated { offset, what })
    }

    /// A count of elements that take at least `min_bytes` each, checked
    /// against the bytes left.
    fn count(&mut self, what: &'static str, min_bytes: usize) -> Result<usize, DecodeError> {
        let offset = self.offset();
        let len = self.varint(what)?;
        let fits = (self.r.remaining() / min_bytes.max(1)) as u64;
        if len > fits {
            return Err(DecodeError::TooLong { offset, what, len });
        }
        // `len <= remaining`, which is a usize.
        Ok(len as usize)
    }

    fn bytes(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let offset = self.offset();
        let too_long = DecodeError::TooLong {
            offset,
            what,
            len: n,
        };
        let n = usize::try_from(n).map_err(|_| too_long.clone())?;
        self.r.take(n).ok_or(too_long)
    }

    /// Takes `n` key bytes from the budget (before they are allocated).
    fn spend(&mut self, n: usize, offset: usize) -> Result<(), DecodeError> {
        self.key_budget = self
            .key_budget
            .checked_sub(n)
            .ok_or(DecodeError::TooLarge { offset })?;
        Ok(())
    }

    /// A key written by [`put_key`] against `base`, into `out` (cleared
    /// first; its capacity is reused).
    fn key_into(
        &mut self,
        base: &[u8],
        out: &mut Vec<u8>,
        what: &'static str,
    ) -> Result<(), DecodeError> {
        let offset = self.offset();
        let shared = self.varint(what)?;
        let Some(prefix) = usize::try_from(shared).ok().and_then(|s| base.get(..s)) else {
            return Err(DecodeError::BadPrefix {
                offset,
                len: shared,
            });
        };
        let n = self.varint(what)?;
        let suffix = self.bytes(n, what)?;
        self.spend(prefix.len() + suffix.len(), offset)?;
        out.clear();
        out.reserve_exact(prefix.len() + suffix.len());
        out.extend_from_slice(prefix);
        out.extend_from_slice(suffix);
        Ok(())
    }
}

fn decode_cell(
    d: &mut Decoder<'_>,
    prev: Option<&CellRecord>,
    cell: &mut CellRecord,
    index: usize,
) -> Result<(), DecodeError> {
    use std::fmt::Write as _;
    let flags_at = d.offset();
    let flags = d.byte("cell flags")?;
    let bucket_at = d.offset();
    let bucket = d.byte("bucket flags")?;
    let bad_bucket = DecodeError::BadFlags {
        offset: bucket_at,
        what: "bucket",
        flags: bucket,
    };
    if bucket & !BUCKET_BITS != 0 || bucket & KIND_MASK > KIND_VIRTUAL {
        return Err(bad_bucket);
    }
    let kind = bucket & KIND_MASK;
    let bad_flags = DecodeError::BadFlags {
        offset: flags_at,
        what: "cell",
        flags,
    };
    if flags & START_IS_PREV_END != 0 {
        let end = prev
            .and_then(|p| p.end.as_deref())
            .ok_or_else(|| bad_flags.clone())?;
        d.spend(end.len(), flags_at)?;
        cell.start.clear();
        cell.start.extend_from_slice(end);
    } else {
        let base = prev.map_or(&[][..], |p| p.start.as_slice());
        d.key_into(base, &mut cell.start, "start key")?;
    }
    let mut end = reuse(&mut cell.end);
    if bucket & END_UNBOUNDED == 0 {
        d.key_into(&cell.start, &mut end, "end key")?;
        cell.end = Some(end);
    }
    let id = &mut cell.bucket_id;
    id.clear();
    // Writing into a `String` cannot fail.
    let route = match kind {
        KIND_RAW => {
            if bucket & INCARNATION != 0 {
                return Err(bad_bucket);
            }
            let n = d.varint("bucket id")?;
            let at = d.offset();
            let raw = d.bytes(n, "bucket id")?;
            let text =
                std::str::from_utf8(raw).map_err(|_| DecodeError::BadBucketId { offset: at })?;
            id.push_str(text);
            None
        }
        KIND_ROUTE => {
            let n = d.varint("route id")?;
            let _ = write!(id, "route:{n}");
            Some(n)
        }
        KIND_ROUTE_SUB => {
            let n = d.varint("route id")?;
            let at = d.offset();
            let s = d.varint("sub-range")?;
            let s = u32::try_from(s).map_err(|_| DecodeError::TooLong {
                offset: at,
                what: "sub-range",
                len: s,
            })?;
            let _ = write!(id, "route:{n}#{s}");
            Some(n)
        }
        _ => {
            let _ = write!(
                id,
                "virtual:{}",
                virtual_bucket_id(&cell.start, cell.end.as_deref())
            );
            None
        }
    };
    if bucket & INCARNATION != 0 {
        let _ = write!(
            id,
            "@{:016x}",
            virtual_bucket_id(&cell.start, cell.end.as_deref())
        );
    }
    cell.aggregate = bucket & AGGREGATE != 0;
    cell.route_ids.clear();
    if flags & IDS_FROM_BUCKET != 0 {
        cell.route_ids.push(route.ok_or_else(|| bad_flags.clone())?);
    } else {
        let n = d.count("route ids", 1)?;
        cell.route_ids.reserve_exact(n);
        for _ in 0..n {
            cell.route_ids.push(d.varint("route id")?);
        }
    }
    cell.route_count = if flags & COUNT_IS_IDS != 0 {
        cell.route_ids.len() as u64
    } else {
        d.varint("route count")?
    };
    (cell.reads_leader, cell.reads_follower, cell.read_bytes) = if flags & HAS_READS != 0 {
        (
            d.varint("reads")?,
            d.varint("reads")?,
            d.varint("read bytes")?,
        )
    } else {
        (0, 0, 0)
    };
    cell.writes.clear();
    if flags & HAS_WRITES != 0 {
        let n = d.count("writes", MIN_WRITE_BYTES)?;
        cell.writes.reserve_exact(n);
        for _ in 0..n {
            cell.writes.push(WriteRecord {
                group: d.varint("write group")?,
                term: d.varint("write term")?,
                writes: d.varint("writes")?,
                write_bytes: d.varint("write bytes")?,
            });
        }
    }
    let n = if flags & HAS_HOT != 0 {
        d.count("hot summaries", MIN_HOT_BYTES)?
    } else {
        0
    };
    // Summaries past the new count keep their buffers for later cells.
    cell.hot.truncate(n);
    cell.hot.reserve_exact(n - cell.hot.len());
    for j in 0..n {
        if j == cell.hot.len() {
            cell.hot.push(HotRecord {
                series: crate::matrix::Series::Reads,
                group: 0,
                term: 0,
                summary: HotSummary::default(),
            });
        }
        decode_hot(d, &mut cell.hot[j], index)?;
    }
    let mut first = reuse(&mut cell.first_key);
    if flags & HAS_FIRST_KEY != 0 {
        d.key_into(&cell.start, &mut first, "first key")?;
        cell.first_key = Some(first);
    }
    let mut last = reuse(&mut cell.last_key);
    if flags & HAS_LAST_KEY != 0 {
        let base = cell.first_key.as_deref().unwrap_or(&cell.start);
        d.key_into(base, &mut last, "last key")?;
        cell.last_key = Some(last);
    }
    Ok(())
}

fn decode_hot(d: &mut Decoder<'_>, h: &mut HotRecord, cell: usize) -> Result<(), DecodeError> {
    let at = d.offset();
    let rank = d.byte("series")?;
    h.series = series_of_rank(usize::from(rank)).ok_or(DecodeError::BadSeries {
        offset: at,
        series: rank,
    })?;
    h.group = d.varint("hot group")?;
    h.term = d.varint("hot term")?;
    let summary = &mut h.summary;
    summary.total = d.varint("hot total")?;
    summary.floor = d.varint("hot floor")?;
    let flags_at = d.offset();
    let flags = d.byte("hot flags")?;
    if flags & !(SAMPLED | HAS_UNIT_VARIANCE) != 0 {
        return Err(DecodeError::BadFlags {
            offset: flags_at,
            what: "hot summary",
            flags,
        });
    }
    summary.sampled = flags & SAMPLED != 0;
    summary.unit_variance = if flags & HAS_UNIT_VARIANCE != 0 {
        d.varint("unit variance")?
    } else {
        0
    };
    let n = d.count("hot keys", MIN_ITEM_BYTES)?;
    if n > MAX_SUMMARY_ITEMS {
        return Err(DecodeError::Summary {
            cell,
            source: SummaryError::TooManyItems(n),
        });
    }
    let items = &mut summary.items;
    // Items past the new count keep their key buffers for later summaries.
    items.truncate(n);
    items.reserve_exact(n - items.len());
    for i in 0..n {
        let at = d.offset();
        let shared = d.varint("hot key")?;
        if i == items.len() {
            items.push(HotItem {
                key: Vec::new(),
                estimate: 0,
                lower: 0,
                upper: 0,
                truncated: false,
                seen: 0,
            });
        }
        let (before, here) = items.split_at_mut(i);
        let prev: &[u8] = before.last().map_or(&[], |p| p.key.as_slice());
        let Some(prefix) = usize::try_from(shared).ok().and_then(|s| prev.get(..s)) else {
            return Err(DecodeError::BadPrefix {
                offset: at,
                len: shared,
            });
        };
        let len_flag = d.varint("hot key")?;
        let suffix = d.bytes(len_flag >> 1, "hot key")?;
        let len = prefix.len() + suffix.len();
        if len > MAX_HOT_KEY_BYTES {
            return Err(DecodeError::Summary {
                cell,
                source: SummaryError::KeyTooLong(i, len),
            });
        }
        d.spend(len, at)?;
        let item = &mut here[0];
        item.key.clear();
        item.key.reserve_exact(len);
        item.key.extend_from_slice(prefix);
        item.key.extend_from_slice(suffix);
        item.upper = d.varint("hot upper")?;
        item.estimate = item.upper.wrapping_sub(d.varint("hot estimate")?);
        item.lower = item.estimate.wrapping_sub(d.varint("hot lower")?);
        item.seen = d.varint("hot seen")?;
        item.truncated = len_flag & 1 != 0;
    }
    summary
        .validate()
        .map_err(|source| DecodeError::Summary { cell, source })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::bucket::{incarnation_bucket_id, virtual_bucket_name};
    use crate::matrix::Series;

    fn item(key: &[u8], estimate: u64) -> HotItem {
        HotItem {
            key: key.to_vec(),
            estimate,
            lower: estimate / 2,
            upper: estimate + 3,
            truncated: false,
            seen: estimate / 4,
        }
    }

    fn cell(id: u64, start: &[u8], end: Option<&[u8]>) -> CellRecord {
        CellRecord {
            bucket_id: format!("route:{id}"),
            start: start.to_vec(),
            end: end.map(<[u8]>::to_vec),
            aggregate: false,
            route_ids: vec![id],
            route_count: 1,
            reads_leader: 3,
            reads_follower: 0,
            read_bytes: 300,
            writes: vec![WriteRecord {
                group: 2,
                term: 9,
                writes: 5,
                write_bytes: 540,
            }],
            hot: vec![HotRecord {
                series: Series::Writes,
                group: 2,
                term: 9,
                summary: HotSummary {
                    total: 5,
                    floor: 1,
                    sampled: false,
                    unit_variance: 0,
                    items: vec![item(b"user:1", 2)],
                },
            }],
            first_key: Some(start.to_vec()),
            last_key: None,
        }
    }

    fn encoded(r: &ColumnRecord) -> Vec<u8> {
        let mut out = Vec::new();
        r.encode(&mut out);
        out
    }

    fn sample() -> ColumnRecord {
        ColumnRecord {
            unix_ms: 1_700_000_000_000,
            step_ms: 60_000,
            cells: vec![
                cell(1, b"", Some(b"user:1000")),
                cell(2, b"user:1000", Some(b"user:2000")),
                cell(3, b"user:2000", None),
            ],
        }
    }

    #[test]
    fn canonical_bucket_ids_cost_no_string_and_a_shared_start_costs_no_key() {
        let r = sample();
        let bytes = encoded(&r);
        assert!(ColumnRecord::is_binary(&bytes));
        assert!(!ColumnRecord::is_binary(b"{\"unix_ms\":1}"));
        assert_eq!(ColumnRecord::decode(&bytes), Ok(r.clone()));
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("route:"), "route ids are derived");
        let json = serde_json::to_vec(&r).expect("json");
        assert!(
            bytes.len() * 8 < json.len(),
            "{} vs {}",
            bytes.len(),
            json.len()
        );
    }

    #[test]
    fn derived_and_non_canonical_bucket_ids_round_trip_exactly() {
        let (s, e) = (b"a".as_slice(), Some(b"m".as_slice()));
        let ids = [
            "route:7".to_string(),
            "route:7#3".to_string(),
            virtual_bucket_name(s, e),
            incarnation_bucket_id("route:7#3", s, e),
            incarnation_bucket_id(&virtual_bucket_name(s, e), s, e),
            // Not what the core renders: stored verbatim.
            "route:007".to_string(),
            "route:7#03".to_string(),
            "route:".to_string(),
            "route:18446744073709551616".to_string(),
            "virtual:1".to_string(),
            "route:7@0000000000000000".to_string(),
            incarnation_bucket_id("route:7", b"other", None),
            "@".to_string(),
            "ä⚡".to_string(),
            String::new(),
        ];
        for id in ids {
            let mut c = cell(7, s, e);
            c.bucket_id = id.clone();
            let r = ColumnRecord {
                unix_ms: -5,
                step_ms: 1,
                cells: vec![c],
            };
            assert_eq!(ColumnRecord::decode(&encoded(&r)), Ok(r), "{id}");
        }
    }

    #[test]
    fn cut_inputs_are_refused_and_never_panic() {
        let bytes = encoded(&sample());
        for n in 0..bytes.len() {
            assert!(
                ColumnRecord::decode(&bytes[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            ColumnRecord::decode(&long),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn bad_magic_version_flags_and_counts_have_their_own_errors() {
        let bytes = encoded(&sample());
        assert_eq!(
            ColumnRecord::decode(b"{\"unix_ms\":0}"),
            Err(DecodeError::BadMagic)
        );
        let mut v2 = bytes.clone();
        v2[4] = 2;
        assert_eq!(
            ColumnRecord::decode(&v2),
            Err(DecodeError::UnsupportedVersion(2))
        );
        // Header, then a cell count no input this short can hold.
        let mut huge = MAGIC.to_vec();
        huge.push(VERSION);
        put_varint(&mut huge, 0);
        put_varint(&mut huge, 1_000);
        put_varint(&mut huge, u64::MAX);
        assert!(matches!(
            ColumnRecord::decode(&huge),
            Err(DecodeError::TooLong { what: "cells", .. })
        ));
        // A first cell whose start is "the previous cell's end".
        let mut orphan = MAGIC.to_vec();
        orphan.push(VERSION);
        put_varint(&mut orphan, 0);
        put_varint(&mut orphan, 1_000);
        put_varint(&mut orphan, 1);
        orphan.extend_from_slice(&[START_IS_PREV_END | COUNT_IS_IDS, END_UNBOUNDED, 0, 0, 0]);
        assert!(matches!(
            ColumnRecord::decode(&orphan),
            Err(DecodeError::BadFlags { what: "cell", .. })
        ));
        // Undefined bucket bits.
        let mut bits = orphan.clone();
        let at = bits.len() - 5;
        bits[at] = COUNT_IS_IDS;
        bits[at + 1] = 0xC0;
        assert!(matches!(
            ColumnRecord::decode(&bits),
            Err(DecodeError::BadFlags { what: "bucket", .. })
        ));
    }

    #[test]
    fn a_prefix_longer_than_its_base_is_refused() {
        let mut b = MAGIC.to_vec();
        b.push(VERSION);
        put_varint(&mut b, 0);
        put_varint(&mut b, 1_000);
        put_varint(&mut b, 1);
        // First cell: start shares 5 bytes with an empty base.
        b.extend_from_slice(&[COUNT_IS_IDS, END_UNBOUNDED, 5, 0, 0, 0, 0]);
        assert!(matches!(
            ColumnRecord::decode(&b),
            Err(DecodeError::BadPrefix { len: 5, .. })
        ));
    }

    #[test]
    fn a_summary_that_breaks_its_invariants_is_refused() {
        let mut r = sample();
        r.cells[1].hot[0].summary.items[0].upper = 1_000; // above the total
        assert!(matches!(
            ColumnRecord::decode(&encoded(&r)),
            Err(DecodeError::Summary {
                cell: 1,
                source: SummaryError::Bounds(0)
            })
        ));
        let mut r = sample();
        r.cells[0].hot[0].summary.items[0].key = vec![b'x'; MAX_HOT_KEY_BYTES + 1];
        assert!(matches!(
            ColumnRecord::decode(&encoded(&r)),
            Err(DecodeError::Summary {
                cell: 0,
                source: SummaryError::KeyTooLong(0, 257)
            })
        ));
    }

    #[test]
    fn shared_keys_cannot_expand_past_the_budget() {
        // Hand-made: one 60 000-byte start, then cells that each repeat it
        // as their start (the previous end) and end, a few bytes each.
        let cells = 1_000u64;
        let mut b = MAGIC.to_vec();
        b.push(VERSION);
        put_varint(&mut b, 0);
        put_varint(&mut b, 1_000);
        put_varint(&mut b, cells);
        b.extend_from_slice(&[COUNT_IS_IDS, KIND_RAW]);
        put_varint(&mut b, 0);
        put_varint(&mut b, 60_000);
        b.extend(std::iter::repeat_n(b'k', 60_000));
        put_varint(&mut b, 60_000);
        put_varint(&mut b, 0);
        b.extend_from_slice(&[0, 0]); // empty id, no route ids
        for _ in 1..cells {
            b.extend_from_slice(&[START_IS_PREV_END | COUNT_IS_IDS, KIND_RAW]);
            put_varint(&mut b, 60_000);
            put_varint(&mut b, 0);
            b.extend_from_slice(&[0, 0]);
        }
        assert!(matches!(
            ColumnRecord::decode(&b),
            Err(DecodeError::TooLarge { .. })
        ));
        // The same record, encoded: written with whole keys, so it decodes.
        let key = vec![b'k'; 60_000];
        let r = ColumnRecord {
            unix_ms: 0,
            step_ms: 1_000,
            cells: (0..cells)
                .map(|_| CellRecord {
                    start: key.clone(),
                    end: Some(key.clone()),
                    ..empty_cell()
                })
                .collect(),
        };
        let bytes = encoded(&r);
        assert!(bytes.len() > 2 * 60_000 * cells as usize);
        assert_eq!(ColumnRecord::decode(&bytes), Ok(r));
    }

    // ---- property tests ----

    fn arb_key() -> impl Strategy<Value = Vec<u8>> {
        // A small alphabet, so neighbouring keys share prefixes.
        prop_oneof![
            prop::collection::vec(prop::sample::select(b"ab:0".to_vec()), 0..6),
            prop::collection::vec(any::<u8>(), 0..40),
        ]
    }

    fn arb_u64() -> impl Strategy<Value = u64> {
        prop_oneof![0..4u64, any::<u64>(), Just(u64::MAX)]
    }

    fn arb_series() -> impl Strategy<Value = Series> {
        prop::sample::select(vec![
            Series::Reads,
            Series::ReadBytes,
            Series::Writes,
            Series::WriteBytes,
            Series::LeaderReads,
            Series::FollowerReads,
        ])
    }

    /// A summary that passes `validate`: distinct keys, bounds nested under
    /// the total, sorted hottest first as the invariant says.
    fn arb_summary() -> impl Strategy<Value = HotSummary> {
        (
            prop::collection::btree_map(
                prop::collection::vec(any::<u8>(), 0..MAX_HOT_KEY_BYTES + 1),
                (0..1_000u64, 0..50u64, 0..50u64, any::<bool>()),
                0..6,
            ),
            0..100u64,
            any::<bool>(),
            prop_oneof![Just(0u64), any::<u64>()],
        )
            .prop_map(|(keys, extra, sampled, unit_variance)| {
                let mut items: Vec<HotItem> = keys
                    .into_iter()
                    .map(|(key, (estimate, below, above, truncated))| HotItem {
                        key,
                        estimate,
                        lower: estimate.saturating_sub(below),
                        upper: estimate + above,
                        truncated,
                        seen: estimate.saturating_sub(below) / 2,
                    })
                    .collect();
                items.sort_by(|a, b| {
                    b.estimate
                        .cmp(&a.estimate)
                        .then_with(|| b.upper.cmp(&a.upper))
                        .then_with(|| a.key.cmp(&b.key))
                });
                let total = items.iter().map(|i| i.upper).max().unwrap_or(0) + extra;
                HotSummary {
                    total,
                    floor: extra.min(total),
                    sampled,
                    unit_variance,
                    items,
                }
            })
    }

    fn arb_bucket_id() -> impl Strategy<Value = (u8, u64, u32, String)> {
        (0..6u8, arb_u64(), any::<u32>(), "[a-z:@#0-9]{0,12}")
    }

    fn arb_cell() -> impl Strategy<Value = (CellRecord, bool, (u8, u64, u32, String))> {
        let counts = (arb_u64(), arb_u64(), arb_u64());
        let writes = prop::collection::vec(
            (arb_u64(), arb_u64(), arb_u64(), arb_u64()).prop_map(|(g, t, w, b)| WriteRecord {
                group: g,
                term: t,
                writes: w,
                write_bytes: b,
            }),
            0..3,
        );
        let hot = prop::collection::vec(
            (arb_series(), arb_u64(), arb_u64(), arb_summary()).prop_map(
                |(series, group, term, summary)| HotRecord {
                    series,
                    group,
                    term,
                    summary,
                },
            ),
            0..3,
        );
        (
            (arb_key(), prop::option::of(arb_key()), any::<bool>()),
            (
                prop::collection::vec(arb_u64(), 0..4),
                prop::option::of(arb_u64()),
            ),
            counts,
            writes,
            hot,
            (prop::option::of(arb_key()), prop::option::of(arb_key())),
            arb_bucket_id(),
        )
            .prop_map(
                |((start, end, chain), (ids, count), (rl, rf, rb), writes, hot, (fk, lk), b)| {
                    let c = CellRecord {
                        bucket_id: String::new(),
                        start,
                        end,
                        aggregate: b.0 == 5,
                        route_count: count.unwrap_or(ids.len() as u64),
                        route_ids: ids,
                        reads_leader: rl,
                        reads_follower: rf,
                        read_bytes: rb,
                        writes,
                        hot,
                        first_key: fk,
                        last_key: lk,
                    };
                    (c, chain, b)
                },
            )
    }

    fn arb_record() -> impl Strategy<Value = ColumnRecord> {
        (
            any::<i64>(),
            arb_u64(),
            prop::collection::vec(arb_cell(), 0..12),
        )
            .prop_map(|(unix_ms, step_ms, cells)| {
                let mut out: Vec<CellRecord> = Vec::with_capacity(cells.len());
                for (mut c, chain, (kind, n, sub, raw)) in cells {
                    // Chain most rows onto the previous end, as a route table does.
                    if chain && let Some(end) = out.last().and_then(|p| p.end.clone()) {
                        c.start = end;
                    }
                    let (s, e) = (c.start.as_slice(), c.end.as_deref());
                    c.bucket_id = match kind {
                        0 => format!("route:{n}"),
                        1 => format!("route:{n}#{sub}"),
                        2 => virtual_bucket_name(s, e),
                        3 => incarnation_bucket_id(&format!("route:{n}"), s, e),
                        4 => incarnation_bucket_id(&virtual_bucket_name(s, e), s, e),
                        _ => raw,
                    };
                    if kind == 0 && sub % 2 == 0 {
                        c.route_ids = vec![n];
                        c.route_count = 1;
                    }
                    out.push(c);
                }
                ColumnRecord {
                    unix_ms,
                    step_ms,
                    cells: out,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_record_round_trips_exactly(r in arb_record()) {
            let bytes = encoded(&r);
            prop_assert_eq!(ColumnRecord::decode(&bytes), Ok(r));
        }

        #[test]
        fn decoding_into_a_used_record_gives_exactly_what_decode_gives(
            first in arb_record(),
            second in arb_record(),
            damage in any::<prop::sample::Index>(),
        ) {
            // Whatever the record held before (a bigger or smaller record,
            // or the leftovers of a failed decode), it ends up equal to the
            // fresh decode of the new bytes.
            let mut reused = ColumnRecord::decode(&encoded(&first)).expect("valid");
            prop_assert_eq!(reused.decode_into(&encoded(&second)), Ok(()));
            prop_assert_eq!(&reused, &second);
            let mut cut = encoded(&first);
            cut.truncate(damage.index(cut.len()));
            prop_assert!(reused.decode_into(&cut).is_err());
            prop_assert_eq!(reused.decode_into(&encoded(&second)), Ok(()));
            prop_assert_eq!(&reused, &second);
        }

        #[test]
        fn damaged_records_decode_or_fail_without_panicking(
            r in arb_record(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = encoded(&r);
            let full = bytes.len();
            for (at, v) in flips {
                let i = at.index(full);
                // Keep the header, so the body is what gets parsed.
                if i > MAGIC.len() {
                    bytes[i] = v;
                }
            }
            if let Ok(back) = ColumnRecord::decode(&bytes) {
                // Whatever decodes holds only valid summaries.
                for c in &back.cells {
                    for h in &c.hot {
                        prop_assert!(h.summary.validate().is_ok());
                    }
                }
            }
            let n = cut.index(full);
            prop_assert!(ColumnRecord::decode(&encoded(&r)[..n]).is_err());
        }

        #[test]
        fn arbitrary_bytes_after_the_header_never_panic(
            body in prop::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut bytes = MAGIC.to_vec();
            bytes.push(VERSION);
            bytes.extend_from_slice(&body);
            let _ = ColumnRecord::decode(&bytes);
        }
    }
}
