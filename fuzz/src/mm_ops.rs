//! Fuzz target `mm_ops`: a sequence of operations (decoded from the input with
//! `arbitrary`) driving the mm API directly on a small machine — the page allocator,
//! kmalloc and caches, vmalloc and vmap, kvmalloc, the DMA API with three devices — and
//! corrupting memory on purpose: bytes written at physical addresses (as RAM, or as a
//! DMA device's bus-master write), at kernel virtual addresses (the direct map, or through
//! a CPU's MMU), and into the structures behind an allocation (its `struct page`, the
//! page tables that map it, its slab's `struct page`, its `kmem_cache`, the memory
//! around it, the boot-reserved regions). After the sequence the invariant checker runs
//! and every `/proc` file is rendered.
//!
//! The machine may oops, BUG or refuse; the host must not panic, crash or hang.
//!
//! Inputs are a [`Config`] then [`Op`]s until the bytes run out (at most [`MAX_OPS`]).
//! [`Input::encode`] writes the bytes `arbitrary` decodes back into the same input, so
//! that hand-written sequences ([`seeds`]) can be committed as corpus files.

use arbitrary::{Arbitrary, Unstructured};
use kmemlab_mm::arch::pgtable::PgProt;
use kmemlab_mm::dma::{DmaAddr, DmaDataDirection};
use kmemlab_mm::slab::{KmemCacheRef, SlabConfig, SlabFlags};
use kmemlab_mm::vmalloc::VmFlags;
use kmemlab_mm::{Context, Gfp, Mm, Pfn, Profile, VirtAddr, PAGE_SIZE};
use kmemlab_sim::{DmaDevice, Hole, Machine, MachineConfig, SimPlatform};
use std::sync::Arc;

/// Operations run per input.
pub const MAX_OPS: usize = 256;
/// Allocations remembered (the oldest are forgotten, not freed).
pub const MAX_SLOTS: usize = 64;
/// Caches created per input.
pub const MAX_CACHES: usize = 8;
/// Pages a `vmap` maps at most.
pub const MAX_VMAP_PAGES: u64 = 4096;

/// The machine: 64 MiB, x86_64 unless `i386`, 1 or 2 CPUs.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Config {
    /// The i386 kernel (HIGHMEM, 2-level page tables) instead of x86_64.
    pub i386: bool,
    /// `slab_debug` (F, Z, P, U) on every cache.
    pub slab_debug: bool,
    /// `init_on_free=1`.
    pub init_on_free: bool,
    /// One CPU instead of two.
    pub one_cpu: bool,
}

/// A size: `mantissa << (shift % 8)` bytes (up to 8 MiB), so small and large sizes are
/// both common.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// The significant bits.
    pub mantissa: u16,
    /// The shift, modulo 8.
    pub shift: u8,
}

impl Size {
    /// Exactly `n` bytes (for `n` < 64 KiB).
    pub const fn bytes(n: u16) -> Size {
        Size {
            mantissa: n,
            shift: 0,
        }
    }

    /// The size in bytes.
    pub fn get(self) -> usize {
        (self.mantissa as usize) << (self.shift % 8)
    }
}

/// What the bytes of [`Op::WriteAt`] are written over.
pub mod target {
    /// The allocation's own bytes, from its start.
    pub const OBJECT: u8 = 0;
    /// Its (first) `struct page`.
    pub const STRUCT_PAGE: u8 = 1;
    /// A page-table entry of its mapping (level = offset % levels).
    pub const PAGE_TABLE: u8 = 2;
    /// The `struct kmem_cache` of its cache.
    pub const KMEM_CACHE: u8 = 3;
    /// The `struct page` of its slab.
    pub const SLAB_PAGE: u8 = 4;
    /// The bytes just past its end.
    pub const PAST_END: u8 = 5;
    /// How many targets.
    pub const COUNT: u8 = 6;
}

/// How the bytes of a write get there.
pub mod via {
    /// Straight into RAM at the physical address.
    pub const RAM: u8 = 0;
    /// A 64-bit bus-master device's DMA write at the physical (bus) address.
    pub const DMA: u8 = 1;
    /// `copy_to_kernel` at the direct-map address.
    pub const DIRECT_MAP: u8 = 2;
    /// A store through the current CPU's MMU at the kernel virtual address.
    pub const MMU: u8 = 3;
    /// How many ways.
    pub const COUNT: u8 = 4;
}

/// Encoding for [`Input::encode`]: the bytes `arbitrary` reads back into the same value
/// (integers little-endian, `bool` as one byte, arrays element by element).
pub trait Encode {
    /// Append the bytes.
    fn encode(&self, out: &mut Vec<u8>);
}

macro_rules! encode_le {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
encode_le!(u8, u16, u32, u64, i16, i32);

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
}

impl Encode for [u8; 8] {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl Encode for Size {
    fn encode(&self, out: &mut Vec<u8>) {
        self.mantissa.encode(out);
        self.shift.encode(out);
    }
}

impl Encode for Config {
    fn encode(&self, out: &mut Vec<u8>) {
        for b in [self.i386, self.slab_debug, self.init_on_free, self.one_cpu] {
            b.encode(out);
        }
    }
}

/// The tag `derive(Arbitrary)` reads as variant `index` of `count`: it takes a `u32` `x`
/// and picks `(x * count) >> 32`, so the smallest `x` with that result.
fn encode_tag(index: u64, count: u64, out: &mut Vec<u8>) {
    let x = (index << 32).div_ceil(count);
    (x as u32).encode(out);
}

/// The operations, declared once for both `derive(Arbitrary)` and [`Op::encode`].
macro_rules! ops {
    ($( $(#[$doc:meta])* $name:ident { $( $field:ident : $ty:ty ),* $(,)? } ),* $(,)?) => {
        /// One operation on the machine. `slot`, `cache`, `dev` and `map` pick among the
        /// live allocations, caches, devices and DMA mappings (modulo their number); a
        /// free whose `slot` has bit 7 set leaves the allocation remembered, so it may be
        /// freed or used again.
        #[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
        pub enum Op {
            $( $(#[$doc])* $name { $( #[allow(missing_docs)] $field: $ty ),* } ),*
        }

        impl Op {
            const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];

            /// Append the bytes that decode to this operation.
            pub fn encode(&self, out: &mut Vec<u8>) {
                let count = Self::NAMES.len() as u64;
                let mut index = 0u64;
                $(
                    if let Op::$name { $( $field ),* } = self {
                        encode_tag(index, count, out);
                        $( Encode::encode($field, out); )*
                        return;
                    }
                    index += 1;
                )*
                unreachable!("{index} variants, none matched");
            }
        }
    };
}

ops! {
    /// `alloc_pages(gfp, order % 12)` (order 11 is refused).
    AllocPages { gfp: u8, order: u8 },
    /// `__free_pages` of a page slot, with its order or (`order` ≠ 0) order `order % 12`.
    FreePages { slot: u8, order: u8 },
    /// `kmalloc(size, gfp)`.
    Kmalloc { gfp: u8, size: Size },
    /// `kfree` of a slot's address, whatever it holds.
    Kfree { slot: u8 },
    /// `krealloc(slot, size, gfp)`.
    Krealloc { slot: u8, gfp: u8, size: Size },
    /// `kmem_cache_create` with `align` = `1 << (align % 8)` (0 when `align` is 0) and
    /// flags from `flags`' bits.
    CacheCreate { size: Size, align: u8, flags: u8 },
    /// `kmem_cache_alloc(cache, gfp)`.
    CacheAlloc { cache: u8, gfp: u8 },
    /// `kmem_cache_free(cache, slot)` (the cache need not be the object's).
    CacheFree { cache: u8, slot: u8 },
    /// `kmem_cache_destroy(cache)`.
    CacheDestroy { cache: u8 },
    /// `kmem_cache_shrink(cache)`.
    CacheShrink { cache: u8 },
    /// `vmalloc`, `vzalloc`, `__vmalloc(gfp)` or `vmalloc_huge(gfp)` (by `how % 4`).
    Vmalloc { how: u8, gfp: u8, size: Size },
    /// `vfree` of a slot's address.
    Vfree { slot: u8 },
    /// `vmap` of `count % MAX_VMAP_PAGES + 1` pages from a slot's first page frame.
    Vmap { slot: u8, count: u16 },
    /// `vunmap` of a slot's address.
    Vunmap { slot: u8 },
    /// `kvmalloc(size, gfp)`.
    Kvmalloc { gfp: u8, size: Size },
    /// `kvfree` of a slot's address.
    Kvfree { slot: u8 },
    /// `dma_map_single(dev, slot + offset, size, dir)`.
    DmaMap { dev: u8, slot: u8, offset: u16, size: Size, dir: u8 },
    /// `dma_unmap_single` of a mapping, its size changed by `size_delta`, direction `dir`
    /// (`dir` ≥ 4: the mapping's own).
    DmaUnmap { map: u8, size_delta: i16, dir: u8 },
    /// `dma_alloc_coherent(dev, size, gfp)`.
    DmaAllocCoherent { dev: u8, gfp: u8, size: Size },
    /// `dma_free_coherent` of a slot, its size changed by `size_delta`.
    DmaFreeCoherent { slot: u8, size_delta: i16 },
    /// A free (`how % 6`: kfree, vfree, free_pages, kvfree, kmem_cache_free, __free_pages
    /// by struct page address) of an address made from `base` and `offset`: the direct
    /// map, the vmalloc area, `mem_map`, or `offset` itself.
    FreeRaw { how: u8, base: u8, offset: u64 },
    /// The same frees, at `offset` bytes into (or before) a slot.
    FreeInterior { how: u8, slot: u8, offset: i32 },
    /// `len` bytes (`len` ≤ 8: `bytes[..len]`, else `len` copies of `bytes[0]`) at physical
    /// address `phys % RAM span`, in the way `via` says.
    WriteRam { via: u8, phys: u64, bytes: [u8; 8], len: u8 },
    /// The same bytes over a [`target`] of a slot, `offset` bytes in.
    WriteAt { target: u8, via: u8, slot: u8, offset: i16, bytes: [u8; 8], len: u8 },
    /// The same bytes into a boot-reserved region (mem_map, per-CPU areas, page tables,
    /// the low 1 MiB, ...), `offset` modulo its size.
    WriteReserved { via: u8, region: u8, offset: u32, bytes: [u8; 8], len: u8 },
    /// The same bytes at an arbitrary kernel virtual address (`mmu`: through the MMU,
    /// else `copy_to_kernel`).
    PokeVirt { mmu: bool, va: u64, bytes: [u8; 8], len: u8 },
    /// Read `len` bytes through the MMU at a slot, `offset` bytes in.
    Read { slot: u8, offset: i32, len: u16 },
    /// Run the following operations on CPU `cpu` in context `ctx % 4` (process,
    /// softirq, hardirq, NMI).
    Cpu { cpu: u8, ctx: u8 },
    /// The invariant checker.
    Check {},
    /// `vm_unmap_aliases()`.
    Purge {},
    /// `drain_all_pages()`.
    Drain {},
    /// kswapd's turn.
    Kswapd {},
}

/// A decoded input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The machine.
    pub config: Config,
    /// The operations.
    pub ops: Vec<Op>,
}

impl Input {
    /// Decode: the configuration, then operations while bytes remain.
    pub fn decode(data: &[u8]) -> Input {
        let mut u = Unstructured::new(data);
        let config = Config::arbitrary(&mut u).unwrap_or_default();
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            match Op::arbitrary(&mut u) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        Input { config, ops }
    }

    /// The bytes that [`Input::decode`] reads back into this input.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.config.encode(&mut out);
        for op in &self.ops {
            op.encode(&mut out);
        }
        out
    }
}

/// The target.
pub fn run(data: &[u8]) {
    run_input(&Input::decode(data));
}

/// Run a decoded input.
pub fn run_input(input: &Input) {
    let mut state = State::boot(input.config);
    for op in &input.ops {
        state.apply(op);
        let _ = state.machine.take_console();
    }
    state.finish();
}

/// What an allocation came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `alloc_pages` of an order: `addr` is the first page frame's number.
    Pages(u32),
    /// kmalloc, krealloc or kvmalloc served by kmalloc.
    Kmalloc,
    /// A cache's object.
    Cache(KmemCacheRef),
    /// vmalloc, vmap or kvmalloc served by vmalloc.
    Vmalloc,
    /// `dma_alloc_coherent` for a device, with its bus address.
    Coherent(usize, DmaAddr),
}

/// An allocation the sequence may use.
#[derive(Clone, Copy, Debug)]
struct Slot {
    kind: Kind,
    /// The kernel virtual address (the page frame number for [`Kind::Pages`]).
    addr: u64,
    size: usize,
}

/// A streaming DMA mapping.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    dev: usize,
    bus: DmaAddr,
    size: usize,
    dir: DmaDataDirection,
}

/// The machine and what the sequence has made on it.
struct State {
    machine: Machine,
    devices: Vec<Arc<DmaDevice>>,
    slots: Vec<Slot>,
    caches: Vec<KmemCacheRef>,
    mappings: Vec<Mapping>,
    cpu: usize,
    ctx: Context,
    caches_made: usize,
}

/// GFP flag sets an operation's `gfp` byte picks from (modulo their number).
const GFPS: &[Gfp] = &[
    Gfp::GFP_KERNEL,
    Gfp::GFP_ATOMIC,
    Gfp::GFP_NOWAIT,
    Gfp::GFP_KERNEL.union(Gfp::__GFP_ZERO),
    Gfp::GFP_KERNEL.union(Gfp::__GFP_DMA),
    Gfp::GFP_KERNEL.union(Gfp::__GFP_DMA32),
    Gfp::GFP_KERNEL.union(Gfp::__GFP_HIGHMEM),
    Gfp::GFP_KERNEL.union(Gfp::__GFP_COMP),
    Gfp::GFP_KERNEL.union(Gfp::__GFP_NOFAIL),
    Gfp::GFP_KERNEL.union(Gfp::__GFP_NORETRY),
    Gfp::GFP_KERNEL.union(Gfp::__GFP_MOVABLE),
    Gfp::__GFP_DMA.union(Gfp::__GFP_HIGHMEM),
    Gfp::empty(),
];

/// Slab flags, one per bit of a `flags` byte.
const SLAB_FLAGS: [SlabFlags; 8] = [
    SlabFlags::CONSISTENCY_CHECKS,
    SlabFlags::RED_ZONE,
    SlabFlags::POISON,
    SlabFlags::HWCACHE_ALIGN,
    SlabFlags::CACHE_DMA,
    SlabFlags::CACHE_DMA32,
    SlabFlags::STORE_USER,
    SlabFlags::RECLAIM_ACCOUNT,
];

const DIRECTIONS: [DmaDataDirection; 4] = [
    DmaDataDirection::Bidirectional,
    DmaDataDirection::ToDevice,
    DmaDataDirection::FromDevice,
    DmaDataDirection::None,
];

fn gfp(byte: u8) -> Gfp {
    GFPS[byte as usize % GFPS.len()]
}

fn payload(bytes: &[u8; 8], len: u8) -> Vec<u8> {
    if len <= 8 {
        bytes[..len as usize].to_vec()
    } else {
        vec![bytes[0]; len as usize]
    }
}

/// Where a write lands: a physical address, a kernel virtual address, or both.
#[derive(Clone, Copy, Debug, Default)]
struct Location {
    phys: Option<u64>,
    va: Option<u64>,
}

impl State {
    fn boot(config: Config) -> State {
        let debug = if config.slab_debug {
            SlabFlags::DEBUG
        } else {
            SlabFlags::empty()
        };
        let machine = Machine::new(MachineConfig {
            ram: 64 << 20,
            cpus: if config.one_cpu { 1 } else { 2 },
            profile: if config.i386 {
                Profile::I386
            } else {
                Profile::X86_64
            },
            seed: 7,
            holes: vec![Hole::LEGACY],
            slab: SlabConfig {
                debug,
                ..SlabConfig::default()
            },
            init_on_free: config.init_on_free,
            ..MachineConfig::default()
        })
        .expect("a 64 MiB machine boots");
        let devices = [("isa", 24), ("pci", 32), ("nic", 64)]
            .iter()
            .filter_map(|&(name, bits)| machine.add_dma_device(name, bits).ok())
            .collect();
        State {
            machine,
            devices,
            slots: Vec::new(),
            caches: Vec::new(),
            mappings: Vec::new(),
            cpu: 0,
            ctx: Context::Process,
            caches_made: 0,
        }
    }

    fn remember(&mut self, kind: Kind, addr: u64, size: usize) {
        if self.slots.len() == MAX_SLOTS {
            self.slots.remove(0);
        }
        self.slots.push(Slot { kind, addr, size });
    }

    /// The slot `slot` picks; a free takes it out unless bit 7 is set.
    fn slot(&mut self, slot: u8, taking: bool) -> Option<Slot> {
        if self.slots.is_empty() {
            return None;
        }
        let i = (slot & 0x7f) as usize % self.slots.len();
        let s = self.slots[i];
        if taking && slot & 0x80 == 0 {
            self.slots.swap_remove(i);
        }
        Some(s)
    }

    fn cache(&self, cache: u8) -> Option<KmemCacheRef> {
        (!self.caches.is_empty()).then(|| self.caches[cache as usize % self.caches.len()])
    }

    fn device(&self, dev: u8) -> Option<Arc<DmaDevice>> {
        (!self.devices.is_empty()).then(|| self.devices[dev as usize % self.devices.len()].clone())
    }

    /// Run `f` on the current CPU in the current context.
    fn kernel<R>(&self, f: impl FnOnce(&Mm<SimPlatform>) -> R) -> Option<R> {
        self.machine.on_cpu(self.cpu, self.ctx, f).ok()
    }

    /// A slot's kernel virtual address (the direct-map address of a page slot's first
    /// page, when it has one).
    fn slot_va(&self, s: &Slot) -> Option<u64> {
        match s.kind {
            Kind::Pages(_) => self
                .machine
                .mm()
                .layout()
                .phys_to_virt(s.addr * PAGE_SIZE as u64),
            _ => Some(s.addr),
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::AllocPages { gfp: g, order } => self.alloc_pages(gfp(g), order as u32 % 12),
            Op::FreePages { slot, order } => self.free_pages(slot, order),
            Op::Kmalloc { gfp: g, size } => {
                let size = size.get();
                if let Some(Ok(a)) = self.kernel(|mm| mm.kmalloc(size, gfp(g))) {
                    self.remember(Kind::Kmalloc, a.0, size);
                }
            }
            Op::Kfree { slot } => {
                if let Some(s) = self.slot(slot, true) {
                    let va = self.slot_va(&s).unwrap_or(s.addr);
                    self.kernel(|mm| mm.kfree(VirtAddr(va)));
                }
            }
            Op::Krealloc { slot, gfp: g, size } => self.krealloc(slot, gfp(g), size.get()),
            Op::CacheCreate { size, align, flags } => self.cache_create(size.get(), align, flags),
            Op::CacheAlloc { cache, gfp: g } => {
                if let Some(r) = self.cache(cache) {
                    if let Some(Ok(a)) = self.kernel(|mm| mm.kmem_cache_alloc(r, gfp(g))) {
                        let size = self
                            .machine
                            .mm()
                            .cache(r)
                            .map_or(0, |c| c.object_size() as usize);
                        self.remember(Kind::Cache(r), a.0, size);
                    }
                }
            }
            Op::CacheFree { cache, slot } => {
                if let (Some(r), Some(s)) = (self.cache(cache), self.slot(slot, true)) {
                    self.kernel(|mm| mm.kmem_cache_free(r, VirtAddr(s.addr)));
                }
            }
            Op::CacheDestroy { cache } => {
                if let Some(r) = self.cache(cache) {
                    if let Some(Ok(())) = self.kernel(|mm| mm.kmem_cache_destroy(r)) {
                        self.caches.retain(|c| *c != r);
                    }
                }
            }
            Op::CacheShrink { cache } => {
                if let Some(r) = self.cache(cache) {
                    self.kernel(|mm| mm.kmem_cache_shrink(r));
                }
            }
            Op::Vmalloc { how, gfp: g, size } => self.vmalloc(how, gfp(g), size.get()),
            Op::Vfree { slot } => {
                if let Some(s) = self.slot(slot, true) {
                    self.kernel(|mm| mm.vfree(VirtAddr(s.addr)));
                }
            }
            Op::Vmap { slot, count } => self.vmap(slot, count),
            Op::Vunmap { slot } => {
                if let Some(s) = self.slot(slot, true) {
                    self.kernel(|mm| mm.vunmap(VirtAddr(s.addr)));
                }
            }
            Op::Kvmalloc { gfp: g, size } => {
                let size = size.get();
                if let Some(Ok(a)) = self.kernel(|mm| mm.kvmalloc(size, gfp(g))) {
                    let kind = if self.machine.mm().is_vmalloc_addr(a) {
                        Kind::Vmalloc
                    } else {
                        Kind::Kmalloc
                    };
                    self.remember(kind, a.0, size);
                }
            }
            Op::Kvfree { slot } => {
                if let Some(s) = self.slot(slot, true) {
                    self.kernel(|mm| mm.kvfree(VirtAddr(s.addr)));
                }
            }
            Op::DmaMap {
                dev,
                slot,
                offset,
                size,
                dir,
            } => self.dma_map(dev, slot, offset, size.get(), dir),
            Op::DmaUnmap {
                map,
                size_delta,
                dir,
            } => self.dma_unmap(map, size_delta, dir),
            Op::DmaAllocCoherent { dev, gfp: g, size } => {
                let (Some(d), size) = (self.device(dev), size.get()) else {
                    return;
                };
                if let Some(Ok((va, bus))) =
                    self.kernel(|mm| mm.dma_alloc_coherent(d.device(), size, gfp(g)))
                {
                    let index = dev as usize % self.devices.len();
                    self.remember(Kind::Coherent(index, bus), va.0, size);
                }
            }
            Op::DmaFreeCoherent { slot, size_delta } => self.dma_free_coherent(slot, size_delta),
            Op::FreeRaw { how, base, offset } => {
                let addr = self.raw_address(base, offset);
                self.free_any(how, addr);
            }
            Op::FreeInterior { how, slot, offset } => {
                if let Some(s) = self.slot(slot, false) {
                    let va = self.slot_va(&s).unwrap_or(s.addr);
                    self.free_any(how, va.wrapping_add(offset as i64 as u64));
                }
            }
            Op::WriteRam {
                via,
                phys,
                bytes,
                len,
            } => {
                let span = self.machine.platform().ram().span().max(1);
                let at = Location {
                    phys: Some(phys % span),
                    va: None,
                };
                self.write(via, at, &payload(&bytes, len));
            }
            Op::WriteAt {
                target,
                via,
                slot,
                offset,
                bytes,
                len,
            } => {
                if let Some(s) = self.slot(slot, false) {
                    let at = self.locate(target, &s, offset);
                    self.write(via, at, &payload(&bytes, len));
                }
            }
            Op::WriteReserved {
                via,
                region,
                offset,
                bytes,
                len,
            } => {
                let mm = self.machine.mm();
                let regions = mm.memblock().reserved().regions();
                if regions.is_empty() {
                    return;
                }
                let r = regions[region as usize % regions.len()];
                let at = Location {
                    phys: Some(r.base + offset as u64 % r.size.max(1)),
                    va: None,
                };
                self.write(via, at, &payload(&bytes, len));
            }
            Op::PokeVirt {
                mmu,
                va,
                bytes,
                len,
            } => {
                let at = Location {
                    phys: None,
                    va: Some(va),
                };
                let how = if mmu { via::MMU } else { via::DIRECT_MAP };
                self.write(how, at, &payload(&bytes, len));
            }
            Op::Read { slot, offset, len } => {
                if let Some(s) = self.slot(slot, false) {
                    let va = self.slot_va(&s).unwrap_or(s.addr);
                    let va = VirtAddr(va.wrapping_add(offset as i64 as u64));
                    let machine = &self.machine;
                    self.kernel(|_| machine.read(va, len as usize));
                }
            }
            Op::Cpu { cpu, ctx } => {
                self.cpu = cpu as usize % self.machine.config().cpus;
                self.ctx = [
                    Context::Process,
                    Context::Softirq,
                    Context::Hardirq,
                    Context::Nmi,
                ][ctx as usize % 4];
            }
            Op::Check {} => {
                let _ = self.machine.check();
            }
            Op::Purge {} => {
                self.kernel(|mm| mm.vm_unmap_aliases());
            }
            Op::Drain {} => {
                self.kernel(|mm| mm.drain_all_pages());
            }
            Op::Kswapd {} => {
                self.machine.run_kswapd();
            }
        }
    }

    fn alloc_pages(&mut self, gfp: Gfp, order: u32) {
        let pfn = self.kernel(|mm| mm.alloc_pages(gfp, order).map(|p| mm.page_to_pfn(p).0));
        if let Some(Ok(pfn)) = pfn {
            self.remember(Kind::Pages(order), pfn, PAGE_SIZE << order);
        }
    }

    fn free_pages(&mut self, slot: u8, order: u8) {
        let Some(s) = self.slot(slot, true) else {
            return;
        };
        let (pfn, order) = match s.kind {
            Kind::Pages(o) if order == 0 => (s.addr, o),
            Kind::Pages(_) => (s.addr, order as u32 % 12),
            _ => {
                let Some(phys) = self.machine.mm().kernel_virt_to_phys(s.addr) else {
                    return;
                };
                (phys / PAGE_SIZE as u64, order as u32 % 12)
            }
        };
        self.kernel(|mm| {
            if let Ok(page) = mm.pfn_to_page(Pfn(pfn)) {
                let _ = mm.__free_pages(page, order);
            }
        });
    }

    fn krealloc(&mut self, slot: u8, gfp: Gfp, size: usize) {
        let Some(s) = self.slot(slot, true) else {
            return;
        };
        let va = self.slot_va(&s).unwrap_or(s.addr);
        match self.kernel(|mm| mm.krealloc(VirtAddr(va), size, gfp)) {
            Some(Ok(a)) if a.0 > 16 => self.remember(Kind::Kmalloc, a.0, size),
            Some(Err(_)) if slot & 0x80 == 0 => self.remember(s.kind, s.addr, s.size),
            _ => {}
        }
    }

    fn cache_create(&mut self, size: usize, align: u8, flags: u8) {
        if self.caches_made == MAX_CACHES {
            return;
        }
        self.caches_made += 1;
        let align = if align == 0 { 0 } else { 1 << (align % 8) };
        let flags = SLAB_FLAGS
            .iter()
            .enumerate()
            .filter(|(bit, _)| flags & (1 << bit) != 0)
            .fold(SlabFlags::empty(), |all, (_, f)| all | *f);
        let name = format!("fuzz-{}", self.caches_made);
        if let Some(Ok(r)) = self.kernel(|mm| mm.kmem_cache_create(&name, size, align, flags, None))
        {
            self.caches.push(r);
        }
    }

    fn vmalloc(&mut self, how: u8, gfp: Gfp, size: usize) {
        let r = self.kernel(|mm| match how % 4 {
            0 => mm.vmalloc(size),
            1 => mm.vzalloc(size),
            2 => mm.__vmalloc(size, gfp),
            _ => mm.vmalloc_huge(size, gfp),
        });
        if let Some(Ok(a)) = r {
            self.remember(Kind::Vmalloc, a.0, size);
        }
    }

    fn vmap(&mut self, slot: u8, count: u16) {
        let Some(s) = self.slot(slot, false) else {
            return;
        };
        let first = match s.kind {
            Kind::Pages(_) => s.addr,
            _ => match self.machine.mm().kernel_virt_to_phys(s.addr) {
                Some(phys) => phys / PAGE_SIZE as u64,
                None => return,
            },
        };
        let count = count as u64 % MAX_VMAP_PAGES + 1;
        let pages: Vec<Pfn> = (0..count).map(|i| Pfn(first + i)).collect();
        let r = self.kernel(|mm| mm.vmap(&pages, VmFlags::VM_MAP, PgProt::kernel(mm.profile())));
        if let Some(Ok(a)) = r {
            self.remember(Kind::Vmalloc, a.0, count as usize * PAGE_SIZE);
        }
    }

    fn dma_map(&mut self, dev: u8, slot: u8, offset: u16, size: usize, dir: u8) {
        let (Some(d), Some(s)) = (self.device(dev), self.slot(slot, false)) else {
            return;
        };
        let va = self.slot_va(&s).unwrap_or(s.addr) + offset as u64;
        let dir = DIRECTIONS[dir as usize % 4];
        let bus = self.kernel(|mm| {
            let bus = mm.dma_map_single(d.device(), VirtAddr(va), size, dir);
            mm.dma_mapping_error(d.device(), bus).map(|_| bus)
        });
        if let Some(Ok(bus)) = bus {
            self.mappings.push(Mapping {
                dev: dev as usize % self.devices.len(),
                bus,
                size,
                dir,
            });
        }
    }

    fn dma_unmap(&mut self, map: u8, size_delta: i16, dir: u8) {
        if self.mappings.is_empty() {
            return;
        }
        let i = (map & 0x7f) as usize % self.mappings.len();
        let m = self.mappings[i];
        if map & 0x80 == 0 {
            self.mappings.swap_remove(i);
        }
        let d = self.devices[m.dev].clone();
        let size = (m.size as i64 + size_delta as i64).max(0) as usize;
        let dir = DIRECTIONS.get(dir as usize).copied().unwrap_or(m.dir);
        self.kernel(|mm| mm.dma_unmap_single(d.device(), m.bus, size, dir));
    }

    fn dma_free_coherent(&mut self, slot: u8, size_delta: i16) {
        let Some(s) = self.slot(slot, true) else {
            return;
        };
        let (dev, bus) = match s.kind {
            Kind::Coherent(dev, bus) => (dev, bus),
            _ => (
                0,
                self.machine.mm().kernel_virt_to_phys(s.addr).unwrap_or(0),
            ),
        };
        let Some(d) = self.devices.get(dev).cloned() else {
            return;
        };
        let size = (s.size as i64 + size_delta as i64).max(0) as usize;
        let va = self.slot_va(&s).unwrap_or(s.addr);
        self.kernel(|mm| mm.dma_free_coherent(d.device(), size, VirtAddr(va), bus));
    }

    /// An address from a base (the direct map, the vmalloc area, `mem_map`, or none)
    /// and an offset.
    fn raw_address(&self, base: u8, offset: u64) -> u64 {
        let mm = self.machine.mm();
        let span = mm.platform().ram().span().max(1);
        match base % 4 {
            0 => mm.layout().phys_to_virt(offset % span).unwrap_or(offset),
            1 => self
                .slots
                .iter()
                .find(|s| s.kind == Kind::Vmalloc)
                .map_or(offset, |s| s.addr.wrapping_add(offset % (16 << 20))),
            2 => {
                let pfn = (offset / 64) % (span / PAGE_SIZE as u64);
                match mm.pfn_to_page(Pfn(pfn)) {
                    Ok(page) => mm.struct_page_address(page).0 + offset % 64,
                    Err(_) => offset,
                }
            }
            _ => offset,
        }
    }

    /// Free `addr` in one of six ways.
    fn free_any(&self, how: u8, addr: u64) {
        let cache = self.caches.first().copied();
        self.kernel(|mm| {
            let va = VirtAddr(addr);
            let _ = match how % 6 {
                0 => mm.kfree(va).map_err(drop),
                1 => mm.vfree(va).map_err(drop),
                2 => mm.free_pages(va, 0).map_err(drop),
                3 => mm.kvfree(va).map_err(drop),
                4 => match cache {
                    Some(r) => mm.kmem_cache_free(r, va).map_err(drop),
                    None => Ok(()),
                },
                _ => match mm.page_at_struct_address(va) {
                    Some(page) => mm.__free_pages(page, 0).map_err(drop),
                    None => Ok(()),
                },
            };
        });
    }

    /// Where a [`target`] of a slot is, `offset` bytes in.
    fn locate(&self, target: u8, s: &Slot, offset: i16) -> Location {
        let mm = self.machine.mm();
        let off = offset as i64 as u64;
        let va = self.slot_va(s).unwrap_or(s.addr);
        let phys_of = |va: u64| mm.kernel_virt_to_phys(va);
        let at_va = |va: u64| Location {
            phys: phys_of(va),
            va: Some(va),
        };
        match target % target::COUNT {
            target::OBJECT => at_va(va.wrapping_add(off)),
            target::STRUCT_PAGE => {
                let pfn = match s.kind {
                    Kind::Pages(_) => Some(s.addr),
                    _ => phys_of(va).map(|p| p / PAGE_SIZE as u64),
                };
                match pfn.and_then(|pfn| mm.pfn_to_page(Pfn(pfn)).ok()) {
                    Some(page) => at_va(mm.struct_page_address(page).0.wrapping_add(off)),
                    None => Location::default(),
                }
            }
            target::PAGE_TABLE => self.page_table_entry(va, offset),
            target::KMEM_CACHE => {
                let cache = match s.kind {
                    Kind::Cache(r) => Some(r),
                    _ => mm.object_info(VirtAddr(va)).map(|o| o.cache),
                };
                match cache {
                    Some(r) => at_va(r.0.wrapping_add(off)),
                    None => Location::default(),
                }
            }
            target::SLAB_PAGE => match mm.virt_to_slab(VirtAddr(va)) {
                Some((_, page)) => at_va(mm.struct_page_address(page).0.wrapping_add(off)),
                None => Location::default(),
            },
            _ => at_va(va.wrapping_add(s.size as u64).wrapping_add(off)),
        }
    }

    /// An entry of the page-table walk of `va`: the level is `offset % levels`, and
    /// `offset / levels % entry size` bytes into the entry.
    fn page_table_entry(&self, va: u64, offset: i16) -> Location {
        let walk = self.machine.walk(VirtAddr(va));
        if walk.steps.is_empty() {
            return Location::default();
        }
        let offset = offset.unsigned_abs() as usize;
        let step = walk.steps[offset % walk.steps.len()];
        let entry = match self.machine.mm().profile() {
            Profile::X86_64 => 8,
            Profile::I386 => 4,
        };
        let phys = step.table.0 + (step.index * entry + offset / walk.steps.len() % entry) as u64;
        Location {
            phys: Some(phys),
            va: self.machine.mm().layout().phys_to_virt(phys),
        }
    }

    /// Write `bytes` at a location in one of the four ways (falling back to the
    /// location's other address when it lacks the one `via` needs).
    fn write(&self, via: u8, at: Location, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mm = self.machine.mm();
        let via = via % via::COUNT;
        match (via, at.phys, at.va) {
            (via::RAM, Some(phys), _) => {
                let _ = mm.platform().ram().write(phys, bytes);
            }
            (via::DMA, Some(phys), _) => {
                if let Some(d) = self.devices.last() {
                    d.load_buffer(bytes);
                    let _ = d.write_to_memory(&self.machine, phys, bytes.len());
                }
            }
            (via::DIRECT_MAP, _, Some(va)) => {
                let _ = mm.copy_to_kernel(VirtAddr(va), bytes);
            }
            (via::MMU, _, Some(va)) => {
                let machine = &self.machine;
                self.kernel(|_| machine.write(VirtAddr(va), bytes));
            }
            (_, Some(phys), _) => {
                let _ = mm.platform().ram().write(phys, bytes);
            }
            (_, None, Some(va)) => {
                let _ = mm.copy_to_kernel(VirtAddr(va), bytes);
            }
            (_, None, None) => {}
        }
    }

    /// After the sequence: the invariant checker and every `/proc` file.
    fn finish(&self) {
        let _ = self.machine.check();
        let mm = self.machine.mm();
        for file in kmemlab_mm::procfs::FILES {
            let mut out = String::new();
            let _ = kmemlab_mm::procfs::render(&mm, file, &mut out);
        }
        let _ = self.machine.take_console();
    }
}

/// Hand-written sequences, committed as `fuzz/corpus/mm_ops/seed-<name>` (their
/// [`Input::encode`] bytes): ordinary use of each allocator, and corruption of the
/// structures behind allocations.
pub fn seeds() -> Vec<(&'static str, Input)> {
    use Op::*;
    let x86 = Config::default();
    let debug = Config {
        slab_debug: true,
        ..Config::default()
    };
    let i386 = Config {
        i386: true,
        ..Config::default()
    };
    let b = |n: u64| n.to_le_bytes();
    let w = |target, via, offset, bytes, len| WriteAt {
        target,
        via,
        slot: 0x80,
        offset,
        bytes,
        len,
    };
    let kmalloc = |n| Kmalloc {
        gfp: 0,
        size: Size::bytes(n),
    };
    let seq = |config, ops: Vec<Op>| Input { config, ops };
    vec![
        (
            "pages",
            seq(
                x86,
                vec![
                    AllocPages { gfp: 0, order: 3 },
                    AllocPages { gfp: 4, order: 10 },
                    FreePages { slot: 0, order: 0 },
                    FreePages { slot: 0, order: 0 },
                    Check {},
                ],
            ),
        ),
        (
            "pages-double-free",
            seq(
                x86,
                vec![
                    AllocPages { gfp: 0, order: 0 },
                    FreePages {
                        slot: 0x80,
                        order: 0,
                    },
                    FreePages { slot: 0, order: 0 },
                    Check {},
                ],
            ),
        ),
        (
            "kmalloc-krealloc",
            seq(
                x86,
                vec![
                    kmalloc(100),
                    Krealloc {
                        slot: 0,
                        gfp: 0,
                        size: Size::bytes(300),
                    },
                    Kfree { slot: 0x80 },
                    Kfree { slot: 0 },
                    Check {},
                ],
            ),
        ),
        (
            "cache-lifecycle",
            seq(
                debug,
                vec![
                    CacheCreate {
                        size: Size::bytes(200),
                        align: 0,
                        flags: 0x47,
                    },
                    CacheAlloc { cache: 0, gfp: 0 },
                    CacheAlloc { cache: 0, gfp: 1 },
                    CacheFree { cache: 0, slot: 0 },
                    CacheShrink { cache: 0 },
                    CacheDestroy { cache: 0 },
                    CacheFree { cache: 0, slot: 0 },
                    CacheDestroy { cache: 0 },
                ],
            ),
        ),
        (
            "vmalloc-vmap",
            seq(
                x86,
                vec![
                    Vmalloc {
                        how: 0,
                        gfp: 0,
                        size: Size::bytes(0x4000),
                    },
                    AllocPages { gfp: 0, order: 2 },
                    Vmap { slot: 1, count: 3 },
                    Read {
                        slot: 2,
                        offset: 0,
                        len: 64,
                    },
                    Vunmap { slot: 2 },
                    Vfree { slot: 0 },
                    Purge {},
                    Check {},
                ],
            ),
        ),
        (
            "kvmalloc-atomic",
            seq(
                x86,
                vec![
                    Kvmalloc {
                        gfp: 0,
                        size: Size {
                            mantissa: 1,
                            shift: 7,
                        },
                    },
                    Kvmalloc {
                        gfp: 1,
                        size: Size::bytes(40000),
                    },
                    Kvfree { slot: 0 },
                    Kvfree { slot: 0 },
                ],
            ),
        ),
        (
            "dma-streaming",
            seq(
                x86,
                vec![
                    kmalloc(4096),
                    DmaMap {
                        dev: 1,
                        slot: 0,
                        offset: 0,
                        size: Size::bytes(4096),
                        dir: 2,
                    },
                    DmaUnmap {
                        map: 0x80,
                        size_delta: -8,
                        dir: 1,
                    },
                    DmaUnmap {
                        map: 0,
                        size_delta: 0,
                        dir: 9,
                    },
                    DmaAllocCoherent {
                        dev: 0,
                        gfp: 0,
                        size: Size::bytes(8192),
                    },
                    DmaFreeCoherent {
                        slot: 1,
                        size_delta: 0,
                    },
                ],
            ),
        ),
        (
            "hardirq-allocations",
            seq(
                x86,
                vec![
                    Cpu { cpu: 1, ctx: 2 },
                    AllocPages { gfp: 0, order: 0 },
                    AllocPages { gfp: 1, order: 0 },
                    Vmalloc {
                        how: 0,
                        gfp: 1,
                        size: Size::bytes(4096),
                    },
                    Cpu { cpu: 0, ctx: 0 },
                    Drain {},
                    Check {},
                ],
            ),
        ),
        (
            "overflow-kmalloc",
            seq(
                debug,
                vec![
                    kmalloc(100),
                    w(
                        target::PAST_END,
                        via::DIRECT_MAP,
                        0,
                        b(0x4141_4141_4141_4141),
                        8,
                    ),
                    Kfree { slot: 0 },
                    Check {},
                ],
            ),
        ),
        (
            "corrupt-freelist",
            seq(
                x86,
                vec![
                    kmalloc(64),
                    kmalloc(64),
                    Kfree { slot: 0x80 },
                    w(target::OBJECT, via::RAM, 0, b(0xdead_beef_dead_beef), 8),
                    kmalloc(64),
                    kmalloc(64),
                    Check {},
                ],
            ),
        ),
        (
            "corrupt-struct-page",
            seq(
                x86,
                vec![
                    AllocPages { gfp: 0, order: 2 },
                    w(target::STRUCT_PAGE, via::RAM, 0, b(u64::MAX), 8),
                    FreePages { slot: 0, order: 0 },
                    Check {},
                ],
            ),
        ),
        (
            "corrupt-slab-page",
            seq(
                x86,
                vec![
                    kmalloc(128),
                    w(target::SLAB_PAGE, via::DMA, 8, b(0x4141_4141_4141_4141), 8),
                    kmalloc(128),
                    Kfree { slot: 0 },
                    Check {},
                ],
            ),
        ),
        (
            "corrupt-kmem-cache",
            seq(
                x86,
                vec![
                    CacheCreate {
                        size: Size::bytes(96),
                        align: 0,
                        flags: 0,
                    },
                    CacheAlloc { cache: 0, gfp: 0 },
                    w(target::KMEM_CACHE, via::DIRECT_MAP, 16, b(0xffff), 8),
                    CacheAlloc { cache: 0, gfp: 0 },
                    CacheFree { cache: 0, slot: 0 },
                    CacheDestroy { cache: 0 },
                ],
            ),
        ),
        (
            "corrupt-page-table",
            seq(
                x86,
                vec![
                    Vmalloc {
                        how: 0,
                        gfp: 0,
                        size: Size::bytes(8192),
                    },
                    w(target::PAGE_TABLE, via::RAM, 3, b(0x41), 1),
                    Read {
                        slot: 0,
                        offset: 0,
                        len: 16,
                    },
                    Vmalloc {
                        how: 0,
                        gfp: 0,
                        size: Size::bytes(8192),
                    },
                    Vfree { slot: 0 },
                    Purge {},
                    Check {},
                ],
            ),
        ),
        (
            "corrupt-page-table-i386",
            seq(
                i386,
                vec![
                    Vmalloc {
                        how: 0,
                        gfp: 0,
                        size: Size::bytes(8192),
                    },
                    w(target::PAGE_TABLE, via::MMU, 1, b(0xff), 1),
                    Vfree { slot: 0 },
                    Check {},
                ],
            ),
        ),
        (
            "corrupt-reserved",
            seq(
                x86,
                vec![
                    kmalloc(32),
                    WriteReserved {
                        via: via::RAM,
                        region: 1,
                        offset: 64,
                        bytes: b(0x5a5a_5a5a_5a5a_5a5a),
                        len: 200,
                    },
                    kmalloc(32),
                    Kfree { slot: 0 },
                    Check {},
                ],
            ),
        ),
        (
            "dma-over-ram",
            seq(
                x86,
                vec![
                    kmalloc(512),
                    WriteRam {
                        via: via::DMA,
                        phys: 0x10_0000,
                        bytes: b(0),
                        len: 255,
                    },
                    Kfree { slot: 0 },
                    Check {},
                ],
            ),
        ),
        (
            "free-interior-and-raw",
            seq(
                x86,
                vec![
                    kmalloc(256),
                    Vmalloc {
                        how: 1,
                        gfp: 0,
                        size: Size::bytes(12288),
                    },
                    FreeInterior {
                        how: 0,
                        slot: 0,
                        offset: 8,
                    },
                    FreeInterior {
                        how: 1,
                        slot: 1,
                        offset: 4096,
                    },
                    FreeRaw {
                        how: 5,
                        base: 2,
                        offset: 0x40_0000,
                    },
                    FreeRaw {
                        how: 2,
                        base: 0,
                        offset: 0x20_0000,
                    },
                    Check {},
                ],
            ),
        ),
        (
            "poke-virt",
            seq(
                x86,
                vec![
                    PokeVirt {
                        mmu: true,
                        va: 0xffff_8880_0100_0000,
                        bytes: b(0x41),
                        len: 1,
                    },
                    PokeVirt {
                        mmu: false,
                        va: 0xffff_8880_0020_0000,
                        bytes: b(0x41),
                        len: 8,
                    },
                    Vmalloc {
                        how: 0,
                        gfp: 0,
                        size: Size::bytes(8192),
                    },
                    Check {},
                ],
            ),
        ),
    ]
}
