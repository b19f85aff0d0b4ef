//! [`Kmemlab`]: the kernel core as a Rust `GlobalAlloc`.
//!
//! How a `Layout` is served (Linux 6.6's rules for what each allocator guarantees):
//!
//! | request                                   | kernel call             | served by             |
//! |-------------------------------------------|-------------------------|-----------------------|
//! | size ≤ 8 KiB, align ≤ 8                   | `kmalloc(size)`         | SLUB kmalloc caches   |
//! | size ≤ 4 MiB, align > 8                   | `kmalloc(2^n ≥ size, align)` | as above, or pages |
//! | 8 KiB < size ≤ 4 MiB                      | `kmalloc(size)`         | page allocator (`kmalloc_large`, a compound block) |
//! | size > 4 MiB, align ≤ 4 KiB               | `vmalloc(size)` / `vzalloc` | vmalloc, aliased into the host window |
//! | anything else                             | —                       | refused (null)        |
//!
//! Alignment: `ARCH_KMALLOC_MINALIGN` is 8 on x86, and since Linux 6.6's
//! `create_kmalloc_caches()` every power-of-two kmalloc size is aligned to itself (up to
//! a page; a large kmalloc is a buddy block, aligned to its own size). So a request that
//! needs more than 8 is rounded up to a power of two not below its alignment; above a
//! page of alignment it is sent to the page allocator, whose order-`n` block is
//! `PAGE_SIZE << n` aligned physically, and RAM's host base is 4 MiB aligned.
//!
//! Why vmalloc for the largest requests: past `KMALLOC_MAX_SIZE` (4 MiB, `MAX_PAGE_ORDER`)
//! the page allocator has no block, exactly as in the kernel, where `kvmalloc` falls back
//! to vmalloc. A vmalloc address is not a host address — the kernel's page tables map it,
//! and they live in simulated RAM. So after `vmalloc`, the area's pages (found by walking
//! those page tables, `vm_area_pfns`) are mapped a second time, from the RAM file, into a
//! host window at the same offset the area has from `VMALLOC_START`: the host's MMU is
//! made to agree with the kernel's page tables, as a real CPU's would. Before `vfree` the
//! alias is removed.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::Relaxed;

use kmemlab_mm::mm_init::BootError;
use kmemlab_mm::slab::kmalloc::{ARCH_KMALLOC_MINALIGN, KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE};
use kmemlab_mm::slab::KmemCacheRef;
use kmemlab_mm::{BootConfig, Gfp, Hardware, Mm, VirtAddr, PAGE_SIZE};

use crate::platform::{HostConfig, HostPlatform, HostPlatformError, MAX_HOST_CPUS};

/// Why the kernel under a [`Kmemlab`] is not running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootFailure {
    /// The host platform could not be built.
    Platform(HostPlatformError),
    /// `Mm::boot` refused it.
    Boot(BootError),
}

impl core::fmt::Display for BootFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootFailure::Platform(e) => write!(f, "host platform: {e}"),
            BootFailure::Boot(e) => write!(f, "boot: {e}"),
        }
    }
}

impl std::error::Error for BootFailure {}

/// The paths [`Kmemlab`] counts (the fields of [`PathCounts`]).
#[derive(Copy, Clone)]
enum Path {
    Slab,
    Pages,
    Vmalloc,
    Krealloc,
    Refused,
    BadFrees,
}

const NR_PATHS: usize = 6;

/// One CPU's counts of [`Path`]s, alone on its cache line. Only the thread holding the
/// CPU's claim writes them (a load and a store, as the kernel's per-CPU counters are
/// `this_cpu_inc`), so threads on different CPUs never write one line.
#[repr(align(64))]
struct CpuPathCounters([AtomicU64; NR_PATHS]);

impl CpuPathCounters {
    const fn new() -> CpuPathCounters {
        CpuPathCounters([const { AtomicU64::new(0) }; NR_PATHS])
    }
}

/// Which allocator served requests so far, and frees that went wrong (counted by
/// [`Kmemlab`] per CPU and summed by [`Kmemlab::counts`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PathCounts {
    /// Requests (and `krealloc`s) served by kmalloc's slab caches.
    pub slab: u64,
    /// Requests (and `krealloc`s) served by the page allocator (large kmalloc).
    pub pages: u64,
    /// Requests served by vmalloc.
    pub vmalloc: u64,
    /// `realloc`s done by `krealloc`.
    pub krealloc: u64,
    /// Requests refused (null returned).
    pub refused: u64,
    /// Frees the kernel refused, or of pointers that were not ours.
    pub bad_frees: u64,
}

/// What the kernel holds, after giving back what it caches (see [`Kmemlab::census`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Census {
    /// Pages allocated (`mem_map` walked by `Mm::check`), page-table pages included.
    pub allocated_pages: u64,
    /// Page-table pages (`NR_PAGETABLE`): vmalloc's tables stay once made, as Linux's do.
    pub pagetable_pages: u64,
    /// Pages of vmalloc areas.
    pub vmalloc_pages: u64,
    /// Objects in use in all slab caches (`/proc/slabinfo`'s active_objs summed), less
    /// the spare `vmap_area`s CPUs keep for vmalloc (`ne_fit_preload_node`, a per-CPU
    /// cache that Linux 6.6 keeps too).
    pub slab_objects: u64,
    /// CPUs holding a spare `vmap_area` (`ne_fit_preload_node`).
    pub preloaded_vmap_areas: u64,
    /// Pages in slabs and large kmallocs (`Slab:` of `/proc/meminfo`).
    pub slab_pages: u64,
}

/// The kernel's memory manager, booted on first use over a [`HostPlatform`], as a
/// `#[global_allocator]`:
///
/// ```no_run
/// use kmemlab_hostalloc::{HostConfig, Kmemlab};
///
/// #[global_allocator]
/// static KERNEL: Kmemlab = Kmemlab::new(HostConfig::new());
///
/// fn main() {
///     let v: Vec<u64> = (0..1000).collect(); // kmalloc-8k
///     assert_eq!(v.iter().sum::<u64>(), 499_500);
/// }
/// ```
pub struct Kmemlab {
    config: HostConfig,
    mm: spin::Once<Result<Mm<HostPlatform>, BootFailure>>,
    counters: [CpuPathCounters; MAX_HOST_CPUS],
}

impl Kmemlab {
    /// An allocator that boots a kernel on a host platform of `config` at its first use.
    pub const fn new(config: HostConfig) -> Kmemlab {
        Kmemlab {
            config,
            mm: spin::Once::new(),
            counters: [const { CpuPathCounters::new() }; MAX_HOST_CPUS],
        }
    }

    /// The kernel, booted now if it was not (once: other threads wait for the first).
    /// Boot allocates nothing on the Rust heap, so it may run inside the first `alloc`.
    ///
    /// Private: a caller must hold a CPU claim to call into the kernel (the platform's
    /// promise to the kernel, [`kmemlab_mm::Hardware`]); [`Kmemlab::with_cpu`] is the
    /// public way in.
    fn kernel(&self) -> Result<&Mm<HostPlatform>, &BootFailure> {
        self.mm.call_once(|| boot(&self.config)).as_ref()
    }

    /// Run `f` on the kernel as a CPU this thread claims for the call (the kernel is
    /// booted first if it was not). Another thread that calls into the kernel must claim
    /// a CPU of its own: one that does not is stopped with a panic rather than run as a
    /// second CPU 0.
    pub fn with_cpu<R>(&self, f: impl FnOnce(&Mm<HostPlatform>) -> R) -> Result<R, &BootFailure> {
        let mm = self.kernel()?;
        let _claim = mm.platform().claim_cpu();
        Ok(f(mm))
    }

    /// How requests were served so far: every CPU's counts, summed.
    pub fn counts(&self) -> PathCounts {
        let total = |path: Path| -> u64 {
            self.counters
                .iter()
                .map(|c| c.0[path as usize].load(Relaxed))
                .sum()
        };
        PathCounts {
            slab: total(Path::Slab),
            pages: total(Path::Pages),
            vmalloc: total(Path::Vmalloc),
            krealloc: total(Path::Krealloc),
            refused: total(Path::Refused),
            bad_frees: total(Path::BadFrees),
        }
    }

    /// Count one request of `path` on `cpu`, the CPU this thread claimed (a plain
    /// increment: nobody else writes that CPU's counters).
    #[inline]
    fn count(&self, cpu: usize, path: Path) {
        if let Some(c) = self.counters.get(cpu) {
            let counter = &c.0[path as usize];
            counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
        }
    }

    /// Give back what the kernel caches — purge lazily freed vmalloc areas, shrink every
    /// slab cache (its empty slabs), drain the per-CPU page lists — then count what is
    /// still held, checking every invariant of the page allocator on the way
    /// (`Mm::check`). Two censuses around a workload that freed everything it allocated
    /// agree, except for vmalloc page tables, which stay as Linux's do.
    pub fn census(&self) -> Result<Census, String> {
        self.with_cpu(|mm| {
            mm.purge_vmap_area_lazy();
            let mut caches = [KmemCacheRef(0); 512];
            let mut n = 0;
            mm.for_each_cache(|s| {
                if n < caches.len() {
                    caches[n] = s.handle();
                    n += 1;
                }
                None::<()>
            });
            // Twice: with 6.18's sheaves, shrinking one cache frees its empty sheaves,
            // which are objects of another (kmalloc) cache that may have been shrunk
            // already; the second round gives those back too.
            for _ in 0..2 {
                for &r in &caches[..n] {
                    mm.kmem_cache_shrink(r).map_err(|e| e.to_string())?;
                }
            }
            mm.drain_all_pages();
            let report = mm.check().map_err(|e| e.to_string())?;
            let mut slab_objects = 0;
            mm.for_each_cache(|s| {
                slab_objects += kmemlab_mm::procfs::slab_info(mm, s).active_objs;
                None::<()>
            });
            let preloaded = (0..mm.platform().nr_cpus())
                .filter(|&cpu| mm.per_cpu(cpu).ne_fit_preload_node.load(Relaxed) != 0)
                .count() as u64;
            let slab = mm.slab_pages();
            Ok(Census {
                allocated_pages: report.allocated,
                pagetable_pages: mm.nr_pagetable_pages(),
                vmalloc_pages: mm.vmalloc_nr_pages(),
                slab_objects: slab_objects - preloaded.min(slab_objects),
                preloaded_vmap_areas: preloaded,
                slab_pages: slab.total(),
            })
        })
        .map_err(|e| e.to_string())?
    }

    /// Serve `layout`: a host pointer, or null when the kernel cannot (see the module
    /// docs). Zeroed when `zeroed`.
    pub fn allocate(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let Ok(mm) = self.kernel() else {
            return core::ptr::null_mut();
        };
        let claim = mm.platform().claim_cpu();
        let cpu = claim.cpu();
        let p = match kmalloc_request(layout) {
            Some(size) => self.kmalloc_host(mm, cpu, size, zeroed),
            None if layout.align() <= PAGE_SIZE => {
                self.vmalloc_host(mm, cpu, layout.size(), zeroed)
            }
            None => core::ptr::null_mut(),
        };
        if p.is_null() || !(p as usize).is_multiple_of(layout.align()) {
            // A misaligned object would break the contract: never handed out.
            if !p.is_null() {
                self.release(mm, cpu, p);
            }
            self.count(cpu, Path::Refused);
            return core::ptr::null_mut();
        }
        p
    }

    /// `kmalloc`/`kzalloc` of `size`, as a host pointer.
    fn kmalloc_host(
        &self,
        mm: &Mm<HostPlatform>,
        cpu: usize,
        size: usize,
        zeroed: bool,
    ) -> *mut u8 {
        let gfp = if zeroed {
            Gfp::GFP_KERNEL | Gfp::__GFP_ZERO
        } else {
            Gfp::GFP_KERNEL
        };
        let Ok(va) = mm.kmalloc(size, gfp) else {
            return core::ptr::null_mut();
        };
        self.count_kmalloc(cpu, size);
        direct_map_host(mm, va, size)
    }

    /// Count a kmalloc of `size` under the allocator that serves it.
    fn count_kmalloc(&self, cpu: usize, size: usize) {
        let path = if size <= KMALLOC_MAX_CACHE_SIZE {
            Path::Slab
        } else {
            Path::Pages
        };
        self.count(cpu, path);
    }

    /// `vmalloc`/`vzalloc` of `size`, mapped into the host window.
    fn vmalloc_host(
        &self,
        mm: &Mm<HostPlatform>,
        cpu: usize,
        size: usize,
        zeroed: bool,
    ) -> *mut u8 {
        let area = if zeroed {
            mm.vzalloc(size)
        } else {
            mm.vmalloc(size)
        };
        let Ok(va) = area else {
            return core::ptr::null_mut();
        };
        match alias_area(mm, va, size) {
            Some(p) => {
                self.count(cpu, Path::Vmalloc);
                p
            }
            None => {
                let _ = mm.vfree(va);
                core::ptr::null_mut()
            }
        }
    }

    /// Free what `allocate` returned at host address `p` (this thread holds the claim on
    /// `cpu`).
    fn release(&self, mm: &Mm<HostPlatform>, cpu: usize, p: *mut u8) {
        let platform = mm.platform();
        let addr = p as usize;
        let freed = if let Some(phys) = platform.host_to_phys(addr) {
            let va = mm.layout().page_offset + phys;
            mm.kfree(VirtAddr(va)).is_ok()
        } else if let Some(offset) = platform.window_offset(addr) {
            free_area(mm, offset)
        } else {
            false
        };
        if !freed {
            self.count(cpu, Path::BadFrees);
        }
    }

    /// `krealloc` when both the old and the new size are kmalloc's; `None` otherwise.
    fn krealloc_host(&self, p: *mut u8, layout: Layout, new_size: usize) -> Option<*mut u8> {
        let mm = self.kernel().ok()?;
        let platform = mm.platform();
        let phys = platform.host_to_phys(p as usize)?;
        let new_layout = Layout::from_size_align(new_size, layout.align()).ok()?;
        let size = kmalloc_request(new_layout)?;
        let claim = platform.claim_cpu();
        let cpu = claim.cpu();
        let va = mm.layout().page_offset + phys;
        let new = mm.krealloc(VirtAddr(va), size, Gfp::GFP_KERNEL).ok()?;
        self.count(cpu, Path::Krealloc);
        self.count_kmalloc(cpu, size);
        let q = direct_map_host(mm, new, size);
        if (q as usize).is_multiple_of(layout.align()) {
            return Some(q);
        }
        // Never expected (krealloc keeps kmalloc's alignment); refuse rather than break
        // the contract. The old object is gone, so this must not return None.
        self.release(mm, cpu, q);
        self.count(cpu, Path::Refused);
        Some(core::ptr::null_mut())
    }
}

/// Boot the kernel on a new host platform.
fn boot(config: &HostConfig) -> Result<Mm<HostPlatform>, BootFailure> {
    let platform = HostPlatform::new(config).map_err(BootFailure::Platform)?;
    let boot = BootConfig {
        seed: config.seed,
        slab: kmemlab_mm::slab::SlabConfig {
            percpu: config.slab_percpu,
            ..Default::default()
        },
        ..BootConfig::default()
    };
    let mm = Mm::boot(platform, boot).map_err(BootFailure::Boot)?;
    mm.platform().finish_boot();
    Ok(mm)
}

/// The kmalloc size that serves `layout` with its alignment, or `None` when kmalloc
/// cannot (more than `KMALLOC_MAX_SIZE`, or alignment beyond it).
fn kmalloc_request(layout: Layout) -> Option<usize> {
    let size = layout.size().max(1);
    let align = layout.align();
    let request = if align <= ARCH_KMALLOC_MINALIGN {
        size
    } else if align <= PAGE_SIZE {
        // kmalloc(2^n) is 2^n aligned up to a page (Linux 6.6).
        size.max(align).checked_next_power_of_two()?
    } else {
        // Past a page of alignment only the page allocator's blocks are aligned enough.
        size.max(align)
            .max(2 * KMALLOC_MAX_CACHE_SIZE)
            .checked_next_power_of_two()?
    };
    (request <= KMALLOC_MAX_SIZE).then_some(request)
}

/// The host address of the direct-map object at `va`, through the RAM door.
fn direct_map_host(mm: &Mm<HostPlatform>, va: VirtAddr, size: usize) -> *mut u8 {
    match mm.direct_map_host_ptr(va.0, size as u64) {
        Ok(p) => p,
        Err(_) => {
            let _ = mm.kfree(va);
            core::ptr::null_mut()
        }
    }
}

/// Map the pages of the vmalloc area at `va` (`size` bytes asked for) into the host
/// window; the host address, or `None` (nothing left mapped) if it does not fit or the
/// host refuses.
fn alias_area(mm: &Mm<HostPlatform>, va: VirtAddr, size: usize) -> Option<*mut u8> {
    let platform = mm.platform();
    let offset = va.0.checked_sub(mm.layout().vmalloc_start)?;
    let len = (size as u64).div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64;
    if offset.checked_add(len)? > platform.window_size() {
        return None;
    }
    let page = PAGE_SIZE as u64;
    // Runs of physically consecutive pages, each mapped with one call.
    let mut run: Option<(u64, u64, u64)> = None; // (window offset, phys, bytes)
    let mut mapped = 0u64;
    let mut ok = true;
    let walk = mm.vm_area_pfns(va, |pfn| {
        if mapped >= len || !ok {
            return;
        }
        let phys = pfn.0 * page;
        match &mut run {
            Some((_, start, bytes)) if *start + *bytes == phys => *bytes += page,
            _ => {
                if let Some((o, p, b)) = run.take() {
                    ok &= platform.alias(o, p, b).is_ok();
                }
                run = Some((offset + mapped, phys, page));
            }
        }
        mapped += page;
    });
    if let Some((o, p, b)) = run {
        ok &= platform.alias(o, p, b).is_ok();
    }
    if walk.is_err() || !ok || mapped != len {
        let _ = platform.unalias(offset, len);
        return None;
    }
    Some(platform.window_addr(offset))
}

/// Remove the host alias of the area at window `offset`, then `vfree` it; and run the
/// kworker's item (the lazy purge) if the free queued one.
fn free_area(mm: &Mm<HostPlatform>, offset: u64) -> bool {
    let va = VirtAddr(mm.layout().vmalloc_start + offset);
    let Some(area) = mm.find_vm_area(va).filter(|a| a.addr == va) else {
        return false;
    };
    let len = area.usable_size();
    if mm.platform().unalias(offset, len).is_err() {
        return false;
    }
    let freed = mm.vfree(va).is_ok();
    if mm.work_pending() {
        mm.run_work();
    }
    freed
}

// SAFETY: `allocate` hands out only memory the kernel allocated for this request and no
// one else holds: a kmalloc object (or large-kmalloc block) of at least the size asked,
// turned into a host pointer by the RAM door (`Mm::direct_map_host_ptr`, checked to be
// RAM), or a vmalloc area of at least the size asked, mapped into the host window page by
// page from the very RAM pages the kernel's page tables map it to. Alignment is checked
// before a pointer is returned. The memory stays valid until `dealloc` gives it back to
// the kernel, which reuses it only after that. `realloc` keeps the old object's bytes
// (krealloc copies them; otherwise they are copied here) and its alignment.
unsafe impl GlobalAlloc for Kmemlab {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocate(layout, false)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.allocate(layout, true)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        if let Ok(mm) = self.kernel() {
            let claim = mm.platform().claim_cpu();
            self.release(mm, claim.cpu(), ptr);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if let Some(p) = self.krealloc_host(ptr, layout, new_size) {
            return p;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        let new = self.allocate(new_layout, false);
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least this long.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}
