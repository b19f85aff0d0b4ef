//! GFP flag strings as traced kernels print them, old and new, translated to kmemlab's
//! (Linux 6.6) bit values by name: `GFP_KERNEL|__GFP_ZERO` (`%pGg`, 4.x and later),
//! `GFP_KERNEL|GFP_ZERO` (`show_gfp_flags` before 4.x, without the underscores),
//! `GFP_NOWAIT|__GFP_NOWARN`, `none`, or a raw number `0x...` (taken as 6.6 bits).
//!
//! A name the table does not know leaves the event in place and is counted.

use kmemlab_mm::gfp::Gfp;

use crate::hash::FxHashMap;

/// Names of flags that older kernels had and 6.6 no longer has, with what they mean now.
/// Those that changed nothing an allocator does (`__GFP_COLD`, `__GFP_NOTRACK`, ...) map
/// to no bits.
const LEGACY_NAMES: &[(&str, Gfp)] = &[
    ("__GFP_WAIT", Gfp::__GFP_RECLAIM),
    ("__GFP_REPEAT", Gfp::__GFP_RETRY_MAYFAIL),
    ("__GFP_NOACCOUNT", Gfp::empty()),
    ("__GFP_COLD", Gfp::empty()),
    ("__GFP_NOTRACK", Gfp::empty()),
    ("__GFP_NO_KSWAPD", Gfp::empty()),
    ("__GFP_OTHER_NODE", Gfp::empty()),
    ("__GFP_ATOMIC", Gfp::empty()),
    ("__GFP_NOLOCKDEP", Gfp::empty()),
    ("__GFP_SKIP_ZERO", Gfp::empty()),
    ("__GFP_SKIP_KASAN", Gfp::empty()),
    ("__GFP_SKIP_KASAN_POISON", Gfp::empty()),
    ("__GFP_SKIP_KASAN_UNPOISON", Gfp::empty()),
    ("GFP_IOFS", Gfp::__GFP_IO.union(Gfp::__GFP_FS)),
    (
        "GFP_TEMPORARY",
        Gfp::GFP_KERNEL.union(Gfp::__GFP_RECLAIMABLE),
    ),
    (
        "GFP_THISNODE",
        Gfp::__GFP_THISNODE
            .union(Gfp::__GFP_NOWARN)
            .union(Gfp::__GFP_NORETRY),
    ),
];

/// One flag name: kmemlab's table, then the legacy table, then the pre-4.x spelling
/// without the leading underscores (`GFP_ZERO` for `__GFP_ZERO`).
fn flag_by_name(name: &str) -> Option<Gfp> {
    if let Some(g) = Gfp::from_flag_name(name) {
        return Some(g);
    }
    let legacy = |n: &str| LEGACY_NAMES.iter().find(|(l, _)| *l == n).map(|(_, g)| *g);
    if let Some(g) = legacy(name) {
        return Some(g);
    }
    let underscored = format!("__{name}");
    Gfp::from_flag_name(&underscored).or_else(|| legacy(&underscored))
}

/// The parse of one whole `gfp_flags=` string.
#[derive(Clone)]
struct Parsed {
    gfp: Gfp,
    unknown: Box<[u32]>,
}

/// Parses `gfp_flags=` values, remembering each distinct string it has seen (a trace has
/// a handful) and counting the flag names it did not know.
#[derive(Default)]
pub struct GfpTable {
    seen: FxHashMap<Box<str>, Parsed>,
    unknown: Vec<(Box<str>, u64)>,
    /// The last few distinct strings parsed that named only known flags, and their flags:
    /// a trace has a handful of strings, mostly in runs or alternating, and comparing a
    /// few is cheaper than hashing.
    recent: [(Box<str>, Gfp); RECENT],
    /// The slot of `recent` to replace next.
    next_slot: usize,
}

/// Strings kept in [`GfpTable`]'s cache of recent ones.
const RECENT: usize = 4;

impl GfpTable {
    /// The flags `text` names; unknown names are counted and contribute no bits.
    pub fn parse(&mut self, text: &str) -> Gfp {
        if let Some(gfp) = self.cached(text.as_bytes()) {
            return gfp;
        }
        let gfp = self.parse_uncached(text);
        if self.seen.get(text).is_some_and(|p| p.unknown.is_empty()) {
            self.recent[self.next_slot] = (text.into(), gfp);
            self.next_slot = (self.next_slot + 1) % RECENT;
        }
        gfp
    }

    /// The flags of `text` if it is one of the recent strings that named only known flags
    /// ([`GfpTable::parse`] of it would change nothing but return these).
    #[inline]
    pub fn cached(&self, text: &[u8]) -> Option<Gfp> {
        if text.is_empty() {
            return None;
        }
        self.recent
            .iter()
            .find(|(s, _)| s.as_bytes() == text)
            .map(|&(_, gfp)| gfp)
    }

    fn parse_uncached(&mut self, text: &str) -> Gfp {
        if let Some(p) = self.seen.get(text) {
            let (gfp, ids) = (p.gfp, p.unknown.clone());
            self.count_unknown(&ids);
            return gfp;
        }
        let parsed = self.parse_new(text);
        let gfp = parsed.gfp;
        self.count_unknown(&parsed.unknown);
        self.seen.insert(text.into(), parsed);
        gfp
    }

    fn count_unknown(&mut self, ids: &[u32]) {
        for &id in ids {
            self.unknown[id as usize].1 += 1;
        }
    }

    fn parse_new(&mut self, text: &str) -> Parsed {
        let mut gfp = Gfp::empty();
        let mut unknown = Vec::new();
        if text != "none" && !text.is_empty() {
            for part in text.split('|') {
                match flag_by_name(part) {
                    Some(g) => gfp |= g,
                    None => unknown.push(self.unknown_id(part)),
                }
            }
        }
        Parsed {
            gfp,
            unknown: unknown.into_boxed_slice(),
        }
    }

    fn unknown_id(&mut self, name: &str) -> u32 {
        if let Some(i) = self.unknown.iter().position(|(n, _)| &**n == name) {
            return i as u32;
        }
        self.unknown.push((name.into(), 0));
        (self.unknown.len() - 1) as u32
    }

    /// Unknown flag names and how many events carried each.
    pub fn unknown_counts(&self) -> impl Iterator<Item = (&str, u64)> {
        self.unknown.iter().map(|(n, c)| (&**n, *c))
    }

    /// Distinct flag strings remembered (bounded by what the trace contains, not its length).
    pub fn distinct_strings(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_and_new_spellings() {
        let mut t = GfpTable::default();
        assert_eq!(
            t.parse("GFP_KERNEL|GFP_ZERO"),
            Gfp::GFP_KERNEL | Gfp::__GFP_ZERO
        );
        assert_eq!(
            t.parse("GFP_KERNEL|__GFP_ZERO"),
            Gfp::GFP_KERNEL | Gfp::__GFP_ZERO
        );
        assert_eq!(
            t.parse("GFP_NOWAIT|__GFP_NOWARN"),
            Gfp::GFP_NOWAIT | Gfp::__GFP_NOWARN
        );
        assert_eq!(t.parse("GFP_NOWARN"), Gfp::__GFP_NOWARN);
        assert_eq!(t.parse("0xcc0"), Gfp::GFP_KERNEL);
        assert_eq!(t.parse("none"), Gfp::empty());
        assert_eq!(
            t.parse("GFP_WAIT|GFP_IO"),
            Gfp::__GFP_RECLAIM | Gfp::__GFP_IO
        );
        assert_eq!(t.unknown_counts().count(), 0);
    }

    #[test]
    fn unknown_names_are_counted_per_event() {
        let mut t = GfpTable::default();
        assert_eq!(t.parse("GFP_KERNEL|__GFP_BOGUS"), Gfp::GFP_KERNEL);
        assert_eq!(t.parse("GFP_KERNEL|__GFP_BOGUS"), Gfp::GFP_KERNEL);
        let counts: Vec<_> = t.unknown_counts().collect();
        assert_eq!(counts, vec![("__GFP_BOGUS", 2)]);
        assert_eq!(t.distinct_strings(), 1);
    }
}
