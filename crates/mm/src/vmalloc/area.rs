//! The vmap_area allocator of `mm/vmalloc.c` (since 5.2): free space in a red-black tree
//! augmented with the largest free block of each subtree, plus an address-ordered list;
//! the lowest-address fit in O(log n) (`find_vmap_lowest_match`), cut out of its block by
//! `adjust_va_to_fit_type`; freed space merged with its neighbours
//! (`merge_or_add_vmap_area`). Busy areas sit in a second tree for lookup by address, and
//! lazily freed ones in a third until they are purged.
//!
//! The nodes are slab objects in simulated RAM. Every link is checked before it is
//! followed ([`Mm::vmap_area`]: a direct-map address of RAM, aligned), every walk is
//! bounded by the nodes the tree could hold, and the list links get the kernel's
//! `CONFIG_DEBUG_LIST` checks (`lib/list_debug.c`), so corruption is reported as the
//! kernel would report it and the operation stops, instead of a host fault or a hang.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use zerocopy::FromBytes;

use super::rbtree::{self, Corrupt, RbOps, RbResult, Steps, NIL};
use crate::addr::PAGE_SIZE;
use crate::platform::Platform;
use crate::Mm;

/// `struct vmap_area`, a slab object of the `vmap_area` cache. All atomics: another CPU's
/// reader may look at it while the owner of the tree's lock updates it.
#[repr(C)]
#[derive(Default, FromBytes)]
pub struct VmapArea {
    /// First address.
    pub va_start: AtomicU64,
    /// One past the last address (the guard page included).
    pub va_end: AtomicU64,
    /// `rb_node.__rb_parent_color`.
    rb_parent_color: AtomicU64,
    /// `rb_node.rb_right`.
    rb_right: AtomicU64,
    /// `rb_node.rb_left`.
    rb_left: AtomicU64,
    /// `list.next`.
    list_next: AtomicU64,
    /// `list.prev`.
    list_prev: AtomicU64,
    /// The union of `subtree_max_size` (in the free tree) and `vm` (in the busy tree).
    pub subtree_max_size_or_vm: AtomicU64,
    /// `flags`: `VMAP_RAM` for `vm_map_ram` areas.
    pub flags: AtomicU64,
}

/// `VMAP_RAM`: the area was made by `vm_map_ram` and has no `vm_struct`.
pub const VMAP_RAM: u64 = 0x1;

/// kmemlab's own flag, outside the kernel's `VMAP_FLAGS_MASK` (0x3): a bare area reserved
/// by [`Mm::reserve_vmap_area`](crate::Mm::reserve_vmap_area) for trace replay, which has
/// neither pages nor a mapping (it is also `VMAP_RAM`, so it is given back as one).
pub const VMAP_BARE: u64 = 0x100;

impl VmapArea {
    /// `va_size()`; 0 for a node whose end lies below its start (only corruption makes
    /// one, and an empty block is never chosen).
    pub fn size(&self) -> u64 {
        self.va_end
            .load(Relaxed)
            .saturating_sub(self.va_start.load(Relaxed))
    }
    /// `va_start`.
    pub fn start(&self) -> u64 {
        self.va_start.load(Relaxed)
    }
    /// `va_end`.
    pub fn end(&self) -> u64 {
        self.va_end.load(Relaxed)
    }
    /// The next area on its list.
    pub(in crate::vmalloc) fn list_next(&self) -> u64 {
        self.list_next.load(Relaxed)
    }
    /// The previous area on its list.
    pub(in crate::vmalloc) fn list_prev(&self) -> u64 {
        self.list_prev.load(Relaxed)
    }
}

/// One tree of areas with its address-ordered list (`rb_root` + `list_head`). The roots
/// and counts are kernel statics (host memory); the nodes are in RAM.
#[derive(Debug, Default)]
pub struct VmapTree {
    /// The root node.
    pub(in crate::vmalloc) root: u64,
    /// The lowest area.
    pub(in crate::vmalloc) first: u64,
    /// The highest area.
    pub(in crate::vmalloc) last: u64,
    /// Areas in the tree.
    pub(in crate::vmalloc) count: u64,
    /// Whether nodes carry `subtree_max_size` (the free tree only).
    pub(in crate::vmalloc) augmented: bool,
    /// The tree's lock, named in a soft-lockup report.
    pub(in crate::vmalloc) lock_name: &'static str,
}

impl VmapTree {
    /// An empty tree under the lock `lock_name`.
    pub(in crate::vmalloc) const fn new(augmented: bool, lock_name: &'static str) -> VmapTree {
        VmapTree {
            root: NIL,
            first: NIL,
            last: NIL,
            count: 0,
            augmented,
            lock_name,
        }
    }

    /// The most nodes a walk of this tree may visit: twice the areas counted in it plus
    /// slack, so an operation caught between its link and its count never trips it, while
    /// a cycle is caught after a bounded number of steps.
    pub(in crate::vmalloc) fn walk_limit(&self) -> u64 {
        self.count.saturating_mul(2).saturating_add(16)
    }
}

/// The node accessors for one tree, resolving node addresses in the direct map.
pub(in crate::vmalloc) struct Nodes<'a, P: Platform> {
    pub(in crate::vmalloc) mm: &'a Mm<P>,
    pub(in crate::vmalloc) augmented: bool,
    /// Nodes a walk may visit ([`VmapTree::walk_limit`]).
    limit: u64,
    /// The lock a stuck walk holds.
    lock_name: &'static str,
    /// The checker's view: failures are returned, not reported.
    quiet: bool,
}

impl<P: Platform> Nodes<'_, P> {
    /// The `vmap_area` at `va`, checked.
    #[inline]
    pub(in crate::vmalloc) fn va(&self, va: u64) -> RbResult<&VmapArea> {
        if self.quiet {
            self.mm.peek_vmap_area(va).ok_or(Corrupt { addr: va })
        } else {
            self.mm.vmap_area(va)
        }
    }

    pub(in crate::vmalloc) fn subtree_max(&self, n: u64) -> RbResult<u64> {
        if n == NIL {
            Ok(0)
        } else {
            Ok(self.va(n)?.subtree_max_size_or_vm.load(Relaxed))
        }
    }
}

impl<P: Platform> RbOps for Nodes<'_, P> {
    fn parent_color(&self, n: u64) -> RbResult<u64> {
        Ok(self.va(n)?.rb_parent_color.load(Relaxed))
    }
    fn set_parent_color(&self, n: u64, pc: u64) -> RbResult<()> {
        self.va(n)?.rb_parent_color.store(pc, Relaxed);
        Ok(())
    }
    fn left(&self, n: u64) -> RbResult<u64> {
        Ok(self.va(n)?.rb_left.load(Relaxed))
    }
    fn right(&self, n: u64) -> RbResult<u64> {
        Ok(self.va(n)?.rb_right.load(Relaxed))
    }
    fn set_left(&self, n: u64, c: u64) -> RbResult<()> {
        self.va(n)?.rb_left.store(c, Relaxed);
        Ok(())
    }
    fn set_right(&self, n: u64, c: u64) -> RbResult<()> {
        self.va(n)?.rb_right.store(c, Relaxed);
        Ok(())
    }
    /// `compute_subtree_max_size()`.
    fn recompute(&self, n: u64) -> RbResult<bool> {
        if !self.augmented {
            return Ok(false);
        }
        let node = self.va(n)?;
        let max = node
            .size()
            .max(self.subtree_max(self.left(n)?)?)
            .max(self.subtree_max(self.right(n)?)?);
        Ok(node.subtree_max_size_or_vm.swap(max, Relaxed) != max)
    }
    fn max_steps(&self) -> u64 {
        self.limit
    }
    fn stuck(&self, n: u64) -> Corrupt {
        if !self.quiet {
            self.mm.vmalloc_stuck(self.lock_name);
        }
        Corrupt { addr: n }
    }
}

/// How an allocation fits the free block it is cut from (`enum fit_type`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum FitType {
    /// The whole block.
    Full,
    /// Its left edge.
    LeftEdge,
    /// Its right edge.
    RightEdge,
    /// Its middle: the block splits in two.
    NoEdge,
}

/// `lib/list_debug.c` of 6.6 (`__list_add_valid_or_report`,
/// `__list_del_entry_valid_or_report`): the line of each `CHECK_DATA_CORRUPTION`, which
/// (without `CONFIG_BUG_ON_DATA_CORRUPTION`) is a `WARN` and skips the list operation.
/// The add checks are at these lines in 6.6.63's file (line 29 is also confirmed by a
/// 6.9 report).
mod list_debug {
    /// `prev->next != next` in `__list_add_valid_or_report`.
    pub const ADD_PREV_NEXT: u32 = 32;
    /// `new == prev || new == next`.
    pub const ADD_DOUBLE: u32 = 35;
    /// The two checks of `__list_del_entry_valid_or_report`, as the page lists have them.
    pub(crate) use crate::memory_model::{
        LIST_DEL_NEXT_PREV_LINE as DEL_NEXT_PREV, LIST_DEL_PREV_NEXT_LINE as DEL_PREV_NEXT,
    };
}

impl<P: Platform> Mm<P> {
    /// The `vmap_area` at kernel address `va`: a direct-map address of RAM, aligned for
    /// the structure. Anything else is what the kernel would fault on: reported as that
    /// fault (an oops), and the operation stops.
    #[inline]
    pub(in crate::vmalloc) fn vmap_area(&self, va: u64) -> RbResult<&VmapArea> {
        match self.kview::<VmapArea>(va) {
            Ok(node) => Ok(node),
            Err(_) => Err(self.vmalloc_fault(va, false)),
        }
    }

    /// The `vmap_area` at `va` if it can be read, reporting nothing (for the checker).
    pub(in crate::vmalloc) fn peek_vmap_area(&self, va: u64) -> Option<&VmapArea> {
        self.kview::<VmapArea>(va).ok()
    }

    pub(in crate::vmalloc) fn nodes(&self, tree: &VmapTree) -> Nodes<'_, P> {
        Nodes {
            mm: self,
            augmented: tree.augmented,
            limit: tree.walk_limit(),
            lock_name: tree.lock_name,
            quiet: false,
        }
    }

    /// The checker's accessors: nothing is reported, failures are returned.
    pub(in crate::vmalloc) fn quiet_nodes(&self, tree: &VmapTree) -> Nodes<'_, P> {
        Nodes {
            quiet: true,
            ..self.nodes(tree)
        }
    }

    /// `find_va_links()`: where an area `[start, end)` would hang in `tree`, or `None` if
    /// it overlaps an area already there (the kernel's "vmalloc bug" warning).
    fn find_va_links(
        &self,
        tree: &VmapTree,
        start: u64,
        end: u64,
    ) -> RbResult<Option<(u64, bool)>> {
        let o = self.nodes(tree);
        let mut steps = Steps::new(&o);
        let (mut parent, mut left) = (NIL, false);
        let mut cur = tree.root;
        while cur != NIL {
            steps.take(&o, cur)?;
            let t = o.va(cur)?;
            parent = cur;
            if end <= t.start() {
                left = true;
                cur = o.left(cur)?;
            } else if start >= t.end() {
                left = false;
                cur = o.right(cur)?;
            } else {
                self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
                // 6.6 `find_va_links()`: `WARN(1, "vmalloc bug: 0x%lx-0x%lx overlaps with …")`.
                const SITE: crate::report::KernelSite = crate::report::KernelSite {
                    file: "mm/vmalloc.c",
                    line: 895,
                    func: "find_va_links",
                };
                crate::report::warn!(
                    self,
                    true,
                    SITE,
                    "vmalloc bug: 0x{:x}-0x{:x} overlaps with 0x{:x}-0x{:x}",
                    start,
                    end,
                    t.start(),
                    t.end()
                );
                return Ok(None);
            }
        }
        Ok(Some((parent, left)))
    }

    /// `get_va_next_sibling()`: the list entry that follows a node hung at `(parent, left)`.
    fn next_sibling(&self, parent: u64, left: bool) -> RbResult<u64> {
        if parent == NIL {
            return Ok(NIL);
        }
        if left {
            Ok(parent)
        } else {
            Ok(self.vmap_area(parent)?.list_next())
        }
    }

    /// The `list.next` of `prev`, or the list head's (`tree.first`) when `prev` is NULL.
    fn next_of(&self, tree: &VmapTree, prev: u64) -> RbResult<u64> {
        if prev == NIL {
            Ok(tree.first)
        } else {
            Ok(self.vmap_area(prev)?.list_next())
        }
    }

    /// The `list.prev` of `next`, or the list head's (`tree.last`) when `next` is NULL.
    fn prev_of(&self, tree: &VmapTree, next: u64) -> RbResult<u64> {
        if next == NIL {
            Ok(tree.last)
        } else {
            Ok(self.vmap_area(next)?.list_prev())
        }
    }

    /// `__link_va()`: hang `va` in the tree and the list.
    fn link_va(&self, tree: &mut VmapTree, va: u64, parent: u64, left: bool) -> RbResult<()> {
        let next = self.next_sibling(parent, left)?;
        let node = self.vmap_area(va)?;
        if tree.augmented {
            node.subtree_max_size_or_vm.store(node.size(), Relaxed);
        }
        let o = self.nodes(tree);
        rbtree::insert(&o, va, parent, left, &mut tree.root)?;
        tree.count += 1;
        // list_add(&va->list, prev): before `next`, or at the tail.
        let prev = self.prev_of(tree, next)?;
        self.list_add(tree, va, prev, next)
    }

    /// `list_add()` between `prev` and `next`, after `__list_add_valid_or_report()`'s
    /// checks: a list whose links disagree is reported and left as it is.
    fn list_add(&self, tree: &mut VmapTree, va: u64, prev: u64, next: u64) -> RbResult<()> {
        let prev_next = self.next_of(tree, prev)?;
        if prev_next != next {
            self.list_corruption(
                list_debug::ADD_PREV_NEXT,
                "__list_add_valid_or_report",
                format_args!(
                    "list_add corruption. prev->next should be next ({next:016x}), but was {prev_next:016x}. (prev={prev:016x})."
                ),
            );
            return Ok(());
        }
        if va == prev || va == next {
            self.list_corruption(
                list_debug::ADD_DOUBLE,
                "__list_add_valid_or_report",
                format_args!(
                    "list_add double add: new={va:016x}, prev={prev:016x}, next={next:016x}."
                ),
            );
            return Ok(());
        }
        let node = self.vmap_area(va)?;
        node.list_prev.store(prev, Relaxed);
        node.list_next.store(next, Relaxed);
        match prev {
            NIL => tree.first = va,
            p => self.vmap_area(p)?.list_next.store(va, Relaxed),
        }
        match next {
            NIL => tree.last = va,
            n => self.vmap_area(n)?.list_prev.store(va, Relaxed),
        }
        Ok(())
    }

    /// `__unlink_va()`: take `va` out of the tree and the list.
    pub(in crate::vmalloc) fn unlink_va(&self, tree: &mut VmapTree, va: u64) -> RbResult<()> {
        let o = self.nodes(tree);
        rbtree::erase(&o, va, &mut tree.root)?;
        tree.count = tree.count.saturating_sub(1);
        self.list_del(tree, va)
    }

    /// `list_del_init()` after `__list_del_entry_valid_or_report()`'s checks: each
    /// neighbour must point back at the entry, else the corruption is reported and the
    /// entry left where it is.
    fn list_del(&self, tree: &mut VmapTree, va: u64) -> RbResult<()> {
        let node = self.vmap_area(va)?;
        let (prev, next) = (node.list_prev(), node.list_next());
        let prev_next = self.next_of(tree, prev)?;
        if prev_next != va {
            self.list_corruption(
                list_debug::DEL_PREV_NEXT,
                "__list_del_entry_valid_or_report",
                format_args!(
                    "list_del corruption. prev->next should be {va:016x}, but was {prev_next:016x}. (prev={prev:016x})"
                ),
            );
            return Ok(());
        }
        let next_prev = self.prev_of(tree, next)?;
        if next_prev != va {
            self.list_corruption(
                list_debug::DEL_NEXT_PREV,
                "__list_del_entry_valid_or_report",
                format_args!(
                    "list_del corruption. next->prev should be {va:016x}, but was {next_prev:016x}. (next={next:016x})"
                ),
            );
            return Ok(());
        }
        match prev {
            NIL => tree.first = next,
            p => self.vmap_area(p)?.list_next.store(next, Relaxed),
        }
        match next {
            NIL => tree.last = prev,
            n => self.vmap_area(n)?.list_prev.store(prev, Relaxed),
        }
        node.list_prev.store(NIL, Relaxed);
        node.list_next.store(NIL, Relaxed);
        Ok(())
    }

    /// `CHECK_DATA_CORRUPTION()`'s `WARN(1, fmt)` in `lib/list_debug.c`.
    fn list_corruption(&self, line: u32, func: &str, msg: core::fmt::Arguments<'_>) {
        self.vmalloc.stats.bugs.fetch_add(1, Relaxed);
        self.warn_report("lib/list_debug.c", line, func, msg);
    }

    /// `insert_vmap_area()`: add `va` to a tree without merging; false if it overlaps.
    pub(in crate::vmalloc) fn insert_vmap_area(
        &self,
        tree: &mut VmapTree,
        va: u64,
    ) -> RbResult<bool> {
        let node = self.vmap_area(va)?;
        match self.find_va_links(tree, node.start(), node.end())? {
            Some((parent, left)) => {
                self.link_va(tree, va, parent, left)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// `merge_or_add_vmap_area()`: give `[va)` back to a tree of free space, merged with
    /// the neighbours it touches (whose `vmap_area` objects are freed). Returns the area
    /// that now holds the space, or `None` if it overlapped (a bug, already reported).
    pub(in crate::vmalloc) fn merge_or_add_vmap_area(
        &self,
        tree: &mut VmapTree,
        va: u64,
    ) -> RbResult<Option<u64>> {
        let node = self.vmap_area(va)?;
        let (start, end) = (node.start(), node.end());
        let Some((parent, left)) = self.find_va_links(tree, start, end)? else {
            return Ok(None);
        };
        let next = self.next_sibling(parent, left)?;
        let mut merged = NIL;
        // The right neighbour starts where va ends.
        if next != NIL && self.vmap_area(next)?.start() == end {
            self.vmap_area(next)?.va_start.store(start, Relaxed);
            self.free_vmap_area_object(va);
            merged = next;
        }
        // The left neighbour ends where va (or the merged block) starts.
        let prev = self.prev_of(tree, next)?;
        if prev != NIL && self.vmap_area(prev)?.end() == start {
            let block_end = if merged != NIL {
                self.vmap_area(merged)?.end()
            } else {
                end
            };
            if merged != NIL {
                // Unlink the right neighbour first, then grow the left one over both.
                self.unlink_va(tree, merged)?;
                self.free_vmap_area_object(merged);
            } else {
                self.free_vmap_area_object(va);
            }
            self.vmap_area(prev)?.va_end.store(block_end, Relaxed);
            merged = prev;
        }
        if merged == NIL {
            self.link_va(tree, va, parent, left)?;
            return Ok(Some(va));
        }
        // augment_tree_propagate_from(): the merged block grew.
        rbtree::propagate(&self.nodes(tree), merged)?;
        Ok(Some(merged))
    }

    /// `find_vmap_lowest_match()`: the lowest free block in which `size` bytes aligned to
    /// `align` fit at or above `vstart`, in O(log n) steps down the augmented tree.
    fn find_vmap_lowest_match(
        &self,
        tree: &VmapTree,
        size: u64,
        align: u64,
        mut vstart: u64,
        adjust_search_size: bool,
    ) -> RbResult<u64> {
        let o = self.nodes(tree);
        // Each node is passed at most once going down and once climbing back.
        let mut steps = Steps::new(&o);
        // Alignment costs up to align - 1 bytes of the block.
        let length = if adjust_search_size {
            size.saturating_add(align - 1)
        } else {
            size
        };
        let mut node = tree.root;
        while node != NIL {
            steps.take(&o, node)?;
            let va = o.va(node)?;
            let left = o.left(node)?;
            if o.subtree_max(left)? >= length && vstart < va.start() {
                node = left;
                continue;
            }
            if is_within_this_va(va, size, align, vstart) {
                return Ok(node);
            }
            // Go right only if a big enough block is down there.
            let right = o.right(node)?;
            if o.subtree_max(right)? >= length {
                node = right;
                continue;
            }
            // Climb back to the first ancestor whose right subtree can still serve; the
            // vstart limit or alignment slack sent us into a subtree that could not.
            loop {
                node = rbtree::parent(&o, node)?;
                if node == NIL {
                    return Ok(NIL);
                }
                steps.take(&o, node)?;
                let va = o.va(node)?;
                if is_within_this_va(va, size, align, vstart) {
                    return Ok(node);
                }
                let right = o.right(node)?;
                if o.subtree_max(right)? >= length && vstart <= va.start() {
                    // Past this node's start, so the subtree just searched is not entered again.
                    vstart = va.start().saturating_add(1);
                    node = right;
                    break;
                }
            }
        }
        Ok(NIL)
    }

    /// `__alloc_vmap_area()`: carve `[addr, addr + size)` out of the free tree, lowest
    /// address first, within `[vstart, vend)`. `spare` is a preloaded `vmap_area` for the
    /// case where a block splits in two (`ne_fit_preload_node`); it is taken (set to 0)
    /// if used. Returns `vend` when nothing fits, as the kernel does.
    pub(in crate::vmalloc) fn alloc_from_free_tree(
        &self,
        tree: &mut VmapTree,
        size: u64,
        align: u64,
        vstart: u64,
        vend: u64,
        spare: &mut u64,
    ) -> RbResult<u64> {
        // No alignment slack to search for when the alignment is at most a page, or when
        // the request covers the whole [vstart, vend) range.
        let adjust = !(align <= PAGE_SIZE as u64 || vend - vstart == size);
        let va = self.find_vmap_lowest_match(tree, size, align, vstart, adjust)?;
        if va == NIL {
            return Ok(vend);
        }
        let node = self.vmap_area(va)?;
        let nva_start = if node.start() > vstart {
            align_up(node.start(), align)
        } else {
            align_up(vstart, align)
        };
        if nva_start.checked_add(size).is_none_or(|end| end > vend) {
            return Ok(vend);
        }
        if !self.adjust_va_to_fit_type(tree, va, nva_start, size, spare)? {
            return Ok(vend);
        }
        Ok(nva_start)
    }

    /// `adjust_va_to_fit_type()`: shrink, split or remove the free block `va` so that it
    /// no longer covers `[nva_start, nva_start + size)`.
    fn adjust_va_to_fit_type(
        &self,
        tree: &mut VmapTree,
        va: u64,
        nva_start: u64,
        size: u64,
        spare: &mut u64,
    ) -> RbResult<bool> {
        let node = self.vmap_area(va)?;
        let (start, end) = (node.start(), node.end());
        // The block was found to hold [nva_start, nva_start + size) (is_within_this_va).
        let nva_end = nva_start + size;
        let fit = match (start == nva_start, end == nva_end) {
            (true, true) => FitType::Full,
            (true, false) => FitType::LeftEdge,
            (false, true) => FitType::RightEdge,
            (false, false) => FitType::NoEdge,
        };
        match fit {
            FitType::Full => {
                self.unlink_va(tree, va)?;
                self.free_vmap_area_object(va);
                return Ok(true);
            }
            FitType::LeftEdge => node.va_start.store(nva_end, Relaxed),
            FitType::RightEdge => node.va_end.store(nva_start, Relaxed),
            FitType::NoEdge => {
                if *spare == NIL {
                    return Ok(false);
                }
                let lva = core::mem::replace(spare, NIL);
                let l = self.vmap_area(lva)?;
                l.va_start.store(start, Relaxed);
                l.va_end.store(nva_start, Relaxed);
                l.flags.store(0, Relaxed);
                node.va_start.store(nva_end, Relaxed);
                // The left part is hung just before va (insert_vmap_area_augment with
                // va as the "from" node). If it overlaps something (only corruption can
                // make it), the kernel warns and leaves it out, as here.
                rbtree::propagate(&self.nodes(tree), va)?;
                self.insert_vmap_area(tree, lva)?;
                return Ok(true);
            }
        }
        // augment_tree_propagate_from(): the block shrank.
        rbtree::propagate(&self.nodes(tree), va)?;
        Ok(true)
    }

    /// `__find_vmap_area()`: the area of `tree` that contains `addr`.
    pub(in crate::vmalloc) fn find_area_containing(
        &self,
        tree: &VmapTree,
        addr: u64,
    ) -> RbResult<u64> {
        self.find_area_in(&self.nodes(tree), tree.root, addr)
    }

    /// `__find_vmap_area()` through the given accessors.
    pub(in crate::vmalloc) fn find_area_in(
        &self,
        o: &Nodes<'_, P>,
        root: u64,
        addr: u64,
    ) -> RbResult<u64> {
        let mut steps = Steps::new(o);
        let mut cur = root;
        while cur != NIL {
            steps.take(o, cur)?;
            let va = o.va(cur)?;
            if addr < va.start() {
                cur = o.left(cur)?;
            } else if addr >= va.end() {
                cur = o.right(cur)?;
            } else {
                return Ok(cur);
            }
        }
        Ok(NIL)
    }
}

/// `is_within_this_va()`.
fn is_within_this_va(va: &VmapArea, size: u64, align: u64, vstart: u64) -> bool {
    let nva_start = if va.start() > vstart {
        align_up(va.start(), align)
    } else {
        align_up(vstart, align)
    };
    let Some(end) = nva_start.checked_add(size) else {
        return false;
    };
    nva_start >= vstart && end <= va.end()
}

/// `ALIGN()`, saturating instead of wrapping near the top of the address space.
fn align_up(x: u64, align: u64) -> u64 {
    x.checked_add(align - 1)
        .map_or(!(align - 1), |v| v & !(align - 1))
}
