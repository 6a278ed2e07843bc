"""docker load and docker save: Docker's image/tarexport package, and load's progress.

Load reads any of the three formats docker save has written -- the docker-archive
(manifest.json), its legacy form (`repositories` and v1 layer directories) and the OCI image
layout (index.json) -- from an upload spooled to a private directory (Upload), and creates
images and tags through the graph (ArchiveLoader). Save writes the docker-archive dockerd
20.10 writes (ArchiveSaver), each layer tar rebuilt byte for byte from the layer store.

The module reads top to bottom: progress; the uploaded archive; the tar writer and the v1
JSON save writes; the loader; the saver.
"""
import collections
import hashlib
import json
import lzma
import os
import posixpath
import re
import tarfile
import zlib

from drivers import archive
from drivers.errdefs import InvalidParameter, System
from drivers.image import (UNIX_EPOCH_TIME, ZERO_TIME, container_config_shape, go_json,
                           parse_image_config, sorted_dict)
from drivers.layer import (COPY_CHUNK, DIGEST_PREFIX, MAX_JSON_MEMBER, InvalidDiffID, chain_id,
                           chain_ids_of, copy_stream, hex_of, sha256_digest, truncate_id,
                           validate_digest)
from drivers.linux import go_arch
from drivers.reference import parse_normalized_named


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
                copied = copy_stream(source, target)
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
            if copy_stream(source, self._out) != size:
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


OCI_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                   "application/vnd.docker.distribution.manifest.list.v2+json")

# ---------------------------------------------------------------------------------------------
# docker load: the three archive formats
# ---------------------------------------------------------------------------------------------

class ArchiveLoader(object):
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
            refs = [_loaded_ref(tag) for tag in item.get("RepoTags") or []]
            image_id = self._create_tagged(raw, layer_paths, refs)
            if item.get("Parent"):
                parent_links.append((image_id, item["Parent"]))
        self._link_parents(parent_links)

    def _create_tagged(self, raw, layer_paths, refs):
        """Create the image of `raw` and tag it with `refs`, journalled (graph.tagging) so a
        kill leaves the tags on the old image or on the complete new one."""
        with self.graph.tagging(refs) as pending:
            image_id = self._create(raw, layer_paths, pending)
            for ref in refs:
                self._tag(image_id, ref)
        return image_id

    def _create(self, raw, layer_paths, pending):
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
        image_id = self.graph.create_image(raw, pending=pending)
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

    def _tag(self, image_id, ref):
        """setLoadedTag: tag the loaded image, saying so when the tag moves off another image."""
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
            name = _oci_image_name(descriptor.get("annotations") or {})
            self._create_tagged(raw, [self._blob_path(layer) for layer in layers],
                                [_loaded_ref(name)] if name else [])

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
        repositories = self.upload.read_json("repositories", "repositories")
        tags = collections.defaultdict(list)     # v1 ID -> the references it is loaded as
        for repository, repository_tags in sorted(repositories.items()):
            for tag, v1_id in sorted(repository_tags.items()):
                tags[v1_id].append(_loaded_ref("%s:%s" % (repository, tag)))
        names = self.upload.names()
        missing = sorted(v1_id for v1_id in tags if v1_id + "/json" not in names)
        if missing:
            raise InvalidParameter("invalid target ID: %s" % missing[0])
        loaded = {}
        for name in sorted(names):
            if name.endswith("/json") and name.count("/") == 1:
                self._load_legacy_image(name.split("/")[0], loaded, tags, depth=0)

    def _load_legacy_image(self, v1_id, loaded, tags, depth):
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
            parent_id = self._load_legacy_image(v1["parent"], loaded, tags, depth + 1)
            parent = self.graph.store.get(parent_id)
            rootfs, history = list(parent.diff_ids), list(parent.history)
        parent_chain = chain_ids_of(rootfs)[-1] if rootfs else None
        chain = self._register(v1_id + "/layer.tar", parent_chain, None, v1_id[:12])
        rootfs.append(self.graph.layers.get(chain).diff_id)
        history.append(_legacy_history(v1))
        with self.graph.tagging(tags[v1_id]) as pending:
            image_id = self.graph.create_image(_config_from_v1(v1, rootfs, history),
                                               parent_id or None, pending)
            self.loaded_ids.append(image_id)
            self.graph.log_image_event(image_id, image_id, "load")
            for ref in tags[v1_id]:
                self._tag(image_id, ref)
        loaded[v1_id] = image_id
        return image_id


def _loaded_ref(text):
    """A tag an archive names for an image: a whole reference with a tag."""
    ref = parse_normalized_named(text)
    if ref.tag is None:
        raise InvalidParameter("invalid tag %s" % json.dumps(text))
    return ref


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

class ArchiveSaver(object):
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
