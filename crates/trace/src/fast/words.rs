//! Word-at-a-time byte tricks for the fast path: blanks, hex digits, the `[CPU]` bracket,
//! the pid.

/// A blank: the only delimiters between tokens of a line.
#[inline]
pub(super) fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A word with every byte `b`.
pub(super) const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// The high bit of each byte of `word` that equals `b` (the lowest one flagged is exact).
#[inline]
pub(super) fn bytes_equal(word: u64, b: u8) -> u64 {
    let x = word ^ splat(b);
    x.wrapping_sub(splat(0x01)) & !x & splat(0x80)
}

#[inline]
pub(super) fn load(bytes: &[u8], i: usize) -> Option<u64> {
    let chunk: &[u8; 8] = bytes.get(i..i + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(*chunk))
}

/// The high bit of each byte of `word` that is a hex digit (`0-9`, `a-f`, `A-F`); exact
/// for every byte (no carry crosses a byte).
#[inline]
pub(super) fn hex_digits(word: u64) -> u64 {
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
pub(super) fn nibbles(word: u64) -> u64 {
    (word & splat(0x0f)) + ((word >> 6) & splat(0x01)) * 9
}

/// Eight nibble bytes (the first, most significant, in the lowest byte) as one number.
#[inline]
pub(super) fn pack_nibbles(x: u64) -> u64 {
    let x = ((x << 4) | (x >> 8)) & 0x00ff_00ff_00ff_00ff;
    let x = ((x << 8) | (x >> 16)) & 0x0000_ffff_0000_ffff;
    ((x << 16) | (x >> 32)) & 0xffff_ffff
}

/// The first `[` at or after `i`, `None` if there is none or a byte before it (in the
/// same word, or in an earlier one) is not ASCII.
#[inline]
pub(super) fn find_bracket_after_ascii(bytes: &[u8], mut i: usize) -> Option<usize> {
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
pub(super) fn pid_fast(task: &[u8]) -> Option<u32> {
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
pub(super) fn find_blank(bytes: &[u8], mut i: usize) -> usize {
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
