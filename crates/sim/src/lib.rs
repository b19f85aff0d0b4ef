//! kmemlab's simulated machine: RAM (lazily backed, with holes), CPUs with execution
//! contexts, an MMU (a page walker over the kernel's own page tables and per-CPU TLBs, see
//! [`mmu`]), bus-mastering DMA devices ([`device`]), a console, a page cache and kswapd's
//! turn on the CPUs, workloads ([`workload::fragment`]), and the `mm` kernel booted on them.
//!
//! ```
//! use kmemlab_mm::{Context, Gfp};
//! use kmemlab_sim::{Machine, MachineConfig};
//!
//! let machine = Machine::new(MachineConfig::default()).unwrap();
//! let page = machine.run(|mm| mm.alloc_pages(Gfp::GFP_KERNEL, 3).map(|p| mm.page_to_pfn(p)));
//! assert!(page.is_ok());
//! // GFP_KERNEL may sleep, so it is refused in hard-IRQ context...
//! let refused = machine.on_cpu(1, Context::Hardirq, |mm| mm.alloc_pages(Gfp::GFP_KERNEL, 0).is_err());
//! assert_eq!(refused, Ok(true));
//! // ...and the kernel said why.
//! assert!(machine.take_console()[0].starts_with("BUG: sleeping function called from invalid context"));
//! ```
#![warn(missing_docs)]

pub mod cpu;
pub mod device;
pub mod machine;
pub mod mmu;
pub mod pagecache;
pub mod ram;
pub mod workload;

pub use device::{BusError, DmaDevice};
pub use machine::{Machine, MachineConfig, MmRef, SimError, SimPlatform, MAX_CPUS, MIN_RAM};
pub use mmu::{PageFault, TlbFlushStats, TlbOccupancy, TlbProbe, TlbStats, Translation, Walk};
pub use pagecache::{FillReport, PageCache};
pub use ram::Hole;
pub use workload::{fragment, FragmentError, FragmentPattern, FragmentReport, Fragmented};

/// Parse a size with an optional K/M/G/T suffix (powers of 1024): `4096`, `64K`, `1G`.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    // "2Gi" means 2G; the "i" only counts after a unit letter.
    let text = match text.strip_suffix(['i', 'I']) {
        Some(rest) if rest.ends_with(['k', 'K', 'm', 'M', 'g', 'G', 't', 'T']) => rest,
        _ => text,
    };
    let (digits, shift) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 10),
        (i, 'm' | 'M') => (&text[..i], 20),
        (i, 'g' | 'G') => (&text[..i], 30),
        (i, 't' | 'T') => (&text[..i], 40),
        _ => (text, 0),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()?
    } else {
        digits.parse::<u64>().ok()?
    };
    value.checked_mul(1 << shift)
}

/// Format a byte count with the largest exact binary suffix: `1G`, `640K`, `12345`.
pub fn format_size(bytes: u64) -> String {
    for (shift, suffix) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_format() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64K"), Some(65536));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("2GiB"), None);
        assert_eq!(parse_size("2Gi"), Some(2 << 30));
        assert_eq!(parse_size("0x1000"), Some(4096));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999999999T"), None);
        assert_eq!(format_size(1 << 30), "1G");
        assert_eq!(format_size(640 << 10), "640K");
        assert_eq!(format_size(12345), "12345");
    }
}
