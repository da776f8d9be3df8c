//! Runs parsed commands against the [`Dispatcher`] and turns results into replies.
//!
//! Multi-key commands are split per group and run concurrently; their replies are reassembled
//! in request order. `MSET` and `DEL` are atomic per group, not across groups.

use bytes::Bytes;
use futures::future::join_all;

use super::codec::Reply;
use super::command::{Command, glob_match};
use crate::dispatch::{DispatchError, Dispatcher, GroupCommand, GroupReply, now_unix_ms};
use crate::raft::{KvOp, KvResponse};

fn failure(e: DispatchError) -> Reply {
    Reply::err(e)
}

fn write_reply(r: KvResponse) -> Reply {
    match r {
        KvResponse::Ok => Reply::Simple("OK"),
        KvResponse::Nil => Reply::Bulk(None),
        KvResponse::Int(n) => Reply::Int(n),
        KvResponse::NotInteger => Reply::err("value is not an integer or out of range"),
        KvResponse::Overflow => Reply::err("increment or decrement would overflow"),
        KvResponse::SplitRefused(why) | KvResponse::Rejected(why) => Reply::err(why),
        KvResponse::Split { right_id } => Reply::Int(right_id as i64),
        KvResponse::Batch(_) | KvResponse::Internal => Reply::err("internal: unexpected answer"),
    }
}

/// The reply of a single-key read ([`Command::single_read_key`]) given the key's value.
fn read_reply(cmd: &Command, value: Option<Vec<u8>>) -> Reply {
    match cmd {
        Command::Strlen(_) => Reply::Int(value.map_or(0, |v| v.len()) as i64),
        Command::Type(_) => Reply::Simple(if value.is_some() { "string" } else { "none" }),
        // Key + the 8-byte expiry header + value: what the entry takes in the `kv` keyspace
        // before the engine's own per-entry overhead.
        Command::MemoryUsage(k) => match value {
            Some(v) => Reply::Int((k.len() + 8 + v.len()) as i64),
            None => Reply::Bulk(None),
        },
        _ => Reply::Bulk(value),
    }
}

/// How a command takes part in pipeline batching.
enum Shape {
    /// A single-key write that can join a [`KvOp::Batch`].
    Write,
    /// A single-key read ([`Command::single_read_key`]) that can join a multi-key read.
    Read,
    /// Anything else: executed on its own.
    Alone,
}

fn shape(c: &Result<Command, String>) -> Shape {
    match c {
        Ok(Command::Set { .. } | Command::IncrBy(..) | Command::Append(..)) => Shape::Write,
        Ok(c) if c.single_read_key().is_some() => Shape::Read,
        _ => Shape::Alone,
    }
}

/// Key and value bytes of a [`Shape::Write`] command (0 for anything else).
fn write_bytes(c: &Result<Command, String>) -> usize {
    match c {
        Ok(Command::Set { key, value, .. } | Command::Append(key, value)) => {
            key.len() + value.len()
        }
        Ok(Command::IncrBy(key, _)) => key.len() + 8,
        _ => 0,
    }
}

/// The key and replicated operation of a [`Shape::Write`] command.
fn single_write(cmd: Command) -> Option<(Bytes, KvOp)> {
    Some(match cmd {
        Command::Set {
            key,
            value,
            ttl_ms,
            cond,
        } => {
            let expire_at_unix_ms = ttl_ms.map_or(0, |t| now_unix_ms().saturating_add(t));
            let op = KvOp::Set {
                key: key.to_vec(),
                value: value.to_vec(),
                expire_at_unix_ms,
                cond,
            };
            (key, op)
        }
        Command::IncrBy(key, delta) => {
            let op = KvOp::IncrBy {
                key: key.to_vec(),
                delta,
            };
            (key, op)
        }
        Command::Append(key, value) => {
            let op = KvOp::Append {
                key: key.to_vec(),
                value: value.to_vec(),
            };
            (key, op)
        }
        _ => return None,
    })
}

impl Dispatcher {
    /// Executes the requests of one pipeline read (already parsed, `Err` = the Redis error
    /// text), returning one reply per request in order.
    ///
    /// Consecutive single-key writes are grouped per Raft group into one [`KvOp::Batch`]
    /// entry, and consecutive `GET`s into one read per group: requests on different keys are
    /// independent, requests on the same key stay in pipeline order inside one batch, and a
    /// run only starts after the previous run finished, so a pipeline still sees its own writes.
    pub async fn run_pipeline(&self, cmds: Vec<Result<Command, String>>) -> Vec<Reply> {
        let mut replies = Vec::with_capacity(cmds.len());
        let mut cmds = cmds.into_iter().peekable();
        while let Some(first) = cmds.next() {
            match shape(&first) {
                Shape::Alone => replies.push(match first {
                    Ok(c) => self.run(c).await,
                    Err(text) => Reply::Error(text),
                }),
                Shape::Write => {
                    // A run becomes one log entry per group: keep it small enough to
                    // replicate quickly (transport::MAX_BATCH_BYTES).
                    let mut bytes = write_bytes(&first);
                    let mut run = vec![first];
                    while let Some(next) = cmds.next_if(|c| {
                        matches!(shape(c), Shape::Write)
                            && bytes + write_bytes(c) <= crate::transport::MAX_BATCH_BYTES
                    }) {
                        bytes += write_bytes(&next);
                        run.push(next);
                    }
                    replies.extend(self.run_writes(run).await);
                }
                Shape::Read => {
                    // `redis-cli --bigkeys` pipelines a TYPE, then a STRLEN, per scanned key:
                    // one read per group for the whole run, not one read per command.
                    let run: Vec<Command> = std::iter::once(first)
                        .chain(std::iter::from_fn(|| {
                            cmds.next_if(|c| matches!(shape(c), Shape::Read))
                        }))
                        .filter_map(Result::ok)
                        .collect();
                    let keys: Vec<Bytes> = run
                        .iter()
                        .filter_map(|c| c.single_read_key().cloned())
                        .collect();
                    match self.read_many(&keys).await {
                        Ok(vals) => {
                            replies.extend(run.iter().zip(vals).map(|(c, v)| read_reply(c, v)))
                        }
                        Err(e) => {
                            let text = e.to_string();
                            replies.extend(keys.iter().map(|_| Reply::err(&text)));
                        }
                    }
                }
            }
        }
        replies
    }

    async fn run_writes(&self, run: Vec<Result<Command, String>>) -> Vec<Reply> {
        let ops: Vec<(Bytes, KvOp)> = run
            .into_iter()
            .filter_map(|c| c.ok().and_then(single_write))
            .collect();
        if let [(key, op)] = ops.as_slice() {
            return vec![self.write_one(key, op.clone()).await];
        }
        let parts = self.partition(ops.iter().map(|(k, _)| k.as_ref()));
        let futs = parts.iter().map(|(g, idx)| {
            let batch = KvOp::Batch {
                ops: idx.iter().map(|i| ops[*i].1.clone()).collect(),
            };
            self.execute(*g, GroupCommand::Write(batch))
        });
        let mut out = vec![Reply::err("internal: missing reply"); ops.len()];
        for ((_, idx), res) in parts.iter().zip(join_all(futs).await) {
            match res {
                Ok(GroupReply::Write(KvResponse::Batch(rs))) if rs.len() == idx.len() => {
                    for (i, r) in idx.iter().zip(rs) {
                        out[*i] = write_reply(r);
                    }
                }
                Ok(other) => {
                    let text = format!("internal: unexpected answer {other:?}");
                    idx.iter().for_each(|i| out[*i] = Reply::err(&text));
                }
                Err(e) => {
                    let text = e.to_string();
                    idx.iter().for_each(|i| out[*i] = Reply::err(&text));
                }
            }
        }
        out
    }

    async fn write_one(&self, key: &[u8], op: KvOp) -> Reply {
        let g = self.catalog().route_for(key).group;
        match self.execute(g, GroupCommand::Write(op)).await {
            Ok(GroupReply::Write(r)) => write_reply(r),
            Ok(GroupReply::Read(_) | GroupReply::Expiry(_)) => {
                Reply::err("internal: read answer to a write")
            }
            Err(e) => failure(e),
        }
    }

    /// Reads `keys` (any groups), in order.
    async fn read_many(&self, keys: &[Bytes]) -> Result<Vec<Option<Vec<u8>>>, DispatchError> {
        let parts = self.partition(keys.iter().map(|k| k.as_ref()));
        let futs = parts.iter().map(|(g, idx)| {
            let ks = idx.iter().map(|i| keys[*i].to_vec()).collect();
            self.execute(*g, GroupCommand::Read(ks))
        });
        let mut out = vec![None; keys.len()];
        for ((g, idx), res) in parts.iter().zip(join_all(futs).await) {
            match res? {
                GroupReply::Read(vals) => {
                    for (i, v) in idx.iter().zip(vals) {
                        out[*i] = v;
                    }
                }
                GroupReply::Write(_) | GroupReply::Expiry(_) => {
                    return Err(DispatchError::WrongReply(*g));
                }
            }
        }
        Ok(out)
    }

    /// The expiry of `key` ([`GroupReply::Expiry`]), read linearizably as a `GET` is.
    async fn expiry_of(&self, key: &Bytes) -> Result<Option<u64>, DispatchError> {
        let parts = self.partition(std::iter::once(key.as_ref()));
        let Some(g) = parts.keys().next().copied() else {
            return Ok(None);
        };
        match self
            .execute(g, GroupCommand::ReadExpiry(vec![key.to_vec()]))
            .await?
        {
            GroupReply::Expiry(mut v) => Ok(v.pop().flatten()),
            _ => Err(DispatchError::WrongReply(g)),
        }
    }

    /// Runs one write per group (built by `op` from that group's key positions) and returns
    /// the group replies.
    async fn write_many(
        &self,
        keys: &[&[u8]],
        op: impl Fn(&[usize]) -> KvOp,
    ) -> Result<Vec<KvResponse>, DispatchError> {
        let parts = self.partition(keys.iter().copied());
        let futs = parts
            .iter()
            .map(|(g, idx)| self.execute(*g, GroupCommand::Write(op(idx))));
        let mut out = Vec::new();
        for (g, res) in parts.keys().zip(join_all(futs).await) {
            match res? {
                GroupReply::Write(r) => out.push(r),
                GroupReply::Read(_) | GroupReply::Expiry(_) => {
                    return Err(DispatchError::WrongReply(*g));
                }
            }
        }
        Ok(out)
    }

    /// Executes one client command.
    pub async fn run(&self, cmd: Command) -> Reply {
        match cmd {
            Command::Ping(None) => Reply::Simple("PONG"),
            Command::Ping(Some(m)) | Command::Echo(m) => Reply::bulk(m.to_vec()),
            c @ (Command::Get(_)
            | Command::Strlen(_)
            | Command::Type(_)
            | Command::MemoryUsage(_)) => {
                let key = c.single_read_key().cloned().unwrap_or_default();
                match self.read_many(&[key]).await {
                    Ok(mut v) => read_reply(&c, v.pop().flatten()),
                    Err(e) => failure(e),
                }
            }
            Command::Expire { key, at, cond } => {
                let op = KvOp::Expire {
                    key: key.to_vec(),
                    expire_at_unix_ms: at.resolve(now_unix_ms()),
                    cond,
                };
                self.write_one(&key, op).await
            }
            Command::Persist(key) => {
                let op = KvOp::Persist { key: key.to_vec() };
                self.write_one(&key, op).await
            }
            Command::Ttl { key, millis } => match self.expiry_of(&key).await {
                Ok(None) => Reply::Int(-2),
                Ok(Some(0)) => Reply::Int(-1),
                Ok(Some(at)) => {
                    let left = at.saturating_sub(now_unix_ms()).max(1);
                    // Redis rounds TTL to the nearest second.
                    let shown = if millis { left } else { (left + 500) / 1000 };
                    Reply::Int(i64::try_from(shown).unwrap_or(i64::MAX))
                }
                Err(e) => failure(e),
            },
            Command::MGet(keys) => match self.read_many(&keys).await {
                Ok(v) => Reply::Array(v.into_iter().map(Reply::Bulk).collect()),
                Err(e) => failure(e),
            },
            Command::Exists(keys) => match self.read_many(&keys).await {
                Ok(v) => Reply::Int(v.iter().filter(|x| x.is_some()).count() as i64),
                Err(e) => failure(e),
            },
            Command::MemoryHelp => Reply::Array(
                [
                    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "USAGE <key> [SAMPLES <count>]",
                    "    Bytes the key takes in the store's encoding: key + 8-byte expiry header +",
                    "    value (the storage engine's own overhead is not included). SAMPLES is",
                    "    accepted and ignored: every value is a string.",
                    "HELP",
                    "    Print this help.",
                ]
                .into_iter()
                .map(Reply::Simple)
                .collect(),
            ),
            // The RESP server answers OBJECT itself (from the cluster's hot keys).
            Command::Object(_) => Reply::err("internal: OBJECT reached the dispatcher"),
            cmd @ (Command::Set { .. } | Command::IncrBy(..) | Command::Append(..)) => {
                match single_write(cmd) {
                    Some((key, op)) => self.write_one(&key, op).await,
                    None => Reply::Error("ERR internal error: not a single-key write".to_owned()),
                }
            }
            Command::Del(keys) => {
                let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_ref()).collect();
                let op = |idx: &[usize]| KvOp::Del {
                    keys: idx.iter().map(|i| keys[*i].to_vec()).collect(),
                };
                match self.write_many(&refs, op).await {
                    Ok(rs) => Reply::Int(
                        rs.iter()
                            .map(|r| if let KvResponse::Int(n) = r { *n } else { 0 })
                            .sum(),
                    ),
                    Err(e) => failure(e),
                }
            }
            Command::MSet(pairs) => {
                let refs: Vec<&[u8]> = pairs.iter().map(|(k, _)| k.as_ref()).collect();
                let op = |idx: &[usize]| KvOp::MSet {
                    pairs: idx
                        .iter()
                        .map(|i| (pairs[*i].0.to_vec(), pairs[*i].1.to_vec()))
                        .collect(),
                };
                match self.write_many(&refs, op).await {
                    Ok(rs) => match rs.into_iter().find_map(|r| match r {
                        KvResponse::Rejected(why) => Some(why),
                        _ => None,
                    }) {
                        Some(why) => Reply::err(why),
                        None => Reply::Simple("OK"),
                    },
                    Err(e) => failure(e),
                }
            }
            Command::DbSize => match self.store().count_live(now_unix_ms()) {
                Ok(n) => Reply::Int(n as i64),
                Err(e) => Reply::err(e),
            },
            Command::Scan {
                cursor,
                pattern,
                count,
            } => {
                let from = match self.scan_cursors().resume(cursor) {
                    Ok(from) => from,
                    Err(e) => return Reply::Error(e.to_string()),
                };
                match self
                    .store()
                    .scan_live(from.as_deref(), count, now_unix_ms())
                {
                    Ok(page) => {
                        let next = page.next.map_or(0, |k| self.scan_cursors().issue(k));
                        let keys: Vec<Vec<u8>> = match &pattern {
                            Some(p) => page.keys.into_iter().filter(|k| glob_match(p, k)).collect(),
                            None => page.keys,
                        };
                        self.observe_scan(&keys);
                        Reply::Array(vec![
                            Reply::bulk(next.to_string()),
                            Reply::Array(keys.into_iter().map(Reply::bulk).collect()),
                        ])
                    }
                    Err(e) => Reply::err(e),
                }
            }
            Command::Info => Reply::bulk(self.info()),
            Command::Quit | Command::ClientNoop => Reply::Simple("OK"),
            // The connection answers AUTH itself (it changes that connection's session).
            Command::Auth { .. } => Reply::err("internal: AUTH reached the dispatcher"),
            // The RESP server runs HOTKEYS itself (the node's session lives there).
            Command::Hotkeys(_) => Reply::err("internal: HOTKEYS reached the dispatcher"),
            Command::ConfigGet | Command::CommandInfo => Reply::Array(Vec::new()),
            Command::Campaign { group, node } => {
                let target = node.unwrap_or(self.node_id());
                match self.groups().campaign(group, target).await {
                    Ok(l) => Reply::bulk(format!(
                        "{} group={} leader={} term={}",
                        if l.moved { "MOVED" } else { "UNCHANGED" },
                        l.group,
                        l.leader,
                        l.term
                    )),
                    Err(e) => Reply::err(e),
                }
            }
            Command::Split(at) => match self.split_at(&at).await {
                Ok(Ok(id)) => Reply::Int(id as i64),
                Ok(Err(why)) => Reply::err(why),
                Err(e) => failure(e),
            },
        }
    }

    fn info(&self) -> String {
        let mut s = String::from(
            "# Server\r\nredis_version:7.0.0-kvnode\r\nredis_mode:cluster-multiraft\r\n",
        );
        s.push_str(&format!("kvnode_node_id:{}\r\n", self.node_id()));
        s.push_str(&format!(
            "kvnode_follower_reads:{}\r\n",
            self.follower_reads()
        ));
        s.push_str("\r\n# Raft\r\n");
        for g in self.groups().status() {
            s.push_str(&format!(
                "group_{}:role={},leader={},term={},applied={}\r\n",
                g.group,
                g.role,
                g.leader.map_or("none".to_string(), |l| l.to_string()),
                g.term,
                g.applied_index.unwrap_or(0)
            ));
        }
        s.push_str("\r\n# Keyspace\r\n");
        s.push_str(&format!("routes:{}\r\n", self.catalog().routes().len()));
        s
    }
}
