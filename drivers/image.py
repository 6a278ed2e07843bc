"""The image store: Docker's image/ package (image.go, store.go, fs.go), content-addressed.

Docker 1.8.2 named each image by a random ID and kept it in one graph directory with its
layer. Since Docker 1.10 an image is its config JSON, and its ID is the sha256 of those exact
bytes. Nothing else names it, so the same bytes loaded twice are the same image. Its layers
are the layer store's (drivers.layer); each image holds a reference on its top layer for as
long as it exists.

On disk, under <root>/graph/imagedb (directories 0700, every state file written atomically):

    content/sha256/<hex>                the image config bytes, exactly as received
    metadata/sha256/<hex>/parent        the parent image of a committed or loaded image
    metadata/sha256/<hex>/lastUpdated   when the image was last tagged

The module reads top to bottom: times and JSON as Go writes them; the container config
shape Docker marshals; the image and the image store.
"""
import collections
import json
import logging
import os
import re
import shutil
import threading
import time
from datetime import datetime, timedelta, timezone

from drivers.errdefs import DockerError, InvalidParameter, NotFound
from drivers.ioutils import atomic_write_file, fsync_dir
from drivers.layer import (DIGEST_PREFIX, STATE_FILE_MODE, chain_ids_of, hex_of, make_state_dir,
                           read_state, remove_temporary_files, sha256_digest, validate_digest,
                           write_state)

log = logging.getLogger("pydockerd.graph")


# ---------------------------------------------------------------------------------------------
# Times and JSON as Go writes them
# ---------------------------------------------------------------------------------------------

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

    Crash consistency. An image exists once its content file does, and that file is written
    atomically after its layers are registered and after its metadata: a kill leaves the
    image whole or absent. Deleting removes the content first. At start-up the store drops
    (and logs) what a kill can leave: the temporary files of atomic writes, and metadata of
    an image that has no content.
    """

    def __init__(self, root, layers):
        self.layers = layers
        self._content_dir = make_state_dir(os.path.join(root, "content", "sha256"))
        self._metadata_dir = make_state_dir(os.path.join(root, "metadata", "sha256"))
        self._lock = threading.RLock()
        self._images = {}
        self._restore()

    def _restore(self):
        remove_temporary_files(self._content_dir)
        for name in os.listdir(self._metadata_dir):
            directory = os.path.join(self._metadata_dir, name)
            if not os.path.exists(os.path.join(self._content_dir, name)):
                log.warning("removing metadata of image sha256:%s, which has no content", name)
                shutil.rmtree(directory, ignore_errors=True)
            elif os.path.isdir(directory):
                remove_temporary_files(directory)
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
            return read_state(self._metadata_path(image_id, key))
        except FileNotFoundError:
            return None

    def _write_metadata(self, image_id, key, text):
        path = self._metadata_path(image_id, key)
        make_state_dir(os.path.dirname(path))
        write_state(path, text)

    def create(self, raw, parent_id=""):
        """Create: store config bytes `raw` as an image, whose parent is `parent_id` if given;
        returns its ID. Every layer of its rootfs must already be registered. Creating an
        existing image changes nothing but its parent."""
        image = Image(raw, parent=parent_id or "")
        with self._lock:
            if image.id in self._images:
                if parent_id:
                    self.set_parent(image.id, parent_id)
                return image.id
            try:
                self._take_layer(image)
            except NotFound:
                raise InvalidParameter("failed to get layer %s: layer does not exist"
                                       % image.top_chain_id) from None
            try:
                if parent_id:   # before the content: the image never exists without it
                    self._write_metadata(image.id, "parent", parent_id)
                atomic_write_file(os.path.join(self._content_dir, hex_of(image.id)), raw,
                                  STATE_FILE_MODE)
            except BaseException:
                shutil.rmtree(os.path.join(self._metadata_dir, hex_of(image.id)), ignore_errors=True)
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
