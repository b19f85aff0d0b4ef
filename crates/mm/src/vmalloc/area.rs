//! The vmap_area allocator of `mm/vmalloc.c` (since 5.2): free space in a red-black tree
//! augmented with the largest free block of each subtree, plus an address-ordered list;
//! the lowest-address fit in O(log n) (`find_vmap_lowest_match`), cut out of its block by
//! `adjust_va_to_fit_type`; freed space merged with its neighbours
//! (`merge_or_add_vmap_area`). Busy areas sit in a second tree for lookup by address, and
//! lazily freed ones in a third until they are purged.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::rbtree::{self, RbOps, NIL};
use crate::addr::PAGE_SIZE;
use crate::platform::Platform;
use crate::Mm;

/// `struct vmap_area`, a slab object of the `vmap_area` cache. All atomics: another CPU's
/// reader may look at it while the owner of the tree's lock updates it.
#[repr(C)]
#[derive(Default)]
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

impl VmapArea {
    /// `va_size()`.
    pub fn size(&self) -> u64 {
        self.va_end.load(Relaxed) - self.va_start.load(Relaxed)
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
    pub(crate) fn list_next(&self) -> u64 {
        self.list_next.load(Relaxed)
    }
}

/// One tree of areas with its address-ordered list (`rb_root` + `list_head`).
#[derive(Debug, Default)]
pub struct VmapTree {
    /// The root node.
    pub(crate) root: u64,
    /// The lowest area.
    pub(crate) first: u64,
    /// The highest area.
    pub(crate) last: u64,
    /// Areas in the tree.
    pub(crate) count: u64,
    /// Whether nodes carry `subtree_max_size` (the free tree only).
    pub(crate) augmented: bool,
}

impl VmapTree {
    /// An empty tree.
    pub(crate) const fn new(augmented: bool) -> VmapTree {
        VmapTree {
            root: NIL,
            first: NIL,
            last: NIL,
            count: 0,
            augmented,
        }
    }
}

/// The node accessors for one tree, resolving node addresses in the direct map.
pub(crate) struct Nodes<'a, P: Platform> {
    pub(crate) mm: &'a Mm<P>,
    pub(crate) augmented: bool,
}

impl<P: Platform> Nodes<'_, P> {
    /// The `vmap_area` at `va`.
    #[inline]
    pub(crate) fn va(&self, va: u64) -> &VmapArea {
        self.mm.vmap_area(va)
    }

    fn subtree_max(&self, n: u64) -> u64 {
        if n == NIL {
            0
        } else {
            self.va(n).subtree_max_size_or_vm.load(Relaxed)
        }
    }
}

impl<P: Platform> RbOps for Nodes<'_, P> {
    fn parent_color(&self, n: u64) -> u64 {
        self.va(n).rb_parent_color.load(Relaxed)
    }
    fn set_parent_color(&self, n: u64, pc: u64) {
        self.va(n).rb_parent_color.store(pc, Relaxed)
    }
    fn left(&self, n: u64) -> u64 {
        self.va(n).rb_left.load(Relaxed)
    }
    fn right(&self, n: u64) -> u64 {
        self.va(n).rb_right.load(Relaxed)
    }
    fn set_left(&self, n: u64, c: u64) {
        self.va(n).rb_left.store(c, Relaxed)
    }
    fn set_right(&self, n: u64, c: u64) {
        self.va(n).rb_right.store(c, Relaxed)
    }
    /// `compute_subtree_max_size()`.
    fn recompute(&self, n: u64) -> bool {
        if !self.augmented {
            return false;
        }
        let node = self.va(n);
        let max = node
            .size()
            .max(self.subtree_max(self.left(n)))
            .max(self.subtree_max(self.right(n)));
        node.subtree_max_size_or_vm.swap(max, Relaxed) != max
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

impl<P: Platform> Mm<P> {
    /// The `vmap_area` at kernel address `va` (a live object of the `vmap_area` cache).
    #[inline]
    pub(crate) fn vmap_area(&self, va: u64) -> &VmapArea {
        self.kernel_struct(va)
    }

    pub(crate) fn nodes(&self, tree: &VmapTree) -> Nodes<'_, P> {
        Nodes {
            mm: self,
            augmented: tree.augmented,
        }
    }

    /// `find_va_links()`: where an area `[start, end)` would hang in `tree`, or `None` if
    /// it overlaps an area already there (the kernel's "vmalloc bug" warning).
    fn find_va_links(&self, tree: &VmapTree, start: u64, end: u64) -> Option<(u64, bool)> {
        let o = self.nodes(tree);
        let (mut parent, mut left) = (NIL, false);
        let mut cur = tree.root;
        while cur != NIL {
            let t = o.va(cur);
            parent = cur;
            if end <= t.start() {
                left = true;
                cur = o.left(cur);
            } else if start >= t.end() {
                left = false;
                cur = o.right(cur);
            } else {
                self.printk(format_args!(
                    "WARNING: vmalloc bug: 0x{:x}-0x{:x} overlaps with 0x{:x}-0x{:x}",
                    start,
                    end,
                    t.start(),
                    t.end()
                ));
                return None;
            }
        }
        Some((parent, left))
    }

    /// `get_va_next_sibling()`: the list entry that follows a node hung at `(parent, left)`.
    fn next_sibling(&self, parent: u64, left: bool) -> u64 {
        if parent == NIL {
            return NIL;
        }
        if left {
            parent
        } else {
            self.vmap_area(parent).list_next.load(Relaxed)
        }
    }

    /// `__link_va()`: hang `va` in the tree and the list.
    fn link_va(&self, tree: &mut VmapTree, va: u64, parent: u64, left: bool) {
        let next = self.next_sibling(parent, left);
        let node = self.vmap_area(va);
        if tree.augmented {
            node.subtree_max_size_or_vm.store(node.size(), Relaxed);
        }
        let o = self.nodes(tree);
        rbtree::insert(&o, va, parent, left, &mut tree.root);
        // list_add(&va->list, prev): before `next`, or at the tail.
        let prev = if next == NIL {
            tree.last
        } else {
            self.vmap_area(next).list_prev.load(Relaxed)
        };
        node.list_prev.store(prev, Relaxed);
        node.list_next.store(next, Relaxed);
        match prev {
            NIL => tree.first = va,
            p => self.vmap_area(p).list_next.store(va, Relaxed),
        }
        match next {
            NIL => tree.last = va,
            n => self.vmap_area(n).list_prev.store(va, Relaxed),
        }
        tree.count += 1;
    }

    /// `__unlink_va()`: take `va` out of the tree and the list.
    pub(crate) fn unlink_va(&self, tree: &mut VmapTree, va: u64) {
        let o = self.nodes(tree);
        rbtree::erase(&o, va, &mut tree.root);
        let node = self.vmap_area(va);
        let (prev, next) = (node.list_prev.load(Relaxed), node.list_next.load(Relaxed));
        match prev {
            NIL => tree.first = next,
            p => self.vmap_area(p).list_next.store(next, Relaxed),
        }
        match next {
            NIL => tree.last = prev,
            n => self.vmap_area(n).list_prev.store(prev, Relaxed),
        }
        node.list_prev.store(NIL, Relaxed);
        node.list_next.store(NIL, Relaxed);
        tree.count -= 1;
    }

    /// `insert_vmap_area()`: add `va` to a tree without merging; false if it overlaps.
    pub(crate) fn insert_vmap_area(&self, tree: &mut VmapTree, va: u64) -> bool {
        let node = self.vmap_area(va);
        match self.find_va_links(tree, node.start(), node.end()) {
            Some((parent, left)) => {
                self.link_va(tree, va, parent, left);
                true
            }
            None => false,
        }
    }

    /// `merge_or_add_vmap_area()`: give `[va)` back to a tree of free space, merged with
    /// the neighbours it touches (whose `vmap_area` objects are freed). Returns the area
    /// that now holds the space, or `None` if it overlapped (a bug, already reported).
    pub(crate) fn merge_or_add_vmap_area(&self, tree: &mut VmapTree, va: u64) -> Option<u64> {
        let node = self.vmap_area(va);
        let (start, end) = (node.start(), node.end());
        let (parent, left) = self.find_va_links(tree, start, end)?;
        let next = self.next_sibling(parent, left);
        let mut merged = NIL;
        // The right neighbour starts where va ends.
        if next != NIL && self.vmap_area(next).start() == end {
            self.vmap_area(next).va_start.store(start, Relaxed);
            self.free_vmap_area_object(va);
            merged = next;
        }
        // The left neighbour ends where va (or the merged block) starts.
        let prev = if next == NIL {
            tree.last
        } else {
            self.vmap_area(next).list_prev.load(Relaxed)
        };
        if prev != NIL && self.vmap_area(prev).end() == start {
            let block_end = if merged != NIL {
                self.vmap_area(merged).end()
            } else {
                end
            };
            if merged != NIL {
                // Unlink the right neighbour first, then grow the left one over both.
                self.unlink_va(tree, merged);
                self.free_vmap_area_object(merged);
            } else {
                self.free_vmap_area_object(va);
            }
            self.vmap_area(prev).va_end.store(block_end, Relaxed);
            merged = prev;
        }
        if merged == NIL {
            self.link_va(tree, va, parent, left);
            return Some(va);
        }
        // augment_tree_propagate_from(): the merged block grew.
        rbtree::propagate(&self.nodes(tree), merged);
        Some(merged)
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
    ) -> u64 {
        let o = self.nodes(tree);
        // Alignment costs up to align - 1 bytes of the block.
        let length = if adjust_search_size {
            size + align - 1
        } else {
            size
        };
        let mut node = tree.root;
        while node != NIL {
            let va = o.va(node);
            if o.subtree_max(o.left(node)) >= length && vstart < va.start() {
                node = o.left(node);
                continue;
            }
            if is_within_this_va(va, size, align, vstart) {
                return node;
            }
            // Go right only if a big enough block is down there.
            if o.subtree_max(o.right(node)) >= length {
                node = o.right(node);
                continue;
            }
            // Climb back to the first ancestor whose right subtree can still serve; the
            // vstart limit or alignment slack sent us into a subtree that could not.
            loop {
                node = rbtree::parent(&o, node);
                if node == NIL {
                    return NIL;
                }
                let va = o.va(node);
                if is_within_this_va(va, size, align, vstart) {
                    return node;
                }
                if o.subtree_max(o.right(node)) >= length && vstart <= va.start() {
                    // Past this node's start, so the subtree just searched is not entered again.
                    vstart = va.start() + 1;
                    node = o.right(node);
                    break;
                }
            }
        }
        NIL
    }

    /// `__alloc_vmap_area()`: carve `[addr, addr + size)` out of the free tree, lowest
    /// address first, within `[vstart, vend)`. `spare` is a preloaded `vmap_area` for the
    /// case where a block splits in two (`ne_fit_preload_node`); it is taken (set to 0)
    /// if used. Returns `vend` when nothing fits, as the kernel does.
    pub(crate) fn alloc_from_free_tree(
        &self,
        tree: &mut VmapTree,
        size: u64,
        align: u64,
        vstart: u64,
        vend: u64,
        spare: &mut u64,
    ) -> u64 {
        // No alignment slack to search for when the alignment is at most a page, or when
        // the request covers the whole [vstart, vend) range.
        let adjust = !(align <= PAGE_SIZE as u64 || vend - vstart == size);
        let va = self.find_vmap_lowest_match(tree, size, align, vstart, adjust);
        if va == NIL {
            return vend;
        }
        let node = self.vmap_area(va);
        let nva_start = if node.start() > vstart {
            align_up(node.start(), align)
        } else {
            align_up(vstart, align)
        };
        if nva_start + size > vend {
            return vend;
        }
        if !self.adjust_va_to_fit_type(tree, va, nva_start, size, spare) {
            return vend;
        }
        nva_start
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
    ) -> bool {
        let node = self.vmap_area(va);
        let (start, end) = (node.start(), node.end());
        let fit = match (start == nva_start, end == nva_start + size) {
            (true, true) => FitType::Full,
            (true, false) => FitType::LeftEdge,
            (false, true) => FitType::RightEdge,
            (false, false) => FitType::NoEdge,
        };
        match fit {
            FitType::Full => {
                self.unlink_va(tree, va);
                self.free_vmap_area_object(va);
                return true;
            }
            FitType::LeftEdge => node.va_start.store(nva_start + size, Relaxed),
            FitType::RightEdge => node.va_end.store(nva_start, Relaxed),
            FitType::NoEdge => {
                if *spare == NIL {
                    return false;
                }
                let lva = core::mem::replace(spare, NIL);
                let l = self.vmap_area(lva);
                l.va_start.store(start, Relaxed);
                l.va_end.store(nva_start, Relaxed);
                l.flags.store(0, Relaxed);
                node.va_start.store(nva_start + size, Relaxed);
                // The left part is hung just before va (insert_vmap_area_augment with
                // va as the "from" node).
                rbtree::propagate(&self.nodes(tree), va);
                let inserted = self.insert_vmap_area(tree, lva);
                debug_assert!(inserted);
                return true;
            }
        }
        // augment_tree_propagate_from(): the block shrank.
        rbtree::propagate(&self.nodes(tree), va);
        true
    }

    /// `__find_vmap_area()`: the area of `tree` that contains `addr`.
    pub(crate) fn find_area_containing(&self, tree: &VmapTree, addr: u64) -> u64 {
        let o = self.nodes(tree);
        let mut cur = tree.root;
        while cur != NIL {
            let va = o.va(cur);
            if addr < va.start() {
                cur = o.left(cur);
            } else if addr >= va.end() {
                cur = o.right(cur);
            } else {
                return cur;
            }
        }
        NIL
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
