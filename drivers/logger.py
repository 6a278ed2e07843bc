"""Log drivers: where a container's stdout and stderr lines go (Docker's daemon/logger).

Docker 1.8.2 introduced pluggable log drivers; the default, json-file
(daemon/logger/jsonfilelog), writes one JSON object per line to
/var/lib/docker/containers/<id>/<id>-json.log:

    {"log":"hi\\n","stream":"stdout","time":"2015-09-10T10:00:00.123456789Z"}

and rotates it by size (--log-opt max-size, max-file, compress). `local` (drivers/local.py)
keeps the same lines in dockerd's compact protobuf records; `none` keeps nothing. The
copier (daemon/logger/copier.go) cuts the container's byte streams into those lines. In
pydockerd the container's monitor (drivers/monitor.py) runs the copier and the driver, so logs
keep being written while the daemon is down; `docker logs` reads the files back with
read_log (LogFile is the rotating file both write).

The drivers that send lines elsewhere each live in a module of their own, imported only by a
monitor that uses them: drivers/syslog.py, journald.py, gelf.py and fluentd.py. This module
is what they share:

  * the registry (DRIVERS) and validate_log_opts, which checks a driver's --log-opt keys with
    dockerd's messages at create and at boot, plus the options every driver takes:
        mode=blocking|non-blocking, max-buffer-size   (how lines reach a remote driver)
        cache-disabled, cache-max-size, cache-max-file, cache-compress   (dual logging)
  * LogInfo, the container facts a driver may use, with the `tag` template ({{.Name}}/{{.ID}})
    and the labels/env attributes (logger.Info, loggerutils.ParseLogTag);
  * Sender: a remote driver never runs on the monitor's loop. Lines go through a bounded queue
    to one thread. With mode=blocking (the default) a full queue makes the monitor stop
    reading the container's output, so the container blocks on its pipe as under dockerd;
    with mode=non-blocking a line that does not fit in max-buffer-size is dropped (dockerd's
    ring buffer), so a destination that stalls or disappears never holds the container up
    (json-file and local write to a local disk, on the loop, in either mode);
  * dual logging (dockerd 20.10): every remote driver also writes a local cache that
    `docker logs` reads, bounded by the cache-* options. pydockerd keeps the cache in the
    json-file format (container-cached.log beside the container's config, rotated files
    gzipped) rather than in dockerd's "local" format: either reads back the same, and JSON
    lines can be read by hand.
"""
import collections
import functools
import importlib
import json
import os
import re
import socket
import threading
import time

# copier.go: a line longer than this is logged in pieces, each marked partial.
COPIER_BUFFER_SIZE = 16 * 1024

# go-units decimal sizes, as units.FromHumanSize parses max-size ("10m" is 10,000,000 bytes).
_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_DECIMAL_UNITS = {"": 1, "k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9, "t": 10 ** 12, "p": 10 ** 15}
BINARY_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

# ffjsonWriteJSONBytesAsString escapes these besides '"' and '\\': control characters, the
# HTML-sensitive <, > and &, and the JavaScript line separators; invalid UTF-8 becomes \ufffd.
_NEEDS_ESCAPE = re.compile("[\x00-\x1f\"\\\\<>&\u2028\u2029\udc80-\udcff]")
# The same test on raw bytes, true also for any non-ASCII byte: a line it passes is printable
# ASCII that needs no escape (the fast path of encode_log_text).
_NEEDS_ESCAPE_ASCII = re.compile(b"[\x00-\x1f\"\\\\<>&\x7f-\xff]")
# The same two tests for a run of lines, whose newlines are not part of any line's text.
_NEEDS_ESCAPE_IN_LINES = re.compile("[\x00-\x09\x0b-\x1f\"\\\\<>&\u2028\u2029\udc80-\udcff]")
_NEEDS_ESCAPE_IN_LINES_ASCII = re.compile(b"[\x00-\x09\x0b-\x1f\"\\\\<>&\x7f-\xff]")
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r"}
# Go's encoding/json (GELF's records) writes a tab as \t too.
GO_SHORT_ESCAPES = dict(_SHORT_ESCAPES, **{"\t": "\\t"})

_RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
                      r"(Z|[+-]\d\d:\d\d)$")

Message = collections.namedtuple("Message", "line source timestamp partial")
Message.__doc__ = """logger.Message: one line (without its newline) of "stdout" or "stderr",
stamped in nanoseconds since the epoch; partial when the line goes on in the next message."""

LogEntry = collections.namedtuple("LogEntry", "line stream time timestamp")
LogEntry.__doc__ = """One json-file record read back: the log text (bytes, with its newline
when complete), the stream, the time as written and as nanoseconds since the epoch."""


class LogDriverError(Exception):
    """A log driver that cannot be used as configured (bad name or --log-opt)."""


class Lines(collections.namedtuple("Lines", "data source timestamp")):
    """Complete lines of "stdout" or "stderr" that one read brought: data holds them, each
    with its newline and none as long as the copier's buffer, all stamped with that read's time
    (dockerd's copier stamps each line as it logs it, so lines read together get all but the
    same time). A driver writes them in one go (JSONFileLogger.log_lines) or one by one."""

    def messages(self):
        return [Message(line, self.source, self.timestamp, False)
                for line in self.data[:-1].split(b"\n")]


class Copier(object):
    """logger.Copier for one stream: bytes in, lines out.

    feed() returns what a read completed: Lines for a run of ordinary lines, Messages for the
    pieces of a line that fills the buffer without a newline (each marked partial but the
    last); whatever is left at close() is logged as a partial Message.
    """

    def __init__(self, source, buffer_size=COPIER_BUFFER_SIZE):
        self.source = source
        self._buffer_size = buffer_size
        self._pending = b""

    def feed(self, data):
        pending = self._pending + data
        now = time.time_ns()
        items, start = [], 0
        end = pending.rfind(b"\n") + 1
        # The usual read: whole lines, all shorter than the buffer, handed on as one run
        # (a run no longer than the buffer cannot hold a line that long).
        if end and (end <= self._buffer_size or
                    max(map(len, pending[:end].split(b"\n"))) < self._buffer_size):
            items.append(Lines(pending[:end], self.source, now))
            start = end
        while True:  # an offset walks the rest: slicing off each line would copy the rest
            newline = pending.find(b"\n", start, start + self._buffer_size)
            if newline >= 0:
                items.append(Message(pending[start:newline], self.source, now, False))
                start = newline + 1
            elif len(pending) - start >= self._buffer_size:
                items.append(Message(pending[start:start + self._buffer_size], self.source, now, True))
                start += self._buffer_size
            else:
                self._pending = pending[start:]
                return items

    def close(self):
        """End of stream: the unterminated rest, if any, as a partial message."""
        rest, self._pending = self._pending, b""
        return [Message(rest, self.source, time.time_ns(), True)] if rest else []


DAEMON_NAME = "docker"
# loggerutils.DefaultTemplate: a remote driver's tag is the short container id unless set.
DEFAULT_TAG_TEMPLATE = "{{.ID}}"
_ACTION = re.compile(r"\{\{(.*?)\}\}")
_FIELD = re.compile(r"^\s*\.([A-Za-z][A-Za-z0-9]*)\s*$")

_INFO_FIELDS = "container_id container_name entrypoint args image_id image_name created env labels"


class LogInfo(collections.namedtuple("LogInfo", _INFO_FIELDS,
                                     defaults=("", "", "", (), "", "", "", (), {}))):
    """logger.Info: the container facts a driver may put in its records, as the daemon sends
    them to the monitor (to_dict/from_dict). image_id is "sha256:<hex>", image_name the name
    the container was created from, created its RFC 3339 creation time, env its "K=V" list."""

    def to_dict(self):
        return dict(self._asdict())

    @classmethod
    def from_dict(cls, data):
        return cls(**{field: data[field] for field in cls._fields if field in data})

    def template_fields(self):
        """What a `tag` template may name: Info's methods and its string fields."""
        image_hex = self.image_id.split(":", 1)[-1]
        return {"ID": self.container_id[:12], "FullID": self.container_id,
                "Name": self.container_name.lstrip("/"), "ImageID": image_hex[:12],
                "ImageFullID": self.image_id, "ImageName": self.image_name,
                "DaemonName": DAEMON_NAME, "Hostname": socket.gethostname(),
                "Command": self.command(), "ContainerID": self.container_id,
                "ContainerName": self.container_name, "ContainerEntrypoint": self.entrypoint,
                "ContainerImageID": self.image_id, "ContainerImageName": self.image_name}

    def command(self):
        """Info.Command: the entrypoint and its arguments, space separated."""
        return " ".join([self.entrypoint] + list(self.args))

    def tag(self, opts, default=DEFAULT_TAG_TEMPLATE):
        """loggerutils.ParseLogTag: the `tag` option (or default) with its fields filled in."""
        return expand_template(opts.get("tag") or default, self.template_fields())

    def extra_attributes(self, opts, key_mod=None):
        """Info.ExtraAttributes: the labels and env variables the labels, labels-regex, env
        and env-regex options name, keyed through key_mod (a driver's field-name rules)."""
        env = dict(item.split("=", 1) for item in self.env if "=" in item)
        extra = {}
        for option, values in (("labels", self.labels), ("env", env)):
            wanted = [key for key in opts.get(option, "").split(",") if key in values]
            pattern = opts.get(option + "-regex")
            if pattern:
                try:
                    matcher = re.compile(pattern)
                except re.error as err:
                    raise LogDriverError("error parsing regexp: %s: `%s`" % (err, pattern))
                wanted += [key for key in values if matcher.search(key)]
            for key in wanted:
                extra[key_mod(key) if key_mod else key] = values[key]
        return extra


def expand_template(template, fields):
    """The part of Go's text/template that tag templates use: {{.Field}} actions in text.

    Other actions (pipelines, functions) are refused with a template error, as a start fails
    on a template dockerd cannot parse."""
    if template.count("{{") != template.count("}}"):
        raise LogDriverError("template: log-tag:1: unclosed action")

    def field(match):
        name = _FIELD.match(match.group(1))
        if not name:
            raise LogDriverError("template: log-tag:1: pydockerd supports only {{.Field}} "
                                 "actions, not %r" % match.group())
        if name.group(1) not in fields:
            raise LogDriverError(
                'template: log-tag:1:%d: executing "log-tag" at <.%s>: can\'t evaluate field %s '
                "in type *logger.Info" % (match.start() + 3, name.group(1), name.group(1)))
        return fields[name.group(1)]
    return _ACTION.sub(field, template)


class NoneLogger(object):
    """The `none` driver: the container's output is only for attached clients."""
    name = "none"
    remote = False

    @staticmethod
    def validate(opts):
        """dockerd skips every check for `none` (ValidateLogOpts returns at once)."""

    @classmethod
    def open(cls, path, info, opts):
        return cls()

    def log(self, message):
        pass

    def log_lines(self, lines):
        pass

    def backlogged(self):
        return False

    def close(self):
        pass


class LogFile(object):
    """loggerutils.LogFile: records appended to a file rotated by size.

    max_size is in bytes (-1: unlimited). Before each write, a file already at max_size is
    rotated: <path>.N-1 becomes <path>.N, ..., <path> becomes <path>.1, keeping max_file
    files in all; with max_file 1 the file is simply truncated. With compress, the rotated
    files are gzipped (<path>.1.gz, ...).
    """

    def __init__(self, path, max_size=-1, max_file=1, compress=False):
        self.path = path
        self.max_size = max_size
        self.max_file = max_file
        self.compress = compress
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(self._fd).st_size

    def write(self, record):
        """Append one whole record, or nothing. On a full disk the part that was written is
        cut off again (a torn line would swallow the next record once there is room) and
        OSError(ENOSPC, "no space left on device") is the caller's to report."""
        if self.max_size != -1 and self._size >= self.max_size:
            self._rotate()
        self._append(record, lambda written: 0)

    def write_lines(self, records):
        """Append records that each end with a newline, rotating between two of them exactly
        where write() would have: the record that reaches max_size is the file's last. On a
        full disk the whole records written stay and the torn one is cut off."""
        start = 0
        while start < len(records):
            if self.max_size != -1 and self._size >= self.max_size:
                self._rotate()
            end = len(records)
            if self.max_size != -1 and end - start > self.max_size - self._size:
                # the record holding the file's last byte before max_size ends the part
                end = records.index(b"\n", start + self.max_size - self._size - 1) + 1
            part = records[start:end]
            self._append(part, lambda written: part.rfind(b"\n", 0, written) + 1)
            start = end

    def _append(self, data, whole):
        """Write data at the end; on an error, keep only its first whole(written) bytes."""
        view, written = memoryview(data), 0
        try:
            while written < len(data):  # a full disk first answers with a short write, then ENOSPC
                written += os.write(self._fd, view[written:])
        except OSError as err:
            kept = whole(written)
            os.ftruncate(self._fd, self._size + kept)
            self._size += kept
            raise OSError(err.errno, os.strerror(err.errno).lower(), self.path) from None
        self._size += len(data)

    def _rotate(self):
        os.close(self._fd)
        suffix = ".gz" if self.compress else ""
        for index in range(self.max_file - 1, 1, -1):
            older = "%s.%d%s" % (self.path, index - 1, suffix)
            if os.path.exists(older):
                os.replace(older, "%s.%d%s" % (self.path, index, suffix))
        if self.max_file > 1:
            os.replace(self.path, self.path + ".1")
            if self.compress:
                _gzip_file(self.path + ".1")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC |
                           os.O_CLOEXEC, 0o600)
        self._size = 0

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class JSONFileLogger(object):
    """jsonfilelog.JSONFileLogger: one JSON object per line in a LogFile. attrs (from the
    labels and env options, and the tag when one is set) are added to every record."""
    name = "json-file"
    remote = False
    OPTIONS = {"max-size", "max-file", "compress", "labels", "labels-regex", "env",
               "env-regex", "tag"}

    def __init__(self, path, max_size=-1, max_file=1, attrs=None, compress=False):
        self.file = LogFile(path, max_size, max_file, compress)
        self._attrs = json.dumps(attrs, separators=(",", ":"), sort_keys=True) if attrs else ""

    @staticmethod
    def validate(opts):
        unknown_options(opts, JSONFileLogger.OPTIONS, "unknown log opt '%s' for json-file log driver")
        _rotation(opts, "", -1, 1, False)

    @staticmethod
    def max_file(opts):
        return _rotation(opts, "", -1, 1, False)[1]

    @classmethod
    def open(cls, path, info, opts):
        """jsonfilelog.New: the tag goes into the attributes only when the user set one."""
        attrs = info.extra_attributes(opts)
        if opts.get("tag"):
            attrs["tag"] = info.tag(opts, "")
        max_size, max_file, compress = _rotation(opts, "", -1, 1, False)
        return cls(path, max_size, max_file, attrs, compress)

    @staticmethod
    def split_records(data):
        """The complete lines at the start of data as LogEntries (None for a foreign line),
        and how many bytes they took."""
        complete = data[:data.rfind(b"\n") + 1]
        return [decode_record(raw) for raw in complete.splitlines()], len(complete)

    def log(self, message):
        self.file.write(marshal_message(message, self._attrs))

    def log_lines(self, lines):
        self.file.write_lines(marshal_lines(lines, self._attrs))

    def backlogged(self):
        return False

    def close(self):
        self.file.close()


def _gzip_file(path):
    """<path> becomes <path>.gz (written beside, then renamed, so a reader never sees half a
    file). gzip is imported here: a monitor that never rotates a compressed log spares it."""
    import gzip
    with open(path, "rb") as source, gzip.open(path + ".gz.tmp", "wb") as target:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            target.write(chunk)
    os.replace(path + ".gz.tmp", path + ".gz")
    os.unlink(path)


def _rotation(opts, prefix, max_size, max_file, compress):
    """The rotation options (max-size, max-file, compress, after prefix: "" for json-file,
    "cache-" for the dual-logging cache) over the given defaults, checked as dockerd does."""
    if prefix + "max-size" in opts:
        max_size = parse_size(opts[prefix + "max-size"])
        if max_size <= 0:
            raise LogDriverError("%smax-size must be a positive number" % prefix)
    if prefix + "max-file" in opts:
        try:
            max_file = int(opts[prefix + "max-file"])
        except ValueError:
            raise LogDriverError("invalid %smax-file: '%s'" % (prefix, opts[prefix + "max-file"])) from None
        if max_file < 1:
            raise LogDriverError("%smax-file cannot be less than 1" % prefix)
    if prefix + "compress" in opts:
        compress = parse_bool(opts[prefix + "compress"])
    if compress and (max_file == 1 or max_size == -1):
        raise LogDriverError("{0}compress cannot be set to true when {0}max-file is less than 2 "
                             "or {0}max-size is not set".format(prefix))
    return max_size, max_file, compress


class RemoteLogger(object):
    """What the drivers that send lines away share: they are built from (info, opts) and dial
    their destination at once (a start fails when it cannot be reached, unless the driver
    connects later), and they run behind a Sender. buffer_limit (messages) is set by a driver
    that buffers on its own terms whatever the mode (fluentd-async)."""
    remote = True
    buffer_limit = None

    @classmethod
    def open(cls, path, info, opts):
        return cls(info, opts)


def marshal_message(message, attrs=""):
    """jsonlog.JSONLogs.MarshalJSONBuf: the exact bytes dockerd writes for one message.

    Keys come in the order log, stream, attrs, time; complete lines get their newline back.
    """
    text = message.line if message.partial else message.line + b"\n"
    parts = []
    if text:
        parts.append('"log":' + encode_log_text(text))
    parts.append('"stream":"%s"' % message.source)
    if attrs:
        parts.append('"attrs":' + attrs)
    parts.append('"time":"%s"' % format_time(message.timestamp))
    return ("{" + ",".join(parts) + "}\n").encode("utf-8")


def marshal_lines(lines, attrs=""):
    """The records of marshal_message for each of a run of Lines, built for the whole run at
    once: the lines share their stream and time, so every record ends the same way, and the
    newlines between them become that end and the next record's start."""
    end = ('\\n","stream":"%s"%s,"time":"%s"}\n' % (
        lines.source, ',"attrs":' + attrs if attrs else "", format_time(lines.timestamp))).encode()
    text = lines.data
    if _NEEDS_ESCAPE_IN_LINES_ASCII.search(text):
        text = _escape(text, _NEEDS_ESCAPE_IN_LINES, _SHORT_ESCAPES).encode("utf-8")
    return b'{"log":"' + text[:-1].replace(b"\n", end + b'{"log":"') + end


def encode_log_text(data, short_escapes=_SHORT_ESCAPES):
    """ffjsonWriteJSONBytesAsString: bytes as a JSON string the way dockerd escapes them
    (with GO_SHORT_ESCAPES, the way Go's encoding/json does: tab as \\t)."""
    if not _NEEDS_ESCAPE_ASCII.search(data):  # most log lines: printable ASCII, nothing to do
        return '"' + data.decode("ascii") + '"'
    return '"' + _escape(data, _NEEDS_ESCAPE, short_escapes) + '"'


def _escape(data, pattern, short_escapes):
    """data decoded as UTF-8 (a byte that is not becomes \\ufffd) with what pattern finds
    escaped."""
    return pattern.sub(lambda match: _escape_character(match, short_escapes),
                       data.decode("utf-8", "surrogateescape"))


def _escape_character(match, short_escapes):
    char = match.group()
    if char in short_escapes:
        return short_escapes[char]
    if "\udc80" <= char <= "\udcff":
        return "\\ufffd"
    return "\\u%04x" % ord(char)


def format_time(timestamp_ns):
    """Go's time.RFC3339Nano in UTC: nanoseconds with trailing zeros trimmed, then Z."""
    seconds, nanos = divmod(timestamp_ns, 10 ** 9)
    text = _format_second(seconds)
    if nanos:
        text += ("." + "%09d" % nanos).rstrip("0")
    return text + "Z"


@functools.lru_cache(maxsize=4)
def _format_second(seconds):
    """The date and time of one second: a busy log stamps thousands of lines within one."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def parse_time(text):
    """An RFC 3339 time (as written by format_time, or with an offset) -> nanoseconds."""
    match = _RFC3339.match(text)
    if not match:
        raise ValueError("invalid RFC 3339 time %r" % text)
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    nanos = int((match.group(7) or "").ljust(9, "0"))
    seconds = _days_since_epoch(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    zone = match.group(8)
    if zone != "Z":
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= offset if zone[0] == "+" else -offset
    return seconds * 10 ** 9 + nanos


def _days_since_epoch(year, month, day):
    """Days from 1970-01-01 to a Gregorian date (calendar.timegm's arithmetic, without
    importing calendar into every monitor): count from March, so the leap day comes last."""
    if month <= 2:
        year -= 1
    era, year_of_era = divmod(year, 400)
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def parse_size(text, units=_DECIMAL_UNITS):
    """units.FromHumanSize: "10m" -> 10000000 (decimal units, as json-file's max-size);
    with BINARY_UNITS, units.RAMInBytes: "1m" -> 1048576 (max-buffer-size)."""
    match = _SIZE.match(text.strip())
    if not match:
        raise LogDriverError("invalid size: '%s'" % text)
    return int(float(match.group(1)) * units[(match.group(2) or "").lower()])


def parse_bool(text):
    """strconv.ParseBool, with its error."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise LogDriverError('strconv.ParseBool: parsing "%s": invalid syntax' % text)


def unknown_options(opts, known, message):
    """A driver's check of its keys: the first unknown one, in dockerd's words for it."""
    for key in opts:
        if key not in known:
            raise LogDriverError(message % key)


# ---------------------------------------------------------------------------------------
# The registry and the options every driver takes.
# ---------------------------------------------------------------------------------------

# name -> (module, class). Each class checks its own --log-opt keys (validate) and is built by
# open(path, info, opts); the remote ones are imported only by the processes that use them.
DRIVERS = {
    "none": ("drivers.logger", "NoneLogger"),
    "json-file": ("drivers.logger", "JSONFileLogger"),
    "local": ("drivers.local", "LocalLogger"),
    "syslog": ("drivers.syslog", "SyslogLogger"),
    "journald": ("drivers.journald", "JournaldLogger"),
    "gelf": ("drivers.gelf", "GelfLogger"),
    "fluentd": ("drivers.fluentd", "FluentdLogger"),
}

# ring.go's defaultRingMaxSize: what a non-blocking driver may hold back, in bytes of lines.
DEFAULT_BUFFER_SIZE = 1000 * 1000
MODES = ("", "blocking", "non-blocking")

# Dual logging (loggerutils/cache): the local copy of a remote driver's lines.
CACHE_FILE = "container-cached.log"
CACHE_MAX_SIZE = 20 * 1024 * 1024
CACHE_MAX_FILE = 5

# Keys taken out before a driver's own check (logger.builtInLogOpts and the cache's). The
# cache's also pass from the daemon's --log-opt to a container of any driver.
CACHE_OPTIONS = {"cache-disabled", "cache-max-size", "cache-max-file", "cache-compress"}
BUILTIN_OPTIONS = {"mode", "max-buffer-size"} | CACHE_OPTIONS

# How long a finished container's monitor lets a remote driver deliver what is queued.
CLOSE_TIMEOUT = 2.0

LocalLog = collections.namedtuple("LocalLog", "path max_file format")
LocalLog.__doc__ = """Where `docker logs` reads a container's lines: a log file (the
json-file or local driver's, or a remote driver's cache), how many rotated files it keeps,
and the driver whose format it is in ("json-file" or "local")."""


def driver_class(name):
    """logger.GetLogDriver: the class registered as name."""
    if name not in DRIVERS:
        raise LogDriverError("logger: no log driver named '%s' is registered" % name)
    module, cls = DRIVERS[name]
    return getattr(importlib.import_module(module), cls)


def validate_log_opts(driver, opts):
    """logger.ValidateLogOpts: refuse an unknown driver or option before a container runs
    (at create, and for the daemon's --log-driver/--log-opt at boot)."""
    if driver == "none":
        return
    if opts.get("mode", "") not in MODES:
        raise LogDriverError("logger: logging mode not supported: %s" % opts["mode"])
    if "max-buffer-size" in opts:
        if opts.get("mode") != "non-blocking":
            raise LogDriverError("logger: max-buffer-size option is only supported with "
                                 "'mode=non-blocking'")
        _buffer_size(opts)
    if opts.get("cache-disabled"):
        try:
            parse_bool(opts["cache-disabled"])
        except LogDriverError:
            raise LogDriverError("invalid value for option cache-disabled: %s"
                                 % opts["cache-disabled"]) from None
    cls = driver_class(driver)
    _rotation(opts, "cache-", CACHE_MAX_SIZE, CACHE_MAX_FILE, True)
    cls.validate({key: value for key, value in opts.items() if key not in BUILTIN_OPTIONS})


def _buffer_size(opts):
    try:
        return parse_size(opts.get("max-buffer-size", str(DEFAULT_BUFFER_SIZE)), BINARY_UNITS)
    except LogDriverError as err:
        raise LogDriverError("error parsing option max-buffer-size: %s" % err) from None


def uses_cache(driver, opts):
    """cache.ShouldUseCache: a driver `docker logs` cannot read from keeps a local copy
    unless cache-disabled is set."""
    return driver_class(driver).remote and not parse_bool(opts.get("cache-disabled") or "false")


def readable_log(driver, opts, json_path, container_root):
    """The LocalLog `docker logs` reads for a container, or None when its driver keeps
    nothing readable (`none`, or a remote driver with its cache disabled). json_path is the
    json-file driver's log; the others live at fixed names in the container's directory."""
    if driver == "none":
        return None
    cls = driver_class(driver)
    if not cls.remote:
        path = json_path if driver == "json-file" else os.path.join(container_root, cls.PATH)
        return LocalLog(path, cls.max_file(opts), driver)
    if uses_cache(driver, opts):
        return LocalLog(os.path.join(container_root, CACHE_FILE),
                        _rotation(opts, "cache-", CACHE_MAX_SIZE, CACHE_MAX_FILE, True)[1], "json-file")
    return None


def new_logger(driver, path, opts=None, info=None):
    """logger.GetLogDriver(name)(info), wrapped as container.StartLogger wraps it.

    path is the local log: the json-file log, or a remote driver's cache. A remote driver
    dials here (raising LogDriverError or OSError when its destination cannot be had), then
    runs behind a Sender, beside its cache when dual logging is on.
    """
    opts = opts or {}
    validate_log_opts(driver, opts)
    info = info or LogInfo()
    cls = driver_class(driver)
    log = cls.open(path, info, opts)
    if not cls.remote:
        return log
    sender = Sender(log, opts.get("mode") != "non-blocking", _buffer_size(opts))
    if not uses_cache(driver, opts):
        return sender
    max_size, max_file, compress = _rotation(opts, "cache-", CACHE_MAX_SIZE, CACHE_MAX_FILE, True)
    return CachedLogger(sender, JSONFileLogger(path, max_size, max_file, None, compress))


class Sender(object):
    """The hand-off from the monitor's loop to a remote driver: a queue and one thread
    (dockerd's copier goroutine, and logger.RingLogger for mode=non-blocking).

    blocking: log() always queues; once max_bytes of lines wait, backlogged() is true and the
    monitor stops reading the container's output until the driver catches up (so at most one
    read more is queued). non-blocking: a line that does not fit is dropped, newest first, as
    the ring does; so is a line past a driver's own buffer_limit (fluentd-async).

    The thread starts with the first line: the monitor forks the container before that, and
    a fork is only safe while the process has one thread.
    """

    def __init__(self, driver, blocking, max_bytes):
        self.driver = driver
        self.blocking = blocking and not driver.buffer_limit
        self.max_bytes = max_bytes
        self.dropped = 0
        self._queue = collections.deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread = None
        self._failing = False

    def log(self, message):
        size = len(message.line)
        with self._cond:
            if self._queue and not self.blocking and self._full(size):
                self.dropped += 1
                return
            self._queue.append(message)
            self._bytes += size
            self._cond.notify()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="log-sender", daemon=True)
            self._thread.start()

    def log_lines(self, lines):
        for message in lines.messages():  # one by one: non-blocking mode may drop any of them
            self.log(message)

    def _full(self, size):
        limit = self.driver.buffer_limit
        return self._bytes + size > self.max_bytes or bool(limit and len(self._queue) >= limit)

    def backlogged(self):
        return self.blocking and self._bytes >= self.max_bytes

    def _run(self):
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                message = self._queue[0]
            self._deliver(message)
            with self._cond:
                self._queue.popleft()
                self._bytes -= len(message.line)

    def _deliver(self, message):
        """One line to the driver. A failure is noted on stderr (the monitor's log) once
        until delivery works again, and the line is lost, as dockerd logs and goes on."""
        try:
            self.driver.log(message)
        except Exception as err:  # whatever goes wrong, the thread must go on draining
            if not self._failing:
                self._failing = True
                note("failed to log to %s: %s" % (self.driver.name, err))
            return
        self._failing = False

    def close(self, timeout=CLOSE_TIMEOUT):
        """Let the thread deliver what is queued, for timeout seconds at most; a destination
        that is still stalled then is abandoned with the rest (the monitor is exiting)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                note("%s: %d lines not delivered at exit" % (self.driver.name, len(self._queue)))
                return
        self.driver.close()


def note(text):
    """A line for whoever reads this process's stderr (a monitor's is its monitor.log)."""
    try:
        os.write(2, (text + "\n").encode(errors="replace"))
    except OSError:
        pass


class CachedLogger(object):
    """cache.loggerWithCache: each line to the remote driver, then to the local cache."""

    def __init__(self, remote, cache):
        self.remote = remote
        self.cache = cache

    def log(self, message):
        self.remote.log(message)
        self.cache.log(message)

    def log_lines(self, lines):
        self.remote.log_lines(lines)
        self.cache.log_lines(lines)

    def backlogged(self):
        return self.remote.backlogged()

    def close(self):
        self.cache.close()
        self.remote.close()


# ---------------------------------------------------------------------------------------
# What the remote drivers share: addresses and connections in Go's terms.
# ---------------------------------------------------------------------------------------

DIAL_TIMEOUT = 10.0


def split_host_port(hostport):
    """net.SplitHostPort: "host:port" or "[v6]:port" -> (host, port), with Go's errors."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise LogDriverError("address %s: missing ']' in address" % hostport)
        if not hostport[end + 1:].startswith(":"):
            raise LogDriverError("address %s: missing port in address" % hostport)
        return hostport[1:end], hostport[end + 2:]
    if ":" not in hostport:
        raise LogDriverError("address %s: missing port in address" % hostport)
    host, port = hostport.rsplit(":", 1)
    if ":" in host:
        raise LogDriverError("address %s: too many colons in address" % hostport)
    return host, port


def dial(network, address, timeout=DIAL_TIMEOUT):
    """net.Dial for tcp, udp, unix and unixgram: a connected socket, or LogDriverError with
    Go's text ("dial tcp 127.0.0.1:514: connect: connection refused")."""
    try:
        if network in ("unix", "unixgram"):
            kind = socket.SOCK_STREAM if network == "unix" else socket.SOCK_DGRAM
            sock = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
            target = address
        else:
            host, port = split_host_port(address)
            kind = socket.SOCK_STREAM if network == "tcp" else socket.SOCK_DGRAM
            family, _, _, _, target = socket.getaddrinfo(host or None, int(port), 0, kind)[0]
            sock = socket.socket(family, kind | socket.SOCK_CLOEXEC)
    except (OSError, ValueError) as err:
        raise LogDriverError("dial %s %s: %s" % (network, address, _go_error(err))) from None
    try:
        sock.settimeout(timeout)
        sock.connect(target)
    except OSError as err:
        sock.close()
        raise LogDriverError("dial %s %s: connect: %s" % (network, address, _go_error(err))) from None
    sock.settimeout(None)
    return sock


def _go_error(err):
    """An OSError as Go's syscall errors read: "connection refused"."""
    if isinstance(err, OSError) and err.errno and not isinstance(err, socket.gaierror):
        return os.strerror(err.errno).lower()
    return str(err)


# ---------------------------------------------------------------------------------------
# Reading back.
# ---------------------------------------------------------------------------------------

def log_files(path, max_file=1):
    """The json-file log and its rotated files (gzipped or not) that exist, oldest first."""
    names = []
    for index in range(max_file - 1, 0, -1):
        for name in ("%s.%d" % (path, index), "%s.%d.gz" % (path, index)):
            if os.path.exists(name):
                names.append(name)
    return names + ([path] if os.path.exists(path) else [])


def read_log(path, max_file=1, since=None, until=None, tail=-1, log_format="json-file"):
    """The records of a json-file (or local) log with its rotated files, oldest first: the
    reading half of `docker logs` (since/until in nanoseconds, tail = the last N records).

    A torn last record (the writer killed mid-record) is skipped, not an error.
    """
    split_records = driver_class(log_format).split_records
    entries = []
    for name in log_files(path, max_file):
        with _open_log(name) as f:
            records, _ = split_records(f.read())
        for entry in records:
            if entry is None:
                continue
            if since is not None and entry.timestamp < since:
                continue
            if until is not None and entry.timestamp > until:
                continue
            entries.append(entry)
    return entries[max(len(entries) - tail, 0):] if tail >= 0 else entries


def _open_log(name):
    if name.endswith(".gz"):
        import gzip  # only a reader of compressed rotated files needs it
        return gzip.open(name, "rb")
    return open(name, "rb")


def decode_record(raw):
    """One json-file line as a LogEntry, or None for a torn or foreign line."""
    try:
        record = json.loads(raw)
        time_text = record["time"]
        return LogEntry(record.get("log", "").encode("utf-8", "surrogatepass"),
                        record.get("stream", ""), time_text, parse_time(time_text))
    except (ValueError, KeyError, TypeError):
        return None
