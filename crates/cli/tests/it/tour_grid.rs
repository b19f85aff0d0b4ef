//! The tour over a grid of machines: both profiles, 16 MiB to 16 GiB of RAM, 1 to 64
//! CPUs, with and without the PCI hole. On every machine the tour runs to the end and
//! exits 0, and every claim either held or says why its experiment does not fit.
//!
//! The full grid (2 profiles x 7 sizes x 6 CPU counts x 2 hole settings x 2 per-CPU slab
//! layers) takes minutes; this runs a covering subset: every size on every profile and
//! hole setting once with the CPU slab (Linux 6.6, the default), every size on every
//! profile once more with the sheaves (Linux 6.18, `--slab-percpu sheaves`; the hole
//! setting alternating), the CPU count rotating throughout, plus machines where claims
//! once failed or the tour aborted.

use std::process::Command;
use std::sync::Mutex;

const RAMS: [&str; 7] = ["64M", "128M", "512M", "1G", "4G", "8G", "16G"];
const CPUS: [&str; 6] = ["1", "2", "4", "8", "16", "64"];
const CLAIMS: [&str; 10] = ["A", "B", "C", "D", "E", "F", "G", "Q1", "Q2", "Q3"];

/// Machines where a claim failed or the tour aborted before the verdicts were reworked.
const REGRESSIONS: [&[&str]; 6] = [
    &["--ram", "16M", "--cpus", "8"],
    &["--ram", "1G", "--cpus", "16"],
    &["--ram", "4G", "--cpus", "2", "--pci-hole"],
    &["--ram", "8G", "--cpus", "4"],
    &["--profile", "i386", "--ram", "1G", "--cpus", "1"],
    &["--profile", "i386", "--ram", "4G", "--cpus", "8"],
];

/// The subset: for each profile and hole setting, every RAM size once, with the CPU
/// count rotating so that every count meets several sizes; then for each profile every
/// RAM size once with the sheaves, the hole setting alternating.
fn machines() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut turn = 0;
    for profile in ["x86_64", "i386"] {
        for hole in [false, true] {
            for ram in RAMS {
                let cpus = CPUS[turn % CPUS.len()];
                turn += 1;
                let mut flags = vec!["--profile", profile, "--ram", ram, "--cpus", cpus];
                if hole {
                    flags.push("--pci-hole");
                }
                out.push(flags.iter().map(|s| s.to_string()).collect());
            }
        }
    }
    for profile in ["x86_64", "i386"] {
        for (i, ram) in RAMS.iter().enumerate() {
            let cpus = CPUS[turn % CPUS.len()];
            turn += 1;
            let mut flags = vec!["--profile", profile, "--ram", ram, "--cpus", cpus];
            flags.extend(["--slab-percpu", "sheaves"]);
            if i % 2 == 1 {
                flags.push("--pci-hole");
            }
            out.push(flags.iter().map(|s| s.to_string()).collect());
        }
    }
    out.extend(
        REGRESSIONS
            .iter()
            .map(|f| f.iter().map(|s| s.to_string()).collect()),
    );
    out
}

/// Run the tour on one machine; what is wrong with its result, if anything.
fn problems(flags: &[String]) -> Vec<String> {
    let o = Command::new(env!("CARGO_BIN_EXE_kmemlab"))
        .args(flags)
        .args(["tour", "--json", "--no-wall-clock"])
        .output()
        .expect("run kmemlab");
    let mut found = Vec::new();
    if !o.status.success() {
        found.push(format!(
            "exit status {:?}: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let v: serde_json::Value = match serde_json::from_slice(&o.stdout) {
        Ok(v) => v,
        Err(e) => {
            found.push(format!("no JSON document: {e}"));
            return found;
        }
    };
    let claims = v["claims"].as_array().cloned().unwrap_or_default();
    let mut ids: Vec<&str> = claims.iter().filter_map(|c| c["id"].as_str()).collect();
    ids.sort();
    let mut expected = CLAIMS.to_vec();
    expected.sort();
    if ids != expected {
        found.push(format!("claims {ids:?}, expected {expected:?}"));
    }
    for c in &claims {
        let reason = c["reason"].as_str().unwrap_or("");
        match c["verdict"].as_str() {
            Some("held") if c["holds"] == true => {}
            Some("n/a") if reason.len() > 20 && c["holds"] == false => {}
            _ => found.push(format!("claim {c}")),
        }
    }
    for fact in ["vmalloc_stale_tlb", "vmalloc_guard_page"] {
        if v[fact]["holds"] != true {
            found.push(format!("{fact}: {}", v[fact]));
        }
    }
    // The per-CPU comparison names this machine's layer and measured both.
    let layer = if flags.iter().any(|f| f == "sheaves") {
        "sheaves"
    } else {
        "cpu-slab"
    };
    let percpu = &v["slab_percpu"];
    if percpu["this_machine"] != layer {
        found.push(format!("slab_percpu names another layer: {percpu}"));
    }
    for side in ["cpu-slab", "sheaves"] {
        if percpu[side]["allocs"].as_u64().is_none_or(|n| n == 0) {
            found.push(format!("slab_percpu.{side} measured nothing: {percpu}"));
        }
    }
    if v["invariants_broken"]
        .as_array()
        .is_none_or(|b| !b.is_empty())
    {
        found.push(format!("invariants: {}", v["invariants_broken"]));
    }
    if v["all_hold"] != true {
        found.push("all_hold is not true".into());
    }
    found
}

#[test]
fn every_claim_holds_or_says_why_it_does_not_fit() {
    let queue = Mutex::new(machines());
    let failures = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some(flags) = queue.lock().unwrap().pop() else {
                    break;
                };
                for p in problems(&flags) {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{}: {p}", flags.join(" ")));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A machine too small for some experiments: the tour still prints every section and
/// says, for those claims, why they do not fit.
#[test]
fn a_machine_too_small_says_why() {
    let o = Command::new(env!("CARGO_BIN_EXE_kmemlab"))
        .args(["--ram", "16M", "--cpus", "8", "tour", "--no-wall-clock"])
        .output()
        .expect("run kmemlab");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("The claims, decided on this machine"),
        "{text}"
    );
    assert!(text.contains("does not fit: "), "{text}");
    assert!(text.contains("0 failed"), "{text}");
}
