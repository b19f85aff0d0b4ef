//! Contrast C and question Q1, DMA: a bus-master device writes a kmalloc buffer through
//! `dma_map_single`; `dma_map_single` of a vmalloc buffer is refused, and the bus address a
//! careless driver computes with `__pa()` sends the device somewhere else, on this machine
//! and on one of the other profile; a scatterlist built page by page with
//! `vmalloc_to_page` lets the same device fill the vmalloc buffer.

use std::sync::Arc;

use kmemlab_mm::dma::{DmaDataDirection, DMA_MAPPING_ERROR};
use kmemlab_mm::{Gfp, Pfn, Profile, PAGE_SIZE};
use kmemlab_sim::{DmaDevice, Machine, MachineConfig};
use serde_json::json;

use crate::output::addr;

use super::Tour;
use crate::commands::vmalloc::runs;

const KMALLOC_SIZE: usize = 4096;
const VMALLOC_SIZE: usize = 64 << 10;

const CLAIM_C: &str = "DMA: a device fills a kmalloc buffer through dma_map_single; dma_map_single refuses vmalloc memory, and DMA to __pa() of a vmalloc address misses the buffer";
const CLAIM_Q1: &str = "can vmalloc memory be used for DMA? Not with dma_map_single; yes through a scatterlist built with vmalloc_to_page, one segment per physically contiguous run";
/// The claims this section decides.
pub const CLAIMS: &[(&str, &str)] = &[("C", CLAIM_C), ("Q1", CLAIM_Q1)];

/// Run the section: claims C and Q1.
pub fn section(t: &mut Tour, machine: &Machine) -> Result<(), String> {
    t.section("C. DMA: what a device can reach");
    let nic = tour_device(machine)?;
    t.line(format!("A bus-master device \"{}\" with a 32-bit DMA mask: it reads and writes RAM at bus addresses, without the CPU's MMU (on x86 without an IOMMU, bus address = physical address).", nic.name()));
    let kmalloc = dma_into_kmalloc(t, machine, &nic)?;
    let (refused, refusal) = map_vmalloc(t, machine, &nic)?;
    let here = naive_pa(machine, &nic)?;
    let other = other_profile(machine)?;
    for n in [&here, &other] {
        t.line(format!(
            "{}: __pa(vmalloc {:#x}) = {:#x}{}; the device writes there: {}; the vmalloc buffer {}.",
            n.profile,
            n.vaddr,
            n.pa,
            match &n.full_refused {
                Some(e) => format!(
                    ", beyond the device's address lines ({e}); written into a 32-bit descriptor field (the tour's version of this bug) it becomes {:#x}",
                    n.naive
                ),
                None => String::new(),
            },
            n.outcome,
            if n.buffer_untouched {
                "is untouched"
            } else {
                "changed (unexpected)"
            }
        ));
    }
    t.line("The refusal is the API keeping a driver from exactly this: a vmalloc address minus PAGE_OFFSET is no physical address at all.");
    let c_holds = match &kmalloc.does_not_fit {
        Some(reason) => {
            t.does_not_fit("C", CLAIM_C, reason.clone());
            false
        }
        None => t.claim(
            "C",
            CLAIM_C,
            format!(
                "kmalloc(4K): {}, {} bytes verified through the direct map; vmalloc: {}; __pa() DMA: {} / {}",
                kmalloc.route(),
                kmalloc.verified,
                if refused { format!("refused ('{refusal}')") } else { "mapped (unexpected)".into() },
                here.short(),
                other.short()
            ),
            kmalloc.ok && refused && here.missed() && other.missed(),
        ),
    };
    t.fact(
        "dma",
        json!({"kmalloc": {"bus": addr(kmalloc.bus), "phys": addr(kmalloc.phys), "bounced": kmalloc.bounced,
                "verified": kmalloc.verified, "ok": kmalloc.ok, "does_not_fit": kmalloc.does_not_fit},
            "vmalloc_refused": refused, "refusal": refusal,
            "naive": [here.json(), other.json()], "holds": c_holds}),
    );
    scatterlist(t, machine, &nic)?;
    if let Err(e) = machine.mm().dma_check_idle() {
        t.invariant_broken("the DMA section", format!("DMA state not idle: {e}"));
    }
    Ok(())
}

/// What the kmalloc transfer showed.
struct KmallocDma {
    bus: u64,
    /// The buffer's physical address, from a walk of the page tables.
    phys: u64,
    /// Whether dma_map_single bounced it through swiotlb: the bus address is a swiotlb
    /// slot, and the pool's bounce counter moved.
    bounced: bool,
    verified: usize,
    ok: bool,
    /// Why the transfer cannot be done on this machine at all.
    does_not_fit: Option<String>,
}

impl KmallocDma {
    /// How the device reached the buffer.
    fn route(&self) -> String {
        if self.bounced {
            format!(
                "phys {:#x} beyond the 32-bit mask, bounced through swiotlb at bus {:#x}",
                self.phys, self.bus
            )
        } else {
            format!("bus {:#x} = phys", self.bus)
        }
    }
}

/// The device the experiment drives: a 32-bit bus master named "nic". The section may
/// run again on the same machine (a `serve` session runs claims in any order, any number
/// of times), and a user may have plugged in devices of their own: a "nic" already there
/// with the same 32 address lines is the same hardware and is used again; otherwise the
/// first free name of "nic", "nic1", "nic2", … is plugged in.
fn tour_device(machine: &Machine) -> Result<Arc<DmaDevice>, String> {
    const BITS: u32 = 32;
    /// How many names are tried before giving up.
    const NAMES: u32 = 64;
    for n in 0..NAMES {
        let name = if n == 0 {
            "nic".to_string()
        } else {
            format!("nic{n}")
        };
        match machine.dma_device(&name) {
            Some(dev) if dev.mask_bits() == BITS => return Ok(dev),
            Some(_) => continue,
            None => {
                return machine
                    .add_dma_device(&name, BITS)
                    .map_err(|e| e.to_string())
            }
        }
    }
    Err(format!(
        "no free name for the tour's DMA device (nic … nic{}: taken by devices of another mask)",
        NAMES - 1
    ))
}

/// The bytes a device writes: distinct per offset, so a misplaced byte shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// kmalloc a buffer, map it FROM_DEVICE, let the device write it, unmap, and read it back
/// through the CPU's direct map. The device reaches the buffer directly when it lies
/// within its mask (bus address = physical address), or through a swiotlb bounce buffer
/// that dma_unmap_single copies back, as `dma_direct_map_page()` does when
/// `dma_capable()` says no; without a pool, such a buffer cannot be mapped at all.
fn dma_into_kmalloc(
    t: &mut Tour,
    machine: &Machine,
    nic: &Arc<DmaDevice>,
) -> Result<KmallocDma, String> {
    let dev = nic.device();
    let buf = machine
        .run(|mm| mm.kmalloc(KMALLOC_SIZE, Gfp::GFP_KERNEL))
        .map_err(|e| e.to_string())?;
    let phys = machine
        .walk(buf)
        .result
        .map(|tr| tr.phys.0)
        .map_err(|e| format!("the kmalloc buffer {buf} is not mapped: {e:?}"))?;
    let bounced_before = machine.mm().dma_stats().bounced_maps;
    let bus =
        machine.run(|mm| mm.dma_map_single(dev, buf, KMALLOC_SIZE, DmaDataDirection::FromDevice));
    let checked = machine.run(|mm| mm.dma_mapping_error(dev, bus)).is_ok();
    let bounced_maps = machine.mm().dma_stats().bounced_maps - bounced_before;
    let in_pool = checked
        && machine
            .mm()
            .is_swiotlb_buffer(machine.mm().dma_to_phys(dev, bus));
    let beyond_mask = phys + KMALLOC_SIZE as u64 - 1 > nic.address_mask();
    let does_not_fit = (!checked && beyond_mask && !machine.mm().is_swiotlb_active()).then(|| {
        format!(
            "the kmalloc buffer is at phys {phys:#x}, beyond the device's 32-bit mask, and this machine has no swiotlb pool to bounce through"
        )
    });
    let data = pattern(KMALLOC_SIZE, 7);
    nic.load_buffer(&data);
    let sent = checked && nic.write_to_memory(machine, bus, KMALLOC_SIZE).is_ok();
    if checked {
        machine.run(|mm| mm.dma_unmap_single(dev, bus, KMALLOC_SIZE, DmaDataDirection::FromDevice));
    }
    t.take_console(machine);
    let seen = machine
        .run(|_| machine.read(buf, KMALLOC_SIZE))
        .map_err(|e| e.to_string())?;
    let verified = seen.iter().zip(&data).take_while(|(a, b)| a == b).count();
    machine.run(|mm| mm.kfree(buf)).map_err(|e| e.to_string())?;
    let bounced = in_pool && bounced_maps == 1;
    let route = if bounced {
        format!("beyond the device's mask, so it bounces: bus {bus:#x} is a swiotlb slot")
    } else if checked {
        format!("bus {bus:#x}")
    } else {
        "refused".to_string()
    };
    t.line(format!(
        "kmalloc(4K) = {buf}, phys {phys:#x} (page walk); dma_map_single(FROM_DEVICE): {route}; the device writes 4096 bytes; after dma_unmap_single the CPU reads them through the direct map: {verified} of 4096 bytes match."
    ));
    let direct = !beyond_mask && bus == phys && bounced_maps == 0;
    Ok(KmallocDma {
        bus,
        phys,
        bounced,
        verified,
        ok: sent && (direct || (beyond_mask && bounced)) && verified == KMALLOC_SIZE,
        does_not_fit,
    })
}

/// `dma_map_single` of a vmalloc buffer: refused, with the kernel's warning.
fn map_vmalloc(
    t: &mut Tour,
    machine: &Machine,
    nic: &Arc<DmaDevice>,
) -> Result<(bool, String), String> {
    let dev = nic.device();
    let rejections = machine.mm().dma_stats().vmalloc_rejections;
    let v = machine
        .run(|mm| mm.vmalloc(VMALLOC_SIZE))
        .map_err(|e| e.to_string())?;
    let addr =
        machine.run(|mm| mm.dma_map_single(dev, v, VMALLOC_SIZE, DmaDataDirection::FromDevice));
    let error = machine.run(|mm| mm.dma_mapping_error(dev, addr));
    let console = t.take_console(machine);
    machine.run(|mm| mm.vfree(v)).map_err(|e| e.to_string())?;
    t.line(format!("dma_map_single(vmalloc(64K) = {v}):"));
    // The cut line, the message and the WARNING line (dev_WARN_ONCE: the first time only).
    for l in console.iter().take(3) {
        t.line(format!("  | {l}"));
    }
    let refused = addr == DMA_MAPPING_ERROR && error.is_err();
    t.line(format!(
        "-> {}",
        if refused {
            "DMA_MAPPING_ERROR, and dma_mapping_error() says so"
        } else {
            "mapped (unexpected)"
        }
    ));
    let line = console
        .iter()
        .find(|l| l.contains("rejecting DMA map of vmalloc memory"))
        .cloned()
        .unwrap_or_default();
    // dev_WARN_ONCE prints once per boot: a repeat is known by the rejection count.
    let counted = machine.mm().dma_stats().vmalloc_rejections == rejections + 1;
    Ok((refused && counted, line))
}

/// Where DMA to `__pa()` of a vmalloc address went.
struct Naive {
    profile: Profile,
    vaddr: u64,
    /// `vaddr - PAGE_OFFSET`.
    pa: u64,
    /// Why the device refused `pa` itself, when it lies beyond its address lines.
    full_refused: Option<String>,
    /// What the device is given: `pa` cut to its address width.
    naive: u64,
    /// Bytes overwritten in RAM that is not the buffer.
    hit_other_ram: bool,
    bus_error: bool,
    buffer_untouched: bool,
    outcome: String,
}

impl Naive {
    fn missed(&self) -> bool {
        let full_ok = self.pa == self.naive || self.full_refused.is_some();
        full_ok && self.buffer_untouched && (self.hit_other_ram || self.bus_error)
    }
    fn short(&self) -> String {
        format!(
            "{}: {}",
            self.profile,
            if self.hit_other_ram {
                "another page overwritten"
            } else if self.bus_error {
                "no RAM there, bus error"
            } else {
                "unexpected"
            }
        )
    }
    fn json(&self) -> serde_json::Value {
        json!({"profile": self.profile.name(), "vaddr": addr(self.vaddr), "pa": addr(self.pa),
            "pa_refused": self.full_refused, "naive_bus": addr(self.naive),
            "hit_other_ram": self.hit_other_ram, "bus_error": self.bus_error,
            "buffer_untouched": self.buffer_untouched})
    }
}

/// A driver's bug, on purpose: hand the device `vaddr - PAGE_OFFSET` (what `__pa()`
/// computes for a direct-map address) for a vmalloc buffer. The RAM page there, if any,
/// is saved first and restored afterwards, so the machine goes on intact.
fn naive_pa(machine: &Machine, nic: &Arc<DmaDevice>) -> Result<Naive, String> {
    let mm = machine.mm();
    let v = machine
        .run(|mm| mm.vmalloc(PAGE_SIZE))
        .map_err(|e| e.to_string())?;
    let before = machine
        .run(|_| machine.read(v, PAGE_SIZE))
        .map_err(|e| e.to_string())?;
    let pa = v.0.wrapping_sub(mm.layout().page_offset);
    let data = pattern(PAGE_SIZE, 0x5a);
    nic.load_buffer(&data);
    // Beyond the device's address lines, the address itself is refused by the bus.
    let full = (pa > nic.address_mask())
        .then(|| nic.write_to_memory(machine, pa, PAGE_SIZE).err())
        .flatten()
        .map(|e| e.to_string());
    // The tour's construct for that case: the driver stores the address in a 32-bit
    // descriptor field, which keeps the low 32 bits.
    let naive = pa & nic.address_mask();
    let ram = mm.platform().ram();
    let mut saved = vec![0u8; PAGE_SIZE];
    let is_ram = ram.read(naive, &mut saved).is_some();
    let sent = nic.write_to_memory(machine, naive, PAGE_SIZE);
    let mut landed = vec![0u8; PAGE_SIZE];
    let hit_other_ram = sent.is_ok() && ram.read(naive, &mut landed).is_some() && landed == data;
    if is_ram {
        ram.write(naive, &saved)
            .ok_or("restoring the overwritten page")?;
    }
    let owner = mm
        .pfn_to_page(Pfn(naive >> 12))
        .map(|p| crate::describe::page_info(&mm, mm.page_to_pfn(p)))
        .ok();
    let after = machine
        .run(|_| machine.read(v, PAGE_SIZE))
        .map_err(|e| e.to_string())?;
    machine.run(|mm| mm.vfree(v)).map_err(|e| e.to_string())?;
    let outcome = match (&sent, &owner) {
        (Ok(()), Some(info)) => format!(
            "it overwrote pfn {:#x} in {} ({}), a page that is not the buffer (restored afterwards)",
            naive >> 12,
            info.zone,
            info.state
        ),
        (Ok(()), None) => "it overwrote RAM that is not the buffer".into(),
        (Err(e), _) => format!("{e}"),
    };
    Ok(Naive {
        profile: machine.config().profile,
        vaddr: v.0,
        pa,
        full_refused: full,
        naive,
        hit_other_ram,
        bus_error: sent.is_err(),
        buffer_untouched: before == after,
        outcome,
    })
}

/// The naive DMA on a machine of the other profile (2 GiB), where its address lands
/// elsewhere: beyond RAM on x86_64, in HighMem on i386.
fn other_profile(machine: &Machine) -> Result<Naive, String> {
    let profile = match machine.config().profile {
        Profile::X86_64 => Profile::I386,
        Profile::I386 => Profile::X86_64,
    };
    let other = Machine::new(MachineConfig {
        profile,
        ram: 2 << 30,
        cpus: machine.config().cpus,
        seed: machine.config().seed,
        ..MachineConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let nic = other.add_dma_device("nic", 32).map_err(|e| e.to_string())?;
    naive_pa(&other, &nic)
}

/// Q1: a scatterlist of a vmalloc buffer, one entry per physically contiguous run found
/// with `vmalloc_to_page`, mapped with `dma_map_sg`; the device scatters its data over the
/// segments and the CPU reads it back through the vmalloc mapping.
fn scatterlist(t: &mut Tour, machine: &Machine, nic: &Arc<DmaDevice>) -> Result<(), String> {
    let dev = nic.device();
    let dir = DmaDataDirection::FromDevice;
    let v = machine
        .run(|mm| mm.vmalloc(VMALLOC_SIZE))
        .map_err(|e| e.to_string())?;
    let mut pfns = Vec::new();
    machine
        .mm()
        .vm_area_pfns(v, |p| pfns.push(p))
        .map_err(|e| e.to_string())?;
    let mut table = machine
        .run(|mm| mm.sg_alloc_table_from_vmalloc(dev, v, VMALLOC_SIZE, Gfp::GFP_KERNEL))
        .map_err(|e| e.to_string())?;
    let mapped = machine.run(|mm| mm.dma_map_sg(dev, &table, table.nents, dir));
    let segments: Vec<(u64, usize)> = machine
        .mm()
        .sg_dma_segments(&table)
        .take(mapped as usize)
        .collect();
    let data = pattern(VMALLOC_SIZE, 0x33);
    nic.load_buffer(&data);
    let sent = nic.write_segments(machine, &segments);
    machine.run(|mm| {
        if mapped > 0 {
            mm.dma_unmap_sg(dev, &table, table.nents, dir);
        }
        mm.sg_free_table(&mut table);
    });
    let seen = machine
        .run(|_| machine.read(v, VMALLOC_SIZE))
        .map_err(|e| e.to_string())?;
    machine.run(|mm| mm.vfree(v)).map_err(|e| e.to_string())?;
    let verified = seen == data;
    let nruns = runs(&pfns).len();
    t.line(format!(
        "sg_alloc_table_from_vmalloc(vmalloc(64K) = {v}): vmalloc_to_page for each of its {} pages, physically adjacent ones merged: {} entries for {nruns} physical runs; dma_map_sg mapped {mapped} segments.",
        pfns.len(),
        segments.len()
    ));
    let list: Vec<String> = segments
        .iter()
        .take(6)
        .map(|(a, l)| format!("{a:#x}+{l:#x}"))
        .collect();
    t.line(format!(
        "  segments: {}{}",
        list.join(", "),
        if segments.len() > 6 { ", ..." } else { "" }
    ));
    t.line(format!(
        "The device scatters 64 KiB over them ({}); the CPU reads the vmalloc buffer back through its page tables: {}.",
        match &sent {
            Ok(n) => format!("{n} bytes"),
            Err(e) => format!("failed: {e}"),
        },
        if verified { "every byte matches" } else { "MISMATCH" }
    ));
    let holds = mapped as usize == nruns && sent.is_ok() && verified;
    // dma_map_sg() maps every entry or none; a page beyond the mask needs a bounce pool.
    let beyond = pfns
        .iter()
        .filter(|&&p| (p + 1).phys().0 - 1 > nic.address_mask())
        .count();
    let does_not_fit = (mapped == 0 && beyond > 0 && !machine.mm().is_swiotlb_active())
        .then(|| {
            format!(
                "{beyond} of the vmalloc buffer's pages lie beyond the device's 32-bit mask, and this machine has no swiotlb pool to bounce through"
            )
        });
    t.fact(
        "dma_sg_vmalloc",
        json!({"pages": pfns.len(), "runs": nruns, "segments": segments.iter().map(|&(a, l)| json!([addr(a), l])).collect::<Vec<_>>(), "verified": verified, "holds": holds}),
    );
    if let Some(reason) = does_not_fit {
        t.does_not_fit("Q1", CLAIM_Q1, reason);
        return Ok(());
    }
    t.claim(
        "Q1",
        CLAIM_Q1,
        format!(
            "vmalloc(64K): {} pages in {nruns} runs -> {mapped} DMA segments; device wrote 64 KiB, CPU read it back: {}",
            pfns.len(),
            if verified { "identical" } else { "different" }
        ),
        holds,
    );
    Ok(())
}
