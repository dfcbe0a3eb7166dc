#!/usr/bin/env python3
"""Writes docker/seccomp-io_uring.json: a seccomp profile in Docker's format for tickcore's containers.

Docker's default profile (moby v25+, PR #46762) refuses io_uring_setup/enter/register, which glommio needs. This
profile keeps every denial that Docker's documentation lists for its default profile ("Significant syscalls
blocked by the default profile", docs.docker.com/engine/security/seccomp/) and allows io_uring:

- default action: EPERM;
- allowed: every x86_64 system call of the kernel headers this runs with, except the DENIED list below;
- clone: allowed only without namespace-creating flags (as Docker does), clone3: ENOSYS so libc falls back
  to clone (Docker does the same: its arguments cannot be filtered);
- io_uring_setup, io_uring_enter, io_uring_register: allowed.

Usage: docker/make_seccomp.py [UNISTD_64_H] > docker/seccomp-io_uring.json
"""
import json
import re
import sys

# Docker's documented list of syscalls its default profile blocks (plus the newer mount API and module calls
# it allows only with CAP_SYS_ADMIN / CAP_SYS_MODULE, which tickcore's containers do not get).
DENIED = sorted("""
acct add_key bpf clock_adjtime clock_settime create_module delete_module finit_module get_kernel_syms
get_mempolicy init_module ioperm iopl kcmp kexec_file_load kexec_load keyctl lookup_dcookie mbind mount
move_pages name_to_handle_at nfsservctl open_by_handle_at perf_event_open personality pivot_root
process_vm_readv process_vm_writev ptrace query_module quotactl quotactl_fd reboot request_key set_mempolicy
setns settimeofday stime swapon swapoff sysfs _sysctl umount umount2 unshare uselib userfaultfd ustat vm86
vm86old fsconfig fsmount fsopen fspick move_mount open_tree mount_setattr syslog vhangup
""".split())

IO_URING = ["io_uring_setup", "io_uring_enter", "io_uring_register"]
# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
CLONE_NAMESPACE_FLAGS = 0x7E020000
ENOSYS = 38


def syscalls(header):
    names = set()
    with open(header) as f:
        for line in f:
            m = re.match(r"#define __NR_(\w+)\s+\d+", line)
            if m:
                names.add(m.group(1))
    return names


def profile(names):
    allowed = sorted(names - set(DENIED) - set(IO_URING) - {"clone", "clone3"})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        ],
        "syscalls": [
            {"names": allowed, "action": "SCMP_ACT_ALLOW"},
            {"names": IO_URING, "action": "SCMP_ACT_ALLOW",
             "comment": "glommio's io_uring rings (Docker's default refuses these since moby v25)"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
             "comment": "threads and processes, no new namespaces"},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS,
             "comment": "arguments cannot be filtered: ENOSYS makes libc use clone"},
        ],
    }


if __name__ == "__main__":
    header = sys.argv[1] if len(sys.argv) > 1 else "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
    json.dump(profile(syscalls(header)), sys.stdout, indent=1)
    sys.stdout.write("\n")
