"""Seccomp: Docker's default profile and profile files, compiled to classic BPF.

Docker (moby profiles/seccomp, then runc through libseccomp) confines every container that
is not --privileged nor --security-opt seccomp=unconfined with an allow-list: the default
action answers ERRNO(EPERM), and only the calls of the profile run. pydockerd keeps that
profile as data (DEFAULT_PROFILE, the shape of Docker's default.json) and compiles it here
without libseccomp.

Profile (Docker's JSON format, what `--security-opt seccomp=<file>` sends: the CLI puts
the file's text in HostConfig.SecurityOpt as "seccomp=<json>"):
    defaultAction, defaultErrnoRet
    architectures: ["SCMP_ARCH_X86", ...]   or   archMap: [{architecture, subArchitectures}]
    syscalls: [{names | name, action, errnoRet, args: [{index, value, valueTwo, op}],
                includes: {caps, arches, minKernel}, excludes: {caps, arches, minKernel}}]
An entry applies when the container's capabilities hold all `includes.caps` and none of
`excludes.caps`, and when the native architecture (Go's name: amd64, arm64) is listed in
`includes.arches` and not in `excludes.arches` (setupSeccomp's rules). Names unknown to an
ABI are skipped, as runc does. When a call has an entry without args, that entry decides;
otherwise its entries are tried in order and the first whose args all match decides.

Filter layout (struct seccomp_data: nr at 0, arch at 4, args[i] at 16 + 8*i):
    ld  arch
    jeq AUDIT_ARCH_<native>  -> native          one pair per ABI of the profile
    jeq AUDIT_ARCH_I386      -> i386            (its own table: 32-bit programs run)
    ret ERRNO(ENOSYS)                          an ABI the profile does not name
  native:
    ld  nr
    jge __X32_SYSCALL_BIT    -> x32            x86_64 only: x32 calls come with the native
    <tree of native calls>                      audit arch and bit 30 set in nr, so their
  x32: <tree of x32 calls>                      own table compares the full number (ENOSYS
  i386: ld nr; <tree of i386 calls>             instead of the jump if x32 is not named)
The profile's architectures (or its archMap entry for the native one) name the other ABIs;
libseccomp kills the caller on an ABI the filter lacks, pydockerd answers ENOSYS.
A tree splits the sorted call numbers in halves with `jge` until at most _LEAF_SIZE are
left; a leaf tests each number with `jeq`, unconditional calls jump to a shared `ret` at the
end of the leaf, a call with argument conditions has its block inline after its `jeq`, and
the leaf ends in `ret <defaultAction>`. Conditional jumps only reach 255 instructions
ahead, so the far side of a split is reached by `ja` (32-bit offset).

Argument comparisons: classic BPF loads 32 bits at a time, and the profile's values are
64-bit, so each comparison is made on the high half (args[i] + 4 on little endian) and then
on the low half: EQ/NE/MASKED_EQ both halves equal (after the mask), GT/GE/LT/LE decided by
the high half unless it is equal, then by the low half. Comparisons are unsigned, as
libseccomp's are.
"""
import ctypes
import errno
import json
import os
import re

from drivers import linux
from drivers.syscalltable import X32_SYSCALL_BIT, syscall_numbers


class ProfileError(ValueError):
    """A profile dockerd would refuse (the message is its text where there is one)."""


# Docker's default profile (moby profiles/seccomp/default.json), on the architectures
# pydockerd compiles. Calls every container may make:
_DEFAULT_ALLOWED = """
    accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
    chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
    clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
    copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
    epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
    exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
    fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
    flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64
    fsync ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv
    futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid
    geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
    getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32
    getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid
    gettimeofday getuid getuid32 getxattr getxattrat inotify_add_watch inotify_init
    inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
    io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill landlock_add_rule
    landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat
    listen listmount listxattr listxattrat llistxattr _llseek lremovexattr lseek lsetxattr
    lstat lstat64 madvise map_shadow_stack membarrier memfd_create memfd_secret mincore
    mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr
    mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
    mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock
    munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2
    pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll
    ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
    pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv
    recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr removexattrat
    rename renameat renameat2 restart_syscall riscv_hwprobe rmdir rseq rt_sigaction
    rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
    rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
    sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
    sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
    sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
    semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
    setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
    setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
    setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid
    setuid32 setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd
    signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64
    statmount statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
    timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
    timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
    timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat
    uretprobe utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid
    write writev"""

# clone flags that make namespaces (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET).
NAMESPACE_FLAGS = 0x7E020000

# The rest, as (names, args as (index, op, value), includes, excludes, action).
_ALLOW = "SCMP_ACT_ALLOW"
_DEFAULT_CONDITIONAL = [
    ("process_vm_readv process_vm_writev ptrace", (), {"minKernel": "4.8"}, None, _ALLOW),
    # socket(2) for every family but AF_ALG (38, the kernel's crypto) and AF_VSOCK (40, which
    # reaches the host).
    ("socket", [(0, "SCMP_CMP_LT", 38)], None, None, _ALLOW),
    ("socket", [(0, "SCMP_CMP_EQ", 39)], None, None, _ALLOW),
    ("socket", [(0, "SCMP_CMP_GT", 40)], None, None, _ALLOW),
    # personality(2) only for the harmless personas (PER_LINUX, PER_LINUX32, UNAME26,
    # their mix, and 0xffffffff to query).
] + [("personality", [(0, "SCMP_CMP_EQ", value)], None, None, _ALLOW)
     for value in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)] + [
    ("arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
     (), {"arches": ["arm", "arm64"]}, None, _ALLOW),
    ("arch_prctl", (), {"arches": ["amd64", "x32"]}, None, _ALLOW),
    ("modify_ldt", (), {"arches": ["amd64", "x32", "x86"]}, None, _ALLOW),
    ("open_by_handle_at", (), {"caps": ["CAP_DAC_READ_SEARCH"]}, None, _ALLOW),
    ("bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie "
     "lsm_get_self_attr lsm_list_modules lsm_set_self_attr mount mount_setattr move_mount "
     "open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog "
     "umount umount2 unshare", (), {"caps": ["CAP_SYS_ADMIN"]}, None, _ALLOW),
    # Without CAP_SYS_ADMIN, clone only without namespace flags (no user namespace, which
    # would reach kernel code meant for real root), and clone3, whose flags sit in memory
    # that seccomp cannot read, answers ENOSYS so that libc falls back to clone.
    ("clone", [(0, "SCMP_CMP_MASKED_EQ", NAMESPACE_FLAGS)], None,
     {"caps": ["CAP_SYS_ADMIN"]}, _ALLOW),
    ("clone3", (), None, {"caps": ["CAP_SYS_ADMIN"]}, ("SCMP_ACT_ERRNO", errno.ENOSYS)),
    ("reboot", (), {"caps": ["CAP_SYS_BOOT"]}, None, _ALLOW),
    ("chroot", (), {"caps": ["CAP_SYS_CHROOT"]}, None, _ALLOW),
    ("delete_module init_module finit_module", (), {"caps": ["CAP_SYS_MODULE"]}, None, _ALLOW),
    ("acct", (), {"caps": ["CAP_SYS_PACCT"]}, None, _ALLOW),
    ("kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace", (),
     {"caps": ["CAP_SYS_PTRACE"]}, None, _ALLOW),
    ("iopl ioperm", (), {"caps": ["CAP_SYS_RAWIO"]}, None, _ALLOW),
    ("settimeofday stime clock_settime clock_settime64", (), {"caps": ["CAP_SYS_TIME"]}, None,
     _ALLOW),
    ("vhangup", (), {"caps": ["CAP_SYS_TTY_CONFIG"]}, None, _ALLOW),
    ("get_mempolicy mbind set_mempolicy set_mempolicy_home_node", (),
     {"caps": ["CAP_SYS_NICE"]}, None, _ALLOW),
    ("syslog", (), {"caps": ["CAP_SYSLOG"]}, None, _ALLOW),
    ("bpf", (), {"caps": ["CAP_BPF"]}, None, _ALLOW),
    ("perf_event_open", (), {"caps": ["CAP_PERFMON"]}, None, _ALLOW),
]


def _entry(names, args, includes, excludes, action):
    """One syscalls[] entry of Docker's JSON from a row of the table above."""
    entry = {"names": names.split(), "action": action if isinstance(action, str) else action[0]}
    if not isinstance(action, str):
        entry["errnoRet"] = action[1]
    if args:
        entry["args"] = [{"index": index, "value": value, "valueTwo": 0, "op": op}
                         for index, op, value in args]
    for key, value in (("includes", includes), ("excludes", excludes)):
        if value:
            entry[key] = value
    return entry


DEFAULT_PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": errno.EPERM,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64",
         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [_entry(_DEFAULT_ALLOWED, (), None, None, _ALLOW)]
                + [_entry(*row) for row in _DEFAULT_CONDITIONAL],
}

# What each action returns to the kernel (linux/seccomp.h); the low 16 bits carry an errno.
_ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000, "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
        "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")

# Profile architectures -> the ABI tables of drivers/syscalltable.py, each with the audit
# architecture (linux/audit.h) seccomp reports for it, and which ABIs a machine can run.
# Other SCMP_ARCH_ names are valid in a profile but have no table here (arm's 32-bit ABI is
# one), so their calls meet the filter's ENOSYS.
_PROFILE_ABIS = {"SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X32": "x32", "SCMP_ARCH_X86": "i386",
                 "SCMP_ARCH_AARCH64": "aarch64"}
_AUDIT_ARCH = {"x86_64": 0xC000003E, "x32": 0xC000003E, "i386": 0x40000003,
               "aarch64": 0xC00000B7}
_KNOWN_ARCHES = set(_PROFILE_ABIS) | {
    "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64"}
# uname -m -> (the profile's native architecture, its Go name that includes.arches uses,
# the ABIs the machine runs).
NATIVE = {"x86_64": ("SCMP_ARCH_X86_64", "amd64", ("x86_64", "x32", "i386")),
          "aarch64": ("SCMP_ARCH_AARCH64", "arm64", ("aarch64",))}


def supported(machine=None):
    """Whether containers here get a filter (docker info lists seccomp only then, as
    dockerd on a kernel without seccomp)."""
    return (machine or os.uname().machine) in NATIVE


# --- reading a profile ---------------------------------------------------------------------

def load_profile(text):
    """The profile in `text` (Docker's JSON format), checked; ProfileError if malformed."""
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise ProfileError("Decoding seccomp profile failed: %s" % e) from None
    _check(isinstance(profile, dict), "the profile is not a JSON object")
    _check(isinstance(profile.get("defaultAction", ""), str), "defaultAction is not a string")
    if profile.get("architectures") and profile.get("archMap"):
        raise ProfileError("both 'architectures' and 'archMap' are specified in the seccomp "
                           "profile, use either 'architectures' or 'archMap'")
    for arch in _list(profile, "architectures") + [
            a for entry in _list(profile, "archMap") for a in _arch_map_entry(entry)]:
        _check(arch in _KNOWN_ARCHES, "unknown architecture %r" % arch)
    if not profile.get("defaultAction") and not profile.get("syscalls"):
        return profile  # setupSeccomp: no default action and no calls is no filter at all
    _action(profile.get("defaultAction", ""), profile.get("defaultErrnoRet"))
    for entry in _list(profile, "syscalls"):
        _check_entry(entry)
    return profile


def _check(condition, message):
    if not condition:
        raise ProfileError("Decoding seccomp profile failed: %s" % message)


def _list(mapping, key):
    value = mapping.get(key) or []
    _check(isinstance(value, list), "%s is not a list" % key)
    return value


def _arch_map_entry(entry):
    _check(isinstance(entry, dict), "an archMap entry is not an object")
    return [entry.get("architecture")] + _list(entry, "subArchitectures")


def _check_entry(entry):
    _check(isinstance(entry, dict), "a syscalls entry is not an object")
    if entry.get("name") and entry.get("names"):
        raise ProfileError("both 'name' and 'names' are specified in the seccomp profile, "
                           "use either 'name' or 'names'")
    names = _entry_names(entry)
    _check(all(isinstance(name, str) for name in names), "a syscall name is not a string")
    _action(entry.get("action"), entry.get("errnoRet"))
    for arg in _list(entry, "args"):
        _check(isinstance(arg, dict), "an args entry is not an object")
        _check(arg.get("index") in range(6), "args index %r is not 0 to 5" % arg.get("index"))
        _check(arg.get("op") in _OPS, "unknown comparison operator %r" % arg.get("op"))
        for key in ("value", "valueTwo"):
            value = arg.get(key, 0)
            _check(isinstance(value, int) and not isinstance(value, bool)
                   and 0 <= value < 1 << 64, "args %s %r is not a 64-bit number" % (key, value))
    for key in ("includes", "excludes"):
        condition = entry.get(key) or {}
        _check(isinstance(condition, dict), "%s is not an object" % key)
        _list(condition, "caps")
        _list(condition, "arches")
        if condition.get("minKernel"):
            _kernel_at_least(condition["minKernel"])


def _entry_names(entry):
    return [entry["name"]] if entry.get("name") else _list(entry, "names")


def _action(name, errno_ret):
    """The value a filter returns for action `name` (ERRNO and TRACE carry errno_ret)."""
    _check(name in _ACTIONS, "unknown seccomp action %r" % (name,))
    if errno_ret is None:
        errno_ret = errno.EPERM  # runc's errno for ERRNO without errnoRet
    _check(isinstance(errno_ret, int) and 0 <= errno_ret < 0x10000,
           "errnoRet %r is not an errno" % (errno_ret,))
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        return _ACTIONS[name] | errno_ret
    return _ACTIONS[name]


def _kernel_at_least(text):
    """Whether the running kernel is at least `text` ("major.minor", Docker's minKernel)."""
    wanted = re.fullmatch(r"(\d+)\.(\d+)", str(text))
    _check(wanted is not None, "invalid kernel version %r" % (text,))
    running = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(running.group(1)), int(running.group(2))) >= tuple(map(int, wanted.groups()))


# --- which rules apply (setupSeccomp) ----------------------------------------------------------

def _applies(entry, capabilities, go_arch):
    """setupSeccomp's includes/excludes test for one entry."""
    excludes, includes = entry.get("excludes") or {}, entry.get("includes") or {}
    if go_arch in (excludes.get("arches") or []):
        return False
    if set(excludes.get("caps") or []) & capabilities:
        return False
    if excludes.get("minKernel") and _kernel_at_least(excludes["minKernel"]):
        return False
    if includes.get("arches") and go_arch not in includes["arches"]:
        return False
    if not set(includes.get("caps") or []) <= capabilities:
        return False
    return not includes.get("minKernel") or _kernel_at_least(includes["minKernel"])


def _abis(profile, machine):
    """The ABIs the filter covers: the native one, then those of the profile's
    architectures (or of its archMap entry for the native one) that this machine runs."""
    native, _, runnable = NATIVE[machine]
    arches = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            arches += list(entry.get("subArchitectures") or [])
    abis = [runnable[0]]
    for abi in (_PROFILE_ABIS.get(arch) for arch in arches):
        if abi in runnable and abi not in abis:
            abis.append(abi)
    return abis


def _rules_by_number(profile, capabilities, go_arch, numbers):
    """{syscall number: [(return value, args)]} for one ABI, in the profile's order."""
    rules = {}
    for entry in profile.get("syscalls") or []:
        if not _applies(entry, capabilities, go_arch):
            continue
        ret = _action(entry.get("action"), entry.get("errnoRet"))
        args = [(a["index"], a["op"], a.get("value", 0), a.get("valueTwo", 0))
                for a in entry.get("args") or []]
        for name in _entry_names(entry):
            if name in numbers:
                rules.setdefault(numbers[name], []).append((ret, args))
    # An entry without args decides alone (libseccomp lets it supersede conditional ones).
    return {nr: [rule for rule in found if not rule[1]][:1] or found
            for nr, found in rules.items()}


# --- classic BPF ---------------------------------------------------------------------------

_BPF_LD_W_ABS = 0x20
_BPF_ALU_AND_K = 0x54
_BPF_JA = 0x05
_BPF_JEQ_K = 0x15
_BPF_JGT_K = 0x25
_BPF_JGE_K = 0x35
_BPF_RET_K = 0x06
_DATA_NR, _DATA_ARCH, _DATA_ARGS = 0, 4, 16
_LEAF_SIZE = 8
BPF_MAXINSNS = 4096
_ENOSYS = _ACTIONS["SCMP_ACT_ERRNO"] | errno.ENOSYS


class _Assembler(object):
    """Instructions with symbolic jump targets, resolved into relative offsets at the end."""

    def __init__(self):
        self.code = []
        self.labels = {}

    def label(self):
        name = "L%d" % len(self.labels)
        self.labels[name] = None  # placed later
        return name

    def place(self, label):
        self.labels[label] = len(self.code)

    def emit(self, op, k=0, jt=0, jf=0):
        self.code.append((op, jt, jf, k))

    def program(self):
        """The (code, jt, jf, k) tuples; a label names the instruction placed after it."""
        def offset(at, target):
            if isinstance(target, int):  # already an offset (0: the next instruction)
                return target
            return self.labels[target] - at - 1  # labels are only ever placed ahead

        program = []
        for at, (op, jt, jf, k) in enumerate(self.code):
            if op == _BPF_JA:
                program.append((op, 0, 0, offset(at, k)))
                continue
            jt, jf = offset(at, jt), offset(at, jf)
            if max(jt, jf) > 255:  # only calls with very many conditional entries
                raise ProfileError("seccomp profile: too many argument conditions")
            program.append((op, jt, jf, k))
        if len(program) > BPF_MAXINSNS:
            raise ProfileError("seccomp filter too long: %d instructions" % len(program))
        return program


def compile_filter(profile, capabilities, machine=None):
    """The filter for `profile` and a container with `capabilities` (a set of CAP_ names),
    as (code, jt, jf, k) tuples; None when there is nothing to install (a profile with no
    defaultAction nor calls, or a machine without tables here, as Docker without seccomp)."""
    machine = machine or os.uname().machine
    if not supported(machine) or (not profile.get("defaultAction")
                                  and not profile.get("syscalls")):
        return None
    go_arch = NATIVE[machine][1]
    default = _action(profile["defaultAction"], profile.get("defaultErrnoRet"))
    abis = _abis(profile, machine)
    asm = _Assembler()
    entry_points = {abi: asm.label() for abi in abis}
    asm.emit(_BPF_LD_W_ABS, _DATA_ARCH)
    for abi in abis:
        if abi != "x32":  # x32 shares the native audit arch; told apart by the nr below
            asm.emit(_BPF_JEQ_K, _AUDIT_ARCH[abi], jf=1)
            asm.emit(_BPF_JA, entry_points[abi])
    asm.emit(_BPF_RET_K, _ENOSYS)
    for abi in abis:
        asm.place(entry_points[abi])
        if abi != "x32":  # for x32, the native block has loaded nr already
            asm.emit(_BPF_LD_W_ABS, _DATA_NR)
        if abi == "x86_64":
            asm.emit(_BPF_JGE_K, X32_SYSCALL_BIT, jf=1)
            if "x32" in abis:
                asm.emit(_BPF_JA, entry_points["x32"])
            else:
                asm.emit(_BPF_RET_K, _ENOSYS)
        rules = _rules_by_number(profile, capabilities, go_arch, syscall_numbers(abi))
        _tree(asm, sorted(rules), rules, default)
    return asm.program()


def _tree(asm, numbers, rules, default):
    """Binary search on the call number (in the accumulator) down to leaves."""
    if len(numbers) <= _LEAF_SIZE:
        _leaf(asm, numbers, rules, default)
        return
    middle = len(numbers) // 2
    upper = asm.label()
    asm.emit(_BPF_JGE_K, numbers[middle], jf=1)
    asm.emit(_BPF_JA, upper)
    _tree(asm, numbers[:middle], rules, default)
    asm.place(upper)
    _tree(asm, numbers[middle:], rules, default)


def _leaf(asm, numbers, rules, default):
    """A few `jeq nr`: shared returns for unconditional calls, inline blocks otherwise."""
    returns = {}
    for nr in numbers:
        ret, args = rules[nr][0]
        if not args:  # then it is the call's only rule (_rules_by_number)
            asm.emit(_BPF_JEQ_K, nr, jt=returns.setdefault(ret, asm.label()))
            continue
        skip = asm.label()
        asm.emit(_BPF_JEQ_K, nr, jf=skip)
        _conditional_block(asm, rules[nr], default)
        asm.place(skip)
    asm.emit(_BPF_RET_K, default)
    for ret, label in returns.items():
        asm.place(label)
        asm.emit(_BPF_RET_K, ret)


def _conditional_block(asm, rules, default):
    """The rules of one call in order: the first whose args all match returns its action."""
    for ret, args in rules:
        fail = asm.label()
        for index, op, value, value_two in args:
            _compare(asm, index, op, value, value_two, fail)
        asm.emit(_BPF_RET_K, ret)
        asm.place(fail)
    asm.emit(_BPF_RET_K, default)


def _compare(asm, index, op, value, value_two, fail):
    """Fall through when args[index] `op` value holds, else jump to `fail`; 64-bit values
    compared as their high then their low 32-bit halves."""
    low, high = _DATA_ARGS + 8 * index, _DATA_ARGS + 8 * index + 4
    passed = asm.label()
    halves = [(high, value >> 32, value_two >> 32), (low, value & 0xFFFFFFFF,
                                                      value_two & 0xFFFFFFFF)]
    if op in ("SCMP_CMP_EQ", "SCMP_CMP_MASKED_EQ"):
        for offset, half, half_two in halves:
            asm.emit(_BPF_LD_W_ABS, offset)
            if op == "SCMP_CMP_MASKED_EQ":  # (arg & value) == valueTwo
                asm.emit(_BPF_ALU_AND_K, half)
                half = half_two
            asm.emit(_BPF_JEQ_K, half, jf=fail)
    elif op == "SCMP_CMP_NE":
        asm.emit(_BPF_LD_W_ABS, high)
        asm.emit(_BPF_JEQ_K, value >> 32, jf=passed)
        asm.emit(_BPF_LD_W_ABS, low)
        asm.emit(_BPF_JEQ_K, value & 0xFFFFFFFF, jt=fail)
    else:
        # GT/GE hold when the high half is above; LT/LE are their negations (LT = not GE).
        above, below = (passed, fail) if op in ("SCMP_CMP_GT", "SCMP_CMP_GE") else (fail, passed)
        low_op = _BPF_JGT_K if op in ("SCMP_CMP_GT", "SCMP_CMP_LE") else _BPF_JGE_K
        asm.emit(_BPF_LD_W_ABS, high)
        asm.emit(_BPF_JGT_K, value >> 32, jt=above)
        asm.emit(_BPF_JEQ_K, value >> 32, jf=below)
        asm.emit(_BPF_LD_W_ABS, low)
        asm.emit(low_op, value & 0xFFFFFFFF, jt=above, jf=below)
    asm.place(passed)


# --- installing ----------------------------------------------------------------------------

_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def install(program):
    """prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog): from here on, for good."""
    instructions = (_SockFilter * len(program))(*(_SockFilter(*i) for i in program))
    fprog = _SockFprog(len(program), instructions)
    linux.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
