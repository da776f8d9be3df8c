//! The compact peer encoding: what peers send each other instead of JSON when the caller
//! asks for it (`Accept: application/vnd.keyviz.matrix-compact`). Browsers always get JSON.
//!
//! Layout: the magic `KVMC1\n`; a little-endian `u32` length and a JSON header, which is the
//! matrix with every per-cell array empty (series, ids, key ranges, labels...); then the
//! column timestamps as a LEB128 count plus zigzag-LEB128 deltas; then, for every row in
//! header order, `values`, `raft_group_ids`, `leader_terms` and `conflicts`, each as a LEB128
//! length plus LEB128 elements. Small counts (the common case) take one byte, so the body is
//! smaller than JSON and decodes several times faster. The decoded matrix is validated like
//! a JSON one.
//!
//! The fan-out's own encodings: `KVRT1` row totals (round 1), and matrices on shared
//! boundaries (round 2) as `KVMB1` (rows' metadata in the JSON header) or `KVMB2` (rows'
//! metadata in binary before each row's cells, no JSON per row); docs/ADMIN.md has the
//! layouts.

use keyviz::boundaries::{
    Boundaries, BoundaryMatrix, CellPart, IdentityRun, PackedBoundaryMatrix, RowTotal,
    RunBoundaryMatrix, RunRow,
};
use keyviz::{Matrix, MatrixRow};

use super::client::PeerError;

/// Media type of the compact encoding.
pub const CONTENT_TYPE: &str = "application/vnd.keyviz.matrix-compact";
const MAGIC: &[u8] = b"KVMC1\n";

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    // Most counts take one or two bytes: one capacity check each instead of one per byte.
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    if v < 0x4000 {
        out.extend_from_slice(&[(v as u8) | 0x80, (v >> 7) as u8]);
        return;
    }
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Media type of a matrix on shared boundaries (the second round of a fan-out).
pub const BOUNDARY_CONTENT_TYPE: &str = "application/vnd.keyviz.matrix-boundary";
/// Media type of per-row totals (the first round of a fan-out).
pub const TOTALS_CONTENT_TYPE: &str = "application/vnd.keyviz.row-totals";
const BOUNDARY_MAGIC: &[u8] = b"KVMB1\n";
/// Media type of the second version of a matrix on shared boundaries
/// ([`encode_boundary_v2`]: row metadata in binary). A peer answers it only to a request
/// that names it in `Accept`; older peers, which know only [`BOUNDARY_CONTENT_TYPE`], take
/// this name for theirs (their match is by prefix) and answer `KVMB1`, which the
/// aggregator still decodes.
pub const BOUNDARY_V2_CONTENT_TYPE: &str = "application/vnd.keyviz.matrix-boundary-v2";
const BOUNDARY_V2_MAGIC: &[u8] = b"KVMB2\n";
const TOTALS_MAGIC: &[u8] = b"KVRT1\n";
/// Longest key in a totals answer or a boundary list (the API's `MAX_KEY_BYTES`).
const MAX_WIRE_KEY: usize = crate::api::MAX_KEY_BYTES;
/// Most key bytes a boundary list may expand to once prefix-decoded.
const MAX_BOUNDARY_KEY_BYTES: usize = 16 * 1024 * 1024;

/// Encodes `m` in the compact form.
///
/// # Errors
/// Only if the header cannot be serialised (not for well-formed matrices).
pub fn encode(m: &Matrix) -> Result<Vec<u8>, serde_json::Error> {
    let header = Matrix {
        column_unix_ms: Vec::new(),
        rows: m
            .rows
            .iter()
            .map(|r| MatrixRow {
                bucket_id: r.bucket_id.clone(),
                label: r.label.clone(),
                start: r.start.clone(),
                end: r.end.clone(),
                aggregate: r.aggregate,
                route_ids: r.route_ids.clone(),
                route_ids_truncated: r.route_ids_truncated,
                route_count: r.route_count,
                conflict: r.conflict,
                preview: r.preview.clone(),
                first_key: r.first_key.clone(),
                last_key: r.last_key.clone(),
                // Sparse (cells with several write identities only): rides in the header.
                write_lanes: r.write_lanes.clone(),
                ..MatrixRow::default()
            })
            .collect(),
        series: m.series,
        generated_at: m.generated_at.clone(),
        step_ms: m.step_ms,
        node_id: m.node_id.clone(),
    };
    let head = serde_json::to_vec(&header)?;
    let mut out = Vec::new();
    encode_into(m, &head, MAGIC, false, &mut out);
    Ok(out)
}

fn encode_into(m: &Matrix, head: &[u8], magic: &[u8], runs: bool, out: &mut Vec<u8>) {
    let cells: usize = m
        .rows
        .iter()
        .map(|r| r.values.len() + r.raft_group_ids.len() + r.leader_terms.len())
        .sum();
    // Values of a coarse row take two or three bytes; identities are runs (a few bytes a
    // row): one reservation for the common body, so it is not copied while growing.
    let values: usize = m.rows.iter().map(|r| r.values.len()).sum();
    let identities = if runs {
        m.rows.len() * 16
    } else {
        (cells - values) * 2
    };
    out.reserve(magic.len() + 4 + head.len() + values * 3 + identities + m.rows.len() * 4 + 64);
    out.extend_from_slice(magic);
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(head);
    put_varint(out, m.column_unix_ms.len() as u64);
    let mut prev = 0i64;
    for &c in &m.column_unix_ms {
        put_varint(out, zigzag(c.wrapping_sub(prev)));
        prev = c;
    }
    for r in &m.rows {
        put_varint(out, r.values.len() as u64);
        put_varints(out, &r.values);
        for arr in [&r.raft_group_ids, &r.leader_terms] {
            if runs {
                put_runs(out, arr);
            } else {
                put_varint(out, arr.len() as u64);
                for &v in arr.iter() {
                    put_varint(out, v);
                }
            }
        }
        put_varint(out, r.conflicts.len() as u64);
        out.extend(r.conflicts.iter().map(|&c| u8::from(c)));
    }
}

/// Appends every value of `vs` as LEB128, writing into a slice sized for the longest case
/// (ten bytes each) and cut back after: no capacity check per byte.
fn put_varints(out: &mut Vec<u8>, vs: &[u64]) {
    let start = out.len();
    out.resize(start + vs.len() * 10, 0);
    let mut i = start;
    for &v in vs {
        if v < 0x80 {
            out[i] = v as u8;
            i += 1;
        } else if v < 0x4000 {
            out[i] = (v as u8) | 0x80;
            out[i + 1] = (v >> 7) as u8;
            i += 2;
        } else {
            let mut v = v;
            while v >= 0x80 {
                out[i] = (v as u8) | 0x80;
                v >>= 7;
                i += 1;
            }
            out[i] = v as u8;
            i += 1;
        }
    }
    out.truncate(i);
}

/// An array as its length, then (run length, value) pairs: identities change rarely
/// along a row, so this is about two bytes per row instead of one or more per cell.
fn put_runs(out: &mut Vec<u8>, arr: &[u64]) {
    put_varint(out, arr.len() as u64);
    let mut i = 0;
    while i < arr.len() {
        let v = arr[i];
        let mut j = i + 1;
        while j < arr.len() && arr[j] == v {
            j += 1;
        }
        put_varint(out, (j - i) as u64);
        put_varint(out, v);
        i = j;
    }
}

/// The JSON header of a boundary body: the matrix without its per-cell arrays, and
/// without `write_lanes` (a boundary answer carries its mixed cells' identities as parts).
/// Copies no cell array.
fn header_json(m: &Matrix) -> Result<Vec<u8>, serde_json::Error> {
    let header = Matrix {
        column_unix_ms: Vec::new(),
        rows: m
            .rows
            .iter()
            .map(|r| MatrixRow {
                bucket_id: r.bucket_id.clone(),
                label: r.label.clone(),
                start: r.start.clone(),
                end: r.end.clone(),
                aggregate: r.aggregate,
                route_ids: r.route_ids.clone(),
                route_ids_truncated: r.route_ids_truncated,
                route_count: r.route_count,
                conflict: r.conflict,
                preview: r.preview.clone(),
                first_key: r.first_key.clone(),
                last_key: r.last_key.clone(),
                ..MatrixRow::default()
            })
            .collect(),
        series: m.series,
        generated_at: m.generated_at.clone(),
        step_ms: m.step_ms,
        node_id: m.node_id.clone(),
    };
    serde_json::to_vec(&header)
}

/// Encodes a matrix on shared boundaries ([`BOUNDARY_CONTENT_TYPE`]): the compact layout
/// with the magic `KVMB1\n`, group and term arrays as runs, then the identity parts as a
/// LEB128 count and (row, column, group, term, value) each, delta-coded on (row, column).
///
/// # Errors
/// Only if the header cannot be serialised (not for well-formed matrices).
pub fn encode_boundary(b: &BoundaryMatrix) -> Result<Vec<u8>, serde_json::Error> {
    let head = header_json(&b.matrix)?;
    let mut out = Vec::new();
    encode_into(&b.matrix, &head, BOUNDARY_MAGIC, true, &mut out);
    put_parts(&mut out, &b.parts);
    Ok(out)
}

/// Row flags of a `KVMB2` row header: which optional fields follow, and the booleans.
const ROW_LABEL: u64 = 1;
const ROW_START: u64 = 2;
const ROW_END: u64 = 4;
const ROW_AGGREGATE: u64 = 8;
const ROW_IDS_TRUNCATED: u64 = 16;
const ROW_CONFLICT: u64 = 32;
const ROW_PREVIEW: u64 = 64;
const ROW_FIRST_KEY: u64 = 128;
const ROW_LAST_KEY: u64 = 256;
/// Every flag a `KVMB2` row may carry; any other bit is refused (a later version).
const ROW_FLAGS: u64 = 511;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A row's metadata in binary (what the `KVMB1` JSON header carries of it): flags, bucket
/// id, the optional label and keys, route count and ids (zigzag deltas), preview, first and
/// last key.
fn put_row_meta(out: &mut Vec<u8>, r: &MatrixRow) {
    let flag = |on: bool, bit: u64| if on { bit } else { 0 };
    let flags = flag(r.label.is_some(), ROW_LABEL)
        | flag(r.start.is_some(), ROW_START)
        | flag(r.end.is_some(), ROW_END)
        | flag(r.aggregate, ROW_AGGREGATE)
        | flag(r.route_ids_truncated, ROW_IDS_TRUNCATED)
        | flag(r.conflict, ROW_CONFLICT)
        | flag(r.preview.is_some(), ROW_PREVIEW)
        | flag(r.first_key.is_some(), ROW_FIRST_KEY)
        | flag(r.last_key.is_some(), ROW_LAST_KEY);
    put_varint(out, flags);
    put_bytes(out, r.bucket_id.as_bytes());
    for field in [
        r.label.as_deref().map(str::as_bytes),
        r.start.as_deref(),
        r.end.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        put_bytes(out, field);
    }
    put_varint(out, r.route_count);
    put_varint(out, r.route_ids.len() as u64);
    let mut prev = 0u64;
    for &id in &r.route_ids {
        put_varint(out, zigzag(id.wrapping_sub(prev) as i64));
        prev = id;
    }
    for field in [
        r.preview.as_deref().map(str::as_bytes),
        r.first_key.as_deref(),
        r.last_key.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        put_bytes(out, field);
    }
}

/// The JSON header of a `KVMB2` answer: `m`'s series, times and node, without rows or
/// columns (both are binary in `KVMB2`).
fn v2_header(m: &Matrix) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Matrix {
        column_unix_ms: Vec::new(),
        rows: Vec::new(),
        series: m.series,
        generated_at: m.generated_at.clone(),
        step_ms: m.step_ms,
        node_id: m.node_id.clone(),
    })
}

/// Encodes a matrix on shared boundaries in the second version ([`BOUNDARY_V2_CONTENT_TYPE`],
/// magic `KVMB2\n`): the `KVMB1` layout, except that the JSON header carries no rows and
/// every row's metadata is binary, right before its cells (`put_row_meta`), so a decoder
/// parses no JSON per row.
///
/// # Errors
/// Only if the header cannot be serialised (not for well-formed matrices).
pub fn encode_boundary_v2(b: &BoundaryMatrix) -> Result<Vec<u8>, serde_json::Error> {
    let m = &b.matrix;
    let head = v2_header(m)?;
    let values: usize = m.rows.iter().map(|r| r.values.len()).sum();
    let mut out = Vec::with_capacity(
        BOUNDARY_V2_MAGIC.len() + 4 + head.len() + values * 3 + m.rows.len() * 96 + 64,
    );
    out.extend_from_slice(BOUNDARY_V2_MAGIC);
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&head);
    put_varint(&mut out, m.column_unix_ms.len() as u64);
    let mut prev = 0i64;
    for &c in &m.column_unix_ms {
        put_varint(&mut out, zigzag(c.wrapping_sub(prev)));
        prev = c;
    }
    put_varint(&mut out, m.rows.len() as u64);
    for r in &m.rows {
        put_row_meta(&mut out, r);
        put_varint(&mut out, r.values.len() as u64);
        put_varints(&mut out, &r.values);
        put_runs(&mut out, &r.raft_group_ids);
        put_runs(&mut out, &r.leader_terms);
        put_varint(&mut out, r.conflicts.len() as u64);
        out.extend(r.conflicts.iter().map(|&c| u8::from(c)));
    }
    put_parts(&mut out, &b.parts);
    Ok(out)
}

/// Encodes a matrix on shared boundaries in run form as `KVMB1`: byte for byte what
/// [`encode_boundary`] writes of its per-cell form ([`RunBoundaryMatrix::from_boundary`]),
/// without a per-cell identity array to scan (the runs are written as they are). Pure;
/// takes no lock.
///
/// # Errors
/// Only if the header cannot be serialised (not for well-formed matrices).
pub fn encode_boundary_runs(b: &RunBoundaryMatrix) -> Result<Vec<u8>, serde_json::Error> {
    let h = b.header();
    let head = header_json(h)?;
    let mut out = Vec::with_capacity(
        BOUNDARY_MAGIC.len() + 4 + head.len() + b.values().len() * 3 + b.len() * 20 + 64,
    );
    out.extend_from_slice(BOUNDARY_MAGIC);
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&head);
    put_columns(&mut out, &h.column_unix_ms);
    for (_, cells) in b.rows() {
        put_run_cells(&mut out, cells);
    }
    put_parts(&mut out, b.parts());
    Ok(out)
}

/// Encodes a matrix on shared boundaries in run form as `KVMB2`: byte for byte what
/// [`encode_boundary_v2`] writes of its per-cell form. Pure; takes no lock.
///
/// # Errors
/// Only if the header cannot be serialised (not for well-formed matrices).
pub fn encode_boundary_runs_v2(b: &RunBoundaryMatrix) -> Result<Vec<u8>, serde_json::Error> {
    let m = b.header();
    let head = v2_header(m)?;
    let mut out = Vec::with_capacity(
        BOUNDARY_V2_MAGIC.len() + 4 + head.len() + b.values().len() * 3 + b.len() * 96 + 64,
    );
    out.extend_from_slice(BOUNDARY_V2_MAGIC);
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&head);
    put_columns(&mut out, &m.column_unix_ms);
    put_varint(&mut out, b.len() as u64);
    for (meta, cells) in b.rows() {
        put_row_meta(&mut out, meta);
        put_run_cells(&mut out, cells);
    }
    put_parts(&mut out, b.parts());
    Ok(out)
}

/// The column timestamps: LEB128 count, zigzag-LEB128 deltas.
fn put_columns(out: &mut Vec<u8>, columns: &[i64]) {
    put_varint(out, columns.len() as u64);
    let mut prev = 0i64;
    for &c in columns {
        put_varint(out, zigzag(c.wrapping_sub(prev)));
        prev = c;
    }
}

/// One row's cells in the boundary layout from its run form: values, group and term
/// runs, conflict flags, the same bytes as the per-cell row's.
fn put_run_cells(out: &mut Vec<u8>, cells: RunRow<'_>) {
    put_varint(out, cells.values.len() as u64);
    put_varints(out, cells.values);
    put_run_list(out, cells.groups);
    put_run_list(out, cells.terms);
    put_varint(out, cells.conflicts.len() as u64);
    out.extend(cells.conflicts.iter().map(|&c| u8::from(c)));
}

/// Runs in the `put_runs` layout: the cells they cover, then (run, value) pairs. A
/// [`RunBoundaryMatrix`] keeps its runs maximal, which is what `put_runs` finds in the
/// array they stand for, so the bytes are the same.
fn put_run_list(out: &mut Vec<u8>, runs: &[IdentityRun]) {
    put_varint(out, runs.iter().map(|r| u64::from(r.len)).sum());
    for r in runs {
        put_varint(out, u64::from(r.len));
        put_varint(out, r.value);
    }
}

fn put_parts(out: &mut Vec<u8>, parts: &[CellPart]) {
    put_varint(out, parts.len() as u64);
    let mut prev_row = 0u32;
    for p in parts {
        put_varint(out, u64::from(p.row.wrapping_sub(prev_row)));
        prev_row = p.row;
        put_varint(out, u64::from(p.column));
        put_varint(out, p.group);
        put_varint(out, p.term);
        put_varint(out, p.value);
    }
}

/// Decodes a [`BOUNDARY_CONTENT_TYPE`] body (validation is the caller's: the matrix's
/// invariants and [`BoundaryMatrix::validate_parts`]).
///
/// # Errors
/// [`PeerError::Decode`] for a bad magic, header or truncated/overlong data.
pub fn decode_boundary(body: &[u8]) -> Result<BoundaryMatrix, PeerError> {
    let (matrix, mut c) = decode_prefix(body, BOUNDARY_MAGIC, true)?;
    let n = c.len()?;
    // Each part takes at least five bytes.
    if n > (c.b.len() - c.i) / 5 {
        return Err(truncated());
    }
    let mut parts = Vec::with_capacity(n);
    let mut row = 0u32;
    for _ in 0..n {
        let dr = u32::try_from(c.varint()?).map_err(|_| truncated())?;
        row = row.checked_add(dr).ok_or_else(truncated)?;
        let column = u32::try_from(c.varint()?).map_err(|_| truncated())?;
        parts.push(CellPart {
            row,
            column,
            group: c.varint()?,
            term: c.varint()?,
            value: c.varint()?,
        });
    }
    if c.i != c.b.len() {
        return Err(PeerError::Decode("boundary matrix: trailing bytes".into()));
    }
    Ok(BoundaryMatrix { matrix, parts })
}

/// Decodes a [`BOUNDARY_CONTENT_TYPE`] (`KVMB1`) or [`BOUNDARY_V2_CONTENT_TYPE`]
/// (`KVMB2`, told apart by the magic) body into `out` (cleared first, its buffers reused):
/// the header's rows, every value in one row-major buffer, identities as runs and the
/// parts, without one vector per row and array. Checks what [`decode_boundary`] and
/// the caller's validation check ([`PackedBoundaryMatrix::validate`], and every column
/// summing to at most `max_column_total`, clamped to 2^63 − 1: pass
/// [`super::bounds::MAX_COLUMN_TOTAL`]); conflict flags are read and dropped (the fold
/// computes its own). An answer has at most one row per boundary row: more than `max_rows`
/// rows (pass the number of boundaries asked for) is refused before any cell is read, so
/// the values buffer never exceeds `max_rows × columns × 8` bytes, nor 8 bytes per body
/// byte; runs and parts take at most 16 bytes per two body bytes.
///
/// # Errors
/// [`PeerError::Decode`] for a bad magic, header or truncated/overlong data,
/// [`PeerError::Invalid`] for a well-formed answer that breaks the matrix's invariants.
pub fn decode_boundary_packed(
    body: &[u8],
    out: &mut PackedBoundaryMatrix,
    max_rows: usize,
    max_column_total: u64,
) -> Result<(), PeerError> {
    out.clear();
    let (v2, rest) = match body.strip_prefix(BOUNDARY_V2_MAGIC) {
        Some(rest) => (true, rest),
        None => (
            false,
            body.strip_prefix(BOUNDARY_MAGIC)
                .ok_or_else(|| PeerError::Decode("boundary matrix: bad magic".into()))?,
        ),
    };
    let (head, mut c) = split_head(rest)?;
    let mut header = super::decode::decode_json(head)?;
    // The header's own column list must be empty: columns follow it in binary.
    if !header.column_unix_ms.is_empty() {
        return Err(PeerError::Invalid(
            "boundary matrix: columns in the JSON header".into(),
        ));
    }
    let ncols = c.len()?;
    let mut columns = std::mem::take(&mut out.header.column_unix_ms);
    columns.reserve(ncols);
    let mut prev = 0i64;
    for _ in 0..ncols {
        prev = prev.wrapping_add(unzigzag(c.varint()?));
        columns.push(prev);
    }
    header.column_unix_ms = columns;
    let rows = if v2 {
        // Rows follow in binary, each with its cells.
        if !header.rows.is_empty() {
            return Err(PeerError::Invalid(
                "boundary matrix: rows in the JSON header of a KVMB2 answer".into(),
            ));
        }
        c.len()?
    } else {
        // Cell arrays never ride in the header; lanes may (older peers sent them), but the
        // identities of mixed cells are the parts, so they are dropped.
        for row in &mut header.rows {
            if !(row.values.is_empty()
                && row.raft_group_ids.is_empty()
                && row.leader_terms.is_empty()
                && row.conflicts.is_empty())
            {
                return Err(PeerError::Invalid(format!(
                    "boundary matrix: bucket {:?} carries cells in its JSON header",
                    row.bucket_id
                )));
            }
            row.write_lanes = Vec::new();
        }
        header.rows.len()
    };
    if rows > max_rows {
        return Err(PeerError::Invalid(format!(
            "boundary matrix: {rows} rows for {max_rows} boundary rows"
        )));
    }
    // Every value takes at least one byte: more cells than bytes left is a truncation,
    // checked before reserving for them.
    let cells = rows.saturating_mul(ncols);
    if cells > c.b.len() - c.i || cells > keyviz::MAX_MATRIX_CELLS {
        return Err(truncated());
    }
    out.values.reserve(cells);
    out.row_runs.reserve(rows);
    let mut totals = ColumnTotals::new(ncols, max_column_total);
    if v2 {
        // At most `max_rows` and at most the bytes left (both checked above). Fresh rows:
        // reusing the previous answer's row buffers saved little CPU and, kept across the
        // fan-out, raised the allocator's peak (docs/perf-admin.md).
        header.rows.reserve(rows);
        for _ in 0..rows {
            let mut row = MatrixRow::default();
            c.row_meta(&mut row)?;
            c.row_cells(out, &mut totals, &row.bucket_id)?;
            header.rows.push(row);
        }
    } else {
        for row in &header.rows {
            c.row_cells(out, &mut totals, &row.bucket_id)?;
        }
    }
    let n = c.len()?;
    // Each part takes at least five bytes.
    if n > (c.b.len() - c.i) / 5 {
        return Err(truncated());
    }
    out.parts.reserve(n);
    let mut row = 0u32;
    for _ in 0..n {
        let dr = u32::try_from(c.varint()?).map_err(|_| truncated())?;
        row = row.checked_add(dr).ok_or_else(truncated)?;
        let column = u32::try_from(c.varint()?).map_err(|_| truncated())?;
        out.parts.push(CellPart {
            row,
            column,
            group: c.varint()?,
            term: c.varint()?,
            value: c.varint()?,
        });
    }
    if c.i != c.b.len() {
        return Err(PeerError::Decode("boundary matrix: trailing bytes".into()));
    }
    out.header = header;
    out.validate().map_err(PeerError::Invalid)
}

/// What a node says with its totals: who it is and when it answered.
#[derive(serde::Serialize, serde::Deserialize)]
struct TotalsHeader {
    #[serde(default)]
    node_id: Option<String>,
    #[serde(default)]
    generated_at: String,
}

/// Per-row totals as a peer sends them ([`TOTALS_CONTENT_TYPE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTotals {
    /// The answering node, as it says.
    pub node_id: Option<String>,
    /// Its timestamp of the answer.
    pub generated_at: String,
    /// One entry per row, in key order.
    pub totals: Vec<RowTotal>,
}

/// Appends `key` prefix-coded against `prev`: shared prefix length, suffix length, suffix.
fn put_key(out: &mut Vec<u8>, prev: &[u8], key: &[u8]) {
    let shared = prev.iter().zip(key).take_while(|(a, b)| a == b).count();
    put_varint(out, shared as u64);
    put_varint(out, (key.len() - shared) as u64);
    out.extend_from_slice(&key[shared..]);
}

/// Encodes totals: magic `KVRT1\n`, u32 length + JSON header, LEB128 count, then per row
/// its prefix-coded start key and its total.
///
/// # Errors
/// Only if the header cannot be serialised.
pub fn encode_totals(t: &NodeTotals) -> Result<Vec<u8>, serde_json::Error> {
    let head = serde_json::to_vec(&TotalsHeader {
        node_id: t.node_id.clone(),
        generated_at: t.generated_at.clone(),
    })?;
    let mut out = Vec::with_capacity(TOTALS_MAGIC.len() + 4 + head.len() + t.totals.len() * 6);
    out.extend_from_slice(TOTALS_MAGIC);
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&head);
    put_varint(&mut out, t.totals.len() as u64);
    let mut prev: &[u8] = &[];
    for r in &t.totals {
        put_key(&mut out, prev, &r.start);
        put_varint(&mut out, r.total);
        prev = &r.start;
    }
    Ok(out)
}

/// Decodes a [`TOTALS_CONTENT_TYPE`] body. Keys longer than the API's key limit, counts
/// beyond the bytes left and trailing bytes are errors; keys must be in order.
///
/// # Errors
/// [`PeerError::Decode`] for malformed bodies, [`PeerError::Invalid`] for unsorted keys.
pub fn decode_totals(body: &[u8]) -> Result<NodeTotals, PeerError> {
    let rest = body
        .strip_prefix(TOTALS_MAGIC)
        .ok_or_else(|| PeerError::Decode("row totals: bad magic".into()))?;
    let (head, mut c) = split_head(rest)?;
    let h: TotalsHeader =
        serde_json::from_slice(head).map_err(|e| PeerError::Decode(format!("row totals: {e}")))?;
    let n = c.len()?;
    // Each entry takes at least three bytes.
    if n > (c.b.len() - c.i) / 3 {
        return Err(truncated());
    }
    let mut totals: Vec<RowTotal> = Vec::with_capacity(n);
    for _ in 0..n {
        let prev = totals.last().map_or(&[][..], |t| t.start.as_slice());
        let start = c.key(prev)?;
        if start.as_slice() < prev {
            return Err(PeerError::Invalid("row totals are not in key order".into()));
        }
        let total = c.varint()?;
        totals.push(RowTotal { start, total });
    }
    if c.i != c.b.len() {
        return Err(PeerError::Decode("row totals: trailing bytes".into()));
    }
    Ok(NodeTotals {
        node_id: h.node_id,
        generated_at: h.generated_at,
        totals,
    })
}

/// The boundaries as a URL-safe query value: unpadded base64url of a LEB128 count and the
/// prefix-coded keys.
#[must_use]
pub fn encode_boundaries(b: &Boundaries) -> String {
    use base64::Engine as _;
    let mut out = Vec::new();
    put_varint(&mut out, b.len() as u64);
    let mut prev: &[u8] = &[];
    for k in b.keys() {
        put_key(&mut out, prev, k);
        prev = k;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
}

/// Parses a `boundaries` query value ([`encode_boundaries`]); at most
/// [`keyviz::boundaries::MAX_BOUNDARIES`] keys of at most the API's key limit each, and
/// at most 16 MiB of keys in all.
///
/// # Errors
/// A description of what is wrong (the API answers 400 with it).
pub fn decode_boundaries(value: &str) -> Result<Boundaries, String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value.trim())
        .map_err(|e| format!("boundaries is not base64url: {e}"))?;
    let mut c = Cursor { b: &raw, i: 0 };
    let bad = |_| "boundaries are truncated or malformed".to_string();
    let n = c.len().map_err(bad)?;
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(n.min(keyviz::boundaries::MAX_BOUNDARIES));
    let mut bytes = 0usize;
    for _ in 0..n {
        if keys.len() >= keyviz::boundaries::MAX_BOUNDARIES {
            return Err(format!(
                "at most {} boundaries",
                keyviz::boundaries::MAX_BOUNDARIES
            ));
        }
        let prev = keys.last().map_or(&[][..], Vec::as_slice);
        let k = c.key(prev).map_err(bad)?;
        bytes += k.len();
        if bytes > MAX_BOUNDARY_KEY_BYTES {
            return Err("boundaries expand to too many key bytes".into());
        }
        keys.push(k);
    }
    if c.i != raw.len() {
        return Err("boundaries have trailing bytes".into());
    }
    Boundaries::from_keys(keys).map_err(|e| e.to_string())
}

/// The column totals of one boundary answer, held to a limit: no value and no column total
/// may pass `max` (below 2^63, so no sum wraps).
struct ColumnTotals {
    sums: Vec<u64>,
    /// At least every column's total so far: the sum over the rows added of each row's OR
    /// of its values (which is at least the row's largest value).
    bound: u64,
    max: u64,
}

impl ColumnTotals {
    fn new(columns: usize, max: u64) -> Self {
        ColumnTotals {
            sums: vec![0; columns],
            bound: 0,
            max: max.min(u64::MAX >> 1),
        }
    }

    /// Adds one row's values, refusing a value or a total above the limit. While the
    /// running bound is within the limit nothing can pass it, and the row is added with
    /// plain sums (they vectorise); past it, every column is checked: each total is at most
    /// the limit before an addition and each addend is clamped to it, so nothing wraps.
    fn add_row(&mut self, row: &[u64], bucket_id: &str) -> Result<(), PeerError> {
        self.bound = self
            .bound
            .saturating_add(row.iter().fold(0u64, |acc, &v| acc | v));
        if self.bound <= self.max {
            for (t, &v) in self.sums.iter_mut().zip(row) {
                *t += v;
            }
            return Ok(());
        }
        let max = self.max;
        let mut over = false;
        for (t, &v) in self.sums.iter_mut().zip(row) {
            over |= v > max;
            *t += v.min(max);
            over |= *t > max;
        }
        if over {
            let i = self
                .sums
                .iter()
                .zip(row)
                .position(|(&t, &v)| t > max || v > max)
                .unwrap_or(0);
            return Err(PeerError::Invalid(format!(
                "column {i} counts more than {max} operations (row {bucket_id:?})"
            )));
        }
        Ok(())
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

fn truncated() -> PeerError {
    PeerError::Decode("compact matrix is truncated or malformed".into())
}

impl Cursor<'_> {
    #[inline]
    fn varint(&mut self) -> Result<u64, PeerError> {
        let mut v = 0u64;
        let mut shift = 0u32;
        loop {
            let byte = *self.b.get(self.i).ok_or_else(truncated)?;
            self.i += 1;
            if shift == 63 && byte > 1 {
                return Err(truncated());
            }
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(truncated());
            }
        }
    }

    /// A length that cannot exceed the bytes left (each element takes at least one byte),
    /// so hostile lengths cannot make us allocate more than the body size.
    fn len(&mut self) -> Result<usize, PeerError> {
        let n = self.varint()?;
        let left = (self.b.len() - self.i) as u64;
        if n > left {
            return Err(truncated());
        }
        usize::try_from(n).map_err(|_| truncated())
    }

    /// A prefix-coded key (see `put_key`) after `prev`, at most the API's key limit long.
    fn key(&mut self, prev: &[u8]) -> Result<Vec<u8>, PeerError> {
        let shared = usize::try_from(self.varint()?).map_err(|_| truncated())?;
        let suffix = self.len()?;
        if shared > prev.len() || shared.saturating_add(suffix) > MAX_WIRE_KEY {
            return Err(truncated());
        }
        let tail = self.b.get(self.i..self.i + suffix).ok_or_else(truncated)?;
        self.i += suffix;
        let mut k = Vec::with_capacity(shared + suffix);
        k.extend_from_slice(&prev[..shared]);
        k.extend_from_slice(tail);
        Ok(k)
    }

    /// An array written by `put_runs`: its length may not exceed `max` (the row's width),
    /// so runs cannot expand a small body into a huge allocation.
    fn runs(&mut self, out: &mut Vec<u64>, max: usize) -> Result<(), PeerError> {
        let n = usize::try_from(self.varint()?).map_err(|_| truncated())?;
        if n > max {
            return Err(truncated());
        }
        out.reserve_exact(n);
        while out.len() < n {
            let run = usize::try_from(self.varint()?).map_err(|_| truncated())?;
            let v = self.varint()?;
            if run == 0 || run > n - out.len() {
                return Err(truncated());
            }
            out.resize(out.len() + run, v);
        }
        Ok(())
    }

    /// Appends `n` LEB128 values to `out`, decoding one- to three-byte values (most counts)
    /// from a fixed eight-byte window without a bounds check per byte; longer values and
    /// the body's last bytes take [`Cursor::varint`], so the same inputs are refused.
    /// Pushes into reserved room: no zero-filling of slots that are written right after.
    fn varints(&mut self, out: &mut Vec<u64>, n: usize) -> Result<(), PeerError> {
        // `n` is at most the bytes left (`Cursor::len`): the room costs no more than the body.
        out.reserve(n);
        let b = self.b;
        let mut i = self.i;
        for _ in 0..n {
            let v = match b.get(i..i + 8) {
                Some(w) if w[0] < 0x80 => {
                    i += 1;
                    u64::from(w[0])
                }
                Some(w) if w[1] < 0x80 => {
                    i += 2;
                    u64::from(w[0] & 0x7f) | (u64::from(w[1]) << 7)
                }
                Some(w) if w[2] < 0x80 => {
                    i += 3;
                    u64::from(w[0] & 0x7f) | (u64::from(w[1] & 0x7f) << 7) | (u64::from(w[2]) << 14)
                }
                _ => {
                    self.i = i;
                    let v = self.varint()?;
                    i = self.i;
                    v
                }
            };
            out.push(v);
        }
        self.i = i;
        Ok(())
    }

    /// Like [`Cursor::runs`], appending the runs themselves to `out`: their lengths must
    /// add up to 0 or exactly `width` cells.
    fn packed_runs(&mut self, out: &mut Vec<IdentityRun>, width: usize) -> Result<(), PeerError> {
        let n = usize::try_from(self.varint()?).map_err(|_| truncated())?;
        if n != 0 && n != width {
            return Err(PeerError::Invalid(format!(
                "{n} identities for {width} columns"
            )));
        }
        let mut covered = 0usize;
        while covered < n {
            let run = usize::try_from(self.varint()?).map_err(|_| truncated())?;
            let value = self.varint()?;
            if run == 0 || run > n - covered {
                return Err(truncated());
            }
            covered += run;
            out.push(IdentityRun {
                len: u32::try_from(run).map_err(|_| truncated())?,
                value,
            });
        }
        Ok(())
    }

    /// One row's cells of a boundary body into `out` (values, identity runs; conflict flags
    /// read and dropped), its values added to the answer's column `totals` while the row
    /// is in cache.
    fn row_cells(
        &mut self,
        out: &mut PackedBoundaryMatrix,
        totals: &mut ColumnTotals,
        bucket_id: &str,
    ) -> Result<(), PeerError> {
        let ncols = totals.sums.len();
        let n = self.len()?;
        if n != ncols {
            return Err(PeerError::Invalid(format!(
                "bucket {bucket_id:?}: {n} values for {ncols} columns"
            )));
        }
        let from = out.values.len();
        self.varints(&mut out.values, n)?;
        totals.add_row(&out.values[from..], bucket_id)?;
        self.packed_runs(&mut out.group_runs, ncols)?;
        self.packed_runs(&mut out.term_runs, ncols)?;
        out.row_runs.push((
            u32::try_from(out.group_runs.len()).map_err(|_| truncated())?,
            u32::try_from(out.term_runs.len()).map_err(|_| truncated())?,
        ));
        let n = self.len()?;
        if n != 0 && n != ncols {
            return Err(PeerError::Invalid(format!(
                "bucket {bucket_id:?}: {n} conflict flags for {ncols} columns"
            )));
        }
        let flags = self.b.get(self.i..self.i + n).ok_or_else(truncated)?;
        if flags.iter().any(|&f| f > 1) {
            return Err(truncated());
        }
        self.i += n;
        Ok(())
    }

    /// A byte string of at most the bytes left, into `out` (cleared first).
    fn bytes_into(&mut self, out: &mut Vec<u8>) -> Result<(), PeerError> {
        let n = self.len()?;
        let s = self.b.get(self.i..self.i + n).ok_or_else(truncated)?;
        self.i += n;
        out.clear();
        out.extend_from_slice(s);
        Ok(())
    }

    /// A UTF-8 string of at most the bytes left, into `out` (cleared first).
    fn str_into(&mut self, out: &mut String) -> Result<(), PeerError> {
        let n = self.len()?;
        let s = self.b.get(self.i..self.i + n).ok_or_else(truncated)?;
        let s = std::str::from_utf8(s)
            .map_err(|_| PeerError::Decode("boundary matrix: a string is not UTF-8".into()))?;
        self.i += n;
        out.clear();
        out.push_str(s);
        Ok(())
    }

    /// An optional byte string: present when `present`, into the slot's buffer if it has one.
    fn opt_bytes(&mut self, slot: &mut Option<Vec<u8>>, present: bool) -> Result<(), PeerError> {
        if !present {
            *slot = None;
            return Ok(());
        }
        self.bytes_into(slot.get_or_insert_with(Vec::new))
    }

    /// An optional string, as [`Cursor::opt_bytes`].
    fn opt_str(&mut self, slot: &mut Option<String>, present: bool) -> Result<(), PeerError> {
        if !present {
            *slot = None;
            return Ok(());
        }
        self.str_into(slot.get_or_insert_with(String::new))
    }

    /// A row's metadata written by `put_row_meta`, into `row` (every field overwritten; the
    /// cell arrays left empty).
    fn row_meta(&mut self, row: &mut MatrixRow) -> Result<(), PeerError> {
        let flags = self.varint()?;
        if flags & !ROW_FLAGS != 0 {
            return Err(PeerError::Decode(format!(
                "boundary matrix: unknown row flags {flags:#x}"
            )));
        }
        let has = |bit: u64| flags & bit != 0;
        self.str_into(&mut row.bucket_id)?;
        self.opt_str(&mut row.label, has(ROW_LABEL))?;
        self.opt_bytes(&mut row.start, has(ROW_START))?;
        self.opt_bytes(&mut row.end, has(ROW_END))?;
        row.aggregate = has(ROW_AGGREGATE);
        row.route_ids_truncated = has(ROW_IDS_TRUNCATED);
        row.conflict = has(ROW_CONFLICT);
        row.route_count = self.varint()?;
        let n = self.len()?;
        row.route_ids.clear();
        row.route_ids.reserve(n);
        let mut prev = 0u64;
        for _ in 0..n {
            prev = prev.wrapping_add(unzigzag(self.varint()?) as u64);
            row.route_ids.push(prev);
        }
        self.opt_str(&mut row.preview, has(ROW_PREVIEW))?;
        self.opt_bytes(&mut row.first_key, has(ROW_FIRST_KEY))?;
        self.opt_bytes(&mut row.last_key, has(ROW_LAST_KEY))?;
        row.values.clear();
        row.raft_group_ids.clear();
        row.leader_terms.clear();
        row.conflicts.clear();
        row.write_lanes.clear();
        Ok(())
    }

    fn u64s(&mut self, out: &mut Vec<u64>) -> Result<(), PeerError> {
        let n = self.len()?;
        out.reserve_exact(n);
        for _ in 0..n {
            out.push(self.varint()?);
        }
        Ok(())
    }
}

/// Decodes a compact body (validation is the caller's).
///
/// # Errors
/// [`PeerError::Decode`] for a bad magic, header or truncated/overlong data.
pub fn decode(body: &[u8]) -> Result<Matrix, PeerError> {
    let (m, c) = decode_prefix(body, MAGIC, false)?;
    if c.i != c.b.len() {
        return Err(PeerError::Decode("compact matrix: trailing bytes".into()));
    }
    Ok(m)
}

/// The u32 length-prefixed JSON header of `rest`, and a cursor after it.
fn split_head(rest: &[u8]) -> Result<(&[u8], Cursor<'_>), PeerError> {
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(truncated)?;
    let head_len = usize::try_from(u32::from_le_bytes(len_bytes)).map_err(|_| truncated())?;
    let head = rest.get(4..4 + head_len).ok_or_else(truncated)?;
    Ok((
        head,
        Cursor {
            b: rest,
            i: 4 + head_len,
        },
    ))
}

/// Decodes magic, header, columns and rows; returns the cursor after the last row.
fn decode_prefix<'a>(
    body: &'a [u8],
    magic: &[u8],
    runs: bool,
) -> Result<(Matrix, Cursor<'a>), PeerError> {
    let rest = body
        .strip_prefix(magic)
        .ok_or_else(|| PeerError::Decode("compact matrix: bad magic".into()))?;
    let (head, mut c) = split_head(rest)?;
    let mut m = super::decode::decode_json(head)?;
    let ncols = c.len()?;
    m.column_unix_ms = Vec::with_capacity(ncols);
    let mut prev = 0i64;
    for _ in 0..ncols {
        prev = prev.wrapping_add(unzigzag(c.varint()?));
        m.column_unix_ms.push(prev);
    }
    for r in &mut m.rows {
        c.u64s(&mut r.values)?;
        if runs {
            // Identity arrays are as wide as the values or empty (legacy rows).
            let w = r.values.len();
            c.runs(&mut r.raft_group_ids, w)?;
            c.runs(&mut r.leader_terms, w)?;
        } else {
            c.u64s(&mut r.raft_group_ids)?;
            c.u64s(&mut r.leader_terms)?;
        }
        let n = c.len()?;
        let flags = c.b.get(c.i..c.i + n).ok_or_else(truncated)?;
        if flags.iter().any(|&f| f > 1) {
            return Err(truncated());
        }
        r.conflicts = flags.iter().map(|&f| f == 1).collect();
        c.i += n;
    }
    Ok((m, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyviz::Series;

    fn sample() -> Matrix {
        Matrix {
            column_unix_ms: vec![i64::MIN, -5, 0, 1_700_000_000_000, i64::MAX],
            rows: vec![
                MatrixRow {
                    bucket_id: "route:1".into(),
                    label: Some("redis".into()),
                    start: Some(vec![0, 9]),
                    end: Some(vec![1]),
                    aggregate: true,
                    route_ids: vec![1, 2],
                    route_ids_truncated: true,
                    route_count: 5,
                    values: vec![0, 1, 127, 128, u64::MAX],
                    conflict: true,
                    conflicts: vec![false, true, false, false, true],
                    raft_group_ids: vec![7; 5],
                    leader_terms: vec![42, 42, 43, 43, 0],
                    preview: Some("p".into()),
                    first_key: Some(vec![0, 9, 1]),
                    last_key: Some(vec![0, 255]),
                    write_lanes: vec![
                        keyviz::CellLane {
                            column: 2,
                            group: 7,
                            term: 42,
                            value: 100,
                        },
                        keyviz::CellLane {
                            column: 2,
                            group: 7,
                            term: 43,
                            value: 27,
                        },
                    ],
                },
                MatrixRow {
                    bucket_id: "route:2".into(),
                    values: vec![3; 5],
                    ..MatrixRow::default()
                },
            ],
            series: Series::Writes,
            generated_at: "2026-11-27T00:00:00Z".into(),
            step_ms: 60_000,
            node_id: Some("n2".into()),
        }
    }

    #[test]
    fn round_trip_is_exact() {
        let m = sample();
        let bytes = encode(&m).unwrap_or_default();
        assert_eq!(decode(&bytes).ok(), Some(m));
        let empty = Matrix::empty(Series::Reads, 0, String::new());
        assert_eq!(
            decode(&encode(&empty).unwrap_or_default()).ok(),
            Some(empty)
        );
    }

    #[test]
    fn truncation_and_garbage_are_errors_not_panics() {
        let bytes = encode(&sample()).unwrap_or_default();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut {cut} accepted");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        assert!(decode(b"{\"rows\":[]}").is_err());
        // A hostile length cannot trigger a huge allocation.
        let mut huge = Vec::from(MAGIC);
        let head = b"{}";
        huge.extend_from_slice(&(head.len() as u32).to_le_bytes());
        huge.extend_from_slice(head);
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(decode(&huge).is_err());
    }

    #[test]
    fn small_counts_make_it_smaller_than_json() {
        let mut m = sample();
        for r in &mut m.rows {
            r.values = vec![12; 5];
        }
        let json = serde_json::to_vec(&m).unwrap_or_default();
        assert!(encode(&m).unwrap_or_default().len() < json.len());
    }

    fn boundary_sample() -> BoundaryMatrix {
        let mut m = sample();
        m.rows[1].raft_group_ids = vec![1, 1, 2, 2, 2];
        m.rows[1].leader_terms = vec![3; 5];
        BoundaryMatrix {
            matrix: m,
            parts: vec![
                CellPart {
                    row: 0,
                    column: 1,
                    group: 4,
                    term: 9,
                    value: 0,
                },
                CellPart {
                    row: 0,
                    column: 1,
                    group: 5,
                    term: 9,
                    value: 1,
                },
                CellPart {
                    row: 1,
                    column: 4,
                    group: 1,
                    term: 3,
                    value: 3,
                },
            ],
        }
    }

    #[test]
    fn boundary_matrix_round_trips_and_rejects_every_truncation() {
        let mut b = boundary_sample();
        let bytes = encode_boundary(&b).unwrap_or_default();
        // Lanes stay home: a boundary answer names mixed identities as parts.
        for r in &mut b.matrix.rows {
            r.write_lanes.clear();
        }
        assert_eq!(decode_boundary(&bytes).ok(), Some(b));
        for cut in 0..bytes.len() {
            assert!(
                decode_boundary(&bytes[..cut]).is_err(),
                "cut {cut} accepted"
            );
        }
        // A v1 body is not a boundary body and the other way round.
        assert!(decode_boundary(&encode(&sample()).unwrap_or_default()).is_err());
        assert!(decode(&bytes).is_err());
    }

    /// No column bound beyond what the sample needs.
    const MAX: u64 = u64::MAX >> 1;

    /// The boundary sample as a valid answer: lanes do not travel in a boundary header,
    /// columns within years 0000-9999.
    fn valid_boundary_sample() -> BoundaryMatrix {
        let mut b = boundary_sample();
        for r in &mut b.matrix.rows {
            r.write_lanes.clear();
        }
        b.matrix.column_unix_ms = (1..=5).map(|c| c * 60_000).collect();
        b.matrix.rows[0].values[4] = 1 << 40;
        b
    }

    #[test]
    fn packed_decoding_refuses_more_rows_than_boundaries() {
        let mut packed = PackedBoundaryMatrix::default();
        let bytes = encode_boundary(&valid_boundary_sample()).unwrap_or_default();
        assert!(decode_boundary_packed(&bytes, &mut packed, 2, MAX).is_ok());
        assert!(matches!(
            decode_boundary_packed(&bytes, &mut packed, 1, MAX),
            Err(PeerError::Invalid(_))
        ));
        assert!(packed.values.is_empty(), "refused before any cell is read");
    }

    /// `rows` single-route rows of five columns, every value 1 but the last column's 2.
    fn many_row_boundary(rows: u64) -> BoundaryMatrix {
        let key = |i: u64| (i * 10).to_be_bytes().to_vec();
        BoundaryMatrix {
            matrix: Matrix {
                column_unix_ms: (1..=5).map(|c| c * 60_000).collect(),
                rows: (0..rows)
                    .map(|i| MatrixRow {
                        bucket_id: format!("route:{i}"),
                        start: Some(key(i)),
                        end: Some(key(i + 1)),
                        route_count: 1,
                        values: vec![1, 1, 1, 1, 2],
                        raft_group_ids: vec![1; 5],
                        leader_terms: vec![2; 5],
                        ..MatrixRow::default()
                    })
                    .collect(),
                series: Series::Writes,
                generated_at: "2026-12-02T00:00:00Z".into(),
                step_ms: 60_000,
                node_id: Some("n1".into()),
            },
            parts: Vec::new(),
        }
    }

    #[test]
    fn column_bound_is_exact_after_the_rows_outgrow_the_quick_estimate() {
        // 300 rows: the last column sums to 600, while the decoder's quick upper bound (each
        // row's OR, 3) passes 600 at row 201, where it switches to checking every column.
        let bytes = encode_boundary_v2(&many_row_boundary(300)).unwrap_or_default();
        let mut packed = PackedBoundaryMatrix::default();
        assert_eq!(
            decode_boundary_packed(&bytes, &mut packed, usize::MAX, 600).map_err(|e| e.to_string()),
            Ok(()),
            "every column within 600"
        );
        assert_eq!(packed.values.len(), 300 * 5);
        let refused = decode_boundary_packed(&bytes, &mut packed, usize::MAX, 599);
        assert!(
            matches!(&refused, Err(PeerError::Invalid(e)) if e.contains("column 4")),
            "{refused:?}"
        );
        // Within the quick bound from the start (900 >= 3 x 300): no column check needed.
        assert!(decode_boundary_packed(&bytes, &mut packed, usize::MAX, 900).is_ok());
    }

    #[test]
    fn packed_decoding_holds_columns_to_the_bound_without_wrapping() {
        let mut packed = PackedBoundaryMatrix::default();
        let mut b = valid_boundary_sample();
        let bound = 1u64 << 48;
        b.matrix.rows[0].values[4] = bound - 3;
        let ok = encode_boundary(&b).unwrap_or_default();
        assert!(
            decode_boundary_packed(&ok, &mut packed, usize::MAX, bound).is_ok(),
            "3 + (bound - 3)"
        );
        b.matrix.rows[0].values[4] = bound - 2;
        let over = encode_boundary(&b).unwrap_or_default();
        assert!(matches!(
            decode_boundary_packed(&over, &mut packed, usize::MAX, bound),
            Err(PeerError::Invalid(_))
        ));
        // A sum that would wrap to a small number is refused too.
        b.matrix.rows[0].values[4] = u64::MAX - 1;
        let wraps = encode_boundary(&b).unwrap_or_default();
        assert!(decode_boundary_packed(&wraps, &mut packed, usize::MAX, bound).is_err());
        assert!(
            decode_boundary_packed(&wraps, &mut packed, usize::MAX, u64::MAX).is_err(),
            "bound clamped"
        );
    }

    #[test]
    fn packed_decoding_gives_the_packed_form_of_the_decoded_answer() {
        let b = valid_boundary_sample();
        let bytes = encode_boundary(&b).unwrap_or_default();
        let mut packed = PackedBoundaryMatrix::default();
        assert_eq!(
            decode_boundary_packed(&bytes, &mut packed, usize::MAX, MAX).map_err(|e| e.to_string()),
            Ok(())
        );
        assert_eq!(packed, PackedBoundaryMatrix::from_boundary(&b));
        // The buffer is reused: a second decode into it gives the same answer.
        let again = packed.clone();
        assert!(decode_boundary_packed(&bytes, &mut packed, usize::MAX, MAX).is_ok());
        assert_eq!(packed, again);
        for cut in 0..bytes.len() {
            assert!(
                decode_boundary_packed(&bytes[..cut], &mut packed, usize::MAX, MAX).is_err(),
                "cut {cut} accepted"
            );
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode_boundary_packed(&extra, &mut packed, usize::MAX, MAX).is_err());
        assert!(
            decode_boundary_packed(
                &encode(&sample()).unwrap_or_default(),
                &mut packed,
                usize::MAX,
                MAX
            )
            .is_err()
        );
    }

    #[test]
    fn packed_decoding_refuses_invalid_answers() {
        let mut packed = PackedBoundaryMatrix::default();
        let mut b = valid_boundary_sample();
        b.parts[2].value += 1;
        let bytes = encode_boundary(&b).unwrap_or_default();
        assert!(matches!(
            decode_boundary_packed(&bytes, &mut packed, usize::MAX, MAX),
            Err(PeerError::Invalid(_))
        ));
        let mut b = valid_boundary_sample();
        b.matrix.rows[1].values.pop();
        let bytes = encode_boundary(&b).unwrap_or_default();
        assert!(matches!(
            decode_boundary_packed(&bytes, &mut packed, usize::MAX, MAX),
            Err(PeerError::Invalid(_))
        ));
        let mut b = valid_boundary_sample();
        b.matrix.rows[1].bucket_id = b.matrix.rows[0].bucket_id.clone();
        let bytes = encode_boundary(&b).unwrap_or_default();
        assert!(decode_boundary_packed(&bytes, &mut packed, usize::MAX, MAX).is_err());
        // A hostile header whose rows claim more cells than the body has bytes.
        let mut hostile = Vec::from(BOUNDARY_MAGIC);
        let rows: Vec<String> = (0..2000)
            .map(|i| format!("{{\"bucket_id\":\"r{i}\"}}"))
            .collect();
        let head = format!(
            "{{\"column_unix_ms\":[],\"rows\":[{}],\"series\":\"reads\",\"generated_at\":\"\",\"step_ms\":0}}",
            rows.join(",")
        );
        hostile.extend_from_slice(&(head.len() as u32).to_le_bytes());
        hostile.extend_from_slice(head.as_bytes());
        put_varint(&mut hostile, 4096);
        for _ in 0..4096 {
            put_varint(&mut hostile, 1);
        }
        assert!(decode_boundary_packed(&hostile, &mut packed, usize::MAX, MAX).is_err());
        assert!(
            packed.values.capacity() < 1 << 20,
            "no reservation for the claimed cells"
        );
    }

    #[test]
    fn kvmb2_decodes_to_the_packed_form_in_a_reused_buffer_and_refuses_every_truncation() {
        let mut b = valid_boundary_sample();
        // Every optional field set on one row, none on the other.
        b.matrix.rows[0].preview = Some("p\u{e9}".into());
        b.matrix.rows[0].route_ids = vec![9, 2, u64::MAX];
        let bytes = encode_boundary_v2(&b).unwrap_or_default();
        let want = PackedBoundaryMatrix::from_boundary(&b);
        let mut packed = PackedBoundaryMatrix::default();
        assert_eq!(
            decode_boundary_packed(&bytes, &mut packed, usize::MAX, MAX).map_err(|e| e.to_string()),
            Ok(())
        );
        assert_eq!(packed, want);
        // Into a buffer that held another answer: the same.
        let v1 = encode_boundary(&b).unwrap_or_default();
        assert!(decode_boundary_packed(&v1, &mut packed, usize::MAX, MAX).is_ok());
        assert_eq!(packed, want, "KVMB1 of the same answer");
        let mut other = valid_boundary_sample();
        other.matrix.rows.truncate(1);
        other.parts.retain(|p| p.row == 0);
        other.matrix.rows[0].label = None;
        other.matrix.rows[0].start = None;
        let small = encode_boundary_v2(&other).unwrap_or_default();
        assert!(decode_boundary_packed(&small, &mut packed, usize::MAX, MAX).is_ok());
        assert_eq!(packed, PackedBoundaryMatrix::from_boundary(&other));
        assert!(decode_boundary_packed(&bytes, &mut packed, usize::MAX, MAX).is_ok());
        assert_eq!(packed, want, "after a smaller answer");
        for cut in 0..bytes.len() {
            assert!(
                decode_boundary_packed(&bytes[..cut], &mut packed, usize::MAX, MAX).is_err(),
                "cut {cut} accepted"
            );
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode_boundary_packed(&extra, &mut packed, usize::MAX, MAX).is_err());
        assert!(matches!(
            decode_boundary_packed(&bytes, &mut packed, 1, MAX),
            Err(PeerError::Invalid(_))
        ));
        assert!(packed.values.is_empty(), "refused before any cell is read");
    }

    /// The bytes of a `KVMB2` body up to its first row: magic, header, columns.
    fn kvmb2_prefix(ncols: usize) -> Vec<u8> {
        let mut out = Vec::from(BOUNDARY_V2_MAGIC);
        let head = br#"{"series":"reads","generated_at":"","step_ms":60000}"#;
        out.extend_from_slice(&(head.len() as u32).to_le_bytes());
        out.extend_from_slice(head);
        put_varint(&mut out, ncols as u64);
        for _ in 0..ncols {
            put_varint(&mut out, zigzag(60_000));
        }
        out
    }

    #[test]
    fn hostile_kvmb2_rows_are_refused_without_reserving_for_them() {
        let mut packed = PackedBoundaryMatrix::default();
        // A row count far beyond the bytes left.
        let mut huge = kvmb2_prefix(4);
        put_varint(&mut huge, 1 << 40);
        assert!(decode_boundary_packed(&huge, &mut packed, usize::MAX, MAX).is_err());
        assert!(packed.header.rows.capacity() < 1 << 20);
        // A route id count beyond the bytes left, a string longer than the body, flags of a
        // later version, and a bucket id that is not UTF-8.
        let row = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = kvmb2_prefix(1);
            put_varint(&mut b, 1);
            f(&mut b);
            b
        };
        let ids = row(&|b| {
            put_varint(b, 0);
            put_bytes(b, b"r");
            put_varint(b, 1);
            put_varint(b, 1 << 50);
        });
        let long = row(&|b| {
            put_varint(b, 0);
            put_varint(b, 1 << 30);
        });
        let flags = row(&|b| {
            put_varint(b, ROW_FLAGS + 1);
            put_bytes(b, b"r");
        });
        let utf8 = row(&|b| {
            put_varint(b, 0);
            put_bytes(b, &[0xff, 0xfe]);
        });
        for (name, body) in [
            ("ids", ids),
            ("long", long),
            ("flags", flags),
            ("utf8", utf8),
        ] {
            assert!(
                matches!(
                    decode_boundary_packed(&body, &mut packed, usize::MAX, MAX),
                    Err(PeerError::Decode(_))
                ),
                "{name}"
            );
            assert!(
                packed
                    .header
                    .rows
                    .iter()
                    .all(|r| r.route_ids.capacity() < 1 << 20)
            );
        }
        // Rows in the JSON header of a KVMB2 body are refused.
        let mut b = valid_boundary_sample();
        b.matrix.rows.truncate(1);
        b.parts.retain(|p| p.row == 0);
        let v1 = encode_boundary(&b).unwrap_or_default();
        let mut mixed = Vec::from(BOUNDARY_V2_MAGIC);
        mixed.extend_from_slice(&v1[BOUNDARY_MAGIC.len()..]);
        assert!(matches!(
            decode_boundary_packed(&mixed, &mut packed, usize::MAX, MAX),
            Err(PeerError::Invalid(_))
        ));
    }

    #[test]
    fn identity_runs_cannot_expand_past_the_row_width() {
        let mut b = boundary_sample();
        b.parts.clear();
        b.matrix.rows.truncate(1);
        let mut bytes = encode_boundary(&b).unwrap_or_default();
        // The last bytes are: ... term runs, conflicts, part count. Rewrite the group runs of
        // the only row as one run of 2^40 elements.
        let head_len = u32::from_le_bytes(bytes[6..10].try_into().unwrap_or_default()) as usize;
        let mut c = Cursor {
            b: &bytes[6..],
            i: 4 + head_len,
        };
        let ncols = c.len().unwrap_or_default();
        for _ in 0..ncols {
            let _ = c.varint();
        }
        let mut values = Vec::new();
        assert!(c.u64s(&mut values).is_ok());
        let at = 6 + c.i;
        let mut hostile = bytes[..at].to_vec();
        put_varint(&mut hostile, 1 << 40);
        put_varint(&mut hostile, 1 << 40);
        put_varint(&mut hostile, 7);
        hostile.extend_from_slice(&bytes[at..]);
        assert!(decode_boundary(&hostile).is_err());
        bytes.push(0);
        assert!(decode_boundary(&bytes).is_err(), "trailing byte accepted");
    }

    #[test]
    fn totals_round_trip_with_prefix_coded_keys_and_reject_disorder() {
        let t = NodeTotals {
            node_id: Some("n3".into()),
            generated_at: "2026-12-01T00:00:00Z".into(),
            totals: vec![
                RowTotal {
                    start: vec![],
                    total: 0,
                },
                RowTotal {
                    start: b"user:0001".to_vec(),
                    total: 5,
                },
                RowTotal {
                    start: b"user:0002".to_vec(),
                    total: u64::MAX,
                },
                RowTotal {
                    start: b"w".to_vec(),
                    total: 1,
                },
            ],
        };
        let bytes = encode_totals(&t).unwrap_or_default();
        assert_eq!(decode_totals(&bytes).ok(), Some(t.clone()));
        for cut in 0..bytes.len() {
            assert!(decode_totals(&bytes[..cut]).is_err(), "cut {cut} accepted");
        }
        let mut disorder = t;
        disorder.totals.swap(1, 2);
        let bytes = encode_totals(&disorder).unwrap_or_default();
        assert!(matches!(decode_totals(&bytes), Err(PeerError::Invalid(_))));
    }

    #[test]
    fn boundary_lists_round_trip_and_bad_ones_are_refused() {
        let b = Boundaries::from_keys(vec![vec![], b"user:0001".to_vec(), b"user:0100".to_vec()])
            .unwrap_or_else(|e| panic!("{e}"));
        let s = encode_boundaries(&b);
        assert!(
            s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(decode_boundaries(&s), Ok(b));
        assert!(decode_boundaries("!!").is_err());
        assert!(decode_boundaries("").is_err(), "no boundaries at all");
        // Not increasing.
        let mut raw = Vec::new();
        put_varint(&mut raw, 2);
        put_key(&mut raw, b"", b"");
        put_key(&mut raw, b"", b"");
        use base64::Engine as _;
        let s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
        assert!(decode_boundaries(&s).is_err());
        // A huge count in a few bytes is refused without allocating for it.
        let mut raw = Vec::new();
        put_varint(&mut raw, u64::MAX >> 2);
        let s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
        assert!(decode_boundaries(&s).is_err());
    }

    /// One local row for the byte-identity property: values (zeros included), identities
    /// that change mid-row or are absent, conflict flags or none, and sometimes a lone
    /// cell split over two terms in `write_lanes`.
    #[derive(Debug, Clone)]
    struct RowSpec {
        values: Vec<u64>,
        groups: Option<Vec<u64>>,
        terms: Option<Vec<u64>>,
        conflicts: Option<Vec<bool>>,
        row_conflict: bool,
        lanes: bool,
    }

    fn row_spec() -> impl proptest::strategy::Strategy<Value = RowSpec> {
        use proptest::prelude::*;
        (
            proptest::collection::vec(prop_oneof![Just(0u64), 1u64..4, 100u64..100_000], 6),
            proptest::option::weighted(0.8, proptest::collection::vec(1u64..4, 6)),
            proptest::option::weighted(0.8, proptest::collection::vec(5u64..7, 6)),
            proptest::option::weighted(0.2, proptest::collection::vec(any::<bool>(), 6)),
            any::<bool>(),
            proptest::bool::weighted(0.2),
        )
            .prop_map(
                |(values, groups, terms, conflicts, row_conflict, lanes)| RowSpec {
                    values,
                    groups,
                    terms,
                    conflicts,
                    row_conflict,
                    lanes,
                },
            )
    }

    /// A node's local view of `specs` over `cols` columns (row `i` starts at `[i]`, the
    /// first may start at the empty key).
    fn spec_matrix(writes: bool, cols: usize, specs: &[RowSpec]) -> Matrix {
        let rows = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let values: Vec<u64> = s.values[..cols].to_vec();
                let lanes = match values.first() {
                    Some(&v) if s.lanes && v >= 2 => vec![
                        keyviz::CellLane {
                            column: 0,
                            group: 9,
                            term: 1,
                            value: v - 1,
                        },
                        keyviz::CellLane {
                            column: 0,
                            group: 9,
                            term: 2,
                            value: 1,
                        },
                    ],
                    _ => Vec::new(),
                };
                MatrixRow {
                    bucket_id: format!("route:{i}"),
                    start: (i > 0).then(|| vec![i as u8]),
                    end: Some(vec![i as u8 + 1]),
                    route_count: 1,
                    route_ids: if i % 4 == 3 {
                        vec![i as u64]
                    } else {
                        Vec::new()
                    },
                    values,
                    raft_group_ids: s
                        .groups
                        .as_ref()
                        .map_or_else(Vec::new, |g| g[..cols].to_vec()),
                    leader_terms: s
                        .terms
                        .as_ref()
                        .map_or_else(Vec::new, |t| t[..cols].to_vec()),
                    conflicts: s
                        .conflicts
                        .as_ref()
                        .map_or_else(Vec::new, |c| c[..cols].to_vec()),
                    conflict: s.row_conflict,
                    preview: (i % 3 == 0).then(|| format!("p{i}")),
                    first_key: Some(vec![i as u8, 0]),
                    last_key: Some(vec![i as u8, 9]),
                    write_lanes: lanes,
                    ..MatrixRow::default()
                }
            })
            .collect();
        Matrix {
            column_unix_ms: (1..=cols as i64).map(|c| c * 60_000).collect(),
            rows,
            series: if writes {
                Series::Writes
            } else {
                Series::Reads
            },
            generated_at: "2026-12-02T00:00:00Z".into(),
            step_ms: 60_000,
            node_id: Some("n1".into()),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// The run-form path (`coarsen_onto_runs`, `encode_boundary_runs{,_v2}`) writes
        /// exactly the bytes of the per-cell path (`coarsen_onto`, `encode_boundary{,_v2}`):
        /// old and new nodes read each other's answers.
        #[test]
        fn run_form_answers_encode_byte_for_byte_like_per_cell_ones(
            writes in proptest::bool::ANY,
            cols in 1usize..=6,
            specs in proptest::collection::vec(row_spec(), 0..12),
            cuts in proptest::collection::vec(proptest::bool::ANY, 12),
            max_ids in 1usize..4,
        ) {
            let m = spec_matrix(writes, cols, &specs);
            // Boundaries at the start of the rows picked by `cuts` (the first always empty).
            let mut keys = vec![Vec::new()];
            keys.extend((1..specs.len()).filter(|&i| cuts[i]).map(|i| vec![i as u8]));
            let Ok(b) = Boundaries::from_keys(keys) else {
                return Err(proptest::test_runner::TestCaseError::fail("bad boundaries"));
            };
            let cells = keyviz::boundaries::coarsen_onto(m.clone(), &b, max_ids);
            let runs = keyviz::boundaries::coarsen_onto_runs(m.clone(), &b, max_ids);
            proptest::prop_assert_eq!(runs.validate_parts(), Ok(()));
            proptest::prop_assert_eq!(cells.validate_parts(), Ok(()));
            let want_totals: Vec<u64> = (0..cols)
                .map(|j| m.rows.iter().map(|r| r.values[j]).sum())
                .collect();
            proptest::prop_assert_eq!(runs.column_totals(), want_totals);
            let v1 = encode_boundary(&cells).unwrap_or_default();
            let v2 = encode_boundary_v2(&cells).unwrap_or_default();
            proptest::prop_assert!(!v1.is_empty() && !v2.is_empty());
            proptest::prop_assert_eq!(&encode_boundary_runs(&runs).unwrap_or_default(), &v1);
            proptest::prop_assert_eq!(&encode_boundary_runs_v2(&runs).unwrap_or_default(), &v2);
            // The per-cell answer itself, in run form: the same bytes too.
            let converted = RunBoundaryMatrix::from_boundary(&cells);
            proptest::prop_assert_eq!(&encode_boundary_runs(&converted).unwrap_or_default(), &v1);
            proptest::prop_assert_eq!(&encode_boundary_runs_v2(&converted).unwrap_or_default(), &v2);
        }
    }

    #[test]
    fn run_form_encoding_of_the_samples_is_the_per_cell_encoding() {
        // The hand-made samples: a row with every metadata field, u64::MAX values, conflict
        // flags, lanes (which stay home), identity changes mid-row and disagreeing parts.
        for b in [
            boundary_sample(),
            valid_boundary_sample(),
            many_row_boundary(300),
        ] {
            let runs = RunBoundaryMatrix::from_boundary(&b);
            assert_eq!(runs.validate_parts(), b.validate_parts());
            assert_eq!(
                encode_boundary_runs(&runs).ok(),
                encode_boundary(&b).ok(),
                "KVMB1"
            );
            assert_eq!(
                encode_boundary_runs_v2(&runs).ok(),
                encode_boundary_v2(&b).ok(),
                "KVMB2"
            );
        }
        // No rows at all.
        let empty = BoundaryMatrix {
            matrix: Matrix {
                rows: Vec::new(),
                ..sample()
            },
            parts: Vec::new(),
        };
        let runs = RunBoundaryMatrix::from_boundary(&empty);
        assert_eq!(
            encode_boundary_runs(&runs).ok(),
            encode_boundary(&empty).ok()
        );
        assert_eq!(
            encode_boundary_runs_v2(&runs).ok(),
            encode_boundary_v2(&empty).ok()
        );
    }

    proptest::proptest! {
        /// A run of varints of mixed lengths, ending near the body's end (where fewer than 8
        /// bytes are left), decodes to the values written.
        #[test]
        fn mixed_length_varints_decode_to_what_was_written_up_to_the_last_byte(
            values in proptest::collection::vec(
                proptest::prop_oneof![0u64..128, 0u64..50_000, proptest::num::u64::ANY],
                0..64,
            ),
        ) {
            let mut b = Vec::new();
            for &v in &values {
                put_varint(&mut b, v);
            }
            let mut c = Cursor { b: &b, i: 0 };
            let mut out = vec![9];
            proptest::prop_assert!(c.varints(&mut out, values.len()).is_ok());
            proptest::prop_assert_eq!(&out[1..], &values[..]);
            proptest::prop_assert_eq!(c.i, b.len());
        }
    }
}
