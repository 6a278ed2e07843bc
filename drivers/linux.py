"""The Linux system calls Docker reaches through Go's syscall package, bound with ctypes.

Docker 1.8.2 calls these from pkg/mount, libcontainer and pkg/system. Python's os module
has none of mount, umount2, pivot_root or sethostname, and os.unshare/os.setns only arrived
in 3.12, so the daemon binds them from libc itself. Every call raises OSError with errno and
a message naming the call and its arguments, like Go's syscall errors wrapped by Docker.

Where libc has a wrapper (mount, umount2, unshare, setns, sethostname, prctl) it is used, so
no syscall number is needed. pivot_root and bpf have none in glibc, and capget, capset and
rt_sigaction are made raw too (glibc's sigaction refuses the signals it reserves), so their
numbers come from drivers/syscalltable.py, the seccomp filter's tables, for the machine the
daemon runs on (never assume x86_64).
"""
import ctypes
import ctypes.util
import errno
import fcntl
import functools
import os
import platform
import struct

from drivers import syscalltable

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

# Namespace flags (linux/sched.h), as libcontainer names them in configs/namespaces.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Mount flags (linux/mount.h), the names pkg/mount/flags_linux.go uses.
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000

# umount2 flags.
MNT_FORCE = 0x1
MNT_DETACH = 0x2

# prctl options used by the exec driver.
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

def syscall_number(name):
    """The number of system call `name` on this machine; refuse an unknown architecture."""
    machine = platform.machine()
    try:
        return _machine_syscalls()[name]
    except KeyError:
        raise OSError(errno.ENOSYS, "no syscall number for %s on %s" % (name, machine)) from None


@functools.lru_cache(maxsize=None)
def _machine_syscalls():
    """This machine's table, read once (capset runs at every exec)."""
    return syscalltable.machine_syscall_numbers(platform.machine())


def _check(result, what):
    """Turn libc's -1/errno convention into an OSError that says which call failed."""
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))
    return result


def _b(value):
    """ctypes wants bytes (or None) for char* arguments."""
    if value is None or isinstance(value, bytes):
        return value
    return os.fsencode(value)


def mount(source, target, fstype, flags=0, data=None):
    """mount(2), as pkg/mount.Mount calls it."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           "mount %s on %s (type %s, flags %#x, data %r)" % (source, target, fstype, flags, data))


def umount(target, flags=0):
    """umount2(2), as pkg/mount.Unmount calls it."""
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), "umount %s" % target)


def unshare(flags):
    """unshare(2): give the calling process new namespaces."""
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare %#x" % flags)


def setns(fd, nstype=0):
    """setns(2): join the namespace behind `fd` (nsenter's job in Docker 1.8)."""
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns fd %d" % fd)


def pivot_root(new_root, put_old):
    """pivot_root(2): make `new_root` the root of this mount namespace (libcontainer's pivotRoot)."""
    _check(_libc.syscall(ctypes.c_long(syscall_number("pivot_root")), _b(new_root), _b(put_old)),
           "pivot_root %s %s" % (new_root, put_old))


def sethostname(name):
    """sethostname(2), inside the container's UTS namespace."""
    raw = _b(name)
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname %s" % name)


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0):
    """prctl(2) with integer arguments."""
    return _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                              ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)), "prctl %d" % option)


SIOCOUTQ = 0x5411  # TIOCOUTQ


def malloc_trim():
    """glibc's malloc_trim(0): give the heap's free pages back to the kernel. Each thread that
    served a request may have allocated in an arena of its own, and glibc keeps an arena's
    freed memory for later; after a burst, the daemon's memory would stay at its peak. A libc
    without it (musl) returns memory by itself."""
    trim = getattr(_libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def unread_bytes(sock):
    """SIOCOUTQ on a unix stream socket: how many of the bytes sent its peer has not read yet
    (they stay charged to the sender until the receiver consumes them)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0" * 4))[0]


def is_mountpoint(path):
    """Whether `path` is listed as a mount point in /proc/self/mountinfo (pkg/mount.Mounted)."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            if unescape_mount_path(line.split()[4]) == target:
                return True
    return False


# Filesystems whose files are the kernel's view of a process, not data: what `docker cp` of a
# running container leaves out (dockerd reads its rootfs, where they are empty mount points).
KERNEL_FILESYSTEMS = frozenset(("proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2",
                                "securityfs", "debugfs", "tracefs", "bpf", "pstore"))


def kernel_mount_points(pid):
    """Where, seen from the root of process `pid`, a KERNEL_FILESYSTEMS filesystem is mounted."""
    points = []
    with open("/proc/%d/mountinfo" % pid) as mountinfo:
        for line in mountinfo:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in KERNEL_FILESYSTEMS:
                points.append(unescape_mount_path(fields[4]))
    return points


def unescape_mount_path(field):
    """Undo the octal escapes (\\040 for a space) that /proc/*/mountinfo uses in paths."""
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


def kernel_version():
    """The running kernel as (major, minor, patch), parsed like pkg/parsers/kernel."""
    release = os.uname().release
    numbers = []
    for part in release.replace("-", ".").split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    while len(numbers) < 3:
        numbers.append(0)
    return tuple(numbers)


# Used by the exec driver and the container monitor (drivers/execdriver.py, drivers/monitor.py).
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def setdomainname(name):
    """setdomainname(2), inside the container's UTS namespace (Docker's --domainname)."""
    raw = _b(name)
    _check(_libc.setdomainname(raw, ctypes.c_size_t(len(raw))), "setdomainname %s" % name)


def capget():
    """capget(2) for this thread: (effective, permitted, inheritable) as 64-bit masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(ctypes.c_long(syscall_number("capget")), ctypes.byref(header), data),
           "capget")
    return tuple(getattr(data[0], f) | getattr(data[1], f) << 32
                 for f in ("effective", "permitted", "inheritable"))


def capset(effective, permitted, inheritable):
    """capset(2) for this thread, from 64-bit masks (version 3 takes two 32-bit halves)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for half in (0, 1):
        shift = 32 * half
        data[half].effective = (effective >> shift) & 0xFFFFFFFF
        data[half].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[half].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.syscall(ctypes.c_long(syscall_number("capset")), ctypes.byref(header), data),
           "capset effective %#x permitted %#x inheritable %#x"
           % (effective, permitted, inheritable))


# unshare(CLONE_FS) gives one thread its own working directory (the graph drivers mount
# from inside their home so long overlay option strings stay short).
CLONE_FS = 0x00000200

# readdir's d_type for "the filesystem did not say" (dirent.h).
DT_UNKNOWN = 0


def statfs_type(path):
    """statfs(2)'s f_type: the magic number of the filesystem holding `path` (graphdriver.GetFSMagic).

    f_type is the first field of struct statfs: a long everywhere except s390x, where it is an
    unsigned int. Every magic number fits in 32 bits, so the value is masked to them.
    """
    buf = ctypes.create_string_buffer(512)  # larger than struct statfs on every architecture
    _check(_libc.statfs(_b(path), buf), "statfs %s" % path)
    field = ctypes.c_uint if platform.machine() == "s390x" else ctypes.c_long
    return field.from_buffer(buf).value & 0xFFFFFFFF


class _Dirent64(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]


def dirent_types(path):
    """{name: d_type} for the entries of directory `path`, exactly as readdir(3) reports them.

    os.scandir cannot answer "does this filesystem fill in d_type?": when it gets DT_UNKNOWN it
    quietly calls lstat instead. overlayfs needs the real answer, so this reads the raw dirents.
    """
    opendir, readdir, closedir = _libc.opendir, _libc.readdir64, _libc.closedir
    opendir.restype, opendir.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    readdir.restype, readdir.argtypes = ctypes.POINTER(_Dirent64), [ctypes.c_void_p]
    closedir.argtypes = [ctypes.c_void_p]
    handle = opendir(_b(path))
    if not handle:
        err = ctypes.get_errno()
        raise OSError(err, "opendir %s: %s" % (path, os.strerror(err)))
    try:
        types = {}
        while True:
            entry = readdir(handle)
            if not entry:
                return types
            types[os.fsdecode(entry.contents.d_name)] = entry.contents.d_type
    finally:
        closedir(handle)


def unlockpt(fd):
    """unlockpt(3): allow the pty slave of master `fd` to be opened (libcontainer's console)."""
    _check(_libc.unlockpt(ctypes.c_int(fd)), "unlockpt fd %d" % fd)


def ptsname(fd):
    """ptsname_r(3): the slave path of pty master `fd`; glibc knows each arch's TIOCGPTN."""
    buf = ctypes.create_string_buffer(64)
    err = _libc.ptsname_r(ctypes.c_int(fd), buf, ctypes.c_size_t(len(buf)))
    if err:
        raise OSError(err, "ptsname fd %d: %s" % (fd, os.strerror(err)))
    return os.fsdecode(buf.value)


# The highest signal number on Linux (SIGRTMAX); the kernel's sigset is 64 bits wide.
NSIG = 64


def default_all_signals():
    """rt_sigaction(SIG_DFL) for every catchable signal, glibc's internal 32 and 33 included.

    Ignored dispositions survive execve, and Python's signal module cannot reach the signals
    glibc reserves, so the container's first process gets clean ones through the raw syscall
    (struct k_sigaction all zero: SIG_DFL, no flags, no restorer, empty mask).
    """
    number = syscall_number("rt_sigaction")
    action = (ctypes.c_ulong * 4)()
    for signum in range(1, NSIG + 1):
        if signum not in (9, 19):  # SIGKILL and SIGSTOP cannot be changed
            _libc.syscall(ctypes.c_long(number), ctypes.c_int(signum), ctypes.byref(action),
                          None, ctypes.c_size_t(8))


def bpf(command, attr):
    """bpf(2): `attr` is a ctypes buffer holding the command's union bpf_attr; the result
    (a new file descriptor for the load commands) is returned."""
    return _check(_libc.syscall(ctypes.c_long(syscall_number("bpf")), ctypes.c_int(command),
                                attr, ctypes.c_uint(ctypes.sizeof(attr))), "bpf command %d" % command)


def go_arch():
    """runtime.GOARCH and the variant, for the machine the daemon runs on."""
    machine = platform.machine()
    return {"x86_64": ("amd64", ""), "aarch64": ("arm64", ""), "armv7l": ("arm", "v7"),
            "armv6l": ("arm", "v6"), "i686": ("386", ""), "i386": ("386", ""),
            "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""),
            "riscv64": ("riscv64", "")}.get(machine, (machine, ""))
