"""The API's HTTP/1.1 server: http.server over AF_UNIX (and TCP), as strict and bounded as Go's.

dockerd serves its API with Go's net/http; this module serves it with Python's http.server held
to that server's behaviour, so that every client (the docker CLI, docker-py and docker-compose
through requests, curl) sees what it would see from dockerd, and no client can pin unbounded
threads or memory.

http.server gives the protocol: `RequestHandler` is a BaseHTTPRequestHandler whose
`parse_request` parses each request (command, path, version, `headers`) and whose
`send_response`/`send_header`/`end_headers` write each answer (`responses`, `protocol_version`,
`server_version`/`sys_version`, `date_time_string`), logged by `log_request`/`log_error`;
`HTTPServer` is a socketserver.TCPServer on a unix path or a TCP address, whose `server_bind`,
`server_activate`, `get_request`, `serve_forever` and `shutdown` listen and accept. This module
adds what they lack: a strict pre-check of each head in front of `parse_request` (http.server
takes bare LF, HTTP/0.9, two Content-Lengths), an idle selector that holds keep-alive
connections without a thread (socketserver gives a connection one thread for its whole life),
and a bounded pool of request threads. So a handler is made per request, not per connection
(its `setup`, `handle` and `finish` are one request's), and `process_request` hands a new
connection to the selector, not to a thread.

Connection lifecycle
--------------------
    accepted --> idle --(first byte)--> reading the head --> handling --> idle again
                   |                         |                   |
                   +-- idle_timeout: closed  +-- read_header_    +-- closed when the request
                                                 timeout: closed     or the handler says so

- **Accept.** `serve_forever` accepts while fewer than `max_connections` are open; at the cap
  it waits (`service_actions`), so new clients wait in the listen backlog until one closes.
  The cap is half of RLIMIT_NOFILE (`raise_nofile_limit` lifts the soft limit to the hard one
  at boot, as dockerd's unit does with LimitNOFILE): the rest is for containers and logs.
- **Idle.** A connection waiting for a request (a new one, or a keep-alive one after its answer)
  costs no thread: it is registered in the idle selector (a thread per listener). If no byte
  arrives for `idle_timeout` seconds it is closed (Go's IdleTimeout; 5 minutes here).
- **Reading the head.** When a byte arrives the selector hands the connection to the worker
  pool. The request line and headers must be complete within `read_header_timeout` seconds
  (moby later set net/http's ReadHeaderTimeout for this slow-loris case), or the connection
  is closed without an answer, as Go does.
- **The pre-check** is net/http's parse, strict: a request Go's server refuses gets Go's answer
  and the connection is closed. `HTTP/1.1 400 Bad Request` (plain text, `Connection: close`)
  for a malformed request line, header line, Content-Length or Host; with Go's public reason
  when Go gives one (`400 Bad Request: missing required Host header`); `431 Request Header
  Fields Too Large` past `max_header_bytes` (Go's DefaultMaxHeaderBytes, 1 MB, plus its 4 KB
  of slack); `501 Unsupported transfer encoding` for any Transfer-Encoding but `chunked`;
  `505` for an HTTP major version other than 1. Stricter than Go, as RFC 9112 permits and the
  request-smuggling advice asks: bare LF line ends, two different Content-Lengths and
  Content-Length beside `Transfer-Encoding: chunked` are all 400. The syntax is checked as
  the head is read; `parse_request` parses what passed (`HeaderBlocks`), and the checks of
  Host, Content-Length, Transfer-Encoding and Expect read its headers (`check_headers`).
- **HTTP/1.0** as Go: no Host needed, Transfer-Encoding ignored, answered with an `HTTP/1.0`
  status line, kept alive only if it asked (`Connection: keep-alive`) and the answer has a
  length; a streamed answer is sent unchunked and ends with the connection.
- **Handling.** The request runs in a pool thread (`WorkerPool`): threads start on demand up
  to `max_workers` (thousands) and end after `worker_idle` seconds without work, so they
  follow the requests in flight, not the connections open. A stream (`logs -f`, `events`,
  pull progress) or a hijacked connection (`attach`, `exec`) keeps its thread for as long as
  its client wants. A body is read through `LimitedReader` or `ChunkedReader` (a malformed
  one is the handler's 400; no byte waits longer than `idle_timeout`); `Expect: 100-continue`
  is answered when the handler first reads the body, as in Go.
- **After the answer** the rest of an unread body is drained (up to 64 MB) and the connection
  goes back to the selector, or straight to its next request when the client pipelined one.
- **Shutdown.** `shutdown()` stops accepting and stops the selector (idle connections close);
  requests in flight finish (`busy` counts them for the daemon's grace period) and their
  connections close; `close_connections()` cuts what is left, `server_close()` the listener.
"""
import collections
import errno
import http.server
import io
import logging
import os
import re
import resource
import select
import selectors
import socket
import socketserver
import ssl
import threading
import time

from drivers import errdefs, linux

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


# -- protocol errors: what the pre-check refuses, before any handler --------------------------

class ProtocolError(Exception):
    """A request net/http refuses: `BadRequest` says only "400 Bad Request" on the wire."""

    status = 400

    def reason(self):
        """The status line's reason phrase (Go's status line is "HTTP/1.1 " + the body)."""
        return http.HTTPStatus(self.status).phrase

    def body(self):
        return "%d %s" % (self.status, self.reason())


class BadRequest(ProtocolError):
    """A malformed request; its text goes to the debug log only, as in Go."""


class StatusError(ProtocolError):
    """Go's statusError: the reason is public (`400 Bad Request: missing required Host header`)."""

    def __init__(self, status, text):
        super().__init__(text)
        self.status = status

    def reason(self):
        return "%s: %s" % (super().reason(), self)


class HeaderTooLarge(ProtocolError):
    status = 431


class UnsupportedTransferEncoding(ProtocolError):
    status = 501

    def body(self):
        return "Unsupported transfer encoding"


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


class Head(collections.namedtuple("Head", "method target version fields")):
    """A request's head as the pre-check read it: `fields` are its header lines, [(name,
    value)], values trimmed as Go's textproto trims them. parse_request reads it again."""

    __slots__ = ()

    def request_line(self):
        """The request line for parse_request. Its str.split also splits at NEL and NBSP, bytes
        Go keeps inside a target: escaped here (the handler's path is `target` anyway)."""
        target = self.target.replace("\x85", "%85").replace("\xa0", "%A0")
        return ("%s %s HTTP/%d.%d\r\n" % ((self.method, target) + self.version)).encode("latin-1")

    def header_section(self):
        """The header lines as checked, CRLF-ended, and the empty line that ends them."""
        lines = ["%s: %s\r\n" % field for field in self.fields]
        return ("".join(lines) + "\r\n").encode("latin-1")


def check_headers(version, headers):
    """net/http readRequest's checks of the parsed headers (parse_request's HTTPMessage):
    (the body's length, whether the connection closes after the answer)."""
    length = body_length(version, headers)
    host = headers.get_all("Host", [])
    if version >= (1, 1) and not host:
        raise StatusError(400, "missing required Host header")
    if len(host) > 1:
        raise StatusError(400, "too many Host headers")
    if host and not HOST.match(host[0]):
        raise StatusError(400, "malformed Host header")
    expect = headers.get_all("Expect", [])
    if expect and expect[0].lower() != "100-continue":
        raise ExpectationFailed(expect[0])
    # net/http shouldClose: 1.1 keeps alive unless told (a `close` token); 1.0 only if asked.
    tokens = {item.strip().lower() for value in headers.get_all("Connection", [])
              for item in value.split(",")}
    return length, "close" in tokens if version >= (1, 1) else "keep-alive" not in tokens


def body_length(version, headers):
    """transfer.go readTransfer: the body's length, CHUNKED, or 0 when it has none."""
    encodings = headers.get_all("Transfer-Encoding", []) if version >= (1, 1) else []
    lengths = [value.strip() for value in headers.get_all("Content-Length", [])]
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
    """The next request's head, its syntax checked, or None if the client closed between requests."""
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
    return Head(method, origin_form(target), version, fields)


def origin_form(target):
    """An absolute-form target (`http://host/path?q`) is served by its path, as Go's URL.Path."""
    if target.startswith("/"):
        return target
    rest = target.split("://", 1)[1]
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/"


class HeaderBlocks(io.BytesIO):
    """A checked header section, as parse_request reads it (http.client.parse_headers).

    parse_headers takes at most 100 lines of 64 KB (a client's limits); Go's server takes 1 MB
    in any number of lines, which the pre-check has enforced. So readline hands over blocks,
    not lines: parse_headers joins what it reads before parsing it, and 1 MB is 33 blocks.
    """

    BLOCK = 32 << 10

    def readline(self, size=-1):
        return self.read(self.BLOCK)


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



class RequestHandler(http.server.BaseHTTPRequestHandler):
    """One request: http.server's handler, made per request (`request` is the server's
    Connection, whose buffered reader outlives it). A subclass defines do_<METHOD>, reads the
    body through `make_body_reader()` and streams an answer with `write_chunk`/`end_stream`.
    """

    protocol_version = "HTTP/1.1"
    # How a head that cannot be read is refused (parse_request sets the request's own).
    default_request_version = "HTTP/1.1"

    def setup(self):
        """StreamRequestHandler.setup makes rfile and wfile of the socket: the Connection has them."""
        self.connection = self.request.sock
        self.wfile = self.request.writer
        self.request_version = self.default_request_version
        self.close_connection = True
        self.continue_owed = False
        self.body_reader = None
        self.chunked = False
        self.has_length = False

    def handle(self):
        """Read and pre-check the head, parse it with parse_request, run do_<METHOD>."""
        self.head = self.read_head()
        if self.head is None:
            return
        self.raw_requestline = self.head.request_line()
        self.rfile = HeaderBlocks(self.head.header_section())
        if not self.parse_request():  # it has answered; it takes every head the pre-check passes
            return
        try:
            self.body_length, self.close_connection = check_headers(self.head.version, self.headers)
        except ProtocolError as err:
            self.refuse(err)
            return
        self.rfile = self.request.reader  # the body follows the head on the connection
        self.path = self.head.target  # as sent: parse_request folds a leading `//`
        if self.head.version < (1, 1):
            self.protocol_version = "HTTP/1.0"  # Go answers a 1.0 request in kind
        method = getattr(self, "do_" + self.command, None)
        if method is None:
            self.send_error(501, "Unsupported method (%r)" % self.command)
        else:
            method()
        self.drain_body()

    def finish(self):
        """StreamRequestHandler.finish would close rfile and wfile: they are the connection's."""

    def read_head(self):
        """The next head, within read_header_timeout; None when there is none to serve (the
        client closed or went silent, or was refused)."""
        reader = self.request.reader
        reader.deadline = time.monotonic() + self.server.read_header_timeout
        reader.idle = None
        try:
            return read_request(reader, self.server.max_header_bytes)
        except ProtocolError as err:
            self.refuse(err)
        except EOFError:
            self.refuse(BadRequest("unexpected EOF"))
        except (OSError, ValueError):  # a timeout or a reset: nobody to answer, as Go
            pass
        finally:
            reader.deadline = None
            reader.idle = self.server.idle_timeout
        return None

    def refuse(self, err):
        """Go's answer to a head it cannot read, then closeWriteAndWait: the write side is
        shut and what the client still sends is read for a moment, so that closing with
        unread bytes does not reset the connection before the client has read the answer."""
        self.log_error("refused a request: %d %s", err.status, err)
        try:
            self.send_response_only(err.status, err.reason())
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(err.body().encode())
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + REFUSE_LINGER
            while (time.monotonic() < deadline and
                   readable([self.connection], deadline - time.monotonic())):
                if not self.connection.recv(65536):
                    break
        except OSError:
            pass

    def log_message(self, format, *args):
        """http.server logs each answer and refusal to stderr; here they go to the debug log."""
        log.debug("%s " + format, self.address_string(), *args)

    # -- request body ---------------------------------------------------------------------

    def handle_expect_100(self):
        """parse_request would answer `100 Continue` at once; Go answers it only when the
        handler reads the body (make_body_reader), so a refused upload is never sent."""
        self.continue_owed = True
        return True

    def make_body_reader(self):
        """The body as its framing says; a `100 Continue` owed is answered first."""
        length = self.body_length
        if length and self.continue_owed:
            super().handle_expect_100()
        if length == CHUNKED:
            self.body_reader = ChunkedReader(self.rfile)
        else:
            self.body_reader = LimitedReader(self.rfile, length)
        return self.body_reader

    def drain_body(self):
        """Keep-alive needs the rest of the body read first; past MAX_DRAIN, just close."""
        if self.body_reader is None:  # never opened: its bytes would read as the next request
            self.close_connection = self.close_connection or self.body_length != 0
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

    # -- response: http.server's, and how the body is framed ------------------------------

    def send_response(self, code, message=None):
        self.has_length = code in (204, 304)  # no body, so no length needed
        super().send_response(code, message)

    def send_header(self, keyword, value):
        """Also notes the framing: HTTP/1.0 has no chunks, so a 1.0 client gets a streamed
        body raw, and the connection's end ends it."""
        name = keyword.lower()
        if name == "transfer-encoding" and value.lower() == "chunked":
            if self.request_version < "HTTP/1.1":
                self.close_connection = True
                return
            self.chunked = True
            self.has_length = True
        elif name == "content-length":
            self.has_length = True
        super().send_header(keyword, value)

    def end_headers(self):
        """An HTTP/1.0 answer keeps the connection only if asked and with a length, as Go."""
        if self.request_version < "HTTP/1.1" and not self.close_connection:
            if self.has_length:
                self.send_header("Connection", "keep-alive")
            else:
                self.close_connection = True
        super().end_headers()

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
                        if not self.threads:  # the burst is over: its memory goes back
                            linux.malloc_trim()
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


class HTTPServer(socketserver.TCPServer):
    """One listening socket (a UnixStreamServer when `family` is AF_UNIX), served as the module
    docstring says. Everything timed is an argument, so tests run the real lifecycle quickly.
    """

    allow_reuse_address = True
    serving = False  # set by whoever runs serve_forever: only then may shutdown() wait for it

    def __init__(self, family, address, handler_class, idle_timeout=IDLE_TIMEOUT,
                 read_header_timeout=READ_HEADER_TIMEOUT, max_connections=None,
                 max_workers=MAX_WORKERS, max_header_bytes=DEFAULT_MAX_HEADER_BYTES,
                 worker_idle=WORKER_IDLE):
        self.address_family = family
        self.request_queue_size = listen_backlog()
        self.idle_timeout = idle_timeout
        self.read_header_timeout = read_header_timeout
        self.max_connections = max_connections or default_max_connections()
        self.max_header_bytes = max_header_bytes
        self.pool = WorkerPool(min(max_workers, self.max_connections), worker_idle, "api worker")
        self.busy = 0
        self.connections = set()
        self.lock = threading.Condition()  # notified when a connection closes
        self.returned = []
        self.stopping = False
        self.stopped = threading.Event()
        self.waker, self.wake_reader = socket.socketpair()
        self.wake_reader.setblocking(False)
        super().__init__(address, handler_class)

    # -- socketserver's steps ----------------------------------------------------------------

    def get_request(self):
        """accept(2). Out of descriptors, it fails as long as none closes: log as Go and pause,
        where socketserver's loop would retry at once and spin."""
        try:
            sock, address = self.socket.accept()
        except OSError as err:
            log.error("http: Accept error: %s; retrying", os.strerror(err.errno or errno.EIO))
            time.sleep(0.05)
            raise
        return sock, address or ("unix", 0)  # a unix peer has no address

    def process_request(self, request, client_address):
        """The new connection waits for its first request in the idle selector, threadless."""
        conn = Connection(request, client_address)
        with self.lock:
            self.connections.add(conn)
        self._hand_back(conn)

    def service_actions(self):
        """Between accepts: at the cap, wait for a connection to close; new clients meanwhile
        wait in the kernel's listen backlog."""
        with self.lock:
            while len(self.connections) >= self.max_connections and not self.stopping:
                self.lock.wait()

    def serve_forever(self, poll_interval=0.5):
        """socketserver's accept loop, with the idle selector in a thread of its own."""
        selector = threading.Thread(target=self._watch_idle, daemon=True,
                                    name="api idle " + str(self.server_address))
        selector.start()
        try:
            super().serve_forever(poll_interval)
        finally:
            self.stopping = True
            self._wake()
            selector.join()

    def shutdown(self):
        """Stop serving: returns when serve_forever has returned and idle connections are closed."""
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
        super().shutdown()
        self.stopped.wait()

    def handle_error(self, request, client_address):
        """socketserver prints the traceback to stderr; here it is logged as Go's panic."""
        log.exception("http: panic serving %s", client_address)

    def server_close(self):
        super().server_close()
        self.waker.close()
        self.wake_reader.close()

    # -- what the daemon asks of a listener -----------------------------------------------

    def count_request(self, delta):
        """Requests in flight (not idle keep-alive connections): shutdown waits for these."""
        with self.lock:
            self.busy += delta

    def open_connections(self):
        with self.lock:
            return len(self.connections)

    def close_connections(self):
        """End every connection still open, waking the threads that read from them."""
        with self.lock:
            socks = [conn.sock for conn in self.connections]
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- the idle selector ------------------------------------------------------------------

    def _watch_idle(self):
        """Watch idle connections, hand readable ones to the pool, expire the rest."""
        selector = selectors.DefaultSelector()
        selector.register(self.wake_reader, selectors.EVENT_READ)
        idle = set()  # the connections registered in the selector
        sweep = min(1.0, self.idle_timeout / 4)
        next_sweep = time.monotonic() + sweep
        try:
            while not self.stopping:
                wait = max(0.0, next_sweep - time.monotonic())
                if self.pool.grow(time.monotonic()):
                    wait = min(wait, self.pool.stall)
                for key, _ in selector.select(wait):
                    if key.fileobj is self.wake_reader:
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
            with self.lock:  # from now on a connection handed back is closed instead
                returned, self.returned = self.returned, None
            for conn in idle.union(returned):
                self._close(conn)
            selector.close()
            self.stopped.set()

    def _take_returned(self, selector, idle):
        try:
            while self.wake_reader.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self.lock:
            returned, self.returned = self.returned, []
        now = time.monotonic()
        for conn in returned:
            conn.expires = now + self.idle_timeout
            idle.add(conn)
            selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _expire(self, selector, idle, now):
        for conn in [conn for conn in idle if conn.expires <= now]:
            selector.unregister(conn.sock)
            idle.discard(conn)
            self._close(conn)

    def _hand_back(self, conn):
        """To the idle selector (from the accept loop or a pool thread), or closed once it has stopped."""
        with self.lock:
            open_selector = self.returned is not None
            if open_selector:
                self.returned.append(conn)
        if open_selector:
            self._wake()
        else:
            self._close(conn)

    def _wake(self):
        try:
            self.waker.send(b"x")
        except OSError:
            pass  # a full wake pipe already wakes the selector; a closed one has no selector

    def _close(self, conn):
        self.close_request(conn.sock)
        with self.lock:
            self.connections.discard(conn)
            self.lock.notify_all()  # the accept loop may be waiting at the cap

    # -- a pool thread --------------------------------------------------------------------

    def _serve(self, conn):
        """Requests on `conn` while it has them; then back to the selector, or closed."""
        try:
            keep = self._handshake(conn) and self._serve_requests(conn)
        except Exception:  # a bug must cost one connection, not the daemon
            self.handle_error(conn.sock, conn.address)
            keep = False
        if keep:
            self._hand_back(conn)
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
            try:  # as socketserver's finish_request, but the handler is kept: is it reusable?
                handler = self.RequestHandlerClass(conn, conn.address, self)
            except (ConnectionError, socket.timeout, ssl.SSLError):
                return False
            if handler.close_connection:
                return False
            if not conn.reader.pending():
                return True
