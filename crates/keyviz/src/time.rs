//! Step alignment and timestamp formatting.
//!
//! The core never reads a clock: every entry point takes `now_unix_ms` from the
//! host, so tests step time by hand and two nodes agree on window boundaries.

/// Start of the step window that contains `t_unix_ms`: `floor(t / step) * step`.
///
/// Works for negative times (floor, not truncation). `step_ms` must be non-zero;
/// a zero step returns `t_unix_ms` unchanged.
#[must_use = "pure function"]
pub fn align_down(t_unix_ms: i64, step_ms: u64) -> i64 {
    let Ok(step) = i64::try_from(step_ms) else {
        return t_unix_ms;
    };
    if step == 0 {
        return t_unix_ms;
    }
    t_unix_ms.div_euclid(step).saturating_mul(step)
}

/// The step boundary nearest to `t_unix_ms` (half a step rounds up).
///
/// Used to line up a peer's columns that were stamped with a jittered clock.
/// A zero step returns `t_unix_ms` unchanged.
#[must_use = "pure function"]
pub fn align_nearest(t_unix_ms: i64, step_ms: u64) -> i64 {
    let Ok(step) = i64::try_from(step_ms) else {
        return t_unix_ms;
    };
    if step == 0 {
        return t_unix_ms;
    }
    align_down(t_unix_ms.saturating_add(step / 2), step_ms)
}

/// Formats unix milliseconds as RFC 3339 UTC, e.g. `2023-11-14T22:13:20.500Z`.
///
/// Milliseconds are printed only when non-zero. Times outside years 0..=9999 are
/// clamped to that range so the output is always a valid RFC 3339 string.
#[must_use = "pure function"]
pub fn format_rfc3339_ms(unix_ms: i64) -> String {
    // 0000-01-01 .. 9999-12-31T23:59:59.999
    let unix_ms = unix_ms.clamp(-62_167_219_200_000, 253_402_300_799_999);
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    if ms == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
/// Howard Hinnant's `civil_from_days`, valid for the whole clamped range.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_down_floors_including_negative_times() {
        assert_eq!(align_down(125_000, 60_000), 120_000);
        assert_eq!(align_down(120_000, 60_000), 120_000);
        assert_eq!(align_down(-1, 60_000), -60_000);
    }

    #[test]
    fn align_nearest_rounds_jitter_to_the_boundary() {
        assert_eq!(align_nearest(119_400, 60_000), 120_000);
        assert_eq!(align_nearest(120_700, 60_000), 120_000);
        assert_eq!(align_nearest(150_000, 60_000), 180_000);
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339_ms(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(
            format_rfc3339_ms(1_700_000_000_500),
            "2023-11-14T22:13:20.500Z"
        );
        assert_eq!(format_rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339_ms(i64::MIN), "0000-01-01T00:00:00Z");
    }
}
