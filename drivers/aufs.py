"""The aufs graph driver (Docker's daemon/graphdriver/aufs), first in Docker 1.8's priority list.

aufs is an out-of-tree union filesystem: mainline kernels never merged it, and the machines
pydockerd is developed and tested on do not have it. So what matters in practice, and what the
tests cover, is detection: init() looks in /proc/filesystems, tries `modprobe aufs` once, and
otherwise refuses with ErrNotSupported so the priority walk moves on to the next driver.

On a kernel that has aufs, the driver works as Docker 1.8's did, but that path is untested here:

    <home>/diff/<id>     the layer's own files, deletions kept as `.wh.` files (aufs reads them
                         as they are, so layer tars unpack in archive's 'aufs' whiteout mode)
    <home>/layers/<id>   the parents' IDs, nearest first, one per line
    <home>/mnt/<id>      where get() mounts the branches: the layer rw, its parents ro+wh

Diffs, changes and sizes come from NaiveDiffDriver (tree comparison through the mount).
"""
import os
import shutil

from drivers import archive, graphdriver, linux

OPTIONS = frozenset()

# aufs cannot stack branches that live on these (Docker 1.8's incompatibleFsMagic).
INCOMPATIBLE_FS = frozenset(["aufs", "btrfs"])

# Added to the first mount's branch list; the xino file keeps inode numbers stable.
MOUNT_OPTIONS = "dio,xino=/dev/shm/aufs.xino"


def init(home, options=()):
    """aufs.Init: refuse this machine with the reason, or return the driver."""
    if not graphdriver.supports_filesystem("aufs"):
        raise graphdriver.ErrNotSupported(
            "aufs not supported: 'aufs' is not in /proc/filesystems and `modprobe aufs` did "
            "not load it")
    graphdriver.parse_options("aufs", options, OPTIONS)
    os.makedirs(home, 0o700, exist_ok=True)
    backing = graphdriver.backing_fs(home)
    if backing in INCOMPATIBLE_FS:
        raise graphdriver.ErrIncompatibleFS("'aufs' is not supported over %s" % backing)
    for sub in ("mnt", "diff", "layers"):
        os.makedirs(os.path.join(home, sub), 0o700, exist_ok=True)
    return Driver(home, backing)


class Driver(graphdriver.NaiveDiffDriver):
    """Layers as aufs branches."""

    name = "aufs"

    def __init__(self, home, backing):
        super().__init__(home)
        self.backing_fs = backing
        self._mounts = graphdriver.RefCounter()

    def _path(self, kind, layer_id):
        return os.path.join(self.home, kind, graphdriver.check_id(layer_id))

    def status(self):
        return [["Root Dir", self.home], ["Backing Filesystem", self.backing_fs],
                ["Dirs", str(len(os.listdir(os.path.join(self.home, "diff"))))]]

    def exists(self, layer_id):
        return os.path.isdir(self._path("diff", layer_id))

    def create(self, layer_id, parent=None, mount_label=""):
        if parent:
            self.require(parent)
        parents = [parent] + self._parents(parent) if parent else []
        os.mkdir(self._path("diff", layer_id), 0o755)
        os.mkdir(self._path("mnt", layer_id), 0o755)
        with open(self._path("layers", layer_id), "w") as layers:
            layers.write("".join(p + "\n" for p in parents))

    def create_read_write(self, layer_id, parent=None):
        """A container's layer: the same as any layer, which all mount writable."""
        self.create(layer_id, parent)

    def remove(self, layer_id):
        self.require(layer_id)
        self._mounts.release(self._path("mnt", layer_id))
        for kind in ("mnt", "diff"):
            shutil.rmtree(self._path(kind, layer_id))
        os.unlink(self._path("layers", layer_id))

    def get(self, layer_id, mount_label=""):
        self.require(layer_id)
        parents = self._parents(layer_id)
        if not parents:
            return self._path("diff", layer_id)
        target = self._path("mnt", layer_id)
        read_only = [self._path("diff", p) for p in parents]
        self._mounts.increment(
            target, lambda: mount_branches(self._path("diff", layer_id), read_only, target))
        return target

    def put(self, layer_id):
        if self._parents(layer_id):
            self._mounts.decrement(self._path("mnt", layer_id))

    def cleanup(self):
        self._mounts.release_all()

    def apply_diff(self, layer_id, parent, stream):
        """Unpack into the layer's branch, `.wh.` files kept as aufs reads them.
        Returns archive's (diff_id, size), as NaiveDiffDriver.apply_diff does."""
        self.require(layer_id)
        return archive.apply_layer(self._path("diff", layer_id), stream, whiteout_mode="aufs")

    def _parents(self, layer_id):
        try:
            with open(self._path("layers", layer_id)) as layers:
                return [line.strip() for line in layers if line.strip()]
        except FileNotFoundError:
            return []


def mount_branches(read_write, read_only, target):
    """aufsMount: the first mount takes as many branches as fit in one page of options; the
    rest are appended one remount at a time."""
    room = os.sysconf("SC_PAGESIZE") - len(MOUNT_OPTIONS) - 2
    data = "br:%s=rw" % read_write
    remaining = list(read_only)
    while remaining and len(data) + len(":%s=ro+wh" % remaining[0]) < room:
        data += ":%s=ro+wh" % remaining.pop(0)
    linux.mount("none", target, "aufs", 0, "%s,%s" % (data, MOUNT_OPTIONS))
    try:
        for branch in remaining:
            linux.mount("none", target, "aufs", linux.MS_REMOUNT, "append:%s=ro+wh" % branch)
    except OSError:
        linux.umount(target)
        raise
