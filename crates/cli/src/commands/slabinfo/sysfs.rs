//! Reading `/sys/kernel/slab` as slabinfo.c does: each cache directory's files into a
//! `SlabDir` (`struct slabinfo`), the leading number of each file as `get_obj()` keeps it,
//! and the alias links (`read_slab_dir()`). Start at `read_slab_dir`.

use kmemlab_mm::slab::KmemCacheRef;
use kmemlab_mm::Mm;
use kmemlab_sim::SimPlatform;

use super::{Alias, SlabDir};

/// `get_obj()`: the file's leading number (`atol`), 0 for a missing file.
fn get_obj(mm: &Mm<SimPlatform>, r: KmemCacheRef, file: &str) -> u64 {
    let mut text = String::new();
    match mm.show_slab_attr(r, file, &mut text) {
        Ok(true) => text
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn read_dir(mm: &Mm<SimPlatform>, name: &str, r: KmemCacheRef) -> SlabDir {
    macro_rules! read {
        ($($f:ident),*) => {
            SlabDir { name: name.to_string(), refs: 0, $( $f: get_obj(mm, r, stringify!($f)), )* }
        };
    }
    read!(
        aliases,
        align,
        cache_dma,
        cpu_slabs,
        destroy_by_rcu,
        hwcache_align,
        object_size,
        objects,
        objects_partial,
        objs_per_slab,
        order,
        partial,
        poison,
        reclaim_account,
        red_zone,
        sanity_checks,
        slab_size,
        slabs,
        store_user,
        trace,
        alloc_fastpath,
        alloc_slowpath,
        free_fastpath,
        free_slowpath,
        free_frozen,
        free_add_partial,
        free_remove_partial,
        alloc_from_partial,
        alloc_slab,
        alloc_refill,
        free_slab,
        cpuslab_flush,
        deactivate_full,
        deactivate_empty,
        deactivate_to_head,
        deactivate_to_tail,
        deactivate_remote_frees,
        order_fallback,
        cmpxchg_double_cpu_fail,
        cmpxchg_double_fail,
        cpu_partial_alloc,
        cpu_partial_free,
        alloc_node_mismatch,
        deactivate_bypass
    )
}

/// `read_slab_dir()`: directories (filtered by the pattern, except `:` ones) and links.
pub(super) fn read_slab_dir(
    mm: &Mm<SimPlatform>,
    pattern: &regex::Regex,
) -> (Vec<SlabDir>, Vec<Alias>) {
    let mut dirs = Vec::new();
    let mut links = Vec::new();
    let mut caches = Vec::new();
    mm.for_each_cache(|s| {
        caches.push((
            s.handle(),
            s.name().to_string(),
            mm.sysfs_slab_dir(s).to_string(),
        ));
        None::<()>
    });
    caches.reverse();
    for (r, name, dir) in &caches {
        if dir.starts_with(':') || pattern.is_match(dir) {
            dirs.push(read_dir(mm, dir, *r));
        }
        if dir != name && pattern.is_match(name) {
            links.push(Alias {
                name: name.clone(),
                target: dir.clone(),
            });
        }
    }
    let dir_of = |r: KmemCacheRef| caches.iter().find(|c| c.0 == r).map(|c| c.2.clone());
    mm.for_each_alias(|name, r| {
        if let Some(target) = dir_of(r)
            && pattern.is_match(name)
        {
            links.push(Alias {
                name: name.to_string(),
                target,
            });
        }
    });
    (dirs, links)
}
