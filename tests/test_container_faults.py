"""Fault injection for containers: `kill -9` of the daemon at seeded instants of create, start,
rm, rename and a storm of parallel `docker run -d`, a monitor killed, torn and corrupt
config files; after each restart the daemon's state must be whole (drivers/reconcile.py).

After every restart the invariants hold: every listed container has its directory and
config, every name in linkgraph.db is a listed container's, nothing the client was told
exists is lost, nothing it was told is gone came back; and once `rm -f` has removed
everything, no monitor or container process, mount, cgroup, state directory or container
directory of this daemon is left. The short slice runs in `make test`; the long one (many
seeds, and a daemon with networking in its own namespace, checked for veths and iptables
rules) is behind `make soak`.
"""
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import DaemonProcess
from containers_support import (busybox_archive, busybox_daemon, inspect, out,  # noqa: F401
                                wait_for, wait_until_exited)
from drivers import cgroups

MARK = "PYD_FAULT_TEST"
OPERATIONS = ("create", "start", "rm", "rename", "storm")
SHORT_SEEDS = {"storm": (1, 2), "create": (3,), "start": (4,), "rm": (5,), "rename": (6,)}
SOAK_SEEDS = range(100, 120)
STORM_SIZE = 10
RENAMES = 6
# How long after its start each operation is still under way here (seconds).
FAULT_WINDOW = {"storm": 0.5, "create": 0.7, "start": 0.25, "rm": 0.25, "rename": 0.6}


# -- the daemon under test -------------------------------------------------------------------

class MarkedDaemon(DaemonProcess):
    """A daemon whose every process (fork server, monitors, containers before their execve)
    carries MARK=<its directory> in its environment, so that a scan of /proc finds them all."""

    def __init__(self, directory, flags=(), env=None, netns=False):
        super().__init__(directory, flags, env=dict(env or {}, **{MARK: directory}), netns=netns)

    def crash(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def daemon(busybox_archive):  # noqa: F811
    with busybox_daemon(busybox_archive, process_class=MarkedDaemon) as process:
        yield process


def docker(daemon, *args):
    """The CLI, whose failures the caller looks at (a kill -9 makes many)."""
    return daemon.docker(*args, check=False)


# -- the operations a kill -9 interrupts ---------------------------------------------------

class Ledger(object):
    """What the clients were told: containers that exist (id -> the names they may have: a
    rename cut short leaves either), that run, and that are gone; a removal cut short may leave
    its container or not (`maybe`)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.exists = {}
        self.running = set()
        self.gone = set()
        self.maybe = set()

    def made(self, container_id, *names, running=False):
        with self.lock:
            self.exists[container_id] = set(names)
            self.running |= {container_id} if running else set()

    def removing(self, container_id):
        with self.lock:
            self.exists.pop(container_id, None)
            self.maybe.add(container_id)

    def removed(self, container_id):
        with self.lock:
            self.maybe.discard(container_id)
            self.gone.add(container_id)


def parallel(count, work):
    threads = [threading.Thread(target=work, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    return threads


def prepare(daemon, operation, ledger):
    """Containers the operation works on, made before the fault (none for create and storm)."""
    if operation in ("create", "storm"):
        return []
    ids = []
    for index in range(4):
        command = ("run", "-d") if operation in ("rm", "rename") else ("create",)
        result = docker(daemon, *command, "--network", "none", "--name", "p%d" % index,
                        "busybox", "top")
        assert result.returncode == 0, result.stderr
        ids.append(out(result))
        ledger.made(ids[-1], "/p%d" % index, running=operation != "start")
    return ids


def launch(daemon, operation, ids, ledger):
    """Start the operation in threads; they run into the kill."""
    def storm(index):
        record(docker(daemon, "run", "-d", "--network", "none", "--name", "s%d" % index,
                      "busybox", "top"), "/s%d" % index, running=True)

    def create(index):
        for round_ in range(3):
            name = "/c%d-%d" % (index, round_)
            record(docker(daemon, "create", "--network", "none", "--name", name[1:],
                          "-v", "/data", "busybox", "top"), name)

    def record(result, name, running=False):
        if result.returncode == 0:
            ledger.made(out(result), name, running=running)

    def start(index):
        if docker(daemon, "start", ids[index]).returncode == 0:
            ledger.made(ids[index], "/p%d" % index, running=True)

    def rm(index):
        ledger.removing(ids[index])
        if docker(daemon, "rm", "-f", "-v", ids[index]).returncode == 0:
            ledger.removed(ids[index])

    def rename(index):
        current = "/p%d" % index
        for round_ in range(RENAMES):
            new = "/%s%d" % ("ab"[round_ % 2], index)
            ledger.made(ids[index], current, new, running=True)
            if docker(daemon, "rename", ids[index], new[1:]).returncode != 0:
                return
            ledger.made(ids[index], new, running=True)
            current = new

    work = {"storm": storm, "create": create, "start": start, "rm": rm, "rename": rename}
    return parallel(STORM_SIZE if operation in ("storm", "create") else len(ids), work[operation])


def inject_fault(daemon, operation, seed):
    """Run the operation, kill -9 the daemon at a seeded instant of it, restart the daemon.
    Returns the Ledger of what clients had been told."""
    ledger = Ledger()
    ids = prepare(daemon, operation, ledger)
    delay = random.Random(seed).uniform(0.0, FAULT_WINDOW[operation])
    threads = launch(daemon, operation, ids, ledger)
    time.sleep(delay)
    daemon.crash()
    for thread in threads:
        thread.join(60)
    daemon.start()
    return ledger


# -- the invariants --------------------------------------------------------------------------

def listed(daemon):
    response = daemon.request("GET", "/containers/json?all=1")
    assert response.status == 200, response.body
    return {container["Id"]: container for container in response.json()}


def linkgraph_names(daemon):
    database = sqlite3.connect("file:%s?mode=ro" % os.path.join(daemon.root, "linkgraph.db"),
                               uri=True)
    try:
        return database.execute("SELECT '/' || name, entity_id FROM edge "
                                "WHERE parent_id = '0'").fetchall()
    finally:
        database.close()


# The names each operation uses, and whether it makes containers (a create whose answer a
# client never got may have been made, or not).
USED_NAMES = {"storm": ["/s%d" % i for i in range(STORM_SIZE)],
              "networked": ["/n%d" % i for i in range(STORM_SIZE)],
              "create": ["/c%d-0" % i for i in range(STORM_SIZE)],
              "start": ["/p%d" % i for i in range(4)],
              "rm": ["/p%d" % i for i in range(4)],
              "rename": ["/%s%d" % (prefix, i) for i in range(4) for prefix in "pab"]}


MAKERS = ("storm", "networked", "create")


def check_consistent(daemon, operation, ledger):
    """After a restart: containers whole, names owned, nothing promised lost or revived."""
    containers = listed(daemon)
    for container_id in containers:
        directory = os.path.join(daemon.root, "containers", container_id)
        with open(os.path.join(directory, "config.v2.json")) as config:
            assert json.load(config)["ID"] == container_id
        assert os.path.isfile(os.path.join(directory, "hostconfig.json"))
    for name, entity in linkgraph_names(daemon):
        assert entity in containers and containers[entity]["Names"] == [name], \
            (name, entity, daemon.log()[-3000:])
    assert sorted(os.listdir(os.path.join(daemon.root, "containers"))) == sorted(containers)
    for container_id, names in ledger.exists.items():
        assert container_id in containers, (container_id, names, daemon.log()[-3000:])
        assert containers[container_id]["Names"][0] in names, (names, containers[container_id])
    for container_id in ledger.running & set(ledger.exists):
        assert containers[container_id]["State"] == "running", containers[container_id]
    assert not ledger.gone & set(containers)
    if operation not in MAKERS:
        assert set(containers) <= set(ledger.exists) | ledger.maybe
    for name in USED_NAMES[operation]:
        owner = [i for i, c in containers.items() if c["Names"] == [name]]
        result = docker(daemon, "create", "--network", "none", "--name", name[1:], "busybox")
        assert (result.returncode == 0) == (not owner), (name, result.stderr)
        if result.returncode == 0:
            docker(daemon, "rm", out(result))


def daemon_processes(daemon):
    """Live processes of this daemon other than itself and its fork server: monitors and
    containers (by the mark in their environment, or their cgroup)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == daemon.proc.pid:
            continue
        try:
            with open("/proc/%s/stat" % entry) as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open("/proc/%s/environ" % entry, "rb") as environ:
                marked = ("%s=%s" % (MARK, daemon.dir)).encode() in environ.read().split(b"\0")
            with open("/proc/%s/cgroup" % entry) as cgroup:
                marked = marked or daemon.cgroup_parent in cgroup.read()
        except OSError:
            continue
        if marked and fields[0] != "Z" and int(fields[1]) != daemon.proc.pid:
            found.append(int(entry))
    return found


def cgroup_leftovers(daemon):
    hierarchies = cgroups.find_hierarchies()
    mounts = [(mountpoint, hierarchies.own.get(name, "/")) for name, mountpoint in hierarchies.v1.items()]
    if hierarchies.unified:
        mounts.append((hierarchies.unified, hierarchies.own.get("", "/")))
    leftovers = []
    for mountpoint, own in mounts:
        parent = os.path.join(mountpoint, own.lstrip("/"), daemon.cgroup_parent)
        if os.path.isdir(parent):
            leftovers += [os.path.join(parent, child) for child in os.listdir(parent)
                          if os.path.isdir(os.path.join(parent, child))]
    return leftovers


def mounts_under(directory):
    with open("/proc/self/mountinfo") as mountinfo:
        return [line.split()[4] for line in mountinfo if line.split()[4].startswith(directory + "/")]


def exec_root_leftovers(daemon):
    return [os.path.join(top, name) for sub in ("execdriver/native", "exec")
            for top in [os.path.join(daemon.exec_root, sub)] if os.path.isdir(top)
            for name in os.listdir(top)]


def check_nothing_left(daemon):
    """rm -f of everything: no process, mount, cgroup, state or container directory stays."""
    for container_id in listed(daemon):
        result = docker(daemon, "rm", "-f", "-v", container_id)
        assert result.returncode == 0, result.stderr
    wait_for(lambda: not daemon_processes(daemon), timeout=10, what="no process of the daemon")
    assert mounts_under(daemon.dir) == []
    assert cgroup_leftovers(daemon) == []
    assert exec_root_leftovers(daemon) == []
    assert os.listdir(os.path.join(daemon.root, "containers")) == []
    assert linkgraph_names(daemon) == []
    assert daemon.request("GET", "/volumes").json()["Volumes"] in (None, [])


# -- the short slice (make test) and the soak (make soak) ------------------------------------

@pytest.mark.parametrize("operation,seed", [(operation, seed) for operation in OPERATIONS
                                            for seed in SHORT_SEEDS[operation]])
def test_kill_during_operation(daemon, operation, seed):
    ledger = inject_fault(daemon, operation, seed)
    check_consistent(daemon, operation, ledger)
    check_nothing_left(daemon)


@pytest.mark.soak
@pytest.mark.parametrize("seed", SOAK_SEEDS)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_kill_during_operation_soak(daemon, operation, seed):
    ledger = inject_fault(daemon, operation, seed)
    check_consistent(daemon, operation, ledger)
    check_nothing_left(daemon)


def host_veths(daemon):
    result = subprocess.run(daemon.in_netns("ip", "-o", "link", "show", "type", "veth"),
                            stdout=subprocess.PIPE, check=True)
    return result.stdout.decode().splitlines()


def container_rules(daemon):
    """iptables rules that name a container address (172.17.0.x but the gateway)."""
    result = subprocess.run(daemon.in_netns("iptables-save"), stdout=subprocess.PIPE, check=True)
    return [line for line in result.stdout.decode().splitlines()
            if "172.17.0." in line and "172.17.0.1/" not in line and "172.17.0.0/" not in line]


@pytest.mark.soak
def test_kill_during_networked_storm_soak(busybox_archive):  # noqa: F811
    """The storm with networking on (default bridge, published ports): once everything is
    removed, no veth and no iptables rule of a container is left."""
    with busybox_daemon(busybox_archive, process_class=MarkedDaemon, netns=True) as networked:
        for seed in SOAK_SEEDS:
            threads = parallel(STORM_SIZE, lambda index: docker(
                networked, "run", "-d", "-p", "%d:80" % (8000 + index), "--name", "n%d" % index,
                "busybox", "top"))
            time.sleep(random.Random(seed).uniform(0.0, 2.0))
            networked.crash()
            for thread in threads:
                thread.join(60)
            networked.start()
            check_consistent(networked, "networked", Ledger())
            check_nothing_left(networked)
            assert host_veths(networked) == []
            assert container_rules(networked) == []


# -- single faults ---------------------------------------------------------------------------

def test_killed_monitor_leaves_an_exited_container_that_restarts(daemon):
    container_id = out(docker(daemon, "run", "-d", "--network", "none", "busybox", "top"))
    state_dir = os.path.join(daemon.exec_root, "execdriver", "native", container_id)
    with open(os.path.join(state_dir, "monitor.pid")) as pid_file:
        os.kill(int(pid_file.read().split()[0]), signal.SIGKILL)
    state = wait_until_exited(daemon, container_id)
    assert state["ExitCode"] == 255 and not state["Running"]
    assert docker(daemon, "start", container_id).returncode == 0
    assert inspect(daemon, container_id)["State"]["Running"]
    check_nothing_left(daemon)


def test_start_cut_short_is_undone_at_boot(daemon):
    """A start the daemon died in before it recorded the container running: its monitor and
    process are killed, cgroups, mount and state directory removed, the container is the
    created one it was."""
    container_id = out(docker(daemon, "run", "-d", "--network", "none", "busybox", "top"))
    state_dir = os.path.join(daemon.exec_root, "execdriver", "native", container_id)
    daemon.crash()
    config_path = os.path.join(daemon.root, "containers", container_id, "config.v2.json")
    with open(config_path) as config_file:
        config = json.load(config_file)
    config["State"].update(running=False, pid=0, has_been_started=False)
    with open(config_path, "w") as config_file:
        json.dump(config, config_file)
    with open(os.path.join(state_dir, "starting.json"), "w") as starting:
        json.dump(config["NetworkSettings"], starting)
    assert daemon_processes(daemon)
    daemon.start()
    assert inspect(daemon, container_id)["State"]["Status"] == "created"
    wait_for(lambda: not daemon_processes(daemon), timeout=10, what="the leftovers killed")
    assert not os.path.exists(state_dir)
    assert mounts_under(daemon.dir) == [] and cgroup_leftovers(daemon) == []
    assert "Killed the monitor and process of start cut short of container %s" % container_id[:12] \
        in daemon.log()
    assert docker(daemon, "start", container_id).returncode == 0
    check_nothing_left(daemon)


def test_leftovers_of_creates_and_names_are_removed_at_boot(daemon):
    kept = out(docker(daemon, "create", "--network", "none", "--name", "kept", "busybox"))
    daemon.crash()
    repository = os.path.join(daemon.root, "containers")
    torn = "ab" * 32
    os.makedirs(os.path.join(repository, torn))                 # the old layout's empty dir
    os.makedirs(os.path.join(repository, ".create-" + "cd" * 32))
    os.makedirs(os.path.join(repository, ".remove-" + "ef" * 32))
    database = sqlite3.connect(os.path.join(daemon.root, "linkgraph.db"))
    with database:
        database.execute("INSERT INTO entity (id) VALUES (?)", (torn,))
        database.execute("INSERT INTO edge (entity_id, parent_id, name) VALUES (?, '0', 'ghost')",
                         (torn,))
        database.execute("INSERT INTO edge (entity_id, parent_id, name) VALUES (?, '0', 'alias')",
                         (kept,))
    database.close()
    daemon.start()
    assert os.listdir(repository) == [kept]
    assert linkgraph_names(daemon) == [("/kept", kept)]
    assert "Removing name /ghost reserved by missing container %s" % torn[:12] in daemon.log()
    assert "Removing name /alias reserved by renamed container %s" % kept[:12] in daemon.log()
    assert docker(daemon, "create", "--name", "ghost", "busybox").returncode == 0
    check_nothing_left(daemon)


@pytest.mark.parametrize("when", ["rm", "boot"])
def test_exec_of_a_killed_daemon_goes_with_its_container(daemon, when):
    """kill -9 of the daemon during a long `docker exec`: its state directory names its
    container, so the exec's monitor, process and directory go when the container is removed
    (rm) or, if the container is not running by its config, at boot."""
    container_id = out(docker(daemon, "run", "-d", "--network", "none", "busybox", "top"))
    client = threading.Thread(target=docker, args=(daemon, "exec", container_id, "sleep", "1000"))
    client.start()
    exec_root = os.path.join(daemon.exec_root, "exec")

    def exec_running():
        names = os.listdir(exec_root) if os.path.isdir(exec_root) else []
        states = [os.path.join(exec_root, name, "state.json") for name in names]
        return names if any(os.path.exists(path) and '"running"' in open(path).read()
                            for path in states) else None
    wait_for(exec_running, timeout=20, what="the exec running")
    exec_id = exec_running()[0]
    with open(os.path.join(exec_root, exec_id, "container")) as record:
        assert record.read() == container_id
    daemon.crash()
    client.join(60)
    if when == "boot":
        config_path = os.path.join(daemon.root, "containers", container_id, "config.v2.json")
        with open(config_path) as config_file:
            config = json.load(config_file)
        config["State"].update(running=False, pid=0)
        with open(config_path, "w") as config_file:
            json.dump(config, config_file)
    daemon.start()
    if when == "rm":
        assert os.listdir(exec_root) == [exec_id]   # a live exec of a running container stays
        assert docker(daemon, "rm", "-f", container_id).returncode == 0
        whose = "removed container"
    else:
        whose = "stopped container"
    wait_for(lambda: not daemon_processes(daemon), timeout=10, what="no exec monitor or process")
    assert os.listdir(exec_root) == []
    assert "Removing the state directory of exec %s of %s %s" % (exec_id[:12], whose, container_id[:12]) \
        in daemon.log()
    check_nothing_left(daemon)


@pytest.mark.parametrize("damage", [b"", b"{\"ID\": ", b"{}"])
def test_unreadable_config_is_reported_and_skipped(daemon, damage):
    """A truncated, a torn and a hollow config.v2.json: that container is reported and
    skipped (its directory kept), the others are served."""
    broken = out(docker(daemon, "create", "--network", "none", "--name", "broken", "busybox"))
    fine = out(docker(daemon, "create", "--network", "none", "--name", "fine", "busybox"))
    daemon.stop()
    directory = os.path.join(daemon.root, "containers", broken)
    with open(os.path.join(directory, "config.v2.json"), "wb") as config:
        config.write(damage)
    daemon.start()
    assert list(listed(daemon)) == [fine]
    assert "Failed to load container %s" % broken in daemon.log()
    assert os.path.isdir(directory)
    assert docker(daemon, "inspect", "broken").returncode != 0
    assert docker(daemon, "rm", "-f", fine).returncode == 0
    daemon.stop()
    shutil.rmtree(directory)  # the administrator's call; the daemon never deletes it
    daemon.start()
    check_nothing_left(daemon)


# -- -w through a symlink of the image -------------------------------------------------------

def test_workdir_below_an_absolute_symlink_is_made_inside_the_root(daemon):
    """-w /wd/x where the image has /wd -> /data (not there yet): dockerd follows the link
    inside the root and makes /data/x."""
    assert docker(daemon, "run", "--name", "linked", "--network", "none", "busybox",
                  "ln", "-s", "/data", "/wd").returncode == 0
    assert docker(daemon, "commit", "linked", "linked:1").returncode == 0
    result = docker(daemon, "run", "--rm", "--network", "none", "-w", "/wd/x", "linked:1",
                    "sh", "-c", "pwd; test -d /data/x && echo made")
    assert result.returncode == 0, result.stderr
    assert out(result).split() == ["/data/x", "made"]
    docker(daemon, "rm", "-f", "linked")
    docker(daemon, "rmi", "linked:1")
