//! Size-class recognition: when a trace's kmalloc `bytes_alloc` values are another
//! allocator's size classes (SLAB's, or a kernel with another `KMALLOC_MIN_SIZE`), infer
//! the classes from the trace's `(bytes_req → bytes_alloc)` pairs and say which
//! `--kmalloc-sizes` reproduces them, verified by the agreement it would give.
//!
//! A kmalloc of `n` bytes gets the smallest class of at least `n` bytes in every Linux
//! allocator (`kmalloc_index()` / `kmalloc_slab()`, Linux 6.6 mm/slab_common.c; SLAB's
//! `kmalloc_sizes.h` walk in 3.x): every class the trace shows is a traced
//! `bytes_alloc`, and a class no event landed in changes no event's size.

use serde::Serialize;

use kmemlab_mm::slab::kmalloc::{KmallocSizes, KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_CLASSES};
use kmemlab_mm::PAGE_SIZE;

/// A `--kmalloc-sizes` that reproduces the trace's kmalloc sizes better than the machine's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SizeClassHint {
    /// The inferred classes, ascending, ending at KMALLOC_MAX_CACHE_SIZE.
    pub sizes: Vec<usize>,
    /// kmalloc events whose `bytes_alloc` these classes give.
    pub agreed: u64,
    /// kmalloc events compared.
    pub checked: u64,
}

impl SizeClassHint {
    /// The flag, as typed: `--kmalloc-sizes 32,64,…,8192`.
    pub fn flag(&self) -> String {
        let list: Vec<String> = self.sizes.iter().map(|s| s.to_string()).collect();
        format!("--kmalloc-sizes {}", list.join(","))
    }
}

/// One kind of traced kmalloc: `(bytes_req, bytes_alloc, events)`.
pub type SizePair = (u64, u64, u64);

/// The classes the traced `bytes_alloc` values form, if they are valid kmemlab classes:
/// every `bytes_alloc` up to KMALLOC_MAX_CACHE_SIZE that could be a class (a multiple of
/// 8 at least its request), with KMALLOC_MAX_CACHE_SIZE added.
pub fn infer_classes(pairs: &[SizePair]) -> Option<Vec<usize>> {
    let mut sizes: Vec<usize> = pairs
        .iter()
        .filter(|&&(req, alloc, _)| {
            alloc >= req.max(1) && alloc <= KMALLOC_MAX_CACHE_SIZE as u64 && alloc % 8 == 0
        })
        .map(|&(_, alloc, _)| alloc as usize)
        .collect();
    sizes.push(KMALLOC_MAX_CACHE_SIZE);
    sizes.sort_unstable();
    sizes.dedup();
    (sizes.len() <= KMALLOC_MAX_CLASSES && KmallocSizes::new(&sizes).is_ok()).then_some(sizes)
}

/// What kmemlab's `ksize()` would be for a kmalloc of `req` bytes with these classes: the
/// smallest class that fits, or whole pages of a large kmalloc beyond the largest class
/// (`kmalloc_large()`: `PAGE_SIZE << get_order(size)`).
pub fn predicted_ksize(sizes: &[usize], req: u64) -> u64 {
    let req = req.max(1);
    match sizes.iter().find(|&&c| c as u64 >= req) {
        Some(&c) => c as u64,
        None => {
            let pages = req.div_ceil(PAGE_SIZE as u64);
            (PAGE_SIZE as u64) << pages.next_power_of_two().trailing_zeros()
        }
    }
}

/// Events of `pairs` whose traced `bytes_alloc` the classes `sizes` give.
pub fn agreement(sizes: &[usize], pairs: &[SizePair]) -> u64 {
    pairs
        .iter()
        .filter(|&&(req, alloc, _)| predicted_ksize(sizes, req) == alloc)
        .map(|&(_, _, n)| n)
        .sum()
}

/// The hint, when the trace's own classes agree with more events than the machine did
/// (`machine_agreed` of the same events).
pub fn hint(pairs: &[SizePair], machine_agreed: u64) -> Option<SizeClassHint> {
    let sizes = infer_classes(pairs)?;
    let agreed = agreement(&sizes, pairs);
    let checked = pairs.iter().map(|&(_, _, n)| n).sum();
    (agreed > machine_agreed).then_some(SizeClassHint {
        sizes,
        agreed,
        checked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_kmallocs_are_whole_pages_of_an_order() {
        let sizes = [32, 64, 8192];
        assert_eq!(predicted_ksize(&sizes, 1), 32);
        assert_eq!(predicted_ksize(&sizes, 33), 64);
        assert_eq!(predicted_ksize(&sizes, 8193), 16384);
        assert_eq!(predicted_ksize(&sizes, 20000), 32768);
    }

    #[test]
    fn classes_that_cannot_be_kmemlabs_give_no_hint() {
        // 100 is not a multiple of 8: no kmemlab class, and nothing agrees without it.
        assert_eq!(infer_classes(&[(90, 100, 5)]), Some(vec![8192]));
        assert_eq!(hint(&[(90, 100, 5)], 0), None);
        // bytes_alloc below its request is no class.
        assert_eq!(infer_classes(&[(90, 64, 5)]), Some(vec![8192]));
    }
}
