//! A small linearizability checker for histories of `SET`/`GET`/`INCR` on independent integer
//! keys: Wing & Gong's search with Lowe's memoisation over (linearized set, state), as
//! Porcupine does, partitioned per key (P-compositionality: a history of independent keys is
//! linearizable iff each key's sub-history is).
//!
//! Why our own: the Rust crates found (`todc-utils`' `WGLChecker`, a 0.1 crate with one
//! author; `lincheck`, which drives in-process data structures itself; `stateright`, a whole
//! model checker) either do not take operations whose outcome is unknown or bring far more
//! than ~200 lines of test code do.
//!
//! An operation whose outcome is unknown (timeout, lost connection, ambiguous error) may have
//! taken effect at any time after its invocation, or never: it is given an infinite return
//! time and an unconstrained result, which covers both (placed last, it affects nothing that
//! was observed). A `GET` with an unknown outcome constrains nothing and is dropped.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

/// An operation on one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `SET key v`.
    Set(i64),
    /// `GET key`.
    Get,
    /// `INCR key`.
    Incr,
}

/// What the client saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `+OK` to a `SET`.
    Ok,
    /// A `GET`'s answer (`None` = missing key).
    Value(Option<i64>),
    /// An `INCR`'s answer.
    Int(i64),
    /// No answer that settles whether the operation took effect.
    Unknown,
}

/// One completed or pending operation. Times are from one monotonic clock (ns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Who issued it (for messages only).
    pub client: usize,
    /// The key.
    pub key: String,
    /// The operation.
    pub op: Op,
    /// Its outcome.
    pub outcome: Outcome,
    /// Invocation time.
    pub call: u64,
    /// Return time; ignored (taken as +infinity) when the outcome is unknown.
    pub ret: u64,
}

/// Why a history was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No linearization exists for `key`; `detail` shows where the search got stuck.
    NotLinearizable {
        /// The key whose sub-history fails.
        key: String,
        /// The longest linearizable prefix and the operations that could not follow it.
        detail: String,
    },
    /// The search visited more than its state budget for `key` (history too concurrent).
    Inconclusive {
        /// The key.
        key: String,
        /// States visited.
        states: usize,
    },
    /// An operation carries an outcome of the wrong kind (a bug in the recording).
    Malformed(String),
}

/// Upper bound of (linearized set, state) pairs explored per key.
const STATE_BUDGET: usize = 2_000_000;

/// The register's next state after `op` with `outcome` from `state`, or `None` when the
/// outcome is impossible in that state.
fn step(state: Option<i64>, op: Op, outcome: Outcome) -> Option<Option<i64>> {
    match (op, outcome) {
        (Op::Set(v), Outcome::Ok | Outcome::Unknown) => Some(Some(v)),
        (Op::Get, Outcome::Value(seen)) => (seen == state).then_some(state),
        (Op::Get, Outcome::Unknown) => Some(state),
        (Op::Incr, outcome) => {
            let next = state.unwrap_or(0).checked_add(1)?;
            match outcome {
                Outcome::Int(n) if n == next => Some(Some(next)),
                Outcome::Unknown => Some(Some(next)),
                _ => None,
            }
        }
        _ => None,
    }
}

fn well_formed(e: &Event) -> bool {
    matches!(
        (e.op, e.outcome),
        (_, Outcome::Unknown)
            | (Op::Set(_), Outcome::Ok)
            | (Op::Get, Outcome::Value(_))
            | (Op::Incr, Outcome::Int(_))
    ) && (e.outcome == Outcome::Unknown || e.ret >= e.call)
}

/// Checks `history` (any order) against a map of independent registers that start missing.
///
/// # Errors
/// The first key that is not linearizable, runs out of budget, or a malformed event.
pub fn check(history: &[Event]) -> Result<(), Verdict> {
    if let Some(bad) = history.iter().find(|e| !well_formed(e)) {
        return Err(Verdict::Malformed(format!("{bad:?}")));
    }
    let mut per_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in history {
        if e.op == Op::Get && e.outcome == Outcome::Unknown {
            continue;
        }
        per_key.entry(e.key.as_str()).or_default().push(e);
    }
    for (key, ops) in per_key {
        check_key(key, ops)?;
    }
    Ok(())
}

struct Search<'a> {
    ops: Vec<&'a Event>,
    ret: Vec<u64>,
    seen: HashSet<(Vec<u64>, Option<i64>)>,
    /// Deepest prefix reached, with the bitset there (for the failure message).
    deepest: (usize, Vec<u64>, Option<i64>),
}

impl Search<'_> {
    fn is_set(bits: &[u64], i: usize) -> bool {
        bits[i / 64] >> (i % 64) & 1 == 1
    }

    /// Operations that may be linearized next: not yet linearized, and invoked before every
    /// other pending operation returned. `ops` are sorted by invocation, so the scan stops at
    /// the first one invoked after the smallest return time seen so far.
    fn candidates(&self, bits: &[u64]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut min_ret = u64::MAX;
        for i in 0..self.ops.len() {
            if Self::is_set(bits, i) {
                continue;
            }
            if self.ops[i].call > min_ret {
                break;
            }
            min_ret = min_ret.min(self.ret[i]);
            out.push(i);
        }
        out
    }

    /// Depth-first search from (`bits`, `state`) with `done` operations linearized.
    fn dfs(&mut self, bits: &mut Vec<u64>, done: usize, state: Option<i64>) -> Result<bool, usize> {
        if done == self.ops.len() {
            return Ok(true);
        }
        if done > self.deepest.0 {
            self.deepest = (done, bits.clone(), state);
        }
        for i in self.candidates(bits) {
            let Some(next) = step(state, self.ops[i].op, self.ops[i].outcome) else {
                continue;
            };
            bits[i / 64] |= 1 << (i % 64);
            if self.seen.insert((bits.clone(), next)) {
                if self.seen.len() > STATE_BUDGET {
                    return Err(self.seen.len());
                }
                if self.dfs(bits, done + 1, next)? {
                    return Ok(true);
                }
            }
            bits[i / 64] &= !(1 << (i % 64));
        }
        Ok(false)
    }
}

fn describe(e: &Event) -> String {
    let ret = if e.outcome == Outcome::Unknown {
        "?".to_string()
    } else {
        format!("{:.3}ms", e.ret as f64 / 1e6)
    };
    format!(
        "client {} {:?} -> {:?} [{:.3}ms, {ret}]",
        e.client,
        e.op,
        e.outcome,
        e.call as f64 / 1e6
    )
}

fn check_key(key: &str, mut ops: Vec<&Event>) -> Result<(), Verdict> {
    ops.sort_by_key(|e| e.call);
    let ret = ops
        .iter()
        .map(|e| {
            if e.outcome == Outcome::Unknown {
                u64::MAX
            } else {
                e.ret
            }
        })
        .collect();
    let words = ops.len().div_ceil(64).max(1);
    let mut s = Search {
        ops,
        ret,
        seen: HashSet::new(),
        deepest: (0, vec![0; words], None),
    };
    let mut bits = vec![0u64; words];
    match s.dfs(&mut bits, 0, None) {
        Ok(true) => Ok(()),
        Ok(false) => {
            let (depth, bits, state) = s.deepest.clone();
            let mut detail = format!(
                "{} ops; the longest linearizable prefix has {depth} ops and leaves the value \
                 at {state:?}; none of these can come next:\n",
                s.ops.len()
            );
            for i in s.candidates(&bits) {
                let _ = writeln!(detail, "  {}", describe(s.ops[i]));
            }
            Err(Verdict::NotLinearizable {
                key: key.to_string(),
                detail,
            })
        }
        Err(states) => Err(Verdict::Inconclusive {
            key: key.to_string(),
            states,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::{Event, Op, Outcome, Verdict, check};

    /// An event on key "k" by `client`, invoked at `call` and returning at `ret` (ms).
    fn ev(client: usize, op: Op, outcome: Outcome, call: u64, ret: u64) -> Event {
        Event {
            client,
            key: "k".to_string(),
            op,
            outcome,
            call: call * 1_000_000,
            ret: ret * 1_000_000,
        }
    }

    fn rejected(h: &[Event]) -> bool {
        matches!(check(h), Err(Verdict::NotLinearizable { .. }))
    }

    #[test]
    fn checker_accepts_a_sequential_history() {
        let h = [
            ev(0, Op::Get, Outcome::Value(None), 0, 1),
            ev(0, Op::Set(5), Outcome::Ok, 2, 3),
            ev(0, Op::Incr, Outcome::Int(6), 4, 5),
            ev(0, Op::Get, Outcome::Value(Some(6)), 6, 7),
            ev(0, Op::Incr, Outcome::Int(7), 8, 9),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn checker_accepts_either_value_for_a_read_overlapping_a_write() {
        for seen in [Some(1), Some(2)] {
            let h = [
                ev(0, Op::Set(1), Outcome::Ok, 0, 1),
                ev(0, Op::Set(2), Outcome::Ok, 2, 10),
                ev(1, Op::Get, Outcome::Value(seen), 3, 4),
            ];
            assert_eq!(check(&h), Ok(()), "GET -> {seen:?}");
        }
    }

    #[test]
    fn checker_accepts_concurrent_incrs_answered_in_either_order() {
        let h = [
            ev(0, Op::Incr, Outcome::Int(2), 0, 10),
            ev(1, Op::Incr, Outcome::Int(1), 1, 9),
            ev(2, Op::Get, Outcome::Value(Some(2)), 11, 12),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn checker_rejects_a_stale_read() {
        let h = [
            ev(0, Op::Set(1), Outcome::Ok, 0, 1),
            ev(0, Op::Set(2), Outcome::Ok, 2, 3),
            ev(1, Op::Get, Outcome::Value(Some(1)), 4, 5),
        ];
        assert!(rejected(&h), "{:?}", check(&h));
    }

    #[test]
    fn checker_rejects_a_read_of_a_value_never_written() {
        let h = [ev(1, Op::Get, Outcome::Value(Some(9)), 0, 1)];
        assert!(rejected(&h));
    }

    #[test]
    fn checker_rejects_a_lost_incr() {
        let h = [
            ev(0, Op::Incr, Outcome::Int(1), 0, 1),
            ev(1, Op::Incr, Outcome::Int(2), 2, 3),
            ev(2, Op::Get, Outcome::Value(Some(1)), 4, 5),
        ];
        assert!(rejected(&h));
    }

    #[test]
    fn checker_rejects_a_duplicated_incr() {
        // One INCR applied twice: the next reader sees 2.
        let h = [
            ev(0, Op::Incr, Outcome::Int(1), 0, 1),
            ev(1, Op::Get, Outcome::Value(Some(2)), 2, 3),
        ];
        assert!(rejected(&h));
        // Two INCRs answered with the same value.
        let h = [
            ev(0, Op::Incr, Outcome::Int(1), 0, 5),
            ev(1, Op::Incr, Outcome::Int(1), 1, 6),
        ];
        assert!(rejected(&h));
    }

    #[test]
    fn unknown_write_may_take_effect_later_or_never_but_not_before_its_invocation() {
        // Took effect: seen by a later read, even long after.
        let applied = [
            ev(0, Op::Incr, Outcome::Unknown, 0, 0),
            ev(1, Op::Get, Outcome::Value(Some(1)), 50, 51),
        ];
        assert_eq!(check(&applied), Ok(()));
        // Never took effect.
        let lost = [
            ev(0, Op::Incr, Outcome::Unknown, 0, 0),
            ev(1, Op::Get, Outcome::Value(None), 50, 51),
            ev(1, Op::Incr, Outcome::Int(1), 52, 53),
        ];
        assert_eq!(check(&lost), Ok(()));
        // Cannot be seen before it was sent.
        let early = [
            ev(1, Op::Get, Outcome::Value(Some(7)), 0, 1),
            ev(0, Op::Set(7), Outcome::Unknown, 2, 2),
        ];
        assert!(rejected(&early));
        // Once seen, it cannot be unseen (the register does not go back).
        let flicker = [
            ev(0, Op::Set(7), Outcome::Unknown, 0, 0),
            ev(1, Op::Get, Outcome::Value(Some(7)), 1, 2),
            ev(1, Op::Get, Outcome::Value(None), 3, 4),
        ];
        assert!(rejected(&flicker));
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut a = ev(0, Op::Set(1), Outcome::Ok, 0, 1);
        a.key = "a".into();
        let mut b = ev(1, Op::Get, Outcome::Value(None), 2, 3);
        b.key = "b".into();
        assert_eq!(check(&[a.clone(), b]), Ok(()));
        let mut stale = ev(1, Op::Get, Outcome::Value(None), 2, 3);
        stale.key = "a".into();
        match check(&[a, stale]) {
            Err(Verdict::NotLinearizable { key, .. }) => assert_eq!(key, "a"),
            other => panic!("expected a failure on key a, got {other:?}"),
        }
    }

    #[test]
    fn malformed_events_are_reported_not_judged() {
        let h = [ev(0, Op::Set(1), Outcome::Int(1), 0, 1)];
        assert!(matches!(check(&h), Err(Verdict::Malformed(_))));
    }

    #[test]
    fn a_long_concurrent_history_is_checked_quickly() {
        // 4 clients, 400 INCRs in overlapping rounds, each round's answers in any order.
        let mut h = Vec::new();
        for round in 0..100u64 {
            for c in 0..4u64 {
                let value = (round * 4 + (3 - c) + 1) as i64;
                h.push(ev(
                    c as usize,
                    Op::Incr,
                    Outcome::Int(value),
                    round * 10 + c,
                    round * 10 + 9,
                ));
            }
        }
        assert_eq!(check(&h), Ok(()));
    }
}
