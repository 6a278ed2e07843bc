"""cgroup v2 end to end: a pydockerd that sees only a unified hierarchy, driven by the real CLI.

Most hosts run cgroup v2 alone; this one mounts v1 controllers (with an empty v2 tree at
/sys/fs/cgroup/unified). The daemon here runs in a private mount namespace (`unshare -m`, so the
test runner's mounts are never touched) where /sys/fs/cgroup is unmounted and a cgroup2 mount
takes its place: the same unified hierarchy, now the only one. Every controller of this host is
bound to v1, so the v2 tree offers none of memory, cpu, pids or io: the daemon must say so in
`docker info` and refuse those limits, while everything v2 itself provides works for real: the
container's cgroup directory, the eBPF device filter (containers keep CAP_MKNOD, yet cannot
open a host disk), freezing through cgroup.freeze, removal with the container. The v2 files of
the controllers (memory.max, cpu.max, io.max, ...) are covered against a fake tree in
test_cgroups.py.
"""
import os
import shlex

import pytest

from drivers import cgroups
from containers_support import busybox_archive  # noqa: F401 (a fixture)
from containers_support import block_device_path, busybox_daemon, err, out
from conftest import DaemonProcess

HIERARCHIES = cgroups.find_hierarchies()
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root"),
    pytest.mark.skipif(not HIERARCHIES.unified, reason="this host has no cgroup v2 hierarchy"),
]


class UnifiedOnlyDaemon(DaemonProcess):
    """A DaemonProcess whose mount namespace holds the cgroup2 hierarchy alone."""

    def command(self):
        inner = " ".join(shlex.quote(arg) for arg in super().command())
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                "umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec " + inner]


@pytest.fixture(scope="module")
def daemon(busybox_archive):  # noqa: F811
    with busybox_daemon(busybox_archive, process_class=UnifiedOnlyDaemon) as process:
        yield process


def host_path(daemon, container_id):
    """The container's v2 directory as the test runner sees the same tree."""
    return os.path.join(HIERARCHIES.unified, HIERARCHIES.own[""].lstrip("/"), daemon.cgroup_parent,
                        container_id)


def run(daemon, *args, check=True):
    return daemon.docker("run", "--network", "none", *args, check=check)


def test_info_reports_cgroup_v2_and_what_it_lacks(daemon):
    info = daemon.request("GET", "/info").json()
    assert info["CgroupVersion"] == "2" and info["CgroupDriver"] == "cgroupfs"
    assert "WARNING: No memory limit support" in info["Warnings"]
    assert "WARNING: No kernel memory limit support" not in info["Warnings"]  # a v1 notion
    assert info["MemoryLimit"] is False and info["OomKillDisable"] is False


def test_limits_without_their_controller_are_refused(daemon):
    for options, message in ((["-m", "32m"], "memory limit"), (["--pids-limit", "5"], "pids"),
                             (["--cpus", "1"], "CPU CFS"), (["--oom-kill-disable"], "OomKillDisable"),
                             (["--memory-swappiness", "10"], "swappiness")):
        result = run(daemon, "--rm", *options, "busybox", "true", check=False)
        assert result.returncode == 125 and message in err(result), err(result)


def test_the_container_has_its_own_v2_directory(daemon):
    cid = out(run(daemon, "-d", "busybox", "sleep", "60"))
    directory = host_path(daemon, cid)
    pid = daemon.request("GET", "/containers/%s/json" % cid).json()["State"]["Pid"]
    with open(os.path.join(directory, "cgroup.procs")) as procs:
        assert str(pid) in procs.read().split()
    inside = out(daemon.docker("exec", cid, "sh", "-c", "grep ^0:: /proc/self/cgroup; "
                               "ls /sys/fs/cgroup | grep -c cgroup.freeze"))
    assert inside.splitlines() == ["0::/%s/%s" % (daemon.cgroup_parent, cid), "1"]
    daemon.docker("rm", "-f", cid)
    assert not os.path.exists(directory)


def test_the_ebpf_device_filter_keeps_mknod_harmless(daemon):
    number = os.stat(block_device_path()).st_rdev
    major, minor = os.major(number), os.minor(number)
    script = ("grep CapEff /proc/self/status; mknod /tmp/d b %d %d && echo made; "
              "head -c1 /tmp/d; echo x > /dev/null && echo null-ok" % (major, minor))
    result = run(daemon, "--rm", "busybox", "sh", "-c", script, check=False)
    lines = out(result).splitlines()
    assert lines[0] == "CapEff:\t00000000a80425fb"  # CAP_MKNOD kept: the filter guards it
    assert lines[1:] == ["made", "null-ok"]
    assert "Operation not permitted" in err(result)
    privileged = run(daemon, "--rm", "--privileged", "busybox", "sh", "-c",
                     "mknod /tmp/d b %d %d && head -c1 /tmp/d >/dev/null && echo read"
                     % (major, minor))
    assert out(privileged) == "read"


def test_pause_uses_cgroup_freeze(daemon):
    cid = out(run(daemon, "-d", "busybox", "sleep", "60"))
    daemon.docker("pause", cid)
    with open(os.path.join(host_path(daemon, cid), "cgroup.events")) as events:
        assert "frozen 1" in events.read().splitlines()
    assert daemon.request("GET", "/containers/%s/json" % cid).json()["State"]["Status"] == "paused"
    daemon.docker("unpause", cid)
    with open(os.path.join(host_path(daemon, cid), "cgroup.events")) as events:
        assert "frozen 0" in events.read().splitlines()
    daemon.docker("rm", "-f", cid)


def test_stats_work_without_controllers(daemon):
    cid = out(run(daemon, "-d", "busybox", "sleep", "60"))
    sample = daemon.request("GET", "/containers/%s/stats?stream=0" % cid).json()
    assert sample["cpu_stats"]["cpu_usage"]["total_usage"] > 0  # cpu.stat is core in v2
    assert "percpu_usage" not in sample["cpu_stats"]["cpu_usage"]
    assert sample["memory_stats"] == {} and sample["preread"] != "0001-01-01T00:00:00Z"
    daemon.docker("rm", "-f", cid)

