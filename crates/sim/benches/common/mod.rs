//! Helpers shared by the benchmarks that check they leave nothing behind.

use kmemlab_sim::{Machine, MachineConfig};

/// 1 GiB.
pub const GIB: u64 = 1 << 30;

/// A 1 GiB machine with `seed`.
pub fn machine(seed: u64) -> Machine {
    Machine::new(MachineConfig {
        ram: GIB,
        seed,
        ..Default::default()
    })
    .expect("machine boots")
}

/// Free pages as a leak would show: after the lazy purge, every slab cache shrunk and the
/// per-CPU lists drained; page-table pages (which vmalloc keeps) counted as free.
pub fn settled_free_pages(m: &Machine) -> u64 {
    m.run(|mm| {
        mm.purge_vmap_area_lazy();
        let mut caches = vec![];
        mm.for_each_cache(|s| {
            caches.push(s.handle());
            None::<()>
        });
        for c in caches {
            mm.kmem_cache_shrink(c).unwrap();
        }
        mm.drain_all_pages();
        mm.zones().iter().map(|z| z.free_pages()).sum::<u64>() + mm.nr_pagetable_pages()
    })
}

/// Run `bench` (a kmemlab benchmark on `m`) and check that it left nothing behind.
pub fn no_leak(m: &Machine, name: &str, bench: impl FnOnce()) {
    let before = settled_free_pages(m);
    bench();
    let after = settled_free_pages(m);
    assert_eq!(after, before, "{name}: every page is back");
    let console = m.take_console();
    assert!(console.is_empty(), "{name}: {console:?}");
}
