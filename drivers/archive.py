"""Layer tars in and out: Docker's pkg/archive, with pkg/chrootarchive's safety done in-process.

An image layer travels as a tar stream, possibly compressed. Docker 1.8.2 handles it in
pkg/archive:

  DetectCompression, DecompressStream  -> detect_compression, decompress_stream
  ApplyLayer / UnpackLayer (diff.go)   -> apply_layer
  TarWithOptions (archive.go)          -> write_tar, tar_path (with RebaseNames)
  Untar, CopyWithTar (chrootarchive)   -> untar, copy_path (the builder's COPY and ADD)
  ChangesDirs, ExportChanges           -> changes, export_changes
  overlay's whiteout converter and
  OverlayChanges (later pkg/archive)   -> the 'overlay' whiteout mode, changes_from_overlay_upper

A layer records deletions as AUFS-style "whiteouts": an empty file `.wh.<name>` means "<name>
was deleted", and `<dir>/.wh..wh..opq` means "nothing below <dir> survives from lower layers".
Each graph driver stores them its own way, chosen by `whiteout_mode`:
  'delete'  vfs: the layer directory starts as a copy of its parent, so a whiteout deletes.
  'overlay' overlayfs: a whiteout is a 0:0 character device, an opaque directory carries the
            xattr trusted.overlay.opaque="y".
  'aufs'    aufs reads the `.wh.` files itself, so they are stored as they come.

Safety. A layer tar is hostile input: CVE-2014-6407 and CVE-2014-9356 wrote outside the layer
through `..` names and through symlinks planted by earlier entries. Docker's answer
(pkg/chrootarchive) is to extract inside a chroot of the layer directory. Here the same effect is
reached without a chroot or a child process: every path is resolved one component at a time
from an fd of the layer root (`os.open(..., dir_fd=...)` with O_NOFOLLOW), and a symlink met on
the way is followed the way a chroot would see it — an absolute target starts again at the
layer root, `..` stops at the layer root. The final component is never followed. Names with `..`
that climb out, hard links to outside targets and relative symlinks that point outside are
refused outright, as Docker's createTarFile refuses them.

A layer is held to two more rules, which `docker cp` and the builder's COPY (untar) are not:
- no entry may go through a symlink the same layer made (`a -> /etc` then `a/passwd`, or a
  chain of `x -> ..` links): a layer that needs its own symlinks to reach its own files is
  forging paths, and even confined to the layer root such writes land where its names do
  not say;
- no path may appear twice, unless both entries are directories (which merge). Go's reader
  lets the later entry replace the earlier one, but then the layer no longer holds what its
  tar says: its tar-split cannot give the tar back byte for byte, so `docker save` and
  `docker push` would hand out a layer whose digest is not its diff ID.

tarfile is used only to decode 512-byte headers (TarInfo.frombuf) and encode them
(TarInfo.tobuf). Its extract()/extractall() are not used: their filters are no security boundary
(several bypasses since 2024), and it would resolve user names through NSS (CVE-2019-14271) where
Docker uses numeric ids only. Decompression is in-process with gzip/bz2/lzma, never an external
`xz` (CVE-2014-9357).
"""
import bz2
import collections
import contextlib
import errno
import gzip
import hashlib
import io
import logging
import lzma
import os
import posixpath
import stat
import tarfile
import tempfile
import threading
import time
import zlib

logger = logging.getLogger(__name__)

WHITEOUT_MODES = ("delete", "overlay", "aufs")
WHITEOUT_PREFIX = b".wh."
WHITEOUT_META_PREFIX = b".wh..wh."        # aufs' own bookkeeping: .wh..wh.aufs, .wh..wh.orph, .wh..wh.plnk
WHITEOUT_OPAQUE_DIR = b".wh..wh..opq"
WHITEOUT_LINK_DIR = b".wh..wh.plnk"       # where aufs keeps files hard-linked across layers
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
CAPABILITY_XATTR = "security.capability"  # the one xattr Docker puts in the tars it writes
PAX_XATTR_PREFIX = "SCHILY.xattr."

CHANGE_MODIFY, CHANGE_ADD, CHANGE_DELETE = 0, 1, 2

BLOCK_SIZE = 512
ZERO_BLOCK = b"\0" * BLOCK_SIZE
END_OF_ARCHIVE = ZERO_BLOCK * 2
COPY_BUFFER_SIZE = 1 << 20
# decompress_stream's read-ahead, well below COPY_BUFFER_SIZE: a file's data is then read
# straight into the copy buffer, only headers and what came with them pass through this one.
STREAM_BUFFER_SIZE = 1 << 16
MAX_SPECIAL_FILE_SIZE = 1 << 20  # PAX records and GNU long names: Go's archive/tar caps them the same
MAX_SYMLINK_HOPS = 40            # the kernel's MAXSYMLINKS
MAX_CACHED_DIRS = 256            # open dir fds kept by one resolver, well below RLIMIT_NOFILE

_COMPRESSION_MAGIC = (("gzip", b"\x1f\x8b\x08"), ("bzip2", b"BZh"), ("xz", b"\xfd7zXZ\x00"))
_UNSUPPORTED_MAGIC = (("zstd", b"\x28\xb5\x2f\xfd"),)

_REGULAR_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)
_DEVICE_TYPES = {tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK}
_HEADER_ONLY_TYPES = (tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE,
                      tarfile.DIRTYPE, tarfile.FIFOTYPE)
_EXTRACTABLE_TYPES = _REGULAR_TYPES + _HEADER_ONLY_TYPES

# Errors that say "the machine is out of something", not "the tar is bad": they reach the
# caller unchanged so it can report `no space left on device` like Docker.
_RESOURCE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM)
# A path that no longer leads anywhere: it was removed, or a component is not a directory.
_GONE_ERRNOS = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)

_PATH_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ArchiveError(Exception):
    """A layer tar that is malformed or hostile; the message says what and which entry."""


LayerDigest = collections.namedtuple("LayerDigest", "diff_id size")
Change = collections.namedtuple("Change", "path kind")


# --- Compression (archive.go: DetectCompression, DecompressStream) ----------------------------

def detect_compression(head):
    """Name the compression of a stream from its first bytes; anything unknown is 'uncompressed'."""
    for name, magic in _COMPRESSION_MAGIC:
        if head.startswith(magic):
            return name
    return "uncompressed"


def decompress_stream(fileobj):
    """A reader of the uncompressed bytes of `fileobj`, whatever compression it arrived in.

    The first block is read ahead to look at the magic and then replayed. A stream that is
    neither compressed in a way we know nor a tar is refused here, before anything is written.
    """
    head = _read_up_to(fileobj, BLOCK_SIZE)
    stream = io.BufferedReader(_Replay(head, fileobj), STREAM_BUFFER_SIZE)
    kind = detect_compression(head)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(stream)
    if kind == "xz":
        return lzma.LZMAFile(stream, format=lzma.FORMAT_XZ)
    for name, magic in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            raise ArchiveError("unsupported compression format %s" % name)
    if len(head) == BLOCK_SIZE and not _is_tar_block(head):
        raise ArchiveError("archive/tar: invalid tar header (the stream is neither a tar nor "
                           "compressed with gzip, bzip2 or xz)")
    return stream


def _read_up_to(fileobj, size):
    """Read `size` bytes, fewer only at end of stream (a pipe may hand them over in pieces)."""
    chunks, got = [], 0
    while got < size:
        chunk = fileobj.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _is_tar_block(block):
    """Whether a 512-byte block is a tar header or the zero block that ends an archive."""
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.EOFHeaderError:
        return True
    except tarfile.HeaderError:
        return False
    return True


class _Replay(io.RawIOBase):
    """A raw stream that gives back the bytes already read for sniffing, then the rest."""

    def __init__(self, head, source):
        super().__init__()
        self._head = head
        self._source = source

    def readable(self):
        return True

    def readinto(self, buffer):
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        if hasattr(self._source, "readinto"):
            return self._source.readinto(buffer) or 0
        data = self._source.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


# --- Reading a tar stream ---------------------------------------------------------------------

class _Header(object):
    """One tar entry, after PAX and GNU long-name records are merged in (Go's tar.Header)."""
    __slots__ = ("name", "type", "mode", "uid", "gid", "size", "mtime_ns", "atime_ns",
                 "linkname", "devmajor", "devminor", "xattrs")

    @classmethod
    def from_tarinfo(cls, info, long_name, long_link, pax):
        header = cls()
        header.name = pax.get("path") or long_name or _raw(info.name)
        header.linkname = pax.get("linkpath") or long_link or _raw(info.linkname)
        header.type = info.type
        if header.type == tarfile.AREGTYPE and header.name.endswith(b"/"):
            header.type = tarfile.DIRTYPE  # pre-POSIX tars mark directories with a slash only
        header.mode = info.mode
        header.uid = _pax_id(pax, "uid", info.uid)
        header.gid = _pax_id(pax, "gid", info.gid)
        header.size = _pax_int(pax, "size", info.size)
        header.mtime_ns = _pax_time_ns(pax, "mtime", info.mtime * 10 ** 9)
        header.atime_ns = _pax_time_ns(pax, "atime", header.mtime_ns)
        header.devmajor, header.devminor = info.devmajor, info.devminor
        header.xattrs = {key[len(PAX_XATTR_PREFIX):]: value for key, value in pax.items()
                         if key.startswith(PAX_XATTR_PREFIX)}
        header._validate(pax)
        return header

    def _validate(self, pax):
        if any(key.startswith("GNU.sparse.") for key in pax) or self.type == tarfile.GNUTYPE_SPARSE:
            raise ArchiveError('"%s": sparse files are not supported' % self.display_name)
        if self.size < 0:
            raise ArchiveError('"%s": archive/tar: invalid tar header (negative size)'
                               % self.display_name)
        if b"\0" in self.name or b"\0" in self.linkname or any("\0" in key for key in self.xattrs):
            raise ArchiveError('"%s": archive/tar: invalid tar header (NUL byte in a name)'
                               % self.display_name)

    @property
    def display_name(self):
        return self.name.decode("utf-8", "replace")

    @property
    def data_size(self):
        """How many data bytes follow the header: none for links, dirs and devices (as in Go)."""
        return 0 if self.type in _HEADER_ONLY_TYPES else self.size


def _raw(text):
    """tarfile decodes names with surrogateescape; get the exact bytes back."""
    return text.encode("utf-8", "surrogateescape")


def _pax_int(pax, key, default):
    if key not in pax:
        return default
    try:
        return int(pax[key])
    except ValueError:
        raise ArchiveError("archive/tar: invalid PAX record %s=%r" % (key, pax[key])) from None


def _pax_id(pax, key, default):
    value = _pax_int(pax, key, default)
    if not 0 <= value < 2 ** 32:
        raise ArchiveError("archive/tar: invalid tar header (%s %d out of range)" % (key, value))
    return value


def _pax_time_ns(pax, key, default):
    """A PAX time ("1440000000.123456789") in nanoseconds; tar's own field has whole seconds."""
    if key not in pax:
        return default
    seconds, _, fraction = pax[key].partition(b".")
    try:
        nanoseconds = int(seconds) * 10 ** 9
        extra = int((fraction + b"000000000")[:9]) if fraction else 0
    except ValueError:
        raise ArchiveError("archive/tar: invalid PAX record %s=%r" % (key, pax[key])) from None
    return nanoseconds - extra if seconds.startswith(b"-") else nanoseconds + extra


def _parse_pax(data):
    """PAX extended header records, "<length> <key>=<value>\\n"; values stay bytes (xattrs are binary)."""
    records, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space]) if space > pos else 0
        except ValueError:
            length = 0
        end = pos + length
        if length <= space - pos or end > len(data) or data[end - 1:end] != b"\n":
            raise ArchiveError("archive/tar: invalid PAX record at byte %d" % pos)
        key, equals, value = data[space + 1:end - 1].partition(b"=")
        if not equals:
            raise ArchiveError("archive/tar: invalid PAX record at byte %d" % pos)
        records[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return records


class _TarReader(object):
    """Walks a tar stream header by header and hashes every byte it reads.

    The hash over the uncompressed stream is the layer's DiffID, so nothing is read around it:
    headers, data, padding and whatever trails the end-of-archive blocks (drain()). A tar that
    is no layer (`docker cp`, the builder's COPY) is read with hashed=False: nobody needs its
    digest, and hashing was a sixth of a copy's time.
    """

    def __init__(self, stream, hashed=True):
        self._stream = stream
        self._digest = hashlib.sha256() if hashed else None
        self._buffer = memoryview(bytearray(COPY_BUFFER_SIZE))
        self._remaining = 0  # unread data bytes of the current entry
        self._padding = 0    # bytes that round the current entry's data up to a block

    def next(self):
        """The next entry's _Header, or None at the end of the archive."""
        self._skip(self._remaining + self._padding)
        self._remaining = self._padding = 0
        pax, long_name, long_link = {}, None, None
        while True:
            block = self._read_exact(BLOCK_SIZE, at_boundary=True)
            if not block or block == ZERO_BLOCK:
                # A stream that stops cleanly between entries is accepted, as Go's reader does.
                return None
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as err:
                raise ArchiveError("archive/tar: invalid tar header (%s)" % err) from None
            if info.type == tarfile.XHDTYPE:
                pax.update(_parse_pax(self._read_special(info)))
            elif info.type == tarfile.XGLTYPE:
                self._read_special(info)  # Docker ignores PAX global headers
            elif info.type == tarfile.GNUTYPE_LONGNAME:
                long_name = self._read_special(info).split(b"\0", 1)[0]
            elif info.type == tarfile.GNUTYPE_LONGLINK:
                long_link = self._read_special(info).split(b"\0", 1)[0]
            else:
                header = _Header.from_tarinfo(info, long_name, long_link, pax)
                self._remaining = header.data_size
                self._padding = -header.data_size % BLOCK_SIZE
                return header

    def copy_to(self, fd, label):
        """Write the current entry's data to `fd`, a megabyte at a time."""
        while self._remaining:
            view = self._buffer[:min(self._remaining, COPY_BUFFER_SIZE)]
            count = self._readinto(view)
            if not count:
                raise ArchiveError('unexpected EOF in the data of "%s"' % label)
            self._remaining -= count
            _write_all(fd, view[:count])

    def drain(self):
        """Read (and hash) the rest of the stream, including bytes after the end of the archive."""
        while self._readinto(self._buffer):
            pass

    def diff_id(self):
        return "sha256:" + self._digest.hexdigest()

    def _read_special(self, info):
        """The data of a PAX or GNU long-name header, bounded so a hostile size cannot exhaust memory."""
        if info.size > MAX_SPECIAL_FILE_SIZE:
            raise ArchiveError("archive/tar: %r header of %d bytes is too large"
                               % (info.type, info.size))
        data = self._read_exact(info.size)
        self._skip(-info.size % BLOCK_SIZE)
        return data

    def _read_exact(self, size, at_boundary=False):
        buffer = bytearray(size)
        view, got = memoryview(buffer), 0
        while got < size:
            count = self._readinto(view[got:])
            if not count:
                if at_boundary and got == 0:
                    return b""
                raise ArchiveError("unexpected EOF: the tar stream is truncated")
            got += count
        return bytes(buffer)

    def _skip(self, size):
        while size:
            count = self._readinto(self._buffer[:min(size, COPY_BUFFER_SIZE)])
            if not count:
                raise ArchiveError("unexpected EOF: the tar stream is truncated")
            size -= count

    def _readinto(self, view):
        try:
            count = self._stream.readinto(view) or 0
        except EOFError as err:
            raise ArchiveError("unexpected EOF: %s" % err) from err
        except (OSError, zlib.error, lzma.LZMAError) as err:
            raise ArchiveError("error reading the layer stream: %s" % err) from err
        if self._digest is not None:
            self._digest.update(view[:count])
        return count


def _write_all(fd, view):
    while view:
        view = view[os.write(fd, view):]


# --- Resolving paths inside a root (what pkg/chrootarchive gets from chroot) --------------------

def _clean(name):
    """filepath.Clean of an entry name, taken relative to the root, as a tuple of components.

    Leading `/` and `./` go away; None means a `..` climbs above the root.
    """
    parts = []
    for component in name.split(b"/"):
        if component in (b"", b"."):
            continue
        if component == b"..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(component)
    return tuple(parts)


def _display(parts):
    """A cleaned path, for messages."""
    return b"/".join(parts).decode("utf-8", "replace")


def _proc_path(dir_fd, name=b"."):
    """A path naming `name` inside an open directory, for the calls that take no dir_fd (xattrs)."""
    return b"/proc/self/fd/%d/%s" % (dir_fd, name)


def _inode(st):
    return st.st_dev, st.st_ino


class _Root(object):
    """Resolves paths inside one directory the way a process chrooted into it would.

    Every component is opened relative to its parent's fd with O_NOFOLLOW, so no name can lead
    outside. A symlink met on the way is read and followed by hand: an absolute target starts
    again at the root, `..` stops at the root. Resolved directories are cached by name (tar
    entries come directory by directory); anything that removes entries calls forget().
    """

    def __init__(self, path):
        self.path = path
        # The root itself is the daemon's own path (it may be reached through a symlink); only
        # what lies below it comes from the tar.
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._identity = _inode(os.fstat(self.fd))
        self._cache = {}
        self._hops_left = MAX_SYMLINK_HOPS
        self.owner = None  # (uid, gid) of the directories resolve(create=True) makes

    def close(self):
        self.forget()
        os.close(self.fd)

    def forget(self):
        """Drop the cached directories: after a removal a name may no longer mean the same one."""
        for fd in self._cache.values():
            os.close(fd)
        self._cache.clear()

    @contextlib.contextmanager
    def located(self, parts, create=False):
        """Yield (fd of the directory holding `parts`, final name); the root itself is (root, '.').

        Only the parent is resolved: the final component is for the caller, who must not
        follow it. With `create`, missing parent directories are made (MkdirAll, mode 0755).
        """
        dir_fd = self.resolve(parts[:-1], create)
        try:
            yield dir_fd, (parts[-1] if parts else b".")
        finally:
            os.close(dir_fd)

    def resolve(self, parts, create=False):
        """A new O_PATH fd of directory `parts`, resolved inside the root; the caller closes it."""
        if len(self._cache) > MAX_CACHED_DIRS:
            self.forget()
        self._hops_left = MAX_SYMLINK_HOPS
        start, fd = 0, self.fd
        for end in range(len(parts), 0, -1):
            if parts[:end] in self._cache:
                start, fd = end, self._cache[parts[:end]]
                break
        for index in range(start, len(parts)):
            fd = self._step(fd, parts[index], create)
            self._cache[parts[:index + 1]] = fd
        return os.dup(fd)

    def remove(self, dir_fd, name):
        """os.RemoveAll of one entry, without following symlinks, then forget the cache."""
        _remove_all(dir_fd, name)
        self.forget()

    def _step(self, dir_fd, name, create):
        """Enter directory `name` of `dir_fd` (a new fd); a symlink is followed within the root."""
        try:
            return os.open(name, _PATH_DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=dir_fd)
            os.chmod(name, 0o755, dir_fd=dir_fd)  # exact mode whatever the daemon's umask
            if self.owner:
                os.chown(name, *self.owner, dir_fd=dir_fd, follow_symlinks=False)
            return os.open(name, _PATH_DIR_FLAGS, dir_fd=dir_fd)
        except OSError as err:
            if err.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            if not stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                raise
        return self._follow(dir_fd, os.readlink(name, dir_fd=dir_fd), create)

    def _follow(self, dir_fd, target, create):
        """Walk a symlink's target from `dir_fd`, or from the root when it is absolute."""
        self._hops_left -= 1
        if self._hops_left < 0:
            raise OSError(errno.ELOOP, "too many levels of symbolic links")
        current = os.dup(self.fd if target.startswith(b"/") else dir_fd)
        try:
            for component in target.split(b"/"):
                if component in (b"", b"."):
                    continue
                if component == b"..":
                    following = self._parent(current)
                else:
                    following = self._step(current, component, create)
                os.close(current)
                current = following
        except BaseException:
            os.close(current)
            raise
        return current

    def _parent(self, dir_fd):
        """`..`, except that the root is its own parent (as in a chroot)."""
        if _inode(os.fstat(dir_fd)) == self._identity:
            return os.dup(dir_fd)
        return os.open(b"..", _PATH_DIR_FLAGS, dir_fd=dir_fd)


def _remove_all(dir_fd, name):
    """os.RemoveAll relative to a directory fd; a symlink is removed, never followed."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = os.open(name, _READ_DIR_FLAGS, dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            _remove_all(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def _lstat(dir_fd, name):
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _get_xattr(dir_fd, name, key):
    """An xattr of an entry (never following it), or None when it has none."""
    try:
        return os.getxattr(_proc_path(dir_fd, name), key, follow_symlinks=False)
    except OSError as err:
        if err.errno in (errno.ENODATA, errno.EOPNOTSUPP):
            return None
        raise


# --- Unpacking a layer (diff.go: UnpackLayer; archive.go: createTarFile) ------------------------

def apply_layer(dest, stream, whiteout_mode="delete"):
    """ApplyLayer: extract a layer tar (compressed or not) into the existing directory `dest`.

    Returns LayerDigest(diff_id, size): the sha256 of the uncompressed tar (Docker's DiffID,
    which the image config lists in rootfs.diff_ids) and the bytes of regular files written.
    Bad or hostile tars raise ArchiveError; running out of space raises OSError(ENOSPC).
    The caller removes a half-written layer.
    """
    _check_whiteout_mode(whiteout_mode)
    reader = _TarReader(decompress_stream(stream))
    unpacker = _LayerUnpacker(dest, whiteout_mode)
    unpacker.layer_rules = True
    try:
        unpacker.unpack(reader)
    finally:
        unpacker.close()
    reader.drain()
    return LayerDigest(reader.diff_id(), unpacker.size)


def _check_whiteout_mode(whiteout_mode):
    if whiteout_mode not in WHITEOUT_MODES:
        raise ValueError("unknown whiteout mode %r (want one of %s)"
                         % (whiteout_mode, ", ".join(WHITEOUT_MODES)))


class _LayerUnpacker(object):
    """UnpackLayer's loop: one tar entry at a time, written only inside `dest`."""

    def __init__(self, dest, whiteout_mode, owner=None):
        self.dest = dest
        self.mode = whiteout_mode
        # A layer's `.wh.` names are deletions (and aufs bookkeeping); a plain untar keeps them.
        self.whiteouts = whiteout_mode in ("delete", "overlay")
        self.owner = owner       # (uid, gid) for every entry instead of the tar's own
        self.root = _Root(dest)
        self.size = 0
        self.dirs = []           # (parts, header): directory times are set last
        self.unpacked = set()    # names this layer wrote, which an opaque marker must spare
        self.aufs_links = None   # _AufsLinkStore, made when a layer carries .wh..wh.plnk files
        self.no_overwrite_dir_non_dir = False
        self.layer_rules = False  # apply_layer's: no path twice, none through the layer's symlinks
        self.entries = {}         # path -> whether it was a directory entry (layer_rules)
        self.symlinks = set()     # paths of the symlinks this tar made (layer_rules)

    def close(self):
        self.root.close()
        if self.aufs_links is not None:
            self.aufs_links.close()

    def unpack(self, reader):
        while True:
            header = reader.next()
            if header is None:
                break
            parts = _clean(header.name)
            if parts is None:
                raise ArchiveError('invalid path "%s": it is outside of "%s" (breakout)'
                                   % (header.display_name, self.dest))
            if self.layer_rules:
                self._check_layer_entry(header, parts)
            try:
                self._unpack_entry(reader, header, parts)
            except OSError as err:
                if err.errno in _RESOURCE_ERRNOS:
                    raise
                raise ArchiveError('error unpacking "%s": %s'
                                   % (header.display_name, err.strerror or err)) from err
            except OverflowError as err:
                raise ArchiveError('error unpacking "%s": %s' % (header.display_name, err)) from err
        self._set_directory_times()

    def _check_layer_entry(self, header, parts):
        """The layer-only rules (see the module's docstring), before the entry touches disk."""
        is_dir = header.type == tarfile.DIRTYPE
        if parts in self.entries and not (is_dir and self.entries[parts]):
            raise ArchiveError('invalid layer: "%s" appears twice in the tar'
                               % header.display_name)
        paths = [parts]
        if header.type == tarfile.LNKTYPE and _clean(header.linkname):
            paths.append(_clean(header.linkname))   # (a target climbing out is refused later)
        for path in paths:
            for end in range(1, len(path)):
                if path[:end] in self.symlinks:
                    raise ArchiveError('invalid path "%s": it goes through the symlink "%s" made by '
                                       'the same layer (breakout)' % (header.display_name,
                                                                      _display(path[:end])))
        self.entries[parts] = is_dir
        if header.type == tarfile.SYMTYPE:
            self.symlinks.add(parts)

    def _unpack_entry(self, reader, header, parts):
        if self.whiteouts and parts and parts[0].startswith(WHITEOUT_META_PREFIX):
            # aufs bookkeeping is not part of the image, but files hard-linked across layers
            # live in .wh..wh.plnk, and the layer's hard links to them need their data.
            if parts[0] == WHITEOUT_LINK_DIR and header.type in _REGULAR_TYPES:
                self._aufs_links().save(reader, header, parts[-1])
            return
        if self.whiteouts and parts and parts[-1].startswith(WHITEOUT_PREFIX):
            self._whiteout(header, parts)
            return
        source = reader
        if header.type == tarfile.LNKTYPE and self.whiteouts:
            target = _clean(header.linkname)
            if target and target[0] == WHITEOUT_LINK_DIR:
                header, source = self._aufs_links().lookup(header, target[-1])
        self._create(source, header, parts)
        if self.mode == "delete":
            self._remember_unpacked(parts)

    def _remember_unpacked(self, parts):
        for end in range(len(parts), 0, -1):
            if parts[:end] in self.unpacked:
                break
            self.unpacked.add(parts[:end])

    def _aufs_links(self):
        if self.aufs_links is None:
            self.aufs_links = _AufsLinkStore()
        return self.aufs_links

    # Whiteouts, per graph driver.

    def _whiteout(self, header, parts):
        with self.root.located(parts, create=True) as (dir_fd, base):
            if base == WHITEOUT_OPAQUE_DIR:
                if self.mode == "overlay":
                    os.setxattr(_proc_path(dir_fd), OVERLAY_OPAQUE_XATTR, b"y")
                else:
                    self._remove_not_unpacked(dir_fd, parts[:-1])
                return
            original = base[len(WHITEOUT_PREFIX):]
            if original in (b"", b".", b".."):
                raise ArchiveError('invalid whiteout "%s"' % header.display_name)
            if self.mode == "overlay":
                os.mknod(original, stat.S_IFCHR, 0, dir_fd=dir_fd)
                os.chown(original, header.uid, header.gid, dir_fd=dir_fd, follow_symlinks=False)
            else:
                self.root.remove(dir_fd, original)

    def _remove_not_unpacked(self, dir_fd, dir_parts):
        """An opaque directory keeps only what this layer put in it (so far)."""
        fd = os.open(b".", _READ_DIR_FLAGS, dir_fd=dir_fd)
        try:
            self._prune(fd, dir_parts)
        finally:
            os.close(fd)
        self.root.forget()

    def _prune(self, fd, dir_parts):
        for child in sorted(os.listdir(fd)):
            child = os.fsencode(child)
            if dir_parts + (child,) not in self.unpacked:
                _remove_all(fd, child)
            elif stat.S_ISDIR(os.stat(child, dir_fd=fd, follow_symlinks=False).st_mode):
                child_fd = os.open(child, _READ_DIR_FLAGS, dir_fd=fd)
                try:
                    self._prune(child_fd, dir_parts + (child,))
                finally:
                    os.close(child_fd)

    # Entries (createTarFile).

    def _create(self, source, header, parts):
        self._check_entry(header, parts)
        with self.root.located(parts, create=True) as (dir_fd, name):
            existing = _lstat(dir_fd, name)
            if existing is not None and self.no_overwrite_dir_non_dir:
                self._check_overwrite(existing, header)
            if existing is not None and not (stat.S_ISDIR(existing.st_mode)
                                             and header.type == tarfile.DIRTYPE):
                # Replace whatever is there, except that a directory merges into a directory.
                self.root.remove(dir_fd, name)
                existing = None
            if header.type == tarfile.DIRTYPE:
                if existing is None:
                    os.mkdir(name, 0o700, dir_fd=dir_fd)
            elif header.type in _REGULAR_TYPES:
                self._write_file(source, header, dir_fd, name)
            elif header.type == tarfile.SYMTYPE:
                os.symlink(header.linkname, name, dir_fd=dir_fd)
            elif header.type == tarfile.LNKTYPE:
                self._hard_link(header, dir_fd, name)
            elif header.type == tarfile.FIFOTYPE:
                os.mkfifo(name, 0o600, dir_fd=dir_fd)
            else:
                os.mknod(name, _DEVICE_TYPES[header.type] | 0o600,
                         os.makedev(header.devmajor, header.devminor), dir_fd=dir_fd)
            self._set_metadata(header, dir_fd, name)
        if header.type == tarfile.DIRTYPE:
            self.dirs.append((parts, header))

    def _check_overwrite(self, existing, header):
        """NoOverwriteDirNonDir, with createTarFile's wording: the entry's path, then dest."""
        is_dir, dir_entry = stat.S_ISDIR(existing.st_mode), header.type == tarfile.DIRTYPE
        path = posixpath.join(self.dest, header.display_name)
        if is_dir and not dir_entry:
            raise ArchiveError('cannot overwrite directory "%s" with non-directory "%s"'
                               % (path, self.dest))
        if dir_entry and not is_dir:
            raise ArchiveError('cannot overwrite non-directory "%s" with directory "%s"'
                               % (path, self.dest))

    def _check_entry(self, header, parts):
        """Refuse what createTarFile refuses, before anything on disk is touched."""
        if header.type not in _EXTRACTABLE_TYPES:
            raise ArchiveError('"%s": unhandled tar header type %r'
                               % (header.display_name, header.type))
        if not parts and header.type != tarfile.DIRTYPE:
            raise ArchiveError('"%s": only a directory can stand for the layer root'
                               % header.display_name)
        if header.type == tarfile.LNKTYPE and not _clean(header.linkname):
            raise ArchiveError('invalid hardlink "%s" -> "%s": the target is outside of "%s" '
                               '(breakout)' % (header.display_name,
                                               header.linkname.decode("utf-8", "replace"),
                                               self.dest))
        if header.type == tarfile.SYMTYPE and not header.linkname.startswith(b"/"):
            # A relative target is read from the link's own directory. Absolute targets are
            # normal in images (/var/run -> /run) and mean the container's root.
            if _clean(b"/".join(parts[:-1] + (header.linkname,))) is None:
                raise ArchiveError('invalid symlink "%s" -> "%s": the target is outside of "%s" '
                                   '(breakout)' % (header.display_name,
                                                   header.linkname.decode("utf-8", "replace"),
                                                   self.dest))

    def _write_file(self, source, header, dir_fd, name):
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dir_fd)
        try:
            source.copy_to(fd, header.display_name)
        finally:
            os.close(fd)
        self.size += header.size

    def _hard_link(self, header, dir_fd, name):
        """A hard link whose target is resolved inside the root; a symlink target is linked, not followed."""
        with self.root.located(_clean(header.linkname)) as (target_dir_fd, target_name):
            os.link(target_name, name, src_dir_fd=target_dir_fd, dst_dir_fd=dir_fd,
                    follow_symlinks=False)

    def _set_metadata(self, header, dir_fd, name):
        """Owner, xattrs, mode and time, in createTarFile's order.

        chown clears setuid bits and file capabilities, so it goes first and chmod after the
        xattrs. Owners are the numeric ids from the tar, never looked up by name.
        """
        is_symlink = header.type == tarfile.SYMTYPE or (
            header.type == tarfile.LNKTYPE
            and stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode))
        uid, gid = self.owner or (header.uid, header.gid)
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        for key, value in header.xattrs.items():
            _set_xattr(dir_fd, name, key, value, header)
        if not is_symlink:  # a symlink's own mode means nothing on Linux; chmod would follow it
            os.chmod(name, stat.S_IMODE(header.mode), dir_fd=dir_fd)
        if header.type != tarfile.DIRTYPE:
            os.utime(name, ns=(header.atime_ns, header.mtime_ns), dir_fd=dir_fd,
                     follow_symlinks=False)

    def _set_directory_times(self):
        """Directory times come last: creating entries inside a directory changes its mtime."""
        for parts, header in self.dirs:
            try:
                with self.root.located(parts) as (dir_fd, name):
                    os.utime(name, ns=(header.atime_ns, header.mtime_ns), dir_fd=dir_fd,
                             follow_symlinks=False)
            except OSError as err:
                if err.errno not in _GONE_ERRNOS:
                    raise
                # a later entry removed it, or replaced a parent with something else


def _set_xattr(dir_fd, name, key, value, header):
    try:
        os.setxattr(_proc_path(dir_fd, name), key, value, follow_symlinks=False)
    except OSError as err:
        if err.errno != errno.EOPNOTSUPP:
            raise
        # Docker tolerates file systems without xattrs (old aufs) and only warns.
        logger.warning('ignoring xattr %s of "%s": not supported by the file system',
                       key, header.display_name)


class _AufsLinkStore(object):
    """Files from .wh..wh.plnk, kept aside so the layer's hard links to them can be written.

    aufs keeps a file hard-linked across layers in .wh..wh.plnk; Docker does not extract that
    directory, and a hard link into it becomes a copy of the file (UnpackLayer's aufsHardlinks).
    """

    def __init__(self):
        self._directory = tempfile.TemporaryDirectory(prefix="dockerplnk")
        self._headers = {}

    def close(self):
        self._directory.cleanup()

    def save(self, reader, header, basename):
        fd = os.open(self._path(basename), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     0o600)
        try:
            reader.copy_to(fd, header.display_name)
        finally:
            os.close(fd)
        self._headers[basename] = header

    def lookup(self, link_header, basename):
        """The saved file's header (named like the link) and a source for its data."""
        saved = self._headers.get(basename)
        if saved is None:
            raise ArchiveError('invalid aufs hardlink "%s" -> "%s"'
                               % (link_header.display_name,
                                  link_header.linkname.decode("utf-8", "replace")))
        header = _Header()
        for field in _Header.__slots__:
            setattr(header, field, getattr(saved, field))
        header.name = link_header.name
        return header, _FileSource(self._path(basename))

    def _path(self, basename):
        return os.path.join(os.fsencode(self._directory.name), basename)


class _FileSource(object):
    """Entry data taken from a file instead of the tar stream."""

    def __init__(self, path):
        self.path = path

    def copy_to(self, fd, label):
        with open(self.path, "rb") as source:
            while True:
                chunk = source.read(COPY_BUFFER_SIZE)
                if not chunk:
                    return
                _write_all(fd, memoryview(chunk))


# --- Writing tars (archive.go: TarWithOptions, tarAppender.addTarFile) -------------------------

def write_tar(root, out, whiteout_mode="delete", paths=None):
    """TarWithOptions: write the tree under `root` as an uncompressed tar to the binary file `out`.

    Entries come in filepath.Walk order (sorted, parents first); the root itself has no entry.
    `paths`, if given, lists the relative paths to include instead of everything (Docker's
    IncludeFiles: a directory brings its subtree). whiteout_mode 'overlay' turns overlay's
    whiteout devices and opaque directories back into `.wh.` files, as overlay's Diff does;
    'aufs' leaves out aufs' own `.wh..wh.*` bookkeeping at the top, as aufs' Diff does.
    """
    _check_whiteout_mode(whiteout_mode)
    writer = _TarWriter(root, out, whiteout_mode)
    try:
        if paths is None:
            writer.add_children(())
        else:
            for path in paths:
                parts = _clean(os.fsencode(path))
                if parts is None:
                    raise ArchiveError('invalid path "%s": it is outside of "%s"' % (path, root))
                if parts:
                    writer.add_tree(parts)
                else:
                    writer.add_children(())
        writer.finish()
    finally:
        writer.close()


def export_changes(new_dir, change_list, out):
    """ExportChanges: a tar of the added and modified entries of `new_dir`, deletions as whiteouts.

    Changes are written in path order, each entry alone (changes() already lists the parent
    directories whose contents changed); an entry that has vanished meanwhile is skipped.
    """
    writer = _TarWriter(new_dir, out, "delete")
    try:
        for change in sorted(change_list, key=lambda change: change.path):
            parts = _clean(os.fsencode(change.path))
            if not parts:
                raise ArchiveError('invalid change path "%s"' % change.path)
            if change.kind == CHANGE_DELETE:
                writer.add_whiteout(parts)
            else:
                writer.add(parts)
        writer.finish()
    finally:
        writer.close()


# --- Copying into a root: the builder's COPY and ADD (chrootarchive.Untar, CopyWithTar) ---------

def untar(dest, stream, owner=None, no_overwrite_dir_non_dir=False, label=None):
    """Untar, as pkg/chrootarchive runs it: extract the tar `stream` (compressed or not) into
    the existing directory `dest`, with the layer unpacker's confinement (`dest` is the root
    every name and symlink is resolved in) but none of its whiteout rules: a `.wh.` name is a
    file like any other. `owner` (uid, gid), when given, replaces every entry's own.
    With `no_overwrite_dir_non_dir` (TarOptions.NoOverwriteDirNonDir, `docker cp`) an entry
    may not replace a directory with a non-directory, nor the reverse. `label` names `dest`
    in errors, when its path (/proc/self/fd/N) would say nothing.
    """
    reader = _TarReader(decompress_stream(stream), hashed=False)
    unpacker = _LayerUnpacker(dest, None, owner)
    unpacker.no_overwrite_dir_non_dir = no_overwrite_dir_non_dir
    unpacker.dest = label or dest
    try:
        unpacker.unpack(reader)
    finally:
        unpacker.close()
    reader.drain()


def is_archive(path):
    """isArchivePath: whether the file at `path` starts with a tar header, in any compression
    decompress_stream knows (ADD unpacks such a file instead of copying it)."""
    try:
        with open(path, "rb") as source:
            head = _read_up_to(decompress_stream(source), BLOCK_SIZE)
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
        return True
    except (ArchiveError, OSError, EOFError, zlib.error, lzma.LZMAError, tarfile.HeaderError):
        return False


def tar_path(root, path, out, name, empty_dirs=()):
    """TarWithOptions with RebaseNames: the entry `path` of `root` (a file, or a directory and
    everything below it) as an uncompressed tar in which it is called `name`; "." puts a
    directory's contents at the top of the tar. `path` is resolved inside `root`. The
    directories `empty_dirs` (paths in `root`) go in without what is below them."""
    parts = _clean(os.fsencode(path))
    if parts is None:
        raise ArchiveError('invalid path "%s": it is outside of "%s"' % (path, root))
    writer = _TarWriter(root, out, "delete", rename=(parts, _clean(os.fsencode(name))))
    writer.empty_dirs = {_clean(os.fsencode(directory)) for directory in empty_dirs}
    try:
        if name == ".":
            writer.add_children(parts)  # IncludeSourceDir is false: the top keeps its own mode
        else:
            writer.add_tree(parts)
        writer.finish()
    finally:
        writer.close()


def copy_path(src_root, src_path, dest, name, owner=None):
    """CopyWithTar and CopyFileWithTar: `src_path` of `src_root` becomes `name` inside the
    directory `dest` (a tar written by one thread and extracted by this one through a pipe,
    so a copy of any size needs no spool). `owner` as in untar()."""
    read_fd, write_fd = os.pipe()
    failures = []

    def produce():
        try:
            with open(write_fd, "wb", buffering=COPY_BUFFER_SIZE) as out:
                tar_path(src_root, src_path, out, name)
        except BaseException as err:  # reported by the caller, after the join
            failures.append(err)

    producer = threading.Thread(target=produce, name="copy " + name, daemon=True)
    producer.start()
    extracting = None
    try:
        with open(read_fd, "rb") as stream:
            untar(dest, stream, owner)
    except Exception as err:  # the writer's error, if it has one, says more
        extracting = err
    producer.join()
    for err in failures + [extracting]:
        if err is not None and not isinstance(err, BrokenPipeError):
            raise err


def _scoped_parts(path):
    """The components of `path` taken from the root, `..` stopping there (filepath.Join("/", p))."""
    return _clean(os.fsencode(posixpath.normpath("/" + path)))


def mkdir_all(root, path, owner=None):
    """MkdirAllAndChownNew inside `root`: make directory `path` and its missing parents (0755,
    owned by `owner` when given, else by the daemon's user), resolving every component as a
    chroot into `root` would. Returns the directory's real path. NotADirectoryError when a
    component is not a directory."""
    scoped = _Root(root)
    scoped.owner = owner
    try:
        fd = scoped.resolve(_scoped_parts(path), create=True)
        try:
            return os.readlink("/proc/self/fd/%d" % fd)
        finally:
            os.close(fd)
    finally:
        scoped.close()


def open_directory(root, path):
    """An O_PATH fd of directory `path`, resolved inside `root` as a chroot would (symlinks
    followed); the caller closes it. FileNotFoundError or NotADirectoryError otherwise."""
    scoped = _Root(root)
    try:
        return scoped.resolve(_scoped_parts(path))
    finally:
        scoped.close()


def is_directory(root, path):
    """Whether `path`, resolved inside `root` as a chroot would (symlinks followed), is a
    directory."""
    try:
        os.close(open_directory(root, path))
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False


def read_file(root, path, limit=MAX_SPECIAL_FILE_SIZE, hops=MAX_SYMLINK_HOPS):
    """The bytes of file `path` (at most `limit`) resolved inside `root` as a chroot would,
    a final symlink included: what the builder reads of an image (/etc/passwd for --chown)."""
    parts = _scoped_parts(path)
    scoped = _Root(root)
    try:
        with scoped.located(parts) as (dir_fd, name):
            st = _lstat(dir_fd, name)
            if st is not None and stat.S_ISLNK(st.st_mode) and hops > 0:
                target = os.readlink(name, dir_fd=dir_fd)
                following = target if target.startswith(b"/") else b"/".join(parts[:-1] + (target,))
                return read_file(root, os.fsdecode(following), limit, hops - 1)
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with open(fd, "rb") as source:
            return source.read(limit)
    finally:
        scoped.close()


class _TarWriter(object):
    """Writes entries of one tree as tar headers and data (tarAppender)."""

    def __init__(self, root, out, whiteout_mode, rename=None):
        self.root = _Root(root)
        self.out = out
        self.mode = whiteout_mode
        self.rename = rename     # (parts, new parts): RebaseNames, entries under parts renamed
        self.seen_inodes = {}  # (dev, ino) of files with several links -> first name written
        self.empty_dirs = set()  # parts of directories written without their contents
        self._buffer = memoryview(bytearray(COPY_BUFFER_SIZE))

    def close(self):
        self.root.close()

    def finish(self):
        self.out.write(END_OF_ARCHIVE)

    def add_tree(self, parts):
        """One entry and, for a directory, everything below it."""
        st = self.add(parts)
        if st is not None and stat.S_ISDIR(st.st_mode) and parts not in self.empty_dirs:
            self.add_children(parts)

    def add_children(self, parts):
        with self.root.located(parts) as (dir_fd, name):
            fd = os.open(name, _READ_DIR_FLAGS, dir_fd=dir_fd)
            try:
                children = sorted(os.fsencode(child) for child in os.listdir(fd))
            finally:
                os.close(fd)
        for child in children:
            self.add_tree(parts + (child,))

    def add(self, parts):
        """Write one entry; returns its lstat, or None when it is skipped."""
        if self.mode == "aufs" and parts[0].startswith(WHITEOUT_META_PREFIX):
            return None
        try:
            with self.root.located(parts) as (dir_fd, name):
                st = _lstat(dir_fd, name)
                if st is None or stat.S_ISSOCK(st.st_mode):
                    return None  # vanished meanwhile, or a socket, which tar cannot carry
                info = self._tarinfo(parts, st, dir_fd, name)
                opaque = (self.mode == "overlay" and stat.S_ISDIR(st.st_mode)
                          and _get_xattr(dir_fd, name, OVERLAY_OPAQUE_XATTR) == b"y")
                self._write_header(info)
                if info.type == tarfile.REGTYPE and info.size:
                    self._copy_data(dir_fd, name, info)
        except OSError as err:
            if err.errno not in _GONE_ERRNOS:
                raise
            return None  # its parent vanished or loops; Docker logs and goes on
        if opaque:
            self._write_header(self._opaque_marker(info))
        return st

    def add_whiteout(self, parts):
        """The `.wh.<name>` entry that says <name> was deleted."""
        info = tarfile.TarInfo(_text(parts[:-1] + (WHITEOUT_PREFIX + parts[-1],)))
        info.mode = 0
        info.mtime = int(time.time())
        self._write_header(info)

    def _tarinfo(self, parts, st, dir_fd, name):
        """The header for one entry (FileInfoHeader): numeric owners only, mtime in seconds."""
        info = tarfile.TarInfo(self._name(parts))
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = st.st_mtime_ns // 10 ** 9
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFDIR:
            info.type = tarfile.DIRTYPE
        elif kind == stat.S_IFLNK:
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(name, dir_fd=dir_fd).decode("utf-8", "surrogateescape")
        elif kind == stat.S_IFIFO:
            info.type = tarfile.FIFOTYPE
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            info.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            if self.mode == "overlay" and kind == stat.S_IFCHR and st.st_rdev == 0:
                return self._whiteout_file(parts, info)
        else:
            self._regular_or_link(info, st)
        capability = _get_xattr(dir_fd, name, CAPABILITY_XATTR)
        if capability is not None:
            info.pax_headers = {PAX_XATTR_PREFIX + CAPABILITY_XATTR:
                                capability.decode("utf-8", "surrogateescape")}
        return info

    def _name(self, parts):
        if self.rename is not None:
            old, new = self.rename
            parts = new + parts[len(old):]
        return _text(parts) or "."

    def _regular_or_link(self, info, st):
        """A second name of a multiply-linked file becomes a hard link to the first one written."""
        if st.st_nlink > 1:
            first = self.seen_inodes.get(_inode(st))
            if first is not None:
                info.type, info.linkname = tarfile.LNKTYPE, first
                return
            self.seen_inodes[_inode(st)] = info.name
        info.type = tarfile.REGTYPE
        info.size = st.st_size

    def _whiteout_file(self, parts, device):
        """overlay's whiteout device, written as the `.wh.` file every other driver understands."""
        info = tarfile.TarInfo(_text(parts[:-1] + (WHITEOUT_PREFIX + parts[-1],)))
        info.mode = 0o600
        info.uid, info.gid, info.mtime = device.uid, device.gid, device.mtime
        return info

    def _opaque_marker(self, directory):
        """overlay's opaque xattr, written as `<dir>/.wh..wh..opq` right after the directory."""
        info = tarfile.TarInfo(directory.name + "/" + WHITEOUT_OPAQUE_DIR.decode())
        info.mode = directory.mode & 0o777
        info.uid, info.gid, info.mtime = directory.uid, directory.gid, directory.mtime
        return info

    def _write_header(self, info):
        self.out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _copy_data(self, dir_fd, name, info):
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            left = info.size
            while left:
                count = os.readv(fd, [self._buffer[:min(left, COPY_BUFFER_SIZE)]])
                if not count:
                    raise ArchiveError('"%s" shrank while it was being archived' % info.name)
                self.out.write(self._buffer[:count])
                left -= count
        finally:
            os.close(fd)
        self.out.write(b"\0" * (-info.size % BLOCK_SIZE))


def _text(parts):
    """A tar name for tarfile, which wants str; surrogateescape keeps non-UTF-8 bytes exact."""
    return b"/".join(parts).decode("utf-8", "surrogateescape")


# --- Changes (changes.go: ChangesDirs; changes_linux.go: overlayDeletedFile) -------------------

class _FileInfo(object):
    """What the differ compares about one entry (changes.go FileInfo)."""
    __slots__ = ("mode", "uid", "gid", "rdev", "size", "mtime_ns", "capability", "link",
                 "children", "added")

    def __init__(self, st, capability=None, link=None):
        self.mode, self.uid, self.gid = st.st_mode, st.st_uid, st.st_gid
        self.rdev, self.size, self.mtime_ns = st.st_rdev, st.st_size, st.st_mtime_ns
        self.capability, self.link = capability, link
        self.children = {}
        self.added = False

    def is_dir(self):
        return stat.S_ISDIR(self.mode)

    def differs_from(self, old):
        """statDifferent plus the capability xattr (and the symlink target, which Docker
        only catches through size and mtime). A directory's size and mtime move whenever
        an entry inside it changes, so they are not a change of the directory itself."""
        if ((self.mode, self.uid, self.gid, self.rdev, self.capability, self.link)
                != (old.mode, old.uid, old.gid, old.rdev, old.capability, old.link)):
            return True
        if self.is_dir():
            return False
        return self.size != old.size or not _same_time(self.mtime_ns, old.mtime_ns)


def _same_time(a_ns, b_ns):
    """sameFsTime: tar keeps whole seconds, so a zero nanosecond part matches any."""
    a_sec, a_nsec = divmod(a_ns, 10 ** 9)
    b_sec, b_nsec = divmod(b_ns, 10 ** 9)
    return a_sec == b_sec and (a_nsec == b_nsec or a_nsec == 0 or b_nsec == 0)


def changes(new_dir, old_dir):
    """ChangesDirs: what turns tree `old_dir` into tree `new_dir` (None: an empty tree).

    Returns Change(path, kind) with paths like '/a/b' and kind CHANGE_MODIFY, CHANGE_ADD or
    CHANGE_DELETE, in walk order. A directory whose contents changed is listed as modified
    before them, so that an export carries its mode and owner; a deleted directory is listed
    alone. This is the naive differ for drivers that cannot tell changes apart themselves.
    """
    new = _collect(new_dir)
    old = _collect(old_dir) if old_dir is not None else None
    result = []
    if old is None:
        old = _FileInfo(os.stat(new_dir))
    _add_changes(new, old, "", result)
    return result


def _collect(root):
    """The tree under `root` as _FileInfo nodes (collectFileInfo)."""
    top = _FileInfo(os.stat(root))
    nodes = {"": top}
    fd = os.open(root, _READ_DIR_FLAGS)
    try:
        for path, dir_fd, name, st in _walk(fd, ""):
            capability = _get_xattr(dir_fd, os.fsencode(name), CAPABILITY_XATTR)
            link = os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else None
            node = _FileInfo(st, capability, link)
            nodes[path.rpartition("/")[0]].children[name] = node
            if node.is_dir():
                nodes[path] = node
    finally:
        os.close(fd)
    return top


def _walk(dir_fd, path):
    """filepath.Walk below an open directory: (path, parent fd, name, lstat), sorted, parents
    first, never following a symlink."""
    with os.scandir(dir_fd) as entries:
        entries = sorted(entries, key=lambda entry: entry.name)
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        child_path = path + "/" + entry.name
        yield child_path, dir_fd, entry.name, st
        if stat.S_ISDIR(st.st_mode):
            child_fd = os.open(entry.name, _READ_DIR_FLAGS, dir_fd=dir_fd)
            try:
                for item in _walk(child_fd, child_path):
                    yield item
            finally:
                os.close(child_fd)


def _add_changes(new, old, path, result):
    """FileInfo.addChanges: compare one node of the new tree with its old twin (or None)."""
    at_entry = len(result)
    if old is None:
        result.append(Change(path, CHANGE_ADD))
        new.added = True
    old_children = dict(old.children) if old is not None and new.is_dir() else {}
    for name in sorted(new.children):
        child, old_child = new.children[name], old_children.pop(name, None)
        child_path = path + "/" + name
        if old_child is not None and child.differs_from(old_child):
            result.append(Change(child_path, CHANGE_MODIFY))
            child.added = True
        _add_changes(child, old_child, child_path, result)
    for name in sorted(old_children):
        result.append(Change(path + "/" + name, CHANGE_DELETE))
    if len(result) > at_entry and new.is_dir() and not new.added and path:
        result.insert(at_entry, Change(path, CHANGE_MODIFY))


def changes_from_overlay_upper(upper_dir, lower_dirs=()):
    """OverlayChanges: read a container's changes straight from overlay's upper directory.

    A 0:0 character device is a deleted file and a directory with trusted.overlay.opaque="y"
    a deleted (then re-made) directory. Everything else is added, or modified when one of
    `lower_dirs` (top first) has it; a directory identical to the lower one is not listed,
    but the parent of an added or deleted entry always is.
    """
    lowers = [_Root(lower) for lower in lower_dirs]
    result, changed_dirs = [], set()
    fd = os.open(upper_dir, _READ_DIR_FLAGS)
    try:
        for path, dir_fd, name, st in _walk(fd, ""):
            if _is_overlay_deletion(dir_fd, name, st):
                kind = CHANGE_DELETE
            else:
                kind = _added_or_modified(lowers, path, st)
                if kind is None:
                    continue
            if stat.S_ISDIR(st.st_mode):
                changed_dirs.add(path)
            parent = path.rpartition("/")[0]
            if kind != CHANGE_MODIFY and parent and parent not in changed_dirs:
                result.append(Change(parent, CHANGE_MODIFY))
                changed_dirs.add(parent)
            result.append(Change(path, kind))
    finally:
        os.close(fd)
        for lower in lowers:
            lower.close()
    return result


def _is_overlay_deletion(dir_fd, name, st):
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return True
    return (stat.S_ISDIR(st.st_mode)
            and _get_xattr(dir_fd, os.fsencode(name), OVERLAY_OPAQUE_XATTR) == b"y")


def _added_or_modified(lowers, path, st):
    """CHANGE_MODIFY if a lower layer has `path`, CHANGE_ADD if none does, None for a
    directory that is the same as the lower one."""
    parts = _clean(os.fsencode(path))
    for lower in lowers:
        try:
            with lower.located(parts) as (dir_fd, name):
                below = _lstat(dir_fd, name)
        except OSError as err:
            if err.errno not in _GONE_ERRNOS:
                raise
            below = None
        if below is None:
            continue
        if (stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(below.st_mode) and st.st_size == below.st_size
                and st.st_mode == below.st_mode and _same_time(st.st_mtime_ns, below.st_mtime_ns)):
            return None
        return CHANGE_MODIFY
    return CHANGE_ADD
