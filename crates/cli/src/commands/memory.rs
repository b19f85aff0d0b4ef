//! Shell commands that read and corrupt memory on purpose: `poke` and `dump`.

use kmemlab_mm::{Mm, VirtAddr};
use kmemlab_sim::SimPlatform;
use serde_json::json;

use super::Command;
use crate::shell::{Shell, Value};

/// This module's shell commands.
pub(super) const COMMANDS: &[Command] = &[
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
];

fn signed(arg: &str, sh: &Shell) -> Result<i64, String> {
    match arg.strip_prefix('-') {
        Some(rest) => Ok(-(sh.number(rest)? as i64)),
        None => Ok(sh.number(arg)? as i64),
    }
}

fn poke(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let addr = sh.number(args[0])?;
    let offset = signed(args[1], sh)?;
    let byte = sh.number(args[2])?;
    let byte = u8::try_from(byte).map_err(|_| format!("{byte} is not a byte"))?;
    let at = addr.wrapping_add(offset as u64);
    refuse_metadata(&sh.machine.mm(), VirtAddr(at))?;
    sh.machine
        .mm()
        .copy_to_kernel(VirtAddr(at), &[byte])
        .map_err(|e| e.to_string())?;
    Ok(Value::Text(format!("wrote {byte:#04x} at {at:#x}")))
}

fn dump(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
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
        .reserved()
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
