//! The invariant checker counts the page cache's own pages (walked through
//! `Shrinker::for_each_file_page`) against the file-page counters: a page accounted
//! without being cached, or cached without being accounted, is caught, on both profiles.

use crate::fixtures::{MachineBuilder, MIB};
use kmemlab_mm::check::CheckError;
use kmemlab_mm::{Gfp, Mm, Pfn, Profile, Shrinker};
use kmemlab_sim::{Machine, SimPlatform};

/// The first page the cache holds.
fn a_cached_page(machine: &Machine) -> Pfn {
    let mut first = None;
    machine.page_cache().for_each_file_page(&mut |pfn| {
        first.get_or_insert(pfn);
    });
    first.expect("a filled cache holds pages")
}

fn account(mm: &Mm<SimPlatform>, pfn: Pfn, delta: i64) {
    mm.account_page_cache(mm.pfn_to_page(pfn).unwrap(), delta);
}

#[test]
fn pages_and_counters_must_agree() {
    for profile in [Profile::X86_64, Profile::I386] {
        let machine = MachineBuilder::new()
            .profile(profile)
            .ram(256 * MIB)
            .cpus(2)
            .boot();
        let mm = machine.mm();
        let added = machine.run(|mm| machine.page_cache().fill(mm, 300));
        assert_eq!(added, 300, "{profile}");
        mm.check().unwrap_or_else(|e| panic!("{profile}: {e}"));

        // Accounted, but on no list of the cache.
        let stray = machine
            .run(|mm| {
                mm.alloc_pages(Gfp::GFP_KERNEL, 0)
                    .map(|p| mm.page_to_pfn(p))
            })
            .unwrap();
        account(&mm, stray, 1);
        match mm.check() {
            Err(CheckError::ZoneFilePagesMismatch {
                found, recorded, ..
            }) => assert_eq!(recorded, found + 1, "{profile}"),
            other => panic!("{profile}: {other:?}"),
        }
        account(&mm, stray, -1);
        mm.check().unwrap_or_else(|e| panic!("{profile}: {e}"));

        // On the cache's list, but its accounting dropped.
        let cached = a_cached_page(&machine);
        account(&mm, cached, -1);
        match mm.check() {
            Err(CheckError::ZoneFilePagesMismatch {
                found, recorded, ..
            }) => assert_eq!(found, recorded + 1, "{profile}"),
            other => panic!("{profile}: {other:?}"),
        }
        account(&mm, cached, 1);

        machine.run(|mm| {
            mm.__free_pages(mm.pfn_to_page(stray).unwrap(), 0).unwrap();
            machine.page_cache().drop_all(mm);
        });
        mm.check().unwrap_or_else(|e| panic!("{profile}: {e}"));
    }
}
