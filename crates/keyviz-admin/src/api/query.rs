//! Matrix query parameters with the reference's rules: defaults, clamps and messages.

use keyviz::Series;

use super::ApiError;

/// Parsed `GET /admin/api/v1/keyviz/matrix` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatrixParams {
    /// Requested series (default `writes`).
    pub series: Series,
    /// Inclusive lower bound, unix ms; `None` = unbounded (also for `0`).
    pub from_unix_ms: Option<i64>,
    /// Exclusive upper bound, unix ms; `None` = unbounded (also for `0`).
    pub to_unix_ms: Option<i64>,
    /// Row budget, always in `1..=max_rows`.
    pub rows: usize,
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

fn parse_time(query: &str, name: &str) -> Result<Option<i64>, ApiError> {
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

/// Parses the query in the reference's order (series, from, to, rows) and reports the
/// first failure. `rows` that are absent, `<= 0` or `> max_rows` become `max_rows`.
/// `from > to` is allowed (the answer is simply empty).
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
    Ok(MatrixParams {
        series,
        from_unix_ms,
        to_unix_ms,
        rows,
    })
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
                rows: 1024
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
}
