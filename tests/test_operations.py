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
from drivers import errdefs, logger


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

