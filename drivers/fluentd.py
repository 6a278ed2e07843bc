"""The fluentd log driver (daemon/logger/fluentd, over fluent-logger-golang).

Each line is one event in Fluentd's forward protocol, "Message mode": a MessagePack array

    [tag, time, record, nil]

tag is the `tag` template (default {{.ID}}); time the line's Unix time in whole seconds, or
with `fluentd-sub-second-precision` an EventTime (MessagePack ext type 0: seconds and
nanoseconds, 32 bits each, big endian); record a map of strings: container_id (64 hex),
container_name ("/web"), source ("stdout" or "stderr"), log (the line), partial_message
("true") on a line the copier cut, and the labels/env attributes the options name.

`fluentd-address`: host:port, tcp://host:port or unix:///path (default 127.0.0.1:24224).
Delivery (fluent-logger-golang's write): a failed connect or write is retried on a new
connection, waiting `fluentd-retry-wait` (default 1s) times 1.5^(n-1) before retry n (at
most a minute), `fluentd-max-retries` times (default 2^31-1: for ever, as dockerd), and
the line is dropped after that.

At start the driver dials (a start fails when fluentd does not answer), unless
`fluentd-async` (or its deprecated twin `fluentd-async-connect`) is set: then it connects
when the first line is sent, and holds at most `fluentd-buffer-limit` lines (default
1048576; and, like any non-blocking driver here, max-buffer-size bytes of them) while
fluentd is away, dropping the ones past that whatever the mode.
fluentd-request-ack is not supported (refused as an unknown option).

The MessagePack encoder below is the part of the format these events need: nil, integers,
strings (bytes are sent as they are, like a Go string), arrays, maps and ext types.
"""
import re
import struct
import time
import urllib.parse

from drivers import logger
from drivers.logger import LogDriverError

NAME = "fluentd"
OPTIONS = {"env", "env-regex", "labels", "labels-regex", "tag", "fluentd-address",
           "fluentd-async", "fluentd-async-connect", "fluentd-buffer-limit",
           "fluentd-max-retries", "fluentd-retry-wait", "fluentd-sub-second-precision"}
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 24224
DEFAULT_BUFFER_LIMIT = 1024 * 1024
DEFAULT_RETRY_WAIT = 1000          # milliseconds
DEFAULT_MAX_RETRIES = 2 ** 31 - 1  # math.MaxInt32
MAX_RETRY_WAIT = 60000             # fluent-logger-golang's defaultMaxRetryWait, milliseconds
RETRY_WAIT_RATE = 1.5
TRANSPORTS = ("tcp://", "udp://", "unix://", "unixgram://", "tcp+tls://")

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|ms|s|m|h)")


def parse_duration(text):
    """time.ParseDuration, in seconds: "1s", "500ms", "1m30s"."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    position, total = 0, 0.0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if not match:
            if re.match(r"[\d.]+$", body[position:]):
                raise LogDriverError('time: missing unit in duration "%s"' % text)
            raise LogDriverError('time: invalid duration "%s"' % text)
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if not body:
        raise LogDriverError('time: invalid duration "%s"' % text)
    return -total if text.startswith("-") else total


def parse_address(address):
    """fluentd.parseAddress: (network, address) for logger.dial."""
    if not address:
        return "tcp", "%s:%d" % (DEFAULT_HOST, DEFAULT_PORT)
    network = "tcp"
    hostport = address
    if address.startswith(TRANSPORTS):
        url = urllib.parse.urlsplit(address)
        if url.scheme in ("unix", "unixgram"):
            return url.scheme, url.path
        network, hostport = url.scheme, url.netloc
    try:
        host, port = logger.split_host_port(hostport)
    except LogDriverError as err:
        if "missing port" not in str(err):
            raise LogDriverError("invalid fluentd-address %s: %s" % (address, err)) from None
        host, port = hostport, str(DEFAULT_PORT)
    if not port.isdigit():
        raise LogDriverError('invalid fluentd-address %s: strconv.Atoi: parsing "%s": invalid '
                             "syntax" % (address, port))
    return network, "%s:%s" % (host or DEFAULT_HOST, port)


class Config(object):
    """fluentd.parseConfig: the fluentd-* options, checked with dockerd's errors."""

    def __init__(self, opts):
        self.network, self.address = parse_address(opts.get("fluentd-address", ""))
        self.buffer_limit = DEFAULT_BUFFER_LIMIT
        if opts.get("fluentd-buffer-limit"):
            self.buffer_limit = logger.parse_size(opts["fluentd-buffer-limit"], logger.BINARY_UNITS)
        self.retry_wait = DEFAULT_RETRY_WAIT
        if opts.get("fluentd-retry-wait"):
            self.retry_wait = int(parse_duration(opts["fluentd-retry-wait"]) * 1000)
        self.max_retries = DEFAULT_MAX_RETRIES
        if opts.get("fluentd-max-retries"):
            if not opts["fluentd-max-retries"].isdigit():
                raise LogDriverError('strconv.ParseUint: parsing "%s": invalid syntax'
                                     % opts["fluentd-max-retries"])
            self.max_retries = int(opts["fluentd-max-retries"])
        if opts.get("fluentd-async") and opts.get("fluentd-async-connect"):
            raise LogDriverError("conflicting options: cannot specify both 'fluentd-async' and "
                                 "'fluentd-async-connect")
        self.asynchronous = any(logger.parse_bool(opts[key]) for key in
                                ("fluentd-async", "fluentd-async-connect") if opts.get(key))
        self.sub_second = logger.parse_bool(opts.get("fluentd-sub-second-precision") or "false")


class FluentdLogger(logger.RemoteLogger):
    """fluentd.fluentd with fluent.Fluent's connection handling."""
    name = NAME

    @staticmethod
    def validate(opts):
        logger.unknown_options(opts, OPTIONS, "unknown log opt '%s' for fluentd log driver")
        Config(opts)

    def __init__(self, info, opts):
        self.config = Config(opts)
        self.tag = info.tag(opts)
        self._fixed = [("container_id", info.container_id), ("container_name", info.container_name)]
        self._extra = sorted(info.extra_attributes(opts).items())
        if self.config.asynchronous:
            self.buffer_limit = self.config.buffer_limit
        self._sock = None if self.config.asynchronous else self._dial()

    def _dial(self):
        return logger.dial(self.config.network, self.config.address)

    def event(self, message):
        """One forward-protocol event for a line, MessagePack-encoded."""
        record = self._fixed + [("source", message.source), ("log", message.line)] + self._extra
        if message.partial:
            record.append(("partial_message", "true"))
        if self.config.sub_second:
            seconds, nanos = divmod(message.timestamp, 10 ** 9)
            when = EventTime(seconds, nanos)
        else:
            when = message.timestamp // 10 ** 9
        return pack([self.tag, when, Map(record), None])

    def log(self, message):
        self._write(self.event(message))

    def _write(self, data):
        """fluent.Fluent.write: connect if need be, send, and on failure retry with growing
        waits until max_retries attempts have failed."""
        for attempt in range(self.config.max_retries):
            if self._sock is None:
                try:
                    self._sock = self._dial()
                except LogDriverError:
                    wait = self.config.retry_wait * RETRY_WAIT_RATE ** (attempt - 1)
                    time.sleep(min(wait, MAX_RETRY_WAIT) / 1000.0)
                    continue
            try:
                self._sock.sendall(data)
                return
            except OSError:
                self._sock.close()
                self._sock = None
        raise LogDriverError("fluent#write: failed to reconnect, max retry: %d"
                             % self.config.max_retries)

    def close(self):
        if self._sock is not None:
            self._sock.close()


# ---------------------------------------------------------------------------------------
# MessagePack, the part of it the forward protocol's events use.
# ---------------------------------------------------------------------------------------

class Map(list):
    """Key/value pairs packed as a MessagePack map, in this order."""


class EventTime(tuple):
    """Fluentd's EventTime: ext type 0, seconds and nanoseconds."""

    def __new__(cls, seconds, nanos):
        return tuple.__new__(cls, (seconds, nanos))


def pack(value):
    """The MessagePack encoding of nil, an int, str or bytes (a str family string), a list,
    a Map or an EventTime; each in its smallest form."""
    if value is None:
        return b"\xc0"
    if isinstance(value, EventTime):
        return b"\xd7\x00" + struct.pack(">II", *value)
    if isinstance(value, int):
        return _pack_int(value)
    if isinstance(value, (str, bytes)):
        data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        return _header(len(data), 0xa0, 32, b"\xd9", b"\xda", b"\xdb") + data
    if isinstance(value, Map):
        return _header(len(value), 0x80, 16, None, b"\xde", b"\xdf") + \
            b"".join(pack(key) + pack(item) for key, item in value)
    if isinstance(value, list):
        return _header(len(value), 0x90, 16, None, b"\xdc", b"\xdd") + \
            b"".join(pack(item) for item in value)
    raise TypeError("cannot pack %r" % type(value))


def _header(length, fix_base, fix_limit, code8, code16, code32):
    if length < fix_limit:
        return bytes([fix_base | length])
    if code8 is not None and length < 1 << 8:
        return code8 + struct.pack(">B", length)
    if length < 1 << 16:
        return code16 + struct.pack(">H", length)
    return code32 + struct.pack(">I", length)


def _pack_int(number):
    if 0 <= number < 128:
        return bytes([number])
    if -32 <= number < 0:
        return struct.pack(">b", number)
    if number >= 0:
        for code, fmt, limit in ((b"\xcc", ">B", 1 << 8), (b"\xcd", ">H", 1 << 16),
                                 (b"\xce", ">I", 1 << 32), (b"\xcf", ">Q", 1 << 64)):
            if number < limit:
                return code + struct.pack(fmt, number)
    for code, fmt, limit in ((b"\xd0", ">b", 1 << 7), (b"\xd1", ">h", 1 << 15),
                             (b"\xd2", ">i", 1 << 31), (b"\xd3", ">q", 1 << 63)):
        if -limit <= number:
            return code + struct.pack(fmt, number)
    raise OverflowError("integer out of MessagePack's range: %d" % number)
