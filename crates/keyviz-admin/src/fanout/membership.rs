//! Who to ask: the static `--keyvizFanoutNodes` list combined with the host's live
//! membership, without duplicates and without this node, and the peer URLs.

use crate::host::{Member, NodeIdentity};

/// Where a peer entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerSource {
    /// Only the static list.
    Static,
    /// Only the host's membership.
    Membership,
    /// Both.
    Both,
}

/// One peer to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTarget {
    /// The entry as configured (static list spelling wins), used as the node's name.
    pub name: String,
    /// Node id when the membership knows it.
    pub node_id: Option<String>,
    /// Origin of the entry.
    pub source: PeerSource,
}

/// `scheme://host:port` split off an entry; the path and query of the entry are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerBase {
    /// `http` or `https` (the latter needs TLS configured on the calling node).
    pub scheme: String,
    /// `host:port` or `host`, lower-cased.
    pub authority: String,
}

/// Splits an entry into scheme and authority (`http` assumed when the scheme is missing).
///
/// # Errors
/// A description when the host is empty or the scheme is not `http` or `https`.
pub fn parse_base(entry: &str) -> Result<PeerBase, String> {
    let entry = entry.trim();
    let (scheme, rest) = match entry.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("http".to_string(), entry),
    };
    let authority = rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if authority.is_empty() || authority.starts_with(':') {
        return Err(format!("peer entry {entry:?} has no host"));
    }
    if authority.contains('@') {
        return Err(format!("peer entry {entry:?} must not carry credentials"));
    }
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "peer entry {entry:?}: scheme {scheme:?} is not supported (http or https)"
        ));
    }
    Ok(PeerBase { scheme, authority })
}

/// Host and port of an authority; IPv6 brackets removed. `None` port when absent.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some((host, after)) = authority
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
    {
        return (host, after.strip_prefix(':'));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        Some(_) => (authority, None),
        None => (authority, None),
    }
}

fn is_loopback_host(h: &str) -> bool {
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_wildcard_host(h: &str) -> bool {
    h.is_empty()
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
}

/// Whether `entry` names this node literally: same authority as `self_addr`, or same port
/// with a loopback entry host while this node listens on a wildcard or loopback host.
/// Anything else (a hostname or routable IP of this node) is found later by node id.
#[must_use]
pub fn is_literal_self(entry: &str, self_addr: &str) -> bool {
    let Ok(e) = parse_base(entry) else {
        return false;
    };
    let me = match parse_base(self_addr) {
        Ok(b) => b.authority,
        // A wildcard listen address like ":8080" has no host; keep it as written.
        Err(_) => self_addr.trim().to_ascii_lowercase(),
    };
    if e.authority == me {
        return true;
    }
    let (eh, ep) = split_host_port(&e.authority);
    let (mh, mp) = split_host_port(&me);
    match (ep, mp) {
        (Some(ep), Some(mp)) if ep == mp => {
            eh == mh || (is_loopback_host(eh) && (is_wildcard_host(mh) || is_loopback_host(mh)))
        }
        _ => false,
    }
}

/// The peers to call: static entries in order, then membership entries not already listed
/// (compared by normalised authority), skipping entries that are literally this node and
/// members whose node id is this node's. Unparsable entries are kept (they fail per peer).
#[must_use]
pub fn peer_targets(
    identity: &NodeIdentity,
    static_nodes: &[String],
    members: &[Member],
) -> Vec<PeerTarget> {
    let key = |entry: &str| {
        parse_base(entry)
            .map(|b| b.authority)
            .unwrap_or_else(|_| entry.trim().to_ascii_lowercase())
    };
    let mut out: Vec<(String, PeerTarget)> = Vec::new();
    for entry in static_nodes {
        if entry.trim().is_empty() || is_literal_self(entry, identity.admin_addr()) {
            continue;
        }
        let k = key(entry);
        if out.iter().any(|(ok, _)| *ok == k) {
            continue;
        }
        out.push((
            k,
            PeerTarget {
                name: entry.trim().to_string(),
                node_id: None,
                source: PeerSource::Static,
            },
        ));
    }
    for m in members {
        if m.node_id.as_deref() == Some(identity.node_id())
            || m.admin_addr.trim().is_empty()
            || is_literal_self(&m.admin_addr, identity.admin_addr())
        {
            continue;
        }
        let k = key(&m.admin_addr);
        if let Some((_, t)) = out.iter_mut().find(|(ok, _)| *ok == k) {
            if t.source == PeerSource::Static {
                t.source = PeerSource::Both;
            }
            if t.node_id.is_none() {
                t.node_id.clone_from(&m.node_id);
            }
            continue;
        }
        out.push((
            k,
            PeerTarget {
                name: m.admin_addr.trim().to_string(),
                node_id: m.node_id.clone(),
                source: PeerSource::Membership,
            },
        ));
    }
    out.into_iter().map(|(_, t)| t).collect()
}

/// Appends `k=v` pairs, keys sorted (the order the reference's encoder produces).
fn encode_query(mut pairs: Vec<(&'static str, String)>) -> String {
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A key bound as standard padded base64, percent-encoded for a query string.
fn encode_key(key: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .encode(key)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// The matrix URL for a peer: `from_unix_ms`/`to_unix_ms` and `key_start`/`key_end`
/// (standard base64, percent-encoded) only when set, `rows` and `series` always, keys
/// sorted. Without key bounds the URL is exactly the reference's.
#[must_use]
pub fn matrix_url(
    base: &PeerBase,
    series: &str,
    rows: usize,
    from_unix_ms: Option<i64>,
    to_unix_ms: Option<i64>,
    key_start: Option<&[u8]>,
    key_end: Option<&[u8]>,
) -> String {
    let mut q = vec![("rows", rows.to_string()), ("series", series.to_string())];
    if let Some(k) = key_start {
        q.push(("key_start", encode_key(k)));
    }
    if let Some(k) = key_end {
        q.push(("key_end", encode_key(k)));
    }
    if let Some(f) = from_unix_ms {
        q.push(("from_unix_ms", f.to_string()));
    }
    if let Some(t) = to_unix_ms {
        q.push(("to_unix_ms", t.to_string()));
    }
    format!(
        "{}://{}{}?{}",
        base.scheme,
        base.authority,
        crate::api::MATRIX_PATH,
        encode_query(q)
    )
}

/// The hot-keys URL for a peer: `series` and `k` always, `from_unix_ms`/`to_unix_ms` and
/// `key_start`/`key_end` (standard base64, percent-encoded) only when set, keys sorted.
#[must_use]
pub fn hot_keys_url(base: &PeerBase, query: &keyviz::hotkeys::HotKeyQuery, k: usize) -> String {
    let mut q = vec![
        ("k", k.to_string()),
        ("series", query.series.as_str().to_string()),
    ];
    if let Some(key) = &query.key_start {
        q.push(("key_start", encode_key(key)));
    }
    if let Some(key) = &query.key_end {
        q.push(("key_end", encode_key(key)));
    }
    if let Some(f) = query.from_unix_ms {
        q.push(("from_unix_ms", f.to_string()));
    }
    if let Some(t) = query.to_unix_ms {
        q.push(("to_unix_ms", t.to_string()));
    }
    format!(
        "{}://{}{}?{}",
        base.scheme,
        base.authority,
        crate::api::HOT_KEYS_PATH,
        encode_query(q)
    )
}

/// The identity URL of a peer.
#[must_use]
pub fn identity_url(base: &PeerBase) -> String {
    format!(
        "{}://{}{}",
        base.scheme,
        base.authority,
        crate::api::IDENTITY_PATH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(addr: &str) -> NodeIdentity {
        match NodeIdentity::new("n1", addr) {
            Ok(i) => i,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn peer_urls_match_the_reference_shape() {
        let b = parse_base("http://10.0.0.2:8080").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            matrix_url(&b, "writes", 256, None, None, None, None),
            "http://10.0.0.2:8080/admin/api/v1/keyviz/matrix?rows=256&series=writes"
        );
        let b = parse_base("10.0.0.2:8080").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            matrix_url(&b, "reads", 1024, None, None, None, None),
            "http://10.0.0.2:8080/admin/api/v1/keyviz/matrix?rows=1024&series=reads"
        );
        let b = parse_base("http://node-a/some/path?x=1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            matrix_url(
                &b,
                "reads",
                8,
                Some(1_700_000_000_000),
                Some(1_700_000_900_000),
                None,
                None
            ),
            "http://node-a/admin/api/v1/keyviz/matrix?from_unix_ms=1700000000000&rows=8&series=reads&to_unix_ms=1700000900000"
        );
        assert_eq!(
            matrix_url(&b, "writes", 8, None, None, Some(&[0xfb, 0xff]), Some(b"b")),
            "http://node-a/admin/api/v1/keyviz/matrix?key_end=Yg%3D%3D&key_start=%2B%2F8%3D&rows=8&series=writes"
        );
    }

    #[test]
    fn hot_keys_urls_carry_k_series_and_only_the_set_bounds() {
        let b = parse_base("10.0.0.2:8080").unwrap_or_else(|e| panic!("{e}"));
        let q = keyviz::hotkeys::HotKeyQuery {
            series: keyviz::Series::Reads,
            ..Default::default()
        };
        assert_eq!(
            hot_keys_url(&b, &q, 80),
            "http://10.0.0.2:8080/admin/api/v1/keyviz/hotkeys?k=80&series=reads"
        );
        let q = keyviz::hotkeys::HotKeyQuery {
            from_unix_ms: Some(5),
            to_unix_ms: Some(9),
            key_start: Some(vec![0xfb, 0xff]),
            key_end: Some(b"b".to_vec()),
            ..q
        };
        assert_eq!(
            hot_keys_url(&b, &q, 20),
            "http://10.0.0.2:8080/admin/api/v1/keyviz/hotkeys?from_unix_ms=5&k=20&key_end=Yg%3D%3D&key_start=%2B%2F8%3D&series=reads&to_unix_ms=9"
        );
    }

    #[test]
    fn bad_entries_are_described() {
        assert!(parse_base("http://").is_err());
        assert!(parse_base(":8080").is_err());
        assert!(parse_base("ftp://node:9443").is_err_and(|e| e.contains("http or https")));
        let b = parse_base("HTTPS://Node:9443/x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (b.scheme.as_str(), b.authority.as_str()),
            ("https", "node:9443")
        );
        assert!(parse_base("http://user:pw@node:1").is_err());
    }

    #[test]
    fn literal_self_covers_exact_wildcard_and_loopback_spellings() {
        assert!(is_literal_self("127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(is_literal_self("http://127.0.0.1:8080/", "127.0.0.1:8080"));
        assert!(is_literal_self("localhost:8080", "0.0.0.0:8080"));
        assert!(is_literal_self("[::1]:8080", "[::]:8080"));
        assert!(is_literal_self("localhost:8080", "127.0.0.1:8080"));
        assert!(is_literal_self("localhost:8080", ":8080"));
        assert!(!is_literal_self("localhost:8081", "127.0.0.1:8080"));
        assert!(!is_literal_self("10.0.0.5:8080", "0.0.0.0:8080"));
        assert!(!is_literal_self("node-b:8080", "node-a:8080"));
    }

    #[test]
    fn static_and_membership_combine_without_duplicates_or_self() {
        let statics = vec![
            "127.0.0.1:8080".to_string(),
            "http://10.0.0.2:8080".to_string(),
            "10.0.0.3:8080".to_string(),
        ];
        let members = vec![
            Member {
                node_id: Some("n1".into()),
                admin_addr: "node-a.internal:8080".into(),
            },
            Member {
                node_id: Some("n2".into()),
                admin_addr: "10.0.0.2:8080".into(),
            },
            Member {
                node_id: Some("n4".into()),
                admin_addr: "10.0.0.4:8080".into(),
            },
        ];
        let t = peer_targets(&me("127.0.0.1:8080"), &statics, &members);
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["http://10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080"]
        );
        assert_eq!(t[0].source, PeerSource::Both);
        assert_eq!(t[0].node_id.as_deref(), Some("n2"));
        assert_eq!(t[1].source, PeerSource::Static);
        assert_eq!(t[2].source, PeerSource::Membership);
    }
}
