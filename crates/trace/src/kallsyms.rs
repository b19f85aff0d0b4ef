//! `--kallsyms FILE`: a `/proc/kallsyms` or `System.map`, to name the raw call-site
//! addresses of older traces (`call_site=c104de4f`) as `function+0xoff`, the form the
//! kernel's `%pS` prints (lib/vsprintf.c, `symbol_string` → `sprint_symbol_no_offset`'s
//! `name+0xoff`, Linux 6.6).
//!
//! Each line is `ADDRESS TYPE NAME` with an optional `[module]` (kallsyms) after it. The
//! symbols are sorted once; an address resolves by binary search to the symbol at or
//! below it.

use std::fmt;

/// One malformed line of a symbol file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KallsymsError {
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for KallsymsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "line {}: {}", self.line, self.reason)
        }
    }
}

impl std::error::Error for KallsymsError {}

/// Symbols sorted by address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kallsyms {
    /// (address, name), ascending by address.
    symbols: Vec<(u64, Box<str>)>,
}

impl Kallsyms {
    /// Parse the text of a `/proc/kallsyms` or `System.map`.
    pub fn parse(text: &str) -> Result<Kallsyms, KallsymsError> {
        let mut symbols: Vec<(u64, Box<str>)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let err = |reason| KallsymsError {
                line: i + 1,
                reason,
            };
            let mut words = line.split_ascii_whitespace();
            let addr = words.next().ok_or(err("no address"))?;
            let kind = words
                .next()
                .ok_or(err("no symbol type after the address"))?;
            let name = words.next().ok_or(err("no symbol name after the type"))?;
            if addr.len() > 16 || !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err("the address is not 1 to 16 hex digits"));
            }
            let addr = u64::from_str_radix(addr, 16).map_err(|_| err("bad address"))?;
            if kind.len() != 1 || !kind.bytes().all(|b| b.is_ascii_alphabetic() || b == b'?') {
                return Err(err("the symbol type is not one letter"));
            }
            match words.next() {
                None => {}
                Some(m) if m.starts_with('[') && m.ends_with(']') => {}
                Some(_) => return Err(err("text after the name that is not a [module]")),
            }
            symbols.push((addr, name.into()));
        }
        if symbols.is_empty() {
            return Err(KallsymsError {
                line: 0,
                reason: "no symbols in the file",
            });
        }
        if symbols.iter().all(|(a, _)| *a == 0) {
            return Err(KallsymsError {
                line: 0,
                reason:
                    "every address is 0 (kptr_restrict hides them: read /proc/kallsyms as root)",
            });
        }
        symbols.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        Ok(Kallsyms { symbols })
    }

    /// Symbols held.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// No symbols (never, for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// `function+0xoff` for `addr`: the symbol at or below it (the first of several at
    /// one address), or `None` below the first symbol or at address 0.
    pub fn resolve(&self, addr: u64) -> Option<String> {
        if addr == 0 {
            return None;
        }
        // The last symbol whose address is at or below `addr`.
        let after = self.symbols.partition_point(|(a, _)| *a <= addr);
        let (start, _) = self.symbols.get(after.checked_sub(1)?)?;
        let first = self.symbols.partition_point(|(a, _)| a < start);
        let (start, name) = &self.symbols[first];
        Some(format!("{name}+{:#x}", addr - start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_to_the_symbol_at_or_below() {
        let k = Kallsyms::parse(
            "c1000000 T _text\nc104de00 t foo\nc104e000 T bar [mod]\nc104de00 t afoo\n",
        )
        .unwrap();
        assert_eq!(k.resolve(0xc104de4f).as_deref(), Some("afoo+0x4f"));
        assert_eq!(k.resolve(0xc104e000).as_deref(), Some("bar+0x0"));
        assert_eq!(k.resolve(0xbfffffff), None);
    }
}
