"""The tag store: which repository names, tags and digests point at which image.

Docker 1.8.2 kept this in graph/tags.go as TagStore, saved to `<root>/repositories-<driver>`:

    {"Repositories": {"busybox": {"latest": "<image id>"}}}

Modern dockerd (reference/store.go) keeps the same idea with normalised names and adds
digests. pydockerd keeps 1.8's file name and JSON shape, with the modern content:

    {"Repositories": {"docker.io/library/busybox": {"latest": "sha256:<id>",
                                                    "sha256:<digest>": "sha256:<id>"}}}

Repository names are fully qualified (drivers/reference.py normalises `busybox` to
`docker.io/library/busybox`), so `busybox` and `docker.io/library/busybox` can never be two
entries. Within a repository a key with a colon is a digest (`sha256:...`, a digest algorithm
always has one), any other key is a tag (tags cannot contain a colon).

The file is rewritten whole on every change, atomically, so a crash leaves either the old or
the new store and never half of one; a temporary file a kill left beside it is removed (and
logged) at start-up. A change that cannot be written (a full disk) is not made in memory
either. The daemon serves requests on many threads, so every read and write holds the
store's lock.

A new image and the tags it is made for are two writes, the image store's and this store's;
a kill between them would leave the complete image with none of its tags -- neither the old
state nor the new. TagJournal closes that window (see its docstring).
"""
import contextlib
import json
import logging
import os
import threading

from drivers.errdefs import Conflict, DockerError, InvalidParameter, System
from drivers.ioutils import atomic_write_file, fsync_dir
from drivers.reference import Reference, parse_normalized_named

log = logging.getLogger("pydockerd.graph")

DIGEST_ALGORITHM = "sha256"


def is_digest_key(key):
    """Within a repository, digests are `algorithm:hex` and tags never contain a colon."""
    return ":" in key


class TagStore(object):
    """TagStore (graph/tags.go): the references of every image, saved in `repositories-<driver>`.

    Interface used by the graph, the API handlers and the registry client:
      add(ref, image_id, force=False)      tag `ref` (a Reference with a tag, `latest` if none)
      add_digest(ref, image_id)            record `ref` (a Reference with a digest)
      get(ref) -> image id or None         what `ref` points at (no tag means `latest`)
      delete(ref) -> bool                  drop `ref`; False if it was not there
      references(image_id) -> [Reference]  every tag and digest of an image, sorted like dockerd
      repositories() -> [(name, {key: image id})]
      by_repo(name) -> [(Reference, image id)]   every tag and digest of one repository
    Image IDs are always "sha256:<64 hex>".
    """

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        self._remove_temporary_files()
        self._repositories = self._load()
        if not os.path.exists(path):
            # NewTagStore writes an empty store, so the file exists from the first boot.
            self._save(self._repositories)

    def _remove_temporary_files(self):
        """The ".<name>.*" files atomic_write_file() makes beside the store and a kill left."""
        directory, prefix = os.path.dirname(self.path) or ".", "." + os.path.basename(self.path) + "."
        for name in os.listdir(directory):
            if name.startswith(prefix):
                log.warning("removing %s, a tag store a killed daemon was writing", name)
                os.unlink(os.path.join(directory, name))

    def _load(self):
        try:
            with open(self.path, "rb") as store_file:
                content = json.loads(store_file.read().decode("utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as err:
            raise ValueError("Error loading tag store %s: %s" % (self.path, err)) from None
        return content.get("Repositories") or {}

    def _save(self, repositories):
        """Write `repositories` and make it the store's: memory changes only once the disk has."""
        data = json.dumps({"Repositories": repositories}, sort_keys=True).encode("utf-8")
        try:
            atomic_write_file(self.path, data, 0o600)
        except OSError as err:
            raise System("failed to write the tag store %s: %s" % (
                self.path, os.strerror(err.errno).lower() if err.errno else err)) from err
        self._repositories = repositories

    def add(self, ref, image_id, force=False):
        """AddTag: point ref's tag at `image_id`.

        A tag that already points at another image is moved only with `force`, as in 1.8's
        `docker tag -f`; modern dockerd always forces (tag, import, load and pull all move
        tags silently), so the daemon's callers pass force=True. Digests are refused here:
        they are immutable and go through add_digest.
        """
        if ref.digest is not None:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        if ref.familiar_name == DIGEST_ALGORITHM:
            raise InvalidParameter("refusing to create an ambiguous tag using digest algorithm as name")
        ref = ref.with_default_tag()
        with self._lock:
            old_id = self._repositories.get(ref.name, {}).get(ref.tag)
            if old_id == image_id:
                return
            if old_id is not None and not force:
                raise Conflict("Conflict: Tag %s is already set to image %s, if you want to replace it, "
                               "please use the force option" % (ref.familiar_string(), old_id))
            self._set(ref.name, ref.tag, image_id)

    def add_digest(self, ref, image_id):
        """AddDigest: record that ref's digest (a manifest digest from a registry) is `image_id`."""
        if ref.digest is None:
            raise InvalidParameter("reference %s has no digest" % ref)
        with self._lock:
            old_id = self._repositories.get(ref.name, {}).get(ref.digest)
            if old_id == image_id:
                return
            if old_id is not None:
                raise Conflict("Cannot overwrite digest %s" % ref.digest)
            self._set(ref.name, ref.digest, image_id)

    def _set(self, name, key, image_id):
        repositories, repository = self._copy_with(name)
        repository[key] = image_id
        self._save(repositories)

    def _copy_with(self, name):
        """A copy of the store to change, and in it a copy of repository `name` (new if absent)."""
        repositories = dict(self._repositories)
        repository = repositories[name] = dict(repositories.get(name, {}))
        return repositories, repository

    def get(self, ref):
        """Get: the image ID `ref` points at, or None. A reference without a tag means `latest`."""
        ref = ref.with_default_tag()
        with self._lock:
            return self._repositories.get(ref.name, {}).get(_key_of(ref))

    def delete(self, ref):
        """Delete: drop one tag or digest; an emptied repository goes too. False if absent."""
        ref = ref.with_default_tag()
        with self._lock:
            repositories, repository = self._copy_with(ref.name)
            if repository.pop(_key_of(ref), None) is None:
                return False
            if not repository:
                del repositories[ref.name]
            self._save(repositories)
            return True

    def references(self, image_id):
        """References: every tag and digest of `image_id`, sorted by full string like dockerd."""
        with self._lock:
            refs = [_make_reference(name, key)
                    for name, repository in self._repositories.items()
                    for key, target in repository.items() if target == image_id]
        return sorted(refs, key=str)

    def repositories(self):
        """A snapshot of the whole store: [(repository name, {tag or digest: image id})]."""
        with self._lock:
            return sorted((name, dict(repository)) for name, repository in self._repositories.items())

    def by_repo(self, name):
        """ReferencesByName: [(Reference, image id)] for every tag and digest of repository `name`."""
        with self._lock:
            repository = dict(self._repositories.get(name, {}))
        pairs = [(_make_reference(name, key), image_id) for key, image_id in repository.items()]
        return sorted(pairs, key=lambda pair: str(pair[0]))


def _key_of(ref):
    return ref.digest if ref.digest is not None else ref.tag


def _make_reference(name, key):
    domain, path = name.split("/", 1)
    if is_digest_key(key):
        return Reference(domain, path, digest=key)
    return Reference(domain, path, tag=key)


class TagJournal(object):
    """The pending tag moves: which references an image about to be committed will get.

    TagJournal(directory) keeps one file per move in `directory` (the graph's
    <root>/graph/pending-tags), written atomically *before* the image is committed:

        {"Image": "sha256:<id>", "References": ["docker.io/library/busybox:latest",
                                                "docker.io/library/busybox@sha256:<digest>"]}

    and removed once the tag store has the references (or the move failed and said so).
    A file still there at start-up means a daemon was killed in between; recover() settles it:
    when the image exists the references are applied (the new state: tag -> new image),
    otherwise the file is dropped (the old state: the tags never moved).

      moving(refs)  context manager giving a PendingTags; its record(image_id) writes the file,
                    which leaving the block removes
      recover(tagstore, image_exists)   at start-up, before the daemon serves: into
                    `tagstore`, for images where image_exists(id) -> bool
    """

    def __init__(self, directory):
        self.directory = directory

    @contextlib.contextmanager
    def moving(self, refs):
        pending = PendingTags(self.directory, refs)
        try:
            yield pending
        finally:
            pending.remove()

    def recover(self, tagstore, image_exists):
        for name in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, name)
            if name.startswith("."):
                log.warning("removing %s, a tag journal a killed daemon was writing", path)
            elif not _settle(path, tagstore, image_exists):
                continue    # the tag store cannot be written now: the next start tries again
            os.unlink(path)



def _settle(path, tagstore, image_exists):
    """Apply one journal file to `tagstore`, or drop it; False when applying it failed."""
    try:
        with open(path, "rb") as journal_file:
            entry = json.loads(journal_file.read().decode("utf-8"))
        image_id = entry["Image"]
        refs = [parse_normalized_named(text) for text in entry["References"]]
    except (ValueError, KeyError, TypeError, InvalidParameter) as err:
        log.warning("dropping unreadable tag journal %s: %s", path, err)
        return True
    texts = ", ".join(ref.familiar_string() for ref in refs)
    if not image_exists(image_id):
        log.warning("dropped tags %s of image %s, which a killed daemon had not committed",
                    texts, image_id)
        return True
    try:
        for ref in refs:
            if ref.digest is None:
                tagstore.add(ref, image_id, force=True)
            elif tagstore.get(ref) is None:
                tagstore.add_digest(ref, image_id)
    except DockerError as err:
        log.error("cannot apply tag journal %s: %s", path, err)
        return False
    log.warning("applied tags %s of image %s, which a killed daemon was committing", texts, image_id)
    return True


class PendingTags(object):
    """One pending tag move of a TagJournal: record(image_id) journals `refs` for that image
    (nothing when there are none); remove() drops the journal file again."""

    def __init__(self, directory, refs):
        self.directory = directory
        self.refs = list(refs)
        self._path = None

    def record(self, image_id):
        if not self.refs:
            return
        data = json.dumps({"Image": image_id, "References": [str(ref) for ref in self.refs]})
        path = self._path or os.path.join(self.directory, "%s-%s.json" % (
            image_id.split(":", 1)[-1][:12], os.urandom(6).hex()))
        atomic_write_file(path, data.encode("utf-8"), 0o600)
        self._path = path

    def remove(self):
        if self._path is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        fsync_dir(self.directory)
        self._path = None
