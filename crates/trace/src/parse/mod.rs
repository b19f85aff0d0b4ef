//! One line of ftrace or `trace-cmd report` text into a [`TraceEvent`].
//!
//! The shapes accepted (see `include/trace/events/kmem.h` and `vmalloc.h` of 3.x – 6.x):
//!
//! ```text
//!             init-1     [000] .N..     0.170000: kmalloc: call_site=c104de4f ptr=c143de20 bytes_req=29 bytes_alloc=32 gfp_flags=GFP_KERNEL
//!   kworker/u8:2-1234    [003] d..1.  123.456789: kmem_cache_free: call_site=getname_flags+0x4f/0x1f0 ptr=000000006c8b2d1e name=names_cache
//!      Web Content-5678  [001]   99.000001: kfree:                call_site=c10c283a ptr=(null)
//! ```
//!
//! The line is read from the `[CPU]` bracket outward, so the task name before it may hold
//! spaces, colons, dashes and brackets; the flags column after it is optional (trace-cmd
//! leaves it out), 4 or 5 characters wide; the event's fields are `key=value` pairs in
//! any order, where a value may be followed by words that belong to it (`ptr=  (null)`,
//! `func+0x10/0x20 [module]`).
//!
//! It mirrors the kernel's output side: the line prefix `trace_print_context()` writes
//! (`kernel/trace/trace_output.c`, Linux 6.6) and each event's `TP_printk` format.
//!
//! Where to start reading: [`LineParser::parse`] below (the fast path in `crate::fast`,
//! else `LineParser::parse_general`), then `header.rs` (the line's framing: task, pid,
//! `[CPU]`, flags, timestamp, event name), `fields.rs` (the `key=value` pairs),
//! `events.rs` (one [`Event`](crate::event::Event) per event kind from its fields) and `values.rs` (hex,
//! decimal and pointer values, and the size limits [`MAX_TRACED_SIZE`] and
//! [`MAX_SLAB_OBJECT`]).

mod events;
mod fields;
mod header;
mod values;

pub(crate) use header::{cpu_bracket, flags, task_pid, without_subsystem, POW10};
#[cfg(test)]
pub(crate) use values::hex_for_tests;
pub(crate) use values::{check_slab_sizes, HEX_DIGIT, NOT_HEX};
pub use values::{MAX_SLAB_OBJECT, MAX_TRACED_SIZE};

pub(crate) use fields::as_text;
use fields::Fields;
use header::{is_trace_cmd_header, lost_events, split_header};

use crate::callchain::{parse_frame, Frame, FrameLine};
use crate::event::{CallSite, EventName, TraceEvent};
use crate::gfp::GfpTable;
use crate::hash::FxHashMap;

/// Interned strings (symbolic call sites, cache names): each distinct string is stored
/// once, whatever the trace's length.
#[derive(Default)]
pub struct Symbols {
    /// Keyed by the strings' bytes, so that the fast path finds a string it met before
    /// without checking its bytes are UTF-8 again ([`Symbols::find`]).
    ids: FxHashMap<Box<[u8]>, u32>,
    names: Vec<Box<str>>,
}

impl Symbols {
    /// The id of `name`, adding it if new.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.find(name.as_bytes()) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.ids.insert(name.as_bytes().into(), id);
        id
    }

    /// The id of the string whose bytes are `bytes`, if it is held (then they are UTF-8).
    #[inline]
    pub fn find(&self, bytes: &[u8]) -> Option<u32> {
        self.ids.get(bytes).copied()
    }

    /// The string behind an id.
    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("?", |n| n)
    }

    /// How many distinct strings are held.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// A call site as text: the symbol, or the address as perf prints it (`0xc104de4f`).
    pub fn call_site(&self, site: CallSite) -> String {
        match site {
            CallSite::Addr(a) => format!("{a:#x}"),
            CallSite::Symbol(id) => self.name(id).to_string(),
        }
    }
}

/// What a line turned out to be.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// An empty line, a `#` comment, or a trace-cmd header line.
    Comment,
    /// `CPU:N [LOST n EVENTS]`: the ring buffer overflowed.
    Lost(u64),
    /// A well-formed line of an event the parser does not handle.
    Unknown,
    /// An allocator event.
    Event(TraceEvent),
    /// An indented callchain frame below an event of `perf script` on data recorded with
    /// `-g` (`\tffffffff812a3b4c __kmalloc+0x1ac ([kernel.kallsyms])`).
    Callchain(Frame),
}

/// The parser's long-lived state: interned strings, the GFP strings seen, and counts of
/// unknown events by name. Nothing here grows with the number of lines.
#[derive(Default)]
pub struct LineParser {
    /// Symbolic call sites and cache names.
    pub symbols: Symbols,
    /// GFP strings.
    pub gfp: GfpTable,
    unknown_events: FxHashMap<Box<str>, u64>,
}
impl LineParser {
    /// Parse one line (without its newline). `Err` says why it is malformed.
    pub fn parse(&mut self, line_no: u64, line: &str) -> Result<Line, &'static str> {
        if let Some(ev) = self.parse_fast(line_no, line.as_bytes()) {
            return Ok(Line::Event(ev));
        }
        self.parse_general(line_no, line)
    }

    /// Parse one line's bytes (without its newline): the fast path where the line has the
    /// common shape, else the bytes as text (`Err` if they are not UTF-8) and the general
    /// parser.
    pub fn parse_bytes(&mut self, line_no: u64, bytes: &[u8]) -> Result<Line, &'static str> {
        if let Some(ev) = self.parse_fast(line_no, bytes) {
            return Ok(Line::Event(ev));
        }
        match as_text(bytes) {
            Some(text) => self.parse_general(line_no, text),
            None => Err("the line is not UTF-8 text"),
        }
    }

    /// The fast path alone (`None` where the line is not of the common shape), for the
    /// fuzz target `trace_parse`, which checks that the general parser agrees with it.
    #[doc(hidden)]
    pub fn parse_fast_only(&mut self, line_no: u64, bytes: &[u8]) -> Option<TraceEvent> {
        self.parse_fast(line_no, bytes)
    }

    /// The general parser alone, for the fuzz target `trace_parse` (see
    /// [`LineParser::parse_fast_only`]).
    #[doc(hidden)]
    pub fn parse_general_only(&mut self, line_no: u64, line: &str) -> Result<Line, &'static str> {
        self.parse_general(line_no, line)
    }

    /// The general parser: any order of fields, values of several words, task names with
    /// brackets, comments and headers, and the reason a malformed line is malformed.
    pub(super) fn parse_general(&mut self, line_no: u64, line: &str) -> Result<Line, &'static str> {
        let bytes = line.as_bytes();
        let Some(first) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else {
            return Ok(Line::Comment);
        };
        if bytes[first] == b'#' {
            return Ok(Line::Comment);
        }
        if matches!(bytes[first], b'C' | b'v' | b'c') {
            let trimmed = line.trim();
            if is_trace_cmd_header(trimmed) {
                return Ok(Line::Comment);
            }
            if let Some(n) = lost_events(trimmed) {
                return Ok(Line::Lost(n));
            }
        }
        let h = match split_header(line) {
            Ok(h) => h,
            // Not an event: a frame of a callchain, or malformed.
            Err(why) if first > 0 => return self.frame(&line[first..], why),
            Err(why) => return Err(why),
        };
        let Some(name) = EventName::from_name(without_subsystem(h.event)) else {
            self.count_unknown_event(h.event);
            return Ok(Line::Unknown);
        };
        let mut fields = Fields::new(h.body);
        fields.split()?;
        let event = self.event(name, &fields)?;
        Ok(Line::Event(TraceEvent {
            line: line_no,
            cpu: h.cpu,
            pid: h.pid,
            ctx: h.ctx,
            timestamp_ns: h.timestamp_ns,
            name,
            event,
            chain: None,
        }))
    }

    /// An indented line that is no event: a callchain frame, a malformed one, or a line
    /// malformed for `why`.
    fn frame(&mut self, trimmed: &str, why: &'static str) -> Result<Line, &'static str> {
        match parse_frame(trimmed) {
            FrameLine::Frame(addr, symbol) => Ok(Line::Callchain(Frame {
                addr,
                symbol: self.symbols.intern(&symbol),
            })),
            FrameLine::Malformed(reason) => Err(reason),
            FrameLine::NotAFrame => Err(why),
        }
    }

    fn count_unknown_event(&mut self, name: &str) {
        match self.unknown_events.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                self.unknown_events.insert(name.into(), 1);
            }
        }
    }

    /// Unknown events by name, sorted by name.
    pub fn unknown_events(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .unknown_events
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        v.sort();
        v
    }

    /// Bytes of long-lived state (a bound for tests of bounded memory).
    pub fn retained_entries(&self) -> usize {
        self.symbols.len() + self.gfp.distinct_strings() + self.unknown_events.len()
    }
}
