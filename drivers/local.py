"""The local log driver (daemon/logger/local): dockerd's compact file format.

The container's lines go to <container dir>/local-logs/container.log, each record a
protocol-buffers LogEntry between two copies of its length (4 bytes, big endian), so a
reader can walk the file both ways:

    message LogEntry {
        string source = 1;     // "stdout" or "stderr"
        int64 time_nano = 2;   // nanoseconds since the epoch
        bytes line = 3;        // the line without its newline
        bool partial = 4;      // the copier cut it
    }

Fields at their default value are left out, as protobuf does. The file rotates like
json-file's, with the local driver's defaults: max-size 20 MiB, max-file 5 and compressed
rotated files (compress=false turns that off). `docker logs` reads it back with
split_records. The driver takes max-size, max-file and compress, nothing else.
"""
import os
import struct

from drivers import logger
from drivers.logger import LogDriverError, LogEntry

NAME = "local"
OPTIONS = {"max-size", "max-file", "compress"}
PATH = os.path.join("local-logs", "container.log")
DEFAULT_MAX_SIZE = 20 * 1024 * 1024
DEFAULT_MAX_FILE = 5
_LENGTH = struct.Struct(">I")

# The LogEntry field numbers (wire types: 0 varint, 2 length-delimited).
SOURCE, TIME_NANO, LINE, PARTIAL = 1, 2, 3, 4


def config(opts):
    """local.newConfig: (max_size, max_file, compress), with the local driver's checks."""
    max_size, max_file, compress = DEFAULT_MAX_SIZE, DEFAULT_MAX_FILE, True
    if "max-size" in opts:
        try:
            max_size = logger.parse_size(opts["max-size"])
        except LogDriverError as err:
            raise LogDriverError("invalid value for max-size: %s: %s" % (opts["max-size"], err)) from None
    if "max-file" in opts:
        try:
            max_file = int(opts["max-file"])
        except ValueError:
            raise LogDriverError('invalid value for max-file: %s: strconv.Atoi: parsing "%s": '
                                 "invalid syntax" % (opts["max-file"], opts["max-file"])) from None
    if "compress" in opts:
        compress = logger.parse_bool(opts["compress"])
    if max_size < 0:
        raise LogDriverError("max-size must not be negative")
    if max_file < 0:
        raise LogDriverError("max-file must not be negative")
    if compress and max_file <= 1:
        raise LogDriverError("compression cannot be enabled when max file count is 1")
    return max_size, max_file, compress


class LocalLogger(object):
    """local.driver: LogEntry records in a logger.LogFile."""
    name = NAME
    remote = False
    PATH = PATH

    @staticmethod
    def validate(opts):
        logger.unknown_options(opts, OPTIONS, "unknown log opt '%s' for log driver local")
        config(opts)

    @staticmethod
    def max_file(opts):
        return config(opts)[1]

    @classmethod
    def open(cls, path, info, opts):
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        return cls(logger.LogFile(path, *config(opts)))

    def __init__(self, log_file):
        self.file = log_file

    def log(self, message):
        self.file.write(frame(message))

    def log_lines(self, lines):
        for message in lines.messages():
            self.log(message)

    def backlogged(self):
        return False

    def close(self):
        self.file.close()

    @staticmethod
    def split_records(data):
        """The complete records at the start of data as LogEntries, and the bytes they took."""
        entries, position = [], 0
        while position + _LENGTH.size <= len(data):
            size, = _LENGTH.unpack_from(data, position)
            end = position + _LENGTH.size + size
            if end + _LENGTH.size > len(data):
                break
            entries.append(decode_entry(data[position + _LENGTH.size:end]))
            position = end + _LENGTH.size
        return entries, position


def frame(message):
    """One record: length, LogEntry, length."""
    entry = encode_entry(message)
    length = _LENGTH.pack(len(entry))
    return length + entry + length


def encode_entry(message):
    fields = [_key(SOURCE, 2) + _varint(len(message.source)) + message.source.encode(),
              _key(TIME_NANO, 0) + _varint(message.timestamp)]
    if message.line:
        fields.append(_key(LINE, 2) + _varint(len(message.line)) + message.line)
    if message.partial:
        fields.append(_key(PARTIAL, 0) + b"\x01")
    return b"".join(fields)


def decode_entry(data):
    """A LogEntry record as logger.LogEntry (a complete line gets its newline back, as
    local's reader does), or None when it does not parse."""
    fields, position = {}, 0
    try:
        while position < len(data):
            key, position = _read_varint(data, position)
            number, wire_type = key >> 3, key & 7
            if wire_type == 0:
                fields[number], position = _read_varint(data, position)
            elif wire_type == 2:
                size, position = _read_varint(data, position)
                fields[number], position = data[position:position + size], position + size
            else:
                return None
    except IndexError:
        return None
    timestamp = fields.get(TIME_NANO, 0)
    line = fields.get(LINE, b"") + (b"" if fields.get(PARTIAL) else b"\n")
    return LogEntry(line, fields.get(SOURCE, b"").decode(errors="replace"),
                    logger.format_time(timestamp), timestamp)


def _key(number, wire_type):
    return _varint(number << 3 | wire_type)


def _varint(number):
    out = bytearray()
    while True:
        byte, number = number & 0x7f, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _read_varint(data, position):
    number, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        number |= (byte & 0x7f) << shift
        shift += 7
        if not byte & 0x80:
            return number, position
