//! vmalloc's invariants: the three trees are valid red-black trees whose lists follow
//! their in-order walk; the free tree is augmented exactly and fully merged; free, busy
//! and purge-pending areas never overlap and together cover the whole address space; every
//! busy vmalloc area is mapped page by page to the pages of its array, its guard page is
//! not, and nothing else in the vmalloc range is mapped; page-table pages add up to
//! `NR_PAGETABLE`; and `nr_vmalloc_pages` and `vmap_lazy_nr` match the areas.
//!
//! The checker reads RAM that may be corrupted: it reports nothing on the console, every
//! node it follows must be a live-looking object of the `vmap_area` cache, every walk is
//! bounded by the nodes the trees could hold, and what it finds wrong is returned as a
//! [`VmallocCheckError`].

use core::fmt;
use core::sync::atomic::Ordering::Relaxed;

use super::area::{Nodes, VmapArea, VmapTree};
use super::rbtree::{self, max_height, RbOps, RbViolation, NIL};
use super::{ulong_max, VmArea, VmFlags, VMAP_BARE, VMAP_RAM};
use crate::addr::{VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::platform::Platform;
use crate::Mm;

/// A broken vmalloc invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmallocCheckError {
    /// A tree is not a valid red-black tree.
    Tree(&'static str, RbViolation),
    /// A tree's list disagrees with its in-order walk, or its count.
    List(&'static str),
    /// Two areas overlap, are out of order, or leave a gap.
    Coverage {
        /// The address where it goes wrong.
        at: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// Two free areas touch but were not merged.
    Unmerged(u64),
    /// A free-tree node's `subtree_max_size` is wrong.
    Augment(u64),
    /// A busy area whose `vm_struct` disagrees with it.
    BadVm(u64),
    /// A page of a busy area not mapped to its page.
    Unmapped(u64),
    /// A mapping in the vmalloc range that no busy area owns (or a guard page mapped).
    StrayMapping(u64),
    /// Page-table pages found versus `NR_PAGETABLE`.
    PageTables {
        /// Tables found under the vmalloc range.
        found: u64,
        /// `NR_PAGETABLE`.
        counted: u64,
    },
    /// A link that leads to no `vmap_area` object (outside RAM, misaligned, not in the
    /// `vmap_area` cache).
    BadNode(u64),
    /// A list that goes on longer than the tree has nodes (a cycle).
    ListCycle(&'static str),
    /// A busy area's page array holds something that is not a `struct page *`.
    BadPageArray {
        /// The area.
        area: u64,
        /// The index of the entry.
        index: u64,
    },
    /// A counter disagrees with the areas.
    Counter {
        /// Which.
        name: &'static str,
        /// From the areas.
        found: u64,
        /// The counter.
        counted: u64,
    },
}

impl fmt::Display for VmallocCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmallocCheckError::Tree(t, v) => write!(f, "vmalloc {t} tree: {v:?}"),
            VmallocCheckError::List(t) => write!(f, "vmalloc {t} list disagrees with its tree"),
            VmallocCheckError::Coverage { at, what } => write!(f, "vmap areas at {at:#x}: {what}"),
            VmallocCheckError::Unmerged(a) => {
                write!(f, "free vmap areas touch at {a:#x} but were not merged")
            }
            VmallocCheckError::Augment(a) => {
                write!(f, "free vmap area {a:#x}: subtree_max_size is wrong")
            }
            VmallocCheckError::BadVm(a) => write!(f, "busy vmap area {a:#x}: vm_struct disagrees"),
            VmallocCheckError::Unmapped(a) => {
                write!(f, "vmalloc page at {a:#x} is not mapped to its page")
            }
            VmallocCheckError::StrayMapping(a) => {
                write!(f, "{a:#x} is mapped but belongs to no busy area")
            }
            VmallocCheckError::BadNode(a) => {
                write!(f, "vmap_area link {a:#x} leads to no vmap_area")
            }
            VmallocCheckError::ListCycle(t) => {
                write!(f, "vmalloc {t} list is longer than its tree (a cycle)")
            }
            VmallocCheckError::BadPageArray { area, index } => write!(
                f,
                "busy vmap area {area:#x}: page array entry {index} is not a struct page"
            ),
            VmallocCheckError::PageTables { found, counted } => {
                write!(
                    f,
                    "{found} page-table pages under the vmalloc area, NR_PAGETABLE = {counted}"
                )
            }
            VmallocCheckError::Counter {
                name,
                found,
                counted,
            } => {
                write!(f, "{name}: {found} from the areas, counter says {counted}")
            }
        }
    }
}

impl core::error::Error for VmallocCheckError {}

/// One area as the checker sees it.
#[derive(Copy, Clone)]
struct Span {
    start: u64,
    end: u64,
}

impl From<rbtree::Corrupt> for VmallocCheckError {
    fn from(c: rbtree::Corrupt) -> Self {
        VmallocCheckError::BadNode(c.addr)
    }
}

/// A bounded walk along one tree's list.
struct ListWalk {
    name: &'static str,
    left: u64,
    next: u64,
}

impl ListWalk {
    fn new(tree: &VmapTree, name: &'static str) -> ListWalk {
        ListWalk {
            name,
            left: tree.walk_limit(),
            next: tree.first,
        }
    }
}

impl<P: Platform> Mm<P> {
    /// Check vmalloc's trees and accounting; with `page_tables`, also walk every table
    /// under the vmalloc range (slower: use it every so often in long tests).
    pub(crate) fn check_vmalloc(&self, page_tables: bool) -> Result<(), VmallocCheckError> {
        let free = self.vmalloc.free.lock();
        let busy = self.vmalloc.busy.lock();
        let purge = self.vmalloc.purge.lock();
        self.check_tree("free", &free)?;
        self.check_tree("busy", &busy)?;
        self.check_tree("purge", &purge)?;
        self.check_free_tree(&free)?;
        self.check_coverage(&free, &busy, &purge)?;
        self.check_busy_areas(&busy)?;
        self.check_lazy_count(&purge)?;
        if page_tables {
            self.check_vmalloc_mappings(&busy)?;
        }
        Ok(())
    }

    /// The node at `va`, if it is an object of the `vmap_area` cache (a slab page of
    /// that cache, at an object boundary) that can be read.
    fn checked_node(&self, va: u64) -> Result<&VmapArea, VmallocCheckError> {
        let bad = VmallocCheckError::BadNode(va);
        let (pfn, page) = self.virt_to_slab(VirtAddr(va)).ok_or(bad.clone())?;
        let cache = self.vmap_area_cachep();
        if page.slab_cache() != cache.0 {
            return Err(bad);
        }
        let s = self.cache(cache).map_err(|_| bad.clone())?;
        let base = self.slab_address(pfn) + s.red_left_pad() as u64;
        let off = va.checked_sub(base).ok_or(bad.clone())?;
        if !off.is_multiple_of(s.size() as u64) {
            return Err(bad);
        }
        self.peek_vmap_area(va).ok_or(bad)
    }

    /// The next node of a list walk, or `None` at its end.
    fn walk_next<'a>(
        &'a self,
        walk: &mut ListWalk,
    ) -> Result<Option<(u64, &'a VmapArea)>, VmallocCheckError> {
        let va = walk.next;
        if va == NIL {
            return Ok(None);
        }
        if walk.left == 0 {
            return Err(VmallocCheckError::ListCycle(walk.name));
        }
        walk.left -= 1;
        let node = self.checked_node(va)?;
        walk.next = node.list_next();
        Ok(Some((va, node)))
    }

    /// Every node of the tree is a `vmap_area` object (checked before the tree is walked
    /// through the accessors, which only check that a node can be read).
    fn check_nodes(
        &self,
        o: &Nodes<'_, P>,
        root: u64,
        limit: u64,
    ) -> Result<(), VmallocCheckError> {
        let mut stack = [NIL; 128];
        let mut depth = 0;
        let mut seen = 0u64;
        if root != NIL {
            stack[0] = root;
            depth = 1;
        }
        // Depth-first, bounded by the node count and a red-black tree's height.
        let max = (max_height(limit) as usize).min(stack.len());
        while depth > 0 {
            depth -= 1;
            let n = stack[depth];
            seen += 1;
            if seen > limit {
                return Err(VmallocCheckError::Tree(o_name(o), RbViolation::Cycle));
            }
            self.checked_node(n)?;
            for child in [o.left(n)?, o.right(n)?] {
                if child != NIL {
                    if depth >= max {
                        return Err(VmallocCheckError::Tree(
                            o_name(o),
                            RbViolation::BlackHeight(n),
                        ));
                    }
                    stack[depth] = child;
                    depth += 1;
                }
            }
        }
        Ok(())
    }

    /// The red-black properties, and the list in in-order order.
    fn check_tree(&self, name: &'static str, tree: &VmapTree) -> Result<(), VmallocCheckError> {
        let o = self.quiet_nodes(tree);
        self.check_nodes(&o, tree.root, tree.count + 1)
            .map_err(|e| match e {
                VmallocCheckError::Tree(_, v) => VmallocCheckError::Tree(name, v),
                e => e,
            })?;
        let n = rbtree::validate(&o, tree.root, tree.count + 1)
            .map_err(|v| VmallocCheckError::Tree(name, v))?;
        if n != tree.count {
            return Err(VmallocCheckError::List(name));
        }
        let mut in_order = rbtree::first(&o, tree.root)?;
        let mut walk = ListWalk::new(tree, name);
        let mut prev_end = 0;
        while in_order != NIL {
            let Some((listed, va)) = self.walk_next(&mut walk)? else {
                return Err(VmallocCheckError::List(name));
            };
            if listed != in_order {
                return Err(VmallocCheckError::List(name));
            }
            if va.start() < prev_end || va.end() <= va.start() {
                return Err(VmallocCheckError::Coverage {
                    at: va.start(),
                    what: "out of order or empty",
                });
            }
            prev_end = va.end();
            if va.list_next() == NIL && tree.last != in_order {
                return Err(VmallocCheckError::List(name));
            }
            in_order = rbtree::next(&o, in_order)?;
        }
        if walk.next != NIL {
            return Err(VmallocCheckError::List(name));
        }
        Ok(())
    }

    /// `subtree_max_size` exact at every node; no two free areas touch.
    fn check_free_tree(&self, free: &VmapTree) -> Result<(), VmallocCheckError> {
        let o = self.quiet_nodes(free);
        self.check_augment(&o, free.root, 0)?;
        let mut walk = ListWalk::new(free, "free");
        while let Some((_, va)) = self.walk_next(&mut walk)? {
            let next = va.list_next();
            if next != NIL && self.checked_node(next)?.start() == va.end() {
                return Err(VmallocCheckError::Unmerged(va.end()));
            }
        }
        Ok(())
    }

    /// The tree was validated first, so the recursion is as deep as a red-black tree
    /// (and is cut off at that depth regardless).
    fn check_augment(
        &self,
        o: &Nodes<'_, P>,
        n: u64,
        depth: u32,
    ) -> Result<u64, VmallocCheckError> {
        if n == NIL {
            return Ok(0);
        }
        if depth > max_height(o.max_steps()) {
            return Err(VmallocCheckError::Tree("free", RbViolation::BlackHeight(n)));
        }
        let va = o.va(n)?;
        let max = va
            .size()
            .max(self.check_augment(o, o.left(n)?, depth + 1)?)
            .max(self.check_augment(o, o.right(n)?, depth + 1)?);
        if va.subtree_max_size_or_vm.load(Relaxed) != max {
            return Err(VmallocCheckError::Augment(va.start()));
        }
        Ok(max)
    }

    /// Free, busy and purge-pending areas tile [1, ULONG_MAX) with no overlap or gap.
    fn check_coverage(
        &self,
        free: &VmapTree,
        busy: &VmapTree,
        purge: &VmapTree,
    ) -> Result<(), VmallocCheckError> {
        let mut walks = [
            ListWalk::new(free, "free"),
            ListWalk::new(busy, "busy"),
            ListWalk::new(purge, "purge"),
        ];
        let mut at = 1;
        loop {
            // The next area of the three lists, lowest start first.
            let mut best: Option<(usize, Span)> = None;
            for (i, w) in walks.iter().enumerate() {
                if w.next == NIL {
                    continue;
                }
                let va = self.checked_node(w.next)?;
                let span = Span {
                    start: va.start(),
                    end: va.end(),
                };
                if best.is_none_or(|(_, b)| span.start < b.start) {
                    best = Some((i, span));
                }
            }
            let Some((i, span)) = best else { break };
            if span.start != at {
                let what = if span.start < at { "overlap" } else { "gap" };
                return Err(VmallocCheckError::Coverage { at, what });
            }
            at = span.end;
            self.walk_next(&mut walks[i])?;
        }
        if at != ulong_max(self.profile()) {
            return Err(VmallocCheckError::Coverage {
                at,
                what: "gap at the top",
            });
        }
        Ok(())
    }

    /// The `vm_struct` of a busy area, read without a report.
    fn peek_vm_area(&self, vm: u64) -> Result<VmArea, VmallocCheckError> {
        let v = self
            .kview::<super::VmStruct>(vm)
            .map_err(|_| VmallocCheckError::BadVm(vm))?;
        Ok(super::vm_area_of(v, vm, None))
    }

    /// Every busy area has a `vm_struct` that agrees with it (or is a `vm_map_ram` area);
    /// `nr_vmalloc_pages` is the sum of their pages.
    fn check_busy_areas(&self, busy: &VmapTree) -> Result<(), VmallocCheckError> {
        let mut pages = 0u64;
        let mut walk = ListWalk::new(busy, "busy");
        while let Some((_, node)) = self.walk_next(&mut walk)? {
            let vm = node.subtree_max_size_or_vm.load(Relaxed);
            if node.flags.load(Relaxed) & VMAP_RAM == 0 {
                if vm == 0 {
                    return Err(VmallocCheckError::BadVm(node.start()));
                }
                let v = self.peek_vm_area(vm)?;
                if v.addr.0 != node.start()
                    || v.size != node.size()
                    || v.nr_pages > v.usable_size() >> PAGE_SHIFT
                {
                    return Err(VmallocCheckError::BadVm(node.start()));
                }
                if v.flags.contains(VmFlags::VM_ALLOC) {
                    pages += v.nr_pages;
                }
            }
        }
        let counted = self.vmalloc_nr_pages();
        if pages != counted {
            return Err(VmallocCheckError::Counter {
                name: "nr_vmalloc_pages",
                found: pages,
                counted,
            });
        }
        Ok(())
    }

    fn check_lazy_count(&self, purge: &VmapTree) -> Result<(), VmallocCheckError> {
        let mut pages = 0u64;
        let mut walk = ListWalk::new(purge, "purge");
        while let Some((_, node)) = self.walk_next(&mut walk)? {
            pages = pages.wrapping_add(node.size() >> PAGE_SHIFT);
        }
        let counted = self.vmap_lazy_nr();
        if pages != counted {
            return Err(VmallocCheckError::Counter {
                name: "vmap_lazy_nr",
                found: pages,
                counted,
            });
        }
        Ok(())
    }

    /// Walk every table under the vmalloc range: each present leaf belongs to a busy area
    /// (not its guard page) and, for vmalloc areas, maps the page its array names; each
    /// page of a busy vmalloc area is mapped; the tables found are `NR_PAGETABLE`. Runs
    /// after the other checks, so the trees and `vm_struct`s are known to be sound.
    fn check_vmalloc_mappings(&self, busy: &VmapTree) -> Result<(), VmallocCheckError> {
        let (start, end) = (self.layout().vmalloc_start, self.layout().vmalloc_end);
        let o = self.quiet_nodes(busy);
        let mut stray = None;
        let mut leaves = 0u64;
        let tables = self.walk_kernel_range(start, end, &mut |va, phys, size| {
            leaves += size >> PAGE_SHIFT;
            if stray.is_some() {
                return;
            }
            if let Err(e) = self.check_leaf(&o, busy, va, phys, size) {
                stray = Some(e);
            }
        });
        if let Some(e) = stray {
            return Err(e);
        }
        // Every page of every busy vmalloc area is mapped: the leaves add up.
        let mut expected = 0u64;
        let mut walk = ListWalk::new(busy, "busy");
        while let Some((_, node)) = self.walk_next(&mut walk)? {
            let vm = node.subtree_max_size_or_vm.load(Relaxed);
            if vm != 0 && node.flags.load(Relaxed) & VMAP_RAM == 0 {
                let a = self.peek_vm_area(vm)?;
                if a.flags.contains(VmFlags::VM_ALLOC)
                    && !a.flags.contains(VmFlags::VM_UNINITIALIZED)
                {
                    expected += a.usable_size() >> PAGE_SHIFT;
                } else if a.flags.contains(VmFlags::VM_MAP) {
                    expected += a.usable_size() / PAGE_SIZE as u64;
                }
            } else if node.flags.load(Relaxed) & (VMAP_RAM | VMAP_BARE) == VMAP_RAM {
                // A replay's bare area (`VMAP_BARE`) maps nothing.
                expected += node.size() >> PAGE_SHIFT;
            }
        }
        if leaves != expected {
            return Err(VmallocCheckError::Counter {
                name: "mapped vmalloc pages",
                found: leaves,
                counted: expected,
            });
        }
        let counted = self.nr_pagetable_pages();
        if tables != counted {
            return Err(VmallocCheckError::PageTables {
                found: tables,
                counted,
            });
        }
        Ok(())
    }

    /// One leaf `[va, va + size)` → `phys`: inside a busy area's usable part and, for a
    /// vmalloc area, the page its array names.
    fn check_leaf(
        &self,
        o: &Nodes<'_, P>,
        busy: &VmapTree,
        va: u64,
        phys: u64,
        size: u64,
    ) -> Result<(), VmallocCheckError> {
        let stray = VmallocCheckError::StrayMapping(va);
        let area = self.find_area_in(o, busy.root, va)?;
        if area == NIL {
            return Err(stray);
        }
        let node = o.va(area)?;
        let vm = node.subtree_max_size_or_vm.load(Relaxed);
        if node.flags.load(Relaxed) & VMAP_BARE != 0 {
            return Err(stray);
        }
        if node.flags.load(Relaxed) & VMAP_RAM != 0 || vm == 0 {
            return Ok(());
        }
        let a = self.peek_vm_area(vm)?;
        let Some(offset) = va.checked_sub(a.addr.0) else {
            return Err(stray);
        };
        if offset.saturating_add(size) > a.usable_size() {
            return Err(stray);
        }
        if a.flags.contains(VmFlags::VM_ALLOC) {
            let index = offset >> PAGE_SHIFT;
            let pfn =
                self.page_array_peek(a.pages.0, index)
                    .ok_or(VmallocCheckError::BadPageArray {
                        area: a.addr.0,
                        index,
                    })?;
            if pfn.phys().0 != phys {
                return Err(stray);
            }
        }
        Ok(())
    }
}

/// The name of the tree `o` walks, for a violation found before the tree's own check.
fn o_name<P: Platform>(o: &Nodes<'_, P>) -> &'static str {
    if o.augmented {
        "free"
    } else {
        "busy or purge"
    }
}
