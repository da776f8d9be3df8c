//! A specialised reader for the matrix JSON a peer sends, several times faster than serde's
//! generic path on the dominant cost: long arrays of integers.
//!
//! It accepts a strict subset of what serde_json accepts for [`Matrix`] and produces the same
//! value; on anything outside that subset (escapes in keys aside, unusual nulls, duplicate
//! fields, numbers in exotic forms, invalid input) it returns [`Unsupported`] and the caller
//! falls back to serde_json, which then also produces the error message. So correctness never
//! depends on this module, only speed does.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyviz::{Matrix, MatrixRow, Series};
use serde::de::IgnoredAny;

/// The input is outside the fast subset; use the generic decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unsupported;

type R<T> = Result<T, Unsupported>;

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&mut self) -> R<u8> {
        self.ws();
        self.b.get(self.i).copied().ok_or(Unsupported)
    }

    #[inline]
    fn eat(&mut self, c: u8) -> R<()> {
        if self.peek()? == c {
            self.i += 1;
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    fn literal(&mut self, word: &[u8]) -> R<()> {
        self.ws();
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    /// `null` if present (consumed), else false.
    fn null(&mut self) -> R<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn string(&mut self) -> R<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        let mut j = start;
        loop {
            match self.b.get(j) {
                None => return Err(Unsupported),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    j += 2;
                }
                Some(c) if *c < 0x20 => return Err(Unsupported),
                Some(_) => j += 1,
            }
        }
        self.i = j + 1;
        if escaped {
            // Rare: let serde_json decode the escapes of this one string.
            let quoted = self.b.get(start - 1..=j).ok_or(Unsupported)?;
            serde_json::from_slice::<String>(quoted)
                .map(Cow::Owned)
                .map_err(|_| Unsupported)
        } else {
            let raw = self.b.get(start..j).ok_or(Unsupported)?;
            std::str::from_utf8(raw)
                .map(Cow::Borrowed)
                .map_err(|_| Unsupported)
        }
    }

    /// An unsigned integer in canonical JSON form (no sign, fraction, exponent, leading 0).
    #[inline]
    fn u64(&mut self) -> R<u64> {
        self.ws();
        let b = self.b;
        let mut i = self.i;
        let first = *b.get(i).ok_or(Unsupported)?;
        if !first.is_ascii_digit() {
            return Err(Unsupported);
        }
        let mut n = u64::from(first - b'0');
        i += 1;
        if first == b'0' {
            if b.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(Unsupported);
            }
        } else {
            while let Some(&c) = b.get(i) {
                if !c.is_ascii_digit() {
                    break;
                }
                n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(c - b'0')))
                    .ok_or(Unsupported)?;
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'.' | b'e' | b'E')) {
            return Err(Unsupported);
        }
        self.i = i;
        Ok(n)
    }

    fn i64(&mut self) -> R<i64> {
        let neg = self.peek()? == b'-';
        if neg {
            self.i += 1;
            if !self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                return Err(Unsupported);
            }
        }
        let n = self.u64()?;
        if neg {
            // serde_json reads "-0" as a float, which an i64 field rejects.
            if n == 0 {
                return Err(Unsupported);
            }
            0i64.checked_sub_unsigned(n).ok_or(Unsupported)
        } else {
            i64::try_from(n).map_err(|_| Unsupported)
        }
    }

    fn bool(&mut self) -> R<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| true),
            b'f' => self.literal(b"false").map(|()| false),
            _ => Err(Unsupported),
        }
    }

    /// `[item, item, ...]`, each item read by `item`.
    #[inline]
    fn array<T>(&mut self, out: &mut Vec<T>, mut item: impl FnMut(&mut Self) -> R<T>) -> R<()> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Ok(());
        }
        loop {
            out.push(item(self)?);
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Unsupported),
            }
        }
    }

    /// Skips any JSON value, validated by serde_json (used for unknown fields only).
    fn skip(&mut self) -> R<()> {
        self.ws();
        let rest = self.b.get(self.i..).ok_or(Unsupported)?;
        let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<IgnoredAny>();
        match stream.next() {
            Some(Ok(_)) => {
                self.i += stream.byte_offset();
                Ok(())
            }
            _ => Err(Unsupported),
        }
    }

    /// Iterates `"key": value` pairs of an object, calling `field` with the reader positioned
    /// at the value; `field` must consume it.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &str) -> R<()>) -> R<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            field(self, &key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Unsupported),
            }
        }
    }
}

/// Marks field `bit` as seen; a second sighting is a duplicate (serde rejects those).
fn once(seen: &mut u32, bit: u32) -> R<()> {
    if *seen & (1 << bit) != 0 {
        return Err(Unsupported);
    }
    *seen |= 1 << bit;
    Ok(())
}

fn opt_string(r: &mut Reader<'_>) -> R<Option<String>> {
    if r.null()? {
        Ok(None)
    } else {
        Ok(Some(r.string()?.into_owned()))
    }
}

fn opt_key(r: &mut Reader<'_>) -> R<Option<Vec<u8>>> {
    if r.null()? {
        return Ok(None);
    }
    let s = r.string()?;
    if s.is_empty() {
        return Ok(None);
    }
    STANDARD
        .decode(s.as_bytes())
        .map(Some)
        .map_err(|_| Unsupported)
}

fn row(r: &mut Reader<'_>, columns: usize) -> R<MatrixRow> {
    let mut row = MatrixRow::default();
    let mut seen = 0u32;
    r.object(|r, key| {
        match key {
            "bucket_id" => {
                once(&mut seen, 0)?;
                row.bucket_id = r.string()?.into_owned();
            }
            "label" => {
                once(&mut seen, 1)?;
                row.label = opt_string(r)?;
            }
            "start" => {
                once(&mut seen, 2)?;
                row.start = opt_key(r)?;
            }
            "end" => {
                once(&mut seen, 3)?;
                row.end = opt_key(r)?;
            }
            "aggregate" => {
                once(&mut seen, 4)?;
                row.aggregate = r.bool()?;
            }
            "route_ids" => {
                once(&mut seen, 5)?;
                r.array(&mut row.route_ids, Reader::u64)?;
            }
            "route_ids_truncated" => {
                once(&mut seen, 6)?;
                row.route_ids_truncated = r.bool()?;
            }
            "route_count" => {
                once(&mut seen, 7)?;
                row.route_count = r.u64()?;
            }
            "values" => {
                once(&mut seen, 8)?;
                row.values.reserve_exact(columns);
                r.array(&mut row.values, Reader::u64)?;
            }
            "conflict" => {
                once(&mut seen, 9)?;
                row.conflict = r.bool()?;
            }
            "conflicts" => {
                once(&mut seen, 10)?;
                r.array(&mut row.conflicts, Reader::bool)?;
            }
            "raft_group_ids" => {
                once(&mut seen, 11)?;
                row.raft_group_ids.reserve_exact(columns);
                r.array(&mut row.raft_group_ids, Reader::u64)?;
            }
            "leader_terms" => {
                once(&mut seen, 12)?;
                row.leader_terms.reserve_exact(columns);
                r.array(&mut row.leader_terms, Reader::u64)?;
            }
            "preview" => {
                once(&mut seen, 13)?;
                row.preview = opt_string(r)?;
            }
            "first_key" => {
                once(&mut seen, 14)?;
                row.first_key = opt_key(r)?;
            }
            "last_key" => {
                once(&mut seen, 15)?;
                row.last_key = opt_key(r)?;
            }
            // Identity shares of coarse write cells: serde_json decodes them.
            "write_lanes" => return Err(Unsupported),
            _ => r.skip()?,
        }
        Ok(())
    })?;
    // bucket_id is the one required field.
    if seen & 1 == 0 {
        return Err(Unsupported);
    }
    Ok(row)
}

/// Decodes a whole body; `Err(Unsupported)` means "ask serde_json".
pub(crate) fn decode(body: &[u8]) -> R<Matrix> {
    let mut r = Reader { b: body, i: 0 };
    let mut m = Matrix::empty(Series::default(), 0, String::new());
    let mut seen = 0u32;
    r.object(|r, key| {
        match key {
            "column_unix_ms" => {
                once(&mut seen, 0)?;
                r.array(&mut m.column_unix_ms, Reader::i64)?;
            }
            "rows" => {
                once(&mut seen, 1)?;
                let columns = m.column_unix_ms.len();
                r.array(&mut m.rows, |r| row(r, columns))?;
            }
            "series" => {
                once(&mut seen, 2)?;
                m.series = r.string()?.parse::<Series>().map_err(|_| Unsupported)?;
            }
            "generated_at" => {
                once(&mut seen, 3)?;
                m.generated_at = r.string()?.into_owned();
            }
            "step_ms" => {
                once(&mut seen, 4)?;
                m.step_ms = r.u64()?;
            }
            "node_id" => {
                once(&mut seen, 5)?;
                m.node_id = opt_string(r)?;
            }
            _ => r.skip()?,
        }
        Ok(())
    })?;
    r.ws();
    if r.i != body.len() {
        return Err(Unsupported);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(text: &str) -> (R<Matrix>, Option<Matrix>) {
        (
            decode(text.as_bytes()),
            serde_json::from_str::<Matrix>(text).ok(),
        )
    }

    fn sample() -> Matrix {
        Matrix {
            column_unix_ms: vec![-5, 0, 1_700_000_000_000],
            rows: vec![
                MatrixRow {
                    bucket_id: "route:1:redis#2".into(),
                    label: Some("re\"dis\u{e9}".into()),
                    start: Some(vec![0, 1, 255]),
                    end: None,
                    aggregate: true,
                    route_ids: vec![u64::MAX, 3],
                    route_ids_truncated: true,
                    route_count: 9,
                    values: vec![0, u64::MAX, 17],
                    conflict: true,
                    conflicts: vec![false, true, false],
                    raft_group_ids: vec![7, 7, 7],
                    leader_terms: vec![42, 43, 0],
                    preview: Some("tab\there".into()),
                    first_key: Some(vec![0, 1, 255, 7]),
                    last_key: Some(b"zz".to_vec()),
                    write_lanes: Vec::new(),
                },
                MatrixRow {
                    bucket_id: "route:2".into(),
                    values: vec![1, 2, 3],
                    ..MatrixRow::default()
                },
            ],
            series: Series::ReadBytes,
            generated_at: "2026-11-27T00:00:00Z".into(),
            step_ms: 60_000,
            node_id: Some("n\\2".into()),
        }
    }

    #[test]
    fn serialised_matrices_decode_exactly_as_serde_does() {
        let m = sample();
        let compact = serde_json::to_string(&m).unwrap_or_default();
        let pretty = serde_json::to_string_pretty(&m).unwrap_or_default();
        for text in [compact, pretty] {
            let (fast, slow) = both(&text);
            assert_eq!(fast.ok(), slow.clone(), "{text}");
            assert_eq!(slow, Some(m.clone()));
        }
    }

    #[test]
    fn lenient_but_valid_forms_match_serde() {
        for text in [
            r#"{}"#,
            r#"{"zzz": 5, "yyy": true,"rows": [], "xxx": -1.5e3}"#,
            r#" { "rows" : [ ] , "unknown": {"a":[1,2,{"b":null}]}, "fanout": null } "#,
            r#"{"node_id":null,"rows":[{"bucket_id":"x","label":null,"start":"","end":null,"values":[]}]}"#,
            r#"{"column_unix_ms":[1],"rows":[{"bucket_id":"\u0078","values":[0],"extra":"\"q\""}]}"#,
        ] {
            let (fast, slow) = both(text);
            assert!(slow.is_some(), "serde rejects {text}");
            assert_eq!(fast.ok(), slow, "{text}");
        }
    }

    #[test]
    fn anything_serde_rejects_is_not_accepted_here() {
        for text in [
            "",
            "{",
            r#"{"rows":[{"values":[1]}]}"#,
            r#"{"rows":[{"bucket_id":"a","values":[01]}]}"#,
            r#"{"rows":[{"bucket_id":"a","values":[1.5]}]}"#,
            r#"{"rows":[{"bucket_id":"a","values":[-1]}]}"#,
            r#"{"rows":[{"bucket_id":"a","values":["1"]}]}"#,
            r#"{"rows":[{"bucket_id":"a","values":[18446744073709551616]}]}"#,
            r#"{"rows":[{"bucket_id":"a","values":[1,]}]}"#,
            r#"{"rows":[{"bucket_id":"a","values":null}]}"#,
            r#"{"rows":[{"bucket_id":"a","start":"***"}]}"#,
            r#"{"series":"bogus"}"#,
            r#"{"series":null}"#,
            r#"{"step_ms":1,"step_ms":2}"#,
            r#"{"rows":[]} x"#,
            "{\"generated_at\":\"a\u{1}b\"}",
            r#"{"unknown": [1, }"#,
        ] {
            let (fast, slow) = both(text);
            assert!(slow.is_none(), "serde accepts {text}");
            assert_eq!(fast, Err(Unsupported), "{text}");
        }
    }

    #[test]
    fn truncations_and_byte_mutations_never_make_fast_accept_what_serde_does_not() {
        let text = serde_json::to_vec(&sample()).unwrap_or_default();
        for cut in 0..text.len() {
            let t = &text[..cut];
            if let Ok(m) = decode(t) {
                assert_eq!(
                    serde_json::from_slice::<Matrix>(t).ok(),
                    Some(m),
                    "cut {cut}"
                );
            }
        }
        for pos in 0..text.len() {
            for b in [
                b'"', b',', b'}', b']', b'0', b'9', b'-', b' ', b'n', b'\\', b'x',
            ] {
                let mut t = text.clone();
                t[pos] = b;
                if let Ok(m) = decode(&t) {
                    let slow = serde_json::from_slice::<Matrix>(&t).ok();
                    assert_eq!(slow, Some(m), "byte {pos} -> {:?}", b as char);
                }
            }
        }
    }
}
