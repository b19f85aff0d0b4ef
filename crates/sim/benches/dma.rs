//! DMA API benchmarks: a streaming mapping, the device's transfer into it and the unmap,
//! on a simulated machine, with a host `memcpy` of the same bytes as the peer (what moving
//! the data costs with no DMA API in the way).
//!
//! The machine: 1 GiB x86_64 booted with a swiotlb pool of 256 slots (512 KiB) below
//! 16 MiB (`SwiotlbConfig::with_slabs(256).below(16 << 20)`; x86 itself sets up swiotlb
//! only when RAM extends above 4 GiB), so that a 24-bit (ISA) device can bounce. Two
//! devices: `nic32` (32 address lines: reaches all of RAM, mapped directly) and `isa24`
//! (24 lines: a buffer above 16 MiB bounces through swiotlb). dma-debug is on, as it is
//! on every kmemlab machine (`CONFIG_DMA_API_DEBUG`): each map and unmap also enters and
//! checks a dma-debug entry, and `dma_mapping_error` is called after each map as a driver
//! must.
//!
//! Groups (criterion ids are `group/function`):
//!
//! * `map_single_4KiB`: `dma_map_single(4 KiB, DMA_FROM_DEVICE)` of a kmalloc'd buffer
//!   above 16 MiB + `dma_mapping_error` + the device writing 4 KiB to the bus address +
//!   `dma_unmap_single`. `kmemlab/direct_32bit` (bus address = physical address, no copy
//!   but the device's) and `kmemlab/swiotlb_24bit` (slots taken, the buffer copied into
//!   the bounce buffer at map, as the kernel does whatever the direction since 5.19, the
//!   device's write lands in the bounce buffer, and unmap copies it back and frees the
//!   slots: three 4 KiB copies in all). Peer: `copy_from_slice` of 4 KiB between two host
//!   buffers.
//! * `map_sg_64KiB`: a 64 KiB vmalloc buffer's scatterlist (built once, outside the timed
//!   loop, by `sg_alloc_table_from_vmalloc`) mapped with `dma_map_sgtable` for `nic32`, the
//!   mapped segments collected (into a reused host vector) and written by the device,
//!   then `dma_unmap_sgtable`: `kmemlab/direct_32bit`. `kmemlab/direct_32bit_with_table`
//!   also builds and frees the table in every iteration (what a driver does per request);
//!   `kmemlab/swiotlb_24bit` maps the same table for `isa24` (every segment bounces).
//!   Peer: `copy_from_slice` of 64 KiB.
//!
//! Every iteration unmaps what it maps; after each kmemlab benchmark no mapping is live,
//! every swiotlb slot is free, `check()` passes, the console is empty and the device's
//! bytes are found in the buffer. Each kmemlab timing loop runs inside one `Machine::run`
//! closure; the machine boots with a fixed seed.
//!
//! Run with `cargo bench -p kmemlab-sim --bench dma`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use kmemlab_mm::dma::{DmaDataDirection::FromDevice, SgTable, SwiotlbConfig};
use kmemlab_mm::{Gfp, VirtAddr, PAGE_SIZE};
use kmemlab_sim::{DmaDevice, Machine, MachineConfig};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const SINGLE: usize = 4096;
const SG: usize = 64 << 10;

struct Setup {
    m: Machine,
    nic32: Arc<DmaDevice>,
    isa24: Arc<DmaDevice>,
}

fn setup() -> Setup {
    let m = Machine::new_with_swiotlb(
        MachineConfig {
            ram: GIB,
            seed: 21,
            ..Default::default()
        },
        SwiotlbConfig::with_slabs(256).below(16 * MIB),
    )
    .expect("machine boots");
    let nic32 = m.add_dma_device("nic32", 32).unwrap();
    let isa24 = m.add_dma_device("isa24", 24).unwrap();
    Setup { m, nic32, isa24 }
}

/// A recognisable pattern for the device to write.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// After a kmemlab benchmark: nothing mapped, every slot free, the books consistent, no
/// message, and the device's last bytes in the buffer.
fn check_after(s: &Setup, name: &str, buf: VirtAddr, want: &[u8]) {
    let mm = s.m.mm();
    let stats = mm.dma_stats();
    assert_eq!(stats.mappings_live, 0, "{name}: mappings left");
    assert_eq!(stats.swiotlb_slots_used, 0, "{name}: swiotlb slots left");
    mm.check().unwrap();
    let console = s.m.take_console();
    assert!(console.is_empty(), "{name}: {console:?}");
    let mut seen = vec![0; want.len()];
    s.m.run(|mm| mm.copy_from_kernel_virt(buf, &mut seen))
        .unwrap();
    assert_eq!(seen, want, "{name}: the device's bytes");
}

/// The peer: a host copy of `len` bytes.
fn bench_memcpy(group: &mut Group<'_>, len: usize) {
    let src = pattern(len, 9);
    let mut dst = vec![0u8; len];
    group.bench_function("peer/memcpy", |b| {
        b.iter(|| {
            black_box(&mut dst).copy_from_slice(black_box(&src));
        })
    });
    assert_eq!(dst, src);
}

fn map_single(group: &mut Group<'_>, s: &Setup, name: &str, dev: &DmaDevice, bounce: bool) {
    let data = pattern(SINGLE, dev.mask_bits() as u8);
    dev.load_buffer(&data);
    let buf = s.m.run(|mm| mm.kmalloc(SINGLE, Gfp::GFP_KERNEL)).unwrap();
    let phys = s.m.mm().layout().virt_to_phys(buf.0).unwrap();
    assert!(phys >= 16 * MIB, "GFP_KERNEL memory above ZONE_DMA");
    // Direct or bounced, as intended.
    s.m.run(|mm| {
        let a = mm.dma_map_single(dev.device(), buf, SINGLE, FromDevice);
        mm.dma_mapping_error(dev.device(), a).unwrap();
        assert_eq!(
            a != phys,
            bounce,
            "{name}: bus address {a:#x}, buffer at {phys:#x}"
        );
        mm.dma_unmap_single(dev.device(), a, SINGLE, FromDevice);
    });
    let bounced = s.m.mm().dma_stats().bounced_maps;
    group.bench_function(name, |b| {
        s.m.run(|mm| {
            b.iter(|| {
                let a = mm.dma_map_single(dev.device(), black_box(buf), SINGLE, FromDevice);
                mm.dma_mapping_error(dev.device(), a).unwrap();
                dev.write_to_memory(&s.m, a, SINGLE).unwrap();
                mm.dma_unmap_single(dev.device(), black_box(a), SINGLE, FromDevice);
            })
        })
    });
    assert_eq!(
        s.m.mm().dma_stats().bounced_maps > bounced,
        bounce,
        "{name}"
    );
    check_after(s, name, buf, &data);
    s.m.run(|mm| mm.kfree(buf)).unwrap();
}

fn map_single_4k(c: &mut Criterion) {
    let mut group = c.benchmark_group("map_single_4KiB");
    let s = setup();
    map_single(&mut group, &s, "kmemlab/direct_32bit", &s.nic32, false);
    map_single(&mut group, &s, "kmemlab/swiotlb_24bit", &s.isa24, true);
    bench_memcpy(&mut group, SINGLE);
    group.finish();
}

/// A 64 KiB vmalloc buffer and its scatterlist for `dev` (built as drivers build it).
struct SgBuf {
    buf: VirtAddr,
    table: SgTable,
}

/// Two 64 KiB vmalloc buffers and their scatterlists: the first vmalloc of a fresh
/// machine, physically contiguous (one entry), and one allocated right after 32 pages were
/// taken and every other one freed again, so that CPU 0's per-CPU list hands vmalloc pages
/// of which no two are adjacent (as on a machine that has been running a while).
/// Deterministic for a given boot.
fn sg_buffers(s: &Setup) -> (SgBuf, SgBuf) {
    let dev = s.nic32.device();
    s.m.run(|mm| {
        let table = |buf| {
            mm.sg_alloc_table_from_vmalloc(dev, buf, SG, Gfp::GFP_KERNEL)
                .unwrap()
        };
        let buf = mm.vmalloc(SG).unwrap();
        let contiguous = SgBuf {
            buf,
            table: table(buf),
        };
        // The page tables and slab objects the next vmalloc needs, made now.
        let warm = mm.vmalloc(SG).unwrap();
        mm.vfree(warm).unwrap();
        mm.purge_vmap_area_lazy();
        let pages: Vec<VirtAddr> = (0..2 * SG / PAGE_SIZE)
            .map(|_| {
                let p = mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap();
                mm.page_address(p).unwrap()
            })
            .collect();
        let mut held = vec![];
        for (i, p) in pages.into_iter().enumerate() {
            if i % 2 == 0 {
                held.push(p);
            } else {
                mm.free_pages(p, 0).unwrap();
            }
        }
        let buf = mm.vmalloc(SG).unwrap();
        let scattered = SgBuf {
            buf,
            table: table(buf),
        };
        for p in held {
            mm.free_pages(p, 0).unwrap();
        }
        assert_eq!(
            contiguous.table.orig_nents, 1,
            "the first vmalloc is contiguous"
        );
        assert!(scattered.table.orig_nents > 1, "the second is scattered");
        (contiguous, scattered)
    })
}

fn map_sg(
    group: &mut Group<'_>,
    s: &Setup,
    name: &str,
    dev: &DmaDevice,
    sg: &SgBuf,
    with_table: bool,
) {
    let data = pattern(SG, dev.mask_bits() as u8 ^ sg.table.orig_nents as u8);
    dev.load_buffer(&data);
    let mut segs: Vec<(u64, usize)> = Vec::with_capacity(SG / PAGE_SIZE);
    let bounced = s.m.mm().dma_stats().bounced_maps;
    group.bench_function(name, |b| {
        s.m.run(|mm| {
            b.iter(|| {
                let mut t = if with_table {
                    mm.sg_alloc_table_from_vmalloc(dev.device(), sg.buf, SG, Gfp::GFP_KERNEL)
                        .unwrap()
                } else {
                    sg.table
                };
                mm.dma_map_sgtable(dev.device(), &mut t, FromDevice)
                    .unwrap();
                segs.clear();
                segs.extend(mm.sg_dma_segments(&t));
                assert_eq!(dev.write_segments(&s.m, &segs), Ok(SG));
                mm.dma_unmap_sgtable(dev.device(), &t, FromDevice);
                if with_table {
                    mm.sg_free_table(&mut t);
                }
            })
        })
    });
    assert_eq!(segs.len(), sg.table.orig_nents as usize, "{name}: segments");
    let bounce = dev.mask_bits() < 32;
    assert_eq!(
        s.m.mm().dma_stats().bounced_maps > bounced,
        bounce,
        "{name}"
    );
    check_after(s, name, sg.buf, &data);
}

fn map_sg_64k(c: &mut Criterion) {
    let mut group = c.benchmark_group("map_sg_64KiB");
    let s = setup();
    let (one, many) = sg_buffers(&s);
    eprintln!(
        "map_sg_64KiB: scatterlist entries: contiguous {}, scattered {}",
        one.table.orig_nents, many.table.orig_nents
    );
    let (nic, isa) = (&s.nic32, &s.isa24);
    map_sg(
        &mut group,
        &s,
        "kmemlab/direct_32bit/contiguous",
        nic,
        &one,
        false,
    );
    map_sg(
        &mut group,
        &s,
        "kmemlab/direct_32bit/scattered",
        nic,
        &many,
        false,
    );
    map_sg(
        &mut group,
        &s,
        "kmemlab/direct_32bit/scattered_with_table",
        nic,
        &many,
        true,
    );
    map_sg(
        &mut group,
        &s,
        "kmemlab/swiotlb_24bit/contiguous",
        isa,
        &one,
        false,
    );
    map_sg(
        &mut group,
        &s,
        "kmemlab/swiotlb_24bit/scattered",
        isa,
        &many,
        false,
    );
    bench_memcpy(&mut group, SG);
    group.finish();
    s.m.run(|mm| {
        for mut b in [one, many] {
            mm.sg_free_table(&mut b.table);
            mm.vfree(b.buf).unwrap();
        }
    });
    assert!(s.m.take_console().is_empty());
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = map_single_4k, map_sg_64k
}
criterion_main!(benches);
