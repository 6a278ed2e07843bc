"""What a container sees of its network besides its interfaces: /etc/hosts, /etc/resolv.conf,
/etc/hostname, its published ports, and the NetworkSettings that `docker inspect` shows
(libnetwork's sandbox with its etchosts and resolvconf packages, and docker's nat package).

The three files live in the container's directory and are bind-mounted over the image's at
start (drivers/execdriver.py). They are rewritten in place (same inode), so a change made while
the container runs (a network connected, an address added) shows through the bind mount.
"""
import collections
import ipaddress
import os
import re

from drivers import errdefs

HOSTS_HEADER = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                "ff02::2\tip6-allrouters\n")
DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")
EMBEDDED_DNS = "127.0.0.11"
PROTOCOLS = ("tcp", "udp")
_PORT_KEY = re.compile(r"^(\d+)(?:-(\d+))?(?:/(\w+))?$")

PortBinding = collections.namedtuple("PortBinding", "proto container_port host_ip host_ports")
PortBinding.__doc__ = """One published port as asked: host_ports is a (first, last) range, (0, 0)
for "any free ephemeral port"; host_ip "" means the daemon's --ip."""


# ---- /etc/hosts, /etc/resolv.conf, /etc/hostname -------------------------------------------

def hosts_file(own_entries, link_entries, extra_hosts, host_network):
    """etchosts.Build: the localhost header (or the host's own file for --network host), the
    container's own addresses, its links, then --add-host entries."""
    text = read_text("/etc/hosts") if host_network else HOSTS_HEADER
    for address, names in own_entries:
        text += "%s\t%s\n" % (address, " ".join(names))
    text += "".join(link_entries)
    for entry in extra_hosts:
        name, _, address = entry.partition(":")
        text += "%s\t%s\n" % (address, name)
    return text


def host_resolv_conf():
    """The host's resolv.conf; systemd-resolved's stub (127.0.0.53) is replaced by the file
    that lists the real upstream servers, as dockerd does."""
    text = read_text("/etc/resolv.conf")
    if "nameserver 127.0.0.53" in text and os.path.exists("/run/systemd/resolve/resolv.conf"):
        text = read_text("/run/systemd/resolve/resolv.conf")
    return text


def parse_resolv_conf(text):
    """(nameservers, search domains, options) of a resolv.conf."""
    servers, search, options = [], [], []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            servers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            options.extend(words[1:])
    return servers, search, options


def upstream_servers(host_config, daemon_dns):
    """The servers a container's queries finally go to: --dns, the daemon's --dns, the host's."""
    servers, _, _ = parse_resolv_conf(host_resolv_conf())
    servers = host_config.get("Dns") or daemon_dns or [s for s in servers if _is_ip(s)]
    return list(servers or DEFAULT_DNS)


def _is_ip(text):
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def resolv_conf(host_config, daemon_dns, daemon_search, daemon_opts, mode):
    """setupResolvConf. mode: "host" (the host's servers as they are), "embedded" (a user
    network: 127.0.0.11 answers and forwards), or "" (default bridge: the host's servers
    without loopback ones, which mean nothing inside a container's namespace)."""
    servers, search, options = parse_resolv_conf(host_resolv_conf())
    if mode == "":
        servers = [s for s in servers if not s.startswith("127.") and s != "::1"]
    servers = host_config.get("Dns") or daemon_dns or servers or list(DEFAULT_DNS)
    search = host_config.get("DnsSearch") or daemon_search or search
    options = host_config.get("DnsOptions") or daemon_opts or options
    if mode == "embedded":
        servers = [EMBEDDED_DNS]
        options = [option for option in options if not option.startswith("ndots:")] + ["ndots:0"]
    out = "".join("nameserver %s\n" % server for server in servers)
    out += "search %s\n" % " ".join(search) if search else ""
    out += "options %s\n" % " ".join(options) if options else ""
    return out


def write_files(directory, files):
    """Rewrite the network files in place (a bind mount follows the inode, not the name)."""
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as network_file:
            network_file.write(text)


def read_text(path):
    try:
        with open(path) as source:
            return source.read()
    except OSError:
        return ""


# ---- Published ports (docker's nat package) ------------------------------------------------

def parse_port_key(key):
    """"80/tcp" -> (80, "tcp"); dockerd's 400 for anything else."""
    match = _PORT_KEY.match(str(key))
    if not match or match.group(2):
        raise errdefs.InvalidParameter('invalid port specification: "%s"' % key)
    number, proto = int(match.group(1)), (match.group(3) or "tcp").lower()
    if not 0 < number < 65536:
        raise errdefs.InvalidParameter('invalid port specification: "%s"' % key)
    if proto not in PROTOCOLS:
        raise errdefs.InvalidParameter("invalid proto %s: pydockerd publishes tcp and udp ports "
                                       "only" % proto)
    return number, proto


def parse_host_port(text):
    """HostPort "", "8080" or "8080-8090" -> (first, last)."""
    text = str(text or "").strip()
    if not text:
        return 0, 0
    first, _, last = text.partition("-")
    try:
        first, last = int(first), int(last or first)
    except ValueError:
        raise errdefs.InvalidParameter("invalid hostPort: %s" % text) from None
    if not (0 < first <= last < 65536):
        raise errdefs.InvalidParameter("invalid hostPort: %s" % text)
    return first, last


def port_bindings(config, host_config):
    """Every PortBinding the container asks for: HostConfig.PortBindings, plus, with -P
    (PublishAllPorts), an ephemeral one for each exposed port that has none."""
    wanted = dict(host_config.get("PortBindings") or {})
    if host_config.get("PublishAllPorts"):
        for key in exposed_ports(config):
            if not wanted.get(key):
                wanted[key] = [{"HostIp": "", "HostPort": ""}]
    bindings = []
    for key in sorted(wanted, key=lambda k: parse_port_key(k)):
        number, proto = parse_port_key(key)
        for item in wanted[key] or []:
            if not isinstance(item, dict):
                raise errdefs.InvalidParameter("invalid port binding for %s" % key)
            host_ip = str(item.get("HostIp") or "")
            if host_ip:
                try:
                    ipaddress.ip_address(host_ip)
                except ValueError:
                    raise errdefs.InvalidParameter("invalid IP address: %s" % host_ip) from None
            bindings.append(PortBinding(proto, number, host_ip, parse_host_port(item.get("HostPort"))))
    return bindings


def exposed_ports(config):
    """Config.ExposedPorts' keys that name a port. Nothing checks them at create (an image's
    EXPOSE put them there), and dockerd's nat.Port.Int() reads a malformed one as port 0,
    which is never published: such a key is skipped, never a failed start."""
    keys = []
    for key in config.get("ExposedPorts") or {}:
        try:
            parse_port_key(key)
        except errdefs.InvalidParameter:
            continue
        keys.append(key)
    return keys


def exposed_port_keys(config, host_config):
    """The keys NetworkSettings.Ports lists: exposed and published ports ("80/tcp")."""
    keys = set(exposed_ports(config)) | set(host_config.get("PortBindings") or {})
    return sorted("%d/%s" % parse_port_key(key) for key in keys)


# ---- NetworkSettings -----------------------------------------------------------------------

def endpoint_settings(config=None):
    """An EndpointSettings as inspect shows it; `config` is what create or connect asked for."""
    config = config or {}
    return {"IPAMConfig": config.get("IPAMConfig") or None, "Links": config.get("Links") or None,
            "Aliases": config.get("Aliases") or None, "NetworkID": "", "EndpointID": "",
            "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": config.get("MacAddress") or "", "DriverOpts": config.get("DriverOpts") or None}


def network_settings(networks, ports=None, sandbox_key="", default_bridge=None, sandbox_id=""):
    """NetworkSettings: the per-network EndpointSettings, and for a container on the default
    bridge the same address repeated at the top level (the pre-1.9 fields clients still read)."""
    top = default_bridge or {}
    return {"Bridge": "", "SandboxID": sandbox_id, "HairpinMode": False, "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0, "Ports": ports or {}, "SandboxKey": sandbox_key,
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            "EndpointID": top.get("EndpointID", ""), "Gateway": top.get("Gateway", ""),
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPAddress": top.get("IPAddress", ""), "IPPrefixLen": top.get("IPPrefixLen", 0),
            "IPv6Gateway": "", "MacAddress": top.get("MacAddress", ""), "Networks": networks}
