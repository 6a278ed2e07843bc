"""The container monitor (containerd-shim's job) and the fork server that spawns monitors.

dockerd 1.8 ran each container as a child of the daemon (daemon/monitor.go watched it), so
containers died with the daemon. pydockerd gives each container, and each `docker exec`, a
small monitor process instead (design.md section 3):

  * it starts the process through the exec driver and owns its stdio (pipes, or the pty);
  * it copies stdout/stderr into the log driver (drivers/logger.py), the lines of each read
    as one run (json-file writes a run's records with one write); a remote driver that
    falls behind in blocking mode makes it stop reading the output (the container then
    blocks on its pipe) without stopping anything else it serves;
  * it serves attach on a unix socket: output to every attached client, stdin from them,
    pty resizes, signals, "wait for the exit";
  * it reaps the process (and any orphan: it is a child subreaper) and records the exit
    code and time in a state file, written atomically;
  * it lives in its own session and does not depend on the daemon: after a `kill -9` of
    the daemon it keeps running (init adopts it), and the daemon re-adopts it on boot with
    adopt(state_dir).

Monitors are forked from the fork server: forking the daemon itself is unsafe (it runs
threads) and starting a new interpreter per container costs ~0.1 s, so the daemon starts one
small interpreter at boot that imports this module and nothing else, and forks a monitor for
each container from it: a start costs a fork, and a monitor costs only what this lean process
holds (the daemon's API, registry and image code are not in it). That interpreter is started
from a sealed memfd copy of the host's (drivers/exeseal.py), so that no process a container
can see (a monitor's exec helper, a container's init before its execve, the --init reaper) has
the host's interpreter file behind its /proc/<pid>/exe (CVE-2019-5736).

The on-disk protocol, in the state directory the daemon names (one per container, one per
exec instance, under the exec root):

    monitor.pid   "<monitor pid> <start time>" (start time: /proc/<pid>/stat field 22)
    state.json    {"status": "created"|"running"|"exited", "pid", "start_time",
                   "monitor_pid", "started_at", "finished_at", "exit_code", "error"}
    attach.sock   the monitor's socket (mode 0600 in a 0700 directory)
    monitor.log   the monitor's own stderr, for post-mortems

On attach.sock a client writes one JSON line, then:
    {"attach": {"stdin": b, "stdout": b, "stderr": b, "stdin_once": b, "multiplexed": b}}
        the connection becomes the stream: the container's output comes back in Docker's
        multiplexed frames ([stream, 0, 0, 0, size(4)] + data; 1 = stdout, 2 = stderr) or as
        raw bytes, as `multiplexed` asks (without it: raw with a tty, framed without, as
        `docker attach` wants; `docker exec` may ask otherwise); bytes sent are the
        container's stdin, and the client's EOF closes that stdin when stdin_once is set. The
        monitor closes the connection once the container's output has ended.
    {"start": true}                       -> {"ok": true} or {"error": ..., "exit_code": ...}
    {"resize": {"height": h, "width": w}} -> {"ok": true}
    {"signal": n}                         -> {"ok": true} or {"error": ...}
    {"state": true}                       -> the state
    {"wait": true}                        -> the state, once the process has exited
    {"proxy": [{"proto": "tcp"|"udp", "ip": container ip, "port": container port}, ...]}
                                          -> {"ok": true} or {"error": ...}
        the userland proxy (drivers/proxy.py) for the container's published ports: the
        line brings one listening socket per entry, in order, as SCM_RIGHTS descriptors
        riding on its first bytes (at most SCM_MAX_FD = 253 per sendmsg, so a long list
        spans several). The monitor forwards each listener's traffic to ip:port until the
        process exits, and closes the listeners before it records the exit. The monitor
        reads a request line with recvmsg (a plain recv would let the kernel discard
        descriptors) and closes descriptors that came with any other request.
    {"unproxy": true}                     -> {"ok": true}
        close every published port now (the network carrying them was disconnected).
"""
import array
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import sys
import termios
import threading
import time

from drivers import execdriver, exeseal, linux, logger, proxy

PID_FILE = "monitor.pid"
STATE_FILE = "state.json"
ATTACH_SOCKET = "attach.sock"
MONITOR_LOG = "monitor.log"

# stdcopy's stream ids for multiplexed (non-tty) attach.
STREAM_IDS = {"stdout": 1, "stderr": 2}

# An attached client this far behind stops the reading of the container's output (Docker's
# attach also makes a slow client slow the container down rather than lose output).
MAX_CLIENT_BACKLOG = 1 << 20

# After the process exits, how long output may still trail in (from orphans sharing the
# pipes when there is no pid namespace) before the monitor gives up on it.
DRAIN_TIMEOUT = 2.0

# While a remote log driver is behind, how often the loop looks whether it caught up.
LOG_BACKLOG_POLL = 0.02

# How long a client waits for the monitor to answer a spawn or a request.
REQUEST_TIMEOUT = 30.0

_READ_SIZE = 64 * 1024

# The longest request line: a proxy request names every published port (some 50 bytes each,
# and `-p 1-65535:1-65535` publishes on 0.0.0.0 and :: both).
_MAX_REQUEST = 8 << 20

# SCM_MAX_FD: the most descriptors one sendmsg may pass.
_MAX_FDS_PER_MESSAGE = 253

# The directory holding the drivers package, for the fork server's fresh interpreter.
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class MonitorError(Exception):
    """The monitor could not be reached or refused a request."""


# ---------------------------------------------------------------------------------------
# The daemon's side: the fork server client and the monitor client.
# ---------------------------------------------------------------------------------------

def start_fork_server():
    """Start the spawner of monitors (call it once at boot); see ForkServer."""
    return ForkServer(exeseal.sealed_interpreter())


def _launch_fork_server(interpreter):
    """A fresh interpreter (thread-free whatever the daemon runs) that imports only this
    module and serves forks on a socket; (its pid, our end of the socket).

    interpreter is the sealed copy of sys.executable (an exeseal.SealedExecutable); argv[0]
    stays sys.executable, from which Python finds its standard library."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        theirs.set_inheritable(True)
        code = ("import sys; sys.path.insert(0, %r); from drivers import monitor; "
                "monitor.serve_forks(%d)" % (_PROJECT_ROOT, theirs.fileno()))
        pid = os.posix_spawn(interpreter.path, [sys.executable, "-I", "-S", "-c", code],
                             os.environ)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return pid, ours


class ForkServer(object):
    """The daemon's handle on the fork server; safe to use from many threads.

    The fork server exits when the daemon closes its socket or dies; should it die first,
    the next spawn starts a new one (posix_spawn is safe in a threaded process), from the
    same sealed interpreter, which the ForkServer owns.
    """

    def __init__(self, interpreter):
        self._lock = threading.Lock()
        self._interpreter = interpreter
        self.pid, self._sock = _launch_fork_server(interpreter)

    def spawn_monitor(self, state_dir, command, log_driver="json-file", log_opts=None,
                      log_path="", log_info=None, start=True):
        """Start a container: a monitor for it, its init set up and (if start) running.

        command is an execdriver.Command. With start=False the init waits before execve
        until Monitor.start(), so that attach streams can be connected first (docker run
        attaches, then starts). log_path is the driver's local file (json-file's log or a
        remote driver's cache), log_info a logger.LogInfo. Returns a Monitor; raises
        ExecdriverError with Docker's message and exit code when the container cannot
        start, LogDriverError when its log driver cannot be set up.
        """
        return self._spawn({"kind": "run", "state_dir": state_dir, "start": start,
                            "command": command.to_dict(), "log_driver": log_driver,
                            "log_opts": log_opts or {}, "log_path": log_path,
                            "log_info": (log_info or logger.LogInfo()).to_dict()})

    def spawn_exec_monitor(self, state_dir, command, process, container_pid, start=True):
        """Start a `docker exec` process (an execdriver.ProcessConfig) in the running
        container whose init is container_pid; its output is not logged."""
        return self._spawn({"kind": "exec", "state_dir": state_dir, "start": start,
                            "command": command.to_dict(), "process": process.to_dict(),
                            "container_pid": container_pid, "log_driver": "none",
                            "log_opts": {}, "log_path": "", "log_info": {}})

    def _spawn(self, request):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours:
            try:
                self._hand_over(theirs)
            finally:
                theirs.close()
            ours.settimeout(REQUEST_TIMEOUT)
            ours.sendall(_encode(request))
            reply = _read_reply(ours)
        if reply is None:
            raise MonitorError("the monitor for %s died while starting" % request["state_dir"])
        if "log_error" in reply:
            raise logger.LogDriverError(reply["log_error"])
        if "error" in reply:
            raise execdriver.ExecdriverError(reply["error"], reply["exit_code"])
        return Monitor(request["state_dir"], reply["monitor_pid"], reply["pid"])

    def _hand_over(self, connection):
        """Send the fork server one end of a new connection: it forks a monitor onto it."""
        message = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [connection.fileno()]))]
        with self._lock:
            try:
                self._sock.sendmsg([b"spawn"], message)
            except OSError:  # it died: reap it and start another
                self._stop()
                self.pid, self._sock = _launch_fork_server(self._interpreter)
                self._sock.sendmsg([b"spawn"], message)

    def close(self):
        """Stop the fork server (monitors it spawned keep running)."""
        with self._lock:
            self._stop()
            self._interpreter.close()

    def _stop(self):
        self._sock.close()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


class Monitor(object):
    """The daemon's handle on one monitor: its pid, the process's pid, and requests."""

    def __init__(self, state_dir, pid, init_pid):
        self.state_dir = state_dir
        self.pid = pid
        self.init_pid = init_pid

    def attach(self, stdin=False, stdout=True, stderr=True, stdin_once=False, multiplexed=None):
        """A connected stream socket (see the module docstring for its format)."""
        options = {"stdin": stdin, "stdout": stdout, "stderr": stderr, "stdin_once": stdin_once}
        if multiplexed is not None:
            options["multiplexed"] = multiplexed
        sock = _connect(self.state_dir)
        sock.sendall(_encode({"attach": options}))
        return sock

    def start(self):
        """Let a container spawned with start=False execve; ExecdriverError if it failed."""
        reply = self._request({"start": True})
        if "error" in reply:
            raise execdriver.ExecdriverError(reply["error"], reply["exit_code"])

    def resize(self, height, width):
        self._checked({"resize": {"height": height, "width": width}})

    def signal(self, signum):
        """Signal the process; the monitor is its parent, so the pid cannot be a reused one."""
        self._checked({"signal": int(signum)})

    def proxy(self, mappings):
        """Have the monitor forward the container's published ports until the process exits.

        mappings: [(listener socket, "tcp"|"udp", container_ip, container_port)], listeners
        from portmapper.open_listener. The monitor gets its own copies of the descriptors:
        the caller closes its listeners afterwards, and the ports then close with the
        container. Raises MonitorError if the monitor refused them.
        """
        ports = [{"proto": proto, "ip": ip, "port": port} for _, proto, ip, port in mappings]
        self._checked({"proxy": ports}, [listener.fileno() for listener, _, _, _ in mappings])

    def unproxy(self):
        """Close every published port of the container while it runs on."""
        self._checked({"unproxy": True})

    def state(self):
        """The live state, or the state file when the monitor has gone."""
        try:
            return self._request({"state": True})
        except MonitorError:
            return read_state(self.state_dir)

    def wait(self, timeout=None):
        """Block until the process has exited; its final state (see read_state).

        The monitor removes its pid file only after writing the final state, so once the
        monitor is unreachable and its pid file gone, the state file has the answer.
        """
        while True:
            try:
                return self._request({"wait": True}, timeout)
            except MonitorError:
                if not self.is_alive():
                    return read_state(self.state_dir)
                time.sleep(0.01)

    def is_alive(self):
        return alive(self.state_dir)

    def _checked(self, request, fds=()):
        reply = self._request(request, fds=fds)
        if "error" in reply:
            raise MonitorError(reply["error"])

    def _request(self, request, timeout=REQUEST_TIMEOUT, fds=()):
        try:
            with _connect(self.state_dir) as sock:
                sock.settimeout(timeout)
                _send_with_fds(sock, _encode(request), fds)
                reply = _read_reply(sock)
        except socket.timeout:
            raise
        except OSError as err:
            raise MonitorError("monitor of %s: %s" % (self.state_dir, err)) from None
        if reply is None:
            raise MonitorError("monitor of %s went away" % self.state_dir)
        return reply


def adopt(state_dir):
    """After a daemon restart: the Monitor still running in state_dir, or None.

    A monitor counts as alive when the pid in monitor.pid still has the start time written
    beside it (a recycled pid does not) and it answers on its socket. With None, the
    process's fate is in read_state(state_dir).
    """
    if not _pid_file_matches(state_dir):
        return None
    state = read_state(state_dir)
    monitor = Monitor(state_dir, state.get("monitor_pid"), state.get("pid"))
    try:
        monitor._request({"state": True}, timeout=5)
    except (MonitorError, socket.timeout):
        return None
    return monitor


def alive(state_dir):
    """Whether the monitor recorded in state_dir still runs (pid and start time)."""
    return _pid_file_matches(state_dir)


def read_state(state_dir):
    """The state file's content ({} if there is none yet)."""
    try:
        with open(os.path.join(state_dir, STATE_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def kill_orphan(state_dir, signum=signal.SIGKILL):
    """Signal a process whose monitor died, if it is still the same process (pid and start
    time, as 1.8.2's Terminate checked). Returns whether it was signalled."""
    state = read_state(state_dir)
    return _signal_if_same(state.get("pid"), state.get("start_time"), signum)


def kill_leftovers(state_dir):
    """SIGKILL for a monitor and its process that no container may own any more (a restarted
    daemon found the start half done, or the container gone), each only while it is still the
    process recorded; the process first, so it never outlives its monitor unwatched. Returns
    whether anything was signalled.

    A monitor killed before it let its process execve takes that process with it: the process
    waits at the gate on a socket only the monitor holds, and gives up when it closes."""
    killed = kill_orphan(state_dir)
    return _signal_if_same(*_recorded_monitor(state_dir), signal.SIGKILL) or killed


def _signal_if_same(pid, start_time, signum):
    if not pid or start_time is None or process_start_time(pid) != start_time:
        return False
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def process_start_time(pid):
    """Field 22 of /proc/<pid>/stat (clock ticks since boot), None if there is no such pid."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19])


def _pid_file_matches(state_dir):
    pid, start_time = _recorded_monitor(state_dir)
    return pid is not None and process_start_time(pid) == start_time


def _recorded_monitor(state_dir):
    """(pid, start time) from monitor.pid, or (None, None) while there is none."""
    try:
        with open(os.path.join(state_dir, PID_FILE)) as f:
            pid, start_time = (int(field) for field in f.read().split())
    except (OSError, ValueError):
        return None, None
    return pid, start_time


def _connect(state_dir):
    """A connection to attach.sock; long paths go through /proc/self/fd (sun_path is 108
    bytes at most, and the daemon has threads, so no chdir)."""
    path = os.path.join(state_dir, ATTACH_SOCKET)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if len(os.fsencode(path)) < 100:
            sock.connect(path)
            return sock
        directory = os.open(state_dir, os.O_PATH | os.O_CLOEXEC)
        try:
            sock.connect("/proc/self/fd/%d/%s" % (directory, ATTACH_SOCKET))
        finally:
            os.close(directory)
        return sock
    except BaseException:
        sock.close()
        raise


def _encode(message):
    return json.dumps(message).encode() + b"\n"


def _send_with_fds(sock, data, fds):
    """sendall(data), passing fds along: each batch of _MAX_FDS_PER_MESSAGE rides on one
    byte of data (a stream socket passes descriptors only with bytes)."""
    view = memoryview(data)
    for first in range(0, len(fds), _MAX_FDS_PER_MESSAGE):
        socket.send_fds(sock, [view[:1]], fds[first:first + _MAX_FDS_PER_MESSAGE])
        view = view[1:]
    sock.sendall(view)


def _read_reply(sock):
    """One JSON line from sock, or None if it closed first."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(_READ_SIZE)
        if not chunk:
            return None
        data += chunk
    return json.loads(data)


# ---------------------------------------------------------------------------------------
# The fork server process.
# ---------------------------------------------------------------------------------------

def serve_forks(control_fd):
    """The fork server's loop: one connection in, one monitor out, until EOF."""
    code = 0
    try:
        control = socket.socket(fileno=control_fd)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # The kernel reaps monitors that end while we run; once we are gone, init does.
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        execdriver.close_fds_except({0, 1, 2, control_fd})
        while True:
            data, ancillary, _, _ = control.recvmsg(16, socket.CMSG_SPACE(4))
            if not data:
                return
            for connection in execdriver.passed_fds(ancillary):
                _fork_monitor(connection, control)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _fork_monitor(connection, control):
    """One fork: the monitor starts its own session, so neither the daemon's terminal nor
    the end of the daemon or of the fork server reaches it."""
    if os.fork() == 0:
        _monitor_main(connection, control)
    os.close(connection)


# ---------------------------------------------------------------------------------------
# The monitor process.
# ---------------------------------------------------------------------------------------

def _monitor_main(connection_fd, control):
    """Read the spawn request, start the process, answer, then serve until it is over."""
    code = 0
    try:
        control.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the monitor waits for its children
        os.setsid()
        connection = socket.socket(fileno=connection_fd)
        connection.settimeout(REQUEST_TIMEOUT)
        request = json.loads(connection.makefile("rb").readline())
        _prepare_monitor_process(request["state_dir"])
        monitor = _start(request, connection)
        if monitor is not None:
            monitor.run()
    except BaseException:
        sys.excepthook(*sys.exc_info())  # to monitor.log (the C hook: no traceback import)
        code = 1
    finally:
        os._exit(code)


def _prepare_monitor_process(state_dir):
    """A quiet long-lived process: its own dir, /dev/null stdio, stderr to monitor.log,
    immune to the terminal's and the daemon's stop signals (it stops when its process
    does), and a subreaper so the container's process is its child."""
    os.makedirs(state_dir, 0o700, exist_ok=True)
    os.chdir(state_dir)
    null = os.open(os.devnull, os.O_RDWR)
    log = os.open(MONITOR_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_IGN)
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    _atomic_write(PID_FILE, b"%d %d\n" % (os.getpid(), process_start_time(os.getpid())),
                  durable=False)


def _start(request, connection):
    """Create the process and answer the spawn; the running _Monitor, or None if it failed."""
    try:
        log = logger.new_logger(request["log_driver"], request["log_path"], request["log_opts"],
                                logger.LogInfo.from_dict(request["log_info"]))
    except (logger.LogDriverError, OSError) as err:
        connection.sendall(_encode({"log_error": "failed to initialize logging driver: %s" % err}))
        _remove_runtime_files()
        return None
    command = execdriver.Command.from_dict(request["command"])
    if request["kind"] == "run":
        stdio = _Stdio(command.tty, command.open_stdin)
    else:
        process = execdriver.ProcessConfig.from_dict(request["process"])
        stdio = _Stdio(process.tty, process.open_stdin)
    try:
        if request["kind"] == "run":
            init = execdriver.start(command, stdio.child_fds())
        else:
            init = execdriver.exec_process(command, process, request["container_pid"],
                                           stdio.child_fds())
    except execdriver.ExecdriverError as err:
        log.close()
        _write_state({"status": "exited", "exit_code": err.exit_code, "error": err.message,
                      "finished_at": logger.format_time(time.time_ns())}, durable=True)
        connection.sendall(_encode({"error": err.message, "exit_code": err.exit_code}))
        _remove_runtime_files()
        return None
    stdio.parent_side(init.console)
    monitor = _Monitor(init, stdio, log, request["log_driver"])
    reply = monitor.release() if request["start"] else None
    connection.sendall(_encode(reply or {"pid": init.pid, "monitor_pid": os.getpid(),
                                         "start_time": monitor.state["start_time"]}))
    connection.close()
    return monitor


class _Stdio(object):
    """The process's stdio as the monitor holds it: pipes, or the pty master for a tty."""

    def __init__(self, tty, open_stdin):
        self.tty = tty
        self._child = []
        self.outputs = {}   # fd -> stream name
        self.stdin = None   # where client input goes
        if tty:
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            self._child = [null, null, null]
            return
        if open_stdin:
            read_end, self.stdin = os.pipe()
            self._child.append(read_end)
        else:
            self._child.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        for name in ("stdout", "stderr"):
            read_end, write_end = os.pipe()
            self.outputs[read_end] = name
            self._child.append(write_end)

    def child_fds(self):
        return list(self._child)

    def parent_side(self, console):
        """Close the child's ends; with a tty, output and input both go through the master
        (input on a duplicate, so each has its own selector registration)."""
        for fd in set(self._child):
            os.close(fd)
        if self.tty:
            self.outputs[console] = "stdout"
            self.stdin = os.dup(console)
        for fd in list(self.outputs) + ([self.stdin] if self.stdin is not None else []):
            os.set_blocking(fd, False)


class _Client(object):
    """One connection on attach.sock."""

    def __init__(self, sock):
        self.sock = sock
        self.header = None
        self.pending = bytearray()
        self.passed = []    # sockets passed with the request line
        self.backlog = bytearray()
        self.streams = ()
        self.multiplexed = False
        self.stdin = False
        self.stdin_once = False
        self.reading = True
        self.close_when_flushed = False


class _Monitor(object):
    """The monitor's event loop over the process's output, its clients and SIGCHLD."""

    def __init__(self, init, stdio, log, log_driver):
        self.init = init
        self.stdio = stdio
        self.log = log
        self.log_driver = log_driver
        self.log_failing = False
        self.copiers = {fd: logger.Copier(name) for fd, name in stdio.outputs.items()}
        self.stdin_backlog = bytearray()
        self.stdin_closing = False
        self.clients = []
        self.waiters = []
        self.proxies = []
        self.exit_status = None
        self.drain_deadline = None
        self.selector = selectors.DefaultSelector()
        self.state = {"status": "created", "pid": init.pid,
                      "start_time": process_start_time(init.pid), "monitor_pid": os.getpid(),
                      "started_at": "", "finished_at": "", "exit_code": None, "error": ""}
        if os.path.lexists(ATTACH_SOCKET):
            os.unlink(ATTACH_SOCKET)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(ATTACH_SOCKET)
        os.chmod(ATTACH_SOCKET, 0o600)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, self._accept)
        for fd in self.copiers:
            self.selector.register(fd, selectors.EVENT_READ, self._read_output)
        self.output_paused = False
        self.wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, self._reap)
        _write_state(self.state)

    # -- the process --------------------------------------------------------------------------

    def release(self):
        """Let the process execve; None, or the error reply for the client that asked."""
        if self.state["status"] != "created":
            return {"error": "the process was already started", "exit_code": 128}
        try:
            self.init.release()
        except execdriver.ExecdriverError as err:
            self.state["error"] = err.message
            return {"error": err.message, "exit_code": err.exit_code}
        self.state.update(status="running", started_at=logger.format_time(time.time_ns()))
        _write_state(self.state)
        return None

    def _reap(self, key, events):
        """SIGCHLD: reap every child (orphans of the container included) and note the exit
        status of ours."""
        try:
            while os.read(self.wakeup_r, 4096):
                pass
        except BlockingIOError:
            pass
        self._reap_children()

    def _reap_children(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.init.pid:
                self.exit_status = status
                self.drain_deadline = time.monotonic() + DRAIN_TIMEOUT

    def _signal(self, signum):
        if self.exit_status is not None:
            return {"error": "process %d is not running" % self.init.pid}
        try:
            os.kill(self.init.pid, signum)
        except OSError as err:
            return {"error": "cannot signal process %d: %s" % (self.init.pid, err.strerror)}
        return {"ok": True}

    def _resize(self, size):
        if not self.stdio.tty:
            return {"error": "the process has no tty"}
        if self.stdio.stdin is None:
            return {"error": "the process's tty is closed"}
        fcntl.ioctl(self.stdio.stdin, termios.TIOCSWINSZ,
                    struct.pack("HHHH", int(size["height"]), int(size["width"]), 0, 0))
        return {"ok": True}

    # -- the loop -----------------------------------------------------------------------------

    def run(self):
        self._reap_children()  # a SIGCHLD before the handler existed
        while not self._finished():
            timeout = None
            if self.drain_deadline is not None:
                timeout = max(0.0, self.drain_deadline - time.monotonic())
            self._pause_output_for_slow_clients()
            if self.output_paused and self.log.backlogged():
                # The driver's thread gives no signal when it catches up: look again soon.
                timeout = min(timeout, LOG_BACKLOG_POLL) if timeout is not None else LOG_BACKLOG_POLL
            for key, events in self.selector.select(timeout):
                key.data(key, events)
        self._finish()

    def _finished(self):
        if self.exit_status is None:
            return False
        return not self.copiers or time.monotonic() >= self.drain_deadline

    def _finish(self):
        """Close the published ports, record the exit, answer the waiters, flush and close the
        clients, and go: a remote log driver gets its last lines out after that (for
        logger.CLOSE_TIMEOUT at most), so a stalled destination never delays the exit's news."""
        self._stop_proxies()
        for fd in list(self.copiers):
            self._close_output(fd)
        self.state.update(status="exited", exit_code=_exit_code(self.exit_status),
                          finished_at=logger.format_time(time.time_ns()))
        _write_state(self.state, durable=True)
        # Gone from disk before anyone hears of the exit: whoever learns it finds no socket.
        self.listener.close()
        _remove_runtime_files()
        for client in self.waiters:
            client.backlog += _encode(self.state)
        for client in self.clients + self.waiters:
            _flush_and_close(client)
        self.log.close()

    # -- output -------------------------------------------------------------------------------

    def _read_output(self, key, events):
        fd = key.fd
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO: the pty's last slave descriptor is gone
            data = b""
        if not data:
            self._close_output(fd)
            return
        self._log(self.copiers[fd].feed(data))
        self._broadcast(self.stdio.outputs[fd], data)

    def _close_output(self, fd):
        self._log(self.copiers.pop(fd).close())
        if not self.output_paused:
            self.selector.unregister(fd)
        os.close(fd)
        if not self.copiers:
            for client in self.clients:
                if client.header is not None:  # an attach stream: its output has ended
                    client.close_when_flushed = True
                    self._update_client(client)

    def _log(self, items):
        """What a copier read (logger.Lines and partial logger.Messages) to the log driver.

        Lines that cannot be written (a full disk) are dropped and the container goes on, as
        with dockerd's copier, which logs "Error writing log message" and leaves the
        container's state alone (State.Error never says it). The monitor logs that to
        monitor.log once per run of failures: the next failure after lines were written again
        is logged again."""
        for item in items:
            try:
                if isinstance(item, logger.Lines):
                    self.log.log_lines(item)
                else:
                    self.log.log(item)
            except OSError as err:
                if not self.log_failing:
                    logger.note('Error writing log message: driver=%s error="%s"' % (
                        self.log_driver, (err.strerror or str(err)).lower()))
                self.log_failing = True
            else:
                self.log_failing = False

    def _broadcast(self, stream, data):
        if not self.clients:
            return
        framed = struct.pack(">BxxxI", STREAM_IDS[stream], len(data)) + data
        for client in self.clients:
            if stream in client.streams:
                client.backlog += framed if client.multiplexed else data
                self._update_client(client)

    def _pause_output_for_slow_clients(self):
        """Stop reading the container's output while an attached client or the log driver
        (blocking mode) cannot keep up."""
        slow = self.log.backlogged() or any(len(c.backlog) > MAX_CLIENT_BACKLOG for c in self.clients)
        if slow == self.output_paused:
            return
        for fd in self.copiers:
            if slow:
                self.selector.unregister(fd)
            else:
                self.selector.register(fd, selectors.EVENT_READ, self._read_output)
        self.output_paused = slow

    # -- stdin --------------------------------------------------------------------------------

    def _feed_stdin(self, data):
        if self.stdio.stdin is None or self.stdin_closing:
            return
        was_empty = not self.stdin_backlog
        self.stdin_backlog += data
        if was_empty:
            self.selector.register(self.stdio.stdin, selectors.EVENT_WRITE, self._write_stdin)

    def _write_stdin(self, key, events):
        try:
            written = os.write(self.stdio.stdin, self.stdin_backlog)
            del self.stdin_backlog[:written]
        except BlockingIOError:
            return
        except OSError:  # EPIPE: the process closed its stdin
            self.stdin_backlog.clear()
            self.stdin_closing = True
        if not self.stdin_backlog:
            self.selector.unregister(self.stdio.stdin)
            if self.stdin_closing:
                self._close_stdin()

    def _end_of_client_stdin(self):
        """stdin_once: the client's EOF is the process's EOF (pipes only; a tty has no EOF
        to give, like Docker)."""
        if self.stdio.tty or self.stdio.stdin is None:
            return
        self.stdin_closing = True
        if not self.stdin_backlog:
            self._close_stdin()

    def _close_stdin(self):
        if self.stdio.stdin is not None:
            os.close(self.stdio.stdin)
            self.stdio.stdin = None

    # -- clients ------------------------------------------------------------------------------

    def _accept(self, key, events):
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        client = _Client(sock)
        self.clients.append(client)
        self._update_client(client)

    def _client_event(self, client, events):
        if events & selectors.EVENT_WRITE:
            self._send_backlog(client)
        if events & selectors.EVENT_READ and client.reading and client.sock.fileno() != -1:
            self._receive(client)
        self._update_client(client)

    def _receive(self, client):
        try:
            if client.header is None:
                data = _receive_request(client)
            else:
                data = client.sock.recv(_READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            client.reading = False
            if client.header is None:
                self._drop(client)
            elif client.stdin and client.stdin_once:
                self._end_of_client_stdin()
            return
        if client.header is None:
            line, newline, data = data.partition(b"\n")
            client.pending += line
            if not newline:
                if len(client.pending) > _MAX_REQUEST:  # no request is this long
                    self._drop(client)
                return
            request, client.pending = client.pending, bytearray()
            self._dispatch(client, request)
        if data and client.stdin:
            self._feed_stdin(data)

    def _dispatch(self, client, line):
        try:
            header = json.loads(line)
        except ValueError:
            header = None
        client.header = header = header if isinstance(header, dict) else {}
        passed, client.passed = client.passed, []
        if "proxy" not in header:
            _close_all(passed)  # only a proxy request brings descriptors
        if "attach" in header:
            options = header["attach"]
            client.streams = tuple(s for s in ("stdout", "stderr") if options.get(s))
            client.multiplexed = bool(options.get("multiplexed", not self.stdio.tty))
            client.stdin = bool(options.get("stdin"))
            client.stdin_once = bool(options.get("stdin_once"))
            client.close_when_flushed = not self.copiers
            return
        client.reading = False
        self.clients.remove(client)
        if "wait" in header:
            self.waiters.append(client)
            return
        try:
            reply = self._answer(header, passed)
        except (KeyError, TypeError, ValueError, OSError) as err:
            reply = {"error": "bad request %s: %s" % (line[:100].decode(errors="replace"), err)}
        client.backlog += _encode(reply)
        client.close_when_flushed = True

    def _answer(self, header, passed):
        if "proxy" in header:
            return self._start_proxy(header["proxy"], passed)
        if "unproxy" in header:
            return self._stop_proxies()
        if "start" in header:
            return self.release() or {"ok": True}
        if "resize" in header:
            return self._resize(header["resize"])
        if "signal" in header:
            return self._signal(int(header["signal"]))
        if "state" in header:
            return self.state
        raise ValueError("unknown request")

    def _stop_proxies(self):
        for userland_proxy in self.proxies:
            userland_proxy.stop()
        self.proxies = []
        return {"ok": True}

    def _start_proxy(self, ports, listeners):
        """Forward each published port's listener (passed with the request) to the container."""
        try:
            if len(ports) != len(listeners):
                raise ValueError("%d ports but %d listeners came (is the monitor out of file "
                                 "descriptors?)" % (len(ports), len(listeners)))
            userland_proxy = proxy.UserlandProxy(
                [(listener, port["proto"], port["ip"], int(port["port"]))
                 for listener, port in zip(listeners, ports)])
        except BaseException:
            _close_all(listeners)
            raise
        userland_proxy.start()
        self.proxies.append(userland_proxy)
        return {"ok": True}

    def _send_backlog(self, client):
        try:
            sent = client.sock.send(client.backlog)
            del client.backlog[:sent]
        except BlockingIOError:
            return
        except OSError:
            self._drop(client)

    def _update_client(self, client):
        if client.sock.fileno() == -1:
            return
        if client.close_when_flushed and not client.backlog:
            self._drop(client)
            return
        events = (selectors.EVENT_READ if client.reading else 0) | \
            (selectors.EVENT_WRITE if client.backlog else 0)
        registered = client.sock in self.selector.get_map() and \
            self.selector.get_key(client.sock).events
        if events == registered:
            return
        callback = lambda key, ev, c=client: self._client_event(c, ev)  # noqa: E731
        if registered and events:
            self.selector.modify(client.sock, events, callback)
        elif registered:
            self.selector.unregister(client.sock)
        else:
            self.selector.register(client.sock, events, callback)

    def _drop(self, client):
        if client.sock.fileno() != -1:
            if client.sock in self.selector.get_map():
                self.selector.unregister(client.sock)
            client.sock.close()
        _close_all(client.passed)
        for group in (self.clients, self.waiters):
            if client in group:
                group.remove(client)


def _receive_request(client):
    """Bytes of a request line, keeping the listening sockets that may ride on them."""
    data, ancillary, _, _ = client.sock.recvmsg(
        _READ_SIZE, socket.CMSG_SPACE(4 * _MAX_FDS_PER_MESSAGE), socket.MSG_CMSG_CLOEXEC)
    for fd in execdriver.passed_fds(ancillary):
        try:
            client.passed.append(socket.socket(fileno=fd))
        except OSError:  # not a socket
            os.close(fd)
    return data


def _close_all(sockets):
    for sock in sockets:
        sock.close()


def _flush_and_close(client):
    """The end: give a client what it is owed (a bounded wait), then hang up."""
    if client.sock.fileno() == -1:
        return
    try:
        client.sock.setblocking(True)
        client.sock.settimeout(DRAIN_TIMEOUT)
        client.sock.sendall(client.backlog)
    except OSError:
        pass
    client.sock.close()


def _exit_code(status):
    """Docker's exit code: the process's, or 128 + the signal that killed it."""
    if status is None:
        return None
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _write_state(state, durable=False):
    """Record the state; readers always see a whole file. Only the exit is worth an fsync
    (the other states describe processes a power loss ends anyway, and a daemon crash does
    not lose the page cache). A full disk must not kill the monitor: the waiters still get
    the state from it, so a failure is only noted in monitor.log."""
    try:
        _atomic_write(STATE_FILE, json.dumps(state).encode(), durable)
    except OSError as err:
        try:
            os.write(2, ("cannot record the state: %s\n" % err).encode())
        except OSError:
            pass


def _atomic_write(name, data, durable):
    """ioutils.AtomicWriteFile for the monitor's own directory: temp file, rename, and with
    durable an fsync of both. The monitor is the only writer there, so a fixed temporary
    name does, and the monitor spares itself the tempfile module (RSS in every monitor)."""
    temporary = "." + name + ".tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, name)
    if durable:
        directory = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _remove_runtime_files():
    """The socket and pid file go with the monitor; state.json and monitor.log stay."""
    for name in (ATTACH_SOCKET, PID_FILE):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
