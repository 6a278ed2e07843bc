"""The network controller (libnetwork's controller, network and sandbox): one place owns every
container's network.

Docker 1.8.2's NewDaemon calls initNetworkController, which creates the default `bridge`
network on docker0, its iptables chains and NAT, and the predefined `host` and `none`
networks. Users add their own bridge networks (`docker network create`), each on a Linux bridge
of its own and isolated from the others. A container has one endpoint per network it is on:

    create   settings_for_create(): the networks named by NetworkMode and NetworkingConfig
             checked and recorded in the container's NetworkSettings (no address yet)
    start    allocate(): addresses (IPAM), host ports, /etc/hosts, /etc/resolv.conf, /etc/hostname,
             the --link variables; then the container's first process is made in a new network
             namespace and held before execve while
             join(): a veth pair per endpoint, its container end born in that namespace
             (drivers/bridge.py), the iptables rules for its published ports and links, the
             userland proxy in the container's monitor, the embedded DNS server's sockets
    exit     release(): everything join and allocate took, given back; the veth pairs by a
             thread of their own, since the kernel takes ~15 ms to delete one (RCU grace
             periods), time the rest of the exit (the container's state, its layer, an
             autoremove) overlaps. wait_released() waits for that thread: a removal waits
             before it reports the container gone, so `run --rm` leaves no veth behind, and so
             do a new start, a network's removal and the daemon's shutdown.
    restart  restore(): the daemon came back while the container ran on: its addresses and ports
             are reserved again and its rules re-checked (inserted only where missing)

Addresses in use are exactly those recorded in running containers' NetworkSettings (see
drivers/ipam.py), so nothing but the networks themselves needs a database: each network is a
JSON file under <root>/network/. On user-defined networks, container names and aliases
resolve through the embedded DNS server at 127.0.0.11 (drivers/resolver.py); on the default
bridge, names resolve only through --link entries in /etc/hosts, as in Docker 1.8.
"""
import collections
import datetime
import ipaddress
import itertools
import json
import logging
import os
import re
import socket
import threading

from drivers import (bridge, errdefs, ioutils, ipam, iptables, links, netlink, portmapper,
                     sandbox)

log = logging.getLogger("pydockerd")

NetworkConfig = collections.namedtuple(
    "NetworkConfig", "bridge bip fixed_cidr mtu icc ip_masq iptables ip_forward default_bind_ip "
                     "userland_proxy dns dns_search dns_opts")
NetworkConfig.__doc__ = """The daemon flags that shape networking (-b, --bip, --fixed-cidr, --mtu,
--icc, --ip-masq, --iptables, --ip-forward, --ip, --userland-proxy, --dns*)."""

PREDEFINED = {"bridge": "bridge", "host": "host", "none": "null"}
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
MTU_OPTION = "com.docker.network.driver.mtu"
ICC_OPTION = "com.docker.network.bridge.enable_icc"
MASQ_OPTION = "com.docker.network.bridge.enable_ip_masquerade"
HOST_BINDING_OPTION = "com.docker.network.bridge.host_binding_ipv4"
DEFAULT_BRIDGE_OPTION = "com.docker.network.bridge.default_bridge"
BRIDGE_OPTIONS = (BRIDGE_NAME_OPTION, MTU_OPTION, ICC_OPTION, MASQ_OPTION, HOST_BINDING_OPTION)
VALID_NETWORK_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# How often an ephemeral host port is tried again when another program holds it.
EPHEMERAL_TRIES = 10

def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def random_id():
    return os.urandom(32).hex()


class Network(object):
    """One network: what `docker network inspect` shows, plus its Linux bridge and address pool.

    `created_bridge` records whether the daemon made the Linux bridge: only such a bridge is
    ever deleted by it (a `-b br0` bridge or a leftover from another program is not ours).
    """

    FIELDS = ("Name", "Id", "Created", "Driver", "EnableIPv6", "IPAM", "Internal", "Attachable",
              "Options", "Labels")

    def __init__(self, document):
        self.document = document
        self.bridge = document.get("bridge", "")
        self.created_bridge = bool(document.get("created_bridge"))
        self.pool = None      # ipam.AddressPool for bridge networks, set up by the controller
        self.pool6 = None     # the IPv6 one, for --ipv6 networks
        self.endpoints = {}   # container id -> Endpoint, for running containers

    name = property(lambda self: self.document["Name"])
    id = property(lambda self: self.document["Id"])
    driver = property(lambda self: self.document["Driver"])
    internal = property(lambda self: bool(self.document.get("Internal")))
    options = property(lambda self: self.document.get("Options") or {})

    @property
    def predefined(self):
        return self.name in PREDEFINED

    @property
    def user_subnet(self):
        """Whether the user chose the subnet: only then may a container ask for an address."""
        return bool(self.document.get("user_subnet"))

    def option_bool(self, key, default):
        value = str(self.options.get(key, default)).lower()
        return value in ("1", "true", "t", "yes")

    def save(self, directory):
        ioutils.atomic_write_file(os.path.join(directory, self.id + ".json"),
                                  json.dumps(self.document).encode(), 0o600)

    def summary(self, with_containers):
        """The inspect shape (wire.md §23); the list form carries an empty Containers map."""
        out = {key: self.document.get(key) for key in self.FIELDS}
        out.update(Scope="local", Ingress=False, ConfigFrom={"Network": ""}, ConfigOnly=False,
                   Containers={})
        out["Options"], out["Labels"] = dict(self.options), dict(self.document.get("Labels") or {})
        if with_containers:
            out["Containers"] = {cid: endpoint.inspect() for cid, endpoint in self.endpoints.items()}
        return out


class Endpoint(object):
    """One running container's attachment to one network (libnetwork's endpoint).

    The veth pair is named after the endpoint's ID, so after a daemon restart the host end
    is found again from the EndpointID recorded in the container's NetworkSettings.
    """

    def __init__(self, network, container, endpoint_id, address, mac, aliases):
        self.network = network
        self.container_id = container.id
        self.container_name = container.name.lstrip("/")
        self.id = endpoint_id
        self.address = address        # "" on the host and none networks
        self.address6 = ""            # on --ipv6 networks
        self.mac = mac
        self.aliases = list(aliases)
        self.host_veth = bridge.host_veth_name(endpoint_id)

    def inspect(self):
        """The entry of `docker network inspect`'s Containers map."""
        prefix = self.network.pool.prefix_length if self.network.pool else 0
        return {"Name": self.container_name, "EndpointID": self.id, "MacAddress": self.mac,
                "IPv4Address": "%s/%d" % (self.address, prefix) if self.address else "",
                "IPv6Address": "%s/%d" % (self.address6, self.network.pool6.prefix_length)
                if self.address6 else ""}

    def answers_to(self, name):
        return name == self.container_name.lower() or name in (a.lower() for a in self.aliases)


class Sandbox(object):
    """A running container's network as the controller holds it (libnetwork's sandbox).

    mode is what the exec driver makes: "" (a new namespace), "host", or the path of another
    container's namespace. netns is the namespace's path once the process exists. env holds
    the --link variables, bindings the published host ports, listeners the userland proxy's
    sockets until the monitor has them, rules the iptables rules to delete at release.
    """

    def __init__(self, container_id, mode):
        self.id = random_id()
        self.container_id = container_id
        self.mode = mode
        self.netns = ""
        self.env = []
        self.endpoints = []
        self.bindings = []       # (host ip, proto, host port, container port)
        self.listeners = []      # (socket, proto, container ip, container port)
        self.rules = []          # --link rules; then the published ports' own:
        self.port_rules = []
        self.monitor = None      # the container's monitor, which runs its userland proxy
        self.link_entries = []   # /etc/hosts lines for --link children (default bridge)
        self.link_aliases = {}   # alias -> container name, for the embedded DNS (user networks)
        self.dns = False
        self.joined = False      # its network events were sent: the exit sends the matching ones

    def primary(self):
        """The endpoint published ports and links go through: the first one with an address."""
        return next((endpoint for endpoint in self.endpoints if endpoint.address), None)


class Controller(object):
    """libnetwork's NetworkController for the bridge, host and null drivers.

    Collaborators, all required: handle is a netlink.Handle in the daemon's namespace; ipt an
    iptables.Iptables, or None with --iptables=false; resolver a drivers.resolver.Resolver;
    allocator a portmapper.PortAllocator; find_container(name) the daemon's container lookup
    (raising errdefs.NotFound); log_event(type, action, id, attributes) the events service.
    """

    def __init__(self, config, root, handle, ipt, resolver, allocator, find_container, log_event):
        self.config = config
        self.directory = os.path.join(root, "network")
        self.handle = handle
        self.ipt = ipt
        self.resolver = resolver
        self.allocator = allocator
        self.find_container = find_container
        self.log_event = log_event
        self.lock = threading.RLock()
        self.networks = {}          # id -> Network
        self.sandboxes = {}         # container id -> Sandbox, while the container runs
        self.leaving = {}           # container id -> the thread deleting its exited veth pairs
        self.round_robin = itertools.count()

    # ---- boot and shutdown -----------------------------------------------------------------

    def init(self):
        """initNetworkController: the stored networks, the predefined ones, the default bridge,
        dockerd's iptables chains and ip_forward; every bridge network set up again."""
        os.makedirs(self.directory, 0o700, exist_ok=True)
        self._load()
        if self.ipt:
            iptables.setup_chains(self.ipt, hairpin=not self.config.userland_proxy)
        self._ensure_predefined()
        if self.config.ip_forward and self._bridge_networks():
            iptables.ip_forward_enable(self.ipt)
        for network in self._bridge_networks():
            self._setup_network(network)
        self.resolver.start()

    def _load(self):
        for entry in sorted(os.listdir(self.directory)):
            if not entry.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.directory, entry)) as document:
                    network = Network(json.load(document))
                if not (network.name and network.id and network.driver):
                    raise ValueError("no Name, Id or Driver")
            except (OSError, ValueError, KeyError, TypeError) as err:
                log.error("Failed to load network %s: %s", entry, err)
                continue
            self.networks[network.id] = network

    def _ensure_predefined(self):
        """The host and none networks always exist; bridge unless -b none. The default
        bridge's settings come from the flags at every boot, keeping its ID."""
        for name in ("none", "host"):
            if self._by_name(name) is None:
                self._add(self._new_document(name, PREDEFINED[name], {}, {"Driver": "default",
                                                                          "Options": None,
                                                                          "Config": []}))
        existing = self._by_name("bridge")
        if self.config.bridge == "none":
            if existing is not None:
                self._forget(existing)
            return
        document = self._default_bridge_document(existing)
        if existing is not None:
            document.update(Id=existing.id, Created=existing.document["Created"],
                            created_bridge=existing.created_bridge)
            self._forget(existing)
        self._add(document)

    def _default_bridge_document(self, existing):
        name = self.config.bridge or bridge.DEFAULT_BRIDGE
        subnet, gateway = self._default_bridge_address(name, existing)
        ipam_config = {"Subnet": str(subnet), "Gateway": str(gateway)}
        if self.config.fixed_cidr:
            ipam_config["IPRange"] = self.config.fixed_cidr
        options = {DEFAULT_BRIDGE_OPTION: "true", ICC_OPTION: str(self.config.icc).lower(),
                   MASQ_OPTION: str(self.config.ip_masq).lower(),
                   HOST_BINDING_OPTION: self.config.default_bind_ip, BRIDGE_NAME_OPTION: name,
                   MTU_OPTION: str(self.config.mtu)}
        document = self._new_document("bridge", "bridge", options,
                                      {"Driver": "default", "Options": None, "Config": [ipam_config]})
        document["bridge"] = name
        return document

    def _default_bridge_address(self, name, existing):
        """--bip; else the address the bridge already has; else the first free default pool."""
        if self.config.bip:
            interface = ipaddress.ip_interface(self.config.bip)
            return interface.network, interface.ip
        if bridge.bridge_exists(self.handle, name):
            address = bridge.ipv4_address(self.handle, name)
            if address is not None:
                return address.network, address.ip
        elif self.config.bridge:
            raise errdefs.InvalidParameter("bridge device with non default name %s must be "
                                           "created manually" % name)
        taken = [n.pool.subnet for n in self._bridge_networks() if n.pool and n is not existing]
        taken += [route for route, dev in bridge.host_routes(self.handle) if dev != name]
        subnet = ipam.pick_subnet(taken)
        return subnet, ipam.first_host(subnet)

    def _new_document(self, name, driver, options, ipam_document, labels=None):
        return {"Name": name, "Id": random_id(), "Created": now_rfc3339(), "Driver": driver,
                "EnableIPv6": False, "IPAM": ipam_document, "Internal": False,
                "Attachable": False, "Options": options, "Labels": labels or {}}

    def _add(self, document):
        network = Network(document)
        network.save(self.directory)
        self.networks[network.id] = network
        return network

    def _forget(self, network):
        self.networks.pop(network.id, None)
        try:
            os.unlink(os.path.join(self.directory, network.id + ".json"))
        except FileNotFoundError:
            pass

    def _bridge_networks(self):
        return [n for n in self.networks.values() if n.driver == "bridge"]

    def _setup_network(self, network):
        """createNetwork for the bridge driver: the pool, the Linux bridge, the iptables rules.
        On a failure nothing of it stays."""
        network.pool, network.pool6 = self._pool_of(network), self._pool_of(network, version=6)
        mtu = int(network.options.get(MTU_OPTION) or self.config.mtu)
        created, added = bridge.setup_bridge(self.handle, network.bridge, network.pool.gateway,
                                             network.pool.prefix_length, mtu)
        try:
            if network.pool6 is not None:
                bridge.set_sysctl("net/ipv6/conf/%s/disable_ipv6" % network.bridge, "0")
                gateway6 = "%s/%d" % (network.pool6.gateway, network.pool6.prefix_length)
                if gateway6 not in self.handle.addresses(network.bridge, socket.AF_INET6):
                    self.handle.add_address(network.bridge, gateway6, nodad=True)
            if created and not network.created_bridge:
                network.created_bridge = network.document["created_bridge"] = True
                network.save(self.directory)
            elif added and not created:  # someone else's bridge: only the address is ours
                network.document["added_address"] = True
                network.save(self.directory)
            if not self.config.userland_proxy:
                # hairpin NAT from 127.0.0.1 needs the kernel to route loopback sources
                bridge.set_sysctl("net/ipv4/conf/%s/route_localnet" % network.bridge, "1")
            if self.ipt:
                iptables.apply(self.ipt, self._network_rules(network))
        except BaseException:
            if created:
                bridge.remove_bridge(self.handle, network.bridge)
            raise

    def _network_rules(self, network):
        return iptables.network_rules(network.bridge, str(network.pool.subnet),
                                      icc=network.option_bool(ICC_OPTION, True),
                                      ip_masq=self.config.ip_masq and
                                      network.option_bool(MASQ_OPTION, True),
                                      internal=network.internal,
                                      hairpin=not self.config.userland_proxy)

    def _pool_of(self, network, version=4):
        """The network's address pool of one IP version (None: it has no such subnet)."""
        for config in network.document["IPAM"]["Config"]:
            if ipaddress.ip_network(config["Subnet"]).version == version:
                return ipam.AddressPool(config["Subnet"], config.get("Gateway"), config.get("IPRange"),
                                        reserved=(config.get("AuxiliaryAddresses") or {}).values())
        return None

    def shutdown(self, containers_running):
        """Daemon shutdown: with no container left running, take down the rules, the bridges
        and the chains this daemon made; with live containers, leave their network alone."""
        self.resolver.close()
        self.wait_released()
        if containers_running:
            return
        with self.lock:
            for network in self._bridge_networks():
                self._teardown_network(network)
                network.save(self.directory)  # what is ours to delete next time has changed
            if self.ipt:
                try:
                    iptables.remove_chains(self.ipt)
                except iptables.IptablesError as err:
                    log.error("Error removing iptables chains: %s", err)

    def _teardown_network(self, network):
        try:
            if self.ipt and network.pool is not None:
                iptables.apply(self.ipt, self._network_rules(network), enable=False)
            if network.created_bridge:
                bridge.remove_bridge(self.handle, network.bridge)
                network.created_bridge = network.document["created_bridge"] = False
            elif network.document.pop("added_address", False):
                self.handle.del_address(network.bridge, "%s/%d" % (network.pool.gateway,
                                                                   network.pool.prefix_length))
        except (OSError, iptables.IptablesError) as err:
            log.error("Error tearing down network %s: %s", network.name, err)

    # ---- networks: the /networks API --------------------------------------------------------

    def get_network(self, term):
        """FindNetwork: a full name, a full ID, then a unique ID prefix."""
        with self.lock:
            found = self._by_name(term) or self.networks.get(term)
            if found is None and term:
                matches = [n for n in self.networks.values() if n.id.startswith(term)]
                if len(matches) > 1:
                    raise errdefs.InvalidParameter("network %s is ambiguous (%d matches found based "
                                                   "on ID prefix)" % (term, len(matches)))
                found = matches[0] if matches else None
        if found is None:
            raise errdefs.NotFound("network %s not found" % term)
        return found

    def _by_name(self, name):
        return next((n for n in self.networks.values() if n.name == name), None)

    def create_network(self, request):
        """NetworkCreate: a user-defined bridge network on a Linux bridge of its own."""
        name = request.get("Name") or ""
        self._check_create_request(name, request)
        with self.lock:
            if self._by_name(name) is not None:
                raise errdefs.Conflict("network with name %s already exists" % name)
            document = self._new_document(name, "bridge", dict(request.get("Options") or {}),
                                          self._ipam_document(request),
                                          labels=dict(request.get("Labels") or {}))
            network_id = document["Id"]
            document.update(Internal=bool(request.get("Internal")), EnableIPv6=bool(request.get("EnableIPv6")),
                            Attachable=bool(request.get("Attachable")),
                            user_subnet=any(ipaddress.ip_network(c["Subnet"]).version == 4
                                            for c in document["IPAM"]["Config"]),
                            bridge=document["Options"].get(BRIDGE_NAME_OPTION) or "br-" + network_id[:12])
            self._check_bridge_name(document["bridge"])
            subnets = [ipaddress.ip_network(c["Subnet"]) for c in document["IPAM"]["Config"]]
            if not any(subnet.version == 4 for subnet in subnets):
                document["IPAM"]["Config"].insert(0, self._automatic_subnet())
            network = Network(document)
            self._check_overlap(network)
            self._setup_network(network)
            try:
                network.save(self.directory)
            except BaseException:
                self._teardown_network(network)
                raise
            self.networks[network.id] = network
        self.log_event("network", "create", network.id, {"name": name, "type": "bridge"})
        return {"Id": network.id, "Warning": ""}

    def _check_create_request(self, name, request):
        if not name or not VALID_NETWORK_NAME.match(name):
            raise errdefs.InvalidParameter("invalid network name %r: only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                                           "are allowed" % name)
        if name in PREDEFINED:
            raise errdefs.Forbidden("%s is a pre-defined network and cannot be created" % name)
        driver = request.get("Driver") or "bridge"
        if driver in ("host", "null"):
            raise errdefs.Forbidden('only one instance of "%s" network is allowed' % driver)
        if driver != "bridge":
            raise errdefs.NotFound('plugin "%s" not found: pydockerd has the bridge, host and '
                                   'null network drivers' % driver)
        if (request.get("IPAM") or {}).get("Driver") not in (None, "", "default"):
            raise errdefs.NotFound('plugin "%s" not found: pydockerd has the default IPAM driver'
                                   % request["IPAM"]["Driver"])
        if request.get("Ingress") or request.get("ConfigOnly") or (request.get("ConfigFrom") or {}).get("Network"):
            raise errdefs.InvalidParameter("ingress and config-only networks need swarm mode, "
                                           "which pydockerd does not have")
        if request.get("EnableIPv6") and not os.path.exists("/proc/sys/net/ipv6"):
            raise errdefs.InvalidParameter("IPv6 is not available on this host's kernel")
        for key in (request.get("Options") or {}):
            if key.startswith("com.docker.network.") and key not in BRIDGE_OPTIONS:
                raise errdefs.InvalidParameter("unknown bridge network option %s" % key)

    def _ipam_document(self, request):
        """The IPAM section, checked: at most one IPv4 subnet and, with --ipv6, one IPv6
        subnet (there is no default IPv6 pool), each gateway and range inside its subnet."""
        ipam_request = request.get("IPAM") or {}
        configs = [dict(c) for c in ipam_request.get("Config") or [] if c]
        versions = []
        for config in configs:
            try:
                subnet = ipaddress.ip_network(config.get("Subnet") or "")
            except ValueError:
                raise errdefs.InvalidParameter("invalid subnet %s" % config.get("Subnet")) from None
            versions.append(subnet.version)
            # AddressPool refuses a gateway or range outside the subnet with dockerd's text
            ipam.AddressPool(subnet, config.get("Gateway"), config.get("IPRange"),
                             reserved=(config.get("AuxiliaryAddresses") or {}).values())
        if versions.count(4) > 1 or versions.count(6) > 1:
            raise errdefs.InvalidParameter("pydockerd supports one IPv4 and one IPv6 subnet per network")
        if 6 in versions and not request.get("EnableIPv6"):
            raise errdefs.InvalidParameter("an IPv6 subnet needs --ipv6 (EnableIPv6)")
        if request.get("EnableIPv6") and 6 not in versions:
            raise errdefs.InvalidParameter("an IPv6 network needs its IPv6 --subnet: this daemon has "
                                           "no default IPv6 address pool")
        return {"Driver": "default", "Options": dict(ipam_request.get("Options") or {}),
                "Config": configs}

    def _automatic_subnet(self):
        taken = [n.pool.subnet for n in self._bridge_networks() if n.pool]
        taken += [route for route, _dev in bridge.host_routes(self.handle)]
        subnet = ipam.pick_subnet(taken)
        return {"Subnet": str(subnet), "Gateway": str(ipam.first_host(subnet))}

    def _check_overlap(self, network):
        for config in network.document["IPAM"]["Config"]:
            subnet = ipaddress.ip_network(config["Subnet"])
            for other in self._bridge_networks():
                if any(pool and pool.subnet.version == subnet.version and pool.subnet.overlaps(subnet)
                       for pool in (other.pool, other.pool6)):
                    raise errdefs.Forbidden("Pool overlaps with other one on this address space")

    def _check_bridge_name(self, name):
        for other in self._bridge_networks():
            if other.bridge == name:
                raise errdefs.Forbidden("conflicts with network %s (%s): networks have same bridge "
                                        "name" % (other.id, other.name))
        if len(name) > 15:
            raise errdefs.InvalidParameter("bridge name %s is longer than 15 characters" % name)

    def delete_network(self, term):
        """NetworkRemove: predefined networks stay, and so does one with running containers."""
        self.wait_released()
        with self.lock:
            self._remove_network(self.get_network(term))

    def _remove_network(self, network):
        """Called with the lock held."""
        if network.predefined:
            raise errdefs.Forbidden("%s is a pre-defined network and cannot be removed"
                                    % network.name)
        if network.endpoints:
            raise errdefs.Forbidden("error while removing network: network %s id %s has active "
                                    "endpoints" % (network.name, network.id))
        self._teardown_network(network)
        self._forget(network)
        self.log_event("network", "destroy", network.id, {"name": network.name, "type": "bridge"})

    def list_networks(self, filters):
        """NetworkList with dockerd's filters: driver, id, label, name, scope, type, dangling."""
        checks = {
            "driver": lambda n, v: n.driver == v,
            "id": lambda n, v: n.id.startswith(v),
            "name": lambda n, v: _name_matches(n.name, v),
            "label": lambda n, v: _label_matches(n.document.get("Labels") or {}, v),
            "scope": lambda n, v: v == "local",
            "type": lambda n, v: (v == "builtin") == n.predefined,
            "dangling": lambda n, v: (str(v).lower() in ("1", "true")) == (not n.endpoints),
        }
        for key, values in filters.items():
            if key not in checks:
                raise errdefs.InvalidParameter("Invalid filter '%s'" % key)
            if key == "type" and any(v not in ("custom", "builtin") for v in values):
                raise errdefs.InvalidParameter("invalid filter: 'type'='%s'" % ",".join(values))
        with self.lock:
            return [n.summary(with_containers=False) for n in self._sorted()
                    if all(_filter_matches(checks[k], n, k, values) for k, values in filters.items() if values)]

    def _sorted(self):
        return sorted(self.networks.values(), key=lambda n: n.document["Created"])

    def inspect_network(self, term):
        with self.lock:
            return self.get_network(term).summary(with_containers=True)

    def prune_networks(self, filters):
        """NetworksPrune: user networks without a running container (dockerd 20.10 prunes one
        that only stopped containers name; they fail to start afterwards, as there)."""
        for key in filters:
            if key not in ("until", "label", "label!"):
                raise errdefs.InvalidParameter("Invalid filter '%s'" % key)
        until = _until(filters.get("until"))
        pruned = []
        self.wait_released()
        with self.lock:
            for network in self._sorted():
                if network.predefined or network.endpoints:
                    continue
                labels = network.document.get("Labels") or {}
                if until is not None and network.document["Created"] >= until:
                    continue
                if not all(_label_matches(labels, v) for v in filters.get("label", [])):
                    continue
                if any(_label_matches(labels, v) for v in filters.get("label!", [])):
                    continue
                self._remove_network(network)
                pruned.append(network.name)
        return {"NetworksDeleted": pruned}

    # ---- a container's networks: create ------------------------------------------------------

    def default_network(self):
        """NetworkMode "default": the bridge, or none when the daemon runs with -b none."""
        return "none" if self.config.bridge == "none" else "bridge"

    def settings_for_create(self, config, host_config, networking_config):
        """ContainerCreate's network checks; returns (NetworkSettings, warnings).

        The networks the container will join are recorded (with what the request asked of
        each: --ip, --network-alias, --mac-address); addresses come at start.
        """
        mode = host_config.get("NetworkMode") or "default"
        requested = (networking_config or {}).get("EndpointsConfig") or {}
        if len(requested) > 1:
            raise errdefs.InvalidParameter("Container cannot be connected to network endpoints: %s"
                                           % ", ".join(sorted(requested)))
        bindings = sandbox.port_bindings(config, host_config)
        if mode.startswith("container:"):
            _check_container_mode(config, host_config, bindings)
            return sandbox.network_settings({}), []
        if mode == "host" and host_config.get("Links"):
            raise errdefs.InvalidParameter("conflicting options: host type networking can't be used "
                                           "with links. This would result in undefined behavior")
        name = self.default_network() if mode == "default" else mode
        try:
            network = self.get_network(name)
        except errdefs.NotFound:
            # like dockerd, a missing network fails the start, not the create: a 404 from
            # create means "no such image" to the CLI, which would go and pull one
            return sandbox.network_settings({name: sandbox.endpoint_settings(requested.get(mode))}), []
        endpoint_config = dict(requested.get(mode) or requested.get(network.name) or
                               requested.get(network.id) or {})
        self._check_endpoint_config(network, dict(endpoint_config, MacAddress=config.get("MacAddress")))
        warnings = []
        if bindings and network.driver != "bridge":
            warnings.append("Published ports are discarded when using %s network mode" % network.name)
        settings = sandbox.endpoint_settings(endpoint_config)
        settings["NetworkID"] = network.id
        return sandbox.network_settings({network.name: settings}), warnings

    def _check_endpoint_config(self, network, endpoint_config):
        """--ip, --network-alias and --mac-address, as libnetwork allows them."""
        wanted = endpoint_config.get("IPAMConfig") or {}
        address = wanted.get("IPv4Address") or ""
        if wanted.get("IPv6Address"):
            pool6 = self._pool_of(network, version=6)
            try:
                if pool6 is None or ipaddress.ip_address(wanted["IPv6Address"]) not in pool6.subnet:
                    raise ValueError
            except ValueError:
                raise errdefs.InvalidParameter("Invalid address %s: It does not belong to any of "
                                               "this network's subnets" % wanted["IPv6Address"]) from None
        if address:
            if network.predefined:
                raise errdefs.InvalidParameter("user specified IP address is supported on user "
                                               "defined networks only")
            if not network.user_subnet:
                raise errdefs.InvalidParameter("user specified IP address is supported only when "
                                               "connecting to networks with user configured subnets")
            try:
                if ipaddress.ip_address(address) not in self._pool_of(network).subnet:
                    raise ValueError
            except ValueError:
                raise errdefs.InvalidParameter("Invalid address %s: It does not belong to any of "
                                               "this network's subnets" % address) from None
        if endpoint_config.get("Aliases") and network.predefined:
            raise errdefs.InvalidParameter("network-scoped alias is supported only for containers in "
                                           "user defined networks")
        for text in endpoint_config.get("Links") or []:
            if network.predefined:
                raise errdefs.InvalidParameter("links in an endpoint's config are supported only on "
                                               "user defined networks: use --link")
            try:
                links.parse_link(str(text))
            except ValueError as err:
                raise errdefs.InvalidParameter(str(err)) from None
        mac = endpoint_config.get("MacAddress") or ""
        if mac and not re.match(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$", mac):
            raise errdefs.InvalidParameter("invalid MAC address: %s" % mac)

    # ---- a container's networks: start, exit, daemon restart ---------------------------------

    def allocate(self, container, children):
        """The part of a start before the container's process exists: its namespace mode,
        addresses, host ports, the --link variables and the three network files.

        children are (alias, container) pairs from linkgraph.db. Returns the Sandbox; on a
        failure everything taken is given back. A start right after an exit first waits for
        the last run's veth pairs, so that its addresses are free again.
        """
        self.wait_released(container.id)
        mode = container.host_config.get("NetworkMode") or "default"
        if mode.startswith("container:"):
            other = self.find_container(mode.split(":", 1)[1])
            if not other.running:
                raise errdefs.Conflict("cannot join network of a non running container: %s" % other.id)
            box = Sandbox(container.id, netlink.netns_of_pid(other.pid))
        else:
            box = Sandbox(container.id, "host" if mode == "host" else "")
        with self.lock:
            try:
                self._allocate_endpoints(container, box)
                self._link(container, box, children)
                self._publish(container, box)
                self._write_files(container, box)
            except BaseException:
                self._give_back(container, box)
                raise
            self.sandboxes[container.id] = box
        return box

    def _allocate_endpoints(self, container, box):
        if box.mode != "":
            return
        for name, settings in self._requested_networks(container):
            self._new_endpoint(container, box, self._network_of(name, settings), settings)

    def _new_endpoint(self, container, box, network, settings):
        """An endpoint with its addresses from IPAM (--ip/--ip6 if asked) and its MAC: the
        --mac-address (Config.MacAddress) on the first network, else derived from the address."""
        address = address6 = ""
        wanted = settings.get("IPAMConfig") or {}
        if network.driver == "bridge":
            address = network.pool.allocate(wanted.get("IPv4Address"))
        if network.pool6 is not None:
            try:
                address6 = network.pool6.allocate(wanted.get("IPv6Address"))
            except BaseException:
                network.pool.release(address)
                raise
        mac = ""
        if address:
            mac = (not box.endpoints and container.config.get("MacAddress")) or ipam.mac_for_ip(address)
        aliases = list(settings.get("Aliases") or [])
        if network.driver == "bridge" and not network.predefined and container.id[:12] not in aliases:
            aliases.append(container.id[:12])  # dockerd makes the short ID resolvable too
        endpoint = Endpoint(network, container, random_id(), address, mac, aliases)
        endpoint.address6 = address6
        _add_endpoint_links(box, settings)
        box.endpoints.append(endpoint)
        network.endpoints[container.id] = endpoint
        return endpoint

    def _requested_networks(self, container):
        return list(((container.network_settings or {}).get("Networks") or {}).items())

    def _network_of(self, name, settings):
        network = self.networks.get(settings.get("NetworkID") or "") or self._by_name(name)
        if network is None:
            raise errdefs.NotFound("network %s not found" % name)
        return network

    def _link(self, container, box, children):
        """Legacy links. On the default bridge: variables, /etc/hosts entries and, with
        --icc=false, the child's exposed ports opened to this container. On a user network a
        link is only a name the embedded DNS answers for this container."""
        parent = box.primary()
        for alias, child in children:
            if parent is not None and not parent.network.predefined:
                box.link_aliases[alias.lower()] = child.name.lstrip("/").lower()
                continue
            if not child.running:
                raise errdefs.System("Cannot link to a non running container: %s AS %s/%s"
                                     % (child.name, container.name, alias))
            child_settings = ((child.network_settings or {}).get("Networks") or {}).get("bridge") or {}
            if parent is None or not child_settings.get("IPAddress"):
                raise errdefs.InvalidParameter("Cannot link to %s, as it does not belong to the "
                                               "default network" % child.name)
            link = links.Link(alias, container.name, child_settings["IPAddress"],
                              child.config.get("Hostname", ""), child.name,
                              child.config.get("Env") or [], links.exposed_ports(child.config))
            box.env.extend(links.to_env(link))
            box.link_entries.append(links.hosts_entry(link))
            if self.ipt and not parent.network.option_bool(ICC_OPTION, True):
                for number, proto in link.ports:
                    box.rules.extend(iptables.link_rules(parent.network.bridge, parent.address,
                                                         link.child_ip, proto, number))

    def _publish(self, container, box):
        """Host ports for -p/-P on the container's first bridge endpoint: allocated, listened on
        for the userland proxy, and their DNAT rules prepared (applied at join)."""
        endpoint = box.primary()
        bindings = sandbox.port_bindings(container.config, container.host_config)
        if endpoint is None or not bindings:
            return
        default_ip = endpoint.network.options.get(HOST_BINDING_OPTION) or self.config.default_bind_ip
        try:
            for binding in bindings:
                self._bind_host_port(box, endpoint, binding, binding.host_ip or default_ip)
        except (portmapper.PortAllocatorError, OSError) as err:
            raise errdefs.System("driver failed programming external connectivity on endpoint %s "
                                 "(%s): %s" % (endpoint.container_name, endpoint.id, err)) from None
        box.port_rules = self._port_rules(endpoint, box.bindings)

    def _bind_host_port(self, box, endpoint, binding, host_ip):
        """One binding: the first host port of its range that is free both in the allocator and
        on the host (another program may hold it). An empty HostIp means 0.0.0.0 and also ::,
        like dockerd, where the namespace has IPv6."""
        addresses = [host_ip] + (["::"] if host_ip == "0.0.0.0" and ipv6_enabled() else [])
        first, last = binding.host_ports
        candidates = list(range(first, last + 1)) if first else [0] * EPHEMERAL_TRIES
        for attempt, candidate in enumerate(candidates, 1):
            try:
                return self._take_host_port(box, endpoint, binding, addresses, candidate)
            except (portmapper.PortAllocatorError, OSError):
                if attempt == len(candidates):
                    raise

    def _take_host_port(self, box, endpoint, binding, addresses, port):
        taken, listeners = [], []
        try:
            for address in addresses:
                port = self.allocator.request(address, binding.proto, port)
                taken.append((address, binding.proto, port, binding.container_port))
                if self.config.userland_proxy:
                    listeners.append((portmapper.open_listener(binding.proto, address, port),
                                      binding.proto, endpoint.address, binding.container_port))
        except BaseException:
            for listener in listeners:
                listener[0].close()
            for address, proto, number, _ in taken:
                self.allocator.release(address, proto, number)
            raise
        box.bindings.extend(taken)
        box.listeners.extend(listeners)
        return port

    def _port_rules(self, endpoint, bindings):
        """DNAT for each IPv4 host binding; the ACCEPT and hairpin MASQUERADE once per
        container port, as dockerd writes them (wire.md §24). IPv6 is served by the proxy."""
        if not self.ipt:
            return []
        rules, seen = [], []
        for host_ip, proto, host_port, container_port in bindings:
            if (proto, container_port) not in seen:
                seen.append((proto, container_port))
                rules.extend(iptables.container_port_rules(endpoint.network.bridge, endpoint.address,
                                                           proto, container_port))
            rules.extend(iptables.dnat_rules(endpoint.network.bridge, endpoint.address, proto,
                                             container_port, host_ip, host_port,
                                             hairpin=not self.config.userland_proxy))
        return rules

    def _write_files(self, container, box):
        """/etc/hostname, /etc/hosts (own addresses, links, --add-host) and /etc/resolv.conf."""
        config, host = container.config, container.host_config
        host_network = box.mode == "host"
        hostname = config.get("Hostname") or ""
        if host_network and not hostname:
            hostname = socket.gethostname()
        names = [hostname + "." + config["Domainname"], hostname] if config.get("Domainname") else [hostname]
        own = [(endpoint.address, names) for endpoint in box.endpoints if endpoint.address]
        resolver_mode = "host" if host_network else ""
        if any(not endpoint.network.predefined for endpoint in box.endpoints):
            resolver_mode = "embedded"
        sandbox.write_files(container.root, {
            "hostname": hostname + "\n",
            "hosts": sandbox.hosts_file(own, box.link_entries, host.get("ExtraHosts") or [], host_network),
            "resolv.conf": sandbox.resolv_conf(host, self.config.dns, self.config.dns_search,
                                               self.config.dns_opts, resolver_mode)})

    def join(self, container, monitor):
        """The part of a start once the container's process exists (held before execve): the
        veth pairs, the iptables rules, the embedded DNS server, the userland proxy.

        The container's monitor (which outlives the daemon) gets the userland proxy's
        listening sockets; the daemon's own copies are closed afterwards either way.
        """
        with self.lock:
            box = self.sandboxes[container.id]
            try:
                if box.mode == "":
                    box.netns = netlink.netns_of_pid(monitor.init_pid)
                    for index, endpoint in enumerate(e for e in box.endpoints if e.address):
                        self._plumb(endpoint, box.netns, "eth%d" % index, default_route=index == 0)
                    if self.ipt:
                        iptables.apply(self.ipt, box.rules + box.port_rules)
                    self._start_dns(container, box)
                if box.listeners:
                    monitor.proxy(box.listeners)
                box.monitor = monitor
            finally:
                for listener in box.listeners:
                    listener[0].close()
                box.listeners = []
            container.network_settings = self._running_settings(container, box)
            box.joined = True
        for endpoint in box.endpoints:
            self._log_endpoint_event("connect", endpoint)

    def _plumb(self, endpoint, netns, ifname, default_route):
        """The endpoint's veth pair, its container end configured as ifname. A failure reads
        like dockerd's ("failed to create endpoint x on network bridge: ...")."""
        network = endpoint.network
        mtu = int(network.options.get(MTU_OPTION) or self.config.mtu)
        gateway = str(network.pool.gateway) if default_route and not network.internal else None
        try:
            bridge.create_endpoint(self.handle, network.bridge, mtu, endpoint.host_veth, netns, ifname,
                                   endpoint.mac, endpoint.address, network.pool.prefix_length, gateway)
            if not self.config.userland_proxy:
                self.handle.set_bridge_port_hairpin(endpoint.host_veth, True)
            if endpoint.address6:
                gateway6 = str(network.pool6.gateway) if default_route and not network.internal else None
                bridge.add_ipv6(netns, ifname, endpoint.address6, network.pool6.prefix_length, gateway6)
        except OSError as err:
            raise errdefs.System("failed to create endpoint %s on network %s: %s"
                                 % (endpoint.container_name, network.name, err.strerror or err)) from None

    def _start_dns(self, container, box):
        """User networks resolve names through 127.0.0.11 inside the container."""
        if box.dns or not any(not e.network.predefined for e in box.endpoints):
            return
        self.resolver.add_sandbox(container.id, box.netns,
                                  sandbox.upstream_servers(container.host_config, self.config.dns))
        box.dns = True

    def release(self, container):
        """The container stopped (or its start failed): give back all its network took, the
        veth pairs in the background (see wait_released). Never raises: a failure is logged,
        and the rest is still given back."""
        with self.lock:
            box = self.sandboxes.pop(container.id, None)
            if box is not None:
                self._give_back(container, box, unplumb=False)
                if box.endpoints:
                    self._unplumb_later(container.id, box.endpoints)
            container.network_settings = self._stopped_settings(container)
        for endpoint in box.endpoints if box is not None and box.joined else []:
            self._log_endpoint_event("disconnect", endpoint)

    def _log_endpoint_event(self, action, endpoint):
        """dockerd reports every endpoint a start makes or an exit ends as a network event."""
        network = endpoint.network
        self.log_event("network", action, network.id, {"container": endpoint.container_id,
                                                       "name": network.name, "type": network.driver})

    def _unplumb_later(self, container_id, endpoints):
        def unplumb():
            for endpoint in endpoints:
                self._unplumb(endpoint)
            with self.lock:
                if self.leaving.get(container_id) is thread:
                    del self.leaving[container_id]

        thread = threading.Thread(target=unplumb, name="leave " + container_id[:12], daemon=True)
        self.leaving[container_id] = thread
        thread.start()

    def wait_released(self, container_id=None):
        """Until the veth pairs of the container's last run (with None: of every container
        that exited) are deleted and their addresses free. Called without the lock, which
        the deleting thread takes to give the addresses back."""
        with self.lock:
            threads = list(self.leaving.values()) if container_id is None else \
                [self.leaving[container_id]] if container_id in self.leaving else []
        for thread in threads:
            thread.join()

    def _give_back(self, container, box, unplumb=True):
        if box.dns:
            self.resolver.remove_sandbox(container.id)
        if self.ipt and box.rules + box.port_rules:
            try:
                iptables.apply(self.ipt, box.rules + box.port_rules, enable=False)
            except iptables.IptablesError as err:
                log.error("Error removing iptables rules of %s: %s", container.id[:12], err)
        for listener in box.listeners:
            listener[0].close()
        for address, proto, port, _ in box.bindings:
            self.allocator.release(address, proto, port)
        for endpoint in box.endpoints:
            endpoint.network.endpoints.pop(endpoint.container_id, None)
            if unplumb:
                self._unplumb(endpoint)

    def _drop_endpoint(self, endpoint):
        self._unplumb(endpoint)
        endpoint.network.endpoints.pop(endpoint.container_id, None)

    def _unplumb(self, endpoint):
        """The endpoint's veth pair deleted, then its addresses given back: not before, or a
        new container could get the address (and the MAC made from it) while the old pair
        still hangs on the bridge."""
        if endpoint.address:
            try:
                bridge.delete_veth(self.handle, endpoint.host_veth)
            except OSError as err:
                log.error("Error deleting %s: %s", endpoint.host_veth, err)
        with self.lock:
            if endpoint.address:
                endpoint.network.pool.release(endpoint.address)
            if endpoint.address6:
                endpoint.network.pool6.release(endpoint.address6)

    def restore(self, container, monitor, children, alive=True):
        """daemon.restore for a container that ran on while the daemon was down: its addresses
        and host ports reserved again, its rules checked (only missing ones are inserted), its
        DNS sockets reopened. The userland proxy never stopped: it lives in the monitor.

        With alive=False (it died meanwhile) only the bookkeeping is rebuilt, for forget()."""
        mode = container.host_config.get("NetworkMode") or "default"
        box = Sandbox(container.id, "host" if mode == "host" else "")
        box.id = container.network_settings.get("SandboxID") or box.id
        box.monitor = monitor
        with self.lock:
            if mode.startswith("container:") or mode == "host":
                self.sandboxes[container.id] = box
                return
            box.netns = netlink.netns_of_pid(container.pid)
            for name, settings in self._requested_networks(container):
                network = self.networks.get(settings.get("NetworkID") or "")
                if not settings.get("EndpointID") or network is None:
                    continue
                if settings.get("IPAddress"):
                    network.pool.reserve(settings["IPAddress"])
                endpoint = Endpoint(network, container, settings["EndpointID"], settings.get("IPAddress", ""),
                                    settings.get("MacAddress", ""), settings.get("Aliases") or [])
                if settings.get("GlobalIPv6Address") and network.pool6 is not None:
                    endpoint.address6 = settings["GlobalIPv6Address"]
                    network.pool6.reserve(endpoint.address6)
                _add_endpoint_links(box, settings)
                box.endpoints.append(endpoint)
                network.endpoints[container.id] = endpoint
            for key, items in (container.network_settings.get("Ports") or {}).items():
                number, proto = sandbox.parse_port_key(key)
                for item in items or []:
                    self.allocator.reserve(item["HostIp"], proto, int(item["HostPort"]))
                    box.bindings.append((item["HostIp"], proto, int(item["HostPort"]), number))
            self.sandboxes[container.id] = box
            try:
                self._link(container, box, children)
            except errdefs.DockerError as err:
                log.warning("Links of %s not restored: %s", container.id[:12], err)
            if box.primary() is not None:
                box.port_rules = self._port_rules(box.primary(), box.bindings)
            if alive and self.ipt:
                iptables.apply(self.ipt, box.rules + box.port_rules)
            if alive:
                self._start_dns(container, box)
            box.joined = alive

    def allocated_settings(self, container):
        """The NetworkSettings of a start in progress, once allocate() has taken its addresses,
        endpoints and host ports: the daemon records them before join() makes any interface
        or rule, so that forget() can give back what a start cut short by a crash took."""
        with self.lock:
            return self._running_settings(container, self.sandboxes[container.id])

    def forget(self, container, children, settings=None):
        """A container that died while the daemon was down: the rules, veth and settings the
        previous daemon made for it go (each only where it is still present). settings, if
        given, are what a start cut short had taken (allocated_settings), instead of the
        container's own."""
        container.network_settings = settings or container.network_settings
        self.restore(container, None, children, alive=False)
        self.release(container)

    # ---- NetworkSettings ---------------------------------------------------------------------

    def _running_settings(self, container, box):
        """NetworkSettings while the container runs: addresses, endpoint IDs and ports."""
        networks = {}
        for name, requested in self._requested_networks(container):
            networks[name] = dict(requested)
        for endpoint in box.endpoints:
            entry = networks.setdefault(endpoint.network.name, sandbox.endpoint_settings())
            entry.update(NetworkID=endpoint.network.id, EndpointID=endpoint.id, MacAddress=endpoint.mac)
            if endpoint.address:
                pool = endpoint.network.pool
                entry.update(IPAddress=endpoint.address, IPPrefixLen=pool.prefix_length,
                             Gateway=str(pool.gateway), Aliases=endpoint.aliases or None)
            if endpoint.address6:
                pool6 = endpoint.network.pool6
                entry.update(GlobalIPv6Address=endpoint.address6, IPv6Gateway=str(pool6.gateway),
                             GlobalIPv6PrefixLen=pool6.prefix_length)
        ports = {key: None for key in sandbox.exposed_port_keys(container.config, container.host_config)}
        for host_ip, proto, host_port, container_port in box.bindings:
            key = "%d/%s" % (container_port, proto)
            ports[key] = (ports.get(key) or []) + [{"HostIp": host_ip, "HostPort": str(host_port)}]
        primary = box.primary()
        default_bridge = networks.get("bridge") if primary and primary.network.predefined else None
        return sandbox.network_settings(networks, ports if box.mode == "" else {},
                                        box.netns, default_bridge, box.id)

    def _stopped_settings(self, container):
        """NetworkSettings of a stopped container: the networks it will join and what it asked
        of each, without addresses."""
        networks = {}
        for name, requested in self._requested_networks(container):
            entry = sandbox.endpoint_settings(requested)
            entry.update(NetworkID=requested.get("NetworkID", ""), MacAddress="")
            networks[name] = entry
        return sandbox.network_settings(networks)

    # ---- docker network connect / disconnect -------------------------------------------------

    def connect(self, container, term, endpoint_config):
        """NetworkConnect: on a running container the endpoint is made at once (a new ethN),
        on a stopped one it is recorded for the next start."""
        network = self.get_network(term)
        _check_attachable(container, network)
        endpoint_config = dict(endpoint_config or {})
        self._check_endpoint_config(network, endpoint_config)
        with self.lock:
            requested = dict(self._requested_networks(container))
            if network.name in requested:
                raise errdefs.Forbidden("endpoint with name %s already exists in network %s"
                                        % (container.name.lstrip("/"), network.name))
            entry = sandbox.endpoint_settings(endpoint_config)
            entry.update(NetworkID=network.id, MacAddress="")
            container.network_settings.setdefault("Networks", {})[network.name] = entry
            box = self.sandboxes.get(container.id) if container.running else None
            try:
                if box is not None and box.mode == "":
                    self._connect_running(container, box, network, entry)
            except BaseException:
                del container.network_settings["Networks"][network.name]
                raise
            if box is not None:
                container.network_settings = self._running_settings(container, box)
        self.log_event("network", "connect", network.id,
                       {"container": container.id, "name": network.name, "type": network.driver})

    def _connect_running(self, container, box, network, entry):
        endpoint = self._new_endpoint(container, box, network, entry)
        try:
            self._plumb(endpoint, box.netns, self._free_ifname(box.netns),
                        default_route=box.primary() is endpoint)
            self._start_dns(container, box)
            self._write_files(container, box)
        except BaseException:
            box.endpoints.remove(endpoint)
            self._drop_endpoint(endpoint)
            raise

    def _free_ifname(self, netns):
        with netlink.Handle(netns) as inside:
            names = {link["name"] for link in inside.links()}
        return next("eth%d" % n for n in itertools.count() if "eth%d" % n not in names)

    def disconnect(self, container, term, force):
        """NetworkDisconnect: the endpoint goes at once on a running container. Published
        ports stay with the container until it stops (the proxy lives in its monitor)."""
        with self.lock:
            requested = dict(self._requested_networks(container))
            try:
                network = self.get_network(term)
            except errdefs.NotFound:
                if force and term in requested:
                    del container.network_settings["Networks"][term]
                    return
                raise
            if network.name not in requested:
                raise errdefs.System("container %s is not connected to network %s" % (container.id, term))
            _check_attachable(container, network)
            box = self.sandboxes.get(container.id) if container.running else None
            endpoint = next((e for e in box.endpoints if e.network is network), None) if box else None
            if endpoint is not None:
                self._disconnect_running(container, box, endpoint)
            del container.network_settings["Networks"][network.name]
            if box is not None:
                container.network_settings = self._running_settings(container, box)
        self.log_event("network", "disconnect", network.id,
                       {"container": container.id, "name": network.name, "type": network.driver})

    def _disconnect_running(self, container, box, endpoint):
        if endpoint is box.primary() and box.bindings:
            self._withdraw_ports(box)
        if endpoint.address:
            with netlink.Handle(box.netns) as inside:
                ifname = next((link["name"] for link in inside.links() if link["mac"] == endpoint.mac), None)
            if ifname:
                bridge.remove_from_sandbox(box.netns, ifname)
        box.endpoints.remove(endpoint)
        self._drop_endpoint(endpoint)
        if box.dns and all(e.network.predefined for e in box.endpoints):
            self.resolver.remove_sandbox(container.id)
            box.dns = False
        self._write_files(container, box)

    def _withdraw_ports(self, box):
        """The network carrying the published ports goes: their rules, host ports and proxy
        listeners go with it, as in dockerd (the address may soon be another container's)."""
        if self.ipt and box.port_rules:
            iptables.apply(self.ipt, box.port_rules, enable=False)
        if box.monitor is not None:
            box.monitor.unproxy()
        for address, proto, port, _ in box.bindings:
            self.allocator.release(address, proto, port)
        box.port_rules, box.bindings = [], []

    def rename(self, container):
        """ContainerRename: the embedded DNS answers to the new name at once."""
        with self.lock:
            box = self.sandboxes.get(container.id)
            for endpoint in box.endpoints if box else []:
                endpoint.container_name = container.name.lstrip("/")

    # ---- the embedded DNS server's view ------------------------------------------------------

    def resolve(self, container_id, name, qtype):
        """What 127.0.0.11 answers a container (drivers/resolver.py calls it): the addresses of
        the containers and aliases on the user networks it shares, in round-robin order; None
        for a name that is not ours (the resolver forwards it)."""
        name = name.rstrip(".").lower()
        with self.lock:
            box = self.sandboxes.get(container_id)
            if box is None:
                return None
            networks = [e.network for e in box.endpoints if not e.network.predefined and e.address]
            if qtype == "PTR":
                return _reverse_lookup(networks, name)
            target = box.link_aliases.get(name, name)
            found = []
            for network in networks:
                suffix = "." + network.name.lower()
                short = target[:-len(suffix)] if target.endswith(suffix) else target
                found += [e for e in network.endpoints.values() if e.answers_to(short)]
        if not found:
            return None
        addresses = [e.address6 if qtype == "AAAA" else e.address for e in found]
        addresses = [address for address in addresses if address]
        if not addresses:
            return []  # the name is ours, without an address of this family
        shift = next(self.round_robin) % len(addresses)
        return addresses[shift:] + addresses[:shift]


def _add_endpoint_links(box, settings):
    """An endpoint's Links on a user network (`network connect --link c:alias`): names the
    embedded DNS answers for this container only."""
    for text in settings.get("Links") or []:
        child, alias = links.parse_link(text)
        box.link_aliases[alias.lower()] = child.lower()


def _check_container_mode(config, host_config, bindings):
    """runconfig's conflicts for --network container:<id>: it shares another's namespace."""
    conflicts = [(bindings, "port publishing and the container type network mode"),
                 (host_config.get("Links"), "container type network can't be used with links. "
                                            "This would result in undefined behavior"),
                 (config.get("MacAddress"), "mac-address and the network mode"),
                 (host_config.get("Dns") or host_config.get("DnsSearch") or host_config.get("DnsOptions"),
                  "dns and the network mode"),
                 (host_config.get("ExtraHosts"), "custom host-to-IP mapping and the network mode")]
    for present, text in conflicts:
        if present:
            raise errdefs.InvalidParameter("conflicting options: " + text)


def _check_attachable(container, network):
    mode = container.host_config.get("NetworkMode") or "default"
    if mode == "host" or network.name == "host":
        raise errdefs.InvalidParameter("container cannot be disconnected from host network or "
                                       "connected to host network")
    if mode == "none" or network.name == "none" or mode.startswith("container:"):
        raise errdefs.InvalidParameter("container cannot be connected to multiple networks with one "
                                       "of the networks in private (none) mode")


def _reverse_lookup(networks, name):
    if not name.endswith(".in-addr.arpa"):
        return None
    try:
        address = ".".join(reversed(name[:-len(".in-addr.arpa")].split(".")))
        ipaddress.IPv4Address(address)
    except ValueError:
        return None
    for network in networks:
        for endpoint in network.endpoints.values():
            if endpoint.address == address:
                return [endpoint.container_name + "." + network.name]
    return None


def _filter_matches(check, network, key, values):
    """A filter key matches when one of its values does; but every `label` given must match."""
    combine = all if key == "label" else any
    return combine(check(network, value) for value in values)


def _name_matches(name, pattern):
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return pattern in name


def _label_matches(labels, wanted):
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _until(values):
    """The `until` prune filter (a timestamp or a Go duration such as 24h) as RFC 3339 text."""
    if not values:
        return None
    text = values[0]
    match = re.match(r"^(\d+)(h|m|s)$", text)
    if match:
        seconds = int(match.group(1)) * {"h": 3600, "m": 60, "s": 1}[match.group(2)]
        moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
    else:
        try:
            moment = datetime.datetime.fromtimestamp(float(text), datetime.timezone.utc)
        except ValueError:
            raise errdefs.InvalidParameter("invalid filter 'until=%s'" % text) from None
    return moment.isoformat().replace("+00:00", "Z")


def ipv6_enabled():
    """Whether this namespace has IPv6 (an empty HostIp then also binds ::, like dockerd)."""
    try:
        with open("/proc/sys/net/ipv6/conf/all/disable_ipv6") as setting:
            return setting.read().strip() == "0"
    except OSError:
        return False
