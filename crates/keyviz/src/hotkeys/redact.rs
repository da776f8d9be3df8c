//! How key names are captured: `--hot-keys=off|hashed|raw`.
//!
//! `hashed` keeps `prefix#hhhhhhhhhhhhhhhh`: the key's prefix up to and
//! including the first separator byte (when one occurs in the first
//! [`MAX_KEPT_PREFIX`] bytes), then 16 lowercase hex digits of
//! HMAC-SHA256(secret, domain label ‖ whole key) truncated to 64 bits. With
//! the cluster secret every node produces the same form for the same key, so
//! the cluster merge adds them up; without the secret the form cannot be
//! turned back into the key, short of guessing candidate keys *and* the
//! secret.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

use super::summary::MAX_HOT_KEY_BYTES;
use super::wire::HotKeyMode;

/// Longest prefix `hashed` mode keeps in clear: a separator further into the
/// key is ignored and nothing is kept, so a key with an unusual layout never
/// leaks most of itself.
pub const MAX_KEPT_PREFIX: usize = 64;

/// Domain label mixed into every hashed key, so the same secret used for
/// other MACs (tokens, peers) never produces a value comparable to a hot key.
const HASH_DOMAIN: &[u8] = b"keyviz hot key v1\0";

type HmacSha256 = Hmac<Sha256>;

/// Most entries the seal-form cache of one hashed redactor (and its clones)
/// holds: two generations of at most half as many each.
pub const SEAL_FORM_CACHE_ENTRIES: usize = 4_096;

/// Shown forms of recently sealed keys, captured form → hashed form, so a key
/// that stays hot across windows costs one HMAC, not one per window.
///
/// Eviction: two generations. Hits and new forms go into `recent`; when
/// `recent` holds `SEAL_FORM_CACHE_ENTRIES / 2` entries and another must be
/// added, `older` is dropped and `recent` becomes `older`. A hit in `older`
/// moves the entry back into `recent`. So at most
/// [`SEAL_FORM_CACHE_ENTRIES`] entries exist, and a key sealed in every window
/// is never evicted while fewer than 2 048 other keys are sealed between two
/// of its seals. In memory only: never stored, sent, logged or shown.
#[derive(Default)]
struct FormCache {
    recent: HashMap<Box<[u8]>, Box<[u8]>>,
    older: HashMap<Box<[u8]>, Box<[u8]>>,
}

impl FormCache {
    const GENERATION: usize = SEAL_FORM_CACHE_ENTRIES / 2;

    /// Copies the cached form of `captured` into `out` (cleared first).
    fn get_into(&mut self, captured: &[u8], out: &mut Vec<u8>) -> bool {
        if let Some(form) = self.recent.get(captured) {
            out.clear();
            out.extend_from_slice(form);
            return true;
        }
        let Some((key, form)) = self.older.remove_entry(captured) else {
            return false;
        };
        out.clear();
        out.extend_from_slice(&form);
        self.insert(key, form);
        true
    }

    fn insert(&mut self, key: Box<[u8]>, form: Box<[u8]>) {
        if self.recent.len() >= Self::GENERATION && !self.recent.contains_key(&key) {
            self.older = std::mem::take(&mut self.recent);
        }
        self.recent.insert(key, form);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.recent.len() + self.older.len()
    }
}

#[derive(Clone)]
enum Inner {
    Off,
    Raw,
    Hashed {
        /// The keyed state, cloned per key so the secret is absorbed once.
        mac: Box<HmacSha256>,
        separator: Option<u8>,
        /// Shared by clones (same secret and separator, so same forms).
        cache: Arc<parking_lot::Mutex<FormCache>>,
    },
}

/// How keys are captured (`--hot-keys=off|hashed|raw`).
///
/// `Clone + Send + Sync`; no I/O. Only [`seal_form`](Self::seal_form) in
/// hashed mode takes a lock (the redactor's seal-form cache mutex, shared by
/// its clones, held for a map lookup or insert, never while hashing). `Debug`
/// shows the mode and separator, never the secret nor a cached key.
#[derive(Clone)]
pub struct KeyRedactor {
    inner: Inner,
}

impl KeyRedactor {
    /// Captures nothing: [`apply`](Self::apply) and [`label`](Self::label)
    /// return `None`.
    #[must_use = "constructor"]
    pub fn off() -> Self {
        KeyRedactor { inner: Inner::Off }
    }

    /// Captures keys as written, cut at [`MAX_HOT_KEY_BYTES`].
    #[must_use = "constructor"]
    pub fn raw() -> Self {
        KeyRedactor { inner: Inner::Raw }
    }

    /// Captures a keyed hash of each key with `secret`, plus its prefix up to
    /// and including the first `separator` byte (if any within the first
    /// [`MAX_KEPT_PREFIX`] bytes). The same secret gives the same form on
    /// every node; different secrets give unrelated forms. Any secret length
    /// is accepted (HMAC hashes a secret longer than its block).
    #[must_use = "constructor"]
    pub fn hashed(secret: &[u8], separator: Option<u8>) -> Self {
        KeyRedactor {
            inner: Inner::Hashed {
                mac: Box::new(keyed(secret)),
                separator,
                cache: Arc::default(),
            },
        }
    }

    /// The capture mode.
    #[must_use = "pure function"]
    pub fn mode(&self) -> HotKeyMode {
        match self.inner {
            Inner::Off => HotKeyMode::Off,
            Inner::Raw => HotKeyMode::Raw,
            Inner::Hashed { .. } => HotKeyMode::Hashed,
        }
    }

    /// Writes the captured form of `key` into `out` (cleared first, so a
    /// reused buffer allocates only to grow) and returns `Some(truncated)`;
    /// `None` (and `out` cleared) in off mode.
    ///
    /// Raw: `key` cut at [`MAX_HOT_KEY_BYTES`], `truncated` when cut. Hashed:
    /// `prefix#` + 16 hex digits over the whole key (never truncated; at most
    /// `MAX_KEPT_PREFIX + 17` bytes).
    pub fn apply(&self, key: &[u8], out: &mut Vec<u8>) -> Option<bool> {
        out.clear();
        match &self.inner {
            Inner::Off => None,
            Inner::Raw => {
                let cut = key.len().min(MAX_HOT_KEY_BYTES);
                out.extend_from_slice(&key[..cut]);
                Some(cut < key.len())
            }
            Inner::Hashed { mac, separator, .. } => {
                out.extend_from_slice(kept_prefix(key, *separator));
                out.push(b'#');
                let mut mac = (**mac).clone();
                mac.update(HASH_DOMAIN);
                mac.update(key);
                let tag = mac.finalize().into_bytes();
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for &b in &tag[..8] {
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0x0f)]);
                }
                Some(false)
            }
        }
    }

    /// Whether [`capture_form`](Self::capture_form) defers work to
    /// [`seal_form`](Self::seal_form) (hashed mode: the HMAC runs per kept
    /// summary key at seal, not per captured operation).
    #[must_use = "pure function"]
    pub fn defers(&self) -> bool {
        matches!(self.inner, Inner::Hashed { .. })
    }

    /// What the observe path keeps of `key` for one window (the capture
    /// sketch, in memory only, never stored or shown): `key` cut at
    /// [`MAX_HOT_KEY_BYTES`] in raw *and* hashed mode, `Some(truncated)`;
    /// `None` in off mode. In hashed mode turn every key that leaves the
    /// sketch into its shown form with [`seal_form`](Self::seal_form).
    pub fn capture_form(&self, key: &[u8], out: &mut Vec<u8>) -> Option<bool> {
        out.clear();
        if matches!(self.inner, Inner::Off) {
            return None;
        }
        let cut = key.len().min(MAX_HOT_KEY_BYTES);
        out.extend_from_slice(&key[..cut]);
        Some(cut < key.len())
    }

    /// The shown form of a key kept by [`capture_form`](Self::capture_form):
    /// hashed mode => [`apply`](Self::apply) of it (so a key longer than
    /// [`MAX_HOT_KEY_BYTES`] is hashed over its first `MAX_HOT_KEY_BYTES`
    /// bytes, and the summary marks it truncated: keys sharing that start are
    /// one entry, as in raw mode); raw mode => `captured` itself; off => empty.
    ///
    /// Hashed mode remembers the forms of the last 2 048 to
    /// [`SEAL_FORM_CACHE_ENTRIES`] distinct keys it sealed (two-generation
    /// eviction; memory only, shared by clones), so a key hot across windows
    /// is hashed once. Takes the cache mutex twice at most, briefly (lookup;
    /// insert after hashing on a miss); the sampler calls it only from seal,
    /// under its seal mutex, so the cache mutex is uncontended there.
    pub fn seal_form(&self, captured: &[u8], out: &mut Vec<u8>) {
        match &self.inner {
            Inner::Hashed { cache, .. } => {
                if cache.lock().get_into(captured, out) {
                    return;
                }
                let _ = self.apply(captured, out);
                cache.lock().insert(captured.into(), out.as_slice().into());
            }
            Inner::Raw => {
                out.clear();
                out.extend_from_slice(captured);
            }
            Inner::Off => out.clear(),
        }
    }

    /// What may be shown of `key` as a row label: raw => the key (cut at
    /// [`MAX_HOT_KEY_BYTES`]); hashed => the kept prefix only (possibly
    /// empty); off => `None`.
    #[must_use = "pure function"]
    pub fn label<'a>(&self, key: &'a [u8]) -> Option<&'a [u8]> {
        match &self.inner {
            Inner::Off => None,
            Inner::Raw => Some(&key[..key.len().min(MAX_HOT_KEY_BYTES)]),
            Inner::Hashed { separator, .. } => Some(kept_prefix(key, *separator)),
        }
    }
}

impl KeyRedactor {
    /// Entries in the seal-form cache (0 outside hashed mode).
    #[cfg(test)]
    fn cached_forms(&self) -> usize {
        match &self.inner {
            Inner::Hashed { cache, .. } => cache.lock().len(),
            _ => 0,
        }
    }
}

impl Default for KeyRedactor {
    /// Raw, the documented default mode ([`HotKeyMode::default`]).
    fn default() -> Self {
        KeyRedactor::raw()
    }
}

impl fmt::Debug for KeyRedactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("KeyRedactor");
        d.field("mode", &self.mode());
        if let Inner::Hashed { separator, .. } = &self.inner {
            d.field("separator", &separator.map(char::from));
            d.field("secret", &"<redacted>");
        }
        d.finish()
    }
}

/// The prefix up to and including the first `separator` in the first
/// `MAX_KEPT_PREFIX` bytes; empty when there is none.
fn kept_prefix(key: &[u8], separator: Option<u8>) -> &[u8] {
    let Some(sep) = separator else {
        return &[];
    };
    let head = &key[..key.len().min(MAX_KEPT_PREFIX)];
    match head.iter().position(|&b| b == sep) {
        Some(i) => &key[..=i],
        None => &[],
    }
}

/// HMAC-SHA256 keyed with `secret`, built from the padded key block so there
/// is no fallible path (HMAC accepts any key length: a longer key is hashed
/// first, a shorter one zero-padded, exactly as RFC 2104 says).
fn keyed(secret: &[u8]) -> HmacSha256 {
    let mut block = hmac::digest::Key::<HmacSha256>::default();
    if secret.len() > block.len() {
        let digest = Sha256::digest(secret);
        block[..digest.len()].copy_from_slice(&digest);
    } else {
        block[..secret.len()].copy_from_slice(secret);
    }
    HmacSha256::new(&block)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(r: &KeyRedactor, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        r.apply(key, &mut out).expect("captures");
        out
    }

    #[test]
    fn hashed_form_is_the_prefix_then_sixteen_hex_digits_and_matches_rfc_2104_hmac() {
        let r = KeyRedactor::hashed(b"cluster secret", Some(b':'));
        let out = form(&r, b"user:alice@example.com");
        let s = std::str::from_utf8(&out).expect("ascii");
        let (prefix, hex) = s.split_once('#').expect("has #");
        assert_eq!(prefix, "user:");
        assert_eq!(hex.len(), 16);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(!s.contains("alice"));
        // The padded-block construction equals the library's own keying.
        let mut reference =
            <HmacSha256 as hmac::KeyInit>::new_from_slice(b"cluster secret").expect("any length");
        reference.update(HASH_DOMAIN);
        reference.update(b"user:alice@example.com");
        let tag = reference.finalize().into_bytes();
        let want: String = tag[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want);
    }

    #[test]
    fn hashing_is_deterministic_per_secret_and_differs_across_secrets() {
        let a1 = KeyRedactor::hashed(b"secret-a", Some(b':'));
        let a2 = KeyRedactor::hashed(b"secret-a", Some(b':'));
        let b = KeyRedactor::hashed(b"secret-b", Some(b':'));
        let key = b"session:42";
        assert_eq!(form(&a1, key), form(&a2, key), "same secret, same form");
        assert_ne!(
            form(&a1, key),
            form(&b, key),
            "another secret, another form"
        );
        assert_ne!(form(&a1, key), form(&a1, b"session:43"));
        // A long secret (hashed first by HMAC) also keys deterministically.
        let long = vec![7u8; 200];
        assert_eq!(
            form(&KeyRedactor::hashed(&long, None), key),
            form(&KeyRedactor::hashed(&long, None), key)
        );
    }

    #[test]
    fn the_prefix_is_kept_only_up_to_a_separator_in_the_first_64_bytes() {
        let r = KeyRedactor::hashed(b"s", Some(b':'));
        assert_eq!(r.label(b"orders:2026:17"), Some(&b"orders:"[..]));
        assert_eq!(r.label(b"noseparator"), Some(&b""[..]));
        let mut far = vec![b'a'; 70];
        far.push(b':');
        assert_eq!(r.label(&far), Some(&b""[..]), "separator beyond 64 bytes");
        assert!(form(&r, &far).starts_with(b"#"));
        let none = KeyRedactor::hashed(b"s", None);
        assert_eq!(none.label(b"orders:1"), Some(&b""[..]));
        assert_eq!(form(&none, b"orders:1").len(), 17);
    }

    #[test]
    fn raw_cuts_at_the_key_limit_and_says_so() {
        let r = KeyRedactor::raw();
        let mut out = vec![1, 2, 3];
        assert_eq!(r.apply(b"hot:counter", &mut out), Some(false));
        assert_eq!(out, b"hot:counter");
        let long = vec![b'k'; MAX_HOT_KEY_BYTES + 1];
        assert_eq!(r.apply(&long, &mut out), Some(true));
        assert_eq!(out.len(), MAX_HOT_KEY_BYTES);
        assert_eq!(r.label(&long).map(<[u8]>::len), Some(MAX_HOT_KEY_BYTES));
        assert_eq!(r.mode(), HotKeyMode::Raw);
    }

    #[test]
    fn deferred_hashing_gives_the_same_form_as_hashing_on_capture() {
        let r = KeyRedactor::hashed(b"secret", Some(b':'));
        assert!(r.defers());
        let mut kept = Vec::new();
        assert_eq!(r.capture_form(b"user:42", &mut kept), Some(false));
        assert_eq!(kept, b"user:42", "the window keeps the key itself");
        let mut shown = Vec::new();
        r.seal_form(&kept, &mut shown);
        assert_eq!(shown, form(&r, b"user:42"));
        // A long key is hashed over its first MAX_HOT_KEY_BYTES and flagged cut.
        let long = vec![b'x'; MAX_HOT_KEY_BYTES + 9];
        assert_eq!(r.capture_form(&long, &mut kept), Some(true));
        r.seal_form(&kept, &mut shown);
        assert_eq!(shown, form(&r, &long[..MAX_HOT_KEY_BYTES]));
        let raw = KeyRedactor::raw();
        assert!(!raw.defers());
        raw.capture_form(b"k", &mut kept);
        raw.seal_form(&kept, &mut shown);
        assert_eq!(shown, b"k");
        assert_eq!(KeyRedactor::off().capture_form(b"k", &mut kept), None);
    }

    #[test]
    fn cached_seal_forms_equal_uncached_ones_and_the_cache_stays_bounded() {
        let r = KeyRedactor::hashed(b"secret", Some(b':'));
        let clone = r.clone();
        let mut shown = Vec::new();
        // Three generations' worth of distinct keys, each sealed twice (the
        // second time from the cache), checked against the uncached form.
        for i in 0..(SEAL_FORM_CACHE_ENTRIES * 3 / 2) {
            let key = format!("user:{i}");
            let want = form(&r, key.as_bytes());
            for _ in 0..2 {
                r.seal_form(key.as_bytes(), &mut shown);
                assert_eq!(shown, want, "key {key}");
            }
            assert!(r.cached_forms() <= SEAL_FORM_CACHE_ENTRIES);
        }
        assert!(r.cached_forms() > SEAL_FORM_CACHE_ENTRIES / 2);
        // A key sealed in every "window" survives any number of others.
        let hot = b"hot:counter";
        let want = form(&r, hot);
        for round in 0..5 {
            clone.seal_form(hot, &mut shown);
            assert_eq!(shown, want);
            for i in 0..SEAL_FORM_CACHE_ENTRIES / 2 - 1 {
                r.seal_form(format!("r{round}:{i}").as_bytes(), &mut shown);
            }
            assert!(r.cached_forms() <= SEAL_FORM_CACHE_ENTRIES);
        }
        // Clones share one cache; another redactor (another secret) has its own.
        assert_eq!(clone.cached_forms(), r.cached_forms());
        let other = KeyRedactor::hashed(b"other", Some(b':'));
        assert_eq!(other.cached_forms(), 0);
        other.seal_form(hot, &mut shown);
        assert_eq!(shown, form(&other, hot));
        assert_ne!(shown, want);
        assert_eq!(KeyRedactor::raw().cached_forms(), 0);
    }

    #[test]
    fn off_captures_nothing() {
        let r = KeyRedactor::off();
        let mut out = b"stale".to_vec();
        assert_eq!(r.apply(b"k", &mut out), None);
        assert!(out.is_empty());
        assert_eq!(r.label(b"k"), None);
        assert_eq!(r.mode(), HotKeyMode::Off);
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let secret = "hunter2-very-secret";
        let r = KeyRedactor::hashed(secret.as_bytes(), Some(b'/'));
        let shown = format!("{r:?} {:?}", r.clone());
        assert!(!shown.contains(secret), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Hashed"), "{shown}");
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<KeyRedactor>();
    }
}
