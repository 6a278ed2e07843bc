"""Daemon operations on their own (issue 9): wait, kill, attach's log replay, the exec
garbage collector. No root needed: the containers here are Container objects with a stand-in
for their monitor, and their "exits" are what the monitor thread would record.
"""
import json
import signal
import socket
import threading
import time

import pytest

import pydockerd
from drivers import dockerfile, errdefs, health, logger


class Events(object):
    def __init__(self):
        self.logged = []

    def log(self, type_, action, actor_id, attributes=None):
        self.logged.append(action)


class Daemon(object):
    def __init__(self):
        self.events = Events()


class Monitor(object):
    """Stands in for a container's monitor: a signal makes the process "exit" a little later,
    as the monitor thread (container_exited) would record it."""

    def __init__(self, container, delay=0.3):
        self.container = container
        self.delay = delay
        self.signals = []

    def signal(self, signum):
        self.signals.append(signum)
        if signum == signal.SIGKILL:
            threading.Timer(self.delay, exit_container, (self.container, 137)).start()


def running_container(tmp_path, name="c1"):
    container = pydockerd.Container(str(tmp_path), name * 32)
    container.name, container.running, container.has_been_started = "/" + name, True, True
    container.monitor = Monitor(container)
    return container


def exit_container(container, code, restart=False):
    """What container_exited records when the process ends."""
    with container.cond:
        container.running, container.monitor = False, None
        container.exit_code, container.restarting = code, restart
        container.exits += 1
        container.cond.notify_all()


def never_cancelled():
    return False


# -- wait ----------------------------------------------------------------------------------

def test_wait_not_running_returns_at_once_for_a_stopped_container(tmp_path):
    container = running_container(tmp_path)
    exit_container(container, 3)
    assert pydockerd.container_wait(container, "not-running")(never_cancelled) == 3


def test_wait_not_running_returns_at_the_first_exit_even_if_a_restart_follows(tmp_path):
    container = running_container(tmp_path)
    wait = pydockerd.container_wait(container, "not-running")
    threading.Timer(0.2, exit_container, (container, 5, True)).start()
    started = time.monotonic()
    assert wait(never_cancelled) == 5
    assert time.monotonic() - started < 1.0


def test_wait_next_exit_counts_from_the_request(tmp_path):
    container = running_container(tmp_path)
    exit_container(container, 1, restart=True)
    wait = pydockerd.container_wait(container, "next-exit")   # waiting to restart now
    threading.Timer(0.2, exit_container, (container, 2, True)).start()
    assert wait(never_cancelled) == 2


def test_wait_removed_ignores_exits_and_ends_at_the_removal(tmp_path):
    container = running_container(tmp_path)
    wait = pydockerd.container_wait(container, "removed")
    exit_container(container, 7)
    assert wait(lambda: True) is None   # still there: only the client's leaving ends it
    container.removed = True
    assert wait(never_cancelled) == 7


def test_wait_refuses_an_unknown_condition(tmp_path):
    with pytest.raises(errdefs.InvalidParameter, match="invalid condition: soon"):
        pydockerd.container_wait(running_container(tmp_path), "soon")


# -- kill ----------------------------------------------------------------------------------

def test_kill_returns_once_the_container_has_exited(tmp_path, monkeypatch):
    monkeypatch.setattr(pydockerd.Container, "to_disk", lambda self: None)
    container = running_container(tmp_path)
    daemon = Daemon()
    pydockerd.kill_container(daemon, container, signal.SIGKILL)
    assert (container.running, container.exit_code) == (False, 137)
    assert daemon.events.logged == ["kill"]


def test_kill_with_another_signal_does_not_wait(tmp_path):
    container = running_container(tmp_path)
    pydockerd.kill_container(Daemon(), container, signal.SIGUSR1)
    assert container.running and container.monitor.signals == [signal.SIGUSR1]


def test_kill_cancels_a_restart_that_is_pending(tmp_path, monkeypatch):
    monkeypatch.setattr(pydockerd.Container, "to_disk", lambda self: None)
    container = running_container(tmp_path)
    exit_container(container, 1, restart=True)
    pydockerd.kill_container(Daemon(), container, signal.SIGKILL)
    assert (container.restarting, container.manually_stopped) == (False, True)


# -- attach: the log replay ------------------------------------------------------------------

def test_attach_logs_without_stream_replays_the_log_framed(tmp_path):
    container = running_container(tmp_path)
    exit_container(container, 0)
    container.host_config = {"LogConfig": {"Type": "json-file", "Config": {}}}
    with open(container.log_path, "w") as log_file:
        for stream, line in (("stdout", "out\n"), ("stderr", "err\n")):
            log_file.write(json.dumps({"log": line, "stream": stream,
                                       "time": logger.format_time(time.time_ns())}) + "\n")
    ours, theirs = socket.socketpair()
    options = dict(stdin=False, stdout=True, stderr=True, logs=True, stream=False)
    pydockerd.attach_container(Daemon(), container, options, b"\x10\x11", lambda: ours)
    ours.close()
    received = theirs.recv(65536)
    assert received == pydockerd.stdcopy_frame(1, b"out\n") + pydockerd.stdcopy_frame(2, b"err\n")
    assert container.pending_attaches == 0


# -- exec records: execCommandGC ----------------------------------------------------------------

def test_exec_records_are_collected_on_the_second_pass_after_their_exit(tmp_path, monkeypatch):
    monkeypatch.setattr(pydockerd.ExecStore, "schedule_collection", lambda self: None)
    container = running_container(tmp_path)
    store = pydockerd.ExecStore()
    done = pydockerd.ExecConfig(container, {"Cmd": ["true"]})
    live = pydockerd.ExecConfig(container, {"Cmd": ["sleep", "9"]})
    store.add(done)
    store.add(live)
    done.exit_code = 0
    assert store.listed(container) == [live.id]
    store.collect()
    assert store.get(done.id).can_remove and not store.get(live.id).can_remove
    store.collect()
    with pytest.raises(errdefs.NotFound, match="No such exec instance: %s" % done.id):
        store.get(done.id)
    exit_container(container, 0)   # the container stopped: its execs are not listed any more
    store.collect()
    store.collect()
    assert store.by_id == {}



# -- the healthcheck: how results make a status ---------------------------------------------

def probe_result(code, seconds_after_start):
    return {"Start": logger.format_time(int((1000 + seconds_after_start) * 1e9)), "End": "",
            "ExitCode": code, "Output": ""}


def healthchecked(tmp_path, **settings):
    container = running_container(tmp_path)
    container.started_at = logger.format_time(1000 * 10 ** 9)
    container.config = {"Healthcheck": dict({"Test": ["CMD", "true"]}, **settings)}
    container.health = {"Status": "starting", "FailingStreak": 0, "Log": []}
    return container


def test_retries_failures_in_a_row_make_a_container_unhealthy(tmp_path):
    container = healthchecked(tmp_path, Retries=2)
    assert health.record(container, probe_result(1, 1)) is None
    assert health.record(container, probe_result(1, 2)) == "unhealthy"
    assert health.record(container, probe_result(0, 3)) == "healthy"
    assert container.health["FailingStreak"] == 0


def test_failures_in_the_start_period_do_not_count_until_healthy(tmp_path):
    container = healthchecked(tmp_path, Retries=1, StartPeriod=10 * 10 ** 9)
    assert health.record(container, probe_result(1, 5)) is None
    assert container.health == {"Status": "starting", "FailingStreak": 0,
                                "Log": [probe_result(1, 5)]}
    assert health.record(container, probe_result(1, 11)) == "unhealthy"


def test_the_health_log_keeps_the_last_five_results(tmp_path):
    container = healthchecked(tmp_path)
    for second in range(8):
        health.record(container, probe_result(second, second))
    assert [entry["ExitCode"] for entry in container.health["Log"]] == [3, 4, 5, 6, 7]


def test_no_healthcheck_none_and_cmd_shell():
    assert health.probe_command({"Healthcheck": {"Test": ["NONE"]}}) is None
    assert health.probe_command({}) is None
    assert health.probe_command({"Healthcheck": {"Test": ["CMD-SHELL", "exit 1"]}}) == \
        ["/bin/sh", "-c", "exit 1"]
    assert health.probe_command({"Healthcheck": {"Test": ["CMD", "true", "x"]}}) == ["true", "x"]


@pytest.mark.parametrize("nanoseconds, text", [
    (300 * 10 ** 6, "300ms"), (30 * 10 ** 9, "30s"), (90 * 10 ** 9, "1m30s"),
    (1500 * 10 ** 6, "1.5s"), (3600 * 10 ** 9, "1h0m0s"), (2500, "2.5µs")])
def test_durations_read_like_go(nanoseconds, text):
    assert dockerfile.format_duration(nanoseconds) == text
