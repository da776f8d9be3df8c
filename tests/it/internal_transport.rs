//! The internal (Raft) port authenticates every request with the cluster secret: a forged
//! forwarded write without it, or with a wrong one, is refused and changes nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use kvnode::dispatch::{GroupCommand, GroupReply};
use kvnode::raft::{GroupError, KvOp, KvResponse, SetCond};

use crate::util::{Cluster, Opts, Reply, Resp, SECRET};

/// POSTs a binary body to `127.0.0.1:{port}{path}`; returns (status, body).
fn post(port: u16, path: &str, secret: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect raft port");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(s) = secret {
        req.push_str(&format!("x-kvnode-secret: {s}\r\n"));
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
    (status, resp[split + 4..].to_vec())
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
fn forged_exec_without_or_with_a_wrong_secret_is_refused_and_writes_nothing() {
    let groups = 3;
    let c = Cluster::start(Opts::default());
    for g in 1..=groups {
        let leader = c.leader_of(0, g).expect("leader") as usize - 1;
        let port = c.nodes[leader].raft;
        let path = format!("/kv/{g}/exec");
        let (status, _) = post(port, &path, None, &set("forged-none"));
        assert_eq!(status, 401, "no secret, group {g}");
        let wrong = format!("{}x", &SECRET[..SECRET.len() - 1]);
        let (status, _) = post(port, &path, Some(&wrong), &set("forged-wrong"));
        assert_eq!(status, 401, "wrong secret, group {g}");
    }
    assert_eq!(get(&c, "forged-none"), Reply::Bulk(None));
    assert_eq!(get(&c, "forged-wrong"), Reply::Bulk(None));

    // The same request with the secret is a valid forwarded write: the refusals above were
    // the secret check, not a malformed request.
    let g = 1;
    let leader = c.leader_of(0, g).expect("leader") as usize - 1;
    let (status, body) = post(
        c.nodes[leader].raft,
        &format!("/kv/{g}/exec"),
        Some(SECRET),
        &set("with-secret"),
    );
    assert_eq!(status, 200);
    let answer: Result<GroupReply, GroupError> = postcard::from_bytes(&body).expect("decode");
    assert_eq!(answer, Ok(GroupReply::Write(KvResponse::Ok)));
    assert_eq!(
        get(&c, "with-secret"),
        Reply::Bulk(Some(b"forged".to_vec()))
    );
}
