//! Instruction counts of the `kmalloc_random_churn` benchmark's loop, for callgrind: 10,000
//! live objects of random sizes 8 ..= 8192 bytes are set up first, then each of `N`
//! iterations `kfree`s the object in a random slot and `kmalloc`s a new random size into it,
//! on CPU 0 of a 1 GiB machine. The random numbers (seeded xorshift64*) and the sizes are
//! the same as in `crates/sim/benches/slab.rs`.
//!
//! Callgrind counts are repeatable whatever else the machine is doing, so the cost of a
//! change to the slow paths can be read exactly: run with two counts and divide the
//! difference by the difference in iterations.
//!
//! ```sh
//! CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release -p kmemlab-sim \
//!     --example churn_cost --target-dir /tmp/churn-dbg
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/ch.cg.1 \
//!     /tmp/churn-dbg/release/examples/churn_cost 100000   # then 200000 into /tmp/ch.cg.2
//! ```
//!
//! `churn_cost N sheaves` runs the same loop with the per-CPU sheaves of Linux 6.18.

use std::hint::black_box;

use kmemlab_mm::{Gfp, VirtAddr};
use kmemlab_sim::{Machine, MachineConfig};

/// Live objects, as in the benchmark.
const LIVE: usize = 10_000;
/// Smallest and largest request, as in the benchmark.
const MIN_SIZE: usize = 8;
const MAX_SIZE: usize = 8192;
/// Seed of the churn's random numbers, as in the benchmark.
const SEED: u64 = 0x2545_f491_4f6c_dd1d;

/// xorshift64*, the benchmark's generator.
struct XorShift(u64);

impl XorShift {
    #[inline]
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (multiply-shift).
    #[inline]
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    #[inline]
    fn size(&mut self) -> usize {
        MIN_SIZE + self.below(MAX_SIZE - MIN_SIZE + 1)
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    // `sheaves` as the second argument: the per-CPU sheaves (`--slab-percpu sheaves`).
    let percpu = if std::env::args().nth(2).as_deref() == Some("sheaves") {
        kmemlab_mm::slab::sheaf::SlabPercpu::Sheaves
    } else {
        kmemlab_mm::slab::sheaf::SlabPercpu::CpuSlab
    };
    let m = Machine::new(MachineConfig {
        ram: 1 << 30,
        slab: kmemlab_mm::slab::SlabConfig {
            percpu,
            ..Default::default()
        },
        ..Default::default()
    })
    .expect("machine boots");
    let mut rng = XorShift(SEED);
    let mut slots: Vec<VirtAddr> = m.run(|mm| {
        (0..LIVE)
            .map(|_| mm.kmalloc(rng.size(), Gfp::GFP_KERNEL).expect("kmalloc"))
            .collect()
    });
    m.run(|mm| {
        for _ in 0..n {
            let slot = &mut slots[rng.below(LIVE)];
            let size = rng.size();
            mm.kfree(black_box(*slot)).expect("kfree");
            *slot = mm
                .kmalloc(black_box(size), Gfp::GFP_KERNEL)
                .expect("kmalloc");
        }
    });
    m.run(|mm| {
        for p in slots {
            mm.kfree(p).expect("kfree");
        }
    });
}
