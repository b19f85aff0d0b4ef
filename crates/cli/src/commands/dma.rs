//! The shell's DMA commands: `dev` (a bus-master device on the machine), the streaming
//! mappings (`dma_map_single`, `dma_unmap_single`, `dma_map_sg`, `dma_unmap_sg`), coherent
//! memory (`dma_alloc_coherent`, `dma_free_coherent`) and `dma`, the device's own transfer.

use std::sync::Arc;

use kmemlab_mm::dma::{DmaDataDirection, SgTable};
use kmemlab_mm::{Gfp, VirtAddr};
use kmemlab_sim::DmaDevice;
use serde_json::json;

use super::Command;
use crate::output::addr;
use crate::shell::{Shell, Value};

/// This module's shell commands.
pub(super) const COMMANDS: &[Command] = &[
    Command {
        name: "dev",
        usage: "<name> mask=<bits>",
        help: "plug in a bus-master DMA device whose driver sets that DMA mask",
        mutates: true,
        run: dev,
    },
    Command {
        name: "dma_map_single",
        usage: "<dev> <addr> <size> <dir>",
        help: "map a direct-map buffer for DMA; returns the bus address",
        mutates: true,
        run: dma_map_single,
    },
    Command {
        name: "dma_unmap_single",
        usage: "<dev> <dma-addr> <size> <dir>",
        help: "unmap it (swiotlb copies back; dma-debug checks size and direction)",
        mutates: true,
        run: dma_unmap_single,
    },
    Command {
        name: "dma_map_sg",
        usage: "<dev> <addr> <size> <dir>",
        help: "a scatterlist of the buffer (vmalloc: page by page), mapped; returns its handle",
        mutates: true,
        run: dma_map_sg,
    },
    Command {
        name: "dma_unmap_sg",
        usage: "<sg>",
        help: "unmap and free a scatterlist from dma_map_sg",
        mutates: true,
        run: dma_unmap_sg,
    },
    Command {
        name: "dma_alloc_coherent",
        usage: "<dev> <size> [gfp]",
        help: "physically contiguous memory within the coherent mask",
        mutates: true,
        run: dma_alloc_coherent,
    },
    Command {
        name: "dma_free_coherent",
        usage: "<dev> <size> <cpu-addr> [dma-addr]",
        help: "free it",
        mutates: true,
        run: dma_free_coherent,
    },
    Command {
        name: "dma",
        usage: "<dev> to|from <dma-addr|sg> <len> [byte]",
        help: "the device writes (to) or reads (from) memory at bus addresses, without the MMU",
        mutates: true,
        run: dma,
    },
];

/// A scatterlist the shell built and mapped, kept until `dma_unmap_sg`.
pub struct MappedSg {
    table: SgTable,
    device: String,
    mapped: u32,
    dir: DmaDataDirection,
}

fn device(sh: &Shell, name: &str) -> Result<Arc<DmaDevice>, String> {
    sh.machine
        .dma_device(name)
        .ok_or_else(|| format!("no device '{name}' (create it with: dev {name} mask=32)"))
}

fn direction(arg: &str) -> Result<DmaDataDirection, String> {
    let upper = arg.to_ascii_uppercase();
    let name = upper.strip_prefix("DMA_").unwrap_or(&upper);
    match name {
        "BIDIRECTIONAL" => Ok(DmaDataDirection::Bidirectional),
        "TO_DEVICE" => Ok(DmaDataDirection::ToDevice),
        "FROM_DEVICE" => Ok(DmaDataDirection::FromDevice),
        "NONE" => Ok(DmaDataDirection::None),
        _ => Err(format!(
            "'{arg}' is not a DMA direction (DMA_TO_DEVICE, DMA_FROM_DEVICE, DMA_BIDIRECTIONAL)"
        )),
    }
}

/// `dev <name> mask=<bits>`: plug in a bus-master device whose driver sets that mask.
pub fn dev(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let [name, mask] = args else {
        return Err("usage: dev <name> mask=<bits>".into());
    };
    let bits: u32 = mask
        .strip_prefix("mask=")
        .and_then(|b| b.parse().ok())
        .ok_or_else(|| format!("'{mask}' is not mask=<bits> (e.g. mask=24, mask=32, mask=64)"))?;
    let d = sh
        .machine
        .add_dma_device(name, bits)
        .map_err(|e| e.to_string())?;
    let dev = d.device();
    Ok(Value::Object(
        json!({"name": name, "dma_mask": addr(dev.dma_mask()), "coherent_dma_mask": addr(dev.coherent_dma_mask())}),
        format!(
            "device {name}: dma_mask {:#x}, coherent_dma_mask {:#x}",
            dev.dma_mask(),
            dev.coherent_dma_mask()
        ),
    ))
}

/// `dma_map_single <dev> <addr> <size> <dir>`: the bus address, or an error when the
/// kernel returns DMA_MAPPING_ERROR (as `dma_mapping_error` reports it).
pub fn dma_map_single(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let [name, addr, size, dir] = args else {
        return Err("usage: dma_map_single <dev> <addr> <size> <dir>".into());
    };
    let d = device(sh, name)?;
    let (addr, size, dir) = (VirtAddr(sh.number(addr)?), sh.size(size)?, direction(dir)?);
    let result = sh.kernel(|mm| {
        let bus = mm.dma_map_single(d.device(), addr, size as usize, dir);
        match mm.dma_mapping_error(d.device(), bus) {
            Ok(()) => {
                let bounced = mm.is_swiotlb_buffer(kmemlab_mm::PhysAddr(bus));
                let phys = mm.dma_to_phys(d.device(), bus).0;
                Ok((
                    phys,
                    Value::Address(
                        bus,
                        if bounced {
                            "bus address (bounced through swiotlb)".into()
                        } else {
                            "bus address".into()
                        },
                    ),
                ))
            }
            Err(e) => Err(format!("DMA_MAPPING_ERROR ({e})")),
        }
    })?;
    let (phys, value) = result?;
    if let Value::Address(bus, _) = value {
        sh.dma_mapped.insert(bus, (phys, size));
    }
    Ok(value)
}

/// `dma_unmap_single <dev> <dma-addr> <size> <dir>`.
pub fn dma_unmap_single(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let [name, bus, size, dir] = args else {
        return Err("usage: dma_unmap_single <dev> <dma-addr> <size> <dir>".into());
    };
    let d = device(sh, name)?;
    let (bus, size, dir) = (sh.number(bus)?, sh.size(size)?, direction(dir)?);
    let errors = |mm: &kmemlab_mm::Mm<kmemlab_sim::SimPlatform>| mm.dma_stats().debug_error_count;
    sh.dma_mapped.remove(&bus);
    sh.kernel(|mm| {
        let before = errors(mm);
        mm.dma_unmap_single(d.device(), bus, size as usize, dir);
        if errors(mm) > before {
            Err("dma-debug reported the unmap (see the kernel's lines above)".into())
        } else {
            Ok(Value::None)
        }
    })?
}

/// `dma_map_sg <dev> <addr> <size> <dir>`: a scatterlist for the buffer (page by page
/// with `vmalloc_to_page` for vmalloc memory, one entry for direct-map memory), mapped;
/// returns the table's address as the handle for `dma` and `dma_unmap_sg`.
pub fn dma_map_sg(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let [name, addr, size, dir] = args else {
        return Err("usage: dma_map_sg <dev> <addr> <size> <dir>".into());
    };
    let d = device(sh, name)?;
    let (addr, size, dir) = (VirtAddr(sh.number(addr)?), sh.size(size)?, direction(dir)?);
    let (table, mapped, segments) = sh.kernel(|mm| -> Result<_, String> {
        let table = if mm.is_vmalloc_addr(addr) {
            mm.sg_alloc_table_from_vmalloc(d.device(), addr, size as usize, Gfp::GFP_KERNEL)
                .map_err(|e| format!("sg_alloc_table_from_vmalloc: {e}"))?
        } else {
            let t = mm
                .sg_alloc_table(1, Gfp::GFP_KERNEL)
                .map_err(|e| format!("sg_alloc_table: {e}"))?;
            let sg = t.sg(0).ok_or("an empty table")?;
            let len = u32::try_from(size)
                .map_err(|_| format!("{size} bytes do not fit one scatterlist entry (u32 length)"));
            if let Err(e) = len.and_then(|len| {
                mm.sg_set_buf(sg, addr, len)
                    .map_err(|e| format!("{e} (not direct-map memory)"))
            }) {
                let mut t = t;
                mm.sg_free_table(&mut t);
                return Err(format!("sg_set_buf: {e}"));
            }
            t
        };
        let mapped = mm.dma_map_sg(d.device(), &table, table.nents, dir);
        if mapped == 0 {
            let mut table = table;
            mm.sg_free_table(&mut table);
            return Err("dma_map_sg mapped nothing".into());
        }
        let segments: Vec<(u64, usize)> =
            mm.sg_dma_segments(&table).take(mapped as usize).collect();
        Ok((table, mapped, segments))
    })??;
    let handle = table.sgl.0;
    let text = format!(
        "scatterlist of {} entries, {mapped} DMA segments: {}",
        table.orig_nents,
        segments
            .iter()
            .map(|(a, l)| format!("{a:#x}+{l:#x}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    sh.sg_tables.insert(
        handle,
        MappedSg {
            table,
            device: name.to_string(),
            mapped,
            dir,
        },
    );
    Ok(Value::Address(handle, text))
}

/// `dma_unmap_sg <sg>`: unmap and free a table from `dma_map_sg`.
pub fn dma_unmap_sg(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let [sg] = args else {
        return Err("usage: dma_unmap_sg <sg>".into());
    };
    let handle = sh.number(sg)?;
    let mut m = sh
        .sg_tables
        .remove(&handle)
        .ok_or_else(|| format!("{handle:#x} is not a scatterlist from dma_map_sg"))?;
    let d = device(sh, &m.device)?;
    sh.kernel(|mm| {
        mm.dma_unmap_sg(d.device(), &m.table, m.table.nents, m.dir);
        mm.sg_free_table(&mut m.table);
    })?;
    Ok(Value::None)
}

/// `dma_alloc_coherent <dev> <size> [gfp]`: the CPU address; the bus address is printed.
pub fn dma_alloc_coherent(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let d = device(sh, args[0])?;
    let size = sh.size(args[1])?;
    let gfp = match args.get(2) {
        Some(g) => sh.gfp(g)?,
        None => Gfp::GFP_KERNEL,
    };
    let result = sh.kernel(|mm| -> Result<(u64, u64, Value), String> {
        let (cpu, bus) = mm
            .dma_alloc_coherent(d.device(), size as usize, gfp)
            .map_err(|e| format!("dma_alloc_coherent: {e}"))?;
        let phys = mm.dma_to_phys(d.device(), bus).0;
        let zone = mm
            .virt_to_page(cpu)
            .map(|p| mm.page_zone(p).name())
            .unwrap_or("?");
        Ok((
            bus,
            phys,
            Value::Address(
                cpu.0,
                format!("coherent buffer, dma handle {bus:#x}, zone {zone}"),
            ),
        ))
    })?;
    let (bus, phys, value) = result?;
    sh.dma_mapped.insert(bus, (phys, size));
    Ok(value)
}

/// `dma_free_coherent <dev> <size> <cpu-addr> [dma-addr]` (without the handle, the one
/// dma-direct gave: the buffer's physical address).
pub fn dma_free_coherent(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let d = device(sh, args[0])?;
    let (size, cpu) = (sh.size(args[1])?, VirtAddr(sh.number(args[2])?));
    let bus = args.get(3).map(|a| sh.number(a)).transpose()?;
    let result = sh.kernel(|mm| -> Result<u64, String> {
        let bus = match bus {
            Some(b) => b,
            None => mm
                .kernel_virt_to_phys(cpu.0)
                .map(|p| mm.phys_to_dma(d.device(), kmemlab_mm::PhysAddr(p)))
                .ok_or_else(|| format!("{cpu} is not direct-map memory"))?,
        };
        mm.dma_free_coherent(d.device(), size as usize, cpu, bus)
            .map(|_| bus)
            .map_err(|e| format!("dma_free_coherent: {e}"))
    })?;
    sh.dma_mapped.remove(&result?);
    Ok(Value::None)
}

/// The physical ranges a mapped scatterlist's DMA segments cover.
pub fn sg_phys_ranges(machine: &kmemlab_sim::Machine, m: &MappedSg) -> Vec<(u64, u64)> {
    let mm = machine.mm();
    let Some(d) = machine.dma_device(&m.device) else {
        return Vec::new();
    };
    mm.sg_dma_segments(&m.table)
        .take(m.mapped as usize)
        .map(|(bus, len)| (mm.dma_to_phys(d.device(), bus).0, len as u64))
        .collect()
}

/// `dma <dev> to|from <dma-addr|sg> <len> [byte]`: the device writes `len` bytes of its
/// buffer to memory (`to`; filled with `byte`, or 0, 1, 2, ... when none is given) or
/// reads `len` bytes from memory (`from`), at a bus address or over a mapped
/// scatterlist's segments. No MMU: bus addresses go straight to RAM.
pub fn dma(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    if !matches!(args[1], "to" | "from") {
        return Err("usage: dma <dev> to|from <dma-addr|sg> <len> [byte]".into());
    }
    let d = device(sh, args[0])?;
    let target = sh.number(args[2])?;
    let len = transfer_length(sh, &d, sh.size(args[3])?)?;
    let segments = match sh.sg_tables.get(&target) {
        Some(m) => sh.kernel(|mm| {
            mm.sg_dma_segments(&m.table)
                .take(m.mapped as usize)
                .collect::<Vec<_>>()
        })?,
        None => vec![(target, len)],
    };
    let segments = clip(&segments, len);
    // The device's buffer holds what the segments take, no more.
    let moved: usize = segments.iter().map(|&(_, l)| l).sum();
    if args[1] == "to" {
        let bytes: Vec<u8> = match args.get(4) {
            Some(b) => {
                let byte = u8::try_from(sh.number(b)?)
                    .map_err(|_| format!("'{b}' is not a byte (0 ..= 255)"))?;
                vec![byte; moved]
            }
            None => (0..moved).map(|i| i as u8).collect(),
        };
        d.load_buffer(&bytes);
        let n = d
            .write_segments(&sh.machine, &segments)
            .map_err(|e| e.to_string())?;
        Ok(Value::Number(
            n as u64,
            "bytes written by the device".into(),
        ))
    } else {
        let n = d
            .read_segments(&sh.machine, &segments)
            .map_err(|e| e.to_string())?;
        let head: Vec<String> = d
            .buffer()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Value::Object(
            json!({"bytes": n, "head": d.buffer().iter().take(64).collect::<Vec<_>>()}),
            format!("{n} bytes read by the device: {} ...", head.join(" ")),
        ))
    }
}

/// The most bytes one `dma` command moves: the device's buffer is host memory, so a
/// transfer is bounded by this as well as by the machine (64 MiB; split a larger one).
pub const MAX_DMA_TRANSFER: u64 = 64 << 20;

/// `len` checked against the machine before any buffer is allocated: no more than its
/// RAM, than the device's address lines can reach, or than [`MAX_DMA_TRANSFER`].
fn transfer_length(sh: &Shell, d: &DmaDevice, len: u64) -> Result<usize, String> {
    let ram = sh.machine.config().ram;
    if len > ram {
        return Err(format!(
            "a transfer of {len} bytes is larger than the machine's RAM ({ram} bytes)"
        ));
    }
    // DMA_BIT_MASK(n) + 1 bytes of bus addresses (2^64 for a 64-bit device).
    let reach = u128::from(d.address_mask()) + 1;
    if u128::from(len) > reach {
        return Err(format!(
            "a transfer of {len} bytes is more than {} address bits can reach ({reach} bytes)",
            d.mask_bits()
        ));
    }
    if len > MAX_DMA_TRANSFER {
        return Err(format!(
            "a transfer of {len} bytes is more than kmemlab moves in one dma command ({} MiB): split it",
            MAX_DMA_TRANSFER >> 20
        ));
    }
    Ok(len as usize)
}

/// The first `len` bytes of a segment list.
fn clip(segments: &[(u64, usize)], len: usize) -> Vec<(u64, usize)> {
    let mut left = len;
    let mut out = Vec::new();
    for &(a, l) in segments {
        if left == 0 {
            break;
        }
        out.push((a, l.min(left)));
        left -= l.min(left);
    }
    out
}
