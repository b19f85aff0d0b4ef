//! Callchains of `perf script` on data recorded with `-g` (`perf kmem record --page` adds
//! it; `perf record -g -e 'kmem:*'` too): the indented frames below an event line,
//!
//! ```text
//!             perf 24970 [000]  3442.427504: kmem:kmalloc: call_site=sched_setaffinity+0x127 ptr=...
//!         ffffffff812a3b4c __kmalloc+0x1ac ([kernel.kallsyms])
//!         ffffffff810d1f17 sched_setaffinity+0x127 ([kernel.kallsyms])
//! ```
//!
//! (each frame indented with a tab) printed innermost first by `sample__fprintf_callchain` (tools/perf/util/evsel_fprintf.c,
//! Linux 6.6): the address in bare hex, the symbol (`[unknown]` when perf had none), and
//! the DSO in parentheses. The reader attaches each event's frames to it as one interned
//! chain ([`Callchains`]); the replay keeps the commonest chains of each call site, and
//! finds a page allocation's call site in its chain as `perf kmem` does (`find_callsite`).

use crate::hash::FxHashMap;
use crate::parse::Symbols;

/// One frame: its address and its symbol text (`__kmalloc+0x1ac`, interned).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The instruction address.
    pub addr: u64,
    /// The symbol as perf printed it, interned in the parser's [`Symbols`].
    pub symbol: u32,
}

/// The most frames kept of one chain (half the default `kernel.perf_event_max_stack`,
/// 127: allocation stacks are far shorter); a deeper chain is cut here and counted in
/// [`crate::InputStats::callchains_cut`]. With [`MAX_CHAINS`] it bounds the chains'
/// memory to a few tens of MiB whatever the trace.
pub const MAX_FRAMES: usize = 64;

/// The most distinct chains kept; events with further new chains keep none.
pub const MAX_CHAINS: usize = 1 << 14;

/// Distinct chains, each stored once.
#[derive(Default)]
pub struct Callchains {
    ids: FxHashMap<Box<[Frame]>, u32>,
    chains: Vec<Box<[Frame]>>,
}

impl Callchains {
    /// The id of `frames`, adding it if new; `None` when [`MAX_CHAINS`] are held.
    pub fn intern(&mut self, frames: &[Frame]) -> Option<u32> {
        if let Some(&id) = self.ids.get(frames) {
            return Some(id);
        }
        if self.chains.len() >= MAX_CHAINS {
            return None;
        }
        let id = self.chains.len() as u32;
        self.chains.push(frames.into());
        self.ids.insert(frames.into(), id);
        Some(id)
    }

    /// The frames of chain `id`, innermost first (empty for an unknown id).
    pub fn get(&self, id: u32) -> &[Frame] {
        self.chains.get(id as usize).map_or(&[], |c| c)
    }

    /// Distinct chains held.
    pub fn len(&self) -> usize {
        self.chains.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }
}

/// What an indented line that is no event turned out to be.
pub(crate) enum FrameLine {
    /// A frame: address and symbol text.
    Frame(u64, String),
    /// Not a frame's shape at all (the caller reports its own reason).
    NotAFrame,
    /// A bare hex address first, as a frame has, but the rest is not a frame's.
    Malformed(&'static str),
}

/// Read a frame line (without its indentation): `ADDRESS SYMBOL (DSO)`.
pub(crate) fn parse_frame(trimmed: &str) -> FrameLine {
    let trimmed = trimmed.trim_ascii_end();
    let (addr, rest) = trimmed
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((trimmed, ""));
    let is_hex = !addr.is_empty()
        && addr.len() <= 16
        && !addr.starts_with("0x")
        && addr.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex {
        return FrameLine::NotAFrame;
    }
    let rest = rest.trim_ascii_start();
    // An event line of perf script has the pid after the task name, never a symbol.
    let first_word = rest.split_ascii_whitespace().next().unwrap_or("");
    if !first_word.is_empty() && first_word.bytes().all(|b| b.is_ascii_digit()) {
        return FrameLine::NotAFrame;
    }
    let Ok(addr) = u64::from_str_radix(addr, 16) else {
        return FrameLine::NotAFrame;
    };
    if !rest.ends_with(')') {
        return FrameLine::Malformed(
            "a callchain frame must read ADDRESS SYMBOL (DSO): no (DSO) at the end",
        );
    }
    let Some(open) = rest
        .rfind(" (")
        .or_else(|| rest.starts_with('(').then_some(0))
    else {
        return FrameLine::Malformed("a callchain frame must read ADDRESS SYMBOL (DSO)");
    };
    let symbol = rest[..open].trim();
    if symbol.is_empty() {
        return FrameLine::Malformed("a callchain frame has no symbol between ADDRESS and (DSO)");
    }
    FrameLine::Frame(addr, symbol.to_string())
}

/// The function of a frame's symbol text: `__kmalloc+0x1ac` → `__kmalloc`.
pub fn function(symbol: &str) -> &str {
    symbol.split('+').next().unwrap_or(symbol)
}

/// Whether `function` is one of the page allocator's entry points that `perf kmem` skips
/// to find a page allocation's call site: `build_alloc_func_list`'s
/// `^_?_?(alloc|get_free|get_zeroed)_pages?` (tools/perf/builtin-kmem.c, Linux 6.6).
pub fn is_page_alloc_function(function: &str) -> bool {
    let f = function
        .strip_prefix("__")
        .or_else(|| function.strip_prefix('_'))
        .unwrap_or(function);
    ["alloc_page", "get_free_page", "get_zeroed_page"]
        .iter()
        .any(|p| f.starts_with(p))
}

/// `find_callsite`: the first frame, innermost first, outside the page allocator's entry
/// points (`None`: no chain, or every frame is one of them; perf then uses the sample's
/// own address, which `perf script` does not print).
pub fn page_call_site(frames: &[Frame], symbols: &Symbols) -> Option<Frame> {
    frames
        .iter()
        .find(|f| !is_page_alloc_function(function(symbols.name(f.symbol))))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_and_non_frames_do_not() {
        match parse_frame("ffffffff812a3b4c __kmalloc+0x1ac ([kernel.kallsyms])") {
            FrameLine::Frame(a, s) => {
                assert_eq!(a, 0xffffffff812a3b4c);
                assert_eq!(s, "__kmalloc+0x1ac");
            }
            _ => panic!("a frame"),
        }
        assert!(matches!(
            parse_frame("7f1c2a4e1a2d [unknown] (/usr/lib/libc.so.6)"),
            FrameLine::Frame(_, s) if s == "[unknown]"
        ));
        assert!(matches!(
            parse_frame("perf 24970 [000] 1.0: kmem:kfree:"),
            FrameLine::NotAFrame
        ));
        assert!(matches!(
            parse_frame("cafe 12 [000] 1.0: kmem:kfree:"),
            FrameLine::NotAFrame
        ));
        assert!(matches!(
            parse_frame("ffffffff812a3b4c __kmalloc+0x1ac"),
            FrameLine::Malformed(_)
        ));
        assert!(matches!(
            parse_frame("ffffffff812a3b4c ([kernel.kallsyms])"),
            FrameLine::Malformed(_)
        ));
    }

    #[test]
    fn perfs_alloc_function_pattern() {
        for f in [
            "__alloc_pages",
            "alloc_pages",
            "alloc_pages_mpol",
            "__get_free_pages",
            "get_zeroed_page",
            "_alloc_pages",
            "alloc_page_interleave",
        ] {
            assert!(is_page_alloc_function(f), "{f}");
        }
        for f in [
            "kmalloc_large",
            "___alloc_pages",
            "vmalloc",
            "pte_alloc_one",
        ] {
            assert!(!is_page_alloc_function(f), "{f}");
        }
    }
}
