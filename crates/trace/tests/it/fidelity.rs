//! Fidelity figures that can fail (issue 14, item 5): kmem_cache sizes laid out by
//! kmemlab, "n/a" when nothing was compared, vmalloc space measured on kmemlab's areas.

use kmemlab_mm::slab::SlabFlags;
use kmemlab_mm::Profile;
use kmemlab_sim::{Machine, MachineConfig};
use kmemlab_trace::{replay, ReplayOptions, Report, TraceReader};

fn machine_with(debug: &str) -> Machine {
    let mut config = MachineConfig {
        profile: Profile::X86_64,
        cpus: 1,
        ..MachineConfig::default()
    };
    if !debug.is_empty() {
        // (An empty slab_debug= turns every check on, as the kernel's does.)
        config.slab.debug = SlabFlags::parse_slab_debug(debug).expect("slab_debug letters");
    }
    Machine::new(config).expect("boot")
}

fn replay_text(machine: &Machine, text: &str) -> Report {
    let mut reader = TraceReader::new(text.as_bytes(), false);
    replay(machine, &mut reader, &ReplayOptions::default(), &mut |_| {}).expect("replay")
}

fn cache_alloc(ptr: &str, req: u64, alloc: u64) -> String {
    format!(
        "  t-1 [000] .... 1.0: kmem_cache_alloc: call_site=c9 ptr={ptr} bytes_req={req} bytes_alloc={alloc} gfp_flags=GFP_KERNEL\n"
    )
}

#[test]
fn cache_sizes_are_kmemlabs_layout_and_can_disagree() {
    let text = cache_alloc("b0", 200, 200) + &cache_alloc("b8", 200, 200);
    let plain = replay_text(&machine_with(""), &text);
    assert_eq!(
        (plain.fidelity.cache_checked, plain.fidelity.cache_agreed),
        (2, 2)
    );
    assert_eq!(plain.derived.kmemlab_allocated, 400);
    assert_eq!(plain.derived.cache_fidelity_percent, Some(100.0));

    // Red zones and tracking (slab_debug=ZU) make kmemlab's s->size larger than the
    // traced kernel's: the figure drops, and kmemlab's bytes and fragmentation follow.
    let debug = replay_text(&machine_with("ZU"), &text);
    let f = &debug.fidelity;
    assert_eq!((f.cache_checked, f.cache_agreed), (2, 0));
    let m = &f.mismatches[0];
    assert_eq!((m.bytes_req, m.traced, m.events), (200, 200, 2));
    assert!(m.kmemlab > 200, "red zone and tracks: {m:?}");
    assert_eq!(debug.derived.kmemlab_allocated, 2 * u128::from(m.kmemlab));
    assert!(debug.derived.kmemlab_fragmentation_percent > 0.0);
    assert_eq!(debug.derived.cache_fidelity_percent, Some(0.0));
    let text = debug.to_text(5);
    assert!(
        text.contains("Cache layout size == bytes_alloc: 0/2 (0.00%)"),
        "{text}"
    );
}

#[test]
fn nothing_compared_prints_not_applicable() {
    let text = "  t-1 [000] .... 1.0: kfree: call_site=c1 ptr=b0\n";
    let r = replay_text(&machine_with(""), text);
    assert_eq!(r.derived.kmalloc_fidelity_percent, None);
    assert_eq!(r.derived.cache_fidelity_percent, None);
    let out = r.to_text(5);
    assert!(
        out.contains("kmalloc ksize == bytes_alloc: 0/0 (n/a)"),
        "{out}"
    );
    assert!(
        out.contains("Cache layout size == bytes_alloc: 0/0 (n/a)"),
        "{out}"
    );
    assert!(!out.contains("100.00%"), "{out}");
}
