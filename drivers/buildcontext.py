"""The build context and the other places COPY and ADD read from (builder/remotecontext).

A build reads files from a *source*: the context the client uploaded (a tar, unpacked into
a private directory under <root>/tmp), the root of another image or stage (`COPY --from`),
or a file downloaded for `ADD <url>`. Whatever the source, a path in it is resolved the way
Docker's FollowSymlinkInScope does: component by component, a symlink followed *inside* the
source (an absolute target starts again at the source's top, `..` stops there). So a link
to /etc/passwd in the context means <context>/etc/passwd, never the host's file, and a
source path whose `..` climbs above the top is refused before anything is looked at:

    COPY failed: forbidden path outside the build context: ../x ()

The build cache needs to know whether a COPY would copy the same thing again, so each source
file has a checksum (tarsum's idea): sha256 over its tar header -- name, mode, owner, size,
type, link target, file capabilities, but not the time -- and its bytes. A directory's
checksum is "dir:" + sha256 of its entries' checksums.

`.dockerignore` (dockerignore.ReadAll, fileutils.PatternMatcher): one pattern a line, `#`
comments, cleaned like paths, with Go's filepath.Match syntax (`*` and `?` never cross a
`/`, `[a-z]` classes, `\\` escapes) plus `**` for any number of directories, and `!` for an
exception that brings a path back. A pattern that matches a directory excludes what is in
it; the last pattern that matches a path decides. The CLI applies the file before it sends
the context; the daemon applies it again to whatever arrives, so a client that does not
(or a raw API call) gets the same build.

A remote context (`remote=<url>`) is fetched over HTTP(S): a tar (any compression) is a
context, anything else is the Dockerfile itself. Git contexts are refused: pydockerd does
not run git.
"""
import hashlib
import os
import posixpath
import re
import shutil
import stat
import tempfile
import urllib.parse
from email.utils import parsedate_to_datetime

from drivers import archive
from drivers.errdefs import InvalidParameter, System
from drivers.tarexport import ProgressReader

DEFAULT_DOCKERFILE = "Dockerfile"
CONTEXT_PREFIX = "docker-builder"
DOWNLOAD_PREFIX = "docker-remote"
UNNAMED_FILE = "__unnamed__"
MAX_DOCKERFILE = 16 << 20
MAX_SYMLINK_HOPS = 255          # moby/sys/symlink's limit
CAPABILITY_XATTR = "security.capability"
DOWNLOAD_TIMEOUT = 60


class ForbiddenPath(InvalidParameter):
    """A source path that leaves its source (FullPath's "forbidden path" error)."""


def not_found(path, in_context):
    """The error for a source path that does not exist, with the relative path, as dockerd
    words it for the context and for an image."""
    message = "stat %s: file does not exist" % path
    if in_context:
        message = "file not found in build context or excluded by .dockerignore: " + message
    return InvalidParameter(message)


class Source(object):
    """A directory COPY and ADD read from (builder.Source): `root`, and `temporary` when the
    directory belongs to this source and goes with close(). `in_context` tells the errors
    apart (the build context or an image)."""

    def __init__(self, root, temporary=False, in_context=True):
        self.root = root
        self.temporary = temporary
        self.in_context = in_context
        self._sums = {}

    def close(self):
        if self.temporary:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- paths ---------------------------------------------------------------------------

    def resolve(self, path):
        """FollowSymlinkInScope: `path` as a relative path inside the source, with every
        symlink followed within it; ForbiddenPath if `..` climbs above the top."""
        cleaned = posixpath.normpath(path.lstrip("/") or ".")
        if cleaned == ".." or cleaned.startswith("../"):
            raise ForbiddenPath("forbidden path outside the build context: %s ()" % path)
        resolved, pending, hops = [], [part for part in cleaned.split("/") if part not in ("", ".")], 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = os.path.join(self.root, *(resolved + [part]))
            try:
                st = os.lstat(candidate)
            except (FileNotFoundError, NotADirectoryError):
                resolved.append(part)
                continue
            if not stat.S_ISLNK(st.st_mode):
                resolved.append(part)
                continue
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise InvalidParameter("too many links resolving %s" % path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = [piece for piece in target.split("/") if piece not in ("", ".")] + pending
        return "/".join(resolved)

    def full_path(self, rel):
        return os.path.join(self.root, rel) if rel else self.root

    def stat(self, path):
        """(the resolved relative path, its stat) for a source path; not_found() if missing."""
        rel = self.resolve(path)
        try:
            return rel, os.stat(self.full_path(rel))
        except (FileNotFoundError, NotADirectoryError):
            raise not_found(path.lstrip("/"), self.in_context) from None

    def walk(self, rel=""):
        """filepath.Walk below `rel`: relative paths, sorted, parents first, `rel` itself
        first when it is not the top; symlinks are not followed."""
        if rel:
            yield rel
        top = self.full_path(rel)
        try:
            names = sorted(os.listdir(top))
        except (NotADirectoryError, FileNotFoundError):
            return
        for name in names:
            child = posixpath.join(rel, name) if rel else name
            if stat.S_ISDIR(os.lstat(self.full_path(child)).st_mode):
                for item in self.walk(child):
                    yield item
            else:
                yield child

    # -- checksums -------------------------------------------------------------------------

    def hash(self, rel):
        """The tarsum-like checksum of one entry (not followed if it is a symlink)."""
        if rel not in self._sums:
            self._sums[rel] = _entry_sum(self.full_path(rel), rel)
        return self._sums[rel]

    def dir_hash(self, rel):
        """walkSource: "dir:" + sha256 of the sorted checksums of everything below `rel`."""
        sums = sorted(self.hash(item) for item in self.walk(rel))
        return "dir:" + hashlib.sha256(",".join(sums).encode()).hexdigest()


def _entry_sum(path, name):
    st = os.lstat(path)
    link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
    try:
        capability = os.getxattr(path, CAPABILITY_XATTR, follow_symlinks=False).hex()
    except OSError:
        capability = ""
    header = "\0".join(str(field) for field in (
        name, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
        st.st_size if stat.S_ISREG(st.st_mode) else 0, stat.S_IFMT(st.st_mode), link,
        os.major(st.st_rdev), os.minor(st.st_rdev), capability))
    digest = hashlib.sha256(header.encode("utf-8", "surrogateescape"))
    if stat.S_ISREG(st.st_mode):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, "rb") as data:
            for chunk in iter(lambda: data.read(archive.COPY_BUFFER_SIZE), b""):
                digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# The context: unpacked, its Dockerfile read, .dockerignore applied
# ---------------------------------------------------------------------------------------------

def context_from_archive(stream, tmp_dir):
    """FromArchive: unpack the context tar `stream` (plain or compressed) into a new
    directory under `tmp_dir`; a Source that removes it on close()."""
    root = tempfile.mkdtemp(prefix=CONTEXT_PREFIX, dir=tmp_dir)
    try:
        archive.untar(root, stream)
    except archive.ArchiveError as err:
        shutil.rmtree(root, ignore_errors=True)
        raise InvalidParameter(str(err)) from None
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return Source(root, temporary=True)


def read_dockerfile(source, name):
    """withDockerfileFromContext: the Dockerfile's text. A missing `Dockerfile` may be
    spelled `dockerfile`; an empty one is an error, as is one that is not in the context."""
    path = name
    if not _is_file(source, path) and name == DEFAULT_DOCKERFILE and _is_file(source, name.lower()):
        path = name.lower()
    if not _is_file(source, path):
        raise System("Cannot locate specified Dockerfile: %s" % name)
    with open(source.full_path(source.resolve(path)), "rb") as dockerfile:
        data = dockerfile.read(MAX_DOCKERFILE + 1)
    if len(data) > MAX_DOCKERFILE:
        raise InvalidParameter("the Dockerfile (%s) is larger than %d bytes" % (name, MAX_DOCKERFILE))
    if not data:
        raise InvalidParameter("the Dockerfile (%s) cannot be empty" % name)
    return data.decode("utf-8", "replace")


def _is_file(source, path):
    try:
        _, st = source.stat(path)
    except InvalidParameter:
        return False
    return stat.S_ISREG(st.st_mode)


def apply_dockerignore(source):
    """Remove from the context what its .dockerignore excludes (the file itself included,
    when it says so). Returns the patterns."""
    path = source.full_path(".dockerignore")
    if not os.path.isfile(path) or os.path.islink(path):
        return []
    with open(path, "rb") as ignore_file:
        patterns = read_dockerignore(ignore_file.read().decode("utf-8", "replace"))
    matcher = PatternMatcher(patterns)
    if matcher.patterns:
        _prune(source.root, "", matcher)
    return patterns


def _prune(root, rel, matcher):
    """Walk the tree, removing excluded entries; an excluded directory goes whole unless an
    exception (`!`) could bring back something inside it."""
    directory = os.path.join(root, rel) if rel else root
    for name in sorted(os.listdir(directory)):
        child = posixpath.join(rel, name) if rel else name
        path = os.path.join(root, child)
        is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
        excluded = matcher.matches(child)
        if is_dir and (not excluded or matcher.exclusions):
            _prune(root, child, matcher)
            if excluded and not os.listdir(path):
                os.rmdir(path)
        elif excluded and is_dir:
            shutil.rmtree(path)
        elif excluded:
            os.unlink(path)


def read_dockerignore(text):
    """dockerignore.ReadAll: the patterns of a .dockerignore file, cleaned."""
    patterns = []
    for index, line in enumerate(text.split("\n")):
        if index == 0:
            line = line.lstrip("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = posixpath.normpath(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


class PatternMatcher(object):
    """fileutils.PatternMatcher: the .dockerignore patterns, in order."""

    def __init__(self, patterns):
        self.patterns = []
        self.exclusions = False
        for text in patterns:
            text = text.strip()
            if not text:
                continue
            text = posixpath.normpath(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise InvalidParameter('illegal exclusion pattern: "!"')
                text = text[1:]
                self.exclusions = True
            self.patterns.append((_ignore_regex(text), len(text.split("/")), exclusion))

    def matches(self, path):
        """Matches: whether `path` (relative, with /) is excluded."""
        path = posixpath.normpath(path)
        if path == ".":
            return False
        parent = posixpath.dirname(path) or "."
        parent_dirs = parent.split("/")
        matched = False
        for regex, depth, exclusion in self.patterns:
            match = bool(regex.match(path))
            if not match and parent != "." and depth <= len(parent_dirs):
                match = bool(regex.match("/".join(parent_dirs[:depth])))
            if match:
                matched = not exclusion
        return matched


def _ignore_regex(pattern):
    """Pattern.compile: `**` any number of directories, `*`/`?` within one, `\\` escapes,
    `[...]` classes as in filepath.Match."""
    out, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        index += 1
        if char == "*" and pattern[index:index + 1] == "*":
            index += 1
            if pattern[index:index + 1] == "/":
                index += 1
            out.append(".*" if index == len(pattern) else "(.*/)?")
        elif char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\":
            out.append(re.escape(pattern[index]) if index < len(pattern) else "\\\\")
            index += 1
        elif char in "[]-^":
            out.append(char)
        else:
            out.append(re.escape(char))
    try:
        return re.compile("^" + "".join(out) + "$", re.DOTALL)
    except re.error:
        raise InvalidParameter("syntax error in pattern: %s" % pattern) from None


# ---------------------------------------------------------------------------------------------
# Remote sources: ADD <url> and remote contexts
# ---------------------------------------------------------------------------------------------

def is_url(text):
    return text.startswith("http://") or text.startswith("https://")


def is_git_url(text):
    """urlutil.IsGitURL: git://, git@, github.com/..., or an http(s) URL ending in .git."""
    return (text.startswith(("git://", "git@", "github.com/"))
            or (is_url(text) and re.search(r"\.git(?:#.+)?$", text) is not None))


def _open_url(url):
    # imported on first use: most daemons never download anything
    from urllib.request import urlopen
    try:
        response = urlopen(url, timeout=DOWNLOAD_TIMEOUT)
    except OSError as err:
        status = getattr(err, "code", None)
        if status:
            raise InvalidParameter("failed to GET %s with status %s: %s"
                                   % (url, status, getattr(err, "reason", err))) from None
        raise InvalidParameter("error downloading %s: %s" % (url, err)) from None
    return response


def download(url, tmp_dir, report):
    """downloadSource (ADD <url>): fetch `url` into a new directory under `tmp_dir`. The file
    is named from the URL's path or the Content-Disposition header, mode 0600, and dated by
    Last-Modified (the Unix epoch without one). `report(message)` gets "Downloading" progress
    messages. Returns (a temporary Source, the file name or "" when none could be found)."""
    response = _open_url(url)
    with response:
        name = _download_name(urllib.parse.urlsplit(url).path, response.headers)
        directory = tempfile.mkdtemp(prefix=DOWNLOAD_PREFIX, dir=tmp_dir)
        try:
            path = os.path.join(directory, name or UNNAMED_FILE)
            total = int(response.headers.get("Content-Length") or 0)
            reader = ProgressReader(response, total, "", "Downloading", report)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with open(fd, "wb") as out:
                shutil.copyfileobj(reader, out, archive.COPY_BUFFER_SIZE)
            modified = _last_modified(response.headers.get("Last-Modified"))
            os.utime(path, (modified, modified))
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
    return Source(directory, temporary=True, in_context=False), name


def _download_name(url_path, headers):
    """getFilenameForDownload: the URL path's last element, else Content-Disposition's."""
    if url_path and not url_path.endswith("/"):
        name = posixpath.basename(url_path)
        if name:
            return name
    disposition = headers.get("Content-Disposition") or ""
    match = re.search(r'filename="?([^";]+)"?', disposition)
    if match and not match.group(1).endswith("/"):
        return posixpath.basename(match.group(1))
    return ""


def _last_modified(header):
    if header:
        try:
            return max(parsedate_to_datetime(header).timestamp(), 0)
        except (TypeError, ValueError):
            pass
    return 0


def remote_context(url, tmp_dir):
    """Detect for `remote=<url>`: (a context Source or None, the Dockerfile's text or None).
    A tar (any compression) is a context whose Dockerfile is read from it; anything else is
    the Dockerfile. The download is spooled under `tmp_dir` first."""
    if is_git_url(url):
        raise InvalidParameter("git build contexts (%s) are not supported by pydockerd: clone "
                               "the repository and build the directory" % url)
    if not is_url(url):
        raise InvalidParameter("remoteURL (%s) could not be recognized as URL" % url)
    with _open_url(url) as response, tempfile.TemporaryFile(dir=tmp_dir) as spool:
        shutil.copyfileobj(response, spool, archive.COPY_BUFFER_SIZE)
        spool.seek(0)
        head = spool.read(archive.BLOCK_SIZE)
        spool.seek(0)
        if archive.detect_compression(head) != "uncompressed" or head[257:262] == b"ustar":
            return context_from_archive(spool, tmp_dir), None
        return None, spool.read(MAX_DOCKERFILE).decode("utf-8", "replace")
