"""The API's HTTP/1.1 server: strict requests, bounded connections (Go's net/http server).

dockerd serves its API with Go's net/http; this module is that server's behaviour in Python,
so that every client (the docker CLI, docker-py and docker-compose through requests, curl)
sees what it would see from dockerd, and no client can pin unbounded threads or memory.

Connection lifecycle
--------------------
    accepted --> idle --(first byte)--> reading the head --> handling --> idle again
                   |                         |                   |
                   +-- idle_timeout: closed  +-- read_header_    +-- closed when the request
                                                 timeout: closed     or the handler says so

- **Accept.** One selector thread (`serve_forever`) owns the listening socket. It accepts while
  fewer than `max_connections` are open; at the cap it stops watching the listener, so new
  clients wait in the kernel's listen backlog until a connection closes. The cap defaults to
  half of RLIMIT_NOFILE (`raise_nofile_limit` lifts the soft limit to the hard one at boot, as
  dockerd's systemd unit does with LimitNOFILE), leaving the other half to containers, logs and
  monitors.
- **Idle.** A connection waiting for a request (a new one, or a keep-alive one after its answer)
  costs no thread: it is registered in the selector. If no byte arrives for `idle_timeout`
  seconds it is closed (Go's IdleTimeout; Go's default has none, so the default here is
  generous: 5 minutes).
- **Reading the head.** When a byte arrives the selector hands the connection to the worker
  pool. The request line and headers must be complete within `read_header_timeout` seconds
  (moby later set net/http's ReadHeaderTimeout for this slow-loris case), or the connection
  is closed without an answer, as Go does.
- **Parsing** is net/http's, strict: a request Go's server refuses gets Go's answer and the
  connection is closed. `HTTP/1.1 400 Bad Request` (plain text, `Connection: close`) for a
  malformed request line, header line, Content-Length or Host; with Go's public reason when
  Go gives one (`400 Bad Request: missing required Host header`); `431 Request Header Fields
  Too Large` past `max_header_bytes` (Go's DefaultMaxHeaderBytes, 1 MB, plus its 4 KB of
  slack); `501 Unsupported transfer encoding` for any Transfer-Encoding but `chunked`; `505`
  for an HTTP major version other than 1. Stricter than Go, as RFC 9112 permits and the
  request-smuggling advice asks: bare LF line ends, two different Content-Lengths and
  Content-Length beside `Transfer-Encoding: chunked` are all 400.
- **HTTP/1.0** as Go: no Host needed, Transfer-Encoding ignored, answered with an `HTTP/1.0`
  status line, kept alive only if it asked (`Connection: keep-alive`) and the answer has a
  length; a streamed answer is sent unchunked and ends with the connection.
- **Handling.** The request runs in a pool thread (`WorkerPool`): threads start on demand up
  to `max_workers` (thousands) and end after `worker_idle` seconds without work, so the
  threads alive follow the requests in flight, not the connections open. A stream (`logs -f`,
  `events`, `stats`, `wait`, pull progress) and a hijacked connection (`attach`, `exec`,
  `Upgrade: tcp`) keeps its thread for as long as its client wants. A request body is read
  through `LimitedReader` or `ChunkedReader`; a malformed body (a chunk size of `-2`) is the
  handler's 400, and no body byte waits longer than `idle_timeout`.
- **After the answer** the rest of an unread body is drained (up to 64 MB) and the connection
  goes back to the selector, or straight to its next request when the client pipelined one.
- **Shutdown.** `shutdown()` stops the selector (idle connections are no longer served);
  requests in flight finish (`busy` counts them for the daemon's grace period) and their
  connections close; `close_connections()` cuts what is left, `server_close()` the listener.
"""
import collections
import email.utils
import errno
import http
import logging
import os
import re
import resource
import select
import selectors
import socket
import ssl
import threading
import time

from drivers import errdefs

log = logging.getLogger("pydockerd.httpserver")

# net/http's DefaultMaxHeaderBytes; Go reads up to 4 KB beyond it before it answers 431.
DEFAULT_MAX_HEADER_BYTES = 1 << 20
HEADER_SLACK = 4096
IDLE_TIMEOUT = 300.0
READ_HEADER_TIMEOUT = 60.0
# A pool thread with nothing to do for this long ends.
WORKER_IDLE = 10.0
# The active-request cap: streams and hijacked connections hold their thread.
MAX_WORKERS = 4096
# Pool threads started at once; beyond them one more each time a request waited this long.
POOL_CORE = 16
POOL_STALL = 0.02
# net/http's chunked reader refuses a chunk-size line longer than this (maxLineLength).
MAX_CHUNK_LINE = 4096
# The most one receive asks for: about what a Unix socket's buffer holds.
RECEIVE_SIZE = 1 << 18
# What the server reads of a body its handler left unread before it reuses the connection.
MAX_DRAIN = 64 << 20
# How long a refused connection is read from before it closes (net/http rstAvoidanceDelay).
REFUSE_LINGER = 0.5
CHUNKED = -1

# RFC 9110 token characters (header names, methods, chunk extension names).
TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# A field value: no control character but HTAB (httpguts.ValidHeaderFieldValue).
FIELD_VALUE = re.compile(rb"^[^\x00-\x08\x0a-\x1f\x7f]*$")
# httpguts.ValidHostHeader's bytes.
HOST = re.compile(r"^[A-Za-z0-9!$%&'()*+,\-.:;=\[\]_~@]*$")
CHUNK_EXTENSION = re.compile(
    rb'^(?:[ \t]*;[ \t]*[!#$%&\'*+\-.^_`|~0-9A-Za-z]+'
    rb'(?:[ \t]*=[ \t]*(?:[!#$%&\'*+\-.^_`|~0-9A-Za-z]+|"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\.)*"))?)*$')
HEX = re.compile(rb"^[0-9A-Fa-f]{1,16}$")
# The request target: origin-form or absolute-form, no control character or space.
TARGET = re.compile(r"^(?:/|https?://)[^\x00-\x20\x7f]*$")


# -- protocol errors: what the server answers itself, before any handler ----------------------

ERROR_HEADERS = b"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"


class ProtocolError(Exception):
    """A request net/http refuses: `BadRequest` says only "400 Bad Request" on the wire."""

    status = 400

    def response(self):
        public = b"%d %s" % (self.status, http.HTTPStatus(self.status).phrase.encode())
        return b"HTTP/1.1 " + public + ERROR_HEADERS + public


class BadRequest(ProtocolError):
    """A malformed request; its text goes to the debug log only, as in Go."""


class StatusError(ProtocolError):
    """Go's statusError: the reason is public (`400 Bad Request: missing required Host header`)."""

    def __init__(self, status, text):
        super().__init__(text)
        self.status = status

    def response(self):
        public = b"%d %s: %s" % (self.status, http.HTTPStatus(self.status).phrase.encode(),
                                 str(self).encode())
        return b"HTTP/1.1 " + public + ERROR_HEADERS + public


class HeaderTooLarge(ProtocolError):
    status = 431


class UnsupportedTransferEncoding(ProtocolError):
    status = 501

    def response(self):
        return b"HTTP/1.1 501 Not Implemented" + ERROR_HEADERS + b"Unsupported transfer encoding"


class ExpectationFailed(ProtocolError):
    status = 417


# -- reading ----------------------------------------------------------------------------------

class ConnReader(object):
    """A connection's read side: a buffer over the socket, with the server's time limits.

    `deadline` (monotonic) bounds everything still to read (the request head); `idle` bounds
    each wait for a byte (a body). The socket stays blocking without a timeout between reads,
    so an answer to a slow reader never times out (Go's WriteTimeout is 0 in dockerd).
    """

    def __init__(self, sock):
        self.sock = sock
        # Received and not yet read: self.buffer[self.start:]. Bytes plus an offset, so a
        # body read takes its slice with one copy (a bytearray cost three per chunk).
        self.buffer = b""
        self.start = 0
        self.deadline = None
        self.idle = None

    def pending(self):
        """Bytes already received and not yet read (a pipelined request, TLS records)."""
        tls_pending = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
        return len(self.buffer) - self.start + tls_pending

    def _timed(self, receive, into):
        """receive(into) within the read limits; the socket is blocking again afterwards."""
        wait = self.idle
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out")
            wait = left if wait is None else min(wait, left)
        self.sock.settimeout(wait)
        try:
            return receive(into)
        finally:
            self.sock.settimeout(None)

    def readline(self, limit):
        """One line up to its LF, at most `limit` bytes; b"" at EOF before any byte."""
        search = self.start
        while True:
            end = self.buffer.find(b"\n", search, self.start + limit)
            if end >= 0:
                line = self.buffer[self.start:end + 1]
                self.start = end + 1
                return line
            if len(self.buffer) - self.start >= limit:
                raise HeaderTooLarge()
            search = len(self.buffer) - self.start
            # A large receive: a chunked body's next framing line comes with many chunks.
            data = self._timed(self.sock.recv, RECEIVE_SIZE)
            if not data:
                if self.start < len(self.buffer):
                    raise EOFError("unexpected EOF")
                return b""
            self.buffer = self.buffer[self.start:] + data
            self.start = 0

    def read(self, size):
        """Up to `size` (>0) bytes: what is buffered, else one receive; b"" at EOF."""
        if self.start < len(self.buffer):
            data = self.buffer[self.start:self.start + size]
            self.start += len(data)
            return data
        return self._timed(self.sock.recv, min(size, RECEIVE_SIZE))

    def readinto(self, view):
        """read() into a writable buffer: buffered bytes first, else a receive straight into it."""
        if self.start < len(self.buffer):
            count = min(len(view), len(self.buffer) - self.start)
            view[:count] = memoryview(self.buffer)[self.start:self.start + count]
            self.start += count
            return count
        return self._timed(self.sock.recv_into, view)


class Header(object):
    """Request headers (Go's http.Header): case-insensitive names, every value kept."""

    def __init__(self):
        self.fields = {}

    def add(self, name, value):
        self.fields.setdefault(name.lower(), []).append(value)

    def values(self, name):
        return self.fields.get(name.lower(), [])

    def get(self, name, default=None):
        """The first value, as Header.Get."""
        values = self.values(name)
        return values[0] if values else default

    def has_token(self, name, token):
        """Whether a comma-separated header (Connection) lists `token`."""
        return any(item.strip().lower() == token
                   for value in self.values(name) for item in value.split(","))


def read_field_lines(reader, budget):
    """Header (or trailer) lines until the empty line: [(name, value)], each CRLF-ended.

    `budget` is what the whole section may take; past it, 431.
    """
    fields = []
    while True:
        line = reader.readline(budget + 1)
        budget -= len(line)
        if budget < 0:
            raise HeaderTooLarge()
        if not line:
            raise EOFError("unexpected EOF")
        if not line.endswith(b"\r\n"):
            raise BadRequest("bare LF line ending")
        line = line[:-2]
        if not line:
            return fields, budget
        name, colon, value = line.partition(b":")
        if not colon or not TOKEN.match(name):
            raise BadRequest("malformed MIME header line: %r" % line)  # also obs-fold, "Name :"
        value = value.strip(b" \t")
        if not FIELD_VALUE.match(value):
            raise StatusError(400, "invalid header value")
        fields.append((name.decode("ascii"), value.decode("latin-1")))


def parse_version(text):
    """http.ParseHTTPVersion: HTTP/<digit>.<digit>; (major, minor)."""
    match = re.match(r"^HTTP/([0-9])\.([0-9])$", text)
    if not match:
        raise BadRequest("malformed HTTP version %r" % text)
    return int(match.group(1)), int(match.group(2))


class Request(object):
    """One request's head, checked as net/http's readRequest checks it."""

    def __init__(self, method, target, version, header):
        self.method = method
        self.target = target
        self.version = version
        self.header = header
        self.body_length = body_length(version, header)
        self.close = self._should_close()
        host = header.values("Host")
        if version >= (1, 1) and not host:
            raise StatusError(400, "missing required Host header")
        if len(host) > 1:
            raise StatusError(400, "too many Host headers")
        if host and not HOST.match(host[0]):
            raise StatusError(400, "malformed Host header")
        expect = header.get("Expect", "").lower()
        if expect and expect != "100-continue":
            raise ExpectationFailed(expect)

    @property
    def proto(self):
        return "HTTP/%d.%d" % self.version

    def _should_close(self):
        """net/http shouldClose: 1.1 keeps alive unless told; 1.0 only when asked."""
        if self.version >= (1, 1):
            return self.header.has_token("Connection", "close")
        return not self.header.has_token("Connection", "keep-alive")


def body_length(version, header):
    """transfer.go readTransfer: the body's length, CHUNKED, or 0 when it has none."""
    encodings = header.values("Transfer-Encoding") if version >= (1, 1) else []
    lengths = [value.strip() for value in header.values("Content-Length")]
    if encodings:
        if len(encodings) > 1 or encodings[0].strip().lower() != "chunked":
            raise UnsupportedTransferEncoding(encodings)
        if lengths:
            raise BadRequest("Content-Length with Transfer-Encoding: chunked")
        return CHUNKED
    if not lengths:
        return 0
    if any(length != lengths[0] for length in lengths):
        raise BadRequest("http: message cannot contain multiple Content-Length headers")
    if not re.match(r"^[0-9]{1,18}$", lengths[0]):
        raise BadRequest("bad Content-Length %r" % lengths[0])
    return int(lengths[0])


def read_request(reader, max_header_bytes):
    """The next request's head, or None if the client closed between requests."""
    budget = max_header_bytes + HEADER_SLACK
    line = reader.readline(budget + 1)
    if not line:
        return None
    budget -= len(line)
    if budget < 0:
        raise HeaderTooLarge()
    if not line.endswith(b"\r\n"):
        raise BadRequest("bare LF line ending")
    parts = line[:-2].decode("latin-1").split(" ", 2)
    if len(parts) != 3:
        raise BadRequest("malformed HTTP request %r" % line)
    method, target, proto = parts
    if not TOKEN.match(method.encode("latin-1")):
        raise BadRequest("invalid method %r" % method)
    version = parse_version(proto)
    if version[0] != 1:
        raise StatusError(505, "unsupported protocol version")
    if not TARGET.match(target):
        raise BadRequest("invalid request target %r" % target)
    fields, _ = read_field_lines(reader, budget)
    header = Header()
    for name, value in fields:
        header.add(name, value)
    return Request(method, origin_form(target), version, header)


def origin_form(target):
    """An absolute-form target (`http://host/path?q`) is served by its path, as Go's URL.Path."""
    if target.startswith("/"):
        return target
    rest = target.split("://", 1)[1]
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/"


class LimitedReader(object):
    """A Content-Length request body; EOF before its end is an error, as io.ErrUnexpectedEOF.

    read(n) gives n bytes unless the body ends first, as a file's read does; readinto(b)
    fills what one receive gives, as a raw stream's does.
    """

    def __init__(self, reader, length):
        self.reader = reader
        self.left = length

    def read(self, size=-1):
        want = self.left if size < 0 else min(size, self.left)
        out = []
        while want > 0:
            data = read_body_bytes(self.reader, want)
            out.append(data)
            want -= len(data)
            self.left -= len(data)
        return b"".join(out)

    def readinto(self, view):
        if not self.left or not len(view):
            return 0
        count = read_body_into(self.reader, memoryview(view)[:min(len(view), self.left)])
        self.left -= count
        return count


class ChunkedReader(object):
    """An HTTP/1.1 chunked request body (the CLI streams build contexts and `load` so).

    read(n) gives n bytes unless the body ends first; readinto(b) at most what is left of
    the current chunk, straight from the connection's buffer or socket into `b` (how `docker
    cp` and `load` get their tars without copying every chunk several times).
    Framing errors are 400s with net/http's words; the connection is not reused after one.
    """

    def __init__(self, reader):
        self.reader = reader
        self.left = 0
        self.done = False

    def read(self, size=-1):
        out = []
        while size != 0 and self._chunk_left():
            data = read_body_bytes(self.reader, self.left if size < 0 else min(size, self.left))
            out.append(data)
            self._consumed(len(data))
            if size > 0:
                size -= len(data)
        return b"".join(out)

    def readinto(self, view):
        if not len(view) or not self._chunk_left():
            return 0
        count = read_body_into(self.reader, memoryview(view)[:min(len(view), self.left)])
        self._consumed(count)
        return count

    def _chunk_left(self):
        """Bytes left in the current chunk, the next one's size once it is used up; 0 at the end."""
        while not self.done and self.left == 0:
            self._next_chunk()
        return self.left

    def _consumed(self, count):
        """`count` bytes of the chunk were read; after its last one comes a CRLF."""
        self.left -= count
        if self.left == 0 and self._line() != b"":
            raise errdefs.InvalidParameter("malformed chunked encoding")

    def _line(self):
        """One CRLF-ended line of chunk framing, without its CRLF."""
        try:
            line = self.reader.readline(MAX_CHUNK_LINE)
        except HeaderTooLarge:
            raise errdefs.InvalidParameter("header line too long") from None
        except (EOFError, OSError):
            line = b""
        if not line:
            raise errdefs.InvalidParameter("unexpected EOF")
        if not line.endswith(b"\r\n"):
            raise errdefs.InvalidParameter("malformed chunked encoding")
        return line[:-2]

    def _next_chunk(self):
        size, _, extension = self._line().partition(b";")
        size = size.rstrip(b" \t")
        if not HEX.match(size):
            raise errdefs.InvalidParameter("invalid byte in chunk length" if size else
                                           "empty hex number for chunk length")
        if extension and not CHUNK_EXTENSION.match(b";" + extension):
            raise errdefs.InvalidParameter("invalid chunk extension")
        self.left = int(size, 16)
        if self.left == 0:
            try:
                read_field_lines(self.reader, MAX_CHUNK_LINE * 16)  # trailers, then the end
            except (ProtocolError, EOFError, OSError):
                raise errdefs.InvalidParameter("malformed chunked trailer") from None
            self.done = True


def read_body_bytes(reader, size):
    """Some body bytes; a lost or silent client is the handler's 400, never a 500."""
    return _body_receive(reader.read, size)


def read_body_into(reader, view):
    """read_body_bytes into `view`; the count of bytes."""
    return _body_receive(reader.readinto, view)


def _body_receive(receive, into):
    try:
        data = receive(into)
    except socket.timeout:
        raise errdefs.InvalidParameter("i/o timeout") from None
    except OSError as err:
        raise errdefs.InvalidParameter("read: %s" % (err.strerror or err)) from None
    if not data:
        raise errdefs.InvalidParameter("unexpected EOF")
    return data


# -- writing ----------------------------------------------------------------------------------

class SocketWriter(object):
    """The connection's write side: every write goes out at once (sendall), flush is a no-op."""

    def __init__(self, sock):
        self.sock = sock

    def write(self, data):
        self.sock.sendall(data)
        return len(data)

    def flush(self):
        pass


class RequestHandler(object):
    """One request on a connection: what a handler reads and how it answers (http.response).

    The names are http.server.BaseHTTPRequestHandler's (command, path, headers, rfile,
    wfile, send_response, send_header, end_headers, close_connection), so a handler reads
    like any Python one. A subclass defines do_<METHOD>; the server calls `serve()`.
    """

    server_version = "Python"

    def __init__(self, server, conn, request):
        self.server = server
        self.connection = conn.sock
        self.client_address = conn.address
        self.rfile = conn.reader
        self.wfile = conn.writer
        self.request = request
        self.command = request.method
        self.path = request.target
        self.request_version = request.proto
        self.requestline = "%s %s %s" % (request.method, request.target, request.proto)
        self.headers = request.header
        self.close_connection = request.close
        self.body_reader = None
        self.chunked = False
        self._headers_buffer = []

    def serve(self):
        method = getattr(self, "do_" + self.command, None)
        if method is None:
            self.send_error(501, "Unsupported method (%r)" % self.command)
        else:
            method()
        self.drain_body()

    def send_error(self, code, message=None):
        """A plain-text error answer, like Go's http.Error."""
        body = ((message or http.HTTPStatus(code).phrase) + "\n").encode()
        self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # -- request body ---------------------------------------------------------------------

    def make_body_reader(self):
        """The body as its framing says; `Expect: 100-continue` is answered first."""
        length = self.request.body_length
        if length and self.headers.get("Expect") and self.request.version >= (1, 1):
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if length == CHUNKED:
            self.body_reader = ChunkedReader(self.rfile)
        else:
            self.body_reader = LimitedReader(self.rfile, length)
        return self.body_reader

    def drain_body(self):
        """Keep-alive needs the rest of the body read first; past MAX_DRAIN, just close."""
        if self.body_reader is None:  # never opened: its bytes would read as the next request
            self.close_connection = self.close_connection or self.request.body_length != 0
            return
        if self.close_connection:
            return
        try:
            for _ in range(MAX_DRAIN >> 20):
                if not self.body_reader.read(1 << 20):
                    return
        except errdefs.DockerError:
            pass
        self.close_connection = True

    # -- response -------------------------------------------------------------------------

    def send_response(self, code, message=None):
        """The status line (HTTP/1.0 for a 1.0 request, as Go), Server and Date."""
        status = "HTTP/1.1" if self.request.version >= (1, 1) else "HTTP/1.0"
        phrase = message or http.HTTPStatus(code).phrase
        self._headers_buffer = ["%s %d %s\r\n" % (status, code, phrase)]
        self._has_length = code in (204, 304)
        self.send_header("Server", self.server_version)
        self.send_header("Date", email.utils.formatdate(usegmt=True))

    def send_header(self, keyword, value):
        name = keyword.lower()
        if name == "transfer-encoding" and value.lower() == "chunked":
            if self.request.version < (1, 1):
                self.close_connection = True  # 1.0 has no chunks: the body ends with the connection
                return
            self.chunked = True
            self._has_length = True
        elif name == "content-length":
            self._has_length = True
        elif name == "connection" and value.lower() == "close":
            self.close_connection = True
        self._headers_buffer.append("%s: %s\r\n" % (keyword, value))

    def end_headers(self):
        if self.request.version < (1, 1) and not self.close_connection:
            if self._has_length:
                self._headers_buffer.append("Connection: keep-alive\r\n")
            else:
                self.close_connection = True
        self._headers_buffer.append("\r\n")
        self.wfile.write("".join(self._headers_buffer).encode("latin-1"))
        self._headers_buffer = []

    def write_chunk(self, data):
        """One piece of a streamed answer: a chunk, or raw bytes to an HTTP/1.0 client."""
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)

    def end_stream(self):
        """The last chunk; a client gone by then only costs its connection."""
        try:
            if self.chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True


def readable(socks, timeout=None):
    """The sockets of `socks` with bytes (or EOF) to read, waiting up to `timeout` seconds.

    poll(2), not select(2): a daemon holding thousands of connections has descriptors past
    select's 1024 ceiling.
    """
    poller = select.poll()
    by_fd = {}
    for sock in socks:
        by_fd[sock.fileno()] = sock
        poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    events = poller.poll(None if timeout is None else max(0, int(timeout * 1000)))
    return [by_fd[fd] for fd, _ in events]


# -- connections and threads ------------------------------------------------------------------

class Connection(object):
    """One accepted client: socket, buffered reader, writer, and when it expires while idle."""

    def __init__(self, sock, address):
        self.sock = sock
        self.address = address
        self.reader = ConnReader(sock)
        self.writer = SocketWriter(sock)
        self.expires = None
        self.handshaken = not isinstance(sock, ssl.SSLSocket)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class WorkerPool(object):
    """Threads for requests, between `core` and `size` of them.

    Up to `core` threads start as soon as a job finds no idle one. Past that, a thread is
    added only when the oldest queued job has waited `stall` seconds (`grow`, called by the
    selector): a burst of short requests is served by the threads there are, while a request
    that arrives when every thread holds a stream (`logs -f`, `attach`) still gets one of its
    own within `stall`. A thread without work for `idle` seconds ends.
    """

    def __init__(self, size, idle, name, core=POOL_CORE, stall=POOL_STALL):
        self.size = size
        self.core = min(core, size)
        self.stall = stall
        self.idle_seconds = idle
        self.name = name
        self.jobs = collections.deque()  # (queued at, job)
        self.cond = threading.Condition()
        self.threads = 0
        self.idle = 0

    def submit(self, job):
        with self.cond:
            self.jobs.append((time.monotonic(), job))
            if self.idle >= len(self.jobs):
                self.cond.notify()
            elif self.threads < self.core:
                self._start()

    def grow(self, now):
        """Add a thread if the oldest job has waited too long; whether jobs are waiting."""
        with self.cond:
            if (self.jobs and self.jobs[0][0] + self.stall <= now and
                    self.idle < len(self.jobs) and self.threads < self.size):
                self._start()
            return bool(self.jobs)

    def _start(self):
        self.threads += 1
        threading.Thread(target=self._work, name=self.name, daemon=True).start()

    def _work(self):
        while True:
            with self.cond:
                self.idle += 1
                deadline = time.monotonic() + self.idle_seconds
                while not self.jobs:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self.idle -= 1
                        self.threads -= 1
                        return
                    self.cond.wait(left)
                self.idle -= 1
                _, job = self.jobs.popleft()
            job()


def raise_nofile_limit():
    """Lift the soft RLIMIT_NOFILE to the hard one (no privilege needed); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as err:
            log.warning("could not raise the open files limit to %s: %s", hard, err)
    return soft


def default_max_connections():
    """Half the descriptors this process may open: the other half is the daemon's own."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, soft // 2)


def listen_backlog():
    """The kernel's somaxconn, as Go's net.Listen takes it: the queue that holds new clients
    while the server is at its connection cap."""
    try:
        with open("/proc/sys/net/core/somaxconn") as somaxconn:
            return int(somaxconn.read())
    except (OSError, ValueError):
        return 128


class HTTPServer(object):
    """One listening socket served as the module docstring says.

    Subclasses may override `server_bind` (where and how the socket is bound) and `accepted`
    (what to make of a new connection: TLS wraps it). Everything timed is a constructor
    argument, so tests run the real lifecycle with short values.
    """

    serving = False  # set by whoever runs serve_forever: only then may shutdown() wait for it

    def __init__(self, family, address, handler_class, idle_timeout=IDLE_TIMEOUT,
                 read_header_timeout=READ_HEADER_TIMEOUT, max_connections=None,
                 max_workers=MAX_WORKERS, max_header_bytes=DEFAULT_MAX_HEADER_BYTES,
                 worker_idle=WORKER_IDLE):
        self.server_address = address
        self.handler_class = handler_class
        self.idle_timeout = idle_timeout
        self.read_header_timeout = read_header_timeout
        self.max_connections = max_connections or default_max_connections()
        self.max_header_bytes = max_header_bytes
        self.pool = WorkerPool(min(max_workers, self.max_connections), worker_idle,
                               "api worker")
        self.busy = 0
        self.connections = set()
        self.lock = threading.Lock()
        self.returned = []
        self.stopping = False
        self.stopped = threading.Event()
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.server_bind()
            self.socket.listen(listen_backlog())
        except BaseException:
            self.socket.close()
            raise
        self.server_address = self.socket.getsockname() if family != socket.AF_UNIX else address
        self.socket.setblocking(False)
        self.waker, self.wake_reader = socket.socketpair()
        self.wake_reader.setblocking(False)

    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)

    def accepted(self, sock, address):
        """The Connection for a socket just accepted."""
        return Connection(sock, address)

    # -- what the daemon asks of a listener -----------------------------------------------

    def count_request(self, delta):
        """Requests in flight (not idle keep-alive connections): shutdown waits for these."""
        with self.lock:
            self.busy += delta

    def open_connections(self):
        with self.lock:
            return len(self.connections)

    def shutdown(self):
        """Stop serving (like socketserver's): returns when `serve_forever` has returned."""
        self.stopping = True
        self._wake()
        self.stopped.wait()

    def close_connections(self):
        """End every connection still open, waking the threads that read from them."""
        with self.lock:
            socks = [conn.sock for conn in self.connections]
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def server_close(self):
        self.socket.close()
        self.waker.close()
        self.wake_reader.close()

    # -- the selector thread --------------------------------------------------------------

    def serve_forever(self):
        """Accept, watch idle connections, hand readable ones to the pool, expire the rest."""
        selector = selectors.DefaultSelector()
        selector.register(self.wake_reader, selectors.EVENT_READ)
        idle = set()  # the connections registered in the selector
        accepting = False
        sweep = min(1.0, self.idle_timeout / 4)
        next_sweep = time.monotonic() + sweep
        try:
            while not self.stopping:
                below_cap = self.open_connections() < self.max_connections
                if below_cap and not accepting:
                    selector.register(self.socket, selectors.EVENT_READ)
                elif accepting and not below_cap:  # new clients wait in the listen backlog
                    selector.unregister(self.socket)
                accepting = below_cap
                wait = max(0.0, next_sweep - time.monotonic())
                if self.pool.grow(time.monotonic()):
                    wait = min(wait, self.pool.stall)
                for key, _ in selector.select(wait):
                    if key.fileobj is self.socket:
                        self._accept_all(selector, idle)
                    elif key.fileobj is self.wake_reader:
                        self._take_returned(selector, idle)
                    else:
                        selector.unregister(key.fileobj)
                        idle.discard(key.data)
                        self.pool.submit(lambda conn=key.data: self._serve(conn))
                now = time.monotonic()
                if now >= next_sweep:
                    self._expire(selector, idle, now)
                    next_sweep = now + sweep
        finally:
            with self.lock:  # from now on a pool thread closes what it would hand back
                returned, self.returned = self.returned, None
            for conn in idle.union(returned):
                self._close(conn)
            selector.close()
            self.stopped.set()

    def _accept_all(self, selector, idle):
        while self.open_connections() < self.max_connections:
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # EMFILE and friends: the listener stays, the daemon serves
                log.error("http: Accept error: %s; retrying", os.strerror(err.errno or errno.EIO))
                time.sleep(0.05)
                return
            try:
                conn = self.accepted(sock, address)
            except (OSError, ValueError) as err:
                log.debug("http: dropping a new connection: %s", err)
                sock.close()
                continue
            with self.lock:
                self.connections.add(conn)
            self._watch(selector, idle, conn)

    def _watch(self, selector, idle, conn):
        conn.expires = time.monotonic() + self.idle_timeout
        idle.add(conn)
        selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _take_returned(self, selector, idle):
        try:
            while self.wake_reader.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self.lock:
            returned, self.returned = self.returned, []
        for conn in returned:
            self._watch(selector, idle, conn)

    def _expire(self, selector, idle, now):
        for conn in [conn for conn in idle if conn.expires <= now]:
            selector.unregister(conn.sock)
            idle.discard(conn)
            self._close(conn)

    def _wake(self):
        try:
            self.waker.send(b"x")
        except (BlockingIOError, OSError):
            pass  # a full wake pipe already wakes the selector

    def _close(self, conn):
        conn.close()
        with self.lock:
            self.connections.discard(conn)
            at_cap = len(self.connections) + 1 >= self.max_connections
        if at_cap:
            self._wake()  # the selector may be waiting to listen again

    # -- a pool thread --------------------------------------------------------------------

    def _serve(self, conn):
        """Requests on `conn` while it has them; then back to the selector, or closed."""
        try:
            keep = self._handshake(conn) and self._serve_requests(conn)
        except Exception:  # a bug must cost one connection, not the daemon
            log.exception("http: panic serving %s", conn.address)
            keep = False
        with self.lock:
            keep = keep and self.returned is not None  # None: the selector has stopped
            if keep:
                self.returned.append(conn)
        if keep:
            self._wake()
        else:
            self._close(conn)

    def _handshake(self, conn):
        if conn.handshaken:
            return True
        conn.sock.settimeout(self.read_header_timeout)
        try:
            conn.sock.do_handshake()
        except (ssl.SSLError, OSError) as err:
            log.debug("http: TLS handshake error from %s: %s", conn.address, err)
            return False
        conn.sock.settimeout(None)
        conn.handshaken = True
        return True

    def _serve_requests(self, conn):
        """Whether the connection may be reused once no further request is already here."""
        while True:
            request = self._read_request(conn)
            if request is None:
                return False
            handler = self.handler_class(self, conn, request)
            try:
                handler.serve()
            except (ConnectionError, socket.timeout, ssl.SSLError):
                return False
            if handler.close_connection:
                return False
            if not conn.reader.pending():
                return True

    def _read_request(self, conn):
        reader = conn.reader
        reader.deadline = time.monotonic() + self.read_header_timeout
        reader.idle = None
        try:
            return read_request(reader, self.max_header_bytes)
        except ProtocolError as err:
            log.debug("http: refused a request from %s: %s %s", conn.address, err.status, err)
            self._refuse(conn, err)
        except EOFError:
            self._refuse(conn, BadRequest("unexpected EOF"))
        except (OSError, ValueError):  # a timeout or a reset: nobody to answer, as Go
            pass
        finally:
            reader.deadline = None
            reader.idle = self.idle_timeout
        return None

    def _refuse(self, conn, err):
        """Go's answer to a request it cannot read, then closeWriteAndWait: the write side is
        shut and what the client still sends is read for a moment, so that closing with
        unread bytes does not reset the connection before the client has read the answer."""
        try:
            conn.sock.sendall(err.response())
            conn.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + REFUSE_LINGER
            while time.monotonic() < deadline and readable([conn.sock], deadline - time.monotonic()):
                if not conn.sock.recv(65536):
                    break
        except OSError:
            pass
