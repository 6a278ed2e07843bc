"""The bridge driver (libnetwork drivers/bridge): one Linux bridge per network, a veth per endpoint.

A bridge network is a Linux bridge in the daemon's network namespace, addressed with the
network's gateway (docker0 is 172.17.0.1/16 by default). Each endpoint is a veth pair:

    daemon's namespace                       container's namespace
    docker0 (172.17.0.1/16) <- master -- vethXXXXXXX  <====>  eth0 (172.17.0.2/16, 02:42:ac:11:00:02)
                                                                default via 172.17.0.1

The pair is made in the daemon's namespace, the peer is moved into the container's namespace
(while the container's first process still waits before execve, so its command never runs
without its network), renamed eth0 (eth1, ... for further networks), given the MAC derived from
its address, the network's MTU, its address and, on the container's first network, the default
route through the gateway. Deleting the host end deletes the pair; so does the death of the
container's namespace.

Everything here goes through rtnetlink (drivers/netlink.py); iptables rules for the network
and its endpoints are the controller's business (drivers/iptables.py).
"""
import errno
import ipaddress
import os
import socket

from drivers import errdefs, netlink

DEFAULT_BRIDGE = "docker0"


def random_mac():
    """A locally administered unicast MAC: dockerd gives bridges a random one."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFE) | 0x02
    return ":".join("%02x" % octet for octet in octets)


def bridge_exists(handle, name):
    return handle.link_index(name) is not None


def ipv4_address(handle, name):
    """The first IPv4 address of a link as an ip_interface, or None (`-b br0` uses it)."""
    addresses = handle.addresses(name, socket.AF_INET)
    return ipaddress.ip_interface(addresses[0]) if addresses else None


def setup_bridge(handle, name, gateway, prefix_length, mtu):
    """setupDevice + setupBridgeIPv4: make (or reuse) the bridge, address it, bring it up.

    Returns (whether the bridge was created here, whether the gateway address was added
    here): only what the daemon made may be deleted by it later. An existing bridge keeps its
    own addresses; the gateway is added if missing.
    """
    created = False
    if not bridge_exists(handle, name):
        handle.add_bridge(name, mtu=mtu, mac=random_mac())
        created = True
    elif handle.link(name)["kind"] != "bridge":
        raise errdefs.Forbidden("device %s already exists and is not a bridge" % name)
    wanted = "%s/%d" % (gateway, prefix_length)
    added = False
    try:
        if wanted not in handle.addresses(name, socket.AF_INET):
            handle.add_address(name, wanted)
            added = True
        handle.set_up(name)
    except netlink.NetlinkError:
        if created:
            handle.delete_link(name)
        raise
    return created, added


def remove_bridge(handle, name):
    try:
        handle.delete_link(name)
    except netlink.NetlinkError as err:
        if err.errno != errno.ENODEV:
            raise


def create_endpoint(handle, bridge, mtu, host_end, netns_path, ifname, mac, address,
                    prefix_length, gateway):
    """CreateEndpoint + Join: the veth pair, its host end on the bridge and up, its other end
    born in the container's namespace as `ifname` with its MAC, MTU, address and (on the
    container's first network) the default route through the gateway.

    The host end is named after the endpoint's ID, so it can be found again after a daemon
    restart with no record but the container's NetworkSettings. Making the peer inside the
    namespace, rather than moving it there, saves the kernel's slow namespace move; and the
    host end is born on the bridge and up, in the same request.
    """
    fd = os.open(netns_path, os.O_RDONLY)
    try:
        handle.add_veth(host_end, ifname, mtu=mtu, peer_netns_fd=fd, peer_mac=mac, master=bridge,
                        up=True)
    finally:
        os.close(fd)
    try:
        with netlink.Handle(netns_path) as inside:
            inside.add_address(ifname, "%s/%d" % (address, prefix_length))
            inside.set_up(ifname)
            if gateway:
                inside.add_route(gateway=gateway, name=ifname)
    except netlink.NetlinkError:
        delete_veth(handle, host_end)
        raise


def delete_veth(handle, host_end):
    """Leave/DeleteEndpoint: deleting one end removes the pair; a vanished pair is fine."""
    try:
        handle.delete_link(host_end)
    except netlink.NetlinkError as err:
        if err.errno != errno.ENODEV:
            raise


def add_ipv6(netns_path, ifname, address, prefix_length, gateway):
    """An --ipv6 network's address (and default route) on the container's interface. (A new
    network namespace starts with IPv6 enabled on its links.)"""
    with netlink.Handle(netns_path) as inside:
        inside.add_address(ifname, "%s/%d" % (address, prefix_length), nodad=True)
        if gateway:
            inside.add_route(gateway=gateway, name=ifname)


def remove_from_sandbox(netns_path, ifname):
    """Disconnect of a running container: its interface goes (and with it the host end)."""
    with netlink.Handle(netns_path) as inside:
        try:
            inside.delete_link(ifname)
        except netlink.NetlinkError as err:
            if err.errno != errno.ENODEV:
                raise


def host_veth_name(endpoint_id):
    """The host end of an endpoint's veth pair: "veth" and seven hex digits, as dockerd's."""
    return "veth" + endpoint_id[:7]


def host_routes(handle):
    """The daemon namespace's IPv4 routes that a new network's subnet must not overlap,
    except the default route and the routes of the daemon's own bridges."""
    routes = []
    for route in handle.routes(socket.AF_INET):
        network = ipaddress.ip_network(route["dst"], strict=False)
        if network.prefixlen == 0:
            continue
        routes.append((network, route.get("name")))
    return routes


def set_sysctl(path, value):
    """Write /proc/sys/<path> (net.* sysctls belong to the daemon's network namespace)."""
    with open(os.path.join("/proc/sys", path), "w") as sysctl:
        sysctl.write(value)
