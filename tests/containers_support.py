"""Helpers for the end-to-end container tests: a busybox image, a daemon that has it, a pty.

The busybox image is a docker-archive built here from Debian's busybox-static (the shape of
the real busybox image: one layer, PATH in Env, CMD ["sh"]) and `docker load`ed into each
daemon. `busybox_daemon()` starts a pydockerd with it; at teardown every container is removed
through the API, and whatever a crashed daemon left behind (monitors, container processes,
whose pids the monitors wrote under the exec root) is killed by pid before the directory goes.

A test module that shares one daemon imports the fixtures `busybox_archive`, `daemon` (that
module's daemon) and `no_containers_left` (autouse: every container goes after each test).
"""
import contextlib
import datetime
import fcntl
import hashlib
import io
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import tarfile
import termios
import time

import pytest

from conftest import DOCKER, DaemonProcess, build_busybox_rootfs, new_daemon_dir

IMAGE_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def write_docker_archive(rootfs, out, ref, cmd=("sh",), healthcheck=None):
    """A `docker save`-shaped tar of one layer made from `rootfs`, tagged `ref` (with a
    HEALTHCHECK in its config if `healthcheck` is given)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(rootfs)):
            tar.add(os.path.join(rootfs, name), arcname=name)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": dict({"Env": IMAGE_ENV, "Cmd": list(cmd)},
                       **({"Healthcheck": healthcheck} if healthcheck else {})),
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "containers_support"}],
    }, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id[7:] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}])
    with tarfile.open(out, "w") as tar:
        for name, data in ((config_name, config), (layer_name, layer_bytes),
                           ("manifest.json", manifest.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory):
    directory = tmp_path_factory.mktemp("busybox-image")
    rootfs = build_busybox_rootfs(str(directory / "rootfs"))
    return write_docker_archive(rootfs, str(directory / "busybox.tar"), "busybox:latest")


def load_image(daemon, archive):
    daemon.docker("load", "-i", archive)


def start_busybox_daemon(archive, *flags, env=None, process_class=DaemonProcess, netns=False):
    """A pydockerd with busybox loaded: in a network namespace of its own (netns), else with
    -b none; then flags (env as DaemonProcess takes it)."""
    isolation = [] if netns else ["-b", "none"]
    daemon = process_class(new_daemon_dir(), isolation + list(flags), env=env, netns=netns)
    try:
        daemon.start()
        load_image(daemon, archive)
    except BaseException:
        retire_daemon(daemon)
        raise
    return daemon


@contextlib.contextmanager
def busybox_daemon(archive, flags=(), process_class=DaemonProcess, netns=False):
    daemon = start_busybox_daemon(archive, *flags, process_class=process_class, netns=netns)
    try:
        yield daemon
    finally:
        retire_daemon(daemon)


@pytest.fixture(scope="module")
def daemon(busybox_archive):
    """One pydockerd with busybox for every test of the module that imports this fixture."""
    with busybox_daemon(busybox_archive) as process:
        yield process


@pytest.fixture(autouse=True)
def no_containers_left(daemon):
    """Remove every container after each test, so no test sees another's."""
    yield
    remove_all_containers(daemon)


def retire_daemon(daemon):
    """Remove every container, then stop the daemon and clean up after it (DaemonProcess.cleanup)."""
    if daemon.proc is not None and daemon.proc.poll() is None:
        remove_all_containers(daemon)
    daemon.cleanup()


def remove_all_containers(daemon):
    """DELETE ?force=1 every container the daemon knows (best effort: the daemon may be sick)."""
    try:
        listed = daemon.request("GET", "/containers/json?all=1", timeout=10)
        if listed.status != 200:
            return
        for container in listed.json():
            daemon.request("DELETE", "/containers/%s?force=1" % container["Id"], timeout=20)
    except (OSError, ValueError):
        pass


# -- small helpers the tests share ---------------------------------------------------------

def out(result):
    return result.stdout.decode().strip()


def err(result):
    return result.stderr.decode().strip()


def run(daemon, *args, check=True, input=None, timeout=60):
    """`docker run --network none ARGS...` (the options go before the image in ARGS)."""
    return daemon.docker("run", "--network", "none", *args, check=check, input=input,
                         timeout=timeout)


def run_detached(daemon, *args):
    """`docker run -d --network none ARGS...`: the full container ID."""
    return out(run(daemon, "-d", *args))


def inspect(daemon, name):
    """The container's inspect document through the API (quicker than the CLI for polling)."""
    response = daemon.request("GET", "/containers/%s/json" % name)
    assert response.status == 200, (response.status, response.body, daemon.log()[-2000:])
    return response.json()


def wait_for(predicate, timeout=15, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def exited_state(daemon, name):
    """The container's State once it has exited and is not about to restart, else None."""
    state = inspect(daemon, name)["State"]
    return state if not state["Running"] and not state["Restarting"] else None


def wait_until_exited(daemon, name, timeout=15):
    return wait_for(lambda: exited_state(daemon, name), timeout=timeout,
                    what="%s to exit" % name)


def wait_until_restarted(daemon, name, old_pid, timeout=15):
    """The container's inspect document once it runs again with a new process."""
    def restarted():
        container = inspect(daemon, name)
        state = container["State"]
        return container if state["Running"] and state["Pid"] not in (0, old_pid) else None
    return wait_for(restarted, timeout=timeout, what="%s to restart" % name)


def wait_until_restarts_end(daemon, name, count, timeout=20):
    """Wait until the container has exited for good after `count` restarts."""
    def ended():
        return exited_state(daemon, name) and inspect(daemon, name)["RestartCount"] == count
    wait_for(ended, timeout=timeout, what="%s to end after %d restarts" % (name, count))


def logs_of(daemon, name, *options):
    return out(daemon.docker("logs", *(options + (name,))))


def parse_timestamp(text):
    """RFC 3339 with up to nanoseconds (Docker's time format) -> aware datetime."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    assert match, "not an RFC 3339 timestamp: %r" % text
    micro = (match.group(2) or "0")[:6].ljust(6, "0")
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.datetime.fromisoformat("%s.%s%s" % (match.group(1), micro, zone))


def api_create(daemon, body, name=None):
    """POST /containers/create with the stdlib client; returns (status, decoded body)."""
    path = "/containers/create" + ("?name=%s" % name if name else "")
    response = daemon.request("POST", path, body=json.dumps(body),
                              headers={"Content-Type": "application/json"})
    return response.status, response.json() if response.body else {}


class PtyDocker(object):
    """The docker CLI on a pseudo-terminal of its own, as a user at a terminal runs it."""

    def __init__(self, daemon, args, rows=24, cols=80):
        env = dict(os.environ, DOCKER_HOST=daemon.host, TERM="xterm",
                   DOCKER_CONFIG=os.path.join(daemon.dir, "cli"))
        self.output = b""
        self.status = None
        pid, fd = pty.fork()
        if pid == 0:  # the child: set the size before the CLI reads it, then become docker
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                os.execve(DOCKER, [DOCKER] + list(args), env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd

    def send(self, data):
        os.write(self.fd, data)

    def resize(self, rows, cols):
        """A terminal resize: the kernel sends SIGWINCH to the CLI, the CLI tells the daemon."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def expect(self, pattern, timeout=15):
        """Read until `pattern` (bytes regex) matches the output seen so far."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(remaining):
                raise AssertionError("%r never came; the terminal showed %r" % (pattern, self.output))
        return self.output

    def _read(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the CLI exited and closed the terminal
            return False
        self.output += data
        return bool(data)

    def wait(self, timeout=15):
        """The CLI's exit status (it is killed when it outlives the timeout)."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            self._read(0.05)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                self.close()
                raise AssertionError("docker did not exit; the terminal showed %r" % self.output)
        return self.status

    def close(self):
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.status = -signal.SIGKILL
        with contextlib.suppress(OSError):
            os.close(self.fd)


@contextlib.contextmanager
def pty_docker(daemon, *args, rows=24, cols=80):
    session = PtyDocker(daemon, args, rows=rows, cols=cols)
    try:
        yield session
    finally:
        session.close()


def read_stream(sock, timeout=10):
    """Everything a hijacked or monitor stream sends, until it closes."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def demultiplex(data):
    """stdcopy: Docker's 8-byte-header frames -> [(stream id, payload)]; bytes that are not
    whole frames fail the test."""
    frames = []
    while data:
        assert len(data) >= 8 and data[0] in (1, 2) and data[1:4] == b"\0\0\0", data[:16]
        size = struct.unpack(">I", data[4:8])[0]
        frames.append((data[0], data[8:8 + size]))
        data = data[8 + size:]
    return frames


def block_device_path():
    """A /dev node of a block device root may open here (loop devices: some sandboxes forbid
    opening others), so that an EPERM in a container can only be the device filter's."""
    for name in sorted(os.listdir("/dev")):
        path = "/dev/" + name
        if name.startswith("loop") and name[4:].isdigit():
            try:
                os.close(os.open(path, os.O_RDONLY))
                return path
            except OSError:
                continue
    pytest.skip("no readable loop device on this host")


def host_daemon_env(daemon):
    return dict(os.environ, DOCKER_HOST=daemon.host, DOCKER_CONFIG=os.path.join(daemon.dir, "cli"))


def docker_popen(daemon, *args):
    """A docker CLI left running (logs -f, wait, events): the caller reads or kills it."""
    return subprocess.Popen([DOCKER] + list(args), env=host_daemon_env(daemon),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
