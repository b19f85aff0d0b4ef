//! The workload with kmemlab's kernel core as the global allocator.
use kmemlab_hostalloc::{HostConfig, Kmemlab};

mod common;

#[global_allocator]
static KERNEL: Kmemlab = Kmemlab::new(HostConfig::new());

fn main() {
    common::main("kmemlab");
}
