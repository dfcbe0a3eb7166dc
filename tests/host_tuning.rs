//! The host-tuning scripts against a scratch tree standing in for `/proc`, `/sys` and `/etc` (`--root`):
//! `check` tells good from differing values, `apply --dry-run` changes nothing and prints the commands,
//! `apply` sets every value (twice, idempotently), and `revert` restores every file exactly. Nothing here
//! touches the real kernel settings; `check` on the real host only has to run (exit 0 or 1).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::walk;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("host-tuning")
        .join(name)
}

fn run(name: &str, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(script(name))
        .args(args)
        .env_remove("TICKCORE_TUNING_STATE")
        .output()
        .expect("bash runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A 4-CPU host with stock settings, a virtio NIC `eth0` and a disk `vda`.
fn scratch_host(root: &Path) {
    let files: &[(&str, &str)] = &[
        ("proc/sys/net/core/somaxconn", "128\n"),
        ("proc/sys/net/ipv4/tcp_max_syn_backlog", "512\n"),
        ("proc/sys/net/core/netdev_max_backlog", "1000\n"),
        ("proc/sys/net/core/rmem_max", "212992\n"),
        ("proc/sys/net/core/wmem_max", "212992\n"),
        ("proc/sys/net/ipv4/tcp_rmem", "4096\t131072\t6291456\n"),
        ("proc/sys/net/ipv4/tcp_wmem", "4096\t16384\t4194304\n"),
        ("proc/sys/net/ipv4/ip_local_port_range", "32768\t60999\n"),
        ("proc/sys/net/ipv4/tcp_tw_reuse", "2\n"),
        ("proc/sys/net/ipv4/tcp_fin_timeout", "60\n"),
        ("proc/sys/fs/file-max", "9223372036854775807\n"),
        ("proc/sys/fs/nr_open", "1048576\n"),
        ("sys/devices/system/cpu/online", "0-3\n"),
        (
            "sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never\n",
        ),
        (
            "sys/kernel/mm/transparent_hugepage/defrag",
            "always defer defer+madvise [madvise] never\n",
        ),
        (
            "proc/interrupts",
            "           CPU0 CPU1 CPU2 CPU3\n 36:  0 5 0 0  PCI-MSIX  1-edge  virtio1-req.0\n 38:  9 0 0 0  PCI-MSIX  1-edge  virtio2-input.0\n 39:  9 0 0 0  PCI-MSIX  2-edge  virtio2-output.0\n",
        ),
        ("proc/irq/36/smp_affinity_list", "0-3\n"),
        ("proc/irq/38/smp_affinity_list", "0-3\n"),
        ("proc/irq/39/smp_affinity_list", "0-3\n"),
        ("sys/class/net/eth0/queues/rx-0/rps_cpus", "0\n"),
        ("sys/class/net/eth0/queues/rx-1/rps_cpus", "0\n"),
        ("sys/block/vda/queue/scheduler", "[mq-deadline] kyber none\n"),
        ("sys/block/vda/queue/read_ahead_kb", "128\n"),
    ];
    for (p, v) in files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, v).unwrap();
    }
    for cpu in 0..4 {
        let c = root.join(format!("sys/devices/system/cpu/cpu{cpu}"));
        std::fs::create_dir_all(c.join("cpufreq")).unwrap();
        std::fs::write(c.join("cpufreq/scaling_governor"), "powersave\n").unwrap();
        for state in 0..4 {
            let s = c.join(format!("cpuidle/state{state}"));
            std::fs::create_dir_all(&s).unwrap();
            std::fs::write(s.join("disable"), "0\n").unwrap();
        }
    }
    std::fs::create_dir_all(root.join("etc/security/limits.d")).unwrap();
}

/// Every file under `root` with its content.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(root)
        .into_iter()
        .map(|p| {
            let content = std::fs::read(&p).unwrap();
            (p, content)
        })
        .collect()
}

fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p)).unwrap()
}

#[test]
fn apply_sets_every_value_and_revert_restores_every_file() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    scratch_host(root);
    let r = root.to_str().unwrap();
    let args = |mode: &'static str, extra: &[&'static str]| {
        let mut a = vec![mode, "--root", r, "--dev", "vda", "--nic", "eth0"];
        a.extend_from_slice(extra);
        a
    };
    let before = snapshot(root);

    let check = run("all.sh", &args("check", &[]));
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    let t = text(&check);
    assert!(
        t.contains("DIFFERS  /proc/sys/net/core/somaxconn = 128, recommended 4096"),
        "{t}"
    );
    assert!(
        t.contains("ok       /proc/sys/fs/file-max"),
        "a larger value than the minimum is fine: {t}"
    );

    let dry = run("all.sh", &args("apply", &["--dry-run"]));
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(text(&dry).contains("printf %s 4096 > "), "{}", text(&dry));
    assert_eq!(snapshot(root), before, "--dry-run changes nothing");

    for round in 0..2 {
        let apply = run("all.sh", &args("apply", &[]));
        assert_eq!(
            apply.status.code(),
            Some(0),
            "round {round}: {}",
            text(&apply)
        );
    }
    let check = run("all.sh", &args("check", &[]));
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    assert_eq!(read(root, "proc/sys/net/core/somaxconn"), "4096");
    assert_eq!(
        read(root, "proc/sys/net/ipv4/tcp_wmem"),
        "4096 131072 16777216"
    );
    assert_eq!(
        read(root, "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor"),
        "performance"
    );
    assert_eq!(
        read(root, "sys/devices/system/cpu/cpu2/cpuidle/state3/disable"),
        "1"
    );
    assert_eq!(
        read(root, "sys/devices/system/cpu/cpu2/cpuidle/state1/disable"),
        "0\n",
        "shallow idle states stay"
    );
    assert_eq!(read(root, "sys/block/vda/queue/scheduler"), "none");
    assert_eq!(read(root, "proc/irq/38/smp_affinity_list"), "0");
    assert_eq!(
        read(root, "proc/irq/36/smp_affinity_list"),
        "0-3\n",
        "the disk's IRQ is not the NIC's"
    );
    assert_eq!(read(root, "sys/class/net/eth0/queues/rx-1/rps_cpus"), "1");
    assert!(read(root, "etc/security/limits.d/90-tickcore.conf").contains("memlock"));
    // The second apply found nothing to change, so the saved values are still the originals.
    let saved = read(root, "var/lib/tickcore-host-tuning/network.saved");
    assert!(
        saved.contains("somaxconn\t128\n"),
        "the value from before the first apply: {saved}"
    );

    let dry = run("all.sh", &args("revert", &["--dry-run"]));
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(text(&dry).contains("rm -f"), "{}", text(&dry));
    let revert = run("all.sh", &args("revert", &[]));
    assert_eq!(revert.status.code(), Some(0), "{}", text(&revert));
    let mut after = snapshot(root);
    // Values come back without the kernel's trailing newline (as `echo -n` would write them): compare
    // the normalized contents, and that nothing was added or left behind.
    let norm = |v: &Vec<u8>| {
        String::from_utf8_lossy(v)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    after.retain(|p, _| !p.starts_with(root.join("var")));
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "same files"
    );
    for (p, v) in &before {
        let want = if p.ends_with("scheduler") {
            "mq-deadline".to_string()
        } else if p.ends_with("transparent_hugepage/enabled") {
            "always".to_string()
        } else {
            norm(v)
        };
        assert_eq!(norm(&after[p]), want, "{} restored", p.display());
    }
    let check = run("all.sh", &args("check", &[]));
    assert_eq!(check.status.code(), Some(1), "differs again after revert");
}

#[test]
fn check_runs_on_this_host_and_engine_cpus_recommends_a_list() {
    let check = run("all.sh", &["check"]);
    assert!(
        matches!(check.status.code(), Some(0 | 1)),
        "check on the real host: {}",
        text(&check)
    );
    let dry = run("all.sh", &["apply", "--dry-run"]);
    assert!(matches!(dry.status.code(), Some(0 | 1)), "{}", text(&dry));
    let d = tempfile::tempdir().unwrap();
    scratch_host(d.path());
    let cpus = run("engine-cpus.sh", &["--root", d.path().to_str().unwrap()]);
    assert!(
        text(&cpus).contains("run: tickcore --cpus 1,2,3"),
        "{}",
        text(&cpus)
    );
    let bad = run("network.sh", &["bogus"]);
    assert_eq!(bad.status.code(), Some(2), "unknown mode is a usage error");
}
