//! Matrix query parameters with the reference's rules: defaults, clamps and messages.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use keyviz::Series;
use keyviz::hotkeys::{DEFAULT_HOT_KEYS_K, HotKeyQuery, MAX_HOT_KEYS_K};

use super::ApiError;

/// Longest accepted `key_start`/`key_end`, in decoded bytes.
pub const MAX_KEY_BYTES: usize = 4096;

/// Parsed `GET /admin/api/v1/keyviz/matrix` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixParams {
    /// Requested series (default `writes`).
    pub series: Series,
    /// Inclusive lower bound, unix ms; `None` = unbounded (also for `0`).
    pub from_unix_ms: Option<i64>,
    /// Exclusive upper bound, unix ms; `None` = unbounded (also for `0`).
    pub to_unix_ms: Option<i64>,
    /// Row budget, always in `1..=max_rows`.
    pub rows: usize,
    /// Inclusive start of the key filter; `None` = from the first key (also for an
    /// empty value).
    pub key_start: Option<Vec<u8>>,
    /// Exclusive end of the key filter; `None` = unbounded (also for an empty value).
    /// When both bounds are set, `key_end > key_start`.
    pub key_end: Option<Vec<u8>>,
}

const SERIES_MESSAGE: &str =
    "series must be one of: reads, writes, read_bytes, write_bytes, leader_reads, follower_reads";

/// Decodes `%XX` escapes and `+`; invalid escapes are kept literally.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first value of `name` in a raw query string (`None` when absent).
fn first_value(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .find(|(k, _)| percent_decode(k) == name)
        .map(|(_, v)| percent_decode(v))
}

pub(crate) fn parse_time(query: &str, name: &str) -> Result<Option<i64>, ApiError> {
    match first_value(query, name).as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(ApiError::invalid_query(format!(
                "{name} must be an integer (unix milliseconds)"
            ))),
        },
    }
}

/// Padding optional on decode; the alphabet is picked per value.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Base64 characters of a [`MAX_KEY_BYTES`]-byte key, padded.
const MAX_KEY_CHARS: usize = MAX_KEY_BYTES.div_ceil(3) * 4;

/// Decodes a key bound: standard or URL-safe base64, padded or not.
fn parse_key(query: &str, name: &str) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(raw) = first_value(query, name) else {
        return Ok(None);
    };
    // An unescaped `+` arrives as a space after query decoding; base64 has no spaces.
    let v = raw.replace(' ', "+");
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if v.len() > MAX_KEY_CHARS {
        return Err(ApiError::invalid_query(format!(
            "{name} must be at most {MAX_KEY_BYTES} bytes once decoded"
        )));
    }
    let engine = if v.contains(['-', '_']) {
        &URL_SAFE_LENIENT
    } else {
        &STANDARD_LENIENT
    };
    let key = engine.decode(v).map_err(|_| {
        ApiError::invalid_query(format!(
            "{name} must be base64 (standard or URL-safe, padding optional)"
        ))
    })?;
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::invalid_query(format!(
            "{name} must be at most {MAX_KEY_BYTES} bytes once decoded"
        )));
    }
    Ok(Some(key))
}

/// Parses the query in the reference's order (series, from, to, rows, then this
/// implementation's key_start, key_end) and reports the first failure. `rows` that are
/// absent, `<= 0` or `> max_rows` become `max_rows`. `from > to` is allowed (the answer is
/// simply empty); `key_end <= key_start` is not (it is always a client mistake).
///
/// # Errors
/// 400 `invalid_query` naming the bad parameter.
pub fn parse_matrix_query(query: Option<&str>, max_rows: usize) -> Result<MatrixParams, ApiError> {
    let q = query.unwrap_or("");
    let series = match first_value(q, "series").as_deref().map(str::trim) {
        None | Some("") => Series::Writes,
        Some(s) => s
            .parse::<Series>()
            .map_err(|_| ApiError::invalid_query(SERIES_MESSAGE))?,
    };
    let from_unix_ms = parse_time(q, "from_unix_ms")?;
    let to_unix_ms = parse_time(q, "to_unix_ms")?;
    let rows = match first_value(q, "rows").as_deref().map(str::trim) {
        None | Some("") => max_rows,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n <= 0 => max_rows,
            Ok(n) => usize::try_from(n).map_or(max_rows, |n| n.min(max_rows)),
            Err(_) => return Err(ApiError::invalid_query("rows must be an integer")),
        },
    };
    let key_start = parse_key(q, "key_start")?;
    let key_end = parse_key(q, "key_end")?;
    if let (Some(s), Some(e)) = (&key_start, &key_end)
        && e <= s
    {
        return Err(ApiError::invalid_query(
            "key_end must be greater than key_start",
        ));
    }
    Ok(MatrixParams {
        series,
        from_unix_ms,
        to_unix_ms,
        rows,
        key_start,
        key_end,
    })
}

const HOT_SERIES_MESSAGE: &str = "series must be one of: reads, writes, read_bytes, write_bytes (hot keys are kept for these four only)";

/// Parses `GET /admin/api/v1/keyviz/hotkeys` parameters with the matrix endpoint's rules
/// (first value wins, unknown parameters ignored, same time and key parsing, checked in the
/// order series, from, to, k, key_start, key_end), then [`HotKeyQuery::validate`]. Unlike
/// the matrix, `from_unix_ms >= to_unix_ms` is an error (an empty window has no hot keys to
/// ask about), and `k` (default 20) must be in `1..=1000`.
///
/// # Errors
/// 400 `invalid_query` naming the bad parameter.
pub fn parse_hot_keys_query(query: Option<&str>) -> Result<HotKeyQuery, ApiError> {
    let q = query.unwrap_or("");
    let series = match first_value(q, "series").as_deref().map(str::trim) {
        None | Some("") => Series::Writes,
        Some(s) => s
            .parse::<Series>()
            .map_err(|_| ApiError::invalid_query(HOT_SERIES_MESSAGE))?,
    };
    let from_unix_ms = parse_time(q, "from_unix_ms")?;
    let to_unix_ms = parse_time(q, "to_unix_ms")?;
    let k = match first_value(q, "k").as_deref().map(str::trim) {
        None | Some("") => DEFAULT_HOT_KEYS_K,
        Some(v) => match v.parse::<i64>() {
            Ok(n) => usize::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_HOT_KEYS_K).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid_query(format!(
                        "k must be between 1 and {MAX_HOT_KEYS_K}, got {n}"
                    ))
                })?,
            Err(_) => return Err(ApiError::invalid_query("k must be an integer")),
        },
    };
    let key_start = parse_key(q, "key_start")?;
    let key_end = parse_key(q, "key_end")?;
    if let (Some(s), Some(e)) = (&key_start, &key_end)
        && e <= s
    {
        return Err(ApiError::invalid_query(
            "key_end must be greater than key_start",
        ));
    }
    let query = HotKeyQuery {
        series,
        from_unix_ms,
        to_unix_ms,
        key_start,
        key_end,
        k,
    };
    query
        .validate()
        .map_err(|e| ApiError::invalid_query(e.to_string()))?;
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &str) -> Result<MatrixParams, ApiError> {
        parse_matrix_query(Some(q), 1024)
    }

    #[test]
    fn defaults_when_empty() {
        let m = p("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            m,
            MatrixParams {
                series: Series::Writes,
                from_unix_ms: None,
                to_unix_ms: None,
                rows: 1024,
                key_start: None,
                key_end: None,
            }
        );
        assert_eq!(
            parse_matrix_query(None, 1024).map(|m| m.rows).ok(),
            Some(1024)
        );
    }

    #[test]
    fn series_values_and_errors() {
        for (s, want) in [
            ("reads", Series::Reads),
            ("writes", Series::Writes),
            ("read_bytes", Series::ReadBytes),
            ("write_bytes", Series::WriteBytes),
            ("", Series::Writes),
        ] {
            assert_eq!(p(&format!("series={s}")).map(|m| m.series).ok(), Some(want));
        }
        let e = p("series=bogus").err();
        assert!(e.is_some_and(|e| {
            e.code == "invalid_query"
                && e.message
                    .starts_with("series must be one of: reads, writes, read_bytes, write_bytes")
        }));
    }

    #[test]
    fn rows_clamp_and_errors() {
        for (q, want) in [
            ("rows=0", 1024),
            ("rows=-1", 1024),
            ("rows=9999", 1024),
            ("rows=2", 2),
            ("rows=%2B7", 7),
        ] {
            assert_eq!(p(q).map(|m| m.rows).ok(), Some(want), "{q}");
        }
        assert!(p("rows=abc").is_err_and(|e| e.message == "rows must be an integer"));
        assert!(p("rows=99999999999999999999").is_err());
        assert_eq!(
            parse_matrix_query(Some("rows=20000"), 16_384)
                .map(|m| m.rows)
                .ok(),
            Some(16_384)
        );
    }

    #[test]
    fn time_bounds_zero_is_unbounded_and_first_value_wins() {
        let m = p("from_unix_ms=1699000000000&to_unix_ms=1700500000000&from_unix_ms=5")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.from_unix_ms, Some(1_699_000_000_000));
        assert_eq!(m.to_unix_ms, Some(1_700_500_000_000));
        let m = p("from_unix_ms=0&to_unix_ms=0").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((m.from_unix_ms, m.to_unix_ms), (None, None));
        assert_eq!(
            p("from_unix_ms=-5").map(|m| m.from_unix_ms).ok(),
            Some(Some(-5))
        );
        assert!(
            p("from_unix_ms=notanumber")
                .is_err_and(|e| e.message == "from_unix_ms must be an integer (unix milliseconds)")
        );
        assert!(p("series=bogus&rows=x").is_err_and(|e| e.message.starts_with("series")));
        assert!(p("from_unix_ms=5000&to_unix_ms=1000").is_ok());
    }

    #[test]
    fn key_bounds_accept_standard_url_safe_and_unpadded_base64() {
        // 0xfb 0xff encodes as "+/8=" (standard) and "-_8" (URL-safe, unpadded).
        for q in [
            "key_start=%2B%2F8%3D",
            "key_start=%2B/8",
            "key_start=-_8=",
            "key_start=-_8",
            "key_start=+/8=",
        ] {
            assert_eq!(
                p(q).map(|m| m.key_start).ok(),
                Some(Some(vec![0xfb, 0xff])),
                "{q}"
            );
        }
        let m = p("key_start=YQ%3D%3D&key_end=Yg").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (m.key_start, m.key_end),
            (Some(b"a".to_vec()), Some(b"b".to_vec()))
        );
        let m = p("key_start=&key_end=").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((m.key_start, m.key_end), (None, None));
    }

    #[test]
    fn key_bounds_reject_bad_base64_oversize_and_empty_ranges() {
        for (q, needle) in [
            ("key_start=%21%21", "key_start must be base64"),
            ("key_end=YQ%3D%3D%3D", "key_end must be base64"),
            ("key_start=-/8", "key_start must be base64"),
            ("key_end=Y", "key_end must be base64"),
            (
                "key_start=Yg&key_end=YQ",
                "key_end must be greater than key_start",
            ),
            (
                "key_start=YQ&key_end=YQ",
                "key_end must be greater than key_start",
            ),
        ] {
            assert!(
                p(q).is_err_and(|e| e.code == "invalid_query" && e.message.starts_with(needle)),
                "{q}"
            );
        }
        let exact = STANDARD_LENIENT.encode(vec![7u8; MAX_KEY_BYTES]);
        assert_eq!(
            p(&format!("key_end={exact}"))
                .map(|m| m.key_end.map(|k| k.len()))
                .ok(),
            Some(Some(MAX_KEY_BYTES))
        );
        let over = STANDARD_LENIENT.encode(vec![7u8; MAX_KEY_BYTES + 1]);
        assert!(
            p(&format!("key_start={over}"))
                .is_err_and(|e| e.message == "key_start must be at most 4096 bytes once decoded")
        );
        let huge = "A".repeat(1 << 20);
        assert!(p(&format!("key_end={huge}")).is_err_and(|e| e.message.starts_with("key_end")));
    }

    fn h(q: &str) -> Result<HotKeyQuery, ApiError> {
        parse_hot_keys_query(Some(q))
    }

    #[test]
    fn hot_keys_defaults_k_range_and_series_limited_to_four() {
        assert_eq!(
            parse_hot_keys_query(None).ok(),
            Some(HotKeyQuery::default())
        );
        let q = h("series=reads&k=1000&from_unix_ms=5&to_unix_ms=9&key_start=YQ&k=3")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (q.series, q.k, q.from_unix_ms, q.to_unix_ms, q.key_start),
            (Series::Reads, 1000, Some(5), Some(9), Some(b"a".to_vec()))
        );
        for (query, needle) in [
            ("k=0", "k must be between 1 and 1000, got 0"),
            ("k=1001", "k must be between 1 and 1000, got 1001"),
            ("k=-4", "k must be between 1 and 1000, got -4"),
            ("k=ten", "k must be an integer"),
            ("series=leader_reads", "hot keys are kept for reads"),
            (
                "series=bogus",
                "series must be one of: reads, writes, read_bytes, write_bytes",
            ),
            (
                "from_unix_ms=9&to_unix_ms=9",
                "from_unix_ms must be before to_unix_ms",
            ),
            ("to_unix_ms=x", "to_unix_ms must be an integer"),
            (
                "key_start=Yg&key_end=YQ",
                "key_end must be greater than key_start",
            ),
            ("key_end=%21", "key_end must be base64"),
        ] {
            assert!(
                h(query).is_err_and(|e| e.code == "invalid_query" && e.message.starts_with(needle)),
                "{query}: {:?}",
                h(query)
            );
        }
    }
}
