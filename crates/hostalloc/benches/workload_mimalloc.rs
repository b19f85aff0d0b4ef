//! The workload with mimalloc as the global allocator.
mod common;

#[global_allocator]
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    common::main("mimalloc");
}
