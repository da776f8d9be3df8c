//! Row identities that are equal on every node.
//!
//! A row's `bucket_id` must name the same key range on every node, or the
//! cluster merge would add unrelated rows together (the reference numbers its
//! virtual buckets with a per-node counter and does exactly that). Route rows
//! are named by route id; coarsened rows by a hash of their key range.

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
}
