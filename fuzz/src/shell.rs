//! Fuzz target `shell`: arbitrary text as a `kmemlab shell` script.
//!
//! One small machine is booted per input (64 MiB, 2 CPUs, unless a first line
//! `#!kmemlab <flags>` asks for other machine flags, within [`MAX_RAM`] and [`MAX_CPUS`]),
//! every line runs through [`kmemlab_cli::shell::Shell::exec_line`], and at the end every
//! `/proc` file is rendered and the invariant checker runs. Whatever the script does
//! (double frees, pokes, DMA into kernel structures), none of this may panic or hang.

use kmemlab_cli::shell::Shell;
use kmemlab_cli::MachineArgs;
use kmemlab_sim::parse_size;

/// Lines run per input; the rest is ignored.
pub const MAX_LINES: usize = 64;
/// Bytes read per input; the rest is ignored.
pub const MAX_BYTES: usize = 8 << 10;
/// The largest machine a `#!kmemlab` line may ask for.
pub const MAX_RAM: u64 = 256 << 20;
/// The most CPUs a `#!kmemlab` line may ask for.
pub const MAX_CPUS: usize = 4;
/// The machine when the script does not say.
pub const DEFAULT_FLAGS: &[&str] = &["--ram", "64M", "--cpus", "2"];

/// The target.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(&data[..data.len().min(MAX_BYTES)]);
    run_script(&text);
}

/// Run a script on the machine its first line asks for (or the default one); `false` if
/// those machine flags were refused (nothing runs then).
pub fn run_script(text: &str) -> bool {
    let Some(mut shell) = boot(text) else {
        return false;
    };
    for (i, line) in text.lines().take(MAX_LINES).enumerate() {
        let _ = shell.exec_line(i + 1, line);
    }
    inspect(&mut shell);
    true
}

/// The machine flags of a `#!kmemlab --ram 32M --profile i386` first line, else the
/// defaults; `None` for flags that do not parse, that boot nothing, or ask for more than
/// the bounds.
pub fn boot(text: &str) -> Option<Shell> {
    let flags: Vec<&str> = match text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!kmemlab"))
    {
        Some(rest) => rest.split_whitespace().collect(),
        None => DEFAULT_FLAGS.to_vec(),
    };
    if !within_bounds(&flags) {
        return None;
    }
    let args = MachineArgs::parse_from(flags.iter().copied()).ok()?;
    args.boot().ok().map(Shell::new)
}

/// A machine flag line stays small: `--ram` at most [`MAX_RAM`] (and given, so that the
/// 1 GiB default does not apply), `--cpus` at most [`MAX_CPUS`], no PCI hole (which moves
/// RAM above 4 GiB).
fn within_bounds(flags: &[&str]) -> bool {
    let value = |name: &str| {
        let eq = format!("{name}=");
        flags.iter().enumerate().find_map(|(i, f)| {
            if *f == name {
                Some(flags.get(i + 1).copied().unwrap_or(""))
            } else {
                f.strip_prefix(eq.as_str())
            }
        })
    };
    let ram_ok = value("--ram")
        .and_then(parse_size)
        .is_some_and(|r| r <= MAX_RAM);
    let cpus_ok = value("--cpus")
        .map(|c| c.parse::<usize>().is_ok_and(|n| n <= MAX_CPUS))
        .unwrap_or(true);
    let mentions = |name: &str| flags.iter().filter(|f| f.starts_with(name)).count();
    ram_ok && cpus_ok && mentions("--pci") == 0 && mentions("--ram") == 1 && mentions("--cpus") <= 1
}

/// After the script: every `/proc` file, `slab` of every named cache, the invariant
/// checker, `tlb`, `vmstat` — the readers must cope with whatever state was left.
pub fn inspect(shell: &mut Shell) {
    let files = kmemlab_mm::procfs::FILES
        .iter()
        .map(|f| format!("cat /proc/{f}"));
    let fixed = [
        "check",
        "tlb",
        "vmstat",
        "purge",
        "drain_all_pages",
        "check",
    ];
    let lines: Vec<String> = files.chain(fixed.iter().map(|s| s.to_string())).collect();
    for line in lines {
        let _ = shell.exec_line(MAX_LINES + 1, &line);
    }
}
