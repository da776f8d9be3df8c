//! This node's session state: the current session generation and the sessions revoked in it.
//!
//! A session is accepted only in the generation it was issued in (see
//! [`super::SessionClaims::generation`]). The generation is random per process, so a restart
//! (the way operator credentials are re-read) ends every session of the node, and a
//! revocation list that lives in memory can never be outlived by the sessions it revokes.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::token::random_b64;

/// Most revocations kept per generation. A logout past it starts a new generation instead
/// of forgetting a revocation: every session of this node ends, none comes back.
pub(crate) const MAX_REVOKED: usize = 100_000;

/// Why a session that carries a valid MAC is still refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionState {
    /// Current generation, not revoked.
    Live,
    /// Issued in an earlier generation (before a restart or an end-all).
    OldGeneration,
    /// Revoked by logout.
    Revoked,
}

struct Table {
    generation: String,
    /// Session id → expiry (unix s), for sessions revoked in `generation`.
    revoked: HashMap<String, i64>,
}

/// Generation plus revocations behind one mutex (held for a hash lookup, or for an O(n)
/// sweep of expired entries on logout).
pub(crate) struct SessionRegistry {
    table: Mutex<Table>,
}

impl SessionRegistry {
    /// A registry with a fresh random generation.
    pub(crate) fn new() -> Result<Self, getrandom::Error> {
        Ok(SessionRegistry {
            table: Mutex::new(Table {
                generation: random_b64(12)?,
                revoked: HashMap::new(),
            }),
        })
    }

    /// The generation new sessions are issued in.
    pub(crate) fn generation(&self) -> String {
        self.table.lock().generation.clone()
    }

    /// Whether a session with this generation and id is still accepted.
    pub(crate) fn state(&self, generation: &str, sid: &str) -> SessionState {
        let t = self.table.lock();
        if t.generation != generation {
            SessionState::OldGeneration
        } else if t.revoked.contains_key(sid) {
            SessionState::Revoked
        } else {
            SessionState::Live
        }
    }

    /// Revokes session `sid` (expiring at `exp`) of `generation`; expired entries are swept
    /// first. When the table is still full, a new generation starts (ending every session).
    pub(crate) fn revoke(&self, generation: &str, sid: &str, exp: i64, now_s: i64) {
        let mut t = self.table.lock();
        if t.generation != generation {
            return;
        }
        if t.revoked.len() >= MAX_REVOKED {
            t.revoked.retain(|_, e| *e > now_s);
        }
        if t.revoked.len() >= MAX_REVOKED {
            tracing::warn!(
                max = MAX_REVOKED,
                "session revocation table full: ending every session of this node"
            );
            Self::rotate(&mut t);
            return;
        }
        t.revoked.insert(sid.to_string(), exp);
    }

    /// Ends every session of this node by starting a new generation.
    pub(crate) fn end_all(&self) {
        Self::rotate(&mut self.table.lock());
    }

    fn rotate(t: &mut Table) {
        // A fresh random value; if the OS random source fails, a value derived from the old
        // one still differs from every generation issued so far.
        t.generation = random_b64(12).unwrap_or_else(|_| format!("{}+", t.generation));
        t.revoked.clear();
    }

    #[cfg(test)]
    fn revoked_len(&self) -> usize {
        self.table.lock().revoked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> SessionRegistry {
        match SessionRegistry::new() {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn revoked_and_old_generation_sessions_are_refused() {
        let r = reg();
        let g = r.generation();
        assert_eq!(r.state(&g, "a"), SessionState::Live);
        r.revoke(&g, "a", 100, 0);
        assert_eq!(r.state(&g, "a"), SessionState::Revoked);
        assert_eq!(r.state(&g, "b"), SessionState::Live);
        r.end_all();
        assert_ne!(r.generation(), g);
        assert_eq!(r.state(&g, "b"), SessionState::OldGeneration);
        assert_eq!(r.revoked_len(), 0);
    }

    #[test]
    fn a_full_table_ends_every_session_instead_of_forgetting_a_revocation() {
        let r = reg();
        let g = r.generation();
        for i in 0..MAX_REVOKED {
            r.revoke(&g, &i.to_string(), 1_000, 0);
        }
        assert_eq!(r.revoked_len(), MAX_REVOKED);
        // Nothing has expired at t = 10: the next logout starts a new generation.
        r.revoke(&g, "last", 1_000, 10);
        assert_eq!(r.state(&g, "0"), SessionState::OldGeneration);
        assert_eq!(r.state(&g, "never-revoked"), SessionState::OldGeneration);
        // Past every expiry the sweep makes room and the generation stays.
        let g2 = r.generation();
        for i in 0..MAX_REVOKED {
            r.revoke(&g2, &i.to_string(), 1_000, 0);
        }
        r.revoke(&g2, "late", 5_000, 2_000);
        assert_eq!(r.generation(), g2);
        assert_eq!(r.state(&g2, "late"), SessionState::Revoked);
        assert_eq!(r.revoked_len(), 1);
    }
}
