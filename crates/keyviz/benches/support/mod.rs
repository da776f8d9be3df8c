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

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`).
pub(crate) fn thread_cpu() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Criterion measurement: the benchmarking thread's CPU time, so a figure on the shared
/// machine does not count the time other processes held the core (their cache and
/// memory-bandwidth contention still shows). Reported in ns ([`ThreadCpu::NS`]) or ms
/// ([`ThreadCpu::MS`]).
pub(crate) struct ThreadCpu {
    formatter: CpuFormatter,
}

impl ThreadCpu {
    /// Figures in nanoseconds (per-operation benches).
    pub(crate) const NS: ThreadCpu = ThreadCpu {
        formatter: CpuFormatter {
            divisor: 1.0,
            unit: "ns",
        },
    };
    /// Figures in milliseconds of CPU (query benches).
    pub(crate) const MS: ThreadCpu = ThreadCpu {
        formatter: CpuFormatter {
            divisor: 1e6,
            unit: "ms (CPU)",
        },
    };
}

struct CpuFormatter {
    divisor: f64,
    unit: &'static str,
}

impl criterion::measurement::ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        for v in values {
            *v /= self.divisor;
        }
        self.unit
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        _t: &criterion::Throughput,
        _values: &mut [f64],
    ) -> &'static str {
        "ns"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

impl criterion::measurement::Measurement for ThreadCpu {
    type Intermediate = std::time::Duration;
    type Value = std::time::Duration;
    fn start(&self) -> std::time::Duration {
        thread_cpu()
    }
    fn end(&self, start: std::time::Duration) -> std::time::Duration {
        thread_cpu().saturating_sub(start)
    }
    fn add(&self, a: &std::time::Duration, b: &std::time::Duration) -> std::time::Duration {
        *a + *b
    }
    fn zero(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    fn to_f64(&self, v: &std::time::Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn criterion::measurement::ValueFormatter {
        &self.formatter
    }
}
