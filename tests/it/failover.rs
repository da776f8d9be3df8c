//! Node failure and leadership changes under traffic.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::util::{
    Cluster, Opts, Reply, Resp, login, matrix, matrix_total, redis_benchmark, require_redis_tools,
    wait_matrix_total,
};

/// SET `key` through `port`, retrying on errors (elections) until `deadline`; true when
/// acknowledged.
fn set_acked(port: u16, key: &str, value: &str, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        let reply = Resp::connect(port).and_then(|mut c| c.call(&["SET", key, value]));
        if matches!(reply, Ok(Reply::Simple(ref ok)) if ok == "OK") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn get(port: u16, key: &str) -> Option<Vec<u8>> {
    match Resp::connect(port).and_then(|mut c| c.call(&["GET", key])) {
        Ok(Reply::Bulk(v)) => v,
        other => panic!("GET {key} on {port}: {other:?}"),
    }
}

#[test]
fn kill_9_of_one_node_keeps_serving_and_it_rejoins_after_restart() {
    let mut c = Cluster::start(Opts::default());
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..60 {
        let key = format!("k{i:04}");
        let port = c.nodes[i % 3].resp;
        assert!(
            set_acked(port, &key, &format!("v{i}"), deadline),
            "write {key} before the crash"
        );
        acked.push((key, format!("v{i}")));
    }
    c.nodes[2].kill();
    // Leadership cannot move to the dead node: the answer says so (and why).
    let leader = c.leader_of(0, 1).expect("group 1 has a leader");
    if leader != 3 {
        match Resp::connect(c.nodes[0].resp)
            .and_then(|mut s| s.call(&["KEYVIZ.CAMPAIGN", "1", "3"]))
        {
            Ok(Reply::Error(e)) => assert!(e.starts_with("ERR leadership not moved: "), "{e}"),
            other => panic!("campaign for a dead node: {other:?}"),
        }
    }
    // Writes and reads continue through the two survivors (after re-election where node 3 led).
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 60..120 {
        let key = format!("k{i:04}");
        let port = c.nodes[i % 2].resp;
        if set_acked(port, &key, &format!("v{i}"), deadline) {
            acked.push((key, format!("v{i}")));
        }
    }
    assert!(
        acked.len() >= 110,
        "only {} writes acknowledged with one node down",
        acked.len()
    );
    for (k, v) in &acked {
        assert_eq!(
            get(c.nodes[0].resp, k).as_deref(),
            Some(v.as_bytes()),
            "acknowledged {k} lost"
        );
    }
    // The fan-out reports the dead node.
    let admin = c.nodes[0].admin_addr();
    let cookie = login(&admin);
    let m = matrix(&admin, &cookie, "writes");
    let nodes = m["fanout"]["nodes"].as_array().cloned().unwrap_or_default();
    let dead = format!("127.0.0.1:{}", c.nodes[2].admin);
    let entry = nodes
        .iter()
        .find(|n| n["node"].as_str() == Some(dead.as_str()));
    assert!(
        entry.is_some_and(|e| e["ok"] == false),
        "node 3 must be reported ok:false: {}",
        m["fanout"]
    );

    // Restart: node 3 catches up from the log and serves again.
    c.nodes[2].restart();
    c.wait_node_ready(2, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = crate::util::redis_cli(c.nodes[2].resp, &["DBSIZE"]);
        if n == acked.len().to_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 replica has {n} keys, want {}",
            acked.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (k, v) in acked.iter().take(10) {
        assert_eq!(get(c.nodes[2].resp, k).as_deref(), Some(v.as_bytes()));
    }
    assert!(set_acked(
        c.nodes[2].resp,
        "after-restart",
        "ok",
        Instant::now() + Duration::from_secs(20)
    ));
    // The fan-out sees the node again (its first call may still hit a connection the old
    // process left behind, so allow a few attempts).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = matrix(&admin, &cookie, "writes");
        let nodes = m["fanout"]["nodes"].as_array().cloned().unwrap_or_default();
        if nodes.len() == 3 && nodes.iter().all(|n| n["ok"] == true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after restart every node answers: {}",
            m["fanout"]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Sequential SETs through a rotating set of nodes until stopped, counting acknowledged writes
/// and writes whose outcome is unknown (error reply or broken connection).
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    unknown: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// One thread per entry of `ports`, each writing through its own node.
    fn start(ports: &[u16]) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let unknown = Arc::new(AtomicU64::new(0));
        let threads = ports
            .iter()
            .enumerate()
            .map(|(t, &port)| {
                let (stop, acked, unknown) = (stop.clone(), acked.clone(), unknown.clone());
                std::thread::spawn(move || {
                    let mut conn: Option<Resp> = None;
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let c = match conn.as_mut() {
                            Some(c) => c,
                            None => match Resp::connect(port) {
                                Ok(c) => conn.insert(c),
                                Err(_) => {
                                    std::thread::sleep(Duration::from_millis(50));
                                    continue;
                                }
                            },
                        };
                        i += 1;
                        let key = format!("w{t}:{i:08}");
                        match c.call(&["SET", &key, "v"]) {
                            Ok(Reply::Simple(ok)) if ok == "OK" => {
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(_) => {
                                unknown.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                unknown.fetch_add(1, Ordering::Relaxed);
                                conn = None;
                            }
                        }
                    }
                })
            })
            .collect();
        Writer {
            stop,
            acked,
            unknown,
            threads,
        }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` further writes are acknowledged (progress under the current leader).
    fn wait_progress(&self, more: u64, timeout: Duration) {
        let want = self.acked() + more;
        let deadline = Instant::now() + timeout;
        while self.acked() < want {
            assert!(
                Instant::now() < deadline,
                "writes stalled at {} acknowledged (want {want})",
                self.acked()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the threads; returns (acknowledged, unknown outcome).
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("writer thread");
        }
        (
            self.acked.load(Ordering::Relaxed),
            self.unknown.load(Ordering::Relaxed),
        )
    }
}

/// Polls the cluster matrix until its write total reaches `acked`, then checks it counts no
/// more than the writes that may have committed (`acked + unknown`).
fn assert_write_total(c: &Cluster, acked: u64, unknown: u64) {
    let admin = c.nodes[0].admin_addr();
    let cookie = login(&admin);
    if unknown == 0 {
        let m = wait_matrix_total(&admin, &cookie, "writes", acked, Duration::from_secs(30));
        let conflicts = m["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["conflict"] == true)
            .count();
        assert_eq!(conflicts, 0, "{m}");
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = matrix(&admin, &cookie, "writes");
        let total = matrix_total(&m);
        assert!(
            total <= acked + unknown,
            "{total} writes counted, only {acked} acknowledged + {unknown} unknown: {m}"
        );
        if total >= acked {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "write total stayed at {total}, {acked} acknowledged: {m}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `MOVED group=G leader=L term=T` → (L, T).
fn parse_moved(reply: &Reply) -> Option<(u64, u64)> {
    let Reply::Bulk(Some(b)) = reply else {
        return None;
    };
    let text = String::from_utf8_lossy(b);
    let rest = text.strip_prefix("MOVED ")?;
    let field = |name: &str| {
        rest.split(' ')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    Some((field("leader")?, field("term")?))
}

/// Leadership of a group moves to a chosen node six times while six clients write through
/// every node and redis-benchmark pipelines SETs: each `KEYVIZ.CAMPAIGN` answers `MOVED`, the target reports itself leader at that
/// term, terms strictly increase, no write fails, and the cluster matrix counts every
/// acknowledged write exactly once.
#[test]
fn leadership_transfer_really_moves_leadership_during_writes_and_keeps_totals_exact() {
    require_redis_tools();
    let c = Cluster::start(Opts {
        groups: 1,
        ..Opts::default()
    });
    // Two clients per node, and pipelined redis-benchmark SETs through node 2, so the leader's
    // log is always ahead of its followers'.
    let ports: Vec<u16> = c.nodes.iter().flat_map(|n| [n.resp, n.resp]).collect();
    let writer = Writer::start(&ports);
    writer.wait_progress(50, Duration::from_secs(30));
    let bench_n: u64 = 40_000;
    let bench_port = c.nodes[1].resp;
    let bench = std::thread::spawn(move || {
        let n = bench_n.to_string();
        redis_benchmark(
            bench_port,
            &["-t", "set", "-n", &n, "-r", "100000", "-c", "8", "-P", "16"],
        )
    });
    let transfers = 6;
    let mut last_term = 0;
    // (term, node that MOVED says leads it), for the matrix's `leaders` below.
    let mut led = Vec::new();
    for k in 0..transfers {
        let leader = c.leader_of(0, 1).expect("group 1 has a leader");
        let target = leader % 3 + 1;
        // Rotate who receives the command (leaders rotate too): the leader, the target, the
        // third node.
        let via = match k % 3 {
            0 => leader,
            1 => target,
            _ => 6 - leader - target,
        };
        let asked = Instant::now();
        // A hand-over that cannot finish within the node's 5 s budget answers
        // `ERR leadership not moved: ...` and changes nothing; an operator asks again, and so
        // does this test (at most 3 times: on the loaded CI machine, a pipelined
        // redis-benchmark can keep the target behind for one budget).
        let mut reply = Err(std::io::Error::other("not asked"));
        for _ in 0..3 {
            reply = Resp::connect(c.nodes[via as usize - 1].resp)
                .and_then(|mut s| s.call(&["KEYVIZ.CAMPAIGN", "1", &target.to_string()]));
            let not_moved =
                matches!(&reply, Ok(Reply::Error(e)) if e.contains("leadership not moved"));
            if !not_moved {
                break;
            }
        }
        let reply = reply.expect("campaign reply");
        let (moved_to, term) = parse_moved(&reply).unwrap_or_else(|| {
            panic!("transfer {k} from node {leader} to {target} via {via}: {reply:?}")
        });
        eprintln!(
            "transfer {k}: node {leader} -> {target} (asked node {via}) moved at term {term} in {:?}",
            asked.elapsed()
        );
        assert_eq!(moved_to, target, "{reply:?}");
        assert!(term > last_term, "term {term} after {last_term}");
        last_term = term;
        led.push((term, target));
        // The target's own status says it leads at that term (or later, never earlier).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match c.group_status(target as usize - 1, 1) {
                Some((role, Some(l), t)) if role == "leader" && l == target && t >= term => break,
                other => assert!(
                    Instant::now() < deadline,
                    "node {target} after MOVED at term {term}: {other:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        writer.wait_progress(50, Duration::from_secs(30));
    }
    let (acked, unknown) = writer.finish();
    assert_eq!(
        unknown, 0,
        "writes failed during transfers ({acked} acknowledged)"
    );
    let (ok, _out, err) = bench.join().expect("benchmark thread");
    assert!(ok, "{err}");
    assert_write_total(&c, acked + bench_n, unknown);
    assert_leaders_named(&c, &led);
}

/// The cluster matrix names, for every (group 1, term) its write cells carry, the node that
/// led that term: each term a transfer moved to (`led`, from `MOVED`) is in the cells (writes
/// went on after each transfer) and named with its target, and no identity goes unnamed.
fn assert_leaders_named(c: &Cluster, led: &[(u64, u64)]) {
    let admin = c.nodes[0].admin_addr();
    let cookie = login(&admin);
    let m = matrix(&admin, &cookie, "writes");
    let mut identities = std::collections::BTreeSet::new();
    for row in m["rows"].as_array().into_iter().flatten() {
        let groups = row["raft_group_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let terms = row["leader_terms"].as_array().cloned().unwrap_or_default();
        for (g, t) in groups.iter().zip(&terms) {
            let (g, t) = (g.as_u64().unwrap_or(0), t.as_u64().unwrap_or(0));
            if g != 0 && t != 0 {
                identities.insert((g, t));
            }
        }
        for l in row["write_lanes"].as_array().into_iter().flatten() {
            identities.insert((
                l["group"].as_u64().unwrap_or(0),
                l["term"].as_u64().unwrap_or(0),
            ));
        }
    }
    let named: std::collections::BTreeMap<(u64, u64), String> = m["leaders"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                (
                    l["group"].as_u64().unwrap_or(0),
                    l["term"].as_u64().unwrap_or(0),
                ),
                l["node_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for id in &identities {
        assert!(
            named.contains_key(id),
            "identity {id:?} has no leader: {}",
            m["leaders"]
        );
    }
    for &(term, target) in led {
        assert_eq!(
            named.get(&(1, term)).map(String::as_str),
            Some(format!("node-{target}").as_str()),
            "term {term} moved to node {target}; leaders {}",
            m["leaders"]
        );
    }
    eprintln!("leaders named: {named:?}");
}

/// The leader of a group is frozen with SIGSTOP for about three steps: another node is
/// elected, writes through the other nodes keep succeeding, and after SIGCONT the cluster
/// matrix counts every acknowledged write once (and none of the writes that failed).
#[test]
fn sigstop_of_the_leader_elects_another_and_writes_continue_with_exact_totals() {
    let c = Cluster::start(Opts {
        groups: 1,
        ..Opts::default()
    });
    let frozen = c.leader_of(0, 1).expect("group 1 has a leader");
    let fi = frozen as usize - 1;
    let others: Vec<usize> = (0..3).filter(|i| *i != fi).collect();
    let ports: Vec<u16> = others.iter().map(|i| c.nodes[*i].resp).collect();
    let writer = Writer::start(&ports);
    writer.wait_progress(50, Duration::from_secs(30));

    c.nodes[fi].signal("STOP");
    let frozen_at = Instant::now();
    // Each writer may have one write in flight at the freeze; more acks than that were served
    // after it.
    let served_from = writer.acked() + ports.len() as u64;
    let deadline = frozen_at + Duration::from_secs(30);
    let (mut elected, mut served) = (None, None);
    while elected.is_none() || served.is_none() {
        if elected.is_none()
            && let Some((_, Some(l), _)) = c.group_status(others[0], 1)
            && l != frozen
        {
            elected = Some((l, frozen_at.elapsed()));
        }
        if served.is_none() && writer.acked() > served_from {
            served = Some(frozen_at.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "30 s after freezing node {frozen}: new leader {elected:?}, writes served {served:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "sigstop: node {frozen} frozen; new leader (node, after) {elected:?}; writes served \
         again after {served:?}"
    );
    // The default log filter shows the change on the survivors.
    let (new_leader, _) = elected.expect("elected");
    let line = format!("group 1: node {new_leader} leads at term");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.log(others[0]).contains(&line) {
        assert!(
            Instant::now() < deadline,
            "no {line:?} in node {}'s log:\n{}",
            others[0] + 1,
            c.log(others[0])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Keep the leader frozen for about three steps (1 s each) while writes go on.
    while frozen_at.elapsed() < Duration::from_secs(3) {
        writer.wait_progress(1, Duration::from_secs(30));
    }
    c.nodes[fi].signal("CONT");
    c.wait_node_ready(fi, Duration::from_secs(30));
    writer.wait_progress(50, Duration::from_secs(30));
    let (acked, unknown) = writer.finish();
    eprintln!("sigstop: {acked} acknowledged, {unknown} unknown outcome");
    assert_write_total(&c, acked, unknown);
}
