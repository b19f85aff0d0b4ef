//! The caches boot creates, as a Linux 6.6 `/proc/slabinfo` shows them: the boot caches'
//! sizes from the kernel's structure layouts (`kmem_cache`, `kmem_cache_node`,
//! `vmap_area`), and the `KMALLOC_CGROUP` type (`kmalloc-cg-*`) that serves
//! `__GFP_ACCOUNT` requests. Compared with the real `tests/data/proc/slabinfo` where the
//! kernels agree, and with the numbers the kernel source gives where they do not.

use crate::fixtures::*;
use kmemlab_mm::slab::cache::{kmem_cache_object_size, KMEM_CACHE_NODE_SIZE, NR_NODE_IDS};
use kmemlab_mm::slab::kmalloc::KmallocType;
use kmemlab_mm::slab::{KmemCacheRef, SlabConfig, SlabFlags};
use kmemlab_mm::{procfs, Gfp};
use kmemlab_sim::Machine;

/// One `/proc/slabinfo` row: objsize, objperslab, pagesperslab.
type Geometry = (u64, u64, u64);

/// The rows of a `/proc/slabinfo` text, by cache name.
fn rows(text: &str) -> Vec<(String, Geometry)> {
    text.lines()
        .skip(2)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| f[i].parse::<u64>().unwrap_or_else(|_| panic!("{l}"));
            (f[0].to_string(), (n(3), n(4), n(5)))
        })
        .collect()
}

fn slabinfo(m: &Machine) -> Vec<(String, Geometry)> {
    let mut text = String::new();
    procfs::slabinfo(&m.mm(), &mut text).unwrap();
    rows(&text)
}

fn row(rows: &[(String, Geometry)], name: &str) -> Geometry {
    rows.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} in /proc/slabinfo"))
        .1
}

fn sample_rows() -> Vec<(String, Geometry)> {
    rows(&test_data("proc/slabinfo"))
}

fn cache_name(m: &Machine, r: KmemCacheRef) -> String {
    m.mm().cache(r).unwrap().name().as_str().to_string()
}

/// The boot caches of a 4-CPU, one-node machine: `kmem_cache` is
/// `offsetof(struct kmem_cache, node) + 1 * 8` = 224 bytes, 256 with `SLAB_HWCACHE_ALIGN`,
/// 16 to an order-0 slab, as a real 4-CPU 6.6 machine shows (issue 14); `kmem_cache_node`
/// 64 bytes; `vmap_area` 72 bytes (6.6 added `flags` to it), 56 to a page.
#[test]
fn boot_caches_have_the_6_6_sizes_on_four_cpus() {
    let m = MachineBuilder::small().cpus(4).boot();
    let rows = slabinfo(&m);
    assert_eq!(NR_NODE_IDS, 1);
    assert_eq!(kmem_cache_object_size(1), 224);
    assert_eq!(row(&rows, "kmem_cache"), (256, 16, 1));
    assert_eq!(row(&rows, "kmem_cache_node"), (64, 64, 1));
    assert_eq!(row(&rows, "vmap_area"), (72, 56, 1));
    let s = m.mm().find_cache("kmem_cache").unwrap();
    assert_eq!(m.mm().cache(s).unwrap().object_size(), 224);
    let n = m.mm().find_cache("kmem_cache_node").unwrap();
    assert_eq!(m.mm().cache(n).unwrap().object_size(), KMEM_CACHE_NODE_SIZE);
}

/// A 128-CPU machine, as the sample's: `kmem_cache_node` is the sample's row exactly; the
/// sample's `kmem_cache` (448 bytes) and `vmap_area` (64 bytes) come from an older kernel
/// (its `struct kmem_cache` still held memcg parameters; `vmap_area` had no `flags`), so
/// kmemlab's rows are 6.6's, with the slab order the sample's CPU count gives (36 objects
/// at least, `slub_min_objects` = 4 * (fls(128) + 1)).
#[test]
fn boot_caches_on_128_cpus_against_the_sample() {
    let sample = sample_rows();
    let m = MachineBuilder::new().ram(256 * MIB).cpus(128).boot();
    let rows = slabinfo(&m);
    assert_eq!(
        row(&rows, "kmem_cache_node"),
        row(&sample, "kmem_cache_node")
    );
    // The sample's 448-byte kmem_cache: 16 KiB slabs of 36; 6.6's 256 bytes: 64 per 16 KiB.
    assert_eq!(row(&sample, "kmem_cache"), (448, 36, 4));
    assert_eq!(row(&rows, "kmem_cache"), (256, 64, 4));
    assert_eq!(row(&sample, "vmap_area"), (64, 64, 1));
    assert_eq!(row(&rows, "vmap_area"), (72, 56, 1));
    // Every kmalloc row of the sample, of each type it lists, is kmemlab's row too; and
    // kmalloc-cg-* has the geometry of kmalloc-* (only SLAB_ACCOUNT tells them apart).
    let mut compared = 0;
    for (name, geometry) in &sample {
        let kmalloc = name.starts_with("kmalloc-") || name.starts_with("dma-kmalloc-");
        if !kmalloc {
            continue;
        }
        assert_eq!(row(&rows, name), *geometry, "{name}");
        if let Some(size) = name
            .strip_prefix("kmalloc-")
            .filter(|s| !s.starts_with("rcl-"))
        {
            assert_eq!(
                row(&rows, &format!("kmalloc-cg-{size}")),
                *geometry,
                "{name}"
            );
        }
        compared += 1;
    }
    assert_eq!(compared, 30, "the sample's kmalloc rows");
}

/// `kmalloc_type()`: `__GFP_ACCOUNT` (`GFP_KERNEL_ACCOUNT`) picks `kmalloc-cg-*` for every
/// class; `__GFP_DMA` and then `__GFP_RECLAIMABLE` take priority over it.
#[test]
fn gfp_account_is_served_by_kmalloc_cg() {
    let m = MachineBuilder::small().boot();
    m.run(|mm| {
        for size in [
            1usize, 8, 9, 64, 65, 96, 100, 128, 129, 192, 200, 1000, 3000, 8192,
        ] {
            let p = mm.kmalloc(size, Gfp::GFP_KERNEL_ACCOUNT).unwrap();
            let (_, page) = mm.virt_to_slab(p).expect("a slab object");
            let cg = KmemCacheRef(page.slab_cache());
            let normal = mm.kmalloc_slab(size, Gfp::GFP_KERNEL).unwrap();
            assert_ne!(cg, normal, "size {size}");
            let (cg_name, normal_name) = (cache_name(&m, cg), cache_name(&m, normal));
            assert_eq!(cg_name, normal_name.replace("kmalloc-", "kmalloc-cg-"));
            let s = mm.cache(cg).unwrap();
            assert!(s.flags().contains(SlabFlags::KMALLOC | SlabFlags::ACCOUNT));
            assert!(!mm
                .cache(normal)
                .unwrap()
                .flags()
                .contains(SlabFlags::ACCOUNT));
            assert_eq!(mm.ksize(p), Ok(s.object_size() as usize));
            mm.kfree(p).unwrap();
        }
        let served = |gfp: Gfp| cache_name(&m, mm.kmalloc_slab(100, gfp).unwrap());
        assert_eq!(
            served(Gfp::GFP_ATOMIC | Gfp::__GFP_ACCOUNT),
            "kmalloc-cg-128"
        );
        assert_eq!(
            served(Gfp::GFP_KERNEL_ACCOUNT | Gfp::__GFP_RECLAIMABLE),
            "kmalloc-rcl-128"
        );
        assert_eq!(
            served(Gfp::GFP_KERNEL_ACCOUNT | Gfp::GFP_DMA),
            "dma-kmalloc-128"
        );
        // Above KMALLOC_MAX_CACHE_SIZE the page allocator serves every type.
        assert_eq!(mm.kmalloc_slab(8193, Gfp::GFP_KERNEL_ACCOUNT), None);
    });
    assert_eq!(
        KmallocType::of(Gfp::GFP_KERNEL_ACCOUNT),
        KmallocType::Cgroup
    );
    m.mm().check().unwrap();
}

/// `create_kmalloc_caches()` makes the types in `enum kmalloc_cache_type` order, so the
/// cg caches are the newest kmalloc caches: `/proc/slabinfo` (newest first) lists them
/// right after the caches made after kmalloc (here `vmap_area`), `kmalloc-cg-8k` first.
#[test]
fn slabinfo_lists_thirteen_kmalloc_cg_rows_newest_first() {
    let m = MachineBuilder::small().boot();
    let rows = slabinfo(&m);
    let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    let cg: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.starts_with("kmalloc-cg-"))
        .collect();
    assert_eq!(
        cg,
        [
            "kmalloc-cg-8k",
            "kmalloc-cg-4k",
            "kmalloc-cg-2k",
            "kmalloc-cg-1k",
            "kmalloc-cg-512",
            "kmalloc-cg-256",
            "kmalloc-cg-192",
            "kmalloc-cg-128",
            "kmalloc-cg-96",
            "kmalloc-cg-64",
            "kmalloc-cg-32",
            "kmalloc-cg-16",
            "kmalloc-cg-8",
        ]
    );
    let first_cg = names.iter().position(|n| *n == "kmalloc-cg-8k").unwrap();
    let first_dma = names.iter().position(|n| *n == "dma-kmalloc-8k").unwrap();
    assert_eq!(first_dma, first_cg + 13, "cg rows come before the DMA rows");
}

/// `cgroup.memory=nokmem` (`mem_cgroup_kmem_disabled()`): the cg slots are the normal
/// caches, and no `kmalloc-cg-*` cache exists, as on kernels before 5.14.
#[test]
fn without_memcg_kmem_accounted_requests_use_kmalloc() {
    let m = MachineBuilder::small()
        .slab(SlabConfig {
            memcg_kmem: false,
            ..SlabConfig::default()
        })
        .boot();
    assert!(slabinfo(&m)
        .iter()
        .all(|(n, _)| !n.starts_with("kmalloc-cg-")));
    m.run(|mm| {
        for size in [8usize, 96, 192, 4096] {
            assert_eq!(
                mm.kmalloc_slab(size, Gfp::GFP_KERNEL_ACCOUNT),
                mm.kmalloc_slab(size, Gfp::GFP_KERNEL),
                "size {size}"
            );
        }
        let p = mm.kmalloc(100, Gfp::GFP_KERNEL_ACCOUNT).unwrap();
        assert_eq!(
            cache_name(&m, KmemCacheRef(mm.virt_to_slab(p).unwrap().1.slab_cache())),
            "kmalloc-128"
        );
        mm.kfree(p).unwrap();
    });
}

/// `SLAB_MERGE_SAME` holds `SLAB_ACCOUNT`: an accounted cache merges only with another
/// accounted cache, and its sysfs unique id carries `A` (`create_unique_id()`).
#[test]
fn slab_account_keeps_caches_apart_when_merging() {
    let m = MachineBuilder::small().boot();
    m.run(|mm| {
        let plain = mm
            .kmem_cache_create("plain_obj", 200, 0, SlabFlags::empty(), None)
            .unwrap();
        let acct = mm
            .kmem_cache_create("acct_obj", 200, 0, SlabFlags::ACCOUNT, None)
            .unwrap();
        assert_ne!(
            plain, acct,
            "an accounted cache does not merge with a plain one"
        );
        let acct2 = mm
            .kmem_cache_create("acct_obj2", 196, 0, SlabFlags::ACCOUNT, None)
            .unwrap();
        assert_eq!(acct2, acct, "two accounted caches of one size merge");
        let plain2 = mm
            .kmem_cache_create("plain_obj2", 196, 0, SlabFlags::empty(), None)
            .unwrap();
        assert_eq!(plain2, plain);
        let id = mm.slab_unique_id(mm.cache(acct).unwrap());
        assert_eq!(id.as_str(), ":A-0000200");
        let id = mm.slab_unique_id(mm.cache(plain).unwrap());
        assert_eq!(id.as_str(), ":0000200");
    });
}
