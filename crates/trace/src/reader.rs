//! Streaming: events from any [`BufRead`], one line at a time, in bounded memory (one
//! reused line buffer, at most [`MAX_LINE`] bytes, plus the parser's interned strings).
//!
//! Line lengths are enforced while reading, never after a whole line is in memory: a
//! line longer than [`MAX_LINE`] is malformed (strict mode stops at it at once; lenient
//! mode skips the rest of it), and one longer than [`MAX_SKIPPED_LINE`] stops the
//! reading in either mode, so that `/dev/zero` or a binary file ends in an error instead
//! of a read that never finishes.

use std::fmt;
use std::io::{BufRead, Read};

use crate::callchain::{Callchains, Frame, MAX_FRAMES};
use crate::event::{EventName, TraceEvent};
use crate::parse::{Line, LineParser};

/// The longest line kept; the rest of a longer line is skipped and the line is malformed.
/// (A kernel's `kmem` lines are a few hundred bytes: `TP_printk` of the longest event, with
/// a symbolic call site and a cache name, stays far below this.)
pub const MAX_LINE: usize = 64 << 10;

/// The longest line lenient mode skips: a longer one is no trace's, and stops the reading.
pub const MAX_SKIPPED_LINE: u64 = 1 << 20;

/// Bytes of a malformed line's report text, escapes included (the rest is cut, with `...`).
const SHOWN_BYTES: usize = 300;

/// Why reading a trace stopped.
#[derive(Debug)]
pub enum TraceError {
    /// A malformed line (strict mode).
    Malformed {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: &'static str,
        /// The line itself, escaped and cut at 300 bytes ([`escape_line`]).
        text: String,
    },
    /// A line longer than [`MAX_SKIPPED_LINE`] (lenient mode; strict mode stops at a line
    /// longer than [`MAX_LINE`] as a malformed one).
    LineTooLong {
        /// 1-based line number.
        line: u64,
    },
    /// The input could not be read.
    Io(std::io::Error),
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Malformed { line, reason, text } => {
                write!(f, "line {line}: {reason}:\n  {text}")
            }
            TraceError::LineTooLong { line } => write!(
                f,
                "line {line}: the line is longer than {} MiB: not a text trace",
                MAX_SKIPPED_LINE >> 20
            ),
            TraceError::Io(e) => write!(f, "reading the trace: {e}"),
        }
    }
}

impl std::error::Error for TraceError {}

/// Counts of what the input held.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InputStats {
    /// Lines read.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Allocator events parsed.
    pub events: u64,
    /// Events per tracepoint, in [`EventName::ALL`] order.
    pub per_event: [u64; 12],
    /// Comment, blank and header lines.
    pub comments: u64,
    /// Well-formed lines of other events (counted and skipped).
    pub unknown_events: u64,
    /// Callchain frames below `perf script` events (recorded with `-g`): each event's
    /// frames make its chain ([`TraceEvent::chain`]); frames below other events are
    /// counted and dropped.
    pub callchain_frames: u64,
    /// Events whose chain was not kept: deeper than [`crate::callchain::MAX_FRAMES`]
    /// (cut there), or new when [`crate::callchain::MAX_CHAINS`] were held (dropped).
    pub callchains_cut: u64,
    /// Events the kernel said it lost (`[LOST n EVENTS]`).
    pub lost_events: u64,
    /// Malformed lines skipped (lenient mode).
    pub malformed_skipped: u64,
    /// The first malformed line skipped, with its reason (lenient mode).
    pub first_malformed: Option<String>,
}

impl InputStats {
    /// Events of one tracepoint.
    pub fn count(&self, name: EventName) -> u64 {
        self.per_event[name.index()]
    }
}

/// What the callchain frames read now belong to.
#[derive(Copy, Clone, PartialEq, Eq)]
enum FrameOwner {
    /// No line above them yet: a frame here is malformed.
    Nothing,
    /// The event held back in `pending`.
    Pending,
    /// A line of another event: its frames are counted and dropped.
    Other,
}

/// Reads allocator events from a trace.
///
/// An event is handed out once the line after it is read, so that the callchain frames
/// `perf script -g` prints below it come with it ([`TraceEvent::chain`]).
pub struct TraceReader<R> {
    input: R,
    buf: Vec<u8>,
    lenient: bool,
    parser: LineParser,
    stats: InputStats,
    /// The event read last, held back until its frames are read.
    pending: Option<TraceEvent>,
    /// The frames read below it.
    frames: Vec<Frame>,
    /// Whose frames the next frame lines are.
    owner: FrameOwner,
    /// Whether the pending event's chain was cut at [`MAX_FRAMES`] (counted once).
    chain_cut: bool,
    /// The distinct chains.
    chains: Callchains,
    /// An error met while reading past the pending event, reported after it.
    deferred_error: Option<TraceError>,
}

impl<R: BufRead> TraceReader<R> {
    /// A reader; `lenient` skips and counts malformed lines instead of stopping.
    pub fn new(input: R, lenient: bool) -> TraceReader<R> {
        TraceReader {
            input,
            buf: Vec::with_capacity(512),
            lenient,
            parser: LineParser::default(),
            stats: InputStats::default(),
            pending: None,
            frames: Vec::new(),
            owner: FrameOwner::Nothing,
            chain_cut: false,
            chains: Callchains::default(),
            deferred_error: None,
        }
    }

    /// The next allocator event with its callchain, `Ok(None)` at the end of the input.
    ///
    /// One event at a time; [`TraceReader::read_batch`] reads many for less.
    pub fn next_event(&mut self) -> Result<Option<TraceEvent>, TraceError> {
        let mut one = [TraceEvent::PLACEHOLDER];
        let read = self.fill(&mut one, |_, _| {})?;
        Ok((read == 1).then_some(one[0]))
    }

    /// Reads up to `max` (at least one) events with their callchains into `out`, which
    /// it resizes to them: fewer than `max` only where the input ends or where an error
    /// was met (the events above the error come first, the error on the next call), none
    /// at the end. `handed_out(i, stats)` is called as `out[i]` is complete, with the
    /// counts read by then: an event is complete once the line after its frames is read.
    ///
    /// The events are parsed where they are kept, so that nothing is copied once it is
    /// read: `out` is first resized to `max` slots, and is best reused from one batch to
    /// the next.
    pub fn read_batch(
        &mut self,
        out: &mut Vec<TraceEvent>,
        max: usize,
        handed_out: impl FnMut(usize, &InputStats),
    ) -> Result<(), TraceError> {
        out.resize(max.max(1), TraceEvent::PLACEHOLDER);
        let result = self.fill(out, handed_out);
        out.truncate(*result.as_ref().unwrap_or(&0));
        result.map(|_| ())
    }

    /// [`TraceReader::read_batch`] into the slots of `out`: how many were filled.
    fn fill(
        &mut self,
        out: &mut [TraceEvent],
        mut handed_out: impl FnMut(usize, &InputStats),
    ) -> Result<usize, TraceError> {
        if let Some(e) = self.deferred_error.take() {
            return Err(e);
        }
        // `out[..read]` are read; the last of them is the pending one, whose frames may
        // still follow.
        let mut read = 0;
        if let Some(first) = out.first_mut()
            && let Some(pending) = self.pending.take()
        {
            *first = pending;
            read = 1;
        }
        // The event read after a full `out` waits in `pending` for the next call.
        let mut spill = None;
        loop {
            let slot = match out.get_mut(read) {
                Some(slot) => slot,
                None => spill.insert(TraceEvent::PLACEHOLDER),
            };
            let next = match self.read_into(slot) {
                Ok(next) => next,
                // The events above the bad line are handed out first, the error next time.
                Err(e) if read > 0 => {
                    self.deferred_error = Some(e);
                    false
                }
                Err(e) => return Err(e),
            };
            if read > 0 {
                out[read - 1].chain = self.finish_chain();
                handed_out(read - 1, &self.stats);
            }
            if !next {
                return Ok(read);
            }
            self.owner = FrameOwner::Pending;
            if let Some(ev) = spill {
                self.pending = Some(ev);
                return Ok(read);
            }
            read += 1;
        }
    }

    /// The chain of the frames read below the pending event, interned.
    fn finish_chain(&mut self) -> Option<u32> {
        if self.frames.is_empty() {
            return None;
        }
        let id = self.chains.intern(&self.frames);
        let was_cut = std::mem::take(&mut self.chain_cut);
        if id.is_none() && !was_cut {
            self.stats.callchains_cut += 1;
        }
        self.frames.clear();
        id
    }

    /// A frame line: kept for the pending event, dropped below another event's line,
    /// malformed above every event line.
    fn frame(&mut self, line_no: u64, frame: Frame) -> Result<(), TraceError> {
        self.stats.callchain_frames += 1;
        match self.owner {
            FrameOwner::Pending if self.frames.len() < MAX_FRAMES => self.frames.push(frame),
            FrameOwner::Pending => {
                if !self.chain_cut {
                    self.stats.callchains_cut += 1;
                    self.chain_cut = true;
                }
            }
            FrameOwner::Other => {}
            FrameOwner::Nothing => {
                self.malformed(line_no, "a callchain frame with no event line above it")?
            }
        }
        Ok(())
    }

    /// The chains the events' [`TraceEvent::chain`] ids name.
    pub fn chains(&self) -> &Callchains {
        &self.chains
    }

    /// Reads lines up to the next event line, parsed into `slot`: `false` at the end of
    /// the input. The event's frames are not yet read.
    #[inline]
    fn read_into(&mut self, slot: &mut TraceEvent) -> Result<bool, TraceError> {
        // The common case: a whole line of the common shape in the input's buffer, parsed
        // where it lies by the parser's fast path.
        let chunk = fill_buf(&mut self.input)?;
        if let Some(newline) = memchr::memchr(b'\n', chunk)
            && newline < MAX_LINE
        {
            let line_no = self.stats.lines + 1;
            if self
                .parser
                .parse_fast_into(line_no, &chunk[..newline], slot)
                .is_some()
            {
                self.input.consume(newline + 1);
                self.stats.lines = line_no;
                self.stats.bytes += newline as u64 + 1;
                self.stats.events += 1;
                self.stats.per_event[slot.name.index()] += 1;
                return Ok(true);
            }
        }
        match self.next_event_slow()? {
            Some(ev) => {
                *slot = ev;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Every other line: comments, headers, unknown events, malformed lines, lines not in
    /// the input's buffer whole, and the shapes the fast path leaves to the general parser.
    #[inline(never)]
    fn next_event_slow(&mut self) -> Result<Option<TraceEvent>, TraceError> {
        loop {
            let parsed = match self.parse_in_place()? {
                Some(parsed) => parsed,
                None => {
                    let Some(too_long) = self.read_line()? else {
                        return Ok(None);
                    };
                    if too_long {
                        Err(TOO_LONG)
                    } else {
                        classify(&mut self.parser, self.stats.lines, &self.buf)
                    }
                }
            };
            let line_no = self.stats.lines;
            match parsed {
                Ok(Line::Event(ev)) => {
                    self.stats.events += 1;
                    self.stats.per_event[ev.name.index()] += 1;
                    return Ok(Some(ev));
                }
                Ok(Line::Comment) => self.stats.comments += 1,
                Ok(Line::Unknown) => {
                    self.stats.unknown_events += 1;
                    self.owner = FrameOwner::Other;
                }
                Ok(Line::Lost(n)) => {
                    self.stats.lost_events = self.stats.lost_events.saturating_add(n)
                }
                Ok(Line::Callchain(frame)) => self.frame(line_no, frame)?,
                Err(reason) => self.malformed(line_no, reason)?,
            }
        }
    }

    /// A whole line in the input's buffer, parsed where it lies (a malformed one is copied
    /// out for its report). `None`: read it the slow way.
    fn parse_in_place(&mut self) -> Result<Option<Result<Line, &'static str>>, TraceError> {
        let chunk = fill_buf(&mut self.input)?;
        let Some(newline) = memchr::memchr(b'\n', chunk) else {
            return Ok(None);
        };
        if newline >= MAX_LINE {
            return Ok(None);
        }
        let line_no = self.stats.lines + 1;
        let parsed = classify(&mut self.parser, line_no, &chunk[..newline + 1]);
        // A malformed line, or a frame that may be one, is kept for its report.
        if matches!(parsed, Err(_) | Ok(Line::Callchain(_))) {
            self.buf.clear();
            self.buf.extend_from_slice(&chunk[..newline + 1]);
        }
        self.input.consume(newline + 1);
        self.stats.lines = line_no;
        self.stats.bytes += newline as u64 + 1;
        Ok(Some(parsed))
    }

    /// Read one line into `buf`: `None` at the end, `Some(true)` if it was cut (in lenient
    /// mode the rest of it is skipped; strict mode stops at it, so nothing more is read).
    fn read_line(&mut self) -> Result<Option<bool>, TraceError> {
        self.buf.clear();
        if self.buf.capacity() > 4 * MAX_LINE {
            self.buf.shrink_to(512);
        }
        let n = (&mut self.input)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut self.buf)
            .map_err(TraceError::Io)?;
        if n == 0 {
            return Ok(None);
        }
        self.stats.lines += 1;
        self.stats.bytes += n as u64;
        let cut = n == MAX_LINE && self.buf.last() != Some(&b'\n');
        if cut && self.lenient {
            self.skip_rest_of_line(n as u64)?;
        }
        Ok(Some(cut))
    }

    /// Skip to the end of a line of which `read` bytes were read, up to
    /// [`MAX_SKIPPED_LINE`] bytes in all.
    fn skip_rest_of_line(&mut self, mut read: u64) -> Result<(), TraceError> {
        loop {
            let chunk = fill_buf(&mut self.input)?;
            if chunk.is_empty() {
                return Ok(());
            }
            let newline = memchr::memchr(b'\n', chunk);
            let take = newline.map_or(chunk.len(), |at| at + 1);
            if read + take as u64 > MAX_SKIPPED_LINE + 1 {
                return Err(TraceError::LineTooLong {
                    line: self.stats.lines,
                });
            }
            read += take as u64;
            self.stats.bytes += take as u64;
            self.input.consume(take);
            if newline.is_some() {
                return Ok(());
            }
        }
    }

    fn malformed(&mut self, line: u64, reason: &'static str) -> Result<(), TraceError> {
        let text = escape_line(&self.buf);
        if !self.lenient {
            return Err(TraceError::Malformed { line, reason, text });
        }
        self.stats.malformed_skipped += 1;
        if self.stats.first_malformed.is_none() {
            self.stats.first_malformed = Some(format!("line {line}: {reason}: {text}"));
        }
        Ok(())
    }

    /// What has been read so far.
    pub fn stats(&self) -> &InputStats {
        &self.stats
    }

    /// The parser's state: interned call sites and cache names, GFP strings, unknown events.
    pub fn parser(&self) -> &LineParser {
        &self.parser
    }

    /// The line buffer's capacity (stays bounded however long the trace is).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

/// The input's buffered bytes (`BufRead::fill_buf`), read again where a signal
/// interrupted the read, as `read_until` does.
fn fill_buf<R: BufRead>(input: &mut R) -> Result<&[u8], TraceError> {
    let at_end = loop {
        match input.fill_buf() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(TraceError::Io(e)),
            Ok(buffered) => break buffered.is_empty(),
        }
    };
    if at_end {
        return Ok(&[]);
    }
    // Filled now: this call only hands the buffer out.
    input.fill_buf().map_err(TraceError::Io)
}

/// The reason given for a line longer than [`MAX_LINE`].
const TOO_LONG: &str = "the line is longer than 64 KiB";

/// A line as it is shown in a report: UTF-8 text as it is, control characters and bytes
/// that are not UTF-8 escaped (`\x1b`, `\xff`), trailing blanks and the line ending
/// dropped, and at most 300 bytes followed by `...`, so that a binary
/// file's garbage reaches the terminal neither raw nor whole.
pub fn escape_line(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.trim_ascii_end().utf8_chunks() {
        let valid = chunk.valid().chars().map(|c| match c {
            '\\' => "\\\\".to_string(),
            '\t' => "\t".to_string(),
            c if c.is_control() && (c as u32) < 0x100 => format!("\\x{:02x}", c as u32),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        });
        let invalid = chunk.invalid().iter().map(|b| format!("\\x{b:02x}"));
        for piece in valid.chain(invalid) {
            if out.len() + piece.len() > SHOWN_BYTES {
                out.push_str("...");
                return out;
            }
            out.push_str(&piece);
        }
    }
    out
}

/// Parse one line's bytes (with or without its newline).
#[inline]
fn classify(parser: &mut LineParser, line_no: u64, bytes: &[u8]) -> Result<Line, &'static str> {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    parser.parse_bytes(line_no, &bytes[..end])
}
