"""The sealed interpreter: processes that enter a container never run the host's python file.

CVE-2019-5736 (security.md check 16 and section 7.3). A process that joins a container's
namespaces before its execve (runc's `runc init`, here a fork of the fork server: the exec
helper, a container's init, the --init reaper that stays pid 1, every healthcheck probe, which
is an exec) is visible to the container, and /proc/<pid>/exe is a magic link: opening it
opens the very file the process runs, whatever the container's root. A container that gets
the host's interpreter that way, or that makes the exec run it (an image whose /bin/sh is
`#!/proc/self/exe`: the exec'd process re-executes its own exe, now dumpable, inside the
container), can keep the descriptor and, once the file is no longer being executed (ETXTBSY
until then), reopen it through /proc/self/fd/N for writing: the next daemon to start runs
the container's code as root on the host.

PR_SET_DUMPABLE(0) on the helpers (drivers/execdriver.py) keeps a container without
CAP_SYS_PTRACE from opening the link while the helper runs, but it is reset by every execve
and does not stop CAP_SYS_PTRACE. So, like runc's exeseal (libcontainer/exeseal), the daemon
copies the interpreter once at boot into a memfd (an anonymous shmem file with no path on any
filesystem) and seals it:

    F_SEAL_WRITE    no write(2), no writable shared mapping: EPERM
    F_SEAL_SHRINK   no truncation           F_SEAL_GROW   no extension
    F_SEAL_SEAL     the seals themselves can never be removed or changed

It then keeps only a read-only descriptor on the copy (an exec needs no writable opening of
the file it runs, and many kernels refuse to exec a file open for writing: ETXTBSY) and
starts the fork server from it through /proc/self/fd/N. Every process forked from there, and
so every process a container can see before its execve, has /proc/<pid>/exe pointing at
"/memfd:python3.11 (deleted)": opening it reaches the sealed copy, never the host's file.

Finding the standard library. Python derives sys.prefix from argv[0] when it holds a slash
(getpath: the landmark lib/pythonX.Y/os.py next to the executable's real path), falling back
to the prefix it was built with; it never reads /proc/self/exe. The fork server runs with -I,
which ignores PYTHONHOME (security.md 7.3 suggests setting it), so argv[0] is what does the
job: it stays sys.executable, and the fork server finds its library exactly as the daemon
does, pyvenv.cfg included.

Shared libraries. `ldd` shows that a --enable-shared build (pyenv's, for one) is a 17 KB
launcher; the interpreter proper is libpython3.X.so (some 23 MB), which ld.so maps read-only
from its host path, as it maps libc and the extension modules of lib-dynload. Writes to a
mapped library are not refused with ETXTBSY (only executables are), so the question is
whether a container can open one. It has three ways, and none is open to it:

  * the path in /proc/<pid>/maps: the container resolves it inside its own root, and so
    does /proc/<pid>/root/<path>, since every helper it can see has already joined its mount
    namespace (an exec) or pivoted into its root (the init, which it only sees once running);
  * /proc/<pid>/fd: ld.so closes the descriptor once the library is mapped;
  * /proc/<pid>/map_files/<range>: the kernel lets only a holder of CAP_CHECKPOINT_RESTORE or
    CAP_SYS_ADMIN in the initial user namespace follow these links (proc_map_files_get_link),
    and Docker grants neither unless asked (--privileged, --cap-add SYS_ADMIN): a container
    that has them can mount the host's disks anyway.

That is the boundary runc draws too (its own libc and libseccomp are mapped the same way), so
the libraries stay where they are: copying libpython into a second memfd (loaded through
LD_PRELOAD=/proc/self/fd/N, which ld.so matches by soname) would cost 23 MB of memory per
daemon and still leave libc and the extension modules mapped from the host. The check 16
tests prove both halves: exe links are sealed memfds, map_files is refused to CAP_SYS_PTRACE.

What stays outside: a container started with --pid=host sees the daemon itself, which runs
from the host's file; as with dockerd and containerd, sharing the host's pid namespace (and
more so with CAP_SYS_PTRACE) is a grant of the host, not a boundary.

Cost: one copy of the executable per daemon boot (the 17 KB launcher here, the whole
interpreter for a static build), shared by every fork server the daemon starts. Measured here:
boot to the first /_ping 0.305 s before and 0.307 s after (median of 5), the fork server's
resident memory 15.5 MB either way.
"""
import errno
import fcntl
import os
import sys

SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE

# MFD_EXEC (Linux 6.3): the memfd may be executed even where vm.memfd_noexec makes new
# memfds non-executable by default. Older kernels refuse the unknown flag with EINVAL.
_MFD_EXEC = 0x0010

_COPY_CHUNK = 1 << 20


class SealedExecutable(object):
    """A read-only descriptor (close-on-exec) on a sealed memfd copy of an executable."""

    def __init__(self, fd, source):
        self.fd = fd
        self.source = source

    @property
    def path(self):
        """What to execve: the copy, through this process's descriptor table (a spawned child
        resolves it in its own copy of the table, before close-on-exec applies)."""
        return "/proc/self/fd/%d" % self.fd

    def close(self):
        os.close(self.fd)


def seal_executable(source):
    """Copy the file `source` into a new memfd, seal it and return a SealedExecutable."""
    name = os.path.basename(source)
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        writable = os.memfd_create(name, flags | _MFD_EXEC)
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
        writable = os.memfd_create(name, flags)
    try:
        _copy_into(source, writable)
        fcntl.fcntl(writable, fcntl.F_ADD_SEALS, SEALS)
        readonly = os.open("/proc/self/fd/%d" % writable, os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(writable)
    return SealedExecutable(readonly, source)


def sealed_interpreter():
    """The running interpreter's executable (symlinks resolved), sealed."""
    return seal_executable(os.path.realpath(sys.executable))


def is_sealed(fd):
    """Does the file behind fd carry every seal of SEALS?"""
    try:
        return fcntl.fcntl(fd, fcntl.F_GET_SEALS) & SEALS == SEALS
    except OSError:  # EINVAL: not a memfd, so it cannot be sealed at all
        return False


def _copy_into(source, fd):
    with open(source, "rb") as executable:
        while True:
            chunk = executable.read(_COPY_CHUNK)
            if not chunk:
                return
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
