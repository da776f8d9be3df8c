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

use keyviz::{Matrix, MatrixRow};

use super::client::PeerError;

/// Media type of the compact encoding.
pub const CONTENT_TYPE: &str = "application/vnd.keyviz.matrix-compact";
const MAGIC: &[u8] = b"KVMC1\n";

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
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
    let cells: usize = m
        .rows
        .iter()
        .map(|r| r.values.len() + r.raft_group_ids.len() + r.leader_terms.len())
        .sum();
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + head.len() + cells * 2 + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&head);
    put_varint(&mut out, m.column_unix_ms.len() as u64);
    let mut prev = 0i64;
    for &c in &m.column_unix_ms {
        put_varint(&mut out, zigzag(c.wrapping_sub(prev)));
        prev = c;
    }
    for r in &m.rows {
        for arr in [&r.values, &r.raft_group_ids, &r.leader_terms] {
            put_varint(&mut out, arr.len() as u64);
            for &v in arr.iter() {
                put_varint(&mut out, v);
            }
        }
        put_varint(&mut out, r.conflicts.len() as u64);
        out.extend(r.conflicts.iter().map(|&c| u8::from(c)));
    }
    Ok(out)
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
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| PeerError::Decode("compact matrix: bad magic".into()))?;
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(truncated)?;
    let head_len = usize::try_from(u32::from_le_bytes(len_bytes)).map_err(|_| truncated())?;
    let head = rest.get(4..4 + head_len).ok_or_else(truncated)?;
    let mut m = super::decode::decode_json(head)?;
    let mut c = Cursor {
        b: rest,
        i: 4 + head_len,
    };
    let ncols = c.len()?;
    m.column_unix_ms = Vec::with_capacity(ncols);
    let mut prev = 0i64;
    for _ in 0..ncols {
        prev = prev.wrapping_add(unzigzag(c.varint()?));
        m.column_unix_ms.push(prev);
    }
    for r in &mut m.rows {
        c.u64s(&mut r.values)?;
        c.u64s(&mut r.raft_group_ids)?;
        c.u64s(&mut r.leader_terms)?;
        let n = c.len()?;
        let flags = c.b.get(c.i..c.i + n).ok_or_else(truncated)?;
        if flags.iter().any(|&f| f > 1) {
            return Err(truncated());
        }
        r.conflicts = flags.iter().map(|&f| f == 1).collect();
        c.i += n;
    }
    if c.i != c.b.len() {
        return Err(PeerError::Decode("compact matrix: trailing bytes".into()));
    }
    Ok(m)
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
}
