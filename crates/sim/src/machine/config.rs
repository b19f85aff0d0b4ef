//! The shape of a machine ([`MachineConfig`]: RAM, CPUs, profile, slab and sysctl
//! settings, serialisable for the web API) and why one could not be built or run
//! ([`SimError`]).

use std::fmt;

use kmemlab_mm::slab::SlabConfig;
use kmemlab_mm::sysctl::Thp;
use kmemlab_mm::{BootError, Profile};

use super::{MAX_CPUS, MAX_RAM, MIN_RAM};
use crate::ram::{Hole, RamError};

/// The shape of a machine.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MachineConfig {
    /// Bytes of RAM.
    pub ram: u64,
    /// Number of CPUs.
    pub cpus: usize,
    /// Which kernel.
    #[serde(serialize_with = "serialize_profile")]
    pub profile: Profile,
    /// The seed for every random choice.
    pub seed: u64,
    /// Holes in the physical address map (RAM is placed around them).
    pub holes: Vec<Hole>,
    /// The slab allocator's boot options. In JSON only the per-CPU layer, as
    /// `"slab_percpu": "sheaves"`, and only when it is not the default (so the default's
    /// JSON is as it always was).
    #[serde(
        rename = "slab_percpu",
        serialize_with = "serialize_slab_percpu",
        skip_serializing_if = "percpu_is_default"
    )]
    pub slab: SlabConfig,
    /// `init_on_alloc=1`: pages and slab objects come zeroed ([`kmemlab_mm::BootConfig`]).
    #[serde(skip)]
    pub init_on_alloc: bool,
    /// `init_on_free=1`: pages and slab objects are wiped when freed.
    #[serde(skip)]
    pub init_on_free: bool,
    /// `transparent_hugepage=` (`never` by default).
    #[serde(serialize_with = "serialize_thp")]
    pub thp: Thp,
    /// `/proc/sys/vm` tunables set once the kernel is up, as `sysctl.conf` sets them:
    /// (`vm.NAME`, value), in order.
    pub sysctls: Vec<(String, String)>,
}

fn serialize_thp<S: serde::Serializer>(t: &Thp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match t {
        Thp::Always => "always",
        Thp::Madvise => "madvise",
        Thp::Never => "never",
    })
}

fn serialize_slab_percpu<S: serde::Serializer>(c: &SlabConfig, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.percpu.name())
}

fn percpu_is_default(c: &SlabConfig) -> bool {
    c.percpu == kmemlab_mm::slab::sheaf::SlabPercpu::default()
}

fn serialize_profile<S: serde::Serializer>(p: &Profile, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.name())
}

impl Default for MachineConfig {
    /// 1 GiB, 4 CPUs, x86_64, seed 0, with the legacy 640 KiB–1 MiB hole.
    fn default() -> Self {
        MachineConfig {
            ram: 1 << 30,
            cpus: 4,
            profile: Profile::X86_64,
            seed: 0,
            holes: vec![Hole::LEGACY],
            slab: SlabConfig::default(),
            init_on_alloc: false,
            init_on_free: false,
            thp: Thp::Never,
            sysctls: Vec::new(),
        }
    }
}

/// Why a machine could not be built or could not run something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimError {
    /// RAM size outside 16 MiB ..= 256 GiB.
    BadRamSize(u64),
    /// CPU count outside 1 ..= 256.
    BadCpuCount(usize),
    /// The holes were refused, or the host could not map the RAM.
    Ram(RamError),
    /// The kernel failed to boot.
    Boot(BootError),
    /// No such CPU.
    NoSuchCpu(usize),
    /// Another host thread is running as this CPU.
    CpuBusy(usize),
    /// An interrupt cannot be taken: the CPU has interrupts disabled.
    IrqsDisabled(usize),
    /// A DMA device could not be added (its name is taken, or the DMA API refused its
    /// mask).
    DmaDevice(String),
    /// A `/proc/sys/vm` tunable was refused (`sysctl: …`).
    Sysctl(String),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::BadRamSize(n) => write!(
                f,
                "RAM size {} is outside {} ..= {}",
                crate::format_size(*n),
                crate::format_size(MIN_RAM),
                crate::format_size(MAX_RAM)
            ),
            SimError::BadCpuCount(n) => write!(f, "{n} CPUs is outside 1 ..= {MAX_CPUS}"),
            SimError::Ram(e) => e.fmt(f),
            SimError::Boot(e) => write!(f, "boot failed: {e}"),
            SimError::NoSuchCpu(c) => write!(f, "no CPU {c}"),
            SimError::CpuBusy(c) => write!(f, "CPU {c} is running another host thread"),
            SimError::DmaDevice(why) => write!(f, "{why}"),
            SimError::Sysctl(why) => write!(f, "{why}"),
            SimError::IrqsDisabled(c) => {
                write!(
                    f,
                    "CPU {c} has interrupts disabled: the interrupt stays pending"
                )
            }
        }
    }
}

impl std::error::Error for SimError {}
