"""Image references: `[registry/]path[:tag][@digest]`, normalised the way Docker does.

Docker 1.8.2 split names with parsers.ParseRepositoryTag and registry.ParseRepositoryInfo;
later versions moved the grammar to the distribution `reference` package. Both agree on the
rules a user sees: `busybox` means `docker.io/library/busybox:latest`, a first component with a
dot, a colon or `localhost` names a registry, names are lowercase, tags are at most 128 word
characters, and digests are `algorithm:hex`. The tag store and the registry client both use
this module, so a name is normalised in exactly one place.
"""
import re

from drivers.errdefs import InvalidParameter

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_PATH_RE = re.compile(r"^%s(?:/%s)*$" % (_PATH_COMPONENT, _PATH_COMPONENT))
_DOMAIN_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*"
    r"(?::[0-9]+)?$|^\[[a-fA-F0-9:]+\](?::[0-9]+)?$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_ID_RE = re.compile(r"^[a-f0-9]{64}$")

INVALID_FORMAT = "invalid reference format"


class Reference(object):
    """A parsed, normalised reference: domain, path, tag and digest (either may be None)."""

    def __init__(self, domain, path, tag=None, digest=None):
        self.domain = domain
        self.path = path
        self.tag = tag
        self.digest = digest

    @property
    def name(self):
        """The fully qualified repository name, e.g. docker.io/library/busybox."""
        return "%s/%s" % (self.domain, self.path)

    @property
    def familiar_name(self):
        """The name as a user types it: docker.io and library/ dropped (FamiliarName)."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_REPO_PREFIX) and self.path.count("/") == 1:
            return self.path[len(OFFICIAL_REPO_PREFIX):]
        return self.path

    def with_default_tag(self):
        """TagNameOnly: a reference with neither tag nor digest gets `latest`."""
        if self.tag is None and self.digest is None:
            return Reference(self.domain, self.path, DEFAULT_TAG)
        return self

    def __str__(self):
        text = self.name
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text

    def familiar_string(self):
        """FamiliarString: `busybox:latest`, `localhost:5000/x@sha256:...`."""
        text = self.familiar_name
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text

    def __eq__(self, other):
        return isinstance(other, Reference) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))

    def __repr__(self):
        return "Reference(%r)" % str(self)


def is_full_id(text):
    """A 64-hex string is an image ID, never a repository name (ParseAnyReference)."""
    return bool(_ID_RE.match(text))


def parse_normalized_named(text):
    """ParseNormalizedNamed: parse what a user typed, filling in docker.io and library/."""
    if not text or text != text.strip():
        raise InvalidParameter(INVALID_FORMAT)
    if is_full_id(text):
        raise InvalidParameter("invalid repository name (%s), cannot specify 64-byte hexadecimal strings"
                               % text)
    remainder, digest = _split_digest(text)
    remainder, tag = _split_tag(remainder)
    domain, path = _split_domain(remainder)
    _validate(domain, path, tag, digest)
    return Reference(domain, path, tag, digest)


def _split_digest(text):
    if "@" not in text:
        return text, None
    remainder, digest = text.split("@", 1)
    if not _DIGEST_RE.match(digest):
        raise InvalidParameter(INVALID_FORMAT)
    return remainder, digest


def _split_tag(text):
    """The tag follows the last colon, unless that colon belongs to a registry's port."""
    colon = text.rfind(":")
    if colon == -1 or "/" in text[colon:]:
        return text, None
    return text[:colon], text[colon + 1:]


def _split_domain(text):
    first, slash, rest = text.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, text
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return domain, path


def _validate(domain, path, tag, digest):
    if path != path.lower() and _PATH_RE.match(path.lower()):
        raise InvalidParameter(INVALID_FORMAT + ": repository name must be lowercase")
    if not _PATH_RE.match(path) or not _DOMAIN_RE.match(domain):
        raise InvalidParameter(INVALID_FORMAT)
    if len(domain) + 1 + len(path) > 255:
        raise InvalidParameter(INVALID_FORMAT + ": repository name must not be more than 255 characters")
    if tag is not None and not _TAG_RE.match(tag):
        raise InvalidParameter(INVALID_FORMAT)


def parse_tag(tag):
    """Validate a bare tag as `docker tag` sends it in the `tag` query parameter."""
    if not _TAG_RE.match(tag):
        raise InvalidParameter(INVALID_FORMAT)
    return tag
