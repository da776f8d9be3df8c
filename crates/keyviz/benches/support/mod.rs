//! Setup shared by the benches (each bench uses a subset of it).
#![allow(dead_code)]

use keyviz::{RouteSpec, Sampler, SamplerConfig};

/// 2023-11-14T22:14:00Z, a whole minute.
pub(crate) const T0: i64 = 1_700_000_040_000;

/// A sampler with `routes` adjacent routes `[i*1000, (i+1)*1000)` (big-endian u64 keys, the
/// last one unbounded), ids from 1, spread over 3 Raft groups.
pub(crate) fn sampler_with_routes(routes: u64, config: SamplerConfig) -> Sampler {
    let s = Sampler::new(
        SamplerConfig {
            max_tracked_routes: config.max_tracked_routes.max(routes as usize),
            ..config
        },
        T0,
    )
    .expect("bench config is valid");
    s.register_routes((0..routes).map(|i| {
        let start = (i * 1_000).to_be_bytes().to_vec();
        let end = (i + 1 < routes).then(|| ((i + 1) * 1_000).to_be_bytes().to_vec());
        RouteSpec {
            id: i + 1,
            start,
            end,
            group: 1 + i % 3,
        }
    }))
    .expect("routes tile the key space");
    s
}
