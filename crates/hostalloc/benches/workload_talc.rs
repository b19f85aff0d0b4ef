//! The workload with talc as the global allocator, over a static 2 GiB arena (the hosted
//! set-up talc's README gives; the arena's pages are committed by the host on first touch).
use talc::{ClaimOnOom, Span, Talc, Talck};

mod common;

const ARENA_BYTES: usize = 2 << 30;
static mut ARENA: [u8; ARENA_BYTES] = [0; ARENA_BYTES];

#[global_allocator]
// SAFETY: the arena is used by talc alone, for the life of the program.
static TALC: Talck<spin::Mutex<()>, ClaimOnOom> =
    Talc::new(unsafe { ClaimOnOom::new(Span::from_array(core::ptr::addr_of_mut!(ARENA))) }).lock();

fn main() {
    common::main("talc");
}
