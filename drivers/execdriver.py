"""The native exec driver: a container's first process, and `docker exec` into a running one.

Docker 1.8.2 kept the description of a container process in daemon/execdriver (Command,
ProcessConfig, Mount) and turned it into namespaces, mounts and capabilities through
daemon/execdriver/native, which drove libcontainer. This module is both halves: the plain
description the daemon fills in, and the code that builds the container from it with
fork, unshare/setns, mount and pivot_root (the syscalls come from drivers/linux.py).

How a container process is made (libcontainer's nsexec + standard_init, step by step):

    caller (the monitor, a child subreaper)
      └─ fork: the "intermediate" joins the namespaces named by a path, unshares the new ones,
         │     forks once more (a new pid namespace only applies to children), tells the
         │     caller the init's pid (which moves the init into its cgroups then) and exits
         └─ fork: the init, pid 1 of the new pid namespace, reparented to the caller. It
                  mounts /proc, /dev, /sys, the network files and the user's mounts inside
                  the rootfs, pivot_roots into it, masks paths, drops capabilities,
                  installs the seccomp filter (drivers/seccomp.py, compiled before the
                  forks), switches user, changes to the working directory, finds the
                  executable in the container's $PATH and waits at a gate until the caller
                  says "start"; then execve.

Every step before execve reports failure over a CLOEXEC socket (libcontainer's init pipe), so
`start` fails with Docker's message (`exec: "x": executable file not found in $PATH`, exit code
127) instead of a silently dead container; a successful execve closes the socket.

The init and the intermediate never return into the caller's Python stack: they end in execve
or os._exit. Every module they use is imported here, before any pivot_root, and the children
empty sys.path so that nothing can ever be imported from the image (security.md section 7.1).
"""
import array
import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import glob
import json
import os
import resource
import signal
import socket
import stat
import struct
import sys
import termios

from drivers import linux, seccomp

# The capabilities of linux/capability.h, in bit order.
CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
]

# The capabilities a container keeps (template/default_template.go; security.md section 1.1):
# CapEff 00000000a80425fb for root.
DEFAULT_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

# Paths hidden from the container (/dev/null over files, an empty read-only tmpfs over
# directories) and paths made read-only (moby daemon/pkg/oci/defaults.go; security.md 1.2).
DEFAULT_MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
    "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
    "/sys/devices/system/cpu/cpu*/thermal_throttle",
]
DEFAULT_READONLY_PATHS = [
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
]

DEFAULT_SHM_SIZE = 64 * 1024 * 1024

# --ulimit names (pkg/ulimit) and their RLIMIT_* numbers (asm-generic/resource.h).
RLIMITS = {"cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6,
           "nofile": 7, "memlock": 8, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13,
           "rtprio": 14, "rttime": 15}

# The OCI default devices (security.md 1.4): name, major, minor; all mode 0666.
DEFAULT_DEVICES = [
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
    ("tty", 5, 0),
]
DEFAULT_DEV_SYMLINKS = [
    ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"),
]

# The files of the container's directory bind-mounted over the image's /etc, in 1.8's order.
NETWORK_FILES = ("resolv.conf", "hostname", "hosts")

# Mount destinations libcontainer refuses (checkMountDestination): a volume inside /proc
# could rewrite the container's LSM profile (CVE-2015-3631).
INVALID_MOUNT_DESTINATIONS = ("/proc",)

# pkg/mount parseOptions: option name -> (clears the flag?, flag). Everything else is data.
MOUNT_OPTION_FLAGS = {
    "defaults": (False, 0),
    "ro": (False, linux.MS_RDONLY), "rw": (True, linux.MS_RDONLY),
    "nosuid": (False, linux.MS_NOSUID), "suid": (True, linux.MS_NOSUID),
    "nodev": (False, linux.MS_NODEV), "dev": (True, linux.MS_NODEV),
    "noexec": (False, linux.MS_NOEXEC), "exec": (True, linux.MS_NOEXEC),
    "noatime": (False, linux.MS_NOATIME), "atime": (True, linux.MS_NOATIME),
    "nodiratime": (False, linux.MS_NODIRATIME), "diratime": (True, linux.MS_NODIRATIME),
    "relatime": (False, linux.MS_RELATIME), "norelatime": (True, linux.MS_RELATIME),
    "strictatime": (False, linux.MS_STRICTATIME), "nostrictatime": (True, linux.MS_STRICTATIME),
    "bind": (False, linux.MS_BIND), "rbind": (False, linux.MS_BIND | linux.MS_REC),
}

# A bind's propagation (mount.Propagation) -> the flags that set it after the bind.
PROPAGATION_FLAGS = {
    "private": linux.MS_PRIVATE, "rprivate": linux.MS_PRIVATE | linux.MS_REC,
    "slave": linux.MS_SLAVE, "rslave": linux.MS_SLAVE | linux.MS_REC,
}

# Per-mount flags a read-only remount must carry over, or MS_REMOUNT would clear them.
_PRESERVED_MOUNT_FLAGS = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC

# Ioctls on a socket for the loopback interface (linux/sockios.h, linux/if.h).
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

# uids and gids libcontainer accepts (user.minId / maxId).
_MAX_ID = 2 ** 31 - 1

# A pre-execve message on the init socket never comes near this size.
_MAX_MESSAGE = 65536


class ExecdriverError(Exception):
    """A container process that could not be started, with the exit code Docker records.

    The exit code defaults to the one Docker derives from the message (exit_code_for_error).
    """

    def __init__(self, message, exit_code=None):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code if exit_code is not None else exit_code_for_error(message)


def exit_code_for_error(message):
    """The exit code daemon/start.go derives from a start error's text: 127 when something
    is missing or a directory stands where a file should (or the reverse), 126 when the
    command cannot be executed, 128 otherwise."""
    text = message.lower()
    if any(reason in text for reason in ("executable file not found",
                                         "no such file or directory", "not a directory")):
        return 127
    if "permission denied" in text or "is a directory" in text:
        return 126
    return 128


@dataclasses.dataclass
class Mount:
    """execdriver.Mount: a bind mount (source -> destination) or a tmpfs (destination, data).

    data holds tmpfs options as `--tmpfs` takes them ("size=64m,mode=1777,noexec").
    propagation is a bind's: rprivate (the default), private, rslave or slave (a slave sees
    what the host mounts below the source later; the container's own mounts stay its own).
    """
    destination: str
    type: str = "bind"
    source: str = ""
    readonly: bool = False
    data: str = ""
    propagation: str = "rprivate"


@dataclasses.dataclass
class Device:
    """configs.Device: a device node made in the container (--device, and for --privileged
    every device of the host), with the host node's permission bits and owner."""
    path: str
    type: str
    major: int
    minor: int
    mode: int = 0o666
    uid: int = 0
    gid: int = 0


@dataclasses.dataclass
class Command:
    """execdriver.Command: everything the driver needs to start a container's init.

    rootfs is an already prepared directory (the graph driver's mount). network, ipc, pid
    and uts each take "" (a new namespace; for network "none" means the same), "host" (share
    the daemon's) or the path of a namespace to join (/proc/<pid>/ns/net of another
    container). container_dir holds the hostname, hosts and resolv.conf files. masked_paths
    and readonly_paths of None mean Docker's defaults (none at all when privileged).
    cgroup_paths maps a hierarchy name to the host directory bound read-only under
    /sys/fs/cgroup ("" for a cgroup v2 directory bound on /sys/fs/cgroup itself); empty, the
    container sees an empty read-only tmpfs there. shm_path, when set, is bound on /dev/shm
    instead of a new tmpfs (how --ipc container:<id> shares it). seccomp is "" for Docker's
    default profile, "unconfined", or a profile's JSON text (--security-opt seccomp=<file>);
    a privileged container has none. cgroup_dirs are the container's cgroup directories: the
    init is moved into them as soon as its pid is known, while it still builds its root
    (moving a process waits out an RCU grace period, some 10 ms, which that work overlaps),
    and always before it is reported ready at the gate.
    """
    id: str
    rootfs: str
    args: list
    env: list = dataclasses.field(default_factory=list)
    cwd: str = "/"
    user: str = ""
    group_add: list = dataclasses.field(default_factory=list)
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    open_stdin: bool = False
    privileged: bool = False
    read_only: bool = False
    mounts: list = dataclasses.field(default_factory=list)
    shm_size: int = DEFAULT_SHM_SIZE
    shm_path: str = ""
    cap_add: list = dataclasses.field(default_factory=list)
    cap_drop: list = dataclasses.field(default_factory=list)
    network: str = "none"
    ipc: str = ""
    pid: str = ""
    uts: str = ""
    container_dir: str = ""
    masked_paths: list = None
    readonly_paths: list = None
    no_new_privileges: bool = False
    cgroup_paths: dict = dataclasses.field(default_factory=dict)
    seccomp: str = ""
    devices: list = dataclasses.field(default_factory=list)
    ulimits: list = dataclasses.field(default_factory=list)
    oom_score_adj: int = 0
    sysctls: dict = dataclasses.field(default_factory=dict)
    init: bool = False
    cgroup_dirs: list = dataclasses.field(default_factory=list)

    @classmethod
    def from_dict(cls, data):
        """The inverse of to_dict: how a command crosses the fork server as JSON."""
        values = dict(data)
        values["mounts"] = [m if isinstance(m, Mount) else Mount(**m)
                            for m in values.get("mounts", [])]
        values["devices"] = [d if isinstance(d, Device) else Device(**d)
                             for d in values.get("devices", [])]
        return cls(**values)

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ProcessConfig:
    """execdriver.ProcessConfig: one `docker exec` process inside a running container.

    An empty user or cwd means the container's own; privileged gives every capability.
    """
    args: list
    env: list = dataclasses.field(default_factory=list)
    cwd: str = ""
    user: str = ""
    tty: bool = False
    open_stdin: bool = False
    privileged: bool = False

    @classmethod
    def from_dict(cls, data):
        return cls(**data)

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _Process:
    """What the last stage needs, the same for a container's init and an exec'd process.

    is_init marks the container's first process: it creates a missing working directory
    (an exec'd process fails instead, like runc) and its pty is the container's console.
    reaper (--init) keeps that first process as pid 1 and runs the command as its child.
    """
    args: list
    env: list
    cwd: str
    user: str
    group_add: list
    tty: bool
    capabilities: int
    no_new_privileges: bool
    seccomp_filter: list
    is_init: bool
    ulimits: list
    oom_score_adj: int
    reaper: bool = False


class Init(object):
    """A container process that is set up and waits at the gate before execve.

    pid is the process as the caller sees it; console is the pty master (the caller owns it)
    when the command asked for a tty. Nothing of the user's program has run yet: release()
    lets it execve, close() instead makes it exit. The caller reaps it (it is the caller's
    child once the intermediate has exited, because start() makes the caller a subreaper).
    """

    def __init__(self, pid, sync, console):
        self.pid = pid
        self.console = console
        self._sync = sync

    def release(self):
        """Let the process execve; raise ExecdriverError if that failed (it then exits)."""
        try:
            _send(self._sync, {"type": "start"})
            message, _ = _recv(self._sync)
        finally:
            self.close()
        if message is not None and message.get("type") == "error":
            raise ExecdriverError(message["message"], message["exit_code"])

    def close(self):
        self._sync.close()


def start(command, stdio):
    """native.Driver.Run up to the exec gate: build the container and its init process.

    stdio are the three file descriptors the init gets as 0, 1 and 2 (ignored for fds 0-2
    when command.tty asks for a pty, whose master is returned as Init.console).
    Raises ExecdriverError with Docker's message and exit code if anything fails.
    """
    command = dataclasses.replace(command, rootfs=os.path.realpath(command.rootfs))
    process = _Process(
        args=list(command.args), env=list(command.env), cwd=command.cwd or "/",
        user=command.user, group_add=list(command.group_add), tty=command.tty,
        capabilities=capability_mask(command.privileged, command.cap_add, command.cap_drop),
        no_new_privileges=command.no_new_privileges,
        seccomp_filter=_container_seccomp_filter(command), is_init=True,
        ulimits=list(command.ulimits), oom_score_adj=command.oom_score_adj, reaper=command.init)
    if not process.args:
        raise ExecdriverError("no command specified", 128)
    return _spawn(lambda sync: _run_intermediate(command, process, sync, stdio),
                  command.cgroup_dirs)


def exec_process(command, config, container_pid, stdio):
    """native.Driver.Exec up to the exec gate: a new process in a running container.

    It joins every namespace of container_pid, keeps the container's capabilities (all of
    them for a privileged exec) and its groups, and runs as config.user (default: the
    container's user) in config.cwd (default: the container's working directory).
    """
    privileged = command.privileged or config.privileged
    process = _Process(
        args=list(config.args), env=list(config.env), cwd=config.cwd or command.cwd or "/",
        user=config.user or command.user, group_add=list(command.group_add), tty=config.tty,
        capabilities=capability_mask(privileged, command.cap_add, command.cap_drop),
        no_new_privileges=command.no_new_privileges,
        seccomp_filter=_container_seccomp_filter(command), is_init=False,
        ulimits=list(command.ulimits), oom_score_adj=command.oom_score_adj)
    if not process.args:
        raise ExecdriverError("no command specified", 128)
    return _spawn(lambda sync: _exec_intermediate(container_pid, process, sync, stdio))


def _container_seccomp_filter(command):
    """The container's filter, for its init and its execs alike: computed from the
    container's capabilities (a privileged exec keeps it, as in Docker)."""
    if command.privileged:
        return None
    return seccomp_filter(command.seccomp, capability_mask(False, command.cap_add,
                                                            command.cap_drop))


def _spawn(intermediate, cgroup_dirs=()):
    """Fork the intermediate and wait until the init is ready at its gate (or failed)."""
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = os.fork()
        if pid == 0:
            ours.close()
            _child_main(theirs, lambda: intermediate(theirs))
        theirs.close()
        return _await_init(pid, ours, cgroup_dirs)
    except BaseException:
        ours.close()
        raise


def _await_init(intermediate_pid, sync, cgroup_dirs):
    """Collect the intermediate's report (the init's pid, which joins cgroup_dirs then) and
    the init's (its console, then "ready"), in whatever order they arrive; after an error,
    read on to EOF so that the init's pid is known and it can be reaped."""
    pid = console = error = None
    ready = False
    while not (ready and pid is not None and error is None):
        message, fds = _recv(sync)
        if message is None:
            break
        if message["type"] == "pid":
            pid = message["pid"]
            error = _join_cgroups(pid, cgroup_dirs)
        elif message["type"] == "console":
            console = fds[0]
            os.set_inheritable(console, False)
        elif message["type"] == "ready":
            ready = True
        elif message["type"] == "error":
            error = message
    os.waitpid(intermediate_pid, 0)
    if ready and pid is not None and error is None:
        return Init(pid, sync, console)
    if console is not None:
        os.close(console)
    if pid is not None:
        os.waitpid(pid, 0)
    raise _start_error(error)


def _join_cgroups(pid, cgroup_dirs):
    """Move the init into its cgroups (Manager.Apply); on a failure the init is killed and
    the error message returned, in drivers/cgroups.py's words. The monitor does this itself
    rather than import drivers/cgroups.py (and its eBPF device filter) into every monitor."""
    for directory in cgroup_dirs:
        path = os.path.join(directory, "cgroup.procs")
        try:
            with open(path, "w") as procs:
                procs.write(str(pid))
        except OSError as err:
            os.kill(pid, signal.SIGKILL)
            reason = os.strerror(err.errno).lower()
            return {"message": "cgroups: write %d to %s: %s" % (pid, path, reason), "exit_code": 128}
    return None


def _start_error(message):
    if message is None:
        return ExecdriverError("container init exited before it was ready", 128)
    return ExecdriverError(message["message"], message["exit_code"])


# ---------------------------------------------------------------------------------------
# The children. Everything below runs in forked processes that end in execve or os._exit.
# ---------------------------------------------------------------------------------------

def _child_main(sync, body):
    """Run body in a forked child; report any failure on the init socket; never return."""
    code = 1
    try:
        body()
    except ExecdriverError as err:
        code = _report(sync, err.message, err.exit_code)
    except OSError as err:
        code = _report(sync, _describe_os_error(err), None)
    except BaseException as err:
        code = _report(sync, "%s: %s" % (type(err).__name__, err), 128)
    finally:
        os._exit(code)


def _report(sync, message, exit_code):
    error = ExecdriverError(message, exit_code)
    try:
        _send(sync, {"type": "error", "message": error.message, "exit_code": error.exit_code})
    except OSError:
        pass
    return error.exit_code


def _run_intermediate(command, process, sync, stdio):
    """nsexec's first child: join or create the namespaces, fork the init, tell its pid."""
    _install_stdio(stdio)
    close_fds_except({0, 1, 2, sync.fileno()})
    flags = linux.CLONE_NEWNS
    for setting, nstype in ((command.uts, linux.CLONE_NEWUTS), (command.ipc, linux.CLONE_NEWIPC),
                            (_network_namespace(command.network), linux.CLONE_NEWNET),
                            (command.pid, linux.CLONE_NEWPID)):
        if setting == "":
            flags |= nstype
        elif setting != "host":
            _join_namespace_path(setting, nstype)
    linux.unshare(flags)
    pid = os.fork()
    if pid == 0:
        _child_main(sync, lambda: _container_init(command, process, sync))
    _send(sync, {"type": "pid", "pid": pid})
    os._exit(0)


def _network_namespace(network):
    """Docker's --network none is a new, empty namespace; the rest are host or a path."""
    return "" if network in ("", "none") else network


def _join_namespace_path(path, nstype):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise ExecdriverError("open namespace %s: %s" % (path, _strerror(err.errno)))
    try:
        linux.setns(fd, nstype)
    finally:
        os.close(fd)


def _container_init(command, process, sync):
    """standard_init_linux.go: pid 1 of the container builds its world, then execs."""
    os.setsid()
    os.umask(0o022)
    sys.path[:] = []  # from here on nothing may be imported: the image is not trusted code
    _prepare_rootfs(command)
    _pivot_root(command.rootfs)
    _finalize_rootfs(command)
    if command.uts == "":
        if command.hostname:
            linux.sethostname(command.hostname)
        if command.domainname:
            linux.setdomainname(command.domainname)
    if _network_namespace(command.network) == "":
        _bring_up_loopback()
    _finish_process(process, sync)


def _exec_intermediate(container_pid, process, sync, stdio):
    """setns into every namespace of a running container, then fork the exec'd process.

    The process is made non-dumpable first so that nothing in the container without
    CAP_SYS_PTRACE can ptrace it or open its /proc/<pid>/exe while it is inside; that link
    leads to the sealed copy of the interpreter, never the host's file (drivers/exeseal.py,
    CVE-2019-5736).
    """
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    _install_stdio(stdio)
    close_fds_except({0, 1, 2, sync.fileno()})
    # Open every namespace first: once in the container's mount namespace, /proc is its own.
    namespaces = []
    for name in ("ipc", "uts", "net", "pid", "mnt"):
        theirs = "/proc/%d/ns/%s" % (container_pid, name)
        try:
            if _same_file(theirs, "/proc/self/ns/" + name):
                continue
            namespaces.append(os.open(theirs, os.O_RDONLY | os.O_CLOEXEC))
        except OSError as err:
            raise ExecdriverError("container %d is not running: %s" % (
                container_pid, _strerror(err.errno)))
    for fd in namespaces:
        linux.setns(fd, 0)
        os.close(fd)
    pid = os.fork()
    if pid == 0:
        _child_main(sync, lambda: _exec_init(process, sync))
    _send(sync, {"type": "pid", "pid": pid})
    os._exit(0)


def _exec_init(process, sync):
    """setns_init_linux.go: the exec'd process, already inside the container's namespaces."""
    os.setsid()
    os.umask(0o022)
    sys.path[:] = []
    _finish_process(process, sync)


def _finish_process(process, sync):
    """The steps a container's init and an exec'd process share, in runc's order."""
    if process.tty:
        _setup_console(sync, process.is_init)
    group_file = _read_container_file("/etc/group")
    user = get_exec_user(process.user, _read_container_file("/etc/passwd"), group_file)
    groups = user.sgids + get_additional_groups(process.group_add, group_file)
    env = _environment(process.env, user.home)
    if process.tty:
        os.fchown(0, user.uid, -1)
    close_fds_except({0, 1, 2, sync.fileno()})
    if process.is_init:
        _make_workdir(process.cwd)
    _set_rlimits(process.ulimits)
    _write_proc_file("/proc/self/oom_score_adj", str(process.oom_score_adj))
    _apply_capabilities(process.capabilities)
    if process.seccomp_filter:
        # While still root with CAP_SYS_ADMIN, which installing a filter without
        # no_new_privs requires (runc's order); nothing after this needs a denied call.
        seccomp.install(process.seccomp_filter)
    os.setgroups(sorted(set(groups)))
    os.setgid(user.gid)
    os.setuid(user.uid)
    _enter_workdir(process.cwd)
    executable = look_path(process.args[0], env.get("PATH", ""))
    _reset_signals()
    _await_start(sync)
    if process.reaper:
        _become_reaper(sync)  # returns in the child that goes on to execve
    if process.no_new_privileges:
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    try:
        os.execve(executable, process.args, env)
    except OSError as err:
        raise ExecdriverError("exec %s: %s" % (executable, _strerror(err.errno)))


def _set_rlimits(ulimits):
    """setupRlimits: --ulimit and --default-ulimit (never above the hard limit the process
    already has: raising that needs CAP_SYS_RESOURCE, and the daemon checked at create)."""
    for name, soft, hard in ulimits:
        limits = tuple(resource.RLIM_INFINITY if v == -1 else v for v in (soft, hard))
        try:
            resource.setrlimit(RLIMITS[name], limits)
        except (OSError, ValueError) as err:
            raise ExecdriverError("error setting rlimit type %s: %s" % (name, err))


def _write_proc_file(path, value):
    """A /proc or /proc/sys file of the container's own (oom_score_adj, --sysctl)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as err:
        raise ExecdriverError("write %s: %s" % (path, _strerror(err.errno)))


# The signals the --init reaper passes on to the command (it cannot catch KILL and STOP, and
# SIGCHLD is its own business).
_UNFORWARDED = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}


def _become_reaper(sync):
    """--init (tini's job, done by the process that is already pid 1): fork the command; this
    process stays pid 1, hands every signal on to it, reaps every orphan, and exits with the
    command's status (128 + the signal when it was killed). Only the child returns.

    pid 1 is made non-dumpable, so nothing in the container without CAP_SYS_PTRACE can
    ptrace it or open its /proc/1/exe; that is the sealed copy of the interpreter anyway
    (drivers/exeseal.py), never the host's file, the hazard of CVE-2019-5736."""
    everything = signal.valid_signals()
    signal.pthread_sigmask(signal.SIG_BLOCK, everything)
    child = os.fork()
    if child == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        return
    try:
        sync.close()  # the child's execve closes its copy: that tells the monitor it started
        linux.prctl(linux.PR_SET_DUMPABLE, 0)
        name = ctypes.create_string_buffer(b"docker-init")  # what `ps` shows, as in Docker
        linux.prctl(linux.PR_SET_NAME, ctypes.addressof(name))
        for signum in everything - _UNFORWARDED:
            try:
                signal.signal(signum, lambda number, frame: _forward(child, number))
            except (OSError, ValueError, RuntimeError):
                pass  # glibc's reserved real-time signals
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        while True:
            pid, status = os.waitpid(-1, 0)
            if pid == child:
                os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status)
                         else os.WEXITSTATUS(status))
    finally:
        os._exit(255)


def _forward(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _await_start(sync):
    """The exec gate (runc's exec.fifo): wait for "start"; a closed socket means give up."""
    _send(sync, {"type": "ready"})
    message, _ = _recv(sync)
    if message is None or message.get("type") != "start":
        os._exit(1)


# ---------------------------------------------------------------------------------------
# The root filesystem (libcontainer/rootfs_linux.go).
# ---------------------------------------------------------------------------------------

def _prepare_rootfs(command):
    """prepareRootfs: every mount of the container, made under the rootfs before pivot_root.

    All of them happen in the init's own mount namespace, whose propagation is made slave
    first, so none of them is ever seen on the host and all vanish with the container.
    """
    root = command.rootfs
    linux.mount(None, "/", None, linux.MS_SLAVE | linux.MS_REC)
    linux.mount(root, root, None, linux.MS_BIND | linux.MS_REC)
    _mount_proc(root)
    _mount_dev(root, command)
    _mount_sys(root, command)
    _mount_network_files(root, command)
    for mount in sorted(command.mounts, key=lambda m: _clean_path(m.destination).count("/")):
        _mount_user_mount(root, mount)
    for device in command.devices:
        _create_device(root, device)


def _mount_proc(root):
    _require_ordinary_directory(root, "/proc", "proc")
    with _pinned_target(root, "/proc", directory=True) as target:
        linux.mount("proc", target, "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)


def _mount_dev(root, command):
    """A tmpfs /dev with the default devices, its symlinks, devpts, shm and mqueue."""
    with _pinned_target(root, "/dev", directory=True) as target:
        linux.mount("tmpfs", target, "tmpfs", linux.MS_NOSUID | linux.MS_STRICTATIME,
                    "mode=755,size=65536k")
    # From here /dev is the fresh tmpfs just mounted: nothing in it comes from the image.
    dev = secure_join(root, "/dev")
    for name, major, minor in DEFAULT_DEVICES:
        path = os.path.join(dev, name)
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(path, 0o666)
    for name, target in DEFAULT_DEV_SYMLINKS:
        os.symlink(target, os.path.join(dev, name))
    if os.path.exists("/proc/kcore"):
        os.symlink("/proc/kcore", os.path.join(dev, "core"))
    for name in ("pts", "shm", "mqueue"):
        os.mkdir(os.path.join(dev, name), 0o755)
    linux.mount("devpts", os.path.join(dev, "pts"), "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620,gid=5")
    _mount_shm(os.path.join(dev, "shm"), command)
    linux.mount("mqueue", os.path.join(dev, "mqueue"), "mqueue",
                linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)


def _create_device(root, device):
    """createDeviceNode: a node for --device (or a host device under --privileged) at its path
    inside root; a node that is already there (a default device) is kept."""
    path = secure_join(root, device.path)
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    kind = stat.S_IFBLK if device.type == "b" else stat.S_IFCHR
    os.mknod(path, kind | device.mode, os.makedev(device.major, device.minor))
    os.chmod(path, device.mode)
    os.chown(path, device.uid, device.gid)


def _mount_shm(path, command):
    """/dev/shm: the container's own tmpfs, or a shared one for --ipc host / container:."""
    source = command.shm_path or ("/dev/shm" if command.ipc == "host" else "")
    if source:
        linux.mount(source, path, None, linux.MS_BIND | linux.MS_REC)
        return
    linux.mount("shm", path, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                "mode=1777,size=%d" % command.shm_size)


def _mount_sys(root, command):
    """sysfs, read-only unless privileged, and the cgroup view below it.

    A fresh sysfs (rather than a bind of the host's) is what Docker mounts; without a user
    namespace the kernel allows it in the host's network namespace too.
    """
    _require_ordinary_directory(root, "/sys", "sysfs")
    readonly = 0 if command.privileged else linux.MS_RDONLY
    with _pinned_target(root, "/sys", directory=True) as target:
        linux.mount("sysfs", target, "sysfs",
                    linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC | readonly)
    cgroup = os.path.join(secure_join(root, "/sys"), "fs/cgroup")
    if os.path.isdir(cgroup):
        _mount_cgroups(cgroup, command)


def _mount_cgroups(path, command):
    """/sys/fs/cgroup: a read-only tmpfs holding the container's cgroup directories, bound
    read-only (libcontainer mountCgroupV1), or the cgroup v2 directory itself."""
    flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    unified = command.cgroup_paths.get("")
    if unified:
        linux.mount(unified, path, None, linux.MS_BIND | linux.MS_REC)
        if not command.privileged:
            _remount_readonly(path)
        return
    linux.mount("tmpfs", path, "tmpfs", flags, "mode=755")
    for name, host_path in sorted(command.cgroup_paths.items()):
        subsystem = os.path.join(path, name)
        os.mkdir(subsystem, 0o755)
        linux.mount(host_path, subsystem, None, linux.MS_BIND | linux.MS_REC)
        if not command.privileged:
            _remount_readonly(subsystem)
    if not command.privileged:
        _remount_readonly(path)


def _mount_network_files(root, command):
    """/etc/resolv.conf, /etc/hostname and /etc/hosts from the container's directory, unless
    the user mounts something there (Docker then leaves the user's file alone)."""
    if not command.container_dir:
        return
    user_destinations = {_clean_path(m.destination) for m in command.mounts}
    for name in NETWORK_FILES:
        source = os.path.join(command.container_dir, name)
        destination = "/etc/" + name
        if destination in user_destinations or not os.path.isfile(source):
            continue
        _bind_mount(root, source, destination, command.read_only)


def _mount_user_mount(root, mount):
    """A -v/--mount bind or a --tmpfs, after libcontainer's destination checks."""
    destination = _clean_path(mount.destination)
    _check_mount_destination(destination)
    _check_mount_destination(secure_join(root, destination)[len(root):] or "/")
    if mount.type == "tmpfs":
        flags, data = parse_mount_options(mount.data)
        if mount.readonly:
            flags |= linux.MS_RDONLY
        with _pinned_target(root, destination, directory=True) as target:
            linux.mount("tmpfs", target, "tmpfs", flags, data or None)
    elif mount.type == "bind":
        _bind_mount(root, mount.source, destination, mount.readonly, mount.propagation)
    else:
        raise ExecdriverError("unsupported mount type %r for %s" % (mount.type, destination))


def _bind_mount(root, source, destination, readonly, propagation="rprivate"):
    try:
        directory = stat.S_ISDIR(os.stat(source).st_mode)
    except OSError as err:
        raise ExecdriverError("bind mount source %s: %s" % (source, _strerror(err.errno)))
    with _pinned_target(root, destination, directory=directory) as target:
        linux.mount(source, target, None, linux.MS_BIND | linux.MS_REC)
    # Re-resolve: the pinned descriptor still names the directory under the new mount.
    with _pinned_target(root, destination, directory=directory) as target:
        linux.mount(None, target, None, PROPAGATION_FLAGS[propagation])
        if readonly:
            _remount_readonly(target)


def _check_mount_destination(destination):
    """checkMountDestination: refuse "/" and anything inside /proc."""
    if destination == "/":
        raise ExecdriverError("mounting into / is prohibited")
    for invalid in INVALID_MOUNT_DESTINATIONS:
        if destination == invalid or destination.startswith(invalid + "/"):
            raise ExecdriverError('"%s" cannot be mounted because it is located inside "%s"'
                                  % (destination, invalid))


def _require_ordinary_directory(root, destination, fstype):
    """runc refuses to mount proc or sysfs over anything but a real directory: an image
    whose /proc is a symlink must not make the daemon mount procfs somewhere else
    (CVE-2019-19921)."""
    try:
        mode = os.lstat(os.path.join(root, destination.lstrip("/"))).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        raise ExecdriverError('filesystem "%s" must be mounted on ordinary directory' % fstype)


@contextlib.contextmanager
def _pinned_target(root, destination, directory):
    """A mount target inside root that stays inside root: resolved in scope, created if
    missing, opened O_PATH and checked, and given to mount(2) as /proc/self/fd/N so that a
    symlink swapped in afterwards cannot redirect the mount (CVE-2015-3629 and its 2026
    sequels in moby)."""
    path = secure_join(root, destination)
    _create_mountpoint(path, directory)
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not _within(os.readlink("/proc/self/fd/%d" % fd), root):
            raise ExecdriverError("mount destination %s escapes the container's root" % destination)
        yield "/proc/self/fd/%d" % fd
    finally:
        os.close(fd)


def _create_mountpoint(path, directory):
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    if directory:
        os.mkdir(path, 0o755)
    else:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))


def secure_join(root, unsafe_path):
    """symlink.FollowSymlinkInScope: unsafe_path resolved as if root were "/".

    Symlinks are followed, but an absolute target starts again at root and ".." stops at
    root, so the result always lies inside root. Components that do not exist yet are kept
    as they are (the caller creates them).
    """
    parts = unsafe_path.split("/")
    resolved = ""
    links = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            resolved = resolved.rsplit("/", 1)[0]
            continue
        candidate = resolved + "/" + part
        try:
            mode = os.lstat(root + candidate).st_mode
        except (FileNotFoundError, NotADirectoryError):
            resolved = candidate
            continue
        if not stat.S_ISLNK(mode):
            resolved = candidate
            continue
        links += 1
        if links > 255:
            raise ExecdriverError("%s: too many levels of symbolic links" % unsafe_path)
        target = os.readlink(root + candidate)
        if target.startswith("/"):
            resolved = ""
        parts = target.split("/") + parts
    return root + resolved


def parse_mount_options(options):
    """pkg/mount parseOptions: "ro,size=64m" -> (MS_RDONLY, "size=64m")."""
    flags, data = 0, []
    for option in filter(None, (options or "").split(",")):
        if option in MOUNT_OPTION_FLAGS:
            clears, flag = MOUNT_OPTION_FLAGS[option]
            flags = flags & ~flag if clears else flags | flag
        else:
            data.append(option)
    return flags, ",".join(data)


def _remount_readonly(path):
    """Make a mount read-only, keeping its nosuid/nodev/noexec (a bare MS_REMOUNT drops them)."""
    kept = os.statvfs(path).f_flag & _PRESERVED_MOUNT_FLAGS
    linux.mount(None, path, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | kept)


def _pivot_root(rootfs):
    """pivotRoot: the rootfs becomes "/", and the host's tree is detached (never chroot)."""
    os.chdir(rootfs)
    linux.pivot_root(".", ".")
    # The old root is stacked on the new one; slave it so the unmount stays ours, then drop it.
    linux.mount(None, ".", None, linux.MS_SLAVE | linux.MS_REC)
    linux.umount(".", linux.MNT_DETACH)
    os.chdir("/")


def _finalize_rootfs(command):
    """After pivot_root, in the container's own view: read-only root, masks, read-only paths."""
    if command.read_only:
        _remount_readonly("/")
    for path, value in sorted(command.sysctls.items()):
        _write_proc_file("/proc/sys/" + path, value)
    if command.privileged:
        return
    readonly = DEFAULT_READONLY_PATHS if command.readonly_paths is None else command.readonly_paths
    masked = DEFAULT_MASKED_PATHS if command.masked_paths is None else command.masked_paths
    for path in readonly:
        _readonly_path(path)
    for pattern in masked:
        for path in (glob.glob(pattern) if "*" in pattern else [pattern]):
            _mask_path(path)


def _readonly_path(path):
    if not os.path.exists(path):
        return
    linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
    _remount_readonly(path)


def _mask_path(path):
    """maskPath: /dev/null over a file, an empty read-only tmpfs over a directory."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISDIR(mode):
        linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY)
        return
    # verifyDevNull (CVE-2025-31133): never bind something that only claims to be /dev/null.
    null = os.lstat("/dev/null")
    if not stat.S_ISCHR(null.st_mode) or null.st_rdev != os.makedev(1, 3):
        raise ExecdriverError("/dev/null is not the null device; refusing to mask %s" % path)
    linux.mount("/dev/null", path, None, linux.MS_BIND)


def _bring_up_loopback():
    """A --network none container still has a working `lo` (libnetwork's sandbox does this)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | _IFF_UP))


def _setup_console(sync, is_init):
    """setupConsole: a pty from the container's own devpts, its slave as stdio and
    controlling terminal (/dev/pts/0 inside), its master handed to the caller. The init's
    pty is also the container's /dev/console."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    linux.unlockpt(master)
    slave_path = linux.ptsname(master)
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    if is_init:
        if not os.path.lexists("/dev/console"):
            os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        linux.mount(slave_path, "/dev/console", None, linux.MS_BIND)
    _send(sync, {"type": "console"}, [master])
    os.close(master)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    os.close(slave)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


# ---------------------------------------------------------------------------------------
# The process: user, capabilities, working directory, executable (libcontainer/init_linux.go).
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class ExecUser:
    """user.ExecUser: what --user resolves to in the container's passwd and group files."""
    uid: int = 0
    gid: int = 0
    sgids: list = dataclasses.field(default_factory=list)
    home: str = "/"


def parse_passwd(text):
    """/etc/passwd lines as (name, uid, gid, home); malformed lines are skipped."""
    entries = []
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) < 4 or not fields[2].isdigit() or not fields[3].isdigit():
            continue
        home = fields[5] if len(fields) > 5 else ""
        entries.append((fields[0], int(fields[2]), int(fields[3]), home))
    return entries


def parse_group(text):
    """/etc/group lines as (name, gid, members)."""
    entries = []
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) < 3 or not fields[2].isdigit():
            continue
        members = [m for m in fields[3].split(",") if m] if len(fields) > 3 else []
        entries.append((fields[0], int(fields[2]), members))
    return entries


def get_exec_user(spec, passwd_text, group_text):
    """user.GetExecUser: "", "name", "uid", "name:group", "uid:gid" -> ExecUser.

    passwd_text and group_text are the CONTAINER's files (None when missing); the host's
    NSS is never asked. A numeric uid or gid with no entry is used as it is; a name with no
    entry is an error. Supplementary groups come from group membership only when no group
    was given explicitly.
    """
    user_arg, _, group_arg = spec.partition(":")
    user = ExecUser()
    matches = [p for p in parse_passwd(passwd_text)
               if (p[1] == user.uid if user_arg == "" else
                   p[1] == int(user_arg) if user_arg.isdigit() else p[0] == user_arg)]
    matched_name = ""
    if matches:
        matched_name, user.uid, user.gid, user.home = matches[0]
    elif user_arg:
        if not user_arg.isdigit():
            raise ExecdriverError("unable to find user %s: no matching entries in passwd file"
                                  % user_arg)
        user.uid = _check_id(int(user_arg))
    if group_arg:
        found = [g for g in parse_group(group_text)
                 if (g[1] == int(group_arg) if group_arg.isdigit() else g[0] == group_arg)]
        if found:
            user.gid = found[0][1]
        elif group_arg.isdigit():
            user.gid = _check_id(int(group_arg))
        else:
            raise ExecdriverError("unable to find group %s: no matching entries in group file"
                                  % group_arg)
    elif matched_name:
        user.sgids = [g[1] for g in parse_group(group_text) if matched_name in g[2]]
    return user


def get_additional_groups(names, group_text):
    """user.GetAdditionalGroups: --group-add names or gids -> gids."""
    groups = parse_group(group_text)
    gids = []
    for name in names:
        found = [g[1] for g in groups if g[0] == name or str(g[1]) == name]
        if found:
            gids.append(found[0])
        elif name.isdigit():
            gids.append(_check_id(int(name)))
        else:
            raise ExecdriverError("Unable to find group %s" % name)
    return gids


def _check_id(value):
    if value > _MAX_ID:
        raise ExecdriverError("uids and gids must be in range 0-%d" % _MAX_ID)
    return value


def _read_container_file(path):
    """A small regular file of the container (after pivot_root), or None if there is none.

    O_NONBLOCK and the regular-file check keep a FIFO planted by the image from hanging us.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read(4 * 1024 * 1024).decode("utf-8", "replace")


def capability_mask(privileged, cap_add, cap_drop):
    """execdriver.TweakCapabilities as a bounding-set mask: the defaults, minus the drops,
    plus the adds ("ALL" works in both); privileged keeps every capability the kernel has."""
    last = _cap_last_cap()
    everything = set(CAPABILITIES[:last + 1])
    if privileged:
        return _mask_of(everything)
    adds = {_capability_name(c, "add") for c in cap_add}
    drops = {_capability_name(c, "drop") for c in cap_drop}
    caps = set() if "ALL" in drops else set(DEFAULT_CAPABILITIES) - drops
    if "ALL" in adds:
        caps = everything - drops
    caps |= adds - {"ALL"}
    return _mask_of(caps & everything)


def _capability_name(name, action):
    upper = name.upper()
    if upper == "ALL":
        return upper
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in CAPABILITIES:
        raise ExecdriverError('Unknown capability to %s: "%s"' % (action, name), 128)
    return upper


def _mask_of(names):
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITIES.index(name)
    return mask


def _cap_last_cap():
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return min(int(f.read()), len(CAPABILITIES) - 1)
    except OSError:
        return CAPABILITIES.index("CAP_AUDIT_READ")


def _apply_capabilities(mask):
    """Drop the bounding set to mask and empty the ambient and inheritable sets.

    execve then recomputes the rest: uid 0 gets permitted = effective = the bounding set
    (CapEff a80425fb by default), any other uid gets none (security.md section 1.1).
    """
    for cap in range(_cap_last_cap() + 1):
        if not mask & (1 << cap):
            linux.prctl(linux.PR_CAPBSET_DROP, cap)
    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    effective, permitted, _ = linux.capget()
    linux.capset(effective, permitted, 0)


def seccomp_filter(profile, capabilities):
    """The seccomp program for a container's processes (security.md section 1.6): None
    for "unconfined", else Docker's default profile ("") or the profile's JSON text,
    compiled for the container's capability mask (drivers/seccomp.py)."""
    if profile == "unconfined":
        return None
    names = {name for bit, name in enumerate(CAPABILITIES) if capabilities & (1 << bit)}
    return seccomp.compile_filter(
        seccomp.load_profile(profile) if profile else seccomp.DEFAULT_PROFILE, names)


def _environment(env, home):
    """The process environment from "KEY=value" entries; HOME from passwd if unset."""
    values = {}
    for entry in env:
        key, _, value = entry.partition("=")
        values[key] = value
    values.setdefault("HOME", home)
    return values


def _make_workdir(cwd):
    """setupWorkingDirectory: a missing workdir is created; one that is a file is an error.

    It runs after pivot_root, so symlinks on the way resolve inside the container's root, as
    dockerd's FollowSymlinkInScope does: `-w /wd/x` with an image's `/wd -> /data` makes
    /data/x (makedirs alone would stop at the symlink whose target does not exist yet)."""
    try:
        os.makedirs(os.path.realpath(cwd), 0o755, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ExecdriverError("Cannot mkdir: %s is not a directory" % cwd)
    except OSError as err:
        raise ExecdriverError("mkdir %s: %s" % (cwd, _strerror(err.errno)))


def _enter_workdir(cwd):
    """chdir, then verifyCwd (CVE-2024-21626): a cwd outside our root means a leaked fd
    was used to break out, and getcwd reports it as unreachable."""
    try:
        os.chdir(cwd)
    except OSError as err:
        raise ExecdriverError('chdir to cwd ("%s") set in config.json failed: %s'
                              % (cwd, _strerror(err.errno)))
    try:
        current = os.getcwd()
    except FileNotFoundError:
        current = ""
    if not current.startswith("/"):
        raise ExecdriverError("current working directory is outside of container mount "
                              "namespace root -- possible container breakout detected", 128)


def look_path(name, path_env):
    """exec.LookPath, run inside the container's root: the executable behind args[0]."""
    if "/" in name:
        error = _executable_error(name)
        if error:
            raise ExecdriverError('exec: %s: %s' % (_go_quote(name), error))
        return name
    for directory in path_env.split(":") if path_env else []:
        candidate = os.path.join(directory or ".", name)
        if not _executable_error(candidate):
            return candidate
    raise ExecdriverError("exec: %s: executable file not found in $PATH" % _go_quote(name))


def _executable_error(path):
    """findExecutable: why path cannot be executed, or None when it can."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        return "stat %s: %s" % (path, _strerror(err.errno))
    if stat.S_ISDIR(mode):
        return _strerror(errno.EISDIR)
    if not mode & 0o111:
        return _strerror(errno.EACCES)
    return None


def _reset_signals():
    """Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive execve: give the
    container default dispositions and an empty signal mask."""
    linux.default_all_signals()
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


# ---------------------------------------------------------------------------------------
# Small helpers.
# ---------------------------------------------------------------------------------------

def _send(sock, message, fds=()):
    """One message on the init socket, with file descriptors when given (SCM_RIGHTS)."""
    ancillary = []
    if fds:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
    sock.sendmsg([json.dumps(message).encode()], ancillary)


def _recv(sock):
    """The next message and the descriptors that came with it; (None, []) at EOF."""
    data, ancillary, _, _ = sock.recvmsg(_MAX_MESSAGE, socket.CMSG_SPACE(4 * 4))
    fds = passed_fds(ancillary)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(data), fds


def passed_fds(ancillary):
    """The file descriptors in recvmsg's ancillary data (SCM_RIGHTS)."""
    fds = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(array.array("i", payload[:len(payload) - len(payload) % 4]))
    return fds


def _install_stdio(stdio):
    """Make stdio the child's fds 0, 1 and 2 (via high copies, in case they overlap)."""
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3) for fd in stdio]
    for target, fd in enumerate(copies):
        os.dup2(fd, target)
        os.close(fd)


def close_fds_except(keep):
    """Close every descriptor not in keep: a container must hold nothing of the host's
    (CVE-2024-21626 leaked a host directory this way), nor a monitor the daemon's."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _same_file(a, b):
    first, second = os.stat(a), os.stat(b)
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _within(path, root):
    return path == root or path.startswith(root.rstrip("/") + "/")


def _clean_path(path):
    return os.path.normpath("/" + path).replace("//", "/")


def _describe_os_error(err):
    """An OSError as Docker words one: "<path>: <errno text>", or drivers.linux's message."""
    if err.filename:
        return "%s: %s" % (err.filename, _strerror(err.errno))
    return err.strerror or str(err)


def _strerror(code):
    """Go's lower-case errno text ("no such file or directory"), which Docker's messages
    and its exit-code rules use."""
    text = os.strerror(code) if code else "unknown error"
    return text[:1].lower() + text[1:]


def _go_quote(text):
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')
