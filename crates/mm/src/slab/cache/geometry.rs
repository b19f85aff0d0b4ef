//! A cache's geometry (`mm/slub.c` of Linux 6.6): the slab order (`calculate_order()`,
//! `calc_slab_order()`), object alignment (`calculate_alignment()`), the object layout with
//! its debug metadata (`calculate_sizes()`), and the per-CPU partial limits
//! (`set_cpu_partial()`).

use crate::addr::{fls, get_order, MAX_PAGE_ORDER, PAGE_SIZE};
use crate::slab::cache::OrderObjects;
use crate::slab::cache::CACHE_LINE;
use crate::slab::cache::MAX_OBJS_PER_PAGE;
use crate::slab::cache::PTR;
use crate::slab::cache::SLUB_MAX_ORDER;
use crate::slab::cache::TRACK_SIZE;
use crate::slab::SlabFlags;

/// `calculate_order()`: the smallest order (up to `slub_max_order`) whose slab holds at
/// least `min_objects` objects with little waste; fewer objects and more waste are
/// accepted step by step.
pub fn calculate_order(size: u32, nr_cpus: usize) -> Option<u32> {
    let mut min_objects = 4 * (fls(nr_cpus as u64) + 1);
    let max_objects = ((PAGE_SIZE as u32) << SLUB_MAX_ORDER) / size;
    min_objects = min_objects.min(max_objects);
    while min_objects > 1 {
        let mut fraction = 16;
        while fraction >= 4 {
            let order = calc_slab_order(size, min_objects, SLUB_MAX_ORDER, fraction);
            if order <= SLUB_MAX_ORDER {
                return Some(order);
            }
            fraction /= 2;
        }
        min_objects -= 1;
    }
    let order = calc_slab_order(size, 1, SLUB_MAX_ORDER, 1);
    if order <= SLUB_MAX_ORDER {
        return Some(order);
    }
    let order = calc_slab_order(size, 1, MAX_PAGE_ORDER, 1);
    (order <= MAX_PAGE_ORDER).then_some(order)
}

/// `calc_slab_order()`.
fn calc_slab_order(size: u32, min_objects: u32, max_order: u32, fract_leftover: u32) -> u32 {
    if (PAGE_SIZE as u32) / size > MAX_OBJS_PER_PAGE {
        return get_order(size as usize * MAX_OBJS_PER_PAGE as usize) - 1;
    }
    let mut order = get_order((min_objects * size) as usize);
    while order <= max_order {
        let slab_size = (PAGE_SIZE as u32) << order;
        if slab_size % size <= slab_size / fract_leftover {
            break;
        }
        order += 1;
    }
    order
}

/// The object layout `calculate_sizes()` computes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Flags, with `__OBJECT_POISON` decided.
    pub flags: SlabFlags,
    /// `s->size`.
    pub size: u32,
    /// `s->inuse`.
    pub inuse: u32,
    /// `s->offset`.
    pub offset: u32,
    /// `s->red_left_pad`.
    pub red_left_pad: u32,
    /// `s->oo`.
    pub oo: OrderObjects,
    /// `s->min`.
    pub min: OrderObjects,
}

/// `calculate_alignment()`.
pub fn calculate_alignment(flags: SlabFlags, align: u32, size: u32) -> u32 {
    let mut align = align.max(PTR);
    if flags.contains(SlabFlags::HWCACHE_ALIGN) {
        let mut ralign = CACHE_LINE;
        while size <= ralign / 2 {
            ralign /= 2;
        }
        align = align.max(ralign);
    }
    align.max(PTR).next_power_of_two()
}

/// `calculate_sizes()`: where the free pointer, red zones and tracks go, and the slab
/// order. `None` if no slab can hold an object.
pub fn calculate_sizes(
    object_size: u32,
    align: u32,
    mut flags: SlabFlags,
    has_ctor: bool,
    nr_cpus: usize,
) -> Option<Layout> {
    let mut size = object_size.div_ceil(PTR) * PTR;
    if flags.contains(SlabFlags::POISON) && !has_ctor {
        flags |= SlabFlags::OBJECT_POISON;
    } else {
        flags.remove(SlabFlags::OBJECT_POISON);
    }
    if flags.contains(SlabFlags::RED_ZONE) && size == object_size {
        size += PTR;
    }
    let inuse = size;
    let offset;
    if flags.contains(SlabFlags::POISON)
        || (flags.contains(SlabFlags::RED_ZONE) && object_size < PTR)
        || has_ctor
    {
        offset = size;
        size += PTR;
    } else {
        offset = (object_size / 2) / PTR * PTR;
    }
    if flags.contains(SlabFlags::STORE_USER) {
        size += 2 * TRACK_SIZE;
        if flags.contains(SlabFlags::KMALLOC) {
            size += 4; // the original request size
        }
    }
    let mut red_left_pad = 0;
    if flags.contains(SlabFlags::RED_ZONE) {
        size += PTR;
        red_left_pad = PTR.div_ceil(align) * align;
        size += red_left_pad;
    }
    size = size.div_ceil(align) * align;
    let order = calculate_order(size, nr_cpus)?;
    let oo = OrderObjects::make(order, size);
    (oo.objects > 0).then(|| Layout {
        flags,
        size,
        inuse,
        offset,
        red_left_pad,
        oo,
        min: OrderObjects::make(get_order(size as usize), size),
    })
}

/// `set_cpu_partial()`: how many slabs a CPU may keep on its partial list.
pub(super) fn cpu_partial_slabs(size: u32, objects: u32, debug: bool) -> u32 {
    (cpu_partial_objects(size, debug) * 2).div_ceil(objects.max(1))
}

/// `set_cpu_partial()`'s object count (`s->cpu_partial`, the sysfs `cpu_partial` file).
pub(crate) fn cpu_partial_objects(size: u32, debug: bool) -> u32 {
    if debug {
        return 0;
    }
    if size as usize >= PAGE_SIZE {
        6
    } else if size >= 1024 {
        24
    } else if size >= 256 {
        52
    } else {
        120
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/slabinfo` of a 128-CPU machine (`tests/data/proc/slabinfo`): objperslab and
    /// pagesperslab of the kmalloc caches.
    #[test]
    fn kmalloc_slab_geometry_matches_the_128_cpu_sample() {
        for (size, objs, pages) in [
            (8, 512, 1),
            (16, 256, 1),
            (32, 128, 1),
            (64, 64, 1),
            (96, 42, 1),
            (128, 64, 2),
            (192, 42, 2),
            (256, 64, 4),
            (512, 64, 8),
            (1024, 32, 8),
            (2048, 16, 8),
            (4096, 8, 8),
            (8192, 4, 8),
        ] {
            let l = calculate_sizes(size, 8, SlabFlags::KMALLOC, false, 128).unwrap();
            assert_eq!(
                (l.size, l.oo.objects, 1 << l.oo.order),
                (size, objs, pages),
                "kmalloc-{size}"
            );
        }
    }

    #[test]
    fn debug_layout_adds_red_zones_and_tracks() {
        let l = calculate_sizes(64, 8, SlabFlags::DEBUG | SlabFlags::KMALLOC, false, 4).unwrap();
        // 64 + right red zone 8 (inuse 72) + free pointer 8 + 2 tracks 64 + orig size 4
        // + left red zone 8 + 8, aligned to 8.
        assert_eq!(l.inuse, 72);
        assert_eq!(l.offset, 72);
        assert_eq!(l.red_left_pad, 8);
        assert_eq!(l.size, 168);
        assert!(l.flags.contains(SlabFlags::OBJECT_POISON));
        let plain = calculate_sizes(64, 8, SlabFlags::empty(), false, 4).unwrap();
        assert_eq!((plain.size, plain.offset), (64, 32));
    }
}
