"""drivers/cgroups.py and drivers/devicefilter.py, against the host's real hierarchies.

Run as root. Every test works under its own parent, pydockerd-test-<pid>, relative to this
process's own cgroups (where a daemon started by the tests puts its containers too); the
fixture removes it with everything left below it. Processes under test are forked children
moved into the cgroup, which report the errno of what they tried as their exit status. Device
nodes are made in pytest's tmp dir and opened for reading only: no host disk is ever written.

Which hierarchies this covers, on this host (v1 controllers plus an empty v2 tree):
  * cgroup v1, for real: limits, devices controller, freezer, OOM counting, update rollback;
  * cgroup v2, for real, on the unified tree the host mounts (the same tree `mount -t cgroup2`
    gives in a private namespace): directories, the eBPF device filter, cgroup.freeze;
  * cgroup v2 controller files (memory.max, cpu.max, io.max, pids.max, their stats), which
    this host's v2 tree cannot offer because v1 holds the controllers: a fake tree in tmp_path.
"""
import errno
import os
import signal
import stat
import struct

import pytest

from drivers import cgroups, devicefilter, execdriver
from fixtures import containers
from fixtures.containers import rootfs  # noqa: F401 (a fixture)

HIERARCHIES = cgroups.find_hierarchies()
ROOT = os.geteuid() == 0
V1 = pytest.mark.skipif(not ROOT or HIERARCHIES.version != "1", reason="needs root and cgroup v1")
V2 = pytest.mark.skipif(not ROOT or not HIERARCHIES.unified or not devicefilter.supported(),
                        reason="needs root, a cgroup v2 tree and bpf(2)")
MB = 1024 * 1024

DOCKER_RULES = ["c 1:5 rwm", "c 1:3 rwm", "c 1:9 rwm", "c 1:8 rwm", "c 5:0 rwm", "c 5:1 rwm",
                "c *:* m", "b *:* m", "c 1:7 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm"]


@pytest.fixture
def parent():
    name = "pydockerd-test-%d" % os.getpid()
    yield name
    from conftest import remove_cgroup_parent
    remove_cgroup_parent(name)


@pytest.fixture
def driver(parent):
    return cgroups.Driver(HIERARCHIES, cgroups.probe_features(HIERARCHIES), parent)


@pytest.fixture
def v2_driver(parent):
    """A driver for the host's v2 tree alone, as on a unified-only host."""
    unified_only = cgroups.Hierarchies({}, HIERARCHIES.unified, HIERARCHIES.own)
    return cgroups.Driver(unified_only, cgroups.probe_features(unified_only), parent)


def container_id(n=0):
    return "%064x" % (0xC0FFEE + n)


def child_in(manager, action=None):
    """Fork a child, move it into the manager's cgroups, run action() there: the errno it
    hit (0 if none). Without an action the child sleeps and its pid is returned."""
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 255
        try:
            os.close(go_w)
            if os.read(go_r, 1) == b"x":
                if action is None:
                    signal.pause()
                action()
                code = 0
        except OSError as err:
            code = err.errno
        except MemoryError:
            code = 200
        finally:
            os._exit(code)
    os.close(go_r)
    try:
        manager.apply(pid)
        os.write(go_w, b"x")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(go_w)
    if action is None:
        return pid
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def hog(size):
    """Allocate and touch `size` bytes (an untouched allocation costs no memory)."""
    held = bytearray(size)
    held[::4096] = b"x" * len(held[::4096])
    return held


def reap(pid):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def read(directory, name):
    with open(os.path.join(directory, name)) as f:
        return f.read().strip()


# -- what is mounted --------------------------------------------------------------------------

def write_proc_files(tmp_path, mountinfo, proc_cgroup):
    (tmp_path / "mountinfo").write_text(mountinfo)
    (tmp_path / "cgroup").write_text(proc_cgroup)
    return str(tmp_path / "mountinfo"), str(tmp_path / "cgroup")


def test_v1_hierarchies_and_own_cgroups(tmp_path):
    files = write_proc_files(
        tmp_path,
        "30 23 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "31 23 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "32 23 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        "4:memory:/user.slice\n3:cpu,cpuacct:/\n0::/init.scope\n")
    found = cgroups.find_hierarchies(*files)
    assert found.v1 == {"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
                        "memory": "/sys/fs/cgroup/memory"}
    assert found.unified == "/sys/fs/cgroup/unified" and found.version == "1"
    assert found.own == {"memory": "/user.slice", "cpu": "/", "cpuacct": "/", "": "/init.scope"}


def test_unified_only_host_is_version_2(tmp_path):
    files = write_proc_files(tmp_path, "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                             "0::/system.slice/docker.service\n")
    found = cgroups.find_hierarchies(*files)
    assert (found.version, found.unified, found.v1) == ("2", "/sys/fs/cgroup", {})


def test_own_cgroup_is_relative_to_a_namespaced_mount(tmp_path):
    files = write_proc_files(tmp_path, "25 1 0:22 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 c rw\n",
                             "0::/kubepods/pod1/ctr\n")
    assert cgroups.find_hierarchies(*files).own[""] == "/ctr"


def test_paths_absolute_parent_from_the_root_relative_from_our_own(tmp_path):
    hierarchies = cgroups.Hierarchies({"memory": "/m"}, "", {"memory": "/me"})
    driver = cgroups.Driver(hierarchies, cgroups.Features("1"), "/docker")
    assert driver.manager("abc").paths == {"memory": "/m/docker/abc"}
    assert driver.manager("abc", "kids").paths == {"memory": "/m/me/kids/abc"}


@pytest.mark.parametrize("bad", ["../escape", "a/../../b", "/", "."])
def test_a_parent_cannot_climb_out(bad):
    with pytest.raises(cgroups.CgroupError, match="invalid cgroup parent"):
        cgroups.check_parent(bad)


def test_a_container_id_cannot_leave_the_parent(tmp_path):
    driver = cgroups.Driver(cgroups.Hierarchies({"memory": "/m"}, "", {}), cgroups.Features("1"))
    with pytest.raises(cgroups.CgroupError, match="invalid container ID"):
        driver.manager("../escape")


def test_features_of_a_fake_v2_tree(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cpuset.cpus.effective").write_text("0-3\n")
    hierarchies = cgroups.Hierarchies({}, str(tmp_path), {"": "/"})
    features = cgroups.probe_features(hierarchies, (6, 1, 0), lambda: True)
    assert (features.memory, features.pids, features.cfs, features.blkio_throttle) == (True,) * 4
    assert (features.kernel_memory, features.oom_kill_disable, features.swappiness) == (False,) * 3
    assert (features.cpus, features.devices, features.freezer) == ("0-3", "bpf", True)
    assert features.warnings == []


def test_features_of_a_bare_v2_tree_warn(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("hugetlb\n")
    features = cgroups.probe_features(cgroups.Hierarchies({}, str(tmp_path), {"": "/"}),
                                      (5, 1, 0), lambda: False)
    assert (features.devices, features.freezer) == ("", False)
    assert "WARNING: No memory limit support" in features.warnings
    assert "WARNING: No io.max (rbps) support" in features.warnings
    assert "WARNING: No oom kill disable support" not in features.warnings


@V1
def test_kernel_memory_is_gone_from_5_16():
    assert not cgroups.probe_features(HIERARCHIES, (6, 1, 0)).kernel_memory
    if os.path.exists(os.path.join(HIERARCHIES.v1["memory"], "memory.kmem.limit_in_bytes")):
        assert cgroups.probe_features(HIERARCHIES, (5, 4, 0)).kernel_memory


# -- cgroup v1, for real ---------------------------------------------------------------------

@V1
def test_v1_limits_are_written(driver):
    manager = driver.manager(container_id())
    manager.create(cgroups.Resources(memory=32 * MB, memory_swap=64 * MB, cpu_shares=512,
                                     cpu_period=50000, cpu_quota=25000, cpuset_cpus="0",
                                     pids_limit=7, memory_reservation=16 * MB), [])
    assert read(manager.paths["memory"], "memory.limit_in_bytes") == str(32 * MB)
    assert read(manager.paths["memory"], "memory.memsw.limit_in_bytes") == str(64 * MB)
    assert read(manager.paths["memory"], "memory.soft_limit_in_bytes") == str(16 * MB)
    assert read(manager.paths["cpu"], "cpu.shares") == "512"
    assert read(manager.paths["cpu"], "cpu.cfs_quota_us") == "25000"
    assert read(manager.paths["cpuset"], "cpuset.cpus") == "0"
    assert read(manager.paths["pids"], "pids.max") == "7"
    manager.destroy()
    assert not any(os.path.exists(path) for path in manager.paths.values())


@V1
def test_v1_new_cpuset_levels_copy_their_parents_cpus(driver):
    manager = driver.manager(container_id())
    manager.create(cgroups.Resources(), [])
    parent_cpus = read(os.path.dirname(manager.paths["cpuset"]), "cpuset.cpus")
    assert parent_cpus and read(manager.paths["cpuset"], "cpuset.cpus") == parent_cpus
    pid = child_in(manager)  # joining a cpuset with no CPUs would fail
    reap(pid)


@V1
def test_v1_a_refused_limit_removes_what_was_made(driver):
    manager = driver.manager(container_id())
    with pytest.raises(cgroups.CgroupError, match="cpuset.cpus: numerical result out of range"):
        manager.create(cgroups.Resources(cpuset_cpus="999"), [])
    assert not any(os.path.exists(path) for path in manager.paths.values())


@V1
def test_v1_apply_moves_the_process_into_every_controller(driver):
    manager = driver.manager(container_id())
    manager.create(cgroups.Resources(), cgroups.DEFAULT_RULES)
    pid = child_in(manager)
    try:
        for path in manager.directories:
            assert str(pid) in read(path, "cgroup.procs").split()
    finally:
        reap(pid)


@V1
def test_v1_oom_kill_is_counted(driver):
    manager = driver.manager(container_id())
    manager.create(cgroups.Resources(memory=8 * MB, memory_swap=8 * MB), [])
    status = child_in(manager, lambda: hog(64 * MB))
    assert status == -signal.SIGKILL
    assert manager.oom_kills() == 1


@V1
def test_v1_update_refused_by_the_kernel_writes_the_old_limits_back(driver):
    manager = driver.manager(container_id())
    old = cgroups.Resources(memory=64 * MB, memory_swap=64 * MB, pids_limit=20)
    manager.create(old, [])
    pid = child_in(manager, None)
    ready_r, ready_w = os.pipe()
    holder = os.fork()
    if holder == 0:  # a second process of the cgroup holds 24 MB
        try:
            manager.apply(os.getpid())
            held = hog(24 * MB)
            os.write(ready_w, b"x" if held else b"")
            signal.pause()
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        new = cgroups.Resources(memory=8 * MB, memory_swap=8 * MB, pids_limit=5)
        with pytest.raises(cgroups.CgroupError, match="device or resource busy"):
            manager.update(new)
        assert read(manager.paths["memory"], "memory.limit_in_bytes") == str(64 * MB)
        assert read(manager.paths["pids"], "pids.max") == "20"
    finally:
        reap(holder)
        reap(pid)


@V1
def test_v1_freezer_stops_and_resumes(driver):
    manager = driver.manager(container_id())
    manager.create(cgroups.Resources(), [])
    pid = child_in(manager)
    try:
        manager.freeze()
        assert manager.frozen() and read(manager.paths["freezer"], "freezer.state") == "FROZEN"
        manager.thaw()
        assert not manager.frozen()
    finally:
        reap(pid)


@V1
def test_v1_stats_have_dockers_shape(driver):
    manager = driver.manager(container_id())
    manager.create(cgroups.Resources(memory=32 * MB, pids_limit=9), [])
    pid = child_in(manager)
    try:
        stats = manager.stats()
    finally:
        reap(pid)
    assert stats["memory_stats"]["limit"] == 32 * MB and "total_rss" in stats["memory_stats"]["stats"]
    assert len(stats["cpu_stats"]["cpu_usage"]["percpu_usage"]) >= 1
    assert stats["pids_stats"] == {"current": 1, "limit": 9}
    assert set(stats["blkio_stats"]) >= {"io_service_bytes_recursive", "sectors_recursive"}


@V1
def test_v1_remove_waits_for_the_last_process(driver):
    manager = driver.manager(container_id())
    manager.create(cgroups.Resources(), [])
    pid = child_in(manager)
    with pytest.raises(cgroups.CgroupError, match="device or resource busy"):
        manager.destroy(timeout=0.05)
    reap(pid)
    manager.destroy(timeout=5)
    assert not any(os.path.exists(path) for path in manager.paths.values())


@V1
def test_v1_load_finds_the_cgroups_after_a_daemon_restart(driver, parent):
    created = driver.manager(container_id())
    created.create(cgroups.Resources(), [])
    restarted = cgroups.Driver(HIERARCHIES, driver.features, "/elsewhere")
    loaded = restarted.load(created.paths)
    loaded.destroy()
    assert not any(os.path.exists(path) for path in created.paths.values())


# -- devices: the v1 controller and the v2 eBPF filter, for real ------------------------------

def block_devices():
    names = sorted(os.listdir("/sys/dev/block")) if os.path.isdir("/sys/dev/block") else []
    numbers = [os.makedev(*map(int, name.split(":"))) for name in names]
    root = os.stat("/").st_dev
    return sorted(numbers, key=lambda number: number != root)


@pytest.fixture
def block_node(tmp_path):
    """A node, made outside any container cgroup, for a block device root may read here."""
    path = str(tmp_path / "disk")
    for number in block_devices():
        os.mknod(path, stat.S_IFBLK | 0o600, number)
        try:
            read_block(path)
        except OSError:
            os.unlink(path)
            continue
        yield path
        os.unlink(path)
        return
    pytest.skip("no block device that root may read on this host")


def read_block(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.read(fd, 512)
    finally:
        os.close(fd)


def use_null():
    fd = os.open("/dev/null", os.O_RDWR)
    try:
        os.write(fd, b"probe")
    finally:
        os.close(fd)


@V1
def test_v1_devices_get_dockers_rules(driver):
    manager = driver.manager(container_id())
    manager.create(cgroups.Resources(), cgroups.DEFAULT_RULES)
    assert read(manager.paths["devices"], "devices.list").splitlines() == DOCKER_RULES


def device_cases(manager, block_node, tmp_path):
    """(reading the disk, mknod of a block node, writing /dev/null, opening kmsg for write)."""
    made = str(tmp_path / "made-inside")
    kmsg = str(tmp_path / "kmsg")
    os.mknod(kmsg, stat.S_IFCHR | 0o600, os.makedev(1, 11))
    number = os.stat(block_node).st_rdev
    try:
        return (child_in(manager, lambda: read_block(block_node)),
                child_in(manager, lambda: os.mknod(made, stat.S_IFBLK | 0o600, number)),
                child_in(manager, use_null),
                child_in(manager, lambda: os.close(os.open(kmsg, os.O_WRONLY))))
    finally:
        for path in (made, kmsg):
            if os.path.lexists(path):
                os.unlink(path)


@V1
def test_v1_device_rules_deny_the_disk_and_allow_mknod(driver, block_node, tmp_path):
    manager = driver.manager(container_id())
    manager.create(cgroups.Resources(), cgroups.DEFAULT_RULES)
    assert device_cases(manager, block_node, tmp_path) == (errno.EPERM, 0, 0, errno.EPERM)


@V2
def test_v2_device_filter_denies_the_disk_and_allows_mknod(v2_driver, block_node, tmp_path):
    manager = v2_driver.manager(container_id())
    manager.create(cgroups.Resources(), cgroups.DEFAULT_RULES)
    assert device_cases(manager, block_node, tmp_path) == (errno.EPERM, 0, 0, errno.EPERM)


@V2
def test_v2_privileged_has_no_filter(v2_driver, block_node):
    manager = v2_driver.manager(container_id())
    manager.create(cgroups.Resources(), cgroups.PRIVILEGED_RULES)
    assert child_in(manager, lambda: read_block(block_node)) == 0


@V2
def test_v2_device_rule_for_one_block_device_read_only(v2_driver, block_node):
    number = os.stat(block_node).st_rdev
    rule = (True, "b %d:%d r" % (os.major(number), os.minor(number)))
    manager = v2_driver.manager(container_id())
    manager.create(cgroups.Resources(), cgroups.DEFAULT_RULES + [rule])
    assert child_in(manager, lambda: read_block(block_node)) == 0
    assert child_in(manager, lambda: os.close(os.open(block_node, os.O_WRONLY))) == errno.EPERM


@V2
def test_v2_directory_freeze_and_removal(v2_driver):
    manager = v2_driver.manager(container_id())
    manager.create(cgroups.Resources(), [])
    assert manager.mount_view() == {"": manager.path}
    pid = child_in(manager)
    try:
        assert read(manager.path, "cgroup.procs") == str(pid)
        manager.freeze()
        assert "frozen 1" in read(manager.path, "cgroup.events").splitlines()
        manager.thaw()
        assert not manager.frozen()
    finally:
        reap(pid)
    manager.destroy(timeout=5)
    assert not os.path.exists(manager.path)


@V1
def test_container_cannot_read_a_host_disk(driver, rootfs, tmp_path, block_node):  # noqa: F811
    """Check 10 of security.md, the daemon's way: the init joins the cgroups at the exec gate."""
    manager = driver.manager(container_id())
    manager.create(cgroups.Resources(), cgroups.DEFAULT_RULES)

    def spawn(stdio):
        init = execdriver.start(command, stdio)
        manager.apply(init.pid)
        return init

    number = os.stat(block_node).st_rdev
    script = "mknod /tmp/d b %d %d && { head -c512 /tmp/d >/dev/null; r=$?; rm /tmp/d; exit $r; }"
    command = containers.command(rootfs, ["sh", "-c", script % (os.major(number), os.minor(number))],
                                 container_dir=containers.container_dir(str(tmp_path / "c")))
    result = containers.Runner(spawn).result()
    assert result.exit_code == 1
    assert "Operation not permitted" in result.stderr


# -- the device filter's program ------------------------------------------------------------

def test_emulation_of_dockers_rules():
    default_allow, exceptions = devicefilter.emulate(cgroups.DEFAULT_RULES)
    assert default_allow is False
    assert ["c", 10, 229, 7] not in exceptions          # the fuse deny removed nothing
    assert ["c", None, None, 1] in exceptions           # mknod of any char node
    assert ["c", 1, 3, 7] in exceptions and exceptions.count(["c", 1, 3, 7]) == 1


def test_emulation_after_allow_all_keeps_denials():
    default_allow, exceptions = devicefilter.emulate([(True, "a"), (False, "b 8:0 w")])
    assert (default_allow, exceptions) == (True, [["b", 8, 0, 4]])


def test_program_jumps_stay_inside_it():
    code = devicefilter.program(cgroups.DEFAULT_RULES)
    count = len(code) // 8
    for at in range(count):
        op, _, offset, _ = struct.unpack("<BBhi", code[at * 8:at * 8 + 8])
        if op in (0x15, 0x55):
            assert 0 <= at + 1 + offset < count


# -- cgroup v2 controller files, on a fake tree ------------------------------------------------

V2_FILES = ("memory.max", "memory.swap.max", "memory.low", "cpu.weight", "cpu.max", "cpuset.cpus",
            "cpuset.mems", "pids.max", "io.weight", "io.max")


@pytest.fixture
def fake_v2(tmp_path):
    """A v2 container directory whose controller files are plain files."""
    directory = tmp_path / "pydockerd" / "c1"
    directory.mkdir(parents=True)
    for name in V2_FILES:
        (directory / name).write_text("")
    return cgroups.V2Manager({"": str(directory)}, str(tmp_path))


def test_v2_limits_land_in_the_v2_files(fake_v2):
    fake_v2.set(cgroups.Resources(memory=32 * MB, memory_swap=96 * MB, memory_reservation=16 * MB,
                                  cpu_shares=1024, cpu_quota=50000, cpu_period=100000,
                                  cpuset_cpus="0-1", pids_limit=-1, blkio_weight=500,
                                  throttle_write_iops=[(8, 0, 100)]))
    assert {name: read(fake_v2.path, name) for name in V2_FILES} == {
        "memory.max": str(32 * MB), "memory.swap.max": str(64 * MB), "memory.low": str(16 * MB),
        "cpu.weight": "39", "cpu.max": "50000 100000", "cpuset.cpus": "0-1", "cpuset.mems": "",
        "pids.max": "max", "io.weight": "4950", "io.max": "8:0 wiops=100"}


def test_v2_unlimited_swap_and_quota(fake_v2):
    fake_v2.set(cgroups.Resources(memory=32 * MB, memory_swap=-1, cpu_quota=-1, cpu_period=50000))
    assert read(fake_v2.path, "memory.swap.max") == "max"
    assert read(fake_v2.path, "cpu.max") == "max 50000"


def test_v2_stats_from_the_v2_files(fake_v2):
    files = {"memory.current": "4096\n", "memory.max": "max\n", "memory.stat": "anon 1\nfile 2\n",
             "cpu.stat": "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 3\n"
                         "nr_throttled 2\nthrottled_usec 1\n",
             "pids.current": "3\n", "pids.max": "max\n",
             "io.stat": "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n"}
    for name, text in files.items():
        with open(os.path.join(fake_v2.path, name), "w") as f:
            f.write(text)
    stats = fake_v2.stats()
    assert stats["memory_stats"] == {"usage": 4096, "stats": {"anon": 1, "file": 2}, "limit": 0}
    assert stats["cpu_stats"] == {
        "cpu_usage": {"total_usage": 10000, "usage_in_kernelmode": 4000,
                      "usage_in_usermode": 6000},
        "throttling_data": {"periods": 3, "throttled_periods": 2, "throttled_time": 1000}}
    assert stats["pids_stats"] == {"current": 3}
    assert stats["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "read", "value": 100},
        {"major": 8, "minor": 0, "op": "write", "value": 200}]


def test_v2_enables_the_controllers_its_parent_offers(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids hugetlb\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory\n")
    cgroups._enable_controllers(str(tmp_path))
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +pids"


def test_conversions_match_runc():
    assert [cgroups.cpu_shares_to_weight(s) for s in (2, 1024, 262144)] == [1, 39, 10000]
    assert [cgroups.blkio_weight_to_io_weight(w) for w in (10, 500, 1000)] == [1, 4950, 10000]


def test_cpu_lists():
    assert cgroups.parse_cpu_list("0-2,5") == {0, 1, 2, 5}
    with pytest.raises(ValueError):
        cgroups.parse_cpu_list("1-x")


@V1
def test_a_stale_directory_is_reused(driver):
    manager = driver.manager(container_id(5))
    manager.create(cgroups.Resources(pids_limit=3), [])
    manager.create(cgroups.Resources(pids_limit=4), [])  # as after a daemon crash
    assert read(manager.paths["pids"], "pids.max") == "4"
