//! The `key=value` pairs of an event's body, found a word at a time.

/// The field names the events use.
#[derive(Copy, Clone, PartialEq, Eq)]
pub(super) enum Key {
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

pub(super) const KEYS: usize = Key::Other as usize + 1;

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
pub(crate) fn as_text(bytes: &[u8]) -> Option<&str> {
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
pub(super) struct Fields<'a> {
    body: &'a str,
    spans: [(u32, u32); KEYS],
}

/// Marks a field whose value has not started yet (`ptr=` then `(null)`).
pub(super) const NO_VALUE_YET: usize = usize::MAX;

/// A word with every byte `b`.
pub(super) const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// The high bit of each byte of `word` that equals `b`; the lowest one flagged is exact
/// (a borrow can only flag bytes above a true match), which is all a search needs.
#[inline]
pub(super) fn bytes_equal(word: u64, b: u8) -> u64 {
    let x = word ^ splat(b);
    x.wrapping_sub(splat(0x01)) & !x & splat(0x80)
}

/// The first blank (space or tab) at or after `i`, or with `equals` the first blank or
/// `=`; `bytes.len()` if none. Eight bytes at a time (a word of the line, compared with
/// each delimiter at once), then byte by byte.
#[inline]
pub(super) fn find_delimiter(bytes: &[u8], mut i: usize, equals: bool) -> usize {
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
pub(super) fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

impl<'a> Fields<'a> {
    pub(super) fn new(body: &'a str) -> Fields<'a> {
        Fields {
            body,
            spans: [(0, 0); KEYS],
        }
    }

    /// Split the body into fields in one pass over its bytes. Words without `=` continue
    /// the previous value (`ptr=  (null)`, `func+0x1/0x2 [module]`); `key:` followed by a
    /// word is a field too (`va_start: 123`).
    pub(super) fn split(&mut self) -> Result<(), &'static str> {
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

    pub(super) fn get(&self, key: Key) -> Option<&'a str> {
        let (start, end) = self.spans[key as usize];
        (start != end).then(|| &self.body[start as usize..end as usize])
    }

    pub(super) fn need(&self, key: Key) -> Result<&'a str, &'static str> {
        self.get(key).ok_or(key.missing())
    }
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
