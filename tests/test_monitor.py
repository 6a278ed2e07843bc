"""drivers/monitor.py: the per-container monitor, its fork server, attach, logs and adoption.

Real containers from the busybox rootfs (root and busybox-static needed). Every monitor a
test spawns is killed (with its container) at teardown, even when the test failed.
"""
import json
import os
import re
import signal
import socket
import threading
import time

import pytest

from containers_support import demultiplex, read_stream
from drivers import logger, monitor
from drivers.execdriver import ExecdriverError, ProcessConfig
from fixtures import containers
from fixtures.containers import rootfs  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

JSON_LOG_LINE = re.compile(r'^\{"log":"(.*)","stream":"(stdout|stderr)",'
                           r'"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z"\}$')


@pytest.fixture(scope="module")
def fork_server():
    server = monitor.start_fork_server()
    yield server
    server.close()


@pytest.fixture
def spawn(fork_server, rootfs, tmp_path):
    """spawn(args, start=True, log_opts=None, **Command options) -> (Monitor, state_dir,
    log_path); each monitor and its container are killed at teardown."""
    spawned = []
    cdir = containers.container_dir(str(tmp_path / "container"))

    def spawn_container(args, start=True, log_driver="json-file", log_opts=None, **options):
        options.setdefault("container_dir", cdir)
        name = "c%d" % len(spawned)
        state_dir, log_path = str(tmp_path / name), str(tmp_path / (name + "-json.log"))
        spawned.append(state_dir)
        handle = fork_server.spawn_monitor(state_dir, containers.command(rootfs, args, **options),
                                           log_driver=log_driver, log_opts=log_opts,
                                           log_path=log_path, start=start)
        return handle, state_dir, log_path

    yield spawn_container
    for state_dir in spawned:
        stop_everything(state_dir)


def stop_everything(state_dir):
    """Kill what a test left behind: the container's process, then its monitor."""
    monitor.kill_orphan(state_dir)
    handle = monitor.adopt(state_dir)
    if handle is not None:
        handle.wait(timeout=10)


def log_records(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def wait_for(predicate, timeout=5):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- spawning and the exit -------------------------------------------------------------------

def test_spawned_container_exit_code_is_recorded(spawn):
    handle, _, _ = spawn(["sh", "-c", "exit 3"])
    assert handle.wait()["exit_code"] == 3


def test_state_file_records_the_exit_and_the_times(spawn):
    handle, state_dir, _ = spawn(["true"])
    handle.wait()
    state = monitor.read_state(state_dir)
    assert (state["status"], state["exit_code"], state["pid"]) == ("exited", 0, handle.init_pid)
    assert logger.parse_time(state["started_at"]) <= logger.parse_time(state["finished_at"])


def test_runtime_files_are_gone_after_the_exit_but_the_state_stays(spawn):
    handle, state_dir, _ = spawn(["true"])
    handle.wait()
    assert sorted(os.listdir(state_dir)) == ["monitor.log", "state.json"]


def test_pid_file_names_the_monitor_and_its_start_time(spawn):
    handle, state_dir, _ = spawn(["sleep", "60"])
    with open(os.path.join(state_dir, monitor.PID_FILE)) as f:
        pid, start_time = (int(field) for field in f.read().split())
    assert (pid, start_time) == (handle.pid, monitor.process_start_time(handle.pid))


def test_missing_executable_fails_the_spawn_with_127(spawn):
    with pytest.raises(ExecdriverError) as raised:
        spawn(["nosuchcmd"])
    assert (raised.value.message, raised.value.exit_code) == (
        'exec: "nosuchcmd": executable file not found in $PATH', 127)


def test_failed_spawn_leaves_an_exited_state(spawn, tmp_path):
    with pytest.raises(ExecdriverError):
        spawn(["nosuchcmd"])
    state = monitor.read_state(str(tmp_path / "c0"))
    assert (state["status"], state["exit_code"]) == ("exited", 127)


def test_signal_kills_the_container_with_128_plus_signal(spawn):
    handle, _, _ = spawn(["sleep", "60"])
    handle.signal(signal.SIGKILL)
    assert handle.wait()["exit_code"] == 137


def test_state_is_created_until_started_then_running(spawn):
    handle, _, _ = spawn(["sleep", "60"], start=False)
    assert handle.state()["status"] == "created"
    handle.start()
    assert handle.state()["status"] == "running"


def test_monitor_is_in_its_own_session_and_not_our_child(spawn):
    handle, _, _ = spawn(["sleep", "60"])
    assert os.getsid(handle.pid) != os.getsid(0)
    with open("/proc/%d/stat" % handle.pid) as f:
        parent = int(f.read().rsplit(")", 1)[1].split()[1])
    assert parent != os.getpid()


def test_container_process_is_the_monitors_child(spawn):
    handle, _, _ = spawn(["sleep", "60"])
    with open("/proc/%d/stat" % handle.init_pid) as f:
        assert int(f.read().rsplit(")", 1)[1].split()[1]) == handle.pid


def test_monitor_reaps_orphans_of_a_container_without_pid_namespace(spawn):
    handle, _, _ = spawn(["sh", "-c", "(sleep 0.1 &); sleep 60"], pid="host")
    time.sleep(0.5)
    children = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        if int(fields[1]) == handle.pid:
            children.append(fields[0])
    assert children == ["S"]  # the container's sh only; the orphaned sleep was reaped


def test_fork_server_is_a_fresh_interpreter_so_daemon_threads_do_not_matter(spawn):
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        server = monitor.start_fork_server()
    finally:
        stop.set()
        thread.join()
    with open("/proc/%d/status" % server.pid) as status:
        assert "Threads:\t1\n" in status.read()
    server.close()


def test_a_dead_fork_server_is_replaced_on_the_next_spawn(fork_server, spawn):
    os.kill(fork_server.pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(fork_server.pid))
    handle, _, _ = spawn(["true"])
    assert handle.wait()["exit_code"] == 0


# --- logs ------------------------------------------------------------------------------------

def test_output_goes_to_the_json_log_in_dockerds_format(spawn):
    handle, _, log_path = spawn(["sh", "-c", "echo out; echo err >&2"])
    handle.wait()
    with open(log_path) as f:
        lines = f.read().splitlines()
    assert sorted(JSON_LOG_LINE.match(line).group(1, 2) for line in lines) == [
        ("err\\n", "stderr"), ("out\\n", "stdout")]


def test_log_rotates_at_max_size(spawn, tmp_path):
    handle, _, log_path = spawn(["sh", "-c", "for i in $(seq 1 50); do echo line $i; done"],
                                log_opts={"max-size": "1k", "max-file": "2"})
    handle.wait()
    assert os.path.exists(log_path + ".1") and not os.path.exists(log_path + ".2")
    assert log_records(log_path)[-1]["log"] == "line 50\n"


def test_log_driver_none_writes_no_log(spawn):
    handle, _, log_path = spawn(["echo", "hi"], log_driver="none")
    handle.wait()
    assert not os.path.exists(log_path)


def test_bad_log_option_fails_the_spawn(spawn):
    with pytest.raises(logger.LogDriverError, match="unknown log opt 'max-sise'"):
        spawn(["true"], log_opts={"max-sise": "1k"})


def test_tty_output_is_logged_as_stdout(spawn):
    handle, _, log_path = spawn(["echo", "hi"], tty=True)
    handle.wait()
    assert [(r["log"], r["stream"]) for r in log_records(log_path)] == [("hi\r\n", "stdout")]


# --- attach ----------------------------------------------------------------------------------

def test_attach_before_start_gets_every_line_multiplexed(spawn):
    handle, _, _ = spawn(["sh", "-c", "echo out; echo err >&2"], start=False)
    stream = handle.attach(stdout=True, stderr=True)
    handle.start()
    frames = demultiplex(read_stream(stream))
    assert sorted(frames) == [(1, b"out\n"), (2, b"err\n")]


def test_attach_without_stderr_gets_only_stdout(spawn):
    handle, _, _ = spawn(["sh", "-c", "echo out; echo err >&2"], start=False)
    stream = handle.attach(stdout=True, stderr=False)
    handle.start()
    assert demultiplex(read_stream(stream)) == [(1, b"out\n")]


def test_attached_stdin_reaches_the_container_and_stdin_once_closes_it(spawn):
    handle, _, _ = spawn(["cat"], start=False, open_stdin=True)
    stream = handle.attach(stdin=True, stdout=True, stdin_once=True)
    handle.start()
    stream.sendall(b"fed through attach\n")
    stream.shutdown(socket.SHUT_WR)
    assert demultiplex(read_stream(stream)) == [(1, b"fed through attach\n")]
    assert handle.wait()["exit_code"] == 0


def test_tty_attach_is_raw_and_resize_reaches_the_pty(spawn):
    handle, _, _ = spawn(["sh", "-c", "read x; stty size"], start=False, tty=True,
                         open_stdin=True)
    stream = handle.attach(stdin=True, stdout=True)
    handle.start()
    handle.resize(40, 100)
    stream.sendall(b"go\n")
    assert read_stream(stream).endswith(b"40 100\r\n")


def test_attach_after_exit_ends_at_once(spawn):
    handle, state_dir, _ = spawn(["sleep", "60"])
    stream = handle.attach()
    handle.signal(signal.SIGKILL)
    assert read_stream(stream) == b""


def test_resize_without_a_tty_is_an_error(spawn):
    handle, _, _ = spawn(["sleep", "60"])
    with pytest.raises(monitor.MonitorError, match="no tty"):
        handle.resize(10, 10)


# --- surviving the daemon ------------------------------------------------------------------

def spawn_from_a_daemon_that_dies(rootfs, state_dir, args, log_path):
    """A throwaway 'daemon': forks its own fork server, starts a container, is kill -9'd."""
    report_r, report_w = os.pipe()
    daemon = os.fork()
    if daemon == 0:
        try:
            os.close(report_r)
            server = monitor.start_fork_server()
            handle = server.spawn_monitor(state_dir, containers.command(rootfs, args),
                                          log_path=log_path)
            os.write(report_w, json.dumps([handle.pid, handle.init_pid]).encode())
            time.sleep(60)
        finally:
            os._exit(1)
    os.close(report_w)
    pids = json.loads(os.read(report_r, 100) or b"null")
    os.close(report_r)
    os.kill(daemon, signal.SIGKILL)
    os.waitpid(daemon, 0)
    return pids


@pytest.fixture
def orphaned(rootfs, tmp_path):
    """orphaned(args) -> (monitor pid, init pid, state_dir, log_path) after the daemon died."""
    made = []

    def make(args):
        state_dir, log_path = str(tmp_path / "survivor"), str(tmp_path / "survivor-json.log")
        made.append(state_dir)
        return spawn_from_a_daemon_that_dies(rootfs, state_dir, args, log_path) + \
            [state_dir, log_path]

    yield make
    for state_dir in made:
        stop_everything(state_dir)


def test_monitor_survives_the_daemons_death(orphaned):
    monitor_pid, init_pid, _, _ = orphaned(["sleep", "60"])
    time.sleep(0.1)
    assert pid_alive(monitor_pid) and pid_alive(init_pid)


def test_surviving_monitor_is_adopted_and_still_obeys(orphaned):
    monitor_pid, init_pid, state_dir, _ = orphaned(["sleep", "60"])
    handle = monitor.adopt(state_dir)
    assert (handle.pid, handle.init_pid) == (monitor_pid, init_pid)
    handle.signal(signal.SIGKILL)
    assert handle.wait()["exit_code"] == 137


def test_logs_keep_flowing_while_the_daemon_is_gone(orphaned):
    _, _, state_dir, log_path = orphaned(
        ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.1; done"])
    wait_for(lambda: monitor.read_state(state_dir).get("status") == "exited")
    assert [r["log"] for r in log_records(log_path)] == ["1\n", "2\n", "3\n"]


def test_adopt_finds_nothing_once_the_container_is_gone(spawn):
    handle, state_dir, _ = spawn(["true"])
    handle.wait()
    assert monitor.adopt(state_dir) is None


def test_adopt_ignores_a_pid_file_whose_pid_was_recycled(tmp_path):
    with open(str(tmp_path / monitor.PID_FILE), "w") as f:
        f.write("%d 1\n" % os.getpid())  # our pid, but not our start time
    assert monitor.adopt(str(tmp_path)) is None


def test_kill_orphan_stops_a_container_whose_monitor_died(spawn):
    handle, state_dir, _ = spawn(["sleep", "60"])
    os.kill(handle.pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(handle.pid))
    assert monitor.kill_orphan(state_dir)
    wait_for(lambda: not pid_alive(handle.init_pid))


# --- exec ------------------------------------------------------------------------------------

def test_exec_monitor_runs_inside_the_container(spawn, fork_server, tmp_path):
    handle, _, _ = spawn(["sleep", "60"], hostname="box")
    command = containers.command("/unused", ["sleep"], hostname="box")
    process = ProcessConfig(args=["sh", "-c", "hostname; exit 4"], env=["PATH=/bin"])
    execution = fork_server.spawn_exec_monitor(str(tmp_path / "exec1"), command, process,
                                               handle.init_pid, start=False)
    stream = execution.attach()
    execution.start()
    assert demultiplex(read_stream(stream)) == [(1, b"box\n")]
    assert execution.wait()["exit_code"] == 4


def test_exec_into_a_missing_process_fails(fork_server, tmp_path):
    command = containers.command("/unused", ["sleep"])
    with pytest.raises(ExecdriverError, match="is not running"):
        fork_server.spawn_exec_monitor(str(tmp_path / "exec2"), command,
                                       ProcessConfig(args=["true"]), 2 ** 22 + 1)
