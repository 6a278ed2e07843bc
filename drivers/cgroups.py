"""Control groups: a container's resource limits, its device filter, freezing, and statistics.

Docker 1.8.2 reached cgroups through libcontainer's cgroupfs driver (libcontainer/cgroups/fs, one
file per controller); runc later added cgroups/fs2 for cgroup v2. This module is both, the way
pydockerd uses them:

    driver = Driver(find_hierarchies(), probe_features(...), parent="/pydockerd")
    manager = driver.manager(container_id)        # where its cgroups go (nothing made yet)
    manager.create(resources, rules)              # directories, limits, device filter
    manager.apply(pid)                            # the process, still at the exec gate, moves in
    manager.update(new, old) / freeze() / thaw() / stats() / oom_kills()
    manager.destroy()                             # after the last process has exited

The hierarchies (find_hierarchies reads /proc/self/mountinfo and /proc/self/cgroup):

  * cgroup v1: one tree per controller (memory, cpu, cpuacct, cpuset, pids, blkio, devices,
    freezer), usually mounted at /sys/fs/cgroup/<controller>; co-mounted controllers share a
    tree (cpu,cpuacct). A container has one directory in each tree, all with the same relative
    path, and its process is written into each one's cgroup.procs.
  * cgroup v2: one tree (/sys/fs/cgroup) holding every controller; a controller works in a
    directory only once its parent lists it in cgroup.subtree_control, so create() enables the
    ones it needs all the way down. There is no devices controller (the filter is an eBPF
    program, drivers/devicefilter.py) and no freezer controller (cgroup.freeze is core).
  * hybrid: v1 controllers plus an empty v2 tree at /sys/fs/cgroup/unified. The v1 side does
    the work, as in runc.

Where a container's cgroup goes is libcontainer's subsysPath: <parent>/<container id>, where an
absolute parent ("/docker" is Docker's default) starts at the root of each hierarchy and a
relative one starts at the cgroup the daemon itself runs in (which keeps the containers of a
daemon started inside a limited cgroup inside that limit). Parent directories stay; only the
container's own directory is removed.

The limits are Docker's (HostConfig names, turned into Resources by drivers/runconfig.py) and
land in the files runc writes:

    Resources            v1 file                            v2 file
    memory               memory.limit_in_bytes              memory.max
    memory_swap          memory.memsw.limit_in_bytes        memory.swap.max (minus memory)
    memory_reservation   memory.soft_limit_in_bytes         memory.low
    kernel_memory(_tcp)  memory.kmem(.tcp).limit_in_bytes   - (refused)
    oom_kill_disable     memory.oom_control                 - (refused)
    memory_swappiness    memory.swappiness                  - (refused)
    cpu_shares           cpu.shares                         cpu.weight (1 + (s-2)*9999/262142)
    cpu_period/quota     cpu.cfs_period_us, cfs_quota_us    cpu.max ("quota period")
    cpuset_cpus/mems     cpuset.cpus, cpuset.mems           cpuset.cpus, cpuset.mems
    pids_limit           pids.max                           pids.max
    blkio_weight(_dev)   blkio.weight(_device)              io.weight (1 + (w-10)*9999/990)
    throttle_*           blkio.throttle.*_device            io.max (rbps= wbps= riops= wiops=)

Device rules ("c 1:3 rwm": type, major:minor, access read/write/mknod) go to devices.allow and
devices.deny on v1, and into the eBPF filter on v2. Docker's defaults deny everything, allow
mknod of any node (images make their own /dev entries) and read/write of the harmless devices,
so a container that keeps CAP_MKNOD still cannot open the node of a host disk it made.

Every write is one write(2) (the kernel parses each as one value or rule) and a refusal comes
back as CgroupError with the kernel's reason in Go's words ("invalid argument").
"""
import dataclasses
import errno
import os
import re
import time

from drivers import devicefilter, errdefs, linux

MOUNTINFO = "/proc/self/mountinfo"
PROC_CGROUP = "/proc/self/cgroup"
DEFAULT_PARENT = "/pydockerd"  # Docker's is "/docker"

# The v1 controllers pydockerd manages, and the v2 controllers it enables for its containers.
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "devices", "freezer")
V2_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "pids")

# Container IDs and parents become directory names: no "/" in an ID, no "." or ".." anywhere.
VALID_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

# kmem.limit_in_bytes: deprecated in 5.4, and writes fail or do nothing from 5.16 on.
KERNEL_MEMORY_REMOVED = (5, 16, 0)
# cgroup.freeze, the v2 freezer, came with 5.2.
V2_FREEZER_SINCE = (5, 2, 0)

# How long freeze() waits for every task to stop (runc retries for a while too).
FREEZE_TIMEOUT = 5.0

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
    """A cgroup could not be created, joined, changed or removed."""


def cgroup_error(action, err):
    """`cgroups: write a to .../devices.deny: invalid argument`: Go's lower-case errno text."""
    return CgroupError("cgroups: %s: %s" % (action, os.strerror(err.errno).lower()))


# ---------------------------------------------------------------------------------------------
# What is mounted, and what it can do (pkg/sysinfo).
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Hierarchies:
    """The mounted cgroup trees: v1 maps a controller to its mount point, unified is the v2
    mount point ("" if none), own maps a controller ("" for v2) to the daemon's cgroup in it,
    relative to that mount's root."""
    v1: dict
    unified: str
    own: dict

    @property
    def version(self):
        """"1" when any v1 controller pydockerd uses is mounted (hybrid hosts too), "2" on a
        unified-only host, "" without cgroups."""
        if any(name in self.v1 for name in V1_CONTROLLERS):
            return "1"
        return "2" if self.unified else ""


def find_hierarchies(mountinfo=MOUNTINFO, proc_cgroup=PROC_CGROUP):
    """cgroups.FindCgroupMountpoint for every controller, and the daemon's own cgroups."""
    v1, roots, unified = {}, {}, ""
    with open(mountinfo) as lines:
        for line in lines:
            fields = line.split()
            separator = fields.index("-")
            fstype, root = fields[separator + 1], linux.unescape_mount_path(fields[3])
            mountpoint = linux.unescape_mount_path(fields[4])
            if fstype == "cgroup2" and not unified:
                unified, roots[""] = mountpoint, root
            elif fstype == "cgroup":
                for option in fields[separator + 3].split(","):
                    if option not in v1 and option not in ("rw", "ro"):
                        v1[option], roots[option] = mountpoint, root
    own = {}
    with open(proc_cgroup) as lines:
        for line in lines:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(",") if names else [""]:
                own[name] = _relative_to(path, roots.get(name, "/"))
    return Hierarchies(v1, unified, own)


def _relative_to(path, root):
    """A cgroup path as seen below a mount of `root` (a cgroup namespace or a bind mount)."""
    if root != "/" and (path == root or path.startswith(root + "/")):
        return path[len(root):] or "/"
    return path


@dataclasses.dataclass
class Features:
    """pkg/sysinfo.SysInfo: what this host's cgroups can enforce for a container.

    devices is "v1" (the devices controller), "bpf" (a v2 eBPF filter) or "" (no filter:
    containers must then lose CAP_MKNOD). cpus and mems are the CPUs and memory nodes a
    container may be given ("0-1").
    """
    version: str
    memory: bool = False
    swap: bool = False
    kernel_memory: bool = False
    kernel_memory_tcp: bool = False
    oom_kill_disable: bool = False
    swappiness: bool = False
    cpu_shares: bool = False
    cfs: bool = False
    cpuset: bool = False
    cpus: str = ""
    mems: str = ""
    pids: bool = False
    blkio_weight: bool = False
    blkio_weight_device: bool = False
    blkio_throttle: bool = False
    freezer: bool = False
    devices: str = ""

    @property
    def warnings(self):
        """The WARNING lines dockerd's `docker info` prints for what the host lacks."""
        v1 = self.version == "1"
        wanted = [(self.memory, "WARNING: No memory limit support"),
                  (self.swap, "WARNING: No swap limit support"),
                  (self.kernel_memory or not v1, "WARNING: No kernel memory limit support"),
                  (self.kernel_memory_tcp or not v1, "WARNING: No kernel memory TCP limit support"),
                  (self.oom_kill_disable or not v1, "WARNING: No oom kill disable support"),
                  (self.cfs, "WARNING: No cpu cfs quota support"),
                  (self.cfs, "WARNING: No cpu cfs period support"),
                  (self.cpu_shares, "WARNING: No cpu shares support"),
                  (self.cpuset, "WARNING: No cpuset support"),
                  (self.pids, "WARNING: No pids limit support"),
                  (self.blkio_weight, "WARNING: No blkio weight support" if v1
                   else "WARNING: No io.weight support"),
                  (self.blkio_weight_device, "WARNING: No blkio weight_device support" if v1
                   else "WARNING: No io.weight (per device) support")]
        for kind in ("read_bps", "write_bps", "read_iops", "write_iops"):
            wanted.append((self.blkio_throttle,
                           "WARNING: No blkio throttle.%s_device support" % kind if v1 else
                           "WARNING: No io.max (%s) support" % _IO_MAX_KEYS[kind]))
        return [text for present, text in wanted if not present]


def probe_features(hierarchies, kernel=None, device_filter_supported=None):
    """What the mounted hierarchies offer (kernel and device_filter_supported are for tests)."""
    kernel = kernel or linux.kernel_version()
    if device_filter_supported is None:
        device_filter_supported = devicefilter.supported
    if hierarchies.version == "1":
        return _probe_v1(hierarchies, kernel, device_filter_supported)
    if hierarchies.version == "2":
        return _probe_v2(hierarchies, kernel, device_filter_supported)
    return Features(version="")


def _probe_v1(hierarchies, kernel, device_filter_supported):
    def has(controller, name=""):
        mountpoint = hierarchies.v1.get(controller)
        return mountpoint is not None and (not name or os.path.exists(
            os.path.join(mountpoint, name)))

    features = Features(version="1")
    features.memory = has("memory")
    features.swap = has("memory", "memory.memsw.limit_in_bytes")
    features.kernel_memory = has("memory", "memory.kmem.limit_in_bytes") and \
        kernel < KERNEL_MEMORY_REMOVED
    features.kernel_memory_tcp = has("memory", "memory.kmem.tcp.limit_in_bytes")
    features.oom_kill_disable = has("memory", "memory.oom_control")
    features.swappiness = has("memory", "memory.swappiness")
    features.cpu_shares = has("cpu", "cpu.shares")
    features.cfs = has("cpu", "cpu.cfs_quota_us")
    features.cpuset = has("cpuset")
    if features.cpuset:
        own = _own_directory(hierarchies, "cpuset")
        features.cpus = _read_first(own, ("cpuset.effective_cpus", "cpuset.cpus"))
        features.mems = _read_first(own, ("cpuset.effective_mems", "cpuset.mems"))
    features.pids = has("pids")
    features.blkio_weight = bool(_blkio_file(hierarchies.v1.get("blkio"), "weight"))
    features.blkio_weight_device = bool(_blkio_file(hierarchies.v1.get("blkio"), "weight_device"))
    features.blkio_throttle = has("blkio", "blkio.throttle.read_bps_device")
    features.freezer = has("freezer")
    mountpoint = hierarchies.v1.get("devices")
    if mountpoint and os.access(os.path.join(mountpoint, "devices.allow"), os.W_OK):
        features.devices = "v1"
    elif hierarchies.unified and device_filter_supported():
        features.devices = "bpf"
    return features


def _probe_v2(hierarchies, kernel, device_filter_supported):
    root = hierarchies.unified
    controllers = set(_read(os.path.join(root, "cgroup.controllers")).split())
    features = Features(version="2")
    features.memory = features.swap = "memory" in controllers
    features.cpu_shares = features.cfs = "cpu" in controllers
    features.cpuset = "cpuset" in controllers
    if features.cpuset:
        own = _own_directory(hierarchies, "")
        features.cpus = _read_first(own, ("cpuset.cpus.effective",)) or _online("cpu")
        features.mems = _read_first(own, ("cpuset.mems.effective",)) or _online("node")
    features.pids = "pids" in controllers
    features.blkio_weight = features.blkio_weight_device = features.blkio_throttle = \
        "io" in controllers
    features.freezer = kernel >= V2_FREEZER_SINCE
    features.devices = "bpf" if device_filter_supported() else ""
    return features


def _own_directory(hierarchies, controller):
    mountpoint = hierarchies.v1.get(controller) if controller else hierarchies.unified
    return os.path.join(mountpoint, hierarchies.own.get(controller, "/").lstrip("/"))


def _read_first(directory, names):
    for name in names:
        try:
            return _read(os.path.join(directory, name)).strip()
        except OSError:
            continue
    return ""


def _online(kind):
    """/sys/devices/system/<cpu|node>/online: "0-1"."""
    try:
        return _read("/sys/devices/system/%s/online" % kind).strip()
    except OSError:
        return "0"


def _blkio_file(mountpoint, kind):
    """blkio.bfq.<kind> (the BFQ scheduler) or blkio.<kind> (CFQ), whichever the kernel has."""
    for name in ("blkio.bfq." + kind, "blkio." + kind):
        if mountpoint and os.path.exists(os.path.join(mountpoint, name)):
            return name
    return ""


def parse_cpu_list(text):
    """"0-2,4" -> {0, 1, 2, 4} (the kernel's list format); ValueError if malformed."""
    numbers = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, sep, last = part.partition("-")
        if not first.isdigit() or (sep and not last.isdigit()):
            raise ValueError(text)
        numbers.update(range(int(first), int(last if sep else first) + 1))
    return numbers


# ---------------------------------------------------------------------------------------------
# The limits, and the driver that places each container's cgroups.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Resources:
    """libcontainer's configs.Resources: a container's limits, 0 (or "") meaning "not set".

    memory_swap is memory plus swap (-1: unlimited swap); pids_limit and cpu_quota take -1 for
    "no limit"; memory_swappiness -1 is "not set". Device lists hold (major, minor, value).
    """
    memory: int = 0
    memory_swap: int = 0
    memory_reservation: int = 0
    kernel_memory: int = 0
    kernel_memory_tcp: int = 0
    oom_kill_disable: bool = False
    memory_swappiness: int = -1
    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    pids_limit: int = 0
    blkio_weight: int = 0
    blkio_weight_device: list = dataclasses.field(default_factory=list)
    throttle_read_bps: list = dataclasses.field(default_factory=list)
    throttle_write_bps: list = dataclasses.field(default_factory=list)
    throttle_read_iops: list = dataclasses.field(default_factory=list)
    throttle_write_iops: list = dataclasses.field(default_factory=list)


THROTTLES = ("read_bps", "write_bps", "read_iops", "write_iops")

# The files `docker update` may change: one value each, so the old one can be written back.
UPDATABLE_FILES = {"memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
                   "memory.soft_limit_in_bytes", "memory.kmem.limit_in_bytes", "cpu.shares",
                   "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpuset.cpus", "cpuset.mems",
                   "pids.max", "blkio.weight", "blkio.bfq.weight", "memory.max", "memory.swap.max",
                   "memory.low", "cpu.weight", "cpu.max"}
_IO_MAX_KEYS = {"read_bps": "rbps", "write_bps": "wbps", "read_iops": "riops",
                "write_iops": "wiops"}


class Driver(object):
    """The cgroupfs driver: where each container's cgroups go on this host."""

    def __init__(self, hierarchies, features, parent=DEFAULT_PARENT):
        self.hierarchies = hierarchies
        self.features = features
        self.parent = parent or DEFAULT_PARENT

    @property
    def version(self):
        return self.hierarchies.version

    def manager(self, container_id, parent=""):
        """The Manager for a container's cgroups under `parent` (default: the daemon's)."""
        if not VALID_ID.match(container_id):
            raise CgroupError("cgroups: invalid container ID %r" % container_id)
        parent = check_parent(parent or self.parent)
        if self.version == "2":
            return V2Manager({"": self._path("", parent, container_id)}, self.hierarchies.unified)
        paths = {controller: self._path(controller, parent, container_id)
                 for controller in V1_CONTROLLERS if controller in self.hierarchies.v1}
        return V1Manager(paths, self.hierarchies.v1)

    def load(self, paths):
        """A Manager for cgroups recorded earlier (how a restarted daemon finds them again)."""
        if "" in paths:
            return V2Manager(dict(paths), self.hierarchies.unified)
        return V1Manager(dict(paths), self.hierarchies.v1)

    def _path(self, controller, parent, container_id):
        """subsysPath: an absolute parent from the hierarchy's root, a relative one from the
        daemon's own cgroup."""
        mountpoint = self.hierarchies.v1[controller] if controller else self.hierarchies.unified
        inner = parent if parent.startswith("/") else \
            os.path.join(self.hierarchies.own.get(controller, "/"), parent)
        return os.path.join(mountpoint, inner.strip("/"), container_id)


def check_parent(parent):
    """A --cgroup-parent may not climb out of the hierarchy: no "." or ".." components."""
    parts = [part for part in parent.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise CgroupError("cgroups: invalid cgroup parent %r" % parent)
    return ("/" if parent.startswith("/") else "") + "/".join(parts)


class Manager(object):
    """One container's cgroups (libcontainer's cgroups.Manager). paths maps each controller
    ("" for v2) to its directory; the same directory may serve co-mounted controllers."""

    def __init__(self, paths):
        self.paths = paths

    @property
    def directories(self):
        return sorted(set(self.paths.values()))

    def create(self, resources, rules):
        """Make the directories and write the limits and device rules, before any process
        joins. A cgroup a crashed daemon left behind is reused and rewritten. On any failure
        what was made is removed again and CgroupError raised."""
        try:
            self._make_directories()
            self.set(resources)
            self._set_devices(rules)
        except BaseException:
            self.destroy()
            raise

    def set(self, resources):
        """Write every limit that is set; the unset ones keep the kernel's defaults."""
        for directory, name, value in self._writes(resources):
            _write(directory, name, value)

    def update(self, resources):
        """Change the limits `docker update` may change (single-value files) on a running
        container. Each file's old value is kept; if the kernel refuses a value (a memory
        limit below what the container uses: EBUSY), the files already written get their old
        values back, in reverse order, so nothing changed, and the refusal is raised."""
        changed = []
        try:
            for directory, name, value in self._writes(resources):
                if name not in UPDATABLE_FILES:
                    continue  # device lists and the like: an update cannot change them
                old = _read(os.path.join(directory, name)).strip()
                if old != value:
                    _write(directory, name, value)
                    changed.append((directory, name, old))
        except CgroupError:
            for directory, name, old in reversed(changed):
                try:
                    _write(directory, name, old)
                except CgroupError:
                    pass
            raise

    def apply(self, pid):
        """Manager.Apply: move the process (all its threads) in; its children follow it."""
        for directory in self.directories:
            _write(directory, "cgroup.procs", str(pid))

    def pids(self):
        """Manager.GetPids: the processes in the container's cgroup (host pids). Every
        controller holds the same ones (apply() moved them into each), so one is read."""
        text = _read(os.path.join(self.directories[0], "cgroup.procs"))
        return [int(pid) for pid in text.split()]

    def destroy(self, timeout=1.0):
        """Manager.Destroy: rmdir each directory. The kernel refuses (EBUSY) while a process is
        inside, so the last ones get `timeout` seconds to finish exiting. Gone is fine."""
        deadline = time.monotonic() + timeout
        for directory in sorted(self.directories, key=len, reverse=True):
            while True:
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError as err:
                    if err.errno != errno.EBUSY or time.monotonic() >= deadline:
                        raise cgroup_error("rmdir " + directory, err) from None
                time.sleep(0.01)

    def _wait_frozen(self, frozen):
        deadline = time.monotonic() + FREEZE_TIMEOUT
        delay = 0.001
        while not frozen():
            if time.monotonic() >= deadline:
                self.thaw()
                raise CgroupError("cgroups: the container's processes did not freeze within %ds"
                                  % FREEZE_TIMEOUT)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


class V1Manager(Manager):
    """libcontainer/cgroups/fs: a directory per controller."""

    def __init__(self, paths, mountpoints):
        super().__init__(paths)
        self.mountpoints = mountpoints

    def mount_view(self):
        """What the container sees in /sys/fs/cgroup: its directory of each hierarchy, under
        the hierarchy's mount name (execdriver.Command.cgroup_paths)."""
        return {os.path.basename(self.mountpoints[controller]): path
                for controller, path in self.paths.items()}

    def _make_directories(self):
        for controller, path in sorted(self.paths.items()):
            if controller == "cpuset":
                self._make_cpuset(path)
            else:
                _mkdir(path)

    def _make_cpuset(self, path):
        """cpuset's ensureParent: a new cpuset directory has no CPUs and no memory nodes, and
        a process cannot join it until both are set, so each new level copies its parent's."""
        mountpoint = self.mountpoints["cpuset"]
        current = mountpoint
        for part in os.path.relpath(path, mountpoint).split("/"):
            parent, current = current, os.path.join(current, part)
            if os.path.isdir(current):
                continue
            _mkdir(current)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not _read(os.path.join(current, name)).strip():
                    _write(current, name, _read(os.path.join(parent, name)).strip())

    def _writes(self, r):
        """The (directory, file, value) writes for these limits, in a valid order; unset
        limits are left out (the kernel's default stays)."""
        writes = self._memory_writes(r)
        directory = self.paths.get("cpu")
        if directory:
            writes += _set_values(directory, [("cpu.shares", r.cpu_shares),
                                              ("cpu.cfs_period_us", r.cpu_period),
                                              ("cpu.cfs_quota_us", r.cpu_quota)])
        directory = self.paths.get("cpuset")
        if directory:
            writes += _set_values(directory, [("cpuset.cpus", r.cpuset_cpus),
                                              ("cpuset.mems", r.cpuset_mems)])
        if self.paths.get("pids") and r.pids_limit:
            writes.append((self.paths["pids"], "pids.max", _pids_max(r.pids_limit)))
        return writes + self._blkio_writes(r)

    def _memory_writes(self, r):
        directory = self.paths.get("memory")
        if not directory:
            return []
        limits = [("memory.limit_in_bytes", r.memory), ("memory.memsw.limit_in_bytes",
                                                        r.memory_swap)]
        if r.memory and r.memory_swap:
            # memsw may never be below the memory limit: raise it first when growing.
            current = int(_read(os.path.join(directory, "memory.limit_in_bytes")))
            if r.memory_swap == -1 or current < r.memory_swap:
                limits.reverse()
        writes = _set_values(directory, limits + [
            ("memory.soft_limit_in_bytes", r.memory_reservation),
            ("memory.kmem.limit_in_bytes", r.kernel_memory),
            ("memory.kmem.tcp.limit_in_bytes", r.kernel_memory_tcp)])
        if r.oom_kill_disable:
            writes.append((directory, "memory.oom_control", "1"))
        if r.memory_swappiness >= 0:
            writes.append((directory, "memory.swappiness", str(r.memory_swappiness)))
        return writes

    def _blkio_writes(self, r):
        directory = self.paths.get("blkio")
        if not directory:
            return []
        mountpoint = self.mountpoints["blkio"]
        writes = _set_values(directory, [(_blkio_file(mountpoint, "weight"), r.blkio_weight)])
        writes += [(directory, _blkio_file(mountpoint, "weight_device"), "%d:%d %d" % entry)
                   for entry in r.blkio_weight_device]
        for kind in THROTTLES:
            writes += [(directory, "blkio.throttle.%s_device" % kind, "%d:%d %d" % entry)
                       for entry in getattr(r, "throttle_" + kind)]
        return writes

    def _set_devices(self, rules):
        directory = self.paths.get("devices")
        if directory:
            for allow, rule in rules:
                _write(directory, "devices.allow" if allow else "devices.deny", rule)

    def freeze(self):
        """The v1 freezer: FROZEN once every task has stopped (FREEZING until then)."""
        directory = self._freezer()
        _write(directory, "freezer.state", "FROZEN")
        self._wait_frozen(self.frozen)

    def thaw(self):
        _write(self._freezer(), "freezer.state", "THAWED")

    def frozen(self):
        return _read(os.path.join(self._freezer(), "freezer.state")).strip() == "FROZEN"

    def _freezer(self):
        if "freezer" not in self.paths:
            raise CgroupError("cgroups: the freezer controller is not mounted")
        return self.paths["freezer"]

    def oom_kills(self):
        """How many processes the OOM killer took from this cgroup (memory.oom_control)."""
        directory = self.paths.get("memory")
        return _read_keyed(os.path.join(directory, "memory.oom_control")).get("oom_kill", 0) \
            if directory else 0

    def stats(self):
        """statsV1: the memory, cpu, pids and blkio parts of Docker's stats, from the files."""
        result = {}
        directory = self.paths.get("memory")
        if directory:
            memory = {"usage": _read_int(directory, "memory.usage_in_bytes"),
                      "max_usage": _read_int(directory, "memory.max_usage_in_bytes"),
                      "stats": _read_keyed(os.path.join(directory, "memory.stat")),
                      "limit": _read_int(directory, "memory.limit_in_bytes")}
            failcnt = _read_int(directory, "memory.failcnt")
            if failcnt:
                memory["failcnt"] = failcnt
            result["memory_stats"] = memory
        cpu = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
                             "usage_in_usermode": 0},
               "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
        directory = self.paths.get("cpuacct")
        if directory:
            ticks = _read_keyed(os.path.join(directory, "cpuacct.stat"))
            usage = cpu["cpu_usage"]
            usage["total_usage"] = _read_int(directory, "cpuacct.usage")
            usage["percpu_usage"] = [int(n) for n in _read(
                os.path.join(directory, "cpuacct.usage_percpu")).split()]
            usage["usage_in_kernelmode"] = _ticks_to_ns(ticks.get("system", 0))
            usage["usage_in_usermode"] = _ticks_to_ns(ticks.get("user", 0))
        directory = self.paths.get("cpu")
        if directory:
            throttled = _read_keyed(os.path.join(directory, "cpu.stat"))
            cpu["throttling_data"] = {"periods": throttled.get("nr_periods", 0),
                                      "throttled_periods": throttled.get("nr_throttled", 0),
                                      "throttled_time": throttled.get("throttled_time", 0)}
        result["cpu_stats"] = cpu
        directory = self.paths.get("pids")
        if directory:
            result["pids_stats"] = _pids_stats(directory)
        result["blkio_stats"] = _blkio_stats_v1(self.paths.get("blkio"))
        return result


class V2Manager(Manager):
    """libcontainer/cgroups/fs2: one directory in the unified tree mounted at mountpoint."""

    def __init__(self, paths, mountpoint):
        super().__init__(paths)
        self.mountpoint = mountpoint

    @property
    def path(self):
        return self.paths[""]

    def mount_view(self):
        """The container's directory is its whole /sys/fs/cgroup."""
        return {"": self.path}

    def _make_directories(self):
        """mkdir every missing level, each parent from the tree's root down first enabling the
        controllers pydockerd uses among those it offers (cgroup.subtree_control)."""
        relative = os.path.relpath(self.path, self.mountpoint).split("/")
        current = self.mountpoint
        for part in relative:
            _enable_controllers(current)
            current = os.path.join(current, part)
            _mkdir(current)

    def _writes(self, r):
        """The v2 files for these limits (runc's fs2 conversions); unset ones left out."""
        directory = self.path
        swap = "max" if r.memory_swap == -1 else max(r.memory_swap - r.memory, 0)
        cpu_max = "%s %d" % (r.cpu_quota if r.cpu_quota > 0 else "max", r.cpu_period or 100000)
        writes = _set_values(directory, [
            ("memory.max", r.memory), ("memory.swap.max", swap if r.memory_swap else 0),
            ("memory.low", r.memory_reservation),
            ("cpu.weight", r.cpu_shares and cpu_shares_to_weight(r.cpu_shares)),
            ("cpu.max", cpu_max if r.cpu_quota or r.cpu_period else ""),
            ("cpuset.cpus", r.cpuset_cpus), ("cpuset.mems", r.cpuset_mems),
            ("pids.max", r.pids_limit and _pids_max(r.pids_limit)),
            ("io.weight", r.blkio_weight and blkio_weight_to_io_weight(r.blkio_weight))])
        writes += [(directory, "io.weight", "%d:%d %d" % (major, minor,
                                                          blkio_weight_to_io_weight(weight)))
                   for major, minor, weight in r.blkio_weight_device]
        for kind in THROTTLES:
            writes += [(directory, "io.max", "%d:%d %s=%d" % (major, minor, _IO_MAX_KEYS[kind],
                                                             rate))
                       for major, minor, rate in getattr(r, "throttle_" + kind)]
        return writes

    def _set_devices(self, rules):
        """The eBPF filter; privileged containers (allow everything) get none."""
        if rules and rules != PRIVILEGED_RULES:
            devicefilter.attach(self.path, rules)

    def freeze(self):
        _write(self.path, "cgroup.freeze", "1")
        self._wait_frozen(self.frozen)

    def thaw(self):
        _write(self.path, "cgroup.freeze", "0")

    def frozen(self):
        return _read_keyed(os.path.join(self.path, "cgroup.events")).get("frozen") == 1

    def oom_kills(self):
        """memory.events counts the OOM kills (the file exists once memory is enabled)."""
        try:
            return _read_keyed(os.path.join(self.path, "memory.events")).get("oom_kill", 0)
        except OSError:
            return 0

    def stats(self):
        """statsV2: no max_usage and no per-CPU usage exist in cgroup v2."""
        directory, result = self.path, {}
        if os.path.exists(os.path.join(directory, "memory.current")):
            limit = _read(os.path.join(directory, "memory.max")).strip()
            result["memory_stats"] = {
                "usage": _read_int(directory, "memory.current"),
                "stats": _read_keyed(os.path.join(directory, "memory.stat")),
                "limit": 0 if limit == "max" else int(limit)}
        usage = _read_keyed(os.path.join(directory, "cpu.stat"))
        result["cpu_stats"] = {
            "cpu_usage": {"total_usage": usage.get("usage_usec", 0) * 1000,
                          "usage_in_kernelmode": usage.get("system_usec", 0) * 1000,
                          "usage_in_usermode": usage.get("user_usec", 0) * 1000},
            "throttling_data": {"periods": usage.get("nr_periods", 0),
                                "throttled_periods": usage.get("nr_throttled", 0),
                                "throttled_time": usage.get("throttled_usec", 0) * 1000}}
        if os.path.exists(os.path.join(directory, "pids.current")):
            result["pids_stats"] = _pids_stats(directory)
        result["blkio_stats"] = _blkio_stats_v2(directory)
        return result


def _enable_controllers(directory):
    """Enable in `directory` the controllers pydockerd uses that it offers; the root of the
    tree always may, a non-root cgroup only while it has no processes of its own."""
    offered = set(_read(os.path.join(directory, "cgroup.controllers")).split())
    enabled = set(_read(os.path.join(directory, "cgroup.subtree_control")).split())
    wanted = [name for name in V2_CONTROLLERS if name in offered and name not in enabled]
    if wanted:
        _write(directory, "cgroup.subtree_control", " ".join("+" + name for name in wanted))


def cpu_shares_to_weight(shares):
    """runc's ConvertCPUSharesToCgroupV2Value: shares 2..262144 onto weight 1..10000."""
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight):
    """runc's ConvertBlkIOToIOWeightValue: blkio weight 10..1000 onto io.weight 1..10000."""
    return 1 + (weight - 10) * 9999 // 990


def _pids_max(limit):
    return "max" if limit < 0 else str(limit)


def _pids_stats(directory):
    stats = {"current": _read_int(directory, "pids.current")}
    limit = _read(os.path.join(directory, "pids.max")).strip()
    if limit != "max":
        stats["limit"] = int(limit)
    return stats


_BLKIO_KEYS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
               "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
               "io_time_recursive", "sectors_recursive")


def _blkio_stats_v1(directory):
    """Docker's eight blkio lists; the throttle files are what modern (blk-mq) kernels keep."""
    stats = {key: [] for key in _BLKIO_KEYS}
    if not directory:
        return stats
    for key in ("io_service_bytes_recursive", "io_serviced_recursive"):
        for name in ("blkio." + key, "blkio.throttle." + key):
            try:
                text = _read(os.path.join(directory, name))
            except OSError:
                continue
            entries = []
            for line in text.splitlines():
                fields = line.split()
                if len(fields) == 3:
                    major, minor = fields[0].split(":")
                    entries.append({"major": int(major), "minor": int(minor), "op": fields[1],
                                    "value": int(fields[2])})
            if entries:
                stats[key] = entries
                break
    return stats


def _blkio_stats_v2(directory):
    """io.stat ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...") as Docker's v2 lists."""
    stats = {key: [] for key in _BLKIO_KEYS}
    try:
        text = _read(os.path.join(directory, "io.stat"))
    except OSError:
        return stats
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        major, minor = (int(n) for n in fields[0].split(":"))
        values = dict(field.split("=", 1) for field in fields[1:] if "=" in field)
        for key, read, write in (("io_service_bytes_recursive", "rbytes", "wbytes"),
                                 ("io_serviced_recursive", "rios", "wios")):
            for op, name in (("read", read), ("write", write)):
                stats[key].append({"major": major, "minor": minor, "op": op,
                                   "value": int(values.get(name, 0))})
    return stats


def _ticks_to_ns(ticks):
    """cpuacct.stat counts USER_HZ ticks; Docker reports nanoseconds."""
    return ticks * 1000000000 // os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# Files.
# ---------------------------------------------------------------------------------------------

def _mkdir(path):
    try:
        os.makedirs(path, 0o755, exist_ok=True)
    except OSError as err:
        raise cgroup_error("mkdir " + path, err) from None


def _set_values(directory, values):
    """(directory, file, value) for each (file, value) that is set (non-zero, non-empty)."""
    return [(directory, name, str(value)) for name, value in values if value]


def _write(directory, name, data):
    """One write(2) per value: the kernel parses each write as a single value or rule."""
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)
    except OSError as err:
        raise cgroup_error("write %s to %s" % (data, path), err) from None


def _read(path):
    with open(path) as f:
        return f.read()


def _read_int(directory, name):
    try:
        return int(_read(os.path.join(directory, name)).split()[0])
    except (OSError, IndexError, ValueError):
        return 0


def _read_keyed(path):
    """A flat keyed file ("key value" per line: memory.stat, cpu.stat, ...) as a dict of ints."""
    values = {}
    for line in _read(path).splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("-").isdigit():
            values[fields[0]] = int(fields[1])
    return values
