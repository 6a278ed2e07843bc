"""Control groups: the devices controller, which keeps a container away from the host's devices.

Docker 1.8.2 reached cgroups through libcontainer (vendor/.../libcontainer/cgroups/fs, one file
per controller; this is its devices.go part and the directory handling around it). Memory, cpu,
pids, freezing and stats will join it here.

Why the devices controller comes first: a container keeps CAP_MKNOD (Docker's default
capabilities), so it can `mknod /tmp/sda b 8 0`. The node is only a name; the kernel checks the
device cgroup of the process that opens it. Docker's rules deny everything, allow mknod of any
node (images create their own /dev entries), and allow reading and writing only harmless
devices: null, zero, full, random, urandom, tty, console, ptmx, the pseudo-terminals and tun.
Opening the node of a host disk then fails with EPERM ("Operation not permitted").

cgroup v1, which this module implements: the devices hierarchy is a directory tree, and each
container gets <mount>/pydockerd/<id> (Docker's is <mount>/docker/<id>). Writing "a" to
devices.deny empties the allow list; each line written to devices.allow adds an exception
("c 1:3 rwm": character device 1:3, read, write and mknod); devices.list shows the result.
Writing a pid to cgroup.procs moves that process in, and its future children inherit it.

cgroup v2 has no devices files: its filter is an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE)
attached to the container's cgroup, and that is not built yet. On a host without a v1 devices
hierarchy device_cgroup_supported() is False, and the daemon must then drop CAP_MKNOD from
every unprivileged container (security.md 1.4, podman's choice). It must never run a container
that can mknod without a device filter.

How the daemon uses it: create() before the container starts; add(pid) for the init, and for
each exec'd process, while it waits at the exec gate, so that no code from the image runs
outside the cgroup; remove() once the container has exited. The path follows from the
container ID, so after a restart the daemon finds the cgroup again with load().
"""
import errno
import os
import re
import time

from drivers import errdefs, linux

MOUNTINFO = "/proc/self/mountinfo"
PARENT = "pydockerd"  # Docker's cgroup parent is "docker"

# Container IDs become directory names, so they may not contain "/" or be "." or "..".
VALID_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

# (allow, rule) in the order Docker writes them: an allow rule goes to devices.allow, a deny
# rule to devices.deny. A rule is "<type> <major>:<minor> <access>": type c (character),
# b (block) or a (all); * is any number; access is r(ead), w(rite), m(knod).
DEFAULT_RULES = [
    # moby's defaults (oci/defaults.go): deny everything, then allow these devices.
    (False, "a"),
    (True, "c 1:5 rwm"),   # /dev/zero
    (True, "c 1:3 rwm"),   # /dev/null
    (True, "c 1:9 rwm"),   # /dev/urandom
    (True, "c 1:8 rwm"),   # /dev/random
    (True, "c 5:0 rwm"),   # /dev/tty
    (True, "c 5:1 rwm"),   # /dev/console
    (False, "c 10:229 rwm"),  # /dev/fuse: never opened (runc's "c *:* m" lets it be made)
    # runc appends its AllowedDevices (libcontainer/specconv); the kernel merges repeats.
    (True, "c *:* m"),     # mknod of any node: runc itself calls this "questionable"
    (True, "b *:* m"),
    (True, "c 1:3 rwm"),
    (True, "c 1:8 rwm"),
    (True, "c 1:7 rwm"),   # /dev/full
    (True, "c 5:0 rwm"),
    (True, "c 1:5 rwm"),
    (True, "c 1:9 rwm"),
    (True, "c 136:* rwm"),  # /dev/pts/*
    (True, "c 5:2 rwm"),   # /dev/ptmx
    (True, "c 10:200 rwm"),  # /dev/net/tun
]

# --privileged: every device, like Docker's AllowAllDevices.
PRIVILEGED_RULES = [(True, "a")]


class CgroupError(errdefs.System):
    """A cgroup could not be created, joined or removed."""


def cgroup_error(action, err):
    """`cgroups: write a to .../devices.deny: invalid argument`: Go's lower-case errno text."""
    return CgroupError("cgroups: %s: %s" % (action, os.strerror(err.errno).lower()))


def cgroup_v1_mounts(mountinfo=MOUNTINFO):
    """Each v1 controller's mount point, from mountinfo (cgroups.FindCgroupMountpoint)."""
    mounts = {}
    with open(mountinfo) as lines:
        for line in lines:
            fields = line.split()
            separator = fields.index("-")
            if fields[separator + 1] != "cgroup":
                continue
            for option in fields[separator + 3].split(","):
                mounts.setdefault(option, linux.unescape_mount_path(fields[4]))
    return mounts


def device_cgroup_supported(mountinfo=MOUNTINFO):
    """True when a v1 devices hierarchy is mounted and writable, so containers may keep
    CAP_MKNOD. False on a cgroup v2-only host: the daemon must then drop CAP_MKNOD."""
    mountpoint = cgroup_v1_mounts(mountinfo).get("devices")
    return mountpoint is not None and os.access(os.path.join(mountpoint, "devices.allow"),
                                                os.W_OK)


class DeviceCgroup(object):
    """The devices hierarchy's directory for the daemon's containers: <mount>/<parent>/<id>."""

    def __init__(self, parent=PARENT, mountinfo=MOUNTINFO):
        mountpoint = cgroup_v1_mounts(mountinfo).get("devices")
        if mountpoint is None:
            raise CgroupError("cgroups: the devices controller is not mounted (a cgroup v2 "
                              "device filter needs eBPF, which pydockerd does not build)")
        self.root = os.path.join(mountpoint, parent)

    def load(self, container_id):
        """The container's cgroup, whether or not it exists (how a restarted daemon finds it)."""
        if not VALID_ID.match(container_id):
            raise CgroupError("cgroups: invalid container ID %r" % container_id)
        return Cgroup(os.path.join(self.root, container_id))

    def create(self, container_id, privileged=False):
        """Make the container's cgroup and write its rules (Docker's, or all for privileged).

        A cgroup left by a daemon crash is reused: its rules are written afresh, and both rule
        sets begin with an "a" line that resets whatever was there. If a write fails, the
        directory stays for remove(); the container is not started anyway.
        """
        cgroup = self.load(container_id)
        try:
            os.makedirs(cgroup.path, 0o755, exist_ok=True)
        except OSError as err:
            raise cgroup_error("mkdir " + err.filename, err) from None
        cgroup.set_rules(PRIVILEGED_RULES if privileged else DEFAULT_RULES)
        return cgroup


class Cgroup(object):
    """One container's devices cgroup (libcontainer's cgroups.Manager, devices only)."""

    def __init__(self, path):
        self.path = path

    def set_rules(self, rules):
        """devices.go Set: write each (allow, rule) to devices.allow or devices.deny, in order."""
        for allow, rule in rules:
            self._write("devices.allow" if allow else "devices.deny", rule)

    def add(self, pid):
        """Manager.Apply: move the process (all its threads) in; its children follow it."""
        self._write("cgroup.procs", str(pid))

    def remove(self, timeout=1.0):
        """Manager.Destroy: rmdir the cgroup, which the kernel refuses (EBUSY) while any
        process is inside, so the last ones are given `timeout` seconds to finish exiting.
        A cgroup that is already gone is fine."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError as err:
                if err.errno != errno.EBUSY or time.monotonic() >= deadline:
                    raise cgroup_error("rmdir " + self.path, err) from None
            time.sleep(0.01)

    def _write(self, name, data):
        """One write(2) per line: the kernel parses each write as a single rule or pid."""
        path = os.path.join(self.path, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, data.encode())
            finally:
                os.close(fd)
        except OSError as err:
            raise cgroup_error("write %s to %s" % (data, path), err) from None
