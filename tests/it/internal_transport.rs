//! The internal (Raft) port authenticates every request with the cluster secret: a forged
//! forwarded write without a signature, signed with a wrong secret, for another node, or
//! replayed, is refused and changes nothing; a valid one is answered with a signed answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use kvnode::dispatch::{GroupCommand, GroupReply};
use kvnode::raft::{GroupError, KvOp, KvResponse, SetCond};

use crate::util::{Cluster, Opts, Reply, Resp, SECRET};

/// Signature headers of a POST of `body` to `path`, signed with `secret` for `audience`.
fn sign(secret: &[u8], path: &str, audience: &str, body: &[u8]) -> Vec<(String, String)> {
    let keys = keyviz_admin::peer::PeerKeys::new(secret.to_vec(), None);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    keyviz_admin::peer::signing::sign_request(
        &keys,
        &http::Method::POST,
        path,
        body,
        "node-9",
        audience,
        now,
    )
    .expect("sign")
    .headers
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.to_str().expect("ascii").to_string()))
    .collect()
}

/// POSTs a binary body to `127.0.0.1:{port}{path}` with `headers`; returns (status,
/// response head, body).
fn post(
    port: u16,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect raft port");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut raw = req.into_bytes();
    raw.extend_from_slice(body);
    s.write_all(&raw).expect("write");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read");
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        head.to_ascii_lowercase(),
        resp[split + 4..].to_vec(),
    )
}

fn set(key: &str) -> Vec<u8> {
    let cmd = GroupCommand::Write(KvOp::Set {
        key: key.as_bytes().to_vec(),
        value: b"forged".to_vec(),
        expire_at_unix_ms: 0,
        cond: SetCond::Always,
    });
    postcard::to_stdvec(&cmd).expect("encode")
}

fn get(c: &Cluster, key: &str) -> Reply {
    Resp::connect(c.nodes[0].resp)
        .and_then(|mut r| r.call(&["GET", key]))
        .expect("GET")
}

#[test]
fn forged_exec_unsigned_wrongly_signed_misaddressed_or_replayed_is_refused_and_writes_nothing() {
    let groups = 3;
    let c = Cluster::start(Opts::default());
    let wrong = format!("{}x", &SECRET[..SECRET.len() - 1]);
    for g in 1..=groups {
        let leader = c.leader_of(0, g).expect("leader");
        let port = c.nodes[leader as usize - 1].raft;
        let path = format!("/kv/{g}/exec");
        let aud = format!("node-{leader}");
        let body = set("forged-none");
        let (status, _, _) = post(port, &path, &[], &body);
        assert_eq!(status, 401, "unsigned, group {g}");
        let body = set("forged-wrong");
        let h = sign(wrong.as_bytes(), &path, &aud, &body);
        assert_eq!(
            post(port, &path, &h, &body).0,
            401,
            "wrong secret, group {g}"
        );
        let body = set("forged-other-node");
        let other = format!("node-{}", leader % 3 + 1);
        let h = sign(SECRET.as_bytes(), &path, &other, &body);
        assert_eq!(
            post(port, &path, &h, &body).0,
            401,
            "signed for another node, group {g}"
        );
        // Signed for one body, sent with another.
        let h = sign(SECRET.as_bytes(), &path, &aud, &set("innocent"));
        assert_eq!(
            post(port, &path, &h, &set("forged-swapped")).0,
            401,
            "body swapped, group {g}"
        );
    }
    for key in [
        "forged-none",
        "forged-wrong",
        "forged-other-node",
        "forged-swapped",
        "innocent",
    ] {
        assert_eq!(get(&c, key), Reply::Bulk(None), "{key}");
    }

    // The same request correctly signed is a valid forwarded write: the refusals above were
    // the signature check, not a malformed request. Its answer is signed by the node.
    let g = 1;
    let leader = c.leader_of(0, g).expect("leader");
    let port = c.nodes[leader as usize - 1].raft;
    let path = format!("/kv/{g}/exec");
    let body = set("with-secret");
    let h = sign(SECRET.as_bytes(), &path, &format!("node-{leader}"), &body);
    let (status, head, answer) = post(port, &path, &h, &body);
    assert_eq!(status, 200);
    assert!(
        head.contains(&format!("x-keyviz-peer-node: node-{leader}")),
        "{head}"
    );
    assert!(head.contains("x-keyviz-peer-answer-sig:"), "{head}");
    let answer: Result<GroupReply, GroupError> = postcard::from_bytes(&answer).expect("decode");
    assert_eq!(answer, Ok(GroupReply::Write(KvResponse::Ok)));
    assert_eq!(
        get(&c, "with-secret"),
        Reply::Bulk(Some(b"forged".to_vec()))
    );
    // Replayed verbatim (a captured request sent again): refused.
    assert_eq!(post(port, &path, &h, &body).0, 401, "replay");
}
