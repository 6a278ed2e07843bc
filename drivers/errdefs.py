"""Typed errors, mapped to HTTP status codes by the API server.

Docker 1.8.2 guessed the status from the error text ("no such" -> 404, "conflict" -> 409) in
api/server/server.go httpError. Modern dockerd replaced that with typed errors (the errdefs
package, daemon/server/httpstatus): each error says what kind of failure it is and the server
maps the kind to a code. pydockerd uses the typed errors; the wording of each message stays
dockerd's, because the CLI prints it verbatim as "Error response from daemon: <message>".
"""


class DockerError(Exception):
    """Any error the daemon reports to a client; `status` is the HTTP code it maps to."""

    status = 500

    @property
    def message(self):
        return str(self)


class InvalidParameter(DockerError):
    """The request is malformed or asks for something impossible (400)."""

    status = 400


class Unauthorized(DockerError):
    """Credentials are missing or wrong (401)."""

    status = 401


class Forbidden(DockerError):
    """The request is understood but refused (403)."""

    status = 403


class NotFound(DockerError):
    """The named object does not exist (404)."""

    status = 404


class Conflict(DockerError):
    """The request conflicts with the current state, e.g. removing a running container (409)."""

    status = 409


class NotModified(DockerError):
    """Nothing to do: starting a running container, stopping a stopped one (304)."""

    status = 304


class NotImplemented(DockerError):  # noqa: A001 - the name Docker's errdefs uses
    """The daemon does not implement this (501)."""

    status = 501


class Unavailable(DockerError):
    """The daemon cannot serve this now, e.g. while shutting down (503)."""

    status = 503


class System(DockerError):
    """A real fault inside the daemon (500)."""

    status = 500


def go_error_text(err):
    """An OSError as Go's *PathError prints it (`<path>: no space left on device`), never as
    Python's `[Errno 28] No space left on device: '<path>'`; other errors as str() gives them."""
    if not isinstance(err, OSError) or not err.strerror:
        return str(err)
    text = err.strerror[:1].lower() + err.strerror[1:]
    return "%s: %s" % (err.filename, text) if err.filename else text
