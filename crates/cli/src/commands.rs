//! The shell's command table: each command is one entry naming a kernel function, its
//! arguments in the kernel's order, and a small handler.

use kmemlab_mm::{procfs, Context, Mm, Pfn, VirtAddr};
use kmemlab_sim::{format_size, SimPlatform};
use serde_json::json;

use crate::describe::page_info;
use crate::shell::{Shell, Value};

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
    /// What it does.
    pub run: Handler,
}

/// Every command.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "help",
        usage: "[command]",
        help: "list commands, or describe one",
        run: help,
    },
    Command {
        name: "alloc_pages",
        usage: "<gfp> <order>",
        help: "2^order contiguous pages; returns the struct page *",
        run: alloc_pages,
    },
    Command {
        name: "__free_pages",
        usage: "<page> <order>",
        help: "free pages from alloc_pages",
        run: free_pages_cmd,
    },
    Command {
        name: "__get_free_pages",
        usage: "<gfp> <order>",
        help: "alloc_pages and return the direct-map address",
        run: get_free_pages,
    },
    Command {
        name: "get_zeroed_page",
        usage: "<gfp>",
        help: "one zeroed page; returns its address",
        run: get_zeroed_page,
    },
    Command {
        name: "free_pages",
        usage: "<addr> <order>",
        help: "free by direct-map address (0 is a no-op)",
        run: free_pages_addr,
    },
    Command {
        name: "page_address",
        usage: "<page>",
        help: "direct-map address of a struct page",
        run: page_address,
    },
    Command {
        name: "virt_to_page",
        usage: "<addr>",
        help: "struct page of a direct-map address",
        run: virt_to_page,
    },
    Command {
        name: "page_to_pfn",
        usage: "<page>",
        help: "page frame number of a struct page",
        run: page_to_pfn,
    },
    Command {
        name: "pfn_to_page",
        usage: "<pfn>",
        help: "struct page of a page frame number",
        run: pfn_to_page,
    },
    Command {
        name: "page_zone",
        usage: "<page>",
        help: "the zone of a page",
        run: page_zone,
    },
    Command {
        name: "info",
        usage: "<page|addr>",
        help: "everything about a page: pfn, phys, zone, block, state",
        run: info,
    },
    Command {
        name: "cpu",
        usage: "<n>",
        help: "run the following commands on CPU n",
        run: cpu,
    },
    Command {
        name: "ctx",
        usage: "process|softirq|hardirq|nmi",
        help: "run the following commands in that context",
        run: ctx,
    },
    Command {
        name: "local_irq_disable",
        usage: "",
        help: "disable interrupts on this CPU (until local_irq_enable)",
        run: local_irq_disable,
    },
    Command {
        name: "local_irq_enable",
        usage: "",
        help: "enable interrupts on this CPU",
        run: local_irq_enable,
    },
    Command {
        name: "preempt_disable",
        usage: "",
        help: "raise this CPU's preempt count (as spin_lock does)",
        run: preempt_disable,
    },
    Command {
        name: "preempt_enable",
        usage: "",
        help: "lower this CPU's preempt count",
        run: preempt_enable,
    },
    Command {
        name: "drain_all_pages",
        usage: "",
        help: "return every CPU's per-CPU lists to the buddy lists",
        run: drain_all_pages,
    },
    Command {
        name: "pagecache",
        usage: "fill <size> | drop",
        help: "fill the simulated page cache, or drop it",
        run: pagecache,
    },
    Command {
        name: "cat",
        usage: "/proc/<file>",
        help: "print a /proc file (buddyinfo, pagetypeinfo, zoneinfo, meminfo)",
        run: cat,
    },
    Command {
        name: "vmstat",
        usage: "",
        help: "the event counters",
        run: vmstat,
    },
    Command {
        name: "check",
        usage: "",
        help: "run the invariant checker",
        run: check,
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
        return Ok(Value::Text(format!(
            "{} {}\n    {}",
            c.name, c.usage, c.help
        )));
    }
    let mut text = String::from(
        "commands (arguments in the kernel's order; sizes take K/M/G; flags combine with |):\n",
    );
    for c in COMMANDS {
        text.push_str(&format!("  {:<18} {:<26} {}\n", c.name, c.usage, c.help));
    }
    text.push_str("  name = <command>    keep the result under a name\n  ! <command>         the command is expected to fail\n");
    Ok(Value::Text(text.trim_end().to_string()))
}

fn page_value(mm: &Mm<SimPlatform>, page: &kmemlab_mm::Page) -> Value {
    let info = page_info(mm, mm.page_to_pfn(page));
    Value::Number(info.struct_page, format!("struct page *: {}", info.line()))
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
    Ok(Value::Number(addr.0, info.line()))
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
        Some(v) => Ok(Value::Number(v.0, "direct-map address".into())),
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

fn pagecache(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    match args {
        ["fill", size] => {
            let bytes = sh.size(size)?;
            let pages = bytes.div_ceil(4096);
            let cache = sh.machine.page_cache();
            let added = sh.kernel(|mm| cache.fill(mm, pages))?;
            Ok(Value::Number(
                added * 4096,
                format!("bytes now cached ({} pages added)", added),
            ))
        }
        ["drop"] => {
            let cache = sh.machine.page_cache();
            let freed = sh.kernel(|mm| cache.drop_all(mm))?;
            Ok(Value::Number(freed * 4096, "bytes dropped".into()))
        }
        _ => Err("usage: pagecache fill <size> | pagecache drop".into()),
    }
}

fn cat(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    want(args, 1, "/proc/<file>")?;
    let name = args[0];
    if !name.starts_with("/proc/") {
        return Err(format!(
            "only /proc files can be read (have: /proc/{})",
            procfs::FILES.join(", /proc/")
        ));
    }
    let mut out = String::new();
    let found = procfs::render(sh.machine.mm(), name, &mut out).map_err(|e| e.to_string())?;
    if !found {
        return Err(format!(
            "{name}: no such file (have: /proc/{})",
            procfs::FILES.join(", /proc/")
        ));
    }
    Ok(Value::Text(out.trim_end().to_string()))
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
