//! The `sysctl` shell command, the `--sysctl KEY=VALUE` and `--thp` boot flags, and the
//! files `cat` serves for them (`/proc/sys/vm/*`,
//! `/sys/kernel/mm/transparent_hugepage/enabled`), as a user drives them.

use crate::fixtures::shell;
use kmemlab_cli::MachineArgs;
use std::process::Command;

use kmemlab_cli::shell::Shell;

/// Run one line: its JSON (`failed`, `result`, `message`, …).
fn exec(sh: &mut Shell, line: &str) -> serde_json::Value {
    sh.exec_line(1, line).expect("a command").json()
}

fn ok(sh: &mut Shell, line: &str) -> serde_json::Value {
    let j = exec(sh, line);
    assert_eq!(j["failed"], false, "{line}: {j}");
    j["result"].clone()
}

fn text(sh: &mut Shell, line: &str) -> String {
    let o = sh.exec_line(1, line).expect("a command");
    let mut out = Vec::new();
    o.print_text(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// `min`, `low`, `high` of a zone in `/proc/zoneinfo`.
fn wmarks(zoneinfo: &str, zone: &str) -> [u64; 3] {
    let start = zoneinfo
        .find(&format!("zone {zone:>8}"))
        .unwrap_or_else(|| panic!("zone {zone}"));
    let mut out = [0; 3];
    for line in zoneinfo[start..].lines().skip(1) {
        if line.starts_with("Node") {
            break;
        }
        let mut w = line.split_whitespace();
        let (Some(k), Some(v)) = (w.next(), w.next()) else {
            continue;
        };
        let i = match k {
            "min" => 0,
            "low" => 1,
            "high" => 2,
            _ => continue,
        };
        out[i] = v.parse().unwrap();
    }
    out
}

#[test]
fn sysctl_lists_reads_and_writes_as_procps_prints() {
    let mut sh = shell(&["--ram", "2G"]);
    let list = text(&mut sh, "sysctl");
    for key in [
        "vm.min_free_kbytes = ",
        "vm.watermark_boost_factor = 15000",
        "vm.watermark_scale_factor = 10",
        "vm.percpu_pagelist_high_fraction = 0",
        "vm.lowmem_reserve_ratio = 256\t256\t32\t0",
    ] {
        assert!(list.contains(key), "{key:?} in\n{list}");
    }
    assert_eq!(
        text(&mut sh, "sysctl vm.min_free_kbytes=65536"),
        "vm.min_free_kbytes = 65536\n"
    );
    assert_eq!(ok(&mut sh, "sysctl vm.min_free_kbytes")["value"], "65536");
    assert_eq!(text(&mut sh, "cat /proc/sys/vm/min_free_kbytes"), "65536\n");
    // -w and a many-valued write, the words after '=' making the value.
    ok(&mut sh, "sysctl -w vm.lowmem_reserve_ratio=128 128 16");
    assert_eq!(
        ok(&mut sh, "sysctl /proc/sys/vm/lowmem_reserve_ratio")["value"],
        "128\t128\t16\t0"
    );
    // The zones follow: 65536 kB = 16384 pages, DMA32's share of 2 GiB by its size.
    let zoneinfo = text(&mut sh, "cat /proc/zoneinfo");
    let [min, low, high] = wmarks(&zoneinfo, "DMA32");
    assert!(min > 15_000 && min < 16_384, "{min}");
    assert_eq!(low - min, min / 4);
    assert_eq!(high - low, low - min);
}

#[test]
fn sysctl_refuses_bad_input_with_procps_messages() {
    let mut sh = shell(&["--ram", "256M"]);
    let before = text(&mut sh, "cat /proc/zoneinfo");
    for (line, want) in [
        (
            "sysctl vm.bogus=1",
            "sysctl: cannot stat /proc/sys/vm/bogus: No such file or directory",
        ),
        (
            "sysctl vm.bogus",
            "sysctl: cannot stat /proc/sys/vm/bogus: No such file or directory",
        ),
        (
            "sysctl vm.min_free_kbytes=many",
            "sysctl: setting key \"vm.min_free_kbytes\": Invalid argument",
        ),
        (
            "sysctl vm.min_free_kbytes=-4",
            "sysctl: setting key \"vm.min_free_kbytes\": Invalid argument",
        ),
        (
            "sysctl vm.watermark_scale_factor=5000",
            "sysctl: setting key \"vm.watermark_scale_factor\": Invalid argument",
        ),
        (
            "sysctl vm.percpu_pagelist_high_fraction=3",
            "sysctl: setting key \"vm.percpu_pagelist_high_fraction\": Invalid argument",
        ),
        (
            "sysctl vm.min_free_kbytes vm.watermark_scale_factor",
            "one KEY to read",
        ),
    ] {
        let j = exec(&mut sh, line);
        assert_eq!(j["failed"], true, "{line}: {j}");
        let err = j["message"].as_str().unwrap_or_default().to_string();
        assert!(err.contains(want), "{line}: {err}");
    }
    assert_eq!(text(&mut sh, "cat /proc/zoneinfo"), before);
}

#[test]
fn boot_flags_set_thp_and_sysctls_and_reboot_keeps_them() {
    let mut sh = shell(&[
        "--ram",
        "16G",
        "--thp",
        "always",
        "--sysctl",
        "vm.watermark_scale_factor=100",
    ]);
    // khugepaged's recommendation for DMA, DMA32 and Normal: 11 pageblocks per zone.
    assert_eq!(
        ok(&mut sh, "sysctl vm.min_free_kbytes")["value"],
        (11 * 512 * 3 * 4).to_string()
    );
    assert_eq!(
        text(&mut sh, "cat /sys/kernel/mm/transparent_hugepage/enabled"),
        "[always] madvise never\n"
    );
    ok(&mut sh, "sysctl vm.watermark_scale_factor=7");
    ok(&mut sh, "reboot");
    assert_eq!(
        ok(&mut sh, "sysctl vm.watermark_scale_factor")["value"],
        "100",
        "the boot flag, not the runtime write"
    );
    assert_eq!(ok(&mut sh, "sysctl vm.min_free_kbytes")["value"], "67584");
}

#[test]
fn bad_boot_flags_are_refused_before_boot() {
    for (flags, want) in [
        (vec!["--thp", "sometimes"], "not always, madvise or never"),
        (vec!["--sysctl", "vm.min_free_kbytes"], "is not KEY=VALUE"),
        (vec!["--sysctl", "vm.nope=1"], "unknown sysctl 'vm.nope'"),
    ] {
        let err = MachineArgs::parse_from(flags.iter().copied())
            .err()
            .unwrap_or_else(|| panic!("{flags:?} accepted"));
        assert!(err.contains(want), "{flags:?}: {err}");
    }
    // A value the kernel refuses fails the boot with sysctl's message.
    let args = MachineArgs::parse_from(["--sysctl", "vm.watermark_scale_factor=0"]).unwrap();
    let err = args.boot().err().expect("refused");
    assert!(err.contains("Invalid argument"), "{err}");
}

#[test]
fn proc_subcommand_reads_the_tunables() {
    let o = Command::new(env!("CARGO_BIN_EXE_kmemlab"))
        .args([
            "--ram",
            "1G",
            "--sysctl",
            "vm.min_free_kbytes=12345",
            "proc",
            "sys/vm/min_free_kbytes",
        ])
        .output()
        .expect("run kmemlab");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "12345\n");
}
