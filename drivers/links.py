"""Legacy container links (Docker 1.8's daemon/links): `docker run --link web:w`.

A link lets a parent container reach a child on the default bridge by an alias. It is an edge
in linkgraph.db (parent -> child, named by the alias) and it shows inside the parent three ways:

  * /etc/hosts maps the alias, the child's hostname and its name to the child's address;
  * environment variables describe the child, as 1.8's Link.ToEnv wrote them:
        W_PORT=tcp://172.17.0.2:80                (the lowest exposed port, tcp first)
        W_PORT_80_TCP=tcp://172.17.0.2:80         (and _ADDR, _PORT, _PROTO for each port,
        W_PORT_80_TCP_ADDR=172.17.0.2              plus _START/_END for runs of ports)
        W_NAME=/parent/w
        W_ENV_<NAME>=<value>                      (the child's own Env, but HOME and PATH)
  * with --icc=false, exactly the child's exposed ports are opened to the parent in
    iptables (drivers/iptables.link_rules).

Links are computed when the parent starts, from the children running at that moment: a child
that is not running is an error, as in Docker ("Cannot link to a non running container").
"""
import collections

Link = collections.namedtuple("Link", "alias parent_name child_ip child_hostname child_name "
                                      "child_env ports")
Link.__doc__ = """links.Link: what a parent sees of one child. ports are (number, proto) pairs."""


def parse_link(text):
    """`name:alias` (or just `name`, aliased as itself) from HostConfig.Links."""
    name, _, alias = text.partition(":")
    # dockerd stores a link as /child:/parent/alias; the CLI sends child:alias
    name, alias = name.strip("/"), (alias or name).strip("/").rsplit("/", 1)[-1]
    if not name or not alias or "/" in name:
        raise ValueError("invalid link: %s" % text)
    return name, alias


def exposed_ports(config):
    """Config.ExposedPorts {"80/tcp": {}} as sorted (number, proto) pairs, tcp before udp."""
    ports = []
    for spec in (config.get("ExposedPorts") or {}):
        number, _, proto = spec.partition("/")
        if number.isdigit():
            ports.append((int(number), proto or "tcp"))
    return sorted(ports, key=lambda port: (port[0], port[1] != "tcp", port[1]))


def to_env(link):
    """Link.ToEnv: the environment a parent gets for one child."""
    prefix = link.alias.upper().replace("-", "_")
    env = []
    if link.ports:
        number, proto = link.ports[0]
        env.append("%s_PORT=%s://%s:%d" % (prefix, proto, link.child_ip, number))
    for run in _contiguous_runs(link.ports):
        env.extend(_run_env(prefix, link.child_ip, run))
        for number, proto in run:
            env.extend(_port_env(prefix, link.child_ip, number, proto))
    env.append("%s_NAME=/%s/%s" % (prefix, link.parent_name.strip("/"), link.alias))
    for entry in link.child_env:
        name, sep, value = entry.partition("=")
        if sep and name not in ("HOME", "PATH"):
            env.append("%s_ENV_%s=%s" % (prefix, name, value))
    return env


def _port_env(prefix, ip, number, proto):
    key = "%s_PORT_%d_%s" % (prefix, number, proto.upper())
    return ["%s=%s://%s:%d" % (key, proto, ip, number), "%s_ADDR=%s" % (key, ip),
            "%s_PORT=%d" % (key, number), "%s_PROTO=%s" % (key, proto)]


def _run_env(prefix, ip, run):
    """A run of consecutive ports of one protocol is also described by its two ends."""
    if len(run) < 2:
        return []
    (first, proto), (last, _) = run[0], run[-1]
    key = "%s_PORT_%d_%s" % (prefix, first, proto.upper())
    return ["%s_START=%s://%s:%d" % (key, proto, ip, first), "%s_ADDR=%s" % (key, ip),
            "%s_PROTO=%s" % (key, proto), "%s_PORT_START=%d" % (key, first),
            "%s_END=%s://%s:%d" % (key, proto, ip, last), "%s_PORT_END=%d" % (key, last)]


def _contiguous_runs(ports):
    runs = []
    for number, proto in ports:
        if runs and runs[-1][-1] == (number - 1, proto):
            runs[-1].append((number, proto))
        else:
            runs.append([(number, proto)])
    return runs


def hosts_entry(link):
    """The /etc/hosts line: the alias, then the child's hostname and name when they differ."""
    names = [link.alias]
    for name in (link.child_hostname, link.child_name.strip("/")):
        if name and name not in names:
            names.append(name)
    return "%s\t%s\n" % (link.child_ip, " ".join(names))
