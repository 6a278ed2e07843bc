"""rtnetlink: links, addresses and routes, spoken over an AF_NETLINK socket with struct.

libnetwork configures the network through the vishvananda/netlink package (LinkAdd, LinkSetUp,
LinkSetMaster, LinkSetNsFd, LinkSetHairpin, AddrAdd, RouteAdd ...), never through the `ip`
binary. This module is that package's small subset for the bridge driver: a Handle is one
NETLINK_ROUTE socket, optionally opened inside another network namespace.

The wire format (linux/netlink.h, linux/rtnetlink.h), all integers in host byte order. Every
datagram holds one or more messages, each padded to a multiple of 4 bytes:

    struct nlmsghdr   u32 len (header included), u16 type, u16 flags, u32 seq, u32 pid
    then a family header, by message type:
      RTM_{NEW,DEL,GET,SET}LINK  struct ifinfomsg  u8 family, pad, u16 type, s32 index,
                                                   u32 flags (IFF_UP ...), u32 change (mask)
      RTM_{NEW,DEL,GET}ADDR      struct ifaddrmsg  u8 family, u8 prefixlen, u8 flags,
                                                   u8 scope, u32 index
      RTM_{NEW,DEL,GET}ROUTE     struct rtmsg      u8 family, dst_len, src_len, tos, table,
                                                   protocol, scope, type, u32 flags
    then attributes to the end of the message:
      struct rtattr     u16 len (header included), u16 type, payload, padded to 4 bytes

An attribute's payload may itself be a list of attributes (nesting). A link's kind lives two
levels down, and a veth's peer one level further, with a whole ifinfomsg of its own:

    IFLA_IFNAME "veth0"
    IFLA_LINKINFO
      IFLA_INFO_KIND "veth"
      IFLA_INFO_DATA
        VETH_INFO_PEER  ifinfomsg + IFLA_IFNAME "eth0"

The kernel answers a request flagged NLM_F_ACK with an NLMSG_ERROR message (s32 error, 0 for
success or -errno, then the request's header) and a NLM_F_DUMP request with NLM_F_MULTI
messages over as many datagrams as it needs, ended by NLMSG_DONE. Replies carry the request's
sequence number; a dump that raced a change is flagged NLM_F_DUMP_INTR and is asked again.
"""
import errno
import ipaddress
import os
import socket
import struct
import threading

from drivers import linux

# Message types, flags and the fixed headers (linux/netlink.h, linux/rtnetlink.h).
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP_INTR = 0x1, 0x2, 0x4, 0x10
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLMSGHDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")
IFADDRMSG = struct.Struct("=BBBBI")
IFA_F_NODAD = 0x02
RTMSG = struct.Struct("=BBBBBBBBI")
RTATTR = struct.Struct("=HH")
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3fff  # the type without NLA_F_NESTED / NLA_F_NET_BYTEORDER

# Attributes (linux/if_link.h, linux/veth.h, linux/if_addr.h, linux/rtnetlink.h).
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_PROTINFO = 1, 3, 4, 10, 12
IFLA_LINKINFO, IFLA_NET_NS_PID, IFLA_NET_NS_FD = 18, 19, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin mode of a bridge port
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
IFF_UP = 0x1
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3  # "installed by an administrator", what `ip route add` uses
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1

# The kernel caps one dump datagram at about 32 KiB (netlink_recvmsg's max_recvmsg_len).
RECV_SIZE = 65536
DUMP_TRIES = 5


class NetlinkError(OSError):
    """A request the kernel refused: errno from NLMSG_ERROR, and a message that names the
    operation, e.g. NetlinkError(17, "File exists: add link docker0 (bridge)")."""


def _error(err, what):
    return NetlinkError(err, "%s: %s" % (os.strerror(err), what))


def netns_of_pid(pid):
    """The network namespace file of a process, for Handle(netns=...)."""
    return "/proc/%d/ns/net" % pid


# -- encoding and decoding ------------------------------------------------------------------

def _align(length):
    return (length + 3) & ~3


def _attr(kind, payload):
    """One rtattr; `payload` is bytes, a str (sent NUL-terminated) or an int (sent as u32)."""
    if isinstance(payload, str):
        payload = payload.encode() + b"\0"
    elif isinstance(payload, int):
        payload = struct.pack("=I", payload)
    length = RTATTR.size + len(payload)
    return RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def _attrs(data):
    """Decode a run of rtattrs into {type: payload} (a nested one is decoded again by hand)."""
    found, offset = {}, 0
    while offset + RTATTR.size <= len(data):
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size:
            break
        found[kind & NLA_TYPE_MASK] = data[offset + RTATTR.size:offset + length]
        offset += _align(length)
    return found


def _string(payload):
    return payload.split(b"\0", 1)[0].decode()


def _u32(payload):
    return struct.unpack("=I", payload[:4])[0]


def _ifinfomsg(index=0, flags=0, change=0, family=socket.AF_UNSPEC):
    return IFINFOMSG.pack(family, 0, index, flags, change)


def _messages(data):
    """Split a datagram into (type, flags, seq, payload) messages."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size:
            break
        yield kind, flags, seq, data[offset + NLMSGHDR.size:offset + length]
        offset += _align(length)


def _mac_bytes(mac):
    """"02:42:ac:11:00:02" -> 6 bytes, or ValueError before anything is sent."""
    raw = bytes.fromhex(mac.replace(":", "")) if mac.count(":") == 5 else b""
    if len(raw) != 6:
        raise ValueError("invalid MAC address: %s" % mac)
    return raw


def _link(payload):
    """An RTM_NEWLINK reply as the dict Handle.link returns."""
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(payload)
    attrs = _attrs(payload[IFINFOMSG.size:])
    linkinfo = _attrs(attrs.get(IFLA_LINKINFO, b""))
    return {"name": _string(attrs.get(IFLA_IFNAME, b"")),
            "index": index,
            "mtu": _u32(attrs[IFLA_MTU]) if IFLA_MTU in attrs else 0,
            "mac": ":".join("%02x" % b for b in attrs.get(IFLA_ADDRESS, b"")),
            "master": _u32(attrs[IFLA_MASTER]) if IFLA_MASTER in attrs else 0,
            "kind": _string(linkinfo.get(IFLA_INFO_KIND, b"")),
            "up": bool(flags & IFF_UP)}


def _family(version):
    return socket.AF_INET if version == 4 else socket.AF_INET6


# -- the namespace ----------------------------------------------------------------------------

def _route_socket():
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         socket.NETLINK_ROUTE)
    sock.bind((0, 0))  # port id 0: the kernel picks a free one
    return sock


def _route_socket_in(netns):
    """A NETLINK_ROUTE socket of the namespace behind the file `netns`.

    A netlink socket belongs to the namespace its creator was in when it was made, and stays
    there. So a short-lived thread joins the namespace, makes the socket and ends: setns
    moves only the calling thread, so the caller's own thread never moves (a thread pool
    would be wrong here: a reused thread would stay in the foreign namespace).
    """
    try:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise _error(err.errno, "open network namespace %s" % netns) from None
    outcome = {}

    def enter_and_open():
        try:
            linux.setns(fd, linux.CLONE_NEWNET)
            outcome["socket"] = _route_socket()
        except OSError as err:
            outcome["error"] = err

    try:
        thread = threading.Thread(target=enter_and_open, name="netlink-setns")
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if "error" in outcome:
        raise _error(outcome["error"].errno, "enter network namespace %s" % netns)
    return outcome["socket"]


class Handle(object):
    """A NETLINK_ROUTE socket in one network namespace (a context manager).

    netns: None for the caller's namespace, else the path of a namespace file
    (/proc/<pid>/ns/net, /var/run/netns/<name>). Links are named by name, as in dockerd.
    One Handle may be shared by threads: a lock keeps each request and its replies together.
    """

    def __init__(self, netns=None):
        self._sock = _route_socket() if netns is None else _route_socket_in(netns)
        self._lock = threading.Lock()
        self._seq = 0

    def close(self):
        with self._lock:
            self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the exchange ---------------------------------------------------------------------------

    def _exchange(self, kind, flags, body, what):
        """Send one message and collect its replies' (type, payload) until the ACK or DONE."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), kind,
                                          NLM_F_REQUEST | flags, seq, 0) + body)
            replies, interrupted = [], False
            while True:
                for rkind, rflags, rseq, payload in _messages(self._sock.recv(RECV_SIZE)):
                    if rseq != seq:
                        continue  # left over from a request an exception cut short
                    interrupted |= bool(rflags & NLM_F_DUMP_INTR)
                    if rkind in (NLMSG_ERROR, NLMSG_DONE):
                        # Both start with an s32: 0, or -errno (a DONE carries a dump's error).
                        err = -struct.unpack_from("=i", payload)[0] if payload else 0
                        if err:
                            raise _error(err, what)
                        if interrupted:
                            raise _error(errno.EINTR, what + " (the dump was interrupted)")
                        return replies
                    replies.append((rkind, payload))

    def _request(self, kind, body, what, flags=0):
        """A request the kernel acknowledges; returns what it answered before the ACK."""
        return self._exchange(kind, NLM_F_ACK | flags, body, what)

    def _dump(self, kind, body, what):
        """All the objects of a kind; a dump that raced a change is asked again."""
        for attempt in range(DUMP_TRIES):
            try:
                return self._exchange(kind, NLM_F_DUMP, body, what)
            except NetlinkError as err:
                if err.errno != errno.EINTR or attempt == DUMP_TRIES - 1:
                    raise

    # -- links ----------------------------------------------------------------------------------

    def link(self, name):
        """The link called `name`: dict(name, index, mtu, mac, master, kind, up).
        NetlinkError ENODEV when there is none."""
        replies = self._request(RTM_GETLINK, _ifinfomsg() + _attr(IFLA_IFNAME, name),
                                "could not find link %s" % name)
        return _link(replies[0][1])

    def link_index(self, name):
        """The index of the link called `name`, or None when there is none."""
        try:
            return self.link(name)["index"]
        except NetlinkError as err:
            if err.errno != errno.ENODEV:
                raise
            return None

    def _index(self, name, role="link"):
        index = self.link_index(name)
        if index is None:
            raise _error(errno.ENODEV, "could not find %s %s" % (role, name))
        return index

    def links(self):
        return [_link(payload) for _kind, payload in
                self._dump(RTM_GETLINK, _ifinfomsg(), "list links")]

    def _add_link(self, name, kind, what, mtu=None, mac=None, data=None, master=None, up=False):
        """RTM_NEWLINK that fails with EEXIST rather than touch an existing link. master (a
        bridge's name) and up are applied by the kernel as part of the creation."""
        linkinfo = _attr(IFLA_INFO_KIND, kind)
        if data is not None:
            linkinfo += _attr(IFLA_INFO_DATA, data)
        flags = IFF_UP if up else 0
        body = (_ifinfomsg(flags=flags, change=flags) + _attr(IFLA_IFNAME, name)
                + _attr(IFLA_LINKINFO, linkinfo))
        if master is not None:
            body += _attr(IFLA_MASTER, self._index(master, "bridge"))
        if mtu is not None:
            body += _attr(IFLA_MTU, mtu)
        if mac is not None:
            body += _attr(IFLA_ADDRESS, _mac_bytes(mac))
        self._request(RTM_NEWLINK, body, what, NLM_F_CREATE | NLM_F_EXCL)

    def add_bridge(self, name, mtu=None, mac=None):
        self._add_link(name, "bridge", "add link %s (bridge)" % name, mtu, mac)

    def add_veth(self, name, peer_name, mtu=None, peer_netns_fd=None, peer_mac=None,
                 master=None, up=False):
        """A veth pair; both ends get `mtu` (the kernel would give the peer its default).

        With peer_netns_fd the peer is born in that network namespace: moving a link between
        namespaces afterwards costs the kernel an RCU grace period or two (some 20 ms here),
        creating it there costs nothing extra. peer_mac sets the peer's address at birth,
        master attaches the first end to that bridge and up brings it up: one request instead
        of three. (The peer cannot be born up: the kernel opens it before the pair is linked,
        ENOTCONN.)
        """
        peer = _ifinfomsg() + _attr(IFLA_IFNAME, peer_name)
        if mtu is not None:
            peer += _attr(IFLA_MTU, mtu)
        if peer_mac is not None:
            peer += _attr(IFLA_ADDRESS, _mac_bytes(peer_mac))
        if peer_netns_fd is not None:
            peer += _attr(IFLA_NET_NS_FD, peer_netns_fd)
        self._add_link(name, "veth", "add link %s (veth, peer %s)" % (name, peer_name), mtu,
                       data=_attr(VETH_INFO_PEER, peer), master=master, up=up)

    def delete_link(self, name):
        """Delete a link; deleting either end of a veth pair deletes both."""
        self._request(RTM_DELLINK, _ifinfomsg() + _attr(IFLA_IFNAME, name),
                      "delete link %s" % name)

    def _set_link(self, name, what, attrs=b"", flags=0, change=0):
        """RTM_SETLINK of the link named by IFLA_IFNAME (the kernel looks it up)."""
        body = _ifinfomsg(flags=flags, change=change) + _attr(IFLA_IFNAME, name) + attrs
        self._request(RTM_SETLINK, body, what)

    def set_up(self, name):
        self._set_link(name, "set link %s up" % name, flags=IFF_UP, change=IFF_UP)

    def set_down(self, name):
        self._set_link(name, "set link %s down" % name, change=IFF_UP)

    def set_mtu(self, name, mtu):
        self._set_link(name, "set mtu of %s to %d" % (name, mtu), _attr(IFLA_MTU, mtu))

    def set_mac(self, name, mac):
        self._set_link(name, "set mac address of %s to %s" % (name, mac),
                       _attr(IFLA_ADDRESS, _mac_bytes(mac)))

    def set_master(self, name, master):
        """Attach the link to the bridge `master`, or detach it with master=None."""
        index = 0 if master is None else self._index(master, "bridge")
        self._set_link(name, "set master of %s to %s" % (name, master or "none"),
                       _attr(IFLA_MASTER, index))

    def set_netns(self, name, pid=None, fd=None):
        """Move the link into the network namespace of process `pid`, or of the open
        namespace file `fd`. It arrives there down and without addresses."""
        if (pid is None) == (fd is None):
            raise ValueError("set_netns needs exactly one of pid and fd")
        attr = _attr(IFLA_NET_NS_PID, pid) if fd is None else _attr(IFLA_NET_NS_FD, fd)
        target = "pid %d" % pid if fd is None else "fd %d" % fd
        self._set_link(name, "move link %s to the network namespace of %s" % (name, target),
                       attr)

    def rename(self, name, new_name):
        """Rename a link. Rename it while it is down: kernels before 6.2 refuse to rename a
        link that is up (EBUSY), so a veth end becomes eth0 before it is set up."""
        body = _ifinfomsg(self._index(name)) + _attr(IFLA_IFNAME, new_name)
        self._request(RTM_SETLINK, body, "rename link %s to %s" % (name, new_name))

    def set_bridge_port_hairpin(self, name, on):
        """Hairpin mode of a bridge port: frames may leave by the port they came in on, so a
        container reaches itself through a published port (the userland-proxy-off case).
        An AF_BRIDGE RTM_SETLINK with IFLA_PROTINFO nested, as `bridge link set hairpin`."""
        protinfo = _attr(IFLA_BRPORT_MODE, bytes([1 if on else 0]))
        body = (_ifinfomsg(self._index(name), family=socket.AF_BRIDGE)
                + _attr(IFLA_PROTINFO | NLA_F_NESTED, protinfo))
        self._request(RTM_SETLINK, body, "set hairpin mode of %s %s"
                      % (name, "on" if on else "off"))

    # -- addresses --------------------------------------------------------------------------

    def _address(self, kind, name, cidr, what, flags=0, address_flags=0):
        """RTM_NEWADDR/RTM_DELADDR of `cidr` ("172.17.0.1/16", "fd00::1/64") on a link."""
        interface = ipaddress.ip_interface(cidr)  # ValueError on bad input, nothing sent
        network = interface.network
        body = IFADDRMSG.pack(_family(interface.version), network.prefixlen, address_flags,
                              RT_SCOPE_UNIVERSE, self._index(name))
        body += _attr(IFA_LOCAL, interface.ip.packed) + _attr(IFA_ADDRESS, interface.ip.packed)
        # `ip addr add ... brd +`: IPv4 subnets with room for one get a broadcast address.
        if kind == RTM_NEWADDR and interface.version == 4 and network.prefixlen <= 30:
            body += _attr(IFA_BROADCAST, network.broadcast_address.packed)
        self._request(kind, body, what, flags)

    def add_address(self, name, cidr, nodad=False):
        """nodad: an IPv6 address usable at once, without duplicate address detection's
        second or two of "tentative" (libnetwork adds container addresses this way)."""
        self._address(RTM_NEWADDR, name, cidr, "add address %s to %s" % (cidr, name),
                      NLM_F_CREATE | NLM_F_EXCL, IFA_F_NODAD if nodad else 0)

    def del_address(self, name, cidr):
        self._address(RTM_DELADDR, name, cidr, "delete address %s from %s" % (cidr, name))

    def addresses(self, name=None, family=socket.AF_INET):
        """The addresses of one family as "address/prefixlen", of one link or of all."""
        index = None if name is None else self._index(name)
        found = []
        for _kind, payload in self._dump(RTM_GETADDR, IFADDRMSG.pack(family, 0, 0, 0, 0),
                                         "list addresses"):
            afamily, prefixlen, _flags, _scope, aindex = IFADDRMSG.unpack_from(payload)
            if afamily != family or index not in (None, aindex):
                continue
            attrs = _attrs(payload[IFADDRMSG.size:])
            # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on a
            # point-to-point link, and the only one IPv6 sends.
            raw = attrs.get(IFA_LOCAL) or attrs[IFA_ADDRESS]
            found.append("%s/%d" % (ipaddress.ip_address(raw), prefixlen))
        return found

    # -- routes -----------------------------------------------------------------------------

    def add_route(self, dst=None, gateway=None, name=None):
        """A main-table route to `dst` ("10.0.0.0/8", None for the default route) via
        `gateway` and/or out of the link `name`; the family follows dst or gateway."""
        network = ipaddress.ip_network(dst) if dst is not None else None
        via = ipaddress.ip_address(gateway) if gateway is not None else None
        versions = {value.version for value in (network, via) if value is not None}
        if len(versions) > 1:
            raise ValueError("route to %s via %s mixes IPv4 and IPv6" % (dst, gateway))
        family = _family(versions.pop() if versions else 4)
        # Like `ip route add`: an IPv4 route without a gateway reaches hosts on the link.
        scope = RT_SCOPE_LINK if via is None and family == socket.AF_INET else RT_SCOPE_UNIVERSE
        body = RTMSG.pack(family, network.prefixlen if network else 0, 0, 0, RT_TABLE_MAIN,
                          RTPROT_BOOT, scope, RTN_UNICAST, 0)
        what = "add route %s" % (dst or "default")
        if network is not None:
            body += _attr(RTA_DST, network.network_address.packed)
        if via is not None:
            body += _attr(RTA_GATEWAY, via.packed)
            what += " via %s" % gateway
        if name is not None:
            body += _attr(RTA_OIF, self._index(name))
            what += " dev %s" % name
        self._request(RTM_NEWROUTE, body, what, NLM_F_CREATE | NLM_F_EXCL)

    def routes(self, family=socket.AF_INET):
        """The main table's routes: dict(dst "10.0.0.0/8" or "0.0.0.0/0", gateway or None,
        name of the outgoing link or None, table)."""
        names = {link["index"]: link["name"] for link in self.links()}
        found = []
        for _kind, payload in self._dump(RTM_GETROUTE, RTMSG.pack(family, 0, 0, 0, 0, 0, 0,
                                                                  0, 0), "list routes"):
            rfamily, dst_len, _src, _tos, table, _proto, _scope, _type, _flags = \
                RTMSG.unpack_from(payload)
            attrs = _attrs(payload[RTMSG.size:])
            table = _u32(attrs[RTA_TABLE]) if RTA_TABLE in attrs else table
            if rfamily != family or table != RT_TABLE_MAIN:
                continue
            size = 4 if family == socket.AF_INET else 16
            gateway = attrs.get(RTA_GATEWAY)
            found.append({
                "dst": "%s/%d" % (ipaddress.ip_address(attrs.get(RTA_DST, bytes(size))), dst_len),
                "gateway": str(ipaddress.ip_address(gateway)) if gateway else None,
                "name": names.get(_u32(attrs[RTA_OIF])) if RTA_OIF in attrs else None,
                "table": table})
        return found
