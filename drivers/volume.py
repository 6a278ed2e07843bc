"""Volumes: the local volume driver, the volume service, and the mount points of a container.

Docker 1.8.2's NewDaemon calls configureVolumes, which makes the local volume driver: every
volume is a directory <root>/volumes/<name>/_data that containers bind-mount, and that outlives
them. Today's dockerd keeps that driver (volume/local) and puts a service in front of it
(volume/service) that knows each volume's labels and options and which containers refer to
it. This module is those two, plus the part of the daemon that turns a container's -v, --mount,
--volumes-from and its image's VOLUMEs into mount points (daemon/volumes.go, volume/mounts).

On disk, per volume (dockerd keeps the metadata in one boltdb, metadata.db; here each volume
has a JSON file of its own, written atomically):

    <root>/volumes/<name>/_data           the data, bind-mounted into containers
    <root>/volumes/<name>/opts.json       the local driver's mount options, when given
                                          {"MountType", "MountOpts", "MountDevice", "Quota"}
    <root>/volumes/<name>/metadata.json   the service's record {"Name", "Driver", "Labels", "Options"}

A volume's life, as a container sees it:

    create   plan_mount_points(): every -v/--mount/--volumes-from/VOLUME parsed and checked
             (names, drivers, options, destinations) before anything is made; then
             register_mount_points(): named volumes made on first use, anonymous ones (an image's
             VOLUME, `-v /path`, `--mount type=volume` without a source) always made, each
             referenced by the container, and the image's content copied into a new empty one
             (with owner and mode; not with `nocopy`/`volume-nocopy`)
    start    setup_mounts(): each volume mounted (a local volume with `type`/`device`/`o` mounts
             its filesystem on _data for its first user), bind mounts of _data for the exec driver
    exit     unmount_volumes(): the filesystem unmounted when its last user stops
    rm       remove_mount_points(): the references dropped; with -v, anonymous volumes removed

A volume referenced by any container, running or not, cannot be removed. The references and
the active mounts are never stored: at boot restore() derives them from the containers (the
running ones hold mounts), as the network controller derives IPAM from NetworkSettings, so
they survive a daemon restart or a kill -9.
"""
import dataclasses
import datetime
import json
import logging
import os
import posixpath
import re
import secrets
import shutil
import socket
import stat
import threading

from drivers import archive, errdefs, execdriver, ioutils, linux, logger
from drivers.errdefs import InvalidParameter, NotFound

log = logging.getLogger("pydockerd")

DEFAULT_DRIVER = "local"
DATA_DIR = "_data"
# names.RestrictedNameChars: a volume name becomes a directory name, so nothing that could
# climb out of <root>/volumes ("/", a leading ".") is allowed.
NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
VALID_NAME = re.compile("^%s+$" % NAME_CHARS)
# The local driver's options (validOpts) and what each needs beside it (mandatoryOpts).
LOCAL_OPTIONS = ("type", "o", "device", "size")
REQUIRED_OPTIONS = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
# Network filesystems whose `addr=` option must be an address, as the kernel wants it.
NETWORK_FILESYSTEMS = ("nfs", "cifs")

# The parts of a -v mode ("ro,z,nocopy"): at most one of each kind (linuxValidMountMode).
MODE_KINDS = (
    ("rw", "ro"),
    ("z", "Z"),
    ("private", "rprivate", "slave", "rslave", "shared", "rshared"),
    ("nocopy",),
    ("consistent", "cached", "delegated"),
)
PROPAGATION_MODES = MODE_KINDS[2]
DEFAULT_PROPAGATION = "rprivate"


# ---------------------------------------------------------------------------------------
# Mount points (volume/mounts): what -v, --mount and --volumes-from mean.
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class MountPoint:
    """mounts.MountPoint: one mount of a container, as config.v2.json's MountPoints keep it.

    type is "bind", "volume" or "tmpfs". A bind's source is the host path; a volume's is its
    _data directory, set when it is registered. mode is the -v mode as given ("ro,z"; "z" for
    a named local volume given none). spec is the mount.Mount it came from (the --mount form):
    a volume whose spec has no Source is anonymous and goes with `docker rm -v`.
    skip_mountpoint_creation marks a --mount bind, whose source must exist (a -v source is
    created). copy_data and inherited live only while a container is created: whether the
    image's content goes into the volume, and whether it came from --volumes-from.
    """
    type: str
    destination: str
    rw: bool = True
    source: str = ""
    name: str = ""
    driver: str = ""
    mode: str = ""
    propagation: str = ""
    spec: dict = dataclasses.field(default_factory=dict)
    skip_mountpoint_creation: bool = False
    copy_data: bool = dataclasses.field(default=False, compare=False)
    inherited: bool = dataclasses.field(default=False, compare=False)

    @property
    def anonymous(self):
        return self.type == "volume" and not self.spec.get("Source")

    @property
    def volume_options(self):
        """--mount's volume-opt (DriverConfig.Options) and volume-label, for the volume's create."""
        options = self.spec.get("VolumeOptions") or {}
        return (options.get("DriverConfig") or {}).get("Options") or None, options.get("Labels") or None

    def to_dict(self):
        """config.v2.json's form (dockerd's field names; Mode is stored as Relabel)."""
        return {"Source": self.source, "Destination": self.destination, "RW": self.rw,
                "Name": self.name, "Driver": self.driver, "Type": self.type, "Relabel": self.mode,
                "Propagation": self.propagation, "Spec": self.spec,
                "SkipMountpointCreation": self.skip_mountpoint_creation}

    @classmethod
    def from_dict(cls, data):
        return cls(type=data.get("Type") or "", destination=data["Destination"],
                   rw=bool(data.get("RW")), source=data.get("Source") or "",
                   name=data.get("Name") or "", driver=data.get("Driver") or "",
                   mode=data.get("Relabel") or "", propagation=data.get("Propagation") or "",
                   spec=data.get("Spec") or {},
                   skip_mountpoint_creation=bool(data.get("SkipMountpointCreation")))

    def inspect(self):
        """types.MountPoint: one entry of Mounts in inspect and ps."""
        entry = {"Type": self.type}
        if self.name:
            entry["Name"] = self.name
        entry.update(Source=self.source, Destination=self.destination)
        if self.driver:
            entry["Driver"] = self.driver
        entry.update(Mode=self.mode, RW=self.rw, Propagation=self.propagation)
        return entry


def parse_mount_raw(raw, volume_driver=""):
    """ParseMountRaw: a -v (HostConfig.Binds) entry, `[source:]destination[:mode]`. An absolute
    source is a bind; any other is a volume's name; none at all makes an anonymous volume."""
    parts = raw.split(":", 2)
    if raw.count(":") > 2 or not parts[0]:
        raise invalid_spec(raw)
    source, target, mode = "", parts[0], ""
    if len(parts) == 2:
        if valid_mode(parts[1]):   # "/data:ro" names no destination
            raise invalid_spec(raw)
        source, target = parts
    elif len(parts) == 3:
        source, target, mode = parts
    if not valid_mode(mode):
        raise InvalidParameter("invalid mode: %s" % mode)
    options = mode.split(",")
    spec = {"Type": "bind" if posixpath.isabs(source) else "volume", "Source": source,
            "Target": target, "ReadOnly": not read_write(mode)}
    volume_options = {"NoCopy": True} if "nocopy" in options else {}
    if spec["Type"] == "volume" and volume_driver:
        volume_options["DriverConfig"] = {"Name": volume_driver}
    if volume_options:   # on a bind, refused below, as dockerd does
        spec["VolumeOptions"] = volume_options
    propagation = [option for option in options if option in PROPAGATION_MODES]
    if propagation:
        spec["BindOptions"] = {"Propagation": propagation[0]}
    try:
        mount_point = _mount_point(spec, validate_bind_source=False)
    except InvalidParameter as err:
        raise InvalidParameter("%s: %s" % (invalid_spec(raw), err)) from None
    mount_point.mode = mode
    return mount_point


def parse_mount_spec(spec):
    """ParseMountSpec: a --mount (HostConfig.Mounts) entry. A bind's source must exist now."""
    if not isinstance(spec, dict):
        raise InvalidParameter("invalid mount config")
    return _mount_point(spec, validate_bind_source=True)


def _mount_point(spec, validate_bind_source):
    """validateMountConfig + parseMountSpec: check one mount.Mount and make its mount point."""
    kind = spec.get("Type")

    def invalid(message):
        return InvalidParameter('invalid mount config for type "%s": %s' % (kind, message))

    target = spec.get("Target") or ""
    if not target:
        raise invalid("field Target must not be empty")
    check_destination(target, invalid)
    rw, source = not spec.get("ReadOnly"), spec.get("Source") or ""
    if kind == "bind":
        if not source:
            raise invalid("field Source must not be empty")
        propagation = (spec.get("BindOptions") or {}).get("Propagation") or DEFAULT_PROPAGATION
        if propagation not in PROPAGATION_MODES:
            raise invalid("invalid propagation mode: %s" % propagation)
        if propagation not in execdriver.PROPAGATION_FLAGS:   # needs a shared root: not yet
            raise invalid("propagation mode %s is not supported by pydockerd yet" % propagation)
        if spec.get("VolumeOptions"):
            raise invalid("field VolumeOptions must not be specified")
        check_absolute(source, invalid)
        if validate_bind_source and not os.path.exists(source):
            raise bind_source_missing(source)
        return MountPoint("bind", clean_path(target), rw, source=clean_path(source),
                          propagation=propagation, spec=spec,
                          skip_mountpoint_creation=validate_bind_source)
    if kind == "volume":
        if spec.get("BindOptions"):
            raise invalid("field BindOptions must not be specified")
        if not source and not rw:
            raise invalid("must not set ReadOnly mode when using anonymous volumes")
        options = spec.get("VolumeOptions") or {}
        return MountPoint("volume", clean_path(target), rw, name=source or random_id(),
                          driver=(options.get("DriverConfig") or {}).get("Name") or "",
                          spec=spec, copy_data=not options.get("NoCopy"))
    if kind == "tmpfs":
        for field in ("BindOptions", "Source"):
            if spec.get(field):
                raise invalid("field %s must not be specified" % field)
        return MountPoint("tmpfs", clean_path(target), rw, spec=spec)
    raise invalid("mount type unknown")


def parse_volumes_from(spec):
    """ParseVolumesFrom: `container[:ro|rw]` -> (container, mode)."""
    if not spec:
        raise InvalidParameter("volumes-from specification cannot be an empty string")
    container, _, mode = spec.partition(":")
    mode = mode or "rw"
    options = mode.split(",")
    if not valid_mode(mode) or set(options) & (set(PROPAGATION_MODES) | {"nocopy"}):
        raise InvalidParameter("invalid mode: %s" % mode)
    return container, mode


def valid_mode(mode):
    """linuxValidMountMode: known words, at most one of each kind."""
    if not mode:
        return True
    options = mode.split(",")
    if any(not any(option in kind for kind in MODE_KINDS) for option in options):
        return False
    return all(sum(option in kind for option in options) <= 1 for kind in MODE_KINDS)


def read_write(mode):
    return valid_mode(mode) and "ro" not in mode.split(",")


def tmpfs_options(mount_point):
    """ConvertTmpfsOptions: a --mount tmpfs as the mount data "ro,mode=1777,size=64m"."""
    options = mount_point.spec.get("TmpfsOptions") or {}
    data = [] if mount_point.rw else ["ro"]
    if options.get("Mode"):
        data.append("mode=%o" % options["Mode"])
    size = options.get("SizeBytes") or 0
    if size:
        suffix = next(((letter, unit) for letter, unit in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10))
                       if size % unit == 0), ("", 1))
        data.append("size=%d%s" % (size // suffix[1], suffix[0]))
    return ",".join(data)


def clean_path(path):
    """path.Clean for an absolute path ("//a/../b/" -> "/b")."""
    return "/" + posixpath.normpath(path).lstrip("/")


def check_absolute(path, invalid):
    if not posixpath.isabs(path):
        raise invalid("invalid mount path: '%s' mount path must be absolute" % path)


def check_destination(destination, invalid):
    """linuxValidateNotRoot, then linuxValidateAbsolute."""
    if posixpath.normpath(destination) in ("/", "//"):
        raise invalid("invalid specification: destination can't be '/'")
    check_absolute(destination, invalid)


def invalid_spec(raw):
    return InvalidParameter("invalid volume specification: '%s'" % raw)


def bind_source_missing(source):
    return InvalidParameter('invalid mount config for type "bind": bind source path does not '
                            'exist: %s' % source)


def random_id():
    """stringid.GenerateRandomID: an anonymous volume's name."""
    while True:
        candidate = secrets.token_hex(32)
        if not candidate[:12].isdigit():
            return candidate


# ---------------------------------------------------------------------------------------
# The local driver's rules (volume/local): names and options, checked before a create.
# ---------------------------------------------------------------------------------------

def check_create(name, driver, options):
    """What a create of `name` must pass before anything is made, in dockerd's order and words:
    the driver exists (only `local` does here), the name is a safe directory name, the local
    driver knows every option. Each error starts "create <name>: ", as dockerd's OpErr."""
    prefix = "create %s: " % name
    if driver not in ("", DEFAULT_DRIVER):
        raise NotFound(prefix + plugin_not_found(driver))
    if len(name) == 1:
        raise InvalidParameter(prefix + "volume name is too short, names should be at least two "
                                        "alphanumeric characters")
    if not VALID_NAME.match(name):
        raise InvalidParameter(prefix + '%s includes invalid characters for a local volume name, '
                                        'only "%s" are allowed. If you intended to pass a host '
                                        'directory, use absolute path' % (json.dumps(name), NAME_CHARS))
    try:
        check_options(options or {})
    except InvalidParameter as err:
        raise InvalidParameter(prefix + str(err)) from None


def plugin_not_found(driver):
    return 'error looking up volume plugin %s: plugin "%s" not found' % (driver, driver)


def check_options(options):
    """validateOpts + setOpts: known keys, their companions, and a `size` there is no quota
    for (dockerd's quota needs XFS project quotas; pydockerd has none, so any size is refused)."""
    for key in options:
        if key not in LOCAL_OPTIONS:
            raise InvalidParameter("invalid option: %s" % json.dumps(key))
    for key, needed in sorted(REQUIRED_OPTIONS.items()):
        for companion in needed if key in options else ():
            if companion not in options:
                raise InvalidParameter("missing required option: %s" % json.dumps(companion))
    if "size" in options:
        try:
            size = logger.parse_size(str(options["size"]), logger.BINARY_UNITS)
        except logger.LogDriverError as err:
            raise InvalidParameter(str(err)) from None
        if size > 0:
            raise InvalidParameter("quota size requested but no quota support")


# ---------------------------------------------------------------------------------------
# One volume: a directory, maybe with a filesystem mounted on it (localVolume + its metadata).
# ---------------------------------------------------------------------------------------

class Volume(object):
    """A local volume: its _data directory, the options it was made with, and two sets the
    service keeps: references (IDs of the containers that use it, running or not) and active
    (who has it mounted now: (container id, destination) pairs). A volume with `type` or
    `device` options has that filesystem mounted on _data while `active` is not empty."""

    def __init__(self, directory, name, labels=None, options=None):
        self.directory = directory
        self.name = name
        self.path = os.path.join(directory, DATA_DIR)
        self.labels = labels
        self.options = options
        self.references = set()
        self.active = set()

    @property
    def needs_mount(self):
        return bool(self.options and (self.options.get("type") or self.options.get("device")))

    def api(self):
        """types.Volume: what create, inspect and ls answer."""
        return {"CreatedAt": self.created_at(), "Driver": DEFAULT_DRIVER, "Labels": self.labels,
                "Mountpoint": self.path, "Name": self.name, "Options": self.options,
                "Scope": "local"}

    def created_at(self):
        """CreatedAt: the change time of _data in RFC 3339, as dockerd reads it."""
        try:
            changed = os.stat(self.path).st_ctime
        except OSError:
            return ""
        text = datetime.datetime.fromtimestamp(int(changed)).astimezone().isoformat()
        return text.replace("+00:00", "Z")

    def size(self):
        """directory.Size: the bytes of the files below _data, a hard-linked file once."""
        seen, total = set(), 0
        for top, dirs, files in os.walk(self.path):
            for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
                try:
                    info = os.lstat(os.path.join(top, name))
                except OSError:
                    continue
                if info.st_size and info.st_ino not in seen:
                    seen.add(info.st_ino)
                    total += info.st_size
        return total

    def save(self):
        """metadata.json (the service's record) and, with options, opts.json (the driver's)."""
        if self.options:
            opts = {"MountType": self.options.get("type", ""), "MountOpts": self.options.get("o", ""),
                    "MountDevice": self.options.get("device", ""), "Quota": {"Size": 0}}
            ioutils.atomic_write_file(os.path.join(self.directory, "opts.json"),
                                      json.dumps(opts).encode(), 0o600)
        metadata = {"Name": self.name, "Driver": DEFAULT_DRIVER, "Labels": self.labels,
                    "Options": self.options}
        ioutils.atomic_write_file(os.path.join(self.directory, "metadata.json"),
                                  json.dumps(metadata).encode(), 0o600)

    @classmethod
    def load(cls, directory):
        """A volume directory read back; a missing record (a crash during create) means a volume
        without labels, its options taken from opts.json."""
        name = os.path.basename(directory)
        try:
            with open(os.path.join(directory, "metadata.json")) as record:
                metadata = json.load(record)
        except FileNotFoundError:
            metadata = {"Options": _options_from_opts_json(directory)}
        return cls(directory, name, metadata.get("Labels"), metadata.get("Options"))

    def mount_filesystem(self):
        """localVolume.mount: `device` on _data, as type `type` with the options in `o`.

        The options are parsed like pkg/mount (`bind`, `ro`, `nosuid`... become flags, the rest
        is data); an nfs or cifs `addr=` host name is resolved first, because the kernel takes
        only addresses. A read-only bind needs a second, remounting call.
        """
        device, fstype = self.options.get("device", ""), self.options.get("type", "")
        if not device:
            raise errdefs.System("missing device in volume options")
        flags, data = execdriver.parse_mount_options(self.options.get("o", ""))
        try:
            if fstype in NETWORK_FILESYSTEMS:
                data = _resolve_address(data)
            linux.mount(device, self.path, fstype or None, flags & ~linux.MS_RDONLY
                        if flags & linux.MS_BIND else flags, data or None)
            if flags & linux.MS_BIND and flags & linux.MS_RDONLY:
                linux.mount(None, self.path, None, flags | linux.MS_REMOUNT)
        except OSError as err:
            raise errdefs.System("failed to mount local volume: %s" % err) from None

    def unmount_filesystem(self):
        """localVolume.unmount: a failed unmount of what is no longer mounted is no failure."""
        try:
            linux.umount(self.path)
        except OSError as err:
            if linux.is_mountpoint(self.path):
                raise errdefs.System("error unmounting volume %s: %s" % (self.name, err)) from None


def _options_from_opts_json(directory):
    try:
        with open(os.path.join(directory, "opts.json")) as opts_file:
            opts = json.load(opts_file)
    except FileNotFoundError:
        return None
    options = {key: opts.get(field) for key, field in (("type", "MountType"), ("o", "MountOpts"),
                                                       ("device", "MountDevice")) if opts.get(field)}
    return options or None


def _resolve_address(data):
    """getAddress + ResolveIPAddr: `addr=host` becomes `addr=<its address>`."""
    options = data.split(",")
    for index, option in enumerate(options):
        if option.startswith("addr="):
            try:
                address = socket.getaddrinfo(option[5:], None)[0][4][0]
            except OSError as err:
                raise OSError("error resolving passed in network volume address: %s" % err) from None
            options[index] = "addr=" + address
    return ",".join(options)


# ---------------------------------------------------------------------------------------
# The volume service (volume/service, volume/local's Root): every volume of the daemon.
# ---------------------------------------------------------------------------------------

class VolumeService(object):
    """The daemon's volumes, by name: create, inspect, list, remove, prune, sizes; references
    and mounts for containers. One lock guards the lot, so a volume is never removed between a
    container's check and its reference.

    Collaborator, required: log_event(type, action, id, attributes), the events service.
    """

    LIST_FILTERS = ("dangling", "driver", "label", "name")
    PRUNE_FILTERS = ("label", "label!")

    def __init__(self, root, log_event):
        self.directory = os.path.join(root, "volumes")
        self.log_event = log_event
        self.lock = threading.RLock()
        self.pruning = threading.Lock()
        self.volumes = {}
        os.makedirs(self.directory, 0o700, exist_ok=True)
        for entry in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, entry)
            if not os.path.isdir(path) or os.path.islink(path):
                continue
            try:
                self.volumes[entry] = Volume.load(path)
            except (OSError, ValueError, AttributeError) as err:
                log.error("Failed to load volume %s: %s", entry, err)

    def path(self, name):
        return os.path.join(self.directory, name, DATA_DIR)

    def _get(self, name):
        volume = self.volumes.get(name)
        if volume is None:
            raise NotFound("get %s: no such volume" % name)
        return volume

    # ---- the API: create, inspect, ls, rm, prune, df -------------------------------------------

    def create_volume(self, request):
        """POST /volumes/create: {"Name", "Driver", "DriverOpts", "Labels"} -> the volume."""
        if request is None:
            raise InvalidParameter("got EOF while reading request body")
        if not isinstance(request, dict):
            raise InvalidParameter("json: cannot unmarshal into Go value of type volume.VolumeCreateBody")
        for key in ("DriverOpts", "Labels"):
            value = request.get(key)
            if value is not None and not (isinstance(value, dict) and
                                          all(isinstance(v, str) for v in value.values())):
                raise InvalidParameter("json: cannot unmarshal %s into Go struct field "
                                       "VolumeCreateBody.%s of type map[string]string" % (key, key))
        name, driver = request.get("Name") or "", request.get("Driver") or ""
        if not isinstance(name, str) or not isinstance(driver, str):
            raise InvalidParameter("json: cannot unmarshal Name or Driver: they are strings")
        volume, _ = self.create(name or random_id(), driver, request.get("DriverOpts"),
                                request.get("Labels"))
        return volume.api()

    def create(self, name, driver="", options=None, labels=None, reference=None):
        """VolumesService.Create: a new volume, or the existing one of that name (dockerd's
        reuse). Options or labels that differ from the existing volume's are refused rather
        than silently dropped. `reference` is the ID of a container that will use it.
        Returns (volume, whether it was made now)."""
        check_create(name, driver, options)
        with self.lock:
            volume, made = self.volumes.get(name), False
            if volume is None:
                volume, made = self._make(name, options, labels), True
            elif (options and options != volume.options) or (labels and labels != volume.labels):
                raise errdefs.Conflict("create %s: a volume of this name exists with other options "
                                       "or labels" % name)
            if reference:
                volume.references.add(reference)
        self.log_event("volume", "create", name, {"driver": DEFAULT_DRIVER})
        return volume, made

    def _make(self, name, options, labels):
        """Root.Create: the directories, the options and the record; nothing stays on failure."""
        volume = Volume(os.path.join(self.directory, name), name, labels, options or None)
        try:
            os.makedirs(volume.directory, 0o701)
            os.mkdir(volume.path, 0o755)
            volume.save()
        except OSError as err:
            shutil.rmtree(volume.directory, ignore_errors=True)
            raise errdefs.System("create %s: error while creating volume: %s" % (name, err)) from None
        self.volumes[name] = volume
        return volume

    def inspect(self, name):
        with self.lock:
            return self._get(name).api()

    def list_volumes(self, filters):
        """VolumesService.List (`docker volume ls`) with the filters dangling, driver, label,
        name; by name, as the CLI shows them."""
        _check_filters(filters, self.LIST_FILTERS)
        dangling = _dangling(filters.get("dangling"))
        with self.lock:
            selected = [volume.api() for name, volume in sorted(self.volumes.items())
                        if _volume_matches(volume, filters, dangling)]
        return {"Volumes": selected, "Warnings": None}

    def remove(self, name, force=False):
        """VolumesService.Remove (`docker volume rm`): never one that a container refers to;
        with force, a missing volume is no error and the record goes even if the data cannot."""
        with self.lock:
            volume = self.volumes.get(name)
            if volume is None and force:
                return
            volume = self._get(name)
            self._destroy(volume, force)
        self.log_event("volume", "destroy", name, {"driver": DEFAULT_DRIVER})

    def _destroy(self, volume, force=False):
        if volume.references:
            raise errdefs.Conflict("remove %s: volume is in use - [%s]"
                                   % (volume.name, ", ".join(sorted(volume.references))))
        if volume.active:
            raise errdefs.System("remove %s: volume has active mounts" % volume.name)
        try:
            self._delete(volume)
        except (OSError, errdefs.DockerError) as err:
            if not force:
                raise errdefs.System("remove %s: %s" % (volume.name, err)) from None
            log.error("Error removing volume %s: %s", volume.name, err)
        del self.volumes[volume.name]

    def _delete(self, volume):
        """Root.Remove: unmount a leftover filesystem, then delete the directory, but only one
        that is really below <root>/volumes and has nothing mounted on _data any more (a bind
        volume's device must never be emptied)."""
        if linux.is_mountpoint(volume.path):
            volume.unmount_filesystem()
        real = os.path.realpath(volume.directory)
        if os.path.dirname(real) != os.path.realpath(self.directory):
            raise errdefs.System("Unable to remove a directory outside of the local volume root "
                                 "%s: %s" % (self.directory, real))
        shutil.rmtree(real)

    def prune(self, filters):
        """VolumesService.Prune (dockerd 20.10): every local volume without options that no
        container refers to, named or anonymous, matching the label filters."""
        _check_filters(filters, self.PRUNE_FILTERS)
        if not self.pruning.acquire(blocking=False):
            raise errdefs.Conflict("a prune operation is already running")
        deleted, reclaimed = [], 0
        try:
            with self.lock:
                for name, volume in sorted(self.volumes.items()):
                    if volume.references or volume.options or not _labels_match(volume.labels, filters):
                        continue
                    size = volume.size()
                    try:
                        self._destroy(volume)
                    except errdefs.DockerError as err:
                        log.warning("Could not remove volume %s: %s", name, err)
                        continue
                    deleted.append(name)
                    reclaimed += size
        finally:
            self.pruning.release()
        self.log_event("volume", "prune", "", {"reclaimed": str(reclaimed)})
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}

    def disk_usage(self):
        """LocalVolumesSize (`docker system df`): the volumes without options, each with its
        size and how many containers refer to it."""
        with self.lock:   # sizes are walked outside the lock: a start must not wait for them
            counted = [(volume, len(volume.references))
                       for _, volume in sorted(self.volumes.items()) if not volume.options]
        return [dict(volume.api(), UsageData={"Size": volume.size(), "RefCount": references})
                for volume, references in counted]

    # ---- containers: references and mounts ----------------------------------------------------

    def reference(self, name, container_id):
        """VolumeStore.Get with a reference: an existing volume, now used by the container."""
        with self.lock:
            volume = self._get(name)
            volume.references.add(container_id)
            return volume

    def release(self, name, container_id):
        with self.lock:
            volume = self.volumes.get(name)
            if volume is not None:
                volume.references.discard(container_id)

    def mount(self, name, ref):
        """localVolume.Mount: _data, with the volume's filesystem mounted on it for its first
        user. `ref` names the user; the same ref mounts once."""
        with self.lock:
            volume = self._get(name)
            if volume.needs_mount and not volume.active:
                volume.mount_filesystem()
            volume.active.add(ref)
            return volume.path

    def unmount(self, name, ref):
        """localVolume.Unmount: the filesystem goes with the last user (a failure is logged:
        the count drops anyway, or the volume could never be removed). Returns whether `ref`
        had it mounted."""
        with self.lock:
            volume = self.volumes.get(name)
            if volume is None or ref not in volume.active:
                return False
            volume.active.discard(ref)
            if volume.needs_mount and not volume.active:
                try:
                    volume.unmount_filesystem()
                except errdefs.DockerError as err:
                    log.error("%s", err)
            return True

    def restore(self, containers):
        """The boot's half of the references: `containers` is every container as (id, running,
        mount points). Every one refers to its volumes; the running ones have them mounted, so
        a volume's filesystem stays mounted exactly while one of them runs (one left mounted by
        an unclean stop goes, one a running container needs is mounted again)."""
        with self.lock:
            for container_id, running, mount_points in containers:
                for mount_point in mount_points.values():
                    volume = self.volumes.get(mount_point.name) if mount_point.type == "volume" else None
                    if volume is None:
                        continue
                    volume.references.add(container_id)
                    if running:
                        volume.active.add((container_id, mount_point.destination))
            for volume in self.volumes.values():
                self._restore_mount(volume)

    def _restore_mount(self, volume):
        if not volume.needs_mount:
            return
        try:
            mounted = linux.is_mountpoint(volume.path)
            if volume.active and not mounted:
                volume.mount_filesystem()
            elif mounted and not volume.active:
                volume.unmount_filesystem()
        except (OSError, errdefs.DockerError) as err:
            log.error("Error restoring the mount of volume %s: %s", volume.name, err)


def _check_filters(filters, accepted):
    for key in filters:
        if key not in accepted:
            raise InvalidParameter("Invalid filter '%s'" % key)


def _dangling(values):
    """The dangling filter: true/1 or false/0, else dockerd's invalidFilter."""
    if not values:
        return None
    if "true" in values or "1" in values:
        return True
    if "false" in values or "0" in values:
        return False
    raise InvalidParameter("Invalid filter 'dangling=[%s]'" % " ".join(values))


def _volume_matches(volume, filters, dangling):
    if filters.get("driver") and DEFAULT_DRIVER not in filters["driver"]:
        return False
    if filters.get("name") and not any(value == volume.name or _search(value, volume.name)
                                       for value in filters["name"]):
        return False
    if dangling is not None and dangling == bool(volume.references):
        return False
    return _labels_match(volume.labels, filters)


def _search(pattern, text):
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


def _labels_match(labels, filters):
    """MatchKVList: every `label` matches (key, or key=value); no `label!` does."""
    labels = labels or {}

    def matches(wanted):
        key, sep, value = wanted.partition("=")
        return key in labels and (not sep or labels[key] == value)
    return all(matches(value) for value in filters.get("label") or []) and \
        not any(matches(value) for value in filters.get("label!") or [])


# ---------------------------------------------------------------------------------------
# A container's mount points (daemon/volumes.go, daemon/create_unix.go, daemon/mounts.go).
# ---------------------------------------------------------------------------------------

def plan_mount_points(host_config, image_volumes, find_mount_points):
    """registerMountPoints' checks, made before the container exists: its mount points from
    --volumes-from (the other container's, read-only with :ro), then -v, then --mount, then
    the image's and the request's VOLUMEs that nothing else covers, as anonymous volumes.

    Every name, driver, option and destination is checked here, so a bad request makes
    nothing. find_mount_points(name) gives another container's mount points (raising
    errdefs.NotFound). Returns {destination: MountPoint}, no volume made yet.
    """
    volume_driver = host_config.get("VolumeDriver") or ""
    if volume_driver not in ("", DEFAULT_DRIVER):
        raise InvalidParameter(plugin_not_found(volume_driver))
    tmpfs = host_config.get("Tmpfs") or {}
    for destination in tmpfs:
        check_destination(destination, InvalidParameter)
    mount_points = _inherited_mount_points(host_config.get("VolumesFrom") or [], find_mount_points)
    taken = set(tmpfs)
    own = [parse_mount_raw(raw, volume_driver) for raw in host_config.get("Binds") or []]
    own += [parse_mount_spec(spec) for spec in host_config.get("Mounts") or []]
    for mount_point in own:
        if mount_point.destination in taken:
            raise InvalidParameter("Duplicate mount point: %s" % mount_point.destination)
        taken.add(mount_point.destination)
        if mount_point.type == "volume":
            _check_volume(mount_point)
            mount_point.mode = mount_point.mode or "z"   # setBindModeIfNull
        mount_points[mount_point.destination] = mount_point
    for path in sorted(image_volumes or {}):
        destination = clean_path(path)
        if destination in mount_points or destination in tmpfs:
            continue
        check_destination(path, lambda message: InvalidParameter(
            'invalid mount config for type "volume": %s' % message))
        mount_points[destination] = MountPoint("volume", destination, name=random_id(),
                                               driver=volume_driver, copy_data=True)
    return mount_points


def _inherited_mount_points(specs, find_mount_points):
    inherited = {}
    for spec in specs:
        name, mode = parse_volumes_from(spec)
        try:
            theirs = find_mount_points(name)
        except NotFound as err:
            raise InvalidParameter(str(err)) from None
        for mount_point in theirs.values():
            inherited[mount_point.destination] = dataclasses.replace(
                mount_point, rw=mount_point.rw and read_write(mode), copy_data=False, inherited=True)
    return inherited


def _check_volume(mount_point):
    options, _ = mount_point.volume_options
    try:
        check_create(mount_point.name, mount_point.driver, options)
    except NotFound as err:   # a 404 would make the CLI try to pull the image
        raise InvalidParameter(str(err)) from None


def needs_rootfs(mount_points):
    """Whether registering these mount points looks into the image (to copy its content)."""
    return any(m.type == "volume" and m.copy_data for m in mount_points.values())


def register_mount_points(service, container_id, mount_points, rootfs):
    """The volumes of a new container: named ones made on first use, anonymous ones made, the
    --volumes-from ones found, all referenced by the container; then the image's content
    (under `rootfs`, the mounted root; None copies nothing) copied into those still empty. On
    a failure nothing stays referenced and the volumes made here are removed again."""
    referenced, made = [], []
    try:
        for mount_point in sorted(mount_points.values(), key=lambda m: m.destination):
            if mount_point.type != "volume":
                continue
            if mount_point.copy_data and rootfs:
                _check_not_over_file(rootfs, mount_point.destination)
            if mount_point.inherited:
                volume = service.reference(mount_point.name, container_id)
            else:
                options, labels = mount_point.volume_options
                volume, new = service.create(mount_point.name, mount_point.driver, options, labels,
                                             reference=container_id)
                made += [volume.name] if new else []
            referenced.append(volume.name)
            mount_point.driver, mount_point.source = DEFAULT_DRIVER, volume.path
        for mount_point in mount_points.values():
            if mount_point.type == "volume" and mount_point.copy_data and rootfs:
                copy_image_content(service, container_id, mount_point, rootfs)
    except BaseException:
        for name in referenced:
            service.release(name, container_id)
        for name in made:
            _remove_quietly(service, name)
        raise
    return mount_points


def _check_not_over_file(rootfs, destination):
    path = execdriver.secure_join(rootfs, destination)
    if os.path.exists(path) and not os.path.isdir(path):
        raise InvalidParameter("cannot mount volume over existing file, file exists %s" % path)


def copy_image_content(service, container_id, mount_point, rootfs):
    """CopyImagePathContent: what the image has at the destination goes into the volume, if
    the volume is still empty (a volume is filled once, by its first container)."""
    source = execdriver.secure_join(rootfs, mount_point.destination)
    if not os.path.isdir(source):
        return
    ref = ("copy", container_id)
    path = service.mount(mount_point.name, ref)
    try:
        if not os.listdir(path):
            copy_tree(source, path)
    finally:
        service.unmount(mount_point.name, ref)


def copy_tree(source, destination):
    """fs.CopyDir: files, links, devices, owners, modes, times and xattrs, through the layer tar
    code (archive.write_tar into archive.apply_layer), so no symlink is followed out of either
    tree; then the root takes the owner, mode and times of the image's directory."""
    read_fd, write_fd = os.pipe()
    failures = []

    def produce():
        try:
            with os.fdopen(write_fd, "wb") as out:
                archive.write_tar(source, out)
        except (OSError, archive.ArchiveError) as err:
            failures.append(err)
    writer = threading.Thread(target=produce, name="copy " + destination, daemon=True)
    writer.start()
    try:
        with os.fdopen(read_fd, "rb") as stream:   # closed before the join: a stuck writer gets EPIPE
            archive.apply_layer(destination, stream)
    finally:
        writer.join()
    if failures:
        raise failures[0]
    info = os.stat(source)
    os.chown(destination, info.st_uid, info.st_gid)
    os.chmod(destination, stat.S_IMODE(info.st_mode))
    os.utime(destination, ns=(info.st_atime_ns, info.st_mtime_ns))


def check_bind_sources(mount_points):
    """A --mount bind's source must exist (a -v source is made instead): checked at create and
    again at every start, because the directory may go in between."""
    for mount_point in mount_points.values():
        if mount_point.skip_mountpoint_creation and not os.path.exists(mount_point.source):
            raise bind_source_missing(mount_point.source)


def setup_mounts(service, container_id, mount_points, tmpfs):
    """setupMounts: the exec driver's mounts for a start, deepest last. Volumes are mounted (a
    `volume mount` event each) and bound from their _data; a missing -v source is made; a
    --tmpfs destination wins over a mount point. If one fails, those mounted are unmounted."""
    mounts, mounted = [], []
    try:
        for mount_point in sorted(mount_points.values(), key=lambda m: m.destination):
            if mount_point.destination in tmpfs:
                continue
            mounts.append(_exec_mount(service, container_id, mount_point))
            mounted += [mount_point] if mount_point.type == "volume" else []
    except BaseException:
        unmount_volumes(service, container_id, {m.destination: m for m in mounted})
        raise
    return mounts + [execdriver.Mount(destination=path, type="tmpfs", data=options or "")
                     for path, options in sorted(tmpfs.items())]


def _exec_mount(service, container_id, mount_point):
    readonly = not mount_point.rw
    if mount_point.type == "tmpfs":
        return execdriver.Mount(destination=mount_point.destination, type="tmpfs",
                                data=tmpfs_options(mount_point))
    if mount_point.type == "volume":
        try:
            path = service.mount(mount_point.name, (container_id, mount_point.destination))
        except errdefs.DockerError as err:
            raise errdefs.System("error while mounting volume '%s': %s"
                                 % (mount_point.source, err)) from None
        service.log_event("volume", "mount", mount_point.name, {
            "driver": mount_point.driver, "container": container_id,
            "destination": mount_point.destination, "read/write": str(mount_point.rw).lower(),
            "propagation": mount_point.propagation})
        return execdriver.Mount(destination=mount_point.destination, source=path, readonly=readonly)
    if not mount_point.skip_mountpoint_creation and not os.path.exists(mount_point.source):
        os.makedirs(mount_point.source, 0o755)
    return execdriver.Mount(destination=mount_point.destination, source=mount_point.source,
                            readonly=readonly, propagation=mount_point.propagation)


def unmount_volumes(service, container_id, mount_points):
    """UnmountVolumes: the container's volumes given back at exit (a `volume unmount` event
    each it had mounted); safe to call again."""
    for mount_point in mount_points.values():
        if mount_point.type == "volume" and \
                service.unmount(mount_point.name, (container_id, mount_point.destination)):
            service.log_event("volume", "unmount", mount_point.name,
                              {"driver": mount_point.driver, "container": container_id})


def remove_mount_points(service, container_id, mount_points, remove_anonymous):
    """removeMountPoints: the container no longer refers to its volumes; with `rm -v` (and for
    --rm containers) its anonymous volumes go too, unless another container still uses one.
    A volume that cannot go is logged: the container's removal does not fail for it."""
    for mount_point in mount_points.values():
        if mount_point.type != "volume":
            continue
        service.release(mount_point.name, container_id)
        if remove_anonymous and mount_point.anonymous:
            _remove_quietly(service, mount_point.name)


def _remove_quietly(service, name):
    """Remove a volume unless another container uses it; one already gone is fine (a removal
    finished at boot may have got that far before the crash)."""
    try:
        service.remove(name)
    except (errdefs.Conflict, NotFound):
        pass
    except errdefs.DockerError as err:
        log.error("Error removing volume %s: %s", name, err)


def inspect_mounts(mount_points):
    """The Mounts of inspect and ps, by destination."""
    return [mount_point.inspect() for _, mount_point in sorted(mount_points.items())]


def uses_volume(mount_points, value):
    """The ps `volume` filter: a mount point's volume name (a bind's source) or destination."""
    return any(value in (mount_point.name or mount_point.source, mount_point.destination)
               for mount_point in mount_points.values())
