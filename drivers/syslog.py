"""The syslog log driver (daemon/logger/syslog, over the srslog client dockerd vendors).

Each line becomes one syslog message, at severity info (6) for stdout and err (3) for
stderr, in the facility of `syslog-facility` (default daemon), so <30> and <27> by default.
Empty lines are not sent. Where it goes, `syslog-address`:

    (unset)             the local syslog: /dev/log, /var/run/syslog or /var/run/log, as a
                        datagram socket, else a stream one ("Unix syslog delivery error")
    unix:///path        a unix stream socket; unixgram:///path a unix datagram socket
    udp://host[:514]    tcp://host[:514]
    tcp+tls://host[:514]   TLS, with syslog-tls-ca-cert, syslog-tls-cert, syslog-tls-key and
                        syslog-tls-skip-verify (present at all: the server is not verified)

What it looks like, `syslog-format` (the tag is the `tag` template, default {{.ID}}; the pid
is the logging process's, here the container's monitor; the time is the line's, local):

    (unset)        <30>Sep 10 10:00:00 tag[pid]: line            srslog's UnixFormatter
    rfc3164        <30>Sep 10 10:00:00 host tag[pid]: line
    rfc5424        <30>1 2015-09-10T10:00:00Z host tag pid tag - line
    rfc5424micro   <30>1 2015-09-10T10:00:00.123456Z host tag pid tag - line

Every message ends in a newline (srslog adds it); over tcp+tls the RFC 5424 formats are
octet-counted instead (RFC 5425: "<length> <message>"). The driver dials at start, so a
start fails when the destination cannot be reached (dockerd's behaviour; a udp destination
always can be). A write that fails is tried once more on a new connection, then the line is
lost.
"""
import os
import socket
import ssl
import time
import urllib.parse

from drivers import logger
from drivers.logger import LogDriverError

NAME = "syslog"
OPTIONS = {"env", "env-regex", "labels", "labels-regex", "syslog-address", "syslog-facility",
           "syslog-tls-ca-cert", "syslog-tls-cert", "syslog-tls-key", "syslog-tls-skip-verify",
           "tag", "syslog-format"}
SECURE_PROTO = "tcp+tls"
TRANSPORTS = ("tcp", "udp", "unix", "unixgram", SECURE_PROTO)
DEFAULT_PORT = "514"
LOCAL_SOCKETS = ("/dev/log", "/var/run/syslog", "/var/run/log")
FORMATS = ("", "rfc3164", "rfc5424", "rfc5424micro")

FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
              "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
              "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20,
              "local5": 21, "local6": 22, "local7": 23}
SEVERITY = {"stdout": 6, "stderr": 3}


def parse_address(address):
    """syslog.parseAddress: (network, address), ("", "") for the local syslog; a unix path
    must exist already (checked at create, like dockerd)."""
    if not address:
        return "", ""
    scheme = address.split("://", 1)[0] if "://" in address else ""
    if scheme not in TRANSPORTS:
        raise LogDriverError("syslog-address should be in form proto://address, got %s" % address)
    url = urllib.parse.urlsplit(address)
    if scheme in ("unix", "unixgram"):
        try:
            os.stat(url.path)
        except OSError as err:
            raise LogDriverError("stat %s: %s" % (url.path, os.strerror(err.errno).lower())) from None
        return scheme, url.path
    host = url.netloc
    try:
        logger.split_host_port(host)
    except LogDriverError as err:
        if "missing port" not in str(err):
            raise
        host += ":" + DEFAULT_PORT
    return scheme, host


def parse_facility(facility):
    """syslog.parseFacility: a name or 0-23; the facility's bits of the priority."""
    if not facility:
        return FACILITIES["daemon"] << 3
    if facility in FACILITIES:
        return FACILITIES[facility] << 3
    if facility.isdigit() and 0 <= int(facility) <= 23:
        return int(facility) << 3
    raise LogDriverError("invalid syslog facility")


def tls_context(opts):
    """tlsconfig.Client from the syslog-tls-* options."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if "syslog-tls-skip-verify" in opts:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif opts.get("syslog-tls-ca-cert"):
        context.load_verify_locations(opts["syslog-tls-ca-cert"])
    else:
        context.load_default_certs()
    if opts.get("syslog-tls-cert") or opts.get("syslog-tls-key"):
        context.load_cert_chain(opts.get("syslog-tls-cert"), opts.get("syslog-tls-key"))
    return context


class SyslogLogger(logger.RemoteLogger):
    """syslog.syslogger: one connection, (re)dialled as srslog does."""
    name = NAME

    @staticmethod
    def validate(opts):
        logger.unknown_options(opts, OPTIONS, "unknown log opt '%s' for syslog log driver")
        parse_address(opts.get("syslog-address", ""))
        parse_facility(opts.get("syslog-facility", ""))
        if opts.get("syslog-format", "") not in FORMATS:
            raise LogDriverError("Invalid syslog format")

    def __init__(self, info, opts):
        self.tag = info.tag(opts)
        self.network, self.address = parse_address(opts.get("syslog-address", ""))
        self.facility = parse_facility(opts.get("syslog-facility", ""))
        self.format = opts.get("syslog-format", "")
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        try:
            self._tls = tls_context(opts) if self.network == SECURE_PROTO else None
        except OSError as err:  # ssl.SSLError is one
            raise LogDriverError("syslog TLS: %s" % err) from None
        self._sock = self._dial()

    def _dial(self):
        if not self.network:
            return _dial_local()
        if self.network != SECURE_PROTO:
            return logger.dial(self.network, self.address)
        sock = logger.dial("tcp", self.address)
        try:
            return self._tls.wrap_socket(sock, server_hostname=logger.split_host_port(self.address)[0])
        except OSError as err:
            sock.close()
            raise LogDriverError(str(err)) from None

    def log(self, message):
        if not message.line:
            return
        data = self.frame(message)
        try:
            self._sock.sendall(data)
        except OSError:  # srslog: one more try on a new connection
            self._sock.close()
            self._sock = self._dial()
            self._sock.sendall(data)

    def frame(self, message):
        """The bytes of one message on the wire: formatted, newline-terminated, and
        octet-counted for RFC 5424 over TLS."""
        priority = self.facility | SEVERITY[message.source]
        seconds = message.timestamp // 10 ** 9
        if self.format.startswith("rfc5424"):
            stamp = _rfc3339_local(message.timestamp, self.format == "rfc5424micro")
            head = "<%d>1 %s %s %s %d %s - " % (priority, stamp, self.hostname, self.tag,
                                                self.pid, self.tag)
        else:
            stamp = _stamp(seconds)
            host = self.hostname + " " if self.format == "rfc3164" else ""
            head = "<%d>%s %s%s[%d]: " % (priority, stamp, host, self.tag, self.pid)
        data = head.encode() + message.line + b"\n"
        if self.network == SECURE_PROTO and self.format.startswith("rfc5424"):
            data = b"%d " % len(data) + data
        return data

    def close(self):
        self._sock.close()


def _dial_local():
    """srslog's unixSyslog: the first local syslog socket that answers, datagram first."""
    for network in ("unixgram", "unix"):
        for path in LOCAL_SOCKETS:
            try:
                return logger.dial(network, path)
            except LogDriverError:
                continue
    raise LogDriverError("Unix syslog delivery error")


def _stamp(seconds):
    """Go's time.Stamp in local time: "Jan _2 15:04:05" (the day padded with a space)."""
    local = time.localtime(seconds)
    return time.strftime("%b ", local) + "%2d" % local.tm_mday + time.strftime(" %H:%M:%S", local)


def _rfc3339_local(timestamp_ns, micro):
    """Go's time.RFC3339 (or with .000000 microseconds) in local time, "Z07:00" zone."""
    seconds, nanos = divmod(timestamp_ns, 10 ** 9)
    local = time.localtime(seconds)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", local)
    if micro:
        text += ".%06d" % (nanos // 1000)
    offset = local.tm_gmtoff
    if offset == 0:
        return text + "Z"
    sign = "+" if offset > 0 else "-"
    return text + "%s%02d:%02d" % (sign, abs(offset) // 3600, abs(offset) % 3600 // 60)
