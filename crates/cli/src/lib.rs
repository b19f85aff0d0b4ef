//! `kmemlab`'s front ends as a library: `tour` walks through the allocators on a simulated
//! machine, `shell` runs kernel memory commands from a script or a prompt, `proc` prints a
//! `/proc` file of a freshly booted machine, `snapshot` writes a machine's `/proc` and
//! `/sys/kernel/slab` files to a directory for real tools, `replay` replays a kernel `kmem`
//! trace. The `kmemlab` binary is [`main_entry`]; the fuzz targets and tests drive
//! [`shell::Shell`] in-process.

mod commands;
mod describe;
pub mod line_editor;
mod output;
mod replay;
pub mod serve;
pub mod shell;
mod snapshot;
mod tour;

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kmemlab_mm::dma::SwiotlbConfig;
use kmemlab_mm::slab::kmalloc::KmallocSizes;
use kmemlab_mm::slab::sheaf::SlabPercpu;
use kmemlab_mm::slab::{SlabConfig, SlabFlags};
use kmemlab_mm::sysctl::Thp;
use kmemlab_mm::Profile;
use kmemlab_sim::{parse_size, Hole, Machine, MachineConfig};

/// Watch, script, break and measure the Linux kernel's memory allocators.
#[derive(Parser)]
#[command(name = "kmemlab", version, about)]
pub struct Cli {
    #[command(flatten)]
    machine: MachineArgs,
    #[command(subcommand)]
    command: Command,
}

/// The shape of the simulated machine.
#[derive(Args, Clone)]
pub struct MachineArgs {
    /// RAM size (16M ..= 256G; K/M/G/T suffixes).
    #[arg(long, global = true, default_value = "1G", value_parser = parse_ram)]
    ram: u64,
    /// Number of CPUs (1 ..= 256).
    #[arg(long, global = true, default_value_t = 4)]
    cpus: usize,
    /// Kernel profile: x86_64 or i386.
    #[arg(long, global = true, default_value = "x86_64", value_parser = parse_profile)]
    profile: Profile,
    /// Seed for every random choice.
    #[arg(long, global = true, default_value_t = 0)]
    seed: u64,
    /// Extra hole in the physical map, START-END (e.g. 256M-260M); repeatable.
    #[arg(long = "hole", global = true, value_parser = parse_hole)]
    holes: Vec<Hole>,
    /// Add the PCI hole from 3 GiB to 4 GiB (RAM above it moves past 4 GiB).
    #[arg(long, global = true)]
    pci_hole: bool,
    /// Leave out the legacy 640 KiB – 1 MiB hole.
    #[arg(long, global = true)]
    no_legacy_hole: bool,
    /// slab_debug for every cache, in the kernel's letters after '=': F sanity checks,
    /// Z red zones, P poisoning, U owner tracking (`--slab-debug=FZ`; `--slab-debug` alone:
    /// all four).
    #[arg(
        long,
        global = true,
        value_name = "LETTERS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "",
        value_parser = parse_slab_debug
    )]
    slab_debug: Option<SlabFlags>,
    /// init_on_alloc=1: zero every allocation.
    #[arg(long, global = true)]
    init_on_alloc: bool,
    /// init_on_free=1: zero every object when freed.
    #[arg(long, global = true)]
    init_on_free: bool,
    /// swiotlb=: `force` (a bounce pool whatever the RAM), `noforce` (none), or a number
    /// of 2 KiB slots; by default x86's rule (a pool only when RAM reaches above 4 GiB).
    #[arg(long, global = true, value_parser = parse_swiotlb)]
    swiotlb: Option<SwiotlbConfig>,
    /// Place the swiotlb pool below this physical address (e.g. 16M, so that a 24-bit
    /// ISA device can bounce, as arm64 places it below its ZONE_DMA limit).
    #[arg(long, global = true, value_parser = parse_ram)]
    swiotlb_below: Option<u64>,
    /// Other kmalloc size classes, ascending multiples of 8 ending at 8192 (for example
    /// 8,16,24,32,48,64,128,256,512,1K,2K,4K,8K).
    #[arg(long, global = true, value_name = "SIZES", value_parser = parse_kmalloc_sizes)]
    kmalloc_sizes: Option<KmallocSizes>,
    /// CONFIG_SLUB_STATS: keep the per-cache, per-CPU SLUB counters
    /// (/sys/kernel/slab/<cache>/alloc_fastpath and friends, `slabinfo -r`, `-D`).
    #[arg(long, global = true)]
    slub_stats: bool,
    /// slab_nomerge: never merge a new cache into a compatible existing one.
    #[arg(long, global = true)]
    slab_nomerge: bool,
    /// cgroup.memory=nokmem: no memory-cgroup kernel-memory accounting, so no kmalloc-cg-*
    /// caches; GFP_KERNEL_ACCOUNT requests are served by kmalloc-* (as before Linux 5.14).
    #[arg(long, global = true)]
    nokmem: bool,
    /// The slab allocator's per-CPU layer: `cpu-slab` (the per-CPU slab and its lockless
    /// freelist, Linux 6.6) or `sheaves` (per-CPU object arrays and per-node barns, Linux
    /// 6.18 opt-in, 7.0 for every cache).
    #[arg(long, global = true, default_value = "cpu-slab", value_parser = parse_slab_percpu)]
    slab_percpu: SlabPercpu,
    /// transparent_hugepage=: always, madvise or never. When enabled, khugepaged's start
    /// raises min_free_kbytes (set_recommended_min_free_kbytes).
    #[arg(long, global = true, default_value = "never", value_parser = parse_thp)]
    thp: Thp,
    /// A /proc/sys/vm tunable set after boot, KEY=VALUE (vm.min_free_kbytes=65536,
    /// vm.watermark_scale_factor, vm.watermark_boost_factor, vm.lowmem_reserve_ratio,
    /// vm.percpu_pagelist_high_fraction); repeatable, applied in order.
    #[arg(long = "sysctl", global = true, value_name = "KEY=VALUE", value_parser = parse_sysctl)]
    sysctls: Vec<(String, String)>,
}

impl MachineArgs {
    /// Take from `parsed` every flag that `given` names (by its field name), keeping the
    /// rest of `self`: how `replay --compare` and a `serve` session's options apply a
    /// few flags over the machine they start from.
    pub fn overlay(&mut self, parsed: MachineArgs, given: impl Fn(&str) -> bool) {
        let MachineArgs {
            ram,
            cpus,
            profile,
            seed,
            holes,
            pci_hole,
            no_legacy_hole,
            slab_debug,
            init_on_alloc,
            init_on_free,
            swiotlb,
            swiotlb_below,
            kmalloc_sizes,
            slub_stats,
            slab_nomerge,
            nokmem,
            slab_percpu,
            thp,
            sysctls,
        } = parsed;
        macro_rules! take {
            ($($field:ident),*) => {
                $(if given(stringify!($field)) {
                    self.$field = $field;
                })*
            };
        }
        take!(
            ram,
            cpus,
            profile,
            seed,
            holes,
            pci_hole,
            no_legacy_hole,
            slab_debug,
            init_on_alloc,
            init_on_free,
            swiotlb,
            swiotlb_below,
            kmalloc_sizes,
            slub_stats,
            slab_nomerge,
            nokmem,
            slab_percpu,
            thp,
            sysctls
        );
    }

    /// The machine flags of a default machine (as if none were given).
    pub fn defaults() -> MachineArgs {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            machine: MachineArgs,
        }
        Only::parse_from(["kmemlab"]).machine
    }

    /// The machine flags parsed from `args` (as typed after `kmemlab`, without a
    /// subcommand), or clap's error text.
    pub fn parse_from<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<MachineArgs, String> {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            machine: MachineArgs,
        }
        Only::try_parse_from(core::iter::once("kmemlab").chain(args))
            .map(|o| o.machine)
            .map_err(|e| e.to_string())
    }

    fn config(&self) -> MachineConfig {
        let mut holes = Vec::new();
        if !self.no_legacy_hole {
            holes.push(Hole::LEGACY);
        }
        if self.pci_hole {
            holes.push(Hole::PCI);
        }
        holes.extend(self.holes.iter().copied());
        MachineConfig {
            ram: self.ram,
            cpus: self.cpus,
            profile: self.profile,
            seed: self.seed,
            holes,
            slab: SlabConfig {
                debug: self.slab_debug.unwrap_or_default(),
                kmalloc_sizes: self.kmalloc_sizes,
                slub_stats: self.slub_stats,
                nomerge: self.slab_nomerge,
                memcg_kmem: !self.nokmem,
                percpu: self.slab_percpu,
                ..SlabConfig::default()
            },
            init_on_alloc: self.init_on_alloc,
            init_on_free: self.init_on_free,
            thp: self.thp,
            sysctls: self.sysctls.clone(),
        }
    }

    /// Boot a machine with these flags.
    pub fn boot(&self) -> Result<Machine, String> {
        let mut swiotlb = self.swiotlb.unwrap_or_default();
        if let Some(limit) = self.swiotlb_below {
            swiotlb = swiotlb.below(limit);
        }
        Machine::new_with_swiotlb(self.config(), swiotlb).map_err(|e| e.to_string())
    }
}

fn parse_slab_percpu(s: &str) -> Result<SlabPercpu, String> {
    SlabPercpu::parse(s)
        .ok_or_else(|| format!("'{s}' is not a per-CPU layer (cpu-slab or sheaves)"))
}

fn parse_ram(s: &str) -> Result<u64, String> {
    parse_size(s).ok_or_else(|| format!("'{s}' is not a size (examples: 64M, 1G, 4096)"))
}

fn parse_swiotlb(s: &str) -> Result<SwiotlbConfig, String> {
    match s {
        "force" => Ok(SwiotlbConfig::on()),
        "noforce" => Ok(SwiotlbConfig::off()),
        n => n
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .map(SwiotlbConfig::with_slabs)
            .ok_or_else(|| format!("'{s}' is not force, noforce or a number of slots")),
    }
}

fn parse_slab_debug(s: &str) -> Result<SlabFlags, String> {
    SlabFlags::parse_slab_debug(s)
        .ok_or_else(|| format!("'{s}' is not slab_debug letters (F, Z, P, U)"))
}

fn parse_kmalloc_sizes(s: &str) -> Result<KmallocSizes, String> {
    let sizes = s
        .split(',')
        .map(|part| {
            let part = part.trim();
            parse_size(part)
                .map(|n| n as usize)
                .ok_or_else(|| format!("'{part}' is not a size"))
        })
        .collect::<Result<Vec<usize>, String>>()?;
    KmallocSizes::new(&sizes).map_err(|e| e.to_string())
}

fn parse_thp(s: &str) -> Result<Thp, String> {
    Thp::from_name(s).ok_or_else(|| format!("'{s}' is not always, madvise or never"))
}

/// `KEY=VALUE` of a known `/proc/sys/vm` tunable (the value is checked at boot by the
/// kernel's handler).
fn parse_sysctl(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))?;
    let (key, value) = (key.trim(), value.trim());
    let known = kmemlab_mm::sysctl::Sysctl::from_key(key).ok_or_else(|| {
        format!(
            "unknown sysctl '{key}' (have: {})",
            kmemlab_mm::sysctl::Sysctl::ALL
                .map(|s| format!("vm.{}", s.procname()))
                .join(", ")
        )
    })?;
    Ok((format!("vm.{}", known.procname()), value.to_string()))
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::from_name(s).ok_or_else(|| format!("unknown profile '{s}' (x86_64 or i386)"))
}

fn parse_hole(s: &str) -> Result<Hole, String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}' is not START-END"))?;
    let start = parse_ram(a)?;
    let end = parse_ram(b)?;
    if end < start {
        return Err(format!("hole '{s}' ends before it starts"));
    }
    if end == start {
        return Err(format!("hole '{s}' is empty"));
    }
    Ok(Hole { start, end })
}

#[derive(Subcommand)]
enum Command {
    /// Walk through the page allocator, kmalloc and vmalloc on a simulated machine, and
    /// decide the seven contrasts and three questions from live experiments.
    ///
    /// Each claim ends `held`, `failed`, or `n/a` when its experiment does not fit the
    /// machine (the claim then says why, from what was measured). The tour always runs to
    /// the end. Exit status: 0 when every claim that fits held and the invariant checker
    /// found nothing broken, 1 otherwise (claims that do not fit count neither way); 2
    /// only when the machine cannot be booted.
    Tour {
        /// Print the same facts as one JSON document, with a `claims` array.
        #[arg(long)]
        json: bool,
        /// Leave out host wall-clock times, so that the output depends only on the seed.
        #[arg(long)]
        no_wall_clock: bool,
    },
    /// Run commands from SCRIPT, or from standard input.
    Shell {
        /// A script: one command per line, '#' comments, '!' for commands expected to fail.
        script: Option<std::path::PathBuf>,
        /// One JSON object per command.
        #[arg(long)]
        json: bool,
    },
    /// Print a /proc file of a freshly booted machine.
    Proc {
        /// The file.
        #[arg(help = proc_file_help())]
        file: String,
    },
    /// Write the machine's /proc and /sys/kernel/slab files to DIR, laid out like the real
    /// ones (DIR/proc/slabinfo, DIR/sys/kernel/slab/...), for procps and the kernel's tools
    /// to read when bind-mounted over /proc and /sys (docs/SHELL.md).
    Snapshot(snapshot::SnapshotArgs),
    /// Replay a kernel kmem trace (ftrace or trace-cmd report text) and report as perf kmem stat.
    Replay(replay::ReplayArgs),
    /// Serve the explorer: a page in the browser with live views of a machine per tab,
    /// and the HTTP API it uses (docs/SERVE_API.md, GET /api/openapi.json).
    Serve(serve::ServeArgs),
}

/// `proc FILE`'s help: every file the kernel side can render.
fn proc_file_help() -> String {
    format!("One of: {}", kmemlab_mm::procfs::FILES.join(", "))
}

/// The `kmemlab` command line: parse the arguments, run the subcommand, and turn its
/// result into the exit status (0 success, 1 a failed expectation, 2 an error, a failed
/// write to standard output included).
pub fn main_entry() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    let result = match &cli.command {
        Command::Tour {
            json,
            no_wall_clock,
        } => tour::run(
            &cli.machine,
            tour::TourOptions {
                json: *json,
                wall_clock: !*no_wall_clock,
            },
        ),
        Command::Shell { script, json } => shell::run(&cli.machine, script.as_deref(), *json),
        Command::Proc { file } => proc_file(&cli.machine, file),
        Command::Snapshot(args) => snapshot::run(&cli.machine, args),
        Command::Replay(args) => replay::run(&cli.machine, args),
        Command::Serve(args) => serve::run(&cli.machine, args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => fail(&e),
    }
}

/// Print `kmemlab: <error>` on standard error (ignoring a failure there: there is nowhere
/// left to report it) and return exit status 2.
fn fail(error: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "kmemlab: {error}");
    ExitCode::from(2)
}

/// clap's help, version or usage error, printed with its own exit status; a failed write
/// of the help to standard output is an error like any other.
fn clap_exit(e: &clap::Error) -> ExitCode {
    if let Err(write) = e.print().and_then(|()| std::io::stdout().flush()) {
        return fail(&output::write_error(write));
    }
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}

fn proc_file(args: &MachineArgs, file: &str) -> Result<bool, String> {
    let machine = args.boot()?;
    let mut out = String::new();
    let found =
        kmemlab_mm::procfs::render(&machine.mm(), file, &mut out).map_err(|e| e.to_string())?;
    if !found {
        return Err(format!(
            "no /proc file '{file}' (have: {})",
            kmemlab_mm::procfs::FILES.join(", ")
        ));
    }
    output::print(&out)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the named flags move; every other one keeps the base machine's value.
    #[test]
    fn overlay_takes_only_the_given_flags() {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            machine: MachineArgs,
        }
        let parsed =
            Only::parse_from(["x", "--cpus", "7", "--ram", "2G", "--thp", "always"]).machine;
        let mut m = MachineArgs::defaults();
        m.overlay(parsed, |k| k == "cpus" || k == "thp");
        assert_eq!(m.cpus, 7);
        assert_eq!(m.thp, Thp::Always);
        assert_eq!(m.ram, MachineArgs::defaults().ram);
    }
}
