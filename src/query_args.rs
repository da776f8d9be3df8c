//! Flags shared by the commands that read one matrix query (`keyviz matrix`, `keyviz
//! heatmap`, `keyviz snapshot`): the admin API and login, the series, the time window,
//! the row budget and the key range, with kubectl/psql-style names and environment
//! variables. Turns them into an [`AdminClient`] and a [`RangeQuery`].

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use keyviz::Series;

use crate::admin_client::{AdminClient, AdminUrl, ClientError, RangeQuery, sanitize};
use crate::parse_duration;

/// The connection, login and query flags of one matrix query.
#[derive(Debug, Clone, Args)]
pub(crate) struct QueryArgs {
    /// Admin API of any node: `http://host:port` or `host:port` (the UI's URL works too).
    #[arg(long, env = "KEYVIZ_ADMIN_URL")]
    pub(crate) admin: String,
    /// Operator access key.
    #[arg(long, env = "KEYVIZ_ADMIN_USER")]
    pub(crate) user: Option<String>,
    /// Operator secret (visible to other local users in `ps`: prefer the environment
    /// variable or --password-file).
    #[arg(long, env = "KEYVIZ_ADMIN_PASSWORD", hide_env_values = true)]
    pub(crate) password: Option<String>,
    /// Read the secret from the first line of this file (wins over --password and
    /// KEYVIZ_ADMIN_PASSWORD).
    #[arg(long)]
    pub(crate) password_file: Option<PathBuf>,
    /// `writes`, `reads`, `write_bytes`, `read_bytes`, `leader_reads` or `follower_reads`.
    #[arg(short = 's', long, default_value = "writes", value_parser = parse_series)]
    pub(crate) series: Series,
    /// Start of the window: RFC 3339 (`2026-12-01T16:00:00Z`), relative to now (`-1h`,
    /// `-15m`, `-30s`), `now`, or unix milliseconds. Default: the oldest history kept.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) from: Option<String>,
    /// End of the window (exclusive), in the same forms as --from. Default: now.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) to: Option<String>,
    /// Row budget asked of the server (1..=1024); finer rows name narrower ranges.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub(crate) rows: Option<u64>,
    /// First key of the key range (inclusive). Text; `\xNN` escapes give any byte.
    #[arg(long)]
    pub(crate) key_start: Option<String>,
    /// End of the key range (exclusive), as --key-start.
    #[arg(long)]
    pub(crate) key_end: Option<String>,
    /// Deadline of one HTTP request (connect, answer and body).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Exit 0 even when a node did not answer (the output says so).
    #[arg(long)]
    pub(crate) allow_degraded: bool,
}

/// A resolved query: the client (not yet logged in) and what to ask.
pub(crate) struct Resolved {
    /// The client of the `--admin` node.
    pub(crate) client: AdminClient,
    /// Time and key bounds.
    pub(crate) range: RangeQuery,
    /// The series.
    pub(crate) series: Series,
    /// The instant relative times were resolved against (client clock, unix ms).
    pub(crate) now_unix_ms: i64,
}

/// Why the flags cannot be used: the message and the exit code.
pub(crate) enum Invalid {
    /// A usage error (exit 2).
    Usage(String),
    /// A client error (its own exit code).
    Client(ClientError),
}

fn parse_series(text: &str) -> Result<Series, String> {
    text.trim().parse::<Series>().map_err(|_| {
        format!(
            "invalid series '{}': use writes, reads, write_bytes, read_bytes, leader_reads or follower_reads",
            sanitize(text, 40)
        )
    })
}

/// The client clock in unix ms.
pub(crate) fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn digits(s: &str, what: &str) -> Result<i64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad {what}"));
    }
    s.parse().map_err(|_| format!("bad {what}"))
}

/// Parses RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; a space may replace `T`)
/// into unix ms; fractions beyond milliseconds are truncated.
fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return Err("expected YYYY-MM-DDTHH:MM:SSZ".into());
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err("expected T between date and time".into());
    }
    let year = digits(&t[0..4], "year")?;
    let month = digits(&t[5..7], "month")?;
    let day = digits(&t[8..10], "day")?;
    let hour = digits(&t[11..13], "hour")?;
    let minute = digits(&t[14..16], "minute")?;
    let second = digits(&t[17..19], "second")?;
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[usize::try_from(month - 1).unwrap_or(0)]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err("date or time out of range".into());
    }
    let mut rest = &t[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err("empty fraction".into());
        }
        let kept: String = frac[..n].chars().chain("000".chars()).take(3).collect();
        millis = digits(&kept, "fraction")?;
        rest = &frac[n..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let h = digits(&o[1..3], "offset")?;
            let m = digits(&o[4..6], "offset")?;
            if h > 23 || m > 59 {
                return Err("offset out of range".into());
            }
            sign * (h * 60 + m)
        }
        _ => return Err("expected Z or an offset like +02:00".into()),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second.min(59) - offset_min * 60;
    Ok(secs * 1_000 + millis)
}

/// Parses a `--from`/`--to`/`--baseline` instant against `now`: `now`, `-<duration>`
/// (`-90s`, `-15m`, `-1h`, `-2d`), unix milliseconds, or RFC 3339.
pub(crate) fn parse_instant(text: &str, now: i64) -> Result<i64, String> {
    let t = text.trim();
    let bad = |why: &str| {
        format!(
            "invalid time '{}': {why} (use RFC 3339 like 2026-12-01T16:00:00Z, -1h, now, or unix ms)",
            sanitize(text, 60)
        )
    };
    if t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(rel) = t.strip_prefix('-') {
        let (num, unit) =
            rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len()));
        let d = if unit == "d" {
            num.parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(86_400_000))
                .map(Duration::from_millis)
        } else if unit.is_empty() {
            None
        } else {
            parse_duration(rel).ok()
        };
        let d = d.ok_or_else(|| bad("relative times need a unit: -30s, -15m, -1h, -2d"))?;
        let ms = i64::try_from(d.as_millis()).map_err(|_| bad("too far back"))?;
        return now.checked_sub(ms).ok_or_else(|| bad("too far back"));
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<i64>().map_err(|_| bad("out of range"));
    }
    parse_rfc3339(t).map_err(|e| bad(&e))
}

/// Parses `FROM..TO` (each as [`parse_instant`]) into a bounded window.
pub(crate) fn parse_window(text: &str, now: i64) -> Result<(i64, i64), String> {
    let (a, b) = text.split_once("..").ok_or_else(|| {
        format!(
            "invalid window '{}': use FROM..TO, e.g. -2h..-1h",
            sanitize(text, 60)
        )
    })?;
    let from = parse_instant(a, now)?;
    let to = parse_instant(b, now)?;
    if from >= to {
        return Err(format!(
            "invalid window '{}': its start must be before its end",
            sanitize(text, 60)
        ));
    }
    Ok((from, to))
}

/// Decodes a key flag: text, with `\xNN` giving any byte and `\\` a backslash.
pub(crate) fn parse_key(flag: &str, text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            match bytes.get(i + 1) {
                Some(b'\\') => {
                    out.push(b'\\');
                    i += 2;
                    continue;
                }
                Some(b'x') => {
                    let hex = text
                        .get(i + 2..i + 4)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| {
                            format!("--{flag}: \\x must be followed by two hex digits")
                        })?;
                    out.push(hex);
                    i += 4;
                    continue;
                }
                _ => return Err(format!("--{flag}: unknown escape (use \\xNN or \\\\)")),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    if out.len() > keyviz_admin::api::MAX_KEY_BYTES {
        return Err(format!(
            "--{flag} is longer than {} bytes",
            keyviz_admin::api::MAX_KEY_BYTES
        ));
    }
    Ok(out)
}

impl QueryArgs {
    /// Checks the flags and builds the client and the query.
    ///
    /// # Errors
    /// [`Invalid::Usage`] for bad times, keys or credentials; [`Invalid::Client`] for a
    /// bad URL.
    pub(crate) fn resolve(&self) -> Result<Resolved, Invalid> {
        let url = AdminUrl::parse(&self.admin).map_err(Invalid::Client)?;
        let creds = crate::admin_client::resolve_credentials(
            self.user.as_deref(),
            self.password.as_deref(),
            self.password_file.as_deref(),
        )
        .map_err(Invalid::Usage)?;
        if self.timeout.is_zero() {
            return Err(Invalid::Usage("--timeout must be longer than 0".into()));
        }
        let now = now_unix_ms();
        let from = self
            .from
            .as_deref()
            .map(|t| parse_instant(t, now))
            .transpose()
            .map_err(Invalid::Usage)?;
        let to = self
            .to
            .as_deref()
            .map(|t| parse_instant(t, now))
            .transpose()
            .map_err(Invalid::Usage)?;
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            return Err(Invalid::Usage("--from must be before --to".into()));
        }
        let key_start = self
            .key_start
            .as_deref()
            .map(|k| parse_key("key-start", k))
            .transpose()
            .map_err(Invalid::Usage)?
            .filter(|k| !k.is_empty());
        let key_end = self
            .key_end
            .as_deref()
            .map(|k| parse_key("key-end", k))
            .transpose()
            .map_err(Invalid::Usage)?
            .filter(|k| !k.is_empty());
        if let (Some(s), Some(e)) = (&key_start, &key_end)
            && e <= s
        {
            return Err(Invalid::Usage(
                "--key-end must be greater than --key-start".into(),
            ));
        }
        Ok(Resolved {
            client: AdminClient::new(url, creds, self.timeout),
            range: RangeQuery {
                from_unix_ms: from,
                to_unix_ms: to,
                key_start,
                key_end,
            },
            series: self.series,
            now_unix_ms: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_accept_rfc3339_relative_now_and_unix_ms() {
        let now = 1_764_600_000_000;
        assert_eq!(parse_instant("now", now), Ok(now));
        assert_eq!(parse_instant("-1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_instant("-15m", now), Ok(now - 900_000));
        assert_eq!(parse_instant("-2d", now), Ok(now - 172_800_000));
        assert_eq!(parse_instant("1700000000000", now), Ok(1_700_000_000_000));
        assert_eq!(parse_instant("1970-01-01T00:00:00Z", now), Ok(0));
        assert_eq!(
            parse_instant("2023-11-14T22:13:20Z", now),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_instant("2023-11-14T23:13:20.5+01:00", now),
            Ok(1_700_000_000_500)
        );
        assert_eq!(
            parse_instant("2024-02-29 00:00:00.123456z", now),
            Ok(1_709_164_800_123)
        );
        for bad in [
            "-1",
            "-1x",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20+1:00",
            "",
        ] {
            let e = parse_instant(bad, now).expect_err(bad);
            assert!(e.starts_with("invalid time"), "{bad}: {e}");
        }
    }

    #[test]
    fn windows_need_two_ordered_ends() {
        let now = 10_000_000;
        assert_eq!(
            parse_window("-2h..-1h", now),
            Ok((now - 7_200_000, now - 3_600_000))
        );
        assert!(parse_window("-1h", now).is_err());
        assert!(parse_window("-1h..-2h", now).is_err());
    }

    #[test]
    fn keys_take_text_and_hex_escapes() {
        assert_eq!(parse_key("k", "user:1"), Ok(b"user:1".to_vec()));
        assert_eq!(
            parse_key("k", r"a\x00\xffb\\"),
            Ok(vec![b'a', 0, 0xff, b'b', b'\\'])
        );
        assert!(parse_key("k", r"\x0").is_err());
        assert!(parse_key("k", r"\n").is_err());
        assert!(parse_key("k", &"k".repeat(5000)).is_err());
    }
}
