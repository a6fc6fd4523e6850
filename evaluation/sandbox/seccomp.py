"""A seccomp filter for the program under test: no new processes, no exec, no sockets, no kernel attack surface.

Installed by the runner, after its own setup and before the program's first line, through `prctl` (ctypes,
standard library only, as this runs inside the sandbox). It holds in every isolation mode, and a filter
cannot be lifted once set. Calls on the list fail with EPERM, so Python raises PermissionError; a call
from a foreign ABI (i386's `int 0x80`, x32) kills the process, since its numbers mean other calls.
"""

from __future__ import annotations

import ctypes
import os
import struct

EPERM, ENOSYS = 1, 38
RET_KILL_PROCESS, RET_ERRNO, RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
LOAD_WORD, JUMP_EQUAL, JUMP_AT_LEAST, RETURN = 0x20, 0x15, 0x35, 0x06
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
X32_BIT = 0x40000000

_REFUSED_NAMES = (
    "clone",
    "fork",
    "vfork",
    "execve",
    "execveat",
    "unshare",
    "setns",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "socket",
    "socketpair",
    "add_key",
    "request_key",
    "keyctl",
    "bpf",
    "userfaultfd",
    "perf_event_open",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
)
# (audit arch, call numbers); a name the arch lacks (aarch64 has no fork) is simply absent.
ARCHES = {
    "x86_64": (
        0xC000003E,
        {
            "clone": 56,
            "fork": 57,
            "vfork": 58,
            "execve": 59,
            "execveat": 322,
            "unshare": 272,
            "setns": 308,
            "ptrace": 101,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "mount": 165,
            "umount2": 166,
            "pivot_root": 155,
            "chroot": 161,
            "socket": 41,
            "socketpair": 53,
            "add_key": 248,
            "request_key": 249,
            "keyctl": 250,
            "bpf": 321,
            "userfaultfd": 323,
            "perf_event_open": 298,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "kexec_load": 246,
            "init_module": 175,
            "finit_module": 313,
            "delete_module": 176,
            "open_by_handle_at": 304,
            "name_to_handle_at": 303,
        },
    ),
    "aarch64": (
        0xC00000B7,
        {
            "clone": 220,
            "execve": 221,
            "execveat": 281,
            "unshare": 97,
            "setns": 268,
            "ptrace": 117,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "mount": 40,
            "umount2": 39,
            "pivot_root": 41,
            "chroot": 51,
            "socket": 198,
            "socketpair": 199,
            "add_key": 217,
            "request_key": 218,
            "keyctl": 219,
            "bpf": 280,
            "userfaultfd": 282,
            "perf_event_open": 241,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "kexec_load": 104,
            "init_module": 105,
            "finit_module": 273,
            "delete_module": 106,
            "open_by_handle_at": 265,
            "name_to_handle_at": 264,
        },
    ),
}
CLONE3 = 435  # the same number on both: ENOSYS, so the C library falls back to clone, which is refused


def supported() -> bool:
    return os.uname().machine in ARCHES


def _instruction(code: int, jump_true: int, jump_false: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jump_true, jump_false, k)


def filter_program(machine: str | None = None) -> bytes:
    """The classic-BPF program for this machine's arch (seccomp_data: nr at offset 0, arch at offset 4)."""
    arch, numbers = ARCHES[machine or os.uname().machine]
    program = [
        _instruction(LOAD_WORD, 0, 0, 4),
        _instruction(JUMP_EQUAL, 1, 0, arch),
        _instruction(RETURN, 0, 0, RET_KILL_PROCESS),
        _instruction(LOAD_WORD, 0, 0, 0),
    ]
    if arch == ARCHES["x86_64"][0]:
        program += [_instruction(JUMP_AT_LEAST, 0, 1, X32_BIT), _instruction(RETURN, 0, 0, RET_KILL_PROCESS)]
    program += [_instruction(JUMP_EQUAL, 0, 1, CLONE3), _instruction(RETURN, 0, 0, RET_ERRNO | ENOSYS)]
    for name in _REFUSED_NAMES:
        if name in numbers:
            program += [_instruction(JUMP_EQUAL, 0, 1, numbers[name]), _instruction(RETURN, 0, 0, RET_ERRNO | EPERM)]
    return b"".join(program + [_instruction(RETURN, 0, 0, RET_ALLOW)])


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(program: bytes | None = None, libc=None) -> None:
    """Install the filter on this process (and anything it could ever start); raises OSError if the kernel refuses.
    A zygote passes `program` and `libc` made once, so each fork spends no time on them."""
    program = program or filter_program()
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc = libc or ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
