//! Row identities that are equal on every node.
//!
//! A row's `bucket_id` must name the same key range on every node, or the
//! cluster merge would add unrelated rows together (the reference numbers its
//! virtual buckets with a per-node counter and does exactly that). Route rows
//! are named by route id; coarsened rows by a hash of their key range.
//!
//! A route's range changes with splits, merges and re-registration, and a
//! sub-range's with its route's. Every range a bucket was counted under is a
//! separate row (an *incarnation*): the incarnation the live catalog still
//! has keeps the plain id, every other one is named
//! `<plain id>@<16 hex digits of virtual_bucket_id(range)>`, a pure function of
//! the id and the range, so two nodes name the same old incarnation alike.
//! See docs/CORE_API.md ("Row identity across catalog changes").

/// FNV-1a 64 over the range, with length prefixes so (`ab`,`c`) and (`a`,`bc`)
/// differ. Stable across processes, versions and platforms by construction.
#[must_use = "pure function"]
pub fn virtual_bucket_id(start: &[u8], end: Option<&[u8]>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    };
    eat(&(start.len() as u64).to_le_bytes());
    eat(start);
    match end {
        Some(end) => {
            eat(&[1]);
            eat(&(end.len() as u64).to_le_bytes());
            eat(end);
        }
        None => eat(&[0]),
    }
    h
}

/// `route:<id>`, or `route:<id>#<sub>` when the route has several sub-ranges.
#[must_use = "pure function"]
pub fn route_bucket_id(route: u64, sub: u32, sub_count: u32) -> String {
    if sub_count > 1 {
        format!("route:{route}#{sub}")
    } else {
        format!("route:{route}")
    }
}

/// `virtual:<hash>` for a coarsened range (see [`virtual_bucket_id`]).
#[must_use = "pure function"]
pub fn virtual_bucket_name(start: &[u8], end: Option<&[u8]>) -> String {
    format!("virtual:{}", virtual_bucket_id(start, end))
}

/// Separator between a plain bucket id and its incarnation suffix.
const INCARNATION_SEP: char = '@';
/// Hex digits of an incarnation suffix.
const INCARNATION_HEX: usize = 16;

/// `<bucket_id>@<hash of the range>`: the id of an incarnation of `bucket_id`
/// that is no longer the live catalog's (see the module docs). Deterministic
/// across processes and platforms.
#[must_use = "pure function"]
pub fn incarnation_bucket_id(bucket_id: &str, start: &[u8], end: Option<&[u8]>) -> String {
    format!(
        "{bucket_id}{INCARNATION_SEP}{:0width$x}",
        virtual_bucket_id(start, end),
        width = INCARNATION_HEX
    )
}

/// The plain bucket id of `id`: `id` without an incarnation suffix (ids without
/// one are returned unchanged, so reference peers' ids are their own base).
#[must_use = "pure function"]
pub fn bucket_base(id: &str) -> &str {
    match id.rsplit_once(INCARNATION_SEP) {
        Some((base, hex))
            if !base.is_empty()
                && hex.len() == INCARNATION_HEX
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            base
        }
        _ => id,
    }
}

/// The route and sub-range a route row's id names: `route:<id>` gives
/// `(id, None)`, `route:<id>#<sub>` gives `(id, Some(sub))`, with or without an
/// incarnation suffix (and with a reference adapter name, `route:<id>:<name>`). `None` for any other id (virtual buckets, aggregates,
/// foreign ids).
#[must_use = "pure function"]
pub fn parse_route_bucket_id(id: &str) -> Option<(u64, Option<u32>)> {
    let rest = bucket_base(id).strip_prefix("route:")?;
    // Reference peers may add an adapter name: `route:<id>:<adapter>#<sub>`.
    let route_end = rest.find(['#', ':']).unwrap_or(rest.len());
    let route = rest[..route_end].parse::<u64>().ok()?;
    let sub = match rest.split_once('#') {
        Some((_, sub)) => Some(sub.parse::<u32>().ok()?),
        None => None,
    };
    Some((route, sub))
}

/// Key order of rows `[start, end)`: by start, then by end (`None`, unbounded,
/// last). Overlapping incarnations of one area therefore sort narrower-first
/// when they share a start: after a split of `[a, z)` at `m` the rows read
/// `[a, m)`, `[a, z)`, `[m, z)`.
#[must_use = "pure function"]
pub(crate) fn range_order(
    a: (&[u8], Option<&[u8]>),
    b: (&[u8], Option<&[u8]>),
) -> std::cmp::Ordering {
    a.0.cmp(b.0).then_with(|| match (a.1, b.1) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    })
}

/// The later of two range ends (`None` = unbounded is the latest).
#[must_use = "pure function"]
pub(crate) fn max_end<'a>(a: Option<&'a [u8]>, b: Option<&'a [u8]>) -> Option<&'a [u8]> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_ids_depend_only_on_the_range() {
        assert_eq!(
            virtual_bucket_id(b"a", Some(b"c")),
            virtual_bucket_id(b"a", Some(b"c"))
        );
        assert_ne!(
            virtual_bucket_id(b"ab", Some(b"c")),
            virtual_bucket_id(b"a", Some(b"bc"))
        );
        assert_ne!(
            virtual_bucket_id(b"a", None),
            virtual_bucket_id(b"a", Some(b""))
        );
    }

    #[test]
    fn route_ids_get_a_sub_suffix_only_when_split() {
        assert_eq!(route_bucket_id(7, 0, 1), "route:7");
        assert_eq!(route_bucket_id(1, 3, 4), "route:1#3");
    }

    #[test]
    fn incarnation_ids_round_trip_to_their_base_and_route() {
        let id = incarnation_bucket_id("route:7#3", b"a", Some(b"m"));
        assert_eq!(id.len(), "route:7#3@".len() + 16);
        assert_ne!(id, incarnation_bucket_id("route:7#3", b"a", Some(b"z")));
        assert_eq!(bucket_base(&id), "route:7#3");
        assert_eq!(parse_route_bucket_id(&id), Some((7, Some(3))));
        assert_eq!(parse_route_bucket_id("route:7"), Some((7, None)));
        assert_eq!(parse_route_bucket_id("virtual:12"), None);
        assert_eq!(parse_route_bucket_id("route:x"), None);
        assert_eq!(parse_route_bucket_id("route:1:redis#2"), Some((1, Some(2))));
        // Only a well-formed suffix is stripped.
        assert_eq!(bucket_base("route:1@xyz"), "route:1@xyz");
        assert_eq!(bucket_base("@0123456789abcdef"), "@0123456789abcdef");
    }

    #[test]
    fn range_order_is_by_start_then_end_with_unbounded_last() {
        use std::cmp::Ordering::*;
        assert_eq!(range_order((b"a", Some(b"m")), (b"a", Some(b"z"))), Less);
        assert_eq!(range_order((b"a", None), (b"a", Some(b"z"))), Greater);
        assert_eq!(range_order((b"a", None), (b"m", Some(b"z"))), Less);
        assert_eq!(max_end(Some(b"m"), Some(b"z")), Some(&b"z"[..]));
        assert_eq!(max_end(Some(b"m"), None), None);
    }
}
