//! Printable labels for raw keys.
//!
//! Keys are arbitrary bytes. An operator needs a short, honest label: the
//! printable text when there is some, hex otherwise, and a visible mark on the
//! store's reserved system prefixes so internal traffic is never mistaken for
//! user keys.

/// Longest printable preview, in characters, before an ellipsis is added.
pub const MAX_PREVIEW_CHARS: usize = 24;

/// Key prefixes the store reserves for itself; previews of such keys are marked.
pub const RESERVED_PREFIXES: &[&[u8]] = &[b"!txn|", b"!dist|", b"!admin|", b"!meta|", b"!raft|"];

/// A printable label for `key`.
///
/// Guarantees: never longer than `MAX_PREVIEW_CHARS` characters plus an
/// ellipsis (and the `[sys] ` mark); ASCII apart from the ellipsis `…`; `(empty)` for the empty
/// key. A key whose bytes are all printable ASCII (0x20..=0x7E) is shown as
/// text; otherwise the printable leading run is shown when it is at least 4
/// characters long (e.g. `user:` followed by a binary id), else hex with a `0x`
/// prefix. Keys starting with a [`RESERVED_PREFIXES`] entry get a `[sys] ` mark.
#[must_use = "pure function"]
pub fn key_preview(key: &[u8]) -> String {
    if key.is_empty() {
        return "(empty)".to_owned();
    }
    let mark = if RESERVED_PREFIXES.iter().any(|p| key.starts_with(p)) {
        "[sys] "
    } else {
        ""
    };
    let printable = key
        .iter()
        .take_while(|b| (0x20..=0x7e).contains(*b))
        .count();
    // One allocation per preview: a matrix query labels every row (1 024
    // previews per query; a `format!` per byte was 5 % of a 7-day query).
    let mut out = String::with_capacity(mark.len() + 2 + MAX_PREVIEW_CHARS + 3);
    out.push_str(mark);
    if printable == key.len() || printable >= 4 {
        let shown = printable.min(MAX_PREVIEW_CHARS);
        out.extend(key[..shown].iter().map(|&b| char::from(b)));
        if shown < key.len() {
            out.push('…');
        }
    } else {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let shown = key.len().min(MAX_PREVIEW_CHARS / 2);
        out.push_str("0x");
        for &b in &key[..shown] {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        if shown < key.len() {
            out.push('…');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_keys_show_as_text_truncated_with_ellipsis() {
        assert_eq!(key_preview(b"user:42"), "user:42");
        assert_eq!(
            key_preview(b"abcdefghijklmnopqrstuvwxyz0123"),
            "abcdefghijklmnopqrstuvwx…"
        );
    }

    #[test]
    fn binary_keys_show_as_hex_and_printable_prefixes_survive() {
        assert_eq!(key_preview(&[0x00, 0xff]), "0x00ff");
        assert_eq!(key_preview(&[0xab; 20]), "0xabababababababababababab…");
        assert_eq!(key_preview(b"user:\x00\x01"), "user:…");
    }

    #[test]
    fn reserved_prefixes_are_marked_and_empty_is_named() {
        assert_eq!(key_preview(b"!txn|abc"), "[sys] !txn|abc");
        assert_eq!(key_preview(b""), "(empty)");
    }
}
