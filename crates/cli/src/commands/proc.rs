//! Shell commands that read the kernel's state as its files and counters do: `cat` of /proc
//! and /sys files, `sysctl`, `vmstat` and the invariant checker.

use kmemlab_mm::procfs;
use kmemlab_sim::format_size;
use serde_json::json;

use super::Command;
use crate::shell::{Shell, Value};

/// This module's shell commands.
pub(super) const COMMANDS: &[Command] = &[
    Command {
        name: "cat",
        usage: "/proc/<file>",
        help:
            "print a /proc file (buddyinfo, pagetypeinfo, zoneinfo, meminfo, slabinfo, vmallocinfo, sys/kernel/tainted, sys/vm/*) or /sys/kernel/mm/transparent_hugepage/enabled",
        mutates: false,
        run: cat,
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
        usage: "[-w] [vm.KEY[=VALUE...]]",
        help: "list, read or write the page allocator's /proc/sys/vm tunables (a write recomputes watermarks, reserves, pcp lists)",
        // Reads serve a post-mortem; a write is refused on a halted machine (below).
        mutates: false,
        run: sysctl,
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
];

/// The sysctl file `cat` serves besides `procfs::FILES`.
const TAINTED_FILE: &str = "/proc/sys/kernel/tainted";

fn cat(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
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
    let found = procfs::render(&sh.machine.mm(), name, &mut out).map_err(|e| e.to_string())?;
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
        None if args.len() == 1 => (*first, None),
        None => return Err("usage: sysctl [-w] [vm.KEY[=VALUE...]] (one KEY to read)".into()),
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

fn vmstat(sh: &mut Shell, _: &[&str]) -> Result<Value, String> {
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

fn check(sh: &mut Shell, _: &[&str]) -> Result<Value, String> {
    let r = sh
        .machine
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
