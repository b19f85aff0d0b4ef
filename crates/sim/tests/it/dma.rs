//! The DMA API on the simulated machine: devices that master the bus, streaming
//! mappings, vmalloc refused and scatterlists of vmalloc memory accepted, swiotlb bounces
//! and exhaustion, coherent memory and pools, and dma-debug's reports, with the kernel's
//! words; everything given back at the end.

use crate::fixtures::*;
use kmemlab_mm::dma::{
    dma_bit_mask, Device, DmaDataDirection as Dir, DmaDebugError, DmaError, SwiotlbConfig,
    DMA_MAPPING_ERROR, IO_TLB_SIZE,
};
use kmemlab_mm::{Context, Gfp, Mm, Pfn, PhysAddr, Profile, VirtAddr, ZoneType, PAGE_SIZE};
use kmemlab_sim::{BusError, Hole, Machine, SimPlatform};

const PROFILES: [Profile; 2] = [Profile::X86_64, Profile::I386];

/// A 64 MiB machine whose swiotlb pool (256 slots, 512 KiB) sits below 16 MiB, where
/// even an ISA device reaches it.
fn isa_machine(profile: Profile) -> Machine {
    MachineBuilder::new()
        .profile(profile)
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::with_slabs(256).below(16 * MIB))
        .boot()
}

/// `kmem_cache_shrink` every cache, so that the slab pages left are the live objects'.
fn shrink_all_caches(m: &Machine) {
    m.run(|mm| {
        let mut caches = vec![];
        mm.for_each_cache(|s| {
            caches.push(s.handle());
            None::<()>
        });
        for c in caches {
            mm.kmem_cache_shrink(c).unwrap();
        }
    });
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn phys_of(mm: &Mm<SimPlatform>, va: VirtAddr) -> u64 {
    mm.layout().virt_to_phys(va.0).expect("direct-map address")
}

/// A kmalloc'd buffer above 16 MiB (out of an ISA device's reach).
fn high_kmalloc(mm: &Mm<SimPlatform>, size: usize) -> VirtAddr {
    let buf = mm.kmalloc(size, Gfp::GFP_KERNEL).unwrap();
    assert!(
        phys_of(mm, buf) >= 16 * MIB,
        "GFP_KERNEL memory above ZONE_DMA"
    );
    buf
}

// ----- masks ---------------------------------------------------------------------

#[test]
fn masks_default_to_32_bits_and_unsupported_masks_are_eio() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(64 * MIB)
            .cpus(2)
            .seed(3)
            .swiotlb(SwiotlbConfig::off())
            .boot();
        let mm = m.mm();
        let dev = Device::new("simdma", "probe");
        assert_eq!(dev.dma_mask(), dma_bit_mask(32));
        assert_eq!(dev.coherent_dma_mask(), dma_bit_mask(32));
        assert_eq!(dev.dma_get_max_seg_size(), 64 << 10);
        assert_eq!(dev.dma_get_seg_boundary(), 0xffff_ffff);
        // Below ZONE_DMA's 24 bits nothing can be promised: -EIO, masks unchanged.
        assert_eq!(mm.dma_set_mask(&dev, dma_bit_mask(20)), Err(DmaError::Io));
        assert_eq!(
            mm.dma_set_mask_and_coherent(&dev, dma_bit_mask(23))
                .map_err(|e| e.errno()),
            Err(-5)
        );
        assert_eq!(dev.dma_mask(), dma_bit_mask(32));
        mm.dma_set_mask_and_coherent(&dev, dma_bit_mask(24))
            .unwrap();
        assert_eq!(
            (dev.dma_mask(), dev.coherent_dma_mask()),
            (0xff_ffff, 0xff_ffff)
        );
        mm.dma_set_coherent_mask(&dev, dma_bit_mask(64)).unwrap();
        // i386 without PAE has a 32-bit dma_addr_t: the mask is truncated to it.
        let expected = match profile {
            Profile::X86_64 => u64::MAX,
            Profile::I386 => 0xffff_ffff,
        };
        assert_eq!(dev.coherent_dma_mask(), expected);
        // The machine probes a device with its address lines, and refuses a 20-bit one.
        let e = m.add_dma_device("tiny", 20).unwrap_err();
        assert!(e.to_string().contains("DMA_BIT_MASK(20)"), "{e}");
        assert!(m.dma_device("tiny").is_none());
        let isa = m.add_dma_device("isa", 24).unwrap();
        assert_eq!(isa.device().dma_mask(), 0xff_ffff);
        assert!(m.add_dma_device("isa", 24).is_err(), "names are unique");
        assert_eq!(m.dma_device("isa").unwrap().mask_bits(), 24);
    }
}

// ----- streaming mappings of kmalloc memory -------------------------------------

#[test]
fn device_dma_into_kmalloc_buffer_is_read_back_through_the_mmu() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(128 * MIB)
            .cpus(2)
            .seed(3)
            .swiotlb(SwiotlbConfig::off())
            .boot();
        let nic = m.add_dma_device("nic", 32).unwrap();
        let data = pattern(1500, 7);
        let buf = m.run(|mm| {
            let buf = mm.kmalloc(2048, Gfp::GFP_KERNEL).unwrap();
            let addr = mm.dma_map_single(nic.device(), buf, 1500, Dir::FromDevice);
            mm.dma_mapping_error(nic.device(), addr).unwrap();
            // x86 without an IOMMU: the bus address is the physical address.
            assert_eq!(addr, phys_of(mm, buf));
            assert_eq!(mm.dma_stats().mappings_live, 1);
            nic.load_buffer(&data);
            nic.write_to_memory(&m, addr, 1500).unwrap();
            mm.dma_unmap_single(nic.device(), addr, 1500, Dir::FromDevice);
            buf
        });
        // The CPU reads it through its TLB and the kernel's page tables.
        assert_eq!(m.read(buf, 1500).unwrap(), data);
        let stats = m.mm().dma_stats();
        assert_eq!(
            (stats.maps, stats.bounced_maps, stats.mappings_live),
            (1, 0, 0)
        );
        assert_eq!(stats.debug_error_count, 0);
        assert_eq!(nic.counters(), (1, 1500, 0));
        assert!(m.take_console().is_empty());
        m.run(|mm| mm.kfree(buf)).unwrap();
    }
}

#[test]
fn device_reads_what_the_cpu_wrote_to_a_kmalloc_buffer() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(64 * MIB)
            .cpus(2)
            .seed(3)
            .swiotlb(SwiotlbConfig::off())
            .boot();
        let disk = m.add_dma_device("disk", 64).unwrap();
        let data = pattern(4096, 1);
        m.run(|mm| {
            let buf = mm.kmalloc(4096, Gfp::GFP_KERNEL).unwrap();
            m.write(buf, &data).unwrap();
            let addr = mm.dma_map_single(disk.device(), buf, 4096, Dir::ToDevice);
            mm.dma_mapping_error(disk.device(), addr).unwrap();
            disk.read_from_memory(&m, addr, 4096).unwrap();
            mm.dma_unmap_single(disk.device(), addr, 4096, Dir::ToDevice);
            assert_eq!(disk.buffer(), data);
            mm.kfree(buf).unwrap();
        });
        assert!(m.take_console().is_empty());
    }
}

// ----- vmalloc memory -------------------------------------------------------------

#[test]
fn dma_map_single_of_vmalloc_memory_is_rejected_with_the_kernels_words() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(64 * MIB)
            .cpus(2)
            .seed(3)
            .swiotlb(SwiotlbConfig::off())
            .boot();
        let nic = m.add_dma_device("nic", 32).unwrap();
        m.run(|mm| {
            let buf = mm.vmalloc(8192).unwrap();
            let addr = mm.dma_map_single(nic.device(), buf, 8192, Dir::FromDevice);
            assert_eq!(addr, DMA_MAPPING_ERROR);
            assert_eq!(
                mm.dma_mapping_error(nic.device(), addr),
                Err(DmaError::NoMem)
            );
            // sg_set_buf() has no virt_to_page for it either.
            let mut t = mm.sg_alloc_table(1, Gfp::GFP_KERNEL).unwrap();
            assert_eq!(
                mm.sg_set_buf(t.sg(0).unwrap(), buf, 100),
                Err(DmaError::Inval)
            );
            mm.sg_free_table(&mut t);
            mm.vfree(buf).unwrap();
        });
        let console = m.take_console();
        assert_eq!(
            console,
            warn_lines(
                0,
                100,
                "kmemlab/0",
                "Not tainted",
                Some("simdma nic: rejecting DMA map of vmalloc memory"),
                "include/linux/dma-mapping.h:332 dma_map_single_attrs"
            ),
            "{console:#?}"
        );
        let stats = m.mm().dma_stats();
        assert_eq!(
            (stats.vmalloc_rejections, stats.maps, stats.mappings_live),
            (1, 0, 0)
        );
    }
}

#[test]
fn naive_pa_of_a_vmalloc_address_sends_the_device_to_the_wrong_memory() {
    // i386, 1 GiB: __pa(vmalloc address) = va - PAGE_OFFSET lands in HighMem RAM.
    let m = MachineBuilder::new()
        .profile(Profile::I386)
        .ram(GIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::off())
        .boot();
    let dev = m.add_dma_device("naive", 32).unwrap();
    let data = pattern(4096, 9);
    let (buf, naive, real) = m.run(|mm| {
        let buf = mm.vzalloc(4096).unwrap();
        let naive = buf.0 - mm.layout().page_offset;
        let real = mm.vmalloc_to_pfn(buf).unwrap();
        (buf, naive, real)
    });
    assert!(
        (896 * MIB..GIB).contains(&naive),
        "{naive:#x} is HighMem RAM"
    );
    assert_ne!(PhysAddr(naive).pfn(), real, "the real page is elsewhere");
    // The page the naive address names is free: a safe scratch page to overwrite.
    let mm = m.mm();
    let victim = mm.pfn_to_page(PhysAddr(naive).pfn()).unwrap();
    assert_eq!(victim.refcount(), 0);
    let ram = m.platform().ram();
    let mut before = vec![0; 4096];
    ram.read(naive, &mut before).unwrap();
    dev.load_buffer(&data);
    dev.write_to_memory(&m, naive, 4096).unwrap();
    // The driver's buffer is untouched, and the page the address names was overwritten.
    let mut seen = vec![0; 4096];
    m.mm().copy_from_kernel_virt(buf, &mut seen).unwrap();
    assert_eq!(seen, vec![0; 4096]);
    let mut after = vec![0; 4096];
    ram.read(naive, &mut after).unwrap();
    assert_eq!(after, data);
    assert_ne!(before, data);
    ram.write(naive, &before).unwrap();
    m.run(|mm| mm.vfree(buf)).unwrap();

    // x86_64: the vmalloc area is 71 TiB above the direct map: no RAM answers there.
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::off())
        .boot();
    let dev = m.add_dma_device("naive", 64).unwrap();
    let buf = m.run(|mm| mm.vzalloc(4096)).unwrap();
    let naive = buf.0 - m.mm().layout().page_offset;
    dev.load_buffer(&data);
    assert_eq!(
        dev.write_to_memory(&m, naive, 4096),
        Err(BusError::NotRam {
            addr: naive,
            len: 4096
        })
    );
    assert_eq!(dev.counters().2, 1);
    let mut seen = vec![0; 4096];
    m.mm().copy_from_kernel_virt(buf, &mut seen).unwrap();
    assert_eq!(seen, vec![0; 4096]);
    m.run(|mm| mm.vfree(buf)).unwrap();
}

#[test]
fn scatterlist_of_a_vmalloc_buffer_works_byte_for_byte() {
    for profile in PROFILES {
        // On i386 with 1 GiB, vmalloc takes HighMem pages: no direct map behind them.
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(1 << 30)
            .cpus(2)
            .seed(3)
            .swiotlb(SwiotlbConfig::off())
            .boot();
        let dev = m.add_dma_device("sg", 32).unwrap();
        let len = 9 * PAGE_SIZE + 1234;
        let from_device = pattern(len, 3);
        let to_device = pattern(len, 77);
        m.run(|mm| {
            let buf = mm.vmalloc(len).unwrap();
            // Independently: the physically contiguous runs behind the buffer.
            let mut pfns = vec![];
            mm.vm_area_pfns(buf, |p| pfns.push(p)).unwrap();
            let runs = 1 + pfns.windows(2).filter(|w| w[1].0 != w[0].0 + 1).count();
            if profile == Profile::I386 {
                assert!(
                    pfns.iter().any(|p| p.phys().0 >= 896 * MIB),
                    "HighMem pages"
                );
            }

            let mut t = mm
                .sg_alloc_table_from_vmalloc(dev.device(), buf, len, Gfp::GFP_KERNEL)
                .unwrap();
            assert_eq!(
                t.orig_nents as usize, runs,
                "adjacent pages merged, no more"
            );
            mm.dma_map_sgtable(dev.device(), &mut t, Dir::FromDevice)
                .unwrap();
            let segs: Vec<_> = mm.sg_dma_segments(&t).collect();
            assert_eq!(segs.len(), t.nents as usize);
            assert_eq!(segs.iter().map(|s| s.1).sum::<usize>(), len);
            assert!(segs.iter().all(|s| s.1 <= 64 << 10));
            dev.load_buffer(&from_device);
            assert_eq!(dev.write_segments(&m, &segs), Ok(len));
            mm.dma_unmap_sgtable(dev.device(), &t, Dir::FromDevice);
            let mut seen = vec![0; len];
            mm.copy_from_kernel_virt(buf, &mut seen).unwrap();
            assert_eq!(seen, from_device);

            mm.copy_to_kernel_virt(buf, &to_device).unwrap();
            mm.dma_map_sgtable(dev.device(), &mut t, Dir::ToDevice)
                .unwrap();
            let segs: Vec<_> = mm.sg_dma_segments(&t).collect();
            assert_eq!(dev.read_segments(&m, &segs), Ok(len));
            mm.dma_unmap_sgtable(dev.device(), &t, Dir::ToDevice);
            assert_eq!(dev.buffer(), to_device);
            mm.sg_free_table(&mut t);
            mm.vfree(buf).unwrap();
        });
        assert!(m.take_console().is_empty());
        assert_eq!(m.mm().dma_stats().mappings_live, 0);
        m.mm().check().unwrap();
    }
}

#[test]
fn adjacent_pages_merge_within_max_seg_size_and_the_segment_boundary() {
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::off())
        .boot();
    let dev = m.add_dma_device("merge", 32).unwrap();
    m.run(|mm| {
        let block = mm.alloc_pages(Gfp::GFP_KERNEL, 5).unwrap();
        let first = mm.page_to_pfn(block);
        let pfns: Vec<Pfn> = (0..32).map(|i| Pfn(first.0 + i)).collect();
        let size = 32 * PAGE_SIZE;
        let mut t = mm
            .sg_alloc_table_from_pages(&pfns, 0, size, Gfp::GFP_KERNEL)
            .unwrap();
        assert_eq!(t.orig_nents, 1, "128 KiB of contiguous pages: one entry");
        mm.sg_free_table(&mut t);
        let mut t = mm
            .sg_alloc_table_from_pages_segment(&pfns, 0, size, 64 << 10, Gfp::GFP_KERNEL)
            .unwrap();
        assert_eq!(t.orig_nents, 2, "at most 64 KiB per entry");
        let s = mm.sg_segment(t.sg(1).unwrap()).unwrap();
        assert_eq!((s.pfn.0, s.offset, s.length), (first.0 + 16, 0, 64 << 10));
        assert!(mm.sg_is_last(t.sg(1).unwrap()));
        mm.sg_free_table(&mut t);

        // Through a vmalloc mapping of the same pages, with the device's limits.
        let va = mm.vm_map_ram(&pfns).unwrap();
        dev.device().dma_set_max_seg_size(32 << 10);
        let mut t = mm
            .sg_alloc_table_from_vmalloc(dev.device(), va, size, Gfp::GFP_KERNEL)
            .unwrap();
        assert_eq!(t.orig_nents, 4);
        mm.sg_free_table(&mut t);
        dev.device().dma_set_seg_boundary(0x3fff).unwrap();
        let mut t = mm
            .sg_alloc_table_from_vmalloc(
                dev.device(),
                VirtAddr(va.0 + 100),
                size - 100,
                Gfp::GFP_KERNEL,
            )
            .unwrap();
        mm.dma_map_sgtable(dev.device(), &mut t, Dir::ToDevice)
            .unwrap();
        for (addr, len) in mm.sg_dma_segments(&t) {
            let last = addr + len as u64 - 1;
            assert_eq!(
                addr & !0x3fff,
                last & !0x3fff,
                "{addr:#x}+{len} crosses 16 KiB"
            );
        }
        assert_eq!(t.nents, 8);
        mm.dma_unmap_sgtable(dev.device(), &t, Dir::ToDevice);
        mm.sg_free_table(&mut t);
        assert_eq!(
            dev.device().dma_set_seg_boundary(0x3000),
            Err(DmaError::Inval)
        );
        mm.vm_unmap_ram(va, 32).unwrap();
        mm.__free_pages(block, 5).unwrap();
    });
    assert!(m.take_console().is_empty());
}

// ----- swiotlb -------------------------------------------------------------------

#[test]
fn isa_device_and_a_buffer_above_16m_bounce_through_swiotlb() {
    for profile in PROFILES {
        let m = isa_machine(profile);
        let (pool, nslabs) = m.mm().swiotlb_pool().expect("a pool");
        assert_eq!(nslabs, 256);
        assert!(pool.0 + nslabs * IO_TLB_SIZE <= 16 * MIB);
        let isa = m.add_dma_device("isa", 24).unwrap();
        let incoming = pattern(3000, 5);
        let outgoing = pattern(3000, 50);
        m.run(|mm| {
            let buf = high_kmalloc(mm, 4096);
            // FROM_DEVICE: the device writes the bounce buffer; unmap copies it back.
            let addr = mm.dma_map_single(isa.device(), buf, 3000, Dir::FromDevice);
            mm.dma_mapping_error(isa.device(), addr).unwrap();
            assert!(mm.is_swiotlb_buffer(PhysAddr(addr)) && addr + 3000 <= 16 * MIB);
            assert_eq!(
                mm.dma_stats().swiotlb_slots_used,
                2,
                "3000 bytes: two 2 KiB slots"
            );
            isa.load_buffer(&incoming);
            isa.write_to_memory(&m, addr, 3000).unwrap();
            let mut seen = vec![0; 3000];
            mm.copy_from_kernel(buf, &mut seen).unwrap();
            assert_ne!(seen, incoming, "not copied back before unmap");
            mm.dma_unmap_single(isa.device(), addr, 3000, Dir::FromDevice);
            mm.copy_from_kernel(buf, &mut seen).unwrap();
            assert_eq!(seen, incoming);

            // TO_DEVICE: map copies into the bounce buffer.
            mm.copy_to_kernel(buf, &outgoing).unwrap();
            let addr = mm.dma_map_single(isa.device(), buf, 3000, Dir::ToDevice);
            mm.dma_mapping_error(isa.device(), addr).unwrap();
            isa.read_from_memory(&m, addr, 3000).unwrap();
            assert_eq!(isa.buffer(), outgoing);
            mm.dma_unmap_single(isa.device(), addr, 3000, Dir::ToDevice);
            mm.kfree(buf).unwrap();
        });
        let stats = m.mm().dma_stats();
        assert_eq!((stats.bounced_maps, stats.swiotlb_slots_used), (2, 0));
        assert_eq!(stats.swiotlb_slots_hiwater, 2);
        assert!(m.take_console().is_empty());
        m.mm().check().unwrap();
    }
}

#[test]
fn swiotlb_is_counted_in_memblock_reserved() {
    let m = isa_machine(Profile::X86_64);
    let mm = m.mm();
    let reserved = mm.memblock().reserved();
    let pool: u64 = reserved
        .regions()
        .iter()
        .filter(|r| r.name == "swiotlb")
        .map(|r| r.size)
        .sum();
    assert_eq!(pool, 256 * IO_TLB_SIZE);
    assert!(reserved.regions().iter().any(|r| r.name == "swiotlb slots"));
    // The kernel's default on x86: a pool only when RAM extends above 4 GiB (64 MiB).
    let small = MachineBuilder::new()
        .ram(256 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::default())
        .boot();
    assert_eq!(small.mm().swiotlb_pool(), None);
    let big = MachineBuilder::new()
        .ram(5 * GIB)
        .cpus(1)
        .holes(vec![Hole::LEGACY, Hole::PCI])
        .boot();
    let (start, nslabs) = big.mm().swiotlb_pool().unwrap();
    assert_eq!(nslabs * IO_TLB_SIZE, 64 * MIB);
    assert!(
        start.0 + 64 * MIB <= 4 * GIB,
        "memblock_alloc_low: below 4 GiB"
    );
    // Forced on a small machine, it is scaled down to 1/64 of RAM.
    let forced = MachineBuilder::new()
        .profile(Profile::I386)
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::on())
        .boot();
    assert_eq!(forced.mm().swiotlb_pool().unwrap().1 * IO_TLB_SIZE, MIB);
}

#[test]
fn bounce_pool_beyond_the_isa_mask_is_refused_as_swiotlb_overflow() {
    // The x86 default places the pool just below 4 GiB (here: the top of 64 MiB).
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::with_slabs(128))
        .boot();
    let (pool, _) = m.mm().swiotlb_pool().unwrap();
    assert!(pool.0 > 16 * MIB);
    let isa = m.add_dma_device("isa", 24).unwrap();
    m.run(|mm| {
        let buf = high_kmalloc(mm, 512);
        let addr = mm.dma_map_single(isa.device(), buf, 512, Dir::ToDevice);
        assert_eq!(addr, DMA_MAPPING_ERROR);
        assert!(mm.dma_mapping_error(isa.device(), addr).is_err());
        assert_eq!(mm.dma_stats().swiotlb_slots_used, 0, "slots released again");
        mm.kfree(buf).unwrap();
    });
    let console = m.take_console();
    let expected = format!(
        "simdma isa: swiotlb addr 0x{:016x}+512 overflow (mask ffffff, bus limit 0).",
        pool.0
    );
    // dev_WARN_ONCE at 6.6 kernel/dma/swiotlb.c:1511, as __warn() prints it.
    assert_eq!(
        console,
        warn_lines(
            0,
            100,
            "kmemlab/0",
            "Not tainted",
            Some(&expected),
            "kernel/dma/swiotlb.c:1511 swiotlb_map"
        ),
        "{console:#?}"
    );
    m.mm().check().unwrap();
}

#[test]
fn without_swiotlb_a_buffer_beyond_the_mask_is_refused_as_dma_addr_overflow() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(64 * MIB)
            .cpus(2)
            .seed(3)
            .swiotlb(SwiotlbConfig::off())
            .boot();
        let isa = m.add_dma_device("isa", 24).unwrap();
        let (buf, phys) = m.run(|mm| {
            let buf = high_kmalloc(mm, 256);
            let addr = mm.dma_map_single(isa.device(), buf, 256, Dir::FromDevice);
            assert_eq!(addr, DMA_MAPPING_ERROR);
            (buf, phys_of(mm, buf))
        });
        let digits = if profile == Profile::X86_64 { 16 } else { 8 };
        let console = m.take_console();
        let msg = format!(
            "simdma isa: DMA addr 0x{phys:0digits$x}+256 overflow (mask ffffff, bus limit 0)."
        );
        assert_eq!(
            console,
            warn_lines(
                0,
                100,
                "kmemlab/0",
                "Not tainted",
                Some(&msg),
                "kernel/dma/direct.h:104 dma_direct_map_page"
            ),
            "{console:#?}"
        );
        assert_eq!(m.mm().dma_stats().overflow_refusals, 1);
        // A driver that hands the device the physical address anyway: its 24 address
        // lines cannot drive it.
        isa.load_buffer(&[0xee; 256]);
        assert_eq!(
            isa.write_to_memory(&m, phys, 256),
            Err(BusError::BeyondAddressLines {
                addr: phys,
                len: 256,
                mask: 0xff_ffff
            })
        );
        m.run(|mm| mm.kfree(buf)).unwrap();
    }
}

#[test]
fn swiotlb_exhaustion_is_a_clear_error_and_every_slot_comes_back() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(64 * MIB)
            .cpus(2)
            .seed(3)
            .swiotlb(SwiotlbConfig::with_slabs(128).below(16 * MIB))
            .boot();
        let isa = m.add_dma_device("isa", 24).unwrap();
        m.run(|mm| {
            let bufs: Vec<VirtAddr> = (0..5)
                .map(|_| mm.kmalloc(64 << 10, Gfp::GFP_KERNEL).unwrap())
                .collect();
            let mut mapped = vec![];
            for &b in &bufs[..4] {
                let a = mm.dma_map_single(isa.device(), b, 64 << 10, Dir::ToDevice);
                mm.dma_mapping_error(isa.device(), a).unwrap();
                mapped.push(a);
            }
            assert_eq!(mm.dma_stats().swiotlb_slots_used, 128);
            let a = mm.dma_map_single(isa.device(), bufs[4], 64 << 10, Dir::ToDevice);
            assert_eq!(mm.dma_mapping_error(isa.device(), a), Err(DmaError::NoMem));
            for (&b, &a) in bufs.iter().zip(&mapped) {
                let _ = b;
                mm.dma_unmap_single(isa.device(), a, 64 << 10, Dir::ToDevice);
            }
            // More than a segment (128 slots, 256 KiB) never fits.
            let big = mm.kmalloc(512 << 10, Gfp::GFP_KERNEL).unwrap();
            let a = mm.dma_map_single(isa.device(), big, 257 << 10, Dir::ToDevice);
            assert_eq!(a, DMA_MAPPING_ERROR);
            mm.dma_mapping_error(isa.device(), a).unwrap_err();
            mm.kfree(big).unwrap();
            for b in bufs {
                mm.kfree(b).unwrap();
            }
        });
        let console = m.take_console();
        assert_eq!(
            console,
            [
                "simdma isa: swiotlb buffer is full (sz: 65536 bytes), total 128 (slots), used 128 (slots)",
                "simdma isa: swiotlb buffer is full (sz: 263168 bytes), total 128 (slots), used 0 (slots)",
            ]
        );
        let stats = m.mm().dma_stats();
        assert_eq!(
            (
                stats.swiotlb_full,
                stats.swiotlb_slots_used,
                stats.mappings_live
            ),
            (2, 0, 0)
        );
        m.mm().check().unwrap();
    }
}

#[test]
fn swiotlb_slots_honour_the_segment_boundary_and_page_alignment() {
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::with_slabs(512).below(16 * MIB))
        .boot();
    let isa = m.add_dma_device("isa", 24).unwrap();
    isa.device().dma_set_seg_boundary(0x7fff).unwrap(); // 32 KiB windows
    m.run(|mm| {
        let buf = mm.kmalloc(64 << 10, Gfp::GFP_KERNEL).unwrap();
        let mut live = vec![];
        for (i, size) in [100usize, 3000, 4096, 6000, 20000, 2048, 9000, 30000, 1]
            .into_iter()
            .cycle()
            .take(40)
            .enumerate()
        {
            let a = mm.dma_map_single(isa.device(), buf, size, Dir::Bidirectional);
            mm.dma_mapping_error(isa.device(), a).unwrap();
            let last = a + size as u64 - 1;
            assert_eq!(
                a & !0x7fff,
                last & !0x7fff,
                "{a:#x}+{size} crosses a 32 KiB boundary"
            );
            assert_eq!(a % IO_TLB_SIZE, 0);
            if size >= PAGE_SIZE {
                assert_eq!(a % PAGE_SIZE as u64, 0, "a page or more is page aligned");
            }
            live.push((a, size));
            if i % 3 == 2 {
                let (a, s) = live.remove(0);
                mm.dma_unmap_single(isa.device(), a, s, Dir::Bidirectional);
            }
            mm.check().unwrap();
        }
        for (a, s) in live {
            mm.dma_unmap_single(isa.device(), a, s, Dir::Bidirectional);
        }
        mm.kfree(buf).unwrap();
    });
    assert_eq!(m.mm().dma_stats().swiotlb_slots_used, 0);
    assert!(m.take_console().is_empty());
}

#[test]
fn sync_single_copies_bounce_data_each_way() {
    let m = isa_machine(Profile::X86_64);
    let isa = m.add_dma_device("isa", 24).unwrap();
    m.run(|mm| {
        let buf = high_kmalloc(mm, 1024);
        let addr = mm.dma_map_single(isa.device(), buf, 1024, Dir::Bidirectional);
        mm.dma_mapping_error(isa.device(), addr).unwrap();
        isa.load_buffer(&pattern(1024, 1));
        isa.write_to_memory(&m, addr, 1024).unwrap();
        mm.dma_sync_single_for_cpu(isa.device(), addr, 1024, Dir::Bidirectional);
        let mut seen = vec![0; 1024];
        mm.copy_from_kernel(buf, &mut seen).unwrap();
        assert_eq!(
            seen,
            pattern(1024, 1),
            "the CPU sees the device's data after sync"
        );
        mm.copy_to_kernel(buf, &pattern(1024, 2)).unwrap();
        mm.dma_sync_single_for_device(isa.device(), addr, 1024, Dir::Bidirectional);
        isa.read_from_memory(&m, addr, 1024).unwrap();
        assert_eq!(
            isa.buffer(),
            pattern(1024, 2),
            "the device sees the CPU's data after sync"
        );
        mm.dma_unmap_single(isa.device(), addr, 1024, Dir::Bidirectional);
        mm.kfree(buf).unwrap();
    });
    assert!(m.take_console().is_empty());
}

#[test]
fn scatterlist_segments_beyond_the_mask_bounce_too() {
    let m = isa_machine(Profile::I386);
    let isa = m.add_dma_device("isa", 24).unwrap();
    let len = 3 * PAGE_SIZE;
    let data = pattern(len, 33);
    m.run(|mm| {
        let buf = mm.vmalloc(len).unwrap();
        let mut t = mm
            .sg_alloc_table_from_vmalloc(isa.device(), buf, len, Gfp::GFP_KERNEL)
            .unwrap();
        mm.dma_map_sgtable(isa.device(), &mut t, Dir::FromDevice)
            .unwrap();
        let segs: Vec<_> = mm.sg_dma_segments(&t).collect();
        assert!(segs.iter().all(|&(a, l)| a + l as u64 <= 16 * MIB));
        isa.load_buffer(&data);
        isa.write_segments(&m, &segs).unwrap();
        // Synced for the CPU, the bytes are there before the unmap.
        mm.dma_sync_sgtable_for_cpu(isa.device(), &t, Dir::FromDevice);
        let mut early = vec![0; len];
        mm.copy_from_kernel_virt(buf, &mut early).unwrap();
        assert_eq!(early, data);
        mm.dma_sync_sgtable_for_device(isa.device(), &t, Dir::FromDevice);
        mm.dma_unmap_sgtable(isa.device(), &t, Dir::FromDevice);
        let mut seen = vec![0; len];
        mm.copy_from_kernel_virt(buf, &mut seen).unwrap();
        assert_eq!(seen, data);
        mm.sg_free_table(&mut t);
        mm.vfree(buf).unwrap();
    });
    let stats = m.mm().dma_stats();
    assert!(stats.bounced_maps >= 1);
    assert_eq!(stats.swiotlb_slots_used, 0);
}

// ----- coherent memory and pools ---------------------------------------------------

#[test]
fn coherent_memory_comes_from_the_zone_the_mask_allows_zeroed() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(64 * MIB)
            .cpus(2)
            .seed(3)
            .swiotlb(SwiotlbConfig::off())
            .boot();
        let isa = m.add_dma_device("isa", 24).unwrap();
        let pci = m.add_dma_device("pci", 32).unwrap();
        m.run(|mm| {
            // Dirty a page so that a reused one would show.
            let dirty = mm.__get_free_pages(Gfp::GFP_DMA, 1).unwrap();
            mm.copy_to_kernel(dirty, &[0x5a; 8192]).unwrap();
            mm.free_pages(dirty, 1).unwrap();
            for (dev, zone) in [(&isa, ZoneType::Dma), (&pci, ZoneType::Dma32)] {
                let (cpu, dma) = mm
                    .dma_alloc_coherent(dev.device(), 6000, Gfp::GFP_KERNEL | Gfp::__GFP_DMA)
                    .unwrap();
                assert_eq!(dma, phys_of(mm, cpu));
                assert!(dma + 6000 - 1 <= dev.device().coherent_dma_mask());
                let page = mm.virt_to_page(cpu).unwrap();
                let want = if profile == Profile::I386 && zone == ZoneType::Dma32 {
                    ZoneType::Normal
                } else {
                    zone
                };
                assert_eq!(mm.page_zone(page).zone_type, want);
                let mut bytes = vec![1; 8192];
                mm.copy_from_kernel(cpu, &mut bytes).unwrap();
                assert!(bytes.iter().all(|&b| b == 0), "zeroed");
                // The device writes, the CPU reads: no map, no sync.
                dev.load_buffer(&pattern(6000, 4));
                dev.write_to_memory(&m, dma, 6000).unwrap();
                assert_eq!(m.read(cpu, 6000).unwrap(), pattern(6000, 4));
                mm.dma_free_coherent(dev.device(), 6000, cpu, dma).unwrap();
            }
        });
        assert_eq!(m.mm().dma_stats().coherent_live, 0);
        assert!(m.take_console().is_empty());
    }
}

#[test]
fn dma_pool_blocks_never_cross_the_boundary_and_bad_frees_are_reported() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(64 * MIB)
            .cpus(2)
            .seed(3)
            .swiotlb(SwiotlbConfig::off())
            .boot();
        let dev = m.add_dma_device("usb", 32).unwrap();
        shrink_all_caches(&m);
        let boot = BootState::of(&m.mm());
        m.run(|mm| {
            assert!(mm.dma_pool_create("bad", dev.device(), 64, 3, 0).is_err());
            assert!(mm.dma_pool_create("bad", dev.device(), 64, 8, 48).is_err());
            let pool = mm
                .dma_pool_create("td", dev.device(), 96, 32, 1024)
                .unwrap();
            let info = mm.dma_pool_info(&pool);
            assert_eq!(
                (info.size, info.allocation, info.boundary),
                (96, 4096, 1024)
            );
            let blocks: Vec<_> = (0..100)
                .map(|_| {
                    mm.dma_pool_alloc(&pool, Gfp::GFP_KERNEL | Gfp::__GFP_ZERO)
                        .unwrap()
                })
                .collect();
            for &(cpu, dma) in &blocks {
                assert_eq!(dma % 32, 0);
                assert_eq!(dma / 1024, (dma + 95) / 1024, "{dma:#x} crosses 1 KiB");
                assert_eq!(dma, phys_of(mm, cpu));
            }
            let mut sorted: Vec<_> = blocks.iter().map(|b| b.1).collect();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 100);
            // 4096 / 1024 windows of 10 blocks each (960 of 1024 bytes used).
            assert_eq!(mm.dma_pool_info(&pool).nr_pages, 3);
            let (cpu, dma) = blocks[7];
            mm.dma_pool_free(&pool, cpu, dma).unwrap();
            assert_eq!(mm.dma_pool_free(&pool, cpu, dma), Err(DmaError::Inval));
            assert_eq!(
                mm.dma_pool_free(&pool, cpu, 0x1234_5000),
                Err(DmaError::Inval)
            );
            for (i, &(cpu, dma)) in blocks.iter().enumerate() {
                if i != 7 {
                    mm.dma_pool_free(&pool, cpu, dma).unwrap();
                }
            }
            assert_eq!(mm.dma_pool_info(&pool).nr_active, 0);
            mm.dma_pool_destroy(pool);
        });
        let console = m.take_console();
        let pad = |a: u64| match profile {
            Profile::X86_64 => format!("0x{a:016x}"),
            Profile::I386 => format!("0x{a:08x}"),
        };
        assert_eq!(console.len(), 2, "{console:?}");
        assert!(console[0].starts_with("simdma usb: pool_block_err td, dma 0x"));
        assert!(console[0].ends_with(" already free"));
        assert!(console[1].ends_with(&format!("/{} (bad dma)", pad(0x1234_5000))));
        shrink_all_caches(&m);
        assert_all_free(&m, &boot, false);
    }
}

#[test]
fn destroying_a_busy_pool_is_reported_and_leaks_rather_than_frees() {
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::off())
        .boot();
    let dev = m.add_dma_device("usb", 32).unwrap();
    m.run(|mm| {
        let pool = mm.dma_pool_create("td", dev.device(), 64, 0, 0).unwrap();
        let (_cpu, _dma) = mm.dma_pool_alloc(&pool, Gfp::GFP_KERNEL).unwrap();
        mm.dma_pool_destroy(pool);
    });
    assert_eq!(m.take_console(), ["simdma usb: dma_pool_destroy td busy"]);
    // The coherent page stays allocated (and tracked), as in the kernel.
    let s = m.mm().dma_stats();
    assert_eq!((s.coherent_live, s.mappings_live), (1, 1));
}

// ----- dma-debug --------------------------------------------------------------------

#[test]
fn dma_debug_reports_bad_unmaps_with_the_kernels_words() {
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::off())
        .boot();
    let nic = m.add_dma_device("nic", 32).unwrap();
    let dev = nic.device();
    let buf = m.run(|mm| mm.kmalloc(256, Gfp::GFP_KERNEL)).unwrap();
    let phys = phys_of(&m.mm(), buf);
    // Line n of what was printed (line 0 of each WARN is its cut line, 1 its message).
    let line = |n: usize| m.take_console().get(n).cloned().unwrap_or_default();
    m.run(|mm| {
        // Never mapped.
        mm.dma_unmap_single(dev, 0x123000, 64, Dir::ToDevice);
    });
    assert_eq!(line(1), "DMA-API: simdma nic: device driver tries to free DMA memory it has not allocated [device address=0x0000000000123000] [size=64 bytes]");
    m.run(|mm| {
        let a = mm.dma_map_single(dev, buf, 256, Dir::FromDevice);
        mm.dma_mapping_error(dev, a).unwrap();
        mm.dma_unmap_single(dev, a, 128, Dir::FromDevice);
    });
    assert_eq!(line(1), format!("DMA-API: simdma nic: device driver frees DMA memory with different size [device address=0x{phys:016x}] [map size=256 bytes] [unmap size=128 bytes]"));
    m.run(|mm| {
        let a = mm.dma_map_single(dev, buf, 256, Dir::FromDevice);
        mm.dma_mapping_error(dev, a).unwrap();
        mm.dma_unmap_single(dev, a, 256, Dir::ToDevice);
    });
    assert_eq!(line(1), format!("DMA-API: simdma nic: device driver frees DMA memory with different direction [device address=0x{phys:016x}] [size=256 bytes] [mapped with DMA_FROM_DEVICE] [unmapped with DMA_TO_DEVICE]"));
    m.run(|mm| {
        let a = mm.dma_map_single(dev, buf, 256, Dir::ToDevice);
        mm.dma_unmap_single(dev, a, 256, Dir::ToDevice);
    });
    let console = m.take_console();
    let msg = format!("DMA-API: simdma nic: device driver failed to check map error[device address=0x{phys:016x}] [size=256 bytes] [mapped as single]");
    // WARN(1, …) at 6.6 kernel/dma/debug.c:1045; tainted W by the WARNs before it.
    assert_eq!(
        console,
        warn_lines(
            0,
            100,
            "kmemlab/0",
            TAINTED_W,
            Some(&msg),
            "kernel/dma/debug.c:1045 check_unmap"
        )
    );
    m.run(|mm| {
        let (cpu, dma) = mm.dma_alloc_coherent(dev, 4096, Gfp::GFP_KERNEL).unwrap();
        mm.dma_unmap_single(dev, dma, 4096, Dir::Bidirectional);
        mm.dma_sync_single_for_cpu(dev, 0x777000, 16, Dir::FromDevice);
        mm.free_pages(cpu, 0).unwrap();
    });
    let console = m.take_console();
    assert_eq!(console.len(), 12, "two WARNs: {console:#?}");
    assert!(console[1]
        .contains("device driver frees DMA memory with wrong function [device address=0x"));
    assert!(console[1].ends_with("[size=4096 bytes] [mapped as coherent] [unmapped as single]"));
    assert_eq!(
        console[2],
        "WARNING: CPU: 0 PID: 100 at kernel/dma/debug.c:999 check_unmap"
    );
    assert_eq!(console[7], "DMA-API: simdma nic: device driver tries to sync DMA memory it has not allocated [device address=0x0000000000777000] [size=16 bytes]");
    assert_eq!(
        console[8],
        "WARNING: CPU: 0 PID: 100 at kernel/dma/debug.c:1107 check_sync"
    );
    // An address outside the direct map (and not vmalloc): dma-debug's "invalid area".
    let bogus = VirtAddr(m.mm().layout().page_offset - 0x1000);
    let a = m.run(|mm| mm.dma_map_single(dev, bogus, 16, Dir::ToDevice));
    assert_eq!(a, DMA_MAPPING_ERROR);
    assert_eq!(
        line(1),
        format!(
            "DMA-API: simdma nic: device driver maps memory from invalid area [addr={:#x}] [len=16]",
            bogus.0
        )
    );
    // DMA_NONE is a BUG in the kernel (6.6 kernel/dma/mapping.c:154, BUG_ON in
    // dma_map_page_attrs): the oops, and the mapping refused.
    let oopses = m.mm().oops_count();
    let a = m.run(|mm| mm.dma_map_single(dev, buf, 16, Dir::None));
    assert_eq!(a, DMA_MAPPING_ERROR);
    let console = m.take_console();
    assert_eq!(
        console[..2],
        [
            "------------[ cut here ]------------",
            "kernel BUG at kernel/dma/mapping.c:154!"
        ],
        "{console:#?}"
    );
    assert!(
        console[2].starts_with("invalid opcode: 0000 [#"),
        "{console:#?}"
    );
    assert_eq!(m.mm().oops_count(), oopses + 1);

    let s = m.mm().dma_stats();
    assert_eq!(s.debug(DmaDebugError::FreeNotAllocated), 1);
    assert_eq!(s.debug(DmaDebugError::DifferentSize), 1);
    assert_eq!(s.debug(DmaDebugError::DifferentDirection), 1);
    assert_eq!(s.debug(DmaDebugError::MapErrorNotChecked), 1);
    assert_eq!(s.debug(DmaDebugError::WrongFunction), 1);
    assert_eq!(s.debug(DmaDebugError::SyncNotAllocated), 1);
    assert_eq!(s.debug(DmaDebugError::MapInvalidArea), 1);
    assert_eq!(s.debug_error_count, 7);
    assert_eq!(s.warnings, 1, "the DMA_NONE BUG");
    assert_eq!(s.mappings_live, 0);
    m.run(|mm| mm.kfree(buf)).unwrap();
    m.mm().check().unwrap();
}

#[test]
fn freeing_memory_that_is_still_mapped_is_reported() {
    for profile in PROFILES {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(64 * MIB)
            .cpus(2)
            .seed(3)
            .swiotlb(SwiotlbConfig::off())
            .boot();
        let nic = m.add_dma_device("nic", 32).unwrap();
        let dev = nic.device();
        m.run(|mm| {
            // kfree of a slab object under a live mapping.
            let buf = mm.kmalloc(512, Gfp::GFP_KERNEL).unwrap();
            let a = mm.dma_map_single(dev, buf, 512, Dir::FromDevice);
            mm.dma_mapping_error(dev, a).unwrap();
            mm.kfree(buf).unwrap();
            mm.dma_unmap_single(dev, a, 512, Dir::FromDevice);
            // vfree of a buffer whose scatterlist is still mapped.
            let v = mm.vmalloc(2 * PAGE_SIZE).unwrap();
            let mut t = mm
                .sg_alloc_table_from_vmalloc(dev, v, 2 * PAGE_SIZE, Gfp::GFP_KERNEL)
                .unwrap();
            mm.dma_map_sgtable(dev, &mut t, Dir::ToDevice).unwrap();
            mm.vfree(v).unwrap();
            mm.dma_unmap_sgtable(dev, &t, Dir::ToDevice);
            mm.sg_free_table(&mut t);
            // Unmapped first: nothing to report.
            let buf = mm.kmalloc(64, Gfp::GFP_KERNEL).unwrap();
            let a = mm.dma_map_single(dev, buf, 64, Dir::ToDevice);
            mm.dma_mapping_error(dev, a).unwrap();
            mm.dma_unmap_single(dev, a, 64, Dir::ToDevice);
            mm.kfree(buf).unwrap();
        });
        let console = m.take_console();
        let reports: Vec<_> = console
            .iter()
            .filter(|l| l.starts_with("DMA-API:"))
            .collect();
        assert!(reports[0].starts_with("DMA-API: simdma nic: device driver frees memory that is still DMA-mapped [device address=0x"));
        assert!(reports[0]
            .ends_with("[size=512 bytes] [mapped as single] [mapped with DMA_FROM_DEVICE]"));
        assert!(reports[1..]
            .iter()
            .all(|l| l.contains("[mapped as scather-gather] [mapped with DMA_TO_DEVICE]")));
        let s = m.mm().dma_stats();
        assert_eq!(
            s.debug(DmaDebugError::FreedWhileMapped) as usize,
            reports.len()
        );
        assert!(reports.len() >= 2);
        assert_eq!(s.mappings_live, 0);
    }
}

#[test]
fn dma_debug_runs_out_of_entries_and_disables_itself() {
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::off())
        .boot();
    let nic = m.add_dma_device("nic", 32).unwrap();
    let total = kmemlab_mm::dma::debug::PREALLOC_DMA_DEBUG_ENTRIES;
    m.run(|mm| {
        let buf = mm.kmalloc(64, Gfp::GFP_KERNEL).unwrap();
        let addrs: Vec<_> = (0..=total)
            .map(|_| mm.dma_map_single(nic.device(), buf, 64, Dir::ToDevice))
            .collect();
        // Disabled, dma-debug drains its entries: the mappings it no longer tracks are
        // not left counted as live forever.
        assert_eq!(mm.dma_stats().mappings_live, 0);
        for a in addrs {
            mm.dma_unmap_single(nic.device(), a, 64, Dir::ToDevice);
        }
        mm.kfree(buf).unwrap();
    });
    assert_eq!(
        m.take_console(),
        ["DMA-API: debugging out of memory - disabling"]
    );
    m.mm().check().unwrap();
    m.mm().dma_check_idle().unwrap();
}

// ----- everything comes back --------------------------------------------------------

#[test]
fn after_unmapping_and_freeing_every_page_and_slot_is_back() {
    for profile in PROFILES {
        let m = isa_machine(profile);
        let isa = m.add_dma_device("isa", 24).unwrap();
        let pci = m.add_dma_device("pci", 32).unwrap();
        // vmalloc keeps the page tables it makes: make them before the snapshot.
        m.run(|mm| {
            let v = mm.vmalloc(40_000).unwrap();
            mm.vfree(v).unwrap();
            mm.purge_vmap_area_lazy();
        });
        shrink_all_caches(&m);
        let boot = BootState::of(&m.mm());
        m.run(|mm| {
            let k = mm.kmalloc(10_000, Gfp::GFP_KERNEL).unwrap();
            let v = mm.vmalloc(40_000).unwrap();
            let singles: Vec<_> = [(&isa, 1000), (&pci, 10_000), (&isa, 9000)]
                .iter()
                .map(|&(d, n)| {
                    let a = mm.dma_map_single(d.device(), k, n, Dir::Bidirectional);
                    mm.dma_mapping_error(d.device(), a).unwrap();
                    (d, a, n)
                })
                .collect();
            let mut t = mm
                .sg_alloc_table_from_vmalloc(isa.device(), v, 40_000, Gfp::GFP_KERNEL)
                .unwrap();
            mm.dma_map_sgtable(isa.device(), &mut t, Dir::FromDevice)
                .unwrap();
            let coherent = mm
                .dma_alloc_coherent(pci.device(), 20_000, Gfp::GFP_KERNEL)
                .unwrap();
            let pool = mm
                .dma_pool_create("ring", isa.device(), 200, 16, 0)
                .unwrap();
            let blocks: Vec<_> = (0..50)
                .map(|_| mm.dma_pool_alloc(&pool, Gfp::GFP_KERNEL).unwrap())
                .collect();
            let s = mm.dma_stats();
            assert!(s.swiotlb_slots_used > 0);
            assert_eq!(
                s.mappings_live,
                3 + t.nents as u64 + 1 + mm.dma_pool_info(&pool).nr_pages
            );
            mm.check().unwrap();

            for (cpu, dma) in blocks {
                mm.dma_pool_free(&pool, cpu, dma).unwrap();
            }
            mm.dma_pool_destroy(pool);
            mm.dma_free_coherent(pci.device(), 20_000, coherent.0, coherent.1)
                .unwrap();
            mm.dma_unmap_sgtable(isa.device(), &t, Dir::FromDevice);
            mm.sg_free_table(&mut t);
            for (d, a, n) in singles {
                mm.dma_unmap_single(d.device(), a, n, Dir::Bidirectional);
            }
            mm.vfree(v).unwrap();
            mm.kfree(k).unwrap();
            mm.purge_vmap_area_lazy();
        });
        assert!(m.take_console().is_empty());
        let s = m.mm().dma_stats();
        assert_eq!(
            (s.mappings_live, s.swiotlb_slots_used, s.coherent_live),
            (0, 0, 0)
        );
        assert_eq!(s.debug_error_count, 0);
        m.mm().dma_check_idle().unwrap();
        m.mm().check().unwrap();
        shrink_all_caches(&m);
        assert_all_free(&m, &boot, false);
    }
}

// ----- concurrency and interrupts ---------------------------------------------------

#[test]
fn two_cpus_bounce_at_once_and_an_irq_handler_maps_too() {
    let m = MachineBuilder::new()
        .ram(128 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::with_slabs(512).below(16 * MIB))
        .boot();
    let isa = m.add_dma_device("isa", 24).unwrap();
    std::thread::scope(|s| {
        for cpu in 0..2usize {
            let (m, isa) = (&m, &isa);
            s.spawn(move || {
                m.on_cpu(cpu, Context::Process, |mm| {
                    let buf = high_kmalloc(mm, 8192);
                    for round in 0..300usize {
                        let len = 1 + (round * 977 + cpu * 311) % 8192;
                        let data = pattern(len, (round + cpu) as u8);
                        mm.copy_to_kernel(buf, &data).unwrap();
                        let a = mm.dma_map_single(isa.device(), buf, len, Dir::Bidirectional);
                        mm.dma_mapping_error(isa.device(), a).unwrap();
                        assert!(mm.is_swiotlb_buffer(PhysAddr(a)));
                        let mut bounced = vec![0; len];
                        m.platform().ram().read(a, &mut bounced).unwrap();
                        assert_eq!(
                            bounced, data,
                            "CPU {cpu} round {round}: the bounce holds our bytes"
                        );
                        mm.dma_unmap_single(isa.device(), a, len, Dir::Bidirectional);
                    }
                    mm.kfree(buf).unwrap();
                })
                .unwrap();
            });
        }
    });
    // A driver's interrupt handler maps and unmaps (nothing there may sleep).
    m.on_cpu(1, Context::Hardirq, |mm| {
        let buf = mm.kmalloc(256, Gfp::GFP_ATOMIC).unwrap();
        let a = mm.dma_map_single(isa.device(), buf, 256, Dir::FromDevice);
        mm.dma_mapping_error(isa.device(), a).unwrap();
        mm.dma_unmap_single(isa.device(), a, 256, Dir::FromDevice);
        let (cpu, dma) = mm
            .dma_alloc_coherent(isa.device(), 512, Gfp::GFP_ATOMIC)
            .unwrap();
        // dma_free_attrs(): WARN_ON(irqs_disabled()); the free goes on.
        mm.dma_free_coherent(isa.device(), 512, cpu, dma).unwrap();
        mm.kfree(buf).unwrap();
    })
    .unwrap();
    // 6.6 kernel/dma/mapping.c:545, WARN_ON(irqs_disabled()), from the interrupted task.
    let console = m.take_console();
    assert!(
        console.len() > 3 && console[3].starts_with("CPU: 1 PID: "),
        "{console:#?}"
    );
    let words: Vec<&str> = console[3].split_whitespace().collect();
    let (pid, comm) = (words[3].parse().unwrap(), words[5]);
    let expected = warn_lines(
        1,
        pid,
        comm,
        "Not tainted",
        None,
        "kernel/dma/mapping.c:545 dma_free_attrs",
    );
    assert_eq!(console, expected);
    let s = m.mm().dma_stats();
    assert_eq!(s.bounced_maps, 601);
    assert_eq!(s.debug_error_count, 0);
    m.mm().dma_check_idle().unwrap();
}

// ----- the reviewer's findings ------------------------------------------------------

/// A device with all 64 address lines: it can overwrite any byte of RAM.
fn scribble(m: &Machine, addr: u64, len: usize, byte: u8) {
    let evil = m.add_dma_device("evil", 64).unwrap();
    evil.load_buffer(&vec![byte; len]);
    evil.write_to_memory(m, addr, len).unwrap();
}

#[test]
fn dma_debug_sync_and_free_reports_with_the_kernels_words() {
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::off())
        .boot();
    let nic = m.add_dma_device("nic", 32).unwrap();
    let dev = nic.device();
    let buf = m.run(|mm| mm.kmalloc(256, Gfp::GFP_KERNEL)).unwrap();
    let phys = phys_of(&m.mm(), buf);
    m.take_console();
    let lines = |m: &Machine| -> Vec<String> {
        m.take_console()
            .into_iter()
            .filter(|l| l.starts_with("DMA-API:"))
            .collect()
    };
    // FreeInvalidAddress: unmapping DMA_MAPPING_ERROR.
    m.run(|mm| mm.dma_unmap_single(dev, DMA_MAPPING_ERROR, 64, Dir::ToDevice));
    assert_eq!(
        lines(&m),
        ["DMA-API: simdma nic: device driver tries to free an invalid DMA memory address"]
    );
    // SyncOutsideRange.
    let a = m.run(|mm| {
        let a = mm.dma_map_single(dev, buf, 256, Dir::ToDevice);
        mm.dma_mapping_error(dev, a).unwrap();
        // A size that wraps the bus: contained in the kernel's arithmetic, and so
        // outside the allocated range.
        mm.dma_sync_single_for_device(dev, a, usize::MAX, Dir::ToDevice);
        a
    });
    assert_eq!(lines(&m), [format!("DMA-API: simdma nic: device driver syncs DMA memory outside allocated range [device address=0x{phys:016x}] [allocation size=256 bytes] [sync offset+size={}]", u64::MAX)]);
    // SyncDifferentDirection alone: mapped to the device, synced for the device as
    // from it.
    m.run(|mm| mm.dma_sync_single_for_device(dev, a, 256, Dir::FromDevice));
    assert_eq!(lines(&m), [format!("DMA-API: simdma nic: device driver syncs DMA memory with different direction [device address=0x{phys:016x}] [size=256 bytes] [mapped with DMA_TO_DEVICE] [synced with DMA_FROM_DEVICE]")]);
    // SyncWrongWay for the CPU: a device read-only mapping synced for the CPU both ways.
    m.run(|mm| mm.dma_sync_single_for_cpu(dev, a, 256, Dir::Bidirectional));
    let l = lines(&m);
    assert_eq!(l.len(), 2);
    assert_eq!(l[1], format!("DMA-API: simdma nic: device driver syncs device read-only DMA memory for cpu [device address=0x{phys:016x}] [size=256 bytes] [mapped with DMA_TO_DEVICE] [synced with DMA_BIDIRECTIONAL]"));
    m.run(|mm| mm.dma_unmap_single(dev, a, 256, Dir::ToDevice));
    // SyncWrongWay to the device: a device write-only mapping.
    m.run(|mm| {
        let a = mm.dma_map_single(dev, buf, 256, Dir::FromDevice);
        mm.dma_mapping_error(dev, a).unwrap();
        mm.dma_sync_single_for_device(dev, a, 256, Dir::Bidirectional);
        mm.dma_unmap_single(dev, a, 256, Dir::FromDevice);
    });
    let l = lines(&m);
    assert_eq!(l.len(), 2);
    assert_eq!(l[1], format!("DMA-API: simdma nic: device driver syncs device write-only DMA memory to device [device address=0x{phys:016x}] [size=256 bytes] [mapped with DMA_FROM_DEVICE] [synced with DMA_BIDIRECTIONAL]"));

    // A two-entry list: DifferentSgCount on unmap, SyncDifferentSgCount on sync.
    let (b1, b2) = m.run(|mm| {
        (
            mm.kmalloc(512, Gfp::GFP_KERNEL).unwrap(),
            mm.kmalloc(1024, Gfp::GFP_KERNEL).unwrap(),
        )
    });
    let mut t = m.run(|mm| {
        let t = mm.sg_alloc_table(2, Gfp::GFP_KERNEL).unwrap();
        mm.sg_set_buf(t.sg(0).unwrap(), b1, 512).unwrap();
        mm.sg_set_buf(t.sg(1).unwrap(), b2, 1024).unwrap();
        t
    });
    m.run(|mm| {
        assert_eq!(mm.dma_map_sg(dev, &t, 2, Dir::ToDevice), 2);
        mm.dma_sync_sg_for_cpu(dev, &t, 1, Dir::ToDevice);
    });
    assert_eq!(lines(&m), ["DMA-API: simdma nic: device driver syncs DMA sg list with different entry count [map count=2] [sync count=1]"]);
    m.run(|mm| mm.dma_unmap_sg(dev, &t, 3, Dir::ToDevice));
    assert_eq!(
        lines(&m),
        ["DMA-API: simdma nic: device driver frees DMA sg list with different entry count [map count=2] [unmap count=3]"; 2]
    );

    // DifferentCpuAddress, and a free the page allocator refuses (a tail page): the
    // buffer stays allocated, tracked by dma-debug and counted, and can be freed right.
    let (cpu, dma) = m
        .run(|mm| mm.dma_alloc_coherent(dev, 2 * PAGE_SIZE, Gfp::GFP_KERNEL))
        .unwrap();
    let cpu_phys = phys_of(&m.mm(), cpu);
    let wrong = VirtAddr(cpu.0 + PAGE_SIZE as u64);
    let r = m.run(|mm| mm.dma_free_coherent(dev, 2 * PAGE_SIZE, wrong, dma));
    assert_eq!(r, Err(DmaError::Inval));
    assert_eq!(lines(&m), [format!("DMA-API: simdma nic: device driver frees DMA memory with different CPU address [device address=0x{dma:016x}] [size=8192 bytes] [cpu alloc address=0x{cpu_phys:016x}] [cpu free address=0x{:016x}]", cpu_phys + PAGE_SIZE as u64)]);
    let s = m.mm().dma_stats();
    assert_eq!((s.coherent_live, s.mappings_live), (1, 1));
    m.run(|mm| mm.dma_free_coherent(dev, 2 * PAGE_SIZE, cpu, dma))
        .unwrap();
    assert!(lines(&m).is_empty());

    let s = m.mm().dma_stats();
    assert_eq!(s.debug(DmaDebugError::FreeInvalidAddress), 1);
    assert_eq!(s.debug(DmaDebugError::SyncOutsideRange), 1);
    assert_eq!(s.debug(DmaDebugError::SyncDifferentDirection), 3);
    assert_eq!(s.debug(DmaDebugError::SyncWrongWay), 2);
    assert_eq!(s.debug(DmaDebugError::SyncDifferentSgCount), 1);
    assert_eq!(s.debug(DmaDebugError::DifferentSgCount), 2);
    assert_eq!(s.debug(DmaDebugError::DifferentCpuAddress), 1);
    assert_eq!(s.coherent_live, 0);
    m.run(|mm| {
        mm.sg_free_table(&mut t);
        for b in [buf, b1, b2] {
            mm.kfree(b).unwrap();
        }
    });
    m.mm().dma_check_idle().unwrap();
}

#[test]
fn sync_of_a_range_two_mappings_contain_imperfectly_is_not_allocated() {
    // __hash_bucket_find(containing_match) is best-fit: two matches and no perfect fit
    // give NULL.
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::off())
        .boot();
    let nic = m.add_dma_device("nic", 32).unwrap();
    let dev = nic.device();
    m.run(|mm| {
        let buf = mm.kmalloc(256, Gfp::GFP_KERNEL).unwrap();
        let a = mm.dma_map_single(dev, buf, 256, Dir::ToDevice);
        let b = mm.dma_map_single(dev, buf, 128, Dir::ToDevice);
        mm.dma_mapping_error(dev, a).unwrap();
        mm.dma_mapping_error(dev, b).unwrap();
        mm.dma_sync_single_for_device(dev, a, 64, Dir::ToDevice);
        // A perfect fit is found whatever else matches.
        mm.dma_sync_single_for_device(dev, a, 128, Dir::ToDevice);
        mm.dma_unmap_single(dev, b, 128, Dir::ToDevice);
        mm.dma_unmap_single(dev, a, 256, Dir::ToDevice);
        mm.kfree(buf).unwrap();
    });
    let s = m.mm().dma_stats();
    assert_eq!(s.debug(DmaDebugError::SyncNotAllocated), 1);
    assert_eq!(s.debug_error_count, 1);
    m.mm().dma_check_idle().unwrap();
}

#[test]
fn dma_alloc_coherent_does_not_drop_to_a_lower_zone_when_alloc_pages_fails() {
    // __dma_direct_alloc_pages() retries with GFP_DMA32 / GFP_DMA only when a page came
    // back beyond the mask, not when alloc_pages failed: one attempt, one warning.
    for (profile, bits) in [
        (Profile::X86_64, 64),
        (Profile::X86_64, 32),
        (Profile::I386, 32),
    ] {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(64 * MIB)
            .cpus(2)
            .seed(3)
            .swiotlb(SwiotlbConfig::off())
            .boot();
        let dev = m.add_dma_device("nic", bits).unwrap();
        m.take_console();
        let r = m.run(|mm| mm.dma_alloc_coherent(dev.device(), 1 << 30, Gfp::GFP_KERNEL));
        assert_eq!(r, Err(DmaError::NoMem));
        let attempts = m
            .take_console()
            .iter()
            .filter(|l| l.contains("__alloc_pages"))
            .count();
        assert_eq!(attempts, 1, "{profile} {bits}-bit");
        // __GFP_COMP: WARN_ON_ONCE, refused.
        for _ in 0..2 {
            let r = m.run(|mm| {
                mm.dma_alloc_coherent(dev.device(), 4096, Gfp::GFP_KERNEL | Gfp::__GFP_COMP)
            });
            assert_eq!(r, Err(DmaError::Inval));
        }
        // Printed once (6.6 kernel/dma/mapping.c:510); tainted W by __alloc_pages' WARN.
        let console = m.take_console();
        assert_eq!(
            console,
            warn_lines(
                0,
                100,
                "kmemlab/0",
                TAINTED_W,
                None,
                "kernel/dma/mapping.c:510 dma_alloc_attrs"
            ),
            "{console:#?}"
        );
        m.mm().dma_check_idle().unwrap();
    }
}

#[test]
fn huge_swiotlb_slab_counts_boot_with_a_capped_pool_or_none() {
    for slabs in [1u64 << 60, u64::MAX] {
        let m = MachineBuilder::new()
            .ram(64 * MIB)
            .cpus(2)
            .seed(3)
            .swiotlb(SwiotlbConfig::with_slabs(slabs))
            .boot();
        let (start, nslabs) = m.mm().swiotlb_pool().expect("a capped pool");
        assert!(nslabs * IO_TLB_SIZE <= 64 * MIB);
        assert!(start.0 + nslabs * IO_TLB_SIZE <= 64 * MIB);
        let console = m.take_console();
        let aligned = slabs & !127;
        assert!(
            console.iter().any(|l| l
                == &format!(
                "software IO TLB: SWIOTLB bounce buffer size adjusted {aligned} -> {nslabs} slabs"
            )),
            "{console:?}"
        );
        m.mm().dma_check_idle().unwrap();
        // And it works.
        let isa = m.add_dma_device("isa", 30).unwrap();
        m.run(|mm| {
            let buf = mm.kmalloc(64, Gfp::GFP_KERNEL).unwrap();
            let a = mm.dma_map_single(isa.device(), buf, 64, Dir::ToDevice);
            mm.dma_mapping_error(isa.device(), a).unwrap();
            mm.dma_unmap_single(isa.device(), a, 64, Dir::ToDevice);
            mm.kfree(buf).unwrap();
        });
        m.mm().dma_check_idle().unwrap();
    }
    // Below 1 MiB nothing fits: halved down to IO_TLB_MIN_SLABS, then no pool, and boot
    // goes on.
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::with_slabs(1 << 60).below(MIB))
        .boot();
    assert_eq!(m.mm().swiotlb_pool(), None);
    let console = m.take_console();
    assert!(console.iter().any(|l| l
        .starts_with("software IO TLB: swiotlb_memblock_alloc: Failed to allocate ")
        && l.ends_with(" bytes tlb structure")));
    assert!(!console.iter().any(|l| l.contains("Cannot allocate buffer")));
}

#[test]
fn mapping_a_size_that_overflows_is_refused() {
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::off())
        .boot();
    let dev = m.add_dma_device("nic", 64).unwrap();
    let dev = dev.device();
    m.run(|mm| mm.dma_set_mask(dev, dma_bit_mask(64))).unwrap();
    let buf = m.run(|mm| mm.kmalloc(64, Gfp::GFP_KERNEL)).unwrap();
    m.take_console();
    for (i, size) in [usize::MAX, usize::MAX / 2, (1usize << 30)]
        .into_iter()
        .enumerate()
    {
        let a = m.run(|mm| mm.dma_map_single(dev, buf, size, Dir::ToDevice));
        assert_eq!(a, DMA_MAPPING_ERROR, "size {size}");
        let console = m.take_console();
        if i > 0 {
            // dev_WARN_ONCE: printed for the first size only.
            assert!(console.is_empty(), "{console:#?}");
            continue;
        }
        assert!(console[1].contains(&format!("+{size} overflow (mask ffffffffffffffff")));
        let expected = warn_lines(
            0,
            100,
            "kmemlab/0",
            "Not tainted",
            Some(&console[1]),
            "kernel/dma/direct.h:104 dma_direct_map_page",
        );
        assert_eq!(console, expected);
    }
    assert_eq!(m.mm().dma_stats().overflow_refusals, 3);
    m.run(|mm| {
        // Scatterlists: offset + size overflowing is -EINVAL.
        let pfn = Pfn(phys_of(mm, buf) >> 12);
        assert_eq!(
            mm.sg_alloc_table_from_pages(&[pfn], 100, usize::MAX - 50, Gfp::GFP_KERNEL)
                .err(),
            Some(DmaError::Inval)
        );
        // A pool alignment so large that ALIGN(size, align) overflows.
        assert!(mm.dma_pool_create("huge", dev, 64, 1 << 63, 0).is_err());
        mm.kfree(buf).unwrap();
    });
    assert_eq!(m.mm().dma_stats().mappings_live, 0);
    m.mm().dma_check_idle().unwrap();
}

#[test]
fn a_device_overwriting_dma_debugs_block_gets_errors_not_panics() {
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::off())
        .boot();
    let nic = m.add_dma_device("nic", 32).unwrap();
    let dev = nic.device();
    let buf = m.run(|mm| mm.kmalloc(256, Gfp::GFP_KERNEL)).unwrap();
    let a = m.run(|mm| mm.dma_map_single(dev, buf, 256, Dir::ToDevice));
    let (block, len) = m.mm().dma_debug_block().expect("dma-debug is on");
    scribble(&m, block.0, len as usize, 0xff);
    m.take_console();
    m.run(|mm| {
        assert!(mm.dma_mapping_error(dev, a).is_ok());
        let b = mm.dma_map_single(dev, buf, 128, Dir::FromDevice);
        mm.dma_sync_single_for_cpu(dev, b, 128, Dir::FromDevice);
        mm.dma_unmap_single(dev, b, 128, Dir::FromDevice);
        mm.dma_unmap_single(dev, a, 256, Dir::ToDevice);
        mm.kfree(buf).unwrap();
    });
    let console = m.take_console();
    assert!(
        console[0].starts_with("DMA-API: debugging: corrupted dma_debug_entry ")
            && console[0].ends_with(" - disabling"),
        "{console:?}"
    );
    assert!(matches!(
        m.mm().check(),
        Err(kmemlab_mm::check::CheckError::Dma(
            kmemlab_mm::dma::DmaCheckError::DebugCorrupted { .. }
        ))
    ));

    // A cycle: a bucket's chain leads back to itself.
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::off())
        .boot();
    let nic = m.add_dma_device("nic", 32).unwrap();
    let dev = nic.device();
    let buf = m.run(|mm| mm.kmalloc(256, Gfp::GFP_KERNEL)).unwrap();
    let a = m.run(|mm| mm.dma_map_single(dev, buf, 256, Dir::ToDevice));
    let (block, _) = m.mm().dma_debug_block().unwrap();
    let bucket = (a >> 13) & 1023;
    // The mapping is entry 0 (the first free one): its link now points at itself.
    let evil = m.add_dma_device("evil", 64).unwrap();
    evil.load_buffer(&1u64.to_le_bytes());
    evil.write_to_memory(&m, block.0 + 8192, 8).unwrap();
    assert_eq!(
        m.mm().check().map(|_| ()),
        Err(kmemlab_mm::check::CheckError::Dma(
            kmemlab_mm::dma::DmaCheckError::DebugCorrupted {
                bucket,
                index: 0,
                link: 1
            }
        ))
    );
    m.run(|mm| {
        let b = mm.dma_map_single(dev, buf, 64, Dir::ToDevice);
        assert_ne!(b, DMA_MAPPING_ERROR);
        mm.dma_unmap_single(dev, b, 64, Dir::ToDevice);
        mm.dma_unmap_single(dev, a, 256, Dir::ToDevice);
        mm.kfree(buf).unwrap();
    });
    assert!(m
        .take_console()
        .iter()
        .any(|l| l.starts_with("DMA-API: debugging: corrupted dma_debug_entry chain (a cycle)")));
    assert!(m.mm().check().is_err());
}

#[test]
fn a_device_overwriting_the_swiotlb_slot_array_gets_errors_not_panics() {
    let m = isa_machine(Profile::X86_64);
    let isa = m.add_dma_device("isa", 24).unwrap();
    let dev = isa.device();
    let slots = m
        .mm()
        .memblock()
        .reserved()
        .regions()
        .iter()
        .find(|r| r.name == "swiotlb slots")
        .map(|r| (r.base, r.size))
        .unwrap();
    let buf = m.run(|mm| high_kmalloc(mm, 4096));
    let a = m.run(|mm| {
        let a = mm.dma_map_single(dev, buf, 4096, Dir::FromDevice);
        mm.dma_mapping_error(dev, a).unwrap();
        assert!(mm.is_swiotlb_buffer(PhysAddr(a)));
        a
    });
    scribble(&m, slots.0, slots.1 as usize, 0xff);
    m.take_console();
    m.run(|mm| {
        mm.dma_sync_single_for_cpu(dev, a, 4096, Dir::FromDevice);
        mm.dma_unmap_single(dev, a, 4096, Dir::FromDevice);
        // No slot can be trusted: nothing is handed out.
        let b = mm.dma_map_single(dev, buf, 64, Dir::ToDevice);
        assert_eq!(b, DMA_MAPPING_ERROR);
        assert_eq!(mm.dma_mapping_error(dev, b), Err(DmaError::NoMem));
        mm.kfree(buf).unwrap();
    });
    let console = m.take_console();
    assert!(
        console
            .iter()
            .any(|l| l.starts_with("software IO TLB: slot ") && l.contains("corrupted alloc_size")),
        "{console:?}"
    );
    assert!(console.iter().any(|l| l.contains("swiotlb buffer is full")));
    assert!(m.mm().check().is_err());
}

#[test]
fn bounce_overflow_reports_the_room_left_after_the_offset() {
    let m = isa_machine(Profile::X86_64);
    let isa = m.add_dma_device("isa", 24).unwrap();
    let dev = isa.device();
    m.run(|mm| {
        let buf = high_kmalloc(mm, 128);
        let a = mm.dma_map_single(dev, buf, 100, Dir::Bidirectional);
        mm.dma_mapping_error(dev, a).unwrap();
        mm.dma_sync_single_for_cpu(dev, a + 16, 100, Dir::Bidirectional);
        mm.dma_unmap_single(dev, a, 100, Dir::Bidirectional);
        mm.kfree(buf).unwrap();
    });
    let console = m.take_console();
    assert!(
        console.iter().any(|l| l
            == "simdma isa: Buffer overflow detected. Allocation size: 84. Mapping size: 100."),
        "{console:?}"
    );
}

#[test]
fn a_failed_dma_map_sg_unwinds_without_copying_bounces_back() {
    // dma_direct_map_sg() unmaps what it mapped with DMA_ATTR_SKIP_CPU_SYNC.
    let m = isa_machine(Profile::X86_64);
    let isa = m.add_dma_device("isa", 24).unwrap();
    let dev = isa.device();
    m.run(|mm| {
        let small = high_kmalloc(mm, 1024);
        // Too big for any bounce run (a segment is 256 KiB).
        let big = mm.alloc_pages(Gfp::GFP_KERNEL, 7).unwrap();
        let big_pfn = mm.page_to_pfn(big);
        assert!(big_pfn.phys().0 >= 16 * MIB);
        let t = mm.sg_alloc_table(2, Gfp::GFP_KERNEL).unwrap();
        mm.sg_set_buf(t.sg(0).unwrap(), small, 1024).unwrap();
        mm.sg_set_page(t.sg(1).unwrap(), big, 512 << 10, 0).unwrap();
        let before = mm.dma_stats().bounce_bytes;
        assert_eq!(mm.dma_map_sg(dev, &t, 2, Dir::FromDevice), 0);
        assert_eq!(
            mm.dma_stats().bounce_bytes - before,
            1024,
            "copied in, not out"
        );
        let mut t = t;
        mm.sg_free_table(&mut t);
        mm.__free_pages(big, 7).unwrap();
        mm.kfree(small).unwrap();
    });
    m.take_console();
    m.mm().dma_check_idle().unwrap();
}

#[test]
fn dma_debug_checks_page_frees_through_the_free_hook_it_registered_at_boot() {
    let m = MachineBuilder::small()
        .seed(3)
        .swiotlb(SwiotlbConfig::off())
        .boot();
    // dma-debug is the one user of debug_check_no_obj_freed's hooks.
    assert_eq!(m.mm().nr_free_hooks(), 1);
    let nic = m.add_dma_device("nic", 32).unwrap();
    let dev = nic.device();
    m.run(|mm| {
        let page = mm.alloc_pages(Gfp::GFP_KERNEL, 1).unwrap();
        // Armed only while a streaming mapping is live: a free with none costs one load.
        assert_eq!(mm.nr_free_hooks_armed(), 0);
        let a = mm.dma_map_page(dev, page, PAGE_SIZE, 256, Dir::ToDevice);
        mm.dma_mapping_error(dev, a).unwrap();
        assert_eq!(mm.nr_free_hooks_armed(), 1);
        // __free_pages() -> debug_check_no_obj_freed() -> dma-debug's hook.
        mm.__free_pages(page, 1).unwrap();
        mm.dma_unmap_page(dev, a, 256, Dir::ToDevice);
        assert_eq!(mm.nr_free_hooks_armed(), 0);
    });
    let reports: Vec<_> = m
        .take_console()
        .into_iter()
        .filter(|l| l.contains("still DMA-mapped"))
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].ends_with("[size=256 bytes] [mapped as single] [mapped with DMA_TO_DEVICE]"));
    let s = m.mm().dma_stats();
    assert_eq!(s.debug(DmaDebugError::FreedWhileMapped), 1);
}

#[test]
fn many_mappings_of_a_freed_buffer_are_counted_beyond_the_first_eight() {
    let m = MachineBuilder::new()
        .ram(64 * MIB)
        .cpus(2)
        .seed(3)
        .swiotlb(SwiotlbConfig::off())
        .boot();
    let nic = m.add_dma_device("nic", 32).unwrap();
    let dev = nic.device();
    m.run(|mm| {
        let buf = mm.kmalloc(64, Gfp::GFP_KERNEL).unwrap();
        let addrs: Vec<_> = (0..10)
            .map(|_| mm.dma_map_single(dev, buf, 64, Dir::ToDevice))
            .collect();
        // A free far from every mapping costs no scan and reports nothing.
        let other = mm.alloc_pages(Gfp::GFP_KERNEL, 0).unwrap();
        mm.__free_pages(other, 0).unwrap();
        mm.kfree(buf).unwrap();
        for a in addrs {
            mm.dma_mapping_error(dev, a).unwrap();
            mm.dma_unmap_single(dev, a, 64, Dir::ToDevice);
        }
    });
    let console = m.take_console();
    let reports = console
        .iter()
        .filter(|l| l.contains("still DMA-mapped"))
        .count();
    assert_eq!(reports, 8);
    assert!(console
        .iter()
        .any(|l| l == "DMA-API: 2 more mappings of the freed memory not reported"));
    let s = m.mm().dma_stats();
    assert_eq!(s.debug_reports_dropped, 2);
    assert_eq!(s.debug(DmaDebugError::FreedWhileMapped), 8);
    m.mm().dma_check_idle().unwrap();
}

#[test]
fn two_cpus_unmapping_the_same_bounce_at_once_release_it_once() {
    let m = isa_machine(Profile::X86_64);
    let isa = m.add_dma_device("isa", 24).unwrap();
    let buf = m.run(|mm| high_kmalloc(mm, 4096));
    for _ in 0..50 {
        let a = m.run(|mm| {
            let a = mm.dma_map_single(isa.device(), buf, 4096, Dir::ToDevice);
            mm.dma_mapping_error(isa.device(), a).unwrap();
            a
        });
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            for cpu in 0..2usize {
                let (m, isa, barrier) = (&m, &isa, &barrier);
                s.spawn(move || {
                    m.on_cpu(cpu, Context::Process, |mm| {
                        barrier.wait();
                        mm.dma_unmap_single(isa.device(), a, 4096, Dir::ToDevice);
                    })
                    .unwrap();
                });
            }
        });
        m.mm().check().unwrap();
        assert_eq!(m.mm().dma_stats().swiotlb_slots_used, 0);
    }
    m.run(|mm| mm.kfree(buf)).unwrap();
    m.take_console();
    m.mm().dma_check_idle().unwrap();
}
