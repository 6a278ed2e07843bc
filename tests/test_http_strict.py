"""Strict HTTP/1.1 and bounded connections (issue 10, item 3), over raw sockets.

Against a live daemon: every request Go's net/http refuses gets Go's answer (400/431/501/505,
plain text, connection closed) and the daemon still answers /_ping; a malformed chunked body
is a 400, never a 500; HTTP/1.0, pipelining, Expect and chunked uploads work; 2,000 idle
connections cost no thread each and are all served when they send a request.

Against drivers/httpserver.HTTPServer itself, with short timeouts: idle and half-sent
connections are closed, a stream outlives the idle timeout, the connection cap leaves new
clients in the backlog until a slot frees, and shutdown lets a request in flight finish.
"""
import json
import os
import socket
import threading
import time

import pytest

from conftest import DaemonProcess, new_daemon_dir
from containers_support import read_stream
from drivers import httpserver

HOST = b"Host: docker\r\n"
PING = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"
ERROR_HEADERS = b"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def daemon():
    process = DaemonProcess(new_daemon_dir())
    process.start()
    yield process
    process.cleanup()


def connect(path, timeout=10):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)  # blocking: a full backlog makes a unix connect wait, not fail
    sock.settimeout(timeout)
    return sock


def exchange(daemon, data):
    """Send raw bytes, half-close, and read everything until the daemon closes."""
    with connect(daemon.socket) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return read_stream(sock)


def read_response(sock, buffered=b""):
    """One response with a Content-Length body: (status line, headers, body, what follows)."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed before the headers: %r" % data
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed inside the body"
        rest += chunk
    return lines[0], headers, rest[:length], rest[length:]


def assert_pings(daemon):
    with connect(daemon.socket) as sock:
        sock.sendall(PING)
        status, _, body, _ = read_response(sock)
    assert (status, body) == ("HTTP/1.1 200 OK", b"OK")


def go_refusal(public):
    return b"HTTP/1.1 " + public + ERROR_HEADERS + public


# -- refused before any handler, exactly as Go's server words it ---------------------------

REFUSED = {
    "no Host": (b"GET /_ping HTTP/1.1\r\n\r\n",
                go_refusal(b"400 Bad Request: missing required Host header")),
    "two Hosts": (b"GET /_ping HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                  go_refusal(b"400 Bad Request: too many Host headers")),
    "bad Host": (b"GET /_ping HTTP/1.1\r\nHost: a b\r\n\r\n",
                 go_refusal(b"400 Bad Request: malformed Host header")),
    "two Content-Lengths": (b"POST /_ping HTTP/1.1\r\n" + HOST +
                            b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                            go_refusal(b"400 Bad Request")),
    "Content-Length and chunked": (b"POST /_ping HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                                   go_refusal(b"400 Bad Request")),
    "negative Content-Length": (b"POST /_ping HTTP/1.1\r\n" + HOST + b"Content-Length: -1\r\n\r\n",
                                go_refusal(b"400 Bad Request")),
    "signed Content-Length": (b"POST /_ping HTTP/1.1\r\n" + HOST + b"Content-Length: +1\r\n\r\nx",
                              go_refusal(b"400 Bad Request")),
    "bare LF everywhere": (b"GET /_ping HTTP/1.1\n" + b"Host: docker\n\n", go_refusal(b"400 Bad Request")),
    "bare LF in a header": (b"GET /_ping HTTP/1.1\r\nHost: docker\nX: y\r\n\r\n",
                            go_refusal(b"400 Bad Request")),
    "folded header": (b"GET /_ping HTTP/1.1\r\n" + HOST + b"X: a\r\n b\r\n\r\n",
                      go_refusal(b"400 Bad Request")),
    "space before colon": (b"GET /_ping HTTP/1.1\r\n" + HOST + b"X : a\r\n\r\n",
                           go_refusal(b"400 Bad Request")),
    "control byte in a value": (b"GET /_ping HTTP/1.1\r\n" + HOST + b"X: a\x01b\r\n\r\n",
                                go_refusal(b"400 Bad Request: invalid header value")),
    "no version": (b"GET /_ping\r\n" + HOST + b"\r\n", go_refusal(b"400 Bad Request")),
    "bad version": (b"GET /_ping HTTP/1.10\r\n" + HOST + b"\r\n", go_refusal(b"400 Bad Request")),
    "bad method": (b"G(T /_ping HTTP/1.1\r\n" + HOST + b"\r\n", go_refusal(b"400 Bad Request")),
    "bad target": (b"GET _ping HTTP/1.1\r\n" + HOST + b"\r\n", go_refusal(b"400 Bad Request")),
    "HTTP/2.0": (b"GET /_ping HTTP/2.0\r\n" + HOST + b"\r\n",
                 go_refusal(b"505 HTTP Version Not Supported: unsupported protocol version")),
    "gzip transfer coding": (b"POST /_ping HTTP/1.1\r\n" + HOST +
                             b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                             b"HTTP/1.1 501 Not Implemented" + ERROR_HEADERS +
                             b"Unsupported transfer encoding"),
    "unknown Expect": (b"GET /_ping HTTP/1.1\r\n" + HOST + b"Expect: 200-ok\r\n\r\n",
                       go_refusal(b"417 Expectation Failed")),
    "head cut short": (b"GET /_ping HTTP/1.1\r\nHost: do", go_refusal(b"400 Bad Request")),
    "one huge header": (b"GET /_ping HTTP/1.1\r\n" + HOST + b"X: " + b"a" * ((1 << 20) + 5000) + b"\r\n\r\n",
                        go_refusal(b"431 Request Header Fields Too Large")),
    "too many headers": (b"GET /_ping HTTP/1.1\r\n" + HOST + b"X-Many: 0123456789\r\n" * 60000 +
                         b"\r\n", go_refusal(b"431 Request Header Fields Too Large")),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_like_go_and_the_daemon_still_answers(daemon, case):
    request, answer = REFUSED[case]
    assert exchange(daemon, request) == answer
    assert_pings(daemon)


def test_headers_up_to_go_limit_are_served(daemon):
    """Just under DefaultMaxHeaderBytes is fine, as in Go; http.client's 100-header cap is not ours."""
    big = b"X-Many: 0123456789\r\n" * 50000  # 1,000,000 bytes in 50,000 headers
    answer = exchange(daemon, b"GET /_ping HTTP/1.1\r\n" + HOST + big + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"OK")


# -- a malformed chunked body is the handler's 400 -----------------------------------------

def chunked_create(body_chunks):
    return (b"POST /volumes/create HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + body_chunks)


BAD_CHUNKS = {
    "size -2": (b"-2\r\n{}\r\n0\r\n\r\n", "invalid byte in chunk length"),
    "size zz": (b"zz\r\n{}\r\n0\r\n\r\n", "invalid byte in chunk length"),
    "empty size": (b"\r\n{}\r\n0\r\n\r\n", "empty hex number for chunk length"),
    "size too large": (b"1" * 17 + b"\r\n{}\r\n", "invalid byte in chunk length"),
    "bad extension": (b"2;=x\r\n{}\r\n0\r\n\r\n", "invalid chunk extension"),
    "no CRLF after data": (b"2\r\n{}XX0\r\n\r\n", "malformed chunked encoding"),
    "bare LF size line": (b"2\n{}\r\n0\r\n\r\n", "malformed chunked encoding"),
    "size line too long": (b"2;a=" + b"b" * 5000 + b"\r\n{}\r\n0\r\n\r\n", "header line too long"),
    "body cut short": (b"10\r\n{}", "unexpected EOF"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHUNKS))
def test_malformed_chunked_body_is_a_400_with_go_words(daemon, case):
    chunks, message = BAD_CHUNKS[case]
    answer = exchange(daemon, chunked_create(chunks))
    status, _, body = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 400 Bad Request"
    assert json.loads(body.split(b"\r\n\r\n", 1)[1]) == {"message": message}
    assert b"Traceback" not in answer and b"int(" not in answer
    assert_pings(daemon)


def test_chunked_upload_with_extensions_and_trailers(daemon):
    body = json.dumps({"Name": "chunky"}).encode()
    chunks = b"%x;ext=1;q=\"a b\"\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n" % (
        5, body[:5], len(body) - 5, body[5:])
    with connect(daemon.socket) as sock:
        sock.sendall(chunked_create(chunks) + PING)  # pipelined: the ping follows on the same connection
        status, _, created, rest = read_response(sock)
        assert status == "HTTP/1.1 201 Created" and json.loads(created)["Name"] == "chunky"
        assert read_response(sock, rest)[0] == "HTTP/1.1 200 OK"
    assert daemon.request("DELETE", "/volumes/chunky").status == 204


def test_duplicate_equal_content_lengths_are_one(daemon):
    """Go deduplicates Content-Length headers with the same value."""
    body = b'{"Name":"twice"}'
    with connect(daemon.socket) as sock:
        sock.sendall(b"POST /volumes/create HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
                     b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n%s" % (len(body), len(body), body))
        assert read_response(sock)[0] == "HTTP/1.1 201 Created"
    assert daemon.request("DELETE", "/volumes/twice").status == 204


def test_expect_continue_gets_100_first(daemon):
    body = b'{"Name":"expected"}'
    with connect(daemon.socket) as sock:
        sock.sendall(b"POST /volumes/create HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert read_response(sock)[0] == "HTTP/1.1 201 Created"
    assert daemon.request("DELETE", "/volumes/expected").status == 204


# -- HTTP/1.0 as Go serves it --------------------------------------------------------------

def test_http10_needs_no_host_and_closes(daemon):
    answer = exchange(daemon, b"GET /_ping HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 200 OK\r\n") and answer.endswith(b"\r\n\r\nOK")
    assert b"Connection: keep-alive" not in answer


def test_http10_keep_alive_when_asked(daemon):
    with connect(daemon.socket) as sock:
        for _ in range(2):
            sock.sendall(b"GET /_ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, body, _ = read_response(sock)
            assert (status, headers["connection"], body) == ("HTTP/1.0 200 OK", "keep-alive", b"OK")


def test_http10_stream_is_unchunked_and_ends_with_the_connection(daemon):
    daemon.request("POST", "/volumes/create", body=b'{"Name":"ev"}',
                   headers={"Content-Type": "application/json"})
    daemon.request("DELETE", "/volumes/ev")
    answer = exchange(daemon, b"GET /events?since=0&until=%d HTTP/1.0\r\n\r\n" % (time.time() + 1))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK") and b"Transfer-Encoding" not in head
    events = [json.loads(line) for line in body.splitlines() if line]
    assert {"create", "destroy"} <= {event["Action"] for event in events if event["Type"] == "volume"}


def test_chunked_body_of_http10_is_ignored_framing(daemon):
    """Go ignores Transfer-Encoding on an HTTP/1.0 request: no body, so JSON is absent."""
    answer = exchange(daemon, b"GET /_ping HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 200 OK")


# -- 2,000 idle connections ----------------------------------------------------------------

def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def open_idle(path, count):
    socks = []
    for _ in range(count):
        socks.append(connect(path, timeout=60))
    return socks


def test_idle_connections_cost_no_thread_and_are_all_served(daemon):
    pid = daemon.proc.pid
    assert_pings(daemon)
    threads, rss, fds = proc_status(pid, "Threads"), proc_status(pid, "VmRSS"), fd_count(pid)
    socks = open_idle(daemon.socket, 2000)
    try:
        # (the ping's connection may still have been open when `fds` was read)
        assert wait_for(lambda: fd_count(pid) >= fds + 1999, 30), "not all accepted"
        assert proc_status(pid, "Threads") <= threads + 2
        grown = proc_status(pid, "VmRSS") - rss
        print("\n2,000 idle connections: threads %d -> %d, RSS +%d kB" % (
            threads, proc_status(pid, "Threads"), grown))
        assert grown < 12 * 1024, "2,000 idle connections took %d kB" % grown
        for sock in socks:
            sock.sendall(PING)
        for sock in socks:
            assert read_response(sock)[2] == b"OK"
    finally:
        for sock in socks:
            sock.close()
    assert wait_for(lambda: fd_count(pid) <= fds, 30), "fds %d, were %d" % (fd_count(pid), fds)
    # The pool threads that served the burst end after WORKER_IDLE seconds without work.
    assert wait_for(lambda: proc_status(pid, "Threads") <= threads + 1, httpserver.WORKER_IDLE + 20)


# -- the server class with short timeouts --------------------------------------------------

class Slow(httpserver.RequestHandler):
    """/stream answers in pieces over `seconds`; /wait blocks until `release` is set;
    anything else is a short 200."""

    release = threading.Event()

    def do_GET(self):
        self.make_body_reader().read()
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(6):
                self.write_chunk(b"tick\n")
                time.sleep(0.25)
            self.end_stream()
            return
        if self.path == "/wait":
            self.release.wait(10)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_POST = do_GET


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(**options):
        options = dict({"idle_timeout": 0.5, "read_header_timeout": 0.5, "worker_idle": 0.5},
                       **options)
        server = httpserver.HTTPServer(socket.AF_UNIX, str(tmp_path / ("s%d" % len(servers))),
                                       Slow, **options)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    Slow.release.set()
    for server in servers:
        server.shutdown()
        server.close_connections()
        server.server_close()
    Slow.release.clear()


def closed_within(sock, seconds):
    """How long until the server closed `sock` without answering (None: still open)."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        assert sock.recv(100) == b""
    except socket.timeout:
        return None
    return time.monotonic() - start


def test_idle_connection_is_closed_after_idle_timeout(serve):
    server = serve(idle_timeout=1.0)
    with connect(server.server_address) as fresh, connect(server.server_address) as used:
        used.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(used)[2] == b"ok"
        took = closed_within(fresh, 5)
        assert took is not None and 0.7 < took < 3
        assert closed_within(used, 5) is not None
    assert wait_for(lambda: server.open_connections() == 0, 5)


def test_half_sent_head_is_closed_after_read_header_timeout(serve):
    server = serve(idle_timeout=30, read_header_timeout=0.5)
    with connect(server.server_address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        took = closed_within(sock, 5)
        assert took is not None and took < 2


def test_a_slow_but_steady_head_still_times_out(serve):
    """The header deadline is for the whole head, not per byte (slow loris)."""
    server = serve(idle_timeout=30, read_header_timeout=1.0)
    with connect(server.server_address) as sock:
        start = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        with pytest.raises(OSError):
            for _ in range(40):
                sock.sendall(b"X: y\r\n")
                time.sleep(0.1)
        assert time.monotonic() - start < 3.5


def test_a_stream_outlives_the_idle_timeout(serve):
    server = serve(idle_timeout=0.5)
    with connect(server.server_address) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(4096)
            assert chunk, "the stream was cut: %r" % data
            data += chunk
        assert data.count(b"tick") == 6


def test_connection_cap_leaves_new_clients_in_the_backlog(serve):
    server = serve(idle_timeout=30, max_connections=3)
    held = [connect(server.server_address) for _ in range(3)]
    try:
        with connect(server.server_address) as waiting:
            waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            waiting.settimeout(0.7)
            with pytest.raises(socket.timeout):
                waiting.recv(100)
            held.pop().close()
            waiting.settimeout(5)
            assert read_response(waiting)[2] == b"ok"
    finally:
        for sock in held:
            sock.close()


def test_threads_follow_requests_not_connections(serve):
    server = serve(idle_timeout=30)
    socks = open_idle(server.server_address, 300)
    try:
        assert wait_for(lambda: server.open_connections() == 300, 10)
        assert server.pool.threads == 0
        for sock in socks[:20]:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for sock in socks[:20]:
            assert read_response(sock)[2] == b"ok"
        assert 1 <= server.pool.threads <= 20
        assert wait_for(lambda: server.pool.threads == 0, 5), "pool threads stayed"
    finally:
        for sock in socks:
            sock.close()
    assert wait_for(lambda: server.open_connections() == 0, 5)


def test_shutdown_lets_the_request_in_flight_finish(serve):
    server = serve(idle_timeout=30)
    with connect(server.server_address) as busy, connect(server.server_address) as idle:
        busy.sendall(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_for(lambda: server.pool.threads == 1, 5)
        server.shutdown()
        assert closed_within(idle, 5) is not None  # idle connections go at once
        Slow.release.set()
        status, _, body, _ = read_response(busy)
        assert (status, body) == ("HTTP/1.1 200 OK", b"ok")
        assert closed_within(busy, 5) is not None  # and its connection is not reused


def test_close_connections_ends_a_blocked_request(serve):
    server = serve(idle_timeout=30)
    with connect(server.server_address) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        assert wait_for(lambda: server.pool.threads == 1, 5)
        server.shutdown()
        server.close_connections()
        assert wait_for(lambda: server.open_connections() == 0, 5)
