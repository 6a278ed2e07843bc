"""`docker cp`: a container's files read and written from the daemon (Docker's
container/archive.go and daemon/archive.go).

The CLI copies through three archive verbs on a path of the container:

  HEAD  ContainerStatPath     -> ContainerFS.stat: {name, size, mode, mtime, linkTarget}, sent
                                 base64-encoded in the X-Docker-Container-Path-Stat header
  GET   ContainerArchivePath  -> ContainerFS.archive: a tar of the path, its top entry named
                                 by the path's base name (a symlink's, not its target's)
  PUT   ContainerExtractToDir -> ContainerFS.extract: a tar (maybe compressed) unpacked into
                                 the directory the path names

Paths are the container's: `../../..` stops at its root, and a symlink is followed as the
container would follow it (an absolute target starts again at the container's root). As in
ResolvePath, the last component of a path is not followed (`docker cp c:/link -` copies the
link) unless the path ends in `/` or `/.`. Nothing here opens a path string that the
container could have redirected: every component is opened relative to its parent's fd with
O_NOFOLLOW (drivers/archive's _Root), so no symlink planted by the container, or by the tar
being unpacked, reaches the host (security.md checks 17 and 18).

Where the files are. A running container's root is /proc/<pid>/root: the kernel shows there
the container's own mount namespace, its volumes, bind mounts and tmpfs included; the
kernel's filesystems mounted there (/proc, /sys, /dev/pts...) are archived as the empty
directories dockerd finds in the rootfs it reads, never walked (`kernel_mounts`). A stopped
container's root is its mounted read-write layer, and its volumes and bind mounts are not
mounted anywhere, so `mounts` (destination -> host source) says where a path below one of
them lands: as dockerd's resolvePath with volumes, the longest destination that is a prefix
of the resolved path wins, and the rest of the path is resolved inside that source.

The daemon's side (daemon/archive.go). container_stat_path, container_archive_path and
container_extract_to_dir take the container (already looked up by the name the client gave,
which their errors repeat) and the daemon's collaborators: `graph`, whose mount_rw_layer and
unmount_rw_layer give a stopped container's files for the length of one verb, and `events`,
whose log() records archive-path and extract-to-dir. Errors are dockerd's: a missing path is
NotFound ("Could not find the file <path> in container <name>"), a path or tar that cannot be
used is InvalidParameter, anything else the system's error.
"""
import base64
import contextlib
import errno
import json
import os
import posixpath
import stat

from drivers import archive, errdefs, execdriver, linux
from drivers.logger import format_time

PATH_STAT_HEADER = "X-Docker-Container-Path-Stat"

class ExtractPointNotDirectory(Exception):
    """ErrExtractPointNotDirectory: PUT archive's path names no directory."""

    def __init__(self):
        super().__init__("extraction point is not a directory")


MAX_SYMLINK_HOPS = 255  # symlink.FollowSymlinkInScope's limit

# Go's os.FileMode type bits (what the stat header's "mode" carries above the permissions).
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20

_GO_TYPE_BITS = {stat.S_IFDIR: GO_MODE_DIR, stat.S_IFLNK: GO_MODE_SYMLINK,
                 stat.S_IFBLK: GO_MODE_DEVICE, stat.S_IFCHR: GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
                 stat.S_IFIFO: GO_MODE_NAMED_PIPE, stat.S_IFSOCK: GO_MODE_SOCKET}


def go_file_mode(st_mode):
    """os.FileMode of a stat mode (fillFileStatFromSys): type bits, then setuid/setgid/sticky."""
    mode = _GO_TYPE_BITS.get(stat.S_IFMT(st_mode), 0) | stat.S_IMODE(st_mode) & 0o777
    for bit, go_bit in ((stat.S_ISUID, GO_MODE_SETUID), (stat.S_ISGID, GO_MODE_SETGID),
                        (stat.S_ISVTX, GO_MODE_STICKY)):
        if st_mode & bit:
            mode |= go_bit
    return mode


def absolute_path(path):
    """archive.PreserveTrailingDotOrSeparator(filepath.Join("/", path), path): the path from
    the container's root, cleaned, keeping a trailing `/` or `/.` (they mean "follow it")."""
    cleaned = posixpath.normpath("/" + path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if path.endswith("/.") and cleaned != "/":
        return cleaned + "/."
    if path.endswith("/") and cleaned != "/":
        return cleaned + "/"
    return cleaned


def mount_destination(destinations, path):
    """The destination (of `destinations`) a resolved container path lies under, the longest
    one winning (a volume inside a bind mount); None for the container's own root."""
    under = [destination for destination in destinations
             if path == destination or path.startswith(destination.rstrip("/") + "/")]
    return max(under, key=len) if under else None


class ContainerFS(object):
    """One container's files, seen from the daemon: `root` is the container's root directory,
    `mounts` maps the destinations of mounts not visible under it to their host sources."""

    def __init__(self, root, mounts=None, kernel_mounts=()):
        self.root = root
        self.mounts = mounts or {}
        self.kernel_mounts = kernel_mounts  # /proc, /sys...: archived as empty directories

    # -- where a container path is -------------------------------------------------------

    def location(self, path):
        """(host directory, path inside it) of a resolved container path: the mount whose
        destination is the longest prefix of it, else the root."""
        destination = mount_destination(self.mounts, path)
        if destination is None:
            return self.root, path
        return self.mounts[destination], path[len(destination.rstrip("/")):] or "/"

    def lstat(self, path):
        """(lstat, symlink target or None) of a resolved container path, never following its
        last component; FileNotFoundError or NotADirectoryError when it is not there."""
        host, inside = self.location(path)
        parent, name = posixpath.split(inside)
        dir_fd = archive.open_directory(host, parent)
        try:
            st = os.stat(name or ".", dir_fd=dir_fd, follow_symlinks=False)
            target = os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else None
        finally:
            os.close(dir_fd)
        return st, target

    def follow(self, path):
        """symlink.FollowSymlinkInScope: `path` with every symlink in it followed inside the
        container (the last one too). Components that do not exist are kept as they are."""
        resolved, pending, hops = [], path.split("/"), 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                resolved = resolved[:-1]
                continue
            candidate = "/" + "/".join(resolved + [part])
            try:
                target = self.lstat(candidate)[1]
            except (FileNotFoundError, NotADirectoryError):
                target = None
            if target is None:
                resolved.append(part)
                continue
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise OSError(errno.ELOOP, "too many links", path)
            if target.startswith("/"):
                resolved = []
            pending = target.split("/") + pending
        return "/" + "/".join(resolved)

    def resolve(self, path):
        """container.ResolvePath: (the path to use, unfollowed; its absolute form). The
        directory part is followed; so is the last component when the path ends in / or /.,
        which must then be a directory (as lstat("file/") fails with ENOTDIR)."""
        absolute = absolute_path(path)
        if absolute.endswith(("/", "/.")):
            resolved = self.follow(absolute)
            if not stat.S_ISDIR(self.lstat(resolved)[0].st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
            return resolved, absolute
        parent, base = posixpath.split(absolute)
        return posixpath.join(self.follow(parent), base), absolute

    # -- the three verbs -------------------------------------------------------------------

    def stat(self, path):
        """container.StatPath: the X-Docker-Container-Path-Stat fields; a symlink's
        linkTarget is where it leads inside the container, fully followed."""
        resolved, absolute = self.resolve(path)
        st, target = self.lstat(resolved)
        return {"name": posixpath.basename(absolute.rstrip("/")) or "/", "size": st.st_size,
                "mode": go_file_mode(st.st_mode), "mtime": format_time(st.st_mtime_ns),
                "linkTarget": self.follow(resolved) if target is not None else ""}

    def archive(self, path, out):
        """containerArchivePath: the tar of `path`, its top entry renamed to the requested
        base name (`/.` puts a directory's contents at the top)."""
        resolved, absolute = self.resolve(path)
        self.lstat(resolved)  # a missing path is an error before any byte goes out
        host, inside = self.location(resolved)
        name = "." if absolute.endswith("/.") or resolved == "/" else posixpath.basename(
            absolute.rstrip("/"))
        archive.tar_path(host, inside, out, name, empty_dirs=self.kernel_mounts)

    def extract(self, path, stream, owner, no_overwrite_dir_non_dir):
        """ContainerExtractToDir: unpack the tar `stream` into directory `path` (followed).
        Every entry stays inside that directory, whatever its name or the symlinks before it.
        ExtractPointNotDirectory when `path` is no directory."""
        resolved = self.follow(absolute_path(path))
        st = self.lstat(resolved)[0]
        if not stat.S_ISDIR(st.st_mode):
            raise ExtractPointNotDirectory()
        host, inside = self.location(resolved)
        dir_fd = archive.open_directory(host, inside)
        try:
            archive.untar("/proc/self/fd/%d" % dir_fd, stream, owner, no_overwrite_dir_non_dir,
                          label=resolved)
        finally:
            os.close(dir_fd)

    def user_identity(self, spec):
        """(uid, gid) of a container user ("name", "uid", "name:group"...) from the container's
        own /etc/passwd and /etc/group, never the host's (what `docker cp -a` gives the files
        when the container has a User)."""
        user = execdriver.get_exec_user(spec, self._etc_file("/etc/passwd"),
                                        self._etc_file("/etc/group"))
        return user.uid, user.gid

    def _etc_file(self, path):
        try:
            return archive.read_file(self.root, path).decode("utf-8", "replace")
        except (FileNotFoundError, NotADirectoryError):
            return None


# -- the daemon's archive verbs (daemon/archive.go) ----------------------------------------

@contextlib.contextmanager
def container_files(graph, container, name, path):
    """The container's files for one archive verb: a running container's through
    /proc/<pid>/root, where its mounts are; a stopped one's read-write layer, mounted
    meanwhile, with its volumes and binds beside it. The errors of the verb become dockerd's."""
    running = container.running and container.pid
    root = "/proc/%d/root" % container.pid if running else graph.mount_rw_layer(container.id)
    mounts = {} if running else {destination: mount_point.source for destination, mount_point
                                 in container.mount_points.items() if mount_point.source}
    try:
        kernel_mounts = linux.kernel_mount_points(container.pid) if running else ()
        yield ContainerFS(root, mounts, kernel_mounts)
    except FileNotFoundError:
        raise errdefs.NotFound("Could not find the file %s in container %s" % (path, name)) from None
    except NotADirectoryError:
        raise errdefs.InvalidParameter("%s: not a directory" % path) from None
    except (ExtractPointNotDirectory, archive.ArchiveError, execdriver.ExecdriverError) as err:
        raise errdefs.InvalidParameter(str(err)) from None
    except OSError as err:
        raise errdefs.System("%s: %s" % (path, err.strerror or err)) from None
    finally:
        if not running:
            graph.unmount_rw_layer(container.id)


def encode_path_stat(path_stat):
    """The X-Docker-Container-Path-Stat value: base64 of the stat's JSON."""
    return base64.b64encode(json.dumps(path_stat, separators=(",", ":")).encode()).decode()


def container_stat_path(graph, container, name, path):
    """ContainerStatPath (HEAD archive): the path's stat, as its header's value."""
    with container_files(graph, container, name, path) as files:
        return encode_path_stat(files.stat(path))


def container_archive_path(graph, events, container, name, path, open_out):
    """ContainerArchivePath (GET archive): the tar of `path`, written to what
    open_out([(header, value)]) returns once the path is known to exist; returns that."""
    with container_files(graph, container, name, path) as files:
        out = open_out([(PATH_STAT_HEADER, encode_path_stat(files.stat(path)))])
        files.archive(path, out)
    events.log("container", "archive-path", container.id, container.event_attributes())
    return out


def container_extract_to_dir(graph, events, container, name, path, stream, copy_uid_gid,
                             no_overwrite_dir_non_dir):
    """ContainerExtractToDir (PUT archive): the tar `stream` unpacked into directory `path`.
    Entries keep the tar's owners; with copyUIDGID (`docker cp -a`) in a container that has a
    User, they belong to that user (tarCopyOptions). A read-only volume, or a read-only
    rootfs outside volumes, refuses."""
    destination = mount_destination(container.mount_points, absolute_path(path))
    if destination is not None and not container.mount_points[destination].rw:
        raise errdefs.InvalidParameter("mounted volume is marked read-only")
    if destination is None and container.host_config.get("ReadonlyRootfs"):
        raise errdefs.InvalidParameter("container rootfs is marked read-only")
    with container_files(graph, container, name, path) as files:
        user = container.config.get("User") if copy_uid_gid else ""
        files.extract(path, stream, files.user_identity(user) if user else None,
                      no_overwrite_dir_non_dir)
    events.log("container", "extract-to-dir", container.id, container.event_attributes())
