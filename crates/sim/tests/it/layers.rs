//! The kernel core stays `no_std` without `alloc`, and depends on nothing that would pull
//! in the standard library: what a bare-metal kernel embedding it needs.

use std::fs;
use std::path::Path;

fn mm_src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mm/src")
}

#[test]
fn mm_is_no_std_without_alloc() {
    let lib = fs::read_to_string(mm_src().join("lib.rs")).unwrap();
    assert!(
        lib.lines().any(|l| l.trim() == "#![no_std]"),
        "crates/mm/src/lib.rs lost #![no_std]"
    );
    let mut stack = vec![mm_src()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = fs::read_to_string(&path).unwrap();
            // Unit tests may use std; everything before `#[cfg(test)]` is kernel code. Doc
            // examples (comments) are built as doctests, with std.
            let kernel = code_lines(text.split("#[cfg(test)]").next().unwrap());
            let kernel = kernel.as_str();
            for forbidden in ["extern crate alloc", "extern crate std", "std::", "alloc::"] {
                assert!(
                    !uses_path(kernel, forbidden),
                    "{} uses {forbidden}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn mm_depends_only_on_no_std_crates() {
    let manifest = fs::read_to_string(mm_src().join("../Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap_or("");
    // Up to the next section ([dev-dependencies] only builds tests and doc examples).
    let deps = deps.split("\n[").next().unwrap_or("");
    let names: Vec<&str> = deps
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split(['.', '=']).next())
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.starts_with('['))
        .collect();
    assert_eq!(names, ["bitflags", "spin", "zerocopy"]);
}

/// Does `text` use `word` as a path of its own (not as the end of `page_alloc::`, nor
/// inside a longer path such as `core::alloc::` or `crate::alloc::`)?
fn uses_path(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        !text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
    })
}

/// `text` without its comment lines.
fn code_lines(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}
