"""Networking end to end: the real docker CLI against pydockerd in a network namespace of its
own (issue 8).

The default bridge (addresses, MACs, ping between containers, NetworkSettings, host/none/
container modes), published ports (the userland proxy and DNAT, TCP and UDP, -p 80, -P,
ranges, docker port, docker ps), legacy links (variables, /etc/hosts, --icc=false, rm --link),
user networks (embedded DNS with aliases, round robin, renames and an upstream server,
isolation, IPAM options, --internal, bridge names, filters, inspect, connect/disconnect,
prune, events), bad input with nothing half made, the daemon's network flags (--bip,
--fixed-cidr, --ip, --mtu, --ip-masq, -b), the lifecycle (a container's life, SIGTERM,
kill -9 and restart) and docker-compose's two-service app.

Every daemon runs in a namespace of its own (tests/network_support.py): clients are stdlib
programs run there with nsenter. One daemon serves most of the module (every container and
user network is removed after each test); --userland-proxy=false, --icc=false, the tuned
flags, the restart and the boot checks get daemons of their own.

Busybox's wget is never given -T (Debian's static busybox segfaults on it) and never runs as
a container's PID 1 under `timeout` (see wget_from).
"""
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import DOCKER
from containers_support import busybox_archive  # noqa: F401 (a fixture)
from containers_support import api_create, err, inspect, load_image, out, remove_all_containers, wait_for
from network_support import (PYTHON_IN_CONTAINER, UDP_ECHO_SERVER, exposing_archive, http_get, in_netns,
                             iptables_rules, link_edges, link_names, listeners, network_daemon,
                             port_held, remove_user_networks, snapshot, udp_echo, upstream_dns,
                             wait_until)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="networking needs root")

HTTPD = ("busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
SLEEP = ("busybox", "sleep", "600")
PASSWD_LINE = "root:x:0:0:root"
UPSTREAM_ANSWER = "192.0.2.55"
_ports = itertools.count(18100)


def next_port():
    """A host port no other test of the module uses (the namespace is ours alone)."""
    return next(_ports)


@pytest.fixture(scope="module")
def daemon(busybox_archive):  # noqa: F811
    """The module's daemon: default flags, the upstream DNS server at 127.0.0.1."""
    with network_daemon(busybox_archive, "--dns", "127.0.0.1") as process:
        yield process


# The module-scoped daemons whose containers and user networks go after every test (the
# restarted daemon's tests share what its fixture made, so it is not among them).
SHARED_DAEMONS = ("daemon", "dnat_daemon", "icc_daemon", "tuned_daemon")


@pytest.fixture(autouse=True)
def clean_slate(request):
    """After each test: no container, no user network left on the shared daemons it used."""
    yield
    for name in SHARED_DAEMONS:
        if name in request.fixturenames:
            shared = request.getfixturevalue(name)
            remove_all_containers(shared)
            remove_user_networks(shared)


# -- small helpers ----------------------------------------------------------------------------

def start(daemon, *args):
    """`docker run -d ARGS`: the container's full ID."""
    return out(daemon.docker("run", "-d", *args))


def run_rm(daemon, *args, check=True):
    return daemon.docker("run", "--rm", *args, check=check)


def settings_of(daemon, name):
    return inspect(daemon, name)["NetworkSettings"]


def ip_of(daemon, name, network="bridge"):
    return settings_of(daemon, name)["Networks"][network]["IPAddress"]


def network_inspect(daemon, name):
    return json.loads(out(daemon.docker("network", "inspect", name)))[0]


def network_names(daemon, *filters):
    return out(daemon.docker("network", "ls", "--format", "{{.Name}}", *filters)).splitlines()


def gateway_of(daemon, network="bridge"):
    return network_inspect(daemon, network)["IPAM"]["Config"][0]["Gateway"]


def in_netns_text(daemon, *command):
    return in_netns(daemon, *command).stdout.decode().strip()


def exec_out(daemon, name, *command):
    return out(daemon.docker("exec", name, *command))


def can_ping(daemon, name, address):
    """Whether the container `name` gets an answer to one ping of address within a second."""
    return daemon.docker("exec", name, "ping", "-c", "1", "-W", "1", address, check=False).returncode == 0


def wget_from(daemon, *run_args, url, check=True):
    """`docker run --rm RUN_ARGS busybox wget URL`: the result (the body is its stdout).

    wget runs under sh, never as the container's PID 1: `timeout` could not kill that one
    (the kernel keeps signals without a handler from a namespace's init)."""
    return run_rm(daemon, *run_args, "busybox", "sh", "-c", "timeout 5 wget -qO- %s; exit $?" % url,
                  check=check)


def addresses_inside(daemon, name):
    """{ifname: "ip/prefix"} of the container's IPv4 addresses (lo left out)."""
    text = exec_out(daemon, name, "ip", "-o", "-4", "addr")
    found = {}
    for line in text.splitlines():
        fields = line.split()
        if fields[1] != "lo":
            found[fields[1]] = fields[3]
    return found


def daemon_rules(rules):
    """iptables lines the daemon makes: its chains and every rule (the built-in chains' policy
    lines and table headers also exist in a namespace where nothing ever ran)."""
    builtin = (":INPUT ", ":OUTPUT ", ":FORWARD ", ":PREROUTING ", ":POSTROUTING ")
    return [line for line in rules if line.startswith((":", "-A")) and not line.startswith(builtin)]


def http_passwd(daemon, host, port, patience=5):
    body = http_get(daemon, "http://%s:%d/passwd" % (host, port), patience=patience)
    return body is not None and PASSWD_LINE in body


def events_since(daemon, since, *filters):
    result = daemon.docker("events", "--since", since, "--until", str(time.time()),
                           "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}", *filters)
    return out(result).splitlines()


def settled(daemon, before, timeout=10):
    """The namespace's snapshot once it equals `before` (or the last one seen): a container's
    network is given back when its monitor reports the exit, a moment after the CLI returns."""
    return wait_until(lambda: snapshot(daemon) == before and before, timeout=timeout) or snapshot(daemon)


# == the default bridge ========================================================================

def test_two_containers_ping_each_other_by_ip(daemon):
    first = start(daemon, "--name", "ping-a", *SLEEP)
    second = start(daemon, "--name", "ping-b", *SLEEP)
    first_ip, second_ip = ip_of(daemon, first), ip_of(daemon, second)
    assert first_ip != second_ip
    assert can_ping(daemon, first, second_ip)
    assert can_ping(daemon, second, first_ip)


def test_mac_address_is_derived_from_the_ip(daemon):
    cid = start(daemon, *SLEEP)
    settings = settings_of(daemon, cid)
    expected = "02:42:" + ":".join("%02x" % int(octet) for octet in settings["IPAddress"].split("."))
    assert settings["MacAddress"] == expected
    assert settings["Networks"]["bridge"]["MacAddress"] == expected
    assert "link/ether %s " % expected in exec_out(daemon, cid, "ip", "link", "show", "eth0")


def test_mac_address_in_the_config_sets_eth0s_address(daemon):
    # This CLI sends --mac-address per network, which needs API 1.44: Config.MacAddress is 1.41's
    status, body = api_create(daemon, {"Image": "busybox", "Cmd": list(SLEEP[1:]),
                                       "MacAddress": "02:42:de:ad:be:ef"})
    assert status == 201, body
    cid = body["Id"]
    daemon.docker("start", cid)
    assert settings_of(daemon, cid)["MacAddress"] == "02:42:de:ad:be:ef"
    assert "link/ether 02:42:de:ad:be:ef " in exec_out(daemon, cid, "ip", "link", "show", "eth0")


def test_default_bridge_is_docker0_on_172_17(daemon):
    bridge = network_inspect(daemon, "bridge")
    assert bridge["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
    assert bridge["Options"]["com.docker.network.bridge.name"] == "docker0"
    assert "docker0" in link_names(daemon)


def test_run_rm_has_left_no_veth_when_it_returns(daemon):
    """The exit deletes the veth pair in the background (the kernel takes ~15 ms, which the
    rest of the exit overlaps); the removal waits for it before it reports the container gone.
    And the next run gets the address back."""
    before = link_names(daemon)
    for _ in range(5):
        shown = out(run_rm(daemon, "busybox", "ip", "-o", "-4", "addr", "show", "eth0"))
        assert link_names(daemon) == before
        assert " 172.17.0.2/16 " in shown


def test_network_settings_match_the_bridge_network_like_dockerd(daemon):
    cid = start(daemon, *SLEEP)
    settings = settings_of(daemon, cid)
    bridge = network_inspect(daemon, "bridge")
    entry = settings["Networks"]["bridge"]
    subnet = ipaddress.ip_network(bridge["IPAM"]["Config"][0]["Subnet"])
    assert entry["NetworkID"] == bridge["Id"]
    assert re.fullmatch(r"[0-9a-f]{64}", entry["EndpointID"])
    assert ipaddress.ip_address(entry["IPAddress"]) in subnet
    assert entry["IPAddress"] not in (str(subnet.network_address), bridge["IPAM"]["Config"][0]["Gateway"])
    assert entry["IPPrefixLen"] == subnet.prefixlen
    assert entry["Gateway"] == bridge["IPAM"]["Config"][0]["Gateway"]
    for key in ("IPAddress", "IPPrefixLen", "Gateway", "MacAddress", "EndpointID"):
        assert settings[key] == entry[key], key
    assert bridge["Containers"][cid]["EndpointID"] == entry["EndpointID"]


def test_eth0_carries_the_inspected_address_and_the_default_route(daemon):
    cid = start(daemon, *SLEEP)
    settings = settings_of(daemon, cid)
    assert addresses_inside(daemon, cid) == {"eth0": "%s/%d" % (settings["IPAddress"],
                                                                 settings["IPPrefixLen"])}
    assert "default via %s dev eth0" % settings["Gateway"] in exec_out(daemon, cid, "ip", "route")


def test_the_command_runs_with_eth0_already_up(daemon):
    result = run_rm(daemon, "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
    assert re.search(r"inet 172\.17\.\d+\.\d+/16", out(result)), out(result)


def test_containers_started_together_get_distinct_addresses(daemon):
    env = dict(os.environ, DOCKER_HOST=daemon.host, DOCKER_CONFIG=os.path.join(daemon.dir, "cli"))
    runs = [subprocess.Popen([DOCKER, "run", "-d"] + list(SLEEP), env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE) for _ in range(6)]
    ids = []
    for process in runs:
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr.decode()
        ids.append(stdout.decode().strip())
    addresses = [ip_of(daemon, cid) for cid in ids]
    assert len(set(addresses)) == 6, addresses
    assert all(addresses_inside(daemon, cid)["eth0"].split("/")[0] == ip for cid, ip in zip(ids, addresses))


def on_network_without_address(daemon, mode):
    """Whether a container run with --network MODE is on that network alone, with no address."""
    settings = settings_of(daemon, start(daemon, "--network", mode, *SLEEP))
    return settings["IPAddress"] == "" and set(settings["Networks"]) == {mode}


def test_host_network_shares_the_daemons_namespace(daemon):
    links = out(run_rm(daemon, "--network", "host", "busybox", "ip", "-o", "link")).splitlines()
    assert any(": docker0:" in line for line in links)
    assert on_network_without_address(daemon, "host")


def test_none_network_has_loopback_only(daemon):
    links = out(run_rm(daemon, "--network", "none", "busybox", "ip", "-o", "link")).splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]
    assert on_network_without_address(daemon, "none")


def test_container_network_mode_shares_the_others_eth0(daemon):
    host = start(daemon, "--name", "nethost", *SLEEP)
    result = run_rm(daemon, "--network", "container:nethost", "busybox", "ip", "-o", "-4", "addr",
                    "show", "eth0")
    assert "inet %s/16" % ip_of(daemon, host) in out(result)


def test_add_host_goes_into_etc_hosts(daemon):
    hosts = out(run_rm(daemon, "--add-host", "extra.test:192.0.2.9", "busybox", "cat", "/etc/hosts"))
    assert "192.0.2.9\textra.test" in hosts.splitlines()


# == published ports ===========================================================================

def test_loopback_binding_answers_through_the_userland_proxy(daemon):
    port = next_port()
    start(daemon, "-p", "127.0.0.1:%d:80" % port, *HTTPD)
    assert ("tcp", port) in listeners(daemon)
    assert http_passwd(daemon, "127.0.0.1", port)


def test_loopback_binding_does_not_answer_on_the_gateway_address(daemon):
    port = next_port()
    start(daemon, "-p", "127.0.0.1:%d:80" % port, *HTTPD)
    assert http_passwd(daemon, "127.0.0.1", port)
    assert not http_passwd(daemon, gateway_of(daemon), port, patience=0)


def test_all_addresses_binding_answers_on_loopback_and_the_gateway(daemon):
    port = next_port()
    start(daemon, "-p", "%d:80" % port, *HTTPD)
    assert http_passwd(daemon, "127.0.0.1", port)
    assert http_passwd(daemon, gateway_of(daemon), port)


def test_container_port_alone_gets_an_ephemeral_host_port(daemon):
    first = start(daemon, "-p", "80", *HTTPD)
    second = start(daemon, "-p", "80", *HTTPD)
    ports = [int(settings_of(daemon, cid)["Ports"]["80/tcp"][0]["HostPort"]) for cid in (first, second)]
    assert all(32768 <= port <= 60999 for port in ports), ports
    assert ports[0] != ports[1]
    assert http_passwd(daemon, "127.0.0.1", ports[1])


def test_publish_all_maps_the_expose_flag(daemon):
    cid = start(daemon, "-P", "--expose", "80", *HTTPD)
    mapping = out(daemon.docker("port", cid, "80/tcp")).splitlines()[0]
    host_ip, _, port = mapping.rpartition(":")
    assert host_ip == "0.0.0.0" and 32768 <= int(port) <= 60999
    assert http_passwd(daemon, "127.0.0.1", int(port))


def test_publish_all_maps_the_images_expose(daemon, busybox_archive, tmp_path):  # noqa: F811
    archive = exposing_archive(busybox_archive, str(tmp_path / "exposed.tar"),
                               "busybox-exposed:latest", ["80/tcp", "9/udp"])
    load_image(daemon, archive)
    cid = start(daemon, "-P", "busybox-exposed", "httpd", "-f", "-p", "80", "-h", "/etc")
    ports = settings_of(daemon, cid)["Ports"]
    assert set(ports) == {"80/tcp", "9/udp"}
    host_ports = [int(binding["HostPort"]) for bindings in ports.values() for binding in bindings]
    assert all(32768 <= port <= 60999 for port in host_ports), host_ports
    assert http_passwd(daemon, "127.0.0.1", int(ports["80/tcp"][0]["HostPort"]))


def test_docker_port_lists_every_mapping(daemon):
    tcp_port, udp_port = next_port(), next_port()
    cid = start(daemon, "-p", "127.0.0.1:%d:80" % tcp_port, "-p", "%d:81/udp" % udp_port, *SLEEP)
    lines = out(daemon.docker("port", cid)).splitlines()
    assert "80/tcp -> 127.0.0.1:%d" % tcp_port in lines
    assert "81/udp -> 0.0.0.0:%d" % udp_port in lines
    assert out(daemon.docker("port", cid, "80")) == "127.0.0.1:%d" % tcp_port


def test_docker_ps_shows_published_ports(daemon):
    tcp_port, udp_port = next_port(), next_port()
    start(daemon, "--name", "ps-ports", "-p", "127.0.0.1:%d:80" % tcp_port, "-p",
          "%d:81/udp" % udp_port, *SLEEP)
    ports = out(daemon.docker("ps", "--filter", "name=ps-ports", "--format", "{{.Ports}}"))
    assert "127.0.0.1:%d->80/tcp" % tcp_port in ports
    assert "0.0.0.0:%d->81/udp" % udp_port in ports


def test_port_bindings_show_in_inspect_like_dockerd(daemon):
    port = next_port()
    cid = start(daemon, "-p", "127.0.0.1:%d:80" % port, "--expose", "90", *SLEEP)
    container = inspect(daemon, cid)
    assert container["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1",
                                                                   "HostPort": str(port)}]}
    assert container["NetworkSettings"]["Ports"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}], "90/tcp": None}


def test_udp_port_answers_through_the_userland_proxy(daemon):
    port = next_port()
    start(daemon, "-p", "127.0.0.1:%d:9999/udp" % port, *PYTHON_IN_CONTAINER,
          "busybox", "/usr/bin/python3", "-c", UDP_ECHO_SERVER, "9999")
    assert ("udp", port) in listeners(daemon)
    assert udp_echo(daemon, "127.0.0.1", port) == "echo:ping"


def test_port_range_publishes_each_port(daemon):
    first = next_port()
    second = next_port()
    cid = start(daemon, "-p", "127.0.0.1:%d-%d:80-81" % (first, second), *SLEEP)
    assert out(daemon.docker("port", cid, "80")) == "127.0.0.1:%d" % first
    assert out(daemon.docker("port", cid, "81")) == "127.0.0.1:%d" % second
    assert {("tcp", first), ("tcp", second)} <= listeners(daemon)


def test_a_stopped_container_publishes_again_when_started(daemon):
    port = next_port()
    cid = start(daemon, "-p", "127.0.0.1:%d:80" % port, *HTTPD)
    assert http_passwd(daemon, "127.0.0.1", port)
    daemon.docker("stop", "-t", "0", cid)
    assert wait_until(lambda: ("tcp", port) not in listeners(daemon))
    daemon.docker("start", cid)
    assert http_passwd(daemon, "127.0.0.1", port)


def test_proxy_reaches_a_published_port_from_another_container(daemon):
    port = next_port()
    start(daemon, "-p", "%d:80" % port, *HTTPD)
    assert http_passwd(daemon, "127.0.0.1", port)
    body = out(wget_from(daemon, url="http://%s:%d/passwd" % (gateway_of(daemon), port)))
    assert PASSWD_LINE in body


def test_all_addresses_binding_answers_on_ipv6_loopback(daemon):
    if in_netns_text(daemon, "cat", "/proc/sys/net/ipv6/conf/lo/disable_ipv6") != "0":
        pytest.skip("IPv6 is disabled in new network namespaces here")
    port = next_port()
    start(daemon, "-p", "%d:80" % port, *HTTPD)
    assert http_passwd(daemon, "[::1]", port)


def test_disconnecting_the_published_network_withdraws_its_ports(daemon):
    port = next_port()
    cid = start(daemon, "-p", "%d:80" % port, *HTTPD)
    assert http_passwd(daemon, "127.0.0.1", port)
    daemon.docker("network", "disconnect", "bridge", cid)
    # its address went back to the pool: the next container may get it, and must not get the
    # traffic of a port it never published (dockerd releases the ports with the endpoint)
    newcomer = start(daemon, "busybox", "sh", "-c", "echo newcomer > /tmp/who; exec httpd -f -p 80 -h /tmp")
    assert http_get(daemon, "http://%s/who" % ip_of(daemon, newcomer)) == "newcomer\n"
    for host in ("127.0.0.1", gateway_of(daemon)):
        assert http_get(daemon, "http://%s:%d/who" % (host, port), patience=0) is None, host
    assert ("tcp", port) not in listeners(daemon)
    assert not any(str(port) in line for line in iptables_rules(daemon))


# -- DNAT alone: a daemon without the userland proxy ---------------------------------------------

@pytest.fixture(scope="module")
def dnat_daemon(busybox_archive):  # noqa: F811
    with network_daemon(busybox_archive, "--userland-proxy=false") as process:
        yield process


def test_dnat_answers_on_the_gateway_with_nothing_listening(dnat_daemon):
    port = next_port()
    start(dnat_daemon, "-p", "%d:80" % port, *HTTPD)
    assert ("tcp", port) not in listeners(dnat_daemon)
    assert http_passwd(dnat_daemon, gateway_of(dnat_daemon), port)


def test_dnat_answers_on_loopback_without_the_proxy(dnat_daemon):
    port = next_port()
    start(dnat_daemon, "-p", "127.0.0.1:%d:80" % port, *HTTPD)
    assert ("tcp", port) not in listeners(dnat_daemon)
    assert http_passwd(dnat_daemon, "127.0.0.1", port)


def test_udp_answers_through_dnat_without_the_proxy(dnat_daemon):
    port = next_port()
    start(dnat_daemon, "-p", "%d:9999/udp" % port, *PYTHON_IN_CONTAINER,
          "busybox", "/usr/bin/python3", "-c", UDP_ECHO_SERVER, "9999")
    assert ("udp", port) not in listeners(dnat_daemon)
    assert udp_echo(dnat_daemon, gateway_of(dnat_daemon), port) == "echo:ping"


def test_dnat_reaches_a_published_port_from_another_container(dnat_daemon):
    port = next_port()
    start(dnat_daemon, "-p", "%d:80" % port, *HTTPD)
    gateway = gateway_of(dnat_daemon)
    assert http_passwd(dnat_daemon, gateway, port)
    assert PASSWD_LINE in out(wget_from(dnat_daemon, url="http://%s:%d/passwd" % (gateway, port)))


def test_dnat_reaches_a_container_on_a_user_network(dnat_daemon):
    port = next_port()
    dnat_daemon.docker("network", "create", "dnet")
    start(dnat_daemon, "--network", "dnet", "-p", "%d:80" % port, *HTTPD)
    assert ("tcp", port) not in listeners(dnat_daemon)
    assert http_passwd(dnat_daemon, gateway_of(dnat_daemon, "dnet"), port)
    assert http_passwd(dnat_daemon, "127.0.0.1", port)


# == links =====================================================================================

@pytest.fixture
def linked_web(daemon):
    """A web server to link to: exposes 80 and has an Env of its own."""
    cid = start(daemon, "--name", "lweb", "--expose", "80", "-e", "COLOR=blue", *HTTPD)
    return cid, ip_of(daemon, cid)


def link_env(daemon):
    result = run_rm(daemon, "--name", "lparent", "--link", "lweb:db", "busybox", "env")
    return set(out(result).splitlines())


def test_link_sets_the_alias_port_variables(daemon, linked_web):
    _, ip = linked_web
    env = link_env(daemon)
    assert {"DB_PORT=tcp://%s:80" % ip, "DB_PORT_80_TCP=tcp://%s:80" % ip,
            "DB_PORT_80_TCP_ADDR=%s" % ip, "DB_PORT_80_TCP_PORT=80",
            "DB_PORT_80_TCP_PROTO=tcp"} <= env


def test_link_sets_the_alias_name_and_env_variables(daemon, linked_web):
    env = link_env(daemon)
    assert "DB_NAME=/lparent/db" in env
    assert "DB_ENV_COLOR=blue" in env


def test_link_puts_the_alias_in_etc_hosts(daemon, linked_web):
    cid, ip = linked_web
    hosts = out(run_rm(daemon, "--link", "lweb:db", "busybox", "cat", "/etc/hosts")).splitlines()
    entry = next(line.split() for line in hosts if line.split()[0] == ip)
    assert {"db", "lweb", cid[:12]} <= set(entry[1:])
    body = out(wget_from(daemon, "--link", "lweb:db", url="http://db/passwd"))
    assert PASSWD_LINE in body


def test_link_is_shown_in_host_config_links(daemon, linked_web):
    cid = start(daemon, "--name", "lparent", "--link", "lweb:db", *SLEEP)
    assert inspect(daemon, cid)["HostConfig"]["Links"] == ["/lweb:/lparent/db"]


def test_rm_link_removes_the_link_and_its_variables(daemon, linked_web):
    daemon.docker("create", "--name", "lparent", "--link", "lweb:db", "busybox", "env")
    assert len(link_edges(daemon)) == 1
    daemon.docker("rm", "--link", "lparent/db")
    assert link_edges(daemon) == []
    assert inspect(daemon, "lparent")["HostConfig"]["Links"] is None
    env = out(daemon.docker("start", "-a", "lparent"))
    assert "DB_NAME" not in env and "DB_PORT" not in env
    assert inspect(daemon, "lweb")["State"]["Running"]


def test_link_to_a_missing_container_is_refused(daemon):
    result = daemon.docker("run", "-d", "--name", "lorphan", "--link", "nothere:x", *SLEEP, check=False)
    assert result.returncode != 0
    assert "could not get container for nothere" in err(result)
    assert out(daemon.docker("ps", "-aq")) == ""
    assert link_edges(daemon) == []


def test_link_to_a_stopped_container_is_refused_at_start_leaving_nothing(daemon):
    daemon.docker("create", "--name", "lstopped", "busybox", "true")
    port = next_port()
    before = snapshot(daemon)
    result = daemon.docker("run", "-d", "--name", "lparent", "-p", "127.0.0.1:%d:80" % port,
                           "--link", "lstopped:s", *HTTPD, check=False)
    assert result.returncode != 0
    assert "Cannot link to a non running container: /lstopped AS /lparent/s" in err(result)
    expected = dict(before, edges=link_edges(daemon))  # the created container keeps its link
    assert len(expected["edges"]) == 1
    assert settled(daemon, expected) == expected
    assert not inspect(daemon, "lparent")["State"]["Running"]
    start(daemon, "-p", "127.0.0.1:%d:80" % port, *HTTPD)  # the host port was given back
    assert http_passwd(daemon, "127.0.0.1", port)


# -- --icc=false ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def icc_daemon(busybox_archive):  # noqa: F811
    with network_daemon(busybox_archive, "--icc=false") as process:
        yield process


def test_icc_false_keeps_containers_from_reaching_each_other(icc_daemon):
    target = start(icc_daemon, "--name", "icc-target", *HTTPD)
    ip = ip_of(icc_daemon, target)
    assert http_passwd(icc_daemon, ip, 80)  # it answers the host...
    other = start(icc_daemon, "--name", "icc-other", *SLEEP)
    assert not can_ping(icc_daemon, other, ip)  # ...but not another container
    assert wget_from(icc_daemon, url="http://%s/passwd" % ip, check=False).returncode != 0


def test_icc_false_link_opens_exactly_the_exposed_port(icc_daemon):
    child = start(icc_daemon, "--name", "icc-child", "--expose", "80", "busybox", "sh", "-c",
                  "httpd -p 81 -h /etc; exec httpd -f -p 80 -h /etc")
    ip = ip_of(icc_daemon, child)
    assert http_passwd(icc_daemon, ip, 80) and http_passwd(icc_daemon, ip, 81)
    linked = ("--link", "icc-child:c")
    assert PASSWD_LINE in out(wget_from(icc_daemon, *linked, url="http://c:80/passwd"))
    assert wget_from(icc_daemon, *linked, url="http://c:81/passwd", check=False).returncode != 0


def test_icc_false_link_rules_go_when_the_parent_stops(icc_daemon):
    start(icc_daemon, "--name", "icc-child2", "--expose", "80", *HTTPD)
    before = iptables_rules(icc_daemon)
    parent = start(icc_daemon, "--link", "icc-child2:c", *SLEEP)
    assert iptables_rules(icc_daemon) != before
    icc_daemon.docker("rm", "-f", parent)
    assert wait_until(lambda: iptables_rules(icc_daemon) == before)


# == user networks =============================================================================

def test_network_create_makes_a_linux_bridge_of_its_own(daemon):
    network_id = out(daemon.docker("network", "create", "unet"))
    network = network_inspect(daemon, "unet")
    assert network["Id"] == network_id and network["Driver"] == "bridge"
    subnet = ipaddress.ip_network(network["IPAM"]["Config"][0]["Subnet"])
    assert not subnet.overlaps(ipaddress.ip_network("172.17.0.0/16"))
    assert "br-" + network_id[:12] in link_names(daemon)
    assert "unet" in out(daemon.docker("network", "ls", "--format", "{{.Name}}")).splitlines()


def test_container_name_resolves_on_a_user_network(daemon):
    daemon.docker("network", "create", "unet")
    start(daemon, "--network", "unet", "--name", "uweb", *HTTPD)
    assert PASSWD_LINE in out(wget_from(daemon, "--network", "unet", url="http://uweb/passwd"))


def test_network_alias_resolves_on_a_user_network(daemon):
    daemon.docker("network", "create", "unet")
    start(daemon, "--network", "unet", "--network-alias", "websvc", *HTTPD)
    assert PASSWD_LINE in out(wget_from(daemon, "--network", "unet", url="http://websvc/passwd"))


def test_names_are_not_resolved_on_the_default_bridge(daemon):
    start(daemon, "--name", "bweb", *HTTPD)
    assert wget_from(daemon, url="http://bweb/passwd", check=False).returncode != 0


def test_a_name_outside_is_forwarded_to_the_upstream_server(daemon, tmp_path):
    daemon.docker("network", "create", "unet")
    asked = tmp_path / "asked"
    with upstream_dns(daemon, UPSTREAM_ANSWER, str(asked)):
        result = run_rm(daemon, "--network", "unet", "busybox", "nslookup", "outside.example.test")
    assert "Address: %s" % UPSTREAM_ANSWER in out(result), out(result)
    assert "outside.example.test 1" in asked.read_text().splitlines()


def test_an_alias_shared_by_two_containers_answers_round_robin(daemon):
    daemon.docker("network", "create", "unet")
    members = {ip_of(daemon, start(daemon, "--network", "unet", "--network-alias", "pool", *SLEEP), "unet")
               for _ in range(2)}
    result = run_rm(daemon, "--network", "unet", "busybox", "sh", "-c",
                    "for i in 1 2 3 4; do nslookup -type=a pool; echo ===; done")
    firsts = []
    for block in out(result).split("===")[:4]:
        found = re.findall(r"^Address:\s*(\d+\.\d+\.\d+\.\d+)$", block, re.M)
        assert set(found) == members, block
        firsts.append(found[0])
    assert set(firsts) == members  # each address comes first in turn


def test_user_network_leaves_the_top_level_address_empty(daemon):
    daemon.docker("network", "create", "unet")
    cid = start(daemon, "--network", "unet", *SLEEP)
    settings = settings_of(daemon, cid)
    # dockerd fills the top-level fields for the default bridge only (wire.md 19-inspect)
    assert (settings["IPAddress"], settings["Gateway"], settings["MacAddress"]) == ("", "", "")
    entry = settings["Networks"]["unet"]
    assert entry["IPAddress"] and entry["Aliases"] == [cid[:12]]


def test_network_connect_with_alias_and_ip_on_a_running_container(daemon):
    daemon.docker("network", "create", "--subnet", "10.81.0.0/24", "unet")
    cid = start(daemon, "--name", "roamer", *HTTPD)
    daemon.docker("network", "connect", "--alias", "roaming", "--ip", "10.81.0.50", "unet", "roamer")
    assert addresses_inside(daemon, cid)["eth1"] == "10.81.0.50/24"
    entry = settings_of(daemon, cid)["Networks"]["unet"]
    assert entry["IPAMConfig"] == {"IPv4Address": "10.81.0.50"}
    assert "roaming" in entry["Aliases"]
    assert PASSWD_LINE in out(wget_from(daemon, "--network", "unet", url="http://roaming/passwd"))


def test_link_on_a_user_network_resolves_the_alias(daemon):
    daemon.docker("network", "create", "unet")
    start(daemon, "--network", "unet", "--name", "uweb", *HTTPD)
    body = out(wget_from(daemon, "--network", "unet", "--link", "uweb:backend", url="http://backend/passwd"))
    assert PASSWD_LINE in body


def test_a_renamed_container_resolves_by_its_new_name(daemon):
    daemon.docker("network", "create", "unet")
    start(daemon, "--network", "unet", "--name", "oldname", *HTTPD)
    daemon.docker("rename", "oldname", "newname")
    assert PASSWD_LINE in out(wget_from(daemon, "--network", "unet", url="http://newname/passwd"))


def test_two_user_networks_are_isolated_from_each_other(daemon):
    daemon.docker("network", "create", "unet-a")
    daemon.docker("network", "create", "unet-b")
    target = start(daemon, "--network", "unet-b", *SLEEP)
    target_ip = ip_of(daemon, target, "unet-b")
    neighbour = start(daemon, "--network", "unet-b", *SLEEP)
    stranger = start(daemon, "--network", "unet-a", *SLEEP)
    assert can_ping(daemon, neighbour, target_ip)
    assert not can_ping(daemon, stranger, target_ip)


def test_user_network_is_isolated_from_the_default_bridge(daemon):
    daemon.docker("network", "create", "unet")
    target = start(daemon, "--network", "unet", *SLEEP)
    on_bridge = start(daemon, *SLEEP)
    assert not can_ping(daemon, on_bridge, ip_of(daemon, target, "unet"))
    assert not can_ping(daemon, target, ip_of(daemon, on_bridge))


def test_subnet_gateway_and_ip_range_shape_the_addresses(daemon):
    daemon.docker("network", "create", "--subnet", "10.77.0.0/24", "--gateway", "10.77.0.254",
                  "--ip-range", "10.77.0.128/25", "unet")
    assert network_inspect(daemon, "unet")["IPAM"]["Config"] == [
        {"Subnet": "10.77.0.0/24", "IPRange": "10.77.0.128/25", "Gateway": "10.77.0.254"}]
    cid = start(daemon, "--network", "unet", *SLEEP)
    entry = settings_of(daemon, cid)["Networks"]["unet"]
    assert ipaddress.ip_address(entry["IPAddress"]) in ipaddress.ip_network("10.77.0.128/25")
    assert (entry["Gateway"], entry["IPPrefixLen"]) == ("10.77.0.254", 24)
    assert "default via 10.77.0.254 dev eth0" in exec_out(daemon, cid, "ip", "route")
    bridge_name = "br-" + network_inspect(daemon, "unet")["Id"][:12]
    assert "inet 10.77.0.254/24" in in_netns_text(daemon, "ip", "-o", "-4", "addr", "show", bridge_name)


def test_ip_flag_gives_the_container_that_address(daemon):
    daemon.docker("network", "create", "--subnet", "10.78.0.0/24", "unet")
    cid = start(daemon, "--network", "unet", "--ip", "10.78.0.42", *SLEEP)
    assert ip_of(daemon, cid, "unet") == "10.78.0.42"
    assert addresses_inside(daemon, cid) == {"eth0": "10.78.0.42/24"}


def test_internal_network_has_no_default_route(daemon):
    daemon.docker("network", "create", "--internal", "unet")
    assert network_inspect(daemon, "unet")["Internal"] is True
    cid = start(daemon, "--network", "unet", *SLEEP)
    routes = exec_out(daemon, cid, "ip", "route")
    assert routes and "default" not in routes


def test_bridge_name_option_names_the_linux_bridge(daemon):
    daemon.docker("network", "create", "-o", "com.docker.network.bridge.name=pydtest0", "unet")
    assert "pydtest0" in link_names(daemon)
    daemon.docker("network", "rm", "unet")
    assert "pydtest0" not in link_names(daemon)


def test_network_ls_filters_by_label(daemon):
    daemon.docker("network", "create", "--label", "env=a", "unet-a")
    daemon.docker("network", "create", "--label", "env=b", "unet-b")
    assert network_inspect(daemon, "unet-a")["Labels"] == {"env": "a"}
    assert network_names(daemon, "--filter", "label=env=a") == ["unet-a"]
    assert sorted(network_names(daemon, "--filter", "label=env")) == ["unet-a", "unet-b"]


def test_network_ls_label_filters_must_all_match(daemon):
    daemon.docker("network", "create", "--label", "env=a", "--label", "tier=web", "unet-a")
    daemon.docker("network", "create", "--label", "env=b", "--label", "tier=web", "unet-b")
    assert network_names(daemon, "--filter", "label=tier=web", "--filter", "label=env=b") == ["unet-b"]


def test_network_ls_filters_by_name_and_type(daemon):
    daemon.docker("network", "create", "unet-a")
    assert network_names(daemon, "--filter", "name=unet") == ["unet-a"]
    assert sorted(network_names(daemon, "--filter", "type=builtin")) == ["bridge", "host", "none"]
    assert network_names(daemon, "--filter", "type=custom") == ["unet-a"]


def test_network_inspect_lists_its_containers(daemon):
    daemon.docker("network", "create", "--subnet", "10.79.0.0/24", "unet")
    cid = start(daemon, "--network", "unet", "--name", "member", *SLEEP)
    entry = settings_of(daemon, cid)["Networks"]["unet"]
    containers = network_inspect(daemon, "unet")["Containers"]
    assert containers == {cid: {"Name": "member", "EndpointID": entry["EndpointID"],
                                "MacAddress": entry["MacAddress"],
                                "IPv4Address": entry["IPAddress"] + "/24", "IPv6Address": ""}}


def test_network_connect_gives_a_running_container_eth1(daemon):
    daemon.docker("network", "create", "unet")
    cid = start(daemon, "--name", "roamer", *SLEEP)
    daemon.docker("network", "connect", "unet", "roamer")
    entry = settings_of(daemon, cid)["Networks"]["unet"]
    assert addresses_inside(daemon, cid)["eth1"] == "%s/%d" % (entry["IPAddress"], entry["IPPrefixLen"])
    lookup = run_rm(daemon, "--network", "unet", "busybox", "nslookup", "-type=a", "roamer")
    assert "Address: %s" % entry["IPAddress"] in out(lookup)


def test_network_disconnect_takes_eth1_from_a_running_container(daemon):
    daemon.docker("network", "create", "unet")
    before = link_names(daemon)
    cid = start(daemon, "--name", "roamer", *SLEEP)
    daemon.docker("network", "connect", "unet", "roamer")
    assert "eth1" in addresses_inside(daemon, cid)
    daemon.docker("network", "disconnect", "unet", "roamer")
    assert set(addresses_inside(daemon, cid)) == {"eth0"}
    assert "unet" not in settings_of(daemon, cid)["Networks"]
    assert network_inspect(daemon, "unet")["Containers"] == {}
    assert len(link_names(daemon)) == len(before) + 1  # the eth0 veth alone


def test_network_connect_a_stopped_container_joins_at_start(daemon):
    daemon.docker("network", "create", "unet")
    cid = out(daemon.docker("create", "--name", "roamer", *SLEEP))
    daemon.docker("network", "connect", "unet", "roamer")
    assert set(inspect(daemon, cid)["NetworkSettings"]["Networks"]) == {"bridge", "unet"}
    daemon.docker("start", "roamer")
    assert set(addresses_inside(daemon, cid)) == {"eth0", "eth1"}
    assert ip_of(daemon, cid, "unet")


def test_network_disconnect_a_stopped_container(daemon):
    daemon.docker("network", "create", "unet")
    cid = out(daemon.docker("create", "--name", "roamer", "--network", "unet", *SLEEP))
    daemon.docker("network", "connect", "bridge", "roamer")
    daemon.docker("network", "disconnect", "unet", "roamer")
    assert set(inspect(daemon, cid)["NetworkSettings"]["Networks"]) == {"bridge"}
    daemon.docker("start", "roamer")
    assert set(addresses_inside(daemon, cid)) == {"eth0"}
    assert ipaddress.ip_address(ip_of(daemon, cid)) in ipaddress.ip_network("172.17.0.0/16")


def test_network_prune_removes_only_unused_networks(daemon):
    daemon.docker("network", "create", "unet-used")
    daemon.docker("network", "create", "unet-unused")
    start(daemon, "--network", "unet-used", *SLEEP)
    result = daemon.docker("network", "prune", "-f")
    assert "unet-unused" in out(result) and "unet-used" not in out(result)
    assert sorted(network_names(daemon)) == ["bridge", "host", "none", "unet-used"]


def test_network_events_show_in_docker_events(daemon):
    since = str(time.time())
    daemon.docker("network", "create", "evnet")
    cid = start(daemon, "--network", "evnet", *SLEEP)
    daemon.docker("rm", "-f", cid)
    daemon.docker("network", "rm", "evnet")
    wait_for(lambda: "network destroy evnet" in events_since(daemon, since, "--filter", "type=network"),
             what="the destroy event")
    events = [line for line in events_since(daemon, since, "--filter", "type=network")
              if line.endswith(" evnet")]
    # dockerd: the endpoint is made (connect) as the container starts, and goes as it dies
    assert events == ["network create evnet", "network connect evnet", "network disconnect evnet",
                      "network destroy evnet"]


def test_network_connect_and_disconnect_commands_show_in_docker_events(daemon):
    daemon.docker("network", "create", "evnet")
    cid = start(daemon, *SLEEP)
    since = str(time.time())
    daemon.docker("network", "connect", "evnet", cid)
    daemon.docker("network", "disconnect", "evnet", cid)
    result = daemon.docker("events", "--since", since, "--until", str(time.time() + 1), "--filter",
                           "network=evnet", "--format", "{{.Action}} {{.Actor.Attributes.container}}")
    assert out(result).splitlines() == ["connect " + cid, "disconnect " + cid]


# == bad input: a clear error and nothing half made =============================================

def refused(daemon, *args):
    """Run a docker command that must fail; its stderr."""
    result = daemon.docker(*args, check=False)
    assert result.returncode != 0, out(result)
    return err(result)


@pytest.mark.parametrize("subnet", ["10.90.5.0/24", "172.17.128.0/17"])
def test_overlapping_subnet_is_refused(daemon, subnet):
    daemon.docker("network", "create", "--subnet", "10.90.0.0/16", "unet")
    before = snapshot(daemon)
    message = refused(daemon, "network", "create", "--subnet", subnet, "unet-overlap")
    assert "Pool overlaps with other one on this address space" in message
    assert snapshot(daemon) == before
    assert "unet-overlap" not in network_names(daemon)


def test_port_already_published_is_refused(daemon):
    port = next_port()
    start(daemon, "--name", "holder", "-p", "%d:80" % port, *HTTPD)
    assert http_passwd(daemon, "127.0.0.1", port)
    before = snapshot(daemon)
    message = refused(daemon, "run", "-d", "--name", "latecomer", "-p", "%d:80" % port, *HTTPD)
    assert "Bind for 0.0.0.0:%d failed: port is already allocated" % port in message
    assert settled(daemon, before) == before
    assert http_passwd(daemon, "127.0.0.1", port)


def test_host_port_held_by_another_program_is_refused(daemon):
    port = next_port()
    with port_held(daemon, port):
        before = snapshot(daemon)
        message = refused(daemon, "run", "-d", "-p", "%d:80" % port, *HTTPD)
        assert "address already in use" in message
        assert settled(daemon, before) == before


def test_unknown_network_is_refused_at_run(daemon):
    before = snapshot(daemon)
    message = refused(daemon, "run", "-d", "--network", "nonet", *SLEEP)
    # a 404 from create makes the CLI pull the image: the error must come from elsewhere
    assert "Unable to find image" not in message
    assert "network nonet not found" in message
    assert settled(daemon, before) == before
    assert out(daemon.docker("ps", "-q")) == ""


def test_start_with_an_unknown_network_is_a_404_as_in_dockerd(daemon):
    body = json.dumps({"Image": "busybox", "Cmd": ["sleep", "600"],
                       "HostConfig": {"NetworkMode": "nonet"}})
    created = daemon.request("POST", "/containers/create", body,
                             {"Content-Type": "application/json"})
    assert created.status == 201
    started = daemon.request("POST", "/containers/%s/start" % created.json()["Id"])
    assert (started.status, started.json()) == (404, {"message": "network nonet not found"})


def test_an_exposed_key_that_is_no_port_is_skipped_as_dockerd_does(daemon):
    body = json.dumps({"Image": "busybox", "Cmd": ["sleep", "600"],
                       "ExposedPorts": {"a": {}, "80/sctp": {}, "81/tcp": {}},
                       "HostConfig": {"PublishAllPorts": True}})
    created = daemon.request("POST", "/containers/create", body,
                             {"Content-Type": "application/json"})
    name = created.json()["Id"]
    assert daemon.request("POST", "/containers/%s/start" % name).status == 204
    ports = json.loads(out(daemon.docker("inspect", "-f", "{{json .NetworkSettings.Ports}}", name)))
    assert list(ports) == ["81/tcp"] and ports["81/tcp"][0]["HostPort"].isdigit()


def test_unknown_network_is_refused_by_the_network_commands(daemon):
    daemon.docker("create", "--name", "roamer", *SLEEP)
    assert "network nonet not found" in refused(daemon, "network", "connect", "nonet", "roamer")
    assert "network nonet not found" in refused(daemon, "network", "inspect", "nonet")
    assert "network nonet not found" in refused(daemon, "network", "rm", "nonet")


def test_removing_a_network_with_endpoints_is_refused(daemon):
    network_id = out(daemon.docker("network", "create", "unet"))
    cid = start(daemon, "--network", "unet", *SLEEP)
    before = snapshot(daemon)
    message = refused(daemon, "network", "rm", "unet")
    assert "error while removing network: network unet id %s has active endpoints" % network_id in message
    assert snapshot(daemon) == before
    assert network_inspect(daemon, "unet")["Containers"].keys() == {cid}


def test_bridge_name_in_use_is_refused(daemon):
    daemon.docker("network", "create", "-o", "com.docker.network.bridge.name=pydtest1", "unet")
    before = snapshot(daemon)
    message = refused(daemon, "network", "create", "-o", "com.docker.network.bridge.name=pydtest1",
                      "unet-twin")
    assert "networks have same bridge name" in message
    assert snapshot(daemon) == before
    assert "unet-twin" not in network_names(daemon)


def test_bridge_name_of_the_default_bridge_is_refused(daemon):
    before = snapshot(daemon)
    message = refused(daemon, "network", "create", "-o", "com.docker.network.bridge.name=docker0", "unet")
    assert "networks have same bridge name" in message
    assert snapshot(daemon) == before


def test_ip_outside_the_subnet_is_refused(daemon):
    daemon.docker("network", "create", "--subnet", "10.93.0.0/24", "unet")
    before = snapshot(daemon)
    message = refused(daemon, "run", "-d", "--network", "unet", "--ip", "10.94.0.5", *SLEEP)
    assert "Invalid address 10.94.0.5: It does not belong to any of this network's subnets" in message
    assert settled(daemon, before) == before


def test_ip_in_use_is_refused(daemon):
    daemon.docker("network", "create", "--subnet", "10.93.0.0/24", "unet")
    first = start(daemon, "--network", "unet", "--ip", "10.93.0.5", *SLEEP)
    before = snapshot(daemon)
    message = refused(daemon, "run", "-d", "--network", "unet", "--ip", "10.93.0.5", *SLEEP)
    assert "Address already in use" in message
    assert settled(daemon, before) == before
    assert addresses_inside(daemon, first) == {"eth0": "10.93.0.5/24"}


def test_ip_on_the_default_bridge_is_refused(daemon):
    message = refused(daemon, "run", "-d", "--ip", "172.17.0.99", *SLEEP)
    assert "user specified IP address is supported on user defined networks only" in message


def test_an_exhausted_subnet_is_refused_leaving_nothing(daemon):
    daemon.docker("network", "create", "--subnet", "10.95.0.0/30", "unet")  # .1 gateway, .2 alone
    start(daemon, "--network", "unet", *SLEEP)
    before = snapshot(daemon)
    message = refused(daemon, "run", "-d", "--network", "unet", "-p", "%d:80" % next_port(), *HTTPD)
    assert "no available IPv4 addresses on this network's address pools" in message
    assert settled(daemon, before) == before


def test_a_duplicate_network_name_is_refused(daemon):
    daemon.docker("network", "create", "unet")
    before = snapshot(daemon)
    assert "network with name unet already exists" in refused(daemon, "network", "create", "unet")
    assert snapshot(daemon) == before
    assert network_names(daemon).count("unet") == 1


@pytest.mark.parametrize("name", ["bridge", "host", "none"])
def test_a_predefined_network_cannot_be_removed(daemon, name):
    message = refused(daemon, "network", "rm", name)
    assert "%s is a pre-defined network and cannot be removed" % name in message


def test_connecting_a_container_twice_is_refused(daemon):
    daemon.docker("network", "create", "unet")
    cid = start(daemon, "--name", "roamer", "--network", "unet", *SLEEP)
    before = snapshot(daemon)
    message = refused(daemon, "network", "connect", "unet", "roamer")
    assert "endpoint with name roamer already exists in network unet" in message
    assert snapshot(daemon) == before
    assert set(addresses_inside(daemon, cid)) == {"eth0"}


def test_a_link_from_the_bridge_to_a_user_network_container_is_refused(daemon):
    daemon.docker("network", "create", "unet")
    start(daemon, "--name", "elsewhere", "--network", "unet", *SLEEP)
    before = snapshot(daemon)
    message = refused(daemon, "run", "-d", "--link", "elsewhere:e", *SLEEP)
    assert "Cannot link to /elsewhere, as it does not belong to the default network" in message
    expected = dict(before, edges=link_edges(daemon))  # the created container keeps its link
    assert settled(daemon, expected) == expected


def test_boot_without_the_iptables_binary_fails_naming_it(make_daemon):
    booting = make_daemon(start=False, netns=True, env={"PATH": "/usr/bin"})
    booting.start(wait=False)
    assert booting.proc.wait(20) != 0
    assert re.search(r"failed to start daemon: Error initializing network controller: .*iptables",
                     booting.log())
    assert link_names(booting) == ["lo"]  # no docker0 made before the failure


def test_boot_without_the_iptables_binary_with_iptables_false(make_daemon):
    booting = make_daemon("--iptables=false", netns=True, env={"PATH": "/usr/bin"})
    assert booting.request("GET", "/_ping").status == 200
    assert "docker0" in link_names(booting)
    assert daemon_rules(iptables_rules(booting)) == []


def test_default_bridge_skips_a_subnet_a_host_route_uses(make_daemon):
    booting = make_daemon(start=False, netns=True)
    booting.make_netns()
    for command in (["link", "add", "pydhost0", "type", "veth", "peer", "name", "pydhost1"],
                    ["addr", "add", "172.17.0.1/16", "dev", "pydhost0"],
                    ["link", "set", "pydhost1", "up"], ["link", "set", "pydhost0", "up"]):
        subprocess.run(["ip", "-n", booting.netns] + command, check=True)
    booting.start()
    assert network_inspect(booting, "bridge")["IPAM"]["Config"][0]["Subnet"] == "172.18.0.0/16"


# -- the daemon's network flags -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tuned_daemon(busybox_archive):  # noqa: F811
    with network_daemon(busybox_archive, "--bip", "10.200.0.1/24", "--fixed-cidr", "10.200.0.128/25",
                        "--ip", "127.0.0.1", "--mtu", "1400", "--ip-masq=false") as process:
        yield process


def test_bip_sets_the_default_bridges_address(tuned_daemon):
    assert network_inspect(tuned_daemon, "bridge")["IPAM"]["Config"][0]["Subnet"] == "10.200.0.0/24"
    assert "inet 10.200.0.1/24" in in_netns_text(tuned_daemon, "ip", "-o", "-4", "addr", "show", "docker0")


def test_fixed_cidr_bounds_container_addresses(tuned_daemon):
    cid = start(tuned_daemon, *SLEEP)
    assert ipaddress.ip_address(ip_of(tuned_daemon, cid)) in ipaddress.ip_network("10.200.0.128/25")
    assert settings_of(tuned_daemon, cid)["Gateway"] == "10.200.0.1"


def test_mtu_flag_sets_eth0s_mtu(tuned_daemon):
    assert " mtu 1400 " in out(run_rm(tuned_daemon, "busybox", "ip", "-o", "link", "show", "eth0"))


def test_ip_flag_is_the_default_bind_address(tuned_daemon):
    port = next_port()
    cid = start(tuned_daemon, "-p", "%d:80" % port, *HTTPD)
    assert out(tuned_daemon.docker("port", cid, "80")) == "127.0.0.1:%d" % port
    assert http_passwd(tuned_daemon, "127.0.0.1", port)
    assert not http_passwd(tuned_daemon, "10.200.0.1", port, patience=0)


def test_ip_masq_false_leaves_out_the_masquerade_rule(tuned_daemon):
    rules = iptables_rules(tuned_daemon)
    assert "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER" in rules  # iptables is on
    assert not any("MASQUERADE" in line and "10.200.0.0/24" in line for line in rules)


def test_b_uses_an_existing_bridge_and_never_deletes_it(busybox_archive, make_daemon):  # noqa: F811
    booting = make_daemon("-b", "pydbr0", start=False, netns=True)
    booting.make_netns()
    for command in (["link", "add", "pydbr0", "type", "bridge"],
                    ["addr", "add", "10.201.0.1/24", "dev", "pydbr0"], ["link", "set", "pydbr0", "up"]):
        subprocess.run(["ip", "-n", booting.netns] + command, check=True)
    booting.start()
    load_image(booting, busybox_archive)
    result = run_rm(booting, "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
    assert re.search(r"inet 10\.201\.0\.\d+/24", out(result)), out(result)
    assert booting.stop() == 0
    assert "pydbr0" in link_names(booting)


# == lifecycle: nothing left behind, and a restart ============================================

def test_a_containers_life_leaves_rules_and_links_as_they_were(daemon):
    before = snapshot(daemon)
    cid = start(daemon, "-p", "127.0.0.1:%d:80" % next_port(), "-p", "%d:80" % next_port(), *HTTPD)
    during = snapshot(daemon)
    assert during["rules"] != before["rules"] and len(during["links"]) == len(before["links"]) + 1
    daemon.docker("kill", cid)
    assert settled(daemon, before) == before


def test_sigterm_with_no_containers_leaves_nothing_of_the_daemon(busybox_archive, make_daemon):  # noqa: F811
    fresh = make_daemon(netns=True)
    load_image(fresh, busybox_archive)
    fresh.docker("network", "create", "unet")
    cid = start(fresh, "-p", "%d:80" % next_port(), "--network", "unet", *HTTPD)
    fresh.docker("rm", "-f", cid)
    assert "DOCKER" in "\n".join(iptables_rules(fresh))
    assert fresh.stop() == 0
    assert link_names(fresh) == ["lo"]
    assert daemon_rules(iptables_rules(fresh)) == []
    assert listeners(fresh) == set()

def test_user_networks_survive_a_daemon_restart(busybox_archive, make_daemon):  # noqa: F811
    fresh = make_daemon(netns=True)
    load_image(fresh, busybox_archive)
    fresh.docker("network", "create", "--subnet", "10.202.0.0/24", "unet")
    kept = network_inspect(fresh, "unet")
    assert fresh.stop() == 0
    assert link_names(fresh) == ["lo"]
    fresh.start()
    again = network_inspect(fresh, "unet")
    assert (again["Id"], again["IPAM"]) == (kept["Id"], kept["IPAM"])
    assert "br-" + kept["Id"][:12] in link_names(fresh)
    start(fresh, "--network", "unet", "--name", "uweb", *HTTPD)
    assert PASSWD_LINE in out(wget_from(fresh, "--network", "unet", url="http://uweb/passwd"))
    remove_all_containers(fresh)



@pytest.fixture(scope="module")
def restarted(busybox_archive):  # noqa: F811
    """A daemon killed with kill -9 while published containers (and one on a user network)
    ran, then started again; one of them was killed too while the daemon was down. What it
    looked like before the kill comes along."""
    with network_daemon(busybox_archive) as process:
        proxy_port, dnat_port, brief_port = next_port(), next_port(), next_port()
        web = start(process, "--name", "web", "-p", "127.0.0.1:%d:80" % proxy_port,
                    "-p", "%d:80" % dnat_port, *HTTPD)
        brief = start(process, "--name", "brief", "-p", "%d:80" % brief_port, *HTTPD)
        process.docker("network", "create", "unet")
        start(process, "--name", "uweb", "--network", "unet", *HTTPD)
        assert http_passwd(process, "127.0.0.1", proxy_port)
        assert http_passwd(process, "127.0.0.1", brief_port)
        before = {"ip": ip_of(process, web), "rules": iptables_rules(process), "links": link_names(process),
                  "proxy_port": proxy_port, "dnat_port": dnat_port, "web": web,
                  "brief_ip": ip_of(process, brief), "brief_port": brief_port,
                  "brief_veth": "veth" + settings_of(process, brief)["EndpointID"][:7]}
        brief_pid = inspect(process, brief)["State"]["Pid"]
        process.proc.send_signal(signal.SIGKILL)
        process.proc.wait(10)
        os.kill(brief_pid, signal.SIGKILL)  # it dies while no daemon watches
        process.start()
        yield process, before


def test_restart_after_kill_keeps_the_published_port_answering(restarted):
    process, before = restarted
    assert http_passwd(process, "127.0.0.1", before["proxy_port"])
    assert http_passwd(process, gateway_of(process), before["dnat_port"])


def test_restart_after_kill_keeps_the_containers_ip(restarted):
    process, before = restarted
    assert inspect(process, "web")["State"]["Running"]
    assert ip_of(process, "web") == before["ip"]


def test_restart_after_kill_gives_a_new_container_another_ip(restarted):
    process, before = restarted
    cid = start(process, *SLEEP)
    assert ip_of(process, cid) != before["ip"]
    process.docker("rm", "-f", cid)


def test_restart_after_kill_duplicates_no_rule(restarted):
    process, _ = restarted
    rules = iptables_rules(process)
    assert [line for line in set(rules) if rules.count(line) > 1 and line.startswith("-A")] == []


def test_restart_after_kill_keeps_the_running_containers_rules(restarted):
    process, before = restarted
    kept = [line for line in before["rules"] if before["brief_ip"] not in line]
    assert iptables_rules(process) == kept


def test_a_container_that_died_while_the_daemon_was_down_leaves_nothing(restarted):
    process, before = restarted
    wait_for(lambda: not inspect(process, "brief")["State"]["Running"], what="brief to be seen dead")
    assert wait_until(lambda: ("tcp", before["brief_port"]) not in listeners(process))
    assert not any(before["brief_ip"] in line for line in iptables_rules(process))
    assert before["brief_veth"] in before["links"]
    assert before["brief_veth"] not in link_names(process)
    assert settings_of(process, "brief")["IPAddress"] == ""


def test_restart_after_kill_keeps_names_resolving_on_user_networks(restarted):
    process, _ = restarted
    assert PASSWD_LINE in out(wget_from(process, "--network", "unet", url="http://uweb/passwd"))


def test_restart_after_kill_then_rm_leaves_nothing_of_the_container(restarted):
    process, before = restarted
    process.docker("rm", "-f", "web")
    for port in (before["proxy_port"], before["dnat_port"]):
        assert wait_until(lambda: ("tcp", port) not in listeners(process)), port
        assert not any(str(port) in line for line in iptables_rules(process)), port
    assert not any(before["ip"] in line for line in iptables_rules(process))
    cid = start(process, "-p", "127.0.0.1:%d:80" % before["proxy_port"], *HTTPD)
    assert http_passwd(process, "127.0.0.1", before["proxy_port"])
    process.docker("rm", "-f", cid)


# == docker-compose's two-service app ==========================================================

COMPOSE_FILE = """\
version: "3"
services:
  web:
    image: busybox
    command: httpd -f -p 80 -h /etc
  client:
    image: busybox
    depends_on: [web]
    command: sh -c 'for i in $$(seq 10); do wget -qO- http://web/passwd && exit 0; sleep 0.3; done; exit 1'
"""


@pytest.fixture(scope="module")
def compose_app(busybox_archive, tmp_path_factory):  # noqa: F811
    """`docker-compose up` of the app on a daemon of its own; the result, then `down`."""
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    directory = tmp_path_factory.mktemp("compose")
    (directory / "docker-compose.yml").write_text(COMPOSE_FILE)
    with network_daemon(busybox_archive) as process:
        env = dict(os.environ, DOCKER_HOST=process.host, DOCKER_CONFIG=os.path.join(process.dir, "cli"))

        def compose_run(*args):
            return subprocess.run([compose, "-p", "netapp"] + list(args), cwd=str(directory), env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        before = snapshot(process)
        up = compose_run("up", "-t", "1", "--abort-on-container-exit", "--exit-code-from", "client")
        names = out(process.docker("ps", "-a", "--format", "{{.Names}}")).splitlines()
        down = compose_run("down", "-t", "1")
        yield {"up": up, "names": names, "down": down, "before": before, "after": snapshot(process),
               "networks": network_names(process)}


def test_compose_client_reaches_web_by_service_name(compose_app):
    up = compose_app["up"]
    assert up.returncode == 0, up.stderr.decode()
    assert PASSWD_LINE in up.stdout.decode()


def test_compose_numbers_each_services_first_container_1(compose_app):
    assert sorted(compose_app["names"]) == ["netapp_client_1", "netapp_web_1"]


def test_compose_down_leaves_nothing(compose_app):
    down = compose_app["down"]
    assert down.returncode == 0, down.stderr.decode()
    assert sorted(compose_app["networks"]) == ["bridge", "host", "none"]
    assert compose_app["after"] == compose_app["before"]
