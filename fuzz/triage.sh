#!/bin/sh
# Usage: fuzz/triage.sh <trace_parse|shell|mm_ops> <input>...
#
# Runs each input once through the target's libFuzzer binary (build it first with
# `cargo +nightly fuzz build -O`; it has AddressSanitizer, so a host SIGSEGV prints a
# stack too) and prints how it ended: the panic message, the sanitizer's or the timeout's
# report, and the first frames in kmemlab's own crates. Shell scripts from
# crates/cli/tests/regressions/ run as `shell` inputs unchanged.
set -u
target=$1
shift
bin="$(dirname "$0")/target/x86_64-unknown-linux-gnu/release/$target"
[ -x "$bin" ] || { echo "no $bin: run cargo +nightly fuzz build -O $target" >&2; exit 2; }
for input in "$@"; do
    echo "== $input"
    "$bin" -timeout=10 -rss_limit_mb=4096 "$input" 2>&1 |
        grep -E "panicked at|^thread .* panicked|ERROR: (AddressSanitizer|libFuzzer)|ALARM|out-of-memory|crates/(mm|sim|cli)/src" |
        grep -v "^ *[0-9]*: " | head -5
done
