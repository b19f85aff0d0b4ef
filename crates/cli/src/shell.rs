//! `kmemlab shell`: kernel memory commands, one per line, from a script or a prompt.
//!
//! ```text
//! # comment
//! p = alloc_pages GFP_KERNEL 3      # keep the result as p
//! ! alloc_pages GFP_KERNEL 11       # '!': expected to fail
//! ```
//! A failure prints `error: line N: <command>: <what and why>` after any kernel messages
//! and the script goes on; the exit status is 0 only if every command met its
//! expectation.
//!
//! The machine may break. After every command the shell asks the kernel whether it oopsed
//! ([`kmemlab_sim::Machine::take_oopses`]): a command that oopsed has failed, whatever it
//! returned, and says so under the kernel's report. After a panic the machine is halted:
//! commands that would change it are refused (the command table says which), those that
//! only read still serve a post-mortem, and `reboot` boots a fresh machine with the same
//! flags.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;

use kmemlab_mm::report::Taint;
use kmemlab_mm::{Context, Gfp, Hardware, Mm};
use kmemlab_sim::{format_size, parse_size, Machine, SimPlatform};
use serde_json::json;

use crate::commands;
use crate::output::{io_reason, write_error};
use crate::MachineArgs;

/// What a command returned.
pub enum Value {
    /// Nothing to show.
    None,
    /// A number (a size, a count, a PFN) and what it is.
    Number(u64, String),
    /// An address (virtual, physical or bus) and what it is: a `"0x…"` string in JSON.
    Address(u64, String),
    /// Text.
    Text(String),
    /// Named fields, and their text for people.
    Object(serde_json::Value, String),
    /// Several addresses (what a bulk allocation filled its array with) and what they
    /// are: a JSON array of `"0x…"` strings. Kept under a name, the list is `$name` and
    /// each address `$name0`, `$name1`, … ([`Shell::addresses`]).
    Addresses(Vec<u64>, String),
}

/// The most addresses one bulk command takes or returns: the kernel's bulk calls take an
/// array of any size, the shell bounds what one line may make it hold.
pub const MAX_BULK: usize = 4096;

/// State the shell keeps per CPU between commands.
#[derive(Default, Clone, Copy)]
pub struct CpuState {
    /// `local_irq_disable` in force.
    pub irqs_off: bool,
    /// `preempt_disable` depth.
    pub preempt_depth: u32,
}

/// A shell session on one machine.
pub struct Shell {
    /// The machine.
    pub machine: Machine,
    /// The CPU commands run on.
    pub cpu: usize,
    /// The context commands run in.
    pub ctx: Context,
    vars: BTreeMap<String, u64>,
    /// Lists of addresses kept under a name; each element is also in `vars` as the
    /// name and its index.
    lists: BTreeMap<String, Vec<u64>>,
    cpus: Vec<CpuState>,
    /// The script (or `<stdin>`) and the line being run, recorded as the call site of
    /// kmalloc for owner tracking.
    source: &'static str,
    line: u32,
    /// Zones pinned by `fragment`, until `unfragment`.
    pub fragmented: Vec<kmemlab_sim::Fragmented>,
    /// Scatterlists mapped by `dma_map_sg`, by table address, until `dma_unmap_sg`.
    pub sg_tables: BTreeMap<u64, crate::commands::dma::MappedSg>,
    /// Live single mappings and coherent buffers the shell made, by bus address: the
    /// physical range each covers (for `serve`'s map).
    pub dma_mapped: BTreeMap<u64, (u64, u64)>,
    /// The last console lines of a machine that `reboot` replaced, shown with that
    /// command's output.
    last_words: Vec<String>,
    /// May commands write to the host's file system (`snapshot`)? Only `kmemlab shell`
    /// and `kmemlab snapshot` set it; the explorer's console and the fuzzers leave it off.
    pub host_files: bool,
}

impl Shell {
    /// A session on a freshly booted machine.
    pub fn new(machine: Machine) -> Shell {
        let n = machine.config().cpus;
        Shell {
            machine,
            cpu: 0,
            ctx: Context::Process,
            vars: BTreeMap::new(),
            lists: BTreeMap::new(),
            cpus: vec![CpuState::default(); n],
            source: "<stdin>",
            line: 0,
            fragmented: Vec::new(),
            sg_tables: BTreeMap::new(),
            dma_mapped: BTreeMap::new(),
            last_words: Vec::new(),
            host_files: false,
        }
    }

    /// The interrupt and preemption state the shell keeps for `cpu` (default for a CPU
    /// it does not have).
    pub fn cpu_state(&self, cpu: usize) -> CpuState {
        self.cpus.get(cpu).copied().unwrap_or_default()
    }

    /// The physical ranges (start, bytes) of every live DMA mapping and coherent buffer
    /// the shell made, scatterlist segments included.
    pub fn dma_ranges(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self.dma_mapped.values().copied().collect();
        for m in self.sg_tables.values() {
            v.extend(crate::commands::dma::sg_phys_ranges(&self.machine, m));
        }
        v
    }

    /// The number of a name given earlier, if any.
    pub fn var(&self, name: &str) -> Option<u64> {
        self.vars.get(name).copied()
    }

    /// `reboot`: a fresh machine with the same flags replaces this one; every name, CPU
    /// and context setting, pinned fragment and mapped scatterlist of the old one is
    /// forgotten. The old machine's last console lines (ending with the kernel's
    /// `reboot: Restarting system`) are shown with the command; it returns the boot
    /// summary.
    pub fn reboot(&mut self) -> Result<Value, String> {
        self.last_words = self
            .machine
            .reboot()
            .map_err(|e| format!("reboot failed: {e}; the old machine stays"))?;
        self.vars.clear();
        self.lists.clear();
        self.cpu = 0;
        self.ctx = Context::Process;
        self.cpus = vec![CpuState::default(); self.machine.config().cpus];
        self.fragmented.clear();
        self.sg_tables.clear();
        self.dma_mapped.clear();
        Ok(boot_summary(&self.machine))
    }

    /// The current script line as a call site (what `%pS` of the caller shows).
    pub fn call_site(&self) -> kmemlab_mm::slab::CallSite {
        kmemlab_mm::slab::CallSite {
            file: self.source,
            line: self.line,
        }
    }

    /// The list of addresses kept under `name` (`name` or `$name`), if any.
    pub fn list(&self, name: &str) -> Option<&[u64]> {
        self.lists
            .get(name.strip_prefix('$').unwrap_or(name))
            .map(Vec::as_slice)
    }

    /// The names results were kept under, in order: numbers and addresses, lists, and
    /// each list's elements.
    pub fn var_names(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = self
            .vars
            .keys()
            .chain(self.lists.keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.into_iter()
    }

    /// Keep a result under `name`: a number or an address as itself, a list as `name`
    /// and its elements as `name0`, `name1`, …. Whatever `name` held before is forgotten,
    /// with the element names of a list it held.
    fn keep(&mut self, name: &str, value: &Value) {
        let kept = match value {
            Value::Number(..) | Value::Address(..) | Value::Addresses(..) => true,
            Value::None | Value::Text(_) | Value::Object(..) => false,
        };
        if !kept {
            return;
        }
        if let Some(old) = self.lists.remove(name) {
            for i in 0..old.len() {
                self.vars.remove(&format!("{name}{i}"));
            }
        }
        self.vars.remove(name);
        match value {
            Value::Number(n, _) | Value::Address(n, _) => {
                self.vars.insert(name.to_string(), *n);
            }
            Value::Addresses(list, _) => {
                for (i, a) in list.iter().enumerate() {
                    self.vars.insert(format!("{name}{i}"), *a);
                }
                self.lists.insert(name.to_string(), list.clone());
            }
            Value::None | Value::Text(_) | Value::Object(..) => {}
        }
    }

    /// The state of the current CPU.
    pub fn cpu_state_mut(&mut self) -> &mut CpuState {
        &mut self.cpus[self.cpu]
    }

    /// Run `f` in the kernel on the current CPU and context, with the interrupt and
    /// preemption state the script set up.
    pub fn kernel<R>(&self, f: impl FnOnce(&Mm<SimPlatform>) -> R) -> Result<R, String> {
        let state = self.cpus[self.cpu];
        self.machine
            .on_cpu(self.cpu, self.ctx, |mm| {
                let flags = state.irqs_off.then(|| mm.platform().local_irq_save());
                for _ in 0..state.preempt_depth {
                    mm.preempt_disable();
                }
                let r = f(mm);
                for _ in 0..state.preempt_depth {
                    mm.preempt_enable();
                }
                if let Some(flags) = flags {
                    mm.platform().local_irq_restore(flags);
                }
                r
            })
            .map_err(|e| e.to_string())
    }

    /// A number: a name given earlier (`name` or `$name`), a number (0x hex or decimal),
    /// or a size (4K).
    pub fn number(&self, arg: &str) -> Result<u64, String> {
        if let Some(v) = self.vars.get(arg.strip_prefix('$').unwrap_or(arg)) {
            return Ok(*v);
        }
        if let Some(list) = self.list(arg) {
            let name = arg.strip_prefix('$').unwrap_or(arg);
            return Err(format!(
                "'{name}' is a list of {} addresses: name one (${name}0 … ${name}{}), or give \
                 the list to a bulk command (kmem_cache_free_bulk, kfree_bulk)",
                list.len(),
                list.len().saturating_sub(1)
            ));
        }
        parse_size(arg)
            .ok_or_else(|| format!("'{arg}' is neither a number nor a name given earlier"))
    }

    /// Addresses for the bulk command `func`: each argument a list kept earlier (`$objs`,
    /// all its addresses in order) or one number as [`Shell::number`] reads it. At most
    /// [`MAX_BULK`] in all.
    pub fn addresses(&self, args: &[&str], func: &str) -> Result<Vec<u64>, String> {
        let mut out = Vec::new();
        for arg in args {
            match self.list(arg) {
                Some(list) => out.extend_from_slice(list),
                None => out.push(self.number(arg)?),
            }
            if out.len() > MAX_BULK {
                return Err(too_many(
                    func,
                    &format!("more than {MAX_BULK} addresses"),
                    "frees",
                ));
            }
        }
        Ok(out)
    }

    /// The count of a bulk allocation: 1 ..= [`MAX_BULK`]. `func` is the kernel function,
    /// for the error of a count of 0, which the bulk calls return at once without
    /// allocating anything.
    pub fn bulk_count(&self, arg: &str, func: &str) -> Result<usize, String> {
        let n = self.number(arg)?;
        match usize::try_from(n) {
            Ok(0) => Err(format!(
                "{func}: a count of 0 allocates nothing (the kernel returns 0 at once)"
            )),
            Ok(n) if n <= MAX_BULK => Ok(n),
            _ => Err(too_many(func, &format!("{n} asked"), "allocates")),
        }
    }

    /// A size in bytes.
    pub fn size(&self, arg: &str) -> Result<u64, String> {
        self.number(arg)
    }

    /// An order, 0 ..= 10 is valid; larger orders reach the kernel, which refuses them.
    pub fn order(&self, arg: &str) -> Result<u32, String> {
        let n = self.number(arg)?;
        u32::try_from(n).map_err(|_| format!("order {n} is out of range"))
    }

    /// GFP flags: `GFP_KERNEL|__GFP_ZERO`, or a number.
    pub fn gfp(&self, arg: &str) -> Result<Gfp, String> {
        Gfp::parse(arg).ok_or_else(|| {
            format!(
                "'{arg}' is not a set of GFP flags (e.g. GFP_KERNEL, GFP_ATOMIC|__GFP_ZERO, 0xcc0)"
            )
        })
    }

    /// Run one line; `None` for blank and comment lines.
    pub fn exec_line(&mut self, line_no: usize, raw: &str) -> Option<Outcome> {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            return None;
        }
        self.line = line_no as u32;
        let (expect_fail, line) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        // `name = command` or `$name = command`: the name is kept without its `$`.
        let (name, command) = match line.split_once('=') {
            Some((n, rest)) if is_name(n.trim().strip_prefix('$').unwrap_or(n.trim())) => {
                let n = n.trim();
                (
                    Some(n.strip_prefix('$').unwrap_or(n).to_string()),
                    rest.trim(),
                )
            }
            _ => (None, line),
        };
        let words: Vec<&str> = command.split_whitespace().collect();
        let result = match words.first().and_then(|w| commands::find(w)) {
            Some(cmd) if cmd.mutates && self.machine.halted() => Err(self.halted_refusal()),
            Some(cmd) => cmd.call(self, &words[1..]),
            None => Err(format!(
                "unknown command '{}' (try: help)",
                words.first().unwrap_or(&"")
            )),
        };
        // A failed allocation's error carries its summary; the page allocator keeps the
        // rest of the report (each zone's verdict), which the shell shows in its place.
        let result =
            result.map_err(|e| self.machine.mm().with_alloc_failure_detail(&e).to_string());
        // Asked before the console is taken: faults recorded without a console (a
        // `struct page` lookup past mem_map) are printed by this call.
        let oops = (self.machine.take_oopses() > 0).then(|| self.oops_notice());
        let mut kernel = std::mem::take(&mut self.last_words);
        kernel.extend(self.machine.take_console());
        if let (Some(name), Ok(value), None) = (&name, &result, &oops) {
            self.keep(name, value);
        }
        Some(Outcome {
            line: line_no,
            command: command.to_string(),
            name,
            expect_fail,
            kernel,
            result,
            oops,
            tainted: self.machine.tainted().0,
            halted: self.machine.halted(),
        })
    }

    /// Why a command that would change the machine is refused after a panic.
    pub(crate) fn halted_refusal(&self) -> String {
        format!(
            "the machine has panicked ({}); 'reboot' boots a fresh one with the same flags",
            self.panic_message()
        )
    }

    fn panic_message(&self) -> String {
        self.machine
            .panic_message()
            .unwrap_or_else(|| "Kernel panic - not syncing".to_string())
    }

    /// The shell's line under the kernel's report when a command oopsed or panicked.
    fn oops_notice(&self) -> String {
        if self.machine.halted() {
            format!(
                "kmemlab: the kernel panicked in this command; the machine is halted ({}); \
                 'reboot' boots a fresh one with the same flags",
                self.panic_message()
            )
        } else {
            format!(
                "kmemlab: the kernel oopsed in this command; the machine is tainted ({})",
                taint_letters(self.machine.tainted())
            )
        }
    }

    /// The interactive prompt: CPU and context, the taint once there is one, or that the
    /// machine has panicked.
    pub fn prompt(&self) -> String {
        if self.machine.halted() {
            return "kmemlab[panicked]> ".to_string();
        }
        let taint = taint_letters(self.machine.tainted());
        if taint.is_empty() {
            format!("kmemlab[cpu{} {}]> ", self.cpu, self.ctx)
        } else {
            format!("kmemlab[cpu{} {}, tainted {taint}]> ", self.cpu, self.ctx)
        }
    }
}

/// The letters of the taint flags that are set, in `print_tainted()`'s order (`D`, `DW`),
/// or nothing for an untainted kernel.
pub fn taint_letters(taint: Taint) -> String {
    // `print_tainted()` prints a letter or a blank per flag, and `G` for the first flag
    // when it is clear (no proprietary module): the set flags are the other letters.
    taint
        .to_string()
        .strip_prefix("Tainted: ")
        .map(|flags| flags.chars().filter(|c| !matches!(c, ' ' | 'G')).collect())
        .unwrap_or_default()
}

/// What the shell prints about a machine it has just booted: its flags and its memory as
/// `/proc/meminfo` counts it.
pub fn boot_summary(machine: &Machine) -> Value {
    let c = machine.config();
    let m = kmemlab_mm::procfs::meminfo_values(&machine.mm());
    let text = format!(
        "kmemlab: booted {} RAM, {} CPU(s), {}, seed {}: MemTotal {} kB, MemFree {} kB",
        format_size(c.ram),
        c.cpus,
        c.profile.name(),
        c.seed,
        m.total * 4,
        m.free * 4
    );
    let obj = json!({
        "ram": c.ram, "cpus": c.cpus, "profile": c.profile.name(), "seed": c.seed,
        "mem_total_kb": m.total * 4, "mem_free_kb": m.free * 4,
    });
    Value::Object(obj, text)
}

/// The result of one command line.
pub struct Outcome {
    /// The line number.
    pub line: usize,
    /// The command text (without name or `!`).
    pub command: String,
    /// The name the result was kept under.
    pub name: Option<String>,
    /// Marked with `!`.
    pub expect_fail: bool,
    /// Kernel messages it caused.
    pub kernel: Vec<String>,
    /// What it returned.
    pub result: Result<Value, String>,
    /// The shell's notice if the kernel oopsed or panicked while it ran: the command was
    /// killed, whatever it returned.
    pub oops: Option<String>,
    /// The taint mask after it (`/proc/sys/kernel/tainted`).
    pub tainted: u32,
    /// The machine had panicked by its end.
    pub halted: bool,
}

impl Outcome {
    /// Did the command fail: an error, or killed by an oops or a panic?
    pub fn failed(&self) -> bool {
        self.failure().is_some()
    }

    /// Did the command do what the script expected?
    pub fn met_expectation(&self) -> bool {
        self.failed() == self.expect_fail
    }

    /// Why it failed: its error, or the oops that killed it.
    fn failure(&self) -> Option<String> {
        match (&self.result, &self.oops) {
            (Err(e), _) => Some(e.clone()),
            (Ok(_), Some(_)) if self.halted => Some("the kernel panicked (see above)".into()),
            (Ok(_), Some(_)) => Some("the kernel oopsed (see above)".into()),
            (Ok(_), None) => None,
        }
    }

    /// Print for people.
    pub fn print_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        for line in &self.kernel {
            writeln!(out, "  {line}")?;
        }
        if let Some(notice) = &self.oops {
            writeln!(out, "{notice}")?;
        }
        match (self.failure(), &self.result) {
            (Some(why), _) if self.expect_fail => writeln!(out, "failed as expected: {why}"),
            (Some(why), _) => writeln!(out, "error: line {}: {}: {why}", self.line, self.command),
            (None, _) if self.expect_fail => writeln!(
                out,
                "error: line {}: {}: expected to fail, but it succeeded",
                self.line, self.command
            ),
            (None, Ok(v)) => {
                let prefix = self
                    .name
                    .as_ref()
                    .map(|n| format!("{n} = "))
                    .unwrap_or_default();
                match v {
                    Value::None => Ok(()),
                    Value::Number(n, what) | Value::Address(n, what) => {
                        writeln!(out, "{prefix}{n:#x}  ({what})")
                    }
                    Value::Text(t) | Value::Object(_, t) => writeln!(out, "{prefix}{t}"),
                    Value::Addresses(list, what) => {
                        writeln!(out, "{prefix}{what}")?;
                        for (i, a) in list.iter().enumerate() {
                            match &self.name {
                                Some(n) => writeln!(out, "  {n}{i} = {a:#x}")?,
                                None => writeln!(out, "  [{i}] {a:#x}")?,
                            }
                        }
                        Ok(())
                    }
                }
            }
            // `failure()` is `Some` for every error.
            (None, Err(_)) => Ok(()),
        }
    }

    /// One JSON object.
    pub fn json(&self) -> serde_json::Value {
        let (result, message) = match &self.result {
            // Killed by an oops: what the function returned never reached its caller.
            Ok(_) if self.oops.is_some() => {
                (serde_json::Value::Null, self.failure().unwrap_or_default())
            }
            Ok(Value::None) => (serde_json::Value::Null, String::new()),
            Ok(Value::Number(n, what)) => (json!(n), what.clone()),
            Ok(Value::Address(a, what)) => (crate::output::addr(*a), what.clone()),
            Ok(Value::Text(t)) => (serde_json::Value::Null, t.clone()),
            Ok(Value::Object(o, t)) => (o.clone(), t.clone()),
            Ok(Value::Addresses(list, what)) => (
                list.iter().map(|a| crate::output::addr(*a)).collect(),
                what.clone(),
            ),
            Err(e) => (serde_json::Value::Null, e.clone()),
        };
        json!({
            "line": self.line,
            "command": self.command,
            "ok": self.met_expectation(),
            "failed": self.failed(),
            "oops": self.oops.is_some(),
            "oops_notice": self.oops,
            "tainted": self.tainted,
            "halted": self.halted,
            "expected_failure": self.expect_fail,
            "name": self.name,
            "result": result,
            "message": message,
            "kernel": self.kernel,
        })
    }
}

/// The error of the bulk command `func` given more than [`MAX_BULK`] of something.
fn too_many(func: &str, what: &str, verb: &str) -> String {
    format!("{func}: {what}: the shell {verb} at most {MAX_BULK} per call (split it)")
}

fn strip_comment(line: &str) -> &str {
    line.split_once('#').map_or(line, |(code, _)| code)
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.chars().next().is_some_and(|c| c.is_ascii_digit())
}

/// The longest script line: a longer one stops the script with an error naming its line
/// (read in bounded steps, so that `kmemlab shell /dev/zero` fails at once instead of
/// filling the host's memory).
pub const MAX_SCRIPT_LINE: usize = 64 << 10;

/// A script's lines, each read with a bound of [`MAX_SCRIPT_LINE`] bytes and checked to be
/// UTF-8 text.
pub struct ScriptLines<R> {
    input: R,
    buf: Vec<u8>,
    line: usize,
}

impl<R: BufRead> ScriptLines<R> {
    /// Lines from `input`.
    pub fn new(input: R) -> ScriptLines<R> {
        ScriptLines {
            input,
            buf: Vec::new(),
            line: 0,
        }
    }

    /// The next line (without its line ending) and its 1-based number; `None` at the end;
    /// `Err` for a line that cannot be read, is too long, or is not UTF-8 (`line N: why`).
    pub fn next_line(&mut self) -> Result<Option<(usize, &str)>, String> {
        self.buf.clear();
        let n = Read::take(&mut self.input, MAX_SCRIPT_LINE as u64 + 2)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| format!("line {}: {}", self.line + 1, io_reason(&e)))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        if self.buf.len() > MAX_SCRIPT_LINE {
            return Err(format!(
                "line {}: the line is longer than {} KiB (the limit for a script line)",
                self.line,
                MAX_SCRIPT_LINE >> 10
            ));
        }
        match std::str::from_utf8(&self.buf) {
            Ok(text) => Ok(Some((self.line, text))),
            Err(e) => Err(format!(
                "line {}: the line is not UTF-8 text (byte {:#04x} at column {})",
                self.line,
                self.buf[e.valid_up_to()],
                e.valid_up_to() + 1
            )),
        }
    }
}

/// `kmemlab shell`: returns whether every command met its expectation.
pub fn run(args: &MachineArgs, script: Option<&Path>, json: bool) -> Result<bool, String> {
    let mut shell = Shell::new(args.boot()?);
    shell.host_files = true;
    let stdin = std::io::stdin();
    // At a terminal (and not asked for JSON): the line editor. Scripts and pipes are
    // read line by line with the bounds of `ScriptLines`, without a prompt.
    if script.is_none() && stdin.is_terminal() && !json {
        return crate::line_editor::run(&mut shell);
    }
    match script {
        Some(path) => run_script(&mut shell, path, json),
        None => run_lines(&mut shell, stdin.lock(), json),
    }
}

/// Run the script at `path` on `shell`, printing each command's outcome; returns whether
/// every command met its expectation.
pub(crate) fn run_script(shell: &mut Shell, path: &Path, json: bool) -> Result<bool, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("{}: {}", path.display(), io_reason(&e)))?;
    // The script's name is the call site of what it allocates; one small string,
    // leaked once per run, lives as long as the machine that records it.
    shell.source = Box::leak(path.display().to_string().into_boxed_str());
    run_lines(shell, std::io::BufReader::new(file), json)
}

/// Run every line of `input` on `shell`, printing each command's outcome.
fn run_lines(shell: &mut Shell, input: impl BufRead, json: bool) -> Result<bool, String> {
    let source = shell.source;
    let mut lines = ScriptLines::new(input);
    let mut out = std::io::stdout().lock();
    let mut all_ok = true;
    while let Some((n, line)) = lines.next_line().map_err(|e| format!("{source}: {e}"))? {
        if let Some(outcome) = shell.exec_line(n, line) {
            all_ok &= outcome.met_expectation();
            if json {
                writeln!(out, "{}", outcome.json()).map_err(write_error)?;
            } else {
                outcome.print_text(&mut out).map_err(write_error)?;
            }
        }
    }
    out.flush().map_err(write_error)?;
    Ok(all_ok)
}
