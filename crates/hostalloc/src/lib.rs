//! kmemlab's kernel core (`kmemlab-mm`) as a real program's allocator.
//!
//! [`HostPlatform`] implements the core's `Platform` over a plain region of the host
//! process's memory — no simulator — and [`Kmemlab`] boots `Mm` on it at first use and
//! serves Rust's `GlobalAlloc` from it: small sizes from kmalloc's SLUB caches, sizes up
//! to 4 MiB from the page allocator (large kmalloc), larger ones from vmalloc (whose
//! pages are mapped into the host at the area's offset, as a real MMU would map them).
//!
//! ```no_run
//! use kmemlab_hostalloc::{HostConfig, Kmemlab};
//!
//! #[global_allocator]
//! static KERNEL: Kmemlab = Kmemlab::new(HostConfig::new());
//!
//! fn main() {
//!     let mut m = std::collections::BTreeMap::new();
//!     m.insert(1, "one");
//!     assert_eq!(m[&1], "one");
//! }
//! ```
//!
//! [`workload`] is the program the tests and benchmarks run under it (and under other
//! allocators, for comparison). `docs/EMBEDDING.md` explains how a Rust OS embeds the
//! core the same way.
#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod global;
pub mod platform;
pub mod sys;
pub mod workload;

pub use global::{BootFailure, Census, Kmemlab, PathCounts};
pub use platform::{HostConfig, HostPlatform, HostPlatformError};
