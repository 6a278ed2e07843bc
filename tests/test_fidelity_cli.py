"""What real clients found wrong (issue 9), each checked the way a client sees it.

The docker CLI where it shows the behaviour, raw HTTP where it hides it (an exec started with
another Tty than it was created with, an attach that asks for the log only, the load of
something that is no archive). One daemon for the module, as in test_containers_cli.py.
"""
import json
import os
import socket
import time

import pytest

from conftest import UnixHTTPConnection, build_busybox_rootfs
# Fixtures: pytest finds them by name in this module (the module's daemon, cleaned after each test).
from containers_support import busybox_archive, daemon, no_containers_left  # noqa: F401
from containers_support import (api_create, demultiplex, err, inspect, out, read_stream, run,
                                run_detached, wait_for, wait_until_exited, write_docker_archive)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


# -- helpers: a hijacked connection ------------------------------------------------------

def hijack(daemon, path, body=None):
    """POST `path` with `Upgrade: tcp`; the socket once the 101 (or 200) headers are read."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(20)
    sock.connect(daemon.socket)
    data = b"" if body is None else json.dumps(body).encode()
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (path.encode(), len(data), data))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "connection closed in the headers: %r" % head
        head += chunk
    return head.decode(), sock


# -- 1. rmi and prune never delete an image a container uses --------------------------------

@pytest.fixture
def own_image(daemon, tmp_path):  # noqa: F811
    """bb:1, an image of its own (busybox's layer, another config: `sleep 30`), the only
    reference to it; removed again afterwards."""
    rootfs = build_busybox_rootfs(str(tmp_path / "rootfs"))
    archive = write_docker_archive(rootfs, str(tmp_path / "bb.tar"), "bb:1", cmd=("sleep", "30"))
    daemon.docker("load", "-i", archive)
    image_id = out(daemon.docker("image", "inspect", "--format", "{{.Id}}", "bb:1"))
    yield image_id
    daemon.docker("rmi", "-f", image_id, check=False)


def test_rmi_refuses_to_untag_an_image_a_container_uses(daemon, own_image):
    cid = out(daemon.docker("create", "--name", "c1", "--network", "none", "bb:1", "true"))
    result = daemon.docker("rmi", "bb:1", check=False)
    assert result.returncode == 1
    assert err(result) == (
        'Error response from daemon: conflict: unable to remove repository reference "bb:1" '
        '(must force) - container %s is using its referenced image %s' % (cid[:12], own_image[7:19]))
    daemon.docker("create", "--name", "keeper", "--network", "none", "busybox", "true")
    daemon.docker("image", "prune", "-a", "-f")   # keeps every image in use: busybox too
    assert out(daemon.docker("images", "-q", "bb:1")) == own_image[7:19]
    assert inspect(daemon, "c1")["Image"] == own_image


def test_rmi_force_cannot_delete_an_image_a_running_container_uses(daemon, own_image):
    cid = run_detached(daemon, "bb:1")
    result = daemon.docker("rmi", "-f", own_image, check=False)
    assert result.returncode == 1
    assert err(result) == ("Error response from daemon: conflict: unable to delete %s (cannot be "
                           "forced) - image is being used by running container %s"
                           % (own_image[7:19], cid[:12]))
    assert out(daemon.docker("images", "-q", "bb:1")) == own_image[7:19]


def test_rmi_force_with_a_stopped_container_leaves_the_container_whole(daemon, own_image):
    daemon.docker("create", "--name", "c1", "--network", "none", "bb:1", "echo", "still here")
    removed = out(daemon.docker("rmi", "-f", "bb:1")).splitlines()
    assert removed[0] == "Untagged: bb:1"   # dockerd: a stopped container is a soft conflict
    listed = out(daemon.docker("ps", "-a", "-s", "--format", "{{.Names}} {{.Size}}"))
    assert listed.startswith("c1 ")
    assert out(daemon.docker("start", "-a", "c1")) == "still here"


# -- 2. listing never validates a container's mounts ----------------------------------------

def test_ps_and_system_df_survive_a_bind_source_that_is_gone(daemon, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    daemon.docker("create", "--name", "m1", "--network", "none", "--mount",
                  "type=bind,source=%s,target=/x" % source, "busybox", "true")
    source.rmdir()
    assert out(daemon.docker("ps", "-a", "--format", "{{.Names}}")) == "m1"
    daemon.docker("system", "df")
    assert inspect(daemon, "m1")["Mounts"][0]["Source"] == str(source)
    result = daemon.docker("start", "m1", check=False)
    assert result.returncode == 1
    assert err(result).splitlines()[0] == ('Error response from daemon: invalid mount config for '
                                           'type "bind": bind source path does not exist: %s' % source)


# -- 3. docker kill returns once the container is dead --------------------------------------

def test_kill_returns_once_the_process_is_gone(daemon):
    for attempt in range(3):
        name = "k%d" % attempt
        run_detached(daemon, "--name", name, "busybox", "sleep", "60")
        assert daemon.request("POST", "/containers/%s/kill" % name).status == 204
        state = inspect(daemon, name)["State"]
        assert (state["Running"], state["ExitCode"], state["Status"]) == (False, 137, "exited")
        assert daemon.request("DELETE", "/containers/%s" % name).status == 204


# -- 4. wait returns at the first exit, whatever the restart policy -------------------------

def test_wait_returns_at_the_first_exit_under_restart_always(daemon):
    run_detached(daemon, "--name", "r1", "--restart", "always", "busybox", "sh", "-c",
                 "sleep 1; exit 3")
    started = time.monotonic()
    assert out(daemon.docker("wait", "r1", timeout=20)) == "3"
    assert time.monotonic() - started < 15
    wait_for(lambda: inspect(daemon, "r1")["RestartCount"] >= 1, what="the restart")


def test_wait_next_exit_of_a_container_that_restarts(daemon):
    run_detached(daemon, "--name", "n1", "--restart", "always", "busybox", "sh", "-c",
                 "sleep 1; exit 4")
    response = daemon.request("POST", "/containers/n1/wait?condition=next-exit", timeout=20)
    assert json.loads(response.body) == {"Error": None, "StatusCode": 4}


# -- 5. exec: the start request's Tty frames the stream; detach keys; truthful inspect -----

def exec_create(daemon, container, tty, cmd):
    response = daemon.request("POST", "/containers/%s/exec" % container, headers={
        "Content-Type": "application/json"}, body=json.dumps({
            "Cmd": cmd, "Tty": tty, "AttachStdout": True, "AttachStderr": True}))
    assert response.status == 201, response.body
    return response.json()["Id"]


def exec_output(daemon, exec_id, start_tty):
    head, sock = hijack(daemon, "/exec/%s/start" % exec_id, {"Detach": False, "Tty": start_tty})
    with sock:
        assert head.startswith("HTTP/1.1 101 UPGRADED\r\n")
        assert "\r\nApi-Version: 1.41\r\n" in head
        return read_stream(sock)


def test_exec_stream_is_multiplexed_when_started_without_tty(daemon):
    run_detached(daemon, "--name", "e1", "busybox", "sleep", "60")
    exec_id = exec_create(daemon, "e1", True, ["echo", "from-a-tty"])
    frames = demultiplex(exec_output(daemon, exec_id, False))
    assert frames == [(1, b"from-a-tty\r\n")]   # the process's pty, in stdout frames


def test_exec_stream_is_raw_when_started_with_tty(daemon):
    run_detached(daemon, "--name", "e1", "busybox", "sleep", "60")
    exec_id = exec_create(daemon, "e1", False, ["sh", "-c", "echo out; sleep 0.2; echo err >&2"])
    assert exec_output(daemon, exec_id, True) == b"out\nerr\n"


def test_exec_inspect_is_truthful(daemon):
    run_detached(daemon, "--name", "e1", "busybox", "sleep", "60")
    exec_id = exec_create(daemon, "e1", True, ["true"])
    assert inspect(daemon, "e1")["ExecIDs"] == [exec_id]
    exec_output(daemon, exec_id, True)
    state = daemon.request("GET", "/exec/%s/json" % exec_id).json()
    assert state["ProcessConfig"] == {"tty": True, "entrypoint": "true", "arguments": [],
                                      "privileged": False}   # dockerd omits an empty user
    assert (state["Running"], state["ExitCode"], state["CanRemove"]) == (False, 0, False)
    assert inspect(daemon, "e1")["ExecIDs"] is None   # a container lists live execs only


@pytest.mark.parametrize("detach_keys, typed", [("", b"\x10\x11"), ("ctrl-x,x", b"\x18x")])
def test_exec_detach_keys_close_the_stream_with_dockerds_message(daemon, detach_keys, typed):
    """A client that leaves the keys to the daemon (the CLI spots its own, docker-py does not)."""
    run_detached(daemon, "--name", "e1", "busybox", "sleep", "60")
    response = daemon.request("POST", "/containers/e1/exec", headers={
        "Content-Type": "application/json"}, body=json.dumps({
            "Cmd": ["sh"], "Tty": True, "AttachStdin": True, "AttachStdout": True,
            "DetachKeys": detach_keys}))
    exec_id = response.json()["Id"]
    head, sock = hijack(daemon, "/exec/%s/start" % exec_id, {"Detach": False, "Tty": True})
    with sock:
        sock.sendall(b"echo hi\n")
        wait_for(lambda: b"hi" in sock.recv(4096), what="the shell")
        sock.sendall(typed)
        assert read_stream(sock).endswith(
            b"exec attach failed: error on attach stdin: read escape sequence\r\n")
    state = daemon.request("GET", "/exec/%s/json" % exec_id).json()
    assert state["Running"] is True   # the shell lives on


# -- 6. attach with logs and no stream replays the log --------------------------------------

def attach_like_docker_py(daemon, path):
    """docker-py's attach(logs=True, stream=False): the headers read through http.client's
    buffer, then the stream from the socket itself."""
    connection = UnixHTTPConnection(daemon.socket, timeout=20)
    try:
        connection.request("POST", path, headers={"Connection": "Upgrade", "Upgrade": "tcp"})
        assert connection.getresponse().status == 101
        return read_stream(connection.sock)
    finally:
        connection.close()


def test_attach_logs_without_stream_returns_the_log(daemon):
    run(daemon, "--name", "a1", "busybox", "sh", "-c", "echo out; echo err >&2")
    for attempt in range(5):   # the bytes must never travel with the headers
        data = attach_like_docker_py(daemon, "/containers/a1/attach?logs=1&stream=0&stdout=1&stderr=1")
        assert demultiplex(data) == [(1, b"out\n"), (2, b"err\n")]


def test_attach_logs_of_a_tty_container_are_raw(daemon):
    status, created = api_create(daemon, {"Image": "busybox", "Tty": True, "Cmd": ["echo", "hi"],
                                          "HostConfig": {"NetworkMode": "none"}}, name="t1")
    assert status == 201
    daemon.docker("start", "t1")
    wait_until_exited(daemon, "t1")
    for attempt in range(5):
        assert attach_like_docker_py(daemon, "/containers/t1/attach?logs=1&stream=0&stdout=1") == b"hi\r\n"


# -- 7. load answers like dockerd; prune says what it reclaimed ------------------------------

def test_load_of_something_that_is_no_archive_fails_inside_the_stream(daemon):
    response = daemon.request("POST", "/images/load?quiet=1", body=b"GARBAGE!" * 200,
                              headers={"Content-Type": "application/x-tar"})
    assert response.status == 200
    message = json.loads(response.body.splitlines()[-1])
    assert message["error"] == message["errorDetail"]["message"]
    assert "Error processing tar file" in message["error"]
    result = daemon.docker("load", input=b"GARBAGE!" * 200, check=False)
    assert result.returncode == 1 and b"Error processing tar file" in result.stderr


def test_image_prune_reports_the_space_it_reclaimed(daemon, tmp_path):
    first = build_busybox_rootfs(str(tmp_path / "first"))
    with open(os.path.join(first, "unique"), "wb") as unique:
        unique.write(os.urandom(300000))
    daemon.docker("load", "-i", write_docker_archive(first, str(tmp_path / "a.tar"), "gone:1"))
    first_id = out(daemon.docker("image", "inspect", "--format", "{{.Id}}", "gone:1"))
    second = build_busybox_rootfs(str(tmp_path / "second"))
    daemon.docker("load", "-i", write_docker_archive(second, str(tmp_path / "b.tar"), "gone:1"))
    since = time.time()
    report = daemon.request("POST", '/images/prune?filters={"dangling":{"true":true}}').json()
    daemon.docker("rmi", "gone:1")
    assert {"Deleted": first_id} in report["ImagesDeleted"]
    assert 300000 < report["SpaceReclaimed"] < 10000000   # its own layer: busybox and `unique`
    events = daemon.docker("events", "--since", "%.9f" % since, "--until", "%.9f" % time.time(),
                           "--filter", "type=image", "--filter", "event=prune",
                           "--format", "{{.Actor.Attributes.reclaimed}}")
    assert out(events) == str(report["SpaceReclaimed"])   # the prune event says it too


# -- the cause: rules live in operations, so every caller gets them ----------------------------

def test_a_failed_restart_of_an_rm_container_removes_it(daemon):
    daemon.docker("create", "--rm", "--name", "rr", "--network", "none", "busybox", "nosuchcmd")
    result = daemon.docker("restart", "rr", check=False)
    assert result.returncode == 1 and "executable file not found" in err(result)
    assert daemon.request("GET", "/containers/rr/json").status == 404
