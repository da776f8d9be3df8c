//! Instructions per observe, for a machine too loaded to time a 3 ns path.
//!
//! Not a criterion bench: a plain binary that runs one case a fixed number of
//! times in its own `#[inline(never)]` function, so an instruction counter
//! attributes the loop to that function. Count with callgrind (the criterion
//! bench's CPU-time clock does not run under valgrind):
//!
//! ```sh
//! cargo bench -p keyviz --bench observe_instructions --no-run
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/deps/observe_instructions-<hash> 1000000
//! callgrind_annotate --inclusive=yes /tmp/cg.out | grep case_
//! ```
//!
//! A second, non-numeric argument runs only the cases whose name contains
//! it. Each `case_*` function's inclusive count ÷ the operation count printed
//! by the binary is the instructions per operation, loop included. Without
//! valgrind it prints wall time per operation, a rough check only; the
//! quoted figures are the criterion bench's (`sampler_observe`).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use keyviz::{ReadRole, Sampler, SamplerConfig};

mod support;

const KEY: [u8; 16] = [7u8; 16];
/// The capture-off cases' key: another constant, so the compiler does not
/// fold their functions into the capture-on ones.
const KEY_OFF: [u8; 16] = [8u8; 16];

#[inline(never)]
fn case_baseline_relaxed_fetch_add(n: u64, a: &AtomicU64) {
    for _ in 0..n {
        a.fetch_add(black_box(1), Ordering::Relaxed);
    }
}

#[inline(never)]
fn case_baseline_plain_add(n: u64, v: &mut u64) {
    for _ in 0..n {
        *v = black_box(*v).wrapping_add(black_box(1));
    }
}

#[inline(never)]
fn case_read_hit(n: u64, s: &Sampler, t: i64) {
    for _ in 0..n {
        s.observe_read(
            black_box(1),
            black_box(&KEY),
            black_box(64),
            ReadRole::Leader,
            t,
        );
    }
}

#[inline(never)]
fn case_write_hit(n: u64, s: &Sampler, t: i64) {
    for _ in 0..n {
        s.observe_write(black_box(1), black_box(&KEY), black_box(64), 1, 42, t);
    }
}

#[inline(never)]
fn case_read_hit_capture_off(n: u64, s: &Sampler, t: i64) {
    for _ in 0..n {
        s.observe_read(
            black_box(1),
            black_box(&KEY_OFF),
            black_box(64),
            ReadRole::Leader,
            t,
        );
    }
}

#[inline(never)]
fn case_write_hit_capture_off(n: u64, s: &Sampler, t: i64) {
    for _ in 0..n {
        s.observe_write(black_box(1), black_box(&KEY_OFF), black_box(64), 1, 42, t);
    }
}

#[inline(never)]
fn case_write_hit_k8(n: u64, s: &Sampler, t: i64) {
    let mut i = 0u64;
    for _ in 0..n {
        i = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let key = i.to_be_bytes();
        s.observe_write(black_box(1), black_box(&key), black_box(64), 1, 42, t);
    }
}

#[inline(never)]
fn case_miss_unknown_route(n: u64, s: &Sampler, t: i64) {
    for _ in 0..n {
        s.observe_read(black_box(99), black_box(&KEY), 64, ReadRole::Leader, t);
    }
}

#[inline(never)]
fn case_write_10k_routes_spread(n: u64, s: &Sampler, t: i64) {
    let mut r = 0u64;
    for _ in 0..n {
        r = (r + 7_919) % 10_000;
        s.observe_write(black_box(r + 1), black_box(&KEY), 64, 1, 42, t);
    }
}

/// The Go reference's `Observe10k/uniform` shape (as `sampler_observe`'s
/// `observe_go_shapes/10k_uniform_write_1_thread`): routes `1..=10 000` in 8
/// groups at term 3, a 16-byte key per route, uniform route ids from a
/// precomputed xorshift64* sequence of 1 Mi entries.
#[inline(never)]
fn case_go_10k_uniform_write(n: u64, s: &Sampler, seq: &[u32], keys: &[[u8; 16]], t: i64) {
    let mask = seq.len() - 1;
    for j in 0..n as usize {
        let r = seq[j & mask];
        let key = &keys[r as usize];
        s.observe_write(u64::from(r), black_box(key), 64, u64::from(r % 8 + 1), 3, t);
    }
}

/// As `case_go_10k_uniform_write`, reads (`Observe10kRead/uniform`).
#[inline(never)]
fn case_go_10k_uniform_read(n: u64, s: &Sampler, seq: &[u32], keys: &[[u8; 16]], t: i64) {
    let mask = seq.len() - 1;
    for j in 0..n as usize {
        let r = seq[j & mask];
        let key = &keys[r as usize];
        s.observe_read(u64::from(r), black_box(key), 64, ReadRole::Leader, t);
    }
}

/// `sampler_observe`'s Go-shape sampler, key table and uniform sequence.
fn go_shape() -> (Sampler, Vec<u32>, Vec<[u8; 16]>) {
    let s = Sampler::new(
        SamplerConfig {
            max_tracked_routes: 10_000,
            key_buckets_per_route: 1,
            ..SamplerConfig::default()
        },
        support::T0,
    )
    .expect("bench config is valid");
    s.register_routes((1..=10_000u32).map(|r| keyviz::RouteSpec {
        id: u64::from(r),
        start: (r * 1_000).to_be_bytes().to_vec(),
        end: Some(((r + 1) * 1_000).to_be_bytes().to_vec()),
        group: u64::from(r % 8 + 1),
    }))
    .expect("routes tile the key space");
    let keys = (0..=10_000u32)
        .map(|r| {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&(r * 1_000 + 7).to_be_bytes());
            for (i, b) in k.iter_mut().enumerate().skip(4) {
                *b = i as u8;
            }
            k
        })
        .collect();
    let mut x = 42u64 ^ 0x9e37_79b9_7f4a_7c15;
    let seq = (0..1usize << 20)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) % 10_000) as u32 + 1
        })
        .collect();
    (s, seq, keys)
}

fn sampler(routes: u64, k: u32) -> Sampler {
    support::sampler_with_routes(
        routes,
        SamplerConfig {
            key_buckets_per_route: k,
            ..SamplerConfig::default()
        },
    )
}

/// As `sampler`, hot-key capture off: what the capture check costs.
fn sampler_capture_off(routes: u64) -> Sampler {
    support::sampler_with_routes(
        routes,
        SamplerConfig {
            hot_keys: keyviz::hotkeys::KeyRedactor::off(),
            ..SamplerConfig::default()
        },
    )
}

fn time(name: &str, n: u64, f: impl FnOnce()) {
    let only = std::env::args()
        .skip(1)
        .find(|a| a.parse::<u64>().is_err() && a != "--bench");
    if only.is_some_and(|o| !name.contains(o.as_str())) {
        return;
    }
    let start = Instant::now();
    f();
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{name:32} {n} ops {ns:8.2} ns/op (wall)");
}

fn main() {
    // `cargo bench` passes `--bench`; the first numeric argument is the count.
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let a = AtomicU64::new(0);
    let mut v = 0u64;
    let one = sampler(1, 1);
    let k8 = sampler(1, 8);
    let big = sampler(10_000, 1);
    let off = sampler_capture_off(1);
    let (go, seq, keys) = go_shape();
    let t = one.open_window_unix_ms();
    // Warm up (in `main`, so the counts of the case functions are the
    // measured loops only): the busy slots move to this thread's shard, the
    // tables are cached, the counters are past their first captures.
    for i in 0..100_000u64 {
        one.observe_read(1, &KEY, 64, ReadRole::Leader, t);
        one.observe_write(1, &KEY, 64, 1, 42, t);
        off.observe_read(1, &KEY, 64, ReadRole::Leader, t);
        off.observe_write(1, &KEY, 64, 1, 42, t);
        k8.observe_write(
            1,
            &i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes(),
            64,
            1,
            42,
            t,
        );
    }
    let mut r = 0u64;
    for _ in 0..10_000_000u64 {
        r = (r + 7_919) % 10_000;
        big.observe_write(r + 1, &KEY, 64, 1, 42, t);
    }
    // Eight passes over the sequence (about 840 of each op per route): every
    // route is past its promotion to this thread's shard.
    for j in 0..8usize << 20 {
        let r = seq[j & (seq.len() - 1)];
        let key = &keys[r as usize];
        go.observe_write(u64::from(r), key, 64, u64::from(r % 8 + 1), 3, t);
        go.observe_read(u64::from(r), key, 64, ReadRole::Leader, t);
    }
    time("baseline_relaxed_fetch_add", n, || {
        case_baseline_relaxed_fetch_add(n, &a)
    });
    time("baseline_plain_add", n, || {
        case_baseline_plain_add(n, &mut v)
    });
    time("read_hit_1_thread", n, || case_read_hit(n, &one, t));
    time("write_hit_1_thread", n, || case_write_hit(n, &one, t));
    time("read_hit_capture_off", n, || {
        case_read_hit_capture_off(n, &off, t)
    });
    time("write_hit_capture_off", n, || {
        case_write_hit_capture_off(n, &off, t)
    });
    time("write_hit_k8", n, || case_write_hit_k8(n, &k8, t));
    time("miss_unknown_route", n, || {
        case_miss_unknown_route(n, &one, t)
    });
    time("write_10k_routes_spread", n, || {
        case_write_10k_routes_spread(n, &big, t)
    });
    time("go_10k_uniform_write_1_thread", n, || {
        case_go_10k_uniform_write(n, &go, &seq, &keys, t)
    });
    time("go_10k_uniform_read_1_thread", n, || {
        case_go_10k_uniform_read(n, &go, &seq, &keys, t)
    });
    black_box((a.load(Ordering::Relaxed), v));
}
