//! The page allocator's tunables under `/proc/sys/vm` and the transparent-hugepage mode
//! that moves `min_free_kbytes`, as Linux 6.6 has them:
//!
//! * `page_alloc_sysctl_table[]` (`mm/page_alloc.c`): `min_free_kbytes`,
//!   `watermark_boost_factor`, `watermark_scale_factor`, `percpu_pagelist_high_fraction`
//!   and `lowmem_reserve_ratio`, each with its handler, its `extra1`/`extra2` bounds and
//!   what the handler recomputes (`setup_per_zone_wmarks()`, `zone_pcp_update()`,
//!   `setup_per_zone_lowmem_reserve()`);
//! * `calculate_min_free_kbytes()`, `__setup_per_zone_wmarks()`,
//!   `setup_per_zone_lowmem_reserve()`, `calculate_totalreserve_pages()`,
//!   `zone_set_pageset_high_and_batch()` / `zone_highsize()`;
//! * `set_recommended_min_free_kbytes()` (`mm/khugepaged.c`), run when khugepaged starts
//!   (`hugepage_init()` → `start_stop_khugepaged()`), and the
//!   `/sys/kernel/mm/transparent_hugepage/enabled` file (`enabled_show()`,
//!   `mm/huge_memory.c`).
//!
//! Values are parsed as `proc_dointvec_minmax()` parses them (`proc_get_long()`:
//! `strtoul` with base 0, so `0x` is hex and a leading `0` octal; an optional `-`; an
//! `int`), and refused with the kernel's `-EINVAL` where it refuses them.

use core::fmt::{self, Write};

use crate::addr::{int_sqrt, PAGE_SHIFT, PAGE_SIZE};
use crate::page_alloc::pcp::{zone_batchsize, zone_highsize};
use crate::page_alloc::{Watermark, Zone, ZoneType, MAX_NR_ZONES, MIGRATE_PCPTYPES};
use crate::platform::Platform;
use crate::Mm;

/// `MIN_PERCPU_PAGELIST_HIGH_FRACTION` (`mm/page_alloc.c`, 6.6): a non-zero
/// `percpu_pagelist_high_fraction` below it is refused.
pub const MIN_PERCPU_PAGELIST_HIGH_FRACTION: i32 = 8;

/// `SYSCTL_THREE_THOUSAND`: `watermark_scale_factor`'s `extra2` (6.6).
pub const MAX_WATERMARK_SCALE_FACTOR: i32 = 3000;

/// The transparent-hugepage mode (`transparent_hugepage=` on the command line, or
/// `/sys/kernel/mm/transparent_hugepage/enabled`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Thp {
    /// `TRANSPARENT_HUGEPAGE_FLAG`: every anonymous fault may get a huge page.
    Always,
    /// `TRANSPARENT_HUGEPAGE_REQ_MADV_FLAG`: only `MADV_HUGEPAGE` regions.
    Madvise,
    /// Neither flag: khugepaged is stopped.
    #[default]
    Never,
}

impl Thp {
    /// Parse `always`, `madvise` or `never`.
    pub fn from_name(s: &str) -> Option<Thp> {
        match s {
            "always" => Some(Thp::Always),
            "madvise" => Some(Thp::Madvise),
            "never" => Some(Thp::Never),
            _ => None,
        }
    }

    /// `hugepage_flags_enabled()`: does khugepaged run?
    pub const fn enabled(self) -> bool {
        !matches!(self, Thp::Never)
    }

    /// What `enabled_show()` prints (without the newline).
    pub const fn enabled_show(self) -> &'static str {
        match self {
            Thp::Always => "[always] madvise never",
            Thp::Madvise => "always [madvise] never",
            Thp::Never => "always madvise [never]",
        }
    }
}

/// One tunable of `page_alloc_sysctl_table[]`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Sysctl {
    /// `vm.min_free_kbytes` (`min_free_kbytes_sysctl_handler`, `extra1 = SYSCTL_ZERO`).
    MinFreeKbytes,
    /// `vm.watermark_boost_factor` (`proc_dointvec_minmax`, `extra1 = SYSCTL_ZERO`).
    WatermarkBoostFactor,
    /// `vm.watermark_scale_factor` (`watermark_scale_factor_sysctl_handler`,
    /// `extra1 = SYSCTL_ONE`, `extra2 = SYSCTL_THREE_THOUSAND`).
    WatermarkScaleFactor,
    /// `vm.percpu_pagelist_high_fraction` (`percpu_pagelist_high_fraction_sysctl_handler`,
    /// `extra1 = SYSCTL_ZERO`, and 0 or at least [`MIN_PERCPU_PAGELIST_HIGH_FRACTION`]).
    PercpuPagelistHighFraction,
    /// `vm.lowmem_reserve_ratio` (`lowmem_reserve_ratio_sysctl_handler`: one `int` per
    /// zone, no bounds; below 1 means 0).
    LowmemReserveRatio,
}

impl Sysctl {
    /// Every tunable, in the table's order.
    pub const ALL: [Sysctl; 5] = [
        Sysctl::MinFreeKbytes,
        Sysctl::WatermarkBoostFactor,
        Sysctl::WatermarkScaleFactor,
        Sysctl::PercpuPagelistHighFraction,
        Sysctl::LowmemReserveRatio,
    ];

    /// The file name under `/proc/sys/vm` (`procname`).
    pub const fn procname(self) -> &'static str {
        match self {
            Sysctl::MinFreeKbytes => "min_free_kbytes",
            Sysctl::WatermarkBoostFactor => "watermark_boost_factor",
            Sysctl::WatermarkScaleFactor => "watermark_scale_factor",
            Sysctl::PercpuPagelistHighFraction => "percpu_pagelist_high_fraction",
            Sysctl::LowmemReserveRatio => "lowmem_reserve_ratio",
        }
    }

    /// The tunable named `key`: `vm.NAME` (as `sysctl` names it), `vm/NAME`, or the path
    /// `/proc/sys/vm/NAME`.
    pub fn from_key(key: &str) -> Option<Sysctl> {
        let name = key
            .strip_prefix("/proc/sys/vm/")
            .or_else(|| key.strip_prefix("vm."))
            .or_else(|| key.strip_prefix("vm/"))?;
        Sysctl::from_procname(name)
    }

    /// The tunable whose file under `/proc/sys/vm` is `name`.
    pub fn from_procname(name: &str) -> Option<Sysctl> {
        Sysctl::ALL.into_iter().find(|s| s.procname() == name)
    }

    /// The `extra1`/`extra2` bounds (`None`: no bound, only the `int` range).
    pub const fn bounds(self) -> (Option<i32>, Option<i32>) {
        match self {
            Sysctl::MinFreeKbytes
            | Sysctl::WatermarkBoostFactor
            | Sysctl::PercpuPagelistHighFraction => (Some(0), None),
            Sysctl::WatermarkScaleFactor => (Some(1), Some(MAX_WATERMARK_SCALE_FACTOR)),
            Sysctl::LowmemReserveRatio => (None, None),
        }
    }
}

/// Why a write was refused: every case is the kernel's `-EINVAL` ("Invalid argument"),
/// with what was wrong.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SysctlError {
    /// No value, or something that is not an integer (`proc_get_long()` fails).
    NotANumber,
    /// Outside the `int` range (`proc_int_conv()`) or the table's `extra1`/`extra2`
    /// (`do_proc_dointvec_minmax_conv()`).
    OutOfRange {
        /// The lowest accepted value.
        min: i64,
        /// The highest accepted value.
        max: i64,
    },
    /// More values than the tunable holds.
    TooManyValues,
    /// `percpu_pagelist_high_fraction` between 1 and 7 ("Sanity checking to avoid pcp
    /// imbalance").
    FractionTooSmall,
}

impl fmt::Display for SysctlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Invalid argument (")?;
        match self {
            SysctlError::NotANumber => f.write_str("not an integer")?,
            SysctlError::OutOfRange { min, max } => write!(f, "outside {min} ..= {max}")?,
            SysctlError::TooManyValues => f.write_str("too many values")?,
            SysctlError::FractionTooSmall => write!(
                f,
                "must be 0 or at least {MIN_PERCPU_PAGELIST_HIGH_FRACTION}"
            )?,
        }
        f.write_char(')')
    }
}

impl core::error::Error for SysctlError {}

/// The tunables' values (the kernel's globals in `mm/page_alloc.c`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmTunables {
    /// `min_free_kbytes`.
    pub min_free_kbytes: i32,
    /// `user_min_free_kbytes`: the last value written through the sysctl, -1 if none.
    pub user_min_free_kbytes: i32,
    /// `watermark_boost_factor` (default 15000: boost up to 150% of the high watermark).
    pub watermark_boost_factor: i32,
    /// `watermark_scale_factor` (default 10: the low/high gaps are 0.1% of the zone).
    pub watermark_scale_factor: i32,
    /// `percpu_pagelist_high_fraction` (default 0: pcp high from the low watermark).
    pub percpu_pagelist_high_fraction: i32,
    /// `sysctl_lowmem_reserve_ratio[]`, by zone index.
    pub lowmem_reserve_ratio: [i32; MAX_NR_ZONES],
}

impl VmTunables {
    /// The kernel's defaults for the zone types of a profile (`sysctl_lowmem_reserve_ratio`:
    /// 256 for DMA and DMA32, 32 for Normal, 0 for HighMem and Movable).
    pub fn defaults(zone_types: &[ZoneType; MAX_NR_ZONES]) -> VmTunables {
        VmTunables {
            min_free_kbytes: 1024,
            user_min_free_kbytes: -1,
            watermark_boost_factor: 15000,
            watermark_scale_factor: 10,
            percpu_pagelist_high_fraction: 0,
            lowmem_reserve_ratio: zone_types.map(|zt| match zt {
                ZoneType::Dma | ZoneType::Dma32 => 256,
                ZoneType::Normal => 32,
                ZoneType::HighMem | ZoneType::Movable => 0,
            }),
        }
    }
}

/// `proc_get_long()` + `proc_int_conv()`: one `int` in C's `strtoul(…, 0)` syntax.
fn parse_int(word: &str) -> Result<i32, SysctlError> {
    let (neg, digits) = match word.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, word),
    };
    let (radix, body) = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, hex)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return Err(SysctlError::NotANumber);
    }
    let int_range = SysctlError::OutOfRange {
        min: i32::MIN as i64,
        max: i32::MAX as i64,
    };
    let magnitude = u64::from_str_radix(body, radix).map_err(|_| int_range)?;
    let value = if neg {
        -(magnitude as i128)
    } else {
        magnitude as i128
    };
    i32::try_from(value).map_err(|_| int_range)
}

/// `do_proc_dointvec_minmax_conv()`: `value` within the table's bounds?
fn check_bounds(s: Sysctl, value: i32) -> Result<i32, SysctlError> {
    let (min, max) = s.bounds();
    let lo = min.unwrap_or(i32::MIN);
    let hi = max.unwrap_or(i32::MAX);
    if value < lo || value > hi {
        return Err(SysctlError::OutOfRange {
            min: lo as i64,
            max: hi as i64,
        });
    }
    Ok(value)
}

/// Parse the single `int` of a scalar tunable.
fn parse_scalar(s: Sysctl, value: &str) -> Result<i32, SysctlError> {
    let mut words = value.split_whitespace();
    let first = words.next().ok_or(SysctlError::NotANumber)?;
    if words.next().is_some() {
        return Err(SysctlError::TooManyValues);
    }
    check_bounds(s, parse_int(first)?)
}

impl<P: Platform> Mm<P> {
    /// The `/proc/sys/vm` tunables in force.
    pub fn vm_tunables(&self) -> &VmTunables {
        &self.page_alloc.vm
    }

    /// The transparent-hugepage mode booted.
    pub fn thp(&self) -> Thp {
        self.page_alloc.thp
    }

    /// Read a tunable as `proc_dointvec()` prints it: the values separated by tabs
    /// (no newline).
    pub fn sysctl_read(&self, s: Sysctl, w: &mut dyn Write) -> fmt::Result {
        let v = &self.page_alloc.vm;
        let one = match s {
            Sysctl::MinFreeKbytes => v.min_free_kbytes,
            Sysctl::WatermarkBoostFactor => v.watermark_boost_factor,
            Sysctl::WatermarkScaleFactor => v.watermark_scale_factor,
            Sysctl::PercpuPagelistHighFraction => v.percpu_pagelist_high_fraction,
            Sysctl::LowmemReserveRatio => {
                for (i, r) in v.lowmem_reserve_ratio.iter().enumerate() {
                    if i > 0 {
                        w.write_char('\t')?;
                    }
                    write!(w, "{r}")?;
                }
                return Ok(());
            }
        };
        write!(w, "{one}")
    }

    /// Write a tunable through its handler, recomputing what the kernel recomputes. A
    /// refused value changes nothing.
    pub fn sysctl_write(&mut self, s: Sysctl, value: &str) -> Result<(), SysctlError> {
        match s {
            Sysctl::MinFreeKbytes => {
                // min_free_kbytes_sysctl_handler()
                let v = parse_scalar(s, value)?;
                self.page_alloc.vm.min_free_kbytes = v;
                self.page_alloc.vm.user_min_free_kbytes = v;
                self.setup_per_zone_wmarks();
            }
            Sysctl::WatermarkBoostFactor => {
                // proc_dointvec_minmax() alone: boost_watermark() reads it next time.
                self.page_alloc.vm.watermark_boost_factor = parse_scalar(s, value)?;
            }
            Sysctl::WatermarkScaleFactor => {
                // watermark_scale_factor_sysctl_handler()
                self.page_alloc.vm.watermark_scale_factor = parse_scalar(s, value)?;
                self.setup_per_zone_wmarks();
            }
            Sysctl::PercpuPagelistHighFraction => {
                // percpu_pagelist_high_fraction_sysctl_handler()
                let v = parse_scalar(s, value)?;
                if v != 0 && v < MIN_PERCPU_PAGELIST_HIGH_FRACTION {
                    return Err(SysctlError::FractionTooSmall);
                }
                if v != self.page_alloc.vm.percpu_pagelist_high_fraction {
                    self.page_alloc.vm.percpu_pagelist_high_fraction = v;
                    self.zone_pcp_update_all();
                }
            }
            Sysctl::LowmemReserveRatio => {
                // lowmem_reserve_ratio_sysctl_handler(): the values given replace the
                // first ratios; any below 1 becomes 0.
                let mut ratios = self.page_alloc.vm.lowmem_reserve_ratio;
                let mut n = 0;
                for word in value.split_whitespace() {
                    let slot = ratios.get_mut(n).ok_or(SysctlError::TooManyValues)?;
                    *slot = parse_int(word)?;
                    n += 1;
                }
                if n == 0 {
                    return Err(SysctlError::NotANumber);
                }
                for r in ratios.iter_mut() {
                    if *r < 1 {
                        *r = 0;
                    }
                }
                self.page_alloc.vm.lowmem_reserve_ratio = ratios;
                self.setup_per_zone_lowmem_reserve();
            }
        }
        Ok(())
    }

    /// `nr_free_buffer_pages()` = `nr_free_zone_pages(gfp_zone(GFP_USER))`: the managed
    /// pages above the high watermark of each zone up to Normal.
    pub fn nr_free_buffer_pages(&self) -> u64 {
        let normal_idx = self.zone_index(ZoneType::Normal);
        self.page_alloc.zones[..=normal_idx]
            .iter()
            .map(|z| z.managed_pages.saturating_sub(z.wmark(Watermark::High)))
            .sum()
    }

    /// `calculate_min_free_kbytes()`: `sqrt(lowmem_kbytes * 16)`, clamped to 128 ..= 262144,
    /// unless the user's value is at least as large.
    pub(crate) fn calculate_min_free_kbytes(&mut self) {
        let lowmem_kbytes = self.nr_free_buffer_pages() * (PAGE_SIZE as u64 >> 10);
        let new = int_sqrt(lowmem_kbytes * 16).min(i32::MAX as u64) as i32;
        if new > self.page_alloc.vm.user_min_free_kbytes {
            self.page_alloc.vm.min_free_kbytes = new.clamp(128, 262_144);
        } else {
            self.printk(format_args!(
                "min_free_kbytes is not updated to {new} because user defined value {} is preferred",
                self.page_alloc.vm.user_min_free_kbytes
            ));
        }
    }

    /// `set_recommended_min_free_kbytes()` (`mm/khugepaged.c`, 6.6), as khugepaged's start
    /// runs it: with THP enabled, two free pageblocks per populated zone up to Normal plus
    /// `MIGRATE_PCPTYPES²` pageblocks per zone for fallbacks, at most 5% of lowmem
    /// (`nr_free_buffer_pages() / 20`), and only ever raising `min_free_kbytes`; with THP
    /// off, `calculate_min_free_kbytes()` again. Then `setup_per_zone_wmarks()`.
    pub(crate) fn set_recommended_min_free_kbytes(&mut self) {
        if self.page_alloc.thp.enabled() {
            let normal_idx = self.zone_index(ZoneType::Normal);
            let nr_zones = self
                .zones()
                .iter()
                .filter(|z| z.is_populated() && z.idx <= normal_idx)
                .count() as u64;
            let pageblock_nr_pages = self.pageblock_nr_pages();
            let mut recommended_min = pageblock_nr_pages * nr_zones * 2;
            recommended_min +=
                pageblock_nr_pages * nr_zones * (MIGRATE_PCPTYPES * MIGRATE_PCPTYPES) as u64;
            recommended_min = recommended_min.min(self.nr_free_buffer_pages() / 20);
            recommended_min <<= PAGE_SHIFT - 10;
            if recommended_min > self.page_alloc.vm.min_free_kbytes as u64 {
                if self.page_alloc.vm.user_min_free_kbytes >= 0 {
                    self.printk(format_args!(
                        "khugepaged: raising min_free_kbytes from {} to {recommended_min} to help transparent hugepage allocations",
                        self.page_alloc.vm.min_free_kbytes
                    ));
                }
                self.page_alloc.vm.min_free_kbytes = recommended_min.min(i32::MAX as u64) as i32;
            }
        } else {
            self.calculate_min_free_kbytes();
        }
        self.setup_per_zone_wmarks();
    }

    /// `setup_per_zone_wmarks()`: `__setup_per_zone_wmarks()`, then every zone's per-CPU
    /// high and batch (`zone_pcp_update()`), since they follow the low watermark.
    pub(crate) fn setup_per_zone_wmarks(&mut self) {
        self.setup_per_zone_wmarks_only();
        self.page_alloc.totalreserve_pages = self.calculate_totalreserve_pages();
        self.zone_pcp_update_all();
    }

    /// `__setup_per_zone_wmarks()`: `min_free_kbytes` shared among the lowmem zones by
    /// size (HighMem and Movable get a small fixed min); the low and high marks above min
    /// by a quarter of the share or `watermark_scale_factor`/10000 of the zone, whichever
    /// is more. Clears every boost.
    fn setup_per_zone_wmarks_only(&mut self) {
        let pages_min = self.page_alloc.vm.min_free_kbytes.max(0) as u64 >> (PAGE_SHIFT - 10);
        let scale_factor = self.page_alloc.vm.watermark_scale_factor.max(0) as u64;
        let lowmem_pages: u64 = self
            .zones()
            .iter()
            .filter(|z| !is_high_or_movable(z))
            .map(|z| z.managed_pages)
            .sum();
        for zone in self.page_alloc.zones.iter_mut() {
            let managed = zone.managed_pages;
            let share = (pages_min * managed).checked_div(lowmem_pages).unwrap_or(0);
            let min = if is_high_or_movable(zone) {
                (managed / 1024).clamp(crate::vmscan::SWAP_CLUSTER_MAX, 128)
            } else {
                share
            };
            let gap = (share >> 2).max(mult_frac(managed, scale_factor, 10_000));
            zone.watermark_boost
                .store(0, core::sync::atomic::Ordering::Relaxed);
            zone.watermark[Watermark::Min as usize] = min;
            zone.watermark[Watermark::Low as usize] = min + gap;
            zone.watermark[Watermark::High as usize] = min + 2 * gap;
        }
    }

    /// `setup_per_zone_lowmem_reserve()`: a lower zone keeps back 1/ratio of the managed
    /// pages of the zones above it from requests that could have used those zones; then
    /// `calculate_totalreserve_pages()`.
    pub(crate) fn setup_per_zone_lowmem_reserve(&mut self) {
        for i in 0..MAX_NR_ZONES - 1 {
            let ratio = self.page_alloc.vm.lowmem_reserve_ratio[i].max(0) as u64;
            let clear = ratio == 0 || self.page_alloc.zones[i].managed_pages == 0;
            let mut upper = 0;
            for j in i + 1..MAX_NR_ZONES {
                upper += self.page_alloc.zones[j].managed_pages;
                self.page_alloc.zones[i].lowmem_reserve[j] = if clear { 0 } else { upper / ratio };
            }
        }
        self.page_alloc.totalreserve_pages = self.calculate_totalreserve_pages();
    }

    /// `calculate_totalreserve_pages()`: per zone, its largest lowmem reserve plus its high
    /// watermark, at most its managed pages.
    pub(crate) fn calculate_totalreserve_pages(&self) -> u64 {
        self.page_alloc
            .zones
            .iter()
            .map(|z| {
                let max_reserve = z.lowmem_reserve[z.idx..].iter().copied().max().unwrap_or(0);
                (max_reserve + z.wmark(Watermark::High)).min(z.managed_pages)
            })
            .sum()
    }

    /// `zone_pcp_update(zone, 0)` for every zone: `zone_set_pageset_high_and_batch()`, the
    /// batch from the zone's size and `high` from its low watermark (or, with
    /// `percpu_pagelist_high_fraction`, from that fraction of its managed pages) split
    /// over the CPUs; stored into every CPU's `per_cpu_pages`.
    pub(crate) fn zone_pcp_update_all(&mut self) {
        let nr_cpus = self.platform.nr_cpus();
        let fraction = self.page_alloc.vm.percpu_pagelist_high_fraction.max(0) as u64;
        for zone in self.page_alloc.zones.iter_mut() {
            let batch = zone_batchsize(zone.managed_pages).max(1);
            // 0: the low watermark ("so that if they are full then background reclaim
            // will not be started prematurely"); else that fraction of the zone.
            let total_pages = zone
                .managed_pages
                .checked_div(fraction)
                .unwrap_or_else(|| zone.wmark(Watermark::Low));
            zone.pcp_batch = batch;
            zone.pcp_high = zone_highsize(total_pages, batch, nr_cpus);
        }
        for cpu in 0..nr_cpus {
            for zone in &self.page_alloc.zones {
                let pcp = &self.percpu.get(cpu).pcp[zone.idx];
                pcp.batch
                    .store(zone.pcp_batch, core::sync::atomic::Ordering::Relaxed);
                pcp.high
                    .store(zone.pcp_high, core::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// `is_highmem(zone) || zone_idx(zone) == ZONE_MOVABLE`.
fn is_high_or_movable(z: &Zone) -> bool {
    matches!(z.zone_type, ZoneType::HighMem | ZoneType::Movable)
}

/// `mult_frac(x, n, d)`: `x * n / d` without overflowing, as the kernel macro computes it.
pub const fn mult_frac(x: u64, n: u64, d: u64) -> u64 {
    let q = x / d;
    let r = x % d;
    q * n + r * n / d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_proc_get_long() {
        assert_eq!(parse_int("65536"), Ok(65536));
        assert_eq!(parse_int("0x10"), Ok(16));
        assert_eq!(parse_int("010"), Ok(8));
        assert_eq!(parse_int("-5"), Ok(-5));
        assert_eq!(parse_int("0"), Ok(0));
        assert_eq!(parse_int("12a"), Err(SysctlError::NotANumber));
        assert_eq!(parse_int(""), Err(SysctlError::NotANumber));
        assert_eq!(parse_int("08"), Err(SysctlError::NotANumber));
        assert!(matches!(
            parse_int("2147483648"),
            Err(SysctlError::OutOfRange { .. })
        ));
        assert_eq!(parse_int("-2147483648"), Ok(i32::MIN));
    }

    #[test]
    fn scalar_bounds_are_the_tables() {
        let wsf = Sysctl::WatermarkScaleFactor;
        assert_eq!(parse_scalar(wsf, "3000"), Ok(3000));
        assert!(parse_scalar(wsf, "3001").is_err());
        assert!(parse_scalar(wsf, "0").is_err());
        assert!(parse_scalar(Sysctl::MinFreeKbytes, "-1").is_err());
        assert_eq!(
            parse_scalar(Sysctl::MinFreeKbytes, "1 2"),
            Err(SysctlError::TooManyValues)
        );
    }

    #[test]
    fn mult_frac_is_exact_for_the_scale_factor() {
        assert_eq!(mult_frac(1_000_000, 10, 10_000), 1000);
        assert_eq!(mult_frac(9_999, 10, 10_000), 9);
        assert_eq!(mult_frac(u64::MAX / 2, 10, 10_000), (u64::MAX / 2) / 1000);
    }

    #[test]
    fn keys_in_every_spelling() {
        assert_eq!(
            Sysctl::from_key("vm.min_free_kbytes"),
            Some(Sysctl::MinFreeKbytes)
        );
        assert_eq!(
            Sysctl::from_key("/proc/sys/vm/lowmem_reserve_ratio"),
            Some(Sysctl::LowmemReserveRatio)
        );
        assert_eq!(Sysctl::from_key("vm.swappiness"), None);
        assert_eq!(Sysctl::from_key("min_free_kbytes"), None);
    }
}
