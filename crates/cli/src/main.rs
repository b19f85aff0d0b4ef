//! The `kmemlab` binary: everything is in the library (`kmemlab_cli`).

fn main() -> std::process::ExitCode {
    kmemlab_cli::main_entry()
}
