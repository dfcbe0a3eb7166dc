//! docker/seccomp-io_uring.json: it allows glommio's io_uring calls, still refuses every call Docker's
//! documentation lists as blocked by its default profile, is what docker/make_seccomp.py generates, and the
//! real engine serves under it (applied with libseccomp, as a container runtime would, by
//! docker/run_confined.py) while denied calls fail. Needs /usr/bin/python3 with python3-seccomp (CI installs it).
mod common;
use std::path::Path;
use std::process::Command;

use common::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn profile() -> serde_json::Value {
    let text = std::fs::read_to_string(format!("{ROOT}/docker/seccomp-io_uring.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Names allowed by a rule with no argument conditions.
fn allowed_unconditionally(p: &serde_json::Value) -> Vec<String> {
    p["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "SCMP_ACT_ALLOW" && r.get("args").is_none())
        .flat_map(|r| r["names"].as_array().unwrap().iter())
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn allows_io_uring_and_keeps_dockers_documented_denials() {
    let p = profile();
    assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
    let allowed = allowed_unconditionally(&p);
    for call in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        assert!(allowed.iter().any(|a| a == call), "{call} allowed");
    }
    for call in [
        "read",
        "write",
        "openat",
        "fdatasync",
        "epoll_wait",
        "membarrier",
        "sched_setaffinity",
        "mmap",
    ] {
        assert!(allowed.iter().any(|a| a == call), "{call} allowed");
    }
    // docs.docker.com/engine/security/seccomp/, "Significant syscalls blocked by the default profile".
    for denied in [
        "acct",
        "add_key",
        "bpf",
        "clock_adjtime",
        "clock_settime",
        "create_module",
        "delete_module",
        "finit_module",
        "get_kernel_syms",
        "get_mempolicy",
        "init_module",
        "ioperm",
        "iopl",
        "kcmp",
        "kexec_file_load",
        "kexec_load",
        "keyctl",
        "lookup_dcookie",
        "mbind",
        "mount",
        "move_pages",
        "name_to_handle_at",
        "nfsservctl",
        "open_by_handle_at",
        "perf_event_open",
        "personality",
        "pivot_root",
        "process_vm_readv",
        "process_vm_writev",
        "ptrace",
        "query_module",
        "quotactl",
        "reboot",
        "request_key",
        "set_mempolicy",
        "setns",
        "settimeofday",
        "stime",
        "swapon",
        "swapoff",
        "sysfs",
        "_sysctl",
        "umount",
        "umount2",
        "unshare",
        "uselib",
        "userfaultfd",
        "ustat",
        "vm86",
        "vm86old",
    ] {
        let anywhere = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
            .any(|r| r["names"].as_array().unwrap().iter().any(|n| n == denied));
        assert!(!anywhere, "{denied} must stay denied");
    }
    // clone only without namespace flags; clone3 answered ENOSYS so libc falls back to clone.
    let rules = p["syscalls"].as_array().unwrap();
    let clone = rules.iter().find(|r| r["names"][0] == "clone").unwrap();
    assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
    assert_eq!(clone["args"][0]["value"], 0x7E02_0000u64);
    let clone3 = rules.iter().find(|r| r["names"][0] == "clone3").unwrap();
    assert_eq!(
        (clone3["action"].as_str(), clone3["errnoRet"].as_u64()),
        (Some("SCMP_ACT_ERRNO"), Some(38))
    );
}

#[test]
fn the_committed_profile_is_what_the_generator_writes() {
    let header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
    assert!(
        Path::new(header).exists(),
        "{header} (linux-libc-dev) is needed"
    );
    let out = run_ok(
        Command::new("python3")
            .arg(format!("{ROOT}/docker/make_seccomp.py"))
            .arg(header),
    );
    let generated: serde_json::Value = serde_json::from_str(&out).unwrap();
    let committed = profile();
    // The kernel headers may know newer calls than when the file was generated; every call the committed
    // profile allows must still be generated, and the rules other than the big allow list must be equal.
    let (g, c) = (
        allowed_unconditionally(&generated),
        allowed_unconditionally(&committed),
    );
    for name in &c {
        assert!(g.contains(name), "{name} dropped by the generator");
    }
    assert_eq!(
        generated["syscalls"].as_array().unwrap()[1..],
        committed["syscalls"].as_array().unwrap()[1..]
    );
    assert_eq!(generated["defaultAction"], committed["defaultAction"]);
}

fn confined() -> Vec<String> {
    let python = "/usr/bin/python3";
    let ok = Command::new(python)
        .args(["-c", "import seccomp"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{python} with the seccomp module is needed: apt-get install python3-seccomp"
    );
    vec![python.into(), format!("{ROOT}/docker/run_confined.py")]
}

#[test]
fn the_engine_serves_under_the_profile_and_denied_calls_fail() {
    let wrap = confined();
    let profile_path = format!("{ROOT}/docker/seccomp-io_uring.json");
    let launcher: Vec<&str> = wrap
        .iter()
        .map(String::as_str)
        .chain([profile_path.as_str()])
        .collect();
    let d = tempfile::tempdir().unwrap();
    let e =
        try_start_via(&launcher, d.path(), "0,1", &[]).expect("engine starts under the profile");
    let now = now_ns();
    assert_eq!(e.get("/health").status, 200);
    assert_eq!(e.post(&msg("sc", now, 3.5)).status, 204);
    let r = e.get(&format!(
        "/api?tag=sc&start={}&end={}&samples=1",
        now - 1000,
        now
    ));
    assert_eq!(r.json()["samples"][0]["values"][0].as_f64(), Some(3.5));
    drop(e);

    // The same wrapper refuses what the profile denies.
    for cmd in [
        &["unshare", "--user", "true"][..],
        &["mount", "-t", "tmpfs", "none", "/mnt"][..],
    ] {
        let out = Command::new(&launcher[0])
            .args(&launcher[1..])
            .args(cmd)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{cmd:?} must fail under the profile");
    }

    // Without the io_uring rule (Docker's own default since moby v25) the engine says what to do.
    let mut p = profile();
    p["syscalls"].as_array_mut().unwrap().retain(|r| {
        !r["names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "io_uring_setup")
    });
    let no_uring = d.path().join("no-uring.json");
    std::fs::write(&no_uring, p.to_string()).unwrap();
    let launcher: Vec<&str> = wrap
        .iter()
        .map(String::as_str)
        .chain([no_uring.to_str().unwrap()])
        .collect();
    let err = match try_start_via(&launcher, &d.path().join("data2"), "0", &[]) {
        Ok(_) => panic!("started without io_uring"),
        Err(e) => e,
    };
    assert!(
        err.contains("io_uring_setup is refused") && err.contains("seccomp-io_uring.json"),
        "{err}"
    );
}
