//! Leadership transfer that really moves leadership, and the per-group leader watch that logs
//! leadership changes.
//!
//! openraft 0.9 has no transfer RPC, and a bare `trigger().elect()` on a follower almost never
//! wins under write load, for two reasons found in openraft's vote handling:
//!
//! 1. a voter whose vote is committed refuses every vote request for `leader_lease`
//!    (= `election_timeout_max`) after it last heard from its leader — the other followers,
//!    which hear from the leader at every append, always refuse;
//! 2. a voter refuses a candidate whose last log id is behind its own — under load the leader's
//!    log is always a few entries ahead of any follower's.
//!
//! The leader itself, though, only refreshes the lease on its own vote when it is elected. So a
//! transfer is run *by the leader*: once it has led longer than the lease, it stops accepting
//! proposals, waits until the target has replicated its whole log, asks the target to start an
//! election, and grants that vote (the target's log is as long as its own, the lease is over).
//! The target plus the old leader are a quorum of a three-node group. Proposals are refused with
//! `NotLeader` for that short window (one replication round trip and one vote round), so
//! dispatch retries them at the new leader; nothing is proposed twice.

use std::time::{Duration, Instant};

use openraft::ServerState;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{GroupError, GroupId, Groups, Metrics};
use crate::transport::TransportError;

/// How long [`Groups::campaign`] keeps trying before it answers "not moved".
const TRANSFER_DEADLINE: Duration = Duration::from_secs(5);
/// Longest wait for the target to come close, and then (proposals paused) to catch up, per
/// attempt.
const CATCH_UP: Duration = Duration::from_millis(1_000);
/// How far (in entries) the target may lag when proposals are paused: about one append batch.
const PAUSE_LAG: u64 = 256;
/// Leader-watch log lines allowed per group per [`LOG_WINDOW`] (the rest are counted).
const LOG_BURST: u32 = 6;
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Body of `POST /kv/{group}/hand_over` (sent to the leader).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HandOverRequest {
    /// Node that should lead the group.
    pub(crate) target: u64,
    /// Time budget of the hand-over, in ms (the caller's remaining deadline).
    pub(crate) budget_ms: u64,
}

/// The outcome of a successful [`Groups::campaign`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Leadership {
    /// Group.
    pub group: GroupId,
    /// Node leading the group now (the requested target).
    pub leader: u64,
    /// Term of that leadership.
    pub term: u64,
    /// False when the target already led the group and nothing was done.
    pub moved: bool,
}

/// Why leadership did not move.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferError {
    /// The group or the target is unknown, or the node asked to hand over does not lead.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// The target is not a voter of the group.
    #[error("node {node} is not a member of group {group}")]
    UnknownNode {
        /// Group.
        group: GroupId,
        /// Requested target.
        node: u64,
    },
    /// Every attempt within the deadline failed; `reason` is the last failure.
    #[error("leadership not moved: {reason}")]
    NotMoved {
        /// Group.
        group: GroupId,
        /// What went wrong on the last attempt.
        reason: String,
    },
}

fn not_moved(group: GroupId, reason: impl Into<String>) -> TransferError {
    TransferError::NotMoved {
        group,
        reason: reason.into(),
    }
}

/// Leadership state of one group on this node, shared by [`Groups`] and the watch task.
#[derive(Default)]
pub(super) struct GroupWatch {
    /// Target of a hand-over in progress from this node (proposals are refused meanwhile).
    handing_over: Mutex<Option<u64>>,
    /// When this node last became leader (later than openraft's own timestamp of that vote, so a
    /// safe estimate of when its lease on its own vote ends).
    leader_since: Mutex<Option<Instant>>,
    log: Mutex<RateLimit>,
}

impl GroupWatch {
    /// The hand-over target, if proposals are paused for one.
    pub(super) fn handing_over_to(&self) -> Option<u64> {
        *self.handing_over.lock()
    }

    /// Logs a failed proposal or read at `warn`, rate-limited per group.
    pub(super) fn log_failure(&self, what: &str, g: GroupId, e: &GroupError) {
        if matches!(e, GroupError::NotLeader { .. }) {
            return; // routine: dispatch forwards or retries
        }
        if let Some(suppressed) = self.log.lock().admit(Instant::now()) {
            tracing::warn!(
                group = g,
                "group {g}: {what} failed: {e}{}",
                suffix(suppressed)
            );
        }
    }
}

fn suffix(suppressed: u64) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(" ({suppressed} similar messages suppressed)")
    }
}

/// At most [`LOG_BURST`] lines per [`LOG_WINDOW`]; counts what it drops.
#[derive(Default)]
struct RateLimit {
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl RateLimit {
    /// `Some(suppressed since the last admitted line)` when a line may be written now.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.window_start {
            Some(start) if now.duration_since(start) < LOG_WINDOW => {}
            _ => {
                self.window_start = Some(now);
                self.in_window = 0;
            }
        }
        if self.in_window >= LOG_BURST {
            self.suppressed += 1;
            return None;
        }
        self.in_window += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Clears the proposal pause when the hand-over ends, however it ends.
struct Pause<'a>(&'a Mutex<Option<u64>>);

impl<'a> Pause<'a> {
    fn new(slot: &'a Mutex<Option<u64>>, target: u64) -> Self {
        *slot.lock() = Some(target);
        Self(slot)
    }
}

impl Drop for Pause<'_> {
    fn drop(&mut self) {
        *self.0.lock() = None;
    }
}

/// Follows one group's metrics for the life of the node: records when this node becomes
/// leader and logs, at `warn` and rate-limited, "leader lost" and "node N leads at term T".
/// Logs at `error` and returns when the group stops with a fatal error (storage failure).
pub(super) async fn watch_leadership(
    g: GroupId,
    mut rx: tokio::sync::watch::Receiver<Metrics>,
    watch: std::sync::Arc<GroupWatch>,
) {
    let mut known: Option<(u64, u64)> = None;
    loop {
        let (leader, term, state, fatal) = {
            let m = rx.borrow_and_update();
            (
                m.current_leader,
                m.current_term,
                m.state,
                m.running_state.as_ref().err().map(|e| e.to_string()),
            )
        };
        {
            let mut since = watch.leader_since.lock();
            match (state, *since) {
                (ServerState::Leader, None) => *since = Some(Instant::now()),
                (ServerState::Leader, Some(_)) => {}
                _ => *since = None,
            }
        }
        let line = match (known, leader) {
            (Some((was, was_term)), None) => {
                known = None;
                Some(format!(
                    "group {g}: leader lost (was node {was}, term {was_term})"
                ))
            }
            (prev, Some(l)) if prev != Some((l, term)) => {
                known = Some((l, term));
                Some(format!("group {g}: node {l} leads at term {term}"))
            }
            _ => None,
        };
        if let Some(line) = line
            && let Some(suppressed) = watch.log.lock().admit(Instant::now())
        {
            tracing::warn!(group = g, "{line}{}", suffix(suppressed));
        }
        if let Some(fatal) = fatal {
            tracing::error!(group = g, "group {g}: raft stopped: {fatal}");
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

impl Groups {
    /// Moves leadership of `g` to node `target` and reports who leads afterwards.
    ///
    /// Runs from any node: the hand-over itself runs on the current leader (locally, or through
    /// `POST /kv/{g}/hand_over` on the leader). Each attempt pauses the leader's proposals until
    /// the target has replicated the leader's whole log, triggers the election on the target and
    /// watches the leader's metrics for the new leader; attempts repeat, on leader changes or
    /// failures, for up to 5 s. Blocks (asynchronously) for at most that long plus one RPC
    /// deadline; takes each group's small parking_lot locks only briefly, never across awaits.
    ///
    /// # Errors
    /// [`TransferError::Group`] for an unknown group, [`TransferError::UnknownNode`] for a
    /// target that is not a member, [`TransferError::NotMoved`] with the last attempt's reason
    /// when the deadline passed.
    pub async fn campaign(&self, g: GroupId, target: u64) -> Result<Leadership, TransferError> {
        let group = self.group(g)?;
        if !self.is_member(g, target) {
            return Err(TransferError::UnknownNode {
                group: g,
                node: target,
            });
        }
        let deadline = tokio::time::Instant::now() + TRANSFER_DEADLINE;
        let mut rx = group.metrics.clone();
        let mut why = String::from("no leader known");
        loop {
            let (leader, term) = {
                let m = rx.borrow_and_update();
                (m.current_leader, m.current_term)
            };
            if leader == Some(target) {
                return Ok(Leadership {
                    group: g,
                    leader: target,
                    term,
                    moved: false,
                });
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(not_moved(g, why));
            }
            let attempt = match leader {
                Some(l) if l == self.node_id => self.hand_over(g, target, deadline).await,
                Some(l) => self.remote_hand_over(g, l, target, deadline).await,
                None => Err(not_moved(g, "no leader known")),
            };
            match attempt {
                Ok(done) => return Ok(done),
                Err(
                    e @ (TransferError::UnknownNode { .. }
                    | TransferError::Group(GroupError::UnknownGroup(_))),
                ) => return Err(e),
                Err(TransferError::NotMoved { reason, .. }) => why = reason,
                Err(e) => why = e.to_string(),
            }
            // Retry once this node's view of the group changes, or soon.
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(100)),
                rx.changed(),
            )
            .await;
        }
    }

    /// Asks the leader `leader` of `g` to hand leadership over to `target`.
    async fn remote_hand_over(
        &self,
        g: GroupId,
        leader: u64,
        target: u64,
        deadline: tokio::time::Instant,
    ) -> Result<Leadership, TransferError> {
        let Some(addr) = self.member_addr(g, leader) else {
            return Err(not_moved(g, format!("no address for leader {leader}")));
        };
        let budget = deadline.saturating_duration_since(tokio::time::Instant::now());
        let req = HandOverRequest {
            target,
            budget_ms: budget.as_millis() as u64,
        };
        let answer: Result<Result<Leadership, TransferError>, TransportError> = self
            .client
            .call(
                &addr,
                &format!("/kv/{g}/hand_over"),
                &req,
                budget + Duration::from_secs(1),
            )
            .await;
        answer.map_err(|e| not_moved(g, format!("asking leader {leader}: {e}")))?
    }

    /// One hand-over attempt, run on the leader of `g` (the `/kv/{g}/hand_over` endpoint and
    /// [`Groups::campaign`] call it): waits out the lease on this leader's own vote, pauses
    /// proposals, waits until `target` has replicated the whole log, triggers the election on
    /// `target` and waits until this node sees the outcome. Ends by `deadline`.
    ///
    /// # Errors
    /// [`GroupError::NotLeader`] (as [`TransferError::Group`]) when this node does not lead `g`;
    /// [`TransferError::NotMoved`] when this attempt failed.
    pub(crate) async fn hand_over(
        &self,
        g: GroupId,
        target: u64,
        deadline: tokio::time::Instant,
    ) -> Result<Leadership, TransferError> {
        let group = self.group(g)?;
        if !self.is_member(g, target) {
            return Err(TransferError::UnknownNode {
                group: g,
                node: target,
            });
        }
        let not_leader = || {
            TransferError::Group(GroupError::NotLeader {
                group: g,
                leader: self.leader(g),
            })
        };
        if !self.is_leader(g) {
            return Err(not_leader());
        }
        if target == self.node_id {
            return Ok(Leadership {
                group: g,
                leader: target,
                term: group.metrics.borrow().current_term,
                moved: false,
            });
        }
        // openraft refuses votes while the lease on this leader's own vote runs (it started when
        // this node was elected); wait it out before pausing anything.
        let lease = Duration::from_millis(self.timing.election_max_ms + self.timing.heartbeat_ms);
        let since = group.watch.leader_since.lock().unwrap_or_else(Instant::now);
        let lease_end = tokio::time::Instant::from_std(since + lease);
        if lease_end > deadline {
            return Err(not_moved(
                g,
                format!(
                    "node {} was elected too recently to hand over",
                    self.node_id
                ),
            ));
        }
        tokio::time::sleep_until(lease_end).await;

        // Pause proposals only once the target is replicating and close behind, so a dead or
        // lagging target never stalls writes.
        let mut rx = group.metrics.clone();
        let close = tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + CATCH_UP),
            rx.wait_for(|m| {
                m.state != ServerState::Leader
                    || matched(m, target).map(|i| i + PAUSE_LAG) >= m.last_log_index
            }),
        )
        .await
        .map(|r| r.map(|m| m.state));
        match close {
            Err(_) => {
                let m = group.metrics.borrow();
                return Err(not_moved(
                    g,
                    format!(
                        "node {target} is not replicating (replicated {:?} of {:?})",
                        matched(&m, target),
                        m.last_log_index
                    ),
                ));
            }
            Ok(Err(_)) => return Err(not_moved(g, "raft stopped")),
            Ok(Ok(state)) if state != ServerState::Leader => return Err(not_leader()),
            Ok(Ok(_)) => {}
        }

        let _pause = Pause::new(&group.watch.handing_over, target);
        let caught_up = tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + CATCH_UP),
            rx.wait_for(|m| {
                m.state != ServerState::Leader || matched(m, target) >= m.last_log_index
            }),
        )
        .await
        .map(|r| r.map(|m| (m.state, m.current_term)));
        let term = match caught_up {
            Err(_) => {
                let m = group.metrics.borrow();
                return Err(not_moved(
                    g,
                    format!(
                        "node {target} did not catch up (replicated {:?} of {:?})",
                        matched(&m, target),
                        m.last_log_index
                    ),
                ));
            }
            Ok(Err(_)) => return Err(not_moved(g, "raft stopped")),
            Ok(Ok((state, _))) if state != ServerState::Leader => return Err(not_leader()),
            Ok(Ok((_, term))) => term,
        };

        let Some(addr) = self.member_addr(g, target) else {
            return Err(TransferError::UnknownNode {
                group: g,
                node: target,
            });
        };
        let budget = deadline.saturating_duration_since(tokio::time::Instant::now());
        let elect: Result<Result<(), GroupError>, TransportError> = self
            .client
            .call(&addr, &format!("/kv/{g}/elect"), &(), budget)
            .await;
        match elect {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(not_moved(g, format!("node {target}: {e}"))),
            Err(e) => return Err(not_moved(g, format!("node {target}: {e}"))),
        }

        // The vote round is one RPC; a node that has not seen a result within the longest
        // election timeout will not see one from this attempt.
        let vote_round = Duration::from_millis(self.timing.election_max_ms);
        let node_id = self.node_id;
        let outcome = tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + vote_round),
            rx.wait_for(|m| {
                m.current_leader.is_some_and(|l| l != node_id)
                    || (m.state == ServerState::Leader && m.current_term > term)
            }),
        )
        .await
        .map(|r| r.map(|m| (m.current_leader, m.current_term)));
        match outcome {
            Ok(Ok((leader, term))) if leader == Some(target) => Ok(Leadership {
                group: g,
                leader: target,
                term,
                moved: true,
            }),
            Ok(Ok((leader, term))) => Err(not_moved(
                g,
                format!("node {leader:?} won the election at term {term} instead of node {target}"),
            )),
            Ok(Err(_)) => Err(not_moved(g, "raft stopped")),
            Err(_) => {
                let m = group.metrics.borrow();
                Err(not_moved(
                    g,
                    format!(
                        "node {target} did not win the election within {vote_round:?} \
                         (leader {:?}, term {})",
                        m.current_leader, m.current_term
                    ),
                ))
            }
        }
    }

    /// Whether `node` is a voter of `g`.
    fn is_member(&self, g: GroupId, node: u64) -> bool {
        self.groups.get(&g).is_some_and(|gr| {
            gr.metrics
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .any(|id| id == node)
        })
    }

    /// The internal (raft) address of member `node` of `g`.
    fn member_addr(&self, g: GroupId, node: u64) -> Option<String> {
        let gr = self.groups.get(&g)?;
        let m = gr.metrics.borrow();
        m.membership_config
            .membership()
            .get_node(&node)
            .map(|n| n.addr.clone())
    }
}

/// The last log index the leader knows `target` has replicated.
fn matched(m: &Metrics, target: u64) -> Option<u64> {
    m.replication
        .as_ref()
        .and_then(|r| r.get(&target))
        .and_then(|l| l.as_ref())
        .map(|l| l.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_admits_a_burst_per_window_and_counts_the_rest() {
        let mut r = RateLimit::default();
        let t0 = Instant::now();
        for _ in 0..LOG_BURST {
            assert_eq!(r.admit(t0), Some(0));
        }
        assert_eq!(r.admit(t0), None);
        assert_eq!(r.admit(t0 + Duration::from_secs(1)), None);
        assert_eq!(r.admit(t0 + LOG_WINDOW), Some(2));
        assert_eq!(r.admit(t0 + LOG_WINDOW), Some(0));
    }
}
