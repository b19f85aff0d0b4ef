//! A quick end-to-end pass over the vmalloc API on both profiles, check() after each step.

use crate::fixtures::{MachineBuilder, MIB};
use kmemlab_mm::{Gfp, Profile, VirtAddr};

#[test]
fn smoke() {
    for profile in [Profile::X86_64, Profile::I386] {
        let m = MachineBuilder::new()
            .profile(profile)
            .ram(256 * MIB)
            .cpus(2)
            .boot();
        m.mm().check().unwrap();
        let before = m.mm().zones().iter().map(|z| z.free_pages()).sum::<u64>();
        m.run(|mm| {
            let a = mm.vmalloc(64 << 10).unwrap();
            assert!(mm.is_vmalloc_addr(a));
            mm.check().unwrap();
            let area = mm.find_vm_area(a).unwrap();
            assert_eq!(area.nr_pages, 16);
            assert_eq!(area.size, 17 << 12);
            let mut pfns = vec![];
            mm.vm_area_pfns(a, |p| pfns.push(p)).unwrap();
            assert_eq!(pfns.len(), 16);
            let b = mm.vzalloc(3 << 20).unwrap();
            mm.check().unwrap();
            let h = mm.vmalloc_huge(4 << 20, Gfp::GFP_KERNEL).unwrap();
            mm.check().unwrap();
            eprintln!(
                "{profile}: a={a} b={b} h={h} pt={}",
                mm.nr_pagetable_pages()
            );
            mm.vfree(a).unwrap();
            mm.check().unwrap();
            assert!(mm.vfree(a).is_err());
            mm.vfree(b).unwrap();
            mm.vfree(h).unwrap();
            mm.check().unwrap();
            mm.purge_vmap_area_lazy();
            mm.check().unwrap();
            let mut addrs = vec![];
            for i in 1..200usize {
                addrs.push(mm.vmalloc(i * 4096 + 1).unwrap());
                if i % 3 == 0 {
                    let x = addrs.swap_remove(i % addrs.len());
                    mm.vfree(x).unwrap();
                }
                mm.check().unwrap();
            }
            for x in addrs {
                mm.vfree(x).unwrap();
            }
            mm.purge_vmap_area_lazy();
            mm.check().unwrap();
            assert_eq!(mm.vfree(VirtAddr(0)), Ok(()));
        });
        m.mm().check().unwrap();
        let after = m.mm().zones().iter().map(|z| z.free_pages()).sum::<u64>();
        eprintln!(
            "{profile}: free before {before} after {after} console {:?}",
            m.take_console()
        );
    }
}

/// The same physical page seen through the vmalloc mapping and through the direct map
/// (both walked by the simulated MMU) holds the same bytes, both ways round.
#[test]
fn direct_map_and_vmalloc_alias_the_same_bytes() {
    let m = MachineBuilder::new().ram(256 * MIB).cpus(2).boot();
    let a = m.run(|mm| mm.vmalloc(4 << 12)).unwrap();
    let pattern: Vec<u8> = (0..4u32 << 12).map(|i| (i * 7 + 3) as u8).collect();
    m.run(|_| m.write(a, &pattern)).unwrap();
    for page in 0..4u64 {
        let va = VirtAddr(a.0 + (page << 12));
        let pfn = m.mm().vmalloc_to_pfn(va).unwrap();
        let alias = VirtAddr(m.mm().layout().phys_to_virt(pfn.phys().0).unwrap());
        let through_direct_map = m.run(|_| m.read(alias, 4096)).unwrap();
        assert_eq!(through_direct_map, pattern[(page as usize) << 12..][..4096]);
        // And back: a write through the direct map shows through the vmalloc mapping.
        m.run(|_| m.write(VirtAddr(alias.0 + 100), b"alias"))
            .unwrap();
        let seen = m.run(|_| m.read(VirtAddr(va.0 + 100), 5)).unwrap();
        assert_eq!(seen, b"alias");
    }
    // vmap of pages the caller owns: the same frames, a second virtual address.
    let (p, v) = m.run(|mm| {
        let page = mm.alloc_pages(Gfp::GFP_KERNEL, 1).unwrap();
        let pfn = mm.page_to_pfn(page);
        let v = mm
            .vmap(
                &[pfn, kmemlab_mm::Pfn(pfn.0 + 1)],
                kmemlab_mm::vmalloc::VmFlags::VM_MAP,
                kmemlab_mm::arch::pgtable::PgProt::kernel(mm.profile()),
            )
            .unwrap();
        (mm.page_address(page).unwrap(), v)
    });
    m.run(|_| m.write(VirtAddr(p.0 + 4090), b"crosses a page"))
        .unwrap();
    assert_eq!(
        m.run(|_| m.read(VirtAddr(v.0 + 4090), 14)).unwrap(),
        b"crosses a page"
    );
    m.run(|mm| mm.vunmap(v)).unwrap();
    m.run(|mm| mm.vfree(a)).unwrap();
    m.mm().check().unwrap();
}
