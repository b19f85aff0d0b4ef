//! The workload with talc as the global allocator, over a static 1 GiB arena (kmemlab
//! gets 1 GiB of RAM): the hosted set-up talc's README gives; the host commits the
//! arena's pages on first touch. (2 GiB of `.bss` is past the small code model's reach.)
use talc::{ClaimOnOom, Span, Talc, Talck};

mod common;

const ARENA_BYTES: usize = 1 << 30;
static mut ARENA: [u8; ARENA_BYTES] = [0; ARENA_BYTES];

#[global_allocator]
// SAFETY: the arena is used by talc alone, for the life of the program.
static TALC: Talck<spin::Mutex<()>, ClaimOnOom> =
    Talc::new(unsafe { ClaimOnOom::new(Span::from_array(core::ptr::addr_of_mut!(ARENA))) }).lock();

fn main() {
    common::main("talc");
}
