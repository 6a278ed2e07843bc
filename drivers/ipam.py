"""IPAM: which subnet a network gets and which address each endpoint gets (libnetwork's ipam).

libnetwork's default IPAM driver hands out two things:

  * a subnet (a "pool") for a network created without --subnet: the first of the daemon's
    default address pools that overlaps neither another network nor a route of the host
    (ipamutils: 172.17.0.0/16 ... 172.31.0.0/16, then 192.168.0.0/16 cut into /20s);
  * an address for each endpoint: the first free one of the pool's allocation range (the
    whole subnet, or --ip-range / --fixed-cidr), never the network address, the broadcast
    address, the gateway, or an address already in use.

pydockerd keeps no allocation database: the addresses in use are exactly those of the
endpoints of running containers, which the controller records in each container's
NetworkSettings on disk. At boot it re-reserves them (reserve()), so IPAM survives a daemon
restart, even a `kill -9`, without a second copy of the truth that could disagree.
"""
import ipaddress
import threading

from drivers import errdefs

# ipamutils.localScopeDefaultNetworks: base, and the prefix length of each pool cut from it.
DEFAULT_ADDRESS_POOLS = [("172.%d.0.0/16" % n, 16) for n in range(17, 32)] + [("192.168.0.0/16", 20)]


def default_pools():
    """Every candidate subnet, in the order dockerd tries them."""
    for base, size in DEFAULT_ADDRESS_POOLS:
        yield from ipaddress.ip_network(base).subnets(new_prefix=size)


def pick_subnet(taken):
    """The first default pool overlapping none of `taken` (networks in use and host routes)."""
    for candidate in default_pools():
        if not any(candidate.overlaps(other) for other in taken):
            return candidate
    raise errdefs.Forbidden("could not find an available, non-overlapping IPv4 address pool "
                            "among the defaults to assign to the network")


def first_host(subnet):
    """The gateway a network gets when none is given: the subnet's first usable address."""
    return next(subnet.hosts()) if subnet.num_addresses > 2 else subnet.network_address


class AddressPool(object):
    """One network's IPv4 subnet: its gateway and the endpoint addresses handed out.

    ip_range narrows where dynamic addresses come from (--ip-range, --fixed-cidr); a static
    address (--ip) may be anywhere in the subnet, as in libnetwork.
    """

    def __init__(self, subnet, gateway=None, ip_range=None, reserved=()):
        self.subnet = ipaddress.ip_network(subnet, strict=False)
        self.gateway = ipaddress.ip_address(gateway) if gateway else first_host(self.subnet)
        self.ip_range = ipaddress.ip_network(ip_range, strict=False) if ip_range else self.subnet
        if not self.ip_range.subnet_of(self.subnet):
            raise errdefs.InvalidParameter("Invalid Address %s: It does not belong to any of this "
                                           "network's subnets" % self.ip_range)
        if self.gateway not in self.subnet:
            raise errdefs.InvalidParameter("Invalid Address %s: It does not belong to any of this "
                                           "network's subnets" % self.gateway)
        self._fixed = {self.subnet.network_address, self.subnet.broadcast_address, self.gateway}
        self._fixed.update(ipaddress.ip_address(address) for address in reserved)
        self._in_use = set()
        self._lock = threading.Lock()

    @property
    def prefix_length(self):
        return self.subnet.prefixlen

    def allocate(self, preferred=None):
        """RequestAddress: `preferred` (--ip) if it is free, else the first free address."""
        with self._lock:
            if preferred:
                address = self._check_preferred(preferred)
            else:
                address = self._first_free()
            self._in_use.add(address)
            return str(address)

    def _check_preferred(self, preferred):
        try:
            address = ipaddress.ip_address(preferred)
        except ValueError:
            raise errdefs.InvalidParameter("invalid IPv4 address: %s" % preferred) from None
        if address not in self.subnet:
            raise errdefs.InvalidParameter("Invalid address %s: It does not belong to any of this "
                                           "network's subnets" % preferred)
        if address in self._in_use or address in self._fixed:
            raise errdefs.Forbidden("Address already in use")
        return address

    def _first_free(self):
        # a /31 or /32 range has no network/broadcast addresses to skip, hosts() knows that
        for address in self.ip_range.hosts():
            if address not in self._in_use and address not in self._fixed:
                return address
        raise errdefs.Forbidden("no available IPv4 addresses on this network's address pools: "
                                "%s" % self.subnet)

    def reserve(self, address):
        """Mark an address a running endpoint already holds (restore after a restart)."""
        with self._lock:
            self._in_use.add(ipaddress.ip_address(address))

    def release(self, address):
        with self._lock:
            self._in_use.discard(ipaddress.ip_address(address))

def mac_for_ip(address):
    """GenerateMACFromIP: 02:42 followed by the IPv4 address, so 172.17.0.2 is 02:42:ac:11:00:02."""
    return "02:42:" + ":".join("%02x" % byte for byte in ipaddress.ip_address(address).packed)
