//! Key → route → Raft group.
//!
//! The catalog is a sorted list of non-overlapping routes that covers the whole keyspace. It
//! starts from a layout every node derives from the same configuration, and changes only by
//! splits, which travel through the Raft log of the group that owns the route (see
//! [`split`]): every replica applies the same split at the same log position, so the catalogs of
//! all nodes converge to the same list. Splits never move data between groups (the right half
//! stays in the same group), so a group's set of keys is the union of its routes' ranges and
//! never changes.

mod catalog;
pub(crate) mod split;

pub use catalog::{Catalog, CatalogError, Layout, Route};
