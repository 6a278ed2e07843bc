"""The journald log driver (daemon/logger/journald, over go-systemd's journal.Send).

Each line is one journal entry sent with systemd's native protocol: a datagram to
/run/systemd/journal/socket holding the entry's fields, each either

    NAME=value\\n                                     (a value without a newline)
    NAME\\n <value length, 64-bit little endian> value\\n   (a value with one)

The fields: MESSAGE (the line), PRIORITY (6 for stdout, 3 for stderr), CONTAINER_ID (12
characters), CONTAINER_ID_FULL, CONTAINER_NAME, CONTAINER_TAG and SYSLOG_IDENTIFIER (both
the `tag` template, default {{.ID}}), IMAGE_NAME, CONTAINER_PARTIAL_MESSAGE=true on a line
the copier cut, and the labels/env attributes the options name, their names upper-cased
with anything but letters and digits made "_" and no leading "_" (journald's field rules).

An entry too big for one datagram (EMSGSIZE, ENOBUFS) goes the way sd_journal_sendv sends
it: written to a memfd, sealed against any change (journald maps sealed memfds without
copying them, and trusts them), and the descriptor passed in an empty datagram with
SCM_RIGHTS.

journal.Enabled: the driver dials the socket at start, and a start fails with dockerd's
"journald is not enabled on this host" when nothing listens there. Tests point the driver at
a socket of their own with the environment variable PYDOCKERD_TEST_JOURNAL_SOCKET (read by
the monitor, which inherits the daemon's environment); nothing else changes the path.

dockerd reads journald logs back through libsystemd; pydockerd has no journal reader, so
`docker logs` for a journald container reads the dual-logging cache like the other remote
drivers.
"""
import array
import errno
import fcntl
import os
import socket
import struct

from drivers import logger
from drivers.logger import LogDriverError

NAME = "journald"
OPTIONS = {"labels", "labels-regex", "env", "env-regex", "tag"}
JOURNAL_SOCKET = "/run/systemd/journal/socket"
TEST_SOCKET_ENV = "PYDOCKERD_TEST_JOURNAL_SOCKET"
PRIORITY = {"stdout": b"6", "stderr": b"3"}
# The seals that make a memfd immutable: journald accepts such an entry without a copy.
SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def sanitize_key(key):
    """journald.sanitizeKeyMod: upper case letters, digits and "_", never a leading "_"."""
    name = ""
    for char in key:
        if "a" <= char <= "z":
            char = char.upper()
        elif not ("A" <= char <= "Z" or "0" <= char <= "9"):
            char = "_"
        if name or char != "_":
            name += char
    return name


def encode_field(name, value):
    """journal.appendVariable: one field in the native protocol (value: bytes)."""
    if b"\n" in value:
        return name.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
    return name.encode() + b"=" + value + b"\n"


class JournaldLogger(logger.RemoteLogger):
    """journald.journald: fixed fields per container, MESSAGE and PRIORITY per line."""
    name = NAME

    @staticmethod
    def validate(opts):
        logger.unknown_options(opts, OPTIONS, "unknown log opt '%s' for journald log driver")

    def __init__(self, info, opts):
        tag = info.tag(opts)
        fields = [("CONTAINER_ID", info.container_id[:12]), ("CONTAINER_ID_FULL", info.container_id),
                  ("CONTAINER_NAME", info.container_name.lstrip("/")), ("CONTAINER_TAG", tag),
                  ("IMAGE_NAME", info.image_name), ("SYSLOG_IDENTIFIER", tag)]
        fields += sorted(info.extra_attributes(opts, sanitize_key).items())
        self._fields = b"".join(encode_field(name, value.encode()) for name, value in fields)
        try:
            self._sock = logger.dial("unixgram", os.environ.get(TEST_SOCKET_ENV) or JOURNAL_SOCKET)
        except LogDriverError:
            raise LogDriverError("journald is not enabled on this host") from None

    def log(self, message):
        entry = encode_field("PRIORITY", PRIORITY[message.source]) + \
            encode_field("MESSAGE", message.line) + self._fields
        if message.partial:
            entry += encode_field("CONTAINER_PARTIAL_MESSAGE", b"true")
        try:
            self._sock.send(entry)
        except OSError as err:
            if err.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            self._send_sealed(entry)

    def _send_sealed(self, entry):
        fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(entry)
            while view:
                view = view[os.write(fd, view):]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
            self._sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
        finally:
            os.close(fd)

    def close(self):
        self._sock.close()
