//! `docs/ARCHITECTURE.md` stays true to the code: every repository path it names in
//! backticks exists, every function its data-path tables name is defined in the file the
//! row names, every file and folder of its module map exists in the crate it is listed
//! under, and the README points to it (and to nothing outside the repository).

use std::path::{Path, PathBuf};

/// The repository's root (this crate is `crates/cli`).
fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn architecture() -> String {
    read("docs/ARCHITECTURE.md")
}

/// The text of every `code span` of a line (outside fenced blocks).
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// The lines outside fenced code blocks.
fn prose_lines(doc: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            lines.push(line);
        }
    }
    lines
}

/// Is this code span a path inside the repository (as opposed to a kernel file such as
/// `mm/slub.c`, a function or a flag)?
fn is_repo_path(span: &str) -> bool {
    const ROOTS: [&str; 6] = ["crates/", "docs/", "examples/", "fuzz/", "tests/", ".ci/"];
    ROOTS.iter().any(|r| span.starts_with(r)) || span == "README.md" || span == "Cargo.toml"
}

/// Does `pattern` (a path, a folder ending in `/`, or a path with one `*` in its file
/// name) name something in the repository?
fn exists(pattern: &str) -> bool {
    let Some((head, tail)) = pattern.split_once('*') else {
        return repo().join(pattern).exists();
    };
    let (dir, prefix) = head.rsplit_once('/').unwrap_or(("", head));
    let Ok(entries) = std::fs::read_dir(repo().join(dir)) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with(prefix) && name.ends_with(tail)
    })
}

#[test]
fn every_repository_path_named_exists() {
    let doc = architecture();
    let paths: Vec<&str> = prose_lines(&doc)
        .into_iter()
        .flat_map(code_spans)
        .filter(|s| is_repo_path(s))
        .collect();
    assert!(
        paths.len() >= 40,
        "only {} repository paths found: is the document still there?",
        paths.len()
    );
    let missing: Vec<&&str> = paths.iter().filter(|p| !exists(p)).collect();
    assert!(missing.is_empty(), "named but missing: {missing:?}");
}

/// Is `name` defined as a function (`fn name(` or `fn name<`) in `source`?
fn defines(source: &str, name: &str) -> bool {
    source.contains(&format!("fn {name}(")) || source.contains(&format!("fn {name}<"))
}

#[test]
fn every_function_of_the_data_paths_is_in_its_file() {
    let doc = architecture();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for line in prose_lines(&doc) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let [first, second, ..] = cells.as_slice() else {
            continue;
        };
        let file = first.trim_start_matches('|').trim().trim_matches('`');
        if !is_repo_path(file) || !file.ends_with(".rs") {
            continue;
        }
        let source = read(file);
        for name in code_spans(second) {
            checked += 1;
            if !defines(&source, name) {
                wrong.push(format!("{name} in {file}"));
            }
        }
    }
    assert!(
        checked >= 60,
        "only {checked} functions found in the data-path tables"
    );
    assert!(
        wrong.is_empty(),
        "not defined where the document says: {wrong:?}"
    );
}

/// The words of a module-map line that name a Rust file (`slub.rs`) or a folder (`slab/`).
fn map_names(line: &str) -> Vec<&str> {
    line.split_whitespace()
        .map(|w| w.trim_end_matches([',', ';', ')']))
        .filter(|w| w.ends_with(".rs") || (w.ends_with('/') && w.len() > 1))
        .filter(|w| {
            w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_./".contains(c))
        })
        .collect()
}

/// Is there a file or folder called `name` anywhere under `dir`?
fn found_under(dir: &Path, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        let is_dir = path.is_dir();
        let file_name = e.file_name().to_string_lossy().into_owned();
        let matches = match name.strip_suffix('/') {
            Some(folder) => is_dir && file_name == folder,
            None => !is_dir && file_name == name,
        };
        matches || (is_dir && found_under(&path, name))
    })
}

#[test]
fn every_file_of_the_module_map_exists_in_its_crate() {
    let doc = architecture();
    let map = doc
        .split("## The module map")
        .nth(1)
        .and_then(|rest| rest.split("```").nth(1))
        .expect("a fenced module map after '## The module map'");
    let mut src: Option<PathBuf> = None;
    let mut checked = 0;
    let mut missing = Vec::new();
    for line in map.lines() {
        if let Some(header) = line
            .split_whitespace()
            .next()
            .filter(|w| w.starts_with("crates/"))
        {
            src = Some(repo().join(header));
            continue;
        }
        let Some(src) = &src else { continue };
        for name in map_names(line) {
            checked += 1;
            if !found_under(src, name) {
                missing.push(format!("{name} under {}", src.display()));
            }
        }
    }
    assert!(
        checked >= 60,
        "only {checked} names found in the module map"
    );
    assert!(
        missing.is_empty(),
        "in the module map but not in the crate: {missing:?}"
    );
}

#[test]
fn the_readme_points_to_the_architecture_and_stays_inside_the_repository() {
    let readme = read("README.md");
    assert!(readme.contains("docs/ARCHITECTURE.md"));
    assert!(
        !readme.contains("../shared"),
        "the README links outside the repository"
    );
}
