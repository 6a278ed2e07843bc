"""The graph: Docker's image store, from Docker 1.8.2's `graph` package, content-addressed.

Docker 1.8.2 kept images in graph/ (graph.go, tags.go, import.go, load.go, export.go,
history.go, list.go, service.go): each image was one directory holding its JSON and a layer,
named by a random ID. Docker 1.10 replaced the random IDs with content addresses, splitting the
graph into an image store (image/store.go) and a layer store (layer/layer_store.go). pydockerd
keeps 1.8's names -- the graph, the tag store -- with the modern model, because that is what
today's clients and registries speak:

- An image is its config JSON, and its ID is the sha256 of those exact bytes. Nothing else
  names it, so the same bytes loaded twice are the same image.
- A layer is a tar of file changes. Its diff ID is the sha256 of the uncompressed tar. Layers
  stack, so a layer is stored under its chain ID, which names the layer together with
  everything below it (the OCI image spec's definition):

      ChainID(L0) = DiffID(L0)
      ChainID(Ln) = sha256("ChainID(Ln-1) DiffID(Ln)")

- Layers are reference counted. A layer lives while an image has it on top, a layer is stacked
  on it, a container's writable layer is mounted on it, or an operation in progress holds it
  (a load between registering a layer and creating the image that uses it). When the last
  reference goes, the layer goes, and its parent loses a reference in turn.

On disk, under <root>/graph (directories 0700, every state file written atomically):

    imagedb/content/sha256/<hex>            the image config bytes, exactly as received
    imagedb/metadata/sha256/<hex>/parent    the parent image of a committed or loaded image
    imagedb/metadata/sha256/<hex>/lastUpdated   when the image was last tagged
    layerdb/sha256/<chain hex>/diff         the layer's diff ID
    layerdb/sha256/<chain hex>/size         bytes the layer adds (its diff size)
    layerdb/sha256/<chain hex>/cache-id     the graph driver's ID for the layer
    layerdb/sha256/<chain hex>/parent       the chain ID below it (absent for a base layer)
    layerdb/sha256/<chain hex>/tar-split.json.gz   what it takes to rebuild the layer's tar
    layerdb/mounts/<container>/{mount-id,init-id,parent}   a container's writable layer
    layerdb/tmp/                            layer metadata being written (renamed into place)

The module reads top to bottom: digests and times; the image config shapes Docker marshals;
tar-split; the layer store; the image store; the streams of
`docker load` and `docker save`; filters; Graph, the service the API calls; and last the
archive formats load reads and save writes.
"""
import base64
import collections
import contextlib
import errno
import gzip
import hashlib
import json
import logging
import lzma
import os
import posixpath
import re
import secrets
import shutil
import tarfile
import tempfile
import threading
import time
import zlib
from datetime import datetime, timedelta, timezone

from drivers import archive
from drivers.linux import go_arch
from drivers.errdefs import Conflict, DockerError, InvalidParameter, NotFound, System
from drivers.ioutils import atomic_write_file, fsync_dir
from drivers.reference import Reference, is_full_id, parse_normalized_named, parse_tag

log = logging.getLogger("pydockerd.graph")

DIGEST_PREFIX = "sha256:"
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
DIR_MODE = 0o700
STATE_FILE_MODE = 0o600
COPY_CHUNK = 1 << 20
MAX_JSON_MEMBER = 64 << 20   # a config, manifest or index larger than this is not one


# ---------------------------------------------------------------------------------------------
# Digests, chain IDs, times, JSON as Go writes it
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
    if not isinstance(value, str) or not _DIGEST_RE.match(value):
        raise InvalidParameter("invalid %s: %r is not a sha256 digest" % (what, value))
    return value


_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
               ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def go_json(value):
    """json.Marshal: compact UTF-8 JSON with Go's HTML-safe escapes of <, > and &.

    Key order is the caller's: Go writes struct fields in declaration order and map keys
    sorted, and an image ID is the hash of these bytes, so the order is part of the format.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escape in _GO_ESCAPES:
        text = text.replace(char, escape)
    return text.encode("utf-8")


def sorted_dict(mapping):
    """A dict whose keys are in sorted order, as Go marshals a map."""
    return dict(sorted(mapping.items()))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_TIME_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
                      r"(?:([Zz])|([+-])(\d\d):(\d\d))$")


class Timestamp(collections.namedtuple("Timestamp", "seconds nanos offset")):
    """A time.Time as images carry it: Unix seconds, nanoseconds, and the zone offset it was
    written in (RFC 3339 keeps the offset, and Go prints a time back in its own offset)."""

    @classmethod
    def now(cls):
        now_ns = time.time_ns()
        return cls(now_ns // 10 ** 9, now_ns % 10 ** 9, 0)

    @classmethod
    def parse(cls, text):
        """time.Parse(RFC3339Nano); a missing or unreadable time is Go's zero time."""
        match = _TIME_RE.match(text) if isinstance(text, str) else None
        if not match:
            return ZERO_TIME
        year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
        nanos = int((match.group(7) or "").ljust(9, "0"))
        offset = 0
        if match.group(9):
            offset = (int(match.group(10)) * 60 + int(match.group(11))) * 60
            offset = -offset if match.group(9) == "-" else offset
        try:
            local = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
        except ValueError:
            return ZERO_TIME
        seconds = (local - _EPOCH) // timedelta(seconds=1) - offset
        return cls(seconds, nanos, offset)

    @property
    def instant(self):
        """What to compare: two times are equal when they name the same instant."""
        return (self.seconds, self.nanos)

    def rfc3339nano(self):
        """Format(time.RFC3339Nano): trailing zeros of the fraction dropped, Z for UTC."""
        local = _EPOCH + timedelta(seconds=self.seconds + self.offset)
        text = "%04d-%02d-%02dT%02d:%02d:%02d" % (local.year, local.month, local.day,
                                                 local.hour, local.minute, local.second)
        if self.nanos:
            text += "." + ("%09d" % self.nanos).rstrip("0")
        if self.offset == 0:
            return text + "Z"
        sign = "-" if self.offset < 0 else "+"
        minutes = abs(self.offset) // 60
        return text + "%s%02d:%02d" % (sign, minutes // 60, minutes % 60)


ZERO_TIME = Timestamp(-62135596800, 0, 0)   # 0001-01-01T00:00:00Z, Go's time.Time{}
UNIX_EPOCH_TIME = Timestamp(0, 0, 0)


# ---------------------------------------------------------------------------------------------
# The container config, as Go's container.Config marshals it
# ---------------------------------------------------------------------------------------------

_OMITEMPTY = object()

# container.Config's fields in declaration order with their zero values; _OMITEMPTY marks the
# `json:",omitempty"` fields. Image configs embed this struct twice (config, container_config)
# and `docker image inspect` shows both in exactly this shape, whatever the image file had.
CONTAINER_CONFIG_FIELDS = (
    ("Hostname", ""), ("Domainname", ""), ("User", ""), ("AttachStdin", False),
    ("AttachStdout", False), ("AttachStderr", False), ("ExposedPorts", _OMITEMPTY),
    ("Tty", False), ("OpenStdin", False), ("StdinOnce", False), ("Env", None), ("Cmd", None),
    ("Healthcheck", _OMITEMPTY), ("ArgsEscaped", _OMITEMPTY), ("Image", ""), ("Volumes", None),
    ("WorkingDir", ""), ("Entrypoint", None), ("NetworkDisabled", _OMITEMPTY),
    ("MacAddress", _OMITEMPTY), ("OnBuild", None), ("Labels", None), ("StopSignal", _OMITEMPTY),
    ("StopTimeout", _OMITEMPTY), ("Shell", _OMITEMPTY),
)


def container_config_shape(source):
    """Reshape a config dict the way json.Unmarshal then json.Marshal into container.Config would:
    keys matched case-insensitively, every field present in declaration order, omitempty
    fields only when set, unknown keys dropped."""
    by_lower_name = {key.lower(): value for key, value in (source or {}).items()}
    shaped = {}
    for name, zero in CONTAINER_CONFIG_FIELDS:
        value = by_lower_name.get(name.lower(), None if zero is _OMITEMPTY else zero)
        if zero is _OMITEMPTY and value in (None, False, "", {}, []):
            continue
        shaped[name] = value
    return shaped


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

class InvalidDiffID(InvalidParameter):
    """A layer's content does not hash to the diff ID its image config promises."""

    def __init__(self, expected, actual):
        super().__init__("invalid diffID: expected %s, got %s" % (json.dumps(expected), json.dumps(actual)))
        self.expected = expected
        self.actual = actual


class ImageDeleteConflict(Conflict):
    """imageDeleteConflict: why an image cannot be deleted. A hard conflict (a child image, a
    running container) cannot be forced."""

    def __init__(self, image_id, message, hard=False):
        super().__init__("conflict: unable to delete %s (%s) - %s" % (
            truncate_id(image_id), "cannot be forced" if hard else "must be forced", message))
        self.hard = hard


def no_such_image(name):
    return NotFound("No such image: %s" % name)


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


def _read_text(path):
    with open(path) as state_file:
        return state_file.read().strip()


def _write_state(path, text):
    atomic_write_file(path, text.encode("utf-8"), STATE_FILE_MODE)


def _makedirs(path):
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    return path


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
            copied = _copy(_Limited(source, size), out)
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
    """

    def __init__(self, root, driver):
        self.driver = driver
        self._layers_dir = _makedirs(os.path.join(root, "sha256"))
        self._mounts_dir = _makedirs(os.path.join(root, "mounts"))
        self._tmp_dir = os.path.join(root, "tmp")
        shutil.rmtree(self._tmp_dir, ignore_errors=True)   # half-written metadata of a crash
        _makedirs(self._tmp_dir)
        self._lock = threading.RLock()
        self._layers = {}
        self._mounts = {}
        self._refs = collections.Counter()
        self._restore()

    def _restore(self):
        for name in os.listdir(self._layers_dir):
            try:
                layer = self._read_layer(name)
            except (OSError, ValueError) as err:
                log.warning("ignoring layer %s: %s", name, err)
                continue
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
        parent = _read_text(parent_file) if os.path.exists(parent_file) else None
        return Layer(DIGEST_PREFIX + hex_name, _read_text(os.path.join(directory, "diff")), parent,
                     _read_text(os.path.join(directory, "cache-id")),
                     int(_read_text(os.path.join(directory, "size"))))

    def _read_mount(self, name):
        directory = os.path.join(self._mounts_dir, name)
        init_file = os.path.join(directory, "init-id")
        parent_file = os.path.join(directory, "parent")
        return Mount(name, _read_text(os.path.join(directory, "mount-id")),
                     _read_text(init_file) if os.path.exists(init_file) else None,
                     _read_text(parent_file) if os.path.exists(parent_file) else None)

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
        """Metadata first, then the driver's copy: a crash in between leaves disk space to
        reclaim, never a layer whose files are gone."""
        doomed = os.path.join(self._tmp_dir, "remove-" + hex_of(layer.chain_id))
        os.rename(os.path.join(self._layers_dir, hex_of(layer.chain_id)), doomed)
        fsync_dir(self._layers_dir)
        shutil.rmtree(doomed, ignore_errors=True)
        self._remove_driver_layer(layer.cache_id)

    def _remove_driver_layer(self, cache_id):
        try:
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
        staging = tempfile.mkdtemp(prefix="write-set-", dir=self._tmp_dir)
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
        if self.driver.exists(cache_id):
            self._remove_driver_layer(cache_id)
        if parent:
            self.release(parent)

    def _commit_layer(self, layer, staging):
        """Complete the layer's metadata in its staging directory (which already holds the
        tar-split) and rename it into place: a layer is recorded whole or not at all
        (fileMetadataTransaction)."""
        files = {"diff": layer.diff_id, "size": str(layer.size), "cache-id": layer.cache_id}
        if layer.parent:
            files["parent"] = layer.parent
        for name, text in files.items():
            _write_state(os.path.join(staging, name), text)
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
        with storage_errors("failed to create the writable layer of %s" % name):
            self._create_rw_layers(mount, init_func)
        with self._lock:
            self._mounts[name] = mount
        return mount

    def _create_rw_layers(self, mount, init_func):
        try:
            below = self.cache_id(mount.parent)
            if mount.init_id:
                self.driver.create_read_write(mount.init_id, below)
                with self.driver.mounted(mount.init_id) as init_path:
                    init_func(init_path)
                below = mount.init_id
            self.driver.create_read_write(mount.mount_id, below)
            self._write_mount(mount)
        except BaseException:
            self._remove_mount_layers(mount)
            if mount.parent:
                self.release(mount.parent)
            raise

    def _write_mount(self, mount):
        """Like a layer's metadata: written aside, then renamed into place whole."""
        staging = tempfile.mkdtemp(prefix="write-set-", dir=self._tmp_dir)
        try:
            _write_state(os.path.join(staging, "mount-id"), mount.mount_id)
            if mount.init_id:
                _write_state(os.path.join(staging, "init-id"), mount.init_id)
            if mount.parent:
                _write_state(os.path.join(staging, "parent"), mount.parent)
            os.rename(staging, os.path.join(self._mounts_dir, mount.name))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(self._mounts_dir)

    def _remove_mount_layers(self, mount):
        for cache_id in (mount.mount_id, mount.init_id):
            if cache_id and self.driver.exists(cache_id):
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
        self._remove_mount_layers(mount)
        shutil.rmtree(os.path.join(self._mounts_dir, name), ignore_errors=True)
        fsync_dir(self._mounts_dir)
        with self._lock:
            del self._mounts[name]
        return self.release(mount.parent) if mount.parent else []


class _AlreadyRegistered(Exception):
    def __init__(self, chain):
        super().__init__(chain)
        self.chain_id = chain


# ---------------------------------------------------------------------------------------------
# The image store (image/store.go)
# ---------------------------------------------------------------------------------------------

class Image(object):
    """One image: `raw` config bytes, `id` = sha256 of them, the parsed `config`, its layers as
    `diff_ids` and `chain_ids` (bottom first), `parent` image ID ("" if none), `created`
    (a Timestamp) and `size` (bytes of all its layers)."""

    def __init__(self, raw, parent=""):
        self.raw = raw
        self.id = sha256_digest(raw)
        self.config = parse_image_config(raw)
        self.diff_ids = list(self.config["rootfs"].get("diff_ids") or [])
        self.chain_ids = chain_ids_of(self.diff_ids)
        self.parent = parent
        self.created = Timestamp.parse(self.config.get("created"))
        self.size = 0

    @property
    def top_chain_id(self):
        """RootFS.ChainID(): the layer the image's root filesystem is, or None for no layers."""
        return self.chain_ids[-1] if self.chain_ids else None

    @property
    def container_config(self):
        """The image's `config` (what containers start with), or None."""
        return self.config.get("config")

    @property
    def labels(self):
        return (self.container_config or {}).get("Labels") or {}

    @property
    def history(self):
        return self.config.get("history") or []

    @property
    def os(self):
        return self.config.get("os") or "linux"


def parse_image_config(raw):
    """image.NewFromJSON plus the store's checks: a JSON object with a "layers" rootfs whose
    diff IDs are sha256 digests."""
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise InvalidParameter("invalid image JSON: %s" % err) from None
    if not isinstance(config, dict):
        raise InvalidParameter("invalid image JSON: not an object")
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict):
        raise InvalidParameter("invalid image JSON, no RootFS key")
    if rootfs.get("type") != "layers":
        raise InvalidParameter("Invalid RootFS type %r" % rootfs.get("type"))
    diff_ids = rootfs.get("diff_ids") or []
    if not isinstance(diff_ids, list):
        raise InvalidParameter("invalid image JSON: rootfs.diff_ids is not a list")
    for diff_id in diff_ids:
        validate_digest(diff_id, "diff ID")
    return config


class ImageStore(object):
    """The image configs, by ID, with their parent links and last-tagged times.

    Each image holds a reference on its top layer in the layer store for as long as it exists.
    """

    def __init__(self, root, layers):
        self.layers = layers
        self._content_dir = _makedirs(os.path.join(root, "content", "sha256"))
        self._metadata_dir = _makedirs(os.path.join(root, "metadata", "sha256"))
        self._lock = threading.RLock()
        self._images = {}
        self._restore()

    def _restore(self):
        for name in os.listdir(self._content_dir):
            try:
                image = self._read_image(name)
                self._take_layer(image)
            except (OSError, ValueError, DockerError) as err:
                log.warning("couldn't restore image sha256:%s: %s", name, err)
                continue
            self._images[image.id] = image

    def _read_image(self, hex_name):
        with open(os.path.join(self._content_dir, hex_name), "rb") as content:
            raw = content.read()
        if sha256_digest(raw) != DIGEST_PREFIX + hex_name:
            raise ValueError("failed to verify: content does not match its digest")
        return Image(raw, parent=self._read_metadata(DIGEST_PREFIX + hex_name, "parent") or "")

    def _take_layer(self, image):
        """The image's reference on its top layer, which also gives the image its size."""
        if image.top_chain_id:
            self.layers.hold(image.top_chain_id)
            image.size = self.layers.size(image.top_chain_id)

    def _metadata_path(self, image_id, key):
        return os.path.join(self._metadata_dir, hex_of(image_id), key)

    def _read_metadata(self, image_id, key):
        try:
            return _read_text(self._metadata_path(image_id, key))
        except FileNotFoundError:
            return None

    def _write_metadata(self, image_id, key, text):
        path = self._metadata_path(image_id, key)
        _makedirs(os.path.dirname(path))
        _write_state(path, text)

    def create(self, raw):
        """Create: store config bytes `raw` as an image; returns its ID. Every layer of its
        rootfs must already be registered. Creating an existing image changes nothing."""
        image = Image(raw)
        with self._lock:
            if image.id in self._images:
                return image.id
            try:
                self._take_layer(image)
            except NotFound:
                raise InvalidParameter("failed to get layer %s: layer does not exist"
                                       % image.top_chain_id) from None
            try:
                atomic_write_file(os.path.join(self._content_dir, hex_of(image.id)), raw,
                                  STATE_FILE_MODE)
            except BaseException:
                if image.top_chain_id:
                    self.layers.release(image.top_chain_id)
                raise
            self._images[image.id] = image
        return image.id

    def get(self, image_id):
        with self._lock:
            return self._images.get(image_id)

    def all_images(self):
        with self._lock:
            return list(self._images.values())

    def search(self, term):
        """Search: the image whose ID starts with `term` (with or without "sha256:"); None when
        no image or more than one matches."""
        prefix = hex_of(term)
        if not prefix or not re.match(r"^[a-f0-9]+$", prefix):
            return None
        with self._lock:
            matches = [image for image in self._images.values() if hex_of(image.id).startswith(prefix)]
        return matches[0] if len(matches) == 1 else None

    def children(self, image_id):
        with self._lock:
            return [image.id for image in self._images.values() if image.parent == image_id]

    def set_parent(self, image_id, parent_id):
        with self._lock:
            self._write_metadata(image_id, "parent", parent_id)
            self._images[image_id].parent = parent_id

    def set_last_updated(self, image_id):
        self._write_metadata(image_id, "lastUpdated", Timestamp.now().rfc3339nano())

    def last_updated(self, image_id):
        text = self._read_metadata(image_id, "lastUpdated")
        return Timestamp.parse(text) if text else ZERO_TIME

    def delete(self, image_id):
        """Delete: forget the image and release its top layer. Returns the deleted layers."""
        with self._lock:
            image = self._images.pop(image_id)
            os.unlink(os.path.join(self._content_dir, hex_of(image_id)))
            shutil.rmtree(os.path.join(self._metadata_dir, hex_of(image_id)), ignore_errors=True)
            fsync_dir(self._content_dir)
            return self.layers.release(image.top_chain_id) if image.top_chain_id else []


# ---------------------------------------------------------------------------------------------
# Streams: load progress, the uploaded archive, the saved archive
# ---------------------------------------------------------------------------------------------

def human_size(size):
    """units.HumanSize: four significant digits and a decimal (1000-based) unit."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    size = float(size)
    unit = 0
    while size >= 1000 and unit < len(units) - 1:
        size /= 1000
        unit += 1
    return "%.4g%s" % (size, units[unit])


def progress_message(action, short_id, current, total):
    """One JSON progress message as dockerd's progress reader sends it, bar included."""
    percent = min(int(current * 100 / total) // 2, 50) if total else 0
    bar = "[%s>%s] " % ("=" * percent, " " * (50 - percent))
    numbers = "%8s/%s" % (human_size(current), human_size(total))
    if current > total:
        numbers = "%8s" % human_size(current)
    return {"status": action, "progressDetail": {"current": current, "total": total},
            "progress": bar + numbers, "id": short_id}


class ProgressReader(object):
    """progress.NewProgressReader: pass reads through and report every 1% (512 KiB at most)."""

    def __init__(self, stream, total, short_id, action, report):
        self._stream = stream
        self._total = total
        self._short_id = short_id
        self._action = action
        self._report = report
        self._current = 0
        self._reported = 0
        self._done = False
        self._every = min(512 * 1024, max(int(total * 0.01), 1))

    def read(self, size=-1):
        data = self._stream.read(size)
        self._current += len(data)
        if data and self._current - self._reported > self._every or not data and not self._done:
            self._done = not data
            self._reported = self._current
            self._report(progress_message(self._action, self._short_id, self._current, self._total))
        return data


def _clean_member_name(name):
    """A tar member's name as an archive-relative path; None for names that point outside."""
    name = posixpath.normpath(name.lstrip("/")) if name else ""
    if name in ("", ".") or name == ".." or name.startswith("../"):
        return None
    return name


_UNREADABLE_UPLOAD = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, archive.ArchiveError)


class Upload(object):
    """An uploaded tar (`docker load`), spooled to a private directory so members can be read
    in any order: docker save writes manifest.json last, after the layers it describes.

    The members' own names never reach the filesystem: file n is stored as <dir>/<n>, and
    names, symlinks and hard links are resolved in a table, inside the archive only. So a
    hostile name cannot write anywhere, and a link cannot lead outside the upload.
    """

    MAX_LINK_HOPS = 40

    def __init__(self, stream, directory):
        self.directory = directory
        self._files = {}
        self._links = {}
        try:
            with tarfile.open(fileobj=archive.decompress_stream(stream), mode="r|",
                              bufsize=COPY_CHUNK) as upload:
                for member in upload:
                    self._spool(upload, member)
        except _UNREADABLE_UPLOAD as err:
            raise InvalidParameter("Error processing tar file: %s" % (err or "unexpected EOF")) from None
        except OSError as err:
            if err.errno is not None:
                raise   # the disk, not the upload
            raise InvalidParameter("Error processing tar file: %s" % err) from None

    def _spool(self, upload, member):
        name = _clean_member_name(member.name)
        if name is None:
            return
        if member.isreg():
            path = os.path.join(self.directory, str(len(self._files)))
            with upload.extractfile(member) as source, open(path, "wb") as target:
                copied = _copy(source, target)
            if copied != member.size:
                raise InvalidParameter("Error processing tar file: unexpected EOF")
            self._files[name] = path
            self._links.pop(name, None)
        elif member.issym():
            target = posixpath.join(posixpath.dirname(name), member.linkname)
            self._links[name] = _clean_member_name(target)
        elif member.islnk():
            self._links[name] = _clean_member_name(member.linkname)

    def names(self):
        return set(self._files) | set(self._links)

    def path(self, name):
        """The spooled file of member `name` (links followed, inside the archive); None if the
        archive has no such regular file."""
        name = _clean_member_name(name)
        for _ in range(self.MAX_LINK_HOPS):
            if name is None:
                return None
            if name in self._files:
                return self._files[name]
            name = self._links.get(name)
        return None

    def read(self, name, what):
        path = self.path(name)
        if path is None:
            raise InvalidParameter("invalid archive: %s %s not found" % (what, name))
        if os.path.getsize(path) > MAX_JSON_MEMBER:
            raise InvalidParameter("invalid archive: %s %s is too large" % (what, name))
        with open(path, "rb") as member:
            return member.read()

    def read_json(self, name, what):
        try:
            return json.loads(self.read(name, what).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise InvalidParameter("invalid %s %s: %s" % (what, name, err)) from None


def _copy(source, target):
    copied = 0
    while True:
        chunk = source.read(COPY_CHUNK)
        if not chunk:
            return copied
        target.write(chunk)
        copied += len(chunk)


def safe_manifest_path(path, what):
    """Refuse a path in a manifest that is absolute or climbs out with `..`: such a name
    cannot be a member of the archive, and following it is how a load reads the host."""
    if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
        raise InvalidParameter("invalid %s path in manifest: %r is outside the archive" % (what, path))
    return path


class TarWriter(object):
    """A tar stream as Go's archive/tar writes it for `docker save`: one 512-byte header per
    member, data padded to 512 bytes, two zero blocks at the end (no record padding)."""

    def __init__(self, out):
        self._out = out

    def _header(self, name, kind, size=0, mtime=0, mode=0o644, linkname=""):
        info = tarfile.TarInfo(name)
        info.type, info.size, info.mtime, info.mode, info.linkname = kind, size, mtime, mode, linkname
        self._out.write(info.tobuf(tarfile.GNU_FORMAT))

    def add_dir(self, name, mtime):
        self._header(name, tarfile.DIRTYPE, mtime=mtime, mode=0o755)

    def add_bytes(self, name, data, mtime):
        self._header(name, tarfile.REGTYPE, len(data), mtime)
        self._out.write(data)
        self._pad(len(data))

    def add_file(self, name, path, mtime):
        size = os.path.getsize(path)
        self._header(name, tarfile.REGTYPE, size, mtime)
        with open(path, "rb") as source:
            if _copy(source, self._out) != size:
                raise System("%s changed while it was being saved" % name)
        self._pad(size)

    def add_symlink(self, name, target, mtime):
        self._header(name, tarfile.SYMTYPE, mtime=mtime, mode=0o777, linkname=target)

    def _pad(self, size):
        if size % tarfile.BLOCKSIZE:
            self._out.write(tarfile.NUL * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))

    def close(self):
        self._out.write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))


# The legacy v1 image JSON written next to each layer by `docker save` (image.V1Image), in
# field order: older Docker versions load images from these files alone.
V1_IMAGE_FIELDS = ("id", "parent", "comment", "created", "container", "container_config",
                   "docker_version", "author", "config", "architecture", "variant", "os")


def v1_image_json(fields):
    """image.V1Image marshalled: declaration order, empty fields omitted except `created` and
    the container_config struct, which Go always writes."""
    out = {}
    for key in V1_IMAGE_FIELDS:
        value = fields.get(key)
        if key == "container_config":
            out[key] = container_config_shape(value)
        elif key == "created":
            out[key] = value or ZERO_TIME.rfc3339nano()
        elif key == "config" and value is not None:
            out[key] = container_config_shape(value)
        elif value:
            out[key] = value
    return out


def v1_layer_id(v1_fields, layer_chain_id, parent_v1_digest):
    """v1.CreateID: the v1 ID of one saved layer, derived from the image JSON and the chain
    below it, so the same image always saves to the same names."""
    with_links = dict(v1_image_json(v1_fields), layer_id=layer_chain_id)
    if parent_v1_digest:
        with_links["parent"] = parent_v1_digest
    return hashlib.sha256(go_json(sorted_dict(with_links))).hexdigest()


# ---------------------------------------------------------------------------------------------
# Filters of `docker images` and `docker image prune`
# ---------------------------------------------------------------------------------------------

IMAGES_FILTERS = ("dangling", "label", "before", "since", "reference")
PRUNE_FILTERS = ("dangling", "label", "label!", "until")


def validate_filters(filters, accepted):
    """filters.Args.Validate: refuse a filter name the endpoint does not know."""
    for name in filters:
        if name not in accepted:
            raise InvalidParameter("invalid filter '%s'" % name)


def invalid_filter(name, values):
    return InvalidParameter("Invalid filter '%s=%s'" % (name, "[" + " ".join(values) + "]"))


def match_labels(wanted, labels):
    """filters.Args.MatchKVList: every `key` must be present and every `key=value` equal."""
    if not wanted:
        return True
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def glob_match(pattern, name):
    """path.Match: shell globbing where `*` and `?` never match a slash."""
    return bool(_glob_regex(pattern).match(name))


def _glob_regex(pattern):
    out = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\":
            index += 1
            if index == len(pattern):
                raise InvalidParameter("syntax error in pattern")
            out.append(re.escape(pattern[index]))
        elif char == "[":
            end = pattern.find("]", index + 2)
            body = pattern[index + 1:end]
            if end == -1 or body in ("", "^"):
                raise InvalidParameter("syntax error in pattern")
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            index = end
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("^" + "".join(out) + "$", re.DOTALL)


def familiar_match(pattern, ref):
    """reference.FamiliarMatch: the glob matches `name:tag` or, failing that, `name`."""
    return glob_match(pattern, ref.familiar_string()) or glob_match(pattern, ref.familiar_name)


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_until(value):
    """timetypes.GetTimestamp: a prune `until` as Unix seconds, written as a duration before
    now (`24h`, `1h30m`), an RFC 3339 time, a date, or Unix seconds."""
    if re.match(r"^\d+(\.\d+)?$", value):
        return float(value)
    if _DURATION_RE.sub("", value) == "" and value:
        return time.time() - sum(float(amount) * _DURATION_UNITS[unit]
                         for amount, unit in _DURATION_RE.findall(value))
    for text in (value, value + "T00:00:00Z", value + "Z"):
        parsed = Timestamp.parse(text)
        if parsed is not ZERO_TIME:
            return parsed.seconds + parsed.nanos / 1e9
    raise InvalidParameter("failed to parse value as time or duration: %r" % value)


# ---------------------------------------------------------------------------------------------
# The graph: the image service the API calls
# ---------------------------------------------------------------------------------------------

HARD_CONFLICTS = ("children", "running")
SOFT_CONFLICTS = ("references", "stopped")

OCI_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                   "application/vnd.docker.distribution.manifest.list.v2+json")


class Graph(object):
    """The image store service (Docker 1.8.2's graph.Graph and TagStore, today's ImageService).

    Graph(root, driver, tagstore, image_in_use, image_running, events=None, docker_version="")
      root            the daemon root; the graph lives in <root>/graph
      driver          the graph driver (drivers.graphdriver.new)
      tagstore        drivers.tags.TagStore
      image_in_use    image_in_use(image_id) -> ID of a container using the image, or None
      image_running   image_running(image_id) -> ID of a *running* container using it, or None
                      (both required: without them `docker rmi` would delete images that
                      containers still use)
      events          events(type, action, actor_id, attributes) -- e.g.
                      events("image", "tag", "sha256:..", {"name": "busybox:latest"})
      docker_version  written into configs of imported images ("docker_version")

    Reading images:
      lookup(name) -> Image                  busybox, busybox:tag, name@sha256:.., ID or prefix
      images(all=False, filters=None, digests=False) -> [ImageSummary dict]
      inspect(name) -> dict; history(name) -> [dict]; count(); disk_usage(container_image_ids)
    Writing images:
      import_image(stream, ref=None, config=None, message="", src="-") -> image ID
      load(stream, progress=None, quiet=False) -> [{"stream": "Loaded image: ..\\n"}]
      save(names, out); tag(name, repo, tag) -> "repo:tag"; add_tag(image_id, ref) (no event)
      delete(name, force=False, noprune=False) -> [{"Untagged": ..} | {"Deleted": ..}]
      prune(dangling_only=True, filters=None) -> {"ImagesDeleted": [..], "SpaceReclaimed": n}
    Layers (the registry client, commit):
      has_layer(chain_id); register_layer(parent, stream, expected_diff_id=None) -> chain ID,
      held until release_layer(chain_id); create_image(config_bytes, parent_id=None) -> ID;
      layer_tar(chain_id, out)
    Containers' writable layers:
      create_rw_layer(container_id, image_id, init_func=None); mount_rw_layer(container_id)
      -> path; unmount_rw_layer; rw_layer_changes; rw_layer_diff(container_id, out);
      rw_layer_size; rw_layer_parent_size; commit_rw_layer(container_id) -> chain ID (held);
      release_rw_layer
    """

    def __init__(self, root, driver, tagstore, image_in_use, image_running, events=None,
                 docker_version=""):
        self.root = _makedirs(os.path.join(root, "graph"))
        self.driver = driver
        self.tagstore = tagstore
        self.events = events
        self._image_in_use = image_in_use
        self._image_running = image_running
        self.docker_version = docker_version
        self.layers = LayerStore(os.path.join(self.root, "layerdb"), driver)
        self.store = ImageStore(os.path.join(self.root, "imagedb"), self.layers)
        self.layers.prune_unreferenced()
        # Deleting checks, then changes, several stores; one lock keeps that a single step.
        self._lock = threading.RLock()

    # -- events ----------------------------------------------------------------------------

    def log_image_event(self, image_id, ref_name, action):
        """LogImageEvent: the image's labels (while it exists) plus `name`."""
        image = self.store.get(image_id)
        attributes = dict(image.labels) if image else {}
        attributes["name"] = ref_name
        if self.events:
            self.events("image", action, image_id, attributes)

    # -- finding images --------------------------------------------------------------------

    def lookup(self, name):
        """GetImage: the image `name` refers to, tried as (in order) a full ID, a reference in
        the tag store, and an ID prefix. NotFound("No such image: ...") otherwise."""
        if is_full_id(name) or _DIGEST_RE.match(name):
            image = self.store.get(DIGEST_PREFIX + hex_of(name))
            if image is None:
                raise no_such_image(DIGEST_PREFIX + hex_of(name))
            return image
        ref = parse_normalized_named(name)
        image_id = self.tagstore.get(ref)
        image = self.store.get(image_id) if image_id else None
        image = image or self.store.search(name)
        if image is None:
            raise no_such_image(ref.with_default_tag().familiar_string())
        return image

    def _tags_of(self, image_id):
        return [ref.familiar_string() for ref in self.tagstore.references(image_id) if ref.tag]

    def _digests_of(self, image_id):
        return [ref.familiar_string() for ref in self.tagstore.references(image_id) if ref.digest]

    # -- layers and images, for the registry client and commit ---------------------------

    def has_layer(self, chain):
        return self.layers.exists(chain)

    def register_layer(self, parent_chain_id, stream, expected_diff_id=None):
        """Unpack layer tar `stream` (any compression) on top of `parent_chain_id` (None for a
        base layer). Returns the chain ID, *held*: call release_layer(chain_id) once an image
        uses it (or when giving up), so a failed pull leaves no orphan layer.

        With `expected_diff_id`, a tar whose sha256 differs raises InvalidDiffID ("invalid
        diffID ...") and nothing is left behind. An existing chain is reused, not duplicated.
        """
        return self.layers.register(stream, parent_chain_id, expected_diff_id)

    def release_layer(self, chain):
        """Drop the reference register_layer() took. Returns layers deleted by it."""
        return self.layers.release(chain)

    def create_image(self, config_bytes, parent_id=None):
        """Store image config `config_bytes` (its layers must be registered); returns the image
        ID, "sha256:<hex>" of the bytes. Idempotent. `parent_id` records the image it was
        committed from, which makes that image an intermediate one."""
        image_id = self.store.create(config_bytes)
        if parent_id:
            self.store.set_parent(image_id, parent_id)
        return image_id

    def layer_tar(self, chain, out):
        """The uncompressed tar of layer `chain` (for push)."""
        self.layers.tar_stream(chain, out)

    # -- import ----------------------------------------------------------------------------

    def import_image(self, stream, ref=None, config=None, message="", src="-"):
        """ImportImage (`docker import`): one layer from the tar `stream` (any compression),
        with `config` (a container.Config dict: what `--change` lines made of an empty one,
        see builder.build_from_config), tagged `ref` (a Reference) if given.

        The comment is `message`, or "Imported from <src>" (src is "-" for an upload).
        """
        if ref is not None and ref.digest is not None:
            raise InvalidParameter("cannot import digest reference")
        config = container_config_shape(config or {})
        chain = self.register_layer(None, stream)
        try:
            with storage_errors("failed to import image"):
                image_id = self.create_image(self._import_config(chain, config, message or
                                                                 "Imported from " + src))
        finally:
            self.release_layer(chain)
        if ref is not None:
            self._tag_image(image_id, ref)
        self.log_image_event(image_id, image_id, "import")
        return image_id

    def _import_config(self, chain, config, comment):
        created = Timestamp.now().rfc3339nano()
        architecture, variant = go_arch()
        fields = {
            "architecture": architecture, "comment": comment, "config": config,
            "container_config": container_config_shape({}), "created": created,
            "history": [{"created": created, "comment": comment}], "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [self.layers.get(chain).diff_id]},
        }
        if self.docker_version:
            fields["docker_version"] = self.docker_version
        if variant:
            fields["variant"] = variant
        return go_json(sorted_dict(fields))

    # -- tag ---------------------------------------------------------------------------------

    def tag(self, name, repo, tag=""):
        """TagImage (`docker tag`): point `repo`:`tag` at image `name`, moving the tag if it
        pointed elsewhere. Returns the familiar reference, e.g. "busybox:latest"."""
        image = self.lookup(name)
        ref = parse_normalized_named(repo)
        if ref.digest is not None:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        if tag:
            ref = Reference(ref.domain, ref.path, parse_tag(tag))
        return self._tag_image(image.id, ref)

    def _tag_image(self, image_id, ref):
        """TagImageWithReference: tag, note the time for inspect's LastTagTime, emit `tag`."""
        ref = ref.with_default_tag()
        self.add_tag(image_id, ref)
        self.store.set_last_updated(image_id)
        self.log_image_event(image_id, ref.familiar_string(), "tag")
        return ref.familiar_string()

    def add_tag(self, image_id, ref):
        """Point tag `ref` at `image_id`, moving it if needed, unless a delete took the image
        meanwhile (the check and the tag are one step under the graph's lock)."""
        with self._lock:
            if self.store.get(image_id) is None:
                raise no_such_image(image_id)
            self.tagstore.add(ref, image_id, force=True)

    # -- load ------------------------------------------------------------------------------

    def load(self, stream, progress=None, quiet=False, tmp_dir=None):
        """Load (`docker load`): images from a tar in any of the formats docker save writes --
        the docker-archive (manifest.json), its legacy form (`repositories` and v1 layer
        directories) and the OCI image layout (index.json).

        `progress(message)` receives "Loading layer" progress dicts (not when `quiet`).
        Returns the {"stream": "Loaded image: ...\\n"} messages. Every layer is checked against
        its image's diff IDs. Whatever fails, the layers this call registered and no image
        uses are removed again.
        """
        report = None if quiet else progress
        spool = tempfile.mkdtemp(prefix="docker-import-", dir=tmp_dir)
        held = []
        try:
            with storage_errors("failed to load images"):
                return _ArchiveLoader(self, Upload(stream, spool), report, held).load()
        finally:
            for chain in held:
                self.layers.release(chain)
            shutil.rmtree(spool, ignore_errors=True)

    # -- save --------------------------------------------------------------------------------

    def save(self, names, out, tmp_dir=None):
        """Save (`docker save`): write the images `names` refer to into one tar on `out`, in
        the format dockerd 20.10 writes (see _ArchiveSaver). A bare repository name saves
        every tag of it."""
        targets = self._save_targets(names)
        held = []
        try:
            for image_id in targets:
                chain = self.store.get(image_id).top_chain_id
                if chain:
                    self.layers.hold(chain)
                    held.append(chain)
            with tempfile.TemporaryDirectory(prefix="docker-export-", dir=tmp_dir) as spool:
                _ArchiveSaver(self, spool).save(targets, out)
        finally:
            for chain in held:
                self.layers.release(chain)

    def _save_targets(self, names):
        """parseNames: image ID -> the tags to save it under, in the order named."""
        targets = collections.OrderedDict()

        def add(image_id, ref=None):
            refs = targets.setdefault(image_id, [])
            if ref is not None and ref.tag and ref not in refs:
                refs.append(ref)

        for name in names:
            if is_full_id(name) or _DIGEST_RE.match(name):
                add(self.lookup(name).id)
                continue
            ref = parse_normalized_named(name)
            if ref.tag is None and ref.digest is None and ref.familiar_name != "sha256":
                pairs = self.tagstore.by_repo(ref.name)
                for tagged, image_id in pairs:
                    add(image_id, tagged)
                if pairs:
                    continue
            if ref.familiar_name == "sha256" or (ref.tag is None and ref.digest is None):
                image = self.store.search(name)
                if image is None:
                    raise no_such_image(name)
                add(image.id)
                continue
            image_id = self.tagstore.get(ref)
            if image_id is None or self.store.get(image_id) is None:
                raise NotFound("reference does not exist")
            add(image_id, ref)
        return targets

    # -- list, inspect, history --------------------------------------------------------------

    def images(self, all=False, filters=None, digests=False):
        """Images (`GET /images/json`): ImageSummary dicts, newest first.

        Without `all`, intermediate images (untagged parents of other images) are left out.
        `filters` is {name: [values]}: dangling=true|false, label=key or key=value, before and
        since (an image name), reference (a glob on name:tag). `digests` changes nothing: the
        summary always carries RepoDigests, as in dockerd.
        """
        return self._summaries(all, filters or {}, container_counts=None)

    def _summaries(self, all_images, filters, container_counts):
        validate_filters(filters, IMAGES_FILTERS)
        dangling_only = self._dangling_filter(filters, ("true",), ("false",))
        before = self._time_filter(filters, "before")
        since = self._time_filter(filters, "since")
        heads = self._heads()
        summaries = []
        for image in self.store.all_images():
            if dangling_only and image.id not in heads:
                continue
            if before is not None and image.created.instant >= before:
                continue
            if since is not None and image.created.instant <= since:
                continue
            if "label" in filters and (image.container_config is None or
                                       not match_labels(filters["label"], image.labels)):
                continue
            summary = self._summary(image, filters, all_images, dangling_only, heads)
            if summary is None:
                continue
            if container_counts is not None:
                summary["Containers"] = container_counts.get(image.id, 0)
            summaries.append(summary)
        summaries.sort(key=lambda summary: (summary["Created"], summary["Id"]), reverse=True)
        return summaries

    def _summary(self, image, filters, all_images, dangling_only, heads):
        tags, digests = [], []
        for ref in self.tagstore.references(image.id):
            if "reference" in filters and not any(familiar_match(pattern, ref)
                                                  for pattern in filters["reference"]):
                continue
            (digests if ref.digest else tags).append(ref.familiar_string())
        if not tags and not digests:
            if not all_images and image.id not in heads:
                return None     # an intermediate image: shown with --all only
            if ("dangling" in filters and not dangling_only) or "reference" in filters:
                return None
            tags, digests = ["<none>:<none>"], ["<none>@<none>"]
        elif dangling_only and tags:
            return None
        config = image.container_config
        return {"Containers": -1, "Created": image.created.seconds, "Id": image.id,
                "Labels": config.get("Labels") if config else None, "ParentId": image.parent,
                "RepoDigests": digests or None, "RepoTags": tags or None, "SharedSize": -1,
                "Size": image.size, "VirtualSize": image.size}

    def _heads(self):
        """Heads: images no other image names as its parent."""
        images = self.store.all_images()
        parents = {image.parent for image in images}
        return {image.id for image in images if image.id not in parents}

    @staticmethod
    def _dangling_filter(filters, yes, no):
        values = filters.get("dangling")
        if not values:
            return False
        if all(value in yes for value in values):
            return True
        if all(value in no for value in values):
            return False
        raise invalid_filter("dangling", values)

    def _time_filter(self, filters, name):
        values = filters.get(name)
        return self.lookup(values[-1]).created.instant if values else None

    def inspect(self, name):
        """LookupImage (`docker image inspect`): the image in dockerd 20.10's ImageInspect shape."""
        try:
            image = self.lookup(name)
        except NotFound as err:
            raise NotFound("no such image: %s: %s" % (name, err)) from None
        config = image.config
        comment = config.get("comment") or ""
        if not comment and image.history:
            comment = image.history[-1].get("comment") or ""
        result = {
            "Id": image.id, "RepoTags": self._tags_of(image.id),
            "RepoDigests": self._digests_of(image.id), "Parent": image.parent,
            "Comment": comment, "Created": image.created.rfc3339nano(),
            "Container": config.get("container") or "",
            "ContainerConfig": container_config_shape(config.get("container_config")),
            "DockerVersion": config.get("docker_version") or "", "Author": config.get("author") or "",
            "Config": (container_config_shape(image.container_config)
                       if image.container_config is not None else None),
            "Architecture": config.get("architecture") or "",
        }
        if config.get("variant"):
            result["Variant"] = config["variant"]
        result["Os"] = image.os
        if config.get("os.version"):
            result["OsVersion"] = config["os.version"]
        result.update({
            "Size": image.size, "VirtualSize": image.size,
            "GraphDriver": {"Data": (self.layers.metadata(image.top_chain_id)
                                     if image.top_chain_id else None), "Name": self.driver.name},
            "RootFS": self._inspect_rootfs(image),
            "Metadata": {"LastTagTime": self.store.last_updated(image.id).rfc3339nano()},
        })
        return result

    @staticmethod
    def _inspect_rootfs(image):
        rootfs = {"Type": "layers"}
        if image.diff_ids:
            rootfs["Layers"] = list(image.diff_ids)
        return rootfs

    def history(self, name):
        """ImageHistory (`docker history`): one entry per history item, newest first. Entries
        carry the image ID for the image and its ancestors by parent link, else "<missing>"."""
        image = self.lookup(name)
        entries = []
        layer_index = 0
        for item in image.history:
            size = 0
            if not item.get("empty_layer"):
                if layer_index >= len(image.chain_ids):
                    raise System("too many non-empty layers in History section")
                size = self.layers.get(image.chain_ids[layer_index]).size
                layer_index += 1
            entries.insert(0, {"Comment": item.get("comment") or "",
                               "Created": Timestamp.parse(item.get("created")).seconds,
                               "CreatedBy": item.get("created_by") or "", "Id": "<missing>",
                               "Size": size, "Tags": None})
        current = image
        for entry in entries:
            entry["Id"] = current.id
            entry["Tags"] = self._tags_of(current.id) or None
            current = self.store.get(current.parent) if current.parent else None
            if current is None:
                break
        return entries

    def count(self):
        """How many images there are, intermediate ones included (`docker info`'s Images)."""
        return len(self.store.all_images())

    def disk_usage(self, container_image_ids=()):
        """The images part of `GET /system/df`: {"LayersSize": bytes of all layers images use,
        "Images": summaries with Containers (from `container_image_ids`, the ImageID of each
        container) and SharedSize (bytes of layers shared with another image)}."""
        counts = collections.Counter(container_image_ids)
        summaries = self._summaries(False, {}, counts)
        listed = [self.store.get(summary["Id"]) for summary in summaries]
        sharing = collections.Counter(chain for image in listed for chain in image.chain_ids)
        for summary, image in zip(summaries, listed):
            summary["SharedSize"] = sum(self.layers.get(chain).size for chain in image.chain_ids
                                        if sharing[chain] > 1)
        used = {chain for image in self.store.all_images() for chain in image.chain_ids}
        sizes = [layer.size for layer in self.layers.all_layers() if layer.chain_id in used]
        return {"LayersSize": sum(sizes), "Images": summaries}

    # -- delete ----------------------------------------------------------------------------

    def delete(self, name, force=False, noprune=False):
        """ImageDelete (`docker rmi`), with dockerd's rules:

        By reference: remove that tag (refused while a container uses the image and it is the
        image's only reference, unless forced); the image itself goes only when nothing
        references it any more. By ID: the image is deleted with all its references, unless
        it is referenced from several repositories (then only with `force`), has child
        images, or is used by a container (a running one even `force` cannot override).
        Unless `noprune`, parents left untagged and unused go too.
        Returns [{"Untagged": "busybox:latest"}, {"Deleted": "sha256:..."}, ...].
        """
        with self._lock:
            image_id = self.lookup(name).id
            records = []
            repo_refs = self.tagstore.references(image_id)
            quiet = False
            if not _is_id_prefix(image_id, name):
                repo_refs = self._untag_by_name(image_id, name, repo_refs, force, records)
                if repo_refs:
                    return records
                quiet = True    # the image was only reached through the tag just removed
            elif _is_single_reference(repo_refs):
                conflicts = HARD_CONFLICTS if force else HARD_CONFLICTS + ("stopped",)
                conflict = self._delete_conflict(image_id, conflicts)
                if conflict:
                    raise conflict
                self._untag_all(image_id, records)
            self._delete_image(image_id, records, force, not noprune, quiet)
            return records

    def _untag_by_name(self, image_id, name, repo_refs, force, records):
        """Remove the reference `name`; returns the image's references still left."""
        if not force and _is_single_reference(repo_refs):
            container = self._image_in_use(image_id)
            if container:
                raise Conflict("conflict: unable to remove repository reference %s (must force) - "
                               "container %s is using its referenced image %s"
                               % (json.dumps(name), truncate_id(container), truncate_id(image_id)))
        ref = parse_normalized_named(name).with_default_tag()
        self._untag(image_id, ref, records)
        repo_refs = self.tagstore.references(image_id)
        if ref.digest is None and not any(other.tag and other.name == ref.name for other in repo_refs):
            # The last tag of this repository is gone: its digests would only dangle.
            for other in [other for other in repo_refs if other.digest and other.name == ref.name]:
                self._untag(image_id, other, records, event=False)
            repo_refs = [other for other in repo_refs if not (other.digest and other.name == ref.name)]
        return repo_refs

    def _untag(self, image_id, ref, records, event=True):
        self.tagstore.delete(ref)
        records.append({"Untagged": ref.familiar_string()})
        if event:
            self.log_image_event(image_id, image_id, "untag")

    def _untag_all(self, image_id, records):
        for ref in self.tagstore.references(image_id):
            self._untag(image_id, ref, records)

    def _delete_image(self, image_id, records, force, prune, quiet):
        """imageDeleteHelper: delete one image, then (prune) its parent if nothing else needs
        it. `quiet` leaves an image a conflict protects in place without a word: every
        conflict means a tag, a child or a container still needs it, so it is not lost."""
        conflicts = HARD_CONFLICTS if force else HARD_CONFLICTS + SOFT_CONFLICTS
        conflict = self._delete_conflict(image_id, conflicts)
        if conflict:
            if quiet:
                return
            raise conflict
        parent = self.store.get(image_id).parent
        self._untag_all(image_id, records)
        removed_layers = self.store.delete(image_id)
        self.log_image_event(image_id, image_id, "delete")
        records.append({"Deleted": image_id})
        records.extend({"Deleted": chain} for chain in removed_layers)
        if prune and parent and self.store.get(parent):
            self._delete_image(parent, records, False, True, True)

    def _delete_conflict(self, image_id, kinds):
        """checkImageDeleteConflict: the first reason, of `kinds`, not to delete the image."""
        if "children" in kinds and self.store.children(image_id):
            return ImageDeleteConflict(image_id, "image has dependent child images", hard=True)
        running = self._image_running(image_id) if "running" in kinds else None
        if running:
            return ImageDeleteConflict(image_id, "image is being used by running container %s"
                                       % truncate_id(running), hard=True)
        if "references" in kinds and self.tagstore.references(image_id):
            return ImageDeleteConflict(image_id, "image is referenced in multiple repositories")
        stopped = self._image_in_use(image_id) if "stopped" in kinds else None
        if stopped:
            return ImageDeleteConflict(image_id, "image is being used by stopped container %s"
                                       % truncate_id(stopped))
        return None

    # -- prune -------------------------------------------------------------------------------

    def prune(self, dangling_only=True, filters=None):
        """ImagesPrune (`docker image prune`): delete unused images. Dangling ones only
        (untagged heads) unless `dangling_only` is False or filters say dangling=false (`-a`:
        every image no container uses). Filters: dangling, label, label!, until.
        An image a container uses (running or not) is never a candidate, however it is
        tagged. Returns {"ImagesDeleted": [records] or None, "SpaceReclaimed": bytes}, which
        the `prune` event repeats as its `reclaimed` attribute."""
        filters = filters or {}
        validate_filters(filters, PRUNE_FILTERS)
        if "dangling" in filters:
            dangling_only = self._dangling_filter(filters, ("true", "1"), ("false", "0"))
        until = parse_until(filters["until"][-1]) if filters.get("until") else None
        layer_sizes = {layer.chain_id: layer.size for layer in self.layers.all_layers()}
        deleted = []
        for image in self._prune_candidates(dangling_only, until, filters):
            deleted.extend(self._prune_image(image, dangling_only))
        reclaimed = sum(layer_sizes.get(record.get("Deleted"), 0) for record in deleted)
        if self.events:
            self.events("image", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def _prune_candidates(self, dangling_only, until, filters):
        heads = self._heads()
        for image in self.store.all_images():
            if dangling_only and image.id not in heads:
                continue
            if not self.tagstore.references(image.id) and self.store.children(image.id):
                continue
            if self._image_in_use(image.id):
                continue
            if until is not None and image.created.seconds + image.created.nanos / 1e9 > until:
                continue
            if image.container_config is not None and not _prune_labels_match(filters, image.labels):
                continue
            yield image

    def _prune_image(self, image, dangling_only):
        if self.store.get(image.id) is None:
            return []   # pruned already, as the parent of an image pruned before it
        refs = self.tagstore.references(image.id)
        if not refs:
            return self._delete_quietly(hex_of(image.id))
        if dangling_only and any(ref.tag for ref in refs):
            return []
        deleted = []
        for ref in refs:
            deleted.extend(self._delete_quietly(str(ref)))
        return deleted

    def _delete_quietly(self, name):
        """Delete for prune: a conflict or a vanished image just means "not this one"."""
        try:
            return self.delete(name)
        except Conflict:
            return []
        except DockerError as err:
            log.warning("failed to prune image %s: %s", name, err)
            return []

    # -- containers' writable layers -------------------------------------------------------

    def create_rw_layer(self, container_id, image_id, init_func=None):
        """A writable layer for container `container_id` on image `image_id` (None: an empty
        root). init_func(path), if given, fills the container's -init layer. Returns the
        driver ID of the writable layer (the container's mount ID)."""
        image = self.store.get(image_id) if image_id else None
        if image_id and image is None:
            raise no_such_image(image_id)
        parent = image.top_chain_id if image else None
        return self.layers.create_rw(container_id, parent, init_func).mount_id

    def mount_rw_layer(self, container_id):
        """Mount the container's root filesystem; returns its path (reference counted)."""
        return self.driver.get(self.layers.get_rw(container_id).mount_id)

    def unmount_rw_layer(self, container_id):
        self.driver.put(self.layers.get_rw(container_id).mount_id)

    def rw_layer_metadata(self, container_id):
        """GraphDriver.Data of a container for `docker inspect` (overlay: its dirs)."""
        return self.driver.get_metadata(self.layers.get_rw(container_id).mount_id)

    def rw_layer_changes(self, container_id):
        """`docker diff`: the container's changes (archive Change tuples)."""
        mount = self.layers.get_rw(container_id)
        return self.driver.changes(mount.mount_id, self.layers.below_rw(mount))

    def rw_layer_diff(self, container_id, out):
        """The tar of the container's changes, as a layer (for commit)."""
        mount = self.layers.get_rw(container_id)
        self.driver.diff(mount.mount_id, self.layers.below_rw(mount), out)

    def rw_layer_size(self, container_id):
        """SizeRw: bytes the container added or changed."""
        mount = self.layers.get_rw(container_id)
        return self.driver.diff_size(mount.mount_id, self.layers.below_rw(mount))

    def rw_layer_parent_size(self, container_id):
        """The bytes of the read-only layers under the container's writable layer: its
        image's, still there when the image itself has been deleted (`rmi -f`)."""
        parent = self.layers.get_rw(container_id).parent
        return self.layers.size(parent) if parent else 0

    def commit_rw_layer(self, container_id, tmp_dir=None):
        """Register the container's changes as a read-only layer on its image's top layer;
        returns the chain ID, held like register_layer's."""
        mount = self.layers.get_rw(container_id)
        with tempfile.TemporaryFile(dir=tmp_dir) as diff:
            self.rw_layer_diff(container_id, diff)
            diff.seek(0)
            return self.layers.register(diff, mount.parent)

    def release_rw_layer(self, container_id):
        """Delete the container's writable layer; returns read-only layers this deleted."""
        return self.layers.release_rw(container_id)


def _prune_labels_match(filters, labels):
    """prune's matchLabels: every `label` filter matches and the `label!` filters do not all
    match."""
    if not match_labels(filters.get("label"), labels):
        return False
    excluded = filters.get("label!")
    return not (excluded and match_labels(excluded, labels))


def _is_id_prefix(image_id, name):
    """isImageIDPrefix: whether `name` is the image's ID or a prefix of it."""
    return image_id.startswith(name) or hex_of(image_id).startswith(name)


def _is_single_reference(refs):
    """isSingleReference: all references are in one repository, with at most one tag."""
    if len(refs) <= 1:
        return len(refs) == 1
    tagged = [ref for ref in refs if ref.tag]
    if len(tagged) > 1:
        return False
    digest_repositories = {ref.name for ref in refs if ref.digest}
    single = tagged[0] if tagged else refs[0]
    return digest_repositories == {single.name}


# ---------------------------------------------------------------------------------------------
# docker load: the three archive formats
# ---------------------------------------------------------------------------------------------

class _ArchiveLoader(object):
    """tarexport.Load: read one uploaded archive and create its images and tags.

    Every layer registered or reused is appended to `held`; the caller releases them when
    the load ends, which deletes again whatever no image came to use.
    """

    def __init__(self, graph, upload, report, held):
        self.graph = graph
        self.upload = upload
        self.report = report
        self.held = held
        self.messages = []
        self.loaded_ids = []
        self.tagged = False

    def load(self):
        names = self.upload.names()
        if "manifest.json" in names:
            self._load_docker_archive()
        elif "index.json" in names:
            self._load_oci_layout()
        elif "repositories" in names:
            self._load_legacy()
        else:
            raise InvalidParameter("invalid archive: no manifest.json, index.json or repositories "
                                   "file; is this the output of docker save?")
        if not self.tagged:
            self.messages.extend({"stream": "Loaded image ID: %s\n" % image_id}
                                 for image_id in self.loaded_ids)
        return self.messages

    # -- docker-archive ----------------------------------------------------------------------

    def _load_docker_archive(self):
        manifest = self.upload.read_json("manifest.json", "manifest")
        if not isinstance(manifest, list):
            raise InvalidParameter("invalid manifest.json: not a list")
        parent_links = []
        for item in manifest:
            if not isinstance(item, dict):
                raise InvalidParameter("invalid manifest.json: an entry is not an object")
            config_path = safe_manifest_path(item.get("Config"), "config")
            layer_paths = [safe_manifest_path(path, "layer") for path in item.get("Layers") or []]
            raw = self.upload.read(config_path, "config")
            image_id = self._create(raw, layer_paths)
            for tag in item.get("RepoTags") or []:
                self._tag(image_id, tag)
            if item.get("Parent"):
                parent_links.append((image_id, item["Parent"]))
        self._link_parents(parent_links)

    def _create(self, raw, layer_paths):
        """Register the layers of image config `raw` from the archive members `layer_paths`,
        then create the image."""
        config = parse_image_config(raw)
        if config.get("os") not in (None, "", "linux"):
            raise InvalidParameter("cannot load %s image on linux" % config["os"])
        diff_ids = config["rootfs"].get("diff_ids") or []
        if len(layer_paths) != len(diff_ids):
            raise InvalidParameter("invalid manifest, layers length mismatch: expected %d, got %d"
                                   % (len(layer_paths), len(diff_ids)))
        parent = None
        for index, (diff_id, path) in enumerate(zip(diff_ids, layer_paths)):
            parent = self._layer(index, parent, diff_id, path)
        image_id = self.graph.create_image(raw)
        self.loaded_ids.append(image_id)
        self.graph.log_image_event(image_id, image_id, "load")
        return image_id

    def _layer(self, index, parent, diff_id, path):
        """The chain of layer `index`: reused if already here, else registered from `path`."""
        chain = chain_id(parent, diff_id)
        if self.graph.layers.exists(chain):
            self.graph.layers.hold(chain)
            self.held.append(chain)
            return chain
        try:
            registered = self._register(path, parent, diff_id, truncate_id(diff_id))
        except InvalidDiffID as err:
            raise InvalidParameter("invalid diffID for layer %d: expected %s, got %s"
                                   % (index, json.dumps(err.expected), json.dumps(err.actual))) from None
        return registered

    def _register(self, path, parent, expected_diff_id, short_id):
        spooled = self.upload.path(path)
        if spooled is None:
            raise InvalidParameter("invalid archive: layer %s not found" % path)
        with open(spooled, "rb") as layer_tar:
            stream = layer_tar
            if self.report:
                stream = ProgressReader(layer_tar, os.path.getsize(spooled), short_id,
                                        "Loading layer", self.report)
            chain = self.graph.register_layer(parent, stream, expected_diff_id)
        self.held.append(chain)
        return chain

    def _tag(self, image_id, text):
        """setLoadedTag: tag the loaded image, saying so when the tag moves off another image."""
        ref = parse_normalized_named(text)
        if ref.tag is None:
            raise InvalidParameter("invalid tag %s" % json.dumps(text))
        previous = self.graph.tagstore.get(ref)
        if previous and previous != image_id:
            self.messages.append({"stream": "The image %s already exists, renaming the old one with "
                                            "ID %s to empty string\n" % (ref.familiar_string(), previous)})
        self.graph.add_tag(image_id, ref)
        self.messages.append({"stream": "Loaded image: %s\n" % ref.familiar_string()})
        self.tagged = True

    def _link_parents(self, links):
        """Record the parent links of images loaded together, when the history agrees."""
        loaded = set(self.loaded_ids)
        for image_id, parent_id in links:
            if parent_id in loaded and parent_id != image_id:
                image, parent = self.graph.store.get(image_id), self.graph.store.get(parent_id)
                if not _valid_parent(image, parent):
                    raise InvalidParameter("image %s is not a valid parent for %s" % (parent_id, image_id))
                self.graph.store.set_parent(image_id, parent_id)

    # -- OCI image layout --------------------------------------------------------------------

    def _load_oci_layout(self):
        index = self.upload.read_json("index.json", "index")
        for descriptor in (index.get("manifests") or []) if isinstance(index, dict) else []:
            manifest_descriptor = self._platform_manifest(descriptor)
            manifest = self._json_blob(manifest_descriptor, "manifest")
            raw = self._blob(manifest.get("config") or {}, "config")
            layers = manifest.get("layers") or []
            for layer in layers:
                if "zstd" in (layer.get("mediaType") or ""):
                    raise InvalidParameter("unsupported layer media type %s" % layer["mediaType"])
            image_id = self._create(raw, [self._blob_path(layer) for layer in layers])
            name = _oci_image_name(descriptor.get("annotations") or {})
            if name:
                self._tag(image_id, name)

    def _platform_manifest(self, descriptor):
        """An index entry may itself be an index (a multi-platform image): pick this machine's."""
        for _ in range(8):
            if descriptor.get("mediaType") not in OCI_INDEX_TYPES:
                return descriptor
            nested = self._json_blob(descriptor, "index").get("manifests") or []
            architecture, variant = go_arch()
            matching = [entry for entry in nested
                        if (entry.get("platform") or {}).get("os", "linux") == "linux" and
                        (entry.get("platform") or {}).get("architecture", architecture) == architecture]
            if not matching:
                raise InvalidParameter("no image in the index for linux/%s" % architecture)
            descriptor = matching[0]
        raise InvalidParameter("invalid archive: indexes nested too deep")

    def _blob_path(self, descriptor):
        digest = descriptor.get("digest")
        validate_digest(digest, "blob digest")
        return "blobs/sha256/" + hex_of(digest)

    def _json_blob(self, descriptor, what):
        try:
            value = json.loads(self._blob(descriptor, what).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise InvalidParameter("invalid %s blob: %s" % (what, err)) from None
        if not isinstance(value, dict):
            raise InvalidParameter("invalid %s blob: not an object" % what)
        return value

    def _blob(self, descriptor, what):
        """A small blob (manifest, config), checked against its descriptor's digest."""
        data = self.upload.read(self._blob_path(descriptor), what)
        if sha256_digest(data) != descriptor["digest"]:
            raise InvalidParameter("invalid %s blob: content does not match digest %s"
                                   % (what, descriptor["digest"]))
        return data

    # -- legacy (v1) ---------------------------------------------------------------------------

    def _load_legacy(self):
        """legacyLoad: one directory per v1 layer (json, layer.tar), tags in `repositories`."""
        loaded = {}
        for name in sorted(self.upload.names()):
            if name.endswith("/json") and name.count("/") == 1:
                self._load_legacy_image(name.split("/")[0], loaded, depth=0)
        repositories = self.upload.read_json("repositories", "repositories")
        for repository, tags in sorted(repositories.items()):
            for tag, v1_id in sorted(tags.items()):
                if v1_id not in loaded:
                    raise InvalidParameter("invalid target ID: %s" % v1_id)
                self._tag(loaded[v1_id], "%s:%s" % (repository, tag))

    def _load_legacy_image(self, v1_id, loaded, depth):
        if v1_id in loaded:
            return loaded[v1_id]
        if depth > 256 or not re.match(r"^[a-f0-9]{64}$", v1_id):
            raise InvalidParameter("invalid v1 image ID %r" % v1_id)
        v1_json = self.upload.read(v1_id + "/json", "image json")
        try:
            v1 = json.loads(v1_json.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise InvalidParameter("invalid image json of %s: %s" % (v1_id, err)) from None
        parent_id, rootfs, history = "", [], []
        if v1.get("parent"):
            parent_id = self._load_legacy_image(v1["parent"], loaded, depth + 1)
            parent = self.graph.store.get(parent_id)
            rootfs, history = list(parent.diff_ids), list(parent.history)
        parent_chain = chain_ids_of(rootfs)[-1] if rootfs else None
        chain = self._register(v1_id + "/layer.tar", parent_chain, None, v1_id[:12])
        rootfs.append(self.graph.layers.get(chain).diff_id)
        history.append(_legacy_history(v1))
        image_id = self.graph.create_image(_config_from_v1(v1, rootfs, history),
                                           parent_id or None)
        self.loaded_ids.append(image_id)
        self.graph.log_image_event(image_id, image_id, "load")
        loaded[v1_id] = image_id
        return image_id


def _oci_image_name(annotations):
    """The reference an OCI index entry names: containerd's full image name, or a ref.name
    that is a whole reference (a bare tag names no repository)."""
    for key in ("io.containerd.image.name", "org.opencontainers.image.ref.name"):
        name = annotations.get(key)
        if name and ("/" in name or ":" in name):
            try:
                if parse_normalized_named(name).tag:
                    return name
            except InvalidParameter:
                continue
    return None


def _legacy_history(v1):
    """v1.HistoryFromConfig: the history entry a v1 layer stands for."""
    entry = {"created": v1.get("created") or ZERO_TIME.rfc3339nano()}
    if v1.get("author"):
        entry["author"] = v1["author"]
    created_by = " ".join((v1.get("container_config") or {}).get("Cmd") or [])
    if created_by:
        entry["created_by"] = created_by
    if v1.get("comment"):
        entry["comment"] = v1["comment"]
    return entry


def _config_from_v1(v1, diff_ids, history):
    """v1.MakeConfigFromV1Config: the v1 JSON without its v1 links, plus rootfs and history."""
    config = {key: value for key, value in v1.items()
              if key not in ("id", "parent", "Size", "parent_id", "layer_id", "throwaway")}
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    config["history"] = history
    return go_json(sorted_dict(config))


def _valid_parent(image, parent):
    """checkValidParent: a child's history is its parent's plus one entry."""
    if not image.history and not parent.history:
        return True
    return (len(image.history) - len(parent.history) == 1 and
            image.history[:len(parent.history)] == parent.history)


# ---------------------------------------------------------------------------------------------
# docker save
# ---------------------------------------------------------------------------------------------

class _ArchiveSaver(object):
    """tarexport.Save: the docker-archive dockerd 20.10 writes, member by member:

        <config hex>.json           the image config, byte for byte
        <v1 id>/VERSION             "1.0"
        <v1 id>/json                the legacy v1 JSON of that layer
        <v1 id>/layer.tar           the uncompressed layer (sha256 = its diff ID); a layer
                                    saved already is a symlink to the first copy
        manifest.json               [{"Config", "RepoTags", "Layers"[, "Parent"]}]
        repositories                {"busybox": {"latest": "<top v1 id>"}}

    Members are sorted by name, as dockerd's walk of its temporary directory yields them.
    """

    def __init__(self, graph, spool):
        self.graph = graph
        self.spool = spool
        self.entries = {}            # member name -> (kind, content, mtime)
        self.layer_paths = {}        # diff ID -> member name of its first layer.tar

    def save(self, targets, out):
        manifest, repositories = [], {}
        for image_id, refs in targets.items():
            image = self.graph.store.get(image_id)
            layer_ids = self._save_image(image)
            item = {"Config": hex_of(image_id) + ".json",
                    "RepoTags": [ref.familiar_string() for ref in refs] or None,
                    "Layers": [v1_id + "/layer.tar" for v1_id in layer_ids]}
            if image.parent in targets:
                item["Parent"] = image.parent
            manifest.append(item)
            for ref in refs:
                repositories.setdefault(ref.familiar_name, {})[ref.tag] = layer_ids[-1]
            self.graph.log_image_event(image_id, image_id, "save")
        self.entries["manifest.json"] = ("bytes", go_json(manifest) + b"\n", 0)
        if repositories:
            self.entries["repositories"] = ("bytes", go_json(sorted_dict(
                {name: sorted_dict(tags) for name, tags in repositories.items()})) + b"\n", 0)
        self._write(out)

    def _save_image(self, image):
        if not image.diff_ids:
            raise System("empty export - not implemented")
        mtime = image.created.seconds
        layer_ids, parent_v1 = [], ""
        for index, chain in enumerate(image.chain_ids):
            fields = self._v1_fields(image, index)
            v1_id = v1_layer_id(fields, chain, DIGEST_PREFIX + parent_v1 if parent_v1 else "")
            fields.update(id=v1_id, parent=parent_v1, os=image.config.get("os"))
            if v1_id + "/" not in self.entries:
                self._save_layer(v1_id, chain, image.diff_ids[index], fields, mtime)
            layer_ids.append(v1_id)
            parent_v1 = v1_id
        self.entries[hex_of(image.id) + ".json"] = ("bytes", image.raw, mtime)
        return layer_ids

    @staticmethod
    def _v1_fields(image, index):
        """The top layer carries the image's own v1 fields; lower ones only an epoch date."""
        if index < len(image.chain_ids) - 1:
            return {"created": UNIX_EPOCH_TIME.rfc3339nano()}
        fields = {key: image.config.get(key) for key in V1_IMAGE_FIELDS if key != "id"}
        fields["created"] = image.created.rfc3339nano()
        return fields

    def _save_layer(self, v1_id, chain, diff_id, fields, mtime):
        self.entries[v1_id + "/"] = ("dir", None, mtime)
        self.entries[v1_id + "/VERSION"] = ("bytes", b"1.0", mtime)
        self.entries[v1_id + "/json"] = ("bytes", go_json(v1_image_json(fields)), mtime)
        member = v1_id + "/layer.tar"
        if diff_id in self.layer_paths:
            target = posixpath.relpath(self.layer_paths[diff_id], v1_id)
            self.entries[member] = ("symlink", target, mtime)
            return
        path = os.path.join(self.spool, v1_id + ".tar")
        with open(path, "wb") as layer_tar:
            self.graph.layers.tar_stream(chain, layer_tar)
        self.entries[member] = ("file", path, mtime)
        self.layer_paths[diff_id] = member

    def _write(self, out):
        writer = TarWriter(out)
        adders = {"dir": lambda name, content, mtime: writer.add_dir(name, mtime),
                  "bytes": writer.add_bytes, "file": writer.add_file, "symlink": writer.add_symlink}
        for name in sorted(self.entries):
            kind, content, mtime = self.entries[name]
            adders[kind](name, content, mtime)
        writer.close()
