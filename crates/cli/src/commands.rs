//! The shell's command table: each command is one entry naming a kernel function, its
//! arguments in the kernel's order, and a small handler.

use kmemlab_mm::{procfs, Context, Mm, Pfn, VirtAddr};
use kmemlab_sim::{format_size, SimPlatform};
use serde_json::json;

use crate::describe::page_info;
use crate::dma_commands as dma;
use crate::output::{addr as addr_json, opt_addr};
use crate::shell::{Shell, Value};
use crate::vmcommands as vm;
use crate::workload_commands as wl;

/// A handler: the shell and the arguments after the command name.
pub type Handler = fn(&mut Shell, &[&str]) -> Result<Value, String>;

/// One shell command.
pub struct Command {
    /// The name, as the kernel function.
    pub name: &'static str,
    /// Arguments, in the kernel's order.
    pub usage: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Does it change the machine (allocate, free, write, map, set CPU state)? Such
    /// commands are refused once the machine has panicked; the others only read, and
    /// still work for a post-mortem.
    pub mutates: bool,
    /// What it does.
    pub run: Handler,
}

/// Every command.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "help",
        usage: "[command]",
        help: "list commands, or describe one",
        mutates: false,
        run: help,
    },
    Command {
        name: "alloc_pages",
        usage: "<gfp> <order>",
        help: "2^order contiguous pages; returns the struct page *",
        mutates: true,
        run: alloc_pages,
    },
    Command {
        name: "__free_pages",
        usage: "<page> <order>",
        help: "free pages from alloc_pages",
        mutates: true,
        run: free_pages_cmd,
    },
    Command {
        name: "__get_free_pages",
        usage: "<gfp> <order>",
        help: "alloc_pages and return the direct-map address",
        mutates: true,
        run: get_free_pages,
    },
    Command {
        name: "get_zeroed_page",
        usage: "<gfp>",
        help: "one zeroed page; returns its address",
        mutates: true,
        run: get_zeroed_page,
    },
    Command {
        name: "free_pages",
        usage: "<addr> <order>",
        help: "free by direct-map address (0 is a no-op)",
        mutates: true,
        run: free_pages_addr,
    },
    Command {
        name: "page_address",
        usage: "<page>",
        help: "direct-map address of a struct page",
        mutates: false,
        run: page_address,
    },
    Command {
        name: "virt_to_page",
        usage: "<addr>",
        help: "struct page of a direct-map address",
        mutates: false,
        run: virt_to_page,
    },
    Command {
        name: "page_to_pfn",
        usage: "<page>",
        help: "page frame number of a struct page",
        mutates: false,
        run: page_to_pfn,
    },
    Command {
        name: "pfn_to_page",
        usage: "<pfn>",
        help: "struct page of a page frame number",
        mutates: false,
        run: pfn_to_page,
    },
    Command {
        name: "page_zone",
        usage: "<page>",
        help: "the zone of a page",
        mutates: false,
        run: page_zone,
    },
    Command {
        name: "info",
        usage: "<page|addr>",
        help: "everything about a page or slab object: cache, slab, pfn, phys, zone, state",
        mutates: false,
        run: info,
    },
    Command {
        name: "kmalloc",
        usage: "<size> <gfp>",
        help: "a kmalloc object; returns its address",
        mutates: true,
        run: kmalloc,
    },
    Command {
        name: "kzalloc",
        usage: "<size> <gfp>",
        help: "a zeroed kmalloc object",
        mutates: true,
        run: kzalloc,
    },
    Command {
        name: "kcalloc",
        usage: "<n> <size> <gfp>",
        help: "a zeroed array (overflow checked)",
        mutates: true,
        run: kcalloc,
    },
    Command {
        name: "krealloc",
        usage: "<addr> <size> <gfp>",
        help: "resize (in place while it fits)",
        mutates: true,
        run: krealloc,
    },
    Command {
        name: "kfree",
        usage: "<addr>",
        help: "free a kmalloc object (NULL is a no-op)",
        mutates: true,
        run: kfree,
    },
    Command {
        name: "ksize",
        usage: "<addr>",
        help: "usable size of a kmalloc object",
        mutates: false,
        run: ksize,
    },
    Command {
        name: "kmem_cache_create",
        usage: "<name> <size> [align] [flags]",
        help: "a cache; flags like SLAB_HWCACHE_ALIGN|SLAB_RED_ZONE",
        mutates: true,
        run: kmem_cache_create,
    },
    Command {
        name: "kmem_cache_alloc",
        usage: "<cache> <gfp>",
        help: "an object of a cache",
        mutates: true,
        run: kmem_cache_alloc,
    },
    Command {
        name: "kmem_cache_free",
        usage: "<cache> <addr>",
        help: "free an object to its cache",
        mutates: true,
        run: kmem_cache_free,
    },
    Command {
        name: "kmem_cache_destroy",
        usage: "<cache>",
        help: "destroy a cache (refused while objects remain)",
        mutates: true,
        run: kmem_cache_destroy,
    },
    Command {
        name: "kmem_cache_shrink",
        usage: "<cache>",
        help: "give a cache's empty slabs back; returns pages freed",
        mutates: true,
        run: kmem_cache_shrink,
    },
    Command {
        name: "slab",
        usage: "<cache>",
        help: "a cache's layout, per-CPU and per-node state",
        mutates: false,
        run: slab_state,
    },
    Command {
        name: "poke",
        usage: "<addr> <offset> <byte>",
        help: "write one byte (corrupt memory on purpose; offset may be negative)",
        mutates: true,
        run: poke,
    },
    Command {
        name: "dump",
        usage: "<addr> <len>",
        help: "hex dump of kernel memory",
        mutates: false,
        run: dump,
    },
    Command {
        name: "vmalloc",
        usage: "<size>",
        help: "virtually contiguous memory (GFP_KERNEL); returns its address",
        mutates: true,
        run: vm::vmalloc,
    },
    Command {
        name: "vzalloc",
        usage: "<size>",
        help: "zeroed vmalloc",
        mutates: true,
        run: vm::vzalloc,
    },
    Command {
        name: "__vmalloc",
        usage: "<size> <gfp>",
        help: "vmalloc with explicit GFP flags",
        mutates: true,
        run: vm::vmalloc_gfp,
    },
    Command {
        name: "vmalloc_huge",
        usage: "<size> [gfp]",
        help: "vmalloc with 2 MiB mappings where possible (x86_64)",
        mutates: true,
        run: vm::vmalloc_huge,
    },
    Command {
        name: "vfree",
        usage: "<addr>",
        help: "free a vmalloc area (deferred from interrupt context)",
        mutates: true,
        run: vm::vfree,
    },
    Command {
        name: "dev",
        usage: "<name> mask=<bits>",
        help: "plug in a bus-master DMA device whose driver sets that DMA mask",
        mutates: true,
        run: dma::dev,
    },
    Command {
        name: "dma_map_single",
        usage: "<dev> <addr> <size> <dir>",
        help: "map a direct-map buffer for DMA; returns the bus address",
        mutates: true,
        run: dma::dma_map_single,
    },
    Command {
        name: "dma_unmap_single",
        usage: "<dev> <dma-addr> <size> <dir>",
        help: "unmap it (swiotlb copies back; dma-debug checks size and direction)",
        mutates: true,
        run: dma::dma_unmap_single,
    },
    Command {
        name: "dma_map_sg",
        usage: "<dev> <addr> <size> <dir>",
        help: "a scatterlist of the buffer (vmalloc: page by page), mapped; returns its handle",
        mutates: true,
        run: dma::dma_map_sg,
    },
    Command {
        name: "dma_unmap_sg",
        usage: "<sg>",
        help: "unmap and free a scatterlist from dma_map_sg",
        mutates: true,
        run: dma::dma_unmap_sg,
    },
    Command {
        name: "dma_alloc_coherent",
        usage: "<dev> <size> [gfp]",
        help: "physically contiguous memory within the coherent mask",
        mutates: true,
        run: dma::dma_alloc_coherent,
    },
    Command {
        name: "dma_free_coherent",
        usage: "<dev> <size> <cpu-addr> [dma-addr]",
        help: "free it",
        mutates: true,
        run: dma::dma_free_coherent,
    },
    Command {
        name: "dma",
        usage: "<dev> to|from <dma-addr|sg> <len> [byte]",
        help: "the device writes (to) or reads (from) memory at bus addresses, without the MMU",
        mutates: true,
        run: dma::dma,
    },
    Command {
        name: "kvmalloc",
        usage: "<size> [gfp]",
        help: "kmalloc, falling back to vmalloc above a page when the flags allow blocking",
        mutates: true,
        run: vm::kvmalloc,
    },
    Command {
        name: "kvzalloc",
        usage: "<size> [gfp]",
        help: "kvmalloc, zeroed",
        mutates: true,
        run: vm::kvzalloc,
    },
    Command {
        name: "kvfree",
        usage: "<addr>",
        help: "free kvmalloc memory: vfree or kfree by address",
        mutates: true,
        run: vm::kvfree,
    },
    Command {
        name: "vmap",
        usage: "<page> <count>",
        help: "map count pages from a struct page into the vmalloc area",
        mutates: true,
        run: vm::vmap,
    },
    Command {
        name: "vunmap",
        usage: "<addr>",
        help: "unmap a vmap area (the pages stay allocated)",
        mutates: true,
        run: vm::vunmap,
    },
    Command {
        name: "vmalloc_to_page",
        usage: "<addr>",
        help: "the struct page behind a vmalloc address",
        mutates: false,
        run: vm::vmalloc_to_page,
    },
    Command {
        name: "purge",
        usage: "",
        help: "vm_unmap_aliases(): purge lazily freed areas now (one TLB flush)",
        mutates: true,
        run: vm::purge,
    },
    Command {
        name: "walk",
        usage: "<addr>",
        help: "the page-table walk of an address, level by level",
        mutates: false,
        run: vm::walk,
    },
    Command {
        name: "read",
        usage: "<addr> <offset> <len>",
        help: "read bytes through this CPU's MMU (TLB, then page tables)",
        mutates: false,
        run: vm::read,
    },
    Command {
        name: "write",
        usage: "<addr> <offset> <0xhex|text>",
        help: "write bytes through this CPU's MMU",
        mutates: true,
        run: vm::write,
    },
    Command {
        name: "tlb",
        usage: "",
        help: "per-CPU TLB counters and TLB shootdowns",
        mutates: false,
        run: vm::tlb,
    },
    Command {
        name: "cpu",
        usage: "<n>",
        help: "run the following commands on CPU n",
        mutates: false,
        run: cpu,
    },
    Command {
        name: "ctx",
        usage: "process|softirq|hardirq|nmi",
        help: "run the following commands in that context",
        mutates: false,
        run: ctx,
    },
    Command {
        name: "local_irq_disable",
        usage: "",
        help: "disable interrupts on this CPU (until local_irq_enable)",
        mutates: true,
        run: local_irq_disable,
    },
    Command {
        name: "local_irq_enable",
        usage: "",
        help: "enable interrupts on this CPU",
        mutates: true,
        run: local_irq_enable,
    },
    Command {
        name: "preempt_disable",
        usage: "",
        help: "raise this CPU's preempt count (as spin_lock does)",
        mutates: true,
        run: preempt_disable,
    },
    Command {
        name: "preempt_enable",
        usage: "",
        help: "lower this CPU's preempt count",
        mutates: true,
        run: preempt_enable,
    },
    Command {
        name: "drain_all_pages",
        usage: "",
        help: "return every CPU's per-CPU lists to the buddy lists",
        mutates: true,
        run: drain_all_pages,
    },
    Command {
        name: "pagecache",
        usage: "fill <size> | drop",
        help: "fill the simulated page cache, or drop it",
        mutates: true,
        run: wl::pagecache,
    },
    Command {
        name: "fragment",
        usage: "<zone> <alternate|sparse> [order]",
        help: "pin unmovable pages until the zone has no free block of that order",
        mutates: true,
        run: wl::fragment_cmd,
    },
    Command {
        name: "unfragment",
        usage: "",
        help: "free what the fragment commands pinned",
        mutates: true,
        run: wl::unfragment,
    },
    Command {
        name: "kswapd",
        usage: "",
        help: "run kswapd now: reclaim until the zones are back at the high watermark",
        mutates: true,
        run: wl::kswapd,
    },
    Command {
        name: "cat",
        usage: "/proc/<file>",
        help:
            "print a /proc file (buddyinfo, pagetypeinfo, zoneinfo, meminfo, slabinfo, vmallocinfo, sys/kernel/tainted, sys/vm/*) or /sys/kernel/mm/transparent_hugepage/enabled",
        mutates: false,
        run: cat,
    },
    Command {
        name: "slabinfo",
        usage: crate::slabinfo_command::USAGE,
        help: "tools/mm/slabinfo: caches from /sys/kernel/slab (-r report, -T totals, -L loss, -S size, -A activity, -D activity format, -a aliases)",
        mutates: false,
        run: crate::slabinfo_command::slabinfo,
    },
    Command {
        name: "snapshot",
        usage: crate::snapshot::USAGE,
        help: "write the /proc and /sys/kernel/slab files to a new directory on the host, for procps and the kernel's tools (kmemlab shell only)",
        mutates: false,
        run: crate::snapshot::snapshot_command,
    },
    Command {
        name: "sysctl",
        usage: "[-w] [vm.KEY[=VALUE]]",
        help: "list, read or write the page allocator's /proc/sys/vm tunables (a write recomputes watermarks, reserves, pcp lists)",
        // Reads serve a post-mortem; a write is refused on a halted machine (below).
        mutates: false,
        run: sysctl,
    },
    Command {
        name: "kmem",
        usage: crate::kmem_command::USAGE,
        help: "what an address is, slab caches, free lists, vmap areas, memory usage (crash's kmem)",
        mutates: false,
        run: crate::kmem_command::kmem,
    },
    Command {
        name: "vmstat",
        usage: "",
        help: "the event counters",
        mutates: false,
        run: vmstat,
    },
    Command {
        name: "check",
        usage: "",
        help: "run the invariant checker",
        mutates: false,
        run: check,
    },
    Command {
        name: "reboot",
        usage: "",
        help: "boot a fresh machine with the same flags (after a panic); forgets every name",
        // It replaces the machine rather than changing it, so a panicked one can reboot.
        mutates: false,
        run: reboot,
    },
];

/// Find a command by name.
pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

fn want(args: &[&str], n: usize, usage: &str) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!("expected {n} argument(s): {usage}"))
    }
}

fn help(_: &mut Shell, args: &[&str]) -> Result<Value, String> {
    if let Some(name) = args.first() {
        let c = find(name).ok_or_else(|| format!("no command '{name}'"))?;
        let after_panic = if c.mutates {
            "refused once the machine has panicked"
        } else {
            "works on a panicked machine too"
        };
        return Ok(Value::Text(format!(
            "{} {}\n    {}\n    ({after_panic})",
            c.name, c.usage, c.help
        )));
    }
    let mut text = String::from(
        "commands (arguments in the kernel's order; sizes take K/M/G; flags combine with |):\n",
    );
    for c in COMMANDS {
        text.push_str(&format!("  {:<18} {:<26} {}\n", c.name, c.usage, c.help));
    }
    text.push_str("  name = <command>    keep the result under a name (then use it as name or $name)\n  ! <command>         the command is expected to fail\n");
    text.push_str("a command in which the kernel oopses fails; after a panic only commands that read work (help <command> says), until reboot\n");
    Ok(Value::Text(text.trim_end().to_string()))
}

fn page_value(mm: &Mm<SimPlatform>, page: &kmemlab_mm::Page) -> Value {
    let info = page_info(mm, mm.page_to_pfn(page));
    Value::Address(info.struct_page, format!("struct page *: {}", info.line()))
}

fn alloc_pages(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 2, "<gfp> <order>")?;
    let (gfp, order) = (sh.gfp(args[0])?, sh.order(args[1])?);
    sh.kernel(|mm| {
        mm.alloc_pages(gfp, order)
            .map(|p| page_value(mm, p))
            .map_err(|e| e.to_string())
    })?
}

fn free_pages_cmd(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 2, "<page> <order>")?;
    let (ptr, order) = (sh.number(args[0])?, sh.order(args[1])?);
    sh.kernel(|mm| {
        let page = mm
            .page_at_struct_address(VirtAddr(ptr))
            .ok_or_else(|| format!("{ptr:#x} is not a struct page * of this machine"))?;
        mm.__free_pages(page, order).map_err(|e| e.to_string())?;
        Ok(Value::None)
    })?
}

fn get_free_pages(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 2, "<gfp> <order>")?;
    let (gfp, order) = (sh.gfp(args[0])?, sh.order(args[1])?);
    sh.kernel(|mm| {
        addr_value(
            mm,
            mm.__get_free_pages(gfp, order).map_err(|e| e.to_string())?,
        )
    })?
}

fn get_zeroed_page(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "<gfp>")?;
    let gfp = sh.gfp(args[0])?;
    sh.kernel(|mm| addr_value(mm, mm.get_zeroed_page(gfp).map_err(|e| e.to_string())?))?
}

fn addr_value(mm: &Mm<SimPlatform>, addr: VirtAddr) -> Result<Value, String> {
    let page = mm.virt_to_page(addr).map_err(|e| e.to_string())?;
    let info = page_info(mm, mm.page_to_pfn(page));
    Ok(Value::Address(addr.0, info.line()))
}

fn free_pages_addr(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 2, "<addr> <order>")?;
    let (addr, order) = (sh.number(args[0])?, sh.order(args[1])?);
    sh.kernel(|mm| {
        mm.free_pages(VirtAddr(addr), order)
            .map(|_| Value::None)
            .map_err(|e| e.to_string())
    })?
}

fn with_page<T>(
    sh: &mut Shell,
    arg: &str,
    f: impl FnOnce(&Mm<SimPlatform>, &kmemlab_mm::Page) -> T,
) -> Result<T, String> {
    let ptr = sh.number(arg)?;
    sh.kernel(|mm| {
        let page = mm
            .page_at_struct_address(VirtAddr(ptr))
            .ok_or_else(|| format!("{ptr:#x} is not a struct page * of this machine"))?;
        Ok(f(mm, page))
    })?
}

fn page_address(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "<page>")?;
    with_page(sh, args[0], |mm, page| match mm.page_address(page) {
        Some(v) => Ok(Value::Address(v.0, "direct-map address".into())),
        None => Err("HighMem page: no permanent kernel address (kmap it)".to_string()),
    })?
}

fn virt_to_page(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "<addr>")?;
    let addr = sh.number(args[0])?;
    sh.kernel(|mm| {
        let page = mm.virt_to_page(VirtAddr(addr)).map_err(|e| e.to_string())?;
        Ok(page_value(mm, page))
    })?
}

fn page_to_pfn(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "<page>")?;
    with_page(sh, args[0], |mm, page| {
        let pfn = mm.page_to_pfn(page);
        Value::Number(pfn.0, format!("pfn, phys {}", pfn.phys()))
    })
}

fn pfn_to_page(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "<pfn>")?;
    let pfn = sh.number(args[0])?;
    sh.kernel(|mm| {
        let page = mm.pfn_to_page(Pfn(pfn)).map_err(|e| e.to_string())?;
        Ok(page_value(mm, page))
    })?
}

fn page_zone(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "<page>")?;
    with_page(sh, args[0], |mm, page| {
        Value::Text(mm.page_zone(page).name().to_string())
    })
}

fn info(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "<page|addr>")?;
    let x = sh.number(args[0])?;
    if let Some(v) = slab_object_info(sh.machine.mm(), VirtAddr(x)) {
        return Ok(v);
    }
    if sh.machine.mm().is_vmalloc_addr(VirtAddr(x)) {
        return vm::vmalloc_info(sh.machine.mm(), VirtAddr(x))
            .ok_or_else(|| format!("{x:#x} is in the vmalloc area but no live area holds it"));
    }
    if let Some(v) = sh.kernel(|mm| vm::large_kmalloc_info(mm, VirtAddr(x)))? {
        return Ok(v);
    }
    sh.kernel(|mm| {
        let pfn = if let Some(page) = mm.page_at_struct_address(VirtAddr(x)) {
            mm.page_to_pfn(page)
        } else {
            let page = mm.virt_to_page(VirtAddr(x)).map_err(|_| {
                format!("{x:#x} is neither a struct page * nor a direct-map address")
            })?;
            mm.page_to_pfn(page)
        };
        let info = page_info(mm, pfn);
        let text = info.line();
        Ok(Value::Object(
            serde_json::to_value(&info).expect("plain data"),
            text,
        ))
    })?
}

fn cpu(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "<n>")?;
    let n = sh.number(args[0])? as usize;
    if n >= sh.machine.config().cpus {
        return Err(format!(
            "no CPU {n} (the machine has {})",
            sh.machine.config().cpus
        ));
    }
    sh.cpu = n;
    Ok(Value::Text(format!("now on CPU {n}, {} context", sh.ctx)))
}

fn ctx(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "process|softirq|hardirq|nmi")?;
    sh.ctx = Context::from_name(args[0]).ok_or_else(|| {
        format!(
            "unknown context '{}' (process, softirq, hardirq, nmi)",
            args[0]
        )
    })?;
    Ok(Value::Text(format!(
        "CPU {} now runs in {} context",
        sh.cpu, sh.ctx
    )))
}

fn local_irq_disable(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 0, "")?;
    sh.cpu_state_mut().irqs_off = true;
    Ok(Value::Text(format!(
        "interrupts disabled on CPU {}",
        sh.cpu
    )))
}

fn local_irq_enable(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 0, "")?;
    sh.cpu_state_mut().irqs_off = false;
    Ok(Value::Text(format!("interrupts enabled on CPU {}", sh.cpu)))
}

fn preempt_disable(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 0, "")?;
    sh.cpu_state_mut().preempt_depth += 1;
    let depth = sh.cpu_state_mut().preempt_depth;
    Ok(Value::Number(
        depth as u64,
        format!("preempt depth on CPU {}", sh.cpu),
    ))
}

fn preempt_enable(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 0, "")?;
    let state = sh.cpu_state_mut();
    if state.preempt_depth == 0 {
        return Err(
            "preempt_enable without preempt_disable (preempt count would underflow)".into(),
        );
    }
    state.preempt_depth -= 1;
    let depth = state.preempt_depth;
    Ok(Value::Number(
        depth as u64,
        format!("preempt depth on CPU {}", sh.cpu),
    ))
}

fn drain_all_pages(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 0, "")?;
    sh.kernel(|mm| mm.drain_all_pages())?;
    Ok(Value::None)
}

/// The sysctl file `cat` serves besides `procfs::FILES`.
const TAINTED_FILE: &str = "/proc/sys/kernel/tainted";

fn cat(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "/proc/<file>")?;
    let name = args[0];
    if name == TAINTED_FILE {
        // `proc_taint()`: the mask as an unsigned decimal.
        let mask = sh.machine.tainted().0;
        return Ok(Value::Object(json!(mask), mask.to_string()));
    }
    if name.starts_with(kmemlab_mm::slab::sysfs::SYSFS_SLAB_DIR) {
        let mut out = String::new();
        let found = sh
            .machine
            .mm()
            .sysfs_slab_render(name, &mut out)
            .map_err(|e| e.to_string())?;
        if !found {
            return Err(format!("{name}: no such file"));
        }
        return Ok(Value::Text(out.trim_end().to_string()));
    }
    if !name.starts_with("/proc/") && name != procfs::THP_ENABLED_FILE {
        return Err(format!(
            "only /proc files can be read (have: /proc/{}, {TAINTED_FILE})",
            procfs::FILES.join(", /proc/")
        ));
    }
    let mut out = String::new();
    let found = procfs::render(sh.machine.mm(), name, &mut out).map_err(|e| e.to_string())?;
    if !found {
        return Err(format!(
            "{name}: no such file (have: /proc/{}, {TAINTED_FILE})",
            procfs::FILES.join(", /proc/")
        ));
    }
    Ok(Value::Text(out.trim_end().to_string()))
}

/// `sysctl`: no argument lists every tunable, `KEY` reads one, `KEY=VALUE` (or `-w
/// KEY=VALUE`) writes one through its kernel handler; the words after `=` make the value
/// (`vm.lowmem_reserve_ratio=256 256 32 0`). Prints `KEY = VALUE` as procps does.
fn sysctl(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    use kmemlab_mm::sysctl::Sysctl;
    let args = match args.first() {
        Some(&"-w") => &args[1..],
        _ => args,
    };
    let Some(first) = args.first() else {
        let mut obj = serde_json::Map::new();
        let mut text = Vec::new();
        for s in Sysctl::ALL {
            let key = format!("vm.{}", s.procname());
            let value = sh.machine.sysctl_read(&key)?;
            text.push(format!("{key} = {value}"));
            obj.insert(key, json!(value));
        }
        return Ok(Value::Object(
            serde_json::Value::Object(obj),
            text.join("\n"),
        ));
    };
    let (key, value) = match first.split_once('=') {
        Some((key, head)) => {
            let value = core::iter::once(head)
                .chain(args[1..].iter().copied())
                .collect::<Vec<_>>()
                .join(" ");
            (
                key,
                Some(
                    value
                        .trim_matches(|c| c == '"' || c == '\'')
                        .trim()
                        .to_string(),
                ),
            )
        }
        None => {
            want(args, 1, "[-w] [vm.KEY[=VALUE]]")?;
            (*first, None)
        }
    };
    if let Some(value) = value {
        if sh.machine.halted() {
            return Err(sh.halted_refusal());
        }
        sh.machine.sysctl_write(key, &value)?;
    }
    let value = sh.machine.sysctl_read(key)?;
    let key =
        Sysctl::from_key(key).map_or_else(|| key.to_string(), |s| format!("vm.{}", s.procname()));
    Ok(Value::Object(
        json!({ "key": key, "value": value }),
        format!("{key} = {value}"),
    ))
}

fn reboot(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 0, "")?;
    sh.reboot()
}

fn vmstat(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 0, "")?;
    let mm = sh.machine.mm();
    let mut obj = serde_json::Map::new();
    let mut text = String::new();
    let per_zone = mm.zones().iter().filter(|z| z.is_populated()).map(|z| {
        (
            format!("pgalloc_{}", z.name().to_lowercase()),
            mm.pgalloc(z),
        )
    });
    let global = mm.events().all().map(|(name, n)| (name.to_string(), n));
    for (name, n) in per_zone
        .chain(std::iter::once(("pgfree".to_string(), mm.pgfree())))
        .chain(std::iter::once((
            "pageblock_steal".to_string(),
            mm.zones()
                .iter()
                .map(|z| {
                    z.pageblock_steals
                        .load(std::sync::atomic::Ordering::Relaxed)
                })
                .sum(),
        )))
        .chain(global)
    {
        text.push_str(&format!("{name} {n}\n"));
        obj.insert(name.to_string(), json!(n));
    }
    Ok(Value::Object(
        serde_json::Value::Object(obj),
        text.trim_end().to_string(),
    ))
}

fn check(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 0, "")?;
    let r = sh
        .machine
        .mm()
        .check()
        .map_err(|e| format!("invariant broken: {e}"))?;
    let text = format!(
        "ok: {} pages = {} free + {} on per-CPU lists + {} allocated + {} reserved ({})",
        r.total,
        r.free,
        r.pcp,
        r.allocated,
        r.reserved,
        format_size(r.total * 4096)
    );
    Ok(Value::Object(
        json!({"total": r.total, "free": r.free, "pcp": r.pcp, "allocated": r.allocated, "reserved": r.reserved}),
        text,
    ))
}

fn slab_object_info(mm: &Mm<SimPlatform>, addr: VirtAddr) -> Option<Value> {
    let o = mm.object_info(addr)?;
    let s = mm.cache(o.cache).ok()?;
    let page = page_info(mm, Pfn(mm.layout().virt_to_phys(o.object.0)? >> 12));
    let slab_page = mm.struct_page_address(mm.mem_map().page(o.slab_pfn)).0;
    let mut obj = json!({
        "cache": s.name().as_str(),
        "object": addr_json(o.object.0),
        "offset_in_object": o.offset_in_object,
        "index": o.index,
        "object_size": s.object_size(),
        "size": s.size(),
        "slab_pfn": o.slab_pfn,
        "slab_page": addr_json(slab_page),
        "offset_in_slab": o.offset_in_slab,
        "pfn": page.pfn,
        "phys": opt_addr(mm.layout().virt_to_phys(addr.0)),
        "zone": page.zone,
        "state": if o.free { "free" } else { "allocated" },
    });
    let extent = vm::kmalloc_extent(mm, o.object, s.object_size() as u64);
    if let (Some(obj), serde_json::Value::Object(extent)) = (obj.as_object_mut(), extent) {
        obj.extend(extent);
    }
    let text = format!(
        "{} object {:#x} (index {} in the slab at pfn {:#x}, struct page {:#x}, offset {:#x}), {} of {} bytes ({} with metadata){}; phys {:#x}, pfn {:#x}, zone {}",
        s.name(),
        o.object.0,
        o.index,
        o.slab_pfn,
        slab_page,
        o.offset_in_slab,
        if o.free { "free" } else { "allocated" },
        s.object_size(),
        s.size(),
        if o.offset_in_object > 0 { format!(", address is {} bytes inside", o.offset_in_object) } else { String::new() },
        mm.layout().virt_to_phys(addr.0).unwrap_or(0),
        page.pfn,
        page.zone
    );
    Some(Value::Object(obj, text))
}

fn object_value(mm: &Mm<SimPlatform>, addr: VirtAddr) -> Value {
    match slab_object_info(mm, addr) {
        Some(Value::Object(_, text)) => Value::Address(addr.0, text),
        _ if addr.0 <= 16 => {
            Value::Address(addr.0, "ZERO_SIZE_PTR: kmalloc(0) returns no memory".into())
        }
        _ => {
            let size = mm.ksize(addr).unwrap_or(0);
            Value::Address(
                addr.0,
                format!("large kmalloc: {size} bytes straight from the page allocator"),
            )
        }
    }
}

fn slab_err(e: kmemlab_mm::slab::SlabError) -> String {
    e.to_string()
}

fn kmalloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 2, "<size> <gfp>")?;
    let (size, gfp) = (sh.size(args[0])?, sh.gfp(args[1])?);
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.kmalloc_caller(size as usize, gfp, site)
            .map(|a| object_value(mm, a))
            .map_err(slab_err)
    })?
}

fn kzalloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 2, "<size> <gfp>")?;
    let (size, gfp) = (sh.size(args[0])?, sh.gfp(args[1])?);
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.kmalloc_caller(size as usize, gfp | kmemlab_mm::Gfp::__GFP_ZERO, site)
            .map(|a| object_value(mm, a))
            .map_err(slab_err)
    })?
}

fn kcalloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 3, "<n> <size> <gfp>")?;
    let (n, size, gfp) = (sh.number(args[0])?, sh.size(args[1])?, sh.gfp(args[2])?);
    sh.kernel(|mm| {
        mm.kcalloc(n as usize, size as usize, gfp)
            .map(|a| object_value(mm, a))
            .map_err(slab_err)
    })?
}

fn krealloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 3, "<addr> <size> <gfp>")?;
    let (p, size, gfp) = (sh.number(args[0])?, sh.size(args[1])?, sh.gfp(args[2])?);
    sh.kernel(|mm| {
        mm.krealloc(VirtAddr(p), size as usize, gfp)
            .map(|a| object_value(mm, a))
            .map_err(slab_err)
    })?
}

fn kfree(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "<addr>")?;
    let p = sh.number(args[0])?;
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.kfree_caller(VirtAddr(p), site)
            .map(|_| Value::None)
            .map_err(slab_err)
    })?
}

fn ksize(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "<addr>")?;
    let p = sh.number(args[0])?;
    sh.kernel(|mm| {
        mm.ksize(VirtAddr(p))
            .map(|n| Value::Number(n as u64, "bytes usable".into()))
            .map_err(slab_err)
    })?
}

/// A cache argument: a name given earlier, a cache's name, or a `kmem_cache` address.
fn cache_arg(sh: &Shell, arg: &str) -> Result<kmemlab_mm::slab::KmemCacheRef, String> {
    if let Some(r) = sh.machine.mm().find_cache(arg) {
        return Ok(r);
    }
    let va = sh
        .number(arg)
        .map_err(|_| format!("no cache named '{arg}'"))?;
    let r = kmemlab_mm::slab::KmemCacheRef(va);
    sh.machine.mm().cache(r).map_err(slab_err)?;
    Ok(r)
}

fn kmem_cache_create(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    if !(2..=5).contains(&args.len()) {
        return Err("usage: kmem_cache_create <name> <size> [align] [flags] [NULL]".into());
    }
    let size = sh.size(args[1])?;
    let align = args.get(2).map(|a| sh.number(a)).transpose()?.unwrap_or(0);
    let flags = match args.get(3) {
        Some(f) => kmemlab_mm::slab::SlabFlags::parse_names(f).ok_or_else(|| {
            format!("'{f}' is not slab flags (e.g. SLAB_HWCACHE_ALIGN|SLAB_RED_ZONE, or 0)")
        })?,
        None => kmemlab_mm::slab::SlabFlags::empty(),
    };
    if args.get(4).is_some_and(|c| *c != "NULL") {
        return Err("constructors cannot be given from the shell (use NULL)".into());
    }
    let name = args[0].to_string();
    sh.kernel(|mm| {
        let r = mm.kmem_cache_create(&name, size as usize, align as usize, flags, None).map_err(slab_err)?;
        let s = mm.cache(r).map_err(slab_err)?;
        Ok(Value::Address(
            r.0,
            format!(
                "struct kmem_cache * {}: objects of {} bytes in {} bytes each, {} per slab of {} page(s)",
                s.name(),
                s.object_size(),
                s.size(),
                s.oo().objects,
                1 << s.oo().order
            ),
        ))
    })?
}

fn kmem_cache_alloc(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 2, "<cache> <gfp>")?;
    let (r, gfp) = (cache_arg(sh, args[0])?, sh.gfp(args[1])?);
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.kmem_cache_alloc_caller(r, gfp, site)
            .map(|a| object_value(mm, a))
            .map_err(|e| slab_err_of("kmem_cache_alloc", e))
    })?
}

fn kmem_cache_free(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 2, "<cache> <addr>")?;
    let (r, p) = (cache_arg(sh, args[0])?, sh.number(args[1])?);
    let site = sh.call_site();
    sh.kernel(|mm| {
        mm.kmem_cache_free_caller(r, VirtAddr(p), site)
            .map(|_| Value::None)
            .map_err(|e| slab_err_of("kmem_cache_free", e))
    })?
}

fn kmem_cache_destroy(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "<cache>")?;
    let r = cache_arg(sh, args[0])?;
    sh.kernel(|mm| {
        mm.kmem_cache_destroy(r)
            .map(|_| Value::None)
            .map_err(|e| slab_err_of("kmem_cache_destroy", e))
    })?
}

/// A slab error of the function `func`: `SlabError::BadArgs` prints itself as
/// `kmem_cache_create`'s, whichever function refused, so the shell names the right one.
fn slab_err_of(func: &str, e: kmemlab_mm::slab::SlabError) -> String {
    match e {
        kmemlab_mm::slab::SlabError::BadArgs(why) => format!("{func}: {why}"),
        other => other.to_string(),
    }
}

fn kmem_cache_shrink(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "<cache>")?;
    let r = cache_arg(sh, args[0])?;
    sh.kernel(|mm| {
        mm.kmem_cache_shrink(r)
            .map(|pages| Value::Number(pages, "pages given back to the page allocator".into()))
            .map_err(slab_err)
    })?
}

fn slab_state(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "<cache>")?;
    let r = cache_arg(sh, args[0])?;
    let mm = sh.machine.mm();
    let s = mm.cache(r).map_err(slab_err)?;
    let node = mm.node_slab_state(r).map_err(slab_err)?;
    let mut text = format!(
        "{}: object_size {} size {} align {} offset(fp) {} red_left_pad {} order {} objects/slab {} min_partial {} cpu_partial_slabs {} flags {:?}\n",
        s.name(),
        s.object_size(),
        s.size(),
        s.align(),
        s.fp_offset(),
        s.red_left_pad(),
        s.oo().order,
        s.oo().objects,
        s.min_partial(),
        s.cpu_partial_slabs(),
        s.flags()
    );
    let mut cpus = Vec::new();
    for cpu in 0..sh.machine.config().cpus {
        let c = mm.cpu_slab_state(r, cpu).map_err(slab_err)?;
        if c.slab.is_some() || c.partial_slabs > 0 {
            text.push_str(&format!(
                "  cpu {cpu}: slab {} with {} objects on its lockless freelist, {} partial slab(s), tid {}\n",
                c.slab.map_or("none".to_string(), |p| format!("pfn {p:#x}")),
                c.freelist_objects,
                c.partial_slabs,
                c.tid
            ));
        }
        cpus.push(json!({"cpu": cpu, "slab": c.slab, "freelist_objects": c.freelist_objects, "partial_slabs": c.partial_slabs, "tid": c.tid}));
    }
    text.push_str(&format!(
        "  node 0: {} slab(s), {} objects, {} partial slab(s) with {} free objects",
        node.nr_slabs, node.total_objects, node.nr_partial, node.free_on_partial
    ));
    Ok(Value::Object(
        json!({
            "name": s.name().as_str(), "object_size": s.object_size(), "size": s.size(), "align": s.align(),
            "offset": s.fp_offset(), "red_left_pad": s.red_left_pad(), "order": s.oo().order,
            "objects_per_slab": s.oo().objects, "cpus": cpus,
            "node": {"nr_slabs": node.nr_slabs, "total_objects": node.total_objects, "nr_partial": node.nr_partial, "free_on_partial": node.free_on_partial},
        }),
        text,
    ))
}

fn signed(arg: &str, sh: &Shell) -> Result<i64, String> {
    match arg.strip_prefix('-') {
        Some(rest) => Ok(-(sh.number(rest)? as i64)),
        None => Ok(sh.number(arg)? as i64),
    }
}

fn poke(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 3, "<addr> <offset> <byte>")?;
    let addr = sh.number(args[0])?;
    let offset = signed(args[1], sh)?;
    let byte = sh.number(args[2])?;
    let byte = u8::try_from(byte).map_err(|_| format!("{byte} is not a byte"))?;
    let at = addr.wrapping_add(offset as u64);
    refuse_metadata(sh.machine.mm(), VirtAddr(at))?;
    sh.machine
        .mm()
        .copy_to_kernel(VirtAddr(at), &[byte])
        .map_err(|e| e.to_string())?;
    Ok(Value::Text(format!("wrote {byte:#04x} at {at:#x}")))
}

fn dump(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 2, "<addr> <len>")?;
    let addr = sh.number(args[0])?;
    let len = sh.size(args[1])?.min(4096) as usize;
    let mut buf = vec![0u8; len];
    sh.machine
        .mm()
        .copy_from_kernel(VirtAddr(addr), &mut buf)
        .map_err(|e| e.to_string())?;
    let text = buf
        .chunks(16)
        .enumerate()
        .map(|(i, c)| {
            let hex: Vec<String> = c.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:#x}: {}", addr + 16 * i as u64, hex.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Value::Object(json!(buf), text))
}

/// `poke` corrupts what allocations hold, not the allocators' own structures: writing
/// into `mem_map` or a `kmem_cache` would crash the kernel (and the simulator) instead of
/// showing a debug feature at work.
fn refuse_metadata(mm: &Mm<SimPlatform>, at: VirtAddr) -> Result<(), String> {
    let phys = mm
        .layout()
        .virt_to_phys(at.0)
        .ok_or_else(|| format!("{at} is not a direct-map address"))?;
    if let Some(r) = mm
        .memblock()
        .reserved
        .regions()
        .iter()
        .find(|r| r.base <= phys && phys < r.end())
    {
        return Err(format!(
            "{at} is boot-reserved kernel memory ({}); poke only touches what allocations hold",
            r.name
        ));
    }
    if let Some((_, page)) = mm.virt_to_slab(at) {
        let owner = page.slab_cache();
        for meta in ["kmem_cache", "kmem_cache_node"] {
            if mm.find_cache(meta).is_some_and(|r| r.0 == owner) {
                return Err(format!(
                    "{at} holds the slab allocator's own {meta} structures; poke refuses them"
                ));
            }
        }
    }
    Ok(())
}
