"""The distribution package: `docker pull` and `docker push` over the registry's v2 protocol.

Docker 1.8.2 did this in graph/pull_v2.go and graph/push_v2.go. Later dockerd moved it into the
`distribution` package, with transfer managers (xfer) that move several layers at once and a
metadata store that remembers which registry blob holds which layer. pydockerd follows today's
dockerd, because that is what registries serve and what the CLI expects to be told.

pull (pull_v2.go), for each endpoint in turn until one delivers (drivers/registry.py orders them:
mirrors before Docker Hub, https before plain http for an insecure registry):
  1. HEAD the tag for its manifest digest; if the tag already names that image, stop there.
  2. GET the manifest by digest and check the digest. A manifest list or OCI index holds one
     manifest per platform: pick this machine's (or --platform's) and fetch that one.
  3. GET the image config; its digest is the image ID.
  4. Download the missing layers, three at a time, into temporary files, each checked against
     its blob digest; register them bottom up (the graph checks each tar against the config's
     diff ID), store the image, point the tag at it and record `repo@digest` (RepoDigests).
push (push_v2.go):
  1. For each layer, top first: skip it if the registry already has it (HEAD), mount it from
     another repository of the same registry, or upload it gzip-compressed (POST, PATCH, PUT).
  2. Upload the config, PUT the schema 2 manifest, report its digest and size.

inspect (api/server/router/distribution): the manifest a reference names, and its platforms,
read from the registry without pulling anything.

Interface (the API handlers call these):
    config = Config(registry_service, graph, tagstore, V2MetadataService(root), events)
    pull(config, ref, auth_config=None, platform=None, progress=None, all_tags=False)
    push(config, ref, auth_config=None, progress=None)
    inspect(config, ref, auth_config=None) -> {"Descriptor": {..}, "Platforms": [..] or None}
`progress(message)` receives dockerd's JSON progress messages as dicts, one at a time even though
layers move on several threads. Failures raise DockerErrors worded like dockerd's; one raised
before the first progress message is meant to become the HTTP error, a later one an errorDetail.
"""
import contextlib
import errno
import hashlib
import http.client
import json
import os
import tempfile
import threading
import zlib

from drivers import errdefs
from drivers.ioutils import atomic_write_file
from drivers.layer import InvalidDiffID, chain_ids_of, remove_temporary_files, truncate_id
from drivers.linux import go_arch
from drivers.reference import DEFAULT_TAG, Reference, parse_normalized_named
from drivers.registry import (MEDIA_TYPE_MANIFEST, MEDIA_TYPE_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX,
                              MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_SCHEMA1_SIGNED, RegistryError,
                              RequestError)
from drivers.tarexport import ProgressReader

MEDIA_TYPE_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# Layer encodings the graph can unpack (drivers/archive.py detects gzip or plain tar by magic).
LAYER_MEDIA_TYPES = (
    MEDIA_TYPE_LAYER,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
)
INDEX_MEDIA_TYPES = (MEDIA_TYPE_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX)
IMAGE_MANIFEST_MEDIA_TYPES = (MEDIA_TYPE_MANIFEST, MEDIA_TYPE_OCI_MANIFEST)
MAX_CONFIG_SIZE = 8 << 20
COPY_CHUNK = 1 << 20
MAX_BLOB_ATTEMPTS = 5
MAX_MOUNT_ATTEMPTS = 3


class Config(object):
    """ImagePullConfig and ImagePushConfig: the stores and limits every pull and push uses.

    `events(type_, action, actor_id, attributes)` receives the `pull` and `push` image events.
    The limits are dockerd's --max-concurrent-downloads and --max-concurrent-uploads defaults.
    Temporary layer files go to `tmp_dir` (None: $TMPDIR, which the daemon points at its root).
    """

    def __init__(self, registry_service, graph, tagstore, metadata, events=None,
                 max_concurrent_downloads=3, max_concurrent_uploads=5, tmp_dir=None):
        self.registry_service = registry_service
        self.graph = graph
        self.tagstore = tagstore
        self.metadata = metadata
        self.events = events
        self.max_concurrent_downloads = max_concurrent_downloads
        self.max_concurrent_uploads = max_concurrent_uploads
        self.tmp_dir = tmp_dir


# ---------------------------------------------------------------------------------------------
# Progress: dockerd's JSON messages (pkg/progress, pkg/streamformatter)


class ProgressOutput(object):
    """progress.Output: one message at a time, whichever transfer thread sends it.

    Three shapes, as dockerd writes them: a message (`{"status", "id"}`), an update with an empty
    progressDetail (`Pull complete`), and byte progress with a rendered bar (`Downloading`).
    """

    def __init__(self, send=None):
        self._send = send
        self._lock = threading.Lock()

    def send(self, message):
        if self._send is not None:
            with self._lock:
                self._send(message)

    def message(self, text, id_=None):
        self.send({"status": text, "id": id_} if id_ else {"status": text})

    def update(self, id_, action):
        self.send({"status": action, "progressDetail": {}, "id": id_})

    def aux(self, value):
        self.send({"progressDetail": {}, "aux": value})


class TransferSlots(object):
    """The transfer managers' concurrency limit: `limit` transfers run, the rest say "Waiting"."""

    def __init__(self, limit, output, abort):
        self._semaphore = threading.Semaphore(limit)
        self._output = output
        self._abort = abort

    @contextlib.contextmanager
    def slot(self, id_):
        if not self._semaphore.acquire(blocking=False):
            self._output.update(id_, "Waiting")
            while not self._semaphore.acquire(timeout=0.1):
                check_abort(self._abort)
        try:
            yield
        finally:
            self._semaphore.release()


class Aborted(Exception):
    """Another transfer of the same pull or push failed, so this one stopped."""


def check_abort(abort):
    if abort.is_set():
        raise Aborted()


# ---------------------------------------------------------------------------------------------
# Platforms: which manifest of a list is for this machine (containerd's platforms package)

ARM_VARIANTS = ("v8", "v7", "v6", "v5")


def normalize_platform(os_name, architecture, variant=""):
    """platforms.Normalize: one spelling per platform (aarch64 -> arm64, armhf -> arm/v7 ...)."""
    os_name, architecture, variant = (os_name or "").lower(), (architecture or "").lower(), variant or ""
    if architecture in ("x86_64", "x86-64", "amd64"):
        return os_name, "amd64", "" if variant == "v1" else variant
    if architecture in ("i386", "386"):
        return os_name, "386", ""
    if architecture in ("aarch64", "arm64"):
        return os_name, "arm64", "" if variant in ("8", "v8", "v8.0") else variant
    if architecture == "armhf":
        return os_name, "arm", "v7"
    if architecture == "armel":
        return os_name, "arm", "v6"
    if architecture == "arm":
        if variant in ("", "7"):
            return os_name, "arm", "v7"
        return os_name, "arm", "v" + variant if variant in ("5", "6", "8") else variant
    return os_name, architecture, variant


def host_platform():
    """platforms.DefaultSpec: linux on this machine's GOARCH and variant."""
    architecture, variant = go_arch()
    return "linux", architecture, variant


def parse_platform(text):
    """platforms.Parse for `--platform`: `os[/arch[/variant]]`, or an architecture alone."""
    parts = text.strip().lower().split("/")
    if len(parts) > 3 or not all(parts):
        raise errdefs.InvalidParameter('"%s": unknown operating system or architecture: invalid argument'
                                       % text)
    if len(parts) == 1:
        if parts[0] == "linux":
            return host_platform()
        parts = ["linux", parts[0]]
    if len(parts) == 2 and parts[1] == host_platform()[1]:
        parts.append(host_platform()[2])
    return tuple(parts + [""] * (3 - len(parts)))


def format_platform(platform):
    """platforms.Format: `linux/arm64/v8`, without empty parts."""
    return "/".join(part for part in platform if part)


def compatible_platforms(platform):
    """platforms.Only: what can run here, best first. A 32-bit ARM CPU runs older variants."""
    os_name, architecture, variant = normalize_platform(*platform)
    if architecture == "arm" and variant in ARM_VARIANTS:
        return [(os_name, "arm", older) for older in ARM_VARIANTS[ARM_VARIANTS.index(variant):]]
    return [(os_name, architecture, variant)]


def choose_manifest(entries, platform):
    """filterManifests: the best entry of a manifest list or OCI index for `platform`.

    Entries without a platform, and the attestation manifests BuildKit adds to indexes, are
    never images to run.
    """
    runnable = [entry for entry in entries
                if isinstance(entry, dict) and isinstance(entry.get("platform"), dict)
                and entry.get("mediaType", MEDIA_TYPE_MANIFEST) in IMAGE_MANIFEST_MEDIA_TYPES
                and (entry.get("annotations") or {}).get("vnd.docker.reference.type") != "attestation-manifest"]
    for wanted in compatible_platforms(platform):
        for entry in runnable:
            entry_platform = entry["platform"]
            if normalize_platform(entry_platform.get("os"), entry_platform.get("architecture"),
                                  entry_platform.get("variant")) == wanted:
                return entry
    raise errdefs.NotFound("no matching manifest for %s in the manifest list entries"
                           % format_platform(platform))


# ---------------------------------------------------------------------------------------------
# Manifests and digests


def digest_of(data, algorithm="sha256"):
    return "%s:%s" % (algorithm, hashlib.new(algorithm, data).hexdigest())


def new_digester(digest):
    """A hash object for `digest`'s algorithm (sha256, sha384 or sha512)."""
    algorithm = digest.split(":", 1)[0]
    if algorithm not in ("sha256", "sha384", "sha512"):
        raise errdefs.InvalidParameter("unsupported digest algorithm: %s" % digest)
    return hashlib.new(algorithm)


def verify_manifest(body, expected_digest):
    """The manifest's digest: the one we asked for, checked against the bytes we got."""
    if not expected_digest:
        return digest_of(body)
    digester = new_digester(expected_digest)
    digester.update(body)
    if expected_digest.split(":", 1)[1] != digester.hexdigest():
        raise errdefs.System("manifest verification failed for digest %s" % expected_digest)
    return expected_digest


def decode_manifest(body, media_type):
    """The manifest JSON and its media type (the document's own field wins over the header)."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise errdefs.System("error unmarshalling manifest: %s" % err) from None
    if not isinstance(document, dict):
        raise errdefs.System("unsupported manifest format")
    media_type = document.get("mediaType") or media_type
    if document.get("schemaVersion") == 1 or media_type == MEDIA_TYPE_SCHEMA1_SIGNED:
        raise errdefs.System("unsupported manifest format: Docker Image manifest version 2, schema 1 "
                             "is not supported; ask the author to push a schema 2 or OCI image")
    if media_type not in INDEX_MEDIA_TYPES + IMAGE_MANIFEST_MEDIA_TYPES:
        media_type = MEDIA_TYPE_OCI_INDEX if "manifests" in document else MEDIA_TYPE_OCI_MANIFEST
    return document, media_type


def checked_descriptor(descriptor, what):
    """A manifest's config or layer descriptor, refused unless its digest and size make sense."""
    if not isinstance(descriptor, dict):
        raise errdefs.System("invalid %s descriptor in manifest" % what)
    digest, size = descriptor.get("digest"), descriptor.get("size")
    if not isinstance(digest, str) or ":" not in digest or not isinstance(size, int) or size < 0:
        raise errdefs.System("invalid %s descriptor in manifest: %s" % (what, json.dumps(descriptor)))
    new_digester(digest)
    if what == "layer" and descriptor.get("mediaType", MEDIA_TYPE_LAYER) not in LAYER_MEDIA_TYPES:
        raise errdefs.System("unsupported layer media type %s" % descriptor.get("mediaType"))
    return descriptor


def translate_pull_error(err, ref):
    """TranslatePullError: a registry's "no" becomes dockerd's not-found wording (and a 404)."""
    if not isinstance(err, RegistryError):
        return err
    if err.code == "DENIED":
        return errdefs.NotFound("pull access denied for %s, repository does not exist or may require "
                                "'docker login': %s" % (ref.familiar_name, err))
    if err.code == "MANIFEST_UNKNOWN":
        return errdefs.NotFound("manifest for %s not found: %s" % (ref.familiar_string(), err))
    if err.code == "NAME_UNKNOWN":
        return errdefs.NotFound("repository %s not found: %s" % (ref.familiar_name, err))
    return err


def add_digest_reference(tagstore, ref, digest, image_id):
    """addDigestReference: record `repo@digest` once; a digest never moves to another image."""
    digest_ref = Reference(ref.domain, ref.path, digest=digest)
    if tagstore.get(digest_ref) is None:
        tagstore.add_digest(digest_ref, image_id)


# ---------------------------------------------------------------------------------------------
# The blob metadata store (distribution/metadata)


class V2MetadataService(object):
    """metadata.V2MetadataService: which registry blobs hold each layer, and where they were seen.

    A registry names a layer by the digest of its compressed bytes; the graph by its diff ID,
    the digest of the tar. Pull and push record each pairing with the repository it was seen
    in, so a later push can HEAD the blob or mount it from that repository instead of uploading
    it again. The file keeps dockerd's layout under `root` (image/<driver>/distribution):

        v2metadata-by-diffid/sha256/<hex>   [{"Digest", "SourceRepository", "HMAC"}], newest last

    (dockerd also signs each entry with an HMAC of the credentials used; pydockerd leaves it empty,
    as dockerd does for anonymous pushes.) Each file is written atomically; what a killed daemon
    left half-written beside them is removed at start-up.
    """

    MAX_ENTRIES = 50

    def __init__(self, root):
        self.root = root
        self._lock = threading.Lock()
        directory = os.path.join(root, "v2metadata-by-diffid", "sha256")
        if os.path.isdir(directory):
            remove_temporary_files(directory)

    def _path(self, kind, digest):
        algorithm, _, hex_part = digest.partition(":")
        return os.path.join(self.root, kind, algorithm, hex_part)

    def get_metadata(self, diff_id):
        try:
            with open(self._path("v2metadata-by-diffid", diff_id), "rb") as metadata_file:
                entries = json.loads(metadata_file.read().decode("utf-8"))
        except (OSError, ValueError):
            return []
        return [entry for entry in entries if isinstance(entry, dict) and entry.get("Digest")]

    def add(self, diff_id, digest, source_repository):
        entry = {"Digest": digest, "SourceRepository": source_repository, "HMAC": ""}
        with self._lock:
            entries = [old for old in self.get_metadata(diff_id) if old != entry] + [entry]
            self._write(self._path("v2metadata-by-diffid", diff_id), json.dumps(entries[-self.MAX_ENTRIES:]))

    def remove(self, diff_id, digest, source_repository):
        with self._lock:
            entries = [entry for entry in self.get_metadata(diff_id)
                       if (entry["Digest"], entry.get("SourceRepository")) != (digest, source_repository)]
            self._write(self._path("v2metadata-by-diffid", diff_id), json.dumps(entries))

    @staticmethod
    def _write(path, text):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        atomic_write_file(path, text.encode("utf-8"), 0o600)


# ---------------------------------------------------------------------------------------------
# Trying endpoints in order (distribution/pull.go, push.go)


class Fallback(Exception):
    """fallbackError: this endpoint failed; the next one may still work.

    `confirmed` says the endpoint answered as a registry; then its plain-HTTP twin is skipped,
    because a host that speaks TLS must not be tried again without it.
    """

    def __init__(self, error, confirmed):
        super().__init__(str(error))
        self.error = error
        self.confirmed = confirmed


def try_endpoints(endpoints, attempt):
    """Run `attempt(endpoint)` on each endpoint until one succeeds; raise the last failure."""
    last_error = errdefs.System("no endpoints found")
    tls_confirmed = set()
    for endpoint in endpoints:
        if not endpoint.is_tls and endpoint.host in tls_confirmed:
            continue
        try:
            return attempt(endpoint)
        except Fallback as fallback:
            if fallback.confirmed and endpoint.is_tls:
                tls_confirmed.add(endpoint.host)
            last_error = fallback.error
    raise last_error


def run_on_endpoint(repository, operation):
    """Ping the endpoint, then run `operation()`; failures become Fallback for try_endpoints.

    dockerd moves on after almost any failure (continueOnError); only an interrupted client
    (an error that is not a DockerError, from the progress stream) stops at once.
    """
    try:
        repository.ping()
    except RequestError as err:
        raise Fallback(err, confirmed=False) from None
    try:
        return operation()
    except errdefs.DockerError as err:
        raise Fallback(err, confirmed=True) from None


def log_image_event(config, action, ref, labels=None):
    """LogImageEvent: `pull`/`push` with the reference as the actor."""
    if config.events is not None:
        attributes = dict(labels or {})
        attributes["name"] = ref.familiar_name
        config.events("image", action, ref.familiar_string(), attributes)


# ---------------------------------------------------------------------------------------------
# Pull


def pull(config, ref, auth_config=None, platform=None, progress=None, all_tags=False):
    """Pull (distribution/pull.go): bring `ref` (a Reference) into the graph.

    A reference with neither tag nor digest means `latest`; with `all_tags` (`docker pull
    --all-tags`, which reaches the API as an empty tag) it means every tag of the repository.
    `platform` is `--platform` (`linux/arm64`), None for this machine.
    """
    all_tags = all_tags and not (ref.tag or ref.digest)
    if not all_tags:
        ref = ref.with_default_tag()
    wanted = parse_platform(platform) if platform else None
    output = ProgressOutput(progress)
    service = config.registry_service

    def attempt(endpoint):
        repository = service.new_repository(endpoint, ref.path, auth_config, ("pull",))
        puller = Puller(config, repository, output)
        operation = puller.pull_all_tags if all_tags else puller.pull
        return run_on_endpoint(repository, lambda: operation(ref, wanted))

    try:
        image_id = try_endpoints(service.lookup_pull_endpoints(ref.domain), attempt)
    except errdefs.DockerError as err:
        raise translate_pull_error(err, ref) from None
    log_image_event(config, "pull", ref, config.graph.lookup(image_id).labels if image_id else None)


class Puller(object):
    """puller (pull_v2.go): one pull of one reference from one endpoint."""

    def __init__(self, config, repository, output):
        self.config = config
        self.graph = config.graph
        self.repository = repository
        self.output = output

    def pull(self, ref, platform):
        """pullV2Repository for one tag or digest: returns the image ID, after the Status message."""
        image_id, updated = self.pull_tag(ref, platform)
        self._write_status(ref, updated)
        return image_id

    def pull_all_tags(self, ref, platform):
        """pullV2Repository without a tag: every tag the registry lists, one Status at the end.

        Returns the image `latest` names now, or None when the repository has no such tag.
        """
        updated, latest = False, None
        for tag in self.repository.tags():
            image_id, pulled = self.pull_tag(Reference(ref.domain, ref.path, tag), platform)
            updated = updated or pulled
            if tag == DEFAULT_TAG:
                latest = image_id
        self._write_status(ref, updated)
        return latest

    def _write_status(self, ref, updated):
        self.output.message("Status: %s for %s" % ("Downloaded newer image" if updated else "Image is up to date",
                                                    ref.familiar_string()))

    def pull_tag(self, ref, platform):
        """pullV2Tag: (image ID, whether the reference names another image now), after Digest."""
        tag_or_digest = ref.digest or ref.tag
        manifest_digest = ref.digest or self.repository.manifest_digest(ref.tag)
        image_id = self._image_for_digest(ref, manifest_digest) if platform is None else None
        if image_id is not None:
            self.output.message("Pulling from " + ref.path, tag_or_digest)
            self.output.message("Digest: " + manifest_digest)
            return image_id, self._record(ref, manifest_digest, image_id)
        body, media_type, header_digest = self.repository.get_manifest(manifest_digest or ref.tag)
        manifest_digest = verify_manifest(body, manifest_digest or header_digest)
        self.output.message("Pulling from " + ref.path, tag_or_digest)
        digest_ref = Reference(ref.domain, ref.path, digest=manifest_digest)
        with self.graph.tagging([digest_ref] if ref.digest else [ref, digest_ref]) as pending:
            image_id = self._pull_manifest(ref, body, media_type, platform, pending)
            self.output.message("Digest: " + manifest_digest)
            return image_id, self._record(ref, manifest_digest, image_id)

    def _image_for_digest(self, ref, digest):
        """The image a manifest digest was pulled as before, if it is still here: no GET needed."""
        if not digest:
            return None
        image_id = self.config.tagstore.get(Reference(ref.domain, ref.path, digest=digest))
        return image_id if image_id and self._has_image(image_id) else None

    def _has_image(self, image_id):
        try:
            self.graph.lookup(image_id)
        except errdefs.NotFound:
            return False
        return True

    def _record(self, ref, manifest_digest, image_id):
        """Point the reference at the image; True when that changed what it names."""
        tagstore = self.config.tagstore
        updated = tagstore.get(ref) != image_id
        add_digest_reference(tagstore, ref, manifest_digest, image_id)
        if not ref.digest:
            tagstore.add(ref, image_id, force=True)
        return updated

    def _pull_manifest(self, ref, body, media_type, platform, pending):
        """A manifest list or index leads to this platform's manifest; then pull that image."""
        document, media_type = decode_manifest(body, media_type)
        if media_type in INDEX_MEDIA_TYPES:
            entry = choose_manifest(document.get("manifests") or [], platform or host_platform())
            body, media_type, _ = self.repository.get_manifest(entry["digest"])
            verify_manifest(body, entry["digest"])
            document, media_type = decode_manifest(body, media_type)
            if media_type in INDEX_MEDIA_TYPES:
                raise errdefs.System("unsupported manifest format: an index inside an index")
            return self._pull_image(ref, document, None, pending)
        return self._pull_image(ref, document, platform, pending)

    def _pull_image(self, ref, manifest, platform, pending):
        """pullSchema2: config, then layers, then the image (journalling its tags-to-be in
        `pending`, a graph.tagging()). An image already here is done."""
        config_digest = checked_descriptor(manifest.get("config"), "config")["digest"]
        layers = [checked_descriptor(layer, "layer") for layer in manifest.get("layers") or []]
        if self._has_image(config_digest):
            pending.record(config_digest)   # the digest and the tag move together
            return config_digest
        config_bytes = self._pull_config(config_digest)
        diff_ids = self._diff_ids(config_bytes, len(layers))
        self._warn_platform_mismatch(ref, config_bytes, platform)
        held = LayerDownloads(self, ref).pull_layers(layers, diff_ids)
        try:
            return self.graph.create_image(config_bytes, pending=pending)
        finally:
            for chain in held:
                self.graph.release_layer(chain)

    def _pull_config(self, digest):
        config_bytes = self.repository.get_blob(digest, MAX_CONFIG_SIZE)
        digester = new_digester(digest)
        digester.update(config_bytes)
        if digest.split(":", 1)[1] != digester.hexdigest():
            raise errdefs.System("image config verification failed for digest %s" % digest)
        return config_bytes

    @staticmethod
    def _diff_ids(config_bytes, layer_count):
        try:
            diff_ids = json.loads(config_bytes.decode("utf-8"))["rootfs"]["diff_ids"]
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            raise errdefs.System("invalid image config: no rootfs diff_ids") from None
        if not isinstance(diff_ids, list) or len(diff_ids) != layer_count:
            raise errdefs.System("layers from manifest don't match image configuration")
        return diff_ids

    def _warn_platform_mismatch(self, ref, config_bytes, platform):
        """A single-platform image pulled with another --platform is kept, with dockerd's warning."""
        if platform is None:
            return
        config = json.loads(config_bytes.decode("utf-8"))
        actual = normalize_platform(config.get("os") or "linux", config.get("architecture"),
                                    config.get("variant"))
        if actual not in compatible_platforms(platform):
            self.output.message("WARNING: image with reference %s was found but does not match the "
                                "specified platform: wanted %s, actual: %s"
                                % (ref.familiar_string(), format_platform(platform), format_platform(actual)))


class LayerDownloads(object):
    """LayerDownloadManager (xfer/download.go): fetch layers in parallel, register them in order.

    Every missing blob downloads once, on its own thread, at most `max_concurrent_downloads` at a
    time; the bytes go to a temporary file and are checked against the blob digest before any
    of them is used. Layers must be unpacked bottom up, each on the one below, so this thread
    registers them one by one as their downloads finish while later downloads go on. On any
    failure the other downloads stop, the temporary files go, and the layers this pull
    registered are released, which deletes them: a failed pull leaves nothing behind.
    """

    def __init__(self, puller, ref):
        self.puller = puller
        self.graph = puller.graph
        self.output = puller.output
        self.ref = ref
        self._abort = threading.Event()
        self._slots = TransferSlots(puller.config.max_concurrent_downloads, self.output, self._abort)
        self._paths = []
        self._paths_lock = threading.Lock()
        self._first_error = None

    def pull_layers(self, layers, diff_ids):
        """Download and register what is missing; returns the chain IDs it registered (held)."""
        chain_ids = chain_ids_of(diff_ids)
        missing = [not self.graph.has_layer(chain) for chain in chain_ids]
        for layer, needed in zip(layers, missing):
            self.output.update(truncate_id(layer["digest"]), "Pulling fs layer" if needed else "Already exists")
        unique = {layer["digest"]: layer for layer, needed in zip(layers, missing) if needed}
        held = []
        # imported on first use: 2 ms and 0.1 MB at start that a daemon needs only to pull or push
        import concurrent.futures
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(unique)))
        try:
            downloads = {digest: pool.submit(self._download, layer) for digest, layer in unique.items()}
            parent = None
            for layer, diff_id, chain, needed in zip(layers, diff_ids, chain_ids, missing):
                if needed:
                    if self._first_error is not None:
                        raise self._first_error
                    path = self._result(downloads[layer["digest"]])
                    held.append(self._register(layer, path, parent, diff_id))
                parent = chain
            return held
        except BaseException:
            for chain in reversed(held):
                self.graph.release_layer(chain)
            raise
        finally:
            self._abort.set()
            pool.shutdown(wait=True)
            for path in self._paths:
                os.unlink(path)

    def _result(self, future):
        """A download's file; when it was stopped by another's failure, that failure instead."""
        try:
            return future.result()
        except Aborted:
            raise self._first_error from None

    def _register(self, layer, path, parent, diff_id):
        short_id = truncate_id(layer["digest"])
        with open(path, "rb") as blob:
            reader = ProgressReader(blob, os.path.getsize(path), short_id, "Extracting", self.output.send)
            try:
                registered = self.graph.register_layer(parent, reader, diff_id)
            except InvalidDiffID:
                raise errdefs.System("layers from manifest don't match image configuration") from None
        self.puller.config.metadata.add(diff_id, layer["digest"], self.ref.name)
        self.output.update(short_id, "Pull complete")
        return registered

    def _download(self, layer):
        """One blob into a temporary file, verified; returns the file's path."""
        digest, short_id = layer["digest"], truncate_id(layer["digest"])
        try:
            with self._slots.slot(short_id):
                path = self._new_temp_file()
                self._fetch(digest, layer["size"], path, short_id)
            self.output.update(short_id, "Download complete")
            return path
        except Aborted:
            raise
        except BaseException as err:
            with self._paths_lock:
                self._first_error = self._first_error or err
            self._abort.set()
            raise

    def _new_temp_file(self):
        fd, path = tempfile.mkstemp(prefix="GetImageBlob", dir=self.puller.config.tmp_dir)
        os.close(fd)
        with self._paths_lock:
            self._paths.append(path)
        return path

    def _fetch(self, digest, size, path, short_id):
        digester = new_digester(digest)
        blob = BlobReader(self.puller.repository, digest, size, self._abort)
        reader = ProgressReader(blob, size, short_id, "Downloading", self.output.send)
        try:
            with open(path, "wb") as out:
                for chunk in iter(lambda: reader.read(COPY_CHUNK), b""):
                    digester.update(chunk)
                    out.write(chunk)
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise errdefs.System("write %s: %s" % (path, os.strerror(err.errno).lower())) from None
        self.output.update(short_id, "Verifying Checksum")
        if blob.offset != size or digester.hexdigest() != digest.split(":", 1)[1]:
            raise errdefs.System("filesystem layer verification failed for digest %s" % digest)


class BlobReader(object):
    """transport.NewHTTPReadSeeker: a blob's bytes, resuming with a Range request after a break.

    A connection that drops or a body that ends early is retried from the last byte received
    (or from the start, skipping what we have, if the registry ignores Range), a few times.
    Reading stops at the size the manifest declared, so a registry cannot fill the disk.
    """

    def __init__(self, repository, digest, size, abort):
        self.repository = repository
        self.digest = digest
        self.size = size
        self.offset = 0
        self._abort = abort
        self._response = None
        self._failures = 0

    def read(self, amount=COPY_CHUNK):
        while self.offset < self.size:
            check_abort(self._abort)
            try:
                data = self._open().read(min(amount, self.size - self.offset))
            except (OSError, http.client.HTTPException, RequestError) as err:
                self._retry_after(err)
                continue
            if not data:
                self._retry_after(errdefs.System("unexpected EOF"))
                continue
            self.offset += len(data)
            return data
        self._close()
        return b""

    def _open(self):
        if self._response is None:
            response = self.repository.open_blob(self.digest, self.offset)
            if self.offset and response.status != 206:
                self._skip(response, self.offset)
            self._response = response
        return self._response

    @staticmethod
    def _skip(response, count):
        while count:
            data = response.read(min(count, COPY_CHUNK))
            if not data:
                raise errdefs.System("unexpected EOF")
            count -= len(data)

    def _retry_after(self, err):
        self._close()
        self._failures += 1
        if self._failures >= MAX_BLOB_ATTEMPTS:
            if isinstance(err, errdefs.DockerError):
                raise err
            raise RequestError("GET", self.repository.blob_url(self.digest), str(err) or type(err).__name__) from None

    def _close(self):
        if self._response is not None:
            self._response.close()
            self._response = None


# ---------------------------------------------------------------------------------------------
# Inspect

# ocispec.Platform's fields, as a manifest list entry or an image config spells them; the first
# two always appear, the others only when set.
PLATFORM_FIELDS = ("architecture", "os", "os.version", "os.features", "variant")


def inspect(config, ref, auth_config=None):
    """DistributionInspect (`GET /distribution/{name}/json`, docker-py's get_registry_data).

    Returns {"Descriptor": {"mediaType", "digest", "size"} of the manifest `ref` (default tag
    latest) names, "Platforms": one per entry of a manifest list or OCI index, or the one in
    the image config of an image manifest (None if there is none)}. The registry's refusals
    keep the status dockerd gives them: 401 unauthorized, 403 denied, 404 for an unknown
    repository, tag or digest.
    """
    ref = ref if ref.digest else ref.with_default_tag()
    service = config.registry_service

    def attempt(endpoint):
        repository = service.new_repository(endpoint, ref.path, auth_config, ("pull",))
        return run_on_endpoint(repository, lambda: describe_manifest(repository, ref))

    return try_endpoints(service.lookup_pull_endpoints(ref.domain), attempt)


def describe_manifest(repository, ref):
    body, media_type, header_digest = repository.get_manifest(ref.digest or ref.tag)
    digest = verify_manifest(body, ref.digest or header_digest)
    document, media_type = decode_manifest(body, media_type)
    if media_type in INDEX_MEDIA_TYPES:
        platforms = [oci_platform(entry.get("platform")) for entry in document.get("manifests") or []
                     if isinstance(entry, dict)]
    else:
        platform = oci_platform(image_config_of(repository, document))
        platforms = [platform] if platform["os"] or platform["architecture"] else []
    return {"Descriptor": {"mediaType": media_type, "digest": digest, "size": len(body)},
            "Platforms": platforms or None}


def image_config_of(repository, manifest):
    """The image config an image manifest names, as a dict; {} when it cannot be read (dockerd
    then reports no platform rather than an error)."""
    try:
        digest = checked_descriptor(manifest.get("config"), "config")["digest"]
        config = json.loads(repository.get_blob(digest, MAX_CONFIG_SIZE).decode("utf-8"))
    except (errdefs.DockerError, UnicodeDecodeError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def oci_platform(source):
    source = source if isinstance(source, dict) else {}
    platform = {field: source.get(field) or "" for field in PLATFORM_FIELDS[:2]}
    platform.update((field, source[field]) for field in PLATFORM_FIELDS[2:] if source.get(field))
    return platform


# ---------------------------------------------------------------------------------------------
# Push


def push(config, ref, auth_config=None, progress=None):
    """Push (distribution/push.go): upload `ref`'s tag, or every tag of its repository."""
    if ref.digest:
        raise errdefs.InvalidParameter("cannot push a digest reference")
    output = ProgressOutput(progress)
    service = config.registry_service
    endpoints = service.lookup_push_endpoints(ref.domain)
    output.message("The push refers to repository [%s]" % ref.name)
    tags = _tags_to_push(config.tagstore, ref)

    def attempt(endpoint):
        repository = service.new_repository(endpoint, ref.path, auth_config, ("pull", "push"))
        pusher = Pusher(config, repository, output, ref)
        return run_on_endpoint(repository, lambda: pusher.push(tags))

    try_endpoints(endpoints, attempt)
    log_image_event(config, "push", ref)


def _tags_to_push(tagstore, ref):
    """The (tag reference, image ID) pairs to push: the one tag named, or all of the repository."""
    if ref.tag:
        image_id = tagstore.get(ref)
        if image_id is None:
            raise errdefs.NotFound("tag does not exist: %s" % ref.familiar_string())
        return [(ref, image_id)]
    tags = [(tag_ref, image_id) for tag_ref, image_id in tagstore.by_repo(ref.name) if tag_ref.tag]
    if not tags:
        raise errdefs.NotFound("An image does not exist locally with the tag: %s" % ref.familiar_name)
    return tags


class Pusher(object):
    """pusher (push_v2.go): push tags of one repository to one endpoint."""

    def __init__(self, config, repository, output, ref):
        self.config = config
        self.graph = config.graph
        self.metadata = config.metadata
        self.repository = repository
        self.output = output
        self.ref = ref
        self.remote_layers = {}    # diff ID -> (digest, size) of a blob the repository has
        self._lock = threading.Lock()

    def push(self, tags):
        for tag_ref, image_id in tags:
            self.push_tag(tag_ref, image_id)

    def push_tag(self, tag_ref, image_id):
        """pushTag: layers (top first, in parallel), config, manifest; then report the digest."""
        image = self.graph.lookup(image_id)
        layers = list(zip(image.diff_ids, image.chain_ids))[::-1]
        for diff_id, _ in layers:
            self.output.update(truncate_id(diff_id), "Preparing")
        LayerUploads(self).push_layers(layers)
        config_digest = digest_of(image.raw)
        if self.repository.stat_blob(config_digest) is None:
            self.repository.put_blob(image.raw)
        manifest = self._manifest(config_digest, len(image.raw), image.diff_ids)
        self.repository.put_manifest(tag_ref.tag, manifest, MEDIA_TYPE_MANIFEST)
        digest = digest_of(manifest)
        self.output.message("%s: digest: %s size: %d" % (tag_ref.tag, digest, len(manifest)))
        add_digest_reference(self.config.tagstore, tag_ref, digest, image_id)
        self.output.aux({"Tag": tag_ref.tag, "Digest": digest, "Size": len(manifest)})

    def _manifest(self, config_digest, config_size, diff_ids):
        """schema2.FromStruct: the manifest as Go's MarshalIndent writes it (three spaces)."""
        layers = []
        for diff_id in diff_ids:
            digest, size = self.remote_layers[diff_id]
            layers.append({"mediaType": MEDIA_TYPE_LAYER, "size": size, "digest": digest})
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": {"mediaType": MEDIA_TYPE_CONFIG, "size": config_size, "digest": config_digest},
            "layers": layers,
        }
        return json.dumps(manifest, indent=3).encode("utf-8")

    def remember(self, diff_id, digest, size):
        with self._lock:
            self.remote_layers[diff_id] = (digest, size)

    def known(self, diff_id):
        with self._lock:
            return diff_id in self.remote_layers


class LayerUploads(object):
    """LayerUploadManager (xfer/upload.go) with pushDescriptor.Upload: each layer on a thread.

    For every layer the cheapest way wins: the registry already has a blob we know holds it
    (HEAD: "Layer already exists"), another repository of the same registry has it (a mount:
    "Mounted from ..."), or we upload it: the graph writes the tar, which is gzip-compressed on
    the fly into a chunked PATCH and committed with PUT ?digest=.
    """

    def __init__(self, pusher):
        self.pusher = pusher
        self.repository = pusher.repository
        self.metadata = pusher.metadata
        self.output = pusher.output
        self.repo_name = pusher.ref.name
        self._abort = threading.Event()
        self._slots = TransferSlots(pusher.config.max_concurrent_uploads, self.output, self._abort)

    def push_layers(self, layers):
        """Upload (diff ID, chain ID) pairs, top first; the first failure stops the others."""
        # imported on first use, for the reason LayerDownloads.pull_layers gives
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(layers))) as pool:
            futures = [pool.submit(self._push_layer, diff_id, chain) for diff_id, chain in layers]
            try:
                for future in concurrent.futures.as_completed(futures):
                    future.result()
            finally:
                self._abort.set()

    def _push_layer(self, diff_id, chain):
        short_id = truncate_id(diff_id)
        with self._slots.slot(short_id):
            check_abort(self._abort)
            if self.pusher.known(diff_id) or self._already_exists(diff_id):
                self.output.update(short_id, "Layer already exists")
                return
            mounted, location = self._mount(diff_id, short_id)
            if not mounted:
                self._upload(diff_id, chain, short_id, location)

    def _already_exists(self, diff_id):
        """layerAlreadyExists: HEAD the newest blob known to hold the layer (this repo first)."""
        candidates = sorted(reversed(self.metadata.get_metadata(diff_id)),
                            key=lambda entry: entry.get("SourceRepository") != self.repo_name)
        for entry in candidates[:1]:
            size = self.repository.stat_blob(entry["Digest"])
            if size is not None:
                self.pusher.remember(diff_id, entry["Digest"], size)
                if entry.get("SourceRepository") != self.repo_name:
                    self.metadata.add(diff_id, entry["Digest"], self.repo_name)
                return True
            if entry.get("SourceRepository") == self.repo_name:
                self.metadata.remove(diff_id, entry["Digest"], self.repo_name)
        return False

    def _mount(self, diff_id, short_id):
        """Cross-repository mount from another repository of this registry.

        Returns (True, None) when a mount worked. Otherwise (False, location): a registry that
        cannot mount starts an ordinary upload instead, whose location is reused (None if no
        mount was tried).
        """
        domain = self.pusher.ref.domain
        for entry in self._mount_candidates(diff_id, domain):
            source = parse_normalized_named(entry["SourceRepository"])
            try:
                location = self.repository.start_upload(entry["Digest"], source.path)
            except RegistryError:
                self.metadata.remove(diff_id, entry["Digest"], entry["SourceRepository"])
                continue
            if location is not None:
                return False, location
            self.output.update(short_id, "Mounted from %s" % source.path)
            self.pusher.remember(diff_id, entry["Digest"], self.repository.stat_blob(entry["Digest"]) or 0)
            self.metadata.add(diff_id, entry["Digest"], self.repo_name)
            return True, None
        return False, None

    def _mount_candidates(self, diff_id, domain):
        candidates = []
        for entry in reversed(self.metadata.get_metadata(diff_id)):
            try:
                source = parse_normalized_named(entry.get("SourceRepository") or "")
            except errdefs.DockerError:
                continue
            if source.domain == domain and source.name != self.repo_name:
                candidates.append(entry)
        return candidates[:MAX_MOUNT_ATTEMPTS]

    def _upload(self, diff_id, chain, short_id, location):
        """uploadUsingSession: the tar from the graph, gzip-compressed while it streams out."""
        with tempfile.TemporaryFile(dir=self.pusher.config.tmp_dir) as layer_tar:
            self.pusher.graph.layer_tar(chain, layer_tar)
            layer_tar.flush()
            size = layer_tar.seek(0, os.SEEK_END)
            layer_tar.seek(0)
            reader = ProgressReader(layer_tar, size, short_id, "Pushing", self.output.send)
            compressor = GzipDigester(reader, self._abort)
            location = self.repository.upload_chunks(location or self.repository.start_upload(),
                                                     compressor.chunks())
        if compressor.diff_id != diff_id:
            raise errdefs.System("layer %s changed on disk: its tar now hashes to %s"
                                 % (diff_id, compressor.diff_id))
        self.repository.commit_upload(location, compressor.digest)
        self.output.update(short_id, "Pushed")
        self.metadata.add(diff_id, compressor.digest, self.repo_name)
        self.pusher.remember(diff_id, compressor.digest, compressor.size)


class GzipDigester(object):
    """compress() + a digester: gzip a tar stream chunk by chunk and hash both sides.

    The compressed digest and size name the blob in the manifest; the uncompressed digest must
    still be the diff ID, or the pushed image could never be pulled back. The gzip header has
    no name and mtime 0, so the same tar always compresses to the same blob.
    """

    def __init__(self, stream, abort):
        self._stream = stream
        self._abort = abort
        self._compressed = hashlib.sha256()
        self._uncompressed = hashlib.sha256()
        self.size = 0

    @property
    def digest(self):
        return "sha256:" + self._compressed.hexdigest()

    @property
    def diff_id(self):
        return "sha256:" + self._uncompressed.hexdigest()

    def chunks(self):
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        for data in iter(lambda: self._stream.read(COPY_CHUNK), b""):
            check_abort(self._abort)
            self._uncompressed.update(data)
            chunk = compressor.compress(data)
            if chunk:
                yield self._count(chunk)
        yield self._count(compressor.flush())

    def _count(self, chunk):
        self._compressed.update(chunk)
        self.size += len(chunk)
        return chunk
