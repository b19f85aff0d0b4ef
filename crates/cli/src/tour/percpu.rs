//! The slab allocator's two per-CPU layers side by side on this run: the same burst
//! workload of kmalloc(64) and kfree on two small machines booted like this one, one
//! with the per-CPU slab (Linux 6.6) and one with sheaves (Linux 6.18/7.0), counted by
//! their SLUB statistics. One line and one fact; what it prints is what was measured.

use kmemlab_mm::slab::sheaf::SlabPercpu;
use kmemlab_mm::slab::stats::StatItem;
use kmemlab_mm::Gfp;
use kmemlab_sim::{Machine, MachineConfig};
use serde_json::json;

use super::Tour;

/// Bursts of this many kmalloc(64), then as many kfree, in allocation order.
const BURST: usize = 200;
/// Bursts.
const ROUNDS: usize = 20;

/// What one machine's per-CPU layer did with the workload.
struct Hits {
    allocs: u64,
    frees: u64,
    alloc_hits: u64,
    free_hits: u64,
    /// kmalloc-64 has slab_debug flags (`kmem_cache_debug()`): its objects bypass the
    /// per-CPU layer.
    debug: bool,
    /// kmalloc-64 has sheaves (`s->sheaf_capacity` is not 0).
    sheaves: bool,
}

impl Hits {
    /// Why the per-CPU layer `percpu` served nothing, when slab_debug is the reason: the
    /// kernel's own rule, for the tour's line.
    fn debug_reason(&self, percpu: SlabPercpu) -> Option<&'static str> {
        if !self.debug || self.alloc_hits + self.free_hits != 0 {
            return None;
        }
        match percpu {
            SlabPercpu::CpuSlab => Some(
                "kmalloc-64 has slab_debug: every allocation and free takes the debug path, as 6.6's ___slab_alloc() and __slab_free() send it",
            ),
            SlabPercpu::Sheaves if !self.sheaves => Some(
                "kmalloc-64 has slab_debug, and 6.18's do_kmem_cache_create() gives a cache with debug flags no sheaves",
            ),
            SlabPercpu::Sheaves => None,
        }
    }
}

/// Boot a 32 MiB machine like `like` with the per-CPU layer `percpu` and statistics on,
/// run the bursts on CPU 0, and count the allocations and frees the per-CPU layer served
/// by itself (CPU freelist or main sheaf).
fn measure(like: &MachineConfig, percpu: SlabPercpu) -> Result<Hits, String> {
    let mut config = MachineConfig {
        ram: 32 << 20,
        holes: Vec::new(),
        sysctls: Vec::new(),
        ..like.clone()
    };
    config.slab.slub_stats = true;
    config.slab.percpu = percpu;
    let m = Machine::new(config).map_err(|e| e.to_string())?;
    m.run(|mm| {
        let r = mm
            .kmalloc_slab(64, Gfp::GFP_KERNEL)
            .ok_or("no kmalloc-64 cache")?;
        let debug = mm.cache(r).map_err(|e| e.to_string())?.is_debug();
        let sheaves = mm.sheaves_info(r).is_some();
        let count = |item| mm.slub_stat(r, item).ok().flatten().unwrap_or(0);
        let before: Vec<u64> = [
            StatItem::AllocFastpath,
            StatItem::AllocPcs,
            StatItem::FreeFastpath,
            StatItem::FreePcs,
        ]
        .into_iter()
        .map(count)
        .collect();
        for _ in 0..ROUNDS {
            let mut objs = Vec::with_capacity(BURST);
            for _ in 0..BURST {
                objs.push(
                    mm.kmalloc(64, Gfp::GFP_KERNEL)
                        .map_err(|e| super::explain(mm, e))?,
                );
            }
            for p in objs {
                mm.kfree(p).map_err(|e| e.to_string())?;
            }
        }
        let (alloc_item, free_item, b_alloc, b_free) = match percpu {
            SlabPercpu::CpuSlab => (
                StatItem::AllocFastpath,
                StatItem::FreeFastpath,
                before[0],
                before[2],
            ),
            SlabPercpu::Sheaves => (StatItem::AllocPcs, StatItem::FreePcs, before[1], before[3]),
        };
        // In the sheaves machine, refills allocate through the CPU slab too: only the
        // main sheaf's own hits are counted for it.
        Ok(Hits {
            allocs: (ROUNDS * BURST) as u64,
            frees: (ROUNDS * BURST) as u64,
            alloc_hits: count(alloc_item) - b_alloc,
            free_hits: count(free_item) - b_free,
            debug,
            sheaves,
        })
    })
}

fn percent(part: u64, whole: u64) -> f64 {
    part as f64 * 100.0 / whole.max(1) as f64
}

/// The comparison line (and the `slab_percpu` fact).
pub(super) fn percpu_comparison(t: &mut Tour, machine: &Machine) {
    let like = machine.config();
    let this = machine.mm().slab_percpu();
    let results = [SlabPercpu::CpuSlab, SlabPercpu::Sheaves].map(|p| (p, measure(like, p)));
    let mut parts = Vec::new();
    let mut facts = serde_json::Map::new();
    for (p, r) in &results {
        match r {
            Ok(h) => {
                let mut part = format!(
                    "{} {:.0}% of allocations and {:.0}% of frees",
                    p.name(),
                    percent(h.alloc_hits, h.allocs),
                    percent(h.free_hits, h.frees)
                );
                let mut fact = json!({"allocs": h.allocs, "frees": h.frees,
                                      "alloc_hits": h.alloc_hits, "free_hits": h.free_hits});
                if let Some(why) = h.debug_reason(*p) {
                    part.push_str(&format!(" ({why})"));
                    fact["why_none"] = json!(why);
                }
                parts.push(part);
                facts.insert(p.name().into(), fact);
            }
            Err(e) => {
                parts.push(format!("{} failed: {e}", p.name()));
                facts.insert(p.name().into(), json!({"failed": e}));
            }
        }
    }
    t.line(format!(
        "Per-CPU layer (this machine: {}): {ROUNDS} bursts of {BURST} kmalloc(64) then kfree, served per CPU without a slab list: {}.",
        this.name(),
        parts.join("; ")
    ));
    facts.insert("this_machine".into(), json!(this.name()));
    t.fact("slab_percpu", serde_json::Value::Object(facts));
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmemlab_mm::slab::SlabFlags;

    /// With slab_debug neither layer serves anything, and the line says why; without it
    /// both serve and nothing is added.
    #[test]
    fn slab_debug_explains_why_no_layer_serves() {
        let mut like = MachineConfig::default();
        like.slab.debug = SlabFlags::DEBUG;
        for p in [SlabPercpu::CpuSlab, SlabPercpu::Sheaves] {
            let h = measure(&like, p).unwrap();
            assert_eq!((h.alloc_hits, h.free_hits), (0, 0));
            assert!(h.debug && !h.sheaves);
            let why = h.debug_reason(p).expect("a reason");
            assert!(why.starts_with("kmalloc-64 has slab_debug"), "{why}");
        }
        let plain = MachineConfig::default();
        for p in [SlabPercpu::CpuSlab, SlabPercpu::Sheaves] {
            let h = measure(&plain, p).unwrap();
            assert!(h.alloc_hits > 0 && !h.debug);
            assert_eq!(h.debug_reason(p), None);
        }
    }
}
