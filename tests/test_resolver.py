"""The embedded DNS server (drivers/resolver.py), served in network namespaces the tests create.

Two private namespaces per test: the "container's", where the resolver opens 127.0.0.11:53 and
the clients ask from a thread that has setns()ed into it, and the "daemon's", where the
resolver's serving thread runs and where a small upstream DNS server written below listens on
127.0.0.1. Nothing is sent or bound in the test runner's own namespace. The messages are
built and read here with struct, independently of the module, and once by dig.
"""
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid

import pytest

from drivers import resolver

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

A, AAAA, PTR, MX = 1, 28, 12, 15
NOERROR, FORMERR, SERVFAIL, NXDOMAIN = 0, 1, 2, 3
QR, TC, RD, RA = 0x8000, 0x0200, 0x0100, 0x0080
HEADER = struct.Struct("!HHHHHH")


# --- the namespaces ------------------------------------------------------------------------------

@contextlib.contextmanager
def private_netns():
    name = "pyd-dns-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


def netns_path(name):
    return "/var/run/netns/" + name


def in_netns(name, function, *args):
    """function(*args) run by a thread inside namespace `name`; its result, or its exception."""
    return resolver.run_in_netns(netns_path(name), function, *args)


def thread_netns():
    return os.readlink("/proc/thread-self/ns/net")


# --- DNS messages, the test's own encoder and decoder -------------------------------------------

def encode_name(name):
    return b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")
                    if label) + b"\x00"


def make_query(name, qtype=A, ident=0x1234, edns_size=None):
    additional = b""
    if edns_size is not None:  # an OPT record: root name, type 41, class = UDP payload size
        additional = b"\x00" + struct.pack("!HHIH", 41, edns_size, 0, 0)
    return (HEADER.pack(ident, RD, 1, 0, 0, 1 if additional else 0) + encode_name(name)
            + struct.pack("!HH", qtype, 1) + additional)


def decode_name(message, offset):
    labels = []
    while True:
        length = message[offset]
        if length >= 0xC0:  # the upstream below never compresses, but a real one would
            pointer = struct.unpack_from("!H", message, offset)[0] & 0x3FFF
            return labels + decode_name(message, pointer)[0], offset + 2
        offset += 1
        if length == 0:
            return labels, offset
        labels.append(message[offset:offset + length].decode())
        offset += length


def parse_response(message):
    """{"id", "flags", "rcode", "question", "answers": [(type, ttl, value)]}."""
    ident, flags, qdcount, ancount, _, _ = HEADER.unpack_from(message)
    offset = HEADER.size
    question = None
    if qdcount:
        labels, offset = decode_name(message, offset)
        question = (".".join(labels), struct.unpack_from("!H", message, offset)[0])
        offset += 4
    answers = []
    for _ in range(ancount):
        _, offset = decode_name(message, offset)
        rtype, _, ttl, length = struct.unpack_from("!HHIH", message, offset)
        offset += 10
        rdata = message[offset:offset + length]
        if rtype == A:
            value = socket.inet_ntop(socket.AF_INET, rdata)
        elif rtype == AAAA:
            value = socket.inet_ntop(socket.AF_INET6, rdata)
        else:
            value = ".".join(decode_name(message, offset)[0])
        answers.append((rtype, ttl, value))
        offset += length
    return {"id": ident, "flags": flags, "rcode": flags & 0xF, "question": question,
            "answers": answers}


def make_response(query, addresses, truncated=False):
    """An upstream's answer to a parsed query: A records, no compression."""
    ident, flags = struct.unpack_from("!HH", query)
    question_end = query.index(b"\x00", HEADER.size) + 5
    question = query[HEADER.size:question_end]
    owner = question[:-4]
    records = b"".join(owner + struct.pack("!HHIH", A, 1, 30, 4) + socket.inet_aton(address)
                       for address in addresses)
    flags = QR | RA | (flags & RD) | (TC if truncated else 0)
    return HEADER.pack(ident, flags, 1, len(addresses), 0, 0) + question + records


def question_name(query):
    return ".".join(decode_name(query, HEADER.size)[0])


# --- clients, inside the container's namespace ---------------------------------------------------

def ask_udp(message, timeout=3.0):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(message, (resolver.RESOLVER_IP, 53))
        return sock.recv(65535)


def ask_tcp(message, timeout=3.0):
    with socket.create_connection((resolver.RESOLVER_IP, 53), timeout=timeout) as sock:
        sock.sendall(struct.pack("!H", len(message)) + message)
        return read_framed(sock)


def read_framed(sock):
    data = b""
    while len(data) < 2 or len(data) < 2 + struct.unpack_from("!H", data)[0]:
        chunk = sock.recv(65535)
        if not chunk:
            raise ConnectionError("connection closed after %d bytes" % len(data))
        data += chunk
    return data[2:]


# --- the upstream server, in the daemon's namespace ----------------------------------------------

class Upstream(object):
    """A DNS server on 127.0.0.1 (UDP and TCP, one port) that knows a few names.

    "ext.example" has one address; "slow.example" answers after `delay` seconds;
    "big.example" is truncated over UDP and has 3 addresses over TCP; "huge.example" is
    truncated over UDP and has 60 addresses (more than 512 bytes) over TCP; other names are
    NXDOMAIN. `queries` records (transport, name) of every query received.
    """

    def __init__(self, ip="127.0.0.1", port=0):
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((ip, port))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((ip, self.port))
        self.tcp.listen(8)
        self.delay = 3.0
        self.queries = []
        self.threads = [threading.Thread(target=self.serve_udp, daemon=True),
                        threading.Thread(target=self.serve_tcp, daemon=True)]
        for thread in self.threads:
            thread.start()

    def answer(self, query, transport):
        name = question_name(query)
        self.queries.append((transport, name))
        if name == "slow.example":
            time.sleep(self.delay)
        if name in ("big.example", "huge.example") and transport == "udp":
            return make_response(query, [], truncated=True)
        addresses = {"ext.example": ["93.184.216.34"], "slow.example": ["10.9.9.9"],
                     "big.example": ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
                     "huge.example": ["10.1.0.%d" % n for n in range(60)]}.get(name)
        if addresses is None:
            response = bytearray(make_response(query, []))
            response[3] |= NXDOMAIN
            return bytes(response)
        return make_response(query, addresses)

    def serve_udp(self):
        while True:
            try:
                query, client = self.udp.recvfrom(65535)
            except OSError:
                return
            if not query:  # close() shut the socket down
                return
            threading.Thread(target=self.answer_udp, args=(query, client), daemon=True).start()

    def answer_udp(self, query, client):
        response = self.answer(query, "udp")
        with contextlib.suppress(OSError):  # a slow answer may come after close()
            self.udp.sendto(response, client)

    def serve_tcp(self):
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                query = read_framed(conn)
                response = self.answer(query, "tcp")
                conn.sendall(struct.pack("!H", len(response)) + response)

    def close(self):
        for sock in (self.udp, self.tcp):
            with contextlib.suppress(OSError):  # ENOTCONN on UDP, but its recvfrom wakes up
                sock.shutdown(socket.SHUT_RDWR)
        for sock in (self.udp, self.tcp):
            sock.close()
        for thread in self.threads:
            thread.join(5)


# --- the daemon's names: what the network controller's lookup would say -------------------------

class Names(object):
    """A lookup() with round robin over "web.mynet"'s two addresses, like the controller's."""

    def __init__(self):
        self.calls = []
        self.web = ["172.20.0.2", "172.20.0.3"]

    def lookup(self, sandbox_id, name, qtype):
        self.calls.append((sandbox_id, name, qtype))
        if name == "boom":
            raise RuntimeError("a bug in the controller")
        if name in ("web", "web.mynet"):
            if qtype == "A":
                self.web.append(self.web.pop(0))
                return list(self.web)
            return []
        if name == "v6.mynet":
            return ["fd00::5"] if qtype == "AAAA" else []
        if name == "many.mynet":
            return ["172.20.1.%d" % n for n in range(1, 41)] if qtype == "A" else []
        if name == "3.0.20.172.in-addr.arpa" and qtype == "PTR":
            return ["web.mynet."]
        return None


class Env(object):
    """What a test works with: the resolver, its lookup, the upstream and the two namespaces."""

    def __init__(self, server, names, upstream, daemon_ns, container_ns):
        self.server = server
        self.names = names
        self.upstream = upstream
        self.daemon_ns = daemon_ns
        self.container_ns = container_ns

    def add(self, upstreams=None, sandbox_id="sb1"):
        if upstreams is None:
            upstreams = ["127.0.0.1:%d" % self.upstream.port]
        self.server.add_sandbox(sandbox_id, netns_path(self.container_ns), upstreams)

    def udp(self, message, timeout=3.0):
        return parse_response(in_netns(self.container_ns, ask_udp, message, timeout))

    def tcp(self, message):
        return parse_response(in_netns(self.container_ns, ask_tcp, message))


@pytest.fixture
def dns():
    """A started Resolver serving a container namespace, forwarding to an upstream in the daemon's."""
    with private_netns() as daemon_ns, private_netns() as container_ns:
        upstream = in_netns(daemon_ns, Upstream)
        names = Names()
        server = resolver.Resolver(names.lookup)
        in_netns(daemon_ns, server.start)  # its forwarding threads are born in its namespace
        env = Env(server, names, upstream, daemon_ns, container_ns)
        try:
            yield env
        finally:
            server.close()
            upstream.close()


# --- the tests ---------------------------------------------------------------------------------

def test_a_record_of_a_known_name_with_round_robin(dns):
    before = thread_netns()
    dns.add()
    assert thread_netns() == before  # add_sandbox never moves the caller's thread
    first = dns.udp(make_query("web.mynet", ident=0x4242))
    assert first["id"] == 0x4242
    assert first["flags"] & (QR | RA | RD) == QR | RA | RD and first["rcode"] == NOERROR
    assert first["question"] == ("web.mynet", A)
    assert first["answers"] == [(A, 600, "172.20.0.3"), (A, 600, "172.20.0.2")]
    second = dns.udp(make_query("web.mynet"))
    assert [value for _, _, value in second["answers"]] == ["172.20.0.2", "172.20.0.3"]
    assert dns.names.calls[-1] == ("sb1", "web.mynet", "A")


def test_names_are_case_insensitive_and_the_question_is_echoed(dns):
    dns.add()
    response = dns.udp(make_query("WEB.MyNet."))
    assert dns.names.calls[-1] == ("sb1", "web.mynet", "A")
    assert response["question"] == ("WEB.MyNet", A)
    assert len(response["answers"]) == 2


def test_aaaa_of_a_v4_only_name_is_nodata_and_other_types_too(dns):
    dns.add()
    for qtype in (AAAA, MX):
        response = dns.udp(make_query("web.mynet", qtype))
        assert (response["rcode"], response["answers"]) == (NOERROR, [])
    assert ("sb1", "web.mynet", "A") in dns.names.calls  # MX asked only whether the name is ours
    assert dns.upstream.queries == []
    assert dns.udp(make_query("v6.mynet", AAAA))["answers"] == [(AAAA, 600, "fd00::5")]


def test_ptr(dns):
    dns.add()
    response = dns.udp(make_query("3.0.20.172.in-addr.arpa", PTR))
    assert response["answers"] == [(PTR, 600, "web.mynet")]


def test_unknown_name_is_forwarded_and_the_answer_relayed(dns):
    dns.add()
    response = dns.udp(make_query("ext.example", ident=0x7777))
    assert response["id"] == 0x7777
    assert response["answers"] == [(A, 30, "93.184.216.34")]  # the upstream's own TTL
    assert dns.upstream.queries == [("udp", "ext.example")]
    assert dns.udp(make_query("nope.example"))["rcode"] == NXDOMAIN


def test_upstream_down_is_servfail_after_trying_the_next(dns):
    dead = in_netns(dns.daemon_ns, free_port)
    dns.add(["127.0.0.1:%d" % dead, "127.0.0.1:%d" % dns.upstream.port])
    assert dns.udp(make_query("ext.example"))["answers"] == [(A, 30, "93.184.216.34")]
    dns.server.remove_sandbox("sb1")
    dns.add(["127.0.0.1:%d" % dead])
    response = dns.udp(make_query("ext.example", ident=0x5151))
    assert (response["id"], response["rcode"], response["question"]) == \
        (0x5151, SERVFAIL, ("ext.example", A))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_silent_upstream_times_out_and_never_blocks_the_daemons_names(dns, monkeypatch):
    monkeypatch.setattr(resolver, "UPSTREAM_TIMEOUT", 1.0)
    dns.add()
    slow = {}
    asking = threading.Thread(target=lambda: slow.update(dns.udp(make_query("slow.example"))))
    asking.start()
    while ("udp", "slow.example") not in dns.upstream.queries:
        time.sleep(0.01)
    started = time.monotonic()
    assert len(dns.udp(make_query("web.mynet"))["answers"]) == 2
    assert time.monotonic() - started < 0.5
    asking.join()
    assert slow["rcode"] == SERVFAIL  # the upstream took 3 s, the resolver waited 1 s


def test_forwarded_queries_per_sandbox_are_bounded(dns, monkeypatch):
    monkeypatch.setattr(resolver, "MAX_CONCURRENT", 2)
    dns.upstream.delay = 1.0
    dns.add()
    results = []
    askers = [threading.Thread(target=lambda: results.append(dns.udp(make_query("slow.example"))))
              for _ in range(2)]
    for asker in askers:
        asker.start()
    while dns.upstream.queries.count(("udp", "slow.example")) < 2:
        time.sleep(0.01)
    started = time.monotonic()
    assert dns.udp(make_query("ext.example"))["rcode"] == SERVFAIL  # a third one: no place
    assert time.monotonic() - started < 0.5
    assert len(dns.udp(make_query("web.mynet"))["answers"]) == 2  # the daemon's names still are
    for asker in askers:
        asker.join()
    assert [r["answers"] for r in results] == [[(A, 30, "10.9.9.9")]] * 2
    assert dns.udp(make_query("ext.example"))["rcode"] == NOERROR  # the places came back


def test_tcp_queries_local_and_forwarded(dns):
    dns.add()
    assert [v for _, _, v in dns.tcp(make_query("web.mynet"))["answers"]] == \
        ["172.20.0.3", "172.20.0.2"]
    assert dns.tcp(make_query("ext.example"))["answers"] == [(A, 30, "93.184.216.34")]
    assert dns.upstream.queries == [("tcp", "ext.example")]


def test_truncated_upstream_answer_is_retried_over_tcp(dns):
    dns.add()
    response = dns.udp(make_query("big.example"))
    assert not response["flags"] & TC
    assert [v for _, _, v in response["answers"]] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert dns.upstream.queries == [("udp", "big.example"), ("tcp", "big.example")]
    # Too big for the client's 512 bytes: the truncated answer, so the client asks over TCP.
    response = dns.udp(make_query("huge.example"))
    assert response["flags"] & TC and response["answers"] == []
    assert len(dns.tcp(make_query("huge.example"))["answers"]) == 60


def test_big_local_answers_are_cut_to_the_clients_size(dns):
    dns.add()
    raw = in_netns(dns.container_ns, ask_udp, make_query("many.mynet"))
    response = parse_response(raw)
    assert len(raw) <= 512 and response["flags"] & TC
    assert 0 < len(response["answers"]) < 40
    assert len(dns.udp(make_query("many.mynet", edns_size=4096))["answers"]) == 40
    assert len(dns.tcp(make_query("many.mynet"))["answers"]) == 40


def test_malformed_queries_never_kill_the_server(dns):
    dns.add()
    with pytest.raises(socket.timeout):  # no header: dropped
        in_netns(dns.container_ns, ask_udp, b"\x01", 0.3)
    broken = [
        HEADER.pack(0x1111, RD, 1, 0, 0, 0) + b"\x05ab",                # name cut short
        HEADER.pack(0x2222, RD, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",  # pointer to itself
        HEADER.pack(0x3333, RD, 2, 0, 0, 0) + encode_name("a") + b"\x00\x01\x00\x01",
        HEADER.pack(0x4444, RD, 1, 0, 0, 1) + encode_name("a") + b"\x00\x01\x00\x01\x00",
    ]
    for message in broken:
        response = dns.udp(message)
        assert (response["id"], response["rcode"]) == (struct.unpack("!H", message[:2])[0], FORMERR)
    with pytest.raises(socket.timeout):  # a response is never answered
        in_netns(dns.container_ns, ask_udp, HEADER.pack(1, QR, 0, 0, 0, 0), 0.3)
    assert dns.udp(make_query("boom"))["rcode"] == SERVFAIL  # lookup raised
    with pytest.raises(ConnectionError):  # a TCP length over the limit ends that connection
        in_netns(dns.container_ns, ask_tcp, b"\x00" * 5000)
    assert len(dns.udp(make_query("web.mynet"))["answers"]) == 2
    assert len(dns.tcp(make_query("web.mynet"))["answers"]) == 2


def test_a_silent_tcp_client_is_disconnected(dns, monkeypatch):
    monkeypatch.setattr(resolver, "TCP_CLIENT_TIMEOUT", 0.5)
    dns.add()

    def connect_and_wait():
        with socket.create_connection((resolver.RESOLVER_IP, 53), timeout=3) as sock:
            sock.sendall(b"\x00")  # half a length prefix, then nothing
            started = time.monotonic()
            assert sock.recv(10) == b""
            return time.monotonic() - started

    assert in_netns(dns.container_ns, connect_and_wait) < 2


def test_remove_sandbox_closes_the_sockets(dns):
    dns.add()
    assert len(dns.udp(make_query("web.mynet"))["answers"]) == 2

    def hold_tcp_connection():
        sock = socket.create_connection((resolver.RESOLVER_IP, 53), timeout=3)
        time.sleep(0.2)  # let the server's thread take it
        return sock

    held = in_netns(dns.container_ns, hold_tcp_connection)
    dns.server.remove_sandbox("sb1")
    dns.server.remove_sandbox("sb1")  # twice is harmless
    with held:
        assert held.recv(10) == b""  # the client's connection was shut down
    with pytest.raises(ConnectionRefusedError):
        in_netns(dns.container_ns, ask_tcp, make_query("web.mynet"))
    with pytest.raises((ConnectionRefusedError, socket.timeout)):
        in_netns(dns.container_ns, ask_udp, make_query("web.mynet"), 0.5)
    dns.add()  # the port is free again
    assert len(dns.udp(make_query("web.mynet"))["answers"]) == 2


def test_add_sandbox_errors_leave_nothing_open(dns):
    with pytest.raises(OSError, match="failed to enter network namespace /nonexistent"):
        dns.server.add_sandbox("sb1", "/nonexistent", [])
    with pytest.raises(ValueError, match="300.1.1.1 is not an ip address"):
        dns.add(["300.1.1.1"])
    dns.add()
    with pytest.raises(OSError, match="127.0.0.11:53 in /var/run/netns/pyd-dns-.*in use"):
        dns.add(sandbox_id="sb2")
    with pytest.raises(ValueError, match="already serves sandbox sb1"):
        dns.add()
    assert len(dns.udp(make_query("web.mynet"))["answers"]) == 2


def test_127_0_0_11_is_never_an_upstream(dns):
    # A server on 127.0.0.11:53 in the daemon's namespace: forwarding there would loop.
    loop = in_netns(dns.daemon_ns, Upstream, "127.0.0.11", 53)
    try:
        dns.add(["127.0.0.11", "127.0.0.11:53"])
        assert dns.udp(make_query("ext.example"))["rcode"] == SERVFAIL
        assert loop.queries == []
    finally:
        loop.close()


def test_upstream_parsing():
    assert resolver.upstream_servers(["8.8.8.8", "1.1.1.1:5353", "::1", "[fd00::1]:54",
                                      "8.8.8.8"]) == \
        [("8.8.8.8", 53), ("1.1.1.1", 5353), ("::1", 53)]  # duplicates dropped, 3 at most
    for bad in ("8.8.8.8:x", "[::1]:0", "dns.google"):
        with pytest.raises(ValueError):
            resolver.parse_upstream(bad)


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed")
def test_dig_agrees(dns):
    dns.add()
    for transport in ("+notcp", "+tcp"):
        dig = subprocess.run(["ip", "netns", "exec", dns.container_ns, "dig", "@127.0.0.11",
                              transport, "+short", "+time=2", "+tries=1", "WEB.mynet"],
                             stdout=subprocess.PIPE, universal_newlines=True, check=True)
        assert sorted(dig.stdout.split()) == ["172.20.0.2", "172.20.0.3"]
    dig = subprocess.run(["ip", "netns", "exec", dns.container_ns, "dig", "@127.0.0.11",
                          "+time=3", "+tries=1", "ext.example"],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True)
    assert "status: NOERROR" in dig.stdout and "93.184.216.34" in dig.stdout
