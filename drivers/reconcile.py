"""Boot-time reconciliation: what a daemon killed at any instant left behind, repaired.

A `kill -9` may fall between any two writes of the daemon. So each operation on a container
writes in an order that makes one step its commit point: before it the old state stands,
after it the new one; whatever the steps before the commit point made (a directory, a name, a
mount, a cgroup, a process) is found here at the next boot and undone, and whatever an
operation past its commit point still owed is finished. restore() in pydockerd.py calls these
functions in the order they are numbered below. Every repair is logged: WARN for what a
crash left, ERROR for what cannot be repaired and is left alone.

What is on disk (under the daemon root, and the exec root):

    containers/<id>/              a container; its config.v2.json is its record
    containers/.create-<id>/      a create in progress, renamed to <id> as its last step
    containers/.remove-<id>/      a removal's last step: the directory renamed, then deleted
    linkgraph.db                  names and links; a name is the container's whose config
                                  carries it
    execdriver/native/<id>/       (exec root) the state directory of the container's last
                                  start: monitor.pid and state.json (drivers/monitor.py),
                                  cgroups.json (written before the cgroups are made) and, while
                                  the start is in progress, starting.json (the NetworkSettings it
                                  has taken, written before any interface, rule or process exists)
    exec/<exec id>/               (exec root) the state directory of a `docker exec`: its
                                  monitor's files, and `container`, the ID of the container it
                                  runs in (written before the monitor exists)

The write orders (pydockerd.py), commit point in capitals:

    create  the name and links in linkgraph.db; .create-<id>/ with hostconfig.json and
            config.v2.json (its planned mount points name the anonymous volumes to come); the
            writable layer; the volumes; config.v2.json again; RENAME TO <id>
    start   the root mounted; the state directory made afresh; the network allocated and
            starting.json written; cgroups.json, then the cgroups; the monitor and the process
            (held before execve); interfaces, rules, DNS; execve; CONFIG.V2.JSON SAYS RUNNING;
            starting.json removed
    rm      CONFIG.V2.JSON SAYS REMOVING (and whether with volumes): from here the removal is
            finished, at the latest by the next boot; the process killed; the writable layer,
            cgroups, state directory, the exec state directories that name it (their monitors
            and processes killed: an earlier daemon's execs are nobody's to end), volume
            references and names; the directory renamed to .remove-<id>, then deleted
    exec    exec/<exec id>/ made and CONTAINER WRITTEN; the monitor and the process
    rename  the new name reserved; CONFIG.V2.JSON CARRIES IT; the old name released

What boot repairs, in order:

 1. scan_repository: a .remove-<id>/ is deleted. A <id>/ without config.v2.json (a create
    cut short in the layout before .create- directories) joins the .create- ones for 5. A
    config.v2.json that cannot be read is reported and that container skipped, never deleted.
 2. reconcile_names: every container gets the name its config carries; every other name
    (reserved by a create cut short, the old one of a rename, a missing or unreadable
    container's) is released, and the links of containers that no longer exist are removed.
 3. reap_state_dirs, before running containers are re-adopted: in the state directory of a
    container that is not running by its config (a start cut short, or an ordinary stopped
    one), or that is gone, the monitor and the process still alive are killed (pid and start
    time checked), then every process left in the recorded cgroups, and the cgroups removed.
    A start cut short (starting.json still there) gives back its network through the network
    controller's restore path (veths, iptables rules, addresses, host ports) and loses its
    state directory, as does a container that is gone. A running container's leftover
    starting.json (the crash fell between its commit and the removal) is removed.
 4. reap_exec_dirs: an exec of a container that is gone or not running by its config (or
    whose `container` was never written) has its monitor and process killed and its state
    directory deleted; so has any exec whose monitor is gone (a restarted daemon knows no exec
    of an earlier one). A live exec of a running container ends by itself, and goes with its
    container's removal at the latest.
 5. undo_creates, once volumes know their users: every create cut short loses its writable
    layer, the anonymous volumes it planned and its directory.
 6. unmount_strays: every mount below the graph driver's home that is not the root of a
    re-adopted running container (a start cut short, a create's -init layer, a diff or an
    export in progress) is unmounted; unless an unreadable container may still run. Volume
    mounts are VolumeService.restore's.
 7. (pydockerd) a container whose config says removing is removed now.
"""
import collections
import json
import logging
import os
import shutil
import signal

from drivers import cgroups, errdefs, linux, monitor
from drivers.ioutils import atomic_write_file

log = logging.getLogger("pydockerd")

CONFIG_FILE = "config.v2.json"
CREATE_PREFIX = ".create-"
REMOVE_PREFIX = ".remove-"
CGROUPS_FILE = "cgroups.json"
STARTING_FILE = "starting.json"
EXEC_CONTAINER_FILE = "container"

# What reading a torn or hand-edited config may raise.
UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError)

Found = collections.namedtuple("Found", "containers creating unreadable")
Found.__doc__ = """scan_repository's result: the containers loaded; (id, directory) of every
create cut short; the IDs of containers whose config cannot be read."""


def scan_repository(repository, from_disk):
    """1. Load every container under `repository` with from_disk(directory); sort out the
    rest (see the module docstring). Returns a Found."""
    containers, creating, unreadable = [], [], set()
    for name in sorted(os.listdir(repository)):
        path = os.path.join(repository, name)
        if name.startswith(REMOVE_PREFIX):
            log.warning("Finishing the removal of container %s", name[len(REMOVE_PREFIX):])
            shutil.rmtree(path, ignore_errors=True)
        elif name.startswith(CREATE_PREFIX):
            creating.append((name[len(CREATE_PREFIX):], path))
        elif not os.path.lexists(os.path.join(path, CONFIG_FILE)):
            creating.append((name, path))
        else:
            try:
                containers.append(from_disk(path))
            except UNREADABLE as err:
                log.error("Failed to load container %s: %s (skipped, its directory is kept)",
                          name, err)
                unreadable.add(name)
    return Found(containers, creating, unreadable)


def reconcile_names(linkgraph, found):
    """2. linkgraph.db made to agree with the containers' configs.

    linkgraph is the daemon's LinkGraph: get(name), set(name, id), delete(name), names() ->
    [(name, id)], entities() -> [id], purge(id)."""
    by_id = {container.id: container for container in found.containers}
    for container in sorted(found.containers, key=lambda c: c.created):
        owner = linkgraph.get(container.name)
        if owner == container.id:
            continue
        if owner in by_id and by_id[owner].name == container.name:
            log.error("Container %s is named %s, like container %s: it keeps no name",
                      container.id[:12], container.name, owner[:12])
            continue
        if owner is not None:
            linkgraph.delete(container.name)
        linkgraph.set(container.name, container.id)
        log.info("Registered name %s of container %s", container.name, container.id[:12])
    for name, entity in linkgraph.names():
        container = by_id.get(entity)
        if container is None or container.name != name:
            if container is None and entity not in found.unreadable:
                linkgraph.purge(entity)  # the links of a missing container go with its name
            else:
                linkgraph.delete(name)
            log.warning("Removing name %s reserved by %s container %s", name,
                        _describe(entity, container, found.unreadable), entity[:12])
    for entity in linkgraph.entities():
        if entity not in by_id and entity not in found.unreadable:
            linkgraph.purge(entity)
            log.warning("Removing the links of missing container %s", entity[:12])


def _describe(entity, container, unreadable):
    if container is not None:
        return "renamed"
    return "unreadable" if entity in unreadable else "missing"


def reap_state_dirs(state_root, found, load_cgroups, give_back_network):
    """3. The state directories of containers that are not running, or gone.

    load_cgroups(paths) -> a cgroups.Manager (cgroups.Driver.load); give_back_network(container,
    settings) hands a start's recorded NetworkSettings to the network controller's forget()."""
    by_id = {container.id: container for container in found.containers}
    for name in sorted(os.listdir(state_root)) if os.path.isdir(state_root) else []:
        container, path = by_id.get(name), os.path.join(state_root, name)
        starting = read_json(os.path.join(path, STARTING_FILE))
        if name in found.unreadable:
            continue
        if container is not None and container.running:
            if starting is not None:
                os.unlink(os.path.join(path, STARTING_FILE))
            continue
        what = "missing container" if container is None else \
            "start cut short of container" if starting is not None else "stopped container"
        if monitor.kill_leftovers(path):
            log.warning("Killed the monitor and process of %s %s", what, name[:12])
        _remove_cgroups(path, load_cgroups, what, name)
        if starting is not None and container is not None:
            _give_back(container, starting, give_back_network)
        if starting is not None or container is None:
            log.warning("Removing the state directory of %s %s", what, name[:12])
            shutil.rmtree(path, ignore_errors=True)


def _remove_cgroups(state_dir, load_cgroups, what, name):
    paths = read_json(os.path.join(state_dir, CGROUPS_FILE))
    if not paths:
        return
    manager = load_cgroups(paths)
    if not any(os.path.isdir(directory) for directory in manager.directories):
        return
    log.warning("Removing the cgroups of %s %s", what, name[:12])
    try:
        for pid in manager.pids():
            _kill(pid)
        manager.destroy(timeout=5.0)
    except cgroups.CgroupError as err:
        log.error("Could not remove the cgroups of container %s: %s", name[:12], err)


def _kill(pid):
    """A process inside the container's cgroup: that membership identifies it."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _give_back(container, settings, give_back_network):
    log.warning("Giving back the network of the start cut short of container %s",
                container.id[:12])
    try:
        give_back_network(container, settings)
    except (OSError, errdefs.DockerError) as err:
        log.error("Could not give back the network of container %s: %s", container.id[:12], err)


def record_exec_container(state_dir, container_id):
    """The `container` of an exec state directory, before its monitor is spawned."""
    atomic_write_file(os.path.join(state_dir, EXEC_CONTAINER_FILE), container_id.encode(), 0o600)


def _exec_dirs(exec_state_root):
    """[(exec ID, its state directory, its container's ID or None)]."""
    found = []
    for name in sorted(os.listdir(exec_state_root)) if os.path.isdir(exec_state_root) else []:
        path = os.path.join(exec_state_root, name)
        try:
            with open(os.path.join(path, EXEC_CONTAINER_FILE)) as record:
                container_id = record.read().strip()
        except OSError:
            container_id = None
        found.append((name, path, container_id))
    return found


def reap_exec_dirs(exec_state_root, found):
    """4. Exec state directories of containers gone or not running, and of finished execs."""
    states = {container.id: container.running for container in found.containers}
    for name, path, container_id in _exec_dirs(exec_state_root):
        running = states.get(container_id, False)
        if container_id in found.unreadable or (running and monitor.alive(path)):
            continue
        if not running:
            _reap_exec(name, path, "of %s container %s" % (
                "missing" if container_id not in states else "stopped", (container_id or "?")[:12]))
        else:
            log.info("Removing the state directory of finished exec %s", name[:12])
            shutil.rmtree(path, ignore_errors=True)


def remove_exec_dirs(exec_state_root, container_id):
    """rm: the exec state directories of container `container_id`, their monitors and
    processes killed (those of a daemon's own execs have ended with the container)."""
    for name, path, owner in _exec_dirs(exec_state_root):
        if owner == container_id:
            _reap_exec(name, path, "of removed container %s" % container_id[:12])


def _reap_exec(name, path, whose):
    if monitor.kill_leftovers(path):
        log.warning("Killed the monitor and process of exec %s %s", name[:12], whose)
    log.warning("Removing the state directory of exec %s %s", name[:12], whose)
    shutil.rmtree(path, ignore_errors=True)


def undo_creates(creating, from_disk, release_layer, remove_volumes):
    """5. Every create cut short: its writable layer (release_layer(id), NotFound if none),
    its anonymous volumes (remove_volumes(container), from the planned mount points in its
    config, when it got that far) and its directory."""
    for container_id, path in creating:
        log.warning("Removing container %s: its create was cut short", container_id[:12])
        try:
            release_layer(container_id)
        except errdefs.NotFound:
            pass
        except (OSError, errdefs.DockerError) as err:
            log.error("Could not remove the writable layer of %s: %s", container_id[:12], err)
            continue
        try:
            remove_volumes(from_disk(path))
        except UNREADABLE:
            pass  # no config yet: nothing was made after it
        shutil.rmtree(path, ignore_errors=True)


def unmount_strays(home, keep, state_root, found):
    """6. Unmount, deepest first, every mount below `home` (the graph driver's) that is not
    one of `keep` (the roots of running containers) or below one. While a container whose
    config cannot be read may still run (its monitor lives), which mount is its root is
    unknown: then nothing is unmounted."""
    running = [name for name in sorted(found.unreadable)
               if monitor.alive(os.path.join(state_root, name))]
    if running:
        log.error("Leaving every mount below %s: unreadable container %s may still run", home,
                  ", ".join(name[:12] for name in running))
        return
    prefix = os.path.realpath(home) + "/"
    kept = [os.path.realpath(path) for path in keep]
    strays = [target for target in mount_points()
              if target.startswith(prefix)
              and not any(target == path or target.startswith(path + "/") for path in kept)]
    for target in sorted(set(strays), key=len, reverse=True):
        log.warning("Unmounting %s: no container owns it", target)
        try:
            linux.umount(target, linux.MNT_DETACH)
        except OSError as err:
            log.error("Could not unmount %s: %s", target, err)


def mount_points():
    """Every mount point of the daemon's mount namespace (/proc/self/mountinfo)."""
    with open("/proc/self/mountinfo") as mountinfo:
        return [linux.unescape_mount_path(line.split()[4]) for line in mountinfo]


def read_json(path):
    """A small state file's JSON, None if it is missing or torn."""
    try:
        with open(path) as source:
            return json.load(source)
    except (OSError, ValueError):
        return None
