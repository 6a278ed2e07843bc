"""The layer store: Docker's layer/ package (layer_store.go, filestore.go), content-addressed.

Docker 1.8.2 kept each image's layer in the image's own graph directory, named by a random ID.
Docker 1.10 split the graph into an image store (drivers.image) and this layer store:

- A layer is a tar of file changes. Its diff ID is the sha256 of the uncompressed tar. Layers
  stack, so a layer is stored under its chain ID, which names the layer together with
  everything below it (the OCI image spec's definition):

      ChainID(L0) = DiffID(L0)
      ChainID(Ln) = sha256("ChainID(Ln-1) DiffID(Ln)")

- Layers are reference counted. A layer lives while an image has it on top, a layer is stacked
  on it, a container's writable layer is mounted on it, or an operation in progress holds it
  (a load between registering a layer and creating the image that uses it). When the last
  reference goes, the layer goes, and its parent loses a reference in turn.

On disk, under <root>/graph/layerdb (directories 0700, every state file written atomically):

    sha256/<chain hex>/diff         the layer's diff ID
    sha256/<chain hex>/size         bytes the layer adds (its diff size)
    sha256/<chain hex>/cache-id     the graph driver's ID for the layer
    sha256/<chain hex>/parent       the chain ID below it (absent for a base layer)
    sha256/<chain hex>/tar-split.json.gz   what it takes to rebuild the layer's tar
    mounts/<container>/{mount-id,init-id,parent}   a container's writable layer
    tmp/write-set-*/                metadata being written (renamed into place when whole)
    tmp/remove-*/                   metadata of a layer being deleted (renamed out of place)

The module reads top to bottom: digests and chain IDs; errors and state files; tar-split;
the layer store.
"""
import base64
import collections
import contextlib
import errno
import gzip
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import tarfile
import tempfile
import threading

from drivers import archive
from drivers.errdefs import Conflict, DockerError, InvalidParameter, NotFound, System
from drivers.ioutils import atomic_write_file, fsync_dir

log = logging.getLogger("pydockerd.graph")

DIGEST_PREFIX = "sha256:"
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
DIR_MODE = 0o700
STATE_FILE_MODE = 0o600
COPY_CHUNK = 1 << 20
MAX_JSON_MEMBER = 64 << 20   # a config, manifest or index larger than this is not one
# The state files that name driver layers: a layer's, a writable layer's and its -init layer's.
DRIVER_ID_FILES = ("cache-id", "mount-id", "init-id")


# ---------------------------------------------------------------------------------------------
# Digests and chain IDs
# ---------------------------------------------------------------------------------------------

def sha256_digest(data):
    """digest.FromBytes: "sha256:<hex>" of `data`."""
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def hex_of(digest):
    """The hex part of "sha256:<hex>"."""
    return digest[len(DIGEST_PREFIX):] if digest.startswith(DIGEST_PREFIX) else digest


def truncate_id(identifier):
    """stringid.TruncateID: the 12-character short form, without the algorithm."""
    return identifier.split(":", 1)[-1][:12]


def chain_id(parent_chain_id, diff_id):
    """ChainID(Ln) = sha256("ChainID(Ln-1) DiffID(Ln)"); a base layer's chain ID is its diff ID."""
    if parent_chain_id is None:
        return diff_id
    return sha256_digest(("%s %s" % (parent_chain_id, diff_id)).encode("ascii"))


def chain_ids_of(diff_ids):
    """The chain ID of every layer of a rootfs, bottom first."""
    chain = []
    for diff_id in diff_ids:
        chain.append(chain_id(chain[-1] if chain else None, diff_id))
    return chain


def validate_digest(value, what):
    if not isinstance(value, str) or not DIGEST_RE.match(value):
        raise InvalidParameter("invalid %s: %r is not a sha256 digest" % (what, value))
    return value

# ---------------------------------------------------------------------------------------------
# Errors and state files
# ---------------------------------------------------------------------------------------------

class InvalidDiffID(InvalidParameter):
    """A layer's content does not hash to the diff ID its image config promises."""

    def __init__(self, expected, actual):
        super().__init__("invalid diffID: expected %s, got %s" % (json.dumps(expected), json.dumps(actual)))
        self.expected = expected
        self.actual = actual


def _is_enospc(err):
    """Whether `err`, or an error it was raised from, is a full disk."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return True
        if "no space left on device" in str(err).lower():
            return True
        err = err.__cause__ or err.__context__
    return False


def _converted(err, what):
    """The error to report for `err` while doing `what`: a full disk in Go's words, a bad
    archive as the client's fault, typed errors as they are, anything else as a server fault
    that says what was being done."""
    if _is_enospc(err):
        return System("%s: no space left on device" % what)
    if isinstance(err, DockerError):
        return err
    if isinstance(err, archive.ArchiveError):
        return InvalidParameter("%s: %s" % (what, err))
    return System("%s: %s" % (what, err))


@contextlib.contextmanager
def storage_errors(what):
    """Report errors raised inside the block as _converted() says (the cleanup is the block's)."""
    try:
        yield
    except Exception as err:
        converted = _converted(err, what)
        if converted is err:
            raise
        raise converted from err


def read_state(path):
    with open(path) as state_file:
        return state_file.read().strip()


def write_state(path, text):
    atomic_write_file(path, text.encode("utf-8"), STATE_FILE_MODE)


def make_state_dir(path):
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    return path


def remove_temporary_files(directory):
    """Remove what a kill during atomic_write_file() left in `directory`: its ".<name>.*"
    temporary files (no state file's name starts with a dot)."""
    for name in os.listdir(directory):
        if name.startswith("."):
            log.warning("removing %s, a state file a killed daemon was writing",
                        os.path.join(directory, name))
            os.unlink(os.path.join(directory, name))


# ---------------------------------------------------------------------------------------------
# tar-split: keeping a layer tar reproducible without keeping the tar
# ---------------------------------------------------------------------------------------------

TAR_SPLIT_FILE = "tar-split.json.gz"
SEGMENT, FILE_ENTRY = 2, 1     # tar-split's storage.Entry types
_SPECIAL_TAR_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME,
                      tarfile.GNUTYPE_LONGLINK)
_FILE_TAR_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)


class TarSplitRecorder(object):
    """tar-split's disassembler (github.com/vbatts/tar-split, as Docker's layer store uses it).

    A layer's diff ID is the sha256 of its tar, so `docker save` and `docker push` must hand
    out that exact tar again. Keeping the tar would double the disk used; instead this reader
    sits between the decompressed stream and the unpacker and records everything *except*
    the contents of regular files: headers, padding, PAX records and trailing bytes as raw
    "segments", and for each file only its name and size. The contents are in the unpacked
    layer already; assemble_tar() interleaves the two again.

    The record is gzipped JSON lines in tar-split's format:
        {"type": 2, "payload": "<base64 bytes>", "position": 0}
        {"type": 1, "name": "bin/busybox", "size": 1984000, "position": 1}
    """

    def __init__(self, stream, path):
        self._stream = stream
        self._file = open(path, "wb")
        self._out = gzip.GzipFile(fileobj=self._file, mode="wb", compresslevel=1)
        self._position = 0
        self._segment = bytearray()
        self._header = bytearray()      # the header block being read
        self._file_left = 0             # file content bytes still to pass (not recorded)
        self._segment_left = 0          # entry data/padding bytes still to record
        self._special = None            # data of a PAX or long-name entry, to learn the name
        self._special_type = None
        self._next_name = None          # the name a PAX or GNU long-name entry gave
        self._next_size = None          # the size a PAX record gave
        self._raw = False               # past the end, or not a tar: record the rest as is

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        try:
            if kind is None:
                self._flush_segment()
            self._out.close()
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()

    def readinto(self, buffer):
        count = self._stream.readinto(buffer) or 0
        self._feed(memoryview(buffer)[:count])
        return count

    def read(self, size=-1):
        data = self._stream.read(size)
        self._feed(memoryview(data))
        return data

    def _feed(self, view):
        while view:
            if self._raw:
                self._segment += view
                return
            if self._file_left:
                taken = min(self._file_left, len(view))
                self._file_left -= taken
            elif self._segment_left:
                taken = min(self._segment_left, len(view))
                self._record_data(view[:taken])
            else:
                taken = min(tarfile.BLOCKSIZE - len(self._header), len(view))
                self._header += view[:taken]
                if len(self._header) == tarfile.BLOCKSIZE:
                    self._read_header(bytes(self._header))
                    self._header = bytearray()
            view = view[taken:]

    def _record_data(self, data):
        self._segment += data
        self._segment_left -= len(data)
        if self._special is not None and len(self._special) < MAX_JSON_MEMBER:
            self._special += data
        if self._segment_left == 0 and self._special is not None:
            self._learn_name(bytes(self._special))
            self._special = None

    def _read_header(self, block):
        self._segment += block
        if block == tarfile.NUL * tarfile.BLOCKSIZE:
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError:
            self._raw = True    # the unpacker refuses it; keep the bytes all the same
            return
        size = self._next_size if self._next_size is not None else info.size
        padding = -size % tarfile.BLOCKSIZE
        if info.type in _SPECIAL_TAR_TYPES:
            self._special, self._special_type = bytearray(), info.type
            self._segment_left = size + padding
            return
        name = self._next_name if self._next_name is not None else info.name
        self._next_name = self._next_size = None
        if info.type in _FILE_TAR_TYPES and size:
            self._flush_segment()
            self._write_entry({"type": FILE_ENTRY, "name": name, "size": size})
            self._file_left, self._segment_left = size, padding
        else:
            self._segment_left = size + padding

    def _learn_name(self, data):
        """The path (and size) the next entry really has, from a PAX record or a GNU long name."""
        if self._special_type in (tarfile.GNUTYPE_LONGNAME,):
            self._next_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif self._special_type == tarfile.XHDTYPE:
            records = _pax_records(data)
            if "path" in records:
                self._next_name = records["path"]
            if records.get("size", "").isdigit():
                self._next_size = int(records["size"])

    def _flush_segment(self):
        if self._segment:
            self._write_entry({"type": SEGMENT,
                               "payload": base64.b64encode(bytes(self._segment)).decode("ascii")})
            self._segment = bytearray()

    def _write_entry(self, entry):
        if entry.get("name") is not None:
            raw = entry["name"].encode("utf-8", "surrogateescape")
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                entry["name_raw"] = base64.b64encode(raw).decode("ascii")
                del entry["name"]
        entry["position"] = self._position
        self._position += 1
        self._out.write(json.dumps(entry).encode("ascii") + b"\n")


def _pax_records(data):
    """PAX extended header records ("<length> <key>=<value>\n") as a dict."""
    records = {}
    while data:
        length_text, _, rest = data.partition(b" ")
        if not length_text.isdigit() or int(length_text) <= len(length_text):
            break
        record, data = data[:int(length_text)], data[int(length_text):]
        key, _, value = record[len(length_text) + 1:].rstrip(b"\n").partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
    return records


def assemble_tar(split_path, root, out):
    """tar-split's assembler: write the recorded segments and, for each file entry, the file's
    contents read from the unpacked layer at `root` -- the original tar, byte for byte."""
    with gzip.open(split_path, "rt", encoding="utf-8") as entries:
        for line in entries:
            entry = json.loads(line)
            if entry["type"] == SEGMENT:
                out.write(base64.b64decode(entry["payload"]))
            else:
                name = (base64.b64decode(entry["name_raw"]) if "name_raw" in entry
                        else entry["name"].encode("utf-8", "surrogateescape"))
                _copy_layer_file(root, name, entry["size"], out)


def copy_stream(source, target):
    """Copy `source` to `target` in COPY_CHUNK pieces; returns the bytes copied."""
    copied = 0
    while True:
        chunk = source.read(COPY_CHUNK)
        if not chunk:
            return copied
        target.write(chunk)
        copied += len(chunk)


def _copy_layer_file(root, name, size, out):
    """Copy `size` bytes of file `name` of the layer at `root`. Every component is opened
    without following symlinks, so a layer can never make the daemon read a host file."""
    parts = [part for part in name.split(b"/") if part not in (b"", b".")]
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (0 if last else os.O_DIRECTORY)
            next_fd = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        with os.fdopen(fd, "rb", closefd=False) as source:
            copied = copy_stream(_Limited(source, size), out)
    except OSError as err:
        raise System("cannot reassemble the layer tar: %s: %s" % (os.fsdecode(name), err)) from err
    finally:
        os.close(fd)
    if copied != size:
        raise System("cannot reassemble the layer tar: %s changed size" % os.fsdecode(name))


class _Limited(object):
    """A reader that stops after `size` bytes."""

    def __init__(self, source, size):
        self._source = source
        self._left = size

    def read(self, size):
        data = self._source.read(min(size, self._left)) if self._left else b""
        self._left -= len(data)
        return data

# ---------------------------------------------------------------------------------------------
# The layer store (layer/layer_store.go)
# ---------------------------------------------------------------------------------------------

Layer = collections.namedtuple("Layer", "chain_id diff_id parent cache_id size")
Layer.__doc__ = """A read-only layer: its chain ID, diff ID, parent chain ID (or None), the graph
driver's ID for it (cache-id) and the bytes it adds (its diff size)."""

Mount = collections.namedtuple("Mount", "name mount_id init_id parent")
Mount.__doc__ = """A container's writable layer: the driver IDs of the layer and of its -init
layer (None without one), stacked on the read-only layer `parent` (a chain ID, or None)."""


class LayerStore(object):
    """The read-only layers of every image and the writable layers of containers.

    References are counted in memory and rebuilt at start-up from what refers to a layer:
    each layer stacked on it, each image that has it on top, each container mounted on it,
    plus `hold()`s of operations in progress. release() drops one; at zero the layer is
    deleted and its parent released in turn.

    Crash consistency. A layer (or a container's writable layer) is recorded by renaming its
    complete metadata directory from tmp/ into sha256/ (or mounts/), and that rename is the
    only moment it comes to exist; deleting renames it back into tmp/ first. Before the
    driver is asked to create a layer, its driver ID is written into the staging directory,
    so at every instant each driver layer is named either by a recorded layer or by an entry
    in tmp/. At start-up everything in tmp/ is an operation a kill interrupted: the driver
    layers it names are removed with it, and each repair is logged. A recorded layer whose
    driver layer is gone, or whose metadata is incomplete, is dropped (and logged) too, so no
    layer is listed without content.
    """

    def __init__(self, root, driver):
        self.driver = driver
        self._layers_dir = make_state_dir(os.path.join(root, "sha256"))
        self._mounts_dir = make_state_dir(os.path.join(root, "mounts"))
        self._tmp_dir = make_state_dir(os.path.join(root, "tmp"))
        self._lock = threading.RLock()
        self._layers = {}
        self._mounts = {}
        self._refs = collections.Counter()
        self._recover_interrupted()
        self._restore()

    def _recover_interrupted(self):
        """Undo what a killed daemon was doing: each entry of tmp/ is a layer being written
        (write-set-*) or deleted (remove-*); the driver layers it names belong to nothing."""
        for name in sorted(os.listdir(self._tmp_dir)):
            cache_ids = self._finish_removal(os.path.join(self._tmp_dir, name))
            log.warning("removed %s, left in %s by an interrupted layer operation%s", name,
                        self._tmp_dir, " (driver layers %s)" % ", ".join(cache_ids) if cache_ids else "")

    def _finish_removal(self, path):
        """Remove the metadata at `path` (in tmp/) and the driver layers it names; returns
        their IDs."""
        cache_ids = []
        for key in DRIVER_ID_FILES:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                cache_ids.append(read_state(os.path.join(path, key)))
        for cache_id in cache_ids:
            self._remove_driver_layer(cache_id)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
        return cache_ids

    def _restore(self):
        for name in os.listdir(self._layers_dir):
            try:
                layer = self._read_layer(name)
            except (FileNotFoundError, ValueError) as err:
                # Not written by this store (whose layers appear whole), but no layer either.
                log.warning("removing layer sha256:%s: its metadata is incomplete (%s)", name, err)
                self._finish_removal(self._unrecord(self._layers_dir, name))
                continue
            except OSError as err:
                log.warning("ignoring layer %s: %s", name, err)
                continue
            if not self.driver.exists(layer.cache_id):
                log.warning("removing layer %s: its %s layer %s is gone", layer.chain_id,
                            self.driver.name, layer.cache_id)
                shutil.rmtree(self._unrecord(self._layers_dir, name), ignore_errors=True)
                continue
            # No read-only layer has a user at start-up: put() unmounts what a killed
            # daemon may have left mounted (a push or a save reading it).
            self.driver.put(layer.cache_id)
            self._layers[layer.chain_id] = layer
        for name in os.listdir(self._mounts_dir):
            try:
                self._mounts[name] = self._read_mount(name)
            except (OSError, ValueError) as err:
                log.warning("ignoring writable layer of %s: %s", name, err)
        for layer in self._layers.values():
            self._refs[layer.parent] += 1 if layer.parent else 0
        for mount in self._mounts.values():
            self._refs[mount.parent] += 1 if mount.parent else 0

    def _read_layer(self, hex_name):
        directory = os.path.join(self._layers_dir, hex_name)
        parent_file = os.path.join(directory, "parent")
        parent = read_state(parent_file) if os.path.exists(parent_file) else None
        return Layer(DIGEST_PREFIX + hex_name, read_state(os.path.join(directory, "diff")), parent,
                     read_state(os.path.join(directory, "cache-id")),
                     int(read_state(os.path.join(directory, "size"))))

    def _read_mount(self, name):
        directory = os.path.join(self._mounts_dir, name)
        init_file = os.path.join(directory, "init-id")
        parent_file = os.path.join(directory, "parent")
        return Mount(name, read_state(os.path.join(directory, "mount-id")),
                     read_state(init_file) if os.path.exists(init_file) else None,
                     read_state(parent_file) if os.path.exists(parent_file) else None)

    def prune_unreferenced(self):
        """Delete layers nothing refers to: what a crash between registering a layer and
        creating its image left behind. Call once every image has taken its references."""
        with self._lock:
            orphans = [chain for chain in self._layers if self._refs[chain] == 0]
            for chain in orphans:
                log.info("removing unreferenced layer %s", chain)
                self._refs[chain] += 1
                self.release(chain)

    # -- queries ---------------------------------------------------------------------------

    def exists(self, chain):
        with self._lock:
            return chain in self._layers

    def get(self, chain):
        with self._lock:
            try:
                return self._layers[chain]
            except KeyError:
                raise NotFound("layer does not exist: %s" % chain) from None

    def all_layers(self):
        with self._lock:
            return list(self._layers.values())

    def size(self, chain):
        """Layer.Size: the bytes of the whole stack, this layer and all below it."""
        total = 0
        with self._lock:
            while chain:
                layer = self.get(chain)
                total += layer.size
                chain = layer.parent
        return total

    def cache_id(self, chain):
        return self.get(chain).cache_id if chain else None

    def metadata(self, chain):
        """The driver's GraphDriver.Data for the layer (directories, for inspect)."""
        return self.driver.get_metadata(self.get(chain).cache_id)

    def tar_stream(self, chain, out):
        """Layer.TarStream: write the layer's uncompressed tar to `out` -- the very bytes it was
        registered from, put back together from its tar-split and the layer's files, so the
        sha256 is still its diff ID. (Without a tar-split, the driver's diff: same files,
        different bytes.)"""
        layer = self.get(chain)
        split_path = os.path.join(self._layers_dir, hex_of(chain), TAR_SPLIT_FILE)
        if not os.path.exists(split_path):
            self.driver.diff(layer.cache_id, self.cache_id(layer.parent), out)
            return
        with self.driver.mounted(layer.cache_id) as layer_root:
            assemble_tar(split_path, layer_root, out)

    # -- references --------------------------------------------------------------------------

    def hold(self, chain):
        """Take a reference: the layer stays until the matching release()."""
        with self._lock:
            if chain not in self._layers:
                raise NotFound("layer does not exist: %s" % chain)
            self._refs[chain] += 1

    def release(self, chain):
        """Drop a reference. Returns the chain IDs of the layers this deleted, top first."""
        removed = []
        with self._lock:
            while chain:
                self._refs[chain] -= 1
                if self._refs[chain] > 0:
                    break
                del self._refs[chain]
                layer = self._layers.pop(chain)
                self._delete_layer(layer)
                removed.append(chain)
                chain = layer.parent
        return removed

    def _delete_layer(self, layer):
        """Metadata out of place first (into tmp/, still naming the driver layer), then the
        driver's copy, then the metadata: a crash at any point leaves either a whole layer
        or an entry in tmp/ that the next start-up finishes deleting."""
        doomed = self._unrecord(self._layers_dir, hex_of(layer.chain_id))
        self._remove_driver_layer(layer.cache_id)
        shutil.rmtree(doomed, ignore_errors=True)

    def _unrecord(self, directory, name):
        """Move the metadata `directory`/`name` into tmp/ (a crash leaves it for the next
        start-up to finish); returns its path there."""
        doomed = os.path.join(self._tmp_dir, "remove-%s-%s" % (name, secrets.token_hex(4)))
        os.rename(os.path.join(directory, name), doomed)
        fsync_dir(directory)
        return doomed

    def _remove_driver_layer(self, cache_id):
        try:
            if self.driver.exists(cache_id):
                self.driver.remove(cache_id)
        except Exception as err:  # the metadata is gone; a leftover directory only costs space
            log.warning("failed to remove %s layer %s: %s", self.driver.name, cache_id, err)

    # -- registering a read-only layer ----------------------------------------------------

    def register(self, stream, parent=None, expected_diff_id=None):
        """Register: unpack the layer tar `stream` on top of `parent`; returns the chain ID,
        held (the caller must release() it).

        The tar is applied into a new driver layer while its sha256 is computed, in one pass.
        If the diff ID is not `expected_diff_id`, or anything fails, the new driver layer is
        removed and nothing is recorded. If the chain already exists, the new copy is dropped
        and the existing layer is held instead.
        """
        with storage_errors("failed to register layer"):
            return self._register(stream, parent, expected_diff_id)

    def _register(self, stream, parent, expected_diff_id):
        if parent:
            self.hold(parent)   # the parent must outlive the apply; kept as the child's link
        cache_id = secrets.token_hex(32)
        staging = self._stage({"cache-id": cache_id})
        try:
            self.driver.create(cache_id, self.cache_id(parent))
            split_path = os.path.join(staging, TAR_SPLIT_FILE)
            with TarSplitRecorder(archive.decompress_stream(stream), split_path) as recorder:
                diff_id, size = self.driver.apply_diff(cache_id, self.cache_id(parent), recorder)
            if expected_diff_id is not None and diff_id != expected_diff_id:
                raise InvalidDiffID(expected_diff_id, diff_id)
            layer = Layer(chain_id(parent, diff_id), diff_id, parent, cache_id, size)
            with self._lock:
                if layer.chain_id in self._layers:
                    self._refs[layer.chain_id] += 1
                    raise _AlreadyRegistered(layer.chain_id)
                self._commit_layer(layer, staging)
                self._layers[layer.chain_id] = layer
                self._refs[layer.chain_id] += 1
            return layer.chain_id
        except _AlreadyRegistered as existing:
            self._abandon(cache_id, parent)
            return existing.chain_id
        except BaseException:
            self._abandon(cache_id, parent)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _abandon(self, cache_id, parent):
        self._remove_driver_layer(cache_id)
        if parent:
            self.release(parent)

    def _stage(self, files):
        """A new staging directory in tmp/ holding the state files `files` ({name: text}):
        the driver IDs go here before the driver makes them (fileMetadataTransaction)."""
        staging = tempfile.mkdtemp(prefix="write-set-", dir=self._tmp_dir)
        try:
            for name, text in files.items():
                write_state(os.path.join(staging, name), text)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    def _commit_layer(self, layer, staging):
        """Complete the layer's metadata in its staging directory (which already holds its
        cache-id and tar-split) and rename it into place: a layer is recorded whole or not at
        all (fileMetadataTransaction)."""
        files = {"diff": layer.diff_id, "size": str(layer.size)}
        if layer.parent:
            files["parent"] = layer.parent
        for name, text in files.items():
            write_state(os.path.join(staging, name), text)
        os.chmod(staging, DIR_MODE)
        os.rename(staging, os.path.join(self._layers_dir, hex_of(layer.chain_id)))
        fsync_dir(self._layers_dir)

    # -- writable layers of containers -----------------------------------------------------

    def create_rw(self, name, parent, init_func=None):
        """CreateRWLayer: a writable layer for container `name` on the read-only layer `parent`.

        With `init_func`, an -init layer goes between them first: init_func(path) writes the
        files every container needs to find (mount points for /etc/hosts, resolv.conf), so
        they are not part of the container's own changes.
        """
        with self._lock:
            if name in self._mounts:
                raise Conflict("a writable layer already exists for %s" % name)
            if parent:
                self.hold(parent)
        mount_id = secrets.token_hex(32)
        mount = Mount(name, mount_id, mount_id + "-init" if init_func else None, parent)
        try:
            with storage_errors("failed to create the writable layer of %s" % name):
                self._create_rw_layers(mount, init_func)
        except BaseException:
            if parent:
                self.release(parent)
            raise
        with self._lock:
            self._mounts[name] = mount
        return mount

    def _create_rw_layers(self, mount, init_func):
        """Like a read-only layer: the metadata is staged first (naming the driver layers
        about to be made), the layers are made, and a rename records the whole."""
        files = {"mount-id": mount.mount_id, "init-id": mount.init_id, "parent": mount.parent}
        staging = self._stage({key: text for key, text in files.items() if text})
        try:
            below = self.cache_id(mount.parent)
            if mount.init_id:
                self.driver.create_read_write(mount.init_id, below)
                with self.driver.mounted(mount.init_id) as init_path:
                    init_func(init_path)
                below = mount.init_id
            self.driver.create_read_write(mount.mount_id, below)
            os.rename(staging, os.path.join(self._mounts_dir, mount.name))
            fsync_dir(self._mounts_dir)
        except BaseException:
            self._remove_mount_layers(mount)
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _remove_mount_layers(self, mount):
        for cache_id in (mount.mount_id, mount.init_id):
            if cache_id:
                self._remove_driver_layer(cache_id)

    def get_rw(self, name):
        with self._lock:
            try:
                return self._mounts[name]
            except KeyError:
                raise NotFound("no writable layer for %s" % name) from None

    def below_rw(self, mount):
        """The driver ID a writable layer is stacked on: its -init layer, else its parent."""
        return mount.init_id or self.cache_id(mount.parent)

    def release_rw(self, name):
        """ReleaseRWLayer: delete container `name`'s writable layer (and -init layer). Returns
        the chain IDs of read-only layers this left unreferenced and deleted."""
        mount = self.get_rw(name)
        doomed = self._unrecord(self._mounts_dir, name)
        with self._lock:
            del self._mounts[name]
        self._remove_mount_layers(mount)
        shutil.rmtree(doomed, ignore_errors=True)
        return self.release(mount.parent) if mount.parent else []


class _AlreadyRegistered(Exception):
    def __init__(self, chain):
        super().__init__(chain)
        self.chain_id = chain
