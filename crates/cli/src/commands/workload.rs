//! The shell's workload and reclaim commands: `pagecache fill|drop`, `fragment`,
//! `unfragment` and `kswapd`.

use kmemlab_mm::MAX_PAGE_ORDER;
use kmemlab_sim::{format_size, fragment, FragmentPattern};
use serde_json::json;

use super::Command;
use crate::shell::{Shell, Value};

/// This module's shell commands.
pub(super) const COMMANDS: &[Command] = &[
    Command {
        name: "pagecache",
        usage: "fill <size> | drop",
        help: "fill the simulated page cache, or drop it",
        mutates: true,
        run: pagecache,
    },
    Command {
        name: "fragment",
        usage: "<zone> <alternate|sparse> [order]",
        help: "pin unmovable pages until the zone has no free block of that order",
        mutates: true,
        run: fragment_cmd,
    },
    Command {
        name: "unfragment",
        usage: "",
        help: "free what the fragment commands pinned",
        mutates: true,
        run: unfragment,
    },
    Command {
        name: "kswapd",
        usage: "",
        help: "run kswapd now: reclaim until the zones are back at the high watermark",
        mutates: true,
        run: kswapd,
    },
];

/// `pagecache fill <size>` reads "file data" into the page cache until the size is
/// cached or memory reaches the min watermark; `pagecache drop` is `drop_caches`.
pub fn pagecache(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    match args {
        ["fill", size] => {
            let bytes = sh.size(size)?;
            let cache = sh.machine.page_cache();
            let r = sh.kernel(|mm| cache.fill_bytes(mm, bytes))?;
            let text = format!(
                "{} pages added of {} asked{}; {} cached",
                r.added,
                r.requested,
                if r.stopped_short() {
                    " (stopped at the min watermark)"
                } else {
                    ""
                },
                format_size(r.cached * 4096)
            );
            Ok(Value::Object(json!(r), text))
        }
        ["drop"] => {
            let cache = sh.machine.page_cache();
            let freed = sh.kernel(|mm| cache.drop_all(mm))?;
            Ok(Value::Number(freed * 4096, "bytes dropped".into()))
        }
        _ => Err("usage: pagecache fill <size> | pagecache drop".into()),
    }
}

/// `fragment <zone> <alternate|sparse> [order]`: pin an unmovable workload in the zone
/// until no free block of `order` (default MAX_PAGE_ORDER, 10) or above is left.
pub fn fragment_cmd(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let (zone, pattern, order) = match args {
        [zone, pattern] => (zone, pattern, MAX_PAGE_ORDER),
        [zone, pattern, order] => (zone, pattern, sh.order(order)?),
        _ => return Err("usage: fragment <zone> <alternate|sparse> [order]".into()),
    };
    let pattern = FragmentPattern::from_name(pattern)
        .ok_or_else(|| format!("'{pattern}' is not a pattern (alternate, sparse)"))?;
    let done = fragment(&sh.machine, *zone, order, pattern).map_err(|e| e.to_string())?;
    let r = done.report.clone();
    let text = format!(
        "zone {}: {} pages pinned ({}), {} pages free, largest free order {} -> {}",
        r.zone.name(),
        r.pinned_pages,
        r.pattern.name(),
        r.free_pages,
        order_text(r.largest_free_order_before),
        order_text(r.largest_free_order_after)
    );
    sh.fragmented.push(done);
    Ok(Value::Object(json!(r), text))
}

fn order_text(o: Option<u32>) -> String {
    o.map_or_else(|| "none".into(), |o| o.to_string())
}

/// `unfragment`: free every page the `fragment` commands pinned.
pub fn unfragment(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    if !args.is_empty() {
        return Err("usage: unfragment".into());
    }
    let mut freed = 0;
    for f in std::mem::take(&mut sh.fragmented) {
        freed += f.undo(&sh.machine).map_err(|e| e.to_string())?;
    }
    Ok(Value::Number(freed, "pages unpinned".into()))
}

/// `kswapd`: run the node's kswapd now (the machine also runs it whenever a CPU leaves
/// the kernel after a wakeup).
pub fn kswapd(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    if !args.is_empty() {
        return Err("usage: kswapd".into());
    }
    let r = sh.machine.run_kswapd();
    let text = format!(
        "kswapd: {} pass{}, {} pages scanned, {} reclaimed, node {}",
        r.passes,
        if r.passes == 1 { "" } else { "es" },
        r.stats.scanned,
        r.stats.reclaimed,
        if r.balanced {
            "balanced"
        } else {
            "not balanced"
        }
    );
    Ok(Value::Object(
        json!({"woken": r.woken, "passes": r.passes, "scanned": r.stats.scanned,
            "reclaimed": r.stats.reclaimed, "balanced": r.balanced}),
        text,
    ))
}
