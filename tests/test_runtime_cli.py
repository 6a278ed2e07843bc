"""Runtime limits and hardening end to end (issue 11, items 1, 2 and 4), with the real CLI.

Limits are read back from inside the container (/sys/fs/cgroup/<controller>/..., the view the
daemon mounts for it) and from the host's cgroup directories; an OOM kill, a bounded fork
bomb against --pids-limit, pause/unpause, `docker update`, `docker stats` and every hardening
option are observed from inside. The cgroup v2 paths run in test_cgroups_v2_cli.py.

One daemon for the module, started with --default-ulimit so that the merge is tested too.
"""
import json
import os
import time

import pytest

from drivers import cgroups
# Fixtures: pytest finds them by name in this module (every container goes after each test).
from containers_support import busybox_archive, no_containers_left  # noqa: F401
from containers_support import (block_device_path, busybox_daemon, err, inspect, out, pty_docker,
                                run, run_detached, wait_for, wait_until_exited)
from conftest import UnixHTTPConnection, boot_log_of_a_refused_daemon

HIERARCHIES = cgroups.find_hierarchies()
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(HIERARCHIES.version != "1", reason="these read cgroup v1 files"),
]

MB = 1024 * 1024
SPIN = "while :; do :; done"


@pytest.fixture(scope="module")
def daemon(busybox_archive):  # noqa: F811
    with busybox_daemon(busybox_archive, ["--default-ulimit", "nofile=512:1024"]) as process:
        yield process


def inside(daemon, script, *options, check=True):
    """`docker run --rm --network none OPTIONS busybox sh -c SCRIPT`: its stdout lines."""
    result = run(daemon, "--rm", *(options + ("busybox", "sh", "-c", script)), check=check)
    return out(result).splitlines() if check else result


def host_cgroup(daemon, container_id, controller):
    """The container's directory in a host hierarchy (its parent is relative: below ours)."""
    return os.path.join(HIERARCHIES.v1[controller], HIERARCHIES.own[controller].lstrip("/"),
                        daemon.cgroup_parent, container_id)


def read(path):
    with open(path) as f:
        return f.read().strip()


def api(daemon, method, path, body=None):
    response = daemon.request(method, path, body=json.dumps(body) if body is not None else None,
                              headers={"Content-Type": "application/json"})
    return response.status, response.json() if response.body else None


# -- limits, read back from inside -------------------------------------------------------------

def test_memory_cpu_and_pids_limits_read_back_inside(daemon):
    files = ["memory/memory.limit_in_bytes", "memory/memory.memsw.limit_in_bytes",
             "memory/memory.soft_limit_in_bytes", "cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us",
             "cpu/cpu.shares", "cpuset/cpuset.cpus", "pids/pids.max"]
    lines = inside(daemon, "cd /sys/fs/cgroup && cat " + " ".join(files),
                   "-m", "32m", "--memory-reservation", "16m", "--cpus", "0.5",
                   "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "20")
    assert lines == [str(32 * MB), str(64 * MB), str(16 * MB), "50000", "100000", "512", "0", "20"]


def test_swap_oom_kill_disable_swappiness_and_cfs_period(daemon):
    lines = inside(daemon, "cd /sys/fs/cgroup && cat memory/memory.memsw.limit_in_bytes "
                   "memory/memory.swappiness cpu/cpu.cfs_period_us cpu/cpu.cfs_quota_us && "
                   "grep oom_kill_disable memory/memory.oom_control",
                   "-m", "16m", "--memory-swap", "48m", "--oom-kill-disable",
                   "--memory-swappiness", "10", "--cpu-period", "50000", "--cpu-quota", "25000")
    assert lines == [str(48 * MB), "10", "50000", "25000", "oom_kill_disable 1"]


def test_device_throttles_are_written(daemon):
    device = block_device_path()
    number = os.stat(device).st_rdev
    lines = inside(daemon, "cat /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device "
                   "/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device",
                   "--device-read-bps", device + ":1mb", "--device-write-iops", device + ":77")
    major_minor = "%d:%d" % (os.major(number), os.minor(number))
    assert lines == [major_minor + " " + str(MB), major_minor + " 77"]


def test_limits_land_in_the_hosts_cgroup_directories(daemon):
    cid = run_detached(daemon, "-m", "24m", "--pids-limit", "9", "busybox", "sleep", "60")
    assert read(os.path.join(host_cgroup(daemon, cid, "memory"), "memory.limit_in_bytes")) == \
        str(24 * MB)
    assert read(os.path.join(host_cgroup(daemon, cid, "pids"), "pids.max")) == "9"
    assert str(inspect(daemon, cid)["State"]["Pid"]) in read(
        os.path.join(host_cgroup(daemon, cid, "pids"), "cgroup.procs")).split()


def test_exec_joins_the_containers_cgroups(daemon):
    cid = run_detached(daemon, "-m", "24m", "busybox", "sleep", "60")
    lines = out(daemon.docker("exec", cid, "cat", "/proc/self/cgroup")).splitlines()
    memory = [line for line in lines if ":memory:" in line][0]
    assert memory.endswith("/%s/%s" % (daemon.cgroup_parent, cid))


def test_cgroups_are_removed_with_the_container(daemon):
    cid = run_detached(daemon, "-m", "24m", "busybox", "sleep", "60")
    directories = [host_cgroup(daemon, cid, c) for c in ("memory", "cpu", "pids", "devices")]
    assert all(os.path.isdir(d) for d in directories)
    daemon.docker("rm", "-f", cid)
    assert not any(os.path.exists(d) for d in directories)


@pytest.mark.parametrize("options,message", [
    (["-m", "4m"], "Minimum memory limit allowed is 6MB"),
    (["--cpuset-cpus", "0-%d" % (os.cpu_count() + 3)], "Requested CPUs are not available"),
    (["--cpuset-mems", "5"], "Requested memory nodes are not available"),
    (["--cpus", str(os.cpu_count() + 1)],
     "Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available"
     % (os.cpu_count(), os.cpu_count())),
    (["--cpus", "1", "--cpu-quota", "50000"], "Conflicting options: Nano CPUs and CPU Quota"),
    (["--cpu-period", "100"], "CPU cfs period can not be less than 1ms"),
    (["-m", "32m", "--memory-swap", "16m"], "Minimum memoryswap limit should be larger"),
    (["-m", "16m", "--memory-reservation", "32m"], "Minimum memory limit can not be less than"),
    (["--kernel-memory", "32m"], "Your kernel does not support kernel memory limit"),
    (["--blkio-weight", "500"], "Your kernel does not support Block I/O weight"),
    (["--cpu-rt-runtime", "1000"], "pydockerd does not support real-time CPU scheduling"),
    (["--device-read-bps", "/dev/nope:1mb"], "stat /dev/nope: no such file or directory"),
    (["--cap-add", "CAP_BOGUS"], 'unknown capability: "CAP_BOGUS"'),
    (["--oom-score-adj", "1001"], "range for oom score adj is [-1000, 1000]"),
    (["--ulimit", "nofile=10:%d" % (2 ** 40)], "only CAP_SYS_RESOURCE may raise"),
    (["--security-opt", "apparmor=docker-default"], "pydockerd does not apply apparmor profiles"),
    (["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"], "network namespace"),
    (["--device", "/dev/nope"], 'error gathering device information while adding custom device'),
    (["--cgroupns", "private"], "pydockerd does not support cgroup namespaces"),
])
def test_a_refused_option_is_a_400_and_makes_nothing(daemon, options, message):
    if "Block I/O weight" in message and cgroups.probe_features(HIERARCHIES).blkio_weight:
        pytest.skip("this host has blkio weights")
    before = daemon.request("GET", "/containers/json?all=1").json()
    result = daemon.docker("create", *(options + ["busybox", "true"]), check=False)
    assert result.returncode != 0
    assert message in err(result), err(result)
    assert daemon.request("GET", "/containers/json?all=1").json() == before


def test_info_reports_what_the_host_supports(daemon):
    info = daemon.request("GET", "/info").json()
    features = cgroups.probe_features(HIERARCHIES)
    assert (info["CgroupVersion"], info["CgroupDriver"]) == ("1", "cgroupfs")
    assert (info["MemoryLimit"], info["PidsLimit"], info["CPUSet"]) == (True, True, True)
    assert info["KernelMemory"] is features.kernel_memory
    assert set(features.warnings) <= set(info["Warnings"])
    printed = err(daemon.docker("info"))  # the CLI prints the warnings on stderr
    for warning in features.warnings:
        assert warning in printed


# -- OOM, pids -------------------------------------------------------------------------------

def test_oom_kill_is_reported(daemon):
    since = str(int(time.time()) - 1)
    result = run(daemon, "--name", "hog", "-m", "8m", "--memory-swap", "8m", "busybox",
                 "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1", check=False)
    assert result.returncode == 137
    state = inspect(daemon, "hog")["State"]
    assert (state["OOMKilled"], state["ExitCode"]) == (True, 137)
    events = out(daemon.docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                               "--filter", "container=hog", "--format", "{{.Action}}"))
    assert events.splitlines()[-2:] == ["oom", "die"]
    daemon.docker("start", "hog")
    wait_until_exited(daemon, "hog")
    assert inspect(daemon, "hog")["State"]["OOMKilled"] is True  # it ran out again
    daemon.docker("rm", "hog")
    assert not inspect_state_of_a_healthy_run(daemon)["OOMKilled"]


def inspect_state_of_a_healthy_run(daemon):
    run(daemon, "--name", "fine", "-m", "8m", "busybox", "true")
    return inspect(daemon, "fine")["State"]


def test_pids_limit_stops_a_bounded_fork_loop(daemon):
    """40 forks against a limit of 10: the subshell that forks dies of its first refusal, and
    the rest is done with shell builtins (nothing may fork while the limit is reached)."""
    lines = inside(daemon, "(for i in $(seq 40); do sleep 2 & done) 2>/tmp/err; echo $?; "
                   "read n < /sys/fs/cgroup/pids/pids.current; echo $n; "
                   "read line < /tmp/err; echo $line", "--pids-limit", "10")
    status, current, error = lines
    assert status != "0" and int(current) <= 10 and "can't fork" in error


# -- pause, update ---------------------------------------------------------------------------

COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.02; done"


def counter(daemon, cid):
    merged = inspect(daemon, cid)["GraphDriver"]["Data"]["MergedDir"]
    return int(read(os.path.join(merged, "tmp/count")) or 0)


def test_pause_freezes_and_unpause_thaws(daemon):
    cid = run_detached(daemon, "busybox", "sh", "-c", COUNTER)
    wait_for(lambda: os.path.exists(os.path.join(
        inspect(daemon, cid)["GraphDriver"]["Data"]["MergedDir"], "tmp/count")), what="counting")
    since = str(int(time.time()) - 1)
    daemon.docker("pause", cid)
    assert inspect(daemon, cid)["State"]["Status"] == "paused"
    assert read(os.path.join(host_cgroup(daemon, cid, "freezer"), "freezer.state")) == "FROZEN"
    assert "(Paused)" in out(daemon.docker("ps", "--format", "{{.Status}}"))
    frozen_at = counter(daemon, cid)
    time.sleep(0.3)
    assert counter(daemon, cid) == frozen_at
    refused = daemon.docker("exec", cid, "true", check=False)
    assert "is paused, unpause the container before exec" in err(refused)
    assert "is already paused" in err(daemon.docker("pause", cid, check=False))
    daemon.docker("unpause", cid)
    wait_for(lambda: counter(daemon, cid) > frozen_at + 3, what="counting again")
    assert inspect(daemon, cid)["State"]["Status"] == "running"
    assert "is not paused" in err(daemon.docker("unpause", cid, check=False))
    events = out(daemon.docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                               "--filter", "container=" + cid, "--format", "{{.Action}}"))
    assert events.splitlines()[-2:] == ["pause", "unpause"]


def test_stop_and_kill_of_a_paused_container(daemon):
    cid = run_detached(daemon, "busybox", "sh", "-c", "trap 'exit 3' TERM; " + COUNTER)
    time.sleep(0.2)
    daemon.docker("pause", cid)
    started = time.monotonic()
    daemon.docker("stop", "-t", "10", cid)
    assert time.monotonic() - started < 5  # the TERM got through: no 10 s wait for the KILL
    state = inspect(daemon, cid)["State"]
    assert (state["Status"], state["ExitCode"], state["Paused"]) == ("exited", 3, False)
    daemon.docker("start", cid)
    daemon.docker("pause", cid)
    daemon.docker("kill", cid)
    assert wait_until_exited(daemon, cid)["ExitCode"] == 137


def test_pause_of_a_stopped_container_is_a_conflict(daemon):
    daemon.docker("create", "--name", "idle", "busybox", "true")
    assert "is not running" in err(daemon.docker("pause", "idle", check=False))


def test_update_of_a_running_container(daemon):
    cid = run_detached(daemon, "-m", "32m", "busybox", "sleep", "60")
    daemon.docker("update", "-m", "64m", "--memory-swap", "128m", "--cpus", "1",
                  "--pids-limit", "50", "--restart", "on-failure:3", cid)
    lines = out(daemon.docker("exec", cid, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                              "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
                              "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                              "/sys/fs/cgroup/pids/pids.max")).splitlines()
    assert lines == [str(64 * MB), str(128 * MB), "100000", "50"]
    host = inspect(daemon, cid)["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (64 * MB, 10 ** 9, 50)
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}


def test_update_the_kernel_refuses_changes_nothing(daemon):
    cid = run_detached(daemon, "-m", "64m", "--memory-swap", "64m", "busybox", "sh", "-c",
                       "x=$(head -c 20000000 /dev/zero | tr '\\0' a); echo held; "
                       "while :; do sleep 1; done")  # sh holds x (a last `sleep` would be exec'd)
    wait_for(lambda: "held" in out(daemon.docker("logs", cid)), what="the memory to be held")
    result = daemon.docker("update", "-m", "8m", "--memory-swap", "8m", cid, check=False)
    assert result.returncode != 0
    assert "Cannot update container" in err(result) and "busy" in err(result)
    limit = os.path.join(host_cgroup(daemon, cid, "memory"), "memory.limit_in_bytes")
    assert read(limit) == str(64 * MB)
    assert inspect(daemon, cid)["HostConfig"]["Memory"] == 64 * MB


def test_update_of_a_stopped_container_applies_at_start(daemon):
    daemon.docker("create", "--name", "later", "-m", "32m", "busybox", "cat",
                  "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    daemon.docker("update", "-m", "48m", "--memory-swap", "96m", "later")
    assert out(daemon.docker("start", "-a", "later")) == str(48 * MB)


# -- stats ---------------------------------------------------------------------------------

def test_stats_no_stream_shows_the_container(daemon):
    run_detached(daemon, "--name", "watched", "-m", "32m", "busybox", "sleep", "60")
    table = out(daemon.docker("stats", "--no-stream", "--format",
                              "{{.Name}} {{.MemUsage}} {{.PIDs}}", "watched"))
    name, usage, _, limit, pids = table.split()
    assert (name, limit, pids) == ("watched", "32MiB", "1")


def test_stats_api_fills_precpu_and_shows_throttling(daemon):
    cid = run_detached(daemon, "--cpus", "0.2", "-m", "32m", "busybox", "sh", "-c", SPIN)
    status, sample = api(daemon, "GET", "/containers/%s/stats?stream=0" % cid)
    assert status == 200
    assert sample["id"] == cid and sample["preread"] != "0001-01-01T00:00:00Z"
    cpu, precpu = sample["cpu_stats"], sample["precpu_stats"]
    assert cpu["system_cpu_usage"] > precpu["system_cpu_usage"] > 0
    assert cpu["cpu_usage"]["total_usage"] > precpu["cpu_usage"]["total_usage"]
    assert len(cpu["cpu_usage"]["percpu_usage"]) == os.cpu_count()
    assert cpu["online_cpus"] == os.cpu_count()
    assert cpu["throttling_data"]["throttled_periods"] > 0
    share = (cpu["cpu_usage"]["total_usage"] - precpu["cpu_usage"]["total_usage"]) / \
        (cpu["system_cpu_usage"] - precpu["system_cpu_usage"]) * cpu["online_cpus"]
    assert 0.1 < share < 0.3  # --cpus 0.2 of one CPU
    assert sample["memory_stats"]["limit"] == 32 * MB and sample["memory_stats"]["usage"] > 0
    assert sample["pids_stats"]["current"] == 1
    assert "networks" not in sample  # --network none: loopback only


def test_stats_stream_sends_a_sample_a_second_with_the_previous_one(daemon):
    cid = run_detached(daemon, "busybox", "sleep", "60")
    connection = daemon_connection(daemon)
    connection.request("GET", "/containers/%s/stats?stream=1" % cid)
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") is None
    first, second = (json.loads(response.readline()) for _ in range(2))
    connection.close()
    assert first["preread"] == "0001-01-01T00:00:00Z"
    assert first["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert second["preread"] == first["read"]
    assert second["precpu_stats"] == first["cpu_stats"]


def daemon_connection(daemon):
    return UnixHTTPConnection(daemon.socket, timeout=10)


def test_stats_of_a_stopped_container_is_empty(daemon):
    daemon.docker("create", "--name", "still", "busybox", "true")
    status, sample = api(daemon, "GET", "/containers/still/stats?stream=0")
    assert status == 200 and sample["name"] == "/still" and sample["memory_stats"] == {}


def test_stats_cli_streams_live_percentages(daemon):
    run_detached(daemon, "--name", "spinner", "--cpus", "0.5", "busybox", "sh", "-c", SPIN)
    with pty_docker(daemon, "stats", "--format", "{{.Name}} {{.CPUPerc}}", "spinner",
                    rows=10, cols=60) as session:
        output = session.expect(rb"spinner [1-9][0-9]\.[0-9]+%", timeout=10)
    assert b"spinner" in output


# -- hardening -------------------------------------------------------------------------------

def capabilities(daemon, *options):
    lines = inside(daemon, "grep -E '^Cap(Eff|Bnd)' /proc/self/status", *options)
    return {line.split(":")[0]: int(line.split()[1], 16) for line in lines}


def test_cap_drop_all_and_cap_add(daemon):
    caps = capabilities(daemon, "--cap-drop", "ALL", "--cap-add", "NET_ADMIN",
                        "--cap-add", "cap_sys_time")
    assert caps["CapEff"] == caps["CapBnd"] == (1 << 12) | (1 << 25)


def test_cap_add_all_and_privileged_get_every_capability(daemon):
    everything = int(read("/proc/sys/kernel/cap_last_cap"))
    full = (1 << (everything + 1)) - 1
    assert capabilities(daemon, "--cap-add", "ALL")["CapEff"] & full == \
        capabilities(daemon, "--privileged")["CapEff"] & full
    assert capabilities(daemon, "--cap-add", "ALL", "--cap-drop", "CHOWN")["CapEff"] & 1 == 0


def test_privileged_has_host_devices_no_masks_and_writable_sys(daemon):
    device = block_device_path()
    lines = inside(daemon, "ls %s; wc -c < /proc/keys; grep -c ' /proc/sys ' /proc/self/mountinfo;"
                   " grep ' /sys ' /proc/self/mountinfo | grep -c ' rw,'" % device, "--privileged",
                   check=False)
    lines = out(lines).splitlines()
    assert lines[0] == device and lines[2] == "0" and lines[3] == "1"
    if os.path.exists("/proc/keys"):
        assert int(lines[1]) > 0


def test_read_only_root_keeps_dev_shm_pts_and_etc_files(daemon):
    lines = inside(daemon, "touch /x 2>&1; touch /dev/shm/ok && echo shm; "
                   "grep -c devpts /proc/self/mountinfo; cat /etc/hostname; "
                   "grep -c 127.0.0.1 /etc/hosts", "--read-only", "--hostname", "ro-box")
    assert "Read-only file system" in lines[0]
    assert lines[1:] == ["shm", "1", "ro-box", "1"]


def test_ulimit_and_default_ulimit(daemon):
    assert inside(daemon, "ulimit -n; ulimit -Hn") == ["512", "1024"]  # --default-ulimit
    assert inside(daemon, "ulimit -n; ulimit -Hn; ulimit -c", "--ulimit", "nofile=100:200",
                  "--ulimit", "core=0") == ["100", "200", "0"]


def test_oom_score_adj(daemon):
    assert inside(daemon, "cat /proc/self/oom_score_adj", "--oom-score-adj", "500") == ["500"]


def test_shm_size(daemon):
    lines = inside(daemon, "df -k /dev/shm | tail -1", "--shm-size", "2m")
    assert lines[0].split()[1] == "2048"


def test_sysctls_of_the_containers_own_namespaces(daemon):
    lines = inside(daemon, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start "
                   "/proc/sys/kernel/shmmni", "--sysctl", "net.ipv4.ip_unprivileged_port_start=80",
                   "--sysctl", "kernel.shmmni=1234")
    assert lines == ["80", "1234"]
    assert read("/proc/sys/kernel/shmmni") != "1234"  # the host's is untouched


def test_group_add(daemon):
    groups = inside(daemon, "id -G", "--group-add", "audio", "--group-add", "4242")[0].split()
    assert {"29", "4242"} <= set(groups)


def test_no_new_privileges(daemon):
    assert inside(daemon, "grep NoNewPrivs /proc/self/status",
                  "--security-opt", "no-new-privileges") == ["NoNewPrivs:\t1"]


def test_device_with_read_only_permission(daemon):
    device = block_device_path()
    lines = inside(daemon, "stat -c %t:%T /dev/xvda; dd if=/dev/xvda of=/dev/null count=1 "
                   "2>/dev/null && echo read; { : > /dev/xvda; } 2>&1",
                   "--device", device + ":/dev/xvda:r", check=False)
    number = os.stat(device).st_rdev
    lines = out(lines).splitlines()
    assert lines[0] == "%x:%x" % (os.major(number), os.minor(number))
    assert lines[1] == "read"
    assert "Operation not permitted" in lines[2]


def test_init_reaps_orphans_and_forwards_stop(daemon):
    lines = inside(daemon, "echo $$; cat /proc/1/comm; (sleep 0.1 &); sleep 0.5; "
                   "ps -o stat,comm | grep -c '^Z'", "--init", check=False)
    lines = out(lines).splitlines()
    assert lines[:2] == ["2", "docker-init"]  # the command is not pid 1: the init is
    assert lines[2] == "0"                    # and the orphaned sleep did not stay a zombie
    cid = run_detached(daemon, "--init", "busybox", "sleep", "60")
    started = time.monotonic()
    daemon.docker("stop", "-t", "10", cid)
    assert time.monotonic() - started < 5  # sleep got the TERM the init passed on
    assert inspect(daemon, cid)["State"]["ExitCode"] == 143


def test_init_with_a_terminal(daemon):
    with pty_docker(daemon, "run", "--rm", "-it", "--init", "--network", "none", "busybox",
                    "sh") as session:
        session.expect(rb"# ")
        session.send(b"echo pid=$$; stty size\r")
        session.expect(rb"pid=2\r\n24 80\r\n")
        session.send(b"exit 3\r")
        assert session.wait() == 3


# -- a daemon restart --------------------------------------------------------------------------

def test_cgroups_are_found_again_after_a_daemon_restart(busybox_archive):  # noqa: F811
    with busybox_daemon(busybox_archive) as own:
        cid = run_detached(own, "-m", "40m", "busybox", "sleep", "60")
        own.stop()
        own.start()
        limit = out(own.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", cid))
        assert limit.endswith("/ 40MiB")
        own.docker("pause", cid)
        own.docker("update", "-m", "50m", "--memory-swap", "100m", cid)
        own.docker("rm", "-f", cid)
        assert not os.path.exists(host_cgroup(own, cid, "memory"))


def test_systemd_cgroup_driver_is_refused_clearly():
    assert "native.cgroupdriver=systemd is not supported by pydockerd" in boot_log_of_a_refused_daemon(
        "--exec-opt", "native.cgroupdriver=systemd")
