"""drivers/cgroups.py: the devices cgroup on the host's real cgroup v1 devices hierarchy.

Run as root. Every test works under its own parent, <devices mount>/pydockerd-test-<pid>, which
the fixture removes with everything left below it; the daemon's "pydockerd" and Docker's
"docker" directories are never touched. Processes under test are forked children moved into the
cgroup, which report the errno of what they tried as their exit status. Device nodes are made in
pytest's tmp dir and opened for reading only: the host disk is never written.
"""
import errno
import os
import signal
import stat
import threading
import uuid

import pytest

from drivers import cgroups, execdriver
from fixtures import containers
from fixtures.containers import rootfs  # noqa: F401 (a fixture)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root"),
    pytest.mark.skipif(not cgroups.device_cgroup_supported(),
                       reason="no writable cgroup v1 devices controller on this host "
                              "(cgroup v2-only hosts need an eBPF filter, not built)"),
]

DOCKER_RULES = ["c 1:5 rwm", "c 1:3 rwm", "c 1:9 rwm", "c 1:8 rwm", "c 5:0 rwm", "c 5:1 rwm",
                "c *:* m", "b *:* m", "c 1:7 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm"]


@pytest.fixture
def devices():
    parent = "pydockerd-test-%d" % os.getpid()
    devices = cgroups.DeviceCgroup(parent=parent)
    yield devices
    if os.path.isdir(devices.root):
        for name in os.listdir(devices.root):
            if os.path.isdir(os.path.join(devices.root, name)):
                os.rmdir(os.path.join(devices.root, name))
        os.rmdir(devices.root)


@pytest.fixture
def container_id():
    return uuid.uuid4().hex * 2


def block_devices():
    """Device numbers of the host's block devices, the disk holding / first."""
    names = sorted(os.listdir("/sys/dev/block")) if os.path.isdir("/sys/dev/block") else []
    numbers = [os.makedev(*map(int, name.split(":"))) for name in names]
    root = os.stat("/").st_dev
    return sorted(numbers, key=lambda number: number != root)


@pytest.fixture
def block_node(tmp_path):
    """A node, made outside any container cgroup, for a block device this test may read: the
    disk holding / if the host allows it (some sandboxes forbid even root), else the first
    that opens (a loop or zram device), so that a denial in the cgroup is the cgroup's doing."""
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


def device_numbers(path):
    rdev = os.stat(path).st_rdev
    return os.major(rdev), os.minor(rdev)


def devices_list(cgroup):
    with open(os.path.join(cgroup.path, "devices.list")) as listing:
        return listing.read().splitlines()


def errno_in_cgroup(cgroup, action):
    """Fork a child, move it into cgroup, run action() there: the errno it hit, 0 if none."""
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 255
        try:
            os.close(go_w)
            if os.read(go_r, 1) == b"x":  # moved in: go
                action()
                code = 0
        except OSError as err:
            code = err.errno
        finally:
            os._exit(code)
    os.close(go_r)
    try:
        cgroup.add(pid)
        os.write(go_w, b"x")
    finally:
        os.close(go_w)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def read_block(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.read(fd, 512)
    finally:
        os.close(fd)


def test_create_writes_dockers_rules(devices, container_id):
    cgroup = devices.create(container_id)
    assert devices_list(cgroup) == DOCKER_RULES


def test_cgroup_lives_under_the_parent_named_by_the_id(devices, container_id):
    cgroup = devices.create(container_id)
    assert cgroup.path == os.path.join(devices.root, container_id)
    assert os.path.isfile(os.path.join(cgroup.path, "devices.allow"))


def test_add_moves_the_process_into_the_cgroup(devices, container_id):
    cgroup = devices.create(container_id)

    def check_own_cgroup():
        with open("/proc/self/cgroup") as own:
            line = [entry for entry in own if ":devices:" in entry][0]
        if not cgroup.path.endswith(line.strip().split(":", 2)[2]):
            raise OSError(errno.ENOENT, "not in the cgroup")

    assert errno_in_cgroup(cgroup, check_own_cgroup) == 0


def test_mknod_of_a_block_device_is_allowed(devices, container_id, tmp_path, block_node):
    cgroup = devices.create(container_id)
    node = str(tmp_path / "made-inside")
    number = os.stat(block_node).st_rdev
    try:
        assert errno_in_cgroup(cgroup, lambda: os.mknod(node, stat.S_IFBLK | 0o600, number)) == 0
    finally:
        if os.path.lexists(node):
            os.unlink(node)


def test_reading_a_block_device_is_denied(devices, container_id, block_node):
    cgroup = devices.create(container_id)
    assert errno_in_cgroup(cgroup, lambda: read_block(block_node)) == errno.EPERM


def test_opening_kmsg_for_writing_is_denied(devices, container_id, tmp_path):
    """runc's dev.bats "device cgroup deny": /dev/kmsg (c 1:11) is not on the list. It is only
    opened, never written, so a broken filter cannot put anything in the kernel log."""
    cgroup = devices.create(container_id)
    node = str(tmp_path / "kmsg")
    os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 11))
    try:
        assert errno_in_cgroup(cgroup, lambda: os.close(os.open(node, os.O_WRONLY))) == errno.EPERM
    finally:
        os.unlink(node)


def test_dev_null_still_works(devices, container_id):
    cgroup = devices.create(container_id)

    def use_null():
        fd = os.open("/dev/null", os.O_RDWR)
        try:
            os.write(fd, b"probe")
            os.read(fd, 1)
        finally:
            os.close(fd)

    assert errno_in_cgroup(cgroup, use_null) == 0


def test_privileged_allows_every_device(devices, container_id, block_node):
    cgroup = devices.create(container_id, privileged=True)
    assert devices_list(cgroup) == ["a *:* rwm"]
    assert errno_in_cgroup(cgroup, lambda: read_block(block_node)) == 0


def test_create_again_resets_the_rules(devices, container_id):
    devices.create(container_id, privileged=True)
    cgroup = devices.create(container_id)
    assert devices_list(cgroup) == DOCKER_RULES


def test_load_finds_the_cgroup_after_a_daemon_restart(devices, container_id):
    created = devices.create(container_id)
    restarted = cgroups.DeviceCgroup(parent=os.path.basename(devices.root))
    loaded = restarted.load(container_id)
    assert loaded.path == created.path
    loaded.remove()
    assert not os.path.exists(created.path)


def test_remove_deletes_only_the_containers_directory(devices, container_id):
    cgroup = devices.create(container_id)
    cgroup.remove()
    assert not os.path.exists(cgroup.path)
    assert os.path.isdir(devices.root)


def test_remove_of_a_missing_cgroup_is_fine(devices, container_id):
    devices.load(container_id).remove()


def sleeper_in(cgroup):
    """A child process parked inside `cgroup`; the caller kills and reaps it."""
    pid = os.fork()
    if pid == 0:
        signal.pause()
        os._exit(0)
    try:
        cgroup.add(pid)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    return pid


def test_remove_waits_for_the_last_process_to_exit(devices, container_id):
    cgroup = devices.create(container_id)
    pid = sleeper_in(cgroup)
    killer = threading.Timer(0.2, lambda: (os.kill(pid, signal.SIGKILL), os.waitpid(pid, 0)))
    killer.start()
    cgroup.remove(timeout=5)
    killer.join()
    assert not os.path.exists(cgroup.path)


def test_remove_fails_while_a_process_is_inside(devices, container_id):
    cgroup = devices.create(container_id)
    pid = sleeper_in(cgroup)
    try:
        with pytest.raises(cgroups.CgroupError, match="device or resource busy"):
            cgroup.remove(timeout=0.05)
        assert os.path.isdir(cgroup.path)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_container_id_cannot_leave_the_parent(devices):
    with pytest.raises(cgroups.CgroupError, match="invalid container ID"):
        devices.create("../escape")
    assert not os.path.exists(os.path.join(os.path.dirname(devices.root), "escape"))


def test_add_of_a_dead_process_fails_with_context(devices, container_id):
    cgroup = devices.create(container_id)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(cgroups.CgroupError, match="cgroup.procs: no such process"):
        cgroup.add(pid)


def test_unsupported_on_a_cgroup_v2_only_host(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
    assert not cgroups.device_cgroup_supported(str(mountinfo))
    with pytest.raises(cgroups.CgroupError, match="devices controller is not mounted"):
        cgroups.DeviceCgroup(mountinfo=str(mountinfo))


def test_container_cannot_read_a_host_disk(devices, container_id, rootfs, tmp_path,  # noqa: F811
                                           block_node):
    """Check 10 of security.md, the daemon's way: the init joins the cgroup at the exec gate."""
    cgroup = devices.create(container_id)

    def spawn(stdio):
        init = execdriver.start(command, stdio)
        cgroup.add(init.pid)
        return init

    script = "mknod /tmp/d b %d %d && { head -c512 /tmp/d >/dev/null; r=$?; rm /tmp/d; exit $r; }"
    command = containers.command(rootfs, ["sh", "-c", script % device_numbers(block_node)],
                                 container_dir=containers.container_dir(str(tmp_path / "c")))
    result = containers.Runner(spawn).result()
    assert result.exit_code == 1
    assert "Operation not permitted" in result.stderr
