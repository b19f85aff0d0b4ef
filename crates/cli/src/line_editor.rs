//! The interactive shell: line editing, persistent history and tab completion with
//! rustyline, when `kmemlab shell` reads a terminal (scripts and pipes keep the plain
//! reader of [`crate::shell::ScriptLines`]).
//!
//! Completion asks the shell for what it knows at each prompt: command names, the names
//! results were kept under (`$name` or bare), cache names, GFP flags (also after a `|`)
//! and `/proc` files. History lives in `$XDG_STATE_HOME/kmemlab/history`, else
//! `~/.kmemlab_history`; a history that cannot be read or written is not an error.

use std::io::Write;
use std::path::PathBuf;

use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Editor, Helper};

use crate::commands;
use crate::output::write_error;
use crate::shell::{boot_summary, Shell, Value, MAX_SCRIPT_LINE};

/// What completion can offer, asked of the shell before each prompt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompletionNames {
    /// Names results were kept under.
    pub vars: Vec<String>,
    /// The machine's slab caches.
    pub caches: Vec<String>,
}

impl CompletionNames {
    /// The names the shell knows now.
    pub fn of(shell: &Shell) -> CompletionNames {
        let mut caches = Vec::new();
        shell.machine.mm().for_each_cache(|s| {
            caches.push(s.name().as_str().to_string());
            None::<()>
        });
        caches.sort();
        CompletionNames {
            vars: shell.var_names().map(str::to_string).collect(),
            caches,
        }
    }
}

/// The `/proc` files `cat` serves.
fn proc_files() -> impl Iterator<Item = String> {
    kmemlab_mm::procfs::FILES
        .iter()
        .map(|f| format!("/proc/{f}"))
        .chain(std::iter::once("/proc/sys/kernel/tainted".to_string()))
}

/// Where the word under the cursor starts: after the last blank, `|` or `=` before `pos`.
fn word_start(line: &str, pos: usize) -> usize {
    line[..pos]
        .rfind(|c: char| c.is_whitespace() || c == '|' || c == '=')
        .map_or(0, |i| i + 1)
}

/// Is the word starting at `start` the command (the first word, after any `!` and
/// `name =`)?
fn is_command_position(line: &str, start: usize) -> bool {
    let before = line[..start].trim();
    let before = before.strip_prefix('!').unwrap_or(before).trim();
    match before.strip_suffix('=') {
        Some(name) => !name.trim().is_empty() && !name.trim().contains(char::is_whitespace),
        None => before.is_empty(),
    }
}

/// Completions of the word before `pos` in `line`: where the word starts, and the
/// candidates that extend it, sorted.
pub fn complete(line: &str, pos: usize, names: &CompletionNames) -> (usize, Vec<String>) {
    let pos = pos.min(line.len());
    if !line.is_char_boundary(pos) {
        return (pos, Vec::new());
    }
    let start = word_start(line, pos);
    let word = &line[start..pos];
    let after_bar = line[..start].ends_with('|');
    let mut out: Vec<String> = if is_command_position(line, start) {
        commands::all().map(|c| c.name.to_string()).collect()
    } else if let Some(var) = word.strip_prefix('$') {
        names
            .vars
            .iter()
            .filter(|v| v.starts_with(var))
            .map(|v| format!("${v}"))
            .collect()
    } else if after_bar {
        gfp_names().collect()
    } else if word.starts_with('/') {
        proc_files().collect()
    } else {
        gfp_names()
            .chain(names.caches.iter().cloned())
            .chain(names.vars.iter().cloned())
            .collect()
    };
    out.retain(|c| c.starts_with(word));
    out.sort();
    out.dedup();
    (start, out)
}

fn gfp_names() -> impl Iterator<Item = String> {
    kmemlab_mm::gfp::GFP_NAMES
        .iter()
        .map(|(_, name)| name.to_string())
}

/// rustyline's helper: completion from the names of the last prompt.
#[derive(Default)]
struct ShellHelper {
    names: CompletionNames,
}

impl Completer for ShellHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        Ok(complete(line, pos, &self.names))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

/// The history file: `$XDG_STATE_HOME/kmemlab/history`, else `~/.kmemlab_history`.
pub fn history_path() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(state) = nonempty("XDG_STATE_HOME") {
        return Some(PathBuf::from(state).join("kmemlab").join("history"));
    }
    nonempty("HOME").map(|home| PathBuf::from(home).join(".kmemlab_history"))
}

/// Save the history; failing to is not an error (a read-only home, a full disk).
fn save_history(editor: &mut Editor<ShellHelper, DefaultHistory>, path: Option<&PathBuf>) {
    if let Some(path) = path {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(path);
    }
}

/// Run the shell at a terminal until end of input (Ctrl-D); Ctrl-C abandons the line.
/// Returns whether every command met its expectation.
pub fn run(shell: &mut Shell) -> Result<bool, String> {
    let config = Config::builder()
        .auto_add_history(false)
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<ShellHelper, DefaultHistory> =
        Editor::with_config(config).map_err(|e| format!("line editor: {e}"))?;
    editor.set_helper(Some(ShellHelper::default()));
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    let mut out = std::io::stdout();
    if let Value::Object(_, text) = boot_summary(&shell.machine) {
        writeln!(out, "{text}").map_err(write_error)?;
    }
    let (mut all_ok, mut n) = (true, 0usize);
    loop {
        if let Some(h) = editor.helper_mut() {
            h.names = CompletionNames::of(shell);
        }
        let line = match editor.readline(&shell.prompt()) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                save_history(&mut editor, history.as_ref());
                return Err(format!("reading the terminal: {e}"));
            }
        };
        n += 1;
        if line.len() > MAX_SCRIPT_LINE {
            writeln!(
                out,
                "error: line {n}: the line is longer than {} KiB",
                MAX_SCRIPT_LINE >> 10
            )
            .map_err(write_error)?;
            all_ok = false;
            continue;
        }
        if !line.trim().is_empty() {
            let _ = editor.add_history_entry(line.as_str());
        }
        if let Some(outcome) = shell.exec_line(n, &line) {
            all_ok &= outcome.met_expectation();
            outcome.print_text(&mut out).map_err(write_error)?;
        }
        out.flush().map_err(write_error)?;
    }
    save_history(&mut editor, history.as_ref());
    Ok(all_ok)
}
