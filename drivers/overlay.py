"""The overlay graph driver: the kernel's overlay filesystem stacks the layers at mount time
(Docker's daemon/graphdriver/overlay, with the on-disk layout of its successor overlay2).

Every layer directory holds only that layer's own files; nothing is copied. A layer with
parents is shown by one overlay mount: its parents' directories are the read-only `lowerdir`s,
its own directory the `upperdir` that takes the writes, `workdir` the kernel's scratch space.
Deletions are stored the way overlayfs reads them: a deleted file is a 0/0 character device,
a directory replaced wholesale has the xattr trusted.overlay.opaque=y (archive's 'overlay'
whiteout mode converts to and from the `.wh.` entries of layer tars).

Layout under <home>:

    <id>/diff      the layer's own files (upperdir when the layer is mounted)
    <id>/link      the layer's short name
    <id>/lower     the parents' short names, nearest first: "l/ABC...:l/DEF..."
    <id>/work      overlay's workdir (layers with a parent)
    <id>/merged    where get() mounts the stacked view (layers with a parent)
    l/<short>      symlink to ../<id>/diff

Why the short names: the kernel copies mount options from one page (4096 bytes), so a stack of
~100 layers named by 64-character IDs and absolute paths would not fit. overlay2 solves this
with 26-character links under l/ and, when needed, by mounting from inside <home> so the paths
can be relative. pydockerd always mounts that way: a helper thread unshares its working
directory (CLONE_FS), changes into <home> and mounts, leaving the daemon's cwd untouched.

Every layer with a parent mounts writable, as in Docker: the graph writes a container's -init
layer (hosts, resolv.conf mount points) through get() before stacking the container on it.
A layer without a parent has nothing to stack: get() returns its diff directory.
SELinux mount labels are accepted and ignored.
"""
import base64
import contextlib
import os
import shutil
import tempfile
import threading

from drivers import archive, graphdriver, linux

LINK_DIR = "l"
MAX_DEPTH = 128  # overlay2's limit: 128 lowers of "l/" + 26 characters still fit in one page
OPTIONS = frozenset(["overlay.override_kernel_check"])
MIN_KERNEL = (4, 0, 0)  # the first kernel that takes several lowerdirs in one mount

# Filesystems overlay cannot stack on (overlay2's list): they lack what overlay needs from an
# upper layer (xattrs, whiteouts, RENAME_WHITEOUT) or are overlays themselves.
INCOMPATIBLE_FS = frozenset(["aufs", "ecryptfs", "nfs", "overlayfs", "zfs"])


def init(home, options=()):
    """overlay.Init: refuse this machine with the reason, or return the driver."""
    opts = graphdriver.parse_options("overlay", options, OPTIONS)
    override_kernel_check = graphdriver.parse_bool(
        "overlay.override_kernel_check", opts.get("overlay.override_kernel_check", "false"))
    check_kernel(override_kernel_check)
    created_home = not os.path.isdir(home)
    os.makedirs(home, 0o700, exist_ok=True)
    try:
        backing = check_backing_fs(home)
    except Exception:
        if created_home:  # leave no trace of a refusal: a home would look like prior state
            with contextlib.suppress(OSError):
                os.rmdir(home)
        raise
    os.makedirs(os.path.join(home, LINK_DIR), 0o700, exist_ok=True)
    return Driver(home, backing)


def check_kernel(override_kernel_check):
    """supportsOverlay: the kernel must know overlay and take several lowerdirs."""
    if not graphdriver.supports_filesystem("overlay"):
        raise graphdriver.ErrNotSupported(
            "'overlay' not found as a supported filesystem on this host (not in "
            "/proc/filesystems, and `modprobe overlay` did not load it)")
    version = linux.kernel_version()
    if version < MIN_KERNEL and not override_kernel_check:
        raise graphdriver.ErrNotSupported(
            "overlay needs kernel %s or newer to stack several layers, this is %s (set "
            "overlay.override_kernel_check=true to try anyway)"
            % (".".join(map(str, MIN_KERNEL)), ".".join(map(str, version))))


def check_backing_fs(home):
    """The filesystem under `home` must be one overlay can use; returns its name.

    Three checks, cheapest first: its type, whether readdir reports file types (without d_type
    overlay mis-handles whiteouts and opaque directories), and a real mount of a small stack.
    """
    backing = graphdriver.backing_fs(home)
    if backing in INCOMPATIBLE_FS:
        raise graphdriver.ErrIncompatibleFS("'overlay' is not supported over %s" % backing)
    probe = tempfile.mkdtemp(prefix="probe-", dir=home)
    try:
        if not supports_d_type(probe):
            raise graphdriver.ErrNotSupported(
                "the backing %s filesystem is formatted without d_type support, which leads to "
                "incorrect behavior; backing filesystems without d_type support are not "
                "supported" % backing)
        probe_mount(probe)
    finally:
        shutil.rmtree(probe)
    return backing


def supports_d_type(directory):
    """Whether readdir in `directory` tells a file from a directory without a stat."""
    open(os.path.join(directory, "d_type"), "w").close()
    return linux.dirent_types(directory).get("d_type") != linux.DT_UNKNOWN


def probe_mount(directory):
    """Mount and unmount a two-layer overlay inside `directory`, the way get() will mount."""
    for name in ("lower1", "lower2", "upper", "work", "merged"):
        os.mkdir(os.path.join(directory, name))
    merged = os.path.join(directory, "merged")
    try:
        mount_from(directory, merged, ["lower1", "lower2"], "upper", "work")
    except OSError as err:
        raise graphdriver.ErrNotSupported("a test mount of overlay failed: %s" % err) from None
    linux.umount(merged)


def mount_from(directory, target, lowers, upper, work):
    """Mount overlay on `target` with the layer paths taken relative to `directory`.

    mount(2) resolves relative paths against the caller's working directory, which all threads
    of a process share; so the mount runs in a short-lived thread that first gives itself a
    private working directory with unshare(CLONE_FS). This is overlay2's mountFrom, without
    re-executing the daemon.
    """
    data = "lowerdir=%s,upperdir=%s,workdir=%s" % (":".join(lowers), upper, work)
    if len(data) >= os.sysconf("SC_PAGESIZE"):
        raise graphdriver.GraphDriverError(
            "overlay: mount options for %s are %d bytes, more than a page" % (target, len(data)))
    failure = []

    def mount_in_directory():
        try:
            linux.unshare(linux.CLONE_FS)
            os.chdir(directory)
            linux.mount("overlay", target, "overlay", 0, data)
        except OSError as err:
            failure.append(err)

    helper = threading.Thread(target=mount_in_directory, name="overlay-mount")
    helper.start()
    helper.join()
    if failure:
        raise failure[0]


def new_link_id():
    """A random 26-character name for l/ (128 random bits in base32, as overlay2 makes them)."""
    return base64.b32encode(os.urandom(16)).decode("ascii").rstrip("=")


class Driver(graphdriver.NaiveDiffDriver):
    """Layers as overlay upper directories; the parents' directories become the lowerdirs."""

    name = "overlay"

    def __init__(self, home, backing):
        super().__init__(home)
        self.backing_fs = backing
        self._mounts = graphdriver.RefCounter()

    def dir(self, layer_id):
        if graphdriver.check_id(layer_id) == LINK_DIR:
            raise graphdriver.GraphDriverError("overlay: invalid layer id %r" % layer_id)
        return os.path.join(self.home, layer_id)

    def _path(self, layer_id, name):
        return os.path.join(self.dir(layer_id), name)

    def status(self):
        return [["Backing Filesystem", self.backing_fs], ["Supports d_type", "true"]]

    def get_metadata(self, layer_id):
        """GraphDriver.Data for inspect: the directories of the overlay mount."""
        self.require(layer_id)
        metadata = {
            "MergedDir": self._path(layer_id, "merged"),
            "UpperDir": self._path(layer_id, "diff"),
            "WorkDir": self._path(layer_id, "work"),
        }
        lower_dirs = self._lower_dirs(layer_id)
        if lower_dirs:
            metadata["LowerDir"] = ":".join(lower_dirs)
        return metadata

    def exists(self, layer_id):
        return os.path.isdir(self.dir(layer_id))

    def create(self, layer_id, parent=None, mount_label=""):
        """A new layer on `parent`: an empty diff, a short link, and the parents' chain."""
        target = self.dir(layer_id)
        lowers = self._chain_below(parent) if parent else []
        try:
            os.mkdir(target, 0o700)
        except FileExistsError:
            raise graphdriver.GraphDriverError(
                "overlay: layer %s already exists" % layer_id) from None
        try:
            self._populate(layer_id, lowers)
        except BaseException:
            self._remove_layer_files(layer_id)
            raise

    def create_read_write(self, layer_id, parent=None):
        """A container's layer: the same as any layer, which all mount writable."""
        self.create(layer_id, parent)

    def _chain_below(self, parent):
        """The lower chain for a child of `parent`: parent's link, then its own lowers."""
        self.require(parent)
        lowers = [os.path.join(LINK_DIR, self._link_id(parent))] + self._lower_links(parent)
        if len(lowers) > MAX_DEPTH:
            raise graphdriver.GraphDriverError(
                "overlay: max depth exceeded: %d layers, at most %d stack" % (len(lowers), MAX_DEPTH))
        return lowers

    def _populate(self, layer_id, lowers):
        os.mkdir(self._path(layer_id, "diff"), 0o755)
        link_id = new_link_id()
        # The link file first: a failed create finds the symlink to remove through it.
        _write_file(self._path(layer_id, "link"), link_id)
        os.symlink(os.path.join("..", layer_id, "diff"), os.path.join(self.home, LINK_DIR, link_id))
        if not lowers:
            return
        os.mkdir(self._path(layer_id, "work"), 0o700)
        os.mkdir(self._path(layer_id, "merged"), 0o700)
        _write_file(self._path(layer_id, "lower"), ":".join(lowers))

    def remove(self, layer_id):
        """Unmount the layer if it is mounted, then delete its link and directory."""
        self.require(layer_id)
        self._mounts.release(self._path(layer_id, "merged"))
        self._remove_layer_files(layer_id)

    def _remove_layer_files(self, layer_id):
        try:
            os.unlink(os.path.join(self.home, LINK_DIR, self._link_id(layer_id)))
        except FileNotFoundError:
            pass
        shutil.rmtree(self.dir(layer_id))

    def get(self, layer_id, mount_label=""):
        """The stacked view of the layer: mounted on first use, counted after that."""
        self.require(layer_id)
        lowers = self._lower_links(layer_id)
        if not lowers:
            return self._path(layer_id, "diff")
        merged = self._path(layer_id, "merged")
        upper, work = os.path.join(layer_id, "diff"), os.path.join(layer_id, "work")
        self._mounts.increment(merged, lambda: mount_from(self.home, merged, lowers, upper, work))
        return merged

    def put(self, layer_id):
        """One user less; the last one unmounts."""
        if self._lower_links(layer_id):
            self._mounts.decrement(self._path(layer_id, "merged"))

    def cleanup(self):
        """Unmount every layer this driver mounted (or adopted from an earlier daemon)."""
        self._mounts.release_all()

    def _link_id(self, layer_id):
        with open(self._path(layer_id, "link")) as link_file:
            return link_file.read().strip()

    def _lower_links(self, layer_id):
        """The layer's parents as "l/<short>" paths relative to home, nearest first."""
        try:
            with open(self._path(layer_id, "lower")) as lower_file:
                chain = lower_file.read().strip()
        except FileNotFoundError:
            return []
        return chain.split(":") if chain else []

    def _lower_dirs(self, layer_id):
        """The parents' diff directories, absolute, nearest first."""
        return [self._resolve_link(link) for link in self._lower_links(layer_id)]

    def _resolve_link(self, link):
        """l/<short> -> the absolute diff directory it names."""
        relative = os.readlink(os.path.join(self.home, link))
        return os.path.normpath(os.path.join(self.home, LINK_DIR, relative))

    def is_parent(self, layer_id, parent):
        """Whether `parent` is the layer's real parent, so its diff dir alone is the diff.

        Anything else (a diff against a grandparent, against nothing for a child) needs the
        naive differ's tree comparison.
        """
        lowers = self._lower_links(layer_id)
        if not lowers:
            return not parent
        return bool(parent) and self._resolve_link(lowers[0]) == self._path(parent, "diff")

    def diff(self, layer_id, parent, out):
        """The layer's diff dir as a tar, overlay whiteouts turned into `.wh.` entries."""
        if not self.is_parent(layer_id, parent):
            return super().diff(layer_id, parent, out)
        archive.write_tar(self._path(layer_id, "diff"), out, whiteout_mode="overlay")

    def changes(self, layer_id, parent):
        if not self.is_parent(layer_id, parent):
            return super().changes(layer_id, parent)
        return archive.changes_from_overlay_upper(self._path(layer_id, "diff"),
                                                  self._lower_dirs(layer_id))

    def apply_diff(self, layer_id, parent, stream):
        """Unpack a layer tar into the diff dir, `.wh.` entries becoming overlay whiteouts.
        Returns archive's (diff_id, size), as NaiveDiffDriver.apply_diff does."""
        if not self.is_parent(layer_id, parent):
            return super().apply_diff(layer_id, parent, stream)
        return archive.apply_layer(self._path(layer_id, "diff"), stream, whiteout_mode="overlay")

    def diff_size(self, layer_id, parent):
        if not self.is_parent(layer_id, parent):
            return super().diff_size(layer_id, parent)
        return graphdriver.directory_size(self._path(layer_id, "diff"))


def _write_file(path, text):
    with open(path, "w") as out:
        out.write(text)
