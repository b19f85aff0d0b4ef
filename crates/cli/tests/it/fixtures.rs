//! What the cli tests share: running the `kmemlab` binary and reading its output, and the
//! repository's test data (`tests/data/` at the root).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Run `kmemlab` with `args`; `stdin` is written as far as the child reads it (a child that
/// exits first closes the pipe: not the test's failure), and standard output goes to
/// `/dev/full` when `full` is set.
pub fn run(args: &[&str], stdin: &[u8], full: bool) -> Output {
    let stdout = if full {
        Stdio::from(std::fs::File::create("/dev/full").expect("/dev/full"))
    } else {
        Stdio::piped()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmemlab"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kmemlab");
    let mut pipe = child.stdin.take().expect("stdin");
    match pipe.write_all(stdin) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
        _ => {}
    }
    drop(pipe);
    child.wait_with_output().expect("kmemlab output")
}

/// Run `kmemlab` with `args` and `stdin`, standard output captured.
pub fn kmemlab(args: &[&str], stdin: &str) -> Output {
    run(args, stdin.as_bytes(), false)
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The path of `tests/data/<relative>` at the repository root, as a string for the
/// command line; a missing fixture fails the test that needs it.
pub fn test_data(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(relative);
    assert!(
        path.is_file(),
        "test fixture {} is missing (tests/data/ at the repository root)",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// A shell on a machine booted from command-line machine flags (`["--ram", "64M"]`).
pub fn shell(flags: &[&str]) -> kmemlab_cli::shell::Shell {
    let args = kmemlab_cli::MachineArgs::parse_from(flags.iter().copied()).expect("machine flags");
    kmemlab_cli::shell::Shell::new(args.boot().expect("boot"))
}

/// Run one line of `sh` (not blank, not a comment): its outcome.
pub fn outcome(sh: &mut kmemlab_cli::shell::Shell, line: &str) -> kmemlab_cli::shell::Outcome {
    sh.exec_line(1, line).expect("a command")
}
