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

use kmemlab_mm::Context;

use crate::callchain::{parse_frame, Frame, FrameLine};
use crate::event::{CallSite, Event, EventName, SlabAlloc, SlabFree, TraceContext, TraceEvent};
use crate::gfp::GfpTable;
use crate::hash::FxHashMap;

/// Interned strings (symbolic call sites, cache names): each distinct string is stored
/// once, whatever the trace's length.
#[derive(Default)]
pub struct Symbols {
    ids: FxHashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Symbols {
    /// The id of `name`, adding it if new.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
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

/// The parts of a line around the `[CPU]` bracket.
struct Header<'a> {
    pid: u32,
    cpu: u32,
    ctx: TraceContext,
    timestamp_ns: u64,
    event: &'a str,
    body: &'a str,
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

    fn event(&mut self, name: EventName, f: &Fields<'_>) -> Result<Event, &'static str> {
        use EventName::*;
        Ok(match name {
            Kmalloc | KmallocNode => Event::Kmalloc(self.slab_alloc(f)?),
            KmemCacheAlloc | KmemCacheAllocNode => Event::CacheAlloc(self.slab_alloc(f)?),
            Kfree => Event::Kfree(self.slab_free(f)?),
            KmemCacheFree => Event::CacheFree(self.slab_free(f)?),
            MmPageAlloc => self.page_alloc(f)?,
            MmPageFree => Event::PageFree {
                pfn: pfn(f.need(Key::Pfn)?)?,
                order: order(f.need(Key::Order)?)?,
            },
            MmPageFreeBatched => Event::PageFree {
                pfn: pfn(f.need(Key::Pfn)?)?,
                order: 0,
            },
            AllocVmapArea => Event::AllocVmapArea {
                addr: number(f.need(Key::VaStart)?)?,
                size: traced_size(number(f.need(Key::Size)?)?)?,
                align: number(f.need(Key::Align)?)?,
                vstart: number(f.need(Key::VStart)?)?,
                vend: number(f.need(Key::VEnd)?)?,
                failed: number(f.need(Key::Failed)?)? != 0,
            },
            FreeVmapAreaNoflush => Event::FreeVmapArea {
                addr: number(f.need(Key::VaStart)?)?,
                nr_lazy: number(f.need(Key::NrLazy)?)?,
                nr_lazy_max: number(f.need(Key::NrLazyMax)?)?,
            },
            PurgeVmapAreaLazy => Event::PurgeVmapAreas {
                start: number(f.need(Key::Start)?)?,
                end: number(f.need(Key::End)?)?,
                purged: number(f.need(Key::NumPurged)?)?,
            },
        })
    }

    fn call_site(&mut self, text: &str) -> Result<CallSite, &'static str> {
        if text.is_empty() {
            return Err("empty call_site=");
        }
        match hex(text) {
            Some(a) => Ok(CallSite::Addr(a)),
            None => Ok(CallSite::Symbol(self.symbols.intern(text))),
        }
    }

    fn cache_name(&mut self, f: &Fields<'_>) -> Option<u32> {
        f.get(Key::Name).map(|n| self.symbols.intern(n))
    }

    fn slab_alloc(&mut self, f: &Fields<'_>) -> Result<SlabAlloc, &'static str> {
        let ptr = pointer(f.need(Key::Ptr)?)?;
        let bytes_req = decimal(f.need(Key::BytesReq)?)?;
        let bytes_alloc = decimal(f.need(Key::BytesAlloc)?)?;
        check_slab_sizes(ptr, bytes_req, bytes_alloc)?;
        Ok(SlabAlloc {
            call_site: self.call_site(f.need(Key::CallSite)?)?,
            ptr,
            bytes_req,
            bytes_alloc,
            gfp: self.gfp.parse(f.need(Key::GfpFlags)?),
            node: f
                .get(Key::Node)
                .map(|n| n.parse::<i32>().map_err(|_| "node= is not a number"))
                .transpose()?,
            accounted: f
                .get(Key::Accounted)
                .map(|a| match a {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err("accounted= is neither true nor false"),
                })
                .transpose()?,
            cache_name: self.cache_name(f),
        })
    }

    fn slab_free(&mut self, f: &Fields<'_>) -> Result<SlabFree, &'static str> {
        Ok(SlabFree {
            call_site: self.call_site(f.need(Key::CallSite)?)?,
            ptr: pointer(f.need(Key::Ptr)?)?,
            cache_name: self.cache_name(f),
        })
    }

    fn page_alloc(&mut self, f: &Fields<'_>) -> Result<Event, &'static str> {
        let page_is_null = match f.get(Key::Page) {
            Some(p) => pointer(p)? == 0,
            None => false,
        };
        let frame = pfn(f.need(Key::Pfn)?)?;
        Ok(Event::PageAlloc {
            pfn: (!page_is_null).then_some(frame),
            order: order(f.need(Key::Order)?)?,
            migratetype: decimal(f.need(Key::Migratetype)?)?
                .try_into()
                .map_err(|_| "migratetype= out of range")?,
            gfp: self.gfp.parse(f.need(Key::GfpFlags)?),
        })
    }

    /// Bytes of long-lived state (a bound for tests of bounded memory).
    pub fn retained_entries(&self) -> usize {
        self.symbols.len() + self.gfp.distinct_strings() + self.unknown_events.len()
    }
}

/// trace-cmd's header lines (`version = 6`, `cpus=4`, `CPU 0 is empty`,
/// `CPU0 data recorded at offset=...`).
fn is_trace_cmd_header(line: &str) -> bool {
    line.starts_with("version =")
        || line.starts_with("cpus=")
        || (line.starts_with("CPU")
            && (line.ends_with("is empty") || line.contains("data recorded")))
}

/// `perf script` names a tracepoint with its subsystem (`kmem:kmalloc`,
/// `vmalloc:alloc_vmap_area`); ftrace and trace-cmd print the bare name.
pub(super) fn without_subsystem(event: &str) -> &str {
    event
        .strip_prefix("kmem:")
        .or_else(|| event.strip_prefix("vmalloc:"))
        .unwrap_or(event)
}

/// `CPU:3 [LOST 1234 EVENTS]` (ftrace) or `CPU 3 [LOST 1234 EVENTS]`.
fn lost_events(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("CPU")?;
    let at = rest.find("[LOST ")?;
    let n = rest[at + 6..].split_whitespace().next()?;
    n.parse().ok()
}

/// Find the `[CPU]` bracket whose right side reads as flags, timestamp and event name.
fn split_header(line: &str) -> Result<Header<'_>, &'static str> {
    let bytes = line.as_bytes();
    let mut reason = "no [CPU] bracket";
    let mut from = 0;
    while let Some(at) = memchr::memchr(b'[', &bytes[from..]) {
        let open = from + at;
        from = open + 1;
        let Some((cpu, after)) = cpu_bracket(bytes, open) else {
            continue;
        };
        match right_of_bracket(&line[after..]) {
            Ok((ctx, timestamp_ns, event, body)) => {
                let pid = task_pid(&bytes[..open])?;
                return Ok(Header {
                    pid,
                    cpu,
                    ctx,
                    timestamp_ns,
                    event,
                    body,
                });
            }
            Err(why) => reason = why,
        }
    }
    Err(reason)
}

/// `[003]` at `open`: the CPU and the index after the bracket.
pub(super) fn cpu_bracket(bytes: &[u8], open: usize) -> Option<(u32, usize)> {
    let mut cpu: u32 = 0;
    let mut i = open + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'0'..=b'9' if i - open <= 5 => cpu = cpu * 10 + (b - b'0') as u32,
            b']' if i > open + 1 => return Some((cpu, i + 1)),
            _ => return None,
        }
        i += 1;
    }
    None
}

/// `TASK-PID` with an optional `(TGID)` after it (ftrace, trace-cmd), or `COMM PID`
/// (`perf script`, whose task name may hold dashes): the pid.
pub(super) fn task_pid(text: &[u8]) -> Result<u32, &'static str> {
    if let Some(pid) = perf_pid(text) {
        return Ok(pid);
    }
    let mut text = text.trim_ascii_end();
    if text.ends_with(b")")
        && let Some(open) = text.iter().rposition(|&b| b == b'(')
    {
        text = text[..open].trim_ascii_end();
    }
    let dash = text
        .iter()
        .rposition(|&b| b == b'-')
        .ok_or("no TASK-PID before the [CPU]")?;
    let pid = text[dash + 1..].trim_ascii();
    const NOT_A_NUMBER: &str = "the pid after TASK- is not a number";
    if pid.is_empty() {
        return Err(NOT_A_NUMBER);
    }
    let mut value: u32 = 0;
    for &b in pid {
        let digit = decimal_digit(b).ok_or(NOT_A_NUMBER)?;
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(digit as u32))
            .ok_or(NOT_A_NUMBER)?;
    }
    Ok(value)
}

/// `perf script`'s `COMM PID`: a last word of digits after a blank, a task name before it.
fn perf_pid(text: &[u8]) -> Option<u32> {
    let text = text.trim_ascii();
    let blank = text.iter().rposition(|b| b.is_ascii_whitespace())?;
    let digits = &text[blank + 1..];
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .iter()
        .try_fold(0u32, |v, &b| Some(v * 10 + u32::from(b - b'0')))
}

/// Flags (optional), `TIMESTAMP:`, `event:` and the body after the bracket.
fn right_of_bracket(text: &str) -> Result<(TraceContext, u64, &str, &str), &'static str> {
    let (first, rest) = next_token(text).ok_or("nothing after the [CPU]")?;
    let (ctx, stamp, rest) = match timestamp(first.as_bytes()) {
        Some(ns) => (TraceContext::PROCESS, ns, rest),
        None => {
            let ctx = flags(first.as_bytes())
                .ok_or("neither a flags column nor a timestamp after the [CPU]")?;
            let (second, rest) = next_token(rest).ok_or("no timestamp")?;
            (
                ctx,
                timestamp(second.as_bytes()).ok_or("no TIMESTAMP: after the flags")?,
                rest,
            )
        }
    };
    let (name, rest) = next_token(rest).ok_or("no event name")?;
    let name = name
        .strip_suffix(':')
        .ok_or("the event name does not end with ':'")?;
    if name.is_empty() {
        return Err("empty event name");
    }
    Ok((ctx, stamp, name, rest.trim_ascii()))
}

/// The next whitespace-delimited token and the text after it.
fn next_token(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    let start = skip_blanks(bytes, 0);
    if start == bytes.len() {
        return None;
    }
    let end = find_delimiter(bytes, start, false);
    Some((&text[start..end], &text[end..]))
}

/// `12.345678:` as nanoseconds (a bare integer is taken as nanoseconds already).
#[inline]
pub(super) fn timestamp(token: &[u8]) -> Option<u64> {
    let (&colon, t) = token.split_last()?;
    if colon != b':' {
        return None;
    }
    // Whole seconds, in one pass up to the dot.
    let mut i = 0;
    let mut value: u64 = 0;
    while let Some(digit) = t.get(i).and_then(|&b| decimal_digit(b)) {
        value = value * 10 + digit;
        i += 1;
        if i > 12 {
            return None;
        }
    }
    if i == 0 {
        return None;
    }
    match t.get(i) {
        None => return Some(value),
        Some(b'.') => i += 1,
        Some(_) => return None,
    }
    // The fraction: nanoseconds from its first nine digits.
    let mut ns = 0u64;
    let mut digits: usize = 0;
    for &b in &t[i..] {
        let digit = decimal_digit(b)?;
        if digits < 9 {
            ns = ns * 10 + digit;
            digits += 1;
        }
    }
    ns *= POW10[9 - digits];
    value.checked_mul(1_000_000_000)?.checked_add(ns)
}

/// Powers of ten up to a second in nanoseconds.
pub(super) const POW10: [u64; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

/// The value of a decimal digit byte.
#[inline]
fn decimal_digit(b: u8) -> Option<u64> {
    let d = b.wrapping_sub(b'0');
    (d < 10).then_some(d as u64)
}

/// The latency-format flags column (`irqs-off`, `need-resched`, `hardirq/softirq`,
/// `preempt-depth` and, on 5.x and later, `migrate-disable`).
#[inline]
pub(super) fn flags(token: &[u8]) -> Option<TraceContext> {
    let b = token;
    if !(3..=6).contains(&b.len()) {
        return None;
    }
    let ok = |c: u8| c == b'.' || c.is_ascii_alphanumeric();
    if !b.iter().all(|&c| ok(c)) {
        return None;
    }
    let (irqs_off, bh_off) = match b[0] {
        b'd' => (true, false),
        b'D' => (true, true),
        b'b' => (false, true),
        b'.' | b'X' => (false, false),
        _ => return None,
    };
    let (kind, in_softirq) = match b[2] {
        b'h' => (Context::Hardirq, false),
        b'H' => (Context::Hardirq, true),
        b's' => (Context::Softirq, false),
        b'z' | b'Z' => (Context::Nmi, false),
        b'.' => (Context::Process, false),
        _ => return None,
    };
    Some(TraceContext {
        kind,
        in_softirq,
        irqs_off,
        bh_off,
    })
}

/// The field names the events use.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Key {
    CallSite,
    Ptr,
    BytesReq,
    BytesAlloc,
    GfpFlags,
    Node,
    Accounted,
    Name,
    Page,
    Pfn,
    Order,
    Migratetype,
    VaStart,
    Size,
    Align,
    VStart,
    VEnd,
    Failed,
    NrLazy,
    NrLazyMax,
    Start,
    End,
    NumPurged,
    /// A field no event here reads.
    Other,
}

const KEYS: usize = Key::Other as usize + 1;

impl Key {
    fn from_name(name: &[u8]) -> Key {
        match name {
            b"call_site" => Key::CallSite,
            b"ptr" => Key::Ptr,
            b"bytes_req" => Key::BytesReq,
            b"bytes_alloc" => Key::BytesAlloc,
            b"gfp_flags" => Key::GfpFlags,
            b"node" => Key::Node,
            b"accounted" => Key::Accounted,
            b"name" => Key::Name,
            b"page" => Key::Page,
            b"pfn" => Key::Pfn,
            b"order" => Key::Order,
            b"migratetype" => Key::Migratetype,
            b"va_start" => Key::VaStart,
            b"size" => Key::Size,
            b"align" => Key::Align,
            b"vstart" => Key::VStart,
            b"vend" => Key::VEnd,
            b"failed" => Key::Failed,
            b"nr_lazy" => Key::NrLazy,
            b"nr_lazy_max" => Key::NrLazyMax,
            b"start" => Key::Start,
            b"end" => Key::End,
            b"num_purged" | b"npurged" => Key::NumPurged,
            _ => Key::Other,
        }
    }

    /// The message for a missing field.
    fn missing(self) -> &'static str {
        match self {
            Key::CallSite => "no call_site= (truncated line?)",
            Key::Ptr => "no ptr= (truncated line?)",
            Key::BytesReq => "no bytes_req= (truncated line?)",
            Key::BytesAlloc => "no bytes_alloc= (truncated line?)",
            Key::GfpFlags => "no gfp_flags= (truncated line?)",
            Key::Pfn => "no pfn= (truncated line?)",
            Key::Order => "no order= (truncated line?)",
            Key::Migratetype => "no migratetype= (truncated line?)",
            Key::NumPurged => "no num_purged= (truncated line?)",
            Key::VaStart => "no va_start (truncated line?)",
            Key::Size => "no size= (truncated line?)",
            Key::VEnd => "no vend= (truncated line?)",
            Key::Failed => "no failed= (truncated line?)",
            Key::NrLazyMax => "no nr_lazy_max= (truncated line?)",
            _ => "a field is missing (truncated line?)",
        }
    }
}

/// A line's bytes as text: ASCII (every line of a kernel trace, bar exotic task names)
/// checked a word at a time, anything else validated as UTF-8.
#[inline]
fn as_text(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: every ASCII byte sequence is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// The `key=value` fields of an event's body, kept as spans of the body (an empty span:
/// absent). Spans rather than slices keep the struct small: it is filled in place for
/// every line.
struct Fields<'a> {
    body: &'a str,
    spans: [(u32, u32); KEYS],
}

/// Marks a field whose value has not started yet (`ptr=` then `(null)`).
const NO_VALUE_YET: usize = usize::MAX;

/// A word with every byte `b`.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// The high bit of each byte of `word` that equals `b`; the lowest one flagged is exact
/// (a borrow can only flag bytes above a true match), which is all a search needs.
#[inline]
fn bytes_equal(word: u64, b: u8) -> u64 {
    let x = word ^ splat(b);
    x.wrapping_sub(splat(0x01)) & !x & splat(0x80)
}

/// The first blank (space or tab) at or after `i`, or with `equals` the first blank or
/// `=`; `bytes.len()` if none. Eight bytes at a time (a word of the line, compared with
/// each delimiter at once), then byte by byte.
#[inline]
fn find_delimiter(bytes: &[u8], mut i: usize, equals: bool) -> usize {
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let mut hits = bytes_equal(word, b' ') | bytes_equal(word, b'\t');
        if equals {
            hits |= bytes_equal(word, b'=');
        }
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' => return i,
            b'=' if equals => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The first byte at or after `i` that is not a blank.
#[inline]
fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

impl<'a> Fields<'a> {
    fn new(body: &'a str) -> Fields<'a> {
        Fields {
            body,
            spans: [(0, 0); KEYS],
        }
    }

    /// Split the body into fields in one pass over its bytes. Words without `=` continue
    /// the previous value (`ptr=  (null)`, `func+0x1/0x2 [module]`); `key:` followed by a
    /// word is a field too (`va_start: 123`).
    fn split(&mut self) -> Result<(), &'static str> {
        let bytes = self.body.as_bytes();
        let n = bytes.len();
        let mut last: Option<(Key, usize)> = None;
        let mut i = skip_blanks(bytes, 0);
        while i < n {
            let start = i;
            let stop = find_delimiter(bytes, start, true);
            if stop < n && bytes[stop] == b'=' {
                let key = Key::from_name(&bytes[start..stop]);
                let value_start = stop + 1;
                let end = find_delimiter(bytes, value_start, false);
                self.set(key, value_start, end);
                let mark = if value_start == end {
                    NO_VALUE_YET
                } else {
                    value_start
                };
                last = Some((key, mark));
                i = end;
            } else {
                let end = stop;
                let token = &bytes[start..end];
                if token.last() == Some(&b':') {
                    last = Some((Key::from_name(&token[..token.len() - 1]), NO_VALUE_YET));
                } else {
                    let Some((key, value_start)) = last else {
                        return Err("text before the first key=value field");
                    };
                    let value_start = if value_start == NO_VALUE_YET {
                        start
                    } else {
                        value_start
                    };
                    self.set(key, value_start, end);
                    last = Some((key, value_start));
                }
                i = end;
            }
            i = skip_blanks(bytes, i);
        }
        Ok(())
    }

    fn set(&mut self, key: Key, start: usize, end: usize) {
        self.spans[key as usize] = (start as u32, end as u32);
    }

    fn get(&self, key: Key) -> Option<&'a str> {
        let (start, end) = self.spans[key as usize];
        (start != end).then(|| &self.body[start as usize..end as usize])
    }

    fn need(&self, key: Key) -> Result<&'a str, &'static str> {
        self.get(key).ok_or(key.missing())
    }
}

/// [`hex`] for the fast path's tests.
#[cfg(test)]
pub(super) fn hex_for_tests(text: &str) -> Option<u64> {
    hex(text)
}

/// Hex digits with an optional `0x`.
fn hex(text: &str) -> Option<u64> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text)
        .as_bytes();
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut value = 0u64;
    for &b in digits {
        let nibble = HEX_DIGIT[b as usize];
        if nibble == NOT_HEX {
            return None;
        }
        value = value << 4 | nibble as u64;
    }
    Some(value)
}

/// [`HEX_DIGIT`] of a byte that is no hex digit.
pub(super) const NOT_HEX: u8 = 0xff;

/// The value of each hex digit byte (either case), [`NOT_HEX`] for the others: one table
/// load per digit of the pointers and call sites that fill a trace.
pub(super) static HEX_DIGIT: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// A `%p` pointer: hex (raw or hashed), `(null)` or all zeroes for NULL.
fn pointer(text: &str) -> Result<u64, &'static str> {
    if text.as_bytes().first() == Some(&b'(') && text == "(null)" {
        return Ok(0);
    }
    hex(text).ok_or("a pointer is not hex")
}

/// A decimal number (`%zu`, `%d`).
fn decimal(text: &str) -> Result<u64, &'static str> {
    text.parse().map_err(|_| "a size is not a decimal number")
}

/// A number printed as `0x...` (`%#lx`) or in decimal (`%lu`).
fn number(text: &str) -> Result<u64, &'static str> {
    if text.starts_with("0x") || text.starts_with("0X") {
        hex(text).ok_or("a 0x number is not hex")
    } else {
        decimal(text)
    }
}

/// `pfn=`: decimal on kernels before 4.x (`%lu`), `0x...` after.
fn pfn(text: &str) -> Result<u64, &'static str> {
    number(text).map_err(|_| "pfn= is not a number")
}

/// The largest size a trace line may record: 2^57 bytes, the whole virtual address space
/// of a 64-bit kernel with 5-level paging, which no allocation, even a failed one, can
/// exceed. A larger `bytes_req=`, `bytes_alloc=` or vmap area `size=` (such as a wrapped
/// `-1`) is malformed: counted and reported as such, never summed.
pub const MAX_TRACED_SIZE: u64 = 1 << 57;

/// The largest size of a *successful* slab allocation: below 4 GiB in every Linux
/// configuration (a cache's `object_size` is an `unsigned int`, and the largest
/// `KMALLOC_MAX_SIZE`, `PAGE_SIZE << MAX_ORDER`, is 512 MiB: arm64 with 64 KiB pages).
/// A failed allocation (`ptr=(null)`) may record a larger request: `kvmalloc()` tries
/// `kmalloc()` first whatever the size (`mm/util.c`, Linux 6.6).
pub const MAX_SLAB_OBJECT: u64 = u32::MAX as u64;

/// A slab allocation's sizes checked against [`MAX_TRACED_SIZE`] and, when it succeeded,
/// [`MAX_SLAB_OBJECT`].
pub(super) fn check_slab_sizes(
    ptr: u64,
    bytes_req: u64,
    bytes_alloc: u64,
) -> Result<(), &'static str> {
    if bytes_req.max(bytes_alloc) > MAX_TRACED_SIZE {
        return Err("a size is larger than any allocation can be (2^57 bytes)");
    }
    if ptr != 0 && bytes_req.max(bytes_alloc) > MAX_SLAB_OBJECT {
        return Err(
            "a slab allocation of 4 GiB or more succeeded (no kernel's slab objects reach that)",
        );
    }
    Ok(())
}

/// A size checked against [`MAX_TRACED_SIZE`].
fn traced_size(size: u64) -> Result<u64, &'static str> {
    if size > MAX_TRACED_SIZE {
        return Err("a size is larger than any allocation can be (2^57 bytes)");
    }
    Ok(size)
}

/// `order=`, at most MAX_PAGE_ORDER plus slack for kernels with larger orders.
fn order(text: &str) -> Result<u32, &'static str> {
    let o = decimal(text).map_err(|_| "order= is not a number")?;
    if o > 20 {
        return Err("order= is larger than any kernel's");
    }
    Ok(o as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time search finds what a byte-by-byte one finds, wherever the
    /// delimiter falls in a word, and bytes above 0x7f never match.
    #[test]
    fn find_delimiter_agrees_with_a_plain_search() {
        let alphabet = [b'a', b' ', b'\t', b'=', 0x80, 0xff, 0x20 ^ 0x80, b'<'];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i % 60)) as usize + i) % alphabet.len()])
                .collect();
            for from in 0..=len {
                for equals in [false, true] {
                    let plain = (from..len)
                        .find(|&i| matches!(bytes[i], b' ' | b'\t') || (equals && bytes[i] == b'='))
                        .unwrap_or(len);
                    assert_eq!(
                        find_delimiter(&bytes, from, equals),
                        plain,
                        "{bytes:?} {from}"
                    );
                }
            }
        }
    }
}
