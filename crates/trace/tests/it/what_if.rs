//! Replays that ask "what if": the vmalloc events on kmemlab's vmalloc (a synthetic trace
//! in the kernel's exact format, since the shared traces hold none), other kmalloc size
//! classes (`SlabConfig::kmalloc_sizes`), and large kmallocs as kvmalloc.

use kmemlab_mm::Profile;
use kmemlab_sim::{Machine, MachineConfig};
use kmemlab_trace::{replay, ReplayOptions, Report, TraceReader};

fn fixture(name: &str) -> String {
    let path = crate::trace_path(name);
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
    format!(
        "  kworker/{cpu}:1-{} [{cpu:03}] ..... 1.{cpu:06}: {event}: {body}\n",
        40 + cpu
    )
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
        (
            v.traced_allocs,
            v.traced_alloc_failures,
            v.outside_vmalloc_range
        ),
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
            &format!(
                "va_start: {va} size={} align=1 {VMALLOC_WINDOW} failed=0",
                area + 4096
            ),
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

/// The Linux 3.5 SLUB boot trace (`tests/data/traces`).
fn slub_trace() -> String {
    let path = crate::trace_path("linux-3.5-i386-boot-slub.trace");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `bytes_req` of every successful `kmalloc` line, read by splitting on whitespace.
fn kmalloc_requests(text: &str) -> Vec<u64> {
    let mut v = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words.contains(&"kmalloc:") || line.contains("ptr=(null)") {
            continue;
        }
        let req = words
            .iter()
            .find_map(|w| w.strip_prefix("bytes_req="))
            .expect("bytes_req=");
        v.push(req.parse().unwrap());
    }
    v
}

/// What a kmalloc of `request` bytes takes with these classes: the smallest class that
/// holds it, or above the largest a block of `PAGE_SIZE << get_order(request)`.
fn bytes_taken(classes: &[u64], request: u64) -> u64 {
    match classes.iter().find(|&&c| c >= request) {
        Some(&c) => c,
        None => 4096 * request.div_ceil(4096).next_power_of_two(),
    }
}

fn machine_with_sizes(sizes: Option<&[usize]>) -> Machine {
    let mut config = MachineConfig {
        profile: Profile::I386,
        cpus: 1,
        ..MachineConfig::default()
    };
    config.slab.kmalloc_sizes =
        sizes.map(|s| kmemlab_mm::slab::kmalloc::KmallocSizes::new(s).expect("valid sizes"));
    Machine::new(config).expect("boot")
}

/// kmemlab's bytes for the trace's kmallocs: the rows of its kmalloc caches.
fn kmalloc_rows(r: &Report) -> (u64, u128) {
    r.caches
        .iter()
        .filter(|row| row.name.starts_with("kmalloc-"))
        .fold((0, 0), |(hits, bytes), row| {
            (hits + row.hit, bytes + row.bytes_alloc)
        })
}

#[test]
fn other_kmalloc_sizes_change_what_the_trace_allocates() {
    let text = slub_trace();
    let requests = kmalloc_requests(&text);
    let kernel: [u64; 13] = [
        8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
    ];
    let custom: [usize; 21] = [
        8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 128, 160, 192, 256, 384, 512, 768, 1024, 2048, 4096,
        8192,
    ];
    let custom_u64: Vec<u64> = custom.iter().map(|&c| c as u64).collect();
    let expect = |classes: &[u64]| -> u128 {
        requests
            .iter()
            .map(|&r| u128::from(bytes_taken(classes, r)))
            .sum()
    };

    let default = replay_text(&machine_with_sizes(None), &text, &ReplayOptions::default());
    let m = machine_with_sizes(Some(&custom));
    let other = replay_text(&m, &text, &ReplayOptions::default());
    assert_eq!(other.check, "ok");
    assert_eq!(m.mm().check().map(|_| ()), Ok(()));

    let n = requests.len() as u64;
    assert_eq!(kmalloc_rows(&default), (n, expect(&kernel)));
    assert_eq!(kmalloc_rows(&other), (n, expect(&custom_u64)));
    assert!(
        expect(&custom_u64) < expect(&kernel),
        "finer classes waste less"
    );
    assert!(
        other.derived.kmemlab_fragmentation_percent < default.derived.kmemlab_fragmentation_percent
    );
    // The traced kernel's numbers do not change; kmemlab's agreement with them does.
    assert_eq!(other.slab, default.slab);
    assert_eq!(default.fidelity.kmalloc_agreed, n);
    assert!(other.fidelity.kmalloc_agreed < n);
    // Caches named as the kernel names its classes.
    for name in [
        "kmalloc-24",
        "kmalloc-rcl-24",
        "dma-kmalloc-24",
        "kmalloc-cg-24",
        "kmalloc-768",
        "kmalloc-8k",
    ] {
        assert!(m.mm().find_cache(name).is_some(), "{name}");
    }
    assert!(m.mm().find_cache("kmalloc-96").is_some());
    assert!(m.mm().find_cache("kmalloc-1536").is_none());
    assert_eq!(other.kmalloc_sizes.as_deref(), Some(&custom[..]));
    assert!(other.machine_line().contains("kmalloc sizes 8,16,24,"));
}

#[test]
fn kvmalloc_above_counts_each_way_on_the_slub_trace() {
    let text = slub_trace();
    let large = kmalloc_requests(&text)
        .iter()
        .filter(|&&r| r > 4096)
        .count() as u64;
    assert!(large > 0);
    let options = ReplayOptions {
        kvmalloc_above: Some(4096),
        ..ReplayOptions::default()
    };
    let m = machine_with_sizes(None);
    let r = replay_text(&m, &text, &options);
    let k = &r.kvmalloc;
    assert_eq!(
        (k.above, k.via_kmalloc, k.via_vmalloc, k.failed),
        (Some(4096), large, 0, 0)
    );
    assert_eq!(r.check, "ok");
    assert!(r.to_text(3).contains("Served by kmalloc: "));
}

/// kmallocs the traced kernel could serve and kmemlab's kmalloc cannot (above
/// KMALLOC_MAX_SIZE, as on a kernel with larger page-allocator orders): as kvmalloc they
/// fall back to vmalloc when they may sleep, and `kfree` of them is a vfree.
#[test]
fn kvmalloc_falls_back_to_vmalloc_when_kmalloc_cannot() {
    let mut t = String::new();
    let alloc = |ptr: &str, bytes: u64, gfp: &str| {
        line(
            0,
            "kmalloc",
            &format!("call_site=kvmalloc_node+0x3e/0xf0 ptr={ptr} bytes_req={bytes} bytes_alloc={bytes} gfp_flags={gfp} node=-1 accounted=false"),
        )
    };
    let five_mib = 5 << 20;
    t += &alloc("ffff888010000000", five_mib, "GFP_KERNEL");
    t += &alloc("ffff888020000000", 16384, "GFP_KERNEL");
    t += &alloc("ffff888030000000", five_mib, "GFP_ATOMIC");
    t += &alloc("ffff888040000000", 64, "GFP_KERNEL");
    let m = machine(Profile::X86_64, 1);
    let plain = replay_text(&m, &t, &ReplayOptions::default());
    assert_eq!(
        plain.replay.kmalloc_failures, 2,
        "kmalloc cannot serve 5 MiB"
    );

    let m = machine(Profile::X86_64, 1);
    let options = ReplayOptions {
        kvmalloc_above: Some(4096),
        ..ReplayOptions::default()
    };
    let mut with_free = t.clone();
    with_free += &line(
        0,
        "kfree",
        "call_site=kvfree+0x2a/0x40 ptr=ffff888010000000",
    );
    let r = replay_text(&m, &with_free, &options);
    let k = &r.kvmalloc;
    assert_eq!(
        (k.via_kmalloc, k.via_vmalloc, k.failed),
        (1, 1, 1),
        "16 KiB by kmalloc, 5 MiB GFP_KERNEL by vmalloc, 5 MiB GFP_ATOMIC not at all"
    );
    assert_eq!(r.replay.kmalloc_failures, 1);
    // kmemlab's own areas: kvmalloc asks vmalloc for huge mappings (VM_ALLOW_HUGE_VMAP,
    // Linux 6.6 kvmalloc_node), so 5 MiB takes 6 MiB (3 PMDs) and its guard page, and the
    // array of 1536 page pointers (12 KiB) a vmalloc'd area of its own with its guard.
    assert_eq!(
        r.vmalloc.peak_bytes,
        (6 << 20) + 4096 + 12288 + 4096,
        "the areas and their guard pages"
    );
    let vmalloc_row = r
        .caches
        .iter()
        .find(|row| row.name.starts_with("vmalloc"))
        .unwrap();
    assert_eq!(
        (vmalloc_row.hit, vmalloc_row.bytes_alloc),
        (1, u128::from(five_mib))
    );
    assert_eq!(r.replay.free_failures, 0);
    assert_eq!(m.mm().vmalloc_nr_pages(), 0, "the kfree was a vfree");
    assert_eq!(r.check, "ok");
}

/// Side by side, a replay without kvmalloc and one with it show the same sections on the
/// same rows.
#[test]
fn side_by_side_keeps_sections_aligned_when_one_side_uses_kvmalloc() {
    let text = slub_trace();
    let a = replay_text(&machine_with_sizes(None), &text, &ReplayOptions::default());
    let options = ReplayOptions {
        kvmalloc_above: Some(4096),
        ..ReplayOptions::default()
    };
    let b = replay_text(&machine_with_sizes(None), &text, &options);
    let both = kmemlab_trace::side_by_side(&a, &b);
    let row = both
        .lines()
        .find(|l| l.contains("kvmalloc above 4,096 bytes"))
        .expect("B's kvmalloc section");
    assert!(row.starts_with("kvmalloc: off"), "{row}");
    let kmemlab_row = both.lines().find(|l| l.starts_with("kmemlab ")).unwrap();
    assert!(kmemlab_row.ends_with("| kmemlab"), "{kmemlab_row}");
}
