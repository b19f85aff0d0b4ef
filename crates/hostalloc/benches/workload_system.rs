//! The workload with the system allocator (glibc malloc) as the global allocator.
mod common;

#[global_allocator]
static SYSTEM: std::alloc::System = std::alloc::System;

fn main() {
    common::main("system");
}
