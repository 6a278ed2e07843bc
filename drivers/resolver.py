"""The embedded DNS server at 127.0.0.11 (libnetwork's resolver.go), for user-defined networks.

On a user-defined network a container's resolv.conf names one server, 127.0.0.11, and dockerd
answers there from inside the container's network namespace: container names, aliases and
service round robin come from the daemon, every other query is relayed to the external servers
(the container's --dns, or the host's resolv.conf). This module is that server's DNS half; the
network controller does the naming, through one function handed to Resolver:

    lookup(sandbox_id, name, qtype) -> [answer, ...]   the daemon's records, in the order to send
                                     -> []              the name is the daemon's, no record of qtype
                                     -> None            not the daemon's: forward the query
    qtype is "A", "AAAA" or "PTR"; name is lower case, without the trailing dot ("web.mynet",
    or "2.0.17.172.in-addr.arpa" for PTR, whose answers are host names). Queries of any other
    type ask lookup(..., "A") only whether the name is the daemon's: if it is, the answer is
    NOERROR with no records, so a container's name never leaks to the outside world's DNS.
    lookup is called from several threads at once.

One thread serves every container. add_sandbox() lets a short-lived helper thread setns(2)
into the container's network namespace (a net namespace is a per-thread attribute, so the
daemon's other threads never move) and open a UDP and a TCP socket on 127.0.0.11:53 there;
the sockets stay in that namespace after the thread has gone, and the serving thread selects
over all of them. Upstream queries are sent from sockets the daemon's own threads open, so
they leave from the daemon's namespace: a loopback upstream (a host's 127.0.0.53) works.

What is answered, and how (RFC 1035 wire format, built and parsed with struct):

    A, AAAA, PTR the daemon knows   its records, TTL 600, the query's ID and question echoed,
                                    RA set; a UDP answer that would not fit the client's size
                                    (512 bytes, or its EDNS0 payload size) is cut and has TC set
    a known name, another type      NOERROR, no records
    anything else                   the raw query relayed to the upstreams in turn, at most 3
                                    (libnetwork's maxExtDNS), 2 s each; the first answer with
                                    the query's ID goes back unchanged. A UDP client's query
                                    goes over UDP, and again over TCP to the same server when
                                    the UDP answer is truncated (the TCP answer is used when it
                                    fits the client); a TCP client's query goes over TCP
    no upstream answers             SERVFAIL
    a broken query                  FORMERR, or nothing if it has no header or is a response

127.0.0.11:53 is never an upstream (it would forward to itself). Everything is bounded: queries
are at most MAX_QUERY_SIZE bytes, a TCP client gets TCP_CLIENT_TIMEOUT to send each query,
and a sandbox has at most MAX_CONCURRENT forwarded queries and TCP clients at once (more get
SERVFAIL, or a closed connection). Forwarding runs in a thread per query and each TCP client
in a thread of its own, so a slow upstream never delays the daemon's own answers.

A difference from dockerd: libnetwork binds random ports and DNATs port 53 to them inside the
container, so a process in the container may itself listen on 0.0.0.0:53; here the sockets are
bound to 127.0.0.11:53, which such a process then finds taken.

Sockets of a sandbox are closed only under Resolver._lock, and every thread that is not their
owner uses them under that lock after checking that the sandbox is still open, so a closed
descriptor number is never used again by mistake. lookup is never called under that lock,
so the controller may call remove_sandbox while holding locks of its own.
"""
import ipaddress
import logging
import os
import selectors
import socket
import struct
import threading
import time

from drivers import linux

log = logging.getLogger("pydockerd.resolver")

RESOLVER_IP = "127.0.0.11"
DNS_PORT = 53
RESP_TTL = 600               # libnetwork's respTTL, in seconds
MAX_EXT_DNS = 3              # libnetwork's maxExtDNS, and resolv.conf's MAXNS
DEFAULT_RESP_SIZE = 512      # a UDP answer's limit when the query has no EDNS0 OPT record
MAX_MESSAGE = 65535          # a TCP message's 2-byte length prefix cannot say more
MAX_QUERY_SIZE = 4096        # a query is a question and an OPT record: far less than this
MAX_CONCURRENT = 100         # libnetwork's maxConcurrent (1.11-17.x), per sandbox
UPSTREAM_TIMEOUT = 2.0       # seconds per upstream server
TCP_CLIENT_TIMEOUT = 4.0     # seconds a TCP client has to send each query
TCP_BACKLOG = 16

# Header flags (RFC 1035 section 4.1.1).
QR = 0x8000
OPCODE = 0x7800
TC = 0x0200
RD = 0x0100
RA = 0x0080

NOERROR = 0
FORMERR = 1
SERVFAIL = 2

CLASS_IN = 1
TYPE_OPT = 41                # EDNS0 (RFC 6891): its class field is the client's UDP payload size
QTYPES = {1: "A", 28: "AAAA", 12: "PTR"}
FAMILIES = {"A": socket.AF_INET, "AAAA": socket.AF_INET6}

HEADER = struct.Struct("!HHHHHH")        # id, flags, qdcount, ancount, nscount, arcount
QUESTION = struct.Struct("!HH")          # type, class
RECORD = struct.Struct("!HHIH")          # type, class, ttl, rdlength
LENGTH = struct.Struct("!H")             # a TCP message's prefix
MAX_NAME = 255                           # octets of an encoded name (RFC 1035 section 2.3.4)


class FormatError(ValueError):
    """A message that does not parse as a DNS query."""


class Query(object):
    """The parts of a query the resolver reads; `message` is the raw query, for forwarding."""

    def __init__(self, message, ident, flags, labels, qtype, qclass, udp_size):
        self.message = message
        self.ident = ident
        self.flags = flags
        self.labels = labels
        self.qtype = qtype
        self.qclass = qclass
        self.udp_size = udp_size

    @property
    def name(self):
        """The name as lookup() sees it: lower case, dot separated, no trailing dot."""
        return b".".join(self.labels).decode("ascii", "replace").lower()


def read_name(message, offset):
    """Decode the name at `offset`, following compression pointers: (labels, offset after it).

    A pointer must point before itself (RFC 1035 section 4.1.4 speaks of a prior occurrence),
    so a chain of pointers always ends; a loop through labels grows the name past 255 octets.
    """
    labels = []
    size = 1
    end = None
    while True:
        if offset >= len(message):
            raise FormatError("name runs past the end of the message")
        length = message[offset]
        if length >= 0xC0:
            if offset + 1 >= len(message):
                raise FormatError("name runs past the end of the message")
            target = ((length & 0x3F) << 8) | message[offset + 1]
            if target >= offset:
                raise FormatError("compression pointer does not point backwards")
            if end is None:
                end = offset + 2
            offset = target
            continue
        if length >= 0x40:
            raise FormatError("unknown label type %#x" % length)
        offset += 1
        if length == 0:
            return labels, offset if end is None else end
        label = message[offset:offset + length]
        size += length + 1
        if len(label) < length or size > MAX_NAME:
            raise FormatError("name too long or cut short")
        labels.append(label)
        offset += length


def parse_query(message):
    """The Query in `message`; FormatError unless it is one query with one question."""
    if len(message) < HEADER.size:
        raise FormatError("message shorter than a header")
    ident, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(message)
    if flags & QR:
        raise FormatError("message is a response")
    if qdcount != 1:
        raise FormatError("%d questions" % qdcount)
    labels, offset = read_name(message, HEADER.size)
    if offset + QUESTION.size > len(message):
        raise FormatError("question cut short")
    qtype, qclass = QUESTION.unpack_from(message, offset)
    offset += QUESTION.size
    udp_size = DEFAULT_RESP_SIZE
    for _ in range(ancount + nscount + arcount):
        _, offset = read_name(message, offset)
        if offset + RECORD.size > len(message):
            raise FormatError("record cut short")
        rtype, rclass, _, rdlength = RECORD.unpack_from(message, offset)
        offset += RECORD.size + rdlength
        if offset > len(message):
            raise FormatError("record data cut short")
        if rtype == TYPE_OPT:
            udp_size = max(udp_size, rclass)
    return Query(message, ident, flags, labels, qtype, qclass, udp_size)


def encode_name(labels):
    """A name in wire format, uncompressed."""
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def host_labels(host):
    """The labels of a host name ("web.mynet" or "web.mynet."); ValueError if it is no name."""
    labels = [label.encode("ascii") for label in host.rstrip(".").split(".")]
    if any(not 0 < len(label) < 0x40 for label in labels) or len(encode_name(labels)) > MAX_NAME:
        raise ValueError("%r is not a valid host name" % host)
    return labels


def encode_rdata(qtype, answer):
    """The record data of one of lookup()'s answers: an address, or a host name for PTR."""
    if qtype == "PTR":
        return encode_name(host_labels(answer))
    return socket.inet_pton(FAMILIES[qtype], answer)


def build_response(query, rcode, rdatas=(), limit=MAX_MESSAGE):
    """An answer to `query`: its ID and question, RA set, one record per rdata (TTL 600).

    Records that would take the message past `limit` are left out and TC is set, which tells
    a UDP client to ask again over TCP.
    """
    flags = QR | (query.flags & (OPCODE | RD)) | RA | rcode
    owner = encode_name(query.labels)
    question = owner + QUESTION.pack(query.qtype, query.qclass)
    records = []
    size = HEADER.size + len(question)
    for rdata in rdatas:
        record = owner + RECORD.pack(query.qtype, query.qclass, RESP_TTL, len(rdata)) + rdata
        if size + len(record) > limit:
            flags |= TC
            break
        records.append(record)
        size += len(record)
    return HEADER.pack(query.ident, flags, 1, len(records), 0, 0) + question + b"".join(records)


def format_error(message):
    """FORMERR for a message too broken to echo its question; None when not even that is due.

    No answer goes to a message without a header, nor to a response: answering responses
    could start two servers answering each other forever.
    """
    if len(message) < HEADER.size:
        return None
    ident, flags = struct.unpack_from("!HH", message)
    if flags & QR:
        return None
    return HEADER.pack(ident, QR | (flags & (OPCODE | RD)) | RA | FORMERR, 0, 0, 0, 0)


def parse_upstream(text):
    """"ip", "ip:port", "ipv6" or "[ipv6]:port" as a (host, port) pair; ValueError if bad."""
    host, port = text, str(DNS_PORT)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest or port
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError("%s is not an ip address" % text) from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("invalid port in nameserver %s" % text)
    return str(address), int(port)


def upstream_servers(upstreams):
    """The servers to forward to: at most MAX_EXT_DNS, and never 127.0.0.11:53 itself."""
    servers = []
    for text in upstreams:
        server = parse_upstream(text)
        if server == (RESOLVER_IP, DNS_PORT):
            log.warning("dns: not forwarding to %s: it is the embedded server itself", text)
        elif server not in servers:
            servers.append(server)
    return servers[:MAX_EXT_DNS]


def is_answer_to(answer, query):
    """Whether a message from an upstream answers `query`: a response with its ID."""
    if len(answer) < HEADER.size:
        return False
    ident, flags = struct.unpack_from("!HH", answer)
    return ident == query.ident and bool(flags & QR)


def read_tcp_message(sock, timeout, limit):
    """One length-prefixed message, all of it within `timeout` seconds; None at a clean EOF.

    A message longer than `limit` raises OSError: the connection cannot be read any further.
    """
    deadline = time.monotonic() + timeout
    prefix = _recv_exactly(sock, LENGTH.size, deadline)
    if not prefix:
        return None
    length, = LENGTH.unpack(prefix)
    if length > limit:
        raise OSError("DNS message of %d bytes over TCP, more than %d" % (length, limit))
    message = _recv_exactly(sock, length, deadline)
    if len(message) < length:
        raise OSError("connection closed in the middle of a DNS message")
    return message


def _recv_exactly(sock, size, deadline):
    """`size` bytes, or fewer if the peer closes; socket.timeout once `deadline` has passed."""
    data = b""
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out")
        sock.settimeout(remaining)
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def send_tcp_message(sock, message, timeout):
    sock.settimeout(timeout)
    sock.sendall(LENGTH.pack(len(message)) + message)


def exchange_udp(server, query):
    """Send the query to `server` over UDP; its answer, or OSError (socket.timeout included)."""
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    deadline = time.monotonic() + UPSTREAM_TIMEOUT
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect(server)  # a connected socket only takes datagrams from the server
        sock.send(query.message)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out")
            sock.settimeout(remaining)
            answer = sock.recv(MAX_MESSAGE)
            if is_answer_to(answer, query):  # a late answer to an earlier query is skipped
                return answer


def exchange_tcp(server, query):
    """Send the query to `server` over TCP; its answer, or OSError."""
    with socket.create_connection(server, timeout=UPSTREAM_TIMEOUT) as sock:
        send_tcp_message(sock, query.message, UPSTREAM_TIMEOUT)
        answer = read_tcp_message(sock, UPSTREAM_TIMEOUT, MAX_MESSAGE)
    if answer is None or not is_answer_to(answer, query):
        raise OSError("no answer to query %d over TCP" % query.ident)
    return answer


def exchange_for_udp_client(server, query):
    """A UDP client's answer from `server`: over UDP, or over TCP when that one is truncated.

    The TCP answer is used only if it fits the client's UDP size; otherwise the truncated one
    goes back and the client asks again over TCP itself.
    """
    answer = exchange_udp(server, query)
    if not struct.unpack_from("!H", answer, 2)[0] & TC:
        return answer
    try:
        full = exchange_tcp(server, query)
    except OSError as err:
        log.debug("dns: %s over TCP to %s:%d: %s", query.name, server[0], server[1], err)
        return answer
    return full if len(full) <= query.udp_size else answer


def forward(query, servers, over_tcp):
    """The first answer from `servers`, tried in turn; SERVFAIL if none answers."""
    for server in servers:
        try:
            if over_tcp:
                return exchange_tcp(server, query)
            return exchange_for_udp_client(server, query)
        except OSError as err:
            log.debug("dns: forwarding %s to %s:%d: %s", query.name, server[0], server[1], err)
    return build_response(query, SERVFAIL)


def run_in_netns(netns_path, function, *args):
    """function(*args), run by a short-lived thread inside the network namespace at netns_path.

    setns(2) moves only the calling thread, and that thread ends right after, so no thread of
    the daemon is ever left inside a container's namespace. Returns what function returns and
    raises what it raises, or OSError if the namespace cannot be entered.
    """
    result = {}

    def enter_and_run():
        try:
            _enter_netns(netns_path)
            result["value"] = function(*args)
        except Exception as err:  # raised again in the caller's thread
            result["error"] = err

    helper = threading.Thread(target=enter_and_run, name="dns-setns")
    helper.start()
    helper.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def _enter_netns(netns_path):
    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(fd, linux.CLONE_NEWNET)
        finally:
            os.close(fd)
    except OSError as err:
        raise OSError(err.errno, "failed to enter network namespace %s: %s"
                      % (netns_path, err.strerror or err)) from None


def listen_in_netns(netns_path):
    """The (udp, tcp) sockets on 127.0.0.11:53 inside the network namespace at netns_path."""
    return run_in_netns(netns_path, _open_server_sockets, netns_path)


def _open_server_sockets(netns_path):
    """Bind both sockets in the calling thread's namespace (netns_path names it in errors)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((RESOLVER_IP, DNS_PORT))
        # A removed sandbox's connections may linger in TIME_WAIT; a new bind must still work.
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((RESOLVER_IP, DNS_PORT))
        tcp.listen(TCP_BACKLOG)
    except OSError as err:
        udp.close()
        tcp.close()
        raise OSError(err.errno, "error in opening name server socket %s:%d in %s: %s"
                      % (RESOLVER_IP, DNS_PORT, netns_path, err.strerror or err)) from None
    udp.setblocking(False)
    tcp.setblocking(False)
    return udp, tcp


class _Sandbox(object):
    """One container's server sockets and what is running on its behalf."""

    def __init__(self, sandbox_id, udp, tcp, servers):
        self.id = sandbox_id
        self.udp = udp
        self.tcp = tcp
        self.servers = servers
        self.busy = 0          # forwarded UDP queries and TCP clients being served
        self.clients = set()   # the TCP clients' connections, shut down on removal
        self.closed = False


class Resolver(object):
    """The embedded DNS server of every container on a user-defined network."""

    def __init__(self, lookup):
        self._lookup = lookup
        self._lock = threading.Lock()
        self._sandboxes = {}
        self._selector = selectors.DefaultSelector()
        self._wake, self._wakeup = socket.socketpair()  # close() writes to _wakeup
        self._selector.register(self._wake, selectors.EVENT_READ, None)
        self._thread = None

    def start(self):
        """Start the serving thread. Its forwarding threads inherit its network namespace."""
        self._thread = threading.Thread(target=self._serve, name="dns-resolver", daemon=True)
        self._thread.start()

    def add_sandbox(self, sandbox_id, netns_path, upstreams):
        """Serve 127.0.0.11:53 in the namespace at netns_path, forwarding to `upstreams`.

        upstreams are "ip" or "ip:port" strings. OSError if the sockets cannot be opened,
        ValueError for a bad upstream or a sandbox already served; nothing is left open.
        The controller makes one call at a time for a given sandbox.
        """
        servers = upstream_servers(upstreams)
        with self._lock:
            if sandbox_id in self._sandboxes:
                raise ValueError("the resolver already serves sandbox %s" % sandbox_id)
        udp, tcp = listen_in_netns(netns_path)
        sandbox = _Sandbox(sandbox_id, udp, tcp, servers)
        with self._lock:
            self._sandboxes[sandbox_id] = sandbox
            self._selector.register(udp, selectors.EVENT_READ, (sandbox, self._on_udp))
            self._selector.register(tcp, selectors.EVENT_READ, (sandbox, self._on_accept))

    def remove_sandbox(self, sandbox_id):
        """Close the sandbox's sockets and its TCP clients' connections; unknown ids are ignored."""
        with self._lock:
            sandbox = self._sandboxes.pop(sandbox_id, None)
            if sandbox is None:
                return
            sandbox.closed = True
            for sock in (sandbox.udp, sandbox.tcp):
                self._selector.unregister(sock)
                sock.close()
            for conn in sandbox.clients:
                # The client's thread owns the socket and closes it once its recv returns.
                _shutdown(conn)

    def close(self):
        """Stop serving every sandbox and end the serving thread."""
        with self._lock:
            sandbox_ids = list(self._sandboxes)
        for sandbox_id in sandbox_ids:
            self.remove_sandbox(sandbox_id)
        if self._thread is not None:
            self._wakeup.send(b"x")
            self._thread.join()
        self._selector.close()
        self._wake.close()
        self._wakeup.close()

    def _serve(self):
        while True:
            for key, _ in self._selector.select():
                if key.data is None:
                    return  # close() woke us up
                sandbox, on_ready = key.data
                try:
                    on_ready(sandbox, key.fileobj)
                except Exception:  # a bug serving one query must not end DNS for every container
                    log.exception("dns: serving sandbox %s", sandbox.id)

    def _on_udp(self, sandbox, sock):
        with self._lock:
            if sandbox.closed:
                return
            try:
                message, client = sock.recvfrom(MAX_QUERY_SIZE + 1)
            except OSError:
                return
        if len(message) > MAX_QUERY_SIZE:
            return
        self._on_query(sandbox, message, lambda answer: self._send_udp(sandbox, answer, client),
                       over_tcp=False)

    def _send_udp(self, sandbox, answer, client):
        with self._lock:
            if sandbox.closed:
                return
            try:
                sandbox.udp.sendto(answer, client)
            except OSError as err:
                log.debug("dns: answering %s in sandbox %s: %s", client, sandbox.id, err)

    def _on_accept(self, sandbox, listener):
        with self._lock:
            if sandbox.closed:
                return
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if sandbox.busy >= MAX_CONCURRENT:
                conn.close()
                return
            sandbox.busy += 1
            sandbox.clients.add(conn)
        self._run(self._serve_tcp_client, (sandbox, conn),
                  lambda: self._end_tcp_client(sandbox, conn))

    def _serve_tcp_client(self, sandbox, conn):
        """Answer a TCP client's queries, one after the other, until it closes or is too slow."""
        try:
            while True:
                message = read_tcp_message(conn, TCP_CLIENT_TIMEOUT, MAX_QUERY_SIZE)
                if message is None:
                    return
                self._on_query(sandbox, message,
                               lambda answer: send_tcp_message(conn, answer, TCP_CLIENT_TIMEOUT),
                               over_tcp=True)
        except OSError as err:
            log.debug("dns: TCP client in sandbox %s: %s", sandbox.id, err)
        finally:
            self._end_tcp_client(sandbox, conn)

    def _end_tcp_client(self, sandbox, conn):
        with self._lock:
            sandbox.clients.discard(conn)
            conn.close()
            sandbox.busy -= 1

    def _on_query(self, sandbox, message, reply, over_tcp):
        """Answer one query through reply(answer): now if the name is the daemon's, else forward.

        A TCP client's query is forwarded in the calling thread (the client's own); a UDP
        client's in a new thread, so that the serving thread goes on answering.
        """
        try:
            query = parse_query(message)
        except FormatError as err:
            log.debug("dns: malformed query in sandbox %s: %s", sandbox.id, err)
            answer = format_error(message)
            if answer is not None:
                reply(answer)
            return
        answer = self._local_answer(sandbox, query, MAX_MESSAGE if over_tcp else query.udp_size)
        if answer is not None:
            reply(answer)
        elif over_tcp:
            reply(forward(query, sandbox.servers, over_tcp=True))
        elif self._reserve(sandbox):
            self._run(self._forward_udp, (sandbox, query, reply), lambda: self._release(sandbox))
        else:
            log.debug("dns: more than %d queries in flight in sandbox %s", MAX_CONCURRENT, sandbox.id)
            reply(build_response(query, SERVFAIL))

    def _forward_udp(self, sandbox, query, reply):
        try:
            answer = forward(query, sandbox.servers, over_tcp=False)
        finally:
            self._release(sandbox)  # before the reply: a client that got it may ask again at once
        reply(answer)

    def _local_answer(self, sandbox, query, limit):
        """The answer when the name is the daemon's, None when the query is to be forwarded."""
        if query.flags & OPCODE or query.qclass != CLASS_IN:
            return None
        qtype = QTYPES.get(query.qtype)
        try:
            if qtype is None:
                known = self._lookup(sandbox.id, query.name, "A") is not None
                return build_response(query, NOERROR) if known else None
            answers = self._lookup(sandbox.id, query.name, qtype)
            if answers is None:
                return None
            rdatas = [encode_rdata(qtype, answer) for answer in answers]
        except Exception:  # the controller's bug: the client gets SERVFAIL, the daemon goes on
            log.exception("dns: looking up %s %s for sandbox %s", qtype, query.name, sandbox.id)
            return build_response(query, SERVFAIL)
        return build_response(query, NOERROR, rdatas, limit)

    def _reserve(self, sandbox):
        """Take one of the sandbox's MAX_CONCURRENT places; False when all are taken."""
        with self._lock:
            if sandbox.busy >= MAX_CONCURRENT:
                return False
            sandbox.busy += 1
            return True

    def _release(self, sandbox):
        with self._lock:
            sandbox.busy -= 1

    @staticmethod
    def _run(target, args, cleanup):
        """Run target(*args) in a new thread; cleanup() gives back what it holds if none starts."""
        try:
            threading.Thread(target=target, args=args, name="dns-worker", daemon=True).start()
        except RuntimeError:
            cleanup()
            raise


def _shutdown(conn):
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already disconnected
