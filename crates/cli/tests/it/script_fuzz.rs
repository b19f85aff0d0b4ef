//! A random-script fuzzer for `kmemlab shell`, run by `cargo test`.
//!
//! Scripts are generated line by line over the whole shell vocabulary (the command table in
//! `src/commands/`), each line run at once in-process so that the next can use what it
//! returned (names of pages, objects, caches, devices, mappings). A third of the scripts
//! corrupt memory on purpose: `poke`, `write` through the MMU and device DMA into objects,
//! past their ends, into their `struct page`, their slab's `struct page`, their
//! `kmem_cache`, the page tables that map them, and the boot-reserved regions. The
//! addresses of kernel structures are found by looking at the live machine and written
//! into the script as numbers; the machine is deterministic, so the script replays.
//!
//! A panic is caught with `catch_unwind`; the script is then minimised (delta debugging:
//! drop lines while the same panic remains) and printed. Minimised failures are kept in
//! `tests/regressions/*.kmem` and replayed here; those that still crash today's code wait
//! in `tests/regressions/pending/` (not replayed) until their fix lands.
//!
//! Environment:
//! * `KMEMLAB_FUZZ_SEED` (default 1) and `KMEMLAB_FUZZ_SCRIPTS` (default 6000): which and
//!   how many scripts. Script `i` depends only on the seed and `i`.
//! * `KMEMLAB_FUZZ_PENDING=1`: also generate what is known to crash today (see
//!   [`PENDING_CLASSES`]); `KMEMLAB_FUZZ_CLASSES=overflow,page-table`: only these
//!   classes (of [`CORRUPTIONS`] and [`PENDING_CLASSES`]); `KMEMLAB_FUZZ_CORRUPT=1`:
//!   every script in corruption mode.
//! * `KMEMLAB_FUZZ_ISOLATE=1`: run the scripts in child processes (this test binary), so
//!   that a host crash (SIGSEGV) or a hang is caught too; the crashing script is minimised
//!   in child processes and written to `KMEMLAB_FUZZ_OUT` (default
//!   `target/tmp/script-fuzz/`), at most `KMEMLAB_FUZZ_MAX_FAILURES` (default 10) of them.
//!   `KMEMLAB_FUZZ_TIMEOUT` (seconds, default 60) is how long a child may run before it
//!   counts as hung. For development only: CI runs in-process.
//!
//! By default the scripts are shared among one worker per host CPU, each a child process
//! (this test binary with `KMEMLAB_FUZZ_WORKER=1` and its `KMEMLAB_FUZZ_FIRST` /
//! `KMEMLAB_FUZZ_SCRIPTS` share) running its share in-process, one script after another.

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;

use kmemlab_cli::shell::{Shell, Value};
use kmemlab_mm::VirtAddr;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::fuzz_targets::shell as shell_target;

/// Known crash classes of today's code, not generated unless `KMEMLAB_FUZZ_PENDING=1`;
/// remove an entry when its fix lands (and move its reproduction out of `pending/`).
pub const PENDING_CLASSES: &[&str] = &[
    // Empty: every class of corruption is generated. A class whose crash is found again
    // waits here, named, until its fix lands.
];

/// The ways corruption mode writes into kernel memory (see [`Gen::corruption`]).
pub const CORRUPTIONS: &[&str] = &[
    "overflow",
    "struct-page",
    "slab-page",
    "kmem-cache",
    "page-table",
    "reserved",
    "raw-dma",
];

/// Lines per script (after the machine line), at most.
const MAX_SCRIPT_LINES: usize = 48;

// ----- running a script, catching panics ------------------------------------------------

std::thread_local! {
    /// The last panic on this thread while capturing: message and location.
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    static CAPTURING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A panic hook that records panics of capturing threads (instead of printing them) and
/// leaves others to the default hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(|c| c.get()) {
                let location = info
                    .location()
                    .map_or("?".to_string(), |l| format!("{}:{}", l.file(), l.line()));
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{location}: {message}")));
            } else {
                default(info);
            }
        }));
    });
}

/// Run `f`, returning the panic (location and message) if it panicked.
fn catching<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    install_panic_hook();
    CAPTURING.with(|c| c.set(true));
    LAST_PANIC.with(|p| *p.borrow_mut() = None);
    let r = catch_unwind(AssertUnwindSafe(f));
    CAPTURING.with(|c| c.set(false));
    r.map_err(|_| {
        LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_default()
    })
}

/// The location part of a panic (`file:line`), which minimisation keeps fixed.
fn panic_site(panic: &str) -> &str {
    panic.split(": ").next().unwrap_or(panic)
}

/// Replay a script as the fuzz target `shell` runs it; the panic if any.
fn replay(text: &str) -> Result<(), String> {
    catching(|| {
        shell_target::run_script(text);
    })
}

// ----- minimisation ---------------------------------------------------------------------

/// Delta debugging over lines (the machine line stays): remove chunks of lines, halving
/// the chunk size, while `fails` still holds.
fn minimise(lines: &[String], fails: &mut dyn FnMut(&str) -> bool) -> Vec<String> {
    let (head, body) = match lines.first() {
        Some(first) if first.starts_with("#!kmemlab") => (vec![first.clone()], lines[1..].to_vec()),
        _ => (Vec::new(), lines.to_vec()),
    };
    let text = |body: &[String]| {
        let mut all = head.clone();
        all.extend_from_slice(body);
        all.join("\n") + "\n"
    };
    let mut body = body;
    let mut chunk = body.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        let mut removed = false;
        while i < body.len() {
            let mut candidate = body.clone();
            candidate.drain(i..(i + chunk).min(body.len()));
            if fails(&text(&candidate)) {
                body = candidate;
                removed = true;
            } else {
                i += chunk;
            }
        }
        if chunk == 1 && !removed {
            break;
        }
        if !removed {
            chunk = chunk.div_ceil(2);
        }
    }
    let mut all = head;
    all.extend(body);
    all
}

// ----- generation -----------------------------------------------------------------------

/// What a name stands for.
#[derive(Clone, Debug, PartialEq)]
enum Kind {
    /// A `struct page *` of an order.
    Page(u32),
    /// A direct-map address (kmalloc object, pages) of a size.
    Addr(u64),
    /// A vmalloc-area address of a size.
    Vmalloc(u64),
    /// A cache.
    Cache,
    /// An object of a cache.
    Object(String),
    /// A page frame number.
    Pfn,
    /// A bus address from `dma_map_single` on a device, size, direction.
    Dma(String, u64, &'static str),
    /// A scatterlist handle, of a size.
    Sg(u64),
    /// A coherent buffer of a device and size.
    Coherent(String, u64),
    /// A bulk allocation's list (`$name`, elements `$name0` …): objects of a cache, or
    /// order-0 `struct page *`s (`None`).
    List(Option<String>),
}

/// A script being generated and run.
struct Gen {
    rng: ChaCha8Rng,
    shell: Shell,
    lines: Vec<String>,
    names: Vec<(String, Kind)>,
    devices: Vec<String>,
    corrupt: bool,
    pending: bool,
    counter: usize,
}

const GFPS: &[&str] = &[
    "GFP_KERNEL",
    "GFP_KERNEL",
    "GFP_ATOMIC",
    "GFP_NOWAIT",
    "GFP_KERNEL|__GFP_ZERO",
    "GFP_DMA",
    "GFP_DMA32",
    "GFP_HIGHUSER",
    "GFP_KERNEL|__GFP_COMP",
    "GFP_KERNEL|__GFP_NOFAIL",
    "GFP_KERNEL|__GFP_NORETRY",
    "__GFP_DMA|__GFP_HIGHMEM",
    "0",
    "0xffffffff",
];

const SIZES: &[&str] = &[
    "0", "1", "8", "24", "64", "100", "128", "192", "256", "1000", "2048", "4096", "4097", "8K",
    "8193", "64K", "100K", "1M", "4M", "5M", "16M",
];

const DIRECTIONS: &[&str] = &[
    "DMA_TO_DEVICE",
    "DMA_FROM_DEVICE",
    "DMA_BIDIRECTIONAL",
    "DMA_NONE",
];

const MACHINES: &[&str] = &[
    "#!kmemlab --ram 64M --cpus 2",
    "#!kmemlab --ram 64M --cpus 2",
    "#!kmemlab --ram 64M --cpus 2 --slab-debug",
    "#!kmemlab --ram 32M --cpus 1 --init-on-free",
    "#!kmemlab --ram 128M --cpus 2 --profile i386",
    "#!kmemlab --ram 64M --cpus 4 --swiotlb 512 --swiotlb-below 16M",
];

impl Gen {
    fn new(seed: u64, index: u64, pending: bool) -> Gen {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index);
        let machine = MACHINES[rng.gen_range(0..MACHINES.len())].to_string();
        let corrupt = std::env::var_os("KMEMLAB_FUZZ_CORRUPT").is_some() || rng.gen_ratio(1, 3);
        let shell = shell_target::boot(&machine).expect("the fuzzer's machines boot");
        Gen {
            rng,
            shell,
            lines: vec![machine],
            names: Vec::new(),
            devices: Vec::new(),
            corrupt,
            pending,
            counter: 0,
        }
    }

    fn pick<'a>(&mut self, from: &'a [&'a str]) -> &'a str {
        from[self.rng.gen_range(0..from.len())]
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}", self.counter)
    }

    /// A name of a kind matching `want`, sometimes (class `foreign-pointer`) a name of
    /// another kind or a number.
    fn arg(&mut self, want: fn(&Kind) -> bool) -> String {
        let matching: Vec<String> = self
            .names
            .iter()
            .filter(|(_, k)| want(k))
            .map(|(n, _)| n.clone())
            .collect();
        let roll = self.rng.gen_range(0..100);
        if !matching.is_empty() && (roll < 85 || !self.allowed("foreign-pointer")) {
            return matching.choose(&mut self.rng).unwrap().clone();
        }
        if !self.allowed("foreign-pointer") {
            return self.pick(&["0", "nothing"]).to_string();
        }
        if !self.names.is_empty() && roll < 93 {
            return self.names.choose(&mut self.rng).unwrap().0.clone();
        }
        self.number()
    }

    /// A number, often an address of the machine.
    fn number(&mut self) -> String {
        let ram = self.shell.machine.config().ram;
        let phys = self.rng.gen_range(0..ram) & !7;
        let direct = self.shell.machine.mm().layout().phys_to_virt(phys);
        match self.rng.gen_range(0..6) {
            0 => "0".into(),
            1 => format!("{:#x}", direct.unwrap_or(phys)),
            2 => format!("{phys:#x}"),
            3 => self.rng.gen_range(0..64u32).to_string(),
            4 => format!("{:#x}", self.rng.r#gen::<u64>()),
            _ => "0xffffffffffffffff".into(),
        }
    }

    fn size(&mut self) -> String {
        if self.rng.gen_ratio(1, 4) {
            self.rng.gen_range(1..20000u32).to_string()
        } else {
            self.pick(SIZES).to_string()
        }
    }

    fn gfp(&mut self) -> &'static str {
        self.pick(GFPS)
    }

    fn order(&mut self) -> String {
        match self.rng.gen_range(0..20) {
            0 => "11".into(),
            1 => "4294967296".into(),
            2..=4 => self.rng.gen_range(4..=10u32).to_string(),
            _ => self.rng.gen_range(0..4u32).to_string(),
        }
    }

    fn device(&mut self) -> String {
        if self.devices.is_empty() || self.rng.gen_ratio(1, 20) {
            return "nodev".into();
        }
        self.devices.choose(&mut self.rng).unwrap().clone()
    }

    /// One command line, and the kind of what it returns (when it is kept under a name).
    fn command(&mut self) -> (String, Option<Kind>) {
        let is_page = |k: &Kind| matches!(k, Kind::Page(_));
        let is_addr = |k: &Kind| matches!(k, Kind::Addr(_));
        let is_vmalloc = |k: &Kind| matches!(k, Kind::Vmalloc(_));
        let is_mem = |k: &Kind| matches!(k, Kind::Addr(_) | Kind::Vmalloc(_) | Kind::Object(_));
        match self.rng.gen_range(0..50) {
            0..=2 if self.rng.gen_ratio(1, 5) => {
                let (g, n) = (self.gfp(), self.bulk_count());
                (format!("alloc_pages_bulk {g} {n}"), Some(Kind::List(None)))
            }
            0..=2 => {
                let (g, o) = (self.gfp(), self.order());
                let order = o.parse().unwrap_or(0);
                (format!("alloc_pages {g} {o}"), Some(Kind::Page(order)))
            }
            3 | 4 if self.has(|k| *k == Kind::List(None)) && self.rng.gen_ratio(1, 3) => {
                let list = self.arg(|k| *k == Kind::List(None));
                let i = self.rng.gen_range(0..5u32);
                (format!("__free_pages {list}{i} 0"), None)
            }
            3 | 4 => {
                let p = self.arg(is_page);
                let order = self.page_order(&p);
                (format!("__free_pages {p} {order}"), None)
            }
            5 => {
                let (g, o) = (self.gfp(), self.order());
                let size = 4096 << o.parse::<u32>().unwrap_or(0).min(10);
                (format!("__get_free_pages {g} {o}"), Some(Kind::Addr(size)))
            }
            6 => (
                format!("get_zeroed_page {}", self.gfp()),
                Some(Kind::Addr(4096)),
            ),
            7 => {
                let a = self.arg(is_addr);
                let o = self.rng.gen_range(0..3u32);
                (format!("free_pages {a} {o}"), None)
            }
            8 => {
                let (cmd, kind) = match self.rng.gen_range(0..5) {
                    0 => ("page_address", Kind::Addr(4096)),
                    1 => ("page_to_pfn", Kind::Pfn),
                    2 => ("page_zone", Kind::Pfn),
                    3 => ("info", Kind::Pfn),
                    _ => ("vmap", Kind::Vmalloc(4096)),
                };
                let p = self.arg(is_page);
                if cmd == "vmap" {
                    let count = self.vmap_count();
                    return (
                        format!("vmap {p} {count}"),
                        Some(Kind::Vmalloc(count_pages(&count))),
                    );
                }
                (format!("{cmd} {p}"), Some(kind))
            }
            9 => {
                let a = self.arg(is_mem);
                (format!("virt_to_page {a}"), Some(Kind::Page(0)))
            }
            10 => {
                let n = self.arg(|k| matches!(k, Kind::Pfn));
                (format!("pfn_to_page {n}"), Some(Kind::Page(0)))
            }
            11..=13 => {
                let (s, g) = (self.size(), self.gfp());
                let cmd = if self.rng.gen_ratio(1, 3) {
                    "kzalloc"
                } else {
                    "kmalloc"
                };
                let size = size_of(&s);
                (format!("{cmd} {s} {g}"), Some(Kind::Addr(size)))
            }
            14 => {
                let n = self.rng.gen_range(0..40u32);
                let (s, g) = (self.size(), self.gfp());
                let size = size_of(&s) * n as u64;
                (format!("kcalloc {n} {s} {g}"), Some(Kind::Addr(size)))
            }
            15 => {
                let a = self.arg(is_addr);
                let (s, g) = (self.size(), self.gfp());
                let size = size_of(&s);
                (format!("krealloc {a} {s} {g}"), Some(Kind::Addr(size)))
            }
            16..=18 => {
                let a = self.arg(is_addr);
                (format!("kfree {a}"), None)
            }
            19 => {
                let a = self.arg(is_mem);
                let cmd = if self.rng.gen_bool(0.5) {
                    "ksize"
                } else {
                    "info"
                };
                (format!("{cmd} {a}"), None)
            }
            20 => self.cache_create(),
            21 | 22 if self.rng.gen_ratio(1, 4) => {
                let c = if self.rng.gen_bool(0.5) {
                    self.arg(|k| *k == Kind::Cache)
                } else {
                    self.pick(&["kmalloc-8", "kmalloc-96", "kmalloc-1k", "kmalloc-8k"])
                        .to_string()
                };
                let (g, n) = (self.gfp(), self.bulk_count());
                let line = format!("kmem_cache_alloc_bulk {c} {g} {n}");
                (line, Some(Kind::List(Some(c))))
            }
            21 | 22 => {
                let c = self.arg(|k| *k == Kind::Cache);
                let g = self.gfp();
                (format!("kmem_cache_alloc {c} {g}"), Some(Kind::Object(c)))
            }
            23 if self.has(|k| matches!(k, Kind::List(Some(_)))) && self.rng.gen_ratio(2, 3) => {
                (self.bulk_free(), None)
            }
            23 => {
                let o = self.arg(|k| matches!(k, Kind::Object(_)));
                let c = match self.kind_of(&o) {
                    Some(Kind::Object(c)) if self.rng.gen_ratio(9, 10) => c,
                    _ => self.arg(|k| *k == Kind::Cache),
                };
                (format!("kmem_cache_free {c} {o}"), None)
            }
            24 => {
                let c = self.arg(|k| *k == Kind::Cache);
                let cmd = self.pick(&["kmem_cache_destroy", "kmem_cache_shrink", "slab"]);
                (format!("{cmd} {c}"), None)
            }
            25..=27 => {
                let s = self.vmalloc_size();
                let cmd = self.pick(&[
                    "vmalloc",
                    "vzalloc",
                    "__vmalloc",
                    "vmalloc_huge",
                    "kvmalloc",
                    "kvzalloc",
                ]);
                let size = size_of(&s);
                let line = match cmd {
                    "__vmalloc" => format!("{cmd} {s} {}", self.gfp()),
                    "vmalloc_huge" | "kvmalloc" | "kvzalloc" if self.rng.gen_bool(0.5) => {
                        format!("{cmd} {s} {}", self.gfp())
                    }
                    _ => format!("{cmd} {s}"),
                };
                (line, Some(Kind::Vmalloc(size)))
            }
            28 | 29 => {
                let v = self.arg(is_vmalloc);
                let cmd = self.pick(&[
                    "vfree",
                    "vfree",
                    "kvfree",
                    "vunmap",
                    "vmalloc_to_page",
                    "walk",
                ]);
                let kind = (cmd == "vmalloc_to_page").then_some(Kind::Page(0));
                (format!("{cmd} {v}"), kind)
            }
            30 | 31 => {
                let a = self.arg(is_mem);
                let off = self.offset();
                if self.rng.gen_bool(0.5) {
                    let len = self.rng.gen_range(0..300u32);
                    (format!("read {a} {off} {len}"), None)
                } else {
                    (format!("dump {a} {}", self.rng.gen_range(0..200u32)), None)
                }
            }
            32 => {
                let a = self.target(is_mem);
                let text = self.pick(&["hello", "0x00", "0x4142"]);
                (format!("write {a} 0 {text}"), None)
            }
            33 => {
                let name = self.fresh("d");
                let bits = self.pick(&["24", "32", "32", "64", "64", "12", "0", "65"]);
                self.devices.push(name.clone());
                (format!("dev {name} mask={bits}"), None)
            }
            34 | 35 => self.dma_map(),
            36 => self.dma_unmap(),
            37 => {
                let d = self.device();
                let s = self.size();
                let size = size_of(&s);
                let line = if self.rng.gen_bool(0.5) {
                    format!("dma_alloc_coherent {d} {s} {}", self.gfp())
                } else {
                    format!("dma_alloc_coherent {d} {s}")
                };
                (line, Some(Kind::Coherent(d, size)))
            }
            38 => {
                let c = self.arg(|k| matches!(k, Kind::Coherent(..)));
                let (d, s) = match self.kind_of(&c) {
                    Some(Kind::Coherent(d, s)) => (d, s.to_string()),
                    _ => (self.device(), self.size()),
                };
                (format!("dma_free_coherent {d} {s} {c}"), None)
            }
            39 => {
                let d = self.device();
                let line = if self.rng.gen_bool(0.5) {
                    let target = self.arg(|k| matches!(k, Kind::Dma(..) | Kind::Sg(_)));
                    let len = self.rng.gen_range(0..9000u32);
                    format!("dma {d} from {target} {len}")
                } else {
                    let target = self.target(|k| matches!(k, Kind::Dma(..) | Kind::Sg(_)));
                    let len = self.write_len(&target, 9000);
                    format!("dma {d} to {target} {len} {}", self.rng.r#gen::<u8>())
                };
                (line, None)
            }
            40 => {
                let cpus = self.shell.machine.config().cpus as u32;
                let cmd = match self.rng.gen_range(0..6) {
                    0 => format!("cpu {}", self.rng.gen_range(0..cpus + 1)),
                    1 => format!(
                        "ctx {}",
                        self.pick(&["process", "process", "softirq", "hardirq", "nmi"])
                    ),
                    2 => self.pick(&["local_irq_disable", "local_irq_enable"]).into(),
                    3 => self.pick(&["preempt_disable", "preempt_enable"]).into(),
                    4 => "ctx process".into(),
                    _ => "local_irq_enable".into(),
                };
                (cmd, None)
            }
            41 => {
                let ram_mb = self.shell.machine.config().ram >> 20;
                let cmd = match self.rng.gen_range(0..7) {
                    0 => format!("pagecache fill {}M", self.rng.gen_range(1..ram_mb + 8)),
                    1 => "pagecache drop".into(),
                    2 => format!(
                        "fragment {} {} {}",
                        self.pick(&["DMA", "DMA32", "Normal", "HighMem", "Movable"]),
                        self.pick(&["alternate", "sparse", "random"]),
                        self.rng.gen_range(0..12u32)
                    ),
                    3 => "unfragment".into(),
                    4 => "kswapd".into(),
                    5 => "drain_all_pages".into(),
                    _ => "purge".into(),
                };
                (cmd, None)
            }
            42 => {
                let file = self.pick(&[
                    "buddyinfo",
                    "pagetypeinfo",
                    "zoneinfo",
                    "meminfo",
                    "slabinfo",
                    "vmallocinfo",
                    "vmstat",
                    "nothing",
                ]);
                (format!("cat /proc/{file}"), None)
            }
            43 => (self.pick(&["check", "tlb", "vmstat", "help"]).into(), None),
            _ if self.corrupt => self.corruption(),
            _ => {
                let a = self.arg(is_addr);
                let off = self.write_len(&a, 16).saturating_sub(1);
                (format!("poke {a} {off} {}", self.rng.r#gen::<u8>()), None)
            }
        }
    }

    /// Where a write goes: only a name of the wanted kind (`nothing` when there is none),
    /// unless the class `wild-write` is on in corruption mode: then also other names
    /// (a `struct page *`, a `kmem_cache *`) and random addresses.
    fn target(&mut self, want: fn(&Kind) -> bool) -> String {
        if self.corrupt && self.allowed("wild-write") {
            return self.arg(want);
        }
        let matching: Vec<String> = self
            .names
            .iter()
            .filter(|(_, k)| want(k))
            .map(|(n, _)| n.clone())
            .collect();
        matching
            .choose(&mut self.rng)
            .cloned()
            .unwrap_or_else(|| "nothing".into())
    }

    /// How many bytes to write at a name: up to `most`, and (unless the class
    /// `overflow` is on) no more than the memory behind the name holds.
    fn write_len(&mut self, name: &str, most: u64) -> u64 {
        let limit = match self.kind_of(name) {
            _ if self.allowed("overflow") => most,
            Some(Kind::Addr(s) | Kind::Vmalloc(s) | Kind::Sg(s) | Kind::Dma(_, s, _)) => {
                s.min(most)
            }
            _ => 0,
        };
        self.rng.gen_range(0..=limit)
    }

    fn kind_of(&self, name: &str) -> Option<Kind> {
        self.names
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, k)| k.clone())
    }

    fn page_order(&mut self, name: &str) -> String {
        match self.kind_of(name) {
            Some(Kind::Page(o)) if self.rng.gen_ratio(9, 10) => o.to_string(),
            _ => self.order(),
        }
    }

    fn offset(&mut self) -> String {
        match self.rng.gen_range(0..4) {
            0 => "0".into(),
            1 => self.rng.gen_range(0..64u32).to_string(),
            2 => self.rng.gen_range(0..9000u32).to_string(),
            _ => "4096".into(),
        }
    }

    fn vmalloc_size(&mut self) -> String {
        match self.rng.gen_range(0..5) {
            0 => "0".into(),
            1 => format!("{}K", 4 * self.rng.gen_range(1..33u32)),
            2 => self.rng.gen_range(1..70000u32).to_string(),
            3 => format!("{}M", self.rng.gen_range(1..9u32)),
            _ => self.pick(SIZES).to_string(),
        }
    }

    fn vmap_count(&mut self) -> String {
        if self.allowed("vmap-huge-count") && self.rng.gen_ratio(1, 10) {
            return self.pick(&["0xffffffffffff", "100000000000"]).to_string();
        }
        self.rng.gen_range(0..40u32).to_string()
    }

    /// Is there a name of a kind matching `want`?
    fn has(&self, want: fn(&Kind) -> bool) -> bool {
        self.names.iter().any(|(_, k)| want(k))
    }

    /// The count of a bulk allocation: mostly small, sometimes 0, the most the shell
    /// takes, or one more.
    fn bulk_count(&mut self) -> &'static str {
        self.pick(&["0", "1", "2", "3", "8", "8", "40", "300", "4096", "4097"])
    }

    /// `kmem_cache_free_bulk` of a list (to its cache, mostly) or `kfree_bulk`, sometimes
    /// with more words: another name, an element of the list again (a double free inside
    /// the array), NULL.
    fn bulk_free(&mut self) -> String {
        let list = self.arg(|k| matches!(k, Kind::List(Some(_))));
        let mut words = vec![format!("${list}")];
        for _ in 0..self.rng.gen_range(0..3) {
            let extra = match self.rng.gen_range(0..3) {
                0 => format!("{list}{}", self.rng.gen_range(0..3u32)),
                1 => self.arg(|k| matches!(k, Kind::Object(_) | Kind::Addr(_))),
                _ => "0".to_string(),
            };
            words.push(extra);
        }
        let words = words.join(" ");
        if self.rng.gen_ratio(1, 3) {
            return format!("kfree_bulk {words}");
        }
        let c = match self.kind_of(&list) {
            Some(Kind::List(Some(c))) if self.rng.gen_ratio(9, 10) => c,
            _ => self.arg(|k| *k == Kind::Cache),
        };
        format!("kmem_cache_free_bulk {c} {words}")
    }

    fn cache_create(&mut self) -> (String, Option<Kind>) {
        let name = self.fresh("cache");
        let s = self.pick(&[
            "1", "8", "24", "72", "200", "256", "1000", "4096", "5000", "5M", "0",
        ]);
        let line = match self.rng.gen_range(0..3) {
            0 => format!("kmem_cache_create {name} {s}"),
            1 => format!(
                "kmem_cache_create {name} {s} {}",
                self.pick(&["0", "8", "64", "3", "4096"])
            ),
            _ => {
                let flags: Vec<&str> = [
                    "SLAB_HWCACHE_ALIGN",
                    "SLAB_RED_ZONE",
                    "SLAB_POISON",
                    "SLAB_STORE_USER",
                    "SLAB_CONSISTENCY_CHECKS",
                    "SLAB_CACHE_DMA",
                    "SLAB_CACHE_DMA32",
                    "SLAB_RECLAIM_ACCOUNT",
                ]
                .into_iter()
                .filter(|_| self.rng.gen_ratio(1, 3))
                .collect();
                let flags = if flags.is_empty() {
                    "0".to_string()
                } else {
                    flags.join("|")
                };
                format!("kmem_cache_create {name} {s} 0 {flags}")
            }
        };
        (line, Some(Kind::Cache))
    }

    fn dma_map(&mut self) -> (String, Option<Kind>) {
        let d = self.device();
        let a = self.arg(|k| matches!(k, Kind::Addr(_) | Kind::Vmalloc(_) | Kind::Object(_)));
        let size = match self.kind_of(&a) {
            Some(Kind::Addr(s) | Kind::Vmalloc(s)) if s > 0 && self.rng.gen_ratio(3, 4) => {
                s.min(1 << 20).to_string()
            }
            // A mapping larger than the buffer lets the device write past it.
            _ if self.allowed("overflow") => self.size(),
            Some(Kind::Addr(s) | Kind::Vmalloc(s)) if s > 0 => {
                self.rng.gen_range(1..=s).to_string()
            }
            _ => "1".into(),
        };
        let dir = self.pick(DIRECTIONS);
        if self.rng.gen_bool(0.3) {
            let kind = Kind::Sg(size_of(&size));
            return (format!("dma_map_sg {d} {a} {size} {dir}"), Some(kind));
        }
        let kind = Kind::Dma(d.clone(), size_of(&size), dir);
        (format!("dma_map_single {d} {a} {size} {dir}"), Some(kind))
    }

    fn dma_unmap(&mut self) -> (String, Option<Kind>) {
        let m = self.arg(|k| matches!(k, Kind::Dma(..) | Kind::Sg(_)));
        match self.kind_of(&m) {
            Some(Kind::Sg(_)) => (format!("dma_unmap_sg {m}"), None),
            Some(Kind::Dma(d, s, dir)) if self.rng.gen_ratio(4, 5) => {
                (format!("dma_unmap_single {d} {m} {s} {dir}"), None)
            }
            _ => {
                let (d, s, dir) = (self.device(), self.size(), self.pick(DIRECTIONS));
                (format!("dma_unmap_single {d} {m} {s} {dir}"), None)
            }
        }
    }

    /// The value a name holds now in the shell (by replaying nothing: the generator keeps
    /// its own copy of what each named line returned).
    fn value(&self, name: &str) -> Option<u64> {
        self.shell.number(name).ok()
    }

    /// A write that corrupts memory on purpose.
    fn corruption(&mut self) -> (String, Option<Kind>) {
        let bytes = self.hex_bytes();
        let classes: Vec<&'static str> = CORRUPTIONS
            .iter()
            .copied()
            .filter(|c| self.allowed(c))
            .collect();
        let Some(&class) = classes.choose(&mut self.rng) else {
            return ("check".into(), None);
        };
        // An overflow runs off the end of memory that was handed out; the other classes
        // start from any name.
        let named: Vec<(String, Kind)> = self
            .names
            .iter()
            .filter(|(_, k)| {
                class != "overflow"
                    || matches!(k, Kind::Addr(_) | Kind::Vmalloc(_) | Kind::Object(_))
            })
            .cloned()
            .collect();
        let Some((name, kind)) = named.choose(&mut self.rng).cloned() else {
            return self.raw_dma(bytes.len());
        };
        let Some(value) = self.value(&name) else {
            return self.raw_dma(bytes.len());
        };
        if class == "raw-dma" {
            return self.raw_dma(bytes.len());
        }
        let off = self.rng.gen_range(0..64u64);
        match class {
            // Past the end of an object: a heap overflow.
            "overflow" => match kind {
                Kind::Addr(s) | Kind::Vmalloc(s) => (
                    format!("write {name} {} {bytes}", s.saturating_sub(2)),
                    None,
                ),
                _ => (format!("write {name} {off} {bytes}"), None),
            },
            // Its struct page (through the MMU, at the vmemmap address).
            "struct-page" => {
                let mm = self.shell.machine.mm();
                let page = match kind {
                    Kind::Page(_) => Some(value),
                    _ => mm
                        .kernel_virt_to_phys(value)
                        .and_then(|p| mm.pfn_to_page(kmemlab_mm::Pfn(p >> 12)).ok())
                        .map(|pg| mm.struct_page_address(pg).0),
                };
                match page {
                    Some(p) => (format!("write {p:#x} {off} {bytes}"), None),
                    None => (format!("write {name} 0 {bytes}"), None),
                }
            }
            // Its slab's struct page, or its kmem_cache.
            "slab-page" | "kmem-cache" => {
                let mm = self.shell.machine.mm();
                let target = if class == "slab-page" {
                    mm.virt_to_slab(VirtAddr(value))
                        .map(|(_, pg)| mm.struct_page_address(pg).0)
                } else {
                    mm.object_info(VirtAddr(value)).map(|o| o.cache.0)
                };
                match target {
                    Some(t) => (format!("write {t:#x} {off} {bytes}"), None),
                    None => (format!("poke {name} {off} 0x41"), None),
                }
            }
            // The page tables that map it: an entry, by DMA at its physical address.
            "page-table" => {
                let walk = self.shell.machine.walk(VirtAddr(value));
                match walk.steps.choose(&mut self.rng) {
                    Some(step) => {
                        let entry =
                            step.table.0 + step.index as u64 * 8 + self.rng.gen_range(0..8u64);
                        let dev = self.dma64();
                        self.lines.push(dev.0);
                        (
                            format!(
                                "dma {} to {entry:#x} {} {}",
                                dev.1,
                                self.rng.gen_range(1..9),
                                self.rng.r#gen::<u8>()
                            ),
                            None,
                        )
                    }
                    None => (format!("poke {name} {off} 0x41"), None),
                }
            }
            // A boot-reserved region (mem_map, per-CPU areas, ...), by DMA.
            "reserved" => self.reserved_dma(),
            // Anything in RAM, by DMA.
            _ => self.raw_dma(bytes.len()),
        }
    }

    /// Whether a class of input may be generated: not a pending one unless asked, and
    /// one of `KMEMLAB_FUZZ_CLASSES` when that is set.
    fn allowed(&self, class: &str) -> bool {
        let only = std::env::var("KMEMLAB_FUZZ_CLASSES").ok();
        let chosen = only.is_none_or(|list| list.split(',').any(|c| c == class));
        chosen && (self.pending || !PENDING_CLASSES.contains(&class))
    }

    fn hex_bytes(&mut self) -> String {
        let n = self.rng.gen_range(1..=16);
        let fill = *[0x00u8, 0xff, 0x41, 0x6b].choose(&mut self.rng).unwrap();
        let bytes: String = (0..n)
            .map(|_| {
                if self.rng.gen_bool(0.7) {
                    fill
                } else {
                    self.rng.r#gen()
                }
            })
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("0x{bytes}")
    }

    /// A 64-bit device for corruption by DMA: the line that plugs it in (a harmless
    /// `check` when it exists) and its name.
    fn dma64(&mut self) -> (String, String) {
        let name = "corrupter".to_string();
        if self.devices.contains(&name) {
            return ("check".into(), name);
        }
        self.devices.push(name.clone());
        (format!("dev {name} mask=64"), name)
    }

    fn reserved_dma(&mut self) -> (String, Option<Kind>) {
        let regions: Vec<(u64, u64)> = self
            .shell
            .machine
            .mm()
            .memblock()
            .reserved()
            .regions()
            .iter()
            .map(|r| (r.base, r.size))
            .collect();
        let Some(&(base, size)) = regions.choose(&mut self.rng) else {
            return self.raw_dma(8);
        };
        let at = base + self.rng.gen_range(0..size.max(1));
        let dev = self.dma64();
        self.lines.push(dev.0);
        let len = self.rng.gen_range(1..64);
        (
            format!("dma {} to {at:#x} {len} {}", dev.1, self.rng.r#gen::<u8>()),
            None,
        )
    }

    /// `len` bytes by DMA anywhere in RAM (a `check` unless the class `raw-dma` is on).
    fn raw_dma(&mut self, len: usize) -> (String, Option<Kind>) {
        if !self.allowed("raw-dma") {
            return ("check".into(), None);
        }
        let ram = self.shell.machine.config().ram;
        let at = self.rng.gen_range(0..ram);
        let dev = self.dma64();
        self.lines.push(dev.0);
        (
            format!("dma {} to {at:#x} {len} {}", dev.1, self.rng.r#gen::<u8>()),
            None,
        )
    }

    /// Run one line (the generator's extra lines are already in `lines` and are run
    /// first); keep its result's name.
    fn step(&mut self, journal: &mut dyn FnMut(&str)) -> Result<(), String> {
        let before = self.lines.len();
        let (line, kind) = self.command();
        let line = match &kind {
            Some(_) if self.rng.gen_ratio(4, 5) => {
                let name = self.fresh("v");
                format!("{name} = {line}")
            }
            _ => line,
        };
        self.lines.push(line);
        for i in before..self.lines.len() {
            let text = self.lines[i].clone();
            journal(&text);
            let shell = &mut self.shell;
            let outcome = catching(|| shell.exec_line(i + 1, &text).map(|o| (o.name, o.result)))?;
            if let (
                Some((
                    Some(name),
                    Ok(Value::Number(..) | Value::Address(..) | Value::Addresses(..)),
                )),
                Some(kind),
            ) = (outcome, &kind)
            {
                self.names.push((name, kind.clone()));
            }
        }
        Ok(())
    }

    /// Generate and run the script; the panic and the script so far if one panicked.
    fn run(mut self, journal: &mut dyn FnMut(&str)) -> Result<Vec<String>, (String, Vec<String>)> {
        journal(&self.lines[0].clone());
        let n = self.rng.gen_range(4..MAX_SCRIPT_LINES);
        while self.lines.len() < n {
            if let Err(panic) = self.step(journal) {
                return Err((panic, self.lines));
            }
        }
        let mut shell = self.shell;
        match catching(|| shell_target::inspect(&mut shell)) {
            Ok(()) => Ok(self.lines),
            Err(panic) => Err((panic, self.lines)),
        }
    }
}

/// The number of pages of a `vmap` count argument (0 if it does not parse).
fn count_pages(count: &str) -> u64 {
    kmemlab_sim::parse_size(count)
        .unwrap_or(0)
        .saturating_mul(4096)
}

/// A size argument's bytes (0 if it does not parse).
fn size_of(size: &str) -> u64 {
    kmemlab_sim::parse_size(size).unwrap_or(0)
}

// ----- the tests ------------------------------------------------------------------------

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn settings() -> (u64, u64, bool) {
    (
        env_u64("KMEMLAB_FUZZ_SEED", 1),
        env_u64("KMEMLAB_FUZZ_SCRIPTS", 6000),
        std::env::var_os("KMEMLAB_FUZZ_PENDING").is_some(),
    )
}

/// Minimise a failing script in-process: lines are dropped while the panic stays at the
/// same place.
fn minimise_in_process(lines: &[String], panic: &str) -> Vec<String> {
    let site = panic_site(panic).to_string();
    minimise(
        lines,
        &mut |text| matches!(replay(text), Err(p) if panic_site(&p) == site),
    )
}

/// Generate and run script `index`; its panic and lines if it panicked (a panic while
/// booting its machine has no lines).
fn run_one(
    seed: u64,
    index: u64,
    pending: bool,
    journal: &mut dyn FnMut(&str),
) -> Result<(), (String, Vec<String>)> {
    let generator = catching(|| Gen::new(seed, index, pending))
        .map_err(|panic| (format!("boot panicked: {panic}"), Vec::new()))?;
    generator.run(journal).map(drop)
}

/// The report of a script that panicked, with the script minimised in-process.
fn failure_report(seed: u64, index: u64, panic: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return format!("script {index}: {panic}");
    }
    let small = minimise_in_process(lines, panic);
    format!(
        "seed {seed} script {index} panicked: {panic}\n--- script ({} lines) ---\n{}\n--- minimised ({} lines) ---\n{}\n",
        lines.len(),
        lines.join("\n"),
        small.len(),
        small.join("\n")
    )
}

/// Run the scripts of `range` in-process, one after the other; the failures' reports.
fn run_in_process(seed: u64, range: std::ops::Range<u64>, pending: bool) -> Vec<String> {
    range
        .filter_map(|index| {
            let (panic, lines) = run_one(seed, index, pending, &mut |_| {}).err()?;
            Some(failure_report(seed, index, &panic, &lines))
        })
        .collect()
}

/// Run the scripts of `range` in one child process per host CPU (this test binary, each
/// given a contiguous share and `KMEMLAB_FUZZ_WORKER`), or in-process on a one-CPU host;
/// the failures' reports. Processes rather than threads: in one process, the host's TLB
/// flushes for each machine's memory (a copy-on-write of a zero page, an unmap)
/// interrupt every other CPU running that process. Measured when boot still read its
/// blank `mem_map` before writing it, two threads took longer than one; two processes,
/// half as long. A worker that dies of a signal also fails the test with its status.
fn run_in_workers(seed: u64, range: std::ops::Range<u64>, pending: bool) -> Vec<String> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let count = range.end - range.start;
    if workers == 1 || count < 2 * workers {
        return run_in_process(seed, range, pending);
    }
    let exe = std::env::current_exe().expect("the test binary");
    let children: Vec<_> = (0..workers)
        .map(|k| {
            let first = range.start + count * k / workers;
            let next = range.start + count * (k + 1) / workers;
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "script_fuzz::random_scripts_do_not_panic",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("KMEMLAB_FUZZ_WORKER", "1")
                .env("KMEMLAB_FUZZ_SEED", seed.to_string())
                .env("KMEMLAB_FUZZ_FIRST", first.to_string())
                .env("KMEMLAB_FUZZ_SCRIPTS", (next - first).to_string())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("a fuzzer worker")
        })
        .collect();
    children
        .into_iter()
        .filter_map(|child| {
            let out = child.wait_with_output().expect("a fuzzer worker");
            (!out.status.success()).then(|| {
                format!(
                    "a worker failed ({}):\n{}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        })
        .collect()
}

#[test]
fn random_scripts_do_not_panic() {
    if let Some(path) = std::env::var_os("KMEMLAB_FUZZ_REPLAY") {
        // A child of the isolated mode, asked to replay one script.
        let text = std::fs::read_to_string(path).expect("the script to replay");
        shell_target::run_script(&text);
        return;
    }
    let (seed, count, pending) = settings();
    if let Some(path) = std::env::var_os("KMEMLAB_FUZZ_MINIMISE") {
        return isolated::minimise_file(Path::new(&path));
    }
    if std::env::var_os("KMEMLAB_FUZZ_ISOLATE").is_some() {
        return isolated::run_parent(seed, count);
    }
    let first = env_u64("KMEMLAB_FUZZ_FIRST", 0);
    let journal_path = std::env::var_os("KMEMLAB_FUZZ_JOURNAL").map(PathBuf::from);
    println!("script fuzzer: seed {seed} (KMEMLAB_FUZZ_SEED), scripts {first}..{} (KMEMLAB_FUZZ_SCRIPTS), pending classes {}", first + count, if pending { "on" } else { "off" });
    let failures = match journal_path {
        Some(path) => {
            // A child of the isolated mode: one thread; the first panic ends the process
            // and the parent minimises the journal.
            for index in first..first + count {
                let mut journal = journal_writer(&path, index);
                if let Err(panic) = run_one(seed, index, pending, &mut journal) {
                    println!("script {index} panicked: {}", panic.0);
                    std::process::exit(101);
                }
            }
            Vec::new()
        }
        None if std::env::var_os("KMEMLAB_FUZZ_WORKER").is_some() => {
            run_in_process(seed, first..first + count, pending)
        }
        None => run_in_workers(seed, first..first + count, pending),
    };
    assert!(
        failures.is_empty(),
        "{} of {count} scripts panicked (seed {seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Where the child writes each line before running it, so that the parent knows the
/// script that killed it.
fn journal_writer(path: &Path, index: u64) -> impl FnMut(&str) + use<> {
    let mut file = std::fs::File::create(path).expect("the journal");
    writeln!(file, "# script {index}").expect("the journal");
    move |line: &str| {
        writeln!(file, "{line}").expect("the journal");
        file.flush().expect("the journal");
    }
}

/// The committed regressions replay without panic (`pending/` is not replayed).
#[test]
fn regressions_replay_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "kmem"));
    files.sort();
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).expect("a regression script");
            replay(&text).err().map(|p| format!("{}: {p}", f.display()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The minimiser keeps exactly what makes a failure (here: two particular lines).
#[test]
fn minimiser_keeps_only_the_lines_that_fail() {
    let lines: Vec<String> = ["#!kmemlab --ram 64M", "a", "b", "x", "c", "d", "y", "e"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let small = minimise(&lines, &mut |t| t.contains("\nx\n") && t.contains("\ny\n"));
    assert_eq!(small, ["#!kmemlab --ram 64M", "x", "y"]);
}

/// The development mode: scripts in child processes, to catch host crashes and hangs.
mod isolated {
    use super::*;
    use std::process::{Command, ExitStatus, Stdio};
    use std::time::{Duration, Instant};

    /// How a child ended.
    #[derive(Debug, PartialEq, Eq)]
    pub enum End {
        Passed,
        /// Exit status (a panic's test failure, an abort) or signal.
        Failed(String),
        Hung,
    }

    fn describe(status: ExitStatus) -> String {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (_, Some(sig)) => format!("signal {sig}"),
            (Some(code), _) => format!("exit {code}"),
            _ => "unknown".into(),
        }
    }

    /// Run this test in a child with `env`, killing it after `timeout`.
    pub fn child(env: &[(&str, String)], timeout: Duration, out: &Path) -> End {
        let exe = std::env::current_exe().expect("the test binary");
        let log = std::fs::File::create(out).expect("the child's log");
        let mut cmd = Command::new(exe);
        cmd.args([
            "--exact",
            "script_fuzz::random_scripts_do_not_panic",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_remove("KMEMLAB_FUZZ_ISOLATE")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("the log"))
        .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut c = cmd.spawn().expect("spawn a child");
        let start = Instant::now();
        loop {
            if let Some(status) = c.try_wait().expect("wait for the child") {
                return if status.success() {
                    End::Passed
                } else {
                    End::Failed(describe(status))
                };
            }
            if start.elapsed() > timeout {
                let _ = c.kill();
                let _ = c.wait();
                return End::Hung;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn run_parent(seed: u64, count: u64) {
        let timeout = Duration::from_secs(env_u64("KMEMLAB_FUZZ_TIMEOUT", 60));
        let dir = std::env::var_os("KMEMLAB_FUZZ_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("script-fuzz"));
        let max_failures = env_u64("KMEMLAB_FUZZ_MAX_FAILURES", 10);
        std::fs::create_dir_all(&dir).expect("the output directory");
        let journal = dir.join("journal.kmem");
        let mut next = 0;
        let mut found = Vec::new();
        while next < count && (found.len() as u64) < max_failures {
            let env = [
                ("KMEMLAB_FUZZ_SEED", seed.to_string()),
                ("KMEMLAB_FUZZ_FIRST", next.to_string()),
                ("KMEMLAB_FUZZ_SCRIPTS", (count - next).to_string()),
                ("KMEMLAB_FUZZ_JOURNAL", journal.display().to_string()),
            ];
            let end = child(&env, timeout, &dir.join("child.log"));
            if end == End::Passed {
                break;
            }
            let text = std::fs::read_to_string(&journal).unwrap_or_default();
            let index: u64 = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# script "))
                .and_then(|n| n.parse().ok())
                .unwrap_or(next);
            let lines: Vec<String> = text.lines().skip(1).map(String::from).collect();
            let small = minimise_in_children(&lines, &end, &dir, timeout);
            let out = dir.join(format!("seed{seed}-script{index}.kmem"));
            // The machine line stays first; the note follows it.
            let mut text = small.clone();
            text.insert(
                1.min(text.len()),
                format!("# seed {seed} script {index}: {end:?}"),
            );
            std::fs::write(&out, text.join("\n") + "\n").expect("write the reproduction");
            println!(
                "script {index}: {end:?}; minimised to {} lines: {}",
                small.len(),
                out.display()
            );
            found.push(out);
            next = index + 1;
        }
        println!("isolated run: {} failing scripts of {count}", found.len());
    }

    /// `KMEMLAB_FUZZ_MINIMISE=<script>`: minimise a script that fails in a child (crash,
    /// hang or panic), keeping the way it fails; writes `<script>.min`.
    pub fn minimise_file(path: &Path) {
        let timeout = Duration::from_secs(env_u64("KMEMLAB_FUZZ_TIMEOUT", 60));
        let dir = std::env::temp_dir().join(format!("kmemlab-minimise-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let text = std::fs::read_to_string(path).expect("the script");
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with("# "))
            .map(String::from)
            .collect();
        let candidate = dir.join("candidate.kmem");
        std::fs::write(&candidate, lines.join("\n") + "\n").expect("write the script");
        let env = [("KMEMLAB_FUZZ_REPLAY", candidate.display().to_string())];
        let end = child(&env, timeout, &dir.join("candidate.log"));
        assert_ne!(end, End::Passed, "{} does not fail", path.display());
        let small = minimise_in_children(&lines, &end, &dir, timeout);
        let out = path.with_extension("min");
        std::fs::write(&out, small.join("\n") + "\n").expect("write the result");
        println!(
            "{end:?}: {} -> {} lines: {}",
            lines.len(),
            small.len(),
            out.display()
        );
    }

    fn minimise_in_children(
        lines: &[String],
        end: &End,
        dir: &Path,
        timeout: Duration,
    ) -> Vec<String> {
        let candidate = dir.join("candidate.kmem");
        let limit = timeout.min(Duration::from_secs(20));
        minimise(lines, &mut |text| {
            std::fs::write(&candidate, text).expect("write a candidate");
            let env = [("KMEMLAB_FUZZ_REPLAY", candidate.display().to_string())];
            child(&env, limit, &dir.join("candidate.log")) == *end
        })
    }
}
