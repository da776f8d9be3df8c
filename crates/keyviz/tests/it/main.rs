//! Integration tests of the `keyviz` core, one module per topic.

mod alloc;
mod hotkeys;
mod incarnations;
mod merge;
mod props;
mod sampler;
mod tiers;
mod util;
