//! Size-class recognition (issue 14, item 5): a trace whose kmalloc sizes are another
//! allocator's classes gets the `--kmalloc-sizes` that reproduces them, verified.

use std::io::BufReader;

use kmemlab_mm::slab::kmalloc::KmallocSizes;
use kmemlab_sim::{Machine, MachineConfig};
use kmemlab_trace::classes::{agreement, infer_classes};
use kmemlab_trace::{replay, ReplayOptions, Report, TraceReader};

fn boot(kmalloc_sizes: Option<&[usize]>) -> Machine {
    let mut config = MachineConfig {
        cpus: 1,
        ..MachineConfig::default()
    };
    config.slab.kmalloc_sizes = kmalloc_sizes.map(|s| KmallocSizes::new(s).expect("valid"));
    Machine::new(config).expect("boot")
}

fn replay_trace(machine: &Machine, name: &str) -> Report {
    let file = std::fs::File::open(crate::trace_path(name)).expect("open");
    let mut reader = TraceReader::new(BufReader::new(file), false);
    replay(machine, &mut reader, &ReplayOptions::default(), &mut |_| {}).expect("replay")
}

const SLAB_35_I386: [usize; 10] = [32, 64, 128, 192, 256, 512, 1024, 2048, 4096, 8192];

#[test]
fn slab_trace_gets_the_hint_and_the_hint_reaches_full_agreement() {
    let name = "linux-3.5-i386-boot-slab.trace";
    let r = replay_trace(&boot(None), name);
    let f = &r.fidelity;
    assert!(f.kmalloc_agreed * 100 < f.kmalloc_checked * 35, "{f:?}");
    let hint = r.size_class_hint.as_ref().expect("a hint");
    // SLAB on i386 (L1_CACHE_BYTES 64: no 96-byte cache) as kmalloc_sizes.h lists it.
    assert_eq!(hint.sizes, SLAB_35_I386);
    assert_eq!(
        (hint.agreed, hint.checked),
        (f.kmalloc_checked, f.kmalloc_checked)
    );
    let text = r.to_text(5);
    assert!(
        text.contains(
            "  traced sizes are other size classes (smallest 32): --kmalloc-sizes \
             32,64,128,192,256,512,1024,2048,4096,8192 gives 2,088/2,088 (100.00%)"
        ),
        "{text}"
    );

    // The hinted flag does what the hint said, and no hint is given then.
    let again = replay_trace(&boot(Some(&hint.sizes)), name);
    let g = &again.fidelity;
    assert_eq!(
        (g.kmalloc_agreed, g.kmalloc_checked),
        (hint.agreed, hint.checked)
    );
    assert_eq!(again.size_class_hint, None);
}

#[test]
fn slub_trace_that_agrees_gets_no_hint() {
    let r = replay_trace(&boot(None), "linux-3.5-i386-boot-slub.trace");
    assert_eq!(r.fidelity.kmalloc_agreed, r.fidelity.kmalloc_checked);
    assert_eq!(r.size_class_hint, None);
    assert!(!r.to_text(5).contains("other size classes"));
}

#[test]
fn a_kernel_with_kmalloc_min_size_64_is_recognised() {
    // A KMALLOC_MIN_SIZE 64 kernel (arm64's ARCH_DMA_MINALIGN before 6.5): 8 → 64.
    let mut t = String::new();
    for (i, (req, alloc)) in [(8, 64), (60, 64), (65, 128), (100, 128), (300, 512)]
        .iter()
        .enumerate()
    {
        t += &format!(
            "  t-1 [000] .... 1.0: kmalloc: call_site=c1 ptr={:x} bytes_req={req} bytes_alloc={alloc} gfp_flags=GFP_KERNEL\n",
            0x1000 + i * 0x100
        );
    }
    let mut reader = TraceReader::new(t.as_bytes(), false);
    let r = replay(
        &boot(None),
        &mut reader,
        &ReplayOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        r.fidelity.kmalloc_agreed, 3,
        "8 → 64 and 65 → 128 disagree on 6.6 classes"
    );
    let hint = r.size_class_hint.expect("a hint");
    assert_eq!(hint.sizes, [64, 128, 512, 8192]);
    assert_eq!((hint.agreed, hint.checked), (5, 5));
}

#[test]
fn inference_is_verified_not_assumed() {
    // 40 → 64 and 40 → 48 cannot both hold: whatever the classes, one pair disagrees.
    let pairs = [(40, 64, 3), (40, 48, 1), (10, 16, 2)];
    let sizes = infer_classes(&pairs).expect("valid classes");
    assert_eq!(sizes, [16, 48, 64, 8192]);
    assert_eq!(agreement(&sizes, &pairs), 3, "40 → 48 and 10 → 16 only");
}
