//! The route catalog: sorted, non-overlapping routes covering the whole keyspace.

use serde::{Deserialize, Serialize};

/// One route: keys in `[start, end)` (`end: None` = unbounded) served by Raft group `group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Route id as registered with the KeyViz sampler; unique in the cluster.
    pub id: u64,
    /// Inclusive start key (empty = the start of the keyspace).
    pub start: Vec<u8>,
    /// Exclusive end key; `None` = unbounded.
    pub end: Option<Vec<u8>>,
    /// Owning Raft group.
    pub group: u64,
}

impl Route {
    /// Whether `key` falls inside this route.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }

    /// The KeyViz registration of this route.
    pub fn spec(&self) -> keyviz::RouteSpec {
        keyviz::RouteSpec {
            id: self.id,
            start: self.start.clone(),
            end: self.end.clone(),
            group: self.group,
        }
    }
}

/// Why a catalog could not be built or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The layout's split keys are not strictly increasing or include the empty key.
    #[error("split keys must be non-empty and strictly increasing")]
    UnsortedSplitKeys,
    /// The layout asks for zero groups.
    #[error("at least one raft group is required")]
    NoGroups,
    /// A split names a route that does not exist.
    #[error("unknown route {0}")]
    UnknownRoute(u64),
    /// The split key is not strictly inside the route (equal to its start, or outside).
    #[error("split key is not strictly inside route {0}")]
    SplitKeyOutside(u64),
    /// The new route id is already used.
    #[error("route id {0} already exists")]
    DuplicateRoute(u64),
}

/// The initial layout, identical on every node: `groups` Raft groups (ids `1..=groups`) and
/// `split_keys.len() + 1` routes (ids `1..`), route `i` (0-based) owned by group `i % groups + 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Number of Raft groups.
    pub groups: u64,
    /// Boundaries between the initial routes.
    pub split_keys: Vec<Vec<u8>>,
}

impl Layout {
    /// `groups` groups with one route each, split evenly over the printable ASCII range of
    /// the first key byte (`'0'..='z'`), so typical text keys spread over all groups.
    pub fn even(groups: u64) -> Self {
        let groups = groups.max(1);
        let (lo, hi) = (b'0' as u64, b'z' as u64 + 1);
        let split_keys = (1..groups)
            .map(|i| vec![(lo + (hi - lo) * i / groups) as u8])
            .collect();
        Self { groups, split_keys }
    }
}

/// Sorted, non-overlapping routes covering the whole keyspace.
///
/// Invariant: `routes[0].start` is empty, each route's `end` is the next route's `start`, and
/// the last route is unbounded. Lookups are a binary search (`O(log routes)`, no allocation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    routes: Vec<Route>,
}

impl Catalog {
    /// Builds the initial catalog of `layout`.
    ///
    /// # Errors
    /// [`CatalogError::NoGroups`], [`CatalogError::UnsortedSplitKeys`].
    pub fn from_layout(layout: &Layout) -> Result<Self, CatalogError> {
        if layout.groups == 0 {
            return Err(CatalogError::NoGroups);
        }
        let keys = &layout.split_keys;
        if keys.iter().any(|k| k.is_empty()) || keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(CatalogError::UnsortedSplitKeys);
        }
        let mut routes = Vec::with_capacity(keys.len() + 1);
        let mut start = Vec::new();
        for (i, end) in keys
            .iter()
            .map(|k| Some(k.clone()))
            .chain(std::iter::once(None))
            .enumerate()
        {
            let next_start = end.clone().unwrap_or_default();
            routes.push(Route {
                id: i as u64 + 1,
                start,
                end,
                group: i as u64 % layout.groups + 1,
            });
            start = next_start;
        }
        Ok(Self { routes })
    }

    /// All routes in key order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route that contains `key` (always one: the catalog covers the keyspace).
    pub fn route_for(&self, key: &[u8]) -> &Route {
        let i = self.routes.partition_point(|r| r.start.as_slice() <= key);
        // partition_point >= 1 because routes[0].start is the empty key, which is <= any key.
        &self.routes[i.saturating_sub(1)]
    }

    /// The route with id `id`.
    pub fn route(&self, id: u64) -> Option<&Route> {
        self.routes.iter().find(|r| r.id == id)
    }

    /// Routes owned by `group`, in key order.
    pub fn routes_of(&self, group: u64) -> impl Iterator<Item = &Route> {
        self.routes.iter().filter(move |r| r.group == group)
    }

    /// Splits route `id` at `at`: the route keeps `[start, at)`, a new route `right_id` takes
    /// `[at, end)` in the same group.
    ///
    /// # Errors
    /// [`CatalogError::UnknownRoute`], [`CatalogError::SplitKeyOutside`],
    /// [`CatalogError::DuplicateRoute`]; the catalog is unchanged on error.
    pub fn split(&mut self, id: u64, at: &[u8], right_id: u64) -> Result<Route, CatalogError> {
        if self.route(right_id).is_some() {
            return Err(CatalogError::DuplicateRoute(right_id));
        }
        let pos = self
            .routes
            .iter()
            .position(|r| r.id == id)
            .ok_or(CatalogError::UnknownRoute(id))?;
        let left = &self.routes[pos];
        if at <= left.start.as_slice() || !left.contains(at) {
            return Err(CatalogError::SplitKeyOutside(id));
        }
        let right = Route {
            id: right_id,
            start: at.to_vec(),
            end: left.end.clone(),
            group: left.group,
        };
        self.routes[pos].end = Some(at.to_vec());
        self.routes.insert(pos + 1, right.clone());
        Ok(right)
    }

    /// Replaces all routes of `group` by `routes` (used when a snapshot is installed). The
    /// caller guarantees `routes` covers exactly the ranges the group owned (splits never move
    /// ranges between groups).
    pub(crate) fn replace_group(&mut self, group: u64, routes: Vec<Route>) {
        // A group always owns at least one route; an empty list (a corrupt snapshot) would
        // leave a hole in the keyspace, so it is ignored.
        if routes.is_empty() || routes.iter().any(|r| r.group != group) {
            tracing::warn!(
                group,
                "ignoring a snapshot route list that is empty or names other groups"
            );
            return;
        }
        self.routes.retain(|r| r.group != group);
        self.routes.extend(routes);
        self.routes.sort_by(|a, b| a.start.cmp(&b.start));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_layout_covers_keyspace_and_spreads_groups() {
        let c = Catalog::from_layout(&Layout::even(3)).expect("layout");
        assert_eq!(c.routes().len(), 3);
        assert!(c.routes()[0].start.is_empty());
        assert!(c.routes()[2].end.is_none());
        let groups: Vec<u64> = c.routes().iter().map(|r| r.group).collect();
        assert_eq!(groups, vec![1, 2, 3]);
        assert_eq!(c.route_for(b"").id, 1);
        assert_eq!(c.route_for(b"zzzz").id, 3);
        for r in c.routes() {
            assert!(r.contains(&r.start));
        }
    }

    #[test]
    fn split_keeps_left_and_adds_right_in_same_group() {
        let mut c = Catalog::from_layout(&Layout {
            groups: 1,
            split_keys: vec![],
        })
        .expect("layout");
        let right = c.split(1, b"m", 100).expect("split");
        assert_eq!(right.group, 1);
        assert_eq!(c.route_for(b"a").id, 1);
        assert_eq!(c.route_for(b"m").id, 100);
        assert_eq!(c.route_for(b"z").id, 100);
        assert_eq!(c.split(1, b"", 101), Err(CatalogError::SplitKeyOutside(1)));
        assert_eq!(c.split(1, b"q", 101), Err(CatalogError::SplitKeyOutside(1)));
        assert_eq!(c.split(7, b"q", 101), Err(CatalogError::UnknownRoute(7)));
        assert_eq!(
            c.split(100, b"q", 100),
            Err(CatalogError::DuplicateRoute(100))
        );
    }

    #[test]
    fn unsorted_split_keys_are_rejected() {
        let bad = Layout {
            groups: 2,
            split_keys: vec![b"b".to_vec(), b"a".to_vec()],
        };
        assert_eq!(
            Catalog::from_layout(&bad),
            Err(CatalogError::UnsortedSplitKeys)
        );
        assert_eq!(
            Catalog::from_layout(&Layout {
                groups: 0,
                split_keys: vec![]
            }),
            Err(CatalogError::NoGroups)
        );
    }
}
