//! The shell's commands, one module per subsystem, each exporting its own table: an entry
//! names a kernel function, declares its arguments in the kernel's order (the usage line,
//! which is also the shape the dispatcher checks), and points at a small handler.
//!
//! Every front end (the script shell, the interactive shell, `serve`) runs a command through
//! [`Command::call`], which checks the number of words against the usage line before the
//! handler sees them, so a handler may index the arguments its usage requires.

mod cpu;
pub(crate) mod dma;
mod kmem;
mod memory;
mod page_alloc;
mod proc;
mod slab;
mod slabinfo;
pub(crate) mod vmalloc;
mod workload;

use crate::shell::{Shell, Value};

/// A handler: the shell and the arguments after the command name.
pub type Handler = fn(&mut Shell, &[&str]) -> Result<Value, String>;

/// One shell command.
pub struct Command {
    /// The name, as the kernel function.
    pub name: &'static str,
    /// Arguments, in the kernel's order: `<x>` one required word, `[x]` an optional one
    /// (or group of words: `[-N lines]`), `x...` any number more, and ` | ` between forms
    /// that take different words. [`Command::call`] checks the count against it.
    pub usage: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Does it change the machine (allocate, free, write, map, set CPU state)? Such
    /// commands are refused once the machine has panicked; the others only read, and
    /// still work for a post-mortem.
    pub mutates: bool,
    /// What it does, given arguments whose count its usage line admits.
    run: Handler,
}

impl Command {
    /// Run the command: refuse a number of words that no form of the usage line admits
    /// (with the usage line), else hand them to the handler.
    pub fn call(&self, sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
        if !self.admits(args.len()) {
            return Err(format!("usage: {} {}", self.name, self.usage)
                .trim_end()
                .to_string());
        }
        (self.run)(sh, args)
    }

    /// Does some form of the usage line take `n` words?
    pub fn admits(&self, n: usize) -> bool {
        self.usage
            .split(" | ")
            .map(Arity::of_form)
            .any(|a| a.admits(n))
    }
}

/// How many words one form of a usage line takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Arity {
    min: usize,
    /// `None`: no limit (the form ends in a repeated word).
    max: Option<usize>,
}

impl Arity {
    /// The count of one form: each bare word is one required word, each `[...]` group
    /// as many optional words as it holds, and a word with `...` makes the count open.
    fn of_form(form: &str) -> Arity {
        let mut arity = Arity {
            min: 0,
            max: Some(0),
        };
        for word in top_level_words(form) {
            let (min, max) = match word.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
                Some(group) => (0, top_level_words(group).len()),
                None => (1, 1),
            };
            arity.min += min;
            arity.max = arity.max.filter(|_| !word.contains("...")).map(|m| m + max);
        }
        arity
    }

    fn admits(self, n: usize) -> bool {
        n >= self.min && self.max.is_none_or(|max| n <= max)
    }
}

/// The words of a usage form outside brackets: `<a> [-N lines] [b[=c]]` is three words.
fn top_level_words(form: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let (mut depth, mut start) = (0usize, None);
    for (i, c) in form.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            c if c.is_whitespace() && depth == 0 => {
                if let Some(s) = start.take() {
                    words.push(&form[s..i]);
                }
                continue;
            }
            _ => {}
        }
        start.get_or_insert(i);
    }
    words.extend(start.map(|s| &form[s..]));
    words
}

/// The commands of the shell itself.
const COMMANDS: &[Command] = &[
    Command {
        name: "help",
        usage: "[command]",
        help: "list commands, or describe one",
        mutates: false,
        run: help,
    },
    Command {
        name: "reboot",
        usage: "",
        help: "boot a fresh machine with the same flags (after a panic); forgets every name",
        // It replaces the machine rather than changing it, so a panicked one can reboot.
        mutates: false,
        run: reboot,
    },
];

/// Every table, in the order `help` lists them.
const TABLES: &[&[Command]] = &[
    COMMANDS,
    page_alloc::COMMANDS,
    slab::COMMANDS,
    memory::COMMANDS,
    vmalloc::COMMANDS,
    dma::COMMANDS,
    cpu::COMMANDS,
    workload::COMMANDS,
    proc::COMMANDS,
    slabinfo::COMMANDS,
    kmem::COMMANDS,
];

/// Every command.
pub fn all() -> impl Iterator<Item = &'static Command> {
    TABLES.iter().flat_map(|table| table.iter())
}

/// Find a command by name.
pub fn find(name: &str) -> Option<&'static Command> {
    all().find(|c| c.name == name)
}

/// How a bulk call's array was filled, for people: its elements in runs, an element
/// joining the run before it when `joins(last, next)`; each run described by
/// `run(first, last, count)`, at most eight and then how many more.
pub(crate) fn runs_text<K: Copy>(
    keys: impl IntoIterator<Item = K>,
    joins: impl Fn(K, K) -> bool,
    run: impl Fn(K, K, usize) -> String,
) -> String {
    const SHOWN: usize = 8;
    let mut runs: Vec<(K, K, usize)> = Vec::new();
    for k in keys {
        match runs.last_mut() {
            Some((_, last, n)) if joins(*last, k) => {
                *last = k;
                *n += 1;
            }
            _ => runs.push((k, k, 1)),
        }
    }
    let mut parts: Vec<String> = runs
        .iter()
        .take(SHOWN)
        .map(|&(first, last, n)| run(first, last, n))
        .collect();
    if runs.len() > SHOWN {
        parts.push(format!("and {} more", runs.len() - SHOWN));
    }
    parts.join(", ")
}

fn help(_: &mut Shell, args: &[&str]) -> Result<Value, String> {
    if let Some(name) = args.first() {
        let c = find(name).ok_or_else(|| format!("no command '{name}'"))?;
        let after_panic = if c.mutates {
            "refused once the machine has panicked"
        } else {
            "works on a panicked machine too"
        };
        return Ok(Value::Text(format!(
            "{} {}\n    {}\n    ({after_panic})",
            c.name, c.usage, c.help
        )));
    }
    let mut text = String::from(
        "commands (arguments in the kernel's order; sizes take K/M/G; flags combine with |):\n",
    );
    for c in all() {
        text.push_str(&format!("  {:<18} {:<26} {}\n", c.name, c.usage, c.help));
    }
    text.push_str("  name = <command>    keep the result under a name (then use it as name or $name; a bulk call's list as $name, its addresses as $name0, $name1, ...)\n  ! <command>         the command is expected to fail\n");
    text.push_str("a command in which the kernel oopses fails; after a panic only commands that read work (help <command> says), until reboot\n");
    Ok(Value::Text(text.trim_end().to_string()))
}

fn reboot(sh: &mut Shell, _: &[&str]) -> Result<Value, String> {
    sh.reboot()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arity(form: &str) -> (usize, Option<usize>) {
        let a = Arity::of_form(form);
        (a.min, a.max)
    }

    #[test]
    fn usage_lines_give_the_counts_they_say() {
        assert_eq!(arity(""), (0, Some(0)));
        assert_eq!(arity("<gfp> <order>"), (2, Some(2)));
        assert_eq!(arity("<name> <size> [align] [flags] [NULL]"), (2, Some(5)));
        assert_eq!(arity("[-aADe...] [-N lines] [slab-regexp]"), (0, None));
        assert_eq!(arity("[-N lines] [slab-regexp]"), (0, Some(3)));
        assert_eq!(arity("[-w] [vm.KEY[=VALUE...]]"), (0, None));
        assert_eq!(
            arity("<dev> to|from <dma-addr|sg> <len> [byte]"),
            (4, Some(5))
        );
        assert_eq!(arity("-s [CACHE|ADDR]"), (1, Some(2)));
    }

    #[test]
    fn forms_are_alternatives() {
        let pagecache = find("pagecache").expect("a command");
        assert!(pagecache.admits(1) && pagecache.admits(2) && !pagecache.admits(0));
        let kmem = find("kmem").expect("a command");
        assert!(!kmem.admits(0) && kmem.admits(1) && kmem.admits(2) && !kmem.admits(3));
    }

    #[test]
    fn every_command_has_one_entry_and_a_usage_that_admits_something() {
        let mut names: Vec<&str> = all().map(|c| c.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a command is in two tables");
        for c in all() {
            assert!((0..8).any(|n| c.admits(n)), "{} admits no count", c.name);
        }
    }
}
