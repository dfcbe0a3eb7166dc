#!/usr/bin/python3
"""Runs a command under a seccomp profile in Docker's JSON format, the way the container runtime would apply it,
without Docker: docker/run_confined.py PROFILE.json COMMAND [ARG...]

Needs libseccomp's Python binding (Debian: python3-seccomp, for /usr/bin/python3). Used by tests/docker_profile.rs
to show that the engine serves under docker/seccomp-io_uring.json and that denied calls are refused.
Handles what that profile uses: the default action with its errno, ALLOW and ERRNO rules, and argument
comparisons with SCMP_CMP_MASKED_EQ / EQ / NE.
"""
import json
import os
import sys

import seccomp


def action(name, errno, default_errno):
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(errno if errno is not None else default_errno)
    raise SystemExit(f"run_confined: unsupported action {name}")


def arg(a):
    ops = {"SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ, "SCMP_CMP_EQ": seccomp.EQ, "SCMP_CMP_NE": seccomp.NE}
    op = ops[a["op"]]
    if op == seccomp.MASKED_EQ:
        return seccomp.Arg(a["index"], op, a["value"], a.get("valueTwo", 0))
    return seccomp.Arg(a["index"], op, a["value"])


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    prof = json.load(open(sys.argv[1]))
    default_errno = prof.get("defaultErrnoRet", 1)
    f = seccomp.SyscallFilter(defaction=action(prof["defaultAction"], None, default_errno))
    for rule in prof["syscalls"]:
        act = action(rule["action"], rule.get("errnoRet"), default_errno)
        for name in rule["names"]:
            try:
                f.add_rule(act, name, *[arg(a) for a in rule.get("args", [])])
            except (RuntimeError, ValueError):
                pass  # a name this libseccomp or architecture does not know (Docker skips those too)
    f.load()
    os.execvp(sys.argv[2], sys.argv[2:])


main()
