//! Get-free-page flags (`include/linux/gfp_types.h`, `include/linux/gfp.h`), with the bit
//! values of Linux 6.6, so that `mode:0xcc0(GFP_KERNEL)` reads exactly as the kernel prints
//! it.

use core::fmt;

use crate::page_alloc::{MigrateType, ZoneType};

bitflags::bitflags! {
    /// A set of GFP flags. The named sets (`GFP_KERNEL`, ...) are associated constants.
    #[derive(Copy, Clone, PartialEq, Eq, Hash, Default)]
    pub struct Gfp: u32 {
        /// Allocate from ZONE_DMA (below 16 MiB).
        const __GFP_DMA = 0x01;
        /// Allow ZONE_HIGHMEM (i386 memory above 896 MiB, not permanently mapped).
        const __GFP_HIGHMEM = 0x02;
        /// Allocate from ZONE_DMA32 (below 4 GiB).
        const __GFP_DMA32 = 0x04;
        /// The page can be moved by compaction or reclaimed (migrate type Movable).
        const __GFP_MOVABLE = 0x08;
        /// The page holds reclaimable slab objects (migrate type Reclaimable).
        const __GFP_RECLAIMABLE = 0x10;
        /// High priority: may use part of the reserves below the min watermark.
        const __GFP_HIGH = 0x20;
        /// May start physical I/O.
        const __GFP_IO = 0x40;
        /// May call into the filesystem layer.
        const __GFP_FS = 0x80;
        /// Return zeroed memory.
        const __GFP_ZERO = 0x100;
        /// May enter direct reclaim, and so may sleep.
        const __GFP_DIRECT_RECLAIM = 0x400;
        /// May wake kswapd when below the low watermark.
        const __GFP_KSWAPD_RECLAIM = 0x800;
        /// The caller intends to dirty the page.
        const __GFP_WRITE = 0x1000;
        /// Do not print the allocation-failure warning.
        const __GFP_NOWARN = 0x2000;
        /// Retry reclaim harder, but fail rather than invoke the OOM killer.
        const __GFP_RETRY_MAYFAIL = 0x4000;
        /// Never fail: retry for ever (here: until retrying cannot help).
        const __GFP_NOFAIL = 0x8000;
        /// Fail quickly: one light round of reclaim at most.
        const __GFP_NORETRY = 0x10000;
        /// Access to all reserves (memory-freeing paths only).
        const __GFP_MEMALLOC = 0x20000;
        /// Build a compound page (head + tails) from a high-order block.
        const __GFP_COMP = 0x40000;
        /// Never use the emergency reserves.
        const __GFP_NOMEMALLOC = 0x80000;
        /// Enforce the cpuset memory policy.
        const __GFP_HARDWALL = 0x100000;
        /// No fallback to other nodes.
        const __GFP_THISNODE = 0x200000;
        /// Charge the allocation to the memory cgroup.
        const __GFP_ACCOUNT = 0x400000;
        /// Zero memory tags along with the data (arm64 MTE).
        const __GFP_ZEROTAGS = 0x800000;

        /// Both reclaim modes.
        const __GFP_RECLAIM = Self::__GFP_DIRECT_RECLAIM.bits() | Self::__GFP_KSWAPD_RECLAIM.bits();
        /// Interrupt handlers and other non-sleeping contexts: may use reserves, never sleeps.
        const GFP_ATOMIC = Self::__GFP_HIGH.bits() | Self::__GFP_KSWAPD_RECLAIM.bits();
        /// Ordinary kernel allocations: may sleep and reclaim.
        const GFP_KERNEL = Self::__GFP_RECLAIM.bits() | Self::__GFP_IO.bits() | Self::__GFP_FS.bits();
        /// GFP_KERNEL charged to the memory cgroup.
        const GFP_KERNEL_ACCOUNT = Self::GFP_KERNEL.bits() | Self::__GFP_ACCOUNT.bits();
        /// Never sleeps, and gets no access to the reserves.
        const GFP_NOWAIT = Self::__GFP_KSWAPD_RECLAIM.bits();
        /// May reclaim but must not start I/O.
        const GFP_NOIO = Self::__GFP_RECLAIM.bits();
        /// May reclaim and do I/O but not call the filesystem.
        const GFP_NOFS = Self::__GFP_RECLAIM.bits() | Self::__GFP_IO.bits();
        /// User-space pages that the kernel also touches.
        const GFP_USER = Self::__GFP_RECLAIM.bits() | Self::__GFP_IO.bits() | Self::__GFP_FS.bits() | Self::__GFP_HARDWALL.bits();
        /// ZONE_DMA (a named set in the kernel too).
        const GFP_DMA = Self::__GFP_DMA.bits();
        /// ZONE_DMA32.
        const GFP_DMA32 = Self::__GFP_DMA32.bits();
        /// User pages that may live in HighMem.
        const GFP_HIGHUSER = Self::GFP_USER.bits() | Self::__GFP_HIGHMEM.bits();
        /// User pages that may live in HighMem and may be migrated.
        const GFP_HIGHUSER_MOVABLE = Self::GFP_HIGHUSER.bits() | Self::__GFP_MOVABLE.bits();
        /// Transparent huge pages, no direct reclaim.
        const GFP_TRANSHUGE_LIGHT = (Self::GFP_HIGHUSER_MOVABLE.bits() | Self::__GFP_COMP.bits()
            | Self::__GFP_NOMEMALLOC.bits() | Self::__GFP_NOWARN.bits()) & !Self::__GFP_RECLAIM.bits();
        /// Transparent huge pages with direct reclaim.
        const GFP_TRANSHUGE = Self::GFP_TRANSHUGE_LIGHT.bits() | Self::__GFP_DIRECT_RECLAIM.bits();
    }
}

/// The zone-modifier bits (`GFP_ZONEMASK`).
const GFP_ZONEMASK: u32 = 0x0f;

/// `GFP_ZONE_TABLE` (`include/linux/gfp_types.h`/`gfp.h`, 6.6), indexed by the zone bits
/// (`__GFP_DMA` 0x1, `__GFP_HIGHMEM` 0x2, `__GFP_DMA32` 0x4, `__GFP_MOVABLE` 0x8): the
/// zone, or `None` for the combinations of `GFP_ZONE_BAD`.
const GFP_ZONE_TABLE: [Option<ZoneType>; 16] = {
    use ZoneType::*;
    let mut table = [None; 16];
    table[0] = Some(Normal);
    table[0x1] = Some(Dma);
    table[0x2] = Some(HighMem);
    table[0x4] = Some(Dma32);
    table[0x8] = Some(Normal);
    table[0x8 | 0x1] = Some(Dma);
    table[0x8 | 0x2] = Some(Movable);
    table[0x8 | 0x4] = Some(Dma32);
    table
};

/// The names `%pGg` prints, in the kernel's order (`__def_gfpflag_names` in
/// `include/trace/events/mmflags.h`): composite sets first, so that 0xcc0 prints as
/// `GFP_KERNEL` rather than as its parts.
pub const GFP_NAMES: &[(Gfp, &str)] = &[
    (Gfp::GFP_TRANSHUGE, "GFP_TRANSHUGE"),
    (Gfp::GFP_TRANSHUGE_LIGHT, "GFP_TRANSHUGE_LIGHT"),
    (Gfp::GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER_MOVABLE"),
    (Gfp::GFP_HIGHUSER, "GFP_HIGHUSER"),
    (Gfp::GFP_USER, "GFP_USER"),
    (Gfp::GFP_KERNEL_ACCOUNT, "GFP_KERNEL_ACCOUNT"),
    (Gfp::GFP_KERNEL, "GFP_KERNEL"),
    (Gfp::GFP_NOFS, "GFP_NOFS"),
    (Gfp::GFP_ATOMIC, "GFP_ATOMIC"),
    (Gfp::GFP_NOIO, "GFP_NOIO"),
    (Gfp::GFP_NOWAIT, "GFP_NOWAIT"),
    (Gfp::GFP_DMA, "GFP_DMA"),
    (Gfp::__GFP_HIGHMEM, "__GFP_HIGHMEM"),
    (Gfp::GFP_DMA32, "GFP_DMA32"),
    (Gfp::__GFP_HIGH, "__GFP_HIGH"),
    (Gfp::__GFP_IO, "__GFP_IO"),
    (Gfp::__GFP_FS, "__GFP_FS"),
    (Gfp::__GFP_NOWARN, "__GFP_NOWARN"),
    (Gfp::__GFP_RETRY_MAYFAIL, "__GFP_RETRY_MAYFAIL"),
    (Gfp::__GFP_NOFAIL, "__GFP_NOFAIL"),
    (Gfp::__GFP_NORETRY, "__GFP_NORETRY"),
    (Gfp::__GFP_COMP, "__GFP_COMP"),
    (Gfp::__GFP_ZERO, "__GFP_ZERO"),
    (Gfp::__GFP_NOMEMALLOC, "__GFP_NOMEMALLOC"),
    (Gfp::__GFP_MEMALLOC, "__GFP_MEMALLOC"),
    (Gfp::__GFP_HARDWALL, "__GFP_HARDWALL"),
    (Gfp::__GFP_THISNODE, "__GFP_THISNODE"),
    (Gfp::__GFP_RECLAIMABLE, "__GFP_RECLAIMABLE"),
    (Gfp::__GFP_MOVABLE, "__GFP_MOVABLE"),
    (Gfp::__GFP_ACCOUNT, "__GFP_ACCOUNT"),
    (Gfp::__GFP_WRITE, "__GFP_WRITE"),
    (Gfp::__GFP_RECLAIM, "__GFP_RECLAIM"),
    (Gfp::__GFP_DIRECT_RECLAIM, "__GFP_DIRECT_RECLAIM"),
    (Gfp::__GFP_KSWAPD_RECLAIM, "__GFP_KSWAPD_RECLAIM"),
    (Gfp::__GFP_ZEROTAGS, "__GFP_ZEROTAGS"),
];

/// Why a set of GFP flags was refused before any allocation was tried.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GfpError {
    /// Two zone modifiers that the kernel's `GFP_ZONE_BAD` table rejects.
    BadZoneCombination(Gfp),
    /// `__GFP_MOVABLE | __GFP_RECLAIMABLE` together: no such migrate type.
    BadMigrateType(Gfp),
}

impl fmt::Display for GfpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GfpError::BadZoneCombination(g) => write!(
                f,
                "invalid zone modifiers {:#x}({}): GFP_ZONE_BAD in gfp_zone() (kernel: VM_BUG_ON)",
                g.zone_bits(),
                Gfp::from_bits_retain(g.zone_bits())
            ),
            GfpError::BadMigrateType(g) => write!(
                f,
                "__GFP_MOVABLE and __GFP_RECLAIMABLE together in {:#x}({}): no migrate type (kernel: VM_WARN_ON in gfp_migratetype())",
                g.bits(),
                g
            ),
        }
    }
}

impl core::error::Error for GfpError {}

impl Gfp {
    fn zone_bits(self) -> u32 {
        self.bits() & GFP_ZONEMASK
    }

    /// `gfpflags_allow_blocking()`: may this allocation sleep?
    pub const fn allows_blocking(self) -> bool {
        self.contains(Gfp::__GFP_DIRECT_RECLAIM)
    }

    /// `gfp_zone()`: the highest zone this allocation may use, from the kernel's
    /// `GFP_ZONE_TABLE`; the combinations in `GFP_ZONE_BAD` are refused. One load from
    /// the table, as the kernel's one shift of its packed word.
    #[inline]
    pub fn gfp_zone(self) -> Result<ZoneType, GfpError> {
        match GFP_ZONE_TABLE[self.zone_bits() as usize & GFP_ZONEMASK as usize] {
            Some(zone) => Ok(zone),
            None => Err(GfpError::BadZoneCombination(self)),
        }
    }

    /// `gfp_migratetype()`: the migrate type of pages allocated with these flags, the
    /// kernel's shift of the two bits (`(gfp & GFP_MOVABLE_MASK) >> GFP_MOVABLE_SHIFT`:
    /// `__GFP_MOVABLE` gives Movable, `__GFP_RECLAIMABLE` Reclaimable); both together
    /// are refused (6.6 has `VM_WARN_ON` for them).
    #[inline]
    pub fn migratetype(self) -> Result<MigrateType, GfpError> {
        const SHIFT: u32 = Gfp::__GFP_MOVABLE.bits().trailing_zeros();
        const _: () = assert!(Gfp::__GFP_RECLAIMABLE.bits() == Gfp::__GFP_MOVABLE.bits() << 1);
        const _: () = assert!(MigrateType::Reclaimable as usize == 2);
        match (self.bits() >> SHIFT) & 3 {
            3 => Err(GfpError::BadMigrateType(self)),
            // Unmovable, Movable, Reclaimable: the enum's first three values.
            mt => Ok(MigrateType::from_index(mt as usize)),
        }
    }

    /// Parse one flag name (`GFP_KERNEL`, `__GFP_ZERO`, ...) or a number (`0xcc0`).
    pub fn from_flag_name(name: &str) -> Option<Gfp> {
        let name = name.trim();
        if let Some(hex) = name.strip_prefix("0x").or_else(|| name.strip_prefix("0X")) {
            return u32::from_str_radix(hex, 16).ok().map(Gfp::from_bits_retain);
        }
        if let Ok(n) = name.parse::<u32>() {
            return Some(Gfp::from_bits_retain(n));
        }
        GFP_NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(g, _)| *g)
            .or_else(|| Gfp::from_name(name))
    }

    /// Parse flags joined with `|`, as the kernel writes them: `GFP_KERNEL|__GFP_ZERO`.
    pub fn parse(text: &str) -> Option<Gfp> {
        let mut gfp = Gfp::empty();
        for part in text.split('|') {
            gfp |= Gfp::from_flag_name(part)?;
        }
        Some(gfp)
    }
}

/// Prints the flags as `%pGg` does: `GFP_KERNEL|__GFP_ZERO`, with unknown bits in hex.
impl fmt::Display for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.bits();
        let mut first = true;
        for (flag, name) in GFP_NAMES {
            let mask = flag.bits();
            if mask != 0 && rest & mask == mask {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !mask;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{rest:#x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}({})", self.bits(), self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_sets_have_the_kernels_values() {
        assert_eq!(Gfp::GFP_KERNEL.bits(), 0xcc0);
        assert_eq!(Gfp::GFP_ATOMIC.bits(), 0x820);
        assert_eq!(Gfp::GFP_NOWAIT.bits(), 0x800);
        assert_eq!(Gfp::GFP_USER.bits(), 0x100cc0);
        assert_eq!(Gfp::GFP_HIGHUSER.bits(), 0x100cc2);
        assert_eq!(Gfp::GFP_HIGHUSER_MOVABLE.bits(), 0x100cca);
        assert_eq!(Gfp::GFP_KERNEL_ACCOUNT.bits(), 0x400cc0);
    }

    #[test]
    fn prints_like_pgg() {
        extern crate std;
        use std::format;
        assert_eq!(format!("{}", Gfp::GFP_KERNEL), "GFP_KERNEL");
        assert_eq!(
            format!("{}", Gfp::GFP_KERNEL | Gfp::__GFP_ZERO),
            "GFP_KERNEL|__GFP_ZERO"
        );
        assert_eq!(format!("{}", Gfp::GFP_ATOMIC), "GFP_ATOMIC");
        assert_eq!(
            format!("{}", Gfp::GFP_KERNEL | Gfp::GFP_DMA),
            "GFP_KERNEL|GFP_DMA"
        );
        assert_eq!(format!("{:?}", Gfp::GFP_KERNEL), "0xcc0(GFP_KERNEL)");
        assert_eq!(format!("{}", Gfp::from_bits_retain(0x200)), "0x200");
    }

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!(
            Gfp::parse("GFP_KERNEL|__GFP_ZERO"),
            Some(Gfp::GFP_KERNEL | Gfp::__GFP_ZERO)
        );
        assert_eq!(Gfp::parse("0xcc0"), Some(Gfp::GFP_KERNEL));
        assert_eq!(Gfp::parse("GFP_BOGUS"), None);
        assert_eq!(
            Gfp::parse("__GFP_DMA|__GFP_HIGHMEM"),
            Some(Gfp::__GFP_DMA | Gfp::__GFP_HIGHMEM)
        );
    }

    #[test]
    fn zone_table_and_bad_combinations() {
        assert_eq!(Gfp::GFP_KERNEL.gfp_zone(), Ok(ZoneType::Normal));
        assert_eq!(Gfp::GFP_DMA.gfp_zone(), Ok(ZoneType::Dma));
        assert_eq!(Gfp::GFP_DMA32.gfp_zone(), Ok(ZoneType::Dma32));
        assert_eq!(Gfp::GFP_HIGHUSER.gfp_zone(), Ok(ZoneType::HighMem));
        assert_eq!(Gfp::GFP_HIGHUSER_MOVABLE.gfp_zone(), Ok(ZoneType::Movable));
        assert_eq!(
            (Gfp::__GFP_MOVABLE | Gfp::__GFP_DMA).gfp_zone(),
            Ok(ZoneType::Dma)
        );
        for bad in [
            Gfp::__GFP_DMA | Gfp::__GFP_HIGHMEM,
            Gfp::__GFP_DMA | Gfp::__GFP_DMA32,
            Gfp::__GFP_DMA32 | Gfp::__GFP_HIGHMEM,
            Gfp::__GFP_MOVABLE | Gfp::__GFP_DMA | Gfp::__GFP_HIGHMEM,
        ] {
            assert!(matches!(
                bad.gfp_zone(),
                Err(GfpError::BadZoneCombination(_))
            ));
        }
        assert!((Gfp::__GFP_MOVABLE | Gfp::__GFP_RECLAIMABLE)
            .migratetype()
            .is_err());
    }

    /// `gfp_migratetype()` of the common sets, whatever the other bits.
    #[test]
    fn migrate_types_of_the_common_sets() {
        assert_eq!(Gfp::GFP_KERNEL.migratetype(), Ok(MigrateType::Unmovable));
        assert_eq!(Gfp::GFP_ATOMIC.migratetype(), Ok(MigrateType::Unmovable));
        assert_eq!(
            Gfp::GFP_HIGHUSER_MOVABLE.migratetype(),
            Ok(MigrateType::Movable)
        );
        assert_eq!(
            (Gfp::GFP_KERNEL | Gfp::__GFP_RECLAIMABLE).migratetype(),
            Ok(MigrateType::Reclaimable)
        );
        assert_eq!(
            Gfp::from_bits_retain(!Gfp::__GFP_RECLAIMABLE.bits()).migratetype(),
            Ok(MigrateType::Movable)
        );
    }
}
