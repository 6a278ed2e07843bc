"""security.md section 6, checks 1-9, 11-15, 20, 23 and 24, run with the real docker CLI.

(Check 10 is also in test_runtime_cli.py; 17-19 are in test_cp_top_cli.py; 21 and 22 in
test_daemon.py; 25 in part in test_boot.py and test_containers_cli.py; 16 is the robustness
issue's, like the rest of 25.)

Each check is the command the checklist gives, against a pydockerd with a busybox image, with
`--network none`. A sub-check is skipped only where this host lacks the path it is about
(a masked /proc file the kernel does not have), never because it fails.
"""
import os
import re
import signal
import stat
import subprocess

import pytest

# Fixtures: pytest finds them by name in this module (the module's daemon, cleaned after each test).
from containers_support import busybox_archive, daemon, no_containers_left  # noqa: F401
from containers_support import (api_create, err, inspect, out, parse_timestamp, run, run_detached,
                                wait_for, wait_until_restarted, wait_until_restarts_end,
                                write_docker_archive)
from conftest import build_busybox_rootfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

DEFAULT_CAPS = "00000000a80425fb"
LOOP = "while true; do sleep 0.1; done"


def in_container(daemon, script, *options, check=True):
    """`docker run --rm --network none OPTIONS busybox sh -c SCRIPT`."""
    return run(daemon, "--rm", *(options + ("busybox", "sh", "-c", script)), check=check)


# -- check 1: capabilities ----------------------------------------------------------------

@pytest.fixture(scope="module")
def capability_sets(daemon):
    status = out(run(daemon, "--rm", "busybox", "grep", "-E", "^Cap(Inh|Prm|Eff|Bnd|Amb)",
                     "/proc/self/status"))
    return dict(line.split(":\t") for line in status.splitlines())


@pytest.mark.parametrize("name,expected", [
    ("CapInh", "0000000000000000"), ("CapAmb", "0000000000000000"),
    ("CapPrm", DEFAULT_CAPS), ("CapEff", DEFAULT_CAPS), ("CapBnd", DEFAULT_CAPS),
])
def test_check01_capability_set(capability_sets, name, expected):
    assert capability_sets[name] == expected


# -- checks 2 and 3: capabilities of a user, dropped capabilities, no_new_privileges -------

def status_fields(daemon, *options):
    status = out(run(daemon, "--rm", *options, "busybox", "grep", "-E", "^(Cap(Eff|Bnd)|NoNewPrivs)",
                     "/proc/self/status"))
    return dict(line.split(":\t") for line in status.splitlines())


def test_check02_a_non_root_user_has_no_effective_capabilities(daemon):
    fields = status_fields(daemon, "--user", "1000:1000")
    assert (fields["CapEff"], fields["CapBnd"]) == ("0000000000000000", DEFAULT_CAPS)


def test_check02_cap_drop_all_empties_the_bounding_set(daemon):
    assert status_fields(daemon, "--cap-drop", "ALL")["CapBnd"] == "0000000000000000"


def test_check02_cap_drop_chown_refuses_chown(daemon):
    result = in_container(daemon, "chown 100 /tmp", "--cap-drop", "chown", check=False)
    assert result.returncode != 0 and "Operation not permitted" in err(result)


def test_check03_no_new_privileges_only_when_asked(daemon):
    assert status_fields(daemon)["NoNewPrivs"] == "0"
    assert status_fields(daemon, "--security-opt", "no-new-privileges")["NoNewPrivs"] == "1"


# -- check 4: masked files ----------------------------------------------------------------

MASKED_FILES = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                "/proc/interrupts"]


@pytest.mark.parametrize("path", MASKED_FILES)
def test_check04_masked_file_is_dev_null(daemon, path):
    if not os.path.exists(path):
        pytest.skip("this kernel has no %s" % path)
    result = in_container(daemon, 'stat -c "%%F %%t:%%T" %s; wc -c < %s' % (path, path))
    assert out(result).splitlines() == ["character special file 1:3", "0"]


# -- check 5: masked directories ------------------------------------------------------------

@pytest.mark.parametrize("path", ["/proc/acpi", "/proc/scsi", "/sys/firmware"])
def test_check05_masked_directory_is_empty_and_read_only(daemon, path):
    if not os.path.isdir(path):
        pytest.skip("this host has no %s" % path)
    result = in_container(daemon, "ls -A %s; touch %s/x" % (path, path), check=False)
    assert result.stdout == b""
    assert "Read-only file system" in err(result)
    assert result.returncode != 0


# -- check 6: read-only /proc and /sys --------------------------------------------------------

@pytest.mark.parametrize("script", [
    "touch /proc/sysrq-trigger",
    "echo 1 > /proc/sys/vm/drop_caches",
    "touch /sys/kernel/profiling",
])
def test_check06_kernel_knobs_are_not_writable(daemon, script):
    path = script.split()[-1]
    if not os.path.exists(path):
        pytest.skip("this host has no %s" % path)
    result = in_container(daemon, script, check=False)
    assert result.returncode != 0
    assert re.search(r"Read-only file system|Permission denied", err(result)), err(result)


@pytest.mark.parametrize("path", ["/proc/sysrq-trigger", "/sys/kernel/profiling"])
def test_check06_privileged_can_touch(daemon, path):
    if not os.path.exists(path):
        pytest.skip("this host has no %s" % path)
    assert in_container(daemon, "touch " + path, "--privileged").returncode == 0


# -- check 7: the default mounts -------------------------------------------------------------

@pytest.fixture(scope="module")
def container_mounts(daemon):
    """`mount` inside a container: {target: (type, {options})}."""
    mounts = {}
    for line in out(run(daemon, "--rm", "busybox", "mount")).splitlines():
        match = re.match(r"^(\S+) on (\S+) type (\S+) \((.*)\)$", line)
        assert match, line
        mounts[match.group(2)] = (match.group(3), set(match.group(4).split(",")))
    return mounts


@pytest.mark.parametrize("target,fstype,options", [
    ("/proc", "proc", {"nosuid", "nodev", "noexec"}),
    ("/dev", "tmpfs", {"nosuid", "mode=755"}),
    ("/dev/pts", "devpts", {"nosuid", "noexec", "gid=5", "mode=620", "ptmxmode=666"}),
    ("/sys", "sysfs", {"ro", "nosuid", "nodev", "noexec"}),
    ("/dev/mqueue", "mqueue", {"nosuid", "nodev", "noexec"}),
    ("/dev/shm", "tmpfs", {"nosuid", "nodev", "noexec", "size=65536k"}),
])
def test_check07_default_mount(container_mounts, target, fstype, options):
    assert target in container_mounts, sorted(container_mounts)
    found_type, found_options = container_mounts[target]
    assert found_type == fstype
    assert options <= found_options, found_options


@pytest.mark.parametrize("target", ["/etc/resolv.conf", "/etc/hostname", "/etc/hosts"])
def test_check07_network_file_is_a_bind_mount(container_mounts, target):
    assert target in container_mounts


def test_check07_everything_under_sys_is_read_only(container_mounts):
    under_sys = {t: o for t, (_, o) in container_mounts.items() if t == "/sys" or t.startswith("/sys/")}
    assert under_sys
    assert all("ro" in options for options in under_sys.values()), under_sys


# -- check 8: --read-only ---------------------------------------------------------------

def test_check08_read_only_root_and_network_files(daemon):
    result = in_container(daemon, "touch /file /etc/hosts /etc/resolv.conf /etc/hostname; "
                          "mount | grep devpts", "--read-only", check=False)
    assert err(result).count("Read-only file system") == 4
    devpts = out(result).splitlines()
    assert len(devpts) == 1 and "rw" in devpts[0].split("(")[1].rstrip(")").split(",")


# -- check 9: /dev ----------------------------------------------------------------------------

def test_check09_dev_null_is_the_real_device(daemon):
    fields = out(in_container(daemon, "ls -l /dev/null")).split()
    assert fields[:6] == ["crw-rw-rw-", "1", "root", "root", "1,", "3"]


def test_check09_dev_holds_the_default_devices_and_no_host_disks(daemon):
    entries = set(out(in_container(daemon, "ls /dev")).split())
    required = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm",
                "mqueue", "fd", "stdin", "stdout", "stderr"}
    assert required <= entries
    assert entries - required <= {"console", "core"}, entries - required


def test_check09_dev_links(daemon):
    result = in_container(daemon, "readlink /dev/ptmx; readlink /dev/fd; readlink /dev/stderr")
    assert out(result).splitlines() == ["pts/ptmx", "/proc/self/fd", "/proc/self/fd/2"]


# -- check 10: the devices cgroup keeps CAP_MKNOD harmless -----------------------------------

def readable_block_device():
    """major, minor of a block device root may open here (the sandbox forbids some), so that
    EPERM inside a container can only come from the devices cgroup."""
    node = "/tmp/pyd-blockprobe-%d" % os.getpid()
    for entry in sorted(os.listdir("/sys/dev/block")):
        major, minor = (int(part) for part in entry.split(":"))
        try:
            os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(major, minor))
            os.close(os.open(node, os.O_RDONLY))
            return major, minor
        except OSError:
            continue
        finally:
            if os.path.lexists(node):
                os.unlink(node)
    pytest.skip("no block device is readable by root on this host")


def test_check10_mknod_works_but_the_device_cannot_be_opened(daemon):
    major, minor = readable_block_device()
    script = "mknod /tmp/d b %d %d && head -c512 /tmp/d >/dev/null" % (major, minor)
    result = run(daemon, "--rm", "busybox", "sh", "-c", script, check=False)
    assert result.returncode != 0
    assert "Operation not permitted" in err(result)


def test_check10_a_char_device_outside_the_allow_list_cannot_be_written(daemon):
    result = run(daemon, "--rm", "busybox", "sh", "-c", "mknod /tmp/k c 1 11 && echo probe > /tmp/k",
                 check=False)
    assert result.returncode != 0
    assert "Operation not permitted" in err(result)


def test_check10_exec_is_confined_too(daemon):
    major, minor = readable_block_device()
    cid = run_detached(daemon, "busybox", "sleep", "60")
    result = daemon.docker("exec", cid, "sh", "-c", "mknod /tmp/d b %d %d && head -c512 /tmp/d"
                           % (major, minor), check=False)
    assert result.returncode != 0
    assert "Operation not permitted" in err(result)


def test_check10_privileged_may_read_devices(daemon):
    major, minor = readable_block_device()
    script = "mknod /tmp/d b %d %d && head -c512 /tmp/d >/dev/null && echo read" % (major, minor)
    assert out(run(daemon, "--rm", "--privileged", "busybox", "sh", "-c", script)) == "read"


# -- check 11: namespaces -------------------------------------------------------------------

NAMESPACES = ["mnt", "uts", "ipc", "pid", "net"]


@pytest.fixture(scope="module")
def container_namespaces(daemon):
    script = "for n in %s; do readlink /proc/self/ns/$n; done" % " ".join(NAMESPACES)
    return dict(zip(NAMESPACES, out(in_container(daemon, script)).splitlines()))


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_check11_namespace_is_new(container_namespaces, namespace):
    host = os.readlink("/proc/self/ns/%s" % namespace)
    assert container_namespaces[namespace].startswith(namespace + ":[")
    assert container_namespaces[namespace] != host


def test_check11_command_is_pid_1(daemon):
    assert out(in_container(daemon, "echo $$")) == "1"


# -- check 12: no bare /proc after pivot_root ---------------------------------------------------

def test_check12_new_user_namespace_cannot_mount_a_fresh_proc(daemon):
    result = run(daemon, "--rm", "busybox", "unshare", "-mrpf", "sh", "-c",
                 "mount -t proc none /proc && echo ESCAPED", check=False)
    assert b"ESCAPED" not in result.stdout


def test_check12_without_seccomp_the_masks_still_stop_a_fresh_proc(daemon):
    """The same with seccomp off (as the checklist runs it on Docker): the user namespace is
    made, so it is pivot_root and the masked /proc paths that must refuse the new procfs."""
    result = run(daemon, "--rm", "--security-opt", "seccomp=unconfined", "busybox",
                 "unshare", "-mrpf", "sh", "-c",
                 "echo INSIDE; mount -t proc none /proc && echo ESCAPED", check=False)
    assert b"INSIDE" in result.stdout, err(result)
    assert b"ESCAPED" not in result.stdout


# -- check 13: image symlinks that point out of the root ---------------------------------------

@pytest.mark.parametrize("trap", ["proc", "dev", "etc/hosts"])
def test_check13_symlink_out_of_the_root_touches_nothing_on_the_host(daemon, tmp_path, trap):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hosts").write_text("ORIGINAL\n")
    target = str(outside / "hosts") if trap == "etc/hosts" else str(outside)
    rootfs = build_busybox_rootfs(str(tmp_path / "rootfs"))
    victim = os.path.join(rootfs, trap)
    if os.path.isdir(victim):
        os.rmdir(victim)
    os.symlink(target, victim)
    image = "evil-%s:latest" % trap.replace("/", "-")
    daemon.docker("load", "-i", write_docker_archive(rootfs, str(tmp_path / "evil.tar"), image))
    try:
        daemon.docker("run", "--rm", "--network", "none", image, "sh", "-c",
                      "echo PWNED > /etc/hosts", check=False)
    finally:
        daemon.docker("rmi", "-f", image, check=False)
    assert sorted(os.listdir(str(outside))) == ["hosts"]
    assert (outside / "hosts").read_text() == "ORIGINAL\n"
    with open("/proc/self/mounts") as mounts:
        assert str(outside) not in mounts.read()


# -- check 14: hostname, hosts, DNS ---------------------------------------------------------

def test_check14_hostname_is_the_short_id(daemon):
    cid = run_detached(daemon, "busybox", "sh", "-c", LOOP)
    assert out(daemon.docker("exec", cid, "hostname")) == cid[:12]


def test_check14_resolv_conf_has_no_loopback_nameserver(daemon):
    servers = [line.split()[1] for line in
               out(run(daemon, "--rm", "busybox", "cat", "/etc/resolv.conf")).splitlines()
               if line.startswith("nameserver")]
    assert servers
    assert not [server for server in servers if server.startswith("127.")]
    with open("/etc/resolv.conf") as host:
        host_servers = [line.split()[1] for line in host
                        if line.startswith("nameserver") and not line.split()[1].startswith("127.")]
    if host_servers:
        assert servers == host_servers


def test_check14_hostname_flag(daemon):
    assert out(run(daemon, "--rm", "--hostname", "foo.bar", "busybox", "hostname")) == "foo.bar"


# -- check 15: CVE-2024-21626, no leaked descriptors ------------------------------------------

@pytest.fixture
def host_mark():
    path = "/HOSTMARK_%d" % os.getpid()
    open(path, "w").close()
    yield os.path.basename(path)
    os.unlink(path)


def test_check15_workdir_through_a_leaked_fd_never_reaches_the_host(daemon, host_mark):
    for fd in range(3, 21):
        result = run(daemon, "--rm", "-w", "/proc/self/fd/%d" % fd, "busybox", "ls", "../../..",
                     check=False)
        assert host_mark.encode() not in result.stdout + result.stderr, fd


def test_check15_container_init_holds_only_stdio(daemon):
    cid = run_detached(daemon, "busybox", "sleep", "60")
    pid = inspect(daemon, cid)["State"]["Pid"]
    fds = {int(fd): os.readlink("/proc/%d/fd/%s" % (pid, fd)) for fd in os.listdir("/proc/%d/fd" % pid)}
    assert sorted(fds) == [0, 1, 2], fds
    for target in fds.values():
        assert re.match(r"^(pipe:\[\d+\]|/dev/pts/\d+|/dev/null)$", target), fds


# -- check 23: names and IDs through the API -------------------------------------------------

def create(daemon, name=None):
    return api_create(daemon, {"Image": "busybox", "Cmd": ["true"],
                               "HostConfig": {"NetworkMode": "none"}}, name=name)


@pytest.mark.parametrize("name", ["a", "x/y"])
def test_check23_invalid_name_is_400(daemon, name):
    status, body = create(daemon, name)
    assert status == 400
    assert body["message"] == ("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                               "are allowed" % name)


def test_check23_leading_slash_is_accepted(daemon):
    status, body = create(daemon, "/ok1")
    assert status == 201
    assert inspect(daemon, body["Id"])["Name"] == "/ok1"


def test_check23_duplicate_name_is_409(daemon):
    first = create(daemon, "twice")[1]["Id"]
    status, body = create(daemon, "twice")
    assert status == 409
    assert body["message"] == (
        'Conflict. The container name "/twice" is already in use by container "%s". You have '
        'to remove (or rename) that container to be able to reuse that name.' % first)


def test_check23_ambiguous_prefix_is_400(daemon):
    seen = set()
    while True:
        cid = create(daemon)[1]["Id"]
        if cid[0] in seen:
            break
        seen.add(cid[0])
    response = daemon.request("GET", "/containers/%s/json" % cid[0])
    assert response.status == 400
    assert response.json()["message"].lower() == "multiple ids found with provided prefix: " + cid[0]


def test_check23_unknown_container_is_404(daemon):
    response = daemon.request("GET", "/containers/nosuch/json")
    assert response.status == 404
    assert response.json()["message"] == "No such container: nosuch"


@pytest.mark.parametrize("name", ["../../etc", "..%2F..%2Fetc"])
def test_check23_a_path_as_a_name_is_404_never_a_file(daemon, name):
    response = daemon.request("GET", "/containers/%s/json" % name)
    assert response.status == 404
    assert "message" in response.json()
    assert b"root:" not in response.body


def test_check23_cli_inspect_of_a_path_is_no_such_object(daemon):
    result = daemon.docker("inspect", "../../etc", check=False)
    assert result.returncode != 0
    assert "No such object" in err(result)
    assert "root:" not in result.stdout.decode()


def test_check23_ids_are_64_hex_and_not_all_digits(daemon):
    for _ in range(3):
        cid = run_detached(daemon, "busybox", "true")
        assert re.match(r"^[0-9a-f]{64}$", cid) and not cid[:12].isdigit()


# -- check 24: restart policies --------------------------------------------------------------

def test_check24_on_failure_3(daemon):
    cid = run_detached(daemon, "--restart=on-failure:3", "busybox", "false")
    wait_until_restarts_end(daemon, cid, 3)
    assert out(daemon.docker("inspect", "-f", "{{.RestartCount}} {{.State.Running}}", cid)) == "3 false"


def test_check24_default_policy_is_no(daemon):
    cid = create(daemon)[1]["Id"]
    assert inspect(daemon, cid)["HostConfig"]["RestartPolicy"]["Name"] == "no"


def test_check24_always_restarts_after_kill_9_of_the_container(daemon):
    cid = run_detached(daemon, "--restart=always", "busybox", "sh", "-c", LOOP)
    pid = inspect(daemon, cid)["State"]["Pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until_restarted(daemon, cid, pid)


def test_check24_autoremove_with_restart_is_400(daemon):
    status, body = api_create(daemon, {"Image": "busybox", "HostConfig": {
        "NetworkMode": "none", "AutoRemove": True, "RestartPolicy": {"Name": "always"}}})
    assert status == 400
    assert "can't create 'AutoRemove' container with restart policy" in body["message"]


def test_check24_unknown_policy_is_400(daemon):
    status, body = api_create(daemon, {"Image": "busybox", "HostConfig": {
        "NetworkMode": "none", "RestartPolicy": {"Name": "foo"}}})
    assert status == 400
    assert "invalid restart policy" in body["message"].lower() and "foo" in body["message"]


def test_check24_retry_count_without_on_failure_is_400(daemon):
    status, _ = api_create(daemon, {"Image": "busybox", "HostConfig": {
        "NetworkMode": "none", "RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}}})
    assert status == 400


def test_check24_backoff_doubles_from_100ms(daemon):
    """The delay from one run's FinishedAt to the next run's StartedAt is 100 ms * 2^n."""
    cid = run_detached(daemon, "--restart=always", "busybox", "sh", "-c", "sleep 0.3; exit 1")
    runs = {}  # StartedAt -> {"count": RestartCount while it ran, "finished": FinishedAt}

    def observe():
        container = inspect(daemon, cid)
        state = container["State"]
        this_run = runs.setdefault(state["StartedAt"], {})
        if state["Running"] and not state["Restarting"]:
            this_run.setdefault("count", container["RestartCount"])
        if parse_timestamp(state["FinishedAt"]) > parse_timestamp(state["StartedAt"]):
            this_run["finished"] = state["FinishedAt"]
        return len([run_ for run_ in runs.values() if "count" in run_]) >= 5

    wait_for(observe, timeout=20, interval=0.01, what="five runs")
    daemon.docker("rm", "-f", cid)
    ordered = sorted(runs.items(), key=lambda item: parse_timestamp(item[0]))
    delays = {}
    for (_, run_), (next_started, _) in zip(ordered, ordered[1:]):
        if "count" in run_ and "finished" in run_:
            delays[run_["count"]] = (parse_timestamp(next_started).timestamp()
                                     - parse_timestamp(run_["finished"]).timestamp())
    assert len(delays) >= 3, runs
    for count, delay in delays.items():
        backoff = 0.1 * 2 ** count
        assert backoff - 0.02 <= delay <= backoff + 0.3, (count, delays)


# -- check 20: on-disk permissions --------------------------------------------------------

def test_check20_state_is_closed_to_other_users(daemon):
    """The data root and each container's directory are 0710 or stricter and root's, its config
    0600; and no world-writable path under the data or exec root can be written by another
    user (the image layers' own 1777 /tmp directories are shut in by their parents)."""
    cid = out(run(daemon, "-d", "busybox", "sh", "-c", LOOP))
    container_dir = os.path.join(daemon.root, "containers", cid)
    for path in (daemon.root, container_dir):
        info = os.stat(path)
        assert stat.S_IMODE(info.st_mode) & ~0o710 == 0 and info.st_uid == 0, path
    assert stat.S_IMODE(os.stat(os.path.join(container_dir, "config.v2.json")).st_mode) == 0o600
    writable = []
    for top in (daemon.root, daemon.exec_root):
        for directory, names, files in os.walk(top):
            for name in names + files:
                path = os.path.join(directory, name)
                if not os.path.islink(path) and os.lstat(path).st_mode & stat.S_IWOTH:
                    writable.append(path)
    assert writable, "expected the image's /tmp to be world-writable, so the test means something"
    for path in writable:
        probe = subprocess.run(["setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups",
                                "test", "-w", path])
        assert probe.returncode != 0, "another user can write %s" % path
