//! kmemlab-sim's integration tests, one binary: kernel ports (slub_kunit, test_vmalloc),
//! model tests of the page, slab and vmalloc allocators (one driver, `model_driver`),
//! and topic tests, each a module named as its file. The fixtures every module shares
//! (`MachineBuilder`, boot snapshots, test data) are in `fixtures`.
//!
//! Run one module with `cargo test -p kmemlab-sim --test it <module>::`.

mod fixtures;
mod model_driver;

mod bad_input;
mod boot_caches;
mod bulk;
mod check_walk;
mod concurrency;
mod context;
mod corrupt_core;
mod corrupt_slab;
mod corrupt_vmalloc_dma;
mod dma;
mod fragmentation;
mod kmalloc_sizes;
mod kvmalloc;
mod layers;
mod mmu;
mod model;
mod page_cache_check;
mod page_meminit;
mod procfs;
mod real_machine;
mod reclaim;
mod reserves;
mod rust_alloc;
mod sections;
mod sheaves;
mod slab_bad_input;
mod slab_irq;
mod slab_meminit;
mod slab_model;
mod slab_regressions;
mod slub_kunit;
mod slub_stats;
mod sysctl;
mod test_vmalloc;
mod vmalloc_model;
mod vmalloc_smoke;
