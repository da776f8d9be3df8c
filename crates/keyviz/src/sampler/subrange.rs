//! Order-preserving sub-ranges of one route.
//!
//! A route `[start, end)` is cut into K buckets by reading an 8-byte big-endian
//! window of each key just past the common prefix of start and end. The
//! boundaries are precomputed once per slot, so finding a key's bucket is two
//! byte compares, one 8-byte load and a binary search over at most 255 `u64`s:
//! no division on the hot path.

/// Bytes in the window read past the common prefix.
const WINDOW: usize = 8;

/// Reads 8 bytes of `b` at `off`, big-endian; bytes past the end count as 0.
/// No call: the short tail is shifted in byte by byte (a copy into a buffer
/// compiled to a `memcpy` call on the observe path).
#[inline(always)]
fn window(b: &[u8], off: usize) -> u64 {
    if let Some(chunk) = off.checked_add(WINDOW).and_then(|end| b.get(off..end)) {
        return <[u8; WINDOW]>::try_from(chunk).map_or(0, u64::from_be_bytes);
    }
    let tail = b.get(off..).unwrap_or_default();
    let mut w = 0u64;
    for i in 0..WINDOW {
        w = (w << 8) | u64::from(tail.get(i).copied().unwrap_or(0));
    }
    w
}

/// The immutable sub-range layout of a slot.
#[derive(Debug, Clone)]
pub(crate) struct SubLayout {
    prefix_len: usize,
    /// The common prefix of start and end (empty for unbounded routes).
    prefix: Box<[u8]>,
    /// Inner boundaries: `bounds[i-1] = sub_start + ceil(i * span / k)`, i in 1..k.
    bounds: Box<[u64]>,
}

impl SubLayout {
    /// A single bucket (K = 1): every key maps to 0.
    pub(crate) fn single() -> SubLayout {
        SubLayout {
            prefix_len: 0,
            prefix: Box::default(),
            bounds: Box::default(),
        }
    }

    /// Lays out `k` buckets over `[start, end)`. K is capped by the span of the
    /// window so that every boundary strictly increases; degenerate ranges (equal,
    /// inverted, or differing only past prefix + 8 bytes) get one bucket.
    pub(crate) fn new(start: &[u8], end: Option<&[u8]>, k: u32) -> SubLayout {
        if k <= 1 {
            return SubLayout::single();
        }
        let (prefix_len, sub_start, sub_end) = match end {
            None => (0, window(start, 0), u64::MAX),
            Some(end) => {
                let p = start.iter().zip(end).take_while(|(a, b)| a == b).count();
                (p, window(start, p), window(end, p))
            }
        };
        if sub_end <= sub_start {
            return SubLayout::single();
        }
        let span = sub_end - sub_start;
        let k = u64::from(k).min(span);
        let bounds: Box<[u64]> = (1..k).map(|i| sub_start + ceil_frac(i, span, k)).collect();
        SubLayout {
            prefix_len,
            prefix: start.get(..prefix_len).unwrap_or(start).into(),
            bounds,
        }
    }

    /// Whether this is one bucket (every key maps to 0).
    #[inline(always)]
    pub(crate) fn is_single(&self) -> bool {
        self.bounds.is_empty()
    }

    /// Number of buckets (at least 1).
    pub(crate) fn count(&self) -> usize {
        self.bounds.len() + 1
    }

    /// The bucket of `key`; monotone in `key` and always `< count()`.
    ///
    /// Keys that do not share the route's common prefix sort wholly before or
    /// after its sub-space and clamp to the first or last bucket; keys that do
    /// are ordered by their 8-byte window, which is monotone in the key.
    #[inline(always)]
    pub(crate) fn index(&self, key: &[u8]) -> usize {
        if self.bounds.is_empty() {
            return 0;
        }
        self.index_of_many(key)
    }

    /// [`index`](SubLayout::index) with more than one bucket. Inlined and
    /// call-free (the prefix is compared byte by byte, not by a `memcmp`
    /// call), so the observe fast path that runs it calls nothing.
    #[inline(always)]
    fn index_of_many(&self, key: &[u8]) -> usize {
        let p = self.prefix_len;
        if p > 0 {
            for (k, b) in key.iter().zip(self.prefix.iter()) {
                if k != b {
                    return if k < b { 0 } else { self.bounds.len() };
                }
            }
            if key.len() < self.prefix.len() {
                return 0; // a proper prefix of the common prefix sorts before it
            }
        }
        let w = window(key, p);
        // Branch-free binary search (the keys of a hot route are unpredictable,
        // so a branchy search pays a misprediction per step): the loop count
        // depends only on K, and each step compiles to a conditional move.
        let bounds = &self.bounds;
        let (mut base, mut size) = (0usize, bounds.len());
        while size > 1 {
            let half = size / 2;
            let mid = base + half;
            base = if bounds[mid] <= w { mid } else { base };
            size -= half;
        }
        base + usize::from(bounds[base] <= w)
    }

    /// The key range of bucket `i`: bucket 0 starts at the route start, the last
    /// ends at the route end; inner boundaries are the smallest keys that map to
    /// the bucket (trailing zero bytes of the window trimmed).
    pub(crate) fn bounds_of(
        &self,
        i: usize,
        route_start: &[u8],
        route_end: Option<&[u8]>,
    ) -> (Vec<u8>, Option<Vec<u8>>) {
        let last = self.bounds.len();
        let boundary = |j: usize| -> Vec<u8> {
            let mut key = route_start[..self.prefix_len.min(route_start.len())].to_vec();
            key.resize(self.prefix_len, 0);
            let w = self.bounds[j - 1].to_be_bytes();
            let keep = WINDOW - w.iter().rev().take_while(|b| **b == 0).count();
            key.extend_from_slice(&w[..keep]);
            key
        };
        let start = if i == 0 {
            route_start.to_vec()
        } else {
            boundary(i.min(last))
        };
        let end = if i >= last {
            route_end.map(<[u8]>::to_vec)
        } else {
            Some(boundary(i + 1))
        };
        (start, end)
    }

    #[cfg(test)]
    pub(crate) fn prefix_len(&self) -> usize {
        self.prefix_len
    }
}

/// `ceil(i * span / k)` without overflow.
fn ceil_frac(i: u64, span: u64, k: u64) -> u64 {
    let n = u128::from(i) * u128::from(span);
    let k = u128::from(k);
    u64::try_from(n.div_ceil(k)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_caps_k_at_span_and_finds_common_prefix() {
        assert_eq!(SubLayout::new(b"a", None, 1).count(), 1);
        assert_eq!(SubLayout::new(b"a", None, 8).count(), 8);
        let l = SubLayout::new(b"tenant/aaaa", Some(b"tenant/zzzz"), 8);
        assert_eq!((l.count(), l.prefix_len()), (8, 7));
        assert_eq!(SubLayout::new(b"abc", Some(b"abc"), 16).count(), 1);
        assert_eq!(SubLayout::new(&[0xff; 8], None, 8).count(), 1);
        let mut s = vec![0xff; 7];
        s.push(0xfd);
        let l = SubLayout::new(&s, None, 8);
        assert_eq!(l.count(), 2, "K is capped at the span of 2");
    }

    #[test]
    fn index_edges_on_a_quarter_split() {
        let l = SubLayout::new(&[0x00], Some(&[0x40]), 4);
        for (key, want) in [
            (&[0x00][..], 0),
            (&[][..], 0),
            (&[0x40][..], 3),
            (&[0xff][..], 3),
            (&[0x0f][..], 0),
            (&[0x10][..], 1),
            (&[0x20][..], 2),
            (&[0x3f][..], 3),
        ] {
            assert_eq!(l.index(key), want, "key {key:?}");
        }
        let (lo, hi) = l.bounds_of(1, &[0x00], Some(&[0x40]));
        assert_eq!((lo, hi), (vec![0x10], Some(vec![0x20])));
    }

    #[test]
    fn buckets_tile_the_route_exactly() {
        let l = SubLayout::new(&[0x00], Some(&[0x40]), 4);
        let rows: Vec<_> = (0..4)
            .map(|i| l.bounds_of(i, &[0x00], Some(&[0x40])))
            .collect();
        assert_eq!(rows[0].0, vec![0x00]);
        assert_eq!(rows[3].1, Some(vec![0x40]));
        for w in rows.windows(2) {
            assert_eq!(w[0].1.as_ref(), Some(&w[1].0));
        }
        let unbounded = SubLayout::new(&[], None, 4);
        assert_eq!(unbounded.bounds_of(3, &[], None).1, None);
        assert_eq!(unbounded.bounds_of(1, &[], None).0, vec![0x40]);
    }

    proptest! {
        #[test]
        fn index_is_monotone_and_in_range(
            k in 1u32..=256,
            start in proptest::collection::vec(any::<u8>(), 0..12),
            end in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)),
            a in proptest::collection::vec(any::<u8>(), 0..12),
            b in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            let l = SubLayout::new(&start, end.as_deref(), k);
            let (k1, k2) = if a <= b { (a, b) } else { (b, a) };
            let (i1, i2) = (l.index(&k1), l.index(&k2));
            prop_assert!(i1 <= i2);
            prop_assert!(i2 < l.count());
        }

        #[test]
        fn bucket_bounds_contain_the_counted_key(
            k in 1u32..=16,
            first in 0u8..0x40,
            rest in proptest::collection::vec(any::<u8>(), 0..6),
        ) {
            let (start, end) = (vec![0x00u8], Some(vec![0x40u8]));
            let mut key = vec![first];
            key.extend(rest);
            let l = SubLayout::new(&start, end.as_deref(), k);
            let i = l.index(&key);
            let (lo, hi) = l.bounds_of(i, &start, end.as_deref());
            prop_assert!(key.as_slice() >= lo.as_slice());
            if let Some(hi) = hi { prop_assert!(key < hi); }
        }
    }
}
