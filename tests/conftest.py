"""Shared test fixtures: a real pydockerd on a private root, socket and pidfile.

Every daemon a test starts lives under its own /tmp/pyd-XXXX directory (short, because a unix
socket path must fit in 108 bytes), uses its own key.json and an empty daemon.json, and is
stopped and unmounted afterwards, so tests never touch a real Docker on the host.
"""
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def pytest_configure(config):
    """`soak`: the long fuzz, fault and load runs, behind `make soak`; `make test` skips them."""
    config.addinivalue_line("markers", "soak: a long run, only under `make soak`")


DOCKER = os.environ.get("DOCKER_CLI", "/usr/local/bin/docker")
BUSYBOX = "/bin/busybox"

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
          "nobody:x:65534:65534:nobody:/home/nobody:/bin/false\n")
GROUP = ("root:x:0:\n"
         "daemon:x:1:\n"
         "tty:x:5:\n"
         "staff:x:50:daemon\n"
         "audio:x:29:daemon\n"
         "nogroup:x:65534:\n")


def build_busybox_rootfs(path):
    """A minimal image root from Debian's busybox-static: busybox, its applets, passwd, group."""
    if not os.path.exists(BUSYBOX):
        raise RuntimeError("busybox-static is not installed (apt-get install -y busybox-static)")
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)  # pytest's tmp dirs are 0700; an image's / is not
    for name in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "home/nobody"):
        os.makedirs(os.path.join(path, name), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin/busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], stdout=subprocess.PIPE, check=True)
    for applet in applets.stdout.decode().split():
        link = os.path.join(path, "bin", applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(path, "etc/passwd"), "w") as passwd:
        passwd.write(PASSWD)
    with open(os.path.join(path, "etc/group"), "w") as group:
        group.write(GROUP)
    return path


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket: the stdlib client the error-matrix tests use."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class Response(object):
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)


class DaemonProcess(object):
    """A pydockerd started from this checkout; `host` is its DOCKER_HOST.

    `env` adds to (or, with None values, removes from) the environment the daemon inherits.

    A test daemon never touches the host's networking. With netns=True it runs in a network
    namespace of its own (`ip netns add`, lo up), where it may use the real defaults (docker0,
    iptables chains, published ports); clients reach containers from there through in_netns().
    Without it the daemon gets `-b none --iptables=false` unless the test says otherwise, so
    it makes no bridge and no rule in the namespace the tests run in.
    """

    def __init__(self, directory, flags=(), env=None, netns=False):
        self.dir = directory
        self.socket = os.path.join(directory, "d.sock")
        self.pidfile = os.path.join(directory, "d.pid")
        self.root = os.path.join(directory, "root")
        self.exec_root = os.path.join(directory, "exec")
        self.key = os.path.join(directory, "key.json")
        self.config_file = os.path.join(directory, "daemon.json")
        self.log_path = os.path.join(directory, "daemon.log")
        self.flags = list(flags)
        self.netns = "pyd-" + os.path.basename(directory) if netns else None
        if not netns:
            given = {flag.split("=")[0] for flag in self.flags}
            isolation = [] if given & {"-b", "--bridge"} else ["-b", "none"]
            isolation += [] if "--iptables" in given else ["--iptables=false"]
            self.flags = isolation + self.flags
        self.env = dict(env or {})
        self.proc = None
        if not os.path.exists(self.config_file):
            with open(self.config_file, "w") as config:
                config.write("{}")

    @property
    def host(self):
        return "unix://" + self.socket

    @property
    def cgroup_parent(self):
        """A cgroup parent of this daemon's own (relative: below the tests' own cgroups),
        removed at cleanup."""
        return "pydockerd-test-" + os.path.basename(self.dir)

    @property
    def netns_path(self):
        return "/var/run/netns/" + self.netns

    def in_netns(self, *command):
        """A command prefix that runs in the daemon's network namespace (or as it is)."""
        return (["nsenter", "--net=" + self.netns_path] if self.netns else []) + list(command)

    def make_netns(self):
        if self.netns and not os.path.exists(self.netns_path):
            subprocess.run(["ip", "netns", "add", self.netns], check=True)
            subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)

    def command(self):
        return self.in_netns() + [sys.executable, os.path.join(REPO, "pydockerd.py"), "-H", self.host,
                "--data-root", self.root, "--exec-root", self.exec_root, "-p", self.pidfile,
                "--identity", self.key, "--config-file", self.config_file,
                "--cgroup-parent", self.cgroup_parent] + self.flags

    def start(self, wait=True):
        self.make_netns()
        log = open(self.log_path, "ab")
        env = {name: value for name, value in dict(os.environ, **self.env).items() if value is not None}
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                if self.request("GET", "/_ping").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("daemon did not answer /_ping:\n" + self.log())

    def log(self):
        with open(self.log_path, errors="replace") as log:
            return log.read()

    def request(self, method, path, body=None, headers=None, timeout=30):
        connection = UnixHTTPConnection(self.socket, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Response(response.status, response.headers, response.read())
        finally:
            connection.close()

    def docker(self, *args, check=True, input=None, timeout=60):
        """Run the real docker CLI against this daemon."""
        env = dict(os.environ, DOCKER_HOST=self.host, DOCKER_CONFIG=os.path.join(self.dir, "cli"))
        result = subprocess.run([DOCKER] + list(args), env=env, input=input, timeout=timeout,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if check and result.returncode != 0:
            raise AssertionError("docker %s failed (%d): %s\ndaemon log:\n%s" % (
                " ".join(args), result.returncode, result.stderr.decode(), self.log()[-3000:]))
        return result

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout)

    def cleanup(self):
        self.stop()
        kill_leftover_processes(self.exec_root)
        unmount_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)
        remove_cgroup_parent(self.cgroup_parent)
        if self.netns and os.path.exists(self.netns_path):
            subprocess.run(["ip", "netns", "del", self.netns], stderr=subprocess.DEVNULL)


def boot_log_of_a_refused_daemon(*flags, timeout=30):
    """Start a daemon that must refuse to boot; its log, once it has exited non-zero."""
    daemon = DaemonProcess(new_daemon_dir(), flags)
    try:
        daemon.start(wait=False)
        assert daemon.proc.wait(timeout) != 0, "the daemon booted"
        return daemon.log()
    finally:
        daemon.cleanup()


def kill_leftover_processes(exec_root):
    """Kill, by the pids the monitors recorded, any monitor or container still alive.

    Monitors outlive the daemon by design (live restore), so a test that failed half way would
    otherwise leave them behind. A pid is only killed when its start time still matches the
    recorded one, so a recycled pid is never hit.
    """
    for top, _dirs, files in os.walk(exec_root):
        if "state.json" in files:
            with contextlib.suppress(OSError, ValueError):
                with open(os.path.join(top, "state.json")) as state_file:
                    state = json.load(state_file)
                if state.get("status") == "running":
                    kill_if_same(state.get("pid"), state.get("start_time"))
        if "monitor.pid" in files:
            with contextlib.suppress(OSError, ValueError):
                with open(os.path.join(top, "monitor.pid")) as pid_file:
                    pid, start_time = pid_file.read().split()[:2]
                kill_if_same(int(pid), int(start_time))


def kill_if_same(pid, start_time):
    if not pid or start_time is None:
        return
    if process_start_time(pid) == int(start_time):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def process_start_time(pid):
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def remove_cgroup_parent(parent):
    """rmdir the daemon's cgroup parent in every hierarchy, and whatever container cgroups it
    left there (ours). A relative parent lies below this process's own cgroups, as the daemon's."""
    from drivers import cgroups
    hierarchies = cgroups.find_hierarchies()
    mounts = [(mountpoint, hierarchies.own.get(name, "/")) for name, mountpoint in hierarchies.v1.items()]
    if hierarchies.unified:
        mounts.append((hierarchies.unified, hierarchies.own.get("", "/")))
    for root in {os.path.join(mountpoint, own.lstrip("/"), parent) for mountpoint, own in mounts}:
        if not os.path.isdir(root):
            continue
        for child in os.listdir(root):
            if os.path.isdir(os.path.join(root, child)):
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(root, child))
        with contextlib.suppress(OSError):
            os.rmdir(root)


def unmount_under(directory):
    """Lazily unmount whatever a killed daemon left mounted below `directory` (ours only)."""
    prefix = os.path.realpath(directory) + "/"
    with open("/proc/self/mounts") as mounts:
        targets = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for target in sorted(targets, reverse=True):
        subprocess.run(["umount", "-l", target], stderr=subprocess.DEVNULL)


def new_daemon_dir():
    return tempfile.mkdtemp(prefix="pyd-", dir="/tmp")


@pytest.fixture
def make_daemon():
    """Factory: make_daemon(*flags) starts a daemon; every one is stopped at teardown."""
    daemons = []

    def make(*flags, start=True, directory=None, env=None, netns=False):
        daemon = DaemonProcess(directory or new_daemon_dir(), flags, env=env, netns=netns)
        daemons.append(daemon)
        return daemon.start() if start else daemon

    yield make
    for daemon in daemons:
        daemon.cleanup()


@pytest.fixture(scope="module")
def shared_daemon():
    """One daemon for a module's read-mostly tests (boot once, ask many questions)."""
    daemon = DaemonProcess(new_daemon_dir(), ["-b", "none"]).start()
    yield daemon
    daemon.cleanup()
