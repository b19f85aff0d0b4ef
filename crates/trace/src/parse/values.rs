//! Values in fields (hex, decimal, pointers, PFNs, orders) and the size limits a line's
//! sizes are checked against.

/// [`hex`] for the fast path's tests.
#[cfg(test)]
pub(crate) fn hex_for_tests(text: &str) -> Option<u64> {
    hex(text)
}

/// Hex digits with an optional `0x`.
pub(super) fn hex(text: &str) -> Option<u64> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text)
        .as_bytes();
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut value = 0u64;
    for &b in digits {
        let nibble = HEX_DIGIT[b as usize];
        if nibble == NOT_HEX {
            return None;
        }
        value = value << 4 | nibble as u64;
    }
    Some(value)
}

/// [`HEX_DIGIT`] of a byte that is no hex digit.
pub(crate) const NOT_HEX: u8 = 0xff;

/// The value of each hex digit byte (either case), [`NOT_HEX`] for the others: one table
/// load per digit of the pointers and call sites that fill a trace.
pub(crate) static HEX_DIGIT: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// A `%p` pointer: hex (raw or hashed), `(null)` or all zeroes for NULL.
pub(super) fn pointer(text: &str) -> Result<u64, &'static str> {
    if text.as_bytes().first() == Some(&b'(') && text == "(null)" {
        return Ok(0);
    }
    hex(text).ok_or("a pointer is not hex")
}

/// A decimal number (`%zu`, `%d`).
pub(super) fn decimal(text: &str) -> Result<u64, &'static str> {
    text.parse().map_err(|_| "a size is not a decimal number")
}

/// A number printed as `0x...` (`%#lx`) or in decimal (`%lu`).
pub(super) fn number(text: &str) -> Result<u64, &'static str> {
    if text.starts_with("0x") || text.starts_with("0X") {
        hex(text).ok_or("a 0x number is not hex")
    } else {
        decimal(text)
    }
}

/// `pfn=`: decimal on kernels before 4.x (`%lu`), `0x...` after.
pub(super) fn pfn(text: &str) -> Result<u64, &'static str> {
    number(text).map_err(|_| "pfn= is not a number")
}

/// The largest size a trace line may record: 2^57 bytes, the whole virtual address space
/// of a 64-bit kernel with 5-level paging, which no allocation, even a failed one, can
/// exceed. A larger `bytes_req=`, `bytes_alloc=` or vmap area `size=` (such as a wrapped
/// `-1`) is malformed: counted and reported as such, never summed.
pub const MAX_TRACED_SIZE: u64 = 1 << 57;

/// The largest size of a *successful* slab allocation: below 4 GiB in every Linux
/// configuration (a cache's `object_size` is an `unsigned int`, and the largest
/// `KMALLOC_MAX_SIZE`, `PAGE_SIZE << MAX_ORDER`, is 512 MiB: arm64 with 64 KiB pages).
/// A failed allocation (`ptr=(null)`) may record a larger request: `kvmalloc()` tries
/// `kmalloc()` first whatever the size (`mm/util.c`, Linux 6.6).
pub const MAX_SLAB_OBJECT: u64 = u32::MAX as u64;

/// A slab allocation's sizes checked against [`MAX_TRACED_SIZE`] and, when it succeeded,
/// [`MAX_SLAB_OBJECT`].
pub(crate) fn check_slab_sizes(
    ptr: u64,
    bytes_req: u64,
    bytes_alloc: u64,
) -> Result<(), &'static str> {
    if bytes_req.max(bytes_alloc) > MAX_TRACED_SIZE {
        return Err("a size is larger than any allocation can be (2^57 bytes)");
    }
    if ptr != 0 && bytes_req.max(bytes_alloc) > MAX_SLAB_OBJECT {
        return Err(
            "a slab allocation of 4 GiB or more succeeded (no kernel's slab objects reach that)",
        );
    }
    Ok(())
}

/// A size checked against [`MAX_TRACED_SIZE`].
pub(super) fn traced_size(size: u64) -> Result<u64, &'static str> {
    if size > MAX_TRACED_SIZE {
        return Err("a size is larger than any allocation can be (2^57 bytes)");
    }
    Ok(size)
}

/// `order=`, at most MAX_PAGE_ORDER plus slack for kernels with larger orders.
pub(super) fn order(text: &str) -> Result<u32, &'static str> {
    let o = decimal(text).map_err(|_| "order= is not a number")?;
    if o > 20 {
        return Err("order= is larger than any kernel's");
    }
    Ok(o as u32)
}
