//! Parsing request arguments into typed commands (arity, options, numbers), with Redis's own
//! error texts for everything a client can get wrong.

use bytes::Bytes;

use crate::limits::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::raft::{ExpireCond, SetCond};

/// A parsed client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `PING [message]`.
    Ping(Option<Bytes>),
    /// `ECHO message`.
    Echo(Bytes),
    /// `GET key`.
    Get(Bytes),
    /// `SET key value [EX s | PX ms] [NX | XX]`; `ttl_ms` is relative.
    Set {
        /// Key.
        key: Bytes,
        /// Value.
        value: Bytes,
        /// Relative expiry in ms.
        ttl_ms: Option<u64>,
        /// NX / XX.
        cond: SetCond,
    },
    /// `DEL key [key ...]`.
    Del(Vec<Bytes>),
    /// `EXISTS key [key ...]`.
    Exists(Vec<Bytes>),
    /// INCR / DECR / INCRBY / DECRBY.
    IncrBy(Bytes, i64),
    /// `MGET key [key ...]`.
    MGet(Vec<Bytes>),
    /// `MSET key value [key value ...]`.
    MSet(Vec<(Bytes, Bytes)>),
    /// `APPEND key value`.
    Append(Bytes, Bytes),
    /// `STRLEN key`.
    Strlen(Bytes),
    /// `DBSIZE`.
    DbSize,
    /// `SCAN cursor [MATCH pattern] [COUNT n]`.
    Scan {
        /// Cursor: 0 to start, else a number this node issued (see `resp::scan`).
        cursor: u64,
        /// Glob pattern (`*`, `?`).
        pattern: Option<Bytes>,
        /// Page size hint.
        count: usize,
    },
    /// `INFO [section]`.
    Info,
    /// `QUIT`.
    Quit,
    /// `CONFIG GET parameter...` (answered with an empty map: nothing is configurable).
    ConfigGet,
    /// `COMMAND [...]` (answered with an empty array).
    CommandInfo,
    /// `CLIENT ...`, `SELECT 0` (answered `+OK`).
    ClientNoop,
    /// `KEYVIZ.SPLIT key`: split the route containing `key` at `key`.
    Split(Bytes),
    /// `KEYVIZ.CAMPAIGN group [node]`: move leadership of `group` to `node` (default: the node
    /// that received the command).
    Campaign {
        /// Group.
        group: u64,
        /// Target node; `None` = this node.
        node: Option<u64>,
    },
    /// `HOTKEYS START | GET | STOP | RESET | HELP`; run by the connection's server (it holds
    /// the node's session), never by the dispatcher.
    Hotkeys(super::hotkeys::HotkeysCmd),
    /// `TYPE key`: `string` for a live key, `none` otherwise (the store holds strings only).
    Type(Bytes),
    /// `TTL key` (`millis` false) / `PTTL key` (true): time to live, -1 without expiry, -2
    /// for a missing key.
    Ttl {
        /// Key.
        key: Bytes,
        /// Answer in milliseconds (`PTTL`) rather than seconds.
        millis: bool,
    },
    /// `EXPIRE` / `PEXPIRE` / `EXPIREAT` / `PEXPIREAT key t [NX|XX|GT|LT]`.
    Expire {
        /// Key.
        key: Bytes,
        /// When, in ms: relative to the proposing node's clock or absolute (unix ms).
        at: ExpireAt,
        /// NX / XX / GT / LT.
        cond: ExpireCond,
    },
    /// `PERSIST key`.
    Persist(Bytes),
    /// `MEMORY USAGE key [SAMPLES n]`: the bytes the key takes in the store's encoding (key +
    /// 8-byte expiry header + value), nil for a missing key; `SAMPLES` is accepted and changes
    /// nothing (values are strings).
    MemoryUsage(Bytes),
    /// `MEMORY HELP`.
    MemoryHelp,
    /// `OBJECT FREQ key` / `OBJECT HELP`; run by the connection's server (the answer comes
    /// from the cluster's hot keys), never by the dispatcher.
    Object(ObjectCmd),
    /// `AUTH [user] password`; handled by the connection, never by the dispatcher.
    Auth {
        /// The user (`None` = the `default` user).
        user: Option<Bytes>,
        /// The password.
        password: Bytes,
    },
}

/// When an `EXPIRE` family command sets the expiry to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireAt {
    /// `EXPIRE` / `PEXPIRE`: this many ms from now (may be ≤ 0: the key is deleted).
    In(i64),
    /// `EXPIREAT` / `PEXPIREAT`: this unix time in ms (may be in the past: deleted).
    At(i64),
}

impl ExpireAt {
    /// The absolute unix ms at `now_unix_ms`, at least 1 (an instant in the past, which
    /// deletes the key on apply).
    pub fn resolve(self, now_unix_ms: u64) -> u64 {
        let at = match self {
            ExpireAt::In(ms) => (now_unix_ms as i64).saturating_add(ms),
            ExpireAt::At(ms) => ms,
        };
        u64::try_from(at).unwrap_or(0).max(1)
    }
}

/// The `OBJECT` subcommands this server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectCmd {
    /// `OBJECT FREQ key`: the key's accesses (reads + writes) across the cluster over the
    /// last minute of history, as `redis-cli --hotkeys` reads it (see `resp::freq`).
    Freq(Bytes),
    /// `OBJECT HELP`.
    Help,
}

impl Command {
    /// The key of a single-key read that pipelines batch into one read per group (`GET`,
    /// `STRLEN`, `TYPE`, `MEMORY USAGE`); `None` for every other command.
    pub fn single_read_key(&self) -> Option<&Bytes> {
        match self {
            Command::Get(k) | Command::Strlen(k) | Command::Type(k) | Command::MemoryUsage(k) => {
                Some(k)
            }
            _ => None,
        }
    }

    /// Whether this is a `KEYVIZ.*` or `HOTKEYS` command (which need the full role, see
    /// [`crate::config::KeyvizCommands`]; Redis files `HOTKEYS` under `@admin`).
    pub fn is_keyviz(&self) -> bool {
        matches!(
            self,
            Command::Split(_) | Command::Campaign { .. } | Command::Hotkeys(_)
        )
    }

    /// The lower-case name of a `KEYVIZ.*` or `HOTKEYS` command (`""` for others), for error
    /// texts.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Split(_) => "keyviz.split",
            Command::Campaign { .. } => "keyviz.campaign",
            Command::Hotkeys(h) => h.name(),
            _ => "",
        }
    }

    /// The keys and values this command carries, for the size limits.
    fn keys_and_values(&self) -> (Vec<&Bytes>, Vec<&Bytes>) {
        match self {
            Command::Get(k)
            | Command::IncrBy(k, _)
            | Command::Strlen(k)
            | Command::Split(k)
            | Command::Type(k)
            | Command::MemoryUsage(k)
            | Command::Ttl { key: k, .. }
            | Command::Expire { key: k, .. }
            | Command::Persist(k)
            | Command::Object(ObjectCmd::Freq(k)) => (vec![k], vec![]),
            Command::Set { key, value, .. } => (vec![key], vec![value]),
            Command::Append(k, v) => (vec![k], vec![v]),
            Command::Del(ks) | Command::Exists(ks) | Command::MGet(ks) => {
                (ks.iter().collect(), vec![])
            }
            Command::MSet(pairs) => (
                pairs.iter().map(|(k, _)| k).collect(),
                pairs.iter().map(|(_, v)| v).collect(),
            ),
            _ => (vec![], vec![]),
        }
    }
}

/// Reply to a key longer than [`MAX_KEY_BYTES`].
pub fn key_too_long() -> String {
    format!("ERR key is too long (longer than {MAX_KEY_BYTES} bytes)")
}

/// Reply to a value longer than [`MAX_VALUE_BYTES`] (Redis's text for its own string limit).
pub const VALUE_TOO_LONG: &str = "ERR string exceeds maximum allowed size";

/// Refuses a command whose key or value the store cannot hold, before anything is read or
/// proposed. The error is the full Redis-style text; the connection stays usable.
fn check_sizes(cmd: Command) -> Result<Command, String> {
    let (keys, values) = cmd.keys_and_values();
    if keys.iter().any(|k| k.len() > MAX_KEY_BYTES) {
        return Err(key_too_long());
    }
    if values.iter().any(|v| v.len() > MAX_VALUE_BYTES) {
        return Err(VALUE_TOO_LONG.into());
    }
    Ok(cmd)
}

/// Every command name this server answers.
const KNOWN: &[&str] = &[
    "ping",
    "echo",
    "get",
    "set",
    "del",
    "exists",
    "incr",
    "decr",
    "incrby",
    "decrby",
    "mget",
    "mset",
    "append",
    "strlen",
    "dbsize",
    "scan",
    "info",
    "quit",
    "config",
    "command",
    "client",
    "select",
    "keyviz.split",
    "keyviz.campaign",
    "hotkeys",
    "auth",
    "type",
    "object",
    "memory",
    "ttl",
    "pttl",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "persist",
];

fn lower(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_lowercase()
}

fn arity(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

/// Parses an integer argument the way Redis does.
fn int(b: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| "ERR value is not an integer or out of range".to_string())
}

/// Parses `args` (`args[0]` is the command name). The error is the full Redis error text.
pub fn parse(args: Vec<Bytes>) -> Result<Command, String> {
    let Some(first) = args.first() else {
        return Err("ERR empty command".into());
    };
    let name = lower(first);
    let n = args.len();
    if !KNOWN.contains(&name.as_str()) {
        // Redis quotes the name and the first arguments, each cut short.
        let quote = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(128)]).into_owned();
        let shown: String = args
            .iter()
            .skip(1)
            .take(8)
            .map(|a| format!("'{}' ", quote(a)))
            .collect();
        return Err(format!(
            "ERR unknown command '{}', with args beginning with: {shown}",
            quote(first)
        ));
    }
    let mut it = args.into_iter().skip(1);
    let mut next = || it.next().unwrap_or_default();
    let cmd = match name.as_str() {
        "ping" if n <= 2 => Command::Ping(if n == 2 { Some(next()) } else { None }),
        "echo" if n == 2 => Command::Echo(next()),
        "get" if n == 2 => Command::Get(next()),
        "set" if n >= 3 => parse_set(next(), next(), (3..n).map(|_| next()).collect())?,
        "del" if n >= 2 => Command::Del((1..n).map(|_| next()).collect()),
        "exists" if n >= 2 => Command::Exists((1..n).map(|_| next()).collect()),
        "incr" if n == 2 => Command::IncrBy(next(), 1),
        "decr" if n == 2 => Command::IncrBy(next(), -1),
        "incrby" if n == 3 => {
            let k = next();
            Command::IncrBy(k, int(&next())?)
        }
        "decrby" if n == 3 => {
            let k = next();
            let d = int(&next())?;
            Command::IncrBy(k, d.checked_neg().ok_or("ERR decrement would overflow")?)
        }
        "mget" if n >= 2 => Command::MGet((1..n).map(|_| next()).collect()),
        "mset" if n >= 3 && n % 2 == 1 => {
            Command::MSet((0..(n - 1) / 2).map(|_| (next(), next())).collect())
        }
        "append" if n == 3 => Command::Append(next(), next()),
        "strlen" if n == 2 => Command::Strlen(next()),
        "dbsize" if n == 1 => Command::DbSize,
        "scan" if n >= 2 => parse_scan(next(), (2..n).map(|_| next()).collect())?,
        "info" => Command::Info,
        "quit" => Command::Quit,
        "config" if n >= 2 => match lower(&next()).as_str() {
            "get" if n >= 3 => Command::ConfigGet,
            "get" => return Err(arity("config|get")),
            "resetstat" | "set" | "rewrite" => Command::ClientNoop,
            other => {
                return Err(format!(
                    "ERR unknown subcommand '{other}'. Try CONFIG HELP."
                ));
            }
        },
        "command" => Command::CommandInfo,
        "client" if n >= 2 => Command::ClientNoop,
        "select" if n == 2 => {
            if int(&next())? != 0 {
                return Err("ERR DB index is out of range".into());
            }
            Command::ClientNoop
        }
        "keyviz.split" if n == 2 => Command::Split(next()),
        "keyviz.campaign" if n == 2 || n == 3 => {
            let mut id = || {
                u64::try_from(int(&next())?)
                    .map_err(|_| String::from("ERR value is not an integer or out of range"))
            };
            let group = id()?;
            let node = if n == 3 { Some(id()?) } else { None };
            Command::Campaign { group, node }
        }
        "hotkeys" if n >= 2 => {
            let rest: Vec<Bytes> = (1..n).map(|_| next()).collect();
            Command::Hotkeys(super::hotkeys::parse(&rest)?)
        }
        "type" if n == 2 => Command::Type(next()),
        "expire" | "pexpire" | "expireat" | "pexpireat" if n >= 3 => {
            let key = next();
            let t = int(&next())?;
            let opts: Vec<Bytes> = (3..n).map(|_| next()).collect();
            parse_expire(&name, key, t, &opts)?
        }
        "persist" if n == 2 => Command::Persist(next()),
        "ttl" | "pttl" if n == 2 => Command::Ttl {
            key: next(),
            millis: name == "pttl",
        },
        "memory" if n >= 2 => {
            let sub = next();
            match (lower(&sub).as_str(), n) {
                ("usage", 3) => Command::MemoryUsage(next()),
                ("usage", 5) => {
                    let key = next();
                    if lower(&next()) != "samples" {
                        return Err("ERR syntax error".into());
                    }
                    int(&next())?;
                    Command::MemoryUsage(key)
                }
                ("usage", _) => return Err("ERR syntax error".into()),
                ("help", 2) => Command::MemoryHelp,
                _ => {
                    return Err(format!(
                        "ERR unknown subcommand or wrong number of arguments for '{}'. Try MEMORY HELP.",
                        String::from_utf8_lossy(&sub[..sub.len().min(128)])
                    ));
                }
            }
        }
        "object" if n >= 2 => {
            let sub = next();
            match (lower(&sub).as_str(), n) {
                ("freq", 3) => Command::Object(ObjectCmd::Freq(next())),
                ("help", 2) => Command::Object(ObjectCmd::Help),
                _ => {
                    return Err(format!(
                        "ERR unknown subcommand or wrong number of arguments for '{}'. Try OBJECT HELP.",
                        String::from_utf8_lossy(&sub[..sub.len().min(128)])
                    ));
                }
            }
        }
        "auth" if n == 2 => Command::Auth {
            user: None,
            password: next(),
        },
        "auth" if n == 3 => Command::Auth {
            user: Some(next()),
            password: next(),
        },
        "auth" if n > 3 => return Err("ERR syntax error".into()),
        _ => return Err(arity(&name)),
    };
    check_sizes(cmd)
}

fn parse_set(key: Bytes, value: Bytes, opts: Vec<Bytes>) -> Result<Command, String> {
    let mut ttl_ms = None;
    let mut cond = SetCond::Always;
    let mut i = 0;
    while i < opts.len() {
        match lower(&opts[i]).as_str() {
            o @ ("ex" | "px") if ttl_ms.is_none() => {
                let raw = opts.get(i + 1).ok_or("ERR syntax error")?;
                let v = int(raw)?;
                if v <= 0 {
                    return Err("ERR invalid expire time in 'set' command".into());
                }
                let ms = if o == "ex" {
                    (v as u64).checked_mul(1000)
                } else {
                    Some(v as u64)
                };
                ttl_ms = Some(ms.ok_or("ERR invalid expire time in 'set' command")?);
                i += 2;
            }
            "nx" if cond == SetCond::Always => {
                cond = SetCond::IfAbsent;
                i += 1;
            }
            "xx" if cond == SetCond::Always => {
                cond = SetCond::IfPresent;
                i += 1;
            }
            _ => return Err("ERR syntax error".into()),
        }
    }
    Ok(Command::Set {
        key,
        value,
        ttl_ms,
        cond,
    })
}

/// The rest of an `EXPIRE` family command: `t` in the command's unit, then at most one of
/// `NX`, `XX`, `GT`, `LT` (Redis also allows `XX` with `GT` or `LT`; refused here as a
/// conflict). A time whose conversion to ms overflows is Redis's "invalid expire time".
fn parse_expire(name: &str, key: Bytes, t: i64, opts: &[Bytes]) -> Result<Command, String> {
    let invalid = || format!("ERR invalid expire time in '{name}' command");
    let ms = if name.starts_with('p') {
        t
    } else {
        t.checked_mul(1000).ok_or_else(invalid)?
    };
    let at = if name.ends_with("at") {
        ExpireAt::At(ms)
    } else {
        ExpireAt::In(ms)
    };
    let cond = match opts {
        [] => ExpireCond::Always,
        [o] => match lower(o).as_str() {
            "nx" => ExpireCond::IfNone,
            "xx" => ExpireCond::IfSome,
            "gt" => ExpireCond::Later,
            "lt" => ExpireCond::Earlier,
            _ => {
                return Err(format!(
                    "ERR Unsupported option {}",
                    String::from_utf8_lossy(&o[..o.len().min(128)])
                ));
            }
        },
        _ => {
            return Err(
                "ERR NX and XX, GT or LT options at the same time are not compatible".into(),
            );
        }
    };
    Ok(Command::Expire { key, at, cond })
}

fn parse_scan(cursor: Bytes, opts: Vec<Bytes>) -> Result<Command, String> {
    let cursor = std::str::from_utf8(&cursor)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or("ERR invalid cursor")?;
    let (mut pattern, mut count) = (None, 10usize);
    let mut i = 0;
    while i < opts.len() {
        let v = opts.get(i + 1).ok_or("ERR syntax error")?;
        match lower(&opts[i]).as_str() {
            "match" => pattern = Some(v.clone()),
            "count" => {
                let c = int(v)?;
                if c < 1 {
                    return Err("ERR syntax error".into());
                }
                count = (c as usize).min(10_000);
            }
            _ => return Err("ERR syntax error".into()),
        }
        i += 2;
    }
    Ok(Command::Scan {
        cursor,
        pattern,
        count,
    })
}

/// Glob match with `*` and `?` (other bytes match literally).
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    #[test]
    fn campaign_takes_a_group_and_an_optional_target_node() {
        assert_eq!(
            parse(args("KEYVIZ.CAMPAIGN 2")),
            Ok(Command::Campaign {
                group: 2,
                node: None
            })
        );
        assert_eq!(
            parse(args("keyviz.campaign 2 3")),
            Ok(Command::Campaign {
                group: 2,
                node: Some(3)
            })
        );
        let not_int = Err("ERR value is not an integer or out of range".to_string());
        assert_eq!(parse(args("KEYVIZ.CAMPAIGN 2 x")), not_int);
        assert_eq!(parse(args("KEYVIZ.CAMPAIGN -1")), not_int);
        assert!(parse(args("KEYVIZ.CAMPAIGN 1 2 3")).is_err());
    }

    #[test]
    fn type_object_freq_and_memory_usage_parse_and_other_subcommands_are_refused() {
        assert_eq!(parse(args("TYPE k")), Ok(Command::Type("k".into())));
        assert_eq!(
            parse(args("object freq k")),
            Ok(Command::Object(ObjectCmd::Freq("k".into())))
        );
        assert_eq!(
            parse(args("OBJECT HELP")),
            Ok(Command::Object(ObjectCmd::Help))
        );
        assert_eq!(
            parse(args("OBJECT ENCODING k")),
            Err(
                "ERR unknown subcommand or wrong number of arguments for 'ENCODING'. Try OBJECT HELP."
                    .into()
            )
        );
        assert!(parse(args("OBJECT FREQ")).is_err());
        assert_eq!(
            parse(args("MEMORY USAGE k")),
            Ok(Command::MemoryUsage("k".into()))
        );
        assert_eq!(
            parse(args("memory usage k SAMPLES 0")),
            Ok(Command::MemoryUsage("k".into()))
        );
        assert_eq!(
            parse(args("MEMORY USAGE k SAMPLES x")),
            Err("ERR value is not an integer or out of range".into())
        );
        assert_eq!(
            parse(args("MEMORY USAGE k FOO 1")),
            Err("ERR syntax error".into())
        );
        assert_eq!(parse(args("MEMORY HELP")), Ok(Command::MemoryHelp));
        assert_eq!(
            parse(args("EXPIRE k 10 GT")),
            Ok(Command::Expire {
                key: "k".into(),
                at: ExpireAt::In(10_000),
                cond: ExpireCond::Later
            })
        );
        assert_eq!(
            parse(args("pexpireat k 123")),
            Ok(Command::Expire {
                key: "k".into(),
                at: ExpireAt::At(123),
                cond: ExpireCond::Always
            })
        );
        assert_eq!(
            parse(args(&format!("EXPIRE k {}", i64::MAX))),
            Err("ERR invalid expire time in 'expire' command".into())
        );
        assert_eq!(
            parse(args("EXPIRE k 1 NX XX")),
            Err("ERR NX and XX, GT or LT options at the same time are not compatible".into())
        );
        assert_eq!(
            parse(args("EXPIRE k 1 FOO")),
            Err("ERR Unsupported option FOO".into())
        );
        assert_eq!(parse(args("PERSIST k")), Ok(Command::Persist("k".into())));
        assert_eq!(
            ExpireAt::In(-5).resolve(3),
            1,
            "a past instant stays in the past"
        );
        assert_eq!(ExpireAt::In(5).resolve(3), 8);
        assert_eq!(
            parse(args("pttl k")),
            Ok(Command::Ttl {
                key: "k".into(),
                millis: true
            })
        );
        assert_eq!(
            parse(args("TTL")),
            Err("ERR wrong number of arguments for 'ttl' command".into())
        );
        assert!(
            parse(args("MEMORY DOCTOR"))
                .is_err_and(|e| e.ends_with("for 'DOCTOR'. Try MEMORY HELP."))
        );
        assert_eq!(
            parse(args("TYPE")),
            Err("ERR wrong number of arguments for 'type' command".into())
        );
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(
            parse(args(&format!("OBJECT FREQ {long}"))),
            Err(key_too_long())
        );
        assert_eq!(parse(args(&format!("TYPE {long}"))), Err(key_too_long()));
    }

    #[test]
    fn set_options_parse_and_conflicts_are_syntax_errors() {
        assert_eq!(
            parse(args("SET k v EX 2 NX")),
            Ok(Command::Set {
                key: "k".into(),
                value: "v".into(),
                ttl_ms: Some(2000),
                cond: SetCond::IfAbsent
            })
        );
        assert_eq!(
            parse(args("set k v px 5")).map(|c| matches!(
                c,
                Command::Set {
                    ttl_ms: Some(5),
                    ..
                }
            )),
            Ok(true)
        );
        assert_eq!(parse(args("SET k v NX XX")), Err("ERR syntax error".into()));
        assert_eq!(
            parse(args("SET k v EX 0")),
            Err("ERR invalid expire time in 'set' command".into())
        );
        assert_eq!(parse(args("SET k v EX")), Err("ERR syntax error".into()));
    }

    #[test]
    fn wrong_arity_and_unknown_commands_get_redis_errors() {
        assert_eq!(
            parse(args("GET")),
            Err("ERR wrong number of arguments for 'get' command".into())
        );
        assert_eq!(
            parse(args("MSET a b c")),
            Err("ERR wrong number of arguments for 'mset' command".into())
        );
        assert!(parse(args("FLUSHALL a b")).is_err_and(
            |e| e == "ERR unknown command 'FLUSHALL', with args beginning with: 'a' 'b' "
        ));
        assert_eq!(
            parse(args("INCRBY k x")),
            Err("ERR value is not an integer or out of range".into())
        );
    }

    #[test]
    fn oversized_keys_and_values_are_refused_for_every_key_command() {
        let long_key = Bytes::from(vec![b'k'; MAX_KEY_BYTES + 1]);
        let ok_key = Bytes::from(vec![b'k'; MAX_KEY_BYTES]);
        let long_value = Bytes::from(vec![b'v'; MAX_VALUE_BYTES + 1]);
        let with =
            |parts: &[&Bytes]| -> Vec<Bytes> { parts.iter().map(|b| (*b).clone()).collect() };
        let n = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let (get, set, v) = (n("GET"), n("SET"), n("v"));
        for args in [
            with(&[&get, &long_key]),
            with(&[&n("MGET"), &v, &long_key]),
            with(&[&n("EXISTS"), &long_key]),
            with(&[&n("DEL"), &v, &long_key]),
            with(&[&set, &long_key, &v]),
            with(&[&n("MSET"), &v, &v, &long_key, &v]),
            with(&[&n("INCR"), &long_key]),
            with(&[&n("INCRBY"), &long_key, &n("2")]),
            with(&[&n("DECR"), &long_key]),
            with(&[&n("APPEND"), &long_key, &v]),
            with(&[&n("STRLEN"), &long_key]),
            with(&[&n("KEYVIZ.SPLIT"), &long_key]),
        ] {
            assert_eq!(parse(args), Err(key_too_long()));
        }
        assert_eq!(
            parse(with(&[&set, &v, &long_value])),
            Err(VALUE_TOO_LONG.into())
        );
        assert_eq!(
            parse(with(&[&n("MSET"), &v, &v, &n("w"), &long_value])),
            Err(VALUE_TOO_LONG.into())
        );
        assert_eq!(
            parse(with(&[&n("APPEND"), &v, &long_value])),
            Err(VALUE_TOO_LONG.into())
        );
        assert!(
            parse(with(&[&get, &ok_key])).is_ok(),
            "the limit itself is allowed"
        );
    }

    #[test]
    fn auth_takes_a_password_or_a_user_and_password() {
        assert_eq!(
            parse(args("AUTH pw")),
            Ok(Command::Auth {
                user: None,
                password: "pw".into()
            })
        );
        assert_eq!(
            parse(args("auth default pw")),
            Ok(Command::Auth {
                user: Some("default".into()),
                password: "pw".into()
            })
        );
        assert_eq!(parse(args("AUTH a b c")), Err("ERR syntax error".into()));
        assert_eq!(
            parse(args("AUTH")),
            Err("ERR wrong number of arguments for 'auth' command".into())
        );
    }

    #[test]
    fn glob_matches_star_and_question_mark() {
        assert!(glob_match(b"user:*", b"user:42"));
        assert!(glob_match(b"k?y", b"key"));
        assert!(!glob_match(b"k?y", b"kexy"));
        assert!(glob_match(b"*", b""));
        assert!(!glob_match(b"a*b", b"acd"));
    }
}
