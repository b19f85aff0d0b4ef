//! What `kmemlab` writes: standard output through a handle with every write checked, and
//! addresses in JSON as `"0x…"` strings.
//!
//! A failed write (a full disk, a closed pipe) becomes the error `writing the output:
//! <reason>`, which the binary prints on standard error before it exits with status 2;
//! nothing here panics as `print!` does.
//!
//! JSON numbers above 2^53 do not survive JavaScript or `jq` (both read them as doubles),
//! and a 64-bit kernel's addresses are all above it: so every address (virtual,
//! physical, bus, call site, page-table entry) is a hex string, while counts, sizes and
//! PFNs stay numbers.

use std::io::Write;

/// The error for a failed write to standard output.
pub fn write_error(e: std::io::Error) -> String {
    format!("writing the output: {}", io_reason(&e))
}

/// An I/O error's reason without the ` (os error N)` that Rust appends.
pub fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

/// Write `text` to standard output and flush it.
pub fn print(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(write_error)
}

/// An address as JSON: `"0xffff888001000000"`.
pub fn addr(a: u64) -> serde_json::Value {
    serde_json::Value::String(format!("{a:#x}"))
}

/// An optional address as JSON: a hex string, or `null`.
pub fn opt_addr(a: Option<u64>) -> serde_json::Value {
    a.map_or(serde_json::Value::Null, addr)
}

/// `#[serde(serialize_with = "crate::output::hex")]` for an address field.
pub fn hex<S: serde::Serializer>(a: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{a:#x}"))
}

/// `#[serde(serialize_with = "crate::output::opt_hex")]` for an optional address field.
pub fn opt_hex<S: serde::Serializer>(a: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => hex(a, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_reason_drops_the_os_error_number() {
        let e = std::io::Error::from_raw_os_error(libc_enospc());
        assert_eq!(io_reason(&e), "No space left on device");
        let custom = std::io::Error::other("odd (thing)");
        assert_eq!(io_reason(&custom), "odd (thing)");
    }

    /// ENOSPC on Linux.
    fn libc_enospc() -> i32 {
        28
    }

    #[test]
    fn addresses_are_hex_strings() {
        assert_eq!(addr(0xffff_8880_0100_0000), "0xffff888001000000");
        assert_eq!(opt_addr(None), serde_json::Value::Null);
        assert_eq!(opt_addr(Some(0)), "0x0");
    }
}
