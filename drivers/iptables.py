"""The iptables layer: dockerd's chains and rules, programmed through the `iptables` binary.

dockerd 20.10 (libnetwork: iptables/iptables.go, drivers/bridge/setup_ip_tables.go,
drivers/bridge/link.go, firewall_linux.go) keeps a container's network reachable with a few
iptables chains of its own and a handful of rules per network, per published port and per
legacy link. This module holds those rules as data and programs them; the network controller
decides when. It runs the binary (an argv list, never a shell) with `-w`, so that it waits for
the xtables lock instead of failing while another program holds it.

Every change is idempotent, like libnetwork's ProgramRule: a rule is checked with `-C` before
it is inserted or appended (never twice), and deleted only when `-C` finds it.

The chains (setup_chains; remove_chains undoes it):

    filter DOCKER                    the published ports' ACCEPT rules and --link rules
    filter DOCKER-USER               the user's own rules, ending in `-j RETURN`; jumped to first
    filter DOCKER-ISOLATION-STAGE-1  a packet leaving one bridge for another interface ...
    filter DOCKER-ISOLATION-STAGE-2  ... is dropped when it goes into another bridge
    nat DOCKER                       the published ports' DNAT rules

    FORWARD  -j DOCKER-USER, then -j DOCKER-ISOLATION-STAGE-1, both on top of the chain
    nat PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
    nat OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER

With the userland proxy off (`hairpin`), dockerd drops `! -d 127.0.0.0/8` from the OUTPUT jump
and the `! -i <bridge>` from each DNAT: connections from the host's loopback and from the
bridge itself are then DNATed too, since no proxy is there to carry them.

The rules (network_rules, dnat_rules, container_port_rules, link_rules) are lists of
Rule(table, chain, args, action) for apply(). Their arguments are written in iptables-save's own order (source,
destination, interfaces, protocol and its match, target), so that a rule reads exactly as
`iptables-save` prints it and as wire.md (section 24) records it; iptables itself does
not care about the order. The action keeps dockerd's placement: "-I" puts a rule on top of its
chain (so it wins over what the host had), "-A" at the end (after everything before it).

Rules inserted on top of FORWARD would land above the DOCKER-USER and isolation jumps, so,
like dockerd after each network it sets up (EnsureJumpRule, arrangeUserFilterRule), apply()
moves those two jumps back on top whenever it inserts into FORWARD.

What belongs to pydockerd: the chains above and the rules this module makes. It never flushes
or deletes another chain, and never deletes a rule it does not make; a daemon with iptables on
never shares its network namespace with a running dockerd (design.md section 6), so the chains
under dockerd's names there are its own. The one exception is DOCKER-USER: it holds the user's
rules, so remove_chains deletes it only when nothing but its RETURN rule is left in it (dockerd
never deletes it at all).

IPv6: only iptables (IPv4) is programmed. A port published on an IPv6 host address ("::")
gets no rules at all, as in dockerd without --ip6tables: the userland proxy alone serves it.
"""
import collections
import ipaddress
import shutil
import subprocess
import threading

from drivers import errdefs

IPTABLES_MISSING = "iptables not found: install iptables or start the daemon with --iptables=false"
NSENTER_MISSING = "nsenter not found: install util-linux to program iptables in another network namespace"

FILTER = "filter"
NAT = "nat"
MANGLE = "mangle"

INSERT = "-I"
APPEND = "-A"

DOCKER_CHAIN = "DOCKER"
USER_CHAIN = "DOCKER-USER"
ISOLATION_CHAIN1 = "DOCKER-ISOLATION-STAGE-1"
ISOLATION_CHAIN2 = "DOCKER-ISOLATION-STAGE-2"

# The loopback range the OUTPUT jump leaves to the userland proxy (LoopbackByVersion).
LOOPBACK = "127.0.0.0/8"

IPV4_FORWARD_CONF = "/proc/sys/net/ipv4/ip_forward"

PROTOCOLS = ("tcp", "udp", "sctp")

# iptables exits with 1 when -C finds no such rule or -S no such chain; 2 means bad arguments
# (e.g. a jump to a chain that does not exist) and anything else a real failure.
_NOT_FOUND = 1

# `-w` serialises single iptables commands between processes; this serialises our
# check-then-change pairs between the daemon's threads, so two threads never both add a rule.
_program_lock = threading.RLock()

Rule = collections.namedtuple("Rule", "table chain args action")
Rule.__doc__ = """One iptables rule: `iptables -t <table> <action> <chain> <args...>`."""


class IptablesError(Exception):
    """An iptables command failed; the message names the command and what iptables said."""


class Iptables(object):
    """The `iptables` binary, optionally run in another network namespace (nsenter --net)."""

    def __init__(self, binary="iptables", netns=None):
        path = shutil.which(binary)
        if path is None:
            raise IptablesError(IPTABLES_MISSING)
        self.argv = [path, "-w"]
        if netns is not None:
            nsenter = shutil.which("nsenter")
            if nsenter is None:
                raise IptablesError(NSENTER_MISSING)
            self.argv = [nsenter, "--net=" + netns] + self.argv

    def _call(self, args):
        argv = self.argv + list(args)
        try:
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, universal_newlines=True)
        except OSError as err:
            raise IptablesError("iptables failed: %s: %s" % (" ".join(argv), err))
        return argv, result

    @staticmethod
    def _error(argv, result):
        # dockerd's wording (iptables.go raw): "iptables failed: <command>: <output> (<status>)"
        return IptablesError("iptables failed: %s: %s (exit status %d)"
                             % (" ".join(argv), result.stderr.strip(), result.returncode))

    def run(self, *args):
        """Run `iptables -w <args>` and return its standard output."""
        argv, result = self._call(args)
        if result.returncode != 0:
            raise self._error(argv, result)
        return result.stdout

    def _found(self, *args):
        """Run a -C/-S question: True when iptables found it, False when it said "no such"."""
        argv, result = self._call(args)
        if result.returncode not in (0, _NOT_FOUND):
            raise self._error(argv, result)
        return result.returncode == 0

    def exists(self, table, chain, *rule):
        """-C: is this rule in the chain? (False too when the chain itself is missing)"""
        return self._found("-t", table, "-C", chain, *rule)

    def ensure_rule(self, action, table, chain, *rule):
        """Insert (-I) or append (-A) the rule unless it is there; True when it added it."""
        if action not in (INSERT, APPEND):
            raise ValueError("iptables action must be -I or -A, not %r" % (action,))
        with _program_lock:
            if self.exists(table, chain, *rule):
                return False
            self.run("-t", table, action, chain, *rule)
            return True

    def delete_rule(self, table, chain, *rule):
        """Delete the rule if it is there; True when it deleted it."""
        with _program_lock:
            if not self.exists(table, chain, *rule):
                return False
            self.run("-t", table, "-D", chain, *rule)
            return True

    def chain_exists(self, table, chain):
        """-S <chain> answers only for a chain that exists."""
        return self._found("-t", table, "-S", chain)

    def ensure_chain(self, table, chain):
        """Create the chain (-N) unless it exists; True when it created it."""
        with _program_lock:
            if self.chain_exists(table, chain):
                return False
            self.run("-t", table, "-N", chain)
            return True

    def remove_chain(self, table, chain):
        """Flush (-F) and delete (-X) the chain if it exists; True when it removed it."""
        with _program_lock:
            if not self.chain_exists(table, chain):
                return False
            self.run("-t", table, "-F", chain)
            self.run("-t", table, "-X", chain)
            return True

    def rules(self, table, chain):
        """The chain's rules as `iptables -S` prints them ("-A <chain> ..."), in order."""
        return [line for line in self.run("-t", table, "-S", chain).splitlines()
                if line.startswith("-A ")]


# -- the chains ------------------------------------------------------------------------------

# Created in this order (setupIPChains, then arrangeUserFilterRule).
CHAINS = ((NAT, DOCKER_CHAIN), (FILTER, DOCKER_CHAIN), (FILTER, ISOLATION_CHAIN1),
          (FILTER, ISOLATION_CHAIN2), (FILTER, USER_CHAIN))

# FORWARD's first rules, in order: the user's chain sees every packet before dockerd's do.
JUMP_TARGETS = (USER_CHAIN, ISOLATION_CHAIN1)

_RETURN = ("-j", "RETURN")
_LOCAL_DESTINATION = ("-m", "addrtype", "--dst-type", "LOCAL")


def _nat_jumps(hairpin):
    """nat's jumps to DOCKER (ProgramChain): appended after whatever the host's chains do.

    Only locally addressed traffic is DNATed; with the proxy on, loopback is left to it.
    """
    loopback = () if hairpin else ("!", "-d", LOOPBACK)
    return [Rule(NAT, "PREROUTING", _LOCAL_DESTINATION + ("-j", DOCKER_CHAIN), APPEND),
            Rule(NAT, "OUTPUT", loopback + _LOCAL_DESTINATION + ("-j", DOCKER_CHAIN), APPEND)]


def chain_rules(hairpin=False):
    """The rules setup_chains puts in and around dockerd's chains, besides FORWARD's jumps."""
    return [
        # AddReturnRule: appended, so each network's isolation rules (-I) stay above it.
        Rule(FILTER, ISOLATION_CHAIN1, _RETURN, APPEND),
        Rule(FILTER, ISOLATION_CHAIN2, _RETURN, APPEND),
        # appended, so that the user's own rules in DOCKER-USER come first
        Rule(FILTER, USER_CHAIN, _RETURN, APPEND),
    ] + _nat_jumps(hairpin)


def setup_chains(ipt, hairpin=False):
    """setupIPChains + arrangeUserFilterRule: dockerd's chains, their RETURN rules and jumps.

    `hairpin` is dockerd's `!--userland-proxy`. Safe to call again: nothing is added twice.
    On a failure the chains this call created are removed again.
    """
    created = []
    try:
        for table, chain in CHAINS:
            if ipt.ensure_chain(table, chain):
                created.append((table, chain))
        apply(ipt, chain_rules(hairpin))
        ensure_jump_rules(ipt)
    except IptablesError:
        for table, chain in reversed(created):
            ipt.remove_chain(table, chain)
        raise


def ensure_jump_rules(ipt):
    """EnsureJumpRule: FORWARD starts with -j DOCKER-USER, then -j DOCKER-ISOLATION-STAGE-1.

    When they are not the first two rules already, each is deleted and inserted on top again,
    the isolation jump first so that the user's chain ends up above it (dockerd's order).
    """
    expected = ["-A FORWARD -j %s" % target for target in JUMP_TARGETS]
    with _program_lock:
        if ipt.rules(FILTER, "FORWARD")[:len(expected)] == expected:
            return
        for target in reversed(JUMP_TARGETS):
            ipt.delete_rule(FILTER, "FORWARD", "-j", target)
            ipt.run("-t", FILTER, INSERT, "FORWARD", "-j", target)


def remove_chains(ipt):
    """Undo setup_chains for a clean shutdown: the jumps to dockerd's chains, then the chains.

    Call it once every network's, port's and link's rules are disabled: a chain another rule
    still jumps to cannot be deleted (IptablesError). DOCKER-USER stays when the user put
    rules of their own in it.
    """
    with _program_lock:
        for target in JUMP_TARGETS:
            if ipt.chain_exists(FILTER, target):
                ipt.delete_rule(FILTER, "FORWARD", "-j", target)
        if ipt.chain_exists(NAT, DOCKER_CHAIN):
            # both OUTPUT variants, whichever hairpin setting made them (ChainInfo.Remove);
            # the second PREROUTING jump is the same rule, already gone: a no-op
            apply(ipt, _nat_jumps(hairpin=False) + _nat_jumps(hairpin=True), enable=False)
        # in creation order, as removeIPChains does: STAGE-1's jumps go before STAGE-2 does
        for table, chain in CHAINS:
            if chain != USER_CHAIN or not _user_rules_left(ipt):
                ipt.remove_chain(table, chain)


def _user_rules_left(ipt):
    """Take our RETURN out of DOCKER-USER; True when the user's own rules remain in it."""
    if not ipt.chain_exists(FILTER, USER_CHAIN):
        return False
    ipt.delete_rule(FILTER, USER_CHAIN, *_RETURN)
    return bool(ipt.rules(FILTER, USER_CHAIN))


# -- input checks ----------------------------------------------------------------------------

def _bridge(name):
    """A Linux interface name (dev_valid_name): 1-15 bytes, no '/', ':' or white space."""
    if (not isinstance(name, str) or not 0 < len(name.encode()) < 16 or name in (".", "..")
            or any(c in name for c in "/:") or any(c.isspace() for c in name)):
        raise errdefs.InvalidParameter("invalid bridge interface name: %r" % (name,))
    return name


def _ipv4(address, what):
    try:
        return ipaddress.IPv4Address(address)
    except ValueError:
        raise errdefs.InvalidParameter("invalid %s IPv4 address: %r" % (what, address))


def _host_ip(address):
    """A published port's host address, or None for an IPv6 one (no iptables rules)."""
    try:
        host_ip = ipaddress.ip_address(address)
    except ValueError:
        raise errdefs.InvalidParameter("invalid host IP address: %r" % (address,))
    return host_ip if host_ip.version == 4 else None


def _subnet(subnet):
    """The network's IPv4 subnet, masked like dockerd's maskedAddrv4 (172.17.0.1/16 -> /16)."""
    try:
        return str(ipaddress.IPv4Network(subnet, strict=False))
    except ValueError:
        raise errdefs.InvalidParameter("invalid IPv4 subnet: %r" % (subnet,))


def _proto(proto):
    if proto not in PROTOCOLS:
        raise errdefs.InvalidParameter("invalid protocol %r: must be one of %s"
                                       % (proto, ", ".join(PROTOCOLS)))
    return proto


def _port(port):
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise errdefs.InvalidParameter("invalid port %r: must be an integer from 1 to 65535"
                                       % (port,))
    return str(port)


def _host(address):
    """An address as iptables-save prints a single host: with /32."""
    return "%s/32" % address


def _port_match(proto, option, port):
    """`-p tcp -m tcp --dport 80`: the protocol and its match, as iptables-save prints them."""
    return ("-p", proto, "-m", proto, option, port)


# -- a bridge network ------------------------------------------------------------------------

def network_rules(bridge, subnet, icc, ip_masq, internal, hairpin=False):
    """The rules of one bridge network, in the order dockerd programs them.

    setupIPTablesInternal, ProgramChain (filter) and setINC for a network; for an internal
    network setupInternalNetworkRules instead: no NAT, no DOCKER chain, no isolation between
    networks, only drops for traffic that leaves or enters the subnet.
    """
    bridge, subnet = _bridge(bridge), _subnet(subnet)
    if internal:
        return [
            # inserted: on top of STAGE-1, whatever other networks have there
            Rule(FILTER, ISOLATION_CHAIN1, ("!", "-d", subnet, "-i", bridge, "-j", "DROP"), INSERT),
            Rule(FILTER, ISOLATION_CHAIN1, ("!", "-s", subnet, "-o", bridge, "-j", "DROP"), INSERT),
            _icc_rule(bridge, icc),
        ]
    rules = []
    if ip_masq:
        # inserted: the containers' outgoing traffic is masqueraded before the host's own NAT
        rules.append(Rule(NAT, "POSTROUTING", ("-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"),
                          INSERT))
    if ip_masq and not hairpin:
        # inserted: traffic from the bridge itself is never DNATed (the proxy handles hairpin)
        rules.append(Rule(NAT, DOCKER_CHAIN, ("-i", bridge, "-j", "RETURN"), INSERT))
    if hairpin:
        # inserted: without a proxy, host-local sources reaching a container are masqueraded
        rules.append(Rule(NAT, "POSTROUTING",
                          ("-o", bridge, "-m", "addrtype", "--src-type", "LOCAL", "-j", "MASQUERADE"),
                          INSERT))
    rules += [
        _icc_rule(bridge, icc),
        # inserted: containers may reach anything outside their bridge
        Rule(FILTER, "FORWARD", ("-i", bridge, "!", "-o", bridge, "-j", "ACCEPT"), INSERT),
        # inserted: new traffic into the bridge goes through the DOCKER chain (published ports)
        Rule(FILTER, "FORWARD", ("-o", bridge, "-j", DOCKER_CHAIN), INSERT),
        # inserted last, so topmost: replies to the containers' own connections pass at once
        Rule(FILTER, "FORWARD", ("-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
                                 "-j", "ACCEPT"), INSERT),
        # inserted (setINC): above the chains' final RETURN
        Rule(FILTER, ISOLATION_CHAIN1, ("-i", bridge, "!", "-o", bridge, "-j", ISOLATION_CHAIN2),
             INSERT),
        Rule(FILTER, ISOLATION_CHAIN2, ("-o", bridge, "-j", "DROP"), INSERT),
    ]
    return rules


def _icc_rule(bridge, icc):
    """setIcc: containers on one bridge talk to each other (inserted ACCEPT) or not (appended
    DROP, after any --link ACCEPT that must still win)."""
    if icc:
        return Rule(FILTER, "FORWARD", ("-i", bridge, "-o", bridge, "-j", "ACCEPT"), INSERT)
    return Rule(FILTER, "FORWARD", ("-i", bridge, "-o", bridge, "-j", "DROP"), APPEND)


# -- published ports -------------------------------------------------------------------------

def dnat_rules(bridge, container_ip, proto, container_port, host_ip, host_port, hairpin=False):
    """ChainInfo.Forward's DNAT for one host binding: [] when host_ip is IPv6 (proxy only).

    Appended to nat DOCKER, below the bridges' RETURN rules. `-d` only for a specific host
    address: 0.0.0.0 means every local address (PREROUTING's jump already asks for LOCAL).
    """
    address = _host_ip(host_ip)
    if address is None:
        return []
    bridge = _bridge(bridge)
    container_ip = _ipv4(container_ip, "container")
    destination = () if address.is_unspecified else ("-d", _host(address))
    from_outside = () if hairpin else ("!", "-i", bridge)
    return [Rule(NAT, DOCKER_CHAIN,
                 destination + from_outside + _port_match(_proto(proto), "--dport", _port(host_port))
                 + ("-j", "DNAT", "--to-destination", "%s:%s" % (container_ip, _port(container_port))),
                 APPEND)]


def container_port_rules(bridge, container_ip, proto, container_port):
    """The rules a published container port needs once, however many host bindings it has.

    All appended, as ChainInfo.Forward does: the filter DOCKER ACCEPT lets DNATed traffic in
    from outside the bridge; the nat POSTROUTING MASQUERADE makes a container reaching its own
    published port see the reply come back (hairpin NAT); for SCTP a mangle CHECKSUM rule fills
    the checksums veth leaves to the NIC on kernels <= 4.9.
    """
    bridge = _bridge(bridge)
    container = _host(_ipv4(container_ip, "container"))
    proto, port = _proto(proto), _port(container_port)
    rules = [
        Rule(FILTER, DOCKER_CHAIN, ("-d", container, "!", "-i", bridge, "-o", bridge)
             + _port_match(proto, "--dport", port) + ("-j", "ACCEPT"), APPEND),
        Rule(NAT, "POSTROUTING", ("-s", container, "-d", container)
             + _port_match(proto, "--dport", port) + ("-j", "MASQUERADE"), APPEND),
    ]
    if proto == "sctp":
        rules.append(Rule(MANGLE, "POSTROUTING", _port_match(proto, "--sport", port)
                          + ("-j", "CHECKSUM", "--checksum-fill"), APPEND))
    return rules


# -- legacy links ----------------------------------------------------------------------------

def link_rules(bridge, parent_ip, child_ip, proto, port):
    """linkContainers: with --icc=false, a --link opens the child's exposed port to its parent.

    Appended to filter DOCKER (link.Enable uses -A): the request from parent to child and the
    child's replies from that port.
    """
    bridge = _bridge(bridge)
    parent, child = _host(_ipv4(parent_ip, "parent")), _host(_ipv4(child_ip, "child"))
    proto, port = _proto(proto), _port(port)
    on_bridge = ("-i", bridge, "-o", bridge)
    return [
        Rule(FILTER, DOCKER_CHAIN, ("-s", parent, "-d", child) + on_bridge
             + _port_match(proto, "--dport", port) + ("-j", "ACCEPT"), APPEND),
        Rule(FILTER, DOCKER_CHAIN, ("-s", child, "-d", parent) + on_bridge
             + _port_match(proto, "--sport", port) + ("-j", "ACCEPT"), APPEND),
    ]


# -- programming -----------------------------------------------------------------------------

def apply(ipt, rules, enable=True):
    """Add each rule that is missing (enable) or delete each that is there (disable).

    Enabling is all or nothing: on a failure the rules this call added are deleted again
    before the error is raised. After inserting into FORWARD it puts dockerd's jumps back on
    top (ensure_jump_rules). Disabling goes on past a failure, so that one bad rule does not
    leave the others behind, and raises the first error at the end.
    """
    if not enable:
        _disable(ipt, rules)
        return
    added = []
    try:
        for rule in rules:
            if ipt.ensure_rule(rule.action, rule.table, rule.chain, *rule.args):
                added.append(rule)
        if any(rule.chain == "FORWARD" and rule.action == INSERT for rule in added):
            ensure_jump_rules(ipt)
    except IptablesError as err:
        try:
            _disable(ipt, added)
        except IptablesError as undo_err:
            raise IptablesError("%s; undoing the rules added before it failed too: %s"
                                % (err, undo_err))
        raise


def _disable(ipt, rules):
    first_error = None
    for rule in reversed(rules):
        try:
            ipt.delete_rule(rule.table, rule.chain, *rule.args)
        except IptablesError as err:
            first_error = first_error or err
    if first_error is not None:
        raise first_error


# -- IP forwarding ---------------------------------------------------------------------------

def ip_forward_enable(ipt=None):
    """setupIPForwarding (--ip-forward): turn on IPv4 forwarding in this network namespace.

    When it was off and iptables is on (`ipt` given), dockerd 20.10 also sets FORWARD's policy
    to DROP: forwarding switched on for containers must not make the host a router for
    everything else; only the traffic its own rules ACCEPT gets through. When forwarding was
    already on, the host's admin chose that, and the policy is left alone. If the policy cannot
    be set, forwarding is turned off again. Returns whether it turned forwarding on.
    """
    try:
        with open(IPV4_FORWARD_CONF) as conf:
            if conf.read(1) == "1":
                return False
    except OSError as err:
        raise errdefs.System("Cannot read IP forwarding setup: %s" % err)
    _write_ip_forward("1", "Enabling IP forwarding failed")
    if ipt is not None:
        try:
            ipt.run("-t", FILTER, "-P", "FORWARD", "DROP")
        except IptablesError as err:
            _write_ip_forward("0", "Disabling IP forwarding failed")
            raise IptablesError("setting default policy to DROP in FORWARD chain failed: %s" % err)
    return True


def _write_ip_forward(value, failure):
    try:
        with open(IPV4_FORWARD_CONF, "w") as conf:
            conf.write(value + "\n")
    except OSError as err:
        raise errdefs.System("%s: %s" % (failure, err))
