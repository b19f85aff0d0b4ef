//! `kmemlab tour`: the page allocator, kmalloc and vmalloc shown side by side on one
//! simulated machine. Every number printed is read from the running kernel, and every
//! claim the tour makes (the seven contrasts A–G and the three questions Q1–Q3) is
//! decided from what this run measured; `--json` prints the same as one JSON document.

mod basics;
mod dma;
mod irq;
mod overhead;
mod size;
mod underneath;
mod vmalloc;

use kmemlab_sim::{format_size, Machine};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::MachineArgs;

/// How the tour prints.
#[derive(Clone, Copy, Debug)]
pub struct TourOptions {
    /// One JSON document instead of text.
    pub json: bool,
    /// Measure and print host wall-clock times (off: the output depends only on the seed).
    pub wall_clock: bool,
}

/// One claim of the tour and what this run measured for it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Claim {
    id: &'static str,
    claim: String,
    measured: String,
    holds: bool,
}

/// Collects the tour as text, JSON facts and claims.
pub(crate) struct Tour {
    text: String,
    facts: Map<String, Value>,
    claims: Vec<Claim>,
    step: usize,
    wall_clock: bool,
}

impl Tour {
    pub(crate) fn section(&mut self, title: &str) {
        self.step += 1;
        self.text.push_str(&format!("\n{}. {title}\n", self.step));
    }
    pub(crate) fn line(&mut self, text: impl AsRef<str>) {
        for l in text.as_ref().lines() {
            self.text.push_str("   ");
            self.text.push_str(l);
            self.text.push('\n');
        }
    }
    pub(crate) fn fact(&mut self, key: &str, value: Value) {
        self.facts.insert(key.to_string(), value);
    }
    /// Record a claim decided from `measured`; returns `holds`.
    pub(crate) fn claim(
        &mut self,
        id: &'static str,
        claim: impl Into<String>,
        measured: impl Into<String>,
        holds: bool,
    ) -> bool {
        let c = Claim {
            id,
            claim: claim.into(),
            measured: measured.into(),
            holds,
        };
        self.line(format!(
            "[{id}] {} -- {}",
            c.claim,
            if holds { "held" } else { "DID NOT HOLD" }
        ));
        self.claims.push(c);
        holds
    }
    /// Whether wall-clock times are measured.
    pub(crate) fn wall_clock(&self) -> bool {
        self.wall_clock
    }
}

/// The CPU that takes interrupts and runs "the other" side of an experiment: CPU 1, or
/// CPU 0 on a one-CPU machine.
pub(crate) fn second_cpu(machine: &Machine) -> usize {
    usize::from(machine.config().cpus > 1)
}

/// Run the tour; `Ok(true)` if every claim held.
pub fn run(args: &MachineArgs, options: TourOptions) -> Result<bool, String> {
    let machine = args.boot()?;
    let mut t = Tour {
        text: String::new(),
        facts: Map::new(),
        claims: Vec::new(),
        step: 0,
        wall_clock: options.wall_clock,
    };
    let cfg = machine.config();
    t.text.push_str(&format!(
        "kmemlab tour: the Linux page allocator, SLUB and vmalloc on a simulated {} machine, {} RAM, {} CPUs, seed {}\n",
        cfg.profile,
        format_size(cfg.ram),
        cfg.cpus,
        cfg.seed
    ));
    t.fact("machine", serde_json::to_value(cfg).expect("plain data"));
    basics::memory_map(&mut t, &machine);
    basics::boot_reservations(&mut t, &machine);
    basics::zone_table(&mut t, &machine);
    basics::buddy_lists(&mut t, &machine);
    let mut ok = basics::allocations(&mut t, &machine)?;
    ok &= basics::kmalloc_section(&mut t, &machine)?;
    ok &= vmalloc::section(&mut t, &machine, args)?;
    ok &= dma::section(&mut t, &machine)?;
    ok &= irq::section(&mut t, &machine)?;
    ok &= underneath::section(&mut t, &machine)?;
    ok &= overhead::section(&mut t, &machine)?;
    ok &= size::section(&mut t, &machine)?;
    ok &= claims_table(&mut t, &machine);
    if options.json {
        let mut doc = t.facts;
        doc.insert("claims".into(), json!(t.claims));
        doc.insert("all_hold".into(), json!(ok));
        crate::output::print(&format!("{}\n", Value::Object(doc)))?;
    } else {
        crate::output::print(&t.text)?;
    }
    Ok(ok)
}

/// The closing table: every claim, what was measured, and whether it held.
fn claims_table(t: &mut Tour, machine: &Machine) -> bool {
    let cfg = machine.config();
    t.section(&format!(
        "The claims, decided on this machine ({}, {} RAM, {} CPUs, seed {})",
        cfg.profile,
        format_size(cfg.ram),
        cfg.cpus,
        cfg.seed
    ));
    let claims = t.claims.clone();
    for c in &claims {
        t.line(format!(
            "{:<3} {:<6} {}",
            c.id,
            if c.holds { "held" } else { "FAILED" },
            c.claim
        ));
        t.line(format!("{:<10} measured: {}", "", c.measured));
    }
    let held = claims.iter().filter(|c| c.holds).count();
    t.line(format!("{held} of {} claims held.", claims.len()));
    held == claims.len()
}
