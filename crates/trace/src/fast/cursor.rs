//! The cursor the fast path moves along a line, with one scanner per token shape.

use super::words::*;
use crate::event::{EventName, TraceContext};
use crate::parse::{flags, HEX_DIGIT, NOT_HEX, POW10};

/// A position in the line and the scanners that move it. Every scanner returns `None`
/// when the line is not in the expected shape.
pub(super) struct Cursor<'a> {
    pub(super) b: &'a [u8],
    pub(super) i: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    pub(super) fn at_end(&self) -> bool {
        self.i >= self.b.len()
    }

    #[inline]
    pub(super) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    pub(super) fn skip_blanks(&mut self) {
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
    pub(super) fn end_of_value(&mut self) -> Option<()> {
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
    pub(super) fn optional<const N: usize, T>(
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
    pub(super) fn key<const N: usize>(&mut self, key: &[u8; N]) -> bool {
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
    pub(super) fn word(&mut self) -> Option<&'a [u8]> {
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
    pub(super) fn hex(&mut self) -> Option<u64> {
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
    pub(super) fn digits(&self, max: usize) -> Option<(u64, usize)> {
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
    pub(super) fn decimal(&mut self) -> Option<u64> {
        let (value, i) = self.digits(19)?;
        self.i = i;
        self.end_of_value()?;
        Some(value)
    }

    /// `%lu` or `%#lx` (as [`super::parse::number`]).
    #[inline]
    pub(super) fn number(&mut self) -> Option<u64> {
        if self.b.get(self.i) == Some(&b'0') && matches!(self.b.get(self.i + 1), Some(b'x' | b'X'))
        {
            self.hex()
        } else {
            self.decimal()
        }
    }

    /// A `%p` pointer: hex, or `(null)` (which old kernels pad: `ptr=  (null)`).
    #[inline]
    pub(super) fn pointer(&mut self) -> Option<u64> {
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
    pub(super) fn null(&mut self) -> Option<u64> {
        if !self.key(b"(null)") {
            return None;
        }
        self.end_of_value()?;
        Some(0)
    }

    /// `node=`: an `i32` (`-1` is NUMA_NO_NODE).
    #[inline]
    pub(super) fn node(&mut self) -> Option<i32> {
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
    pub(super) fn boolean(&mut self) -> Option<bool> {
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
    pub(super) fn flags(&mut self) -> Option<TraceContext> {
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
    pub(super) fn timestamp(&mut self) -> Option<u64> {
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
    pub(super) fn event_name(&mut self) -> Option<EventName> {
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

    /// `call_site=`: an address, or a symbol (a word that is not hex), its bytes.
    #[inline]
    pub(super) fn call_site(&mut self) -> Option<Site<'a>> {
        let start = self.i;
        if let Some(addr) = self.hex() {
            return Some(Site::Addr(addr));
        }
        self.i = start;
        let word = self.word()?;
        Some(Site::Symbol(word))
    }
}

/// A call site as read, before it is interned.
pub(super) enum Site<'a> {
    Addr(u64),
    Symbol(&'a [u8]),
}
