//! The hot-key capture sketch against Apache DataSketches' frequent-items
//! sketch: insert, merge, summary, memory, and (printed once) accuracy.
//!
//! Run: `cargo bench -p keyviz --bench hotkeys -- --warm-up-time 1 --measurement-time 3`
//! Results and the choice: `docs/PERFORMANCE.md`, "Hot-key sketch: ours against datasketches".

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use datasketches::frequencies::{ErrorType, FrequentItemsSketch};
use keyviz::hotkeys::{BenchSketch, HotSummary, KeyRedactor};

/// Counts heap allocations, so the report can say what each sketch allocates
/// per insert (the capture path must not allocate once warm).
struct Counting;

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

// The one unsafe item of this bench: a GlobalAlloc must be an `unsafe impl`;
// it only forwards to the system allocator and bumps a relaxed counter.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout`.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Distinct keys of the stream.
const KEYS: usize = 100_000;
/// Operations per measured stream.
const OPS: usize = 200_000;
/// Zipf exponent of key popularity.
const ZIPF_S: f64 = 1.1;

type Ds = FrequentItemsSketch<Vec<u8>>;

/// splitmix64, so every run measures the same stream.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// 16-byte keys and a Zipf(1.1) stream of indices into them; the key of
/// each rank is scattered so popularity is not key order.
fn stream(seed: u64) -> (Vec<Vec<u8>>, Vec<u32>) {
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| {
            format!(
                "key:{:012}",
                (i as u64).wrapping_mul(2_654_435_761) % 1_000_000_000_000
            )
            .into_bytes()
        })
        .collect();
    let mut cdf = Vec::with_capacity(KEYS);
    let mut acc = 0.0;
    for rank in 1..=KEYS {
        acc += 1.0 / (rank as f64).powf(ZIPF_S);
        cdf.push(acc);
    }
    let mut rng = Rng(seed);
    let ops = (0..OPS)
        .map(|_| {
            let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * acc;
            cdf.partition_point(|&c| c < u).min(KEYS - 1) as u32
        })
        .collect();
    (keys, ops)
}

/// The stream's keys laid out one after another, read in order: on the
/// capture path the key was just parsed and is in cache, so the measured
/// loop must not pay a cache miss per op to fetch it (a `Vec<Vec<u8>>`
/// indexed at random would, and then dominates both sketches' cost).
struct Flat(Vec<u8>);

const KEY_LEN: usize = 16;

impl Flat {
    fn new(keys: &[Vec<u8>], ops: &[u32]) -> Flat {
        let mut v = Vec::with_capacity(ops.len() * KEY_LEN);
        for &i in ops {
            let k = &keys[i as usize];
            assert_eq!(k.len(), KEY_LEN);
            v.extend_from_slice(k);
        }
        Flat(v)
    }
    fn iter(&self) -> std::slice::ChunksExact<'_, u8> {
        self.0.chunks_exact(KEY_LEN)
    }
}

fn ours(capacity: usize, flat: &Flat) -> BenchSketch {
    let mut s = BenchSketch::new(capacity);
    for k in flat.iter() {
        s.insert(k, false, 1, 1);
    }
    s
}

fn ds(max_map_size: usize, flat: &Flat) -> Ds {
    let mut s = Ds::new(max_map_size).expect("power of two >= 8");
    for k in flat.iter() {
        s.update_with_count_ref(k, 1);
    }
    s
}

/// Every item DataSketches holds, with its bounds (lower = count, upper =
/// count + offset; unlisted keys are at most the offset).
fn ds_rows(s: &Ds) -> Vec<(Vec<u8>, u64, u64, u64)> {
    s.frequent_items_with_threshold(ErrorType::NoFalseNegatives, 0)
        .into_iter()
        .map(|r| {
            (
                r.item().clone(),
                r.estimate(),
                r.lower_bound(),
                r.upper_bound(),
            )
        })
        .collect()
}

/// Heap bytes of a DataSketches sketch including its keys' buffers (its own
/// `estimated_size` counts the tables only).
fn ds_heap(s: &Ds) -> usize {
    s.estimated_size() + ds_rows(s).iter().map(|r| r.0.capacity()).sum::<usize>()
}

/// Prints, once, what the timings cannot show: memory, how many of the true
/// top 10 each sketch lists, their worst estimate error, and the widest
/// interval among them.
fn report_accuracy(keys: &[Vec<u8>], ops: &[u32], flat: &Flat) {
    let mut truth: HashMap<&[u8], u64> = HashMap::new();
    for &i in ops {
        *truth.entry(keys[i as usize].as_slice()).or_default() += 1;
    }
    let mut top: Vec<(&[u8], u64)> = truth.iter().map(|(k, v)| (*k, *v)).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    top.truncate(10);
    let describe = |name: &str, rows: &[(Vec<u8>, u64, u64, u64)], floor: u64, heap: usize| {
        let mut listed = 0;
        let (mut worst_err, mut widest) = (0u64, 0u64);
        for (k, t) in &top {
            if let Some(r) = rows.iter().find(|r| r.0.as_slice() == *k) {
                listed += 1;
                assert!(r.2 <= *t && *t <= r.3, "{name}: bounds must hold");
                worst_err = worst_err.max(r.1.abs_diff(*t));
                widest = widest.max(r.3 - r.2);
            }
        }
        eprintln!(
            "accuracy {name}: heap {heap} B, {} counters, top-10 listed {listed}/10, \
             worst |estimate - true| {worst_err}, widest interval {widest}, floor {floor} \
             (stream {OPS} ops, hottest key {} ops)",
            rows.len(),
            top[0].1
        );
    };
    for capacity in [16usize, 32, 64] {
        let s = ours(capacity, flat);
        let sum = s.summary(OPS as u64);
        sum.validate().expect("valid");
        let rows: Vec<_> = sum
            .items
            .iter()
            .map(|i| (i.key.clone(), i.estimate, i.lower, i.upper))
            .collect();
        describe(
            &format!("ours_c{capacity}"),
            &rows,
            sum.floor,
            s.heap_bytes(),
        );
    }
    for m in [32usize, 64, 128] {
        let s = ds(m, flat);
        describe(
            &format!("datasketches_m{m}"),
            &ds_rows(&s),
            s.maximum_error(),
            ds_heap(&s),
        );
    }
}

/// On-CPU time of the calling thread in ns (`/proc/thread-self/schedstat`,
/// first field), so a busy machine's preemption does not count; `None` off
/// Linux.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Prints, once, the median on-CPU and wall ns per insert of each variant
/// over interleaved runs: on a shared machine criterion's wall-clock
/// medians include time the bench spent preempted, this does not.
fn report_cpu_time(flat: &Flat) {
    type Run<'a> = Box<dyn Fn() -> usize + 'a>;
    let variants: Vec<(&str, Run<'_>)> = vec![
        ("ours_c32", Box::new(|| ours(32, flat).heap_bytes())),
        ("ours_c64", Box::new(|| ours(64, flat).heap_bytes())),
        (
            "datasketches_m64",
            Box::new(|| ds(64, flat).num_active_items()),
        ),
        (
            "datasketches_m128",
            Box::new(|| ds(128, flat).num_active_items()),
        ),
    ];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..15 {
        for (i, (_, run)) in variants.iter().enumerate() {
            let (c0, w0) = (thread_cpu_ns(), std::time::Instant::now());
            black_box(run());
            let w = w0.elapsed().as_nanos() as f64 / OPS as f64;
            if let (Some(c0), Some(c1)) = (c0, thread_cpu_ns()) {
                cpu[i].push((c1 - c0) as f64 / OPS as f64);
            }
            wall[i].push(w);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    // Allocations of a second pass into an already warm sketch.
    let mut warm_ours = ours(32, flat);
    warm_ours.clear();
    let a0 = allocations();
    for k in flat.iter() {
        warm_ours.insert(k, false, 1, 1);
    }
    let ours_allocs = allocations() - a0;
    let mut warm_ds = ds(64, flat);
    warm_ds.reset();
    for k in flat.iter().take(OPS / 10) {
        warm_ds.update_with_count_ref(k, 1);
    }
    let a0 = allocations();
    for k in flat.iter() {
        warm_ds.update_with_count_ref(k, 1);
    }
    let ds_allocs = allocations() - a0;
    eprintln!(
        "allocations per insert into a warm sketch: ours_c32 {:.4}, datasketches_m64 {:.4}",
        ours_allocs as f64 / OPS as f64,
        ds_allocs as f64 / OPS as f64
    );
    for (i, (name, _)) in variants.iter().enumerate() {
        eprintln!(
            "insert {name}: median on-CPU {:.1} ns/op, wall {:.1} ns/op (15 interleaved runs of {OPS} ops)",
            median(&mut cpu[i]),
            median(&mut wall[i])
        );
    }
}

fn insert(c: &mut Criterion) {
    let (keys, ops) = stream(1);
    let flat = Flat::new(&keys, &ops);
    report_accuracy(&keys, &ops, &flat);
    report_cpu_time(&flat);
    let mut g = c.benchmark_group("hotkeys_insert");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .throughput(Throughput::Elements(OPS as u64));
    for capacity in [16usize, 32, 64] {
        g.bench_function(format!("ours_c{capacity}_zipf1.1_100k_keys"), |b| {
            b.iter(|| black_box(ours(capacity, &flat).heap_bytes()))
        });
    }
    for m in [32usize, 64, 128] {
        g.bench_function(format!("datasketches_m{m}_zipf1.1_100k_keys"), |b| {
            b.iter(|| black_box(ds(m, &flat).total_weight()))
        });
    }
    // A warm sketch across windows: `clear` keeps the buffers, as the sampler
    // reuses a slot's sketch.
    let mut warm = BenchSketch::new(32);
    g.bench_function("ours_c32_warm_reused_zipf1.1_100k_keys", |b| {
        b.iter(|| {
            warm.clear();
            for k in flat.iter() {
                warm.insert(k, false, 1, 1);
            }
            black_box(warm.is_empty())
        })
    });
    g.finish();
}

fn merge_and_summary(c: &mut Criterion) {
    let (keys, ops) = stream(2);
    let (a_ops, b_ops) = ops.split_at(OPS / 2);
    let (fa, fb, fall) = (
        Flat::new(&keys, a_ops),
        Flat::new(&keys, b_ops),
        Flat::new(&keys, &ops),
    );
    let mut g = c.benchmark_group("hotkeys_merge");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    // Ours merges at the summary level (seal -> HotSummary -> add_disjoint ->
    // trim), which is what the history and the cluster merge do.
    let (sa, sb) = (ours(32, &fa), ours(32, &fb));
    let (ha, hb) = (
        sa.summary(a_ops.len() as u64),
        sb.summary(b_ops.len() as u64),
    );
    g.bench_function("ours_c32_summaries_add_disjoint_trim", |b| {
        b.iter_batched(
            || ha.clone(),
            |mut m: HotSummary| {
                m.add_disjoint(black_box(&hb));
                m.trim(32);
                black_box(m)
            },
            BatchSize::SmallInput,
        )
    });
    for m in [64usize, 128] {
        let (da, db) = (ds(m, &fa), ds(m, &fb));
        g.bench_function(format!("datasketches_m{m}_merge"), |b| {
            b.iter_batched(
                || da.clone(),
                |mut x: Ds| {
                    x.merge(black_box(&db));
                    black_box(x)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group("hotkeys_summary");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let full = ours(32, &fall);
    g.bench_function("ours_c32_summary", |b| {
        b.iter(|| black_box(full.summary(black_box(OPS as u64))))
    });
    for m in [64usize, 128] {
        let d = ds(m, &fall);
        g.bench_function(format!("datasketches_m{m}_frequent_items"), |b| {
            b.iter(|| black_box(d.frequent_items(ErrorType::NoFalseNegatives)))
        });
    }
    g.finish();
}

/// What the capture path pays before the sketch: the redaction of one
/// 16-byte key into a reused buffer.
fn redact(c: &mut Criterion) {
    let mut g = c.benchmark_group("hotkeys_redact");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let key = b"user:00004217:cart";
    let mut out = Vec::with_capacity(128);
    for (name, r) in [
        ("raw", KeyRedactor::raw()),
        ("hashed", KeyRedactor::hashed(b"cluster secret", Some(b':'))),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(r.apply(black_box(key), &mut out)))
        });
    }
    g.finish();
}

criterion_group!(benches, insert, merge_and_summary, redact);
criterion_main!(benches);
