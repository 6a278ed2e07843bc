"""Load (issue 10, item 7): 50 clients and 2,000 idle connections against one daemon.

50 client threads run, for a bounded time, what a busy host asks of dockerd: `run --rm`
(create, start, wait, delete), `ps`, `logs`, `exec` and `events`, most through the HTTP API,
a few through the real CLI, while 2,000 idle keep-alive connections stay open. Every request
must be answered correctly, the idle connections must still be served at the end, and once
everything is closed and the daemon has settled, its descriptors and threads are back to
what they were before and its memory near idle.

`make test` runs a short slice; `make soak` the long run. The figures are printed (-s).
"""
import json
import random
import threading
import time
import traceback

import pytest

from containers_support import busybox_archive, busybox_daemon, demultiplex  # noqa: F401 (a fixture)
from drivers import httpserver
from test_http_strict import PING, fd_count, open_idle, proc_status

CLIENTS = 50
CLI_CLIENTS = 5
IDLE_CONNECTIONS = 2000
EXEC_RECORD_KB = 8
JSON_HEADERS = {"Content-Type": "application/json"}


def snapshot(pid):
    return {"fds": fd_count(pid), "threads": proc_status(pid, "Threads"),
            "rss_kb": proc_status(pid, "VmRSS")}


def settle(pid, limit):
    """The daemon's figures once its descriptors and threads have not changed for longer than
    a pool thread lives without work (WORKER_IDLE)."""
    deadline = time.monotonic() + limit
    last, since = snapshot(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < httpserver.WORKER_IDLE + 1:
        time.sleep(0.5)
        now = snapshot(pid)
        if (now["fds"], now["threads"]) != (last["fds"], last["threads"]):
            last, since = now, time.monotonic()
    return snapshot(pid)


def expect(response, status, what):
    if response.status != status:
        raise AssertionError("%s: %d %r" % (what, response.status, response.body[:300]))
    return response


class Clients(object):
    """The operations a client runs, each checking its answer; `server` is a running container."""

    def __init__(self, daemon, server, since):
        self.daemon = daemon
        self.server = server
        self.since = since

    def call(self, method, path, body=None, status=200):
        data = json.dumps(body) if body is not None else None
        response = self.daemon.request(method, path, body=data, headers=JSON_HEADERS, timeout=180)
        return expect(response, status, "%s %s" % (method, path))

    def api_run(self):
        created = self.call("POST", "/containers/create",
                            {"Image": "busybox", "Cmd": ["true"]}, 201).json()["Id"]
        self.call("POST", "/containers/%s/start" % created, status=204)
        exited = self.call("POST", "/containers/%s/wait" % created).json()
        assert exited["StatusCode"] == 0, exited
        self.call("DELETE", "/containers/%s" % created, status=204)

    def api_ps(self):
        listed = self.call("GET", "/containers/json").json()
        assert any(c["Id"] == self.server for c in listed), "ps lost the server container"

    def api_logs(self):
        body = self.call("GET", "/containers/%s/logs?stdout=1&stderr=1" % self.server).body
        assert b"".join(payload for _, payload in demultiplex(body)).startswith(b"ready\n"), body

    def api_exec(self):
        exec_id = self.call("POST", "/containers/%s/exec" % self.server,
                            {"Cmd": ["echo", "hi"], "AttachStdout": True}, 201).json()["Id"]
        body = self.call("POST", "/exec/%s/start" % exec_id, {"Detach": False, "Tty": False}).body
        assert demultiplex(body) == [(1, b"hi\n")], body

    def api_events(self):
        body = self.call("GET", "/events?since=%d&until=%.6f" % (self.since, time.time())).body
        events = [json.loads(line) for line in body.splitlines() if line.strip()]
        assert any(event["Type"] == "container" for event in events), body[:300]

    def cli(self, *args, output=None):
        result = self.daemon.docker(*args, timeout=180)
        if output is not None:
            assert result.stdout == output, (args, result.stdout)

    def cli_run(self):
        self.cli("run", "--rm", "busybox", "true", output=b"")

    def cli_ps(self):
        self.cli("ps", "-q", "--no-trunc")

    def cli_logs(self):
        self.cli("logs", self.server, output=b"ready\n")

    def cli_exec(self):
        self.cli("exec", self.server, "echo", "hi", output=b"hi\n")

    def api_operations(self):
        return [self.api_run, self.api_ps, self.api_logs, self.api_exec, self.api_events]

    def cli_operations(self):
        return [self.cli_run, self.cli_ps, self.cli_logs, self.cli_exec]


def client_loop(operations, deadline, done, errors):
    """Run the operations in turn (from a random one) until the deadline; count and record."""
    turn = random.randrange(len(operations))
    while time.monotonic() < deadline:
        operation = operations[turn % len(operations)]
        turn += 1
        try:
            operation()
            done.append(operation.__name__)
        except Exception:  # every failure is recorded; the test fails on any
            errors.append("%s: %s" % (operation.__name__, traceback.format_exc(limit=3)))


def ping_all(socks):
    """Each idle connection asks /_ping; every one must get its OK."""
    for sock in socks:
        sock.sendall(PING)
    for sock in socks:
        data = b""
        while not data.endswith(b"\r\n\r\nOK"):
            chunk = sock.recv(4096)
            assert chunk, "an idle connection was closed: %r" % data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data


def hold_idle_connections(idle, threads):
    """Wait for the client threads. A load longer than the daemon's idle timeout would see
    its idle connections closed, as designed: like a keep-alive client, each one asks /_ping
    again before half the timeout has passed."""
    refreshed = time.monotonic()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=1)
            if time.monotonic() - refreshed > httpserver.IDLE_TIMEOUT / 2:
                ping_all(idle)
                refreshed = time.monotonic()


def start_server_container(daemon):
    created = daemon.request("POST", "/containers/create?name=server", body=json.dumps(
        {"Image": "busybox", "Cmd": ["sh", "-c", "echo ready; while true; do sleep 1; done"]}),
        headers=JSON_HEADERS)
    expect(created, 201, "create server")
    expect(daemon.request("POST", "/containers/server/start"), 204, "start server")
    return created.json()["Id"]


def run_load(archive, seconds):
    with busybox_daemon(archive) as daemon:
        pid = daemon.proc.pid
        since = int(time.time()) - 1
        clients = Clients(daemon, start_server_container(daemon), since)
        for operation in clients.api_operations() + clients.cli_operations():
            operation()  # warm up: every path once, so the baseline has its caches
        before = settle(pid, 60)
        idle = open_idle(daemon.socket, IDLE_CONNECTIONS)
        done, errors = [], []
        deadline = time.monotonic() + seconds
        threads = [threading.Thread(target=client_loop, args=(
            clients.cli_operations() if number < CLI_CLIENTS else clients.api_operations(),
            deadline, done, errors)) for number in range(CLIENTS)]
        try:
            for thread in threads:
                thread.start()
            hold_idle_connections(idle, threads)
            peak = snapshot(pid)
            ping_all(idle)
        finally:
            for sock in idle:
                sock.close()
        after = settle(pid, 90)
        counts = {name: done.count(name) for name in sorted(set(done))}
        print("\nload %ds: %d requests answered %s, %d errors; before %s, at peak %s, after %s"
              % (seconds, len(done), counts, len(errors), before, peak, after))
        assert not errors, "%d of %d operations failed; first:\n%s" % (
            len(errors), len(done) + len(errors), errors[0])
        assert set(counts) == {op.__name__ for op in
                               clients.api_operations() + clients.cli_operations()}
        assert after["fds"] <= before["fds"] + 2, (before, after)
        assert after["threads"] <= before["threads"] + 2, (before, after)
        # The daemon keeps each exec's record 5 to 10 minutes after it ends (ExecStore, 1.8.2's
        # execCommandGC), so its exit code can be read: state, not a leak, a few kB each.
        execs = counts.get("api_exec", 0) + counts.get("cli_exec", 0)
        assert after["rss_kb"] <= before["rss_kb"] + 32 * 1024 + execs * EXEC_RECORD_KB, (
            before, after, execs)
        assert daemon.request("GET", "/_ping").status == 200


def test_load_short_slice(busybox_archive):
    run_load(busybox_archive, 15)


@pytest.mark.soak
def test_load_soak(busybox_archive):
    run_load(busybox_archive, 600)
