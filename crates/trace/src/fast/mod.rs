//! The fast path of the line parser: the shape nearly every line of a kernel trace has,
//! read in one forward pass over its bytes.
//!
//! ```text
//!   TASK-PID [CPU] FLAGS TIMESTAMP: EVENT: key=value key=value ...
//! ```
//!
//! The header is scanned left to right from the first `[`; the event's fields are expected
//! in the order the kernel's `TP_printk` prints them (the optional ones of newer kernels,
//! `node=`, `accounted=`, `name=`, where they come), and each number is converted while
//! its digits are scanned. Anything else (a field out of order, a value continued by
//! another word, a task name holding `[`, non-ASCII bytes outside the places that take
//! text, an unknown event, a malformed line) makes the fast path give up, with no side
//! effect on the parser, and [`LineParser::parse_general`] reads the line as before: the
//! fast path only ever accepts a line the general parser reads the same way, so errors,
//! their messages and everything counted stay the general parser's. The interned strings
//! and the GFP table are only touched once the whole line has been accepted, in the order
//! the general parser touches them. A test below holds the two parsers to the same answer
//! on lines built from trace fragments and on mutated trace lines.
//!
//! It mirrors the same kernel output as `crate::parse` (`trace_print_context()` in
//! `kernel/trace/trace_output.c` and each event's `TP_printk`, Linux 6.6), read faster.
//!
//! Where to start reading: `LineParser::parse_fast` below (the header, then the body of
//! each event kind), then `cursor.rs` (the scanners it moves along the line: words, hex
//! and decimal numbers, flags, timestamp, event name) and `words.rs` (the word-at-a-time
//! byte tricks they use); `tests.rs` holds the two parsers to the same answer.

mod cursor;
mod words;

#[cfg(test)]
mod tests;

use cursor::{Cursor, Site};
use words::{find_bracket_after_ascii, load, pid_fast, splat};

use crate::event::{CallSite, Event, EventName, SlabAlloc, SlabFree, TraceContext, TraceEvent};
use crate::parse::{cpu_bracket, task_pid, LineParser};

/// Trimmed lines starting so are checked for trace-cmd headers and lost events.
fn maybe_header(rest: &[u8]) -> bool {
    rest.starts_with(b"CPU") || rest.starts_with(b"cpus=") || rest.starts_with(b"version =")
}

impl LineParser {
    /// The fast path: the line's event if the line has the common shape, `None` to let
    /// the general parser read it. Nothing of the parser's state changes on `None`.
    pub(super) fn parse_fast(&mut self, line_no: u64, b: &[u8]) -> Option<TraceEvent> {
        let mut ev = TraceEvent::PLACEHOLDER;
        self.parse_fast_into(line_no, b, &mut ev)?;
        Some(ev)
    }

    /// [`LineParser::parse_fast`] writing the event into `out`, where its reader keeps it:
    /// an event built on the stack and copied from there cost more than the rest of the
    /// hand-over (the copy loads 16 bytes at a time what was just stored a field at a
    /// time, which the CPU cannot forward from its store buffer). On `None`, `out` may
    /// hold part of an event: the caller reads the line again the general way.
    #[inline]
    pub(crate) fn parse_fast_into(
        &mut self,
        line_no: u64,
        b: &[u8],
        out: &mut TraceEvent,
    ) -> Option<()> {
        // The general parser trims the event's body; the body ends the line.
        let b = b.trim_ascii_end();
        // Comments, blank lines and trace-cmd's headers are the general parser's.
        let mut first = 0;
        while load(b, first) == Some(splat(b' ')) {
            first += 8;
        }
        while b.get(first)?.is_ascii_whitespace() {
            first += 1;
        }
        if b[first] == b'#' || maybe_header(&b[first..]) {
            return None;
        }
        // TASK-PID [CPU]: the first bracket must be the CPU's, the task before it ASCII.
        let open = find_bracket_after_ascii(b, first)?;
        let (cpu, after) = cpu_bracket(b, open)?;
        let mut c = Cursor { b, i: after };
        c.skip_blanks();
        // FLAGS (optional: a timestamp starts with a digit, flags never do), TIMESTAMP:.
        let ctx = if c.peek()?.is_ascii_digit() {
            TraceContext::PROCESS
        } else {
            c.flags()?
        };
        let timestamp_ns = c.timestamp()?;
        // EVENT:
        let name = c.event_name()?;
        let pid = pid_fast(&b[..open]).or_else(|| task_pid(&b[..open]).ok())?;
        self.body_fast(name, &mut c, &mut out.event)?;
        out.line = line_no;
        out.cpu = cpu;
        out.pid = pid;
        out.ctx = ctx;
        out.timestamp_ns = timestamp_ns;
        out.name = name;
        out.chain = None;
        Some(())
    }

    /// The event's fields in the kernel's order, then the end of the line, written into
    /// `out` (which may be left changed on `None`).
    #[inline]
    fn body_fast(&mut self, name: EventName, c: &mut Cursor<'_>, out: &mut Event) -> Option<()> {
        use EventName::*;
        *out = match name {
            Kmalloc | KmallocNode => Event::Kmalloc(self.slab_alloc_fast(c)?),
            KmemCacheAlloc | KmemCacheAllocNode => Event::CacheAlloc(self.slab_alloc_fast(c)?),
            Kfree => Event::Kfree(self.slab_free_fast(c)?),
            KmemCacheFree => Event::CacheFree(self.slab_free_fast(c)?),
            MmPageAlloc => {
                if !c.key(b"page=") {
                    return None;
                }
                let page = c.pointer()?;
                let pfn = c.key(b"pfn=").then(|| c.number())??;
                let order = c.key(b"order=").then(|| c.decimal())??;
                let migratetype = c.key(b"migratetype=").then(|| c.decimal())??;
                if !c.key(b"gfp_flags=") {
                    return None;
                }
                let gfp = self.gfp_fast(c)?;
                let migratetype: u32 = migratetype.try_into().ok()?;
                if !c.at_end() || order > 20 {
                    return None;
                }
                Event::PageAlloc {
                    pfn: (page != 0).then_some(pfn),
                    order: order as u32,
                    migratetype,
                    gfp: match gfp {
                        Ok(gfp) => gfp,
                        Err(text) => self.gfp.parse(text),
                    },
                }
            }
            MmPageFree | MmPageFreeBatched => {
                // page= is not read by the general parser either.
                if !c.key(b"page=") || !c.word()?.is_ascii() {
                    return None;
                }
                let pfn = c.key(b"pfn=").then(|| c.number())??;
                if !c.key(b"order=") {
                    return None;
                }
                let order = if name == MmPageFree {
                    let order = c.decimal()?;
                    if order > 20 {
                        return None;
                    }
                    order as u32
                } else {
                    // Ignored, as the general parser ignores it (and `cold=`).
                    if !c.word()?.is_ascii() {
                        return None;
                    }
                    if c.key(b"cold=") && !c.word()?.is_ascii() {
                        return None;
                    }
                    0
                };
                if !c.at_end() {
                    return None;
                }
                Event::PageFree { pfn, order }
            }
            AllocVmapArea | FreeVmapAreaNoflush | PurgeVmapAreaLazy => return None,
        };
        Some(())
    }

    #[inline]
    fn slab_alloc_fast(&mut self, c: &mut Cursor<'_>) -> Option<SlabAlloc> {
        if !c.key(b"call_site=") {
            return None;
        }
        let site = self.site_text(c.call_site()?)?;
        let ptr = c.key(b"ptr=").then(|| c.pointer())??;
        // 6.18's kmem_cache_alloc prints `name=` here; older kernels' patches at the end.
        let early_name = c.optional(b"name=", Cursor::word)?;
        let bytes_req = c.key(b"bytes_req=").then(|| c.decimal())??;
        let bytes_alloc = c.key(b"bytes_alloc=").then(|| c.decimal())??;
        if !c.key(b"gfp_flags=") {
            return None;
        }
        let gfp = self.gfp_fast(c)?;
        let node = c.optional(b"node=", Cursor::node)?;
        let accounted = c.optional(b"accounted=", Cursor::boolean)?;
        let name = match early_name {
            Some(name) => Some(name),
            None => c.optional(b"name=", Cursor::word)?,
        };
        let name = match name {
            Some(n) => Some(self.text(n)?),
            None => None,
        };
        // An absurd size is left to the general parser, which says why it is malformed.
        if !c.at_end() || super::parse::check_slab_sizes(ptr, bytes_req, bytes_alloc).is_err() {
            return None;
        }
        // The line is accepted: intern and count as the general parser does, in its order.
        Some(SlabAlloc {
            call_site: self.intern_site(site),
            ptr,
            bytes_req,
            bytes_alloc,
            gfp: match gfp {
                Ok(gfp) => gfp,
                Err(text) => self.gfp.parse(text),
            },
            node,
            accounted,
            cache_name: name.map(|n| self.intern_text(n)),
        })
    }

    #[inline]
    fn slab_free_fast(&mut self, c: &mut Cursor<'_>) -> Option<SlabFree> {
        if !c.key(b"call_site=") {
            return None;
        }
        let site = self.site_text(c.call_site()?)?;
        let ptr = c.key(b"ptr=").then(|| c.pointer())??;
        let name = c.optional(b"name=", Cursor::word)?;
        let name = match name {
            Some(n) => Some(self.text(n)?),
            None => None,
        };
        if !c.at_end() {
            return None;
        }
        Some(SlabFree {
            call_site: self.intern_site(site),
            ptr,
            cache_name: name.map(|n| self.intern_text(n)),
        })
    }

    /// `gfp_flags=`'s value: the flags of a recent string (no side effect), or the text to
    /// parse once the line is accepted.
    #[inline]
    fn gfp_fast<'a>(&self, c: &mut Cursor<'a>) -> Option<Result<kmemlab_mm::Gfp, &'a str>> {
        let word = c.word()?;
        match self.gfp.cached(word) {
            Some(gfp) => Some(Ok(gfp)),
            None => Some(Err(std::str::from_utf8(word).ok()?)),
        }
    }

    /// A call site with its symbol as [`LineParser::text`] takes it; `None` (give up)
    /// for a symbol that is not UTF-8.
    #[inline]
    fn site_text<'a>(&self, site: Site<'a>) -> Option<SiteText<'a>> {
        match site {
            Site::Addr(a) => Some(SiteText::Addr(a)),
            Site::Symbol(bytes) => self.text(bytes).map(SiteText::Symbol),
        }
    }

    /// A string to intern once the line is accepted: the id of one met before (found by
    /// its bytes, with no side effect), or new text, checked to be UTF-8 (`None`, so the
    /// fast path gives up, if it is not).
    #[inline]
    fn text<'a>(&self, bytes: &'a [u8]) -> Option<Text<'a>> {
        match self.symbols.find(bytes) {
            Some(id) => Some(Text::Known(id)),
            None => std::str::from_utf8(bytes).ok().map(Text::New),
        }
    }

    #[inline]
    fn intern_text(&mut self, text: Text<'_>) -> u32 {
        match text {
            Text::Known(id) => id,
            Text::New(s) => self.symbols.intern(s),
        }
    }

    #[inline]
    fn intern_site(&mut self, site: SiteText<'_>) -> CallSite {
        match site {
            SiteText::Addr(a) => CallSite::Addr(a),
            SiteText::Symbol(text) => CallSite::Symbol(self.intern_text(text)),
        }
    }
}

/// A string of the line, resolved before the line is accepted ([`LineParser::text`]).
enum Text<'a> {
    /// Interned already, with this id.
    Known(u32),
    /// Not yet interned: interning adds it (or finds it, if the line's call site was
    /// the same new string).
    New(&'a str),
}

/// A call site, its symbol resolved ([`LineParser::site_text`]).
enum SiteText<'a> {
    Addr(u64),
    Symbol(Text<'a>),
}
