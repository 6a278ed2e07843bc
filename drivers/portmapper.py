"""Published ports on the daemon's side: libnetwork's portallocator and the proxy's listeners.

`docker run -p [ip:][hostPort:]containerPort[/proto]` publishes a container port on the host.
dockerd takes two steps for each host ip, port and proto (wire.md section 24):

  * the port allocator marks the host port as taken (PortAllocator.request). An empty
    hostPort gets the next free ephemeral port: dockerd hands them out in order from the
    start of /proc/sys/net/ipv4/ip_local_port_range (32768-60999 on Linux; 49153-65535 when
    the file cannot be read), one cursor per host ip and proto, wrapping at the end and
    skipping ports still taken. A port already taken for the same ip and proto fails with
    "Bind for 0.0.0.0:8080 failed: port is already allocated";
  * the userland proxy binds the port (open_listener). dockerd's docker-proxy did that in
    its own process; pydockerd binds in the daemon, so that a failure is reported at once
    with docker-proxy's words ("Error starting userland proxy: listen tcp4 0.0.0.0:8080:
    bind: address already in use"), then hands the socket to the container's monitor
    (monitor.Monitor.proxy), which forwards the traffic (drivers/proxy.py) and closes the
    port when the container stops.

Conflicts between addresses. The allocator keeps one table per host ip, like libnetwork's:
0.0.0.0:8080 and 127.0.0.1:8080 are different entries there, and it is the kernel that
refuses the second bind (a wildcard and a specific address of one family overlap), so the
user reads dockerd's bind error, not "already allocated". An ephemeral request, though,
skips ports that an overlapping address holds (0.0.0.0 overlaps every IPv4 address, :: every
IPv6 one): libnetwork does not, and hands out a port whose bind must then fail.

IPv6 listeners are IPv6-only (IPV6_V6ONLY, like Go's tcp6/udp6), so 0.0.0.0 and :: are two
independent sockets: an empty HostIp publishes on both (wire.md gotcha 13).
"""
import ipaddress
import os
import socket
import threading

# dockerd's range when ip_local_port_range cannot be read.
DEFAULT_PORT_RANGE = (49153, 65535)

PROTOCOLS = ("tcp", "udp")


class PortAllocatorError(Exception):
    """A host port that cannot be had; the message is dockerd's."""


def normalize_ip(host_ip):
    """The address as Go's net.IP.String() writes it; "" is 0.0.0.0, an IPv4-mapped IPv6
    address is the IPv4 one (Go treats both as IPv4). Raises PortAllocatorError."""
    try:
        address = ipaddress.ip_address(host_ip or "0.0.0.0")
    except ValueError:
        raise PortAllocatorError("Invalid ip address: %s" % host_ip) from None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def _is_wildcard(ip):
    return ip in ("0.0.0.0", "::")


def _family(ip):
    return 6 if ":" in ip else 4


def _read_port_range(path):
    """(first, last) from an ip_local_port_range file, or dockerd's default range."""
    try:
        with open(path) as f:
            first, last = (int(field) for field in f.read().split())
    except (OSError, ValueError):
        return DEFAULT_PORT_RANGE
    if not 0 < first <= last <= 65535:
        return DEFAULT_PORT_RANGE
    return first, last


class PortAllocator(object):
    """portallocator: host ports per (host ip, proto); ephemeral ones from ip_local_port_range.

    Safe to use from many threads. The allocator only books ports: whether the host will
    let us bind one is open_listener's business.
    """

    def __init__(self, range_path="/proc/sys/net/ipv4/ip_local_port_range"):
        self.begin, self.end = _read_port_range(range_path)
        self._lock = threading.Lock()
        self._taken = {}   # (ip, proto) -> set of ports
        self._last = {}    # (ip, proto) -> the last ephemeral port handed out

    def request(self, host_ip, proto, port=0):
        """Book port (0: the next free ephemeral one) for host_ip and proto; the port."""
        ip, port = normalize_ip(host_ip), int(port)
        _check(proto, port)
        with self._lock:
            taken = self._taken.setdefault((ip, proto), set())
            if port == 0:
                port = self._next_free(ip, proto)
            elif port in taken:
                raise PortAllocatorError("Bind for %s:%d failed: port is already allocated"
                                         % (ip, port))
            taken.add(port)
            return port

    def release(self, host_ip, proto, port):
        """Give a port back; releasing a port that is not booked does nothing."""
        with self._lock:
            self._taken.get((normalize_ip(host_ip), proto), set()).discard(int(port))

    def reserve(self, host_ip, proto, port):
        """Book a port again at daemon restore: its listener lives on in a monitor, so it
        is ours whatever the table says."""
        ip, port = normalize_ip(host_ip), int(port)
        _check(proto, port)
        with self._lock:
            self._taken.setdefault((ip, proto), set()).add(port)

    def _next_free(self, ip, proto):
        """libnetwork's findPort: the port after the last one handed out, wrapping, skipping
        ports booked for ip or for an address overlapping it."""
        overlapping = [ports for (other, other_proto), ports in self._taken.items()
                       if other_proto == proto and _overlap(ip, other)]
        port = self._last.get((ip, proto), self.end)
        for _ in range(self.end - self.begin + 1):
            port = self.begin if port >= self.end else port + 1
            if not any(port in ports for ports in overlapping):
                self._last[(ip, proto)] = port
                return port
        raise PortAllocatorError("all ports are allocated")


def _check(proto, port):
    if proto not in PROTOCOLS:
        raise PortAllocatorError("unknown protocol")
    if not 0 <= port <= 65535:
        raise PortAllocatorError("Invalid hostPort: %d" % port)


def _overlap(ip, other):
    """Whether two host addresses cannot both have a port: the same, or a wildcard and an
    address of its family."""
    if ip == other:
        return True
    return _family(ip) == _family(other) and (_is_wildcard(ip) or _is_wildcard(other))


def open_listener(proto, host_ip, host_port):
    """docker-proxy's listener for host_ip:host_port: a listening TCP socket (SO_REUSEADDR,
    as Go's net.Listen sets it) or a bound UDP socket; IPv6 ones are IPv6-only.

    Raises OSError with docker-proxy's message, e.g. "Error starting userland proxy: listen
    tcp4 0.0.0.0:8080: bind: address already in use" (the errno's text, as Go spells it);
    PortAllocatorError for a bad proto, ip or port.
    """
    ip = normalize_ip(host_ip)
    _check(proto, host_port)
    family = socket.AF_INET6 if _family(ip) == 6 else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    address = ("[%s]:%d" if family == socket.AF_INET6 else "%s:%d") % (ip, host_port)
    sock, step = None, "socket"
    try:
        sock = socket.socket(family, kind)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        step = "bind"
        sock.bind((ip, host_port))
        if kind == socket.SOCK_STREAM:
            step = "listen"
            sock.listen(socket.SOMAXCONN)
    except OSError as err:
        if sock is not None:
            sock.close()
        raise OSError("Error starting userland proxy: listen %s%d %s: %s: %s"
                      % (proto, _family(ip), address, step, _go_strerror(err))) from err
    return sock


def _go_strerror(err):
    """Go's text for an errno: the C library's, lower-cased at the start."""
    if err.errno is None:
        return str(err)
    text = os.strerror(err.errno)
    return text[:1].lower() + text[1:]
