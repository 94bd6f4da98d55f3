//! The heap goes back to the kernel after a burst (src/memory.rs): the
//! pattern of a takeover of many resources, buffers freed in the middle of
//! a heap that smaller live allocations pin, leaves the process at the
//! burst's size unless something trims it. One test in its own process:
//! it reads the process's own resident anonymous memory.

use dlm_electd::memory;
use std::time::{Duration, Instant};

/// Anonymous resident memory of this process, in KiB.
fn anon_kib() -> u64 {
    let roll = std::fs::read_to_string("/proc/self/smaps_rollup").expect("smaps_rollup");
    roll.lines()
        .find_map(|l| l.strip_prefix("Anonymous:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("Anonymous: in smaps_rollup")
}

#[test]
fn a_burst_freed_in_the_middle_of_the_heap_is_returned_after_it() {
    memory::configure();
    // 32 MiB of 16 KiB buffers (below the mmap threshold, so on the heap),
    // each followed by a small allocation that stays: freeing the buffers
    // leaves holes that no top-of-heap trim can give back.
    const N: usize = 2048;
    let mut bufs = Vec::with_capacity(N);
    let mut pins = Vec::with_capacity(N);
    for i in 0..N {
        let mut b = vec![0u8; 16 * 1024];
        // Touch every page so that it is resident.
        for p in b.iter_mut().step_by(4096) {
            *p = i as u8;
        }
        bufs.push(b);
        pins.push(Box::new(i));
    }
    let before = anon_kib();
    drop(bufs);
    let freed = anon_kib();
    assert!(
        freed + 16 * 1024 > before,
        "the holes went back without a trim ({before} -> {freed} KiB): the test shows nothing"
    );

    memory::after_burst();
    // Trimmed once the burst has been quiet for memory::QUIET.
    let deadline = Instant::now() + memory::QUIET + Duration::from_secs(20);
    loop {
        let now = anon_kib();
        if now + 24 * 1024 < freed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {now} KiB anonymous, {freed} KiB after the buffers were freed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(pins.iter().map(|b| **b).sum::<usize>(), N * (N - 1) / 2);
}
