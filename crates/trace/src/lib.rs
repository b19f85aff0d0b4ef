//! kmemlab's trace layer: parse the text of ftrace and `trace-cmd report` for the `kmem`
//! and `vmalloc` tracepoints, replay the slab, page and vmalloc events on a simulated
//! machine ([`kmemlab_sim::Machine`]), and report as `perf kmem stat` does, with kmemlab's
//! own figures added.
//!
//! It sits between the front ends and the machine: `kmemlab` (cli) → `kmemlab_trace` →
//! `kmemlab_sim` → `kmemlab_mm`. The machine knows nothing of traces; the SVG plot's
//! dependency (`plotters`) lives here, not in the machine crate.
//!
//! ```
//! use kmemlab_trace::{replay, ReplayOptions, TraceReader};
//! use kmemlab_sim::{Machine, MachineConfig};
//!
//! let text = "\
//!   init-1 [000] .N.. 0.17: kmalloc: call_site=c104de4f ptr=c143de20 bytes_req=29 bytes_alloc=32 gfp_flags=GFP_KERNEL
//!   init-1 [000] .N.. 0.18: kfree: call_site=c104de60 ptr=c143de20
//! ";
//! let machine = Machine::new(MachineConfig::default()).unwrap();
//! let mut reader = TraceReader::new(text.as_bytes(), false);
//! let report = replay(&machine, &mut reader, &ReplayOptions::default(), &mut |_| {}).unwrap();
//! assert_eq!(report.slab.total_requested, 29);
//! assert_eq!(report.slab.total_freed, 32);
//! assert_eq!(report.fidelity.kmalloc_agreed, 1);
//! assert!(report.to_text(10).contains("SUMMARY (SLAB allocator)"));
//! ```
//!
//! * [`parse`]: one line into a [`TraceEvent`], from the `[CPU]` bracket outward (with a
//!   fast path, `fast/`, for the common line shape).
//! * [`reader`]: a stream of events from any `BufRead`, in bounded memory, each with the
//!   [`callchain`] `perf script` printed below it.
//! * [`replay`](mod@replay): the events on a [`kmemlab_sim::Machine`].
//! * [`report`]: the tables, summaries and `/proc` files; [`plot`]: an SVG over time.
//! * [`synth`]: traces for benchmarks (the shared trace repeated, a generated 6.18 one).
#![warn(missing_docs)]

pub mod callchain;
pub mod classes;
pub mod event;
mod fast;
pub mod gfp;
pub mod hash;
pub mod kallsyms;
pub mod parse;
pub mod plot;
pub mod reader;
pub mod replay;
pub mod report;
pub mod stats;
pub mod synth;
pub mod tables;
pub mod vmap;

pub use event::{CallSite, Event, EventName, SlabAlloc, SlabFree, TraceContext, TraceEvent};
pub use parse::{Line, LineParser, Symbols};
pub use reader::{InputStats, TraceError, TraceReader, MAX_LINE};
pub use replay::{replay, ParseThread, ReplayError, ReplayOptions};
pub use report::{side_by_side, Report, TextOptions};
