//! A line's framing around its `[CPU]` bracket: task and pid, flags, timestamp, event
//! name; trace-cmd's header lines and lost-event notes.

use kmemlab_mm::Context;

use super::fields::{find_delimiter, skip_blanks};
use crate::event::TraceContext;

/// The parts of a line around the `[CPU]` bracket.
pub(super) struct Header<'a> {
    pub(super) pid: u32,
    pub(super) cpu: u32,
    pub(super) ctx: TraceContext,
    pub(super) timestamp_ns: u64,
    pub(super) event: &'a str,
    pub(super) body: &'a str,
}

/// trace-cmd's header lines (`version = 6`, `cpus=4`, `CPU 0 is empty`,
/// `CPU0 data recorded at offset=...`).
pub(super) fn is_trace_cmd_header(line: &str) -> bool {
    line.starts_with("version =")
        || line.starts_with("cpus=")
        || (line.starts_with("CPU")
            && (line.ends_with("is empty") || line.contains("data recorded")))
}

/// `perf script` names a tracepoint with its subsystem (`kmem:kmalloc`,
/// `vmalloc:alloc_vmap_area`); ftrace and trace-cmd print the bare name.
pub(crate) fn without_subsystem(event: &str) -> &str {
    event
        .strip_prefix("kmem:")
        .or_else(|| event.strip_prefix("vmalloc:"))
        .unwrap_or(event)
}

/// `CPU:3 [LOST 1234 EVENTS]` (ftrace) or `CPU 3 [LOST 1234 EVENTS]`.
pub(super) fn lost_events(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("CPU")?;
    let at = rest.find("[LOST ")?;
    let n = rest[at + 6..].split_whitespace().next()?;
    n.parse().ok()
}

/// Find the `[CPU]` bracket whose right side reads as flags, timestamp and event name.
pub(super) fn split_header(line: &str) -> Result<Header<'_>, &'static str> {
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
pub(crate) fn cpu_bracket(bytes: &[u8], open: usize) -> Option<(u32, usize)> {
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
pub(crate) fn task_pid(text: &[u8]) -> Result<u32, &'static str> {
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
pub(super) fn perf_pid(text: &[u8]) -> Option<u32> {
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
pub(super) fn right_of_bracket(
    text: &str,
) -> Result<(TraceContext, u64, &str, &str), &'static str> {
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
pub(super) fn next_token(text: &str) -> Option<(&str, &str)> {
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
pub(crate) fn timestamp(token: &[u8]) -> Option<u64> {
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
pub(crate) const POW10: [u64; 10] = [
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
pub(super) fn decimal_digit(b: u8) -> Option<u64> {
    let d = b.wrapping_sub(b'0');
    (d < 10).then_some(d as u64)
}

/// The latency-format flags column (`irqs-off`, `need-resched`, `hardirq/softirq`,
/// `preempt-depth` and, on 5.x and later, `migrate-disable`).
#[inline]
pub(crate) fn flags(token: &[u8]) -> Option<TraceContext> {
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
