//! The fuzz targets' logic (`fuzz/src/`, the cargo-fuzz crate outside the workspace),
//! compiled in once by path for `fuzz_corpus` and `script_fuzz`. The fuzz crate builds
//! these files with edition 2021, so they keep to what both editions accept.

#[allow(dead_code, clippy::collapsible_if)]
#[path = "../../../../fuzz/src/trace_parse.rs"]
pub mod trace_parse;

#[allow(dead_code, clippy::collapsible_if)]
#[path = "../../../../fuzz/src/shell.rs"]
pub mod shell;

#[allow(dead_code, clippy::collapsible_if)]
#[path = "../../../../fuzz/src/mm_ops.rs"]
pub mod mm_ops;
