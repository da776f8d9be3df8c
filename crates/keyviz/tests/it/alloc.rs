//! Zero allocations per observe, counted by a global allocator.
//!
//! Only allocations made by the current thread while `COUNTING` is set are
//! counted, so other tests running in parallel do not disturb the count.

#![allow(unsafe_code)] // The GlobalAlloc impl below only forwards to System.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use keyviz::ReadRole;

use crate::util::{T0, route, sampler_with};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` with the caller's arguments; the
// thread-local bookkeeping allocates nothing (const-initialised Cells).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNTING.try_with(|on| {
            if on.get() {
                let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            }
        });
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn count_allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    COUNT.with(Cell::get)
}

#[test]
fn observe_allocates_nothing_with_hot_keys_off() {
    let s = sampler_with(|c| {
        c.key_buckets_per_route = 64;
        c.hot_keys = keyviz::hotkeys::KeyRedactor::off();
    });
    s.register_route(route(1, b"a", Some(b"z"), 3))
        .expect("register");
    let mut rec = s.recorder();
    let traffic = |rec: &mut keyviz::Recorder| {
        for i in 0..10_000u32 {
            rec.observe_write(1, &i.to_be_bytes(), 16, 3, 7, T0);
            let key = i.to_be_bytes();
            s.observe_write(1, &key, 16, 3, 7, T0);
            s.observe_read(1, &key, 16, ReadRole::Follower, T0);
            s.observe_read(99, &key, 16, ReadRole::Leader, T0); // unknown route
        }
    };
    // Warm up: the first observe on a thread sets up its table cache, and a
    // busy slot gives the thread its own counter shard (one allocation per
    // slot and thread, once).
    let warm = count_allocations(|| traffic(&mut rec));
    assert!(warm > 0, "the shard allocation is counted");
    let n = count_allocations(|| traffic(&mut rec));
    assert_eq!(n, 0, "observe allocated {n} times");
    // And the counting is real: flushing afterwards allocates.
    assert!(
        count_allocations(|| {
            let _ = s.flush(T0 + 1_000);
        }) > 0
    );
}

#[test]
fn hot_key_capture_stops_allocating_once_its_sketches_are_warm() {
    let s = sampler_with(|c| c.key_buckets_per_route = 64);
    s.register_route(route(1, b"a", Some(b"z"), 3))
        .expect("register");
    let traffic = |s: &keyviz::Sampler| {
        for i in 0..10_000u32 {
            let key = i.to_be_bytes();
            s.observe_write(1, &key, 16, 3, 7, T0);
            s.observe_read(1, &key, 16, ReadRole::Follower, T0);
        }
    };
    // The first pass allocates the sketches, their counters and key buffers.
    let warm = count_allocations(|| traffic(&s));
    assert!(warm > 0, "capture is real");
    let n = count_allocations(|| traffic(&s));
    assert_eq!(n, 0, "warm capture allocated {n} times");
}
