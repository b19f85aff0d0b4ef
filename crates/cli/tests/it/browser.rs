//! End-to-end test of the explorer page in a real headless Chromium: starts `kmemlab
//! serve` on a free loopback port and runs `crates/cli/e2e/e2e.mjs` (Playwright's
//! `playwright-core` driving Debian's `/usr/bin/chromium`) against it.
//!
//! On a machine without node, Chromium or `npm ci` in `crates/cli/e2e`, the test says
//! why it is skipped and passes; with `KMEMLAB_E2E=1` (set by `.ci/run`) any of those
//! missing is a failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The browser the test drives (Debian's package).
const CHROMIUM: &str = "/usr/bin/chromium";

/// The SLUB trace the server offers as a sample and the test uploads, in the repository.
const SAMPLE_TRACE: &str = "tests/data/traces/linux-3.5-i386-boot-slub.trace";

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e")
}

/// Why the end-to-end test cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Some("node is not installed".into());
    }
    if !Path::new(CHROMIUM).exists() {
        return Some(format!(
            "{CHROMIUM} is missing (apt-get install -y chromium)"
        ));
    }
    let playwright = e2e_dir().join("node_modules/playwright-core/package.json");
    if !playwright.exists() {
        return Some(format!(
            "{} is missing (run npm ci in {})",
            playwright.display(),
            e2e_dir().display()
        ));
    }
    None
}

/// `kmemlab serve` on a free loopback port, and the URL it printed.
fn start_server() -> (KillOnDrop, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kmemlab"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    let trace = repo_root().join(SAMPLE_TRACE);
    if trace.exists() {
        cmd.arg("--trace").arg(&trace);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("kmemlab serve starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut server = KillOnDrop(child);
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = match lines.next() {
            Some(Ok(line)) => line,
            _ => {
                let status = server.0.wait().ok();
                panic!("kmemlab serve ended before it said where it listens ({status:?})");
            }
        };
        if let Some(at) = line.find("http://") {
            break line[at..].trim().to_string();
        }
    };
    // Keep reading the server's output so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (server, url)
}

#[test]
fn explorer_page_in_headless_chromium() {
    let required = std::env::var("KMEMLAB_E2E").is_ok_and(|v| v == "1");
    if let Some(why) = missing_prerequisite() {
        assert!(!required, "KMEMLAB_E2E=1 but {why}");
        eprintln!("browser test skipped: {why} (set KMEMLAB_E2E=1 to make this a failure)");
        return;
    }
    let (_server, url) = start_server();
    let screenshots = repo_root().join("target/e2e-screenshots");
    let run = Command::new("node")
        .arg("e2e.mjs")
        .arg(&url)
        .current_dir(e2e_dir())
        .env("KMEMLAB_SCREENSHOTS", &screenshots)
        .env("KMEMLAB_CHROMIUM", CHROMIUM)
        .env("KMEMLAB_TRACE", repo_root().join(SAMPLE_TRACE))
        .output()
        .expect("node runs");
    // Through the test harness's capture: shown with --nocapture or when the test fails.
    println!("{}", String::from_utf8_lossy(&run.stdout));
    println!("{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        run.status.success(),
        "the browser test failed: {}",
        run.status
    );
}
