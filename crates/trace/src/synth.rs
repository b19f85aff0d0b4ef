//! Traces for benchmarks: the shared Linux 3.5 trace repeated, and a generated trace in
//! the shape a Linux 6.18 machine's ftrace prints (`trace-cmd report` / `trace_pipe`),
//! deterministic from a seed, so that no large file has to be kept in the repository.
//!
//! The generated events follow `include/trace/events/kmem.h` as of 6.18:
//!
//! ```text
//! kmalloc:          call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s node=%d accounted=%s
//! kmem_cache_alloc: call_site=%pS ptr=%p name=%s bytes_req=%zu bytes_alloc=%zu gfp_flags=%s node=%d accounted=%s
//! kfree:            call_site=%pS ptr=%p
//! kmem_cache_free:  call_site=%pS ptr=%p name=%s
//! ```
//!
//! (`name=` of `kmem_cache_alloc` is the 2025 patch "kmem/tracing: Add kmem name to
//! kmem_cache_alloc tracepoint"; `kmalloc`'s `accounted=` is `__GFP_ACCOUNT`,
//! `kmem_cache_alloc`'s also `SLAB_ACCOUNT`.) Call sites are symbolic (`%pS`:
//! `function+0xoff/0xsize`), pointers are direct-map addresses as `no_hash_pointers`
//! prints them, the header columns are ftrace's (`TASK-PID [CPU] FLAGS TIMESTAMP:`, five
//! flag characters as 6.x prints them). The live set is bounded, so a replay of any
//! length runs in bounded memory; freed addresses are reused, as a slab allocator does.

use std::io::Write;
use std::path::PathBuf;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthOptions {
    /// Events to write.
    pub events: u64,
    /// The seed of every choice.
    pub seed: u64,
    /// The most objects live at once.
    pub max_live: usize,
    /// CPUs the events are spread over.
    pub cpus: u32,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            events: 100_000,
            seed: 1,
            max_live: 8192,
            cpus: 4,
        }
    }
}

/// The Linux 3.5 SLUB boot trace of `tests/data/traces/` without its comment lines,
/// repeated `copies` times (what the replay benchmark has always measured).
pub fn shared_trace_repeated(copies: usize) -> std::io::Result<Vec<u8>> {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/traces/linux-3.5-i386-boot-slub.trace"
    ));
    let text = std::fs::read_to_string(&path)?;
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| [l, "\n"])
        .collect();
    Ok(body.repeat(copies).into_bytes())
}

/// A generated 6.18-format trace of `options.events` events, with ftrace's header.
pub fn modern_trace(options: &SynthOptions) -> Vec<u8> {
    let mut out = Vec::with_capacity(options.events as usize * 150);
    let mut trace = ModernTrace::new(options);
    trace.write_header(&mut out);
    while trace.write_event(&mut out) {}
    out
}

/// kmalloc's size classes on x86_64 (`kmalloc_info[]`, 6.x, no `kmalloc-rcl`/`cg`).
const KMALLOC_SIZES: [u64; 13] = [
    8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
];

/// A named cache: name, `object_size` (`bytes_req`), `size` (`bytes_alloc`),
/// `SLAB_ACCOUNT`, an allocating and a freeing call site. The sizes are of the shape a
/// 6.x x86_64 machine shows, not read from one.
struct CacheKind {
    name: &'static str,
    object_size: u64,
    size: u64,
    account: bool,
    alloc_site: &'static str,
    free_site: &'static str,
}

const CACHES: [CacheKind; 6] = [
    CacheKind {
        name: "dentry",
        object_size: 192,
        size: 192,
        account: true,
        alloc_site: "__d_alloc+0x2d/0x1f0",
        free_site: "__d_free+0x24/0x30",
    },
    CacheKind {
        name: "filp",
        object_size: 232,
        size: 256,
        account: true,
        alloc_site: "alloc_empty_file+0x4c/0xe0",
        free_site: "__fput+0x113/0x2b0",
    },
    CacheKind {
        name: "vm_area_struct",
        object_size: 176,
        size: 176,
        account: true,
        alloc_site: "vm_area_alloc+0x1e/0xb0",
        free_site: "vm_area_free_rcu_cb+0x33/0x40",
    },
    CacheKind {
        name: "buffer_head",
        object_size: 104,
        size: 104,
        account: false,
        alloc_site: "folio_alloc_buffers+0x9c/0x1d0",
        free_site: "free_buffer_head+0x24/0x60",
    },
    CacheKind {
        name: "radix_tree_node",
        object_size: 576,
        size: 584,
        account: true,
        alloc_site: "xas_alloc+0x9a/0xb0",
        free_site: "radix_tree_node_rcu_free+0x3b/0x50",
    },
    CacheKind {
        name: "ext4_inode_cache",
        object_size: 1112,
        size: 1112,
        account: true,
        alloc_site: "ext4_alloc_inode+0x1a/0x180",
        free_site: "ext4_free_in_core_inode+0x38/0x70",
    },
];

/// kmalloc callers, as `%pS` prints them.
const KMALLOC_SITES: [&str; 8] = [
    "getname_flags+0x4f/0x1f0",
    "load_elf_binary+0x1ad/0x1530",
    "seq_open+0x2c/0x80",
    "__kmalloc_node_track_caller_noprof+0x1c9/0x430",
    "kvmalloc_node_noprof+0x3e/0xf0",
    "alloc_pipe_info+0xa8/0x1c0",
    "sk_prot_alloc+0x35/0x130",
    "kernfs_fop_open+0x1e5/0x3d0",
];

/// kfree callers.
const KFREE_SITES: [&str; 4] = [
    "putname+0x5a/0x70",
    "seq_release+0x24/0x30",
    "free_pipe_info+0x9b/0xc0",
    "kernfs_fop_release+0x5c/0xa0",
];

/// Tasks (`comm`, pid).
const TASKS: [(&str, u32); 5] = [
    ("systemd-journal", 412),
    ("bash", 4242),
    ("kworker/u8:2", 118),
    ("sshd", 1007),
    ("find", 5120),
];

/// A live object of the generated trace.
#[derive(Copy, Clone)]
struct Live {
    ptr: u64,
    /// `KMALLOC_SIZES` index, or `KMALLOC_SIZES.len() + cache index`.
    class: usize,
}

/// The generator's state: a stream of lines from a seed.
pub struct ModernTrace {
    options: SynthOptions,
    rng: u64,
    written: u64,
    /// Nanoseconds since boot of the last event.
    now_ns: u64,
    live: Vec<Live>,
    /// Per class: addresses freed and ready for reuse, and the next fresh one.
    free_addrs: Vec<Vec<u64>>,
    next_addr: Vec<u64>,
}

impl ModernTrace {
    /// A generator from `options`.
    pub fn new(options: &SynthOptions) -> ModernTrace {
        let classes = KMALLOC_SIZES.len() + CACHES.len();
        ModernTrace {
            options: options.clone(),
            rng: options.seed ^ 0x9e37_79b9_7f4a_7c15,
            written: 0,
            now_ns: 5_000_000_000,
            live: Vec::new(),
            free_addrs: vec![Vec::new(); classes],
            // Each class has its own 4 GiB of the direct map.
            next_addr: (0..classes as u64)
                .map(|c| 0xffff_8880_0000_0000 + (c << 32))
                .collect(),
        }
    }

    /// splitmix64: the next random word.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// ftrace's comment header, as `cat trace` prints it on 6.x.
    pub fn write_header(&self, out: &mut Vec<u8>) {
        let _ = write!(
            out,
            "# tracer: nop\n#\n# entries-in-buffer/entries-written: {0}/{0}   #P:{1}\n#\n",
            self.options.events, self.options.cpus
        );
        out.extend_from_slice(
            b"#                                _-----=> irqs-off/BH-disabled\n\
              #                               / _----=> need-resched\n\
              #                              | / _---=> hardirq/softirq\n\
              #                              || / _--=> preempt-depth\n\
              #                              ||| / _-=> migrate-disable\n\
              #                              |||| /     delay\n\
              #           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n\
              #              | |         |   |||||     |         |\n",
        );
    }

    /// Write the next event's line; false once every event is written.
    pub fn write_event(&mut self, out: &mut Vec<u8>) -> bool {
        if self.written >= self.options.events {
            return false;
        }
        self.written += 1;
        self.now_ns += 200 + self.below(3000);
        let cpu = self.below(u64::from(self.options.cpus.max(1)));
        let (task, pid) = TASKS[self.below(TASKS.len() as u64) as usize];
        // Mostly process context; some softirq (atomic allocations) and irqs-off lines.
        let ctx = self.below(16);
        let flags = match ctx {
            0 => "..s1.",
            1 => "d..1.",
            _ => ".....",
        };
        let _ = write!(
            out,
            "{task:>16}-{pid:<7} [{cpu:03}] {flags} {:>6}.{:06}: ",
            self.now_ns / 1_000_000_000,
            self.now_ns / 1000 % 1_000_000
        );
        let free = !self.live.is_empty()
            && (self.live.len() >= self.options.max_live || self.below(2) == 0);
        if free {
            self.write_free(out);
        } else {
            self.write_alloc(out, ctx == 0);
        }
        out.push(b'\n');
        true
    }

    fn take_addr(&mut self, class: usize, size: u64) -> u64 {
        if let Some(a) = self.free_addrs[class].pop() {
            return a;
        }
        let a = self.next_addr[class];
        self.next_addr[class] += size.next_multiple_of(8);
        a
    }

    fn write_alloc(&mut self, out: &mut Vec<u8>, atomic: bool) {
        let node = if self.below(8) == 0 { 0 } else { -1 };
        if self.below(3) == 0 {
            let i = self.below(CACHES.len() as u64) as usize;
            let c = &CACHES[i];
            let class = KMALLOC_SIZES.len() + i;
            let ptr = self.take_addr(class, c.size);
            self.live.push(Live { ptr, class });
            let gfp = if atomic {
                "GFP_ATOMIC|__GFP_NOWARN"
            } else {
                "GFP_KERNEL"
            };
            let _ = write!(
                out,
                "kmem_cache_alloc: call_site={} ptr={ptr:016x} name={} bytes_req={} \
                 bytes_alloc={} gfp_flags={gfp} node={node} accounted={}",
                c.alloc_site, c.name, c.object_size, c.size, c.account
            );
            return;
        }
        // Small sizes are the common ones.
        let class = (self.below(KMALLOC_SIZES.len() as u64) * self.below(1000) / 1000) as usize;
        let size = KMALLOC_SIZES[class];
        let low = if class == 0 {
            1
        } else {
            KMALLOC_SIZES[class - 1] + 1
        };
        let bytes_req = low + self.below(size - low + 1);
        let ptr = self.take_addr(class, size);
        self.live.push(Live { ptr, class });
        let (gfp, accounted) = match (atomic, self.below(4)) {
            (true, _) => ("GFP_ATOMIC", false),
            (false, 0) => ("GFP_KERNEL_ACCOUNT", true),
            (false, 1) => ("GFP_KERNEL|__GFP_ZERO", false),
            _ => ("GFP_KERNEL", false),
        };
        let site = KMALLOC_SITES[self.below(KMALLOC_SITES.len() as u64) as usize];
        let _ = write!(
            out,
            "kmalloc: call_site={site} ptr={ptr:016x} bytes_req={bytes_req} \
             bytes_alloc={size} gfp_flags={gfp} node={node} accounted={accounted}"
        );
    }

    fn write_free(&mut self, out: &mut Vec<u8>) {
        let i = self.below(self.live.len() as u64) as usize;
        let obj = self.live.swap_remove(i);
        self.free_addrs[obj.class].push(obj.ptr);
        if let Some(c) = obj.class.checked_sub(KMALLOC_SIZES.len()) {
            let c = &CACHES[c];
            let _ = write!(
                out,
                "kmem_cache_free: call_site={} ptr={:016x} name={}",
                c.free_site, obj.ptr, c.name
            );
        } else {
            let site = KFREE_SITES[self.below(KFREE_SITES.len() as u64) as usize];
            let _ = write!(out, "kfree: call_site={site} ptr={:016x}", obj.ptr);
        }
    }
}
