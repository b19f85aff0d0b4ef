//! Replays that ask "what if": the vmalloc events on kmemlab's vmalloc (a synthetic trace
//! in the kernel's exact format, since the shared traces hold none), other kmalloc size
//! classes (`SlabConfig::kmalloc_sizes`), and large kmallocs as kvmalloc.

use std::path::PathBuf;

use kmemlab_mm::Profile;
use kmemlab_sim::trace::{replay, ReplayOptions, Report, TraceReader};
use kmemlab_sim::{Machine, MachineConfig};

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn machine(profile: Profile, cpus: usize) -> Machine {
    Machine::new(MachineConfig {
        profile,
        cpus,
        ..MachineConfig::default()
    })
    .expect("boot")
}

fn replay_text(machine: &Machine, text: &str, options: &ReplayOptions) -> Report {
    let mut reader = TraceReader::new(text.as_bytes(), false);
    replay(machine, &mut reader, options, &mut |_| {}).expect("replay")
}

/// A line as ftrace prints it on 6.x (5 flag characters).
fn line(cpu: u32, event: &str, body: &str) -> String {
    format!("  kworker/{cpu}:1-{} [{cpu:03}] ..... 1.{cpu:06}: {event}: {body}\n", 40 + cpu)
}

const VMALLOC_WINDOW: &str = "vstart=0xffffc90000000000 vend=0xffffe8ffffffffff";

#[test]
fn vmalloc_events_replay_on_kmemlabs_vmalloc() {
    let text = fixture("vmalloc-6.6-x86_64.trace");
    let m = machine(Profile::X86_64, 2);
    let r = replay_text(&m, &text, &ReplayOptions::default());
    assert_eq!(r.check, "ok");
    assert_eq!(r.input.events, 12);
    assert_eq!(r.replay.replayed, 12);
    let v = &r.vmalloc;
    // Five areas the traced kernel got, one it did not; one was a module area.
    assert_eq!(
        (v.traced_allocs, v.traced_alloc_failures, v.outside_vmalloc_range),
        (5, 1, 1)
    );
    assert_eq!((v.reserved, v.reserve_failures), (4, 0));
    assert_eq!((v.traced_frees, v.untracked_frees), (3, 1));
    assert_eq!((v.traced_purges, v.traced_purged_areas), (1, 3));
    // Live at the peak: 8 KiB + 20 KiB + 2 MiB + 4 KiB (the ioremap-like area's guard).
    assert_eq!(v.peak_bytes, 8192 + 20480 + 2101248);
    assert_eq!(v.live_at_end, 2, "the 20 KiB area and the vm_map_ram one");
    // The trace's purge found kmemlab's two lazily freed areas and flushed once.
    assert_eq!(v.purges_for_traced, 1);
    assert_eq!(v.kmemlab_purges, 1);
    assert_eq!(v.kmemlab_purged_areas, 2);
    assert_eq!(v.kmemlab_tlb_flushes, 1);
    assert_eq!(v.traced_lazy_max_pages, Some(16384));
    assert_eq!(v.kmemlab_lazy_max_pages, 16384, "fls(2) x 32 MiB of pages");
    assert_eq!(m.mm().vmap_lazy_nr(), 0);
    let text = r.to_text(5);
    for needle in [
        "SUMMARY (vmalloc)",
        "Areas allocated: 5 (traced failures 1, outside the vmalloc range 1)",
        "Purges in the trace: 1 (3 areas)",
        "kmemlab purges: 1 (at the trace's purges 1), 2 areas, 1 TLB flushes",
        "Peak vmalloc space: 2,080 KiB",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
}

#[test]
fn vmalloc_events_map_onto_the_i386_vmalloc_range() {
    let text = fixture("vmalloc-6.6-x86_64.trace");
    let m = machine(Profile::I386, 2);
    let r = replay_text(&m, &text, &ReplayOptions::default());
    assert_eq!(r.check, "ok");
    assert_eq!(r.vmalloc.reserved, 4);
    assert_eq!(r.vmalloc.reserve_failures, 0);
}

/// Areas freed without the trace purging: kmemlab purges on its own once its lazily
/// freed pages pass lazy_max_pages(), one TLB flush for all of them.
#[test]
fn kmemlab_purges_on_its_own_past_lazy_max_pages() {
    let mut t = String::new();
    let base: u64 = 0xffffc90000000000;
    let area = 8 << 20;
    for i in 0..6u64 {
        let va = base + i * (area + 4096);
        t += &line(
            0,
            "alloc_vmap_area",
            &format!("va_start: {va} size={} align=1 {VMALLOC_WINDOW} failed=0", area + 4096),
        );
        t += &line(
            0,
            "free_vmap_area_noflush",
            &format!("va_start={va:#x} nr_lazy=0 nr_lazy_max=8192"),
        );
    }
    // One CPU: lazy_max_pages() is 32 MiB of pages; 6 x 8 MiB passes it once.
    let m = machine(Profile::X86_64, 1);
    let r = replay_text(&m, &t, &ReplayOptions::default());
    let v = &r.vmalloc;
    assert_eq!(v.traced_purges, 0);
    assert_eq!(v.reserved, 6);
    assert_eq!(v.kmemlab_purges, 1, "{v:?}");
    assert_eq!(v.kmemlab_tlb_flushes, 1);
    assert!(m.mm().vmap_lazy_nr() <= m.mm().lazy_max_pages());
    assert_eq!(r.check, "ok");
}
