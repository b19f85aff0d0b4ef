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

use crate::event::{CallSite, Event, EventName, SlabAlloc, SlabFree, TraceContext, TraceEvent};
use crate::parse::{cpu_bracket, flags, task_pid, LineParser, HEX_DIGIT, NOT_HEX, POW10};

/// A blank: the only delimiters between tokens of a line.
#[inline]
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A word with every byte `b`.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// The high bit of each byte of `word` that equals `b` (the lowest one flagged is exact).
#[inline]
fn bytes_equal(word: u64, b: u8) -> u64 {
    let x = word ^ splat(b);
    x.wrapping_sub(splat(0x01)) & !x & splat(0x80)
}

#[inline]
fn load(bytes: &[u8], i: usize) -> Option<u64> {
    let chunk: &[u8; 8] = bytes.get(i..i + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(*chunk))
}

/// The high bit of each byte of `word` that is a hex digit (`0-9`, `a-f`, `A-F`); exact
/// for every byte (no carry crosses a byte).
#[inline]
fn hex_digits(word: u64) -> u64 {
    let ascii = !word & splat(0x80);
    let x = word & splat(0x7f);
    let at_least = |x: u64, lo: u8| x.wrapping_add(splat(0x80 - lo)) & splat(0x80);
    let above = |x: u64, hi: u8| x.wrapping_add(splat(0x7f - hi)) & splat(0x80);
    let digit = at_least(x, b'0') & !above(x, b'9');
    let folded = x | splat(0x20);
    let letter = at_least(folded, b'a') & !above(folded, b'f');
    (digit | letter) & ascii
}

/// Each hex digit byte of `word` as its value (0 to 15), byte for byte.
#[inline]
fn nibbles(word: u64) -> u64 {
    (word & splat(0x0f)) + ((word >> 6) & splat(0x01)) * 9
}

/// Eight nibble bytes (the first, most significant, in the lowest byte) as one number.
#[inline]
fn pack_nibbles(x: u64) -> u64 {
    let x = ((x << 4) | (x >> 8)) & 0x00ff_00ff_00ff_00ff;
    let x = ((x << 8) | (x >> 16)) & 0x0000_ffff_0000_ffff;
    ((x << 16) | (x >> 32)) & 0xffff_ffff
}

/// The first `[` at or after `i`, `None` if there is none or a byte before it (in the
/// same word, or in an earlier one) is not ASCII.
#[inline]
fn find_bracket_after_ascii(bytes: &[u8], mut i: usize) -> Option<usize> {
    while let Some(word) = load(bytes, i) {
        let high = word & splat(0x80);
        let hits = bytes_equal(word, b'[');
        if hits != 0 {
            // Bits below the first `[` (the lowest flag is exact).
            let below = (hits & hits.wrapping_neg()) - 1;
            if high & below != 0 {
                return None;
            }
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        if high != 0 {
            return None;
        }
        i += 8;
    }
    while let Some(&c) = bytes.get(i) {
        match c {
            b'[' => return Some(i),
            0x80.. => return None,
            _ => i += 1,
        }
    }
    None
}

/// The pid of `TASK-PID` followed by blanks, in the simplest shape (digits right after
/// the last `-`, at most nine of them); `None` leaves the rest to [`task_pid`].
#[inline]
fn pid_fast(task: &[u8]) -> Option<u32> {
    let mut end = task.len();
    while end > 0 && task[end - 1] == b' ' {
        end -= 1;
    }
    while end > 0 && task[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    let mut start = end;
    let mut pid = 0u32;
    let mut scale = 1u32;
    while start > 0 && end - start < 9 {
        let d = task[start - 1].wrapping_sub(b'0');
        if d >= 10 {
            break;
        }
        pid += d as u32 * scale;
        scale *= 10;
        start -= 1;
    }
    (start < end && start > 0 && task[start - 1] == b'-').then_some(pid)
}

/// The first blank at or after `i`, or `bytes.len()`.
#[inline]
fn find_blank(bytes: &[u8], mut i: usize) -> usize {
    while let Some(word) = load(bytes, i) {
        let hits = bytes_equal(word, b' ') | bytes_equal(word, b'\t');
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && !is_blank(bytes[i]) {
        i += 1;
    }
    i.min(bytes.len())
}

/// A position in the line and the scanners that move it. Every scanner returns `None`
/// when the line is not in the expected shape.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn at_end(&self) -> bool {
        self.i >= self.b.len()
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn skip_blanks(&mut self) {
        // Runs of spaces (ftrace's padding) a word at a time: the exact test for bytes
        // that are not spaces (no borrow between bytes).
        while let Some(word) = load(self.b, self.i) {
            let x = word ^ splat(b' ');
            let not_space = ((x & splat(0x7f)).wrapping_add(splat(0x7f)) | x) & splat(0x80);
            if not_space != 0 {
                self.i += (not_space.trailing_zeros() / 8) as usize;
                break;
            }
            self.i += 8;
        }
        while self.i < self.b.len() && is_blank(self.b[self.i]) {
            self.i += 1;
        }
    }

    /// The end of a value: a blank (skipped with those after it) or the end of the line.
    #[inline]
    fn end_of_value(&mut self) -> Option<()> {
        match self.peek() {
            None => Some(()),
            Some(b) if is_blank(b) => {
                self.i += 1;
                self.skip_blanks();
                Some(())
            }
            Some(_) => None,
        }
    }

    /// An optional ` key=value` field: `Some(None)` when the key is not next, `None` when
    /// it is but its value does not parse.
    #[inline]
    fn optional<const N: usize, T>(
        &mut self,
        key: &[u8; N],
        value: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<Option<T>> {
        if self.key(key) {
            value(self).map(Some)
        } else {
            Some(None)
        }
    }

    /// `key=` here (the key's bytes include the `=`).
    #[inline]
    fn key<const N: usize>(&mut self, key: &[u8; N]) -> bool {
        let Some(here) = self.b.get(self.i..self.i + N) else {
            return false;
        };
        let here: &[u8; N] = here.try_into().expect("N bytes");
        if here == key {
            self.i += N;
            true
        } else {
            false
        }
    }

    /// A non-empty run of non-blank bytes, and the blanks after it.
    #[inline]
    fn word(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        let end = find_blank(self.b, start);
        if end == start {
            return None;
        }
        self.i = end;
        self.skip_blanks();
        Some(&self.b[start..end])
    }

    /// Hex digits with an optional `0x` (as [`super::parse::hex`]: 1 to 16 digits), ending
    /// the value: eight digits at a time.
    #[inline]
    fn hex(&mut self) -> Option<u64> {
        let b = self.b;
        let mut i = self.i;
        if b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'x' | b'X')) {
            i += 2;
        }
        let start = i;
        let mut value = 0u64;
        loop {
            let Some(word) = load(b, i) else {
                while let Some(&c) = b.get(i) {
                    let nibble = HEX_DIGIT[c as usize];
                    if nibble == NOT_HEX || i - start == 16 {
                        break;
                    }
                    value = value << 4 | nibble as u64;
                    i += 1;
                }
                break;
            };
            let not_hex = !hex_digits(word) & splat(0x80);
            let n = if not_hex == 0 {
                8
            } else {
                (not_hex.trailing_zeros() / 8) as usize
            };
            if n == 0 {
                break;
            }
            value = value << (4 * n) | pack_nibbles(nibbles(word) << (8 * (8 - n)));
            i += n;
            // Eight digits then a blank (or the end): the common case needs no next word.
            if n < 8 || i - start > 16 || b.get(i).is_none_or(|&c| is_blank(c)) {
                break;
            }
        }
        if i == start || i - start > 16 {
            return None;
        }
        self.i = i;
        self.end_of_value()?;
        Some(value)
    }

    /// The decimal digits at the cursor, at most `max` of them: their value and the index
    /// after the last; `None` when there are none or more than `max`.
    #[inline]
    fn digits(&self, max: usize) -> Option<(u64, usize)> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let mut value = 0u64;
        while let Some(&c) = b.get(i) {
            let d = c.wrapping_sub(b'0');
            if d >= 10 {
                break;
            }
            if i - start == max {
                return None;
            }
            value = value * 10 + d as u64;
            i += 1;
        }
        (i != start).then_some((value, i))
    }

    /// Decimal digits (1 to 19, so no overflow: `str::parse` would accept more), ending
    /// the value.
    #[inline]
    fn decimal(&mut self) -> Option<u64> {
        let (value, i) = self.digits(19)?;
        self.i = i;
        self.end_of_value()?;
        Some(value)
    }

    /// `%lu` or `%#lx` (as [`super::parse::number`]).
    #[inline]
    fn number(&mut self) -> Option<u64> {
        if self.b.get(self.i) == Some(&b'0') && matches!(self.b.get(self.i + 1), Some(b'x' | b'X'))
        {
            self.hex()
        } else {
            self.decimal()
        }
    }

    /// A `%p` pointer: hex, or `(null)` (which old kernels pad: `ptr=  (null)`).
    #[inline]
    fn pointer(&mut self) -> Option<u64> {
        match self.peek()? {
            b'(' => self.null(),
            b if is_blank(b) => {
                self.skip_blanks();
                self.null()
            }
            _ => self.hex(),
        }
    }

    #[inline]
    fn null(&mut self) -> Option<u64> {
        if !self.key(b"(null)") {
            return None;
        }
        self.end_of_value()?;
        Some(0)
    }

    /// `node=`: an `i32` (`-1` is NUMA_NO_NODE).
    #[inline]
    fn node(&mut self) -> Option<i32> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let n = self.decimal()?;
        let n = if negative { -(n as i64) } else { n as i64 };
        i32::try_from(n).ok()
    }

    /// `accounted=`: `true` or `false`.
    #[inline]
    fn boolean(&mut self) -> Option<bool> {
        let value = if self.key(b"true") {
            true
        } else if self.key(b"false") {
            false
        } else {
            return None;
        };
        self.end_of_value()?;
        Some(value)
    }

    /// The flags column (as [`flags`]: 3 to 6 characters, `.` or alphanumeric) and the
    /// blanks after it.
    #[inline]
    fn flags(&mut self) -> Option<TraceContext> {
        let start = self.i;
        let mut i = start;
        while let Some(&c) = self.b.get(i) {
            if !(c == b'.' || c.is_ascii_alphanumeric()) || i - start > 6 {
                break;
            }
            i += 1;
        }
        let ctx = flags(&self.b[start..i])?;
        self.i = i;
        if !is_blank(self.peek()?) {
            return None;
        }
        self.skip_blanks();
        Some(ctx)
    }

    /// `SECONDS.FRACTION:` (as [`timestamp`]) and the blanks after it.
    #[inline]
    fn timestamp(&mut self) -> Option<u64> {
        let b = self.b;
        let (value, mut i) = self.digits(12)?;
        let ns = match b.get(i)? {
            b':' => {
                i += 1;
                value
            }
            b'.' => {
                i += 1;
                let mut ns = 0u64;
                let mut digits = 0;
                while let Some(&c) = b.get(i) {
                    let d = c.wrapping_sub(b'0');
                    if d >= 10 {
                        break;
                    }
                    if digits < 9 {
                        ns = ns * 10 + d as u64;
                        digits += 1;
                    }
                    i += 1;
                }
                if b.get(i) != Some(&b':') {
                    return None;
                }
                i += 1;
                value
                    .checked_mul(1_000_000_000)?
                    .checked_add(ns * POW10[9 - digits])?
            }
            _ => return None,
        };
        self.i = i;
        if !is_blank(self.peek()?) {
            return None;
        }
        self.skip_blanks();
        Some(ns)
    }

    /// `name:` of a known event and the blanks after it.
    #[inline]
    fn event_name(&mut self) -> Option<EventName> {
        // `perf script` names the subsystem first (`kmem:kmalloc:`), as
        // `parse::without_subsystem` strips it.
        let rest = self.b.get(self.i..)?;
        if rest.starts_with(b"kmem:") {
            self.i += 5;
        } else if rest.starts_with(b"vmalloc:") {
            self.i += 8;
        }
        // The slab events by their first eight bytes, then any name.
        if let Some(word) = load(self.b, self.i) {
            let known = if word == u64::from_le_bytes(*b"kmalloc:") {
                Some((EventName::Kmalloc, 8))
            } else if word & 0xffff_ffff_ffff == u64::from_le_bytes(*b"kfree:\0\0") {
                Some((EventName::Kfree, 6))
            } else if word == u64::from_le_bytes(*b"kmem_cac") {
                let rest = &self.b[self.i + 8..];
                if rest.starts_with(b"he_alloc:") {
                    Some((EventName::KmemCacheAlloc, 17))
                } else if rest.starts_with(b"he_free:") {
                    Some((EventName::KmemCacheFree, 16))
                } else {
                    None
                }
            } else {
                None
            };
            if let Some((name, len)) = known {
                if !is_blank(*self.b.get(self.i + len)?) {
                    return None;
                }
                self.i += len;
                self.skip_blanks();
                return Some(name);
            }
        }
        let start = self.i;
        let mut i = start;
        while let Some(&c) = self.b.get(i) {
            if !(c.is_ascii_lowercase() || c == b'_') {
                break;
            }
            i += 1;
        }
        if self.b.get(i) != Some(&b':') || !is_blank(*self.b.get(i + 1)?) {
            return None;
        }
        let name = EventName::from_bytes(&self.b[start..i])?;
        self.i = i + 1;
        self.skip_blanks();
        Some(name)
    }

    /// `call_site=`: an address, or a symbol (a word that is not hex) kept as text.
    #[inline]
    fn call_site(&mut self) -> Option<Site<'a>> {
        let start = self.i;
        if let Some(addr) = self.hex() {
            return Some(Site::Addr(addr));
        }
        self.i = start;
        let word = self.word()?;
        Some(Site::Symbol(std::str::from_utf8(word).ok()?))
    }

    /// A word as text (GFP strings, cache names).
    #[inline]
    fn text(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.word()?).ok()
    }
}

/// A call site before it is interned.
enum Site<'a> {
    Addr(u64),
    Symbol(&'a str),
}

/// Trimmed lines starting so are checked for trace-cmd headers and lost events.
fn maybe_header(rest: &[u8]) -> bool {
    rest.starts_with(b"CPU") || rest.starts_with(b"cpus=") || rest.starts_with(b"version =")
}

impl LineParser {
    /// The fast path: the line's event if the line has the common shape, `None` to let
    /// the general parser read it. Nothing of the parser's state changes on `None`.
    pub(super) fn parse_fast(&mut self, line_no: u64, b: &[u8]) -> Option<TraceEvent> {
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
        let event = self.body_fast(name, &mut c)?;
        Some(TraceEvent {
            line: line_no,
            cpu,
            pid,
            ctx,
            timestamp_ns,
            name,
            event,
            chain: None,
        })
    }

    /// The event's fields in the kernel's order, then the end of the line.
    #[inline]
    fn body_fast(&mut self, name: EventName, c: &mut Cursor<'_>) -> Option<Event> {
        use EventName::*;
        let event = match name {
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
        Some(event)
    }

    #[inline]
    fn slab_alloc_fast(&mut self, c: &mut Cursor<'_>) -> Option<SlabAlloc> {
        if !c.key(b"call_site=") {
            return None;
        }
        let site = c.call_site()?;
        let ptr = c.key(b"ptr=").then(|| c.pointer())??;
        // 6.18's kmem_cache_alloc prints `name=` here; older kernels' patches at the end.
        let early_name = c.optional(b"name=", Cursor::text)?;
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
            None => c.optional(b"name=", Cursor::text)?,
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
            cache_name: name.map(|n| self.symbols.intern(n)),
        })
    }

    #[inline]
    fn slab_free_fast(&mut self, c: &mut Cursor<'_>) -> Option<SlabFree> {
        if !c.key(b"call_site=") {
            return None;
        }
        let site = c.call_site()?;
        let ptr = c.key(b"ptr=").then(|| c.pointer())??;
        let name = c.optional(b"name=", Cursor::text)?;
        if !c.at_end() {
            return None;
        }
        Some(SlabFree {
            call_site: self.intern_site(site),
            ptr,
            cache_name: name.map(|n| self.symbols.intern(n)),
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

    #[inline]
    fn intern_site(&mut self, site: Site<'_>) -> CallSite {
        match site {
            Site::Addr(a) => CallSite::Addr(a),
            Site::Symbol(s) => CallSite::Symbol(self.symbols.intern(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Line;

    /// What the general parser makes of a line, and the state it leaves.
    fn both(line: &str) -> (Result<Line, &'static str>, Option<Line>) {
        let mut general = LineParser::default();
        let slow = general.parse_general(3, line);
        let mut fast = LineParser::default();
        let quick = fast.parse_fast(3, line.as_bytes()).map(Line::Event);
        if quick.is_none() {
            assert_eq!(
                fast.retained_entries(),
                0,
                "{line:?}: state changed on None"
            );
        } else {
            assert_eq!(
                (fast.symbols.len(), fast.gfp.distinct_strings()),
                (general.symbols.len(), general.gfp.distinct_strings()),
                "{line:?}"
            );
            for id in 0..fast.symbols.len() as u32 {
                assert_eq!(fast.symbols.name(id), general.symbols.name(id));
            }
            let a: Vec<_> = fast.gfp.unknown_counts().collect();
            let b: Vec<_> = general.gfp.unknown_counts().collect();
            assert_eq!(a, b, "{line:?}");
        }
        (slow, quick)
    }

    fn agree(line: &str) -> bool {
        let (slow, quick) = both(line);
        if let Some(quick) = quick {
            assert_eq!(slow, Ok(quick), "{line:?}");
            true
        } else {
            false
        }
    }

    const LINES: &[&str] = &[
        "            init-1     [000] .N..     0.170000: kmalloc: call_site=c104de4f ptr=c143de20 bytes_req=29 bytes_alloc=32 gfp_flags=GFP_KERNEL",
        "            init-1     [000] .N..     0.170000: kfree: call_site=c10c283a ptr=  (null)",
        "            init-1     [000] .N..     0.170000: kmem_cache_alloc: call_site=c10bc38e ptr=c1614f80 bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL|GFP_ZERO",
        "            init-1     [000] .N..     0.170000: kmem_cache_free: call_site=c10c226b ptr=c163a850",
        "           <...>-4242    [002] d..1.  1234.567890123: kmalloc: call_site=getname_flags+0x4f/0x1f0 ptr=000000006c8b2d1e bytes_req=4096 bytes_alloc=4096 gfp_flags=GFP_KERNEL node=-1 accounted=false",
        "bash-1 [000] ..... 1.0: kmalloc: call_site=kvmalloc_node+0x3e/0xf0 ptr=ffff888004d8f000 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO node=0 accounted=true",
        "kworker/0:1-11 [000] ...1. 5.5: kfree: call_site=ext4_fill_super+0x1c2/0x2a80 [ext4] ptr=ffff888003f0e000",
        "swapper/0-1 [000] .... 0.1: kmem_cache_alloc_node: call_site=ffffffff8113b5e8 ptr=ffff88003e8c6000 bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1",
        "rcuc/1-22 [001] ..s1. 9.9: kmem_cache_free: call_site=rcu_do_batch+0x1a2/0x4f0 ptr=00000000b1e0a5b4 name=dentry",
        "bash-9 [000] ..... 9.9: kmem_cache_alloc: call_site=alloc_inode+0x5c/0xb0 ptr=0000000012345678 bytes_req=1056 bytes_alloc=1088 gfp_flags=GFP_KERNEL node=-1 accounted=true name=ext4_inode_cache",
        "          bash-1234  [000]  5103.454291: kmalloc:              call_site=ffffffff811c6a0e ptr=0xffff88003d7d2c00 bytes_req=128 bytes_alloc=128 gfp_flags=GFP_KERNEL",
        "     trace-cmd-3071  [001] d..2  5103.454300: kfree:                call_site=ffffffff811c6a0e ptr=(null)",
        "            bash-1977  (   1977) [000] .... 17.0: kfree: call_site=c1 ptr=c2",
        "bash-1 [000] .... 1.0: mm_page_alloc: page=f6b3c0a0 pfn=12345 order=2 migratetype=0 gfp_flags=GFP_KERNEL|GFP_COMP",
        "bash-1 [000] ..... 1.0: mm_page_alloc: page=00000000a1b2c3d4 pfn=0x1a2b3 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO",
        "bash-1 [000] .... 1.0: mm_page_alloc: page=(null) pfn=0 order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE",
        "bash-1 [000] .... 1.0: mm_page_alloc: page=0000000000000000 pfn=0x0 order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE",
        "bash-1 [000] .... 1.0: mm_page_free: page=f6b3c0a0 pfn=12345 order=2",
        "bash-1 [000] .... 1.0: mm_page_free_batched: page=f6b3c0a0 pfn=12345 order=0 cold=0",
        "bash-1 [000] ..... 1.0: mm_page_free_batched: page=00000000a1b2c3d4 pfn=0x3039 order=0",
        "a-1 [000] .... 1.0: kmalloc: call_site=c1 ptr=c2 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL|__GFP_FUTURE",
        "   Web Content-5678  [001]   99.000001: kfree:                call_site=c10c283a ptr=(null)",
        "cat-5 [001] d.h. 3.5: kmalloc: call_site=c1 ptr=c2 bytes_req=1 bytes_alloc=8 gfp_flags=GFP_ATOMIC",
        "CPU-5 [001] d.h. 3.5: kmalloc: call_site=c1 ptr=c2 bytes_req=1 bytes_alloc=8 gfp_flags=GFP_ATOMIC",
        "t\u{e9}che-5 [001] d.h. 3.5: kmalloc: call_site=c1 ptr=c2 bytes_req=1 bytes_alloc=8 gfp_flags=GFP_ATOMIC",
        "insmod-300 [001] ..... 42.0: alloc_vmap_area: va_start: 18446683600570023936 size=8192 align=1 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0",
        "     kworker/u8:2-118     [003] ..... 5001.000200: kmem_cache_alloc: call_site=__d_alloc+0x2d/0x1f0 ptr=ffff888000000000 name=dentry bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=true",
    ];

    /// The fast path reads the common shapes, and reads them as the general parser does.
    #[test]
    fn fast_path_takes_the_common_shapes() {
        for (i, line) in LINES.iter().enumerate() {
            let taken = agree(line);
            let expected = !matches!(i, 6 | 23 | 24 | 25);
            assert_eq!(taken, expected, "{line:?}");
        }
    }

    /// Every line the fast path accepts, the general parser reads identically: lines
    /// built from trace fragments, and trace lines with bytes changed, removed or doubled.
    #[test]
    fn fast_path_agrees_with_the_general_parser() {
        let pieces = [
            "init-1",
            " ",
            "  ",
            "[000]",
            "[",
            "]",
            ".N..",
            "d.h.",
            "..s1.",
            "0.17:",
            ":",
            "kmalloc:",
            "kfree:",
            "kmem_cache_free:",
            "mm_page_alloc:",
            "mm_page_free:",
            "mm_page_free_batched:",
            "call_site=",
            "ptr=",
            "(null)",
            "bytes_req=",
            "12",
            "bytes_alloc=",
            "gfp_flags=",
            "GFP_KERNEL|",
            "GFP_KERNEL",
            "|",
            "=",
            "0x",
            "ffffffff",
            "-",
            "order=",
            "pfn=",
            "page=",
            "migratetype=",
            "cold=",
            "é",
            "\t",
            "name=",
            "node=",
            "-1",
            "accounted=",
            "true",
            "99999999999999999999",
            "c104de4f",
            "+5",
            "\r",
            "\u{c}",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut accepted = 0;
        for _ in 0..40_000 {
            let mut line = String::new();
            for _ in 0..(next() % 24) {
                line.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            accepted += agree(&line) as u32;
        }
        let alphabet = b" \t=:[]().-+|0x9aZ\xc3\xa9\xff\r";
        for _ in 0..60_000 {
            let mut line = LINES[(next() % LINES.len() as u64) as usize]
                .as_bytes()
                .to_vec();
            for _ in 0..=(next() % 3) {
                let at = (next() % line.len() as u64) as usize;
                match next() % 4 {
                    0 => line[at] = alphabet[(next() % alphabet.len() as u64) as usize],
                    1 => {
                        line.remove(at);
                    }
                    2 => line.insert(at, line[at]),
                    _ => line.insert(at, alphabet[(next() % alphabet.len() as u64) as usize]),
                }
            }
            let (slow, quick) = {
                let mut general = LineParser::default();
                let slow = match std::str::from_utf8(&line) {
                    Ok(text) => general.parse_general(3, text),
                    Err(_) => Err("the line is not UTF-8 text"),
                };
                let mut fast = LineParser::default();
                (slow, fast.parse_fast(3, &line).map(Line::Event))
            };
            if let Some(quick) = quick {
                assert_eq!(slow, Ok(quick), "{:?}", String::from_utf8_lossy(&line));
                accepted += 1;
                // And the state left behind, on the lines that are text.
                if let Ok(text) = std::str::from_utf8(&line) {
                    agree(text);
                }
            }
        }
        assert!(
            accepted > 10_000,
            "only {accepted} lines took the fast path"
        );
    }

    /// Eight hex digits at a time agree with one at a time.
    #[test]
    fn word_at_a_time_hex() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let alphabet = b"0123456789abcdefABCDEFgG/@`:x \xff\x80";
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let text: Vec<u8> = (0..len)
                .map(|k| alphabet[((x >> (k % 50)) as usize + k * 7) % alphabet.len()])
                .collect();
            let mut c = Cursor { b: &text, i: 0 };
            // The value is the word up to the first blank.
            let end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
            let slow = std::str::from_utf8(&text[..end])
                .ok()
                .and_then(crate::parse::hex_for_tests);
            assert_eq!(c.hex(), slow, "{text:?}");
        }
    }

    /// Every event line of the Linux 3.5 boot traces (`tests/data/traces/`) takes the fast
    /// path, and reads as the general parser reads it.
    #[test]
    fn shared_traces_take_the_fast_path() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/traces");
        for name in [
            "linux-3.5-i386-boot-slub.trace",
            "linux-3.5-i386-boot-slab.trace",
        ] {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("test fixture {} is missing: {e}", path.display()));
            let (mut general, mut fast) = (LineParser::default(), LineParser::default());
            for (i, line) in text.lines().enumerate() {
                let slow = general.parse_general(i as u64 + 1, line);
                let quick = fast
                    .parse_fast(i as u64 + 1, line.as_bytes())
                    .map(Line::Event);
                match slow {
                    Ok(Line::Event(_)) => {
                        assert_eq!(quick.ok_or("refused"), slow, "{name}:{}", i + 1)
                    }
                    _ => assert_eq!(quick, None, "{name}:{}", i + 1),
                }
            }
            assert_eq!(fast.symbols.len(), general.symbols.len());
            assert_eq!(fast.gfp.distinct_strings(), general.gfp.distinct_strings());
        }
    }
}
