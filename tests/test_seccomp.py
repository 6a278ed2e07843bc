"""Seccomp (issue 11 item 4, drivers/seccomp.py): Docker's default profile as an allow-list.

Three layers. The compiled filter is run by a small classic-BPF interpreter here, for every
ABI (x86_64, x32, i386, aarch64), against what the profile says: this is where the old
deny-list is kept as the oracle of what must stay denied. Then the filter is installed in a
child process of the host, whose calls reach the kernel through the native, x32 and i386
(int 0x80) entry points. Then containers from the real CLI: EPERM outside the allow-list,
busybox's whole applet set, --cap-add, profile files, malformed ones, unconfined.
"""
import errno
import json
import os
import platform
import re
import subprocess
import sys

import pytest

from drivers import linux, runconfig, seccomp, syscalltable
from drivers.errdefs import InvalidParameter
# Fixtures: pytest finds them by name in this module (every container goes after each test).
from containers_support import busybox_archive, daemon, no_containers_left  # noqa: F401
from containers_support import err, out, run
from conftest import REPO
from network_support import PYTHON_IN_CONTAINER

# The deny-list pydockerd installed before the allow-list, with the capability that lifted
# each entry (None: never): every one of them must still be refused by default.
OLD_DENY_LIST = {
    "keyctl": None, "add_key": None, "request_key": None, "userfaultfd": None,
    "io_uring_setup": None, "io_uring_enter": None, "io_uring_register": None,
    "pivot_root": None, "swapon": None, "swapoff": None,
    "mount": "CAP_SYS_ADMIN", "umount2": "CAP_SYS_ADMIN", "unshare": "CAP_SYS_ADMIN",
    "setns": "CAP_SYS_ADMIN", "open_tree": "CAP_SYS_ADMIN", "move_mount": "CAP_SYS_ADMIN",
    "fsopen": "CAP_SYS_ADMIN", "fsconfig": "CAP_SYS_ADMIN", "fsmount": "CAP_SYS_ADMIN",
    "fspick": "CAP_SYS_ADMIN", "mount_setattr": "CAP_SYS_ADMIN", "bpf": "CAP_SYS_ADMIN",
    "perf_event_open": "CAP_SYS_ADMIN", "open_by_handle_at": "CAP_DAC_READ_SEARCH",
    "reboot": "CAP_SYS_BOOT", "kexec_load": "CAP_SYS_BOOT", "kexec_file_load": "CAP_SYS_BOOT",
    "init_module": "CAP_SYS_MODULE", "finit_module": "CAP_SYS_MODULE",
    "delete_module": "CAP_SYS_MODULE", "acct": "CAP_SYS_PACCT", "syslog": "CAP_SYSLOG",
}
DEFAULT_CAPS = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
ALLOW, EPERM = 0x7FFF0000, 0x00050000 | errno.EPERM
ENOSYS = 0x00050000 | errno.ENOSYS
AUDIT = {"x86_64": 0xC000003E, "x32": 0xC000003E, "i386": 0x40000003, "aarch64": 0xC00000B7}
MACHINE = {"x86_64": "x86_64", "x32": "x86_64", "i386": "x86_64", "aarch64": "aarch64"}
ABIS = sorted(AUDIT)


# --- a classic BPF interpreter -----------------------------------------------------------------

def evaluate(program, arch, nr, args=()):
    """What the filter returns for one call: seccomp_data packed as the kernel does (LE)."""
    args = list(args) + [0] * (6 - len(args))
    words = {0: nr, 4: arch}
    for index, value in enumerate(args):
        words[16 + 8 * index] = value & 0xFFFFFFFF
        words[20 + 8 * index] = value >> 32
    accumulator, at = 0, 0
    while True:
        op, jt, jf, k = program[at]
        at += 1
        if op == 0x20:
            accumulator = words[k]
        elif op == 0x54:
            accumulator &= k
        elif op == 0x05:
            at += k
        elif op == 0x06:
            return k
        else:
            holds = {0x15: accumulator == k, 0x25: accumulator > k, 0x35: accumulator >= k}[op]
            at += jt if holds else jf


def decide(abi, name, args=(), caps=DEFAULT_CAPS, profile=None):
    program = seccomp.compile_filter(profile or seccomp.DEFAULT_PROFILE, set(caps), MACHINE[abi])
    return evaluate(program, AUDIT[abi], syscalltable.syscall_numbers(abi)[name], args)


@pytest.mark.parametrize("abi", ABIS)
def test_every_call_of_the_old_deny_list_is_still_refused_by_default(abi):
    numbers = syscalltable.syscall_numbers(abi)
    refused = [name for name in OLD_DENY_LIST if name in numbers]
    assert len(refused) > 25
    assert {name: decide(abi, name) for name in refused} == dict.fromkeys(refused, EPERM)


@pytest.mark.parametrize("abi", ABIS)
def test_the_capability_docker_names_lifts_the_refusal(abi):
    numbers = syscalltable.syscall_numbers(abi)
    for name, cap in OLD_DENY_LIST.items():
        if cap and name in numbers and name not in ("kexec_load", "kexec_file_load"):
            assert decide(abi, name, caps=DEFAULT_CAPS | {cap}) == ALLOW, name
    # Docker's profile keeps kexec refused even with CAP_SYS_BOOT.
    assert decide(abi, "kexec_load", caps=DEFAULT_CAPS | {"CAP_SYS_BOOT"}) == EPERM


@pytest.mark.parametrize("abi", ABIS)
def test_the_allow_list_lets_ordinary_calls_through_and_refuses_the_rest(abi):
    for name in ("read", "write", "execve", "exit_group", "openat", "futex", "rt_sigaction"):
        assert decide(abi, name) == ALLOW, name
    for name in ("acct", "quotactl", "vhangup", "lookup_dcookie", "kcmp"):
        assert decide(abi, name) == EPERM, name


@pytest.mark.parametrize("abi", ABIS)
def test_clone_is_refused_namespace_flags_and_clone3_answers_enosys(abi):
    assert decide(abi, "clone", [0x11]) == ALLOW  # SIGCHLD: a plain fork
    for flag in (0x00020000, 0x10000000, 0x40000000):
        assert decide(abi, "clone", [flag | 0x11]) == EPERM
    assert decide(abi, "clone", [0x10000011], caps=DEFAULT_CAPS | {"CAP_SYS_ADMIN"}) == ALLOW
    assert decide(abi, "clone3") == ENOSYS
    assert decide(abi, "clone3", caps=DEFAULT_CAPS | {"CAP_SYS_ADMIN"}) == ALLOW


@pytest.mark.parametrize("abi", ABIS)
def test_socket_families_and_personality_values(abi):
    if "socket" in syscalltable.syscall_numbers(abi):  # i386 reaches socket via socketcall too
        for family in (1, 2, 10, 16, 37, 39, 41, 45):
            assert decide(abi, "socket", [family]) == ALLOW, family
        assert decide(abi, "socket", [38]) == EPERM  # AF_ALG
        assert decide(abi, "socket", [40]) == EPERM  # AF_VSOCK
    for value in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF):
        assert decide(abi, "personality", [value]) == ALLOW
    for value in (1, 0x0400000, 0xFFFFFFFF | 1 << 32):
        assert decide(abi, "personality", [value]) == EPERM


def test_arch_specific_entries():
    assert decide("x86_64", "arch_prctl") == ALLOW and decide("i386", "modify_ldt") == ALLOW
    assert decide("i386", "arch_prctl") == ALLOW  # includes.arches is the native one's name


def test_an_abi_the_profile_does_not_name_gets_enosys():
    program = seccomp.compile_filter(seccomp.DEFAULT_PROFILE, DEFAULT_CAPS, "x86_64")
    assert evaluate(program, 0x40000028, 20) == ENOSYS  # AUDIT_ARCH_ARM
    native_only = dict(seccomp.DEFAULT_PROFILE, archMap=[])
    program = seccomp.compile_filter(native_only, DEFAULT_CAPS, "x86_64")
    assert evaluate(program, AUDIT["i386"], 20) == ENOSYS
    assert evaluate(program, AUDIT["x32"], syscalltable.X32_SYSCALL_BIT | 39) == ENOSYS
    assert evaluate(program, AUDIT["x86_64"], 39) == ALLOW


OPS = {"SCMP_CMP_EQ": lambda a, v, w: a == v, "SCMP_CMP_NE": lambda a, v, w: a != v,
       "SCMP_CMP_LT": lambda a, v, w: a < v, "SCMP_CMP_LE": lambda a, v, w: a <= v,
       "SCMP_CMP_GT": lambda a, v, w: a > v, "SCMP_CMP_GE": lambda a, v, w: a >= v,
       "SCMP_CMP_MASKED_EQ": lambda a, v, w: a & v == w}
SAMPLES = [0, 1, 0xFFFFFFFF, 1 << 32, (1 << 32) + 1, (5 << 32) + 7, (5 << 32) + 8,
           (4 << 32) + 0xFFFFFFFF, (1 << 64) - 1]


@pytest.mark.parametrize("op", sorted(OPS))
def test_64_bit_comparisons_split_in_halves_agree_with_python(op):
    for value in ((5 << 32) + 7, 1, 0xFFFFFFFF):
        profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 2, "value": value, "valueTwo": 1 << 32 | 1, "op": op}]}]}
        program = seccomp.compile_filter(seccomp.load_profile(json.dumps(profile)), set(),
                                         "x86_64")
        for arg in SAMPLES:
            expected = ALLOW if OPS[op](arg, value, 1 << 32 | 1) else EPERM
            assert evaluate(program, AUDIT["x86_64"], 39, [0, 0, arg]) == expected, (value, arg)


def test_several_args_of_one_entry_must_all_match():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13, "syscalls": [
        {"name": "kill", "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                  {"index": 1, "value": 9, "op": "SCMP_CMP_NE"}]}]}
    program = seccomp.compile_filter(seccomp.load_profile(json.dumps(profile)), set(), "x86_64")
    assert evaluate(program, AUDIT["x86_64"], 62, [1, 15]) == ALLOW
    assert evaluate(program, AUDIT["x86_64"], 62, [1, 9]) == 0x00050000 | errno.EACCES
    assert evaluate(program, AUDIT["x86_64"], 62, [2, 15]) == 0x00050000 | errno.EACCES


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_programs_fit_the_kernel_limit_even_with_every_capability(machine):
    every = set(DEFAULT_CAPS) | {cap for entry in seccomp.DEFAULT_PROFILE["syscalls"]
                                 for cap in (entry.get("includes") or {}).get("caps", [])}
    for caps in (set(), DEFAULT_CAPS, every):
        program = seccomp.compile_filter(seccomp.DEFAULT_PROFILE, caps, machine)
        assert len(program) <= seccomp.BPF_MAXINSNS
        for at, (op, jt, jf, k) in enumerate(program):
            if op != 0x06:  # every jump lands on a later instruction of the program
                assert at + 1 + max(jt, jf, k if op == 0x05 else 0) < len(program)


def test_no_filter_on_a_machine_without_tables_or_for_an_empty_profile():
    assert seccomp.supported("x86_64") and not seccomp.supported("mips")
    assert seccomp.compile_filter(seccomp.DEFAULT_PROFILE, set(), "mips") is None
    assert seccomp.compile_filter(seccomp.load_profile("{}"), set(), "x86_64") is None


# --- profiles dockerd refuses ------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("{not json", "Decoding seccomp profile failed: "),
    ("[]", "Decoding seccomp profile failed: the profile is not a JSON object"),
    ('{"defaultAction": "SCMP_ACT_EXPLODE"}', "unknown seccomp action 'SCMP_ACT_EXPLODE'"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"], "archMap": '
     '[{"architecture": "SCMP_ARCH_X86_64"}]}', "both 'architectures' and 'archMap'"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]}',
     "unknown architecture 'SCMP_ARCH_Z80'"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "a", "names": ["b"], '
     '"action": "SCMP_ACT_ALLOW"}]}', "both 'name' and 'names'"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": '
     '"SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}',
     "args index 6 is not 0 to 5"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": '
     '"SCMP_ACT_ALLOW", "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}',
     "args value -1 is not a 64-bit number"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": '
     '"SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}',
     "unknown comparison operator 'SCMP_CMP_ABOUT'"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": '
     '"SCMP_ACT_ALLOW", "includes": {"minKernel": "four"}}]}', "invalid kernel version"),
])
def test_a_malformed_profile_is_refused(text, message):
    with pytest.raises(seccomp.ProfileError, match=re.escape(message)):
        seccomp.load_profile(text)


def test_the_syscall_tables_agree_with_the_hosts_kernel_headers():
    headers = "/usr/include/x86_64-linux-gnu/asm/"
    if not os.path.isdir(headers):
        pytest.skip("no kernel headers on this host")
    for abi, name in (("x86_64", "unistd_64.h"), ("i386", "unistd_32.h"), ("x32", "unistd_x32.h")):
        with open(headers + name) as f:
            listed = {m.group(1): m.group(2) for m in re.finditer(
                r"#define __NR_(\w+) (?:\(__X32_SYSCALL_BIT \+ )?(\d+)", f.read())}
        base = syscalltable.X32_SYSCALL_BIT if abi == "x32" else 0
        table = syscalltable.syscall_numbers(abi)
        assert {n: table.get(n) for n in listed} == {n: base + int(v) for n, v in listed.items()}



def test_the_daemons_raw_syscalls_are_numbered_on_every_machine_it_knows():
    """drivers/linux.py takes pivot_root, capget, capset, rt_sigaction and bpf from these tables."""
    raw = ("pivot_root", "capget", "capset", "rt_sigaction", "bpf")
    for machine in ("x86_64", "aarch64", "riscv64", "armv7l", "ppc64le", "s390x"):
        assert set(raw) <= set(syscalltable.machine_syscall_numbers(machine)), machine
    assert [syscalltable.machine_syscall_numbers("x86_64")[name] for name in raw] == \
        [155, 125, 126, 13, 321]
    assert syscalltable.machine_syscall_numbers("riscv64")["pivot_root"] == 41  # asm-generic
    assert syscalltable.machine_syscall_numbers("s390x")["bpf"] == 351
    assert syscalltable.machine_syscall_numbers("mips") == {}
    host = syscalltable.machine_syscall_numbers(platform.machine())
    assert linux.syscall_number("capset") == host["capset"]


# --- the filter in the kernel, in a child of the host ----------------------------------------

CHILD = r"""
import ctypes, json, mmap, os, sys
sys.path.insert(0, %(repo)r)
from drivers import runconfig, seccomp, syscalltable
from drivers.errdefs import InvalidParameter
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def native(name, *args):
    result = libc.syscall(ctypes.c_long(NUMBERS[name]), *[ctypes.c_long(a) for a in args])
    return 0 if result >= 0 else ctypes.get_errno()

def x32(name):
    number = syscalltable.syscall_numbers("x32")[name]
    return 0 if libc.syscall(ctypes.c_long(number), ctypes.c_long(-1)) >= 0 else ctypes.get_errno()

def i386(name, ebx):
    # mov eax, nr; mov ebx, arg; int 0x80; ret (with ebx saved): the i386 ABI from here.
    number = syscalltable.syscall_numbers("i386")[name]
    code = (b"\x53\xb8" + number.to_bytes(4, "little") + b"\xbb" + ebx.to_bytes(4, "little")
            + b"\xcd\x80\x5b\xc3")
    page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    call = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    result = call()
    return 0 if result >= 0 else -result

NUMBERS = syscalltable.syscall_numbers("x86_64")
if sys.argv[1] == "filtered":
    seccomp.install(seccomp.compile_filter(seccomp.DEFAULT_PROFILE, set()))
print(json.dumps({
    "getpid": native("getpid"), "keyctl": native("keyctl", 9999),
    "add_key": native("add_key", 1, 1, 1, 1, -1), "unshare": native("unshare", 0),
    "setns": native("setns", -1, 0), "bpf": native("bpf", -1, 0, 0),
    "mount": native("mount", 1, 1, 1, 0, 0), "pivot_root": native("pivot_root", 1, 1),
    "userfaultfd": native("userfaultfd", -1), "io_uring_setup": native("io_uring_setup", 0, 1),
    "personality": native("personality", 0xFFFFFFFF),
    "x32 keyctl": x32("keyctl"), "x32 getpid": x32("getpid"),
    "i386 getpid": i386("getpid", 0), "i386 unshare": i386("unshare", 0),
    "i386 keyctl": i386("keyctl", 9999)}))
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="int 0x80 and x32 are x86_64's")
@pytest.mark.skipif(os.geteuid() != 0, reason="installing without no_new_privs needs root")
def test_the_kernel_enforces_the_filter_on_all_three_x86_abis():
    def child(mode):
        result = subprocess.run([sys.executable, "-c", CHILD % {"repo": REPO}, mode],
                                stdout=subprocess.PIPE, check=True, timeout=30)
        return json.loads(result.stdout)

    free, filtered = child("free"), child("filtered")
    refused = ["keyctl", "add_key", "unshare", "setns", "bpf", "mount", "pivot_root",
               "userfaultfd", "io_uring_setup", "x32 keyctl", "i386 unshare", "i386 keyctl"]
    # Without the filter none of them fails with EPERM (root, invalid arguments), so each
    # EPERM below is the filter's.
    assert [name for name in refused if free[name] == errno.EPERM] == []
    assert {name: filtered[name] for name in refused} == dict.fromkeys(refused, errno.EPERM)
    for name in ("getpid", "personality", "i386 getpid"):
        assert filtered[name] == 0, name
    assert filtered["x32 getpid"] == free["x32 getpid"]  # ENOSYS without x32 in the kernel


# --- containers from the real CLI --------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

PROBE = r"""
import ctypes, json, socket
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    args = [ctypes.c_long(nr)] + [ctypes.c_ulong(a & (1 << 64) - 1) for a in args]
    return 0 if libc.syscall(*args) >= 0 else ctypes.get_errno()
def family(number):
    try:
        socket.socket(number, socket.SOCK_SEQPACKET if number == 38 else socket.SOCK_STREAM).close()
        return 0
    except OSError as e:
        return e.errno
print(json.dumps({"keyctl": call(250, 9999), "add_key": call(248, 1, 1, 1, 1, -1),
                  "unshare_user": call(272, 0x10000000), "personality_1": call(135, 1),
                  "personality_query": call(135, 0xFFFFFFFF), "getpid": call(39),
                  "alg": family(38), "vsock": family(40), "unix": family(1)}))
"""


def probe(daemon, *options):
    result = run(daemon, "--rm", *PYTHON_IN_CONTAINER, *options, "busybox",
                 "/usr/bin/python3", "-c", PROBE)
    return json.loads(out(result))


@needs_root
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the probe uses x86_64 numbers")
def test_calls_outside_the_allow_list_fail_with_eperm_in_a_container(daemon):  # noqa: F811
    confined, unconfined = probe(daemon), probe(daemon, "--security-opt", "seccomp=unconfined")
    for name in ("keyctl", "add_key", "unshare_user", "personality_1", "alg", "vsock"):
        assert confined[name] == errno.EPERM, name
        assert unconfined[name] != errno.EPERM, name  # so the EPERM is the filter's
    assert confined["getpid"] == confined["personality_query"] == confined["unix"] == 0


def seccomp_mode(daemon, *options):
    return out(run(daemon, "--rm", *options, "busybox", "grep", "^Seccomp:", "/proc/self/status"))


@needs_root
def test_default_unconfined_and_privileged_modes(daemon):  # noqa: F811
    assert seccomp_mode(daemon).split() == ["Seccomp:", "2"]
    assert seccomp_mode(daemon, "--security-opt", "seccomp=unconfined").split()[1] == "0"
    assert seccomp_mode(daemon, "--privileged").split()[1] == "0"


@needs_root
def test_an_exec_gets_the_containers_filter(daemon):  # noqa: F811
    name = out(run(daemon, "-d", "busybox", "sleep", "60"))
    status = out(daemon.docker("exec", name, "grep", "^Seccomp:", "/proc/self/status"))
    assert status.split() == ["Seccomp:", "2"]


@needs_root
def test_cap_add_sys_admin_allows_unshare(daemon):  # noqa: F811
    refused = run(daemon, "--rm", "busybox", "unshare", "-m", "true", check=False)
    assert refused.returncode != 0 and "Operation not permitted" in err(refused)
    assert run(daemon, "--rm", "--cap-add", "SYS_ADMIN", "busybox", "unshare", "-m",
               "true").returncode == 0


@needs_root
def test_info_lists_seccomp_with_the_default_profile(daemon):  # noqa: F811
    assert "name=seccomp,profile=default" in json.loads(
        out(daemon.docker("info", "--format", "{{json .SecurityOptions}}")))
    text = out(daemon.docker("info"))
    assert re.search(r"Security Options:\n\s+seccomp\n\s+Profile: default", text), text


def profile_file(tmp_path, profile):
    path = tmp_path / "profile.json"
    path.write_text(profile if isinstance(profile, str) else json.dumps(profile))
    return "seccomp=%s" % path


@needs_root
def test_a_profile_file_can_allow_what_the_default_refuses(daemon, tmp_path):  # noqa: F811
    refused = run(daemon, "--rm", "busybox", "unshare", "-U", "true", check=False)
    assert refused.returncode != 0 and "Operation not permitted" in err(refused)
    profile = dict(seccomp.DEFAULT_PROFILE, syscalls=seccomp.DEFAULT_PROFILE["syscalls"] + [
        {"names": ["unshare"], "action": "SCMP_ACT_ALLOW"}])
    run(daemon, "--rm", "--security-opt", profile_file(tmp_path, profile), "busybox",
        "unshare", "-U", "true")


@needs_root
def test_a_profile_file_can_refuse_with_its_own_errno(daemon, tmp_path):  # noqa: F811
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS}]}
    result = run(daemon, "--rm", "--security-opt", profile_file(tmp_path, profile), "busybox",
                 "sh", "-c", "mkdir /tmp/d; touch /tmp/f && echo touched", check=False)
    assert "Read-only file system" in err(result) and out(result) == "touched"


@needs_root
def test_a_malformed_profile_is_refused_at_create(daemon, tmp_path):  # noqa: F811
    # The CLI checks the JSON syntax itself; the shape is the daemon's to check.
    malformed = '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {"names": ["kill"]}}'
    result = run(daemon, "--name", "badprofile", "--security-opt",
                 profile_file(tmp_path, malformed), "busybox", "true", check=False)
    assert result.returncode == 125
    assert "Decoding seccomp profile failed: syscalls is not a list" in err(result)
    assert out(daemon.docker("ps", "-aq", "--filter", "name=badprofile")) == ""
    response = daemon.request("POST", "/containers/create", body=json.dumps(
        {"Image": "busybox", "HostConfig": {"SecurityOpt": ['seccomp={"defaultAction": ']}}),
        headers={"Content-Type": "application/json"})
    assert response.status == 400 and b"Decoding seccomp profile failed" in response.body


# Applets left out of the sweep: they wait for input or a terminal even with --help, or would
# act on the daemon's machine if the sweep were wrong (none of them is run).
SKIPPED_APPLETS = {"init", "linuxrc", "halt", "poweroff", "reboot", "sh", "ash", "hush",
                   "getty", "login", "su", "sulogin", "cttyhack", "setsid", "nohup", "runsv",
                   "runsvdir", "svlogd", "chpst", "envdir", "softlimit", "setuidgid"}
# Harmless invocations that make the applets do their real work, not only print usage.
INVOCATIONS = [
    "ls -la /", "cat /etc/passwd", "date", "id", "uname -a", "ps", "df", "free", "uptime",
    "hostname", "whoami", "env", "find /etc /bin -maxdepth 1 -name b*", "du -s /bin", "stat /",
    "tar cf /tmp/t.tar /etc", "gzip -k /tmp/t.tar", "sha256sum /bin/busybox", "md5sum /etc/group",
    "sort /etc/passwd", "awk -F: '{print $1}' /etc/passwd", "sed -n 1p /etc/passwd",
    "grep root /etc/passwd", "wc -l /etc/passwd", "mkdir -p /tmp/a/b", "touch /tmp/a/f",
    "chmod 600 /tmp/a/f", "chown 1:1 /tmp/a/f", "ln -s /tmp/a/f /tmp/a/l", "cp -a /tmp/a /tmp/c",
    "mv /tmp/c /tmp/d", "rm -r /tmp/d", "mktemp", "sleep 0", "renice -n 1 $$",
    "ionice -c 3 true", "taskset -p 1", "mkfifo /tmp/fifo",
    "mknod /tmp/null c 1 3", "nproc", "netstat -an", "ip addr",
    "ip link", "top -bn1", "seq 3", "echo a | xargs echo", "time true", "kill -0 1", "pidof sh",
    "timeout 1 sleep 0", "readlink -f /proc/self/exe", "dd if=/dev/zero of=/tmp/z bs=1k count=8",
    "sync", "truncate -s 1 /tmp/z", "hexdump -C /tmp/z", "od -c /tmp/z",
    "tail -n 1 /etc/passwd", "head -c 4 /bin/busybox", "ping -c 1 -W 1 127.0.0.1", "mount",
    "dmesg", "unshare -m true", "getopt a -a", "nc -h", "wget --help", "vi --help",
]
SWEEP = r"""
for applet in $(busybox --list); do
    case " %(skipped)s " in *" $applet "*) continue;; esac
    busybox timeout 5 busybox $applet --help </dev/null >/dev/null 2>&1
    echo "$applet $?"
done
while read -r line; do
    sh -c "$line" </dev/null >/dev/null 2>&1
    echo "[$line] $?"
done <<'EOF'
%(invocations)s
EOF
"""


@needs_root
def test_busybox_whole_applet_set_runs_as_it_does_unconfined(daemon):  # noqa: F811
    script = SWEEP % {"skipped": " ".join(sorted(SKIPPED_APPLETS)),
                      "invocations": "\n".join(INVOCATIONS)}

    def sweep(*options):
        result = run(daemon, "--rm", *options, "busybox", "sh", "-c", script, timeout=300)
        return dict(line.rsplit(" ", 1) for line in out(result).splitlines())

    confined, unconfined = sweep(), sweep("--security-opt", "seccomp=unconfined")
    assert len(confined) > 300 and confined.keys() == unconfined.keys()
    killed = {name: code for name, code in confined.items() if int(code) >= 128}
    assert killed == {}
    assert [name for name, code in confined.items() if code == "127"] == []
    # The filter's refusals where the kernel alone lets root through: syslog (dmesg) is
    # capability-checked by the kernel too, so only unshare -U would differ; none asked here.
    differing = {name: (confined[name], unconfined[name]) for name in confined
                 if confined[name] != unconfined[name]}
    assert differing == {}


def test_a_profile_too_big_for_the_kernel_is_refused():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]} for value in range(100)]}
    with pytest.raises(seccomp.ProfileError, match="too many argument conditions"):
        seccomp.compile_filter(seccomp.load_profile(json.dumps(profile)), set(), "x86_64")
    profile["syscalls"] = [{"names": [name], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]} for name in syscalltable.syscall_numbers(
            "i386")] * 2
    with pytest.raises(seccomp.ProfileError, match="seccomp filter too long"):
        seccomp.compile_filter(seccomp.load_profile(json.dumps(profile)), set(), "x86_64")


def test_create_accepts_a_valid_profile_and_refuses_one_the_kernel_would_not_load():
    runconfig.check_security_opt("seccomp=" + json.dumps(seccomp.DEFAULT_PROFILE))
    huge = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]} for value in range(100)]}
    with pytest.raises(InvalidParameter, match="too many argument conditions"):
        runconfig.check_security_opt("seccomp=" + json.dumps(huge))


def test_the_security_opt_names_the_profile_the_container_gets():
    def profile(*options):
        return runconfig.seccomp_profile({"SecurityOpt": list(options)})

    text = '{"defaultAction": "SCMP_ACT_LOG"}'
    assert profile() == profile("seccomp=builtin") == profile("no-new-privileges") == ""
    assert profile("seccomp:unconfined") == "unconfined"
    assert profile("seccomp=unconfined", "seccomp=" + text) == text
    runconfig.check_security_opt("seccomp=builtin")
