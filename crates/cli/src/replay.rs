//! `kmemlab replay TRACE`: replay a kernel `kmem` trace (ftrace or `trace-cmd report`
//! text) on the simulated machine and report as `perf kmem stat` does, with kmemlab's own
//! figures; `--compare "OPTS"` replays it again on a machine changed by OPTS and prints
//! the two summaries side by side.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser};
use indicatif::{ProgressBar, ProgressStyle};
use kmemlab_trace::kallsyms::Kallsyms;
use kmemlab_trace::stats::{
    parse_page_sort, parse_slab_sort, sort_by_keys, sort_pages_by_keys, PageSortKey, SlabSortKey,
    DEFAULT_PAGE_SORT, DEFAULT_SLAB_SORT,
};
use kmemlab_trace::tables::TableOptions;
use kmemlab_trace::{plot, replay, side_by_side, ReplayOptions, Report, TextOptions, TraceReader};

use crate::MachineArgs;

/// The `replay` subcommand's arguments.
#[derive(Args)]
pub struct ReplayArgs {
    /// The trace: text of /sys/kernel/tracing/trace or of `trace-cmd report` ('-' for
    /// standard input).
    trace: PathBuf,
    /// Skip and count malformed lines instead of stopping at the first.
    #[arg(long)]
    lenient: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Write a plot of slab memory, free memory and the largest free block over time.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Replay a second time on a machine changed by these machine flags (for example
    /// "--cpus 8 --ram 256M") and print both summaries side by side.
    #[arg(long, value_name = "OPTS", allow_hyphen_values = true)]
    compare: Option<String>,
    /// Count mm_page_alloc / mm_page_free but do not replay them (a trace with slab and
    /// page events counts the traced kernel's slab pages twice otherwise).
    #[arg(long)]
    no_page_replay: bool,
    /// Rows of the call-site and cache tables (perf kmem's -l/--line).
    #[arg(long, short = 'l', visible_alias = "line", default_value_t = 20)]
    top: usize,
    /// Sort the tables by perf kmem's keys, greatest first: slab keys (ptr, callsite,
    /// bytes, hit, pingpong, frag; for example "frag,hit,bytes"), or with --page the
    /// page tables' keys (page, callsite, hit, bytes, order, migtype, gfp). Default:
    /// perf's (frag,hit,bytes / bytes,hit) with --caller or --alloc, else most bytes
    /// wasted first.
    #[arg(short = 's', long = "sort", value_name = "KEYS")]
    sort: Option<String>,
    /// perf kmem's per-call-site table, with each call site's commonest callchains when
    /// the trace has them (perf script -g); with --page, the page table per call site.
    #[arg(long)]
    caller: bool,
    /// perf kmem's per-pointer table ("Alloc Ptr"); with --page, the per-page table.
    #[arg(long)]
    alloc: bool,
    /// perf kmem --page: the page allocator's tables (with --caller and/or --alloc).
    #[arg(long)]
    page: bool,
    /// perf kmem --page --live: the page tables and order counts hold the pages still
    /// allocated at the end of the trace.
    #[arg(long, requires = "page")]
    live: bool,
    /// Replay kmallocs of more than SIZE bytes as kvmalloc (kmalloc without retrying
    /// hard, then vmalloc if that fails and the flags allow sleeping).
    #[arg(long, value_name = "SIZE", value_parser = parse_kvmalloc_above)]
    kvmalloc_above: Option<u64>,
    /// Name raw call-site addresses as function+0xoff from this /proc/kallsyms or
    /// System.map.
    #[arg(long, value_name = "FILE")]
    kallsyms: Option<PathBuf>,
}

/// Machine flags and the replay's own "what if" flags, for `--compare`.
#[derive(Parser)]
#[command(name = "--compare", no_binary_name = true)]
struct CompareFlags {
    #[command(flatten)]
    machine: MachineArgs,
    /// As `--kvmalloc-above`, for the second replay.
    #[arg(long, value_name = "SIZE", value_parser = parse_kvmalloc_above)]
    kvmalloc_above: Option<u64>,
}

/// `-s` parsed: the slab tables' keys, the page tables' keys.
type Sorts = (Option<Vec<SlabSortKey>>, Option<Vec<PageSortKey>>);

/// `-s KEY,...`: slab keys, or page keys with `--page` (perf's `parse_sort_opt`).
fn sort_keys(args: &ReplayArgs) -> Result<Sorts, String> {
    let Some(text) = &args.sort else {
        return Ok((None, None));
    };
    if args.page {
        Ok((None, Some(parse_page_sort(text)?)))
    } else {
        Ok((Some(parse_slab_sort(text)?), None))
    }
}

fn parse_kvmalloc_above(s: &str) -> Result<u64, String> {
    kmemlab_sim::parse_size(s)
        .ok_or_else(|| format!("'{s}' is not a size (examples: 4096, 16K, 1M)"))
}

/// Run the subcommand; `Ok(false)` if an allocator invariant was broken at the end.
pub fn run(machine: &MachineArgs, args: &ReplayArgs) -> Result<bool, String> {
    sort_keys(args)?;
    let options = ReplayOptions {
        tables: TableOptions {
            by_pointer: args.alloc,
            pages: args.page,
            live_pages: args.live,
        },
        replay_pages: !args.no_page_replay,
        kvmalloc_above: args.kvmalloc_above,
        kallsyms: args.kallsyms.as_deref().map(read_kallsyms).transpose()?,
        ..ReplayOptions::default()
    };
    let first = replay_once(machine, args, &options)?;
    if let Some(svg) = &args.svg {
        let title = format!(
            "kmemlab replay of {} on {}",
            args.trace.display(),
            first.machine_line()
        );
        let doc = plot::svg(&first, &title)?;
        std::fs::write(svg, doc).map_err(|e| {
            format!(
                "cannot write {}: {}",
                svg.display(),
                crate::output::io_reason(&e)
            )
        })?;
    }
    let Some(opts) = &args.compare else {
        print_report(&first, args)?;
        return Ok(first.check == "ok");
    };
    if args.trace == Path::new("-") {
        return Err("--compare reads the trace twice: give a file, not standard input".into());
    }
    let (second_machine, kvmalloc_above) = compare_machine(machine, opts)?;
    let second_options = ReplayOptions {
        kvmalloc_above: kvmalloc_above.or(options.kvmalloc_above),
        ..options.clone()
    };
    let second = replay_once(&second_machine, args, &second_options)?;
    if args.json {
        let both = serde_json::json!({ "a": first, "b": second });
        let text = serde_json::to_string_pretty(&both).map_err(|e| e.to_string())?;
        crate::output::print(&(text + "\n"))?;
    } else {
        crate::output::print(&side_by_side(&first, &second))?;
    }
    Ok(first.check == "ok" && second.check == "ok")
}

/// `--kallsyms FILE`, read and sorted; a malformed file is an error naming its line.
fn read_kallsyms(path: &Path) -> Result<std::sync::Arc<Kallsyms>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read {}: {}",
            path.display(),
            crate::output::io_reason(&e)
        )
    })?;
    Kallsyms::parse(&text)
        .map(std::sync::Arc::new)
        .map_err(|e| format!("--kallsyms {}: {e}", path.display()))
}

fn print_report(report: &Report, args: &ReplayArgs) -> Result<(), String> {
    let (slab_sort, page_sort) = sort_keys(args)?;
    let sorted;
    let report = if slab_sort.is_some() || page_sort.is_some() || args.json {
        let mut r = report.clone();
        sort_tables(&mut r, args, slab_sort.as_deref(), page_sort.as_deref());
        sorted = r;
        &sorted
    } else {
        report
    };
    let text = if args.json {
        serde_json::to_string_pretty(report).map_err(|e| e.to_string())? + "\n"
    } else {
        report.to_text_with(&TextOptions {
            caller: args.caller,
            alloc: args.alloc,
            page: args.page,
            lines: args.top,
            slab_sort,
            page_sort,
        })
    };
    crate::output::print(&text)
}

/// The report's tables in the order the text prints them (for `--json` too).
fn sort_tables(
    r: &mut Report,
    args: &ReplayArgs,
    slab: Option<&[SlabSortKey]>,
    page: Option<&[PageSortKey]>,
) {
    let perf_order = args.caller || args.alloc;
    if let Some(keys) = slab.or(perf_order.then_some(&DEFAULT_SLAB_SORT[..])) {
        sort_by_keys(&mut r.callsites, keys);
        sort_by_keys(&mut r.caches, keys);
    }
    sort_by_keys(&mut r.tables.pointers, slab.unwrap_or(&DEFAULT_SLAB_SORT));
    let page = page.unwrap_or(&DEFAULT_PAGE_SORT);
    sort_pages_by_keys(&mut r.tables.page_callers, page);
    sort_pages_by_keys(&mut r.tables.page_allocs, page);
}

/// Boot the machine and replay the whole trace on it.
fn replay_once(
    machine: &MachineArgs,
    args: &ReplayArgs,
    options: &ReplayOptions,
) -> Result<Report, String> {
    let booted = machine.boot()?;
    let (input, length) = open(&args.trace)?;
    let bar = progress_bar(length);
    let mut reader = TraceReader::new(input, args.lenient);
    let result = replay(&booted, &mut reader, options, &mut |stats| {
        if let Some(bar) = &bar {
            bar.set_position(stats.bytes);
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result.map_err(|e| format!("{}: {e}", args.trace.display()))
}

/// The trace as a buffered reader, and its length when it is a file.
fn open(path: &Path) -> Result<(Box<dyn BufRead + Send>, Option<u64>), String> {
    if path == Path::new("-") {
        return Ok((
            Box::new(BufReader::with_capacity(1 << 16, std::io::stdin())),
            None,
        ));
    }
    let file = File::open(path).map_err(|e| {
        format!(
            "cannot open {}: {}",
            path.display(),
            crate::output::io_reason(&e)
        )
    })?;
    let length = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(BufReader::with_capacity(1 << 16, file)), length))
}

/// A progress bar on a terminal only (never in tests or pipes).
fn progress_bar(length: Option<u64>) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match length {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let style = ProgressStyle::with_template("replaying {wide_bar} {bytes}/{total_bytes} {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}

/// The first machine's flags with those given in `opts` changed, and the second
/// replay's `--kvmalloc-above` if `opts` gives one.
fn compare_machine(base: &MachineArgs, opts: &str) -> Result<(MachineArgs, Option<u64>), String> {
    let tokens: Vec<&str> = opts.split_whitespace().collect();
    let matches = CompareFlags::command()
        .try_get_matches_from(&tokens)
        .map_err(|e| format!("--compare \"{opts}\": {e}"))?;
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let flags = CompareFlags::from_arg_matches(&matches)
        .map_err(|e| format!("--compare \"{opts}\": {e}"))?;
    let parsed = flags.machine;
    let mut m = base.clone();
    m.overlay(parsed, given);
    Ok((m, flags.kvmalloc_above))
}
