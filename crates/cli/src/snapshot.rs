//! `snapshot DIR`: the machine's `/proc` and `/sys/kernel/slab` files written to the host
//! as a directory laid out like the real ones, so that unmodified tools (procps's
//! `slabtop`, `vmstat`, `free`; the kernel's `tools/mm/slabinfo`) read them when they are
//! bind-mounted over `/proc/...` and `/sys/kernel/slab` in a private mount namespace.
//!
//! ```text
//! DIR/proc/{buddyinfo,pagetypeinfo,zoneinfo,meminfo,slabinfo,vmallocinfo,vmstat}
//! DIR/proc/sys/vm/<tunable>            DIR/proc/sys/kernel/tainted
//! DIR/sys/kernel/mm/transparent_hugepage/enabled
//! DIR/sys/kernel/slab/<dir>/<attribute>   DIR/sys/kernel/slab/<name> -> <dir>
//! ```
//!
//! Each file holds the bytes `cat` prints in the shell (the same renderers, with the final
//! newline the kernel writes). The slab tree follows Linux 6.6 `mm/slub.c`:
//! `sysfs_slab_add()` names a mergeable cache's directory by `create_unique_id()`
//! (`:0000064`) and links the cache's name to it with `sysfs_slab_alias()`; an
//! unmergeable cache's directory has its own name; every name merged into a cache
//! (`__kmem_cache_alias()`) is one more link. Links are relative, as kernfs makes them
//! (`kernfs_get_target_path()`: the link and its target share the directory, so the
//! target is the bare directory name). Names go through `kobject_set_name_vargs()`'s rule
//! (`/` becomes `!`; a C string ends at NUL); a name already taken is skipped and reported
//! with `sysfs_warn_dup()`'s words, except that a later alias replaces an earlier link of
//! the same name, as `sysfs_slab_alias()` removes a leftover link first.
//!
//! The snapshot only reads the machine. It writes to the host, so the shell allows it
//! only where the user runs kmemlab on their own files ([`Shell::host_files`]): `kmemlab
//! shell` and `kmemlab snapshot`, not the explorer's console or the fuzzers. DIR must be
//! new or an empty directory: a snapshot never overwrites or merges into older files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use kmemlab_mm::slab::stats::StatItem;
use kmemlab_mm::slab::sysfs::SLAB_ATTRS;
use kmemlab_mm::slab::KmemCacheRef;
use kmemlab_mm::sysctl::Sysctl;
use kmemlab_mm::{procfs, Mm};
use kmemlab_sim::{Machine, SimPlatform};
use serde_json::json;

use crate::output::io_reason;
use crate::shell::{Shell, Value};
use crate::MachineArgs;

/// The shell command's usage.
pub const USAGE: &str = "<dir>";

/// `kmemlab snapshot`'s arguments.
#[derive(Args)]
pub struct SnapshotArgs {
    /// The directory to write: new, or an existing empty one.
    pub dir: PathBuf,
    /// A shell script to run first (as `kmemlab shell SCRIPT` does, its output printed);
    /// the snapshot is the machine as the script leaves it.
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
}

/// What a snapshot wrote.
#[derive(Default)]
pub struct Written {
    /// Regular files.
    pub files: usize,
    /// Directories, the top one included.
    pub dirs: usize,
    /// Symbolic links.
    pub links: usize,
    /// Names left out, each with why (the kernel's `sysfs: cannot create duplicate
    /// filename '…'`, or a slab file that could not be read).
    pub skipped: Vec<String>,
}

/// `kmemlab snapshot DIR [--script FILE]`: boot, run the script if any, write the tree,
/// and say what was written. The result is whether the script met every expectation (the
/// snapshot is written either way: a failing script's machine is worth looking at too).
pub fn run(args: &MachineArgs, snapshot: &SnapshotArgs) -> Result<bool, String> {
    // Refuse an unusable DIR before the script's work, not after it.
    check_target(&snapshot.dir)?;
    let mut shell = Shell::new(args.boot()?);
    shell.host_files = true;
    let ok = match &snapshot.script {
        Some(script) => crate::shell::run_script(&mut shell, script, false)?,
        None => true,
    };
    let written = write(&shell.machine, &snapshot.dir)?;
    crate::output::print(&format!("{}\n", summary(&snapshot.dir, &written)))?;
    Ok(ok)
}

/// The `snapshot` shell command.
pub fn snapshot_command(sh: &mut Shell, args: &[&str]) -> Result<Value, String> {
    let [dir] = args else {
        return Err(format!("usage: snapshot {USAGE}"));
    };
    if !sh.host_files {
        return Err(
            "snapshot writes to the host's file system, which only `kmemlab shell` and \
             `kmemlab snapshot` may do (not the explorer's console or a fuzzer)"
                .to_string(),
        );
    }
    let dir = Path::new(dir);
    let written = write(&sh.machine, dir)?;
    let obj = json!({
        "dir": dir.display().to_string(),
        "files": written.files,
        "directories": written.dirs,
        "links": written.links,
        "skipped": written.skipped,
    });
    Ok(Value::Object(obj, summary(dir, &written)))
}

/// One line (and the skipped names under it) about what was written.
fn summary(dir: &Path, w: &Written) -> String {
    let mut text = format!(
        "snapshot in {}: {} files, {} directories, {} symbolic links (proc/, sys/kernel/slab/); \
         bind-mount them over /proc and /sys in a private mount namespace (docs/SHELL.md)",
        dir.display(),
        w.files,
        w.dirs,
        w.links
    );
    for why in &w.skipped {
        let _ = write!(text, "\n  skipped: {why}");
    }
    text
}

/// Write the machine's files under `dir` (created if absent; it must be empty if present).
pub fn write(machine: &Machine, dir: &Path) -> Result<Written, String> {
    let mut tree = Tree::create(dir)?;
    let mm = machine.mm();
    write_proc(&mut tree, &mm, machine.tainted().0)?;
    write_slab(&mut tree, &mm)?;
    Ok(tree.written)
}

/// The `/proc` files and the sysfs files outside the slab tree.
fn write_proc(tree: &mut Tree, mm: &Mm<SimPlatform>, tainted: u32) -> Result<(), String> {
    for file in procfs::FILES {
        tree.file(&format!("proc/{file}"), &render(mm, file)?)?;
    }
    for tunable in Sysctl::ALL {
        let name = format!("sys/vm/{}", tunable.procname());
        tree.file(&format!("proc/{name}"), &render(mm, &name)?)?;
    }
    // proc_taint(): the mask as an unsigned decimal.
    tree.file("proc/sys/kernel/tainted", &format!("{tainted}\n"))?;
    let thp = procfs::THP_ENABLED_FILE.trim_start_matches('/');
    tree.file(thp, &render(mm, procfs::THP_ENABLED_FILE)?)
}

/// One file as the kernel side renders it.
fn render(mm: &Mm<SimPlatform>, name: &str) -> Result<String, String> {
    let mut text = String::new();
    match procfs::render(mm, name, &mut text) {
        Ok(true) => Ok(text),
        Ok(false) => Err(format!("kmemlab has no renderer for {name}")),
        Err(e) => Err(format!("rendering {name}: {e}")),
    }
}

/// A cache as sysfs names it.
struct SysfsCache {
    handle: KmemCacheRef,
    name: String,
    dir: String,
}

/// `/sys/kernel/slab`: each cache's directory, its name's link, then every alias's link.
fn write_slab(tree: &mut Tree, mm: &Mm<SimPlatform>) -> Result<(), String> {
    tree.dir("sys/kernel/slab")?;
    let mut caches = Vec::new();
    mm.for_each_cache(|s| {
        caches.push(SysfsCache {
            handle: s.handle(),
            name: s.name().to_string(),
            dir: mm.sysfs_slab_dir(s).to_string(),
        });
        None::<()>
    });
    // for_each_cache() goes newest first; sysfs saw them created oldest first.
    caches.reverse();
    for cache in &caches {
        write_cache_dir(tree, mm, cache)?;
        if cache.dir != cache.name {
            tree.slab_link(&cache.name, &cache.dir)?;
        }
    }
    let mut aliases = Vec::new();
    mm.for_each_alias(|name, r| aliases.push((name.to_string(), r)));
    for (name, r) in aliases {
        if let Some(cache) = caches.iter().find(|c| c.handle == r) {
            tree.slab_link(&name, &cache.dir)?;
        }
    }
    Ok(())
}

/// One cache's directory and its attribute files (the statistics files only with
/// `--slub-stats`, as CONFIG_SLUB_STATS adds them).
fn write_cache_dir(
    tree: &mut Tree,
    mm: &Mm<SimPlatform>,
    cache: &SysfsCache,
) -> Result<(), String> {
    let Some(dir) = tree.slab_entry(&cache.dir) else {
        return Ok(());
    };
    tree.dir(&dir)?;
    let stats = StatItem::ALL.map(StatItem::file_name);
    for attr in SLAB_ATTRS.iter().chain(stats.iter()) {
        let mut text = String::new();
        match mm.show_slab_attr(cache.handle, attr, &mut text) {
            Ok(true) => tree.file(&format!("{dir}/{attr}"), &text)?,
            Ok(false) => {}
            Err(e) => tree
                .written
                .skipped
                .push(format!("/sys/kernel/slab/{}/{attr}: {e}", cache.dir)),
        }
    }
    Ok(())
}

/// `kobject_set_name_vargs()`: a kobject name ends at NUL and has `!` for `/`; `None` for a
/// name no directory entry can have (empty, `.`, `..`).
fn sysfs_name(name: &str) -> Option<String> {
    let name = name
        .split('\0')
        .next()
        .unwrap_or_default()
        .replace('/', "!");
    (!matches!(name.as_str(), "" | "." | "..")).then_some(name)
}

/// Can a snapshot go to `root`: `Ok(true)` for an empty directory, `Ok(false)` for a
/// path that does not exist yet, else why not.
fn check_target(root: &Path) -> Result<bool, String> {
    let shown = root.display();
    match std::fs::metadata(root) {
        Ok(m) if !m.is_dir() => Err(format!("{shown} exists and is not a directory")),
        Ok(_) => {
            let mut entries = std::fs::read_dir(root)
                .map_err(|e| format!("{shown}: cannot read the directory: {}", io_reason(&e)))?;
            if entries.next().is_some() {
                return Err(format!(
                    "{shown} is not empty: a snapshot goes into a new or empty directory"
                ));
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        // A path through a file (ENOTDIR), or one the user may not look into.
        Err(e) => Err(format!("cannot create {shown}: {}", io_reason(&e))),
    }
}

/// The directory being written, and what has been written to it.
struct Tree {
    root: PathBuf,
    written: Written,
}

impl Tree {
    /// Make `root` (and its parents), or take it if it is an empty directory.
    fn create(root: &Path) -> Result<Tree, String> {
        if !check_target(root)? {
            std::fs::create_dir_all(root)
                .map_err(|e| format!("cannot create {}: {}", root.display(), io_reason(&e)))?;
        }
        Ok(Tree {
            root: root.to_path_buf(),
            written: Written {
                dirs: 1,
                ..Written::default()
            },
        })
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// The error for a failed write of `path`.
    fn failed(path: &Path, e: &std::io::Error) -> String {
        format!("cannot write {}: {}", path.display(), io_reason(e))
    }

    /// A directory and its parents.
    fn dir(&mut self, relative: &str) -> Result<(), String> {
        let path = self.path(relative);
        let mut missing = 0;
        let mut p = path.as_path();
        while p != self.root && !p.exists() {
            missing += 1;
            p = p.parent().unwrap_or(&self.root);
        }
        std::fs::create_dir_all(&path).map_err(|e| Tree::failed(&path, &e))?;
        self.written.dirs += missing;
        Ok(())
    }

    /// A file with `text`, its directory made first.
    fn file(&mut self, relative: &str, text: &str) -> Result<(), String> {
        if let Some((parent, _)) = relative.rsplit_once('/') {
            self.dir(parent)?;
        }
        let path = self.path(relative);
        std::fs::write(&path, text).map_err(|e| Tree::failed(&path, &e))?;
        self.written.files += 1;
        Ok(())
    }

    /// `sys/kernel/slab/<name>` for a new entry named `name` (as sysfs names it); `None`,
    /// with the kernel's complaint recorded, when that name is taken.
    fn slab_entry(&mut self, name: &str) -> Option<String> {
        let taken = |n: &str| format!("sysfs: cannot create duplicate filename '/kernel/slab/{n}'");
        let Some(entry) = sysfs_name(name) else {
            self.written.skipped.push(taken(name));
            return None;
        };
        let relative = format!("sys/kernel/slab/{entry}");
        if std::fs::symlink_metadata(self.path(&relative)).is_ok() {
            self.written.skipped.push(taken(&entry));
            return None;
        }
        Some(relative)
    }

    /// `sysfs_slab_alias()`: the link `name` -> `target` in the slab directory; a leftover
    /// link of that name is replaced, any other entry of that name kept.
    fn slab_link(&mut self, name: &str, target: &str) -> Result<(), String> {
        if let Some(entry) = sysfs_name(name) {
            let path = self.path(&format!("sys/kernel/slab/{entry}"));
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                std::fs::remove_file(&path).map_err(|e| Tree::failed(&path, &e))?;
                self.written.links -= 1;
            }
        }
        let Some(relative) = self.slab_entry(name) else {
            return Ok(());
        };
        let Some(target) = sysfs_name(target) else {
            return Ok(());
        };
        let path = self.path(&relative);
        symlink(&target, &path).map_err(|e| Tree::failed(&path, &e))?;
        self.written.links += 1;
        Ok(())
    }
}

/// A symbolic link at `path` to `target`.
#[cfg(unix)]
fn symlink(target: &str, path: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

/// Sysfs's links have no portable equivalent off Unix.
#[cfg(not(unix))]
fn symlink(_: &str, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "symbolic links as sysfs makes them need a Unix host",
    ))
}

#[cfg(test)]
mod tests {
    use super::sysfs_name;

    /// kobject names: `/` becomes `!`, NUL ends the name, `.` and `..` are no names.
    #[test]
    fn sysfs_names_follow_kobject_rules() {
        assert_eq!(sysfs_name("kmalloc-64").as_deref(), Some("kmalloc-64"));
        assert_eq!(sysfs_name("../../etc").as_deref(), Some("..!..!etc"));
        assert_eq!(sysfs_name("a\0b").as_deref(), Some("a"));
        assert_eq!(sysfs_name(".."), None);
        assert_eq!(sysfs_name("\0x"), None);
    }
}
