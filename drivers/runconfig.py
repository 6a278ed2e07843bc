"""runconfig: what a container's HostConfig asks of the kernel, checked before anything is made.

Docker 1.8.2's runconfig package parsed a container's HostConfig; daemon/daemon_unix.go
(verifyPlatformContainerSettings, adaptContainerSettings) then refused what the host cannot do
and filled in defaults, and the exec driver turned the rest into cgroup limits, device nodes,
rlimits and sysctls. This module is that middle layer, with dockerd's messages:

    adapt(host_config, features)                 defaults dockerd writes into the HostConfig at
                                                 create (MemorySwap twice Memory, CpuShares
                                                 clamped), with their warnings
    verify_config(config, parse_signal)          the Config's environment and stop signal
    verify(host_config, features, ...)           every limit and hardening option checked;
                                                 InvalidParameter (400) for what cannot work,
                                                 warnings for what works with a caveat
    resources(host_config)                       -> cgroups.Resources
    device_rules(host_config), devices(...)      the device filter's rules and the nodes made
                                                 in the container's /dev
    ulimits(host_config, defaults), sysctls(...) what the container's process gets
    seccomp_profile(host_config)                 its seccomp profile (execdriver.Command)

pydockerd's rule: no option is accepted and ignored. An option the kernel cannot enforce here
(kernel memory on a 5.16+ kernel, a memory limit without the memory controller) is refused at
create, where dockerd would often only warn and drop it; so are the options pydockerd does not
implement (real-time CPU, cgroup namespaces, GPUs).
"""
import os
import re
import resource
import stat

from drivers import cgroups, execdriver, linux, seccomp
from drivers.errdefs import InvalidParameter

MIN_MEMORY = 6 * 1024 * 1024       # linuxMinMemory: below it the kernel OOMs the container at once
MIN_CPU_SHARES, MAX_CPU_SHARES = 2, 262144
MIN_CPU_PERIOD, MAX_CPU_PERIOD = 1000, 1000000
MIN_CPU_QUOTA = 1000
DEFAULT_CPU_PERIOD = 100000        # --cpus: NanoCpus become a quota of this 100 ms period
MIN_BLKIO_WEIGHT, MAX_BLKIO_WEIGHT = 10, 1000
NANO = 10 ** 9

# The sysctls a container may set (docker/cli opts.ValidateSysctl, runc's validator): those of
# namespaces the container owns. The IPC ones need its own IPC namespace, net.* its own network.
IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}
VALID_SYSCTL_KEY = re.compile(r"^[a-zA-Z0-9_-]+(\.[a-zA-Z0-9_-]+)+$")

# --security-opt values pydockerd honours. AppArmor and SELinux are never applied by pydockerd,
# so asking for a container without them is already true.
SECURITY_OPTS = {"no-new-privileges", "no-new-privileges:true", "no-new-privileges=true",
                 "no-new-privileges:false", "no-new-privileges=false", "seccomp=unconfined",
                 "seccomp:unconfined", "seccomp=builtin", "seccomp:builtin",
                 "apparmor=unconfined", "apparmor:unconfined",
                 "label=disable", "label:disable", "systempaths=unconfined"}

# Where --device PATH_ON_HOST may be a directory: these are never copied (runc's HostDevices).
SKIPPED_DEVICE_DIRECTORIES = {"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"}

CAP_SYS_RESOURCE = execdriver.CAPABILITIES.index("CAP_SYS_RESOURCE")

DEVICE_CGROUP_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")


def verify_config(config, parse_signal):
    """verifyContainerSettings for the Config: every environment entry names a variable
    (opts.ValidateEnv), the stop signal is one (`parse_signal` raises for an unknown name).
    dockerd refuses these at create; started, they would fail or be ignored."""
    for entry in config.get("Env") or []:
        if not entry.partition("=")[0]:
            raise InvalidParameter("invalid environment variable: %s" % entry)
    if config.get("StopSignal"):
        parse_signal(config["StopSignal"])


def adapt(host_config, features):
    """adaptContainerSettings: the defaults dockerd stores in the HostConfig; the warnings."""
    warnings = []
    memory, swap = host_config.get("Memory") or 0, host_config.get("MemorySwap") or 0
    if memory > 0 and swap == 0 and features.swap:
        host_config["MemorySwap"] = memory * 2  # "by default, MemorySwap is twice Memory"
    shares = host_config.get("CpuShares") or 0
    for bound, wrong, word in ((MIN_CPU_SHARES, shares and shares < MIN_CPU_SHARES, "minimum"),
                               (MAX_CPU_SHARES, shares > MAX_CPU_SHARES, "maximum")):
        if wrong:
            warnings.append("Changing requested CPUShares of %d to %s allowed of %d"
                            % (shares, word, bound))
            host_config["CpuShares"] = bound
    return warnings


def verify(host_config, features, update=False):
    """verifyPlatformContainerResources: refuse the limits this host cannot enforce or the
    kernel would refuse; the warnings for the client. With update, the checks of `docker
    update` (zero means "unchanged")."""
    warnings = _verify_memory(host_config, features, update)
    _verify_cpu(host_config, features)
    _verify_blkio(host_config, features)
    for key, what in (("CpuRealtimePeriod", "--cpu-rt-period"),
                      ("CpuRealtimeRuntime", "--cpu-rt-runtime")):
        if host_config.get(key):
            raise InvalidParameter("pydockerd does not support real-time CPU scheduling (%s)"
                                   % what)
    if host_config.get("IOMaximumBandwidth") or host_config.get("IOMaximumIOps"):
        raise InvalidParameter("Invalid QoS settings: linux does not support Maximum IO "
                               "Bandwidth or Maximum IO IOps")
    for key, what in (("CpuCount", "CPU count"), ("CpuPercent", "CPU percent")):
        if host_config.get(key):
            raise InvalidParameter("Invalid QoS settings: linux does not support %s" % what)
    return warnings


def _unsupported(what):
    return InvalidParameter("Your kernel does not support %s or the cgroup is not mounted" % what)


def _verify_memory(h, features, update):
    warnings = []
    memory, swap = h.get("Memory") or 0, h.get("MemorySwap") or 0
    if memory and not features.memory:
        raise _unsupported("memory limit capabilities")
    if memory and memory < MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    if swap > 0 and not features.swap:
        raise _unsupported("swap limit capabilities")
    if memory > 0 and 0 < swap < memory:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, "
                               "see usage")
    if not memory and swap > 0 and not update:
        raise InvalidParameter("You should always set the Memory limit when using Memoryswap "
                               "limit, see usage")
    swappiness = h.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1:
        if not features.swappiness:
            raise _unsupported("memory swappiness capabilities")
        if not 0 <= swappiness <= 100:
            raise InvalidParameter("Invalid value: %d, valid memory swappiness range is 0-100"
                                   % swappiness)
    reservation = h.get("MemoryReservation") or 0
    if reservation and not features.memory:
        raise _unsupported("memory reservation")
    if reservation and reservation < MIN_MEMORY:
        raise InvalidParameter("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise InvalidParameter("Minimum memory limit can not be less than memory reservation "
                               "limit, see usage")
    kernel = h.get("KernelMemory") or 0
    if kernel and not features.kernel_memory:
        raise _unsupported("kernel memory limit capabilities (memory.kmem.limit_in_bytes "
                           "does nothing since Linux 5.16)")
    if kernel and kernel < MIN_MEMORY:
        raise InvalidParameter("Minimum kernel memory limit allowed is 6MB")
    if h.get("KernelMemoryTCP") and not features.kernel_memory_tcp:
        raise _unsupported("kernel memory TCP limit capabilities")
    if h.get("OomKillDisable"):
        if not features.oom_kill_disable:
            raise InvalidParameter("Your kernel does not support OomKillDisable")
        if not memory:
            warnings.append("OOM killer is disabled for the container, but no memory limit is "
                            "set, this can result in the system running out of resources.")
    if (h.get("PidsLimit") or 0) > 0 and not features.pids:
        raise _unsupported("pids limit capabilities")
    return warnings


def _verify_cpu(h, features):
    if h.get("CpuShares") and not features.cpu_shares:
        raise _unsupported("CPU shares")
    nano, period, quota = h.get("NanoCpus") or 0, h.get("CpuPeriod") or 0, h.get("CpuQuota") or 0
    if nano and period:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano and quota:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if nano and not features.cfs:
        raise InvalidParameter("NanoCPUs can not be set, as your kernel does not support CPU "
                               "CFS scheduler or the cgroup is not mounted")
    cpus = os.cpu_count() or 1
    if nano and not NANO // 100 <= nano <= cpus * NANO:
        raise InvalidParameter("Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs "
                               "available" % (cpus, cpus))
    if (period or quota) and not features.cfs:
        raise _unsupported("CPU cfs period/quota")
    if period and not MIN_CPU_PERIOD <= period <= MAX_CPU_PERIOD:
        raise InvalidParameter("CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                               "than 1s (i.e. 1000000)")
    if 0 < quota < MIN_CPU_QUOTA:
        raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    for key, what, available in (("CpusetCpus", "CPUs", features.cpus),
                                 ("CpusetMems", "memory nodes", features.mems)):
        requested = h.get(key) or ""
        if not requested:
            continue
        if not features.cpuset:
            raise _unsupported("cpuset")
        word = "cpus" if key == "CpusetCpus" else "mems"
        try:
            wanted = cgroups.parse_cpu_list(requested)
        except ValueError:
            raise InvalidParameter("Invalid value %s for cpuset %s" % (requested, word)) from None
        if not wanted or not wanted <= cgroups.parse_cpu_list(available):
            raise InvalidParameter("Requested %s are not available - requested %s, available: %s"
                                   % (what, requested, available))


_THROTTLE_KEYS = (("BlkioDeviceReadBps", "read_bps", "BPS Block I/O read limit"),
                  ("BlkioDeviceWriteBps", "write_bps", "BPS Block I/O write limit"),
                  ("BlkioDeviceReadIOps", "read_iops", "IOPS Block I/O read limit"),
                  ("BlkioDeviceWriteIOps", "write_iops", "IOPS Block I/O write limit"))


def _verify_blkio(h, features):
    weight = h.get("BlkioWeight") or 0
    if weight and not features.blkio_weight:
        raise _unsupported("Block I/O weight")
    if weight and not MIN_BLKIO_WEIGHT <= weight <= MAX_BLKIO_WEIGHT:
        raise InvalidParameter("Range of blkio weight is from 10 to 1000")
    if h.get("BlkioWeightDevice") and not features.blkio_weight_device:
        raise _unsupported("Block I/O weight_device")
    for entry in h.get("BlkioWeightDevice") or []:
        _block_device(entry.get("Path"))
        if not MIN_BLKIO_WEIGHT <= (entry.get("Weight") or 0) <= MAX_BLKIO_WEIGHT:
            raise InvalidParameter("Range of blkio weight is from 10 to 1000")
    for key, _, what in _THROTTLE_KEYS:
        if h.get(key) and not features.blkio_throttle:
            raise _unsupported(what)
        for entry in h.get(key) or []:
            _block_device(entry.get("Path"))
            rate = entry.get("Rate")
            if not isinstance(rate, int) or isinstance(rate, bool) or rate < 0:
                raise InvalidParameter("invalid rate for device %s: %r" % (entry.get("Path"), rate))


def _block_device(path):
    """(major, minor) of the block device at path; a clear error if it is none."""
    try:
        info = os.stat(str(path))
    except OSError as err:
        raise InvalidParameter("stat %s: %s" % (path, os.strerror(err.errno).lower())) from None
    if not stat.S_ISBLK(info.st_mode):
        raise InvalidParameter("%s is not a block device" % path)
    return os.major(info.st_rdev), os.minor(info.st_rdev)


def resources(host_config):
    """The HostConfig's limits as cgroups.Resources (--cpus is a quota of a 100 ms period)."""
    h = host_config
    r = cgroups.Resources(
        memory=h.get("Memory") or 0, memory_swap=h.get("MemorySwap") or 0,
        memory_reservation=h.get("MemoryReservation") or 0,
        kernel_memory=h.get("KernelMemory") or 0,
        kernel_memory_tcp=h.get("KernelMemoryTCP") or 0,
        oom_kill_disable=bool(h.get("OomKillDisable")),
        memory_swappiness=-1 if h.get("MemorySwappiness") is None else h["MemorySwappiness"],
        cpu_shares=h.get("CpuShares") or 0, cpu_period=h.get("CpuPeriod") or 0,
        cpu_quota=h.get("CpuQuota") or 0, cpuset_cpus=h.get("CpusetCpus") or "",
        cpuset_mems=h.get("CpusetMems") or "", pids_limit=h.get("PidsLimit") or 0,
        blkio_weight=h.get("BlkioWeight") or 0,
        blkio_weight_device=[_block_device(e["Path"]) + (e["Weight"],)
                             for e in h.get("BlkioWeightDevice") or []])
    if h.get("NanoCpus"):
        r.cpu_period = DEFAULT_CPU_PERIOD
        r.cpu_quota = h["NanoCpus"] * DEFAULT_CPU_PERIOD // NANO
    for key, kind, _ in _THROTTLE_KEYS:
        setattr(r, "throttle_" + kind,
                [_block_device(e["Path"]) + (e["Rate"],) for e in h.get(key) or []])
    return r


# `docker update`: the keys it may change, and how a zero reads ("leave it as it is").
UPDATE_KEYS = ("BlkioWeight", "CpuShares", "NanoCpus", "CpuPeriod", "CpuQuota", "CpusetCpus",
               "CpusetMems", "Memory", "MemorySwap", "MemoryReservation", "KernelMemory",
               "PidsLimit", "CpuRealtimePeriod", "CpuRealtimeRuntime")


def merge_update(host_config, update):
    """container.UpdateContainer: a copy of host_config with the update's set fields (a zero
    or empty value leaves the old one; PidsLimit 0 or -1 means unlimited, None unchanged).
    --cpus and --cpu-quota replace each other, as in dockerd."""
    merged = dict(host_config)
    for key in UPDATE_KEYS:
        value = update.get(key)
        if key == "PidsLimit":
            if value is not None:
                merged[key] = -1 if value <= 0 else value
        elif value:
            merged[key] = value
    if update.get("NanoCpus"):
        merged["CpuPeriod"], merged["CpuQuota"] = 0, 0
    elif update.get("CpuQuota") or update.get("CpuPeriod"):
        merged["NanoCpus"] = 0
    memory, swap = merged.get("Memory") or 0, merged.get("MemorySwap") or 0
    if update.get("Memory") and not update.get("MemorySwap") and swap > 0 and memory > swap:
        raise InvalidParameter("Memory limit should be smaller than already set memoryswap "
                               "limit, update the memoryswap at the same time")
    policy = update.get("RestartPolicy") or {}
    if policy.get("Name"):
        if host_config.get("AutoRemove") and policy["Name"] != "no":
            raise InvalidParameter("Restart policy cannot be updated because AutoRemove is "
                                   "enabled for the container")
        merged["RestartPolicy"] = {"Name": policy["Name"],
                                   "MaximumRetryCount": policy.get("MaximumRetryCount") or 0}
    return merged


# -------------------------------------------------------------------------------------------
# Devices.
# -------------------------------------------------------------------------------------------

def device_rules(host_config):
    """The device filter: Docker's defaults, then --device and --device-cgroup-rule;
    everything for --privileged."""
    if host_config.get("Privileged"):
        return list(cgroups.PRIVILEGED_RULES)
    rules = list(cgroups.DEFAULT_RULES)
    for device, permissions in _requested_devices(host_config):
        rules.append((True, "%s %d:%d %s" % (device.type, device.major, device.minor,
                                             permissions)))
    for rule in host_config.get("DeviceCgroupRules") or []:
        rules.append((True, rule))
    return rules


def devices(host_config):
    """The nodes made in the container: --device ones, or every host device if privileged."""
    if host_config.get("Privileged"):
        return host_devices("/dev", "/dev")
    return [device for device, _ in _requested_devices(host_config)]


def verify_devices(host_config):
    """--device, --device-cgroup-rule and --gpus, checked at create."""
    if host_config.get("DeviceRequests"):
        raise InvalidParameter("pydockerd does not support device requests (--gpus)")
    for rule in host_config.get("DeviceCgroupRules") or []:
        if not isinstance(rule, str) or not DEVICE_CGROUP_RULE.match(rule):
            raise InvalidParameter("invalid device cgroup rule format: '%s'" % rule)
    _requested_devices(host_config)


def _requested_devices(host_config):
    """(execdriver.Device, cgroup permissions) for each --device (a directory adds the
    devices below it, at the same place below PathInContainer)."""
    found = []
    for entry in host_config.get("Devices") or []:
        host_path = entry.get("PathOnHost") or ""
        container_path = entry.get("PathInContainer") or host_path
        permissions = entry.get("CgroupPermissions") or "rwm"
        if not permissions or set(permissions) - set("rwm"):
            raise InvalidParameter("invalid device mode: %s" % permissions)
        if not os.path.isabs(container_path):
            raise InvalidParameter("%s is not an absolute path" % container_path)
        try:
            info = os.stat(host_path)
        except OSError as err:
            raise InvalidParameter('error gathering device information while adding custom '
                                   'device "%s": %s' % (host_path, os.strerror(err.errno).lower())
                                   ) from None
        if stat.S_ISDIR(info.st_mode):
            nodes = host_devices(host_path, container_path)
        else:
            node = _device_node(host_path, info, container_path)
            if node is None:
                raise InvalidParameter('error gathering device information while adding custom '
                                       'device "%s": not a device node' % host_path)
            nodes = [node]
        found += [(node, permissions) for node in nodes]
    return found


def host_devices(host_root, container_root):
    """Every character and block device below host_root (runc's HostDevices), placed below
    container_root."""
    nodes = []
    for directory, subdirectories, names in os.walk(host_root):
        subdirectories[:] = sorted(d for d in subdirectories if d not in SKIPPED_DEVICE_DIRECTORIES)
        for name in sorted(names):
            path = os.path.join(directory, name)
            if path == "/dev/console":
                continue
            try:
                info = os.lstat(path)
            except OSError:
                continue
            target = os.path.join(container_root, os.path.relpath(path, host_root))
            node = _device_node(path, info, target)
            if node is not None:
                nodes.append(node)
    return nodes


def _device_node(path, info, container_path):
    if stat.S_ISCHR(info.st_mode):
        kind = "c"
    elif stat.S_ISBLK(info.st_mode):
        kind = "b"
    else:
        return None
    return execdriver.Device(path=container_path, type=kind, major=os.major(info.st_rdev),
                             minor=os.minor(info.st_rdev), mode=stat.S_IMODE(info.st_mode),
                             uid=info.st_uid, gid=info.st_gid)


# -------------------------------------------------------------------------------------------
# Hardening options.
# -------------------------------------------------------------------------------------------

def verify_hardening(host_config, default_ulimits):
    """The process options checked at create: capabilities, --security-opt, --oom-score-adj,
    --shm-size, --ulimit, --sysctl, and the namespace modes pydockerd does not implement."""
    for key in ("CapAdd", "CapDrop"):
        for name in host_config.get(key) or []:
            if normalize_capability(name) is None:
                raise InvalidParameter('invalid %s: unknown capability: "%s"' % (key, name))
    for option in host_config.get("SecurityOpt") or []:
        check_security_opt(option)
    score = host_config.get("OomScoreAdj") or 0
    if not -1000 <= score <= 1000:
        raise InvalidParameter("Invalid value %d, range for oom score adj is [-1000, 1000]" % score)
    if (host_config.get("ShmSize") or 0) < 0:
        raise InvalidParameter("SHM size can not be less than 0")
    ulimits(host_config, default_ulimits)
    sysctls(host_config)
    if (host_config.get("CgroupnsMode") or "host") not in ("host", "private"):
        raise InvalidParameter("invalid cgroup namespace mode: %s" % host_config["CgroupnsMode"])
    if host_config.get("CgroupnsMode") == "private":
        raise InvalidParameter("pydockerd does not support cgroup namespaces (--cgroupns private)")
    if host_config.get("Cgroup"):
        raise InvalidParameter("pydockerd does not support --cgroup %s" % host_config["Cgroup"])
    if (host_config.get("UsernsMode") or "host") != "host":
        raise InvalidParameter("pydockerd does not support user namespaces (--userns %s)"
                               % host_config["UsernsMode"])
    if (host_config.get("Isolation") or "default") != "default":
        raise InvalidParameter("Invalid isolation: %s - linux only supports 'default'"
                               % host_config["Isolation"])


def normalize_capability(name):
    """"net_admin", "CAP_NET_ADMIN" -> "CAP_NET_ADMIN"; "ALL" stays; None if unknown."""
    upper = str(name).upper()
    if upper == "ALL":
        return upper
    upper = upper if upper.startswith("CAP_") else "CAP_" + upper
    return upper if upper in execdriver.CAPABILITIES else None


def check_security_opt(option):
    if option in SECURITY_OPTS:
        return
    key = re.split("[=:]", option, 1)[0]
    if key == "seccomp":
        # The CLI has replaced the file's name by its text: "seccomp=<json>". Compiled once
        # here so that a profile too big for the kernel is refused at create, not at start.
        try:
            seccomp.compile_filter(seccomp.load_profile(option[len(key) + 1:]), set())
        except seccomp.ProfileError as e:
            raise InvalidParameter(str(e)) from None
        return
    if key in ("apparmor", "label"):
        raise InvalidParameter("pydockerd does not apply %s profiles: only %s" % (
            key, "apparmor=unconfined" if key == "apparmor" else "label=disable"))
    raise InvalidParameter('Invalid --security-opt: "%s"' % option)


def security_opt(host_config, name):
    """Whether --security-opt `name` is set (no-new-privileges, seccomp=unconfined, ...)."""
    options = set(host_config.get("SecurityOpt") or [])
    if name == "no-new-privileges":
        return bool(options & {"no-new-privileges", "no-new-privileges:true",
                               "no-new-privileges=true"})
    return bool(options & {name, name.replace("=", ":")})


def seccomp_profile(host_config):
    """execdriver.Command.seccomp: "" (Docker's default profile, also asked for by name as
    seccomp=builtin), "unconfined", or the text of the profile --security-opt
    seccomp=<file> sent (the last one given wins)."""
    profile = ""
    for option in host_config.get("SecurityOpt") or []:
        if re.split("[=:]", option, 1)[0] == "seccomp":
            profile = option[len("seccomp") + 1:]
    return "" if profile == "builtin" else profile


def ulimits(host_config, default_ulimits):
    """--ulimit over --default-ulimit, as (name, soft, hard) with -1 for unlimited.

    The container's process cannot raise a hard limit above the daemon's own without
    CAP_SYS_RESOURCE (setrlimit's EPERM), so such a request is refused here instead."""
    merged = {name: (soft, hard) for name, soft, hard in default_ulimits}
    for entry in host_config.get("Ulimits") or []:
        name = entry.get("Name")
        if name not in execdriver.RLIMITS:
            raise InvalidParameter("invalid ulimit type: %s" % name)
        merged[name] = (entry.get("Soft"), entry.get("Hard"))
    result = []
    for name, (soft, hard) in sorted(merged.items()):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= -1
                   for v in (soft, hard)):
            raise InvalidParameter("invalid ulimit argument: %s=%s:%s" % (name, soft, hard))
        if _rlim(soft) > _rlim(hard):
            raise InvalidParameter("ulimit soft limit must be less than or equal to hard limit: "
                                   "%d > %d" % (soft, hard))
        _check_hard_limit(name, hard)
        result.append((name, soft, hard))
    return result


def _rlim(value):
    return resource.RLIM_INFINITY if value == -1 else value


def _check_hard_limit(name, hard):
    own = resource.getrlimit(execdriver.RLIMITS[name])[1]
    if own == resource.RLIM_INFINITY or _rlim(hard) <= own:
        return
    if linux.capget()[0] & (1 << CAP_SYS_RESOURCE):
        return
    raise InvalidParameter("ulimit %s: the hard limit %s is above the daemon's own (%d), which "
                           "only CAP_SYS_RESOURCE may raise" % (name, "unlimited" if hard == -1
                                                                 else hard, own))


def sysctls(host_config):
    """--sysctl: only the namespaced ones (IPC ones with a private IPC namespace, net.* with
    the container's own network namespace), as {"/proc/sys path": value}."""
    result = {}
    for key, value in (host_config.get("Sysctls") or {}).items():
        if not VALID_SYSCTL_KEY.match(key) or not isinstance(value, str):
            raise InvalidParameter("sysctl '%s=%s' is not valid" % (key, value))
        if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            mode = host_config.get("IpcMode") or ""
            if mode == "host" or mode.startswith("container:"):
                raise InvalidParameter("sysctl %s is not allowed in the host's or another "
                                       "container's IPC namespace" % _quote(key))
        elif key.startswith("net."):
            mode = host_config.get("NetworkMode") or ""
            if mode == "host" or mode.startswith("container:"):
                raise InvalidParameter("sysctl %s is not allowed in the host's or another "
                                       "container's network namespace" % _quote(key))
        else:
            raise InvalidParameter("sysctl '%s' is not whitelisted" % key)
        result[key.replace(".", "/")] = value
    return result


def _quote(text):
    return '"%s"' % text
