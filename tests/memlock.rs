//! Locked memory: without CAP_IPC_LOCK and under a low `prlimit --memlock`, the engine refuses to start and
//! says what to raise (a process holding CAP_IPC_LOCK is never charged, so the test drops it with setpriv);
//! with enough it starts and reports its budget; holding the capability it starts under any limit and says
//! the limit does not apply. Needs util-linux's prlimit and setpriv.
mod common;
use common::*;

fn has_cap_ipc_lock() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_string();
    u64::from_str_radix(&hex, 16).unwrap() & (1 << 14) != 0
}

/// Runs the engine under a memlock limit of `kib`, without CAP_IPC_LOCK.
fn limited(kib: u64) -> Vec<String> {
    let bytes = kib * 1024;
    let mut l = vec!["prlimit".to_string(), format!("--memlock={bytes}:{bytes}")];
    if has_cap_ipc_lock() {
        l.extend(
            [
                "setpriv",
                "--inh-caps=-ipc_lock",
                "--bounding-set=-ipc_lock",
            ]
            .map(String::from),
        );
    }
    l
}

#[test]
fn a_low_memlock_limit_is_reported_with_what_to_raise() {
    let d = tempfile::tempdir().unwrap();
    // 2 cores x (1024 + 512) KiB are needed; 1 MiB is not enough.
    let launcher = limited(1024);
    let l: Vec<&str> = launcher.iter().map(String::as_str).collect();
    let err = match try_start_via(&l, d.path(), "0,1", &[]) {
        Ok(_) => panic!("started under a 1 MiB memlock limit without CAP_IPC_LOCK"),
        Err(e) => e,
    };
    assert!(
        err.contains(
            "RLIMIT_MEMLOCK is 1024 KiB but 2 cores with --io-memory-kib 1024 need 3072 KiB"
        ) && err.contains("ulimit -l 3072"),
        "{err}"
    );

    // Enough for one core with less io memory: it starts and says its budget.
    let launcher = limited(1024);
    let l: Vec<&str> = launcher.iter().map(String::as_str).collect();
    let e = try_start_via(&l, d.path(), "0", &["--io-memory-kib", "512"]).expect("fits 1 MiB");
    assert_eq!(e.get("/health").status, 200);
    assert!(
        e.stdout
            .iter()
            .any(|l| l
                == "locked memory: 1024 KiB for 1 io_uring executors; RLIMIT_MEMLOCK 1024 KiB"),
        "{:?}",
        e.stdout
    );
}

#[test]
fn cap_ipc_lock_is_not_charged_but_glommios_floor_holds() {
    if !has_cap_ipc_lock() {
        // Not root: nothing to show here; the charged case is covered above.
        return;
    }
    let d = tempfile::tempdir().unwrap();
    // 512 KiB is far below the 3 MiB two cores lock: not charged with the capability.
    let e = try_start_via(
        &["prlimit", "--memlock=524288:524288"],
        d.path(),
        "0,1",
        &[],
    )
    .expect("CAP_IPC_LOCK is not charged");
    assert_eq!(e.get("/health").status, 200);
    assert!(
        e.stdout
            .iter()
            .any(|l| l.ends_with("RLIMIT_MEMLOCK 512 KiB, not charged (CAP_IPC_LOCK)")),
        "{:?}",
        e.stdout
    );
    drop(e);
    // Below glommio's own 512 KiB floor even the capability does not help: said before any executor starts.
    let err = match try_start_via(&["prlimit", "--memlock=262144:262144"], d.path(), "0", &[]) {
        Ok(_) => panic!("started under 256 KiB"),
        Err(e) => e,
    };
    assert!(
        err.contains("RLIMIT_MEMLOCK is 256 KiB, below the 512 KiB glommio requires"),
        "{err}"
    );
}
