"""The gelf log driver (daemon/logger/gelf, over the go-gelf writers dockerd vendors).

Each non-empty line is one GELF 1.1 message, a JSON object:

    {"version":"1.1","host":"<this host>","short_message":"<line>","timestamp":<s.mmm>,
     "level":6,"_command":"sh -c ...","_container_id":"<64 hex>","_container_name":"web",
     "_created":"<RFC 3339>","_image_id":"sha256:...","_image_name":"busybox","_tag":"<tag>",
     ...the labels/env attributes, each name with a leading "_"}

level 6 for stdout, 3 for stderr; the timestamp in seconds with millisecond precision; the
extra fields in sorted order, as Go's json.Marshal writes a map, and strings escaped as
Go escapes them.

`gelf-address` says where: udp://host:port or tcp://host:port (required).
  * UDP: each message compressed (`gelf-compression-type` gzip, the default, zlib or none;
    `gelf-compression-level` -1..9, default 1) and, when that is over 1420 bytes, cut into
    chunks of at most 1408 bytes, each behind a 12-byte header: 0x1e 0x0f, an 8-byte random
    message id, the chunk's index and the count (at most 128 chunks).
  * TCP: uncompressed, each message ended by a NUL byte. A failed write is retried on a
    new connection up to `gelf-tcp-max-reconnect` times (default 3), waiting
    `gelf-tcp-reconnect-delay` seconds (default 1) before each.
The driver dials at start: a TCP start fails when nothing listens ("gelf: cannot connect to
GELF endpoint: ..."); UDP cannot tell, so it starts.
"""
import gzip
import json
import math
import os
import socket
import struct
import time
import urllib.parse
import zlib

from drivers import logger
from drivers.logger import LogDriverError

NAME = "gelf"
OPTIONS = {"gelf-address", "tag", "labels", "labels-regex", "env", "env-regex",
           "gelf-compression-level", "gelf-compression-type", "gelf-tcp-max-reconnect",
           "gelf-tcp-reconnect-delay"}
COMPRESSION_TYPES = ("gzip", "zlib", "none")
DEFAULT_COMPRESSION_LEVEL = 1   # flate.BestSpeed
DEFAULT_MAX_RECONNECT = 3
DEFAULT_RECONNECT_DELAY = 1
CHUNK_SIZE = 1420
CHUNK_HEADER = 12
CHUNK_DATA = CHUNK_SIZE - CHUNK_HEADER
MAX_CHUNKS = 128
CHUNK_MAGIC = b"\x1e\x0f"
LEVEL = {"stdout": 6, "stderr": 3}


def _quote(text):
    """Go's %q for the option names and values dockerd quotes in its errors."""
    return json.dumps(text, ensure_ascii=False)


def parse_address(address):
    """gelf.parseAddress: (scheme, "host:port")."""
    if not address:
        raise LogDriverError("gelf-address is a required parameter")
    url = urllib.parse.urlsplit(address)
    if url.scheme not in ("udp", "tcp"):
        raise LogDriverError("gelf: endpoint needs to be TCP or UDP")
    try:
        logger.split_host_port(url.netloc)
    except LogDriverError:
        raise LogDriverError("gelf: please provide gelf-address as proto://host:port") from None
    return url.scheme, url.netloc


def _int_option(opts, key, default):
    try:
        return int(opts.get(key, default))
    except ValueError:
        return None


def _valid_compression(key, value):
    """A compression type gzip, zlib or none; a level from flate.DefaultCompression (-1) to
    flate.BestCompression (9)."""
    if key == "gelf-compression-type":
        return value in COMPRESSION_TYPES
    level = _int_option({key: value}, key, 0)
    return level is not None and -1 <= level <= 9


class GelfLogger(logger.RemoteLogger):
    """gelf.gelfLogger: the fixed part of every message is marshalled once, at start."""
    name = NAME

    @staticmethod
    def validate(opts):
        scheme, _ = parse_address(opts.get("gelf-address", ""))
        for key, value in opts.items():
            if key in ("gelf-compression-level", "gelf-compression-type"):
                if scheme != "udp":
                    raise LogDriverError("compression is only supported on UDP")
                if not _valid_compression(key, value):
                    raise LogDriverError("unknown value %s for log opt %s for gelf log driver"
                                         % (_quote(value), _quote(key)))
            elif key in ("gelf-tcp-max-reconnect", "gelf-tcp-reconnect-delay"):
                if scheme != "tcp":
                    raise LogDriverError("%s is only valid for TCP" % _quote(key))
                number = _int_option(opts, key, 0)
                if number is None or number < 0:
                    raise LogDriverError("%s must be a positive integer" % _quote(key))
            elif key not in OPTIONS:
                raise LogDriverError("unknown log opt %s for gelf log driver" % _quote(key))

    def __init__(self, info, opts):
        self.scheme, self.address = parse_address(opts.get("gelf-address", ""))
        self.hostname = socket.gethostname()
        extra = {"_container_id": info.container_id, "_container_name": info.container_name.lstrip("/"),
                 "_image_id": info.image_id, "_image_name": info.image_name,
                 "_command": info.command(), "_tag": info.tag(opts), "_created": info.created}
        extra.update(info.extra_attributes(opts, lambda key: key if key.startswith("_") else "_" + key))
        self._extra = ",".join("%s:%s" % (_go_json(key), _go_json(value))
                               for key, value in sorted(extra.items()))
        self.compression = opts.get("gelf-compression-type", "gzip")
        self.level = int(opts.get("gelf-compression-level", DEFAULT_COMPRESSION_LEVEL))
        self.max_reconnect = int(opts.get("gelf-tcp-max-reconnect", DEFAULT_MAX_RECONNECT))
        self.reconnect_delay = int(opts.get("gelf-tcp-reconnect-delay", DEFAULT_RECONNECT_DELAY))
        self._sock = self._dial()

    def _dial(self):
        try:
            return logger.dial(self.scheme, self.address)
        except LogDriverError as err:
            raise LogDriverError("gelf: cannot connect to GELF endpoint: %s %s"
                                 % (self.address, err)) from None

    def message(self, message):
        """gelf.Message.MarshalJSONBuf for one line."""
        return ('{"version":"1.1","host":%s,"short_message":%s,"timestamp":%s,"level":%d,%s}' % (
            _go_json(self.hostname), logger.encode_log_text(message.line, logger.GO_SHORT_ESCAPES),
            _go_float(message.timestamp // 10 ** 6 / 1000.0), LEVEL[message.source],
            self._extra)).encode()

    def log(self, message):
        if not message.line:
            return
        data = self.message(message)
        if self.scheme == "tcp":
            self._write_tcp(data + b"\0")
        else:
            for datagram in self.datagrams(data):
                self._sock.send(datagram)

    def datagrams(self, data):
        """UDPWriter.WriteMessage: the compressed message, chunked when it is too big."""
        if self.compression == "gzip":
            data = gzip.compress(data, self.level if self.level >= 0 else 6, mtime=0)
        elif self.compression == "zlib":
            data = zlib.compress(data, self.level)
        if len(data) <= CHUNK_SIZE:
            return [data]
        count = math.ceil(len(data) / CHUNK_DATA)
        if count > MAX_CHUNKS:
            raise LogDriverError("gelf: cannot send GELF message: msg too large, would need %d "
                                 "chunks" % count)
        message_id = os.urandom(8)
        return [CHUNK_MAGIC + message_id + struct.pack("BB", index, count) +
                data[index * CHUNK_DATA:(index + 1) * CHUNK_DATA] for index in range(count)]

    def _write_tcp(self, data):
        """TCPWriter.writeToSocketWithReconnectAttempts."""
        error = None
        for _ in range(self.max_reconnect + 1):
            try:
                if self._sock is None:
                    raise OSError("Connection was nil, will attempt reconnect")
                self._sock.sendall(data)
                return
            except OSError as err:
                error = err
            time.sleep(self.reconnect_delay)
            if self._sock is not None:
                self._sock.close()
            try:
                self._sock = logger.dial("tcp", self.address)
            except LogDriverError:
                self._sock = None
        raise LogDriverError("gelf: cannot send GELF message: Maximum reconnection attempts "
                             "was reached; giving up (%s)" % error)

    def close(self):
        if self._sock is not None:
            self._sock.close()


def _go_json(text):
    """A str as Go's json.Marshal writes it (HTML characters escaped, tab as \\t)."""
    return logger.encode_log_text(text.encode("utf-8", "surrogateescape"), logger.GO_SHORT_ESCAPES)


def _go_float(number):
    """A float64 as encoding/json writes it: the shortest form, no ".0" on whole numbers."""
    text = repr(number)
    return text[:-2] if text.endswith(".0") else text
