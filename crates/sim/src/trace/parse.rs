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

use super::event::{CallSite, Event, EventName, SlabAlloc, SlabFree, TraceContext, TraceEvent};
use super::gfp::GfpTable;
use super::hash::FxHashMap;

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
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || is_trace_cmd_header(trimmed) {
            return Ok(Line::Comment);
        }
        if let Some(n) = lost_events(trimmed) {
            return Ok(Line::Lost(n));
        }
        let h = split_header(line)?;
        let Some(name) = EventName::from_name(h.event) else {
            self.count_unknown_event(h.event);
            return Ok(Line::Unknown);
        };
        let fields = Fields::split(h.body)?;
        let event = self.event(name, &fields)?;
        Ok(Line::Event(TraceEvent {
            line: line_no,
            cpu: h.cpu,
            pid: h.pid,
            ctx: h.ctx,
            timestamp_ns: h.timestamp_ns,
            name,
            event,
        }))
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
                pfn: pfn(f.need("pfn")?)?,
                order: order(f.need("order")?)?,
            },
            MmPageFreeBatched => Event::PageFree {
                pfn: pfn(f.need("pfn")?)?,
                order: 0,
            },
            AllocVmapArea => Event::AllocVmapArea {
                addr: number(f.need("va_start")?)?,
                size: number(f.need("size")?)?,
                align: number(f.need("align")?)?,
                failed: number(f.need("failed")?)? != 0,
            },
            FreeVmapAreaNoflush => Event::FreeVmapArea {
                addr: number(f.need("va_start")?)?,
                nr_lazy: number(f.need("nr_lazy")?)?,
            },
            PurgeVmapAreaLazy => Event::PurgeVmapAreas {
                start: number(f.need("start")?)?,
                end: number(f.need("end")?)?,
                purged: number(f.get("num_purged").or(f.get("npurged")).ok_or("no num_purged=")?)?,
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
        f.get("name").map(|n| self.symbols.intern(n))
    }

    fn slab_alloc(&mut self, f: &Fields<'_>) -> Result<SlabAlloc, &'static str> {
        Ok(SlabAlloc {
            call_site: self.call_site(f.need("call_site")?)?,
            ptr: pointer(f.need("ptr")?)?,
            bytes_req: decimal(f.need("bytes_req")?)?,
            bytes_alloc: decimal(f.need("bytes_alloc")?)?,
            gfp: self.gfp.parse(f.need("gfp_flags")?),
            node: f
                .get("node")
                .map(|n| n.parse::<i32>().map_err(|_| "node= is not a number"))
                .transpose()?,
            accounted: f
                .get("accounted")
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
            call_site: self.call_site(f.need("call_site")?)?,
            ptr: pointer(f.need("ptr")?)?,
            cache_name: self.cache_name(f),
        })
    }

    fn page_alloc(&mut self, f: &Fields<'_>) -> Result<Event, &'static str> {
        let page_is_null = match f.get("page") {
            Some(p) => pointer(p)? == 0,
            None => false,
        };
        let frame = pfn(f.need("pfn")?)?;
        Ok(Event::PageAlloc {
            pfn: (!page_is_null).then_some(frame),
            order: order(f.need("order")?)?,
            migratetype: decimal(f.need("migratetype")?)?
                .try_into()
                .map_err(|_| "migratetype= out of range")?,
            gfp: self.gfp.parse(f.need("gfp_flags")?),
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
        || (line.starts_with("CPU") && (line.ends_with("is empty") || line.contains("data recorded")))
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
    let mut reason = "no [CPU] bracket";
    let mut from = 0;
    while let Some(at) = line[from..].find('[') {
        let open = from + at;
        from = open + 1;
        let Some((cpu, after)) = cpu_bracket(&line[open..]) else {
            continue;
        };
        match right_of_bracket(after) {
            Ok((ctx, timestamp_ns, event, body)) => {
                let pid = task_pid(&line[..open])?;
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

/// `[003]` at the start of `text`: the CPU and the text after the bracket.
fn cpu_bracket(text: &str) -> Option<(u32, &str)> {
    let close = text.find(']')?;
    let digits = text[1..close].trim();
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, &text[close + 1..]))
}

/// `TASK-PID` with an optional `(TGID)` after it: the pid.
fn task_pid(text: &str) -> Result<u32, &'static str> {
    let mut text = text.trim_end();
    if text.ends_with(')') {
        if let Some(open) = text.rfind('(') {
            text = text[..open].trim_end();
        }
    }
    let (_, pid) = text.rsplit_once('-').ok_or("no TASK-PID before the [CPU]")?;
    pid.trim().parse().map_err(|_| "the pid after TASK- is not a number")
}

/// Flags (optional), `TIMESTAMP:`, `event:` and the body after the bracket.
fn right_of_bracket(text: &str) -> Result<(TraceContext, u64, &str, &str), &'static str> {
    let (first, rest) = next_token(text).ok_or("nothing after the [CPU]")?;
    let (ctx, stamp, rest) = match timestamp(first) {
        Some(ns) => (TraceContext::PROCESS, ns, rest),
        None => {
            let ctx = flags(first).ok_or("neither a flags column nor a timestamp after the [CPU]")?;
            let (second, rest) = next_token(rest).ok_or("no timestamp")?;
            (ctx, timestamp(second).ok_or("no TIMESTAMP: after the flags")?, rest)
        }
    };
    let (name, rest) = next_token(rest).ok_or("no event name")?;
    let name = name.strip_suffix(':').ok_or("the event name does not end with ':'")?;
    if name.is_empty() {
        return Err("empty event name");
    }
    Ok((ctx, stamp, name, rest.trim()))
}

/// The next whitespace-delimited token and the text after it.
fn next_token(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    if text.is_empty() {
        return None;
    }
    let end = text.find(|c: char| c.is_ascii_whitespace()).unwrap_or(text.len());
    Some((&text[..end], &text[end..]))
}

/// `12.345678:` as nanoseconds (a bare integer is taken as nanoseconds already).
fn timestamp(token: &str) -> Option<u64> {
    let t = token.strip_suffix(':')?;
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    if t.contains('.') {
        let mut ns = 0u64;
        for (i, b) in frac.bytes().take(9).enumerate() {
            ns += (b - b'0') as u64 * 10u64.pow(8 - i as u32);
        }
        secs.checked_mul(1_000_000_000)?.checked_add(ns)
    } else {
        Some(secs)
    }
}

/// The latency-format flags column (`irqs-off`, `need-resched`, `hardirq/softirq`,
/// `preempt-depth` and, on 5.x and later, `migrate-disable`).
fn flags(token: &str) -> Option<TraceContext> {
    let b = token.as_bytes();
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

/// The `key=value` fields of an event's body, kept as slices of the line.
struct Fields<'a> {
    items: [(&'a str, &'a str); MAX_FIELDS],
    len: usize,
}

const MAX_FIELDS: usize = 16;

impl<'a> Fields<'a> {
    fn split(body: &'a str) -> Result<Fields<'a>, &'static str> {
        let mut f = Fields {
            items: [("", ""); MAX_FIELDS],
            len: 0,
        };
        let mut awaiting_value = false;
        let mut value_start = 0;
        let mut pos = 0;
        while let Some((token, _)) = next_token(&body[pos..]) {
            let start = body.len() - body[pos..].trim_start().len();
            let end = start + token.len();
            pos = end;
            if let Some((key, value)) = token.split_once('=') {
                f.push(key, value);
                awaiting_value = value.is_empty();
                value_start = end - value.len();
            } else if let Some(key) = token.strip_suffix(':') {
                f.push(key, "");
                awaiting_value = true;
            } else if f.len == 0 {
                return Err("text before the first key=value field");
            } else {
                if awaiting_value {
                    value_start = start;
                    awaiting_value = false;
                }
                f.set_last_value(&body[value_start..end]);
            }
        }
        Ok(f)
    }

    fn push(&mut self, key: &'a str, value: &'a str) {
        if self.len < MAX_FIELDS {
            self.items[self.len] = (key, value);
            self.len += 1;
        }
    }

    fn set_last_value(&mut self, value: &'a str) {
        if let Some(last) = self.items[..self.len].last_mut() {
            last.1 = value;
        }
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.items[..self.len]
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    fn need(&self, key: &'static str) -> Result<&'a str, &'static str> {
        match self.get(key) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(missing(key)),
        }
    }
}

/// The message for a missing field.
fn missing(key: &str) -> &'static str {
    match key {
        "call_site" => "no call_site= (truncated line?)",
        "ptr" => "no ptr= (truncated line?)",
        "bytes_req" => "no bytes_req= (truncated line?)",
        "bytes_alloc" => "no bytes_alloc= (truncated line?)",
        "gfp_flags" => "no gfp_flags= (truncated line?)",
        "pfn" => "no pfn= (truncated line?)",
        "order" => "no order= (truncated line?)",
        "migratetype" => "no migratetype= (truncated line?)",
        _ => "a field is missing (truncated line?)",
    }
}

/// Hex digits with an optional `0x`.
fn hex(text: &str) -> Option<u64> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// A `%p` pointer: hex (raw or hashed), `(null)` or all zeroes for NULL.
fn pointer(text: &str) -> Result<u64, &'static str> {
    if text == "(null)" {
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

/// `order=`, at most MAX_PAGE_ORDER plus slack for kernels with larger orders.
fn order(text: &str) -> Result<u32, &'static str> {
    let o = decimal(text).map_err(|_| "order= is not a number")?;
    if o > 20 {
        return Err("order= is larger than any kernel's");
    }
    Ok(o as u32)
}
