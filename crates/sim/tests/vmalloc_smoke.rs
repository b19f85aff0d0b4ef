//! A quick end-to-end pass over the vmalloc API on both profiles, check() after each step.

use kmemlab_mm::{Gfp, Profile, VirtAddr};
use kmemlab_sim::{Machine, MachineConfig};

fn machine(profile: Profile) -> Machine {
    Machine::new(MachineConfig {
        profile,
        ram: 256 << 20,
        cpus: 2,
        ..MachineConfig::default()
    })
    .unwrap()
}

#[test]
fn smoke() {
    for profile in [Profile::X86_64, Profile::I386] {
        let m = machine(profile);
        m.mm().check_vmalloc(true).unwrap();
        let before = m.mm().zones().iter().map(|z| z.free_pages()).sum::<u64>();
        m.run(|mm| {
            let a = mm.vmalloc(64 << 10).unwrap();
            assert!(mm.is_vmalloc_addr(a));
            mm.check_vmalloc(true).unwrap();
            let area = mm.find_vm_area(a).unwrap();
            assert_eq!(area.nr_pages, 16);
            assert_eq!(area.size, 17 << 12);
            let mut pfns = vec![];
            mm.vm_area_pfns(a, |p| pfns.push(p)).unwrap();
            assert_eq!(pfns.len(), 16);
            let b = mm.vzalloc(3 << 20).unwrap();
            mm.check_vmalloc(true).unwrap();
            let h = mm.vmalloc_huge(4 << 20, Gfp::GFP_KERNEL).unwrap();
            mm.check_vmalloc(true).unwrap();
            eprintln!(
                "{profile}: a={a} b={b} h={h} pt={}",
                mm.nr_pagetable_pages()
            );
            mm.vfree(a).unwrap();
            mm.check_vmalloc(true).unwrap();
            assert!(mm.vfree(a).is_err());
            mm.vfree(b).unwrap();
            mm.vfree(h).unwrap();
            mm.check_vmalloc(true).unwrap();
            mm.purge_vmap_area_lazy();
            mm.check_vmalloc(true).unwrap();
            let mut addrs = vec![];
            for i in 1..200usize {
                addrs.push(mm.vmalloc(i * 4096 + 1).unwrap());
                if i % 3 == 0 {
                    let x = addrs.swap_remove(i % addrs.len());
                    mm.vfree(x).unwrap();
                }
                mm.check_vmalloc(i % 20 == 0).unwrap();
            }
            for x in addrs {
                mm.vfree(x).unwrap();
            }
            mm.purge_vmap_area_lazy();
            mm.check_vmalloc(true).unwrap();
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
