"""The graph driver registry and what every driver shares: Docker's daemon/graphdriver package.

A graph driver keeps layers on disk. Each layer has an ID and at most one parent; `get(id)` hands
back a directory that shows the layer stacked on all its ancestors, which is what a container sees
as its root filesystem. How the stacking is done is the driver's business: `vfs` copies the parent,
`overlay` and `aufs` ask the kernel to union the layer directories at mount time.

This module holds what is common to all of them, as Docker's graphdriver package does:

- `new()` (graphdriver.New): choose the driver, by name, by the state a previous daemon left
  under the root, or by walking Docker 1.8's priority list until one works on this machine;
- the errors a driver uses to say "not here" (ErrNotSupported, ErrPrerequisites,
  ErrIncompatibleFS), which make the priority walk move on instead of failing the boot;
- `ProtoDriver` and `NaiveDiffDriver`: the driver interface, and the differ for drivers that can
  only show a layer as a whole tree (it compares the layer's tree with its parent's);
- `RefCounter`: reference-counted mounts, so two users of a layer share one mount;
- small helpers the drivers share: --storage-opt parsing, /proc/filesystems with one
  `modprobe` try, the backing filesystem's name for `docker info`.
"""
import contextlib
import importlib
import logging
import os
import stat
import subprocess
import threading

from drivers import archive, linux

log = logging.getLogger("pydockerd.graphdriver")

# Docker 1.8's order of preference when no driver is named and no prior state is found.
PRIORITY = ["aufs", "btrfs", "zfs", "devicemapper", "overlay", "vfs"]

# The drivers pydockerd builds in, by name -> module. Docker registers each driver from its
# package's init(); importing the module when it is first asked for does the same job here and
# keeps the import graph acyclic (every driver module builds on this one).
BUILTIN = {"aufs": "drivers.aufs", "overlay": "drivers.overlay", "vfs": "drivers.vfs"}

# Filesystem magic numbers (linux/magic.h) -> the names Docker shows as "Backing Filesystem".
FS_NAMES = {
    0x61756673: "aufs",
    0x9123683E: "btrfs",
    0xF15F: "ecryptfs",
    0xEF53: "extfs",
    0xF2F52010: "f2fs",
    0x6969: "nfs",
    0x794C7630: "overlayfs",
    0x858458F6: "ramfs",
    0x73717368: "squashfs",
    0x01021994: "tmpfs",
    0x58465342: "xfs",
    0x2FC12FC1: "zfs",
}


class GraphDriverError(Exception):
    """A graph driver failed; the message says which driver and why."""


class _DriverRefusal(GraphDriverError):
    """A driver cannot run here. The message is Docker's sentinel text followed by the reason."""

    summary = ""

    def __init__(self, reason=""):
        super().__init__("%s: %s" % (self.summary, reason) if reason else self.summary)


class ErrNotSupported(_DriverRefusal):
    """The kernel or this program lacks the driver (Docker's graphdriver.ErrNotSupported)."""

    summary = "driver not supported"


class ErrPrerequisites(_DriverRefusal):
    """Something the driver needs is missing (Docker's graphdriver.ErrPrerequisites)."""

    summary = "prerequisites for driver not satisfied (wrong filesystem?)"


class ErrIncompatibleFS(_DriverRefusal):
    """The root sits on a filesystem the driver cannot stack on (graphdriver.ErrIncompatibleFS)."""

    summary = "backing file system is unsupported for this graph driver"


def new(root, name=None, options=()):
    """graphdriver.New: the storage driver for the daemon root `root`.

    `name` comes from `-s` or $DOCKER_DRIVER (the caller decides which wins); `options` are the
    --storage-opt "key=value" strings. Without a name, state left under the root by a previous
    daemon decides, because switching drivers would make every image "disappear"; with no such
    state, the first driver of PRIORITY that works on this machine is used.
    """
    try:
        if name:
            log.debug("[graphdriver] trying provided driver %r", name)
            return get_driver(name, root, options)
        return _prior_driver(root, options) or _first_supported_driver(root, options)
    except (GraphDriverError, OSError) as err:
        raise GraphDriverError("error initializing graphdriver: %s" % err) from err


def get_driver(name, root, options=()):
    """graphdriver.GetDriver: initialise driver `name` with its home at <root>/<name>."""
    if name in PRIORITY and name not in BUILTIN:
        raise ErrNotSupported("%s is not implemented by pydockerd" % name)
    if name not in BUILTIN:
        raise ErrNotSupported("%s is not a storage driver pydockerd knows (%s)"
                              % (name, ", ".join(sorted(BUILTIN))))
    module = importlib.import_module(BUILTIN[name])
    return module.init(os.path.join(root, name), list(options))


def scan_prior_drivers(root):
    """scanPriorDrivers: the drivers, in priority order, that left layers under `root`.

    Empty directories do not count: they hold no images to lose. Docker also ignores `vfs` here,
    because Docker up to 1.6 kept volumes in a vfs directory that every root therefore had;
    pydockerd keeps volumes elsewhere, so a vfs directory really means vfs layers.
    """
    found = []
    for name in PRIORITY:
        home = os.path.join(root, name)
        if os.path.isdir(home) and os.listdir(home):
            found.append(name)
    return found


def _prior_driver(root, options):
    """The driver whose state is under `root`, or None when there is none."""
    prior = scan_prior_drivers(root)
    if not prior:
        return None
    if len(prior) > 1:
        raise GraphDriverError(
            "%s contains several valid graphdrivers: %s; Please cleanup or explicitly choose "
            "storage driver (-s <DRIVER>)" % (root, ", ".join(prior)))
    name = prior[0]
    try:
        driver = get_driver(name, root, options)
    except GraphDriverError as err:
        # Unlike the priority walk, this is fatal: the images are stored with this driver.
        log.error("[graphdriver] prior storage driver %s failed: %s", name, err)
        raise
    log.info("[graphdriver] using prior storage driver: %s", name)
    return driver


def _first_supported_driver(root, options):
    """Walk PRIORITY; a driver that refuses this machine is skipped with its reason."""
    for name in PRIORITY:
        try:
            driver = get_driver(name, root, options)
        except (ErrNotSupported, ErrPrerequisites, ErrIncompatibleFS) as err:
            log.info("[graphdriver] skipping %s: %s", name, err)
            continue
        log.info("[graphdriver] using storage driver: %s", name)
        return driver
    raise GraphDriverError("No supported storage backend found")


def parse_options(driver_name, options, known):
    """--storage-opt strings -> {key: value}; a key `driver_name` does not know is an error.

    Keys are case-insensitive, as in Docker's per-driver parseOptions.
    """
    parsed = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            raise GraphDriverError("Unable to parse key/value option: %s" % option)
        key = key.strip().lower()
        if key not in known:
            raise GraphDriverError("%s: unknown option %s" % (driver_name, key))
        parsed[key] = value.strip()
    return parsed


def parse_bool(key, value):
    """An option's boolean value, spelled as Go's strconv.ParseBool accepts it."""
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise GraphDriverError("invalid boolean value %r for option %s" % (value, key))


def supports_filesystem(fstype):
    """Whether the kernel knows `fstype`, after one `modprobe` try (supportsOverlay/supportsAufs).

    The module may simply not be loaded yet; modprobe failing, or missing altogether (as in
    minimal hosts and containers), only means the answer stays no.
    """
    if _kernel_lists_filesystem(fstype):
        return True
    try:
        subprocess.run(["modprobe", fstype], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return _kernel_lists_filesystem(fstype)


def _kernel_lists_filesystem(fstype):
    with open("/proc/filesystems") as listing:
        return any(line.split()[-1] == fstype for line in listing if line.strip())


def backing_fs(path):
    """The name Docker gives the filesystem holding `path` ("extfs", "xfs", ...)."""
    return FS_NAMES.get(linux.statfs_type(path), "<unknown>")


def check_id(layer_id):
    """Refuse IDs that would name something other than one entry of the driver's home."""
    if not layer_id or layer_id in (".", "..") or "/" in layer_id or "\0" in layer_id:
        raise GraphDriverError("invalid layer id %r" % (layer_id,))
    return layer_id


class RefCounter:
    """Reference-counted mounts (Docker's graphdriver.RefCounter), keyed by mount point.

    The first user mounts, the last one unmounts. A mount point seen for the first time that is
    already mounted -- left by an earlier daemon whose containers outlived it -- is adopted
    instead of being mounted a second time on top. One lock serialises the mounts: a second
    get() must not return before the first one's mount exists.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = {}

    def increment(self, mountpoint, mount):
        """Count one more user; call `mount()` if this is the first and nothing is mounted."""
        with self._lock:
            count = self._counts.get(mountpoint, 0)
            if count == 0 and not linux.is_mountpoint(mountpoint):
                mount()
            self._counts[mountpoint] = count + 1
            return count + 1

    def decrement(self, mountpoint):
        """Count one user less; unmount when none is left. Returns the users left."""
        with self._lock:
            count = self._counts.get(mountpoint, 0) - 1
            if count > 0:
                self._counts[mountpoint] = count
                return count
            self._forget(mountpoint)
            return 0

    def release(self, mountpoint):
        """Drop every user of `mountpoint` and unmount it (the layer is being removed)."""
        with self._lock:
            self._forget(mountpoint)

    def release_all(self):
        """Unmount everything counted here (driver Cleanup at daemon shutdown)."""
        with self._lock:
            for mountpoint in list(self._counts):
                self._forget(mountpoint)

    def _forget(self, mountpoint):
        self._counts.pop(mountpoint, None)
        if linux.is_mountpoint(mountpoint):
            linux.umount(mountpoint)


class ProtoDriver:
    """What every driver shares (Docker's ProtoDriver interface).

    A driver has `name`, `home` (<root>/<name>) and: create(id, parent=None, mount_label=""),
    create_read_write(id, parent=None) for a container's writable layer, remove(id),
    get(id, mount_label="") -> directory of the layer stacked on its parents (reference
    counted), put(id), exists(id), status() -> [[key, value], ...] for `docker info`,
    get_metadata(id) -> dict for inspect's GraphDriver.Data, and cleanup() -> unmount what
    the driver mounted (call it at shutdown, unless running containers must keep their roots).
    """

    name = ""

    def __init__(self, home):
        self.home = home

    def __str__(self):
        return self.name

    def status(self):
        return []

    def get_metadata(self, layer_id):
        return {}

    def cleanup(self):
        pass

    def require(self, layer_id):
        """Fail with the driver's name and the ID when layer `layer_id` does not exist."""
        if not self.exists(layer_id):
            raise GraphDriverError("%s: no such layer: %s" % (self.name, layer_id))

    @contextlib.contextmanager
    def mounted(self, layer_id):
        """get() for the length of a `with` block, put() after it."""
        path = self.get(layer_id)
        try:
            yield path
        finally:
            self.put(layer_id)

    def mounted_parent(self, parent):
        """mounted(parent), or None for a layer without a parent."""
        return self.mounted(parent) if parent else contextlib.nullcontext(None)


class NaiveDiffDriver(ProtoDriver):
    """The differ for drivers that can only show a layer as a whole tree (Docker's
    NaiveDiffDriver, graphdriver/fsdiff.go).

    It get()s the layer and its parent and compares the two trees file by file, so it works for
    any driver, at the price of reading both trees. Layer tars use the standard `.wh.` whiteouts,
    which apply_diff turns into deletions in the layer's own directory.
    """

    def diff(self, layer_id, parent, out):
        """Write the tar of what `layer_id` changed on top of `parent` (all of it without one)."""
        with self.mounted(layer_id) as layer_fs, self.mounted_parent(parent) as parent_fs:
            if parent_fs is None:
                archive.write_tar(layer_fs, out)
            else:
                archive.export_changes(layer_fs, archive.changes(layer_fs, parent_fs), out)

    def changes(self, layer_id, parent):
        """The paths `layer_id` added, modified or deleted relative to `parent`."""
        with self.mounted(layer_id) as layer_fs, self.mounted_parent(parent) as parent_fs:
            return archive.changes(layer_fs, parent_fs)

    def apply_diff(self, layer_id, parent, stream):
        """Unpack the layer tar `stream` into `layer_id`.

        Returns archive's (diff_id, size) tuple: `.size` is the unpacked bytes, Docker's
        ApplyDiff result; `.diff_id` is the sha256 of the uncompressed tar, so the caller can
        verify the layer against the image config without reading the stream twice.
        """
        with self.mounted(layer_id) as layer_fs:
            return archive.apply_layer(layer_fs, stream, whiteout_mode="delete")

    def diff_size(self, layer_id, parent):
        """Bytes of the files `layer_id` added or modified relative to `parent`."""
        with self.mounted(layer_id) as layer_fs, self.mounted_parent(parent) as parent_fs:
            return changes_size(layer_fs, archive.changes(layer_fs, parent_fs))


def changes_size(root, changes):
    """archive.ChangesSize: bytes of the non-directories added or modified; a file with several
    hard links counts once."""
    paths = (os.path.join(root, change.path.lstrip("/")) for change in changes
             if change.kind != archive.CHANGE_DELETE)
    return _size_of(paths)


def directory_size(root):
    """directory.Size: bytes of every non-directory under `root`, hard links counted once."""
    return _size_of(os.path.join(top, name)
                    for top, dirs, files in os.walk(root) for name in dirs + files)


def _size_of(paths):
    seen_inodes = set()
    total = 0
    for path in paths:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(info.st_mode):
            continue
        if info.st_nlink > 1:
            if (info.st_dev, info.st_ino) in seen_inodes:
                continue
            seen_inodes.add((info.st_dev, info.st_ino))
        total += info.st_size
    return total
