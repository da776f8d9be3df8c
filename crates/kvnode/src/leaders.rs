//! Which node led each (raft group, term): what the admin matrix answer's `leaders` names, so
//! a leader change on the heatmap says which node took over.
//!
//! The source is the log: every entry's log id names the leader that appended it
//! (`leader_id.node_id`, openraft's advanced leader-id mode), and every replica applies every
//! entry, so each node learns each term's leader of every group it hosts when it applies that
//! term's first entry (a new leader's blank entry, at the latest). The state machine persists
//! one `raft_meta` record per (group, term) (see `StateMachine`), so a restarted node still
//! names the leaders of its history; this registry is the in-memory index the admin source
//! reads. Writes are *not* a source: every replica counts them (see `sampling`), so who
//! counted a write says nothing about who led.

use std::collections::BTreeMap;

use parking_lot::Mutex;

/// Terms remembered per group (the newest kept): a flapping group must not grow memory or
/// the `raft_meta` keyspace without bound. 256 terms of 1 024 groups is at most 262 144
/// entries (a few MiB); older terms are simply not named.
pub const MAX_TERMS_PER_GROUP: usize = 256;

/// (group, term) → raft node id of that term's leader, bounded per group. Cheap to share
/// behind an `Arc`; every method takes one short mutex and does no I/O.
#[derive(Debug, Default)]
pub struct TermLeaders {
    map: Mutex<BTreeMap<(u64, u64), u64>>,
}

impl TermLeaders {
    /// Records that `node` led `group` in `term`. The first record of a term wins (Raft has
    /// one leader per term; a second claim would be a bug elsewhere, not worth a panic).
    /// Keeps at most [`MAX_TERMS_PER_GROUP`] terms of `group`, dropping its oldest.
    pub fn record(&self, group: u64, term: u64, node: u64) {
        let mut map = self.map.lock();
        if map.contains_key(&(group, term)) {
            return;
        }
        map.insert((group, term), node);
        let held = map.range((group, 0)..=(group, u64::MAX)).count();
        if held > MAX_TERMS_PER_GROUP
            && let Some((&oldest, _)) = map.range((group, 0)..=(group, u64::MAX)).next()
        {
            map.remove(&oldest);
        }
    }

    /// The leaders of the `wanted` (group, term) identities this node knows, as
    /// `(group, term, node)`, in the order asked; unknown identities are left out.
    #[must_use = "the leaders are the result"]
    pub fn lookup(&self, wanted: &[(u64, u64)]) -> Vec<(u64, u64, u64)> {
        let map = self.map.lock();
        wanted
            .iter()
            .filter_map(|&(g, t)| map.get(&(g, t)).map(|&n| (g, t, n)))
            .collect()
    }

    /// How many (group, term) leaders are held.
    #[must_use = "pure query"]
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether none is held.
    #[must_use = "pure query"]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terms_first_leader_is_kept_and_unknown_terms_are_left_out() {
        let l = TermLeaders::default();
        l.record(1, 3, 1);
        l.record(1, 5, 2);
        l.record(1, 5, 3); // a second claim for term 5 does not replace the first
        l.record(2, 5, 3);
        assert_eq!(
            l.lookup(&[(1, 5), (1, 4), (2, 5), (1, 3)]),
            vec![(1, 5, 2), (2, 5, 3), (1, 3, 1)]
        );
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn each_group_keeps_only_its_newest_terms() {
        let l = TermLeaders::default();
        l.record(2, 1, 9);
        for t in 1..=(MAX_TERMS_PER_GROUP as u64 + 5) {
            l.record(1, t, t % 3 + 1);
        }
        assert_eq!(l.len(), MAX_TERMS_PER_GROUP + 1, "group 2 is not touched");
        assert!(
            l.lookup(&[(1, 5)]).is_empty(),
            "the 5 oldest terms of group 1 went"
        );
        assert_eq!(l.lookup(&[(1, 6), (2, 1)]), vec![(1, 6, 1), (2, 1, 9)]);
    }
}
