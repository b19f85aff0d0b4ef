//! `kmemlab tour`: the page allocator, kmalloc and vmalloc shown side by side on one
//! simulated machine. Every number printed is read from the running kernel, and every
//! claim the tour makes (the seven contrasts A–G and the three questions Q1–Q3) is
//! decided from what this run measured; `--json` prints the same as one JSON document.
//!
//! Each claim gets one of three verdicts:
//! - `held`: the experiment ran and measured what the claim says;
//! - `failed`: the experiment ran (or stopped with an error) and measured something else;
//! - `n/a`: the experiment does not fit this machine (for example, a machine without a
//!   ZONE_DMA block large enough); the claim then says why, measured from the machine.
//!
//! The tour never stops early: an experiment that fails or does not fit is reported and
//! the rest still runs. It holds as a whole (`all_hold` in the JSON, exit status 0) when
//! every claim that fits held and the invariant checker found nothing broken after any
//! section; otherwise the exit status is 1. Claims that do not fit count neither way.

mod basics;
mod dma;
mod irq;
mod overhead;
mod percpu;
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

/// What one claim's experiment showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It ran and measured what the claim says.
    Held,
    /// It ran, or stopped with an error, and measured something else.
    Failed,
    /// It does not fit this machine, for the reason given.
    DoesNotFit(String),
}

/// One claim of the tour and what this run measured for it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Claim {
    id: &'static str,
    claim: String,
    measured: String,
    /// `held`, `failed` or `n/a`.
    verdict: &'static str,
    /// Why the experiment does not fit this machine (only with `n/a`).
    reason: Option<String>,
    /// The verdict is `held`.
    holds: bool,
}

impl Claim {
    fn failed(&self) -> bool {
        self.verdict == "failed"
    }
}

/// Collects the tour as text, JSON facts and claims.
pub(crate) struct Tour {
    text: String,
    facts: Map<String, Value>,
    claims: Vec<Claim>,
    /// What the invariant checker found broken, after which section.
    broken: Vec<String>,
    step: usize,
    wall_clock: bool,
    /// Every console line the experiments took from the machine (to quote or to discard),
    /// in order: what the kernel printed during the run.
    kernel: Vec<String>,
}

impl Tour {
    /// Take the machine's pending console lines ([`Machine::take_console`]), keeping a
    /// copy as part of what the kernel printed during the run.
    pub(crate) fn take_console(&mut self, machine: &Machine) -> Vec<String> {
        let lines = machine.take_console();
        self.kernel.extend(lines.iter().cloned());
        lines
    }
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
        let verdict = if holds {
            Verdict::Held
        } else {
            Verdict::Failed
        };
        self.decide(id, claim.into(), measured.into(), verdict);
        holds
    }
    /// Record a claim whose experiment does not fit this machine, and why.
    pub(crate) fn does_not_fit(
        &mut self,
        id: &'static str,
        claim: impl Into<String>,
        reason: impl Into<String>,
    ) {
        let reason = reason.into();
        self.decide(
            id,
            claim.into(),
            format!("does not fit: {reason}"),
            Verdict::DoesNotFit(reason),
        );
    }
    fn decide(&mut self, id: &'static str, claim: String, measured: String, verdict: Verdict) {
        let (word, reason) = match verdict {
            Verdict::Held => ("held", None),
            Verdict::Failed => ("failed", None),
            Verdict::DoesNotFit(r) => ("n/a", Some(r)),
        };
        self.line(format!(
            "[{id}] {claim} -- {}",
            match (&reason, word) {
                (Some(r), _) => format!("does not fit: {r}"),
                (None, "held") => "held".to_string(),
                _ => "DID NOT HOLD".to_string(),
            }
        ));
        self.claims.push(Claim {
            id,
            claim,
            measured,
            verdict: word,
            reason,
            holds: word == "held",
        });
    }
    fn decided(&self, id: &str) -> bool {
        self.claims.iter().any(|c| c.id == id)
    }
    /// Run the invariant checker (`check()`: every subsystem's) after `after`; a broken
    /// invariant is printed and makes the tour fail, and the tour goes on.
    pub(crate) fn check_invariants(&mut self, machine: &Machine, after: &str) {
        let found = machine.check().err().map(|e| e.to_string());
        if let Some(e) = found {
            self.invariant_broken(after, e);
        }
    }
    /// Record and print a broken invariant found after `after`.
    pub(crate) fn invariant_broken(&mut self, after: &str, e: String) {
        self.line(format!("check() after {after}: INVARIANT BROKEN: {e}"));
        self.broken.push(format!("after {after}: {e}"));
    }
    /// Whether wall-clock times are measured.
    pub(crate) fn wall_clock(&self) -> bool {
        self.wall_clock
    }
}

/// An error's message as the tour prints it: a failed allocation's summary completed
/// with the page allocator's report of it ([`kmemlab_mm::Mm::with_alloc_failure_detail`]:
/// each zone's verdict). Call it right after the failure, on the machine that failed.
pub(crate) fn explain(
    mm: &kmemlab_mm::Mm<kmemlab_sim::SimPlatform>,
    e: impl std::fmt::Display,
) -> String {
    mm.with_alloc_failure_detail(&e.to_string()).to_string()
}

/// Run `f` on `machine` (as [`Machine::run`]), its error as [`explain`] gives it.
pub(crate) fn run_text<T, E: std::fmt::Display>(
    machine: &Machine,
    f: impl FnOnce(&kmemlab_mm::Mm<kmemlab_sim::SimPlatform>) -> Result<T, E>,
) -> Result<T, String> {
    machine.run(|mm| f(mm).map_err(|e| explain(mm, e)))
}

/// Run one section on `machine` that decides `claims` (id and statement). If it stops
/// with an error, every claim it had not decided yet fails with that error as what was
/// measured; the tour goes on with the next section.
fn run_section(
    t: &mut Tour,
    machine: &Machine,
    claims: &[(&'static str, &'static str)],
    section: impl FnOnce(&mut Tour) -> Result<(), String>,
) {
    if let Err(e) = section(t).map_err(|e| explain(&machine.mm(), e)) {
        t.line(format!("The experiment stopped: {e}"));
        for &(id, claim) in claims {
            if !t.decided(id) {
                t.claim(id, claim, format!("the experiment stopped: {e}"), false);
            }
        }
    }
}

/// The CPU that takes interrupts and runs "the other" side of an experiment: CPU 1, or
/// CPU 0 on a one-CPU machine.
pub(crate) fn second_cpu(machine: &Machine) -> usize {
    usize::from(machine.config().cpus > 1)
}

/// The claims each section decides, with the section that decides them.
fn section_of(id: &str) -> Option<&'static [(&'static str, &'static str)]> {
    [
        vmalloc::CLAIMS,
        dma::CLAIMS,
        irq::CLAIMS,
        underneath::CLAIMS,
        overhead::CLAIMS,
        size::CLAIMS,
    ]
    .into_iter()
    .find(|claims| claims.iter().any(|&(c, _)| c == id))
}

/// Every claim's id, in the tour's order.
pub fn claim_ids() -> Vec<&'static str> {
    [
        vmalloc::CLAIMS,
        dma::CLAIMS,
        irq::CLAIMS,
        underneath::CLAIMS,
        overhead::CLAIMS,
        size::CLAIMS,
    ]
    .into_iter()
    .flat_map(|claims| claims.iter().map(|&(id, _)| id))
    .collect()
}

/// What running one section of the tour on a given machine showed.
pub struct SectionRun {
    /// Every claim the section decided (as JSON, as in `tour --json`).
    pub claims: Vec<Value>,
    /// The section as `kmemlab tour` prints it.
    pub text: String,
    /// The section's JSON facts.
    pub facts: Map<String, Value>,
    /// Invariants the checker found broken afterwards.
    pub broken: Vec<String>,
    /// Every line the kernel printed while the section ran (including those the tour
    /// quotes in its text), in order, ending with what was still pending afterwards.
    pub kernel: Vec<String>,
    /// How many oopses the kernel reported while the section ran
    /// ([`Machine::take_oopses`]); taken here, so they are not charged to whatever runs
    /// next on the machine.
    pub oopses: u32,
}

/// Run the section of the tour that decides claim `id` on `machine` (booted with
/// `args`), with the same code as `kmemlab tour`, without wall-clock times; `None` for
/// an unknown claim.
pub fn run_claim(machine: &Machine, args: &MachineArgs, id: &str) -> Option<SectionRun> {
    let claims = section_of(id)?;
    let mut t = Tour {
        text: String::new(),
        facts: Map::new(),
        claims: Vec::new(),
        broken: Vec::new(),
        step: 0,
        wall_clock: false,
        kernel: Vec::new(),
    };
    let first = claims[0].0;
    run_section(&mut t, machine, claims, |t| match first {
        "A" => vmalloc::section(t, machine, args),
        "C" => dma::section(t, machine),
        "D" => irq::section(t, machine),
        "E" => underneath::section(t, machine),
        "F" => overhead::section(t, machine),
        _ => size::section(t, machine),
    });
    t.check_invariants(machine, "the section");
    // As the shell does after each command: asked before the console is taken, since
    // faults recorded without a console are printed by this call.
    let oopses = machine.take_oopses();
    t.take_console(machine);
    Some(SectionRun {
        claims: t.claims.iter().map(|c| json!(c)).collect(),
        text: t.text,
        facts: t.facts,
        broken: t.broken,
        kernel: t.kernel,
        oopses,
    })
}

/// Run the tour and print it; `Ok(true)` if it held (see the module docs), `Err` only
/// when the machine cannot be booted.
pub fn run(args: &MachineArgs, options: TourOptions) -> Result<bool, String> {
    let machine = args.boot()?;
    let mut t = Tour {
        text: String::new(),
        facts: Map::new(),
        claims: Vec::new(),
        broken: Vec::new(),
        step: 0,
        wall_clock: options.wall_clock,
        kernel: Vec::new(),
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
    run_section(&mut t, &machine, &[], |t| basics::allocations(t, &machine));
    run_section(&mut t, &machine, &[], |t| {
        basics::kmalloc_section(t, &machine)
    });
    run_section(&mut t, &machine, vmalloc::CLAIMS, |t| {
        vmalloc::section(t, &machine, args)
    });
    run_section(&mut t, &machine, dma::CLAIMS, |t| dma::section(t, &machine));
    run_section(&mut t, &machine, irq::CLAIMS, |t| irq::section(t, &machine));
    run_section(&mut t, &machine, underneath::CLAIMS, |t| {
        underneath::section(t, &machine)
    });
    run_section(&mut t, &machine, overhead::CLAIMS, |t| {
        overhead::section(t, &machine)
    });
    run_section(&mut t, &machine, size::CLAIMS, |t| {
        size::section(t, &machine)
    });
    let ok = claims_table(&mut t, &machine);
    if options.json {
        let mut doc = t.facts;
        doc.insert("claims".into(), json!(t.claims));
        doc.insert("invariants_broken".into(), json!(t.broken));
        doc.insert("all_hold".into(), json!(ok));
        crate::output::print(&format!("{}\n", Value::Object(doc)))?;
    } else {
        crate::output::print(&t.text)?;
    }
    Ok(ok)
}

/// The closing table: every claim, what was measured, and its verdict. Returns whether
/// the tour held: no claim that fits failed, and no invariant broke.
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
        let verdict = match c.verdict {
            "held" => "held",
            "n/a" => "n/a",
            _ => "FAILED",
        };
        t.line(format!("{:<3} {:<6} {}", c.id, verdict, c.claim));
        match &c.reason {
            Some(r) => t.line(format!("{:<10} does not fit: {r}", "")),
            None => t.line(format!("{:<10} measured: {}", "", c.measured)),
        }
    }
    let held = claims.iter().filter(|c| c.holds).count();
    let failed = claims.iter().filter(|c| c.failed()).count();
    let not_fitting = claims.len() - held - failed;
    t.line(format!(
        "{held} of {} claims held, {failed} failed, {not_fitting} do not fit this machine.",
        claims.len()
    ));
    if !t.broken.is_empty() {
        t.line(format!(
            "The invariant checker found {} broken invariant{}.",
            t.broken.len(),
            if t.broken.len() == 1 { "" } else { "s" }
        ));
    }
    failed == 0 && t.broken.is_empty()
}
