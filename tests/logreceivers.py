"""Real receivers for the log driver tests, each on loopback or a unix socket the test owns.

  * Rsyslog: Debian's rsyslogd on a private config (a unix datagram socket, UDP and TCP
    ports, a TLS port with a CA the test makes), writing what it parsed to a file, one
    field-separated line per message; started as its own process, stopped by pid.
  * GelfUDP / StreamReceiver: GELF over UDP (chunks reassembled, gzip/zlib undone) and any
    stream protocol (GELF's NUL-framed TCP, Fluentd's forward protocol), with a switch that
    makes the receiver stop reading, to stall the sender.
  * JournalSocket: a datagram socket speaking systemd's native journal protocol, including
    entries passed as sealed memfds.
"""
import fcntl
import gzip
import json
import os
import select
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib

import msgpack
import pytest

RSYSLOG_FIELDS = ("pri", "hostname", "syslogtag", "app_name", "procid", "msgid", "time", "msg")


def wait_for(predicate, timeout=15, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- rsyslog -------------------------------------------------------------------------------------

class Rsyslog(object):
    """rsyslogd -n on a config of its own in `directory`; .messages() parses its output."""

    def __init__(self, directory):
        self.dir = directory
        self.socket = os.path.join(directory, "log.sock")
        self.output = os.path.join(directory, "out.log")
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tcp_port = free_port(socket.SOCK_STREAM)
        self.tls_port = free_port(socket.SOCK_STREAM)
        self.ca = make_tls_files(directory)
        config = os.path.join(directory, "rsyslog.conf")
        with open(config, "w") as f:
            f.write(RSYSLOG_CONFIG.format(dir=directory, udp=self.udp_port, tcp=self.tcp_port,
                                          tls=self.tls_port))
        self.proc = subprocess.Popen(
            ["rsyslogd", "-n", "-f", config, "-i", os.path.join(directory, "rsyslogd.pid")],
            stdout=open(os.path.join(directory, "rsyslogd.log"), "wb"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for(self._ready, what="rsyslogd to listen")

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("rsyslogd exited: " + open(os.path.join(self.dir, "rsyslogd.log")).read())
        if not os.path.exists(self.socket):
            return False
        for port in (self.tcp_port, self.tls_port):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
        return True

    def messages(self, count, timeout=15):
        """The first `count` messages rsyslog wrote, each a dict of RSYSLOG_FIELDS."""
        def parsed():
            if not os.path.exists(self.output):
                return None
            with open(self.output, errors="replace") as f:
                lines = f.read().splitlines()
            return lines if len(lines) >= count else None
        lines = wait_for(parsed, timeout, "%d rsyslog messages" % count)
        return [dict(zip(RSYSLOG_FIELDS, line.split("\x1f"))) for line in lines]

    def messages_with(self, marker, count):
        """The messages whose text holds marker, once there are count of them."""
        def marked():
            found = [m for m in self.messages(0) if marker in m.get("msg", "")]
            return found if len(found) >= count else None
        return wait_for(marked, what="%d rsyslog messages marked %s" % (count, marker))

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


# Fields separated by \x1f, so any message text survives; rate limits off for bursts.
RSYSLOG_CONFIG = """
global(workDirectory="{dir}"
       DefaultNetstreamDriverCAFile="{dir}/ca.pem"
       DefaultNetstreamDriverCertFile="{dir}/server.pem"
       DefaultNetstreamDriverKeyFile="{dir}/server.key")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{dir}/log.sock" RateLimit.Interval="0" UseSysTimeStamp="off")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{udp}" RateLimit.Interval="0")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
input(type="imtcp" address="127.0.0.1" port="{tls}" StreamDriver.Name="gtls"
      StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
template(name="fields" type="string"
         string="%pri%\x1f%hostname%\x1f%syslogtag%\x1f%app-name%\x1f%procid%\x1f%msgid%\x1f%timereported:::date-rfc3339%\x1f%msg%\\n")
*.* action(type="omfile" file="{dir}/out.log" template="fields")
"""


def make_tls_files(directory):
    """A CA and a server certificate for 127.0.0.1 (openssl); the CA's path."""
    def openssl(*args):
        subprocess.run(["openssl"] + list(args), cwd=directory, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=pydockerd test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    with open(os.path.join(directory, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return os.path.join(directory, "ca.pem")


# -- GELF ------------------------------------------------------------------------------------------

def gelf_payload(data):
    """A GELF datagram's JSON, undoing gzip or zlib as Graylog does (by the magic bytes)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    elif data[:1] == b"\x78":
        data = zlib.decompress(data)
    return json.loads(data)


class GelfUDP(object):
    """A GELF UDP input: reassembles chunked messages; keeps each message's datagrams."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = "udp://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.datagrams = []
        self._chunks = {}
        self._done = []

    def messages(self, count, timeout=15):
        deadline = time.monotonic() + timeout
        while len(self._done) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
                raise AssertionError("got %d of %d GELF messages" % (len(self._done), count))
            self._take(self.sock.recv(65536))
        return [gelf_payload(data) for data, _ in self._done]

    def chunk_counts(self):
        return [chunks for _, chunks in self._done]

    def _take(self, datagram):
        self.datagrams.append(datagram)
        if datagram[:2] != b"\x1e\x0f":
            self._done.append((datagram, 1))
            return
        message_id, index, count = datagram[2:10], datagram[10], datagram[11]
        parts = self._chunks.setdefault(message_id, {})
        parts[index] = datagram[12:]
        if len(parts) == count:
            del self._chunks[message_id]
            self._done.append((b"".join(parts[i] for i in range(count)), count))

    def close(self):
        self.sock.close()


class StreamReceiver(object):
    """A TCP (or unix stream) listener that keeps what every connection sent. With
    reading=False it accepts but stops reading, so a sender stalls once the buffers fill;
    stop() closes everything (a destination that disappears)."""

    def __init__(self, unix_path=None, rcvbuf=None):
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
        if rcvbuf:  # inherited by accepted sockets: a stalled reader stalls the sender soon
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.listen(8)
        self.data = bytearray()
        self.reading = threading.Event()
        self.reading.set()
        self._stopped = False
        self.connections = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        while not self._stopped:
            self.reading.wait()
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self.data += chunk

    def received(self):
        with self._lock:
            return bytes(self.data)

    def stop(self):
        self._stopped = True
        self.reading.set()
        for sock in [self.sock] + self.connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def gelf_tcp_messages(data):
    return [json.loads(frame) for frame in data.split(b"\0") if frame]


def forward_events(data):
    """Fluentd forward-protocol events from raw bytes: [tag, time, record, option] lists;
    an EventTime comes back as msgpack.ExtType(0, 8 bytes)."""
    unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape")
    unpacker.feed(data)
    return list(unpacker)


def event_time(ext):
    assert ext.code == 0 and len(ext.data) == 8
    return struct.unpack(">II", ext.data)


# -- journald ----------------------------------------------------------------------------------------

class JournalSocket(object):
    """The datagram end of /run/systemd/journal/socket, at a path of the test's."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.memfd_seals = []

    def entries(self, count, timeout=15):
        entries = []
        while len(entries) < count:
            if not select.select([self.sock], [], [], timeout)[0]:
                raise AssertionError("got %d of %d journal entries" % (len(entries), count))
            data, ancillary, _, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(4 * 4))
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    data = self._read_memfd(struct.unpack("i", payload[:4])[0])
            entries.append(parse_journal_entry(data))
        return entries

    def _read_memfd(self, fd):
        """What journald does with a passed fd: check the seals, then read the entry."""
        try:
            self.memfd_seals.append(fcntl.fcntl(fd, fcntl.F_GET_SEALS))
            return os.pread(fd, os.fstat(fd).st_size, 0)
        finally:
            os.close(fd)

    def close(self):
        self.sock.close()
        os.unlink(self.path)


def parse_journal_entry(data):
    """The native protocol: NAME=value lines, or NAME\\n, a 64-bit LE length, value\\n."""
    fields = {}
    position = 0
    while position < len(data):
        newline = data.index(b"\n", position)
        line = data[position:newline]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            position = newline + 1
        else:
            name = line
            size = struct.unpack("<Q", data[newline + 1:newline + 9])[0]
            value = data[newline + 9:newline + 9 + size]
            assert data[newline + 9 + size:newline + 10 + size] == b"\n"
            position = newline + 10 + size
        fields[name.decode()] = value
    return fields


# -- fixtures ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory):
    server = Rsyslog(str(tmp_path_factory.mktemp("rsyslog")))
    yield server
    server.stop()


@pytest.fixture
def gelf_udp():
    receiver = GelfUDP()
    yield receiver
    receiver.close()


@pytest.fixture
def forward():
    """A forward-protocol (or any stream) receiver on loopback, quick to stall."""
    receiver = StreamReceiver(rcvbuf=4096)
    yield receiver
    receiver.stop()
