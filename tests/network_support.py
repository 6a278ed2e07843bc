"""Helpers for the networking tests: a daemon in a network namespace of its own, and the
clients, servers and snapshots the tests run in that namespace.

Every daemon here runs with `netns=True` (conftest.DaemonProcess), so its docker0, iptables
chains and published ports are private. Clients run in the daemon's namespace through
`nsenter --net=...` as small stdlib Python programs: an HTTP GET (urllib), a UDP echo
client, a program holding a TCP port, a DNS responder on 127.0.0.1:53 (the upstream server
the embedded DNS forwards to). The snapshots (`iptables-save`, `ip -o link`, the listening
sockets, linkgraph.db's link edges) are what "nothing half made" is checked against.
"""
import contextlib
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import tarfile
import time

from containers_support import busybox_daemon
from registry_fixtures import write_tar

# The host's Python inside a busybox container (a UDP server the image cannot run itself):
# /usr and the loader's directories, read-only. Debian merges /lib into /usr/lib.
PYTHON_IN_CONTAINER = [arg for path in ("/usr", "/lib", "/lib64") if os.path.exists(path)
                       for arg in ("-v", "%s:%s:ro" % (os.path.realpath(path), path))]


@contextlib.contextmanager
def network_daemon(archive, *flags):
    """A pydockerd in a network namespace of its own, with the busybox image loaded."""
    with busybox_daemon(archive, flags, netns=True) as daemon:
        yield daemon


def remove_user_networks(daemon):
    """DELETE every network that is not predefined (best effort, like remove_all_containers)."""
    try:
        for network in daemon.request("GET", "/networks", timeout=10).json():
            if network["Name"] not in ("bridge", "host", "none"):
                daemon.request("DELETE", "/networks/" + network["Id"], timeout=10)
    except (OSError, ValueError):
        pass


# -- programs run in the daemon's namespace --------------------------------------------------

def in_netns(daemon, *command, timeout=30, check=False, input=None):
    return subprocess.run(daemon.in_netns(*command), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, check=check, input=input)


def python_in_netns(daemon, code, *args, timeout=30):
    return in_netns(daemon, sys.executable, "-c", code, *[str(a) for a in args], timeout=timeout)


HTTP_GET = r"""
import sys, time, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
while True:
    try:
        with opener.open(url, timeout=2) as response:
            sys.stdout.write(response.read().decode())
            sys.exit(0)
    except OSError as err:
        if time.monotonic() > deadline:
            sys.stderr.write("%s: %s" % (type(err).__name__, err))
            sys.exit(1)
        time.sleep(0.1)
"""


def http_get(daemon, url, patience=5):
    """GET url with urllib from the daemon's namespace, retrying for `patience` seconds (a
    server just started); the body, or None when it never answered."""
    result = python_in_netns(daemon, HTTP_GET, url, patience, timeout=patience + 30)
    return result.stdout.decode() if result.returncode == 0 else None


UDP_ECHO_CLIENT = r"""
import socket, sys, time
address, deadline = (sys.argv[1], int(sys.argv[2])), time.monotonic() + float(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(0.3)
while time.monotonic() < deadline:
    sock.sendto(b"ping", address)
    try:
        sys.stdout.write(sock.recv(2048).decode())
        sys.exit(0)
    except OSError:
        pass
sys.exit(1)
"""

# The container side: echo every datagram back with a prefix (run with PYTHON_IN_CONTAINER).
UDP_ECHO_SERVER = r"""
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    data, peer = sock.recvfrom(2048)
    sock.sendto(b"echo:" + data, peer)
"""


def udp_echo(daemon, host, port, patience=5):
    """Send "ping" to host:port over UDP from the daemon's namespace until an answer comes;
    the answer, or None."""
    result = python_in_netns(daemon, UDP_ECHO_CLIENT, host, port, patience, timeout=patience + 30)
    return result.stdout.decode() if result.returncode == 0 else None


PORT_HOLDER = r"""
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.bind(("0.0.0.0", int(sys.argv[1])))
sock.listen(1)
print("listening", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def helper_in_netns(daemon, code, *args):
    """A Python program run in the daemon's namespace from the moment it prints its first
    line (it is ready) to the end of the with block."""
    helper = subprocess.Popen(daemon.in_netns(sys.executable, "-c", code, *args), stdout=subprocess.PIPE)
    try:
        assert helper.stdout.readline() in (b"listening\n", b"ready\n")
        yield helper
    finally:
        helper.kill()
        helper.wait()


def port_held(daemon, port):
    """Another program listening on 0.0.0.0:port in the daemon's namespace."""
    return helper_in_netns(daemon, PORT_HOLDER, str(port))


# One A record for every name asked: the upstream server the embedded DNS forwards to. It
# logs each question's name, so a test sees the query came through.
DNS_RESPONDER = r"""
import socket, struct, sys
answer, log_path = socket.inet_aton(sys.argv[1]), sys.argv[2]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    query, peer = sock.recvfrom(512)
    ident, flags = struct.unpack("!HH", query[:4])
    offset, labels = 12, []
    while query[offset]:
        labels.append(query[offset + 1:offset + 1 + query[offset]].decode())
        offset += 1 + query[offset]
    question = query[12:offset + 5]
    qtype = struct.unpack("!H", query[offset + 1:offset + 3])[0]
    with open(log_path, "a") as log:
        log.write("%s %d\n" % (".".join(labels), qtype))
    records = b""
    if qtype == 1:
        records = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + answer
    header = struct.pack("!HHHHHH", ident, 0x8180 | (flags & 0x0100), 1, 1 if records else 0, 0, 0)
    sock.sendto(header + question + records, peer)
"""


def upstream_dns(daemon, answer, log_path):
    """A DNS server on 127.0.0.1:53 in the daemon's namespace answering `answer` to every
    A question; the names asked are appended to log_path."""
    return helper_in_netns(daemon, DNS_RESPONDER, answer, log_path)


# -- what the namespace holds ----------------------------------------------------------------

def iptables_rules(daemon):
    """iptables-save without comments and counters, sorted: the tables, chains and rules."""
    text = in_netns(daemon, "iptables-save", check=True).stdout.decode()
    lines = [re.sub(r" \[\d+:\d+\]$", "", line) for line in text.splitlines()
             if line and not line.startswith("#")]
    return sorted(lines)


def link_names(daemon):
    """The interfaces of the daemon's namespace (`ip -o link`), without the @peer suffix."""
    text = in_netns(daemon, "ip", "-o", "link", check=True).stdout.decode()
    return sorted(line.split(":")[1].strip().split("@")[0] for line in text.splitlines())


def listeners(daemon):
    """(proto, port) of every listening TCP socket and bound UDP socket in the namespace."""
    found = set()
    for proto, table in (("tcp", "tcp"), ("tcp", "tcp6"), ("udp", "udp"), ("udp", "udp6")):
        text = in_netns(daemon, "cat", "/proc/net/" + table, check=True).stdout.decode()
        for line in text.splitlines()[1:]:
            fields = line.split()
            if proto == "udp" or fields[3] == "0A":  # 0A: TCP_LISTEN
                found.add((proto, int(fields[1].rsplit(":", 1)[1], 16)))
    return found


def link_edges(daemon):
    """linkgraph.db's --link edges (parent id, alias, child id); names hang off entity "0"."""
    db = sqlite3.connect(os.path.join(daemon.root, "linkgraph.db"))
    try:
        return db.execute("SELECT parent_id, name, entity_id FROM edge "
                          "WHERE parent_id IS NOT NULL AND parent_id != '0'").fetchall()
    finally:
        db.close()


def snapshot(daemon):
    """Everything a failed request must leave as it was."""
    return {"rules": iptables_rules(daemon), "links": link_names(daemon),
            "listeners": listeners(daemon), "edges": link_edges(daemon)}


# -- images ------------------------------------------------------------------------------------

def exposing_archive(archive, out, ref, ports):
    """A copy of a one-image docker-archive whose config EXPOSEs `ports` ("80/tcp"), tagged ref."""
    with tarfile.open(archive) as source:
        members = {member.name: source.extractfile(member).read() for member in source.getmembers()
                   if member.isfile()}
    manifest = json.loads(members.pop("manifest.json"))
    config = json.loads(members.pop(manifest[0]["Config"]))
    config["config"]["ExposedPorts"] = {port: {} for port in ports}
    config_bytes = json.dumps(config).encode()
    manifest[0].update(Config=hashlib.sha256(config_bytes).hexdigest() + ".json", RepoTags=[ref])
    members[manifest[0]["Config"]] = config_bytes
    members["manifest.json"] = json.dumps(manifest).encode()
    write_tar(out, members)
    return out


def wait_until(predicate, timeout=10, interval=0.1):
    """The predicate's value once truthy, or its last value when the time is up."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value
