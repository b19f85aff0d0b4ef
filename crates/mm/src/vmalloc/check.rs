//! vmalloc's invariants: the three trees are valid red-black trees whose lists follow
//! their in-order walk; the free tree is augmented exactly and fully merged; free, busy
//! and purge-pending areas never overlap and together cover the whole address space; every
//! busy vmalloc area is mapped page by page to the pages of its array, its guard page is
//! not, and nothing else in the vmalloc range is mapped; page-table pages add up to
//! `NR_PAGETABLE`; and `nr_vmalloc_pages` and `vmap_lazy_nr` match the areas.

use core::fmt;
use core::sync::atomic::Ordering::Relaxed;

use super::area::VmapTree;
use super::rbtree::{self, RbOps, RbViolation, NIL};
use super::{ulong_max, VmFlags, VMAP_RAM};
use crate::addr::{PAGE_SHIFT, PAGE_SIZE};
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

/// One area as the checker sees it.
#[derive(Copy, Clone)]
struct Span {
    start: u64,
    end: u64,
}

impl<P: Platform> Mm<P> {
    /// Check vmalloc's trees and accounting; with `page_tables`, also walk every table
    /// under the vmalloc range (slower: use it every so often in long tests).
    pub fn check_vmalloc(&self, page_tables: bool) -> Result<(), VmallocCheckError> {
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

    /// The red-black properties, and the list in in-order order.
    fn check_tree(&self, name: &'static str, tree: &VmapTree) -> Result<(), VmallocCheckError> {
        let o = self.nodes(tree);
        let n = rbtree::validate(&o, tree.root, tree.count + 1)
            .map_err(|v| VmallocCheckError::Tree(name, v))?;
        if n != tree.count {
            return Err(VmallocCheckError::List(name));
        }
        let mut in_order = rbtree::first(&o, tree.root);
        let mut listed = tree.first;
        let mut prev_end = 0;
        while in_order != NIL {
            if listed != in_order {
                return Err(VmallocCheckError::List(name));
            }
            let va = self.vmap_area(in_order);
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
            listed = va.list_next();
            in_order = rbtree::next(&o, in_order);
        }
        if listed != NIL {
            return Err(VmallocCheckError::List(name));
        }
        Ok(())
    }

    /// `subtree_max_size` exact at every node; no two free areas touch.
    fn check_free_tree(&self, free: &VmapTree) -> Result<(), VmallocCheckError> {
        let o = self.nodes(free);
        self.check_augment(&o, free.root)?;
        let mut va = free.first;
        while va != NIL {
            let next = self.vmap_area(va).list_next();
            if next != NIL && self.vmap_area(next).start() == self.vmap_area(va).end() {
                return Err(VmallocCheckError::Unmerged(self.vmap_area(va).end()));
            }
            va = next;
        }
        Ok(())
    }

    fn check_augment(
        &self,
        o: &super::area::Nodes<'_, P>,
        n: u64,
    ) -> Result<u64, VmallocCheckError> {
        if n == NIL {
            return Ok(0);
        }
        let va = self.vmap_area(n);
        let max = va
            .size()
            .max(self.check_augment(o, o.left(n))?)
            .max(self.check_augment(o, o.right(n))?);
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
        let mut cursors = [free.first, busy.first, purge.first];
        let mut at = 1;
        loop {
            // The next area of the three lists, lowest start first.
            let mut best: Option<(usize, Span)> = None;
            for (i, &c) in cursors.iter().enumerate() {
                if c == NIL {
                    continue;
                }
                let va = self.vmap_area(c);
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
            cursors[i] = self.vmap_area(cursors[i]).list_next();
        }
        if at != ulong_max(self.profile()) {
            return Err(VmallocCheckError::Coverage {
                at,
                what: "gap at the top",
            });
        }
        Ok(())
    }

    /// Every busy area has a `vm_struct` that agrees with it (or is a `vm_map_ram` area);
    /// `nr_vmalloc_pages` is the sum of their pages.
    fn check_busy_areas(&self, busy: &VmapTree) -> Result<(), VmallocCheckError> {
        let mut pages = 0;
        let mut va = busy.first;
        while va != NIL {
            let node = self.vmap_area(va);
            let vm = node.subtree_max_size_or_vm.load(Relaxed);
            if node.flags.load(Relaxed) & VMAP_RAM == 0 {
                if vm == 0 {
                    return Err(VmallocCheckError::BadVm(node.start()));
                }
                let v = self.vm_area_copy(vm);
                if v.addr.0 != node.start() || v.size != node.size() {
                    return Err(VmallocCheckError::BadVm(node.start()));
                }
                if v.flags.contains(VmFlags::VM_ALLOC) {
                    pages += v.nr_pages;
                }
            }
            va = node.list_next();
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
        let mut pages = 0;
        let mut va = purge.first;
        while va != NIL {
            let node = self.vmap_area(va);
            pages += node.size() >> PAGE_SHIFT;
            va = node.list_next();
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
    /// page of a busy vmalloc area is mapped; the tables found are `NR_PAGETABLE`.
    fn check_vmalloc_mappings(&self, busy: &VmapTree) -> Result<(), VmallocCheckError> {
        let (start, end) = (self.layout.vmalloc_start, self.layout.vmalloc_end);
        let mut stray = None;
        let mut leaves = 0u64;
        let tables = self.walk_kernel_range(start, end, &mut |va, phys, size| {
            leaves += size >> PAGE_SHIFT;
            if stray.is_some() {
                return;
            }
            let area = self.find_area_containing(busy, va);
            let ok = area != NIL && {
                let node = self.vmap_area(area);
                let vm = node.subtree_max_size_or_vm.load(Relaxed);
                if node.flags.load(Relaxed) & VMAP_RAM != 0 || vm == 0 {
                    true
                } else {
                    let a = self.vm_area_copy(vm);
                    let offset = va - a.addr.0;
                    let in_bounds = offset + size <= a.usable_size();
                    let matches = !a.flags.contains(VmFlags::VM_ALLOC)
                        || self
                            .page_array_get(a.pages.0, offset >> PAGE_SHIFT)
                            .phys()
                            .0
                            == phys;
                    in_bounds && matches
                }
            };
            if !ok {
                stray = Some(va);
            }
        });
        if let Some(va) = stray {
            return Err(VmallocCheckError::StrayMapping(va));
        }
        // Every page of every busy vmalloc area is mapped: the leaves add up.
        let mut expected = 0u64;
        let mut va = busy.first;
        while va != NIL {
            let node = self.vmap_area(va);
            let vm = node.subtree_max_size_or_vm.load(Relaxed);
            if vm != 0 && node.flags.load(Relaxed) & VMAP_RAM == 0 {
                let a = self.vm_area_copy(vm);
                if a.flags.contains(VmFlags::VM_ALLOC)
                    && !a.flags.contains(VmFlags::VM_UNINITIALIZED)
                {
                    expected += a.usable_size() >> PAGE_SHIFT;
                } else if a.flags.contains(VmFlags::VM_MAP) {
                    expected += a.usable_size() / PAGE_SIZE as u64;
                }
            } else if node.flags.load(Relaxed) & VMAP_RAM != 0 {
                expected += node.size() >> PAGE_SHIFT;
            }
            va = node.list_next();
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
}
