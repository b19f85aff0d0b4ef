//! SLUB statistics (`CONFIG_SLUB_STATS`, Linux 6.6 `stat()` call sites), the
//! `/sys/kernel/slab` files, and slab merging (`find_mergeable()`).

use kmemlab_mm::slab::stats::StatItem;
use kmemlab_mm::slab::{KmemCacheRef, SlabConfig, SlabFlags};
use kmemlab_mm::{Context, Gfp, Mm, Profile};
use kmemlab_sim::{Machine, MachineConfig, SimPlatform};

const MIB: u64 = 1 << 20;

fn machine(slab: SlabConfig) -> Machine {
    Machine::new(MachineConfig {
        ram: 64 * MIB,
        cpus: 2,
        profile: Profile::X86_64,
        seed: 3,
        holes: vec![],
        slab,
        ..MachineConfig::default()
    })
    .expect("boots")
}

fn stats_machine() -> Machine {
    machine(SlabConfig {
        slub_stats: true,
        ..SlabConfig::default()
    })
}

fn stat(mm: &Mm<SimPlatform>, r: KmemCacheRef, item: StatItem) -> u64 {
    mm.slub_stat(r, item)
        .expect("live cache")
        .expect("stats on")
}

fn all_stats(mm: &Mm<SimPlatform>, r: KmemCacheRef) -> Vec<u64> {
    StatItem::ALL.iter().map(|&i| stat(mm, r, i)).collect()
}

fn sysfs(mm: &Mm<SimPlatform>, path: &str) -> Option<String> {
    let mut out = String::new();
    mm.sysfs_slab_render(path, &mut out)
        .expect("renders")
        .then_some(out)
}

#[test]
fn warm_pair_is_one_fast_alloc_and_one_fast_free() {
    let m = stats_machine();
    m.run(|mm| {
        let r = mm
            .kmem_cache_create("pairs", 100, 0, SlabFlags::empty(), None)
            .unwrap();
        // Warm the CPU slab.
        let warm = mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap();
        let before = all_stats(mm, r);
        let p = mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap();
        mm.kmem_cache_free(r, p).unwrap();
        let after = all_stats(mm, r);
        for (i, item) in StatItem::ALL.iter().enumerate() {
            let expected = match item {
                StatItem::AllocFastpath | StatItem::FreeFastpath => 1,
                _ => 0,
            };
            assert_eq!(after[i] - before[i], expected, "{}", item.file_name());
        }
        mm.kmem_cache_free(r, warm).unwrap();
    });
}

#[test]
fn first_allocation_takes_a_new_slab_through_the_slow_path() {
    let m = stats_machine();
    m.run(|mm| {
        let r = mm
            .kmem_cache_create("fresh", 200, 0, SlabFlags::empty(), None)
            .unwrap();
        assert_eq!(all_stats(mm, r), vec![0; StatItem::ALL.len()]);
        let p = mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap();
        assert_eq!(stat(mm, r, StatItem::AllocSlowpath), 1);
        assert_eq!(stat(mm, r, StatItem::AllocSlab), 1);
        assert_eq!(stat(mm, r, StatItem::AllocFastpath), 0);
        mm.kmem_cache_free(r, p).unwrap();
        assert_eq!(stat(mm, r, StatItem::FreeFastpath), 1);
    });
}

#[test]
fn filling_a_slab_and_freeing_from_another_cpu_counts_slow_frees() {
    let m = stats_machine();
    let (r, objs) = m.run(|mm| {
        let r = mm
            .kmem_cache_create("remote", 512, 0, SlabFlags::empty(), None)
            .unwrap();
        let per_slab = mm.cache(r).unwrap().oo().objects as usize;
        let objs: Vec<_> = (0..per_slab * 3)
            .map(|_| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap())
            .collect();
        // One slab per `per_slab` objects, each allocated new.
        assert_eq!(stat(mm, r, StatItem::AllocSlab), 3);
        assert_eq!(
            stat(mm, r, StatItem::AllocFastpath) + stat(mm, r, StatItem::AllocSlowpath),
            objs.len() as u64
        );
        (r, objs)
    });
    m.on_cpu(1, Context::Process, |mm| {
        for &p in &objs {
            mm.kmem_cache_free(r, p).unwrap();
        }
        // CPU 1 has no slab of the cache: every free is a slow one, counted on CPU 1.
        assert_eq!(stat(mm, r, StatItem::FreeSlowpath), objs.len() as u64);
        assert_eq!(stat(mm, r, StatItem::FreeFastpath), 0);
        assert_eq!(
            mm.slub_stat_cpu(r, StatItem::FreeSlowpath, 1).unwrap(),
            Some(objs.len() as u64)
        );
        assert_eq!(
            mm.slub_stat_cpu(r, StatItem::FreeSlowpath, 0).unwrap(),
            Some(0)
        );
        // Full slabs that became partial went to CPU 1's partial list.
        assert!(stat(mm, r, StatItem::CpuPartialFree) >= 1);
    })
    .unwrap();
    m.run(|mm| {
        let mut text = String::new();
        assert!(mm
            .show_slub_stat(r, StatItem::FreeSlowpath, &mut text)
            .unwrap());
        assert_eq!(text, format!("{n} C1={n}\n", n = objs.len()));
    });
}

#[test]
fn stats_off_means_no_files_and_no_counts() {
    let m = machine(SlabConfig::default());
    m.run(|mm| {
        let r = mm
            .kmem_cache_create("quiet", 64, 0, SlabFlags::empty(), None)
            .unwrap();
        let p = mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap();
        mm.kmem_cache_free(r, p).unwrap();
        assert_eq!(mm.slub_stat(r, StatItem::AllocFastpath).unwrap(), None);
        assert!(sysfs(mm, "/sys/kernel/slab/quiet/alloc_fastpath").is_none());
        assert!(sysfs(mm, "/sys/kernel/slab/kmalloc-64/object_size").is_some());
    });
}

#[test]
fn sysfs_files_agree_with_proc_slabinfo() {
    let m = stats_machine();
    m.run(|mm| {
        let keep: Vec<_> = (0..100)
            .map(|_| mm.kmalloc(192, Gfp::GFP_KERNEL).unwrap())
            .collect();
        let mut proc = String::new();
        kmemlab_mm::procfs::render(mm, "slabinfo", &mut proc).unwrap();
        let row: Vec<&str> = proc
            .lines()
            .find(|l| l.starts_with("kmalloc-192 "))
            .unwrap()
            .split_whitespace()
            .collect();
        let dir = "/sys/kernel/slab/kmalloc-192";
        let first = |f: &str| {
            sysfs(mm, &format!("{dir}/{f}"))
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(first("objects"), row[1], "active_objs");
        assert_eq!(first("total_objects"), row[2], "num_objs");
        assert_eq!(first("slab_size"), row[3], "objsize");
        assert_eq!(first("objs_per_slab"), row[4], "objperslab");
        assert_eq!(
            1u64 << first("order").parse::<u32>().unwrap(),
            row[5].parse::<u64>().unwrap()
        );
        assert_eq!(first("slabs"), row[14], "num_slabs");
        assert_eq!(first("object_size"), "192");
        // Multi-valued files as show_slab_objects() prints them.
        let objects = sysfs(mm, &format!("{dir}/objects")).unwrap();
        assert_eq!(objects, format!("{n} N0={n}\n", n = row[1]));
        assert_eq!(first("aliases"), "0");
        assert_eq!(first("hwcache_align"), "0");
        assert!(sysfs(mm, &format!("{dir}/no_such_file")).is_none());
        assert!(sysfs(mm, "/sys/kernel/slab/no-such-cache/objects").is_none());
        assert!(sysfs(mm, "/sys/kernel/slab/kmalloc-192").is_none());
        for p in keep {
            mm.kfree(p).unwrap();
        }
    });
}

#[test]
fn compatible_caches_merge_and_unmergeable_ones_do_not() {
    let m = machine(SlabConfig::default());
    m.run(|mm| {
        let a = mm
            .kmem_cache_create("merge_a", 100, 0, SlabFlags::empty(), None)
            .unwrap();
        // 100 and 104 round to the same 104-byte object: the second is an alias.
        let b = mm
            .kmem_cache_create("merge_b", 104, 0, SlabFlags::empty(), None)
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(mm.find_cache("merge_b"), Some(a));
        let s = mm.cache(a).unwrap();
        assert_eq!(s.object_size(), 104, "object_size widened to the alias's");
        assert_eq!(mm.slab_aliases(s), 1);
        let dir = mm.sysfs_slab_dir(s).to_string();
        assert_eq!(dir, format!(":{:07}", s.size()));
        assert!(sysfs(mm, &format!("/sys/kernel/slab/{dir}/aliases")).is_some());
        assert_eq!(
            sysfs(mm, "/sys/kernel/slab/merge_b/aliases").unwrap(),
            "1\n"
        );
        // Only the first name appears in /proc/slabinfo.
        let mut proc = String::new();
        kmemlab_mm::procfs::render(mm, "slabinfo", &mut proc).unwrap();
        assert!(proc.lines().any(|l| l.starts_with("merge_a ")));
        assert!(!proc.contains("merge_b"));
        // A constructor, a debug flag, a different MERGE_SAME flag, a bigger size.
        fn ctor(_: &mut [u8]) {}
        let c = mm
            .kmem_cache_create("with_ctor", 100, 0, SlabFlags::empty(), Some(ctor))
            .unwrap();
        let d = mm
            .kmem_cache_create("debug", 100, 0, SlabFlags::RED_ZONE, None)
            .unwrap();
        let e = mm
            .kmem_cache_create("reclaim", 100, 0, SlabFlags::RECLAIM_ACCOUNT, None)
            .unwrap();
        let f = mm
            .kmem_cache_create("bigger", 120, 0, SlabFlags::empty(), None)
            .unwrap();
        for other in [c, d, e, f] {
            assert_ne!(other, a);
        }
        // kmalloc caches are never merged into (usersize, CONFIG_HARDENED_USERCOPY).
        let g = mm
            .kmem_cache_create("like_kmalloc_64", 64, 0, SlabFlags::empty(), None)
            .unwrap();
        assert_ne!(Some(g), mm.find_cache("kmalloc-64"));
        // Destroying the alias keeps the cache for its other user.
        mm.kmem_cache_destroy(b).unwrap();
        assert!(mm.cache(a).is_ok());
        assert_eq!(mm.slab_aliases(mm.cache(a).unwrap()), 0);
        assert_eq!(mm.find_cache("merge_b"), None);
        mm.kmem_cache_destroy(a).unwrap();
        assert!(mm.cache(a).is_err());
    });
}

#[test]
fn slab_nomerge_keeps_every_cache_apart() {
    let m = machine(SlabConfig {
        nomerge: true,
        ..SlabConfig::default()
    });
    m.run(|mm| {
        let a = mm
            .kmem_cache_create("nm_a", 100, 0, SlabFlags::empty(), None)
            .unwrap();
        let b = mm
            .kmem_cache_create("nm_b", 100, 0, SlabFlags::empty(), None)
            .unwrap();
        assert_ne!(a, b);
        let s = mm.cache(a).unwrap();
        assert!(mm.slab_unmergeable(s));
        assert_eq!(mm.sysfs_slab_dir(s).as_str(), "nm_a");
    });
}

/// `get_partial_node()` (Linux 6.6) takes the first slab of the node's partial list for
/// the CPU, then more onto the CPU's partial list until it has taken more than half the
/// CPU's limit (`partial_slabs > s->cpu_partial_slabs / 2`): one past the half.
#[test]
fn a_cpu_takes_one_past_half_its_partial_limit_from_the_node() {
    let m = stats_machine();
    m.run(|mm| {
        let r = mm
            .kmem_cache_create("partials", 256, 0, SlabFlags::empty(), None)
            .unwrap();
        let dir = "/sys/kernel/slab/partials";
        let number = |file: &str| -> u64 {
            let text = sysfs(mm, &format!("{dir}/{file}")).expect(file);
            text.split_whitespace().next().unwrap().parse().unwrap()
        };
        let per_slab = number("objs_per_slab");
        // slub_set_cpu_partial(): DIV_ROUND_UP(cpu_partial * 2, objects per slab).
        let limit = (number("cpu_partial") * 2).div_ceil(per_slab);
        assert!(limit >= 2, "limit {limit}");
        // Fill 4 * limit slabs, free one object of each (each becomes partial), and
        // send every partial slab to the node.
        let slabs = 4 * limit;
        let objects: Vec<_> = (0..slabs * per_slab)
            .map(|_| mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap())
            .collect();
        for chunk in objects.chunks(per_slab as usize) {
            mm.kmem_cache_free(r, chunk[0]).unwrap();
        }
        mm.kmem_cache_shrink(r).unwrap();
        assert!(
            number("partial") >= limit + 2,
            "{} on the node",
            number("partial")
        );
        let before = stat(mm, r, StatItem::CpuPartialNode);
        let from_partial = stat(mm, r, StatItem::AllocFromPartial);
        let p = mm.kmem_cache_alloc(r, Gfp::GFP_KERNEL).unwrap();
        assert_eq!(stat(mm, r, StatItem::AllocFromPartial) - from_partial, 1);
        assert_eq!(
            stat(mm, r, StatItem::CpuPartialNode) - before,
            limit / 2 + 1
        );
        mm.kmem_cache_free(r, p).unwrap();
        for chunk in objects.chunks(per_slab as usize) {
            for &o in &chunk[1..] {
                mm.kmem_cache_free(r, o).unwrap();
            }
        }
        mm.kmem_cache_destroy(r).unwrap();
    });
}
