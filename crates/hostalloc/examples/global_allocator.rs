//! A real program whose every heap byte comes from kmemlab's kernel core: a `BTreeMap` of
//! a million entries and a large JSON document, on `Mm` booted over host memory.
//!
//! `cargo run --release -p kmemlab-hostalloc --example global_allocator`
use kmemlab_hostalloc::workload::Workload;
use kmemlab_hostalloc::{HostConfig, Kmemlab};

#[global_allocator]
static KERNEL: Kmemlab = Kmemlab::new(HostConfig::new());

fn main() {
    let census = |when: &str| match KERNEL.census() {
        Ok(c) => println!("{when}: {c:?}"),
        Err(e) => println!("{when}: census failed: {e}"),
    };
    // The first print allocates stdout's buffer: before the first census, not between.
    println!("kmemlab-mm as this program's global allocator");
    census("before");
    let work = Workload::FULL;
    let out = work.run();
    println!(
        "map: {} hits, {} left, JSON: {} bytes, {} records, top ids {:?}",
        out.map_hits, out.map_len_after_removal, out.json_bytes, out.json_records, out.json_top_ids
    );
    let right = work.check(&out);
    drop(out);
    census("after");
    println!("served: {:?}", KERNEL.counts());
    println!("answers {}", if right { "right" } else { "WRONG" });
    if !right {
        std::process::exit(1);
    }
}
