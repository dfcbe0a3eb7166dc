//! The command line: `--help` documents every flag, and a flag beats its `TICKCORE_*` variable, which beats
//! the default.
mod common;
use common::*;

#[test]
fn help_documents_every_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickcore"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--data-dir",
        "--cpus",
        "--durability",
        "--max-body",
        "--retention",
        "--report-interval",
        "--backlog",
        "--checkpoint-interval",
        "TICKCORE_LISTEN",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn flag_beats_environment_beats_default() {
    let body = msg("cli", now_ns(), 1.0); // about 100 bytes
    std::env::set_var("TICKCORE_MAX_BODY", "50");
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0", &[]);
    assert_eq!(
        e.post(&body).status,
        413,
        "the environment lowers the default limit"
    );
    drop(e);
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0", &["--max-body", "1000"]);
    assert_eq!(e.post(&body).status, 204, "the flag beats the environment");
    std::env::remove_var("TICKCORE_MAX_BODY");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickcore"))
        .args(["--cpus", "0-999"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--cpus names CPU"),
        "a clear error for a bad CPU list"
    );
}

/// Size flags are refused, with the flag named, where their byte count would overflow (2^44 MiB once became a
/// log bound of 0 that refused every write; a 16 EB body limit wrapped the wire limit) or where they are 0; the
/// largest accepted ones start and take writes.
#[test]
fn size_flags_past_their_range_are_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    for (flag, bads) in [
        (
            "--max-log-mib",
            ["0", "17592186044416", "18446744073709551615"],
        ),
        (
            "--read-cache-mib",
            ["0", "17592186044416", "18446744073709551615"],
        ),
        // A body limit past 4 GiB once wrapped the connection's wire limit: every POST got 413.
        ("--max-body", ["0", "4294967297", "16397105843297364600"]),
        ("--io-memory-kib", ["0", "16777217", "18446744073709551615"]),
    ] {
        for bad in bads {
            let err = match try_start(d.path(), "0", &[flag, bad]) {
                Ok(_) => panic!("{flag} {bad} was accepted"),
                Err(err) => err,
            };
            assert!(
                err.contains(flag) && err.contains(bad),
                "{flag} {bad}: {err}"
            );
        }
    }
    for (flag, most) in [
        ("--max-log-mib", "1073741824"),
        ("--read-cache-mib", "1073741824"),
        ("--max-body", "4294967296"),
    ] {
        let e = start(d.path(), "0", &[flag, most]);
        assert_eq!(e.post(&msg("big-bound", now_ns(), 1.0)).status, 204);
        assert_eq!(e.terminate(), 0);
    }
}
