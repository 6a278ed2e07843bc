"""The graph: Docker's image service, from Docker 1.8.2's `graph` package, content-addressed.

Docker 1.8.2 kept images in graph/ (graph.go, tags.go, import.go, load.go, export.go,
history.go, list.go, service.go): each image was one directory holding its JSON and a layer,
named by a random ID. Docker 1.10 replaced the random IDs with content addresses, splitting the
graph into an image store (image/store.go) and a layer store (layer/layer_store.go). pydockerd
keeps 1.8's names -- the graph, the tag store -- with the modern model, because that is what
today's clients and registries speak. The parts are modules of their own:

    drivers.layer       the layer store: diff IDs, chain IDs, tar-split, reference counts
    drivers.image       the image store: image configs by ID, parents, last-tagged times
    drivers.tarexport   the streams of `docker load` and `docker save`
    drivers.tags        the tag store (repositories-<driver>)

This module is the service the API calls: finding, tagging, importing, listing, inspecting,
deleting and pruning images, and the containers' writable layers. It lives in <root>/graph.

The module reads top to bottom: errors; filters; Graph.
"""
import collections
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time

from drivers.errdefs import Conflict, DockerError, InvalidParameter, NotFound, System
from drivers.image import ZERO_TIME, ImageStore, Timestamp, container_config_shape, go_json, sorted_dict
from drivers.layer import (DIGEST_PREFIX, DIGEST_RE, LayerStore, hex_of, make_state_dir,
                           sha256_digest, storage_errors, truncate_id)
from drivers.linux import go_arch
from drivers.reference import Reference, is_full_id, parse_normalized_named, parse_tag
from drivers.tags import TagJournal
from drivers.tarexport import ArchiveLoader, ArchiveSaver, Upload

log = logging.getLogger("pydockerd.graph")


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

class ImageDeleteConflict(Conflict):
    """imageDeleteConflict: why an image cannot be deleted. A hard conflict (a child image, a
    running container) cannot be forced."""

    def __init__(self, image_id, message, hard=False):
        super().__init__("conflict: unable to delete %s (%s) - %s" % (
            truncate_id(image_id), "cannot be forced" if hard else "must be forced", message))
        self.hard = hard


def no_such_image(name):
    return NotFound("No such image: %s" % name)

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

class Graph(object):
    """The image store service (Docker 1.8.2's graph.Graph and TagStore, today's ImageService).

    Graph(root, driver, tagstore, image_in_use, image_running, events=None, docker_version="")
      root            the daemon root; the graph lives in <root>/graph
      driver          the graph driver (drivers.graphdriver.new)
      tagstore        drivers.tags.TagStore, or None until join_tag_store(tagstore)
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
      save(names, out); tag(name, repo, tag) -> "repo:tag"; add_tag(image_id, ref) (no event);
      tag_reference(repo, tag) -> Reference
      delete(name, force=False, noprune=False) -> [{"Untagged": ..} | {"Deleted": ..}]
      prune(dangling_only=True, filters=None) -> {"ImagesDeleted": [..], "SpaceReclaimed": n}
    Layers (the registry client, commit):
      has_layer(chain_id); register_layer(parent, stream, expected_diff_id=None) -> chain ID,
      held until release_layer(chain_id); create_image(config_bytes, parent_id=None,
      pending=None) -> ID; layer_tar(chain_id, out)
    Crash-consistent tag moves (drivers.tags.TagJournal):
      with graph.tagging(refs) as pending:
          image_id = graph.create_image(config_bytes, pending=pending)  # journals refs first
          ... tag image_id with each of refs ...
      A kill inside the block leaves the journal; the next start applies it if the image was
      committed and drops it otherwise, so the tags name the old image or the complete new one.
    Containers' writable layers:
      create_rw_layer(container_id, image_id, init_func=None); mount_rw_layer(container_id)
      -> path; unmount_rw_layer; rw_layer_changes; rw_layer_diff(container_id, out);
      rw_layer_size; rw_layer_parent_size; commit_rw_layer(container_id) -> chain ID (held);
      release_rw_layer
    """

    def __init__(self, root, driver, tagstore, image_in_use, image_running, events=None,
                 docker_version=""):
        self.root = make_state_dir(os.path.join(root, "graph"))
        self.driver = driver
        self.events = events
        self._image_in_use = image_in_use
        self._image_running = image_running
        self.docker_version = docker_version
        self.layers = LayerStore(os.path.join(self.root, "layerdb"), driver)
        self.store = ImageStore(os.path.join(self.root, "imagedb"), self.layers)
        self.layers.prune_unreferenced()
        self.pending_tags = TagJournal(make_state_dir(os.path.join(self.root, "pending-tags")))
        self.tagstore = None
        if tagstore is not None:
            self.join_tag_store(tagstore)
        # Deleting checks, then changes, several stores; one lock keeps that a single step.
        self._lock = threading.RLock()

    def join_tag_store(self, tagstore):
        """Use `tagstore` (the daemon's boot makes it after the graph), once the tag moves a
        killed daemon left journalled are settled in it."""
        self.pending_tags.recover(tagstore, lambda image_id: self.store.get(image_id) is not None)
        self.tagstore = tagstore

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
        if is_full_id(name) or DIGEST_RE.match(name):
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

    def create_image(self, config_bytes, parent_id=None, pending=None):
        """Store image config `config_bytes` (its layers must be registered); returns the image
        ID, "sha256:<hex>" of the bytes. Idempotent. `parent_id` records the image it was
        committed from, which makes that image an intermediate one. `pending` (from tagging())
        journals the image's tags-to-be before the image exists."""
        with storage_errors("failed to create image"):
            if pending is not None:
                pending.record(sha256_digest(config_bytes))
            return self.store.create(config_bytes, parent_id)

    def tagging(self, refs):
        """The journal of a tag move to `refs` (References): see the class docstring."""
        return self.pending_tags.moving([ref.with_default_tag() for ref in refs])

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
        with self.tagging([ref] if ref is not None else []) as pending:
            try:
                with storage_errors("failed to import image"):
                    image_id = self.create_image(self._import_config(chain, config, message or
                                                                     "Imported from " + src), pending=pending)
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
        return self._tag_image(image.id, self.tag_reference(repo, tag))

    @staticmethod
    def tag_reference(repo, tag=""):
        """The Reference `docker tag`, commit and import name with `repo` and `tag`."""
        ref = parse_normalized_named(repo)
        if ref.digest is not None:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        if tag:
            ref = Reference(ref.domain, ref.path, parse_tag(tag))
        return ref.with_default_tag()

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
        uses are removed again. The upload is spooled in `tmp_dir` (None: $TMPDIR, the
        daemon's <root>/tmp), where a kill leaves it for the next boot to remove.
        """
        report = None if quiet else progress
        spool = tempfile.mkdtemp(prefix="docker-import-", dir=tmp_dir)
        held = []
        try:
            with storage_errors("failed to load images"):
                return ArchiveLoader(self, Upload(stream, spool), report, held).load()
        finally:
            for chain in held:
                self.layers.release(chain)
            shutil.rmtree(spool, ignore_errors=True)

    # -- save --------------------------------------------------------------------------------

    def save(self, names, out, tmp_dir=None):
        """Save (`docker save`): write the images `names` refer to into one tar on `out`, in
        the format dockerd 20.10 writes (see ArchiveSaver). A bare repository name saves
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
                ArchiveSaver(self, spool).save(targets, out)
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
            if is_full_id(name) or DIGEST_RE.match(name):
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
        with storage_errors("failed to commit the changes of %s" % container_id), \
                tempfile.TemporaryFile(dir=tmp_dir) as diff:
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
