"""drivers/iptables.py: dockerd's chains and rules, checked two ways.

The pure tests compare the rule lists with what dockerd 20.10 made (wire.md section 24, whose
lines are copied here verbatim). The others program the rules with the real iptables inside
a network namespace each test makes (`ip netns add pyd-ipt-<random>`, deleted afterwards) and
compare `iptables-save` before and after; they need root and an iptables the kernel supports,
and skip, saying why, only when those are missing.
"""
import collections
import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest

from conftest import REPO
from drivers import errdefs, iptables
from drivers.iptables import FILTER, NAT, Rule

# wire.md section 24, "Baseline rules": what dockerd makes for the default bridge.
BASELINE_FORWARD = [
    "-A FORWARD -j DOCKER-USER",
    "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
    "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A FORWARD -o docker0 -j DOCKER",
    "-A FORWARD -i docker0 ! -o docker0 -j ACCEPT",
    "-A FORWARD -i docker0 -o docker0 -j ACCEPT",
]
BASELINE_NAT = [
    "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
    "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
    "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
    "-A DOCKER -i docker0 -j RETURN",
]
# setINC's isolation rules for docker0, as iptables-save prints them.
BASELINE_ISOLATION = [
    "-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2",
    "-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP",
]

# wire.md section 24, "iptables diff" of `docker run -p 8080:80 -p 127.0.0.1:8443:443/tcp
# -p 5353:53/udp -p 80` on wire-net1.
WIRE_BRIDGE = "br-93edef338783"
WIRE_SUBNET = "172.19.0.0/16"
WIRE_CONTAINER = "172.19.0.3"
WIRE_PORTS_DIFF = """\
*filter
-A DOCKER -d 172.19.0.3/32 ! -i br-93edef338783 -o br-93edef338783 -p tcp -m tcp --dport 443 -j ACCEPT
-A DOCKER -d 172.19.0.3/32 ! -i br-93edef338783 -o br-93edef338783 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER -d 172.19.0.3/32 ! -i br-93edef338783 -o br-93edef338783 -p udp -m udp --dport 53 -j ACCEPT
*nat
-A POSTROUTING -s 172.19.0.3/32 -d 172.19.0.3/32 -p tcp -m tcp --dport 443 -j MASQUERADE
-A POSTROUTING -s 172.19.0.3/32 -d 172.19.0.3/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A POSTROUTING -s 172.19.0.3/32 -d 172.19.0.3/32 -p udp -m udp --dport 53 -j MASQUERADE
-A DOCKER -d 127.0.0.1/32 ! -i br-93edef338783 -p tcp -m tcp --dport 8443 -j DNAT --to-destination 172.19.0.3:443
-A DOCKER ! -i br-93edef338783 -p tcp -m tcp --dport 32768 -j DNAT --to-destination 172.19.0.3:80
-A DOCKER ! -i br-93edef338783 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.19.0.3:80
-A DOCKER ! -i br-93edef338783 -p udp -m udp --dport 5353 -j DNAT --to-destination 172.19.0.3:53
"""
# The run's NetworkSettings.Ports: (proto, container port, host ip, host port), "::" twins too.
WIRE_BINDINGS = [
    ("tcp", 443, "127.0.0.1", 8443),
    ("udp", 53, "0.0.0.0", 5353), ("udp", 53, "::", 5353),
    ("tcp", 80, "0.0.0.0", 32768), ("tcp", 80, "::", 32768),
    ("tcp", 80, "0.0.0.0", 8080), ("tcp", 80, "::", 8080),
]

# What the "host" in each test namespace already has: pydockerd must leave it alone.
HOST_RULES = [(FILTER, "FORWARD", ("-i", "lo", "-j", "ACCEPT")),
              (NAT, "POSTROUTING", ("-o", "lo", "-j", "RETURN"))]


def save_form(rules):
    """(table, "-A chain args") for each rule: how iptables-save prints it."""
    return [(rule.table, "-A %s %s" % (rule.chain, " ".join(rule.args))) for rule in rules]


def parse_save(text):
    """iptables-save text -> [(table, "-A ...")] in order."""
    lines, table = [], None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A "):
            lines.append((table, line))
    return lines


def wire_port_rules(hairpin=False):
    """The rules a controller programs for the wire-web container: each binding's DNAT and,
    once per container port, its ACCEPT and MASQUERADE."""
    rules, container_ports = [], []
    for proto, port, host_ip, host_port in WIRE_BINDINGS:
        dnat = iptables.dnat_rules(WIRE_BRIDGE, WIRE_CONTAINER, proto, port, host_ip, host_port,
                                   hairpin)
        rules += dnat
        if dnat and (proto, port) not in container_ports:
            container_ports.append((proto, port))
    for proto, port in container_ports:
        rules += iptables.container_port_rules(WIRE_BRIDGE, WIRE_CONTAINER, proto, port)
    return rules


# -- the rule lists, against wire.md ---------------------------------------------------------

def test_default_bridge_rules_are_dockerds_baseline():
    rules = iptables.network_rules("docker0", "172.17.0.1/16", icc=True, ip_masq=True,
                                   internal=False)
    expected = ([(FILTER, line) for line in BASELINE_FORWARD[2:] + BASELINE_ISOLATION]
                + [(NAT, line) for line in BASELINE_NAT[2:]])
    assert sorted(save_form(rules)) == sorted(expected)


def test_setup_chains_rules_are_dockerds_baseline_jumps():
    rules = save_form(iptables.chain_rules())
    assert [(NAT, line) for line in BASELINE_NAT[:2]] == [r for r in rules if r[0] == NAT]
    assert (FILTER, "-A DOCKER-USER -j RETURN") in rules


def test_network_rules_keep_dockers_insert_and_append_order():
    rules = iptables.network_rules("docker0", "172.17.0.0/16", icc=True, ip_masq=True,
                                   internal=False)
    assert {rule.action for rule in rules} == {"-I"}
    # inserted one after another, the FORWARD rules end up in the baseline's order
    forward = [line for table, line in save_form(rules) if line.startswith("-A FORWARD")]
    assert list(reversed(forward)) == BASELINE_FORWARD[2:]


def test_icc_false_appends_a_drop_after_everything():
    rules = iptables.network_rules("docker0", "172.17.0.0/16", icc=False, ip_masq=True,
                                   internal=False)
    icc = [rule for rule in rules if rule.args == ("-i", "docker0", "-o", "docker0", "-j", "DROP")]
    assert [rule.action for rule in icc] == ["-A"]
    assert not [rule for rule in rules if rule.args[-1] == "ACCEPT" and "-i" in rule.args
                and "!" not in rule.args and rule.chain == "FORWARD"]


def test_no_ip_masq_means_no_masquerade_and_no_skip_dnat():
    rules = iptables.network_rules("docker0", "172.17.0.0/16", icc=True, ip_masq=False,
                                   internal=False)
    assert [rule for rule in rules if rule.table == NAT] == []


def test_internal_network_only_drops_traffic_leaving_its_subnet():
    rules = iptables.network_rules("br-int", "10.5.0.0/24", icc=True, ip_masq=True, internal=True)
    assert save_form(rules) == [
        (FILTER, "-A DOCKER-ISOLATION-STAGE-1 ! -d 10.5.0.0/24 -i br-int -j DROP"),
        (FILTER, "-A DOCKER-ISOLATION-STAGE-1 ! -s 10.5.0.0/24 -o br-int -j DROP"),
        (FILTER, "-A FORWARD -i br-int -o br-int -j ACCEPT"),
    ]


def test_hairpin_masquerades_local_sources_instead_of_skipping_dnat():
    rules = save_form(iptables.network_rules("docker0", "172.17.0.0/16", icc=True, ip_masq=True,
                                             internal=False, hairpin=True))
    assert (NAT, "-A POSTROUTING -o docker0 -m addrtype --src-type LOCAL -j MASQUERADE") in rules
    assert (NAT, "-A DOCKER -i docker0 -j RETURN") not in rules
    assert (NAT, "-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER") in save_form(
        iptables.chain_rules(hairpin=True))
    dnat = iptables.dnat_rules("docker0", "172.17.0.2", "tcp", 80, "0.0.0.0", 8080, hairpin=True)
    assert save_form(dnat) == [
        (NAT, "-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80")]


def test_published_ports_are_dockerds_iptables_diff():
    assert sorted(save_form(wire_port_rules())) == sorted(parse_save(WIRE_PORTS_DIFF))
    assert {rule.action for rule in wire_port_rules()} == {"-A"}


def port_rules(bridge, container_ip, proto, container_port, host_ip, host_port):
    """Every rule of a container port with a single binding, as the controller makes them."""
    dnat = iptables.dnat_rules(bridge, container_ip, proto, container_port, host_ip, host_port)
    return dnat + iptables.container_port_rules(bridge, container_ip, proto, container_port)


def test_single_binding_port_rules_are_dnat_accept_and_masquerade():
    rules = port_rules(WIRE_BRIDGE, WIRE_CONTAINER, "tcp", 443, "127.0.0.1", 8443)
    assert [(rule.table, rule.chain, rule.args[rule.args.index("-j") + 1])
            for rule in rules] == [(NAT, "DOCKER", "DNAT"), (FILTER, "DOCKER", "ACCEPT"),
                                   (NAT, "POSTROUTING", "MASQUERADE")]
    assert set(save_form(rules)) <= set(parse_save(WIRE_PORTS_DIFF))


def test_ipv6_host_ip_gets_no_rules():
    assert iptables.dnat_rules(WIRE_BRIDGE, WIRE_CONTAINER, "tcp", 80, "::", 8080) == []
    assert iptables.dnat_rules(WIRE_BRIDGE, WIRE_CONTAINER, "tcp", 80, "::1", 8080) == []


def test_sctp_port_also_fills_checksums():
    rules = iptables.container_port_rules("docker0", "172.17.0.2", "sctp", 9)
    assert ("mangle", "-A POSTROUTING -p sctp -m sctp --sport 9 -j CHECKSUM --checksum-fill") \
        in save_form(rules)


def test_link_rules_open_the_port_both_ways():
    rules = iptables.link_rules("docker0", "172.17.0.2", "172.17.0.3", "tcp", 5432)
    assert save_form(rules) == [
        (FILTER, "-A DOCKER -s 172.17.0.2/32 -d 172.17.0.3/32 -i docker0 -o docker0 "
                 "-p tcp -m tcp --dport 5432 -j ACCEPT"),
        (FILTER, "-A DOCKER -s 172.17.0.3/32 -d 172.17.0.2/32 -i docker0 -o docker0 "
                 "-p tcp -m tcp --sport 5432 -j ACCEPT"),
    ]
    assert {rule.action for rule in rules} == {"-A"}


@pytest.mark.parametrize("build, message", [
    (lambda: iptables.network_rules("", "10.0.0.0/8", True, True, False), "bridge interface name"),
    (lambda: iptables.network_rules("a-name-too-long0", "10.0.0.0/8", True, True, False),
     "bridge interface name"),
    (lambda: iptables.network_rules("br0 -j ACCEPT", "10.0.0.0/8", True, True, False),
     "bridge interface name"),
    (lambda: iptables.network_rules("br0", "10.0.0.0/33", True, True, False), "IPv4 subnet"),
    (lambda: iptables.network_rules("br0", "fd00::/64", True, True, False), "IPv4 subnet"),
    (lambda: port_rules("br0", "10.0.0.2", "icmp", 80, "0.0.0.0", 80), "protocol"),
    (lambda: port_rules("br0", "10.0.0.2", "tcp", 0, "0.0.0.0", 80), "port"),
    (lambda: port_rules("br0", "10.0.0.2", "tcp", 80, "0.0.0.0", 65536), "port"),
    (lambda: port_rules("br0", "10.0.0.2", "tcp", "80", "0.0.0.0", 80), "port"),
    (lambda: port_rules("br0", "10.0.0.2", "tcp", 80, "", 80), "host IP"),
    (lambda: port_rules("br0", "fd00::2", "tcp", 80, "0.0.0.0", 80), "container IPv4"),
    (lambda: iptables.link_rules("br0", "10.0.0.2", "nope", "tcp", 80), "child IPv4"),
])
def test_bad_input_is_refused_clearly(build, message):
    with pytest.raises(errdefs.InvalidParameter, match=message):
        build()


def test_missing_binary_says_how_to_go_on():
    with pytest.raises(iptables.IptablesError) as err:
        iptables.Iptables(binary="pyd-no-such-iptables")
    assert str(err.value) == iptables.IPTABLES_MISSING


def test_ensure_rule_takes_only_insert_or_append():
    ipt = iptables.Iptables(binary=sys.executable)  # never run: the action is refused first
    with pytest.raises(ValueError):
        ipt.ensure_rule("-D", FILTER, "FORWARD", "-j", "ACCEPT")


# -- the real iptables, in a private network namespace ---------------------------------------

def nsenter(path, *argv, check=True):
    return subprocess.run(["nsenter", "--net=" + path] + list(argv), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=check)


@pytest.fixture
def netns():
    """A fresh network namespace with the tables primed and a few rules of the "host's"."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the test makes a network namespace and runs iptables in it")
    if shutil.which("iptables") is None or shutil.which("iptables-save") is None:
        pytest.skip("iptables is not installed (apt-get install -y iptables)")
    name = "pyd-ipt-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    path = "/run/netns/" + name
    try:
        # touching a table makes it and its built-in chains, so that "before" lists them too
        for table, chain in ((FILTER, "FORWARD"), (NAT, "PREROUTING"), ("mangle", "POSTROUTING")):
            probe = nsenter(path, "iptables", "-w", "-t", table, "-P", chain, "ACCEPT", check=False)
            if probe.returncode != 0:
                pytest.skip("iptables cannot run here (kernel support?): %s" % probe.stderr.strip())
        for table, chain, args in HOST_RULES:
            nsenter(path, "iptables", "-w", "-t", table, "-A", chain, *args)
        yield path
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture
def ipt(netns):
    return iptables.Iptables(netns=netns)


def save(netns):
    """iptables-save without its comments and counters: the whole state, comparable."""
    text = nsenter(netns, "iptables-save").stdout
    return [re.sub(r" \[\d+:\d+\]$", "", line) for line in text.splitlines()
            if not line.startswith("#")]


def rule_lines(netns):
    return parse_save("\n".join(save(netns)))


def chain_rules(netns, table, chain):
    return [line for t, line in rule_lines(netns) if t == table and line.split()[1] == chain]


def test_setup_chains_makes_each_chain_and_rule_exactly_once(netns, ipt):
    iptables.setup_chains(ipt)
    iptables.setup_chains(ipt)
    lines = save(netns)
    for chain in ("DOCKER", "DOCKER-USER", "DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2"):
        assert lines.count(":%s -" % chain) == (2 if chain == "DOCKER" else 1)
    rules = rule_lines(netns)
    assert [rule for rule, count in collections.Counter(rules).items() if count > 1] == []
    assert chain_rules(netns, FILTER, "FORWARD") == BASELINE_FORWARD[:2] + ["-A FORWARD -i lo -j ACCEPT"]
    for chain in ("DOCKER-USER", "DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2"):
        assert chain_rules(netns, FILTER, chain) == ["-A %s -j RETURN" % chain]
    assert chain_rules(netns, NAT, "PREROUTING") == BASELINE_NAT[:1]
    assert chain_rules(netns, NAT, "OUTPUT") == BASELINE_NAT[1:2]


def test_setup_chains_with_hairpin_dnats_loopback_too(netns, ipt):
    iptables.setup_chains(ipt, hairpin=True)
    assert chain_rules(netns, NAT, "OUTPUT") == ["-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER"]


def test_remove_chains_leaves_the_tables_as_they_were(netns, ipt):
    before = save(netns)
    iptables.setup_chains(ipt)
    iptables.remove_chains(ipt)
    assert save(netns) == before
    iptables.remove_chains(ipt)  # nothing left to remove: no error
    assert save(netns) == before


def test_remove_chains_keeps_docker_user_with_the_users_rules(netns, ipt):
    before = save(netns)
    iptables.setup_chains(ipt)
    ipt.run("-t", FILTER, "-I", "DOCKER-USER", "-s", "10.9.9.9", "-j", "DROP")
    iptables.remove_chains(ipt)
    after = save(netns)
    assert [line for line in after if line not in before] == [
        ":DOCKER-USER -", "-A DOCKER-USER -s 10.9.9.9/32 -j DROP"]
    iptables.setup_chains(ipt)  # and a new start picks the chain up again
    assert chain_rules(netns, FILTER, "DOCKER-USER") == [
        "-A DOCKER-USER -s 10.9.9.9/32 -j DROP", "-A DOCKER-USER -j RETURN"]


def test_network_rules_land_in_dockerds_baseline_order_once(netns, ipt):
    iptables.setup_chains(ipt)
    rules = iptables.network_rules("docker0", "172.17.0.0/16", True, True, False)
    iptables.apply(ipt, rules)
    iptables.apply(ipt, rules)
    assert chain_rules(netns, FILTER, "FORWARD") == BASELINE_FORWARD + ["-A FORWARD -i lo -j ACCEPT"]
    assert chain_rules(netns, NAT, "POSTROUTING") == [BASELINE_NAT[2], "-A POSTROUTING -o lo -j RETURN"]
    assert chain_rules(netns, NAT, "DOCKER") == BASELINE_NAT[3:]
    assert chain_rules(netns, FILTER, "DOCKER-ISOLATION-STAGE-1") == [
        BASELINE_ISOLATION[0], "-A DOCKER-ISOLATION-STAGE-1 -j RETURN"]
    assert chain_rules(netns, FILTER, "DOCKER-ISOLATION-STAGE-2") == [
        BASELINE_ISOLATION[1], "-A DOCKER-ISOLATION-STAGE-2 -j RETURN"]


def test_disabling_network_rules_restores_the_tables(netns, ipt):
    iptables.setup_chains(ipt)
    before = save(netns)
    networks = [iptables.network_rules("docker0", "172.17.0.0/16", True, True, False),
                iptables.network_rules("br-a", "10.1.0.0/24", False, True, False),
                iptables.network_rules("br-int", "10.2.0.0/24", True, True, True)]
    for rules in networks:
        iptables.apply(ipt, rules)
    assert "-A DOCKER-ISOLATION-STAGE-2 -o br-a -j DROP" in chain_rules(
        netns, FILTER, "DOCKER-ISOLATION-STAGE-2")
    for rules in networks:
        iptables.apply(ipt, rules, enable=False)
    assert save(netns) == before


@pytest.mark.parametrize("hairpin", [False, True])
def test_every_rule_reads_as_iptables_save_prints_it(netns, ipt, hairpin):
    iptables.setup_chains(ipt, hairpin=hairpin)
    rules = (iptables.network_rules(WIRE_BRIDGE, WIRE_SUBNET, False, True, False, hairpin)
             + iptables.network_rules("br-int", "10.2.0.0/24", True, True, True)
             + wire_port_rules(hairpin)
             + iptables.container_port_rules(WIRE_BRIDGE, WIRE_CONTAINER, "sctp", 9)
             + iptables.link_rules(WIRE_BRIDGE, "172.19.0.2", WIRE_CONTAINER, "udp", 53))
    iptables.apply(ipt, rules)
    present = rule_lines(netns)
    assert [rule for rule in save_form(rules) if present.count(rule) != 1] == []


def test_published_ports_make_exactly_dockerds_diff_and_go_away(netns, ipt):
    iptables.setup_chains(ipt)
    iptables.apply(ipt, iptables.network_rules(WIRE_BRIDGE, WIRE_SUBNET, True, True, False))
    before = save(netns)
    iptables.apply(ipt, wire_port_rules())
    added = collections.Counter(rule_lines(netns)) - collections.Counter(parse_save("\n".join(before)))
    assert sorted(added.elements()) == sorted(parse_save(WIRE_PORTS_DIFF))
    iptables.apply(ipt, wire_port_rules(), enable=False)
    assert save(netns) == before


def test_a_failing_apply_undoes_what_it_added_and_names_the_command(netns, ipt):
    iptables.setup_chains(ipt)
    kept = iptables.network_rules("docker0", "172.17.0.0/16", True, True, False)
    iptables.apply(ipt, kept)
    before = save(netns)
    broken = Rule(FILTER, "FORWARD", ("-o", "br-new", "-j", "NO-SUCH-CHAIN"), "-A")
    rules = kept + iptables.network_rules("br-new", "10.3.0.0/24", True, True, False) + [broken]
    with pytest.raises(iptables.IptablesError) as err:
        iptables.apply(ipt, rules)
    assert "-C FORWARD -o br-new -j NO-SUCH-CHAIN" in str(err.value)
    assert "NO-SUCH-CHAIN" in str(err.value).split(": ", 2)[2]  # iptables' own complaint
    assert save(netns) == before  # br-new's rules undone, docker0's (not added by it) kept


def test_link_rules_let_a_parent_through_an_icc_drop(netns, ipt):
    iptables.setup_chains(ipt)
    iptables.apply(ipt, iptables.network_rules("docker0", "172.17.0.0/16", False, True, False))
    before = save(netns)
    link = iptables.link_rules("docker0", "172.17.0.2", "172.17.0.3", "tcp", 5432)
    iptables.apply(ipt, link)
    assert chain_rules(netns, FILTER, "DOCKER") == [line for _, line in save_form(link)]
    assert chain_rules(netns, FILTER, "FORWARD")[-1] == "-A FORWARD -i docker0 -o docker0 -j DROP"
    iptables.apply(ipt, link, enable=False)
    assert save(netns) == before


def test_primitives_check_before_they_change(netns, ipt):
    rule = ("-s", "10.7.0.0/16", "-j", "ACCEPT")
    assert ipt.ensure_rule("-I", FILTER, "FORWARD", *rule) is True
    assert ipt.ensure_rule("-A", FILTER, "FORWARD", *rule) is False
    assert chain_rules(netns, FILTER, "FORWARD").count("-A FORWARD -s 10.7.0.0/16 -j ACCEPT") == 1
    assert ipt.exists(FILTER, "FORWARD", *rule)
    assert ipt.delete_rule(FILTER, "FORWARD", *rule) is True
    assert ipt.delete_rule(FILTER, "FORWARD", *rule) is False
    assert not ipt.exists(FILTER, "FORWARD", *rule)
    assert ipt.ensure_chain(NAT, "DOCKER") is True
    assert ipt.ensure_chain(NAT, "DOCKER") is False
    assert ipt.chain_exists(NAT, "DOCKER")
    assert ipt.remove_chain(NAT, "DOCKER") is True
    assert ipt.remove_chain(NAT, "DOCKER") is False
    assert not ipt.chain_exists(NAT, "DOCKER")


def test_run_error_names_the_command_and_iptables_stderr(ipt):
    with pytest.raises(iptables.IptablesError) as err:
        ipt.run("-t", FILTER, "-N", "FORWARD")
    message = str(err.value)
    assert message.startswith("iptables failed: ")
    assert "-t filter -N FORWARD" in message and "exists" in message


def run_in_netns(netns, code):
    """Run python code with this repo importable, inside the namespace (its own /proc/sys/net)."""
    return nsenter(netns, sys.executable, "-c", "import sys; sys.path.insert(0, %r)\n" % REPO
                   + code).stdout.strip()


def ip_forward(netns):
    return nsenter(netns, "cat", iptables.IPV4_FORWARD_CONF).stdout.strip()


def forward_policy(netns):
    return nsenter(netns, "iptables", "-w", "-S", "FORWARD").stdout.splitlines()[0]


def test_ip_forward_enable_turns_forwarding_on_and_forward_policy_to_drop(netns):
    assert ip_forward(netns) == "0"
    code = "from drivers import iptables; print(iptables.ip_forward_enable(iptables.Iptables()))"
    assert run_in_netns(netns, code) == "True"
    assert ip_forward(netns) == "1"
    assert forward_policy(netns) == "-P FORWARD DROP"
    # already on: the admin's choice, the policy is left alone
    nsenter(netns, "iptables", "-w", "-P", "FORWARD", "ACCEPT")
    assert run_in_netns(netns, code) == "False"
    assert forward_policy(netns) == "-P FORWARD ACCEPT"


def test_ip_forward_enable_without_iptables_leaves_the_policy(netns):
    assert run_in_netns(netns, "from drivers import iptables; print(iptables.ip_forward_enable())") \
        == "True"
    assert ip_forward(netns) == "1"
    assert forward_policy(netns) == "-P FORWARD ACCEPT"
