"""Log drivers: where a container's stdout and stderr lines go (Docker's daemon/logger).

Docker 1.8.2 introduced pluggable log drivers; the default, json-file
(daemon/logger/jsonfilelog), writes one JSON object per line to
/var/lib/docker/containers/<id>/<id>-json.log:

    {"log":"hi\\n","stream":"stdout","time":"2015-09-10T10:00:00.123456789Z"}

and rotates it by size (--log-opt max-size, max-file). `none` keeps nothing. The copier
(daemon/logger/copier.go) cuts the container's byte streams into those lines. In pydockerd the
container's monitor (drivers/monitor.py) runs the copier and the driver, so logs keep being
written while the daemon is down; `docker logs` reads the files back with read_json_log.
"""
import collections
import json
import os
import re
import time

# copier.go: a line longer than this is logged in pieces, each marked partial.
COPIER_BUFFER_SIZE = 16 * 1024

# go-units decimal sizes, as units.FromHumanSize parses max-size ("10m" is 10,000,000 bytes).
_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_DECIMAL_UNITS = {"": 1, "k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9, "t": 10 ** 12, "p": 10 ** 15}

# ffjsonWriteJSONBytesAsString escapes these besides '"' and '\\': control characters, the
# HTML-sensitive <, > and &, and the JavaScript line separators; invalid UTF-8 becomes \ufffd.
_NEEDS_ESCAPE = re.compile("[\x00-\x1f\"\\\\<>&\u2028\u2029\udc80-\udcff]")
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r"}

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


class Copier(object):
    """logger.Copier for one stream: bytes in, complete-line Messages out.

    feed() returns the messages for every newline seen; a line that fills the buffer without
    a newline is logged as a partial message, and so is whatever is left at close().
    """

    def __init__(self, source, buffer_size=COPIER_BUFFER_SIZE):
        self.source = source
        self._buffer_size = buffer_size
        self._pending = b""

    def feed(self, data):
        self._pending += data
        messages = []
        while True:
            newline = self._pending.find(b"\n")
            if 0 <= newline < self._buffer_size:
                messages.append(self._message(self._pending[:newline], False))
                self._pending = self._pending[newline + 1:]
            elif len(self._pending) >= self._buffer_size:
                messages.append(self._message(self._pending[:self._buffer_size], True))
                self._pending = self._pending[self._buffer_size:]
            else:
                return messages

    def close(self):
        """End of stream: the unterminated rest, if any, as a partial message."""
        rest, self._pending = self._pending, b""
        return [self._message(rest, True)] if rest else []

    def _message(self, line, partial):
        return Message(line, self.source, time.time_ns(), partial)


class NoneLogger(object):
    """The `none` driver: the container's output is only for attached clients."""
    name = "none"

    def log(self, message):
        pass

    def close(self):
        pass


class JSONFileLogger(object):
    """jsonfilelog.JSONFileLogger: one JSON object per line, rotated by size.

    max_size is in bytes (-1: unlimited). Before each write, a file already at max_size is
    rotated: <path>.N-1 becomes <path>.N, ..., <path> becomes <path>.1, keeping max_file
    files in all; with max_file 1 the file is simply truncated. attrs (from the labels and
    env options) are added to every record.
    """
    name = "json-file"

    def __init__(self, path, max_size=-1, max_file=1, attrs=None):
        self.path = path
        self.max_size = max_size
        self.max_file = max_file
        self._attrs = json.dumps(attrs, separators=(",", ":"), sort_keys=True) if attrs else ""
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(self._fd).st_size

    def log(self, message):
        """Write one record; an OSError (a full disk) is the caller's to report."""
        record = marshal_message(message, self._attrs)
        if self.max_size != -1 and self._size >= self.max_size:
            self._rotate()
        os.write(self._fd, record)
        self._size += len(record)

    def _rotate(self):
        os.close(self._fd)
        for index in range(self.max_file - 1, 1, -1):
            older = "%s.%d" % (self.path, index - 1)
            if os.path.exists(older):
                os.replace(older, "%s.%d" % (self.path, index))
        if self.max_file > 1:
            os.replace(self.path, self.path + ".1")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC |
                           os.O_CLOEXEC, 0o600)
        self._size = 0

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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


def encode_log_text(data):
    """ffjsonWriteJSONBytesAsString: bytes as a JSON string the way dockerd escapes them."""
    text = data.decode("utf-8", "surrogateescape")
    return '"' + _NEEDS_ESCAPE.sub(_escape_character, text) + '"'


def _escape_character(match):
    char = match.group()
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if "\udc80" <= char <= "\udcff":
        return "\\ufffd"
    return "\\u%04x" % ord(char)


def format_time(timestamp_ns):
    """Go's time.RFC3339Nano in UTC: nanoseconds with trailing zeros trimmed, then Z."""
    seconds, nanos = divmod(timestamp_ns, 10 ** 9)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if nanos:
        text += ("." + "%09d" % nanos).rstrip("0")
    return text + "Z"


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


def parse_size(text):
    """units.FromHumanSize: "10m" -> 10000000 (decimal units, as json-file's max-size)."""
    match = _SIZE.match(text.strip())
    if not match:
        raise LogDriverError("invalid size: '%s'" % text)
    return int(float(match.group(1)) * _DECIMAL_UNITS[(match.group(2) or "").lower()])


# The drivers and the --log-opt keys each accepts (logger.RegisterLogOptValidator).
LOG_OPTIONS = {
    "json-file": {"max-size", "max-file", "labels", "env"},
    "none": set(),
}


def validate_log_opts(driver, opts):
    """logger.ValidateLogOpts: refuse an unknown driver or option before a container runs."""
    if driver not in LOG_OPTIONS:
        raise LogDriverError("logger: no log driver named '%s' is registered" % driver)
    for key in opts:
        if key not in LOG_OPTIONS[driver]:
            raise LogDriverError("unknown log opt '%s' for %s log driver" % (key, driver))
    if driver == "json-file":
        _json_file_limits(opts)


def _json_file_limits(opts):
    max_size = parse_size(opts["max-size"]) if "max-size" in opts else -1
    if "max-size" in opts and max_size <= 0:
        raise LogDriverError("max-size must be a positive number")
    try:
        max_file = int(opts.get("max-file", "1"))
    except ValueError:
        raise LogDriverError("invalid max-file: '%s'" % opts["max-file"]) from None
    if max_file < 1:
        raise LogDriverError("max-file cannot be less than 1")
    return max_size, max_file


def new_logger(driver, path, opts=None, attrs=None):
    """logger.GetLogDriver(name)(ctx): a ready driver; path is the json-file log's path."""
    opts = opts or {}
    validate_log_opts(driver, opts)
    if driver == "none":
        return NoneLogger()
    max_size, max_file = _json_file_limits(opts)
    return JSONFileLogger(path, max_size, max_file, attrs)


def log_files(path, max_file=1):
    """The json-file log and its rotated files that exist, oldest first."""
    rotated = ["%s.%d" % (path, index) for index in range(max_file - 1, 0, -1)]
    return [p for p in rotated + [path] if os.path.exists(p)]


def read_json_log(path, max_file=1, since=None, until=None, tail=-1):
    """The records of a json-file log (with its rotated files), oldest first: the reading
    half of `docker logs` (since/until in nanoseconds, tail = the last N records).

    A torn last line (the writer killed mid-record) is skipped, not an error.
    """
    entries = []
    for name in log_files(path, max_file):
        with open(name, "rb") as f:
            for raw in f:
                entry = decode_record(raw)
                if entry is None:
                    continue
                if since is not None and entry.timestamp < since:
                    continue
                if until is not None and entry.timestamp > until:
                    continue
                entries.append(entry)
    return entries[max(len(entries) - tail, 0):] if tail >= 0 else entries


def decode_record(raw):
    """One json-file line as a LogEntry, or None for a torn or foreign line (also how
    `docker logs -f` reads the lines that arrive after the first read)."""
    try:
        record = json.loads(raw)
        time_text = record["time"]
        return LogEntry(record.get("log", "").encode("utf-8", "surrogatepass"),
                        record.get("stream", ""), time_text, parse_time(time_text))
    except (ValueError, KeyError, TypeError):
        return None
