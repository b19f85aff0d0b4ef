//! The host system calls the platform needs, each in one small function: a memory file
//! for RAM, mappings of it, and a clock. Everything here is `libc` and allocates nothing
//! (a global allocator cannot allocate through itself while it boots).

use core::ffi::c_void;

/// Why the host refused a mapping: which call, and `errno`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HostError {
    /// The call that failed.
    pub call: &'static str,
    /// `errno` after it.
    pub errno: i32,
}

impl core::fmt::Display for HostError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} failed: errno {}", self.call, self.errno)
    }
}

impl std::error::Error for HostError {}

fn last_error(call: &'static str) -> HostError {
    HostError {
        call,
        errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
    }
}

/// A new anonymous memory file of `size` bytes (`memfd_create` + `ftruncate`), its pages
/// allocated by the host only when first touched.
pub fn memory_file(size: u64) -> Result<i32, HostError> {
    // SAFETY: the name is a NUL-terminated literal; the flags are valid.
    let fd = unsafe { libc::memfd_create(c"kmemlab-ram".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(last_error("memfd_create"));
    }
    // SAFETY: `fd` is the file just created; `ftruncate` only sets its length.
    if unsafe { libc::ftruncate(fd, size as libc::off_t) } != 0 {
        let e = last_error("ftruncate");
        close(fd);
        return Err(e);
    }
    Ok(fd)
}

/// Close a file descriptor this module opened.
pub fn close(fd: i32) {
    // SAFETY: closing a descriptor we own has no memory-safety preconditions.
    unsafe { libc::close(fd) };
}

/// Reserve `len` bytes of address space, inaccessible and backed by nothing.
pub fn reserve(len: usize) -> Result<*mut u8, HostError> {
    // SAFETY: an anonymous PROT_NONE mapping with no address hint touches no existing
    // mapping; the result is checked.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(last_error("mmap (reserve)"));
    }
    Ok(p as *mut u8)
}

/// Map `len` bytes of the memory file `fd` from `offset`, readable and writable and
/// shared (every alias of a page sees the same bytes), at `at`, which must lie inside a
/// reservation this module made (`reserve`) and hold nothing the program still uses.
pub fn map_file_at(at: *mut u8, len: usize, fd: i32, offset: u64) -> Result<(), HostError> {
    // SAFETY: MAP_FIXED replaces only `[at, at + len)`, which the caller guarantees is part
    // of a reservation of ours that nothing else uses; the result is checked.
    let p = unsafe {
        libc::mmap(
            at as *mut c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            fd,
            offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(last_error("mmap (file)"));
    }
    Ok(())
}

/// Make `[at, at + len)` of a reservation of ours inaccessible again, dropping whatever
/// file pages were mapped there (the file keeps them).
pub fn unmap_to_reserved(at: *mut u8, len: usize) -> Result<(), HostError> {
    // SAFETY: as `map_file_at`: the range is ours, and the caller no longer uses it.
    let p = unsafe {
        libc::mmap(
            at as *mut c_void,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(last_error("mmap (unmap)"));
    }
    Ok(())
}

/// Give back a whole reservation.
pub fn release(at: *mut u8, len: usize) {
    // SAFETY: the range is a reservation of ours that nothing uses any more.
    unsafe { libc::munmap(at as *mut c_void, len) };
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Write bytes to standard error without buffering or allocating.
pub fn write_stderr(bytes: &[u8]) {
    // SAFETY: `bytes` is a valid slice; a short or failed write only loses the message.
    unsafe { libc::write(2, bytes.as_ptr() as *const c_void, bytes.len()) };
}
