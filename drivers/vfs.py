"""The vfs graph driver: every layer is a full copy of its parent (Docker's daemon/graphdriver/vfs).

vfs needs nothing from the kernel, so it works on any filesystem and is the last entry of the
priority list: the driver that always works. The price is space and time: creating a layer
copies the whole tree below it, and the differ has to compare whole trees (NaiveDiffDriver).

Layout: <home>/dir/<id> is the layer's complete root filesystem; get() just returns it.

Docker 1.8 copied the parent with a tar pipe (chrootarchive.CopyWithTar), earlier versions ran
`cp -a`. pydockerd copies in Python (`dir_copy`) so the daemon needs nothing but the standard
library, and uses copy_file_range(2), which lets filesystems that can share extents (btrfs,
xfs) clone file data instead of copying it -- what modern Docker's vfs does too.
"""
import errno
import os
import shutil
import stat

from drivers import graphdriver

OPTIONS = frozenset()


def init(home, options=()):
    """vfs.Init: vfs takes no --storage-opt."""
    graphdriver.parse_options("vfs", options, OPTIONS)
    os.makedirs(os.path.join(home, "dir"), 0o700, exist_ok=True)
    return Driver(home)


class Driver(graphdriver.NaiveDiffDriver):
    """Layers as plain directories, each a copy of its parent."""

    name = "vfs"

    def dir(self, layer_id):
        return os.path.join(self.home, "dir", graphdriver.check_id(layer_id))

    def create(self, layer_id, parent=None, mount_label=""):
        """A new layer: an empty directory, or a copy of `parent`'s."""
        target = self.dir(layer_id)
        if parent:
            self.require(parent)
        try:
            os.mkdir(target, 0o755)
        except FileExistsError:
            raise graphdriver.GraphDriverError("vfs: layer %s already exists" % layer_id) from None
        try:
            if parent:
                dir_copy(self.dir(parent), target)
        except BaseException:
            shutil.rmtree(target)
            raise

    def create_read_write(self, layer_id, parent=None):
        """A container's layer: every vfs layer is writable already."""
        self.create(layer_id, parent)

    def remove(self, layer_id):
        self.require(layer_id)
        shutil.rmtree(self.dir(layer_id))

    def get(self, layer_id, mount_label=""):
        """The layer's directory: nothing to mount, so nothing to count."""
        self.require(layer_id)
        return self.dir(layer_id)

    def put(self, layer_id):
        pass

    def exists(self, layer_id):
        return os.path.isdir(self.dir(layer_id))


def dir_copy(src, dst):
    """Copy the tree under `src` into the existing directory `dst`, keeping everything a root
    filesystem relies on: owners, modes (setuid included), timestamps, extended attributes
    (file capabilities live there), hard links, symlinks, device nodes, fifos and sockets.

    Directories get their metadata last, deepest first, because filling them changed their
    mtimes; ownership comes before mode because chown(2) clears the setuid/setgid bits.
    """
    linked = {}
    copied_dirs = [(src, dst, os.lstat(src))]
    pending = [(src, dst)]
    while pending:
        src_dir, dst_dir = pending.pop()
        with os.scandir(src_dir) as entries:
            for entry in entries:
                source, target = entry.path, os.path.join(dst_dir, entry.name)
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    os.mkdir(target, 0o700)
                    copied_dirs.append((source, target, info))
                    pending.append((source, target))
                elif not _link_if_seen(info, target, linked):
                    _copy_node(source, target, info)
                    _copy_metadata(source, target, info)
    for source, target, info in reversed(copied_dirs):
        _copy_metadata(source, target, info)


def _link_if_seen(info, target, linked):
    """Hard-link `target` to the copy of an inode already copied; remember first copies."""
    if info.st_nlink < 2:
        return False
    first_copy = linked.setdefault((info.st_dev, info.st_ino), target)
    if first_copy == target:
        return False
    os.link(first_copy, target, follow_symlinks=False)
    return True


def _copy_node(source, target, info):
    mode = info.st_mode
    if stat.S_ISREG(mode):
        _copy_file_data(source, target, info.st_size)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(source), target)
    else:  # character and block devices, fifos, sockets
        os.mknod(target, mode, info.st_rdev)


def _copy_file_data(source, target, size):
    src_fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst_fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _copy_range(src_fd, dst_fd, size)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def _copy_range(src_fd, dst_fd, size):
    """copy_file_range(2) until done; plain reads and writes where the kernel refuses it
    (older kernels across filesystems, filesystems without support)."""
    copied = 0
    try:
        while copied < size:
            count = os.copy_file_range(src_fd, dst_fd, size - copied)
            if count == 0:  # the file shrank while being copied
                return
            copied += count
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        with open(src_fd, "rb", closefd=False) as reader, open(dst_fd, "wb", closefd=False) as writer:
            reader.seek(copied)
            writer.seek(copied)
            shutil.copyfileobj(reader, writer, 1 << 20)


def _copy_metadata(source, target, info):
    os.chown(target, info.st_uid, info.st_gid, follow_symlinks=False)
    _copy_xattrs(source, target)
    if not stat.S_ISLNK(info.st_mode):  # Linux symlinks have no mode of their own
        os.chmod(target, stat.S_IMODE(info.st_mode))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def _copy_xattrs(source, target):
    try:
        names = os.listxattr(source, follow_symlinks=False)
    except OSError as err:
        if err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for name in names:
        value = os.getxattr(source, name, follow_symlinks=False)
        os.setxattr(target, name, value, follow_symlinks=False)
