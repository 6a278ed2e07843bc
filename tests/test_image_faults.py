"""Image state through faults (issue 10, items 2 and 6 for images): kill -9, a full disk, hostile
layer tars.

- kill -9 of the daemon at a seeded random instant of `docker pull`, `load`, `import` and
  `commit` (and `push` and `save`), then a restart. Before each, the tag the operation gives
  names busybox. Afterwards: every image listed before is listed still, with the same tags
  but that one; at most the one new image is added, and it is whole (inspectable, its layers
  recorded with their content, runnable); the operation's tag names either busybox (the old
  state) or the new image (the new state), never an untagged new image (graph/pending-tags
  is empty: the restart settled the journal); nothing is left in <root>/tmp or the layer
  store's tmp/; every driver
  layer on disk belongs to a recorded layer or writable layer; nothing is mounted under the
  root; every tag names a listed image. Then the same operation succeeds.
  `make test` runs one seed per operation; `make soak` runs FAULT_SEEDS (default 12) of each
  and requires kills both before and after the new image existed.
- What a kill can leave on disk, made by hand (staged layers, half-deleted layers, temporary
  files of atomic writes, a read-only layer left mounted), and what the next start-up does.
- A full disk: the daemon runs on a tmpfs of a few MiB, mounted in a private mount namespace
  the daemon runs in (never in the tests' own). `docker pull`, `load`, `commit` and a
  container's json-file log fail with `no space left on device`; the daemon stays up, every
  image that was there is still listed and runs, no half image is listed; once space is freed
  the same operation succeeds.
- Layer tars that write through a symlink they made, or repeat an entry, are refused by
  `docker load`, and nothing of them stays.
"""
import errno
import hashlib
import io
import json
import os
import random
import shlex
import subprocess
import tarfile
import time

import pytest

from drivers import distribution, graphdriver, linux
from drivers import image as image_module
from drivers import layer as layer_module
from drivers import tags as tags_module
from drivers.errdefs import System
from drivers.graph import Graph
from drivers.reference import parse_normalized_named
from drivers.tags import TagStore

from conftest import DOCKER, DaemonProcess, build_busybox_rootfs
from containers_support import busybox_archive, busybox_daemon, retire_daemon, start_busybox_daemon  # noqa: F401
from registry_fixtures import Registry, docker_archive, free_port, layer_tar, skopeo_copy
from test_graph import run_in_private_mount_namespace

SOAK_SEEDS = int(os.environ.get("FAULT_SEEDS", "12"))
MiB = 1 << 20


# ---------------------------------------------------------------------------------------------
# Images to pull, load and import: busybox at the bottom (so they run), random data on top


@pytest.fixture(scope="module")
def busybox_layer(tmp_path_factory):
    rootfs = build_busybox_rootfs(str(tmp_path_factory.mktemp("rootfs") / "rootfs"))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(rootfs)):
            tar.add(os.path.join(rootfs, name), arcname=name)
    return buffer.getvalue()


def random_layer(name, size):
    return layer_tar({"data/%s" % name: os.urandom(size)})


@pytest.fixture(scope="module")
def images(tmp_path_factory, busybox_layer):
    """Archives of runnable images: `load` (busybox + 2 x 2 MB) and `import` (one layer: the
    busybox files and 3 MB of data), and in a registry `pull` (busybox + 2 x 2 MB, other bytes)."""
    directory = tmp_path_factory.mktemp("images")
    made = {"dir": str(directory)}
    made["load"] = str(directory / "load.tar")
    made["load_config"] = docker_archive(made["load"], [busybox_layer, random_layer("a", 2 * MiB),
                                                        random_layer("b", 2 * MiB)], label="load")
    made["tagged_load"] = str(directory / "tagged-load.tar")
    with_repo_tags(made["load"], made["tagged_load"], ["loaded:1"])
    made["import"] = str(directory / "import.tar")
    with tarfile.open(fileobj=io.BytesIO(busybox_layer)) as base, tarfile.open(made["import"], "w") as out:
        for member in base:
            out.addfile(member, base.extractfile(member) if member.isreg() else None)
        info = tarfile.TarInfo("data/blob")
        info.size = 3 * MiB
        out.addfile(info, io.BytesIO(os.urandom(info.size)))
    pull_archive = str(directory / "pull.tar")
    made["pull_config"] = docker_archive(pull_archive, [busybox_layer, random_layer("c", 2 * MiB),
                                                        random_layer("d", 2 * MiB)], label="pull")
    made["fat"] = str(directory / "fat.tar")
    made["fat_config"] = docker_archive(made["fat"], [random_layer("fat", 4 * MiB)], label="fat")
    registry = Registry(str(directory / "registry")).start()
    try:
        skopeo_copy("docker-archive:" + pull_archive, registry, "fault/pull:1")
        skopeo_copy("docker-archive:" + made["fat"], registry, "fault/fat:1")
        made["registry"] = registry
        yield made
    finally:
        registry.stop()


def with_repo_tags(source, target, repo_tags):
    """A copy of docker-archive `source` whose image is saved with `repo_tags`."""
    with tarfile.open(source) as original, tarfile.open(target, "w") as out:
        for member in original:
            data = original.extractfile(member).read()
            if member.name == "manifest.json":
                manifest = json.loads(data)
                manifest[0]["RepoTags"] = repo_tags
                data = json.dumps(manifest).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data))


def image_id(config):
    return "sha256:" + hashlib.sha256(config).hexdigest()


def no_way_out():
    """The daemon's proxy is a closed loopback port: a pull can only reach loopback."""
    closed = "http://127.0.0.1:%d" % free_port()
    env = {name: closed for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")}
    env.update({"NO_PROXY": None, "no_proxy": None})
    return env


# ---------------------------------------------------------------------------------------------
# What the daemon's state must look like after any fault


def image_state(daemon):
    """{image ID: sorted RepoTags} of every image the daemon lists (intermediate ones too)."""
    response = daemon.request("GET", "/images/json?all=1")
    assert response.status == 200, response.body
    return {image["Id"]: sorted(image["RepoTags"] or []) for image in response.json()}


def chain_ids(diff_ids):
    chain = []
    for diff_id in diff_ids:
        chain.append(diff_id if not chain else
                     "sha256:" + hashlib.sha256(("%s %s" % (chain[-1], diff_id)).encode()).hexdigest())
    return chain


def read(path):
    with open(path) as state_file:
        return state_file.read().strip()


def driver_layers(root):
    """The layer directories the graph driver has on disk, by driver ID."""
    if os.path.isdir(os.path.join(root, "overlay")):
        return {name for name in os.listdir(os.path.join(root, "overlay")) if name != "l"}
    return set(os.listdir(os.path.join(root, "vfs", "dir")))


def recorded_driver_ids(layerdb):
    ids = set()
    for kind, names in (("sha256", ("cache-id",)), ("mounts", ("mount-id", "init-id"))):
        for entry in os.listdir(os.path.join(layerdb, kind)):
            for name in names:
                path = os.path.join(layerdb, kind, entry, name)
                if os.path.exists(path):
                    ids.add(read(path))
    return ids


def mounts_under(root):
    prefix = os.path.realpath(root) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        return [line.split()[4] for line in mountinfo if line.split()[4].startswith(prefix)]


def assert_consistent(daemon, before, expected_new=None, moving_tag=None):
    """The invariants of a restarted daemon (see the module docstring); `moving_tag` is the tag
    the operation gives its image, which names either the image it named before or the new
    one. Returns the new image ID (or None)."""
    after = image_state(daemon)
    lost = {image: tags for image, tags in before.items()
            if without(after.get(image), moving_tag) != without(tags, moving_tag)}
    assert not lost, "images or tags lost: %s (now %s)" % (lost, after)
    new = set(after) - set(before)
    assert len(new) <= 1 and (expected_new is None or new <= {expected_new}), new
    if moving_tag is not None:
        named = [image for image, tags in after.items() if moving_tag in tags]
        old = [image for image, tags in before.items() if moving_tag in tags]
        assert named == (list(new) or old), "%s names %s; before %s, new %s" % (moving_tag, named, old, new)
    assert os.listdir(os.path.join(daemon.root, "graph", "pending-tags")) == []
    root = daemon.root
    layerdb = os.path.join(root, "graph", "layerdb")
    for image in after:
        inspected = json.loads(daemon.docker("image", "inspect", image).stdout)[0]
        for chain in chain_ids(inspected["RootFS"].get("Layers") or []):
            layer_dir = os.path.join(layerdb, "sha256", chain[7:])
            assert os.path.isdir(layer_dir), "image %s lists layer %s, not recorded" % (image, chain)
            assert read(os.path.join(layer_dir, "cache-id")) in driver_layers(root)
    for image in new:
        assert daemon.docker("run", "--rm", image, "true", check=False).returncode == 0, daemon.log()[-3000:]
    assert os.listdir(os.path.join(root, "tmp")) == []
    assert os.listdir(os.path.join(layerdb, "tmp")) == []
    assert driver_layers(root) == recorded_driver_ids(layerdb), "driver layers no layer owns"
    assert mounts_under(root) == []
    with open(os.path.join(root, "repositories-" + daemon.docker("info", "-f", "{{.Driver}}").stdout
                           .decode().strip())) as tags:
        for repository in json.load(tags)["Repositories"].values():
            assert set(repository.values()) <= set(after)
    assert not [name for name in os.listdir(root) if name.startswith(".repositories-")]
    return next(iter(new), None)


# ---------------------------------------------------------------------------------------------
# kill -9 during pull, load, import, commit


def without(tags, tag):
    return None if tags is None else [other for other in tags if other != tag]


def cli(daemon, *args):
    """The docker CLI against `daemon`, started in the background."""
    env = dict(os.environ, DOCKER_HOST=daemon.host, DOCKER_CONFIG=os.path.join(daemon.dir, "cli"))
    return subprocess.Popen([DOCKER] + list(args), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


NOTHING_NEW = "no image"   # what push and save make


def operation(name, images):
    """(CLI arguments, the ID of the image it makes if known in advance, or NOTHING_NEW)."""
    registry_host = images["registry"].host
    return {
        "pull": (["pull", "-q", "%s/fault/pull:1" % registry_host], image_id(images["pull_config"])),
        "load": (["load", "-q", "-i", images["tagged_load"]], image_id(images["load_config"])),
        "import": (["import", images["import"], "imported:1"], None),
        "commit": (["commit", "maker", "committed:1"], None),
        "push": (["push", "%s/fault/pushed:1" % registry_host], NOTHING_NEW),
        "save": (["save", "-o", os.path.join(images["dir"], "saved.tar"), "saved:1"], NOTHING_NEW),
    }[name]


def kill_during(daemon, args, delay):
    """Start `docker args`, kill -9 the daemon `delay` seconds later, restart it."""
    client = cli(daemon, *args)
    time.sleep(delay)
    daemon.proc.kill()
    daemon.proc.wait()
    client.communicate(timeout=60)
    daemon.start()


def moving_tag(name, images):
    """The tag the operation moves to the image it makes (None: it makes none)."""
    return {"pull": "%s/fault/pull:1" % images["registry"].host, "load": "loaded:1",
            "import": "imported:1", "commit": "committed:1"}.get(name)


def prepare(daemon, name, images, seed):
    """What the operation works on: for commit, a stopped container with 3 MB of changes; for
    push, busybox tagged for the registry; for save, the three-layer image (whose upper layers
    overlay mounts to read them: a kill leaves the mounts). The tag an operation moves names
    busybox first, so that a kill has an old state to keep."""
    if moving_tag(name, images):
        daemon.docker("tag", "busybox", moving_tag(name, images))
    if name == "push":
        daemon.docker("tag", "busybox", operation(name, images)[0][-1])
    if name == "save":
        daemon.docker("load", "-q", "-i", images["load"])
        daemon.docker("tag", image_id(images["load_config"]), "saved:1")
    if name == "commit":
        daemon.docker("rm", "-f", "maker", check=False)
        daemon.docker("run", "--name", "maker", "busybox", "sh", "-c",
                      "head -c 3000000 /dev/urandom > /blob && echo %d > /seed" % seed)


def duration(daemon, name, images):
    """How long the operation takes here, undisturbed (measured once per daemon)."""
    durations = daemon.__dict__.setdefault("durations", {})
    if name not in durations:
        prepare(daemon, name, images, -1)
        args, expected = operation(name, images)
        started = time.monotonic()
        daemon.docker(*args)
        durations[name] = time.monotonic() - started
        daemon.docker("rmi", args[-1] if expected in (None, NOTHING_NEW) else expected)
    return durations[name]


def fault_round(daemon, name, images, seed, spread):
    """One kill at a seeded instant: `spread` times the operation's duration, at most.
    Returns whether the kill came before the new image existed (None for push)."""
    rng = random.Random("%s-%d" % (name, seed))
    delay = rng.uniform(0, spread) * duration(daemon, name, images)
    prepare(daemon, name, images, seed)
    before = image_state(daemon)
    args, expected = operation(name, images)
    tag = moving_tag(name, images)
    kill_during(daemon, args, delay)
    made = assert_consistent(daemon, before, expected, tag)
    if expected == NOTHING_NEW:
        daemon.docker(*args)
        assert_consistent(daemon, before, expected)
        if name == "save":
            daemon.docker("rmi", "saved:1")
        return None
    killed_before_the_end = made is None
    if killed_before_the_end:   # the old state: the operation must work now
        daemon.docker(*args)
        made = assert_consistent(daemon, before, expected, tag)
    assert made is not None and tag in image_state(daemon)[made]
    daemon.docker("rmi", made)   # the next round makes it again
    daemon.docker("tag", "busybox", tag)
    assert image_state(daemon) == before
    return killed_before_the_end


@pytest.fixture(scope="module")
def fault_daemon(busybox_archive, images):  # noqa: F811
    with busybox_daemon(busybox_archive) as daemon:
        daemon.env.update(no_way_out())
        daemon.stop()
        daemon.start()
        yield daemon


OPERATIONS = ["pull", "load", "import", "commit", "push", "save"]


@pytest.mark.parametrize("name", OPERATIONS)
def test_kill_during_operation_leaves_old_or_new_state(fault_daemon, images, name):
    fault_round(fault_daemon, name, images, seed=0, spread=0.8)


@pytest.mark.soak
@pytest.mark.parametrize("name", OPERATIONS)
def test_kill_during_operation_soak(fault_daemon, images, name):
    outcomes = [fault_round(fault_daemon, name, images, seed, spread=1.3)
                for seed in range(1, SOAK_SEEDS + 1)]
    # Kills must land both inside the operation and after it, or the run proved little.
    assert name in ("push", "save") or len(set(outcomes)) == 2, outcomes


def test_boot_settles_a_journalled_tag_move(fault_daemon):
    """The daemon's own boot applies a tag move a kill left journalled (its tag store is made
    after the graph)."""
    daemon = fault_daemon
    busybox = daemon.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.decode().strip()
    daemon.proc.kill()
    daemon.proc.wait()
    with open(os.path.join(daemon.root, "graph", "pending-tags", "journalled.json"), "w") as journal:
        json.dump({"Image": busybox, "References": ["docker.io/library/journalled:1"]}, journal)
    daemon.start()
    assert "journalled:1" in image_state(daemon)[busybox]
    assert os.listdir(os.path.join(daemon.root, "graph", "pending-tags")) == []
    assert "applied tags journalled:1 of image %s" % busybox in daemon.log()
    daemon.docker("rmi", "journalled:1")


def test_boot_removes_what_a_killed_load_left(fault_daemon):
    """The 13 MB staging directory of issue 10: whatever is in <root>/tmp at boot goes, logged;
    so does a layer staged in the layer store whose driver layer was made but never recorded."""
    daemon = fault_daemon
    staging = os.path.join(daemon.root, "tmp", "docker-import-123456")
    os.makedirs(os.path.join(staging, "sub"))
    with open(os.path.join(staging, "sub", "0"), "wb") as spooled:
        spooled.write(b"x" * 4096)
    busybox = json.loads(daemon.docker("image", "inspect", "busybox").stdout)[0]
    layer_dir = os.path.join(daemon.root, "graph", "layerdb", "sha256", busybox["RootFS"]["Layers"][0][7:])
    orphan_id = "f" * 64
    driver_dir = os.path.join(daemon.root, "overlay" if os.path.isdir(os.path.join(daemon.root, "overlay"))
                              else "vfs/dir", orphan_id)
    os.makedirs(os.path.join(driver_dir, "diff"))
    write_set = os.path.join(daemon.root, "graph", "layerdb", "tmp", "write-set-crashed")
    os.makedirs(write_set)
    with open(os.path.join(write_set, "cache-id"), "w") as cache_id:
        cache_id.write(orphan_id)
    daemon.proc.kill()
    daemon.proc.wait()
    daemon.start()
    assert os.listdir(os.path.join(daemon.root, "tmp")) == []
    assert not os.path.exists(driver_dir) and not os.path.exists(write_set)
    assert os.path.isdir(layer_dir)
    log = daemon.log()
    assert "removing %s, left by an interrupted operation" % staging in log
    assert "removed write-set-crashed" in log and orphan_id in log
    assert daemon.docker("run", "--rm", "busybox", "true").returncode == 0


# ---------------------------------------------------------------------------------------------
# A full disk


class SmallDiskDaemon(DaemonProcess):
    """A daemon whose data root is a tmpfs of SIZE, mounted in a private mount namespace that
    only the daemon lives in (the socket, exec root and key stay outside, on the real disk)."""

    SIZE = "12m"

    def command(self):
        script = "mount -t tmpfs -o size=%s,mode=0700 tmpfs %s && exec %s" % (
            self.SIZE, shlex.quote(self.root), " ".join(shlex.quote(arg) for arg in super().command()))
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]

    def start(self, wait=True):
        os.makedirs(self.root, exist_ok=True)
        return super().start(wait)

    def inside(self, path):
        """`path` as the daemon sees it (its tmpfs is only in its mount namespace)."""
        return "/proc/%d/root%s" % (self.proc.pid, path)

    def free(self):
        stats = os.statvfs(self.inside(self.root))
        return stats.f_bavail * stats.f_frsize


@pytest.fixture(scope="module")
def small_disk(busybox_archive, images):  # noqa: F811
    daemon = start_busybox_daemon(busybox_archive, process_class=SmallDiskDaemon, env=no_way_out())
    try:
        yield daemon
    finally:
        retire_daemon(daemon)


@pytest.fixture
def fill(small_disk):
    """fill(leave): a container whose file leaves only `leave` bytes of the disk free; removing
    the container (`docker rm ballast`) gives them back."""
    def make(leave):
        size = small_disk.free() - leave
        small_disk.docker("run", "--name", "ballast", "busybox", "sh", "-c",
                          "head -c %d /dev/zero > /ballast" % size)
    yield make
    small_disk.docker("rm", "-f", "ballast", check=False)


def assert_full_disk_failure(daemon, result, before):
    """The operation failed with Go's words, the daemon serves, nothing that was there is lost,
    no half image is listed, and the failure left nothing in the daemon's tmp."""
    output = result.stdout + result.stderr
    assert result.returncode != 0 and b"no space left on device" in output, output
    assert daemon.request("GET", "/_ping").status == 200
    assert image_state(daemon) == before
    assert daemon.docker("run", "--rm", "busybox", "true").returncode == 0
    assert os.listdir(daemon.inside(os.path.join(daemon.root, "tmp"))) == []
    assert os.listdir(daemon.inside(os.path.join(daemon.root, "graph", "layerdb", "tmp"))) == []


@pytest.mark.parametrize("name, free", [("load", 5), ("pull", 5), ("load", 2), ("pull", 2)],
                         ids=["load-layer", "pull-layer", "load-upload", "pull-download"])
def test_full_disk_during_load_and_pull(small_disk, images, fill, name, free):
    """A 4 MB layer needs 8 MB (the download or the spooled upload, then the layer): with 5 MB
    free the layer does not fit, with 2 MB the upload or download does not."""
    args = {"load": ["load", "-i", images["fat"]],
            "pull": ["pull", "%s/fault/fat:1" % images["registry"].host]}[name]
    fill(free * MiB)
    before = image_state(small_disk)
    assert_full_disk_failure(small_disk, small_disk.docker(*args, check=False), before)
    small_disk.docker("rm", "ballast")
    small_disk.docker(*args)
    assert image_id(images["fat_config"]) in image_state(small_disk)
    small_disk.docker("rmi", image_id(images["fat_config"]))


def test_full_disk_during_commit(small_disk, fill):
    """A 2.5 MB change needs 5 MB to commit (its tar, and the layer): 2.5 free."""
    fill(5 * MiB)
    small_disk.docker("run", "--name", "maker", "busybox", "sh", "-c", "head -c 2500000 /dev/urandom > /blob")
    try:
        before = image_state(small_disk)
        result = small_disk.docker("commit", "maker", "made:1", check=False)
        assert_full_disk_failure(small_disk, result, before)
        small_disk.docker("rm", "ballast")
        small_disk.docker("commit", "maker", "made:1")
        assert small_disk.docker("run", "--rm", "made:1", "wc", "-c", "/blob").stdout.split()[0] == b"2500000"
        small_disk.docker("rmi", "made:1")
    finally:
        small_disk.docker("rm", "-f", "maker", check=False)


def test_full_disk_during_json_file_logging(small_disk, fill):
    """A container that writes more than the disk holds: the lines that do not fit are dropped
    (never half a record) and the daemon serves on. As dockerd's copier does, the monitor logs
    "Error writing log message" (to monitor.log) and leaves the container's state alone:
    State.Error stays empty. Once space is back the lines are logged again, and the next run
    of failures is logged again."""
    fill(1 * MiB)
    line = "0123456789" * 10
    small_disk.docker("run", "-d", "--name", "chatty", "busybox", "sh", "-c",
                      "while :; do yes %s | head -n 2000; sleep 0.1; done" % line)
    container_id = small_disk.docker("inspect", "-f", "{{.Id}}", "chatty").stdout.decode().strip()
    state_dir = os.path.join(small_disk.exec_root, "execdriver", "native", container_id)
    noted = 'Error writing log message: driver=json-file error="no space left on device"'
    try:
        wait_for_log_notes(state_dir, noted, 1)
        inspected = json.loads(small_disk.docker("inspect", "chatty").stdout)[0]["State"]
        assert inspected["Running"] and inspected["Error"] == "", inspected
        assert json.loads(read(os.path.join(state_dir, "state.json")))["error"] == ""
        assert small_disk.request("GET", "/_ping").status == 200
        logged = small_disk.docker("logs", "chatty").stdout.decode().splitlines()
        assert 1000 < len(logged) and set(logged) == {line}
        small_disk.docker("rm", "ballast")    # logging works again, until the disk is full again
        wait_for_log_notes(state_dir, noted, 2)
        assert len(small_disk.docker("logs", "chatty").stdout.decode().splitlines()) > len(logged) + 1000
        small_disk.docker("rm", "-f", "chatty")
        small_disk.docker("run", "--name", "chatty", "busybox", "seq", "1", "20000")
        logged = small_disk.docker("logs", "chatty").stdout.decode().split()
        assert logged == [str(n) for n in range(1, 20001)]
    finally:
        small_disk.docker("rm", "-f", "chatty", check=False)


def wait_for_log_notes(state_dir, noted, count):
    """Wait until monitor.log in `state_dir` holds `count` lines `noted`."""
    path = os.path.join(state_dir, "monitor.log")
    deadline = time.monotonic() + 30
    while (read(path) if os.path.exists(path) else "").count(noted) < count:
        assert time.monotonic() < deadline, "not noted %d times: %s" % (count, read(path) if os.path.exists(path) else "")
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# Hostile layer tars, through docker load


def hostile_archive(path, entries):
    """A docker-archive of one image whose layer is the tar of `entries` (TarInfo, bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return docker_archive(path, [buffer.getvalue()], label="hostile")


def member(name, data=None, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mode = kind, linkname, len(data or b""), 0o755
    return info, data


@pytest.mark.parametrize("entries, message", [
    ([member("a", kind=tarfile.SYMTYPE, linkname="/etc"), member("a/passwd", b"root::0:0::/:/bin/sh\n")],
     'through the symlink "a"'),
    ([member("d", kind=tarfile.DIRTYPE), member("d/up", kind=tarfile.SYMTYPE, linkname=".."),
      member("d/up/d/up/x", b"x")], 'through the symlink "d/up"'),
    ([member("f", b"first"), member("f", b"second")], '"f" appears twice'),
], ids=["through-absolute-symlink", "through-dotdot-chain", "repeated-entry"])
def test_load_refuses_hostile_layer(make_daemon, tmp_path, entries, message):
    daemon = make_daemon()
    archive = str(tmp_path / "hostile.tar")
    hostile_archive(archive, entries)
    result = daemon.docker("load", "-i", archive, check=False)
    assert result.returncode != 0 and message.encode() in result.stderr, result.stderr
    assert image_state(daemon) == {}
    assert driver_layers(daemon.root) == set()
    assert os.listdir(os.path.join(daemon.root, "graph", "layerdb", "sha256")) == []


# ---------------------------------------------------------------------------------------------
# What a kill can leave on disk, made by hand, and what the next start-up does with it


class Store(object):
    """A graph (vfs) and tag store under `root`, opened anew by reopen() as a boot would."""

    def __init__(self, root, driver="vfs"):
        self.root = str(root)
        self.driver_name = driver
        self.reopen()

    def reopen(self):
        self.driver = graphdriver.new(self.root, self.driver_name)
        self.tags = TagStore(os.path.join(self.root, "repositories-" + self.driver_name))
        self.graph = Graph(self.root, self.driver, self.tags, image_in_use=lambda image_id: None,
                           image_running=lambda image_id: None)
        return self

    def path(self, *parts):
        return os.path.join(self.root, "graph", *parts)

    def import_image(self, tag):
        return self.graph.import_image(io.BytesIO(layer_tar({"f": os.urandom(64)})),
                                       parse_normalized_named(tag))


def test_start_up_finishes_interrupted_layer_operations(tmp_path, caplog):
    store = Store(tmp_path)
    kept = store.import_image("kept:1")
    doomed = store.import_image("doomed:1")
    doomed_layer = store.graph.store.get(doomed).top_chain_id
    doomed_cache_id = store.graph.layers.get(doomed_layer).cache_id
    # Killed while registering a layer: staged with its cache-id, driver layer half made.
    store.driver.create("a" * 64)
    os.makedirs(store.path("layerdb", "tmp", "write-set-1"))
    with open(store.path("layerdb", "tmp", "write-set-1", "cache-id"), "w") as cache_id:
        cache_id.write("a" * 64)
    # Killed while creating a container's writable layer.
    store.driver.create("b" * 64)
    store.driver.create("b" * 64 + "-init")
    os.makedirs(store.path("layerdb", "tmp", "write-set-2"))
    for name, text in (("mount-id", "b" * 64), ("init-id", "b" * 64 + "-init")):
        with open(store.path("layerdb", "tmp", "write-set-2", name), "w") as state:
            state.write(text)
    # Killed while deleting `doomed`: content gone, layer metadata moved out, driver layer left.
    os.unlink(store.path("imagedb", "content", "sha256", doomed[7:]))
    os.rename(store.path("layerdb", "sha256", doomed_layer[7:]), store.path("layerdb", "tmp", "remove-x"))
    # Killed inside atomic writes.
    v2metadata = store.path("distribution", "v2metadata-by-diffid", "sha256")
    os.makedirs(v2metadata)
    for leftover in (store.path("imagedb", "content", "sha256", ".%s.tmp1" % kept[7:]),
                     os.path.join(store.root, ".repositories-vfs.tmp2"),
                     os.path.join(v2metadata, ".%s.tmp3" % ("e" * 64))):
        with open(leftover, "wb") as partial:
            partial.write(b"{\"half")
    with caplog.at_level("INFO"):
        store.reopen()
        distribution.V2MetadataService(store.path("distribution"))
    assert os.listdir(v2metadata) == []
    assert [image.id for image in store.graph.store.all_images()] == [kept]
    assert store.tags.get(parse_normalized_named("doomed:1")) == doomed   # a tag of nothing: not listed
    assert set(os.listdir(store.driver.home + "/dir")) == {store.graph.layers.get(
        store.graph.store.get(kept).top_chain_id).cache_id}
    assert doomed_cache_id not in os.listdir(store.driver.home + "/dir")
    assert os.listdir(store.path("layerdb", "tmp")) == []
    content = os.listdir(store.path("imagedb", "content", "sha256"))
    assert not [name for name in content if name.startswith(".")]
    assert not [name for name in os.listdir(store.root) if name.startswith(".repositories")]
    for repaired in ("write-set-1", "write-set-2", "remove-x", "a" * 64, "b" * 64, doomed_cache_id,
                     ".%s.tmp1" % kept[7:], ".repositories-vfs.tmp2", ".%s.tmp3" % ("e" * 64)):
        assert repaired in caplog.text


def test_start_up_drops_a_layer_whose_content_is_gone(tmp_path, caplog):
    store = Store(tmp_path)
    image = store.import_image("gone:1")
    layer = store.graph.layers.get(store.graph.store.get(image).top_chain_id)
    store.driver.remove(layer.cache_id)
    with caplog.at_level("INFO"):
        store.reopen()
    assert store.graph.store.all_images() == [] and store.graph.layers.all_layers() == []
    assert "removing layer %s: its vfs layer %s is gone" % (layer.chain_id, layer.cache_id) in caplog.text


def test_start_up_drops_a_layer_whose_metadata_is_incomplete(tmp_path, caplog):
    store = Store(tmp_path)
    image = store.import_image("half:1")
    layer = store.graph.layers.get(store.graph.store.get(image).top_chain_id)
    os.unlink(store.path("layerdb", "sha256", layer.chain_id[7:], "diff"))
    with caplog.at_level("INFO"):
        store.reopen()
    assert store.graph.store.all_images() == [] and store.graph.layers.all_layers() == []
    assert os.listdir(store.path("layerdb", "sha256")) == [] and os.listdir(store.path("layerdb", "tmp")) == []
    assert not store.driver.exists(layer.cache_id)
    assert "removing layer %s: its metadata is incomplete" % layer.chain_id in caplog.text


def test_start_up_drops_image_metadata_without_content(tmp_path, caplog):
    store = Store(tmp_path)
    orphan = store.path("imagedb", "metadata", "sha256", "c" * 64)
    os.makedirs(orphan)
    with open(os.path.join(orphan, "parent"), "w") as parent:
        parent.write("sha256:" + "d" * 64)
    with caplog.at_level("INFO"):
        store.reopen()
    assert not os.path.exists(orphan)
    assert "removing metadata of image sha256:%s" % ("c" * 64) in caplog.text


def test_a_committed_image_is_never_without_its_parent(tmp_path, monkeypatch):
    """The parent link is written before the content that makes the image exist."""
    store = Store(tmp_path)
    parent = store.import_image("parent:1")
    layer = store.graph.store.get(parent).top_chain_id
    config = json.loads(store.graph.store.get(parent).raw)
    config["comment"] = "child"
    written = []
    real_write = image_module.atomic_write_file
    for module in (image_module, layer_module):   # the content, and the metadata's write_state
        monkeypatch.setattr(module, "atomic_write_file",
                            lambda path, data, mode: (written.append(os.path.basename(path)),
                                                      real_write(path, data, mode)))
    store.graph.layers.hold(layer)
    child = store.graph.create_image(json.dumps(config).encode(), parent)
    assert written[-1] == child[7:] and "parent" in written[:-1]
    assert store.reopen().graph.store.get(child).parent == parent


def test_tag_store_changes_memory_only_once_the_disk_has(tmp_path, monkeypatch):
    tags = TagStore(str(tmp_path / "repositories"))
    ref = parse_normalized_named("busybox:1")
    tags.add(ref, "sha256:" + "1" * 64)

    def full_disk(path, data, mode):
        raise OSError(errno.ENOSPC, "no space left on device")
    monkeypatch.setattr(tags_module, "atomic_write_file", full_disk)
    for change in (lambda: tags.add(ref, "sha256:" + "2" * 64, force=True),
                   lambda: tags.add(parse_normalized_named("other:1"), "sha256:" + "2" * 64),
                   lambda: tags.delete(ref)):
        with pytest.raises(System, match="failed to write the tag store .*: no space left on device"):
            change()
    assert tags.get(ref) == "sha256:" + "1" * 64
    assert tags.repositories() == [("docker.io/library/busybox", {"1": "sha256:" + "1" * 64})]


def test_start_up_unmounts_read_only_layers_a_killed_daemon_left_mounted(tmp_path):
    """A push or a save reads an overlay layer through a mount; killed then, the mount stays."""
    def kill_while_mounted():
        store = Store(tmp_path, "overlay")
        layers = [layer_tar({"a": b"a"}), layer_tar({"b": b"b"})]
        base = store.graph.register_layer(None, io.BytesIO(layers[0]))
        top = store.graph.register_layer(base, io.BytesIO(layers[1]))
        store.graph.create_image(json.dumps({"os": "linux", "rootfs": {"type": "layers", "diff_ids": [
            "sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]}}).encode())
        merged = store.driver.get(store.graph.layers.get(top).cache_id)
        mounted_before = linux.is_mountpoint(merged)
        store.reopen()
        return {"before": mounted_before, "after": linux.is_mountpoint(merged),
                "layers": len(store.graph.layers.all_layers())}
    assert run_in_private_mount_namespace(kill_while_mounted) == {"before": True, "after": False, "layers": 2}


def new_image_config(store, base, comment):
    """The config bytes of an image with `base`'s layer and another comment (its layer held)."""
    config = json.loads(store.graph.store.get(base).raw)
    config["comment"] = comment
    store.graph.layers.hold(store.graph.store.get(base).top_chain_id)
    return json.dumps(config).encode()


def leave_tag_journal(store, new_id, references):
    """What a kill between journalling a tag move and finishing it leaves in graph/pending-tags
    (and a journal file the kill caught half written)."""
    with open(store.path("pending-tags", new_id[7:19] + "-0a0b0c0d0e0f.json"), "w") as journal:
        json.dump({"Image": new_id, "References": references}, journal)
    with open(store.path("pending-tags", ".x.json.half"), "w") as half:
        half.write('{"Image": "sha256:')


@pytest.mark.parametrize("committed", [True, False], ids=["image-committed", "image-not-committed"])
def test_start_up_settles_a_tag_move_a_kill_interrupted(tmp_path, caplog, committed):
    """Image present: its journalled tags are applied (the new state); absent: the journal is
    dropped and the tag still names the old image (the old state). Never an untagged image."""
    store = Store(tmp_path)
    old = store.import_image("app:1")
    config = new_image_config(store, old, "new")
    new_id = image_id(config)
    if committed:
        assert store.graph.create_image(config) == new_id
    digest = "sha256:" + "e" * 64
    leave_tag_journal(store, new_id, ["docker.io/library/app:1", "docker.io/library/app@" + digest])
    with caplog.at_level("INFO"):
        store.reopen()
    assert os.listdir(store.path("pending-tags")) == []
    tag, by_digest = parse_normalized_named("app:1"), parse_normalized_named("app@" + digest)
    if committed:
        assert store.tags.get(tag) == new_id and store.tags.get(by_digest) == new_id
        assert "applied tags app:1, app@%s of image %s" % (digest, new_id) in caplog.text
    else:
        assert store.tags.get(tag) == old and store.tags.get(by_digest) is None
        assert store.graph.store.get(new_id) is None
        assert "dropped tags app:1, app@%s of image %s" % (digest, new_id) in caplog.text


def test_a_tag_move_is_journalled_before_its_image_exists(tmp_path, monkeypatch):
    """import (as load, pull and commit) journals the tag before the image store has the image,
    and removes the journal once the tag store has the tag."""
    store = Store(tmp_path)
    seen = []
    real_create = store.graph.store.create

    def create(raw, parent_id=""):
        for name in os.listdir(store.path("pending-tags")):
            with open(store.path("pending-tags", name)) as journal:
                seen.append(json.load(journal))
        return real_create(raw, parent_id)
    monkeypatch.setattr(store.graph.store, "create", create)
    new_id = store.import_image("app:2")
    assert seen == [{"Image": new_id, "References": ["docker.io/library/app:2"]}]
    assert os.listdir(store.path("pending-tags")) == []
